/*
 * assert.h -- written for this project from bionic's documented ABI (not
 * copied from bionic or the NDK). Bionic reports failed assertions through
 * __assert2(file, line, function, expression) in libc.so. libunwind is built
 * with -DNDEBUG, so assert() normally expands to nothing.
 * Like any <assert.h>, this one may be included repeatedly with NDEBUG
 * toggled, hence no include guard around assert itself.
 */
#include <sys/cdefs.h>

#undef assert
#ifdef NDEBUG
#define assert(e) ((void)0)
#else
__BEGIN_DECLS
__attribute__((__noreturn__)) void __assert2(const char* __file, int __line, const char* __function, const char* __msg);
__END_DECLS
#define assert(e) ((e) ? (void)0 : __assert2(__FILE__, __LINE__, __PRETTY_FUNCTION__, #e))
#endif

#if !defined(__cplusplus) && !defined(static_assert)
#define static_assert _Static_assert
#endif
