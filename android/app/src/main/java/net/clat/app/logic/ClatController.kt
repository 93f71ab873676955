package net.clat.app.logic

/**
 * What the controller needs from the platform. ClatVpnService implements it with
 * VpnService.Builder, the JNI bridge and a worker thread; tests implement it with fakes.
 */
interface ClatPort {
    /** Establishes the TUN for [target] and starts the engine on it; null on success, else why not. */
    fun startEngine(target: RunTarget): String?

    /** Stops the engine and closes the TUN; idempotent. */
    fun stopEngine()

    /** Applies [changes] to the running engine; null on success, else why not. */
    fun reconfigure(target: RunTarget, changes: Set<Change>): String?

    /** Starts RFC 7050 discovery for [network] in the background; the result comes back through
     * [ClatController.onDiscovery]. */
    fun startDiscovery(network: NetworkSnapshot)

    /** Calls [ClatController.onRediscover] for [networkId] after [delaySeconds]. */
    fun scheduleRediscovery(networkId: String, delaySeconds: Long)
}

/** Everything the UI shows, computed by the controller. */
data class ControllerView(
    val decision: Decision,
    val running: Boolean,
    val reason: String,
    val target: RunTarget?,
    val warnings: List<String>,
)

/**
 * The CLAT's control loop without Android: keeps the inputs (network, managed configuration,
 * user choices, discovery results, failures), asks [RunDecider] on every event and applies the
 * decision through [ClatPort]. Single-threaded: call it from one thread (the main thread).
 *
 * Policies that live here rather than in the service, so they are tested:
 * - RFC 7050 discovery runs only when no configured prefix and no PREF64 is known, once per
 *   network, again when the TTL runs out (clamped to [MIN_REVALIDATE_S]..[MAX_REVALIDATE_S]) or
 *   [RETRY_DISCOVERY_S] after it found nothing;
 * - a failed start is not retried on the same network (capability updates arrive often, a retry
 *   loop would rebuild the TUN again and again) but is on a new network, a configuration change
 *   or an explicit start.
 */
class ClatController(private val port: ClatPort, private val ownPackage: String) {
    var managed: ParsedManagedConfig = ParsedManagedConfig(ManagedConfig(), emptyList())
        private set
    var userPrefixOverride: String? = null
        private set
    var enabled: Boolean = false
        private set
    var force: Boolean = false
        private set

    /** Set when the native library cannot be loaded: nothing can run, and the UI says why. */
    var nativeError: String? = null

    var network: NetworkSnapshot? = null
        private set
    var current: RunTarget? = null
        private set

    private var discoveredFor: String? = null
    private var discovered: List<Nat64Prefix> = emptyList()
    private var discoveryNote: String? = null
    private var discoveringFor: String? = null
    private var failure: String? = null
    private var failedNetwork: String? = null

    fun setUserChoices(enabled: Boolean, prefixOverride: String?, force: Boolean) {
        this.enabled = enabled
        this.userPrefixOverride = prefixOverride
        this.force = force
    }

    /** An explicit start (UI, tile, always-on): retries even after a failure. */
    fun onStartRequested(): ControllerView {
        enabled = true
        failure = null
        return evaluate("start requested")
    }

    fun onStopRequested(): ControllerView {
        enabled = false
        return evaluate("stop requested")
    }

    fun onManagedConfig(parsed: ParsedManagedConfig): ControllerView {
        managed = parsed
        failure = null
        return evaluate("managed configuration changed")
    }

    fun onUserChoices(prefixOverride: String?, force: Boolean): ControllerView {
        userPrefixOverride = prefixOverride
        this.force = force
        failure = null
        return evaluate("settings changed")
    }

    fun onNetwork(s: NetworkSnapshot?): ControllerView {
        network = s
        if (failure != null && s?.id != failedNetwork) failure = null
        if (discoveredFor != null && discoveredFor != s?.id) forget()
        return evaluate("network changed")
    }

