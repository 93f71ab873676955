package net.clat.app.logic

import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertInstanceOf
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test

class RunDeciderTest {
    private val own = "net.clat.app"
    private val plan = VpnConfigBuilder.build(ClatSettings(), own)
    private val labPrefix = SelectedPrefix(Nat64Prefix.of("2001:db8:64::/96"), PrefixSource.RFC7050)

    /** The lab's phone: IPv6-only uplink, no IPv4 at all. */
    private val v6only = NetworkSnapshot(
        id = "100", interfaceName = "ph0",
        addresses = listOf("2001:db8:1::2/64", "fe80::2/64"),
        hasIpv6DefaultRoute = true, dnsServers = listOf("2001:db8:1::53"),
    )

    private fun input(
        network: NetworkSnapshot? = v6only,
        prefix: SelectedPrefix? = labPrefix,
        enabled: Boolean = true,
        discovering: Boolean = false,
        planResult: PlanResult = plan,
        force: Boolean = false,
    ) = DecisionInput(enabled, network, prefix, discovering, planResult, force)

    private fun started(): RunTarget =
        (RunDecider.decide(input(), null) as Decision.Start).target

    @Test
    fun `ipv6-only with a prefix starts`() {
        val d = RunDecider.decide(input(), null)
        assertInstanceOf(Decision.Start::class.java, d)
        d as Decision.Start
        assertEquals("100", d.target.networkId)
        assertEquals(labPrefix, d.target.prefix)
        assertEquals(listOf("2001:db8:1::53"), d.target.dnsServers)
        assertTrue(d.reason.contains("2001:db8:64::/96"), d.reason)
    }

    @Test
    fun `native IPv4 stops a running CLAT`() {
        val dual = v6only.copy(addresses = v6only.addresses + "198.51.100.7/24", hasIpv4DefaultRoute = true)
        val d = RunDecider.decide(input(network = dual), started())
        assertEquals(StopReason.NATIVE_IPV4, (d as Decision.Stop).why)
    }

    @Test
    fun `an IPv4 address without a default route, link-local or CLAT range IPv4 is not native IPv4`() {
        val noRoute = v6only.copy(addresses = v6only.addresses + "10.0.0.2/24")
        assertInstanceOf(Decision.Start::class.java, RunDecider.decide(input(network = noRoute), null))
        val linkLocal = v6only.copy(addresses = v6only.addresses + "169.254.3.4/16", hasIpv4DefaultRoute = true)
        assertInstanceOf(Decision.Start::class.java, RunDecider.decide(input(network = linkLocal), null))
        val clatRange = v6only.copy(addresses = v6only.addresses + "192.0.0.4/29", hasIpv4DefaultRoute = true)
        assertInstanceOf(Decision.Start::class.java, RunDecider.decide(input(network = clatRange), null))
    }

    @Test
    fun `no IPv6, no network, disabled and invalid config each say why`() {
        val v4only = NetworkSnapshot("1", "wlan0", listOf("fe80::1/64"), hasIpv6DefaultRoute = true)
        assertEquals(StopReason.NO_IPV6, (RunDecider.decide(input(network = v4only), null) as Decision.Stop).why)
        val noRoute = v6only.copy(hasIpv6DefaultRoute = false)
        assertEquals(StopReason.NO_IPV6, (RunDecider.decide(input(network = noRoute), null) as Decision.Stop).why)
        assertEquals(StopReason.NO_NETWORK, (RunDecider.decide(input(network = null), started()) as Decision.Stop).why)
        assertEquals(StopReason.DISABLED, (RunDecider.decide(input(enabled = false), started()) as Decision.Stop).why)
        val bad = RunDecider.decide(input(planResult = PlanResult.Invalid(listOf("mtu: 10 is outside"))), null)
        assertEquals(StopReason.CONFIG_INVALID, (bad as Decision.Stop).why)
        assertTrue(bad.reason.contains("mtu: 10"), bad.reason)
    }

    @Test
    fun `unknown prefix waits for discovery, then reports none`() {
        assertEquals(StopReason.DISCOVERING, (RunDecider.decide(input(prefix = null, discovering = true), null) as Decision.Stop).why)
        val none = RunDecider.decide(input(prefix = null, discovering = false), null) as Decision.Stop
        assertEquals(StopReason.NO_PREFIX, none.why)
        assertFalse(none.reason.isBlank())
    }

    @Test
    fun `same state keeps running`() {
        val d = RunDecider.decide(input(), started())
        assertInstanceOf(Decision.Keep::class.java, d)
    }

    @Test
    fun `same prefix from a better source is kept, not reconfigured`() {
        val fromRa = labPrefix.copy(source = PrefixSource.PREF64)
        val d = RunDecider.decide(input(prefix = fromRa), started())
        assertInstanceOf(Decision.Keep::class.java, d)
        assertEquals(PrefixSource.PREF64, (d as Decision.Keep).target.prefix?.source)
    }

    @Test
    fun `prefix change reconfigures the engine`() {
        val newPrefix = SelectedPrefix(Nat64Prefix.of("64:ff9b::/96"), PrefixSource.PREF64)
        val d = RunDecider.decide(input(prefix = newPrefix), started())
        d as Decision.Reconfigure
        assertEquals(setOf(Change.PREFIX), d.changes)
        assertEquals(newPrefix, d.target.prefix)
    }

