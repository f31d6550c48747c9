/* test_cuda_infer.c — the GPU inference engine (infer_gpu.c) against the CPU
 * engine (infer.c) on a small model with random weights, both driven by
 * the same calls:
 *
 *   1. three prompts in one forward: 100 tokens (the flash path), 5 and 37
 *      (the paged path, one row per token);
 *   2. a fork of the first (copy-on-write of its partly filled last block),
 *      then decode steps of one token on every sequence, fork and source
 *      taking different tokens;
 *   3. a mixed step: a 20-token turn appended to one sequence, single tokens
 *      on the others;
 *   4. a sequence freed and a new 70-token prompt in the same step as decode
 *      rows;
 *   5. a turn of 420 tokens appended to one sequence (paged rows over a
 *      context of 532: three pieces of the decode kernel's split), then
 *      decode steps: the decode workspace grows with the step;
 *   6. decode steps of two rows, on two short sequences, then on two long
 *      ones, then the short ones again.
 *
 * Each step compares the logits after every chunk's last token:
 *   err = max |gpu - cpu| / max |cpu| over the step, tolerance 2e-2: the
 *   weights, every product's activation operand and the KV cache are bf16
 *   (2^-9 relative rounding each), and on this 2-layer random model the
 *   roundings of some ten products in a row add up to ~1e-2 of the largest
 *   logit (7.6e-3 to 1.2e-2 under the CPU emulation of tests/cuda_emu; with
 *   the weights already bf16 on both sides, 4.9e-3 to 9.2e-3: the rest is
 *   the activations and the cache). A wrong position, block or sequence
 *   gives errors of order 1.
 * Decode steps go through CUDA graphs (infer_gpu.c), and the first two GPU
 * engines launch their kernels as programmatic dependents where the GPU
 * can and fold the decode steps' q/k stage into the attention: a third GPU
 * engine with none of these must give the same logits bit for bit at every
 * step, and the graphs must have been captured and launched again.
 * A second GPU engine replays the same steps through
 * infer_gpu_forward_sample: greedy rows must pick the argmax of the first
 * engine's logits (the same arithmetic on the same device), sampled rows
 * (temperature 1, top_k 50) a token ranked within the top 50, and every
 * logprob must be log_softmax of those logits at the token (1e-4).
 * Errors: a step beyond the KV budget fails and changes nothing; a bad
 * sampling parameter is refused by name.
 *
 * Without a CUDA device it prints "no CUDA device: skipped" and exits 77.
 */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "kernels.h"
#include "model/infer.h"
#include "model/infer_gpu.h"
#include "model/qwen3.h"
#include "model/sample.h"

#include "cuda_test_util.h"

static int g_failures;

static void expect(bool ok, const char *what) {
    printf("%-4s %s\n", ok ? "ok" : "FAIL", what);
    if (!ok) g_failures++;
}

typedef struct {
    InferEngine *cpu;
    InferGpu *gpu, *gpu_sampled, *gpu_eager; /* gpu_eager: no CUDA graphs, plain launches, nothing folded */
    int V;
    int step;
} Engines;

/* A new sequence on all three engines: the same id on each. */
static int seq_new(Engines *E) {
    char err[256];
    int a = infer_seq_new(E->cpu, err, sizeof err);
    int b = infer_gpu_seq_new(E->gpu, err, sizeof err);
    int c = infer_gpu_seq_new(E->gpu_sampled, err, sizeof err);
    int d = infer_gpu_seq_new(E->gpu_eager, err, sizeof err);
    if (a < 0 || a != b || a != c || a != d) die_runtime("test: sequence ids differ: %d %d %d %d", a, b, c, d);
    return a;
}

static int seq_fork(Engines *E, int src) {
    char err[256];
    int a = infer_seq_fork(E->cpu, src, err, sizeof err);
    int b = infer_gpu_seq_fork(E->gpu, src, err, sizeof err);
    int c = infer_gpu_seq_fork(E->gpu_sampled, src, err, sizeof err);
    int d = infer_gpu_seq_fork(E->gpu_eager, src, err, sizeof err);
    if (a < 0 || a != b || a != c || a != d) die_runtime("test: forked ids differ: %d %d %d %d", a, b, c, d);
    return a;
}

static void seq_free(Engines *E, int seq) {
    infer_seq_free(E->cpu, seq);
    infer_gpu_seq_free(E->gpu, seq);
    infer_gpu_seq_free(E->gpu_sampled, seq);
    infer_gpu_seq_free(E->gpu_eager, seq);
}

/* Rank of token among the row's logits: how many are strictly larger. */
static int rank_of(const float *z, int V, int32_t token) {
    int r = 0;
    for (int j = 0; j < V; j++) r += z[j] > z[token];
    return r;
}

