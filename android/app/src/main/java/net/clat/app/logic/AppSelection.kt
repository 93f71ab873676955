package net.clat.app.logic

/**
 * The user's own per-app choice: every app through the CLAT, only the listed ones
 * (`addAllowedApplication`), or all but the listed ones (`addDisallowedApplication`).
 * Android's builder cannot mix the two lists, so one mode holds one list. Managed configuration
 * that names either list replaces this choice entirely ([ClatSettings.merge]).
 */
data class AppSelection(val mode: Mode = Mode.ALL, val packages: List<String> = emptyList()) {
    enum class Mode { ALL, ONLY, EXCEPT }

    val allowedApps: List<String> get() = if (mode == Mode.ONLY) packages else emptyList()
    val disallowedApps: List<String> get() = if (mode == Mode.EXCEPT) packages else emptyList()

    /** One line for the UI and the adb status. */
    fun describe(): String = when {
        // An empty list is no list: Android then routes every app through the VPN.
        mode == Mode.ALL || packages.isEmpty() -> "all apps"
        mode == Mode.ONLY -> "only ${packages.size} app(s): ${packages.joinToString(", ")}"
        else -> "all apps except ${packages.size}: ${packages.joinToString(", ")}"
    }

    companion object {
        val ALL = AppSelection()

        /**
         * Reads the stored form ([mode] name and comma-separated packages). Anything unreadable
         * becomes [ALL]: a damaged preference must not leave apps without IPv4 silently, and the
         * UI shows what is in force.
         */
        fun fromStored(mode: String?, packages: String?): AppSelection {
            val m = Mode.values().firstOrNull { it.name == mode } ?: return ALL
            val list = splitPackages(packages.orEmpty()).filter { PackageNames.isValid(it) }
            return if (m == Mode.ALL) ALL else AppSelection(m, list)
        }

        /** The selection a plan's lists (Android's builder takes one of them) amount to. */
        fun ofLists(allowed: List<String>, disallowed: List<String>): AppSelection = when {
            allowed.isNotEmpty() -> AppSelection(Mode.ONLY, allowed)
            disallowed.isNotEmpty() -> AppSelection(Mode.EXCEPT, disallowed)
            else -> ALL
        }

        /** Comma, semicolon or whitespace separated, as in the managed configuration. */
        fun splitPackages(text: String): List<String> =
            text.split(',', ';', ' ', '\n', '\t', '\r').map { it.trim() }.filter { it.isNotEmpty() }.distinct()
    }

    fun storedPackages(): String = packages.joinToString(",")
}
