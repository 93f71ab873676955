package net.clat.app.logic

/**
 * Where decoded flow events go. [Ipv4Recorder] is one; the shapes are its entry points.
 */
interface FlowEventSink {
    /**
     * A flow began.
     *
     * @param appAddress the app side's IPv4 address as the engine saw it (the TUN's CLAT address),
     *   a dotted-quad literal: the local address of the app's socket, which attribution needs.
     */
    fun flowStarted(e: FlowStart, appAddress: String)

    fun flowEnded(e: FlowEnd)
}

/**
 * Decodes the flow-event records of one engine, as ClatNative.awaitFlowEvents hands them over
 * (net.clat.core.FlowEventBatch; the layout is rust-core/jni/src/flow_records.rs, written out in
 * docs/flow-events.md "Through JNI"), into [FlowStart] / [FlowEnd] for a [FlowEventSink]. One
 * decoder per engine, used by one thread.
 *
 * Each event is [RECORD_LONGS] longs: word 0 = kind (1 start, 2 end) | code << 8 (proto for a
 * start: 0 TCP, 1 UDP, 2 ICMP; how for an end, in the order of [FlowEndReason]) | nativeIpv4 << 16
 * (starts only); word 1 = id; word 2 = atMs; words 3 and 4 = source and destination (address << 16
 * | port, starts) or bytes up and down (ends). A record that breaks the layout (unknown kind or
 * code, bits set that mean nothing, a value out of range, a partial record at the end) is counted
 * in [malformed] and skipped; the others go on.
 *
 * Ids are the engine's, unchanged: it takes them from one counter per process, seeded from the
 * wall clock (docs/flow-events.md), so the two engines of a network change (make-before-break:
 * both may have flows open at once) never share one, nor does an engine of an earlier process.
 */
class FlowEventDecoder {
    /** Records skipped because they break the layout. */
    var malformed: Long = 0
        private set

    /** Events handed to the sink. */
    var decoded: Long = 0
        private set

    /**
     * Hands the events of [records] to [sink], in their order. [names] has one entry per event
     * (the DNS name of a start, else null); a shorter array means no name for the rest.
     * Returns the number of events handed over.
     */
    fun decode(records: LongArray, names: Array<String?>, sink: FlowEventSink): Int {
        val events = records.size / RECORD_LONGS
        if (records.size % RECORD_LONGS != 0) malformed++
        var handed = 0
        for (i in 0 until events) {
            val at = i * RECORD_LONGS
            val w0 = records[at]
            val id = records[at + 1]
            val atMs = records[at + 2]
            val a = records[at + 3]
            val b = records[at + 4]
            val code = ((w0 shr 8) and 0xff).toInt()
            when (w0 and 0xff) {
                KIND_START -> {
                    val proto = PROTOS.getOrNull(code)
                    if (proto == null || (w0 shr 17) != 0L || !isAddress(a) || !isAddress(b)) {
                        malformed++
                        continue
                    }
                    val start = FlowStart(
                        id = id,
                        atMs = atMs,
                        proto = proto,
                        dst = dottedQuad(b),
                        dstPort = (b and 0xffff).toInt(),
                        appPort = (a and 0xffff).toInt(),
                        name = names.getOrNull(i),
                        nativeIpv4 = (w0 shr 16) and 1L == 1L,
                    )
                    sink.flowStarted(start, dottedQuad(a))
                }
                KIND_END -> {
                    val how = REASONS.getOrNull(code)
                    if (how == null || (w0 shr 16) != 0L || a < 0 || b < 0) {
                        malformed++
                        continue
                    }
                    sink.flowEnded(FlowEnd(id = id, atMs = atMs, bytesUp = a, bytesDown = b, how = how))
                }
                else -> {
                    malformed++
                    continue
                }
            }
            handed++
        }
        decoded += handed
        return handed
    }

    companion object {
        /** Longs per event (net.clat.core.FlowEventBatch.RECORD_LONGS, flow_records.rs). */
        const val RECORD_LONGS = 5
        private const val KIND_START = 1L
        private const val KIND_END = 2L
        /** Codes in order: the engine's (flow_records.rs proto_code, how_code). */
        private val PROTOS = arrayOf(FlowProto.TCP, FlowProto.UDP, FlowProto.ICMP)
        private val REASONS = arrayOf(
            FlowEndReason.CLOSED,
            FlowEndReason.RESET,
            FlowEndReason.TIMED_OUT,
            FlowEndReason.REFUSED,
            FlowEndReason.UNREACHABLE,
            FlowEndReason.EVICTED,
            FlowEndReason.NETWORK_CHANGED,
        )

        /** An IPv4 address (32 bits) above a port (16 bits), nothing above. */
        private fun isAddress(v: Long) = v ushr 48 == 0L

        private fun dottedQuad(v: Long): String {
            val a = v ushr 16
            return "${(a shr 24) and 255}.${(a shr 16) and 255}.${(a shr 8) and 255}.${a and 255}"
        }
    }
}
