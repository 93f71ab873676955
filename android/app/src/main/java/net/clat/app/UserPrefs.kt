package net.clat.app

import android.content.Context
import android.content.SharedPreferences
import net.clat.app.logic.AppSelection
import net.clat.app.logic.Ipv4ReportSettings

/**
 * The user's own choices (device-protected storage so that always-on and boot starts can read
 * them before the first unlock). Managed configuration overrides them (see SettingsResolver).
 */
class UserPrefs(context: Context) {
    private val prefs: SharedPreferences = storageContext(context).getSharedPreferences("clat", Context.MODE_PRIVATE)

    /** The user switched the CLAT on (UI, tile) and has not switched it off since. */
    var enabled: Boolean
        get() = prefs.getBoolean(KEY_ENABLED, false)
        set(v) = prefs.edit().putBoolean(KEY_ENABLED, v).apply()

    /** The user's prefix override, validated on entry; null or empty for automatic. */
    var prefixOverride: String?
        get() = prefs.getString(KEY_PREFIX, null)
        set(v) = prefs.edit().putString(KEY_PREFIX, v?.trim()?.ifEmpty { null }).apply()

    /** Run even when the network has native IPv4 or no IPv6 (developers, emulator tests). */
    var force: Boolean
        get() = prefs.getBoolean(KEY_FORCE, false)
        set(v) = prefs.edit().putBoolean(KEY_FORCE, v).apply()

    /** Keep IPv4 link-local, multicast and broadcast out of the CLAT (default on). */
    var excludeLocalTraffic: Boolean
        get() = prefs.getBoolean(KEY_EXCLUDE_LOCAL, true)
        set(v) = prefs.edit().putBoolean(KEY_EXCLUDE_LOCAL, v).apply()

    /** The user's per-app selection; ignored while managed configuration names app lists. */
    var appSelection: AppSelection
        get() = AppSelection.fromStored(prefs.getString(KEY_APPS_MODE, null), prefs.getString(KEY_APPS, null))
        set(v) = prefs.edit().putString(KEY_APPS_MODE, v.mode.name).putString(KEY_APPS, v.storedPackages()).apply()

    /**
     * Always-on VPN and lockdown as last known ([net.clat.app.logic.AlwaysOnState]): Android
     * answers only while the VPN is established, so a cold start begins from this.
     */
    var alwaysOnLastKnown: Pair<Boolean, Boolean>
        get() = prefs.getBoolean(KEY_ALWAYS_ON, false) to prefs.getBoolean(KEY_LOCKDOWN, false)
        set(v) = prefs.edit().putBoolean(KEY_ALWAYS_ON, v.first).putBoolean(KEY_LOCKDOWN, v.second).apply()

    /** Record the per-app IPv4 report (default on; it stays on the phone). */
    var ipv4Report: Boolean
        get() = prefs.getBoolean(KEY_IPV4_REPORT, true)
        set(v) = prefs.edit().putBoolean(KEY_IPV4_REPORT, v).apply()

    /** Days the IPv4 report keeps (Ipv4ReportSettings bounds it). */
    var ipv4ReportRetentionDays: Int
        get() = prefs.getInt(KEY_IPV4_REPORT_DAYS, Ipv4ReportSettings.RETENTION_DEFAULT_DAYS)
        set(v) = prefs.edit().putInt(KEY_IPV4_REPORT_DAYS, v).apply()

    private companion object {
        const val KEY_ALWAYS_ON = "always_on_last_known"
        const val KEY_LOCKDOWN = "lockdown_last_known"
        const val KEY_IPV4_REPORT = "ipv4_report"
        const val KEY_IPV4_REPORT_DAYS = "ipv4_report_retention_days"
        const val KEY_APPS_MODE = "apps_mode"
        const val KEY_APPS = "apps"
        const val KEY_EXCLUDE_LOCAL = "exclude_local_traffic"
        const val KEY_FORCE = "force"
        const val KEY_ENABLED = "enabled"
        const val KEY_PREFIX = "prefix_override"

        fun storageContext(c: Context): Context = c.createDeviceProtectedStorageContext() // minSdk 24
    }
}
