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
    pcre2_code *re;       /* the split regex, for any text */
    pcre2_code *re_ascii; /* the same, for pure ASCII text */
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
    pcre2_match_data *md, *md_ascii;
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
    if (s->re_ascii) pcre2_code_free(s->re_ascii);
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

/* The code points Hugging Face's regex engine (Oniguruma, Unicode 16) takes
 * as \p{L}, \p{N} and \s. PCRE2's own tables follow its release (Debian's
 * 10.42 has Unicode 14, which lacks some 9,400 newer letters and digits) and
 * its \s also takes U+180E, so the pattern gets these tables spelled out
 * instead. Generated by `tests/gen_tokenizer_fixtures.py unicode-tables`. */
static const uint32_t uni_letter[][2] = {
    {0x41, 0x5A}, {0x61, 0x7A}, {0xAA, 0xAA}, {0xB5, 0xB5}, {0xBA, 0xBA}, {0xC0, 0xD6},
    {0xD8, 0xF6}, {0xF8, 0x2C1}, {0x2C6, 0x2D1}, {0x2E0, 0x2E4}, {0x2EC, 0x2EC}, {0x2EE, 0x2EE},
    {0x370, 0x374}, {0x376, 0x377}, {0x37A, 0x37D}, {0x37F, 0x37F}, {0x386, 0x386}, {0x388, 0x38A},
    {0x38C, 0x38C}, {0x38E, 0x3A1}, {0x3A3, 0x3F5}, {0x3F7, 0x481}, {0x48A, 0x52F}, {0x531, 0x556},
    {0x559, 0x559}, {0x560, 0x588}, {0x5D0, 0x5EA}, {0x5EF, 0x5F2}, {0x620, 0x64A}, {0x66E, 0x66F},
    {0x671, 0x6D3}, {0x6D5, 0x6D5}, {0x6E5, 0x6E6}, {0x6EE, 0x6EF}, {0x6FA, 0x6FC}, {0x6FF, 0x6FF},
    {0x710, 0x710}, {0x712, 0x72F}, {0x74D, 0x7A5}, {0x7B1, 0x7B1}, {0x7CA, 0x7EA}, {0x7F4, 0x7F5},
    {0x7FA, 0x7FA}, {0x800, 0x815}, {0x81A, 0x81A}, {0x824, 0x824}, {0x828, 0x828}, {0x840, 0x858},
    {0x860, 0x86A}, {0x870, 0x887}, {0x889, 0x88E}, {0x8A0, 0x8C9}, {0x904, 0x939}, {0x93D, 0x93D},
    {0x950, 0x950}, {0x958, 0x961}, {0x971, 0x980}, {0x985, 0x98C}, {0x98F, 0x990}, {0x993, 0x9A8},
    {0x9AA, 0x9B0}, {0x9B2, 0x9B2}, {0x9B6, 0x9B9}, {0x9BD, 0x9BD}, {0x9CE, 0x9CE}, {0x9DC, 0x9DD},
    {0x9DF, 0x9E1}, {0x9F0, 0x9F1}, {0x9FC, 0x9FC}, {0xA05, 0xA0A}, {0xA0F, 0xA10}, {0xA13, 0xA28},
    {0xA2A, 0xA30}, {0xA32, 0xA33}, {0xA35, 0xA36}, {0xA38, 0xA39}, {0xA59, 0xA5C}, {0xA5E, 0xA5E},
    {0xA72, 0xA74}, {0xA85, 0xA8D}, {0xA8F, 0xA91}, {0xA93, 0xAA8}, {0xAAA, 0xAB0}, {0xAB2, 0xAB3},
    {0xAB5, 0xAB9}, {0xABD, 0xABD}, {0xAD0, 0xAD0}, {0xAE0, 0xAE1}, {0xAF9, 0xAF9}, {0xB05, 0xB0C},
    {0xB0F, 0xB10}, {0xB13, 0xB28}, {0xB2A, 0xB30}, {0xB32, 0xB33}, {0xB35, 0xB39}, {0xB3D, 0xB3D},
    {0xB5C, 0xB5D}, {0xB5F, 0xB61}, {0xB71, 0xB71}, {0xB83, 0xB83}, {0xB85, 0xB8A}, {0xB8E, 0xB90},
    {0xB92, 0xB95}, {0xB99, 0xB9A}, {0xB9C, 0xB9C}, {0xB9E, 0xB9F}, {0xBA3, 0xBA4}, {0xBA8, 0xBAA},
    {0xBAE, 0xBB9}, {0xBD0, 0xBD0}, {0xC05, 0xC0C}, {0xC0E, 0xC10}, {0xC12, 0xC28}, {0xC2A, 0xC39},
    {0xC3D, 0xC3D}, {0xC58, 0xC5A}, {0xC5D, 0xC5D}, {0xC60, 0xC61}, {0xC80, 0xC80}, {0xC85, 0xC8C},
    {0xC8E, 0xC90}, {0xC92, 0xCA8}, {0xCAA, 0xCB3}, {0xCB5, 0xCB9}, {0xCBD, 0xCBD}, {0xCDD, 0xCDE},
    {0xCE0, 0xCE1}, {0xCF1, 0xCF2}, {0xD04, 0xD0C}, {0xD0E, 0xD10}, {0xD12, 0xD3A}, {0xD3D, 0xD3D},
    {0xD4E, 0xD4E}, {0xD54, 0xD56}, {0xD5F, 0xD61}, {0xD7A, 0xD7F}, {0xD85, 0xD96}, {0xD9A, 0xDB1},
    {0xDB3, 0xDBB}, {0xDBD, 0xDBD}, {0xDC0, 0xDC6}, {0xE01, 0xE30}, {0xE32, 0xE33}, {0xE40, 0xE46},
    {0xE81, 0xE82}, {0xE84, 0xE84}, {0xE86, 0xE8A}, {0xE8C, 0xEA3}, {0xEA5, 0xEA5}, {0xEA7, 0xEB0},
    {0xEB2, 0xEB3}, {0xEBD, 0xEBD}, {0xEC0, 0xEC4}, {0xEC6, 0xEC6}, {0xEDC, 0xEDF}, {0xF00, 0xF00},
    {0xF40, 0xF47}, {0xF49, 0xF6C}, {0xF88, 0xF8C}, {0x1000, 0x102A}, {0x103F, 0x103F}, {0x1050, 0x1055},
    {0x105A, 0x105D}, {0x1061, 0x1061}, {0x1065, 0x1066}, {0x106E, 0x1070}, {0x1075, 0x1081}, {0x108E, 0x108E},
    {0x10A0, 0x10C5}, {0x10C7, 0x10C7}, {0x10CD, 0x10CD}, {0x10D0, 0x10FA}, {0x10FC, 0x1248}, {0x124A, 0x124D},
    {0x1250, 0x1256}, {0x1258, 0x1258}, {0x125A, 0x125D}, {0x1260, 0x1288}, {0x128A, 0x128D}, {0x1290, 0x12B0},
    {0x12B2, 0x12B5}, {0x12B8, 0x12BE}, {0x12C0, 0x12C0}, {0x12C2, 0x12C5}, {0x12C8, 0x12D6}, {0x12D8, 0x1310},
    {0x1312, 0x1315}, {0x1318, 0x135A}, {0x1380, 0x138F}, {0x13A0, 0x13F5}, {0x13F8, 0x13FD}, {0x1401, 0x166C},
    {0x166F, 0x167F}, {0x1681, 0x169A}, {0x16A0, 0x16EA}, {0x16F1, 0x16F8}, {0x1700, 0x1711}, {0x171F, 0x1731},
    {0x1740, 0x1751}, {0x1760, 0x176C}, {0x176E, 0x1770}, {0x1780, 0x17B3}, {0x17D7, 0x17D7}, {0x17DC, 0x17DC},
    {0x1820, 0x1878}, {0x1880, 0x1884}, {0x1887, 0x18A8}, {0x18AA, 0x18AA}, {0x18B0, 0x18F5}, {0x1900, 0x191E},
    {0x1950, 0x196D}, {0x1970, 0x1974}, {0x1980, 0x19AB}, {0x19B0, 0x19C9}, {0x1A00, 0x1A16}, {0x1A20, 0x1A54},
    {0x1AA7, 0x1AA7}, {0x1B05, 0x1B33}, {0x1B45, 0x1B4C}, {0x1B83, 0x1BA0}, {0x1BAE, 0x1BAF}, {0x1BBA, 0x1BE5},
    {0x1C00, 0x1C23}, {0x1C4D, 0x1C4F}, {0x1C5A, 0x1C7D}, {0x1C80, 0x1C8A}, {0x1C90, 0x1CBA}, {0x1CBD, 0x1CBF},
    {0x1CE9, 0x1CEC}, {0x1CEE, 0x1CF3}, {0x1CF5, 0x1CF6}, {0x1CFA, 0x1CFA}, {0x1D00, 0x1DBF}, {0x1E00, 0x1F15},
    {0x1F18, 0x1F1D}, {0x1F20, 0x1F45}, {0x1F48, 0x1F4D}, {0x1F50, 0x1F57}, {0x1F59, 0x1F59}, {0x1F5B, 0x1F5B},
    {0x1F5D, 0x1F5D}, {0x1F5F, 0x1F7D}, {0x1F80, 0x1FB4}, {0x1FB6, 0x1FBC}, {0x1FBE, 0x1FBE}, {0x1FC2, 0x1FC4},
    {0x1FC6, 0x1FCC}, {0x1FD0, 0x1FD3}, {0x1FD6, 0x1FDB}, {0x1FE0, 0x1FEC}, {0x1FF2, 0x1FF4}, {0x1FF6, 0x1FFC},
    {0x2071, 0x2071}, {0x207F, 0x207F}, {0x2090, 0x209C}, {0x2102, 0x2102}, {0x2107, 0x2107}, {0x210A, 0x2113},
    {0x2115, 0x2115}, {0x2119, 0x211D}, {0x2124, 0x2124}, {0x2126, 0x2126}, {0x2128, 0x2128}, {0x212A, 0x212D},
    {0x212F, 0x2139}, {0x213C, 0x213F}, {0x2145, 0x2149}, {0x214E, 0x214E}, {0x2183, 0x2184}, {0x2C00, 0x2CE4},
    {0x2CEB, 0x2CEE}, {0x2CF2, 0x2CF3}, {0x2D00, 0x2D25}, {0x2D27, 0x2D27}, {0x2D2D, 0x2D2D}, {0x2D30, 0x2D67},
    {0x2D6F, 0x2D6F}, {0x2D80, 0x2D96}, {0x2DA0, 0x2DA6}, {0x2DA8, 0x2DAE}, {0x2DB0, 0x2DB6}, {0x2DB8, 0x2DBE},
    {0x2DC0, 0x2DC6}, {0x2DC8, 0x2DCE}, {0x2DD0, 0x2DD6}, {0x2DD8, 0x2DDE}, {0x2E2F, 0x2E2F}, {0x3005, 0x3006},
    {0x3031, 0x3035}, {0x303B, 0x303C}, {0x3041, 0x3096}, {0x309D, 0x309F}, {0x30A1, 0x30FA}, {0x30FC, 0x30FF},
    {0x3105, 0x312F}, {0x3131, 0x318E}, {0x31A0, 0x31BF}, {0x31F0, 0x31FF}, {0x3400, 0x4DBF}, {0x4E00, 0xA48C},
    {0xA4D0, 0xA4FD}, {0xA500, 0xA60C}, {0xA610, 0xA61F}, {0xA62A, 0xA62B}, {0xA640, 0xA66E}, {0xA67F, 0xA69D},
    {0xA6A0, 0xA6E5}, {0xA717, 0xA71F}, {0xA722, 0xA788}, {0xA78B, 0xA7CD}, {0xA7D0, 0xA7D1}, {0xA7D3, 0xA7D3},
    {0xA7D5, 0xA7DC}, {0xA7F2, 0xA801}, {0xA803, 0xA805}, {0xA807, 0xA80A}, {0xA80C, 0xA822}, {0xA840, 0xA873},
    {0xA882, 0xA8B3}, {0xA8F2, 0xA8F7}, {0xA8FB, 0xA8FB}, {0xA8FD, 0xA8FE}, {0xA90A, 0xA925}, {0xA930, 0xA946},
    {0xA960, 0xA97C}, {0xA984, 0xA9B2}, {0xA9CF, 0xA9CF}, {0xA9E0, 0xA9E4}, {0xA9E6, 0xA9EF}, {0xA9FA, 0xA9FE},
    {0xAA00, 0xAA28}, {0xAA40, 0xAA42}, {0xAA44, 0xAA4B}, {0xAA60, 0xAA76}, {0xAA7A, 0xAA7A}, {0xAA7E, 0xAAAF},
    {0xAAB1, 0xAAB1}, {0xAAB5, 0xAAB6}, {0xAAB9, 0xAABD}, {0xAAC0, 0xAAC0}, {0xAAC2, 0xAAC2}, {0xAADB, 0xAADD},
    {0xAAE0, 0xAAEA}, {0xAAF2, 0xAAF4}, {0xAB01, 0xAB06}, {0xAB09, 0xAB0E}, {0xAB11, 0xAB16}, {0xAB20, 0xAB26},
    {0xAB28, 0xAB2E}, {0xAB30, 0xAB5A}, {0xAB5C, 0xAB69}, {0xAB70, 0xABE2}, {0xAC00, 0xD7A3}, {0xD7B0, 0xD7C6},
    {0xD7CB, 0xD7FB}, {0xF900, 0xFA6D}, {0xFA70, 0xFAD9}, {0xFB00, 0xFB06}, {0xFB13, 0xFB17}, {0xFB1D, 0xFB1D},
    {0xFB1F, 0xFB28}, {0xFB2A, 0xFB36}, {0xFB38, 0xFB3C}, {0xFB3E, 0xFB3E}, {0xFB40, 0xFB41}, {0xFB43, 0xFB44},
    {0xFB46, 0xFBB1}, {0xFBD3, 0xFD3D}, {0xFD50, 0xFD8F}, {0xFD92, 0xFDC7}, {0xFDF0, 0xFDFB}, {0xFE70, 0xFE74},
    {0xFE76, 0xFEFC}, {0xFF21, 0xFF3A}, {0xFF41, 0xFF5A}, {0xFF66, 0xFFBE}, {0xFFC2, 0xFFC7}, {0xFFCA, 0xFFCF},
    {0xFFD2, 0xFFD7}, {0xFFDA, 0xFFDC}, {0x10000, 0x1000B}, {0x1000D, 0x10026}, {0x10028, 0x1003A}, {0x1003C, 0x1003D},
    {0x1003F, 0x1004D}, {0x10050, 0x1005D}, {0x10080, 0x100FA}, {0x10280, 0x1029C}, {0x102A0, 0x102D0}, {0x10300, 0x1031F},
    {0x1032D, 0x10340}, {0x10342, 0x10349}, {0x10350, 0x10375}, {0x10380, 0x1039D}, {0x103A0, 0x103C3}, {0x103C8, 0x103CF},
    {0x10400, 0x1049D}, {0x104B0, 0x104D3}, {0x104D8, 0x104FB}, {0x10500, 0x10527}, {0x10530, 0x10563}, {0x10570, 0x1057A},
    {0x1057C, 0x1058A}, {0x1058C, 0x10592}, {0x10594, 0x10595}, {0x10597, 0x105A1}, {0x105A3, 0x105B1}, {0x105B3, 0x105B9},
    {0x105BB, 0x105BC}, {0x105C0, 0x105F3}, {0x10600, 0x10736}, {0x10740, 0x10755}, {0x10760, 0x10767}, {0x10780, 0x10785},
    {0x10787, 0x107B0}, {0x107B2, 0x107BA}, {0x10800, 0x10805}, {0x10808, 0x10808}, {0x1080A, 0x10835}, {0x10837, 0x10838},
    {0x1083C, 0x1083C}, {0x1083F, 0x10855}, {0x10860, 0x10876}, {0x10880, 0x1089E}, {0x108E0, 0x108F2}, {0x108F4, 0x108F5},
    {0x10900, 0x10915}, {0x10920, 0x10939}, {0x10980, 0x109B7}, {0x109BE, 0x109BF}, {0x10A00, 0x10A00}, {0x10A10, 0x10A13},
    {0x10A15, 0x10A17}, {0x10A19, 0x10A35}, {0x10A60, 0x10A7C}, {0x10A80, 0x10A9C}, {0x10AC0, 0x10AC7}, {0x10AC9, 0x10AE4},
    {0x10B00, 0x10B35}, {0x10B40, 0x10B55}, {0x10B60, 0x10B72}, {0x10B80, 0x10B91}, {0x10C00, 0x10C48}, {0x10C80, 0x10CB2},
    {0x10CC0, 0x10CF2}, {0x10D00, 0x10D23}, {0x10D4A, 0x10D65}, {0x10D6F, 0x10D85}, {0x10E80, 0x10EA9}, {0x10EB0, 0x10EB1},
    {0x10EC2, 0x10EC4}, {0x10F00, 0x10F1C}, {0x10F27, 0x10F27}, {0x10F30, 0x10F45}, {0x10F70, 0x10F81}, {0x10FB0, 0x10FC4},
    {0x10FE0, 0x10FF6}, {0x11003, 0x11037}, {0x11071, 0x11072}, {0x11075, 0x11075}, {0x11083, 0x110AF}, {0x110D0, 0x110E8},
    {0x11103, 0x11126}, {0x11144, 0x11144}, {0x11147, 0x11147}, {0x11150, 0x11172}, {0x11176, 0x11176}, {0x11183, 0x111B2},
    {0x111C1, 0x111C4}, {0x111DA, 0x111DA}, {0x111DC, 0x111DC}, {0x11200, 0x11211}, {0x11213, 0x1122B}, {0x1123F, 0x11240},
    {0x11280, 0x11286}, {0x11288, 0x11288}, {0x1128A, 0x1128D}, {0x1128F, 0x1129D}, {0x1129F, 0x112A8}, {0x112B0, 0x112DE},
    {0x11305, 0x1130C}, {0x1130F, 0x11310}, {0x11313, 0x11328}, {0x1132A, 0x11330}, {0x11332, 0x11333}, {0x11335, 0x11339},
    {0x1133D, 0x1133D}, {0x11350, 0x11350}, {0x1135D, 0x11361}, {0x11380, 0x11389}, {0x1138B, 0x1138B}, {0x1138E, 0x1138E},
    {0x11390, 0x113B5}, {0x113B7, 0x113B7}, {0x113D1, 0x113D1}, {0x113D3, 0x113D3}, {0x11400, 0x11434}, {0x11447, 0x1144A},
    {0x1145F, 0x11461}, {0x11480, 0x114AF}, {0x114C4, 0x114C5}, {0x114C7, 0x114C7}, {0x11580, 0x115AE}, {0x115D8, 0x115DB},
    {0x11600, 0x1162F}, {0x11644, 0x11644}, {0x11680, 0x116AA}, {0x116B8, 0x116B8}, {0x11700, 0x1171A}, {0x11740, 0x11746},
    {0x11800, 0x1182B}, {0x118A0, 0x118DF}, {0x118FF, 0x11906}, {0x11909, 0x11909}, {0x1190C, 0x11913}, {0x11915, 0x11916},
    {0x11918, 0x1192F}, {0x1193F, 0x1193F}, {0x11941, 0x11941}, {0x119A0, 0x119A7}, {0x119AA, 0x119D0}, {0x119E1, 0x119E1},
    {0x119E3, 0x119E3}, {0x11A00, 0x11A00}, {0x11A0B, 0x11A32}, {0x11A3A, 0x11A3A}, {0x11A50, 0x11A50}, {0x11A5C, 0x11A89},
    {0x11A9D, 0x11A9D}, {0x11AB0, 0x11AF8}, {0x11BC0, 0x11BE0}, {0x11C00, 0x11C08}, {0x11C0A, 0x11C2E}, {0x11C40, 0x11C40},
    {0x11C72, 0x11C8F}, {0x11D00, 0x11D06}, {0x11D08, 0x11D09}, {0x11D0B, 0x11D30}, {0x11D46, 0x11D46}, {0x11D60, 0x11D65},
    {0x11D67, 0x11D68}, {0x11D6A, 0x11D89}, {0x11D98, 0x11D98}, {0x11EE0, 0x11EF2}, {0x11F02, 0x11F02}, {0x11F04, 0x11F10},
    {0x11F12, 0x11F33}, {0x11FB0, 0x11FB0}, {0x12000, 0x12399}, {0x12480, 0x12543}, {0x12F90, 0x12FF0}, {0x13000, 0x1342F},
    {0x13441, 0x13446}, {0x13460, 0x143FA}, {0x14400, 0x14646}, {0x16100, 0x1611D}, {0x16800, 0x16A38}, {0x16A40, 0x16A5E},
    {0x16A70, 0x16ABE}, {0x16AD0, 0x16AED}, {0x16B00, 0x16B2F}, {0x16B40, 0x16B43}, {0x16B63, 0x16B77}, {0x16B7D, 0x16B8F},
    {0x16D40, 0x16D6C}, {0x16E40, 0x16E7F}, {0x16F00, 0x16F4A}, {0x16F50, 0x16F50}, {0x16F93, 0x16F9F}, {0x16FE0, 0x16FE1},
    {0x16FE3, 0x16FE3}, {0x17000, 0x187F7}, {0x18800, 0x18CD5}, {0x18CFF, 0x18D08}, {0x1AFF0, 0x1AFF3}, {0x1AFF5, 0x1AFFB},
    {0x1AFFD, 0x1AFFE}, {0x1B000, 0x1B122}, {0x1B132, 0x1B132}, {0x1B150, 0x1B152}, {0x1B155, 0x1B155}, {0x1B164, 0x1B167},
    {0x1B170, 0x1B2FB}, {0x1BC00, 0x1BC6A}, {0x1BC70, 0x1BC7C}, {0x1BC80, 0x1BC88}, {0x1BC90, 0x1BC99}, {0x1D400, 0x1D454},
    {0x1D456, 0x1D49C}, {0x1D49E, 0x1D49F}, {0x1D4A2, 0x1D4A2}, {0x1D4A5, 0x1D4A6}, {0x1D4A9, 0x1D4AC}, {0x1D4AE, 0x1D4B9},
    {0x1D4BB, 0x1D4BB}, {0x1D4BD, 0x1D4C3}, {0x1D4C5, 0x1D505}, {0x1D507, 0x1D50A}, {0x1D50D, 0x1D514}, {0x1D516, 0x1D51C},
    {0x1D51E, 0x1D539}, {0x1D53B, 0x1D53E}, {0x1D540, 0x1D544}, {0x1D546, 0x1D546}, {0x1D54A, 0x1D550}, {0x1D552, 0x1D6A5},
    {0x1D6A8, 0x1D6C0}, {0x1D6C2, 0x1D6DA}, {0x1D6DC, 0x1D6FA}, {0x1D6FC, 0x1D714}, {0x1D716, 0x1D734}, {0x1D736, 0x1D74E},
    {0x1D750, 0x1D76E}, {0x1D770, 0x1D788}, {0x1D78A, 0x1D7A8}, {0x1D7AA, 0x1D7C2}, {0x1D7C4, 0x1D7CB}, {0x1DF00, 0x1DF1E},
    {0x1DF25, 0x1DF2A}, {0x1E030, 0x1E06D}, {0x1E100, 0x1E12C}, {0x1E137, 0x1E13D}, {0x1E14E, 0x1E14E}, {0x1E290, 0x1E2AD},
    {0x1E2C0, 0x1E2EB}, {0x1E4D0, 0x1E4EB}, {0x1E5D0, 0x1E5ED}, {0x1E5F0, 0x1E5F0}, {0x1E7E0, 0x1E7E6}, {0x1E7E8, 0x1E7EB},
    {0x1E7ED, 0x1E7EE}, {0x1E7F0, 0x1E7FE}, {0x1E800, 0x1E8C4}, {0x1E900, 0x1E943}, {0x1E94B, 0x1E94B}, {0x1EE00, 0x1EE03},
    {0x1EE05, 0x1EE1F}, {0x1EE21, 0x1EE22}, {0x1EE24, 0x1EE24}, {0x1EE27, 0x1EE27}, {0x1EE29, 0x1EE32}, {0x1EE34, 0x1EE37},
    {0x1EE39, 0x1EE39}, {0x1EE3B, 0x1EE3B}, {0x1EE42, 0x1EE42}, {0x1EE47, 0x1EE47}, {0x1EE49, 0x1EE49}, {0x1EE4B, 0x1EE4B},
    {0x1EE4D, 0x1EE4F}, {0x1EE51, 0x1EE52}, {0x1EE54, 0x1EE54}, {0x1EE57, 0x1EE57}, {0x1EE59, 0x1EE59}, {0x1EE5B, 0x1EE5B},
    {0x1EE5D, 0x1EE5D}, {0x1EE5F, 0x1EE5F}, {0x1EE61, 0x1EE62}, {0x1EE64, 0x1EE64}, {0x1EE67, 0x1EE6A}, {0x1EE6C, 0x1EE72},
    {0x1EE74, 0x1EE77}, {0x1EE79, 0x1EE7C}, {0x1EE7E, 0x1EE7E}, {0x1EE80, 0x1EE89}, {0x1EE8B, 0x1EE9B}, {0x1EEA1, 0x1EEA3},
    {0x1EEA5, 0x1EEA9}, {0x1EEAB, 0x1EEBB}, {0x20000, 0x2A6DF}, {0x2A700, 0x2B739}, {0x2B740, 0x2B81D}, {0x2B820, 0x2CEA1},
    {0x2CEB0, 0x2EBE0}, {0x2EBF0, 0x2EE5D}, {0x2F800, 0x2FA1D}, {0x30000, 0x3134A}, {0x31350, 0x323AF},
};
static const uint32_t uni_number[][2] = {
    {0x30, 0x39}, {0xB2, 0xB3}, {0xB9, 0xB9}, {0xBC, 0xBE}, {0x660, 0x669}, {0x6F0, 0x6F9},
    {0x7C0, 0x7C9}, {0x966, 0x96F}, {0x9E6, 0x9EF}, {0x9F4, 0x9F9}, {0xA66, 0xA6F}, {0xAE6, 0xAEF},
    {0xB66, 0xB6F}, {0xB72, 0xB77}, {0xBE6, 0xBF2}, {0xC66, 0xC6F}, {0xC78, 0xC7E}, {0xCE6, 0xCEF},
    {0xD58, 0xD5E}, {0xD66, 0xD78}, {0xDE6, 0xDEF}, {0xE50, 0xE59}, {0xED0, 0xED9}, {0xF20, 0xF33},
    {0x1040, 0x1049}, {0x1090, 0x1099}, {0x1369, 0x137C}, {0x16EE, 0x16F0}, {0x17E0, 0x17E9}, {0x17F0, 0x17F9},
    {0x1810, 0x1819}, {0x1946, 0x194F}, {0x19D0, 0x19DA}, {0x1A80, 0x1A89}, {0x1A90, 0x1A99}, {0x1B50, 0x1B59},
    {0x1BB0, 0x1BB9}, {0x1C40, 0x1C49}, {0x1C50, 0x1C59}, {0x2070, 0x2070}, {0x2074, 0x2079}, {0x2080, 0x2089},
    {0x2150, 0x2182}, {0x2185, 0x2189}, {0x2460, 0x249B}, {0x24EA, 0x24FF}, {0x2776, 0x2793}, {0x2CFD, 0x2CFD},
    {0x3007, 0x3007}, {0x3021, 0x3029}, {0x3038, 0x303A}, {0x3192, 0x3195}, {0x3220, 0x3229}, {0x3248, 0x324F},
    {0x3251, 0x325F}, {0x3280, 0x3289}, {0x32B1, 0x32BF}, {0xA620, 0xA629}, {0xA6E6, 0xA6EF}, {0xA830, 0xA835},
    {0xA8D0, 0xA8D9}, {0xA900, 0xA909}, {0xA9D0, 0xA9D9}, {0xA9F0, 0xA9F9}, {0xAA50, 0xAA59}, {0xABF0, 0xABF9},
    {0xFF10, 0xFF19}, {0x10107, 0x10133}, {0x10140, 0x10178}, {0x1018A, 0x1018B}, {0x102E1, 0x102FB}, {0x10320, 0x10323},
    {0x10341, 0x10341}, {0x1034A, 0x1034A}, {0x103D1, 0x103D5}, {0x104A0, 0x104A9}, {0x10858, 0x1085F}, {0x10879, 0x1087F},
    {0x108A7, 0x108AF}, {0x108FB, 0x108FF}, {0x10916, 0x1091B}, {0x109BC, 0x109BD}, {0x109C0, 0x109CF}, {0x109D2, 0x109FF},
    {0x10A40, 0x10A48}, {0x10A7D, 0x10A7E}, {0x10A9D, 0x10A9F}, {0x10AEB, 0x10AEF}, {0x10B58, 0x10B5F}, {0x10B78, 0x10B7F},
    {0x10BA9, 0x10BAF}, {0x10CFA, 0x10CFF}, {0x10D30, 0x10D39}, {0x10D40, 0x10D49}, {0x10E60, 0x10E7E}, {0x10F1D, 0x10F26},
    {0x10F51, 0x10F54}, {0x10FC5, 0x10FCB}, {0x11052, 0x1106F}, {0x110F0, 0x110F9}, {0x11136, 0x1113F}, {0x111D0, 0x111D9},
    {0x111E1, 0x111F4}, {0x112F0, 0x112F9}, {0x11450, 0x11459}, {0x114D0, 0x114D9}, {0x11650, 0x11659}, {0x116C0, 0x116C9},
    {0x116D0, 0x116E3}, {0x11730, 0x1173B}, {0x118E0, 0x118F2}, {0x11950, 0x11959}, {0x11BF0, 0x11BF9}, {0x11C50, 0x11C6C},
    {0x11D50, 0x11D59}, {0x11DA0, 0x11DA9}, {0x11F50, 0x11F59}, {0x11FC0, 0x11FD4}, {0x12400, 0x1246E}, {0x16130, 0x16139},
    {0x16A60, 0x16A69}, {0x16AC0, 0x16AC9}, {0x16B50, 0x16B59}, {0x16B5B, 0x16B61}, {0x16D70, 0x16D79}, {0x16E80, 0x16E96},
    {0x1CCF0, 0x1CCF9}, {0x1D2C0, 0x1D2D3}, {0x1D2E0, 0x1D2F3}, {0x1D360, 0x1D378}, {0x1D7CE, 0x1D7FF}, {0x1E140, 0x1E149},
    {0x1E2F0, 0x1E2F9}, {0x1E4F0, 0x1E4F9}, {0x1E5F1, 0x1E5FA}, {0x1E8C7, 0x1E8CF}, {0x1E950, 0x1E959}, {0x1EC71, 0x1ECAB},
    {0x1ECAD, 0x1ECAF}, {0x1ECB1, 0x1ECB4}, {0x1ED01, 0x1ED2D}, {0x1ED2F, 0x1ED3D}, {0x1F100, 0x1F10C}, {0x1FBF0, 0x1FBF9},
};
static const uint32_t uni_space[][2] = {
    {0x9, 0xD}, {0x20, 0x20}, {0x85, 0x85}, {0xA0, 0xA0}, {0x1680, 0x1680}, {0x2000, 0x200A},
    {0x2028, 0x2029}, {0x202F, 0x202F}, {0x205F, 0x205F}, {0x3000, 0x3000},
};

