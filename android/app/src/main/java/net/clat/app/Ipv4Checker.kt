package net.clat.app

import android.os.Handler
import android.os.Looper
import java.io.IOException
import java.net.InetAddress
import java.net.InetSocketAddress
import java.net.Socket
import java.net.SocketTimeoutException
import net.clat.app.logic.Ipv4Check

/**
 * Runs the IPv4 check ([Ipv4Check]) off the main thread: a TCP connect to an IPv4 literal with a
 * timeout. The socket is this app's, and this app always routes through its own VPN (the engine's
 * TCP listener lives on the TUN, see VpnConfigBuilder), so while the CLAT runs the connect goes
 * through it, whatever the app selection says about other apps. No packet is sent beyond the
 * handshake; the connection is closed at once.
 */
object Ipv4Checker {
    private val main = Handler(Looper.getMainLooper())

    fun run(target: Ipv4Check.Target, done: (Ipv4Check.Outcome) -> Unit) {
        Thread({
            val start = System.nanoTime()
            fun ms() = (System.nanoTime() - start) / 1_000_000
            val outcome = try {
                Socket().use { s ->
                    // getByAddress: a literal, no DNS lookup (a name would be answered by DNS64).
                    s.connect(InetSocketAddress(InetAddress.getByAddress(target.address), target.port), Ipv4Check.TIMEOUT_MS)
                    Ipv4Check.Outcome.Connected(ms(), s.localAddress?.hostAddress)
                }
            } catch (e: SocketTimeoutException) {
                Ipv4Check.Outcome.TimedOut(ms())
            } catch (e: IOException) {
                Ipv4Check.Outcome.Failed(ms(), e.message ?: e.javaClass.simpleName)
            } catch (e: SecurityException) {
                Ipv4Check.Outcome.Failed(ms(), "not allowed: ${e.message}")
            }
            main.post { done(outcome) }
        }, "clat-ipv4-check").apply { isDaemon = true }.start()
    }
}
