/* The in-process HTTP endpoint, Go's net/http/pprof for C programs, on
 * libmicrohttpd's own threads (marked as the agent's, so nothing they
 * allocate is profiled):
 *   /debug/pprof/            HTML index
 *   /debug/pprof/heap        heap profile (inuse_space by default)
 *   /debug/pprof/allocs      the same data, alloc_space by default
 *   /debug/pprof/goroutine   threads: a count profile (placeholder)
 *   /debug/pprof/cmdline     argv, NUL-separated
 *   /debug/pprof/symbol      GET: num_symbols; POST 0xaddr+0xaddr: names
 * ?debug=1 gives Go's legacy text format, ?seconds=N a delta profile over N
 * seconds. Loopback only unless allowed; optional bearer token. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../common/hs_report.h"
#include "buf.h"
#include "pprof.h"
#include "symbolize.h"
#include "threads.h"

/* libmicrohttpd is loaded when an endpoint starts, not with this library:
 * every process under heapscope loads this library at exit to report, and
 * libmicrohttpd brings gnutls and its dependencies along (2-4 ms of a
 * process's exit: the library's dlopen took 4-7 ms with it, 1.7-3.1 without). The calls below go through these
 * pointers; the names stay libmicrohttpd's. */
#include <dlfcn.h>
static struct {
  __typeof__(&MHD_start_daemon) start_daemon;
  __typeof__(&MHD_get_daemon_info) get_daemon_info;
  __typeof__(&MHD_create_response_from_buffer) create_response_from_buffer;
  __typeof__(&MHD_add_response_header) add_response_header;
  __typeof__(&MHD_queue_response) queue_response;
  __typeof__(&MHD_destroy_response) destroy_response;
  __typeof__(&MHD_lookup_connection_value) lookup_connection_value;
} mhd;
#define MHD_start_daemon mhd.start_daemon
#define MHD_get_daemon_info mhd.get_daemon_info
#define MHD_create_response_from_buffer mhd.create_response_from_buffer
#define MHD_add_response_header mhd.add_response_header
#define MHD_queue_response mhd.queue_response
#define MHD_destroy_response mhd.destroy_response
#define MHD_lookup_connection_value mhd.lookup_connection_value

static const char *load_mhd(void) {
  if (mhd.start_daemon) return NULL;
  void *h = dlopen("libmicrohttpd.so.12", RTLD_NOW | RTLD_LOCAL);
  if (!h) h = dlopen("libmicrohttpd.so", RTLD_NOW | RTLD_LOCAL);
  if (!h) return dlerror();
#define L(f, name) *(void **)&mhd.f = dlsym(h, name)
  L(get_daemon_info, "MHD_get_daemon_info");
  L(create_response_from_buffer, "MHD_create_response_from_buffer");
  L(add_response_header, "MHD_add_response_header");
  L(queue_response, "MHD_queue_response");
  L(destroy_response, "MHD_destroy_response");
  L(lookup_connection_value, "MHD_lookup_connection_value");
  if (!mhd.get_daemon_info || !mhd.create_response_from_buffer || !mhd.add_response_header || !mhd.queue_response ||
      !mhd.destroy_response || !mhd.lookup_connection_value)
    return "a function is missing";
  L(start_daemon, "MHD_start_daemon"); /* last: it marks the set as loaded */
#undef L
  return mhd.start_daemon ? NULL : "MHD_start_daemon is missing";
}

static const struct hs_agent_api *api;
static struct MHD_Daemon *daemon_;
static char token[256];
static char bound[300];

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *type, const void *body,
                             size_t len, const char *filename) {
  struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
  if (!r) return MHD_NO;
  MHD_add_response_header(r, "Content-Type", type);
  MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
  if (filename) {
    char cd[128];
    snprintf(cd, sizeof cd, "attachment; filename=\"%s\"", filename);
    MHD_add_response_header(r, "Content-Disposition", cd);
  }
  enum MHD_Result ret = MHD_queue_response(c, status, r);
  MHD_destroy_response(r);
  return ret;
}

static enum MHD_Result text(struct MHD_Connection *c, unsigned status, const char *msg) {
  return reply(c, status, "text/plain; charset=utf-8", msg, strlen(msg), NULL);
}

/* ---- query parameters ----------------------------------------------------- */

static int param_int(struct MHD_Connection *c, const char *name, long lo, long hi, long *out) {
  const char *v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, name);
  if (!v) return 0;
  char *end;
  errno = 0;
  long n = strtol(v, &end, 10);
  if (!*v || *end || errno || n < lo || n > hi) return -1;
  *out = n;
  return 1;
}

