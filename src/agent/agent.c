/* The agent's life cycle: start-up (options, hooks, fork handlers), and the
 * report at exit. The exit check is registered with on_exit() from the
 * constructor, before __libc_start_main registers the dynamic linker's
 * finalizer, so it runs after the program's atexit handlers, its C++ static
 * destructors and every library destructor: what is still allocated then is
 * what the program leaves behind. _exit/_Exit reach it through hooks.c. */
#define _GNU_SOURCE
#define UNW_LOCAL_ONLY
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <libunwind.h>
#include <limits.h>
#include <link.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/single_threaded.h>
#include <ucontext.h>
#include <unistd.h>

#include "../common/hs_report.h"
#include "hs.h"

static pid_t my_pid;
/* The exit report: 0 not yet, 1 a thread is writing it, 2 written. */
static atomic_int reported;
static atomic_int reporter_tid;
/* The report's exit handler: 0 not started, 1 running (in handler_tid), 2 done. */
static atomic_int handler_state, handler_tid;
#define HS_EXIT_BARRIERS 15

static int fork_parent_threaded;
/* A lock this thread held already (fork in a signal handler that
 * interrupted it inside the agent) is neither waited for nor released: see
 * hs_fork_prepare_begin in hs.h. */
static void atfork_prepare(void) {
  /* A child of a process with threads may not load libraries (threads.c,
   * hs_loader_may_open): the report library is loaded now, as the exit
   * report of this process would anyway. Not from inside the agent (a fork
   * in a signal handler that interrupted it, maybe in the loader). */
  fork_parent_threaded = !__libc_single_threaded;
  if (fork_parent_threaded && hs_opt.follow_children && atomic_load(&hs_active) && !hs_in_agent && !hs_loader_depth)
    hs_report_lib();
  hs_fork_prepare_begin();
  hs_threads_lock();
  hs_depot_lock();
  hs_unwind_atfork_prepare();
  hs_table_lock_all();
  hs_arena_atfork_prepare();
  hs_fork_prepare_end();
}
static void atfork_parent(void) {
  hs_arena_atfork_release();
  hs_table_unlock_all();
  hs_unwind_atfork_parent();
  hs_depot_unlock();
  hs_threads_unlock();
  hs_fork_done();
}
static void atfork_child(void) {
  hs_arena_atfork_release();
  hs_table_unlock_all();
  hs_unwind_atfork_child();
  /* The depot's and the thread list's tidying for the child assume their
   * lists whole: not when the interrupted frame below was changing them
   * (then the child keeps the parent's other threads' entries). */
  hs_loader_after_fork(fork_parent_threaded);
  if (!hs_fork_held_before_depot()) hs_depot_after_fork_child();
  hs_depot_unlock();
  if (!hs_threads_lock_held_before_fork()) hs_threads_after_fork_child();
  hs_threads_unlock();
  hs_fork_done();
  my_pid = getpid();
  atomic_store(&reported, 0);
  atomic_store(&handler_state, 0);
  if (!hs_opt.follow_children) {
    atomic_store(&hs_active, 0);
    hs_hooks_off();
  }
}

/* The exiting thread's stack is a root from the stack pointer of exit()'s
 * caller up: the frames of exit() and __run_exit_handlers below it hold no
 * program data, only stale slots (copies of pointers the program dropped
 * long ago), which would make lost blocks look reachable. */
