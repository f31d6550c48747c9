/* infer.c — paged KV cache, forward over appended tokens, and generation
 * with continuous batching (see infer.h).
 *
 * A forward call lays the new tokens of all chunks out as rows: rows of
 * short chunks first (they share the batch-invariant kernel), then each long
 * chunk's rows (one sgemm per chunk). Every layer then runs over all rows:
 * the per-row layer functions of layers_cpu.h (RMSNorm, RoPE at each row's
 * own position, SwiGLU, residual), keys and values written into each row's
 * cache slot, and attention of each row's query over its sequence's cache up
 * to its own position.
 */
#include "model/infer.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "comm/comm.h"
#include "core/error.h"
#include "core/rng.h"
#include "core/sbuf.h"
#include "core/sysmem.h"
#include "model/kv_blocks.h"
#include "model/layers_cpu.h"
#include "model/linear_rows.h"
#include "model/vector_clones.h"

#define ATT_MAX_D 512
/* Query heads a kv head (Qwen3: 1 to 8). */
#define ATT_MAX_REP 16
/* Keys per step of the decode attention's online softmax. */
#define ATT_KEY_TILE 64

/* a . b over n floats as eight interleaved partial sums added in a fixed
 * order: the compiler can keep the eight in one vector register without
 * reordering any float addition, so the result is the same whatever the
 * vector width (plain C, no -ffast-math). */
static inline float dot_lanes(const float *a, const float *b, int n) {
    float part[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        for (int u = 0; u < 8; u++) part[u] += a[i + u] * b[i + u];
    }
    for (; i < n; i++) part[i % 8] += a[i] * b[i];
    return ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
}

/* ================================================================ kernels */

/* The decode attention's inner loops, one tile of nt keys of one cache
 * block for the rep query heads that read one kv head. Leaf functions
 * compiled for each vector width (vector_clones.h: the default build is
 * baseline x86-64) doing the same float operations at any width.
 *
 * Scores: sc[j * ATT_KEY_TILE + i] = (q_j . k_i) * scale. Each key is read
 * once for all rep heads. */
VECTOR_CLONES static void paged_scores(float *sc /* (rep, ATT_KEY_TILE) */, const float *q /* (rep, D) */,
                                       const float *kt /* key 0 of the tile */, size_t key_stride, int nt,
                                       int rep, int D, float scale) {
    for (int i = 0; i < nt; i++) {
        const float *k = kt + (size_t)i * key_stride;
        for (int j = 0; j < rep; j++) sc[j * ATT_KEY_TILE + i] = dot_lanes(q + (size_t)j * D, k, D) * scale;
    }
}

/* acc_j += sum_i p[j][i] v_i, key by key in order (each value row read
 * once for all rep heads). */
VECTOR_CLONES static void paged_values(float *acc /* (rep, D) */, const float *p /* (rep, ATT_KEY_TILE) */,
                                       const float *vt /* value 0 of the tile */, size_t key_stride, int nt,
                                       int rep, int D) {
    for (int i = 0; i < nt; i++) {
        const float *v = vt + (size_t)i * key_stride;
        for (int j = 0; j < rep; j++) {
            float pj = p[j * ATT_KEY_TILE + i];
            float *a = acc + (size_t)j * D;
            for (int d = 0; d < D; d++) a[d] += pj * v[d];
        }
    }
}

/* Attention of one query per (row, head) over the row's sequence cache,
 * positions 0..pos[r]. The cache of block b, layer l: keys at
 * kv + b * block_stride + k_off, (block_size, NKV, D); values at + v_off.
 * Query head h reads kv head h / (NH / NKV); scale 1/sqrt(D). One task per
 * (row, kv head) takes the kv head's rep query heads together, so each
 * cached key and value is read once for them. Each head's arithmetic is
 * its own and in a fixed order, so a row's result does not depend on the
 * batch or the thread count. */
static void attention_paged(float *out /* (R, NH, D) */, const float *q /* (R, NH, D) */, const float *kv,
                            const int32_t *const *row_blocks /* (R) -> block table */,
                            const int32_t *pos /* (R) */, const uint8_t *skip /* (R) */, int R, int NH,
                            int NKV, int D, int block_size, size_t block_stride, size_t k_off, size_t v_off) {
    int rep = NH / NKV;
    float scale = 1.0f / sqrtf((float)D);
    long tasks = (long)R * NKV;
    size_t key_stride = (size_t)NKV * D; /* from one cached token to the next in a block */
    if (rep > ATT_MAX_REP || D > ATT_MAX_D) die_runtime("attention_paged: %d heads a kv head, head_dim %d", rep, D);
#pragma omp parallel for schedule(dynamic, 2)
    for (long rg = 0; rg < tasks; rg++) {
        int r = (int)(rg / NKV), g = (int)(rg % NKV);
        if (skip[r]) continue;
        const float *qg = q + ((size_t)r * NH + (size_t)g * rep) * D; /* (rep, D): heads g*rep .. */
        float acc[ATT_MAX_REP * ATT_MAX_D], sc[ATT_MAX_REP * ATT_KEY_TILE];
        float m[ATT_MAX_REP], l[ATT_MAX_REP];
        for (int j = 0; j < rep * D; j++) acc[j] = 0.0f;
        for (int j = 0; j < rep; j++) m[j] = -INFINITY, l[j] = 0.0f;
        int n = pos[r] + 1;
        /* Keys a tile at a time (never across a cache block): the tile's
         * scores and their max first, then one rescale of the running sum
         * per tile rather than per key, then the weighted values. */
        for (int j0 = 0, nt = 0; j0 < n; j0 += nt) {
            int in_block = j0 % block_size;
            nt = n - j0;
            if (nt > ATT_KEY_TILE) nt = ATT_KEY_TILE;
            if (nt > block_size - in_block) nt = block_size - in_block;
            const float *blk = kv + (size_t)row_blocks[r][j0 / block_size] * block_stride;
            const float *kt = blk + k_off + ((size_t)in_block * NKV + g) * D;
            const float *vt = blk + v_off + ((size_t)in_block * NKV + g) * D;
            paged_scores(sc, qg, kt, key_stride, nt, rep, D, scale);
            for (int j = 0; j < rep; j++) {
                float *sj = sc + j * ATT_KEY_TILE;
                float tile_max = max_array(sj, nt);
                if (tile_max > m[j]) {
                    float dm = m[j] - tile_max, corr; /* corr 0 for the first tile */
                    exp_array(&corr, &dm, 1);
                    l[j] *= corr;
                    for (int d = 0; d < D; d++) acc[j * D + d] *= corr;
                    m[j] = tile_max;
                }
                for (int i = 0; i < nt; i++) sj[i] -= m[j];
                exp_array(sj, sj, nt);
                for (int i = 0; i < nt; i++) l[j] += sj[i];
            }
            paged_values(acc, sc, vt, key_stride, nt, rep, D);
        }
        for (int j = 0; j < rep; j++) {
            float inv = 1.0f / l[j];
            float *o = out + ((size_t)r * NH + (size_t)g * rep + j) * D;
            for (int d = 0; d < D; d++) o[d] = acc[j * D + d] * inv;
        }
    }
}

