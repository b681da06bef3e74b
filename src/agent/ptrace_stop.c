/* Stopping threads with ptrace, from a helper process (LeakSanitizer's
 * "tracer" design). A signal handler stops a thread too, but the thread's
 * blocking call (poll, epoll_wait, select, nanosleep, pause, sigtimedwait)
 * then returns EINTR when it resumes, whatever SA_RESTART says: a program
 * that treats that as an error printed it, or exited with its own status,
 * because the leak check had looked at it. A ptrace stop is invisible to
 * the thread: the kernel restarts the interrupted call itself. It also stops
 * a thread that blocks every signal, whose registers the signal path cannot
 * read.
 *
 * A thread cannot trace threads of its own process, so the helper is a
 * clone() that shares the address space (CLONE_VM) but is a process of its
 * own. It shares the creating thread's TLS too, so it calls nothing that
 * touches TLS (errno, stdio, malloc): only raw system calls below. It runs
 * with every signal blocked (the program's handlers must never run on its
 * stack), has no exit signal (the program's SIGCHLD handler and wait()
 * never see it), and dies with the checking thread (PR_SET_PDEATHSIG).
 *
 * The checking thread lists the threads, as the signal path does; the helper
 * seizes them (PTRACE_SEIZE, PTRACE_INTERRUPT), reads their registers, and
 * at the end detaches them, handing back any signal that arrived meanwhile.
 * Where ptrace is refused (the process is traced already, by gdb or strace;
 * it made itself undumpable; a seccomp policy or Yama forbids it), the
 * first refusal sends the whole stop back to signals. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include "hs.h"

#ifndef PTRACE_EVENT_STOP
#define PTRACE_EVENT_STOP 128
#endif

/* A system call that leaves errno alone: the helper's errno would be the
 * checking thread's. Returns -errno on failure, as the kernel does. */
static long raw6(long n, long a, long b, long c, long d, long e, long f) {
  long r;
  register long r10 __asm__("r10") = d;
  register long r8 __asm__("r8") = e;
  register long r9 __asm__("r9") = f;
  __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9) : "rcx", "r11", "memory");
  return r;
}
#define RAW(n, a, b, c, d) raw6((n), (long)(a), (long)(b), (long)(c), (long)(d), 0, 0)

enum { CMD_STOP = 1, CMD_DETACH };

/* What the checking thread and the helper share. req and ack count the
 * commands sent and done; each side waits on the other's word. */
static struct {
  atomic_int req, ack;
  int cmd;
  struct hs_stopped *st; /* the threads of this command: st[from..to) */
  size_t from, to;
  int refused;       /* the first seize was refused: use signals */
  int any_seized;    /* a seize has succeeded in this stop */
} tc;

static pid_t helper_pid;
static char *helper_stack;
#define HELPER_STACK (256 * 1024)

static void helper_wait_req(int seen) {
  while (atomic_load(&tc.req) == seen) RAW(SYS_futex, &tc.req, FUTEX_WAIT, seen, NULL);
}
static void helper_ack(void) {
  atomic_fetch_add(&tc.ack, 1);
  RAW(SYS_futex, &tc.ack, FUTEX_WAKE, 1, NULL);
}

static long now_us(void) {
  struct timespec ts;
  RAW(SYS_clock_gettime, CLOCK_MONOTONIC, &ts, 0, 0);
  return ts.tv_sec * 1000000L + ts.tv_nsec / 1000;
}

/* The general registers in ucontext's order (REG_R8 .. REG_EFL), as the
 * signal path stores them. */