static uintptr_t exit_caller_sp(void) {
  /* exit()'s frame is found by address, not by name: unw_get_proc_name
   * read /proc/PID/maps and mapped and searched each module's ELF file
   * (looking for its debug file too), about 1 ms of every process's exit
   * (a shell script's subshells each paid it). */
  if (!hs_loader_usable()) return 0; /* libunwind's walk takes the loader's lock */
  Dl_info di;
  const ElfW(Sym) *sym = NULL;
  if (!dladdr1((void *)exit, &di, (void **)&sym, RTLD_DL_SYMENT) || !sym || !sym->st_size) return 0;
  const uintptr_t lo = (uintptr_t)di.dli_saddr, hi = lo + sym->st_size;
  /* libgcc's walk: libunwind's first one of a process cost 0.2 ms (a
   * process whose captures all hit the cache used it only here) */
  uintptr_t cfa = hs_unwind_cfa_of(lo, hi);
  if (cfa) return cfa;
  unw_context_t ctx;
  unw_cursor_t cur;
  if (unw_getcontext(&ctx) || unw_init_local(&cur, &ctx)) return 0;
  for (int depth = 0; depth < 16 && unw_step(&cur) > 0; depth++) {
    unw_word_t ip;
    if (unw_get_reg(&cur, UNW_REG_IP, &ip)) return 0;
    /* a return address: exit() never returns, so its call may be its last
     * instruction, and the address one past its end */
    if (ip - 1 >= lo && ip - 1 < hi) {
      unw_word_t sp;
      if (unw_step(&cur) <= 0 || unw_get_reg(&cur, UNW_REG_SP, &sp)) return 0;
      return (uintptr_t)sp;
    }
  }
  return 0;
}

/* The exit report may run in a signal handler (exit or _exit called
 * there, as programs do on SIGTERM) that interrupted this thread inside the
 * agent or inside glibc's allocator: locks this thread holds are taken over
 * (hs.h), a half-done free is finished, and the report allocates from the
 * agent's own pages (hooks.c, the exit heap) rather than wait forever for
 * glibc's arena lock or abort the program with "corrupted double-linked
 * list" instead of its exit status. */
static void exit_begin(void) {
  static HS_TLS int done;
  if (done) return;
  done = 1;
  hs_exit_thread = 1;
  /* In a handler, glibc's heap may be half changed by the interrupted
   * code, and its arena lock held by it: full mode knows when its own call
   * into glibc was interrupted (hs_hooks_at_exit), sample mode's fast paths
   * are tail calls and cannot say, so any exit from a handler allocates
   * from the agent's own pages. */
  if (hs_in_signal_handler()) hs_hooks_exit_heap();
  hs_hooks_at_exit();
}

/* Not a vfork child running on this process's memory. */
int hs_own_process(void) { return getpid() == my_pid; }

static void on_exit_handler(int status, void *arg) {
  (void)arg;
  /* A vfork child that calls exit runs on its parent's thread-local
   * state: it must leave it as it found it. */
  if (!hs_own_process()) return;
  atomic_store(&handler_tid, (int)gettid());
  atomic_store(&handler_state, 1);
  if (atomic_load(&hs_active)) {
    exit_begin();
    hs_in_agent = 1;
    /* only the leak check needs it (sample mode has none) */
    uintptr_t sp = hs_sampling ? 0 : exit_caller_sp();
    hs_in_agent = 0;
    if (hs_opt.check_timing && !hs_sampling && !sp)
      hs_warn("check_timing: exit's caller not found: this thread's stack is scanned from the exit handler");
    hs_report_at_exit(status, sp ? sp : (uintptr_t)__builtin_frame_address(0));
  }
  atomic_store(&handler_state, 2);
}

/* Waits, two minutes at most, while *state is 1 (running) in another
 * thread than this one: not when this thread is the owner (exit in a
 * signal handler that interrupted it). */
