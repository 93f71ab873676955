package net.clat.app.logic

import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test

class AlwaysOnStateTest {
    private fun AlwaysOnState.pair() = alwaysOn to lockdown

    @Test
    fun `a read while the VPN is not established says nothing`() {
        val s = AlwaysOnState(alwaysOn = true, lockdown = true)
        // What Android answers before establish(): false, false.
        assertFalse(s.onRead(established = false, alwaysOn = false, lockdown = false))
        assertEquals(true to true, s.pair())
    }

    @Test
    fun `a start as the always-on VPN means always-on, lockdown as last known`() {
        val s = AlwaysOnState()
        assertTrue(s.onAlwaysOnStart())
        assertEquals(true to false, s.pair())
        assertFalse(s.onAlwaysOnStart(), "no change the second time")
    }

    @Test
    fun `an established read is the truth, both ways`() {
        val s = AlwaysOnState()
        s.onAlwaysOnStart()
        assertTrue(s.onRead(established = true, alwaysOn = true, lockdown = true))
        assertEquals(true to true, s.pair())
        assertFalse(s.onRead(established = true, alwaysOn = true, lockdown = true))
        // The user turned always-on off: seen at the next established read.
        assertTrue(s.onRead(established = true, alwaysOn = false, lockdown = false))
        assertEquals(false to false, s.pair())
    }

    @Test
    fun `lockdown exists only with always-on`() {
        assertEquals(false to false, AlwaysOnState(alwaysOn = false, lockdown = true).pair())
        val s = AlwaysOnState()
        assertFalse(s.onRead(established = true, alwaysOn = false, lockdown = true))
        assertEquals(false to false, s.pair())
    }
}
