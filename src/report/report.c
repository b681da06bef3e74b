/* libheapscope_report.so: turns the agent's raw leak records into the
 * valgrind-shaped text report on stderr and the JSON report of SPEC.md.
 * Loaded by the agent at exit with dlopen; it may use malloc and stdio (the
 * agent's guard keeps these allocations out of the data). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/hs_report.h"
#include "../common/hs_write.h"
#include "buf.h"
#include "pprof.h"
#include "suppress.h"
#include "symbolize.h"
#include "threads.h"

enum { DEFINITE, INDIRECT, POSSIBLE, REACHABLE, NKINDS };
static const char *const kind_json[] = {"definitely_lost", "indirectly_lost", "possibly_lost", "still_reachable"};
static const char *const kind_text[] = {"definitely lost", "indirectly lost", "possibly lost", "still reachable"};

struct rec {
  const struct hs_report_leak *l;
  int suppressed;
};

static const char *commas(uint64_t v, char *buf) {
  char tmp[32];
  int n = snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)v), o = 0;
  for (int i = 0; i < n; i++) {
    if (i && (n - i) % 3 == 0) buf[o++] = ',';
    buf[o++] = tmp[i];
  }
  buf[o] = 0;
  return buf;
}

static int matches(struct hs_symbolizer *sym, const struct hs_report_leak *l, const char *pattern) {
  for (unsigned i = 0; i < l->nframes; i++) {
    const struct hs_frame *f;
    int n = hs_sym_lookup(sym, l->frames[i] - 1, &f);
    for (int j = 0; j < n; j++)
      if (hs_supp_match(pattern, f[j].function) || hs_supp_match(pattern, f[j].file) ||
          hs_supp_match(pattern, f[j].module))
        return 1;
  }
  return 0;
}

/* The default suppressions name runtime functions that are never inlined
 * (suppress.c): the symbol table finds them, and matching them does not
 * read any module's DWARF. Matched with full frames, every leaky process
 * paid 60 ms decompressing libc's detached debug info (libc6-dbg) for the
 * frames below main, which the text report does not even show. */
static int matches_symbols(struct hs_symbolizer *sym, const struct hs_report_leak *l, const char *pattern) {
  for (unsigned i = 0; i < l->nframes; i++) {
    const char *fn, *mod;
    if (hs_sym_function(sym, l->frames[i] - 1, &fn, &mod) == 0 &&
        (hs_supp_match(pattern, fn) || hs_supp_match(pattern, mod)))
      return 1;
  }
  return 0;
}

static int cmp_size_asc(const void *a, const void *b) {
  const struct rec *x = a, *y = b;
  uint64_t sx = x->l->bytes + x->l->indirect_bytes, sy = y->l->bytes + y->l->indirect_bytes;
  if (sx != sy) return sx < sy ? -1 : 1;
  if (x->l->kind != y->l->kind) return x->l->kind < y->l->kind ? -1 : 1;
  if (x->l->blocks != y->l->blocks) return x->l->blocks < y->l->blocks ? -1 : 1;
  return 0;
}

static void text_stack(struct hs_buf *b, struct hs_symbolizer *sym, const struct hs_report_leak *l, int pid) {
  char pfx[32];
  snprintf(pfx, sizeof pfx, "==%d==    ", pid);
  hs_text_frames(b, sym, l->frames, l->nframes, pfx, 1, "(no stack)");
}

/* ---- retention: what keeps reachable and possibly lost blocks alive ---- */
static const char *const root_names[] = {"?", "global", "stack", "register", "tls", "mmap", "ignored"};

struct ret {
  const char *root, *symbol, *module;
  uintptr_t where;
  int tid;
  uint64_t bytes, blocks;
};

/* Resolves and merges a record's retainers: globals by symbol, thread
 * roots by thread. Returns the count written to out (at most max). */
