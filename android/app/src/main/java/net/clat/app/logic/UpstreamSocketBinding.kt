package net.clat.app.logic

/**
 * How one upstream socket is taken out of the VPN: one call to netd where there is a network to
 * bind to, two only where binding fails.
 *
 * `Network.bindSocket` alone is enough. It sends netd's fwmark server the SELECT_NETWORK command,
 * which sets the socket's netId, the explicitly-selected bit and `protectedFromVpn =
 * canProtect(uid)`, the same bit `VpnService.protect` (PROTECT_FROM_VPN) sets
 * (system/netd server/FwmarkServer.cpp, `case FwmarkCommand::SELECT_NETWORK`). The VPN's owner
 * may protect: `Vpn.prepare` calls `mNetd.allowProtect(mOwnerUID)` (frameworks/base
 * services/core/java/com/android/server/connectivity/Vpn.java). `protect` is therefore the
 * fallback: when no network is known yet, or when binding is refused (the network went away).
 *
 * Each call is a round trip to netd over its fwmark socket, made on the engine's thread for
 * every new flow, so the second call was a cost on every connection and on every other flow
 * waiting behind it.
 */
object UpstreamSocketBinding {
    /**
     * Takes [fd] out of the VPN. [bindToNetwork] is null when no network is known; it returns
     * false when binding failed. Returns whether one of the two calls succeeded.
     */
    fun apply(fd: Int, bindToNetwork: ((Int) -> Boolean)?, protect: (Int) -> Boolean): Boolean {
        if (bindToNetwork != null && bindToNetwork(fd)) return true
        return protect(fd)
    }
}
