package net.clat.core

import java.io.IOException
import java.net.DatagramPacket
import java.net.DatagramSocket
import java.net.InetAddress
import java.net.InetSocketAddress
import java.net.Socket
import kotlin.test.assertContains
import kotlin.test.assertEquals
import kotlin.test.assertFalse
import kotlin.test.assertNull
import kotlin.test.assertTrue
import org.junit.jupiter.api.Assumptions.assumeTrue
import org.junit.jupiter.api.BeforeAll
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.assertThrows
import net.clat.core.JniTestSupport.SERVER
import net.clat.core.JniTestSupport.TUN
import net.clat.core.JniTestSupport.eventually
import net.clat.core.JniTestSupport.fdCount
import net.clat.core.JniTestSupport.interfaceExists
import net.clat.core.JniTestSupport.labConfig
import net.clat.core.JniTestSupport.sh
import net.clat.core.JniTestSupport.statsMap
import net.clat.app.logic.FlowEnd
import net.clat.app.logic.FlowEndReason
import net.clat.app.logic.FlowEventDecoder
import net.clat.app.logic.FlowEventPump
import net.clat.app.logic.FlowEventSink
import net.clat.app.logic.FlowProto
import net.clat.app.logic.FlowStart

/** The engine's IPv6 address on the TUN (EngineConfig::clat_v6's default). */
private const val CLAT_V6 = "fd9c:7c5a:e1b6:464::1"

/** plat's DNS64, which also answers over TCP. */
private const val DNS64_ADDR = "2001:db8:1::53"

/**
 * The bridge carrying real traffic: a real TUN in the lab's `phone` namespace (IPv6 only),
 * the engine behind it, the lab's DNS64 + Tayga NAT64 beyond. Run the JVM under
 * `ip netns exec phone` after `tests/lab/lab.sh up`; elsewhere these tests are skipped
 * (assumption), the contract tests still run. With CLAT_LAB_REQUIRED=1 in the environment (as
 * tests/run-all.sh sets it) they fail instead: CI must never pass without running them.
 */
class ClatNativeLabTest {
    companion object {
        @JvmStatic
        @BeforeAll
        fun setUp() {
            if (System.getenv("CLAT_LAB_REQUIRED") == "1") {
                check(JniTestSupport.inPhoneNamespace()) { "CLAT_LAB_REQUIRED=1 but not in the lab's phone namespace" }
            } else {
                assumeTrue(JniTestSupport.inPhoneNamespace(), "not in the lab's phone namespace")
            }
            check(interfaceExists("ph0")) { "in netns phone but its uplink ph0 is missing: is the lab up?" }
            JniTestSupport.load()
        }
    }

    /**
     * Opens a TUN, starts an engine on it, then configures the TUN like the VpnService's
     * builder would. The engine owns the descriptor from `start` on, so a failure while
     * configuring stops it and the TUN goes away instead of leaking into the next test.
     */
    private fun startEngine(protector: SocketProtector, config: NativeConfig = labConfig()): Long {
        check(eventually { !interfaceExists(TUN) }) { "$TUN left over from an earlier test" }
        JniTestSupport.awaitNoOtherClat()
        val fd = ClatNative.openTun(TUN)
        assertTrue(fd >= 0)
        val h = ClatNative.start(fd, config, protector)
        try {
            sh("ip", "addr", "add", "192.0.0.4/29", "dev", TUN)
            sh("ip", "link", "set", TUN, "up")
            // Fails with "File exists" if another CLAT in `phone` holds the IPv4 default route.
            sh("ip", "route", "add", "default", "dev", TUN)
        } catch (e: Throwable) {
            ClatNative.stop(h)
            throw e
        }
        return h
    }

    private fun httpGet(path: String = "/index.html"): String =
        Socket().use { s ->
            s.soTimeout = 5000
            s.connect(InetSocketAddress(SERVER, 80), 5000)
            s.getOutputStream().write("GET $path HTTP/1.0\r\nHost: $SERVER\r\n\r\n".toByteArray())
            s.getInputStream().readBytes().decodeToString()
        }

