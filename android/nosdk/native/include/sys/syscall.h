/*
 * sys/syscall.h -- written for this project (not copied from bionic, the NDK
 * or the kernel): the one Linux system call number libunwind uses, per
 * architecture, from the kernel's syscall tables (arm64 uses the generic
 * table; x86_64 and 32-bit ARM have their own).
 */
#ifndef NOSDK_SYS_SYSCALL_H
#define NOSDK_SYS_SYSCALL_H

#if defined(__aarch64__)
#define SYS_rt_sigprocmask 135
#elif defined(__x86_64__)
#define SYS_rt_sigprocmask 14
#elif defined(__arm__)
#define SYS_rt_sigprocmask 175
#else
#error "unsupported architecture"
#endif
#endif
