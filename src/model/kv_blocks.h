/* kv_blocks.h — the bookkeeping of a paged KV cache: which blocks each
 * sequence holds, shared blocks, free blocks. The host side of both
 * inference engines (infer.c on the CPU, infer_gpu.c on a GPU); the cache
 * memory itself belongs to the engine, which copies a block's contents when
 * kv_seq_reserve asks it to.
 *
 * A sequence holds a table of block ids (position j is in block
 * blocks[j / block_size]); blocks carry a reference count, so a fork shares
 * all of its source's blocks, and a shared, partly filled last block is
 * copied before the sequence writes into it (copy-on-write). Free blocks are
 * a stack popped in the order 0, 1, 2, ...: the same calls give the same
 * block ids on every rank of a tensor-parallel group.
 */
#ifndef TAU2_MODEL_KV_BLOCKS_H
#define TAU2_MODEL_KV_BLOCKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model/infer.h"

typedef struct {
    bool live;
    int len;          /* tokens in the cache */
    int32_t *blocks;  /* (n_blocks) block table */
    int n_blocks, cap_blocks;
} KvSeq;

typedef struct {
    int block_size, n_blocks, max_seqs;
    int32_t *refs;      /* (n_blocks) */
    int32_t *free_list; /* (n_blocks) stack of free block ids */
    int n_free;
    KvSeq *seqs;        /* (max_seqs) */
} KvBlocks;

void kv_blocks_init(KvBlocks *kb, int n_blocks, int block_size, int max_seqs);
void kv_blocks_free(KvBlocks *kb);

bool kv_seq_ok(const KvBlocks *kb, int seq);
/* A new empty sequence: its id, or -1 with err when max_seqs are live. */
int kv_seq_new(KvBlocks *kb, char *err, size_t errlen);
/* A new sequence sharing src's blocks and length; -1 with err. */
int kv_seq_fork(KvBlocks *kb, int src, char *err, size_t errlen);
/* Release a live sequence's blocks (nothing for an unknown id). */
void kv_seq_free(KvBlocks *kb, int seq);

/* Validate a forward's chunks against the cache: live sequences, each at
 * most once, n >= 1, ids in [0, V), lengths within max_len, and enough free
 * blocks for all of them. 0, or -1 with err (nothing changed). */
int kv_check_chunks(const KvBlocks *kb, const InferChunk *chunks, int n_chunks, int V, int max_len, char *err,
                    size_t errlen);

/* Make room for n more tokens of seq (kv_check_chunks passed). When its
 * last block is shared and partly filled, the sequence takes a fresh block
 * in its place: *copy_from / *copy_to name the blocks whose contents the
 * engine must copy (both -1 when nothing is to copy). The length is not
 * changed: the engine adds n once the tokens are written. */
void kv_seq_reserve(KvBlocks *kb, int seq, int n, int32_t *copy_from, int32_t *copy_to);

#endif