static int retainers(struct hs_symbolizer *sym, const struct hs_report_leak *l, struct ret *out, int max) {
  int n = 0;
  for (unsigned i = 0; i < l->nretainers; i++) {
    const struct hs_report_retainer *r = &l->retainers[i];
    struct ret x = {.root = root_names[r->kind >= 1 && r->kind <= 6 ? r->kind : 0], .where = r->where,
                    .tid = (int)r->tid, .bytes = r->bytes, .blocks = r->blocks};
    if ((r->kind == 1 || r->kind == 5) && sym && hs_sym_data(sym, r->where, &x.symbol, &x.module) == 0)
      x.root = "global"; /* an anonymous mapping that belongs to a module: its .bss */
    if (strcmp(x.root, "global") && strcmp(x.root, "mmap")) x.where = 0;
    int j = 0;
    for (; j < n; j++) {
      struct ret *y = &out[j];
      if (strcmp(y->root, x.root) || y->tid != x.tid) continue;
      if (x.symbol ? (y->symbol && !strcmp(y->symbol, x.symbol)) : (!y->symbol && y->where == x.where)) break;
    }
    if (j < n) {
      out[j].bytes += x.bytes;
      out[j].blocks += x.blocks;
    } else if (n < max) {
      out[n++] = x;
    }
  }
  return n;
}

static void json_retainers(struct hs_buf *b, struct hs_symbolizer *sym, const struct hs_report_leak *l) {
  struct ret rs[16];
  int n = retainers(sym, l, rs, 16);
  hs_buf_printf(b, "[");
  for (int i = 0; i < n; i++) {
    hs_buf_printf(b, "%s{\"root\": \"%s\"", i ? ", " : "", rs[i].root);
    if (rs[i].symbol) {
      hs_buf_printf(b, ", \"symbol\": ");
      hs_buf_json_str(b, rs[i].symbol);
    }
    if (rs[i].module) {
      hs_buf_printf(b, ", \"module\": ");
      hs_buf_json_str(b, rs[i].module);
    }
    if (rs[i].where) hs_buf_printf(b, ", \"address\": \"0x%lx\"", (unsigned long)rs[i].where);
    if (rs[i].tid) hs_buf_printf(b, ", \"tid\": %d", rs[i].tid);
    hs_buf_printf(b, ", \"bytes\": %llu, \"blocks\": %llu}", (unsigned long long)rs[i].bytes,
                  (unsigned long long)rs[i].blocks);
  }
  hs_buf_printf(b, "]");
}

static void text_retainers(struct hs_buf *b, struct hs_symbolizer *sym, const struct hs_report_leak *l, int pid) {
  struct ret rs[16];
  int n = retainers(sym, l, rs, 16);
  for (int i = 0; i < n; i++) {
    hs_buf_printf(b, "==%d==    %s by %s", pid, i ? "  and" : "retained", rs[i].root);
    if (rs[i].symbol) hs_buf_printf(b, " '%s'", rs[i].symbol);
    if (rs[i].module) hs_buf_printf(b, " in %s", hs_basename(rs[i].module));
    if (!rs[i].symbol && rs[i].where) hs_buf_printf(b, " at 0x%lx", (unsigned long)rs[i].where);
    if (rs[i].tid) hs_buf_printf(b, " of thread %d", rs[i].tid);
    hs_buf_printf(b, " (%llu bytes in %llu blocks)\n", (unsigned long long)rs[i].bytes, (unsigned long long)rs[i].blocks);
  }
}

static char *read_file(const char *path, size_t *len) {
  int fd = hs_fs_open(path, O_RDONLY | O_CLOEXEC, 0);
  if (fd < 0) return NULL;
  size_t cap = 4096, n = 0;
  char *s = malloc(cap);
  for (;;) {
    if (!s) break;
    if (n + 1024 > cap) {
      char *ns = realloc(s, cap *= 2);
      if (!ns) break;
      s = ns;
    }
    ssize_t r = read(fd, s + n, cap - n - 1);
    if (r <= 0) break;
    n += (size_t)r;
  }
  close(fd);
  if (s) s[n] = 0;
  *len = n;
  return s;
}

