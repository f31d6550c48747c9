/* qwen3_gpu.c — the Qwen3 training step on one GPU (see qwen3_gpu.h).
 *
 * The same steps as qwen3.c, top to bottom, with each CPU layer function
 * replaced by its kernel twin of kernels/kernels.h: the CPU engine's fused
 * passes (q/k norm + RoPE, residual + norm, grouped products) are written
 * here as the kernels they stand for, in the order the CPU runs them.
 * Everything is queued on one stream; the host waits only where it reads a
 * result (the output head's per-row values once per forward, the gradient
 * norm once per step) or hands memory back.
 *
 * bf16 math: the fp32 master weights have a bf16 copy, refreshed after every
 * upload and written by the AdamW update itself. A product's activation
 * operand is written in bf16 by the kernel that computes it where nothing
 * else reads it (the norms' and SwiGLU's outputs, saved so; dgate, dup, dq
 * and dk, into the scratch below), else converted into one of two bf16
 * scratch buffers right before the product (stream order makes the reuse
 * safe).
 *
 * Tensor parallelism: the host model is this rank's shard (qwen3.h) and the
 * engine runs qwen3.c's sharded step, with each of its all-reduces (o/down
 * outputs, the embedding, the head's row statistics, the input gradients
 * of q/k/v and gate/up, the q/k-norm weight gradients, the gradient norm)
 * and its broadcast of the replicated weights queued on the engine's
 * stream through a NCCL comm of the TP group: no host round trip. */
#ifdef TAU2_HAVE_CUDA

#include "model/qwen3_gpu.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>

#include "comm/comm.h"
#include "core/error.h"
#include "kernels.h"
#include "model/gpu_mem.h"
#include "model/layers_cpu.h"

/* A saved activation that only matrix products read (the norms' outputs,
 * SwiGLU's): fp32 in fp32 math; in bf16 math only its bf16 rounding, the
 * operand the products take, written by the kernel that computes it (the
 * same bits as fp32 then cuda_f32_to_bf16, without that pass either way
 * or the fp32 copy). One of the two is set. */
typedef struct {
    float *f32;
    uint16_t *bf16;
} Operand;

/* One layer's saved activations on the device (T rows each), as qwen3.c's LayerActs. */
typedef struct {
    Operand ln1;                /* (T, C) */
    float *rstd1;               /* (T) */
    float *q, *k, *v;           /* (T, QD), (T, KD), (T, KD) before the q/k norms */
    float *q_rstd, *k_rstd;     /* (T, NH), (T, NKV) */
    float *qr, *kr;             /* normed and rotated */
    float *att, *att_lse;       /* (T, QD), (T, NH) */
    float *res2, *rstd2;        /* (T, C), (T) */
    Operand ln2;                /* (T, C) */
    float *gate, *up;           /* (T, I) */
    Operand h;                  /* (T, I) */
} GpuLayer;

/* Device activations and scratch for batches of up to T_cap tokens. */
typedef struct {
    int T_cap, chunk_cap;
    bool recompute; /* one slot of layer activations, shared by every layer */
    float *fmem;
    int32_t *imem;
    uint16_t *bmem; /* bf16 operands; NULL in fp32 math */
    uint16_t *omem; /* the layers' bf16 Operands; NULL in fp32 math */
    GpuLayer *layers; /* (L), host array of device pointers; when recomputing, all alike but att, att_lse */
    float *res;       /* (L + 1, T, C) */
    float *xf, *rstdf;
    float *logits;    /* (chunk, V) */
    float *rope_cos, *rope_sin; /* (T, D/2) */
    float *head_x, *head_dx;    /* (chunk, C) */
    /* per head row, in head-row order (T rows at most): [0, T) logprob
     * (forward) then dlogprob (backward), [T, 2T) dentropy, [2T, 3T) lse,
     * [3T, 4T) entropy; read back once per forward, dlogprob and dentropy
     * sent once per backward */
    float *head_vals; /* (4, T) */
    float *dres, *dln, *dqr, *datt, *dkr, *dv, *dh, *delta;
    /* the gradients only products read, as the backward's products take
     * them: in bf16 math written in bf16 by their kernels into the scratch
     * (dgate and dq in bf_a, dup and dk in bf_b) */
    Operand dgate, dup, dq, dk;
    /* TP only: the head's row max (chunk) and row sums (chunk, 3) while
     * they are reduced, and one layer's q/k-norm weight gradients (2, D) */
    float *lm_max, *dnorm;
    double *lm_stats;
    int32_t *tokens, *pos, *seq_of, *seq_start, *head_targets;
    uint16_t *bf_a, *bf_b;
    size_t bf_a_n, bf_b_n;
} GpuActs;

struct Qwen3Gpu {
    const Qwen3 *host; /* borrowed: config, shard, tensor table, vocab_chunk */
    Comm *tp;          /* NCCL over the host model's TP group (owned); NULL at TP 1 */
    Qwen3GpuMath math;
    int device;
    CudaDtype dt;
    cudaStream_t stream;
    CudaBlas *blas;

    float *params, *grads, *m, *v; /* (num_parameters) each; m and v from the first step */
    uint16_t *params_bf16;         /* bf16 copy of params (bf16 math) */
    Qwen3Params p, g;              /* device pointers, the host model's layout */
    int adam_step;
    double *sumsq;                 /* device scalars of the optimizer step */
    float *norm, *gscale;

    GpuActs *acts;
    bool offloaded; /* qwen3_gpu_offload gave the memory back: only onload and free may follow */
    /* the last forward's batch, host side */
    bool have_forward;
    int T, n_seqs, n_head, chunk;
    bool logits_kept; /* the forward's last chunk of logits is still in acts->logits */
    bool head_grad_done; /* qwen3_gpu_forward_head_grad did the head's backward: dxf is in acts->dln */
    int32_t *h_head_rows, *h_pos, *h_seq_of, *h_head_targets; /* (T_cap) each */
    float *h_rope;                  /* (2, T_cap, D/2) */
    float *h_head;                  /* (4, T_cap): head_vals' host side */
};

/* ------------------------------------------------------------ memory */

/* Host -> device, queued. CUDA stages a pageable source before the copy
 * runs, but promises no more than stream order: every caller has the stream
 * synchronized (an explicit sync, or the download that ends each forward)
 * before it writes the host buffer again. */
static void upload(Qwen3Gpu *g, void *dst, const void *src, size_t bytes) {
    if (bytes) cuda_check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, g->stream));
}

/* Device -> host; waits for the stream. */
static void download(const Qwen3Gpu *g, void *dst, const void *src, size_t bytes) {
    if (bytes) cuda_check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, g->stream));
    cuda_check(cudaStreamSynchronize(g->stream));
}

/* The device twin of a host parameter pointer: the same offset in base. */
static float *twin(float *base, const Qwen3 *m, const float *host_field) {
    return base + (host_field - m->params_memory);
}

static void point_params(Qwen3Params *d, float *base, const Qwen3 *m) {
    const Qwen3Params *h = &m->params;
    d->embed = twin(base, m, h->embed);
    d->ln1_w = twin(base, m, h->ln1_w);
    d->wq = twin(base, m, h->wq);
    d->wk = twin(base, m, h->wk);
    d->wv = twin(base, m, h->wv);
    d->q_norm_w = twin(base, m, h->q_norm_w);
    d->k_norm_w = twin(base, m, h->k_norm_w);
    d->wo = twin(base, m, h->wo);
    d->ln2_w = twin(base, m, h->ln2_w);
    d->wgate = twin(base, m, h->wgate);
    d->wup = twin(base, m, h->wup);
    d->wdown = twin(base, m, h->wdown);
    d->norm_w = twin(base, m, h->norm_w);
    d->lm_head = twin(base, m, h->lm_head); /* == embed when tied */
}

