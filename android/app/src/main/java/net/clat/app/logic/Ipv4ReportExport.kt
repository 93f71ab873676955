package net.clat.app.logic

import java.text.SimpleDateFormat
import java.util.Date
import java.util.Locale
import java.util.TimeZone

/**
 * The IPv4 report as text the user shares (JSON or CSV, through ACTION_SEND): only when the user
 * exports, nothing leaves the phone otherwise. Times are UTC, ISO 8601 ("2026-11-30T09:15:02Z");
 * days are the phone's local calendar days ("2026-11-30"); bytes are IPv4 bytes ([FlowEnd]).
 */
object Ipv4ReportExport {
    /** CSV columns, in order (RFC 4180: CRLF line ends, fields with , " CR LF quoted). */
    val CSV_COLUMNS = listOf(
        "uid", "packages", "owner", "flows", "bytes_up", "bytes_down", "flows_to_literals", "flows_to_names",
        "flows_native_ipv4", "distinct_destinations", "destinations_complete", "destinations", "names_complete",
        "names", "first_use", "last_use",
    )

    /**
     * One JSON object: `window` ("today" / "7 days"), `from` and `to` (local days), `attribution`
     * (false below Android 10), `apps` (most flows first), each with the [CSV_COLUMNS] fields;
     * `packages`, `destinations` and `names` are arrays, `uid` is negative for unattributed flows
     * ([FlowOwner]).
     */
    fun json(window: ReportWindow, today: Int, attribution: Boolean, apps: List<AppUsage>): String {
        val sb = StringBuilder()
        sb.append("{\"window\":").append(str(window.label))
            .append(",\"from\":").append(str(day(today - window.days + 1)))
            .append(",\"to\":").append(str(day(today)))
            .append(",\"attribution\":").append(attribution)
            .append(",\"apps\":[")
        apps.forEachIndexed { i, a ->
            if (i > 0) sb.append(',')
            sb.append("{\"uid\":").append(a.owner.uid)
                .append(",\"packages\":").append(a.owner.packages.joinToString(",", "[", "]") { str(it) })
                .append(",\"owner\":").append(str(a.owner.label()))
                .append(",\"flows\":").append(a.flows)
                .append(",\"bytes_up\":").append(a.bytesUp)
                .append(",\"bytes_down\":").append(a.bytesDown)
                .append(",\"flows_to_literals\":").append(a.flowsToLiterals)
                .append(",\"flows_to_names\":").append(a.flowsToNames)
                .append(",\"flows_native_ipv4\":").append(a.flowsNativeIpv4)
                .append(",\"distinct_destinations\":").append(a.destinations.size)
                .append(",\"destinations_complete\":").append(a.destinationsComplete)
                .append(",\"destinations\":").append(a.destinations.joinToString(",", "[", "]") { str(it) })
                .append(",\"names_complete\":").append(a.namesComplete)
                .append(",\"names\":").append(a.names.joinToString(",", "[", "]") { str(it) })
                .append(",\"first_use\":").append(str(time(a.firstMs)))
                .append(",\"last_use\":").append(str(time(a.lastMs)))
                .append('}')
        }
        return sb.append("]}\n").toString()
    }

    /** A header line of [CSV_COLUMNS], then one line per app; lists are space-separated in one field. */
    fun csv(apps: List<AppUsage>): String {
        val sb = StringBuilder(CSV_COLUMNS.joinToString(",")).append("\r\n")
        for (a in apps) {
            val fields = listOf(
                a.owner.uid.toString(), a.owner.packages.joinToString(" "), a.owner.label(), a.flows.toString(),
                a.bytesUp.toString(), a.bytesDown.toString(), a.flowsToLiterals.toString(), a.flowsToNames.toString(),
                a.flowsNativeIpv4.toString(), a.destinations.size.toString(), a.destinationsComplete.toString(),
                a.destinations.joinToString(" "), a.namesComplete.toString(), a.names.joinToString(" "),
                time(a.firstMs), time(a.lastMs),
            )
            sb.append(fields.joinToString(",") { csvField(it) }).append("\r\n")
        }
        return sb.toString()
    }

    private fun csvField(s: String): String =
        if (s.any { it == ',' || it == '"' || it == '\r' || it == '\n' }) "\"" + s.replace("\"", "\"\"") + "\"" else s

    /** A JSON string (RFC 8259 section 7): quote, backslash and control characters escaped. */
    private fun str(s: String): String {
        val sb = StringBuilder(s.length + 2).append('"')
        for (c in s) {
            when {
                c == '"' -> sb.append("\\\"")
                c == '\\' -> sb.append("\\\\")
                c < ' ' -> sb.append(String.format(Locale.ROOT, "\\u%04x", c.code))
                else -> sb.append(c)
            }
        }
        return sb.append('"').toString()
    }

    fun time(ms: Long): String = utc("yyyy-MM-dd'T'HH:mm:ss'Z'").format(Date(ms))

    fun day(day: Int): String = utc("yyyy-MM-dd").format(Date(day * UsageClock.DAY_MS))

    private fun utc(pattern: String) = SimpleDateFormat(pattern, Locale.ROOT).apply { timeZone = TimeZone.getTimeZone("UTC") }
}