#define NRANGES(t) (sizeof(t) / sizeof((t)[0]))
#define N_CODEPOINTS 0x110000

static void class_range(SBuf *b, uint32_t lo, uint32_t hi) {
    if (lo == hi) sbuf_printf(b, "\\x{%X}", lo);
    else sbuf_printf(b, "\\x{%X}-\\x{%X}", lo, hi);
}

static void bits_set(uint8_t *bits, uint32_t lo, uint32_t hi) {
    for (uint32_t c = lo; c <= hi; c++) bits[c >> 3] |= (uint8_t)(1u << (c & 7));
}

static bool bit_get(const uint8_t *bits, uint32_t c) {
    return bits[c >> 3] >> (c & 7) & 1;
}

/* Every code point but the surrogates, in order, as UTF-8. */
static char *all_code_points(size_t *len) {
    char *s = xmalloc((size_t)N_CODEPOINTS * 4);
    size_t n = 0;
    for (int32_t c = 0; c < N_CODEPOINTS; c++)
        if (c < 0xD800 || c > 0xDFFF) n += (size_t)utf8proc_encode_char(c, (utf8proc_uint8_t *)s + n);
    *len = n;
    return s;
}

/* The body of a bracket class matching what table tab lists. When PCRE2's
 * own \p{prop} matches nothing outside tab (its Unicode is older), that is
 * \p{prop} plus the code points it lacks: a short class whose common case
 * is PCRE2's fast property lookup. Otherwise every range of tab, spelled
 * out. PCRE2's set is found by running \p{prop}+ over all code points. */
