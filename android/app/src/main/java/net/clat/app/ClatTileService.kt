package net.clat.app

import android.app.PendingIntent
import android.content.Intent
import android.graphics.drawable.Icon
import android.net.VpnService
import android.os.Build
import android.service.quicksettings.Tile
import android.service.quicksettings.TileService

/** Quick-settings tile: shows whether the CLAT runs (or that it cannot, without consent), toggles it. */
class ClatTileService : TileService() {
    private val listener: (ClatStatus) -> Unit = { update(it) }

    override fun onStartListening() {
        super.onStartListening()
        StatusBoard.listen(listener)
    }

    override fun onStopListening() {
        StatusBoard.unlisten(listener)
        super.onStopListening()
    }

    override fun onClick() {
        super.onClick()
        if (UserPrefs(this).enabled) {
            ClatVpnService.stop(this)
            return
        }
        if (VpnService.prepare(this) != null) {
            // Consent needs an activity: open the app, which asks and then starts.
            openApp()
            return
        }
        try {
            ClatVpnService.start(this)
        } catch (e: IllegalStateException) {
            // Android 12+ may refuse a foreground-service start from here
            // (ForegroundServiceStartNotAllowedException): the app's activity can start it.
            openApp()
        }
    }

    private fun openApp() {
        val i = Intent(this, MainActivity::class.java)
            .putExtra(MainActivity.EXTRA_START, true)
            .addFlags(Intent.FLAG_ACTIVITY_NEW_TASK)
        if (Build.VERSION.SDK_INT >= 34) {
            startActivityAndCollapse(PendingIntent.getActivity(this, 0, i, PendingIntent.FLAG_IMMUTABLE))
        } else {
            @Suppress("DEPRECATION")
            startActivityAndCollapse(i)
        }
    }

    private fun update(s: ClatStatus) {
        val tile = qsTile ?: return
        // No consent (or another app's VPN holds it): the tile cannot start the CLAT, so it says
        // so. SystemUI does not deliver clicks to an unavailable tile; a long press opens
        // MainActivity (its QS_TILE_PREFERENCES filter, developer.android.com/reference/android/
        // service/quicksettings/TileService#ACTION_QS_TILE_PREFERENCES), which asks for consent.
        val consent = VpnService.prepare(this) == null
        tile.state = when {
            !consent && !s.running -> Tile.STATE_UNAVAILABLE
            s.running -> Tile.STATE_ACTIVE
            UserPrefs(this).enabled -> Tile.STATE_ACTIVE // on, waiting for an IPv6-only network
            else -> Tile.STATE_INACTIVE
        }
        tile.label = "CLAT"
        if (Build.VERSION.SDK_INT >= 29) {
            tile.subtitle = when {
                s.running -> s.prefix
                !consent -> "VPN not allowed: long-press"
                else -> s.reason.take(40)
            }
        }
        tile.icon = Icon.createWithResource(this, Resources.icon(this))
        tile.updateTile()
    }
}
