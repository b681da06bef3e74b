/* A daemon's life in a chroot: leaks a block, starts a thread that blocks
 * for good on a pipe, chroots into an empty directory (argv[1]), forks a
 * child that leaks another block and exits, and exits itself with the
 * thread still blocked. Nothing the report needs (/proc, the report
 * library, the ELF and debug files, --report's directory) is inside the new
 * root. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "blocked_thread.h"

void *volatile keep;

__attribute__((noinline)) static void leak_before(void) {
  char *p = malloc(4242);
  memset(p, 1, 4242);
  keep = p;
  keep = 0;
}

__attribute__((noinline)) static void leak_in_child(void) {
  char *p = malloc(2121);
  memset(p, 2, 2121);
  keep = p;
  keep = 0;
}

int main(int argc, char **argv) {
  if (argc < 2 || blocked_pipes()) return 2;
  leak_before();
  pthread_t t;
  if (pthread_create(&t, NULL, blocked, NULL)) return 2;
  wait_blocked();
  if (chroot(argv[1]) || chdir("/")) {
    perror("chroot");
    return 2;
  }
  pid_t pid = fork();
  if (pid == 0) {
    leak_in_child();
    exit(0);
  }
  int st;
  if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st)) return 3;
  printf("jailed\n");
  return 0;
}
