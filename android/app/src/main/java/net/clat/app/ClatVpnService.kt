package net.clat.app

import android.app.PendingIntent
import android.content.BroadcastReceiver
import android.content.Context
import android.content.Intent
import android.content.IntentFilter
import android.content.pm.ServiceInfo
import android.net.IpPrefix
import android.net.Network
import android.net.VpnService
import android.os.Build
import android.os.Handler
import android.os.Looper
import android.os.ParcelFileDescriptor
import android.os.PowerManager
import android.system.OsConstants
import android.util.Log
import java.net.InetAddress
import java.util.concurrent.ExecutorService
import java.util.concurrent.Executors
import net.clat.app.logic.AlwaysOnState
import net.clat.app.logic.AppListWatch
import net.clat.app.logic.AppSelection
import net.clat.app.logic.Change
import net.clat.app.logic.ClatController
import net.clat.app.logic.ClatPort
import net.clat.app.logic.ControllerView
import net.clat.app.logic.DnsPolicy
import net.clat.app.logic.FlowEventDecoder
import net.clat.app.logic.FlowEventPump
import net.clat.app.logic.InternalAddressPicker
import net.clat.app.logic.InternalAddresses
import net.clat.app.logic.IpAddresses
import net.clat.app.logic.MtuNote
import net.clat.app.logic.NetworkSnapshot
import net.clat.app.logic.RunTarget
import net.clat.app.logic.UpstreamSocketBinding
import net.clat.app.logic.VpnPlan
import net.clat.app.logic.withInternalAddresses
import net.clat.core.ClatEngine
import net.clat.core.ClatNative
import net.clat.core.NativeConfig
import net.clat.core.SocketProtector

/**
 * The CLAT as a VpnService. Thin glue: every decision is made by ClatController / RunDecider /
 * VpnConfigBuilder / PrefixSelector (net.clat.app.logic, JVM-tested); this class feeds them
 * Android's events, implements [ClatPort] with VpnService.Builder and the Rust engine, and
 * publishes the status.
 *
 * All state lives on the main thread; only RFC 7050 discovery (blocking DNS) runs on [worker],
 * and each engine has an exit-watch thread that posts its end back to the main thread and, while
 * the IPv4 report records, a flow-event thread that feeds the report ([pumpFlowEvents]).
 */
class ClatVpnService : VpnService(), ClatPort {
    private val main = Handler(Looper.getMainLooper())
    private val worker: ExecutorService = Executors.newSingleThreadExecutor { r -> Thread(r, "clat-discovery") }
    private lateinit var prefs: UserPrefs

    /** Always-on and lockdown as known; see [AlwaysOnState]. */
    private lateinit var alwaysOnState: AlwaysOnState
    private lateinit var monitor: NetworkMonitor
    private lateinit var controller: ClatController

    /** The Android network behind [ClatController.network] (same id). */
    private var network: Network? = null
    private var tun: ParcelFileDescriptor? = null
    private var engine: ClatEngine? = null

    /** [clearUnderlyingNetworks] was called and no network has been set since. */
    private var underlyingCleared = false

    /** The internal addresses of the running TUN (kept across rebuilds when still free). */
    private var internal: InternalAddresses? = null
    private var lastStatus = ClatStatus()

    /** The network upstream sockets must use; read by the engine's thread through [protector]. */
    @Volatile private var upstream: Network? = null

    private val protector = SocketProtector { fd -> protectAndBind(fd) }

    private val restrictionsReceiver = object : BroadcastReceiver() {
        override fun onReceive(c: Context, i: Intent) {
            Ipv4Report.refreshSettings(this@ClatVpnService) // managed ipv4_report, retention
            show(controller.onManagedConfig(ManagedConfigReader.read(this@ClatVpnService)))
        }
    }

    /**
     * Live counters for the notification and UI, only while the screen is on: nobody reads them
     * otherwise, and a phone's battery pays for every wake-up. (Handler delays do not advance in
     * deep sleep either.) SCREEN_ON resumes them.
     */
    private val tick = object : Runnable {
        override fun run() {
            refreshCounters()
            val interactive = (getSystemService(Context.POWER_SERVICE) as PowerManager).isInteractive
            if (engine != null && interactive) main.postDelayed(this, COUNTER_INTERVAL_MS)
        }
    }

