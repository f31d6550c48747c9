/* qwen3.h — the dense Qwen3 causal language model, CPU training path.
 *
 * The architecture is Hugging Face's Qwen3ForCausalLM: token embedding; per
 * layer x += o(attn(rope(qnorm(q(rms(x)))), rope(knorm(k(rms(x)))), v(rms(x))))
 * and x += down(silu(gate(rms(x))) * up(rms(x))); a final RMSNorm; lm_head
 * (or the embedding, when tie_word_embeddings). No biases. Grouped-query
 * attention, rotate-half RoPE, q/k RMSNorm per head before RoPE.
 *
 * Training works on a packed batch: several sequences laid end to end in
 * one token array, positions restarting at 0 in each, no attention across
 * sequence boundaries. The loss interface is generic so the rl layer builds
 * GRPO and SFT losses on top:
 *
 *   qwen3_zero_grad(m);
 *   for each micro-batch:
 *       qwen3_forward(m, &batch, logprob, entropy);   per-token values [T]
 *       <loss computes dlogprob[T], dentropy[T]; zeros where masked>
 *       qwen3_backward(m, dlogprob, dentropy);        grads +=
 *   qwen3_adamw_step(m, &opt, lr);
 *
 * Logits are never held for all tokens: the output head runs in chunks of
 * vocab_chunk tokens (default: qwen3_default_vocab_chunk), in forward and
 * again in backward; when all the tokens fit in one chunk the backward uses
 * the forward's logits instead of computing them again.
 *
 * All state is fp32: weights (the master copy), gradients, AdamW moments,
 * activations. Parameters live in one contiguous buffer, gradients and
 * moments in buffers of the same layout, so the optimizer, checkpoints and
 * weight broadcasts see flat arrays; Qwen3Tensor names each piece with its
 * Hugging Face name.
 *
 * Threads: OpenMP inside the layer functions; results are bit-identical for
 * any thread count (see layers_cpu.h).
 *
 * Tensor parallelism (Megatron): with a TP comm of size tp > 1 each rank holds
 * a shard: q/k/v/gate/up column-parallel (NH/tp query heads, NKV/tp kv heads,
 * I/tp of the MLP), o/down row-parallel (all-reduce of the output), embedding
 * and lm_head vocab-parallel (V/tp rows; the output head all-reduces the row
 * max and the softmax sums, never the logits), norm weights replicated. tp
 * must divide NH, NKV, I and V (qwen3_tp_check). config keeps the full model's
 * sizes; shard has this rank's; the parameter buffer, Qwen3Tensor shapes and
 * everything the optimizer sees are local. Forward, backward, grad norm and
 * AdamW are collective over the TP comm: every rank calls them in the same
 * order. logprob, entropy and the gradients of replicated weights come out
 * the same on every rank.
 */
#ifndef TAU2_MODEL_QWEN3_H
#define TAU2_MODEL_QWEN3_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cJSON.h>

#include "model/safetensors.h"

/* Tokens per chunk of the output head by default: as many multiples of
 * QWEN3_VOCAB_CHUNK as keep the logits scratch (chunk x vocab shard floats)
 * within QWEN3_LOGITS_BYTES, and at least QWEN3_VOCAB_CHUNK. Each chunk
 * reads the head's weights and adds into its whole gradient again, so a
 * small vocabulary (where 128 rows are only a few MiB) goes faster with
 * more rows per chunk; Qwen3's 151,936 columns stay at 128 rows (78 MiB). */
#define QWEN3_VOCAB_CHUNK 128
#define QWEN3_LOGITS_BYTES (64L << 20)

/* ------------------------------------------------------------ config */

