package net.clat.core

/**
 * Makes one socket bypass the VPN. On Android this is `VpnService.protect(fd)`:
 * `SocketProtector { fd -> vpnService.protect(fd) }`.
 *
 * Called from the engine's own native thread (attached to the JVM by the core), once per
 * upstream socket, before the socket connects. Must be thread-safe and quick. Returning
 * false or throwing fails only the flow that needed the socket; the engine keeps running.
 */
fun interface SocketProtector {
    /** Protects [fd]; true on success. */
    fun protect(fd: Int): Boolean
}
