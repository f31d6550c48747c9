/* test_infer.c — the inference engine against the training forward, and its
 * invariants: paged KV cache, continuous batching, prefix forks, appended
 * context, seeded sampling, stop conditions, the KV budget; and the sampler
 * and the counter-based RNG alone.
 *
 * Reference: qwen3_forward (the training path, itself checked against a
 * float64 PyTorch model in test_qwen3.c) on the same sequences packed into
 * one batch. Tolerances, fp32 engine against fp32 training forward (the two
 * sum in different orders):
 *   logprob of the next token and every logit   max abs diff 2e-5
 *   appended context / fork vs one prefill      max abs diff 2e-5 on logits
 * The same computation in the same chunking must match bit for bit (forks,
 * batch composition, thread count).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <omp.h>

#include "core/error.h"
#include "core/rng.h"
#include "model/infer.h"
#include "model/qwen3.h"
#include "model/sample.h"
#include "text/tokenizer.h"

#define QWEN3_FIX TAU2_SOURCE_DIR "/tests/fixtures/qwen3"
#define TINY_TOKENIZER TAU2_SOURCE_DIR "/tests/fixtures/tokenizer/tiny/tokenizer.json"
#define TOL 2e-5

static const char *k_models[] = {"untied_gqa", "tied_mha", "tied_mqa"};

static Qwen3 *load_model(const char *name) {
    char dir[1024], err[1024];
    snprintf(dir, sizeof dir, "%s/%s", QWEN3_FIX, name);
    Qwen3 *m = qwen3_load_dir(dir, err, sizeof err);
    if (!m) fail_msg("load %s: %s", dir, err);
    return m;
}

static InferEngine *engine(const Qwen3 *m, int kv_tokens, int block_size) {
    InferOptions o = {.kv_tokens = kv_tokens, .block_size = block_size};
    char err[512];
    InferEngine *e = infer_new(m, &o, err, sizeof err);
    if (!e) fail_msg("%s", err);
    return e;
}

/* Deterministic pseudo-random tokens. */
static void fill_tokens(int32_t *out, int n, int V, uint64_t seed) {
    for (int i = 0; i < n; i++) {
        uint32_t w[4];
        rng_draw(seed, 99, (uint64_t)i, w);
        out[i] = (int32_t)(w[0] % (uint32_t)V);
    }
}

static int new_seq(InferEngine *e) {
    char err[256];
    int s = infer_seq_new(e, err, sizeof err);
    if (s < 0) fail_msg("%s", err);
    return s;
}

static void forward_or_fail(InferEngine *e, const InferChunk *ch, int n, float *logits) {
    char err[512];
    if (infer_forward(e, ch, n, logits, err, sizeof err) != 0) fail_msg("%s", err);
}

static double max_abs_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= m)) m = d;
    }
    return m;
}

/* ------------------------------------------------------------ RNG */

