package net.clat.app.logic

/** A scheduled action that can be called off; cancelling twice or after it ran is harmless. */
fun interface Cancellable {
    fun cancel()
}

/**
 * Time as the decision logic sees it: a monotonic clock and delayed actions on the logic's own
 * thread. The service implements it with `SystemClock.elapsedRealtime` and a main-thread
 * `Handler`; tests with a manual clock, so that no test sleeps.
 */
interface Scheduler {
    /** Milliseconds of a monotonic clock (only differences matter). */
    fun nowMs(): Long

    /** Runs [action] on the logic's thread after [delayMs], unless cancelled first. */
    fun schedule(delayMs: Long, action: () -> Unit): Cancellable
}