/* ---- profiles ---------------------------------------------------------------- */

/* s2 - s1, matching stacks by their depot frames (stable per stack). */
static void delta(struct hs_prof_snapshot *s2, const struct hs_prof_snapshot *s1) {
  for (size_t i = 0; i < s2->n; i++) {
    struct hs_prof_stack *b = &s2->stacks[i];
    for (size_t j = 0; j < s1->n; j++)
      if (s1->stacks[j].frames == b->frames) {
        b->alloc_count -= s1->stacks[j].alloc_count;
        b->alloc_bytes -= s1->stacks[j].alloc_bytes;
        b->inuse_count -= s1->stacks[j].inuse_count;
        b->inuse_bytes -= s1->stacks[j].inuse_bytes;
        break;
      }
  }
}

static void legacy_text(struct hs_buf *b, const struct hs_prof_snapshot *s, struct hs_symbolizer *sym) {
  double t[4] = {0};
  for (size_t i = 0; i < s->n; i++) {
    t[0] += s->stacks[i].inuse_count;
    t[1] += s->stacks[i].inuse_bytes;
    t[2] += s->stacks[i].alloc_count;
    t[3] += s->stacks[i].alloc_bytes;
  }
  hs_buf_printf(b, "heap profile: %.0f: %.0f [%.0f: %.0f] @ heap/%.0f\n", t[0], t[1], t[2], t[3], 2 * s->period);
  for (size_t i = 0; i < s->n; i++) {
    const struct hs_prof_stack *st = &s->stacks[i];
    hs_buf_printf(b, "%.0f: %.0f [%.0f: %.0f] @", st->inuse_count, st->inuse_bytes, st->alloc_count,
                  st->alloc_bytes);
    for (unsigned f = 0; f < st->nframes; f++) hs_buf_printf(b, " 0x%lx", (unsigned long)st->frames[f]);
    hs_buf_printf(b, "\n");
    for (unsigned f = 0; f < st->nframes; f++) {
      const struct hs_frame *fr;
      int n = hs_sym_lookup(sym, st->frames[f] - 1, &fr);
      for (int k = 0; k < n; k++)
        hs_buf_printf(b, "#\t0x%lx\t%s\t%s:%d\n", (unsigned long)st->frames[f] - 1,
                      fr[k].function ? fr[k].function : "??", fr[k].file ? fr[k].file : "??", fr[k].line);
    }
    hs_buf_printf(b, "\n");
  }
}

static enum MHD_Result heap(struct MHD_Connection *c, int kind) {
  long dbg = 0, seconds = 0;
  if (param_int(c, "debug", 0, 2, &dbg) < 0) return text(c, 400, "bad debug parameter: want 0, 1 or 2\n");
  if (param_int(c, "seconds", 1, 3600, &seconds) < 0)
    return text(c, 400, "bad seconds parameter: want a number of seconds from 1 to 3600\n");
  struct hs_prof_snapshot s1, s2;
  if (seconds) {
    if (api->snapshot(&s1)) return text(c, 500, "out of memory\n");
    sleep((unsigned)seconds);
  }
  if (api->snapshot(&s2)) {
    if (seconds) api->snapshot_free(&s1);
    return text(c, 500, "out of memory\n");
  }
  if (seconds) {
    delta(&s2, &s1);
    api->snapshot_free(&s1);
  }
  struct hs_symbolizer *sym = hs_sym_open_pid(getpid());
  enum MHD_Result r;
  if (!sym) {
    r = text(c, 500, "cannot read this process's modules for symbols\n");
  } else if (dbg) {
    struct hs_buf b = {0};
    legacy_text(&b, &s2, sym);
    r = reply(c, 200, "text/plain; charset=utf-8", b.s ? b.s : "", b.len, NULL);
    hs_buf_free(&b);
  } else {
    unsigned char *gz = NULL;
    size_t len = 0;
    int e = hs_pprof_heap(&s2, kind, sym, &gz, &len);
    r = e ? text(c, 500, "cannot encode the profile\n")
          : reply(c, 200, "application/octet-stream", gz, len, kind == HS_PROF_ALLOCS ? "allocs" : "heap");
    free(gz);
  }
  hs_sym_close(sym);
  api->snapshot_free(&s2);
  return r;
}

/* goroutine: one sample per distinct current stack (per name and state),
 * ?debug=1 grouped text as Go, ?debug=2 a per-thread dump. threadcreate:
 * the stacks that created the threads. */