    private fun udpEcho(payload: String): String = DatagramSocket().use { s -> udpEcho(s, payload) }

    @Test
    fun `an engine started through JNI carries HTTP and UDP and stops cleanly`() {
        val baseline = fdCount()
        val engineCount = ClatNative.engineCount()
        val protector = CountingProtector()
        val h = startEngine(protector)
        try {
            assertTrue(ClatNative.isRunning(h))
            assertNull(ClatNative.exitReason(h))

            val page = httpGet()
            assertTrue(page.startsWith("HTTP/1."), page.take(200))
            assertContains(page, "hello from 203.0.113.10")
            assertEquals("jni-echo-1", udpEcho("jni-echo-1"))
            val connections = 2

            assertTrue(protector.calls.get() >= connections, "protect calls ${protector.calls.get()}")
            val testThread = Thread.currentThread().name
            val engineThreads = protector.threads - testThread
            // One Java thread: the engine thread was attached once and stayed attached (a
            // re-attachment per call would show up as a new java.lang.Thread each time).
            assertEquals(
                1,
                engineThreads.size,
                "protect must be called back from the engine's one native thread, was ${protector.threads}",
            )
            val s = statsMap(h)
            assertTrue(s.getValue("tun_rx_packets") > 0, "$s")
            assertTrue(s.getValue("tun_tx_packets") > 0, "$s")
            assertTrue(s.getValue("flows_tcp_total") >= 1, "$s")
            assertTrue(s.getValue("flows_udp_total") >= 1, "$s")
            assertTrue(s.getValue("jni_protect_calls") >= connections, "$s")
            assertEquals(protector.calls.get().toLong(), s.getValue("jni_protect_calls"))

            // Reconfiguration keeps it working.
            ClatNative.setPrefix(h, JniTestSupport.PREFIX)
            ClatNative.networkChanged(h, arrayOf(JniTestSupport.DNS64))
            assertContains(httpGet(), "hello from 203.0.113.10")
            assertTrue(statsMap(h).getValue("flows_tcp_total") >= 2)
        } finally {
            assertTrue(ClatNative.stop(h))
        }
        assertFalse(ClatNative.stop(h), "second stop is harmless")
        val e = assertThrows<IllegalStateException> { ClatNative.counters(h) }
        assertEquals("no engine with handle $h", e.message)
        assertThrows<IllegalStateException> { ClatNative.setPrefix(h, JniTestSupport.PREFIX) }
        assertEquals(engineCount, ClatNative.engineCount())
        assertTrue(eventually { !interfaceExists(TUN) }, "the TUN must go away with its descriptor")
        assertTrue(eventually { fdCount() <= baseline + 2 }, "fds: baseline $baseline, now ${fdCount()}")
    }