typedef struct {
    int vocab_size;              /* V */
    int hidden_size;             /* C */
    int intermediate_size;       /* I */
    int num_layers;              /* L  (num_hidden_layers) */
    int num_heads;               /* NH (num_attention_heads) */
    int num_kv_heads;            /* NKV (num_key_value_heads); NH % NKV == 0 */
    int head_dim;                /* D, independent of C / NH; even, <= 512 */
    float rms_norm_eps;
    double rope_theta;
    bool tie_word_embeddings;
    int max_position_embeddings;
    char torch_dtype[16];        /* "bfloat16", "float32", ... ("" if absent) */
    int bos_token_id;            /* -1 when null or absent */
    int eos_token_id;            /* -1 when null or absent; first of a list */
} Qwen3Config;

/* Read config.json (a parsed object; path is used in messages). Validates
 * types and values: a missing or mistyped key, model_type other than
 * "qwen3", NH % NKV != 0, rope_scaling not null, sliding window, attention
 * bias or an activation other than silu are errors naming path and key.
 * Returns 0, or -1 with err filled. */
int qwen3_config_from_json(const cJSON *j, const char *path, Qwen3Config *cfg, char *err, size_t errlen);
int qwen3_config_load(const char *path, Qwen3Config *cfg, char *err, size_t errlen);
/* A config.json object transformers loads as Qwen3ForCausalLM. */
cJSON *qwen3_config_to_json(const Qwen3Config *cfg);

/* ------------------------------------------------------------ parameters */

/* Pointers into one contiguous buffer; shapes are [out, in], layers stacked. */
typedef struct {
    float *embed;    /* (V, C)          model.embed_tokens.weight */
    float *ln1_w;    /* (L, C)          model.layers.N.input_layernorm.weight */
    float *wq;       /* (L, NH*D, C)    .self_attn.q_proj.weight */
    float *wk;       /* (L, NKV*D, C)   .self_attn.k_proj.weight */
    float *wv;       /* (L, NKV*D, C)   .self_attn.v_proj.weight */
    float *q_norm_w; /* (L, D)          .self_attn.q_norm.weight */
    float *k_norm_w; /* (L, D)          .self_attn.k_norm.weight */
    float *wo;       /* (L, C, NH*D)    .self_attn.o_proj.weight */
    float *ln2_w;    /* (L, C)          .post_attention_layernorm.weight */
    float *wgate;    /* (L, I, C)       .mlp.gate_proj.weight */
    float *wup;      /* (L, I, C)       .mlp.up_proj.weight */
    float *wdown;    /* (L, C, I)       .mlp.down_proj.weight */
    float *norm_w;   /* (C)             model.norm.weight */
    float *lm_head;  /* (V, C)          lm_head.weight; == embed when tied */
} Qwen3Params;

#define QWEN3_NUM_PARAM_KINDS 14

/* How a tensor is divided over tensor-parallel ranks. */
typedef enum {
    QWEN3_REPLICATED, /* every rank holds all of it (norm weights) */
    QWEN3_SPLIT_ROWS, /* rank r holds rows [r * rows, (r + 1) * rows): q/k/v/gate/up, embed, lm_head */
    QWEN3_SPLIT_COLS, /* rank r holds columns [r * cols, (r + 1) * cols) of every row: o, down */
} Qwen3Split;

/* One Hugging Face tensor: a slice [offset, offset + numel) of the buffer.
 * shape is this rank's part; full_shape the whole tensor's (equal at TP = 1). */
typedef struct {
    char name[96];
    size_t offset;
    size_t numel;
    int ndim;
    int64_t shape[2];
    int64_t full_shape[2];
    Qwen3Split split;
} Qwen3Tensor;

/* This rank's part of the model; at TP = 1 the counts equal the config's. */
typedef struct {
    int rank, size;        /* position in the tensor-parallel group */
    int num_heads;         /* NH / size: query heads rank * num_heads .. */
    int num_kv_heads;      /* NKV / size */
    int intermediate_size; /* I / size */
    int vocab_size;        /* V / size rows of embed and lm_head */
    int vocab_start;       /* rank * vocab_size */
} Qwen3Shard;

/* ------------------------------------------------------------ batch */

