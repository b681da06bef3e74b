/* dlopen, allocate through the library, dlclose, then the same with another
 * library that the loader may put at the same address: the
 * unwinder's cached rules and previous walk must not outlive the code they
 * describe (tests/programs.sh runs it with verify_unwind=1), nor keep the
 * unloaded libraries mapped. Built three
 * times: -DLIB_A and -DLIB_B as shared libraries, and as the program. */
#include <stdlib.h>
#ifdef LIB_A
__attribute__((noinline)) static void *inner(int n) {
  void *p = malloc((size_t)n);
  __asm__ volatile("" : : "r"(p) : "memory");
  return p;
}
void *lib_alloc(int n) {
  void *p = inner(n);
  __asm__ volatile("" : : "r"(p) : "memory");
  return p;
}
#elif defined(FRAME)
/* Built twice with different FRAME sizes (both above 127 bytes: the same
 * instruction lengths): the same code at the same offsets, only the frame
 * sizes differ. Loaded in turn at the same address, a rule cached for the
 * first library's return addresses is wrong for the second's, at the very
 * same addresses. */
__attribute__((noinline)) static void *inner_f(int n) {
  volatile char pad[FRAME];
  pad[0] = (char)n;
  void *p = malloc((size_t)n + (size_t)(pad[0] & 0));
  __asm__ volatile("" : : "r"(p) : "memory");
  return p;
}
__attribute__((noinline)) static void *middle_f(int n) {
  volatile char pad[FRAME * 2];
  pad[0] = (char)n;
  void *p = inner_f(n + (pad[0] & 0));
  __asm__ volatile("" : : "r"(p) : "memory");
  return p;
}
void *lib_alloc(int n) {
  void *p = middle_f(n);
  __asm__ volatile("" : : "r"(p) : "memory");
  return p;
}
#elif defined(LIB_B)
/* different code and frame sizes at the same offsets */
__attribute__((noinline)) static void *inner_b(int n, int m) {
  volatile char pad[96];
  pad[0] = (char)m;
  void *p = calloc(1, (size_t)n + (size_t)pad[0] * 0);
  return p;
}
__attribute__((noinline)) static void *middle_b(int n) { return inner_b(n, n * 3); }
void *lib_alloc(int n) {
  void *p = middle_b(n);
  __asm__ volatile("" : : "r"(p) : "memory");
  return p;
}
#else
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
int main(int argc, char **argv) {
  /* -leak: also leak one block through each library it loads */
  int leak = argc > 1 && !strcmp(argv[1], "-leak");
  if (leak) argv++, argc--;
  for (int round = 0; round < 20; round++)
    for (int l = 1; l < argc; l++) {
      void *h = dlopen(argv[l], RTLD_NOW);
      if (!h) {
        fprintf(stderr, "%s\n", dlerror());
        return 1;
      }
      void *(*f)(int) = (void *(*)(int))dlsym(h, "lib_alloc");
      for (int i = 0; i < 1000; i++) free(f(16 + i % 64));
      if (leak) f(8);
      dlclose(h);
    }
  /* nothing of the unloaded libraries may stay mapped */
  FILE *m = fopen("/proc/self/maps", "r");
  char line[4096];
  int left = 0;
  while (m && fgets(line, sizeof line, m))
    for (int l = 1; l < argc; l++)
      if (strstr(line, argv[l])) left++;
  if (m) fclose(m);
  printf("mappings of unloaded libraries: %d\n", left);
  puts("done");
  return 0;
}
#endif
