package net.clat.app.logic

/** An address or route: "192.0.0.4"/29, "0.0.0.0"/0. */
data class IpPrefixSpec(val address: String, val prefixLength: Int) {
    override fun toString(): String = "$address/$prefixLength"

    /** An IPv4 literal (else IPv6). */
    val isIpv4: Boolean get() = IpAddresses.parseIpv4(address) != null
}

/**
 * Everything `VpnService.Builder` is told, as plain data. The Android glue applies it field by
 * field; tests check it. Two equal plans give the same TUN, so a running TUN is only rebuilt when
 * the plan changes.
 */
data class VpnPlan(
    val session: String,
    val addresses: List<IpPrefixSpec>,
    val routes: List<IpPrefixSpec>,
    /**
     * Prefixes kept out of the TUN although [routes] cover them ([LocalRoutes]): given to
     * `Builder.excludeRoute` on API 33+, folded into [routesBelowApi33] before.
     */
    val excludedRoutes: List<IpPrefixSpec>,
    /** The VPN's own resolvers (`addDnsServer`): the relay in [DnsMode.RELAY], none otherwise. */
    val dnsServers: List<String>,
    val dnsMode: DnsMode,
    val mtu: Int,
    /** `allowFamily(AF_INET6)`: native IPv6 bypasses the TUN, only IPv4 takes the CLAT path. */
    val allowIpv6Bypass: Boolean,
    /**
     * IPv6 is carried through the TUN: `::/0` routed in, an IPv6 address ([ClatAddresses.TUN_V6])
     * on the interface, no [allowIpv6Bypass]. Under lockdown only: there netd's rule that prohibits
     * non-VPN traffic of the VPN's UIDs (RULE_PRIORITY_PROHIBIT_NON_VPN, 14000) comes right after
     * the VPN's own table (RULE_PRIORITY_SECURE_VPN, 13000) and long before the VPN fall-through
     * (RULE_PRIORITY_VPN_FALLTHROUGH, 28000) that `allowFamily(AF_INET6)` relies on (AOSP
     * system/netd server/RouteController.h, and RouteController.cpp
     * modifyRejectNonSecureNetworkRule: FR_ACT_PROHIBIT for sockets not protected from the VPN).
     * With allowFamily the VPN's table has no IPv6 route (Vpn.makeLinkProperties adds the
     * unreachable `::/0` only without it), so IPv6 lookups fall past it into the prohibit rule:
     * under lockdown native IPv6 fails for every app unless the VPN carries it.
     */
    val carryIpv6: Boolean = false,
    /** A CLAT adds no cost of its own: the underlying network's meteredness applies. */
    val metered: Boolean,
    val allowedApps: List<String>,
    val disallowedApps: List<String>,
    /** What the builder changed in the settings and why (shown in the UI, not part of identity). */
    val notes: List<String>,
) {
    override fun equals(other: Any?): Boolean =
        other is VpnPlan && toIdentity() == other.toIdentity()
    override fun hashCode(): Int = toIdentity().hashCode()
    /**
     * The routes for Android below 13: the IPv4 [routes] minus [excludedRoutes] (IPv4 only), as
     * plain routes, then the IPv6 routes unchanged.
     */
    val routesBelowApi33: List<IpPrefixSpec>
        get() = LocalRoutes.subtract(routes.filter { it.isIpv4 }, excludedRoutes) + routes.filterNot { it.isIpv4 }

    private fun toIdentity() = listOf(session, addresses, routes, excludedRoutes, dnsServers, dnsMode, mtu, allowIpv6Bypass, carryIpv6, metered, allowedApps, disallowedApps)
}

sealed interface PlanResult {
    data class Valid(val plan: VpnPlan) : PlanResult
    data class Invalid(val errors: List<String>) : PlanResult
}

/**
 * Turns settings into the VPN interface configuration.
 *
 * The own package matters: the engine terminates TCP in a kernel listener on the TUN address, so
 * the app's own UID must route through its own VPN. Hence in allowed-apps mode the own package is
 * added, and in disallowed-apps mode it is never disallowed. The engine's upstream sockets still
 * leave through the real network because each is protected (`VpnService.protect`).
 */
object VpnConfigBuilder {
    const val SESSION = "CLAT (464XLAT)"

