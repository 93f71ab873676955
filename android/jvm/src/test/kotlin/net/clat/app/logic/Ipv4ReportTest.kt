package net.clat.app.logic

import java.io.ByteArrayInputStream
import java.io.File
import java.io.IOException
import java.nio.file.Files
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertNull
import org.junit.jupiter.api.Assertions.assertThrows
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test

/** 2026-11-30T00:00:00Z: local day 20787 under UTC. */
private const val DAY0 = 1_795_996_800_000L
private const val H = 3_600_000L
private const val D = 86_400_000L

private fun start(id: Long, at: Long, dst: String, name: String? = null, proto: FlowProto = FlowProto.TCP, native: Boolean = false, port: Int = 40000) =
    FlowStart(id, at, proto, dst, 443, port, name, native)

private fun end(id: Long, at: Long, up: Long, down: Long) = FlowEnd(id, at, up, down, FlowEndReason.CLOSED)

private val APP_A = FlowOwner(10123, listOf("com.example.a"))
private val APP_B = FlowOwner(10200, listOf("com.example.b", "com.example.b.sync"))

/** The platform as a table: (proto, local, lport, remote, rport) -> uid; counts the calls. */
private class FakeOwners(
    override val available: Boolean = true,
    val uids: Map<Int, Int> = emptyMap(), // app port -> uid
    val pkgs: Map<Int, List<String>> = emptyMap(),
    val throwOn: Int? = null,
) : ConnectionOwners {
    val asked = ArrayList<String>()
    var packageCalls = 0

    override fun ownerUid(proto: FlowProto, localAddress: String, localPort: Int, remoteAddress: String, remotePort: Int): Int {
        asked.add("$proto $localAddress:$localPort -> $remoteAddress:$remotePort")
        if (localPort == throwOn) throw SecurityException("no")
        return uids[localPort] ?: -1
    }

    override fun packagesForUid(uid: Int): List<String> {
        packageCalls++
        return pkgs[uid].orEmpty()
    }
}

class FlowAttributorTest {
    @Test
    fun `asks the platform for the app's socket and lists a shared uid's packages sorted`() {
        val owners = FakeOwners(uids = mapOf(40000 to 10200), pkgs = mapOf(10200 to listOf("com.example.b.sync", "com.example.b")))
        val a = FlowAttributor(owners)
        assertEquals(APP_B, a.owner(start(1, DAY0, "192.0.2.1"), "192.0.0.3"))
        assertEquals(listOf("TCP 192.0.0.3:40000 -> 192.0.2.1:443"), owners.asked)
        a.owner(start(2, DAY0, "192.0.2.2"), "192.0.0.3")
        assertEquals(1, owners.packageCalls, "uid -> packages is cached")
    }

    @Test
    fun `ICMP, old Android, unknown sockets and failures are unattributed, never thrown`() {
        val owners = FakeOwners(uids = mapOf(1 to 10123), throwOn = 2)
        val a = FlowAttributor(owners)
        assertEquals(FlowOwner.ICMP, a.owner(start(1, DAY0, "192.0.2.1", proto = FlowProto.ICMP, port = 1), "192.0.0.3").uid)
        assertTrue(owners.asked.isEmpty(), "ICMP is not asked: ConnectivityService throws for it")
        assertEquals(FlowOwner.UNKNOWN, a.owner(start(2, DAY0, "192.0.2.1", port = 2), "192.0.0.3").uid)
        assertEquals(1, a.failures)
        assertEquals(FlowOwner.UNKNOWN, a.owner(start(3, DAY0, "192.0.2.1", port = 3), "192.0.0.3").uid)
        assertEquals(FlowOwner(10123, emptyList()), a.owner(start(4, DAY0, "192.0.2.1", proto = FlowProto.UDP, port = 1), "192.0.0.3"))
        assertEquals("uid 10123 (package not visible to this app)", FlowOwner(10123, emptyList()).label())
        val old = FlowAttributor(FakeOwners(available = false, uids = mapOf(40000 to 10123)))
        assertEquals(FlowOwner.UNAVAILABLE, old.owner(start(5, DAY0, "192.0.2.1"), "192.0.0.3").uid)
    }
}

