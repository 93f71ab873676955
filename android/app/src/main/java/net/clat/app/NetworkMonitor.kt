package net.clat.app

import android.content.Context
import android.net.ConnectivityManager
import android.net.LinkProperties
import android.net.Network
import android.net.NetworkCapabilities
import android.net.NetworkRequest
import android.os.Build
import android.os.Handler
import android.os.Looper
import java.net.Inet4Address
import java.net.Inet6Address
import net.clat.app.logic.Ipv4Route
import net.clat.app.logic.NetworkSnapshot
import net.clat.app.logic.ResolverLiterals

/**
 * Follows the best network that is NOT a VPN (our own VPN included) and reports it as a
 * [NetworkSnapshot] on the main thread.
 *
 * Why requestNetwork with NOT_VPN rather than the default network callback: once the CLAT runs,
 * the default network of this app's own UID is its own VPN (the app routes through it, see
 * VpnConfigBuilder), so the plain default-network callback would report the VPN itself. A request
 * for INTERNET + NOT_VPN is satisfied by the same network the system would pick as default
 * without a VPN, and it does not keep an extra radio up because the best network satisfies it.
 */
class NetworkMonitor(
    context: Context,
    private val onChange: (Network?, NetworkSnapshot?) -> Unit,
) {
    private val cm = context.getSystemService(Context.CONNECTIVITY_SERVICE) as ConnectivityManager
    private val main = Handler(Looper.getMainLooper())
    private var callback: ConnectivityManager.NetworkCallback? = null

    @Volatile
    var network: Network? = null
        private set

    fun start() {
        if (callback != null) return
        val request = NetworkRequest.Builder()
            .addCapability(NetworkCapabilities.NET_CAPABILITY_INTERNET)
            .addCapability(NetworkCapabilities.NET_CAPABILITY_NOT_VPN)
            .build()
        // Each callback passes what changed and asks for the other half, so that a snapshot holds
        // both. Many of them change nothing the snapshot holds (signal strength, bandwidth
        // estimates): ClatController.onNetwork drops equal snapshots, so those cost no update.
        val cb = object : ConnectivityManager.NetworkCallback() {
            override fun onAvailable(n: Network) = post(n, cm.getLinkProperties(n), cm.getNetworkCapabilities(n))
            override fun onLinkPropertiesChanged(n: Network, lp: LinkProperties) =
                post(n, lp, cm.getNetworkCapabilities(n))
            override fun onCapabilitiesChanged(n: Network, caps: NetworkCapabilities) =
                post(n, cm.getLinkProperties(n), caps)
            override fun onLost(n: Network) {
                main.post {
                    if (network == n) {
                        network = null
                        onChange(null, null)
                    }
                }
            }
        }
        callback = cb
        cm.requestNetwork(request, cb)
    }

    fun stop() {
        callback?.let { runCatching { cm.unregisterNetworkCallback(it) } }
        callback = null
        network = null
    }

    private fun post(n: Network, lp: LinkProperties?, caps: NetworkCapabilities?) {
        // Without LinkProperties the network is already gone (getLinkProperties returns null for
        // a network ConnectivityService no longer knows); its onLost follows.
        if (lp == null) return
        // On the callback thread, not main: the route lookup is a connect() (Ipv4RouteProber).
        // A stacked clatd link coming up changes the LinkProperties, so this runs again then.
        val s = snapshot(n, lp, caps, Ipv4RouteProber.probe(n))
        main.post {
            network = n
            onChange(n, s)
        }
    }

    companion object {
        fun snapshot(
            n: Network,
            lp: LinkProperties,
            caps: NetworkCapabilities?,
            ipv4Route: Ipv4Route = Ipv4Route.Unknown,
        ): NetworkSnapshot {
            val routes = lp.routes
            // Every resolver, link-local ones with their zone (ResolverLiterals): the core gives
            // the zone to its sockets as the scope id, so "fe80::1%wlan0" alone is enough.
            val dns = ResolverLiterals.all(lp.dnsServers.mapNotNull { it.hostAddress }, lp.interfaceName)
            return NetworkSnapshot(
                id = n.networkHandle.toString(),
                interfaceName = lp.interfaceName,
                addresses = lp.linkAddresses.map { "${it.address.hostAddress}/${it.prefixLength}" },
                hasIpv4DefaultRoute = routes.any { it.isDefaultRoute && it.destination.address is Inet4Address },
                hasIpv6DefaultRoute = routes.any { it.isDefaultRoute && it.destination.address is Inet6Address },
                dnsServers = dns,
                pref64 = if (Build.VERSION.SDK_INT >= 30) lp.nat64Prefix?.toString() else null,
                validated = caps?.hasCapability(NetworkCapabilities.NET_CAPABILITY_VALIDATED) == true,
                ipv4Route = ipv4Route,
            )
        }
    }
}