/* One forward on all engines and the checks of the file comment. Chunks
 * with an even index are sampled greedily, odd ones at temperature 1 with
 * top_k 50. */
static void step(Engines *E, const InferChunk *chunks, int n, const char *label) {
    char err[256], what[256];
    int V = E->V;
    float *cpu = xmalloc((size_t)n * V * sizeof(float));
    float *gpu = xmalloc((size_t)n * V * sizeof(float));
    if (infer_forward(E->cpu, chunks, n, cpu, err, sizeof err) != 0) die_runtime("cpu forward: %s", err);
    if (infer_gpu_forward(E->gpu, chunks, n, gpu, err, sizeof err) != 0) die_runtime("gpu forward: %s", err);

    double maxref = 0.0, maxdiff = 0.0;
    bool finite = true;
    for (size_t i = 0; i < (size_t)n * V; i++) {
        if (!isfinite(gpu[i])) finite = false;
        maxref = fmax(maxref, fabs(cpu[i]));
        maxdiff = fmax(maxdiff, fabs((double)gpu[i] - cpu[i]));
    }
    double rel = maxref > 0 ? maxdiff / maxref : maxdiff;
    snprintf(what, sizeof what, "step %d (%s): logits of %d chunks, err %.3e (tol 2e-2)", E->step, label, n, rel);
    expect(finite && rel <= 2e-2, what);

    float *eager = xmalloc((size_t)n * V * sizeof(float));
    if (infer_gpu_forward(E->gpu_eager, chunks, n, eager, err, sizeof err) != 0) die_runtime("gpu forward: %s", err);
    snprintf(what, sizeof what,
             "step %d (%s): the same logits without CUDA graphs, programmatic launches or the folded q/k stage, "
             "bit for bit",
             E->step,
             label);
    expect(memcmp(eager, gpu, (size_t)n * V * sizeof(float)) == 0, what);
    free(eager);

    SampleParams *sp = xmalloc((size_t)n * sizeof *sp);
    double *u = xmalloc((size_t)n * sizeof(double));
    int32_t *ids = xmalloc((size_t)n * sizeof(int32_t));
    float *lps = xmalloc((size_t)n * sizeof(float));
    for (int i = 0; i < n; i++) {
        sp[i] = i % 2 == 0 ? (SampleParams){0.0f, 1.0f, 0} : (SampleParams){1.0f, 1.0f, 50};
        u[i] = (double)(rnd_u32() & 0xffffff) / 16777216.0;
    }
    if (infer_gpu_forward_sample(E->gpu_sampled, chunks, n, sp, u, ids, lps, err, sizeof err) != 0)
        die_runtime("gpu sampled forward: %s", err);
    bool picks_ok = true, lps_ok = true;
    for (int i = 0; i < n; i++) {
        const float *z = gpu + (size_t)i * V;
        int rank = ids[i] >= 0 && ids[i] < V ? rank_of(z, V, ids[i]) : V;
        if (sp[i].temperature == 0.0f ? rank != 0 : rank >= 50) picks_ok = false;
        if (rank < V && fabs(lps[i] - sample_logprob(z, V, ids[i])) > 1e-4) lps_ok = false;
    }
    snprintf(what, sizeof what, "step %d (%s): sampled ids (greedy: the argmax; top_k 50: within the top 50)",
             E->step, label);
    expect(picks_ok, what);
    snprintf(what, sizeof what, "step %d (%s): sampled logprobs = log_softmax of the logits", E->step, label);
    expect(lps_ok, what);
    E->step++;
    free(cpu), free(gpu), free(sp), free(u), free(ids), free(lps);
}

/* One token for each of seqs (n of them), drawn at random. */
static void decode_step(Engines *E, const int *seqs, int n, const char *label) {
    InferChunk *ch = xmalloc((size_t)n * sizeof *ch);
    int32_t *tok = random_ids(n, E->V);
    for (int i = 0; i < n; i++) ch[i] = (InferChunk){seqs[i], &tok[i], 1};
    step(E, ch, n, label);
    free(tok);
    free(ch);
}

static void test_errors(InferGpu *g, int seq, int V) {
    char err[256];
    int len = infer_gpu_seq_len(g, seq), free_tokens = infer_gpu_free_tokens(g);
    int n = free_tokens + 64;
    int32_t *ids = random_ids(n, V);
    InferChunk big = {seq, ids, n};
    float *logits = xmalloc((size_t)V * sizeof(float));
    int rc = infer_gpu_forward(g, &big, 1, logits, err, sizeof err);
    expect(rc == -1 && strstr(err, "KV cache budget exceeded") && infer_gpu_seq_len(g, seq) == len &&
               infer_gpu_free_tokens(g) == free_tokens,
           "a step beyond the KV budget fails and changes nothing");
    InferChunk one = {seq, ids, 1};
    SampleParams bad = {1.0f, 1.5f, 0};
    double u = 0.5;
    int32_t id;
    float lp;
    rc = infer_gpu_forward_sample(g, &one, 1, &bad, &u, &id, &lp, err, sizeof err);
    expect(rc == -1 && strstr(err, "top_p") && infer_gpu_seq_len(g, seq) == len, "a bad top_p is refused by name");
    free(ids);
    free(logits);
}

