package net.clat.app.logic

/**
 * IPv4 traffic that stays on the local network instead of entering the CLAT, and the route
 * arithmetic that keeps it out of the TUN.
 *
 * Why: with 0.0.0.0/0 on the TUN, casting, mDNS/SSDP discovery and link-local peers would be
 * sent into the CLAT, which cannot translate them (there is no IPv6 equivalent behind a NAT64)
 * and drops them. Excluded, they leave through the underlying network as without the VPN.
 */
object LocalRoutes {
    /** IPv4 link-local (RFC 3927), multicast (RFC 5771) and the limited broadcast (RFC 919). */
    val IPV4_LOCAL: List<IpPrefixSpec> = listOf(
        IpPrefixSpec("169.254.0.0", 16),
        IpPrefixSpec("224.0.0.0", 4),
        IpPrefixSpec("255.255.255.255", 32),
    )

    /**
     * The IPv4 prefixes covered by [include] and not by [exclude], as the fewest CIDR blocks,
     * in address order. For Android below 13, where VpnService.Builder has no excludeRoute
     * (API 33) and the TUN must be given the complement as ordinary routes.
     */
    fun subtract(include: List<IpPrefixSpec>, exclude: List<IpPrefixSpec>): List<IpPrefixSpec> {
        var ranges = include.map { toRange(it) }
        for (x in exclude.map { toRange(it) }) {
            ranges = ranges.flatMap { r ->
                if (x.last < r.first || x.first > r.last) {
                    listOf(r)
                } else {
                    listOfNotNull(
                        if (x.first > r.first) r.first..(x.first - 1) else null,
                        if (x.last < r.last) (x.last + 1)..r.last else null,
                    )
                }
            }
        }
        return ranges.sortedBy { it.first }.flatMap { toCidrs(it) }
    }

    private fun toRange(p: IpPrefixSpec): LongRange {
        val a = IpAddresses.parseIpv4(p.address) ?: throw IllegalArgumentException("not IPv4: $p")
        require(p.prefixLength in 0..32) { "bad length: $p" }
        val v = a.fold(0L) { acc, b -> (acc shl 8) or (b.toLong() and 0xff) }
        val size = 1L shl (32 - p.prefixLength)
        val start = v and (size - 1).inv() and 0xffffffffL
        return start..(start + size - 1)
    }

    /** The largest aligned blocks that exactly cover [r]. */
    private fun toCidrs(r: LongRange): List<IpPrefixSpec> {
        val out = ArrayList<IpPrefixSpec>()
        var start = r.first
        while (start <= r.last) {
            var len = 32
            while (len > 0) {
                val size = 1L shl (32 - (len - 1))
                if (start % size != 0L || start + size - 1 > r.last) break
                len--
            }
            out.add(IpPrefixSpec(format(start), len))
            start += 1L shl (32 - len)
        }
        return out
    }

    private fun format(v: Long): String = "${(v shr 24) and 0xff}.${(v shr 16) and 0xff}.${(v shr 8) and 0xff}.${v and 0xff}"
}
