package net.clat.app.logic

import net.clat.core.DiscoveredPrefix

/** Where a NAT64 prefix came from, in order of precedence (docs/ARCHITECTURE.md, "Prefix discovery"). */
enum class PrefixSource(val label: String) {
    /** Managed configuration or the user's override: an explicit choice beats any discovery. */
    CONFIG("configured"),

    /**
     * The platform's prefix, `LinkProperties.getNat64Prefix()` (Android 11+). Named after PREF64,
     * but not necessarily PREF64: ConnectivityService takes the RA's PREF64 option (RFC 8781) when
     * there is one and otherwise the prefix its resolver found by DNS64 discovery (RFC 7050, which
     * assumes /96); Nat464Xlat.selectNat64Prefix in packages/modules/Connectivity. The
     * label says so rather than claim an RA.
     */
    PREF64("Android (Router Advertisement PREF64 or DNS64 discovery)"),

    /** AAAA for ipv4only.arpa through the network's resolvers (RFC 7050 with RFC 8880). */
    RFC7050("DNS discovery (RFC 7050)"),
}

/** The prefix candidates known for one network at one moment. */
data class PrefixCandidates(
    val configured: Nat64Prefix? = null,
    val pref64: Nat64Prefix? = null,
    /** Every distinct prefix RFC 7050 discovery found, in answer order. */
    val rfc7050: List<Nat64Prefix> = emptyList(),
)

data class SelectedPrefix(
    val prefix: Nat64Prefix,
    val source: PrefixSource,
    /** Other prefixes discovery found that were not chosen (shown in the UI, for diagnosis). */
    val alternatives: List<Nat64Prefix> = emptyList(),
) {
    override fun toString(): String = "$prefix (${source.label})"
}

/**
 * Chooses the NAT64 prefix: explicit configuration first, then the platform's (PREF64 or its own
 * DNS64 discovery), then the app's RFC 7050 discovery.
 *
 * Why this order: an administrator who configures a prefix knows something the network does not
 * say (or says wrongly); PREF64 is authenticated by the same trust as the default route and needs
 * no DNS; RFC 7050 depends on the resolver (and breaks with DNSSEC-validating or encrypted DNS).
 * Among several RFC 7050 answers the first is used (answer order, RFC 7050 section 3) and the rest
 * are kept as alternatives, unlike Android's own resolver which also forces /96.
 */
object PrefixSelector {
    fun select(c: PrefixCandidates): SelectedPrefix? {
        c.configured?.let { return SelectedPrefix(it, PrefixSource.CONFIG) }
        c.pref64?.let { return SelectedPrefix(it, PrefixSource.PREF64) }
        val distinct = c.rfc7050.distinct()
        val first = distinct.firstOrNull() ?: return null
        return SelectedPrefix(first, PrefixSource.RFC7050, distinct.drop(1))
    }

    /** True when discovery over DNS is still worth running: nothing better is known. */
    fun needsDiscovery(c: PrefixCandidates): Boolean = c.configured == null && c.pref64 == null

    /**
     * The prefixes the core's RFC 7050 discovery found, as [Nat64Prefix] (distinct, in the
     * answer's order). The core already checked them; one this app's rules refuse anyway is
     * returned as an error, never thrown.
     */
    fun parseDiscovered(entries: List<DiscoveredPrefix>): Pair<List<Nat64Prefix>, List<String>> {
        val ok = ArrayList<Nat64Prefix>()
        val bad = ArrayList<String>()
        for (e in entries) {
            Nat64Prefix.parse(e.prefix).fold(
                onSuccess = { if (it !in ok) ok.add(it) },
                onFailure = { bad.add(it.message ?: e.prefix) },
            )
        }
        return ok to bad
    }
}