static void test_philox_known_answers(void **state) {
    (void)state;
    /* Random123's kat_vectors for philox4x32_10. */
    static const uint32_t ctr[3][4] = {{0, 0, 0, 0},
                                       {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
                                       {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}};
    static const uint32_t key[3][2] = {{0, 0}, {0xffffffff, 0xffffffff}, {0xa4093822, 0x299f31d0}};
    static const uint32_t want[3][4] = {{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
                                        {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd},
                                        {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}};
    for (int i = 0; i < 3; i++) {
        uint32_t out[4];
        philox4x32_10(ctr[i], key[i], out);
        for (int j = 0; j < 4; j++) assert_int_equal(out[j], want[i][j]);
    }
    /* Pure function of its arguments; streams and counters differ. */
    assert_true(rng_uniform(1, 2, 3) == rng_uniform(1, 2, 3));
    assert_true(rng_uniform(1, 2, 3) != rng_uniform(1, 3, 3));
    assert_true(rng_uniform(1, 2, 3) != rng_uniform(1, 2, 4));
    assert_true(rng_uniform(1, 2, 3) != rng_uniform(2, 2, 3));
    double mean = 0;
    for (int i = 0; i < 10000; i++) {
        double u = rng_uniform(5, 0, (uint64_t)i);
        assert_true(u >= 0.0 && u < 1.0);
        mean += u / 10000;
    }
    assert_true(fabs(mean - 0.5) < 0.02);
    assert_true(rng_derive(1, 0) != rng_derive(1, 1));
}

/* ------------------------------------------------------------ sampler */

/* Draw N tokens with u = rng_uniform(seed, 0, i); compare frequencies with
 * want (probabilities) within 5 standard deviations. Deterministic. */
static void check_frequencies(const float *logits, int V, const SampleParams *p, const double *want) {
    enum { N = 200000 };
    int counts[16] = {0};
    SampleScratch s = {0};
    for (int i = 0; i < N; i++) {
        int32_t t = sample_token(logits, V, p, rng_uniform(42, 7, (uint64_t)i), &s, NULL);
        assert_true(t >= 0 && t < V);
        counts[t]++;
    }
    for (int j = 0; j < V; j++) {
        double f = (double)counts[j] / N;
        double sd = sqrt(want[j] * (1 - want[j]) / N);
        if (want[j] == 0) {
            assert_int_equal(counts[j], 0);
        } else if (fabs(f - want[j]) > 5 * sd) {
            fail_msg("token %d: frequency %.5f, want %.5f (5 sd = %.5f)", j, f, want[j], 5 * sd);
        }
    }
    sample_scratch_free(&s);
}

static void test_sampler_frequencies(void **state) {
    (void)state;
    const double p[5] = {0.1, 0.2, 0.3, 0.15, 0.25};
    float z[5];
    for (int j = 0; j < 5; j++) z[j] = (float)log(p[j]) + 3.0f; /* a shift changes nothing */
    SampleParams sp = {.temperature = 1.0f, .top_p = 1.0f, .top_k = 0};
    check_frequencies(z, 5, &sp, p);

    /* temperature 0.5: p^2 renormalized */
    double q[5], s = 0;
    for (int j = 0; j < 5; j++) s += q[j] = p[j] * p[j];
    for (int j = 0; j < 5; j++) q[j] /= s;
    sp.temperature = 0.5f;
    check_frequencies(z, 5, &sp, q);

    /* top_k 2: the two largest (0.3, 0.25) renormalized */
    sp.temperature = 1.0f;
    sp.top_k = 2;
    const double k2[5] = {0, 0, 0.3 / 0.55, 0, 0.25 / 0.55};
    check_frequencies(z, 5, &sp, k2);

    /* top_p 0.5: ranks 0.3 (mass above 0), 0.25 (above 0.3 <= 0.5); 0.2 has 0.55 above */
    sp.top_k = 0;
    sp.top_p = 0.5f;
    check_frequencies(z, 5, &sp, k2);

    /* top_p 0.6 keeps 0.2 as well (0.55 above it); with top_k 2 it is cut again */
    sp.top_p = 0.6f;
    const double p3[5] = {0, 0.2 / 0.75, 0.3 / 0.75, 0, 0.25 / 0.75};
    check_frequencies(z, 5, &sp, p3);
    sp.top_k = 2;
    check_frequencies(z, 5, &sp, k2);
}

static void test_sampler_greedy_equivalents(void **state) {
    (void)state;
    enum { V = 300 };
    float z[V];
    SampleScratch s = {0};
    for (int trial = 0; trial < 200; trial++) {
        for (int j = 0; j < V; j++) z[j] = (float)(4.0 * rng_uniform(trial, 1, (uint64_t)j) - 2.0);
        if (trial % 10 == 0) z[17] = z[250] = 9.0f; /* a tie: the lower id wins */
        SampleParams greedy = {.temperature = 0.0f, .top_p = 1.0f};
        SampleParams k1 = {.temperature = 1.3f, .top_p = 1.0f, .top_k = 1};
        SampleParams ptiny = {.temperature = 0.7f, .top_p = 1e-6f};
        float lp_g, lp_k, lp_p;
        double u = rng_uniform(3, 3, (uint64_t)trial);
        int32_t g = sample_token(z, V, &greedy, u, &s, &lp_g);
        assert_int_equal(g, sample_token(z, V, &k1, u, &s, &lp_k));
        assert_int_equal(g, sample_token(z, V, &ptiny, u, &s, &lp_p));
        if (trial % 10 == 0) assert_int_equal(g, 17);
        /* The logprob is the temperature-1 log_softmax, whatever the parameters. */
        assert_true(lp_g == lp_k && lp_g == lp_p);
        double m = z[0], sum = 0;
        for (int j = 1; j < V; j++) m = z[j] > m ? z[j] : m;
        for (int j = 0; j < V; j++) sum += exp(z[j] - m);
        assert_true(fabs(lp_g - (z[g] - m - log(sum))) < 1e-5);
    }
    sample_scratch_free(&s);

    char err[128];
    SampleParams bad = {.temperature = -1.0f, .top_p = 1.0f};
    assert_int_equal(sample_check_params(&bad, err, sizeof err), -1);
    assert_non_null(strstr(err, "temperature"));
    bad = (SampleParams){.temperature = 1.0f, .top_p = 0.0f};
    assert_int_equal(sample_check_params(&bad, err, sizeof err), -1);
    assert_non_null(strstr(err, "top_p"));
    bad = (SampleParams){.temperature = 1.0f, .top_p = 1.0f, .top_k = -2};
    assert_int_equal(sample_check_params(&bad, err, sizeof err), -1);
    assert_non_null(strstr(err, "top_k"));
}

/* ------------------------------------------------------------ engine vs training forward */

/* Sequences of these lengths, decoded in one continuous batch: sequence s
 * joins at step join[s] with a first chunk of first[s] tokens, then feeds
 * one token per step, except that at step 4 every live sequence feeds a
 * chunk of 9 (the sgemm path) when it has that many left. When single is
 * set every chunk is one token, so every position's logits are checked. */
enum { NSEQ = 5 };
typedef struct {
    int len[NSEQ], join[NSEQ], first[NSEQ];
    int kv_tokens;
} BatchPlan;
static const BatchPlan k_short = {{23, 9, 31, 1, 17}, {0, 0, 2, 3, 6}, {5, 1, 3, 1, 12}, 256};
/* Longer than the training attention's 64-token tiles: the reference
 * forward then runs its multi-tile path (online softmax across key tiles,
 * dK/dV summed over query tiles). */
static const BatchPlan k_long = {{150, 64, 1, 200, 129}, {0, 0, 2, 3, 6}, {70, 1, 1, 65, 9}, 1024};

static void continuous_batch_vs_forward(const char *name, const BatchPlan *plan, bool single, double *max_lp,
                                        double *max_logit) {
    const int *k_len = plan->len, *k_join = plan->join, *k_first = plan->first;
    Qwen3 *m = load_model(name);
    int V = m->config.vocab_size;
    int T = 0, seq_start[NSEQ + 1];
    for (int s = 0; s < NSEQ; s++) {
        seq_start[s] = T;
        T += k_len[s];
    }
    seq_start[NSEQ] = T;
    int32_t *tokens = xmalloc((size_t)T * sizeof(int32_t)), *targets = xmalloc((size_t)T * sizeof(int32_t));
    fill_tokens(tokens, T, V, 11);
    qwen3_next_token_targets(tokens, seq_start, NSEQ, targets);
    float *ref_lp = xmalloc((size_t)T * sizeof(float)), *ent = xmalloc((size_t)T * sizeof(float));
    Qwen3Batch b = {T, NSEQ, tokens, targets, seq_start, NULL};
    qwen3_forward(m, &b, ref_lp, ent);
    float *ref_logits = xmalloc((size_t)T * V * sizeof(float));
    qwen3_logits(m, 0, T, ref_logits);

    /* max_len past the fixtures' max_position_embeddings (128) for the long plan */
    InferOptions o = {.kv_tokens = plan->kv_tokens, .block_size = 4, .max_len = 256};
    char err[512];
    InferEngine *e = infer_new(m, &o, err, sizeof err);
    if (!e) fail_msg("%s", err);
    int seq[NSEQ], done[NSEQ] = {0};
    InferChunk ch[NSEQ];
    float *logits = xmalloc((size_t)NSEQ * V * sizeof(float));
    int checked = 0;
    for (int step = 0;; step++) {
        int n = 0, live = 0;
        int who[NSEQ];
        for (int s = 0; s < NSEQ; s++) {
            if (step < k_join[s] || done[s] == k_len[s]) {
                live += step < k_join[s];
                continue;
            }
            if (step == k_join[s]) seq[s] = new_seq(e);
            int left = k_len[s] - done[s];
            int want = single ? 1 : step == k_join[s] ? k_first[s] : step == 4 && left >= 9 ? 9 : 1;
            want = want < left ? want : left;
            ch[n] = (InferChunk){.seq = seq[s], .ids = tokens + seq_start[s] + done[s], .n = want};
            who[n++] = s;
            done[s] += want;
        }
        if (n == 0 && live == 0) break;
        if (n == 0) continue;
        forward_or_fail(e, ch, n, logits);
        for (int i = 0; i < n; i++) {
            int s = who[i], t = seq_start[s] + done[s] - 1; /* the chunk's last token */
            double d = max_abs_diff(logits + (size_t)i * V, ref_logits + (size_t)t * V, (size_t)V);
            if (d > *max_logit) *max_logit = d;
            if (targets[t] >= 0) {
                float lp = sample_logprob(logits + (size_t)i * V, V, targets[t]);
                double dl = fabs((double)lp - ref_lp[t]);
                if (dl > *max_lp) *max_lp = dl;
            }
            checked++;
            if (done[s] == k_len[s]) infer_seq_free(e, seq[s]); /* leaves the batch */
        }
    }
    if (single) assert_int_equal(checked, T);
    assert_int_equal(infer_used_blocks(e), 0);
    infer_free(e);
    free(logits);
    free(ref_logits);
    free(ref_lp);
    free(ent);
    free(tokens);
    free(targets);
    qwen3_free(m);
}

static void test_decode_matches_forward(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof k_models / sizeof k_models[0]; i++) {
        for (int single = 0; single < 2; single++) {
            for (int longer = 0; longer < 2; longer++) {
                double max_lp = 0, max_logit = 0;
                continuous_batch_vs_forward(k_models[i], longer ? &k_long : &k_short, single, &max_lp, &max_logit);
                printf("    %-10s %-6s %-22s max |dlogprob| %.2e  max |dlogit| %.2e\n", k_models[i],
                       longer ? "long" : "short", single ? "one token per step" : "mixed chunks", max_lp, max_logit);
                assert_true(max_lp < TOL);
                assert_true(max_logit < TOL);
            }
        }
    }
}

/* ------------------------------------------------------------ forks and appended context */

static void test_fork_equals_independent_prefill(void **state) {
    (void)state;
    Qwen3 *m = load_model("untied_gqa");
    int V = m->config.vocab_size;
    int32_t toks[40];
    fill_tokens(toks, 40, V, 5);
    const int32_t *P = toks, *x = toks + 6, *y = toks + 20;
    float *la = xmalloc((size_t)V * sizeof(float)), *lb = xmalloc((size_t)V * sizeof(float));
    float *fa = xmalloc((size_t)V * sizeof(float)), *fb = xmalloc((size_t)V * sizeof(float));
    float *one = xmalloc((size_t)V * sizeof(float));

    /* a: P (6 tokens: one full block of 4, one half-full, both shared after the fork) */
    InferEngine *e = engine(m, 64, 4);
    int a = new_seq(e);
    forward_or_fail(e, &(InferChunk){a, P, 6}, 1, NULL);
    char err[256];
    int bq = infer_seq_fork(e, a, err, sizeof err);
    assert_true(bq >= 0);
    assert_int_equal(infer_seq_len(e, bq), 6);
    assert_int_equal(infer_used_blocks(e), 2); /* shared, not copied */
    /* both append in one call: the shared half block is copied for one of them */
    InferChunk two[2] = {{a, x, 3}, {bq, y, 2}};
    float *l2 = xmalloc((size_t)2 * V * sizeof(float));
    forward_or_fail(e, two, 2, l2);
    memcpy(la, l2, (size_t)V * sizeof(float));
    memcpy(lb, l2 + V, (size_t)V * sizeof(float));
    assert_int_equal(infer_used_blocks(e), 4);

    /* the same chunking on fresh sequences: bit-identical */
    InferEngine *f = engine(m, 64, 4);
    int fa_s = new_seq(f), fb_s = new_seq(f);
    forward_or_fail(f, &(InferChunk){fa_s, P, 6}, 1, NULL);
    forward_or_fail(f, &(InferChunk){fb_s, P, 6}, 1, NULL);
    forward_or_fail(f, &(InferChunk){fa_s, x, 3}, 1, fa);
    forward_or_fail(f, &(InferChunk){fb_s, y, 2}, 1, fb);
    assert_memory_equal(la, fa, (size_t)V * sizeof(float));
    assert_memory_equal(lb, fb, (size_t)V * sizeof(float));

    /* one prefill of the concatenation (sgemm path for b: 6 + 2 = 8 tokens) */
    int32_t cat[16];
    memcpy(cat, P, 6 * sizeof(int32_t));
    memcpy(cat + 6, y, 2 * sizeof(int32_t));
    int c = new_seq(f);
    forward_or_fail(f, &(InferChunk){c, cat, 8}, 1, one);
    double d = max_abs_diff(lb, one, (size_t)V);
    printf("    fork + append vs one prefill: max |dlogit| %.2e\n", d);
    assert_true(d < TOL);

    /* a's cache was not touched by b's append: continue a and compare */
    forward_or_fail(e, &(InferChunk){a, toks + 30, 2}, 1, la);
    forward_or_fail(f, &(InferChunk){fa_s, toks + 30, 2}, 1, fa);
    assert_memory_equal(la, fa, (size_t)V * sizeof(float));

    infer_free(e);
    infer_free(f);
    free(la);
    free(lb);
    free(fa);
    free(fb);
    free(one);
    free(l2);
    qwen3_free(m);
}

static void test_append_equals_concatenated_prefill(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof k_models / sizeof k_models[0]; i++) {
        Qwen3 *m = load_model(k_models[i]);
        int V = m->config.vocab_size;
        int32_t toks[30];
        fill_tokens(toks, 30, V, 9 + i);
        float *l1 = xmalloc((size_t)V * sizeof(float)), *l2 = xmalloc((size_t)V * sizeof(float));
        InferEngine *e = engine(m, 128, 16);
        int s = new_seq(e), t = new_seq(e);
        /* turns: a prompt (sgemm), a few single tokens, an environment turn of 9 */
        forward_or_fail(e, &(InferChunk){s, toks, 10}, 1, NULL);
        for (int j = 10; j < 13; j++) forward_or_fail(e, &(InferChunk){s, toks + j, 1}, 1, NULL);
        forward_or_fail(e, &(InferChunk){s, toks + 13, 9}, 1, NULL);
        forward_or_fail(e, &(InferChunk){s, toks + 22, 3}, 1, l1);
        forward_or_fail(e, &(InferChunk){t, toks, 25}, 1, l2);
        double d = max_abs_diff(l1, l2, (size_t)V);
        printf("    %-10s appended turns vs one prefill: max |dlogit| %.2e\n", k_models[i], d);
        assert_true(d < TOL);
        infer_free(e);
        free(l1);
        free(l2);
        qwen3_free(m);
    }
}

