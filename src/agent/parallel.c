/* A second core for the exit check's pure computation (counting and listing
 * the table's blocks, table.c), while the program's threads are stopped.
 *
 * The helper is a bare clone(): pthread_create could block on a lock that a
 * stopped thread holds (glibc's stack cache lock), and must not run the
 * program's pthread hooks. The helper therefore has no TLS of its own (it
 * shares the caller's thread pointer, which the work functions never use),
 * calls nothing in libc but memcpy, and leaves by the raw exit system call
 * in glibc's clone(). Every signal is blocked in it (the mask is inherited
 * at clone), so no handler of the program ever runs on it. The kernel
 * clears and wakes `tid` when it is gone (CLONE_CHILD_CLEARTID): only then
 * is its stack unmapped. If anything fails, the caller does all the work. */
#define _GNU_SOURCE
#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "hs.h"

struct job {
  void (*fn)(size_t i, void *arg);
  void *arg;
  size_t n;
  _Atomic size_t next;
  volatile pid_t tid; /* the helper's, cleared by the kernel at its exit */
};

static void work(struct job *j) {
  for (;;) {
    size_t i = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
    if (i >= j->n) return;
    j->fn(i, j->arg);
  }
}

static int helper(void *arg) {
  work(arg);
  return 0;
}

static int cpus(void) {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set)) return 1;
  return CPU_COUNT(&set);
}

pid_t hs_clone_blocked(int (*fn)(void *), void *stack_top, int flags, void *arg, pid_t *ptid, pid_t *ctid) {
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pid_t p = clone(fn, stack_top, flags, arg, ptid, NULL, ctid);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  return p;
}

/* A bare helper thread (see the top of this file) running fn(arg) on
 * [stack, stack + size): 0 if it started. The kernel clears *tid and wakes
 * it when the helper is gone; hs_helper_join waits for that. */
int hs_helper_start(int (*fn)(void *), char *stack, size_t size, void *arg, volatile pid_t *tid) {
  int flags = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM |
              CLONE_PARENT_SETTID | CLONE_CHILD_CLEARTID;
  return hs_clone_blocked(fn, stack + size, flags, arg, (pid_t *)tid, (pid_t *)tid) > 0 ? 0 : -1;
}
void hs_helper_join(volatile pid_t *tid) {
  for (pid_t t; (t = *tid) != 0;) hs_futex((void *)tid, FUTEX_WAIT, t, NULL);
}

/* Starting the helper (a stack mapped, a clone, a wait, the stack unmapped)
 * costs a few hundred microseconds: more than it saves on a small heap, and
 * every short process pays it at exit (a shell script's subshells, each
 * with a few thousand blocks). */
#define PARALLEL_MIN_ITEMS 32768

void hs_parallel_for(size_t n, size_t items, void (*fn)(size_t i, void *arg), void *arg) {
  struct job j = {.fn = fn, .arg = arg, .n = n};
  const size_t stack_size = 256 << 10;
  char *stack = n > 1 && items >= PARALLEL_MIN_ITEMS && cpus() > 1 ? hs_mmap(stack_size) : NULL;
  int started = stack && !hs_helper_start(helper, stack, stack_size, &j, &j.tid);
  work(&j);
  if (started) hs_helper_join(&j.tid);
  if (stack) hs_munmap(stack, stack_size);
}
