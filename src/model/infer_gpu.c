/* infer_gpu.c — the inference engine on one GPU (see infer_gpu.h).
 *
 * A forward reads top to bottom as infer.c's: lay the chunks' new tokens out
 * as rows, send the host's part of the step in one copy (tokens, positions,
 * block tables, the rows that feed the head), then per layer RMSNorm, the
 * q/k/v products, q/k norm + RoPE at each row's position, keys and values
 * into the bf16 cache, attention, o_proj, residual + norm, SwiGLU MLP,
 * residual; then the head on each chunk's last row. Everything is queued
 * on one stream; the host waits only for what it reads back.
 *
 * Rows: chunks that extend a sequence come first and attend through the
 * paged decode kernel; then each prompt (a new sequence's first chunk of
 * INFER_FLASH_MIN_ROWS or more) attends within itself through the flash
 * kernel on its fp32 keys and values, while its bf16 copy goes to the cache
 * for the steps after.
 *
 * Decode steps (every chunk one token of a sequence with a cache) replay a
 * CUDA graph of their launches: a 4B model's step is ~540 kernel launches
 * and ~250 cuBLAS calls that each cost the host microseconds, and at batch 1
 * the GPU finishes many of them faster than the host can queue them. A
 * graph is keyed by the rows and the block tables' width, which is rounded
 * up to a power of two (and the decode split sized for that width) so that
 * one graph serves every step until the longest context doubles: the
 * kernels read positions, tables and tokens from device memory that the
 * host fills before each launch, and the rows past a sequence's end in a
 * wider table are never read. Everything a graph holds by value (row
 * count, table width, split count, pointers into the scratch) is in its
 * key or fixed until the scratch or the decode workspace is reallocated,
 * which drops every graph. */
#ifdef TAU2_HAVE_CUDA

#include "model/infer_gpu.h"

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>

#include "comm/comm.h"
#include "core/error.h"
#include "kernels.h"
#include "model/gpu_mem.h"
#include "model/kv_blocks.h"
#include "model/layers_cpu.h"

/* The decode kernel's limits (decode.cu): query heads per kv head, and
 * query heads times head_dim per kv head. */
#define GPU_DECODE_MAX_REP 16
#define GPU_DECODE_MAX_REP_D 2048

/* Weights are converted to bf16 through a device staging buffer of this
 * many floats (256 MiB). */
#define LOAD_STAGE_FLOATS ((size_t)64 << 20)

/* Rows up to which a few-row step folds its RMSNorms into the products
 * (cuda_rows_*_normed). Each product warp then reads its input rows in
 * fp32 and the norm weights through L1: per 16-byte weight piece 32 bytes
 * a row plus 32, against 16 a row for the separate norm's bf16 output. At
 * an H100's ~23 GB/s of HBM per SM and ~250 GB/s of L1, one or two rows
 * stay well under L1's rate (4x, 6x the weight bytes), four would not
 * (10x); and a launch saved weighs most at one row. */
#define ROWS_NORM_FOLD_MAX 2

/* Decode-step graphs kept at once (the least recently used is dropped): a
 * batch that shrinks as sequences end meets one row count after another. */
#define GRAPH_SLOTS 16

/* Which kernels take a step's products (step_products). */
typedef enum {
    PRODUCTS_BLAS,        /* cuBLAS, after a norm into the bf16 operand */
    PRODUCTS_ROWS_NORMED, /* the few-row kernels with the norms folded in (cuda_rows_*_normed) */
    PRODUCTS_ROWS,        /* the few-row kernels after a separate norm (cuda_rows_*) */
    PRODUCTS_ROWS_MMA,    /* the tensor-core row products after a separate norm (cuda_rows_mma_*) */
} StepProducts;

/* One decode step's launches, captured (see the file comment). */
typedef struct {
    int R, n_tab;          /* key: rows (= chunks) and block-table width */
    cudaGraphExec_t exec;
    long last_use;
} StepGraph;

/* Device scratch of one forward, grown to the largest call. */
typedef struct {
    int cap_rows, cap_chunks;
    size_t cap_table; /* ints of the rows' block tables */
    size_t bytes;     /* device memory of this scratch */
    float *fmem;
    float *x, *res2;                   /* (R, C) each */
    float *q, *qn, *att, *lse;         /* (R, QD) x 3, (R, NH) */
    float *k, *kn, *v;                 /* (R, KD) */
    float *gate, *up;                  /* (R, I) */
    float *xl, *xf, *rstdf, *logits;   /* (N, C), (N, C), (N), (N, V) */
    float *logprobs;                   /* (N) */
    uint16_t *ln;                      /* (R, C): a norm's output, the next products' bf16 input */
    uint16_t *bf;                      /* (R, max(C, QD, I)) or (N, C): another product's bf16 input */
    size_t bf_n;
    /* one host -> device copy per forward: [tok R][pos R][last_row N][seq_start 2N][tables] */
    int32_t *imem, *h_imem;            /* device, pinned host */
    int32_t *tok, *pos, *last_row, *seq_start, *tables;
    int32_t *seq_zero;                 /* (R) zeros: a prompt is one sequence */
    int32_t *ids, *h_ids;              /* (N) sampled ids, device and pinned host */
    float *h_logprobs;                 /* (N) pinned host */
    CudaSampleParams *sp, *h_sp;       /* (N) */
    double *u, *h_u;                   /* (N) */
    void *sample_work;                 /* cuda_sample_wide's workspace for N rows */
    size_t sample_work_bytes;
    /* the decode attention's partial results, grown to the largest step's
     * cuda_decode_attention_work_bytes: a step allocates nothing */
    float *dec_work;
    size_t dec_work_bytes;
} GpuInferScratch;

struct InferGpu {
    const Qwen3 *model; /* borrowed: config and tensor table */
    int device;         /* selected again by every call that launches work: the
                         * caller may be another thread (the server's engine thread) */
    int V, C, I, L, NH, NKV, D;
    float eps;
    int block_size, max_len;
    cudaStream_t stream;
    CudaBlas *blas;
    uint16_t *w;            /* (num_parameters) bf16 weights, the host model's layout */
    float *norms;           /* fp32 ln1 (L, C), ln2 (L, C), q_norm (L, D), k_norm (L, D), norm (C) */
    float *ln1_w, *ln2_w, *q_norm_w, *k_norm_w, *norm_w;
    size_t block_stride;    /* bf16 values per block: L * 2 * block_size * NKV * D */
    uint16_t *kv;           /* (kb.n_blocks, L, 2, block_size, NKV, D) */
    KvBlocks kb;
    float *rope_cos, *rope_sin; /* (max_len, D/2) */
    size_t fixed_bytes;     /* weights, norms, cache, rope tables */
    GpuInferScratch s;
    /* a step's layout on the host (StepLayout's arrays), grown to the most chunks */
    int32_t *row_of_chunk;
    bool *flash;
    int cap_layout;
    bool rows_on;           /* few-row steps through cuda_rows_* (rows_weights_fit, TAU2_CUDA_ROWS) */
    bool rows_mma_on;       /* 5 to 32 rows through cuda_rows_mma_* (rows_mma_fit, TAU2_CUDA_ROWS_MMA=1) */
    bool dependent_on;      /* programmatic dependent launch (infer_gpu_set_dependent_launch) */
    bool fold_on;           /* decode steps' q/k stage in the attention's launch (infer_gpu_set_decode_fold) */
    /* decode-step graphs (infer_gpu_set_graphs) */
    bool graphs_on;
    StepGraph graphs[GRAPH_SLOTS];
    int n_graphs;
    long graph_clock, n_captured, n_replayed;
};

