/* chroot: daemons (sshd's privilege separation, postfix, bind, vsftpd)
 * chroot into an empty directory and later exit there. The exit check reads
 * /proc/self/maps for its roots and /proc/self/task for the threads, and
 * the report loads libheapscope_report.so, reads ELF and debug files and
 * writes --report's path: none of them exists in the new root. Before, such
 * a process reported "leak check failed" and totals only.
 *
 * The hook keeps a directory descriptor of the root before the first
 * chroot (O_PATH, close-on-exec) and reaches every absolute path through it
 * (openat), which works from inside the chroot for a process privileged
 * enough to chroot. It also loads the report library and has it read the
 * process's symbols before the real chroot (hs_report_chroot). The
 * descriptor's identity is checked at each use: a program that closes all
 * its descriptors after chrooting (or reuses the number) only gets the old
 * behaviour back, never a wrong file. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/hs_path.h"
#include "../common/hs_report.h"
#include "hs.h"

static int root_fd = -1;
static dev_t root_dev;
static ino_t root_ino;

int hs_root_dir(void) {
  int fd = __atomic_load_n(&root_fd, __ATOMIC_ACQUIRE);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) || st.st_dev != root_dev || st.st_ino != root_ino) return -1;
  return fd;
}

/* (hs_root_dir's identity check only for the paths that use it) */
static int root_for(const char *path) { return path[0] == '/' ? hs_root_dir() : -1; }

int hs_open_path(const char *path, int flags) { return hs_path_open(root_for(path), path, flags, 0); }

ssize_t hs_readlink_path(const char *path, char *buf, size_t len) {
  return hs_path_readlink(root_for(path), path, buf, len);
}

int hs_unlink_path(const char *path) { return hs_path_unlink(root_for(path), path); }

typedef int (*chroot_fn)(const char *);

HS_EXPORT int chroot(const char *path) {
  static chroot_fn real;
  if (!real) real = (chroot_fn)dlsym(RTLD_NEXT, "chroot");
  if (!real) {
    errno = ENOSYS;
    return -1;
  }
  if (atomic_load(&hs_active) && root_fd < 0) {
    int saved_errno = errno;
    int saved = hs_in_agent;
    hs_in_agent = 1;
    int fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    struct stat st;
    if (fd >= 0 && !fstat(fd, &st)) {
      root_dev = st.st_dev;
      root_ino = st.st_ino;
      __atomic_store_n(&root_fd, fd, __ATOMIC_RELEASE);
      hs_unwind_before_chroot();
      hs_report_chroot_fn prep = (hs_report_chroot_fn)hs_report_sym(HS_REPORT_CHROOT_SYM);
      if (prep) prep(fd);
    } else if (fd >= 0) {
      close(fd);
    }
    hs_in_agent = saved;
    errno = saved_errno;
  }
  return real(path);
}
