/*
 * errno.h -- written for this project from bionic's documented ABI (not
 * copied from bionic or the NDK). In bionic, errno is thread-local storage
 * reached through `int* __errno(void)` in libc.so. The values are the Linux
 * kernel's (asm-generic/errno-base.h), the same on arm, arm64 and x86_64.
 */
#ifndef NOSDK_ERRNO_H
#define NOSDK_ERRNO_H
#include <sys/cdefs.h>

__BEGIN_DECLS
int* __errno(void) __attribute__((__const__));
__END_DECLS
#define errno (*__errno())

#define EFAULT 14
#define EINVAL 22
#endif
