/* The unwind rule at a code address, read from the module's .eh_frame in
 * memory (through its .eh_frame_hdr search table), for the rule cache of
 * unwind.c. It replaces libdw for the common case: libdw had to be loaded
 * (about 0.35 ms), each module's file opened and its CFI indexed (0.1-0.3
 * ms), and each rule cost about 1 us; a process paid ~1 ms for its first
 * few hundred captures. What it does not model (CFA expressions, encodings
 * other than the ones every linker writes, DW_CFA_set_loc, unknown
 * augmentations or opcodes) it leaves to libdw: HS_EH_UNKNOWN. Where it
 * answers, it answers what unwind.c's libdw reading answers; verify_unwind
 * checks each rule against libdw (tests/programs.sh).
 *
 * Every read is bounded by the loaded segment that holds .eh_frame_hdr
 * (.eh_frame lies beside it); the caller makes sure the module stays
 * loaded (unwind.c). */
#define _GNU_SOURCE
#include <dwarf.h>
#include <link.h>
#include <stdint.h>
#include <string.h>

#include "hs.h"

struct rd {
  const uint8_t *p, *end;
  int bad;
};

static uint64_t u8(struct rd *r) {
  if (r->p + 1 > r->end) return r->bad = 1, 0;
  return *r->p++;
}
static uint64_t fixed(struct rd *r, int n) {
  if (r->p + n > r->end) return r->bad = 1, 0;
  uint64_t v = 0;
  memcpy(&v, r->p, (size_t)n); /* little-endian */
  r->p += n;
  return v;
}
static uint64_t uleb(struct rd *r) {
  uint64_t v = 0;
  for (int shift = 0;; shift += 7) {
    if (r->p >= r->end || shift > 63) return r->bad = 1, 0;
    uint8_t b = *r->p++;
    v |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) return v;
  }
}
static int64_t sleb(struct rd *r) {
  uint64_t v = 0;
  int shift = 0;
  uint8_t b;
  do {
    if (r->p >= r->end || shift > 63) return r->bad = 1, 0;
    b = *r->p++;
    v |= (uint64_t)(b & 0x7f) << shift;
    shift += 7;
  } while (b & 0x80);
  if (shift < 64 && (b & 0x40)) v |= ~(uint64_t)0 << shift;
  return (int64_t)v;
}

/* A pointer in encoding enc: absolute or relative to itself (pcrel) or to
 * datarel_base. Anything else is unknown (r->bad). */
static uintptr_t encoded(struct rd *r, uint8_t enc, uintptr_t datarel_base) {
  if (enc == DW_EH_PE_omit) return r->bad = 1, 0;
  uintptr_t at = (uintptr_t)r->p;
  uint64_t v;
  switch (enc & 0x0f) {
  case DW_EH_PE_absptr: v = fixed(r, 8); break;
  case DW_EH_PE_uleb128: v = uleb(r); break;
  case DW_EH_PE_udata2: v = fixed(r, 2); break;
  case DW_EH_PE_udata4: v = fixed(r, 4); break;
  case DW_EH_PE_udata8: v = fixed(r, 8); break;
  case DW_EH_PE_sleb128: v = (uint64_t)sleb(r); break;
  case DW_EH_PE_sdata2: v = (uint64_t)(int64_t)(int16_t)fixed(r, 2); break;
  case DW_EH_PE_sdata4: v = (uint64_t)(int64_t)(int32_t)fixed(r, 4); break;
  case DW_EH_PE_sdata8: v = fixed(r, 8); break;
  default: return r->bad = 1, 0;
  }
  switch (enc & 0x70) {
  case DW_EH_PE_absptr: break;
  case DW_EH_PE_pcrel: v += at; break;
  case DW_EH_PE_datarel: v += datarel_base; break;
  default: return r->bad = 1, 0;
  }
  if (enc & DW_EH_PE_indirect) return r->bad = 1, 0;
  return (uintptr_t)v;
}

/* A register's rule, for the two unwind.c keeps: rbp (6) and the return
 * address (16). */
