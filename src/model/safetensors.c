/* safetensors.c — read (validated, mmap) and write Hugging Face safetensors.
 *
 * Reading parses the JSON header with json_parse (line:col errors), checks
 * every entry, sorts tensors by offset to find overlaps, and only then hands
 * out tensors whose data pointers lie inside the mapping. Writing matches the
 * reference writer (the Rust core of the Python `safetensors` package) byte
 * for byte when all tensors share one dtype and there is at most one metadata
 * key: compact JSON, "__metadata__" first, tensors sorted by name, header
 * padded with spaces to a multiple of 8.
 *
 * The data section is little-endian; so is every host this project targets.
 */
#include "model/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "core/hmap.h"
#include "core/json.h"
#include "core/sbuf.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c assumes a little-endian host"
#endif

/* The reference reader's bound; a larger header is a corrupt length field. */
#define ST_MAX_HEADER 100000000ull
/* Largest integer a double (what the JSON reader stores) holds exactly. */
#define ST_MAX_JSON_INT 9007199254740992.0

/* ---- dtypes ---- */

static const struct {
    const char *name;
    size_t size;
} k_dtypes[] = {
    [ST_F32] = {"F32", 4}, [ST_F16] = {"F16", 2}, [ST_BF16] = {"BF16", 2},
    [ST_F64] = {"F64", 8}, [ST_I64] = {"I64", 8}, [ST_I32] = {"I32", 4},
    [ST_I8] = {"I8", 1},   [ST_U8] = {"U8", 1},   [ST_BOOL] = {"BOOL", 1},
};
#define ST_NDTYPES ((int)(sizeof k_dtypes / sizeof k_dtypes[0]))

const char *st_dtype_name(StDtype dt) {
    if ((int)dt < 0 || (int)dt >= ST_NDTYPES) return "?";
    return k_dtypes[dt].name;
}

int st_dtype_parse(const char *name) {
    for (int i = 0; i < ST_NDTYPES; i++)
        if (strcmp(name, k_dtypes[i].name) == 0) return i;
    return -1;
}

size_t st_dtype_size(StDtype dt) {
    if ((int)dt < 0 || (int)dt >= ST_NDTYPES) return 0;
    return k_dtypes[dt].size;
}

/* ---- fp16 / bf16 ---- */

static uint32_t f32_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
}

static float f32_from_bits(uint32_t u) {
    float x;
    memcpy(&x, &u, 4);
    return x;
}

/* torch's c10::BFloat16 rounding: add 0x7FFF plus the kept LSB, truncate.
 * Every NaN becomes the canonical quiet NaN 0x7FC0, as in torch. */
uint16_t st_f32_to_bf16(float x) {
    uint32_t u = f32_bits(x);
    if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float st_bf16_to_f32(uint16_t h) { return f32_from_bits((uint32_t)h << 16); }

/* IEEE binary32 -> binary16, round to nearest even. NaN keeps its sign and
 * top payload bits and is made quiet (what F16C hardware does). */
uint16_t st_f32_to_f16(float x) {
    uint32_t u = f32_bits(x);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
    /* 65520 is halfway between 65504 (max half, odd mantissa) and 2^16: ties go up to inf. */
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);
    if (a < 0x38800000u) {
        /* Below 2^-14: a half subnormal, counted in units of 2^-24.
         * 2^-25 exactly is a tie between 0 and 1 unit and goes to 0 (even). */
        if (a <= 0x33000000u) return sign;
        uint32_t e = a >> 23, m = (a & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126 - e; /* 14..24 */
        uint32_t r = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1u))) r++;
        return (uint16_t)(sign | r); /* r == 0x400 is the smallest normal: still right */
    }
    uint32_t r = (a - 0x38000000u) >> 13; /* rebias exponent 127 -> 15, keep 10 mantissa bits */
    uint32_t rem = a & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) r++; /* a carry into the exponent is right */
    return (uint16_t)(sign | r);
}

