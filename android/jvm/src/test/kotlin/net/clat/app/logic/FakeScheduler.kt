package net.clat.app.logic

/** A manual clock: [advance] runs the actions that fall due, in time order; nothing sleeps. */
class FakeScheduler : Scheduler {
    private class Job(val at: Long, val seq: Int, val action: () -> Unit) {
        var cancelled = false
    }

    private var now = 0L
    private var seq = 0
    private val jobs = ArrayList<Job>()

    override fun nowMs(): Long = now

    override fun schedule(delayMs: Long, action: () -> Unit): Cancellable {
        val j = Job(now + delayMs, seq++, action)
        jobs.add(j)
        return Cancellable { j.cancelled = true }
    }

    /** Delays of the actions still pending, from now. */
    fun pending(): List<Long> = jobs.filter { !it.cancelled }.map { it.at - now }.sorted()

    fun advance(ms: Long) {
        val end = now + ms
        while (true) {
            val next = jobs.filter { !it.cancelled && it.at <= end }.minWithOrNull(compareBy({ it.at }, { it.seq })) ?: break
            jobs.remove(next)
            now = next.at
            next.action()
        }
        now = end
        jobs.removeAll { it.cancelled }
    }
}
