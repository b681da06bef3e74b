/* The contract between the agent (libheapscope.so), which finds leaks, and
 * the report library (libheapscope_report.so), which symbolizes, applies
 * suppressions and writes the text and JSON reports. The agent loads the
 * report library with dlopen only when it has something to report, so a
 * process that exits cleanly never maps libdw. Plain data only. */
#ifndef HS_REPORT_H
#define HS_REPORT_H
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define HS_REPORT_ABI 3

/* enum hs_root_kind: 1 global, 2 stack, 3 register, 4 tls, 5 mmap, 6 ignored */
struct hs_report_retainer {
  uintptr_t where;
  int kind;
  pid_t tid;
  uint64_t bytes, blocks;
};

struct hs_report_leak {
  int kind; /* enum hs_kind */
  uint64_t bytes, blocks, indirect_bytes, indirect_blocks;
  uint64_t max_offset;
  const uintptr_t *frames; /* return addresses, leaf first */
  unsigned nframes;
  const struct hs_report_retainer *retainers;
  unsigned nretainers;
};

/* ---- threads ---------------------------------------------------------------- */
#define HS_THREAD_FRAMES 64
struct hs_report_thread {
  pid_t tid;
  char name[16];
  char state;           /* from /proc: R S D T Z ..., 'X' for exited */
  int exited_unjoined;  /* ended, joinable, never joined: its stack is pinned */
  int detached;
  uint64_t stack_bytes; /* the stack it pins */
  char wchan[48];       /* kernel wait channel (pipe_read, futex_wait_queue...) */
  long syscall;         /* blocked in this system call, -1 running, -2 unknown */
  double seconds_in_state; /* at least this long on the same stack */
  double seconds_alive;
  uintptr_t start_routine;
  const uintptr_t *created; /* pthread_create's caller stack (depot) */
  unsigned ncreated;
  uintptr_t current[HS_THREAD_FRAMES]; /* leaf first; empty if it did not answer */
  unsigned ncurrent;
};

/* ---- profiles ------------------------------------------------------------ */
/* One call stack's heap statistics, unbiased (sample mode) or exact. */
struct hs_prof_stack {
  const uintptr_t *frames;
  unsigned nframes;
  double alloc_count, alloc_bytes, inuse_count, inuse_bytes;
};
struct hs_prof_snapshot {
  struct hs_prof_stack *stacks;
  size_t n, cap;
  double period;       /* the sample rate in bytes, 1 in full mode */
  uint64_t time_ns;    /* CLOCK_REALTIME when taken */
};

/* What the report library may ask of the agent, from any thread. */
struct hs_agent_api {
  int abi;
  int (*snapshot)(struct hs_prof_snapshot *out); /* 0 or -1 */
  void (*snapshot_free)(struct hs_prof_snapshot *s);
  /* Marks the calling thread as the agent's own: its allocations are not
   * profiled and it never appears in thread reports. */
  void (*enter_agent_thread)(void);
  size_t (*thread_count)(void);
  /* live threads (and exited-but-unjoined ones) with their stacks */
  size_t (*threads)(struct hs_report_thread **out);
  void (*threads_free)(struct hs_report_thread *t, size_t n);
  const char *mode;
};

enum hs_profile_kind { HS_PROF_HEAP = 0, HS_PROF_ALLOCS = 1, HS_PROF_LEAKS = 2 };

/* Exported by the report library: writes a gzipped pprof profile of the
 * current heap (kind heap or allocs) to path. Returns 0 or an errno. */
typedef int (*hs_profile_write_fn)(const struct hs_agent_api *api, int kind, const char *path);
#define HS_PROFILE_WRITE_SYM "hs_profile_write"
/* Exported by the report library: starts the HTTP server (addr "HOST:PORT").
 * Returns 0, or -1 after printing a warning: the program runs on. */
typedef int (*hs_serve_start_fn)(const struct hs_agent_api *api, const char *addr, int allow_remote,
                                 const char *token_file);
#define HS_SERVE_START_SYM "hs_serve_start"

typedef void (*hs_threads_format_fn)(const struct hs_report_thread *t, size_t n, char *out, size_t len);
#define HS_THREADS_FORMAT_SYM "hs_threads_format"

struct hs_report_input {
  int abi;
  pid_t pid;
  int exit_status; /* 128 + the signal for a death by a signal */
  int signal;      /* the signal the process dies of, or 0 */
  const uintptr_t *signal_frames; /* where it found the program: frame 0 is the pc + 1 */
  unsigned nsignal_frames;
  int stack_overflow; /* the signal is a SIGSEGV from a stack overflow */
  int at_exit; /* 0: a check on demand (heapscope_leak_check) */
  const char *mode;
  int leak_check;           /* enum hs_leak_check */
  unsigned show_kinds;      /* HS_KIND_BIT set */
  const char *suppressions; /* ':'-separated files, or NULL */
  int default_suppressions;
  const char *report_path;  /* resolved, or NULL */
  int log_fd;
  int quiet;
  const struct hs_report_leak *leaks;
  size_t nleaks;
  uint64_t allocs, frees, allocated_bytes, peak_bytes, peak_blocks;
  uint64_t inuse_bytes, inuse_blocks;
  size_t nthreads_unstopped;
  const struct hs_agent_api *api;
  const char *output_dir; /* write profiles (heap, leaks) there, or NULL */
  const struct hs_report_thread *threads; /* alive or unjoined at exit */
  size_t nthreads;
};

struct hs_report_output {
  uint64_t shown_bytes, shown_blocks; /* leaks of the shown kinds, unsuppressed */
  int error;                          /* nonzero: a report could not be written */
};

typedef int (*hs_report_emit_fn)(const struct hs_report_input *, struct hs_report_output *);
#define HS_REPORT_EMIT_SYM "hs_report_emit"
/* The program is about to chroot: files outside the new root are reached
 * through root_fd (the old root's directory) from now on, and the process's
 * symbols are read now, while its files are still where its maps say. */
typedef void (*hs_report_chroot_fn)(int root_fd);
#define HS_REPORT_CHROOT_SYM "hs_report_chroot"
#endif
