package net.clat.app.logic

import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Test

class LocalRoutesTest {
    private fun specs(vararg s: String) = s.map { IpPrefixSpec(it.substringBefore('/'), it.substringAfter('/').toInt()) }

    @Test
    fun `the default route minus link-local, multicast and broadcast, exactly`() {
        val expected = specs(
            "0.0.0.0/1", "128.0.0.0/3", "160.0.0.0/5", "168.0.0.0/8",
            "169.0.0.0/9", "169.128.0.0/10", "169.192.0.0/11", "169.224.0.0/12", "169.240.0.0/13",
            "169.248.0.0/14", "169.252.0.0/15", "169.255.0.0/16",
            "170.0.0.0/7", "172.0.0.0/6", "176.0.0.0/4", "192.0.0.0/3",
            "240.0.0.0/5", "248.0.0.0/6", "252.0.0.0/7", "254.0.0.0/8",
            "255.0.0.0/9", "255.128.0.0/10", "255.192.0.0/11", "255.224.0.0/12", "255.240.0.0/13",
            "255.248.0.0/14", "255.252.0.0/15", "255.254.0.0/16", "255.255.0.0/17", "255.255.128.0/18",
            "255.255.192.0/19", "255.255.224.0/20", "255.255.240.0/21", "255.255.248.0/22",
            "255.255.252.0/23", "255.255.254.0/24", "255.255.255.0/25", "255.255.255.128/26",
            "255.255.255.192/27", "255.255.255.224/28", "255.255.255.240/29", "255.255.255.248/30",
            "255.255.255.252/31", "255.255.255.254/32",
        )
        assertEquals(expected, LocalRoutes.subtract(specs("0.0.0.0/0"), LocalRoutes.IPV4_LOCAL))
    }

    @Test
    fun `small cases`() {
        assertEquals(specs("0.0.0.0/0"), LocalRoutes.subtract(specs("0.0.0.0/0"), emptyList()))
        assertEquals(specs("10.0.0.0/9"), LocalRoutes.subtract(specs("10.0.0.0/8"), specs("10.128.0.0/9")))
        assertEquals(specs("10.0.0.0/8"), LocalRoutes.subtract(specs("10.0.0.0/8"), specs("11.0.0.0/8")))
        assertEquals(emptyList<IpPrefixSpec>(), LocalRoutes.subtract(specs("10.1.0.0/16"), specs("10.0.0.0/8")))
        assertEquals(specs("10.0.0.0/32", "10.0.0.2/31"), LocalRoutes.subtract(specs("10.0.0.0/30"), specs("10.0.0.1/32")))
    }

    @Test
    fun `the plan excludes local traffic by default, and not when switched off`() {
        val on = (VpnConfigBuilder.build(ClatSettings(), "net.clat.app") as PlanResult.Valid).plan
        assertEquals(specs("0.0.0.0/0"), on.routes)
        assertEquals(specs("169.254.0.0/16", "224.0.0.0/4", "255.255.255.255/32"), on.excludedRoutes)
        assertEquals(44, on.routesBelowApi33.size)
        val off = (VpnConfigBuilder.build(ClatSettings(excludeLocalTraffic = false), "net.clat.app") as PlanResult.Valid).plan
        assertEquals(emptyList<IpPrefixSpec>(), off.excludedRoutes)
        assertEquals(specs("0.0.0.0/0"), off.routesBelowApi33)
        assertFalse(on == off, "a change of the option rebuilds the TUN")
    }

    @Test
    fun `managed configuration switches it, default on`() {
        val parsed = ManagedConfigParser.parse(mapOf("exclude_local_traffic" to false))
        assertEquals(false, parsed.config.excludeLocalTraffic)
        assertEquals(false, ClatSettings.merge(parsed.config, null).excludeLocalTraffic)
        assertEquals(true, ClatSettings.merge(ManagedConfig(), null).excludeLocalTraffic)
        assertEquals(true, ManagedConfigParser.parse(mapOf("exclude_local_traffic" to "yes")).config.excludeLocalTraffic)
        assertEquals(1, ManagedConfigParser.parse(mapOf("exclude_local_traffic" to "maybe")).errors.size)
    }

    @Test
    fun `the user's choice applies unless the managed configuration sets it`() {
        val none = ManagedConfigParser.parse(emptyMap())
        val userOff = SettingsResolver.resolve(none, null, "net.clat.app", userExcludeLocalTraffic = false)
        assertEquals(emptyList<IpPrefixSpec>(), (userOff.plan as PlanResult.Valid).plan.excludedRoutes)
        val managedOn = ManagedConfigParser.parse(mapOf("exclude_local_traffic" to true))
        val r = SettingsResolver.resolve(managedOn, null, "net.clat.app", userExcludeLocalTraffic = false)
        assertEquals(LocalRoutes.IPV4_LOCAL, (r.plan as PlanResult.Valid).plan.excludedRoutes)
    }
}
