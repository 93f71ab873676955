package net.clat.app

import android.app.PendingIntent
import android.content.BroadcastReceiver
import android.content.Context
import android.content.Intent
import android.content.IntentFilter
import android.content.pm.PackageManager
import android.content.pm.ServiceInfo
import android.net.Network
import android.net.VpnService
import android.os.Build
import android.os.Handler
import android.os.Looper
import android.os.ParcelFileDescriptor
import android.system.OsConstants
import android.util.Log
import java.util.concurrent.ExecutorService
import java.util.concurrent.Executors
import net.clat.app.logic.Change
import net.clat.app.logic.Counters
import net.clat.app.logic.Decision
import net.clat.app.logic.ManagedConfig
import net.clat.app.logic.DecisionInput
import net.clat.app.logic.Nat64Prefix
import net.clat.app.logic.NetworkSnapshot
import net.clat.app.logic.ParsedManagedConfig
import net.clat.app.logic.PrefixCandidates
import net.clat.app.logic.PrefixSelector
import net.clat.app.logic.ResolvedSettings
import net.clat.app.logic.RunDecider
import net.clat.app.logic.RunTarget
import net.clat.app.logic.SettingsResolver
import net.clat.app.logic.VpnPlan
import net.clat.core.ClatNative
import net.clat.core.NativeConfig
import net.clat.core.SocketProtector

/**
 * The CLAT as a VpnService. Thin glue: every decision is made by RunDecider / VpnConfigBuilder /
 * PrefixSelector (net.clat.app.logic); this class gathers their inputs from Android, applies
 * their outputs to VpnService.Builder and the Rust engine, and publishes the status.
 *
 * All state lives on the main thread; only RFC 7050 discovery (blocking DNS) runs on [worker].
 */
class ClatVpnService : VpnService() {
    private val main = Handler(Looper.getMainLooper())
    private val worker: ExecutorService = Executors.newSingleThreadExecutor { r -> Thread(r, "clat-discovery") }
    private lateinit var prefs: UserPrefs
    private lateinit var monitor: NetworkMonitor

    private var managed: ParsedManagedConfig = ParsedManagedConfig(ManagedConfig(), emptyList()) // read in onCreate
    private var network: Network? = null
    private var snapshot: NetworkSnapshot? = null

    /** RFC 7050 results per network id (a new network discovers again). */
    private var discoveredFor: String? = null
    private var discovered: List<Nat64Prefix> = emptyList()
    private var discoveryNote: String? = null
    private var discoveringFor: String? = null

    private var tun: ParcelFileDescriptor? = null
    private var handle: Long = 0
    private var current: RunTarget? = null
    /** Why the last start failed, and on which network: no retry on that network until it changes. */
    private var lastFailure: String? = null
    private var failedNetwork: String? = null
    private var nativeError: String? = null
    private var lastStatus = ClatStatus()

    /** The network upstream sockets must use; read by the engine's thread through [protector]. */
    @Volatile private var upstream: Network? = null

    private val protector = SocketProtector { fd -> protectAndBind(fd) }

    private val restrictionsReceiver = object : BroadcastReceiver() {
        override fun onReceive(c: Context, i: Intent) {
            managed = ManagedConfigReader.read(this@ClatVpnService)
            lastFailure = null
            evaluate("managed configuration changed")
        }
    }

    private val tick = object : Runnable {
        override fun run() {
            refreshCounters()
            if (handle != 0L) main.postDelayed(this, COUNTER_INTERVAL_MS)
        }
    }

    override fun onCreate() {
        super.onCreate()
        prefs = UserPrefs(this)
        managed = ManagedConfigReader.read(this)
        nativeError = try {
            ClatNative.load()
            null
        } catch (e: Throwable) { // UnsatisfiedLinkError: an APK built without the Rust library
            "native library not available: ${e.message}"
        }
        monitor = NetworkMonitor(this) { n, s -> onNetwork(n, s) }
        val filter = IntentFilter(Intent.ACTION_APPLICATION_RESTRICTIONS_CHANGED)
        if (Build.VERSION.SDK_INT >= 33) {
            registerReceiver(restrictionsReceiver, filter, Context.RECEIVER_NOT_EXPORTED)
        } else {
            @Suppress("UnspecifiedRegisterReceiverFlag")
            registerReceiver(restrictionsReceiver, filter)
        }
    }