/* ------------------------------------------------------------ memory (gpu_mem.h) */

/* The bf16 twin of a host weight: the same offset in e->w. */
static const uint16_t *weight(const InferGpu *e, const float *host_w) {
    return e->w + (host_w - e->model->params_memory);
}

static bool aligned16(const void *p) { return (uintptr_t)p % 16 == 0; }

/* Whether the few-row kernels take this model's products: each product's
 * input width a multiple of 8 and each weight tensor at a multiple of 8
 * values, so every weight row is 16-byte aligned in e->w (and every row
 * of the norms they fold in, in e->norms). */
static bool rows_weights_fit(const InferGpu *e) {
    const Qwen3Params *p = &e->model->params;
    const float *t[8] = {p->wq, p->wk, p->wv, p->wo, p->wgate, p->wup, p->wdown, p->lm_head};
    if (!cuda_rows_fit(1, e->C) || !cuda_rows_fit(1, e->NH * e->D) || !cuda_rows_fit(1, e->I)) return false;
    for (int i = 0; i < 8; i++)
        if ((t[i] - e->model->params_memory) % 8 != 0) return false;
    return true;
}

/* Whether the tensor-core row products take this model's: besides
 * rows_weights_fit, every input width a multiple of 32. */
static bool rows_mma_fit(const InferGpu *e) {
    return rows_weights_fit(e) && cuda_rows_mma_fit(1, e->C) && cuda_rows_mma_fit(1, e->NH * e->D) &&
           cuda_rows_mma_fit(1, e->I);
}

/* Every captured graph dropped (they hold scratch pointers). */
static void graphs_clear(InferGpu *e) {
    for (int i = 0; i < e->n_graphs; i++) cuda_check(cudaGraphExecDestroy(e->graphs[i].exec));
    e->n_graphs = 0;
}

static void scratch_free(InferGpu *e) {
    GpuInferScratch *s = &e->s;
    cuda_check(cudaStreamSynchronize(e->stream));
    graphs_clear(e);
    dev_free(s->fmem);
    dev_free(s->ln);
    dev_free(s->bf);
    dev_free(s->imem);
    dev_free(s->seq_zero);
    dev_free(s->ids);
    dev_free(s->sp);
    dev_free(s->u);
    dev_free(s->dec_work);
    dev_free(s->sample_work);
    pinned_free(s->h_imem);
    pinned_free(s->h_ids);
    pinned_free(s->h_logprobs);
    pinned_free(s->h_sp);
    pinned_free(s->h_u);
    memset(s, 0, sizeof *s);
}

/* The element counts of the scratch for r rows, n chunks and tab ints of
 * block tables: scratch_reserve allocates exactly these, and
 * infer_gpu_plan counts them before any engine exists. */
typedef struct {
    size_t f32;  /* fmem */
    size_t bf;   /* bf: a product's bf16 input */
    size_t ln;   /* ln (bf16) */
    size_t ints; /* imem */
    size_t sample; /* bytes of cuda_sample_wide's workspace */
} ScratchSizes;

static ScratchSizes scratch_sizes(const Qwen3Config *c, size_t r, size_t n, size_t tab) {
    size_t C = c->hidden_size, I = c->intermediate_size, V = c->vocab_size, NH = c->num_heads;
    size_t QD = NH * c->head_dim, KD = (size_t)c->num_kv_heads * c->head_dim;
    ScratchSizes z;
    z.f32 = r * 2 * C + r * (3 * QD + NH) + r * 3 * KD + r * 2 * I + n * (2 * C + 1 + V + 1);
    z.bf = r * max_z(max_z(C, QD), I);
    z.ln = r * C;
    z.ints = 2 * r + 3 * n + tab;
    z.sample = cuda_sample_work_bytes((int)n, (int)V);
    return z;
}

/* Device bytes of that scratch: the arenas, seq_zero (r ints) and the
 * sampling's ids, parameters, draws (n each) and workspace. */
static size_t scratch_bytes(const ScratchSizes *z, size_t r, size_t n) {
    return z->f32 * sizeof(float) + (z->bf + z->ln) * sizeof(uint16_t) + (z->ints + r + n) * sizeof(int32_t) +
           n * (sizeof(CudaSampleParams) + sizeof(double)) + z->sample;
}

/* Scratch for R rows, N chunks and table_ints ints of block tables. */
static void scratch_reserve(InferGpu *e, int R, int N, size_t table_ints) {
    GpuInferScratch *s = &e->s;
    if (s->cap_rows >= R && s->cap_chunks >= N && s->cap_table >= table_ints) return;
    int rows = R > s->cap_rows ? R : s->cap_rows;
    int chunks = N > s->cap_chunks ? N : s->cap_chunks;
    size_t tab = max_z(table_ints, s->cap_table);
    scratch_free(e);
    size_t r = (size_t)rows, n = (size_t)chunks, C = e->C, I = e->I, V = e->V;
    size_t QD = (size_t)e->NH * e->D, KD = (size_t)e->NKV * e->D;
    s->cap_rows = rows;
    s->cap_chunks = chunks;
    s->cap_table = tab;
    ScratchSizes z = scratch_sizes(&e->model->config, r, n, tab);
    s->fmem = dev_alloc(z.f32 * sizeof(float));
    float *it = s->fmem;
    s->x = carve(&it, r * C);
    s->res2 = carve(&it, r * C);
    s->q = carve(&it, r * QD);
    s->qn = carve(&it, r * QD);
    s->att = carve(&it, r * QD);
    s->lse = carve(&it, r * e->NH);
    s->k = carve(&it, r * KD);
    s->kn = carve(&it, r * KD);
    s->v = carve(&it, r * KD);
    s->gate = carve(&it, r * I);
    s->up = carve(&it, r * I);
    s->xl = carve(&it, n * C);
    s->xf = carve(&it, n * C);
    s->rstdf = carve(&it, n);
    s->logits = carve(&it, n * V);
    s->logprobs = carve(&it, n);
    if ((size_t)(it - s->fmem) != z.f32) die_runtime("infer_gpu: scratch arena size mismatch");
    s->bf_n = z.bf;
    s->bf = dev_alloc(s->bf_n * sizeof(uint16_t));
    s->ln = dev_alloc(z.ln * sizeof(uint16_t));
    size_t ints = z.ints;
    s->imem = dev_alloc(ints * sizeof(int32_t));
    s->h_imem = pinned_alloc(ints * sizeof(int32_t));
    s->tok = s->imem;
    s->pos = s->tok + r;
    s->last_row = s->pos + r;
    s->seq_start = s->last_row + n;
    s->tables = s->seq_start + 2 * n;
    s->seq_zero = dev_alloc(r * sizeof(int32_t));
    cuda_check(cudaMemsetAsync(s->seq_zero, 0, r * sizeof(int32_t), e->stream));
    s->ids = dev_alloc(n * sizeof(int32_t));
    s->h_ids = pinned_alloc(n * sizeof(int32_t));
    s->h_logprobs = pinned_alloc(n * sizeof(float));
    s->sp = dev_alloc(n * sizeof(CudaSampleParams));
    s->h_sp = pinned_alloc(n * sizeof(CudaSampleParams));
    s->u = dev_alloc(n * sizeof(double));
    s->h_u = pinned_alloc(n * sizeof(double));
    s->sample_work_bytes = z.sample;
    s->sample_work = dev_alloc(z.sample);
    s->bytes = scratch_bytes(&z, r, n);
}

