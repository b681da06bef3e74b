/* Symbolization with libdwfl. Every address is expanded into its chain of
 * inlined frames from the DWARF scopes (DW_TAG_inlined_subroutine call_file
 * and call_line give each caller's position), the way eu-addr2line -i does.
 * Results are cached by address: loss records share most of their frames. */
#define _GNU_SOURCE
#include <sys/syscall.h>
#include <unistd.h>
#include <dlfcn.h>
#include <dwarf.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwfl.h>
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "symbolize.h"

/* __cxa_demangle, from the program's own C++ runtime if it has one, else
 * from libstdc++ loaded at the first mangled name: linked, libstdc++ was
 * 1.0 of the 1.5 ms it took to load this library into every leaky C
 * program at exit, which never needs it. */
typedef char *(*demangle_fn)(const char *mangled, char *buf, size_t *len, int *status);
static demangle_fn cxa_demangle;
static pthread_once_t demangler_once = PTHREAD_ONCE_INIT;
static void find_demangler(void) {
  cxa_demangle = (demangle_fn)dlsym(RTLD_DEFAULT, "__cxa_demangle");
  if (!cxa_demangle) {
    void *h = dlopen("libstdc++.so.6", RTLD_NOW | RTLD_LOCAL);
    if (h) cxa_demangle = (demangle_fn)dlsym(h, "__cxa_demangle");
  }
}

struct cache_ent {
  uintptr_t addr;
  int n;
  struct hs_frame *frames;
};

/* hs_sym_function's answers: the suppression check asks for every frame
 * of every record once per pattern, and libdwfl's symbol lookup scans the
 * module's whole symbol table each time (python3: 0.35 s at exit). */
struct fn_ent {
  uintptr_t addr; /* 0: empty */
  const char *function, *module;
  int rc;
};

/* A module's symbol answers by interval. dwfl_module_addrinfo scans the
 * module's whole symbol table on every call (cc1's 28,900 dynamic symbols:
 * 0.2 ms a call, a second for the frames of a full report), and its answer
 * depends on the address only through which symbols start at or below it,
 * which end above it, which start exactly at it, and which section holds
 * it. So it is the same for every address between two consecutive
 * "boundaries" (each symbol's start, start + 1 and end, each section's
 * start and end): the first address asked in an interval is answered by
 * libdwfl, the others from that answer. */
struct sym_answer {
  const char *name; /* NULL: no symbol */
  GElf_Sym sym;
  GElf_Addr value; /* the symbol's address in the process (addr - offset) */
};
struct sym_index {
  Dwfl_Module *m;
  char *name;              /* m's name and place: after a refresh, a module at the */
  Dwarf_Addr lo, hi;       /* same address is m only if these are still its own */
  unsigned asked;          /* lookups before the index is built */
  uintptr_t *b;            /* sorted boundaries */
  size_t nb;
  struct sym_answer **ans; /* nb + 1 intervals: ans[i] covers [b[i-1], b[i]) */
  int failed;              /* no index (no memory): libdwfl every time */
};
#define SYM_INDEX_AFTER 16 /* a module asked fewer times is not worth it */

struct hs_symbolizer {
  Dwfl *dwfl;
  struct cache_ent *cache;
  size_t cap, count;
  struct fn_ent *fn;
  size_t fn_cap, fn_count;
  struct sym_index *idx;
  size_t nidx, idx_cap;
  /* HEAPSCOPE_VERIFY_SYMBOLS=1 (tests): every answer the index gives is
   * asked of libdwfl too, and the differences counted */
  int verify;
  unsigned long verify_lookups, verify_mismatches;
};

/* Separate debug files, from local files only: by build ID under
 * /usr/lib/debug/.build-id (Debian's -dbgsym packages), then by
 * .gnu_debuglink beside the file, in its .debug directory and under
 * /usr/lib/debug (gdb's places). Never debuginfod, which
 * dwfl_standard_find_debuginfo would start: its client initializes curl and,
 * through libssh2, OpenSSL, inside the profiled process and at exit after
 * the program's atexit handlers, when the program may already have torn
 * OpenSSL down (ssh: a crash in CRYPTO_THREAD_write_lock), and it would
 * fetch over the network unasked. libdwfl checks the build ID of what is
 * found, so a stale debuglink file is refused. */
