/* Threads whose records change hands fast, from two creators at once:
 * detached threads that end at once (their records go to the next thread
 * while the creator may still be inside pthread_create), threads that
 * detach themselves as their first act, and joinable ones joined at once.
 * Every thread is joined or detached: nothing may be reported as a leaked
 * thread. Prints the count of threads made. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define ROUNDS 2000
static void *quick(void *a) { return a; }
static void *self_detach(void *a) {
  pthread_detach(pthread_self());
  return a;
}

static void *creator(void *a) {
  (void)a;
  pthread_attr_t det;
  pthread_attr_init(&det);
  pthread_attr_setdetachstate(&det, PTHREAD_CREATE_DETACHED);
  long made = 0;
  for (int i = 0; i < ROUNDS; i++) {
    pthread_t t;
    if (pthread_create(&t, &det, quick, NULL) == 0) made++;
    if (pthread_create(&t, NULL, self_detach, NULL) == 0) made++;
    if (pthread_create(&t, NULL, quick, NULL) == 0 && pthread_join(t, NULL) == 0) made++;
  }
  return (void *)made;
}

int main(void) {
  pthread_t c[2];
  for (int i = 0; i < 2; i++)
    if (pthread_create(&c[i], NULL, creator, NULL)) return 1;
  long made = 0;
  for (int i = 0; i < 2; i++) {
    void *r;
    pthread_join(c[i], &r);
    made += (long)r;
  }
  printf("made %ld\n", made);
  return 0;
}
