//! The CLAT engine (work in progress).