/* After a chroot (hs_root_fd), libdwfl's own lookups by path would look
 * inside the new root: the build-ID path is opened here instead. */
static int build_id_debuginfo_via_root(Dwfl_Module *mod, char **debuginfo_file_name) {
  const unsigned char *bits;
  GElf_Addr vaddr;
  int n = dwfl_module_build_id(mod, &bits, &vaddr);
  if (n < 2 || n > 64) return -1;
  char path[200];
  int o = snprintf(path, sizeof path, "/usr/lib/debug/.build-id/%02x/", bits[0]);
  for (int i = 1; i < n; i++) o += snprintf(path + o, sizeof path - (size_t)o, "%02x", bits[i]);
  snprintf(path + o, sizeof path - (size_t)o, ".debug");
  int fd = hs_fs_open(path, O_RDONLY | O_CLOEXEC, 0);
  if (fd >= 0) *debuginfo_file_name = strdup(path);
  return fd;
}

static int find_debuginfo(Dwfl_Module *mod, void **userdata, const char *modname, Dwarf_Addr base,
                          const char *file_name, const char *debuglink_file, GElf_Word debuglink_crc,
                          char **debuginfo_file_name) {
  int fd = hs_root_fd >= 0 ? build_id_debuginfo_via_root(mod, debuginfo_file_name)
                           : dwfl_build_id_find_debuginfo(mod, userdata, modname, base, file_name, debuglink_file,
                                                          debuglink_crc, debuginfo_file_name);
  if (fd >= 0 || !debuglink_file || !file_name || strchr(debuglink_file, '/')) return fd;
  const char *slash = strrchr(file_name, '/');
  int dirlen = slash ? (int)(slash - file_name) : 0;
  const char *fmt[] = {"%.*s/%s", "%.*s/.debug/%s", "/usr/lib/debug%.*s/%s"};
  for (size_t i = 0; i < sizeof fmt / sizeof fmt[0]; i++) {
    char *path = NULL;
    if (asprintf(&path, fmt[i], dirlen, file_name, debuglink_file) < 0) continue;
    if (strcmp(path, file_name) && (fd = hs_fs_open(path, O_RDONLY | O_CLOEXEC, 0)) >= 0) {
      *debuginfo_file_name = path;
      return fd;
    }
    free(path);
  }
  return -1;
}

/* A module's file, through the old root after a chroot. */
static int find_elf(Dwfl_Module *mod, void **userdata, const char *modname, Dwarf_Addr base, char **file_name,
                    Elf **elfp) {
  if (hs_root_fd >= 0 && modname && modname[0] == '/') {
    int fd = hs_fs_open(modname, O_RDONLY | O_CLOEXEC, 0);
    if (fd >= 0) {
      *file_name = strdup(modname);
      return fd;
    }
  }
  return dwfl_linux_proc_find_elf(mod, userdata, modname, base, file_name, elfp);
}

static const Dwfl_Callbacks callbacks = {
    .find_elf = find_elf,
    .find_debuginfo = find_debuginfo,
};

/* The own process's symbolizer is kept between uses (refreshed when a
 * library was loaded or unloaded: dl_iterate_phdr's counters): opening one reads the
 * debug information again (libc's alone is several MB to inflate), 130 ms a
 * thread check or a goroutine scrape here, where a kept one answers from
 * its cache. One user at a time; a second one meanwhile gets its own. */
static pthread_mutex_t kept_lock = PTHREAD_MUTEX_INITIALIZER;
static struct hs_symbolizer *kept;
static pid_t kept_pid;
static unsigned long long kept_adds, kept_subs;

static int load_counters(struct dl_phdr_info *info, size_t size, void *arg) {
  unsigned long long *c = arg;
  if (size < offsetof(struct dl_phdr_info, dlpi_subs) + sizeof info->dlpi_subs) return 1;
  c[0] = info->dlpi_adds;
  c[1] = info->dlpi_subs;
  return 1;
}

static struct hs_symbolizer *open_new(pid_t pid);
static int refresh(struct hs_symbolizer *s, pid_t pid);

