/* test_infer_tp.c — the inference engine over a TP group in lockstep
 * (model/infer.h): group rank 0 drives an engine on its shard while the
 * other ranks replay it in infer_follow, and every result is compared on
 * rank 0 with an engine on the full model at one rank, driven the same way.
 *
 * Models and groups:
 *   inputs/tiny_model (2 heads, 2 kv heads, tied)  groups of 2 ranks (np 2:
 *                                                  one group, np 4: two)
 *   tests/fixtures/qwen3/tp4_gqa, tp4_tied        the whole world (1, 2, 4)
 *
 * Checks on each: prefill of sequences of different lengths in one forward
 * (short chunks on the batch-invariant kernel, long ones on sgemm), decode
 * steps over every sequence, a fork and an append, a cache-only forward;
 * logits within 1e-4 of the largest |logit| and logprobs within 1e-4
 * relative; then generation with continuous batching at temperature 1: the
 * same sampled ids and logprobs within 1e-4. A forward over the KV budget
 * fails on the leader alone and the group goes on; a follower cannot create
 * an engine nor the leader follow.
 */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "mpi_check.h"
#include "comm/comm.h"
#include "core/error.h"
#include "model/infer.h"
#include "model/qwen3.h"

#define TOL 1e-4

static double g_worst_logit = 0, g_worst_lp = 0;

/* Deterministic pseudo-random tokens in [1, V). */
static void fill_tokens(int32_t *out, int n, int V, uint64_t seed) {
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (int i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        out[i] = (int32_t)(1 + x % (uint64_t)(V - 1));
    }
}

/* log_softmax of each row, in double. */
static void log_softmax_rows(const float *logits, int n, int V, double *out) {
    for (int i = 0; i < n; i++) {
        const float *z = logits + (size_t)i * V;
        double m = -INFINITY, s = 0;
        for (int v = 0; v < V; v++) m = z[v] > m ? z[v] : m;
        for (int v = 0; v < V; v++) s += exp(z[v] - m);
        for (int v = 0; v < V; v++) out[(size_t)i * V + v] = z[v] - m - log(s);
    }
}

/* Logits and their logprobs of TP against one rank. */
static void compare_logits(const char *what, const float *tp, const float *ref, int n, int V) {
    size_t N = (size_t)n * V;
    double mx = 0, diff = 0;
    for (size_t i = 0; i < N; i++) {
        mx = fabs(ref[i]) > mx ? fabs(ref[i]) : mx;
        double d = fabs((double)tp[i] - ref[i]);
        diff = d > diff ? d : diff;
    }
    double rel = diff / (mx > 0 ? mx : 1);
    if (rel > TOL) fprintf(stderr, "%s: logits differ by %.3g of max |logit| %.3g\n", what, rel, mx);
    CHECK(rel <= TOL);
    g_worst_logit = rel > g_worst_logit ? rel : g_worst_logit;
    double *a = xmalloc(N * sizeof(double)), *b = xmalloc(N * sizeof(double));
    log_softmax_rows(tp, n, V, a);
    log_softmax_rows(ref, n, V, b);
    double worst = 0;
    for (size_t i = 0; i < N; i++) {
        double r = fabs(a[i] - b[i]) / fmax(1.0, fabs(b[i]));
        worst = r > worst ? r : worst;
    }
    if (worst > TOL) fprintf(stderr, "%s: logprobs differ by %.3g relative\n", what, worst);
    CHECK(worst <= TOL);
    g_worst_lp = worst > g_worst_lp ? worst : g_worst_lp;
    free(a);
    free(b);
}

static InferEngine *engine_or_die(const Qwen3 *m, Comm *group, int kv_tokens) {
    InferOptions o = {.kv_tokens = kv_tokens, .block_size = 4, .max_seqs = 16, .max_len = 1024, .group = group};
    char err[512];
    InferEngine *e = infer_new(m, &o, err, sizeof err);
    if (!e) die_runtime("%s", err);
    return e;
}

/* The same forward on both engines; logits compared when wanted. */
static void forward_both(const char *what, InferEngine *tp, InferEngine *ref, const InferChunk *chunks, int n,
                         bool logits, int V) {
    float *lt = logits ? xmalloc((size_t)n * V * sizeof(float)) : NULL;
    float *lr = logits ? xmalloc((size_t)n * V * sizeof(float)) : NULL;
    char err[512];
    if (infer_forward(tp, chunks, n, lt, err, sizeof err) != 0) die_runtime("%s: %s", what, err);
    if (infer_forward(ref, chunks, n, lr, err, sizeof err) != 0) die_runtime("%s: %s", what, err);
    if (logits) compare_logits(what, lt, lr, n, V);
    free(lt);
    free(lr);
}