/* The decode workspace for at least need bytes. It grows by half again at
 * least (up to bound, the most the kernel asks for at these rows), so a
 * context that grows one split at a time reallocates log-many times, not
 * at every split. */
static void decode_work_reserve(InferGpu *e, size_t need, size_t bound) {
    GpuInferScratch *s = &e->s;
    if (need <= s->dec_work_bytes) return;
    /* growing by half, but never past what the kernel can ask for (the plan's bound) */
    size_t grown = s->dec_work_bytes + s->dec_work_bytes / 2;
    size_t bytes = max_z(need, grown < bound ? grown : bound);
    cuda_check(cudaStreamSynchronize(e->stream));
    graphs_clear(e);
    dev_free(s->dec_work);
    s->bytes -= s->dec_work_bytes;
    s->dec_work = dev_alloc(bytes);
    s->dec_work_bytes = bytes;
    s->bytes += bytes;
}

/* The bf16 operand scratch, for n values. */
static uint16_t *bf_scratch(InferGpu *e, size_t n) {
    if (n > e->s.bf_n) die_runtime("infer_gpu: bf16 operand of %zu values > scratch of %zu", n, e->s.bf_n);
    return e->s.bf;
}

/* An activation as a product's bf16 input (n values into the scratch). */
static const uint16_t *to_bf16(InferGpu *e, const float *x, size_t n) {
    uint16_t *bf = bf_scratch(e, n);
    cuda_f32_to_bf16(bf, x, (long)n, e->stream);
    return bf;
}

/* The smallest power of two >= x (x >= 1). */
static int pow2_at_least(int x) {
    int p = 1;
    while (p < x) p *= 2;
    return p;
}

/* ------------------------------------------------------------ plan */

static size_t min_z(size_t a, size_t b) { return a < b ? a : b; }

void infer_gpu_plan(const Qwen3Config *c, const InferOptions *opt, int step_tokens, InferGpuPlan *out) {
    size_t L = c->num_layers, C = c->hidden_size, D = c->head_dim;
    size_t block = opt->block_size > 0 ? (size_t)opt->block_size : INFER_DEFAULT_BLOCK_SIZE;
    size_t max_len = opt->max_len > 0 ? (size_t)opt->max_len : (size_t)c->max_position_embeddings;
    size_t max_seqs = opt->max_seqs > 0 ? (size_t)opt->max_seqs : 1024;
    size_t n_blocks = ((size_t)(opt->kv_tokens > 0 ? opt->kv_tokens : 0) + block - 1) / block;
    size_t n = qwen3_shard_num_parameters(c, 1);
    memset(out, 0, sizeof *out);
    /* infer_gpu_new's allocations */
    out->weights = n * sizeof(uint16_t) + (2 * L * C + 2 * L * D + C) * sizeof(float) + max_len * D * sizeof(float);
    out->kv_cache = n_blocks * L * 2 * block * c->num_kv_heads * D * sizeof(uint16_t);
    /* A step's rows: every decoding sequence's one, the others' within the
     * step limit (infer_gen_step), and never more than the cache holds; its
     * chunks: one per sequence. Block tables: a row's, as wide as its
     * sequence's blocks, a decode step's rounded up to a power of two. */
    int limit = step_tokens == 0 ? INFER_DEFAULT_STEP_TOKENS : step_tokens;
    size_t capacity = n_blocks * block;
    size_t rows = min_z(limit > 0 ? min_z(max_z((size_t)limit, max_seqs), capacity) : capacity, INT_MAX);
    size_t chunks = min_z(max_seqs, rows);
    size_t widest = (max_len + block - 1) / block;
    size_t pow2 = n_blocks > 0 ? (size_t)pow2_at_least((int)min_z(n_blocks, (size_t)1 << 30)) : 1;
    size_t tab = max_z(rows * min_z(widest, max_z(n_blocks, 1)), chunks * min_z(widest, pow2));
    ScratchSizes z = scratch_sizes(c, rows, chunks, tab);
    out->scratch = scratch_bytes(&z, rows, chunks) + cuda_decode_attention_work_bound((int)rows, c->num_heads, (int)D);
    out->workspace = CUDA_BLAS_BYTES + min_z(n, LOAD_STAGE_FLOATS) * sizeof(float);
    /* a new sequence's rows go through the training attention, one chunk at a time */
    out->pool = cuda_attention_scratch_bytes((int)rows, c->num_heads, c->num_kv_heads, (int)D, CUDA_BF16, false);
}

size_t infer_gpu_plan_total(const InferGpuPlan *p) {
    return p->weights + p->kv_cache + p->scratch + p->workspace + p->pool;
}

/* ------------------------------------------------------------ engine */

static int check_shapes(const Qwen3 *m, const InferOptions *opt, char *err, size_t errlen) {
    const Qwen3Config *c = &m->config;
    if (opt->kv_tokens <= 0) {
        return err_set(err, errlen, "inference: kv_tokens must be positive (the KV cache budget in tokens), got %d",
                       opt->kv_tokens);
    }
    if (m->tp || (opt->group && opt->group->size > 1)) {
        return err_set(err, errlen, "inference on the GPU: tensor parallelism is not built yet (TP must be 1)");
    }
    int rep = c->num_heads / c->num_kv_heads;
    if (c->head_dim > CUDA_ATT_MAX_D || rep > GPU_DECODE_MAX_REP || rep * c->head_dim > GPU_DECODE_MAX_REP_D) {
        return err_set(err, errlen,
                       "inference on the GPU: head_dim %d with %d query heads per kv head is outside the kernels' "
                       "limits (head_dim <= %d, heads per kv head <= %d, their product <= %d)",
                       c->head_dim, rep, CUDA_ATT_MAX_D, GPU_DECODE_MAX_REP, GPU_DECODE_MAX_REP_D);
    }
    return 0;
}

