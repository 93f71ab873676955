package net.clat.core

/**
 * One NAT64 prefix found by [ClatNative.discover]. Built by the core (rust-core/jni/src/jconvert.rs
 * new_discovered_prefix_array calls the constructor `(String, String, long)`: keep them in step),
 * so Kotlin never parses strings back.
 */
data class DiscoveredPrefix(
    /** "2001:db8:64::/96": an RFC 6052 length, checked by the core. */
    val prefix: String,
    /** Where it came from: "rfc7050" (the only source discover uses), "pref64" or "config". */
    val source: String,
    /** How long the answer is valid: the DNS TTL, in seconds. */
    val ttlSeconds: Long,
)