    override fun onStartCommand(intent: Intent?, flags: Int, startId: Int): Int {
        when (intent?.action) {
            ACTION_STOP -> {
                prefs.enabled = false
                shutdown("switched off")
                return START_NOT_STICKY
            }
            // Always-on VPN starts the service with this action; so does a restart after the
            // process died (null intent, START_STICKY). Both mean "the CLAT should be on".
            null, SERVICE_INTERFACE, ACTION_START -> prefs.enabled = true
        }
        if (intent?.hasExtra(EXTRA_FORCE) == true) prefs.force = intent.getBooleanExtra(EXTRA_FORCE, false)
        if (prepare(this) != null) {
            // No consent (or another app's VPN holds it): only the activity can ask the user.
            prefs.enabled = false
            publish(ClatStatus(reason = "VPN permission not granted: open the app and press Start"))
            goForeground()
            shutdown(null)
            return START_NOT_STICKY
        }
        lastFailure = null // an explicit start retries
        monitor.start()
        evaluate("started")
        goForeground()
        return START_STICKY
    }

    override fun onRevoke() {
        // The user revoked the permission or another VPN app took over: stop and stay off.
        prefs.enabled = false
        shutdown("VPN permission revoked or another VPN started")
        super.onRevoke()
    }

    override fun onDestroy() {
        stopEngine()
        monitor.stop()
        runCatching { unregisterReceiver(restrictionsReceiver) }
        worker.shutdownNow()
        main.removeCallbacksAndMessages(null)
        super.onDestroy()
    }

    private fun onNetwork(n: Network?, s: NetworkSnapshot?) {
        network = n
        snapshot = s
        // A new network deserves a new try; the same one (capabilities change often, e.g. signal
        // strength) must not retry a failed start again and again.
        if (lastFailure != null && s?.id != failedNetwork) lastFailure = null
        evaluate("network changed")
    }

    /** Gathers inputs, asks RunDecider, applies the decision. Main thread only. */
    private fun evaluate(trigger: String) {
        val resolved = SettingsResolver.resolve(managed, prefs.prefixOverride, packageName)
        val s = snapshot
        if (discoveredFor != null && discoveredFor != s?.id) {
            discoveredFor = null
            discovered = emptyList()
            discoveryNote = null
        }
        val pref64 = s?.pref64?.let { Nat64Prefix.parse(it).getOrNull() }
        val candidates = PrefixCandidates(resolved.settings.prefixOverride, pref64, discovered)
        if (s != null && s.isIpv6Only && PrefixSelector.needsDiscovery(candidates) && discoveredFor != s.id) {
            startDiscovery(s)
        }
        val input = DecisionInput(
            enabled = prefs.enabled && nativeError == null && lastFailure == null,
            network = s,
            prefix = PrefixSelector.select(candidates),
            discovering = discoveringFor == s?.id && s != null,
            plan = resolved.plan,
            force = prefs.force,
        )
        val decision = RunDecider.decide(input, current)
        Log.i(TAG, "$trigger -> $decision")
        when (decision) {
            is Decision.Start -> startEngine(decision.target)
            is Decision.Restart -> {
                stopEngine()
                startEngine(decision.target)
            }
            is Decision.Reconfigure -> reconfigure(decision.target, decision.changes)
            is Decision.Keep -> current = decision.target
            is Decision.Stop -> stopEngine()
        }
        val reason = when {
            nativeError != null -> nativeError!!
            lastFailure != null -> lastFailure!!
            else -> decision.reason
        }
        publish(statusFor(resolved, reason))
    }

    private fun startEngine(t: RunTarget) {
        val n = network ?: return
        upstream = n
        val pfd = try {
            buildTun(t.plan, n)
        } catch (e: Exception) {
            fail("could not create the VPN interface: ${e.message}")
            return
        }
        if (pfd == null) {
            fail("VPN permission missing (establish() returned null)")
            return
        }
        val settings = SettingsResolver.resolve(managed, prefs.prefixOverride, packageName).settings
        val cfg = NativeConfig(
            prefix = t.prefix.prefix.toString(),
            dnsServers = t.dnsServers.toTypedArray(),
            mtu = t.plan.mtu,
            maxFlows = settings.maxFlows,
            udpTimeoutSec = settings.udpTimeoutSec,
        )
        try {
            // The core owns the descriptor from here on, whatever happens.
            handle = ClatNative.start(pfd.detachFd(), cfg, protector)
            tun = pfd
            current = t
            main.removeCallbacks(tick)
            main.postDelayed(tick, COUNTER_INTERVAL_MS)
        } catch (e: Exception) {
            runCatching { pfd.close() }
            fail("the CLAT engine did not start: ${e.message}")
        }
    }