/* ================================================================ engine */

/* Per-call scratch, grown to the largest call. */
typedef struct {
    int cap_rows, cap_chunks;
    float *x, *x2, *ln, *rstd, *q, *k, *v, *qn, *kn, *qrstd, *krstd, *att, *res2, *gate, *up, *h;
    float *xl, *xf, *rstdf; /* (chunks, C), (chunks, C), (chunks) */
    float *lg, *lg_all;     /* TP: (chunks, Vs) this rank's logits; (tp, chunks, Vs) gathered */
    int32_t *tok, *pos, *row_seq, *row_of_chunk, *chunk_order, *last_row;
    const int32_t **row_blocks;
    /* A whole prompt in one chunk (a new sequence) attends within itself: the
     * training kernel's flash tiles instead of one query at a time. */
    uint8_t *row_flash;     /* (rows) 1: the row's attention is the chunk's flash pass */
    float *lse;             /* (rows, NH) the flash pass's log-sum-exp, unused after */
    int32_t *seq_zero;      /* (rows) zeros: the chunk is one sequence */
} InferScratch;

struct InferEngine {
    const Qwen3 *model;
    int V, C, I, L, NH, NKV, D; /* V the full vocabulary; I, NH, NKV this rank's shard */
    int Vs, v0;                 /* this rank's rows of embed and lm_head: [v0, v0 + Vs) */
    Comm *group;                /* the TP group (borrowed), NULL at one rank */
    bool lead;                  /* rank 0 of a group: sends every state change to the followers */
    int32_t *op_buf;            /* leader: a forward's chunks packed for the followers */
    size_t op_cap;
    float eps;
    int block_size, max_len;
    size_t block_stride; /* floats per block: L * 2 * block_size * NKV * D */
    float *kv;           /* (kb.n_blocks, L, 2, block_size, NKV, D) */
    KvBlocks kb;         /* sequences and their block tables */
    float *rope_cos, *rope_sin; /* (max_len, D/2) */
    InferScratch s;
    /* infer_forward_sample: the step's logits and one sampler scratch per thread */
    float *sample_logits;
    int cap_sample_rows;
    SampleScratch *samp;
    int n_samp;
};

/* ---- lockstep over a TP group ----
 *
 * The leader (group rank 0) runs the engine as at one rank. Every call that
 * changes the engine's state is first sent to the followers as an operation
 * (a header of OP_INTS ints, for a forward then the packed chunks), and
 * they replay it on their shards: sequence and block bookkeeping is the
 * same arithmetic on every rank, so sequence ids and block tables agree,
 * and each forward's collectives meet. A call the leader refuses (unknown
 * sequence, KV budget exceeded) is refused before anything is sent. */

enum { OP_NEW = 1, OP_SEQ_NEW, OP_SEQ_FORK, OP_SEQ_FREE, OP_FORWARD, OP_FREE, OP_END };
#define OP_INTS 5

static void op_send(Comm *g, int op, int a, int b, int c, int d) {
    int32_t m[OP_INTS] = {op, a, b, c, d};
    comm_broadcast(g, m, sizeof m, 0);
}

static const char *op_name(int op) {
    static const char *const names[] = {"?", "new", "seq_new", "seq_fork", "seq_free", "forward", "free", "end"};
    return op >= OP_NEW && op <= OP_END ? names[op] : "unknown";
}

/* The model's shard must be this rank's part of a group of the comm's size. */
static int check_shard(const Qwen3 *model, const Comm *group, char *err, size_t errlen) {
    int size = group ? group->size : 1, rank = group ? group->rank : 0;
    if (model->shard.size != size || model->shard.rank != rank) {
        return err_set(err, errlen,
                       "inference: the model is shard %d of %d but the engine runs on rank %d of a group of %d "
                       "(load it with qwen3_load_dir_tp over the engine's group)",
                       model->shard.rank, model->shard.size, rank, size);
    }
    return 0;
}

static InferEngine *engine_create(const Qwen3 *model, const InferOptions *opt, Comm *group, bool lead) {
    const Qwen3Config *c = &model->config;
    int bs = opt->block_size > 0 ? opt->block_size : INFER_DEFAULT_BLOCK_SIZE;
    int max_len = opt->max_len > 0 ? opt->max_len : c->max_position_embeddings;
    InferEngine *e = xcalloc(1, sizeof *e);
    e->model = model;
    e->V = c->vocab_size;
    e->C = c->hidden_size;
    e->I = model->shard.intermediate_size;
    e->L = c->num_layers;
    e->NH = model->shard.num_heads;
    e->NKV = model->shard.num_kv_heads;
    e->D = c->head_dim;
    e->Vs = model->shard.vocab_size;
    e->v0 = model->shard.vocab_start;
    e->group = group;
    e->lead = lead;
    e->eps = c->rms_norm_eps;
    e->block_size = bs;
    e->max_len = max_len;
    e->block_stride = (size_t)e->L * 2 * bs * e->NKV * e->D;
    int n_blocks = (int)(((long)opt->kv_tokens + bs - 1) / bs);
    kv_blocks_init(&e->kb, n_blocks, bs, opt->max_seqs > 0 ? opt->max_seqs : 1024);
    e->kv = xmalloc((size_t)n_blocks * e->block_stride * sizeof(float));
    e->rope_cos = xmalloc((size_t)max_len * (e->D / 2) * sizeof(float));
    e->rope_sin = xmalloc((size_t)max_len * (e->D / 2) * sizeof(float));
    rope_tables(e->rope_cos, e->rope_sin, max_len, e->D, c->rope_theta);
    return e;
}

