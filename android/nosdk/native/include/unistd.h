/*
 * unistd.h -- written for this project from bionic's documented ABI (not
 * copied from bionic or the NDK); only syscall(), exported by libc.so.
 */
#ifndef NOSDK_UNISTD_H
#define NOSDK_UNISTD_H
#include <sys/cdefs.h>

__BEGIN_DECLS
long syscall(long __number, ...);
__END_DECLS
#endif
