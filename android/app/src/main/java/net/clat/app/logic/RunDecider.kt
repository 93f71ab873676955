package net.clat.app.logic

/** Why the CLAT is not running. The UI shows [text]; tests compare the enum. */
enum class StopReason(val text: String) {
    DISABLED("switched off"),
    CONFIG_INVALID("the configuration is invalid"),
    NO_NETWORK("no network (other than a VPN) is connected"),
    NATIVE_IPV4("the network has native IPv4: no CLAT needed"),
    PLATFORM_CLAT("Android's own CLAT serves this network"),
    NO_IPV6("the network has no IPv6 connectivity, so there is no NAT64 to reach"),
    DISCOVERING("looking for the network's NAT64 prefix"),
    NO_PREFIX("no NAT64 prefix: none configured, none from Android (PREF64 or DNS64), RFC 7050 found none"),
}

/** What the running engine was configured with; compared against the wanted state. */
data class RunTarget(
    val networkId: String,
    /**
     * The NAT64 prefix IPv4 flows are translated to; null only in pass-through ([ipv4Native])
     * when none is known, e.g. on a network with native IPv4, where none is needed.
     */
    val prefix: SelectedPrefix?,
    /** Upstream resolvers handed to the DNS relay. */
    val dnsServers: List<String>,
    /** The TUN configuration; a change needs a new TUN (VpnService.Builder cannot edit one). */
    val plan: VpnPlan,
    /**
     * IPv4 flows leave to their own destination through the network's IPv4 (native, or Android's
     * own CLAT), not through the NAT64: the pass-through of an always-on VPN where no CLAT is
     * needed. Handed to the engine as `NativeConfig.ipv4Native` / `ClatEngine.setIpv4Path`.
     */
    val ipv4Native: Boolean = false,
) {
    init {
        require(ipv4Native || prefix != null) { "translating IPv4 needs a NAT64 prefix" }
    }

    /**
     * The prefix the engine is started with: [prefix], or, in pass-through without one, the
     * well-known prefix (RFC 6052 section 2.1) as a placeholder, since the engine needs a valid
     * prefix to start and no IPv4 flow uses it while [ipv4Native] holds; a real prefix found
     * later is applied with [Change.PREFIX] before [Change.IPV4_PATH] turns translation on.
     */
    val enginePrefix: String get() = (prefix?.prefix ?: Nat64Prefix.WELL_KNOWN).toString()
}

/** Which live reconfigurations a [Decision.Reconfigure] needs. */
enum class Change {
    PREFIX,
    NETWORK,
    DNS,

    /** IPv4 flows switch between the NAT64 and native IPv4 ([RunTarget.ipv4Native]). */
    IPV4_PATH,
}

sealed interface Decision {
    val reason: String

    /** Not running: establish the TUN and start the engine. */
    data class Start(val target: RunTarget, override val reason: String) : Decision

    /** Running and nothing relevant changed. */
    data class Keep(val target: RunTarget, override val reason: String) : Decision

    /**
     * Running, and the network changed to one whose prefix is still being discovered, or (always-on
     * only) there is no network for now: the TUN and the engine stay as they are ([target] is what
     * runs), so that apps do not see the VPN go away; the new network's prefix is applied live once
     * known. The old network's discovered prefix is never applied to the new network.
     */
    data class Hold(val target: RunTarget, override val reason: String) : Decision

    /** Running; tell the engine (set_prefix / network_changed / DNS / IPv4 path) without a new TUN. */
    data class Reconfigure(val target: RunTarget, val changes: Set<Change>, override val reason: String) : Decision

    /** Running, but the TUN itself must change (MTU, app lists, lockdown): establish a new one. */
    data class Restart(val target: RunTarget, override val reason: String) : Decision

    /** Stop if running, stay stopped if not. */
    data class Stop(val why: StopReason, val detail: String? = null) : Decision {
        override val reason: String get() = if (detail == null) why.text else "${why.text}: $detail"
    }
}

