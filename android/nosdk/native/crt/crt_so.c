/*
 * crt_so.c -- the start-up object linked into libclat.so, written for this
 * project (the NDK's crtbegin_so.o/crtend_so.o are not available here, and
 * we link with -nostdlib so clang does not look for them).
 *
 * What a shared library on bionic needs from it:
 * - __dso_handle: the handle identifying this library to __cxa_atexit() and
 *   __cxa_thread_atexit_impl(). Rust's std passes &__dso_handle when it
 *   registers thread-local destructors. It must be hidden: each library has
 *   its own, and it must not be exported.
 * - a .fini_array entry that calls __cxa_finalize(&__dso_handle), so that
 *   handlers registered by this library run (and are dropped) when the
 *   library is unloaded by dlclose(), before its code disappears. Bionic's
 *   linker runs DT_FINI_ARRAY on unload; __cxa_finalize is in libc.so.
 */

__attribute__((visibility("hidden"))) void* __dso_handle = &__dso_handle;

extern void __cxa_finalize(void* dso);

__attribute__((destructor, used)) static void nosdk_on_unload(void) {
  __cxa_finalize(&__dso_handle);
}