double infer_kv_cache_bytes(const Qwen3Config *c, int tp, int kv_tokens, int block_size) {
    int bs = block_size > 0 ? block_size : INFER_DEFAULT_BLOCK_SIZE;
    double blocks = ceil((double)kv_tokens / bs);
    return blocks * bs * 2.0 * c->num_layers * (c->num_kv_heads / (tp > 0 ? tp : 1)) * c->head_dim * sizeof(float);
}

InferEngine *infer_new(const Qwen3 *model, const InferOptions *opt, char *err, size_t errlen) {
    const Qwen3Config *c = &model->config;
    Comm *group = opt->group && opt->group->size > 1 ? opt->group : NULL;
    if (opt->kv_tokens <= 0) {
        err_set(err, errlen, "inference: kv_tokens must be positive (the KV cache budget in tokens), got %d",
                opt->kv_tokens);
        return NULL;
    }
    if (c->head_dim > ATT_MAX_D) {
        err_set(err, errlen, "inference: head_dim %d > %d is not supported", c->head_dim, ATT_MAX_D);
        return NULL;
    }
    if (check_shard(model, group, err, errlen) != 0) return NULL;
    char why[384];
    if (sysmem_check(infer_kv_cache_bytes(c, model->shard.size, opt->kv_tokens, opt->block_size), "the KV cache", why,
                     sizeof why) != 0) {
        err_set(err, errlen, "inference: kv_tokens %d: %s", opt->kv_tokens, why);
        return NULL;
    }
    if (group && group->rank != 0) {
        err_set(err, errlen, "inference: rank %d of the engine's group: only rank 0 creates the engine, the others "
                             "run infer_follow", group->rank);
        return NULL;
    }
    InferEngine *e = engine_create(model, opt, group, group != NULL);
    if (e->lead) op_send(group, OP_NEW, opt->kv_tokens, e->block_size, e->kb.max_seqs, e->max_len);
    return e;
}

static void scratch_free(InferScratch *s) {
    float *f[] = {s->x, s->x2, s->ln, s->rstd, s->q, s->k, s->v, s->qn, s->kn, s->qrstd, s->krstd,
                  s->att, s->res2, s->gate, s->up, s->h, s->xl, s->xf, s->rstdf, s->lg, s->lg_all};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) free(f[i]);
    free(s->tok);
    free(s->pos);
    free(s->row_seq);
    free(s->row_of_chunk);
    free(s->chunk_order);
    free(s->last_row);
    free(s->row_blocks);
    free(s->row_flash);
    free(s->lse);
    free(s->seq_zero);
    memset(s, 0, sizeof *s);
}

static void engine_destroy(InferEngine *e) {
    if (!e) return;
    free(e->op_buf);
    kv_blocks_free(&e->kb);
    free(e->kv);
    free(e->rope_cos);
    free(e->rope_sin);
    scratch_free(&e->s);
    free(e->sample_logits);
    for (int i = 0; i < e->n_samp; i++) sample_scratch_free(&e->samp[i]);
    free(e->samp);
    free(e);
}

void infer_free(InferEngine *e) {
    if (!e) return;
    if (e->lead) op_send(e->group, OP_FREE, 0, 0, 0, 0);
    engine_destroy(e);
}

static void scratch_reserve(InferEngine *e, int rows, int chunks) {
    InferScratch *s = &e->s;
    if (s->cap_rows < rows || s->cap_chunks < chunks) {
        int R = rows > s->cap_rows ? rows : s->cap_rows;
        int N = chunks > s->cap_chunks ? chunks : s->cap_chunks;
        scratch_free(s);
        size_t r = (size_t)R, C = e->C, QD = (size_t)e->NH * e->D, KD = (size_t)e->NKV * e->D, I = e->I;
        s->cap_rows = R;
        s->cap_chunks = N;
        s->x = xmalloc(r * C * sizeof(float));
        s->x2 = xmalloc(r * C * sizeof(float));
        s->ln = xmalloc(r * C * sizeof(float));
        s->rstd = xmalloc(r * sizeof(float));
        s->q = xmalloc(r * QD * sizeof(float));
        s->k = xmalloc(r * KD * sizeof(float));
        s->v = xmalloc(r * KD * sizeof(float));
        s->qn = xmalloc(r * QD * sizeof(float));
        s->kn = xmalloc(r * KD * sizeof(float));
        s->qrstd = xmalloc(r * e->NH * sizeof(float));
        s->krstd = xmalloc(r * e->NKV * sizeof(float));
        s->att = xmalloc(r * QD * sizeof(float));
        s->res2 = xmalloc(r * C * sizeof(float));
        s->gate = xmalloc(r * I * sizeof(float));
        s->up = xmalloc(r * I * sizeof(float));
        s->h = xmalloc(r * I * sizeof(float));
        s->xl = xmalloc((size_t)N * C * sizeof(float));
        s->xf = xmalloc((size_t)N * C * sizeof(float));
        s->rstdf = xmalloc((size_t)N * sizeof(float));
        if (e->group) {
            s->lg = xmalloc((size_t)N * e->Vs * sizeof(float));
            s->lg_all = xmalloc((size_t)N * e->V * sizeof(float));
        }
        s->tok = xmalloc(r * sizeof(int32_t));
        s->pos = xmalloc(r * sizeof(int32_t));
        s->row_seq = xmalloc(r * sizeof(int32_t));
        s->row_blocks = xmalloc(r * sizeof(*s->row_blocks));
        s->row_flash = xmalloc(r);
        s->lse = xmalloc(r * e->NH * sizeof(float));
        s->seq_zero = xcalloc(r, sizeof(int32_t));
        s->row_of_chunk = xmalloc((size_t)N * sizeof(int32_t));
        s->chunk_order = xmalloc((size_t)N * sizeof(int32_t));
        s->last_row = xmalloc((size_t)N * sizeof(int32_t));
    }
}

/* ---- sequences (kv_blocks.c), sent to the followers ---- */

