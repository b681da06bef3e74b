#ifndef HS_PPROF_H
#define HS_PPROF_H
#include <stddef.h>
#include <stdint.h>

#include "../common/hs_report.h"
#include "symbolize.h"

/* Gzipped pprof profiles; *out is malloc'd. Return 0 or an errno. */
int hs_pprof_heap(const struct hs_prof_snapshot *s, int kind, struct hs_symbolizer *sym, unsigned char **out,
                  size_t *len);
int hs_pprof_leaks(const struct hs_report_leak *leaks, const int *shown, size_t n, uint64_t time_ns,
                   struct hs_symbolizer *sym, unsigned char **out, size_t *len);
/* goroutine/threadcreate: one sample per stack, value alloc_count, string
 * labels thread_name and state (when non-empty). */
int hs_pprof_threads(const char *kind, const struct hs_prof_stack *st, const char *const *names,
                     const char *const *states, size_t n, struct hs_symbolizer *sym, unsigned char **out,
                     size_t *len);
/* Writes through a temporary file and rename. Returns 0 or an errno. */
int hs_write_file(const char *path, const void *data, size_t len);
#endif
