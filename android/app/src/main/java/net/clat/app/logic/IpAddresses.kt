package net.clat.app.logic

/**
 * Literal IP address parsing and formatting without `java.net.InetAddress`.
 *
 * Why not InetAddress: `InetAddress.getByName` falls back to a DNS lookup for anything that is not
 * a literal, which must never happen while validating configuration (and would block the main
 * thread on Android). These functions only ever parse literals and return null otherwise.
 */
object IpAddresses {
    /** Parses dotted-quad IPv4 ("192.0.0.4"), no leading zeros beyond "0", or returns null. */
    fun parseIpv4(text: String): ByteArray? {
        val parts = text.split('.')
        if (parts.size != 4) return null
        val out = ByteArray(4)
        for ((i, p) in parts.withIndex()) {
            if (p.isEmpty() || p.length > 3 || !p.all { it in '0'..'9' }) return null
            if (p.length > 1 && p[0] == '0') return null // "010" is octal to some parsers: refuse
            val v = p.toInt()
            if (v > 255) return null
            out[i] = v.toByte()
        }
        return out
    }

    /**
     * Parses an IPv6 literal (RFC 4291 section 2.2 text forms, including "::" compression and a
     * trailing dotted-quad) or returns null. A zone ("%wlan0") is not accepted.
     */
    fun parseIpv6(text: String): ByteArray? {
        if (text.isEmpty() || text.length > 45 || text.contains('%')) return null
        val doubleColon = text.indexOf("::")
        if (doubleColon >= 0 && text.indexOf("::", doubleColon + 1) >= 0) return null
        val head: List<String>
        val tail: List<String>
        if (doubleColon >= 0) {
            val h = text.substring(0, doubleColon)
            val t = text.substring(doubleColon + 2)
            head = if (h.isEmpty()) emptyList() else h.split(':')
            tail = if (t.isEmpty()) emptyList() else t.split(':')
        } else {
            head = text.split(':')
            tail = emptyList()
        }
        val groups = ArrayList<Int>(8)
        val tailGroups = ArrayList<Int>(8)
        if (!parseGroups(head, groups, allowV4Last = tail.isEmpty() && doubleColon < 0)) return null
        if (!parseGroups(tail, tailGroups, allowV4Last = true)) return null
        val total = groups.size + tailGroups.size
        if (doubleColon >= 0) {
            if (total > 7) return null
            repeat(8 - total) { groups.add(0) }
        } else if (total != 8) {
            return null
        }
        groups.addAll(tailGroups)
        val out = ByteArray(16)
        for ((i, g) in groups.withIndex()) {
            out[2 * i] = (g shr 8).toByte()
            out[2 * i + 1] = g.toByte()
        }
        return out
    }

    private fun parseGroups(parts: List<String>, out: MutableList<Int>, allowV4Last: Boolean): Boolean {
        for ((i, p) in parts.withIndex()) {
            if (i == parts.lastIndex && allowV4Last && p.contains('.')) {
                val v4 = parseIpv4(p) ?: return false
                out.add(((v4[0].toInt() and 0xff) shl 8) or (v4[1].toInt() and 0xff))
                out.add(((v4[2].toInt() and 0xff) shl 8) or (v4[3].toInt() and 0xff))
                continue
            }
            if (p.isEmpty() || p.length > 4) return false
            val v = p.toIntOrNull(16) ?: return false
            if (p.any { it == '+' || it == '-' }) return false
            out.add(v)
        }
        return true
    }

    /** RFC 5952 canonical text: lower case, longest run (>= 2) of zero groups as "::", first on ties. */
    fun formatIpv6(addr: ByteArray): String {
        require(addr.size == 16) { "IPv6 address must be 16 bytes" }
        val g = IntArray(8) { ((addr[2 * it].toInt() and 0xff) shl 8) or (addr[2 * it + 1].toInt() and 0xff) }
        var bestStart = -1
        var bestLen = 0
        var i = 0
        while (i < 8) {
            if (g[i] == 0) {
                var j = i
                while (j < 8 && g[j] == 0) j++
                if (j - i > bestLen) {
                    bestStart = i
                    bestLen = j - i
                }
                i = j
            } else {
                i++
            }
        }
        if (bestLen < 2) bestStart = -1
        val sb = StringBuilder()
        i = 0
        while (i < 8) {
            if (i == bestStart) {
                sb.append("::")
                i += bestLen
                continue
            }
            if (sb.isNotEmpty() && !sb.endsWith(":")) sb.append(':')
            sb.append(Integer.toHexString(g[i]))
            i++
        }
        return sb.toString()
    }

    fun formatIpv4(addr: ByteArray): String {
        require(addr.size == 4) { "IPv4 address must be 4 bytes" }
        return addr.joinToString(".") { (it.toInt() and 0xff).toString() }
    }

    /** Strips a "/len" suffix and IPv6 brackets, as found in link addresses and resolver lists. */
    fun hostPart(text: String): String = text.trim().substringBefore('/').removePrefix("[").removeSuffix("]")
}
