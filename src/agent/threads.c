/* Threads: a registry of the program's threads (their stacks, alive or
 * ended), kept through an interposed pthread_create, and stop-the-world for
 * the leak check: a ptrace helper stops the other threads (ptrace_stop.c),
 * or, where ptrace is refused, each is sent a signal whose handler saves its
 * registers and waits on a futex until released. */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <threads.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include "../common/hs_report.h"
#include "hs.h"

static struct hs_thread *threads;
static hs_lock_t threads_lock;
static pthread_key_t exit_key;
static int key_ok;
static atomic_ulong thread_seq;
static size_t ndead;

void hs_threads_lock(void) { hs_lock(&threads_lock); }
void hs_threads_unlock(void) { hs_fork_release(&threads_lock); }
int hs_threads_lock_held_before_fork(void) { return hs_fork_held_before(&threads_lock); }
struct hs_thread *hs_threads_list(void) { return threads; }
uint64_t hs_threads_seq(void) { return atomic_load(&thread_seq); }

static pid_t gettid_raw(void) { return (pid_t)syscall(SYS_gettid); }

uint64_t hs_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* /proc/self/task/TID/NAME into buf (len bytes, NUL-terminated), without
 * stdio or malloc. Returns the length read, or -1 (buf then empty). */
static ssize_t read_task_file(pid_t tid, const char *name, char *buf, size_t len) {
  char path[64];
  hs_snprintf(path, sizeof path, "/proc/self/task/%d/%s", (int)tid, name);
  int fd = hs_open_path(path, O_RDONLY | O_CLOEXEC);
  ssize_t n = fd >= 0 ? read(fd, buf, len - 1) : -1;
  if (fd >= 0) close(fd);
  buf[n > 0 ? n : 0] = 0;
  return n;
}

/* A thread that has ended but is still listed: a zombie main thread (main
 * called pthread_exit and the process runs on in other threads). It
 * answers no signal and its stack holds no live frames. */
static int is_zombie(pid_t tid) {
  char buf[512];
  if (read_task_file(tid, "stat", buf, sizeof buf) <= 0) return 0;
  const char *p = strrchr(buf, ')'); /* the name may hold spaces and ')' */
  return p && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X');
}

/* Whether the thread has sig blocked (SigBlk of its status): sent then, the
 * signal would stay pending, and reach the thread whenever it unblocks it,
 * maybe after the agent has put the program's disposition back (for a
 * real-time signal the default kills the process). */
static int blocks_signal(pid_t tid, int sig) {
  char buf[2048];
  if (read_task_file(tid, "status", buf, sizeof buf) <= 0) return 0;
  const char *p = strstr(buf, "\nSigBlk:");
  if (!p) return 0;
  unsigned long long mask = strtoull(p + 8, NULL, 16);
  return sig >= 1 && sig <= 64 && ((mask >> (sig - 1)) & 1);
}

/* The thread's name (16 bytes with the NUL), from comm. */
static void read_comm(pid_t tid, char *out) {
  ssize_t n = read_task_file(tid, "comm", out, 16);
  if (n < 0) n = 0;
  while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == 0)) n--;
  out[n] = 0;
}

/* A record whose thread ended and that nobody can join any more. */
static int reclaimable(const struct hs_thread *t) { return !t->alive && !t->starting && (t->joined || t->detached); }

/* Runs at thread exit, however the thread ends (return, pthread_exit,
 * cancellation). Frames below this point are dead. */
static void on_thread_exit(void *arg) {
  struct hs_thread *t = arg;
  hs_hooks_thread_exit();
  hs_depot_thread_exit();
  hs_unwind_thread_exit();
  hs_fatal_thread_exit();
  read_comm(t->tid, t->name);
  t->final_sp = (uintptr_t)__builtin_frame_address(0);
  t->end_ns = hs_now_ns();
  hs_lock(&threads_lock);
  __atomic_store_n(&t->alive, 0, __ATOMIC_RELEASE);
  if (reclaimable(t)) ndead++;
  hs_unlock(&threads_lock);
}

struct start_arg {
  void *(*fn)(void *);
  int (*c11)(void *);     /* a C11 thread's start function, instead of fn */
  void *arg;
  int agent;              /* created by the agent (its server's threads) */
  struct hs_thread *rec;  /* its registry record */
};

/* The creator takes the record (so that a join or detach right after
 * pthread_create finds it); the thread fills in its own tid and stack. */
static struct hs_thread *take_record(void) {
  struct hs_thread *t = NULL;
  hs_lock(&threads_lock);
  if (ndead)
    for (struct hs_thread *i = threads; i; i = i->next)
      if (reclaimable(i)) {
        t = i;
        ndead--;
        break;
      }
  if (!t) {
    t = hs_alloc(sizeof *t);
    if (t) {
      memset(t, 0, sizeof *t);
      t->alt_slot = hs_fatal_alt_slot();
      t->next = threads;
      threads = t;
    }
  }
  if (t) {
    t->starting = 1;
    t->alive = 0;
    t->joined = 0;
    t->handle = 0; /* not the handle of the thread that had the record */
    t->seq = atomic_fetch_add(&thread_seq, 1) + 1;
    t->tid = 0;
    t->stack_lo = t->stack_hi = t->final_sp = 0;
    t->name[0] = 0;
  }
  hs_unlock(&threads_lock);
  return t;
}

static void register_self(struct hs_thread *t) {
  pthread_attr_t a;
  void *lo = NULL;
  size_t sz = 0;
  hs_in_agent = 1;
  if (pthread_getattr_np(pthread_self(), &a) == 0) {
    pthread_attr_getstack(&a, &lo, &sz);
    pthread_attr_destroy(&a);
  }
  hs_in_agent = 0;
  hs_lock(&threads_lock);
  t->handle = pthread_self(); /* before the thread's code can detach itself or hand its handle on */
  t->tid = gettid_raw();
  t->stack_lo = (uintptr_t)lo;
  t->stack_hi = (uintptr_t)lo + sz;
  t->final_sp = 0;
  t->start_ns = hs_now_ns();
  t->alive = 1;
  t->starting = 0;
  hs_unlock(&threads_lock);
  if (key_ok) pthread_setspecific(exit_key, t);
}

/* A C11 thread's int result travels as the pointer, as glibc's own
 * thrd_create does it (thrd_join converts it back). */
static void *run(const struct start_arg *sa) {
  return sa->c11 ? (void *)(intptr_t)sa->c11(sa->arg) : sa->fn(sa->arg);
}

static void *thread_start(void *p) {
  struct start_arg sa = *(struct start_arg *)p;
  hs_in_agent = 1;
  free(p);
  if (sa.agent || !sa.rec) {
    if (!sa.agent) hs_in_agent = 0;
    return run(&sa); /* the agent's own thread: never tracked nor listed */
  }
  hs_in_agent = 0;
  register_self(sa.rec);
  hs_fatal_thread_start(sa.rec->alt_slot);
  return run(&sa);
}

