package net.clat.app.logic

/** A launchable app as the picker shows it. */
data class AppEntry(val label: String, val packageName: String)

/**
 * The per-app picker's list: launcher apps (what the manifest's `<queries>` makes visible, no
 * QUERY_ALL_PACKAGES), one row per package, without this app (it always routes through its own
 * VPN, see [VpnConfigBuilder]), selected apps first so the current choice is visible at once,
 * then by label. Packages in the selection that are not visible (uninstalled, or without a
 * launcher activity) stay listed by name, so they can be deselected.
 */
object AppPicker {
    fun rows(apps: List<AppEntry>, selection: AppSelection, ownPackage: String, query: String = ""): List<AppEntry> {
        val byPackage = LinkedHashMap<String, AppEntry>()
        apps.filter { it.packageName != ownPackage }.forEach { byPackage.putIfAbsent(it.packageName, it) }
        selection.packages.filter { it != ownPackage && it !in byPackage }.forEach { byPackage[it] = AppEntry(it, it) }
        val q = query.trim().lowercase()
        val selected = selection.packages.toSet()
        return byPackage.values
            .filter { q.isEmpty() || q in it.label.lowercase() || q in it.packageName.lowercase() }
            .sortedWith(compareBy<AppEntry>({ it.packageName !in selected }, { it.label.lowercase() }, { it.packageName }))
    }

    /** The selection after the user ticked or unticked [packageName]; the mode is kept. */
    fun toggle(selection: AppSelection, packageName: String, checked: Boolean): AppSelection {
        val list = selection.packages.filter { it != packageName } + if (checked) listOf(packageName) else emptyList()
        return selection.copy(packages = list)
    }
}
