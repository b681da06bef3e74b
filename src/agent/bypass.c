/* Libraries that call glibc's allocator directly, past the agent. A library
 * dlopen'ed with RTLD_DEEPBIND looks its symbols up in its own dependencies
 * first, so its malloc and free are libc's, not the preloaded agent's: its
 * allocations are never tracked (a leak there is missed), and where it
 * frees a block the agent handed out, the table keeps a block that no
 * longer exists. LeakSanitizer refuses such programs outright; heaptrack
 * drops the flag, which changes how the library binds. The agent changes
 * nothing and says so: at exit, each module whose resolved GOT entry for
 * an allocator function holds glibc's function gets a warning. (Entries
 * not yet bound lazily still point into the module's PLT: those say
 * nothing.) */
#define _GNU_SOURCE
#include <elf.h>
#include <link.h>
#include <string.h>

#include "hs.h"

static const char *const watched[] = {"malloc", "free", "calloc", "realloc", "posix_memalign", "aligned_alloc",
                                      "memalign"};

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

/* The watched function whose GOT entry r names and that resolves to glibc,
 * or NULL. */
static const char *bypassing(const struct dl_phdr_info *info, const ElfW(Rela) *r, const ElfW(Sym) *symtab,
                             const char *strtab) {
  unsigned type = ELF64_R_TYPE(r->r_info);
  if (type != R_X86_64_JUMP_SLOT && type != R_X86_64_GLOB_DAT) return NULL;
  const char *name = strtab + symtab[ELF64_R_SYM(r->r_info)].st_name;
  for (size_t i = 0; i < sizeof watched / sizeof watched[0]; i++) {
    if (strcmp(name, watched[i])) continue;
    uintptr_t v = *(const uintptr_t *)(info->dlpi_addr + r->r_offset);
    uintptr_t libc = 0;
    if (i == 0) libc = (uintptr_t)hs_real.malloc;
    if (i == 1) libc = (uintptr_t)hs_real.free;
    if (i == 2) libc = (uintptr_t)hs_real.calloc;
    if (i == 3) libc = (uintptr_t)hs_real.realloc;
    if (i == 4) libc = (uintptr_t)hs_real.posix_memalign;
    if (i == 5) libc = (uintptr_t)hs_real.aligned_alloc;
    if (i == 6) libc = (uintptr_t)hs_real.memalign;
    return libc && v == libc ? name : NULL;
  }
  return NULL;
}

static int scan_module(struct dl_phdr_info *info, size_t size, void *arg) {
  (void)size;
  (void)arg;
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
  for (int k = 0; k < 2; k++)
    for (size_t j = 0; rel[k] && j < relsz[k] / sizeof(ElfW(Rela)); j++) {
      const char *fn = bypassing(info, &rel[k][j], symtab, strtab);
      if (fn) {
        hs_warn("%s calls glibc's %s directly, not through heapscope (loaded with RTLD_DEEPBIND?): its "
                "allocations are not tracked, and a block of the program's that it frees stays listed",
                info->dlpi_name, fn);
        return 0; /* one warning a module */
      }
    }
  return 0;
}

void hs_bypass_warn(void) {
  if (!hs_real.malloc) return;
  hs_loader_depth++;
  dl_iterate_phdr(scan_module, NULL);
  hs_loader_depth--;
}