    /** RFC 7050 finished for [networkId]: entries as ClatNative.discover returns them. */
    fun onDiscovery(networkId: String, result: Result<Array<String>>): ControllerView {
        if (discoveringFor == networkId) discoveringFor = null
        if (network?.id != networkId) return evaluate("stale discovery result ignored")
        discoveredFor = networkId
        result.fold(
            onSuccess = { entries ->
                val (ok, bad) = PrefixSelector.parseDiscovered(entries)
                discovered = ok
                discoveryNote = bad.takeIf { it.isNotEmpty() }?.joinToString("; ", "ignored discovery answers: ")
                val ttl = entries.mapNotNull { it.trim().split(Regex("\\s+")).getOrNull(2)?.toLongOrNull() }.minOrNull()
                if (ok.isEmpty()) {
                    port.scheduleRediscovery(networkId, RETRY_DISCOVERY_S)
                } else if (ttl != null) {
                    port.scheduleRediscovery(networkId, ttl.coerceIn(MIN_REVALIDATE_S, MAX_REVALIDATE_S))
                }
            },
            onFailure = { e ->
                discovered = emptyList()
                discoveryNote = "RFC 7050 discovery: ${e.message}"
                // A DNS64 may come up after the network does: ask again later.
                port.scheduleRediscovery(networkId, RETRY_DISCOVERY_S)
            },
        )
        return evaluate("discovery finished")
    }

    /** The TTL ran out (or a retry is due): discover again for [networkId] if still current. */
    fun onRediscover(networkId: String): ControllerView? {
        if (network?.id != networkId) return null
        forget()
        return evaluate("re-validating the NAT64 prefix")
    }

    /** The engine's loop ended by itself (TUN closed, fatal error). */
    fun onEngineExit(reason: String): ControllerView {
        port.stopEngine()
        current = null
        fail("the CLAT engine stopped: $reason")
        return evaluate("engine stopped")
    }

    /**
     * A package named in the running TUN's app lists was installed or removed: the platform
     * resolved the names to UIDs at establish() ([AppListWatch]), so the TUN is built again.
     */
    fun onListedPackageChanged(): ControllerView {
        if (current == null) return evaluate("listed app installed or removed")
        port.stopEngine()
        current = null
        return evaluate("a listed app was installed or removed: VPN re-established")
    }

    /** The user's "keep local traffic local" choice ([LocalRoutes]); managed configuration wins. */
    var userExcludeLocalTraffic: Boolean = true

    fun resolved(): ResolvedSettings =
        SettingsResolver.resolve(managed, userPrefixOverride, ownPackage, userExcludeLocalTraffic)

    fun evaluate(@Suppress("UNUSED_PARAMETER") trigger: String): ControllerView {
        val resolved = resolved()
        val s = network
        val pref64 = s?.pref64?.let { Nat64Prefix.parse(it).getOrNull() }
        val candidates = PrefixCandidates(resolved.settings.prefixOverride, pref64, discovered)
        val wantsDiscovery = enabled && s != null && (s.isIpv6Only || force) && s.dnsServers.isNotEmpty() &&
            PrefixSelector.needsDiscovery(candidates) && discoveredFor != s.id && discoveringFor != s.id
        if (wantsDiscovery) {
            discoveringFor = s!!.id
            port.startDiscovery(s)
        }
        val input = DecisionInput(
            enabled = enabled && nativeError == null && failure == null,
            network = s,
            prefix = PrefixSelector.select(candidates),
            discovering = s != null && discoveringFor == s.id,
            plan = resolved.plan,
            force = force,
        )
        val decision = RunDecider.decide(input, current)
        when (decision) {
            is Decision.Start -> port.startEngine(decision.target)?.let { fail(it) } ?: run { current = decision.target }
            is Decision.Restart -> {
                port.stopEngine()
                current = null
                port.startEngine(decision.target)?.let { fail(it) } ?: run { current = decision.target }
            }
            is Decision.Reconfigure -> port.reconfigure(decision.target, decision.changes)?.let {
                port.stopEngine()
                current = null
                fail("reconfiguring the CLAT failed: $it")
            } ?: run { current = decision.target }
            is Decision.Keep -> current = decision.target
            is Decision.Stop -> if (current != null) {
                port.stopEngine()
                current = null
            }
        }
        val reason = nativeError ?: failure?.takeIf { enabled } ?: decision.reason
        val warnings = ArrayList(resolved.warnings)
        (resolved.plan as? PlanResult.Valid)?.plan?.notes?.let { warnings.addAll(it) }
        discoveryNote?.let { warnings.add(it) }
        return ControllerView(decision, current != null, reason, current, warnings)
    }

    private fun fail(why: String) {
        failure = why
        failedNetwork = network?.id
    }

    private fun forget() {
        discoveredFor = null
        discovered = emptyList()
        discoveryNote = null
    }

    companion object {
        const val RETRY_DISCOVERY_S = 60L
        const val MIN_REVALIDATE_S = 60L
        const val MAX_REVALIDATE_S = 3600L
    }
}
