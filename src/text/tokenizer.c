/* tokenizer.c — byte-level BPE (Qwen2/Qwen3 tokenizer.json), equal to the
 * Hugging Face `tokenizers` library id for id.
 *
 * Layout: the large read-only tables (vocabulary, merges, compiled regex)
 * live in a reference-counted TokShared; a Tokenizer handle adds what one
 * thread mutates while encoding (word cache, regex match data, scratch).
 *
 * The BPE works on raw bytes rather than on the byte-level Unicode spelling:
 * each vocabulary token is turned back into its bytes at load time, so a
 * pre-token needs no byte-to-Unicode mapping, only byte -> initial id.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#define XXH_INLINE_ALL /* the hashes below are on short keys: inline them */

#include "text/tokenizer.h"

#include "core/error.h"
#include "core/sbuf.h"

#include <cJSON.h>
#include <pcre2.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>
#include <xxhash.h>

/* ---------------------------------------------------------------- tables */

enum { KIND_NONE = 0, KIND_VOCAB = 1, KIND_ADDED = 2, KIND_SPECIAL = 3 };

#define RANK_NONE UINT32_MAX

typedef struct {
    uint32_t off; /* into TokShared.arena */
    uint32_t len;
} Span;

/* One merge (left, right) -> new id, at a rank (lower merges first). */
typedef struct {
    uint64_t key; /* left << 32 | right */
    uint32_t rank; /* RANK_NONE marks an empty slot */
    int32_t new_id;
} MergeSlot;

typedef struct {
    Span content;
    int32_t id;
    bool special;
} AddedTok;

typedef struct {
    atomic_int refs;
    int32_t vocab_size; /* max id + 1 */
    uint8_t *kind;      /* per id: KIND_* */
    Span *bytes;        /* per id: the bytes the token decodes to */
    Span *spelling;     /* per id: the token as written in tokenizer.json */
    char *arena;
    size_t arena_len, arena_cap;
    /* spelling -> id for vocabulary tokens (open addressing, -1 empty) */
    int32_t *vocab_slots;
    uint32_t vocab_mask;
    MergeSlot *merges;
    uint32_t merge_bits;
    int32_t byte_id[256]; /* initial symbol of each byte, -1 if absent */
    int32_t unk_id;       /* -1 when the model has no unk token */
    bool fuse_unk;
    /* added tokens grouped by first byte, longest first inside a group */
    AddedTok *added;
    size_t n_added;
    uint32_t added_start[257];
    bool nfc;
    pcre2_code *re;
    bool jit;
} TokShared;

/* The per-handle word cache: pre-token bytes -> ids. Open addressing over
 * hashes with the key and ids stored in an arena; when either fills up the
 * whole cache is dropped, which keeps it simple and bounded. */
#define CACHE_SLOTS (1u << 15)
#define CACHE_ARENA (1u << 20)
#define CACHE_MAX_WORD 128

typedef struct {
    uint64_t hash; /* 0 = empty */
    uint32_t off;
    uint16_t klen;
    uint16_t nids;
} CacheSlot;

struct Tokenizer {
    TokShared *sh;
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *jstack;
    CacheSlot *cache;
    uint32_t cache_used;
    char *cache_arena;
    uint32_t cache_arena_used;
    SBuf norm; /* NFC output of the current stretch */
    /* merge scratch */
    int32_t *sym;
    uint32_t *rank;
    int32_t *nid;
    size_t sym_cap;
    void *heap;
    size_t heap_cap;
};

/* --------------------------------------------------------------- helpers */

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || !errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static uint32_t arena_add(TokShared *s, const void *p, size_t n) {
    if (s->arena_len + n > s->arena_cap) {
        size_t cap = s->arena_cap ? s->arena_cap : 1 << 16;
        while (cap < s->arena_len + n) cap *= 2;
        s->arena = xrealloc(s->arena, cap);
        s->arena_cap = cap;
    }
    memcpy(s->arena + s->arena_len, p, n);
    uint32_t off = (uint32_t)s->arena_len;
    s->arena_len += n;
    return off;
}

/* GPT-2's byte <-> Unicode map: printable Latin-1 bytes stand for
 * themselves, the other 68 bytes take code points 256.. in byte order. */
static void byte_unicode_map(uint32_t byte_to_cp[256]) {
    int extra = 0;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        byte_to_cp[b] = printable ? (uint32_t)b : (uint32_t)(256 + extra++);
    }
}

/* Map the byte-level spelling of a token back to bytes. As the ByteLevel
 * decoder does, a spelling holding any character outside the map stands for
 * its own UTF-8 bytes. Appends to out. */
static void spelling_to_bytes(const uint32_t cp_to_byte[512], const char *s, size_t n, SBuf *out) {
    size_t start = out->len;
    utf8proc_ssize_t i = 0;
    while ((size_t)i < n) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)n - i, &cp);
        if (k <= 0 || cp >= 512 || cp_to_byte[cp] > 255) {
            out->len = start;
            sbuf_put(out, s, n);
            return;
        }
        sbuf_putc(out, (char)cp_to_byte[cp]);
        i += k;
    }
}

static uint64_t hash_bytes(const void *p, size_t n) {
    return XXH3_64bits(p, n);
}