    private fun buildTun(plan: VpnPlan, n: Network): ParcelFileDescriptor? {
        val b = Builder().setSession(plan.session).setMtu(plan.mtu)
        plan.addresses.forEach { b.addAddress(it.address, it.prefixLength) }
        plan.routes.forEach { b.addRoute(it.address, it.prefixLength) }
        plan.dnsServers.forEach { b.addDnsServer(it) }
        if (plan.allowIpv6Bypass) b.allowFamily(OsConstants.AF_INET6)
        if (Build.VERSION.SDK_INT >= 29) b.setMetered(plan.metered)
        b.setUnderlyingNetworks(arrayOf(n))
        for (app in plan.allowedApps) {
            try {
                b.addAllowedApplication(app)
            } catch (e: PackageManager.NameNotFoundException) {
                Log.w(TAG, "allowed app $app is not installed")
            }
        }
        for (app in plan.disallowedApps) {
            try {
                b.addDisallowedApplication(app)
            } catch (e: PackageManager.NameNotFoundException) {
                Log.w(TAG, "disallowed app $app is not installed")
            }
        }
        b.setConfigureIntent(
            PendingIntent.getActivity(this, 0, Intent(this, MainActivity::class.java), PendingIntent.FLAG_IMMUTABLE),
        )
        return b.establish()
    }

    private fun reconfigure(t: RunTarget, changes: Set<Change>) {
        val h = handle
        if (h == 0L) return
        try {
            if (Change.NETWORK in changes) {
                upstream = network
                setUnderlyingNetworks(network?.let { arrayOf(it) })
            }
            if (Change.PREFIX in changes) ClatNative.setPrefix(h, t.prefix.prefix.toString())
            if (Change.NETWORK in changes || Change.DNS in changes) {
                ClatNative.networkChanged(h, t.dnsServers.toTypedArray())
            }
            current = t
        } catch (e: Exception) {
            stopEngine()
            fail("reconfiguring the CLAT failed: ${e.message}")
        }
    }

    private fun stopEngine() {
        main.removeCallbacks(tick)
        val h = handle
        handle = 0
        current = null
        if (h != 0L) runCatching { ClatNative.stop(h) }.onFailure { Log.w(TAG, "stop failed", it) }
        tun?.let { runCatching { it.close() } }
        tun = null
    }

    private fun fail(why: String) {
        Log.e(TAG, why)
        lastFailure = why
        failedNetwork = snapshot?.id
        stopEngine()
    }

    private fun shutdown(reason: String?) {
        stopEngine()
        monitor.stop()
        if (reason != null) publish(ClatStatus(reason = reason))
        stopForeground(STOP_FOREGROUND_REMOVE) // API 24 = minSdk
        stopSelf()
    }

    private fun refreshCounters() {
        val h = handle
        if (h == 0L) return
        try {
            if (!ClatNative.isRunning(h)) {
                val why = ClatNative.exitReason(h) ?: "unknown reason"
                fail("the CLAT engine stopped: $why")
                evaluate("engine stopped")
                return
            }
            publish(lastStatus.copy(counters = Counters.parse(ClatNative.stats(h))))
        } catch (e: Exception) {
            Log.w(TAG, "stats failed", e)
        }
    }

    /** RFC 7050 through the core, bound to the network being examined. Result back on main. */
    private fun startDiscovery(s: NetworkSnapshot) {
        if (discoveringFor == s.id) return
        val n = network ?: return
        discoveringFor = s.id
        val resolvers = s.dnsServers.toTypedArray()
        val discoveryProtector = SocketProtector { fd -> protectAndBind(fd, n) }
        worker.execute {
            val result = runCatching { ClatNative.discover(resolvers, DISCOVERY_TIMEOUT_MS, discoveryProtector) }
            main.post {
                if (discoveringFor == s.id) discoveringFor = null
                if (snapshot?.id != s.id) return@post // the network went away meanwhile
                discoveredFor = s.id
                result.fold(
                    onSuccess = { entries ->
                        val (ok, bad) = PrefixSelector.parseDiscovered(entries)
                        discovered = ok
                        discoveryNote = bad.takeIf { it.isNotEmpty() }?.joinToString("; ", "ignored answers: ")
                        scheduleRediscovery(s.id, entries)
                    },
                    onFailure = { e ->
                        discovered = emptyList()
                        discoveryNote = "RFC 7050 discovery: ${e.message}"
                        // Try again later: a DNS64 may come up after the network does.
                        main.postDelayed({ if (snapshot?.id == s.id) forgetDiscovery() }, RETRY_DISCOVERY_MS)
                    },
                )
                evaluate("discovery finished")
            }
        }
    }

