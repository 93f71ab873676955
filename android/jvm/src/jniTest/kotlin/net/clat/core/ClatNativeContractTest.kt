package net.clat.core

import java.lang.reflect.InvocationTargetException
import java.net.DatagramSocket
import java.net.InetAddress
import java.net.InetSocketAddress
import kotlin.test.assertContains
import kotlin.test.assertEquals
import kotlin.test.assertFalse
import kotlin.test.assertTrue
import org.junit.jupiter.api.BeforeAll
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.assertThrows

/**
 * The JNI contract that needs no lab: argument checking, stale handles, exceptions instead of
 * crashes, discovery errors. Runs anywhere the host libclat.so loads.
 */
class ClatNativeContractTest {
    companion object {
        @JvmStatic
        @BeforeAll
        fun load() = JniTestSupport.load()
    }

    private val ok = JniTestSupport.labConfig()

    @Test
    fun `bad configurations throw IllegalArgumentException naming the problem`() {
        val cases = listOf(
            NativeConfig(prefix = "2001:db8::/33") to "/33",
            NativeConfig(prefix = "not a prefix") to "not an IPv6 prefix",
            NativeConfig(prefix = "2001:db8:64::1/96") to "did you mean 2001:db8:64::/96",
            // RFC 6052 section 2.2, the translator's own check (clat run --pref64 makes it too).
            NativeConfig(prefix = "2001:db8:0:0:ff00::/96") to "bits 64-71 must be zero",
            NativeConfig(prefix = JniTestSupport.PREFIX, dnsServers = arrayOf("[2001:db8::53]:0")) to "port 0",
            NativeConfig(prefix = JniTestSupport.PREFIX, dnsServers = arrayOf("bogus")) to "\"bogus\"",
            NativeConfig(prefix = JniTestSupport.PREFIX, mtu = 100) to "mtu 100",
            NativeConfig(prefix = JniTestSupport.PREFIX, maxFlows = -1) to "maxFlows",
            NativeConfig(prefix = JniTestSupport.PREFIX, udpTimeoutSec = -5) to "udpTimeoutSec",
            NativeConfig(prefix = JniTestSupport.PREFIX, clatAddress = "300.1.2.3") to "clatAddress",
            NativeConfig(prefix = JniTestSupport.PREFIX, flowEvents = -1) to "flowEvents -1",
            NativeConfig(prefix = JniTestSupport.PREFIX, flowEvents = Int.MAX_VALUE) to "flow_events",
        )
        val before = ClatNative.engineCount()
        for ((cfg, want) in cases) {
            val e = assertThrows<IllegalArgumentException>(cfg.toString()) {
                ClatNative.start(-1, cfg, CountingProtector())
            }
            assertContains(e.message ?: "", want, message = "for $cfg")
        }
        assertEquals(before, ClatNative.engineCount(), "no engine may be left behind")
    }

    @Test
    fun `the engine's own validation is reported too`() {
        // Same address for the CLAT and the internal NAT address: only the engine knows why
        // that cannot work, and its message must come through.
        val cfg = NativeConfig(prefix = JniTestSupport.PREFIX, clatAddress = "192.0.0.4", natAddress = "192.0.0.4")
        val e = assertThrows<IllegalArgumentException> { ClatNative.start(-1, cfg, CountingProtector()) }
        assertTrue((e.message ?: "").isNotBlank())
    }

    @Test
    fun `a bad descriptor throws instead of crashing`() {
        val e = assertThrows<IllegalArgumentException> { ClatNative.start(-1, ok, CountingProtector()) }
        assertContains(e.message!!, "tunFd -1")
        val e2 = assertThrows<IllegalArgumentException> { ClatNative.start(987_654, ok, CountingProtector()) }
        assertContains(e2.message!!, "not open")
    }

    @Test
    fun `calls on unknown handles throw IllegalStateException and stop is harmless`() {
        for (h in listOf(0L, -7L, 123_456_789L)) {
            val e = assertThrows<IllegalStateException> { ClatNative.counters(h) }
            assertEquals("no engine with handle $h", e.message)
            assertThrows<IllegalStateException> { ClatNative.isRunning(h) }
            assertThrows<IllegalStateException> { ClatNative.exitReason(h) }
            assertThrows<IllegalStateException> { ClatNative.setPrefix(h, "64:ff9b::/96") }
            assertThrows<IllegalStateException> { ClatNative.networkChanged(h, null) }
            assertThrows<IllegalStateException> { ClatNative.setDns(h, arrayOf(JniTestSupport.DNS64)) }
            assertThrows<IllegalStateException> { ClatNative.setIpv4Path(h, true) }
            assertThrows<IllegalStateException> { ClatNative.setIpv4Path(h, false) }
            assertThrows<IllegalStateException> { ClatNative.awaitExit(h) }
            assertThrows<IllegalStateException> { ClatNative.awaitFlowEvents(h, 0) }
            assertFalse(ClatNative.stop(h))
            assertFalse(ClatNative.stop(h))
        }
    }