/* A weight as the products take it: the fp32 master, or its bf16 copy. */
static const void *weight(const Qwen3Gpu *g, const float *w) {
    if (g->math == QWEN3_GPU_F32) return w;
    return g->params_bf16 + (w - g->params);
}

/* An activation (n floats) as the products take it: itself, or converted
 * into the bf16 scratch buf (capacity cap). */
static const void *operand(Qwen3Gpu *g, uint16_t *buf, size_t cap, const float *x, size_t n) {
    if (g->math == QWEN3_GPU_F32) return x;
    if (n > cap) die_runtime("qwen3_gpu: bf16 operand of %zu values > scratch of %zu", n, cap);
    cuda_f32_to_bf16(buf, x, (long)n, g->stream);
    return buf;
}

static const void *op_a(Qwen3Gpu *g, const float *x, size_t n) { return operand(g, g->acts->bf_a, g->acts->bf_a_n, x, n); }
static const void *op_b(Qwen3Gpu *g, const float *x, size_t n) { return operand(g, g->acts->bf_b, g->acts->bf_b_n, x, n); }

/* A saved Operand as the products take it (no conversion: it is stored so). */
static const void *op_saved(const Operand *o) { return o->bf16 ? (const void *)o->bf16 : (const void *)o->f32; }

/* RMSNorm and SwiGLU into a saved Operand, in its dtype. */
static void norm_into(Qwen3Gpu *g, const Operand *out, float *rstd, const float *x, const float *w, int N, int C,
                      float eps) {
    if (out->bf16) cuda_rmsnorm_forward_bf16(out->bf16, rstd, x, w, N, C, eps, g->stream);
    else cuda_rmsnorm_forward(out->f32, rstd, x, w, N, C, eps, g->stream);
}
static void swiglu_into(Qwen3Gpu *g, const Operand *h, const float *gate, const float *up, long n) {
    if (h->bf16) cuda_swiglu_forward_bf16(h->bf16, gate, up, n, g->stream);
    else cuda_swiglu_forward(h->f32, gate, up, n, g->stream);
}

/* The backward's SwiGLU into gradient Operands, in their dtype. */
static void swiglu_backward_into(Qwen3Gpu *g, const Operand *dgate, const Operand *dup, const float *dh,
                                 const float *gate, const float *up, long n) {
    if (dgate->bf16) cuda_swiglu_backward_bf16(dgate->bf16, dup->bf16, dh, gate, up, n, g->stream);
    else cuda_swiglu_backward(dgate->f32, dup->f32, dh, gate, up, n, g->stream);
}
/* dqr and dkr (acts) back through RoPE and the q/k norms, into dq and dk. */
static void qk_backward_into(Qwen3Gpu *g, const Operand *dq, float *dq_w, const float *q, const float *q_w,
                             const float *q_rstd, const Operand *dk, float *dk_w, const float *k, const float *k_w,
                             const float *k_rstd) {
    GpuActs *A = g->acts;
    int NH = g->host->shard.num_heads, NKV = g->host->shard.num_kv_heads, D = g->host->config.head_dim;
    if (dq->bf16)
        cuda_qk_norm_rope_backward_bf16(dq->bf16, dq_w, A->dqr, q, q_w, q_rstd, NH, dk->bf16, dk_w, A->dkr, k, k_w,
                                        k_rstd, NKV, A->pos, A->rope_cos, A->rope_sin, g->T, D, g->stream);
    else
        cuda_qk_norm_rope_backward(dq->f32, dq_w, A->dqr, q, q_w, q_rstd, NH, dk->f32, dk_w, A->dkr, k, k_w, k_rstd,
                                   NKV, A->pos, A->rope_cos, A->rope_sin, g->T, D, g->stream);
}

static void refresh_bf16(Qwen3Gpu *g) {
    if (g->math == QWEN3_GPU_BF16) cuda_f32_to_bf16(g->params_bf16, g->params, (long)g->host->num_parameters, g->stream);
}

/* Every call that reads or writes the engine's memory: none exists while
 * it is offloaded, and a call then is a bug of the caller's order. */
static void require_onloaded(const Qwen3Gpu *g, const char *what) {
    if (g->offloaded) die_runtime("%s: the engine is offloaded (qwen3_gpu_onload comes first)", what);
}

/* ------------------------------------------------------------ activations */

static void acts_free(Qwen3Gpu *g) {
    GpuActs *a = g->acts;
    if (!a) return;
    cuda_check(cudaStreamSynchronize(g->stream));
    dev_free(a->fmem);
    dev_free(a->imem);
    dev_free(a->bmem);
    dev_free(a->omem);
    dev_free(a->lm_stats);
    free(a->layers);
    free(a);
    g->acts = NULL;
    free(g->h_head_rows), free(g->h_pos), free(g->h_seq_of), free(g->h_head_targets);
    free(g->h_rope), free(g->h_head);
}

/* n values of an Operand: from the bf16 arena *bit when there is one (bf16
 * math), else from the fp32 arena *it. */
static Operand operand_carve(float **it, uint16_t **bit, size_t n) {
    Operand o = {NULL, NULL};
    if (*bit) {
        o.bf16 = *bit;
        *bit += n;
    } else {
        o.f32 = carve(it, n);
    }
    return o;
}

/* A gradient Operand of n values: in bf16 math the bf16 scratch (NULL in
 * fp32 math) it shares with the other users of that scratch, which stream
 * order keeps apart; else n floats of the arena *it. */
static Operand grad_operand(float **it, uint16_t *scratch, size_t n) {
    Operand o = {NULL, scratch};
    if (!scratch) o.f32 = carve(it, n);
    return o;
}

/* The element counts of the device arenas for T tokens and head chunks of
 * `chunk` rows: acts_new carves exactly these, and qwen3_gpu_plan counts
 * them before any engine exists. */
typedef struct {
    size_t f32;            /* fmem */
    size_t bf_a, bf_b;     /* bmem: the two bf16 product scratches (bf16 math) */
    size_t operands;       /* omem: the layers' saved bf16 Operands (bf16 math) */
    size_t ints;           /* imem */
    size_t stats;          /* lm_stats doubles (TP only) */
} ActsSizes;

/* The rows the arenas hold for T tokens (or a head chunk of T rows): a
 * multiple of 8, so that every tensor carved from them starts 16-byte
 * aligned (32 bytes in the fp32 arena) whatever T is: the kernels' vector
 * loads and stores (attention_mma.cu's float2 rows, the 16-byte tile loads)
 * need it, and an odd T would otherwise shift every tensor after a (T) one. */
static size_t acts_rows(int T) { return ((size_t)T + 7) / 8 * 8; }