float st_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0x1f) return f32_from_bits(sign | 0x7f800000u | (m << 13));
    if (e) return f32_from_bits(sign | ((e + 112) << 23) | (m << 13));
    if (!m) return f32_from_bits(sign);
    /* Subnormal m * 2^-24: shift the leading one up to the implicit bit. */
    e = 113;
    while (!(m & 0x400u)) {
        m <<= 1;
        e--;
    }
    return f32_from_bits(sign | (e << 23) | ((m & 0x3ffu) << 13));
}

int st_to_f32(const StTensor *t, float *out /* numel */, char *err, size_t errlen) {
    const unsigned char *p = t->data;
    size_t n = (size_t)t->numel;
    switch (t->dtype) {
    case ST_F32:
        if (n) memcpy(out, p, n * 4);
        return 0;
    case ST_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            out[i] = st_bf16_to_f32(h);
        }
        return 0;
    case ST_F16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            out[i] = st_f16_to_f32(h);
        }
        return 0;
    case ST_F64:
        for (size_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, p + 8 * i, 8);
            /* Out-of-range casts are undefined in C: round to inf by hand
             * (FLT_MAX plus half an ulp ties to inf, FLT_MAX being odd). */
            out[i] = fabs(d) >= 0x1.ffffffp+127 ? (float)copysign(INFINITY, d) : (float)d;
        }
        return 0;
    default:
        snprintf(err, errlen, "tensor '%s': dtype %s is not a float type (expected F32, F16, BF16 or F64)",
                 t->name, st_dtype_name(t->dtype));
        return -1;
    }
}

/* ---- reading one file ---- */

struct StFile {
    char *path;
    void *map; /* mmap base, NULL when parsed from a caller's buffer */
    size_t map_len;
    StTensor *tensors; /* header order */
    int n;
    HMap by_name; /* name -> StTensor*, keys are the tensors' names */
    char **meta;  /* key, value, key, value, ... */
    int n_meta;
};

