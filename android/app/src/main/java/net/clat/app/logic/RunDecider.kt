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
    val prefix: SelectedPrefix,
    /** Upstream resolvers handed to the DNS relay. */
    val dnsServers: List<String>,
    /** The TUN configuration; a change needs a new TUN (VpnService.Builder cannot edit one). */
    val plan: VpnPlan,
)

/** Which live reconfigurations a [Decision.Reconfigure] needs. */
enum class Change { PREFIX, NETWORK, DNS }

sealed interface Decision {
    val reason: String

    /** Not running: establish the TUN and start the engine. */
    data class Start(val target: RunTarget, override val reason: String) : Decision

    /** Running and nothing relevant changed. */
    data class Keep(val target: RunTarget, override val reason: String) : Decision

    /**
     * Running, and the network changed to one whose prefix is still being discovered: the TUN and
     * the engine stay as they are ([target] is what runs), so that apps do not see the VPN go
     * away; the new network's prefix is applied live once known. The old network's discovered
     * prefix is never applied to the new network.
     */
    data class Hold(val target: RunTarget, override val reason: String) : Decision

    /** Running; tell the engine (set_prefix / network_changed / DNS) without a new TUN. */
    data class Reconfigure(val target: RunTarget, val changes: Set<Change>, override val reason: String) : Decision

    /** Running, but the TUN itself must change (MTU, app lists): tear down and establish again. */
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
)

/**
 * Decides whether the CLAT should run, given the network, the prefix and the settings.
 *
 * Rules (docs/ARCHITECTURE.md, "The Android layer"): run only when the underlying network
 * is IPv6-only, Android's own CLAT does not serve it (see [Ipv4Route]) and a NAT64 prefix is known;
 * so the app runs where the platform's clatd does not: prefixes other than /96 (ClatCoordinator
 * .clatStart refuses them), prefixes known only from configuration or the app's RFC 7050 discovery,
 * ROMs or carriers that disable clatd, and when forced. Stop when native IPv4 appears (the CLAT
 * would only add a translation hop and hide the real IPv4); on a new network or a new prefix reconfigure the running engine
 * rather than tearing down the TUN, because a new TUN makes Android drop every app socket.
 */
object RunDecider {
    fun decide(input: DecisionInput, current: RunTarget?): Decision {
        if (!input.enabled) return Decision.Stop(StopReason.DISABLED)
        val plan = when (val p = input.plan) {
            is PlanResult.Invalid -> return Decision.Stop(StopReason.CONFIG_INVALID, p.errors.joinToString("; "))
            is PlanResult.Valid -> p.plan
        }
        val net = input.network ?: return Decision.Stop(StopReason.NO_NETWORK)
        if (!input.force) {
            if (net.hasNativeIpv4) return Decision.Stop(StopReason.NATIVE_IPV4, net.interfaceName)
            // Android's clatd already translates in the kernel path: a second CLAT in user space
            // would only cost battery (and, before the addresses were chosen apart, collide with it).
            val route = net.ipv4Route
            if (route is Ipv4Route.Via) {
                return if (route.isPlatformClat) {
                    Decision.Stop(StopReason.PLATFORM_CLAT, "${net.interfaceName ?: "network"}, IPv4 source ${route.source}")
                } else {
                    // An IPv4 route the LinkProperties do not show (another stacked link): IPv4 works.
                    Decision.Stop(StopReason.NATIVE_IPV4, "${net.interfaceName ?: "network"}, IPv4 source ${route.source}")
                }
            }
            if (!net.hasIpv6) return Decision.Stop(StopReason.NO_IPV6, net.interfaceName)
        }
        val prefix = input.prefix
        if (prefix == null) {
            if (!input.discovering) return Decision.Stop(StopReason.NO_PREFIX)
            if (current != null && current.plan == plan) {
                return Decision.Hold(current, "${StopReason.DISCOVERING.text} on ${net.interfaceName ?: "the new network"}; the VPN stays up meanwhile")
            }
            return Decision.Stop(StopReason.DISCOVERING)
        }

        val target = RunTarget(net.id, prefix, net.dnsServers, plan)
        val why = if (input.force && !net.isIpv6Only) {
            "forced on ${net.interfaceName ?: "network"} (not IPv6-only), NAT64 prefix $prefix"
        } else {
            "${net.interfaceName ?: "network"} is IPv6-only, NAT64 prefix $prefix"
        }
        if (current == null) return Decision.Start(target, why)
        if (current.plan != plan) return Decision.Restart(target, "VPN settings changed; $why")

        val changes = HashSet<Change>()
        if (current.networkId != net.id) changes.add(Change.NETWORK)
        if (current.prefix.prefix != prefix.prefix) changes.add(Change.PREFIX)
        // A set: the platform may report the same resolvers in another order, which changes
        // nothing for the relay (it tries them all) and must not touch a flow.
        if (current.dnsServers.toSet() != net.dnsServers.toSet()) changes.add(Change.DNS)
        if (changes.isEmpty()) {
            // Same resolvers in another order, or the same prefix from a different source (e.g.
            // PREF64 after RFC 7050), needs no action; the UI shows the new target.
            return Decision.Keep(target, why)
        }
        val what = changes.sorted().joinToString(", ") { it.name.lowercase() }
        return Decision.Reconfigure(target, changes, "$what changed; $why")
    }
}
