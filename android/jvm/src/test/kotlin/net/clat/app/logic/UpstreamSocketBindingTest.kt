package net.clat.app.logic

import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test

/**
 * netd cannot exist here: the two calls are recorded by fakes, and what netd does with them is
 * cited in [UpstreamSocketBinding]'s comment.
 */
class UpstreamSocketBindingTest {
    private val calls = mutableListOf<String>()
    private fun bind(ok: Boolean): (Int) -> Boolean = { fd -> calls += "bind $fd"; ok }
    private fun protect(ok: Boolean): (Int) -> Boolean = { fd -> calls += "protect $fd"; ok }

    @Test
    fun `a known network is one call, bind, no protect`() {
        assertTrue(UpstreamSocketBinding.apply(7, bind(true), protect(true)))
        assertEquals(listOf("bind 7"), calls)
    }

    @Test
    fun `no network known, protect only`() {
        assertTrue(UpstreamSocketBinding.apply(8, null, protect(true)))
        assertEquals(listOf("protect 8"), calls)
    }

    @Test
    fun `binding refused, protect is the fallback and its answer the result`() {
        assertTrue(UpstreamSocketBinding.apply(9, bind(false), protect(true)))
        assertEquals(listOf("bind 9", "protect 9"), calls)
        calls.clear()
        assertFalse(UpstreamSocketBinding.apply(10, bind(false), protect(false)))
        assertEquals(listOf("bind 10", "protect 10"), calls)
    }
}
