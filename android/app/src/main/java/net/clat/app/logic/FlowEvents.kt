package net.clat.app.logic

/**
 * Flow events the engine gives the layers above, one pair per IPv4 flow it terminates (issue 17
 * item 1; the same fields are written down in docs/flow-events.md for the engine side). No
 * payload, ever: only what the per-app IPv4 report needs.
 *
 * The engine (rust-core/engine/src/flow_events.rs) emits them; ClatNative.awaitFlowEvents hands
 * them over in batches, [FlowEventDecoder] makes these objects, and the service's [FlowEventPump]
 * gives them to [Ipv4Recorder].
 */

/** The flow's transport, as the engine classifies it (RFC 7915 translates these three). */
enum class FlowProto { TCP, UDP, ICMP }

/** How a flow ended. */
enum class FlowEndReason {
    /** Orderly close (TCP FIN both ways). */
    CLOSED,

    /** A TCP reset from either side. */
    RESET,

    /** Idle past the engine's timeout (UDP, ICMP echo, an idle TCP flow). */
    TIMED_OUT,

    /** The upstream refused the connection (TCP RST to the SYN, ICMP port unreachable). */
    REFUSED,

    /** No route, host or network unreachable upstream (ICMPv6/ICMP unreachable, connect error). */
    UNREACHABLE,

    /** Removed to make room under the engine's flow limit (max_flows). */
    EVICTED,

    /** Reset because the network or the IPv4 path changed (new network, prefix, pass-through). */
    NETWORK_CHANGED,
}

/**
 * A flow began.
 *
 * @property id the flow's id, the engine's: unique in the process, across the engines of a network
 *   change and of earlier processes (docs/flow-events.md); [FlowEnd.id] refers to it.
 * @property atMs wall-clock time of the flow's first packet, milliseconds since the Unix epoch (UTC).
 * @property proto TCP, UDP or ICMP (echo).
 * @property dst the IPv4 destination as a dotted-quad literal ("192.0.2.1").
 * @property dstPort destination port, 0..65535; 0 for ICMP.
 * @property appPort the app-side source port (TCP, UDP) or the ICMP echo identifier, 0..65535: the
 *   port of the engine's `src` (its address, the CLAT address, comes beside the event:
 *   [FlowEventSink.flowStarted]).
 * @property name the DNS name the engine's relay resolved to [dst] for this app, if any (absent:
 *   the app used a literal, or resolved the name elsewhere, e.g. over Private DNS).
 * @property nativeIpv4 the flow left through the network's native IPv4 (pass-through, always-on
 *   on a network with IPv4), not through the NAT64.
 */
data class FlowStart(
    val id: Long,
    val atMs: Long,
    val proto: FlowProto,
    val dst: String,
    val dstPort: Int,
    val appPort: Int,
    val name: String?,
    val nativeIpv4: Boolean,
)

/**
 * A flow ended.
 *
 * @property id the id of the matching [FlowStart].
 * @property atMs wall-clock time the engine dropped the flow, milliseconds since the Unix epoch.
 * @property bytesUp IPv4 bytes from the app to the destination (whole IPv4 packets as the app sent
 *   them, headers included), >= 0.
 * @property bytesDown IPv4 bytes from the destination to the app (as delivered to the app), >= 0.
 * @property how why it ended.
 */
data class FlowEnd(
    val id: Long,
    val atMs: Long,
    val bytesUp: Long,
    val bytesDown: Long,
    val how: FlowEndReason,
)
