/* libFuzzer target: HEAPSCOPE_OPTIONS, sizes and leak kinds. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/agent/hs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *s = malloc(size + 1);
  memcpy(s, data, size);
  s[size] = 0;
  struct hs_options o;
  char err[256];
  hs_options_defaults(&o);
  hs_options_parse(s, &o, err, sizeof err);
  unsigned long v;
  hs_parse_size(s, &v);
  int ok;
  hs_parse_kinds(s, &ok);
  free(s);
  return 0;
}