static ActsSizes acts_sizes(const Qwen3Config *c, const Qwen3Shard *sh, int T, int chunk, bool recompute, bool bf16) {
    size_t C = c->hidden_size, I = sh->intermediate_size, V = sh->vocab_size, L = c->num_layers;
    size_t NH = sh->num_heads, NKV = sh->num_kv_heads, D = c->head_dim;
    size_t QD = NH * D, KD = NKV * D, t = acts_rows(T), ch = acts_rows(chunk);
    size_t slots = recompute ? 1 : L;
    /* the attention's output and lse are kept for every layer, recomputing
     * or not (the backward's recomputation skips the attention itself) */
    size_t per_layer_operands = t * (2 * C + I); /* ln1, ln2, h */
    size_t per_layer = t * (1 + QD + 2 * KD + NH + NKV + QD + KD + C + 1 + 2 * I) + (bf16 ? 0 : per_layer_operands);
    size_t per_layer_kept = t * (QD + NH);
    size_t grad_operands = t * (QD + KD + 2 * I); /* dq, dk, dgate, dup */
    ActsSizes z = {0};
    z.f32 = slots * per_layer + L * per_layer_kept + (L + 1) * t * C + t * C + t + ch * V + t * D + 2 * ch * C +
            4 * t + 2 * t * C + 2 * t * QD + 2 * t * KD + t * I + t * NH + ch + 2 * D + (bf16 ? 0 : grad_operands);
    if (bf16) {
        /* bf_a: the dout of a product (dlogits, or a (T, width) gradient);
         * bf_b: its activation input, or a second gradient */
        z.bf_a = max_z(ch * V, t * max_z(max_z(C, QD), I));
        z.bf_b = t * max_z(max_z(C, QD), I);
        z.operands = slots * per_layer_operands;
    }
    z.ints = 5 * t + 1;
    z.stats = sh->size > 1 ? 3 * ch : 0;
    return z;
}

static size_t acts_bytes(const ActsSizes *z) {
    return z->f32 * sizeof(float) + (z->bf_a + z->bf_b + z->operands) * sizeof(uint16_t) + z->ints * sizeof(int32_t) +
           z->stats * sizeof(double);
}

/* Device arenas for T tokens and head chunks of `chunk` rows, with their
 * host staging arrays. recompute: one slot of layer activations for all
 * the layers but the attention's output and lse (qwen3.c's activation
 * recomputation). */
static void acts_new(Qwen3Gpu *g, int T, int chunk, bool recompute) {
    const Qwen3Config *c = &g->host->config;
    const Qwen3Shard *sh = &g->host->shard;
    size_t C = c->hidden_size, I = sh->intermediate_size, V = sh->vocab_size, L = c->num_layers;
    size_t NH = sh->num_heads, NKV = sh->num_kv_heads, D = c->head_dim;
    size_t QD = NH * D, KD = NKV * D, t = acts_rows(T), ch = acts_rows(chunk);
    GpuActs *a = xcalloc(1, sizeof *a);
    a->T_cap = (int)t;
    a->chunk_cap = (int)ch;
    a->recompute = recompute;
    size_t slots = recompute ? 1 : L;
    bool bf16 = g->math == QWEN3_GPU_BF16;
    ActsSizes z = acts_sizes(c, sh, T, chunk, recompute, bf16);
    a->fmem = dev_alloc(z.f32 * sizeof(float));
    float *it = a->fmem;
    if (bf16) {
        a->bf_a_n = z.bf_a;
        a->bf_b_n = z.bf_b;
        a->bmem = dev_alloc((a->bf_a_n + a->bf_b_n) * sizeof(uint16_t));
        a->bf_a = a->bmem;
        a->bf_b = a->bmem + a->bf_a_n;
        a->omem = dev_alloc(z.operands * sizeof(uint16_t));
    }
    uint16_t *bit = a->omem;
    a->layers = xcalloc(L, sizeof *a->layers);
    for (size_t l = 0; l < slots; l++) {
        GpuLayer *y = &a->layers[l];
        y->ln1 = operand_carve(&it, &bit, t * C);
        y->rstd1 = carve(&it, t);
        y->q = carve(&it, t * QD);
        y->k = carve(&it, t * KD);
        y->v = carve(&it, t * KD);
        y->q_rstd = carve(&it, t * NH);
        y->k_rstd = carve(&it, t * NKV);
        y->qr = carve(&it, t * QD);
        y->kr = carve(&it, t * KD);
        y->res2 = carve(&it, t * C);
        y->ln2 = operand_carve(&it, &bit, t * C);
        y->rstd2 = carve(&it, t);
        y->gate = carve(&it, t * I);
        y->up = carve(&it, t * I);
        y->h = operand_carve(&it, &bit, t * I);
    }
    for (size_t l = slots; l < L; l++) a->layers[l] = a->layers[0];
    for (size_t l = 0; l < L; l++) {
        a->layers[l].att = carve(&it, t * QD);
        a->layers[l].att_lse = carve(&it, t * NH);
    }
    a->res = carve(&it, (L + 1) * t * C);
    a->xf = carve(&it, t * C);
    a->rstdf = carve(&it, t);
    a->logits = carve(&it, ch * V);
    a->rope_cos = carve(&it, t * D / 2);
    a->rope_sin = carve(&it, t * D / 2);
    a->head_x = carve(&it, ch * C);
    a->head_dx = carve(&it, ch * C);
    a->head_vals = carve(&it, 4 * t);
    a->dres = carve(&it, t * C);
    a->dln = carve(&it, t * C);
    a->dqr = carve(&it, t * QD);
    a->datt = carve(&it, t * QD);
    a->dkr = carve(&it, t * KD);
    a->dv = carve(&it, t * KD);
    a->dh = carve(&it, t * I);
    a->dgate = grad_operand(&it, a->bf_a, t * I);
    a->dup = grad_operand(&it, a->bf_b, t * I);
    a->dq = grad_operand(&it, a->bf_a, t * QD);
    a->dk = grad_operand(&it, a->bf_b, t * KD);
    a->delta = carve(&it, t * NH);
    a->lm_max = carve(&it, ch);
    a->dnorm = carve(&it, 2 * D);
    if ((size_t)(it - a->fmem) != z.f32 || (size_t)(bit - a->omem) != z.operands)
        die_runtime("qwen3_gpu: activation arena size mismatch");

    a->imem = dev_alloc(z.ints * sizeof(int32_t));
    a->tokens = a->imem;
    a->pos = a->tokens + t;
    a->seq_of = a->pos + t;
    a->seq_start = a->seq_of + t; /* n_seqs + 1 <= T + 1 */
    a->head_targets = a->seq_start + t + 1; /* (T) */
    if (z.stats) a->lm_stats = dev_alloc(z.stats * sizeof(double));
    g->acts = a;
    g->h_head_rows = xmalloc(t * sizeof(int32_t));
    g->h_pos = xmalloc(t * sizeof(int32_t));
    g->h_seq_of = xmalloc(t * sizeof(int32_t));
    g->h_head_targets = xmalloc(t * sizeof(int32_t));
    g->h_rope = xmalloc(t * D * sizeof(float));
    g->h_head = xmalloc(4 * t * sizeof(float));
}

/* ------------------------------------------------------------ plan */

int qwen3_gpu_vocab_chunk(int vocab_shard) { return qwen3_vocab_chunk_within(vocab_shard, QWEN3_GPU_LOGITS_BYTES); }

/* The step's device scalars: the gradient's sum of squares, its norm and
 * the clip scale. */
static const size_t STEP_SCALAR_BYTES = sizeof(double) + 2 * sizeof(float);

