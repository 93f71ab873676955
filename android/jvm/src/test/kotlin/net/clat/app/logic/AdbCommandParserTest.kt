package net.clat.app.logic

import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test

class AdbCommandParserTest {
    private fun ok(action: String, vararg extras: Pair<String, Any?>): AdbCommand {
        val r = AdbCommandParser.parse("net.clat.app.adb.$action", mapOf(*extras))
        return (r as? AdbParse.Ok)?.command ?: throw AssertionError("rejected: $r")
    }

    private fun rejected(action: String?, vararg extras: Pair<String, Any?>): String {
        val r = AdbCommandParser.parse(action, mapOf(*extras))
        return (r as? AdbParse.Rejected)?.message ?: throw AssertionError("accepted: $r")
    }

    @Test
    fun `start with prefix, force and allowed apps as am types them`() {
        val c = ok(
            "START",
            "prefix" to " 2001:DB8:64::/96 ",
            "force" to true,
            "allowed_apps" to "com.example.app, org.test.other",
        )
        assertEquals(AdbCommand.Action.START, c.action)
        assertEquals("2001:db8:64::/96", c.prefixOverride)
        assertEquals(true, c.force)
        assertEquals(AppSelection(AppSelection.Mode.ONLY, listOf("com.example.app", "org.test.other")), c.apps)
        assertEquals(null, c.excludeLocalTraffic)
    }

    @Test
    fun `booleans as text, automatic prefix, disallowed apps as a string array`() {
        val c = ok("CONFIGURE", "force" to "false", "prefix" to "auto", "disallowed_apps" to arrayOf("com.example.app"), "exclude_local" to "off")
        assertEquals(false, c.force)
        assertEquals("", c.prefixOverride)
        assertEquals(AppSelection(AppSelection.Mode.EXCEPT, listOf("com.example.app")), c.apps)
        assertEquals(false, c.excludeLocalTraffic)
    }

    @Test
    fun `an empty list means all apps again, absent lists change nothing`() {
        assertEquals(AppSelection.ALL, ok("CONFIGURE", "allowed_apps" to "").apps)
        assertEquals(AppSelection.ALL, ok("CONFIGURE", "disallowed_apps" to "ALL").apps)
        assertEquals(null, ok("CONFIGURE", "force" to true).apps)
        assertEquals(AdbCommand(AdbCommand.Action.STOP), ok("STOP"))
        assertEquals(AdbCommand(AdbCommand.Action.STATUS), ok("STATUS"))
    }

    @Test
    fun `invalid prefix is rejected with the reason`() {
        val m = rejected("net.clat.app.adb.START", "prefix" to "64:ff9b::/95")
        assertTrue(m.startsWith("prefix \"64:ff9b::/95\" rejected:"), m)
        assertTrue(rejected("net.clat.app.adb.START", "prefix" to "192.0.2.0/24").contains("rejected"))
        assertTrue(rejected("net.clat.app.adb.START", "prefix" to 96).contains("must be text"))
    }

    @Test
    fun `invalid app lists are rejected naming the bad entries`() {
        val m = rejected("net.clat.app.adb.CONFIGURE", "allowed_apps" to "com.example.app,not a package,1bad.name")
        assertEquals("allowed_apps: not valid package names: not, a, package, 1bad.name", m)
        val both = rejected("net.clat.app.adb.CONFIGURE", "allowed_apps" to "a.b", "disallowed_apps" to "c.d")
        assertTrue(both.contains("cannot be combined"), both)
        assertTrue(rejected("net.clat.app.adb.CONFIGURE", "allowed_apps" to 3).contains("comma-separated"))
    }

    @Test
    fun `typos, unknown actions and extras on stop are rejected`() {
        assertTrue(rejected("net.clat.app.adb.START", "prefx" to "64:ff9b::/96").startsWith("unknown extra(s) prefx"))
        assertTrue(rejected("net.clat.app.adb.RESTART").startsWith("unknown action"))
        assertTrue(rejected("START").startsWith("unknown action"))
        assertTrue(rejected(null).startsWith("unknown action"))
        assertTrue(rejected("net.clat.app.adb.STOP", "force" to true).contains("takes no extras"))
        assertTrue(rejected("net.clat.app.adb.START", "force" to "maybe").contains("not true or false"))
    }

    @Test
    fun `result line says what changed`() {
        assertEquals(
            "configure; prefix automatic; force true; apps: all apps",
            ok("CONFIGURE", "prefix" to "", "force" to "1", "allowed_apps" to " ").describe(),
        )
    }
}