    /** Re-establishes the VPN when an app named in its lists is installed or removed. */
    private val packageReceiver = object : BroadcastReceiver() {
        override fun onReceive(c: Context, i: Intent) {
            val plan = controller.current?.plan
            if (AppListWatch.needsRebuild(plan, i.data?.schemeSpecificPart, i.getBooleanExtra(Intent.EXTRA_REPLACING, false))) {
                show(controller.onListedPackageChanged())
            }
        }
    }

    private val screenReceiver = object : BroadcastReceiver() {
        override fun onReceive(c: Context, i: Intent) {
            main.removeCallbacks(tick)
            if (engine != null) main.post(tick)
        }
    }

    override fun onCreate() {
        super.onCreate()
        prefs = UserPrefs(this)
        alwaysOnState = if (Build.VERSION.SDK_INT >= 29) {
            prefs.alwaysOnLastKnown.let { (on, lock) -> AlwaysOnState(on, lock) }
        } else {
            AlwaysOnState()
        }
        controller = ClatController(this, packageName, HandlerScheduler(main), ::show)
        controller.setUserChoices(prefs.enabled, prefs.prefixOverride, prefs.force)
        controller.userExcludeLocalTraffic = prefs.excludeLocalTraffic
        controller.userApps = prefs.appSelection
        controller.nativeError = try {
            ClatNative.load()
            null
        } catch (e: Throwable) { // UnsatisfiedLinkError: an APK built without the Rust library
            "native library not available: ${e.message}"
        }
        controller.onManagedConfig(ManagedConfigReader.read(this))
        monitor = NetworkMonitor(this) { n, s ->
            // On a loss the last network is kept: the controller debounces it and may still
            // rebuild the TUN for it meanwhile.
            if (n != null) network = n
            learnAlwaysOn()?.let { show(it) }
            controller.onNetwork(s)?.let { show(it) }
        }
        registerSystemReceiver(restrictionsReceiver, IntentFilter(Intent.ACTION_APPLICATION_RESTRICTIONS_CHANGED))
        registerSystemReceiver(screenReceiver, IntentFilter(Intent.ACTION_SCREEN_ON))
        registerSystemReceiver(
            packageReceiver,
            IntentFilter(Intent.ACTION_PACKAGE_ADDED).apply {
                addAction(Intent.ACTION_PACKAGE_REMOVED)
                addDataScheme("package")
            },
        )
    }

    override fun onStartCommand(intent: Intent?, flags: Int, startId: Int): Int {
        if (intent?.action == ACTION_STOP) {
            prefs.enabled = false
            controller.onStopRequested()
            shutdown("switched off")
            return START_NOT_STICKY
        }
        // ACTION_START from the UI/tile/boot; SERVICE_INTERFACE when always-on VPN starts it; a
        // null intent when the system restarts it (START_STICKY). All mean "the CLAT should be on".
        if (intent?.hasExtra(EXTRA_FORCE) == true) prefs.force = intent.getBooleanExtra(EXTRA_FORCE, false)
        prefs.enabled = true
        if (prepare(this) != null) {
            // No consent (or another app's VPN holds it): only the activity can ask the user.
            prefs.enabled = false
            lastStatus = ClatStatus(reason = "VPN permission not granted: open the app and press Start")
            StatusBoard.publish(lastStatus)
            goForeground()
            shutdown(null)
            return START_NOT_STICKY
        }
        controller.setUserChoices(true, prefs.prefixOverride, prefs.force)
        controller.userExcludeLocalTraffic = prefs.excludeLocalTraffic
        // Making this app the always-on VPN, or turning lockdown on or off for it, starts it
        // again with SERVICE_INTERFACE (VpnManagerService.setAlwaysOnVpnPackage calls
        // Vpn.setAlwaysOnPackage, then startAlwaysOnVpn), so such a change arrives as a start
        // command. isAlwaysOn()/isLockdownEnabled() answer only once the VPN is established
        // (AlwaysOnState): the start action says always-on now, lockdown is as last known, and
        // the read after establish() corrects both (startEngine), rebuilding the TUN if the
        // plan's DNS mode or IPv6 routes change (DnsPolicy, VpnPlan.carryIpv6). Turning always-on
        // off tells the app nothing (startAlwaysOnVpn finds no package): it is seen at the next
        // read (a network event), and meanwhile the VPN stays in pass-through, which takes
        // nothing away. The controller decides at onStartRequested() below, after goForeground().
        updateAlwaysOn(systemStart = intent?.action == VpnService.SERVICE_INTERFACE)
        controller.alwaysOn = alwaysOnState.alwaysOn
        controller.lockdown = alwaysOnState.lockdown
        controller.userApps = prefs.appSelection
        // Foreground first: startForegroundService() gives the service a few seconds to call
        // startForeground(), and onStartRequested() may establish() the VPN and start the engine.
        goForeground()
        monitor.start()
        show(controller.onStartRequested())
        return START_STICKY
    }