static void fmt_shape(char *buf, size_t len, const int64_t *shape, int ndim) {
    size_t o = 0;
    o += (size_t)snprintf(buf + o, len - o, "[");
    for (int i = 0; i < ndim && o < len; i++)
        o += (size_t)snprintf(buf + o, len - o, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (o < len) snprintf(buf + o, len - o, "]");
}

/* A JSON integer 0..2^53 (not a float like 1.0, which Python would not
 * accept as an int). Returns 0, -1 when not an integer, -2 when negative. */
static int json_nonneg_int(const cJSON *v, int64_t *out) {
    if (!json_is_int(v)) return -1;
    double d = v->valuedouble;
    if (d < 0) return -2;
    if (d > ST_MAX_JSON_INT) return -1;
    *out = (int64_t)d;
    return 0;
}

/* Checks one tensor entry and fills t (data still relative: t->data holds
 * the begin offset and *end_out the end). Returns 0 or -1 with err. */
static int parse_entry(const char *path, const cJSON *e, uint64_t data_len, StTensor *t, uint64_t *begin_out,
                       uint64_t *end_out, char *err, size_t errlen) {
    const char *name = e->string;
    if (!cJSON_IsObject(e)) {
        snprintf(err, errlen, "%s: tensor '%s': entry is not an object (expected {\"dtype\", \"shape\", \"data_offsets\"})",
                 path, name);
        return -1;
    }
    const cJSON *dt = json_get(e, "dtype");
    if (!cJSON_IsString(dt)) {
        snprintf(err, errlen, "%s: tensor '%s': missing or non-string \"dtype\"", path, name);
        return -1;
    }
    int dtype = st_dtype_parse(dt->valuestring);
    if (dtype < 0) {
        snprintf(err, errlen,
                 "%s: tensor '%s': unknown dtype '%s' (expected F32, F16, BF16, F64, I64, I32, I8, U8 or BOOL)",
                 path, name, dt->valuestring);
        return -1;
    }
    t->dtype = (StDtype)dtype;

    const cJSON *sh = json_get(e, "shape");
    if (!cJSON_IsArray(sh)) {
        snprintf(err, errlen, "%s: tensor '%s': missing or non-array \"shape\" (expected a list of non-negative ints)",
                 path, name);
        return -1;
    }
    int ndim = cJSON_GetArraySize(sh);
    if (ndim > ST_MAX_DIMS) {
        snprintf(err, errlen, "%s: tensor '%s': shape has %d dimensions (at most %d supported)", path, name, ndim,
                 ST_MAX_DIMS);
        return -1;
    }
    t->ndim = ndim;
    int i = 0;
    for (const cJSON *d = sh->child; d; d = d->next, i++) {
        int rc = json_nonneg_int(d, &t->shape[i]);
        if (rc == -2) {
            snprintf(err, errlen, "%s: tensor '%s': shape dimension %d is negative (%.0f)", path, name, i,
                     d->valuedouble);
            return -1;
        }
        if (rc) {
            snprintf(err, errlen, "%s: tensor '%s': shape dimension %d is not an integer in 0..2^53", path, name, i);
            return -1;
        }
    }
    char shape_s[256];
    fmt_shape(shape_s, sizeof shape_s, t->shape, ndim);

    const cJSON *off = json_get(e, "data_offsets");
    int64_t b = 0, en = 0;
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 || json_nonneg_int(off->child, &b) ||
        json_nonneg_int(off->child->next, &en)) {
        snprintf(err, errlen, "%s: tensor '%s': \"data_offsets\" must be two non-negative ints [begin, end]", path,
                 name);
        return -1;
    }
    if (b > en) {
        snprintf(err, errlen, "%s: tensor '%s': data_offsets [%lld, %lld] have begin after end", path, name,
                 (long long)b, (long long)en);
        return -1;
    }
    if ((uint64_t)en > data_len) {
        snprintf(err, errlen,
                 "%s: tensor '%s': data_offsets [%lld, %lld] run past the end of the data section (%llu bytes)",
                 path, name, (long long)b, (long long)en, (unsigned long long)data_len);
        return -1;
    }

    /* Element count and byte size with overflow checks: a dimension of 0
     * makes the tensor empty whatever the others are. */
    uint64_t numel = 1;
    bool overflow = false;
    for (int k = 0; k < ndim; k++)
        if (t->shape[k] == 0) numel = 0;
    if (numel)
        for (int k = 0; k < ndim; k++) {
            uint64_t d = (uint64_t)t->shape[k];
            if (numel > UINT64_MAX / d) overflow = true;
            else numel *= d;
        }
    size_t esize = st_dtype_size(t->dtype);
    if (!overflow && numel > (uint64_t)INT64_MAX / esize) overflow = true;
    uint64_t have = (uint64_t)(en - b);
    if (overflow) {
        snprintf(err, errlen, "%s: tensor '%s': data_offsets [%lld, %lld] hold %llu bytes but shape %s of %s needs more than 2^63",
                 path, name, (long long)b, (long long)en, (unsigned long long)have, shape_s, st_dtype_name(t->dtype));
        return -1;
    }
    uint64_t need = numel * esize;
    if (have != need) {
        snprintf(err, errlen, "%s: tensor '%s': data_offsets [%lld, %lld] hold %llu bytes but shape %s of %s needs %llu",
                 path, name, (long long)b, (long long)en, (unsigned long long)have, shape_s, st_dtype_name(t->dtype),
                 (unsigned long long)need);
        return -1;
    }
    t->numel = (int64_t)numel;
    t->nbytes = (size_t)need;
    *begin_out = (uint64_t)b;
    *end_out = (uint64_t)en;
    return 0;
}

static int parse_metadata(const char *path, const cJSON *m, StFile *f, char *err, size_t errlen) {
    if (cJSON_IsNull(m)) return 0; /* the reference reader takes null as "no metadata" */
    if (!cJSON_IsObject(m)) {
        snprintf(err, errlen, "%s: \"__metadata__\" is not an object (expected string keys and string values)", path);
        return -1;
    }
    int n = cJSON_GetArraySize(m);
    f->meta = xcalloc((size_t)n * 2 + 1, sizeof *f->meta);
    for (const cJSON *kv = m->child; kv; kv = kv->next) {
        if (!cJSON_IsString(kv)) {
            snprintf(err, errlen, "%s: \"__metadata__\" key '%s': value is not a string", path, kv->string);
            return -1;
        }
        f->meta[2 * f->n_meta] = xstrdup(kv->string);
        f->meta[2 * f->n_meta + 1] = xstrdup(kv->valuestring);
        f->n_meta++;
    }
    return 0;
}

