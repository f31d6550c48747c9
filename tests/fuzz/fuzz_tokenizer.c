/* fuzz_tokenizer.c — libFuzzer target for the tokenizer.
 *
 * For any input bytes: encoding (with and without special tokens) and
 * decoding never crash; for valid UTF-8 x, decode(encode(x)) == NFC(x),
 * which is x itself when x is already NFC (see the note on added tokens
 * below), and the token bytes concatenate to the same text.
 * Also decodes the input read as a list of ids.
 *
 * The tokenizer: $TAU2_TOKENIZER_JSON, else the tiny one of the source tree
 * (run from the repository root), else the Qwen3 one in ../shared. */
#include "core/sbuf.h"
#include "text/tokenizer.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

static Tokenizer *g_tok;

static Tokenizer *load_any(void) {
    const char *paths[] = {getenv("TAU2_TOKENIZER_JSON"), "tests/fixtures/tokenizer/tiny/tokenizer.json",
                           "../shared/qwen3-tokenizer/tokenizer.json"};
    char err[512] = "no tokenizer.json found";
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        if (!paths[i]) continue;
        Tokenizer *t = tok_load(paths[i], err, sizeof err);
        if (t) return t;
    }
    fprintf(stderr, "fuzz_tokenizer: %s (set TAU2_TOKENIZER_JSON)\n", err);
    abort();
}

/* Valid UTF-8 without NUL (NUL would end utf8proc's string). */
static bool valid_utf8(const uint8_t *p, size_t n) {
    if (memchr(p, 0, n)) return false;
    utf8proc_ssize_t i = 0;
    while ((size_t)i < n) {
        utf8proc_int32_t c;
        utf8proc_ssize_t k = utf8proc_iterate(p + i, (utf8proc_ssize_t)n - i, &c);
        if (k <= 0) return false;
        i += k;
    }
    return true;
}

/* utf8proc's NFC of valid UTF-8 without NUL bytes, NUL-terminated. */
static char *nfc_of(const char *p, size_t n) {
    utf8proc_uint8_t *out = NULL;
    utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)p, (utf8proc_ssize_t)n, &out,
                                      UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    if (r < 0) abort();
    return (char *)out;
}

static void check_roundtrip(const uint8_t *data, size_t size, int flags) {
    TokIds ids = {0};
    tok_encode_append(g_tok, (const char *)data, size, flags, &ids);
    SBuf raw;
    sbuf_init(&raw);
    for (size_t i = 0; i < ids.n; i++) {
        size_t len;
        const char *b = tok_token_bytes(g_tok, ids.ids[i], &len);
        if (!b) abort();
        sbuf_put(&raw, b, len);
    }
    size_t dlen;
    char *dec = tok_decode(g_tok, ids.ids, ids.n, 0, &dlen);
    if (valid_utf8(data, size)) {
        char *want = nfc_of((const char *)data, size);
        /* Decoding gives NFC(x) back exactly unless an added token cut the
         * text where NFC would compose across it (">" + U+0338 is "≯"):
         * each stretch is normalized on its own, as Hugging Face does.
         * Added tokens all start with '<'; either way the result is
         * canonically equivalent to x. */
        if (!memchr(data, '<', size) && (strlen(want) != dlen || memcmp(want, dec, dlen) != 0)) abort();
        if (!memchr(data, '<', size) && (raw.len != dlen || (dlen && memcmp(raw.data, dec, dlen) != 0))) abort();
        char *again = nfc_of(dec, dlen);
        if (strcmp(again, want) != 0) abort();
        free(again);
        free(want);
    }
    free(dec);
    sbuf_free(&raw);
    tok_ids_free(&ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_tok) g_tok = load_any();
    check_roundtrip(data, size, TOK_ENCODE_SPECIAL);
    check_roundtrip(data, size, 0);
    /* the input as ids, in and out of range */
    size_t n = size / 4;
    int32_t *ids = malloc((n ? n : 1) * sizeof(int32_t));
    if (!ids) return 0;
    memcpy(ids, data, n * 4);
    for (size_t i = 0; i < n; i++) ids[i] %= tok_vocab_size(g_tok) + 16;
    char *d = tok_decode(g_tok, ids, n, TOK_DECODE_SKIP_SPECIAL, NULL);
    free(d);
    free(ids);
    return 0;
}
