package net.clat.app.logic

/** Fixed addresses of the CLAT side (RFC 7335 192.0.0.0/29; same as the Rust engine's defaults). */
object ClatAddresses {
    /** The apps' IPv4 source and the TUN's address (Android's own clat uses it too). */
    const val CLAT_V4 = "192.0.0.4"
    const val CLAT_PREFIX_LENGTH = 29

    /** Internal NAT address the engine uses for the kernel-terminated TCP trick. */
    const val NAT_V4 = "192.0.0.5"

    /** The engine's DNS relay, advertised to apps as the VPN's DNS server. */
    const val DNS_V4 = "192.0.0.6"

    /**
     * The TUN's IPv6 address when IPv6 is carried through the VPN (lockdown, [VpnPlan.carryIpv6]):
     * in the project's unique local /64 fd9c:7c5a:e1b6:464::/64 (RFC 4193 section 3.2: global
     * ID 9c7c5ae1b6 chosen at random once, subnet 0x464). Never routed beyond the device; apps'
     * IPv6 keeps its own source addresses, this only gives the interface an IPv6 address so the
     * platform accepts IPv6 routes into it and the engine has one for its kernel-terminated TCP.
     */
    const val TUN_V6 = "fd9c:7c5a:e1b6:464::1"
    const val TUN_V6_PREFIX_LENGTH = 64
}

/** Limits and defaults shared by the parser, the builder and the UI. */
object Limits {
    /** 576: every IPv4 host must accept datagrams this large (RFC 791); smaller breaks DNS/TCP. */
    const val MTU_MIN = 576
    const val MTU_MAX = 65535

    /**
     * 65000, as `clat run`'s default. TCP through the TUN is a local leg (the engine terminates it
     * and re-originates it upstream), so the TUN MTU sets only how many packets, and system calls,
     * a byte costs on the phone: in the Android-configuration bench (tests/bench, the descriptor a
     * VpnService hands over; 2026-11-30 21:00 UTC) one TCP stream ran 3.2 times faster at 65000 than
     * at 1500 for a fifth to a quarter of the CPU per GB. UDP and ICMP keep their size upstream,
     * and the engine handles a datagram larger than the IPv6 path as any path would: with DF,
     * Fragmentation Needed with the path MTU; without DF, fragmented, and sent again fragmented after
     * a Packet Too Big. Datagrams up to 1480 bytes, which is what QUIC, RTP and DNS send, fare the
     * same at 1500 and 65000.
     *
     * On the platform (AOSP, read, not run on a device): `Vpn.establish` creates the TUN with
     * `jniCreate(mtu)`, whose `create_interface` (com_android_server_connectivity_Vpn.cpp) sets the
     * MTU with SIOCSIFMTU (a TUN takes up to 65535). ConnectivityService's `updateMtu` then finds
     * 65000 outside `LinkProperties.isValidMtu` (at most `LinkPropertiesUtils.MAX_MTU`, 10000): it
     * logs "Unexpected mtu value" and leaves the interface as it is. Vpn.java carries a "TODO: Stop
     * setting the MTU in jniCreate"; were that done, the TUN would keep the kernel's default, 1500,
     * and TCP would still work (at MTU 1500's cost), since the app's kernel sizes its segments by
     * the interface. An administrator who wants a value the platform validates can set 9000
     * (half the TCP throughput of 65000 in the same bench, twice the CPU per GB).
     */
    const val MTU_DEFAULT = 65000

    /** RFC 4787 REQ-5: a UDP mapping must not expire in less than 2 minutes. */
    const val UDP_TIMEOUT_MIN_SEC = 120
    const val UDP_TIMEOUT_MAX_SEC = 86400
    const val UDP_TIMEOUT_DEFAULT_SEC = 300

    const val MAX_FLOWS_MIN = 16
    const val MAX_FLOWS_MAX = 1_048_576
    const val MAX_FLOWS_DEFAULT = 65536
}