static void property_body(SBuf *out, const char *prop, const uint32_t (*tab)[2], size_t n, const char *all,
                          size_t all_len) {
    uint8_t *want = xcalloc(N_CODEPOINTS / 8, 1), *have = xcalloc(N_CODEPOINTS / 8, 1);
    for (size_t i = 0; i < n; i++) bits_set(want, tab[i][0], tab[i][1]);
    char pat[32];
    snprintf(pat, sizeof pat, "\\p{%s}+", prop);
    int code;
    PCRE2_SIZE at;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &code, &at, NULL);
    pcre2_match_data *md = re ? pcre2_match_data_create_from_pattern(re, NULL) : NULL;
    if (!re || !md) die_runtime("cannot compile %s", pat);
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
    size_t from = 0;
    while (from < all_len && pcre2_match(re, (PCRE2_SPTR)all, all_len, from, PCRE2_NO_UTF_CHECK, md, NULL) > 0) {
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        for (size_t i = ov[0]; i < ov[1];) {
            utf8proc_int32_t c;
            i += (size_t)utf8proc_iterate((const utf8proc_uint8_t *)all + i, 4, &c);
            bits_set(have, (uint32_t)c, (uint32_t)c);
        }
        from = ov[1];
    }
    pcre2_match_data_free(md);
    pcre2_code_free(re);

    bool superset_only = true; /* PCRE2 matches nothing outside the table */
    for (uint32_t c = 0; c < N_CODEPOINTS && superset_only; c++)
        if (bit_get(have, c) && !bit_get(want, c)) superset_only = false;
    if (superset_only) {
        /* Latin-1 spelled out first: PCRE2 puts those in a bitmap, which
         * answers for the common characters before any property lookup. */
        for (size_t i = 0; i < n && tab[i][0] < 256; i++)
            class_range(out, tab[i][0], tab[i][1] < 256 ? tab[i][1] : 255);
        sbuf_printf(out, "\\p{%s}", prop);
        for (uint32_t c = 256; c < N_CODEPOINTS; c++) {
            if (!bit_get(want, c) || bit_get(have, c)) continue;
            uint32_t e = c;
            while (e + 1 < N_CODEPOINTS && bit_get(want, e + 1) && !bit_get(have, e + 1)) e++;
            class_range(out, c, e);
            c = e;
        }
    } else {
        for (size_t i = 0; i < n; i++) class_range(out, tab[i][0], tab[i][1]);
    }
    free(want);
    free(have);
}

