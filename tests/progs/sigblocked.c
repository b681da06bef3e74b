/* A thread that blocks every signal while a leak check runs (servers block
 * signals in their workers), and unblocks them after it. The check's stop
 * signal, sent to it anyway, stayed pending; the check then put back the
 * default disposition, and the thread's unblock delivered it: a real-time
 * signal's default action killed the program (status 190 instead of 7).
 * Prints "alive" and returns 7 when nothing went wrong. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include "../../include/heapscope.h"

static int to_main[2], to_worker[2];

static void *worker(void *arg) {
  (void)arg;
  sigset_t all, none;
  sigfillset(&all);
  sigemptyset(&none);
  pthread_sigmask(SIG_SETMASK, &all, NULL);
  char c = 'b';
  write(to_main[1], &c, 1);   /* blocked */
  read(to_worker[0], &c, 1);  /* the check is over */
  pthread_sigmask(SIG_SETMASK, &none, NULL);
  c = 'u';
  write(to_main[1], &c, 1);   /* unblocked */
  pause();
  return NULL;
}

int main(void) {
  if (pipe(to_main) || pipe(to_worker)) return 1;
  pthread_t t;
  pthread_create(&t, NULL, worker, NULL);
  char c;
  read(to_main[0], &c, 1);
  int leaks = heapscope_leak_check();
  write(to_worker[1], "c", 1);
  read(to_main[0], &c, 1);
  usleep(50000); /* time for a pending signal to land */
  printf("alive %d\n", leaks >= 0);
  return 7;
}