void qwen3_gpu_plan(const Qwen3Config *c, int tp, int T, bool recompute, Qwen3GpuMath math, bool train,
                    Qwen3GpuPlan *out) {
    Qwen3Shard sh;
    qwen3_shard_init(&sh, c, tp, 0);
    size_t n = qwen3_shard_num_parameters(c, tp);
    bool bf16 = math == QWEN3_GPU_BF16;
    int chunk = qwen3_gpu_vocab_chunk(sh.vocab_size);
    if (chunk > T) chunk = T;
    ActsSizes z = acts_sizes(c, &sh, T, chunk, recompute, bf16);
    memset(out, 0, sizeof *out);
    out->weights = n * (sizeof(float) + (bf16 ? sizeof(uint16_t) : 0));
    out->train_state = train ? 3 * n * sizeof(float) : 0;
    out->activations = acts_bytes(&z);
    out->workspace = CUDA_BLAS_BYTES + STEP_SCALAR_BYTES;
    /* the pool: the attention's bf16 copies (forward, or backward with its
     * per-head dk and dv), the norms' weight gradients (the layer norms
     * over T rows of C, the q/k norms over T rows of each head) and the
     * gradient norm's partial sums (per tensor, none larger than the
     * shard). Each family's largest, added: the pool may keep them apart. */
    int D = c->head_dim, NH = sh.num_heads, NKV = sh.num_kv_heads;
    CudaDtype dt = bf16 ? CUDA_BF16 : CUDA_F32;
    out->pool = cuda_attention_scratch_bytes(T, NH, NKV, D, dt, train);
    if (train) {
        size_t dw = max_z(cuda_rmsnorm_backward_dw_scratch_bytes(T, c->hidden_size),
                          max_z(cuda_rmsnorm_backward_dw_scratch_bytes(T * NH, D),
                                cuda_rmsnorm_backward_dw_scratch_bytes(T * NKV, D)));
        out->pool += dw + cuda_sum_squares_scratch_bytes(n);
    }
}

size_t qwen3_gpu_plan_total(const Qwen3GpuPlan *p) {
    return p->weights + p->train_state + p->activations + p->workspace + p->pool;
}

/* ------------------------------------------------------------ engine */

/* The fp32 master weights and their bf16 copy (bf16 math), uninitialized. */
static void weights_alloc(Qwen3Gpu *g) {
    size_t n = g->host->num_parameters;
    g->params = dev_alloc(n * sizeof(float));
    if (g->math == QWEN3_GPU_BF16) g->params_bf16 = dev_alloc(n * sizeof(uint16_t));
    point_params(&g->p, g->params, g->host);
}

Qwen3Gpu *qwen3_gpu_new(const Qwen3 *m, int device, Qwen3GpuMath math) {
    if (m->config.head_dim > CUDA_ATT_MAX_D) {
        die_runtime("qwen3_gpu_new: head_dim %d > %d, the attention kernels' limit", m->config.head_dim,
                    CUDA_ATT_MAX_D);
    }
    int n_dev = cuda_device_count();
    if (device < 0 || device >= n_dev) {
        die_runtime("qwen3_gpu_new: CUDA device %d requested, %d present", device, n_dev);
    }
    cuda_device_init(device);
    Qwen3Gpu *g = xcalloc(1, sizeof *g);
    g->host = m;
    g->math = math;
    g->device = device;
    g->dt = math == QWEN3_GPU_F32 ? CUDA_F32 : CUDA_BF16;
    cuda_check(cudaStreamCreateWithFlags(&g->stream, cudaStreamNonBlocking));
    /* collective over the TP group: every rank makes its engine together */
    if (m->tp) g->tp = comm_nccl_from_mpi(m->tp);
    g->blas = cuda_blas_new();
    weights_alloc(g);
    g->sumsq = dev_alloc(sizeof(double)); /* STEP_SCALAR_BYTES */
    g->norm = dev_alloc(sizeof(float));
    g->gscale = dev_alloc(sizeof(float));
    qwen3_gpu_upload_params(g, m->params_memory);
    return g;
}

void qwen3_gpu_free(Qwen3Gpu *g) {
    if (!g) return;
    acts_free(g);
    cuda_check(cudaStreamSynchronize(g->stream));
    dev_free(g->params);
    dev_free(g->grads);
    dev_free(g->m);
    dev_free(g->v);
    dev_free(g->params_bf16);
    dev_free(g->sumsq);
    dev_free(g->norm);
    dev_free(g->gscale);
    cuda_blas_free(g->blas);
    cuda_check(cudaStreamDestroy(g->stream));
    comm_free(g->tp);
    free(g);
}

const float *qwen3_gpu_params_device(const Qwen3Gpu *g) { return g->params; }
int qwen3_gpu_device(const Qwen3Gpu *g) { return g->device; }

void qwen3_gpu_upload_params(Qwen3Gpu *g, const float *params) {
    require_onloaded(g, "qwen3_gpu_upload_params");
    upload(g, g->params, params, g->host->num_parameters * sizeof(float));
    refresh_bf16(g);
    cuda_check(cudaStreamSynchronize(g->stream));
}

void qwen3_gpu_download_params(const Qwen3Gpu *g, float *params) {
    require_onloaded(g, "qwen3_gpu_download_params");
    download(g, params, g->params, g->host->num_parameters * sizeof(float));
}

/* The gradients' memory, allocated zeroed on first use: an engine that only
 * runs forward passes (the KL reference) never holds it. */
static void grads_ensure(Qwen3Gpu *g) {
    require_onloaded(g, "qwen3_gpu (gradients)");
    if (g->grads) return;
    size_t bytes = g->host->num_parameters * sizeof(float);
    g->grads = dev_alloc(bytes);
    cuda_check(cudaMemsetAsync(g->grads, 0, bytes, g->stream));
    point_params(&g->g, g->grads, g->host);
}

void qwen3_gpu_download_grads(Qwen3Gpu *g, float *grads) {
    grads_ensure(g);
    download(g, grads, g->grads, g->host->num_parameters * sizeof(float));
}

void qwen3_gpu_upload_grads(Qwen3Gpu *g, const float *grads) {
    grads_ensure(g);
    upload(g, g->grads, grads, g->host->num_parameters * sizeof(float));
    cuda_check(cudaStreamSynchronize(g->stream));
}

void qwen3_gpu_allreduce_grads(Qwen3Gpu *g, Comm *dp) {
    grads_ensure(g);
    comm_nccl_allreduce_on(dp, g->grads, g->host->num_parameters, COMM_F32, COMM_SUM, g->stream);
}

/* AdamW's moments, allocated zeroed on first use. */
static void moments_ensure(Qwen3Gpu *g) {
    require_onloaded(g, "qwen3_gpu (moments)");
    if (g->m) return;
    size_t bytes = g->host->num_parameters * sizeof(float);
    g->m = dev_alloc(bytes);
    g->v = dev_alloc(bytes);
    cuda_check(cudaMemsetAsync(g->m, 0, bytes, g->stream));
    cuda_check(cudaMemsetAsync(g->v, 0, bytes, g->stream));
}

bool qwen3_gpu_download_moments(const Qwen3Gpu *g, float *m, float *v, int *adam_step) {
    require_onloaded(g, "qwen3_gpu_download_moments");
    *adam_step = g->adam_step;
    if (!g->m) return false;
    size_t bytes = g->host->num_parameters * sizeof(float);
    download(g, m, g->m, bytes);
    download(g, v, g->v, bytes);
    return true;
}

void qwen3_gpu_upload_moments(Qwen3Gpu *g, const float *m, const float *v, int adam_step) {
    moments_ensure(g);
    size_t bytes = g->host->num_parameters * sizeof(float);
    upload(g, g->m, m, bytes);
    upload(g, g->v, v, bytes);
    g->adam_step = adam_step;
    cuda_check(cudaStreamSynchronize(g->stream));
}

