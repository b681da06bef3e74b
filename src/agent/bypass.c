/* Libraries that call glibc's allocator directly, past the agent. A library
 * dlopen'ed with RTLD_DEEPBIND looks its symbols up in its own dependencies
 * first, so its malloc and free are libc's, not the preloaded agent's: its
 * allocations are never tracked (a leak there is missed), and where it
 * frees a block the agent handed out, the table keeps a block that no
 * longer exists. LeakSanitizer refuses such programs outright; heaptrack
 * drops the flag, which changes how the library binds.
 *
 * The agent leaves the binding alone and rewrites only the library's GOT
 * entries that hold glibc's allocator functions, to the agent's hooks,
 * which forward to the very same functions: the library then allocates
 * through the agent as every other module does, and what else it binds to
 * is unchanged. The moment: the first free() of a block the table does not
 * know after a library was loaded (such a library's blocks reach the
 * program, which frees them), without wrapping dlopen (a wrapper would be
 * the caller whose RUNPATH and $ORIGIN the loader uses). What went past the
 * agent before is said at exit, as is any module left bypassing it.
 * (Entries not yet bound lazily still point into the module's PLT; bound
 * later, they get glibc's functions: a module left so is named at exit.) */
#define _GNU_SOURCE
#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <malloc.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "hs.h"

/* The allocator functions watched: name, glibc's (in hs_real), the hook. */
struct watched {
  const char *name;
  size_t real; /* offset in struct hs_real */
  void (*hook)(void);
};
#define W(f) {#f, offsetof(struct hs_real, f), (void (*)(void))f}
static const struct watched watched[] = {W(malloc),         W(free),          W(calloc), W(realloc),
                                         W(posix_memalign), W(aligned_alloc), W(memalign)};
#undef W

static uintptr_t real_of(const struct watched *w) { return *(const uintptr_t *)((const char *)&hs_real + w->real); }

static int is_runtime(const char *name) {
  const char *b = name ? strrchr(name, '/') : NULL;
  b = b ? b + 1 : name;
  /* glibc's own objects bind to glibc by design; the agent is the agent */
  return !b || !strncmp(b, "libc.so", 7) || !strncmp(b, "ld-linux", 8) || !strncmp(b, "libheapscope", 12);
}

/* A dynamic entry's address: glibc relocates them in place on x86-64, except
 * where .dynamic is read-only (the vDSO's). */
static uintptr_t dyn_addr(const struct dl_phdr_info *info, uintptr_t p) {
  return p < info->dlpi_addr ? p + info->dlpi_addr : p;
}

/* The index in watched[] of the function whose GOT entry r holds glibc's
 * definition of, or -1. */
static int bypassing(const struct dl_phdr_info *info, const ElfW(Rela) *r, const ElfW(Sym) *symtab,
                     const char *strtab) {
  unsigned type = ELF64_R_TYPE(r->r_info);
  if (type != R_X86_64_JUMP_SLOT && type != R_X86_64_GLOB_DAT) return -1;
  const char *name = strtab + symtab[ELF64_R_SYM(r->r_info)].st_name;
  for (size_t i = 0; i < sizeof watched / sizeof watched[0]; i++)
    if (!strcmp(name, watched[i].name)) {
      uintptr_t v = __atomic_load_n((const uintptr_t *)(info->dlpi_addr + r->r_offset), __ATOMIC_RELAXED);
      return real_of(&watched[i]) && v == real_of(&watched[i]) ? (int)i : -1;
    }
  return -1;
}

/* Points the GOT entry at the hook. A read-only page is one the loader
 * protected after relocating the module (RELRO): made writable for the
 * store and read-only again. A writable one is written as it is: lazy
 * binding's .got.plt, or a module another thread's dlopen is still
 * relocating (it is already in the list dl_iterate_phdr walks); making
 * that read-only would fault the loader's next relocation in the page. */
static int patch(uintptr_t slot, uintptr_t to) {
  int w;
  if (hs_mapping_at(slot, NULL, &w)) return -1;
  const uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
  void *page = (void *)(slot & ~(pg - 1));
  if (!w && mprotect(page, pg, PROT_READ | PROT_WRITE)) return -1;
  __atomic_store_n((uintptr_t *)slot, to, __ATOMIC_RELEASE);
  if (!w) mprotect(page, pg, PROT_READ);
  return 0;
}

#define MAX_NOTED 8
static char noted[MAX_NOTED][128]; /* modules patched, for the exit warning */
static int nnoted;

struct scan {
  int fix; /* rewrite the entries (else: warn) */
};