/* ------------------------------------------------------------ generation */

typedef struct {
    int32_t ids[64];
    float lps[64];
    int n;
    InferFinish finish;
} GenOut;

static InferGenParams gen_params(float temperature, float top_p, int top_k, uint64_t seed, uint64_t stream,
                                 int max_new) {
    InferGenParams p = {.sample = {temperature, top_p, top_k}, .seed = seed, .stream = stream,
                        .max_new_tokens = max_new};
    return p;
}

static void take_result(InferGen *g, int req, GenOut *out) {
    InferGenResult r = infer_gen_result(g, req);
    assert_true(r.n <= 64);
    out->n = r.n;
    out->finish = r.finish;
    memcpy(out->ids, r.ids, (size_t)r.n * sizeof(int32_t));
    memcpy(out->lps, r.logprobs, (size_t)r.n * sizeof(float));
}

/* Generate for request A (prompt P, params pa) alone or with company: B from
 * step 0 and C joining at step 3, B and C with other prompts and seeds. */
static void run_gen(const Qwen3 *m, const int32_t *P, int np, const InferGenParams *pa, bool company, GenOut *out,
                    const Tokenizer *tok) {
    char err[512];
    InferEngine *e = engine(m, 512, 4);
    InferGen *g = infer_gen_new(e, tok);
    int sa = new_seq(e);
    if (np > 1) forward_or_fail(e, &(InferChunk){sa, P, np - 1}, 1, NULL);
    int ra = infer_gen_add(g, sa, P + np - 1, 1, pa, err, sizeof err);
    if (ra < 0) fail_msg("%s", err);
    int32_t other[20];
    fill_tokens(other, 20, m->config.vocab_size, 77);
    InferGenParams pb = gen_params(1.0f, 0.95f, 0, 1234, 5, 30);
    if (company) {
        int sb = new_seq(e);
        if (infer_gen_add(g, sb, other, 11, &pb, err, sizeof err) < 0) fail_msg("%s", err);
    }
    for (int step = 0; infer_gen_running(g) > 0; step++) {
        if (company && step == 3) {
            int sc = new_seq(e);
            if (infer_gen_add(g, sc, other + 4, 9, &pb, err, sizeof err) < 0) fail_msg("%s", err);
        }
        if (infer_gen_step(g, err, sizeof err) < 0) fail_msg("%s", err);
    }
    take_result(g, ra, out);
    infer_gen_free(g);
    infer_free(e);
}

