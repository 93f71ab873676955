//! Stateless IPv4/IPv6 translation (work in progress).