InferGpu *infer_gpu_new(const Qwen3 *model, const InferOptions *opt, int device, char *err, size_t errlen) {
    if (check_shapes(model, opt, err, errlen) != 0) return NULL;
    int n_dev = cuda_device_count();
    if (device < 0 || n_dev < 1) {
        err_set(err, errlen, "inference on the GPU: CUDA device %d requested, %d present", device, n_dev);
        return NULL;
    }
    cuda_device_init(device % n_dev);
    const Qwen3Config *c = &model->config;
    InferGpu *e = xcalloc(1, sizeof *e);
    e->model = model;
    e->device = device % n_dev;
    e->V = c->vocab_size;
    e->C = c->hidden_size;
    e->I = c->intermediate_size;
    e->L = c->num_layers;
    e->NH = c->num_heads;
    e->NKV = c->num_kv_heads;
    e->D = c->head_dim;
    e->eps = c->rms_norm_eps;
    e->block_size = opt->block_size > 0 ? opt->block_size : INFER_DEFAULT_BLOCK_SIZE;
    e->max_len = opt->max_len > 0 ? opt->max_len : c->max_position_embeddings;
    cuda_check(cudaStreamCreateWithFlags(&e->stream, cudaStreamNonBlocking));
    e->blas = cuda_blas_new();
    const char *graphs = getenv("TAU2_CUDA_GRAPHS");
    e->graphs_on = !(graphs && strcmp(graphs, "0") == 0);
    const char *rows = getenv("TAU2_CUDA_ROWS");
    e->rows_on = !(rows && strcmp(rows, "0") == 0) && rows_weights_fit(e);
    const char *rows_mma = getenv("TAU2_CUDA_ROWS_MMA");
    e->rows_mma_on = rows_mma && strcmp(rows_mma, "1") == 0 && rows_mma_fit(e);
    const char *pdl = getenv("TAU2_CUDA_PDL");
    e->dependent_on = !(pdl && strcmp(pdl, "0") == 0);
    const char *fold = getenv("TAU2_CUDA_DECODE_FOLD");
    e->fold_on = !(fold && strcmp(fold, "0") == 0);

    size_t L = e->L, C = e->C, D = e->D;
    e->w = dev_alloc(model->num_parameters * sizeof(uint16_t));
    size_t n_norms = 2 * L * C + 2 * L * D + C;
    e->norms = dev_alloc(n_norms * sizeof(float));
    /* the norms the few-row products fold in first: 16-byte aligned rows
     * when C is a multiple of 8 (rows_weights_fit) */
    e->ln1_w = e->norms;
    e->ln2_w = e->ln1_w + L * C;
    e->norm_w = e->ln2_w + L * C;
    e->q_norm_w = e->norm_w + C;
    e->k_norm_w = e->q_norm_w + L * D;

    int n_blocks = (int)(((long)opt->kv_tokens + e->block_size - 1) / e->block_size);
    kv_blocks_init(&e->kb, n_blocks, e->block_size, opt->max_seqs > 0 ? opt->max_seqs : 1024);
    e->block_stride = L * 2 * (size_t)e->block_size * e->NKV * D;
    size_t kv_bytes = (size_t)n_blocks * e->block_stride * sizeof(uint16_t);
    e->kv = dev_alloc(kv_bytes);

    size_t half = D / 2, rope_n = (size_t)e->max_len * half;
    float *h_rope = xmalloc(2 * rope_n * sizeof(float));
    rope_tables(h_rope, h_rope + rope_n, e->max_len, e->D, c->rope_theta);
    e->rope_cos = dev_alloc(2 * rope_n * sizeof(float));
    e->rope_sin = e->rope_cos + rope_n;
    cuda_check(cudaMemcpy(e->rope_cos, h_rope, 2 * rope_n * sizeof(float), cudaMemcpyHostToDevice));
    free(h_rope);

    e->fixed_bytes = model->num_parameters * sizeof(uint16_t) + n_norms * sizeof(float) + kv_bytes +
                     2 * rope_n * sizeof(float);
    infer_gpu_load_weights(e, model->params_memory);
    return e;
}

void infer_gpu_free(InferGpu *e) {
    if (!e) return;
    cuda_check(cudaSetDevice(e->device));
    scratch_free(e);
    dev_free(e->w);
    dev_free(e->norms);
    dev_free(e->kv);
    dev_free(e->rope_cos);
    kv_blocks_free(&e->kb);
    free(e->row_of_chunk);
    free(e->flash);
    cuda_blas_free(e->blas);
    cuda_check(cudaStreamDestroy(e->stream));
    free(e);
    /* the prompts' attention scratch the pool kept goes too: a trainer
     * taking the GPU next allocates with cudaMalloc */
    cuda_pool_trim();
}

/* Weights [off, off + n) of the host layout from device memory src on this
 * engine's GPU, queued: every value converted into the bf16 copy, and the
 * part of each norm tensor inside the range copied as fp32 too. */
static void load_range(InferGpu *e, const float *src, size_t off, size_t n) {
    cuda_f32_to_bf16(e->w + off, src, (long)n, e->stream);
    const Qwen3Params *p = &e->model->params;
    const float *base = e->model->params_memory;
    size_t L = e->L, C = e->C, D = e->D;
    struct {
        float *dst;
        size_t at, len; /* host-layout offset and length of the tensor */
    } norms[5] = {
        {e->ln1_w, (size_t)(p->ln1_w - base), L * C},     {e->ln2_w, (size_t)(p->ln2_w - base), L * C},
        {e->q_norm_w, (size_t)(p->q_norm_w - base), L * D}, {e->k_norm_w, (size_t)(p->k_norm_w - base), L * D},
        {e->norm_w, (size_t)(p->norm_w - base), C},
    };
    for (int i = 0; i < 5; i++) {
        size_t lo = norms[i].at > off ? norms[i].at : off;
        size_t hi = norms[i].at + norms[i].len < off + n ? norms[i].at + norms[i].len : off + n;
        if (lo >= hi) continue;
        cuda_check(cudaMemcpyAsync(norms[i].dst + (lo - norms[i].at), src + (lo - off), (hi - lo) * sizeof(float),
                                   cudaMemcpyDeviceToDevice, e->stream));
    }
}

void infer_gpu_load_weights(InferGpu *e, const float *params) {
    cuda_check(cudaSetDevice(e->device));
    size_t n = e->model->num_parameters;
    size_t stage_n = n < LOAD_STAGE_FLOATS ? n : LOAD_STAGE_FLOATS;
    float *stage = dev_alloc(stage_n * sizeof(float));
    /* Stream order makes reusing the staging buffer safe: each piece's
     * conversion runs before the next piece's copy overwrites it. */
    for (size_t off = 0; off < n; off += stage_n) {
        size_t m = n - off < stage_n ? n - off : stage_n;
        cuda_check(cudaMemcpyAsync(stage, params + off, m * sizeof(float), cudaMemcpyHostToDevice, e->stream));
        load_range(e, stage, off, m);
    }
    cuda_check(cudaStreamSynchronize(e->stream));
    dev_free(stage);
}