static void test_seeded_sampling_invariance(void **state) {
    (void)state;
    Qwen3 *m = load_model("untied_gqa");
    int32_t P[12];
    fill_tokens(P, 12, m->config.vocab_size, 21);
    int saved = omp_get_max_threads();

    InferGenParams pa = gen_params(1.0f, 0.95f, 40, 7, 0, 24);
    GenOut alone1, crowd2, crowd1, alone2;
    omp_set_num_threads(1);
    run_gen(m, P, 12, &pa, false, &alone1, NULL);
    run_gen(m, P, 12, &pa, true, &crowd1, NULL);
    omp_set_num_threads(2);
    run_gen(m, P, 12, &pa, true, &crowd2, NULL);
    run_gen(m, P, 12, &pa, false, &alone2, NULL);
    assert_int_equal(alone1.n, 24);
    assert_int_equal(alone1.finish, INFER_FINISH_LENGTH);
    const GenOut *runs[3] = {&crowd1, &crowd2, &alone2};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(runs[i]->n, alone1.n);
        assert_memory_equal(runs[i]->ids, alone1.ids, (size_t)alone1.n * sizeof(int32_t));
        assert_memory_equal(runs[i]->lps, alone1.lps, (size_t)alone1.n * sizeof(float));
    }

    /* another stream gives another sample */
    InferGenParams pother = gen_params(1.0f, 0.95f, 40, 7, 1, 24);
    GenOut o;
    run_gen(m, P, 12, &pother, false, &o, NULL);
    assert_true(memcmp(o.ids, alone1.ids, sizeof(int32_t) * 24) != 0);

    /* greedy: deterministic, and top_k = 1 / tiny top_p give the same ids */
    InferGenParams pg = gen_params(0.0f, 1.0f, 0, 1, 0, 20);
    GenOut g1, g2, gk, gp;
    run_gen(m, P, 12, &pg, true, &g1, NULL);
    omp_set_num_threads(1);
    run_gen(m, P, 12, &pg, false, &g2, NULL);
    omp_set_num_threads(saved);
    InferGenParams pk = gen_params(1.0f, 1.0f, 1, 99, 3, 20), pp = gen_params(0.8f, 1e-7f, 0, 5, 0, 20);
    run_gen(m, P, 12, &pk, true, &gk, NULL);
    run_gen(m, P, 12, &pp, false, &gp, NULL);
    assert_memory_equal(g1.ids, g2.ids, 20 * sizeof(int32_t));
    assert_memory_equal(g1.ids, gk.ids, 20 * sizeof(int32_t));
    assert_memory_equal(g1.ids, gp.ids, 20 * sizeof(int32_t));
    assert_memory_equal(g1.lps, gk.lps, 20 * sizeof(float));

    /* sampled logprobs are the model's: recompute with the training forward */
    int T = 12 + alone1.n - 1;
    int32_t toks[64], targets[64], ss[2] = {0, T};
    memcpy(toks, P, 12 * sizeof(int32_t));
    memcpy(toks + 12, alone1.ids, (size_t)(alone1.n - 1) * sizeof(int32_t));
    for (int t = 0; t < T; t++) targets[t] = t >= 11 ? alone1.ids[t - 11] : toks[t + 1];
    float lp[64], ent[64];
    Qwen3Batch b = {T, 1, toks, targets, ss, NULL};
    qwen3_forward(m, &b, lp, ent);
    double d = max_abs_diff(lp + 11, alone1.lps, (size_t)alone1.n);
    printf("    sampled logprobs vs training forward: max |d| %.2e\n", d);
    assert_true(d < TOL);
    qwen3_free(m);
}

