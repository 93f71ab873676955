//! NAT64 prefix discovery (work in progress).
