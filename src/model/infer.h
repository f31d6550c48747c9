/* infer.h — the Qwen3 inference engine on the CPU: paged KV cache, prefill,
 * batched decode with continuous batching, prefix sharing, sampling.
 *
 * Two levels:
 *
 *   InferEngine  sequences and their KV cache. infer_forward() appends tokens
 *                to several sequences in one pass (a long prompt is one chunk
 *                of many tokens, a decode step one token per sequence; both
 *                mix freely in one call) and returns the logits of each
 *                chunk's last token. infer_seq_fork() shares a sequence's
 *                cache with a new one (copy-on-write), so a GRPO group of n
 *                samples prefills its prompt once. Appending to a live
 *                sequence (an environment turn) computes only the new tokens.
 *
 *   InferGen     generation requests over the engine. Each request names a
 *                sequence, tokens still to feed, sampling parameters and stop
 *                conditions; infer_gen_step() runs one forward over every
 *                active request and samples one token for each. Requests join
 *                (infer_gen_add) and finish between steps: continuous
 *                batching.
 *
 * KV cache: fixed-size blocks of block_size tokens from one pool sized by the
 * token budget; each sequence holds a table of block indices; blocks carry a
 * reference count, and a shared block is copied before it is written. A step
 * that needs more blocks than are free fails with an error naming the budget
 * and changes nothing.
 *
 * Numerics: fp32 throughout. Rows decoded alone or in small chunks go through
 * a matrix-vector kernel whose every output is one dot product in a fixed
 * order, so a sequence's logits do not depend on which other sequences share
 * the step, nor on the OpenMP thread count; chunks of INFER_GEMM_MIN_ROWS or
 * more tokens (prefill) use sgemm on the chunk alone. Attention reads the
 * paged cache one query at a time (online softmax over tiles of 64 keys);
 * a new sequence's first chunk of 64 or more tokens (a prompt) attends
 * within itself through the training kernel's flash tiles instead.
 *
 * Tensor parallelism: an engine may span a TP group (InferOptions.group).
 * Each rank holds its shard of the model (qwen3_load_dir_tp over the group:
 * q/k/v and gate/up rows, o and down columns, vocab rows of embed and
 * lm_head, as in training) and the KV cache of its kv heads. A forward
 * all-reduces the embedding, the o_proj output and the down_proj output, and
 * gathers the vocab slices of the logits on group rank 0, the leader.
 *
 * Lockstep: only the leader calls the functions below; every call that
 * changes the engine (infer_new, sequences, infer_forward, infer_free, and
 * so every generation step) is broadcast to the other ranks first, and they
 * replay it inside infer_follow. Sampling happens on the leader alone, so
 * the followers never need the logits. The leader ends the followers'
 * infer_follow with infer_follow_end once it creates no more engines. At one
 * rank (group NULL or of size 1) none of this runs.
 *
 * Numerics at TP > 1: the all-reduced partial sums of o_proj and down_proj
 * add in another order than one dot product, so logits differ from TP = 1
 * in the last bits (relative 1e-6 on the tiny model); everything else is
 * the same arithmetic per head, row and vocabulary entry.
 */
#ifndef TAU2_MODEL_INFER_H
#define TAU2_MODEL_INFER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model/qwen3.h"
#include "model/sample.h"
#include "text/tokenizer.h"

/* Chunks with at least this many tokens use sgemm; shorter ones the
 * batch-invariant kernel. */
#define INFER_GEMM_MIN_ROWS 8
#define INFER_DEFAULT_BLOCK_SIZE 16
/* A new sequence's first chunk of at least this many tokens (a prompt)
 * attends within itself through the training kernel's flash tiles: a prompt
 * of T tokens costs T^2/2 dot products either way, and the tiles do them
 * several times faster than one query at a time. */
#define INFER_FLASH_MIN_ROWS 64
/* Pending tokens one generation step feeds at most, by default
 * (infer_gen_set_step_tokens): sglang's --chunked-prefill-size on an 80 GB
 * GPU. */
#define INFER_DEFAULT_STEP_TOKENS 8192

typedef struct {
    int kv_tokens;  /* KV cache budget in tokens (rounded up to whole blocks); > 0 */
    int block_size; /* tokens per block; 0: INFER_DEFAULT_BLOCK_SIZE */
    int max_seqs;   /* live sequences at most; 0: 1024 */
    int max_len;    /* longest sequence; 0: the model's max_position_embeddings */
    /* the engine's TP group (borrowed; NULL or size 1: this rank alone). The
     * model must be this rank's shard of a group of that size; only group
     * rank 0 calls infer_new, the other ranks run infer_follow. */
    struct Comm *group;
} InferOptions;