/* An engine kept across calls: weights loaded from device memory in
 * ranges that cut through norm tensors give the host-loaded engine's
 * logits bit for bit; reset frees every sequence; fits says which calls
 * the engine serves. */
static void test_kept_engine(const Qwen3Config *cfg, const Qwen3 *m, const InferOptions *opt) {
    char err[256];
    Qwen3 *other = random_model(cfg); /* other weights, the same layout */
    InferGpu *ref = infer_gpu_new(m, opt, 0, err, sizeof err);
    InferGpu *kept = infer_gpu_new(other, opt, 0, err, sizeof err);
    if (!ref || !kept) die_runtime("engines: %s", err);
    size_t n = m->num_parameters;
    float *w = dev_upload(m->params_memory, n * sizeof(float));
    size_t cut1 = (size_t)(m->params.ln1_w - m->params_memory) + 3;
    size_t cut2 = (size_t)(m->params.norm_w - m->params_memory) + 1;
    infer_gpu_load_weights_device(kept, w, 0, cut1);
    infer_gpu_load_weights_device(kept, w + cut1, cut1, cut2 - cut1);
    infer_gpu_load_weights_device(kept, w + cut2, cut2, n - cut2);

    int V = cfg->vocab_size;
    int32_t *prompt = random_ids(40, V);
    float *la = xmalloc((size_t)V * sizeof(float)), *lb = xmalloc((size_t)V * sizeof(float));
    int sa = infer_gpu_seq_new(ref, err, sizeof err), sb = infer_gpu_seq_new(kept, err, sizeof err);
    InferChunk ca = {sa, prompt, 40}, cb = {sb, prompt, 40};
    expect(infer_gpu_forward(ref, &ca, 1, la, err, sizeof err) == 0 &&
               infer_gpu_forward(kept, &cb, 1, lb, err, sizeof err) == 0 &&
               memcmp(la, lb, (size_t)V * sizeof(float)) == 0,
           "weights loaded from device memory in 3 ranges: the host-loaded engine's logits, bit for bit");

    int before = infer_gpu_free_tokens(kept);
    infer_gpu_reset(kept);
    expect(infer_gpu_seq_len(kept, sb) == -1 && infer_gpu_free_tokens(kept) > before &&
               infer_gpu_free_tokens(kept) >= opt->kv_tokens,
           "reset frees every sequence and its blocks");
    InferOptions bigger = *opt, other_block = *opt, fewer = *opt;
    bigger.kv_tokens = 2 * opt->kv_tokens;
    other_block.block_size = 2 * opt->block_size;
    fewer.kv_tokens = opt->kv_tokens / 2;
    fewer.max_seqs = opt->max_seqs / 2;
    expect(infer_gpu_fits(kept, opt) && infer_gpu_fits(kept, &fewer) && !infer_gpu_fits(kept, &bigger) &&
               !infer_gpu_fits(kept, &other_block),
           "fits: the same or a smaller budget, not a larger one or another block size");

    dev_free(w);
    free(prompt), free(la), free(lb);
    infer_gpu_free(ref);
    infer_gpu_free(kept);
    qwen3_free(other);
}

