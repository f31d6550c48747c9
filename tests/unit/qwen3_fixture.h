/* qwen3_fixture.h — reading the Qwen3 engine fixtures of tests/gen_qwen3_fixtures.py
 * (tests/fixtures/qwen3/<name>/{batch.json, expected.safetensors}), shared by
 * the unit tests and the MPI tests. A broken fixture is a broken checkout:
 * the helpers stop with die_runtime. */
#ifndef TAU2_TEST_QWEN3_FIXTURE_H
#define TAU2_TEST_QWEN3_FIXTURE_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/json.h"
#include "model/safetensors.h"

#define QWEN3_FIXTURE_DIR TAU2_SOURCE_DIR "/tests/fixtures/qwen3"

/* A packed batch and the reference values for it. */
typedef struct {
    StFile *expected;
    int T, n_seqs;
    int32_t *tokens, *targets, *seq_start; /* (T), (T), (n_seqs + 1) */
    float *mask;                           /* (T) loss mask */
} Qwen3FixtureBatch;

static inline int32_t *qfix_json_ints(const cJSON *arr, int *n) {
    *n = cJSON_GetArraySize(arr);
    int32_t *out = xmalloc((size_t)(*n > 0 ? *n : 1) * sizeof(int32_t));
    int i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) out[i++] = (int32_t)it->valuedouble;
    return out;
}

static inline Qwen3FixtureBatch qfix_batch_load(const char *dir) {
    Qwen3FixtureBatch b;
    memset(&b, 0, sizeof b);
    char path[1100], err[1024];
    snprintf(path, sizeof path, "%s/expected.safetensors", dir);
    b.expected = st_open(path, err, sizeof err);
    if (!b.expected) die_runtime("%s", err);
    snprintf(path, sizeof path, "%s/batch.json", dir);
    cJSON *j = json_load_file(path, err, sizeof err);
    if (!j) die_runtime("%s", err);
    int n_targets, n_starts, n_mask;
    b.tokens = qfix_json_ints(json_get(j, "tokens"), &b.T);
    b.targets = qfix_json_ints(json_get(j, "targets"), &n_targets);
    b.seq_start = qfix_json_ints(json_get(j, "seq_start"), &n_starts);
    b.n_seqs = n_starts - 1;
    int32_t *mask = qfix_json_ints(json_get(j, "mask"), &n_mask);
    if (n_targets != b.T || n_mask != b.T || b.n_seqs < 1) die_runtime("%s: inconsistent batch", path);
    b.mask = xmalloc((size_t)b.T * sizeof(float));
    for (int t = 0; t < b.T; t++) b.mask[t] = (float)mask[t];
    free(mask);
    cJSON_Delete(j);
    return b;
}

static inline void qfix_batch_free(Qwen3FixtureBatch *b) {
    st_close(b->expected);
    free(b->tokens);
    free(b->targets);
    free(b->seq_start);
    free(b->mask);
}

/* An expected tensor as fp32 (the caller frees), with numel elements. */
static inline float *qfix_expected(const Qwen3FixtureBatch *b, const char *name, size_t numel) {
    const StTensor *t = st_find(b->expected, name);
    if (!t) die_runtime("expected.safetensors lacks %s", name);
    if ((size_t)t->numel != numel) die_runtime("%s: %lld elements, want %zu", name, (long long)t->numel, numel);
    float *out = xmalloc(numel * sizeof(float));
    char err[256];
    if (st_to_f32(t, out, err, sizeof err) != 0) die_runtime("%s", err);
    return out;
}

/* max |got - want| / max |want| (NaN propagates); printed when label is set. */
static inline double qfix_rel_err(const char *label, const float *got, const float *want, size_t n) {
    double maxerr = 0, maxval = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - want[i]);
        if (!(e <= maxerr)) maxerr = e;
        if (fabs(want[i]) > maxval) maxval = fabs(want[i]);
    }
    double rel = maxerr / (maxval > 1e-30 ? maxval : 1e-30);
    if (label) printf("    %-34s max abs err %.3e  max |ref| %.3e  rel %.3e\n", label, maxerr, maxval, rel);
    return rel;
}

#endif
