package net.clat.app.logic

import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Test

class MtuNoteTest {
    @Test
    fun `says the value in force and where it comes from`() {
        assertEquals("1400 (set by the managed configuration)", MtuNote.describe(1400, fromManagedConfig = true))
        assertEquals("1500 (set by the managed configuration)", MtuNote.describe(1500, fromManagedConfig = true))
        assertEquals(
            "65000 (default: TCP through the CLAT is local, so the largest MTU costs the least battery; " +
                "larger UDP learns the path's MTU as usual; an administrator can set 576..65535)",
            MtuNote.describe(65000, fromManagedConfig = false),
        )
        assertEquals("1500", MtuNote.describe(1500, fromManagedConfig = false))
    }
}