enum { RU_UNSPEC, RU_SAME, RU_UNDEF, RU_OFFSET, RU_OTHER };
struct regrule {
  uint8_t kind;
  int64_t off; /* RU_OFFSET: the value is saved at CFA + off */
};
struct row {
  int cfa_reg;
  int64_t cfa_off;
  struct regrule rbp, ra;
};

/* Runs CFA instructions [p, end) from loc while loc <= pc. 0, or -1 for
 * something this reader does not model. */
static int run(const uint8_t *p, const uint8_t *end, uintptr_t loc, uintptr_t pc, uint64_t code_align,
               int64_t data_align, struct row *row, const struct row *initial) {
  struct row stack[16];
  int depth = 0;
  struct rd r = {p, end, 0};
  while (r.p < r.end && !r.bad) {
    uint8_t op = (uint8_t)u8(&r);
    uint64_t reg = 0;
    int64_t off = 0;
    int set = 0; /* 1: offset rule, 2: other rule, 3: restore, 4: same, 5: undefined */
    switch (op & 0xc0) {
    case DW_CFA_advance_loc:
      loc += (op & 0x3f) * code_align;
      if (pc < loc) return 0;
      continue;
    case DW_CFA_offset:
      reg = op & 0x3f;
      off = (int64_t)uleb(&r) * data_align;
      set = 1;
      break;
    case DW_CFA_restore:
      reg = op & 0x3f;
      set = 3;
      break;
    default:
      switch (op) {
      case DW_CFA_nop: continue;
      case DW_CFA_advance_loc1: loc += fixed(&r, 1) * code_align; if (pc < loc) return 0; continue;
      case DW_CFA_advance_loc2: loc += fixed(&r, 2) * code_align; if (pc < loc) return 0; continue;
      case DW_CFA_advance_loc4: loc += fixed(&r, 4) * code_align; if (pc < loc) return 0; continue;
      case DW_CFA_offset_extended: reg = uleb(&r); off = (int64_t)uleb(&r) * data_align; set = 1; break;
      case DW_CFA_offset_extended_sf: reg = uleb(&r); off = sleb(&r) * data_align; set = 1; break;
      case DW_CFA_GNU_negative_offset_extended: reg = uleb(&r); off = -(int64_t)uleb(&r) * data_align; set = 1; break;
      case DW_CFA_restore_extended: reg = uleb(&r); set = 3; break;
      case DW_CFA_undefined: reg = uleb(&r); set = 5; break;
      case DW_CFA_same_value: reg = uleb(&r); set = 4; break;
      case DW_CFA_register: reg = uleb(&r); uleb(&r); set = 2; break;
      case DW_CFA_val_offset: reg = uleb(&r); uleb(&r); set = 2; break;
      case DW_CFA_val_offset_sf: reg = uleb(&r); sleb(&r); set = 2; break;
      case DW_CFA_expression:
      case DW_CFA_val_expression: {
        reg = uleb(&r);
        uint64_t n = uleb(&r);
        if (n > (uint64_t)(r.end - r.p)) return -1;
        r.p += n;
        set = 2;
        break;
      }
      case DW_CFA_remember_state:
        if (depth == 16) return -1;
        stack[depth++] = *row;
        continue;
      case DW_CFA_restore_state: {
        if (!depth) return -1;
        /* the CFA is restored too (DWARF 5 says so; libdw and GCC agree) */
        *row = stack[--depth];
        continue;
      }
      case DW_CFA_def_cfa: row->cfa_reg = (int)uleb(&r); row->cfa_off = (int64_t)uleb(&r); continue;
      case DW_CFA_def_cfa_sf: row->cfa_reg = (int)uleb(&r); row->cfa_off = sleb(&r) * data_align; continue;
      case DW_CFA_def_cfa_register: row->cfa_reg = (int)uleb(&r); continue;
      case DW_CFA_def_cfa_offset: row->cfa_off = (int64_t)uleb(&r); continue;
      case DW_CFA_def_cfa_offset_sf: row->cfa_off = sleb(&r) * data_align; continue;
      case DW_CFA_GNU_args_size: uleb(&r); continue;
      default: return -1; /* DW_CFA_set_loc, def_cfa_expression, vendor opcodes: libdw's */
      }
    }
    if (r.bad) return -1;
    if (reg != 6 && reg != 16) continue;
    struct regrule *rr = reg == 6 ? &row->rbp : &row->ra;
    switch (set) {
    case 1: rr->kind = RU_OFFSET; rr->off = off; break;
    case 2: rr->kind = RU_OTHER; break;
    case 3: *rr = initial ? (reg == 6 ? initial->rbp : initial->ra) : (struct regrule){RU_UNSPEC, 0}; break;
    case 4: rr->kind = RU_SAME; break;
    case 5: rr->kind = RU_UNDEF; break;
    }
  }
  return r.bad ? -1 : 0;
}