/* Merge keys are two 32-bit ids: a multiply-shift (Fibonacci) hash spreads
 * them well and costs one multiply, less than hashing 8 bytes with xxHash. */
static inline uint32_t merge_slot_of(uint64_t key, uint32_t bits) {
    return (uint32_t)((key * 0x9E3779B97F4A7C15ull) >> (64 - bits));
}

static inline const MergeSlot *merge_find(const TokShared *s, int32_t a, int32_t b) {
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    uint32_t mask = (1u << s->merge_bits) - 1;
    for (uint32_t i = merge_slot_of(key, s->merge_bits);; i = (i + 1) & mask) {
        const MergeSlot *m = &s->merges[i];
        if (m->rank == RANK_NONE) return NULL;
        if (m->key == key) return m;
    }
}

/* A later duplicate of a merge replaces the earlier one, as Hugging Face's
 * HashMap collection of the merge list does. */
static void merge_insert(TokShared *s, int32_t a, int32_t b, uint32_t rank, int32_t new_id) {
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    uint32_t mask = (1u << s->merge_bits) - 1;
    for (uint32_t i = merge_slot_of(key, s->merge_bits);; i = (i + 1) & mask) {
        MergeSlot *m = &s->merges[i];
        if (m->rank == RANK_NONE || m->key == key) {
            m->key = key;
            m->rank = rank;
            m->new_id = new_id;
            return;
        }
    }
}

static int32_t vocab_find(const TokShared *s, const char *p, size_t n) {
    for (uint32_t i = (uint32_t)hash_bytes(p, n) & s->vocab_mask;; i = (i + 1) & s->vocab_mask) {
        int32_t id = s->vocab_slots[i];
        if (id < 0) return -1;
        Span sp = s->spelling[id];
        if (sp.len == n && memcmp(s->arena + sp.off, p, n) == 0) return id;
    }
}

static void vocab_insert(TokShared *s, int32_t id) {
    Span sp = s->spelling[id];
    const char *p = s->arena + sp.off;
    for (uint32_t i = (uint32_t)hash_bytes(p, sp.len) & s->vocab_mask;; i = (i + 1) & s->vocab_mask) {
        int32_t cur = s->vocab_slots[i];
        if (cur < 0) {
            s->vocab_slots[i] = id;
            return;
        }
        Span cs = s->spelling[cur];
        if (cs.len == sp.len && memcmp(s->arena + cs.off, p, sp.len) == 0) return;
    }
}

static uint32_t pow2_at_least(size_t n) {
    uint32_t bits = 4;
    while ((1ull << bits) < n) bits++;
    return bits;
}

/* ------------------------------------------------------------- loading */

static void shared_free(TokShared *s) {
    if (!s) return;
    free(s->kind);
    free(s->bytes);
    free(s->spelling);
    free(s->arena);
    free(s->vocab_slots);
    free(s->merges);
    free(s->added);
    if (s->re) pcre2_code_free(s->re);
    free(s);
}

static const char *json_str(const cJSON *obj, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static bool json_true(const cJSON *obj, const char *key) {
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(obj, key));
}

static bool json_is_type(const cJSON *obj, const char *type) {
    const char *t = json_str(obj, "type");
    return t && strcmp(t, type) == 0;
}

/* The BPE options this encoder does not implement must be off. */
static bool check_model_options(const cJSON *model, const char *path, char *err, size_t errlen) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (v && !cJSON_IsNull(v)) {
        set_err(err, errlen, "%s: model.dropout must be null (BPE dropout is not supported)", path);
        return false;
    }
    const char *keys[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (size_t i = 0; i < 2; i++) {
        const char *sv = json_str(model, keys[i]);
        if (sv && *sv) {
            set_err(err, errlen, "%s: model.%s must be empty", path, keys[i]);
            return false;
        }
    }
    if (json_true(model, "byte_fallback") || json_true(model, "ignore_merges")) {
        set_err(err, errlen, "%s: model.byte_fallback and model.ignore_merges are not supported", path);
        return false;
    }
    return true;
}

static bool load_vocab(TokShared *s, const cJSON *vocab, const cJSON *added, const uint32_t cp_to_byte[512],
                       const char *path, char *err, size_t errlen) {
    if (!cJSON_IsObject(vocab)) {
        set_err(err, errlen, "%s: model.vocab must be an object", path);
        return false;
    }
    int32_t max_id = -1;
    size_t n_vocab = 0;
    for (const cJSON *e = vocab->child; e; e = e->next) {
        if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble > INT32_MAX - 1) {
            set_err(err, errlen, "%s: model.vocab[\"%s\"] must be a non-negative id", path, e->string);
            return false;
        }
        if (e->valueint > max_id) max_id = e->valueint;
        n_vocab++;
    }
    for (const cJSON *e = added ? added->child : NULL; e; e = e->next) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "id");
        if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble > INT32_MAX - 1) {
            set_err(err, errlen, "%s: added_tokens[].id must be a non-negative id", path);
            return false;
        }
        if (id->valueint > max_id) max_id = id->valueint;
    }
    s->vocab_size = max_id + 1;
    s->kind = xcalloc((size_t)s->vocab_size, 1);
    s->bytes = xcalloc((size_t)s->vocab_size, sizeof(Span));
    s->spelling = xcalloc((size_t)s->vocab_size, sizeof(Span));
    s->vocab_mask = (1u << pow2_at_least(n_vocab * 2 + 1)) - 1;
    s->vocab_slots = xmalloc(((size_t)s->vocab_mask + 1) * sizeof(int32_t));
    memset(s->vocab_slots, 0xff, ((size_t)s->vocab_mask + 1) * sizeof(int32_t));

    SBuf raw;
    sbuf_init(&raw);
    for (const cJSON *e = vocab->child; e; e = e->next) {
        int32_t id = e->valueint;
        size_t n = strlen(e->string);
        s->kind[id] = KIND_VOCAB;
        s->spelling[id] = (Span){arena_add(s, e->string, n), (uint32_t)n};
        raw.len = 0;
        spelling_to_bytes(cp_to_byte, e->string, n, &raw);
        s->bytes[id] = (Span){arena_add(s, raw.data ? raw.data : "", raw.len), (uint32_t)raw.len};
        vocab_insert(s, id);
    }
    sbuf_free(&raw);
    return true;
}