struct hs_symbolizer *hs_sym_open_pid(pid_t pid) {
  if (pid != getpid() || pthread_mutex_trylock(&kept_lock)) return open_new(pid);
  unsigned long long c[2] = {0, 0};
  dl_iterate_phdr(load_counters, c);
  if (kept && (kept_pid != pid || ((kept_adds != c[0] || kept_subs != c[1]) && refresh(kept, pid)))) {
    struct hs_symbolizer *old = kept;
    kept = NULL;
    hs_sym_close(old);
  }
  kept_adds = c[0];
  kept_subs = c[1];
  if (!kept) {
    kept = open_new(pid);
    kept_pid = pid;
  }
  if (!kept) pthread_mutex_unlock(&kept_lock);
  return kept;
}

/* Tells libdwfl the process's modules, from its maps; 0 on success. */
static int report_modules(Dwfl *dwfl, pid_t pid) {
  /* Our own process through this thread's /proc entry: once the main
   * thread has ended (pthread_exit in main, the process running on in
   * others), /proc/PID/maps reads empty and every frame went unnamed. */
  if (pid == getpid()) pid = (pid_t)syscall(SYS_gettid);
  /* libdwfl reads /proc/PID/auxv too (for the vDSO), which a process that
   * dropped its privileges (setuid: no longer dumpable) cannot read; its
   * maps it can. After a chroot, the maps through the old root. */
  dwfl_report_begin(dwfl);
  int bad = hs_root_fd >= 0 || dwfl_linux_proc_report(dwfl, pid) != 0;
  if (bad) {
    dwfl_report_begin(dwfl);
    char maps[64];
    snprintf(maps, sizeof maps, "/proc/%d/maps", (int)pid);
    FILE *f = hs_fs_fopen_read(maps);
    bad = !f || dwfl_linux_proc_maps_report(dwfl, f) != 0;
    if (f) fclose(f);
  }
  if (!bad) dwfl_report_end(dwfl, NULL, NULL);
  return bad;
}

static void free_frames_cache(struct hs_symbolizer *s) {
  for (size_t i = 0; i < s->cap; i++)
    if (s->cache[i].frames) {
      for (int j = 0; j < s->cache[i].n; j++) {
        free((char *)s->cache[i].frames[j].function);
        free((char *)s->cache[i].frames[j].file);
      }
      free(s->cache[i].frames);
      s->cache[i].frames = NULL;
      s->cache[i].addr = 0;
      s->cache[i].n = 0;
    }
  s->count = 0;
}

static void free_index(struct sym_index *x) {
  for (size_t k = 0; x->ans && k <= x->nb; k++) free(x->ans[k]);
  free(x->ans);
  free(x->b);
  free(x->name);
}

/* The kept symbolizer, after the program loaded or unloaded a library:
 * libdwfl is told the modules again, and keeps every module reported again
 * at the same place as it was (dwfl_report_module hands back the existing
 * one, whose ELF and DWARF it has read), so only new modules are read. A
 * thread dump of a program that loads and unloads plugins used to start
 * from nothing each time: 70 ms a dump here, most of it inflating libc's
 * debug information again. What this file caches by address goes: an
 * address may now be another library's. The symbol indexes stay for the
 * modules that stayed. 0 on success; else the caller starts afresh. */
static int refresh(struct hs_symbolizer *s, pid_t pid) {
  if (report_modules(s->dwfl, pid)) return -1;
  free_frames_cache(s);
  free(s->fn);
  s->fn = NULL;
  s->fn_cap = s->fn_count = 0;
  size_t kept_idx = 0;
  for (size_t i = 0; i < s->nidx; i++) {
    struct sym_index *x = &s->idx[i];
    Dwarf_Addr lo = 0, hi = 0;
    Dwfl_Module *m = dwfl_addrmodule(s->dwfl, x->lo);
    const char *name = m == x->m ? dwfl_module_info(m, NULL, &lo, &hi, NULL, NULL, NULL, NULL) : NULL;
    if (name && x->name && !strcmp(name, x->name) && lo == x->lo && hi == x->hi)
      s->idx[kept_idx++] = *x;
    else
      free_index(x);
  }
  s->nidx = kept_idx;
  return 0;
}

static struct hs_symbolizer *open_new(pid_t pid) {
  struct hs_symbolizer *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->dwfl = dwfl_begin(&callbacks);
  if (!s->dwfl) {
    free(s);
    return NULL;
  }
  if (report_modules(s->dwfl, pid)) {
    dwfl_end(s->dwfl);
    free(s);
    return NULL;
  }
  const char *v = getenv("HEAPSCOPE_VERIFY_SYMBOLS");
  s->verify = v && *v == '1';
  s->cap = 1024;
  s->cache = calloc(s->cap, sizeof *s->cache);
  return s;
}

