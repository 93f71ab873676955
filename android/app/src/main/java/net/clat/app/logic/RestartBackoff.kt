package net.clat.app.logic

/**
 * When to restart an engine that ended by itself: after [initialMs], doubling up to [maxMs],
 * at most [maxAttempts] times in a row. A run that lasted [stableMs] or more starts the count
 * afresh, so a CLAT that dies once a day is always restarted quickly, while one that dies at
 * once every time (a broken TUN, a bug hit by every start) stops retrying instead of draining
 * the battery in a loop, and says so.
 */
class RestartBackoff(
    private val initialMs: Long = 1_000,
    private val maxMs: Long = 60_000,
    private val maxAttempts: Int = 6,
    private val stableMs: Long = 60_000,
) {
    private var attempts = 0
    private var startedAt: Long? = null

    /** Attempts made since the last stable run. */
    val attemptsInRow: Int get() = attempts

    /** An engine started at [nowMs]. */
    fun onStarted(nowMs: Long) {
        startedAt = nowMs
    }

    /** The engine ended by itself at [nowMs]: the delay before the next start, or null to give up. */
    fun nextDelay(nowMs: Long): Long? {
        val since = startedAt
        if (since != null && nowMs - since >= stableMs) attempts = 0
        startedAt = null
        if (attempts >= maxAttempts) return null
        val delay = (initialMs shl attempts.coerceAtMost(30)).coerceAtMost(maxMs)
        attempts++
        return delay
    }

    /** A user's start or a new network: the next death is treated as the first. */
    fun reset() {
        attempts = 0
        startedAt = null
    }
}
