package net.clat.app.logic

/**
 * Bounds of the IPv4 report's memory and storage. Beyond them nothing is counted wrong: flows,
 * bytes and the literal/name/native counts stay exact; only the lists stop growing, and the
 * report says that they are incomplete.
 *
 * @property maxDestinationsPerAppDay distinct IPv4 destinations kept per app and day; further new
 *   destinations are not listed (the day's record is marked incomplete).
 * @property maxNamesPerAppDay the same for DNS names.
 * @property maxAppsPerDay owners per day; flows of further apps count under [FlowOwner.OTHER_APPS].
 * @property maxOpenFlows flows between start and end remembered for their byte counts (the
 *   engine's default max_flows); the oldest is forgotten beyond it and its end is counted as unmatched.
 */
data class UsageLimits(
    val maxDestinationsPerAppDay: Int = 64,
    val maxNamesPerAppDay: Int = 64,
    val maxAppsPerDay: Int = 256,
    val maxOpenFlows: Int = 65536,
)

/**
 * One owner's IPv4 use on one day (the unit that is stored). A flow counts on the day it
 * started, its bytes included (added when it ends).
 *
 * @property day local days since 1970-01-01 ([UsageClock.day]).
 * @property firstMs, lastMs first flow start and last flow start or end, ms since the epoch.
 */
class AppDay(
    val day: Int,
    val uid: Int,
    var packages: List<String>,
) {
    var flows = 0L
    var bytesUp = 0L
    var bytesDown = 0L
    var flowsToLiterals = 0L
    var flowsToNames = 0L
    var flowsNativeIpv4 = 0L
    var firstMs = Long.MAX_VALUE
    var lastMs = Long.MIN_VALUE
    val destinations = LinkedHashSet<String>()
    var destinationsComplete = true
    val names = LinkedHashSet<String>()
    var namesComplete = true

    /** A copy that later events do not change (what is saved while recording goes on). */
    fun copy(): AppDay = AppDay(day, uid, packages).also { c ->
        c.flows = flows
        c.bytesUp = bytesUp
        c.bytesDown = bytesDown
        c.flowsToLiterals = flowsToLiterals
        c.flowsToNames = flowsToNames
        c.flowsNativeIpv4 = flowsNativeIpv4
        c.firstMs = firstMs
        c.lastMs = lastMs
        c.destinations.addAll(destinations)
        c.destinationsComplete = destinationsComplete
        c.names.addAll(names)
        c.namesComplete = namesComplete
    }

    override fun equals(other: Any?): Boolean = other is AppDay && day == other.day && uid == other.uid &&
        packages == other.packages && flows == other.flows && bytesUp == other.bytesUp && bytesDown == other.bytesDown &&
        flowsToLiterals == other.flowsToLiterals && flowsToNames == other.flowsToNames &&
        flowsNativeIpv4 == other.flowsNativeIpv4 && firstMs == other.firstMs && lastMs == other.lastMs &&
        destinations == other.destinations && destinationsComplete == other.destinationsComplete &&
        names == other.names && namesComplete == other.namesComplete

    override fun hashCode(): Int = 31 * day + uid

    override fun toString(): String = "AppDay(day=$day uid=$uid $packages flows=$flows up=$bytesUp down=$bytesDown " +
        "literals=$flowsToLiterals names=$flowsToNames native=$flowsNativeIpv4 first=$firstMs last=$lastMs " +
        "dst=$destinations${if (destinationsComplete) "" else "+"} names=$names${if (namesComplete) "" else "+"})"
}

/** The report's time windows, counted in local days ending today. */
enum class ReportWindow(val days: Int, val label: String) {
    TODAY(1, "today"),
    WEEK(7, "7 days"),
}

/**
 * One owner's use over a window: [AppDay]s merged.
 *
 * @property destinations distinct IPv4 destinations, sorted numerically; [destinationsComplete]
 *   false when a day's list hit its bound (there were more).
 */
