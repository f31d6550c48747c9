/* tokenizer.h — byte-level BPE tokenizer of the Qwen2/Qwen3 kind.
 *
 * Loads a Hugging Face tokenizer.json (model "BPE", normalizer NFC or none,
 * pre-tokenizer Sequence[Split(regex, Isolated), ByteLevel(use_regex=false)],
 * decoder ByteLevel) and gives the same ids as the Hugging Face `tokenizers`
 * library for the same text:
 *
 *   1. added tokens (<|im_start|>, <tool_call>, ...) are found in the raw text
 *      first, leftmost-longest, and become their own ids;
 *   2. each stretch between them is NFC-normalized (utf8proc);
 *   3. split into pre-tokens by the file's regex (PCRE2, JIT, Unicode);
 *   4. each pre-token's bytes are merged by ranked BPE merges.
 *
 * Decoding concatenates each token's bytes and replaces invalid UTF-8 with
 * U+FFFD exactly as the ByteLevel decoder does (one per maximal invalid
 * subsequence).
 *
 * Threads: a Tokenizer handle owns a word cache and match scratch, so one
 * handle must not encode on two threads at once. tok_fork() makes another
 * handle that shares the (large, read-only) vocabulary and merge tables; give
 * each thread its own fork. tok_decode and the lookups only read shared data.
 */
#ifndef TAU2_TEXT_TOKENIZER_H
#define TAU2_TEXT_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct Tokenizer Tokenizer;

/* A growable array of token ids. Zero-initialize, then free with tok_ids_free. */
typedef struct {
    int32_t *ids;
    size_t n;
    size_t cap;
} TokIds;

enum {
    /* Match special added tokens (special=true, e.g. <|im_end|>) in the text.
     * Without it they are encoded as ordinary text, like Hugging Face's
     * encode_special_tokens=True; non-special added tokens such as
     * <tool_call> are matched either way, as there. */
    TOK_ENCODE_SPECIAL = 1 << 0,
};

enum {
    /* Leave special added tokens out of the decoded text. */
    TOK_DECODE_SKIP_SPECIAL = 1 << 0,
};

/* Load a tokenizer.json. Returns NULL with err filled (naming the file and
 * the field) when it cannot be read or uses a feature this encoder lacks. */
Tokenizer *tok_load(const char *path, char *err, size_t errlen);
/* A new handle sharing tok's tables, with its own cache; free with tok_free. */
Tokenizer *tok_fork(const Tokenizer *tok);
void tok_free(Tokenizer *tok);

/* Encode len bytes of text (any bytes; NUL is fine) with special tokens
 * matched. *ids is a new array the caller frees with free(); *n its length. */
void tok_encode(Tokenizer *tok, const char *text, size_t len, int32_t **ids, size_t *n);
/* Encode with TOK_ENCODE_* flags, appending to out. */
void tok_encode_append(Tokenizer *tok, const char *text, size_t len, int flags, TokIds *out);
void tok_ids_push(TokIds *out, int32_t id);
/* The pre-tokens of text (normalized, then split by the regex; no added-token
 * matching), each passed to fn in order. For tests and tools. */
void tok_pretokenize(Tokenizer *tok, const char *text, size_t len,
                     void (*fn)(const char *piece, size_t n, void *ctx), void *ctx);
void tok_ids_free(TokIds *out);

/* Decode ids to text: NUL-terminated valid UTF-8 the caller frees; *len_out
 * (if given) its length. Ids outside the vocabulary are skipped. */
char *tok_decode(const Tokenizer *tok, const int32_t *ids, size_t n, int flags, size_t *len_out);
/* The raw bytes of one token (no UTF-8 repair; for streaming decoders);
 * NULL for an unknown id. Valid while tok lives. */
const char *tok_token_bytes(const Tokenizer *tok, int32_t id, size_t *len);

/* The id of an added token's content ("<|im_end|>"), else of a vocabulary
 * token by its byte-level spelling as in tokenizer.json ("Ġthe"); -1 if none. */
int32_t tok_id_of(const Tokenizer *tok, const char *token);
/* Vocabulary size including added tokens (151669 for Qwen3): ids are < it. */
int32_t tok_vocab_size(const Tokenizer *tok);
/* True for an added token marked special in tokenizer.json. */
bool tok_is_special(const Tokenizer *tok, int32_t id);

/* Replace invalid UTF-8 in src with U+FFFD, one per maximal invalid
 * subsequence (Unicode's recommended practice, as Rust's from_utf8_lossy).
 * Appends to a new buffer; returns it NUL-terminated, length in *len_out. */
char *tok_utf8_repair(const char *src, size_t len, size_t *len_out);

#endif