static int write_json(const struct hs_report_input *in, struct rec *recs, size_t n,
                      const uint64_t sb[NKINDS], const uint64_t sn[NKINDS], uint64_t supp_bytes[NKINDS],
                      uint64_t supp_blocks[NKINDS], struct hs_symbolizer *sym, const int *tskip) {
  struct hs_buf b = {0};
  char exe[4096];
  ssize_t el = hs_fs_readlink("/proc/thread-self/exe", exe, sizeof exe - 1);
  exe[el > 0 ? el : 0] = 0;
  hs_buf_printf(&b, "{\n  \"heapscope_report\": 1,\n  \"program\": ");
  hs_buf_json_str(&b, exe);
  hs_buf_printf(&b, ",\n  \"argv\": [");
  size_t cl;
  char *cmd = read_file("/proc/thread-self/cmdline", &cl);
  for (size_t o = 0; cmd && o < cl; o += strlen(cmd + o) + 1) {
    hs_buf_printf(&b, "%s", o ? ", " : "");
    hs_buf_json_str(&b, cmd + o);
  }
  free(cmd);
  hs_buf_printf(&b, "],\n  \"pid\": %d, \"exit_status\": %d,", (int)in->pid, in->exit_status);
  if (in->signal) {
    hs_buf_printf(&b, " \"signal\": %d, \"signal_stack\": ", in->signal);
    hs_json_frames(&b, sym, in->signal_frames, in->nsignal_frames);
    hs_buf_printf(&b, ",%s", in->stack_overflow ? " \"stack_overflow\": true," : "");
  }
  hs_buf_printf(&b, "\n  \"mode\": \"%s\",\n  \"summary\": {\n", in->mode);
  uint64_t tsb = 0, tsn = 0;
  for (int k = 0; k < NKINDS; k++) {
    tsb += supp_bytes[k];
    tsn += supp_blocks[k];
    hs_buf_printf(&b, "    \"%s\": {\"bytes\": %llu, \"blocks\": %llu},\n", kind_json[k],
                  (unsigned long long)sb[k], (unsigned long long)sn[k]);
  }
  hs_buf_printf(&b, "    \"suppressed\": {\"bytes\": %llu, \"blocks\": %llu", (unsigned long long)tsb,
                (unsigned long long)tsn);
  for (int k = 0; k < NKINDS; k++)
    hs_buf_printf(&b, ", \"%s\": {\"bytes\": %llu, \"blocks\": %llu}", kind_json[k],
                  (unsigned long long)supp_bytes[k], (unsigned long long)supp_blocks[k]);
  hs_buf_printf(&b, "}\n  },\n  \"leaks\": [");
  int first = 1;
  for (size_t i = n; i-- > 0;) { /* largest first */
    const struct hs_report_leak *l = recs[i].l;
    if (recs[i].suppressed || !(in->show_kinds & (1u << l->kind)) || in->leak_check != 2) continue;
    hs_buf_printf(&b, "%s\n    {\"kind\": \"%s\", \"bytes\": %llu, \"blocks\": %llu, \"indirect_bytes\": %llu, "
                      "\"indirect_blocks\": %llu,",
                  first ? "" : ",", kind_json[l->kind], (unsigned long long)l->bytes,
                  (unsigned long long)l->blocks, (unsigned long long)l->indirect_bytes,
                  (unsigned long long)l->indirect_blocks);
    if (l->kind == POSSIBLE) hs_buf_printf(&b, " \"interior_offset\": %llu,", (unsigned long long)l->max_offset);
    hs_buf_printf(&b, "\n     \"stack\": ");
    hs_json_frames(&b, sym, l->frames, l->nframes);
    hs_buf_printf(&b, ",\n     \"retained_by\": ");
    json_retainers(&b, sym, l);
    hs_buf_printf(&b, "}");
    first = 0;
  }
  hs_buf_printf(&b, "%s],\n  \"threads\": ", first ? "" : "\n  ");
  if (sym && in->nthreads)
    hs_threads_json(&b, sym, in->threads, in->nthreads, tskip);
  else
    hs_buf_printf(&b, "[]");
  hs_buf_printf(&b, ",\n");
  hs_buf_printf(&b,
                "  \"totals\": {\"allocations\": %llu, \"frees\": %llu, \"allocated_bytes\": %llu, "
                "\"peak_bytes\": %llu, \"peak_blocks\": %llu}\n}\n",
                (unsigned long long)in->allocs, (unsigned long long)in->frees,
                (unsigned long long)in->allocated_bytes, (unsigned long long)in->peak_bytes,
                (unsigned long long)in->peak_blocks);
  /* through a temporary name and rename: a reader never sees half a report */
  int rc = 0, e = hs_write_file(in->report_path, b.s ? b.s : "", b.len);
  if (e) {
    dprintf(in->log_fd, "heapscope: error: cannot write report %s: %s — check the directory exists and is writable\n",
            in->report_path, strerror(e));
    rc = -1;
  }
  hs_buf_free(&b);
  return rc;
}