typedef struct {
    uint64_t begin, end;
    int idx;
} Span;

static int span_cmp(const void *a, const void *b) {
    const Span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return x->idx - y->idx;
}

/* JSON lets a name hold "\u0000", which a C string cannot: the reader
 * would cut the name short, so such a header is refused up front. An
 * escape is a backslash preceded by an even number of backslashes. */
static bool has_nul_escape(const char *s, size_t len) {
    for (size_t i = 0; i + 6 <= len; i++) {
        if (s[i] != '\\' || memcmp(s + i + 1, "u0000", 5) != 0) continue;
        size_t k = 0;
        while (k < i && s[i - 1 - k] == '\\') k++;
        if (k % 2 == 0) return true;
    }
    return false;
}

static StFile *parse_file(const unsigned char *buf, size_t len, const char *path, char *err, size_t errlen) {
    if (len < 8) {
        snprintf(err, errlen, "%s: file is %zu bytes, too short for the 8-byte header length", path, len);
        return NULL;
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | buf[i];
    if (hlen > ST_MAX_HEADER) {
        snprintf(err, errlen, "%s: header length %llu is over the %llu-byte limit (not a safetensors file?)", path,
                 (unsigned long long)hlen, ST_MAX_HEADER);
        return NULL;
    }
    if (hlen > len - 8) {
        snprintf(err, errlen, "%s: header length %llu runs past the end of the file (%zu bytes after the length)",
                 path, (unsigned long long)hlen, len - 8);
        return NULL;
    }
    uint64_t data_len = len - 8 - hlen;
    const unsigned char *data = buf + 8 + hlen;

    if (has_nul_escape((const char *)buf + 8, (size_t)hlen)) {
        snprintf(err, errlen, "%s: header holds a \\u0000 (NUL) escape, which names and metadata cannot contain", path);
        return NULL;
    }
    size_t nlen = strlen(path) + 16;
    char *hname = xmalloc(nlen);
    snprintf(hname, nlen, "%s: header", path);
    cJSON *h = json_parse((const char *)buf + 8, (size_t)hlen, hname, err, errlen);
    free(hname);
    if (!h) return NULL;

    StFile *f = xcalloc(1, sizeof *f);
    f->path = xstrdup(path);
    hmap_init(&f->by_name);
    Span *spans = NULL;
    if (!cJSON_IsObject(h)) {
        snprintf(err, errlen, "%s: header is not a JSON object", path);
        goto fail;
    }
    int n = 0;
    for (const cJSON *e = h->child; e; e = e->next) n += strcmp(e->string, "__metadata__") != 0;
    f->tensors = xcalloc((size_t)n + 1, sizeof *f->tensors);
    spans = xcalloc((size_t)n + 1, sizeof *spans);
    for (const cJSON *e = h->child; e; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0) {
            if (parse_metadata(path, e, f, err, errlen)) goto fail;
            continue;
        }
        StTensor *t = &f->tensors[f->n];
        t->name = xstrdup(e->string);
        f->n++; /* counted before validation so st_close frees the name */
        Span *s = &spans[f->n - 1];
        s->idx = f->n - 1;
        if (parse_entry(path, e, data_len, t, &s->begin, &s->end, err, errlen)) goto fail;
        t->data = data + s->begin;
        if (hmap_put(&f->by_name, t->name, t)) {
            /* json_parse keeps one value per key, so this is a name with an
             * embedded NUL colliding with its prefix. */
            snprintf(err, errlen, "%s: tensor '%s' appears twice in the header", path, t->name);
            goto fail;
        }
    }

    /* Overlap: after sorting by offset, a non-empty tensor must start at or
     * after the furthest end seen so far. Gaps are tolerated. */
    qsort(spans, (size_t)f->n, sizeof *spans, span_cmp);
    int far = -1;
    for (int i = 0; i < f->n; i++) {
        const Span *s = &spans[i];
        if (s->begin == s->end) continue;
        if (far >= 0 && s->begin < spans[far].end) {
            const Span *p = &spans[far];
            snprintf(err, errlen, "%s: tensors '%s' (data_offsets [%llu, %llu]) and '%s' (data_offsets [%llu, %llu]) overlap",
                     path, f->tensors[p->idx].name, (unsigned long long)p->begin, (unsigned long long)p->end,
                     f->tensors[s->idx].name, (unsigned long long)s->begin, (unsigned long long)s->end);
            goto fail;
        }
        if (far < 0 || s->end > spans[far].end) far = i;
    }
    free(spans);
    cJSON_Delete(h);
    return f;
fail:
    free(spans);
    cJSON_Delete(h);
    st_close(f);
    return NULL;
}

