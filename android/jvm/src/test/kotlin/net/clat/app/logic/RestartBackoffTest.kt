package net.clat.app.logic

import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertNull
import org.junit.jupiter.api.Test

class RestartBackoffTest {
    @Test
    fun `doubles up to the cap, then gives up`() {
        val b = RestartBackoff(initialMs = 1_000, maxMs = 5_000, maxAttempts = 5, stableMs = 60_000)
        val delays = (1..5).map { b.onStarted(0); b.nextDelay(10) }
        assertEquals(listOf(1_000L, 2_000L, 4_000L, 5_000L, 5_000L), delays)
        b.onStarted(0)
        assertNull(b.nextDelay(10))
    }

    @Test
    fun `a stable run starts the count afresh`() {
        val b = RestartBackoff(initialMs = 1_000, maxMs = 60_000, maxAttempts = 3, stableMs = 60_000)
        b.onStarted(0)
        b.nextDelay(100)
        b.onStarted(1_100)
        assertEquals(2_000L, b.nextDelay(1_200))
        b.onStarted(3_200)
        assertEquals(1_000L, b.nextDelay(3_200 + 60_000), "ran a minute: like the first death")
    }

    @Test
    fun `reset forgets the attempts`() {
        val b = RestartBackoff(initialMs = 1_000, maxAttempts = 1)
        b.nextDelay(0)
        assertNull(b.nextDelay(0))
        b.reset()
        assertEquals(1_000L, b.nextDelay(0))
    }
}
