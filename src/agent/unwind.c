/* Stack capture. The fast path is a frame walk that needs no frame
 * pointers: for every code address it caches the unwind rule that the
 * .eh_frame CFI gives there (where the CFA is, where the return address and
 * the caller's rbp are saved), computed once with libdw. A hit costs a few
 * loads per frame. Every read is bounded by the thread's stack, and any
 * frame the cache cannot describe (signal trampolines, CFI expressions, an
 * unknown module) sends the whole capture to libunwind's unw_backtrace. The
 * agent's own frames are dropped so that frame 0 is the program's call to
 * malloc/new. */
#define _GNU_SOURCE
#define UNW_LOCAL_ONLY
#include <dlfcn.h>
#include <dwarf.h>
#include <elfutils/libdw.h>
#include <fcntl.h>
#include <libelf.h>
#include <libunwind.h>
#include <link.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#include "hs.h"

uintptr_t hs_self_text_start, hs_self_text_end;
int hs_fast_unwind = 1;
HS_TLS int hs_loader_depth;
#define IN_LOADER(call) (hs_loader_depth++, (call), hs_loader_depth--)

/* ---- rules ----------------------------------------------------------- */
/* A rule, packed in 64 bits: hs.h */
#define R_BASE_RBP HS_RULE_BASE_RBP
#define R_RBP_SAME HS_RULE_RBP_SAME
#define R_END HS_RULE_END
#define R_VALID HS_RULE_VALID
#define R_NONE HS_RULE_NONE /* cached: no rule here (never 0, which means "not cached") */

struct slot {
  atomic_uintptr_t pc;
  atomic_ulong rule;
};
/* The shared rule cache: open addressing, at most half full, doubled under
 * miss_lock. A new table is filled and published; a reader still in an old
 * one finds what was there, or misses and looks again under the lock. Old
 * tables are never unmapped (together less than the last). A program walks
 * a few thousand return addresses (cc1: 4,300), so the table stays small
 * enough to stay in cache; a fixed table sized for the largest programs
 * (4 MiB) cost a cache miss a lookup and megabytes of touched pages. */
struct rules {
  size_t mask;
  struct rules *older; /* the table this one replaced: emptied by a flush too */
  struct slot s[];
};
#define RULES_MIN_BITS 10
static _Atomic(struct rules *) cache;
static size_t cache_used; /* under miss_lock */
static hs_lock_t miss_lock;

struct module {
  uintptr_t base;
  uintptr_t lo, hi; /* its PT_LOAD segments: the rules cached for it lie here */
  char name[256];
  Elf *elf;
  Dwarf_CFI *cfi;
};
#define MAX_MODULES 512
static struct module modules[MAX_MODULES];
static int nmodules;

struct find_arg {
  uintptr_t pc;
  uintptr_t base, lo, hi;
  char name[256];
  int found;
};

static void load_extent(const struct dl_phdr_info *info, uintptr_t *lo, uintptr_t *hi) {
  *lo = UINTPTR_MAX;
  *hi = 0;
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type != PT_LOAD) continue;
    uintptr_t s = info->dlpi_addr + ph->p_vaddr;
    if (s < *lo) *lo = s;
    if (s + ph->p_memsz > *hi) *hi = s + ph->p_memsz;
  }
}

/* The file to read a module's CFI from; the executable has no name in the
 * list. */
static const char *module_name(const struct dl_phdr_info *info) {
  return info->dlpi_name && *info->dlpi_name ? info->dlpi_name : "/proc/thread-self/exe";
}

/* Whether one of the module's loaded segments holds pc. */
static int holds_pc(const struct dl_phdr_info *info, uintptr_t pc) {
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    uintptr_t s = info->dlpi_addr + ph->p_vaddr;
    if (ph->p_type == PT_LOAD && pc >= s && pc < s + ph->p_memsz) return 1;
  }
  return 0;
}

static int find_module(struct dl_phdr_info *info, size_t size, void *p) {
  (void)size;
  struct find_arg *a = p;
  if (!holds_pc(info, a->pc)) return 0;
  a->base = info->dlpi_addr;
  load_extent(info, &a->lo, &a->hi);
  hs_snprintf(a->name, sizeof a->name, "%s", module_name(info));
  a->found = 1;
  return 1;
}

/* libdw is loaded on the first cache miss, not at start-up: a process that
 * allocates little (most processes of a shell script) never maps it. */
static struct {
  unsigned (*elf_version)(unsigned);
  Elf *(*elf_begin)(int, Elf_Cmd, Elf *);
  Dwarf_CFI *(*getcfi_elf)(Elf *);
  int (*cfi_addrframe)(Dwarf_CFI *, Dwarf_Addr, Dwarf_Frame **);
  int (*frame_cfa)(Dwarf_Frame *, Dwarf_Op **, size_t *);
  int (*frame_register)(Dwarf_Frame *, int, Dwarf_Op *, Dwarf_Op **, size_t *);
  int (*cfi_end)(Dwarf_CFI *);
  int (*elf_end)(Elf *);
  int (*dwarf_errno)(void);
  int (*elf_errno)(void);
  int state; /* 0 not tried, 1 loaded, -1 unavailable (atomic: set under dw_load_lock) */
} dw;

static int load_libdw(void) {
  if (dw.state) return dw.state > 0;
  if (!hs_loader_may_open()) return 0; /* a forked child: threads.c */
  __atomic_store_n(&dw.state, -1, __ATOMIC_RELAXED);
  void *e, *d;
  IN_LOADER(e = dlopen("libelf.so.1", RTLD_NOW | RTLD_LOCAL));
  IN_LOADER(d = dlopen("libdw.so.1", RTLD_NOW | RTLD_LOCAL));
  if (!e || !d) return 0;
  dw.elf_version = (unsigned (*)(unsigned))dlsym(e, "elf_version");
  dw.elf_begin = (Elf * (*)(int, Elf_Cmd, Elf *)) dlsym(e, "elf_begin");
  dw.getcfi_elf = (Dwarf_CFI * (*)(Elf *)) dlsym(d, "dwarf_getcfi_elf");
  dw.cfi_addrframe = (int (*)(Dwarf_CFI *, Dwarf_Addr, Dwarf_Frame **))dlsym(d, "dwarf_cfi_addrframe");
  dw.frame_cfa = (int (*)(Dwarf_Frame *, Dwarf_Op **, size_t *))dlsym(d, "dwarf_frame_cfa");
  dw.frame_register = (int (*)(Dwarf_Frame *, int, Dwarf_Op *, Dwarf_Op **, size_t *))dlsym(d, "dwarf_frame_register");
  dw.cfi_end = (int (*)(Dwarf_CFI *))dlsym(d, "dwarf_cfi_end");
  dw.elf_end = (int (*)(Elf *))dlsym(e, "elf_end");
  dw.dwarf_errno = (int (*)(void))dlsym(d, "dwarf_errno");
  dw.elf_errno = (int (*)(void))dlsym(e, "elf_errno");
  if (!dw.elf_version || !dw.elf_begin || !dw.getcfi_elf || !dw.cfi_addrframe || !dw.frame_cfa || !dw.frame_register ||
      !dw.cfi_end || !dw.elf_end || !dw.dwarf_errno || !dw.elf_errno)
    return 0;
  dw.elf_version(EV_CURRENT);
  __atomic_store_n(&dw.state, 1, __ATOMIC_RELEASE);
  return 1;
}

/* libdw is loaded, and this thread's blocks of libdw's and libelf's
 * thread-local variables (each keeps its last error in one) exist, before
 * this thread takes miss_lock: never under it. glibc allocates a dlopened
 * module's TLS for a thread at the thread's first access, under the
 * dynamic loader's lock, and dlopen and dlsym take that lock too; a thread
 * inside the program's dlopen holds it while its malloc's capture waits
 * for miss_lock. A thread dump under miss_lock that reached libdw's first
 * error in its thread (tests/progs/dumprace.c, 1 run in a few hundred)
 * waited for the loader's lock, and the loading thread for miss_lock. 1
 * when this thread may call libdw, 0 when libdw cannot be had here (a
 * forked child's loader, no libdw). Never waits for another thread's load
 * of libdw (that thread may be waiting for the loader's lock): -1, and the
 * rule is looked for again at a later miss. */
static hs_lock_t dw_load_lock;
static HS_TLS int dw_tls_ready;
static int dw_prepare(void) {
  int st = __atomic_load_n(&dw.state, __ATOMIC_ACQUIRE);
  if (!st) {
    if (!hs_trylock(&dw_load_lock)) return -1;
    int saved = hs_in_agent;
    hs_in_agent = 1; /* dlopen allocates */
    load_libdw();
    hs_in_agent = saved;
    hs_unlock(&dw_load_lock);
    st = __atomic_load_n(&dw.state, __ATOMIC_ACQUIRE);
  }
  if (st <= 0) return 0;
  if (!dw_tls_ready) {
    dw.dwarf_errno();
    dw.elf_errno();
    dw_tls_ready = 1;
  }
  return 1;
}

/* Before a chroot: libdw cannot be loaded from inside the new root. */
void hs_unwind_before_chroot(void) {
  if (hs_loader_usable()) dw_prepare();
}

static struct module *module_for(uintptr_t pc) {
  struct find_arg a = {.pc = pc};
  IN_LOADER(dl_iterate_phdr(find_module, &a));
  if (!a.found || !strchr(a.name, '/')) return NULL; /* the vdso has no file */
  for (int i = 0; i < nmodules; i++)
    if (modules[i].base == a.base && !strcmp(modules[i].name, a.name)) return modules[i].cfi ? &modules[i] : NULL;
  if (nmodules == MAX_MODULES) return NULL;
  struct module *m = &modules[nmodules++];
  m->base = a.base;
  m->lo = a.lo;
  m->hi = a.hi;
  memcpy(m->name, a.name, sizeof m->name);
  int fd = hs_open_path(a.name, O_RDONLY | O_CLOEXEC); /* chroot.c */
  if (fd < 0) return NULL;
  /* ELF_C_READ_MMAP keeps the file mapped; the fd can go. */
  m->elf = dw.elf_begin(fd, ELF_C_READ_MMAP, NULL);
  close(fd);
  m->cfi = m->elf ? dw.getcfi_elf(m->elf) : NULL;
  return m->cfi ? m : NULL;
}

static int is_cfa_plus(const Dwarf_Op *ops, size_t n, int64_t *off) {
  if (n != 2 || ops[0].atom != DW_OP_call_frame_cfa) return 0;
  if (ops[1].atom == DW_OP_plus_uconst) {
    *off = (int64_t)ops[1].number;
    return 1;
  }
  return 0;
}