static int seq_both(InferEngine *tp, InferEngine *ref, int fork_of) {
    char err[512];
    int a = fork_of < 0 ? infer_seq_new(tp, err, sizeof err) : infer_seq_fork(tp, fork_of, err, sizeof err);
    int b = fork_of < 0 ? infer_seq_new(ref, err, sizeof err) : infer_seq_fork(ref, fork_of, err, sizeof err);
    if (a < 0 || b < 0) die_runtime("%s", err);
    CHECK(a == b);
    return a;
}

/* Forward, decode, fork, append and free on both engines. */
static void drive_forward(InferEngine *tp, InferEngine *ref, int V) {
    enum { NS = 4 };
    static const int lens[NS] = {1, 5, 13, 37};
    int32_t *toks[NS];
    int seq[NS];
    InferChunk ch[NS + 1];
    for (int i = 0; i < NS; i++) {
        toks[i] = xmalloc(64 * sizeof(int32_t));
        fill_tokens(toks[i], 64, V, 11 + (uint64_t)i);
        seq[i] = seq_both(tp, ref, -1);
        ch[i] = (InferChunk){seq[i], toks[i], lens[i]};
    }
    forward_both("prefill", tp, ref, ch, NS, true, V);
    int pos[NS];
    for (int i = 0; i < NS; i++) pos[i] = lens[i];
    /* decode: one token per sequence per step */
    for (int step = 0; step < 6; step++) {
        for (int i = 0; i < NS; i++) ch[i] = (InferChunk){seq[i], toks[i] + pos[i], 1}, pos[i]++;
        forward_both("decode", tp, ref, ch, NS, true, V);
    }
    /* a fork of the long sequence, an append of 3 tokens to the short one, a
     * cache-only chunk, then a mixed step */
    int f = seq_both(tp, ref, seq[3]);
    ch[0] = (InferChunk){seq[0], toks[0] + pos[0], 3};
    forward_both("append", tp, ref, ch, 1, true, V);
    pos[0] += 3;
    ch[0] = (InferChunk){seq[1], toks[1] + pos[1], 9};
    forward_both("cache only", tp, ref, ch, 1, false, V);
    pos[1] += 9;
    infer_seq_free(tp, seq[2]);
    infer_seq_free(ref, seq[2]);
    int32_t fork_tok[2] = {7, 9};
    ch[0] = (InferChunk){seq[0], toks[0] + pos[0], 1};
    ch[1] = (InferChunk){seq[1], toks[1] + pos[1], 1};
    ch[2] = (InferChunk){seq[3], toks[3] + pos[3], 1};
    ch[3] = (InferChunk){f, fork_tok, 2};
    forward_both("mixed", tp, ref, ch, 4, true, V);
    CHECK(infer_used_blocks(tp) == infer_used_blocks(ref));

    /* over the budget: refused on the leader, nothing sent, the group goes on */
    int32_t *big = xmalloc(4096 * sizeof(int32_t));
    fill_tokens(big, 4096, V, 5);
    char err[512];
    int s = infer_seq_new(tp, err, sizeof err);
    InferChunk over = {s, big, infer_free_tokens(tp) + 4};
    CHECK(infer_forward(tp, &over, 1, NULL, err, sizeof err) == -1);
    CHECK(strstr(err, "KV cache budget exceeded") != NULL);
    infer_seq_free(tp, s);
    ch[0] = (InferChunk){seq[0], fork_tok, 1};
    forward_both("after a refused step", tp, ref, ch, 1, true, V);
    free(big);
    for (int i = 0; i < NS; i++) free(toks[i]);
}

typedef struct {
    int32_t ids[64];
    float lps[64];
    int n;
} Out;

