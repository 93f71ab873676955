package net.clat.app.logic

/**
 * The engine carries IPv6 packets from the TUN (issue 15, item 1: IPv6 TCP, UDP and ICMPv6
 * re-originated through protected sockets). Until it does, a plan with [VpnPlan.carryIpv6] is
 * applied without its IPv6 route and address ([VpnPlan.forEngine]), so that the app never routes
 * IPv6 into an engine that drops it. Turn on together with the engine step that reads IPv6 from
 * the TUN (and its ULA, [ClatAddresses.TUN_V6], for the kernel-terminated TCP).
 */
const val ENGINE_CARRIES_IPV6 = false

/**
 * The engine can send IPv4 flows to their destination natively instead of through the NAT64
 * (`NativeConfig.ipv4Native`, `ClatEngine.setIpv4Path`; issue 15, item 2). Until it can, the
 * service reports always-on to the decision as off ([RunDecider] then stands down on networks with
 * IPv4, as before), since an engine that cannot pass IPv4 through would translate it to a NAT64
 * that such a network may not have. Turn on when the service passes [RunTarget.ipv4Native] to
 * `NativeConfig` and applies [Change.IPV4_PATH] with `ClatEngine.setIpv4Path`.
 */
const val ENGINE_PASSES_IPV4_NATIVELY = false