static void store_regs(struct hs_stopped *s, const struct user_regs_struct *u) {
  uintptr_t g[HS_NGREGS] = {
      [REG_R8] = u->r8,   [REG_R9] = u->r9,   [REG_R10] = u->r10, [REG_R11] = u->r11, [REG_R12] = u->r12,
      [REG_R13] = u->r13, [REG_R14] = u->r14, [REG_R15] = u->r15, [REG_RDI] = u->rdi, [REG_RSI] = u->rsi,
      [REG_RBP] = u->rbp, [REG_RBX] = u->rbx, [REG_RDX] = u->rdx, [REG_RAX] = u->rax, [REG_RCX] = u->rcx,
      [REG_RSP] = u->rsp, [REG_RIP] = u->rip, [REG_EFL] = u->eflags};
  memcpy(s->regs, g, sizeof g);
  s->sp = u->rsp;
}

/* Seizes st[from..to) and waits until each has stopped, has ended, or the
 * deadline has passed (a thread in an uninterruptible sleep, or exiting). */
static void helper_stop(void) {
  int any = 0;
  for (size_t i = tc.from; i < tc.to; i++) {
    struct hs_stopped *s = &tc.st[i];
    long r = RAW(SYS_ptrace, PTRACE_SEIZE, s->tid, 0, 0);
    if (r == -EPERM && !tc.any_seized) {
      tc.refused = 1;
      return;
    }
    if (r < 0) continue; /* ended meanwhile (ESRCH), or refused alone: scanned whole */
    tc.any_seized = 1;
    s->seized = 1;
    if (RAW(SYS_ptrace, PTRACE_INTERRUPT, s->tid, 0, 0) == 0) any = 1;
  }
  /* 200 ms as the signal path, and more for thousands of threads, which the
   * kernel has to schedule once each to stop them */
  long deadline = now_us() + 200000 + 50 * (long)(tc.to - tc.from);
  /* Waited for one by one: a wait for any tracee walks the whole list of
   * them in the kernel, which made 8,000 threads take 2 s. They stop in
   * parallel meanwhile. */
  for (size_t i = tc.from; i < tc.to && any; i++) {
    struct hs_stopped *s = &tc.st[i];
    if (!s->seized) continue;
    for (;;) {
      int status = 0;
      long t = RAW(SYS_wait4, s->tid, &status, __WALL | WNOHANG, NULL);
      if (t < 0) break; /* not ours to wait for any more */
      if (t == 0) {
        /* Sleep until the next stop's SIGCHLD (blocked, so it stays
         * pending for us: no race with the wait4 above), or the deadline;
         * a thread that does not stop by then is scanned whole. */
        long left = deadline - now_us();
        if (left <= 0) return;
        struct timespec ts = {left / 1000000, left % 1000000 * 1000};
        sigset_t chld = {{1ul << (SIGCHLD - 1)}};
        RAW(SYS_rt_sigtimedwait, &chld, NULL, &ts, sizeof(long));
        continue;
      }
      if (WIFEXITED(status) || WIFSIGNALED(status)) {
        s->seized = 0;
        break;
      }
      if (!WIFSTOPPED(status)) continue;
      /* Our interrupt (PTRACE_EVENT_STOP), or a signal that reached the
       * thread first: stopped in either case; the signal goes back at
       * detach. */
      if ((status >> 16) != PTRACE_EVENT_STOP) s->sig = WSTOPSIG(status);
      struct user_regs_struct u;
      if (RAW(SYS_ptrace, PTRACE_GETREGS, s->tid, 0, &u) == 0) {
        store_regs(s, &u);
        s->stopped = 1;
      }
      break;
    }
  }
}

static void helper_detach(void) {
  for (size_t i = 0; i < tc.to; i++)
    if (tc.st[i].seized) RAW(SYS_ptrace, PTRACE_DETACH, tc.st[i].tid, 0, tc.st[i].sig);
  /* A thread that had not stopped yet cannot be detached (ESRCH): the
   * kernel detaches it, and drops our pending interrupt, when we exit. */
}