/* A packed batch. Sequence s is tokens [seq_start[s], seq_start[s+1]);
 * seq_start[0] == 0, seq_start[n_seqs] == T, each sequence non-empty.
 * targets[t] is the token whose logprob position t reports (usually the
 * next token of the same sequence), or -1 for none (logprob 0). */
typedef struct {
    int T;
    int n_seqs;
    const int32_t *tokens;    /* (T) */
    const int32_t *targets;   /* (T) */
    const int32_t *seq_start; /* (n_seqs + 1) */
    /* (T) or NULL: when given, only rows with head_mask[t] != 0 get the
     * output head; the others report logprob 0 and entropy 0 and take no
     * gradient from it. Training sets it to the loss mask: a GRPO prompt of
     * thousands of tokens then skips its (prompt length x vocabulary)
     * logits, forward and backward. */
    const uint8_t *head_mask;
} Qwen3Batch;

/* targets[t] = tokens[t+1] inside a sequence, -1 at each sequence's end. */
void qwen3_next_token_targets(const int32_t *tokens, const int32_t *seq_start, int n_seqs,
                              int32_t *targets /* (T) */);
/* Each token's position in its sequence and its sequence's index; returns
 * the longest sequence's length. */
int qwen3_batch_positions(const Qwen3Batch *b, int32_t *pos /* (T) */, int32_t *seq_of /* (T) */);
/* The rows that get the output head (every row, or those with head_mask
 * != 0), in order; returns how many. */
int qwen3_head_rows(const Qwen3Batch *b, int32_t *rows /* (T) */);

/* ------------------------------------------------------------ optimizer */

typedef struct {
    float beta1, beta2, eps;
    float weight_decay;  /* decoupled: p -= lr * wd * p */
    float max_grad_norm; /* <= 0: no clipping */
    bool decay_1d;       /* weight decay on norm weights too (PyTorch default) or not (Megatron) */
} Qwen3AdamW;

/* ------------------------------------------------------------ the model */

typedef struct Qwen3Acts Qwen3Acts;
struct Comm;

typedef struct {
    Qwen3Config config;
    /* tensor parallelism: the TP group (borrowed; NULL at TP = 1) and this
     * rank's shard */
    struct Comm *tp;
    Qwen3Shard shard;

    /* weights */
    Qwen3Params params;
    size_t param_sizes[QWEN3_NUM_PARAM_KINDS];
    size_t num_parameters;
    float *params_memory;
    Qwen3Tensor *tensors; /* the Hugging Face view, in load/save order */
    int n_tensors;

    /* gradients (allocated on first backward) and AdamW state (first step) */
    Qwen3Params grads;
    float *grads_memory;
    float *m_memory;
    float *v_memory;
    int adam_step;

    /* activation recomputation: keep only each layer's input and its
     * attention's output and lse, and recompute the rest of the layer in
     * backward, the attention and the down projection left out (their
     * outputs are kept); bit-identical results, far less memory. */
    bool recompute;
    /* tokens per output-head chunk (qwen3_default_vocab_chunk); may be
     * changed between steps */
    int vocab_chunk;

    /* activations and scratch: one arena, resized when T grows */
    Qwen3Acts *acts;
} Qwen3;

/* A model with zeroed weights. */
Qwen3 *qwen3_new(const Qwen3Config *cfg);
/* The default vocab_chunk for a vocabulary shard of vocab_shard columns. */
int qwen3_default_vocab_chunk(int vocab_shard);
/* The most rows, a multiple of QWEN3_VOCAB_CHUNK and at least that, whose
 * logits (rows x vocab_shard floats) fit in logits_bytes. */
int qwen3_vocab_chunk_within(int vocab_shard, long logits_bytes);
void qwen3_free(Qwen3 *m);

/* 0 when tp ranks can split the model (tp divides num_attention_heads,
 * num_key_value_heads, intermediate_size and vocab_size), else -1 with err
 * naming the first count that does not divide. */
