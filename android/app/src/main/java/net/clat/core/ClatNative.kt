package net.clat.core

import java.io.File

/**
 * The Rust core (libclat.so, crate rust-core/jni) seen from Kotlin.
 *
 * The app uses it through [ClatEngine], which owns one handle. A running engine is a `Long` handle. Calls on a stopped or unknown handle throw
 * [IllegalStateException] ("no engine with handle N"); [stop] is idempotent. Errors of the
 * core throw [ClatException], bad arguments [IllegalArgumentException] or
 * [NullPointerException]; native code never crashes the process on bad input.
 *
 * Call [load] once before anything else.
 */
object ClatNative {
    /** System property naming libclat.so's path, for host (JVM) tests. */
    const val LIB_PROPERTY = "clat.native.lib"

    /** System property naming a directory holding libclat.so, for host (JVM) tests. */
    const val LIB_DIR_PROPERTY = "clat.native.dir"

    @Volatile private var loaded = false

    /**
     * Loads libclat.so: the file named by the system property `clat.native.lib` (or
     * `clat.native.dir`/libclat.so) when set, as host tests do, else `System.loadLibrary("clat")`
     * as the app does (the APK ships it in lib/<abi>/). Idempotent, thread-safe.
     */
    @JvmStatic
    fun load() {
        if (loaded) return
        synchronized(this) {
            if (loaded) return
            val path = System.getProperty(LIB_PROPERTY)?.takeIf { it.isNotBlank() }
            val dir = System.getProperty(LIB_DIR_PROPERTY)?.takeIf { it.isNotBlank() }
            when {
                path != null -> System.load(File(path).absolutePath)
                dir != null -> System.load(File(dir, "libclat.so").absolutePath)
                else -> System.loadLibrary("clat")
            }
            loaded = true
        }
    }

    /**
     * Starts an engine on the TUN descriptor [tunFd] and returns its handle.
     *
     * Ownership of [tunFd] passes to the core at the call, whatever the outcome: pass
     * `ParcelFileDescriptor.detachFd()`, never a descriptor something else will close.
     * [protector] is called from the engine's thread for every upstream socket; the core
     * keeps a global reference to it until [stop].
     *
     * @throws IllegalArgumentException bad configuration or descriptor (message names the field)
     * @throws ClatException the engine could not start
     */
    @JvmStatic
    external fun start(tunFd: Int, config: NativeConfig, protector: SocketProtector): Long

    /**
     * Stops the engine, closes the TUN descriptor and every socket, and releases the
     * protector. Returns false if [handle] was already stopped or unknown (harmless).
     */
    @JvmStatic
    external fun stop(handle: Long): Boolean

    /**
     * Names of the values [counters] returns, in their order (the engine's counters, then
     * `jni_protect_calls`). The same for every engine: fetch them once ([ClatEngine.counterNames]).
     */
    @JvmStatic
    external fun counterNames(): Array<String>

    /** The engine's counters, in the order of [counterNames]. */
    @JvmStatic
    external fun counters(handle: Long): LongArray

    /** Whether the engine's loop still runs (it ends by itself if the TUN goes away). */
    @JvmStatic
    external fun isRunning(handle: Long): Boolean

    /** Why the engine's loop ended, or null while it runs. */
    @JvmStatic
    external fun exitReason(handle: Long): String?

    /** Switches to a new NAT64 prefix (flows through the old one are reset). */
    @JvmStatic
    external fun setPrefix(handle: Long, prefix: String)

    /**
     * The upstream path of new IPv4 flows: natively ([native] true, where the network has IPv4)
     * or through the NAT64. Each flow keeps the path it started on, except that going back to
     * the NAT64 (native IPv4 lost) resets the native flows at once so that apps reconnect.
     */
    @JvmStatic
    external fun setIpv4Path(handle: Long, native: Boolean)

    /**
     * The underlying network changed: upstream flows are reset; [dnsServers], when not
     * null, replace the resolvers (same syntax as [NativeConfig.dnsServers]).
     */
    @JvmStatic
    external fun networkChanged(handle: Long, dnsServers: Array<String>?)

    /**
     * Replaces the DNS relay's upstream resolvers (same syntax as [NativeConfig.dnsServers]) and
     * nothing else: no app flow is reset, unlike [networkChanged]. For a resolver list that
     * changed on the same network.
     */
    @JvmStatic
    external fun setDns(handle: Long, dnsServers: Array<String>)

    /**
     * Blocks until the engine's loop ends, then returns why it ended by itself, or null when
     * [stop] ended it. Returns at once if it has already ended. Call it on a thread of its own:
     * it is how the app sees an engine die at once, screen on or off, without polling.
     */
    @JvmStatic
    external fun awaitExit(handle: Long): String?

    /**
     * Waits up to [timeoutMs] (>= 0; 0 = do not wait) for the engine's flow events (issue 17,
     * docs/flow-events.md) and returns every waiting one, oldest first, in one [FlowEventBatch]
     * (empty when the time ran out). Returns null when none will ever come: the engine was
     * started with [NativeConfig.flowEvents] 0, or its loop has ended and every event was taken.
     * [stop] wakes a waiting call at once (the queue closes when the engine thread ends). The
     * queue outlives [stop] until drained: the ends the engine emits as it stops (NETWORK_CHANGED)
     * are still returned after [stop], then null; after that the handle throws
     * [IllegalStateException] like every stopped handle. Call it until null (the queue's leftover
     * stays otherwise). One consumer thread per engine: each event is returned once.
     *
     * @throws IllegalArgumentException [timeoutMs] negative
     */
    @JvmStatic
    external fun awaitFlowEvents(handle: Long, timeoutMs: Int): FlowEventBatch?

    /**
     * RFC 7050 NAT64 prefix discovery (ipv4only.arpa through [resolvers]), every prefix found,
     * e.g. DiscoveredPrefix("64:ff9b::/96", "rfc7050", 300). Blocks up to
     * [timeoutMs]; call it off the main thread. [protector] protects the query sockets
     * (pass the VpnService's while the VPN runs; null means none).
     *
     * @throws ClatException no prefix (no DNS64, timeout, ...), with the reason
     */
    @JvmStatic
    external fun discover(resolvers: Array<String>, timeoutMs: Int, protector: SocketProtector?): Array<DiscoveredPrefix>

    /**
     * TEST AID for Linux hosts only: opens (creating if needed) the TUN device [name] and returns
     * its descriptor, which the caller owns (pass it to [start]). Needs CAP_NET_ADMIN. On Android
     * the VpnService creates the TUN, and this throws [ClatException].
     */
    @JvmStatic
    external fun openTun(name: String): Int

    /** Number of engines the core currently holds (diagnostics and leak tests). */
    @JvmStatic
    external fun engineCount(): Int
}