static int create_thread(pthread_t *th, const pthread_attr_t *attr, void *(*fn)(void *), int (*c11)(void *),
                         void *arg);

HS_EXPORT int pthread_create(pthread_t *th, const pthread_attr_t *attr, void *(*fn)(void *), void *arg) {
  if (!hs_real.pthread_create) hs_hooks_resolve();
  if (!atomic_load(&hs_active))
    return hs_real.pthread_create(th, attr, fn, arg);
  return create_thread(th, attr, fn, NULL, arg);
}

/* C11 threads: glibc's thrd_create, thrd_join and thrd_detach call its
 * pthread functions internally, past these hooks, so they are interposed
 * too. A thread made here is a plain pthread whose start routine returns
 * the C11 function's int, which is all glibc's own C11 marker changes. */
typedef int (*thrd_create_fn)(thrd_t *, thrd_start_t, void *);
HS_EXPORT int thrd_create(thrd_t *thr, thrd_start_t func, void *arg) {
  if (!hs_real.pthread_create) hs_hooks_resolve();
  if (!atomic_load(&hs_active)) {
    static thrd_create_fn real;
    if (!real) real = (thrd_create_fn)dlsym(RTLD_NEXT, "thrd_create");
    return real ? real(thr, func, arg) : thrd_error;
  }
  int r = create_thread((pthread_t *)thr, NULL, NULL, func, arg);
  return r == 0 ? thrd_success : r == ENOMEM ? thrd_nomem : thrd_error; /* glibc's mapping */
}

static int create_thread(pthread_t *th, const pthread_attr_t *attr, void *(*fn)(void *), int (*c11)(void *),
                         void *arg) {
  int agent = hs_in_agent;
  hs_in_agent = 1;
  struct start_arg *sa = malloc(sizeof *sa);
  if (!sa) {
    hs_in_agent = agent;
    return EAGAIN;
  }
  sa->fn = fn;
  sa->c11 = c11;
  sa->arg = arg;
  sa->agent = agent;
  sa->rec = NULL;
  if (!agent && (sa->rec = take_record())) {
    struct hs_thread *t = sa->rec;
    int ds = PTHREAD_CREATE_JOINABLE;
    if (attr) pthread_attr_getdetachstate(attr, &ds);
    t->detached = ds == PTHREAD_CREATE_DETACHED;
    t->start_routine = c11 ? (uintptr_t)c11 : (uintptr_t)fn;
    t->create_stack = hs_stack_capture((unsigned)hs_opt.max_frames);
  }
  struct hs_thread *rec = sa->rec;
  const unsigned long seq = rec ? rec->seq : 0;
  /* glibc allocates the new thread's TLS vector here: the program's memory */
  hs_in_agent = agent;
  /* Not under threads_lock: clone and the new stack's mmap take long, and
   * every thread starting meanwhile waited for the lock in register_self
   * (8,000 threads started at once spent a second yielding to each other).
   * The handle is set twice instead: by the thread itself before its code
   * runs, and here before the creator can join it. A detached thread may
   * have ended and its record gone to another thread already: seq tells. */
  int r = hs_real.pthread_create(th, attr, thread_start, sa);
  if (rec) {
    hs_lock(&threads_lock);
    if (r == 0) {
      if (rec->seq == seq) rec->handle = *th;
    } else {
      rec->starting = 0;
      rec->detached = 1; /* never ran: reclaimable */
      ndead++;
    }
    hs_unlock(&threads_lock);
  }
  if (r) {
    hs_in_agent = 1;
    free(sa);
  }
  hs_in_agent = agent;
  return r;
}

/* ---- join, detach: a joinable thread that ended and was never joined pins
 * its stack and descriptor for the life of the process. */

/* The record of the thread with handle h; with ended, only one whose
 * thread has ended. (A thread still starting is not alive yet either: it
 * may have the handle of one that was just joined, when glibc gave the
 * joined thread's descriptor to it. Taking it for the joined one marked
 * the wrong record, and the joined thread was reported as never joined.) */
static struct hs_thread *find_handle(pthread_t h, int ended) {
  for (struct hs_thread *t = threads; t; t = t->next)
    if (t->handle == h && !reclaimable(t) &&
        (!ended || (!t->starting && !__atomic_load_n(&t->alive, __ATOMIC_ACQUIRE))))
      return t;
  return NULL;
}

static void mark(pthread_t h, int joined) {
  hs_lock(&threads_lock);
  /* A joined thread has ended, and glibc may already have handed its handle
   * to a thread created since the join returned: the ended one is meant. */
  struct hs_thread *t = joined ? find_handle(h, 1) : NULL;
  if (!t) t = find_handle(h, 0);
  if (t) {
    int was = reclaimable(t);
    if (joined)
      t->joined = 1;
    else
      t->detached = 1;
    if (!was && reclaimable(t)) ndead++;
  }
  hs_unlock(&threads_lock);
}

typedef int (*join_fn)(pthread_t, void **);
HS_EXPORT int pthread_join(pthread_t th, void **ret) {
  static join_fn real;
  if (!real) real = (join_fn)dlsym(RTLD_NEXT, "pthread_join");
  int r = real(th, ret);
  if (r == 0) mark(th, 1);
  return r;
}

HS_EXPORT int pthread_tryjoin_np(pthread_t th, void **ret) {
  static join_fn real;
  if (!real) real = (join_fn)dlsym(RTLD_NEXT, "pthread_tryjoin_np");
  int r = real(th, ret);
  if (r == 0) mark(th, 1);
  return r;
}

typedef int (*timedjoin_fn)(pthread_t, void **, const struct timespec *);
HS_EXPORT int pthread_timedjoin_np(pthread_t th, void **ret, const struct timespec *abstime) {
  static timedjoin_fn real;
  if (!real) real = (timedjoin_fn)dlsym(RTLD_NEXT, "pthread_timedjoin_np");
  int r = real(th, ret, abstime);
  if (r == 0) mark(th, 1);
  return r;
}

/* glibc 2.31's join with a chosen clock: without this hook, the threads it
 * joined were reported as exited but never joined. */
typedef int (*clockjoin_fn)(pthread_t, void **, clockid_t, const struct timespec *);
HS_EXPORT int pthread_clockjoin_np(pthread_t th, void **ret, clockid_t clock, const struct timespec *abstime) {
  static clockjoin_fn real;
  if (!real) real = (clockjoin_fn)dlsym(RTLD_NEXT, "pthread_clockjoin_np");
  if (!real) return ENOSYS;
  int r = real(th, ret, clock, abstime);
  if (r == 0) mark(th, 1);
  return r;
}

