package net.clat.app.logic

import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertInstanceOf
import org.junit.jupiter.api.Assertions.assertNull
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test

/** The control loop against a fake platform: which engine/discovery calls happen, and when. */
class ClatControllerTest {
    private class FakePort : ClatPort {
        val calls = ArrayList<String>()
        var startError: String? = null
        var reconfigureError: String? = null
        val discoveries = ArrayList<String>()
        val rediscoveries = ArrayList<Pair<String, Long>>()
        var running = false

        override fun startEngine(target: RunTarget): String? {
            calls.add("start ${target.networkId} ${target.prefix.prefix}")
            return startError.also { if (it == null) running = true }
        }
        override fun stopEngine() {
            if (running) calls.add("stop")
            running = false
        }
        override fun reconfigure(target: RunTarget, changes: Set<Change>): String? {
            calls.add("reconfigure ${changes.sorted()} ${target.prefix.prefix}")
            return reconfigureError
        }
        override fun startDiscovery(network: NetworkSnapshot) {
            discoveries.add(network.id)
        }
        override fun scheduleRediscovery(networkId: String, delaySeconds: Long) {
            rediscoveries.add(networkId to delaySeconds)
        }
    }

    private val port = FakePort()
    private val c = ClatController(port, "net.clat.app")
    private val wifi = NetworkSnapshot("1", "wlan0", listOf("2001:db8:1::2/64"), hasIpv6DefaultRoute = true, dnsServers = listOf("2001:db8:1::53"))
    private val cell = NetworkSnapshot("2", "rmnet0", listOf("2001:db8:9::2/64"), hasIpv6DefaultRoute = true, dnsServers = listOf("2001:db8:9::53"))

    @Test
    fun `no prefix known starts RFC 7050 once, then runs on its answer`() {
        c.onNetwork(wifi)
        val v0 = c.onStartRequested()
        assertEquals(listOf("1"), port.discoveries)
        assertEquals(StopReason.DISCOVERING, (v0.decision as Decision.Stop).why)
        c.onNetwork(wifi) // capability/link updates must not start a second discovery
        assertEquals(listOf("1"), port.discoveries)

        val v = c.onDiscovery("1", Result.success(arrayOf("2001:db8:64::/96 rfc7050 300", "64:ff9b::/96 rfc7050 600")))
        assertTrue(v.running)
        assertEquals(listOf("start 1 2001:db8:64::/96"), port.calls)
        assertEquals(PrefixSource.RFC7050, v.target!!.prefix.source)
        assertEquals(listOf("1" to 300L), port.rediscoveries, "re-validate when the shortest TTL runs out")
    }

    @Test
    fun `configured prefix needs no discovery`() {
        c.setUserChoices(enabled = false, prefixOverride = "64:ff9b::/96", force = false)
        c.onNetwork(wifi)
        val v = c.onStartRequested()
        assertTrue(port.discoveries.isEmpty())
        assertEquals(listOf("start 1 64:ff9b::/96"), port.calls)
        assertEquals(PrefixSource.CONFIG, v.target!!.prefix.source)
    }

    @Test
    fun `PREF64 needs no discovery`() {
        c.onNetwork(wifi.copy(pref64 = "2001:db8:aa::/64"))
        val v = c.onStartRequested()
        assertTrue(port.discoveries.isEmpty())
        assertEquals(PrefixSource.PREF64, v.target!!.prefix.source)
    }

    @Test
    fun `failed discovery is retried later and says why`() {
        c.onNetwork(wifi)
        c.onStartRequested()
        val v = c.onDiscovery("1", Result.failure(RuntimeException("no AAAA for ipv4only.arpa")))
        assertFalse(v.running)
        assertEquals(StopReason.NO_PREFIX, (v.decision as Decision.Stop).why)
        assertTrue(v.warnings.any { it.contains("ipv4only.arpa") }, v.warnings.toString())
        assertEquals(listOf("1" to ClatController.RETRY_DISCOVERY_S), port.rediscoveries)
        c.onRediscover("1")
        assertEquals(listOf("1", "1"), port.discoveries)
    }

    @Test
    fun `a discovery result for a network that went away is ignored`() {
        c.onNetwork(wifi)
        c.onStartRequested()
        c.onNetwork(cell)
        val v = c.onDiscovery("1", Result.success(arrayOf("64:ff9b::/96 rfc7050 300")))
        assertFalse(v.running)
        assertTrue(port.calls.isEmpty())
        assertEquals(listOf("1", "2"), port.discoveries)
    }

