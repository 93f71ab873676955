package net.clat.app.logic

import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test

class AppSelectionTest {
    private val own = "net.clat.app"

    @Test
    fun `stored form round-trips and damaged values fall back to all apps`() {
        val s = AppSelection(AppSelection.Mode.EXCEPT, listOf("com.a.b", "org.c.d"))
        assertEquals(s, AppSelection.fromStored(s.mode.name, s.storedPackages()))
        assertEquals(AppSelection.ALL, AppSelection.fromStored("BOGUS", "com.a.b"))
        assertEquals(AppSelection.ALL, AppSelection.fromStored(null, null))
        assertEquals(AppSelection(AppSelection.Mode.ONLY, listOf("com.a.b")), AppSelection.fromStored("ONLY", "com.a.b,bad name"))
    }

    @Test
    fun `user selection reaches the plan through the settings path`() {
        val none = ManagedConfigParser.parse(emptyMap())
        val only = SettingsResolver.resolve(none, null, own, userApps = AppSelection(AppSelection.Mode.ONLY, listOf("com.a.b")))
        val plan = (only.plan as PlanResult.Valid).plan
        assertEquals(listOf("com.a.b", own), plan.allowedApps)
        val except = SettingsResolver.resolve(none, null, own, userApps = AppSelection(AppSelection.Mode.EXCEPT, listOf("com.a.b")))
        assertEquals(listOf("com.a.b"), (except.plan as PlanResult.Valid).plan.disallowedApps)
    }

    @Test
    fun `managed app lists replace the user's selection whole`() {
        val managed = ManagedConfigParser.parse(mapOf("disallowed_apps" to "org.corp.app"))
        assertTrue(managed.config.managesApps)
        val r = SettingsResolver.resolve(managed, null, own, userApps = AppSelection(AppSelection.Mode.ONLY, listOf("com.a.b")))
        val plan = (r.plan as PlanResult.Valid).plan
        assertEquals(emptyList<String>(), plan.allowedApps)
        assertEquals(listOf("org.corp.app"), plan.disallowedApps)
    }

    @Test
    fun `descriptions`() {
        assertEquals("all apps", AppSelection(AppSelection.Mode.ONLY, emptyList()).describe())
        assertEquals("only 1 app(s): com.a.b", AppSelection(AppSelection.Mode.ONLY, listOf("com.a.b")).describe())
        assertEquals("all apps except 1: com.a.b", AppSelection(AppSelection.Mode.EXCEPT, listOf("com.a.b")).describe())
    }

    private class Port : ClatPort {
        val calls = ArrayList<String>()
        var lastPlan: VpnPlan? = null
        override fun startEngine(target: RunTarget): String? = null.also { calls.add("start"); lastPlan = target.plan }
        override fun stopEngine() {
            calls.add("stop")
        }
        override fun replaceEngine(target: RunTarget): String? = null.also { calls.add("replace"); lastPlan = target.plan }
        override fun reconfigure(target: RunTarget, changes: Set<Change>): String? = null
        override fun clearUnderlyingNetworks() {}
        override fun startDiscovery(network: NetworkSnapshot) {}
        override fun scheduleRediscovery(networkId: String, delaySeconds: Long) {}
    }

    @Test
    fun `a new selection while running rebuilds the TUN with the new lists (what the service does on a start intent)`() {
        val port = Port()
        val c = ClatController(port, own, FakeScheduler())
        c.setUserChoices(true, "64:ff9b::/96", false)
        c.onNetwork(NetworkSnapshot("1", "wlan0", listOf("2001:db8:1::2/64"), hasIpv6DefaultRoute = true))
        assertEquals(listOf("start"), port.calls)
        assertEquals(emptyList<String>(), port.lastPlan!!.allowedApps)
        c.userApps = AppSelection(AppSelection.Mode.ONLY, listOf("com.a.b"))
        c.onStartRequested()
        assertEquals(listOf("start", "replace"), port.calls)
        assertEquals(listOf("com.a.b", own), port.lastPlan!!.allowedApps)
    }
}
