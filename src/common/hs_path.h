/* Absolute paths after the program chroots: reached through root, a
 * directory descriptor of the root before the chroot (the agent's
 * chroot.c), or plainly when root is -1 or the path is relative. One
 * implementation for the agent and the report library, each with its own
 * descriptor. */
#ifndef HS_PATH_H
#define HS_PATH_H
#include <fcntl.h>
#include <stdio.h>
#include <sys/types.h>
#include <unistd.h>

static inline int hs_path_via(int root, const char *path) { return root >= 0 && path[0] == '/'; }

static inline int hs_path_open(int root, const char *path, int flags, mode_t mode) {
  return hs_path_via(root, path) ? openat(root, path + 1, flags, mode) : open(path, flags, mode);
}

static inline ssize_t hs_path_readlink(int root, const char *path, char *buf, size_t len) {
  return hs_path_via(root, path) ? readlinkat(root, path + 1, buf, len) : readlink(path, buf, len);
}

static inline int hs_path_unlink(int root, const char *path) {
  return hs_path_via(root, path) ? unlinkat(root, path + 1, 0) : unlink(path);
}

static inline int hs_path_rename(int root, const char *from, const char *to) {
  if (!hs_path_via(root, from) || to[0] != '/') return rename(from, to);
  return renameat(root, from + 1, root, to + 1);
}
#endif
