package net.clat.app.logic

import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test

class AppListWatchTest {
    private val own = "net.clat.app"
    private fun plan(allowed: List<String> = emptyList(), disallowed: List<String> = emptyList()) =
        (VpnConfigBuilder.build(ClatSettings(allowedApps = allowed, disallowedApps = disallowed), own) as PlanResult.Valid).plan

    @Test
    fun `only a listed package, installed or removed (not updated), makes the TUN stale`() {
        val p = plan(allowed = listOf("org.example.mail"))
        assertTrue(AppListWatch.needsRebuild(p, "org.example.mail", replacing = false))
        assertFalse(AppListWatch.needsRebuild(p, "org.example.mail", replacing = true), "an update keeps the UID")
        assertFalse(AppListWatch.needsRebuild(p, "org.example.other", replacing = false))
        assertTrue(AppListWatch.needsRebuild(plan(disallowed = listOf("org.example.tv")), "org.example.tv", false))
        assertFalse(AppListWatch.needsRebuild(null, "org.example.mail", false), "nothing runs")
        assertFalse(AppListWatch.needsRebuild(p, null, false))
    }

    private class Port : ClatPort {
        val calls = ArrayList<String>()
        override fun startEngine(target: RunTarget): String? = null.also { calls.add("start") }
        override fun stopEngine() {
            calls.add("stop")
        }
        override fun replaceEngine(target: RunTarget): String? = null.also { calls.add("replace") }
        override fun reconfigure(target: RunTarget, changes: Set<Change>): String? = null
        override fun clearUnderlyingNetworks() {}
        override fun startDiscovery(network: NetworkSnapshot) {}
        override fun scheduleRediscovery(networkId: String, delaySeconds: Long) {}
    }

    @Test
    fun `the controller establishes the VPN again when a listed package changes`() {
        val port = Port()
        val c = ClatController(port, own, FakeScheduler())
        c.onManagedConfig(ParsedManagedConfig(ManagedConfig(allowedApps = listOf("org.example.mail")), emptyList()))
        c.setUserChoices(true, "64:ff9b::/96", false)
        c.onNetwork(NetworkSnapshot("1", "wlan0", listOf("2001:db8:1::2/64"), hasIpv6DefaultRoute = true))
        assertEquals(listOf("start"), port.calls)
        val v = c.onListedPackageChanged()
        assertTrue(v.running)
        assertEquals(listOf("start", "stop", "start"), port.calls)
    }

    @Test
    fun `nothing happens when the CLAT is not running`() {
        val port = Port()
        val c = ClatController(port, own, FakeScheduler())
        c.onListedPackageChanged()
        assertEquals(emptyList<String>(), port.calls)
    }
}
