/* Threads: a registry of the program's threads (their stacks, alive or
 * ended), kept through an interposed pthread_create, and stop-the-world for
 * the leak check: each other thread is sent a signal whose handler saves its
 * registers and waits on a futex until released. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include "hs.h"

static struct hs_thread *threads;
static hs_lock_t threads_lock;
static pthread_key_t exit_key;
static int key_ok;

void hs_threads_lock(void) { hs_lock(&threads_lock); }
void hs_threads_unlock(void) { hs_unlock(&threads_lock); }
struct hs_thread *hs_threads_list(void) { return threads; }

static pid_t gettid_raw(void) { return (pid_t)syscall(SYS_gettid); }

/* Runs at thread exit, however the thread ends (return, pthread_exit,
 * cancellation). Frames below this point are dead. */
static void on_thread_exit(void *arg) {
  struct hs_thread *t = arg;
  t->final_sp = (uintptr_t)__builtin_frame_address(0);
  __atomic_store_n(&t->alive, 0, __ATOMIC_RELEASE);
}

struct start_arg {
  void *(*fn)(void *);
  void *arg;
  int agent; /* created by the agent (its server's threads) */
};

static void register_self(void) {
  pthread_attr_t a;
  void *lo = NULL;
  size_t sz = 0;
  hs_in_agent = 1;
  if (pthread_getattr_np(pthread_self(), &a) == 0) {
    pthread_attr_getstack(&a, &lo, &sz);
    pthread_attr_destroy(&a);
  }
  hs_in_agent = 0;
  uintptr_t l = (uintptr_t)lo, h = l + sz;
  hs_lock(&threads_lock);
  /* A stack glibc reused from an ended thread makes that record obsolete;
   * reuse the record itself. */
  struct hs_thread *t = NULL;
  for (struct hs_thread *i = threads; i; i = i->next)
    if (!i->alive && i->stack_lo < h && i->stack_hi > l) {
      t = i;
      break;
    }
  if (!t) {
    t = hs_alloc(sizeof *t);
    if (!t) {
      hs_unlock(&threads_lock);
      return;
    }
    t->next = threads;
    threads = t;
  }
  t->tid = gettid_raw();
  t->stack_lo = l;
  t->stack_hi = h;
  t->final_sp = 0;
  t->alive = 1;
  hs_unlock(&threads_lock);
  if (key_ok) pthread_setspecific(exit_key, t);
}

static void *thread_start(void *p) {
  struct start_arg sa = *(struct start_arg *)p;
  hs_in_agent = 1;
  free(p);
  if (sa.agent) return sa.fn(sa.arg); /* the agent's own thread: never tracked nor listed */
  hs_in_agent = 0;
  register_self();
  return sa.fn(sa.arg);
}

HS_EXPORT int pthread_create(pthread_t *th, const pthread_attr_t *attr, void *(*fn)(void *), void *arg) {
  if (!hs_real.pthread_create) hs_hooks_resolve();
  if (!atomic_load(&hs_active))
    return hs_real.pthread_create(th, attr, fn, arg);
  int agent = hs_in_agent;
  hs_in_agent = 1;
  struct start_arg *sa = malloc(sizeof *sa);
  hs_in_agent = agent;
  if (!sa) return EAGAIN;
  sa->fn = fn;
  sa->arg = arg;
  sa->agent = agent;
  int r = hs_real.pthread_create(th, attr, thread_start, sa);
  if (r) {
    hs_in_agent = 1;
    free(sa);
    hs_in_agent = agent;
  }
  return r;
}

void hs_threads_init(void) {
  key_ok = pthread_key_create(&exit_key, on_thread_exit) == 0;
}

void hs_threads_after_fork_child(void) {
  /* Only the forking thread exists in the child; the other stacks are
   * still mapped but hold no live frames. */
  pid_t me = gettid_raw();
  for (struct hs_thread *t = threads; t; t = t->next)
    if (t->alive && t->tid != me) {
      t->alive = 0;
      t->final_sp = t->stack_hi;
    }
}

/* ---- stop the world ---------------------------------------------------- */

