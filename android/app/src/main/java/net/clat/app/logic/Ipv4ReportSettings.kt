package net.clat.app.logic

/**
 * Whether the per-app IPv4 report records, and how long it keeps days. Managed configuration
 * (`ipv4_report`, `ipv4_report_retention_days`) wins over the user's setting.
 *
 * @property retentionDays local days kept, today included, [RETENTION_MIN_DAYS]..[RETENTION_MAX_DAYS].
 */
data class Ipv4ReportSettings(
    val enabled: Boolean = true,
    val retentionDays: Int = RETENTION_DEFAULT_DAYS,
    /** The admin set [enabled] (the user's switch is shown but cannot change it). */
    val enabledManaged: Boolean = false,
    val retentionManaged: Boolean = false,
) {
    companion object {
        const val RETENTION_MIN_DAYS = 1
        const val RETENTION_MAX_DAYS = 365
        const val RETENTION_DEFAULT_DAYS = 30

        fun merge(managed: ManagedConfig, userEnabled: Boolean, userRetentionDays: Int): Ipv4ReportSettings =
            Ipv4ReportSettings(
                enabled = managed.ipv4Report ?: userEnabled,
                retentionDays = managed.ipv4ReportRetentionDays
                    ?: userRetentionDays.coerceIn(RETENTION_MIN_DAYS, RETENTION_MAX_DAYS),
                enabledManaged = managed.ipv4Report != null,
                retentionManaged = managed.ipv4ReportRetentionDays != null,
            )
    }
}