static bool load_merges(TokShared *s, const cJSON *merges, const char *path, char *err, size_t errlen) {
    if (!cJSON_IsArray(merges)) {
        set_err(err, errlen, "%s: model.merges must be an array", path);
        return false;
    }
    size_t n = (size_t)cJSON_GetArraySize(merges);
    s->merge_bits = pow2_at_least(n * 2 + 1);
    s->merges = xmalloc(((size_t)1 << s->merge_bits) * sizeof(MergeSlot));
    for (size_t i = 0; i < ((size_t)1 << s->merge_bits); i++) s->merges[i].rank = RANK_NONE;

    SBuf cat;
    sbuf_init(&cat);
    uint32_t rank = 0;
    bool ok = true;
    for (const cJSON *e = merges->child; e && ok; e = e->next, rank++) {
        /* Either "left right" (older files) or ["left", "right"]. */
        const char *a = NULL, *b = NULL;
        size_t alen = 0, blen = 0;
        if (cJSON_IsString(e)) {
            const char *sp = strchr(e->valuestring, ' ');
            if (sp && !strchr(sp + 1, ' ')) {
                a = e->valuestring;
                alen = (size_t)(sp - a);
                b = sp + 1;
                blen = strlen(b);
            }
        } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 && cJSON_IsString(e->child) &&
                   cJSON_IsString(e->child->next)) {
            a = e->child->valuestring;
            alen = strlen(a);
            b = e->child->next->valuestring;
            blen = strlen(b);
        }
        if (!a) {
            set_err(err, errlen, "%s: model.merges[%u] must be \"a b\" or [\"a\", \"b\"]", path, rank);
            ok = false;
            break;
        }
        int32_t ia = vocab_find(s, a, alen), ib = vocab_find(s, b, blen);
        cat.len = 0;
        sbuf_put(&cat, a, alen);
        sbuf_put(&cat, b, blen);
        int32_t inew = vocab_find(s, cat.data, cat.len);
        if (ia < 0 || ib < 0 || inew < 0) {
            set_err(err, errlen, "%s: model.merges[%u] (\"%.*s\", \"%.*s\") names a token not in the vocabulary",
                    path, rank, (int)alen, a, (int)blen, b);
            ok = false;
            break;
        }
        merge_insert(s, ia, ib, rank, inew);
    }
    sbuf_free(&cat);
    return ok;
}

static int added_cmp(const void *pa, const void *pb, void *arena) {
    const AddedTok *a = pa, *b = pb;
    const unsigned char *ca = (const unsigned char *)arena + a->content.off;
    const unsigned char *cb = (const unsigned char *)arena + b->content.off;
    if (ca[0] != cb[0]) return ca[0] < cb[0] ? -1 : 1;
    if (a->content.len != b->content.len) return a->content.len > b->content.len ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

static bool load_added(TokShared *s, const cJSON *added, const uint32_t cp_to_byte[512], const char *path,
                       char *err, size_t errlen) {
    size_t n = added ? (size_t)cJSON_GetArraySize(added) : 0;
    s->added = xcalloc(n ? n : 1, sizeof(AddedTok));
    SBuf raw;
    sbuf_init(&raw);
    bool ok = true;
    for (const cJSON *e = added ? added->child : NULL; e; e = e->next) {
        const char *content = json_str(e, "content");
        if (!content || !*content) {
            set_err(err, errlen, "%s: added_tokens[].content must be a non-empty string", path);
            ok = false;
            break;
        }
        if (json_true(e, "lstrip") || json_true(e, "rstrip") || json_true(e, "single_word") ||
            json_true(e, "normalized")) {
            set_err(err, errlen,
                    "%s: added token \"%s\": lstrip, rstrip, single_word and normalized must be false",
                    path, content);
            ok = false;
            break;
        }
        int32_t id = cJSON_GetObjectItemCaseSensitive(e, "id")->valueint;
        size_t len = strlen(content);
        AddedTok *t = &s->added[s->n_added++];
        t->content = (Span){arena_add(s, content, len), (uint32_t)len};
        t->id = id;
        t->special = json_true(e, "special");
        /* The decoder sees an added token's content like any token. */
        s->kind[id] = t->special ? KIND_SPECIAL : KIND_ADDED;
        s->spelling[id] = t->content;
        raw.len = 0;
        spelling_to_bytes(cp_to_byte, content, len, &raw);
        s->bytes[id] = (Span){arena_add(s, raw.data, raw.len), (uint32_t)raw.len};
    }
    sbuf_free(&raw);
    if (!ok) return false;
    qsort_r(s->added, s->n_added, sizeof(AddedTok), added_cmp, s->arena);
    size_t j = 0;
    for (int b = 0; b <= 256; b++) {
        while (j < s->n_added && (unsigned char)s->arena[s->added[j].content.off] < b) j++;
        s->added_start[b] = (uint32_t)j;
    }
    return true;
}

static bool load_normalizer(TokShared *s, const cJSON *norm, const char *path, char *err, size_t errlen) {
    if (!norm || cJSON_IsNull(norm)) return true;
    if (json_is_type(norm, "NFC")) {
        s->nfc = true;
        return true;
    }
    set_err(err, errlen, "%s: normalizer must be null or NFC", path);
    return false;
}

static bool compile_regex(TokShared *s, const char *pattern, const char *path, char *err, size_t errlen) {
    int code;
    PCRE2_SIZE at;
    /* UCP: \s, \d and friends take Unicode meanings as in Oniguruma, which
     * Hugging Face uses. MATCH_INVALID_UTF: invalid bytes never match and so
     * end up as pre-tokens of their own instead of being undefined input. */
    s->re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                          PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &code, &at, NULL);
    if (!s->re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        set_err(err, errlen, "%s: pre_tokenizer regex does not compile at offset %zu: %s", path, (size_t)at,
                (char *)msg);
        return false;
    }
    s->jit = pcre2_jit_compile(s->re, PCRE2_JIT_COMPLETE) == 0;
    return true;
}

