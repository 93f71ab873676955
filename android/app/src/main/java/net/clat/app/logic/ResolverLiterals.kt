package net.clat.app.logic

/**
 * The network's resolvers as the core takes them (rust-core/discovery/src/resolver.rs parse_resolver):
 * address literals, and a link-local IPv6 resolver with its zone, "fe80::1%wlan0" or "fe80::1%3".
 *
 * Why the zone matters: a link-local address names a host only together with an interface
 * (RFC 4007 s6), and the kernel refuses to send to one without it. A home router that announces
 * only itself as resolver (RDNSS fe80::1) is common, so dropping such resolvers, as the app did,
 * left those networks with none: no RFC 7050 discovery and no DNS relay. Android's
 * `Inet6Address.getHostAddress()` spells a scoped address with its zone (libcore uses
 * getnameinfo(NI_NUMERICHOST), which appends "%ifname"); when the platform hands one over without
 * a scope, the network's own interface is the one it was learnt on.
 */
object ResolverLiterals {
    /**
     * One resolver: [hostAddress] as `InetAddress.getHostAddress()` gives it, [interfaceName] the
     * network's interface (`LinkProperties.getInterfaceName()`). Null when it cannot be used: a
     * link-local address without a zone on a network whose interface is unknown.
     */
    fun of(hostAddress: String, interfaceName: String?): String? {
        val text = hostAddress.trim()
        if (text.isEmpty()) return null
        if (text.contains('%')) return text.takeIf { text.substringAfter('%').isNotEmpty() }
        if (!isLinkLocal(text)) return text
        return interfaceName?.takeIf { it.isNotBlank() }?.let { "$text%$it" }
    }

    /** All of a network's resolvers, in the network's order, without duplicates. */
    fun all(hostAddresses: List<String>, interfaceName: String?): List<String> =
        hostAddresses.mapNotNull { of(it, interfaceName) }.distinct()

    /** fe80::/10, the addresses that need a zone. */
    fun isLinkLocal(text: String): Boolean {
        val a = IpAddresses.parseIpv6(text.substringBefore('%')) ?: return false
        return (a[0].toInt() and 0xff) == 0xfe && (a[1].toInt() and 0xc0) == 0x80
    }
}
