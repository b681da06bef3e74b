/* Options: one X-macro table (hs.h) generates the struct, the defaults and
 * the parser. Read once from HEAPSCOPE_OPTIONS at start, frozen after. */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hs.h"

struct hs_options hs_opt;

void hs_options_defaults(struct hs_options *o) {
#define HS_OPT_DEF(name, type, def, help) o->name = (HS_OPT_T_##type)(def);
  HS_OPTIONS(HS_OPT_DEF)
#undef HS_OPT_DEF
}

int hs_parse_size(const char *s, unsigned long *out) {
  if (!*s) return -1;
  unsigned long v = 0;
  const char *p = s;
  for (; *p >= '0' && *p <= '9'; p++) {
    if (v > (~0ul - 9) / 10) return -1;
    v = v * 10 + (unsigned long)(*p - '0');
  }
  if (p == s) return -1;
  unsigned shift = 0;
  switch (*p) {
  case 'k': case 'K': shift = 10; p++; break;
  case 'm': case 'M': shift = 20; p++; break;
  case 'g': case 'G': shift = 30; p++; break;
  default: break;
  }
  if (*p == 'i' || *p == 'B') p++;
  if (*p == 'B') p++;
  if (*p) return -1;
  if (shift && v > (~0ul >> shift)) return -1;
  *out = v << shift;
  return 0;
}

/* "definite,indirect,possible,reachable", "all" or "none"; *ok = 0 on error.
 * '+' and '/' also separate, since ',' separates HEAPSCOPE_OPTIONS items. */
unsigned hs_parse_kinds(const char *s, int *ok) {
  static const char *const names[] = {"definite", "indirect", "possible", "reachable"};
  unsigned mask = 0;
  *ok = 1;
  if (!strcmp(s, "all")) return 0xf;
  if (!strcmp(s, "none")) return 0;
  const char *p = s;
  while (*p) {
    size_t n = strcspn(p, ",+/");
    int found = 0;
    for (unsigned k = 0; k < 4; k++)
      if (strlen(names[k]) == n && !strncmp(p, names[k], n)) {
        mask |= 1u << k;
        found = 1;
      }
    if (!found) { *ok = 0; return 0; }
    p += n;
    if (*p) p++;
  }
  return mask;
}

static int parse_bool(const char *v, int *out) {
  if (!strcmp(v, "1") || !strcmp(v, "yes") || !strcmp(v, "true")) { *out = 1; return 0; }
  if (!strcmp(v, "0") || !strcmp(v, "no") || !strcmp(v, "false")) { *out = 0; return 0; }
  return -1;
}

static int parse_long(const char *v, long *out) {
  char *end;
  long r = strtol(v, &end, 10);
  if (!*v || *end) return -1;
  *out = r;
  return 0;
}

static int set_opt(struct hs_options *o, const char *key, size_t keylen, const char *val) {
  int ok = 1;
#define KEY(name) (keylen == sizeof(#name) - 1 && !strncmp(key, #name, keylen))
#define HS_SET_BOOL(name) { int b; if (parse_bool(val, &b)) return -1; o->name = b; }
#define HS_SET_INT(name) { long l; if (parse_long(val, &l)) return -1; o->name = l; }
#define HS_SET_SIZE(name) { unsigned long z; if (hs_parse_size(val, &z)) return -1; o->name = z; }
#define HS_SET_STR(name) { o->name = hs_strdup(val); }
#define HS_SET_KINDS(name) { o->name = hs_parse_kinds(val, &ok); if (!ok) return -1; }
#define HS_SET_MODE(name) { if (!strcmp(val, "full")) o->name = HS_MODE_FULL; \
    else if (!strcmp(val, "sample")) o->name = HS_MODE_SAMPLE; else return -1; }
#define HS_SET_LEAKCHECK(name) { if (!strcmp(val, "full") || !strcmp(val, "yes")) o->name = HS_LC_FULL; \
    else if (!strcmp(val, "summary")) o->name = HS_LC_SUMMARY; \
    else if (!strcmp(val, "no")) o->name = HS_LC_NO; else return -1; }
#define HS_OPT_SET(name, type, def, help) if (KEY(name)) { HS_SET_##type(name); return 0; }
  HS_OPTIONS(HS_OPT_SET)
#undef HS_OPT_SET
  return -2;
}

/* Suppression files may be given several times: repeated keys append with ':'. */
int hs_options_parse(const char *s, struct hs_options *o, char *err, size_t errlen) {
  if (!s) return 0;
  while (*s) {
    size_t n = strcspn(s, ",");
    char item[4096];
    if (n >= sizeof item) {
      hs_snprintf(err, errlen, "option too long in HEAPSCOPE_OPTIONS");
      return -1;
    }
    memcpy(item, s, n);
    item[n] = 0;
    s += n;
    if (*s) s++;
    if (!n) continue;
    char *eq = strchr(item, '=');
    if (!eq) {
      hs_snprintf(err, errlen, "HEAPSCOPE_OPTIONS: '%s' is not key=value", item);
      return -1;
    }
    *eq = 0;
    const char *val = eq + 1;
    for (char *p = item; *p; p++)
      if (*p == '-') *p = '_';
    if (!strcmp(item, "suppressions") && o->suppressions && *o->suppressions) {
      char joined[8192];
      hs_snprintf(joined, sizeof joined, "%s:%s", o->suppressions, val);
      o->suppressions = hs_strdup(joined);
      continue;
    }
    int r = set_opt(o, item, strlen(item), val);
    if (r == -2) {
      hs_snprintf(err, errlen, "HEAPSCOPE_OPTIONS: unknown option '%s'", item);
      return -1;
    }
    if (r) {
      hs_snprintf(err, errlen, "HEAPSCOPE_OPTIONS: bad value '%s' for %s", val, item);
      return -1;
    }
  }
  return 0;
}

int hs_is_root_process(void) { return hs_opt.root_pid == 0 || getpid() == (pid_t)hs_opt.root_pid; }