StFile *st_open_buffer(const void *data, size_t len, const char *name, char *err, size_t errlen) {
    if (err && errlen) err[0] = '\0';
    char dummy[8];
    if (!err || !errlen) err = dummy, errlen = sizeof dummy;
    return parse_file(data, len, name, err, errlen);
}

StFile *st_open(const char *path, char *err, size_t errlen) {
    char dummy[8];
    if (!err || !errlen) err = dummy, errlen = sizeof dummy;
    err[0] = '\0';
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file", path);
        close(fd);
        return NULL;
    }
    size_t len = (size_t)st.st_size;
    if (len < 8) {
        close(fd);
        snprintf(err, errlen, "%s: file is %zu bytes, too short for the 8-byte header length", path, len);
        return NULL;
    }
    void *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd); /* the mapping keeps the file alive */
    if (map == MAP_FAILED) {
        snprintf(err, errlen, "%s: cannot map: %s", path, strerror(errno));
        return NULL;
    }
    StFile *f = parse_file(map, len, path, err, errlen);
    if (!f) {
        munmap(map, len);
        return NULL;
    }
    f->map = map;
    f->map_len = len;
    return f;
}

void st_close(StFile *f) {
    if (!f) return;
    for (int i = 0; i < f->n; i++) free((char *)f->tensors[i].name);
    free(f->tensors);
    hmap_free(&f->by_name);
    for (int i = 0; i < 2 * f->n_meta; i++) free(f->meta[i]);
    free(f->meta);
    if (f->map) munmap(f->map, f->map_len);
    free(f->path);
    free(f);
}

int st_count(const StFile *f) { return f->n; }

const StTensor *st_tensor_at(const StFile *f, int i) {
    if (i < 0 || i >= f->n) return NULL;
    return &f->tensors[i];
}

const StTensor *st_find(const StFile *f, const char *name) { return hmap_get(&f->by_name, name); }

const char *st_metadata(const StFile *f, const char *key) {
    for (int i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta[2 * i], key) == 0) return f->meta[2 * i + 1];
    return NULL;
}

/* ---- model directories ---- */

struct StDir {
    StFile **files;
    int n_files;
    const StTensor **tensors; /* index order (header order for one file) */
    int n;
    HMap by_name;
};

static char *path_join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = xmalloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static bool is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* A shard name must stay inside the model directory. */
static bool shard_name_ok(const char *s) {
    if (!*s || s[0] == '/') return false;
    for (const char *p = s; *p;) {
        const char *q = strchr(p, '/');
        size_t n = q ? (size_t)(q - p) : strlen(p);
        if (n == 2 && p[0] == '.' && p[1] == '.') return false;
        if (!q) break;
        p = q + 1;
    }
    return true;
}

static void dir_add(StDir *d, const StTensor *t) {
    d->tensors = xrealloc(d->tensors, ((size_t)d->n + 1) * sizeof *d->tensors);
    d->tensors[d->n++] = t;
    hmap_put(&d->by_name, t->name, (void *)t);
}