void hs_sym_close(struct hs_symbolizer *s) {
  if (!s) return;
  if (s->verify)
    fprintf(stderr, "heapscope: verify_symbols: %lu lookups from the index, %lu differ from libdwfl's\n",
            s->verify_lookups, s->verify_mismatches);
  if (s == kept) { /* kept for the next user */
    pthread_mutex_unlock(&kept_lock);
    return;
  }
  free_frames_cache(s);
  free(s->cache);
  free(s->fn);
  for (size_t i = 0; i < s->nidx; i++) free_index(&s->idx[i]);
  free(s->idx);
  dwfl_end(s->dwfl);
  free(s);
}

const char *hs_basename(const char *path) {
  if (!path) return NULL;
  const char *s = strrchr(path, '/');
  return s ? s + 1 : path;
}

static char *demangle(const char *name) {
  if (!name) return NULL;
  if (name[0] == '_' && name[1] == 'Z') {
    pthread_once(&demangler_once, find_demangler);
    int st = 0;
    char *d = cxa_demangle ? cxa_demangle(name, NULL, NULL, &st) : NULL;
    if (d && st == 0) return d;
    free(d);
  }
  return strdup(name);
}

static const char *die_name(Dwarf_Die *die) {
  Dwarf_Attribute a;
  const char *n = NULL;
  if (dwarf_attr_integrate(die, DW_AT_linkage_name, &a) || dwarf_attr_integrate(die, DW_AT_MIPS_linkage_name, &a))
    n = dwarf_formstring(&a);
  if (!n) n = dwarf_diename(die);
  return n;
}

/* C++: the demangled linkage name (qualified, with parameters). C: the ELF
 * symbol for a real function (the exported alias, as valgrind shows it:
 * "strdup", not "__GI___strdup"), else the DWARF name. */
static char *function_name(Dwarf_Die *die, const char *symname) {
  const char *n = die_name(die);
  if (n && n[0] == '_' && n[1] == 'Z') return demangle(n);
  if (symname) return demangle(symname);
  const char *plain = dwarf_diename(die);
  return plain ? strdup(plain) : (n ? strdup(n) : NULL);
}

static char *file_of(Dwarf_Die *cu, Dwarf_Word idx) {
  Dwarf_Files *files;
  size_t nfiles;
  if (dwarf_getsrcfiles(cu, &files, &nfiles) != 0 || idx >= nfiles) return NULL;
  const char *f = dwarf_filesrc(files, idx, NULL, NULL);
  return f ? strdup(f) : NULL;
}

/* The module's file. dwfl_module_info's mainfile is set only once libdw
 * has opened the ELF file, which the first symbol or line lookup in the
 * module does: asked before that, it was NULL, and the first frame looked up
 * in each module of a stripped program had no module in the report (nor
 * could a suppression match it there). The module's name, as
 * dwfl_linux_proc_report gave it from /proc/self/maps, is the same path. */
static const char *module_path(Dwfl_Module *m, Dwarf_Addr *lo, Dwarf_Addr *hi) {
  const char *mainfile = NULL;
  const char *name = dwfl_module_info(m, NULL, lo, hi, NULL, NULL, &mainfile, NULL);
  return mainfile ? mainfile : name;
}

static int cmp_uptr(const void *a, const void *b) {
  uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
  return x < y ? -1 : x > y;
}

static int add_b(uintptr_t **b, size_t *n, size_t *cap, uintptr_t v) {
  if (*n == *cap) {
    size_t nc = *cap ? *cap * 2 : 4096;
    uintptr_t *nb = realloc(*b, nc * sizeof *nb);
    if (!nb) return -1;
    *b = nb;
    *cap = nc;
  }
  (*b)[(*n)++] = v;
  return 0;
}

/* The sections of elf, in the process's addresses, as boundaries. */
static int add_sections(Elf *elf, GElf_Addr bias, uintptr_t **b, size_t *n, size_t *cap) {
  Elf_Scn *scn = NULL;
  while ((scn = elf_nextscn(elf, scn))) {
    GElf_Shdr mem, *sh = gelf_getshdr(scn, &mem);
    if (!sh) continue;
    if (add_b(b, n, cap, sh->sh_addr + bias) || add_b(b, n, cap, sh->sh_addr + sh->sh_size + bias)) return -1;
  }
  return 0;
}

