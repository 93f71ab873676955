package net.clat.app.logic

/**
 * A command sent from `adb shell am broadcast` to [net.clat.app.AdbCommandReceiver], for app
 * developers who test their apps on an IPv6-only emulator network. Parsed here, without Android
 * types, so that every rejection is JVM-tested; the receiver only copies the intent's extras into
 * a map and applies the result.
 *
 * Fields left null are not changed. [prefixOverride] is "" for "automatic".
 */
data class AdbCommand(
    val action: Action,
    val prefixOverride: String? = null,
    val force: Boolean? = null,
    val apps: AppSelection? = null,
    val excludeLocalTraffic: Boolean? = null,
) {
    enum class Action { START, STOP, CONFIGURE, STATUS }

    /** What changed, for the broadcast's result line. */
    fun describe(): String {
        val parts = ArrayList<String>()
        prefixOverride?.let { parts.add(if (it.isEmpty()) "prefix automatic" else "prefix $it") }
        force?.let { parts.add("force $it") }
        apps?.let { parts.add("apps: ${it.describe()}") }
        excludeLocalTraffic?.let { parts.add("exclude_local $it") }
        return (listOf(action.name.lowercase()) + parts).joinToString("; ")
    }
}

sealed interface AdbParse {
    data class Ok(val command: AdbCommand) : AdbParse
    data class Rejected(val message: String) : AdbParse
}

object AdbCommandParser {
    const val ACTION_PREFIX = "net.clat.app.adb."
    const val EXTRA_PREFIX = "prefix"
    const val EXTRA_FORCE = "force"
    const val EXTRA_ALLOWED_APPS = "allowed_apps"
    const val EXTRA_DISALLOWED_APPS = "disallowed_apps"
    const val EXTRA_EXCLUDE_LOCAL = "exclude_local"

    /** The value of an app list extra that means "every app" (not a valid package name). */
    const val ALL_APPS = "all"

    /** Words that mean "no override, find the prefix automatically". */
    private val AUTOMATIC = setOf("", "auto", "automatic", "none")
    private val KNOWN = setOf(EXTRA_PREFIX, EXTRA_FORCE, EXTRA_ALLOWED_APPS, EXTRA_DISALLOWED_APPS, EXTRA_EXCLUDE_LOCAL)

    /**
     * [action] is the intent's action, [extras] its extras as `am` typed them (`--es` gives a
     * String, `--ez` a Boolean). Nothing is applied unless everything is valid: a half-applied
     * command would leave a test device in a state nobody asked for. Unknown extras are rejected,
     * so that a misspelt `--es prefx ...` does not silently run with the old prefix.
     */
    fun parse(action: String?, extras: Map<String, Any?>): AdbParse {
        val name = action?.removePrefix(ACTION_PREFIX)
        val act = AdbCommand.Action.values().firstOrNull { action?.startsWith(ACTION_PREFIX) == true && it.name == name }
            ?: return AdbParse.Rejected(
                "unknown action \"$action\"; use one of " +
                    AdbCommand.Action.values().joinToString(", ") { ACTION_PREFIX + it.name },
            )
        val unknown = extras.keys.filter { it !in KNOWN }.sorted()
        if (unknown.isNotEmpty()) {
            return AdbParse.Rejected("unknown extra(s) ${unknown.joinToString(", ")}; known: ${KNOWN.sorted().joinToString(", ")}")
        }
        if (act == AdbCommand.Action.STOP || act == AdbCommand.Action.STATUS) {
            if (extras.isNotEmpty()) return AdbParse.Rejected("${act.name} takes no extras; use CONFIGURE or START to change settings")
            return AdbParse.Ok(AdbCommand(act))
        }
        val prefix = when (val v = extras[EXTRA_PREFIX]) {
            null -> null
            !is String -> return AdbParse.Rejected("$EXTRA_PREFIX must be text (--es $EXTRA_PREFIX 64:ff9b::/96)")
            else -> if (v.trim().lowercase() in AUTOMATIC) {
                ""
            } else {
                Nat64Prefix.parse(v.trim()).fold(
                    { it.toString() },
                    { return AdbParse.Rejected("$EXTRA_PREFIX \"$v\" rejected: ${it.message}") },
                )
            }
        }
        val force = bool(extras, EXTRA_FORCE).getOrElse { return AdbParse.Rejected(it.message!!) }
        val excludeLocal = bool(extras, EXTRA_EXCLUDE_LOCAL).getOrElse { return AdbParse.Rejected(it.message!!) }
        val allowed = appList(extras, EXTRA_ALLOWED_APPS).getOrElse { return AdbParse.Rejected(it.message!!) }
        val disallowed = appList(extras, EXTRA_DISALLOWED_APPS).getOrElse { return AdbParse.Rejected(it.message!!) }
        if (!allowed.isNullOrEmpty() && !disallowed.isNullOrEmpty()) {
            return AdbParse.Rejected(
                "$EXTRA_ALLOWED_APPS and $EXTRA_DISALLOWED_APPS cannot be combined (Android's VPN builder refuses it); set only one",
            )
        }
        // Either list given replaces the selection; an empty one means all apps again.
        val apps = when {
            !allowed.isNullOrEmpty() -> AppSelection(AppSelection.Mode.ONLY, allowed)
            !disallowed.isNullOrEmpty() -> AppSelection(AppSelection.Mode.EXCEPT, disallowed)
            allowed != null || disallowed != null -> AppSelection.ALL
            else -> null
        }
        return AdbParse.Ok(AdbCommand(act, prefix, force, apps, excludeLocal))
    }

    private fun bool(extras: Map<String, Any?>, key: String): Result<Boolean?> = when (val v = extras[key]) {
        null -> Result.success(null)
        is Boolean -> Result.success(v)
        is String -> when (v.trim().lowercase()) {
            "true", "1", "yes", "on" -> Result.success(true)
            "false", "0", "no", "off" -> Result.success(false)
            else -> Result.failure(IllegalArgumentException("$key \"$v\" is not true or false (--ez $key true)"))
        }
        else -> Result.failure(IllegalArgumentException("$key must be true or false (--ez $key true)"))
    }

    private fun appList(extras: Map<String, Any?>, key: String): Result<List<String>?> {
        val v = extras[key] ?: return Result.success(null)
        val items = when (v) {
            // "all": no list, every app (an empty argument does not survive `adb shell` quoting).
            is String -> if (v.trim().lowercase() == ALL_APPS) emptyList() else AppSelection.splitPackages(v)
            is Array<*> -> v.mapNotNull { it?.toString()?.trim() }.filter { it.isNotEmpty() }.distinct()
            else -> return Result.failure(IllegalArgumentException("$key must be comma-separated package names (--es $key com.example.app)"))
        }
        val bad = items.filterNot { PackageNames.isValid(it) }
        if (bad.isNotEmpty()) {
            return Result.failure(IllegalArgumentException("$key: not valid package names: ${bad.joinToString(", ")}"))
        }
        return Result.success(items)
    }
}