    @Test
    fun `switch of network reconfigures with network and dns changes`() {
        val cell = NetworkSnapshot("200", "rmnet0", listOf("2001:db8:9::5"), hasIpv6DefaultRoute = true,
            dnsServers = listOf("2001:db8:9::53"))
        val d = RunDecider.decide(input(network = cell), started())
        d as Decision.Reconfigure
        assertEquals(setOf(Change.NETWORK, Change.DNS), d.changes)
        assertEquals("200", d.target.networkId)
    }

    @Test
    fun `new resolvers alone reconfigure dns only`() {
        val d = RunDecider.decide(input(network = v6only.copy(dnsServers = listOf("2001:db8:1::54"))), started())
        assertEquals(setOf(Change.DNS), (d as Decision.Reconfigure).changes)
    }

    @Test
    fun `changed TUN settings restart`() {
        val newPlan = VpnConfigBuilder.build(ClatSettings(mtu = 1400), own)
        val d = RunDecider.decide(input(planResult = newPlan), started())
        d as Decision.Restart
        assertEquals(1400, d.target.plan.mtu)
    }

    @Test
    fun `force runs on a dual-stack or IPv4-only network but still needs a prefix`() {
        val emulator = NetworkSnapshot("7", "eth0", listOf("10.0.2.15/24"), hasIpv4DefaultRoute = true, dnsServers = listOf("10.0.2.3"))
        val d = RunDecider.decide(input(network = emulator, force = true), null)
        d as Decision.Start
        assertTrue(d.reason.startsWith("forced"), d.reason)
        assertEquals(StopReason.NO_PREFIX, (RunDecider.decide(input(network = emulator, prefix = null, force = true), null) as Decision.Stop).why)
        assertEquals(StopReason.NO_NETWORK, (RunDecider.decide(input(network = null, force = true), null) as Decision.Stop).why)
        assertEquals(StopReason.NATIVE_IPV4, (RunDecider.decide(input(network = emulator), null) as Decision.Stop).why)
    }

    @Test
    fun `a new network still being discovered holds the running TUN, a stopped one waits`() {
        val cell = v6only.copy(id = "200", interfaceName = "rmnet0")
        val running = started()
        val d = RunDecider.decide(input(network = cell, prefix = null, discovering = true), running)
        assertInstanceOf(Decision.Hold::class.java, d)
        assertEquals(running, (d as Decision.Hold).target, "what runs stays as it is, old prefix never moved to the new network")
        val idle = RunDecider.decide(input(network = cell, prefix = null, discovering = true), null)
        assertEquals(StopReason.DISCOVERING, (idle as Decision.Stop).why)
        val none = RunDecider.decide(input(network = cell, prefix = null, discovering = false), running)
        assertEquals(StopReason.NO_PREFIX, (none as Decision.Stop).why)
    }

    @Test
    fun `resolvers are compared as a set`() {
        val two = v6only.copy(dnsServers = listOf("2001:db8:1::53", "2001:db8:1::54"))
        val running = (RunDecider.decide(input(network = two), null) as Decision.Start).target
        val swapped = two.copy(dnsServers = two.dnsServers.reversed())
        assertInstanceOf(Decision.Keep::class.java, RunDecider.decide(input(network = swapped), running))
        val other = two.copy(dnsServers = listOf("2001:db8:1::55"))
        val d = RunDecider.decide(input(network = other), running)
        assertEquals(setOf(Change.DNS), (d as Decision.Reconfigure).changes)
    }

    @Test
    fun `Android's own CLAT on the network makes the app stand down, saying why`() {
        // Wi-Fi, IPv6-only in its LinkProperties, but the route lookup finds clatd's v4-wlan0.
        val clatd = v6only.copy(ipv4Route = Ipv4Route.Via("192.0.0.4"))
        val d = RunDecider.decide(input(network = clatd), null) as Decision.Stop
        assertEquals(StopReason.PLATFORM_CLAT, d.why)
        assertTrue(d.reason.startsWith("Android's own CLAT serves this network"), d.reason)
        // A running CLAT stops when clatd comes up late.
        assertEquals(StopReason.PLATFORM_CLAT, (RunDecider.decide(input(network = clatd), started()) as Decision.Stop).why)
    }

    @Test
    fun `the app runs where the platform's CLAT does not`() {
        // No IPv4 route (a non-/96 prefix clatd refuses, a ROM without clatd, a prefix known only
        // from configuration or RFC 7050): the route lookup says so and the app starts.
        val none = v6only.copy(ipv4Route = Ipv4Route.None)
        val nonWkp = SelectedPrefix(Nat64Prefix.of("2001:db8:64::/64"), PrefixSource.CONFIG)
        assertInstanceOf(Decision.Start::class.java, RunDecider.decide(input(network = none, prefix = nonWkp), null))
        // Not looked up: decided from the LinkProperties, as before.
        assertInstanceOf(Decision.Start::class.java, RunDecider.decide(input(network = v6only), null))
        // Forced: runs on top of clatd (developers' tests).
        val clatd = v6only.copy(ipv4Route = Ipv4Route.Via("192.0.0.4"))
        assertInstanceOf(Decision.Start::class.java, RunDecider.decide(input(network = clatd, force = true), null))
    }

    @Test
    fun `an IPv4 route the LinkProperties do not show counts as IPv4`() {
        val hidden = v6only.copy(ipv4Route = Ipv4Route.Via("100.64.1.2"))
        assertEquals(StopReason.NATIVE_IPV4, (RunDecider.decide(input(network = hidden), null) as Decision.Stop).why)
        assertFalse(hidden.platformClat)
        assertTrue(v6only.copy(ipv4Route = Ipv4Route.Via("192.0.0.5")).platformClat)
    }
}