static uint64_t libdw_rule(uintptr_t pc, int *read);

/* The rule at pc from .eh_frame in memory (ehframe.c), given the module's
 * program headers: HS_EH_*. The bounds of every read are the loaded
 * segment that holds .eh_frame_hdr. */
static int eh_rule_phdrs(uintptr_t pc, uintptr_t load_bias, const ElfW(Phdr) *ph, int phnum, uintptr_t hdr,
                         uint64_t *rule) {
  for (int i = 0; hdr && i < phnum; i++) {
    const uintptr_t s = load_bias + ph[i].p_vaddr;
    if (ph[i].p_type == PT_LOAD && (ph[i].p_flags & PF_R) && hdr >= s && hdr < s + ph[i].p_filesz)
      return hs_eh_rule(pc, hdr, s, s + ph[i].p_filesz, rule);
  }
  return HS_EH_UNKNOWN;
}

/* A capture's own return addresses: the module is found with
 * _dl_find_object, which takes no lock. dl_iterate_phdr takes the loader's,
 * and a child forked while another thread's dlopen held it waited for it
 * forever at its first capture (tests/threads.sh, forkrace). A return
 * address of this thread's live stack lies in a module the program cannot
 * unload while the frame is live. The program headers are read from the
 * ELF header at the start of the first loaded segment (file offset 0). */
static int eh_rule_own(uintptr_t pc, uint64_t *rule, const char **name, uintptr_t *base) {
  struct dl_find_object fo;
  if (_dl_find_object((void *)pc, &fo) || !fo.dlfo_eh_frame || !fo.dlfo_link_map) return HS_EH_UNKNOWN;
  const struct link_map *lm = fo.dlfo_link_map;
  *name = lm->l_name && *lm->l_name ? lm->l_name : "(the program)";
  *base = lm->l_addr;
  if (lm->l_name && *lm->l_name && !strchr(lm->l_name, '/')) return HS_EH_UNKNOWN; /* the vdso */
  const uintptr_t start = (uintptr_t)fo.dlfo_map_start, end = (uintptr_t)fo.dlfo_map_end;
  const ElfW(Ehdr) *eh = (const ElfW(Ehdr) *)start;
  if (end - start < 4096 || memcmp(eh->e_ident, ELFMAG, SELFMAG) || eh->e_phentsize != sizeof(ElfW(Phdr)) ||
      eh->e_phnum > 64 || eh->e_phoff > 4096 - (size_t)eh->e_phnum * sizeof(ElfW(Phdr)))
    return HS_EH_UNKNOWN;
  const ElfW(Phdr) *ph = (const ElfW(Phdr) *)(start + eh->e_phoff);
  for (int i = 0; i < eh->e_phnum; i++)
    if (ph[i].p_type == PT_LOAD) {
      if (ph[i].p_offset != 0 || lm->l_addr + ph[i].p_vaddr != start) return HS_EH_UNKNOWN;
      break;
    }
  return eh_rule_phdrs(pc, lm->l_addr, ph, eh->e_phnum, (uintptr_t)fo.dlfo_eh_frame, rule);
}

/* Another thread's return addresses (a thread dump, hs_unwind_remote):
 * that thread may have returned from the module and be unloading it right
 * now, so the module is read inside dl_iterate_phdr, whose lock dlclose
 * needs to unlink it before unmapping it (a dump while threads dlopen and
 * dlclose, tests/progs/dumprace.c, died reading an unmapped ELF header). */
struct eh_locked {
  uintptr_t pc, base;
  const char *name;
  int status;
  uint64_t rule;
};
static int eh_rule_cb(struct dl_phdr_info *info, size_t size, void *p) {
  (void)size;
  struct eh_locked *a = p;
  if (!holds_pc(info, a->pc)) return 0;
  uintptr_t hdr = 0;
  for (int i = 0; i < info->dlpi_phnum; i++)
    if (info->dlpi_phdr[i].p_type == PT_GNU_EH_FRAME) hdr = info->dlpi_addr + info->dlpi_phdr[i].p_vaddr;
  a->base = info->dlpi_addr;
  a->name = module_name(info);
  if (strchr(a->name, '/')) a->status = eh_rule_phdrs(a->pc, info->dlpi_addr, info->dlpi_phdr, info->dlpi_phnum, hdr, &a->rule);
  return 1;
}
static int eh_rule_locked(uintptr_t pc, uint64_t *rule, const char **name, uintptr_t *base) {
  struct eh_locked a = {pc, 0, NULL, HS_EH_UNKNOWN, 0};
  if (!hs_loader_usable()) return HS_EH_UNKNOWN;
  IN_LOADER(dl_iterate_phdr(eh_rule_cb, &a));
  *rule = a.rule;
  *name = a.name ? a.name : "?";
  *base = a.base;
  return a.status;
}

static HS_TLS int unwinding_remote; /* hs_unwind_remote's walk: rules for another thread's stack */

/* Computes the rule at pc; 0 when the CFI is not a plain rule. From
 * .eh_frame in memory, or with libdw where that reader does not know the
 * CFI. verify_unwind compares the two. */
static atomic_ulong rule_checks, rule_mismatches, rules_by_libdw;
static uint64_t compute_rule(uintptr_t pc) {
  uint64_t r = 0;
  const char *name = NULL;
  uintptr_t base = 0;
  int st = unwinding_remote ? eh_rule_locked(pc, &r, &name, &base) : eh_rule_own(pc, &r, &name, &base), read = 0;
  if (st == HS_EH_UNKNOWN) {
    uint64_t d = libdw_rule(pc, &read);
    if (read) atomic_fetch_add(&rules_by_libdw, 1);
    return d;
  }
  if (st != HS_EH_RULE) r = 0;
  if (HS_UNLIKELY(hs_opt.verify_unwind)) {
    uint64_t d = libdw_rule(pc, &read);
    if (read) {
      atomic_fetch_add(&rule_checks, 1);
      if (d != r && atomic_fetch_add(&rule_mismatches, 1) < 10)
        hs_warn("unwind rule mismatch at %s+%#lx: .eh_frame %#llx, libdw %#llx", name, (unsigned long)(pc - base),
                (unsigned long long)r, (unsigned long long)d);
    }
  }
  return r;
}

/* The rule at pc with libdw; *read says whether libdw read the module. */
static HS_TLS int dw_wanted; /* a rule needed libdw, which this thread has not prepared */
static uint64_t libdw_rule(uintptr_t pc, int *read) {
  *read = 0;
  if (!hs_loader_usable()) return 0; /* dlopen and dl_iterate_phdr */
  const int st = __atomic_load_n(&dw.state, __ATOMIC_ACQUIRE);
  if (st < 0 || (!st && !hs_loader_may_open())) return 0; /* libdw cannot be had here: the rule goes without it */
  if (!st || !dw_tls_ready) { /* see dw_prepare */
    dw_wanted = 1;
    return 0;
  }
  struct module *m = module_for(pc);
  if (!m) return 0;
  *read = 1;
  Dwarf_Frame *f = NULL;
  if (dw.cfi_addrframe(m->cfi, pc - m->base, &f) != 0 || !f) return 0;
  uint64_t rule = 0;
  Dwarf_Op *ops;
  size_t n;
  if (dw.frame_cfa(f, &ops, &n) != 0 || n != 1) goto out;
  int reg;
  int64_t off;
  if (ops[0].atom == DW_OP_bregx) {
    reg = (int)ops[0].number;
    off = (int64_t)ops[0].number2;
  } else if (ops[0].atom >= DW_OP_breg0 && ops[0].atom <= DW_OP_breg31) {
    reg = ops[0].atom - DW_OP_breg0;
    off = (int64_t)ops[0].number;
  } else {
    goto out;
  }
  if ((reg != 7 && reg != 6) || off < INT32_MIN || off > INT32_MAX) goto out;
  rule = (uint64_t)(uint32_t)(int32_t)off | (reg == 6 ? R_BASE_RBP : 0);
  Dwarf_Op mem[3], *rops;
  size_t rn;
  /* return address: at CFA-8, or undefined at the outermost frame */
  if (dw.frame_register(f, 16, mem, &rops, &rn) != 0) { rule = 0; goto out; }
  if (rn == 0 && rops == mem) {
    rule |= R_END;
  } else {
    int64_t ra;
    if (!is_cfa_plus(rops, rn, &ra) || ra != -8) { rule = 0; goto out; }
  }
  if (dw.frame_register(f, 6, mem, &rops, &rn) != 0) { rule = 0; goto out; }
  if (rn == 0) {
    rule |= R_RBP_SAME; /* same value; "undefined" only happens in _start */
  } else {
    int64_t ro;
    if (!is_cfa_plus(rops, rn, &ro) || ro < INT16_MIN || ro > INT16_MAX) { rule = 0; goto out; }
    rule |= (uint64_t)(uint16_t)(int16_t)ro << 40;
  }
  rule |= R_VALID;
out:
  free(f);
  return rule;
}

static inline size_t slot_of(const struct rules *t, uintptr_t pc) {
  return (size_t)(((uint64_t)pc * 0x9E3779B97F4A7C15ull) >> 32) & t->mask;
}

static struct rules *rules_new(size_t slots) {
  struct rules *t = hs_mmap(sizeof *t + slots * sizeof t->s[0]);
  if (t) t->mask = slots - 1;
  return t;
}

static void rules_put(struct rules *t, uintptr_t pc, uint64_t r) {
  size_t i = slot_of(t, pc);
  for (;; i = (i + 1) & t->mask) {
    uintptr_t k = atomic_load_explicit(&t->s[i].pc, memory_order_relaxed);
    if (k == pc) return;
    if (!k) break;
  }
  atomic_store_explicit(&t->s[i].rule, r, memory_order_relaxed);
  atomic_store_explicit(&t->s[i].pc, pc, memory_order_release);
}

/* The rule for pc in t, or 0 (never a valid rule: R_VALID is set in those). */
static inline uint64_t rules_get(const struct rules *t, uintptr_t pc) {
  for (size_t i = slot_of(t, pc);; i = (i + 1) & t->mask) {
    uintptr_t k = atomic_load_explicit(&t->s[i].pc, memory_order_acquire);
    if (k == pc) return atomic_load_explicit(&t->s[i].rule, memory_order_relaxed);
    if (!k) return 0;
  }
}