static int helper_main(void *arg) {
  (void)arg;
  RAW(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0);
  /* Every disposition back to the default (the kernel's struct: handler,
   * flags, restorer, mask). The helper has a copy of the program's: a
   * signal that cannot be blocked (a seccomp policy's SIGSYS, a fault)
   * would run a program handler here, on our stack and the checking
   * thread's TLS. And our tracees' stops notify us with SIGCHLD, which the
   * program's disposition may ignore or mark SA_NOCLDSTOP. */
  struct { void *handler; unsigned long flags; void *restorer; unsigned long mask; } dfl = {0};
  for (int sig = 1; sig <= 64; sig++)
    if (sig != SIGKILL && sig != SIGSTOP) RAW(SYS_rt_sigaction, sig, &dfl, NULL, sizeof(long));
  int seen = 0;
  for (;;) {
    helper_wait_req(seen);
    seen = atomic_load(&tc.req);
    if (tc.cmd == CMD_DETACH) {
      helper_detach();
      helper_ack();
      RAW(SYS_exit, 0, 0, 0, 0);
    }
    helper_stop();
    helper_ack();
  }
  return 0;
}

/* Sends a command and waits for it, 10 s at most; 0 when done. A helper
 * that died (killed from outside) or hangs is killed and reaped: its
 * tracees are detached by the kernel. */
static int command(int cmd) {
  int a = atomic_load(&tc.ack), saved = errno, rc = 0;
  tc.cmd = cmd;
  atomic_fetch_add(&tc.req, 1);
  hs_futex(&tc.req, FUTEX_WAKE, 1, NULL);
  for (int waited = 0; atomic_load(&tc.ack) == a; waited++) {
    struct timespec ts = {0, 10000000};
    hs_futex(&tc.ack, FUTEX_WAIT, a, &ts);
    int st;
    if (waitpid(helper_pid, &st, __WALL | WNOHANG) == helper_pid || waited > 1000) {
      if (atomic_load(&tc.ack) != a) break;
      kill(helper_pid, SIGKILL);
      waitpid(helper_pid, &st, __WALL);
      helper_pid = 0;
      rc = -1;
      break;
    }
  }
  errno = saved;
  return rc;
}

static int named_tracer;

static int yama_scope(void) {
  char c = 0;
  int fd = hs_open_path("/proc/sys/kernel/yama/ptrace_scope", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0; /* no Yama */
  if (read(fd, &c, 1) != 1) c = '0';
  close(fd);
  return c - '0';
}

int hs_ptrace_begin(void) {
  if (!helper_stack && !(helper_stack = hs_mmap(HELPER_STACK))) return -1;
  memset(&tc, 0, sizeof tc);
  int saved = errno;
  /* No exit signal (the low byte 0): a clone child that only __WALL waits see. */
  pid_t p = hs_clone_blocked(helper_main, helper_stack + HELPER_STACK, CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_UNTRACED,
                             NULL, NULL, NULL);
  if (p <= 0) {
    errno = saved;
    return -1;
  }
  helper_pid = p;
  /* Yama's ptrace_scope 1 lets a process trace only its descendants, unless
   * the tracee names its tracer. Only then: the setting cannot be read back,
   * and the end of the stop clears it (a crash handler's exception, set by
   * the program, would be lost). */
  named_tracer = yama_scope() == 1 && prctl(PR_SET_PTRACER, (unsigned long)p, 0, 0, 0) == 0;
  errno = saved;
  return 0;
}

/* Stops st[from..to); -1 when ptrace is refused or the helper failed (then
 * nothing of this stop is held: the caller ends the helper and uses
 * signals). */
int hs_ptrace_stop(struct hs_stopped *st, size_t from, size_t to) {
  if (!helper_pid) return -1;
  tc.st = st;
  tc.from = from;
  tc.to = to;
  if (command(CMD_STOP)) return -1;
  return tc.refused ? -1 : 0;
}

void hs_ptrace_end(void) {
  int saved = errno;
  if (helper_pid && command(CMD_DETACH) == 0) {
    int st;
    waitpid(helper_pid, &st, __WALL);
  }
  helper_pid = 0;
  if (named_tracer) prctl(PR_SET_PTRACER, 0, 0, 0, 0);
  named_tracer = 0;
  errno = saved;
}
