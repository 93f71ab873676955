package net.clat.app.logic

import java.text.SimpleDateFormat
import java.util.Date
import java.util.Locale
import java.util.TimeZone

/**
 * The app's own history of what it did and why, for "Export log" (a share intent). The app keeps
 * it itself because reading the system log needs READ_LOGS, which no ordinary app gets. Bounded,
 * in memory only (it holds network names and prefixes: nothing is written to storage), and a line
 * equal to the previous one is not repeated, since counters and capability updates republish
 * the same status often. Thread-safe: the service and the UI both touch it.
 */
class StatusLog(private val capacity: Int = 500) {
    private val entries = ArrayDeque<Pair<Long, String>>()

    @Synchronized
    fun record(timeMillis: Long, line: String) {
        if (entries.lastOrNull()?.second == line) return
        entries.addLast(timeMillis to line)
        while (entries.size > capacity) entries.removeFirst()
    }

    @Synchronized
    fun lines(): List<String> = entries.map { (t, l) -> "${format(t)}  $l" }

    /** The exported text: [header] lines (version, device, current status), then the history. */
    fun export(header: List<String>): String =
        (header + "" + "History (UTC, oldest first):" + lines()).joinToString("\n", postfix = "\n")

    private fun format(t: Long): String = SimpleDateFormat("yyyy-MM-dd HH:mm:ss", Locale.ROOT)
        .apply { timeZone = TimeZone.getTimeZone("UTC") }
        .format(Date(t))
}
