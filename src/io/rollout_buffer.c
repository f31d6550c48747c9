/* rollout_buffer.c — rollout buffer files (see rollout_buffer.h). */
#include "io/rollout_buffer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hdf5.h>

#include "core/error.h"
#include "core/sbuf.h"
#include "io/h5util.h"

RolloutBuffer *rollout_buffer_new(int64_t step, int64_t policy_version, const char *config_hash) {
    RolloutBuffer *rb = xcalloc(1, sizeof *rb);
    rb->step = step;
    rb->policy_version = policy_version;
    rb->config_hash = xstrdup(config_hash ? config_hash : "");
    rb->offsets = xcalloc(1, sizeof *rb->offsets);
    return rb;
}

static void free_strings(char **s, int n) {
    if (!s) return;
    for (int i = 0; i < n; i++) free(s[i]);
    free(s);
}

void rollout_buffer_free(RolloutBuffer *rb) {
    if (!rb) return;
    free(rb->config_hash);
    free(rb->tokens);
    free(rb->loss_mask);
    free(rb->logprobs);
    free(rb->offsets);
    free(rb->reward_raw);
    free(rb->reward_partial);
    free(rb->reward_shaped);
    free(rb->group_id);
    free(rb->turns);
    free_strings(rb->termination, rb->n_episodes);
    free_strings(rb->task_ref, rb->n_episodes);
    free_strings(rb->reward_info, rb->n_episodes);
    free_strings(rb->messages, rb->n_episodes);
    free(rb);
}

/* Size the per-episode arrays for cap episodes. */
static void reserve_episodes(RolloutBuffer *rb, int cap) {
    rb->cap_episodes = cap;
    size_t n = (size_t)cap;
    rb->offsets = xrealloc(rb->offsets, (n + 1) * sizeof *rb->offsets);
    rb->reward_raw = xrealloc(rb->reward_raw, n * sizeof *rb->reward_raw);
    rb->reward_partial = xrealloc(rb->reward_partial, n * sizeof *rb->reward_partial);
    rb->reward_shaped = xrealloc(rb->reward_shaped, n * sizeof *rb->reward_shaped);
    rb->group_id = xrealloc(rb->group_id, n * sizeof *rb->group_id);
    rb->turns = xrealloc(rb->turns, n * sizeof *rb->turns);
    rb->termination = xrealloc(rb->termination, n * sizeof *rb->termination);
    rb->task_ref = xrealloc(rb->task_ref, n * sizeof *rb->task_ref);
    rb->reward_info = xrealloc(rb->reward_info, n * sizeof *rb->reward_info);
    rb->messages = xrealloc(rb->messages, n * sizeof *rb->messages);
}

static void reserve_tokens(RolloutBuffer *rb, int64_t cap) {
    rb->cap_tokens = cap;
    size_t n = (size_t)(cap > 0 ? cap : 1);
    rb->tokens = xrealloc(rb->tokens, n * sizeof *rb->tokens);
    rb->loss_mask = xrealloc(rb->loss_mask, n * sizeof *rb->loss_mask);
    rb->logprobs = xrealloc(rb->logprobs, n * sizeof *rb->logprobs);
}

void rollout_buffer_add(RolloutBuffer *rb, const RolloutEpisode *ep) {
    if (rb->n_episodes == rb->cap_episodes) reserve_episodes(rb, rb->cap_episodes ? 2 * rb->cap_episodes : 16);
    if (rb->n_tokens + ep->n_tokens > rb->cap_tokens) {
        int64_t cap = rb->cap_tokens ? rb->cap_tokens : 4096;
        while (cap < rb->n_tokens + ep->n_tokens) cap *= 2;
        reserve_tokens(rb, cap);
    }
    size_t k = (size_t)ep->n_tokens;
    if (k) {
        memcpy(rb->tokens + rb->n_tokens, ep->tokens, k * sizeof *rb->tokens);
        memcpy(rb->loss_mask + rb->n_tokens, ep->loss_mask, k * sizeof *rb->loss_mask);
        memcpy(rb->logprobs + rb->n_tokens, ep->logprobs, k * sizeof *rb->logprobs);
    }
    rb->n_tokens += ep->n_tokens;
    int i = rb->n_episodes++;
    rb->offsets[i + 1] = rb->n_tokens;
    rb->reward_raw[i] = ep->reward_raw;
    rb->reward_partial[i] = ep->reward_partial;
    rb->reward_shaped[i] = ep->reward_shaped;
    rb->group_id[i] = ep->group_id;
    rb->turns[i] = ep->turns;
    rb->termination[i] = xstrdup(ep->termination ? ep->termination : "");
    rb->task_ref[i] = xstrdup(ep->task_ref ? ep->task_ref : "");
    rb->reward_info[i] = xstrdup(ep->reward_info ? ep->reward_info : "");
    rb->messages[i] = xstrdup(ep->messages ? ep->messages : "");
}

