/*
 * inttypes.h -- written for this project from bionic's documented ABI (not
 * copied from bionic or the NDK): the printf format macros libunwind's log
 * messages use. Bionic's int64_t is `long` on LP64 and `long long` on ILP32;
 * intptr_t is `long` / `int`. Clang's own <stdint.h> (from its resource
 * directory) defines the types the same way for Android targets.
 */
#ifndef NOSDK_INTTYPES_H
#define NOSDK_INTTYPES_H
#include <stdint.h>

#ifdef __LP64__
#define __NOSDK_PRI64 "l"
#define __NOSDK_PRIPTR "l"
#else
#define __NOSDK_PRI64 "ll"
#define __NOSDK_PRIPTR ""
#endif

/* Narrow types are promoted to int in varargs, so "d"/"u"/"x" fit them. */
#define PRId8 "d"
#define PRIu8 "u"
#define PRIx8 "x"
#define PRIX8 "X"
#define PRId16 "d"
#define PRIu16 "u"
#define PRIx16 "x"
#define PRIX16 "X"
#define PRId32 "d"
#define PRIi32 "i"
#define PRIu32 "u"
#define PRIx32 "x"
#define PRIX32 "X"
#define PRId64 __NOSDK_PRI64 "d"
#define PRIi64 __NOSDK_PRI64 "i"
#define PRIu64 __NOSDK_PRI64 "u"
#define PRIx64 __NOSDK_PRI64 "x"
#define PRIX64 __NOSDK_PRI64 "X"
#define PRIdPTR __NOSDK_PRIPTR "d"
#define PRIuPTR __NOSDK_PRIPTR "u"
#define PRIxPTR __NOSDK_PRIPTR "x"
#define PRIXPTR __NOSDK_PRIPTR "X"
#endif
