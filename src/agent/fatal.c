/* A report when the program dies of a signal, as valgrind gives one: a
 * server stopped with Ctrl-C (SIGINT) or by `kill`/`timeout` (SIGTERM), a
 * program that crashes (SIGSEGV) or aborts (SIGABRT). Without this such a
 * process ended with no report at all: nothing of the exit path runs.
 *
 * For every signal whose default action ends the process and whose
 * disposition is SIG_DFL, the agent installs a handler of its own, and keeps
 * the program's view unchanged: sigaction, signal, sysv_signal, bsd_signal
 * and sigset are interposed so that the program reads SIG_DFL (with the
 * mask and flags it set) where the agent's handler is, and what the program
 * installs replaces the agent's handler as it would SIG_DFL. A program that
 * sets SIG_DFL again (a crash handler that resets the default and re-raises,
 * the usual pattern) gets the agent's handler back. A signal ignored at
 * start (nohup's SIGHUP, a background job's SIGINT) stays ignored.
 *
 * The handler first gives the signal its default action back and unblocks
 * it, so that a second one (Ctrl-C again, a supervisor's second SIGTERM)
 * ends the process at once; then it writes the report as an exit from a
 * signal handler does (agent.c: taken-over locks, the exit heap), and then
 * the process dies of the signal itself, so its status (and core dump) are
 * what they would have been. A fault the kernel raised (SIGSEGV, SIGBUS,
 * SIGILL, SIGFPE) is left to happen again by returning into the faulting
 * instruction, which keeps its own siginfo in the core; any other signal is
 * sent again to this thread. A timer sends it again after two minutes in
 * case the report itself never ends: the program then dies as it would
 * have, with no report, rather than hang. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include "hs.h"

int hs_fatal_signal;
uintptr_t hs_fatal_frames[HS_MAX_FRAMES];
unsigned hs_fatal_nframes;

/* Default action: terminate or dump core. Real-time signals are left alone
 * (glibc and the agent use some of them). */
static const int fatal_list[] = {SIGHUP,  SIGINT,    SIGQUIT, SIGILL,  SIGTRAP, SIGABRT, SIGBUS, SIGFPE,
                                 SIGUSR1, SIGSEGV,   SIGUSR2, SIGPIPE, SIGALRM, SIGTERM, SIGXCPU, SIGXFSZ,
                                 SIGVTALRM, SIGPROF, SIGSYS,  SIGSTKFLT, SIGIO, SIGPWR};

static unsigned long long covered; /* bit sig: the agent may hold this signal's disposition */
/* What the program last set for a signal whose handler is the agent's:
 * SIG_DFL with its mask and flags. Written by the program's own calls only. */
static struct sigaction view[65];

typedef sighandler_t (*signal_fn)(int, sighandler_t);

/* glibc's sigaction: the agent's own calls come here, never through the
 * interposer below (a query there answers the program's view). */
int hs_sigaction(int sig, const struct sigaction *act, struct sigaction *oact) {
  if (!hs_real.sigaction) hs_hooks_resolve();
  if (!hs_real.sigaction) {
    errno = ENOSYS;
    return -1;
  }
  return hs_real.sigaction(sig, act, oact);
}

static void fatal_handler(int sig, siginfo_t *si, void *uc);

static inline int is_covered(int sig) { return sig > 0 && sig < 64 && (covered >> sig & 1); }
static inline int is_ours(const struct sigaction *a) {
  return (a->sa_flags & SA_SIGINFO) && a->sa_sigaction == fatal_handler;
}

static int install(int sig, struct sigaction *old) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = fatal_handler;
  sa.sa_flags = SA_SIGINFO | SA_RESTART;
  return hs_sigaction(sig, &sa, old);
}

/* Ends the process with sig, its default action restored and unblocked. */
static void die_of(int sig) {
  syscall(SYS_tgkill, (long)getpid(), (long)gettid(), (long)sig);
  /* still here (the program blocks it in a way tgkill cannot pass?): the
   * shell's status for a death by this signal */
  hs_real._exit(128 + sig);
}

static const char *sig_name(int sig) {
  const char *n = sigabbrev_np(sig);
  return n ? n : "?";
}

/* Where the signal found the program, as valgrind prints it under its
 * "Process terminating" line: from the interrupted registers, bounded by
 * the mapping the stack pointer is in (the thread's stack, or an
 * alternate signal stack). Frame 0 is the interrupted pc + 1. */
static void interrupted_stack(const ucontext_t *u) {
  if (!u) return;
  const uintptr_t pc = (uintptr_t)u->uc_mcontext.gregs[REG_RIP], sp = (uintptr_t)u->uc_mcontext.gregs[REG_RSP],
                  bp = (uintptr_t)u->uc_mcontext.gregs[REG_RBP];
  uintptr_t end = 0;
  unsigned max = hs_opt.max_frames > 0 && hs_opt.max_frames < HS_MAX_FRAMES ? (unsigned)hs_opt.max_frames : HS_MAX_FRAMES;
  if (!hs_mapping_at(sp, &end, NULL) && end > sp)
    hs_fatal_nframes = hs_unwind_remote(pc, sp, end, 1, bp, NULL, 0, hs_fatal_frames, max);
}