    @Test
    fun `arguments are checked before the handle`() {
        assertThrows<IllegalArgumentException> { ClatNative.setPrefix(42L, "2001:db8::/33") }
        assertThrows<IllegalArgumentException> { ClatNative.setPrefix(42L, "2001:db8:0:0:ff00::/96") }
        assertThrows<IllegalArgumentException> { ClatNative.networkChanged(42L, arrayOf("nope")) }
        @Suppress("UNCHECKED_CAST")
        val withNull = arrayOfNulls<String>(1) as Array<String>
        val e = assertThrows<IllegalArgumentException> { ClatNative.networkChanged(42L, withNull) }
        assertContains(e.message!!, "dnsServers[0] is null")
        assertThrows<IllegalArgumentException> { ClatNative.setDns(42L, arrayOf("nope")) }
        val e3 = assertThrows<IllegalArgumentException> { ClatNative.awaitFlowEvents(42L, -1) }
        assertContains(e3.message!!, "timeoutMs -1")
        val e2 = assertThrows<IllegalArgumentException> { ClatNative.setDns(42L, withNull) }
        assertContains(e2.message!!, "dnsServers[0] is null")
    }

    @Test
    fun `link-local resolvers are taken with their zone and refused without one`() {
        // Accepted: the check passes and the stale handle is what fails.
        for (r in listOf("fe80::1%lo", "[fe80::1%lo]:53", "fe80::1%1")) {
            assertThrows<IllegalStateException>(r) { ClatNative.setDns(42L, arrayOf(r)) }
        }
        val e = assertThrows<IllegalArgumentException> { ClatNative.setDns(42L, arrayOf("fe80::1")) }
        assertContains(e.message!!, "link-local")
        val e2 = assertThrows<IllegalArgumentException> { ClatNative.setDns(42L, arrayOf("fe80::1%nosuchif9")) }
        assertContains(e2.message!!, "no interface named")
    }

    @Test
    fun `discover asks a link-local resolver on its interface`() {
        // A link-local address of this host, spelt as NetworkMonitor passes it: "fe80::...%ifname".
        val (nif, ll) = java.net.NetworkInterface.networkInterfaces().toList().flatMap { n ->
            n.inetAddresses.toList().filter { it is java.net.Inet6Address && it.isLinkLocalAddress }.map { n to it }
        }.firstOrNull() ?: return println("skipped: no link-local address on this host")
        DatagramSocket(InetSocketAddress(ll, 0)).use { silent ->
            val literal = ll.hostAddress.substringBefore('%') + "%" + nif.name
            val p = CountingProtector()
            val e = assertThrows<ClatException> { ClatNative.discover(arrayOf("[$literal]:${silent.localPort}"), 300, p) }
            // Sent (the query socket was protected) and then silence: no EINVAL for a missing scope.
            assertContains(e.message!!, "discovery failed")
            assertTrue(p.calls.get() >= 1)
        }
    }

    @Test
    fun `counter names come once, stable, unique, ending with the bridge's own`() {
        val names = ClatNative.counterNames().toList()
        assertEquals(names, ClatNative.counterNames().toList())
        assertEquals(names.size, names.toSet().size)
        assertEquals("tun_rx_packets", names.first())
        assertEquals("jni_protect_calls", names.last())
        assertTrue("flows_tcp" in names)
        assertEquals(names, ClatEngine.counterNames)
    }

    @Test
    fun `discover returns DiscoveredPrefix objects`() {
        // A one-shot DNS64 on ::1: answers ipv4only.arpa AAAA with 64:ff9b::192.0.0.170, TTL 300.
        DatagramSocket(InetSocketAddress(InetAddress.getByName("::1"), 0)).use { server ->
            val t = Thread {
                val buf = ByteArray(512)
                val q = java.net.DatagramPacket(buf, buf.size)
                server.receive(q)
                val r = buf.copyOf(q.length).toMutableList()
                r[2] = (r[2].toInt() or 0x80).toByte() // QR
                r[7] = 1 // ANCOUNT
                val rr = byteArrayOf(0xc0.toByte(), 0x0c, 0, 28, 0, 1, 0, 0, 0x01, 0x2c, 0, 16) +
                    InetAddress.getByName("64:ff9b::c000:aa").address
                val out = (r + rr.toList()).toByteArray()
                server.send(java.net.DatagramPacket(out, out.size, q.socketAddress))
            }.apply { start() }
            val found = ClatNative.discover(arrayOf("[::1]:${server.localPort}"), 3000, null)
            t.join(5000)
            assertEquals(listOf(DiscoveredPrefix("64:ff9b::/96", "rfc7050", 300)), found.toList())
        }
    }

