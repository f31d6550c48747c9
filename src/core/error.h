/* error.h — exit codes, fatal errors and checked allocation wrappers.
 *
 * Exit codes are part of the command-line contract:
 *   0  success
 *   1  runtime failure (I/O, out of memory, a bug)
 *   2  bad usage or bad input; the message names the file, the field or
 *      position, and what was expected.
 */
#ifndef TAU2_CORE_ERROR_H
#define TAU2_CORE_ERROR_H

#include <stddef.h>
#include <stdnoreturn.h>

enum { EXIT_OK = 0, EXIT_RUNTIME = 1, EXIT_BAD_INPUT = 2 };

/* Format a message into err (errlen bytes, truncated) and return -1: the
 * one line of a function that fails with "-1 and a message in err". */
int err_set(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Print "tau2_hpc: error: <msg>" to stderr and exit with EXIT_BAD_INPUT. */
noreturn void die_input(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Print "tau2_hpc: error: <msg>" to stderr and exit with EXIT_RUNTIME. */
noreturn void die_runtime(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A multi-rank job installs a hook that die_input/die_runtime call after
 * the message and before exit(code), so that one rank's fatal error ends
 * every rank (MPI_Abort) instead of leaving them waiting in a collective. */
void error_set_exit_hook(void (*hook)(int code));
/* Ranks other than 0 of a job stay silent on die_input: an input error is
 * found by every rank alike, and rank 0 reports it once. */
void error_set_quiet_input(int quiet);

/* Allocation wrappers: never return NULL; on failure report file:line and exit 1. */
void *xmalloc_at(size_t n, const char *file, int line);
void *xcalloc_at(size_t count, size_t size, const char *file, int line);
void *xrealloc_at(void *p, size_t n, const char *file, int line);
char *xstrdup_at(const char *s, const char *file, int line);
char *xstrndup_at(const char *s, size_t n, const char *file, int line);

#define xmalloc(n) xmalloc_at((n), __FILE__, __LINE__)
#define xcalloc(c, s) xcalloc_at((c), (s), __FILE__, __LINE__)
#define xrealloc(p, n) xrealloc_at((p), (n), __FILE__, __LINE__)
#define xstrdup(s) xstrdup_at((s), __FILE__, __LINE__)
#define xstrndup(s, n) xstrndup_at((s), (n), __FILE__, __LINE__)

/* Read a whole file into a NUL-terminated buffer. Returns NULL and fills
 * err (if given) with a message naming the path when it cannot be read. */
char *file_read_all(const char *path, size_t *len_out, char *err, size_t errlen);

/* Write data to path atomically: a temporary file in the same directory,
 * fsync, then rename. Returns 0 on success, -1 with err filled. */
int file_write_atomic(const char *path, const void *data, size_t len, char *err, size_t errlen);

/* Create a directory and its missing parents (mkdir -p). 0, or -1 with err
 * naming the path that could not be made (or that exists as another kind
 * of file). */
int dir_create_all(const char *path, char *err, size_t errlen);

/* Whether an output can be made at path, checked before the work that
 * produces it so that a mistyped path fails at once rather than after the
 * work: a file (is_dir false) must not name a directory and its directory
 * must exist and be writable (the temporary and the rename go there); a
 * directory (is_dir true) must be a writable directory if it exists, and
 * have an existing, writable parent if not. 0, or -1 with err saying why. */
int path_check_output(const char *path, int is_dir, char *err, size_t errlen);

/* p's parent, in place: "a/b/c" -> "a/b", "/a" -> "/", "/" -> "/", "a" ->
 * "." (trailing slashes ignored; p non-empty, with room for "."). */
void path_to_parent(char *p);

/* Whether dir_create_all(path) can make path: it is a writable directory
 * already, or its nearest existing ancestor is one. Checked before a job's
 * setup, which creates the directory only once the rest of its input holds.
 * 0, or -1 with err saying why. */
int dir_check_creatable(const char *path, char *err, size_t errlen);

/* A temporary output file (written, then renamed into place) that must
 * not survive a die_input/die_runtime exit: register it while writing,
 * unregister it after the rename. At most a few at a time. */
void tmpfile_register(const char *path);
void tmpfile_unregister(const char *path);

/* The program name used as message prefix ("tau2_hpc"). */
extern const char *g_prog_name;

#endif