/* The rule at pc in the module whose .eh_frame_hdr is at hdr, in the
 * loaded segment [lo, hi) (.eh_frame is beside it). */
int hs_eh_rule(uintptr_t pc, uintptr_t hdr, uintptr_t lo, uintptr_t hi, uint64_t *rule) {
  *rule = 0;
  if (hdr < lo || hdr + 12 > hi) return HS_EH_UNKNOWN;
  struct rd r = {(const uint8_t *)hdr, (const uint8_t *)hi, 0};
  if (u8(&r) != 1) return HS_EH_UNKNOWN;
  uint8_t ptr_enc = (uint8_t)u8(&r), count_enc = (uint8_t)u8(&r), table_enc = (uint8_t)u8(&r);
  encoded(&r, ptr_enc, hdr);
  uint64_t count = encoded(&r, count_enc, hdr);
  /* every linker writes the table as pairs of 4-byte offsets from hdr */
  if (r.bad || table_enc != (DW_EH_PE_datarel | DW_EH_PE_sdata4)) return HS_EH_UNKNOWN;
  const int32_t *table = (const int32_t *)r.p;
  if (count > (uint64_t)(hi - (uintptr_t)table) / 8) return HS_EH_UNKNOWN;
  if (!count) return HS_EH_NONE;
  /* the last entry whose start is at or below pc */
  size_t a = 0, b = count;
  while (b - a > 1) {
    size_t m = (a + b) / 2;
    if ((uintptr_t)(hdr + (intptr_t)table[2 * m]) <= pc) a = m; else b = m;
  }
  if ((uintptr_t)(hdr + (intptr_t)table[2 * a]) > pc) return HS_EH_NONE;
  uintptr_t fde = hdr + (intptr_t)table[2 * a + 1];
  if (fde < lo || fde + 8 > hi) return HS_EH_UNKNOWN;

  /* the FDE */
  r = (struct rd){(const uint8_t *)fde, (const uint8_t *)hi, 0};
  uint64_t len = fixed(&r, 4);
  if (len == 0xffffffffu) len = fixed(&r, 8);
  if (r.bad || !len || len > (uint64_t)(hi - (uintptr_t)r.p)) return HS_EH_UNKNOWN;
  const uint8_t *fde_end = r.p + len;
  r.end = fde_end;
  uintptr_t id_at = (uintptr_t)r.p;
  uint64_t cie_off = fixed(&r, 4);
  if (r.bad || !cie_off || cie_off > id_at - lo) return HS_EH_UNKNOWN;
  uintptr_t cie = id_at - cie_off;

  /* its CIE */
  struct rd c = {(const uint8_t *)cie, (const uint8_t *)hi, 0};
  uint64_t clen = fixed(&c, 4);
  if (clen == 0xffffffffu) return HS_EH_UNKNOWN;
  if (c.bad || clen > (uint64_t)(hi - (uintptr_t)c.p)) return HS_EH_UNKNOWN;
  c.end = c.p + clen;
  if (fixed(&c, 4) != 0) return HS_EH_UNKNOWN; /* not a CIE */
  uint64_t version = u8(&c);
  if (version != 1 && version != 3) return HS_EH_UNKNOWN;
  const char *aug = (const char *)c.p;
  size_t auglen = strnlen(aug, (size_t)(c.end - c.p));
  if (auglen == (size_t)(c.end - c.p)) return HS_EH_UNKNOWN;
  c.p += auglen + 1;
  uint64_t code_align = uleb(&c);
  int64_t data_align = sleb(&c);
  uint64_t ra_reg = version == 1 ? u8(&c) : uleb(&c);
  if (c.bad || ra_reg != 16) return HS_EH_UNKNOWN;
  uint8_t fde_enc = DW_EH_PE_absptr;
  int has_z = aug[0] == 'z';
  if (auglen && !has_z) return HS_EH_UNKNOWN;
  if (has_z) {
    uint64_t n = uleb(&c);
    if (c.bad || n > (uint64_t)(c.end - c.p)) return HS_EH_UNKNOWN;
    const uint8_t *aug_end = c.p + n;
    for (size_t i = 1; i < auglen; i++) {
      switch (aug[i]) {
      case 'L': u8(&c); break;
      case 'R': fde_enc = (uint8_t)u8(&c); break;
      case 'S': break; /* a signal frame: the rules are read alike (as libdw's reading does) */
      case 'P': {
        uint8_t penc = (uint8_t)u8(&c);
        encoded(&c, (uint8_t)(penc & ~DW_EH_PE_indirect), 0); /* skipped, never followed */
        break;
      }
      default: return HS_EH_UNKNOWN;
      }
    }
    if (c.bad || c.p > aug_end) return HS_EH_UNKNOWN;
    c.p = aug_end;
  }

  /* back to the FDE: its range */
  uintptr_t start = encoded(&r, fde_enc, 0);
  uintptr_t range = encoded(&r, (uint8_t)(fde_enc & 0x0f), 0);
  if (r.bad) return HS_EH_UNKNOWN;
  if (pc < start || pc - start >= range) return HS_EH_NONE;
  if (has_z) {
    uint64_t n = uleb(&r);
    if (r.bad || n > (uint64_t)(r.end - r.p)) return HS_EH_UNKNOWN;
    r.p += n;
  }

  /* The x86-64 ABI's initial rules (libdw's too): rbp keeps its value, the
   * CIE says where the return address is. */
  struct row row = {.cfa_reg = -1, .cfa_off = 0, .rbp = {RU_SAME, 0}, .ra = {RU_UNSPEC, 0}};
  if (run(c.p, c.end, start, UINTPTR_MAX, code_align, data_align, &row, NULL)) return HS_EH_UNKNOWN;
  struct row initial = row;
  if (run(r.p, r.end, start, pc, code_align, data_align, &row, &initial)) return HS_EH_UNKNOWN;

  if (row.ra.kind == RU_UNSPEC || row.rbp.kind == RU_UNSPEC) return HS_EH_UNKNOWN;
  if (row.cfa_reg != 7 && row.cfa_reg != 6) return HS_EH_NONE;
  if (row.cfa_off < INT32_MIN || row.cfa_off > INT32_MAX) return HS_EH_NONE;
  uint64_t out = (uint64_t)(uint32_t)(int32_t)row.cfa_off | (row.cfa_reg == 6 ? HS_RULE_BASE_RBP : 0);
  if (row.ra.kind == RU_UNDEF) out |= HS_RULE_END;
  else if (row.ra.kind != RU_OFFSET || row.ra.off != -8) return HS_EH_NONE;
  if (row.rbp.kind == RU_SAME || row.rbp.kind == RU_UNDEF) {
    out |= HS_RULE_RBP_SAME;
  } else if (row.rbp.kind == RU_OFFSET && row.rbp.off >= INT16_MIN && row.rbp.off <= INT16_MAX) {
    out |= (uint64_t)(uint16_t)(int16_t)row.rbp.off << 40;
  } else {
    return HS_EH_NONE;
  }
  *rule = out | HS_RULE_VALID;
  return HS_EH_RULE;
}
