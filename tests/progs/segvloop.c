/* A thread that blocks every signal but SIGSEGV (so the exit check does not
 * stop it) keeps running through the check, taking page faults its own
 * handler resolves, as a GC's write barrier or a JIT's guard page does. The
 * check's fault handler took them for its own and jumped into the checking
 * thread's frame from the faulting thread: every run crashed. Prints "faults
 * ok" and returns 0. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
static char *page;
static volatile long faults;
static void on_segv(int sig, siginfo_t *si, void *uc) {
  (void)sig; (void)uc;
  if ((char *)si->si_addr < page || (char *)si->si_addr >= page + 4096) abort();
  faults++;
  mprotect(page, 4096, PROT_READ | PROT_WRITE);
}
static void *worker(void *a) {
  (void)a;
  sigset_t s; sigfillset(&s); sigdelset(&s, SIGSEGV);
  pthread_sigmask(SIG_SETMASK, &s, NULL);
  for (;;) {
    mprotect(page, 4096, PROT_NONE);
    page[0]++;
  }
  return NULL;
}
int main(void) {
  page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  struct sigaction sa; memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_segv; sa.sa_flags = SA_SIGINFO;
  sigaction(SIGSEGV, &sa, NULL);
  pthread_t t; pthread_create(&t, NULL, worker, NULL);
  while (faults < 1000) usleep(1000);
  printf("faults ok\n");
  return 0;
}
