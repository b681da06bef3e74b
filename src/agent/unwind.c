/* Stack capture. libunwind's unw_backtrace reads .eh_frame, so stacks are
 * complete in binaries built without frame pointers (as Debian's are). The
 * agent's own frames (the hook and its callers inside libheapscope.so) are
 * dropped so that frame 0 is the program's call to malloc/new. */
#define UNW_LOCAL_ONLY
#define _GNU_SOURCE
#include <libunwind.h>
#include <link.h>
#include <string.h>

#include "hs.h"

uintptr_t hs_self_text_start, hs_self_text_end;

static int find_self(struct dl_phdr_info *info, size_t size, void *arg) {
  (void)size;
  uintptr_t probe = (uintptr_t)arg;
  int mine = 0;
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type == PT_LOAD && probe >= info->dlpi_addr + ph->p_vaddr &&
        probe < info->dlpi_addr + ph->p_vaddr + ph->p_memsz)
      mine = 1;
  }
  if (!mine) return 0;
  /* The agent's own data and bss hold pointers into the heap (the leak
   * checker's state among them): never roots. */
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type == PT_LOAD && (ph->p_flags & PF_W))
      hs_register_own_range(info->dlpi_addr + ph->p_vaddr, info->dlpi_addr + ph->p_vaddr + ph->p_memsz);
  }
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X)) continue;
    uintptr_t s = info->dlpi_addr + ph->p_vaddr, e = s + ph->p_memsz;
    if (probe >= s && probe < e) {
      hs_self_text_start = s;
      hs_self_text_end = e;
      return 1;
    }
  }
  return 0;
}

void hs_unwind_init(void) {
  dl_iterate_phdr(find_self, (void *)(uintptr_t)&hs_unwind_init);
  /* Prime libunwind's caches on this thread before any hook needs it. */
  uintptr_t f[4];
  hs_unwind(f, 4);
}

unsigned hs_unwind(uintptr_t *frames, unsigned max) {
  void *buf[HS_MAX_FRAMES + 16];
  unsigned want = max + 8 > HS_MAX_FRAMES + 16 ? HS_MAX_FRAMES + 16 : max + 8;
  int n = unw_backtrace(buf, (int)want);
  if (n <= 0) return 0;
  int skip = 0;
  while (skip < n && (uintptr_t)buf[skip] >= hs_self_text_start &&
         (uintptr_t)buf[skip] < hs_self_text_end)
    skip++;
  unsigned out = 0;
  for (int i = skip; i < n && out < max; i++) frames[out++] = (uintptr_t)buf[i];
  return out;
}