class Ipv4UsageStoreTest {
    @Test
    fun `aggregates flows, bytes, destinations, names, literals and pass-through per app`() {
        val s = Ipv4UsageStore()
        s.flowStarted(start(1, DAY0 + 9 * H, "198.51.100.7", "api.example.com"), APP_A)
        s.flowStarted(start(2, DAY0 + 10 * H, "192.0.2.10"), APP_A)
        s.flowStarted(start(3, DAY0 + 11 * H, "198.51.100.7", "api.example.com", native = true), APP_A)
        s.flowStarted(start(4, DAY0 + 12 * H, "203.0.113.5", "b.example.net"), APP_B)
        s.flowEnded(end(1, DAY0 + 9 * H + 5000, 600, 12000))
        s.flowEnded(end(2, DAY0 + 13 * H, 100, 200))
        s.flowEnded(end(99, DAY0 + 13 * H, 1, 1))
        val u = s.usage(ReportWindow.TODAY, DAY0 + 20 * H)
        assertEquals(2, u.size)
        val a = u[0]
        assertEquals(APP_A, a.owner)
        assertEquals(3, a.flows)
        assertEquals(700, a.bytesUp)
        assertEquals(12200, a.bytesDown)
        assertEquals(1, a.flowsToLiterals)
        assertEquals(2, a.flowsToNames)
        assertEquals(1, a.flowsNativeIpv4)
        assertEquals(DAY0 + 9 * H, a.firstMs)
        assertEquals(DAY0 + 13 * H, a.lastMs, "the end of flow 2 is the last use")
        assertEquals(listOf("192.0.2.10", "198.51.100.7"), a.destinations, "distinct, numeric order")
        assertEquals(listOf("api.example.com"), a.names)
        assertEquals(1, u[1].flows)
        assertEquals(1, s.unmatchedEnds)
    }

    @Test
    fun `today is the local day, 7 days the last seven, and a flow counts on the day it started`() {
        val s = Ipv4UsageStore()
        s.flowStarted(start(1, DAY0 - 6 * D + H, "192.0.2.1"), APP_A) // 6 days ago: in 7 days
        s.flowStarted(start(2, DAY0 - 7 * D + H, "192.0.2.2"), APP_A) // 7 days ago: outside
        s.flowStarted(start(3, DAY0 - 1, "192.0.2.3"), APP_A) // yesterday's last millisecond
        s.flowEnded(end(3, DAY0 + H, 10, 20)) // ends today, counts yesterday
        s.flowStarted(start(4, DAY0, "192.0.2.4"), APP_A)
        val now = DAY0 + 23 * H
        val today = s.usage(ReportWindow.TODAY, now).single()
        assertEquals(1, today.flows)
        assertEquals(listOf("192.0.2.4"), today.destinations)
        assertEquals(0, today.bytesUp)
        val week = s.usage(ReportWindow.WEEK, now).single()
        assertEquals(3, week.flows)
        assertEquals(listOf("192.0.2.1", "192.0.2.3", "192.0.2.4"), week.destinations)
        assertEquals(10, week.bytesUp)

        // UTC+2: 23:00Z on day 0 is 01:00 local on day 1, so "today" is empty there and yesterday's
        // 22:59:59.999Z flow is local day 0's.
        val plus2 = Ipv4UsageStore(clock = { 2 * H.toInt() })
        plus2.flowStarted(start(1, DAY0 - 1, "192.0.2.1"), APP_A)
        assertTrue(plus2.usage(ReportWindow.TODAY, DAY0 + 23 * H).isEmpty())
        assertEquals(1, plus2.usage(ReportWindow.TODAY, DAY0 + 21 * H).single().flows)
    }

    @Test
    fun `retention drops whole days older than the window kept`() {
        val s = Ipv4UsageStore()
        for (i in 0 until 40) s.flowStarted(start(i.toLong(), DAY0 - i * D, "192.0.2.1"), APP_A)
        s.expire(DAY0 + H, 30)
        assertEquals((DAY0 / D - 29).toInt(), s.records().first().day)
        assertEquals(30, s.records().size)
        s.expire(DAY0 + H, 1)
        assertEquals(listOf((DAY0 / D).toInt()), s.records().map { it.day })
    }

