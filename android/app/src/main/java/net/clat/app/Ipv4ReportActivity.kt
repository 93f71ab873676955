package net.clat.app

import android.app.Activity
import android.content.Intent
import android.graphics.Typeface
import android.os.Build
import android.os.Bundle
import android.text.InputType
import android.view.View
import android.widget.Button
import android.widget.CheckBox
import android.widget.EditText
import android.widget.LinearLayout
import android.widget.ScrollView
import android.widget.TextView
import net.clat.app.logic.AppUsage
import net.clat.app.logic.Ipv4ReportExport
import net.clat.app.logic.Ipv4ReportSettings
import net.clat.app.logic.Ipv4ReportText
import net.clat.app.logic.ReportWindow

/**
 * "Which apps used IPv4": the apps (today / 7 days) with details on tap, JSON and CSV export
 * through ACTION_SEND, and the recording switch and retention. Views in code like MainActivity;
 * texts from [Ipv4ReportText], export formats from [Ipv4ReportExport].
 *
 * Export is EXTRA_TEXT, not a file: a file needs a content provider (FileProvider is AndroidX),
 * while text reaches any share target with no provider and no permission grant. The bounded report
 * (64 destinations and 64 names per app and day) keeps it small; above [MAX_SHARE_CHARS] the
 * export refuses with the size instead of risking the binder's ~1 MB transaction limit.
 */
class Ipv4ReportActivity : Activity() {
    private var window = ReportWindow.TODAY
    private lateinit var status: TextView
    private lateinit var list: LinearLayout
    private lateinit var message: TextView
    private var pad = 0

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        pad = (16 * resources.displayMetrics.density).toInt()
        val col = LinearLayout(this).apply {
            orientation = LinearLayout.VERTICAL
            setPadding(pad, pad, pad, pad)
        }
        col.addView(TextView(this).apply {
            text = "Apps that used IPv4"
            textSize = 22f
            setTypeface(typeface, Typeface.BOLD)
        })
        status = TextView(this).apply { textSize = 14f }
        col.addView(status)
        val windows = LinearLayout(this).apply { orientation = LinearLayout.HORIZONTAL }
        for (w in ReportWindow.values()) {
            windows.addView(Button(this).apply { text = w.label; setOnClickListener { window = w; refresh() } })
        }
        col.addView(windows)
        list = LinearLayout(this).apply { orientation = LinearLayout.VERTICAL }
        col.addView(list)
        val exports = LinearLayout(this).apply { orientation = LinearLayout.HORIZONTAL }
        exports.addView(Button(this).apply { text = "Export JSON"; setOnClickListener { export(json = true) } })
        exports.addView(Button(this).apply { text = "Export CSV"; setOnClickListener { export(json = false) } })
        col.addView(exports)
        message = TextView(this).apply { textSize = 14f }
        col.addView(message)

        val settings = Ipv4Report.settings(this)
        col.addView(CheckBox(this).apply {
            text = "Record which apps use IPv4 (kept on this phone)"
            isChecked = settings.enabled
            isEnabled = !settings.enabledManaged
            setOnCheckedChangeListener { _, on ->
                UserPrefs(this@Ipv4ReportActivity).ipv4Report = on
                Ipv4Report.refreshSettings(this@Ipv4ReportActivity)
                refresh()
            }
        })
        val days = EditText(this).apply {
            inputType = InputType.TYPE_CLASS_NUMBER
            setText(settings.retentionDays.toString())
            isEnabled = !settings.retentionManaged
        }
        col.addView(days)
        col.addView(Button(this).apply {
            text = "Keep this many days"
            isEnabled = !settings.retentionManaged
            setOnClickListener { saveRetention(days.text.toString()) }
        })
        col.addView(Button(this).apply { text = "Clear report"; setOnClickListener { clear() } })
        setContentView(ScrollView(this).apply { addView(col) })
    }

    override fun onStart() {
        super.onStart()
        Ipv4Report.refreshSettings(this)
        refresh()
    }

    override fun onStop() {
        Ipv4Report.saveInBackground(this)
        super.onStop()
    }

    private fun usage(): List<AppUsage> = Ipv4Report.get(this).store.usage(window, System.currentTimeMillis())

    private fun refresh() {
        val recorder = Ipv4Report.get(this)
        status.text = listOfNotNull(
            Ipv4ReportText.status(Ipv4Report.settings(this), Build.VERSION.SDK_INT >= 29),
            "Window: ${window.label}",
            recorder.storageError,
        ).joinToString("\n")
        list.removeAllViews()
        val apps = usage()
        if (apps.isEmpty()) {
            list.addView(TextView(this).apply { text = Ipv4ReportText.EMPTY; textSize = 16f })
            list.addView(TextView(this).apply { text = Ipv4ReportText.NOT_YET; textSize = 14f })
            return
        }
        for (a in apps) {
            val details = TextView(this).apply {
                text = Ipv4ReportText.details(a)
                textSize = 13f
                visibility = View.GONE
                setPadding(pad, 0, 0, pad / 2)
            }
            list.addView(TextView(this).apply {
                text = Ipv4ReportText.summary(a)
                textSize = 16f
                setPadding(0, pad / 4, 0, pad / 4)
                setOnClickListener { details.visibility = if (details.visibility == View.GONE) View.VISIBLE else View.GONE }
            })
            list.addView(details)
        }
    }

    private fun saveRetention(text: String) {
        val n = text.trim().toIntOrNull()
        if (n == null || n !in Ipv4ReportSettings.RETENTION_MIN_DAYS..Ipv4ReportSettings.RETENTION_MAX_DAYS) {
            message.text = "Keep ${Ipv4ReportSettings.RETENTION_MIN_DAYS} to ${Ipv4ReportSettings.RETENTION_MAX_DAYS} days"
            return
        }
        UserPrefs(this).ipv4ReportRetentionDays = n
        Ipv4Report.refreshSettings(this)
        Ipv4Report.get(this).store.expire(System.currentTimeMillis(), n) // the retention at once
        Ipv4Report.saveInBackground(this)
        message.text = "Kept: $n day(s)"
        refresh()
    }

    private fun clear() {
        Ipv4Report.get(this).store.clear()
        Ipv4Report.saveInBackground(this)
        message.text = "Report cleared"
        refresh()
    }

    private fun export(json: Boolean) {
        val now = System.currentTimeMillis()
        val apps = usage()
        val body = if (json) {
            Ipv4ReportExport.json(window, Ipv4Report.clock.day(now), Build.VERSION.SDK_INT >= 29, apps)
        } else {
            Ipv4ReportExport.csv(apps)
        }
        if (body.length > MAX_SHARE_CHARS) {
            message.text = "Too large to share as text (${body.length / 1024} KiB); export \"today\" instead"
            return
        }
        val send = Intent(Intent.ACTION_SEND)
            .setType("text/plain") // EXTRA_TEXT: share targets match text/plain; the subject names the format
            .putExtra(Intent.EXTRA_SUBJECT, "Apps that used IPv4 (${window.label}, ${if (json) "JSON" else "CSV"})")
            .putExtra(Intent.EXTRA_TEXT, body)
        startActivity(Intent.createChooser(send, "Export IPv4 report"))
    }

    private companion object {
        /** Chars of EXTRA_TEXT: UTF-16 in the parcel, so 256 Ki chars are 512 KiB, half the binder limit. */
        const val MAX_SHARE_CHARS = 256 * 1024
    }
}
