/* metrics.c — JSONL metrics log (see metrics.h). */
#include "io/metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "core/json.h"

struct MetricsLog {
    int fd;
    char *path;
};

/* Cut an unterminated last line off the file (0, or -1 with errno). */
static int drop_partial_line(int fd) {
    struct stat sb;
    if (fstat(fd, &sb) != 0) return -1;
    off_t end = sb.st_size, pos = end;
    char buf[4096];
    while (pos > 0) {
        size_t n = pos < (off_t)sizeof buf ? (size_t)pos : sizeof buf;
        if (pread(fd, buf, n, pos - (off_t)n) != (ssize_t)n) return -1;
        for (size_t i = n; i > 0; i--) {
            if (buf[i - 1] == '\n') {
                off_t keep = pos - (off_t)n + (off_t)i;
                return keep == end ? 0 : ftruncate(fd, keep);
            }
        }
        pos -= (off_t)n;
    }
    return end == 0 ? 0 : ftruncate(fd, 0);
}

MetricsLog *metrics_open(const char *path, int truncate, char *err, size_t errlen) {
    int fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | (truncate ? O_TRUNC : 0), 0644);
    if (fd < 0) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    if (drop_partial_line(fd) != 0) {
        snprintf(err, errlen, "%s: cannot repair the last line: %s", path, strerror(errno));
        close(fd);
        return NULL;
    }
    MetricsLog *log = xmalloc(sizeof *log);
    log->fd = fd;
    log->path = xstrdup(path);
    return log;
}

int metrics_write(MetricsLog *log, const cJSON *obj, char *err, size_t errlen) {
    if (!cJSON_IsObject(obj)) {
        snprintf(err, errlen, "%s: a metrics line must be a JSON object", log->path);
        return -1;
    }
    char *text = json_dumps(obj, JSON_DUMP_COMPACT | JSON_DUMP_UTF8);
    size_t n = strlen(text);
    text = xrealloc(text, n + 2);
    text[n++] = '\n';
    text[n] = '\0';
    /* one write for the whole line; a short write (disk full) is cut back off */
    ssize_t w;
    do w = write(log->fd, text, n);
    while (w < 0 && errno == EINTR);
    int rc = 0;
    if (w != (ssize_t)n) {
        snprintf(err, errlen, "%s: cannot write: %s", log->path, w < 0 ? strerror(errno) : "short write");
        drop_partial_line(log->fd);
        rc = -1;
    }
    free(text);
    return rc;
}

void metrics_close(MetricsLog *log) {
    if (!log) return;
    close(log->fd);
    free(log->path);
    free(log);
}
