/* libFuzzer target: suppression files and pattern matching. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/report/suppress.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct hs_supp_list l = {0};
  char err[512];
  hs_supp_parse(&l, (const char *)data, size, "fuzz.supp", err, sizeof err);
  char *s = malloc(size + 1);
  memcpy(s, data, size);
  s[size] = 0;
  static const char *const subjects[] = {"leak_here", "Foo::bar(int)", "/usr/lib/x86_64-linux-gnu/libc.so.6", ""};
  for (size_t i = 0; i < l.n; i++) {
    for (size_t k = 0; k < sizeof subjects / sizeof *subjects; k++) hs_supp_match(l.v[i].pattern, subjects[k]);
    hs_supp_match(l.v[i].pattern, s);
  }
  hs_supp_match(s, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab");
  free(s);
  hs_supp_free(&l);
  return 0;
}