    /**
     * The IPv4 path through JNI (issue 15): `NativeConfig.ipv4Native` starts the engine on the
     * native path, `ClatEngine.setIpv4Path` moves new flows to the NAT64 and back. For the test
     * the phone's uplink ph0 gets IPv4 (192.0.2.202/30, plat's end 192.0.2.201, as
     * tests/e2e/test_native_ipv4.py does) and a native default route. The test's own sockets
     * are bound to the CLAT address, which a source rule sends into the TUN; the engine's
     * unbound IPv4 sockets take the native route: on Android, protect() is what keeps them out
     * of the VPN, and this JVM's protector only counts.
     */
    @Test
    fun `ipv4Native and setIpv4Path move new flows between native IPv4 and the NAT64`() {
        check(eventually { !interfaceExists(TUN) }) { "$TUN left over from an earlier test" }
        JniTestSupport.awaitNoOtherClat()
        val undo = ArrayList<List<String>>()
        fun run(vararg cmd: String, undoWith: List<String>? = null) {
            sh(*cmd)
            undoWith?.let { undo.add(0, it) }
        }
        val cfg = NativeConfig(prefix = JniTestSupport.PREFIX, dnsServers = arrayOf(JniTestSupport.DNS64), mtu = 1500, ipv4Native = true)
        assertContains(cfg.toString(), "ipv4Native=true")
        val engine = ClatEngine.start(ClatNative.openTun(TUN), cfg, CountingProtector())
        try {
            run("ip", "addr", "add", "192.0.2.202/30", "dev", "ph0",
                undoWith = listOf("ip", "addr", "del", "192.0.2.202/30", "dev", "ph0"))
            run("ip", "netns", "exec", "plat", "ip", "addr", "add", "192.0.2.201/30", "dev", "pl0",
                undoWith = listOf("ip", "netns", "exec", "plat", "ip", "addr", "del", "192.0.2.201/30", "dev", "pl0"))
            run("ip", "addr", "add", "192.0.0.4/29", "dev", TUN)
            run("ip", "link", "set", TUN, "up")
            run("ip", "route", "add", "default", "dev", TUN, "table", "100")
            run("ip", "rule", "add", "from", "192.0.0.4", "lookup", "100", "priority", "100",
                undoWith = listOf("ip", "rule", "del", "from", "192.0.0.4", "lookup", "100", "priority", "100"))
            run("ip", "route", "add", "default", "via", "192.0.2.201", "dev", "ph0",
                undoWith = listOf("ip", "route", "del", "default", "via", "192.0.2.201", "dev", "ph0"))
            fun stats() = engine.namedCounters().toMap()

            // Native from the start: the flow is counted on the native path.
            assertEquals(1L, stats().getValue("ipv4_path_native"))
            assertContains(httpGetFromClat(), "hello from 203.0.113.10")
            assertEquals(1L, stats().getValue("flows_native_total"), "${stats()}")

            // To the NAT64: a new flow is not native.
            engine.setIpv4Path(false)
            assertTrue(eventually { stats().getValue("ipv4_path_native") == 0L })
            val tcpBefore = stats().getValue("flows_tcp_total")
            assertContains(httpGetFromClat(), "hello from 203.0.113.10")
            assertEquals(tcpBefore + 1, stats().getValue("flows_tcp_total"))
            assertEquals(1L, stats().getValue("flows_native_total"), "${stats()}")

            // And back: a UDP mapping made now is native.
            ClatNative.setIpv4Path(engine.handle, true)
            assertTrue(eventually { stats().getValue("ipv4_path_native") == 1L })
            DatagramSocket(InetSocketAddress("192.0.0.4", 0)).use { s ->
                assertEquals("jni-native-udp", udpEcho(s, "jni-native-udp"))
            }
            assertEquals(2L, stats().getValue("flows_native_total"), "${stats()}")
        } finally {
            engine.close()
            for (cmd in undo) runCatching { sh(*cmd.toTypedArray()) }
        }
        assertTrue(eventually { !interfaceExists(TUN) })
    }

