/* The exit check with and without its helper thread: with "noclone", clone()
 * is forbidden first (a seccomp filter, as sandboxes install) and the check
 * must do all its work on the calling thread. Builds a list
 * of 100,000 reachable blocks (so that the check lists them in earnest) and
 * leaks 10 blocks of 100 bytes. */
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

struct node { struct node *next; char pad[56]; };
struct node *head;

int main(int argc, char **argv) {
  struct sock_filter f[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_clone, 2, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_clone3, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
  };
  struct sock_fprog prog = {sizeof f / sizeof f[0], f};
  if (argc < 2 || strcmp(argv[1], "noclone")) goto work;
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog)) {
    perror("seccomp");
    return 2;
  }
  if (syscall(SYS_clone, 0, 0, 0, 0, 0) != -1 || errno != EPERM) return 3; /* the filter works */
work:
  for (int i = 0; i < 100000; i++) {
    struct node *n = malloc(sizeof *n);
    n->next = head;
    head = n;
  }
  for (int i = 0; i < 10; i++) {
    volatile char *p = malloc(100);
    p[0] = 1;
  }
  puts("done");
  return 0;
}
