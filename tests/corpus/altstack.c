/* Allocations on a signal's alternate stack, itself a heap block the program
 * loses. Captures there are outside the thread's stack and go to libunwind,
 * the agent's fallback unwinder, whose data then holds a stale address
 * inside the alternate stack: a root there made the lost block "possibly
 * lost" (valgrind: definitely). libunwind's data are the agent's, not roots. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

static void *kept[100];
static volatile int nkept;

static void on_usr1(int sig) {
  (void)sig;
  kept[nkept++] = malloc(10); /* the program's own risk: raise() makes it synchronous */
}

__attribute__((noinline)) static void run_on_alt_stack(void) {
  stack_t ss;
  memset(&ss, 0, sizeof ss);
  ss.ss_sp = malloc(1 << 16); /* LEAK(definitely_lost) */
  ss.ss_size = 1 << 16;
  sigaltstack(&ss, NULL);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_usr1;
  sa.sa_flags = SA_ONSTACK;
  sigaction(SIGUSR1, &sa, NULL);
  for (int i = 0; i < 100; i++) raise(SIGUSR1);
  memset(&ss, 0, sizeof ss);
  ss.ss_flags = SS_DISABLE;
  sigaltstack(&ss, NULL);
}

int main(void) {
  run_on_alt_stack();
  return 0;
}