static int dir_open_index(StDir *d, const char *dir, const char *index_path, char *err, size_t errlen) {
    cJSON *idx = json_load_file(index_path, err, errlen);
    if (!idx) return -1;
    int rc = -1;
    HMap shard_by_name; /* shard file name (as written in the index) -> StFile* */
    hmap_init(&shard_by_name);
    char **shard_names = NULL;
    const cJSON *wm = json_get(idx, "weight_map");
    if (!cJSON_IsObject(wm)) {
        snprintf(err, errlen, "%s: missing or non-object \"weight_map\" (expected {\"tensor name\": \"shard file\"})",
                 index_path);
        goto done;
    }
    for (const cJSON *e = wm->child; e; e = e->next) {
        if (!cJSON_IsString(e) || !shard_name_ok(e->valuestring)) {
            snprintf(err, errlen, "%s: tensor '%s': weight_map value must be a shard file name inside the directory",
                     index_path, e->string);
            goto done;
        }
        StFile *f = hmap_get(&shard_by_name, e->valuestring);
        if (!f) {
            char *p = path_join(dir, e->valuestring);
            char sub[768];
            f = st_open(p, sub, sizeof sub);
            free(p);
            if (!f) {
                snprintf(err, errlen, "%s: tensor '%s' is mapped to shard '%s', which cannot be loaded: %s", index_path,
                         e->string, e->valuestring, sub);
                goto done;
            }
            d->files = xrealloc(d->files, ((size_t)d->n_files + 1) * sizeof *d->files);
            d->files[d->n_files++] = f;
            shard_names = xrealloc(shard_names, (size_t)d->n_files * sizeof *shard_names);
            shard_names[d->n_files - 1] = xstrdup(e->valuestring);
            hmap_put(&shard_by_name, shard_names[d->n_files - 1], f);
        }
        const StTensor *t = st_find(f, e->string);
        if (!t) {
            snprintf(err, errlen, "%s: tensor '%s' is mapped to shard '%s', which does not contain it", index_path,
                     e->string, e->valuestring);
            goto done;
        }
        dir_add(d, t);
    }
    rc = 0;
done:
    for (int i = 0; i < d->n_files; i++) free(shard_names ? shard_names[i] : NULL);
    free(shard_names);
    hmap_free(&shard_by_name);
    cJSON_Delete(idx);
    return rc;
}

StDir *st_open_dir(const char *dir, char *err, size_t errlen) {
    char dummy[8];
    if (!err || !errlen) err = dummy, errlen = sizeof dummy;
    err[0] = '\0';
    StDir *d = xcalloc(1, sizeof *d);
    hmap_init(&d->by_name);
    char *single = path_join(dir, "model.safetensors");
    char *index = path_join(dir, "model.safetensors.index.json");
    int rc = -1;
    /* Like transformers: a single file wins over an index. */
    if (is_file(single)) {
        StFile *f = st_open(single, err, errlen);
        if (f) {
            d->files = xmalloc(sizeof *d->files);
            d->files[d->n_files++] = f;
            for (int i = 0; i < f->n; i++) dir_add(d, &f->tensors[i]);
            rc = 0;
        }
    } else if (is_file(index)) {
        rc = dir_open_index(d, dir, index, err, errlen);
    } else {
        snprintf(err, errlen, "%s: no model.safetensors or model.safetensors.index.json in this directory", dir);
    }
    free(single);
    free(index);
    if (rc) {
        st_close_dir(d);
        return NULL;
    }
    return d;
}

void st_close_dir(StDir *d) {
    if (!d) return;
    for (int i = 0; i < d->n_files; i++) st_close(d->files[i]);
    free(d->files);
    free(d->tensors);
    hmap_free(&d->by_name);
    free(d);
}

const StTensor *st_dir_find(const StDir *d, const char *name) { return hmap_get(&d->by_name, name); }

int st_dir_count(const StDir *d) { return d->n; }

const StTensor *st_dir_tensor_at(const StDir *d, int i) {
    if (i < 0 || i >= d->n) return NULL;
    return d->tensors[i];
}

