package net.clat.app.logic

import net.clat.core.DiscoveredPrefix

import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertNull
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test

class PrefixSelectorTest {
    private val configured = Nat64Prefix.of("2001:db8:aaaa::/96")
    private val ra = Nat64Prefix.of("2001:db8:bbbb::/64")
    private val dns1 = Nat64Prefix.of("2001:db8:64::/96")
    private val dns2 = Nat64Prefix.of("64:ff9b::/96")

    @Test
    fun `explicit configuration beats everything`() {
        val s = PrefixSelector.select(PrefixCandidates(configured, ra, listOf(dns1)))!!
        assertEquals(configured, s.prefix)
        assertEquals(PrefixSource.CONFIG, s.source)
        assertFalse(PrefixSelector.needsDiscovery(PrefixCandidates(configured = configured)))
    }

    @Test
    fun `PREF64 beats RFC 7050`() {
        val s = PrefixSelector.select(PrefixCandidates(null, ra, listOf(dns1)))!!
        assertEquals(ra, s.prefix)
        assertEquals(PrefixSource.PREF64, s.source)
        assertFalse(PrefixSelector.needsDiscovery(PrefixCandidates(pref64 = ra)))
    }

    @Test
    fun `RFC 7050 keeps answer order and the other prefixes as alternatives`() {
        val s = PrefixSelector.select(PrefixCandidates(rfc7050 = listOf(dns2, dns1, dns2)))!!
        assertEquals(dns2, s.prefix)
        assertEquals(PrefixSource.RFC7050, s.source)
        assertEquals(listOf(dns1), s.alternatives)
        assertTrue(PrefixSelector.needsDiscovery(PrefixCandidates()))
    }

    @Test
    fun `nothing known gives no prefix`() {
        assertNull(PrefixSelector.select(PrefixCandidates()))
    }

    @Test
    fun `discovered prefixes become Nat64Prefix, duplicates dropped, bad ones reported`() {
        val (ok, bad) = PrefixSelector.parseDiscovered(
            listOf("2001:db8:64::/96", "64:ff9b::/96", "2001:db8:64::/96", "2001:db8::1/96", "nonsense")
                .map { DiscoveredPrefix(it, "rfc7050", 300) },
        )
        assertEquals(listOf(dns1, dns2), ok)
        assertEquals(2, bad.size)
    }
}
