/* errno across allocator calls that succeed: glibc's free keeps errno (since
 * 2.33) and programs test errno after readdir and the like, which allocate.
 * The agent's recording must leave it as the call found it. Prints the count
 * of calls that changed it. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dlfcn.h>
#include <malloc.h>
static int bad;
#define CHECK(what) do { if (errno != 4242) { if (bad++ < 10) fprintf(stderr, "%s changed errno to %d (%s)\n", what, errno, strerror(errno)); } errno = 4242; } while (0)
static void *run(void *a) {
  (void)a;
  errno = 4242;
  void *ps[5000];
  for (int r = 0; r < 3; r++) {
    for (int i = 0; i < 5000; i++) { ps[i] = malloc(16 + i % 300); CHECK("malloc"); }
    for (int i = 0; i < 5000; i++) { ps[i] = realloc(ps[i], 20 + i % 500); CHECK("realloc"); }
    for (int i = 0; i < 5000; i++) { free(ps[i]); CHECK("free"); }
    void *c = calloc(10, 10); CHECK("calloc"); free(c); CHECK("free");
    void *m; if (posix_memalign(&m, 64, 100) == 0) { CHECK("posix_memalign"); free(m); CHECK("free"); }
    m = aligned_alloc(64, 128); CHECK("aligned_alloc"); free(m); CHECK("free");
    m = memalign(32, 50); CHECK("memalign"); (void)malloc_usable_size(m); CHECK("malloc_usable_size"); free(m); CHECK("free");
    m = strdup("x"); CHECK("strdup"); free(m); CHECK("free");
  }
  return NULL;
}
int main(void) {
  errno = 4242;
  void *first = malloc(1); CHECK("first malloc"); free(first); CHECK("first free");
  run(NULL);
  pthread_t t[3];
  for (int i = 0; i < 3; i++) pthread_create(&t[i], NULL, run, NULL);
  for (int i = 0; i < 3; i++) pthread_join(t[i], NULL);
  void *h = dlopen("libz.so.1", RTLD_NOW); errno = 4242;
  if (h) { dlclose(h); errno = 4242; }
  run(NULL);
  printf("errno changes: %d\n", bad);
  return 0;
}