    override fun onRevoke() {
        // The user revoked the permission or another VPN app took over: stop and stay off.
        prefs.enabled = false
        controller.onStopRequested()
        shutdown("VPN permission revoked or another VPN started")
        super.onRevoke()
    }

    override fun onDestroy() {
        stopEngine()
        monitor.stop()
        runCatching { unregisterReceiver(restrictionsReceiver) }
        runCatching { unregisterReceiver(screenReceiver) }
        runCatching { unregisterReceiver(packageReceiver) }
        worker.shutdownNow()
        main.removeCallbacksAndMessages(null)
        super.onDestroy()
    }

    /** System broadcasts reach NOT_EXPORTED receivers; API 33+ requires saying so. */
    private fun registerSystemReceiver(r: BroadcastReceiver, filter: IntentFilter) {
        if (Build.VERSION.SDK_INT >= 33) {
            registerReceiver(r, filter, Context.RECEIVER_NOT_EXPORTED)
        } else {
            @Suppress("UnspecifiedRegisterReceiverFlag")
            registerReceiver(r, filter)
        }
    }

    // ---- ClatPort: what the controller asks of Android ----

    override fun startEngine(target: RunTarget): String? {
        val n = network ?: return "no network to run on"
        upstream = n
        underlyingCleared = false
        // Addresses no clatd holds now, and that a clatd started later will not take first.
        val addrs = InternalAddressPicker.pick(LocalAddresses.inClatRange(), internal)
            ?: return "no free address in 192.0.0.0/29 (Android's CLATs hold them)"
        val pfd = try {
            buildTun(target.plan.withInternalAddresses(addrs), n)
        } catch (e: Exception) {
            return "could not create the VPN interface: ${e.message}"
        } ?: return "VPN permission missing (establish() returned null)"
        internal = addrs
        val settings = controller.resolved().settings
        // The report off (setting or managed ipv4_report): no queue, the engine builds no event.
        // Switching it on takes effect at the next engine start (network change, restart).
        val report = Ipv4Report.settings(this).enabled
        val cfg = NativeConfig(
            prefix = target.enginePrefix,
            dnsServers = target.dnsServers.toTypedArray(),
            clatAddress = addrs.clat,
            natAddress = addrs.nat,
            dnsRelayAddress = addrs.dns,
            mtu = target.plan.mtu,
            maxFlows = settings.maxFlows,
            udpTimeoutSec = settings.udpTimeoutSec,
            ipv4Native = target.ipv4Native,
            // Under lockdown IPv6 is routed into the TUN (VpnPlan.carryIpv6) and the engine
            // carries it to its destinations; its ULA is the engine's default clat_v6.
            carryIpv6 = target.plan.carryIpv6,
            flowEvents = if (report) FLOW_EVENT_QUEUE else 0,
        )
        return try {
            // The core owns the descriptor from here on, whatever happens.
            val e = ClatEngine.start(pfd.detachFd(), cfg, protector)
            engine = e
            tun = pfd
            // Now isAlwaysOn()/isLockdownEnabled() answer for real: read them once this
            // controller call has returned (it is the caller), and decide again if they differ.
            main.post { learnAlwaysOn()?.let { show(it) } }
            watchExit(e)
            if (report) pumpFlowEvents(e)
            main.removeCallbacks(tick)
            main.postDelayed(tick, COUNTER_INTERVAL_MS)
            null
        } catch (e: Exception) {
            runCatching { pfd.close() }
            "the CLAT engine did not start: ${e.message}"
        }
    }

