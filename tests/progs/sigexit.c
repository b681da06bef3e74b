/* exit() from a signal handler, as programs do on SIGTERM and SIGINT: a
 * one-shot timer fires after argv[1] microseconds while the main thread
 * allocates and frees without pause, so the signal often lands inside the
 * agent's own code with one of its locks held (1 run in 7 did here), or
 * inside glibc's allocator. The exit report then needs that lock: it used
 * to wait for itself forever. Leaks one 4242-byte block, exits 3 from the
 * handler, with exit() or, when argv[2] is "_exit", with _exit(). With
 * argv[3] "threads", two threads allocate and the main thread sends the
 * signal to one of them (thread arenas: the handler's thread may hold its
 * arena's lock, which the report's first malloc would wait for forever). */
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

void *volatile keep;
static int use_exit_;
static void on_alarm(int s) {
  (void)s;
  if (use_exit_) _exit(3);
  exit(3);
}
__attribute__((noinline)) static void *alloc_at(int d, size_t n) {
  if (!d) return malloc(n);
  void *p = alloc_at(d - 1, n);
  __asm__ volatile("" : "+r"(p));
  return p;
}
static void churn(void) {
  void *volatile mine[64] = {0};
  for (unsigned long i = 0;; i++) {
    unsigned s = (unsigned)(i * 2654435761u) % 64;
    free(mine[s]);
    mine[s] = alloc_at((int)(i % 12), 16 + (i % 300));
  }
}
static void *churn_thread(void *a) {
  (void)a;
  churn();
  return NULL;
}
int main(int argc, char **argv) {
  long us = argc > 1 ? atol(argv[1]) : 20000;
  use_exit_ = argc > 2 && !strcmp(argv[2], "_exit");
  keep = malloc(4242);
  keep = NULL; /* definitely lost */
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_alarm;
  sigaction(SIGALRM, &sa, NULL);
  if (argc > 3 && !strcmp(argv[3], "threads")) {
    pthread_t t[2];
    for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, churn_thread, NULL);
    usleep((useconds_t)us);
    pthread_kill(t[0], SIGALRM);
    for (;;) pause(); /* the leak check's stop signal ends a pause (EINTR) */
  }
  struct itimerval it = {{0, 0}, {us / 1000000, us % 1000000}};
  setitimer(ITIMER_REAL, &it, NULL);
  churn();
}
