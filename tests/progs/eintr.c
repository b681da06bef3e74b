/* Threads blocked in calls that a signal handler interrupts with EINTR
 * whatever SA_RESTART says (poll, select, epoll_wait, nanosleep), and in
 * read (which SA_RESTART restarts), while the program runs a leak check.
 * Each thread reports how its call ended: "ok", or "EINTR" when the check
 * made it fail. A program that treats EINTR as an error would print it or
 * exit: the check must not be visible to it.
 * usage: eintr [seccomp|trap]  (seccomp: a filter refuses ptrace with EPERM,
 * as a container's policy may; trap: it raises SIGSYS instead, which the
 * program handles, as sandboxes do. The agent must stop the threads anyway,
 * and the program's handler must never run for the agent's own call.) */
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/select.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "../../include/heapscope.h"

enum { POLL, SELECT, EPOLL, NANOSLEEP, READ, N };
static const char *names[N] = {"poll", "select", "epoll", "nanosleep", "read"};
static int wake[N][2], ready[2];
static const char *result[N];

static const char *how(int r) { return r >= 0 ? "ok" : errno == EINTR ? "EINTR" : strerror(errno); }

static void *run(void *arg) {
  int k = (int)(long)arg, fd = wake[k][0], r = 0;
  char c = 'r';
  write(ready[1], &c, 1);
  switch (k) {
  case POLL: {
    struct pollfd p = {fd, POLLIN, 0};
    r = poll(&p, 1, 10000);
    break;
  }
  case SELECT: {
    fd_set s;
    FD_ZERO(&s);
    FD_SET(fd, &s);
    struct timeval tv = {10, 0};
    r = select(fd + 1, &s, NULL, NULL, &tv);
    break;
  }
  case EPOLL: {
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN};
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    r = epoll_wait(ep, &ev, 1, 10000);
    break;
  }
  case NANOSLEEP: {
    struct timespec ts = {0, 600000000};
    r = nanosleep(&ts, NULL);
    break;
  }
  case READ:
    r = (int)read(fd, &c, 1);
    break;
  }
  result[k] = how(r);
  return NULL;
}

static void on_sigsys(int sig) {
  (void)sig;
  static const char m[] = "the program's SIGSYS handler ran\n";
  write(2, m, sizeof m - 1);
}

static void refuse_ptrace(int trap) {
  if (trap) signal(SIGSYS, on_sigsys);
  struct sock_filter f[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_ptrace, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, trap ? SECCOMP_RET_TRAP : SECCOMP_RET_ERRNO | EPERM),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog prog = {sizeof f / sizeof f[0], f};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog)) {
    perror("seccomp");
    exit(1);
  }
}

int main(int argc, char **argv) {
  if (argc > 1 && (!strcmp(argv[1], "seccomp") || !strcmp(argv[1], "trap"))) refuse_ptrace(!strcmp(argv[1], "trap"));
  if (pipe(ready)) return 1;
  pthread_t t[N];
  for (int k = 0; k < N; k++) {
    if (pipe(wake[k])) return 1;
    pthread_create(&t[k], NULL, run, (void *)(long)k);
  }
  char c;
  for (int k = 0; k < N; k++) read(ready[0], &c, 1);
  usleep(100000); /* into their calls */
  char *volatile lost = malloc(77);
  lost = NULL;
  (void)lost;
  int leaks = heapscope_leak_check();
  for (int k = 0; k < N; k++) write(wake[k][1], "w", 1);
  for (int k = 0; k < N; k++) pthread_join(t[k], NULL);
  for (int k = 0; k < N; k++) printf("%s=%s ", names[k], result[k]);
  printf("check=%d\n", leaks);
  return 0;
}