int qwen3_tp_check(const Qwen3Config *cfg, int tp, char *err, size_t errlen);
/* Rank `rank`'s shard of a model split over `size` ranks (checked with
 * qwen3_tp_check): every rank's counts are alike. */
void qwen3_shard_init(Qwen3Shard *sh, const Qwen3Config *cfg, int size, int rank);
/* Parameters of one rank's shard at tensor-parallel size tp (checked with
 * qwen3_tp_check): what its weights, gradients and moments each hold. */
size_t qwen3_shard_num_parameters(const Qwen3Config *cfg, int tp);
/* Bytes of one rank's training activations for a micro-batch of T tokens
 * (the arena the forward allocates), at tensor-parallel size tp. */
double qwen3_acts_bytes(const Qwen3Config *cfg, int tp, int T, bool recompute);
/* This rank's shard of a model with zeroed weights. tp (borrowed, must
 * outlive the model) may be NULL or of size 1: the same as qwen3_new. NULL
 * with err when tp does not divide the model (qwen3_tp_check). */
Qwen3 *qwen3_new_tp(const Qwen3Config *cfg, struct Comm *tp, char *err, size_t errlen);
/* qwen3_load_dir for one rank of a TP group: every rank reads the full
 * tensors and keeps its slice. Not collective; errors are the same on all
 * ranks when they read the same directory. */
Qwen3 *qwen3_load_dir_tp(const char *dir, struct Comm *tp, char *err, size_t errlen);
/* Collective over the TP group: the full tensor ti (shape full_shape) of a
 * buffer laid out like the parameters (params, grads, m or v memory) into out
 * (full numel floats) on rank root; out is not touched on other ranks. */
void qwen3_gather_tensor(const Qwen3 *m, const float *memory, int ti, float *out, int root);

/* Not collective: copy this rank's slice of the full tensor ti (full_shape
 * floats) into a buffer laid out like the parameters (the inverse of
 * qwen3_gather_tensor, for loading full-size checkpoints into a shard). */
void qwen3_set_tensor(const Qwen3 *m, float *memory, int ti, const float *full);
/* Load a Hugging Face model directory (config.json and model.safetensors or
 * a sharded index). Every expected tensor must be present with the right
 * shape and no other tensor may be there. NULL with err filled. */
Qwen3 *qwen3_load_dir(const char *dir, char *err, size_t errlen);
/* Copy weights from an open safetensors directory (shapes and names
 * checked as above); dir_name is used in messages. */
int qwen3_load_weights(Qwen3 *m, const StDir *st, const char *dir_name, char *err, size_t errlen);
/* Write model.safetensors (dtype ST_F32, ST_BF16 or ST_F16), then
 * config.json, into dir (created if missing): a directory with config.json
 * has its weights. Returns 0, or -1 with err. At TP > 1 it is
 * collective: the shards are gathered and TP rank 0 writes full tensors; every
 * rank returns rank 0's result and message. */
int qwen3_export_dir(const Qwen3 *m, const char *dir, StDtype dtype, char *err, size_t errlen);

/* Check a batch against the model: sizes, token and target ids. */
int qwen3_check_batch(const Qwen3 *m, const Qwen3Batch *b, char *err, size_t errlen);

/* Forward over a packed batch: logprob[t] of targets[t] and the entropy of
 * the predictive distribution at every position. Keeps the activations
 * backward needs (copying the batch). The batch must pass
 * qwen3_check_batch; a bad one is a bug (die_runtime). */
void qwen3_forward(Qwen3 *m, const Qwen3Batch *b, float *logprob /* (T) */, float *entropy /* (T) */);
/* The loss's gradient for qwen3_forward_head_grad: given the logprob and
 * entropy of n head rows (rows[i] is the row's position in the batch), fill
 * dlogprob[0, n) with dloss/dlogprob and, when dentropy is not NULL,
 * dentropy[0, n) with dloss/dentropy. The values of a row may depend only on
 * that row (a per-token loss with normalizers known in advance, as GRPO's and
 * SFT's are). Called once per head chunk, in row order. */
