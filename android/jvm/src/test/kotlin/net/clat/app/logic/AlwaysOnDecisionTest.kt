package net.clat.app.logic

import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertThrows
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test

/**
 * [RunDecider] under always-on VPN and lockdown (issue 15, item 4): every case of always-on or
 * not x lockdown or not x the network's IPv4 (none, native, Android's CLAT) x the prefix (known,
 * being discovered, none), with the exact decision; then the transitions while running.
 */
class AlwaysOnDecisionTest {
    private val own = "net.clat.app"
    private val labPrefix = SelectedPrefix(Nat64Prefix.of("2001:db8:64::/96"), PrefixSource.RFC7050)
    private val dns = listOf("2001:db8:1::53")

    private fun planFor(lockdown: Boolean): VpnPlan =
        (VpnConfigBuilder.build(ClatSettings(), own, lockdown) as PlanResult.Valid).plan

    /** IPv6-only uplink, like the lab's phone. */
    private val v6only = NetworkSnapshot(
        id = "100", interfaceName = "ph0",
        addresses = listOf("2001:db8:1::2/64", "fe80::2/64"),
        hasIpv6DefaultRoute = true, dnsServers = dns,
    )
    private val dual = v6only.copy(addresses = v6only.addresses + "198.51.100.7/24", hasIpv4DefaultRoute = true)
    private val clatd = v6only.copy(ipv4Route = Ipv4Route.Via("192.0.0.4"))
    private val noIpv6 = NetworkSnapshot("1", "wlan0", listOf("fe80::1/64"), hasIpv6DefaultRoute = true)

    private fun input(
        network: NetworkSnapshot? = v6only,
        prefix: SelectedPrefix? = labPrefix,
        discovering: Boolean = false,
        alwaysOn: Boolean = true,
        lockdown: Boolean = false,
        enabled: Boolean = true,
        force: Boolean = false,
    ) = DecisionInput(enabled, network, prefix, discovering, PlanResult.Valid(planFor(lockdown)), force, alwaysOn)

    private fun translating(lockdown: Boolean = false) = RunTarget("100", labPrefix, dns, planFor(lockdown), ipv4Native = false)
    private fun passing(prefix: SelectedPrefix? = null, lockdown: Boolean = false) = RunTarget("100", prefix, dns, planFor(lockdown), ipv4Native = true)

    private val translateWhy = "ph0 is IPv6-only, NAT64 prefix 2001:db8:64::/96 (DNS discovery (RFC 7050))"
    private val nativeWhy = "pass-through: the network has native IPv4 (ph0); " +
        "the always-on VPN stays up, IPv4 and IPv6 leave natively"
    private val clatdWhy = "pass-through: Android's own CLAT serves this network (ph0, IPv4 source 192.0.0.4); " +
        "the always-on VPN stays up, IPv4 and IPv6 leave natively"
    private fun noPathWhy(iface: String, r: StopReason) = "no IPv4 path on $iface: ${r.text}; the always-on VPN stays up (IPv4 unreachable meanwhile)"

    @Test
    fun `without always-on, lockdown or not, only an IPv6-only network with a prefix runs`() {
        for (lockdown in listOf(false, true)) {
            val plan = planFor(lockdown)
            fun d(i: DecisionInput) = RunDecider.decide(i.copy(alwaysOn = false), null)
            assertEquals(Decision.Start(translating(lockdown), translateWhy), d(input(lockdown = lockdown)))
            assertEquals(Decision.Stop(StopReason.NATIVE_IPV4, "ph0"), d(input(network = dual, lockdown = lockdown)))
            assertEquals(Decision.Stop(StopReason.NATIVE_IPV4, "ph0"), d(input(network = dual, prefix = null, lockdown = lockdown)))
            assertEquals(
                Decision.Stop(StopReason.PLATFORM_CLAT, "ph0, IPv4 source 192.0.0.4"),
                d(input(network = clatd, lockdown = lockdown)),
            )
            assertEquals(Decision.Stop(StopReason.DISCOVERING), d(input(prefix = null, discovering = true, lockdown = lockdown)))
            assertEquals(Decision.Stop(StopReason.NO_PREFIX), d(input(prefix = null, lockdown = lockdown)))
            assertEquals(Decision.Stop(StopReason.NO_IPV6, "wlan0"), d(input(network = noIpv6, prefix = null, lockdown = lockdown)))
            assertEquals(lockdown, plan.carryIpv6)
        }
    }

