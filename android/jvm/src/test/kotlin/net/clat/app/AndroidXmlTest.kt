package net.clat.app

import java.io.File
import javax.xml.parsers.DocumentBuilderFactory
import net.clat.app.logic.ManagedConfigParser
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertNotNull
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.w3c.dom.Document
import org.w3c.dom.Element

/**
 * Checks the manifest and resources without AGP: they must parse as XML, and the VPN service
 * must carry what Android needs (permission, always-on meta-data, foreground service types with
 * their permissions), nothing may be exported without a system-only permission or a launcher
 * reason, every component must exist in the Kotlin sources, and the restrictions XML must match
 * ManagedConfigParser.
 */
class AndroidXmlTest {
    private val appDir = File(System.getProperty("clat.app.dir") ?: "../app")
    private val main = File(appDir, "src/main")
    private val ns = "http://schemas.android.com/apk/res/android"

    private fun parse(f: File): Document {
        assertTrue(f.isFile, "missing $f")
        val dbf = DocumentBuilderFactory.newInstance()
        dbf.isNamespaceAware = true
        return dbf.newDocumentBuilder().parse(f)
    }

    private fun Element.a(name: String): String? = getAttributeNS(ns, name).ifEmpty { null }

    private fun Element.children(tag: String): List<Element> {
        val out = ArrayList<Element>()
        val nl = getElementsByTagName(tag)
        for (i in 0 until nl.length) out.add(nl.item(i) as Element)
        return out
    }

    private val manifest: Element by lazy { parse(File(main, "AndroidManifest.xml")).documentElement }

    private fun component(tag: String, name: String): Element =
        manifest.children(tag).firstOrNull { it.a("name") == name } ?: throw AssertionError("no <$tag> $name")

    private val permissions: Set<String> by lazy { manifest.children("uses-permission").mapNotNull { it.a("name") }.toSet() }

    @Test
    fun `vpn service is protected, always-on capable and typed for Android 14`() {
        val svc = component("service", ".ClatVpnService")
        assertEquals("android.permission.BIND_VPN_SERVICE", svc.a("permission"))
        assertEquals("false", svc.a("exported"), "only the system binds the VPN service")
        val actions = svc.children("action").mapNotNull { it.a("name") }
        assertTrue("android.net.VpnService" in actions, actions.toString())
        val meta = svc.children("meta-data").associate { it.a("name") to it.a("value") }
        assertEquals("true", meta["android.net.VpnService.SUPPORTS_ALWAYS_ON"])

        val types = svc.a("foregroundServiceType")?.split('|')?.toSet() ?: emptySet()
        assertTrue("systemExempted" in types, "VPN apps use systemExempted: $types")
        val typePermission = mapOf(
            "systemExempted" to "android.permission.FOREGROUND_SERVICE_SYSTEM_EXEMPTED",
            "specialUse" to "android.permission.FOREGROUND_SERVICE_SPECIAL_USE",
        )
        for (t in types) {
            val p = typePermission[t] ?: throw AssertionError("unexpected foreground service type $t")
            assertTrue(p in permissions, "type $t needs $p")
        }
        assertTrue("android.permission.FOREGROUND_SERVICE" in permissions)
        // The platform resolves the per-app lists (Vpn.getAppUid in system_server): no
        // QUERY_ALL_PACKAGES; launcher apps are made visible for their install/remove broadcasts.
        assertFalse("android.permission.QUERY_ALL_PACKAGES" in permissions, "the platform resolves the app lists")
        val queries = manifest.children("queries").flatMap { it.children("intent") }
        assertTrue(
            queries.any { q ->
                q.children("action").any { it.a("name") == "android.intent.action.MAIN" } &&
                    q.children("category").any { it.a("name") == "android.intent.category.LAUNCHER" }
            },
            "a <queries> intent for launcher apps",
        )
        if ("specialUse" in types) {
            val props = svc.children("property").associate { it.a("name") to it.a("value") }
            assertTrue(!props["android.app.PROPERTY_SPECIAL_USE_FGS_SUBTYPE"].isNullOrBlank(), "specialUse needs its subtype property")
        }
    }