static HS_COLD uint64_t rule_miss_cancel_off(uintptr_t pc) {
  int prepared = 0;
again:
  /* 0 (no rule: the capture goes without the cache) in a signal handler
   * below which this thread holds the lock */
  if (!hs_lock_unless_mine(&miss_lock)) return 0;
  struct rules *t = atomic_load_explicit(&cache, memory_order_relaxed);
  uint64_t r = rules_get(t, pc); /* another thread may have put it meanwhile */
  if (r) {
    hs_unlock(&miss_lock);
    return r;
  }
  dw_wanted = 0;
  r = compute_rule(pc);
  if (dw_wanted) { /* libdw, prepared outside the lock (dw_prepare), then once more */
    hs_unlock(&miss_lock);
    if (prepared || dw_prepare() < 0) return 0; /* not kept: a later miss tries again */
    prepared = 1; /* (libdw ready, or failed to load: then the rule is kept without it) */
    goto again;
  }
  if (!r) r = R_NONE;
  if ((cache_used + 1) * 2 > t->mask + 1) {
    struct rules *n = rules_new((t->mask + 1) * 2);
    if (n) {
      n->older = t;
      for (size_t i = 0; i <= t->mask; i++) {
        uintptr_t k = atomic_load_explicit(&t->s[i].pc, memory_order_relaxed);
        if (k) rules_put(n, k, atomic_load_explicit(&t->s[i].rule, memory_order_relaxed));
      }
      atomic_store_explicit(&cache, n, memory_order_release);
      t = n;
    }
  }
  if ((cache_used + 1) * 2 <= t->mask + 1) { /* else out of memory: the rule is not kept */
    rules_put(t, pc, r);
    cache_used++;
  }
  hs_unlock(&miss_lock);
  return r;
}

static HS_COLD uint64_t rule_miss(uintptr_t pc) {
  int cs = hs_cancel_off();
  uint64_t r = rule_miss_cancel_off(pc);
  hs_cancel_restore(cs);
  return r;
}

/* A small per-thread direct-mapped cache in front of the shared one: a hot
 * allocation site walks the same 10-20 return addresses every time, and the
 * shared table would cost a cache miss per frame. */
#define L1_BITS 11 /* 32 KiB a thread: big programs (cc1) walk thousands of distinct return addresses */
struct l1 {
  uintptr_t pc;
  uint64_t rule;
};
#define STEPS_CACHED 96
/* rbp is kept XORed with BP_MASK: in code without frame pointers it may
 * hold a heap pointer, and this thread-local memory is a leak-check root. */
#define BP_MASK 0xa5a5a5a5a5a5a5a5ull
/* A step in 16 bytes: matching and verifying a walk read only these, and
 * a big program's captures (cc1) spend most of their time moving walks
 * through the cache. The CFA is kept as its distance below the top of the
 * thread's stack (captures run only on stacks under 4 GiB). */
struct step {
  uintptr_t ra;   /* the return address read at CFA-8 */
  uint32_t cfa;   /* stack_hi - CFA */
  uint16_t ih;    /* its slot in the index, idx_of(cfa, ra): a copy keeps it */
  int8_t bpat;    /* with S_BPAT: rbp was restored from CFA + 8 * bpat */
  uint8_t flags;  /* S_BASE, S_BPAT */
};
#define S_BASE 1 /* this step's CFA was computed from rbp */
#define S_BPAT 2
struct steps {
  struct step s[STEPS_CACHED];
  /* rbp after each step (XOR BP_MASK). Read only before a step whose CFA
   * comes from rbp (S_BASE): bp[k-1] is the rbp step k used. That value is
   * exact in every kept walk: a fresh step records it, and a copied base
   * step was verified to use the very same rbp, so a copy keeps it. */
  uintptr_t bp[STEPS_CACHED];
};
struct walk {
  unsigned nsteps;    /* 0: nothing to reuse */
  unsigned nout;      /* frames it yielded */
  unsigned first_out; /* its first step outside the agent */
  int cont;           /* cut at max frames: may be continued */
  uint32_t id;        /* depot id of its frames */
  uint64_t sum;       /* and their depot sum (hs_depot_put_sum), with id */
  uintptr_t sp0, bp0x; /* rsp and rbp (XOR BP_MASK) at the capture that walked it */
  struct steps s;
};
/* Recent walks kept a thread: a program's hot loop allocates from a handful
 * of call paths in turn (python3's evaluation loop cycles through five to
 * eight), so keeping one walk finds a match only deep in the stack. */
#define NWALKS 8
/* The states (CFA, return address) of the recent walks, hashed: a new
 * walk's step finds the latest walk that reached its state in one probe.
 * An entry is IDX_USED | place << 7 | step, only a candidate: the step is
 * compared with the state before use, so an entry whose place has taken
 * another walk since is harmless (it misses, or names a step of the new
 * walk that really is that state). 1 KiB: a capture rewrites many entries,
 * and fewer cache lines stay closer. */
#define IDX_USED 0x8000u
#define IDX_BITS 9
_Static_assert(STEPS_CACHED <= 128 && NWALKS == 8, "index entries hold a step in 7 bits, a place in 3");
/* The agent's own frames at the top of every capture (cached_unwind,
 * hs_stack_capture, record, the hook) follow one of a few fixed code paths,
 * and so lie at fixed offsets from the capture's stack pointer. A chain
 * walked once is kept, its CFAs relative to that stack pointer, and later
 * captures re-read its return address slots in place: a load and a compare
 * a frame, where a walked frame costs a rule lookup and an index probe (a
 * sixth of cc1's capture time went to these three or four frames). By
 * induction every CFA is then the one a walk would compute: the first rule
 * is the one at pc, and each next one is the rule at a return address just
 * verified. A chain with a CFA computed from rbp is never kept. */
#define CHAIN_STEPS 8
#define NCHAINS 4
struct chain {
  uintptr_t pc;               /* where the walk began; 0: empty */
  unsigned n;                 /* steps, each yielding a return address inside the agent */
  int bpslot;                 /* rbp after the chain is read at sp + bpslot; -1: rbp as it was */
  uint32_t reach;             /* the highest byte above sp the chain reads */
  uint32_t cfa[CHAIN_STEPS];  /* CFA - sp */
  uintptr_t ra[CHAIN_STEPS];
};
/* Per-thread state (55 KiB), mapped at a thread's first capture and handed
 * on to a later thread when this one ends. Not in static TLS: that much
 * there would make pthread_create fail for threads with small stacks (glibc
 * takes static TLS out of the requested stack size). */
struct ustate {
  struct ustate *next_free;
  unsigned l1_gen;
  unsigned char order[NWALKS]; /* walks[] indices, the most recently used first */
  int fast_bal;                /* hits minus misses of the same-sp try, within [-16, 16] */
  unsigned fast_off;           /* captures left without that try */
  int met;                     /* this capture met a recent walk (whole or in part): verify_unwind counts it */
  unsigned chain_next;         /* the chain a new one replaces */
  struct chain chains[NCHAINS];
  uint16_t idx[1u << IDX_BITS];
  struct l1 l1[1u << L1_BITS];
  struct walk walks[NWALKS];
  struct steps fresh; /* this walk's own steps, until merged */
};
static HS_TLS struct ustate *us;
static HS_TLS int us_done; /* the thread is ending: no new state */
static struct ustate *us_free;
static hs_lock_t us_lock;
static atomic_uint flush_gen;

static void walks_reset(struct ustate *u) {
  for (unsigned k = 0; k < NWALKS; k++) {
    u->walks[k].nsteps = u->walks[k].nout = 0;
    u->order[k] = (unsigned char)k;
  }
}

/* dlclose may have put new code where cached code was (hs_unwind_flush
 * bumps flush_gen): the thread's cached rules and walks go. */
static inline void check_flush(struct ustate *u) {
  unsigned g = atomic_load_explicit(&flush_gen, memory_order_relaxed);
  if (HS_UNLIKELY(g != u->l1_gen)) {
    memset(u->l1, 0, sizeof u->l1);
    u->l1_gen = g;
    walks_reset(u); /* code may have moved */
  }
}

static inline size_t idx_of(uintptr_t cfa, uintptr_t ra) {
  return (size_t)(((uint64_t)(cfa ^ (ra << 7)) * 0x9E3779B97F4A7C15ull) >> (64 - IDX_BITS));
}

static HS_COLD struct ustate *us_take(void) {
  if (us_done) return NULL;
  /* Never waits: a signal handler's capture may interrupt this very code. */
  struct ustate *u = NULL;
  if (hs_trylock(&us_lock)) {
    u = us_free;
    if (u) us_free = u->next_free;
    hs_unlock(&us_lock);
  }
  if (!u) {
    /* Fresh pages are zero, which is empty for the rule cache, the index
     * and the walks: emptying them again faulted in all 14 pages (54 KiB)
     * of the state for every thread that took one. */
    u = hs_mmap(sizeof *u);
    if (!u) return NULL;
    u->l1_gen = atomic_load(&flush_gen);
    for (unsigned k = 0; k < NWALKS; k++) u->order[k] = (unsigned char)k;
    return us = u;
  }
  walks_reset(u); /* the walks were another thread's */
  check_flush(u); /* code may have moved since it was last used */
  return us = u;
}

/* A thread's first captures walk with the shared rule table only: most
 * threads of a program with thousands allocate a few times, and a state of
 * its own (54 KiB: the rule cache, the recent walks) pays only for a thread
 * that captures often. */
#define US_AFTER 64
static HS_TLS unsigned us_wait;
static inline int us_deferred(void) { return us_wait < US_AFTER; }

void hs_unwind_thread_exit(void) {
  us_done = 1;
  struct ustate *u = us;
  us = NULL;
  if (!u) return;
  /* Waits a little only: after a fork the lock may belong to a thread that
   * does not exist in the child. A state that cannot be handed on stays
   * mapped, unused. */
  if (!hs_trylock_a_little(&us_lock)) return;
  u->next_free = us_free;
  us_free = u;
  hs_unlock(&us_lock);
}

static inline uint64_t rule_shared(uintptr_t pc) {
  uint64_t r = rules_get(atomic_load_explicit(&cache, memory_order_acquire), pc);
  return r ? r : rule_miss(pc);
}

static inline uint64_t rule_for(uintptr_t pc) {
  struct ustate *u = us;
  if (HS_UNLIKELY(!u) && (us_deferred() || !(u = us_take()))) return rule_shared(pc);
  struct l1 *e = &u->l1[(pc ^ (pc >> L1_BITS)) & ((1u << L1_BITS) - 1)];
  if (HS_LIKELY(e->pc == pc)) return e->rule;
  uint64_t r = rule_shared(pc);
  e->pc = pc;
  e->rule = r;
  return r;
}

/* fork: the rule cache and libdw's state change only under miss_lock, and
 * a rule miss holds it for long (a first look at a module's CFI takes
 * milliseconds): forked while another thread held it, the child would find
 * it held for good and spin at its first miss. Taken before the table's and
 * the arena's locks (a miss allocates through libdw, which takes those). */
