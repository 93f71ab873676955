package net.clat.app

import android.net.Network
import android.system.ErrnoException
import android.system.Os
import android.system.OsConstants
import java.io.IOException
import java.net.InetAddress
import java.net.InetSocketAddress
import net.clat.app.logic.Ipv4Route

/**
 * Asks the kernel whether [Network] routes IPv4, the way clatd itself tests addresses: a UDP
 * socket, bound to the network with `Network.bindSocket`, connected to an IPv4 literal. connect()
 * on a UDP socket only looks the route up and fixes the source address; no packet is sent. The
 * lookup uses the network's routing table, which holds the default route of Android's stacked
 * clatd interface too (the "v4-" link of ClatCoordinator.clatStart), although LinkProperties'
 * getLinkAddresses()/getRoutes() do not show it. The source address getsockname() returns says
 * whose IPv4 it is (see [Ipv4Route.Via.isPlatformClat]).
 *
 * Must not run on the main thread: libcore's BlockGuardOs counts connect() as network I/O, which
 * StrictMode's default policy turns into NetworkOnMainThreadException there. NetworkMonitor calls
 * it on ConnectivityManager's callback thread.
 */
object Ipv4RouteProber {
    /** The literal ClatCoordinator uses for its own route/MTU lookup (GOOGLE_DNS_4); no packet leaves. */
    private val TARGET: InetAddress = InetAddress.getByAddress(byteArrayOf(8, 8, 8, 8))
    private const val PORT = 53

    fun probe(network: Network): Ipv4Route {
        val fd = try {
            Os.socket(OsConstants.AF_INET, OsConstants.SOCK_DGRAM, 0)
        } catch (e: ErrnoException) {
            return Ipv4Route.Unknown
        }
        try {
            try {
                network.bindSocket(fd) // API 23
            } catch (e: IOException) {
                return Ipv4Route.Unknown // the network is gone, or the app may not use it
            }
            try {
                Os.connect(fd, TARGET, PORT)
            } catch (e: ErrnoException) {
                val noRoute = e.errno == OsConstants.ENETUNREACH || e.errno == OsConstants.EHOSTUNREACH
                return if (noRoute) Ipv4Route.None else Ipv4Route.Unknown
            }
            val local = try {
                Os.getsockname(fd) as? InetSocketAddress
            } catch (e: ErrnoException) {
                null
            } ?: return Ipv4Route.Unknown
            val source = local.address?.hostAddress ?: return Ipv4Route.Unknown
            return Ipv4Route.Via(source)
        } finally {
            try {
                Os.close(fd)
            } catch (e: ErrnoException) {
                // nothing left to release
            }
        }
    }
}