/* --output: heapscope.<prog>.<pid>.heap.pb.gz, and the leaks profile. */
static int write_profiles(const struct hs_report_input *in, const struct rec *recs, struct hs_symbolizer *sym) {
  char exe[4096], path[8192];
  ssize_t el = hs_fs_readlink("/proc/thread-self/exe", exe, sizeof exe - 1);
  exe[el > 0 ? el : 0] = 0;
  const char *prog = el > 0 ? hs_basename(exe) : "prog";
  int rc = 0;
  if (!sym) return -1;
  struct hs_prof_snapshot s;
  if (in->api && in->api->snapshot(&s) == 0) {
    unsigned char *gz = NULL;
    size_t len = 0;
    snprintf(path, sizeof path, "%s/heapscope.%s.%d.heap.pb.gz", in->output_dir, prog, (int)in->pid);
    int e = hs_pprof_heap(&s, HS_PROF_HEAP, sym, &gz, &len);
    if (!e) e = hs_write_file(path, gz, len);
    if (e) {
      dprintf(in->log_fd, "heapscope: error: cannot write %s: %s — check that --output names a writable directory\n", path,
              strerror(e));
      rc = -1;
    } else if (!in->quiet) {
      dprintf(in->log_fd, "==%d== heap profile written to %s\n", (int)in->pid, path);
    }
    free(gz);
    in->api->snapshot_free(&s);
  }
  if (in->leak_check && in->nleaks) {
    struct hs_report_leak *ls = calloc(in->nleaks, sizeof *ls);
    int *shown = calloc(in->nleaks, sizeof *shown);
    for (size_t i = 0; ls && shown && i < in->nleaks; i++) {
      ls[i] = *recs[i].l;
      shown[i] = !recs[i].suppressed && ls[i].kind != REACHABLE;
    }
    unsigned char *gz = NULL;
    size_t len = 0;
    snprintf(path, sizeof path, "%s/heapscope.%s.%d.leaks.pb.gz", in->output_dir, prog, (int)in->pid);
    int e = ls && shown ? hs_pprof_leaks(ls, shown, in->nleaks, 0, sym, &gz, &len) : ENOMEM;
    if (!e) e = hs_write_file(path, gz, len);
    if (e) {
      dprintf(in->log_fd, "heapscope: error: cannot write %s: %s\n", path, strerror(e));
      rc = -1;
    }
    free(gz);
    free(ls);
    free(shown);
  }
  return rc;
}

/* The agent's chroot hook, before the real chroot: paths go through the old
 * root from now on (buf.c). This library and its dependencies are loaded
 * already, which the new root could not provide. */
