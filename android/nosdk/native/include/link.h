/*
 * link.h -- written for this project from bionic's documented ABI (not
 * copied from bionic or the NDK); what libunwind needs to find unwind tables.
 * - dl_iterate_phdr() is exported by libdl.so (by libc.so too in newer
 *   releases); the callback receives its struct's size, and the fields after
 *   dlpi_phnum exist only from API 30, so libunwind reads only the first four.
 * - dl_unwind_find_exidx() (32-bit ARM only, libdl.so) returns the
 *   .ARM.exidx table of the module holding a PC and its entry count.
 */
#ifndef NOSDK_LINK_H
#define NOSDK_LINK_H
#include <sys/cdefs.h>
#include <stddef.h>
#include <stdint.h>
#include <elf.h>

#ifdef __LP64__
#define ElfW(type) Elf64_##type
#else
#define ElfW(type) Elf32_##type
#endif

__BEGIN_DECLS
struct dl_phdr_info {
  ElfW(Addr) dlpi_addr;
  const char* dlpi_name;
  const ElfW(Phdr)* dlpi_phdr;
  ElfW(Half) dlpi_phnum;
  /* API 30+ only; check the size argument before reading these. */
  unsigned long long dlpi_adds;
  unsigned long long dlpi_subs;
  size_t dlpi_tls_modid;
  void* dlpi_tls_data;
};

int dl_iterate_phdr(int (*__callback)(struct dl_phdr_info* __info, size_t __size, void* __data), void* __data);

#ifdef __arm__
typedef uintptr_t _Unwind_Ptr;
_Unwind_Ptr dl_unwind_find_exidx(_Unwind_Ptr __pc, int* __count);
#endif
__END_DECLS
#endif