void infer_gpu_load_weights_device(InferGpu *e, const float *src, size_t off, size_t n) {
    if (off > e->model->num_parameters || n > e->model->num_parameters - off)
        die_runtime("infer_gpu_load_weights_device: range [%zu, %zu) outside the %zu weights", off, off + n,
                    e->model->num_parameters);
    cuda_check(cudaSetDevice(e->device));
    if (n) load_range(e, src, off, n);
    cuda_check(cudaStreamSynchronize(e->stream));
}

int infer_gpu_device(const InferGpu *e) { return e->device; }

/* The graphs held, dropped once the steps they replay are done. */
static void graphs_drop(InferGpu *e) {
    cuda_check(cudaSetDevice(e->device));
    cuda_check(cudaStreamSynchronize(e->stream));
    graphs_clear(e);
}

void infer_gpu_set_graphs(InferGpu *e, bool on) {
    if (!on) graphs_drop(e);
    e->graphs_on = on;
}

/* A setting that changes a step's launches: the graphs were captured with the old one. */
void infer_gpu_set_dependent_launch(InferGpu *e, bool on) {
    if (on != e->dependent_on) graphs_drop(e);
    e->dependent_on = on;
}

void infer_gpu_set_decode_fold(InferGpu *e, bool on) {
    if (on != e->fold_on) graphs_drop(e);
    e->fold_on = on;
}

/* Whether a decode step's q/k stage can go into the attention's launch
 * (cuda_decode_attention_folded_bf16): a shape its kernel takes, and the
 * operands it reads eight at a time 16-byte aligned. */
static bool decode_fold_fit(const InferGpu *e) {
    return cuda_decode_fold_fit(e->NH, e->NKV, e->D, e->block_size) && aligned16(e->s.q) && aligned16(e->q_norm_w) &&
           aligned16(e->rope_cos) && aligned16(e->rope_sin) && aligned16(e->kv);
}

bool infer_gpu_decode_fold(const InferGpu *e) { return e->fold_on && decode_fold_fit(e); }

bool infer_gpu_dependent_launch(const InferGpu *e) {
    cuda_check(cudaSetDevice(e->device));
    return e->dependent_on && cuda_dependent_launch_available();
}

void infer_gpu_graph_counts(const InferGpu *e, long *captured, long *replayed) {
    *captured = e->n_captured;
    *replayed = e->n_replayed;
}

bool infer_gpu_fits(const InferGpu *e, const InferOptions *opt) {
    int block = opt->block_size > 0 ? opt->block_size : INFER_DEFAULT_BLOCK_SIZE;
    int max_len = opt->max_len > 0 ? opt->max_len : e->model->config.max_position_embeddings;
    long blocks = ((long)opt->kv_tokens + e->block_size - 1) / e->block_size;
    int max_seqs = opt->max_seqs > 0 ? opt->max_seqs : 1024;
    return block == e->block_size && max_len <= e->max_len && blocks <= e->kb.n_blocks && max_seqs <= e->kb.max_seqs &&
           !opt->group;
}

void infer_gpu_reset(InferGpu *e) {
    for (int s = 0; s < e->kb.max_seqs; s++)
        if (kv_seq_ok(&e->kb, s)) kv_seq_free(&e->kb, s);
}

/* ------------------------------------------------------------ sequences */

int infer_gpu_seq_new(InferGpu *e, char *err, size_t errlen) { return kv_seq_new(&e->kb, err, errlen); }

int infer_gpu_seq_fork(InferGpu *e, int src, char *err, size_t errlen) {
    return kv_seq_fork(&e->kb, src, err, errlen);
}

void infer_gpu_seq_free(InferGpu *e, int seq) { kv_seq_free(&e->kb, seq); }

int infer_gpu_seq_len(const InferGpu *e, int seq) {
    return kv_seq_ok(&e->kb, seq) ? e->kb.seqs[seq].len : -1;
}

int infer_gpu_free_tokens(const InferGpu *e) { return e->kb.n_free * e->block_size; }

size_t infer_gpu_device_bytes(const InferGpu *e) { return e->fixed_bytes + e->s.bytes; }

/* ------------------------------------------------------------ forward */

/* A step's layout on the host: rows of extending chunks (paged attention)
 * first, prompts (flash attention) after. */
typedef struct {
    const InferChunk *chunks; /* (N) */
    int R, R_paged, N;
    int n_tab;   /* width of a row's block table: the most blocks a sequence holds after the step */
    int max_ctx; /* the longest context a paged row attends to */
    bool head_is_rows; /* every chunk is one paged row, in chunk order: the head reads x directly */
    bool fold;         /* a decode step whose q/k stage goes into the attention's launch (decode_fold) */
    StepProducts products; /* which kernels take the step's products */
    int32_t *row_of_chunk; /* (N) host, the engine's */
    bool *flash;           /* (N) host, the engine's */
} StepLayout;

static void step_layout(InferGpu *e, const InferChunk *chunks, int n_chunks, StepLayout *st) {
    KvBlocks *kb = &e->kb;
    st->chunks = chunks;
    st->N = n_chunks;
    st->R = st->R_paged = 0;
    st->max_ctx = 1;
    st->n_tab = 1;
    for (int i = 0; i < n_chunks; i++) {
        const KvSeq *sq = &kb->seqs[chunks[i].seq];
        st->flash[i] = sq->len == 0 && chunks[i].n >= INFER_FLASH_MIN_ROWS;
        st->R += chunks[i].n;
        if (!st->flash[i]) st->R_paged += chunks[i].n;
        int blocks = (sq->len + chunks[i].n + e->block_size - 1) / e->block_size;
        if (blocks > st->n_tab) st->n_tab = blocks;
        if (!st->flash[i] && sq->len + chunks[i].n > st->max_ctx) st->max_ctx = sq->len + chunks[i].n;
    }
    int r = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < n_chunks; i++) {
            if (st->flash[i] != (pass == 1)) continue;
            st->row_of_chunk[i] = r;
            r += chunks[i].n;
        }
    }
    st->head_is_rows = st->R == n_chunks && st->R_paged == n_chunks;
    for (int i = 0; st->head_is_rows && i < n_chunks; i++) st->head_is_rows = st->row_of_chunk[i] == i;
}

/* Reserve each chunk's blocks and write the step's ints into the pinned
 * staging, then send them in one copy. */
