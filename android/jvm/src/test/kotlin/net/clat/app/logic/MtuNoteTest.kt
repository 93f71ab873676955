package net.clat.app.logic

import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Test

class MtuNoteTest {
    @Test
    fun `says the value in force and where it comes from`() {
        assertEquals("1400 (set by the managed configuration)", MtuNote.describe(1400, fromManagedConfig = true))
        assertEquals("1500 (set by the managed configuration)", MtuNote.describe(1500, fromManagedConfig = true))
        assertEquals(
            "1500 (default: the frame size apps expect of Wi-Fi or Ethernet; an administrator can set 576..65535)",
            MtuNote.describe(1500, fromManagedConfig = false),
        )
    }
}
