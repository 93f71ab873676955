package net.clat.app

import android.content.Context
import android.content.Intent
import android.net.ConnectivityManager
import android.net.Network
import android.net.NetworkCapabilities
import android.net.VpnService
import android.os.Build
import android.os.ParcelFileDescriptor
import androidx.test.platform.app.InstrumentationRegistry
import java.io.FileInputStream
import java.net.InetSocketAddress
import java.net.Socket
import org.junit.Assert.assertNull
import org.junit.Assert.assertTrue
import org.junit.Assume.assumeTrue

/**
 * What the instrumentation tests share: the shell, VPN consent through app ops (no UI), starting
 * the service, finding the VPN network, and polling for a condition.
 */
class ClatTestSupport {
    val instrumentation = InstrumentationRegistry.getInstrumentation()
    val context: Context = instrumentation.targetContext
    val args = InstrumentationRegistry.getArguments()
    val cm: ConnectivityManager = context.getSystemService(ConnectivityManager::class.java)

    fun shell(cmd: String): String {
        val pfd: ParcelFileDescriptor = instrumentation.uiAutomation.executeShellCommand(cmd)
        return FileInputStream(pfd.fileDescriptor).use { it.readBytes().decodeToString() }.also { pfd.close() }
    }

    /** `appops set <pkg> ACTIVATE_VPN allow`: what the consent dialog records. */
    fun grantVpnConsent() {
        shell("appops set ${context.packageName} ACTIVATE_VPN allow")
        assertNull("VPN consent still needed after appops", VpnService.prepare(context))
    }

    /** Before each test: consent, and the prefix the runner passed (else the well-known one). */
    fun setUp() {
        grantVpnConsent()
        UserPrefs(context).prefixOverride = args.getString("clatPrefix") ?: "64:ff9b::/96"
    }

    /** After each test: the VPN down and the settings as a user would have them. */
    fun tearDown() {
        ClatVpnService.stop(context)
        waitFor(10_000) { vpnNetwork() == null }
        UserPrefs(context).prefixOverride = null
        UserPrefs(context).force = false
    }

    fun start(force: Boolean) {
        val i = Intent(context, ClatVpnService::class.java)
            .setAction(ClatVpnService.ACTION_START)
            .putExtra(ClatVpnService.EXTRA_FORCE, force)
        if (Build.VERSION.SDK_INT >= 26) context.startForegroundService(i) else context.startService(i)
    }

    fun vpnNetwork(): Network? = cm.allNetworks.firstOrNull {
        cm.getNetworkCapabilities(it)?.hasTransport(NetworkCapabilities.TRANSPORT_VPN) == true
    }

    fun waitFor(timeoutMs: Long, cond: () -> Boolean): Boolean {
        val end = System.currentTimeMillis() + timeoutMs
        while (System.currentTimeMillis() < end) {
            if (cond()) return true
            Thread.sleep(200)
        }
        return cond()
    }

    /** A TCP exchange through the CLAT with `clatIpv4Target`, or a skip without one. */
    fun assertIpv4Works() {
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
}
