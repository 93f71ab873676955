/*
 * stdlib.h -- written for this project from bionic's documented ABI (not
 * copied from bionic or the NDK); only what LLVM libunwind uses.
 */
#ifndef NOSDK_STDLIB_H
#define NOSDK_STDLIB_H
#include <sys/cdefs.h>
#include <stddef.h>

__BEGIN_DECLS
__attribute__((__noreturn__)) void abort(void);
void* malloc(size_t __size);
void* calloc(size_t __n, size_t __size);
void free(void* __p);
char* getenv(const char* __name);
__END_DECLS
#endif
