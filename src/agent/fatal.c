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
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include "hs.h"

int hs_fatal_signal;
int hs_fatal_overflow;
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

/* A fault from a stack overflow finds no room on the stack for the
 * handler's frame: the kernel then kills the process outright, and the
 * program's deepest recursion ended with no report. So each thread gets an
 * alternate signal stack of the agent's, and the handlers of SIGSEGV and
 * SIGBUS run on it: the main thread a region of 256 KiB above a guard page,
 * every thread the program creates a slot of 64 KiB, cut from chunks of 64
 * above a guard page (one registered range and two mappings a chunk, not
 * one or two a thread: a program near the kernel's limit of mappings, with
 * two a thread stack, must not reach it sooner). A slot
 * belongs to a thread record (threads.c) and is reused with it. All are
 * mapped with MAP_NORESERVE: a page costs memory only once a handler
 * touches it. The handler needs about 15 KiB before the report moves to a
 * stack of its own (agent.c's report_final); measured, doc/design.md. */
#define ALT_STACK (256u << 10)
#define ALT_SLOT (64u << 10)
#define ALT_CHUNK_SLOTS 64
#define ALT_MAX_CHUNKS 1024
#define ALT_MIN_FREE (64u << 10) /* on a program's own alternate stack, the least room a report starts with */
static uintptr_t alt_region;     /* the main thread's */
static HS_TLS uintptr_t my_alt;  /* this thread's region or slot, or 0 */
static _Atomic uintptr_t alt_chunks[ALT_MAX_CHUNKS];
static atomic_uint alt_nchunks;
static hs_lock_t alt_lock;
static unsigned alt_used; /* slots handed out of the last chunk */

static int install(int sig, struct sigaction *old) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = fatal_handler;
  sa.sa_flags = SA_SIGINFO | SA_RESTART | (sig == SIGSEGV || sig == SIGBUS ? SA_ONSTACK : 0);
  return hs_sigaction(sig, &sa, old);
}

/* The kernel's: the agent's own calls (sigaltstack itself is interposed
 * below). The kernel's stack_t is glibc's. */
int hs_sigaltstack(const stack_t *ss, stack_t *old) { return (int)syscall(SYS_sigaltstack, ss, old); }

/* Is p the start of one of the agent's alternate stacks? */
static int is_agent_alt(uintptr_t p) {
  if (!p) return 0;
  if (p == alt_region) return 1;
  unsigned n = atomic_load_explicit(&alt_nchunks, memory_order_acquire);
  for (unsigned i = 0; i < n; i++) {
    uintptr_t c = atomic_load_explicit(&alt_chunks[i], memory_order_relaxed);
    if (p >= c && p < c + (uintptr_t)ALT_SLOT * ALT_CHUNK_SLOTS && (p - c) % ALT_SLOT == 0) return 1;
  }
  return 0;
}

/* This thread's, unless the program has set one already (a new thread
 * has none: the kernel clears it for a thread, and no program code has run
 * in it yet). */
static void alt_use(uintptr_t at, size_t size, int check) {
  stack_t cur;
  if (!at || (check && (hs_sigaltstack(NULL, &cur) || !(cur.ss_flags & SS_DISABLE)))) return;
  stack_t ss = {.ss_sp = (void *)at, .ss_size = size, .ss_flags = 0};
  if (!hs_sigaltstack(&ss, NULL)) my_alt = at;
}

