/* Symbolization with elfutils: function (C++ demangled), file, line,
 * inlined frames and module for addresses of a live process. */
#ifndef HS_SYMBOLIZE_H
#define HS_SYMBOLIZE_H
#include <stdint.h>
#include <sys/types.h>

struct hs_frame {
  uintptr_t addr;       /* the address looked up (return address - 1) */
  const char *function; /* demangled; NULL when unknown */
  const char *file;     /* as recorded in DWARF; NULL when unknown */
  int line;
  const char *module;   /* path of the ELF file */
  int inlined;          /* 1: this frame was inlined into the next one */
};

struct hs_symbolizer;
struct hs_symbolizer *hs_sym_open_pid(pid_t pid);
void hs_sym_close(struct hs_symbolizer *s);
/* Expands one address into its inlined frames, innermost first. The
 * returned array is owned by the symbolizer (cached) and stays valid until
 * hs_sym_close. Returns the count (>= 1). */
int hs_sym_lookup(struct hs_symbolizer *s, uintptr_t addr, const struct hs_frame **out);
const char *hs_basename(const char *path);
/* The module and data symbol (a global variable) holding addr; symbol is
 * NULL when no symbol covers it. Returns -1 outside every module. */
int hs_sym_data(struct hs_symbolizer *s, uintptr_t addr, const char **symbol, const char **module);
/* The function symbol (from the symbol table, not demangled) and module
 * holding code address addr, without line tables or inlined frames: no
 * DWARF is read (a detached debug file's compressed sections cost 60 ms to
 * open for libc). Returns -1 outside every module. */
int hs_sym_function(struct hs_symbolizer *s, uintptr_t addr, const char **function, const char **module);
/* The module holding addr: its path, address range and build ID (hex, or
 * NULL; valid until the next call on this thread). Returns -1 if none. */
int hs_sym_module(struct hs_symbolizer *s, uintptr_t addr, const char **path, uintptr_t *start, uintptr_t *end,
                  const char **build_id);
#endif
