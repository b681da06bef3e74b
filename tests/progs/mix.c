/* A known mix of allocation sizes, 16 B to 1 MiB, for profile accuracy:
 * for each size, N blocks are allocated from its own function; half are
 * freed, half stay live. Prints the true totals:
 *   alloc_space inuse_space alloc_objects inuse_objects */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_SIZES 8
static const size_t sizes[N_SIZES] = {16, 100, 1000, 4096, 10000, 65536, 300000, 1048576};
static const int counts[N_SIZES] = {40000, 20000, 8000, 4000, 2000, 600, 200, 60};
void *volatile live[100000]; /* exported and volatile: the compiler keeps every malloc */
int nlive;

#define SITE(k)                                                   \
  __attribute__((noinline)) void alloc_##k(size_t size, int n) {  \
    for (int i = 0; i < n; i++) {                                 \
      char *volatile p = malloc(size);                            \
      p[0] = 1;                                                   \
      if (i % 2) live[nlive++] = p; else free(p);                 \
    }                                                             \
  }
SITE(0) SITE(1) SITE(2) SITE(3) SITE(4) SITE(5) SITE(6) SITE(7)
static void (*const sites[N_SIZES])(size_t, int) = {alloc_0, alloc_1, alloc_2, alloc_3,
                                                     alloc_4, alloc_5, alloc_6, alloc_7};

int main(void) {
  unsigned long as = 0, is = 0, ao = 0, io = 0;
  for (int k = 0; k < N_SIZES; k++) {
    sites[k](sizes[k], counts[k]);
    as += sizes[k] * counts[k];
    ao += counts[k];
    is += sizes[k] * (counts[k] / 2);
    io += counts[k] / 2;
  }
  printf("%lu %lu %lu %lu\n", as, is, ao, io);
  return 0;
}
