/* Deaths by signal, and the program's view of its signal dispositions.
 *   term     leaks 100 bytes (definitely lost), keeps 50 (reachable), raise(SIGTERM)
 *   segv     the same leaks, then a write through a null pointer
 *   abort    the same leaks, then abort()
 *   dfree    the same leaks, then a double free, which glibc's check ends
 *            with abort() while it holds its arena lock
 *   wait     the same leaks, a thread blocked on a pipe, then waits in pause()
 *            for a signal from outside (prints "ready" first)
 *   reraise  a crash handler of the program's own, which prints, puts back
 *            SIG_DFL with signal() and raises SIGSEGV again
 *   inhandler  a SIGUSR1 handler of the program's own that faults: the
 *            stack where SIGSEGV found it runs through the signal frame
 *   vfork    a vfork child dies of SIGTERM before it execs; the parent
 *            goes on, leaks and exits 0 (its report is an ordinary exit's)
 *   view     prints whether it has an alternate signal stack (and a thread
 *            of it), what sigaction and signal say about SIGINT and SIGTERM
 *            through a series of changes (one line each), then its own
 *            SIGTERM handler ends the process with exit(3)
 *   ignored  SIGINT is expected to be ignored at start (the test's shell
 *            ignores it): says so, raises it, and goes on to exit 0
 *   busy     four threads allocate and free without pause; prints "ready"
 *            and waits for a signal from outside (that may land in any of
 *            them, inside malloc, free or the agent)
 *   overflow the same leaks, 70 bytes held only by main's frame, then a
 *            recursion that overflows the stack
 *   ownalt   the same, with an alternate signal stack of the program's
 *            own, too small for the report (16 KiB); ownalt-segv: that
 *            stack, and a write through a null pointer
 *   thread-overflow  the same leaks, then a thread (256 KiB of stack)
 *            whose recursion overflows it; main waits in pthread_join
 *   altreraise  a crash handler of the program's own on its own alternate
 *            stack, SA_NODEFER (as Python's faulthandler): prints, puts back SIG_DFL
 *            and raises SIGSEGV again; the fault is in crash_site()
 *   blocked  blocks SIGTERM (its only thread), prints "ready", waits up to
 *            10 s for one to be pending, prints "pending" and exits 0: a
 *            thread of the agent's own (the HTTP endpoint's) must not take
 *            a signal that every thread of the program blocks */
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

void *volatile kept;

static __attribute__((noinline)) void leak_some(void) {
  void *volatile p = malloc(100);
  memset(p, 1, 100);
  p = NULL;
  kept = malloc(50);
}

static void *reader(void *arg) {
  int *fds = arg;
  char c;
  (void)!read(fds[0], &c, 1);
  return NULL;
}

static int recurse(int n);

static void *deep(void *arg) {
  (void)arg;
  void *volatile onstack = malloc(70);
  printf("recursing\n");
  return (void *)(intptr_t)(recurse(0) + (onstack != NULL));
}

static __attribute__((noinline)) void crash_site(int argc) {
  *(volatile int *)(uintptr_t)argc = 0; /* argc is 2: an unmapped page */
}

static void *alt_view(void *arg) {
  (void)arg;
  stack_t alt;
  sigaltstack(NULL, &alt);
  printf("a thread's alternate stack: %s\n", alt.ss_flags & SS_DISABLE ? "none" : "set");
  return NULL;
}

static void *churn(void *arg) {
  unsigned x = (unsigned)(uintptr_t)arg * 2654435761u + 1;
  void *slot[64] = {0};
  for (;;) {
    x = x * 1103515245u + 12345u;
    unsigned i = (x >> 8) % 64;
    free(slot[i]);
    slot[i] = malloc(16 + (x >> 16) % 2000);
  }
  return NULL;
}

static void crash_handler(int sig) {
  static const char msg[] = "crash handler ran\n";
  (void)!write(1, msg, sizeof msg - 1);
  signal(sig, SIG_DFL);
  raise(sig);
}

static const char *name(void (*h)(int)) {
  if (h == SIG_DFL) return "DFL";
  if (h == SIG_IGN) return "IGN";
  return "handler";
}

static void own_term(int sig) {
  (void)sig;
  static const char msg[] = "own SIGTERM handler ran\n";
  (void)!write(1, msg, sizeof msg - 1);
  exit(3);
}

static void noop(int sig) { (void)sig; }

static __attribute__((noinline)) int recurse(int n) {
  volatile char frame[200];
  frame[0] = (char)n;
  return recurse(n + 1) + frame[0];
}

