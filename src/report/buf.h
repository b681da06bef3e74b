/* A growable string buffer with JSON escaping, for the report writers. */
#ifndef HS_BUF_H
#define HS_BUF_H
#include <stddef.h>
struct hs_buf {
  char *s;
  size_t len, cap;
};
void hs_buf_printf(struct hs_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void hs_buf_json_str(struct hs_buf *b, const char *s); /* quoted, or null */
void hs_buf_free(struct hs_buf *b);

/* Absolute paths after the program chroots (the agent's chroot.c): they are
 * reached through hs_root_fd, the old root's directory, or plainly while
 * it is -1 (always, in the command-line tool). */
#include <stdio.h>
#include <sys/types.h>
extern int hs_root_fd;
int hs_fs_open(const char *path, int flags, mode_t mode);
ssize_t hs_fs_readlink(const char *path, char *buf, size_t len);
int hs_fs_rename(const char *from, const char *to);
int hs_fs_unlink(const char *path);
FILE *hs_fs_fopen_read(const char *path);
#endif