typedef struct InferEngine InferEngine;

/* Bytes of the CPU engine's KV cache for kv_tokens on one rank of an engine
 * of tp ranks: whole blocks of block_size tokens (0: the default), keys and
 * values of every layer of the rank's kv heads (num_key_value_heads / tp). */
double infer_kv_cache_bytes(const Qwen3Config *c, int tp, int kv_tokens, int block_size);

/* An engine over model's weights (borrowed: the model must outlive it and
 * its weights may change between steps, e.g. after a weight broadcast). */
InferEngine *infer_new(const Qwen3 *model, const InferOptions *opt, char *err, size_t errlen);
void infer_free(InferEngine *e);

/* A follower of a TP group (group rank >= 1): replay the leader's engines
 * on this rank's shard (model) until the leader calls infer_follow_end;
 * engines come and go meanwhile (infer_new ... infer_free on the leader).
 * Returns 0, or -1 with err when called on rank 0 or at one rank, or with a
 * model that is not this rank's shard. A replica that cannot follow (a bug)
 * is die_runtime. */
int infer_follow(const Qwen3 *model, struct Comm *group, char *err, size_t errlen);
/* On the leader (group rank 0; nothing elsewhere or at one rank): end the
 * followers' infer_follow. No engine of the group may be alive. */
void infer_follow_end(struct Comm *group);

/* ---- sequences ---- */

/* A new empty sequence: its id (>= 0), or -1 with err when max_seqs are live. */
int infer_seq_new(InferEngine *e, char *err, size_t errlen);
/* A new sequence with src's tokens, sharing src's cache blocks. */
int infer_seq_fork(InferEngine *e, int src, char *err, size_t errlen);
/* Release a sequence and its references to cache blocks. */
void infer_seq_free(InferEngine *e, int seq);
/* Tokens in the sequence's cache. */
int infer_seq_len(const InferEngine *e, int seq);
/* Tokens that fit in the free blocks; blocks in use (shared ones once). */
int infer_free_tokens(const InferEngine *e);
int infer_used_blocks(const InferEngine *e);
int infer_block_size(const InferEngine *e);

/* ---- forward ---- */

typedef struct {
    int seq;            /* a live sequence, at most once per call */
    const int32_t *ids; /* (n) tokens appended to it */
    int n;              /* >= 1 */
} InferChunk;

/* Append each chunk's tokens to its sequence (keys and values into the
 * cache) and write the logits after each chunk's last token into logits
 * (n_chunks, V) in chunk order (logits may be NULL: cache only). Returns 0,
 * or -1 with err (unknown sequence, bad token id, sequence longer than
 * max_len, KV budget exceeded); on error nothing has changed. */
int infer_forward(InferEngine *e, const InferChunk *chunks, int n_chunks, float *logits, char *err, size_t errlen);

/* The forward, then one token per chunk from the logits after its last
 * token: sample_token with params[i] and the draw u[i] in [0, 1); ids[i]
 * and logprobs[i] (log_softmax at temperature 1). 0, or -1 with err (a bad
 * parameter or draw, or infer_forward's errors; nothing changed). The GPU
 * engine's twin is infer_gpu_forward_sample. */
int infer_forward_sample(InferEngine *e, const InferChunk *chunks, int n_chunks, const SampleParams *params,
                         const double *u, int32_t *ids, float *logprobs, char *err, size_t errlen);
/* The check both engines' sampled forwards make first: every params[i]
 * valid (sample_check_params) and every u[i] in [0, 1). 0, or -1 with err
 * naming the chunk. */
int infer_check_draws(const SampleParams *params, const double *u, int n_chunks, char *err, size_t errlen);

/* An engine's calls behind one interface, so that the generator and its
 * callers drive the CPU engine (infer_backend) or the GPU engine
 * (infer_gpu_backend in infer_gpu.h) alike. The engine is borrowed. */
typedef struct {
    void *engine;
    int max_len;    /* the longest sequence */
    int block_size; /* tokens per cache block */
    /* as infer_seq_new, infer_seq_fork, infer_seq_free, infer_seq_len (-1: unknown sequence) */
    int (*seq_new)(void *engine, char *err, size_t errlen);
    int (*seq_fork)(void *engine, int src, char *err, size_t errlen);
    void (*seq_free)(void *engine, int seq);
    int (*seq_len)(const void *engine, int seq);
    /* as infer_free_tokens */
    int (*free_tokens)(const void *engine);
    /* as infer_forward and infer_forward_sample */
    int (*forward)(void *engine, const InferChunk *chunks, int n_chunks, float *logits, char *err, size_t errlen);
    int (*forward_sample)(void *engine, const InferChunk *chunks, int n_chunks, const SampleParams *params,
                          const double *u, int32_t *ids, float *logprobs, char *err, size_t errlen);
} InferBackend;