    /**
     * Sees the engine end at once, screen on or off: a thread blocked in [ClatEngine.awaitExit]
     * (no polling, no wake-ups). A stop of ours also ends the wait; then [engine] is no longer
     * this engine and nothing is reported.
     */
    private fun watchExit(e: ClatEngine) {
        Thread({
            val reason = try {
                e.awaitExit()
            } catch (x: IllegalStateException) {
                null // already stopped and forgotten
            } catch (x: Exception) {
                "exit watch failed: ${x.message}"
            }
            main.post {
                if (engine === e) show(controller.onEngineExit(reason ?: "unknown reason"))
            }
        }, "clat-exit-watch-${e.handle}").apply { isDaemon = true }.start()
    }

    /**
     * Feeds the IPv4 report with [e]'s flow events: a thread blocked in
     * [ClatEngine.awaitFlowEvents] ([FlowEventPump]; no wake-ups of its own), which ends when the
     * engine ends (its queue closes) and then saves the report. The recorder is loaded on this
     * thread, not the main one (its file may be megabytes). Nothing about flows is logged.
     */
    private fun pumpFlowEvents(e: ClatEngine) {
        Thread({
            val recorder = Ipv4Report.get(this) // keeps only the application context
            val pump = FlowEventPump(e::awaitFlowEvents, recorder, FlowEventDecoder())
            pump.run()
            pump.error?.let { Log.w(TAG, "flow events of engine ${e.handle} ended: $it") }
            if (pump.decoder.malformed + pump.sinkFailures > 0) {
                Log.w(TAG, "flow events: ${pump.decoder.malformed} malformed, ${pump.sinkFailures} not recorded")
            }
            recorder.saveNow(System.currentTimeMillis())
        }, "clat-flow-events-${e.handle}").apply { isDaemon = true }.start()
    }

    override fun stopEngine() {
        main.removeCallbacks(tick)
        val e = engine
        engine = null
        e?.let { runCatching { it.close() }.onFailure { x -> Log.w(TAG, "stop failed", x) } }
        tun?.let { runCatching { it.close() } }
        tun = null
    }

    /**
     * Make-before-break: `establish()` for the new interface while the old engine still runs,
     * then the old engine is stopped (which closes its descriptor). The platform keeps the VPN
     * network and moves it to the new interface ("The existing interface is deactivated when a
     * new one is created", developer.android.com/reference/android/net/VpnService; AOSP
     * frameworks/base services/core/java/com/android/server/connectivity/Vpn.java establish():
     * updateLinkPropertiesInPlaceIfPossible, then jniReset(oldInterface)), so apps never see the
     * VPN disconnect. Closing the old descriptor first would tear the VPN network down.
     */
    override fun replaceEngine(target: RunTarget): String? {
        val oldEngine = engine
        val oldTun = tun
        engine = null
        tun = null
        val error = startEngine(target)
        oldEngine?.let { runCatching { it.close() }.onFailure { x -> Log.w(TAG, "stop failed", x) } }
        oldTun?.let { runCatching { it.close() } }
        return error
    }

    /**
     * setUnderlyingNetworks(emptyArray()): "null to allow any underlying network, an empty array
     * for none" (developer.android.com/reference/android/net/VpnService.Builder#setUnderlyingNetworks),
     * so while a loss is debounced the platform does not attribute the VPN's traffic, metering or
     * transport to a network that is gone, and the TUN stays.
     */
    override fun clearUnderlyingNetworks() {
        underlyingCleared = true
        setUnderlyingNetworks(emptyArray())
    }

