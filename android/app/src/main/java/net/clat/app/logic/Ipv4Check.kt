package net.clat.app.logic

/**
 * The "IPv4 check": a TCP connect to an IPv4 literal, which on an IPv6-only network can only
 * succeed through a CLAT. A literal, never a name: a name would need DNS, and DNS64 answers with
 * an IPv6 address that bypasses the CLAT, so the check would prove nothing. Parsing and the
 * wording of the result live here; the connect itself is in the Android glue.
 */
object Ipv4Check {
    /** 1.1.1.1:443 by default: answers TCP on 443 worldwide; the user may choose another target. */
    const val DEFAULT_TARGET = "1.1.1.1:443"
    const val TIMEOUT_MS = 5_000

    data class Target(val address: ByteArray, val port: Int) {
        val text: String get() = "${IpAddresses.formatIpv4(address)}:$port"
        override fun equals(other: Any?) = other is Target && other.address.contentEquals(address) && other.port == port
        override fun hashCode() = address.contentHashCode() * 31 + port
    }

    /** "a.b.c.d:port" (port defaults to 443). */
    fun parseTarget(text: String): Result<Target> {
        val t = text.trim()
        val colon = t.lastIndexOf(':')
        val host = if (colon >= 0) t.substring(0, colon) else t
        val port = if (colon >= 0) t.substring(colon + 1).toIntOrNull() else 443
        if (port == null || port !in 1..65535) {
            return Result.failure(IllegalArgumentException("\"$text\": the port must be 1..65535"))
        }
        val addr = runCatching { IpAddresses.parseIpv4(host) }.getOrNull()
            ?: return Result.failure(IllegalArgumentException("\"$text\" is not an IPv4 address (a.b.c.d or a.b.c.d:port; no names, see help)"))
        return Result.success(Target(addr, port))
    }

    sealed interface Outcome {
        val millis: Long
        /** [localAddress]: the source the kernel chose, which shows the path taken. */
        data class Connected(override val millis: Long, val localAddress: String?) : Outcome
        data class Failed(override val millis: Long, val error: String) : Outcome
        data class TimedOut(override val millis: Long) : Outcome
    }

    /**
     * One line for the UI and the log. A source in 192.0.0.0/29 is this CLAT's (or Android's own
     * clatd's) address; any other source means the network has IPv4 of its own. [passThrough]:
     * the running VPN passes IPv4 through natively (always-on VPN, [RunTarget.ipv4Native]), so its
     * address says "through this VPN", not "through the NAT64".
     */
    fun describe(target: Target, outcome: Outcome, clatRunning: Boolean, passThrough: Boolean = false): String = when (outcome) {
        is Outcome.Connected -> {
            val src = outcome.localAddress
            val path = when {
                src == null -> ""
                inClatRange(src) && clatRunning && passThrough -> " from $src (through this app's VPN, passed through to the network's IPv4)"
                inClatRange(src) -> if (clatRunning) " from $src (through a CLAT)" else " from $src (through Android's own CLAT)"
                else -> " from $src (native IPv4, not through a CLAT)"
            }
            "IPv4 check: connected to ${target.text} in ${outcome.millis} ms$path"
        }
        is Outcome.TimedOut -> "IPv4 check: no answer from ${target.text} within ${outcome.millis} ms" + when {
            !clatRunning -> " (the CLAT is not running)"
            passThrough -> " (the VPN passes IPv4 through: does the network's IPv4 reach it?)"
            else -> " (the CLAT runs: is the NAT64 prefix right?)"
        }
        is Outcome.Failed -> "IPv4 check: ${target.text} failed after ${outcome.millis} ms: ${outcome.error}" +
            if (clatRunning) "" else " (the CLAT is not running)"
    }

    private fun inClatRange(a: String): Boolean {
        val b = runCatching { IpAddresses.parseIpv4(a) }.getOrNull() ?: return false
        return b[0] == 192.toByte() && b[1] == 0.toByte() && b[2] == 0.toByte() && (b[3].toInt() and 0xf8) == 0
    }
}