int infer_seq_new(InferEngine *e, char *err, size_t errlen) {
    int id = kv_seq_new(&e->kb, err, errlen);
    if (id >= 0 && e->lead) op_send(e->group, OP_SEQ_NEW, id, 0, 0, 0);
    return id;
}

int infer_seq_fork(InferEngine *e, int src, char *err, size_t errlen) {
    int id = kv_seq_fork(&e->kb, src, err, errlen);
    if (id >= 0 && e->lead) op_send(e->group, OP_SEQ_FORK, src, id, 0, 0);
    return id;
}

void infer_seq_free(InferEngine *e, int seq) {
    if (!kv_seq_ok(&e->kb, seq)) return;
    if (e->lead) op_send(e->group, OP_SEQ_FREE, seq, 0, 0, 0);
    kv_seq_free(&e->kb, seq);
}

int infer_seq_len(const InferEngine *e, int seq) {
    return kv_seq_ok(&e->kb, seq) ? e->kb.seqs[seq].len : -1;
}

int infer_free_tokens(const InferEngine *e) {
    return e->kb.n_free * e->block_size;
}

int infer_used_blocks(const InferEngine *e) {
    return e->kb.n_blocks - e->kb.n_free;
}

int infer_block_size(const InferEngine *e) {
    return e->block_size;
}

/* Make room for n more tokens of seq, copying a shared last block. */
static void seq_reserve(InferEngine *e, int seq, int n) {
    int32_t from, to;
    kv_seq_reserve(&e->kb, seq, n, &from, &to);
    if (from >= 0) {
        memcpy(e->kv + (size_t)to * e->block_stride, e->kv + (size_t)from * e->block_stride,
               e->block_stride * sizeof(float));
    }
}

/* ---- forward ---- */

/* out = inp @ w^T over all rows: rows [0, n_small) in one batch-invariant
 * call, then each long chunk's rows with sgemm. */
static void linear(const InferEngine *e, float *out /* (R, OC) */, const float *inp /* (R, IC) */,
                   const float *w /* (OC, IC) */, int IC, int OC, const InferChunk *chunks, int n_chunks,
                   int n_small) {
    const InferScratch *s = &e->s;
    linear_rows(out, inp, w, n_small, IC, OC);
    for (int i = 0; i < n_chunks; i++) {
        const InferChunk *ch = &chunks[i];
        if (ch->n < INFER_GEMM_MIN_ROWS) continue;
        int r0 = s->row_of_chunk[i];
        matmul_forward(out + (size_t)r0 * OC, inp + (size_t)r0 * IC, w, ch->n, IC, OC);
    }
}

static int check_chunks(const InferEngine *e, const InferChunk *chunks, int n_chunks, char *err, size_t errlen) {
    return kv_check_chunks(&e->kb, chunks, n_chunks, e->V, e->max_len, err, errlen);
}

/* Write rows' keys and values (after norm and RoPE) into their cache slots. */
static void cache_write(InferEngine *e, int l, const float *kn /* (R, NKV*D) */, const float *v /* (R, NKV*D) */,
                        int R) {
    const InferScratch *s = &e->s;
    size_t KD = (size_t)e->NKV * e->D, bs = e->block_size;
    size_t k_off = (size_t)l * 2 * bs * KD, v_off = k_off + bs * KD;
#pragma omp parallel for
    for (int r = 0; r < R; r++) {
        int p = s->pos[r];
        float *blk = e->kv + (size_t)s->row_blocks[r][p / e->block_size] * e->block_stride;
        size_t slot = (size_t)(p % e->block_size) * KD;
        memcpy(blk + k_off + slot, kn + (size_t)r * KD, KD * sizeof(float));
        memcpy(blk + v_off + slot, v + (size_t)r * KD, KD * sizeof(float));
    }
}

/* The forward on this rank's shard (chunks checked), collective over the
 * group. With want_logits the logits after each chunk's last token go into
 * logits (n_chunks, V) at one rank or on the leader; a follower passes
 * NULL but still takes part in the gather. */