    @Test
    fun `bounds cap the lists and the apps, never the counts`() {
        val s = Ipv4UsageStore(UsageLimits(maxDestinationsPerAppDay = 2, maxNamesPerAppDay = 1, maxAppsPerDay = 2, maxOpenFlows = 2))
        s.flowStarted(start(1, DAY0, "192.0.2.1", "a.example"), APP_A)
        s.flowStarted(start(2, DAY0, "192.0.2.2", "b.example"), APP_A)
        s.flowStarted(start(3, DAY0, "192.0.2.3"), APP_A) // forgets flow 1's start (2 open)
        s.flowStarted(start(4, DAY0, "192.0.2.1"), APP_B)
        s.flowStarted(start(5, DAY0, "192.0.2.9"), FlowOwner(10300, listOf("com.example.c")))
        s.flowEnded(end(1, DAY0 + 1, 5, 5))
        s.flowStarted(start(6, DAY0, "not-an-address"), APP_A)
        val u = s.usage(ReportWindow.TODAY, DAY0).associateBy { it.owner.uid }
        val a = u.getValue(APP_A.uid)
        assertEquals(3, a.flows)
        assertEquals(listOf("192.0.2.1", "192.0.2.2"), a.destinations)
        assertFalse(a.destinationsComplete)
        assertEquals(listOf("a.example"), a.names)
        assertFalse(a.namesComplete)
        assertEquals(0, a.bytesUp, "flow 1's start was forgotten")
        assertEquals(1, s.unmatchedEnds)
        assertTrue(s.forgottenOpenFlows >= 1)
        assertEquals(1, u.getValue(FlowOwner.OTHER_APPS).flows, "a third app goes under other apps")
        assertEquals(setOf(APP_A.uid, APP_B.uid, FlowOwner.OTHER_APPS), u.keys)
        assertEquals(1, s.badEvents)
    }
}

class Ipv4UsageFileTest {
    private fun sample(): List<AppDay> {
        val s = Ipv4UsageStore()
        s.flowStarted(start(1, DAY0 + H, "198.51.100.7", "api.example.com"), APP_A)
        s.flowStarted(start(2, DAY0 + 2 * H, "192.0.2.10", native = true), APP_B)
        s.flowStarted(start(3, DAY0 - D, "203.0.113.255", "ü.example"), FlowOwner(FlowOwner.ICMP, emptyList()))
        s.flowEnded(end(1, DAY0 + 3 * H, 1234, 567890))
        return s.records()
    }

    @Test
    fun `records round-trip through the file and reload into a store`() {
        val dir = Files.createTempDirectory("ipv4report").toFile()
        val f = Ipv4UsageFile(File(dir, "r.bin"))
        assertEquals(emptyList<AppDay>(), f.load().getOrThrow())
        val recs = sample()
        f.save(recs)
        val back = f.load().getOrThrow()
        assertEquals(recs, back)
        val s = Ipv4UsageStore()
        s.load(back)
        val a = s.usage(ReportWindow.TODAY, DAY0 + 5 * H).first { it.owner == APP_A }
        assertEquals(567890, a.bytesDown)
        assertEquals(
            setOf(APP_A.uid, APP_B.uid, FlowOwner.ICMP),
            s.usage(ReportWindow.WEEK, DAY0 + 5 * H).map { it.owner.uid }.toSet(),
        )
        dir.deleteRecursively()
    }

    @Test
    fun `the header is the documented one`() {
        val bytes = Ipv4UsageFile.encode(emptyList())
        // "CLR4", version 1, 0 records, CRC-32 of those 10 bytes.
        val crc = java.util.zip.CRC32().apply { update(byteArrayOf(0x43, 0x4C, 0x52, 0x34, 0, 1, 0, 0, 0, 0)) }.value
        val expected = byteArrayOf(0x43, 0x4C, 0x52, 0x34, 0, 1, 0, 0, 0, 0) +
            byteArrayOf((crc shr 24).toByte(), (crc shr 16).toByte(), (crc shr 8).toByte(), crc.toByte())
        assertEquals(expected.toList(), bytes.toList())
    }

    @Test
    fun `a damaged file is refused with a reason and moved aside`() {
        val good = Ipv4UsageFile.encode(sample())
        val flipped = good.copyOf().also { it[20] = (it[20].toInt() xor 1).toByte() }
        assertEquals("checksum mismatch", assertThrows(IOException::class.java) { Ipv4UsageFile.decode(ByteArrayInputStream(flipped)) }.message)
        assertThrows(IOException::class.java) { Ipv4UsageFile.decode(ByteArrayInputStream(good.copyOf(good.size - 9))) }
        assertEquals("not an IPv4 report file", assertThrows(IOException::class.java) { Ipv4UsageFile.decode(ByteArrayInputStream("{}".toByteArray() + ByteArray(8))) }.message)

        val dir = Files.createTempDirectory("ipv4report").toFile()
        val file = File(dir, "r.bin").apply { writeBytes(flipped) }
        val r = Ipv4UsageFile(file).load()
        assertTrue(r.exceptionOrNull()!!.message!!.contains("kept as r.bin.bad"), r.toString())
        assertTrue(File(dir, "r.bin.bad").isFile)
        assertFalse(file.exists())
        dir.deleteRecursively()
    }
}

