/* tb_events.c — TensorBoard event files (see tb_events.h). */
#include "io/tb_events.h"

#include <errno.h>
#include <float.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/error.h"

struct TbWriter {
    int fd;
    char *path;
    off_t size; /* bytes of whole records in the file; a failed write is cut back to it */
};

/* ================================================================ CRC32C */

/* Hand-written: TFRecord needs the Castagnoli CRC, which zlib does not
 * compute, and Debian packages no C library for it. Records are tens of
 * bytes written a few times per step, so a byte-at-a-time table is plenty. */
static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_table_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;
        crc_table[i] = c;
    }
}

uint32_t tb_crc32c(const void *data, size_t n) {
    pthread_once(&crc_once, crc_table_init);
    const unsigned char *p = data;
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) c = crc_table[(c ^ p[i]) & 0xff] ^ (c >> 8);
    return c ^ 0xffffffffu;
}

uint32_t tb_masked_crc32c(const void *data, size_t n) {
    uint32_t c = tb_crc32c(data, n);
    return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

/* ================================================================ protobuf */

/* Wire types of the protobuf encoding. */
enum { WIRE_VARINT = 0, WIRE_FIXED64 = 1, WIRE_LEN = 2, WIRE_FIXED32 = 5 };

static void put_varint(SBuf *out, uint64_t v) {
    char b[10];
    int n = 0;
    do {
        b[n] = (char)(v & 0x7f);
        v >>= 7;
        if (v) b[n] = (char)(b[n] | 0x80);
        n++;
    } while (v);
    sbuf_put(out, b, (size_t)n);
}

static void put_key(SBuf *out, unsigned field, unsigned wire) {
    put_varint(out, (uint64_t)field << 3 | wire);
}

static void put_le(SBuf *out, uint64_t v, int bytes) {
    char b[8];
    for (int i = 0; i < bytes; i++) b[i] = (char)(v >> (8 * i) & 0xff);
    sbuf_put(out, b, (size_t)bytes);
}

static void put_double(SBuf *out, unsigned field, double v) {
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    put_key(out, field, WIRE_FIXED64);
    put_le(out, bits, 8);
}

static void put_float(SBuf *out, unsigned field, float v) {
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    put_key(out, field, WIRE_FIXED32);
    put_le(out, bits, 4);
}

static void put_bytes(SBuf *out, unsigned field, const char *data, size_t n) {
    put_key(out, field, WIRE_LEN);
    put_varint(out, n);
    sbuf_put(out, data, n);
}

/* Event fields 1 and 2, left out at their proto3 defaults (the canonical
 * encoding; readers take an absent field as the default). */
static void put_event_head(SBuf *out, double wall_time, int64_t step) {
    uint64_t bits;
    memcpy(&bits, &wall_time, sizeof bits);
    if (bits) put_double(out, 1, wall_time);
    if (step) {
        put_key(out, 2, WIRE_VARINT);
        put_varint(out, (uint64_t)step); /* int64: negatives take ten bytes, no zigzag */
    }
}

void tb_encode_scalar_event(SBuf *out, double wall_time, int64_t step, const char *tag, float value) {
    /* inner messages first: a length prefix needs the length */
    SBuf val, sum;
    sbuf_init(&val);
    sbuf_init(&sum);
    put_bytes(&val, 1, tag, strlen(tag));
    /* simple_value is in a oneof, so it is written even when 0 (TensorBoard
     * tests HasField("simple_value")) */
    put_float(&val, 2, value);
    put_bytes(&sum, 1, val.data, val.len);
    put_event_head(out, wall_time, step);
    put_bytes(out, 5, sum.data, sum.len);
    sbuf_free(&val);
    sbuf_free(&sum);
}

void tb_encode_version_event(SBuf *out, double wall_time, const char *file_version) {
    put_event_head(out, wall_time, 0);
    put_bytes(out, 3, file_version, strlen(file_version));
}

void tb_append_record(SBuf *out, const void *data, size_t n) {
    char len[8];
    for (int i = 0; i < 8; i++) len[i] = (char)((uint64_t)n >> (8 * i) & 0xff);
    sbuf_put(out, len, 8);
    put_le(out, tb_masked_crc32c(len, 8), 4);
    sbuf_put(out, data, n);
    put_le(out, tb_masked_crc32c(data, n), 4);
}

/* ================================================================ the file */

static double wall_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Write the whole buffer in one write(); a short write (disk full) is cut
 * back off so the file keeps whole records only. */
static int write_records(TbWriter *w, const SBuf *buf, char *err, size_t errlen) {
    if (buf->len == 0) return 0;
    ssize_t n;
    do n = write(w->fd, buf->data, buf->len);
    while (n < 0 && errno == EINTR);
    if (n != (ssize_t)buf->len) {
        snprintf(err, errlen, "%s: cannot write: %s", w->path, n < 0 ? strerror(errno) : "short write");
        if (n > 0 && ftruncate(w->fd, w->size) != 0) {
            /* nothing more to do: the error above is already reported */
        }
        return -1;
    }
    w->size += (off_t)n;
    return 0;
}

TbWriter *tb_open(const char *dir, char *err, size_t errlen) {
    if (dir_create_all(dir, err, errlen) != 0) return NULL;
    char host[256];
    if (gethostname(host, sizeof host) != 0 || !host[0]) snprintf(host, sizeof host, "localhost");
    host[sizeof host - 1] = '\0';
    for (char *c = host; *c; c++) {
        if (*c == '/') *c = '_';
    }
    double t0 = wall_now();
    SBuf path;
    sbuf_init(&path);
    int fd = -1;
    /* TensorFlow's name first; two writers started in the same second (two
     * ranks, two runs sharing a directory) get a pid and a counter added */
    for (int attempt = 0; attempt < 1000 && fd < 0; attempt++) {
        path.len = 0;
        sbuf_printf(&path, "%s/events.out.tfevents.%010lld.%s", dir, (long long)t0, host);
        if (attempt == 1) sbuf_printf(&path, ".%ld", (long)getpid());
        if (attempt > 1) sbuf_printf(&path, ".%ld.%d", (long)getpid(), attempt - 1);
        fd = open(path.data, O_WRONLY | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0 && errno != EEXIST) break;
    }
    if (fd < 0) {
        snprintf(err, errlen, "%s: cannot create the event file: %s", path.data, strerror(errno));
        sbuf_free(&path);
        return NULL;
    }
    TbWriter *w = xcalloc(1, sizeof *w);
    w->fd = fd;
    w->path = sbuf_take(&path);
    SBuf ev, rec;
    sbuf_init(&ev);
    sbuf_init(&rec);
    tb_encode_version_event(&ev, t0, "brain.Event:2");
    tb_append_record(&rec, ev.data, ev.len);
    int rc = write_records(w, &rec, err, errlen);
    sbuf_free(&ev);
    sbuf_free(&rec);
    if (rc != 0) {
        tb_close(w);
        return NULL;
    }
    return w;
}

const char *tb_path(const TbWriter *w) {
    return w->path;
}

/* Strict UTF-8 (no overlong forms, surrogates or code points past
 * U+10FFFF): protobuf readers reject a string field that is not. */
static int utf8_valid(const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned c = *p;
        int n;
        unsigned cp;
        if (c < 0x80) {
            p++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            n = 1;
            cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            n = 2;
            cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            n = 3;
            cp = c & 0x07;
        } else {
            return 0;
        }
        for (int i = 1; i <= n; i++) {
            if ((p[i] & 0xc0) != 0x80) return 0;
            cp = cp << 6 | (p[i] & 0x3f);
        }
        static const unsigned min_cp[4] = {0, 0x80, 0x800, 0x10000};
        if (cp < min_cp[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
        p += n + 1;
    }
    return 1;
}

static int check_tag(const TbWriter *w, const char *tag, char *err, size_t errlen) {
    if (!tag || !tag[0]) {
        snprintf(err, errlen, "%s: a scalar needs a non-empty tag", w->path);
        return -1;
    }
    if (!utf8_valid(tag)) {
        snprintf(err, errlen, "%s: scalar tag '%.200s' is not valid UTF-8", w->path, tag);
        return -1;
    }
    return 0;
}

/* A metric as float; values past float's range become ±inf explicitly
 * (the plain conversion is undefined behaviour in C). */
static float to_float(double v) {
    if (v > FLT_MAX) return INFINITY;
    if (v < -FLT_MAX) return -INFINITY;
    return (float)v;
}

static void append_scalar(SBuf *rec, double wall_time, int64_t step, const char *tag, float value) {
    SBuf ev;
    sbuf_init(&ev);
    tb_encode_scalar_event(&ev, wall_time, step, tag, value);
    tb_append_record(rec, ev.data, ev.len);
    sbuf_free(&ev);
}

int tb_add_scalar(TbWriter *w, int64_t step, double wall_time, const char *tag, float value, char *err,
                  size_t errlen) {
    if (check_tag(w, tag, err, errlen) != 0) return -1;
    SBuf rec;
    sbuf_init(&rec);
    append_scalar(&rec, wall_time, step, tag, value);
    int rc = write_records(w, &rec, err, errlen);
    sbuf_free(&rec);
    return rc;
}

int tb_write_row(TbWriter *w, const cJSON *row, double wall_time, char *err, size_t errlen) {
    if (!cJSON_IsObject(row)) {
        snprintf(err, errlen, "%s: a metrics row must be a JSON object", w->path);
        return -1;
    }
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(row, "step");
    /* 2^63 is the first double past int64's range */
    if (!cJSON_IsNumber(st) || st->valuedouble != floor(st->valuedouble) || fabs(st->valuedouble) >= 9223372036854775808.0) {
        snprintf(err, errlen, "%s: metrics row: \"step\" must be an integer", w->path);
        return -1;
    }
    int64_t step = (int64_t)st->valuedouble;
    SBuf rec;
    sbuf_init(&rec);
    const cJSON *m;
    cJSON_ArrayForEach(m, row) {
        if (!cJSON_IsNumber(m) || !m->string || !strcmp(m->string, "step")) continue;
        if (check_tag(w, m->string, err, errlen) != 0) {
            sbuf_free(&rec);
            return -1;
        }
        append_scalar(&rec, wall_time, step, m->string, to_float(m->valuedouble));
    }
    int rc = write_records(w, &rec, err, errlen);
    sbuf_free(&rec);
    return rc;
}

void tb_close(TbWriter *w) {
    if (!w) return;
    close(w->fd);
    free(w->path);
    free(w);
}
