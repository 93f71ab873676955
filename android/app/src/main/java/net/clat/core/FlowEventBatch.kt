package net.clat.core

/**
 * Flow events as [ClatNative.awaitFlowEvents] hands them over: fixed-size records in one array
 * and the DNS names beside them, no object per event. Built by the core
 * (rust-core/jni/src/jconvert.rs new_flow_event_batch calls the constructor `(long[], String[])`;
 * the layout is rust-core/jni/src/flow_records.rs, written out in docs/flow-events.md "Through
 * JNI": keep them in step). Decoded by net.clat.app.logic.FlowEventDecoder.
 *
 * @property records [RECORD_LONGS] longs per event, in the order the engine saw them.
 * @property names one entry per event: the DNS name of a flow start, null for none and for ends.
 */
class FlowEventBatch(
    @JvmField val records: LongArray,
    @JvmField val names: Array<String?>,
) {
    /** Events in the batch. */
    val size: Int get() = records.size / RECORD_LONGS

    override fun toString(): String = "FlowEventBatch($size events)"

    companion object {
        /** Longs per event (flow_records.rs RECORD_LONGS). */
        const val RECORD_LONGS = 5
    }
}