static void fatal_handler(int sig, siginfo_t *si, void *uc) {
  int saved_errno = errno;
  struct sigaction dfl;
  memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  hs_sigaction(sig, &dfl, NULL);
  sigset_t one;
  sigemptyset(&one);
  sigaddset(&one, sig);
  pthread_sigmask(SIG_UNBLOCK, &one, NULL);
  /* Faults the kernel raised for an instruction: returning runs it again,
   * and it faults again with the default action, its siginfo intact. */
  const int refault = si && si->si_code > 0 && (sig == SIGSEGV || sig == SIGBUS || sig == SIGILL || sig == SIGFPE);
  /* A check in progress (an on-demand one, a dump) holds the table: no
   * second one on top of it. A process that is not tracking: nothing to say.
   * A vfork child shares the parent's memory: it marks nothing there. */
  if (atomic_load(&hs_active) && !hs_checking && !hs_fatal_signal && hs_own_process()) {
    hs_fatal_signal = sig;
    /* the watchdog: this signal again, to this thread, in two minutes */
    struct sigevent ev;
    memset(&ev, 0, sizeof ev);
    ev.sigev_notify = SIGEV_THREAD_ID;
    ev.sigev_signo = sig;
    ev._sigev_un._tid = (int)gettid();
    int timer = -1;
    if (!syscall(SYS_timer_create, CLOCK_MONOTONIC, &ev, &timer)) {
      struct itimerspec when = {.it_value = {120, 0}};
      syscall(SYS_timer_settime, timer, 0, &when, NULL);
    }
    if (!hs_opt.quiet && !hs_sampling) { /* sample mode prints no report at exit either */
      int fd = hs_log_fd(), pid = (int)getpid();
      if (fd >= 0) {
        hs_dprintf(fd, "==%d== \n==%d== Process terminating with default action of signal %d (SIG%s)\n", pid, pid,
                   sig, sig_name(sig));
        if (refault && (sig == SIGSEGV || sig == SIGBUS))
          hs_dprintf(fd, "==%d==  %s at address %p\n", pid,
                     sig == SIGBUS ? "Bus error"
                     : si->si_code == SEGV_ACCERR ? "Bad permissions for mapped region"
                                                  : "Access not within mapped region",
                     si->si_addr);
      }
    }
    interrupted_stack(uc);
    hs_report_at_exit(128 + sig, (uintptr_t)__builtin_frame_address(0));
  }
  errno = saved_errno;
  if (refault) return;
  die_of(sig);
}

void hs_fatal_block(sigset_t *old) {
  sigset_t s;
  sigemptyset(&s);
  for (size_t i = 0; i < sizeof fatal_list / sizeof *fatal_list; i++) sigaddset(&s, fatal_list[i]);
  pthread_sigmask(SIG_BLOCK, &s, old);
}
void hs_fatal_unblock(const sigset_t *old) { pthread_sigmask(SIG_SETMASK, old, NULL); }

void hs_fatal_init(void) {
  for (size_t i = 0; i < sizeof fatal_list / sizeof *fatal_list; i++) {
    int sig = fatal_list[i];
    if (sig == hs_opt.dump_signal) continue; /* the heap dumper's (profile.c) */
    /* covered even when not SIG_DFL now: a program started with SIGHUP
     * ignored (nohup) that sets SIG_DFL later gets the handler then */
    __atomic_or_fetch(&covered, 1ull << sig, __ATOMIC_RELAXED);
    struct sigaction cur;
    if (hs_sigaction(sig, NULL, &cur) || cur.sa_handler != SIG_DFL || (cur.sa_flags & SA_SIGINFO)) continue;
    view[sig] = cur;
    install(sig, NULL);
  }
}

/* ---- the program's view ------------------------------------------------ */

HS_EXPORT int sigaction(int sig, const struct sigaction *act, struct sigaction *oact) {
  if (!is_covered(sig)) return hs_sigaction(sig, act, oact);
  struct sigaction want, prev = view[sig], cur;
  if (act) want = *act; /* act and oact may be the same */
  int r;
  if (act && (want.sa_flags & SA_SIGINFO ? want.sa_sigaction == fatal_handler : want.sa_handler == SIG_DFL)) {
    /* SIG_DFL (or the agent's handler, as an earlier query could not have
     * shown it): the agent's handler stays, the program sees what it set */
    r = install(sig, &cur);
    if (!r) {
      view[sig] = want;
      view[sig].sa_handler = SIG_DFL;
      view[sig].sa_flags &= ~SA_SIGINFO;
    }
  } else {
    r = hs_sigaction(sig, act ? &want : NULL, &cur);
  }
  if (!r && oact) *oact = is_ours(&cur) ? prev : cur;
  return r;
}

/* The BSD and System V variants: the real call sets the disposition (with
 * its own flags), then SIG_DFL gets the agent's handler back, and the
 * agent's handler reads back as SIG_DFL. */
static sighandler_t via(const char *name, signal_fn *fn, int sig, sighandler_t h) {
  if (!*fn) *fn = (signal_fn)dlsym(RTLD_NEXT, name);
  if (!*fn) {
    errno = ENOSYS;
    return SIG_ERR;
  }
  sighandler_t old = (*fn)(sig, h);
  if (old == SIG_ERR || !is_covered(sig)) return old;
  if (h == SIG_DFL || h == (sighandler_t)(void *)fatal_handler) {
    memset(&view[sig], 0, sizeof view[sig]);
    view[sig].sa_handler = SIG_DFL;
    install(sig, NULL);
  }
  return old == (sighandler_t)(void *)fatal_handler ? SIG_DFL : old;
}
#define VIA(name)                                   \
  HS_EXPORT sighandler_t name(int sig, sighandler_t h) { \
    static signal_fn fn;                            \
    return via(#name, &fn, sig, h);                 \
  }
VIA(signal)
VIA(bsd_signal)
VIA(ssignal)
VIA(sysv_signal)
VIA(sigset)
