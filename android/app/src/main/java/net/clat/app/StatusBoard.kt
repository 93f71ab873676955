package net.clat.app

import android.os.Handler
import android.os.Looper
import java.util.concurrent.CopyOnWriteArrayList

/**
 * What the UI, the tile and the notification show, published by [ClatVpnService] in the same
 * process. A plain observable instead of a bound service: everything runs in one process and the
 * state is small, so there is nothing to marshal.
 */
data class ClatStatus(
    val running: Boolean = false,
    /** One line: why it runs, or why not. */
    val reason: String = "not started",
    /** "2001:db8:64::/96", or null when none is known. */
    val prefix: String? = null,
    val prefixSource: String? = null,
    val network: String? = null,
    val counters: List<Pair<String, Long>> = emptyList(),
    /** Rejected settings and other things the user should know (visible, never silent). */
    val warnings: List<String> = emptyList(),
    val alwaysOn: Boolean = false,
    val lockdown: Boolean = false,
    /** Which resolvers apps use and why (DnsPolicy.describe), one line; null while idle. */
    val dns: String? = null,
)

object StatusBoard {
    private val main = Handler(Looper.getMainLooper())
    private val listeners = CopyOnWriteArrayList<(ClatStatus) -> Unit>()

    @Volatile
    var status: ClatStatus = ClatStatus()
        private set

    /** Publishes [s]; listeners are called on the main thread. */
    fun publish(s: ClatStatus) {
        status = s
        main.post { listeners.forEach { it(s) } }
    }

    fun listen(l: (ClatStatus) -> Unit) {
        listeners.add(l)
        l(status)
    }

    fun unlisten(l: (ClatStatus) -> Unit) {
        listeners.remove(l)
    }
}