/* Copy the pattern with \p{L}, \p{N}, \s and \S replaced by the given
 * class bodies: a class of their own outside brackets, their ranges inside.
 * Returns false for \S inside brackets (which has no such spelling here). */
static bool rewrite_pattern(const char *pat, const char *letter, const char *number, const char *space, SBuf *out) {
    bool in_class = false;
    for (const char *p = pat; *p;) {
        const char *body = NULL;
        bool negate = false;
        if (p[0] == '\\' && p[1]) {
            if (strncmp(p, "\\p{L}", 5) == 0 || strncmp(p, "\\p{N}", 5) == 0) {
                body = p[3] == 'L' ? letter : number;
                p += 5;
            } else if (p[1] == 's' || p[1] == 'S') {
                body = space;
                negate = p[1] == 'S';
                p += 2;
            } else { /* any other escape: copy it whole */
                sbuf_put(out, p, 2);
                p += 2;
                continue;
            }
            if (in_class && negate) return false;
            if (!in_class) sbuf_puts(out, negate ? "[^" : "[");
            sbuf_puts(out, body);
            if (!in_class) sbuf_putc(out, ']');
            continue;
        }
        if (!in_class && p[0] == '[') {
            in_class = true;
            sbuf_putc(out, *p++);
            if (*p == '^') sbuf_putc(out, *p++);
            if (*p == ']') sbuf_putc(out, *p++); /* a leading ] is literal */
            continue;
        }
        if (in_class && p[0] == ']') in_class = false;
        sbuf_putc(out, *p++);
    }
    return true;
}

