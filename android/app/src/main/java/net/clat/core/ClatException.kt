package net.clat.core

/**
 * The Rust core failed: the engine could not start or stop, prefix discovery found nothing,
 * a callback failed, or the core hit an internal error (a Rust panic is caught and reported
 * as this exception instead of crashing the process).
 *
 * Bad arguments throw [IllegalArgumentException] / [NullPointerException] instead, and calls
 * on a stopped or unknown handle throw [IllegalStateException], so that callers can tell
 * their own mistakes from failures of the network or the core.
 *
 * Thrown from native code through its (String) constructor: keep it.
 */
class ClatException(message: String) : RuntimeException(message)
