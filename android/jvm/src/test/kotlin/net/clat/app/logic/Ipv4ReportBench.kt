package net.clat.app.logic

import java.lang.management.ManagementFactory
import kotlin.random.Random

/**
 * Cost of the IPv4 report (issue 17 item 4): CPU per 1,000 flows (start with attribution, end)
 * and bytes stored per flow recorded. Prints figures; asserts nothing (a benchmark, not a test).
 *
 *   mvn -B -o -q -f android/jvm/pom.xml test-compile
 *   java -cp android/jvm/target/classes:android/jvm/target/test-classes:$KOTLIN_STDLIB \
 *       net.clat.app.logic.Ipv4ReportBenchKt
 *
 * The platform lookups are an in-memory table here: the binder call of getConnectionOwnerUid on a
 * phone is not included (no device here).
 */
fun main() {
    val day = 86_400_000L
    val t0 = 1_795_996_800_000L - 29 * day
    val bean = ManagementFactory.getThreadMXBean()
    for ((label, apps, dsts, names, flows) in listOf(
        Scenario("light: 10 apps, 200 destinations, 100 names", 10, 200, 100, 30_000),
        Scenario("typical: 40 apps, 1,000 destinations, 300 names", 40, 1000, 300, 300_000),
        Scenario("wide: 200 apps, 100,000 destinations, 50,000 names", 200, 100_000, 50_000, 300_000),
    )) {
        val rnd = Random(42)
        val owners = object : ConnectionOwners {
            override val available = true
            override fun ownerUid(proto: FlowProto, localAddress: String, localPort: Int, remoteAddress: String, remotePort: Int) =
                10_000 + localPort % apps
            override fun packagesForUid(uid: Int) = listOf("com.example.app$uid")
        }
        val dstText = Array(dsts) { "198.${51 + it / 65536}.${(it / 256) % 256}.${it % 256}" }
        val nameText = Array(names) { "host$it.example.com" }
        val events = List(flows) { i ->
            val at = t0 + i.toLong() * (30 * day / flows)
            FlowStart(i.toLong(), at, if (i % 10 == 0) FlowProto.UDP else FlowProto.TCP, dstText[rnd.nextInt(dsts)], 443,
                1024 + rnd.nextInt(60000), if (rnd.nextInt(10) < 6) nameText[rnd.nextInt(names)] else null, false)
        }
        var cpuPer1000 = 0.0
        var store = Ipv4UsageStore()
        repeat(3) { // the first rounds warm the JIT; the last is reported
            store = Ipv4UsageStore()
            val attributor = FlowAttributor(owners)
            val c0 = bean.currentThreadCpuTime
            for (e in events) {
                store.flowStarted(e, attributor.owner(e, "192.0.0.3"))
                store.flowEnded(FlowEnd(e.id, e.atMs + 1000, 1500, 40_000, FlowEndReason.CLOSED))
            }
            cpuPer1000 = (bean.currentThreadCpuTime - c0) / 1e6 / (flows / 1000.0)
        }
        val records = store.records()
        val bytes = Ipv4UsageFile.encode(records).size
        println("$label: $flows flows over 30 days")
        println("  CPU per 1,000 flows (start + attribution + end): ${"%.3f".format(cpuPer1000)} ms")
        println("  stored: $bytes bytes in ${records.size} app-day records = ${"%.2f".format(bytes.toDouble() / flows)} bytes per flow, " +
            "largest record ${records.maxOf { Ipv4UsageFile.encode(listOf(it)).size - 14 }} bytes")
    }
}

private data class Scenario(val label: String, val apps: Int, val dsts: Int, val names: Int, val flows: Int)