void hs_unwind_atfork_prepare(void) { hs_lock(&miss_lock); }
void hs_unwind_atfork_parent(void) { hs_fork_release(&miss_lock); }
void hs_unwind_atfork_child(void) {
  hs_fork_release(&miss_lock);
  /* The free list of thread states, taken and given back without waiting:
   * whoever held its lock is not in the child. */
  hs_unlock(&us_lock);
}

/* Where code was unloaded. unw_backtrace keeps a per-thread cache of rules
 * by address (libunwind's fast trace) that nothing flushes: a library
 * loaded where an unloaded one had been got one-frame stacks from it on
 * every capture (with fast_unwind=0, or through the fallback). A capture
 * with a frame in such a range is walked again with unw_step, whose caches
 * unw_flush_cache does empty: 27 times slower (libunwind blocks and
 * unblocks signals around each frame's lookup), so only those captures.
 * Ranges are added, never removed (the same range again is not added). */
#define MAX_GONE 128
static uintptr_t unl_lo[MAX_GONE], unl_hi[MAX_GONE];
static atomic_int ngone_ranges;
static atomic_int gone_overflow; /* more than MAX_GONE: every libunwind capture is walked again */

static int snap_module(struct dl_phdr_info *info, size_t size, void *p) {
  (void)size;
  struct hs_modsnap *s = p;
  if (s->n < HS_SNAP_MODULES) {
    load_extent(info, &s->lo[s->n], &s->hi[s->n]);
    if (s->lo[s->n] < s->hi[s->n]) s->n++;
  } else {
    s->full = 1;
  }
  return 0;
}

static void snapshot(struct hs_modsnap *s) {
  s->n = 0;
  s->full = 0;
  IN_LOADER(dl_iterate_phdr(snap_module, s));
}

/* Under miss_lock, which fork takes first (atfork_prepare): a child forked
 * while this thread was inside dl_iterate_phdr would find the loader's
 * lock held for good (forkrace hung in 3 runs of 6). */
void hs_unwind_snapshot(struct hs_modsnap *s) {
  hs_lock(&miss_lock);
  snapshot(s);
  hs_unlock(&miss_lock);
}

/* The ranges of before that are not loaded now join the gone ones (under
 * miss_lock). */
static void note_gone(const struct hs_modsnap *before) {
  static struct hs_modsnap now; /* under miss_lock; 4 KiB off the caller's stack */
  if (!before) return;
  snapshot(&now);
  if (before->full || now.full) atomic_store(&gone_overflow, 1);
  for (int i = 0; i < before->n; i++) {
    int still = 0, known = 0, n = atomic_load(&ngone_ranges);
    for (int j = 0; j < now.n && !still; j++) still = now.lo[j] == before->lo[i] && now.hi[j] == before->hi[i];
    for (int j = 0; j < n && !still && !known; j++) known = unl_lo[j] == before->lo[i] && unl_hi[j] == before->hi[i];
    if (still || known) continue;
    if (n == MAX_GONE) {
      atomic_store(&gone_overflow, 1);
      continue;
    }
    unl_lo[n] = before->lo[i];
    unl_hi[n] = before->hi[i];
    atomic_store(&ngone_ranges, n + 1); /* published after the entry */
  }
}

/* Does a frame of buf lie where code was unloaded? (Two loads while
 * nothing was.) */
static inline int in_gone_range(void *const *buf, int n) {
  if (HS_UNLIKELY(atomic_load_explicit(&gone_overflow, memory_order_relaxed))) return 1;
  int g = atomic_load_explicit(&ngone_ranges, memory_order_acquire);
  if (HS_LIKELY(!g)) return 0;
  for (int i = 0; i < n; i++)
    for (int j = 0; j < g; j++)
      if ((uintptr_t)buf[i] >= unl_lo[j] && (uintptr_t)buf[i] < unl_hi[j]) return 1;
  return 0;
}

/* Is module m still loaded, at the same place? */
struct still_arg {
  const struct module *m;
  int found;
};
static int still_loaded(struct dl_phdr_info *info, size_t size, void *p) {
  (void)size;
  struct still_arg *a = p;
  if (info->dlpi_addr == a->m->base && !strcmp(module_name(info), a->m->name)) a->found = 1;
  return a->found;
}

/* After a dlclose: the rules of the modules that are gone go, with their
 * libdw handles (keeping those would keep each unloaded library's file
 * mapped, ELF_C_READ_MMAP, one mapping a dlopen/dlclose cycle). The rest
 * stays: the code did not move. Flushing everything made a program that
 * loads and unloads a plugin 2,000 times 3.5x slower (every module's CFI
 * read again after each cycle); most dlcloses unload nothing at all. */
static void hs_unwind_flush_cancel_off(const struct hs_modsnap *before) {
  /* libunwind's own caches: the fallback's, and the only unwinder with
   * fast_unwind=0 (its fast trace's cache is not among them: note_gone) */
  unw_flush_cache(unw_local_addr_space, 0, 0);
  if (__atomic_load_n(&dw.state, __ATOMIC_ACQUIRE) > 0) dw_prepare(); /* libdw is called below, under the lock */
  hs_lock(&miss_lock);
  note_gone(before);
  if (!cache) {
    hs_unlock(&miss_lock);
    return;
  }
  int saved = hs_in_agent;
  hs_in_agent = 1;
  static uintptr_t gone_lo[MAX_MODULES], gone_hi[MAX_MODULES]; /* under miss_lock: 8 KiB off the caller's stack */
  int ngone = 0, kept = 0;
  for (int i = 0; i < nmodules; i++) {
    struct still_arg a = {&modules[i], 0};
    IN_LOADER(dl_iterate_phdr(still_loaded, &a));
    if (a.found) {
      modules[kept++] = modules[i];
      continue;
    }
    gone_lo[ngone] = modules[i].lo;
    gone_hi[ngone++] = modules[i].hi;
    if (modules[i].cfi) dw.cfi_end(modules[i].cfi);
    if (modules[i].elf) dw.elf_end(modules[i].elf);
  }
  nmodules = kept;
  hs_in_agent = saved;
  if (ngone) {
    /* A reader that meets an emptied slot misses, and looks again under
     * this lock; an entry beyond the hole in its probe chain is found no
     * more and is computed again (a duplicate of the same rule). Rules
     * without a module (R_NONE: the vdso, JIT code) stay: they only send
     * a frame to libunwind. */
    for (struct rules *t = atomic_load_explicit(&cache, memory_order_relaxed); t; t = t->older)
      for (size_t i = 0; i <= t->mask; i++) {
        uintptr_t pc = atomic_load_explicit(&t->s[i].pc, memory_order_relaxed);
        for (int g = 0; pc && g < ngone; g++)
          if (pc >= gone_lo[g] && pc < gone_hi[g]) atomic_store_explicit(&t->s[i].pc, 0, memory_order_relaxed);
      }
    atomic_fetch_add(&flush_gen, 1); /* per-thread caches and walks notice and empty */
  }
  hs_unlock(&miss_lock);
}

void hs_unwind_flush(const struct hs_modsnap *before) {
  int cs = hs_cancel_off();
  hs_unwind_flush_cancel_off(before);
  hs_cancel_restore(cs);
}

/* ---- the walk --------------------------------------------------------- */

static HS_TLS uintptr_t stack_lo, stack_hi;

/* The main thread's stack without /proc: pthread_getattr_np reads
 * /proc/self/maps with stdio to find it, 80 us of every process's first
 * capture. The kernel copies the program's file name to the very top of
 * the initial stack (AT_EXECFN), so the page after it ends the mapping or
 * lies below its end; the stack reaches down RLIMIT_STACK from there, as
 * glibc computes it. Unlimited or huge limits, or anything unexpected, go
 * to glibc's way. */
static int main_stack_bounds(uintptr_t *lo, uintptr_t *hi) {
  uintptr_t name = (uintptr_t)getauxval(AT_EXECFN), sp = (uintptr_t)__builtin_frame_address(0);
  struct rlimit rl;
  if (!name || getpid() != (pid_t)syscall(SYS_gettid) || getrlimit(RLIMIT_STACK, &rl) || rl.rlim_cur == RLIM_INFINITY ||
      rl.rlim_cur > (64ul << 20))
    return -1;
  uintptr_t top = (name | 4095) + 1;
  if (top <= sp || top - sp >= rl.rlim_cur) return -1;
  *hi = top;
  *lo = top - (rl.rlim_cur & ~(uintptr_t)4095);
  return 0;
}

static HS_COLD int stack_bounds_cancel_off(void) {
  uintptr_t mlo, mhi;
  if (!main_stack_bounds(&mlo, &mhi)) {
    stack_lo = mlo;
    stack_hi = mhi;
    return 0;
  }
  pthread_attr_t a;
  void *lo;
  size_t sz;
  int saved = hs_in_agent;
  hs_in_agent = 1;
  int ok = pthread_getattr_np(pthread_self(), &a) == 0;
  if (ok) {
    ok = pthread_attr_getstack(&a, &lo, &sz) == 0;
    pthread_attr_destroy(&a);
  }
  hs_in_agent = saved;
  if (!ok) return -1;
  stack_lo = (uintptr_t)lo;
  stack_hi = (uintptr_t)lo + sz;
  return 0;
}

static HS_COLD int stack_bounds(void) {
  int cs = hs_cancel_off();
  int r = stack_bounds_cancel_off();
  hs_cancel_restore(cs);
  return r;
}

static int step_backtrace(void **buf, int want) {
  unw_context_t ctx;
  unw_cursor_t cur;
  if (unw_getcontext(&ctx) || unw_init_local(&cur, &ctx)) return 0;
  int n = 0;
  while (n < want && unw_step(&cur) > 0) {
    unw_word_t ip;
    if (unw_get_reg(&cur, UNW_REG_IP, &ip) || !ip) break;
    buf[n++] = (void *)ip;
  }
  return n;
}

/* steps: unw_step's walk only, never unw_backtrace's. The self-test's
 * reference needs nothing faster, and unw_backtrace's first call of a
 * thread builds its rule cache: a 256 KiB table written whole, 64 page
 * faults of every process that captures a stack, most of which never
 * come back to libunwind. */
/* A reference walk's frames: as many as a capture wants and 8 more (the
 * agent's own, dropped from the top), at most SLOW_BUF. */
#define SLOW_BUF (HS_MAX_FRAMES + 16)
static unsigned slow_want(unsigned max) { return max + 8 > SLOW_BUF ? SLOW_BUF : max + 8; }
static unsigned drop_own_frames(void *const *buf, int n, uintptr_t *frames, unsigned max) {
  int skip = 0;
  while (skip < n && (uintptr_t)buf[skip] >= hs_self_text_start && (uintptr_t)buf[skip] < hs_self_text_end) skip++;
  unsigned out = 0;
  for (int i = skip; i < n && out < max; i++) frames[out++] = (uintptr_t)buf[i];
  return out;
}

