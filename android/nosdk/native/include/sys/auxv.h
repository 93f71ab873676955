/*
 * sys/auxv.h -- written for this project from bionic's documented ABI (not
 * copied from bionic or the NDK). getauxval() is exported by libc.so (API 18);
 * libunwind's arm64 code reads AT_HWCAP2 to learn whether SME is present.
 * AT_* values are the Linux kernel's (include/uapi/linux/auxvec.h).
 */
#ifndef NOSDK_SYS_AUXV_H
#define NOSDK_SYS_AUXV_H
#include <sys/cdefs.h>

#define AT_HWCAP 16
#define AT_HWCAP2 26

__BEGIN_DECLS
unsigned long getauxval(unsigned long __type);
__END_DECLS
#endif
