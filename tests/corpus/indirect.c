/* A lost list (one definite head, indirect tail), a lost tree and a lost
 * cycle; plus a possibly-lost block via an interior pointer and the blocks
 * it points to. */
#include <stdlib.h>
#include <string.h>

struct node {
  struct node *next;
  char payload[24];
};
struct tree {
  struct tree *left, *right;
  int v;
};
void *volatile sink;
const char *volatile interior; /* points 5 bytes into a big buffer */

__attribute__((noinline)) struct node *make_list(int n) {
  struct node *head = NULL;
  for (int i = 0; i < n; i++) {
    struct node *x = malloc(sizeof *x); /* LEAK(definitely_lost) */
    x->next = head;
    head = x;
  }
  return head;
}
__attribute__((noinline)) void lose_list(void) {
  sink = make_list(8);
  sink = NULL;
}
__attribute__((noinline)) struct tree *make_tree(int depth) {
  if (!depth) return NULL;
  struct tree *t = calloc(1, sizeof *t); /* LEAK(definitely_lost) */
  t->left = make_tree(depth - 1);
  t->right = make_tree(depth - 1);
  return t;
}
__attribute__((noinline)) void lose_tree(void) {
  sink = make_tree(4);
  sink = NULL;
}
__attribute__((noinline)) void lose_cycle(void) {
  struct node *a = malloc(sizeof *a), *b = malloc(sizeof *b);
  a->next = b;
  b->next = a;
  sink = a;
  sink = NULL;
}
struct holder {
  char *children[4];
};
__attribute__((noinline)) void pin_buffer(void) {
  char *buf = malloc(1 << 20); /* LEAK(possibly_lost) */
  memset(buf, 0, 64);
  struct holder *h = (struct holder *)buf;
  for (int i = 0; i < 4; i++) h->children[i] = malloc(40); /* LEAK(possibly_lost) */
  interior = buf + 5;
}

int main(void) {
  lose_list();
  lose_tree();
  lose_cycle();
  pin_buffer();
  return 0;
}