static unsigned slow_unwind_by(uintptr_t *frames, unsigned max, int steps) {
  if (!hs_loader_usable()) return 0; /* libunwind takes the loader's lock (a forked child: threads.c) */
  void *buf[SLOW_BUF];
  unsigned want = slow_want(max);
  int n;
  if (steps)
    IN_LOADER(n = step_backtrace(buf, (int)want));
  else
    IN_LOADER(n = unw_backtrace(buf, (int)want));
  if (!steps && n > 0 && in_gone_range(buf, n))
    IN_LOADER(n = step_backtrace(buf, (int)want));
  return n > 0 ? drop_own_frames(buf, n, frames, max) : 0;
}
static unsigned slow_unwind(uintptr_t *frames, unsigned max) { return slow_unwind_by(frames, max, 0); }

/* One step of the walk from (sp, bp) with the rule for lookup. Returns 1
 * with the new CFA, return address and where rbp was read (0 if not), 0 at
 * the end of the stack, -1 when the frame cannot be walked here. */
static inline __attribute__((always_inline)) int step_rule(uint64_t r, uintptr_t *sp, uintptr_t *bp, uintptr_t *ra_out,
                                                           uintptr_t *at_out, int *base_bp) {
  if (HS_UNLIKELY(!(r & R_VALID))) return -1;
  if (r & R_END) return 0;
  uintptr_t cfa = ((r & R_BASE_RBP) ? *bp : *sp) + (uintptr_t)(int64_t)(int32_t)(uint32_t)r;
  if (HS_UNLIKELY(cfa <= *sp || cfa > stack_hi)) return -1;
  uintptr_t at = 0;
  if (!(r & R_RBP_SAME)) {
    at = cfa + (uintptr_t)(int64_t)(int16_t)(uint16_t)(r >> 40);
    if (HS_UNLIKELY(at < *sp || at + 8 > stack_hi)) return -1;
    *bp = *(const uintptr_t *)at;
  }
  *ra_out = *(const uintptr_t *)(cfa - 8);
  *at_out = at;
  *base_bp = (r & R_BASE_RBP) != 0;
  *sp = cfa;
  return 1;
}
static inline __attribute__((always_inline)) int step(uintptr_t lookup, uintptr_t *sp, uintptr_t *bp, uintptr_t *ra_out,
                                                      uintptr_t *at_out, int *base_bp) {
  return step_rule(rule_for(lookup), sp, bp, ra_out, at_out, base_bp);
}

static inline int in_agent_text(uintptr_t ra) { return ra >= hs_self_text_start && ra < hs_self_text_end; }


/* The rule at pc computed afresh from the CFI, bypassing every cache:
 * verify_unwind=2's reference. */
static HS_COLD uint64_t fresh_rule(uintptr_t pc) {
  hs_lock(&miss_lock);
  uint64_t r = compute_rule(pc);
  hs_unlock(&miss_lock);
  return r;
}

/* The plain walk from (pc, sp, bp): the program's frames into frames[],
 * the agent's own skipped. Returns the count, or -1 when a frame cannot be
 * walked here. Rules from the caches, or all computed afresh (fresh). */
static inline __attribute__((always_inline)) int walk_from(uintptr_t pc, uintptr_t sp, uintptr_t bp, uintptr_t *frames,
                                                           unsigned max, int fresh) {
  uintptr_t lookup = pc; /* the first pc is not a return address */
  unsigned out = 0;
  int in_agent = 1;
  for (unsigned steps = 0; steps < HS_MAX_FRAMES + 32; steps++) {
    uintptr_t ra, at;
    int base, st = fresh ? step_rule(fresh_rule(lookup), &sp, &bp, &ra, &at, &base)
                         : step(lookup, &sp, &bp, &ra, &at, &base);
    if (HS_UNLIKELY(st < 0)) return -1;
    if (!st || !ra) break;
    if (in_agent && !in_agent_text(ra)) in_agent = 0;
    if (!in_agent) {
      frames[out++] = ra;
      if (out == max) break;
    }
    lookup = ra - 1; /* the call instruction, inside the caller */
  }
  return (int)out;
}

/* Returns the count, or -1 when the walk must be redone by libunwind. */
static __attribute__((noinline)) int fast_unwind(uintptr_t *frames, unsigned max) {
  uintptr_t pc, sp, bp;
  /* rbp first: the compiler may pick rbp itself for one of the outputs. */
  __asm__ volatile("mov %%rbp, %2\n\tlea 0(%%rip), %0\n\tmov %%rsp, %1" : "=&r"(pc), "=&r"(sp), "=&r"(bp));
  if (HS_UNLIKELY(!stack_hi) && stack_bounds()) return -1;
  if (sp < stack_lo || sp >= stack_hi) return -1; /* signal stack, fibers */
  struct ustate *u = us ? us : us_deferred() ? NULL : us_take();
  if (u) check_flush(u);
  return walk_from(pc, sp, bp, frames, max, 0);
}

/* ---- the suffix cache ---------------------------------------------------
 * Consecutive captures on a thread share most of their stack: the same
 * outer frames, often the very same stack (a loop allocating at one call
 * site, or at a few in turn). Each thread keeps its recent walks, step by
 * step: the CFA, the return address read at CFA-8, rbp after the step and
 * where that rbp was read. When a new walk reaches a state (CFA, return
 * address) that a recent walk also had, the rest depends only on the stack
 * memory above that CFA, through exactly the slots that walk read:
 * re-reading the return address slots and comparing them with what they
 * held reuses the rest of the walk (a load and a compare a frame), and the
 * capture can tell the depot "same stack as that walk" without hashing it.
 * Matching the state alone would not be enough: a caller may have returned
 * and another one, with a frame of the same size, put the same function at
 * the same place. rbp counts only where a later step computes its CFA from
 * it before any step restores it from the stack: in code built without
 * frame pointers rbp is just another register, different at every call.
 * doc/design.md, "Reusing recent walks". */
static HS_TLS unsigned char walk_busy;


/* 0, or 1 when rbp's slot is not 8 * an int8_t from the CFA (never seen:
 * the capture then goes to libunwind). */
static inline int put_step(struct steps *d, unsigned i, uintptr_t hi, uintptr_t cfa, uintptr_t ra, uintptr_t bp,
                           uintptr_t at, int base, unsigned ih) {
  intptr_t off = at ? (intptr_t)(at - cfa) : 0;
  if (HS_UNLIKELY((off & 7) || off < -1024 || off > 1016)) return 1;
  d->s[i] = (struct step){ra, (uint32_t)(hi - cfa), (uint16_t)ih, (int8_t)(off / 8),
                          (uint8_t)((base ? S_BASE : 0) | (at ? S_BPAT : 0))};
  d->bp[i] = bp ^ BP_MASK;
  return 0;
}

/* The stack slot a step read its return address from, and where it read rbp. */
static inline uintptr_t ra_slot(const struct step *t, uintptr_t hi) { return *(const uintptr_t *)(hi - t->cfa - 8); }
static inline uintptr_t bp_slot(const struct step *t, uintptr_t hi) {
  return *(const uintptr_t *)(hi - t->cfa + (uintptr_t)((intptr_t)t->bpat * 8));
}

static inline void move_steps(struct steps *d, unsigned to, const struct steps *s, unsigned from, unsigned n) {
  memcpy(&d->s[to], &s->s[from], n * sizeof d->s[0]);
}

/* Points the index at steps [from, to) of w. */
static inline void index_steps(struct ustate *u, const struct walk *w, unsigned from, unsigned to) {
  const unsigned tag = IDX_USED | (unsigned)(w - u->walks) << 7;
  for (unsigned x = from; x < to; x++) u->idx[w->s.s[x].ih] = (uint16_t)(tag | x);
}

/* Takes the place order[dpos] for this walk, with its first ns steps. (No
 * later step of this walk can match the place's old walk: the probe never
 * takes dst.) */
static inline struct walk *walk_claim(struct ustate *u, unsigned dpos, const struct steps *fresh, unsigned ns) {
  struct walk *d = &u->walks[u->order[dpos]];
  move_steps(&d->s, 0, fresh, 0, ns);
  memcpy(d->s.bp, fresh->bp, ns * sizeof d->s.bp[0]);
  return d;
}

/* Moves order[pos] to the front: the most recently used walk. */
static inline void walk_use(struct ustate *u, unsigned pos) {
  unsigned char k = u->order[pos];
  memmove(&u->order[1], &u->order[0], pos);
  u->order[0] = k;
}

/* The rbp that step k of w uses for its CFA in this stack, when the walk
 * starts verifying w after step j with rbp = bp: the value the latest step
 * in (j, k) restored from the stack, else bp. Steps whose CFA comes from
 * rbp are rare in code built without frame pointers, and in code built
 * with them the scan stops at the step before. */
static inline uintptr_t rbp_for(const struct walk *w, int j, unsigned k, uintptr_t bp, uintptr_t hi) {
  for (int x = (int)k - 1; x > j; x--)
    if (w->s.s[x].flags & S_BPAT) return bp_slot(&w->s.s[x], hi);
  return bp;
}

/* Does base step k (S_BASE) of w compute the CFA w computed? */
static inline int base_same(const struct walk *w, int j, unsigned k, uintptr_t bp, uintptr_t hi) {
  uintptr_t want = k ? w->s.bp[k - 1] ^ BP_MASK : w->bp0x ^ BP_MASK;
  return rbp_for(w, j, k, bp, hi) == want;
}

/* Steps over the agent's own frames from (pc, *sp, *bp): on success *sp and
 * *bp are the state the hook's frame is walked from, and *lookup its pc (the
 * step that yields the program's return address is the walk's first). 0, or
 * -1 when these frames cannot be walked. */
