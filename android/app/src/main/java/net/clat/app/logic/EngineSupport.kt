package net.clat.app.logic

/**
 * The engine carries IPv6 packets from the TUN (issue 15, item 1: IPv6 TCP, UDP and ICMPv6
 * re-originated through protected sockets). Until it does, a plan with [VpnPlan.carryIpv6] is
 * applied without its IPv6 route and address ([VpnPlan.forEngine]), so that the app never routes
 * IPv6 into an engine that drops it. Turn on together with the engine step that reads IPv6 from
 * the TUN (and its ULA, [ClatAddresses.TUN_V6], for the kernel-terminated TCP).
 */
const val ENGINE_CARRIES_IPV6 = false

