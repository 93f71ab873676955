package net.clat.app.logic

import org.junit.jupiter.api.Assertions.assertArrayEquals
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertNull
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.params.ParameterizedTest
import org.junit.jupiter.params.provider.ValueSource

class Nat64PrefixTest {
    @ParameterizedTest
    @ValueSource(strings = ["2001:db8::/32", "2001:db8:100::/40", "2001:db8:122::/48", "2001:db8:122:300::/56",
        "2001:db8:122:344::/64", "2001:db8:64::/96", "64:ff9b::/96"])
    fun `accepts every RFC 6052 length`(text: String) {
        val p = Nat64Prefix.parse(text).getOrThrow()
        assertEquals(text, p.toString())
    }

    @ParameterizedTest
    @ValueSource(strings = ["2001:db8::/33", "2001:db8::/128", "2001:db8::/0", "2001:db8::/x", "2001:db8:64::1/96",
        "2001:db8:0:0:ff00::/64", "2001:db8:0:0:100::/96", "ff02::/96", "fe80::/96", "::/96", "::ffff:0:0/96", "192.0.2.1/96", "2001:db8:::/96",
        "", "2001:db8::/"])
    fun `rejects invalid prefixes with a reason`(text: String) {
        val r = Nat64Prefix.parse(text)
        assertTrue(r.isFailure, "$text should be rejected")
        assertFalse(r.exceptionOrNull()?.message.isNullOrBlank())
    }

    @Test
    fun `the u octet rule explains itself`() {
        val msg = Nat64Prefix.parse("2001:db8:0:0:ff00::/96").exceptionOrNull()!!.message!!
        assertTrue(msg.contains("64-71"), msg)
    }

    @Test
    fun `missing length means 96 and text is canonicalised`() {
        val p = Nat64Prefix.parse(" 64:FF9B:0:0:0:0:0:0 ").getOrThrow()
        assertEquals("64:ff9b::/96", p.toString())
        assertTrue(p.isWellKnown)
        assertFalse(Nat64Prefix.of("2001:db8:64::/96").isWellKnown)
    }

    @Test
    fun `synthesises RFC 6052 section 2_4 examples`() {
        val v4 = IpAddresses.parseIpv4("192.0.2.33")!!
        val cases = mapOf(
            "2001:db8::/32" to "2001:db8:c000:221::",
            "2001:db8:100::/40" to "2001:db8:1c0:2:21::",
            "2001:db8:122::/48" to "2001:db8:122:c000:2:2100::",
            "2001:db8:122:300::/56" to "2001:db8:122:3c0:0:221::",
            "2001:db8:122:344::/64" to "2001:db8:122:344:c0:2:2100:0",
            "2001:db8:122:344::/96" to "2001:db8:122:344::c000:221",
        )
        for ((prefix, expected) in cases) {
            assertEquals(expected, IpAddresses.formatIpv6(Nat64Prefix.of(prefix).synthesize(v4)), prefix)
        }
    }

    @Test
    fun `ipv6 parser handles the text forms and refuses garbage`() {
        assertArrayEquals(ByteArray(16).also { it[15] = 1 }, IpAddresses.parseIpv6("::1"))
        assertEquals("2001:db8:64::c000:221", IpAddresses.formatIpv6(IpAddresses.parseIpv6("2001:db8:64::192.0.2.33")!!))
        assertEquals("2001:db8::1:0:0:1", IpAddresses.formatIpv6(IpAddresses.parseIpv6("2001:0db8:0:0:1:0:0:1")!!))
        assertEquals("2001:0:0:1::1", IpAddresses.formatIpv6(IpAddresses.parseIpv6("2001:0:0:1:0:0:0:1")!!))
        for (bad in listOf("1:2:3:4:5:6:7", "1:2:3:4:5:6:7:8:9", "1::2::3", "g::1", "12345::", "fe80::1%wlan0", "::+1", "example.com")) {
            assertNull(IpAddresses.parseIpv6(bad), bad)
        }
        assertNull(IpAddresses.parseIpv4("192.0.2.256"))
        assertNull(IpAddresses.parseIpv4("192.0.02.1"))
        assertNull(IpAddresses.parseIpv4("192.0.2"))
    }
}