    @Test
    fun `native IPv4 stops, IPv6-only again starts`() {
        c.setUserChoices(false, "64:ff9b::/96", false)
        c.onNetwork(wifi)
        c.onStartRequested()
        val dual = wifi.copy(addresses = wifi.addresses + "192.168.1.5/24", hasIpv4DefaultRoute = true)
        val v = c.onNetwork(dual)
        assertFalse(v.running)
        assertEquals(StopReason.NATIVE_IPV4, (v.decision as Decision.Stop).why)
        assertTrue(c.onNetwork(wifi).running)
        assertEquals(listOf("start 1 64:ff9b::/96", "stop", "start 1 64:ff9b::/96"), port.calls)
    }

    @Test
    fun `network switch and prefix change reconfigure the running engine`() {
        c.setUserChoices(false, "64:ff9b::/96", false)
        c.onNetwork(wifi)
        c.onStartRequested()
        c.onNetwork(cell)
        c.onUserChoices("2001:db8:64::/96", false)
        assertEquals(
            listOf("start 1 64:ff9b::/96", "reconfigure [NETWORK, DNS] 64:ff9b::/96", "reconfigure [PREFIX] 2001:db8:64::/96"),
            port.calls,
        )
    }

    @Test
    fun `managed app list change restarts the TUN`() {
        c.setUserChoices(false, "64:ff9b::/96", false)
        c.onNetwork(wifi)
        c.onStartRequested()
        val v = c.onManagedConfig(ManagedConfigParser.parse(mapOf("allowed_apps" to "com.example.legacy")))
        assertInstanceOf(Decision.Restart::class.java, v.decision)
        assertEquals(listOf("com.example.legacy", "net.clat.app"), v.target!!.plan.allowedApps)
        assertEquals(listOf("start 1 64:ff9b::/96", "stop", "start 1 64:ff9b::/96"), port.calls)
    }

    @Test
    fun `invalid managed configuration stops and says why`() {
        c.setUserChoices(false, "64:ff9b::/96", false)
        c.onNetwork(wifi)
        c.onStartRequested()
        val v = c.onManagedConfig(ManagedConfigParser.parse(mapOf("allowed_apps" to "a.b", "disallowed_apps" to "c.d")))
        assertFalse(v.running)
        assertEquals(StopReason.CONFIG_INVALID, (v.decision as Decision.Stop).why)
        assertTrue(v.reason.contains("disallowed_apps"), v.reason)
    }

    @Test
    fun `a failed start is not retried on the same network, but on a new one or an explicit start`() {
        c.setUserChoices(false, "64:ff9b::/96", false)
        port.startError = "establish failed"
        c.onNetwork(wifi)
        val v = c.onStartRequested()
        assertFalse(v.running)
        assertTrue(c.onNetwork(wifi).reason.contains("establish failed"))
        c.onNetwork(wifi)
        assertEquals(1, port.calls.count { it.startsWith("start") }, "no retry loop on capability updates")
        port.startError = null
        assertTrue(c.onNetwork(cell).running, "a new network retries")
        assertEquals(2, port.calls.count { it.startsWith("start") })
    }

    @Test
    fun `engine exit and failed reconfigure are reported`() {
        c.setUserChoices(false, "64:ff9b::/96", false)
        c.onNetwork(wifi)
        c.onStartRequested()
        val v = c.onEngineExit("TUN closed")
        assertFalse(v.running)
        assertTrue(v.reason.contains("TUN closed"), v.reason)
        assertTrue(c.onStartRequested().running)
        port.reconfigureError = "boom"
        val r = c.onNetwork(cell)
        assertFalse(r.running)
        assertTrue(r.reason.contains("boom"), r.reason)
    }

    @Test
    fun `stop and missing native library`() {
        c.setUserChoices(false, "64:ff9b::/96", false)
        c.onNetwork(wifi)
        c.onStartRequested()
        val v = c.onStopRequested()
        assertFalse(v.running)
        assertEquals(StopReason.DISABLED, (v.decision as Decision.Stop).why)
        c.nativeError = "native library not available"
        val n = c.onStartRequested()
        assertFalse(n.running)
        assertEquals("native library not available", n.reason)
        assertNull(n.target)
    }
}