    override fun reconfigure(target: RunTarget, changes: Set<Change>): String? {
        val e = engine ?: return "the engine is not running"
        return try {
            if (Change.NETWORK in changes || underlyingCleared) {
                upstream = network
                underlyingCleared = false
                setUnderlyingNetworks(network?.let { arrayOf(it) })
            }
            // The prefix first: a switch to translation (IPV4_PATH) must use the new one.
            if (Change.PREFIX in changes) target.prefix?.let { e.setPrefix(it.prefix.toString()) }
            // Native IPv4 appeared (pass-through) or went (translation): new flows take the new
            // path; flows on a lost native path are reset by the engine.
            if (Change.IPV4_PATH in changes) e.setIpv4Path(target.ipv4Native)
            if (Change.NETWORK in changes) {
                // A new network: every upstream socket is bound to the old one, reset them.
                e.networkChanged(target.dnsServers.toTypedArray())
            } else if (Change.DNS in changes) {
                // Same network, other resolvers: only the DNS relay changes, no flow is reset.
                e.setDns(target.dnsServers.toTypedArray())
            }
            null
        } catch (x: Exception) {
            x.message ?: x.toString()
        }
    }

    /** RFC 7050 through the core, bound to the network being examined; result back on main. */
    override fun startDiscovery(network: NetworkSnapshot) {
        val n = this.network ?: return
        val resolvers = network.dnsServers.toTypedArray()
        val discoveryProtector = SocketProtector { fd -> protectAndBind(fd, n) }
        worker.execute {
            val result = runCatching { ClatNative.discover(resolvers, DISCOVERY_TIMEOUT_MS, discoveryProtector).asList() }
            main.post { show(controller.onDiscovery(network.id, result)) }
        }
    }

    override fun scheduleRediscovery(networkId: String, delaySeconds: Long) {
        main.postDelayed({ controller.onRediscover(networkId)?.let { show(it) } }, delaySeconds * 1000)
    }

    private fun buildTun(plan: VpnPlan, n: Network): ParcelFileDescriptor? {
        val b = Builder().setSession(plan.session).setMtu(plan.mtu)
        plan.addresses.forEach { b.addAddress(it.address, it.prefixLength) }
        if (Build.VERSION.SDK_INT >= 33) {
            plan.routes.forEach { b.addRoute(it.address, it.prefixLength) }
            // excludeRoute (API 33): the excluded (IPv4) prefixes leave through the underlying network.
            plan.excludedRoutes.forEach {
                val a = InetAddress.getByAddress(IpAddresses.parseIpv4(it.address)) // a literal: no DNS
                b.excludeRoute(IpPrefix(a, it.prefixLength))
            }
        } else {
            plan.routesBelowApi33.forEach { b.addRoute(it.address, it.prefixLength) }
        }
        // None in DnsMode.NETWORK: apps keep the network's resolvers and Private DNS (DnsPolicy).
        plan.dnsServers.forEach { b.addDnsServer(it) }
        if (plan.allowIpv6Bypass) b.allowFamily(OsConstants.AF_INET6)
        if (Build.VERSION.SDK_INT >= 29) b.setMetered(plan.metered)
        b.setUnderlyingNetworks(arrayOf(n))
        // The platform resolves the names, not this process: Builder.verifyApp ignores the
        // (visibility-filtered) getApplicationInfo result and never throws NameNotFoundException
        // (frameworks/base core/java/android/net/VpnService.java); Vpn.getAppUid in system_server
        // resolves with its own identity and skips names not installed (services/core/java/com/
        // android/server/connectivity/Vpn.java). A ROM that did throw would fail establish() here
        // and the caller reports it. Installs and removals of listed apps: packageReceiver.
        plan.allowedApps.forEach { b.addAllowedApplication(it) }
        plan.disallowedApps.forEach { b.addDisallowedApplication(it) }
        b.setConfigureIntent(
            PendingIntent.getActivity(this, 0, Intent(this, MainActivity::class.java), PendingIntent.FLAG_IMMUTABLE),
        )
        return b.establish()
    }

    private fun shutdown(reason: String?) {
        stopEngine()
        monitor.stop()
        if (reason != null) {
            lastStatus = ClatStatus(reason = reason)
            StatusBoard.publish(lastStatus)
        }
        stopForeground(STOP_FOREGROUND_REMOVE) // API 24 = minSdk
        stopSelf()
    }

    private fun refreshCounters() {
        val e = engine ?: return
        try {
            publish(lastStatus.copy(counters = e.namedCounters()))
        } catch (x: Exception) {
            Log.w(TAG, "counters failed", x)
        }
    }

