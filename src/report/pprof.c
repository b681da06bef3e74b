/* pprof encoding: heap, allocs and leaks profiles as gzipped profile.proto
 * (protobuf-c, zlib), symbolized in place: every location carries its
 * address (return address - 1), its inlined Line records and a Function, and
 * every mapping its build ID, so go tool pprof, Pyroscope and Parca need no
 * access to the binaries. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/auxv.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "../common/hs_report.h"
#include "buf.h"
#include "pprof.h"
#include "profile.pb-c.h"
#include "symbolize.h"

typedef Perftools__Profiles__Profile Profile;
typedef Perftools__Profiles__Sample Sample;
typedef Perftools__Profiles__Location Location;
typedef Perftools__Profiles__Function Function;
typedef Perftools__Profiles__Mapping Mapping;
typedef Perftools__Profiles__Line Line;
typedef Perftools__Profiles__Label Label;
typedef Perftools__Profiles__ValueType ValueType;

/* ---- a string table and id maps ----------------------------------------- */

struct strtab {
  char **s;
  size_t n, cap;
  size_t *hash; /* index+1, open addressing */
  size_t hcap;
};

static uint64_t hstr(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

static int64_t str_id(struct strtab *t, const char *s) {
  if (!s) s = "";
  if (t->n * 2 >= t->hcap) {
    size_t nc = t->hcap ? t->hcap * 2 : 1024;
    size_t *nh = calloc(nc, sizeof *nh);
    for (size_t i = 0; i < t->n; i++) {
      size_t j = hstr(t->s[i]) & (nc - 1);
      while (nh[j]) j = (j + 1) & (nc - 1);
      nh[j] = i + 1;
    }
    free(t->hash);
    t->hash = nh;
    t->hcap = nc;
  }
  size_t j = hstr(s) & (t->hcap - 1);
  while (t->hash[j]) {
    if (!strcmp(t->s[t->hash[j] - 1], s)) return (int64_t)(t->hash[j] - 1);
    j = (j + 1) & (t->hcap - 1);
  }
  if (t->n == t->cap) {
    t->cap = t->cap ? t->cap * 2 : 256;
    t->s = realloc(t->s, t->cap * sizeof *t->s);
  }
  t->s[t->n] = strdup(s);
  t->hash[j] = ++t->n;
  return (int64_t)(t->n - 1);
}

struct idmap { /* uint64 key -> uint64 id (1-based) */
  uint64_t *k, *v;
  size_t n, cap;
};
static uint64_t *idmap_slot(struct idmap *m, uint64_t key, int *fresh) {
  if (m->n * 2 >= m->cap) {
    size_t nc = m->cap ? m->cap * 2 : 1024;
    uint64_t *nk = calloc(nc, 8), *nv = calloc(nc, 8);
    for (size_t i = 0; i < m->cap; i++)
      if (m->v[i]) {
        size_t j = (m->k[i] * 0x9E3779B97F4A7C15ull >> 20) & (nc - 1);
        while (nv[j]) j = (j + 1) & (nc - 1);
        nk[j] = m->k[i];
        nv[j] = m->v[i];
      }
    free(m->k);
    free(m->v);
    m->k = nk;
    m->v = nv;
    m->cap = nc;
  }
  size_t j = (key * 0x9E3779B97F4A7C15ull >> 20) & (m->cap - 1);
  while (m->v[j] && m->k[j] != key) j = (j + 1) & (m->cap - 1);
  *fresh = !m->v[j];
  if (*fresh) {
    m->k[j] = key;
    m->n++;
  }
  return &m->v[j];
}

/* ---- the builder ---------------------------------------------------------- */

struct builder {
  Profile p;
  struct strtab st;
  struct idmap locs, funcs, maps;
  struct hs_symbolizer *sym;
  Location **loc;
  size_t nloc, caploc;
  Function **fn;
  size_t nfn, capfn;
  Mapping **mp;
  size_t nmp, capmp;
  Sample **smp;
  size_t nsmp, capsmp;
};

#define PUSH(arr, n, cap, x)                                       \
  do {                                                             \
    if ((n) == (cap)) {                                            \
      (cap) = (cap) ? (cap) * 2 : 64;                              \
      (arr) = realloc((arr), (cap) * sizeof *(arr));               \
    }                                                              \
    (arr)[(n)++] = (x);                                            \
  } while (0)

static uint64_t mapping_id(struct builder *b, uintptr_t addr) {
  const char *path = NULL, *build_id = NULL;
  uintptr_t start = 0, end = 0;
  if (hs_sym_module(b->sym, addr, &path, &start, &end, &build_id) != 0) return 0;
  int fresh;
  uint64_t *slot = idmap_slot(&b->maps, start, &fresh);
  if (!fresh) return *slot;
  Mapping *m = calloc(1, sizeof *m);
  perftools__profiles__mapping__init(m);
  m->id = b->nmp + 1;
  m->memory_start = start;
  m->memory_limit = end;
  m->file_offset = 0;
  m->filename = str_id(&b->st, path);
  m->build_id = str_id(&b->st, build_id ? build_id : "");
  m->has_functions = m->has_filenames = m->has_line_numbers = m->has_inline_frames = 1;
  PUSH(b->mp, b->nmp, b->capmp, m);
  *slot = m->id;
  return m->id;
}

static uint64_t function_id(struct builder *b, const char *name, const char *file) {
  char key[1024];
  snprintf(key, sizeof key, "%s\x01%s", name ? name : "??", file ? file : "");
  int fresh;
  uint64_t *slot = idmap_slot(&b->funcs, hstr(key), &fresh);
  if (!fresh) return *slot;
  Function *f = calloc(1, sizeof *f);
  perftools__profiles__function__init(f);
  f->id = b->nfn + 1;
  f->name = f->system_name = str_id(&b->st, name ? name : "??");
  f->filename = str_id(&b->st, file ? file : "");
  PUSH(b->fn, b->nfn, b->capfn, f);
  *slot = f->id;
  return f->id;
}

static uint64_t location_id(struct builder *b, uintptr_t ret_addr) {
  uintptr_t addr = ret_addr - 1; /* the call instruction */
  int fresh;
  uint64_t *slot = idmap_slot(&b->locs, addr, &fresh);
  if (!fresh) return *slot;
  Location *l = calloc(1, sizeof *l);
  perftools__profiles__location__init(l);
  l->id = b->nloc + 1;
  *slot = l->id; /* before the calls below may grow the map */
  l->address = addr;
  l->mapping_id = mapping_id(b, addr);
  const struct hs_frame *fr;
  int n = hs_sym_lookup(b->sym, addr, &fr);
  l->n_line = (size_t)n;
  l->line = calloc((size_t)n, sizeof *l->line);
  for (int i = 0; i < n; i++) { /* innermost first, as pprof wants */
    Line *ln = calloc(1, sizeof *ln);
    perftools__profiles__line__init(ln);
    ln->function_id = function_id(b, fr[i].function, fr[i].file);
    ln->line = fr[i].line;
    l->line[i] = ln;
  }
  PUSH(b->loc, b->nloc, b->caploc, l);
  return l->id;
}

static ValueType *vt(struct builder *b, const char *type, const char *unit) {
  ValueType *v = calloc(1, sizeof *v);
  perftools__profiles__value_type__init(v);
  v->type = str_id(&b->st, type);
  v->unit = str_id(&b->st, unit);
  return v;
}

static void add_sample(struct builder *b, const uintptr_t *frames, unsigned nframes, const int64_t *values,
                       size_t nvalues, const char *label_key, int64_t num, const char *num_unit, const char *str) {
  Sample *s = calloc(1, sizeof *s);
  perftools__profiles__sample__init(s);
  s->n_location_id = nframes;
  s->location_id = calloc(nframes ? nframes : 1, sizeof *s->location_id);
  for (unsigned i = 0; i < nframes; i++) s->location_id[i] = location_id(b, frames[i]);
  s->n_value = nvalues;
  s->value = calloc(nvalues, sizeof *s->value);
  memcpy(s->value, values, nvalues * sizeof *values);
  if (label_key) {
    Label *l = calloc(1, sizeof *l);
    perftools__profiles__label__init(l);
    l->key = str_id(&b->st, label_key);
    if (str)
      l->str = str_id(&b->st, str);
    else {
      l->num = num;
      if (num_unit) l->num_unit = str_id(&b->st, num_unit);
    }
    s->n_label = 1;
    s->label = calloc(1, sizeof *s->label);
    s->label[0] = l;
  }
  PUSH(b->smp, b->nsmp, b->capsmp, s);
}

static void builder_init(struct builder *b, struct hs_symbolizer *sym) {
  memset(b, 0, sizeof *b);
  perftools__profiles__profile__init(&b->p);
  b->sym = sym;
  str_id(&b->st, ""); /* string 0 is always "" */
  /* profile.proto: "mapping[0] will be the main binary". go tool pprof
   * names it on its "File:" line, and pprof-based tools take it for the
   * program. Mappings are otherwise made in the order samples meet them,
   * and the first sample's leaf is often the dynamic loader's. The entry
   * point lies in the program (the report library runs inside it). */
  unsigned long entry = getauxval(AT_ENTRY);
  if (entry) mapping_id(b, (uintptr_t)entry);
}

static void free_sample(Sample *s) {
  for (size_t i = 0; i < s->n_label; i++) free(s->label[i]);
  free(s->label);
  free(s->location_id);
  free(s->value);
  free(s);
}

static void builder_free(struct builder *b) {
  for (size_t i = 0; i < b->nsmp; i++) free_sample(b->smp[i]);
  for (size_t i = 0; i < b->nloc; i++) {
    for (size_t j = 0; j < b->loc[i]->n_line; j++) free(b->loc[i]->line[j]);
    free(b->loc[i]->line);
    free(b->loc[i]);
  }
  for (size_t i = 0; i < b->nfn; i++) free(b->fn[i]);
  for (size_t i = 0; i < b->nmp; i++) free(b->mp[i]);
  for (size_t i = 0; i < b->p.n_sample_type; i++) free(b->p.sample_type[i]);
  free(b->p.sample_type);
  free(b->p.period_type);
  for (size_t i = 0; i < b->st.n; i++) free(b->st.s[i]);
  free(b->st.s);
  free(b->st.hash);
  free(b->locs.k);
  free(b->locs.v);
  free(b->funcs.k);
  free(b->funcs.v);
  free(b->maps.k);
  free(b->maps.v);
  free(b->loc);
  free(b->fn);
  free(b->mp);
  free(b->smp);
}

/* Serializes and gzips. */
static int finish(struct builder *b, unsigned char **out, size_t *len) {
  Profile *p = &b->p;
  p->sample = b->smp;
  p->n_sample = b->nsmp;
  p->location = b->loc;
  p->n_location = b->nloc;
  p->function = b->fn;
  p->n_function = b->nfn;
  p->mapping = b->mp;
  p->n_mapping = b->nmp;
  p->string_table = b->st.s;
  p->n_string_table = b->st.n;
  size_t raw_len = perftools__profiles__profile__get_packed_size(p);
  uint8_t *raw = malloc(raw_len ? raw_len : 1);
  if (!raw) return ENOMEM;
  perftools__profiles__profile__pack(p, raw);
  z_stream z;
  memset(&z, 0, sizeof z);
  if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    free(raw);
    return ENOMEM;
  }
  size_t cap = deflateBound(&z, raw_len) + 64;
  unsigned char *gz = malloc(cap);
  z.next_in = raw;
  z.avail_in = (uInt)raw_len;
  z.next_out = gz;
  z.avail_out = (uInt)cap;
  int r = gz ? deflate(&z, Z_FINISH) : Z_MEM_ERROR;
  deflateEnd(&z);
  free(raw);
  if (r != Z_STREAM_END) {
    free(gz);
    return ENOMEM;
  }
  *out = gz;
  *len = cap - z.avail_out;
  /* the arrays belong to the builder */
  p->sample = NULL;
  p->location = NULL;
  p->function = NULL;
  p->mapping = NULL;
  p->string_table = NULL;
  return 0;
}