static void forward_local(InferEngine *e, const InferChunk *chunks, int n_chunks, bool want_logits,
                          float *logits) {
    const Qwen3Params *p = &e->model->params;
    int C = e->C, I = e->I, L = e->L, NH = e->NH, NKV = e->NKV, D = e->D, V = e->V;
    int QD = NH * D, KD = NKV * D;

    /* Row layout: short chunks first, then long ones. */
    int R = 0;
    for (int i = 0; i < n_chunks; i++) R += chunks[i].n;
    scratch_reserve(e, R, n_chunks);
    InferScratch *s = &e->s;
    int r = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < n_chunks; i++) {
            bool small = chunks[i].n < INFER_GEMM_MIN_ROWS;
            if (small != (pass == 0)) continue;
            s->row_of_chunk[i] = r;
            r += chunks[i].n;
        }
    }
    int n_small = 0;
    for (int i = 0; i < n_chunks; i++) {
        if (chunks[i].n < INFER_GEMM_MIN_ROWS) n_small += chunks[i].n;
    }
    for (int i = 0; i < n_chunks; i++) {
        KvSeq *sq = &e->kb.seqs[chunks[i].seq];
        uint8_t flash = sq->len == 0 && chunks[i].n >= INFER_FLASH_MIN_ROWS;
        seq_reserve(e, chunks[i].seq, chunks[i].n);
        int r0 = s->row_of_chunk[i];
        for (int t = 0; t < chunks[i].n; t++) {
            s->tok[r0 + t] = chunks[i].ids[t];
            s->pos[r0 + t] = sq->len + t;
            s->row_seq[r0 + t] = chunks[i].seq;
            s->row_blocks[r0 + t] = sq->blocks;
            s->row_flash[r0 + t] = flash;
        }
        s->last_row[i] = r0 + chunks[i].n - 1;
    }

    /* TP: vocab-parallel embedding (one rank holds each row, the others add
     * zeros, so the sum is exact) */
    if (e->group) {
        embedding_forward_shard(s->x, s->tok, p->embed, R, C, e->v0, e->Vs);
        comm_allreduce_sum_f32(e->group, s->x, (size_t)R * C);
    } else {
        embedding_forward(s->x, s->tok, p->embed, R, C);
    }
    size_t bs = e->block_size;
    for (int l = 0; l < L; l++) {
        /* attention */
        rmsnorm_forward(s->ln, s->rstd, s->x, p->ln1_w + (size_t)l * C, R, C, e->eps);
        linear(e, s->q, s->ln, p->wq + (size_t)l * QD * C, C, QD, chunks, n_chunks, n_small);
        linear(e, s->k, s->ln, p->wk + (size_t)l * KD * C, C, KD, chunks, n_chunks, n_small);
        linear(e, s->v, s->ln, p->wv + (size_t)l * KD * C, C, KD, chunks, n_chunks, n_small);
        qk_norm_rope_forward(s->qn, s->qrstd, s->q, p->q_norm_w + (size_t)l * D, NH, s->kn, s->krstd, s->k,
                             p->k_norm_w + (size_t)l * D, NKV, s->pos, e->rope_cos, e->rope_sin, R, D, e->eps);
        cache_write(e, l, s->kn, s->v, R);
        size_t k_off = (size_t)l * 2 * bs * KD, v_off = k_off + bs * KD;
        attention_paged(s->att, s->qn, e->kv, s->row_blocks, s->pos, s->row_flash, R, NH, NKV, D,
                        e->block_size, e->block_stride, k_off, v_off);
        for (int i = 0; i < n_chunks; i++) {
            int r0 = s->row_of_chunk[i], n = chunks[i].n;
            if (!s->row_flash[r0]) continue;
            int32_t seq_start[2] = {0, n};
            attention_forward(s->att + (size_t)r0 * QD, s->lse + (size_t)r0 * NH, s->qn + (size_t)r0 * QD,
                              s->kn + (size_t)r0 * KD, s->v + (size_t)r0 * KD, s->seq_zero, seq_start, n, NH,
                              NKV, D);
        }
        linear(e, s->res2, s->att, p->wo + (size_t)l * C * QD, QD, C, chunks, n_chunks, n_small);
        /* TP: res2 holds this rank's heads' part of the o_proj output */
        if (e->group) comm_allreduce_sum_f32(e->group, s->res2, (size_t)R * C);

        /* MLP (its norm in one pass with the residual add) */
        residual_rmsnorm_forward(s->res2, s->x, s->ln, s->rstd, p->ln2_w + (size_t)l * C, R, C, e->eps);
        linear(e, s->gate, s->ln, p->wgate + (size_t)l * I * C, C, I, chunks, n_chunks, n_small);
        linear(e, s->up, s->ln, p->wup + (size_t)l * I * C, C, I, chunks, n_chunks, n_small);
        swiglu_forward(s->h, s->gate, s->up, (long)R * I);
        linear(e, s->x, s->h, p->wdown + (size_t)l * C * I, I, C, chunks, n_chunks, n_small);
        /* TP: x holds this rank's slice of the MLP's part of the output */
        if (e->group) comm_allreduce_sum_f32(e->group, s->x, (size_t)R * C);
        residual_add(s->x, s->res2, (long)R * C);
    }

    for (int i = 0; i < n_chunks; i++) e->kb.seqs[chunks[i].seq].len += chunks[i].n;
    if (!want_logits) return;

    /* Output head on each chunk's last row only. */
    for (int i = 0; i < n_chunks; i++) {
        memcpy(s->xl + (size_t)i * C, s->x + (size_t)s->last_row[i] * C, (size_t)C * sizeof(float));
    }
    rmsnorm_forward(s->xf, s->rstdf, s->xl, p->norm_w, n_chunks, C, e->eps);
    if (!e->group) {
        linear_rows(logits, s->xf, p->lm_head, n_chunks, C, V);
        return;
    }
    /* TP: each rank's vocabulary rows, gathered on the leader (which alone
     * samples) rank-major, then laid out row by row */
    int Vs = e->Vs, tp = e->group->size;
    linear_rows(s->lg, s->xf, p->lm_head, n_chunks, C, Vs);
    comm_gather_f32(e->group, s->lg, s->lg_all, (size_t)n_chunks * Vs, 0);
    if (!logits) return;
    for (int r = 0; r < tp; r++) {
        for (int i = 0; i < n_chunks; i++) {
            memcpy(logits + (size_t)i * V + (size_t)r * Vs, s->lg_all + ((size_t)r * n_chunks + i) * Vs,
                   (size_t)Vs * sizeof(float));
        }
    }
}

/* Leader: the forward's chunks to the followers, as (seq, n) pairs then
 * every chunk's ids. */
static void send_forward(InferEngine *e, const InferChunk *chunks, int n_chunks, bool want_logits) {
    size_t total = 0;
    for (int i = 0; i < n_chunks; i++) total += (size_t)chunks[i].n;
    size_t n = 2 * (size_t)n_chunks + total;
    if (e->op_cap < n) {
        e->op_cap = n;
        e->op_buf = xrealloc(e->op_buf, n * sizeof(int32_t));
    }
    int32_t *w = e->op_buf, *ids = w + 2 * (size_t)n_chunks;
    for (int i = 0; i < n_chunks; i++) {
        w[2 * i] = chunks[i].seq;
        w[2 * i + 1] = chunks[i].n;
        memcpy(ids, chunks[i].ids, (size_t)chunks[i].n * sizeof(int32_t));
        ids += chunks[i].n;
    }
    op_send(e->group, OP_FORWARD, n_chunks, (int)total, want_logits, 0);
    comm_broadcast(e->group, e->op_buf, n * sizeof(int32_t), 0);
}

int infer_forward(InferEngine *e, const InferChunk *chunks, int n_chunks, float *logits, char *err, size_t errlen) {
    if (n_chunks < 1) return err_set(err, errlen, "inference: forward with no chunks");
    if (check_chunks(e, chunks, n_chunks, err, errlen) != 0) return -1;
    if (e->lead) send_forward(e, chunks, n_chunks, logits != NULL);
    forward_local(e, chunks, n_chunks, logits != NULL, logits);
    return 0;
}

int infer_check_draws(const SampleParams *params, const double *u, int n_chunks, char *err, size_t errlen) {
    for (int i = 0; i < n_chunks; i++) {
        char why[256];
        if (sample_check_params(&params[i], why, sizeof why) != 0)
            return err_set(err, errlen, "inference: chunk %d: %s", i, why);
        if (!(u[i] >= 0.0 && u[i] < 1.0))
            return err_set(err, errlen, "inference: chunk %d: the draw u must be in [0, 1), got %g", i, u[i]);
    }
    return 0;
}