static void step_upload(InferGpu *e, const StepLayout *st) {
    const InferChunk *chunks = st->chunks;
    GpuInferScratch *s = &e->s;
    size_t r = (size_t)s->cap_rows, n = (size_t)s->cap_chunks;
    int32_t *h_tok = s->h_imem, *h_pos = h_tok + r, *h_last = h_pos + r, *h_start = h_last + n;
    int32_t *h_tab = h_start + 2 * n;
    for (int i = 0; i < st->N; i++) {
        const InferChunk *ch = &chunks[i];
        int32_t from, to;
        kv_seq_reserve(&e->kb, ch->seq, ch->n, &from, &to);
        if (from >= 0) {
            cuda_check(cudaMemcpyAsync(e->kv + (size_t)to * e->block_stride, e->kv + (size_t)from * e->block_stride,
                                       e->block_stride * sizeof(uint16_t), cudaMemcpyDeviceToDevice, e->stream));
        }
        const KvSeq *sq = &e->kb.seqs[ch->seq];
        int r0 = st->row_of_chunk[i];
        for (int t = 0; t < ch->n; t++) {
            h_tok[r0 + t] = ch->ids[t];
            h_pos[r0 + t] = sq->len + t;
            int32_t *row_tab = h_tab + (size_t)(r0 + t) * st->n_tab;
            memcpy(row_tab, sq->blocks, (size_t)sq->n_blocks * sizeof(int32_t));
            for (int b = sq->n_blocks; b < st->n_tab; b++) row_tab[b] = 0; /* never read */
        }
        h_last[i] = r0 + ch->n - 1;
        h_start[2 * i] = 0;
        h_start[2 * i + 1] = ch->n;
    }
    /* the filled part of the staging: everything before the tables, then R rows of tables */
    size_t head_ints = 2 * r + 3 * n, tab_ints = (size_t)st->R * st->n_tab;
    cuda_check(cudaMemcpyAsync(s->imem, s->h_imem, (head_ints + tab_ints) * sizeof(int32_t), cudaMemcpyHostToDevice,
                               e->stream));
}

/* One transformer block over the step's rows, x updated in place. */
static void layer_forward(InferGpu *e, int l, const StepLayout *st) {
    const Qwen3Params *p = &e->model->params;
    GpuInferScratch *s = &e->s;
    cudaStream_t q = e->stream;
    int R = st->R, C = e->C, I = e->I, NH = e->NH, NKV = e->NKV, D = e->D, QD = NH * D, KD = NKV * D;
    size_t bs = e->block_size, k_off = (size_t)l * 2 * bs * KD, v_off = k_off + bs * KD;

    /* attention: the norm straight into the products' bf16 operand, or
     * folded into the products at one or two rows; the q/k norms, RoPE and
     * the cache write in one launch (at batch 1 a step is as much launches
     * as work) */
    uint16_t *ln = s->ln; /* (R, C), while h (bf_scratch) is written from it */
    const uint16_t *wq = weight(e, p->wq + (size_t)l * QD * C), *wk = weight(e, p->wk + (size_t)l * KD * C);
    const uint16_t *wv = weight(e, p->wv + (size_t)l * KD * C), *wo = weight(e, p->wo + (size_t)l * C * QD);
    const uint16_t *wgate = weight(e, p->wgate + (size_t)l * I * C), *wup = weight(e, p->wup + (size_t)l * I * C);
    const uint16_t *wdown = weight(e, p->wdown + (size_t)l * C * I);
    StepProducts pr = st->products;
    const float *ln1_w = e->ln1_w + (size_t)l * C, *ln2_w = e->ln2_w + (size_t)l * C;
    float *const qkv[3] = {s->q, s->k, s->v};
    const uint16_t *const w_qkv[3] = {wq, wk, wv};
    const int OC_qkv[3] = {QD, KD, KD};
    if (pr != PRODUCTS_ROWS_NORMED) cuda_rmsnorm_forward_bf16(ln, NULL, s->x, ln1_w, R, C, e->eps, q);
    if (pr == PRODUCTS_ROWS_NORMED) {
        cuda_rows_matmul_normed(3, qkv, w_qkv, OC_qkv, s->x, ln1_w, e->eps, R, C, q);
    } else if (pr == PRODUCTS_ROWS) {
        cuda_rows_matmul(3, qkv, w_qkv, OC_qkv, NULL, ln, R, C, q);
    } else if (pr == PRODUCTS_ROWS_MMA) {
        cuda_rows_mma_matmul(3, qkv, w_qkv, OC_qkv, NULL, ln, R, C, q);
    } else {
        cuda_matmul_forward(e->blas, s->q, ln, wq, CUDA_BF16, R, C, QD, q);
        cuda_matmul_forward(e->blas, s->k, ln, wk, CUDA_BF16, R, C, KD, q);
        cuda_matmul_forward(e->blas, s->v, ln, wv, CUDA_BF16, R, C, KD, q);
    }
    const float *qw = e->q_norm_w + (size_t)l * D, *kw = e->k_norm_w + (size_t)l * D;
    if (st->fold) {
        cuda_decode_attention_folded_bf16(s->att, e->kv, s->q, s->k, s->v, qw, kw, e->rope_cos, e->rope_sin, e->eps,
                                          s->tables, st->n_tab, s->pos, R, NH, NKV, D, e->block_size,
                                          e->block_stride, k_off, v_off, st->max_ctx, s->dec_work, s->dec_work_bytes,
                                          q);
    } else {
        cuda_qk_norm_rope_cache_bf16(s->qn, s->kn, e->kv, s->q, s->k, s->v, qw, kw, s->pos, e->rope_cos, e->rope_sin,
                                     s->tables, st->n_tab, R, NH, NKV, D, e->eps, e->block_size, e->block_stride,
                                     k_off, v_off, q);
        cuda_decode_attention_bf16(s->att, s->qn, e->kv, s->tables, st->n_tab, s->pos, st->R_paged, NH, NKV, D,
                                   e->block_size, e->block_stride, k_off, v_off, st->max_ctx, s->dec_work,
                                   s->dec_work_bytes, q);
    }
    for (int i = 0; i < st->N; i++) {
        if (!st->flash[i]) continue;
        size_t r0 = (size_t)st->row_of_chunk[i];
        int n = st->chunks[i].n;
        cuda_attention_forward(s->att + r0 * QD, s->lse + r0 * NH, s->qn + r0 * QD, s->kn + r0 * KD, s->v + r0 * KD,
                               s->seq_zero, s->seq_start + 2 * i, n, NH, NKV, D, CUDA_BF16, q);
    }
    /* the output projection and the residual: res2 = x + att @ wo^T */
    if (pr == PRODUCTS_ROWS_NORMED || pr == PRODUCTS_ROWS) {
        cuda_rows_matmul_f32in(1, &s->res2, &wo, &C, s->x, s->att, R, QD, q);
    } else if (pr == PRODUCTS_ROWS_MMA) {
        cuda_rows_mma_matmul_f32in(1, &s->res2, &wo, &C, s->x, s->att, R, QD, q);
    } else {
        cuda_matmul_forward(e->blas, s->res2, to_bf16(e, s->att, (size_t)R * QD), wo, CUDA_BF16, R, QD, C, q);
        cuda_residual_add(s->res2, s->x, (long)R * C, q);
    }

    /* MLP: the norm, SwiGLU, and the residual: x = res2 + h @ wdown^T */
    uint16_t *h = bf_scratch(e, (size_t)R * I);
    if (pr != PRODUCTS_ROWS_NORMED) cuda_rmsnorm_forward_bf16(ln, NULL, s->res2, ln2_w, R, C, e->eps, q);
    if (pr == PRODUCTS_ROWS_NORMED || pr == PRODUCTS_ROWS) {
        if (pr == PRODUCTS_ROWS_NORMED) cuda_rows_swiglu_normed(h, wgate, wup, s->res2, ln2_w, e->eps, R, C, I, q);
        else cuda_rows_swiglu(h, wgate, wup, ln, R, C, I, q);
        cuda_rows_matmul(1, &s->x, &wdown, &C, s->res2, h, R, I, q);
    } else if (pr == PRODUCTS_ROWS_MMA) {
        float *const out[2] = {s->gate, s->up};
        const uint16_t *const w[2] = {wgate, wup};
        const int OC[2] = {I, I};
        cuda_rows_mma_matmul(2, out, w, OC, NULL, ln, R, C, q);
        cuda_swiglu_forward_bf16(h, s->gate, s->up, (long)R * I, q);
        cuda_rows_mma_matmul(1, &s->x, &wdown, &C, s->res2, h, R, I, q);
    } else {
        cuda_matmul_forward(e->blas, s->gate, ln, wgate, CUDA_BF16, R, C, I, q);
        cuda_matmul_forward(e->blas, s->up, ln, wup, CUDA_BF16, R, C, I, q);
        cuda_swiglu_forward_bf16(h, s->gate, s->up, (long)R * I, q);
        cuda_matmul_forward(e->blas, s->x, h, wdown, CUDA_BF16, R, I, C, q);
        cuda_residual_add(s->x, s->res2, (long)R * C, q);
    }
}

