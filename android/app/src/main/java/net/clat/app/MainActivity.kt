package net.clat.app

import android.app.Activity
import android.content.Intent
import android.graphics.Typeface
import android.net.VpnService
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
import net.clat.app.logic.Nat64Prefix

/**
 * State and why, prefix and its source, counters, start and stop, the prefix override.
 * Views are built in code: no AndroidX, and no generated R class (the JVM build has none).
 */
class MainActivity : Activity() {
    private lateinit var state: TextView
    private lateinit var reason: TextView
    private lateinit var prefix: TextView
    private lateinit var counters: TextView
    private lateinit var warnings: TextView
    private lateinit var override: EditText
    private lateinit var overrideError: TextView
    private val listener: (ClatStatus) -> Unit = { show(it) }

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        val pad = (16 * resources.displayMetrics.density).toInt()
        val col = LinearLayout(this).apply {
            orientation = LinearLayout.VERTICAL
            setPadding(pad, pad, pad, pad)
        }
        fun text(size: Float = 16f, bold: Boolean = false) = TextView(this).apply {
            textSize = size
            if (bold) setTypeface(typeface, Typeface.BOLD)
            setPadding(0, pad / 4, 0, pad / 4)
            col.addView(this)
        }
        state = text(22f, bold = true)
        reason = text()
        prefix = text()
        val buttons = LinearLayout(this).apply { orientation = LinearLayout.HORIZONTAL }
        buttons.addView(Button(this).apply { text = "Start"; setOnClickListener { requestStart() } })
        buttons.addView(Button(this).apply { text = "Stop"; setOnClickListener { ClatVpnService.stop(this@MainActivity) } })
        col.addView(buttons)
        text(14f, bold = true).text = "NAT64 prefix override (empty: automatic)"
        override = EditText(this).apply {
            inputType = InputType.TYPE_CLASS_TEXT or InputType.TYPE_TEXT_FLAG_NO_SUGGESTIONS
            hint = "64:ff9b::/96"
            setText(UserPrefs(this@MainActivity).prefixOverride.orEmpty())
            col.addView(this)
        }
        overrideError = text(14f)
        col.addView(CheckBox(this).apply {
            text = "Run even when the network has IPv4 or no IPv6 (testing)"
            isChecked = UserPrefs(this@MainActivity).force
            setOnCheckedChangeListener { _, on ->
                UserPrefs(this@MainActivity).force = on
                if (UserPrefs(this@MainActivity).enabled) ClatVpnService.start(this@MainActivity)
            }
        })
        col.addView(CheckBox(this).apply {
            text = "Keep local traffic local (link-local, multicast, broadcast bypass the CLAT)"
            isChecked = UserPrefs(this@MainActivity).excludeLocalTraffic
            setOnCheckedChangeListener { _, on ->
                UserPrefs(this@MainActivity).excludeLocalTraffic = on
                if (UserPrefs(this@MainActivity).enabled) ClatVpnService.start(this@MainActivity)
            }
        })
        col.addView(Button(this).apply { text = "Save prefix"; setOnClickListener { saveOverride() } })
        warnings = text(14f)
        text(14f, bold = true).text = "Counters"
        counters = text(13f).apply { typeface = Typeface.MONOSPACE }
        setContentView(ScrollView(this).apply { addView(col) })
        // Only on a fresh start: after a rotation (or process recreation) the same launch intent
        // is delivered again with a saved state, and must not restart a CLAT the user stopped.
        if (savedInstanceState == null && intent?.getBooleanExtra(EXTRA_START, false) == true) requestStart()
    }

    override fun onStart() {
        super.onStart()
        StatusBoard.listen(listener)
    }

    override fun onStop() {
        StatusBoard.unlisten(listener)
        super.onStop()
    }

    private fun show(s: ClatStatus) {
        state.text = when {
            s.running -> "Running"
            else -> "Not running"
        } + (if (s.alwaysOn) " (always-on" + (if (s.lockdown) ", lockdown)" else ")") else "")
        reason.text = s.reason
        prefix.text = if (s.prefix != null) "Prefix ${s.prefix} from ${s.prefixSource}" +
            (s.network?.let { " on $it" } ?: "") else "No NAT64 prefix in use"
        counters.text = s.counters.joinToString("\n") { "${it.first.padEnd(24)} ${it.second}" }.ifEmpty { "-" }
        warnings.text = s.warnings.joinToString("\n") { "⚠ $it" }
        warnings.visibility = if (s.warnings.isEmpty()) View.GONE else View.VISIBLE
    }

    private fun saveOverride() {
        val t = override.text.toString().trim()
        if (t.isNotEmpty()) {
            val r = Nat64Prefix.parse(t)
            if (r.isFailure) {
                overrideError.text = "Rejected: ${r.exceptionOrNull()?.message}"
                return
            }
        }
        overrideError.text = if (t.isEmpty()) "Automatic prefix" else "Saved"
        UserPrefs(this).prefixOverride = t
        if (StatusBoard.status.running || UserPrefs(this).enabled) ClatVpnService.start(this)
    }

    /** Consent first (VpnService.prepare), then the service. */
    private fun requestStart() {
        if (Build.VERSION.SDK_INT >= 33 &&
            checkSelfPermission(android.Manifest.permission.POST_NOTIFICATIONS) != android.content.pm.PackageManager.PERMISSION_GRANTED
        ) {
            requestPermissions(arrayOf(android.Manifest.permission.POST_NOTIFICATIONS), REQ_NOTIFY)
        }
        val consent = VpnService.prepare(this)
        if (consent != null) startActivityForResult(consent, REQ_VPN) else ClatVpnService.start(this)
    }

    @Deprecated("Activity result API without AndroidX")
    override fun onActivityResult(requestCode: Int, resultCode: Int, data: Intent?) {
        @Suppress("DEPRECATION")
        super.onActivityResult(requestCode, resultCode, data)
        if (requestCode != REQ_VPN) return
        if (resultCode == RESULT_OK) {
            ClatVpnService.start(this)
        } else {
            reason.text = "VPN permission was not granted"
        }
    }

    companion object {
        const val EXTRA_START = "net.clat.app.extra.START"
        private const val REQ_VPN = 1
        private const val REQ_NOTIFY = 2
    }
}