/* ---- packing: per episode n_tokens, the three token arrays, the scalars,
 * then the four strings each as length + bytes. */

static void put(SBuf *b, const void *p, size_t n) { sbuf_put(b, (const char *)p, n); }

static void put_str(SBuf *b, const char *s) {
    int64_t n = (int64_t)strlen(s);
    put(b, &n, sizeof n);
    put(b, s, (size_t)n);
}

char *rollout_buffer_pack(const RolloutBuffer *rb, int from, int to, size_t *len) {
    SBuf b;
    sbuf_init(&b);
    for (int i = from; i < to; i++) {
        RolloutEpisode e = rollout_buffer_episode(rb, i);
        size_t k = (size_t)e.n_tokens;
        put(&b, &e.n_tokens, sizeof e.n_tokens);
        put(&b, e.tokens, k * sizeof *e.tokens);
        put(&b, e.loss_mask, k * sizeof *e.loss_mask);
        put(&b, e.logprobs, k * sizeof *e.logprobs);
        double r[3] = {e.reward_raw, e.reward_partial, e.reward_shaped};
        int32_t g[2] = {e.group_id, e.turns};
        put(&b, r, sizeof r);
        put(&b, g, sizeof g);
        put_str(&b, e.termination);
        put_str(&b, e.task_ref);
        put_str(&b, e.reward_info);
        put_str(&b, e.messages);
    }
    *len = b.len;
    if (!b.data) return xcalloc(1, 1);
    return sbuf_take(&b);
}

/* Bytes at *p of length n, advancing; a short buffer is a bug. */
static const char *take(const char **p, const char *end, size_t n) {
    if ((size_t)(end - *p) < n) die_runtime("rollout_buffer_unpack: truncated episode bytes");
    const char *q = *p;
    *p += n;
    return q;
}

static char *take_str(const char **p, const char *end) {
    int64_t n;
    memcpy(&n, take(p, end, sizeof n), sizeof n);
    const char *s = take(p, end, (size_t)n);
    char *out = xmalloc((size_t)n + 1);
    memcpy(out, s, (size_t)n);
    out[n] = '\0';
    return out;
}

void rollout_buffer_unpack(RolloutBuffer *rb, const char *bytes, size_t len) {
    const char *p = bytes, *end = bytes + len;
    while (p < end) {
        RolloutEpisode e = {0};
        memcpy(&e.n_tokens, take(&p, end, sizeof e.n_tokens), sizeof e.n_tokens);
        size_t k = (size_t)e.n_tokens;
        /* the arrays may be unaligned in the byte stream: copy them out */
        int32_t *tokens = xmalloc(k * sizeof *tokens + 1);
        uint8_t *mask = xmalloc(k + 1);
        float *lp = xmalloc(k * sizeof *lp + 1);
        memcpy(tokens, take(&p, end, k * sizeof *tokens), k * sizeof *tokens);
        memcpy(mask, take(&p, end, k), k);
        memcpy(lp, take(&p, end, k * sizeof *lp), k * sizeof *lp);
        double r[3];
        int32_t g[2];
        memcpy(r, take(&p, end, sizeof r), sizeof r);
        memcpy(g, take(&p, end, sizeof g), sizeof g);
        char *term = take_str(&p, end), *ref = take_str(&p, end), *info = take_str(&p, end);
        char *msgs = take_str(&p, end);
        e.tokens = tokens, e.loss_mask = mask, e.logprobs = lp;
        e.reward_raw = r[0], e.reward_partial = r[1], e.reward_shaped = r[2];
        e.group_id = g[0], e.turns = g[1];
        e.termination = term, e.task_ref = ref, e.reward_info = info, e.messages = msgs;
        rollout_buffer_add(rb, &e);
        free(tokens), free(mask), free(lp), free(term), free(ref), free(info), free(msgs);
    }
}