static pcre2_code *compile_one(const char *pattern, uint32_t options, const char *path, char *err, size_t errlen) {
    int code;
    PCRE2_SIZE at;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, options, &code, &at, NULL);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        set_err(err, errlen, "%s: pre_tokenizer regex does not compile (%s)", path, (char *)msg);
        return NULL;
    }
    if (pcre2_jit_compile(re, PCRE2_JIT_COMPLETE) != 0) {
        pcre2_code_free(re);
        set_err(err, errlen, "%s: pre_tokenizer regex: PCRE2 JIT is not available", path);
        return NULL;
    }
    return re;
}

/* Two compiled forms of the split regex, each equal to the original on the
 * text it is used for. re: UTF-8 mode with the Unicode tables above.
 * re_ascii: \p{L}, \p{N}, \s narrowed to their ASCII members and compiled
 * for bytes; on pure ASCII text every class answers alike, and this form is
 * several times faster (plain bitmaps, no UTF decoding). */
static bool compile_regex(TokShared *s, const char *pattern, const char *path, char *err, size_t errlen) {
    SBuf letter, number, space, pat, apat;
    sbuf_init(&letter);
    sbuf_init(&number);
    sbuf_init(&space);
    sbuf_init(&pat);
    sbuf_init(&apat);
    size_t all_len;
    char *all = all_code_points(&all_len);
    property_body(&letter, "L", uni_letter, NRANGES(uni_letter), all, all_len);
    property_body(&number, "N", uni_number, NRANGES(uni_number), all, all_len);
    free(all);
    for (size_t i = 0; i < NRANGES(uni_space); i++) class_range(&space, uni_space[i][0], uni_space[i][1]);
    bool ok = rewrite_pattern(pattern, letter.data, number.data, space.data, &pat) &&
              rewrite_pattern(pattern, "A-Za-z", "0-9", "\\t-\\r ", &apat);
    if (!ok) {
        set_err(err, errlen, "%s: pre_tokenizer regex uses \\S inside brackets, which is not supported", path);
    } else {
        /* MATCH_INVALID_UTF: invalid bytes never match and so end up as
         * pre-tokens of their own instead of being undefined input. */
        s->re = compile_one(pat.data, PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, path, err, errlen);
        s->re_ascii = s->re ? compile_one(apat.data, 0, path, err, errlen) : NULL;
        ok = s->re_ascii != NULL;
    }
    sbuf_free(&letter);
    sbuf_free(&number);
    sbuf_free(&space);
    sbuf_free(&pat);
    sbuf_free(&apat);
    return ok;
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
    t->md_ascii = pcre2_match_data_create_from_pattern(sh->re_ascii, NULL);
    t->mctx = pcre2_match_context_create(NULL);
    /* Long whitespace or punctuation runs are one match; give the JIT room. */
    t->jstack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, NULL);
    if (!t->md || !t->md_ascii || !t->mctx || !t->jstack) die_runtime("out of memory creating regex match data");
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
    pcre2_match_data_free(tok->md_ascii);
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