static void wait_while_running(atomic_int *state, atomic_int *owner) {
  int me = (int)gettid();
  for (int i = 0; i < 120000 && atomic_load(state) == 1 && atomic_load(owner) != me; i++) {
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
}

/* Registered before the report's handler, so it runs right after it: when
 * two threads call exit at once, glibc hands each handler to one of them,
 * and the one that did not get the report's would find the list empty and
 * end the process (glibc's own _exit, which no hook sees) while the other
 * was still writing: every such run lost its report. That thread gets this
 * handler and waits here. There are HS_EXIT_BARRIERS of them, one for
 * each further thread exiting at the same moment (with one, every run
 * of four or eight threads calling exit together lost the report); one
 * more than that can still cut it short. */
static void exit_barrier(int status, void *arg) {
  (void)status;
  (void)arg;
  if (atomic_load(&handler_state) == 2) return; /* the report is written (the usual case: no system call) */
  if (!hs_own_process()) return;
  /* glibc hands out the report's handler before this one: if it has not
   * started, another thread took it an instant ago */
  for (int i = 0; i < 100000 && atomic_load(&handler_state) == 0; i++) sched_yield();
  wait_while_running(&handler_state, &handler_tid);
}

/* Start-up in two parts. Tracking starts at the process's first allocation
 * (hs_init_early, from the hooks) or at the constructor, whichever comes
 * first: the dynamic linker runs the constructors of the program's
 * libraries before a preloaded library's, and their blocks (libstdc++'s
 * emergency pool, a C++ library's static objects, apt's configuration tree)
 * must be in the table, or the program blocks they point to look lost.
 * The rest (fork handlers, the exit check's registration, the thread-exit
 * key, the dumper and the endpoint) waits for the constructor: it calls
 * into glibc code that may hold a lock while it allocates, and the exit
 * check must be registered where doc/design.md says. */
static atomic_int init_state; /* 0 not started, 1 running, 2 done (tracking or off) */

static void init_tracking(void) {
  hs_hooks_resolve();
  hs_options_defaults(&hs_opt);
  char err[512];
  if (hs_options_parse(getenv("HEAPSCOPE_OPTIONS"), &hs_opt, err, sizeof err)) {
    hs_dprintf(2, "heapscope: error: %s — the program runs without heapscope\n", err);
    hs_hooks_off();
    return;
  }
  my_pid = getpid();
  if (!hs_opt.follow_children && !hs_is_root_process()) {
    hs_hooks_off();
    return;
  }
  hs_log_keep();
  hs_sampler_init();
  hs_api.mode = hs_sampling ? "sample" : "full";
  if (hs_opt.max_frames < 1) hs_opt.max_frames = 1;
  if (hs_opt.max_frames > HS_MAX_FRAMES) hs_opt.max_frames = HS_MAX_FRAMES;
  hs_fast_unwind = hs_opt.fast_unwind;
  hs_unwind_init();
  atomic_store(&hs_active, 1);
  if (hs_sampling) hs_filter_open();
}

/* 1 when this call started tracking. Never waits: the thread that runs
 * init_tracking may be the caller's own, deeper in the stack. */
HS_COLD int hs_init_early(void) {
  if (atomic_load_explicit(&init_state, memory_order_relaxed)) return 0;
  /* Before libc's own initialisation (the dynamic linker allocates then)
   * the environment is not readable yet: those calls stay untracked. */
  if (!environ) return 0;
  int z = 0;
  if (!atomic_compare_exchange_strong(&init_state, &z, 1)) return 0;
  int saved = hs_in_agent, saved_errno = errno;
  hs_in_agent = 1;
  init_tracking();
  hs_in_agent = saved;
  errno = saved_errno;
  atomic_store(&init_state, 2);
  return atomic_load(&hs_active);
}

__attribute__((constructor)) static void hs_init(void) {
  int saved = hs_in_agent;
  hs_in_agent = 1;
  int z = 0;
  if (atomic_compare_exchange_strong(&init_state, &z, 1)) {
    init_tracking();
    atomic_store(&init_state, 2);
  }
  /* Another thread, started by an earlier constructor, may be in it. */
  while (atomic_load(&init_state) != 2) __builtin_ia32_pause();
  if (atomic_load(&hs_active)) {
    const char *other = hs_hooks_foreign_malloc();
    if (other && !hs_sampling && hs_opt.leak_check != HS_LC_NO && hs_is_root_process())
      hs_warn("malloc is %s's, not glibc's: the leak check cannot tell that allocator's free memory from the "
              "program's data, so lost blocks may be reported as still reachable",
              strrchr(other, '/') ? strrchr(other, '/') + 1 : other);
    hs_threads_init();
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
    for (int i = 0; i < HS_EXIT_BARRIERS; i++) on_exit(exit_barrier, NULL); /* run after the next one */
    on_exit(on_exit_handler, NULL);
    hs_fatal_init();
    hs_profile_start();
  }
  hs_in_agent = saved;
}

/* Expands %p and, in a process other than the one `heapscope run` started,
 * makes the name unique with a .<pid> suffix. */
static void report_path(char *out, size_t len) {
  const char *p = hs_opt.report;
  size_t o = 0;
  int had_pid = 0;
  char pid[24];
  hs_snprintf(pid, sizeof pid, "%d", (int)getpid());
  for (; *p && o + 24 < len; p++) {
    if (p[0] == '%' && p[1] == 'p') {
      for (const char *q = pid; *q; q++) out[o++] = *q;
      p++;
      had_pid = 1;
    } else {
      out[o++] = *p;
    }
  }
  out[o] = 0;
  if (!had_pid && !hs_is_root_process()) hs_snprintf(out + o, len - o, ".%s", pid);
}

/* Without the report library: unsymbolized, but nothing is lost. */
static void emit_raw(const struct hs_report_input *in, struct hs_report_output *out) {
  for (size_t i = 0; i < in->nleaks; i++) {
    const struct hs_report_leak *l = &in->leaks[i];
    if (!(in->show_kinds & HS_KIND_BIT(l->kind))) continue;
    out->shown_bytes += l->bytes;
    out->shown_blocks += l->blocks;
    hs_dprintf(in->log_fd, "==%d== %lu bytes in %lu blocks (kind %d)\n", (int)in->pid,
               (unsigned long)l->bytes, (unsigned long)l->blocks, l->kind);
    for (unsigned f = 0; f < l->nframes; f++)
      hs_dprintf(in->log_fd, "==%d==    %s %p\n", (int)in->pid, f ? "by" : "at", (void *)l->frames[f]);
  }
}

/* Checks and reports. At exit (final) tracking stops for good and the JSON
 * report is written; a check on demand only prints. Returns the unsuppressed
 * bytes of the shown leak kinds. */
static uint64_t check_and_report(int status, uintptr_t sp, int final) {
  struct hs_leak_result res;
  memset(&res, 0, sizeof res);
  /* Threads first: their stacks as they are when the program exits. */
  struct hs_report_thread *thr = NULL;
  if (final) hs_bypass_warn();
  size_t nthr = final ? hs_threads_snapshot(&thr, 0, 0) : 0;
  /* Sample mode knows only sampled blocks: pointers held in the others
   * would be missed, so there is no leak check, only profiles. */
  int failed = 0;
  if (!hs_sampling && (hs_opt.leak_check != HS_LC_NO || !final) && hs_leak_check(&res, sp, final && !hs_opt.output)) {
    hs_warn("leak check failed; reporting totals only");
    failed = 1; /* no LEAK SUMMARY of zeros, as if nothing leaked */
  }
  if (final) atomic_store(&hs_active, 0);

  struct hs_report_leak *leaks = res.nrecords ? hs_mmap(res.nrecords * sizeof *leaks) : NULL;
  struct hs_report_retainer *rets = res.nrecords ? hs_mmap(res.nrecords * HS_MAX_RETAINERS * sizeof *rets) : NULL;
  if (!rets && leaks) {
    hs_munmap(leaks, res.nrecords * sizeof *leaks);
    leaks = NULL;
  }
  size_t nl = 0;
  for (size_t i = 0; leaks && i < res.nrecords; i++) {
    const struct hs_leak_record *r = &res.records[i];
    struct hs_report_leak *l = &leaks[nl++];
    l->kind = r->kind;
    l->bytes = r->bytes;
    l->blocks = r->blocks;
    l->indirect_bytes = r->indirect_bytes;
    l->indirect_blocks = r->indirect_blocks;
    l->max_offset = r->max_offset;
    l->frames = hs_depot_get(r->stack, &l->nframes);
    if (!l->frames) l->nframes = 0;
    for (unsigned k = 0; k < r->nret; k++)
      rets[i * HS_MAX_RETAINERS + k] = (struct hs_report_retainer){r->ret[k].where, r->ret[k].kind, r->ret[k].tid,
                                                                  r->ret[k].bytes, r->ret[k].blocks};
    l->retainers = &rets[i * HS_MAX_RETAINERS];
    l->nretainers = r->nret;
  }
  char path[PATH_MAX];
  if (hs_opt.report && final) report_path(path, sizeof path);
  struct hs_totals_snapshot tot;
  hs_totals_read(&tot);
  struct hs_report_input in = {
      .abi = HS_REPORT_ABI,
      .pid = getpid(),
      .exit_status = status,
      .signal = final ? hs_fatal_signal : 0,
      .signal_frames = final && hs_fatal_signal ? hs_fatal_frames : NULL,
      .nsignal_frames = final && hs_fatal_signal ? hs_fatal_nframes : 0,
      .stack_overflow = final && hs_fatal_signal && hs_fatal_overflow,
      .at_exit = final,
      .mode = hs_opt.mode == HS_MODE_SAMPLE ? "sample" : "full",
      .leak_check = hs_sampling || failed ? HS_LC_NO : final ? (int)hs_opt.leak_check : HS_LC_FULL,
      .show_kinds = hs_opt.show_leak_kinds,
      .suppressions = hs_opt.suppressions,
      .default_suppressions = hs_opt.default_suppressions,
      .report_path = hs_opt.report && final ? path : NULL,
      .log_fd = hs_log_fd(),
      .quiet = hs_opt.quiet,
      .leaks = leaks,
      .nleaks = nl,
      .allocs = tot.allocs,
      .frees = tot.frees,
      .allocated_bytes = tot.bytes,
      .peak_bytes = (uint64_t)tot.peak_bytes,
      .peak_blocks = (uint64_t)tot.peak_blocks,
      .inuse_bytes = (uint64_t)tot.cur_bytes,
      .inuse_blocks = (uint64_t)tot.cur_blocks,
      .nthreads_unstopped = res.nthreads_unstopped,
      .api = &hs_api,
      .output_dir = final ? hs_opt.output : NULL,
      .threads = thr,
      .nthreads = nthr,
  };
  struct hs_report_output out = {0};
  if (hs_sampling && !in.output_dir && !nthr) {
    /* sample mode with nothing to write: no report library to load */
    hs_threads_snapshot_free(thr, nthr);
    if (leaks) hs_munmap(leaks, res.nrecords * sizeof *leaks);
    if (rets) hs_munmap(rets, res.nrecords * HS_MAX_RETAINERS * sizeof *rets);
    hs_leak_result_free(&res);
    return 0;
  }
  hs_report_emit_fn emit = (hs_report_emit_fn)hs_report_sym(HS_REPORT_EMIT_SYM);
  if (emit)
    emit(&in, &out);
  else
    emit_raw(&in, &out);
  if (leaks) hs_munmap(leaks, res.nrecords * sizeof *leaks);
  if (rets) hs_munmap(rets, res.nrecords * HS_MAX_RETAINERS * sizeof *rets);
  hs_leak_result_free(&res);
  hs_threads_snapshot_free(thr, nthr);
  return out.shown_blocks ? out.shown_bytes : 0;
}

/* A process that ran out of descriptors (a server leaking them) reaches its
 * exit with none left for the check (/proc) and the report (its library,
 * the ELF files, --report's file): it had no report at all. The process is
 * ending, so the soft limit is raised by a few toward the hard one, and
 * only when not one descriptor is free. */
static void descriptors_for_report(void) {
  int fd = fcntl(2, F_DUPFD_CLOEXEC, 0);
  if (fd >= 0 || errno != EMFILE) {
    if (fd >= 0) close(fd);
    return;
  }
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl)) return;
  rlim_t want = rl.rlim_cur + 64;
  if (rl.rlim_max != RLIM_INFINITY && want > rl.rlim_max) want = rl.rlim_max;
  if (want > rl.rlim_cur) {
    rl.rlim_cur = want;
    if (!setrlimit(RLIMIT_NOFILE, &rl)) return;
  }
  hs_warn("no file descriptor is left (limit %lu): the check and the report need a few",
          (unsigned long)rl.rlim_cur);
}

