package net.clat.app.logic

/**
 * The short state lines of the notification and the UI, so that a VPN in pass-through
 * ([RunTarget.ipv4Native]) never claims to translate through a NAT64 it does not use.
 */
object StatusText {
    /**
     * The notification's title. [running]: the engine runs; [ipv4Native]: it passes IPv4 through
     * (always-on VPN where no CLAT is needed); [prefix]: the NAT64 prefix in use, "64:ff9b::/96".
     */
    fun title(running: Boolean, ipv4Native: Boolean, prefix: String?): String = when {
        !running -> "CLAT idle"
        ipv4Native -> "VPN up in pass-through (no translation)"
        else -> "IPv4 via CLAT: $prefix"
    }

    /** The UI's state line: "Running", "Running in pass-through", "Not running", plus always-on and lockdown. */
    fun state(running: Boolean, ipv4Native: Boolean, alwaysOn: Boolean, lockdown: Boolean): String = when {
        !running -> "Not running"
        ipv4Native -> "Running in pass-through"
        else -> "Running"
    } + (if (alwaysOn) " (always-on" + (if (lockdown) ", lockdown)" else ")") else "")
}
