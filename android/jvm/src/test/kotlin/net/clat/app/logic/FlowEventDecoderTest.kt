package net.clat.app.logic

import java.util.ArrayDeque
import net.clat.core.ClatException
import net.clat.core.FlowEventBatch
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertNull
import org.junit.jupiter.api.Test

/** Collects what a decoder or pump hands over, as text in arrival order. */
private class Collect : FlowEventSink {
    val got = ArrayList<Any>()
    val addresses = ArrayList<String>()

    override fun flowStarted(e: FlowStart, appAddress: String) {
        got.add(e)
        addresses.add(appAddress)
    }

    override fun flowEnded(e: FlowEnd) {
        got.add(e)
    }
}

/**
 * The records below are written out by hand from the layout in docs/flow-events.md ("Through
 * JNI"), not made by any encoder: 192.0.0.4 = 0xc0000004, port 40000 = 0x9c40, 203.0.113.10 =
 * 0xcb00710a, port 53 = 0x35. The first two are the same longs rust-core/jni/src/flow_records.rs's
 * test expects its encoder to write, so the two sides meet on them.
 */
class FlowEventDecoderTest {
    private val udpStartNative = longArrayOf(0x0001_0101, 42, 1_700_000_000_123, 0xc000_0004_9c40, 0xcb00_710a_0035)
    private val timedOutEnd = longArrayOf(0x0202, 42, 1_700_000_001_000, 1234, Long.MAX_VALUE)

    @Test
    fun `a start and an end decode field by field`() {
        val sink = Collect()
        val d = FlowEventDecoder()
        val n = d.decode(udpStartNative + timedOutEnd, arrayOf("www.example.org", null), sink)
        assertEquals(2, n)
        assertEquals(
            listOf(
                FlowStart(42, 1_700_000_000_123, FlowProto.UDP, "203.0.113.10", 53, 40000, "www.example.org", true),
                FlowEnd(42, 1_700_000_001_000, 1234, Long.MAX_VALUE, FlowEndReason.TIMED_OUT),
            ),
            sink.got,
        )
        assertEquals(listOf("192.0.0.4"), sink.addresses)
        assertEquals(0, d.malformed)
        assertEquals(2, d.decoded)
    }

    @Test
    fun `every proto and reason code, a literal without a name, the highest address and port`() {
        val sink = Collect()
        val records = ArrayList<Long>()
        // TCP (0) and ICMP (2), not native; destination 255.255.255.255:65535, 0.0.0.0:0.
        records += listOf(0x0001L, 1, 10, 0xc000_0004_0001, 0xffff_ffff_ffff)
        records += listOf(0x0201L, 2, 11, 0xc000_0004_0007, 0)
        for (how in 0..6) records += listOf(0x02L or (how.toLong() shl 8), 100L + how, 20, 0, 0)
        FlowEventDecoder().decode(records.toLongArray(), arrayOfNulls(9), sink)
        val starts = sink.got.filterIsInstance<FlowStart>()
        assertEquals(listOf(FlowProto.TCP, FlowProto.ICMP), starts.map { it.proto })
        assertEquals("255.255.255.255", starts[0].dst)
        assertEquals(65535, starts[0].dstPort)
        assertEquals(1, starts[0].appPort)
        assertNull(starts[0].name)
        assertEquals(false, starts[0].nativeIpv4)
        assertEquals("0.0.0.0", starts[1].dst)
        assertEquals(7, starts[1].appPort)
        assertEquals(
            listOf(
                FlowEndReason.CLOSED, FlowEndReason.RESET, FlowEndReason.TIMED_OUT, FlowEndReason.REFUSED,
                FlowEndReason.UNREACHABLE, FlowEndReason.EVICTED, FlowEndReason.NETWORK_CHANGED,
            ),
            sink.got.filterIsInstance<FlowEnd>().map { it.how },
        )
    }

    @Test
    fun `records that break the layout are counted and skipped, the rest go on`() {
        val bad = listOf(
            longArrayOf(0, 0, 0, 0, 0), // a zeroed record: kind 0
            longArrayOf(0x03, 1, 1, 0, 0), // kind 3
            longArrayOf(0x0301, 1, 1, 0xc000_0004_9c40, 0xcb00_710a_0035), // proto 3
            longArrayOf(0x0002_0001, 1, 1, 0xc000_0004_9c40, 0xcb00_710a_0035), // bit 17 means nothing
            longArrayOf(0x0001, 1, 1, 0xc000_0004_9c40, 1L shl 48), // destination past 48 bits
            longArrayOf(0x0001, 1, 1, -1, 0xcb00_710a_0035), // negative source
            longArrayOf(0x0702, 1, 1, 0, 0), // how 7
            longArrayOf(0x0001_0002, 1, 1, 0, 0), // native bit on an end
            longArrayOf(0x0002, 1, 1, -5, 0), // negative bytes
        )
        val records = udpStartNative + bad.reduce { a, b -> a + b } + timedOutEnd + longArrayOf(0x0002, 9)
        val sink = Collect()
        val d = FlowEventDecoder()
        // Fewer names than events: the rest have none.
        assertEquals(2, d.decode(records, arrayOf("www.example.org"), sink))
        assertEquals(bad.size + 1L, d.malformed, "9 bad records and a partial one")
        assertEquals(listOf(42L, 42L), sink.got.map { if (it is FlowStart) it.id else (it as FlowEnd).id })
    }