static inline int agent_frames(struct ustate *u, uintptr_t pc, uintptr_t *sp, uintptr_t *bp, uintptr_t *lookup,
                               uintptr_t hi) {
  const uintptr_t s0 = *sp;
  for (unsigned c = 0; c < NCHAINS; c++) {
    const struct chain *ch = &u->chains[c];
    if (ch->pc != pc || hi - s0 < ch->reach) continue;
    unsigned k = 0;
    while (k < ch->n && *(const uintptr_t *)(s0 + ch->cfa[k] - 8) == ch->ra[k]) k++;
    if (k < ch->n) continue;
    *sp = s0 + ch->cfa[ch->n - 1];
    if (ch->bpslot >= 0) *bp = *(const uintptr_t *)(s0 + (unsigned)ch->bpslot);
    *lookup = ch->ra[ch->n - 1] - 1;
    if (c) { /* the chain met first from now on */
      struct chain t = u->chains[0];
      u->chains[0] = *ch;
      u->chains[c] = t;
    }
    return 0;
  }
  /* A chain not seen yet: walk it, keep it. */
  struct chain nc = {.pc = pc, .bpslot = -1};
  int keep = 1;
  uintptr_t look = pc;
  for (unsigned steps = 0;; steps++) {
    if (steps == HS_MAX_FRAMES) return -1;
    uintptr_t nsp = *sp, nbp = *bp, ra, at;
    int base, st = step(look, &nsp, &nbp, &ra, &at, &base);
    if (st < 0) return -1;
    if (!st || !ra || !in_agent_text(ra)) break; /* the walk proper takes this step */
    if (base || nc.n == CHAIN_STEPS) keep = 0;
    if (keep) {
      nc.cfa[nc.n] = (uint32_t)(nsp - s0);
      nc.ra[nc.n++] = ra;
      nc.reach = (uint32_t)(nsp - s0);
      if (at) {
        nc.bpslot = (int)(at - s0);
        if (at + 8 - s0 > nc.reach) nc.reach = (uint32_t)(at + 8 - s0);
      }
    }
    *sp = nsp;
    *bp = nbp;
    look = ra - 1;
  }
  *lookup = look;
  if (keep && nc.n) u->chains[u->chain_next++ % NCHAINS] = nc;
  return 0;
}

/* Is the stack still w's, for a capture from w's own stack pointer? Then
 * its first step reaches w's first state, and re-reading every return
 * address slot w read (and rbp where a step computes its CFA from it)
 * proves the rest: one pass over w, no rule lookup, no index probe. The
 * usual case for a loop that allocates from a few call paths. */
static inline int walk_still(const struct walk *w, uintptr_t bp, uintptr_t hi) {
  for (unsigned k = 0; k < w->nsteps; k++) {
    const struct step *t = &w->s.s[k];
    if (ra_slot(t, hi) != t->ra || ((t->flags & S_BASE) && !base_same(w, -1, k, bp, hi))) return 0;
  }
  return 1;
}

/* The walk with the cache. Returns the frame count, or -1 when the walk
 * must be redone without the cache. *res is the walk that describes this
 * stack: with *same, a recent walk with exactly these frames (its depot id
 * stands); otherwise this walk, kept in the place of the least recently
 * used one (the caller sets its id). Either way the frames are the return
 * addresses of its steps from first_out on. */
static __attribute__((noinline)) int cached_unwind(int *same, unsigned max, struct walk **res, uint64_t *sum,
                                                   int *sum_known) {
  uintptr_t pc, sp, bp;
  __asm__ volatile("mov %%rbp, %2\n\tlea 0(%%rip), %0\n\tmov %%rsp, %1" : "=&r"(pc), "=&r"(sp), "=&r"(bp));
  *same = 0;
  *sum_known = 0;
  if (HS_UNLIKELY(!stack_hi) && stack_bounds()) return -1;
  if (sp < stack_lo || sp >= stack_hi) return -1;
  const uintptr_t hi = stack_hi;
  if (HS_UNLIKELY(hi - sp > UINT32_MAX)) return -1; /* steps keep CFAs in 32 bits */
  struct ustate *u = us ? us : us_take();
  if (!u) return -1;
  check_flush(u);
  u->met = 0;
  /* From here on sp, bp and lookup are the state past the agent's frames:
   * walks hold the program's frames only. */
  uintptr_t lookup;
  if (agent_frames(u, pc, &sp, &bp, &lookup, hi)) return -1;
  /* A recent walk from this very stack pointer may still be the stack:
   * tried first while that pays (most captures of sqlite3 and python3, the
   * minority of cc1's, whose failed tries cost more than the hits save). */
  if (HS_LIKELY(!u->fast_off)) {
    int tried = 0;
    for (unsigned pos = 0; pos < NWALKS; pos++) {
      struct walk *w = &u->walks[u->order[pos]];
      if (w->sp0 != sp || !w->nout) continue;
      if (walk_still(w, bp, hi)) {
        if (u->fast_bal < 16) u->fast_bal++;
        walk_use(u, pos);
        u->met = 1;
        *same = 1;
        *res = w;
        return (int)w->nout;
      }
      tried = 1;
    }
    if (tried && --u->fast_bal < -16) { /* mostly misses: off for a while */
      u->fast_bal = 0;
      u->fast_off = 256;
    }
  } else {
    u->fast_off--;
  }
  const uintptr_t sp_start = sp, bp_start = bp;
  struct steps *fresh = &u->fresh;
  struct walk *dst = NULL;             /* where this walk is kept, once merged */
  unsigned dpos = NWALKS - 1;          /* dst's place in order[] */
  unsigned out = 0, ns = 0;
  int in_agent = 1, first_out = -1, cont = 0, merged = 0;
  for (unsigned steps = 0; steps < HS_MAX_FRAMES + 32; steps++) {
    uintptr_t ra, at;
    int base, st = step(lookup, &sp, &bp, &ra, &at, &base);
    if (HS_UNLIKELY(st < 0)) goto fail;
    if (!st) break;
    if (HS_UNLIKELY(ns == STEPS_CACHED)) goto fail; /* deeper than the cache */
    struct steps *d = merged ? &dst->s : fresh;
    const unsigned ih = (unsigned)idx_of(hi - sp, ra);
    if (HS_UNLIKELY(put_step(d, ns++, hi, sp, ra, bp, at, base, ih))) goto fail;
    if (!ra) break;
    if (in_agent && !in_agent_text(ra)) in_agent = 0;
    if (!in_agent) {
      if (first_out < 0) first_out = (int)ns - 1;
      out++;
      if (out == max) {
        cont = 1;
        break;
      }
    }
    lookup = ra - 1;
    /* Did a recent walk reach this state too? (Also after a merge: the
     * verified part may end where another walk goes on.) */
    struct walk *w = NULL; /* the recent walk this one met */
    unsigned j = 0, wpos = 0;
    {
      unsigned e = u->idx[ih];
      unsigned kk = (e >> 7) & (NWALKS - 1), jj = e & 127;
      struct walk *c = &u->walks[kk];
      /* Never dst: its steps past this one are still its old walk's. */
      if (e && c != dst && jj < c->nsteps && c->s.s[jj].cfa == (uint32_t)(hi - sp) &&
          c->s.s[jj].ra == ra && (c->first_out <= jj) == !in_agent) {
        w = c;
        j = jj;
        while (u->order[wpos] != kk) wpos++;
      }
    }
    if (!w) continue;
    u->met = 1;
    /* Were this walk's frames so far that walk's frames, in the same places?
     * (The index names only the latest walk that had this state: the
     * frames before it may be that walk's, or another path's.) */
    int prefix_same = 1;
    if (!in_agent) {
      const struct steps *cur = merged ? &dst->s : fresh;
      if (out - 1 != j - w->first_out)
        prefix_same = 0;
      else
        for (unsigned o = 0; o + 1 < out; o++)
          if (cur->s[(unsigned)first_out + o].ra != w->s.s[w->first_out + o].ra) {
            prefix_same = 0;
            break;
          }
    }
    /* If this walk ends as w does, its frames are its own so far and w's
     * after step j, each as far from the outer end as in w: its depot sum
     * is its own frames' part plus w's sum less w's part up to j. Known
     * now, it starts the depot's index line on its way while the rest is
     * verified and copied (that line missed in most of cc1's lookups). */
    uint64_t spec = 0;
    unsigned spec_n = 0;
    if (!prefix_same && !in_agent && w->id && !w->cont && j >= w->first_out) {
      const unsigned wj = j - w->first_out; /* step j's frame in w */
      const unsigned n_all = out + (w->nout - 1 - wj);
      if (n_all <= max) {
        const struct steps *cur = merged ? &dst->s : fresh;
        const uint64_t *pw = hs_depot_pw;
        uint64_t own = 0, wpre = 0;
        for (unsigned o = 0; o < out; o++) own += cur->s[(unsigned)first_out + o].ra * pw[n_all - 1 - o];
        for (unsigned o = 0; o <= wj; o++) wpre += w->s.s[w->first_out + o].ra * pw[w->nout - 1 - o];
        spec = own + (w->sum - wpre);
        spec_n = n_all;
        hs_depot_prefetch(spec, spec_n);
      }
    }
    /* Verify its later steps where they are: each return address slot,
     * and for a step whose CFA comes from rbp, the rbp it uses. s0 is the
     * first step from here that yields a frame. */
    const uintptr_t bp_match = bp;
    int ended = 0;
    unsigned k0 = j + 1, k = k0, s0 = k0 > w->first_out ? k0 : w->first_out;
    unsigned lim = s0 + (max - out) < w->nsteps ? s0 + (max - out) : w->nsteps;
    for (; k < lim; k++) {
      const struct step *t = &w->s.s[k];
      if (ra_slot(t, hi) != t->ra || ((t->flags & S_BASE) && !base_same(w, (int)j, k, bp_match, hi))) break;
    }
    out += k > s0 ? k - s0 : 0;
    if (k == w->nsteps && k > k0 && !w->s.s[k - 1].ra) {
      ended = 1;
      if (k - 1 >= s0) out--; /* the end mark is not a frame */
    } else if (out == max) {
      cont = 1;
    } else {
      bp = rbp_for(w, (int)j, k, bp_match, hi); /* as the last verified step left it */
    }
    int done = ended || cont || (k == w->nsteps && !w->cont);
    if (done && !cont && spec_n && out == spec_n) {
      *sum = spec;
      *sum_known = 1;
    }
    if (done && prefix_same && out && out == w->nout) {
      /* The very frames of that walk: nothing to copy, nothing to hash. */
      if (merged) {
        dst->nsteps = dst->nout = 0; /* half written */
        /* The states before the match now lead to w first: the next
         * capture from here tries w before any other walk. */
        index_steps(u, w, 0, j);
      }
      walk_use(u, wpos);
      *same = 1;
      *res = w;
      return (int)out;
    }
    /* Merge into the least recently used place (never w's: its steps are
     * the ones copied, and w stays for the captures that follow its path):
     * this walk's own steps, then the verified ones (then maybe more of
     * each). No later step of this walk can match dst's old steps: the
     * probe skips dst. */
    unsigned i = ns - 1, nver = k - (j + 1);
    if (i + 1 + nver > STEPS_CACHED) goto fail;
    unsigned nfirst = first_out >= 0 ? (unsigned)first_out : w->first_out - j + i;
    if (!merged) {
      if (wpos == NWALKS - 1) dpos = NWALKS - 2;
      dst = walk_claim(u, dpos, fresh, ns);
    }
    move_steps(&dst->s, ns, &w->s, j + 1, nver);
    /* rbp after each copied step: only bp[k-1] of a step k that takes its
     * CFA from rbp is ever read (bp[] above), and for a copied k that value
     * was just verified to be w's. */
    memcpy(&dst->s.bp[ns], &w->s.bp[j + 1], nver * sizeof dst->s.bp[0]);
    ns += nver;
    /* Except after the last one, when this walk goes on from there: its
     * next step may take its CFA from rbp, which is this stack's (bp), and
     * is not one of w's verified steps. */
    if (!done && nver) dst->s.bp[ns - 1] = bp ^ BP_MASK;
    if (nver) first_out = (int)nfirst;
    merged = 1;
    if (done) break;
    /* Carry on walking from the last verified step (its rbp is in bp). */
    sp = hi - dst->s.s[ns - 1].cfa;
    lookup = dst->s.s[ns - 1].ra - 1;
    in_agent = first_out < 0 || ns - 1 < (unsigned)first_out;
  }
  if (!merged) dst = walk_claim(u, dpos, fresh, ns);
  dst->nsteps = ns;
  dst->nout = out;
  dst->first_out = first_out < 0 ? ns : (unsigned)first_out;
  dst->cont = cont;
  dst->id = 0;
  dst->sp0 = sp_start;
  dst->bp0x = bp_start ^ BP_MASK;
  /* Every step, the copied ones too: the walk they came from may be the
   * next to go. */
  index_steps(u, dst, 0, ns);
  walk_use(u, dpos);
  *res = dst;
  return (int)out;
fail:
  if (merged) dst->nsteps = dst->nout = 0;
  return -1;
}

