/*
 * signal.h -- written for this project from bionic's documented ABI (not
 * copied from bionic or the NDK). libunwind (arm64) only passes a sigset_t
 * pointer to a raw rt_sigprocmask syscall to probe whether memory is
 * readable, with a kernel sigset size of NSIG / 8 bytes. Bionic's NSIG is 65;
 * its sigset_t is one unsigned long (8 bytes on LP64, 4 on ILP32).
 */
#ifndef NOSDK_SIGNAL_H
#define NOSDK_SIGNAL_H
#include <sys/cdefs.h>

typedef unsigned long sigset_t;
#define NSIG 65
#endif