/* Accept Sequence[Split(Regex, Isolated), ByteLevel(use_regex=false)], the
 * Qwen2/Qwen3 pre-tokenizer. */
static bool load_pretokenizer(TokShared *s, const cJSON *pre, const char *path, char *err, size_t errlen) {
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(pre, "pretokenizers");
    if (!pre || !json_is_type(pre, "Sequence") || cJSON_GetArraySize(list) != 2) {
        set_err(err, errlen, "%s: pre_tokenizer must be a Sequence of Split and ByteLevel", path);
        return false;
    }
    const cJSON *split = list->child, *bl = list->child->next;
    const char *behavior = json_str(split, "behavior");
    const char *regex = json_str(cJSON_GetObjectItemCaseSensitive(split, "pattern"), "Regex");
    if (!json_is_type(split, "Split") || !regex || !behavior || strcmp(behavior, "Isolated") != 0 ||
        json_true(split, "invert")) {
        set_err(err, errlen, "%s: pre_tokenizer[0] must be Split with a Regex pattern, Isolated, not inverted",
                path);
        return false;
    }
    if (!json_is_type(bl, "ByteLevel") || json_true(bl, "add_prefix_space") || json_true(bl, "use_regex")) {
        set_err(err, errlen, "%s: pre_tokenizer[1] must be ByteLevel without prefix space or regex", path);
        return false;
    }
    return compile_regex(s, regex, path, err, errlen);
}

static bool load_rest(TokShared *s, const cJSON *root, const char *path, char *err, size_t errlen) {
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!cJSON_IsObject(model) || !json_is_type(model, "BPE")) {
        set_err(err, errlen, "%s: model.type must be BPE", path);
        return false;
    }
    if (!check_model_options(model, path, err, errlen)) return false;
    const cJSON *dec = cJSON_GetObjectItemCaseSensitive(root, "decoder");
    if (!json_is_type(dec, "ByteLevel")) {
        set_err(err, errlen, "%s: decoder must be ByteLevel", path);
        return false;
    }
    const cJSON *post = cJSON_GetObjectItemCaseSensitive(root, "post_processor");
    if (post && !cJSON_IsNull(post) && !json_is_type(post, "ByteLevel")) {
        set_err(err, errlen, "%s: post_processor must be null or ByteLevel", path);
        return false;
    }
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if (added && !cJSON_IsArray(added)) {
        set_err(err, errlen, "%s: added_tokens must be an array", path);
        return false;
    }
    uint32_t byte_to_cp[256], cp_to_byte[512];
    byte_unicode_map(byte_to_cp);
    for (int i = 0; i < 512; i++) cp_to_byte[i] = 256;
    for (int b = 0; b < 256; b++) cp_to_byte[byte_to_cp[b]] = (uint32_t)b;

    if (!load_vocab(s, cJSON_GetObjectItemCaseSensitive(model, "vocab"), added, cp_to_byte, path, err, errlen))
        return false;
    if (!load_merges(s, cJSON_GetObjectItemCaseSensitive(model, "merges"), path, err, errlen)) return false;
    for (int b = 0; b < 256; b++) {
        char u[4];
        utf8proc_ssize_t k = utf8proc_encode_char((utf8proc_int32_t)byte_to_cp[b], (utf8proc_uint8_t *)u);
        s->byte_id[b] = vocab_find(s, u, (size_t)k);
    }
    const char *unk = json_str(model, "unk_token");
    s->unk_id = unk ? vocab_find(s, unk, strlen(unk)) : -1;
    s->fuse_unk = json_true(model, "fuse_unk");
    if (!load_added(s, added, cp_to_byte, path, err, errlen)) return false;
    if (!load_normalizer(s, cJSON_GetObjectItemCaseSensitive(root, "normalizer"), path, err, errlen))
        return false;
    return load_pretokenizer(s, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), path, err, errlen);
}

