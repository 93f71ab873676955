package net.clat.app.logic

/**
 * Managed configuration (Android app restrictions) as typed values. Null means "not managed":
 * the user's choice or the default applies.
 */
data class ManagedConfig(
    val allowedApps: List<String>? = null,
    val disallowedApps: List<String>? = null,
    val prefixOverride: Nat64Prefix? = null,
    val mtu: Int? = null,
    val alwaysOnStart: Boolean? = null,
    val udpTimeoutSec: Int? = null,
    val maxFlows: Int? = null,
    val excludeLocalTraffic: Boolean? = null,
    val dnsThroughVpn: Boolean? = null,
    /** Record the per-app IPv4 report ([Ipv4ReportSettings]). */
    val ipv4Report: Boolean? = null,
    val ipv4ReportRetentionDays: Int? = null,
) {
    /** The admin fixed the per-app lists: the user's own selection is not offered. */
    val managesApps: Boolean get() = allowedApps != null || disallowedApps != null
}

/** One rejected value, with the key so the admin can find it. */
data class ConfigError(val key: String, val message: String) {
    override fun toString(): String = "$key: $message"
}

data class ParsedManagedConfig(val config: ManagedConfig, val errors: List<ConfigError>) {
    /**
     * Errors in the app lists or the prefix make the CLAT refuse to start: silently falling back
     * would route apps the admin excluded, or send traffic to a prefix the admin did not choose.
     * Other rejected values fall back to the default and are only reported.
     */
    val blockingErrors: List<ConfigError>
        get() = errors.filter { it.key in ManagedConfigParser.BLOCKING_KEYS }
}

/**
 * Parses the restrictions bundle (as a Map, so it can be tested without Android). Keys are the
 * ones declared in res/xml/app_restrictions.xml. Values arrive typed as declared there (String,
 * Int, Boolean), but EMMs differ, so numbers and booleans given as strings are accepted too, and
 * app lists may be a string (comma, semicolon, whitespace or newline separated) or a string array.
 */
object ManagedConfigParser {
    const val KEY_ALLOWED_APPS = "allowed_apps"
    const val KEY_DISALLOWED_APPS = "disallowed_apps"
    const val KEY_NAT64_PREFIX = "nat64_prefix"
    const val KEY_MTU = "mtu"
    const val KEY_ALWAYS_ON_START = "always_on_start"
    const val KEY_UDP_TIMEOUT = "udp_timeout_sec"
    const val KEY_MAX_FLOWS = "max_flows"
    const val KEY_EXCLUDE_LOCAL_TRAFFIC = "exclude_local_traffic"
    const val KEY_DNS_THROUGH_VPN = "dns_through_vpn"
    const val KEY_IPV4_REPORT = "ipv4_report"
    const val KEY_IPV4_REPORT_RETENTION_DAYS = "ipv4_report_retention_days"

    val KNOWN_KEYS: Set<String> = setOf(
        KEY_ALLOWED_APPS, KEY_DISALLOWED_APPS, KEY_NAT64_PREFIX, KEY_MTU,
        KEY_ALWAYS_ON_START, KEY_UDP_TIMEOUT, KEY_MAX_FLOWS, KEY_EXCLUDE_LOCAL_TRAFFIC, KEY_DNS_THROUGH_VPN,
        KEY_IPV4_REPORT, KEY_IPV4_REPORT_RETENTION_DAYS,
    )
    val BLOCKING_KEYS: Set<String> = setOf(KEY_ALLOWED_APPS, KEY_DISALLOWED_APPS, KEY_NAT64_PREFIX)

