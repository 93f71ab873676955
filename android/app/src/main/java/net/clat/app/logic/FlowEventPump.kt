package net.clat.app.logic

import net.clat.core.FlowEventBatch

/**
 * The consumer of one engine's flow events (issue 17): [run] on a thread of its own, started with
 * the engine, waits in [source] (ClatEngine.awaitFlowEvents) and hands every event to [sink]
 * (the IPv4 report's [Ipv4Recorder]) through a [FlowEventDecoder], until the engine ends.
 *
 * No wake-ups of its own: each wait lasts up to [waitMs] (by default as long as an Int allows);
 * the engine's queue closing when the engine stops or dies ends the wait at once. The loop ends
 * when [source] returns null (no more events will come), throws IllegalStateException (the handle
 * was stopped and forgotten between two waits) or fails otherwise (kept in [error]; the loop does
 * not spin on a broken bridge). An exception from [sink] is counted in [sinkFailures] and the next
 * event goes on: one bad lookup must not end the report's feed.
 */
class FlowEventPump(
    private val source: (timeoutMs: Int) -> FlowEventBatch?,
    private val sink: FlowEventSink,
    val decoder: FlowEventDecoder = FlowEventDecoder(),
    private val waitMs: Int = Int.MAX_VALUE,
) : Runnable {
    /** Exceptions thrown by the sink (counted, the event skipped). */
    @Volatile
    var sinkFailures: Long = 0
        private set

    /** Why the loop ended, if not because the engine did. */
    @Volatile
    var error: String? = null
        private set

    private val guarded = object : FlowEventSink {
        override fun flowStarted(e: FlowStart, appAddress: String) = guard { sink.flowStarted(e, appAddress) }

        override fun flowEnded(e: FlowEnd) = guard { sink.flowEnded(e) }

        private inline fun guard(f: () -> Unit) {
            try {
                f()
            } catch (x: RuntimeException) {
                sinkFailures++
            }
        }
    }

    override fun run() {
        while (!Thread.currentThread().isInterrupted) {
            val batch = try {
                source(waitMs)
            } catch (x: IllegalStateException) {
                null // stopped and forgotten: the end, as null is
            } catch (x: RuntimeException) {
                error = x.message ?: x.toString()
                null
            } ?: return
            decoder.decode(batch.records, batch.names, guarded)
        }
    }
}