static Tokenizer *handle_new(TokShared *sh) {
    Tokenizer *t = xcalloc(1, sizeof *t);
    t->sh = sh;
    t->md = pcre2_match_data_create_from_pattern(sh->re, NULL);
    t->mctx = pcre2_match_context_create(NULL);
    /* Long whitespace or punctuation runs are one match; give the JIT room. */
    t->jstack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, NULL);
    if (!t->md || !t->mctx || !t->jstack) die_runtime("out of memory creating regex match data");
    pcre2_jit_stack_assign(t->mctx, NULL, t->jstack);
    t->cache = xcalloc(CACHE_SLOTS, sizeof(CacheSlot));
    t->cache_arena = xmalloc(CACHE_ARENA);
    sbuf_init(&t->norm);
    return t;
}

Tokenizer *tok_load(const char *path, char *err, size_t errlen) {
    size_t len = 0;
    char *text = file_read_all(path, &len, err, errlen);
    if (!text) return NULL;
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    if (!root) {
        set_err(err, errlen, "%s: not valid JSON", path);
        return NULL;
    }
    TokShared *s = xcalloc(1, sizeof *s);
    atomic_init(&s->refs, 1);
    bool ok = load_rest(s, root, path, err, errlen);
    cJSON_Delete(root);
    if (!ok) {
        shared_free(s);
        return NULL;
    }
    return handle_new(s);
}

Tokenizer *tok_fork(const Tokenizer *tok) {
    atomic_fetch_add(&tok->sh->refs, 1);
    return handle_new(tok->sh);
}

void tok_free(Tokenizer *tok) {
    if (!tok) return;
    if (atomic_fetch_sub(&tok->sh->refs, 1) == 1) shared_free(tok->sh);
    pcre2_match_data_free(tok->md);
    pcre2_match_context_free(tok->mctx);
    pcre2_jit_stack_free(tok->jstack);
    free(tok->cache);
    free(tok->cache_arena);
    sbuf_free(&tok->norm);
    free(tok->sym);
    free(tok->rank);
    free(tok->nid);
    free(tok->heap);
    free(tok);
}

/* ------------------------------------------------------------ id arrays */

void tok_ids_push(TokIds *out, int32_t id) {
    if (out->n == out->cap) {
        out->cap = out->cap ? out->cap * 2 : 64;
        out->ids = xrealloc(out->ids, out->cap * sizeof(int32_t));
    }
    out->ids[out->n++] = id;
}

static void ids_append(TokIds *out, const int32_t *ids, size_t n) {
    if (out->n + n > out->cap) {
        size_t cap = out->cap ? out->cap : 64;
        while (cap < out->n + n) cap *= 2;
        out->ids = xrealloc(out->ids, cap * sizeof(int32_t));
        out->cap = cap;
    }
    memcpy(out->ids + out->n, ids, n * sizeof(int32_t));
    out->n += n;
}

void tok_ids_free(TokIds *out) {
    free(out->ids);
    out->ids = NULL;
    out->n = out->cap = 0;
}

/* ------------------------------------------------------------ the cache */

static void cache_clear(Tokenizer *t) {
    memset(t->cache, 0, CACHE_SLOTS * sizeof(CacheSlot));
    t->cache_used = 0;
    t->cache_arena_used = 0;
}

static const CacheSlot *cache_get(const Tokenizer *t, const char *w, size_t n, uint64_t h) {
    for (uint32_t i = (uint32_t)h & (CACHE_SLOTS - 1);; i = (i + 1) & (CACHE_SLOTS - 1)) {
        const CacheSlot *c = &t->cache[i];
        if (c->hash == 0) return NULL;
        if (c->hash == h && c->klen == n && memcmp(t->cache_arena + c->off, w, n) == 0) return c;
    }
}

static const int32_t *cache_ids(const Tokenizer *t, const CacheSlot *c) {
    return (const int32_t *)(t->cache_arena + c->off + ((c->klen + 3u) & ~3u));
}

static void cache_put(Tokenizer *t, const char *w, size_t n, uint64_t h, const int32_t *ids, size_t nids) {
    size_t need = ((n + 3) & ~(size_t)3) + nids * sizeof(int32_t);
    if (t->cache_used >= CACHE_SLOTS / 2 || t->cache_arena_used + need > CACHE_ARENA) cache_clear(t);
    uint32_t i = (uint32_t)h & (CACHE_SLOTS - 1);
    while (t->cache[i].hash != 0) i = (i + 1) & (CACHE_SLOTS - 1);
    CacheSlot *c = &t->cache[i];
    c->hash = h;
    c->off = t->cache_arena_used;
    c->klen = (uint16_t)n;
    c->nids = (uint16_t)nids;
    memcpy(t->cache_arena + c->off, w, n);
    memcpy(t->cache_arena + c->off + ((n + 3) & ~(size_t)3), ids, nids * sizeof(int32_t));
    t->cache_arena_used += (uint32_t)need;
    t->cache_used++;
}

