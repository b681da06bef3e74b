/* Shared by sigframe.c and sigthread.c: a trap (ud2) whose kernel signal
 * frame lands at the same place every time, a probe handler that learns
 * where, and a smear that writes a value over exactly that place and zeroes
 * the stack around it. The trapping code holds g1 only in a register and
 * g2 only in its own frame (a leaf: its red zone). */
#define _GNU_SOURCE
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <ucontext.h>

void *volatile keep, *volatile g1, *volatile g2;
static sigjmp_buf probe_jb;
static uintptr_t frame_lo, frame_hi; /* the signal frame: its first word, the interrupted red zone's start */

static void on_probe(int s, siginfo_t *si, void *uc_) {
  (void)s;
  (void)si;
  ucontext_t *uc = uc_;
  frame_lo = (uintptr_t)uc - sizeof(uintptr_t); /* the handler's return address */
  frame_hi = (uintptr_t)uc->uc_mcontext.gregs[REG_RSP] - 128;
  siglongjmp(probe_jb, 1);
}

/* Zeroes 64 KiB of stack below the caller, and writes v over [lo, hi) if
 * that lies there. */
__attribute__((noinline)) static void smear(uintptr_t v, uintptr_t lo, uintptr_t hi) {
  volatile uintptr_t a[8192];
  for (int i = 0; i < 8192; i++) {
    uintptr_t at = (uintptr_t)&a[i];
    a[i] = at >= lo && at < hi ? v : 0;
  }
}

__attribute__((noinline)) static void trap(int probe) {
  void *volatile in_frame = NULL;
  void *in_reg = NULL;
  if (!probe) {
    in_frame = g2;
    in_reg = g1;
    g1 = g2 = NULL;
  }
  __asm__ volatile("ud2" : : "r"(in_reg));
  (void)in_frame;
}
