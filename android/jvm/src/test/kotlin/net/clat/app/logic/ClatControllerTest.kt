package net.clat.app.logic

import net.clat.core.DiscoveredPrefix

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
            calls.add("start ${target.networkId} ${target.prefix?.prefix}")
            return startError.also { if (it == null) running = true }
        }
        override fun stopEngine() {
            if (running) calls.add("stop")
            running = false
        }
        override fun replaceEngine(target: RunTarget): String? {
            calls.add("replace ${target.networkId} ${target.prefix?.prefix}")
            return startError.also { running = it == null }
        }
        override fun clearUnderlyingNetworks() {
            calls.add("clearUnderlying")
        }
        override fun reconfigure(target: RunTarget, changes: Set<Change>): String? {
            calls.add("reconfigure ${changes.sorted()} ${target.prefix?.prefix}")
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
    private val clock = FakeScheduler()
    private val published = ArrayList<ControllerView>()
    private val c = ClatController(port, "net.clat.app", clock, { published.add(it) })
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

        val v = c.onDiscovery("1", Result.success(listOf(DiscoveredPrefix("2001:db8:64::/96", "rfc7050", 300), DiscoveredPrefix("64:ff9b::/96", "rfc7050", 600))))
        assertTrue(v.running)
        assertEquals(listOf("start 1 2001:db8:64::/96"), port.calls)
        assertEquals(PrefixSource.RFC7050, v.target!!.prefix?.source)
        assertEquals(listOf("1" to 300L), port.rediscoveries, "re-validate when the shortest TTL runs out")
    }

    @Test
    fun `configured prefix needs no discovery`() {
        c.setUserChoices(enabled = false, prefixOverride = "64:ff9b::/96", force = false)
        c.onNetwork(wifi)
        val v = c.onStartRequested()
        assertTrue(port.discoveries.isEmpty())
        assertEquals(listOf("start 1 64:ff9b::/96"), port.calls)
        assertEquals(PrefixSource.CONFIG, v.target!!.prefix?.source)
    }

    @Test
    fun `PREF64 needs no discovery`() {
        c.onNetwork(wifi.copy(pref64 = "2001:db8:aa::/64"))
        val v = c.onStartRequested()
        assertTrue(port.discoveries.isEmpty())
        assertEquals(PrefixSource.PREF64, v.target!!.prefix?.source)
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
        val v = c.onDiscovery("1", Result.success(listOf(DiscoveredPrefix("64:ff9b::/96", "rfc7050", 300))))
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
        val v = c.onNetwork(dual)!!
        assertFalse(v.running)
        assertEquals(StopReason.NATIVE_IPV4, (v.decision as Decision.Stop).why)
        assertTrue(c.onNetwork(wifi)!!.running)
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
        assertEquals(listOf("start 1 64:ff9b::/96", "replace 1 64:ff9b::/96"), port.calls, "make-before-break, no stop first")
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
        assertTrue(c.evaluate("capability update").reason.contains("establish failed"))
        assertNull(c.onNetwork(wifi), "the same snapshot again is ignored")
        c.onNetwork(wifi.copy(validated = true))
        assertEquals(1, port.calls.count { it.startsWith("start") }, "no retry loop on capability updates")
        port.startError = null
        assertTrue(c.onNetwork(cell)!!.running, "a new network retries")
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
        val r = c.onNetwork(cell)!!
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

    // ---- seamless network changes (issue 11 item 2) ----

    private val a = "2001:db8:64::/96"
    private val b = "2001:db8:65::/96"

    /** Running on wifi with prefix [a] from RFC 7050. */
    private fun runningOnWifiByRfc7050() {
        c.onNetwork(wifi)
        c.onStartRequested()
        c.onDiscovery("1", Result.success(listOf(DiscoveredPrefix("$a", "rfc7050", 300))))
        assertEquals(listOf("start 1 $a"), port.calls)
    }

    @Test
    fun `re-validation that confirms the prefix leaves the engine alone`() {
        runningOnWifiByRfc7050()
        val during = c.onRediscover("1")!!
        assertEquals(listOf("1", "1"), port.discoveries, "asks DNS64 again")
        assertTrue(during.running, "the known prefix is kept while asking")
        val after = c.onDiscovery("1", Result.success(listOf(DiscoveredPrefix("$a", "rfc7050", 300))))
        assertTrue(after.running)
        assertEquals(listOf("start 1 $a"), port.calls, "no stop, no start, no reconfigure")
    }

    @Test
    fun `a prefix changed at re-validation is applied live`() {
        runningOnWifiByRfc7050()
        c.onRediscover("1")
        val v = c.onDiscovery("1", Result.success(listOf(DiscoveredPrefix("$b", "rfc7050", 300))))
        assertTrue(v.running)
        assertEquals(listOf("start 1 $a", "reconfigure [PREFIX] $b"), port.calls)
    }

    @Test
    fun `a failed re-validation keeps the prefix, repeated failures give it up`() {
        runningOnWifiByRfc7050()
        repeat(ClatController.MAX_FAILED_REVALIDATIONS - 1) {
            c.onRediscover("1")
            val v = c.onDiscovery("1", Result.failure(RuntimeException("timeout")))
            assertTrue(v.running)
            assertTrue(v.warnings.any { it.contains("keeping") }, v.warnings.toString())
        }
        assertEquals(listOf("start 1 $a"), port.calls)
        c.onRediscover("1")
        val v = c.onDiscovery("1", Result.failure(RuntimeException("timeout")))
        assertFalse(v.running)
        assertEquals(StopReason.NO_PREFIX, (v.decision as Decision.Stop).why)
        assertEquals(listOf("start 1 $a", "stop"), port.calls)
    }

    @Test
    fun `a network switch keeps the TUN while discovering and never reuses the old prefix`() {
        runningOnWifiByRfc7050()
        val hold = c.onNetwork(cell)!!
        assertInstanceOf(Decision.Hold::class.java, hold.decision)
        assertTrue(hold.running)
        assertEquals(listOf("1", "2"), port.discoveries, "the new network is asked, not assumed")
        assertEquals(listOf("start 1 $a"), port.calls, "the engine is left alone meanwhile")
        c.onRediscover("1") // the old network's TTL timer fires late: ignored
        assertEquals(listOf("1", "2"), port.discoveries)
        val v = c.onDiscovery("2", Result.success(listOf(DiscoveredPrefix("$b", "rfc7050", 300))))
        assertTrue(v.running)
        assertEquals(listOf("start 1 $a", "reconfigure [PREFIX, NETWORK, DNS] $b"), port.calls)
    }

    @Test
    fun `a network switch to a network without a prefix stops after its discovery fails`() {
        runningOnWifiByRfc7050()
        c.onNetwork(cell)
        val v = c.onDiscovery("2", Result.failure(RuntimeException("no DNS64")))
        assertFalse(v.running)
        assertEquals(listOf("start 1 $a", "stop"), port.calls)
    }

    @Test
    fun `the resolver list compared as a set`() {
        runningOnWifiByRfc7050()
        val two = wifi.copy(dnsServers = listOf("2001:db8:1::53", "2001:db8:1::54"))
        c.onNetwork(two)
        c.onDiscovery("1", Result.success(listOf(DiscoveredPrefix("$a", "rfc7050", 300)))) // link change re-validates
        val swapped = two.copy(dnsServers = two.dnsServers.reversed())
        c.onNetwork(swapped)
        c.onDiscovery("1", Result.success(listOf(DiscoveredPrefix("$a", "rfc7050", 300))))
        assertEquals(listOf("start 1 $a", "reconfigure [DNS] $a"), port.calls, "order alone changes nothing")
    }

    @Test
    fun `unchanged snapshots are skipped, VALIDATED and link changes re-discover`() {
        runningOnWifiByRfc7050()
        assertNull(c.onNetwork(wifi), "a capability update that changes nothing we use")
        assertEquals(listOf("1"), port.discoveries)
        c.onNetwork(wifi.copy(validated = true))
        assertEquals(listOf("1", "1"), port.discoveries, "became VALIDATED: ask DNS64 again")
        // A link change while that discovery runs: asked again once it ends.
        val moved = wifi.copy(validated = true, addresses = listOf("2001:db8:1::3/64"))
        c.onNetwork(moved)
        assertEquals(listOf("1", "1"), port.discoveries)
        c.onDiscovery("1", Result.success(listOf(DiscoveredPrefix("$a", "rfc7050", 300))))
        assertEquals(listOf("1", "1", "1"), port.discoveries)
        c.onDiscovery("1", Result.success(listOf(DiscoveredPrefix("$a", "rfc7050", 300))))
        c.onNetwork(moved.copy(validated = false))
        c.onNetwork(moved)
        assertEquals(listOf("1", "1", "1", "1"), port.discoveries, "losing VALIDATED does not, regaining it does")
        assertEquals(listOf("start 1 $a"), port.calls)
    }

    @Test
    fun `a configured prefix is not re-discovered on link changes`() {
        c.setUserChoices(false, "64:ff9b::/96", false)
        c.onNetwork(wifi)
        c.onStartRequested()
        c.onNetwork(wifi.copy(validated = true))
        assertTrue(port.discoveries.isEmpty())
    }

    @Test
    fun `a loss is debounced with no underlying network, the next network takes over live`() {
        runningOnWifiByRfc7050()
        val lost = c.onNetwork(null)!!
        assertTrue(lost.running)
        assertTrue(lost.reason.contains("stays up"), lost.reason)
        assertEquals(listOf("start 1 $a", "clearUnderlying"), port.calls)
        clock.advance(ClatController.LOSS_GRACE_MS - 1)
        c.onNetwork(cell.copy(pref64 = b))
        clock.advance(ClatController.LOSS_GRACE_MS)
        assertEquals(listOf("start 1 $a", "clearUnderlying", "reconfigure [PREFIX, NETWORK, DNS] $b"), port.calls)
        assertTrue(published.isEmpty(), "the loss timer was cancelled")
    }

    @Test
    fun `a loss that lasts stops the engine when the grace runs out`() {
        runningOnWifiByRfc7050()
        c.onNetwork(null)
        c.onNetwork(null) // a second report does not extend the grace
        clock.advance(ClatController.LOSS_GRACE_MS)
        assertEquals(listOf("start 1 $a", "clearUnderlying", "stop"), port.calls)
        val v = published.single()
        assertFalse(v.running)
        assertEquals(StopReason.NO_NETWORK, (v.decision as Decision.Stop).why)
    }

    @Test
    fun `a loss while nothing runs is not debounced`() {
        c.onNetwork(wifi)
        val v = c.onNetwork(null)!!
        assertEquals(StopReason.DISABLED, (v.decision as Decision.Stop).why)
        assertNull(c.network)
        assertTrue(clock.pending().isEmpty())
    }

    @Test
    fun `the lost network coming back within the grace is a network change`() {
        runningOnWifiByRfc7050()
        c.onNetwork(null)
        c.onNetwork(wifi)
        assertEquals(listOf("start 1 $a", "clearUnderlying", "reconfigure [NETWORK] $a"), port.calls)
    }

    @Test
    fun `only a change of the TUN's own configuration rebuilds it`() {
        runningOnWifiByRfc7050()
        c.onNetwork(cell.copy(pref64 = a))
        c.onNetwork(cell.copy(pref64 = a, dnsServers = listOf("2001:db8:9::54")))
        assertTrue(port.calls.none { it.startsWith("replace") || it == "stop" }, port.calls.toString())
        c.onManagedConfig(ManagedConfigParser.parse(mapOf("mtu" to "1400")))
        assertEquals("replace 2 $a", port.calls.last())
    }

    // ---- engine death (issue 11 item 3) ----

    @Test
    fun `an engine that dies is restarted after a growing delay, then given up`() {
        c.setUserChoices(false, "64:ff9b::/96", false)
        c.onNetwork(wifi)
        c.onStartRequested()
        port.calls.clear()
        val v = c.onEngineExit("TUN closed")
        assertFalse(v.running)
        assertTrue(v.reason.contains("TUN closed") && v.reason.contains("restarting in 1 s"), v.reason)
        assertEquals(listOf(1_000L), clock.pending())
        clock.advance(1_000)
        assertTrue(published.last().running)
        assertEquals(listOf("stop", "start 1 64:ff9b::/96"), port.calls)
        // Dies at once every time: 2 s, 4 s, ... then no more.
        var delays = ArrayList<Long>()
        while (true) {
            c.onEngineExit("crash")
            val p = clock.pending()
            if (p.isEmpty()) break
            delays.add(p.single())
            clock.advance(p.single())
        }
        assertEquals(listOf(2_000L, 4_000L, 8_000L, 16_000L, 32_000L), delays)
        assertTrue(c.evaluate("x").reason.contains("gave up"), c.evaluate("x").reason)
        assertTrue(c.onStartRequested().running, "an explicit start tries again")
    }

    @Test
    fun `a stop cancels a pending restart`() {
        c.setUserChoices(false, "64:ff9b::/96", false)
        c.onNetwork(wifi)
        c.onStartRequested()
        c.onEngineExit("TUN closed")
        c.onStopRequested()
        clock.advance(60_000)
        assertEquals(listOf("start 1 64:ff9b::/96", "stop"), port.calls)
    }

    @Test
    fun `always-on passes through on native IPv4 and translates live when the IPv4 goes`() {
        c.alwaysOn = true
        val dual = wifi.copy(addresses = wifi.addresses + "198.51.100.7/24", hasIpv4DefaultRoute = true)
        c.onNetwork(dual)
        val v = c.onStartRequested()
        assertTrue(v.running)
        assertTrue(v.target!!.ipv4Native)
        assertTrue(v.reason.startsWith("pass-through: the network has native IPv4"), v.reason)
        assertEquals(listOf("start 1 null"), port.calls)
        assertTrue(port.discoveries.isEmpty(), "no NAT64 prefix is needed while the network has IPv4")

        // The IPv4 goes: discovery starts, the pass-through is held meanwhile (no engine call).
        val held = c.onNetwork(wifi)!!
        assertEquals(listOf("1"), port.discoveries)
        assertInstanceOf(Decision.Hold::class.java, held.decision)
        assertTrue(held.running)
        val found = c.onDiscovery("1", Result.success(listOf(DiscoveredPrefix(a, "rfc7050", 300))))
        assertEquals(listOf("start 1 null", "reconfigure [PREFIX, IPV4_PATH] $a"), port.calls)
        assertFalse(found.target!!.ipv4Native)

        // The IPv4 comes back: pass-through again, live, the prefix kept.
        c.onNetwork(dual)
        assertEquals(listOf("start 1 null", "reconfigure [PREFIX, IPV4_PATH] $a", "reconfigure [IPV4_PATH] $a"), port.calls)
        assertTrue(c.current!!.ipv4Native)
    }

    @Test
    fun `always-on brings the VPN up at once on an IPv6-only network and translates when the prefix comes`() {
        c.alwaysOn = true
        c.onNetwork(wifi)
        val v = c.onStartRequested()
        assertTrue(v.running, "Android would show the always-on VPN as disconnected while discovery runs")
        assertEquals(listOf("1"), port.discoveries)
        c.onDiscovery("1", Result.success(listOf(DiscoveredPrefix(a, "rfc7050", 300))))
        assertEquals(listOf("start 1 null", "reconfigure [PREFIX, IPV4_PATH] $a"), port.calls)
    }

    /**
     * isAlwaysOn() reads false until the VPN is established (AlwaysOnState), so what the service
     * learns later (the system's always-on start, the read after establish(), always-on switched
     * off) arrives without any network change and must be acted on at once.
     */
    @Test
    fun `always-on or lockdown learnt without a network change is acted on at once`() {
        val dual = wifi.copy(addresses = wifi.addresses + "198.51.100.7/24", hasIpv4DefaultRoute = true)
        c.onNetwork(dual)
        assertFalse(c.onStartRequested().running, "always-on not known yet: stands down")
        val on = c.onAlwaysOn(alwaysOn = true, lockdown = false)!!
        assertTrue(on.running)
        assertTrue(on.target!!.ipv4Native)
        assertEquals(listOf("start 1 null"), port.calls)
        assertNull(c.onAlwaysOn(alwaysOn = true, lockdown = false), "nothing changed")
        val locked = c.onAlwaysOn(alwaysOn = true, lockdown = true)!!
        assertInstanceOf(Decision.Restart::class.java, locked.decision, locked.reason)
        assertTrue(locked.running)
        val off = c.onAlwaysOn(alwaysOn = false, lockdown = false)!!
        assertFalse(off.running)
        assertEquals(StopReason.NATIVE_IPV4, (off.decision as Decision.Stop).why)
    }

    @Test
    fun `without always-on the same network makes the CLAT stand down`() {
        val dual = wifi.copy(addresses = wifi.addresses + "198.51.100.7/24", hasIpv4DefaultRoute = true)
        c.onNetwork(dual)
        val v = c.onStartRequested()
        assertFalse(v.running)
        assertEquals(StopReason.NATIVE_IPV4, (v.decision as Decision.Stop).why)
        assertTrue(port.calls.isEmpty())
    }

    @Test
    fun `always-on outlasts a network loss and hands the engine to whichever network comes next`() {
        runningOnWifiByRfc7050()
        c.alwaysOn = true
        c.onNetwork(null)
        clock.advance(ClatController.LOSS_GRACE_MS)
        val v = published.single()
        assertTrue(v.running, "no stop: the always-on VPN stays up")
        assertInstanceOf(Decision.Hold::class.java, v.decision)
        assertEquals(listOf("start 1 $a", "clearUnderlying"), port.calls)
        // The same network again (its sockets died with it): a network change for the engine.
        c.onNetwork(wifi)
        assertEquals(listOf("start 1 $a", "clearUnderlying", "reconfigure [NETWORK] $a"), port.calls)
    }
}