/* ------------------------------------------------------------------ BPE */

static void scratch_reserve(Tokenizer *t, size_t n) {
    if (n <= t->sym_cap) return;
    size_t cap = t->sym_cap ? t->sym_cap : 64;
    while (cap < n) cap *= 2;
    t->sym = xrealloc(t->sym, cap * sizeof(int32_t));
    t->rank = xrealloc(t->rank, cap * sizeof(uint32_t));
    t->nid = xrealloc(t->nid, cap * sizeof(int32_t));
    t->sym_cap = cap;
}

/* Initial symbols: one per byte, as the byte-level alphabet gives. A byte
 * without a token becomes unk (fused if asked) or is dropped, as in HF. */
static size_t word_init(Tokenizer *t, const unsigned char *w, size_t n) {
    const TokShared *s = t->sh;
    scratch_reserve(t, n);
    size_t m = 0;
    bool last_unk = false;
    for (size_t i = 0; i < n; i++) {
        int32_t id = s->byte_id[w[i]];
        if (id >= 0) {
            t->sym[m++] = id;
            last_unk = false;
        } else if (s->unk_id >= 0 && !(s->fuse_unk && last_unk)) {
            t->sym[m++] = s->unk_id;
            last_unk = true;
        }
    }
    return m;
}

static inline void pair_rank(const TokShared *s, int32_t a, int32_t b, uint32_t *rank, int32_t *nid) {
    const MergeSlot *m = merge_find(s, a, b);
    *rank = m ? m->rank : RANK_NONE;
    *nid = m ? m->new_id : -1;
}

/* Short words: keep the symbols in an array with each adjacent pair's rank
 * beside it, and repeatedly merge the lowest-ranked pair (leftmost on ties,
 * the same order as HF's priority queue). O(n^2) in symbols, but a word of a
 * dozen bytes does a few dozen compares in one cache line, which beats
 * building a heap. */
static size_t merge_short(Tokenizer *t, size_t m) {
    const TokShared *s = t->sh;
    int32_t *sym = t->sym, *nid = t->nid;
    uint32_t *rank = t->rank;
    for (size_t i = 0; i + 1 < m; i++) pair_rank(s, sym[i], sym[i + 1], &rank[i], &nid[i]);
    while (m > 1) {
        size_t best = 0;
        for (size_t i = 1; i + 1 < m; i++)
            if (rank[i] < rank[best]) best = i;
        if (rank[best] == RANK_NONE) break;
        sym[best] = nid[best];
        size_t tail = m - best - 2; /* symbols after best+1 */
        memmove(sym + best + 1, sym + best + 2, tail * sizeof(int32_t));
        memmove(rank + best + 1, rank + best + 2, (tail ? tail - 1 : 0) * sizeof(uint32_t));
        memmove(nid + best + 1, nid + best + 2, (tail ? tail - 1 : 0) * sizeof(int32_t));
        m--;
        if (best > 0) pair_rank(s, sym[best - 1], sym[best], &rank[best - 1], &nid[best - 1]);
        if (best + 1 < m) pair_rank(s, sym[best], sym[best + 1], &rank[best], &nid[best]);
    }
    return m;
}

/* Long words (a run of 500 spaces, a base64 blob): symbols in a linked list
 * and candidate merges in a binary min-heap on (rank, position), stale
 * entries skipped when popped. O(n log n); the same merge order as above. */
typedef struct {
    uint32_t rank;
    uint32_t pos;
} HeapItem;

static inline bool heap_less(HeapItem a, HeapItem b) {
    return a.rank != b.rank ? a.rank < b.rank : a.pos < b.pos;
}

static void heap_push(HeapItem *h, size_t *n, HeapItem x) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_less(x, h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = x;
}

static HeapItem heap_pop(HeapItem *h, size_t *n) {
    HeapItem top = h[0], x = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && heap_less(h[c + 1], h[c])) c++;
        if (!heap_less(h[c], x)) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = x;
    return top;
}

static size_t merge_long(Tokenizer *t, size_t m) {
    const TokShared *s = t->sh;
    int32_t *sym = t->sym;
    /* Reuse the scratch: rank[] as next links, nid[] as prev links; a
     * removed symbol gets sym = -1. */
    int32_t *prev = t->nid;
    uint32_t *next = t->rank;
    /* m-1 initial pushes, at most 2 more per merge: under 3m in all. */
    size_t hcap = 3 * m + 16;
    if (t->heap_cap < hcap) {
        t->heap = xrealloc(t->heap, hcap * sizeof(HeapItem));
        t->heap_cap = hcap;
    }
    HeapItem *heap = t->heap;
    size_t hn = 0;
    for (size_t i = 0; i < m; i++) {
        prev[i] = (int32_t)i - 1;
        next[i] = (uint32_t)(i + 1);
    }
    for (size_t i = 0; i + 1 < m; i++) {
        const MergeSlot *g = merge_find(s, sym[i], sym[i + 1]);
        if (g) heap_push(heap, &hn, (HeapItem){g->rank, (uint32_t)i});
    }
    while (hn > 0) {
        HeapItem top = heap_pop(heap, &hn);
        uint32_t p = top.pos, q = next[p];
        if (sym[p] < 0 || q >= m) continue;
        const MergeSlot *g = merge_find(s, sym[p], sym[q]);
        if (!g || g->rank != top.rank) continue; /* stale */
        sym[p] = g->new_id;
        sym[q] = -1;
        next[p] = next[q];
        if (next[q] < m) prev[next[q]] = (int32_t)p;
        if (prev[p] >= 0) {
            const MergeSlot *l = merge_find(s, sym[prev[p]], sym[p]);
            if (l) heap_push(heap, &hn, (HeapItem){l->rank, (uint32_t)prev[p]});
        }
        if (next[p] < m) {
            const MergeSlot *r = merge_find(s, sym[p], sym[next[p]]);
            if (r) heap_push(heap, &hn, (HeapItem){r->rank, p});
        }
    }
    size_t k = 0;
    for (size_t i = 0; i < m; i++)
        if (sym[i] >= 0) sym[k++] = sym[i];
    return k;
}

