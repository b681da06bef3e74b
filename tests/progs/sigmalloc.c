/* malloc and free in a SIGALRM handler (every 0.2 ms) while the main
 * thread allocates and frees 20 frames deep: not async-signal-safe by
 * POSIX, but common, and glibc copes unless the handler interrupted malloc
 * itself. Under the agent the handler often interrupts it holding a lock
 * (the table's, the rule-miss lock): every run hung or aborted until the
 * tenth stop. Prints "done 1". */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>
static volatile sig_atomic_t hits;
void *volatile sink, *volatile hsink;
static void h(int s) { (void)s; hsink = malloc(40); free(hsink); hits++; }
__attribute__((noinline)) static void work(int d) { if (d) { work(d - 1); __asm__ volatile(""); } else { sink = malloc(64); free(sink); } }
int main(void) {
  signal(SIGALRM, h);
  struct itimerval it = {{0, 200}, {0, 200}};
  setitimer(ITIMER_REAL, &it, NULL);
  for (int i = 0; i < 3000000; i++) work(i % 20);
  struct itimerval off = {{0, 0}, {0, 0}};
  setitimer(ITIMER_REAL, &off, NULL);
  printf("done %d\n", hits > 100);
  return 0;
}