typedef void (*Qwen3HeadGradFn)(void *ctx, int n, const int32_t *rows /* (n) */, const float *logprob /* (n) */,
                                const float *entropy /* (n) */, float *dlogprob /* (n) */,
                                float *dentropy /* (n) or NULL */);

/* qwen3_forward, with the output head's backward done chunk by chunk while
 * the chunk's logits are at hand, with the gradients grad_fn gives: the
 * backward then starts below the head (qwen3_backward(m, NULL, NULL)) and
 * never computes logits again. The head's weight gradient is added during
 * this call, so zero the gradients before it, not between it and the
 * backward. with_dentropy: grad_fn also gives dloss/dentropy. Same
 * gradients as forward, loss, backward, up to the order in which the head's
 * chunks add into the head's weight gradient. */
void qwen3_forward_head_grad(Qwen3 *m, const Qwen3Batch *b, float *logprob /* (T) */, float *entropy /* (T) */,
                             Qwen3HeadGradFn grad_fn, void *grad_ctx, bool with_dentropy);
/* Logits of rows [t0, t0 + n) of the last forward (for tests and sampling).
 * At TP > 1 collective: the vocab shards are gathered, every rank gets all V. */
void qwen3_logits(Qwen3 *m, int t0, int n, float *out /* (n, V) */);

/* Gradients of the last forward's batch, added into m->grads. dlogprob and
 * dentropy are dloss/dlogprob[T] and dloss/dentropy[T] (zeros where masked;
 * dentropy may be NULL); both NULL after qwen3_forward_head_grad. */
void qwen3_zero_grad(Qwen3 *m); /* allocates the gradients the first time */
void qwen3_backward(Qwen3 *m, const float *dlogprob /* (T) */, const float *dentropy /* (T) or NULL */);

/* Global L2 norm of all gradients (double sum in fixed blocks). At TP > 1:
 * squares summed over this rank's shards (replicated weights on TP rank 0
 * only), all-reduced, then the sqrt: the full model's norm on every rank. */
float qwen3_grad_norm(const Qwen3 *m);
/* Clip (scale by max_norm / (norm + 1e-6) when that is < 1, as PyTorch's
 * clip_grad_norm_), then one AdamW step with bias correction, as PyTorch
 * orders it (bc1 = 1 - beta1^t, bc2 = 1 - beta2^t):
 *   p = p (1 - lr wd) - lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps).
 * The gradients are read, not changed. Returns the norm before clipping.
 * At TP > 1 each rank steps its shards, then the replicated weights are
 * broadcast from TP rank 0 so they stay bit-identical on every rank. */
float qwen3_adamw_step(Qwen3 *m, const Qwen3AdamW *opt, float lr);
/* Allocates AdamW's moments m and v (zero) if they are not there yet; the
 * first qwen3_adamw_step does it too (a resumed run fills them first). */
void qwen3_alloc_moments(Qwen3 *m);

/* SFT loss: mean of -logprob over positions with mask != 0 (0 if none).
 * Fills dlogprob (T) with its gradient (-1/n where masked in, else 0). */
float qwen3_sft_loss(const float *logprob, const float *mask, int T, float *dlogprob);
/* The same gradient at single positions, for qwen3_forward_head_grad: a
 * Qwen3HeadGradFn whose ctx is a Qwen3SftRows, giving g where mask != 0
 * and 0 elsewhere (dentropy, when asked, 0). g is -1/n for the n trained
 * positions, which may be counted over more than this batch (a step's
 * micro-batches and ranks); qwen3_sft_rows_for counts the batch's own. */
typedef struct {
    const float *mask; /* (T) */
    float g;
} Qwen3SftRows;

Qwen3SftRows qwen3_sft_rows_for(const float *mask, int T);
void qwen3_sft_rows(void *ctx, int n, const int32_t *rows, const float *logprob, const float *entropy,
                    float *dlogprob, float *dentropy);

#endif