    @Test
    fun `nothing is exported without need`() {
        // DUMP: signature|privileged|development, held by the shell and the system (AdbCommandReceiver).
        val systemOnly = setOf("android.permission.BIND_VPN_SERVICE", "android.permission.BIND_QUICK_SETTINGS_TILE", "android.permission.DUMP")
        for (tag in listOf("activity", "service", "receiver", "provider")) {
            for (c in manifest.children(tag)) {
                val name = c.a("name")
                val exported = c.a("exported")
                assertNotNull(exported, "$name must say android:exported explicitly (required from API 31)")
                if (exported == "true") {
                    val launcher = c.children("category").any { it.a("name") == "android.intent.category.LAUNCHER" }
                    assertTrue(launcher || c.a("permission") in systemOnly, "$name is exported without a system-only permission")
                }
            }
        }
        val tile = component("service", ".ClatTileService")
        assertEquals("android.permission.BIND_QUICK_SETTINGS_TILE", tile.a("permission"))
    }

    @Test
    fun `a long press on the tile opens the app`() {
        val actions = component("activity", ".MainActivity").children("action").mapNotNull { it.a("name") }
        assertTrue("android.service.quicksettings.action.QS_TILE_PREFERENCES" in actions, actions.toString())
    }

    @Test
    fun `the adb receiver admits only the shell and the system`() {
        val r = component("receiver", ".AdbCommandReceiver")
        assertEquals("android.permission.DUMP", r.a("permission"), "another app must not set the prefix")
        assertTrue(r.children("intent-filter").isEmpty(), "explicit broadcasts only")
        assertFalse("android.permission.DUMP" in permissions, "the app itself does not request DUMP")
    }

    @Test
    fun `every declared component exists in the Kotlin sources`() {
        val sources = File(main, "java").walkTopDown().filter { it.extension == "kt" }.map { it.readText() }.joinToString("\n")
        for (tag in listOf("activity", "service", "receiver")) {
            for (c in manifest.children(tag)) {
                val simple = c.a("name")!!.removePrefix(".").substringAfterLast('.')
                assertTrue(Regex("class\\s+$simple\\b").containsMatchIn(sources), "no class $simple for <$tag>")
            }
        }
    }

    @Test
    fun `restrictions XML declares exactly the keys the parser reads, with parseable defaults`() {
        val meta = manifest.children("meta-data").first { it.a("name") == "android.content.APP_RESTRICTIONS" }
        assertEquals("@xml/app_restrictions", meta.a("resource"))
        val restrictions = parse(File(main, "res/xml/app_restrictions.xml")).documentElement.children("restriction")
        val keys = restrictions.mapNotNull { it.a("key") }
        assertEquals(ManagedConfigParser.KNOWN_KEYS, keys.toSet())
        assertEquals(keys.size, keys.toSet().size, "duplicate keys")

        // The defaults, typed as Android would deliver them, must be accepted by the parser.
        val defaults = restrictions.associate { r ->
            val v = r.a("defaultValue")
            r.a("key")!! to when (r.a("restrictionType")) {
                "integer" -> v!!.toInt()
                "bool" -> v!!.toBooleanStrict()
                "string" -> v
                else -> throw AssertionError("unexpected restrictionType ${r.a("restrictionType")}")
            }
        }
        val parsed = ManagedConfigParser.parse(defaults)
        assertTrue(parsed.errors.isEmpty(), parsed.errors.toString())

        // Titles and descriptions are string resources that exist.
        val strings = parse(File(main, "res/values/strings.xml")).documentElement.children("string").map { it.getAttribute("name") }.toSet()
        for (r in restrictions) {
            for (attr in listOf("title", "description")) {
                val ref = r.a(attr) ?: throw AssertionError("${r.a("key")} has no $attr")
                assertTrue(ref.startsWith("@string/") && ref.removePrefix("@string/") in strings, "${r.a("key")}: $attr $ref")
            }
        }
    }

    @Test
    fun `all resource XML files parse`() {
        val files = File(main, "res").walkTopDown().filter { it.extension == "xml" }.toList()
        assertTrue(files.size >= 3, files.toString())
        files.forEach { parse(it) }
    }
}