static void test_grpo_group_prefills_once(void **state) {
    (void)state;
    Qwen3 *m = load_model("untied_gqa");
    int32_t P[21];
    fill_tokens(P, 21, m->config.vocab_size, 3);
    char err[512];
    InferEngine *e = engine(m, 256, 4);
    InferGen *g = infer_gen_new(e, NULL);
    int parent = new_seq(e);
    forward_or_fail(e, &(InferChunk){parent, P, 20}, 1, NULL);
    int used_prompt = infer_used_blocks(e);
    int req[4];
    for (int i = 0; i < 4; i++) {
        int s = infer_seq_fork(e, parent, err, sizeof err);
        assert_true(s >= 0);
        InferGenParams p = gen_params(1.0f, 1.0f, 0, 2024, (uint64_t)i, 10);
        req[i] = infer_gen_add(g, s, P + 20, 1, &p, err, sizeof err);
        assert_true(req[i] >= 0);
    }
    infer_seq_free(e, parent); /* the children keep the prompt blocks */
    assert_int_equal(infer_used_blocks(e), used_prompt);
    while (infer_gen_running(g) > 0) assert_true(infer_gen_step(g, err, sizeof err) >= 0);
    /* 20 prompt tokens in 5 shared blocks; each sample adds 1 + 9 tokens in 3 own blocks */
    assert_int_equal(infer_used_blocks(e), used_prompt + 4 * 3);
    GenOut outs[4], solo;
    for (int i = 0; i < 4; i++) take_result(g, req[i], &outs[i]);
    assert_true(memcmp(outs[0].ids, outs[1].ids, 10 * sizeof(int32_t)) != 0);
    /* sample 2 equals the same request run alone without a fork */
    InferGenParams p2 = gen_params(1.0f, 1.0f, 0, 2024, 2, 10);
    run_gen(m, P, 21, &p2, false, &solo, NULL);
    assert_memory_equal(solo.ids, outs[2].ids, 10 * sizeof(int32_t));
    assert_memory_equal(solo.lps, outs[2].lps, 10 * sizeof(float));

    /* multi-turn: continue sample 0 with its last id and an environment turn */
    int32_t turn[8];
    fill_tokens(turn, 7, m->config.vocab_size, 8);
    int32_t pending[8];
    pending[0] = outs[0].ids[9];
    memcpy(pending + 1, turn, 7 * sizeof(int32_t));
    int s0 = infer_gen_result(g, req[0]).seq;
    infer_gen_release(g, req[0]);
    InferGenParams pc = gen_params(0.0f, 1.0f, 0, 0, 0, 2);
    int r2 = infer_gen_add(g, s0, pending, 8, &pc, err, sizeof err);
    assert_true(r2 >= 0);
    assert_true(infer_gen_step(g, err, sizeof err) >= 0);
    GenOut cont;
    take_result(g, r2, &cont);
    assert_int_equal(infer_seq_len(e, s0), 21 + 9 + 8);
    /* the same token from one prefill of the whole history */
    int32_t hist[40];
    memcpy(hist, P, 21 * sizeof(int32_t));
    memcpy(hist + 21, outs[0].ids, 10 * sizeof(int32_t));
    memcpy(hist + 31, turn, 7 * sizeof(int32_t));
    int h = new_seq(e);
    float *lg = xmalloc((size_t)m->config.vocab_size * sizeof(float));
    forward_or_fail(e, &(InferChunk){h, hist, 38}, 1, lg);
    SampleScratch sc = {0};
    float lp;
    int32_t want = sample_token(lg, m->config.vocab_size, &pc.sample, 0.5, &sc, &lp);
    assert_int_equal(cont.ids[0], want);
    assert_true(fabs(cont.lps[0] - lp) < TOL);
    free(lg);
    infer_gen_free(g);
    infer_free(e);
    qwen3_free(m);
}

