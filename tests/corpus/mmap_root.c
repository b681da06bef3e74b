/* Blocks whose only pointers are in anonymous mappings of the program's own
 * (as Python's obmalloc arenas, or a JIT's data): still reachable, as
 * valgrind says. The kernel merges adjacent anonymous mappings with the
 * same flags into one line of /proc/self/maps, so such a mapping may share
 * a line with the agent's own memory: the leak check must still scan the
 * program's part. Mapped both with and without MAP_NORESERVE, several
 * times, beside whatever else is mapped. */
#include <stdlib.h>
#include <sys/mman.h>

__attribute__((noinline)) static void keep_in(void **region, int n) {
  for (int i = 0; i < n; i++) region[i * 512] = malloc(100 + i);
}

int main(void) {
  for (int k = 0; k < 8; k++) {
    int flags = MAP_PRIVATE | MAP_ANONYMOUS | (k & 1 ? MAP_NORESERVE : 0);
    void **r = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, flags, -1, 0);
    if (r == MAP_FAILED) return 1;
    keep_in(r, 8);
  }
  return 0;
}
