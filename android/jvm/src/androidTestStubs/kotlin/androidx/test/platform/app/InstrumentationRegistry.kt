package androidx.test.platform.app

import android.app.Instrumentation
import android.os.Bundle

/**
 * Compile-only stand-in for androidx.test's InstrumentationRegistry (Google's Maven is not
 * reachable here). Lets the JVM build type-check android/app/src/androidTest; never run.
 */
object InstrumentationRegistry {
    @JvmStatic
    fun getInstrumentation(): Instrumentation = throw UnsupportedOperationException("compile-only stub")

    @JvmStatic
    fun getArguments(): Bundle = throw UnsupportedOperationException("compile-only stub")
}
