package net.clat.app

import android.os.Handler
import android.os.Looper
import java.util.concurrent.CopyOnWriteArrayList
import net.clat.app.logic.StatusLog

/**
 * What the UI, the tile and the notification show, published by [ClatVpnService] in the same
 * process. A plain observable instead of a bound service: everything runs in one process and the
 * state is small, so there is nothing to marshal.
 */
data class ClatStatus(
    val running: Boolean = false,
    /** IPv4 leaves natively through the VPN (pass-through under always-on), not via the NAT64. */
    val ipv4Native: Boolean = false,
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
    /** The TUN's internal addresses in force (CLAT source, NAT, DNS relay), when running. */
    val addresses: String? = null,
    val mtu: Int? = null,
    /** The MTU and why it is that value ([net.clat.app.logic.MtuNote]). */
    val mtuNote: String? = null,
    /** The upstream resolvers the DNS relay uses. */
    val resolvers: List<String> = emptyList(),
    /** The app selection in force ("all apps", "only 2 app(s): ..."). */
    val apps: String? = null,
) {
    /** One line for the history ([StatusBoard.log]): what changed, never the counters. */
    fun logLine(): String = (if (!running) "not running" else if (ipv4Native) "running in pass-through" else "running") + ": " + reason +
        (prefix?.let { "; prefix $it from $prefixSource" } ?: "") + (network?.let { " on $it" } ?: "") +
        (if (warnings.isEmpty()) "" else "; warnings: " + warnings.joinToString(" | "))
}

object StatusBoard {
    private val main = Handler(Looper.getMainLooper())
    private val listeners = CopyOnWriteArrayList<(ClatStatus) -> Unit>()

    @Volatile
    var status: ClatStatus = ClatStatus()
        private set

    /** The history exported from the UI (the app's own lines; no READ_LOGS). */
    val log = StatusLog()

    /** Publishes [s]; listeners are called on the main thread. */
    fun publish(s: ClatStatus) {
        status = s
        log.record(System.currentTimeMillis(), s.logLine())
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
