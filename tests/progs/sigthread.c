/* Another thread sits in a signal handler when the program exits: the
 * check stops it there, and its stack above the stop holds the kernel's
 * signal frame, whose unwritten words (reserved fields, padding) keep what
 * a deeper call left. The thread traps (ud2) once to learn where the frame
 * lands, writes the address of a block the program then drops (4242 bytes,
 * definitely lost) over exactly that place, zeroes the stack below, and
 * traps again into a handler that blocks for good. The code it interrupted
 * holds 1111 bytes only in a register and 2222 bytes only in its red zone:
 * both reachable. main drops the 4242-byte block and exits. */
#define _GNU_SOURCE
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>

#include "sigframe_probe.h"
#include <unistd.h>

static int ready[2];

static void on_ill(int s) {
  (void)s;
  char c = 1;
  if (write(ready[1], &c, 1) != 1) _exit(9);
  for (;;) pause();
}

/* the probe and the real trap from the same function at the same depth */
__attribute__((noinline)) static void both(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_probe;
  sa.sa_flags = SA_SIGINFO;
  sigaction(SIGILL, &sa, NULL);
  if (!sigsetjmp(probe_jb, 1)) trap(1);
  sa.sa_flags = 0;
  sa.sa_handler = on_ill;
  sigaction(SIGILL, &sa, NULL);
  smear((uintptr_t)keep, frame_lo, frame_hi);
  trap(0);
}

static void *run(void *arg) {
  (void)arg;
  both();
  return NULL;
}

int main(void) {
  if (pipe(ready)) return 8;
  g1 = malloc(1111);
  g2 = malloc(2222);
  keep = malloc(4242);
  pthread_t t;
  pthread_create(&t, NULL, run, NULL);
  char c;
  if (read(ready[0], &c, 1) != 1) return 7;
  usleep(100000); /* into pause() */
  keep = NULL;
  return 0;
}
