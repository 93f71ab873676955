package net.clat.app

import java.net.Inet4Address
import java.net.NetworkInterface
import java.net.SocketException
import net.clat.app.logic.InternalAddressPicker

/**
 * The IPv4 addresses of 192.0.0.0/29 assigned on this device, the input of
 * [InternalAddressPicker]: Android's clatd holds one on each of its "v4-" interfaces.
 *
 * Why NetworkInterface rather than clatd's own test (a UDP connect() to each address): this runs
 * on the main thread just before establish(), where libcore's BlockGuardOs would refuse connect().
 * NetworkInterface.getNetworkInterfaces() reads getifaddrs(), which Android 11+ still allows to
 * apps for addresses (only hardware addresses are withheld; developer.android.com, "Privacy
 * changes in Android 11", MAC address restrictions).
 */
object LocalAddresses {
    fun inClatRange(): Set<String> = try {
        NetworkInterface.getNetworkInterfaces()?.toList().orEmpty()
            .flatMap { it.inetAddresses.toList() }
            .filterIsInstance<Inet4Address>()
            .mapNotNull { it.hostAddress }
            .filter { InternalAddressPicker.inClatRange(it) }
            .toSet()
    } catch (e: SocketException) {
        emptySet()
    }
}