int infer_forward_sample(InferEngine *e, const InferChunk *chunks, int n_chunks, const SampleParams *params,
                         const double *u, int32_t *ids, float *logprobs, char *err, size_t errlen) {
    if (infer_check_draws(params, u, n_chunks, err, errlen) != 0) return -1;
    if (e->cap_sample_rows < n_chunks) {
        free(e->sample_logits);
        e->sample_logits = xmalloc((size_t)n_chunks * e->V * sizeof(float));
        e->cap_sample_rows = n_chunks;
    }
    if (infer_forward(e, chunks, n_chunks, e->sample_logits, err, errlen) != 0) return -1;
    int nt = omp_get_max_threads();
    if (e->n_samp < nt) {
        e->samp = xrealloc(e->samp, (size_t)nt * sizeof(SampleScratch));
        memset(e->samp + e->n_samp, 0, (size_t)(nt - e->n_samp) * sizeof(SampleScratch));
        e->n_samp = nt;
    }
    int V = e->V;
#pragma omp parallel for schedule(dynamic, 1)
    for (int j = 0; j < n_chunks; j++) {
        ids[j] = sample_token(e->sample_logits + (size_t)j * V, V, &params[j], u[j], &e->samp[omp_get_thread_num()],
                              &logprobs[j]);
    }
    return 0;
}

/* The generator's view of the CPU engine. */
static int cpu_seq_len(const void *engine, int seq) { return infer_seq_len(engine, seq); }
static int cpu_free_tokens(const void *engine) { return infer_free_tokens(engine); }
static int cpu_seq_new(void *engine, char *err, size_t errlen) { return infer_seq_new(engine, err, errlen); }
static int cpu_seq_fork(void *engine, int src, char *err, size_t errlen) {
    return infer_seq_fork(engine, src, err, errlen);
}
static void cpu_seq_free(void *engine, int seq) { infer_seq_free(engine, seq); }
static int cpu_forward(void *engine, const InferChunk *chunks, int n_chunks, float *logits, char *err, size_t errlen) {
    return infer_forward(engine, chunks, n_chunks, logits, err, errlen);
}

static int cpu_forward_sample(void *engine, const InferChunk *chunks, int n_chunks, const SampleParams *params,
                              const double *u, int32_t *ids, float *logprobs, char *err, size_t errlen) {
    return infer_forward_sample(engine, chunks, n_chunks, params, u, ids, logprobs, err, errlen);
}

InferBackend infer_backend(InferEngine *e) {
    return (InferBackend){.engine = e,
                          .max_len = e->max_len,
                          .block_size = e->block_size,
                          .seq_new = cpu_seq_new,
                          .seq_fork = cpu_seq_fork,
                          .seq_free = cpu_seq_free,
                          .seq_len = cpu_seq_len,
                          .free_tokens = cpu_free_tokens,
                          .forward = cpu_forward,
                          .forward_sample = cpu_forward_sample};
}

/* A follower's replay of one forward. */
static void follow_forward(InferEngine *e, int n_chunks, int total, bool want_logits) {
    size_t n = 2 * (size_t)n_chunks + (size_t)total;
    int32_t *buf = xmalloc(n * sizeof(int32_t));
    comm_broadcast(e->group, buf, n * sizeof(int32_t), 0);
    InferChunk *chunks = xmalloc((size_t)n_chunks * sizeof *chunks);
    const int32_t *ids = buf + 2 * (size_t)n_chunks;
    for (int i = 0; i < n_chunks; i++) {
        chunks[i] = (InferChunk){.seq = buf[2 * i], .ids = ids, .n = buf[2 * i + 1]};
        ids += chunks[i].n;
    }
    char err[512];
    if (check_chunks(e, chunks, n_chunks, err, sizeof err) != 0)
        die_runtime("inference follower (group rank %d): the leader's forward does not fit this replica: %s",
                    e->group->rank, err);
    forward_local(e, chunks, n_chunks, want_logits, NULL);
    free(chunks);
    free(buf);
}

int infer_follow(const Qwen3 *model, struct Comm *group, char *err, size_t errlen) {
    if (!group || group->size < 2 || group->rank == 0) {
        return err_set(err, errlen, "inference: infer_follow runs on ranks 1.. of a group of several ranks");
    }
    if (check_shard(model, group, err, errlen) != 0) return -1;
    InferEngine *e = NULL;
    for (;;) {
        int32_t m[OP_INTS];
        comm_broadcast(group, m, sizeof m, 0);
        int op = m[0];
        if (op == OP_END) break;
        if ((op == OP_NEW) == (e != NULL)) {
            die_runtime("inference follower (group rank %d): operation '%s' %s an engine", group->rank, op_name(op),
                        e ? "while running" : "without");
        }
        char why[512];
        switch (op) {
        case OP_NEW: {
            InferOptions o = {.kv_tokens = m[1], .block_size = m[2], .max_seqs = m[3], .max_len = m[4]};
            e = engine_create(model, &o, group, false);
            break;
        }
        case OP_SEQ_NEW:
            if (kv_seq_new(&e->kb, why, sizeof why) != m[1])
                die_runtime("inference follower (group rank %d): new sequence is not %d", group->rank, m[1]);
            break;
        case OP_SEQ_FORK:
            if (kv_seq_fork(&e->kb, m[1], why, sizeof why) != m[2])
                die_runtime("inference follower (group rank %d): fork of %d is not %d", group->rank, m[1], m[2]);
            break;
        case OP_SEQ_FREE: kv_seq_free(&e->kb, m[1]); break;
        case OP_FORWARD: follow_forward(e, m[1], m[2], m[3] != 0); break;
        case OP_FREE:
            engine_destroy(e);
            e = NULL;
            break;
        default: die_runtime("inference follower (group rank %d): unknown operation %d", group->rank, op);
        }
    }
    if (e) die_runtime("inference follower (group rank %d): the leader ended with an engine running", group->rank);
    return 0;
}

void infer_follow_end(struct Comm *group) {
    if (group && group->size > 1 && group->rank == 0) op_send(group, OP_END, 0, 0, 0, 0);
}

