/* Internal declarations of the heapscope agent, grouped by the file that
 * defines them. Nothing here is exported: the agent is built with
 * -fvisibility=hidden and only the interposed symbols and the public API in
 * include/heapscope.h are visible. */
#ifndef HS_H
#define HS_H

#include <stdatomic.h>
#include <stddef.h>
#include <limits.h>
#include <stdint.h>
#include <sys/types.h>

#define HS_LIKELY(x) __builtin_expect(!!(x), 1)
#define HS_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define HS_TLS __attribute__((tls_model("initial-exec"))) __thread
#define HS_COLD __attribute__((noinline, cold))
#define HS_EXPORT __attribute__((visibility("default")))

/* An exported entry point NAME that pushes the callee-saved registers, then
 * calls IMPL(sp, arg0) with sp pointing at them (so a scan of the stack from
 * sp sees the caller's register values), passing the first argument on. */
#define HS_SAVE_REGS_ENTRY(NAME, IMPL)                                                   \
  __asm__(".text\n.globl " #NAME "\n.type " #NAME ",@function\n" #NAME ":\n"            \
          "\tpush %rbx\n\tpush %rbp\n\tpush %r12\n\tpush %r13\n\tpush %r14\n\tpush %r15\n" \
          "\tmov %rdi, %rsi\n\tmov %rsp, %rdi\n\tsub $8, %rsp\n\tcall " #IMPL "\n"         \
          "\tadd $8, %rsp\n\tpop %r15\n\tpop %r14\n\tpop %r13\n\tpop %r12\n\tpop %rbp\n\tpop %rbx\n" \
          "\tret\n.size " #NAME ", .-" #NAME "\n");

/* ---- options.c --------------------------------------------------------- */
/* One table generates the struct, the defaults, the parser and the dump.
 * X(name, type, default, help). Types: BOOL, INT, SIZE, STR, KINDS, ENUM. */
#define HS_OPTIONS(X)                                                          \
  X(mode, MODE, 0, "full|sample: record every allocation, or sample by bytes") \
  X(sample_rate, SIZE, 524288, "mean bytes between samples in sample mode")    \
  X(leak_check, LEAKCHECK, 2, "full|summary|no")                               \
  X(show_leak_kinds, KINDS, 7, "definite,indirect,possible,reachable|all")     \
  X(suppressions, STR, NULL, "suppression files, ':'-separated")               \
  X(error_exitcode, INT, 0, "exit status when shown leaks exist (0: off)")     \
  X(report, STR, NULL, "JSON report path; %p expands to the pid")              \
  X(follow_children, BOOL, 1, "profile forked and exec'd children")            \
  X(max_frames, INT, 64, "stack depth recorded")                               \
  X(root_pid, INT, 0, "pid of the process `heapscope run` started")            \
  X(log_fd, INT, 2, "file descriptor for the text report")                     \
  X(run_stderr, STR, NULL, "dev:ino of heapscope run's stderr; a child with another stderr prints nothing") \
  X(default_suppressions, BOOL, 1, "suppress runtime-internal blocks")         \
  X(quiet, BOOL, 0, "print nothing unless leaks are found")                    \
  X(fast_unwind, BOOL, 1, "cached .eh_frame unwinder (else libunwind only)")  \
  X(verify_unwind, INT, 0, "check every capture: 1 against a walk without reuse, 2 against one with no cached rule (tests)") \
  X(stop_ptrace, BOOL, 1, "stop threads for the leak check with ptrace (else signals, which interrupt blocking calls)") \
  X(check_timing, BOOL, 0, "print how long the leak check took, by phase (benchmarks)") \
  X(output, STR, NULL, "directory for profiles written at exit")              \
  X(http, STR, NULL, "serve /debug/pprof/ on ADDR:PORT")                      \
  X(http_allow_remote, BOOL, 0, "allow a non-loopback --http address")       \
  X(http_token_file, STR, NULL, "file holding the bearer token for --http")  \
  X(snapshot_interval, INT, 0, "seconds between numbered heap dumps (0: off)") \
  X(snapshot_keep, INT, 10, "numbered heap dumps kept")                       \
  X(dump_signal, INT, 0, "signal that writes a numbered heap dump (0: none)")

enum hs_mode { HS_MODE_FULL = 0, HS_MODE_SAMPLE = 1 };
enum hs_leak_check { HS_LC_NO = 0, HS_LC_SUMMARY = 1, HS_LC_FULL = 2 };
/* Leak kinds, in valgrind's order of severity. */
enum hs_kind {
  HS_DEFINITE = 0,
  HS_INDIRECT = 1,
  HS_POSSIBLE = 2,
  HS_REACHABLE = 3,
  HS_NKINDS = 4
};
#define HS_KIND_BIT(k) (1u << (k))

struct hs_options {
#define HS_OPT_FIELD(name, type, def, help) HS_OPT_T_##type name;
#define HS_OPT_T_BOOL int
#define HS_OPT_T_INT long
#define HS_OPT_T_SIZE unsigned long
#define HS_OPT_T_STR const char *
#define HS_OPT_T_KINDS unsigned
#define HS_OPT_T_MODE int
#define HS_OPT_T_LEAKCHECK int
  HS_OPTIONS(HS_OPT_FIELD)
#undef HS_OPT_FIELD
};

extern struct hs_options hs_opt;
/* Parses "k=v,k=v" into hs_opt. Returns 0, or -1 after printing a one-line
 * error (unknown key or bad value). Strings point into a copy held by the
 * agent's arena. */
int hs_options_parse(const char *s, struct hs_options *o, char *err, size_t errlen);
void hs_options_defaults(struct hs_options *o);
unsigned hs_parse_kinds(const char *s, int *ok);
int hs_parse_size(const char *s, unsigned long *out);

/* ---- log.c: formatted output straight to a file descriptor ------------ */
/* Supports %s %d %u %ld %lu %zu %x %lx %p %c %%; never allocates. */
int hs_snprintf(char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void hs_dprintf(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void hs_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void hs_write_all(int fd, const char *buf, size_t len);
void hs_log_keep(void); /* at start-up: keeps a copy of the stderr the program started with */
int hs_log_fd(void);    /* the text report's descriptor: that stderr while it is still open */

/* ---- arena.c: the agent's own memory, never from malloc --------------- */
void *hs_mmap(size_t size);             /* zeroed, page-granular, registered */
void hs_munmap(void *p, size_t size);
void *hs_alloc(size_t size);            /* bump allocation, never freed; 16-aligned */
char *hs_strdup(const char *s);
/* Is [p, p+len) inside memory the agent mapped for itself? */
/* Calls fn on each part of [s, e) that is not the agent's own memory. */
void hs_each_not_own(uintptr_t s, uintptr_t e, void (*fn)(uintptr_t, uintptr_t));
void hs_register_own_range(uintptr_t start, uintptr_t end);
void hs_arena_atfork_prepare(void);
void hs_unwind_atfork_prepare(void);
void hs_unwind_atfork_parent(void);
void hs_unwind_atfork_child(void);
void hs_arena_atfork_release(void);

/* ---- spin locks (hs.h inline) ----------------------------------------- */
/* A held lock holds its owner: the address of the owning thread's
 * hs_exit_thread, unique among live threads and the same in a forked child.
 * The owner matters once: exit() called by a signal handler that
 * interrupted its thread inside the agent, with a lock held (programs call
 * exit in SIGTERM and SIGINT handlers). The exit report needs the lock; the
 * interrupted code will never go on, so the exiting thread takes the lock
 * over (hs_lock_slow) instead of waiting for itself forever. */
typedef struct { _Atomic uintptr_t v; } hs_lock_t;
extern HS_TLS int hs_exit_thread; /* this thread runs the exit report (arena.c) */
extern atomic_int hs_lock_taken_over; /* it has taken a lock over from itself */
/* At exit, before anything else: finishes a free the exiting thread was
 * interrupted in (glibc had the block back, the table did not yet); if it
 * was interrupted inside glibc's allocator itself, whose state may be half
 * changed, allocations come from the agent's own pages from then on. */
void hs_hooks_at_exit(void);
/* From now on the process allocates from the agent's own pages and gives
 * nothing back to glibc (hooks.c). */
void hs_hooks_exit_heap(void);
/* The thread ends: its deferred frees are finished (hooks.c). */
void hs_hooks_thread_exit(void);
/* This thread runs a signal handler (threads.c); may say yes wrongly. */
int hs_in_signal_handler(void);
static inline uintptr_t hs_lock_self(void) { return (uintptr_t)&hs_exit_thread; }
void hs_lock_slow(hs_lock_t *l);
/* Takes the lock if it is free; never waits (code a signal handler or a
 * forked child may reach while the lock's holder cannot go on). */
static inline int hs_trylock(hs_lock_t *l) {
  uintptr_t z = 0;
  return atomic_compare_exchange_strong_explicit(&l->v, &z, hs_lock_self(), memory_order_acquire,
                                                 memory_order_relaxed);
}
/* Tries for a while, then gives up (0): for cold paths that can do
 * without the lock, where it may belong to a thread that does not exist
 * (after a fork) or to this very thread below a signal handler. */
static inline int hs_trylock_a_little(hs_lock_t *l) {
  for (int tries = 0; !hs_trylock(l); tries++) {
    if (tries == 10000) return 0;
    __builtin_ia32_pause();
  }
  return 1;
}
static inline void hs_lock(hs_lock_t *l) {
  if (HS_LIKELY(hs_trylock(l))) return;
  hs_lock_slow(l);
}
static inline void hs_unlock(hs_lock_t *l) { atomic_store_explicit(&l->v, 0, memory_order_release); }
/* hs_lock, unless this very thread holds l: then 0 at once. A signal
 * handler that calls malloc or free (common, if not async-signal-safe) may
 * interrupt its thread inside the agent with a lock held; waiting for the
 * frame below it would never end (tests/progs/sigmalloc.c hung on every
 * run). The callers do without: a block left untracked, a free deferred,
 * no stack. (The exit report's takeover stays hs_lock's.) */
static inline int hs_lock_unless_mine(hs_lock_t *l) {
  if (HS_LIKELY(hs_trylock(l))) return 1;
  if (atomic_load_explicit(&l->v, memory_order_relaxed) == hs_lock_self() && !hs_exit_thread) return 0;
  hs_lock_slow(l);
  return 1;
}
/* fork() called by a signal handler that interrupted its thread inside the
 * agent with a lock held: the atfork handlers must not wait for that lock
 * (the holder is a frame below them: every run of tests/progs/forksig.c
 * hung), and must not release it either (the holder goes on with it when
 * the handler returns, in the parent and in the child). Between
 * hs_fork_prepare_begin and _end, hs_lock skips a lock this thread holds
 * and remembers it; hs_fork_release leaves such a lock held (else it
 * unlocks), and hs_fork_done forgets them. */
void hs_fork_prepare_begin(void);
void hs_fork_prepare_end(void);
void hs_fork_release(hs_lock_t *l);
int hs_fork_held_before(const hs_lock_t *l);
void hs_fork_done(void);
/* Inside the agent's own calls into the dynamic loader (dl_iterate_phdr,
 * dlopen, libunwind's walks), which hold its locks: a signal handler that
 * interrupted them and ends the process (exit, or _exit in a child it
 * forked) cannot load the report library, read the module list or unwind
 * a frame without a rule: it would wait for a lock its own thread holds.
 * The exit report is skipped then, with a warning (unwind.c). */
extern HS_TLS int hs_loader_depth;

/* Agent work that reaches a cancellation point (open, read, close: /proc,
 * libdw reading a module's CFI, the reports) runs with cancellation off: a
 * thread the program cancelled would otherwise end there holding the
 * agent's lock, and every thread after it would wait forever (a pool whose
 * workers are cancelled while they allocate through a library just loaded:
 * every run hung on the unwinder's rule-miss lock). */
#include <pthread.h>
#include <signal.h>
static inline int hs_cancel_off(void) {
  int old = PTHREAD_CANCEL_ENABLE;
  pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old);
  return old;
}
static inline void hs_cancel_restore(int old) { pthread_setcancelstate(old, NULL); }

/* ---- depot.c: deduplicated call stacks, 32-bit ids --------------------- */
#define HS_MAX_FRAMES 256
#define HS_STACK_NONE 0u
/* Returns the id of the stack (frames[0] = leaf return address); 0 when
 * n == 0 or the depot is full. */
uint32_t hs_depot_put(const uintptr_t *frames, unsigned n);
/* The same, frame i at frames[i * st]. A stack's hash comes from its sum,
 * the frames weighted by powers of hs_depot_pw by their distance from the
 * outermost frame: sum = Σ frames[i] * hs_depot_pw[n - 1 - i] (mod 2^64).
 * With known, *sum is the caller's; else it is computed and stored there. */
uint32_t hs_depot_put_sum(const uintptr_t *frames, unsigned n, unsigned st, int known, uint64_t *sum);
extern uint64_t hs_depot_pw[]; /* valid once a stack is in the depot */
void hs_depot_prefetch(uint64_t sum, unsigned n);
/* Frames of a stack; *n receives the count. NULL for an unknown id. */
const uintptr_t *hs_depot_get(uint32_t id, unsigned *n);
uint32_t hs_depot_count(void);
/* Cumulative allocations per stack (the allocs profile): count in 1/65536. */
void hs_depot_count_alloc(uint32_t id, uint64_t count_fp, uint64_t bytes);
void hs_depot_alloc_stats(uint32_t id, uint64_t *count_fp, uint64_t *bytes);
void hs_depot_thread_exit(void);
void hs_depot_after_fork_child(void);
void hs_depot_lock(void);
int hs_fork_held_before_depot(void); /* the depot's lock was this thread's before fork's prepare */
void hs_depot_unlock(void);

/* ---- unwind.c: capture the current call stack ------------------------- */
/* Fills frames (leaf first), without the agent's own frames. */
unsigned hs_unwind(uintptr_t *frames, unsigned max);
/* Captures the caller's stack into the depot; returns its id. Reuses the
 * previous capture of the thread where the stack is the same (unwind.c). */
uint32_t hs_stack_capture(unsigned max);
void hs_unwind_verify_summary(void);
void hs_unwind_thread_exit(void); /* the thread's unwinder state goes to the next thread */
void hs_unwind_init(void);
/* Module address ranges, taken before a dlclose and given to hs_unwind_flush
 * after it: what was unloaded. */
#define HS_SNAP_MODULES 256
struct hs_modsnap {
  int n, full;
  uintptr_t lo[HS_SNAP_MODULES], hi[HS_SNAP_MODULES];
};
void hs_unwind_snapshot(struct hs_modsnap *s);
void hs_unwind_flush(const struct hs_modsnap *before);
unsigned hs_unwind_remote_in(uintptr_t pc, uintptr_t sp, uintptr_t lo, uintptr_t hi, uintptr_t bp, uintptr_t *frames,
                             unsigned max);
unsigned hs_unwind_remote(uintptr_t pc, uintptr_t sp, uintptr_t hi, int bp_known, uintptr_t bp, const void *copy,
                          size_t len, uintptr_t *frames, unsigned max);
extern int hs_fast_unwind; /* option fast_unwind: the cached CFI walk */
extern uintptr_t hs_self_text_start, hs_self_text_end;
extern uintptr_t hs_libc_data_lo, hs_libc_data_hi;

/* ---- table.c: live blocks --------------------------------------------- */
/* meta: bits 0..23 stack id, bit 24 ignored, bits 25..63 size. */
#define HS_META_STACK_BITS 24
#define HS_META_IGNORED (1ull << 24)
#define HS_META_SIZE_SHIFT 25
#define HS_META_MAX_SIZE ((1ull << (64 - HS_META_SIZE_SHIFT)) - 1)
#define HS_MAX_STACK_ID ((1u << HS_META_STACK_BITS) - 1)
static inline uint64_t hs_meta(size_t size, uint32_t stack) {
  uint64_t s = size > HS_META_MAX_SIZE ? HS_META_MAX_SIZE : size;
  return (s << HS_META_SIZE_SHIFT) | (stack & HS_MAX_STACK_ID);
}
static inline size_t hs_meta_size(uint64_t m) { return (size_t)(m >> HS_META_SIZE_SHIFT); }
static inline uint32_t hs_meta_stack(uint64_t m) { return (uint32_t)(m & HS_MAX_STACK_ID); }

/* Not inserted (the block stays untracked) when it must go to the overflow
 * (table.c) and this thread holds that shard's lock below a signal handler. */
void hs_table_insert(uintptr_t addr, uint64_t meta);
/* Removes addr: 1 removed (*meta set), 0 not there, -1 not now: it is in the
 * overflow and this thread holds that shard's lock below a signal handler
 * (hs_lock_unless_mine). */
int hs_table_remove(uintptr_t addr, uint64_t *meta);
void hs_table_prefetch(uintptr_t addr);
int hs_table_lookup(uintptr_t addr, uint64_t *meta);
/* Every live block as (addr, meta), 16 bytes each, in one fresh mapping of
 * *bytes bytes; *sorted when they are in address order (the overflow held
 * nothing). release (the last check): the table is empty after. NULL when
 * there is no memory for it. Caller holds all locks (hs_table_lock_all). */
void *hs_table_take(int release, size_t *n, size_t *bytes, int *sorted);
/* Set while the real allocator is glibc's (hooks.c): see table.c. */
extern int hs_table_units_exclusive;
int hs_table_set_flag(uintptr_t addr, uint64_t flag);
void hs_table_lock_all(void);
void hs_table_unlock_all(void);
/* How many blocks the table holds (the unit tests: nothing else runs). */
size_t hs_table_count(void);
/* Calls fn for every live block while the world keeps running (table.c). */
void hs_table_foreach_locked(void (*fn)(uintptr_t addr, uint64_t meta, void *arg), void *arg);

/* ---- parallel.c: fn(0..n-1) on this thread and, where there is a second
 * CPU and enough work (items, in all), a helper that may run no libc code
 * but memcpy (see parallel.c). */
void hs_parallel_for(size_t n, size_t items, void (*fn)(size_t i, void *arg), void *arg);

/* ---- hooks.c ----------------------------------------------------------- */
struct hs_real {
  void *(*malloc)(size_t);
  void (*free)(void *);
  void *(*calloc)(size_t, size_t);
  void *(*realloc)(void *, size_t);
  void *(*reallocarray)(void *, size_t, size_t);
  int (*posix_memalign)(void **, size_t, size_t);
  void *(*aligned_alloc)(size_t, size_t);
  void *(*memalign)(size_t, size_t);
  void *(*valloc)(size_t);
  void *(*pvalloc)(size_t);
  size_t (*malloc_usable_size)(void *);
  void (*_exit)(int) __attribute__((noreturn));
  void (*_Exit)(int) __attribute__((noreturn));
  int (*pthread_create)(void *, const void *, void *(*)(void *), void *);
  int (*sigaction)(int, const struct sigaction *, struct sigaction *);
};
extern struct hs_real hs_real;
/* Per-thread recursion guard: set while the agent itself runs, so that
 * allocations made by the agent's libraries are passed through untracked. */
extern HS_TLS int hs_in_agent;
/* 0 before init and after the exit report; 1 while tracking. */
extern atomic_int hs_active;
/* Set while the leak check holds every table lock: the agent's own
 * allocations then go unrecorded (the table is locked). */
extern int hs_checking;
/* Flushed parts of the per-thread counters (hooks.c). */
struct hs_totals {
  atomic_long cur_bytes, cur_blocks, peak_bytes, peak_blocks;
};
extern struct hs_totals hs_totals;
struct hs_totals_snapshot {
  unsigned long allocs, frees, bytes;
  long cur_bytes, cur_blocks, peak_bytes, peak_blocks, pending_bytes, pending_blocks;
};
void hs_totals_read(struct hs_totals_snapshot *t);
void hs_hooks_resolve(void);
/* glibc non-main arena heaps seen, for excluding allocator memory from roots. */
#define HS_MAX_ARENA_HEAPS 1024
extern atomic_uintptr_t hs_arena_heaps[HS_MAX_ARENA_HEAPS];
#define HS_ARENA_HEAP_SIZE (64ul << 20)

/* ---- sampler.c: sample mode and profile snapshots ---------------------- */
#define HS_FP 65536.0
extern int hs_sampling;             /* mode=sample */
extern double hs_sample_rate;
extern HS_TLS long hs_until_sample; /* bytes left before this thread's next sample */
#define HS_COUNTDOWN_UNSET (LONG_MIN / 2)
#define HS_COUNTDOWN_OFF (LONG_MAX / 2) /* hs_hooks_off: no sample ever */
#define HS_FILTER_BITS 16
/* The counting filter free() looks at: a slot is HS_FILTER_CLEAN only when
 * no block that free() must see hashes to it; anything else sends free() to
 * its slow path. A slot holds HS_FILTER_CLEAN minus the number of such
 * blocks (sampled blocks, the bootstrap pool's). The filter starts all zero
 * (.bss), "every block", which is what full mode and the time before the
 * agent is set up need, so that free() has no other test; sample mode opens
 * it (hs_filter_open). Slots are found by address bits: 16-byte granules,
 * 1 MiB apart for the same slot. */
#define HS_FILTER_CLEAN 255
extern uint8_t hs_sampled_filter[1u << HS_FILTER_BITS];
static inline size_t hs_filter_slot(uintptr_t p) { return (size_t)((p >> 4) & ((1u << HS_FILTER_BITS) - 1)); }
static inline int hs_filter_clean(uintptr_t p) { return hs_sampled_filter[hs_filter_slot(p)] == HS_FILTER_CLEAN; }
/* Saturating counters: a slot that reached 0 stays there (always "maybe"),
 * so it can never wrap to clean while blocks hash to it. */
static inline void hs_filter_add(uintptr_t p) {
  _Atomic uint8_t *c = (_Atomic uint8_t *)&hs_sampled_filter[hs_filter_slot(p)];
  uint8_t v = atomic_load_explicit(c, memory_order_relaxed);
  while (v > 0 && !atomic_compare_exchange_weak_explicit(c, &v, (uint8_t)(v - 1), memory_order_relaxed,
                                                          memory_order_relaxed))
    ;
}
static inline void hs_filter_del(uintptr_t p) {
  _Atomic uint8_t *c = (_Atomic uint8_t *)&hs_sampled_filter[hs_filter_slot(p)];
  uint8_t v = atomic_load_explicit(c, memory_order_relaxed);
  while (v > 0 && v < HS_FILTER_CLEAN &&
         !atomic_compare_exchange_weak_explicit(c, &v, (uint8_t)(v + 1), memory_order_relaxed, memory_order_relaxed))
    ;
}
/* Sample mode, at start-up: every slot clean but the bootstrap pool's. */
void hs_filter_open(void);
/* The agent is off for good in this process (bad HEAPSCOPE_OPTIONS, or a
 * child that --follow-children=no leaves alone): every hook forwards. */
void hs_hooks_off(void);
int hs_init_early(void); /* agent.c: tracking starts at the first allocation */
const char *hs_hooks_foreign_malloc(void); /* hooks.c: the real malloc's file when it is not glibc's */
void hs_sampler_init(void);
/* Weight of a sampled block of this size: 1/(1-exp(-size/rate)), as Go. */
double hs_sample_weight(size_t size);
/* Next countdown, exponential with mean sample_rate. */
long hs_next_sample_interval(void);

/* ---- threads.c: registry and stop-the-world --------------------------- */
struct hs_thread {
  struct hs_thread *next;
  pid_t tid;
  int alive;
  uintptr_t stack_lo, stack_hi; /* from pthread_getattr_np */
  uintptr_t final_sp;           /* where a dead thread's live frames ended */
  pthread_t handle;
  uint64_t seq;                 /* creation order, for heapscope_threads_mark */
  uint32_t create_stack;        /* depot id of the pthread_create call */
  uintptr_t start_routine;
  int detached, joined;
  uint64_t start_ns, end_ns;
  char name[16];                /* at exit, for ended threads */
  int starting;                 /* created, not yet running: not reclaimable */
  uint64_t last_switches, same_since_ns; /* to tell how long it has not run */
  uintptr_t alt_slot;           /* its alternate signal stack (fatal.c), kept with the record */
};
void hs_threads_init(void);
uint64_t hs_now_ns(void); /* CLOCK_MONOTONIC */
/* Live stacks of the program's threads, each unwound by the thread itself in
 * a signal handler. Fills out (hs_mmap'd, count returned): see hs_report.h. */
struct hs_report_thread;
size_t hs_threads_snapshot(struct hs_report_thread **out, int include_main, uint64_t since_seq);
void hs_threads_snapshot_free(struct hs_report_thread *t, size_t n);
uint64_t hs_threads_seq(void);
void hs_threads_after_fork_child(void);
void hs_threads_lock(void);
int hs_threads_lock_held_before_fork(void); /* the same for the thread list's lock */
void hs_threads_unlock(void);
struct hs_thread *hs_threads_list(void);

/* unwind.c's cached unwind rule, packed in 64 bits (0 = not computable):
 *   bits 0..31  CFA offset (signed)
 *   bit  32     CFA base is rbp (else rsp)
 *   bit  33     rbp unchanged by this frame
 *   bit  34     end of stack (return address undefined)
 *   bit  35     valid
 *   bit  36     cached, no rule (the frame goes to libunwind)
 *   bits 40..55 offset of the saved rbp from the CFA (signed 16) */
#define HS_RULE_BASE_RBP (1ull << 32)
#define HS_RULE_RBP_SAME (1ull << 33)
#define HS_RULE_END (1ull << 34)
#define HS_RULE_VALID (1ull << 35)
#define HS_RULE_NONE (1ull << 36)
/* ehframe.c: the rule at pc from the module's .eh_frame_hdr at hdr, which
 * lies in the loaded segment [lo, hi). HS_EH_NONE: no plain rule there (0); HS_EH_UNKNOWN:
 * something only libdw reads. */
enum { HS_EH_RULE, HS_EH_NONE, HS_EH_UNKNOWN };
int hs_eh_rule(uintptr_t pc, uintptr_t hdr, uintptr_t lo, uintptr_t hi, uint64_t *rule);

#define HS_NGREGS 18
/* threads.c: the signal frames on this thread's stack from sp up,
 * innermost first. The leak check scans the context each interrupted
 * instead of the frame itself. */
#define HS_MAX_SIGFRAMES 4
#define HS_SIGFRAME_REGS 16 /* ucontext's gregs r8..r15, rdi, rsi, rbp, rbx, rdx, rax, rcx, rsp */
struct hs_sigframe {
  uintptr_t lo;         /* the frame's first word: the handler's return address */
  uintptr_t resume_sp;  /* the stack pointer it interrupted */
  uintptr_t regs[HS_SIGFRAME_REGS];
};
size_t hs_signal_frames(uintptr_t sp, struct hs_sigframe *out, size_t max);
/* the same on a stack whose mapping ends at end, with glibc's signal
 * trampoline known (hs_signal_restorer: 0 when no signal has a handler) */
size_t hs_signal_frames_in(uintptr_t sp, uintptr_t end, uintptr_t restorer, struct hs_sigframe *out, size_t max);
uintptr_t hs_signal_restorer(void);
struct hs_stopped {
  pid_t tid;
  int stopped;              /* handler ran and saved registers */
  int signalled;            /* sent the stop signal (a thread that blocks it is not) */
  int seized;               /* traced by the ptrace helper (ptrace_stop.c) */
  int sig;                  /* a signal that stopped it there, handed back at detach */
  uintptr_t sp;
  uintptr_t regs[HS_NGREGS];
};
/* Stops every other thread of the process; fills *out (from hs_mmap).
 * Returns the count. Threads that do not answer within the deadline are
 * returned with stopped == 0. */
size_t hs_stop_world(struct hs_stopped **out);
/* threads.c: runs the program's handler (o: its disposition) for a signal
 * that reached one of the agent's handlers; 0 when it has none */
int hs_forward_signal(const struct sigaction *o, int sig, siginfo_t *si, void *uc); /* 1 if a handler ran */
void hs_resume_world(void);
/* threads.c: the futex system call on the 32-bit word at w */
struct timespec;
long hs_futex(void *w, int op, int val, const struct timespec *ts);
/* parallel.c: clone() with every signal blocked in the child (the caller's
 * mask is put back), for the agent's bare helpers: no program handler may
 * run on their stacks, which share the caller's TLS. */
/* threads.c: whether this process may take the dynamic loader's list lock
 * (dl_iterate_phdr, dlopen): not in a child forked while another thread
 * held it (tried once, from a helper thread) */
void hs_loader_after_fork(int parent_threaded);
int hs_loader_usable(void);
int hs_loader_may_open(void); /* and dlopen: not in a child of a process with threads */
/* unwind.c: the CFA of the innermost frame of the function [lo, hi) on this
 * thread's stack (its caller's stack pointer), with libgcc's unwinder; 0 if
 * not found */
uintptr_t hs_unwind_cfa_of(uintptr_t lo, uintptr_t hi);
pid_t hs_clone_blocked(int (*fn)(void *), void *stack_top, int flags, void *arg, pid_t *ptid, pid_t *ctid);
/* parallel.c: a bare helper thread (no TLS of its own, every signal
 * blocked) on the caller's stack area; join waits until it is gone */
int hs_helper_start(int (*fn)(void *), char *stack, size_t size, void *arg, volatile pid_t *tid);
void hs_helper_join(volatile pid_t *tid);
/* ptrace_stop.c: the same stop by a ptrace helper, which leaves blocking
 * calls uninterrupted. begin starts the helper; stop seizes st[from..to)
 * and fills their registers (-1: refused, use signals); end detaches all. */
int hs_ptrace_begin(void);
int hs_ptrace_stop(struct hs_stopped *st, size_t from, size_t to);
void hs_ptrace_end(void);
/* threads.c: how the last stop stopped the threads: "ptrace", "signals", or
 * "none" (no other thread) */
const char *hs_last_stop_method(void);

/* ---- leakcheck.c ------------------------------------------------------- */
enum hs_root_kind { HS_ROOT_GLOBAL = 1, HS_ROOT_STACK, HS_ROOT_REGISTER, HS_ROOT_TLS, HS_ROOT_MMAP, HS_ROOT_IGNORED };
#define HS_MAX_RETAINERS 8
/* What keeps reachable (or possibly lost) blocks alive: a root word. */
struct hs_retainer {
  uintptr_t where; /* address of the root word (register number for registers) */
  uint8_t kind;
  pid_t tid;
  uint64_t bytes, blocks;
};
struct hs_leak_record {
  uint32_t stack;
  uint8_t kind;
  uint64_t bytes, blocks;
  uint64_t indirect_bytes, indirect_blocks;
  uintptr_t first_addr; /* lowest block address, for stable ordering */
  uint64_t max_offset;  /* possibly lost: largest interior offset seen */
  unsigned nret;
  struct hs_retainer ret[HS_MAX_RETAINERS];
};
struct hs_leak_result {
  struct hs_leak_record *records; /* hs_mmap'd */
  size_t nrecords, records_cap;
  uint64_t bytes[HS_NKINDS], blocks[HS_NKINDS];
  uint64_t scanned_bytes;
  size_t nthreads, nthreads_unstopped;
};
/* Runs the whole check: stop the world, scan, classify, resume. sp is the
 * calling thread's stack pointer at the public entry point (frames below it
 * belong to the agent and are not roots). */
/* take_table: the last check of the process may use up the block table
 * (hs_table_take), which is empty afterwards. */
int hs_leak_check(struct hs_leak_result *res, uintptr_t sp, int take_table);
void hs_leak_result_free(struct hs_leak_result *res);

/* ---- profile.c: the agent's side of profiles and the HTTP server ------- */
struct hs_agent_api;
extern struct hs_agent_api hs_api;
/* Loads libheapscope_report.so once; NULL (after a warning) if it cannot. */
void *hs_report_lib(void);
/* A symbol of the report library, or NULL. */
void *hs_report_sym(const char *name);
void hs_profile_start(void); /* starts what the options ask for (HTTP) */

/* ---- chroot.c: after the program chroots (daemons do), the files the
 * check and the report need (/proc, the report library, the ELF and debug
 * files, the report's path) are outside its root: they are reached from
 * the old root's directory, opened by the chroot hook. */
/* The old root's directory, or -1 (no chroot, or the program closed it). */
int hs_root_dir(void);
/* open(2) and readlink(2) of an absolute path, through hs_root_dir. */
int hs_open_path(const char *path, int flags);
ssize_t hs_readlink_path(const char *path, char *buf, size_t len);
int hs_unlink_path(const char *path);
void hs_unwind_before_chroot(void); /* unwind.c */
/* bypass.c: a warning for each module that calls glibc's allocator past the
 * agent (RTLD_DEEPBIND). */
void hs_bypass_warn(void);
/* threads.c: the mapping that holds addr, from /proc/thread-self/maps: its
 * end and whether it is writable (either may be NULL). 0, or -1 when not
 * found or the map cannot be read. */
int hs_mapping_at(uintptr_t addr, uintptr_t *end, int *writable);
/* The first mapping that ends above addr (it may start above it): 0, or -1. */
int hs_mapping_from(uintptr_t addr, uintptr_t *start, uintptr_t *end, int *writable);
/* free() met a block the table does not know: rewrites the GOT entries of
 * modules that call glibc's allocator past the agent (once for each set of
 * loaded modules). */
void hs_bypass_unknown_free(void);
void hs_bypass_poll(void); /* every 8192 allocations a thread records, every 16 samples (hooks.c) */

/* ---- agent.c ----------------------------------------------------------- */
void hs_report_at_exit(int status, uintptr_t sp);
/* This process is the one the agent started in (or a forked child that
 * took over): not a vfork child, which shares the parent's memory. */
int hs_own_process(void);

/* ---- fatal.c: a report when the program dies of a signal ---------------- */
/* glibc's sigaction. The agent exports its own for the program (fatal.c),
 * which answers the program's view: the agent's calls must not go there. */
int hs_sigaction(int sig, const struct sigaction *act, struct sigaction *oact);
int hs_sigaltstack(const stack_t *ss, stack_t *old); /* the kernel's, past the program's view (fatal.c) */
/* A thread's alternate signal stack for the fatal handlers: a slot for a
 * new thread record (0 when none can be had), set by the thread at start,
 * dropped at its exit. */
uintptr_t hs_fatal_alt_slot(void);
void hs_fatal_thread_start(uintptr_t slot);
void hs_fatal_thread_exit(void);
/* Installs the handler for the fatal signals the program leaves at SIG_DFL. */
void hs_fatal_init(void);
/* The signal the process is dying of, while its report is written (else 0). */
extern int hs_fatal_signal;
extern int hs_fatal_overflow; /* it is a SIGSEGV from a stack overflow */
/* Where it found the program (frame 0: the interrupted pc + 1). */
extern uintptr_t hs_fatal_frames[];
extern unsigned hs_fatal_nframes;
/* Blocks the fatal signals in this thread (for the agent's own threads,
 * which inherit the mask: a signal meant for the program must reach one of
 * the program's threads), and restores the mask. */
void hs_fatal_block(sigset_t *old);
void hs_fatal_unblock(const sigset_t *old);
int hs_is_root_process(void);

#endif