/** Everything the decision depends on, captured at one moment. */
data class DecisionInput(
    /** The user (or always-on / managed configuration) wants the CLAT on. */
    val enabled: Boolean,
    /** The non-VPN default network, null when there is none. */
    val network: NetworkSnapshot?,
    /** The prefix chosen by [PrefixSelector] for [network], null when none is known (yet). */
    val prefix: SelectedPrefix?,
    /** RFC 7050 discovery is still running for [network]. */
    val discovering: Boolean = false,
    /** The TUN configuration from the settings, or the errors that make it impossible. */
    val plan: PlanResult,
    /**
     * Run whatever IPv4/IPv6 the network has (a prefix is still required). For developers and
     * emulator instrumentation tests, whose emulated networks have native IPv4.
     */
    val force: Boolean = false,
    /**
     * This app is the always-on VPN: `VpnService.isAlwaysOn()` (API 29+). Below API 29 the app
     * cannot tell and takes it as false: it stands down where no CLAT is needed, as before, and
     * Android shows "Always-on VPN disconnected" meanwhile. Lockdown
     * (`VpnService.isLockdownEnabled()`) reaches the decision through [plan] ([VpnPlan.carryIpv6]).
     */
    val alwaysOn: Boolean = false,
)

/** How IPv4 can leave on a network, before the always-on policy is applied. */
private sealed interface Ipv4Path {
    /** Through the NAT64 at [prefix]: the CLAT's own case. */
    data class Translate(val prefix: SelectedPrefix, val why: String) : Ipv4Path

    /** The network gives IPv4 itself ([why]: NATIVE_IPV4 or PLATFORM_CLAT): no CLAT needed. */
    data class Native(val why: StopReason, val detail: String) : Ipv4Path

    /** Neither, for now ([why]: NO_IPV6, DISCOVERING or NO_PREFIX). */
    data class Unavailable(val why: StopReason, val detail: String? = null) : Ipv4Path
}

/**
 * Decides whether the CLAT should run, and how, given the network, the prefix and the settings.
 *
 * Rules (docs/ARCHITECTURE.md, "The Android layer"): translate only when the underlying network
 * is IPv6-only, Android's own CLAT does not serve it (see [Ipv4Route]) and a NAT64 prefix is known;
 * so the app translates where the platform's clatd does not: prefixes other than /96 (ClatCoordinator
 * .clatStart refuses them), prefixes known only from configuration or the app's RFC 7050 discovery,
 * ROMs or carriers that disable clatd, and when forced. On a new network or a new prefix reconfigure
 * the running engine rather than tearing down the TUN, because a new TUN makes Android drop every
 * app socket.
 *
 * Where no translation is needed or possible, it depends on always-on ([DecisionInput.alwaysOn]):
 * - not always-on: stop (native IPv4 or Android's CLAT: the CLAT would only add a hop and hide the
 *   real IPv4; no IPv6 or no prefix: nothing to translate to), and say why;
 * - always-on: keep the VPN up in pass-through ([RunTarget.ipv4Native]: IPv4 flows leave natively,
 *   or fail at once where the network has no IPv4 path yet). Android shows "Always-on VPN
 *   disconnected" whenever the always-on app's VPN is not connected (Vpn.updateAlwaysOnNotification
 *   in frameworks/base services/core/java/com/android/server/connectivity/Vpn.java: visible when
 *   mAlwaysOn and the state is not CONNECTED), and under lockdown every UID of the VPN is blocked
 *   while it is down. A pass-through VPN costs a hop for IPv4 but takes nothing away, whereas a
 *   stopped one takes everything away under lockdown. Only the user (switched off), an invalid
 *   configuration or the lack of any network before the first start stop it. A new network still
 *   being discovered holds the running engine as without always-on (discovery takes seconds; the
 *   flows are reset by the network change anyway). Native IPv4 appearing or going on the running
 *   network is a live [Change.IPV4_PATH], no new TUN.
 */