__attribute__((visibility("default"))) void hs_report_chroot(int root_fd) { hs_root_fd = root_fd; }

__attribute__((visibility("default"))) int hs_report_emit(const struct hs_report_input *in,
                                                           struct hs_report_output *out) {
  memset(out, 0, sizeof *out);
  if (in->abi != HS_REPORT_ABI) return -1;
  struct hs_symbolizer *sym = hs_sym_open_pid(in->pid);
  struct hs_supp_list supp = {0};
  char err[512];
  if (in->default_suppressions) hs_supp_add_defaults(&supp);
  if (hs_supp_load_list(&supp, in->suppressions, err, sizeof err))
    dprintf(in->log_fd, "heapscope: warning: %s; suppressions after it are not applied\n", err);

  struct rec *recs = calloc(in->nleaks + 1, sizeof *recs);
  uint64_t sb[NKINDS] = {0}, sn[NKINDS] = {0}, xb[NKINDS] = {0}, xn[NKINDS] = {0};
  for (size_t i = 0; i < in->nleaks; i++) {
    recs[i].l = &in->leaks[i];
    const struct hs_report_leak *l = &in->leaks[i];
    /* Still-reachable memory is not a leak: suppressions concern leaks. */
    if (l->kind != REACHABLE && sym)
      for (size_t s = 0; s < supp.n && !recs[i].suppressed; s++)
        if (!supp.v[s].is_thread && (strcmp(supp.v[s].source, "default")
                                         ? matches(sym, l, supp.v[s].pattern)
                                         : matches_symbols(sym, l, supp.v[s].pattern))) {
          recs[i].suppressed = 1;
          supp.v[s].hits_bytes += l->bytes;
          supp.v[s].hits_blocks += l->blocks;
        }
    if (recs[i].suppressed) {
      xb[l->kind] += l->bytes;
      xn[l->kind] += l->blocks;
    } else {
      sb[l->kind] += l->bytes;
      sn[l->kind] += l->blocks;
      /* Still-reachable blocks are shown on request but are not leaks. */
      if ((in->show_kinds & (1u << l->kind)) && l->kind != REACHABLE) {
        out->shown_bytes += l->bytes;
        out->shown_blocks += l->blocks;
      }
    }
  }
  qsort(recs, in->nleaks, sizeof *recs, cmp_size_asc);

  int pid = (int)in->pid;
  char c1[32], c2[32], c3[32], c4[32];
  struct hs_buf b = {0};
  /* Sample mode counts nothing but samples: its summary is the profile. */
  int sampled = in->mode && !strcmp(in->mode, "sample");
  if (!sampled) {
    if (in->signal && in->nsignal_frames && !in->quiet) {
      /* under the agent's "Process terminating with default action" line */
      char pfx[32];
      snprintf(pfx, sizeof pfx, "==%d==    ", pid);
      hs_text_frames(&b, sym, in->signal_frames, in->nsignal_frames, pfx, 1, "(no stack)");
    }
    hs_buf_printf(&b, "==%d== \n==%d== HEAP SUMMARY:\n", pid, pid);
    hs_buf_printf(&b, "==%d==     in use at %s: %s bytes in %s blocks\n", pid, in->at_exit ? "exit" : "this check",
                  commas(in->inuse_bytes, c1), commas(in->inuse_blocks, c2));
    hs_buf_printf(&b, "==%d==   total heap usage: %s allocs, %s frees, %s bytes allocated\n==%d== \n", pid,
                  commas(in->allocs, c1), commas(in->frees, c2), commas(in->allocated_bytes, c3), pid);
  }
  if (in->leak_check == 2) {
    size_t shown = 0, idx = 0;
    for (size_t i = 0; i < in->nleaks; i++)
      shown += !recs[i].suppressed && (in->show_kinds & (1u << recs[i].l->kind));
    for (size_t i = 0; i < in->nleaks; i++) {
      const struct hs_report_leak *l = recs[i].l;
      if (recs[i].suppressed || !(in->show_kinds & (1u << l->kind))) continue;
      idx++;
      if (l->indirect_bytes)
        hs_buf_printf(&b, "==%d== %s (%s direct, %s indirect) bytes in %s blocks are %s in loss record %zu of %zu\n",
                      pid, commas(l->bytes + l->indirect_bytes, c1), commas(l->bytes, c2),
                      commas(l->indirect_bytes, c3), commas(l->blocks, c4), kind_text[l->kind], idx, shown);
      else
        hs_buf_printf(&b, "==%d== %s bytes in %s blocks are %s in loss record %zu of %zu\n", pid,
                      commas(l->bytes, c1), commas(l->blocks, c2), kind_text[l->kind], idx, shown);
      text_stack(&b, sym, l, pid);
      if (l->kind == POSSIBLE)
        hs_buf_printf(&b, "==%d==    (held only by an interior pointer, up to %llu bytes into the block)\n", pid,
                      (unsigned long long)l->max_offset);
      if (l->kind == POSSIBLE || l->kind == REACHABLE) text_retainers(&b, sym, l, pid);
      hs_buf_printf(&b, "==%d== \n", pid);
    }
  }
  if (in->leak_check != 0) {
    uint64_t tsb = xb[0] + xb[1] + xb[2] + xb[3], tsn = xn[0] + xn[1] + xn[2] + xn[3];
    hs_buf_printf(&b, "==%d== LEAK SUMMARY:\n", pid);
    for (int k = 0; k < NKINDS; k++)
      hs_buf_printf(&b, "==%d==    %s: %s bytes in %s blocks\n", pid, kind_text[k], commas(sb[k], c1),
                    commas(sn[k], c2));
    hs_buf_printf(&b, "==%d==         suppressed: %s bytes in %s blocks\n", pid, commas(tsb, c1), commas(tsn, c2));
    if (in->leak_check == 1 && (sn[0] + sn[1] + sn[2]))
      hs_buf_printf(&b, "==%d== Rerun with --leak-check=full to see details of leaked memory\n", pid);
    else if (sn[REACHABLE] && !(in->show_kinds & (1u << REACHABLE)))
      hs_buf_printf(&b, "==%d== Reachable blocks (those to which a pointer was found) are not shown.\n"
                        "==%d== To see them, rerun with: --leak-check=full --show-leak-kinds=all\n",
                    pid, pid);
    if (in->nthreads_unstopped)
      hs_buf_printf(&b, "==%d== note: %zu thread(s) did not stop for the check; their whole stacks were scanned\n",
                    pid, in->nthreads_unstopped);
    if (!sym) hs_buf_printf(&b, "==%d== note: symbolization failed; addresses are raw\n", pid);
    hs_buf_printf(&b, "==%d== \n", pid);
  }
  int *tskip = calloc(in->nthreads + 1, sizeof *tskip);
  size_t tshown = 0;
  for (size_t i = 0; tskip && i < in->nthreads; i++) { /* without symbols, raw addresses */
    tskip[i] = hs_thread_suppressed(sym, &supp, &in->threads[i]);
    tshown += !tskip[i];
  }
  if (tskip && tshown) hs_threads_text(&b, sym, in->threads, in->nthreads, tskip, pid);
  if (!in->quiet || out->shown_blocks || tshown) {
    hs_write_quietly(in->log_fd, b.s ? b.s : "", b.len);
  }
  hs_buf_free(&b);
  if (in->report_path && write_json(in, recs, in->nleaks, sb, sn, xb, xn, sym, tskip)) out->error = 1;
  if (in->output_dir && write_profiles(in, recs, sym)) out->error = 1;
  free(recs);
  free(tskip);
  hs_supp_free(&supp);
  hs_sym_close(sym);
  return 0;
}
