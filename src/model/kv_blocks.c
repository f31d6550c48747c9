/* kv_blocks.c — paged KV cache bookkeeping (see kv_blocks.h). */
#include "model/kv_blocks.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

void kv_blocks_init(KvBlocks *kb, int n_blocks, int block_size, int max_seqs) {
    memset(kb, 0, sizeof *kb);
    kb->block_size = block_size;
    kb->n_blocks = n_blocks;
    kb->max_seqs = max_seqs;
    kb->refs = xcalloc((size_t)n_blocks, sizeof(int32_t));
    kb->free_list = xmalloc((size_t)n_blocks * sizeof(int32_t));
    /* Pop order 0, 1, 2, ...: the stack holds the highest id at the bottom. */
    for (int i = 0; i < n_blocks; i++) kb->free_list[i] = n_blocks - 1 - i;
    kb->n_free = n_blocks;
    kb->seqs = xcalloc((size_t)max_seqs, sizeof(KvSeq));
}

void kv_blocks_free(KvBlocks *kb) {
    if (kb->seqs) {
        for (int i = 0; i < kb->max_seqs; i++) free(kb->seqs[i].blocks);
    }
    free(kb->seqs);
    free(kb->refs);
    free(kb->free_list);
    memset(kb, 0, sizeof *kb);
}

bool kv_seq_ok(const KvBlocks *kb, int seq) {
    return seq >= 0 && seq < kb->max_seqs && kb->seqs[seq].live;
}

int kv_seq_new(KvBlocks *kb, char *err, size_t errlen) {
    for (int i = 0; i < kb->max_seqs; i++) {
        KvSeq *s = &kb->seqs[i];
        if (s->live) continue;
        s->live = true;
        s->len = 0;
        s->n_blocks = 0;
        return i;
    }
    return err_set(err, errlen, "inference: all %d sequence slots are in use (max_seqs)", kb->max_seqs);
}

static void seq_push_block(KvSeq *s, int32_t b) {
    if (s->n_blocks == s->cap_blocks) {
        s->cap_blocks = s->cap_blocks ? 2 * s->cap_blocks : 8;
        s->blocks = xrealloc(s->blocks, (size_t)s->cap_blocks * sizeof(int32_t));
    }
    s->blocks[s->n_blocks++] = b;
}

int kv_seq_fork(KvBlocks *kb, int src, char *err, size_t errlen) {
    if (!kv_seq_ok(kb, src)) return err_set(err, errlen, "inference: fork of unknown sequence %d", src);
    int id = kv_seq_new(kb, err, errlen);
    if (id < 0) return -1;
    KvSeq *s = &kb->seqs[src], *d = &kb->seqs[id];
    for (int i = 0; i < s->n_blocks; i++) {
        seq_push_block(d, s->blocks[i]);
        kb->refs[s->blocks[i]]++;
    }
    d->len = s->len;
    return id;
}

static void block_release(KvBlocks *kb, int32_t b) {
    if (--kb->refs[b] == 0) kb->free_list[kb->n_free++] = b;
}

static int32_t block_take(KvBlocks *kb) {
    int32_t b = kb->free_list[--kb->n_free];
    kb->refs[b] = 1;
    return b;
}

void kv_seq_free(KvBlocks *kb, int seq) {
    if (!kv_seq_ok(kb, seq)) return;
    KvSeq *s = &kb->seqs[seq];
    for (int i = 0; i < s->n_blocks; i++) block_release(kb, s->blocks[i]);
    s->n_blocks = 0;
    s->len = 0;
    s->live = false;
}

/* Blocks s needs to grow by n tokens: new blocks, plus a copy of its last
 * block when that is partly filled and shared (copy-on-write). */
static int blocks_needed(const KvBlocks *kb, const KvSeq *s, int n) {
    int bs = kb->block_size;
    int need = (s->len + n + bs - 1) / bs - s->n_blocks;
    if (s->len % bs != 0 && kb->refs[s->blocks[s->n_blocks - 1]] > 1) need++;
    return need;
}

int kv_check_chunks(const KvBlocks *kb, const InferChunk *chunks, int n_chunks, int V, int max_len, char *err,
                    size_t errlen) {
    int need = 0;
    for (int i = 0; i < n_chunks; i++) {
        const InferChunk *ch = &chunks[i];
        if (!kv_seq_ok(kb, ch->seq)) return err_set(err, errlen, "inference: chunk %d: unknown sequence %d", i, ch->seq);
        if (ch->n < 1) return err_set(err, errlen, "inference: chunk %d: no tokens", i);
        for (int j = 0; j < i; j++) {
            if (chunks[j].seq == ch->seq) {
                return err_set(err, errlen, "inference: sequence %d appears in chunks %d and %d", ch->seq, j, i);
            }
        }
        for (int t = 0; t < ch->n; t++) {
            if (ch->ids[t] < 0 || ch->ids[t] >= V) {
                return err_set(err, errlen, "inference: sequence %d: token id %d is outside the vocabulary (%d)",
                               ch->seq, ch->ids[t], V);
            }
        }
        const KvSeq *s = &kb->seqs[ch->seq];
        if (s->len + ch->n > max_len) {
            return err_set(err, errlen, "inference: sequence %d: %d + %d tokens exceed the context length %d",
                           ch->seq, s->len, ch->n, max_len);
        }
        need += blocks_needed(kb, s, ch->n);
    }
    if (need > kb->n_free) {
        return err_set(err, errlen,
                       "inference: KV cache budget exceeded: this step needs %d more blocks of %d tokens, %d of %d "
                       "are free (kv_tokens = %d)",
                       need, kb->block_size, kb->n_free, kb->n_blocks, kb->n_blocks * kb->block_size);
    }
    return 0;
}

void kv_seq_reserve(KvBlocks *kb, int seq, int n, int32_t *copy_from, int32_t *copy_to) {
    KvSeq *s = &kb->seqs[seq];
    int bs = kb->block_size;
    *copy_from = *copy_to = -1;
    if (s->len % bs != 0) {
        int32_t last = s->blocks[s->n_blocks - 1];
        if (kb->refs[last] > 1) {
            int32_t copy = block_take(kb);
            block_release(kb, last);
            s->blocks[s->n_blocks - 1] = copy;
            *copy_from = last;
            *copy_to = copy;
        }
    }
    while (s->n_blocks * bs < s->len + n) seq_push_block(s, block_take(kb));
}