typedef int (*detach_fn)(pthread_t);
HS_EXPORT int pthread_detach(pthread_t th) {
  static detach_fn real;
  if (!real) real = (detach_fn)dlsym(RTLD_NEXT, "pthread_detach");
  int r = real(th);
  if (r == 0) mark(th, 0);
  return r;
}

typedef int (*thrd_join_fn)(thrd_t, int *);
HS_EXPORT int thrd_join(thrd_t th, int *res) {
  static thrd_join_fn real;
  if (!real) real = (thrd_join_fn)dlsym(RTLD_NEXT, "thrd_join");
  int r = real(th, res);
  if (r == thrd_success) mark(th, 1);
  return r;
}

typedef int (*thrd_detach_fn)(thrd_t);
HS_EXPORT int thrd_detach(thrd_t th) {
  static thrd_detach_fn real;
  if (!real) real = (thrd_detach_fn)dlsym(RTLD_NEXT, "thrd_detach");
  int r = real(th);
  if (r == thrd_success) mark(th, 0);
  return r;
}

/* pthread_exit and pthread_cancel need no bookkeeping of their own: the
 * thread-specific destructor (on_thread_exit) sees every way a thread ends. */

void hs_threads_init(void) {
  key_ok = pthread_key_create(&exit_key, on_thread_exit) == 0;
}

/* Held while a thread dump runs (hs_threads_snapshot). */
static hs_lock_t dump_lock;

void hs_threads_after_fork_child(void) {
  /* A dump another thread was taking at the fork ends with it: the child's
   * own snapshots (its exit report takes one) start afresh. */
  hs_unlock(&dump_lock);
  /* Only the forking thread exists in the child; the other stacks are
   * still mapped but hold no live frames, and nobody will join them. */
  /* (The forking thread's own record goes too: its tid changed, and its
   * stack is scanned from its stack pointer like any running thread's.) */
  for (struct hs_thread *t = threads; t; t = t->next)
    if (t->alive) {
      t->alive = 0;
      t->final_sp = t->stack_hi;
      t->detached = 1;
      ndead++;
    }
}

/* Was this signal sent by the agent (tgkill from this process), not by the
 * program, a timer or another process? */
static int is_ours(const siginfo_t *si) { return si && si->si_code == SI_TKILL && si->si_pid == getpid(); }

/* Waits, a second at most, until no thread is inside one of the agent's
 * signal handlers (*count of them): before its buffers go or the program's
 * disposition comes back. */
