package net.clat.app.logic

/**
 * What a route lookup for an IPv4 literal on the network found: the answer to "does this network
 * already give IPv4?" that also sees Android's own CLAT.
 *
 * Why a route lookup: when Android runs its clatd on an IPv6-only network, the IPv4 address and
 * the IPv4 default route live on a stacked interface ("v4-" + the base interface, created by
 * ClatCoordinator.clatStart in packages/modules/Connectivity). `LinkProperties.getLinkAddresses()`
 * and `getRoutes()` list the base link only, so the network looks IPv6-only to an app. The kernel's
 * route lookup for a socket bound to the network does see the stacked link's route, and the source
 * address it picks tells whose IPv4 it is (the glue, `Ipv4RouteProber`, does the lookup).
 */
sealed interface Ipv4Route {
    /** Not looked up (the probe could not run): decide from the LinkProperties alone. */
    data object Unknown : Ipv4Route

    /** The network has no IPv4 route (connect() failed with ENETUNREACH). */
    data object None : Ipv4Route

    /** The network routes IPv4; [source] is the local address the kernel would send from. */
    data class Via(val source: String) : Ipv4Route {
        /**
         * The source is in 192.0.0.0/29 (RFC 7335), where Android's clatd takes its address
         * (ClatCoordinator.INIT_V4ADDR_STRING "192.0.0.4", /29): the platform's CLAT serves.
         */
        val isPlatformClat: Boolean get() = InternalAddressPicker.inClatRange(source)
    }
}
