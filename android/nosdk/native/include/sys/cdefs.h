/*
 * sys/cdefs.h -- written for this project (not copied from bionic or the NDK)
 * from bionic's documented ABI, to compile LLVM libunwind for Android without
 * the NDK. Declares only what our other minimal headers need.
 *
 * Bionic's own <sys/cdefs.h> defines __BIONIC__ (the compiler does not);
 * libunwind's config.h tests it to pick dl_unwind_find_exidx on 32-bit ARM.
 */
#ifndef NOSDK_SYS_CDEFS_H
#define NOSDK_SYS_CDEFS_H

#define __BIONIC__ 1

#ifdef __cplusplus
#define __BEGIN_DECLS extern "C" {
#define __END_DECLS }
#else
#define __BEGIN_DECLS
#define __END_DECLS
#endif

/* stderr as a variable exists from API 23 (LIBC, "var introduced=23" in
 * libc.map.txt); below that bionic only had __sF[]. minSdk is 24. */
#if !defined(__ANDROID_MIN_SDK_VERSION__) || __ANDROID_MIN_SDK_VERSION__ < 23
#error "these headers assume an Android target at API level 23 or above"
#endif

#endif
