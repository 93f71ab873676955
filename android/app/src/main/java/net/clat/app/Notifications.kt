package net.clat.app

import android.app.Notification
import android.app.NotificationChannel
import android.app.NotificationManager
import android.app.PendingIntent
import android.content.Context
import android.content.Intent
import android.os.Build
import net.clat.app.logic.Counters
import net.clat.app.logic.StatusText

/** The foreground notification: state, reason, prefix and live counters, a stop action. */
object Notifications {
    const val ID = 464
    private const val CHANNEL = "clat_status"

    fun build(context: Context, s: ClatStatus): Notification {
        val nm = context.getSystemService(Context.NOTIFICATION_SERVICE) as NotificationManager
        val builder = if (Build.VERSION.SDK_INT >= 26) {
            if (nm.getNotificationChannel(CHANNEL) == null) {
                // Low importance: always visible in the shade, never makes a sound.
                nm.createNotificationChannel(NotificationChannel(CHANNEL, "CLAT status", NotificationManager.IMPORTANCE_LOW))
            }
            Notification.Builder(context, CHANNEL)
        } else {
            @Suppress("DEPRECATION")
            Notification.Builder(context).setPriority(Notification.PRIORITY_LOW)
        }
        val title = StatusText.title(s.running, s.ipv4Native, s.prefix)
        val text = if (s.running) Counters.summary(s.counters).ifEmpty { s.reason } else s.reason
        val open = PendingIntent.getActivity(
            context, 0, Intent(context, MainActivity::class.java), PendingIntent.FLAG_IMMUTABLE or PendingIntent.FLAG_UPDATE_CURRENT,
        )
        val stop = PendingIntent.getService(
            context, 1, Intent(context, ClatVpnService::class.java).setAction(ClatVpnService.ACTION_STOP),
            PendingIntent.FLAG_IMMUTABLE or PendingIntent.FLAG_UPDATE_CURRENT,
        )
        @Suppress("DEPRECATION") // Notification.Action.Builder needs API 23 + Icon; this works from 24 on
        return builder
            .setSmallIcon(Resources.icon(context))
            .setContentTitle(title)
            .setContentText(text)
            .setStyle(Notification.BigTextStyle().bigText("${s.reason}\n$text"))
            .setOngoing(true)
            .setOnlyAlertOnce(true)
            .setShowWhen(false)
            .setContentIntent(open)
            .addAction(0, "Stop", stop)
            .build()
    }

    fun update(context: Context, s: ClatStatus) {
        val nm = context.getSystemService(Context.NOTIFICATION_SERVICE) as NotificationManager
        nm.notify(ID, build(context, s))
    }
}

/**
 * Resources looked up by name: this code is also compiled without the Android Gradle Plugin
 * (android/jvm), where no generated R class exists. Only the icon needs this.
 */
object Resources {
    fun icon(context: Context): Int {
        val id = context.resources.getIdentifier("ic_clat", "drawable", context.packageName)
        return if (id != 0) id else android.R.drawable.stat_sys_upload
    }
}