/* ------------------------------------------------------------ chunked prefill */

/* A backend that passes every call to the CPU engine and records the
 * largest forward it saw: rows, and rows beyond the decoding chunks. */
typedef struct {
    InferBackend inner;
    int max_rows, max_long_rows, calls;
} RowCounter;

static int counted_forward_sample(void *engine, const InferChunk *chunks, int n_chunks, const SampleParams *params,
                                  const double *u, int32_t *ids, float *logprobs, char *err, size_t errlen) {
    RowCounter *rc = engine;
    int rows = 0, long_rows = 0;
    for (int i = 0; i < n_chunks; i++) {
        rows += chunks[i].n;
        if (chunks[i].n > 1) long_rows += chunks[i].n;
    }
    if (rows > rc->max_rows) rc->max_rows = rows;
    if (long_rows > rc->max_long_rows) rc->max_long_rows = long_rows;
    rc->calls++;
    return rc->inner.forward_sample(rc->inner.engine, chunks, n_chunks, params, u, ids, logprobs, err, errlen);
}

static int counted_forward(void *engine, const InferChunk *chunks, int n_chunks, float *logits, char *err,
                           size_t errlen) {
    RowCounter *rc = engine;
    for (int i = 0; i < n_chunks; i++)
        if (chunks[i].n > rc->max_rows) rc->max_rows = chunks[i].n;
    rc->calls++;
    return rc->inner.forward(rc->inner.engine, chunks, n_chunks, logits, err, errlen);
}

static int counted_seq_len(const void *engine, int seq) {
    const RowCounter *rc = engine;
    return rc->inner.seq_len(rc->inner.engine, seq);
}

/* Three requests at once: a 45-token prompt, an appended turn of 23 and a
 * decoding request after a prompt of 20 prefilled outside the generator,
 * with a step limit of `limit` tokens (-1: none) through a row-counting
 * backend. */
static void run_limited(const Qwen3 *m, int limit, InferGenParams *p, GenOut out[3], RowCounter *rc) {
    char err[512];
    InferEngine *e = engine(m, 512, 4);
    *rc = (RowCounter){.inner = infer_backend(e)};
    InferBackend b = rc->inner;
    b.engine = rc;
    b.forward = counted_forward;
    b.forward_sample = counted_forward_sample;
    b.seq_len = counted_seq_len;
    InferGen *g = infer_gen_new_backend(&b, NULL);
    infer_gen_set_step_tokens(g, limit);
    int32_t P[80];
    fill_tokens(P, 80, m->config.vocab_size, 404);
    int s0 = new_seq(e), s1 = new_seq(e), s2 = new_seq(e);
    /* s1 holds 10 tokens already (its turn is appended); s2 a prompt of 20, prefilled in pieces */
    forward_or_fail(e, &(InferChunk){s1, P + 45, 10}, 1, NULL);
    if (infer_gen_prefill(g, s2, P + 55, 20, err, sizeof err) != 0) fail_msg("%s", err);
    int req[3] = {infer_gen_add(g, s0, P, 45, &p[0], err, sizeof err),
                  infer_gen_add(g, s1, P + 56, 23, &p[1], err, sizeof err),
                  infer_gen_add(g, s2, P + 75, 1, &p[2], err, sizeof err)};
    for (int i = 0; i < 3; i++)
        if (req[i] < 0) fail_msg("%s", err);
    while (infer_gen_running(g) > 0)
        if (infer_gen_step(g, err, sizeof err) < 0) fail_msg("%s", err);
    for (int i = 0; i < 3; i++) take_result(g, req[i], &out[i]);
    assert_int_equal(infer_seq_len(e, s0), 45 + out[0].n - 1);
    assert_int_equal(infer_seq_len(e, s1), 10 + 23 + out[1].n - 1);
    assert_int_equal(infer_seq_len(e, s2), 20 + 1 + out[2].n - 1);
    infer_gen_free(g);
    infer_free(e);
}

