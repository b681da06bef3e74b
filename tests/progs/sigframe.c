/* exit() from a signal handler, deterministically. The program traps (ud2)
 * once to learn where the kernel puts the signal frame (the same place the
 * second time: the same call at the same depth), writes the address of a
 * block it then drops (4242 bytes, definitely lost) over exactly that
 * frame's place, zeroes the stack below it, and traps again, this time into
 * a handler that calls exit(3). Parts of the signal frame are never written
 * (the sigcontext's reserved words, the FPU state's padding): a check that
 * scanned them found the dropped block "still reachable". The interrupted
 * code holds two blocks the check must still find: 1111 bytes only in a
 * register, 2222 bytes only in its own stack frame. With argv[1]
 * "altstack" the handler runs on an alternate signal stack (a static array,
 * inside the data segment). */
#define _GNU_SOURCE
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>

#include "sigframe_probe.h"

static char alt[65536] __attribute__((aligned(64)));

static void on_ill(int s) {
  (void)s;
  exit(3);
}

int main(int argc, char **argv) {
  int on_alt = argc > 1 && !strcmp(argv[1], "altstack");
  g1 = malloc(1111);
  g2 = malloc(2222);
  keep = malloc(4242);
  if (on_alt) {
    stack_t ss = {.ss_sp = alt, .ss_size = sizeof alt};
    sigaltstack(&ss, NULL);
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_probe;
  sa.sa_flags = SA_SIGINFO | (on_alt ? SA_ONSTACK : 0);
  sigaction(SIGILL, &sa, NULL);
  if (!sigsetjmp(probe_jb, 1)) trap(1);
  sa.sa_flags &= ~SA_SIGINFO;
  sa.sa_handler = on_ill;
  sigaction(SIGILL, &sa, NULL);
  if (on_alt) { /* the frame is on the alternate stack: below it, zeros */
    memset(alt, 0, sizeof alt);
    for (uintptr_t p = frame_lo; p + sizeof keep <= (uintptr_t)alt + sizeof alt; p += sizeof keep)
      memcpy((void *)p, (const void *)&keep, sizeof keep);
    smear(0, 0, 0);
  } else {
    smear((uintptr_t)keep, frame_lo, frame_hi);
  }
  keep = NULL;
  trap(0);
}