    /** Re-validates an RFC 7050 prefix when its TTL runs out (RFC 7050 section 3.3). */
    private fun scheduleRediscovery(id: String, entries: Array<String>) {
        val ttl = entries.mapNotNull { it.trim().split(Regex("\\s+")).getOrNull(2)?.toLongOrNull() }.minOrNull() ?: return
        val delay = ttl.coerceIn(MIN_REVALIDATE_S, MAX_REVALIDATE_S) * 1000
        main.postDelayed({ if (snapshot?.id == id) forgetDiscovery() }, delay)
    }

    private fun forgetDiscovery() {
        discoveredFor = null
        evaluate("re-validating NAT64 prefix")
    }

    /**
     * Protects [fd] from the VPN and binds it to the underlying network, so that upstream and
     * discovery sockets leave through the network the decision was made for. Called from the
     * engine's thread; both calls are thread-safe.
     */
    private fun protectAndBind(fd: Int, n: Network? = upstream): Boolean {
        val protectedOk = runCatching { protect(fd) }.getOrDefault(false)
        val bound = n != null && runCatching {
            // fromFd duplicates: binding the duplicate binds the same socket; closing it does not.
            ParcelFileDescriptor.fromFd(fd).use { n.bindSocket(it.fileDescriptor) }
        }.isSuccess
        return protectedOk || bound
    }

    private fun statusFor(r: ResolvedSettings, reason: String): ClatStatus {
        val t = current
        val warnings = ArrayList(r.warnings)
        (r.plan as? net.clat.app.logic.PlanResult.Valid)?.plan?.notes?.let { warnings.addAll(it) }
        discoveryNote?.let { warnings.add(it) }
        val lockdown = Build.VERSION.SDK_INT >= 29 && isLockdownEnabled
        if (lockdown && t == null) warnings.add("lockdown is on: while the CLAT is idle Android blocks all traffic")
        return ClatStatus(
            running = t != null && handle != 0L,
            reason = reason,
            prefix = t?.prefix?.prefix?.toString(),
            prefixSource = t?.prefix?.source?.label,
            network = snapshot?.interfaceName,
            counters = if (t != null) lastStatus.counters else emptyList(),
            warnings = warnings,
            alwaysOn = Build.VERSION.SDK_INT >= 29 && isAlwaysOn,
            lockdown = lockdown,
        )
    }

    private fun publish(s: ClatStatus) {
        lastStatus = s
        StatusBoard.publish(s)
        if (prefs.enabled) runCatching { Notifications.update(this, s) }
    }

    /**
     * Foreground with the type Android 14+ documents for VPN apps: systemExempted (allowed for
     * active VPN apps). Before the VPN is established the app may not count as an active VPN app
     * yet; then the manifest's second type, specialUse, is used (PROPERTY_SPECIAL_USE_FGS_SUBTYPE).
     */
    private fun goForeground() {
        val n = Notifications.build(this, lastStatus)
        if (Build.VERSION.SDK_INT >= 34) {
            try {
                startForeground(Notifications.ID, n, ServiceInfo.FOREGROUND_SERVICE_TYPE_SYSTEM_EXEMPTED)
            } catch (e: RuntimeException) {
                Log.i(TAG, "systemExempted refused (${e.message}); using specialUse")
                startForeground(Notifications.ID, n, ServiceInfo.FOREGROUND_SERVICE_TYPE_SPECIAL_USE)
            }
        } else {
            startForeground(Notifications.ID, n)
        }
    }

    companion object {
        private const val TAG = "ClatVpnService"
        const val ACTION_START = "net.clat.app.START"
        const val ACTION_STOP = "net.clat.app.STOP"

        /** Boolean extra of ACTION_START: sets [UserPrefs.force]. */
        const val EXTRA_FORCE = "net.clat.app.extra.FORCE"
        private const val COUNTER_INTERVAL_MS = 5_000L
        private const val DISCOVERY_TIMEOUT_MS = 5_000
        private const val RETRY_DISCOVERY_MS = 60_000L
        private const val MIN_REVALIDATE_S = 60L
        private const val MAX_REVALIDATE_S = 3600L

        /** Starts (or re-evaluates) the CLAT; the caller must have obtained consent first. */
        fun start(context: Context) {
            val i = Intent(context, ClatVpnService::class.java).setAction(ACTION_START)
            if (Build.VERSION.SDK_INT >= 26) context.startForegroundService(i) else context.startService(i)
        }

        fun stop(context: Context) {
            try {
                context.startService(Intent(context, ClatVpnService::class.java).setAction(ACTION_STOP))
            } catch (e: IllegalStateException) {
                // Background start not allowed, so the service is not running: just stay off.
                UserPrefs(context).enabled = false
                StatusBoard.publish(ClatStatus(reason = "switched off"))
            }
        }
    }
}
