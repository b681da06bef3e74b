/* Thread dumps of a thread blocked inside a library, that library unloaded,
 * another one loaded where it was, and a thread blocked inside that one
 * dumped: the report library keeps its symbolizer between dumps and, when
 * libraries came or went, refreshes it (src/report/symbolize.c, refresh).
 * Nothing it cached by address may outlive the library it described: the
 * second dump must name the second library's function. Built as the two
 * libraries (-DLIB=a, -DLIB=b: the same code, other names) and as the
 * program. Prints each dump, then whether both libraries had the same
 * address (without that, the test proves less). */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef LIB
#define CAT2(x, y) x##y
#define CAT(x, y) CAT2(x, y)
__attribute__((noinline)) void CAT(blocked_in_lib_, LIB)(int fd) {
  char c;
  if (read(fd, &c, 1) < 0) perror("read");
  __asm__ volatile("" ::: "memory");
}
void lib_wait(int fd) {
  CAT(blocked_in_lib_, LIB)(fd);
  __asm__ volatile("" ::: "memory");
}
#else
#include "../../include/heapscope.h"

static void (*lib_wait)(int);
static int fds[2];
static void *waiter(void *arg) {
  (void)arg;
  lib_wait(fds[0]);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 3) return 2;
  void *addr[2];
  for (int k = 0; k < 2; k++) {
    void *h = dlopen(argv[1 + k], RTLD_NOW);
    if (!h || pipe(fds)) return 2;
    lib_wait = (void (*)(int))dlsym(h, "lib_wait");
    addr[k] = (void *)lib_wait;
    unsigned long mark = heapscope_threads_mark();
    pthread_t t;
    pthread_create(&t, NULL, waiter, NULL);
    char report[8192] = "";
    /* until the thread is in its read (a dump of a thread still on its
     * way there would not name the function yet) */
    for (int i = 0; i < 200 && !strstr(report, "blocked_in_lib_"); i++) {
      usleep(10000);
      heapscope_threads_check(mark, 0, report, sizeof report);
    }
    printf("dump %d:\n%s\n", k + 1, report);
    if (write(fds[1], "x", 1) != 1) return 2;
    pthread_join(t, NULL);
    close(fds[0]);
    close(fds[1]);
    dlclose(h);
  }
  printf("%s address\n", addr[0] == addr[1] ? "same" : "different");
  return 0;
}
#endif
