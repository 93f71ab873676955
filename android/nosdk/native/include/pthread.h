/*
 * pthread.h -- written for this project from bionic's documented ABI (not
 * copied from bionic or the NDK); only the reader-writer lock libunwind uses
 * to guard its cache of unwind tables (so unwinding stays thread-safe).
 * Bionic's pthread_rwlock_t is an opaque block of int32_t: 14 of them
 * (56 bytes) on LP64, 10 (40 bytes) on ILP32; its static initializer is all
 * zeros. The size is checked below so a wrong guess fails the build.
 */
#ifndef NOSDK_PTHREAD_H
#define NOSDK_PTHREAD_H
#include <sys/cdefs.h>
#include <stdint.h>

typedef struct {
#ifdef __LP64__
  int32_t __private[14];
#else
  int32_t __private[10];
#endif
} pthread_rwlock_t;

#define PTHREAD_RWLOCK_INITIALIZER { { 0 } }

_Static_assert(sizeof(pthread_rwlock_t) == (sizeof(void*) == 8 ? 56 : 40),
               "bionic pthread_rwlock_t size");

__BEGIN_DECLS
int pthread_rwlock_rdlock(pthread_rwlock_t* __rwlock);
int pthread_rwlock_wrlock(pthread_rwlock_t* __rwlock);
int pthread_rwlock_unlock(pthread_rwlock_t* __rwlock);
__END_DECLS
#endif
