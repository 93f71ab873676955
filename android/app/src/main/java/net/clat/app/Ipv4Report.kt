package net.clat.app

import android.content.Context
import android.net.ConnectivityManager
import android.os.Build
import android.system.OsConstants
import java.io.File
import java.net.InetAddress
import java.net.InetSocketAddress
import java.util.TimeZone
import net.clat.app.logic.ConnectionOwners
import net.clat.app.logic.FlowAttributor
import net.clat.app.logic.FlowProto
import net.clat.app.logic.IpAddresses
import net.clat.app.logic.Ipv4Recorder
import net.clat.app.logic.Ipv4ReportSettings
import net.clat.app.logic.Ipv4UsageFile
import net.clat.app.logic.Ipv4UsageStore
import net.clat.app.logic.UsageClock

/**
 * The platform side of flow attribution (issue 17): ConnectivityManager.getConnectionOwnerUid
 * (API 29; only the VpnService VPN that carries the owning uid gets an answer:
 * ConnectivityService.getConnectionOwnerUid, packages/modules/Connectivity, Android 14) and
 * PackageManager.getPackagesForUid (filtered by package visibility from API 30: apps outside the
 * manifest's launcher `<queries>` come back without names, shown as their uid).
 */
class AndroidConnectionOwners(context: Context) : ConnectionOwners {
    private val cm = context.getSystemService(ConnectivityManager::class.java)
    private val pm = context.packageManager

    override val available: Boolean get() = Build.VERSION.SDK_INT >= 29

    override fun ownerUid(proto: FlowProto, localAddress: String, localPort: Int, remoteAddress: String, remotePort: Int): Int {
        if (Build.VERSION.SDK_INT < 29) return -1
        val p = if (proto == FlowProto.TCP) OsConstants.IPPROTO_TCP else OsConstants.IPPROTO_UDP
        return cm.getConnectionOwnerUid(p, socketAddress(localAddress, localPort), socketAddress(remoteAddress, remotePort))
    }

    override fun packagesForUid(uid: Int): List<String> = pm.getPackagesForUid(uid)?.toList().orEmpty()

    /** From the literal's bytes: InetAddress.getByAddress never does a DNS lookup. */
    private fun socketAddress(literal: String, port: Int): InetSocketAddress {
        val bytes = IpAddresses.parseIpv4(literal) ?: throw IllegalArgumentException("not an IPv4 literal")
        return InetSocketAddress(InetAddress.getByAddress(bytes), port)
    }
}

/**
 * The process's IPv4 report: one [Ipv4Recorder] over a file in device-protected storage (like
 * UserPrefs: an always-on VPN records before the first unlock; the file is private to the app and
 * never backed up: allowBackup="false"). Loaded on first use.
 */
object Ipv4Report {
    @Volatile
    private var recorder: Ipv4Recorder? = null

    fun get(context: Context): Ipv4Recorder = recorder ?: synchronized(this) {
        recorder ?: create(context.applicationContext).also { recorder = it }
    }

    fun settings(context: Context): Ipv4ReportSettings {
        val prefs = UserPrefs(context)
        return Ipv4ReportSettings.merge(ManagedConfigReader.read(context).config, prefs.ipv4Report, prefs.ipv4ReportRetentionDays)
    }

    private val saver = java.util.concurrent.Executors.newSingleThreadExecutor()

    /** Saves off the main thread (the file may be megabytes). */
    fun saveInBackground(context: Context) {
        val r = get(context)
        saver.execute { r.saveNow(System.currentTimeMillis()) }
    }

    /** Local days: TimeZone.getDefault() at each event (travel moves "today"). */
    val clock = UsageClock { ms -> TimeZone.getDefault().getOffset(ms) }

    private fun create(app: Context): Ipv4Recorder {
        val storage = app.createDeviceProtectedStorageContext()
        current = settings(app)
        val r = Ipv4Recorder(
            Ipv4UsageStore(clock = clock),
            FlowAttributor(AndroidConnectionOwners(app)),
            Ipv4UsageFile(File(storage.filesDir, "ipv4-report.bin")),
            { current },
        )
        r.load(System.currentTimeMillis())
        return r
    }

    /**
     * The settings in force, read at creation and on [refreshSettings] rather than per flow:
     * reading the managed configuration is a binder call.
     */
    @Volatile
    private var current = Ipv4ReportSettings()

    /** Re-reads the settings after the user or the admin changed them. */
    fun refreshSettings(context: Context) {
        current = settings(context)
    }
}
