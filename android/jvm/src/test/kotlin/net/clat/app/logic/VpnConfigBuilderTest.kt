package net.clat.app.logic

import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test

class VpnConfigBuilderTest {
    private val own = "net.clat.app"

    private fun valid(s: ClatSettings): VpnPlan = when (val r = VpnConfigBuilder.build(s, own)) {
        is PlanResult.Valid -> r.plan
        is PlanResult.Invalid -> throw AssertionError("unexpectedly invalid: ${r.errors}")
    }

    private fun errors(s: ClatSettings): List<String> = when (val r = VpnConfigBuilder.build(s, own)) {
        is PlanResult.Valid -> throw AssertionError("unexpectedly valid: ${r.plan}")
        is PlanResult.Invalid -> r.errors
    }

    @Test
    fun `defaults give the CLAT interface`() {
        val p = valid(ClatSettings())
        assertEquals(listOf(IpPrefixSpec("192.0.0.4", 29)), p.addresses)
        assertEquals(listOf(IpPrefixSpec("0.0.0.0", 0)), p.routes)
        // Outside lockdown the VPN has no resolver of its own (DnsPolicyTest).
        assertEquals(emptyList<String>(), p.dnsServers)
        assertEquals(65000, p.mtu)
        assertTrue(p.allowIpv6Bypass)
        assertFalse(p.metered)
        assertEquals(emptyList<String>(), p.allowedApps)
        assertEquals(emptyList<String>(), p.disallowedApps)
    }

    @Test
    fun `mtu is taken and bounded`() {
        assertEquals(1280, valid(ClatSettings(mtu = 1280)).mtu)
        assertEquals(65535, valid(ClatSettings(mtu = 65535)).mtu)
        assertTrue(errors(ClatSettings(mtu = 575)).single().contains("575"))
        assertTrue(errors(ClatSettings(mtu = 65536)).single().contains("65536"))
    }

    @Test
    fun `allowed apps get the own package added`() {
        val p = valid(ClatSettings(allowedApps = listOf("com.example.legacy", " com.example.legacy ", "org.vendor.app")))
        assertEquals(listOf("com.example.legacy", "org.vendor.app", own), p.allowedApps)
        assertTrue(p.notes.single().contains(own))
        // Already listed: not added twice, no note.
        val p2 = valid(ClatSettings(allowedApps = listOf(own, "com.example.legacy")))
        assertEquals(listOf(own, "com.example.legacy"), p2.allowedApps)
        assertTrue(p2.notes.isEmpty())
    }

    @Test
    fun `disallowed apps never include the own package`() {
        val p = valid(ClatSettings(disallowedApps = listOf("com.example.bank", own)))
        assertEquals(listOf("com.example.bank"), p.disallowedApps)
        assertEquals(emptyList<String>(), p.allowedApps)
        assertTrue(p.notes.single().contains("cannot be disallowed"))
    }

    @Test
    fun `allowed and disallowed cannot be mixed`() {
        val e = errors(ClatSettings(allowedApps = listOf("a.b"), disallowedApps = listOf("c.d")))
        assertTrue(e.any { it.contains("cannot be mixed") }, e.toString())
    }

    @Test
    fun `bad package names are rejected`() {
        val e = errors(ClatSettings(allowedApps = listOf("com.example.ok", "not a package", "single")))
        assertEquals(2, e.size, e.toString())
    }

    @Test
    fun `plans compare by what the builder applies, not by notes`() {
        val a = valid(ClatSettings(allowedApps = listOf("com.example.legacy")))
        val b = a.copy(notes = listOf("other"))
        assertEquals(a, b)
        assertFalse(a == a.copy(mtu = 1400))
    }

