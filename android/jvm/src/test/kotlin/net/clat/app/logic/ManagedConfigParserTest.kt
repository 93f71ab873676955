package net.clat.app.logic

import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertNull
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test

class ManagedConfigParserTest {
    @Test
    fun `empty bundle manages nothing`() {
        val r = ManagedConfigParser.parse(emptyMap())
        assertEquals(ManagedConfig(), r.config)
        assertTrue(r.errors.isEmpty())
    }

    @Test
    fun `typed values as the restrictions XML declares them`() {
        val r = ManagedConfigParser.parse(
            mapOf(
                "allowed_apps" to "com.example.legacy, org.vendor.app\ncom.example.legacy",
                "nat64_prefix" to "2001:db8:64::/96",
                "mtu" to 1400,
                "always_on_start" to true,
                "udp_timeout_sec" to 600,
                "max_flows" to 4096,
                "some_future_key" to "ignored",
            ),
        )
        assertTrue(r.errors.isEmpty(), r.errors.toString())
        assertEquals(listOf("com.example.legacy", "org.vendor.app"), r.config.allowedApps)
        assertEquals(Nat64Prefix.of("2001:db8:64::/96"), r.config.prefixOverride)
        assertEquals(1400, r.config.mtu)
        assertEquals(true, r.config.alwaysOnStart)
        assertEquals(600, r.config.udpTimeoutSec)
        assertEquals(4096, r.config.maxFlows)
    }

    @Test
    fun `strings and arrays from lenient EMMs are accepted`() {
        val r = ManagedConfigParser.parse(
            mapOf("disallowed_apps" to arrayOf("com.example.bank", ""), "mtu" to " 1280 ", "always_on_start" to "false", "max_flows" to 100L),
        )
        assertTrue(r.errors.isEmpty(), r.errors.toString())
        assertEquals(listOf("com.example.bank"), r.config.disallowedApps)
        assertEquals(1280, r.config.mtu)
        assertEquals(false, r.config.alwaysOnStart)
        assertEquals(100, r.config.maxFlows)
    }

    @Test
    fun `empty strings mean not set`() {
        val r = ManagedConfigParser.parse(mapOf("nat64_prefix" to "", "allowed_apps" to " ", "mtu" to ""))
        assertTrue(r.errors.isEmpty(), r.errors.toString())
        assertNull(r.config.prefixOverride)
        assertNull(r.config.allowedApps)
        assertNull(r.config.mtu)
    }

    @Test
    fun `invalid values are rejected with the key and a reason`() {
        val r = ManagedConfigParser.parse(
            mapOf(
                "nat64_prefix" to "2001:db8::/33",
                "mtu" to 100,
                "udp_timeout_sec" to 30,
                "max_flows" to "lots",
                "always_on_start" to "maybe",
                "allowed_apps" to "com.example.ok,not-a-package",
            ),
        )
        val keys = r.errors.map { it.key }.toSet()
        assertEquals(setOf("nat64_prefix", "mtu", "udp_timeout_sec", "max_flows", "always_on_start", "allowed_apps"), keys)
        assertTrue(r.errors.first { it.key == "udp_timeout_sec" }.message.contains("120"))
        assertEquals(ManagedConfig(), r.config)
        assertEquals(setOf("nat64_prefix", "allowed_apps"), r.blockingErrors.map { it.key }.toSet())
    }

    @Test
    fun `allowed and disallowed together are rejected, blocking`() {
        val r = ManagedConfigParser.parse(mapOf("allowed_apps" to "a.b", "disallowed_apps" to "c.d"))
        assertNull(r.config.allowedApps)
        assertNull(r.config.disallowedApps)
        assertEquals(listOf("disallowed_apps"), r.blockingErrors.map { it.key })
    }

    @Test
    fun `wrong types are rejected`() {
        val r = ManagedConfigParser.parse(mapOf("mtu" to 1.5, "nat64_prefix" to 42, "always_on_start" to 1, "allowed_apps" to 7))
        assertEquals(4, r.errors.size, r.errors.toString())
    }

    @Test
    fun `counters summarise`() {
        val c = listOf("flows_tcp" to 3L, "flows_udp" to 2L, "tun_rx_packets" to 10L)
        assertEquals("flows tcp 3 · flows udp 2 · tun rx packets 10", Counters.summary(c))
    }
}
