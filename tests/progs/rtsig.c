/* The program uses SIGRTMAX-2 and SIGRTMAX-3 itself, the agent's stop and dump
 * signals: a POSIX timer fires both every 50 us at the process while it
 * allocates and exits. The timer's signal reached the agent's stop handler
 * during the exit check, which parked the checking thread itself: every run
 * hung. The program's signals now go to its own handler. Prints "hits ok". */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
static volatile long hits[2];
static void on_rt(int sig) { hits[sig == SIGRTMAX - 2 ? 0 : 1]++; }
static void *spin(void *a) { (void)a; for (;;) { void *p = malloc(64); free(p); } return NULL; }
int main(void) {
  struct sigaction sa; memset(&sa, 0, sizeof sa); sa.sa_handler = on_rt; sa.sa_flags = SA_RESTART;
  sigaction(SIGRTMAX - 2, &sa, NULL); sigaction(SIGRTMAX - 3, &sa, NULL);
  for (int k = 0; k < 2; k++) {
    struct sigevent ev; memset(&ev, 0, sizeof ev); ev.sigev_notify = SIGEV_SIGNAL; ev.sigev_signo = SIGRTMAX - 2 - k;
    timer_t t; timer_create(CLOCK_MONOTONIC, &ev, &t);
    struct itimerspec its = {{0, 50000}, {0, 50000}}; timer_settime(t, 0, &its, NULL);
  }
  pthread_t th; pthread_create(&th, NULL, spin, NULL);
  for (int i = 0; i < 20000; i++) { void *volatile p = malloc(100); (void)p; }
  while (hits[0] < 100 || hits[1] < 100) usleep(1000);
  printf("hits ok\n");
  return 0;
}
