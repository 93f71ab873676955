package net.clat.app.logic

import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test

class StatusLogTest {
    @Test
    fun `repeats are dropped, capacity bounds the history, export is UTC`() {
        val log = StatusLog(capacity = 2)
        log.record(0, "a")
        log.record(1000, "a")
        log.record(2000, "b")
        log.record(3000, "c")
        assertEquals(listOf("1970-01-01 00:00:02  b", "1970-01-01 00:00:03  c"), log.lines())
        val text = log.export(listOf("CLAT 1.0"))
        assertEquals("CLAT 1.0\n\nHistory (UTC, oldest first):\n1970-01-01 00:00:02  b\n1970-01-01 00:00:03  c\n", text)
    }
}

class Ipv4CheckTest {
    @Test
    fun `targets are IPv4 literals with an optional port`() {
        assertEquals("192.0.2.1:80", Ipv4Check.parseTarget(" 192.0.2.1:80 ").getOrThrow().text)
        assertEquals("1.1.1.1:443", Ipv4Check.parseTarget("1.1.1.1").getOrThrow().text)
        assertTrue(Ipv4Check.parseTarget("example.com:80").exceptionOrNull()!!.message!!.contains("not an IPv4 address"))
        assertTrue(Ipv4Check.parseTarget("[2001:db8::1]:80").isFailure)
        assertTrue(Ipv4Check.parseTarget("192.0.2.1:0").exceptionOrNull()!!.message!!.contains("port"))
        assertTrue(Ipv4Check.parseTarget("192.0.2.1:x").isFailure)
        assertTrue(Ipv4Check.parseTarget("192.0.2.300:80").isFailure)
    }

    @Test
    fun `the result says which path was taken`() {
        val t = Ipv4Check.parseTarget("192.0.2.1:80").getOrThrow()
        assertEquals(
            "IPv4 check: connected to 192.0.2.1:80 in 42 ms from 192.0.0.3 (through a CLAT)",
            Ipv4Check.describe(t, Ipv4Check.Outcome.Connected(42, "192.0.0.3"), clatRunning = true),
        )
        assertTrue(Ipv4Check.describe(t, Ipv4Check.Outcome.Connected(5, "192.0.0.4"), false).endsWith("(through Android's own CLAT)"))
        assertTrue(Ipv4Check.describe(t, Ipv4Check.Outcome.Connected(5, "10.0.0.2"), true).endsWith("(native IPv4, not through a CLAT)"))
        assertEquals(
            "IPv4 check: no answer from 192.0.2.1:80 within 5000 ms (the CLAT runs: is the NAT64 prefix right?)",
            Ipv4Check.describe(t, Ipv4Check.Outcome.TimedOut(5000), true),
        )
        assertEquals(
            "IPv4 check: 192.0.2.1:80 failed after 3 ms: Network is unreachable (the CLAT is not running)",
            Ipv4Check.describe(t, Ipv4Check.Outcome.Failed(3, "Network is unreachable"), false),
        )
        // Pass-through (always-on VPN on a network with IPv4): no NAT64 is involved.
        assertEquals(
            "IPv4 check: connected to 192.0.2.1:80 in 42 ms from 192.0.0.3 (through this app's VPN, passed through to the network's IPv4)",
            Ipv4Check.describe(t, Ipv4Check.Outcome.Connected(42, "192.0.0.3"), clatRunning = true, passThrough = true),
        )
        assertEquals(
            "IPv4 check: no answer from 192.0.2.1:80 within 5000 ms (the VPN passes IPv4 through: does the network's IPv4 reach it?)",
            Ipv4Check.describe(t, Ipv4Check.Outcome.TimedOut(5000), clatRunning = true, passThrough = true),
        )
    }

    @Test
    fun `state lines never claim translation in pass-through`() {
        assertEquals("CLAT idle", StatusText.title(running = false, ipv4Native = false, prefix = null))
        assertEquals("IPv4 via CLAT: 64:ff9b::/96", StatusText.title(running = true, ipv4Native = false, prefix = "64:ff9b::/96"))
        assertEquals("VPN up in pass-through (no translation)", StatusText.title(running = true, ipv4Native = true, prefix = "64:ff9b::/96"))
        assertEquals("Running in pass-through (always-on, lockdown)", StatusText.state(running = true, ipv4Native = true, alwaysOn = true, lockdown = true))
        assertEquals("Running (always-on)", StatusText.state(running = true, ipv4Native = false, alwaysOn = true, lockdown = false))
        assertEquals("Not running", StatusText.state(running = false, ipv4Native = true, alwaysOn = false, lockdown = false))
    }
}

class AppPickerTest {
    private val own = "net.clat.app"
    private val apps = listOf(
        AppEntry("Zebra", "org.z.zebra"),
        AppEntry("alpha", "com.a.alpha"),
        AppEntry("CLAT", own),
        AppEntry("Alpha (second activity)", "com.a.alpha"),
        AppEntry("Mail", "com.m.mail"),
    )

    @Test
    fun `selected first then by label, own app hidden, duplicates merged, missing selections kept`() {
        val sel = AppSelection(AppSelection.Mode.ONLY, listOf("org.z.zebra", "gone.app"))
        assertEquals(
            listOf("gone.app", "org.z.zebra", "com.a.alpha", "com.m.mail"),
            AppPicker.rows(apps, sel, own).map { it.packageName },
        )
    }

    @Test
    fun `query matches label or package, case-insensitively`() {
        assertEquals(listOf("com.m.mail"), AppPicker.rows(apps, AppSelection.ALL, own, "MAIL").map { it.packageName })
        assertEquals(listOf("org.z.zebra"), AppPicker.rows(apps, AppSelection.ALL, own, "org.z").map { it.packageName })
    }

    @Test
    fun `toggle keeps the mode and the other packages`() {
        val sel = AppSelection(AppSelection.Mode.EXCEPT, listOf("a.b"))
        assertEquals(AppSelection(AppSelection.Mode.EXCEPT, listOf("a.b", "c.d")), AppPicker.toggle(sel, "c.d", true))
        assertEquals(AppSelection(AppSelection.Mode.EXCEPT, emptyList()), AppPicker.toggle(sel, "a.b", false))
    }
}
