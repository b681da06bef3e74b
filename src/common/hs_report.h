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

#define HS_REPORT_ABI 1

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

struct hs_report_input {
  int abi;
  pid_t pid;
  int exit_status;
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
};

struct hs_report_output {
  uint64_t shown_bytes, shown_blocks; /* leaks of the shown kinds, unsuppressed */
  int error;                          /* nonzero: a report could not be written */
};

typedef int (*hs_report_emit_fn)(const struct hs_report_input *, struct hs_report_output *);
#define HS_REPORT_EMIT_SYM "hs_report_emit"
#endif
