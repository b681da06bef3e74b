/* The demo: the three classic leaks of the mission in one small C program.
 *  1. a thread blocked forever on a pipe read (the leaked goroutine);
 *  2. a global cache that only grows (still reachable, but unbounded);
 *  3. a large buffer kept alive only by a pointer 5 bytes into it (the small
 *     slice pinning a huge buffer: "possibly lost");
 * plus a plain forgotten free and a lost linked list (definitely and
 * indirectly lost). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct entry {
  char key[32];
  char *value;
  struct entry *next;
};
static struct entry *cache; /* grows on every request, never evicted */

static void cache_put(const char *key, size_t size) {
  struct entry *e = calloc(1, sizeof *e);
  snprintf(e->key, sizeof e->key, "%s", key);
  e->value = malloc(size);
  memset(e->value, 'x', size);
  e->next = cache;
  cache = e;
}

static const char *slice; /* 5 bytes into a 1 MiB buffer */

static void parse_header(void) {
  char *buf = malloc(1 << 20);
  memset(buf, 0, 1 << 20);
  memcpy(buf, "HDR: hello", 11);
  slice = buf + 5;
}

struct node {
  struct node *next;
  int payload[6];
};

static struct node *volatile work_list;

static void lose_list(int n) {
  for (int i = 0; i < n; i++) {
    struct node *x = malloc(sizeof *x);
    x->next = work_list;
    work_list = x;
  }
  work_list = NULL; /* the whole list is unreachable now */
}

static char *forget_to_free(void) { return strdup("this string is never freed"); }

static int pipefd[2];
static void *stuck_reader(void *arg) {
  (void)arg;
  char *scratch = malloc(4096); /* held by this blocked thread's stack */
  char c;
  ssize_t r = read(pipefd[0], &c, 1); /* no one ever writes */
  free(scratch);
  return (void *)r;
}

int main(void) {
  pthread_t t;
  if (pipe(pipefd)) return 1;
  pthread_create(&t, NULL, stuck_reader, NULL);
  char key[32];
  for (int i = 0; i < 100; i++) {
    snprintf(key, sizeof key, "user-%d", i);
    cache_put(key, 1000);
  }
  parse_header();
  lose_list(10);
  char *s = forget_to_free();
  printf("served 100 requests; header says '%s'; %zu\n", slice, strlen(s));
  s = NULL;
  usleep(10000);
  return 0; /* exits with the reader thread still blocked */
}