uintptr_t hs_fatal_alt_slot(void) {
  if (!hs_lock_unless_mine(&alt_lock)) return 0;
  uintptr_t slot = 0;
  unsigned n = atomic_load_explicit(&alt_nchunks, memory_order_relaxed);
  if ((!n || alt_used == ALT_CHUNK_SLOTS) && n < ALT_MAX_CHUNKS) {
    /* A guard page below: a handler of the program's that sets SA_ONSTACK
     * without an alternate stack of its own now runs on a slot, and one
     * that needs more than 64 KiB must not run into a mapping beyond the
     * chunk (into the next slot down it only meets the agent's memory). */
    char *c = hs_mmap((size_t)ALT_SLOT * ALT_CHUNK_SLOTS + 4096);
    if (c) {
      mprotect(c, 4096, PROT_NONE);
      c += 4096;
      atomic_store_explicit(&alt_chunks[n], (uintptr_t)c, memory_order_relaxed);
      atomic_store_explicit(&alt_nchunks, ++n, memory_order_release);
      alt_used = 0;
    }
  }
  if (n && alt_used < ALT_CHUNK_SLOTS)
    slot = atomic_load_explicit(&alt_chunks[n - 1], memory_order_relaxed) + (uintptr_t)ALT_SLOT * alt_used++;
  hs_unlock(&alt_lock);
  return slot;
}

void hs_fatal_thread_start(uintptr_t slot) { alt_use(slot, ALT_SLOT, 0); }

/* Before the record, and so the slot, can go to another thread: this one
 * is still running its last destructors. One system call, no query: if
 * the program replaced the slot with a stack of its own, that one goes, in
 * a thread that is ending (and on it, the call fails and changes nothing). */
void hs_fatal_thread_exit(void) {
  stack_t off = {.ss_flags = SS_DISABLE};
  if (my_alt) hs_sigaltstack(&off, NULL);
  my_alt = 0;
}

static void alt_stack_init(void) {
  char *m = hs_mmap(ALT_STACK + 4096);
  if (!m) return;
  mprotect(m, 4096, PROT_NONE); /* a guard page */
  alt_region = (uintptr_t)m + 4096;
  if (gettid() == getpid()) alt_use(alt_region, ALT_STACK, 1);
}

/* Is there room for the report where this handler runs? Only a program's
 * own alternate stack can be small (SIGSTKSZ is 8 KiB), and the report
 * needs about 15 KiB before it moves to a stack of its own (agent.c). */
static int room_for_report(uintptr_t sp) {
  stack_t cur;
  if (hs_sigaltstack(NULL, &cur) || !(cur.ss_flags & SS_ONSTACK)) return 1;
  if (is_agent_alt((uintptr_t)cur.ss_sp)) return 1;
  return sp - (uintptr_t)cur.ss_sp >= ALT_MIN_FREE;
}

/* The writable mapping that holds x (*inside), or else the first one above
 * x, past a guard page (a mapping with no write access) that holds x. */
static int stack_from(uintptr_t x, uintptr_t *lo, uintptr_t *end, int *inside) {
  int w = 0;
  if (hs_mapping_from(x, lo, end, &w)) return -1;
  if (*lo <= x) {
    if (w) {
      *inside = 1;
      return 0;
    }
    if (hs_mapping_from(*end, lo, end, &w)) return -1;
  }
  *inside = 0;
  return w && *lo > x ? 0 : -1;
}

/* A fault near the interrupted stack pointer, where no writable memory is:
 * the stack could not grow there (the main thread's limit, `ulimit -s`),
 * or it is a thread stack's guard page. Near: a push just below it, or a
 * local of the frame just made, which may lie far above it (a big array),
 * though no further than the stack itself did. */
static int is_overflow(const siginfo_t *si, const ucontext_t *u) {
  if (!si || !u || si->si_code <= 0) return 0;
  const uintptr_t a = (uintptr_t)si->si_addr, sp = (uintptr_t)u->uc_mcontext.gregs[REG_RSP];
  if (a < sp ? sp - a > 65536 : a - sp > (8u << 20)) return 0;
  uintptr_t lo = 0, end = 0;
  int inside = 0;
  /* and the stack is the next mapping above: the main thread's at most the
   * kernel's guard gap (1 MiB) away, a thread's right above its guard page */
  return !stack_from(a, &lo, &end, &inside) && !inside && lo - a <= (1u << 20) + 65536;
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
  uintptr_t lo = 0, end = 0;
  int inside = 0;
  unsigned max = hs_opt.max_frames > 0 && hs_opt.max_frames < HS_MAX_FRAMES ? (unsigned)hs_opt.max_frames : HS_MAX_FRAMES;
  /* After a stack overflow sp may lie below the stack, or in its guard
   * page: the walk reads only from the stack's start up. */
  if (!stack_from(sp, &lo, &end, &inside) && (inside || lo - sp <= 65536))
    hs_fatal_nframes = hs_unwind_remote_in(pc, sp, inside ? sp : lo, end, bp, hs_fatal_frames, max);
}