typedef void (*PieceFn)(Tokenizer *t, const char *piece, size_t n, void *ctx);

static bool is_ascii(const char *p, size_t n) {
    unsigned char acc = 0;
    for (size_t i = 0; i < n; i++) acc |= (unsigned char)p[i];
    return acc < 0x80;
}

/* Split one stretch of normalized text with the regex: every match and
 * every gap between matches is a pre-token (the "Isolated" behaviour). */
static inline void split_pieces(Tokenizer *t, const char *p, size_t n, PieceFn fn, void *ctx) {
    bool ascii = is_ascii(p, n);
    pcre2_code *re = ascii ? t->sh->re_ascii : t->sh->re;
    pcre2_match_data *md = ascii ? t->md_ascii : t->md;
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    size_t done = 0, from = 0;
    while (from < n) {
        int rc = pcre2_jit_match(re, (PCRE2_SPTR)p, n, from, 0, md, t->mctx);
        if (rc < 0) break; /* no match (or a matcher limit): the rest is one gap */
        size_t ms = ov[0], me = ov[1];
        if (me == ms) { /* an empty match splits nothing; step past one byte */
            from = ms + 1;
            continue;
        }
        if (ms > done) fn(t, p + done, ms - done, ctx);
        fn(t, p + ms, me - ms, ctx);
        done = from = me;
    }
    if (done < n) fn(t, p + done, n - done, ctx);
}

