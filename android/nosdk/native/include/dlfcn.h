/*
 * dlfcn.h -- written for this project from bionic's documented ABI (not
 * copied from bionic or the NDK); dladdr() (libdl.so) is what libunwind uses
 * to name a function for unw_get_proc_name().
 */
#ifndef NOSDK_DLFCN_H
#define NOSDK_DLFCN_H
#include <sys/cdefs.h>

__BEGIN_DECLS
typedef struct {
  const char* dli_fname;
  void* dli_fbase;
  const char* dli_sname;
  void* dli_saddr;
} Dl_info;

int dladdr(const void* __addr, Dl_info* __info);
__END_DECLS
#endif
