package net.clat.app.logic

/**
 * The owner a flow is counted under in the IPv4 report: an app's Linux uid with the package
 * names that share it, or one of the pseudo-owners below (negative uids) when the platform could
 * not say.
 *
 * @property uid the app's uid (>= 0), or [UNAVAILABLE], [UNKNOWN], [ICMP], [OTHER_APPS].
 * @property packages every package of that uid (a shared uid lists them all), sorted; empty
 *   when the uid's packages are not visible to this app or for a pseudo-owner.
 */
data class FlowOwner(val uid: Int, val packages: List<String>) {
    /** What the report shows for this owner. */
    fun label(): String = when (uid) {
        UNAVAILABLE -> "unattributed (Android 9 or older cannot name a connection's app)"
        UNKNOWN -> "unattributed (the platform did not name the app)"
        ICMP -> "unattributed ping (ICMP: the platform names apps for TCP and UDP only)"
        OTHER_APPS -> "other apps (over the report's limit of apps per day)"
        else -> if (packages.isEmpty()) "uid $uid (package not visible to this app)" else packages.joinToString(", ")
    }

    companion object {
        /** Android 9 and older: ConnectivityManager.getConnectionOwnerUid is API 29. */
        const val UNAVAILABLE = -1

        /** getConnectionOwnerUid returned INVALID_UID or failed (socket already gone, not ours). */
        const val UNKNOWN = -2

        /** ICMP echo: ConnectivityService accepts IPPROTO_TCP and IPPROTO_UDP only. */
        const val ICMP = -3

        /** Apps beyond [UsageLimits.maxAppsPerDay] on one day. */
        const val OTHER_APPS = -4
    }
}

/**
 * The platform's answers, behind an interface so that [FlowAttributor] runs on the JVM
 * (AndroidConnectionOwners in the app package implements it).
 */
interface ConnectionOwners {
    /** False below API 29, where getConnectionOwnerUid does not exist. */
    val available: Boolean

    /**
     * The uid owning the socket local -> remote (IPv4 literals, ports 0..65535), or -1
     * (Process.INVALID_UID) when none is found or the platform will not say. [proto] is TCP or UDP.
     * May throw (binder, SecurityException); the attributor counts that as unknown.
     */
    fun ownerUid(proto: FlowProto, localAddress: String, localPort: Int, remoteAddress: String, remotePort: Int): Int

    /** PackageManager.getPackagesForUid: the packages of [uid], empty when none are visible. */
    fun packagesForUid(uid: Int): List<String>
}

/**
 * Names a flow's app from its [FlowStart] at the moment the flow starts (the socket exists then).
 * The app's socket is local = the TUN's IPv4 address ([clatV4]) and the app port, remote = the
 * destination: that is the socket the kernel holds for the app, which sock_diag finds
 * (ConnectivityService.getConnectionOwnerUid, packages/modules/Connectivity
 * service/src/com/android/server/ConnectivityService.java, Android 14: TCP and UDP only, else
 * IllegalArgumentException; INVALID_UID unless the caller is the VpnService VPN that applies to
 * the owning uid, which this app is for the apps it carries).
 *
 * uid -> packages answers are cached (bounded, [cacheSize] uids): a uid's packages change only on
 * install/uninstall, and one flow per second per app would otherwise be one binder call each.
 */
class FlowAttributor(private val owners: ConnectionOwners, private val cacheSize: Int = 256) {
    private val packages = object : LinkedHashMap<Int, List<String>>(16, 0.75f, true) {
        override fun removeEldestEntry(eldest: MutableMap.MutableEntry<Int, List<String>>?): Boolean = size > cacheSize
    }

    /** Lookups that threw (counted, never propagated). */
    var failures: Long = 0
        private set

    @Synchronized
    fun owner(start: FlowStart, clatV4: String): FlowOwner {
        if (start.proto == FlowProto.ICMP) return FlowOwner(FlowOwner.ICMP, emptyList())
        if (!owners.available) return FlowOwner(FlowOwner.UNAVAILABLE, emptyList())
        val uid = try {
            owners.ownerUid(start.proto, clatV4, start.appPort, start.dst, start.dstPort)
        } catch (e: RuntimeException) {
            failures++
            -1
        }
        if (uid < 0) return FlowOwner(FlowOwner.UNKNOWN, emptyList())
        val names = packages[uid] ?: try {
            owners.packagesForUid(uid).sorted().also { packages[uid] = it }
        } catch (e: RuntimeException) {
            failures++ // not cached: the next flow asks again
            emptyList()
        }
        return FlowOwner(uid, names)
    }

    /** Forget cached package names (an app was installed or removed). */
    @Synchronized
    fun forgetPackages() = packages.clear()
}
