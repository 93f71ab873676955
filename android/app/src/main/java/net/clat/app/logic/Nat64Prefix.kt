package net.clat.app.logic

/**
 * A NAT64 prefix that is valid under RFC 6052: length 32, 40, 48, 56, 64 or 96, no bits set
 * beyond the length, bits 64..71 (the "u" octet) zero (inside a /96 too), and a unicast prefix
 * that can actually reach a NAT64 (not multicast, link-local, loopback, unspecified or IPv4-mapped).
 *
 * Instances only exist in validated form: construct them with [parse].
 */
class Nat64Prefix private constructor(private val bytes: ByteArray, val length: Int) {
    /** The prefix address, 16 bytes, a copy. */
    val address: ByteArray get() = bytes.copyOf()

    /** 64:ff9b::/96 (RFC 6052 section 2.1): must not carry non-global IPv4 destinations. */
    val isWellKnown: Boolean get() = this == WELL_KNOWN

    /**
     * The IPv6 address that represents [ipv4] behind this prefix (RFC 6052 section 2.2), so the
     * UI and tests can show where an IPv4 destination really goes.
     */
    fun synthesize(ipv4: ByteArray): ByteArray {
        require(ipv4.size == 4) { "IPv4 address must be 4 bytes" }
        val out = bytes.copyOf()
        var src = 0
        var pos = length / 8
        while (src < 4) {
            if (pos == 8) { // skip the u octet
                pos++
                continue
            }
            out[pos++] = ipv4[src++]
        }
        return out
    }

    override fun toString(): String = IpAddresses.formatIpv6(bytes) + "/" + length
    override fun equals(other: Any?): Boolean =
        other is Nat64Prefix && other.length == length && other.bytes.contentEquals(bytes)
    override fun hashCode(): Int = bytes.contentHashCode() * 31 + length

    companion object {
        /** RFC 6052 section 2.2: the only prefix lengths a NAT64 may use. */
        val VALID_LENGTHS: Set<Int> = setOf(32, 40, 48, 56, 64, 96)

        val WELL_KNOWN: Nat64Prefix = Nat64Prefix(IpAddresses.parseIpv6("64:ff9b::")!!, 96)

        /**
         * Parses "2001:db8:64::/96". A missing "/len" means /96 (how most operators write the
         * well-known prefix). Returns the prefix or the reason it is not acceptable.
         */
        fun parse(text: String): Result<Nat64Prefix> {
            val t = text.trim()
            if (t.isEmpty()) return fail("empty prefix")
            val slash = t.indexOf('/')
            val addrText = if (slash >= 0) t.substring(0, slash) else t
            val length = if (slash >= 0) {
                t.substring(slash + 1).toIntOrNull() ?: return fail("\"$t\": prefix length is not a number")
            } else {
                96
            }
            val addr = IpAddresses.parseIpv6(addrText) ?: return fail("\"$t\": not an IPv6 prefix")
            validate(addr, length).exceptionOrNull()?.let { return fail("\"$t\": ${it.message}") }
            return Result.success(Nat64Prefix(addr, length))
        }

        /** Convenience for code that already validated the text (tests, constants). */
        fun of(text: String): Nat64Prefix = parse(text).getOrThrow()

        private fun validate(a: ByteArray, length: Int): Result<Unit> {
            if (length !in VALID_LENGTHS) {
                return fail("length /$length is not one of RFC 6052's 32, 40, 48, 56, 64, 96")
            }
            for (bit in length until 128) {
                if (a[bit / 8].toInt() and (0x80 ushr (bit % 8)) != 0) {
                    return fail("bits set beyond the /$length prefix length")
                }
            }
            // For /96 the u octet lies inside the prefix and RFC 6052 still requires it zero.
            if (a[8].toInt() != 0) {
                return fail("bits 64-71 must be zero (RFC 6052 section 2.2)")
            }
            val b0 = a[0].toInt() and 0xff
            val b1 = a[1].toInt() and 0xff
            if (b0 == 0xff) return fail("a multicast prefix cannot be a NAT64 prefix")
            if (b0 == 0xfe && (b1 and 0xc0) == 0x80) return fail("a link-local prefix cannot be a NAT64 prefix")
            if (a.all { it.toInt() == 0 }) return fail("the unspecified prefix :: cannot be a NAT64 prefix")
            val mappedPrefix = ByteArray(12).also { it[10] = -1; it[11] = -1 }
            if (a.copyOfRange(0, 12).contentEquals(mappedPrefix)) {
                return fail("an IPv4-mapped prefix ::ffff:0:0/96 cannot be a NAT64 prefix")
            }
            return Result.success(Unit)
        }

        private fun <T> fail(message: String): Result<T> = Result.failure(IllegalArgumentException(message))
    }
}