/* Unwinds another thread from a pc, sp and maybe rbp: one blocked in a
 * system call, from what /proc/self/task/TID/syscall shows (no signal, so
 * its call is never interrupted; rbp unknown), or one that was running,
 * from the registers and the copy of its stack that its signal handler
 * took (copy: the bytes of [sp, sp + len)). Reads stay in [sp, hi), and in
 * the copy when there is one; a frame that needs an unknown rbp ends the
 * walk. frames[0] is pc + 1 (pc is not a return address). Rules missing
 * from the cache are computed here, in the caller's context. */
static unsigned remote_walk(uintptr_t pc, uintptr_t sp, uintptr_t lo, uintptr_t hi, int bp_known, uintptr_t bp,
                            const void *copy, size_t len, uintptr_t *frames, unsigned max, int may_leave);
unsigned hs_unwind_remote(uintptr_t pc, uintptr_t sp, uintptr_t hi, int bp_known, uintptr_t bp, const void *copy,
                          size_t len, uintptr_t *frames, unsigned max) {
  unwinding_remote = 1;
  unsigned n = remote_walk(pc, sp, sp, hi, bp_known, bp, copy, len, frames, max, 0);
  unwinding_remote = 0;
  return n;
}
/* This thread's own interrupted context, whose stack is readable in [lo,
 * hi) only: after a stack overflow sp may lie below the mapping. Its
 * memory is read in place, so the walk may go on through a signal frame
 * into another mapping: from the program's alternate signal stack (a crash
 * handler that re-raised, Python's faulthandler) to where the fault was. */
unsigned hs_unwind_remote_in(uintptr_t pc, uintptr_t sp, uintptr_t lo, uintptr_t hi, uintptr_t bp, uintptr_t *frames,
                             unsigned max) {
  unwinding_remote = 1;
  unsigned n = lo >= sp ? remote_walk(pc, sp, lo, hi, 1, bp, NULL, 0, frames, max, 1) : 0;
  unwinding_remote = 0;
  return n;
}
static unsigned remote_walk(uintptr_t pc, uintptr_t sp, uintptr_t lo, uintptr_t hi, int bp_known, uintptr_t bp,
                            const void *copy, size_t len, uintptr_t *frames, unsigned max, int may_leave) {
  if (!cache || !max || sp >= hi) return 0;
  const uintptr_t base = sp; /* copy's first byte */
  if (copy && hi - base > len) hi = base + len;
#define LOAD(a) (copy ? *(const uintptr_t *)((const char *)copy + ((a) - base)) : *(const uintptr_t *)(a))
  unsigned out = 0;
  frames[out++] = pc + 1;
  uintptr_t lookup = pc;
  const uintptr_t restorer = hs_signal_restorer();
  for (unsigned steps = 0; steps < HS_MAX_FRAMES + 32 && out < max; steps++) {
    if (restorer && lookup + 1 == restorer && out > 1) {
      /* A signal handler's frame returned into glibc's trampoline: the
       * kernel's ucontext starts at its CFA, and holds the interrupted
       * registers (its CFI is an expression the rule cache cannot hold).
       * The walk goes on from there while that stack lies above, in the
       * same bounds, or (may_leave) in the writable mapping it is in:
       * never from a copy of one stack into another. */
      const uintptr_t g = sp + offsetof(ucontext_t, uc_mcontext.gregs);
      if (g + 8 * (REG_RIP + 1) > hi) break;
      const uintptr_t ipc = LOAD(g + 8 * REG_RIP), isp = LOAD(g + 8 * REG_RSP);
      if (!ipc) break;
      if (isp <= sp || isp >= hi) {
        uintptr_t end = 0;
        int w = 0;
        if (!may_leave || hs_mapping_at(isp, &end, &w) || !w) break;
        lo = isp;
        hi = end;
      }
      bp = LOAD(g + 8 * REG_RBP);
      bp_known = 1;
      sp = isp;
      /* in place of the trampoline's address (its byte before, which a
       * return address would be looked up at, is no symbol's): the
       * interrupted pc, not a return address, as frames[0] */
      frames[out - 1] = ipc + 1;
      lookup = ipc;
      continue;
    }
    uint64_t r = rule_shared(lookup);
    if (!(r & R_VALID) || (r & R_END)) break;
    if ((r & R_BASE_RBP) && !bp_known) break;
    uintptr_t cfa = ((r & R_BASE_RBP) ? bp : sp) + (uintptr_t)(int64_t)(int32_t)(uint32_t)r;
    if (cfa <= sp || cfa > hi || cfa - 8 < lo) break;
    if (!(r & R_RBP_SAME)) {
      uintptr_t at = cfa + (uintptr_t)(int64_t)(int16_t)(uint16_t)(r >> 40);
      if (at < lo || at + 8 > hi) break;
      bp = LOAD(at);
      bp_known = 1;
    }
    uintptr_t ra = LOAD(cfa - 8);
    sp = cfa;
    if (!ra) break;
    frames[out++] = ra;
    lookup = ra - 1;
  }
#undef LOAD
  return out;
}

static int selftest_pending;
static unsigned selftest_agreed; /* frames the self-test compared, for verify_unwind's summary */
static int self_test(void);

static void run_self_test(void) {
  /* Trust the cache only where it agrees with a second unwinder (libgcc's,
   * else libunwind's): checked at the first capture, not at start-up. */
  if (!hs_lock_unless_mine(&miss_lock)) return; /* a signal handler's, inside this very code */
  int run = selftest_pending;
  selftest_pending = 0;
  hs_unlock(&miss_lock);
  if (run && self_test()) {
    hs_warn("the cached unwinder disagrees with libgcc's unwinder here; using libunwind only");
    hs_fast_unwind = 0;
  }
}

unsigned hs_unwind(uintptr_t *frames, unsigned max) {
  if (HS_UNLIKELY(selftest_pending)) run_self_test();
  if (hs_fast_unwind && cache) {
    int n = fast_unwind(frames, max);
    if (HS_LIKELY(n >= 0)) return (unsigned)n;
  }
  return slow_unwind(frames, max);
}

/* The walk of fast_unwind with every rule computed afresh from the CFI, no
 * cache at all: verify_unwind=2's reference, which sees a stale rule (after
 * a dlclose) where a walk with the cached rules would repeat it. (Not
 * libunwind: its fast trace caches rules by address too, and slow_unwind
 * re-walks only captures through unloaded ranges.) -1 when a frame has no
 * plain rule. */
static __attribute__((noinline)) int uncached_unwind(uintptr_t *frames, unsigned max) {
  uintptr_t pc, sp, bp;
  __asm__ volatile("mov %%rbp, %2\n\tlea 0(%%rip), %0\n\tmov %%rsp, %1" : "=&r"(pc), "=&r"(sp), "=&r"(bp));
  if (sp < stack_lo || sp >= stack_hi) return -1;
  return walk_from(pc, sp, bp, frames, max, 1);
}

/* verify_unwind (the tests): every capture is walked again, without reusing
 * walks (1) or without any cache (2), and compared; the counts are printed
 * at exit. */
static atomic_ulong verified, verified_same, verified_met, mismatches;
static HS_COLD void verify(const uintptr_t *frames, unsigned n, unsigned max, int same, uint32_t prev_id) {
  uintptr_t walked[HS_MAX_FRAMES];
  int u = hs_opt.verify_unwind > 1 ? uncached_unwind(walked, max) : -1;
  unsigned m = u >= 0 ? (unsigned)u : hs_unwind(walked, max);
  if (same) frames = hs_depot_get(prev_id, &n);
  int bad = !frames || m != n || memcmp(walked, frames, n * sizeof *frames);
  atomic_fetch_add(&verified, 1);
  if (same) atomic_fetch_add(&verified_same, 1);
  if (bad && atomic_fetch_add(&mismatches, 1) < 10) {
    unsigned i = 0;
    while (frames && i < n && i < m && walked[i] == frames[i]) i++;
    hs_warn("unwind cache mismatch: %u frames cached, %u walked, first difference at frame %u (same=%d)", n, m, i,
            same);
  }
}

void hs_unwind_verify_summary(void) {
  if (hs_opt.verify_unwind)
    hs_warn("verify_unwind: %lu captures checked, %lu reused whole, %lu met a recent walk, %lu rules read from "
            ".eh_frame and checked against libdw, %lu left to libdw, self-test agreed on %u frames, %lu mismatches",
            atomic_load(&verified), atomic_load(&verified_same), atomic_load(&verified_met),
            atomic_load(&rule_checks), atomic_load(&rules_by_libdw), selftest_agreed,
            atomic_load(&mismatches) + atomic_load(&rule_mismatches));
}