/* A step's launches after the upload: embedding, layers, the head on each
 * chunk's last row (logits into s->logits). No host work that depends on
 * anything but the layout, no allocation, no synchronization: a decode
 * step's are captured into a graph. */
static void step_launches(InferGpu *e, const StepLayout *st) {
    GpuInferScratch *s = &e->s;
    cudaStream_t q = e->stream;
    int n_chunks = st->N;
    /* the lookup follows the upload (a copy, not a kernel): a plain launch */
    cuda_embedding_forward_bf16(s->x, s->tok, weight(e, e->model->params.embed), st->R, e->C, q);
    StepProducts pr = st->products;
    /* Dependent launches pay where the step is a chain of short kernels,
     * each reading its weights: the few-row products (1-4 rows: steps 4-5%
     * shorter on an H100). Past them cuBLAS's products and the decode
     * attention take the step, and it ran 0-1% longer (doc/perf.md). */
    bool was = cuda_dependent_launch_on();
    cuda_dependent_launch_set(e->dependent_on && (pr == PRODUCTS_ROWS || pr == PRODUCTS_ROWS_NORMED));
    for (int l = 0; l < e->L; l++) layer_forward(e, l, st);

    /* the head on each chunk's last row: gathered with the embedding lookup
     * (a row gather: x is the "table", last_row the "tokens") */
    const float *xl = s->x;
    if (!st->head_is_rows) {
        cuda_embedding_forward(s->xl, s->last_row, s->x, n_chunks, e->C, q);
        xl = s->xl;
    }
    const uint16_t *head = weight(e, e->model->params.lm_head);
    if (pr != PRODUCTS_ROWS_NORMED) cuda_rmsnorm_forward(s->xf, s->rstdf, xl, e->norm_w, n_chunks, e->C, e->eps, q);
    if (pr == PRODUCTS_ROWS_NORMED)
        cuda_rows_matmul_normed(1, &s->logits, &head, &e->V, xl, e->norm_w, e->eps, n_chunks, e->C, q);
    else if (pr == PRODUCTS_ROWS)
        cuda_rows_matmul_f32in(1, &s->logits, &head, &e->V, NULL, s->xf, n_chunks, e->C, q);
    else if (pr == PRODUCTS_ROWS_MMA)
        cuda_rows_mma_matmul_f32in(1, &s->logits, &head, &e->V, NULL, s->xf, n_chunks, e->C, q);
    else
        cuda_matmul_forward(e->blas, s->logits, to_bf16(e, s->xf, (size_t)n_chunks * e->C), head, CUDA_BF16,
                            n_chunks, e->C, e->V, q);
    cuda_dependent_launch_set(was);
}

/* A decode step through its graph. The first time its key is seen the
 * step runs as plain launches (which also loads every kernel they use
 * before any capture: cuBLAS picks other kernels for a handful of rows
 * than for a prompt's) and is captured for next time, into a free slot or
 * the least recently used one's. */
static void step_graph_launch(InferGpu *e, const StepLayout *st) {
    StepGraph *g = NULL;
    for (int i = 0; i < e->n_graphs && !g; i++)
        if (e->graphs[i].R == st->R && e->graphs[i].n_tab == st->n_tab) g = &e->graphs[i];
    if (g) {
        g->last_use = ++e->graph_clock;
        cuda_check(cudaGraphLaunch(g->exec, e->stream));
        e->n_replayed++;
        return;
    }
    step_launches(e, st);
    if (e->n_graphs < GRAPH_SLOTS) {
        g = &e->graphs[e->n_graphs++];
    } else {
        g = &e->graphs[0];
        for (int i = 1; i < GRAPH_SLOTS; i++)
            if (e->graphs[i].last_use < g->last_use) g = &e->graphs[i];
        cuda_check(cudaGraphExecDestroy(g->exec));
    }
    cudaGraph_t graph;
    cuda_check(cudaStreamBeginCapture(e->stream, cudaStreamCaptureModeThreadLocal));
    step_launches(e, st);
    cuda_check(cudaStreamEndCapture(e->stream, &graph));
    cuda_check(cudaGraphInstantiate(&g->exec, graph, 0));
    cuda_check(cudaGraphDestroy(graph));
    g->R = st->R;
    g->n_tab = st->n_tab;
    g->last_use = ++e->graph_clock;
    e->n_captured++;
}

/* The kernels for the products of a step of R rows: the few-row ones up to
 * CUDA_ROWS_MAX (the norms folded in up to ROWS_NORM_FOLD_MAX), the
 * tensor-core ones up to CUDA_ROWS_MMA_MAX when on, else cuBLAS. Their
 * fp32 and bf16 inputs (att, xf, ln) must be 16-byte aligned. */
