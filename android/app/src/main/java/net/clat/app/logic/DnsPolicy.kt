package net.clat.app.logic

/** Which resolvers apps use while the CLAT runs. */
enum class DnsMode {
    /**
     * The VPN sets no DNS server (`VpnService.Builder.addDnsServer` is not called), so apps keep
     * the underlying network's resolvers and its Private DNS (DNS over TLS) over IPv6. netd sends
     * the lookups of a UID whose VPN has no resolvers to the default network: "If the user is
     * subject to a VPN and the VPN provides DNS servers, use those servers ... Otherwise, use the
     * default network's DNS servers" (AOSP system/netd server/NetworkController.cpp,
     * NetworkController::getNetworkForDnsLocked, which checks resolv_has_nameservers(vpnNetId)).
     * The A records of IPv4-only names still come back, and their IPv4 connections take the TUN.
     */
    NETWORK,

    /**
     * The VPN's resolver is the engine's DNS relay (an address of 192.0.0.0/29 on the TUN), which
     * asks the network's resolvers over IPv6. Needed when the platform routes DNS through the VPN:
     * under lockdown ("Block connections without VPN") the resolver's query sockets carry the
     * app's UID (AOSP packages/modules/DnsResolver resolv_private.h, resolv_tag_socket:
     * fchown(sock, uid), Android 11+), and lockdown blocks that UID everywhere but the VPN, so with
     * no resolver of its own the VPN would leave apps without DNS. Private DNS is then not used
     * for the apps' lookups. Before API 29 the app cannot read lockdown; there the resolver's
     * sockets belonged to the dns user (the same function chowned them to the app's UID only from
     * Android 11), so lockdown's UID rules did not catch them (to be confirmed on such a device).
     */
    RELAY,
}

/**
 * Decides [DnsMode]: the relay only where it is needed (lockdown) or asked for (managed key
 * `dns_through_vpn`); otherwise the network's resolvers, so that Private DNS is not weakened.
 */
object DnsPolicy {
    fun decide(lockdown: Boolean, dnsThroughVpn: Boolean): DnsMode =
        if (lockdown || dnsThroughVpn) DnsMode.RELAY else DnsMode.NETWORK

    /** One line for the status: which resolvers apps use, and why. */
    fun describe(mode: DnsMode, lockdown: Boolean): String = when (mode) {
        DnsMode.NETWORK -> "DNS: the network's resolvers (Private DNS applies)"
        DnsMode.RELAY -> if (lockdown) {
            "DNS: the CLAT's relay (lockdown sends all DNS through the VPN; Private DNS not used)"
        } else {
            "DNS: the CLAT's relay (managed configuration dns_through_vpn; Private DNS not used)"
        }
    }
}
