/* N threads (argv[1], default 1100) blocked forever in read(2), each holding
 * the only pointer to its block in a register (r12): the stack below it is
 * wiped and the read is a raw syscall, so no copy is left in memory. Only a
 * thread stopped for the check gives its registers; main exits.
 * With a second argument "rss" it also prints its peak resident memory
 * (VmHWM, KiB): the agent's per-thread state must not multiply it. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int fds[2];

__attribute__((noinline)) static void wipe_below(void) {
  volatile char buf[16384]; /* the dead frames of malloc, which held the pointer */
  for (size_t i = 0; i < sizeof buf; i++) buf[i] = 0;
}

__attribute__((noinline)) static void *stuck(void *a) {
  (void)a;
  register void *p asm("r12") = malloc(48);
  asm volatile("" : "+r"(p));
  wipe_below();
  char c;
  long ret;
  asm volatile("syscall" : "=a"(ret) : "0"(0L), "D"((long)fds[0]), "S"(&c), "d"(1L), "r"(p) : "rcx", "r11", "memory");
  return (void *)ret;
}

int main(int argc, char **argv) {
  int n = argc > 1 ? atoi(argv[1]) : 1100;
  if (pipe(fds)) return 1;
  pthread_attr_t at;
  pthread_attr_init(&at);
  pthread_attr_setstacksize(&at, 64 * 1024);
  for (int i = 0; i < n; i++) {
    pthread_t t;
    if (pthread_create(&t, &at, stuck, NULL)) {
      printf("create failed at %d\n", i);
      return 2;
    }
  }
  sleep(1);
  printf("%d threads\n", n);
  if (argc > 2 && !strcmp(argv[2], "rss")) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    while (f && fgets(line, sizeof line, f))
      if (!strncmp(line, "VmHWM:", 6)) printf("rss %ld\n", atol(line + 6));
    if (f) fclose(f);
  }
  return 0;
}