static int build_index(struct sym_index *x) {
  int nsyms = dwfl_module_getsymtab(x->m);
  uintptr_t *b = NULL;
  size_t n = 0, cap = 0;
  Elf *elfs[4];
  GElf_Addr biases[4];
  int nelfs = 0;
  for (int i = 0; i < nsyms; i++) {
    GElf_Sym sym;
    GElf_Addr addr, bias = 0;
    GElf_Word shndx;
    Elf *elf = NULL;
    if (!dwfl_module_getsym_info(x->m, i, &sym, &addr, &shndx, &elf, &bias)) continue;
    if (add_b(&b, &n, &cap, addr) || add_b(&b, &n, &cap, addr + 1) || add_b(&b, &n, &cap, addr + sym.st_size))
      goto fail;
    int k = 0;
    while (k < nelfs && elfs[k] != elf) k++;
    if (k == nelfs) {
      if (nelfs == 4) goto fail; /* more symbol files than libdwfl has: do not guess */
      elfs[nelfs] = elf;
      biases[nelfs++] = bias;
    }
  }
  /* the module's own file too (its sections, even with no symbol there) */
  GElf_Addr mbias = 0;
  Elf *main_elf = dwfl_module_getelf(x->m, &mbias);
  if (main_elf && add_sections(main_elf, mbias, &b, &n, &cap)) goto fail;
  for (int k = 0; k < nelfs; k++)
    if (elfs[k] && elfs[k] != main_elf && add_sections(elfs[k], biases[k], &b, &n, &cap)) goto fail;
  qsort(b, n, sizeof *b, cmp_uptr);
  size_t u = 0;
  for (size_t i = 0; i < n; i++)
    if (!u || b[u - 1] != b[i]) b[u++] = b[i];
  x->ans = calloc(u + 1, sizeof *x->ans);
  if (!x->ans) goto fail;
  x->b = b;
  x->nb = u;
  return 0;
fail:
  free(b);
  x->failed = 1;
  return -1;
}

/* dwfl_module_addrinfo's name and symbol for addr, through the index. */
static const char *addrinfo(struct hs_symbolizer *s, Dwfl_Module *m, uintptr_t addr, GElf_Off *off, GElf_Sym *sym) {
  struct sym_index *x = NULL;
  for (size_t i = 0; i < s->nidx && !x; i++)
    if (s->idx[i].m == m) x = &s->idx[i];
  if (!x) {
    if (s->nidx == s->idx_cap) {
      size_t nc = s->idx_cap ? s->idx_cap * 2 : 16;
      struct sym_index *ni = realloc(s->idx, nc * sizeof *ni);
      if (!ni) return dwfl_module_addrinfo(m, addr, off, sym, NULL, NULL, NULL);
      s->idx = ni;
      s->idx_cap = nc;
    }
    x = &s->idx[s->nidx++];
    memset(x, 0, sizeof *x);
    x->m = m;
    const char *name = dwfl_module_info(m, NULL, &x->lo, &x->hi, NULL, NULL, NULL, NULL);
    x->name = name ? strdup(name) : NULL;
  }
  if (x->failed || (!x->ans && (++x->asked < SYM_INDEX_AFTER || build_index(x))))
    return dwfl_module_addrinfo(m, addr, off, sym, NULL, NULL, NULL);
  /* the interval: how many boundaries are at or below addr */
  size_t lo = 0, hi = x->nb;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (x->b[mid] <= addr) lo = mid + 1;
    else hi = mid;
  }
  struct sym_answer *a = x->ans[lo];
  if (!a) {
    a = calloc(1, sizeof *a);
    if (!a) return dwfl_module_addrinfo(m, addr, off, sym, NULL, NULL, NULL);
    GElf_Off o = 0;
    a->name = dwfl_module_addrinfo(m, addr, &o, &a->sym, NULL, NULL, NULL);
    a->value = addr - o;
    x->ans[lo] = a;
  } else if (s->verify) {
    GElf_Off o = 0;
    GElf_Sym vs;
    const char *v = dwfl_module_addrinfo(m, addr, &o, &vs, NULL, NULL, NULL);
    s->verify_lookups++;
    if (v != a->name || (v && (addr - o != a->value || vs.st_size != a->sym.st_size || vs.st_info != a->sym.st_info)))
      s->verify_mismatches++;
  }
  if (a->name) {
    *off = addr - a->value;
    *sym = a->sym;
  }
  return a->name;
}