RolloutEpisode rollout_buffer_episode(const RolloutBuffer *rb, int i) {
    int64_t t0 = rb->offsets[i];
    RolloutEpisode ep = {
        .n_tokens = rb->offsets[i + 1] - t0,
        .tokens = rb->tokens + t0,
        .loss_mask = rb->loss_mask + t0,
        .logprobs = rb->logprobs + t0,
        .reward_raw = rb->reward_raw[i],
        .reward_partial = rb->reward_partial[i],
        .reward_shaped = rb->reward_shaped[i],
        .group_id = rb->group_id[i],
        .turns = rb->turns[i],
        .termination = rb->termination[i],
        .task_ref = rb->task_ref[i],
        .reward_info = rb->reward_info[i],
        .messages = rb->messages[i],
    };
    return ep;
}

/* ------------------------------------------------------------ writing */

static int write_contents(hid_t f, const RolloutBuffer *rb, const char *path, char *err, size_t errlen) {
    int64_t N = rb->n_tokens, n = rb->n_episodes, n1 = n + 1;
    /* attributes first: a reader can tell what the file is even if a dataset is bad */
    if (h5u_attr_write_i64(f, path, "format_version", ROLLOUT_BUFFER_FORMAT_VERSION, err, errlen) ||
        h5u_attr_write_i64(f, path, "step", rb->step, err, errlen) ||
        h5u_attr_write_i64(f, path, "policy_version", rb->policy_version, err, errlen) ||
        h5u_attr_write_str(f, path, "config_hash", rb->config_hash, err, errlen))
        return -1;
    if (h5u_write(f, path, "tokens", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, &N, rb->tokens, true, err, errlen) ||
        h5u_write(f, path, "loss_mask", H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, &N, rb->loss_mask, true, err, errlen) ||
        h5u_write(f, path, "logprobs", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 1, &N, rb->logprobs, true, err, errlen) ||
        h5u_write(f, path, "offsets", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, &n1, rb->offsets, false, err, errlen) ||
        h5u_write(f, path, "reward_raw", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, &n, rb->reward_raw, false, err, errlen) ||
        h5u_write(f, path, "reward_partial", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, &n, rb->reward_partial, false, err,
                  errlen) ||
        h5u_write(f, path, "reward_shaped", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, &n, rb->reward_shaped, false, err,
                  errlen) ||
        h5u_write(f, path, "group_id", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, &n, rb->group_id, false, err, errlen) ||
        h5u_write(f, path, "turns", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, &n, rb->turns, false, err, errlen) ||
        h5u_write_strings(f, path, "termination", n, (const char *const *)rb->termination, false, err, errlen) ||
        h5u_write_strings(f, path, "task_ref", n, (const char *const *)rb->task_ref, true, err, errlen) ||
        h5u_write_strings(f, path, "reward_info", n, (const char *const *)rb->reward_info, true, err, errlen))
        return -1;
    /* the conversations only when kept (evaluation keeps them; training does not) */
    bool any = false;
    for (int64_t i = 0; i < n && !any; i++) any = rb->messages[i][0] != '\0';
    if (any && h5u_write_strings(f, path, "messages", n, (const char *const *)rb->messages, true, err, errlen))
        return -1;
    return 0;
}

int rollout_buffer_write(const RolloutBuffer *rb, const char *path, char *err, size_t errlen) {
    char *tmp = h5u_tmp_name(path);
    tmpfile_register(tmp);
    H5uQuiet q;
    h5u_quiet_begin(&q);
    int rc = -1;
    /* built in memory, then written with plain write() (see h5util.h) */
    hid_t f = h5u_create_mem(tmp, err, errlen);
    if (f >= 0) {
        rc = write_contents(f, rb, path, err, errlen);
        if (rc == 0) {
            rc = h5u_save_mem(f, path, tmp, err, errlen);
        } else {
            H5Fclose(f);
        }
        if (rc == 0) rc = h5u_publish(tmp, path, err, errlen);
    }
    h5u_quiet_end(&q);
    if (rc != 0) unlink(tmp);
    tmpfile_unregister(tmp);
    free(tmp);
    return rc;
}