    @Test
    fun `always-on never idles, it translates, passes through, or holds the VPN with no IPv4 path`() {
        for (lockdown in listOf(false, true)) {
            fun d(i: DecisionInput) = RunDecider.decide(i, null)
            val plan = planFor(lockdown)
            assertEquals(Decision.Start(translating(lockdown), translateWhy), d(input(lockdown = lockdown)))
            // Native IPv4, with or without a known prefix (kept for when the IPv4 goes).
            assertEquals(Decision.Start(passing(null, lockdown), nativeWhy), d(input(network = dual, prefix = null, lockdown = lockdown)))
            assertEquals(Decision.Start(passing(labPrefix, lockdown), nativeWhy), d(input(network = dual, lockdown = lockdown)))
            // Android's own CLAT serves the network: its IPv4 is the native path.
            assertEquals(Decision.Start(passing(null, lockdown), clatdWhy), d(input(network = clatd, prefix = null, lockdown = lockdown)))
            // IPv6-only, prefix not known (yet): the VPN comes up at once; IPv4 waits for the prefix.
            assertEquals(
                Decision.Start(passing(null, lockdown), noPathWhy("ph0", StopReason.DISCOVERING)),
                d(input(prefix = null, discovering = true, lockdown = lockdown)),
            )
            assertEquals(
                Decision.Start(passing(null, lockdown), noPathWhy("ph0", StopReason.NO_PREFIX)),
                d(input(prefix = null, lockdown = lockdown)),
            )
            // No IPv6 to reach a NAT64, no IPv4 either: a configured prefix is not claimed.
            assertEquals(
                Decision.Start(RunTarget("1", null, emptyList(), plan, ipv4Native = true), noPathWhy("wlan0", StopReason.NO_IPV6)),
                d(input(network = noIpv6, lockdown = lockdown)),
            )
            // Lockdown carries IPv6 through the TUN; without it IPv6 bypasses the VPN.
            assertEquals(lockdown, plan.carryIpv6)
            assertEquals(!lockdown, plan.allowIpv6Bypass)
        }
    }

    @Test
    fun `always-on still stops when switched off, on an invalid configuration, and with no network before the first start`() {
        assertEquals(Decision.Stop(StopReason.DISABLED), RunDecider.decide(input(enabled = false), translating()))
        val bad = input().copy(plan = PlanResult.Invalid(listOf("mtu: 10 is outside")))
        assertEquals(Decision.Stop(StopReason.CONFIG_INVALID, "mtu: 10 is outside"), RunDecider.decide(bad, translating()))
        assertEquals(Decision.Stop(StopReason.NO_NETWORK), RunDecider.decide(input(network = null), null))
        // Running: the VPN outlives the network; without always-on it stops as before.
        val running = passing()
        assertEquals(
            Decision.Hold(running, "no network (other than a VPN) is connected; the always-on VPN stays up for the next one"),
            RunDecider.decide(input(network = null), running),
        )
        assertEquals(Decision.Stop(StopReason.NO_NETWORK), RunDecider.decide(input(network = null, alwaysOn = false), running))
    }

