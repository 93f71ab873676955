/* run.c LIB -- dlopen the test library and report how many panics it caught. */
#include <dlfcn.h>
#include <stdio.h>

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  void* h = dlopen(argv[1], RTLD_NOW);
  if (!h) { printf("dlopen: %s\n", dlerror()); return 1; }
  int (*caught)(void) = (int (*)(void))dlsym(h, "Java_unwind_Test_caught");
  if (!caught) { printf("dlsym: %s\n", dlerror()); return 1; }
  int n = caught();
  printf("caught %d of 100 panics\n", n);
  return n == 100 ? 0 : 1;
}