static int resolve(struct hs_symbolizer *s, uintptr_t addr, struct hs_frame **out) {
  struct hs_frame *fr = calloc(16, sizeof *fr);
  int n = 0, cap = 16;
  if (!fr) return 0;
  Dwfl_Module *m = dwfl_addrmodule(s->dwfl, addr);
  const char *modname = NULL;
  if (m) modname = module_path(m, NULL, NULL);
  const char *symname = NULL;
  if (m) {
    GElf_Off off;
    GElf_Sym sym;
    symname = addrinfo(s, m, addr, &off, &sym);
  }
  /* Line of the innermost frame. */
  char *file = NULL;
  int line = 0;
  Dwfl_Line *ln = m ? dwfl_module_getsrc(m, addr) : NULL;
  if (ln) {
    const char *f = dwfl_lineinfo(ln, NULL, &line, NULL, NULL, NULL);
    if (f) file = strdup(f);
  }
  Dwarf_Addr bias = 0;
  Dwarf_Die *cu = m ? dwfl_module_addrdie(m, addr, &bias) : NULL;
  Dwarf_Die *scopes = NULL;
  int ns = cu ? dwarf_getscopes(cu, addr - bias, &scopes) : 0;
  /* Walk outwards: each inlined instance names its caller's file and line;
   * dwarf_getscopes_die gives the concrete scopes containing an instance. */
  int i = 0;
  while (ns > 0 && n < 64) {
    while (i < ns && dwarf_tag(&scopes[i]) != DW_TAG_subprogram &&
           dwarf_tag(&scopes[i]) != DW_TAG_inlined_subroutine)
      i++;
    if (i >= ns) break;
    if (n == cap) {
      struct hs_frame *nf = realloc(fr, (size_t)(cap *= 2) * sizeof *fr);
      if (!nf) break;
      fr = nf;
    }
    struct hs_frame *f = &fr[n++];
    memset(f, 0, sizeof *f);
    f->addr = addr;
    f->module = modname;
    f->file = file;
    f->line = line;
    file = NULL;
    if (dwarf_tag(&scopes[i]) != DW_TAG_inlined_subroutine) {
      f->function = function_name(&scopes[i], symname);
      break;
    }
    f->function = function_name(&scopes[i], NULL);
    f->inlined = 1;
    Dwarf_Attribute a;
    Dwarf_Word w = 0;
    if (dwarf_attr(&scopes[i], DW_AT_call_file, &a) && dwarf_formudata(&a, &w) == 0) file = file_of(cu, w);
    line = 0;
    if (dwarf_attr(&scopes[i], DW_AT_call_line, &a) && dwarf_formudata(&a, &w) == 0) line = (int)w;
    Dwarf_Die *outer = NULL;
    int no = dwarf_getscopes_die(&scopes[i], &outer);
    free(scopes);
    scopes = outer;
    ns = no;
    i = 1; /* outer[0] is the instance itself */
  }
  free(scopes);
  if (n == 0) {
    fr[0].addr = addr;
    fr[0].module = modname;
    fr[0].function = demangle(symname);
    fr[0].file = file;
    fr[0].line = line;
    file = NULL;
    n = 1;
  } else if (!fr[n - 1].function && symname) {
    fr[n - 1].function = demangle(symname);
  }
  free(file);
  *out = fr;
  return n;
}