    /**
     * Takes [fd] out of the VPN through the network the decision was made for, so that upstream
     * and discovery sockets leave through it: one call to netd when [n] is known
     * ([UpstreamSocketBinding] says why binding alone protects). Called from the engine's thread;
     * both calls are thread-safe.
     */
    private fun protectAndBind(fd: Int, n: Network? = upstream): Boolean =
        UpstreamSocketBinding.apply(
            fd,
            n?.let { net -> { s: Int -> bindSocket(net, s) } },
            { s -> runCatching { protect(s) }.getOrDefault(false) },
        )

    /**
     * Binds the raw descriptor [fd] to [n] without duplicating it: `adoptFd` wraps it and
     * `detachFd` hands it back unclosed (ParcelFileDescriptor's javadoc), two system calls fewer
     * per flow than `fromFd`'s dup and close.
     */
    private fun bindSocket(n: Network, fd: Int): Boolean {
        val pfd = ParcelFileDescriptor.adoptFd(fd)
        return try {
            n.bindSocket(pfd.fileDescriptor)
            true
        } catch (x: Exception) {
            false
        } finally {
            pfd.detachFd()
        }
    }

    /** Turns the controller's view into the published status (UI, tile, notification). */
    private fun show(v: ControllerView) {
        Log.i(TAG, "${v.decision}")
        val t = v.target
        val warnings = ArrayList(v.warnings)
        val lockdown = alwaysOnState.lockdown
        if (lockdown && t == null) warnings.add("lockdown is on: while the CLAT is idle Android blocks all traffic")
        publish(
            ClatStatus(
                running = v.running && engine != null,
                ipv4Native = t?.ipv4Native == true,
                reason = v.reason,
                prefix = t?.prefix?.prefix?.toString(),
                prefixSource = t?.prefix?.source?.label,
                network = controller.network?.interfaceName,
                counters = if (t != null) lastStatus.counters else emptyList(),
                warnings = warnings,
                alwaysOn = alwaysOnState.alwaysOn,
                lockdown = lockdown,
                dns = t?.plan?.dnsMode?.let { DnsPolicy.describe(it, lockdown) },
                addresses = internal?.takeIf { t != null }?.let { "CLAT ${it.clat}, NAT ${it.nat}, DNS relay ${it.dns}" },
                mtu = t?.plan?.mtu,
                mtuNote = t?.plan?.mtu?.let { MtuNote.describe(it, controller.managed.config.mtu != null) },
                resolvers = t?.dnsServers ?: emptyList(),
                apps = t?.plan?.let { AppSelection.ofLists(it.allowedApps, it.disallowedApps).describe() },
            ),
        )
    }

    /**
     * Updates [alwaysOnState]: a start by the system as the always-on VPN ([systemStart]), and
     * `isAlwaysOn()`/`isLockdownEnabled()` (API 29+), which count only while the VPN is established
     * (see [AlwaysOnState] for why). What is known is stored (API 29+, where an established read
     * can correct it later; below 29 nothing can, so a start as the always-on VPN only counts for
     * this service's life). Returns whether anything changed.
     */
    private fun updateAlwaysOn(systemStart: Boolean = false): Boolean {
        var changed = systemStart && alwaysOnState.onAlwaysOnStart()
        if (Build.VERSION.SDK_INT >= 29) {
            changed = alwaysOnState.onRead(tun != null, isAlwaysOn, isLockdownEnabled) || changed
            if (changed) prefs.alwaysOnLastKnown = alwaysOnState.alwaysOn to alwaysOnState.lockdown
        }
        return changed
    }

    /** [updateAlwaysOn], then tells the controller, which decides again if anything changed. */
    private fun learnAlwaysOn(): ControllerView? {
        updateAlwaysOn()
        return controller.onAlwaysOn(alwaysOnState.alwaysOn, alwaysOnState.lockdown)
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

        /**
         * Flow events the engine queues for the report's thread (NativeConfig.flowEvents): a few
         * hundred kilobytes at most; beyond it the engine drops and counts (flow_events_dropped).
         */
        private const val FLOW_EVENT_QUEUE = 4096

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
