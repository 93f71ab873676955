package net.clat.app.logic

/**
 * Whether an installed or removed package makes the running TUN's app lists stale.
 *
 * Why: Vpn.java turns the allowed/disallowed package names into UID ranges once, at
 * establish() (Vpn.createUserAndRestrictedProfilesRanges -> getAppsUids, which skips names not
 * installed). An app installed later is not in the ranges: in allowed mode it bypasses the CLAT,
 * in disallowed mode it is captured although excluded. Only a new establish() re-reads the names.
 * An update keeps the UID (EXTRA_REPLACING), so it changes nothing.
 */
object AppListWatch {
    fun needsRebuild(plan: VpnPlan?, packageName: String?, replacing: Boolean): Boolean {
        if (plan == null || packageName.isNullOrEmpty() || replacing) return false
        return packageName in plan.allowedApps || packageName in plan.disallowedApps
    }
}
