/* fork() from a SIGALRM handler (every 0.5 ms) while the main thread
 * allocates; each child _exits at once from the handler. The agent's fork
 * handlers waited for a lock the interrupted frame below them held (every
 * run hung), and a child whose handler interrupted the agent inside the
 * dynamic loader waited in its exit report for the loader's lock. Prints
 * how many children were forked and reaped (200 or a few more). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>
static volatile sig_atomic_t forks;
static void h(int s) { (void)s; pid_t p = fork(); if (p == 0) _exit(0); if (p > 0) forks++; }
void *volatile sink;
int main(void) {
  signal(SIGALRM, h);
  struct itimerval it = {{0, 500}, {0, 500}};
  setitimer(ITIMER_REAL, &it, NULL);
  while (forks < 200) { sink = malloc(64); free(sink); }
  struct itimerval off = {{0, 0}, {0, 0}};
  setitimer(ITIMER_REAL, &off, NULL);
  int n = 0; while (wait(NULL) > 0) n++;
  printf("forks %d reaped %d\n", (int)forks, n);
  return 0;
}