static void wait_handlers_left(atomic_int *count) {
  for (int i = 0; i < 1000 && atomic_load(count); i++) {
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
}

/* Runs the program's handler for a signal that reached one of the agent's:
 * the disposition it had before the agent took the signal over. A default
 * or ignored disposition drops it (the program, which did not install a
 * handler, does not send it). */
int hs_forward_signal(const struct sigaction *o, int sig, siginfo_t *si, void *uc) {
  if (o->sa_flags & SA_SIGINFO) {
    if (!o->sa_sigaction) return 0;
    o->sa_sigaction(sig, si, uc);
  } else {
    if (o->sa_handler == SIG_DFL || o->sa_handler == SIG_IGN) return 0;
    o->sa_handler(sig);
  }
  return 1;
}

/* ---- live stacks ------------------------------------------------------------
 * A thread blocked in a system call is unwound from the pc and sp that
 * /proc shows, without a signal. A running one is sent DUMP_SIGNAL; its
 * handler only copies its registers and the top of its stack (memcpy, no
 * lock) and posts a futex, and the dumping thread unwinds the copy. The
 * handler used to call unw_backtrace, which takes libunwind's lock and the
 * dynamic linker's (dl_iterate_phdr): a thread interrupted inside dlopen or
 * dlclose held the latter, so its own handler, the other handlers and the
 * exit report all waited for each other (2 runs in 30 of a program whose
 * threads dlopen while it exits hung; the goroutine endpoint could hang a
 * server the same way). Threads that block the signal are reported without
 * a current stack. */

#define DUMP_SIGNAL (SIGRTMAX - 3)
#define DUMP_STACK_BYTES (128u << 10) /* of a running thread's stack, from its sp up */

/* The agent's own frames below a thread's start routine (the start wrapper,
 * which for a C11 thread cannot tail-call) are not the program's: dropped
 * but for the innermost frame. */
static unsigned drop_agent_frames(uintptr_t *f, unsigned n) {
  unsigned o = n ? 1 : 0;
  for (unsigned i = 1; i < n; i++)
    if (!(f[i] - 1 >= hs_self_text_start && f[i] - 1 < hs_self_text_end)) f[o++] = f[i];
  return o;
}
static struct hs_report_thread *dump_out;
static size_t dump_n;
/* What a handler leaves for the dumping thread, one per thread signalled. */
struct dump_copy {
  uintptr_t pc, sp, bp, lo, hi; /* lo, hi: the thread's stack, set before the signal */
  size_t len;
  unsigned char *bytes; /* DUMP_STACK_BYTES, mapped before the signal */
};
static struct dump_copy *dump_copies;

long hs_futex(void *w, int op, int val, const struct timespec *ts) {
  return syscall(SYS_futex, w, op, val, ts, NULL, 0);
}

static atomic_int dump_done[4096];

static atomic_int dump_active, dump_in_handler;

static struct sigaction dump_old; /* the program's disposition, under dump_lock */
static int dump_kept;             /* our handler stays: a signal may still be pending */

static void dump_handler(int sig, siginfo_t *si, void *uc_) {
  int saved = errno;
  if (!is_ours(si)) { /* the program's own signal */
    hs_forward_signal(&dump_old, sig, si, uc_);
    errno = saved;
    return;
  }
  atomic_fetch_add(&dump_in_handler, 1);
  pid_t me = gettid_raw();
  ucontext_t *uc = uc_;
  /* A late signal (the dump gave up on this thread) finds no dump. */
  for (size_t i = 0; atomic_load(&dump_active) && i < dump_n && i < 4096; i++) {
    if (dump_out[i].tid != me) continue;
    struct dump_copy *c = &dump_copies[i];
    c->pc = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
    c->sp = (uintptr_t)uc->uc_mcontext.gregs[REG_RSP];
    c->bp = (uintptr_t)uc->uc_mcontext.gregs[REG_RBP];
    c->len = 0;
    /* Only from the thread's own stack (not a fiber's or a signal stack's,
     * whose bounds are unknown here). */
    if (c->bytes && c->sp >= c->lo && c->sp < c->hi) {
      c->len = c->hi - c->sp < DUMP_STACK_BYTES ? c->hi - c->sp : DUMP_STACK_BYTES;
      memcpy(c->bytes, (const void *)c->sp, c->len);
    }
    atomic_store(&dump_done[i], 1);
    hs_futex(&dump_done[i], FUTEX_WAKE, 1, NULL);
    break;
  }
  atomic_fetch_sub(&dump_in_handler, 1);
  errno = saved;
}

/* State, wait channel and system call of a thread; for one blocked in a
 * system call also its user pc and sp (the last two fields of syscall). */
static void proc_state(struct hs_report_thread *r, uintptr_t *pc, uintptr_t *sp) {
  *pc = *sp = 0;
  char buf[512];
  ssize_t n = read_task_file(r->tid, "stat", buf, sizeof buf);
  r->state = '?';
  if (n > 0) {
    char *p = strrchr(buf, ')');
    if (p && p[1] == ' ') r->state = p[2];
  }
  read_task_file(r->tid, "wchan", r->wchan, sizeof r->wchan);
  if (!strcmp(r->wchan, "0")) r->wchan[0] = 0;
  n = read_task_file(r->tid, "syscall", buf, sizeof buf);
  r->syscall = -2;
  if (n > 0) {
    if (!strncmp(buf, "running", 7)) {
      r->syscall = -1;
    } else {
      r->syscall = strtol(buf, NULL, 10);
      /* "nr a1 a2 a3 a4 a5 a6 sp pc" */
      char *f[9];
      int k = 0;
      for (char *p = buf; *p && k < 9;) {
        while (*p == ' ') p++;
        if (!*p || *p == '\n') break;
        f[k++] = p;
        while (*p && *p != ' ' && *p != '\n') p++;
      }
      if (k == 9) {
        *sp = (uintptr_t)strtoull(f[7], NULL, 16);
        *pc = (uintptr_t)strtoull(f[8], NULL, 16);
      }
    }
  }
}

int hs_mapping_at(uintptr_t addr, uintptr_t *end, int *writable) {
  uintptr_t lo = 0, e = 0;
  int w = 0;
  if (hs_mapping_from(addr, &lo, &e, &w) || lo > addr) return -1;
  if (end) *end = e;
  if (writable) *writable = w;
  return 0;
}

int hs_mapping_from(uintptr_t addr, uintptr_t *start, uintptr_t *end, int *writable) {
  int fd = hs_open_path("/proc/thread-self/maps", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  char buf[8192];
  size_t have = 0;
  int found = 0;
  for (;;) {
    ssize_t n = read(fd, buf + have, sizeof buf - 1 - have);
    if (n <= 0) break;
    have += (size_t)n;
    buf[have] = 0;
    char *line = buf, *nl;
    while (!found && (nl = strchr(line, '\n'))) {
      *nl = 0;
      char *p;
      uintptr_t lo = (uintptr_t)strtoull(line, &p, 16);
      uintptr_t hi = *p == '-' ? (uintptr_t)strtoull(p + 1, &p, 16) : 0;
      if (addr < hi && *p == ' ') { /* "lo-hi rwxp ...", in address order */
        found = 1;
        if (start) *start = lo;
        if (end) *end = hi;
        if (writable) *writable = p[2] == 'w';
      }
      line = nl + 1;
    }
    have = strlen(line);
    memmove(buf, line, have);
    if (found || have == sizeof buf - 1) break;
  }
  close(fd);
  return found ? 0 : -1;
}

/* End of the mapping that holds addr (a thread's stack top), or 0. */
static uintptr_t mapping_end(uintptr_t addr) {
  uintptr_t end = 0;
  return hs_mapping_at(addr, &end, NULL) ? 0 : end;
}

/* voluntary + involuntary context switches of a thread, 0 if unknown. */
static uint64_t switches(pid_t tid) {
  char buf[2048];
  if (read_task_file(tid, "status", buf, sizeof buf) <= 0) return 0;
  uint64_t s = 0;
  for (const char *k = buf; (k = strstr(k, "ctxt_switches:")); k += 14) s += strtoull(k + 14, NULL, 10);
  return s;
}

/* Threads created just before the exit (or the check) may not have begun:
 * created, but not yet at register_self, they have no tid and were left out
 * of the report, the leaked threads of a program that starts workers and
 * returns from main at once. They are given up to 100 ms to begin; only
 * those that were starting at the first look are waited for. */
static void wait_for_starting(uint64_t since_seq) {
  uint64_t upto = UINT64_MAX;
  for (int i = 0; i < 100; i++) {
    uint64_t newest = 0; /* the newest still starting, up to upto */
    hs_lock(&threads_lock);
    for (struct hs_thread *t = threads; t; t = t->next)
      if (t->starting && t->seq > since_seq && t->seq <= upto && t->seq > newest) newest = t->seq;
    hs_unlock(&threads_lock);
    if (!newest) return;
    if (upto == UINT64_MAX) upto = newest;
    struct timespec ms = {0, 1000000};
    nanosleep(&ms, NULL);
  }
}

static size_t hs_threads_snapshot_cancel_off(struct hs_report_thread **out, int include_main, uint64_t since_seq) {
  *out = NULL;
  if (!include_main) wait_for_starting(since_seq);
  int saved = hs_in_agent;
  hs_in_agent = 1;
  hs_lock(&dump_lock);
  pid_t me = gettid_raw(), pid = getpid();
  hs_lock(&threads_lock);
  size_t cap = 1;
  for (struct hs_thread *t = threads; t; t = t->next) cap++;
  /* element 0 keeps the capacity for hs_threads_snapshot_free */
  struct hs_report_thread *r = hs_mmap((cap + 1) * sizeof *r);
  if (r) {
    r[0].stack_bytes = cap;
    r++;
  }
  size_t n = 0;
  uint64_t now = hs_now_ns();
  struct dump_copy *copies = r ? hs_mmap(cap * sizeof *copies) : NULL;
  /* each entry's registry record, for the state times at the end (looked
   * up by tid in the list, that was 64 million steps for 8,000 threads) */
  struct hs_thread **recs = copies ? hs_mmap(cap * sizeof *recs) : NULL;
  if (!recs && r) {
    if (copies) hs_munmap(copies, cap * sizeof *copies);
    hs_munmap(r - 1, (cap + 1) * sizeof *r);
    r = NULL;
  }
  for (struct hs_thread *t = threads; r && t && n < cap; t = t->next) {
    if (t->seq <= since_seq) continue;
    int alive = __atomic_load_n(&t->alive, __ATOMIC_ACQUIRE);
    if (t->starting || (!alive && reclaimable(t))) continue;
    if (alive && t->tid == me) continue;
    struct hs_report_thread *x = &r[n++];
    memset(x, 0, sizeof *x);
    x->tid = t->tid;
    x->detached = t->detached;
    x->exited_unjoined = !alive;
    x->stack_bytes = t->stack_hi - t->stack_lo;
    copies[n - 1].lo = t->stack_lo;
    copies[n - 1].hi = t->stack_hi;
    recs[n - 1] = t;
    x->start_routine = t->start_routine;
    x->created = hs_depot_get(t->create_stack, &x->ncreated);
    if (!x->created) x->ncreated = 0;
    x->seconds_alive = (double)((alive ? now : t->end_ns) - t->start_ns) / 1e9;
    if (alive)
      read_comm(t->tid, x->name);
    else {
      memcpy(x->name, t->name, sizeof x->name);
      x->state = 'X';
      x->syscall = -2;
    }
  }
  if (include_main && me != pid && r && n < cap) {
    struct hs_report_thread *x = &r[n++];
    memset(x, 0, sizeof *x);
    x->tid = pid;
    read_comm(pid, x->name);
    /* the main thread's stack: the mapping that holds the start-up frames */
    extern void *__libc_stack_end;
    copies[n - 1].lo = 0;
    copies[n - 1].hi = mapping_end((uintptr_t)__libc_stack_end);
  }
  hs_unlock(&threads_lock);
  if (!r) {
    hs_unlock(&dump_lock);
    hs_in_agent = saved;
    return 0;
  }
  /* Ask every live one for its stack; 200 ms in all. */
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = dump_handler;
  sa.sa_flags = SA_SIGINFO | SA_RESTART;
  sigfillset(&sa.sa_mask);
  dump_out = r;
  dump_copies = copies;
  dump_n = n;
  for (size_t i = 0; i < n && i < 4096; i++) atomic_store(&dump_done[i], 0);
  atomic_store(&dump_active, 1);
  /* (Once our handler is kept, dump_old stays the program's from before.) */
  hs_sigaction(DUMP_SIGNAL, &sa, dump_kept ? NULL : &dump_old);
  /* Threads blocked in a system call are unwound from the pc and sp the
   * kernel shows: a signal would interrupt their call (sleep returns early,
   * poll fails with EINTR). Only threads that run get the signal. */
  for (size_t i = 0; i < n && i < 4096; i++) {
    if (r[i].state == 'X') continue;
    uintptr_t pc, sp;
    proc_state(&r[i], &pc, &sp);
    /* The stack's top as the registry knows it; the mapping's (a read of
     * all of /proc/self/maps: 8,000 threads took 7 s) only for a stack it
     * does not know (a fiber's, a signal stack). */
    uintptr_t hi = !sp ? 0 : sp >= copies[i].lo && sp < copies[i].hi ? copies[i].hi : mapping_end(sp);
    if (r[i].syscall >= 0 && pc && hi) {
      r[i].ncurrent =
          drop_agent_frames(r[i].current, hs_unwind_remote(pc, sp, hi, 0, 0, NULL, 0, r[i].current, HS_THREAD_FRAMES));
      atomic_store(&dump_done[i], 1);
    }
  }
  int all = 1;
  /* A thread that blocks the signal gets no current stack: sent, the
   * signal would only make us wait 200 ms and stay pending. */
  static unsigned char sent[4096]; /* under dump_lock */
  for (size_t i = 0; i < n && i < 4096; i++) {
    sent[i] = r[i].state != 'X' && !atomic_load(&dump_done[i]) && !blocks_signal(r[i].tid, DUMP_SIGNAL);
    if (!sent[i]) continue;
    copies[i].bytes = hs_mmap(DUMP_STACK_BYTES); /* NULL: the pc alone */
    syscall(SYS_tgkill, pid, r[i].tid, DUMP_SIGNAL);
  }
  uint64_t deadline = hs_now_ns() + 200000000ull;
  for (size_t i = 0; i < n && i < 4096; i++) {
    if (!sent[i]) continue;
    while (!atomic_load(&dump_done[i])) {
      uint64_t t = hs_now_ns();
      if (t >= deadline) break;
      struct timespec ts = {0, (long)((deadline - t) < 5000000 ? (deadline - t) : 5000000)};
      hs_futex(&dump_done[i], FUTEX_WAIT, 0, &ts);
    }
    if (!atomic_load(&dump_done[i])) all = 0;
  }
  /* A thread that blocks the signal gets it later: keep our handler (it
   * finds nothing to do) rather than let the default action kill it. */
  atomic_store(&dump_active, 0);
  wait_handlers_left(&dump_in_handler);
  if (all && !dump_kept)
    hs_sigaction(DUMP_SIGNAL, &dump_old, NULL);
  else
    dump_kept = 1;
  dump_n = 0;
  /* The copies, unwound here with the rules of the whole cache (a miss
   * computes one: no handler is waiting on it). */
  for (size_t i = 0; i < n && i < 4096; i++) {
    if (!sent[i]) continue;
    struct dump_copy *c = &copies[i];
    if (atomic_load(&dump_done[i]) && c->pc) {
      unsigned k = c->len ? hs_unwind_remote(c->pc, c->sp, c->sp + c->len, 1, c->bp, c->bytes, c->len, r[i].current,
                                             HS_THREAD_FRAMES)
                          : 0;
      if (!k) r[i].current[k++] = c->pc + 1;
      r[i].ncurrent = drop_agent_frames(r[i].current, k);
    }
    if (c->bytes && !atomic_load(&dump_in_handler)) hs_munmap(c->bytes, DUMP_STACK_BYTES);
  }
  if (!atomic_load(&dump_in_handler)) hs_munmap(copies, cap * sizeof *copies);
  for (size_t i = 0; i < n; i++)
    if (r[i].state != 'X' && r[i].syscall < 0) {
      uintptr_t pc, sp;
      proc_state(&r[i], &pc, &sp); /* a running thread: its state after the signal */
    }
  /* How long a thread has been where it is, as far as we can tell: if its
   * context-switch count is what it was at an earlier look, it has not run
   * since, so at least since then. Unknown (-1) at the first look. */
  hs_lock(&threads_lock);
  for (size_t i = 0; i < n; i++) {
    r[i].seconds_in_state = -1;
    if (r[i].state == 'X') continue;
    uint64_t sw = switches(r[i].tid);
    struct hs_thread *t = recs[i]; /* NULL for the main thread, which has none */
    if (t && t->tid == r[i].tid && t->alive) { /* (not reused meanwhile by another thread) */
      if (sw && t->last_switches == sw)
        r[i].seconds_in_state = (double)(now - t->same_since_ns) / 1e9;
      else {
        t->last_switches = sw;
        t->same_since_ns = now;
      }
    }
  }
  hs_unlock(&threads_lock);
  hs_munmap(recs, cap * sizeof *recs);
  hs_unlock(&dump_lock);
  hs_in_agent = saved;
  *out = r;
  return n;
}

size_t hs_threads_snapshot(struct hs_report_thread **out, int include_main, uint64_t since_seq) {
  int cs = hs_cancel_off();
  size_t r = hs_threads_snapshot_cancel_off(out, include_main, since_seq);
  hs_cancel_restore(cs);
  return r;
}

void hs_threads_snapshot_free(struct hs_report_thread *t, size_t n) {
  (void)n;
  if (!t) return;
  t--;
  hs_munmap(t, (t->stack_bytes + 1) * sizeof *t);
}

/* ---- stop the world ---------------------------------------------------- */

#define STOP_SIGNAL (SIGRTMAX - 2)
static struct hs_stopped *stopped;
static size_t nstopped, capstopped;
static atomic_int resume_word;
static atomic_int in_handler;
static atomic_int stopping;   /* a check is stopping or holding the threads */
static int handler_kept;      /* our handler stays: a signal may still be pending */

static struct sigaction old_action;

static void stop_handler(int sig, siginfo_t *si, void *uc_) {
  int saved = errno;
  /* The program's own signal (it may use this one too: a POSIX timer, a
   * pthread_kill) goes to its handler; parking on it would stop a thread
   * the check never asked, the checking thread itself among them (every
   * run of a program whose timer fired this signal hung). A late signal of
   * ours, sent to a thread that had it blocked until after the check,
   * finds nothing to do (stopped[] may be another check's by now). */
  if (!is_ours(si)) {
    hs_forward_signal(&old_action, sig, si, uc_);
    errno = saved;
    return;
  }
  atomic_fetch_add(&in_handler, 1);
  if (!atomic_load(&stopping)) {
    atomic_fetch_sub(&in_handler, 1);
    errno = saved;
    return;
  }
  pid_t me = gettid_raw();
  ucontext_t *uc = uc_;
  for (size_t i = 0; i < nstopped; i++)
    if (stopped[i].tid == me) {
      for (int r = 0; r < HS_NGREGS && r < NGREG; r++) stopped[i].regs[r] = (uintptr_t)uc->uc_mcontext.gregs[r];
      stopped[i].sp = (uintptr_t)uc->uc_mcontext.gregs[REG_RSP];
      atomic_thread_fence(memory_order_release);
      __atomic_store_n(&stopped[i].stopped, 1, __ATOMIC_RELEASE);
      hs_futex(&stopped[i].stopped, FUTEX_WAKE, 1, NULL);
      break;
    }
  while (!atomic_load(&resume_word)) hs_futex(&resume_word, FUTEX_WAIT, 0, NULL);
  atomic_fetch_sub(&in_handler, 1);
  errno = saved;
}

struct linux_dirent64 {
  uint64_t d_ino;
  int64_t d_off;
  unsigned short d_reclen;
  unsigned char d_type;
  char d_name[];
};

/* Lists the process's threads without opendir (which mallocs): at most cap
 * in out, and returns how many there are. */
static size_t list_tids(pid_t *out, size_t cap) {
  int fd = hs_open_path("/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return 0;
  char buf[8192];
  size_t n = 0;
  for (;;) {
    long r = syscall(SYS_getdents64, fd, buf, sizeof buf);
    if (r <= 0) break;
    for (long off = 0; off < r;) {
      struct linux_dirent64 *d = (struct linux_dirent64 *)(buf + off);
      off += d->d_reclen;
      if (d->d_name[0] < '0' || d->d_name[0] > '9') continue;
      if (n < cap) out[n] = (pid_t)atoi(d->d_name);
      n++;
    }
  }
  close(fd);
  return n;
}

/* how this stop stops the threads: not yet decided (no other thread found),
 * by the ptrace helper, or by signals */
static enum { STOP_NONE, STOP_PTRACE, STOP_SIGNALS } stop_mode, last_stop_mode;

const char *hs_last_stop_method(void) {
  return last_stop_mode == STOP_PTRACE ? "ptrace" : last_stop_mode == STOP_SIGNALS ? "signals" : "none";
}

static void install_stop_handler(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = stop_handler;
  sa.sa_flags = SA_SIGINFO | SA_RESTART;
  sigfillset(&sa.sa_mask);
  atomic_store(&stopping, 1);
  /* (Once kept, old_action stays the program's disposition from before.) */
  hs_sigaction(STOP_SIGNAL, &sa, handler_kept ? NULL : &old_action);
}

static void signal_stop(pid_t pid, size_t i) {
  /* A thread that blocks the signal would not stop anyway: it is scanned
   * whole, without waiting 200 ms a round for it. */
  if (blocks_signal(stopped[i].tid, STOP_SIGNAL)) return;
  stopped[i].signalled = 1;
  syscall(SYS_tgkill, pid, stopped[i].tid, STOP_SIGNAL);
}

size_t hs_stop_world(struct hs_stopped **out) {
  pid_t me = gettid_raw(), pid = getpid();
  /* Room for every thread there is and as many again created meanwhile
   * (a fixed 1,024 left the rest running through the check: registers
   * unread, memory changing under the scan). The array is kept for the
   * next check; a larger one replaces it, the old one is never unmapped
   * (a late stop handler of the last check may still read it). */
  size_t cap = 2 * list_tids(NULL, 0) + 256;
  if (cap > capstopped) {
    struct hs_stopped *s = hs_mmap(cap * sizeof *s);
    if (s) {
      stopped = s;
      capstopped = cap;
    }
  }
  cap = capstopped;
  pid_t *tids = hs_mmap(cap * sizeof *tids);
  nstopped = 0;
  atomic_store(&resume_word, 0);
  *out = stopped;
  if (!tids || !stopped) {
    if (tids) hs_munmap(tids, cap * sizeof *tids);
    return 0;
  }

  /* A ptrace helper first (ptrace_stop.c): it leaves the threads' blocking
   * calls uninterrupted. Where ptrace is refused, signals. Decided at the
   * first thread found: a process with one thread needs neither. */
  stop_mode = STOP_NONE;

  /* Threads may be created while we work: list again until nothing new. */
  for (int round = 0; round < 4; round++) {
    size_t n = list_tids(tids, cap), added = 0, first = nstopped;
    if (n > cap) n = cap;
    for (size_t i = 0; i < n; i++) {
      if (tids[i] == me) continue;
      int known = 0;
      for (size_t j = 0; j < nstopped; j++)
        if (stopped[j].tid == tids[i]) known = 1;
      if (known || nstopped >= capstopped || is_zombie(tids[i])) continue;
      stopped[nstopped].tid = tids[i];
      stopped[nstopped].stopped = 0;
      stopped[nstopped].signalled = 0;
      stopped[nstopped].seized = 0;
      stopped[nstopped].sig = 0;
      atomic_thread_fence(memory_order_seq_cst);
      nstopped++;
      added++;
    }
    if (added && stop_mode == STOP_NONE)
      stop_mode = hs_opt.stop_ptrace && hs_ptrace_begin() == 0 ? STOP_PTRACE : STOP_SIGNALS;
    /* Refused on its first thread (traced already, undumpable, a seccomp
     * policy), or the helper failed (the kernel detached what it held):
     * no thread is held; signals for all. */
    if (added && stop_mode == STOP_PTRACE && hs_ptrace_stop(stopped, first, nstopped)) {
      hs_ptrace_end(); /* (what is left of it) */
      stop_mode = STOP_SIGNALS;
      first = 0;
      for (size_t j = 0; j < nstopped; j++) stopped[j].stopped = stopped[j].seized = 0;
    }
    if (added && stop_mode == STOP_SIGNALS) {
      if (!atomic_load(&stopping)) install_stop_handler();
      for (size_t j = first; j < nstopped; j++) signal_stop(pid, j);
    }
    /* Wait for each thread to park, 200 ms at most in all per round. */
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (size_t j = 0; j < nstopped; j++) {
      while (stopped[j].signalled && !__atomic_load_n(&stopped[j].stopped, __ATOMIC_ACQUIRE)) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long ms = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
        if (ms > 200) break;
        struct timespec ts = {0, 2000000};
        hs_futex(&stopped[j].stopped, FUTEX_WAIT, 0, &ts);
      }
    }
    if (!added) break;
  }
  hs_munmap(tids, cap * sizeof *tids);
  *out = stopped;
  return nstopped;
}

void hs_resume_world(void) {
  last_stop_mode = stop_mode;
  if (stop_mode != STOP_SIGNALS) {
    if (stop_mode == STOP_PTRACE) hs_ptrace_end();
    stop_mode = STOP_NONE;
    return;
  }
  stop_mode = STOP_NONE;
  /* A thread signalled that did not stop blocked the signal after it was
   * sent: it is still pending there. */
  int pending = 0;
  for (size_t i = 0; i < nstopped; i++)
    if (stopped[i].signalled && !__atomic_load_n(&stopped[i].stopped, __ATOMIC_ACQUIRE)) pending = 1;
  atomic_store(&stopping, 0);
  atomic_store(&resume_word, 1);
  hs_futex(&resume_word, FUTEX_WAKE, 0x7fffffff, NULL);
  /* Let handlers leave before the old disposition comes back, so that a
   * late signal never reaches a program handler that does not expect it. */
  wait_handlers_left(&in_handler);
  /* With a signal still pending, our handler stays (it finds no check and
   * returns): the default action of a real-time signal ends the process,
   * whenever that thread unblocks it. */
  if (pending)
    handler_kept = 1;
  else if (!handler_kept)
    hs_sigaction(STOP_SIGNAL, &old_action, NULL);
}

#ifndef SA_RESTORER
#define SA_RESTORER 0x04000000 /* the kernel's; glibc sets it and hides it */
#endif
/* glibc's signal trampoline (__restore_rt, the sa_restorer of every handler
 * glibc installs, read back from the kernel for any signal that has one),
 * or 0 when no signal has a handler. */
static uintptr_t signal_restorer(void) {
  /* 64 queries: the exit report asked three times. The address, once
   * found, is glibc's for good; "none" holds for the rest of the exit. */
  static uintptr_t found;
  static int none_at_exit;
  if (found) return found;
  if (none_at_exit && hs_exit_thread) return 0;
  for (int sig = 1; sig < NSIG; sig++) {
    struct sigaction o;
    if (sig == SIGKILL || sig == SIGSTOP || hs_sigaction(sig, NULL, &o)) continue;
    if ((o.sa_flags & SA_RESTORER) && o.sa_restorer && o.sa_handler != SIG_DFL && o.sa_handler != SIG_IGN)
      return found = (uintptr_t)o.sa_restorer;
  }
  if (hs_exit_thread) none_at_exit = 1;
  return 0;
}

/* Whether this thread runs a signal handler: some frame above the stack
 * pointer returns into glibc's signal trampoline. The stack is scanned
 * word by word up to the end of its mapping (an alternate signal stack
 * included): a stale copy of the address can only make this say yes
 * wrongly, which costs the exit report some memory (the exit heap), never
 * the program. No malloc: it runs before the exit report knows whether
 * glibc's heap is safe. */
int hs_in_signal_handler(void) {
  uintptr_t restorer = signal_restorer();
  if (!restorer) return 0;
  uintptr_t sp = (uintptr_t)__builtin_frame_address(0), end = mapping_end(sp);
  for (uintptr_t p = sp & ~(uintptr_t)7; p + sizeof(uintptr_t) <= end; p += sizeof(uintptr_t))
    if (*(const uintptr_t *)p == restorer) return 1;
  return 0;
}

/* The kernel's signal frame (x86-64 rt_sigframe) is the handler's return
 * address (the trampoline), a ucontext and a siginfo, and the FPU state
 * further up, below the interrupted stack pointer's red zone. Parts of it
 * are never written: the sigcontext's reserved words, the padding that
 * aligns the FPU state, the XSAVE components in their initial state. They
 * keep whatever an earlier, deeper call left there, and a leak check that
 * scanned them found a block the program had dropped "still reachable"
 * (tests/progs/sigframe.c). So the frame is not a root: the interrupted
 * registers it saved are, and the interrupted stack from its red zone up
 * (leakcheck.c). A word equal to the trampoline's
 * address is taken for a frame only if the ucontext after it agrees: its
 * FPU state pointer lies above it, within 64 KiB, and the interrupted stack
 * pointer lies above that, or on another writable mapping (the handler ran
 * on an alternate signal stack). */
size_t hs_signal_frames(uintptr_t sp, struct hs_sigframe *out, size_t max) {
  uintptr_t restorer = signal_restorer();
  return restorer ? hs_signal_frames_in(sp, mapping_end(sp), restorer, out, max) : 0;
}
uintptr_t hs_signal_restorer(void) { return signal_restorer(); }
size_t hs_signal_frames_in(uintptr_t sp, uintptr_t end, uintptr_t restorer, struct hs_sigframe *out, size_t max) {
  size_t n = 0;
  if (!restorer) return 0;
  for (uintptr_t p = sp & ~(uintptr_t)7; n < max && p + sizeof(uintptr_t) + sizeof(ucontext_t) <= end;
       p += sizeof(uintptr_t)) {
    if (*(const uintptr_t *)p != restorer) continue;
    const ucontext_t *uc = (const ucontext_t *)(p + sizeof(uintptr_t));
    uintptr_t fp = (uintptr_t)uc->uc_mcontext.fpregs, rsp = (uintptr_t)uc->uc_mcontext.gregs[REG_RSP];
    if (fp && (fp <= p || fp - p > 65536 || fp % 16)) continue;
    uintptr_t rsp_end = 0;
    int w = 0;
    if (rsp > (fp ? fp : p) && rsp < end) {
      rsp_end = end;
    } else if (rsp < p || rsp >= end) { /* an alternate signal stack */
      if (hs_mapping_at(rsp, &rsp_end, &w) || !w) continue;
    } else {
      continue;
    }
    struct hs_sigframe *f = &out[n++];
    f->lo = p;
    f->resume_sp = rsp;
    for (int r = 0; r < HS_SIGFRAME_REGS; r++) f->regs[r] = (uintptr_t)uc->uc_mcontext.gregs[r];
    /* a signal that interrupted a handler: its frame is further up */
    p = (rsp & ~(uintptr_t)7) - sizeof(uintptr_t);
    end = rsp_end;
  }
  return n;
}

/* ---- goleak's VerifyNone for C: heapscope_threads_mark/check ----------- */

HS_EXPORT unsigned long __heapscope_threads_mark(void) { return (unsigned long)hs_threads_seq(); }

/* Threads created after the mark that are alive, or ended but unjoined. */
static size_t leaked_since(uint64_t mark) {
  size_t n = 0;
  hs_lock(&threads_lock);
  for (struct hs_thread *t = threads; t; t = t->next)
    if (t->seq > mark && !reclaimable(t)) n++;
  hs_unlock(&threads_lock);
  return n;
}

HS_EXPORT int __heapscope_threads_check(unsigned long mark, int timeout_ms, char *report, size_t len) {
  if (!atomic_load(&hs_active)) return -1;
  uint64_t deadline = hs_now_ns() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0) * 1000000ull;
  while (leaked_since(mark) && hs_now_ns() < deadline) {
    struct timespec ts = {0, 5000000};
    nanosleep(&ts, NULL);
  }
  if (!leaked_since(mark)) {
    if (report && len) hs_snprintf(report, len, "no leaked threads\n");
    return 0;
  }
  struct hs_report_thread *t = NULL;
  size_t n = hs_threads_snapshot(&t, 0, mark);
  if (report && len) {
    int saved = hs_in_agent, cs = hs_cancel_off();
    hs_in_agent = 1;
    hs_threads_format_fn fmt = (hs_threads_format_fn)hs_report_sym(HS_THREADS_FORMAT_SYM);
    if (fmt)
      fmt(t, n, report, len);
    else
      hs_snprintf(report, len, "%zu leaked threads (no report library to describe them)\n", n);
    hs_in_agent = saved;
    hs_cancel_restore(cs);
  }
  hs_threads_snapshot_free(t, n);
  return (int)n;
}

/* ---- the dynamic loader's list lock in a forked child --------------------
 * glibc resets the loader's main lock in a forked child, not the one that
 * dl_iterate_phdr, dlopen and dlclose take to walk or change the list of
 * loaded objects. A child forked while another thread held it (inside
 * dlopen, dlclose, or a dl_iterate_phdr callback: libunwind's, the
 * program's) waits forever in its first such call, and the agent makes
 * them at exit (libunwind's walk to exit()'s caller, the report library,
 * the RTLD_DEEPBIND scan) and where a capture needs libunwind or libdw.
 * Every child of tests/progs/forkrace.c hung at exit once rules stopped
 * costing a lock of the agent's (ehframe.c), which had kept the forks
 * apart from the reloading thread's dlopen. So a forked child tries the
 * lock once, before its first such call, from a bare helper thread (as
 * parallel.c's), and gives it 250 ms; a helper that does not come back
 * means the lock is held for good, and that process leaves the loader
 * alone: its captures that need libunwind are empty, its report is not
 * symbolized, and a warning says why. */
static atomic_int loader_state; /* 0 usable, 1 to be tried (a forked child), 2 being tried, -1 held for good */
static int loader_no_open; /* a child of a process with threads: no dlopen (see hs_loader_may_open) */
void hs_loader_after_fork(int parent_threaded) {
  if (!parent_threaded) return; /* no other thread could hold the loader's locks */
  atomic_store(&loader_state, 1);
  loader_no_open = 1;
}
/* A dlopen in a child forked from a process with threads: even with the
 * lock free and the list consistent, the other thread's dlopen may have
 * been anywhere (forkrace: a child died in search_cache, on ld.so.cache's
 * mapping the parent's dlopen was done with). What a child needs is loaded
 * before the fork instead (agent.c, atfork_prepare). */
int hs_loader_may_open(void) { return hs_loader_usable() && !loader_no_open; }

static int loader_probe_cb(struct dl_phdr_info *info, size_t size, void *arg) {
  (void)info;
  (void)size;
  (void)arg;
  return 1;
}
static atomic_int loader_probe_done;
static int loader_probe(void *arg) {
  (void)arg;
  dl_iterate_phdr(loader_probe_cb, NULL);
  atomic_store(&loader_probe_done, 1);
  hs_futex(&loader_probe_done, FUTEX_WAKE, 1, NULL);
  return 0;
}

int hs_loader_usable(void) {
  int s = atomic_load(&loader_state);
  if (HS_LIKELY(s == 0)) return 1;
  if (s != 1 || !atomic_compare_exchange_strong(&loader_state, &s, 2)) return 0; /* held, or another thread tries */
  /* Forked in the middle of a dlopen or dlclose: glibc frees the main
   * lock in the child, but the list is half changed, and a dlopen there
   * (the report library's) failed the loader's own assertion and killed
   * the child ("Inconsistency detected by ld.so: dl-sort-maps.c"). The
   * loader tells debuggers when its list is consistent. */
  if (_r_debug.r_state != RT_CONSISTENT) {
    atomic_store(&loader_state, -1);
    hs_warn("this process was forked in the middle of another thread's dlopen or dlclose: it leaves the dynamic "
            "loader alone (stacks that need libunwind are left empty, the report is not symbolized)");
    return 0;
  }
  const size_t stack_size = 64 << 10;
  char *stack = hs_mmap(stack_size);
  static volatile pid_t tid; /* cleared by the kernel when the helper is gone */
  atomic_store(&loader_probe_done, 0);
  int ok = stack && !hs_helper_start(loader_probe, stack, stack_size, NULL, &tid);
  struct timespec until, now;
  clock_gettime(CLOCK_MONOTONIC, &until);
  until.tv_nsec += 250 * 1000000L;
  if (until.tv_nsec >= 1000000000L) until.tv_sec++, until.tv_nsec -= 1000000000L;
  while (ok && !atomic_load(&loader_probe_done)) {
    clock_gettime(CLOCK_MONOTONIC, &now);
    long ns = (long)(until.tv_sec - now.tv_sec) * 1000000000L + (until.tv_nsec - now.tv_nsec);
    if (ns <= 0) break;
    struct timespec ts = {ns / 1000000000L, ns % 1000000000L};
    hs_futex(&loader_probe_done, FUTEX_WAIT, 0, &ts);
  }
  int usable = ok && atomic_load(&loader_probe_done);
  if (usable) {
    hs_helper_join(&tid);
    hs_munmap(stack, stack_size);
  } else {
    /* a helper that was started waits for good, on its stack: both stay */
    hs_warn("%s: stacks that need libunwind are left empty and the report is not symbolized",
            ok ? "this process was forked while another thread held the dynamic loader's lock (inside dlopen, dlclose "
                 "or dl_iterate_phdr), which it never gets back"
               : "this process was forked from one with threads, and could not start a thread to try the dynamic "
                 "loader's lock");
  }
  atomic_store(&loader_state, usable ? 0 : -1);
  return usable;
}
