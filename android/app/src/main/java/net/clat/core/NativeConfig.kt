package net.clat.core

/**
 * Engine configuration as handed to [ClatNative.start]. The native side reads these fields
 * by name through JNI (keep names and types in step with rust-core/jni/src/jconvert.rs) and
 * checks them; a bad value makes `start` throw [IllegalArgumentException] naming the field.
 *
 * Numeric fields use 0 for "the engine's default" so the defaults live in one place (the
 * Rust engine's `EngineConfig::default()`); negative values are rejected. Null addresses
 * likewise keep the engine's defaults (192.0.0.4 / .5 / .6).
 */
class NativeConfig(
    /** NAT64 prefix, RFC 6052 length (/32, /40, /48, /56, /64, /96), e.g. "64:ff9b::/96". */
    @JvmField val prefix: String,
    /**
     * Resolvers of the underlying network: "[2001:db8::53]:53", "2001:db8::53" (port 53), and
     * link-local ones with their zone (interface name or index): "fe80::1%wlan0", "[fe80::1%3]:53".
     */
    @JvmField val dnsServers: Array<String> = emptyArray(),
    /** The CLAT's IPv4 address (the apps' source, the TUN's address). */
    @JvmField val clatAddress: String? = null,
    /** Internal address for kernel-terminated TCP; on-link on the TUN (/29). */
    @JvmField val natAddress: String? = null,
    /** The DNS relay's IPv4 address, to give apps as their resolver. */
    @JvmField val dnsRelayAddress: String? = null,
    /** TUN MTU (576..65535), 0 = default (1500). Must match VpnService.Builder.setMtu. */
    @JvmField val mtu: Int = 0,
    /** Cap on live flows, 0 = default. */
    @JvmField val maxFlows: Int = 0,
    /** UDP mapping idle timeout in seconds, 0 = default. */
    @JvmField val udpTimeoutSec: Int = 0,
    /** Established TCP idle timeout in seconds, 0 = default (RFC 5382: >= 2 h 4 min). */
    @JvmField val tcpEstablishedTimeoutSec: Int = 0,
    /** Transitory TCP timeout in seconds, 0 = default. */
    @JvmField val tcpTransitoryTimeoutSec: Int = 0,
    /** ICMP echo mapping timeout in seconds, 0 = default. */
    @JvmField val icmpTimeoutSec: Int = 0,
    /** Refuse non-global IPv4 destinations through 64:ff9b::/96 (RFC 6052 s3.1). */
    @JvmField val refuseNonGlobalWkp: Boolean = true,
    /**
     * IPv4 flows leave natively (IPv4 sockets to the destination itself) instead of through the
     * NAT64, from the start; for a network with native IPv4. Changed later with
     * [ClatNative.setIpv4Path].
     */
    @JvmField val ipv4Native: Boolean = false,
    /**
     * Carry IPv6 packets from the TUN natively to their own destination (issue 15: under
     * lockdown IPv6 is routed into the VPN). The TUN then needs the engine's IPv6 address,
     * `fd9c:7c5a:e1b6:464::1/64` (`::2` of that /64 is its internal NAT address); without this
     * flag IPv6 from the TUN is dropped and counted.
     */
    @JvmField val carryIpv6: Boolean = false,
    /**
     * Capacity of the engine's flow-event queue (issue 17: what [ClatNative.awaitFlowEvents]
     * returns), in events, 0..1048576; 0 = no flow events (no queue, no event built). When the
     * queue is full the engine drops the newest event and counts it (`flow_events_dropped`).
     */
    @JvmField val flowEvents: Int = 0,
) {
    override fun toString(): String =
        "NativeConfig(prefix=$prefix, dnsServers=${dnsServers.contentToString()}, " +
            "clatAddress=$clatAddress, natAddress=$natAddress, dnsRelayAddress=$dnsRelayAddress, " +
            "mtu=$mtu, maxFlows=$maxFlows, udpTimeoutSec=$udpTimeoutSec, " +
            "tcpEstablishedTimeoutSec=$tcpEstablishedTimeoutSec, " +
            "tcpTransitoryTimeoutSec=$tcpTransitoryTimeoutSec, icmpTimeoutSec=$icmpTimeoutSec, " +
            "refuseNonGlobalWkp=$refuseNonGlobalWkp, ipv4Native=$ipv4Native, carryIpv6=$carryIpv6, " +
            "flowEvents=$flowEvents)"
}