static enum MHD_Result goroutine(struct MHD_Connection *c, int create) {
  long dbg = 0;
  if (param_int(c, "debug", 0, 2, &dbg) < 0) return text(c, 400, "bad debug parameter: want 0, 1 or 2\n");
  struct hs_report_thread *t = NULL;
  size_t n = api->threads(&t);
  struct hs_symbolizer *sym = hs_sym_open_pid(getpid());
  if (!sym) {
    api->threads_free(t, n);
    return text(c, 500, "cannot read this process's modules for symbols\n");
  }
  enum MHD_Result r;
  const char *kind = create ? "threadcreate" : "goroutine";
  if (dbg == 2 && !create) {
    struct hs_buf b = {0};
    for (size_t i = 0; i < n; i++) {
      char wait[160];
      hs_thread_wait(&t[i], wait, sizeof wait);
      hs_buf_printf(&b, "thread %d \"%s\" [%s]:\n", (int)t[i].tid, t[i].name, wait);
      hs_text_frames(&b, sym, t[i].current, t[i].ncurrent, "  ", 0, "(stack not available)");
      if (t[i].ncreated) {
        hs_buf_printf(&b, "created by:\n");
        hs_text_frames(&b, sym, t[i].created, t[i].ncreated, "  ", 1, "(unknown)");
      }
      hs_buf_printf(&b, "\n");
    }
    r = reply(c, 200, "text/plain; charset=utf-8", b.s ? b.s : "", b.len, NULL);
    hs_buf_free(&b);
  } else {
    /* samples: by stack (current, or creation for threadcreate), name, state */
    struct hs_prof_stack *st = calloc(n + 1, sizeof *st);
    const char **names = calloc(n + 1, sizeof *names), **states = calloc(n + 1, sizeof *states);
    size_t ns = 0;
    for (size_t i = 0; st && names && states && i < n; i++) {
      const uintptr_t *f = create ? t[i].created : t[i].current;
      unsigned nf = create ? t[i].ncreated : t[i].ncurrent;
      const char *state = create ? "" : hs_thread_state(&t[i]);
      size_t k = 0;
      for (; k < ns; k++)
        if (st[k].nframes == nf && !memcmp(st[k].frames, f, nf * sizeof *f) && !strcmp(names[k], t[i].name) &&
            !strcmp(states[k], state))
          break;
      if (k == ns) {
        st[ns].frames = f;
        st[ns].nframes = nf;
        names[ns] = t[i].name;
        states[ns] = state;
        ns++;
      }
      st[k].alloc_count += 1;
    }
    if (dbg) {
      struct hs_buf b = {0};
      hs_buf_printf(&b, "%s profile: total %zu\n", kind, n);
      for (size_t k = 0; k < ns; k++) {
        hs_buf_printf(&b, "%.0f @", st[k].alloc_count);
        for (unsigned f = 0; f < st[k].nframes; f++) hs_buf_printf(&b, " 0x%lx", (unsigned long)st[k].frames[f]);
        hs_buf_printf(&b, "\n# labels: {\"thread_name\":\"%s\", \"state\":\"%s\"}\n", names[k], states[k]);
        for (unsigned f = 0; f < st[k].nframes; f++) {
          const struct hs_frame *fr;
          int m = hs_sym_lookup(sym, st[k].frames[f] - 1, &fr);
          for (int q = 0; q < m; q++)
            hs_buf_printf(&b, "#\t0x%lx\t%s\t%s:%d\n", (unsigned long)st[k].frames[f] - 1,
                          fr[q].function ? fr[q].function : "??", fr[q].file ? fr[q].file : "??", fr[q].line);
        }
        hs_buf_printf(&b, "\n");
      }
      r = reply(c, 200, "text/plain; charset=utf-8", b.s ? b.s : "", b.len, NULL);
      hs_buf_free(&b);
    } else {
      unsigned char *gz = NULL;
      size_t len = 0;
      int e = st && names && states ? hs_pprof_threads(kind, st, names, states, ns, sym, &gz, &len) : 1;
      r = e ? text(c, 500, "cannot encode the profile\n")
            : reply(c, 200, "application/octet-stream", gz, len, kind);
      free(gz);
    }
    free(st);
    free(names);
    free(states);
  }
  hs_sym_close(sym);
  api->threads_free(t, n);
  return r;
}