/* The report, once the process is known to be dying of sig; frame: the
 * handler's own frame, above which the kernel put the signal frame (the
 * leak check finds the interrupted context there). */
static void report(int sig, const siginfo_t *si, const ucontext_t *uc, int refault, uintptr_t frame) {
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
  hs_fatal_overflow = refault && sig == SIGSEGV && is_overflow(si, uc);
  if (!hs_opt.quiet && !hs_sampling) { /* sample mode prints no report at exit either */
    int fd = hs_log_fd(), pid = (int)getpid(), tid = (int)gettid();
    if (fd >= 0) {
      hs_dprintf(fd, "==%d== \n==%d== Process terminating with default action of signal %d (SIG%s)\n", pid, pid, sig,
                 sig_name(sig));
      if (refault && (sig == SIGSEGV || sig == SIGBUS))
        hs_dprintf(fd, "==%d==  %s at address %p\n", pid,
                   sig == SIGBUS ? "Bus error"
                   : si->si_code == SEGV_ACCERR ? "Bad permissions for mapped region"
                                                : "Access not within mapped region",
                   si->si_addr);
      if (hs_fatal_overflow)
        hs_dprintf(fd, "==%d== Stack overflow in thread %d%s: can't grow stack to %p\n", pid, tid,
                   tid == pid ? " (main)" : "", (void *)((uintptr_t)si->si_addr & ~(uintptr_t)4095));
    }
  }
  interrupted_stack(uc);
  hs_report_at_exit(128 + sig, frame);
}

static struct {
  int sig, refault;
  const siginfo_t *si;
  const ucontext_t *uc;
  uintptr_t frame;
} moved;
static void report_moved(void) { report(moved.sig, moved.si, moved.uc, moved.refault, moved.frame); }

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
  const uintptr_t frame = (uintptr_t)__builtin_frame_address(0);
  int zero = 0;
  /* A check in progress (an on-demand one, a dump) holds the table: no
   * second one on top of it. A process that is not tracking: nothing to say.
   * A vfork child shares the parent's memory: it marks nothing there. The
   * first thread to die reports; another one dies at once. */
  if (atomic_load(&hs_active) && !hs_checking && hs_own_process() &&
      __atomic_compare_exchange_n(&hs_fatal_signal, &zero, sig, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
    static ucontext_t back, run; /* static: little room here, and one thread reports */
    if (room_for_report(frame)) {
      report(sig, si, uc, refault, frame);
    } else if (my_alt && !getcontext(&run)) {
      /* a program's own small alternate stack: the report moves to this
       * thread's region or slot of the agent's, which it no longer runs
       * on (the program's replaced it) and no other thread uses */
      moved.sig = sig;
      moved.refault = refault;
      moved.si = si;
      moved.uc = uc;
      moved.frame = frame;
      run.uc_stack.ss_sp = (void *)my_alt;
      run.uc_stack.ss_size = my_alt == alt_region ? ALT_STACK : ALT_SLOT;
      run.uc_link = &back;
      makecontext(&run, report_moved, 0);
      swapcontext(&back, &run);
    }
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
  alt_stack_init();
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

/* The agent's alternate stack reads back as none, as without the agent, while
 * the thread is not running on it; a program that sets its own replaces it. */
HS_EXPORT int sigaltstack(const stack_t *ss, stack_t *old) {
  stack_t cur;
  int r = hs_sigaltstack(ss, &cur);
  if (r || !old) return r;
  *old = cur;
  if (is_agent_alt((uintptr_t)cur.ss_sp) && !(cur.ss_flags & SS_ONSTACK)) {
    old->ss_sp = NULL;
    old->ss_size = 0;
    old->ss_flags = SS_DISABLE;
  }
  return 0;
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