/* ================================================================ generation */

const char *infer_finish_name(InferFinish f) {
    switch (f) {
    case INFER_FINISH_STOP_ID: return "stop_id";
    case INFER_FINISH_STOP_STRING: return "stop_string";
    case INFER_FINISH_LENGTH: return "length";
    default: return "running";
    }
}

int infer_stop_string_match(const char *text, size_t len, size_t old_len, const char *const *stops, int n_stops) {
    for (int i = 0; i < n_stops; i++) {
        size_t sl = strlen(stops[i]);
        if (sl == 0 || sl > len) continue;
        /* a match must end after old_len: start at old_len - sl + 1 or later */
        size_t from = old_len + 1 > sl ? old_len + 1 - sl : 0;
        if (from + sl > len) continue;
        if (memmem(text + from, len - from, stops[i], sl)) return i;
    }
    return -1;
}

typedef struct {
    bool used;
    int seq;
    InferGenParams p;     /* stop lists point at the copies below */
    int32_t *stop_ids;
    char **stop_strings;
    int32_t *pending;     /* tokens to feed on the next step */
    int n_pending, cap_pending;
    int32_t *ids;
    float *logprobs;
    int n, cap;
    SBuf text;            /* bytes of the sampled ids (stop strings only) */
    InferFinish finish;
} GenReq;

struct InferGen {
    InferBackend b;
    const Tokenizer *tok;
    GenReq *reqs;
    int n_reqs, cap_reqs;
    /* per-step scratch */
    InferChunk *chunks;
    int *chunk_req;
    SampleParams *params;
    double *u;
    int32_t *toks;
    float *lps;
    int *fed;   /* (cap_step) tokens of each chunk's request fed this step */
    int cap_step;
    int step_tokens; /* pending tokens one step feeds at most (<= 0: all) */
};

InferGen *infer_gen_new_backend(const InferBackend *b, const Tokenizer *tok) {
    InferGen *g = xcalloc(1, sizeof *g);
    g->b = *b;
    g->tok = tok;
    g->step_tokens = INFER_DEFAULT_STEP_TOKENS;
    return g;
}

void infer_gen_set_step_tokens(InferGen *g, int max_tokens) {
    g->step_tokens = max_tokens == 0 ? INFER_DEFAULT_STEP_TOKENS : max_tokens;
}

InferGen *infer_gen_new(InferEngine *e, const Tokenizer *tok) {
    InferBackend b = infer_backend(e);
    return infer_gen_new_backend(&b, tok);
}

static void req_clear(GenReq *q) {
    free(q->stop_ids);
    for (int i = 0; i < q->p.n_stop_strings; i++) free(q->stop_strings[i]);
    free(q->stop_strings);
    free(q->pending);
    free(q->ids);
    free(q->logprobs);
    sbuf_free(&q->text);
    memset(q, 0, sizeof *q);
}

void infer_gen_free(InferGen *g) {
    if (!g) return;
    for (int i = 0; i < g->n_reqs; i++) {
        if (g->reqs[i].used) req_clear(&g->reqs[i]);
    }
    free(g->reqs);
    free(g->chunks);
    free(g->chunk_req);
    free(g->params);
    free(g->u);
    free(g->toks);
    free(g->lps);
    free(g->fed);
    free(g);
}

static void req_set_pending(GenReq *q, const int32_t *ids, int n) {
    if (q->cap_pending < n) {
        q->cap_pending = n;
        q->pending = xrealloc(q->pending, (size_t)n * sizeof(int32_t));
    }
    memcpy(q->pending, ids, (size_t)n * sizeof(int32_t));
    q->n_pending = n;
}

int infer_gen_add(InferGen *g, int seq, const int32_t *pending, int n_pending, const InferGenParams *p, char *err,
                  size_t errlen) {
    if (g->b.seq_len(g->b.engine, seq) < 0) return err_set(err, errlen, "generate: unknown sequence %d", seq);
    if (n_pending < 1) {
        return err_set(err, errlen, "generate: sequence %d: at least one pending token is needed (the last "
                                    "prompt token, or the last sampled one)", seq);
    }
    if (p->max_new_tokens < 1) {
        return err_set(err, errlen, "generate: max_new_tokens: expected an integer >= 1, got %d", p->max_new_tokens);
    }
    char serr[256];
    if (sample_check_params(&p->sample, serr, sizeof serr) != 0) return err_set(err, errlen, "generate: %s", serr);
    if (p->n_stop_strings > 0 && !g->tok) {
        return err_set(err, errlen, "generate: stop strings need a tokenizer to decode the sampled ids");
    }
    for (int i = 0; i < p->n_stop_strings; i++) {
        if (!p->stop_strings[i] || !p->stop_strings[i][0]) {
            return err_set(err, errlen, "generate: stop string %d is empty", i);
        }
    }
    for (int i = 0; i < g->n_reqs; i++) {
        if (g->reqs[i].used && g->reqs[i].seq == seq && g->reqs[i].finish == INFER_RUNNING) {
            return err_set(err, errlen, "generate: sequence %d is already in running request %d", seq, i);
        }
    }
    int id = -1;
    for (int i = 0; i < g->n_reqs; i++) {
        if (!g->reqs[i].used) {
            id = i;
            break;
        }
    }
    if (id < 0) {
        if (g->n_reqs == g->cap_reqs) {
            g->cap_reqs = g->cap_reqs ? 2 * g->cap_reqs : 16;
            g->reqs = xrealloc(g->reqs, (size_t)g->cap_reqs * sizeof(GenReq));
        }
        id = g->n_reqs++;
    }
    GenReq *q = &g->reqs[id];
    memset(q, 0, sizeof *q);
    q->used = true;
    q->seq = seq;
    q->p = *p;
    if (p->n_stop_ids > 0) {
        q->stop_ids = xmalloc((size_t)p->n_stop_ids * sizeof(int32_t));
        memcpy(q->stop_ids, p->stop_ids, (size_t)p->n_stop_ids * sizeof(int32_t));
    }
    q->p.stop_ids = q->stop_ids;
    if (p->n_stop_strings > 0) {
        q->stop_strings = xmalloc((size_t)p->n_stop_strings * sizeof(char *));
        for (int i = 0; i < p->n_stop_strings; i++) q->stop_strings[i] = xstrdup(p->stop_strings[i]);
    }
    q->p.stop_strings = (const char *const *)q->stop_strings;
    req_set_pending(q, pending, n_pending);
    sbuf_init(&q->text);
    q->finish = INFER_RUNNING;
    return id;
}