uint32_t hs_stack_capture(unsigned max) {
  uintptr_t frames[HS_MAX_FRAMES];
  /* A signal handler that interrupted this thread inside the dynamic
   * loader or libunwind: both would wait for locks the frame below holds. */
  if (HS_UNLIKELY(hs_loader_depth)) return HS_STACK_NONE;
  if (HS_UNLIKELY(selftest_pending)) run_self_test();
  /* A signal handler's capture inside a capture does without the cache. */
  struct ustate *u = us;
  if (HS_UNLIKELY(!u) && us_deferred()) us_wait++;
  if (!hs_fast_unwind || !cache || HS_UNLIKELY(walk_busy) || (HS_UNLIKELY(!u) && (us_deferred() || !(u = us_take()))))
    return hs_depot_put(frames, hs_unwind(frames, max));
  walk_busy = 1;
  int same, known;
  struct walk *w = NULL;
  uint64_t sum = 0;
  int n = cached_unwind(&same, max, &w, &sum, &known);
  if (HS_UNLIKELY(n < 0)) {
    same = known = 0;
    w = NULL;
    n = (int)hs_unwind(frames, max);
  }
  uint32_t prev_id = same ? w->id : 0;
  /* A walk's frames are the return addresses of its steps from first_out
   * on: the depot reads them there, without a copy. */
  const uintptr_t *f = w && n ? &w->s.s[w->first_out].ra : frames;
  const unsigned stride = w && n ? sizeof(struct step) / sizeof(uintptr_t) : 1;
  _Static_assert(sizeof(struct step) % sizeof(uintptr_t) == 0, "steps hold whole words");
  if (HS_UNLIKELY(hs_opt.verify_unwind)) {
    if (w && us && us->met) atomic_fetch_add(&verified_met, 1);
    for (unsigned o = 0; f != frames && o < (unsigned)n; o++) frames[o] = f[o * stride];
    verify(frames, (unsigned)n, max, same && prev_id, prev_id);
    uint64_t want;
    if (known && n && hs_depot_put_sum(frames, (unsigned)n, 1, 0, &want) && want != sum &&
        atomic_fetch_add(&mismatches, 1) < 10)
      hs_warn("unwind cache mismatch: the depot sum a walk foresaw is not its frames' sum");
  }
  uint32_t id = prev_id ? prev_id : hs_depot_put_sum(f, (unsigned)n, stride, known, &sum);
  if (w && !prev_id) {
    w->id = id;
    w->sum = sum;
  }
  walk_busy = 0;
  return id;
}

/* ---- init --------------------------------------------------------------- */

uintptr_t hs_libc_data_lo, hs_libc_data_hi;

/* libc's writable data holds malloc's own state (main_arena), found by the
 * leak check inside this range. */
static int find_libc(struct dl_phdr_info *info, size_t size, void *arg) {
  (void)size;
  (void)arg;
  const char *n = info->dlpi_name ? strrchr(info->dlpi_name, '/') : NULL;
  if (!n || strncmp(n, "/libc.so", 8)) return 0;
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type == PT_LOAD && (ph->p_flags & PF_W)) {
      hs_libc_data_lo = info->dlpi_addr + ph->p_vaddr;
      hs_libc_data_hi = hs_libc_data_lo + ph->p_memsz;
    }
  }
  return 1;
}

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
    if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X)) {
      hs_self_text_start = info->dlpi_addr + ph->p_vaddr;
      hs_self_text_end = hs_self_text_start + ph->p_memsz;
    }
  }
  return 1;
}

/* libunwind is the agent's (its fallback unwinder, for captures on signal
 * and fiber stacks): what it keeps in its data and bss are the last stacks
 * the agent walked, and a stale CFA there pointing into a fiber stack or a
 * sigaltstack the program allocated made that block, and everything its
 * dead frames pointed to, look reachable or possibly lost where valgrind
 * says definitely lost. Never roots, unless the program loaded libunwind
 * itself (some object other than the agent names it in DT_NEEDED). */
struct unw_scan {
  int program_uses;
  uintptr_t lo[4], hi[4];
  int n;
};

static int is_libunwind(const char *name) {
  const char *b = name ? strrchr(name, '/') : NULL;
  b = b ? b + 1 : name;
  return b && !strncmp(b, "libunwind.so", 12);
}

static int find_unwind_users(struct dl_phdr_info *info, size_t size, void *arg) {
  (void)size;
  struct unw_scan *u = arg;
  if (is_libunwind(info->dlpi_name)) {
    for (int i = 0; i < info->dlpi_phnum && u->n < 4; i++) {
      const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
      if (ph->p_type == PT_LOAD && (ph->p_flags & PF_W)) {
        u->lo[u->n] = info->dlpi_addr + ph->p_vaddr;
        u->hi[u->n++] = info->dlpi_addr + ph->p_vaddr + ph->p_memsz;
      }
    }
    return 0;
  }
  int self = 0;
  const ElfW(Dyn) *dyn = NULL;
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    uintptr_t a = info->dlpi_addr + ph->p_vaddr;
    if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X) && a <= hs_self_text_start && hs_self_text_start < a + ph->p_memsz)
      self = 1;
    if (ph->p_type == PT_DYNAMIC) dyn = (const ElfW(Dyn) *)a;
  }
  /* The vDSO's dynamic section is not relocated; it needs nothing anyway. */
  if (self || !dyn || !info->dlpi_name || !strncmp(info->dlpi_name, "linux-vdso", 10)) return 0;
  const char *strtab = NULL;
  for (const ElfW(Dyn) *d = dyn; d->d_tag != DT_NULL; d++)
    if (d->d_tag == DT_STRTAB) {
      uintptr_t p = d->d_un.d_ptr;
      /* glibc relocates the entry in place on x86-64; not where .dynamic is read-only */
      strtab = (const char *)(p < info->dlpi_addr ? p + info->dlpi_addr : p);
    }
  if (!strtab) return 0;
  for (const ElfW(Dyn) *d = dyn; d->d_tag != DT_NULL; d++)
    if (d->d_tag == DT_NEEDED && is_libunwind(strtab + d->d_un.d_val)) u->program_uses = 1;
  return 0;
}

/* libgcc's unwinder (libgcc_s, loaded with libunwind): the self-test's
 * reference. libunwind's first walk of a process took 170-200 us (its
 * caches and locks set up, each frame's CFI found through
 * dl_iterate_phdr), most of the first capture's 220-250 us; libgcc's finds
 * CFI with _dl_find_object and took about 20 us. Its own _Unwind_* names
 * are libunwind's too: both are taken from libgcc_s's handle. 0 when it is
 * not loaded. */
struct gcc_walk {
  void **buf;
  int n, want;
};
static int (*gcc_trace)(int (*)(void *, void *), void *);
static uintptr_t (*gcc_get_ip)(void *), (*gcc_get_cfa)(void *);
static int gcc_tried;
static int gcc_load(void) {
  if (!gcc_tried) {
    gcc_tried = 1;
    void *h;
    IN_LOADER(h = dlopen("libgcc_s.so.1", RTLD_NOW | RTLD_NOLOAD));
    if (h) {
      gcc_trace = (int (*)(int (*)(void *, void *), void *))dlsym(h, "_Unwind_Backtrace");
      gcc_get_ip = (uintptr_t(*)(void *))dlsym(h, "_Unwind_GetIP");
      gcc_get_cfa = (uintptr_t(*)(void *))dlsym(h, "_Unwind_GetCFA");
      dlclose(h);
    }
  }
  return gcc_trace && gcc_get_ip && gcc_get_cfa;
}
static int gcc_frame(void *ctx, void *arg) {
  struct gcc_walk *w = arg;
  uintptr_t ip = gcc_get_ip(ctx);
  if (!ip || w->n >= w->want) return 5; /* _URC_END_OF_STACK: stop */
  w->buf[w->n++] = (void *)ip;
  return 0; /* _URC_NO_REASON */
}
static unsigned gcc_unwind(uintptr_t *frames, unsigned max) {
  if (!gcc_load()) return 0;
  void *buf[SLOW_BUF];
  struct gcc_walk w = {buf, 0, (int)slow_want(max)};
  IN_LOADER(gcc_trace(gcc_frame, &w));
  return drop_own_frames(buf, w.n, frames, max);
}

/* The CFA of the innermost frame of the function [lo, hi) on this stack:
 * its caller's stack pointer. A return address is one past its call, and
 * a call that never returns may be a function's last instruction.
 * libgcc's _Unwind_GetCFA gives a frame's stack pointer at its call (the
 * CFA of the frame below): the caller's is the one wanted. 0 when libgcc's
 * unwinder is not there or the function is not on the stack. */
struct cfa_walk {
  uintptr_t lo, hi, cfa;
  int frames, found;
};
static int cfa_frame(void *ctx, void *arg) {
  struct cfa_walk *w = arg;
  if (w->found) { /* the caller of the function's frame */
    w->cfa = gcc_get_cfa(ctx);
    return 5;
  }
  uintptr_t ip = gcc_get_ip(ctx);
  if (!ip || ++w->frames > 32) return 5;
  if (ip - 1 >= w->lo && ip - 1 < w->hi) w->found = 1;
  return 0;
}
uintptr_t hs_unwind_cfa_of(uintptr_t lo, uintptr_t hi) {
  if (!hs_loader_usable() || !gcc_load()) return 0;
  struct cfa_walk w = {lo, hi, 0, 0, 0};
  IN_LOADER(gcc_trace(cfa_frame, &w));
  return w.cfa;
}

__attribute__((noinline)) static int self_test(void) {
  uintptr_t a[HS_MAX_FRAMES], b[HS_MAX_FRAMES];
  unsigned m = gcc_unwind(b, HS_MAX_FRAMES);
  if (!m) m = slow_unwind_by(b, HS_MAX_FRAMES, 1);
  /* At start-up the stack ends in the dynamic linker's entry code, whose
   * CFI the cache does not model (captures there go to libunwind): compare
   * the frames above it. */
  if (m < 2) return -1;
  int n = fast_unwind(a, m - 1);
  if (n != (int)m - 1) return -1;
  for (int i = 0; i < n; i++)
    if (a[i] != b[i]) return -1;
  selftest_agreed = (unsigned)n;
  return 0;
}

void hs_unwind_init(void) {
  dl_iterate_phdr(find_self, (void *)(uintptr_t)&hs_unwind_init);
  dl_iterate_phdr(find_libc, NULL);
  struct unw_scan us_scan = {0};
  dl_iterate_phdr(find_unwind_users, &us_scan);
  if (!us_scan.program_uses)
    for (int i = 0; i < us_scan.n; i++) hs_register_own_range(us_scan.lo[i], us_scan.hi[i]);
  if (hs_fast_unwind) {
    atomic_store(&cache, rules_new(1u << RULES_MIN_BITS));
    selftest_pending = atomic_load(&cache) != NULL;
  }
}
