#ifndef HS_REPORT_THREADS_H
#define HS_REPORT_THREADS_H
#include <stddef.h>

#include "../common/hs_report.h"
#include "buf.h"
#include "suppress.h"
#include "symbolize.h"

const char *hs_syscall_name(long nr);
/* "blocked", "running", "exited_unjoined", "unknown" */
const char *hs_thread_state(const struct hs_report_thread *t);
/* A one-line description: "blocked in read (pipe_read), 2.1 s". */
void hs_thread_wait(const struct hs_report_thread *t, char *out, size_t len);
int hs_thread_suppressed(struct hs_symbolizer *sym, const struct hs_supp_list *supp, const struct hs_report_thread *t);
size_t hs_thread_groups(const struct hs_report_thread *t, size_t n, const int *skip, size_t *first, size_t *of);
void hs_text_frames(struct hs_buf *b, struct hs_symbolizer *sym, const uintptr_t *f, unsigned n, const char *prefix,
                    int stop_at_main, const char *if_empty);
void hs_json_frames(struct hs_buf *b, struct hs_symbolizer *sym, const uintptr_t *f, unsigned n);
void hs_threads_text(struct hs_buf *b, struct hs_symbolizer *sym, const struct hs_report_thread *t, size_t n,
                     const int *skip, int pid);
void hs_threads_json(struct hs_buf *b, struct hs_symbolizer *sym, const struct hs_report_thread *t, size_t n,
                     const int *skip);
#endif