int infer_gen_running(const InferGen *g) {
    int n = 0;
    for (int i = 0; i < g->n_reqs; i++) n += g->reqs[i].used && g->reqs[i].finish == INFER_RUNNING;
    return n;
}

/* Record a sampled token and decide whether the request is done. */
static void req_accept(const InferGen *g, GenReq *q, int32_t tok, float lp) {
    if (q->n == q->cap) {
        q->cap = q->cap ? 2 * q->cap : 32;
        q->ids = xrealloc(q->ids, (size_t)q->cap * sizeof(int32_t));
        q->logprobs = xrealloc(q->logprobs, (size_t)q->cap * sizeof(float));
    }
    q->ids[q->n] = tok;
    q->logprobs[q->n] = lp;
    q->n++;
    for (int i = 0; i < q->p.n_stop_ids; i++) {
        if (q->stop_ids[i] == tok) {
            q->finish = INFER_FINISH_STOP_ID;
            return;
        }
    }
    if (q->p.n_stop_strings > 0) {
        size_t old = q->text.len, nb = 0;
        const char *bytes = tok_token_bytes(g->tok, tok, &nb);
        if (bytes && nb > 0) sbuf_put(&q->text, bytes, nb);
        if (q->text.len > old &&
            infer_stop_string_match(q->text.data, q->text.len, old, q->p.stop_strings, q->p.n_stop_strings) >= 0) {
            q->finish = INFER_FINISH_STOP_STRING;
            return;
        }
    }
    /* The next step would feed tok at position len: it must fit the context. */
    if (q->n >= q->p.max_new_tokens || g->b.seq_len(g->b.engine, q->seq) + 1 > g->b.max_len) {
        q->finish = INFER_FINISH_LENGTH;
        return;
    }
    req_set_pending(q, &tok, 1);
}

/* Which running requests the next step feeds, and how many of their
 * pending tokens (chunked prefill): every decoding request (one pending
 * token) first, then the others in request order while the step's budget
 * of step_tokens lasts, the last of them possibly in part. A step with no
 * decoding request feeds at least the first request's first tokens, so
 * every step makes progress; decoding requests are never held back, so a
 * step of many of them may pass the budget by their count. Fills
 * g->chunks, chunk_req, fed (and params, u for the requests fed whole);
 * returns the chunk count. */
static int step_plan(InferGen *g) {
    long left = g->step_tokens > 0 ? g->step_tokens : LONG_MAX;
    int b = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < g->n_reqs; i++) {
            GenReq *q = &g->reqs[i];
            if (!q->used || q->finish != INFER_RUNNING || (q->n_pending == 1) != (pass == 0)) continue;
            if (pass == 1 && left <= 0) break;
            int n = pass == 1 && q->n_pending > left ? (int)left : q->n_pending;
            left -= n;
            g->chunks[b] = (InferChunk){.seq = q->seq, .ids = q->pending, .n = n};
            g->chunk_req[b] = i;
            g->fed[b] = n;
            g->params[b] = q->p.sample;
            /* the token sampled now will sit at position len of its sequence
             * once the pending tokens are in the cache (a request fed in part
             * samples nothing that is kept) */
            uint64_t position = (uint64_t)g->b.seq_len(g->b.engine, q->seq) + (uint64_t)n;
            g->u[b] = rng_uniform(q->p.seed, q->p.stream, position);
            b++;
        }
    }
    return b;
}

int infer_gen_step(InferGen *g, char *err, size_t errlen) {
    int B = infer_gen_running(g);
    if (B == 0) return 0;
    if (g->cap_step < B) {
        g->cap_step = B;
        g->chunks = xrealloc(g->chunks, (size_t)B * sizeof(InferChunk));
        g->chunk_req = xrealloc(g->chunk_req, (size_t)B * sizeof(int));
        g->params = xrealloc(g->params, (size_t)B * sizeof(SampleParams));
        g->u = xrealloc(g->u, (size_t)B * sizeof(double));
        g->toks = xrealloc(g->toks, (size_t)B * sizeof(int32_t));
        g->lps = xrealloc(g->lps, (size_t)B * sizeof(float));
        g->fed = xrealloc(g->fed, (size_t)B * sizeof(int));
    }
    int n = step_plan(g);
    if (g->b.forward_sample(g->b.engine, g->chunks, n, g->params, g->u, g->toks, g->lps, err, errlen) != 0) return -1;
    for (int j = 0; j < n; j++) {
        GenReq *q = &g->reqs[g->chunk_req[j]];
        if (g->fed[j] == q->n_pending) {
            req_accept(g, q, g->toks[j], g->lps[j]);
        } else { /* fed in part: the rest waits for the next step, the draw is dropped */
            q->n_pending -= g->fed[j];
            memmove(q->pending, q->pending + g->fed[j], (size_t)q->n_pending * sizeof(int32_t));
        }
    }
    return infer_gen_running(g);
}

int infer_gen_prefill(InferGen *g, int seq, const int32_t *ids, int n, char *err, size_t errlen) {
    int piece = g->step_tokens > 0 ? g->step_tokens : n;
    for (int at = 0; at < n; at += piece) {
        InferChunk c = {.seq = seq, .ids = ids + at, .n = n - at < piece ? n - at : piece};
        if (g->b.forward(g->b.engine, &c, 1, NULL, err, errlen) != 0) return -1;
    }
    return 0;
}

InferGenResult infer_gen_result(const InferGen *g, int req) {
    InferGenResult r = {.seq = -1};
    if (req < 0 || req >= g->n_reqs || !g->reqs[req].used) return r;
    const GenReq *q = &g->reqs[req];
    r.seq = q->seq;
    r.ids = q->ids;
    r.logprobs = q->logprobs;
    r.n = q->n;
    r.finish = q->finish;
    return r;
}

void infer_gen_release(InferGen *g, int req) {
    if (req < 0 || req >= g->n_reqs || !g->reqs[req].used) return;
    req_clear(&g->reqs[req]);
}