static int64_t rnd(double v) { return (int64_t)(v + 0.5); }

int hs_pprof_heap(const struct hs_prof_snapshot *s, int kind, struct hs_symbolizer *sym, unsigned char **out,
                  size_t *len) {
  struct builder b;
  builder_init(&b, sym);
  Profile *p = &b.p;
  p->n_sample_type = 4;
  p->sample_type = calloc(4, sizeof *p->sample_type);
  p->sample_type[0] = vt(&b, "alloc_objects", "count");
  p->sample_type[1] = vt(&b, "alloc_space", "bytes");
  p->sample_type[2] = vt(&b, "inuse_objects", "count");
  p->sample_type[3] = vt(&b, "inuse_space", "bytes");
  p->period_type = vt(&b, "space", "bytes");
  p->period = rnd(s->period);
  p->time_nanos = (int64_t)s->time_ns;
  if (kind == HS_PROF_ALLOCS) p->default_sample_type = str_id(&b.st, "alloc_space");
  for (size_t i = 0; i < s->n; i++) {
    const struct hs_prof_stack *st = &s->stacks[i];
    int64_t v[4] = {rnd(st->alloc_count), rnd(st->alloc_bytes), rnd(st->inuse_count), rnd(st->inuse_bytes)};
    if (!v[0] && !v[1] && !v[2] && !v[3]) continue;
    /* the block size label, as Go's heap profile: the average here */
    double size = st->inuse_count > 0 ? st->inuse_bytes / st->inuse_count
                                      : (st->alloc_count > 0 ? st->alloc_bytes / st->alloc_count : 0);
    add_sample(&b, st->frames, st->nframes, v, 4, "bytes", rnd(size), "bytes", NULL);
  }
  int r = finish(&b, out, len);
  builder_free(&b);
  return r;
}

