package net.clat.app.logic

/** What the IPv4 report screen shows, decided here so that it is tested on the JVM. */
object Ipv4ReportText {
    const val EMPTY = "No IPv4 flows recorded yet."

    /** Why the list may be empty even with apps using IPv4, said under the list. */
    const val NOT_YET = "Recording starts once the translator reports its flows to the app; this version " +
        "does not yet, so the list stays empty."

    fun status(settings: Ipv4ReportSettings, attribution: Boolean): String = listOf(
        if (settings.enabled) "Recording: on" else "Recording: off",
        if (settings.enabledManaged) " (set by your organisation)" else "",
        "; kept ${settings.retentionDays} day(s)",
        if (settings.retentionManaged) " (set by your organisation)" else "",
        if (attribution) "" else ". Android 9 or older cannot tell which app made a connection: flows are listed as unattributed.",
    ).joinToString("")

    /** One line per app: who, how many flows, bytes. */
    fun summary(a: AppUsage): String = "${a.owner.label()}: ${a.flows} flow(s), ↑ ${bytes(a.bytesUp)} ↓ ${bytes(a.bytesDown)}"

    /** The details shown when an app is tapped. */
    fun details(a: AppUsage): String = listOf(
        "uid ${a.owner.uid}",
        "flows to IPv4 literals ${a.flowsToLiterals}, to names ${a.flowsToNames}",
        "flows while the network had native IPv4 (pass-through) ${a.flowsNativeIpv4}",
        "first ${Ipv4ReportExport.time(a.firstMs)}, last ${Ipv4ReportExport.time(a.lastMs)}",
        "destinations (${a.destinations.size}${if (a.destinationsComplete) "" else ", more not kept"}): " +
            a.destinations.joinToString(", ").ifEmpty { "-" },
        "names (${a.names.size}${if (a.namesComplete) "" else ", more not kept"}): " + a.names.joinToString(", ").ifEmpty { "-" },
    ).joinToString("\n")

    /** 999 B, 1.5 KiB, 2.0 MiB, 3.1 GiB (binary units, one decimal). */
    fun bytes(n: Long): String = when {
        n < 1024 -> "$n B"
        n < 1024L * 1024 -> String.format(java.util.Locale.ROOT, "%.1f KiB", n / 1024.0)
        n < 1024L * 1024 * 1024 -> String.format(java.util.Locale.ROOT, "%.1f MiB", n / (1024.0 * 1024))
        else -> String.format(java.util.Locale.ROOT, "%.1f GiB", n / (1024.0 * 1024 * 1024))
    }
}