    /**
     * IPv6 through JNI (issue 15 item 1): `NativeConfig.carryIpv6` makes the engine carry IPv6
     * from the TUN to its own destination. The TUN gets the engine's fd9c:7c5a:e1b6:464::1/64;
     * the test's socket is bound to it and a source rule sends it into the TUN; the engine's
     * unbound IPv6 socket takes the phone's own route to plat's DNS64 (TCP port 53). Without
     * the flag the same connect is dropped by the engine (`drop_not_ipv4`).
     */
    @Test
    fun `carryIpv6 carries an IPv6 TCP connection through the TUN`() {
        for (carry in listOf(true, false)) {
            check(eventually { !interfaceExists(TUN) }) { "$TUN left over from an earlier test" }
            JniTestSupport.awaitNoOtherClat()
            val cfg = NativeConfig(prefix = JniTestSupport.PREFIX, dnsServers = arrayOf(JniTestSupport.DNS64), mtu = 1500, carryIpv6 = carry)
            assertContains(cfg.toString(), "carryIpv6=$carry")
            val engine = ClatEngine.start(ClatNative.openTun(TUN), cfg, CountingProtector())
            val rule = listOf("ip", "-6", "rule", "add", "from", CLAT_V6, "lookup", "100", "priority", "100")
            try {
                sh("sysctl", "-qw", "net.ipv6.conf.$TUN.disable_ipv6=0")
                sh("ip", "-6", "addr", "add", "$CLAT_V6/64", "dev", TUN, "nodad")
                sh("ip", "link", "set", TUN, "up")
                sh("ip", "-6", "route", "add", "default", "dev", TUN, "table", "100")
                sh(*rule.toTypedArray())
                fun stats() = engine.namedCounters().toMap()
                assertEquals(if (carry) 1L else 0L, stats().getValue("ipv6_carried"))
                val connected = runCatching {
                    Socket().use { s ->
                        s.bind(InetSocketAddress(CLAT_V6, 0))
                        s.connect(InetSocketAddress(DNS64_ADDR, 53), 2000)
                    }
                }
                if (carry) {
                    connected.getOrThrow()
                    assertEquals(1L, stats().getValue("flows_ipv6_total"), "${stats()}")
                } else {
                    assertTrue(connected.isFailure, "connected without carryIpv6")
                    assertEquals(0L, stats().getValue("flows_ipv6_total"), "${stats()}")
                    assertTrue(stats().getValue("drop_not_ipv4") >= 1, "${stats()}")
                }
            } finally {
                engine.close()
                runCatching { sh(*rule.map { if (it == "add") "del" else it }.toTypedArray()) }
            }
            assertTrue(eventually { !interfaceExists(TUN) })
        }
    }

    /** [httpGet] from a socket bound to the CLAT address (the source rule's match). */
    private fun httpGetFromClat(): String =
        Socket().use { s ->
            s.soTimeout = 5000
            s.bind(InetSocketAddress("192.0.0.4", 0))
            s.connect(InetSocketAddress(SERVER, 80), 5000)
            s.getOutputStream().write("GET /index.html HTTP/1.0\r\nHost: $SERVER\r\n\r\n".toByteArray())
            s.getInputStream().readBytes().decodeToString()
        }

    /** Echo through one socket, so that a second echo reuses the engine's UDP mapping. */
    private fun udpEcho(s: DatagramSocket, payload: String): String {
        s.soTimeout = 3000
        val out = payload.toByteArray()
        s.send(DatagramPacket(out, out.size, InetSocketAddress(SERVER, 7)))
        val buf = ByteArray(2048)
        val p = DatagramPacket(buf, buf.size)
        s.receive(p)
        return String(p.data, 0, p.length)
    }

    @Test
    fun `setDns keeps flows, awaitExit blocks until the engine stops`() {
        val h = startEngine(CountingProtector())
        val exit = java.util.concurrent.CompletableFuture<String?>()
        val watcher = Thread({ exit.complete(runCatching { ClatNative.awaitExit(h) }.getOrElse { "threw $it" }) }, "exit-watch")
        watcher.start()
        try {
            DatagramSocket().use { s ->
                assertEquals("dns-1", udpEcho(s, "dns-1"))
                val before = statsMap(h).getValue("flows_udp_total")
                ClatNative.setDns(h, arrayOf(JniTestSupport.DNS64))
                assertEquals("dns-2", udpEcho(s, "dns-2"))
                assertEquals(before, statsMap(h).getValue("flows_udp_total"), "setDns must not reset the mapping")
            }
            Thread.sleep(200)
            assertFalse(exit.isDone, "awaitExit must block while the engine runs")
        } finally {
            assertTrue(ClatNative.stop(h))
        }
        assertNull(exit.get(5, java.util.concurrent.TimeUnit.SECONDS), "a stopped engine has no exit reason")
        watcher.join(5000)
        assertTrue(eventually { !interfaceExists(TUN) })
    }