InferBackend infer_backend(InferEngine *e);

/* ---- generation with continuous batching ---- */

typedef enum {
    INFER_RUNNING = 0,
    INFER_FINISH_STOP_ID,     /* sampled one of stop_ids (included in ids) */
    INFER_FINISH_STOP_STRING, /* the decoded text contains a stop string; the token completing it is included */
    INFER_FINISH_LENGTH,      /* max_new_tokens sampled, or the sequence reached max_len */
} InferFinish;

/* "stop_id", "stop_string", "length" ("running" while running). */
const char *infer_finish_name(InferFinish f);

typedef struct {
    SampleParams sample;
    uint64_t seed;      /* draws are rng_uniform(seed, stream, position of the sampled token) */
    uint64_t stream;    /* e.g. prompt index * n_samples + sample index */
    int max_new_tokens; /* >= 1 */
    const int32_t *stop_ids;          /* (n_stop_ids), copied */
    int n_stop_ids;
    const char *const *stop_strings;  /* (n_stop_strings), copied; needs a tokenizer */
    int n_stop_strings;
} InferGenParams;

typedef struct InferGen InferGen;

/* tok (borrowed, may be NULL) turns sampled ids into bytes for stop strings. */
InferGen *infer_gen_new(InferEngine *e, const Tokenizer *tok);
/* The same over any engine (b is copied). */
InferGen *infer_gen_new_backend(const InferBackend *b, const Tokenizer *tok);
void infer_gen_free(InferGen *g);
/* Chunked prefill: one step feeds at most max_tokens pending tokens
 * (0, and until set: INFER_DEFAULT_STEP_TOKENS; < 0: no limit). Decoding requests
 * (one pending token) always go; the longer pending lists of new prompts and
 * appended turns share what is left, in request order, and a list that does
 * not fit is fed over several steps, sampling only after its last token. So
 * the rows of one forward, and the engine's activation scratch, stay near
 * max_tokens however many turns arrive at once, and decoding requests keep
 * stepping while a long prompt goes in. The limit changes logits only in
 * their last bits (a prompt's later pieces attend to its earlier ones
 * through the cache), and each draw is keyed by its position, not its
 * step. */
void infer_gen_set_step_tokens(InferGen *g, int max_tokens);
/* Tokens ids (n >= 1) into sequence seq's cache outside any request (a
 * prompt that samples share through forks), no logits, in pieces of at
 * most the step limit: the same bound on a forward's rows as a step's. 0,
 * or -1 with err; the pieces before a failing one stay in the cache. */
int infer_gen_prefill(InferGen *g, int seq, const int32_t *ids, int n, char *err, size_t errlen);

/* Start generating on sequence seq (owned by the caller; it must not be in
 * another running request). pending (n_pending >= 1) are tokens not yet in
 * the cache: the rest of a prompt, or after a finished request, its last
 * sampled id followed by the next turn's tokens. The first step feeds them
 * all; the first token is sampled from the logits after the last one.
 * Returns the request id, or -1 with err. */
int infer_gen_add(InferGen *g, int seq, const int32_t *pending, int n_pending, const InferGenParams *p, char *err,
                  size_t errlen);

/* One forward over every running request and one sampled token each.
 * Returns the number still running, or -1 with err (KV budget exceeded:
 * nothing changed; free or finish sequences and call again). */
int infer_gen_step(InferGen *g, char *err, size_t errlen);
int infer_gen_running(const InferGen *g);

typedef struct {
    int seq;
    const int32_t *ids;     /* (n) sampled ids */
    const float *logprobs;  /* (n) log_softmax at temperature 1 of each id */
    int n;
    InferFinish finish;
} InferGenResult;

/* A request's output so far (pointers valid until the next step or release).
 * The last sampled id is not in the sequence's cache yet. */
InferGenResult infer_gen_result(const InferGen *g, int req);
/* Forget a finished (or abandoned) request; its sequence lives on. */
void infer_gen_release(InferGen *g, int req);

/* Stop-string test used by the generator: text[0, len) ends a generation
 * when a stop string occurs in it ending after byte old_len (i.e. touching
 * the bytes the newest token added). Returns the stop string's index or -1. */
int infer_stop_string_match(const char *text, size_t len, size_t old_len, const char *const *stops, int n_stops);

#endif
