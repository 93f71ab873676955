package net.clat.app.logic

import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertNull
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test

class InternalAddressPickerTest {
    @Test
    fun `nothing local takes the end of clatd's scan, never 4 or 5`() {
        assertEquals(InternalAddresses("192.0.0.3", "192.0.0.2", "192.0.0.1"), InternalAddressPicker.pick(emptySet()))
    }

    @Test
    fun `addresses held by clatd are skipped`() {
        // clatd on wlan0 (.4) and on rmnet (.5): nothing we use is theirs.
        val a = InternalAddressPicker.pick(setOf("192.0.0.4", "192.0.0.5"))!!
        assertEquals(InternalAddresses("192.0.0.3", "192.0.0.2", "192.0.0.1"), a)
        // Something else already holds .3 and .1.
        val b = InternalAddressPicker.pick(setOf("192.0.0.3", "192.0.0.1", "192.0.0.4"))!!
        assertEquals(InternalAddresses("192.0.0.2", "192.0.0.6", "192.0.0.5"), b)
    }

    @Test
    fun `too few free addresses gives none`() {
        val local = setOf("192.0.0.1", "192.0.0.2", "192.0.0.3", "192.0.0.4")
        assertNull(InternalAddressPicker.pick(local))
    }

    @Test
    fun `a rebuilt TUN keeps its addresses while nobody else holds them`() {
        val own = InternalAddresses("192.0.0.3", "192.0.0.2", "192.0.0.1")
        // Our own TUN's address is local: it does not count against us.
        assertEquals(own, InternalAddressPicker.pick(setOf("192.0.0.3", "192.0.0.4"), own))
        // A clatd took our NAT address (it is not assigned anywhere, only routed): move away.
        val moved = InternalAddressPicker.pick(setOf("192.0.0.3", "192.0.0.2"), own)!!
        assertFalse("192.0.0.2" in moved.all)
    }

    @Test
    fun `the plan carries the chosen TUN address and resolver`() {
        // The relay is the VPN's resolver under lockdown (DnsPolicy).
        val plan = (VpnConfigBuilder.build(ClatSettings(), "net.clat.app", lockdown = true) as PlanResult.Valid).plan
        val p = plan.withInternalAddresses(InternalAddresses("192.0.0.3", "192.0.0.2", "192.0.0.1"))
        // Lockdown carries IPv6 too: the project's ULA stays beside the chosen IPv4 address.
        assertEquals(listOf(IpPrefixSpec("192.0.0.3", 29), IpPrefixSpec("fd9c:7c5a:e1b6:464::1", 64)), p.addresses)
        assertEquals(listOf("192.0.0.1"), p.dnsServers)
        assertEquals(plan.routes, p.routes)
    }

    @Test
    fun `the CLAT range is 192_0_0_0 slash 29`() {
        assertTrue(InternalAddressPicker.inClatRange("192.0.0.0"))
        assertTrue(InternalAddressPicker.inClatRange("192.0.0.7/32"))
        assertFalse(InternalAddressPicker.inClatRange("192.0.0.8"))
        assertFalse(InternalAddressPicker.inClatRange("192.0.2.4"))
        assertFalse(InternalAddressPicker.inClatRange("2001:db8::4"))
    }
}
