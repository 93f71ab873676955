package net.clat.app.logic

/**
 * What the app knows of its always-on VPN and lockdown settings.
 *
 * `VpnService.isAlwaysOn()` and `isLockdownEnabled()` (API 29) answer only while this app's VPN
 * is established: they call `VpnManagerService.isCallerCurrentAlwaysOnVpnApp()` /
 * `isCallerCurrentAlwaysOnVpnLockdownApp()`, which look the caller's VPN up through
 * `getVpnIfOwner()`, and that finds none unless `Vpn.getUnderlyingNetworkInfo()` is non-null,
 * i.e. unless the VPN is running (frameworks/base services/core/java/com/android/server/
 * VpnManagerService.java and connectivity/Vpn.java). Read while the VPN is not established they
 * say false whatever the settings are; taken at face value the app would stand down on a network
 * with native IPv4 and never reach the pass-through that keeps an always-on VPN up.
 *
 * So: a read counts only while the VPN is established; a start by the system as the always-on VPN
 * (`Vpn.startAlwaysOnVpn()` starts the service with the action `VpnService.SERVICE_INTERFACE`)
 * means always-on; and what was last known is kept (the service stores it) until an
 * established read says otherwise. Lockdown exists only with always-on.
 */
class AlwaysOnState(alwaysOn: Boolean = false, lockdown: Boolean = false) {
    var alwaysOn: Boolean = alwaysOn
        private set
    var lockdown: Boolean = lockdown && alwaysOn
        private set

    /** The system started the service as the always-on VPN. Returns whether anything changed. */
    fun onAlwaysOnStart(): Boolean {
        val changed = !alwaysOn
        alwaysOn = true
        return changed
    }

    /**
     * A read of `isAlwaysOn()` and `isLockdownEnabled()`; [established]: this app's VPN was
     * established at the time (else the read is ignored, see above). Returns whether anything
     * changed.
     */
    fun onRead(established: Boolean, alwaysOn: Boolean, lockdown: Boolean): Boolean {
        if (!established) return false
        val lock = lockdown && alwaysOn
        val changed = alwaysOn != this.alwaysOn || lock != this.lockdown
        this.alwaysOn = alwaysOn
        this.lockdown = lock
        return changed
    }
}