static void piece_to_ids(Tokenizer *t, const char *piece, size_t n, void *ctx) {
    bpe_word(t, piece, n, ctx);
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

/* True when NFC leaves code point cp alone whatever surrounds it: a
 * starter (combining class 0) with no decomposition that is never the second
 * half of a composition. Those second halves are all marks (category M) or
 * Hangul jamo, so both are excluded; compatibility decompositions are
 * excluded too though NFC keeps them, which only costs time. Everything
 * below U+0300 qualifies. */
static bool nfc_inert(int32_t cp) {
    if (cp < 0x300) return true;
    if (cp >= 0x1100 && cp <= 0x11FF) return false;
    const utf8proc_property_t *pr = utf8proc_get_property(cp);
    utf8proc_propval_t cat = pr->category;
    return pr->combining_class == 0 && pr->decomp_seqindex == UINT16_MAX && cat != UTF8PROC_CATEGORY_MN &&
           cat != UTF8PROC_CATEGORY_MC && cat != UTF8PROC_CATEGORY_ME;
}

/* Append the NFC form of p to out. Invalid UTF-8 bytes are kept as they
 * are and the valid runs between them normalized separately. */
static void nfc_append(SBuf *out, const char *p, size_t n) {
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
            if (r >= 0) sbuf_put(out, (const char *)dst, (size_t)r);
            else sbuf_put(out, p + i, j - i);
            free(dst);
        }
        if (j < n) sbuf_putc(out, p[j++]); /* one invalid byte */
        i = j;
    }
}