#define SHORT_WORD 48

/* BPE-encode one pre-token's bytes, appending the ids. */
static void bpe_word(Tokenizer *t, const char *w, size_t n, TokIds *out) {
    const TokShared *s = t->sh;
    if (n == 1) {
        int32_t id = s->byte_id[(unsigned char)w[0]];
        if (id < 0) id = s->unk_id;
        if (id >= 0) tok_ids_push(out, id);
        return;
    }
    uint64_t h = 0;
    if (n <= CACHE_MAX_WORD) {
        h = hash_bytes(w, n) | 1; /* 0 marks an empty slot */
        const CacheSlot *c = cache_get(t, w, n, h);
        if (c) {
            ids_append(out, cache_ids(t, c), c->nids);
            return;
        }
    }
    size_t m = word_init(t, (const unsigned char *)w, n);
    m = m <= SHORT_WORD ? merge_short(t, m) : merge_long(t, m);
    ids_append(out, t->sym, m);
    if (n <= CACHE_MAX_WORD) cache_put(t, w, n, h, t->sym, m);
}

/* ------------------------------------------------------------ encoding */

/* Split one stretch of normalized text with the regex: every match and
 * every gap between matches is a pre-token (the "Isolated" behaviour). */
static void encode_pretokens(Tokenizer *t, const char *p, size_t n, TokIds *out) {
    const TokShared *s = t->sh;
    size_t done = 0, from = 0;
    while (from < n) {
        int rc = s->jit ? pcre2_jit_match(s->re, (PCRE2_SPTR)p, n, from, 0, t->md, t->mctx)
                        : pcre2_match(s->re, (PCRE2_SPTR)p, n, from, 0, t->md, t->mctx);
        if (rc < 0) break; /* no match (or a matcher limit): the rest is one gap */
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(t->md);
        size_t ms = ov[0], me = ov[1];
        if (me == ms) { /* an empty match splits nothing; step past one byte */
            from = ms + 1;
            continue;
        }
        if (ms > done) bpe_word(t, p + done, ms - done, out);
        bpe_word(t, p + ms, me - ms, out);
        done = from = me;
    }
    if (done < n) bpe_word(t, p + done, n - done, out);
}

/* Length of the valid UTF-8 sequence at p (1..4), or 0 if invalid. */
static size_t utf8_valid_len(const unsigned char *p, size_t n) {
    unsigned c = p[0];
    size_t need;
    unsigned lo = 0x80, hi = 0xBF;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) need = 1;
    else if (c == 0xE0) need = 2, lo = 0xA0;
    else if (c == 0xED) need = 2, hi = 0x9F;
    else if (c >= 0xE1 && c <= 0xEF) need = 2;
    else if (c == 0xF0) need = 3, lo = 0x90;
    else if (c == 0xF4) need = 3, hi = 0x8F;
    else if (c >= 0xF1 && c <= 0xF3) need = 3;
    else return 0;
    if (n < need + 1 || p[1] < lo || p[1] > hi) return 0;
    for (size_t k = 2; k <= need; k++)
        if (p[k] < 0x80 || p[k] > 0xBF) return 0;
    return need + 1;
}

/* Code points below U+0300 are all NFC-stable and none composes with what
 * precedes it, so text whose bytes are all below 0xCC needs no work. */
static bool may_need_nfc(const char *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] >= 0xCC) return true;
    return false;
}

/* NFC-normalize p into t->norm. Invalid UTF-8 bytes are kept as they are
 * and the valid runs between them normalized separately. */
static void normalize_nfc(Tokenizer *t, const char *p, size_t n) {
    t->norm.len = 0;
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n) {
            size_t k = utf8_valid_len((const unsigned char *)p + j, n - j);
            if (!k) break;
            j += k;
        }
        if (j > i) {
            utf8proc_uint8_t *dst = NULL;
            utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)p + i, (utf8proc_ssize_t)(j - i), &dst,
                                              UTF8PROC_STABLE | UTF8PROC_COMPOSE);
            if (r >= 0) sbuf_put(&t->norm, (const char *)dst, (size_t)r);
            else sbuf_put(&t->norm, p + i, j - i);
            free(dst);
        }
        if (j < n) sbuf_putc(&t->norm, p[j++]); /* one invalid byte */
        i = j;
    }
}

