package net.clat.app

import android.os.Handler
import android.os.SystemClock
import net.clat.app.logic.Cancellable
import net.clat.app.logic.Scheduler

/**
 * [Scheduler] on a [Handler]'s thread (the main thread). Time is `SystemClock.uptimeMillis`, the
 * clock `Handler.postDelayed` itself counts in: it stops in deep sleep, so delays and the times
 * the logic compares stay on one clock.
 */
class HandlerScheduler(private val handler: Handler) : Scheduler {
    override fun nowMs(): Long = SystemClock.uptimeMillis()

    override fun schedule(delayMs: Long, action: () -> Unit): Cancellable {
        val r = Runnable { action() }
        handler.postDelayed(r, delayMs)
        return Cancellable { handler.removeCallbacks(r) }
    }
}
