/* exit() (or _exit() with argv[1] "_exit") on a thread created with a
 * 64 KiB stack, after leaking 77 bytes there. Symbolizing the report takes
 * more stack than that, and the report overflowed it: the program died of
 * SIGSEGV instead of exiting with status 4. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void *volatile keep;
static int use_exit_;
static void *run(void *a) {
  (void)a;
  keep = malloc(77);
  keep = NULL; /* definitely lost */
  if (use_exit_) _exit(4);
  exit(4);
}
int main(int argc, char **argv) {
  use_exit_ = argc > 1 && !strcmp(argv[1], "_exit");
  pthread_attr_t at;
  pthread_attr_init(&at);
  pthread_attr_setstacksize(&at, 65536);
  pthread_t t;
  pthread_create(&t, &at, run, NULL);
  pthread_join(t, NULL);
  return 0;
}
