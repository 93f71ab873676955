package net.clat.app.logic

import java.io.BufferedInputStream
import java.io.BufferedOutputStream
import java.io.ByteArrayOutputStream
import java.io.DataInputStream
import java.io.DataOutputStream
import java.io.File
import java.io.IOException
import java.io.InputStream
import java.io.OutputStream
import java.util.zip.CRC32
import java.util.zip.CheckedInputStream
import java.util.zip.CheckedOutputStream

/**
 * The IPv4 report's storage: one file in the app's private storage holding the [AppDay]
 * records, rewritten whole (temporary file, then rename: a crash leaves the old or the new file,
 * never half of one).
 *
 * Format (big-endian, java.io.DataOutput): magic "CLR4", version u16 = 1, record count u32, the
 * records, then the CRC-32 of everything before it (u32). A record: day i32, uid i32, package
 * count u16 + each as modified UTF-8 (DataOutput.writeUTF), flows, bytes up, bytes down, flows to
 * literals, flows to names, flows over native IPv4, first ms, last ms (i64 each), flags u8 (bit 0
 * destinations complete, bit 1 names complete), destination count u16 + 4 bytes each, name
 * count u16 + each as modified UTF-8.
 *
 * Why binary and not JSON lines: what is stored is per-app per-day aggregates, not per-flow
 * lines, so the file stays small whatever the flow rate; an address takes 4 bytes instead of up
 * to 17; the reader is a dozen lines of DataInput with no parser and no escaping (org.json is on
 * Android but not in the JVM tests); and a CRC tells a damaged file from a good one. People read
 * the report through the screen and its JSON/CSV export, never this file.
 */
class Ipv4UsageFile(private val file: File) {
    /** Records of [file]; empty when it does not exist. A damaged file is moved aside (".bad") and reported. */
    fun load(): Result<List<AppDay>> {
        if (!file.exists()) return Result.success(emptyList())
        return try {
            Result.success(BufferedInputStream(file.inputStream()).use { decode(it) })
        } catch (e: IOException) {
            val aside = File(file.path + ".bad")
            file.renameTo(aside)
            Result.failure(IOException("IPv4 report file unreadable (${e.message}); kept as ${aside.name}, starting empty", e))
        }
    }

    /** Writes [records] to a temporary file and renames it over [file]. */
    fun save(records: List<AppDay>) {
        val tmp = File(file.path + ".tmp")
        BufferedOutputStream(tmp.outputStream()).use { encode(records, it) }
        if (!tmp.renameTo(file)) throw IOException("cannot rename ${tmp.name} to ${file.name}")
    }

    companion object {
        private const val MAGIC = 0x434C5234 // "CLR4"
        private const val VERSION = 1

        fun encode(records: List<AppDay>, out: OutputStream) {
            val crc = CRC32()
            val d = DataOutputStream(CheckedOutputStream(out, crc))
            d.writeInt(MAGIC)
            d.writeShort(VERSION)
            d.writeInt(records.size)
            for (r in records) {
                d.writeInt(r.day)
                d.writeInt(r.uid)
                d.writeShort(r.packages.size)
                r.packages.forEach { d.writeUTF(it) }
                for (v in longArrayOf(r.flows, r.bytesUp, r.bytesDown, r.flowsToLiterals, r.flowsToNames, r.flowsNativeIpv4, r.firstMs, r.lastMs)) {
                    d.writeLong(v)
                }
                d.writeByte((if (r.destinationsComplete) 1 else 0) or (if (r.namesComplete) 2 else 0))
                d.writeShort(r.destinations.size)
                // The store admits IPv4 literals only (Ipv4UsageStore.flowStarted).
                r.destinations.forEach { d.write(IpAddresses.parseIpv4(it) ?: ByteArray(4)) }
                d.writeShort(r.names.size)
                r.names.forEach { d.writeUTF(it) }
            }
            d.flush()
            DataOutputStream(out).apply { writeInt(crc.value.toInt()) }.flush()
        }

        fun encode(records: List<AppDay>): ByteArray = ByteArrayOutputStream().also { encode(records, it) }.toByteArray()

        /** @throws IOException on a short, foreign or damaged stream (the message says which). */
        fun decode(input: InputStream): List<AppDay> {
            val crc = CRC32()
            val d = DataInputStream(CheckedInputStream(input, crc))
            if (d.readInt() != MAGIC) throw IOException("not an IPv4 report file")
            val version = d.readUnsignedShort()
            if (version != VERSION) throw IOException("IPv4 report file version $version, this app reads $VERSION")
            val count = d.readInt()
            if (count < 0) throw IOException("bad record count $count")
            val out = ArrayList<AppDay>(minOf(count, 4096))
            repeat(count) {
                val r = AppDay(d.readInt(), d.readInt(), List(d.readUnsignedShort()) { d.readUTF() })
                r.flows = d.readLong()
                r.bytesUp = d.readLong()
                r.bytesDown = d.readLong()
                r.flowsToLiterals = d.readLong()
                r.flowsToNames = d.readLong()
                r.flowsNativeIpv4 = d.readLong()
                r.firstMs = d.readLong()
                r.lastMs = d.readLong()
                val flags = d.readUnsignedByte()
                r.destinationsComplete = flags and 1 != 0
                r.namesComplete = flags and 2 != 0
                repeat(d.readUnsignedShort()) {
                    val a = ByteArray(4)
                    d.readFully(a)
                    r.destinations.add(IpAddresses.formatIpv4(a))
                }
                repeat(d.readUnsignedShort()) { r.names.add(d.readUTF()) }
                out.add(r)
            }
            val expected = crc.value.toInt()
            if (DataInputStream(input).readInt() != expected) throw IOException("checksum mismatch")
            return out
        }
    }
}