    /**
     * Engine death through JNI: the TUN deleted under a running engine (what a fatal TUN error
     * is), and the thread blocked in awaitExit wakes with the reason, which exitReason repeats.
     * The app's exit watch (ClatVpnService.watchExit) relies on exactly this.
     */
    @Test
    fun `awaitExit wakes with the reason when the TUN is deleted under the engine`() {
        val h = startEngine(CountingProtector())
        val exit = java.util.concurrent.CompletableFuture<String?>()
        val watcher = Thread({ exit.complete(runCatching { ClatNative.awaitExit(h) }.getOrElse { "threw $it" }) }, "exit-watch")
        watcher.start()
        try {
            assertEquals("jni-echo-death", udpEcho("jni-echo-death"))
            Thread.sleep(200)
            assertFalse(exit.isDone, "awaitExit must block while the engine runs")
            sh("ip", "link", "del", TUN)
            val reason = exit.get(10, java.util.concurrent.TimeUnit.SECONDS)
            assertTrue(reason != null && reason.contains("TUN"), "exit reason: $reason")
            assertFalse(ClatNative.isRunning(h))
            assertEquals(reason, ClatNative.exitReason(h))
        } finally {
            ClatNative.stop(h)
        }
        watcher.join(5000)
    }

    /** Flow events as the app's report gets them, from the pump's thread: (event, app address). */
    private class Recorded : FlowEventSink {
        val events: MutableList<Pair<Any, String?>> = java.util.Collections.synchronizedList(ArrayList())

        override fun flowStarted(e: FlowStart, appAddress: String) {
            events.add(e to appAddress)
        }

        override fun flowEnded(e: FlowEnd) {
            events.add(e to null)
        }

        fun starts() = synchronized(events) { events.mapNotNull { it.first as? FlowStart } }

        fun ends() = synchronized(events) { events.mapNotNull { it.first as? FlowEnd } }
    }