class Ipv4ReportExportTest {
    private fun usage(): List<AppUsage> {
        val s = Ipv4UsageStore()
        s.flowStarted(start(1, DAY0 + 9 * H, "198.51.100.7", "api.example.com"), APP_B)
        s.flowStarted(start(2, DAY0 + 10 * H, "192.0.2.10", native = true), APP_B)
        s.flowEnded(end(1, DAY0 + 9 * H + 61_000, 600, 12000))
        s.flowStarted(start(3, DAY0 + 11 * H, "203.0.113.1", "x\"y,z.example"), FlowOwner(FlowOwner.UNKNOWN, emptyList()))
        return s.usage(ReportWindow.WEEK, DAY0 + 12 * H)
    }

    @Test
    fun `JSON is exactly the documented shape`() {
        val expected = """{"window":"7 days","from":"2026-11-24","to":"2026-11-30","attribution":true,"apps":[""" +
            """{"uid":10200,"packages":["com.example.b","com.example.b.sync"],"owner":"com.example.b, com.example.b.sync",""" +
            """"flows":2,"bytes_up":600,"bytes_down":12000,"flows_to_literals":1,"flows_to_names":1,"flows_native_ipv4":1,""" +
            """"distinct_destinations":2,"destinations_complete":true,"destinations":["192.0.2.10","198.51.100.7"],""" +
            """"names_complete":true,"names":["api.example.com"],"first_use":"2026-11-30T09:00:00Z","last_use":"2026-11-30T10:00:00Z"},""" +
            """{"uid":-2,"packages":[],"owner":"unattributed (the platform did not name the app)",""" +
            """"flows":1,"bytes_up":0,"bytes_down":0,"flows_to_literals":0,"flows_to_names":1,"flows_native_ipv4":0,""" +
            """"distinct_destinations":1,"destinations_complete":true,"destinations":["203.0.113.1"],""" +
            """"names_complete":true,"names":["x\"y,z.example"],"first_use":"2026-11-30T11:00:00Z","last_use":"2026-11-30T11:00:00Z"}]}""" + "\n"
        assertEquals(expected, Ipv4ReportExport.json(ReportWindow.WEEK, (DAY0 / D).toInt(), true, usage()))
        assertEquals(
            """{"window":"today","from":"2026-11-30","to":"2026-11-30","attribution":false,"apps":[]}""" + "\n",
            Ipv4ReportExport.json(ReportWindow.TODAY, (DAY0 / D).toInt(), false, emptyList()),
        )
    }

    @Test
    fun `CSV is RFC 4180 with the documented columns`() {
        val expected = "uid,packages,owner,flows,bytes_up,bytes_down,flows_to_literals,flows_to_names,flows_native_ipv4," +
            "distinct_destinations,destinations_complete,destinations,names_complete,names,first_use,last_use\r\n" +
            "10200,com.example.b com.example.b.sync,\"com.example.b, com.example.b.sync\",2,600,12000,1,1,1,2,true," +
            "192.0.2.10 198.51.100.7,true,api.example.com,2026-11-30T09:00:00Z,2026-11-30T10:00:00Z\r\n" +
            "-2,,unattributed (the platform did not name the app),1,0,0,0,1,0,1,true,203.0.113.1,true," +
            "\"x\"\"y,z.example\",2026-11-30T11:00:00Z,2026-11-30T11:00:00Z\r\n"
        assertEquals(expected, Ipv4ReportExport.csv(usage()))
    }
}

