#ifndef HS_CLI_H
#define HS_CLI_H
#include <stddef.h>

void hs_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *hs_self_path(void);
int hs_find_agent(char *out, size_t len);
int hs_find_program(const char *prog, char *out, size_t len); /* as execvp would (run.c) */
int cmd_run(int argc, char **argv);
/* from the agent's options.c */
unsigned hs_parse_kinds(const char *s, int *ok);
int hs_parse_size(const char *s, unsigned long *out);
#endif