static StepProducts step_products(const InferGpu *e, int R) {
    const GpuInferScratch *s = &e->s;
    if (!aligned16(s->att) || !aligned16(s->xf) || !aligned16(s->ln)) return PRODUCTS_BLAS;
    if (e->rows_on && R <= CUDA_ROWS_MAX) return R <= ROWS_NORM_FOLD_MAX ? PRODUCTS_ROWS_NORMED : PRODUCTS_ROWS;
    if (e->rows_mma_on && R <= CUDA_ROWS_MMA_MAX) return PRODUCTS_ROWS_MMA;
    return PRODUCTS_BLAS;
}

/* The whole forward of checked chunks; the logits after each chunk's last
 * token are left in s->logits (N, V). */
static void forward_device(InferGpu *e, const InferChunk *chunks, int n_chunks) {
    cuda_check(cudaSetDevice(e->device));
    cudaStream_t q = e->stream;
    if (e->cap_layout < n_chunks) {
        e->cap_layout = n_chunks;
        e->row_of_chunk = xrealloc(e->row_of_chunk, (size_t)n_chunks * sizeof(int32_t));
        e->flash = xrealloc(e->flash, (size_t)n_chunks * sizeof(bool));
    }
    StepLayout st = {.row_of_chunk = e->row_of_chunk, .flash = e->flash};
    step_layout(e, chunks, n_chunks, &st);
    /* a decode step: its table width rounded up (the graph's key), the
     * decode split sized for that width. With graphs off too: the split
     * sets the merge's order of additions, and a step computes the same
     * bits whether it replays a graph or not. */
    bool decode = st.R == n_chunks && st.R_paged == n_chunks, graph = e->graphs_on && decode;
    if (decode) {
        int widest = (e->max_len + e->block_size - 1) / e->block_size;
        st.n_tab = pow2_at_least(st.n_tab);
        if (st.n_tab > widest) st.n_tab = widest;
        st.max_ctx = st.n_tab * e->block_size;
    }
    /* reserve before filling the staging: a bigger scratch is a new staging */
    scratch_reserve(e, st.R, n_chunks, (size_t)st.R * st.n_tab);
    st.products = step_products(e, st.R);
    st.fold = decode && infer_gpu_decode_fold(e);
    decode_work_reserve(e, cuda_decode_attention_work_bytes(st.R_paged, e->NH, e->D, st.max_ctx),
                        cuda_decode_attention_work_bound(st.R_paged, e->NH, e->D));
    /* the staging is pinned memory the previous step's copy may still read */
    cuda_check(cudaStreamSynchronize(q));
    step_upload(e, &st);
    if (graph) step_graph_launch(e, &st);
    else step_launches(e, &st);
    for (int i = 0; i < n_chunks; i++) e->kb.seqs[chunks[i].seq].len += chunks[i].n;
}

int infer_gpu_forward(InferGpu *e, const InferChunk *chunks, int n_chunks, float *logits, char *err, size_t errlen) {
    if (n_chunks < 1) return err_set(err, errlen, "inference: forward with no chunks");
    if (kv_check_chunks(&e->kb, chunks, n_chunks, e->V, e->max_len, err, errlen) != 0) return -1;
    forward_device(e, chunks, n_chunks);
    if (logits) {
        cuda_check(cudaMemcpyAsync(logits, e->s.logits, (size_t)n_chunks * e->V * sizeof(float),
                                   cudaMemcpyDeviceToHost, e->stream));
    }
    cuda_check(cudaStreamSynchronize(e->stream));
    return 0;
}

int infer_gpu_forward_sample(InferGpu *e, const InferChunk *chunks, int n_chunks, const SampleParams *params,
                             const double *u, int32_t *ids, float *logprobs, char *err, size_t errlen) {
    if (n_chunks < 1) return err_set(err, errlen, "inference: forward with no chunks");
    if (infer_check_draws(params, u, n_chunks, err, errlen) != 0) return -1;
    if (kv_check_chunks(&e->kb, chunks, n_chunks, e->V, e->max_len, err, errlen) != 0) return -1;
    forward_device(e, chunks, n_chunks);
    GpuInferScratch *s = &e->s;
    cudaStream_t q = e->stream;
    for (int i = 0; i < n_chunks; i++) {
        s->h_sp[i] = (CudaSampleParams){params[i].temperature, params[i].top_p, params[i].top_k};
        s->h_u[i] = u[i];
    }
    cuda_check(cudaMemcpyAsync(s->sp, s->h_sp, (size_t)n_chunks * sizeof(CudaSampleParams), cudaMemcpyHostToDevice, q));
    cuda_check(cudaMemcpyAsync(s->u, s->h_u, (size_t)n_chunks * sizeof(double), cudaMemcpyHostToDevice, q));
    cuda_sample_wide(s->ids, s->logprobs, s->logits, s->sp, s->u, n_chunks, e->V, s->sample_work,
                     s->sample_work_bytes, q);
    cuda_check(cudaMemcpyAsync(s->h_ids, s->ids, (size_t)n_chunks * sizeof(int32_t), cudaMemcpyDeviceToHost, q));
    cuda_check(cudaMemcpyAsync(s->h_logprobs, s->logprobs, (size_t)n_chunks * sizeof(float), cudaMemcpyDeviceToHost, q));
    cuda_check(cudaStreamSynchronize(q));
    memcpy(ids, s->h_ids, (size_t)n_chunks * sizeof(int32_t));
    memcpy(logprobs, s->h_logprobs, (size_t)n_chunks * sizeof(float));
    return 0;
}

/* The generator's view of the GPU engine (infer_gen_new_backend). */
static int gpu_seq_len(const void *engine, int seq) { return infer_gpu_seq_len(engine, seq); }
static int gpu_free_tokens(const void *engine) { return infer_gpu_free_tokens(engine); }
static int gpu_seq_new(void *engine, char *err, size_t errlen) { return infer_gpu_seq_new(engine, err, errlen); }
static int gpu_seq_fork(void *engine, int src, char *err, size_t errlen) {
    return infer_gpu_seq_fork(engine, src, err, errlen);
}
static void gpu_seq_free(void *engine, int seq) { infer_gpu_seq_free(engine, seq); }
static int gpu_forward(void *engine, const InferChunk *chunks, int n_chunks, float *logits, char *err, size_t errlen) {
    return infer_gpu_forward(engine, chunks, n_chunks, logits, err, errlen);
}

static int gpu_forward_sample(void *engine, const InferChunk *chunks, int n_chunks, const SampleParams *params,
                              const double *u, int32_t *ids, float *logprobs, char *err, size_t errlen) {
    return infer_gpu_forward_sample(engine, chunks, n_chunks, params, u, ids, logprobs, err, errlen);
}

InferBackend infer_gpu_backend(InferGpu *e) {
    return (InferBackend){.engine = e,
                          .max_len = e->max_len,
                          .block_size = e->block_size,
                          .seq_new = gpu_seq_new,
                          .seq_fork = gpu_seq_fork,
                          .seq_free = gpu_seq_free,
                          .seq_len = gpu_seq_len,
                          .free_tokens = gpu_free_tokens,
                          .forward = gpu_forward,
                          .forward_sample = gpu_forward_sample};
}

#endif