/** The effective settings: managed configuration merged over the user's own choices. */
data class ClatSettings(
    val allowedApps: List<String> = emptyList(),
    val disallowedApps: List<String> = emptyList(),
    val prefixOverride: Nat64Prefix? = null,
    val mtu: Int = Limits.MTU_DEFAULT,
    val alwaysOnStart: Boolean = false,
    val udpTimeoutSec: Int = Limits.UDP_TIMEOUT_DEFAULT_SEC,
    val maxFlows: Int = Limits.MAX_FLOWS_DEFAULT,
    /** Keep IPv4 link-local, multicast and broadcast out of the TUN ([LocalRoutes]); on by default. */
    val excludeLocalTraffic: Boolean = true,
    /** Send apps' DNS through the engine's relay even outside lockdown ([DnsPolicy]); off by default. */
    val dnsThroughVpn: Boolean = false,
) {
    companion object {
        /**
         * Managed values win over the user's: an enterprise that pins a prefix or an app list must
         * not be overridden on the device. The user's app selection applies only when the
         * managed configuration names neither list (an admin's list replaces it whole).
         */
        fun merge(
            managed: ManagedConfig,
            userPrefixOverride: Nat64Prefix?,
            userExcludeLocalTraffic: Boolean = true,
            userApps: AppSelection = AppSelection.ALL,
        ): ClatSettings = ClatSettings(
            allowedApps = if (managed.managesApps) managed.allowedApps.orEmpty() else userApps.allowedApps,
            disallowedApps = if (managed.managesApps) managed.disallowedApps.orEmpty() else userApps.disallowedApps,
            prefixOverride = managed.prefixOverride ?: userPrefixOverride,
            mtu = managed.mtu ?: Limits.MTU_DEFAULT,
            alwaysOnStart = managed.alwaysOnStart ?: false,
            udpTimeoutSec = managed.udpTimeoutSec ?: Limits.UDP_TIMEOUT_DEFAULT_SEC,
            maxFlows = managed.maxFlows ?: Limits.MAX_FLOWS_DEFAULT,
            excludeLocalTraffic = managed.excludeLocalTraffic ?: userExcludeLocalTraffic,
            dnsThroughVpn = managed.dnsThroughVpn ?: false,
        )
    }
}

/** Settings plus the TUN plan they give, and what was rejected on the way. */
data class ResolvedSettings(
    val settings: ClatSettings,
    val plan: PlanResult,
    /** Rejected values that fell back to defaults (shown, not blocking). */
    val warnings: List<String>,
)

object SettingsResolver {
    /**
     * Combines managed configuration and the user's prefix override into settings and a plan.
     * Blocking managed errors (app lists, prefix) turn the plan invalid so the CLAT refuses to
     * start and says why; the others are warnings.
     */
    fun resolve(
        managed: ParsedManagedConfig,
        userPrefixOverride: String?,
        ownPackage: String,
        userExcludeLocalTraffic: Boolean = true,
        lockdown: Boolean = false,
        userApps: AppSelection = AppSelection.ALL,
    ): ResolvedSettings {
        val warnings = ArrayList<String>()
        val userPrefix = userPrefixOverride?.trim()?.takeIf { it.isNotEmpty() }?.let { text ->
            Nat64Prefix.parse(text).fold({ it }, { warnings.add("prefix override ignored: ${it.message}"); null })
        }
        val settings = ClatSettings.merge(managed.config, userPrefix, userExcludeLocalTraffic, userApps)
        val blocking = managed.blockingErrors
        managed.errors.filter { it !in blocking }.forEach { warnings.add("managed configuration: $it (default used)") }
        val plan = if (blocking.isNotEmpty()) {
            PlanResult.Invalid(blocking.map { "managed configuration: $it" })
        } else {
            VpnConfigBuilder.build(settings, ownPackage, lockdown)
        }
        return ResolvedSettings(settings, plan, warnings)
    }
}

/** The core's counters for display (ClatEngine.namedCounters gives them as name/value pairs). */
object Counters {
    /** One short line for the notification: the counters that say traffic is flowing. */
    fun summary(counters: List<Pair<String, Long>>, keys: List<String> = SUMMARY_KEYS): String {
        val map = counters.toMap()
        return keys.mapNotNull { k -> map[k]?.let { "${k.replace('_', ' ')} $it" } }.joinToString(" · ")
            .ifEmpty { counters.take(3).joinToString(" · ") { "${it.first.replace('_', ' ')} ${it.second}" } }
    }

    // Names of the engine's counters (rust-core/engine/src/stats.rs).
    private val SUMMARY_KEYS = listOf("flows_tcp", "flows_udp", "flows_icmp", "tun_rx_packets", "tun_tx_packets")
}
