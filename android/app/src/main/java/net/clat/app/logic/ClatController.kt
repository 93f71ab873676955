package net.clat.app.logic

import net.clat.core.DiscoveredPrefix

/**
 * What the controller needs from the platform. ClatVpnService implements it with
 * VpnService.Builder, the JNI bridge and a worker thread; tests implement it with fakes.
 */
interface ClatPort {
    /** Establishes the TUN for [target] and starts the engine on it; null on success, else why not. */
    fun startEngine(target: RunTarget): String?

    /** Stops the engine and closes the TUN; idempotent. */
    fun stopEngine()

    /**
     * The TUN itself must change (its plan did): establishes the new TUN and starts an engine on
     * it first, then stops the old engine and closes the old descriptor, so that the platform
     * hands the VPN over from one interface to the next instead of tearing it down. Null on
     * success; on failure nothing runs any more and the result says why.
     */
    fun replaceEngine(target: RunTarget): String?

    /** Applies [changes] to the running engine; null on success, else why not. */
    fun reconfigure(target: RunTarget, changes: Set<Change>): String?

    /**
     * The underlying network was lost while the engine runs: tell the platform the VPN has no
     * underlying network for now (`setUnderlyingNetworks(emptyArray())`) while the TUN stays.
     */
    fun clearUnderlyingNetworks()

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
 * decision through [ClatPort]. Single-threaded: call it from one thread (the main thread), the
 * thread [scheduler] runs its actions on. Views produced by timers go to [publish].
 *
 * Policies that live here rather than in the service, so they are tested:
 * - RFC 7050 discovery runs only when no configured prefix and no PREF64 is known, once per
 *   network, again when the TTL runs out (clamped to [MIN_REVALIDATE_S]..[MAX_REVALIDATE_S]),
 *   when the network becomes VALIDATED or its link properties change, or [RETRY_DISCOVERY_S]
 *   after it found nothing. A re-validation keeps the known prefixes meanwhile: one that
 *   confirms them leaves the engine alone, a changed prefix is applied live (setPrefix), and a
 *   failed one keeps them for up to [MAX_FAILED_REVALIDATIONS] tries (a DNS hiccup must not
 *   drop every app connection);
 * - unchanged network snapshots (capability updates that change nothing we use) are ignored;
 * - a loss of the network is debounced for [LOSS_GRACE_MS] with the TUN kept, so that a switch
 *   whose onLost comes before the next onAvailable does not show apps the VPN going away; as the
 *   always-on VPN ([alwaysOn]) the TUN outlives the grace too, and the next network is a NETWORK
 *   change;
 * - a failed start is not retried on the same network (capability updates arrive often, a retry
 *   loop would rebuild the TUN again and again) but is on a new network, a configuration change
 *   or an explicit start;
 * - an engine that ends by itself is restarted after a [RestartBackoff] delay.
 */
class ClatController(
    private val port: ClatPort,
    private val ownPackage: String,
    private val scheduler: Scheduler,
    private val publish: (ControllerView) -> Unit = {},
    private val backoff: RestartBackoff = RestartBackoff(),
) {
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

    /** Ask again as soon as the running discovery ends (its inputs went stale meanwhile). */
    private var rediscoverPending = false
    private var failedRevalidations = 0
    private var failure: String? = null
    private var failedNetwork: String? = null
    private var lossTimer: Cancellable? = null
    private var restartTimer: Cancellable? = null

    fun setUserChoices(enabled: Boolean, prefixOverride: String?, force: Boolean) {
        this.enabled = enabled
        this.userPrefixOverride = prefixOverride
        this.force = force
    }

    /** An explicit start (UI, tile, always-on): retries even after a failure. */
    fun onStartRequested(): ControllerView {
        enabled = true
        clearFailure()
        backoff.reset()
        return evaluate("start requested")
    }

    fun onStopRequested(): ControllerView {
        enabled = false
        cancelRestart()
        return evaluate("stop requested")
    }

    fun onManagedConfig(parsed: ParsedManagedConfig): ControllerView {
        managed = parsed
        clearFailure()
        return evaluate("managed configuration changed")
    }

    fun onUserChoices(prefixOverride: String?, force: Boolean): ControllerView {
        userPrefixOverride = prefixOverride
        this.force = force
        clearFailure()
        return evaluate("settings changed")
    }

    /**
     * The non-VPN default network as the monitor sees it now; null when it was lost. Returns
     * null when nothing changed (the same snapshot again), so the caller updates no notification.
     */
    fun onNetwork(s: NetworkSnapshot?): ControllerView? {
        if (s == null) return onNetworkLost()
        val wasLosing = lossTimer != null
        lossTimer?.cancel()
        lossTimer = null
        val prev = network
        if (s == prev && !wasLosing) return null
        network = s
        val running = current
        if (wasLosing && running != null && running.networkId == s.id) {
            // The lost network came back: its sockets died with it and the platform was told
            // there is no underlying network, so treat it as a network change (NETWORK).
            current = running.copy(networkId = "")
        }
        if (failure != null && s.id != failedNetwork) clearFailure()
        if (discoveredFor != null && discoveredFor != s.id) forget()
        if (discoveringFor != null && discoveringFor != s.id) discoveringFor = null
        if (prev != null && prev.id == s.id) {
            val becameValidated = s.validated && !prev.validated
            val linkChanged = prev.copy(validated = s.validated) != s
            if (becameValidated || linkChanged) revalidate()
        }
        return evaluate("network changed")
    }

    /**
     * The network went away. With an engine running the TUN is kept for [LOSS_GRACE_MS]: the
     * next network usually shows up within that time (Wi-Fi to mobile), and then only the
     * engine's upstream changes. Meanwhile the platform is told the VPN has no underlying
     * network, which is the truth.
     */
    private fun onNetworkLost(): ControllerView {
        if (current == null || network == null) {
            lossTimer?.cancel()
            lossTimer = null
            network = null
            return evaluate("network lost")
        }
        if (lossTimer == null) {
            port.clearUnderlyingNetworks()
            lossTimer = scheduler.schedule(LOSS_GRACE_MS) {
                lossTimer = null
                network = null
                // An always-on VPN holds on without a network; whichever network comes next (the
                // same one again included) is then a network change for the engine (NETWORK).
                current = current?.copy(networkId = "")
                publish(evaluate("network lost"))
            }
        }
        return evaluate("network lost, waiting for another")
    }

    /** RFC 7050 finished for [networkId]: the prefixes ClatNative.discover returned, or its error. */
    fun onDiscovery(networkId: String, result: Result<List<DiscoveredPrefix>>): ControllerView {
        if (discoveringFor == networkId) discoveringFor = null
        if (network?.id != networkId) return evaluate("stale discovery result ignored")
        discoveredFor = networkId
        val (ok, bad) = result.fold(
            onSuccess = { PrefixSelector.parseDiscovered(it) },
            onFailure = { emptyList<Nat64Prefix>() to listOf("RFC 7050 discovery: ${it.message}") },
        )
        if (ok.isNotEmpty()) {
            discovered = ok
            failedRevalidations = 0
            discoveryNote = bad.takeIf { it.isNotEmpty() }?.joinToString("; ", "ignored discovery answers: ")
            val ttl = result.getOrNull()?.minOfOrNull { it.ttlSeconds }
            if (ttl != null) port.scheduleRediscovery(networkId, ttl.coerceIn(MIN_REVALIDATE_S, MAX_REVALIDATE_S))
        } else {
            val why = bad.joinToString("; ").ifEmpty { "RFC 7050 discovery found no prefix" }
            if (discovered.isNotEmpty() && ++failedRevalidations < MAX_FAILED_REVALIDATIONS) {
                // Keep what the network said last time: one lost DNS answer must not reset flows.
                discoveryNote = "re-validating the NAT64 prefix failed ($why); keeping ${discovered.first()}"
            } else {
                discovered = emptyList()
                failedRevalidations = 0
                discoveryNote = why
            }
            // A DNS64 may come up after the network does: ask again later.
            port.scheduleRediscovery(networkId, RETRY_DISCOVERY_S)
        }
        if (rediscoverPending) {
            rediscoverPending = false
            discoveredFor = null
        }
        return evaluate("discovery finished")
    }

    /** The TTL ran out (or a retry is due): discover again for [networkId] if still current. */
    fun onRediscover(networkId: String): ControllerView? {
        if (network?.id != networkId) return null
        revalidate()
        return evaluate("re-validating the NAT64 prefix")
    }

    /**
     * The engine's loop ended by itself (TUN closed, fatal error), seen at once by the service's
     * exit watch. The reason is shown and a restart is scheduled by [backoff].
     */
    fun onEngineExit(reason: String): ControllerView {
        port.stopEngine()
        current = null
        cancelRestart()
        val delay = backoff.nextDelay(scheduler.nowMs())
        if (delay == null) {
            fail("the CLAT engine stopped: $reason (gave up after ${backoff.attemptsInRow} restarts)")
        } else {
            fail("the CLAT engine stopped: $reason; restarting in ${(delay + 999) / 1000} s")
            restartTimer = scheduler.schedule(delay) {
                restartTimer = null
                failure = null
                publish(evaluate("restarting the engine"))
            }
        }
        return evaluate("engine stopped")
    }

    /**
     * A package named in the running TUN's app lists was installed or removed: the platform
     * resolved the names to UIDs at establish() ([AppListWatch]), so the TUN is built again,
     * make-before-break ([ClatPort.replaceEngine]) like any other rebuild.
     */
    fun onListedPackageChanged(): ControllerView {
        val running = current ?: return evaluate("listed app installed or removed")
        started(running, port.replaceEngine(running))
        return evaluate("a listed app was installed or removed: VPN re-established")
    }

    /** The user's "keep local traffic local" choice ([LocalRoutes]); managed configuration wins. */
    var userExcludeLocalTraffic: Boolean = true

    /**
     * Lockdown as known ([AlwaysOnState]): under lockdown DNS goes through the relay
     * ([DnsPolicy]), so a change rebuilds the TUN (the plan's DNS servers differ).
     */
    var lockdown: Boolean = false

    /**
     * Always-on as known ([AlwaysOnState]; API 29+, false before): the VPN then never idles
     * ([RunDecider]). A change alone needs no new TUN.
     */
    var alwaysOn: Boolean = false

    /**
     * Always-on or lockdown became known or changed ([AlwaysOnState]): decides again at once,
     * whether or not the network changed too (a read after establish() corrects what a start
     * assumed). Null when neither changed.
     */
    fun onAlwaysOn(alwaysOn: Boolean, lockdown: Boolean): ControllerView? {
        if (alwaysOn == this.alwaysOn && lockdown == this.lockdown) return null
        this.alwaysOn = alwaysOn
        this.lockdown = lockdown
        return evaluate("always-on or lockdown changed")
    }

    /** The user's per-app selection ([AppSelection]); managed app lists win. */
    var userApps: AppSelection = AppSelection.ALL

    fun resolved(): ResolvedSettings = SettingsResolver.resolve(
        managed, userPrefixOverride, ownPackage, userExcludeLocalTraffic, lockdown = lockdown, userApps = userApps,
    )

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
            alwaysOn = alwaysOn,
        )
        val decision = RunDecider.decide(input, current)
        when (decision) {
            is Decision.Start -> started(decision.target, port.startEngine(decision.target))
            is Decision.Restart -> started(decision.target, port.replaceEngine(decision.target))
            is Decision.Reconfigure -> port.reconfigure(decision.target, decision.changes)?.let {
                port.stopEngine()
                current = null
                fail("reconfiguring the CLAT failed: $it")
            } ?: run { current = decision.target }
            is Decision.Keep -> current = decision.target
            is Decision.Hold -> Unit
            is Decision.Stop -> if (current != null) {
                port.stopEngine()
                current = null
            }
        }
        val losing = lossTimer != null && current != null
        val reason = nativeError ?: failure?.takeIf { enabled }
            ?: if (losing) "network lost; the VPN stays up ${LOSS_GRACE_MS / 1000} s for the next one" else decision.reason
        val warnings = ArrayList(resolved.warnings)
        (resolved.plan as? PlanResult.Valid)?.plan?.notes?.let { warnings.addAll(it) }
        discoveryNote?.let { warnings.add(it) }
        return ControllerView(decision, current != null, reason, current, warnings)
    }

    private fun started(target: RunTarget, error: String?) {
        if (error == null) {
            current = target
            backoff.onStarted(scheduler.nowMs())
        } else {
            current = null
            fail(error)
        }
    }

    /**
     * Discover again for the current network, keeping the known prefixes until the answer comes.
     * Only where RFC 7050 is in use (it ran for this network before); one already running is
     * asked again when it ends, since its resolvers or the DNS64 may have changed meanwhile.
     */
    private fun revalidate() {
        val id = network?.id ?: return
        when (id) {
            discoveringFor -> rediscoverPending = true
            discoveredFor -> discoveredFor = null
        }
    }

    private fun fail(why: String) {
        failure = why
        failedNetwork = network?.id
    }

    private fun clearFailure() {
        failure = null
        cancelRestart()
    }

    private fun cancelRestart() {
        restartTimer?.cancel()
        restartTimer = null
    }

    private fun forget() {
        discoveredFor = null
        discovered = emptyList()
        discoveryNote = null
        rediscoverPending = false
        failedRevalidations = 0
    }

    companion object {
        const val RETRY_DISCOVERY_S = 60L
        const val MIN_REVALIDATE_S = 60L
        const val MAX_REVALIDATE_S = 3600L

        /** Consecutive failed re-validations after which the known prefix is given up. */
        const val MAX_FAILED_REVALIDATIONS = 3

        /** How long the TUN outlives a lost network, waiting for the next one. */
        const val LOSS_GRACE_MS = 5_000L
    }
}
