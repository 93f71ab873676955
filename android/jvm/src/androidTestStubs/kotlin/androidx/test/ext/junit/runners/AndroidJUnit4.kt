package androidx.test.ext.junit.runners

import org.junit.runner.Description
import org.junit.runner.Runner
import org.junit.runner.notification.RunNotifier

/** Compile-only stand-in for androidx.test.ext.junit's runner (see InstrumentationRegistry stub). */
class AndroidJUnit4(@Suppress("UNUSED_PARAMETER") klass: Class<*>) : Runner() {
    override fun getDescription(): Description = throw UnsupportedOperationException("compile-only stub")
    override fun run(notifier: RunNotifier?): Unit = throw UnsupportedOperationException("compile-only stub")
}