    /**
     * Issue 17's feed end to end: an engine started with `flowEvents`, the app's consumer
     * ([FlowEventPump] over [ClatNative.awaitFlowEvents] on a thread of its own, as
     * ClatVpnService runs it), a real TCP connection and a UDP datagram through the TUN and
     * Tayga. Each comes out as a decoded FlowStart with its destination, port and the app's own
     * source port; stop() while the pump waits returns promptly, and the pump gets the ends the
     * stop reports: the TCP flow's (CLOSED at the time of its close, IPv4 bytes both ways, headers
     * included), still held for TIME_WAIT, and the UDP mapping's (NETWORK_CHANGED), then ends.
     */
    @Test
    fun `TCP and UDP flows come out of awaitFlowEvents decoded, and stop ends the waiting consumer`() {
        val h = startEngine(CountingProtector(), labConfig(flowEvents = 256))
        val sink = Recorded()
        val pump = FlowEventPump({ t -> ClatNative.awaitFlowEvents(h, t) }, sink, FlowEventDecoder())
        val consumer = Thread(pump, "flow-events").apply { start() }
        var stopped = false
        try {
            val request = "GET /index.html HTTP/1.0\r\nHost: $SERVER\r\n\r\n".toByteArray()
            val (tcpPort, page) = Socket().use { s ->
                s.soTimeout = 5000
                s.connect(InetSocketAddress(SERVER, 80), 5000)
                s.getOutputStream().write(request)
                s.localPort to s.getInputStream().readBytes()
            }
            assertContains(page.decodeToString(), "hello from 203.0.113.10")
            val payload = "jni-flow-events"
            val udpPort = DatagramSocket().use { s ->
                assertEquals(payload, udpEcho(s, payload))
                s.localPort
            }

            fun tcpStart() = sink.starts().singleOrNull { it.proto == FlowProto.TCP }
            fun udpStart() = sink.starts().singleOrNull { it.proto == FlowProto.UDP }
            assertTrue(eventually(10_000) { tcpStart() != null && udpStart() != null }, "${sink.events}")
            val tcp = tcpStart()!!
            assertEquals(SERVER, tcp.dst)
            assertEquals(80, tcp.dstPort)
            assertEquals(tcpPort, tcp.appPort)
            assertNull(tcp.name, "a literal, no name")
            assertFalse(tcp.nativeIpv4)
            val udp = udpStart()!!
            assertEquals(SERVER, udp.dst)
            assertEquals(7, udp.dstPort)
            assertEquals(udpPort, udp.appPort)
            assertEquals(setOf("192.0.0.4"), synchronized(sink.events) { sink.events.mapNotNull { it.second }.toSet() })
            // The server closed first (HTTP/1.0), so the engine's side sent the first FIN: the TCP
            // end is reported when the TIME_WAIT hold lets the entry go (60 s), or at stop.
            assertTrue(sink.ends().none { it.id == udp.id }, "the UDP mapping is still open")

            // stop() while the consumer waits: prompt, and the consumer gets what the stop emitted.
            Thread.sleep(200)
            assertTrue(consumer.isAlive, "the consumer waits while the engine runs")
            val t0 = System.nanoTime()
            val stopAtMs = System.currentTimeMillis()
            assertTrue(ClatNative.stop(h))
            stopped = true
            val stopMs = (System.nanoTime() - t0) / 1_000_000
            assertTrue(stopMs < 5_000, "stop took $stopMs ms")
            consumer.join(5_000)
            assertFalse(consumer.isAlive, "the consumer must end when the engine stops")
            assertNull(pump.error)
            val tcpEnd = sink.ends().single { it.id == tcp.id }
            assertEquals(FlowEndReason.CLOSED, tcpEnd.how, "closed in order before the stop: $tcpEnd")
            assertTrue(tcpEnd.atMs in tcp.atMs..stopAtMs, "the time of the close: $tcp $tcpEnd")
            // Whole IPv4 packets: at least the payload and a 40-byte header per packet.
            assertTrue(tcpEnd.bytesUp >= request.size + 3 * 40, "$tcpEnd")
            assertTrue(tcpEnd.bytesDown >= page.size + 2 * 40, "$tcpEnd")
            val udpEnd = sink.ends().single { it.id == udp.id }
            assertEquals(FlowEndReason.NETWORK_CHANGED, udpEnd.how)
            assertEquals((20 + 8 + payload.length).toLong(), udpEnd.bytesUp, "one datagram up: $udpEnd")
            assertEquals((20 + 8 + payload.length).toLong(), udpEnd.bytesDown, "one datagram down: $udpEnd")
            assertEquals(0, pump.decoder.malformed)
            assertThrows<IllegalStateException> { ClatNative.awaitFlowEvents(h, 0) }
        } finally {
            if (!stopped) ClatNative.stop(h)
            consumer.join(5_000)
        }
        assertTrue(eventually { !interfaceExists(TUN) })
    }

    /**
     * The queue outlives stop() until drained: a consumer that was not waiting when the engine
     * stopped (busy with the previous batch) still gets the ends the engine emitted as it stopped,
     * then null, and only then does the handle throw like every stopped one.
     */
    @Test
    fun `the ends emitted by stop are returned after stop, then null`() {
        val h = startEngine(CountingProtector(), labConfig(flowEvents = 16))
        val decoder = FlowEventDecoder()
        val sink = Recorded()
        val udpPort = try {
            val port = DatagramSocket().use { s ->
                assertEquals("jni-after-stop", udpEcho(s, "jni-after-stop"))
                s.localPort
            }
            assertTrue(
                eventually(5_000) {
                    ClatNative.awaitFlowEvents(h, 500)?.let { decoder.decode(it.records, it.names, sink) }
                    sink.starts().any { it.appPort == port }
                },
                "${sink.events}",
            )
            port
        } finally {
            assertTrue(ClatNative.stop(h))
        }
        val udp = sink.starts().single { it.appPort == udpPort }
        val batch = ClatNative.awaitFlowEvents(h, 0)
        assertTrue(batch != null && batch.size >= 1, "the stop's ends after stop: $batch")
        decoder.decode(batch!!.records, batch.names, sink)
        assertEquals(FlowEndReason.NETWORK_CHANGED, sink.ends().single { it.id == udp.id }.how)
        assertNull(ClatNative.awaitFlowEvents(h, 10_000), "drained and closed: null at once")
        assertThrows<IllegalStateException> { ClatNative.awaitFlowEvents(h, 0) }
        assertTrue(eventually { !interfaceExists(TUN) })
    }