/* Generation with continuous batching: requests join and finish between steps. */
static void generate(InferEngine *e, int V, Out *out /* (4) */) {
    InferGen *g = infer_gen_new(e, NULL);
    char err[512];
    int req[4], started = 0;
    static const int plen[4] = {3, 17, 9, 1};
    static const int maxn[4] = {12, 20, 5, 16};
    int32_t prompt[4][32];
    for (int i = 0; i < 4; i++) fill_tokens(prompt[i], 32, V, 100 + (uint64_t)i);
    for (int step = 0; started < 4 || infer_gen_running(g) > 0; step++) {
        /* one request joins on each of the first steps */
        if (started < 4) {
            int i = started++;
            int s = infer_seq_new(e, err, sizeof err);
            InferGenParams p = {.sample = {.temperature = 1.0f, .top_p = 1.0f, .top_k = 0},
                                .seed = 1234,
                                .stream = (uint64_t)i,
                                .max_new_tokens = maxn[i]};
            req[i] = infer_gen_add(g, s, prompt[i], plen[i], &p, err, sizeof err);
            if (req[i] < 0) die_runtime("%s", err);
        }
        if (infer_gen_step(g, err, sizeof err) < 0) die_runtime("%s", err);
    }
    for (int i = 0; i < 4; i++) {
        InferGenResult r = infer_gen_result(g, req[i]);
        out[i].n = r.n;
        memcpy(out[i].ids, r.ids, (size_t)r.n * sizeof(int32_t));
        memcpy(out[i].lps, r.logprobs, (size_t)r.n * sizeof(float));
        infer_seq_free(e, r.seq);
        infer_gen_release(g, req[i]);
    }
    infer_gen_free(g);
}

static void compare_generation(InferEngine *tp, InferEngine *ref, int V) {
    Out a[4], b[4];
    generate(tp, V, a);
    generate(ref, V, b);
    for (int i = 0; i < 4; i++) {
        CHECK(a[i].n == b[i].n);
        bool same = a[i].n == b[i].n && memcmp(a[i].ids, b[i].ids, (size_t)a[i].n * sizeof(int32_t)) == 0;
        if (!same) fprintf(stderr, "generation %d: sampled ids differ\n", i);
        CHECK(same);
        for (int k = 0; same && k < a[i].n; k++) {
            double r = fabs((double)a[i].lps[k] - b[i].lps[k]) / fmax(1.0, fabs(b[i].lps[k]));
            CHECK(r <= TOL);
            g_worst_lp = r > g_worst_lp ? r : g_worst_lp;
        }
    }
}

/* One model over one group: rank 0 leads and compares, the others follow. */
static void check_model(const char *dir, Comm *group, Comm *world) {
    char err[1024];
    g_worst_logit = g_worst_lp = 0;
    Qwen3 *shard = qwen3_load_dir_tp(dir, group, err, sizeof err);
    if (!shard) die_runtime("%s", err);
    if (group->rank != 0) {
        /* a follower cannot create an engine */
        InferOptions o = {.kv_tokens = 64, .group = group};
        CHECK(infer_new(shard, &o, err, sizeof err) == NULL);
        CHECK(strstr(err, "only rank 0 creates the engine") != NULL);
        CHECK(infer_follow(shard, group, err, sizeof err) == 0);
        qwen3_free(shard);
        return;
    }
    if (group->size > 1) CHECK(infer_follow(shard, group, err, sizeof err) == -1);
    Qwen3 *full = qwen3_load_dir(dir, err, sizeof err);
    if (!full) die_runtime("%s", err);
    /* the shard must match the group */
    InferOptions wrong = {.kv_tokens = 64};
    if (group->size > 1) CHECK(infer_new(shard, &wrong, err, sizeof err) == NULL);
    int V = full->config.vocab_size;
    InferEngine *tp = engine_or_die(shard, group, 512);
    InferEngine *ref = engine_or_die(full, NULL, 512);
    drive_forward(tp, ref, V);
    infer_free(tp);
    infer_free(ref);
    /* a second engine in the same follow phase */
    tp = engine_or_die(shard, group, 1024);
    ref = engine_or_die(full, NULL, 1024);
    compare_generation(tp, ref, V);
    infer_free(tp);
    infer_free(ref);
    infer_follow_end(group);
    if (world->rank == 0)
        printf("  %s, TP %d: logits within %.2g, logprobs within %.2g\n", strrchr(dir, '/') + 1, group->size,
               g_worst_logit, g_worst_lp);
    qwen3_free(full);
    qwen3_free(shard);
}

int main(int argc, char **argv) {
    int wr, ws;
    mpi_test_begin(&argc, &argv, &wr, &ws);
    Comm *world = comm_mpi_world();

    /* the tiny model splits in 2 at most */
    int tp = world->size >= 2 ? 2 : 1;
    Comm *pairs = comm_split(world, world->rank / tp, world->rank);
    if (world->size % tp == 0) check_model(TAU2_SOURCE_DIR "/inputs/tiny_model", pairs, world);
    comm_free(pairs);
    check_model(TAU2_SOURCE_DIR "/tests/fixtures/qwen3/tp4_gqa", world, world);
    check_model(TAU2_SOURCE_DIR "/tests/fixtures/qwen3/tp4_tied", world, world);

    comm_free(world);
    return mpi_test_end("test_infer_tp");
}