/* ------------------------------------------------------------ offload */

void qwen3_gpu_offload(Qwen3Gpu *g, float *m_host, float *v_host) {
    if (g->offloaded) return;
    if (g->m && (!m_host || !v_host)) die_runtime("qwen3_gpu_offload: the engine has moments and nowhere to put them");
    cuda_check(cudaSetDevice(g->device)); /* the pool trimmed below is the current device's */
    acts_free(g); /* synchronizes */
    if (g->m) {
        size_t bytes = g->host->num_parameters * sizeof(float);
        download(g, m_host, g->m, bytes);
        download(g, v_host, g->v, bytes);
    }
    dev_free(g->params), dev_free(g->params_bf16), dev_free(g->grads), dev_free(g->m), dev_free(g->v);
    g->params = g->grads = g->m = g->v = NULL;
    g->params_bf16 = NULL;
    memset(&g->p, 0, sizeof g->p);
    memset(&g->g, 0, sizeof g->g);
    g->have_forward = g->logits_kept = g->head_grad_done = false;
    g->offloaded = true;
    /* the kernels' pool scratch goes too: the next engine allocates with cudaMalloc */
    cuda_pool_trim();
}

void qwen3_gpu_onload(Qwen3Gpu *g, const float *params, const float *m_host, const float *v_host) {
    if (!g->offloaded) die_runtime("qwen3_gpu_onload: the engine is not offloaded");
    g->offloaded = false;
    weights_alloc(g);
    qwen3_gpu_upload_params(g, params);
    if (m_host) qwen3_gpu_upload_moments(g, m_host, v_host, g->adam_step);
}

bool qwen3_gpu_is_offloaded(const Qwen3Gpu *g) { return g->offloaded; }

/* ------------------------------------------------------------ forward */

/* rows[0..R) of src (row length C) into rows 0..R of dst (gather), or rows
 * 0..R of src into rows[0..R) of dst (scatter): one copy per run of
 * consecutive rows (a head mask is a few spans of assistant tokens). */
static void copy_rows(Qwen3Gpu *g, float *dst, const float *src, const int32_t *rows, int R, int C, bool scatter) {
    size_t row = (size_t)C * sizeof(float);
    for (int r0 = 0; r0 < R;) {
        int r1 = r0 + 1;
        while (r1 < R && rows[r1] == rows[r1 - 1] + 1) r1++;
        float *d = scatter ? dst + (size_t)rows[r0] * C : dst + (size_t)r0 * C;
        const float *s = scatter ? src + (size_t)r0 * C : src + (size_t)rows[r0] * C;
        cuda_check(cudaMemcpyAsync(d, s, (size_t)(r1 - r0) * row, cudaMemcpyDeviceToDevice, g->stream));
        r0 = r1;
    }
}

/* The final-norm rows of one head chunk: xf itself when they are
 * consecutive, else gathered into head_x. */
static const float *head_gather(Qwen3Gpu *g, const int32_t *rows, int R, int C) {
    GpuActs *A = g->acts;
    if (rows[R - 1] - rows[0] == R - 1) return A->xf + (size_t)rows[0] * C;
    copy_rows(g, A->head_x, A->xf, rows, R, C, false);
    return A->head_x;
}

/* TP: buf (n floats) summed over the TP ranks, queued on the stream. */
static void tp_sum(Qwen3Gpu *g, float *buf, size_t n) {
    if (g->tp) comm_nccl_allreduce_on(g->tp, buf, n, COMM_F32, COMM_SUM, g->stream);
}

/* One transformer block: x_out = block(x_in), saving activations into a.
 * x_out NULL: the backward's recomputation of the activations, which stops
 * where the layer's backward stops needing them: a->att and a->att_lse
 * still hold this layer's attention (kept for every layer), and the down
 * projection's output is the next layer's input, already in acts->res. */
static void layer_forward(Qwen3Gpu *g, int l, const GpuLayer *a, const float *x_in /* (T, C) */,
                          float *x_out /* (T, C) or NULL */) {
    const Qwen3Config *c = &g->host->config;
    const Qwen3Params *p = &g->p;
    GpuActs *A = g->acts;
    cudaStream_t s = g->stream;
    const Qwen3Shard *sh = &g->host->shard;
    int T = g->T, C = c->hidden_size, I = sh->intermediate_size, NH = sh->num_heads, NKV = sh->num_kv_heads;
    int D = c->head_dim, QD = NH * D, KD = NKV * D;
    float eps = c->rms_norm_eps;

    /* attention */
    norm_into(g, &a->ln1, a->rstd1, x_in, p->ln1_w + (size_t)l * C, T, C, eps);
    const void *ln1 = op_saved(&a->ln1);
    cuda_matmul_forward(g->blas, a->q, ln1, weight(g, p->wq + (size_t)l * QD * C), g->dt, T, C, QD, s);
    cuda_matmul_forward(g->blas, a->k, ln1, weight(g, p->wk + (size_t)l * KD * C), g->dt, T, C, KD, s);
    cuda_matmul_forward(g->blas, a->v, ln1, weight(g, p->wv + (size_t)l * KD * C), g->dt, T, C, KD, s);
    /* per-head q/k RMSNorm (rows of D), then RoPE */
    cuda_qk_norm_rope_forward(a->qr, a->q_rstd, a->q, p->q_norm_w + (size_t)l * D, NH, a->kr, a->k_rstd, a->k,
                              p->k_norm_w + (size_t)l * D, NKV, A->pos, A->rope_cos, A->rope_sin, T, D, eps, s);
    if (x_out)
        cuda_attention_forward(a->att, a->att_lse, a->qr, a->kr, a->v, A->seq_of, A->seq_start, T, NH, NKV, D, g->dt,
                               s);
    cuda_matmul_forward(g->blas, a->res2, op_b(g, a->att, (size_t)T * QD), weight(g, p->wo + (size_t)l * C * QD),
                        g->dt, T, QD, C, s);
    tp_sum(g, a->res2, (size_t)T * C); /* TP: each rank's heads' share of o_proj */

    /* MLP: residual, then its norm (residual_rmsnorm_forward) */
    cuda_residual_add(a->res2, x_in, (long)T * C, s);
    norm_into(g, &a->ln2, a->rstd2, a->res2, p->ln2_w + (size_t)l * C, T, C, eps);
    const void *ln2 = op_saved(&a->ln2);
    cuda_matmul_forward(g->blas, a->gate, ln2, weight(g, p->wgate + (size_t)l * I * C), g->dt, T, C, I, s);
    cuda_matmul_forward(g->blas, a->up, ln2, weight(g, p->wup + (size_t)l * I * C), g->dt, T, C, I, s);
    swiglu_into(g, &a->h, a->gate, a->up, (long)T * I);
    if (!x_out) return;
    cuda_matmul_forward(g->blas, x_out, op_saved(&a->h), weight(g, p->wdown + (size_t)l * C * I), g->dt,
                        T, I, C, s);
    tp_sum(g, x_out, (size_t)T * C); /* TP: each rank's MLP slice's share of down_proj */
    cuda_residual_add(x_out, a->res2, (long)T * C, s);
}

/* The forward up to the final norm's output (acts->xf), with the batch's
 * host-side tables (positions, head rows and targets) sent. */
