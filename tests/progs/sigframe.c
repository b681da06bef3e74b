/* exit() from a signal handler, deterministically: the program smears the
 * address of a block it then drops (4242 bytes, definitely lost) over the
 * stack below it, and traps (ud2) so that the kernel's signal frame lands
 * on the smear. Parts of that frame are never written (the sigcontext's
 * reserved words, the FPU state's padding), and a check that scanned them
 * found the dropped block "still reachable". The interrupted code holds two
 * blocks the check must still find: 1111 bytes only in a register, 2222
 * bytes only in its own stack frame. With argv[1] "altstack" the handler
 * runs on an alternate signal stack. */
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void *volatile keep;
static void on_ill(int s) {
  (void)s;
  exit(3);
}
__attribute__((noinline)) static void smear(uintptr_t v) {
  volatile uintptr_t a[2048]; /* 16 KiB below the caller */
  for (int i = 0; i < 2048 - 64; i++) a[i] = v; /* not the top 512 bytes: trap's frame */
}
__attribute__((noinline)) static void trap(void) {
  void *volatile in_frame = malloc(2222);
  keep = malloc(1111);
  void *in_reg = keep;
  keep = NULL;
  __asm__ volatile("ud2" : : "r"(in_reg), "r"(in_frame));
}
int main(int argc, char **argv) {
  static char alt[65536];
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_ill;
  if (argc > 1 && !strcmp(argv[1], "altstack")) {
    stack_t ss = {.ss_sp = alt, .ss_size = sizeof alt};
    memset(alt, 0, sizeof alt);
    sigaltstack(&ss, NULL);
    sa.sa_flags = SA_ONSTACK;
  }
  sigaction(SIGILL, &sa, NULL);
  keep = malloc(4242);
  smear((uintptr_t)keep);
  if (argc > 1) memset(alt, 0, sizeof alt);
  for (size_t i = 0; argc > 1 && i + sizeof keep <= sizeof alt - 4096; i += sizeof keep)
    memcpy(alt + i, (const void *)&keep, sizeof keep); /* the alternate stack too, below its top page */
  keep = NULL;
  trap();
}