    /** The smallest link MTU IPv6 allows (RFC 8200 section 5). */
    const val IPV6_MIN_MTU = 1280

    /**
     * [lockdown]: `VpnService.isLockdownEnabled()`, which decides the [DnsMode] ([DnsPolicy]) and
     * whether IPv6 is carried through the TUN ([VpnPlan.carryIpv6]: `::/0` and
     * [ClatAddresses.TUN_V6] added, no `allowFamily(AF_INET6)`).
     */
    fun build(settings: ClatSettings, ownPackage: String, lockdown: Boolean = false): PlanResult {
        val errors = ArrayList<String>()
        val notes = ArrayList<String>()
        if (settings.mtu !in Limits.MTU_MIN..Limits.MTU_MAX) {
            errors.add("MTU ${settings.mtu} is outside ${Limits.MTU_MIN}..${Limits.MTU_MAX}")
        }
        val allowed = settings.allowedApps.map { it.trim() }.filter { it.isNotEmpty() }.distinct()
        val disallowed = settings.disallowedApps.map { it.trim() }.filter { it.isNotEmpty() }.distinct()
        if (allowed.isNotEmpty() && disallowed.isNotEmpty()) {
            errors.add("allowed and disallowed apps cannot be mixed (Android's VPN builder refuses it)")
        }
        (allowed + disallowed).filterNot { PackageNames.isValid(it) }.forEach {
            errors.add("\"$it\" is not a valid package name")
        }
        if (errors.isNotEmpty()) return PlanResult.Invalid(errors)

        val finalAllowed = if (allowed.isNotEmpty() && ownPackage !in allowed) {
            notes.add("added $ownPackage to the allowed apps: its TCP listener lives on the TUN")
            allowed + ownPackage
        } else {
            allowed
        }
        val finalDisallowed = if (ownPackage in disallowed) {
            notes.add("$ownPackage cannot be disallowed: its TCP listener lives on the TUN")
            disallowed - ownPackage
        } else {
            disallowed
        }
        val dnsMode = DnsPolicy.decide(lockdown, settings.dnsThroughVpn)
        // IPv6 needs links of at least 1280 bytes (RFC 8200 section 5), and the engine refuses
        // to carry it on a smaller TUN: with a managed MTU below that, lockdown keeps blocking
        // apps' native IPv6 (the note says so) rather than the VPN failing to start.
        val carryIpv6 = lockdown && settings.mtu >= IPV6_MIN_MTU
        if (lockdown && !carryIpv6) {
            notes.add("MTU ${settings.mtu} is below IPv6's minimum of $IPV6_MIN_MTU: IPv6 is not carried, and under lockdown apps' IPv6 is blocked")
        }
        val v4Address = IpPrefixSpec(ClatAddresses.CLAT_V4, ClatAddresses.CLAT_PREFIX_LENGTH)
        val v4Route = IpPrefixSpec("0.0.0.0", 0)
        return PlanResult.Valid(
            VpnPlan(
                session = SESSION,
                addresses = if (carryIpv6) listOf(v4Address, IpPrefixSpec(ClatAddresses.TUN_V6, ClatAddresses.TUN_V6_PREFIX_LENGTH)) else listOf(v4Address),
                routes = if (carryIpv6) listOf(v4Route, IpPrefixSpec("::", 0)) else listOf(v4Route),
                excludedRoutes = if (settings.excludeLocalTraffic) LocalRoutes.IPV4_LOCAL else emptyList(),
                dnsServers = if (dnsMode == DnsMode.RELAY) listOf(ClatAddresses.DNS_V4) else emptyList(),
                dnsMode = dnsMode,
                mtu = settings.mtu,
                allowIpv6Bypass = !carryIpv6,
                carryIpv6 = carryIpv6,
                metered = false,
                allowedApps = finalAllowed,
                disallowedApps = finalDisallowed,
                notes = notes,
            ),
        )
    }
}

/** Android package names: two or more dot-separated Java-identifier-like segments. */
object PackageNames {
    private val PATTERN = Regex("^[A-Za-z][A-Za-z0-9_]*(\\.[A-Za-z][A-Za-z0-9_]*)+$")
    fun isValid(name: String): Boolean = name.length <= 255 && PATTERN.matches(name)
}