/* The exit report runs on a stack of its own. The thread that exits may
 * be on a small one: a signal handler's alternate stack (a crash handler
 * that calls _exit), a thread created with a 64 KiB stack. Symbolizing
 * alone takes more than 100 KiB of stack (libdw's line tables), and the
 * report overflowed such a stack into whatever lay below it: the program
 * died of SIGSEGV instead of exiting with its status. The agent's own
 * pages are never a root of the check. */
#define REPORT_STACK (8u << 20)
static struct {
  int status;
  uintptr_t sp;
  uint64_t shown;
} on_stack;
static void report_on_stack(void) { on_stack.shown = check_and_report(on_stack.status, on_stack.sp, 1); }
static uint64_t report_final(int status, uintptr_t sp) {
  char *stk = hs_mmap(REPORT_STACK);
  ucontext_t back, run;
  if (!stk || getcontext(&run)) return check_and_report(status, sp, 1);
  mprotect(stk, 4096, PROT_NONE); /* a guard page */
  on_stack.status = status;
  on_stack.sp = sp;
  run.uc_stack.ss_sp = stk;
  run.uc_stack.ss_size = REPORT_STACK;
  run.uc_link = &back;
  makecontext(&run, report_on_stack, 0);
  if (swapcontext(&back, &run)) return check_and_report(status, sp, 1);
  return on_stack.shown;
}