static enum MHD_Result cmdline(struct MHD_Connection *c) {
  char buf[65536];
  int fd = hs_fs_open("/proc/thread-self/cmdline", O_RDONLY | O_CLOEXEC, 0);
  ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf) : -1;
  if (fd >= 0) close(fd);
  if (n < 0) return text(c, 500, "cannot read /proc/thread-self/cmdline\n");
  if (n > 0 && buf[n - 1] == 0) n--; /* Go joins with NUL, no trailing one */
  return reply(c, 200, "text/plain; charset=utf-8", buf, (size_t)n, NULL);
}

struct post {
  struct hs_buf body;
};

static enum MHD_Result symbol(struct MHD_Connection *c, const char *method, struct post *p) {
  if (!strcmp(method, "GET")) return text(c, 200, "num_symbols: 1\n");
  struct hs_symbolizer *sym = hs_sym_open_pid(getpid());
  if (!sym) return text(c, 500, "cannot read this process's modules for symbols\n");
  struct hs_buf out = {0};
  const char *s = p && p->body.s ? p->body.s : "";
  while (*s) {
    while (*s == '+' || isspace((unsigned char)*s)) s++;
    if (!*s) break;
    char *end;
    errno = 0;
    unsigned long a = strtoul(s, &end, 0);
    if (end == s || errno) {
      hs_buf_free(&out);
      hs_sym_close(sym);
      return text(c, 400, "bad address list: want 0x1234+0x5678\n");
    }
    const struct hs_frame *fr;
    int n = hs_sym_lookup(sym, (uintptr_t)a, &fr);
    if (n > 0 && fr[n - 1].function) hs_buf_printf(&out, "0x%lx %s\n", a, fr[n - 1].function);
    s = end;
  }
  enum MHD_Result r = reply(c, 200, "text/plain; charset=utf-8", out.s ? out.s : "", out.len, NULL);
  hs_buf_free(&out);
  hs_sym_close(sym);
  return r;
}

static const char index_html[] =
    "<html><head><title>/debug/pprof/</title></head><body>\n"
    "<p>heapscope: heap profiles of this process, in the format of Go's net/http/pprof.</p>\n"
    "<table>\n"
    "<tr><td><a href='heap?debug=1'>heap</a></td><td>memory in use and allocated, by call stack</td></tr>\n"
    "<tr><td><a href='allocs?debug=1'>allocs</a></td><td>the same, alloc_space by default</td></tr>\n"
    "<tr><td><a href='goroutine?debug=1'>goroutine</a></td><td>stacks of all current threads "
    "(<a href='goroutine?debug=2'>per thread</a>, with state and creation stack)</td></tr>\n"
    "<tr><td><a href='threadcreate?debug=1'>threadcreate</a></td><td>stacks that created the current threads</td></tr>\n"
    "<tr><td><a href='cmdline'>cmdline</a></td><td>the command line</td></tr>\n"
    "<tr><td>symbol</td><td>address to function name, for pprof</td></tr>\n"
    "</table>\n<p>Use: <code>go tool pprof http://HOST:PORT/debug/pprof/heap</code>; add <code>?seconds=N</code> "
    "for a delta profile, <code>?debug=1</code> for text.</p>\n</body></html>\n";

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                               const char *version, const char *upload, size_t *upload_size, void **con_cls) {
  (void)cls;
  (void)version;
  api->enter_agent_thread();
  if (!*con_cls) { /* first call for this request: headers only */
    struct post *p = calloc(1, sizeof *p);
    if (!p) return MHD_NO;
    *con_cls = p;
    return MHD_YES;
  }
  struct post *p = *con_cls;
  if (*upload_size) {
    if (p->body.len + *upload_size > (1u << 20)) return text(c, 413, "request body too large\n");
    hs_buf_printf(&p->body, "%.*s", (int)*upload_size, upload);
    *upload_size = 0;
    return MHD_YES;
  }
  if (token[0]) {
    const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (!auth || strncmp(auth, "Bearer ", 7) || strcmp(auth + 7, token))
      return text(c, 401, "missing or wrong bearer token\n");
  }
  int is_get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
  if (!is_get && strcmp(method, "POST")) return text(c, 405, "method not allowed\n");
  if (strncmp(url, "/debug/pprof", 12)) return text(c, 404, "not found: try /debug/pprof/\n");
  const char *name = url + 12;
  if (*name == '/') name++;
  if (!*name) return reply(c, 200, "text/html; charset=utf-8", index_html, sizeof index_html - 1, NULL);
  if (!strcmp(name, "symbol")) return symbol(c, method, p);
  if (!is_get) return text(c, 405, "method not allowed\n");
  if (!strcmp(name, "heap")) return heap(c, HS_PROF_HEAP);
  if (!strcmp(name, "allocs")) return heap(c, HS_PROF_ALLOCS);
  if (!strcmp(name, "goroutine")) return goroutine(c, 0);
  if (!strcmp(name, "threadcreate")) return goroutine(c, 1);
  if (!strcmp(name, "cmdline")) return cmdline(c);
  return text(c, 404, "unknown profile: see /debug/pprof/\n");
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
  (void)cls;
  (void)c;
  (void)toe;
  struct post *p = *con_cls;
  if (p) {
    hs_buf_free(&p->body);
    free(p);
  }
  *con_cls = NULL;
}

