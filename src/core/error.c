#include "core/error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *g_prog_name = "tau2_hpc";

enum { MAX_TMPFILES = 8 };
static char *g_tmpfiles[MAX_TMPFILES];

void tmpfile_register(const char *path) {
    for (int i = 0; i < MAX_TMPFILES; i++)
        if (!g_tmpfiles[i]) {
            g_tmpfiles[i] = xstrdup(path);
            return;
        }
}

void tmpfile_unregister(const char *path) {
    for (int i = 0; i < MAX_TMPFILES; i++)
        if (g_tmpfiles[i] && strcmp(g_tmpfiles[i], path) == 0) {
            free(g_tmpfiles[i]);
            g_tmpfiles[i] = NULL;
        }
}

static void remove_tmpfiles(void) {
    for (int i = 0; i < MAX_TMPFILES; i++)
        if (g_tmpfiles[i]) {
            unlink(g_tmpfiles[i]);
            free(g_tmpfiles[i]);
            g_tmpfiles[i] = NULL;
        }
}

static void vreport(const char *fmt, va_list ap) {
    fprintf(stderr, "%s: error: ", g_prog_name);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

static void (*g_exit_hook)(int code);
static int g_quiet_input;

void error_set_exit_hook(void (*hook)(int code)) { g_exit_hook = hook; }
void error_set_quiet_input(int quiet) { g_quiet_input = quiet; }

static noreturn void finish(int code) {
    remove_tmpfiles();
    if (g_exit_hook) g_exit_hook(code);
    exit(code);
}

void die_input(const char *fmt, ...) {
    if (!g_quiet_input) {
        va_list ap;
        va_start(ap, fmt);
        vreport(fmt, ap);
        va_end(ap);
    }
    finish(EXIT_BAD_INPUT);
}

void die_runtime(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vreport(fmt, ap);
    va_end(ap);
    finish(EXIT_RUNTIME);
}

static noreturn void die_oom(size_t n, const char *file, int line) {
    die_runtime("out of memory allocating %zu bytes at %s:%d", n, file, line);
}

void *xmalloc_at(size_t n, const char *file, int line) {
    void *p = malloc(n ? n : 1);
    if (!p) die_oom(n, file, line);
    return p;
}

void *xcalloc_at(size_t count, size_t size, const char *file, int line) {
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) die_oom(count * size, file, line);
    return p;
}

void *xrealloc_at(void *p, size_t n, const char *file, int line) {
    void *q = realloc(p, n ? n : 1);
    if (!q) die_oom(n, file, line);
    return q;
}

char *xstrdup_at(const char *s, const char *file, int line) {
    size_t n = strlen(s);
    char *p = xmalloc_at(n + 1, file, line);
    memcpy(p, s, n + 1);
    return p;
}

char *xstrndup_at(const char *s, size_t n, const char *file, int line) {
    char *p = xmalloc_at(n + 1, file, line);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *file_read_all(const char *path, size_t *len_out, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (err) snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, len = 0;
    char *buf = xmalloc(cap);
    for (;;) {
        if (len + 1 >= cap) {
            cap *= 2;
            buf = xrealloc(buf, cap);
        }
        size_t got = fread(buf + len, 1, cap - len - 1, f);
        len += got;
        if (got == 0) break;
    }
    int failed = ferror(f);
    fclose(f);
    if (failed) {
        if (err) snprintf(err, errlen, "%s: read error", path);
        free(buf);
        return NULL;
    }
    buf[len] = '\0';
    if (len_out) *len_out = len;
    return buf;
}

int file_write_atomic(const char *path, const void *data, size_t len, char *err, size_t errlen) {
    size_t n = strlen(path) + 32;
    char *tmp = xmalloc(n);
    snprintf(tmp, n, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        if (err) snprintf(err, errlen, "%s: cannot create: %s", tmp, strerror(errno));
        free(tmp);
        return -1;
    }
    int ok = fwrite(data, 1, len, f) == len;
    ok = (fflush(f) == 0) && ok;
    ok = (fsync(fileno(f)) == 0) && ok;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        if (err) snprintf(err, errlen, "%s: cannot write: %s", path, strerror(errno));
        unlink(tmp);
        free(tmp);
        return -1;
    }
    free(tmp);
    return 0;
}

/* A writable directory, or -1 with err naming it. */
static int check_writable_dir(const char *dir, const char *what, char *err, size_t errlen) {
    struct stat st;
    if (stat(dir, &st) != 0) return err_set(err, errlen, "%s %s: %s", what, dir, strerror(errno));
    if (!S_ISDIR(st.st_mode)) return err_set(err, errlen, "%s %s: not a directory", what, dir);
    if (access(dir, W_OK | X_OK) != 0)
        return err_set(err, errlen, "%s %s: not writable: %s", what, dir, strerror(errno));
    return 0;
}

void path_to_parent(char *p) {
    size_t n = strlen(p);
    while (n > 1 && p[n - 1] == '/') p[--n] = '\0';
    char *slash = strrchr(p, '/');
    if (!slash) snprintf(p, n + 1, ".");
    else if (slash == p) p[1] = '\0';
    else *slash = '\0';
}

int path_check_output(const char *path, int is_dir, char *err, size_t errlen) {
    if (!*path) return err_set(err, errlen, "an empty path");
    struct stat st;
    if (stat(path, &st) == 0) {
        if (is_dir) {
            if (!S_ISDIR(st.st_mode)) return err_set(err, errlen, "%s: exists and is not a directory", path);
            return check_writable_dir(path, "directory", err, errlen);
        }
        if (S_ISDIR(st.st_mode)) return err_set(err, errlen, "%s: is a directory (expected a file name)", path);
    } else if (errno != ENOENT && errno != ENOTDIR) {
        return err_set(err, errlen, "%s: %s", path, strerror(errno));
    }
    char *parent = xstrdup(path);
    path_to_parent(parent);
    int rc = check_writable_dir(parent, "the directory", err, errlen);
    free(parent);
    return rc;
}

int dir_check_creatable(const char *path, char *err, size_t errlen) {
    if (!*path) return err_set(err, errlen, "an empty path");
    char *p = xstrdup(path);
    int rc;
    for (;;) {
        struct stat st;
        if (stat(p, &st) == 0) {
            rc = S_ISDIR(st.st_mode) ? check_writable_dir(p, "directory", err, errlen)
                                     : err_set(err, errlen, "%s: exists and is not a directory", p);
            break;
        }
        if ((errno != ENOENT && errno != ENOTDIR) || !strcmp(p, ".") || !strcmp(p, "/")) {
            rc = err_set(err, errlen, "%s: %s", p, strerror(errno));
            break;
        }
        path_to_parent(p);
    }
    free(p);
    return rc;
}

int dir_create_all(const char *path, char *err, size_t errlen) {
    if (!*path) {
        snprintf(err, errlen, "cannot create a directory with an empty name");
        return -1;
    }
    char *p = xstrdup(path);
    int rc = 0;
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = '\0';
        mkdir(p, 0777); /* a failure here shows up at the last mkdir */
        *s = '/';
    }
    struct stat sb;
    if (mkdir(p, 0777) != 0) {
        if (errno != EEXIST) {
            snprintf(err, errlen, "cannot create directory %s: %s", p, strerror(errno));
            rc = -1;
        } else if (stat(p, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
            snprintf(err, errlen, "%s exists and is not a directory", p);
            rc = -1;
        }
    }
    free(p);
    return rc;
}

int err_set(char *err, size_t errlen, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    if (err && errlen) vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}