static void hs_report_at_exit_cancel_off(int status, uintptr_t sp) {
  if (!atomic_load(&hs_active) || !hs_own_process()) return; /* vfork child: not ours */
  exit_begin();
  if (hs_loader_depth) {
    hs_warn("the process ends in a signal handler that interrupted the agent inside the dynamic loader "
            "(pid %d): no report, which would wait for the loader's lock this thread holds",
            (int)getpid());
    return;
  }
  int z = 0;
  if (!atomic_compare_exchange_strong(&reported, &z, 1)) {
    /* Another thread is writing the report and this one is in _exit:
     * ending the process now would cut the report short. */
    wait_while_running(&reported, &reporter_tid);
    return;
  }
  atomic_store(&reporter_tid, (int)gettid());
  hs_in_agent = 1;
  descriptors_for_report();
  hs_unwind_verify_summary();
  uint64_t shown = report_final(status, sp);
  atomic_store(&reported, 2);
  if (hs_opt.error_exitcode && shown && !hs_fatal_signal) { /* a death by a signal stays one */
    /* Like valgrind: the process ends with the chosen status. Flush what
     * exit() would have flushed after us. */
    fflush(NULL);
    hs_real._exit((int)hs_opt.error_exitcode);
  }
  hs_in_agent = 0;
}

