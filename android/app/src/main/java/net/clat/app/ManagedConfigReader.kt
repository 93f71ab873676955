package net.clat.app

import android.content.Context
import android.content.RestrictionsManager
import android.os.Bundle
import net.clat.app.logic.ManagedConfigParser
import net.clat.app.logic.ParsedManagedConfig

/** Reads the app restrictions an EMM pushed (res/xml/app_restrictions.xml declares the keys). */
object ManagedConfigReader {
    fun read(context: Context): ParsedManagedConfig {
        val rm = context.getSystemService(Context.RESTRICTIONS_SERVICE) as RestrictionsManager?
        val bundle = rm?.applicationRestrictions ?: Bundle.EMPTY
        return ManagedConfigParser.parse(toMap(bundle))
    }

    /** Bundle -> Map of the keys the parser knows (values kept as their runtime types). */
    @Suppress("DEPRECATION") // Bundle.get(String): the typed getters would hide type errors
    fun toMap(bundle: Bundle): Map<String, Any?> =
        bundle.keySet().filter { it in ManagedConfigParser.KNOWN_KEYS }.associateWith { bundle.get(it) }
}
