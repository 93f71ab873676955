package net.clat.app.logic

/**
 * What the app knows about the underlying (non-VPN) default network, copied out of Android's
 * `Network`/`LinkProperties`/`NetworkCapabilities` so that decisions can be tested on the JVM.
 */
data class NetworkSnapshot(
    /** Opaque identity of the network (Android's network handle); a change means a new network. */
    val id: String,
    val interfaceName: String? = null,
    /** Addresses on the link, "2001:db8:1::2" or "2001:db8:1::2/64". */
    val addresses: List<String> = emptyList(),
    /** Whether the link has an IPv4 default route (0.0.0.0/0). */
    val hasIpv4DefaultRoute: Boolean = false,
    /** Whether the link has an IPv6 default route (::/0). */
    val hasIpv6DefaultRoute: Boolean = false,
    /** The network's resolvers, as address literals; link-local ones with their zone, "fe80::1%wlan0". */
    val dnsServers: List<String> = emptyList(),
    /**
     * The platform's NAT64 prefix, "64:ff9b::/96": `LinkProperties.getNat64Prefix()` (API 30+).
     * Not necessarily PREF64: ConnectivityService fills it from the RA's PREF64 option when there
     * is one, else from its resolver's DNS64 discovery (RFC 7050): Nat464Xlat.selectNat64Prefix
     * and fixupLinkProperties in packages/modules/Connectivity.
     */
    val pref64: String? = null,
    /**
     * NET_CAPABILITY_VALIDATED: the platform's probe reached the Internet. Turning true is a
     * moment to ask DNS64 again (a captive portal was passed, a late DNS64 came up).
     */
    val validated: Boolean = false,
    /** The route lookup for IPv4 on this network, which sees Android's own CLAT ([Ipv4Route]). */
    val ipv4Route: Ipv4Route = Ipv4Route.Unknown,
) {
    /**
     * Native IPv4: a usable IPv4 address and an IPv4 default route. Link-local (169.254/16),
     * loopback and the CLAT's own 192.0.0.0/29 do not count: they carry no Internet IPv4.
     */
    val hasNativeIpv4: Boolean
        get() = hasIpv4DefaultRoute && addresses.any { isUsableIpv4(IpAddresses.hostPart(it)) }

    /** IPv6 that can reach a NAT64: a non-link-local unicast address and an IPv6 default route. */
    val hasIpv6: Boolean
        get() = hasIpv6DefaultRoute && addresses.any { isUsableIpv6(IpAddresses.hostPart(it)) }

    /** Android's own clatd gives this network IPv4 (its stacked link answered the route lookup). */
    val platformClat: Boolean
        get() = !hasNativeIpv4 && (ipv4Route as? Ipv4Route.Via)?.isPlatformClat == true

    /** The IPv6-only case 464XLAT exists for. */
    val isIpv6Only: Boolean get() = hasIpv6 && !hasNativeIpv4

    companion object {
        fun isUsableIpv4(text: String): Boolean {
            val a = IpAddresses.parseIpv4(text) ?: return false
            val b0 = a[0].toInt() and 0xff
            val b1 = a[1].toInt() and 0xff
            val b2 = a[2].toInt() and 0xff
            val b3 = a[3].toInt() and 0xff
            if (b0 == 0 || b0 == 127 || b0 >= 224) return false
            if (b0 == 169 && b1 == 254) return false
            if (b0 == 192 && b1 == 0 && b2 == 0 && b3 < 8) return false // RFC 7335 CLAT range
            return true
        }

        fun isUsableIpv6(text: String): Boolean {
            val a = IpAddresses.parseIpv6(text) ?: return false
            val b0 = a[0].toInt() and 0xff
            val b1 = a[1].toInt() and 0xff
            if (b0 == 0xff) return false // multicast
            if (b0 == 0xfe && (b1 and 0xc0) == 0x80) return false // link-local
            if (a.copyOfRange(0, 15).all { it.toInt() == 0 }) return false // :: and ::1
            return true
        }
    }
}
