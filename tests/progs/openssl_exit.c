/* A program that uses OpenSSL's libcrypto, which tears itself down in an
 * atexit handler (OPENSSL_cleanup), and leaks a block. heapscope reports
 * after the program's atexit handlers; its symbolizer must not start
 * anything that needs OpenSSL again (libdw's debuginfod client initializes
 * curl, and curl libssh2, which takes OpenSSL's freed locks: a crash at exit
 * before the fix). Loaded with dlopen: no OpenSSL headers needed. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

void *volatile sink; /* defeats dead-store elimination; cleared after use */

__attribute__((noinline)) static void leak(void) {
  sink = malloc(42);
  sink = NULL;
}

int main(void) {
  void *h = dlopen("libcrypto.so.3", RTLD_NOW);
  if (!h) {
    fprintf(stderr, "no libcrypto.so.3: %s\n", dlerror());
    return 2;
  }
  int (*init)(unsigned long long, const void *) =
      (int (*)(unsigned long long, const void *))dlsym(h, "OPENSSL_init_crypto");
  if (!init || !init(0, NULL)) return 3;
  /* ENGINE's global lock, which OPENSSL_cleanup frees (ssh gets there
   * through its engine set-up) */
  void *(*engine_first)(void) = (void *(*)(void))dlsym(h, "ENGINE_get_first");
  if (engine_first) engine_first();
  leak();
  puts("done");
  return 0;
}
