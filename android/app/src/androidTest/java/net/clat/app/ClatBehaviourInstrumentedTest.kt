package net.clat.app

import android.content.Context
import android.content.Intent
import android.net.ConnectivityManager
import android.net.Network
import android.net.NetworkCapabilities
import android.net.VpnService
import android.os.Build
import android.os.ParcelFileDescriptor
import androidx.test.ext.junit.runners.AndroidJUnit4
import androidx.test.platform.app.InstrumentationRegistry
import java.io.FileInputStream
import java.net.Inet4Address
import java.net.InetSocketAddress
import java.net.Socket
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
    private val instrumentation = InstrumentationRegistry.getInstrumentation()
    private val context: Context = instrumentation.targetContext
    private val args = InstrumentationRegistry.getArguments()
    private val cm = context.getSystemService(ConnectivityManager::class.java)

    private fun shell(cmd: String): String {
        val pfd: ParcelFileDescriptor = instrumentation.uiAutomation.executeShellCommand(cmd)
        return FileInputStream(pfd.fileDescriptor).use { it.readBytes().decodeToString() }.also { pfd.close() }
    }

    @Before
    fun grantVpnConsent() {
        shell("appops set ${context.packageName} ACTIVATE_VPN allow")
        assertNull("VPN consent still needed after appops", VpnService.prepare(context))
        UserPrefs(context).prefixOverride = args.getString("clatPrefix") ?: "64:ff9b::/96"
    }

    @After
    fun restore() {
        shell("svc wifi enable")
        ClatVpnService.stop(context)
        waitFor(10_000) { vpnNetwork() == null }
        UserPrefs(context).prefixOverride = null
        UserPrefs(context).force = false
    }

    private fun start(force: Boolean) {
        val i = Intent(context, ClatVpnService::class.java)
            .setAction(ClatVpnService.ACTION_START)
            .putExtra(ClatVpnService.EXTRA_FORCE, force)
        if (Build.VERSION.SDK_INT >= 26) context.startForegroundService(i) else context.startService(i)
    }

    private fun vpnNetwork(): Network? = cm.allNetworks.firstOrNull {
        cm.getNetworkCapabilities(it)?.hasTransport(NetworkCapabilities.TRANSPORT_VPN) == true
    }

    private fun hasTransport(transport: Int): Boolean = cm.allNetworks.any {
        val caps = cm.getNetworkCapabilities(it)
        caps != null && caps.hasTransport(transport) && !caps.hasTransport(NetworkCapabilities.TRANSPORT_VPN)
    }

    private fun waitFor(timeoutMs: Long, cond: () -> Boolean): Boolean {
        val end = System.currentTimeMillis() + timeoutMs
        while (System.currentTimeMillis() < end) {
            if (cond()) return true
            Thread.sleep(200)
        }
        return cond()
    }

    /** A TCP exchange through the CLAT with `clatIpv4Target`, or a skip without one. */
    private fun assertIpv4Works() {
        val target = args.getString("clatIpv4Target")
        assumeTrue("set clatIpv4Target (and clatPrefix) to a server behind a reachable NAT64", target != null)
        val (host, port) = target!!.substringBeforeLast(':') to target.substringAfterLast(':').toInt()
        Socket().use { s ->
            s.connect(InetSocketAddress(host, port), 10_000)
            s.getOutputStream().write("GET / HTTP/1.0\r\nHost: $host\r\n\r\n".toByteArray())
            val head = s.getInputStream().bufferedReader().readLine()
            assertTrue("unexpected answer: $head", head != null && head.startsWith("HTTP/"))
        }
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
        start(force = false)
        val reasons = setOf(StopReason.NATIVE_IPV4.text, StopReason.PLATFORM_CLAT.text)
        assertTrue(
            "no stand-down reason shown: ${StatusBoard.status.reason}",
            waitFor(10_000) { reasons.any { StatusBoard.status.reason.contains(it) } },
        )
        Thread.sleep(2_000)
        assertTrue("the CLAT runs on a network with IPv4", !StatusBoard.status.running)
        assertNull("a VPN came up on a network with IPv4", vpnNetwork())
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
        start(force = true)
        assertTrue("CLAT did not start: ${StatusBoard.status.reason}", waitFor(20_000) { StatusBoard.status.running })
        val vpn = vpnNetwork()
        assertTrue("no VPN network", vpn != null)
        shell("svc wifi disable")
        assertTrue("Wi-Fi still up", waitFor(15_000) { !hasTransport(NetworkCapabilities.TRANSPORT_WIFI) })
        assertTrue("CLAT not running on mobile data: ${StatusBoard.status.reason}", waitFor(20_000) {
            StatusBoard.status.running && StatusBoard.status.network != null
        })
        assertEquals("the VPN network was torn down and built again", vpn, vpnNetwork())
        shell("svc wifi enable")
        assertTrue("Wi-Fi did not come back", waitFor(30_000) { hasTransport(NetworkCapabilities.TRANSPORT_WIFI) })
        assertTrue(waitFor(20_000) { StatusBoard.status.running })
        assertEquals("the VPN network was torn down and built again", vpn, vpnNetwork())
        assertIpv4Works()
    }
}
