package net.clat.app

import android.net.LinkProperties
import androidx.test.ext.junit.runners.AndroidJUnit4
import java.net.Inet4Address
import java.net.InetAddress
import net.clat.app.logic.InternalAddressPicker
import org.junit.After
import org.junit.Assert.assertEquals
import org.junit.Assert.assertNotNull
import org.junit.Assert.assertTrue
import org.junit.Assume.assumeTrue
import org.junit.Before
import org.junit.Test
import org.junit.runner.RunWith

/**
 * Brings the CLAT's VPN up on a device or emulator and checks it.
 *
 * Consent is granted without UI through app ops (`appops set net.clat.app ACTIVATE_VPN allow`),
 * run from the test itself through UiAutomation's shell. Emulators have native IPv4, so the
 * service runs in "force" mode with an explicit prefix override.
 *
 * The IPv4 connection test needs a NAT64 reachable from the device: pass
 * `-Pandroid.testInstrumentationRunnerArguments.clatPrefix=2001:db8:64::/96` and
 * `...clatIpv4Target=203.0.113.10:80` (a server behind that NAT64). Without them it is skipped
 * (assumption), because a stock emulator has no IPv6 path to any NAT64.
 */
@RunWith(AndroidJUnit4::class)
class ClatVpnInstrumentedTest {
    private val t = ClatTestSupport()
    private val context = t.context
    private val args = t.args
    private val cm = t.cm

    @Before
    fun setUp() = t.setUp()

    @After
    fun stopVpn() {
        t.tearDown()
    }

    @Test
    fun vpnComesUpWithTheClatInterface() {
        t.start(force = true)
        assertTrue("CLAT did not start: ${StatusBoard.status.reason}", t.waitFor(20_000) { StatusBoard.status.running })
        assertTrue("no VPN network appeared", t.waitFor(10_000) { t.vpnNetwork() != null })
        val lp: LinkProperties = cm.getLinkProperties(t.vpnNetwork())!!
        val v4 = lp.linkAddresses.firstOrNull { it.address is Inet4Address }
        assertNotNull("no IPv4 address on the VPN: $lp", v4)
        // One of 192.0.0.0/29's addresses that no clatd holds (InternalAddressPicker), as a /29.
        assertTrue("TUN address outside 192.0.0.0/29: $v4", InternalAddressPicker.inClatRange(v4!!.address.hostAddress!!))
        assertEquals(29, v4.prefixLength)
        // Outside lockdown the VPN has no resolver of its own, so apps keep the network's and its
        // Private DNS (DnsPolicy); under lockdown the relay is the VPN's resolver.
        val relay = lp.dnsServers.any { it is Inet4Address && InternalAddressPicker.inClatRange(it.hostAddress!!) }
        assertEquals("DNS relay advertised: $relay, status: ${StatusBoard.status.dns}", StatusBoard.status.lockdown, relay)
        if (!StatusBoard.status.lockdown) assertTrue("VPN has resolvers: $lp", lp.dnsServers.isEmpty())
        assertNotNull("no DNS mode in the status", StatusBoard.status.dns)
        // 0.0.0.0/0 (API 33+, with excludeRoute) or its complement without the local prefixes (below).
        val global = InetAddress.getByAddress(byteArrayOf(8, 8, 8, 8))
        assertTrue("no IPv4 route to the Internet: $lp", lp.routes.any { it.destination.address is Inet4Address && it.matches(global) })
        assertEquals(args.getString("clatPrefix") ?: "64:ff9b::/96", StatusBoard.status.prefix)
    }

    @Test
    fun stopTakesTheVpnDown() {
        t.start(force = true)
        assertTrue(t.waitFor(20_000) { t.vpnNetwork() != null })
        ClatVpnService.stop(context)
        assertTrue("VPN still up after stop", t.waitFor(10_000) { t.vpnNetwork() == null })
        assertTrue(!StatusBoard.status.running)
    }

    @Test
    fun ipv4ConnectionThroughTheClat() {
        assumeTrue("set clatIpv4Target (and clatPrefix) to a server behind a reachable NAT64", args.getString("clatIpv4Target") != null)
        t.start(force = true)
        assertTrue("CLAT did not start: ${StatusBoard.status.reason}", t.waitFor(20_000) { StatusBoard.status.running })
        // This app's own UID routes through its VPN (it must: the engine's TCP listener is on the TUN).
        t.assertIpv4Works()
        assertTrue("engine counted no TCP flow: ${StatusBoard.status.counters}", t.waitFor(10_000) {
            (StatusBoard.status.counters.toMap()["flows_tcp_total"] ?: 0L) > 0L
        })
    }
}
