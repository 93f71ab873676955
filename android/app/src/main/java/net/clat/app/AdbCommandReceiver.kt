package net.clat.app

import android.app.Activity
import android.content.BroadcastReceiver
import android.content.Context
import android.content.Intent
import android.net.VpnService
import android.util.Log
import net.clat.app.logic.AdbCommand
import net.clat.app.logic.AdbCommandParser
import net.clat.app.logic.AdbParse

/**
 * The adb interface for app developers' emulator tests (commands in android/README.md):
 * start, stop, status, and the prefix, force flag and app lists, from `adb shell am broadcast`.
 *
 * Only the shell and the system may send these: the manifest guards the receiver with
 * android.permission.DUMP. Any other app could otherwise point the CLAT at a prefix of its
 * choosing and redirect every app's IPv4 traffic. DUMP is `signature|privileged|development`
 * (frameworks/base core/res/AndroidManifest.xml; protectionLevel 0x32 in the Android 15
 * framework manifest) and the shell holds it (frameworks/base packages/Shell/AndroidManifest.xml,
 * which guards its own BugreportReceiver the same way); a third-party app can get a development
 * permission only through `pm grant`, i.e. from adb again.
 *
 * Parsing and validation live in [AdbCommandParser]; this class copies the extras and applies
 * the result to [UserPrefs], then asks [ClatVpnService] to act, as the UI does. `am broadcast`
 * waits for the result and prints the result data, so a test script sees acceptance or the
 * reason for a rejection.
 */
class AdbCommandReceiver : BroadcastReceiver() {
    override fun onReceive(context: Context, intent: Intent) {
        val b = intent.extras
        @Suppress("DEPRECATION") // Bundle.get(String): the untyped getter is the point here.
        val extras: Map<String, Any?> = b?.keySet()?.associateWith { b.get(it) } ?: emptyMap()
        val (code, message) = when (val p = AdbCommandParser.parse(intent.action, extras)) {
            is AdbParse.Rejected -> RESULT_REJECTED to "rejected: ${p.message}"
            is AdbParse.Ok -> apply(context, p.command)
        }
        Log.i(TAG, message)
        resultCode = code
        resultData = message
    }

    private fun apply(context: Context, c: AdbCommand): Pair<Int, String> {
        if (c.action == AdbCommand.Action.STATUS) return Activity.RESULT_OK to status(context)
        if (c.action == AdbCommand.Action.STOP) {
            ClatVpnService.stop(context)
            return Activity.RESULT_OK to "stopping"
        }
        if (c.action == AdbCommand.Action.START && VpnService.prepare(context) != null) {
            return RESULT_REJECTED to "rejected: no VPN consent; run adb shell appops set ${context.packageName} ACTIVATE_VPN allow"
        }
        val prefs = UserPrefs(context)
        c.prefixOverride?.let { prefs.prefixOverride = it }
        c.force?.let { prefs.force = it }
        c.apps?.let { prefs.appSelection = it }
        c.excludeLocalTraffic?.let { prefs.excludeLocalTraffic = it }
        val start = c.action == AdbCommand.Action.START || prefs.enabled
        if (start) {
            try {
                // Allowed from a receiver: an app holding the ACTIVATE_VPN app op is exempt from
                // Android 12's background foreground-service start restriction (frameworks/base
                // services/core/java/com/android/server/am/ActiveServices.java,
                // shouldAllowFgsStartForegroundNoBindingCheckLocked: OP_ACTIVATE_VPN ->
                // REASON_OP_ACTIVATE_VPN).
                ClatVpnService.start(context)
            } catch (e: IllegalStateException) {
                return RESULT_REJECTED to "saved, but Android refused to start the service: ${e.message}"
            }
        }
        return Activity.RESULT_OK to c.describe() + if (start) " (applied)" else " (saved; the CLAT is off)"
    }

    private fun status(context: Context): String {
        val s = StatusBoard.status
        val prefs = UserPrefs(context)
        return listOf(
            "running=${s.running}",
            "reason=${s.reason}",
            "prefix=${s.prefix ?: "-"}" + (s.prefixSource?.let { " ($it)" } ?: ""),
            "enabled=${prefs.enabled}",
            "force=${prefs.force}",
            "prefix_override=${prefs.prefixOverride ?: "auto"}",
            "apps=${prefs.appSelection.describe()}",
        ).joinToString("; ")
    }

    private companion object {
        const val TAG = "AdbCommandReceiver"

        /** Activity.RESULT_FIRST_USER: `am broadcast` prints it as result=1. */
        const val RESULT_REJECTED = 1
    }
}