int hs_sym_lookup(struct hs_symbolizer *s, uintptr_t addr, const struct hs_frame **out) {
  if (!s) { /* no symbolizer (no memory, no maps): the address alone, valid until the next lookup */
    static __thread struct hs_frame raw;
    raw = (struct hs_frame){.addr = addr};
    *out = &raw;
    return 1;
  }
  if (s->count * 2 >= s->cap) {
    size_t ncap = s->cap * 2;
    struct cache_ent *nc = calloc(ncap, sizeof *nc);
    if (nc) {
      for (size_t i = 0; i < s->cap; i++)
        if (s->cache[i].frames) {
          size_t h = (s->cache[i].addr * 0x9E3779B97F4A7C15ull >> 16) & (ncap - 1);
          while (nc[h].frames) h = (h + 1) & (ncap - 1);
          nc[h] = s->cache[i];
        }
      free(s->cache);
      s->cache = nc;
      s->cap = ncap;
    }
  }
  size_t h = (addr * 0x9E3779B97F4A7C15ull >> 16) & (s->cap - 1);
  while (s->cache[h].frames && s->cache[h].addr != addr) h = (h + 1) & (s->cap - 1);
  if (!s->cache[h].frames) {
    struct hs_frame *f = NULL;
    int n = resolve(s, addr, &f);
    if (!n) {
      static struct hs_frame unknown;
      unknown.addr = addr;
      *out = &unknown;
      return 1;
    }
    s->cache[h].addr = addr;
    s->cache[h].frames = f;
    s->cache[h].n = n;
    s->count++;
  }
  *out = s->cache[h].frames;
  return s->cache[h].n;
}

int hs_sym_data(struct hs_symbolizer *s, uintptr_t addr, const char **symbol, const char **module) {
  *symbol = NULL;
  *module = NULL;
  Dwfl_Module *m = dwfl_addrmodule(s->dwfl, addr);
  if (!m) return -1;
  *module = module_path(m, NULL, NULL);
  GElf_Off off;
  GElf_Sym sym;
  const char *n = addrinfo(s, m, addr, &off, &sym);
  /* a data object that covers addr (not the nearest function before it) */
  if (n && GELF_ST_TYPE(sym.st_info) == STT_OBJECT && (off < sym.st_size || sym.st_size == 0)) *symbol = n;
  return 0;
}

static int function_uncached(struct hs_symbolizer *s, uintptr_t addr, const char **function, const char **module) {
  *function = *module = NULL;
  Dwfl_Module *m = dwfl_addrmodule(s->dwfl, addr);
  if (!m) return -1;
  GElf_Off off;
  GElf_Sym sym;
  *function = addrinfo(s, m, addr, &off, &sym);
  *module = module_path(m, NULL, NULL);
  return 0;
}

static inline size_t fn_slot(uintptr_t addr, size_t cap) { return (addr * 0x9E3779B97F4A7C15ull >> 16) & (cap - 1); }

/* The names point into libdwfl's data, which lives as long as s. */
int hs_sym_function(struct hs_symbolizer *s, uintptr_t addr, const char **function, const char **module) {
  if (!addr) return function_uncached(s, addr, function, module);
  if (s->fn_count * 2 >= s->fn_cap) {
    size_t ncap = s->fn_cap ? s->fn_cap * 2 : 1024;
    struct fn_ent *nf = calloc(ncap, sizeof *nf);
    if (!nf) return function_uncached(s, addr, function, module);
    for (size_t i = 0; i < s->fn_cap; i++)
      if (s->fn[i].addr) {
        size_t h = fn_slot(s->fn[i].addr, ncap);
        while (nf[h].addr) h = (h + 1) & (ncap - 1);
        nf[h] = s->fn[i];
      }
    free(s->fn);
    s->fn = nf;
    s->fn_cap = ncap;
  }
  size_t h = fn_slot(addr, s->fn_cap);
  while (s->fn[h].addr && s->fn[h].addr != addr) h = (h + 1) & (s->fn_cap - 1);
  struct fn_ent *e = &s->fn[h];
  if (!e->addr) {
    e->rc = function_uncached(s, addr, &e->function, &e->module);
    e->addr = addr;
    s->fn_count++;
  }
  *function = e->function;
  *module = e->module;
  return e->rc;
}

int hs_sym_module(struct hs_symbolizer *s, uintptr_t addr, const char **path, uintptr_t *start, uintptr_t *end,
                  const char **build_id) {
  Dwfl_Module *m = dwfl_addrmodule(s->dwfl, addr);
  if (!m) return -1;
  Dwarf_Addr lo, hi;
  *path = module_path(m, &lo, &hi);
  *start = (uintptr_t)lo;
  *end = (uintptr_t)hi;
  *build_id = NULL;
  const unsigned char *bits;
  GElf_Addr vaddr;
  int n = dwfl_module_build_id(m, &bits, &vaddr);
  if (n > 0 && n <= 64) {
    static __thread char hex[129];
    for (int i = 0; i < n; i++) snprintf(hex + 2 * i, 3, "%02x", bits[i]);
    *build_id = hex;
  }
  return 0;
}
