/* Real-time signals sent to threads while leak checks stop them: a queued
 * signal is delivered exactly once, so every one sent must arrive, none
 * twice. A thread the check holds (by ptrace: a signal that arrives then
 * stops it in "signal-delivery-stop", and the helper must hand it back when
 * it lets go) or that it parks in a handler (signals) must lose none.
 * A sender thread queues the signals while the main thread runs the checks,
 * so that some arrive while the workers are being stopped.
 * Prints "equal sent>0 1 checks C" when every signal arrived once. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "../../include/heapscope.h"

#define WORKERS 4
static atomic_long got;
static atomic_int done;

static void on_sig(int sig, siginfo_t *si, void *uc) {
  (void)sig, (void)uc;
  atomic_fetch_add(&got, si->si_value.sival_int);
}

static void *worker(void *arg) {
  (void)arg;
  while (!atomic_load(&done)) {
    void *p = malloc(64);
    free(p);
  }
  return NULL;
}

static pthread_t t[WORKERS];
static atomic_long sent;
static atomic_int stop_sending;

static void *sender(void *arg) {
  (void)arg;
  for (long i = 0; !atomic_load(&stop_sending); i++) {
    union sigval v = {.sival_int = 1};
    if (pthread_sigqueue(t[i % WORKERS], SIGRTMIN + 1, v) == 0) atomic_fetch_add(&sent, 1);
    if (i % 8 == 7) usleep(50);
  }
  return NULL;
}

int main(void) {
  struct sigaction sa = {0};
  sa.sa_sigaction = on_sig;
  sa.sa_flags = SA_SIGINFO | SA_RESTART;
  sigaction(SIGRTMIN + 1, &sa, NULL);
  for (int i = 0; i < WORKERS; i++) pthread_create(&t[i], NULL, worker, NULL);
  pthread_t s;
  pthread_create(&s, NULL, sender, NULL);
  while (atomic_load(&sent) < 100) usleep(100); /* sending before the first check */
  int checks = 0;
  for (int round = 0; round < 150; round++)
    if (heapscope_leak_check() >= 0) checks++;
  atomic_store(&stop_sending, 1);
  pthread_join(s, NULL);
  usleep(200000); /* the last signals land */
  atomic_store(&done, 1);
  for (int i = 0; i < WORKERS; i++) pthread_join(t[i], NULL);
  long n = atomic_load(&sent), g = atomic_load(&got);
  printf("%s sent>0 %d checks %d\n", n == g ? "equal" : "DIFFERENT", n > 0, checks);
  if (n != g) fprintf(stderr, "sent %ld got %ld\n", n, g);
  return 0;
}