/* ---- writing ---- */

typedef struct {
    char *name;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    unsigned char *data;
    size_t nbytes;
} StWTensor;

struct StWriter {
    StDtype dtype;
    StWTensor *t;
    int n, cap;
    HMap names; /* duplicate check: name -> name (the tensor array moves) */
    char **meta; /* key, value pairs */
    int n_meta;
};

StWriter *st_writer_new(StDtype dtype) {
    if (dtype != ST_F32 && dtype != ST_BF16 && dtype != ST_F16)
        die_runtime("st_writer_new: dtype %s cannot be written (F32, BF16 or F16)", st_dtype_name(dtype));
    StWriter *w = xcalloc(1, sizeof *w);
    w->dtype = dtype;
    hmap_init(&w->names);
    return w;
}

void st_writer_add(StWriter *w, const char *name, const int64_t *shape /* ndim */, int ndim,
                   const float *data /* numel */) {
    if (ndim < 0 || ndim > ST_MAX_DIMS) die_runtime("st_writer_add: tensor '%s' has %d dimensions", name, ndim);
    if (strcmp(name, "__metadata__") == 0) die_runtime("st_writer_add: '__metadata__' is not a tensor name");
    if (hmap_get(&w->names, name)) die_runtime("st_writer_add: tensor '%s' added twice", name);
    size_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) die_runtime("st_writer_add: tensor '%s' has a negative dimension", name);
        if (shape[i] && numel > SIZE_MAX / 8 / (size_t)shape[i])
            die_runtime("st_writer_add: tensor '%s' is too large", name);
        numel *= (size_t)shape[i];
    }
    if (w->n == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 16;
        w->t = xrealloc(w->t, (size_t)w->cap * sizeof *w->t);
    }
    StWTensor *t = &w->t[w->n++];
    memset(t, 0, sizeof *t);
    t->name = xstrdup(name);
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->nbytes = numel * st_dtype_size(w->dtype);
    t->data = xmalloc(t->nbytes);
    if (w->dtype == ST_F32) {
        if (numel) memcpy(t->data, data, t->nbytes);
    } else {
        uint16_t (*conv)(float) = w->dtype == ST_BF16 ? st_f32_to_bf16 : st_f32_to_f16;
        for (size_t i = 0; i < numel; i++) {
            uint16_t h = conv(data[i]);
            memcpy(t->data + 2 * i, &h, 2);
        }
    }
    hmap_put(&w->names, t->name, t->name);
}

void st_writer_metadata(StWriter *w, const char *key, const char *value) {
    for (int i = 0; i < w->n_meta; i++)
        if (strcmp(w->meta[2 * i], key) == 0) {
            free(w->meta[2 * i + 1]);
            w->meta[2 * i + 1] = xstrdup(value);
            return;
        }
    w->meta = xrealloc(w->meta, ((size_t)w->n_meta + 1) * 2 * sizeof *w->meta);
    w->meta[2 * w->n_meta] = xstrdup(key);
    w->meta[2 * w->n_meta + 1] = xstrdup(value);
    w->n_meta++;
}

/* A JSON string as serde_json writes it: UTF-8 kept, only '"', '\\' and
 * control characters escaped (short forms where JSON has them). */
static void put_json_string(SBuf *b, const char *s) {
    sbuf_putc(b, '"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': sbuf_puts(b, "\\\""); break;
        case '\\': sbuf_puts(b, "\\\\"); break;
        case '\b': sbuf_puts(b, "\\b"); break;
        case '\f': sbuf_puts(b, "\\f"); break;
        case '\n': sbuf_puts(b, "\\n"); break;
        case '\r': sbuf_puts(b, "\\r"); break;
        case '\t': sbuf_puts(b, "\\t"); break;
        default:
            if (*p < 0x20) sbuf_printf(b, "\\u%04x", *p);
            else sbuf_putc(b, (char)*p);
        }
    }
    sbuf_putc(b, '"');
}

static int wtensor_cmp(const void *a, const void *b) {
    const StWTensor *const *x = a, *const *y = b;
    return strcmp((*x)->name, (*y)->name);
}