    @Test
    fun `settings resolver merges managed over user and blocks on bad app lists`() {
        val managed = ManagedConfigParser.parse(mapOf("mtu" to 1400, "nat64_prefix" to "2001:db8:64::/96"))
        val r = SettingsResolver.resolve(managed, "64:ff9b::/96", own)
        assertEquals(Nat64Prefix.of("2001:db8:64::/96"), r.settings.prefixOverride)
        assertEquals(1400, (r.plan as PlanResult.Valid).plan.mtu)

        val userOnly = SettingsResolver.resolve(ManagedConfigParser.parse(emptyMap()), "64:ff9b::/96", own)
        assertEquals(Nat64Prefix.WELL_KNOWN, userOnly.settings.prefixOverride)

        val badUser = SettingsResolver.resolve(ManagedConfigParser.parse(emptyMap()), "64:ff9b::/95", own)
        assertEquals(null, badUser.settings.prefixOverride)
        assertEquals(1, badUser.warnings.size)

        val badApps = SettingsResolver.resolve(ManagedConfigParser.parse(mapOf("allowed_apps" to "ok.app,bad app")), null, own)
        assertTrue(badApps.plan is PlanResult.Invalid)

        val badMtu = SettingsResolver.resolve(ManagedConfigParser.parse(mapOf("mtu" to 10)), null, own)
        assertEquals(65000, (badMtu.plan as PlanResult.Valid).plan.mtu)
        assertTrue(badMtu.warnings.single().contains("mtu"), badMtu.warnings.toString())
    }

    private fun lockdownPlan(s: ClatSettings = ClatSettings()): VpnPlan =
        (VpnConfigBuilder.build(s, own, lockdown = true) as PlanResult.Valid).plan

    @Test
    fun `lockdown carries IPv6 through the TUN, outside lockdown IPv6 bypasses it`() {
        val p = lockdownPlan()
        assertTrue(p.carryIpv6)
        assertFalse(p.allowIpv6Bypass, "allowFamily(AF_INET6) would send IPv6 into lockdown's prohibit rule")
        assertEquals(listOf(IpPrefixSpec("192.0.0.4", 29), IpPrefixSpec("fd9c:7c5a:e1b6:464::1", 64)), p.addresses)
        assertEquals(listOf(IpPrefixSpec("0.0.0.0", 0), IpPrefixSpec("::", 0)), p.routes)
        val plain = valid(ClatSettings())
        assertFalse(plain.carryIpv6)
        assertTrue(plain.allowIpv6Bypass)
        assertFalse(p == plain, "lockdown on or off rebuilds the TUN")
    }

    @Test
    fun `below Android 13 the IPv6 route is kept beside the IPv4 complement`() {
        val v4 = valid(ClatSettings()).routesBelowApi33
        assertEquals(44, v4.size)
        assertEquals(v4 + IpPrefixSpec("::", 0), lockdownPlan().routesBelowApi33)
        assertEquals(
            listOf(IpPrefixSpec("0.0.0.0", 0), IpPrefixSpec("::", 0)),
            lockdownPlan(ClatSettings(excludeLocalTraffic = false)).routesBelowApi33,
        )
    }

    @Test
    fun `lockdown with an MTU below 1280 does not carry IPv6 and says so`() {
        val p = lockdownPlan(ClatSettings(mtu = 1279))
        assertEquals(listOf(IpPrefixSpec("192.0.0.4", 29)), p.addresses)
        assertEquals(listOf(IpPrefixSpec("0.0.0.0", 0)), p.routes)
        assertFalse(p.carryIpv6)
        assertTrue(p.notes.any { it.startsWith("MTU 1279 is below IPv6's minimum of 1280") }, p.notes.toString())
        assertTrue(lockdownPlan(ClatSettings(mtu = 1280)).carryIpv6)
    }

    @Test
    fun `the chosen internal IPv4 address replaces 192_0_0_4 and the ULA stays`() {
        val withInternal = lockdownPlan().withInternalAddresses(InternalAddresses("192.0.0.3", "192.0.0.2", "192.0.0.1"))
        assertEquals(listOf(IpPrefixSpec("192.0.0.3", 29), IpPrefixSpec("fd9c:7c5a:e1b6:464::1", 64)), withInternal.addresses)
    }

    @Test
    fun `the TUN's IPv6 address is a unique local address (RFC 4193) in a slash 64`() {
        val a = IpAddresses.parseIpv6(ClatAddresses.TUN_V6)!!
        assertEquals(0xfd, a[0].toInt() and 0xff, "fc00::/7 with L = 1")
        assertEquals(64, ClatAddresses.TUN_V6_PREFIX_LENGTH)
    }
}
