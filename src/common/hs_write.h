/* Writing the agent's messages and reports to the program's stderr (or
 * wherever --log-fd points) without SIGPIPE. `heapscope run -- prog 2>&1 |
 * head -1`: once head has exited, the report's write raised SIGPIPE and the
 * program died of it (status 141) where alone it exited 0. The signal is
 * blocked around the write and, if the write raised it, taken back, unless
 * one was pending already (that one is the program's). */
#ifndef HS_WRITE_H
#define HS_WRITE_H
#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <time.h>
#include <unistd.h>

static inline void hs_write_quietly(int fd, const char *buf, size_t len) {
  int saved = errno;
  sigset_t pipe_set, old, pending;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  int was_pending = sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE);
  int masked = pthread_sigmask(SIG_BLOCK, &pipe_set, &old) == 0;
  int broke = 0;
  while (len) {
    ssize_t w = write(fd, buf, len);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && errno == EPIPE) broke = 1;
    if (w <= 0) break;
    buf += w;
    len -= (size_t)w;
  }
  if (masked) {
    if (broke && !was_pending) {
      const struct timespec zero = {0, 0};
      while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR)
        ;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
  }
  errno = saved;
}
#endif