    fun parse(values: Map<String, Any?>): ParsedManagedConfig {
        val errors = ArrayList<ConfigError>()
        // Unknown keys are ignored: a newer EMM profile may carry keys of a newer app version.
        var allowed = appList(values, KEY_ALLOWED_APPS, errors)
        var disallowed = appList(values, KEY_DISALLOWED_APPS, errors)
        if (!allowed.isNullOrEmpty() && !disallowed.isNullOrEmpty()) {
            errors.add(ConfigError(KEY_DISALLOWED_APPS, "cannot be combined with $KEY_ALLOWED_APPS; set only one"))
            allowed = null
            disallowed = null
        }
        val prefix = text(values, KEY_NAT64_PREFIX, errors)?.let { t ->
            Nat64Prefix.parse(t).fold({ it }, { errors.add(ConfigError(KEY_NAT64_PREFIX, it.message ?: "invalid")); null })
        }
        return ParsedManagedConfig(
            ManagedConfig(
                allowedApps = allowed,
                disallowedApps = disallowed,
                prefixOverride = prefix,
                mtu = int(values, KEY_MTU, Limits.MTU_MIN, Limits.MTU_MAX, errors),
                alwaysOnStart = bool(values, KEY_ALWAYS_ON_START, errors),
                udpTimeoutSec = int(values, KEY_UDP_TIMEOUT, Limits.UDP_TIMEOUT_MIN_SEC, Limits.UDP_TIMEOUT_MAX_SEC, errors),
                maxFlows = int(values, KEY_MAX_FLOWS, Limits.MAX_FLOWS_MIN, Limits.MAX_FLOWS_MAX, errors),
                excludeLocalTraffic = bool(values, KEY_EXCLUDE_LOCAL_TRAFFIC, errors),
                dnsThroughVpn = bool(values, KEY_DNS_THROUGH_VPN, errors),
                ipv4Report = bool(values, KEY_IPV4_REPORT, errors),
                ipv4ReportRetentionDays = int(
                    values, KEY_IPV4_REPORT_RETENTION_DAYS,
                    Ipv4ReportSettings.RETENTION_MIN_DAYS, Ipv4ReportSettings.RETENTION_MAX_DAYS, errors,
                ),
            ),
            errors,
        )
    }

    /** An empty string means "not set" (restriction entries with an empty default). */
    private fun text(values: Map<String, Any?>, key: String, errors: MutableList<ConfigError>): String? =
        when (val v = values[key]) {
            null -> null
            is String -> v.trim().ifEmpty { null }
            else -> {
                errors.add(ConfigError(key, "expected text, got ${typeName(v)}"))
                null
            }
        }

    private fun int(values: Map<String, Any?>, key: String, min: Int, max: Int, errors: MutableList<ConfigError>): Int? {
        val raw = values[key] ?: return null
        val n: Long = when (raw) {
            is Int -> raw.toLong()
            is Long -> raw
            is Short -> raw.toLong()
            is String -> raw.trim().ifEmpty { return null }.toLongOrNull() ?: run {
                errors.add(ConfigError(key, "\"$raw\" is not a whole number"))
                return null
            }
            else -> {
                errors.add(ConfigError(key, "expected a number, got ${typeName(raw)}"))
                return null
            }
        }
        if (n < min || n > max) {
            errors.add(ConfigError(key, "$n is outside $min..$max"))
            return null
        }
        return n.toInt()
    }

    private fun bool(values: Map<String, Any?>, key: String, errors: MutableList<ConfigError>): Boolean? =
        when (val v = values[key]) {
            null -> null
            is Boolean -> v
            is String -> when (v.trim().lowercase()) {
                "" -> null
                "true", "1", "yes" -> true
                "false", "0", "no" -> false
                else -> {
                    errors.add(ConfigError(key, "\"$v\" is not true or false"))
                    null
                }
            }
            else -> {
                errors.add(ConfigError(key, "expected true or false, got ${typeName(v)}"))
                null
            }
        }

    private fun appList(values: Map<String, Any?>, key: String, errors: MutableList<ConfigError>): List<String>? {
        val raw = values[key] ?: return null
        val items: List<String> = when (raw) {
            is String -> raw.split(',', ';', ' ', '\n', '\t', '\r')
            is Array<*> -> raw.map { it?.toString() ?: "" }
            is Collection<*> -> raw.map { it?.toString() ?: "" }
            else -> {
                errors.add(ConfigError(key, "expected a list of package names, got ${typeName(raw)}"))
                return null
            }
        }.map { it.trim() }.filter { it.isNotEmpty() }.distinct()
        val bad = items.filterNot { PackageNames.isValid(it) }
        if (bad.isNotEmpty()) {
            errors.add(ConfigError(key, "not valid package names: ${bad.joinToString(", ")}"))
            return null
        }
        return items.ifEmpty { null }
    }

    private fun typeName(v: Any): String = v::class.java.simpleName
}