    @Test
    fun `flowEvents 0 yields no events`() {
        val h = startEngine(CountingProtector())
        try {
            assertContains(httpGet(), "hello from 203.0.113.10")
            assertEquals("jni-no-events", udpEcho("jni-no-events"))
            assertTrue(statsMap(h).getValue("flows_tcp_total") >= 1)
            val t0 = System.nanoTime()
            assertNull(ClatNative.awaitFlowEvents(h, 10_000), "no queue: nothing will come")
            assertTrue(System.nanoTime() - t0 < 5_000_000_000L, "null at once, not after the timeout")
            assertEquals(0L, statsMap(h).getValue("flow_events_dropped"))
        } finally {
            assertTrue(ClatNative.stop(h))
        }
        assertTrue(eventually { !interfaceExists(TUN) })
    }

    @Test
    fun `repeated start and stop leaks no descriptors`() {
        val baseline = fdCount()
        repeat(3) {
            val h = startEngine(CountingProtector())
            assertTrue(ClatNative.stop(h))
            assertTrue(eventually { !interfaceExists(TUN) })
        }
        assertTrue(eventually { fdCount() <= baseline + 2 }, "fds: baseline $baseline, now ${fdCount()}")
    }

    /** Starts and stops an engine with a fresh protector; only a weak reference escapes. */
    private fun startStopWithThrowawayProtector(): java.lang.ref.WeakReference<SocketProtector> {
        val p = CountingProtector()
        val h = startEngine(p)
        assertEquals("jni-echo-gc", udpEcho("jni-echo-gc"))
        assertTrue(p.calls.get() >= 1)
        assertTrue(ClatNative.stop(h))
        return java.lang.ref.WeakReference(p)
    }

    @Test
    fun `stop releases the global reference to the protector`() {
        val ref = startStopWithThrowawayProtector()
        assertTrue(JniTestSupport.collected(ref), "the protector is still pinned after stop")
        assertTrue(eventually { !interfaceExists(TUN) })
    }

    private fun flowFailsButJvmSurvives(protector: CountingProtector) {
        val h = startEngine(protector)
        try {
            val outcome = try {
                httpGet()
            } catch (e: IOException) {
                "failed: $e"
            }
            assertFalse(outcome.contains("hello from"), "the flow must fail: $outcome")
            assertTrue(protector.calls.get() >= 1, "protector was not asked")
            assertTrue(ClatNative.isRunning(h), "the engine must survive: ${ClatNative.exitReason(h)}")
            assertTrue(statsMap(h).getValue("jni_protect_calls") >= 1)
        } finally {
            assertTrue(ClatNative.stop(h))
        }
        assertTrue(eventually { !interfaceExists(TUN) })
    }

    @Test
    fun `a protector that returns false fails the flow only`() = flowFailsButJvmSurvives(CountingProtector(false))

    @Test
    fun `a protector that throws fails the flow only`() = flowFailsButJvmSurvives(CountingProtector(null))

    @Test
    fun `RFC 7050 discovery through JNI finds the lab prefix`() {
        val p = CountingProtector()
        val found = ClatNative.discover(arrayOf(JniTestSupport.DNS64), 3000, p)
        assertTrue(found.isNotEmpty())
        assertEquals(JniTestSupport.PREFIX, found[0].prefix, found.joinToString())
        assertEquals("rfc7050", found[0].source)
        assertTrue(found[0].ttlSeconds > 0)
        assertTrue(p.calls.get() >= 1)
    }
}
