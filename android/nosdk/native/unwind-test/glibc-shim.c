/*
 * glibc-shim.c -- lets an Android-linked library load under glibc's loader
 * for test-unwind.sh, as libc.so / libdl.so / liblog.so (the NEEDED names),
 * each linked to glibc. Every other import binds to glibc's function of the
 * same name, which has bionic's ABI for the few calls the test makes. What
 * differs, and is translated here:
 *   libc.so  : bionic's errno is __errno(); glibc's is __errno_location().
 *   libdl.so : 32-bit ARM: bionic's dl_unwind_find_exidx() is glibc's
 *              __gnu_Unwind_Find_exidx() (same contract: the .ARM.exidx of
 *              the module holding pc, and its entry count).
 *   liblog.so: __android_log_write/_buf_write print to stderr.
 */
#if defined(SHIM_LIBC)
#include <errno.h>
int* __errno(void) { return __errno_location(); }
#elif defined(SHIM_LIBDL)
#ifdef __arm__
typedef unsigned long _Unwind_Ptr;
_Unwind_Ptr __gnu_Unwind_Find_exidx(_Unwind_Ptr pc, int* count);
_Unwind_Ptr dl_unwind_find_exidx(_Unwind_Ptr pc, int* count) { return __gnu_Unwind_Find_exidx(pc, count); }
#endif
#elif defined(SHIM_LIBLOG)
#include <stdio.h>
int __android_log_write(int prio, const char* tag, const char* msg) { return fprintf(stderr, "%d %s: %s\n", prio, tag, msg); }
int __android_log_buf_write(int buf, int prio, const char* tag, const char* msg) { (void)buf; return __android_log_write(prio, tag, msg); }
#endif