/* Does the non-ASCII run p[0..n) hold a code point NFC may change? */
static bool run_needs_nfc(const char *p, size_t n) {
    size_t i = 0;
    while (i < n) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)p + i, (utf8proc_ssize_t)(n - i), &cp);
        if (k <= 0) { /* an invalid byte stays as it is */
            i++;
            continue;
        }
        if (!nfc_inert(cp)) return true;
        i += (size_t)k;
    }
    return false;
}

/* NFC-normalize one stretch of text. Normalization never reaches across an
 * ASCII character (it is a starter no mark precedes and nothing composes
 * onto), so only each run of non-ASCII bytes, with the ASCII character just
 * before it (it may take combining marks), is looked at, and handed to
 * utf8proc only when a code point in it is not inert. Returns false when
 * the text is already NFC; else the normalized text is in t->norm. */
static bool normalize_nfc(Tokenizer *t, const char *p, size_t n) {
    size_t i = 0, copied = 0;
    bool changed = false;
    while (i < n) {
        while (i < n && (unsigned char)p[i] < 0x80) i++;
        if (i == n) break;
        size_t start = i, end = i;
        while (end < n && (unsigned char)p[end] >= 0x80) end++;
        i = end;
        if (!run_needs_nfc(p + start, end - start)) continue;
        if (start > copied) start--; /* the ASCII character before the run */
        if (!changed) t->norm.len = 0;
        changed = true;
        sbuf_put(&t->norm, p + copied, start - copied);
        nfc_append(&t->norm, p + start, end - start);
        copied = end;
    }
    if (changed) sbuf_put(&t->norm, p + copied, n - copied);
    return changed;
}

static void encode_stretch(Tokenizer *t, const char *p, size_t n, TokIds *out) {
    if (n == 0) return;
    if (t->sh->nfc && normalize_nfc(t, p, n)) {
        split_pieces(t, t->norm.data, t->norm.len, piece_to_ids, out);
    } else {
        split_pieces(t, p, n, piece_to_ids, out);
    }
}

typedef struct {
    void (*fn)(const char *piece, size_t n, void *ctx);
    void *ctx;
} PieceCall;

static void piece_to_user(Tokenizer *t, const char *piece, size_t n, void *ctx) {
    PieceCall *c = ctx;
    c->fn(piece, n, c->ctx);
}

void tok_pretokenize(Tokenizer *t, const char *text, size_t len, void (*fn)(const char *piece, size_t n, void *ctx),
                     void *ctx) {
    PieceCall call = {fn, ctx};
    if (len == 0) return;
    if (t->sh->nfc && normalize_nfc(t, text, len)) {
        split_pieces(t, t->norm.data, t->norm.len, piece_to_user, &call);
    } else {
        split_pieces(t, text, len, piece_to_user, &call);
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