/* ------------------------------------------------------------ reading */

/* Read 1-D dataset name of kind/size with exactly n elements into out. */
static int read_1d(hid_t f, const char *path, const char *name, H5uKind kind, size_t size, const char *dtype,
                   hid_t mtype, int64_t n, void *out, char *err, size_t errlen) {
    int64_t dims[8];
    hid_t d = h5u_open_checked(f, path, name, kind, size, dtype, 1, dims, err, errlen);
    if (d < 0) return -1;
    int rc = 0;
    if (dims[0] != n) {
        snprintf(err, errlen, "%s: dataset '%s': expected %lld elements, found %lld", path, name, (long long)n,
                 (long long)dims[0]);
        rc = -1;
    } else {
        rc = h5u_read_all(d, path, name, mtype, out, err, errlen);
    }
    H5Dclose(d);
    return rc;
}

static char **read_strings(hid_t f, const char *path, const char *name, int64_t n, char *err, size_t errlen) {
    int64_t dims[8];
    hid_t d = h5u_open_checked(f, path, name, H5U_STRING, 0, "variable-length string", 1, dims, err, errlen);
    if (d < 0) return NULL;
    char **s = NULL;
    if (dims[0] != n)
        snprintf(err, errlen, "%s: dataset '%s': expected %lld elements, found %lld", path, name, (long long)n,
                 (long long)dims[0]);
    else
        s = h5u_read_strings(d, path, name, n, err, errlen);
    H5Dclose(d);
    return s;
}

