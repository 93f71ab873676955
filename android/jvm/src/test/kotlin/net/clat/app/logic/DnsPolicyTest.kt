package net.clat.app.logic

import kotlin.test.Test
import kotlin.test.assertContains
import kotlin.test.assertEquals
import kotlin.test.assertNotEquals

class DnsPolicyTest {
    private val own = "net.clat.app"

    private fun plan(settings: ClatSettings = ClatSettings(), lockdown: Boolean = false): VpnPlan =
        (VpnConfigBuilder.build(settings, own, lockdown) as PlanResult.Valid).plan

    @Test
    fun `outside lockdown the VPN sets no DNS server, so Private DNS is kept`() {
        val p = plan()
        assertEquals(DnsMode.NETWORK, p.dnsMode)
        assertEquals(emptyList<String>(), p.dnsServers)
        // Also once the internal addresses are chosen.
        assertEquals(emptyList<String>(), p.withInternalAddresses(InternalAddresses("192.0.0.3", "192.0.0.2", "192.0.0.1")).dnsServers)
    }

    @Test
    fun `under lockdown the relay is the VPN's resolver`() {
        val p = plan(lockdown = true)
        assertEquals(DnsMode.RELAY, p.dnsMode)
        assertEquals(listOf(ClatAddresses.DNS_V4), p.dnsServers)
        assertEquals(listOf("192.0.0.1"), p.withInternalAddresses(InternalAddresses("192.0.0.3", "192.0.0.2", "192.0.0.1")).dnsServers)
    }

    @Test
    fun `the managed key asks for the relay outside lockdown`() {
        val parsed = ManagedConfigParser.parse(mapOf("dns_through_vpn" to true))
        assertEquals(true, parsed.config.dnsThroughVpn)
        val r = SettingsResolver.resolve(parsed, null, own)
        assertEquals(DnsMode.RELAY, (r.plan as PlanResult.Valid).plan.dnsMode)
        assertEquals(1, ManagedConfigParser.parse(mapOf("dns_through_vpn" to "perhaps")).errors.size)
        val none = SettingsResolver.resolve(ManagedConfigParser.parse(emptyMap()), null, own)
        assertEquals(DnsMode.NETWORK, (none.plan as PlanResult.Valid).plan.dnsMode)
    }

    @Test
    fun `lockdown turning on changes the plan, so the TUN is rebuilt with the relay`() {
        assertNotEquals(plan(), plan(lockdown = true))
        assertEquals(plan(lockdown = true), plan(ClatSettings(dnsThroughVpn = true), lockdown = true))
    }

    @Test
    fun `the controller builds the plan for the lockdown state it was told`() {
        val c = ClatController(NoPort, own, FakeScheduler())
        assertEquals(DnsMode.NETWORK, (c.resolved().plan as PlanResult.Valid).plan.dnsMode)
        c.lockdown = true
        assertEquals(DnsMode.RELAY, (c.resolved().plan as PlanResult.Valid).plan.dnsMode)
    }

    @Test
    fun `the status line says which resolvers and why`() {
        assertContains(DnsPolicy.describe(DnsMode.NETWORK, false), "Private DNS applies")
        assertContains(DnsPolicy.describe(DnsMode.RELAY, true), "lockdown")
        assertContains(DnsPolicy.describe(DnsMode.RELAY, false), "dns_through_vpn")
    }

    private object NoPort : ClatPort {
        override fun startEngine(target: RunTarget): String? = null
        override fun stopEngine() {}
        override fun replaceEngine(target: RunTarget): String? = null
        override fun reconfigure(target: RunTarget, changes: Set<Change>): String? = null
        override fun clearUnderlyingNetworks() {}
        override fun startDiscovery(network: NetworkSnapshot) {}
        override fun scheduleRediscovery(networkId: String, delaySeconds: Long) {}
    }
}