object RunDecider {
    fun decide(input: DecisionInput, current: RunTarget?): Decision {
        if (!input.enabled) return Decision.Stop(StopReason.DISABLED)
        val plan = when (val p = input.plan) {
            is PlanResult.Invalid -> return Decision.Stop(StopReason.CONFIG_INVALID, p.errors.joinToString("; "))
            is PlanResult.Valid -> p.plan
        }
        val net = input.network
        if (net == null) {
            if (input.alwaysOn && current != null) {
                return Decision.Hold(current, "${StopReason.NO_NETWORK.text}; the always-on VPN stays up for the next one")
            }
            return Decision.Stop(StopReason.NO_NETWORK)
        }
        val name = net.interfaceName ?: "network"
        val target: RunTarget
        val why: String
        when (val path = ipv4Path(input, net)) {
            is Ipv4Path.Translate -> {
                target = RunTarget(net.id, path.prefix, net.dnsServers, plan, ipv4Native = false)
                why = path.why
            }
            is Ipv4Path.Native -> {
                if (!input.alwaysOn) return Decision.Stop(path.why, path.detail)
                // Keep a known prefix: when the IPv4 goes, translation starts with no new lookup.
                target = RunTarget(net.id, input.prefix, net.dnsServers, plan, ipv4Native = true)
                val what = if (path.why == StopReason.PLATFORM_CLAT) path.why.text else "the network has native IPv4"
                why = "pass-through: $what (${path.detail}); the always-on VPN stays up, IPv4 and IPv6 leave natively"
            }
            is Ipv4Path.Unavailable -> {
                val holds = path.why == StopReason.DISCOVERING && current != null && current.plan == plan
                if (holds) {
                    return Decision.Hold(current!!, "${StopReason.DISCOVERING.text} on ${net.interfaceName ?: "the new network"}; the VPN stays up meanwhile")
                }
                if (!input.alwaysOn) return Decision.Stop(path.why, path.detail)
                target = RunTarget(net.id, input.prefix.takeIf { net.hasIpv6 }, net.dnsServers, plan, ipv4Native = true)
                why = "no IPv4 path on $name: ${path.why.text}; the always-on VPN stays up (IPv4 unreachable meanwhile)"
            }
        }
        if (current == null) return Decision.Start(target, why)
        if (current.plan != plan) return Decision.Restart(target, "VPN settings changed; $why")

        val changes = HashSet<Change>()
        if (current.networkId != net.id) changes.add(Change.NETWORK)
        // A target without a prefix leaves the engine's as it is (unused in pass-through); a prefix
        // known again later is applied then, even if it equals the engine's.
        if (target.prefix != null && current.prefix?.prefix != target.prefix.prefix) changes.add(Change.PREFIX)
        // A set: the platform may report the same resolvers in another order, which changes
        // nothing for the relay (it tries them all) and must not touch a flow.
        if (current.dnsServers.toSet() != net.dnsServers.toSet()) changes.add(Change.DNS)
        if (current.ipv4Native != target.ipv4Native) changes.add(Change.IPV4_PATH)
        if (changes.isEmpty()) {
            // Same resolvers in another order, or the same prefix from a different source (e.g.
            // PREF64 after RFC 7050), needs no action; the UI shows the new target.
            return Decision.Keep(target, why)
        }
        val what = changes.sorted().joinToString(", ") { it.name.lowercase() }
        return Decision.Reconfigure(target, changes, "$what changed; $why")
    }

    private fun ipv4Path(input: DecisionInput, net: NetworkSnapshot): Ipv4Path {
        val name = net.interfaceName ?: "network"
        if (!input.force) {
            if (net.hasNativeIpv4) return Ipv4Path.Native(StopReason.NATIVE_IPV4, name)
            // Android's clatd already translates in the kernel path: a second CLAT in user space
            // would only cost battery (and, before the addresses were chosen apart, collide with it).
            val route = net.ipv4Route
            if (route is Ipv4Route.Via) {
                // Not a clatd source: an IPv4 route the LinkProperties do not show (another stacked link).
                val why = if (route.isPlatformClat) StopReason.PLATFORM_CLAT else StopReason.NATIVE_IPV4
                return Ipv4Path.Native(why, "$name, IPv4 source ${route.source}")
            }
            if (!net.hasIpv6) return Ipv4Path.Unavailable(StopReason.NO_IPV6, net.interfaceName)
        }
        val prefix = input.prefix
            ?: return Ipv4Path.Unavailable(if (input.discovering) StopReason.DISCOVERING else StopReason.NO_PREFIX)
        val why = if (input.force && !net.isIpv6Only) {
            "forced on $name (not IPv6-only), NAT64 prefix $prefix"
        } else {
            "$name is IPv6-only, NAT64 prefix $prefix"
        }
        return Ipv4Path.Translate(prefix, why)
    }
}
