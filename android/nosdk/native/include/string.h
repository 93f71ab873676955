/*
 * string.h -- written for this project from bionic's documented ABI (not
 * copied from bionic or the NDK); only what LLVM libunwind uses.
 */
#ifndef NOSDK_STRING_H
#define NOSDK_STRING_H
#include <sys/cdefs.h>
#include <stddef.h>

__BEGIN_DECLS
void* memcpy(void* __dst, const void* __src, size_t __n);
void* memmove(void* __dst, const void* __src, size_t __n);
void* memset(void* __dst, int __c, size_t __n);
int memcmp(const void* __a, const void* __b, size_t __n);
size_t strlen(const char* __s);
int strcmp(const char* __a, const char* __b);
__END_DECLS
#endif