static void forward_trunk(Qwen3Gpu *g, const Qwen3Batch *b) {
    require_onloaded(g, "qwen3_gpu_forward");
    const Qwen3 *m = g->host;
    char err[256];
    if (qwen3_check_batch(m, b, err, sizeof err) != 0) die_runtime("qwen3_gpu_forward: %s", err);
    const Qwen3Config *c = &m->config;
    const Qwen3Params *p = &g->p;
    int T = b->T, C = c->hidden_size, V = m->shard.vocab_size, L = c->num_layers, D = c->head_dim;
    int v0 = m->shard.vocab_start;
    if (m->vocab_chunk < 1) die_runtime("qwen3_gpu_forward: vocab_chunk must be positive");
    int chunk = m->vocab_chunk < T ? m->vocab_chunk : T;
    if (!g->acts || g->acts->T_cap < T || g->acts->chunk_cap < chunk || g->acts->recompute != m->recompute) {
        acts_free(g);
        acts_new(g, T, chunk, m->recompute);
    }
    GpuActs *A = g->acts;
    cudaStream_t s = g->stream;
    g->T = T;
    g->n_seqs = b->n_seqs;
    g->chunk = chunk;

    /* positions, sequence ids, RoPE tables and the head rows' targets on
     * the host, then sent */
    int max_len = qwen3_batch_positions(b, g->h_pos, g->h_seq_of);
    float *cosb = g->h_rope, *sinb = g->h_rope + (size_t)max_len * D / 2;
    rope_tables(cosb, sinb, max_len, D, c->rope_theta);
    g->n_head = qwen3_head_rows(b, g->h_head_rows);
    for (int r = 0; r < g->n_head; r++) g->h_head_targets[r] = b->targets[g->h_head_rows[r]];
    upload(g, A->head_targets, g->h_head_targets, (size_t)g->n_head * sizeof(int32_t));
    upload(g, A->tokens, b->tokens, (size_t)T * sizeof(int32_t));
    upload(g, A->pos, g->h_pos, (size_t)T * sizeof(int32_t));
    upload(g, A->seq_of, g->h_seq_of, (size_t)T * sizeof(int32_t));
    upload(g, A->seq_start, b->seq_start, (size_t)(b->n_seqs + 1) * sizeof(int32_t));
    upload(g, A->rope_cos, cosb, (size_t)max_len * D / 2 * sizeof(float));
    upload(g, A->rope_sin, sinb, (size_t)max_len * D / 2 * sizeof(float));

    if (g->tp) { /* vocab-parallel: each token's row from one rank, zeros elsewhere */
        cuda_embedding_forward_shard(A->res, A->tokens, p->embed, T, C, v0, V, s);
        tp_sum(g, A->res, (size_t)T * C);
    } else {
        cuda_embedding_forward(A->res, A->tokens, p->embed, T, C, s);
    }
    for (int l = 0; l < L; l++) layer_forward(g, l, &A->layers[l], A->res + (size_t)l * T * C,
                                              A->res + (size_t)(l + 1) * T * C);
    cuda_rmsnorm_forward(A->xf, A->rstdf, A->res + (size_t)L * T * C, p->norm_w, T, C, c->rms_norm_eps, s);
    g->logits_kept = false;
    g->head_grad_done = false;
    g->have_forward = true;
}

/* The head's rows x (R, C; bf16 or fp32 as the step's products) of chunk
 * rows [i0, i0 + R): logits into acts->logits, and each row's logprob,
 * lse and entropy at i0 in head_vals (lp at 0, lse at 2T, entropy at 3T). */
static void head_chunk_forward(Qwen3Gpu *g, int i0, int R, const void *x) {
    GpuActs *A = g->acts;
    cudaStream_t s = g->stream;
    int T = g->T, C = g->host->config.hidden_size, V = g->host->shard.vocab_size, v0 = g->host->shard.vocab_start;
    float *lp = A->head_vals, *lse = lp + 2 * T, *ent = lp + 3 * T;
    cuda_matmul_forward(g->blas, A->logits, x, weight(g, g->p.lm_head), g->dt, R, C, V, s);
    if (g->tp) { /* vocab-parallel softmax: reduce the row statistics, not the logits */
        cuda_vocab_row_max(A->lm_max, A->logits, R, V, s);
        comm_nccl_allreduce_on(g->tp, A->lm_max, (size_t)R, COMM_F32, COMM_MAX, s);
        cuda_logprob_entropy_partial(A->lm_stats, A->logits, A->head_targets + i0, A->lm_max, R, V, v0, s);
        comm_nccl_allreduce_on(g->tp, A->lm_stats, 3 * (size_t)R, COMM_F64, COMM_SUM, s);
        cuda_logprob_entropy_finish(lp + i0, ent + i0, lse + i0, A->lm_stats, A->lm_max, A->head_targets + i0, R, s);
    } else {
        cuda_logprob_entropy_forward(lp + i0, ent + i0, lse + i0, A->logits, A->head_targets + i0, R, V, s);
    }
}

/* The head's backward for chunk rows [i0, i0 + R) whose logits are in
 * acts->logits: dlogits in their place, then the chunk's rows of dxf =
 * dlogits @ W and dW += dlogits^T @ x. dlp and dent (device, per head row,
 * dent may be NULL) hold the gradients from i0; lse and entropy are the
 * forward's in head_vals. */
static void head_chunk_backward(Qwen3Gpu *g, int i0, int R, const void *x, float *dxf /* (T, C) */,
                                const float *dlp, const float *dent) {
    GpuActs *A = g->acts;
    cudaStream_t s = g->stream;
    int T = g->T, C = g->host->config.hidden_size, V = g->host->shard.vocab_size, v0 = g->host->shard.vocab_start;
    const float *lse = A->head_vals + 2 * T, *ent = A->head_vals + 3 * T;
    if (g->tp) {
        cuda_logprob_entropy_backward_shard(A->logits, dlp + i0, dent ? dent + i0 : NULL, lse + i0, ent + i0,
                                            A->head_targets + i0, R, V, v0, s);
    } else {
        cuda_logprob_entropy_backward(A->logits, dlp + i0, dent ? dent + i0 : NULL, lse + i0, ent + i0,
                                      A->head_targets + i0, R, V, s);
    }
    cuda_matmul_backward(g->blas, A->head_dx, g->g.lm_head, op_a(g, A->logits, (size_t)R * V), x,
                         weight(g, g->p.lm_head), g->dt, R, C, V, false, s);
    copy_rows(g, dxf, A->head_dx, g->h_head_rows + i0, R, C, true);
}

void qwen3_gpu_forward(Qwen3Gpu *g, const Qwen3Batch *b, float *logprob, float *entropy) {
    forward_trunk(g, b);
    GpuActs *A = g->acts;
    int T = g->T, C = g->host->config.hidden_size, chunk = g->chunk;

    /* output head over the rows that need it, in chunks (qwen3_forward);
     * each chunk's per-row values land at its rows' offset in head_vals */
    for (int i0 = 0; i0 < g->n_head; i0 += chunk) {
        int R = g->n_head - i0 < chunk ? g->n_head - i0 : chunk;
        const float *x = head_gather(g, g->h_head_rows + i0, R, C);
        head_chunk_forward(g, i0, R, op_b(g, x, (size_t)R * C));
    }
    download(g, g->h_head, A->head_vals, 4 * (size_t)T * sizeof(float));
    const float *h_lp = g->h_head, *h_ent = g->h_head + 3 * T;
    memset(logprob, 0, (size_t)T * sizeof(float));
    memset(entropy, 0, (size_t)T * sizeof(float));
    for (int r = 0; r < g->n_head; r++) {
        logprob[g->h_head_rows[r]] = h_lp[r];
        entropy[g->h_head_rows[r]] = h_ent[r];
    }
    g->logits_kept = g->n_head > 0;
}