int hs_pprof_leaks(const struct hs_report_leak *leaks, const int *shown, size_t n, uint64_t time_ns,
                   struct hs_symbolizer *sym, unsigned char **out, size_t *len) {
  static const char *const kinds[] = {"definite", "indirect", "possible", "reachable"};
  struct builder b;
  builder_init(&b, sym);
  Profile *p = &b.p;
  p->n_sample_type = 2;
  p->sample_type = calloc(2, sizeof *p->sample_type);
  p->sample_type[0] = vt(&b, "leaked_objects", "count");
  p->sample_type[1] = vt(&b, "leaked_space", "bytes");
  p->period_type = vt(&b, "space", "bytes");
  p->period = 1;
  p->time_nanos = (int64_t)time_ns;
  for (size_t i = 0; i < n; i++) {
    if (!shown[i]) continue;
    int64_t v[2] = {(int64_t)leaks[i].blocks, (int64_t)leaks[i].bytes};
    add_sample(&b, leaks[i].frames, leaks[i].nframes, v, 2, "kind", 0, NULL, kinds[leaks[i].kind & 3]);
  }
  int r = finish(&b, out, len);
  builder_free(&b);
  return r;
}

int hs_pprof_threads(const char *kind, const struct hs_prof_stack *st, const char *const *names,
                     const char *const *states, size_t n, struct hs_symbolizer *sym, unsigned char **out,
                     size_t *len) {
  struct builder b;
  builder_init(&b, sym);
  Profile *p = &b.p;
  p->n_sample_type = 1;
  p->sample_type = calloc(1, sizeof *p->sample_type);
  p->sample_type[0] = vt(&b, kind, "count");
  p->period_type = vt(&b, kind, "count");
  p->period = 1;
  for (size_t i = 0; i < n; i++) {
    int64_t v[1] = {rnd(st[i].alloc_count)};
    add_sample(&b, st[i].frames, st[i].nframes, v, 1, "thread_name", 0, NULL, names[i]);
    if (states[i][0]) { /* a second string label */
      Sample *s = b.smp[b.nsmp - 1];
      Label *l = calloc(1, sizeof *l);
      perftools__profiles__label__init(l);
      l->key = str_id(&b.st, "state");
      l->str = str_id(&b.st, states[i]);
      s->label = realloc(s->label, 2 * sizeof *s->label);
      s->label[1] = l;
      s->n_label = 2;
    }
  }
  int r = finish(&b, out, len);
  builder_free(&b);
  return r;
}

int hs_write_file(const char *path, const void *data, size_t len) {
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
  int fd = hs_fs_open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return errno;
  const char *p = data;
  size_t left = len;
  while (left) {
    ssize_t w = write(fd, p, left);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      int e = errno ? errno : EIO;
      close(fd);
      hs_fs_unlink(tmp);
      return e;
    }
    p += w;
    left -= (size_t)w;
  }
  if (close(fd) || hs_fs_rename(tmp, path)) {
    int e = errno;
    hs_fs_unlink(tmp);
    return e;
  }
  return 0;
}

__attribute__((visibility("default"))) int hs_profile_write(const struct hs_agent_api *api, int kind,
                                                             const char *path) {
  if (!api || api->abi != HS_REPORT_ABI) return EINVAL;
  struct hs_prof_snapshot s;
  if (api->snapshot(&s)) return ENOMEM;
  struct hs_symbolizer *sym = hs_sym_open_pid(getpid());
  unsigned char *gz = NULL;
  size_t len = 0;
  int r = sym ? hs_pprof_heap(&s, kind, sym, &gz, &len) : ENOENT;
  api->snapshot_free(&s);
  hs_sym_close(sym);
  if (!r) r = hs_write_file(path, gz, len);
  free(gz);
  return r;
}
