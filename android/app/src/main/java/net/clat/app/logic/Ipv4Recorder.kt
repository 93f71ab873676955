package net.clat.app.logic

/**
 * Takes the engine's flow events into the IPv4 report: attribution when a flow starts
 * ([FlowAttributor]), aggregation ([Ipv4UsageStore]), retention and saving ([Ipv4UsageFile]).
 * The events come through [flowStarted] and [flowEnded] ([FlowEventSink]), called by the
 * service's [FlowEventPump] thread of each running engine.
 *
 * Saving: at most every [saveEveryMs] while events arrive (called on the event thread), and on
 * [saveNow] (service stop, screen closed). Nothing is logged: names and destinations stay in the
 * report.
 */
class Ipv4Recorder(
    val store: Ipv4UsageStore,
    private val attributor: FlowAttributor,
    private val file: Ipv4UsageFile?,
    private val settings: () -> Ipv4ReportSettings,
    private val saveEveryMs: Long = 5 * 60_000L,
) : FlowEventSink {
    @Volatile
    private var lastSaveMs = Long.MIN_VALUE / 2

    /** The last load or save failure, for the screen; null when all went well. */
    @Volatile
    var storageError: String? = null
        private set

    /** Reads the file into the store and applies the retention. */
    fun load(nowMs: Long) {
        file?.load()?.fold({ store.load(it) }, { storageError = it.message })
        store.expire(nowMs, settings().retentionDays)
        lastSaveMs = nowMs
    }

    /** @param clatV4 the TUN's IPv4 address in force (the app side of every flow). */
    override fun flowStarted(e: FlowStart, clatV4: String) {
        if (!settings().enabled) return
        store.flowStarted(e, attributor.owner(e, clatV4))
        saveIfDue(e.atMs)
    }

    override fun flowEnded(e: FlowEnd) {
        if (!settings().enabled) return
        store.flowEnded(e)
        saveIfDue(e.atMs)
    }

    private fun saveIfDue(nowMs: Long) {
        if (nowMs - lastSaveMs >= saveEveryMs) saveNow(nowMs)
    }

    /** Applies the retention and writes the file when something changed. Saves one at a time. */
    @Synchronized
    fun saveNow(nowMs: Long) {
        lastSaveMs = nowMs
        store.expire(nowMs, settings().retentionDays)
        if (file == null) return
        val records = store.takeForSave() ?: return
        try {
            file.save(records)
            storageError = null
        } catch (e: java.io.IOException) {
            store.markDirty()
            storageError = "IPv4 report not saved: ${e.message}"
        }
    }
}
