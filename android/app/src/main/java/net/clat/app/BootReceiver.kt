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
            ClatVpnService.start(context)
        } catch (e: IllegalStateException) {
            // MY_PACKAGE_REPLACED is not exempt from Android 12's background-start limits.
            Log.w("BootReceiver", "could not start the CLAT: ${e.message}")
        }
    }
}