static void test_chunked_prefill(void **state) {
    (void)state;
    Qwen3 *m = load_model("untied_gqa");
    InferGenParams p[3] = {gen_params(0.0f, 1.0f, 0, 5, 0, 12), gen_params(1.0f, 0.95f, 0, 5, 1, 12),
                           gen_params(1.0f, 1.0f, 20, 5, 2, 12)};
    GenOut whole[3], pieces[3];
    RowCounter rw, rp;
    run_limited(m, -1, p, whole, &rw);
    run_limited(m, 16, p, pieces, &rp);
    printf("    one forward takes up to %d rows without a limit, %d with a limit of 16 (%d and %d calls)\n",
           rw.max_rows, rp.max_rows, rw.calls, rp.calls);
    assert_int_equal(rw.max_rows, 45 + 23 + 1);
    assert_int_equal(rw.max_long_rows, 45 + 23);
    /* the prompts' tokens stay within the limit; the decoding request still steps beside them */
    assert_true(rp.max_long_rows <= 16);
    assert_true(rp.max_rows <= 16 + 1);
    assert_true(rp.calls > rw.calls);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(pieces[i].n, whole[i].n);
        assert_int_equal(pieces[i].finish, whole[i].finish);
        assert_memory_equal(pieces[i].ids, whole[i].ids, (size_t)whole[i].n * sizeof(int32_t));
        double d = max_abs_diff(pieces[i].lps, whole[i].lps, (size_t)whole[i].n);
        printf("    request %d: the same %d tokens, max |dlogprob| %.2e\n", i, whole[i].n, d);
        assert_true(d < TOL);
    }
    qwen3_free(m);
}

static void test_stop_conditions(void **state) {
    (void)state;
    /* the matcher alone: a match must touch the newest bytes */
    const char *stops[2] = {"</tool_call>", "xy"};
    const char *t = "a</tool_call>";
    assert_int_equal(infer_stop_string_match(t, 13, 12, stops, 2), 0);  /* ">" completed it */
    assert_int_equal(infer_stop_string_match(t, 13, 13, stops, 2), -1); /* nothing new */
    assert_int_equal(infer_stop_string_match(t, 12, 5, stops, 2), -1);  /* not complete yet */
    assert_int_equal(infer_stop_string_match("zxy", 3, 2, stops, 2), 1);
    assert_int_equal(infer_stop_string_match("xyz", 3, 2, stops, 2), -1); /* ended before the new byte */

    /* end to end: tiny model, tiny tokenizer (ids < 97 are one-character tokens) */
    char err[1024];
    Tokenizer *tok = tok_load(TINY_TOKENIZER, err, sizeof err);
    if (!tok) fail_msg("%s", err);
    Qwen3 *m = load_model("untied_gqa");
    int32_t P[6];
    fill_tokens(P, 6, m->config.vocab_size, 4);
    InferGenParams p = gen_params(1.0f, 1.0f, 0, 31, 0, 40);
    GenOut free_run, stopped;
    run_gen(m, P, 6, &p, false, &free_run, tok);
    assert_int_equal(free_run.n, 40);
    char text[64];
    for (int i = 0; i < 40; i++) {
        size_t nb;
        const char *b = tok_token_bytes(tok, free_run.ids[i], &nb);
        assert_true(b && nb == 1);
        text[i] = b[0];
    }
    /* a 3-character stop string spanning tokens k-2..k, first seen at k */
    int k = -1;
    for (int j = 4; j < 40 && k < 0; j++) {
        bool earlier = false;
        for (int i = 2; i < j; i++) earlier |= memcmp(text + i - 2, text + j - 2, 3) == 0;
        if (!earlier) k = j;
    }
    assert_true(k > 0);
    char stop[4] = {text[k - 2], text[k - 1], text[k], 0};
    const char *sl[2] = {"never-matches", stop};
    p.stop_strings = sl;
    p.n_stop_strings = 2;
    run_gen(m, P, 6, &p, false, &stopped, tok);
    assert_int_equal(stopped.finish, INFER_FINISH_STOP_STRING);
    assert_int_equal(stopped.n, k + 1);
    assert_memory_equal(stopped.ids, free_run.ids, (size_t)(k + 1) * sizeof(int32_t));

    /* stop ids: the first occurrence of free_run.ids[5] ends it */
    int32_t sid = free_run.ids[5];
    int first = 0;
    while (free_run.ids[first] != sid) first++;
    p.n_stop_strings = 0;
    p.stop_ids = &sid;
    p.n_stop_ids = 1;
    run_gen(m, P, 6, &p, false, &stopped, tok);
    assert_int_equal(stopped.finish, INFER_FINISH_STOP_ID);
    assert_int_equal(stopped.n, first + 1);
    assert_string_equal(infer_finish_name(INFER_FINISH_STOP_ID), "stop_id");

    /* stop strings without a tokenizer are refused */
    InferEngine *e = engine(m, 64, 4);
    InferGen *g = infer_gen_new(e, NULL);
    int s = new_seq(e);
    p.stop_strings = sl;
    p.n_stop_strings = 2;
    assert_int_equal(infer_gen_add(g, s, P, 6, &p, err, sizeof err), -1);
    assert_non_null(strstr(err, "tokenizer"));
    infer_gen_free(g);
    infer_free(e);
    qwen3_free(m);
    tok_free(tok);
}