    @Test
    fun `ClatEngine over a stale handle throws like the core, and closing twice is harmless`() {
        val start = ClatEngine::class.java.getDeclaredConstructor(Long::class.javaPrimitiveType).apply { isAccessible = true }
        val engine = start.newInstance(55_555L)
        engine.use { e ->
            assertThrows<IllegalStateException> { e.counters() }
            assertThrows<IllegalStateException> { e.isRunning }
            assertThrows<IllegalStateException> { e.setDns(arrayOf("fe80::1%lo")) }
            assertThrows<IllegalArgumentException> { e.setPrefix("2001:db8::/33") }
        }
        engine.close()
        assertFalse(engine.stop())
        val bad = assertThrows<IllegalArgumentException> { ClatEngine.start(-1, ok, CountingProtector()) }
        assertContains(bad.message!!, "tunFd -1")
    }

    /** Kotlin's types forbid nulls; Java callers (reflection here) can still pass them. */
    private fun invokeRaw(name: String, vararg args: Any?): Throwable {
        val m = ClatNative::class.java.methods.single { it.name == name }
        val e = assertThrows<InvocationTargetException> { m.invoke(null, *args) }
        return e.targetException
    }

    @Test
    fun `null arguments throw NullPointerException`() {
        val e = invokeRaw("start", -1, null, CountingProtector())
        assertTrue(e is NullPointerException, "$e")
        assertContains(e.message!!, "config")
        val e2 = invokeRaw("start", -1, ok, null)
        assertTrue(e2 is NullPointerException, "$e2")
        assertContains(e2.message!!, "protector")
        assertTrue(invokeRaw("setPrefix", 1L, null) is NullPointerException)
        assertTrue(invokeRaw("setDns", 1L, null) is NullPointerException)
        assertTrue(invokeRaw("discover", null, 100, null) is NullPointerException)
        assertTrue(invokeRaw("openTun", null) is NullPointerException)
    }

    @Test
    fun `discover against a silent resolver fails with ClatException within the timeout`() {
        DatagramSocket(InetSocketAddress(InetAddress.getByName("::1"), 0)).use { silent ->
            val protector = CountingProtector()
            val t0 = System.nanoTime()
            val e = assertThrows<ClatException> {
                ClatNative.discover(arrayOf("[::1]:${silent.localPort}"), 500, protector)
            }
            val ms = (System.nanoTime() - t0) / 1_000_000
            assertContains(e.message!!, "discovery failed")
            assertTrue(ms < 5000, "took $ms ms")
            assertTrue(protector.calls.get() >= 1, "the query socket must be protected")
        }
    }

    @Test
    fun `discover against an unused port fails with ClatException`() {
        val port = DatagramSocket(InetSocketAddress(InetAddress.getByName("::1"), 0)).use { it.localPort }
        val e = assertThrows<ClatException> { ClatNative.discover(arrayOf("[::1]:$port"), 500, null) }
        assertContains(e.message!!, "[::1]:$port")
    }

    @Test
    fun `a protector that refuses or throws fails discovery, not the JVM`() {
        DatagramSocket(InetSocketAddress(InetAddress.getByName("::1"), 0)).use { silent ->
            for (answer in listOf(false, null)) {
                val p = CountingProtector(answer)
                val e = assertThrows<ClatException> {
                    ClatNative.discover(arrayOf("[::1]:${silent.localPort}"), 500, p)
                }
                assertTrue(p.calls.get() >= 1)
                assertTrue(e.message!!.isNotBlank())
            }
        }
        // The JVM and the library still work afterwards.
        assertFalse(ClatNative.stop(99_999L))
    }

    /** Runs a failing discovery with a fresh protector; only a weak reference escapes. */
    private fun discoverWithThrowawayProtector(port: Int): java.lang.ref.WeakReference<SocketProtector> {
        val p = CountingProtector()
        assertThrows<ClatException> { ClatNative.discover(arrayOf("[::1]:$port"), 200, p) }
        assertTrue(p.calls.get() >= 1)
        return java.lang.ref.WeakReference(p)
    }

    @Test
    fun `discover releases its global reference to the protector`() {
        DatagramSocket(InetSocketAddress(InetAddress.getByName("::1"), 0)).use { silent ->
            val ref = discoverWithThrowawayProtector(silent.localPort)
            assertTrue(JniTestSupport.collected(ref), "the protector is still pinned after discover returned")
        }
    }

    @Test
    fun `discover checks its arguments`() {
        assertThrows<IllegalArgumentException> { ClatNative.discover(arrayOf("[::1]:53"), 0, null) }
        assertThrows<IllegalArgumentException> { ClatNative.discover(emptyArray(), 100, null) }
        assertThrows<IllegalArgumentException> { ClatNative.discover(arrayOf("resolver.example"), 100, null) }
    }
}
