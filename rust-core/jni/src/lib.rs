//! `libclat.so`: the JNI bridge between the Kotlin `net.clat.core.ClatNative`
//! object and the Rust engine.
//!
//! Every `Java_net_clat_core_ClatNative_*` function ([`entry_points`]) runs
//! its body through `EnvUnowned::with_env` (which wraps it in
//! `catch_unwind`) and resolves the outcome with [`error::ThrowTyped`], so a
//! Rust error or panic becomes a Java exception and never unwinds into the
//! JVM. Engines
//! are reached through `Long` handles from a registry ([`registry`]), never
//! through pointers, so stale handles throw instead of crashing.
//!
//! Layout: [`entry_points`] holds the exported functions (and taking over
//! Kotlin's TUN descriptor), [`config`] checks configuration (plain Rust),
//! [`jconvert`] copies Kotlin values, [`engine`] holds the running engines,
//! [`protector`] calls `protect(fd)` back into Kotlin, [`flow_records`] lays
//! out the flow events Kotlin takes in batches.
//!
//! `unsafe` is denied in the crate and allowed only in [`entry_points`]:
//! exporting a symbol (`#[unsafe(no_mangle)]`) and adopting a raw
//! descriptor are the only things here that the compiler cannot check.

#![deny(unsafe_code)]

pub mod config;
pub mod engine;
pub mod entry_points;
pub mod error;
pub mod flow_records;
pub mod jconvert;
pub mod logging;
pub mod protector;
pub mod registry;