static void test_kv_budget(void **state) {
    (void)state;
    Qwen3 *m = load_model("tied_mqa");
    int32_t toks[32];
    fill_tokens(toks, 32, m->config.vocab_size, 6);
    char err[512];
    InferEngine *e = engine(m, 16, 4); /* 4 blocks */
    int a = new_seq(e);
    forward_or_fail(e, &(InferChunk){a, toks, 10}, 1, NULL); /* 3 blocks */
    int b = infer_seq_fork(e, a, err, sizeof err);
    /* a needs a copy of the shared half block + 1 new block; b the same: 4 > 1 free */
    InferChunk two[2] = {{a, toks + 10, 4}, {b, toks + 20, 4}};
    assert_int_equal(infer_forward(e, two, 2, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "KV cache budget exceeded"));
    assert_int_equal(infer_seq_len(e, a), 10); /* nothing changed */
    assert_int_equal(infer_seq_len(e, b), 10);
    assert_int_equal(infer_used_blocks(e), 3);
    infer_seq_free(e, b);
    forward_or_fail(e, &(InferChunk){a, toks + 10, 2}, 1, NULL); /* fits in its own half block */
    assert_int_equal(infer_free_tokens(e), 4);

    /* bad input names what is wrong */
    int32_t bad = m->config.vocab_size;
    assert_int_equal(infer_forward(e, &(InferChunk){a, &bad, 1}, 1, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "outside the vocabulary"));
    assert_int_equal(infer_forward(e, &(InferChunk){7, toks, 1}, 1, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "unknown sequence"));
    InferChunk dup[2] = {{a, toks, 1}, {a, toks, 1}};
    assert_int_equal(infer_forward(e, dup, 2, NULL, err, sizeof err), -1);
    infer_free(e);

    /* context length */
    InferOptions o = {.kv_tokens = 64, .block_size = 4, .max_len = 8};
    e = infer_new(m, &o, err, sizeof err);
    a = new_seq(e);
    assert_int_equal(infer_forward(e, &(InferChunk){a, toks, 9}, 1, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "context length 8"));
    /* generation stops with "length" at the context limit */
    InferGen *g = infer_gen_new(e, NULL);
    InferGenParams p = gen_params(0.0f, 1.0f, 0, 0, 0, 100);
    int r = infer_gen_add(g, a, toks, 3, &p, err, sizeof err);
    while (infer_gen_running(g) > 0) assert_true(infer_gen_step(g, err, sizeof err) >= 0);
    InferGenResult res = infer_gen_result(g, r);
    assert_int_equal(res.finish, INFER_FINISH_LENGTH);
    assert_int_equal(res.n, 6); /* 3 + 5 fed = 8 positions; the 6th sampled id would sit at position 8 */
    infer_gen_free(g);
    infer_free(e);
    qwen3_free(m);
}

/* infer_forward_sample is infer_forward then sample_token on each chunk's
 * logits, bit for bit; bad parameters and draws are refused by name with
 * nothing changed. */
static void test_forward_sample_equals_forward_then_sample(void **state) {
    (void)state;
    Qwen3 *m = load_model("untied_gqa");
    int V = m->config.vocab_size;
    int32_t toks[24];
    fill_tokens(toks, 24, V, 9);
    char err[512];
    InferEngine *a = engine(m, 256, 16), *b = engine(m, 256, 16);
    int sa[3], sb[3];
    for (int i = 0; i < 3; i++) sa[i] = new_seq(a), sb[i] = new_seq(b);
    SampleParams sp[3] = {{0.0f, 1.0f, 0}, {1.0f, 1.0f, 0}, {0.8f, 0.9f, 5}};
    double u[3] = {0.1, 0.5, 0.93};
    for (int step = 0; step < 3; step++) {
        /* a prompt chunk, a short chunk, one token */
        InferChunk ca[3] = {{sa[0], toks + step, 6}, {sa[1], toks + 8, 2}, {sa[2], toks + 12 + step, 1}};
        InferChunk cb[3] = {{sb[0], toks + step, 6}, {sb[1], toks + 8, 2}, {sb[2], toks + 12 + step, 1}};
        float logits[3 * 512];
        assert_true(V <= 512);
        forward_or_fail(a, ca, 3, logits);
        int32_t ids[3];
        float lps[3];
        assert_int_equal(infer_forward_sample(b, cb, 3, sp, u, ids, lps, err, sizeof err), 0);
        for (int i = 0; i < 3; i++) {
            SampleScratch scratch = {0};
            float lp;
            int32_t want = sample_token(logits + (size_t)i * V, V, &sp[i], u[i], &scratch, &lp);
            sample_scratch_free(&scratch);
            assert_int_equal(ids[i], want);
            assert_memory_equal(&lps[i], &lp, sizeof lp);
        }
    }
    int len = infer_seq_len(b, sb[2]);
    SampleParams bad = {1.0f, 0.0f, 0};
    int32_t id;
    float lp;
    assert_int_equal(infer_forward_sample(b, &(InferChunk){sb[2], toks, 1}, 1, &bad, u, &id, &lp, err, sizeof err), -1);
    assert_non_null(strstr(err, "top_p"));
    double u_bad = 1.0;
    assert_int_equal(infer_forward_sample(b, &(InferChunk){sb[2], toks, 1}, 1, sp, &u_bad, &id, &lp, err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "the draw u"));
    assert_int_equal(infer_seq_len(b, sb[2]), len);
    infer_free(a);
    infer_free(b);
    qwen3_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_philox_known_answers),
        cmocka_unit_test(test_sampler_frequencies),
        cmocka_unit_test(test_sampler_greedy_equivalents),
        cmocka_unit_test(test_decode_matches_forward),
        cmocka_unit_test(test_fork_equals_independent_prefill),
        cmocka_unit_test(test_append_equals_concatenated_prefill),
        cmocka_unit_test(test_seeded_sampling_invariance),
        cmocka_unit_test(test_grpo_group_prefills_once),
        cmocka_unit_test(test_chunked_prefill),
        cmocka_unit_test(test_stop_conditions),
        cmocka_unit_test(test_kv_budget),
        cmocka_unit_test(test_forward_sample_equals_forward_then_sample),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