class Ipv4ReportSettingsTest {
    @Test
    fun `managed keys parse, are bounded and win over the user's choice`() {
        val ok = ManagedConfigParser.parse(mapOf("ipv4_report" to false, "ipv4_report_retention_days" to "7"))
        assertTrue(ok.errors.isEmpty(), ok.errors.toString())
        assertEquals(false, ok.config.ipv4Report)
        assertEquals(7, ok.config.ipv4ReportRetentionDays)
        assertEquals(Ipv4ReportSettings(false, 7, true, true), Ipv4ReportSettings.merge(ok.config, true, 90))

        val bad = ManagedConfigParser.parse(mapOf("ipv4_report" to "maybe", "ipv4_report_retention_days" to 0))
        assertEquals(
            listOf("ipv4_report: \"maybe\" is not true or false", "ipv4_report_retention_days: 0 is outside 1..365"),
            bad.errors.map { it.toString() },
        )
        assertTrue(bad.blockingErrors.isEmpty(), "the report never blocks the CLAT")
        assertEquals(Ipv4ReportSettings(true, 30), Ipv4ReportSettings.merge(bad.config, true, 30))
        assertEquals(Ipv4ReportSettings(false, 365), Ipv4ReportSettings.merge(ManagedConfig(), false, 1000))
    }
}

class Ipv4RecorderTest {
    @Test
    fun `switched off records nothing, on it attributes, saves when due and reloads`() {
        val dir = Files.createTempDirectory("ipv4report").toFile()
        val file = Ipv4UsageFile(File(dir, "r.bin"))
        var settings = Ipv4ReportSettings(enabled = false)
        val owners = FakeOwners(uids = mapOf(40000 to 10123), pkgs = mapOf(10123 to listOf("com.example.a")))
        val r = Ipv4Recorder(Ipv4UsageStore(), FlowAttributor(owners), file, { settings }, saveEveryMs = 60_000)
        r.load(DAY0)
        r.flowStarted(start(1, DAY0 + 1000, "192.0.2.1"), "192.0.0.3")
        assertTrue(r.store.records().isEmpty())
        assertTrue(owners.asked.isEmpty(), "no attribution while off")

        settings = Ipv4ReportSettings(enabled = true)
        r.flowStarted(start(2, DAY0 + 2000, "192.0.2.1"), "192.0.0.3")
        assertFalse(File(dir, "r.bin").exists(), "not due yet")
        r.flowEnded(end(2, DAY0 + 61_000, 10, 20))
        assertTrue(File(dir, "r.bin").exists(), "saved once a minute had passed")
        assertNull(r.storageError)

        val again = Ipv4Recorder(Ipv4UsageStore(), FlowAttributor(owners), file, { settings })
        again.load(DAY0 + 5000)
        val a = again.store.usage(ReportWindow.TODAY, DAY0 + 5000).single()
        assertEquals(APP_A, a.owner)
        assertEquals(20, a.bytesDown)

        // Retention applied at load: 30 days later the day is gone.
        val later = Ipv4Recorder(Ipv4UsageStore(), FlowAttributor(owners), file, { settings })
        later.load(DAY0 + 30 * D)
        assertTrue(later.store.records().isEmpty())
        dir.deleteRecursively()
    }

    @Test
    fun `a failed save is reported and retried, with nothing lost`() {
        val dir = Files.createTempDirectory("ipv4report").toFile()
        val sub = File(dir, "missing")
        val r = Ipv4Recorder(Ipv4UsageStore(), FlowAttributor(FakeOwners()), Ipv4UsageFile(File(sub, "r.bin")), { Ipv4ReportSettings() })
        r.flowStarted(start(1, DAY0, "192.0.2.1"), "192.0.0.3")
        r.saveNow(DAY0 + 1)
        assertTrue(r.storageError!!.startsWith("IPv4 report not saved: "), r.storageError)
        sub.mkdir()
        r.saveNow(DAY0 + 2)
        assertNull(r.storageError)
        assertEquals(1, Ipv4UsageFile(File(sub, "r.bin")).load().getOrThrow().single().flows)
        dir.deleteRecursively()
    }

    @Test
    fun `the screen says so when nothing was recorded`() {
        assertEquals("No IPv4 flows recorded yet.", Ipv4ReportText.EMPTY)
        assertEquals(
            "Recording: off (set by your organisation); kept 30 day(s). Android 9 or older cannot tell which app " +
                "made a connection: flows are listed as unattributed.",
            Ipv4ReportText.status(Ipv4ReportSettings(enabled = false, enabledManaged = true), attribution = false),
        )
        assertEquals("1.5 KiB", Ipv4ReportText.bytes(1536))
    }
}