static int read_contents(hid_t f, const char *path, RolloutBuffer *rb, char *err, size_t errlen) {
    int64_t version;
    if (h5u_attr_read_i64(f, path, "/", "format_version", &version, err, errlen)) return -1;
    if (version != ROLLOUT_BUFFER_FORMAT_VERSION) {
        snprintf(err, errlen, "%s: format_version %lld is not supported (expected %d)", path, (long long)version,
                 ROLLOUT_BUFFER_FORMAT_VERSION);
        return -1;
    }
    if (h5u_attr_read_i64(f, path, "/", "step", &rb->step, err, errlen) ||
        h5u_attr_read_i64(f, path, "/", "policy_version", &rb->policy_version, err, errlen))
        return -1;
    free(rb->config_hash);
    rb->config_hash = h5u_attr_read_str(f, path, "/", "config_hash", err, errlen);
    if (!rb->config_hash) return -1;

    /* offsets fix the episode and token counts everything else must match */
    int64_t dims[8];
    hid_t d = h5u_open_checked(f, path, "offsets", H5U_INT, 8, "int64", 1, dims, err, errlen);
    if (d < 0) return -1;
    if (dims[0] < 1 || dims[0] - 1 > INT32_MAX) {
        snprintf(err, errlen, "%s: dataset 'offsets': expected n_episodes + 1 >= 1 elements, found %lld", path,
                 (long long)dims[0]);
        H5Dclose(d);
        return -1;
    }
    int n = (int)(dims[0] - 1);
    reserve_episodes(rb, n);
    int rc = h5u_read_all(d, path, "offsets", H5T_NATIVE_INT64, rb->offsets, err, errlen);
    H5Dclose(d);
    if (rc) return -1;
    if (rb->offsets[0] != 0) {
        snprintf(err, errlen, "%s: dataset 'offsets': must start at 0, found %lld", path, (long long)rb->offsets[0]);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        if (rb->offsets[i + 1] < rb->offsets[i]) {
            snprintf(err, errlen, "%s: dataset 'offsets': not monotonic at episode %d (%lld then %lld)", path, i,
                     (long long)rb->offsets[i], (long long)rb->offsets[i + 1]);
            return -1;
        }
    }
    int64_t N = rb->offsets[n];
    d = h5u_open_checked(f, path, "tokens", H5U_INT, 4, "int32", 1, dims, err, errlen);
    if (d < 0) return -1;
    H5Dclose(d);
    if (dims[0] != N) {
        snprintf(err, errlen, "%s: dataset 'tokens': offsets end at %lld but there are %lld tokens", path,
                 (long long)N, (long long)dims[0]);
        return -1;
    }
    reserve_tokens(rb, N);
    if (read_1d(f, path, "tokens", H5U_INT, 4, "int32", H5T_NATIVE_INT32, N, rb->tokens, err, errlen) ||
        read_1d(f, path, "loss_mask", H5U_UINT, 1, "uint8", H5T_NATIVE_UINT8, N, rb->loss_mask, err, errlen) ||
        read_1d(f, path, "logprobs", H5U_FLOAT, 4, "float32", H5T_NATIVE_FLOAT, N, rb->logprobs, err, errlen))
        return -1;
    rb->n_tokens = N;
    for (int64_t t = 0; t < N; t++) {
        if (rb->loss_mask[t] > 1) {
            snprintf(err, errlen, "%s: dataset 'loss_mask': value %d at token %lld (expected 0 or 1)", path,
                     rb->loss_mask[t], (long long)t);
            return -1;
        }
    }
    if (read_1d(f, path, "reward_raw", H5U_FLOAT, 8, "float64", H5T_NATIVE_DOUBLE, n, rb->reward_raw, err, errlen) ||
        read_1d(f, path, "reward_partial", H5U_FLOAT, 8, "float64", H5T_NATIVE_DOUBLE, n, rb->reward_partial, err,
                errlen) ||
        read_1d(f, path, "reward_shaped", H5U_FLOAT, 8, "float64", H5T_NATIVE_DOUBLE, n, rb->reward_shaped, err,
                errlen) ||
        read_1d(f, path, "group_id", H5U_INT, 4, "int32", H5T_NATIVE_INT32, n, rb->group_id, err, errlen) ||
        read_1d(f, path, "turns", H5U_INT, 4, "int32", H5T_NATIVE_INT32, n, rb->turns, err, errlen))
        return -1;
    /* the string arrays become owned (and freed by n_episodes) only once all three are read */
    char **term = read_strings(f, path, "termination", n, err, errlen);
    char **ref = term ? read_strings(f, path, "task_ref", n, err, errlen) : NULL;
    char **info = ref ? read_strings(f, path, "reward_info", n, err, errlen) : NULL;
    char **msgs = NULL;
    if (info && H5Lexists(f, "messages", H5P_DEFAULT) > 0) {
        msgs = read_strings(f, path, "messages", n, err, errlen);
        if (!msgs) free_strings(info, n), info = NULL;
    } else if (info) {
        msgs = xmalloc((size_t)(n > 0 ? n : 1) * sizeof *msgs);
        for (int64_t i = 0; i < n; i++) msgs[i] = xstrdup("");
    }
    if (!info) {
        free_strings(term, n);
        free_strings(ref, n);
        return -1;
    }
    free(rb->termination);
    free(rb->task_ref);
    free(rb->reward_info);
    free(rb->messages);
    rb->messages = msgs;
    rb->termination = term;
    rb->task_ref = ref;
    rb->reward_info = info;
    rb->n_episodes = n;
    return 0;
}

RolloutBuffer *rollout_buffer_read(const char *path, char *err, size_t errlen) {
    H5uQuiet q;
    h5u_quiet_begin(&q);
    RolloutBuffer *rb = NULL;
    hid_t f = -1;
    if (access(path, R_OK) != 0) {
        snprintf(err, errlen, "%s: cannot open: no such readable file", path);
    } else if ((f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT)) < 0) {
        snprintf(err, errlen, "%s: not an HDF5 file", path);
    } else {
        rb = rollout_buffer_new(0, 0, "");
        if (read_contents(f, path, rb, err, errlen) != 0) {
            rollout_buffer_free(rb);
            rb = NULL;
        }
        H5Fclose(f);
    }
    h5u_quiet_end(&q);
    return rb;
}
