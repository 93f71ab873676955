package net.clat.core

import java.io.File
import java.net.NetworkInterface
import java.util.concurrent.TimeUnit
import java.util.concurrent.atomic.AtomicInteger

/**
 * Helpers shared by the JNI tests. They load the host build of libclat.so through the same
 * [ClatNative.load] the app uses (system property `clat.native.lib` or `clat.native.dir`).
 */
object JniTestSupport {
    /** Lab constants (tests/lab/README.md, "Address plan"). */
    const val PREFIX = "2001:db8:64::/96"
    const val DNS64 = "[2001:db8:1::53]:53"
    const val SERVER = "203.0.113.10"
    const val TUN = "clatjni0"

    fun load() = ClatNative.load()

    /** Open descriptors of this JVM. */
    fun fdCount(): Int = File("/proc/self/fd").list()!!.size

    /**
     * True when the JVM runs in the lab's `phone` namespace (`ip netns exec phone ...`), by the
     * namespace's name, not by its contents: a broken lab must fail the lab tests, not skip them.
     */
    fun inPhoneNamespace(): Boolean =
        try {
            sh("ip", "netns", "identify").trim().lines().contains("phone")
        } catch (_: Exception) {
            false
        }

    fun interfaceExists(name: String): Boolean = NetworkInterface.getByName(name) != null

    /** Runs a command, failing the test with its output if it does not exit 0; returns stdout. */
    fun sh(vararg cmd: String): String {
        val p = ProcessBuilder(*cmd).redirectErrorStream(true).start()
        val out = p.inputStream.bufferedReader().readText()
        check(p.waitFor(20, TimeUnit.SECONDS)) { "timeout: ${cmd.joinToString(" ")}" }
        check(p.exitValue() == 0) { "${cmd.joinToString(" ")} -> exit ${p.exitValue()}: $out" }
        return out
    }

    /**
     * Waits until no other CLAT (e.g. an e2e test's `clat run`) is up in the shared `phone`
     * namespace, which has no IPv4 routes but a CLAT's: two CLATs cannot share 192.0.0.0/29
     * and the IPv4 default route (the kernel would send one engine's packets to the other).
     */
    fun awaitNoOtherClat(ms: Long = 90_000) {
        val free = eventually(ms) { sh("ip", "-4", "route").isBlank() }
        check(free) { "another CLAT is up in this namespace: ${sh("ip", "-4", "route")}" }
    }

    /** Polls [cond] until it holds or [ms] pass; returns its last value. */
    fun eventually(ms: Long = 3000, cond: () -> Boolean): Boolean {
        val end = System.nanoTime() + ms * 1_000_000
        while (System.nanoTime() < end) {
            if (cond()) return true
            Thread.sleep(if (ms > 10_000) 500 else 50)
        }
        return cond()
    }

    /** True once [ref]'s object has been garbage collected (nothing, native code included, pins it). */
    fun collected(ref: java.lang.ref.WeakReference<*>): Boolean =
        eventually(5000) {
            System.gc()
            ref.get() == null
        }

    /** The counters by name: [ClatNative.counterNames] paired with [ClatNative.counters]. */
    fun statsMap(handle: Long): Map<String, Long> {
        val names = ClatNative.counterNames()
        val values = ClatNative.counters(handle)
        check(names.size == values.size) { "${names.size} names for ${values.size} values" }
        return names.zip(values.asList()).toMap()
    }

    /** A valid configuration for the lab. */
    fun labConfig(
        prefix: String = PREFIX,
        dns: Array<String> = arrayOf(DNS64),
        flowEvents: Int = 0,
    ) = NativeConfig(prefix = prefix, dnsServers = dns, mtu = 1500, flowEvents = flowEvents)
}

/** Counts calls, remembers the descriptors, answers [answer] (or throws when null). */
class CountingProtector(private val answer: Boolean? = true) : SocketProtector {
    val calls = AtomicInteger()
    val threads: MutableSet<String> = java.util.concurrent.ConcurrentHashMap.newKeySet()

    override fun protect(fd: Int): Boolean {
        calls.incrementAndGet()
        threads.add(Thread.currentThread().name)
        check(fd >= 0) { "negative fd $fd" }
        return answer ?: throw IllegalStateException("protector refuses by throwing (test)")
    }
}