static int is_loopback(const struct sockaddr *sa) {
  if (sa->sa_family == AF_INET)
    return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
  if (sa->sa_family == AF_INET6) return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)sa)->sin6_addr);
  return 0;
}

__attribute__((visibility("default"))) int hs_serve_start(const struct hs_agent_api *a, const char *addr,
                                                           int allow_remote, const char *token_file) {
  if (!a || a->abi != HS_REPORT_ABI) return -1;
  if (daemon_) {
    dprintf(2, "heapscope: warning: the HTTP endpoint already runs on %s\n", bound);
    return -1;
  }
  const char *why = load_mhd();
  if (why) {
    dprintf(2, "heapscope: warning: cannot load libmicrohttpd (%s); the program runs without the HTTP endpoint\n",
            why);
    return -1;
  }
  api = a;
  char host[256];
  const char *colon = strrchr(addr, ':');
  if (!colon || colon == addr || !colon[1]) {
    dprintf(2, "heapscope: warning: --http wants ADDR:PORT, not '%s'; the program runs without the endpoint\n",
            addr);
    return -1;
  }
  size_t hl = (size_t)(colon - addr);
  if (hl >= sizeof host) hl = sizeof host - 1;
  memcpy(host, addr, hl);
  host[hl] = 0;
  if (host[0] == '[' && hl > 2 && host[hl - 1] == ']') {
    memmove(host, host + 1, hl - 2);
    host[hl - 2] = 0;
  }
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
  int gai = getaddrinfo(host, colon + 1, &hints, &res);
  if (gai || !res) {
    dprintf(2, "heapscope: warning: cannot resolve --http address '%s': %s; the program runs without the endpoint\n",
            addr, gai_strerror(gai));
    return -1;
  }
  if (!is_loopback(res->ai_addr) && !allow_remote) {
    dprintf(2, "heapscope: warning: --http=%s is not a loopback address; refused (add --http-allow-remote to "
               "serve it, ideally with --http-token-file)\n",
            addr);
    freeaddrinfo(res);
    return -1;
  }
  if (token_file) {
    FILE *f = fopen(token_file, "r");
    if (!f || !fgets(token, sizeof token, f)) {
      dprintf(2, "heapscope: warning: cannot read --http-token-file %s; the endpoint is not started\n", token_file);
      if (f) fclose(f);
      freeaddrinfo(res);
      return -1;
    }
    fclose(f);
    token[strcspn(token, "\r\n \t")] = 0;
  }
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION;
  if (res->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
  daemon_ = MHD_start_daemon(flags, 0, NULL, NULL, handler, NULL, MHD_OPTION_SOCK_ADDR, res->ai_addr,
                             MHD_OPTION_CONNECTION_LIMIT, (unsigned)64, MHD_OPTION_CONNECTION_TIMEOUT,
                             (unsigned)120, MHD_OPTION_NOTIFY_COMPLETED, completed, NULL, MHD_OPTION_END);
  int e = errno;
  freeaddrinfo(res);
  if (!daemon_) {
    dprintf(2, "heapscope: warning: cannot serve on %s: %s; the program runs without the HTTP endpoint\n", addr,
            strerror(e ? e : EADDRINUSE));
    return -1;
  }
  const union MHD_DaemonInfo *di = MHD_get_daemon_info(daemon_, MHD_DAEMON_INFO_BIND_PORT);
  unsigned port = di ? di->port : 0;
  snprintf(bound, sizeof bound, "%s:%u", host, port);
  dprintf(2, "heapscope: serving pprof on http://%s%s%s:%u/debug/pprof/ (pid %d)\n", strchr(host, ':') ? "[" : "",
          host, strchr(host, ':') ? "]" : "", port, (int)getpid());
  return 0;
}
