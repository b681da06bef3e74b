/* A program whose behaviour the CLI tests choose with argv[1]:
 *   out      prints to stdout and stderr, leaks, exits 7
 *   clean    allocates and frees everything, exits 0
 *   _exit    leaks and calls _exit(4)
 *   signal   leaks and dies of SIGTERM
 *   spin     leaves two threads spinning and one blocked, returns 0
 *   deep     leaks at the bottom of a 20-deep call chain
 *   closeerr leaks, then closes stdout and stderr in an atexit handler, as
 *            coreutils' close_stdout does
 *   nullerr  points stderr at /dev/null, leaks
 *   closeall closes every descriptor from 3 up, leaks
 *   dataerr  closes every descriptor from 2 up, opens argv[2] as fd 2,
 *            writes "data" there, leaks
 *   pipechild runs itself as "leakerr" with its stderr into a pipe, as gdb
 *            runs `iconv -l`, and prints what came through the pipe
 *   leakerr  leaks 35 bytes, writes one line to stderr
 *   opendata started without fd 2: opens argv[2] (it becomes fd 2), writes
 *            "data" there, leaks */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

void *volatile sink;
__attribute__((noinline)) void leak_here(size_t n) {
  sink = malloc(n);
  sink = NULL;
}
__attribute__((noinline)) int deep(int n) {
  if (n == 0) {
    leak_here(48);
    return 0;
  }
  return deep(n - 1) + 1;
}
static void close_std(void) {
  fclose(stdout);
  fclose(stderr);
}
static void *spinner(void *a) {
  for (volatile unsigned long i = 0;; i++) (void)a;
  return NULL;
}
static void *blocker(void *a) {
  pause();
  return a;
}

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "clean";
  if (!strcmp(mode, "out")) {
    printf("line one to stdout\n");
    fprintf(stderr, "line one to stderr\n");
    for (int i = 0; i < 1000; i++) printf("%d ", i);
    printf("\n");
    leak_here(123);
    fprintf(stderr, "line two to stderr\n");
    return 7;
  }
  if (!strcmp(mode, "clean")) {
    char *p = malloc(100);
    sink = p;
    free(p);
    printf("clean\n");
    return 0;
  }
  if (!strcmp(mode, "_exit")) {
    leak_here(77);
    printf("buffered and lost by _exit, as without heapscope");
    _exit(4);
  }
  if (!strcmp(mode, "signal")) {
    leak_here(10);
    raise(SIGTERM);
    return 0;
  }
  if (!strcmp(mode, "spin")) {
    pthread_t t;
    pthread_create(&t, NULL, spinner, NULL);
    pthread_create(&t, NULL, spinner, NULL);
    pthread_create(&t, NULL, blocker, NULL);
    usleep(20000);
    leak_here(5);
    return 0;
  }
  if (!strcmp(mode, "deep")) return deep(20);
  if (!strcmp(mode, "closeerr")) {
    atexit(close_std);
    leak_here(31);
    printf("closeerr\n");
    return 0;
  }
  if (!strcmp(mode, "nullerr")) {
    freopen("/dev/null", "w", stderr);
    leak_here(32);
    fprintf(stderr, "to /dev/null\n");
    return 0;
  }
  if (!strcmp(mode, "dataerr") && argc > 2) {
    for (int fd = 2; fd < 4096; fd++) close(fd);
    int fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || (fd != 2 && (dup2(fd, 2) != 2 || close(fd)))) return 9;
    if (write(2, "data\n", 5) != 5) return 9;
    leak_here(34);
    return 0;
  }
  if (!strcmp(mode, "pipechild")) {
    int p[2];
    if (pipe(p)) return 9;
    pid_t pid = fork();
    if (pid == 0) {
      dup2(p[1], 2);
      close(p[0]);
      close(p[1]);
      execl("/proc/self/exe", argv[0], "leakerr", (char *)0);
      _exit(127);
    }
    close(p[1]);
    char buf[65536];
    size_t n = 0;
    ssize_t r;
    while (n < sizeof buf && (r = read(p[0], buf + n, sizeof buf - n)) > 0) n += (size_t)r;
    int st;
    if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st)) return 9;
    printf("read %zu bytes: %.*s", n, (int)n, buf);
    return 0;
  }
  if (!strcmp(mode, "leakerr")) {
    leak_here(35);
    fprintf(stderr, "child's own line\n");
    return 0;
  }
  if (!strcmp(mode, "opendata") && argc > 2) {
    int fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd != 2) return 9;
    if (write(2, "data\n", 5) != 5) return 9;
    leak_here(36);
    return 0;
  }
  if (!strcmp(mode, "closeall")) {
    for (int fd = 3; fd < 4096; fd++) close(fd);
    leak_here(33);
    return 0;
  }
  return 1;
}