static int scan_module(struct dl_phdr_info *info, size_t size, void *arg) {
  (void)size;
  struct scan *sc = arg;
  if (is_runtime(info->dlpi_name) || !info->dlpi_name || !strncmp(info->dlpi_name, "linux-vdso", 10)) return 0;
  const ElfW(Dyn) *dyn = NULL;
  for (int i = 0; i < info->dlpi_phnum; i++)
    if (info->dlpi_phdr[i].p_type == PT_DYNAMIC) dyn = (const ElfW(Dyn) *)(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr);
  if (!dyn) return 0;
  const ElfW(Sym) *symtab = NULL;
  const char *strtab = NULL;
  const ElfW(Rela) *rel[2] = {NULL, NULL};
  size_t relsz[2] = {0, 0};
  for (const ElfW(Dyn) *d = dyn; d->d_tag != DT_NULL; d++) {
    if (d->d_tag == DT_SYMTAB) symtab = (const ElfW(Sym) *)dyn_addr(info, d->d_un.d_ptr);
    if (d->d_tag == DT_STRTAB) strtab = (const char *)dyn_addr(info, d->d_un.d_ptr);
    if (d->d_tag == DT_JMPREL) rel[0] = (const ElfW(Rela) *)dyn_addr(info, d->d_un.d_ptr);
    if (d->d_tag == DT_PLTRELSZ) relsz[0] = d->d_un.d_val;
    if (d->d_tag == DT_RELA) rel[1] = (const ElfW(Rela) *)dyn_addr(info, d->d_un.d_ptr);
    if (d->d_tag == DT_RELASZ) relsz[1] = d->d_un.d_val;
  }
  if (!symtab || !strtab) return 0;
  int fixed = 0;
  for (int k = 0; k < 2; k++)
    for (size_t j = 0; rel[k] && j < relsz[k] / sizeof(ElfW(Rela)); j++) {
      int fn = bypassing(info, &rel[k][j], symtab, strtab);
      if (fn < 0) continue;
      const uintptr_t slot = info->dlpi_addr + rel[k][j].r_offset;
      if (sc->fix) {
        if (!patch(slot, (uintptr_t)watched[fn].hook)) fixed = 1;
        continue;
      }
      hs_warn("%s calls glibc's %s directly, not through heapscope (loaded with RTLD_DEEPBIND?): its "
              "allocations are not tracked, and a block of the program's that it frees stays listed",
              info->dlpi_name, watched[fn].name);
      return 0; /* one warning a module */
    }
  if (fixed && nnoted < MAX_NOTED) hs_snprintf(noted[nnoted++], sizeof noted[0], "%s", info->dlpi_name);
  return 0;
}

static int read_adds(struct dl_phdr_info *info, size_t size, void *arg) {
  if (size >= offsetof(struct dl_phdr_info, dlpi_adds) + sizeof info->dlpi_adds)
    *(unsigned long long *)arg = info->dlpi_adds;
  return 1;
}

/* A scan for each set of loaded libraries (the loader's count of objects
 * added), at two moments: free() met a block the table does not know (a
 * library allocates past the agent: the program frees one of its blocks),
 * and every 8192 recorded allocations of a thread (hs_bypass_poll), for a
 * plugin whose blocks never reach the program: its own leaks went
 * untracked, so unreported (tests/progs/deepbind.c "own"). Not while the
 * loader's list is being changed (a malloc of the loader's own, inside
 * dlopen): the next moment will do. */
static void check_loaded(void) {
  static unsigned long long seen;
  static atomic_int busy;
  if (!hs_real.malloc || hs_in_agent || hs_loader_depth || _r_debug.r_state != RT_CONSISTENT || !hs_loader_usable() ||
      atomic_exchange(&busy, 1))
    return;
  hs_in_agent = 1;
  hs_loader_depth++;
  unsigned long long adds = 0;
  dl_iterate_phdr(read_adds, &adds);
  if (adds != seen) {
    seen = adds;
    struct scan sc = {.fix = 1};
    dl_iterate_phdr(scan_module, &sc);
  }
  hs_loader_depth--;
  hs_in_agent = 0;
  atomic_store(&busy, 0);
}
void hs_bypass_unknown_free(void) { check_loaded(); }
void hs_bypass_poll(void) { check_loaded(); }

void hs_bypass_warn(void) {
  if (!hs_real.malloc || !hs_loader_usable()) return;
  for (int i = 0; i < nnoted; i++)
    hs_warn("%s calls glibc's allocator past heapscope (loaded with RTLD_DEEPBIND?): tracked from the moment "
            "heapscope saw it (a block of its the program freed, or the program's next 8192 allocations), not before",
            noted[i]);
  struct scan sc = {.fix = 0};
  hs_loader_depth++;
  dl_iterate_phdr(scan_module, &sc);
  hs_loader_depth--;
}
