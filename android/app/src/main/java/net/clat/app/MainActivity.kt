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
import net.clat.app.logic.AppSelection
import net.clat.app.logic.Ipv4Check
import net.clat.app.logic.Nat64Prefix
import net.clat.app.logic.StatusText

/**
 * State and why, prefix and its source, the addresses, MTU, resolvers and apps in force,
 * counters, start and stop, the prefix override, the per-app picker, the IPv4 check, log export
 * and the help text with the platform's limits. Views are built in code: no AndroidX, and no
 * generated R class (the JVM build has none). What is shown and how is decided in
 * net.clat.app.logic (AppPicker, Ipv4Check, StatusLog); this class only wires views.
 *
 * Also the quick-settings tile's long-press target (QS_TILE_PREFERENCES in the manifest).
 */
class MainActivity : Activity() {
    private lateinit var state: TextView
    private lateinit var reason: TextView
    private lateinit var prefix: TextView
    private lateinit var details: TextView
    private lateinit var appsLine: TextView
    private lateinit var checkResult: TextView
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
        details = text(14f)
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

        text(14f, bold = true).text = "Apps"
        appsLine = text(14f)
        col.addView(Button(this).apply { text = "Choose apps"; setOnClickListener { chooseApps() } })

        text(14f, bold = true).text = "IPv4 check (an IPv4 address, not a name)"
        val checkTarget = EditText(this).apply {
            inputType = InputType.TYPE_CLASS_TEXT or InputType.TYPE_TEXT_FLAG_NO_SUGGESTIONS
            setText(Ipv4Check.DEFAULT_TARGET)
            col.addView(this)
        }
        col.addView(Button(this).apply { text = "IPv4 check"; setOnClickListener { ipv4Check(checkTarget.text.toString()) } })
        checkResult = text(14f)

        text(14f, bold = true).text = "Counters"
        counters = text(13f).apply { typeface = Typeface.MONOSPACE }
        col.addView(Button(this).apply { text = "Export log"; setOnClickListener { exportLog() } })
        col.addView(Button(this).apply {
            text = "Apps that used IPv4"
            setOnClickListener { startActivity(Intent(this@MainActivity, Ipv4ReportActivity::class.java)) }
        })
        text(14f, bold = true).text = "Help"
        text(14f).text = HELP
        setContentView(ScrollView(this).apply { addView(col) })
        // Only on a fresh start: after a rotation (or process recreation) the same launch intent
        // is delivered again with a saved state, and must not restart a CLAT the user stopped.
        if (savedInstanceState == null && intent?.getBooleanExtra(EXTRA_START, false) == true) requestStart()
    }

    override fun onStart() {
        super.onStart()
        StatusBoard.listen(listener)
        // Here rather than per status update: reading the managed configuration is a binder call.
        showApps()
    }

    override fun onStop() {
        StatusBoard.unlisten(listener)
        super.onStop()
    }

    private fun show(s: ClatStatus) {
        state.text = StatusText.state(s.running, s.ipv4Native, s.alwaysOn, s.lockdown)
        reason.text = s.reason
        prefix.text = if (s.prefix != null) "Prefix ${s.prefix} from ${s.prefixSource}" +
            (s.network?.let { " on $it" } ?: "") else "No NAT64 prefix in use"
        counters.text = s.counters.joinToString("\n") { "${it.first.padEnd(24)} ${it.second}" }.ifEmpty { "-" }
        details.text = listOfNotNull(
            s.addresses?.let { "Addresses: $it" },
            (s.mtuNote ?: s.mtu?.toString())?.let { "MTU: $it" },
            s.dns?.let { "DNS: $it" },
            s.resolvers.takeIf { it.isNotEmpty() }?.let { "Resolvers (upstream of the DNS relay): ${it.joinToString(", ")}" },
            s.apps?.let { "Apps: $it" },
        ).joinToString("\n")
        details.visibility = if (details.text.isEmpty()) View.GONE else View.VISIBLE
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

    /** The user's selection, or why there is none to make (managed configuration fixes it). */
    private fun showApps() {
        val managed = ManagedConfigReader.read(this).config
        appsLine.text = if (managed.managesApps) {
            "Set by your organisation (managed configuration): " +
                AppSelection.ofLists(managed.allowedApps.orEmpty(), managed.disallowedApps.orEmpty()).describe()
        } else {
            "Your choice: " + UserPrefs(this).appSelection.describe()
        }
    }

    private fun chooseApps() {
        if (ManagedConfigReader.read(this).config.managesApps) {
            showApps()
            return
        }
        AppPickerDialog(this, UserPrefs(this).appSelection) { chosen ->
            UserPrefs(this).appSelection = chosen
            StatusBoard.log.record(System.currentTimeMillis(), "apps chosen: ${chosen.describe()}")
            showApps()
            // The running service re-reads the preferences and rebuilds the TUN for the new lists.
            if (UserPrefs(this).enabled) ClatVpnService.start(this)
        }.show()
    }

    private fun ipv4Check(text: String) {
        val target = Ipv4Check.parseTarget(text).getOrElse {
            checkResult.text = it.message
            return
        }
        checkResult.text = "Connecting to ${target.text} …"
        Ipv4Checker.run(target) { outcome ->
            val line = Ipv4Check.describe(target, outcome, StatusBoard.status.running, StatusBoard.status.ipv4Native)
            StatusBoard.log.record(System.currentTimeMillis(), line)
            checkResult.text = line
        }
    }

    /** ACTION_SEND of the app's own history: the user picks where it goes (mail, notes, ...). */
    private fun exportLog() {
        val s = StatusBoard.status
        val header = listOf(
            "CLAT (464XLAT) log, ${packageName}",
            "Android ${Build.VERSION.RELEASE} (API ${Build.VERSION.SDK_INT}), ${Build.MANUFACTURER} ${Build.MODEL}",
            "Now: ${s.logLine()}",
        ) + listOfNotNull(s.addresses, s.mtu?.let { "MTU $it" }, s.apps?.let { "apps: $it" }) +
            s.counters.map { "${it.first}=${it.second}" }
        val send = Intent(Intent.ACTION_SEND)
            .setType("text/plain")
            .putExtra(Intent.EXTRA_SUBJECT, "CLAT log")
            .putExtra(Intent.EXTRA_TEXT, StatusBoard.log.export(header))
        startActivity(Intent.createChooser(send, "Export log"))
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

        /** The limits a user runs into, said up front. */
        private val HELP = listOf(
            "This app gives apps IPv4 on IPv6-only networks by translating it to IPv6 through the " +
                "network's NAT64 (464XLAT, RFC 6877). It stands down where the network has IPv4 or " +
                "Android's own CLAT already serves it.",
            "Tethered devices (hotspot, USB) get no IPv4 from it: Android routes only this phone's " +
                "apps through a VPN app, never tethered traffic.",
            "Android runs one VPN at a time: starting another VPN app stops this one, and starting " +
                "this one (after your consent) stops the other.",
            "The quick-settings tile shows \"unavailable\" until you allow the VPN here; long-press " +
                "it to open this screen.",
            "The IPv4 check connects to an IPv4 address (not a name: DNS64 would answer a name with " +
                "IPv6). Export log shares this app's own history of what it did and why.",
        ).joinToString("\n\n")
        private const val REQ_VPN = 1
        private const val REQ_NOTIFY = 2
    }
}