    @Test
    fun `ids pass unchanged so that only the engine's own id closes a flow`() {
        // Ids as the engine gives them: seeded from the wall clock (ms << 20), far above 2^40.
        val big = (1_700_000_000_000L shl 20) + 42
        val start = udpStartNative.copyOf().also { it[1] = big }
        val otherEnd = timedOutEnd.copyOf().also { it[1] = big + 1 }
        val ownEnd = timedOutEnd.copyOf().also { it[1] = big }
        val got = Collect()
        val d = FlowEventDecoder()
        d.decode(start + otherEnd + ownEnd, arrayOf(null, null, null), got)
        assertEquals(listOf(big, big + 1, big), got.got.map { if (it is FlowStart) it.id else (it as FlowEnd).id })
        val store = Ipv4UsageStore()
        store.flowStarted(got.got[0] as FlowStart, FlowOwner(10123, listOf("com.example.a")))
        store.flowEnded(got.got[1] as FlowEnd)
        assertEquals(1, store.unmatchedEnds, "another engine's id must not close this flow")
        store.flowEnded(got.got[2] as FlowEnd)
        assertEquals(1, store.unmatchedEnds)
        assertEquals(0, d.malformed)
    }
}

class FlowEventPumpTest {
    private val start = longArrayOf(0x0001, 7, 1_700_000_000_000, 0xc000_0004_9c40, 0xcb00_710a_01bb)
    private val end = longArrayOf(0x0002, 7, 1_700_000_000_500, 600, 4000)

    /** A source that plays [batches] (null = the end, an exception = thrown), recording the timeouts. */
    private class Script(vararg batches: Any?) : (Int) -> FlowEventBatch? {
        val left = ArrayDeque<Any>(batches.map { it ?: END })
        val timeouts = ArrayList<Int>()

        override fun invoke(timeoutMs: Int): FlowEventBatch? {
            timeouts.add(timeoutMs)
            return when (val next = left.poll() ?: error("asked after the end")) {
                END -> null
                is RuntimeException -> throw next
                else -> next as FlowEventBatch
            }
        }

        companion object {
            val END = Any()
        }
    }

    @Test
    fun `events go to the sink in order until the source says no more`() {
        val empty = FlowEventBatch(LongArray(0), arrayOf())
        val src = Script(FlowEventBatch(start, arrayOf("example.org")), empty, FlowEventBatch(end, arrayOf(null)), null)
        val sink = Collect()
        val pump = FlowEventPump(src, sink, waitMs = 60_000)
        pump.run()
        assertEquals(listOf(7L, 7L), sink.got.map { if (it is FlowStart) it.id else (it as FlowEnd).id })
        assertEquals("example.org", (sink.got[0] as FlowStart).name)
        assertEquals(443, (sink.got[0] as FlowStart).dstPort)
        assertEquals(listOf(60_000, 60_000, 60_000, 60_000), src.timeouts)
        assertEquals(0, src.left.size)
        assertNull(pump.error)
    }

    @Test
    fun `a stopped handle ends the loop quietly, a broken bridge with its reason`() {
        val stopped = FlowEventPump(Script(IllegalStateException("no engine with handle 5")), Collect())
        stopped.run()
        assertNull(stopped.error)
        val broken = FlowEventPump(Script(FlowEventBatch(start, arrayOf(null)), ClatException("internal error (panic): x")), Collect())
        broken.run()
        assertEquals("internal error (panic): x", broken.error)
        assertEquals(1, broken.decoder.decoded)
    }

    @Test
    fun `a sink that throws loses that event only`() {
        val sink = object : FlowEventSink {
            val ends = ArrayList<FlowEnd>()

            override fun flowStarted(e: FlowStart, appAddress: String) = throw SecurityException("binder said no")

            override fun flowEnded(e: FlowEnd) {
                ends.add(e)
            }
        }
        val pump = FlowEventPump(Script(FlowEventBatch(start + end, arrayOf(null, null)), null), sink)
        pump.run()
        assertEquals(1, pump.sinkFailures)
        assertEquals(listOf(4000L), sink.ends.map { it.bytesDown })
    }

    @Test
    fun `the pump feeds the IPv4 report, attributed by the event's own app address and port, bytes at the end`() {
        val asked = ArrayList<String>()
        val owners = object : ConnectionOwners {
            override val available = true

            override fun ownerUid(proto: FlowProto, localAddress: String, localPort: Int, remoteAddress: String, remotePort: Int): Int {
                asked.add("$proto $localAddress:$localPort -> $remoteAddress:$remotePort")
                return 10123
            }

            override fun packagesForUid(uid: Int) = listOf("com.example.a")
        }
        val recorder = Ipv4Recorder(Ipv4UsageStore(), FlowAttributor(owners), null, { Ipv4ReportSettings() })
        FlowEventPump(Script(FlowEventBatch(start, arrayOf("www.example.org")), FlowEventBatch(end, arrayOf(null)), null), recorder).run()
        assertEquals(listOf("TCP 192.0.0.4:40000 -> 203.0.113.10:443"), asked)
        val u = recorder.store.usage(ReportWindow.TODAY, 1_700_000_001_000).single()
        assertEquals(FlowOwner(10123, listOf("com.example.a")), u.owner)
        assertEquals(1, u.flows)
        assertEquals(600, u.bytesUp)
        assertEquals(4000, u.bytesDown)
        assertEquals(listOf("203.0.113.10"), u.destinations)
        assertEquals(listOf("www.example.org"), u.names)
    }
}
