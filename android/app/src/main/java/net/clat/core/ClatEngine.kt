package net.clat.core

/**
 * One running engine of the core, owning its [ClatNative] handle: the typed way to use the core.
 * [close] stops it (idempotent), so `use {}` and try-with-resources release the TUN, the sockets
 * and the protector's global reference. After [close], calls throw [IllegalStateException]
 * ("no engine with handle N"), as the core does for a stopped handle. Thread-safe as the core is:
 * [awaitExit] is meant for a thread of its own while others call the rest.
 */
class ClatEngine private constructor(val handle: Long) : AutoCloseable {
    companion object {
        /**
         * Starts an engine; see [ClatNative.start] (ownership of [tunFd] passes at the call).
         * @throws IllegalArgumentException bad configuration or descriptor
         * @throws ClatException the engine could not start
         */
        fun start(tunFd: Int, config: NativeConfig, protector: SocketProtector): ClatEngine =
            ClatEngine(ClatNative.start(tunFd, config, protector))

        /** The counters' names, in the order of [counters]; fetched from the core once. */
        val counterNames: List<String> by lazy { ClatNative.counterNames().toList() }
    }

    /** The counters' values, in the order of [counterNames]: no strings per update. */
    fun counters(): LongArray = ClatNative.counters(handle)

    /** [counterNames] paired with [counters], for display. */
    fun namedCounters(): List<Pair<String, Long>> = counterNames.zip(counters().asList())

    /** Whether the engine's loop still runs (it ends by itself if the TUN goes away). */
    val isRunning: Boolean get() = ClatNative.isRunning(handle)

    /** Why the loop ended, or null while it runs. */
    fun exitReason(): String? = ClatNative.exitReason(handle)

    /** Blocks until the loop ends: its reason, or null when [close] ended it ([ClatNative.awaitExit]). */
    fun awaitExit(): String? = ClatNative.awaitExit(handle)

    /** Flow events, waiting up to [timeoutMs]; null: no more will come ([ClatNative.awaitFlowEvents]). */
    fun awaitFlowEvents(timeoutMs: Int): FlowEventBatch? = ClatNative.awaitFlowEvents(handle, timeoutMs)

    /** A new NAT64 prefix, applied live ([ClatNative.setPrefix]). */
    fun setPrefix(prefix: String) = ClatNative.setPrefix(handle, prefix)

    /** The underlying network changed ([ClatNative.networkChanged]). */
    fun networkChanged(dnsServers: Array<String>?) = ClatNative.networkChanged(handle, dnsServers)

    /** See [ClatNative.setIpv4Path]. */
    fun setIpv4Path(native: Boolean) = ClatNative.setIpv4Path(handle, native)

    /** New resolvers for the DNS relay only; no flow is reset ([ClatNative.setDns]). */
    fun setDns(dnsServers: Array<String>) = ClatNative.setDns(handle, dnsServers)

    /** Stops the engine; false if it was already stopped. */
    fun stop(): Boolean = ClatNative.stop(handle)

    override fun close() {
        stop()
    }

    override fun toString(): String = "ClatEngine($handle)"
}
