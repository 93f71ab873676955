package net.clat.app

import android.content.BroadcastReceiver
import android.content.Context
import android.content.Intent
import android.net.VpnService
import android.util.Log

/**
 * Starts the CLAT after boot or an app update when managed configuration asks for it
 * (always_on_start) or the user had it on. Android's own always-on VPN needs no receiver: the
 * system starts the service itself; this covers devices where always-on is not set.
 */
class BootReceiver : BroadcastReceiver() {
    override fun onReceive(context: Context, intent: Intent) {
        val action = intent.action
        if (action != Intent.ACTION_BOOT_COMPLETED && action != Intent.ACTION_MY_PACKAGE_REPLACED) return
        val managed = ManagedConfigReader.read(context).config
        val wanted = managed.alwaysOnStart == true || UserPrefs(context).enabled
        if (!wanted) return
        if (VpnService.prepare(context) != null) {
            Log.w("BootReceiver", "start at boot skipped: VPN consent not granted yet")
            return
        }
        try {
            // Both broadcasts are exemptions from Android 12's background-start restriction on
            // foreground services ("the device reboots and receives ACTION_BOOT_COMPLETED,
            // ACTION_LOCKED_BOOT_COMPLETED or ACTION_MY_PACKAGE_REPLACED in a broadcast receiver":
            // developer.android.com/develop/background-work/services/fgs/restrictions-bg-start,
            // "Exemptions from background start restrictions"). Android 15's BOOT_COMPLETED limits
            // name other types (dataSync, camera, mediaPlayback, phoneCall, mediaProjection,
            // microphone), not systemExempted or specialUse. The catch stays for what is not
            // exempt: a ROM that narrows the exemptions, or a start after the exemption window
            // (ForegroundServiceStartNotAllowedException is an IllegalStateException).
            ClatVpnService.start(context)
        } catch (e: IllegalStateException) {
            Log.w("BootReceiver", "could not start the CLAT: ${e.message}")
        }
    }
}
