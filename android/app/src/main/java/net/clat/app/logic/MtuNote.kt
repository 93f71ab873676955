package net.clat.app.logic

/**
 * The TUN's MTU as the UI says it: the value in force and why it is that value. The default
 * (65000, [Limits.MTU_DEFAULT] says why) makes TCP through the TUN, a local leg re-originated
 * upstream, cheapest per byte; UDP and ICMP keep their size on the IPv6 side, where the path's MTU
 * is learnt as on any path. An administrator can set another value through the managed
 * configuration.
 */
object MtuNote {
    fun describe(mtu: Int, fromManagedConfig: Boolean): String = when {
        fromManagedConfig -> "$mtu (set by the managed configuration)"
        mtu == Limits.MTU_DEFAULT -> "$mtu (default: TCP through the CLAT is local, so the largest MTU costs " +
            "the least battery; larger UDP learns the path's MTU as usual; an administrator can set " +
            "${Limits.MTU_MIN}..${Limits.MTU_MAX})"
        else -> "$mtu"
    }
}
