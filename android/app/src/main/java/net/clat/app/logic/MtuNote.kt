package net.clat.app.logic

/**
 * The TUN's MTU as the UI says it: the value in force and why it is that value. The default
 * (1500) is the frame size of the Wi-Fi or Ethernet the apps would see on a native IPv4 path, so
 * an app's path-MTU expectations hold; TCP through the TUN is a local leg and re-originated
 * upstream, UDP and ICMP keep their size on the IPv6 side (the NAT64's path decides there). An
 * administrator can set another value through the managed configuration.
 */
object MtuNote {
    fun describe(mtu: Int, fromManagedConfig: Boolean): String = when {
        fromManagedConfig -> "$mtu (set by the managed configuration)"
        mtu == Limits.MTU_DEFAULT -> "$mtu (default: the frame size apps expect of Wi-Fi or Ethernet; " +
            "an administrator can set ${Limits.MTU_MIN}..${Limits.MTU_MAX})"
        else -> "$mtu"
    }
}