void qwen3_gpu_forward_head_grad(Qwen3Gpu *g, const Qwen3Batch *b, float *logprob, float *entropy,
                                 Qwen3HeadGradFn grad_fn, void *grad_ctx, bool with_dentropy) {
    forward_trunk(g, b);
    grads_ensure(g);
    GpuActs *A = g->acts;
    cudaStream_t s = g->stream;
    int T = g->T, C = g->host->config.hidden_size, chunk = g->chunk;
    float *dxf = A->dln; /* where qwen3_gpu_backward starts */
    float *dlp = A->head_vals, *dent = dlp + T;
    /* host rows of one chunk (chunk <= T): values out, gradients back */
    float *row_lp = g->h_head, *row_ent = row_lp + T, *row_dlp = row_lp + 2 * T, *row_dent = row_lp + 3 * T;
    memset(logprob, 0, (size_t)T * sizeof(float));
    memset(entropy, 0, (size_t)T * sizeof(float));
    if (g->n_head < T) cuda_check(cudaMemsetAsync(dxf, 0, (size_t)T * C * sizeof(float), s)); /* rows without the head */
    for (int i0 = 0; i0 < g->n_head; i0 += chunk) {
        int R = g->n_head - i0 < chunk ? g->n_head - i0 : chunk;
        const int32_t *rows = g->h_head_rows + i0;
        const void *x = op_b(g, head_gather(g, rows, R, C), (size_t)R * C);
        head_chunk_forward(g, i0, R, x);
        cuda_check(cudaMemcpyAsync(row_ent, A->head_vals + 3 * T + i0, (size_t)R * sizeof(float),
                                   cudaMemcpyDeviceToHost, s));
        download(g, row_lp, A->head_vals + i0, (size_t)R * sizeof(float));
        for (int r = 0; r < R; r++) logprob[rows[r]] = row_lp[r], entropy[rows[r]] = row_ent[r];
        grad_fn(grad_ctx, R, rows, row_lp, row_ent, row_dlp, with_dentropy ? row_dent : NULL);
        /* the chunk's logprobs are on the host now: their slot takes dlogprob */
        upload(g, dlp + i0, row_dlp, (size_t)R * sizeof(float));
        if (with_dentropy) upload(g, dent + i0, row_dent, (size_t)R * sizeof(float));
        head_chunk_backward(g, i0, R, x, dxf, dlp, with_dentropy ? dent : NULL);
    }
    tp_sum(g, dxf, (size_t)T * C); /* TP: each rank's dxf covers its vocab columns only */
    /* within the loop each download waits for the previous chunk's uploads
     * before grad_fn writes the host rows again; the caller's next call
     * must find them done too */
    cuda_check(cudaStreamSynchronize(s));
    g->head_grad_done = true;
}

/* ------------------------------------------------------------ backward */

void qwen3_gpu_zero_grad(Qwen3Gpu *g) {
    require_onloaded(g, "qwen3_gpu_zero_grad");
    if (!g->grads) {
        grads_ensure(g); /* allocated zeroed */
        return;
    }
    cuda_check(cudaMemsetAsync(g->grads, 0, g->host->num_parameters * sizeof(float), g->stream));
}

/* The head's backward, chunk by chunk from the last (qwen3_backward):
 * dlogits from the logits (recomputed except for the forward's last chunk),
 * then dxf rows = dlogits @ W and dW += dlogits^T @ x. */
static void head_backward(Qwen3Gpu *g, float *dxf /* (T, C) */, const float *dlogprob, const float *dentropy) {
    const Qwen3Config *c = &g->host->config;
    GpuActs *A = g->acts;
    cudaStream_t s = g->stream;
    int T = g->T, C = c->hidden_size, V = g->host->shard.vocab_size;
    int chunk = g->chunk;
    if (g->n_head < T) cuda_check(cudaMemsetAsync(dxf, 0, (size_t)T * C * sizeof(float), s)); /* rows without the head */
    /* per head row: dlogprob and dentropy, sent once, beside the forward's
     * lse and entropy still on the device */
    float *h = g->h_head;
    for (int r = 0; r < g->n_head; r++) {
        int t = g->h_head_rows[r];
        h[r] = dlogprob[t];
        h[T + r] = dentropy ? dentropy[t] : 0.0f;
    }
    upload(g, A->head_vals, h, 2 * (size_t)T * sizeof(float));
    const float *dlp = A->head_vals, *dent = dlp + T;
    int n_chunks = (g->n_head + chunk - 1) / chunk;
    for (int ci = n_chunks - 1; ci >= 0; ci--) {
        int i0 = ci * chunk;
        int R = g->n_head - i0 < chunk ? g->n_head - i0 : chunk;
        const void *x = op_b(g, head_gather(g, g->h_head_rows + i0, R, C), (size_t)R * C);
        if (!(g->logits_kept && ci == n_chunks - 1)) {
            cuda_matmul_forward(g->blas, A->logits, x, weight(g, g->p.lm_head), g->dt, R, C, V, s);
        }
        g->logits_kept = false;
        head_chunk_backward(g, i0, R, x, dxf, dlp, dentropy ? dent : NULL);
    }
    tp_sum(g, dxf, (size_t)T * C); /* TP: each rank's dxf covers its vocab columns only */
}

