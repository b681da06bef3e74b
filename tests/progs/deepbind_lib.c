/* A plugin that binds to its own symbols first (RTLD_DEEPBIND): which() is
 * its own, and its malloc and free are glibc's, past an LD_PRELOAD agent. */
#include <stdlib.h>
const char *which(void) { return "plugin's own"; }
const char *plugin_which(void) { return which(); }
void *plugin_alloc(size_t n) { return malloc(n); }
void plugin_free(void *p) { free(p); }
/* a leak of the plugin's own: no block of it ever reaches the program */
static void *volatile kept;
void plugin_leak(void) {
  kept = malloc(200);
  kept = NULL;
}
