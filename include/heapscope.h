/* heapscope's optional in-program API.
 *
 * A program can include this header and call these functions whether or not
 * it runs under heapscope: the agent's entry points are weak references, and
 * without the agent every call returns -1 (or does nothing). No link flag is
 * needed.
 *
 *   #include <heapscope.h>
 *   ...
 *   heapscope_ignore(cache_arena);        // never report this block
 *   if (heapscope_leak_check() > 0) ...   // leaks so far, printed to stderr
 */
#ifndef HEAPSCOPE_H
#define HEAPSCOPE_H

#ifdef __cplusplus
extern "C" {
#endif

/* The agent's entry points (libheapscope.so). Prefer the wrappers below. */
extern int __heapscope_leak_check(void) __attribute__((weak));
extern int __heapscope_ignore(const void *block) __attribute__((weak));
extern int __heapscope_active(void) __attribute__((weak));
extern int __heapscope_dump(const char *path) __attribute__((weak));
extern int __heapscope_http_start(const char *addr) __attribute__((weak));
extern unsigned long __heapscope_threads_mark(void) __attribute__((weak));
extern int __heapscope_threads_check(unsigned long mark, int timeout_ms, char *report, __SIZE_TYPE__ len)
    __attribute__((weak));

/* 1 when the program runs under the heapscope agent, else 0. */
static inline int heapscope_active(void) { return __heapscope_active ? __heapscope_active() : 0; }

/* Runs a leak check now, with the options of the run (kinds shown,
 * suppressions), and prints its report to stderr. Returns the bytes
 * definitely, indirectly and possibly lost (unsuppressed, of the shown
 * kinds), or -1 without the agent. The check at exit still happens. */
static inline int heapscope_leak_check(void) { return __heapscope_leak_check ? __heapscope_leak_check() : -1; }

/* Never reports the live heap block that starts at `block`, and treats its
 * contents as a root (what it points to is reachable). Returns 0, or -1 when
 * the agent is absent or `block` is not the start of a live block. */
static inline int heapscope_ignore(const void *block) { return __heapscope_ignore ? __heapscope_ignore(block) : -1; }

/* Writes a heap profile (pprof, gzipped) of this moment to `path`.
 * Returns 0, or -1 without the agent or when the file cannot be written. */
static inline int heapscope_dump(const char *path) { return __heapscope_dump ? __heapscope_dump(path) : -1; }

/* Starts the /debug/pprof/ endpoint on "HOST:PORT" (NULL: 127.0.0.1:6060),
 * as --http does. Returns 0, or -1 (a warning says why; the program runs on). */
static inline int heapscope_http_start(const char *addr) {
  return __heapscope_http_start ? __heapscope_http_start(addr) : -1;
}

/* Threads, like Go's goleak: remember the threads that exist now ... */
static inline unsigned long heapscope_threads_mark(void) {
  return __heapscope_threads_mark ? __heapscope_threads_mark() : 0;
}

/* ... and later, wait up to timeout_ms for every thread created since the
 * mark to end and be joined (or detached). Returns how many did not: those
 * still running and those ended but never joined, described in `report`
 * (what each is blocked on, its stack and where it was created) when given.
 * Returns -1 without the agent, with "not available" in `report`. */
static inline int heapscope_threads_check(unsigned long mark, int timeout_ms, char *report, __SIZE_TYPE__ len) {
  if (__heapscope_threads_check) return __heapscope_threads_check(mark, timeout_ms, report, len);
  if (report && len) {
    const char *m = "heapscope: not available (the program runs without the heapscope agent)\n";
    __SIZE_TYPE__ i = 0;
    for (; m[i] && i + 1 < len; i++) report[i] = m[i];
    report[i] = 0;
  }
  return -1;
}

#ifdef __cplusplus
}
#endif
#endif
