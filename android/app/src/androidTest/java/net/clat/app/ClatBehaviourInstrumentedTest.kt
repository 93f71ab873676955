package net.clat.app

import android.net.NetworkCapabilities
import androidx.test.ext.junit.runners.AndroidJUnit4
import java.net.Inet4Address
import net.clat.app.logic.StopReason
import org.junit.After
import org.junit.Assert.assertEquals
import org.junit.Assert.assertNull
import org.junit.Assert.assertTrue
import org.junit.Assume.assumeTrue
import org.junit.Before
import org.junit.Test
import org.junit.runner.RunWith

/**
 * The app's behaviour on a real device or emulator, for what the JVM tests can only model:
 * standing down where the network already gives IPv4, and staying up across a network handover.
 * Engine death is not provoked here: an app cannot break its own TUN from outside the engine
 * (closing the descriptor under the engine's epoll goes unnoticed, and `ip link` needs
 * NET_ADMIN); the JNI lab test deletes a real TUN under a running engine instead
 * (ClatNativeLabTest), and ClatControllerTest covers the restart policy.
 *
 * Consent through app ops, as in [ClatVpnInstrumentedTest]. Optional runner arguments:
 * `clatPrefix` (a NAT64 prefix the device reaches) and `clatIpv4Target` (`host:port` of a TCP
 * server behind it); without them the traffic checks are skipped (assumption).
 */
@RunWith(AndroidJUnit4::class)
class ClatBehaviourInstrumentedTest {
    private val t = ClatTestSupport()
    private val context = t.context
    private val args = t.args
    private val cm = t.cm

    @Before
    fun setUp() = t.setUp()

    @After
    fun restore() {
        t.shell("svc wifi enable")
        t.tearDown()
    }

    private fun hasTransport(transport: Int): Boolean = cm.allNetworks.any {
        val caps = cm.getNetworkCapabilities(it)
        caps != null && caps.hasTransport(transport) && !caps.hasTransport(NetworkCapabilities.TRANSPORT_VPN)
    }

    /**
     * A stock emulator's network has native IPv4: without "force" the app must not take IPv4
     * away from the kernel, and must say why (RunDecider: NATIVE_IPV4, or PLATFORM_CLAT where
     * the image runs clatd on an IPv6-only network).
     */
    @Test
    fun standsDownWhereTheNetworkAlreadyGivesIpv4() {
        val default = cm.activeNetwork
        assumeTrue("no default network", default != null)
        val v4 = cm.getLinkProperties(default)?.linkAddresses.orEmpty().any { it.address is Inet4Address }
        assumeTrue("this device's default network has no native IPv4", v4)
        t.start(force = false)
        val reasons = setOf(StopReason.NATIVE_IPV4.text, StopReason.PLATFORM_CLAT.text)
        assertTrue(
            "no stand-down reason shown: ${StatusBoard.status.reason}",
            t.waitFor(10_000) { reasons.any { StatusBoard.status.reason.contains(it) } },
        )
        Thread.sleep(2_000)
        assertTrue("the CLAT runs on a network with IPv4", !StatusBoard.status.running)
        assertNull("a VPN came up on a network with IPv4", t.vpnNetwork())
    }

    /**
     * Wi-Fi off then on again: the VPN network stays (the loss is debounced, the engine moves to
     * the next network live, the TUN is not rebuilt), and IPv4 works again afterwards. A TCP
     * connection that was open stays open only where its upstream socket's network stays; on a
     * switch from Wi-Fi to mobile data the upstream leg is bound to a network that is gone, as it
     * would be for any app.
     */
    @Test
    fun vpnStaysUpAcrossANetworkHandover() {
        assumeTrue(
            "needs Wi-Fi and mobile data (the emulator's AndroidWifi and its cellular network)",
            hasTransport(NetworkCapabilities.TRANSPORT_WIFI) && hasTransport(NetworkCapabilities.TRANSPORT_CELLULAR),
        )
        t.start(force = true)
        assertTrue("CLAT did not start: ${StatusBoard.status.reason}", t.waitFor(20_000) { StatusBoard.status.running })
        val vpn = t.vpnNetwork()
        assertTrue("no VPN network", vpn != null)
        t.shell("svc wifi disable")
        assertTrue("Wi-Fi still up", t.waitFor(15_000) { !hasTransport(NetworkCapabilities.TRANSPORT_WIFI) })
        assertTrue("CLAT not running on mobile data: ${StatusBoard.status.reason}", t.waitFor(20_000) {
            StatusBoard.status.running && StatusBoard.status.network != null
        })
        assertEquals("the VPN network was torn down and built again", vpn, t.vpnNetwork())
        t.shell("svc wifi enable")
        assertTrue("Wi-Fi did not come back", t.waitFor(30_000) { hasTransport(NetworkCapabilities.TRANSPORT_WIFI) })
        assertTrue(t.waitFor(20_000) { StatusBoard.status.running })
        assertEquals("the VPN network was torn down and built again", vpn, t.vpnNetwork())
        t.assertIpv4Works()
    }
}