void hs_report_at_exit(int status, uintptr_t sp) {
  int cs = hs_cancel_off();
  hs_report_at_exit_cancel_off(status, sp);
  hs_cancel_restore(cs);
}

/* ---- the public API (include/heapscope.h) ------------------------------- */

HS_EXPORT int __heapscope_active(void) { return atomic_load(&hs_active); }

/* __heapscope_leak_check is the trampoline HS_SAVE_REGS_ENTRY makes: the
 * caller's callee-saved registers may hold its pointers, so they are pushed
 * on the stack and the scan starts below them. */
HS_SAVE_REGS_ENTRY(__heapscope_leak_check, hs_api_leak_check)
__attribute__((used)) int hs_api_leak_check(uintptr_t sp) {
  if (!atomic_load(&hs_active) || hs_in_agent) return -1;
  int cs = hs_cancel_off();
  hs_in_agent = 1;
  uint64_t shown = check_and_report(0, sp, 0);
  hs_in_agent = 0;
  hs_cancel_restore(cs);
  return shown > (uint64_t)INT_MAX ? INT_MAX : (int)shown;
}

HS_EXPORT int __heapscope_ignore(const void *block) {
  if (!atomic_load(&hs_active) || !block) return -1;
  return hs_table_set_flag((uintptr_t)block, HS_META_IGNORED) ? 0 : -1;
}