static int str_ptr_cmp(const void *a, const void *b) {
    return strcmp(**(char *const *const *)a, **(char *const *const *)b);
}

int st_writer_save(StWriter *w, const char *path, char *err, size_t errlen) {
    char dummy[8];
    if (!err || !errlen) err = dummy, errlen = sizeof dummy;
    err[0] = '\0';
    StWTensor **order = xmalloc(((size_t)w->n + 1) * sizeof *order);
    for (int i = 0; i < w->n; i++) order[i] = &w->t[i];
    qsort(order, (size_t)w->n, sizeof *order, wtensor_cmp);

    /* Header: "__metadata__" first (keys sorted, for a stable file), then
     * the tensors in data order. */
    SBuf h;
    sbuf_init(&h);
    sbuf_putc(&h, '{');
    if (w->n_meta) {
        char ***kp = xmalloc((size_t)w->n_meta * sizeof *kp);
        for (int i = 0; i < w->n_meta; i++) kp[i] = &w->meta[2 * i];
        qsort(kp, (size_t)w->n_meta, sizeof *kp, str_ptr_cmp);
        sbuf_puts(&h, "\"__metadata__\":{");
        for (int i = 0; i < w->n_meta; i++) {
            if (i) sbuf_putc(&h, ',');
            put_json_string(&h, kp[i][0]);
            sbuf_putc(&h, ':');
            put_json_string(&h, kp[i][1]);
        }
        sbuf_putc(&h, '}');
        free(kp);
    }
    uint64_t off = 0;
    for (int i = 0; i < w->n; i++) {
        const StWTensor *t = order[i];
        if (i || w->n_meta) sbuf_putc(&h, ',');
        put_json_string(&h, t->name);
        sbuf_printf(&h, ":{\"dtype\":\"%s\",\"shape\":[", st_dtype_name(w->dtype));
        for (int k = 0; k < t->ndim; k++) sbuf_printf(&h, "%s%lld", k ? "," : "", (long long)t->shape[k]);
        sbuf_printf(&h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                    (unsigned long long)(off + t->nbytes));
        off += t->nbytes;
    }
    sbuf_putc(&h, '}');
    while (h.len % 8) sbuf_putc(&h, ' ');
    unsigned char lenbuf[8];
    for (int i = 0; i < 8; i++) lenbuf[i] = (unsigned char)((uint64_t)h.len >> (8 * i));

    /* Stream to a temporary name next to the target, then rename: the data
     * can be many GB, so no second copy in memory. */
    size_t tn = strlen(path) + 32;
    char *tmp = xmalloc(tn);
    snprintf(tmp, tn, "%s.tmp.%ld", path, (long)getpid());
    int rc = -1;
    FILE *fp = fopen(tmp, "wb");
    if (!fp) {
        snprintf(err, errlen, "%s: cannot create: %s", tmp, strerror(errno));
        goto done;
    }
    tmpfile_register(tmp);
    bool ok = fwrite(lenbuf, 1, 8, fp) == 8 && fwrite(h.data, 1, h.len, fp) == h.len;
    for (int i = 0; ok && i < w->n; i++)
        if (order[i]->nbytes) ok = fwrite(order[i]->data, 1, order[i]->nbytes, fp) == order[i]->nbytes;
    ok = fflush(fp) == 0 && ok;
    ok = fsync(fileno(fp)) == 0 && ok;
    ok = fclose(fp) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        snprintf(err, errlen, "%s: cannot write: %s", path, strerror(errno));
        unlink(tmp);
    } else {
        rc = 0;
    }
    tmpfile_unregister(tmp);
done:
    free(tmp);
    free(order);
    sbuf_free(&h);
    return rc;
}

void st_writer_free(StWriter *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) {
        free(w->t[i].name);
        free(w->t[i].data);
    }
    free(w->t);
    hmap_free(&w->names);
    for (int i = 0; i < 2 * w->n_meta; i++) free(w->meta[i]);
    free(w->meta);
    free(w);
}