int main(void) {
    if (!cuda_test_device()) return 77;
    Qwen3Config cfg = small_tied_config();
    Qwen3 *m = random_model(&cfg);
    InferOptions opt = {.kv_tokens = 2048, .block_size = 16, .max_seqs = 16};
    char err[256];
    Engines E = {.V = cfg.vocab_size};
    E.cpu = infer_new(m, &opt, err, sizeof err);
    E.gpu = infer_gpu_new(m, &opt, 0, err, sizeof err);
    E.gpu_sampled = E.gpu ? infer_gpu_new(m, &opt, 0, err, sizeof err) : NULL;
    E.gpu_eager = E.gpu_sampled ? infer_gpu_new(m, &opt, 0, err, sizeof err) : NULL;
    if (!E.cpu || !E.gpu || !E.gpu_sampled || !E.gpu_eager) die_runtime("engines: %s", err);
    infer_gpu_set_graphs(E.gpu, true);
    infer_gpu_set_graphs(E.gpu_eager, false);
    /* the graphs' engines launch as programmatic dependents where the GPU
     * can (compute capability 9.0; the emulation says 9.0 and checks that
     * every thread of such a launch waits); the eager one plainly */
    infer_gpu_set_dependent_launch(E.gpu, true);
    infer_gpu_set_dependent_launch(E.gpu_sampled, true);
    infer_gpu_set_dependent_launch(E.gpu_eager, false);
    infer_gpu_set_decode_fold(E.gpu, true);
    infer_gpu_set_decode_fold(E.gpu_sampled, true);
    infer_gpu_set_decode_fold(E.gpu_eager, false);
    printf("programmatic dependent launch: %s\n", infer_gpu_dependent_launch(E.gpu) ? "on" : "not supported here");

    /* 1. three prompts */
    int a = seq_new(&E), b = seq_new(&E), c = seq_new(&E);
    int lens[3] = {100, 5, 37};
    int32_t *p0 = random_ids(lens[0], E.V), *p1 = random_ids(lens[1], E.V), *p2 = random_ids(lens[2], E.V);
    InferChunk prompts[3] = {{a, p0, lens[0]}, {b, p1, lens[1]}, {c, p2, lens[2]}};
    step(&E, prompts, 3, "prompts 100 + 5 + 37");

    /* 2. a fork, then decode steps */
    int a2 = seq_fork(&E, a);
    int all[4] = {a, a2, b, c};
    for (int i = 0; i < 6; i++) decode_step(&E, all, 4, "decode");

    /* 3. a 20-token turn beside single tokens */
    int32_t *turn = random_ids(20, E.V), *singles = random_ids(3, E.V);
    InferChunk mixed[4] = {{a, &singles[0], 1}, {b, turn, 20}, {a2, &singles[1], 1}, {c, &singles[2], 1}};
    step(&E, mixed, 4, "turn of 20 + decode");
    decode_step(&E, all, 4, "decode after the turn");

    /* 4. free one sequence, a new prompt beside decode rows */
    seq_free(&E, a2);
    int d = seq_new(&E);
    int32_t *p3 = random_ids(70, E.V), *more = random_ids(3, E.V);
    InferChunk with_prompt[4] = {{a, &more[0], 1}, {d, p3, 70}, {b, &more[1], 1}, {c, &more[2], 1}};
    step(&E, with_prompt, 4, "prompt of 70 + decode");
    int rest[4] = {a, b, c, d};
    for (int i = 0; i < 3; i++) decode_step(&E, rest, 4, "decode");

    /* 5. a long turn: contexts over several pieces of the decode split */
    int32_t *long_turn = random_ids(420, E.V), *beside = random_ids(3, E.V);
    InferChunk with_long[4] = {{b, &beside[0], 1}, {a, long_turn, 420}, {c, &beside[1], 1}, {d, &beside[2], 1}};
    step(&E, with_long, 4, "turn of 420 + decode");
    for (int i = 0; i < 2; i++) decode_step(&E, rest, 4, "decode over a long context");

    /* 6. decode on the two short sequences, then on two long ones: the
     * same row count with a wider block table (another graph; a graph
     * keyed by rows alone would attend over the short table's reach) */
    int short_pair[2] = {c, d}, long_pair[2] = {a, b};
    decode_step(&E, short_pair, 2, "decode, 2 short contexts");
    decode_step(&E, long_pair, 2, "decode, 2 long contexts");
    decode_step(&E, short_pair, 2, "decode, 2 short contexts");

    /* the decode steps went through graphs, each captured once per key
     * (rows, table width rounded up) and scratch (that step runs as plain
     * launches), launched after */
    long captured, replayed, eager_captured, eager_replayed;
    infer_gpu_graph_counts(E.gpu, &captured, &replayed);
    infer_gpu_graph_counts(E.gpu_eager, &eager_captured, &eager_replayed);
    char what[160];
    snprintf(what, sizeof what, "decode steps through CUDA graphs: %ld captured, %ld launches; none without", captured,
             replayed);
    expect(captured >= 3 && replayed >= 8 && replayed > captured && eager_captured == 0 && eager_replayed == 0, what);

    test_errors(E.gpu, b, E.V);
    test_kept_engine(&cfg, m, &opt);

    free(p0), free(p1), free(p2), free(p3), free(turn), free(singles), free(more), free(long_turn), free(beside);
    infer_free(E.cpu);
    infer_gpu_free(E.gpu);
    infer_gpu_free(E.gpu_sampled);
    infer_gpu_free(E.gpu_eager);
    qwen3_free(m);
    printf("%s: %d failure(s)\n", g_failures ? "FAILED" : "passed", g_failures);
    return g_failures ? 1 : 0;
}