#define STOP_SIGNAL (SIGRTMAX - 2)
static struct hs_stopped *stopped;
static size_t nstopped, capstopped;
static atomic_int resume_word;
static atomic_int in_handler;

static long futex(atomic_int *w, int op, int val, const struct timespec *ts) {
  return syscall(SYS_futex, w, op, val, ts, NULL, 0);
}

static void stop_handler(int sig, siginfo_t *si, void *uc_) {
  (void)sig;
  (void)si;
  int saved = errno;
  atomic_fetch_add(&in_handler, 1);
  pid_t me = gettid_raw();
  ucontext_t *uc = uc_;
  for (size_t i = 0; i < nstopped; i++)
    if (stopped[i].tid == me) {
      for (int r = 0; r < HS_NGREGS && r < NGREG; r++) stopped[i].regs[r] = (uintptr_t)uc->uc_mcontext.gregs[r];
      stopped[i].sp = (uintptr_t)uc->uc_mcontext.gregs[REG_RSP];
      atomic_thread_fence(memory_order_release);
      __atomic_store_n(&stopped[i].stopped, 1, __ATOMIC_RELEASE);
      futex((atomic_int *)&stopped[i].stopped, FUTEX_WAKE, 1, NULL);
      break;
    }
  while (!atomic_load(&resume_word)) futex(&resume_word, FUTEX_WAIT, 0, NULL);
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

/* Lists the process's threads without opendir (which mallocs). */
static size_t list_tids(pid_t *out, size_t cap) {
  int fd = open("/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
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
      if (n < cap) out[n++] = (pid_t)atoi(d->d_name);
    }
  }
  close(fd);
  return n;
}

static struct sigaction old_action;

size_t hs_stop_world(struct hs_stopped **out) {
  pid_t me = gettid_raw(), pid = getpid();
  size_t cap = 1024;
  pid_t *tids = hs_mmap(cap * sizeof *tids);
  capstopped = cap;
  stopped = hs_mmap(cap * sizeof *stopped);
  nstopped = 0;
  atomic_store(&resume_word, 0);
  if (!tids || !stopped) return 0;

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = stop_handler;
  sa.sa_flags = SA_SIGINFO | SA_RESTART;
  sigfillset(&sa.sa_mask);
  sigaction(STOP_SIGNAL, &sa, &old_action);

  /* Threads may be created while we work: list again until nothing new. */
  for (int round = 0; round < 4; round++) {
    size_t n = list_tids(tids, cap), added = 0;
    for (size_t i = 0; i < n; i++) {
      if (tids[i] == me) continue;
      int known = 0;
      for (size_t j = 0; j < nstopped; j++)
        if (stopped[j].tid == tids[i]) known = 1;
      if (known || nstopped >= capstopped) continue;
      stopped[nstopped].tid = tids[i];
      stopped[nstopped].stopped = 0;
      atomic_thread_fence(memory_order_seq_cst);
      nstopped++;
      added++;
      syscall(SYS_tgkill, pid, tids[i], STOP_SIGNAL);
    }
    /* Wait for each thread to park, 200 ms at most in all per round. */
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (size_t j = 0; j < nstopped; j++) {
      while (!__atomic_load_n(&stopped[j].stopped, __ATOMIC_ACQUIRE)) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long ms = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
        if (ms > 200) break;
        struct timespec ts = {0, 2000000};
        futex((atomic_int *)&stopped[j].stopped, FUTEX_WAIT, 0, &ts);
      }
    }
    if (!added) break;
  }
  hs_munmap(tids, cap * sizeof *tids);
  *out = stopped;
  return nstopped;
}

void hs_resume_world(void) {
  atomic_store(&resume_word, 1);
  futex(&resume_word, FUTEX_WAKE, 0x7fffffff, NULL);
  /* Let handlers leave before the old disposition comes back, so that a
   * late signal never reaches a program handler that does not expect it. */
  for (int i = 0; i < 1000 && atomic_load(&in_handler); i++) {
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
  sigaction(STOP_SIGNAL, &old_action, NULL);
}
