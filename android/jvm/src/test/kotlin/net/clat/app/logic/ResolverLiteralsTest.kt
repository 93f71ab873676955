package net.clat.app.logic

import java.net.Inet6Address
import kotlin.test.Test
import kotlin.test.assertEquals
import kotlin.test.assertNull

class ResolverLiteralsTest {
    @Test
    fun `a network whose only resolver is link-local keeps it, with its zone`() {
        // What Android's getHostAddress() gives for RDNSS fe80::1 learnt on wlan0.
        assertEquals(listOf("fe80::1%wlan0"), ResolverLiterals.all(listOf("fe80::1%wlan0"), "wlan0"))
        assertEquals(listOf("fe80::1%3"), ResolverLiterals.all(listOf("fe80::1%3"), "wlan0"))
    }

    @Test
    fun `a link-local resolver without a zone gets the network's interface`() {
        assertEquals("fe80::1%wlan0", ResolverLiterals.of("fe80::1", "wlan0"))
        assertEquals("febf::1%rmnet0", ResolverLiterals.of("febf::1", "rmnet0"))
        // Without an interface it cannot be used: the kernel needs the scope.
        assertNull(ResolverLiterals.of("fe80::1", null))
        assertNull(ResolverLiterals.of("fe80::1%", "wlan0"))
    }

    @Test
    fun `link-local resolvers are no longer dropped when others exist, and order is kept`() {
        assertEquals(
            listOf("2001:db8::53", "fe80::1%wlan0", "192.0.2.1"),
            ResolverLiterals.all(listOf("2001:db8::53", "fe80::1%wlan0", "192.0.2.1", "2001:db8::53"), "wlan0"),
        )
    }

    @Test
    fun `global and IPv4 resolvers pass unchanged`() {
        assertEquals("2001:db8::53", ResolverLiterals.of("2001:db8::53", "wlan0"))
        assertEquals("fec0::1", ResolverLiterals.of("fec0::1", "wlan0")) // site-local: no zone needed
        assertEquals("192.0.2.1", ResolverLiterals.of("192.0.2.1", "wlan0"))
    }

    @Test
    fun `a JVM Inet6Address with a scope id gives a literal the core accepts`() {
        val a = Inet6Address.getByAddress(null, ByteArray(16).also { it[0] = 0xfe.toByte(); it[1] = 0x80.toByte(); it[15] = 1 }, 2)
        // "fe80:0:0:0:0:0:0:1%2": the core parses the long form and the numeric zone.
        assertEquals("fe80:0:0:0:0:0:0:1%2", ResolverLiterals.of(a.hostAddress, "wlan0"))
    }
}
