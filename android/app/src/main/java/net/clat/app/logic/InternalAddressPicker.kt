package net.clat.app.logic

/** The engine's three internal IPv4 addresses, all in 192.0.0.0/29 (the TUN is that /29). */
data class InternalAddresses(
    /** The apps' IPv4 source and the TUN's address. */
    val clat: String,
    /** The internal NAT address of the kernel-terminated TCP (on-link on the TUN, not assigned). */
    val nat: String,
    /** The DNS relay's address, given to apps as the VPN's resolver. */
    val dns: String,
) {
    val all: Set<String> get() = setOf(clat, nat, dns)
}

/**
 * Chooses the CLAT, NAT and DNS relay addresses among 192.0.0.0/29's addresses that are not
 * already local, so that the TUN never shares an address with Android's own clatd.
 *
 * Why it matters: clatd picks the first address of 192.0.0.0/29 that is not local, scanning
 * .4, .5, .6, .7, .0, .1, .2, .3 (packages/modules/Connectivity,
 * service/native/libs/libclat/clatutils.cpp: selectIpv4AddressInternal, whose isIpv4AddressFree
 * calls an address "in use" when a UDP connect() to it gets it back from getsockname(), i.e. when
 * it is assigned to some interface). If the TUN held .4, a clatd started later on another network
 * would take .5; were .5 the engine's NAT address (not assigned, only routed on the TUN), every
 * TCP flow through the engine would break. So the addresses are taken from the end of clatd's
 * scan (.3, .2, .1, then .6, .5, .4), never .0 and .7 (network and broadcast of the TUN's /29),
 * and never one that is local now.
 */
object InternalAddressPicker {
    /** The reverse of clatd's scan order, without .0 and .7. */
    val PREFERENCE: List<String> = listOf("192.0.0.3", "192.0.0.2", "192.0.0.1", "192.0.0.6", "192.0.0.5", "192.0.0.4")

    /**
     * [local]: the IPv4 addresses assigned on this device (any interface). [own]: the addresses
     * of this app's running TUN, if any; they count as free, and are kept when none of them is
     * taken by someone else, so that a rebuilt TUN keeps its addresses. Null when fewer than
     * three addresses are free.
     */
    fun pick(local: Set<String>, own: InternalAddresses? = null): InternalAddresses? {
        val taken = local - (own?.let { setOf(it.clat) } ?: emptySet())
        if (own != null && own.all.none { it in taken } && own.all.all { it in PREFERENCE }) return own
        val free = PREFERENCE.filterNot { it in taken }
        if (free.size < 3) return null
        return InternalAddresses(clat = free[0], nat = free[1], dns = free[2])
    }

    /** True for an address in 192.0.0.0/29. */
    fun inClatRange(text: String): Boolean {
        val a = IpAddresses.parseIpv4(IpAddresses.hostPart(text)) ?: return false
        val b = a.map { it.toInt() and 0xff }
        return b[0] == 192 && b[1] == 0 && b[2] == 0 && (b[3] and 0xf8) == 0
    }
}

/**
 * The TUN plan with the chosen internal addresses: the TUN's IPv4 address and the apps' resolver.
 * IPv6 addresses of the plan ([ClatAddresses.TUN_V6]) are kept.
 */
fun VpnPlan.withInternalAddresses(a: InternalAddresses): VpnPlan = copy(
    addresses = listOf(IpPrefixSpec(a.clat, ClatAddresses.CLAT_PREFIX_LENGTH)) + addresses.filterNot { it.isIpv4 },
    dnsServers = if (dnsMode == DnsMode.RELAY) listOf(a.dns) else emptyList(),
)
