#include "io/run_lock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/error.h"

struct RunLock {
    int fd;
};

/* The errors of a filesystem without record locks (as opposed to a lock
 * somebody holds: EACCES, EAGAIN). */
static bool no_lock_support(int e) { return e == ENOLCK || e == ENOSYS || e == EOPNOTSUPP || e == EINVAL; }

/* The holder's line, read from the lock file, into out ("" if none). */
static void read_holder(int fd, char *out, size_t n) {
    ssize_t got = pread(fd, out, n - 1, 0);
    out[got > 0 ? got : 0] = '\0';
    out[strcspn(out, "\n")] = '\0';
}

static void write_holder(int fd, const char *what) {
    char host[256] = "?", when[64] = "?", line[1024];
    if (gethostname(host, sizeof host) != 0) snprintf(host, sizeof host, "?");
    host[sizeof host - 1] = '\0';
    time_t now = time(NULL);
    struct tm tm;
    if (gmtime_r(&now, &tm)) strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    int len = snprintf(line, sizeof line, "%s, pid %ld on %s, started %s\n", what, (long)getpid(), host, when);
    if (len < 0 || (size_t)len >= sizeof line) len = (int)strlen(line);
    /* best effort: the description only serves a refused job's message */
    if (ftruncate(fd, 0) == 0 && pwrite(fd, line, (size_t)len, 0) == len) (void)fsync(fd);
}

int run_lock_wait_s(void) {
    const char *n = getenv("SLURM_RESTART_COUNT");
    return n && atoi(n) > 0 ? 180 : 0;
}

RunLock *run_lock_acquire(const char *dir, const char *what, int wait_s, char *err, size_t errlen) {
    if (dir_create_all(dir, err, errlen) != 0) return NULL;
    size_t n = strlen(dir) + 8;
    char *path = xmalloc(n);
    snprintf(path, n, "%s/.lock", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        err_set(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        free(path);
        return NULL;
    }
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
    int rc = fcntl(fd, F_SETLK, &fl);
    for (int waited = 0; rc != 0 && !no_lock_support(errno) && waited < wait_s; waited++) {
        if (waited == 0) {
            char holder[512];
            read_holder(fd, holder, sizeof holder);
            printf("waiting up to %d s for %s to be free (held by %s)\n", wait_s, dir, holder);
            fflush(stdout);
        }
        sleep(1);
        rc = fcntl(fd, F_SETLK, &fl);
    }
    if (rc != 0) {
        int e = errno;
        if (!no_lock_support(e)) {
            char holder[512];
            read_holder(fd, holder, sizeof holder);
            err_set(err, errlen, "%s is in use by another job (%s); wait for it to end, or give this one another "
                    "output directory", dir, holder[0] ? holder : "its lock file is empty");
            close(fd);
            free(path);
            return NULL;
        }
        fprintf(stderr, "%s: warning: %s: the filesystem has no file locks (%s): nothing keeps a second job out of "
                "this run directory\n", g_prog_name, path, strerror(e));
    }
    free(path);
    write_holder(fd, what);
    RunLock *lock = xmalloc(sizeof *lock);
    lock->fd = fd;
    return lock;
}

void run_lock_release(RunLock *lock) {
    if (!lock) return;
    /* closing the descriptor drops the record lock */
    close(lock->fd);
    free(lock);
}
