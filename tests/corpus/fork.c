/* A fork whose child leaks: the child writes its own report. */
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

void *volatile sink;
__attribute__((noinline)) void parent_leak(void) {
  sink = malloc(111); /* LEAK(definitely_lost) */
  sink = NULL;
}
__attribute__((noinline)) void child_leak(void) {
  sink = malloc(222);
  sink = NULL;
}

int main(void) {
  parent_leak();
  pid_t p = fork();
  if (p == 0) {
    child_leak();
    exit(0);
  }
  int st;
  waitpid(p, &st, 0);
  return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}