static void encode_stretch(Tokenizer *t, const char *p, size_t n, TokIds *out) {
    if (n == 0) return;
    if (t->sh->nfc && may_need_nfc(p, n)) {
        normalize_nfc(t, p, n);
        encode_pretokens(t, t->norm.data, t->norm.len, out);
    } else {
        encode_pretokens(t, p, n, out);
    }
}

/* The longest added token starting at p, or NULL. */
static const AddedTok *added_at(const TokShared *s, const char *p, size_t n) {
    unsigned char b = (unsigned char)p[0];
    for (uint32_t i = s->added_start[b]; i < s->added_start[b + 1]; i++) {
        const AddedTok *a = &s->added[i];
        if (a->content.len <= n && memcmp(s->arena + a->content.off, p, a->content.len) == 0) return a;
    }
    return NULL;
}

void tok_encode_append(Tokenizer *t, const char *text, size_t len, int flags, TokIds *out) {
    const TokShared *s = t->sh;
    size_t seg = 0, i = 0;
    /* Leftmost-longest scan for added tokens, as HF's Aho-Corasick split:
     * a special token found while specials are off is skipped as a whole
     * (it stays text, and nothing inside it can match). */
    while (s->n_added && i < len) {
        unsigned char b = (unsigned char)text[i];
        if (s->added_start[b] == s->added_start[b + 1]) {
            i++;
            continue;
        }
        const AddedTok *a = added_at(s, text + i, len - i);
        if (!a) {
            i++;
            continue;
        }
        if (a->special && !(flags & TOK_ENCODE_SPECIAL)) {
            i += a->content.len;
            continue;
        }
        encode_stretch(t, text + seg, i - seg, out);
        tok_ids_push(out, a->id);
        i += a->content.len;
        seg = i;
    }
    encode_stretch(t, text + seg, len - seg, out);
}

void tok_encode(Tokenizer *t, const char *text, size_t len, int32_t **ids, size_t *n) {
    TokIds out = {0};
    tok_encode_append(t, text, len, TOK_ENCODE_SPECIAL, &out);
    if (!out.ids) out.ids = xmalloc(sizeof(int32_t));
    *ids = out.ids;
    *n = out.n;
}

/* ------------------------------------------------------------ decoding */

char *tok_utf8_repair(const char *src, size_t len, size_t *len_out) {
    SBuf b;
    sbuf_init(&b);
    sbuf_reserve(&b, len + 1);
    const unsigned char *p = (const unsigned char *)src;
    size_t i = 0;
    while (i < len) {
        size_t k = utf8_valid_len(p + i, len - i);
        if (k) {
            sbuf_put(&b, src + i, k);
            i += k;
            continue;
        }
        /* Invalid: skip the longest prefix of a well-formed sequence (at
         * least the lead byte) and write one U+FFFD for it. */
        size_t j = i + 1;
        unsigned c = p[i];
        unsigned lo = 0x80, hi = 0xBF;
        size_t need = 0;
        if (c >= 0xC2 && c <= 0xDF) need = 1;
        else if (c >= 0xE0 && c <= 0xEF) need = 2;
        else if (c >= 0xF0 && c <= 0xF4) need = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
        if (need && j < len && p[j] >= lo && p[j] <= hi) {
            j++;
            for (size_t k2 = 2; k2 <= need && j < len && p[j] >= 0x80 && p[j] <= 0xBF; k2++) j++;
        }
        sbuf_put(&b, "\xEF\xBF\xBD", 3);
        i = j;
    }
    if (len_out) *len_out = b.len;
    return sbuf_take(&b);
}

const char *tok_token_bytes(const Tokenizer *t, int32_t id, size_t *len) {
    const TokShared *s = t->sh;
    if (id < 0 || id >= s->vocab_size || s->kind[id] == KIND_NONE) return NULL;
    if (len) *len = s->bytes[id].len;
    return s->arena + s->bytes[id].off;
}

char *tok_decode(const Tokenizer *t, const int32_t *ids, size_t n, int flags, size_t *len_out) {
    const TokShared *s = t->sh;
    SBuf raw;
    sbuf_init(&raw);
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= s->vocab_size || s->kind[id] == KIND_NONE) continue;
        if (s->kind[id] == KIND_SPECIAL && (flags & TOK_DECODE_SKIP_SPECIAL)) continue;
        sbuf_put(&raw, s->arena + s->bytes[id].off, s->bytes[id].len);
    }
    char *res = tok_utf8_repair(raw.data ? raw.data : "", raw.len, len_out);
    sbuf_free(&raw);
    return res;
}

/* ------------------------------------------------------------- lookups */

int32_t tok_id_of(const Tokenizer *t, const char *token) {
    const TokShared *s = t->sh;
    size_t n = strlen(token);
    if (n == 0) return -1;
    for (size_t i = 0; i < s->n_added; i++)
        if (s->added[i].content.len == n && memcmp(s->arena + s->added[i].content.off, token, n) == 0)
            return s->added[i].id;
    return vocab_find(s, token, n);
}

int32_t tok_vocab_size(const Tokenizer *t) {
    return t->sh->vocab_size;
}

bool tok_is_special(const Tokenizer *t, int32_t id) {
    const TokShared *s = t->sh;
    return id >= 0 && id < s->vocab_size && s->kind[id] == KIND_SPECIAL;
}