data class AppUsage(
    val owner: FlowOwner,
    val flows: Long,
    val bytesUp: Long,
    val bytesDown: Long,
    val flowsToLiterals: Long,
    val flowsToNames: Long,
    val flowsNativeIpv4: Long,
    val firstMs: Long,
    val lastMs: Long,
    val destinations: List<String>,
    val destinationsComplete: Boolean,
    val names: List<String>,
    val namesComplete: Boolean,
)

/** Local calendar days: the report's "today" is the phone's day, not UTC's. */
fun interface UsageClock {
    /** Milliseconds to add to UTC for local time at [ms] (TimeZone.getOffset). */
    fun offsetMs(ms: Long): Int

    fun day(ms: Long): Int = Math.floorDiv(ms + offsetMs(ms), DAY_MS).toInt()

    companion object {
        const val DAY_MS = 86_400_000L
        val UTC = UsageClock { 0 }
    }
}

/**
 * Per-app IPv4 use, per local day: aggregation, windows and retention (issue 17 item 2). Pure
 * Kotlin, thread-safe (the engine's event thread writes, the UI reads). Persisted by
 * [Ipv4UsageFile]; flows still open are not persisted (their bytes are lost if the process dies).
 */
class Ipv4UsageStore(
    private val limits: UsageLimits = UsageLimits(),
    private val clock: UsageClock = UsageClock.UTC,
) {
    private val days = HashMap<Int, LinkedHashMap<Int, AppDay>>()
    private val open = object : LinkedHashMap<Long, AppDay>() {
        override fun removeEldestEntry(eldest: MutableMap.MutableEntry<Long, AppDay>?): Boolean =
            (size > limits.maxOpenFlows).also { if (it) forgottenOpen++ }
    }
    private var forgottenOpen = 0L

    /** Flow ends with no remembered start (engine restarted, start forgotten over [UsageLimits.maxOpenFlows]). */
    var unmatchedEnds = 0L
        private set

    /** Records changed since the last [takeForSave]. */
    var dirty = false
        private set

    /** Events dropped as malformed (a destination that is not an IPv4 literal). */
    var badEvents = 0L
        private set

    @Synchronized
    fun flowStarted(start: FlowStart, owner: FlowOwner) {
        if (IpAddresses.parseIpv4(start.dst) == null) {
            badEvents++
            return
        }
        val perDay = days.getOrPut(clock.day(start.atMs)) { LinkedHashMap() }
        val key = if (owner.uid in perDay || perDay.size < limits.maxAppsPerDay) owner else FlowOwner(FlowOwner.OTHER_APPS, emptyList())
        val rec = perDay.getOrPut(key.uid) { AppDay(clock.day(start.atMs), key.uid, key.packages) }
        if (key.packages.isNotEmpty()) rec.packages = key.packages
        rec.flows++
        if (start.name == null) rec.flowsToLiterals++ else rec.flowsToNames++
        if (start.nativeIpv4) rec.flowsNativeIpv4++
        rec.firstMs = minOf(rec.firstMs, start.atMs)
        rec.lastMs = maxOf(rec.lastMs, start.atMs)
        if (start.dst !in rec.destinations) {
            if (rec.destinations.size < limits.maxDestinationsPerAppDay) rec.destinations.add(start.dst) else rec.destinationsComplete = false
        }
        val name = start.name
        if (name != null && name !in rec.names) {
            if (rec.names.size < limits.maxNamesPerAppDay) rec.names.add(name) else rec.namesComplete = false
        }
        open[start.id] = rec
        dirty = true
    }

    @Synchronized
    fun flowEnded(end: FlowEnd) {
        val rec = open.remove(end.id)
        if (rec == null) {
            unmatchedEnds++
            return
        }
        rec.bytesUp += end.bytesUp.coerceAtLeast(0)
        rec.bytesDown += end.bytesDown.coerceAtLeast(0)
        rec.lastMs = maxOf(rec.lastMs, end.atMs)
        dirty = true
    }

    /** Drops the days before the last [retentionDays] local days (today included). */
    @Synchronized
    fun expire(nowMs: Long, retentionDays: Int) {
        val oldest = clock.day(nowMs) - retentionDays + 1
        if (days.keys.removeAll { it < oldest }) dirty = true
        open.values.removeAll { it.day < oldest }
    }

    /** Per-owner use over [window] ending on [nowMs]'s day, most flows first. */
    @Synchronized
    fun usage(window: ReportWindow, nowMs: Long): List<AppUsage> {
        val today = clock.day(nowMs)
        val byUid = LinkedHashMap<Int, MutableList<AppDay>>()
        for (d in (today - window.days + 1)..today) {
            days[d]?.values?.forEach { byUid.getOrPut(it.uid) { ArrayList() }.add(it) }
        }
        return byUid.map { (uid, recs) ->
            val latest = recs.last { it.packages.isNotEmpty() || it === recs.last() }
            AppUsage(
                owner = FlowOwner(uid, latest.packages),
                flows = recs.sumOf { it.flows },
                bytesUp = recs.sumOf { it.bytesUp },
                bytesDown = recs.sumOf { it.bytesDown },
                flowsToLiterals = recs.sumOf { it.flowsToLiterals },
                flowsToNames = recs.sumOf { it.flowsToNames },
                flowsNativeIpv4 = recs.sumOf { it.flowsNativeIpv4 },
                firstMs = recs.minOf { it.firstMs },
                lastMs = recs.maxOf { it.lastMs },
                destinations = recs.flatMapTo(HashSet()) { it.destinations }.sortedBy { ipv4Order(it) },
                destinationsComplete = recs.all { it.destinationsComplete },
                names = recs.flatMapTo(HashSet()) { it.names }.sorted(),
                namesComplete = recs.all { it.namesComplete },
            )
        }.sortedWith(compareByDescending<AppUsage> { it.flows }.thenBy { it.owner.uid })
    }

    /** Copies of every stored record, oldest day first (for [Ipv4UsageFile]). */
    @Synchronized
    fun records(): List<AppDay> = days.keys.sorted().flatMap { d -> days.getValue(d).values.map { it.copy() } }

    /**
     * For a save: copies of the records and clears [dirty] in one step, or null when nothing changed.
     * A failed save calls [markDirty] so that the next one tries again.
     */
    @Synchronized
    fun takeForSave(): List<AppDay>? {
        if (!dirty) return null
        dirty = false
        return records()
    }

    @Synchronized
    fun markDirty() {
        dirty = true
    }

    /** Adds loaded records (merging into any recorded before the load finished). */
    @Synchronized
    fun load(records: List<AppDay>) {
        for (r in records) {
            val perDay = days.getOrPut(r.day) { LinkedHashMap() }
            val cur = perDay[r.uid]
            if (cur == null) {
                perDay[r.uid] = r
            } else {
                cur.flows += r.flows
                cur.bytesUp += r.bytesUp
                cur.bytesDown += r.bytesDown
                cur.flowsToLiterals += r.flowsToLiterals
                cur.flowsToNames += r.flowsToNames
                cur.flowsNativeIpv4 += r.flowsNativeIpv4
                cur.firstMs = minOf(cur.firstMs, r.firstMs)
                cur.lastMs = maxOf(cur.lastMs, r.lastMs)
                for (d in r.destinations) if (d !in cur.destinations) {
                    if (cur.destinations.size < limits.maxDestinationsPerAppDay) cur.destinations.add(d) else cur.destinationsComplete = false
                }
                cur.destinationsComplete = cur.destinationsComplete && r.destinationsComplete
                for (n in r.names) if (n !in cur.names) {
                    if (cur.names.size < limits.maxNamesPerAppDay) cur.names.add(n) else cur.namesComplete = false
                }
                cur.namesComplete = cur.namesComplete && r.namesComplete
                if (cur.packages.isEmpty()) cur.packages = r.packages
            }
        }
    }

    @Synchronized
    fun clear() {
        days.clear()
        open.clear()
        dirty = true
    }

    private fun ipv4Order(s: String): Long =
        IpAddresses.parseIpv4(s)?.fold(0L) { acc, b -> acc * 256 + (b.toInt() and 0xff) } ?: Long.MAX_VALUE

    /** Starts remembered for their end beyond [UsageLimits.maxOpenFlows] and forgotten. */
    val forgottenOpenFlows: Long @Synchronized get() = forgottenOpen
}
