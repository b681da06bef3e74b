/* A server that drops its privileges after start-up: leaks a block, starts
 * a thread that blocks for good on a pipe, then (as root) switches to
 * nobody, or (otherwise) makes itself undumpable, which is what a uid
 * change does to /proc: the process's own auxv and its threads' syscall
 * files become unreadable to it. The report must still have symbols (and
 * so apply the default suppressions) and list the blocked thread. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>
#include "blocked_thread.h"

void *volatile keep;

__attribute__((noinline)) static void leak_early(void) {
  char *p = malloc(3333);
  memset(p, 1, 3333);
  keep = p;
  keep = 0;
}

int main(void) {
  if (blocked_pipes()) return 2;
  leak_early();
  pthread_t t;
  if (pthread_create(&t, NULL, blocked, NULL)) return 2;
  wait_blocked();
  if (getuid() == 0 ? setgid(65534) || setuid(65534) : prctl(PR_SET_DUMPABLE, 0)) {
    perror("drop");
    return 2;
  }
  printf("dropped\n");
  return 0;
}