static void usr1_faults(int sig) {
  *(volatile int *)(uintptr_t)sig = 0; /* SIGUSR1 is 10: an unmapped page */
}

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "term";
  setvbuf(stdout, NULL, _IONBF, 0);
  if (!strcmp(mode, "view")) {
    struct sigaction o, a;
    stack_t alt;
    sigaltstack(NULL, &alt);
    printf("alternate stack: %s\n", alt.ss_flags & SS_DISABLE ? "none" : "set");
    pthread_t t;
    pthread_create(&t, NULL, alt_view, NULL);
    pthread_join(t, NULL);
    sigaction(SIGINT, NULL, &o);
    printf("start %s flags %d\n", name(o.sa_handler), (o.sa_flags & SA_SIGINFO) != 0);
    void (*old)(int) = signal(SIGINT, noop);
    printf("signal returned %s\n", name(old));
    sigaction(SIGINT, NULL, &o);
    printf("now %s\n", o.sa_handler == noop ? "noop" : name(o.sa_handler));
    old = signal(SIGINT, SIG_DFL);
    printf("back returned %s\n", old == noop ? "noop" : name(old));
    memset(&a, 0, sizeof a);
    a.sa_handler = SIG_DFL;
    sigaddset(&a.sa_mask, SIGUSR1);
    a.sa_flags = SA_RESTART;
    sigaction(SIGINT, &a, NULL);
    sigaction(SIGINT, NULL, &o);
    printf("default kept its mask %d and flags %d\n", sigismember(&o.sa_mask, SIGUSR1),
           (o.sa_flags & SA_RESTART) != 0);
    a.sa_handler = own_term;
    sigemptyset(&a.sa_mask);
    a.sa_flags = 0;
    sigaction(SIGTERM, &a, &o);
    printf("SIGTERM was %s\n", name(o.sa_handler));
    leak_some();
    raise(SIGTERM);
    return 0;
  }
  if (!strcmp(mode, "ignored")) {
    struct sigaction o;
    sigaction(SIGINT, NULL, &o);
    printf("SIGINT at start: %s\n", name(o.sa_handler));
    leak_some();
    raise(SIGINT);
    printf("still running\n");
    return 0;
  }
  if (!strcmp(mode, "blocked")) {
    sigset_t term, pend;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    sigprocmask(SIG_BLOCK, &term, NULL);
    printf("ready\n");
    for (int i = 0; i < 1000; i++) {
      sigpending(&pend);
      if (sigismember(&pend, SIGTERM)) {
        printf("pending\n");
        return 0;
      }
      usleep(10000);
    }
    return 1;
  }
  leak_some();
  if (!strncmp(mode, "ownalt", 6)) {
    static char alt[16384];
    stack_t ss = {.ss_sp = alt, .ss_size = sizeof alt};
    if (sigaltstack(&ss, NULL)) return 1;
  }
  if (!strcmp(mode, "overflow") || !strcmp(mode, "ownalt")) {
    void *volatile onstack = malloc(70);
    printf("recursing\n");
    return recurse(0) + (onstack != NULL);
  }
  if (!strcmp(mode, "ownalt-segv")) *(volatile int *)(uintptr_t)argc = 0;
  if (!strcmp(mode, "altreraise")) {
    static char alt[16384];
    stack_t ss = {.ss_sp = alt, .ss_size = sizeof alt};
    struct sigaction a;
    memset(&a, 0, sizeof a);
    a.sa_handler = crash_handler;
    a.sa_flags = SA_ONSTACK | SA_NODEFER; /* as faulthandler: its raise lands at once */
    if (sigaltstack(&ss, NULL) || sigaction(SIGSEGV, &a, NULL)) return 1;
    crash_site(argc);
  }
  if (!strcmp(mode, "thread-overflow")) {
    pthread_attr_t a;
    pthread_t t;
    pthread_attr_init(&a);
    pthread_attr_setstacksize(&a, 256 << 10);
    if (pthread_create(&t, &a, deep, NULL)) return 1;
    pthread_join(t, NULL);
  }
  if (!strcmp(mode, "term")) raise(SIGTERM);
  if (!strcmp(mode, "segv")) *(volatile int *)(uintptr_t)argc = 0; /* argc is 2: an unmapped page */
  if (!strcmp(mode, "abort")) abort();
  if (!strcmp(mode, "dfree")) {
    char *volatile p = malloc(2000);
    free(p);
    free(p);
  }
  if (!strcmp(mode, "wait")) {
    static int fds[2];
    if (pipe(fds)) return 1;
    pthread_t t;
    pthread_create(&t, NULL, reader, fds);
    printf("ready\n");
    for (;;) pause();
  }
  if (!strcmp(mode, "inhandler")) {
    signal(SIGUSR1, usr1_faults);
    raise(SIGUSR1);
  }
  if (!strcmp(mode, "vfork")) {
    pid_t c = vfork();
    if (c == 0) {
      raise(SIGTERM);
      _exit(1);
    }
    int st = 0;
    waitpid(c, &st, 0);
    printf("child: %s %d\n", WIFSIGNALED(st) ? "signal" : "status", WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
    return 0;
  }
  if (!strcmp(mode, "busy")) {
    pthread_t t;
    for (uintptr_t i = 0; i < 4; i++) pthread_create(&t, NULL, churn, (void *)i);
    printf("ready\n");
    for (;;) pause();
  }
  if (!strcmp(mode, "reraise")) {
    signal(SIGSEGV, crash_handler);
    *(volatile int *)(uintptr_t)argc = 0;
  }
  return 0;
}
