/*
 * stdio.h -- written for this project from bionic's documented ABI (not
 * copied from bionic or the NDK); only what LLVM libunwind uses.
 * FILE is opaque in bionic. `stderr` is an exported variable of libc.so
 * since API 23 (`extern FILE* stderr`).
 */
#ifndef NOSDK_STDIO_H
#define NOSDK_STDIO_H
#include <sys/cdefs.h>
#include <stdarg.h>
#include <stddef.h>

__BEGIN_DECLS
typedef struct __sFILE FILE;
extern FILE* stderr;
#define stderr stderr
int fprintf(FILE* __fp, const char* __fmt, ...) __attribute__((__format__(printf, 2, 3)));
int vfprintf(FILE* __fp, const char* __fmt, va_list __ap);
int fflush(FILE* __fp);
int snprintf(char* __buf, size_t __size, const char* __fmt, ...) __attribute__((__format__(printf, 3, 4)));
__END_DECLS
#endif