void qwen3_gpu_backward(Qwen3Gpu *g, const float *dlogprob, const float *dentropy) {
    require_onloaded(g, "qwen3_gpu_backward");
    if (!g->have_forward) die_runtime("qwen3_gpu_backward: no forward pass to differentiate");
    grads_ensure(g);
    const Qwen3Config *c = &g->host->config;
    const Qwen3Params *p = &g->p, *gr = &g->g;
    GpuActs *A = g->acts;
    cudaStream_t s = g->stream;
    const Qwen3Shard *sh = &g->host->shard;
    int T = g->T, C = c->hidden_size, I = sh->intermediate_size, L = c->num_layers;
    int NH = sh->num_heads, NKV = sh->num_kv_heads, D = c->head_dim, QD = NH * D, KD = NKV * D;
    CudaDtype dt = g->dt;

    float *dxf = A->dln;
    if (g->head_grad_done) { /* qwen3_gpu_forward_head_grad left dxf */
        if (dlogprob || dentropy)
            die_runtime("qwen3_gpu_backward: the head's gradient came from qwen3_gpu_forward_head_grad (pass NULL)");
        g->head_grad_done = false;
    } else {
        if (!dlogprob) die_runtime("qwen3_gpu_backward: no dlogprob (and no qwen3_gpu_forward_head_grad before)");
        head_backward(g, dxf, dlogprob, dentropy);
    }
    cuda_rmsnorm_backward(A->dres, gr->norm_w, dxf, A->res + (size_t)L * T * C, p->norm_w, A->rstdf, T, C, false, s);

    for (int l = L - 1; l >= 0; l--) {
        const GpuLayer *a = &A->layers[l];
        const float *x_in = A->res + (size_t)l * T * C;
        /* recomputing: this layer's activations again, into the one slot */
        if (A->recompute) layer_forward(g, l, a, x_in, NULL);

        /* MLP: dres is the gradient of this layer's output */
        cuda_matmul_backward(g->blas, A->dh, gr->wdown + (size_t)l * C * I, op_a(g, A->dres, (size_t)T * C),
                             op_saved(&a->h), weight(g, p->wdown + (size_t)l * C * I), dt, T, I, C, false,
                             s);
        swiglu_backward_into(g, &A->dgate, &A->dup, A->dh, a->gate, a->up, (long)T * I);
        const void *ln2 = op_saved(&a->ln2);
        cuda_matmul_backward(g->blas, A->dln, gr->wgate + (size_t)l * I * C, op_saved(&A->dgate), ln2,
                             weight(g, p->wgate + (size_t)l * I * C), dt, T, C, I, false, s);
        cuda_matmul_backward(g->blas, A->dln, gr->wup + (size_t)l * I * C, op_saved(&A->dup), ln2,
                             weight(g, p->wup + (size_t)l * I * C), dt, T, C, I, true, s);
        tp_sum(g, A->dln, (size_t)T * C); /* TP: this rank's share (column-parallel gate/up) */
        cuda_rmsnorm_backward(A->dres, gr->ln2_w + (size_t)l * C, A->dln, a->res2, p->ln2_w + (size_t)l * C, a->rstd2,
                              T, C, true, s);

        /* attention: dres is now the gradient of res2 */
        cuda_matmul_backward(g->blas, A->datt, gr->wo + (size_t)l * C * QD, op_a(g, A->dres, (size_t)T * C),
                             op_b(g, a->att, (size_t)T * QD), weight(g, p->wo + (size_t)l * C * QD), dt, T, QD, C,
                             false, s);
        cuda_attention_backward(A->dqr, A->dkr, A->dv, A->delta, A->datt, a->att, a->att_lse, a->qr, a->kr, a->v,
                                A->seq_of, A->seq_start, T, NH, NKV, D, dt, s);
        /* RoPE back, then the q/k norms. TP: each rank sees its heads
         * only, so its q/k-norm weight gradients are partial: this
         * backward's part alone is reduced (the grads may hold earlier
         * micro-batches), then added in */
        float *dqn = gr->q_norm_w + (size_t)l * D, *dkn = gr->k_norm_w + (size_t)l * D;
        if (g->tp) {
            cuda_check(cudaMemsetAsync(A->dnorm, 0, 2 * (size_t)D * sizeof(float), s));
            dqn = A->dnorm;
            dkn = A->dnorm + D;
        }
        qk_backward_into(g, &A->dq, dqn, a->q, p->q_norm_w + (size_t)l * D, a->q_rstd, &A->dk, dkn, a->k,
                         p->k_norm_w + (size_t)l * D, a->k_rstd);
        if (g->tp) {
            tp_sum(g, A->dnorm, 2 * (size_t)D);
            cuda_residual_add(gr->q_norm_w + (size_t)l * D, A->dnorm, D, s);
            cuda_residual_add(gr->k_norm_w + (size_t)l * D, A->dnorm + D, D, s);
        }
        const void *ln1 = op_saved(&a->ln1);
        cuda_matmul_backward(g->blas, A->dln, gr->wq + (size_t)l * QD * C, op_saved(&A->dq), ln1,
                             weight(g, p->wq + (size_t)l * QD * C), dt, T, C, QD, false, s);
        cuda_matmul_backward(g->blas, A->dln, gr->wk + (size_t)l * KD * C, op_saved(&A->dk), ln1,
                             weight(g, p->wk + (size_t)l * KD * C), dt, T, C, KD, true, s);
        /* dv into bf_a after dq's product (stream order) */
        cuda_matmul_backward(g->blas, A->dln, gr->wv + (size_t)l * KD * C, op_a(g, A->dv, (size_t)T * KD), ln1,
                             weight(g, p->wv + (size_t)l * KD * C), dt, T, C, KD, true, s);
        tp_sum(g, A->dln, (size_t)T * C); /* TP: this rank's share (column-parallel q/k/v) */
        cuda_rmsnorm_backward(A->dres, gr->ln1_w + (size_t)l * C, A->dln, x_in, p->ln1_w + (size_t)l * C, a->rstd1, T,
                              C, true, s);
    }
    /* dres is whole on every rank: each scatters into its own vocab rows */
    if (g->tp) {
        cuda_embedding_backward_shard(gr->embed, A->dres, A->tokens, T, C, sh->vocab_start, sh->vocab_size, s);
    } else {
        cuda_embedding_backward(gr->embed, A->dres, A->tokens, T, C, s);
    }
}

/* ------------------------------------------------------------ optimizer */

float qwen3_gpu_adamw_step(Qwen3Gpu *g, const Qwen3AdamW *o, float lr) {
    const Qwen3 *m = g->host;
    cudaStream_t s = g->stream;
    require_onloaded(g, "qwen3_gpu_adamw_step");
    if (!g->grads) die_runtime("qwen3_gpu_adamw_step: no gradients (zero_grad and backward come first)");
    moments_ensure(g);
    /* the norm and the clip factor stay on the device: no round trip before
     * the update. TP: the squares of this rank's shards, replicated tensors
     * on rank 0 only (they must count once), summed over the ranks. */
    bool first = true;
    for (int i = 0; i < m->n_tensors; i++) {
        const Qwen3Tensor *t = &m->tensors[i];
        if (g->tp && t->split == QWEN3_REPLICATED && g->tp->rank != 0) continue;
        cuda_sum_squares(g->sumsq, g->grads + t->offset, t->numel, !first, s);
        first = false;
    }
    if (g->tp) comm_nccl_allreduce_on(g->tp, g->sumsq, 1, COMM_F64, COMM_SUM, s);
    cuda_clip_scale(g->norm, g->gscale, g->sumsq, o->max_grad_norm, s);
    g->adam_step++;
    double bc1 = 1.0 - pow((double)o->beta1, g->adam_step);
    double bc2 = 1.0 - pow((double)o->beta2, g->adam_step);
    for (int i = 0; i < m->n_tensors; i++) {
        const Qwen3Tensor *t = &m->tensors[i];
        float wd = (t->ndim == 1 && !o->decay_1d) ? 0.0f : o->weight_decay;
        /* the bf16 copy written in the same pass (refresh_bf16 without
         * reading the weights again) */
        uint16_t *pb = g->math == QWEN3_GPU_BF16 ? g->params_bf16 + t->offset : NULL;
        cuda_adamw_update(g->params + t->offset, pb, g->grads + t->offset, g->m + t->offset, g->v + t->offset,
                          t->numel, g->gscale, lr, o->beta1, o->beta2, o->eps, wd, bc1, bc2, s);
    }
    if (g->tp) { /* keep replicated weights bit-identical: rank 0's copy wins (each kind is one block) */
        float *rep[] = {g->p.ln1_w, g->p.q_norm_w, g->p.k_norm_w, g->p.ln2_w, g->p.norm_w};
        const size_t *sz = m->param_sizes;
        size_t n[] = {sz[1], sz[5], sz[6], sz[8], sz[12]};
        for (int i = 0; i < 5; i++) {
            comm_nccl_broadcast_on(g->tp, rep[i], n[i] * sizeof(float), 0, s);
            if (g->math == QWEN3_GPU_BF16)
                cuda_f32_to_bf16(g->params_bf16 + (rep[i] - g->params), rep[i], (long)n[i], s);
        }
    }
    float norm = 0.0f;
    download(g, &norm, g->norm, sizeof norm);
    return norm;
}

#endif /* TAU2_HAVE_CUDA */