    @Test
    fun `native IPv4 appearing and going on the running network switches the IPv4 path live`() {
        val fromRa = labPrefix.copy(source = PrefixSource.PREF64)
        val running = translating().copy(prefix = fromRa)
        val appears = RunDecider.decide(input(network = dual, prefix = fromRa), running)
        assertEquals(Decision.Reconfigure(passing(fromRa), setOf(Change.IPV4_PATH), "ipv4_path changed; $nativeWhy"), appears)
        val goes = RunDecider.decide(input(prefix = fromRa), (appears as Decision.Reconfigure).target)
        val fromRaWhy = "ph0 is IPv6-only, NAT64 prefix 2001:db8:64::/96 (Android (Router Advertisement PREF64 or DNS64 discovery))"
        assertEquals(Decision.Reconfigure(running, setOf(Change.IPV4_PATH), "ipv4_path changed; $fromRaWhy"), goes)
        // Android's CLAT coming up late, likewise.
        val clatdUp = RunDecider.decide(input(network = clatd, prefix = fromRa), running)
        assertEquals(setOf(Change.IPV4_PATH), (clatdUp as Decision.Reconfigure).changes)
        assertTrue(clatdUp.target.ipv4Native)
        // Without always-on the same events stop the CLAT.
        assertEquals(StopReason.NATIVE_IPV4, (RunDecider.decide(input(network = dual, alwaysOn = false), running) as Decision.Stop).why)
    }

    @Test
    fun `IPv4 gone with no prefix known holds the pass-through while discovering, then translates on the answer`() {
        val running = passing()
        val held = RunDecider.decide(input(prefix = null, discovering = true), running)
        assertEquals(Decision.Hold(running, "looking for the network's NAT64 prefix on ph0; the VPN stays up meanwhile"), held)
        val found = RunDecider.decide(input(), running)
        assertEquals(Decision.Reconfigure(translating(), setOf(Change.PREFIX, Change.IPV4_PATH), "prefix, ipv4_path changed; $translateWhy"), found)
        // Discovery found nothing: the VPN stays, IPv4 has no path.
        val none = RunDecider.decide(input(prefix = null), running)
        assertEquals(Decision.Keep(running, noPathWhy("ph0", StopReason.NO_PREFIX)), none)
    }

    @Test
    fun `a new network without a prefix is applied live under always-on, the old prefix not carried over`() {
        val cell = NetworkSnapshot("200", "rmnet0", listOf("2001:db8:9::5/64"), hasIpv6DefaultRoute = true, dnsServers = listOf("2001:db8:9::53"))
        val d = RunDecider.decide(input(network = cell, prefix = null), translating())
        assertEquals(
            Decision.Reconfigure(
                RunTarget("200", null, listOf("2001:db8:9::53"), planFor(false), ipv4Native = true),
                setOf(Change.NETWORK, Change.DNS, Change.IPV4_PATH),
                "network, dns, ipv4_path changed; ${noPathWhy("rmnet0", StopReason.NO_PREFIX)}",
            ),
            d,
        )
        // Still discovering there: held as without always-on (the flows reset once, with the prefix).
        assertEquals(translating(), (RunDecider.decide(input(network = cell, prefix = null, discovering = true), translating()) as Decision.Hold).target)
    }

    @Test
    fun `lockdown turning on or off rebuilds the TUN with or without IPv6`() {
        val on = RunDecider.decide(input(network = dual, prefix = null, lockdown = true), passing())
        assertEquals(Decision.Restart(passing(null, lockdown = true), "VPN settings changed; $nativeWhy"), on)
        val off = RunDecider.decide(input(lockdown = false), translating(lockdown = true))
        assertEquals(Decision.Restart(translating(), "VPN settings changed; $translateWhy"), off)
        assertFalse((off as Decision.Restart).target.plan.carryIpv6)
    }

    @Test
    fun `forced runs translate even under always-on`() {
        val d = RunDecider.decide(input(network = dual, force = true), null) as Decision.Start
        assertFalse(d.target.ipv4Native)
        assertEquals(labPrefix, d.target.prefix)
    }

    @Test
    fun `a translating target needs a prefix, pass-through starts the engine with a placeholder`() {
        assertThrows(IllegalArgumentException::class.java) { RunTarget("1", null, dns, planFor(false), ipv4Native = false) }
        assertEquals("64:ff9b::/96", passing().enginePrefix)
        assertEquals("2001:db8:64::/96", passing(labPrefix).enginePrefix)
    }
}
