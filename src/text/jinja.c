/* jinja.c — a hand-written Jinja2 interpreter for chat templates.
 *
 * Debian ships no C Jinja library, so this is a from-scratch interpreter of
 * the subset Hugging Face chat templates use, matching Python jinja2 3.1 as
 * configured by transformers (see jinja.h). The pipeline:
 *
 *   source --lex--> tokens --parse--> node tree (owned by the template)
 *   node tree + context --render--> text
 *
 * The lexer copies jinja2's rules exactly (newline normalisation, dropping
 * one trailing newline, `-`/`+` whitespace control, trim_blocks,
 * lstrip_blocks), because whitespace is where chat templates differ most
 * easily from their Python rendering.
 *
 * Memory: the parser allocates nodes from the template's arena; rendering
 * allocates every value from a per-render arena dropped as a whole at the
 * end. Errors anywhere deep in parsing or evaluation longjmp back to
 * jinja_parse / jinja_render, which is safe because nothing reachable
 * between the setjmp and the longjmp owns memory outside those arenas. */
#include "text/jinja.h"

#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <utf8proc.h>

#include "core/error.h"
#include "core/json.h"
#include "core/sbuf.h"

/* ================================================================ arena */

typedef struct Chunk {
    struct Chunk *next;
    size_t used, cap;
    max_align_t data[]; /* cap bytes */
} Chunk;

typedef struct {
    Chunk *head;
    size_t total; /* bytes of chunks held */
    size_t limit; /* 0: none */
} Arena;

static void arena_free(Arena *a) {
    Chunk *c = a->head;
    while (c) {
        Chunk *n = c->next;
        free(c);
        c = n;
    }
    a->head = NULL;
    a->total = 0;
}

/* NULL only when the limit would be exceeded. */
static void *arena_try_alloc(Arena *a, size_t n) {
    n = (n + 15) & ~(size_t)15;
    Chunk *c = a->head;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > 32768 ? n : 32768;
        if (a->limit && a->total + cap > a->limit) return NULL;
        c = xmalloc(sizeof(Chunk) + cap);
        c->used = 0;
        c->cap = cap;
        c->next = a->head;
        a->head = c;
        a->total += cap;
    }
    void *p = (char *)c->data + c->used;
    c->used += n;
    return p;
}

/* ================================================================ UTF-8 */

/* Decode one code point at p (n bytes left); invalid bytes decode as
 * themselves (one byte each) so every input makes progress. */
static int32_t utf8_next(const char *p, size_t n, size_t *adv) {
    utf8proc_int32_t cp;
    utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)p, (utf8proc_ssize_t)(n > 4 ? 4 : n), &cp);
    if (k <= 0) {
        *adv = 1;
        return (unsigned char)p[0];
    }
    *adv = (size_t)k;
    return cp;
}

static size_t utf8_put(char *o, int32_t cp) {
    if (cp < 0 || cp > 0x10FFFF) cp = 0xFFFD;
    return (size_t)utf8proc_encode_char(cp, (utf8proc_uint8_t *)o);
}

/* Python's str.isspace. */
static bool py_isspace(int32_t c) {
    if (c < 128) return c == ' ' || (c >= 9 && c <= 13) || (c >= 0x1c && c <= 0x1f);
    if (c == 0x85 || c == 0xa0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 ||
        c == 0x202f || c == 0x205f || c == 0x3000)
        return true;
    return false;
}

static bool is_ascii(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] >= 0x80) return false;
    return true;
}

static size_t utf8_count(const char *s, size_t n) {
    if (is_ascii(s, n)) return n;
    size_t k = 0, adv;
    for (size_t i = 0; i < n; i += adv, k++) utf8_next(s + i, n - i, &adv);
    return k;
}

/* ================================================================ values */

enum { VIEW_NONE, VIEW_ITEMS, VIEW_KEYS, VIEW_VALUES };
typedef enum { V_UNDEF, V_NONE, V_BOOL, V_INT, V_FLOAT, V_STR, V_LIST, V_DICT, V_NS, V_FUNC, V_MACRO, V_LOOP } VKind;

typedef struct Value Value;
typedef struct R R;
typedef struct Node Node;
typedef struct Frame Frame;

typedef struct {
    Value **pos;
    int npos;
    const char **kwname;
    Value **kwval;
    int nkw;
} Args;

typedef Value *(*BuiltinFn)(R *r, Value *self, Args *a);

struct Value {
    uint8_t kind;
    uint8_t tuple; /* V_LIST printed as a tuple */
    uint8_t gen;   /* V_LIST standing for a Python iterator: no len, always true */
    uint8_t view;  /* V_LIST printed as dict_items/dict_keys/dict_values (VIEW_*) */
    union {
        bool b;
        int64_t i;
        double f;
        struct {
            const char *s;
            size_t n;
        } str; /* V_STR; V_UNDEF: the message for when it is used */
        struct {
            Value **v;
            size_t n, cap;
        } list;
        struct {
            Value **k, **v;
            size_t n, cap;
        } dict; /* V_DICT, V_NS (keys are strings there) */
        struct {
            BuiltinFn fn;
            Value *self;
            const char *name;
        } func;
        struct {
            const Node *node;
            Frame *closure;
            Value *caller;
        } macro;
        struct {
            Value *items; /* V_LIST being looped over */
            size_t i;     /* current index0 */
        } loop;
    };
};

struct Frame {
    Value *vars; /* V_DICT */
    Frame *parent;
};

/* ================================================================ nodes */

typedef enum {
    /* statements */
    S_TEXT, S_PRINT, S_IF, S_FOR, S_SET, S_SETBLOCK, S_MACRO, S_CALLBLOCK, S_FILTERBLOCK, S_BREAK, S_CONTINUE,
    S_BODY, S_WITH,
    /* expressions */
    E_CONST, E_NAME, E_ATTR, E_ITEM, E_SLICE, E_CALL, E_FILTER, E_TEST, E_BIN, E_NEG, E_POS, E_NOT, E_AND, E_OR,
    E_CMP, E_COND, E_LIST, E_TUPLE, E_DICT, E_CONCAT,
} NKind;

typedef enum { OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_FDIV, OP_MOD, OP_POW } BinOp;
typedef enum { C_EQ, C_NE, C_LT, C_LE, C_GT, C_GE, C_IN, C_NOTIN } CmpOp;

typedef struct Filter Filter;
typedef struct Test Test;

struct Node {
    uint8_t kind;
    int op;       /* BinOp, negate flag for tests */
    int line, col;
    const char *str; /* text, name, attribute */
    size_t len;
    Value *value;    /* E_CONST */
    Node *a, *b, *c, *d; /* operands / children */
    Node **kids;     /* bodies, args, items */
    int nkids;
    const char **kwname; /* call keywords / macro parameter names */
    Node **kwval;
    int nkw;
    int *ops; /* E_CMP operators */
    const Filter *filter;
    const Test *test;
};

struct JinjaTemplate {
    Arena arena;
    Node *body;
    char *origin;
};

/* ================================================================ lexer */

typedef enum { T_DATA, T_VBEGIN, T_VEND, T_BBEGIN, T_BEND, T_NAME, T_STR, T_INT, T_FLOAT, T_OP, T_EOF } TKind;

typedef struct {
    TKind kind;
    const char *s; /* T_DATA: text; T_STR: decoded; T_NAME/T_OP: spelling */
    size_t n;
    int line, col;
    int64_t i;
    double f;
} Token;

typedef struct {
    Arena *arena;
    const char *src; /* normalised source */
    size_t len;
    const char *origin;
    char *err;
    size_t errlen;
    jmp_buf jb;
    Token *toks;
    size_t ntok, cap;
    size_t pos; /* parser position */
    int depth;
} P;

static void pos_linecol(const char *src, size_t off, int *line, int *col) {
    int l = 1, c = 1;
    for (size_t i = 0; i < off; i++) {
        if (src[i] == '\n') l++, c = 1;
        else if (((unsigned char)src[i] & 0xC0) != 0x80) c++;
    }
    *line = l;
    *col = c;
}

static noreturn void pfail_at(P *p, int line, int col, const char *fmt, ...) {
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(p->err, p->errlen, "%s:%d:%d: %s", p->origin, line, col, msg);
    longjmp(p->jb, 1);
}

static void *palloc(P *p, size_t n) {
    void *m = arena_try_alloc(p->arena, n);
    if (!m) die_runtime("jinja: out of memory"); /* the template arena has no limit */
    memset(m, 0, n);
    return m;
}

static char *pstrndup(P *p, const char *s, size_t n) {
    char *d = palloc(p, n + 1);
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

static Token *push_tok(P *p, TKind k, size_t off) {
    if (p->ntok == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 256;
        Token *t = palloc(p, cap * sizeof *t);
        if (p->ntok) memcpy(t, p->toks, p->ntok * sizeof *t);
        p->toks = t;
        p->cap = cap;
    }
    Token *t = &p->toks[p->ntok++];
    memset(t, 0, sizeof *t);
    t->kind = k;
    pos_linecol(p->src, off, &t->line, &t->col);
    return t;
}

/* Length of Python-whitespace at s (regex \s*). */
static size_t span_space(const char *s, size_t n) {
    size_t i = 0, adv;
    while (i < n && py_isspace(utf8_next(s + i, n - i, &adv))) i += adv;
    return i;
}

/* Length of text after stripping trailing Python-whitespace (str.rstrip()). */
static size_t rstrip_len(const char *s, size_t n) {
    size_t end = n;
    while (end > 0) {
        size_t st = end - 1;
        while (st > 0 && ((unsigned char)s[st] & 0xC0) == 0x80 && end - st < 4) st--;
        size_t adv;
        int32_t c = utf8_next(s + st, end - st, &adv);
        if (st + adv != end) c = (unsigned char)s[end - 1], st = end - 1;
        if (!py_isspace(c)) break;
        end = st;
    }
    return end;
}

static void emit_data(P *p, const char *s, size_t n, size_t off) {
    if (n == 0) return;
    Token *t = push_tok(p, T_DATA, off);
    t->s = s;
    t->n = n;
}

/* Decode a string literal body the way jinja2 does (Python unicode-escape). */
static void lex_string(P *p, Token *t, const char *s, size_t n) {
    char *o = palloc(p, n + 1);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\\' || i + 1 >= n) {
            o[k++] = s[i];
            continue;
        }
        char e = s[++i];
        int32_t cp = -1;
        int hex = 0;
        switch (e) {
        case '\n': continue;
        case '\\': o[k++] = '\\'; continue;
        case '\'': o[k++] = '\''; continue;
        case '"': o[k++] = '"'; continue;
        case 'a': o[k++] = '\a'; continue;
        case 'b': o[k++] = '\b'; continue;
        case 'f': o[k++] = '\f'; continue;
        case 'n': o[k++] = '\n'; continue;
        case 'r': o[k++] = '\r'; continue;
        case 't': o[k++] = '\t'; continue;
        case 'v': o[k++] = '\v'; continue;
        case 'x': hex = 2; break;
        case 'u': hex = 4; break;
        case 'U': hex = 8; break;
        default:
            if (e >= '0' && e <= '7') {
                cp = 0;
                int d = 0;
                while (d < 3 && i < n && s[i] >= '0' && s[i] <= '7') cp = cp * 8 + (s[i++] - '0'), d++;
                i--;
                k += utf8_put(o + k, cp);
                continue;
            }
            o[k++] = '\\';
            o[k++] = e;
            continue;
        }
        cp = 0;
        for (int d = 0; d < hex; d++) {
            char h = i + 1 + (size_t)d < n ? s[i + 1 + d] : 0;
            int v = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10 : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
            if (v < 0) pfail_at(p, t->line, t->col, "truncated \\%c escape in string literal", e);
            cp = cp * 16 + v;
        }
        i += (size_t)hex;
        if (cp > 0x10FFFF) pfail_at(p, t->line, t->col, "illegal Unicode character in string literal");
        k += utf8_put(o + k, cp);
    }
    o[k] = 0;
    t->s = o;
    t->n = k;
}

static const char *const OPS2[] = {"//", "**", "==", "!=", ">=", "<=", NULL};
static const char OPS1[] = "+-/*%~[](){}><=.:|,;";

static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_name0(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static bool is_name1(char c) { return is_name0(c) || is_digit(c); }

/* Digits with single underscores between them ((\d+_)*\d+); returns length. */
static size_t span_digits(const char *s, size_t n) {
    size_t i = 0;
    if (i >= n || !is_digit(s[i])) return 0;
    while (i < n && is_digit(s[i])) {
        i++;
        if (i + 1 < n && s[i] == '_' && is_digit(s[i + 1])) i++;
    }
    return i;
}

static size_t strip_underscores(const char *s, size_t n, char *buf, size_t cap) {
    size_t k = 0;
    for (size_t i = 0; i < n && k + 1 < cap; i++)
        if (s[i] != '_') buf[k++] = s[i];
    buf[k] = 0;
    return k;
}

/* Tokens inside {{ }} or {% %} up to the closing tag; returns the offset after it. */
static size_t lex_tag(P *p, size_t i, bool block, bool *line_starting) {
    const char *s = p->src;
    size_t n = p->len;
    char stack[256];
    int depth = 0;
    size_t start = i;
    for (;;) {
        if (i >= n) {
            int l, c;
            pos_linecol(s, start, &l, &c);
            pfail_at(p, l, c, "unexpected end of template, expected '%s'", block ? "%}" : "}}");
        }
        if (depth == 0) {
            const char *end = block ? "%}" : "}}";
            size_t m = 0;
            if (block && s[i] == '+' && i + 3 <= n && strncmp(s + i + 1, end, 2) == 0) {
                m = 3;
            } else if (s[i] == '-' && i + 3 <= n && strncmp(s + i + 1, end, 2) == 0) {
                m = 3 + span_space(s + i + 3, n - i - 3);
            } else if (i + 2 <= n && strncmp(s + i, end, 2) == 0) {
                m = 2;
                if (block && i + 2 < n && s[i + 2] == '\n') m = 3;
            }
            if (m) {
                push_tok(p, block ? T_BEND : T_VEND, i);
                *line_starting = s[i + m - 1] == '\n';
                return i + m;
            }
        }
        char ch = s[i];
        size_t adv;
        if (py_isspace(utf8_next(s + i, n - i, &adv))) {
            i += adv;
            continue;
        }
        /* float: (\d+_)*\d+ ( (\.(\d+_)*\d+)? e[+-]?(\d+_)*\d+ | \.(\d+_)*\d+ ), not after '.' */
        size_t d = span_digits(s + i, n - i);
        if (d && !(i > 0 && s[i - 1] == '.')) {
            size_t j = i + d;
            size_t frac = 0, ex = 0;
            if (j < n && s[j] == '.') frac = span_digits(s + j + 1, n - j - 1);
            size_t k = j + (frac ? frac + 1 : 0);
            if (k < n && (s[k] == 'e' || s[k] == 'E')) {
                size_t q = k + 1;
                if (q < n && (s[q] == '+' || s[q] == '-')) q++;
                size_t ed = span_digits(s + q, n - q);
                if (ed) ex = q + ed - k;
            }
            if (frac || ex) {
                size_t end = k + ex;
                char buf[128];
                strip_underscores(s + i, end - i, buf, sizeof buf);
                Token *t = push_tok(p, T_FLOAT, i);
                t->f = strtod(buf, NULL);
                i = end;
                continue;
            }
        }
        if (is_digit(ch)) {
            /* integer: 0b/0o/0x prefixed, [1-9](_?\d)*, 0(_?0)* */
            int base = 10;
            size_t j = i;
            if (ch == '0' && i + 1 < n && strchr("bBoOxX", s[i + 1]) && s[i + 1]) {
                char b = (char)(s[i + 1] | 0x20);
                base = b == 'b' ? 2 : b == 'o' ? 8 : 16;
                j = i + 2;
                size_t q = j;
                for (;;) {
                    size_t r = q;
                    if (r < n && s[r] == '_') r++;
                    char h = r < n ? s[r] : 0;
                    int v = is_digit(h) ? h - '0' : (h | 0x20) >= 'a' && (h | 0x20) <= 'f' ? (h | 0x20) - 'a' + 10 : 99;
                    if (v >= base) break;
                    q = r + 1;
                }
                if (q == j) base = 10; /* "0x" alone: the 0 only */
                else j = q;
            }
            if (base == 10) {
                j = i + 1;
                if (ch == '0') {
                    while (j < n && (s[j] == '0' || (s[j] == '_' && j + 1 < n && s[j + 1] == '0'))) j++;
                } else {
                    while (j < n && (is_digit(s[j]) || (s[j] == '_' && j + 1 < n && is_digit(s[j + 1])))) j++;
                }
            }
            char buf[128];
            size_t off = base == 10 ? 0 : 2;
            strip_underscores(s + i + off, j - i - off, buf, sizeof buf);
            errno = 0;
            unsigned long long v = strtoull(buf, NULL, base);
            if (errno || v > INT64_MAX) pfail_at(p, 1, 1, "integer literal too large");
            Token *t = push_tok(p, T_INT, i);
            t->i = (int64_t)v;
            i = j;
            continue;
        }
        if (is_name0(ch)) {
            size_t j = i + 1;
            while (j < n && is_name1(s[j])) j++;
            Token *t = push_tok(p, T_NAME, i);
            t->s = s + i;
            t->n = j - i;
            i = j;
            continue;
        }
        if (ch == '\'' || ch == '"') {
            size_t j = i + 1;
            while (j < n && s[j] != ch) j += s[j] == '\\' ? 2 : 1;
            if (j >= n) {
                int l, c;
                pos_linecol(s, i, &l, &c);
                pfail_at(p, l, c, "unterminated string literal");
            }
            Token *t = push_tok(p, T_STR, i);
            lex_string(p, t, s + i + 1, j - i - 1);
            i = j + 1;
            continue;
        }
        size_t oplen = 0;
        for (int k = 0; OPS2[k]; k++)
            if (i + 2 <= n && strncmp(s + i, OPS2[k], 2) == 0) oplen = 2;
        if (!oplen && ch && strchr(OPS1, ch)) oplen = 1;
        if (!oplen) {
            int l, c;
            pos_linecol(s, i, &l, &c);
            pfail_at(p, l, c, "unexpected char '%c'", ch);
        }
        Token *t = push_tok(p, T_OP, i);
        t->s = s + i;
        t->n = oplen;
        if (oplen == 1 && strchr("([{", ch)) {
            if (depth == (int)sizeof stack) pfail_at(p, t->line, t->col, "brackets nested too deeply");
            stack[depth++] = ch == '(' ? ')' : ch == '[' ? ']' : '}';
        } else if (oplen == 1 && strchr(")]}", ch)) {
            if (depth == 0) pfail_at(p, t->line, t->col, "unexpected '%c'", ch);
            if (stack[depth - 1] != ch) pfail_at(p, t->line, t->col, "unexpected '%c', expected '%c'", ch, stack[depth - 1]);
            depth--;
        }
        i += oplen;
    }
}

/* Does "{%[-+]? raw ...%}" start at i? Returns the tag's end offset and
 * whether it ends with "-%}" (strip following whitespace). */
static size_t match_word_tag(const char *s, size_t n, size_t i, const char *word, bool trim_nl, char *sign) {
    if (i + 2 > n || s[i] != '{' || s[i + 1] != '%') return 0;
    size_t j = i + 2;
    *sign = 0;
    if (j < n && (s[j] == '-' || s[j] == '+')) *sign = s[j++];
    j += span_space(s + j, n - j);
    size_t wl = strlen(word);
    if (j + wl > n || strncmp(s + j, word, wl) != 0) return 0;
    j += wl;
    j += span_space(s + j, n - j);
    if (trim_nl && j + 3 <= n && s[j] == '+' && s[j + 1] == '%' && s[j + 2] == '}') return j + 3;
    if (j + 3 <= n && s[j] == '-' && s[j + 1] == '%' && s[j + 2] == '}') return j + 3 + span_space(s + j + 3, n - j - 3);
    if (j + 2 <= n && s[j] == '%' && s[j + 1] == '}') {
        j += 2;
        if (trim_nl && j < n && s[j] == '\n') j++;
        return j;
    }
    return 0;
}

/* Text before a tag, with jinja2's `-` and lstrip_blocks rules applied. */
static size_t data_before_tag(const char *text, size_t n, char sign, bool is_var, bool line_starting) {
    if (sign == '-') return rstrip_len(text, n);
    if (sign != '+' && !is_var) {
        size_t l = n;
        while (l > 0 && text[l - 1] != '\n') l--;
        if (l > 0 || line_starting) {
            size_t ws = span_space(text + l, n - l);
            if (ws == n - l && ws > 0) return l;
        }
    }
    return n;
}

static void lex(P *p) {
    const char *s = p->src;
    size_t n = p->len, i = 0;
    bool line_starting = true;
    while (i < n) {
        size_t j = i;
        while (j + 1 < n && !(s[j] == '{' && (s[j + 1] == '{' || s[j + 1] == '%' || s[j + 1] == '#'))) j++;
        if (j + 1 >= n) {
            emit_data(p, s + i, n - i, i);
            break;
        }
        char kind = s[j + 1];
        char sign = (j + 2 < n && (s[j + 2] == '-' || s[j + 2] == '+')) ? s[j + 2] : 0;
        char rsign;
        size_t raw_end = kind == '%' ? match_word_tag(s, n, j, "raw", false, &rsign) : 0;
        if (raw_end) sign = rsign;
        emit_data(p, s + i, data_before_tag(s + i, j - i, sign, kind == '{', line_starting), i);
        if (raw_end) {
            /* Raw text up to {% endraw %}, which takes lstrip / `-` like any tag. */
            size_t k = raw_end, e = 0;
            char esign = 0;
            for (; k + 1 < n; k++)
                if ((e = match_word_tag(s, n, k, "endraw", true, &esign))) break;
            if (!e) {
                int l, c;
                pos_linecol(s, j, &l, &c);
                pfail_at(p, l, c, "Missing end of raw directive");
            }
            emit_data(p, s + raw_end, data_before_tag(s + raw_end, k - raw_end, esign, false, false), raw_end);
            line_starting = s[e - 1] == '\n';
            i = e;
            continue;
        }
        size_t body = j + 2 + (sign ? 1 : 0);
        if (kind == '#') {
            size_t q = body;
            while (q + 1 < n && !(s[q] == '#' && s[q + 1] == '}')) q++;
            if (q + 1 >= n) {
                int l, c;
                pos_linecol(s, j, &l, &c);
                pfail_at(p, l, c, "Missing end of comment tag");
            }
            size_t e = q + 2;
            if (q > body && s[q - 1] == '-') e += span_space(s + e, n - e);
            else if (!(q > body && s[q - 1] == '+') && e < n && s[e] == '\n') e++;
            line_starting = s[e - 1] == '\n';
            i = e;
            continue;
        }
        push_tok(p, kind == '%' ? T_BBEGIN : T_VBEGIN, j);
        i = lex_tag(p, body, kind == '%', &line_starting);
    }
    push_tok(p, T_EOF, n);
}

/* ================================================================ parser */

struct Filter {
    const char *name;
    BuiltinFn fn;
};
struct Test {
    const char *name;
    int (*fn)(R *r, Value *v, Args *a); /* 0/1 */
};
static const Filter *filter_find(const char *name);
static const Test *test_find(const char *name);
static Value *const_str(P *p, const char *s, size_t n);

#define MAX_PARSE_DEPTH 120

static Token *cur(P *p) { return &p->toks[p->pos]; }
static Token *peek(P *p, size_t k) {
    size_t i = p->pos + k;
    return &p->toks[i < p->ntok ? i : p->ntok - 1];
}
static bool tok_is_op(const Token *t, const char *op) {
    return t->kind == T_OP && t->n == strlen(op) && memcmp(t->s, op, t->n) == 0;
}
static bool tok_is_name(const Token *t, const char *name) {
    return t->kind == T_NAME && t->n == strlen(name) && memcmp(t->s, name, t->n) == 0;
}
static const char *tok_desc(P *p, const Token *t) {
    switch (t->kind) {
    case T_EOF: return "end of template";
    case T_BEND: return "end of statement block";
    case T_VEND: return "end of print statement";
    case T_STR: return "string";
    case T_INT: return "integer";
    case T_FLOAT: return "float";
    case T_DATA: return "template data";
    case T_BBEGIN: return "begin of statement block";
    case T_VBEGIN: return "begin of print statement";
    default: return pstrndup(p, t->s, t->n > 40 ? 40 : t->n);
    }
}
static noreturn void pfail(P *p, const Token *t, const char *fmt, ...) {
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    pfail_at(p, t->line, t->col, "%s", msg);
}
static bool accept_op(P *p, const char *op) {
    if (tok_is_op(cur(p), op)) return p->pos++, true;
    return false;
}
static bool accept_name(P *p, const char *name) {
    if (tok_is_name(cur(p), name)) return p->pos++, true;
    return false;
}
static void expect_op(P *p, const char *op) {
    if (!accept_op(p, op)) pfail(p, cur(p), "expected '%s', got '%s'", op, tok_desc(p, cur(p)));
}
static Token *expect_name(P *p) {
    if (cur(p)->kind != T_NAME) pfail(p, cur(p), "expected name, got '%s'", tok_desc(p, cur(p)));
    return &p->toks[p->pos++];
}
static void expect_bend(P *p) {
    if (cur(p)->kind != T_BEND) pfail(p, cur(p), "expected end of statement block, got '%s'", tok_desc(p, cur(p)));
    p->pos++;
}

static Node *mk(P *p, NKind k, const Token *t) {
    Node *n = palloc(p, sizeof *n);
    n->kind = (uint8_t)k;
    n->line = t->line;
    n->col = t->col;
    return n;
}

typedef struct {
    Node **v;
    int n, cap;
} NodeVec;
static void nv_push(P *p, NodeVec *nv, Node *x) {
    if (nv->n == nv->cap) {
        int cap = nv->cap ? nv->cap * 2 : 4;
        Node **v = palloc(p, (size_t)cap * sizeof *v);
        if (nv->n) memcpy(v, nv->v, (size_t)nv->n * sizeof *v);
        nv->v = v;
        nv->cap = cap;
    }
    nv->v[nv->n++] = x;
}

static Node *parse_expression(P *p, bool with_condexpr);
static Node *parse_unary(P *p, bool with_filter);
static Node *parse_primary(P *p);
static Node *parse_postfix(P *p, Node *n);
static Node *parse_body(P *p, const char *const *ends);

static void enter(P *p) {
    if (++p->depth > MAX_PARSE_DEPTH) pfail(p, cur(p), "expression nested too deeply");
}

/* a, b, c  (a tuple only when a comma is present) */
static Node *parse_tuple(P *p, bool with_condexpr, bool explicit_parens) {
    Token *t = cur(p);
    NodeVec items = {0};
    bool comma = false;
    for (;;) {
        if (items.n) {
            if (!accept_op(p, ",")) break;
            comma = true;
        }
        Token *c = cur(p);
        if (c->kind == T_VEND || c->kind == T_BEND || c->kind == T_EOF || tok_is_op(c, ")") ||
            (items.n && tok_is_name(c, "in")))
            break;
        nv_push(p, &items, parse_expression(p, with_condexpr));
    }
    if (!comma && items.n == 1) return items.v[0];
    if (!items.n && !explicit_parens) pfail(p, t, "expected an expression, got '%s'", tok_desc(p, t));
    Node *n = mk(p, E_TUPLE, t);
    n->kids = items.v;
    n->nkids = items.n;
    return n;
}

static Node *parse_condexpr(P *p) {
    Node *a = parse_expression(p, false);
    while (tok_is_name(cur(p), "if")) {
        Token *t = &p->toks[p->pos++];
        Node *n = mk(p, E_COND, t);
        n->b = a;
        n->a = parse_expression(p, false);
        if (accept_name(p, "else")) n->c = parse_condexpr(p);
        a = n;
    }
    return a;
}

static Node *parse_not(P *p);
static Node *parse_and(P *p) {
    Node *l = parse_not(p);
    while (tok_is_name(cur(p), "and")) {
        Node *n = mk(p, E_AND, &p->toks[p->pos++]);
        n->a = l;
        n->b = parse_not(p);
        l = n;
    }
    return l;
}
static Node *parse_or(P *p) {
    Node *l = parse_and(p);
    while (tok_is_name(cur(p), "or")) {
        Node *n = mk(p, E_OR, &p->toks[p->pos++]);
        n->a = l;
        n->b = parse_and(p);
        l = n;
    }
    return l;
}

static Node *parse_expression(P *p, bool with_condexpr) {
    enter(p);
    Node *n = with_condexpr ? parse_condexpr(p) : parse_or(p);
    p->depth--;
    return n;
}

static Node *parse_math1(P *p);
static Node *parse_compare(P *p) {
    Token *t = cur(p);
    Node *first = parse_math1(p);
    NodeVec rest = {0};
    int ops[64];
    for (;;) {
        Token *c = cur(p);
        int op = -1;
        if (tok_is_op(c, "==")) op = C_EQ;
        else if (tok_is_op(c, "!=")) op = C_NE;
        else if (tok_is_op(c, "<")) op = C_LT;
        else if (tok_is_op(c, "<=")) op = C_LE;
        else if (tok_is_op(c, ">")) op = C_GT;
        else if (tok_is_op(c, ">=")) op = C_GE;
        else if (tok_is_name(c, "in")) op = C_IN;
        else if (tok_is_name(c, "not") && tok_is_name(peek(p, 1), "in")) op = C_NOTIN, p->pos++;
        if (op < 0) break;
        if (rest.n == 64) pfail(p, c, "comparison chain too long");
        p->pos++;
        ops[rest.n] = op;
        nv_push(p, &rest, parse_math1(p));
    }
    if (!rest.n) return first;
    Node *n = mk(p, E_CMP, t);
    n->a = first;
    n->kids = rest.v;
    n->nkids = rest.n;
    n->ops = palloc(p, (size_t)rest.n * sizeof(int));
    memcpy(n->ops, ops, (size_t)rest.n * sizeof(int));
    return n;
}
static Node *parse_not(P *p) {
    if (tok_is_name(cur(p), "not")) {
        Node *n = mk(p, E_NOT, &p->toks[p->pos++]);
        enter(p);
        n->a = parse_not(p);
        p->depth--;
        return n;
    }
    return parse_compare(p);
}

static Node *binop(P *p, Token *t, int op, Node *l, Node *r) {
    Node *n = mk(p, E_BIN, t);
    n->op = op;
    n->a = l;
    n->b = r;
    return n;
}
static Node *parse_pow(P *p) {
    Node *l = parse_unary(p, true);
    while (tok_is_op(cur(p), "**")) {
        Token *t = &p->toks[p->pos++];
        l = binop(p, t, OP_POW, l, parse_unary(p, true));
    }
    return l;
}
static Node *parse_math2(P *p) {
    Node *l = parse_pow(p);
    for (;;) {
        Token *t = cur(p);
        int op = tok_is_op(t, "*") ? OP_MUL : tok_is_op(t, "/") ? OP_DIV : tok_is_op(t, "//") ? OP_FDIV
                 : tok_is_op(t, "%") ? OP_MOD : -1;
        if (op < 0) break;
        p->pos++;
        l = binop(p, t, op, l, parse_pow(p));
    }
    return l;
}
static Node *parse_concat(P *p) {
    Token *t = cur(p);
    Node *first = parse_math2(p);
    if (!tok_is_op(cur(p), "~")) return first;
    NodeVec v = {0};
    nv_push(p, &v, first);
    while (accept_op(p, "~")) nv_push(p, &v, parse_math2(p));
    Node *n = mk(p, E_CONCAT, t);
    n->kids = v.v;
    n->nkids = v.n;
    return n;
}
static Node *parse_math1(P *p) {
    Node *l = parse_concat(p);
    for (;;) {
        Token *t = cur(p);
        int op = tok_is_op(t, "+") ? OP_ADD : tok_is_op(t, "-") ? OP_SUB : -1;
        if (op < 0) break;
        p->pos++;
        l = binop(p, t, op, l, parse_concat(p));
    }
    return l;
}

/* (args, key=value) after '(' has been seen; fills n->kids / kwname / kwval. */
static void parse_call_args(P *p, Node *n) {
    expect_op(p, "(");
    NodeVec args = {0}, kwv = {0};
    const char *names[64];
    while (!tok_is_op(cur(p), ")")) {
        if (args.n || kwv.n) {
            expect_op(p, ",");
            if (tok_is_op(cur(p), ")")) break;
        }
        if (tok_is_op(cur(p), "*") || tok_is_op(cur(p), "**")) pfail(p, cur(p), "*args and **kwargs are not supported");
        if (cur(p)->kind == T_NAME && tok_is_op(peek(p, 1), "=")) {
            Token *k = &p->toks[p->pos];
            p->pos += 2;
            if (kwv.n == 64) pfail(p, k, "too many keyword arguments");
            names[kwv.n] = pstrndup(p, k->s, k->n);
            nv_push(p, &kwv, parse_expression(p, true));
        } else {
            if (kwv.n) pfail(p, cur(p), "positional argument follows keyword argument");
            nv_push(p, &args, parse_expression(p, true));
        }
    }
    expect_op(p, ")");
    n->kids = args.v;
    n->nkids = args.n;
    n->kwval = kwv.v;
    n->nkw = kwv.n;
    n->kwname = palloc(p, (size_t)(kwv.n + 1) * sizeof(char *));
    memcpy(n->kwname, names, (size_t)kwv.n * sizeof(char *));
}

static const char *dotted_name(P *p) {
    Token *t = expect_name(p);
    const char *s = t->s;
    size_t n = t->n;
    while (tok_is_op(cur(p), ".") && peek(p, 1)->kind == T_NAME) {
        p->pos++;
        Token *u = &p->toks[p->pos++];
        n = (size_t)(u->s + u->n - s);
    }
    return pstrndup(p, s, n);
}

static Node *parse_filter(P *p, Node *input, Token *t) {
    Node *n = mk(p, E_FILTER, t);
    const char *name = dotted_name(p);
    n->filter = filter_find(name);
    if (!n->filter) pfail(p, t, "No filter named '%s'.", name);
    n->str = name;
    n->a = input;
    if (tok_is_op(cur(p), "(")) parse_call_args(p, n);
    return n;
}

static Node *parse_test(P *p, Node *input, Token *t) {
    Node *n = mk(p, E_TEST, t);
    n->op = accept_name(p, "not");
    const char *name = dotted_name(p);
    n->test = test_find(name);
    if (!n->test) pfail(p, t, "No test named '%s'.", name);
    n->str = name;
    n->a = input;
    Token *c = cur(p);
    if (tok_is_op(c, "(")) {
        parse_call_args(p, n);
    } else if ((c->kind == T_NAME || c->kind == T_STR || c->kind == T_INT || c->kind == T_FLOAT ||
                tok_is_op(c, "[") || tok_is_op(c, "{")) &&
               !tok_is_name(c, "else") && !tok_is_name(c, "or") && !tok_is_name(c, "and")) {
        if (tok_is_name(c, "is")) pfail(p, c, "You cannot chain multiple tests with is");
        n->kids = palloc(p, sizeof(Node *));
        n->kids[0] = parse_postfix(p, parse_primary(p));
        n->nkids = 1;
        n->kwname = palloc(p, sizeof(char *));
    }
    return n;
}

static Node *parse_filter_expr(P *p, Node *n) {
    for (;;) {
        Token *t = cur(p);
        if (tok_is_op(t, "|")) {
            p->pos++;
            n = parse_filter(p, n, t);
        } else if (tok_is_name(t, "is")) {
            p->pos++;
            n = parse_test(p, n, t);
        } else if (tok_is_op(t, "(")) {
            Node *c = mk(p, E_CALL, t);
            c->a = n;
            parse_call_args(p, c);
            n = c;
        } else {
            return n;
        }
    }
}

static Node *parse_subscribed(P *p) {
    Token *t = cur(p);
    Node *args[3] = {0};
    if (tok_is_op(t, ":")) {
        p->pos++;
    } else {
        Node *e = parse_expression(p, true);
        if (!tok_is_op(cur(p), ":")) return e;
        p->pos++;
        args[0] = e;
    }
    Token *c = cur(p);
    if (!tok_is_op(c, "]") && !tok_is_op(c, ",") && !tok_is_op(c, ":")) args[1] = parse_expression(p, true);
    if (accept_op(p, ":")) {
        c = cur(p);
        if (!tok_is_op(c, "]") && !tok_is_op(c, ",")) args[2] = parse_expression(p, true);
    }
    Node *n = mk(p, E_SLICE, t);
    n->b = args[0];
    n->c = args[1];
    n->d = args[2];
    return n;
}

static Node *parse_postfix(P *p, Node *n) {
    for (;;) {
        Token *t = cur(p);
        if (tok_is_op(t, ".")) {
            p->pos++;
            Token *a = cur(p);
            if (a->kind == T_NAME) {
                Node *g = mk(p, E_ATTR, t);
                g->a = n;
                g->str = pstrndup(p, a->s, a->n);
                g->len = a->n;
                p->pos++;
                n = g;
            } else if (a->kind == T_INT) {
                Node *g = mk(p, E_ITEM, t);
                g->a = n;
                g->b = mk(p, E_CONST, a);
                g->b->value = palloc(p, sizeof(Value));
                g->b->value->kind = V_INT;
                g->b->value->i = a->i;
                p->pos++;
                n = g;
            } else {
                pfail(p, a, "expected name or number");
            }
        } else if (tok_is_op(t, "[")) {
            p->pos++;
            NodeVec v = {0};
            while (!tok_is_op(cur(p), "]")) {
                if (v.n) {
                    expect_op(p, ",");
                    if (tok_is_op(cur(p), "]")) break;
                }
                nv_push(p, &v, parse_subscribed(p));
            }
            expect_op(p, "]");
            if (!v.n) pfail(p, t, "expected subscript expression");
            Node *key = v.v[0];
            if (v.n > 1) {
                /* x[a:b, c] is a tuple holding a slice object in Python,
                 * which no value here takes as a key: refused where it is
                 * written (a slice node only evaluates as x[...] itself) */
                for (int i = 0; i < v.n; i++)
                    if (v.v[i]->kind == E_SLICE) pfail(p, t, "a slice inside a subscript of several parts");
                key = mk(p, E_TUPLE, t);
                key->kids = v.v;
                key->nkids = v.n;
            }
            if (key->kind == E_SLICE) {
                key->a = n;
                n = key;
            } else {
                Node *g = mk(p, E_ITEM, t);
                g->a = n;
                g->b = key;
                n = g;
            }
        } else if (tok_is_op(t, "(")) {
            Node *c = mk(p, E_CALL, t);
            c->a = n;
            parse_call_args(p, c);
            n = c;
        } else {
            return n;
        }
    }
}

static Node *const_node(P *p, Token *t, VKind k) {
    Node *n = mk(p, E_CONST, t);
    n->value = palloc(p, sizeof(Value));
    n->value->kind = (uint8_t)k;
    return n;
}

static Node *parse_primary(P *p) {
    Token *t = cur(p);
    enter(p);
    Node *n;
    if (t->kind == T_NAME) {
        p->pos++;
        if (tok_is_name(t, "true") || tok_is_name(t, "True")) {
            n = const_node(p, t, V_BOOL);
            n->value->b = true;
        } else if (tok_is_name(t, "false") || tok_is_name(t, "False")) {
            n = const_node(p, t, V_BOOL);
        } else if (tok_is_name(t, "none") || tok_is_name(t, "None")) {
            n = const_node(p, t, V_NONE);
        } else {
            n = mk(p, E_NAME, t);
            n->str = pstrndup(p, t->s, t->n);
            n->value = const_str(p, n->str, t->n);
        }
    } else if (t->kind == T_STR) {
        size_t total = 0, k = p->pos;
        while (p->toks[k].kind == T_STR) total += p->toks[k++].n;
        char *s = palloc(p, total + 1);
        size_t o = 0;
        while (cur(p)->kind == T_STR) {
            memcpy(s + o, cur(p)->s, cur(p)->n);
            o += cur(p)->n;
            p->pos++;
        }
        n = mk(p, E_CONST, t);
        n->value = const_str(p, s, total);
    } else if (t->kind == T_INT) {
        p->pos++;
        n = const_node(p, t, V_INT);
        n->value->i = t->i;
    } else if (t->kind == T_FLOAT) {
        p->pos++;
        n = const_node(p, t, V_FLOAT);
        n->value->f = t->f;
    } else if (tok_is_op(t, "(")) {
        p->pos++;
        n = parse_tuple(p, true, true);
        expect_op(p, ")");
    } else if (tok_is_op(t, "[")) {
        p->pos++;
        NodeVec v = {0};
        while (!tok_is_op(cur(p), "]")) {
            if (v.n) {
                expect_op(p, ",");
                if (tok_is_op(cur(p), "]")) break;
            }
            nv_push(p, &v, parse_expression(p, true));
        }
        expect_op(p, "]");
        n = mk(p, E_LIST, t);
        n->kids = v.v;
        n->nkids = v.n;
    } else if (tok_is_op(t, "{")) {
        p->pos++;
        NodeVec k = {0}, v = {0};
        while (!tok_is_op(cur(p), "}")) {
            if (k.n) {
                expect_op(p, ",");
                if (tok_is_op(cur(p), "}")) break;
            }
            nv_push(p, &k, parse_expression(p, true));
            expect_op(p, ":");
            nv_push(p, &v, parse_expression(p, true));
        }
        expect_op(p, "}");
        n = mk(p, E_DICT, t);
        n->kids = k.v;
        n->kwval = v.v;
        n->nkids = k.n;
    } else {
        pfail(p, t, "unexpected '%s'", tok_desc(p, t));
    }
    p->depth--;
    return n;
}

static Node *parse_unary(P *p, bool with_filter) {
    Token *t = cur(p);
    Node *n;
    enter(p);
    if (tok_is_op(t, "-") || tok_is_op(t, "+")) {
        p->pos++;
        n = mk(p, tok_is_op(t, "-") ? E_NEG : E_POS, t);
        n->a = parse_unary(p, false);
    } else {
        n = parse_primary(p);
    }
    n = parse_postfix(p, n);
    if (with_filter) n = parse_filter_expr(p, n);
    p->depth--;
    return n;
}

/* Assignment targets: name, (a, b), a, b; with_ns also ns.attr. */
static Node *parse_target(P *p, bool with_ns, bool allow_tuple) {
    Token *t = cur(p);
    Node *first;
    if (tok_is_op(t, "(")) {
        p->pos++;
        first = parse_target(p, false, true);
        expect_op(p, ")");
        if (first->kind != E_TUPLE) {
            Node *tu = mk(p, E_TUPLE, t);
            tu->kids = palloc(p, sizeof(Node *));
            tu->kids[0] = first;
            tu->nkids = 1;
            first = tu;
        }
    } else {
        Token *nt = expect_name(p);
        if (with_ns && tok_is_op(cur(p), ".") && peek(p, 1)->kind == T_NAME) {
            p->pos++;
            Token *a = &p->toks[p->pos++];
            first = mk(p, E_ATTR, nt);
            first->a = mk(p, E_NAME, nt);
            first->a->str = pstrndup(p, nt->s, nt->n);
            first->a->value = const_str(p, first->a->str, nt->n);
            first->str = pstrndup(p, a->s, a->n);
            return first;
        }
        first = mk(p, E_NAME, nt);
        first->str = pstrndup(p, nt->s, nt->n);
        first->value = const_str(p, first->str, nt->n);
        if (tok_is_name(nt, "true") || tok_is_name(nt, "false") || tok_is_name(nt, "none") ||
            tok_is_name(nt, "True") || tok_is_name(nt, "False") || tok_is_name(nt, "None"))
            pfail(p, nt, "can't assign to '%s'", first->str);
    }
    if (!allow_tuple || !tok_is_op(cur(p), ",")) return first;
    NodeVec v = {0};
    nv_push(p, &v, first);
    while (accept_op(p, ",")) {
        if (cur(p)->kind != T_NAME && !tok_is_op(cur(p), "(")) break;
        nv_push(p, &v, parse_target(p, false, false));
    }
    Node *tu = mk(p, E_TUPLE, t);
    tu->kids = v.v;
    tu->nkids = v.n;
    return tu;
}

static const char *const END_IF[] = {"elif", "else", "endif", NULL};
static const char *const END_FOR[] = {"else", "endfor", NULL};
static const char *const END_FOR2[] = {"endfor", NULL};

/* Consume "{% <name> %}" closing a block (the name token is current). */
static void end_tag(P *p) {
    p->pos++;
    expect_bend(p);
}

static Node *parse_statement(P *p, Token *begin) {
    Token *t = cur(p);
    if (t->kind != T_NAME) pfail(p, t, "tag name expected");
    p->pos++;
    if (tok_is_name(t, "if")) {
        Node *n = mk(p, S_IF, begin), *top = n;
        for (;;) {
            n->a = parse_tuple(p, false, false);
            expect_bend(p);
            n->b = parse_body(p, END_IF);
            Token *e = cur(p);
            if (tok_is_name(e, "elif")) {
                p->pos++;
                Node *m = mk(p, S_IF, e);
                n->c = m;
                n = m;
                continue;
            }
            if (tok_is_name(e, "else")) {
                end_tag(p);
                static const char *const end_only[] = {"endif", NULL};
                n->c = parse_body(p, end_only);
            }
            end_tag(p);
            return top;
        }
    }
    if (tok_is_name(t, "for")) {
        Node *n = mk(p, S_FOR, begin);
        n->a = parse_target(p, false, true);
        if (!accept_name(p, "in")) pfail(p, cur(p), "expected 'in', got '%s'", tok_desc(p, cur(p)));
        n->b = parse_tuple(p, false, false);
        if (accept_name(p, "if")) n->c = parse_expression(p, true);
        if (tok_is_name(cur(p), "recursive")) pfail(p, cur(p), "recursive loops are not supported");
        expect_bend(p);
        n->d = parse_body(p, END_FOR);
        if (tok_is_name(cur(p), "else")) {
            end_tag(p);
            Node *els = parse_body(p, END_FOR2);
            n->kids = palloc(p, sizeof(Node *));
            n->kids[0] = els;
            n->nkids = 1;
        }
        end_tag(p);
        return n;
    }
    if (tok_is_name(t, "set")) {
        Node *target = parse_target(p, true, true);
        if (accept_op(p, "=")) {
            Node *n = mk(p, S_SET, begin);
            n->a = target;
            n->b = parse_tuple(p, true, false);
            expect_bend(p);
            return n;
        }
        Node *n = mk(p, S_SETBLOCK, begin);
        n->a = target;
        Node *f = NULL;
        while (tok_is_op(cur(p), "|")) {
            Token *ft = &p->toks[p->pos++];
            f = parse_filter(p, f, ft);
        }
        n->c = f;
        expect_bend(p);
        static const char *const ends[] = {"endset", NULL};
        n->b = parse_body(p, ends);
        end_tag(p);
        return n;
    }
    if (tok_is_name(t, "macro") || tok_is_name(t, "call")) {
        bool is_call = tok_is_name(t, "call");
        Node *n = mk(p, is_call ? S_CALLBLOCK : S_MACRO, begin);
        if (!is_call) {
            Token *nt = expect_name(p);
            n->str = pstrndup(p, nt->s, nt->n);
        }
        NodeVec defs = {0};
        const char *names[64];
        int np = 0;
        if (!is_call || tok_is_op(cur(p), "(")) {
            expect_op(p, "(");
            while (!tok_is_op(cur(p), ")")) {
                if (np) expect_op(p, ",");
                Token *a = expect_name(p);
                if (np == 64) pfail(p, a, "too many parameters");
                names[np++] = pstrndup(p, a->s, a->n);
                Node *d = NULL;
                if (accept_op(p, "=")) d = parse_expression(p, true);
                else if (defs.n && defs.v[defs.n - 1]) pfail(p, a, "non-default argument follows default argument");
                nv_push(p, &defs, d);
            }
            expect_op(p, ")");
        }
        n->kwname = palloc(p, (size_t)(np + 1) * sizeof(char *));
        memcpy(n->kwname, names, (size_t)np * sizeof(char *));
        n->kwval = defs.v;
        n->nkw = np;
        if (is_call) {
            n->a = parse_expression(p, true);
            if (n->a->kind != E_CALL) pfail(p, t, "expected call");
        }
        expect_bend(p);
        static const char *const endm[] = {"endmacro", NULL}, *const endc[] = {"endcall", NULL};
        n->b = parse_body(p, is_call ? endc : endm);
        end_tag(p);
        return n;
    }
    if (tok_is_name(t, "filter")) {
        Node *n = mk(p, S_FILTERBLOCK, begin);
        Node *f = NULL;
        do {
            Token *ft = cur(p);
            f = parse_filter(p, f, ft);
        } while (accept_op(p, "|"));
        n->c = f;
        expect_bend(p);
        static const char *const ends[] = {"endfilter", NULL};
        n->b = parse_body(p, ends);
        end_tag(p);
        return n;
    }
    if (tok_is_name(t, "with")) {
        Node *n = mk(p, S_WITH, begin);
        NodeVec tg = {0}, vals = {0};
        while (cur(p)->kind != T_BEND) {
            if (tg.n) expect_op(p, ",");
            nv_push(p, &tg, parse_target(p, false, false));
            expect_op(p, "=");
            nv_push(p, &vals, parse_expression(p, true));
        }
        expect_bend(p);
        n->kids = tg.v;
        n->kwval = vals.v;
        n->nkids = tg.n;
        static const char *const ends[] = {"endwith", NULL};
        n->b = parse_body(p, ends);
        end_tag(p);
        return n;
    }
    if (tok_is_name(t, "generation")) {
        expect_bend(p);
        static const char *const ends[] = {"endgeneration", NULL};
        Node *b = parse_body(p, ends);
        end_tag(p);
        return b;
    }
    if (tok_is_name(t, "break") || tok_is_name(t, "continue")) {
        Node *n = mk(p, tok_is_name(t, "break") ? S_BREAK : S_CONTINUE, begin);
        expect_bend(p);
        return n;
    }
    pfail(p, t, "Encountered unknown tag '%s'.", tok_desc(p, t));
}

/* Statements up to one of `ends` (left current: the end tag's name) or EOF. */
static Node *parse_body(P *p, const char *const *ends) {
    Token *open = p->pos > 0 ? &p->toks[p->pos - 1] : cur(p);
    Node *body = mk(p, S_BODY, cur(p));
    NodeVec v = {0};
    enter(p);
    for (;;) {
        Token *t = cur(p);
        if (t->kind == T_EOF) {
            if (ends) {
                char want[128] = "";
                for (int i = 0; ends[i]; i++)
                    snprintf(want + strlen(want), sizeof want - strlen(want), "%s'%s'", i ? " or " : "", ends[i]);
                pfail(p, open, "Unexpected end of template. Jinja was looking for the following tags: %s.", want);
            }
            break;
        }
        if (t->kind == T_DATA) {
            Node *n = mk(p, S_TEXT, t);
            n->str = t->s;
            n->len = t->n;
            nv_push(p, &v, n);
            p->pos++;
        } else if (t->kind == T_VBEGIN) {
            p->pos++;
            Node *n = mk(p, S_PRINT, t);
            n->a = parse_tuple(p, true, false);
            if (cur(p)->kind != T_VEND) pfail(p, cur(p), "expected end of print statement, got '%s'", tok_desc(p, cur(p)));
            p->pos++;
            nv_push(p, &v, n);
        } else if (t->kind == T_BBEGIN) {
            p->pos++;
            Token *name = cur(p);
            if (ends && name->kind == T_NAME) {
                bool found = false;
                for (int i = 0; ends[i]; i++)
                    if (tok_is_name(name, ends[i])) found = true;
                if (found) break;
            }
            if (name->kind == T_NAME && name->n >= 3 && (memcmp(name->s, "end", 3) == 0 || tok_is_name(name, "else") ||
                                                         tok_is_name(name, "elif")))
                pfail(p, name, "Encountered unknown tag '%s'.", tok_desc(p, name));
            nv_push(p, &v, parse_statement(p, t));
        } else {
            pfail(p, t, "unexpected '%s'", tok_desc(p, t));
        }
    }
    p->depth--;
    body->kids = v.v;
    body->nkids = v.n;
    return body;
}

static Value *const_str(P *p, const char *s, size_t n) {
    Value *v = palloc(p, sizeof *v);
    v->kind = V_STR;
    v->str.s = s;
    v->str.n = n;
    return v;
}

JinjaTemplate *jinja_parse(const char *source, size_t len, const char *origin, char *err, size_t errlen) {
    JinjaTemplate *t = xcalloc(1, sizeof *t);
    t->origin = xstrdup(origin ? origin : "<template>");
    P *p = xcalloc(1, sizeof *p);
    p->arena = &t->arena;
    p->origin = t->origin;
    p->err = err;
    p->errlen = errlen;
    if (setjmp(p->jb)) {
        free(p);
        jinja_free(t);
        return NULL;
    }
    /* Newlines become \n; one trailing newline is dropped (keep_trailing_newline=False). */
    char *src = palloc(p, len + 1);
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (source[i] == '\r') {
            src[n++] = '\n';
            if (i + 1 < len && source[i + 1] == '\n') i++;
        } else {
            src[n++] = source[i];
        }
    }
    if (n > 0 && src[n - 1] == '\n') n--;
    src[n] = 0;
    p->src = src;
    p->len = n;
    lex(p);
    t->body = parse_body(p, NULL);
    free(p);
    return t;
}

void jinja_free(JinjaTemplate *t) {
    if (!t) return;
    arena_free(&t->arena);
    free(t->origin);
    free(t);
}

/* ================================================================ render state */

struct R {
    Arena arena;
    SBuf *out; /* where text goes now (a macro or block set captures into its own) */
    const JinjaTemplate *t;
    char *err;
    size_t errlen;
    jmp_buf jb;
    const Node *at; /* node being evaluated, for error positions */
    long steps;
    int depth;
    Frame *globals;
    SBuf *bufs[JINJA_MAX_DEPTH * 2 + 16]; /* live text buffers, freed if rendering fails */
    int nbufs;
};

static noreturn void rfail(R *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static noreturn void rfail(R *r, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(r->err, r->errlen, "%s:%d:%d: %s", r->t->origin, r->at ? r->at->line : 1, r->at ? r->at->col : 1, msg);
    longjmp(r->jb, 1);
}

static void *ralloc(R *r, size_t n);
/* A text buffer that is freed by jinja_render if an error unwinds past it. */
static SBuf *buf_push(R *r) {
    if (r->nbufs == (int)(sizeof r->bufs / sizeof r->bufs[0])) rfail(r, "template nested too deeply");
    SBuf *b = ralloc(r, sizeof *b);
    sbuf_init(b);
    r->bufs[r->nbufs++] = b;
    return b;
}
/* Pop the top buffer and return its text as an arena string value. */
static Value *buf_pop_value(R *r);

static void *ralloc(R *r, size_t n) {
    void *p = arena_try_alloc(&r->arena, n);
    if (!p) rfail(r, "template used more than %u MiB of memory", JINJA_MAX_MEMORY >> 20);
    return p;
}

static void step(R *r) {
    if (++r->steps > JINJA_MAX_STEPS) rfail(r, "template ran more than %ld steps", JINJA_MAX_STEPS);
}

static Value V_NONE_VAL = {.kind = V_NONE};
static Value V_TRUE_VAL = {.kind = V_BOOL, .b = true};
static Value V_FALSE_VAL = {.kind = V_BOOL, .b = false};
#define NONE (&V_NONE_VAL)

static Value *vbool(bool b) { return b ? &V_TRUE_VAL : &V_FALSE_VAL; }
static Value *vnew(R *r, VKind k) {
    Value *v = ralloc(r, sizeof *v);
    memset(v, 0, sizeof *v);
    v->kind = (uint8_t)k;
    return v;
}
static Value *vint(R *r, int64_t i) {
    Value *v = vnew(r, V_INT);
    v->i = i;
    return v;
}
static Value *vfloat(R *r, double f) {
    Value *v = vnew(r, V_FLOAT);
    v->f = f;
    return v;
}
static Value *vstr(R *r, const char *s, size_t n) {
    Value *v = vnew(r, V_STR);
    v->str.s = s;
    v->str.n = n;
    return v;
}
static Value *vstr_copy(R *r, const char *s, size_t n) {
    char *d = ralloc(r, n + 1);
    memcpy(d, s, n);
    d[n] = 0;
    return vstr(r, d, n);
}
static Value *vstr_c(R *r, const char *s) { return vstr(r, s, strlen(s)); }
static Value *buf_pop_value(R *r) {
    SBuf *b = r->bufs[r->nbufs - 1];
    Value *v = vstr_copy(r, b->data ? b->data : "", b->len);
    r->nbufs--;
    sbuf_free(b);
    return v;
}
static Value *vundef(R *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static Value *vundef(R *r, const char *fmt, ...) {
    char msg[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    Value *v = vnew(r, V_UNDEF);
    v->str.n = strlen(msg);
    v->str.s = memcpy(ralloc(r, v->str.n + 1), msg, v->str.n + 1);
    return v;
}
static noreturn void undef_fail(R *r, const Value *u) {
    rfail(r, "%s", u->str.s ? u->str.s : "undefined value");
}
static Value *vlist(R *r, size_t cap) {
    Value *v = vnew(r, V_LIST);
    v->list.cap = cap;
    v->list.v = cap ? ralloc(r, cap * sizeof(Value *)) : NULL;
    return v;
}
static void list_push(R *r, Value *l, Value *x) {
    if (l->list.n == l->list.cap) {
        size_t cap = l->list.cap ? l->list.cap * 2 : 4;
        Value **nv = ralloc(r, cap * sizeof *nv);
        if (l->list.n) memcpy(nv, l->list.v, l->list.n * sizeof *nv);
        l->list.v = nv;
        l->list.cap = cap;
    }
    l->list.v[l->list.n++] = x;
}
static Value *vdict(R *r, VKind k) { return vnew(r, k); }
/* memcpy of n value pointers; empty lists and dicts have NULL arrays. */
static void copy_ptrs(Value **dst, Value *const *src, size_t n) {
    if (n) memcpy(dst, src, n * sizeof *dst);
}

static bool py_eq(const Value *a, const Value *b);

static Value **dict_slot(const Value *d, const Value *key) {
    for (size_t i = 0; i < d->dict.n; i++)
        if (py_eq(d->dict.k[i], key)) return &d->dict.v[i];
    return NULL;
}
static Value *dict_get_s(const Value *d, const char *key, size_t n) {
    for (size_t i = 0; i < d->dict.n; i++) {
        const Value *k = d->dict.k[i];
        if (k->kind == V_STR && k->str.n == n && memcmp(k->str.s, key, n) == 0) return d->dict.v[i];
    }
    return NULL;
}
static void dict_set(R *r, Value *d, Value *key, Value *val) {
    Value **slot = dict_slot(d, key);
    if (slot) {
        *slot = val;
        return;
    }
    if (d->dict.n == d->dict.cap) {
        size_t cap = d->dict.cap ? d->dict.cap * 2 : 4;
        Value **nk = ralloc(r, cap * sizeof *nk), **nv = ralloc(r, cap * sizeof *nv);
        if (d->dict.n) {
            memcpy(nk, d->dict.k, d->dict.n * sizeof *nk);
            memcpy(nv, d->dict.v, d->dict.n * sizeof *nv);
        }
        d->dict.k = nk;
        d->dict.v = nv;
        d->dict.cap = cap;
    }
    d->dict.k[d->dict.n] = key;
    d->dict.v[d->dict.n++] = val;
}
static void dict_set_s(R *r, Value *d, const char *key, Value *val) { dict_set(r, d, vstr_c(r, key), val); }

static Value *from_json(R *r, const cJSON *j) {
    switch (j->type & 0xFF) {
    case cJSON_NULL: return NONE;
    case cJSON_True: return vbool(true);
    case cJSON_False: return vbool(false);
    case cJSON_Number:
        if (json_is_float(j) || !(fabs(j->valuedouble) < 9.2e18) || j->valuedouble != floor(j->valuedouble))
            return vfloat(r, j->valuedouble);
        return vint(r, (int64_t)j->valuedouble);
    case cJSON_String:
    case cJSON_Raw: return vstr_c(r, j->valuestring ? j->valuestring : "");
    case cJSON_Array: {
        Value *l = vlist(r, (size_t)cJSON_GetArraySize(j));
        for (const cJSON *c = j->child; c; c = c->next) list_push(r, l, from_json(r, c));
        return l;
    }
    case cJSON_Object: {
        Value *d = vdict(r, V_DICT);
        for (const cJSON *c = j->child; c; c = c->next) dict_set_s(r, d, c->string ? c->string : "", from_json(r, c));
        return d;
    }
    default: return NONE;
    }
}

/* ---------------------------------------------------------------- str() / repr() */

static void py_float_repr(char *buf, double f) {
    if (isnan(f)) strcpy(buf, "nan");
    else if (isinf(f)) strcpy(buf, f > 0 ? "inf" : "-inf");
    else json_format_float(buf, f);
}

static void repr_str(SBuf *o, const char *s, size_t n) {
    bool has_sq = memchr(s, '\'', n) != NULL, has_dq = memchr(s, '"', n) != NULL;
    char q = (has_sq && !has_dq) ? '"' : '\'';
    sbuf_putc(o, q);
    size_t adv;
    for (size_t i = 0; i < n; i += adv) {
        int32_t c = utf8_next(s + i, n - i, &adv);
        if (c == q || c == '\\') sbuf_putc(o, '\\'), sbuf_putc(o, (char)c);
        else if (c == '\n') sbuf_puts(o, "\\n");
        else if (c == '\r') sbuf_puts(o, "\\r");
        else if (c == '\t') sbuf_puts(o, "\\t");
        else if (c < 0x20 || c == 0x7f) sbuf_printf(o, "\\x%02x", (unsigned)c);
        else if (c < 0x80) sbuf_putc(o, (char)c);
        else {
            utf8proc_category_t cat = utf8proc_category(c);
            bool printable = !(cat == UTF8PROC_CATEGORY_CC || cat == UTF8PROC_CATEGORY_CF || cat == UTF8PROC_CATEGORY_CS ||
                               cat == UTF8PROC_CATEGORY_CO || cat == UTF8PROC_CATEGORY_CN || cat == UTF8PROC_CATEGORY_ZL ||
                               cat == UTF8PROC_CATEGORY_ZP || cat == UTF8PROC_CATEGORY_ZS);
            if (adv == 1 && (unsigned char)s[i] >= 0x80) printable = false; /* invalid byte */
            if (printable) sbuf_put(o, s + i, adv);
            else if (c <= 0xff) sbuf_printf(o, "\\x%02x", (unsigned)c);
            else if (c <= 0xffff) sbuf_printf(o, "\\u%04x", (unsigned)c);
            else sbuf_printf(o, "\\U%08x", (unsigned)c);
        }
    }
    sbuf_putc(o, q);
}

static void to_str(R *r, SBuf *o, const Value *v, bool repr, int depth);

static void check_out(R *r, SBuf *o) {
    if (o->len > JINJA_MAX_OUTPUT) rfail(r, "output larger than %u MiB", JINJA_MAX_OUTPUT >> 20);
}

static void to_str(R *r, SBuf *o, const Value *v, bool repr, int depth) {
    char buf[64];
    if (depth > 100) rfail(r, "value nested too deeply to print");
    check_out(r, o);
    switch (v->kind) {
    case V_UNDEF: break;
    case V_NONE: sbuf_puts(o, "None"); break;
    case V_BOOL: sbuf_puts(o, v->b ? "True" : "False"); break;
    case V_INT: sbuf_printf(o, "%lld", (long long)v->i); break;
    case V_FLOAT:
        py_float_repr(buf, v->f);
        sbuf_puts(o, buf);
        break;
    case V_STR:
        if (repr) repr_str(o, v->str.s, v->str.n);
        else sbuf_put(o, v->str.s, v->str.n);
        break;
    case V_LIST:
        if (v->gen) {
            sbuf_puts(o, "<generator object>");
            break;
        }
        if (v->view) sbuf_puts(o, v->view == VIEW_ITEMS ? "dict_items(" : v->view == VIEW_KEYS ? "dict_keys(" : "dict_values(");
        sbuf_putc(o, v->tuple ? '(' : '[');
        for (size_t i = 0; i < v->list.n; i++) {
            if (i) sbuf_puts(o, ", ");
            to_str(r, o, v->list.v[i], true, depth + 1);
        }
        if (v->tuple && v->list.n == 1) sbuf_putc(o, ',');
        sbuf_putc(o, v->tuple ? ')' : ']');
        if (v->view) sbuf_putc(o, ')');
        break;
    case V_DICT:
    case V_NS:
        if (v->kind == V_NS) sbuf_puts(o, "<Namespace ");
        sbuf_putc(o, '{');
        for (size_t i = 0; i < v->dict.n; i++) {
            if (i) sbuf_puts(o, ", ");
            to_str(r, o, v->dict.k[i], true, depth + 1);
            sbuf_puts(o, ": ");
            to_str(r, o, v->dict.v[i], true, depth + 1);
        }
        sbuf_putc(o, '}');
        if (v->kind == V_NS) sbuf_putc(o, '>');
        break;
    case V_FUNC: sbuf_printf(o, "<built-in method %s>", v->func.name); break;
    case V_MACRO: sbuf_printf(o, "<Macro '%s'>", v->macro.node->str ? v->macro.node->str : "caller"); break;
    case V_LOOP: sbuf_printf(o, "<LoopContext %zu/%zu>", v->loop.i + 1, v->loop.items->list.n); break;
    }
}

/* str(v) as a string value (no copy for strings). */
static Value *str_of(R *r, Value *v) {
    if (v->kind == V_STR) return v;
    if (v->kind == V_UNDEF) return vstr(r, "", 0);
    SBuf *b = buf_push(r);
    to_str(r, b, v, false, 0);
    return buf_pop_value(r);
}

static const char *type_name(const Value *v) {
    static const char *const names[] = {"Undefined", "NoneType", "bool", "int", "float", "str", "list", "dict",
                                        "Namespace", "builtin_function_or_method", "Macro", "LoopContext"};
    if (v->kind == V_LIST && v->tuple) return "tuple";
    if (v->kind == V_LIST && v->gen) return "generator";
    return names[v->kind];
}

static bool truthy(const Value *v) {
    switch (v->kind) {
    case V_UNDEF:
    case V_NONE: return false;
    case V_BOOL: return v->b;
    case V_INT: return v->i != 0;
    case V_FLOAT: return v->f != 0;
    case V_STR: return v->str.n != 0;
    case V_LIST: return v->gen || v->list.n != 0;
    case V_DICT: return v->dict.n != 0;
    default: return true;
    }
}

static bool is_num(const Value *v) { return v->kind == V_INT || v->kind == V_FLOAT || v->kind == V_BOOL; }
static double num_f(const Value *v) { return v->kind == V_FLOAT ? v->f : v->kind == V_INT ? (double)v->i : v->b; }
static int64_t num_i(const Value *v) { return v->kind == V_INT ? v->i : v->b; }

static bool py_eq(const Value *a, const Value *b) {
    if (a == b) return true;
    if (is_num(a) && is_num(b)) {
        if (a->kind == V_FLOAT || b->kind == V_FLOAT) return num_f(a) == num_f(b);
        return num_i(a) == num_i(b);
    }
    if (a->kind != b->kind) return false;
    switch (a->kind) {
    case V_UNDEF:
    case V_NONE: return true;
    case V_STR: return a->str.n == b->str.n && memcmp(a->str.s, b->str.s, a->str.n) == 0;
    case V_LIST:
        if (a->tuple != b->tuple || a->gen || b->gen || a->list.n != b->list.n) return false;
        for (size_t i = 0; i < a->list.n; i++)
            if (!py_eq(a->list.v[i], b->list.v[i])) return false;
        return true;
    case V_DICT:
        if (a->dict.n != b->dict.n) return false;
        for (size_t i = 0; i < a->dict.n; i++) {
            Value **s = dict_slot(b, a->dict.k[i]);
            if (!s || !py_eq(a->dict.v[i], *s)) return false;
        }
        return true;
    case V_FUNC: return a->func.fn == b->func.fn && a->func.self == b->func.self;
    default: return false;
    }
}

/* Python's <, as -1/0/1; TypeError for unorderable pairs. */
static int py_cmp(R *r, const Value *a, const Value *b, const char *op) {
    if (is_num(a) && is_num(b)) {
        if (a->kind == V_FLOAT || b->kind == V_FLOAT) {
            double x = num_f(a), y = num_f(b);
            return x < y ? -1 : x > y ? 1 : 0;
        }
        int64_t x = num_i(a), y = num_i(b);
        return x < y ? -1 : x > y ? 1 : 0;
    }
    if (a->kind == V_STR && b->kind == V_STR) {
        size_t n = a->str.n < b->str.n ? a->str.n : b->str.n;
        int c = memcmp(a->str.s, b->str.s, n);
        if (c) return c < 0 ? -1 : 1;
        return a->str.n < b->str.n ? -1 : a->str.n > b->str.n ? 1 : 0;
    }
    if (a->kind == V_LIST && b->kind == V_LIST && a->tuple == b->tuple && !a->gen && !b->gen) {
        for (size_t i = 0; i < a->list.n && i < b->list.n; i++)
            if (!py_eq(a->list.v[i], b->list.v[i])) return py_cmp(r, a->list.v[i], b->list.v[i], op);
        return a->list.n < b->list.n ? -1 : a->list.n > b->list.n ? 1 : 0;
    }
    if (a->kind == V_UNDEF) undef_fail(r, a);
    if (b->kind == V_UNDEF) undef_fail(r, b);
    rfail(r, "'%s' not supported between instances of '%s' and '%s'", op, type_name(a), type_name(b));
}

/* ---------------------------------------------------------------- json.dumps */

typedef struct {
    bool ascii, sort_keys;
    const char *indent; /* NULL: none */
    const char *item_sep, *key_sep;
} DumpOpts;

static void dump_json_str(SBuf *o, const char *s, size_t n, bool ascii) {
    static const char hex[] = "0123456789abcdef";
    sbuf_putc(o, '"');
    size_t adv;
    for (size_t i = 0; i < n; i += adv) {
        unsigned char c = (unsigned char)s[i];
        adv = 1;
        if (c == '"') sbuf_puts(o, "\\\"");
        else if (c == '\\') sbuf_puts(o, "\\\\");
        else if (c == '\n') sbuf_puts(o, "\\n");
        else if (c == '\r') sbuf_puts(o, "\\r");
        else if (c == '\t') sbuf_puts(o, "\\t");
        else if (c == '\b') sbuf_puts(o, "\\b");
        else if (c == '\f') sbuf_puts(o, "\\f");
        else if (c < 0x20) sbuf_printf(o, "\\u%04x", c);
        else if (c < 0x80 || !ascii) sbuf_putc(o, (char)c);
        else {
            int32_t cp = utf8_next(s + i, n - i, &adv);
            if (cp >= 0x10000) {
                cp -= 0x10000;
                sbuf_printf(o, "\\u%04x\\u%04x", 0xD800 + (cp >> 10), 0xDC00 + (cp & 0x3FF));
            } else {
                char t[7] = {'\\', 'u', hex[(cp >> 12) & 15], hex[(cp >> 8) & 15], hex[(cp >> 4) & 15], hex[cp & 15], 0};
                sbuf_puts(o, t);
            }
        }
    }
    sbuf_putc(o, '"');
}

static void dump_nl(SBuf *o, const DumpOpts *d, int level) {
    sbuf_putc(o, '\n');
    for (int i = 0; i < level; i++) sbuf_puts(o, d->indent);
}

static void dump_json(R *r, SBuf *o, const Value *v, const DumpOpts *d, int level) {
    char buf[64];
    if (level > 100) rfail(r, "value nested too deeply for tojson");
    check_out(r, o);
    switch (v->kind) {
    case V_NONE: sbuf_puts(o, "null"); break;
    case V_BOOL: sbuf_puts(o, v->b ? "true" : "false"); break;
    case V_INT: sbuf_printf(o, "%lld", (long long)v->i); break;
    case V_FLOAT:
        json_format_float(buf, v->f);
        sbuf_puts(o, buf);
        break;
    case V_STR: dump_json_str(o, v->str.s, v->str.n, d->ascii); break;
    case V_LIST:
        if (v->gen || v->view) rfail(r, "Object of type %s is not JSON serializable", v->gen ? "generator" : "dict view");
        if (!v->list.n) {
            sbuf_puts(o, "[]");
            break;
        }
        sbuf_putc(o, '[');
        for (size_t i = 0; i < v->list.n; i++) {
            if (i) sbuf_puts(o, d->item_sep);
            if (d->indent) dump_nl(o, d, level + 1);
            dump_json(r, o, v->list.v[i], d, level + 1);
        }
        if (d->indent) dump_nl(o, d, level);
        sbuf_putc(o, ']');
        break;
    case V_DICT: {
        if (!v->dict.n) {
            sbuf_puts(o, "{}");
            break;
        }
        size_t n = v->dict.n;
        size_t *order = ralloc(r, n * sizeof *order);
        for (size_t i = 0; i < n; i++) order[i] = i;
        if (d->sort_keys) /* insertion sort: stable, keys are few */
            for (size_t i = 1; i < n; i++)
                for (size_t j = i; j > 0 && py_cmp(r, v->dict.k[order[j]], v->dict.k[order[j - 1]], "<") < 0; j--) {
                    size_t t = order[j];
                    order[j] = order[j - 1];
                    order[j - 1] = t;
                }
        sbuf_putc(o, '{');
        for (size_t i = 0; i < n; i++) {
            const Value *k = v->dict.k[order[i]];
            if (i) sbuf_puts(o, d->item_sep);
            if (d->indent) dump_nl(o, d, level + 1);
            if (k->kind == V_STR) dump_json_str(o, k->str.s, k->str.n, d->ascii);
            else if (k->kind == V_INT || k->kind == V_FLOAT || k->kind == V_BOOL || k->kind == V_NONE) {
                SBuf *t = buf_push(r);
                dump_json(r, t, k, d, level);
                Value *ks = buf_pop_value(r);
                sbuf_putc(o, '"');
                sbuf_put(o, ks->str.s, ks->str.n);
                sbuf_putc(o, '"');
            } else {
                rfail(r, "keys must be str, int, float, bool or None, not %s", type_name(k));
            }
            sbuf_puts(o, d->key_sep);
            dump_json(r, o, v->dict.v[order[i]], d, level + 1);
        }
        if (d->indent) dump_nl(o, d, level);
        sbuf_putc(o, '}');
        break;
    }
    default: rfail(r, "Object of type %s is not JSON serializable", type_name(v));
    }
}

/* ---------------------------------------------------------------- arguments */

static Value *arg_opt(Args *a, int i, const char *name) {
    if (i >= 0 && i < a->npos) return a->pos[i];
    for (int k = 0; k < a->nkw; k++)
        if (name && strcmp(a->kwname[k], name) == 0) return a->kwval[k];
    return NULL;
}
static Value *arg_req(R *r, Args *a, int i, const char *name, const char *fn) {
    Value *v = arg_opt(a, i, name);
    if (!v) rfail(r, "%s() missing required argument '%s'", fn, name);
    return v;
}
static int64_t want_int(R *r, Value *v, const char *what) {
    if (v->kind == V_INT || v->kind == V_BOOL) return num_i(v);
    if (v->kind == V_UNDEF) undef_fail(r, v);
    rfail(r, "%s must be an integer, not %s", what, type_name(v));
}
static Value *want_str(R *r, Value *v, const char *what) {
    if (v->kind == V_STR) return v;
    if (v->kind == V_UNDEF) undef_fail(r, v);
    rfail(r, "%s must be str, not %s", what, type_name(v));
}

/* ---------------------------------------------------------------- iteration */

/* The items a for loop (or list()) sees; a fresh list the caller may keep. */
static Value *iter_items(R *r, Value *v) {
    switch (v->kind) {
    case V_UNDEF: return vlist(r, 0);
    case V_LIST: {
        Value *l = vlist(r, v->list.n);
        copy_ptrs(l->list.v, v->list.v, v->list.n);
        l->list.n = v->list.n;
        return l;
    }
    case V_DICT: {
        Value *l = vlist(r, v->dict.n);
        for (size_t i = 0; i < v->dict.n; i++) l->list.v[i] = v->dict.k[i];
        l->list.n = v->dict.n;
        return l;
    }
    case V_STR: {
        Value *l = vlist(r, v->str.n);
        size_t adv;
        for (size_t i = 0; i < v->str.n; i += adv) {
            utf8_next(v->str.s + i, v->str.n - i, &adv);
            list_push(r, l, vstr(r, v->str.s + i, adv));
        }
        return l;
    }
    default: rfail(r, "'%s' object is not iterable", type_name(v));
    }
}

static size_t py_len(R *r, Value *v) {
    switch (v->kind) {
    case V_UNDEF: return 0;
    case V_STR: return utf8_count(v->str.s, v->str.n);
    case V_LIST:
        if (v->gen) rfail(r, "object of type 'generator' has no len()");
        return v->list.n;
    case V_DICT: return v->dict.n;
    default: rfail(r, "object of type '%s' has no len()", type_name(v));
    }
}

/* Byte offsets of each code point of s (n+1 entries, last = byte length). */
static size_t *cp_offsets(R *r, const Value *s, size_t *ncp) {
    size_t cap = s->str.n + 1, k = 0, adv;
    size_t *off = ralloc(r, cap * sizeof *off);
    for (size_t i = 0; i < s->str.n; i += adv) {
        off[k++] = i;
        utf8_next(s->str.s + i, s->str.n - i, &adv);
    }
    off[k] = s->str.n;
    *ncp = k;
    return off;
}

/* Python's slice.indices(): fills start/step and returns the item count. */
static int64_t slice_indices(R *r, int64_t len, Value *vs, Value *ve, Value *vst, int64_t *start, int64_t *stepo) {
    int64_t step = (vst && vst->kind != V_NONE) ? want_int(r, vst, "slice step") : 1;
    if (step == 0) rfail(r, "slice step cannot be zero");
    int64_t lo, hi;
    if (!vs || vs->kind == V_NONE) lo = step < 0 ? len - 1 : 0;
    else {
        lo = want_int(r, vs, "slice index");
        if (lo < 0) {
            lo += len;
            if (lo < 0) lo = step < 0 ? -1 : 0;
        } else if (lo >= len) lo = step < 0 ? len - 1 : len;
    }
    if (!ve || ve->kind == V_NONE) hi = step < 0 ? -1 : len;
    else {
        hi = want_int(r, ve, "slice index");
        if (hi < 0) {
            hi += len;
            if (hi < 0) hi = step < 0 ? -1 : 0;
        } else if (hi >= len) hi = step < 0 ? len - 1 : len;
    }
    *start = lo;
    *stepo = step;
    if (step > 0) return hi > lo ? (hi - lo - 1) / step + 1 : 0;
    return lo > hi ? (lo - hi - 1) / (-step) + 1 : 0;
}

static Value *do_slice(R *r, Value *obj, Value *a, Value *b, Value *c) {
    int64_t start, step, cnt;
    if (obj->kind == V_UNDEF) undef_fail(r, obj);
    if (obj->kind == V_LIST && !obj->gen) {
        cnt = slice_indices(r, (int64_t)obj->list.n, a, b, c, &start, &step);
        Value *l = vlist(r, (size_t)cnt);
        l->tuple = obj->tuple;
        for (int64_t i = 0; i < cnt; i++) l->list.v[i] = obj->list.v[start + i * step];
        l->list.n = (size_t)cnt;
        return l;
    }
    if (obj->kind == V_STR) {
        size_t ncp;
        size_t *off = cp_offsets(r, obj, &ncp);
        cnt = slice_indices(r, (int64_t)ncp, a, b, c, &start, &step);
        if (step == 1) return vstr(r, obj->str.s + off[start], off[start + cnt] - off[start]);
        char *d = ralloc(r, obj->str.n + 1);
        size_t k = 0;
        for (int64_t i = 0; i < cnt; i++) {
            size_t ci = (size_t)(start + i * step);
            memcpy(d + k, obj->str.s + off[ci], off[ci + 1] - off[ci]);
            k += off[ci + 1] - off[ci];
        }
        d[k] = 0;
        return vstr(r, d, k);
    }
    return vundef(r, "'%s' object is not subscriptable", type_name(obj));
}

/* ---------------------------------------------------------------- attributes and methods */

typedef struct {
    const char *name;
    BuiltinFn fn;
} Method;

static const Method STR_METHODS[], DICT_METHODS[], LIST_METHODS[];
static const char *const UNSAFE_LIST[] = {"append", "extend", "insert", "pop", "remove", "reverse", "sort", "clear", NULL};
static const char *const UNSAFE_DICT[] = {"clear", "pop", "popitem", "setdefault", "update", NULL};

static Value *method(R *r, Value *self, const Method *table, const char *const *unsafe, const char *name, size_t n,
                     bool *found) {
    *found = true;
    for (int i = 0; table[i].name; i++)
        if (strlen(table[i].name) == n && memcmp(table[i].name, name, n) == 0) {
            Value *f = vnew(r, V_FUNC);
            f->func.fn = table[i].fn;
            f->func.self = self;
            f->func.name = table[i].name;
            return f;
        }
    for (int i = 0; unsafe && unsafe[i]; i++)
        if (strlen(unsafe[i]) == n && memcmp(unsafe[i], name, n) == 0)
            return vundef(r, "access to attribute '%s' of '%s' object is unsafe.", unsafe[i], type_name(self));
    *found = false;
    return NULL;
}

static Value *loop_cycle(R *r, Value *self, Args *a) {
    if (a->npos == 0) rfail(r, "no items for cycling given");
    return a->pos[self->loop.i % (size_t)a->npos];
}

/* loop.index and friends, computed on access. */
static Value *loop_attr(R *r, Value *lp, const char *name, size_t n) {
    size_t i = lp->loop.i, len = lp->loop.items->list.n;
    Value **items = lp->loop.items->list.v;
#define IS(s) (n == strlen(s) && memcmp(name, s, n) == 0)
    if (IS("index")) return vint(r, (int64_t)i + 1);
    if (IS("index0")) return vint(r, (int64_t)i);
    if (IS("revindex")) return vint(r, (int64_t)(len - i));
    if (IS("revindex0")) return vint(r, (int64_t)(len - i - 1));
    if (IS("first")) return vbool(i == 0);
    if (IS("last")) return vbool(i + 1 == len);
    if (IS("length")) return vint(r, (int64_t)len);
    if (IS("depth")) return vint(r, 1);
    if (IS("depth0")) return vint(r, 0);
    if (IS("previtem")) return i > 0 ? items[i - 1] : vundef(r, "there is no previous item");
    if (IS("nextitem")) return i + 1 < len ? items[i + 1] : vundef(r, "there is no next item");
    if (IS("cycle")) {
        Value *f = vnew(r, V_FUNC);
        f->func.fn = loop_cycle;
        f->func.self = lp;
        f->func.name = "cycle";
        return f;
    }
#undef IS
    return vundef(r, "'LoopContext object' has no attribute '%.*s'", (int)n, name);
}

static Value *get_attr(R *r, Value *obj, const char *name, size_t n) {
    bool found;
    Value *m;
    switch (obj->kind) {
    case V_LOOP: return loop_attr(r, obj, name, n);
    case V_UNDEF: undef_fail(r, obj);
    case V_DICT:
        if (n && name[0] != '_') {
            m = method(r, obj, DICT_METHODS, UNSAFE_DICT, name, n, &found);
            if (found) return m;
        }
        if ((m = dict_get_s(obj, name, n))) return m;
        break;
    case V_NS:
        if ((m = dict_get_s(obj, name, n))) return m;
        break;
    case V_STR:
        m = method(r, obj, STR_METHODS, NULL, name, n, &found);
        if (found) return m;
        break;
    case V_LIST:
        if (obj->gen) break;
        m = method(r, obj, LIST_METHODS, UNSAFE_LIST, name, n, &found);
        if (found) return m;
        break;
    default: break;
    }
    return vundef(r, "'%s object' has no attribute '%.*s'", type_name(obj), (int)n, name);
}

static Value *get_item(R *r, Value *obj, Value *key) {
    if (obj->kind == V_UNDEF) undef_fail(r, obj);
    if (obj->kind == V_DICT || obj->kind == V_NS) {
        Value **s = dict_slot(obj, key);
        if (s) return *s;
    } else if ((obj->kind == V_LIST && !obj->gen) || obj->kind == V_STR) {
        if (key->kind == V_INT || key->kind == V_BOOL) {
            int64_t i = num_i(key);
            if (obj->kind == V_LIST) {
                int64_t len = (int64_t)obj->list.n;
                if (i < 0) i += len;
                if (i >= 0 && i < len) return obj->list.v[i];
            } else {
                size_t ncp;
                size_t *off = cp_offsets(r, obj, &ncp);
                int64_t len = (int64_t)ncp;
                if (i < 0) i += len;
                if (i >= 0 && i < len) return vstr(r, obj->str.s + off[i], off[i + 1] - off[i]);
            }
            return vundef(r, "%s index out of range", type_name(obj));
        }
    }
    if (key->kind == V_STR && obj->kind != V_DICT && obj->kind != V_NS) return get_attr(r, obj, key->str.s, key->str.n);
    if (key->kind == V_STR) return vundef(r, "'%s object' has no attribute '%.*s'", type_name(obj), (int)key->str.n, key->str.s);
    return vundef(r, "'%s object' has no element %s", type_name(obj), str_of(r, key)->str.s);
}

/* Attribute path "a.b.0" as map/selectattr/sort(attribute=) read it. */
static Value *get_path(R *r, Value *obj, Value *path) {
    if (path->kind == V_INT) return get_item(r, obj, path);
    Value *ps = want_str(r, path, "attribute");
    const char *s = ps->str.s, *end = s + ps->str.n;
    while (s <= end) {
        const char *dot = memchr(s, '.', (size_t)(end - s));
        if (!dot) dot = end;
        size_t n = (size_t)(dot - s);
        bool digits = n > 0;
        for (size_t i = 0; i < n; i++)
            if (!is_digit(s[i])) digits = false;
        if (digits && n < 18) obj = get_item(r, obj, vint(r, strtoll(s, NULL, 10)));
        else obj = get_item(r, obj, vstr(r, s, n));
        s = dot + 1;
    }
    return obj;
}

/* ---------------------------------------------------------------- string methods */

static Value *SELF_STR(R *r, Value *self) { return want_str(r, self, "self"); }

/* Python's full case mappings where they differ from the one-code-point ones
 * (SpecialCasing.txt, unconditional entries that occur in real text). */
static size_t special_case(int32_t c, bool upper, bool title, char *o) {
    static const struct {
        int32_t c;
        const char *up, *ti;
    } UP[] = {{0x00DF, "SS", "Ss"}, {0xFB00, "FF", "Ff"}, {0xFB01, "FI", "Fi"}, {0xFB02, "FL", "Fl"},
              {0xFB03, "FFI", "Ffi"}, {0xFB04, "FFL", "Ffl"}, {0xFB05, "ST", "St"}, {0xFB06, "ST", "St"},
              {0x0149, "\xCA\xBCN", "\xCA\xBCN"}, {0x01F0, "J\xCC\x8C", "J\xCC\x8C"}};
    if (!upper) {
        if (c != 0x0130) return 0;
        memcpy(o, "i\xCC\x87", 3);
        return 3;
    }
    for (size_t i = 0; i < sizeof UP / sizeof UP[0]; i++)
        if (UP[i].c == c) {
            const char *m = title ? UP[i].ti : UP[i].up;
            memcpy(o, m, strlen(m));
            return strlen(m);
        }
    return 0;
}

static Value *str_case(R *r, Value *s, int mode /* 0 lower 1 upper 2 capitalize 3 title(str) */) {
    char *d = ralloc(r, s->str.n * 3 + 4);
    size_t k = 0, adv;
    bool prev_cased = false, first = true;
    for (size_t i = 0; i < s->str.n; i += adv) {
        int32_t c = utf8_next(s->str.s + i, s->str.n - i, &adv);
        bool up = mode == 1 || (mode == 2 && first) || (mode == 3 && !prev_cased);
        size_t sp = special_case(c, up, mode >= 2, d + k);
        int32_t o = !up ? utf8proc_tolower(c) : mode == 1 ? utf8proc_toupper(c) : utf8proc_totitle(c);
        if (mode == 3) prev_cased = utf8proc_tolower(c) != c || utf8proc_toupper(c) != c || utf8proc_totitle(c) != c;
        first = false;
        if (sp) k += sp;
        else if (adv == 1 && (unsigned char)s->str.s[i] >= 0x80) d[k++] = s->str.s[i];
        else k += utf8_put(d + k, o);
    }
    d[k] = 0;
    return vstr(r, d, k);
}
static Value *m_lower(R *r, Value *self, Args *a) { (void)a; return str_case(r, SELF_STR(r, self), 0); }
static Value *m_upper(R *r, Value *self, Args *a) { (void)a; return str_case(r, SELF_STR(r, self), 1); }
static Value *m_capitalize(R *r, Value *self, Args *a) { (void)a; return str_case(r, SELF_STR(r, self), 2); }
static Value *m_title(R *r, Value *self, Args *a) { (void)a; return str_case(r, SELF_STR(r, self), 3); }

static bool cp_in(int32_t c, const Value *chars) {
    size_t adv;
    for (size_t i = 0; i < chars->str.n; i += adv)
        if (utf8_next(chars->str.s + i, chars->str.n - i, &adv) == c) return true;
    return false;
}

/* str.strip family; chars NULL or None: whitespace. */
static Value *str_strip(R *r, Value *s, Value *chars, bool left, bool right) {
    if (chars && chars->kind == V_NONE) chars = NULL;
    if (chars) want_str(r, chars, "strip arg");
    const char *p = s->str.s;
    size_t b = 0, e = s->str.n, adv;
    if (left)
        while (b < e) {
            int32_t c = utf8_next(p + b, e - b, &adv);
            if (chars ? !cp_in(c, chars) : !py_isspace(c)) break;
            b += adv;
        }
    if (right)
        while (e > b) {
            size_t st = e - 1;
            while (st > b && ((unsigned char)p[st] & 0xC0) == 0x80 && e - st < 4) st--;
            int32_t c = utf8_next(p + st, e - st, &adv);
            if (st + adv != e) st = e - 1, c = (unsigned char)p[st];
            if (chars ? !cp_in(c, chars) : !py_isspace(c)) break;
            e = st;
        }
    return vstr(r, p + b, e - b);
}
static Value *m_strip(R *r, Value *self, Args *a) { return str_strip(r, SELF_STR(r, self), arg_opt(a, 0, "chars"), true, true); }
static Value *m_lstrip(R *r, Value *self, Args *a) { return str_strip(r, SELF_STR(r, self), arg_opt(a, 0, "chars"), true, false); }
static Value *m_rstrip(R *r, Value *self, Args *a) { return str_strip(r, SELF_STR(r, self), arg_opt(a, 0, "chars"), false, true); }

static const char *mem_find(const char *h, size_t hn, const char *n, size_t nn) {
    if (nn == 0) return h;
    if (nn > hn) return NULL;
    for (size_t i = 0; i + nn <= hn; i++)
        if (h[i] == n[0] && memcmp(h + i, n, nn) == 0) return h + i;
    return NULL;
}
static const char *mem_rfind(const char *h, size_t hn, const char *n, size_t nn) {
    if (nn > hn) return NULL;
    for (size_t i = hn - nn + 1; i-- > 0;)
        if (memcmp(h + i, n, nn) == 0) return h + i;
    return NULL;
}

static Value *str_split(R *r, Value *s, Value *sep, Value *maxv, bool from_right) {
    int64_t max = maxv ? want_int(r, maxv, "maxsplit") : -1;
    if (sep && sep->kind == V_NONE) sep = NULL;
    Value *out = vlist(r, 4);
    const char *p = s->str.s;
    size_t n = s->str.n;
    if (sep) {
        want_str(r, sep, "separator");
        if (!sep->str.n) rfail(r, "empty separator");
        if (!from_right) {
            size_t i = 0;
            while (max < 0 || (int64_t)out->list.n < max) {
                const char *f = mem_find(p + i, n - i, sep->str.s, sep->str.n);
                if (!f) break;
                list_push(r, out, vstr(r, p + i, (size_t)(f - p) - i));
                i = (size_t)(f - p) + sep->str.n;
            }
            list_push(r, out, vstr(r, p + i, n - i));
            return out;
        }
        size_t e = n;
        while (max < 0 || (int64_t)out->list.n < max) {
            const char *f = mem_rfind(p, e, sep->str.s, sep->str.n);
            if (!f) break;
            size_t fi = (size_t)(f - p);
            list_push(r, out, vstr(r, p + fi + sep->str.n, e - fi - sep->str.n));
            e = fi;
        }
        list_push(r, out, vstr(r, p, e));
    } else if (!from_right) {
        size_t i = 0, adv;
        for (;;) {
            while (i < n && py_isspace(utf8_next(p + i, n - i, &adv))) i += adv;
            if (i >= n) break;
            if (max >= 0 && (int64_t)out->list.n >= max) {
                list_push(r, out, vstr(r, p + i, n - i));
                break;
            }
            size_t st = i;
            while (i < n && !py_isspace(utf8_next(p + i, n - i, &adv))) i += adv;
            list_push(r, out, vstr(r, p + st, i - st));
        }
        return out;
    } else {
        /* rsplit on whitespace: split fully, then rejoin the head if limited. */
        Value *all = str_split(r, s, NULL, NULL, false);
        if (max < 0 || (int64_t)all->list.n <= max + 0) return all;
        size_t keep = (size_t)max, head = all->list.n - keep;
        Value *first_last = all->list.v[head - 1];
        size_t b = 0;
        (void)b;
        const char *hs = s->str.s;
        size_t hl = (size_t)(first_last->str.s + first_last->str.n - hs);
        list_push(r, out, vstr(r, hs, hl));
        for (size_t i = head; i < all->list.n; i++) list_push(r, out, all->list.v[i]);
        return out;
    }
    /* rsplit collected right to left */
    for (size_t i = 0, j = out->list.n - 1; i < j; i++, j--) {
        Value *t = out->list.v[i];
        out->list.v[i] = out->list.v[j];
        out->list.v[j] = t;
    }
    return out;
}
static Value *m_split(R *r, Value *self, Args *a) {
    return str_split(r, SELF_STR(r, self), arg_opt(a, 0, "sep"), arg_opt(a, 1, "maxsplit"), false);
}
static Value *m_rsplit(R *r, Value *self, Args *a) {
    return str_split(r, SELF_STR(r, self), arg_opt(a, 0, "sep"), arg_opt(a, 1, "maxsplit"), true);
}

static Value *str_replace(R *r, Value *s, Value *old, Value *new, int64_t count) {
    want_str(r, old, "replace old");
    want_str(r, new, "replace new");
    SBuf *b = buf_push(r);
    size_t i = 0, n = s->str.n;
    int64_t done = 0;
    if (!old->str.n) {
        size_t adv;
        for (;;) {
            if (count < 0 || done < count) sbuf_put(b, new->str.s, new->str.n), done++;
            if (i >= n) break;
            utf8_next(s->str.s + i, n - i, &adv);
            sbuf_put(b, s->str.s + i, adv);
            i += adv;
            check_out(r, b);
        }
        return buf_pop_value(r);
    }
    while (count < 0 || done < count) {
        const char *f = mem_find(s->str.s + i, n - i, old->str.s, old->str.n);
        if (!f) break;
        sbuf_put(b, s->str.s + i, (size_t)(f - s->str.s) - i);
        sbuf_put(b, new->str.s, new->str.n);
        i = (size_t)(f - s->str.s) + old->str.n;
        done++;
        check_out(r, b);
    }
    sbuf_put(b, s->str.s + i, n - i);
    return buf_pop_value(r);
}
static Value *m_replace(R *r, Value *self, Args *a) {
    Value *c = arg_opt(a, 2, "count");
    return str_replace(r, SELF_STR(r, self), arg_req(r, a, 0, "old", "replace"), arg_req(r, a, 1, "new", "replace"),
                       c ? want_int(r, c, "count") : -1);
}

static bool affix_match(R *r, Value *s, Value *x, bool end) {
    if (x->kind == V_LIST && x->tuple) {
        for (size_t i = 0; i < x->list.n; i++)
            if (affix_match(r, s, x->list.v[i], end)) return true;
        return false;
    }
    if (x->kind != V_STR) rfail(r, "%s first arg must be str or a tuple of str, not %s", end ? "endswith" : "startswith", type_name(x));
    if (x->str.n > s->str.n) return false;
    return memcmp(s->str.s + (end ? s->str.n - x->str.n : 0), x->str.s, x->str.n) == 0;
}
static Value *m_startswith(R *r, Value *self, Args *a) {
    return vbool(affix_match(r, SELF_STR(r, self), arg_req(r, a, 0, "prefix", "startswith"), false));
}
static Value *m_endswith(R *r, Value *self, Args *a) {
    return vbool(affix_match(r, SELF_STR(r, self), arg_req(r, a, 0, "suffix", "endswith"), true));
}

static Value *str_find(R *r, Value *self, Args *a, bool rev, bool must) {
    Value *s = SELF_STR(r, self), *sub = want_str(r, arg_req(r, a, 0, "sub", "find"), "find arg");
    const char *f = rev ? mem_rfind(s->str.s, s->str.n, sub->str.s, sub->str.n) : mem_find(s->str.s, s->str.n, sub->str.s, sub->str.n);
    if (!f) {
        if (must) rfail(r, "substring not found");
        return vint(r, -1);
    }
    return vint(r, (int64_t)utf8_count(s->str.s, (size_t)(f - s->str.s)));
}
static Value *m_find(R *r, Value *self, Args *a) { return str_find(r, self, a, false, false); }
static Value *m_rfind(R *r, Value *self, Args *a) { return str_find(r, self, a, true, false); }
static Value *m_index_s(R *r, Value *self, Args *a) { return str_find(r, self, a, false, true); }

static Value *m_count_s(R *r, Value *self, Args *a) {
    Value *s = SELF_STR(r, self), *sub = want_str(r, arg_req(r, a, 0, "sub", "count"), "count arg");
    if (!sub->str.n) return vint(r, (int64_t)utf8_count(s->str.s, s->str.n) + 1);
    int64_t k = 0;
    size_t i = 0;
    const char *f;
    while ((f = mem_find(s->str.s + i, s->str.n - i, sub->str.s, sub->str.n))) {
        k++;
        i = (size_t)(f - s->str.s) + sub->str.n;
    }
    return vint(r, k);
}

static Value *m_join(R *r, Value *self, Args *a) {
    Value *sep = SELF_STR(r, self);
    Value *items = iter_items(r, arg_req(r, a, 0, "iterable", "join"));
    SBuf *b = buf_push(r);
    for (size_t i = 0; i < items->list.n; i++) {
        Value *x = items->list.v[i];
        if (x->kind != V_STR) rfail(r, "sequence item %zu: expected str instance, %s found", i, type_name(x));
        if (i) sbuf_put(b, sep->str.s, sep->str.n);
        sbuf_put(b, x->str.s, x->str.n);
        check_out(r, b);
    }
    return buf_pop_value(r);
}

static Value *str_pred(R *r, Value *self, int kind) {
    Value *s = SELF_STR(r, self);
    if (!s->str.n) return vbool(false);
    size_t adv;
    bool any_cased = false;
    for (size_t i = 0; i < s->str.n; i += adv) {
        int32_t c = utf8_next(s->str.s + i, s->str.n - i, &adv);
        utf8proc_category_t cat = utf8proc_category(c);
        bool digit = cat == UTF8PROC_CATEGORY_ND;
        bool alpha = cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LL || cat == UTF8PROC_CATEGORY_LT ||
                     cat == UTF8PROC_CATEGORY_LM || cat == UTF8PROC_CATEGORY_LO;
        bool upper = utf8proc_tolower(c) != c, lower = utf8proc_toupper(c) != c;
        switch (kind) {
        case 0: if (!digit) return vbool(false); break;
        case 1: if (!alpha) return vbool(false); break;
        case 2: if (!alpha && !digit && cat != UTF8PROC_CATEGORY_NL && cat != UTF8PROC_CATEGORY_NO) return vbool(false); break;
        case 3: if (!py_isspace(c)) return vbool(false); break;
        case 4: if (upper) return vbool(false); any_cased |= lower; break;
        case 5: if (lower) return vbool(false); any_cased |= upper; break;
        case 6: if (!digit && cat != UTF8PROC_CATEGORY_NL && cat != UTF8PROC_CATEGORY_NO) return vbool(false); break;
        }
    }
    return vbool(kind == 4 || kind == 5 ? any_cased : true);
}
static Value *m_isdigit(R *r, Value *self, Args *a) { (void)a; return str_pred(r, self, 0); }
static Value *m_isalpha(R *r, Value *self, Args *a) { (void)a; return str_pred(r, self, 1); }
static Value *m_isalnum(R *r, Value *self, Args *a) { (void)a; return str_pred(r, self, 2); }
static Value *m_isspace(R *r, Value *self, Args *a) { (void)a; return str_pred(r, self, 3); }
static Value *m_islower(R *r, Value *self, Args *a) { (void)a; return str_pred(r, self, 4); }
static Value *m_isupper(R *r, Value *self, Args *a) { (void)a; return str_pred(r, self, 5); }
static Value *m_isnumeric(R *r, Value *self, Args *a) { (void)a; return str_pred(r, self, 6); }

static Value *m_splitlines(R *r, Value *self, Args *a) {
    Value *s = SELF_STR(r, self);
    bool keep = arg_opt(a, 0, "keepends") && truthy(arg_opt(a, 0, "keepends"));
    Value *out = vlist(r, 4);
    size_t i = 0, st = 0, adv, n = s->str.n;
    while (i < n) {
        int32_t c = utf8_next(s->str.s + i, n - i, &adv);
        bool br = c == '\n' || c == '\r' || c == 0x0b || c == 0x0c || c == 0x1c || c == 0x1d || c == 0x1e ||
                  c == 0x85 || c == 0x2028 || c == 0x2029;
        if (!br) {
            i += adv;
            continue;
        }
        size_t e = i + adv;
        if (c == '\r' && e < n && s->str.s[e] == '\n') e++;
        list_push(r, out, vstr(r, s->str.s + st, (keep ? e : i) - st));
        i = st = e;
    }
    if (st < n) list_push(r, out, vstr(r, s->str.s + st, n - st));
    return out;
}

static Value *m_removeprefix(R *r, Value *self, Args *a) {
    Value *s = SELF_STR(r, self), *x = want_str(r, arg_req(r, a, 0, "prefix", "removeprefix"), "prefix");
    if (x->str.n <= s->str.n && memcmp(s->str.s, x->str.s, x->str.n) == 0) return vstr(r, s->str.s + x->str.n, s->str.n - x->str.n);
    return s;
}
static Value *m_removesuffix(R *r, Value *self, Args *a) {
    Value *s = SELF_STR(r, self), *x = want_str(r, arg_req(r, a, 0, "suffix", "removesuffix"), "suffix");
    if (x->str.n && x->str.n <= s->str.n && memcmp(s->str.s + s->str.n - x->str.n, x->str.s, x->str.n) == 0)
        return vstr(r, s->str.s, s->str.n - x->str.n);
    return s;
}

/* str.format with {} / {0} / {name} fields (no format specs). */
static Value *m_format(R *r, Value *self, Args *a) {
    Value *s = SELF_STR(r, self);
    SBuf *b = buf_push(r);
    int auto_i = 0;
    for (size_t i = 0; i < s->str.n; i++) {
        char c = s->str.s[i];
        if ((c == '{' || c == '}') && i + 1 < s->str.n && s->str.s[i + 1] == c) {
            sbuf_putc(b, c);
            i++;
            continue;
        }
        if (c == '}') rfail(r, "Single '}' encountered in format string");
        if (c != '{') {
            sbuf_putc(b, c);
            continue;
        }
        const char *e = memchr(s->str.s + i, '}', s->str.n - i);
        if (!e) rfail(r, "Single '{' encountered in format string");
        const char *f = s->str.s + i + 1;
        size_t fl = (size_t)(e - f);
        Value *v = NULL;
        if (fl == 0) v = arg_opt(a, auto_i++, NULL);
        else if (is_digit(f[0])) v = arg_opt(a, atoi(f), NULL);
        else {
            for (int k = 0; k < a->nkw; k++)
                if (strlen(a->kwname[k]) == fl && memcmp(a->kwname[k], f, fl) == 0) v = a->kwval[k];
        }
        if (!v) rfail(r, "format field '%.*s' has no argument", (int)fl, f);
        to_str(r, b, v, false, 0);
        check_out(r, b);
        i = (size_t)(e - s->str.s);
    }
    return buf_pop_value(r);
}

static Value *str_pad(R *r, Value *s, int64_t width, Value *fillv, int where /* 0 center 1 ljust 2 rjust */) {
    size_t len = utf8_count(s->str.s, s->str.n);
    if (width <= (int64_t)len) return s;
    if (width > (int64_t)JINJA_MAX_OUTPUT) rfail(r, "width too large");
    const char *fill = " ";
    size_t fl = 1;
    if (fillv) {
        want_str(r, fillv, "fill character");
        fill = fillv->str.s;
        fl = fillv->str.n;
    }
    size_t pad = (size_t)width - len, left = where == 1 ? 0 : where == 2 ? pad : pad / 2 + (pad & (size_t)width & 1);
    size_t right = pad - left;
    char *d = ralloc(r, s->str.n + pad * fl + 1);
    size_t k = 0;
    for (size_t i = 0; i < left; i++, k += fl) memcpy(d + k, fill, fl);
    memcpy(d + k, s->str.s, s->str.n);
    k += s->str.n;
    for (size_t i = 0; i < right; i++, k += fl) memcpy(d + k, fill, fl);
    d[k] = 0;
    return vstr(r, d, k);
}
static Value *m_center(R *r, Value *self, Args *a) {
    return str_pad(r, SELF_STR(r, self), want_int(r, arg_req(r, a, 0, "width", "center"), "width"), arg_opt(a, 1, "fillchar"), 0);
}
static Value *m_ljust(R *r, Value *self, Args *a) {
    return str_pad(r, SELF_STR(r, self), want_int(r, arg_req(r, a, 0, "width", "ljust"), "width"), arg_opt(a, 1, "fillchar"), 1);
}
static Value *m_rjust(R *r, Value *self, Args *a) {
    return str_pad(r, SELF_STR(r, self), want_int(r, arg_req(r, a, 0, "width", "rjust"), "width"), arg_opt(a, 1, "fillchar"), 2);
}

static const Method STR_METHODS[] = {
    {"lower", m_lower}, {"upper", m_upper}, {"capitalize", m_capitalize}, {"title", m_title},
    {"strip", m_strip}, {"lstrip", m_lstrip}, {"rstrip", m_rstrip}, {"split", m_split}, {"rsplit", m_rsplit},
    {"replace", m_replace}, {"startswith", m_startswith}, {"endswith", m_endswith}, {"find", m_find},
    {"rfind", m_rfind}, {"index", m_index_s}, {"count", m_count_s}, {"join", m_join}, {"isdigit", m_isdigit},
    {"isalpha", m_isalpha}, {"isalnum", m_isalnum}, {"isspace", m_isspace}, {"islower", m_islower},
    {"isupper", m_isupper}, {"isnumeric", m_isnumeric}, {"isdecimal", m_isdigit}, {"splitlines", m_splitlines},
    {"removeprefix", m_removeprefix}, {"removesuffix", m_removesuffix}, {"format", m_format}, {"center", m_center},
    {"ljust", m_ljust}, {"rjust", m_rjust}, {NULL, NULL}};

/* ---------------------------------------------------------------- dict and list methods */

static Value *pair(R *r, Value *a, Value *b) {
    Value *t = vlist(r, 2);
    t->tuple = 1;
    t->list.v[0] = a;
    t->list.v[1] = b;
    t->list.n = 2;
    return t;
}
static Value *dict_pairs(R *r, Value *self) {
    Value *l = vlist(r, self->dict.n);
    for (size_t i = 0; i < self->dict.n; i++) l->list.v[i] = pair(r, self->dict.k[i], self->dict.v[i]);
    l->list.n = self->dict.n;
    return l;
}
static Value *m_items(R *r, Value *self, Args *a) {
    (void)a;
    Value *l = dict_pairs(r, self);
    l->view = VIEW_ITEMS;
    return l;
}
static Value *m_keys(R *r, Value *self, Args *a) {
    (void)a;
    Value *l = iter_items(r, self);
    l->view = VIEW_KEYS;
    return l;
}
static Value *m_values(R *r, Value *self, Args *a) {
    (void)a;
    Value *l = vlist(r, self->dict.n);
    copy_ptrs(l->list.v, self->dict.v, self->dict.n);
    l->list.n = self->dict.n;
    l->view = VIEW_VALUES;
    return l;
}
static Value *m_get(R *r, Value *self, Args *a) {
    Value **s = dict_slot(self, arg_req(r, a, 0, "key", "get"));
    if (s) return *s;
    Value *d = arg_opt(a, 1, "default");
    return d ? d : NONE;
}
static Value *m_copy(R *r, Value *self, Args *a) {
    (void)a;
    Value *c = vnew(r, (VKind)self->kind);
    *c = *self;
    if (self->kind == V_LIST) return iter_items(r, self);
    c->dict.k = ralloc(r, (self->dict.n + 1) * sizeof(Value *));
    c->dict.v = ralloc(r, (self->dict.n + 1) * sizeof(Value *));
    copy_ptrs(c->dict.k, self->dict.k, self->dict.n);
    copy_ptrs(c->dict.v, self->dict.v, self->dict.n);
    c->dict.cap = self->dict.n + 1;
    return c;
}
static Value *m_index_l(R *r, Value *self, Args *a) {
    Value *x = arg_req(r, a, 0, "value", "index");
    for (size_t i = 0; i < self->list.n; i++)
        if (py_eq(self->list.v[i], x)) return vint(r, (int64_t)i);
    rfail(r, "%s is not in list", str_of(r, x)->str.s);
}
static Value *m_count_l(R *r, Value *self, Args *a) {
    Value *x = arg_req(r, a, 0, "value", "count");
    int64_t k = 0;
    for (size_t i = 0; i < self->list.n; i++) k += py_eq(self->list.v[i], x);
    return vint(r, k);
}
static const Method DICT_METHODS[] = {{"items", m_items}, {"keys", m_keys}, {"values", m_values},
                                      {"get", m_get}, {"copy", m_copy}, {NULL, NULL}};
static const Method LIST_METHODS[] = {{"index", m_index_l}, {"count", m_count_l}, {"copy", m_copy}, {NULL, NULL}};

/* ---------------------------------------------------------------- calling */

static Value *call_macro(R *r, Value *m, Args *a, Value *caller);

static Value *call_value(R *r, Value *f, Args *a) {
    step(r);
    if (f->kind == V_FUNC) return f->func.fn(r, f->func.self, a);
    if (f->kind == V_MACRO) return call_macro(r, f, a, NULL);
    if (f->kind == V_UNDEF) undef_fail(r, f);
    rfail(r, "'%s' object is not callable", type_name(f));
}

static Value *call1(R *r, BuiltinFn fn, Value *input, Args *extra) {
    Value *pos[16];
    Args a = {pos, 1, NULL, NULL, 0};
    pos[0] = input;
    if (extra) {
        if (extra->npos > 15) rfail(r, "too many arguments");
        memcpy(pos + 1, extra->pos, (size_t)extra->npos * sizeof(Value *));
        a.npos += extra->npos;
        a.kwname = extra->kwname;
        a.kwval = extra->kwval;
        a.nkw = extra->nkw;
    }
    return fn(r, NULL, &a);
}

/* ---------------------------------------------------------------- numbers */

static Value *num_result(R *r, double f) { return vfloat(r, f); }

static Value *arith(R *r, int op, Value *x, Value *y) {
    if (x->kind == V_UNDEF) undef_fail(r, x);
    if (y->kind == V_UNDEF) undef_fail(r, y);
    static const char *const sym[] = {"+", "-", "*", "/", "//", "%", "**"};
    if (is_num(x) && is_num(y)) {
        bool fl = x->kind == V_FLOAT || y->kind == V_FLOAT;
        if (!fl) {
            int64_t a = num_i(x), b = num_i(y), c;
            switch (op) {
            case OP_ADD: if (__builtin_add_overflow(a, b, &c)) goto overflow; return vint(r, c);
            case OP_SUB: if (__builtin_sub_overflow(a, b, &c)) goto overflow; return vint(r, c);
            case OP_MUL: if (__builtin_mul_overflow(a, b, &c)) goto overflow; return vint(r, c);
            case OP_DIV: if (!b) rfail(r, "division by zero"); return vfloat(r, (double)a / (double)b);
            case OP_FDIV:
            case OP_MOD: {
                if (!b) rfail(r, "integer division or modulo by zero");
                if (a == INT64_MIN && b == -1) goto overflow;
                int64_t q = a / b, m = a % b;
                if (m && ((m < 0) != (b < 0))) q--, m += b;
                return vint(r, op == OP_FDIV ? q : m);
            }
            case OP_POW: {
                if (b < 0) return vfloat(r, pow((double)a, (double)b));
                int64_t acc = 1, base = a;
                while (b) {
                    if (b & 1)
                        if (__builtin_mul_overflow(acc, base, &acc)) goto overflow;
                    b >>= 1;
                    if (b && __builtin_mul_overflow(base, base, &base)) goto overflow;
                }
                return vint(r, acc);
            }
            }
        }
        double a = num_f(x), b = num_f(y);
        switch (op) {
        case OP_ADD: return num_result(r, a + b);
        case OP_SUB: return num_result(r, a - b);
        case OP_MUL: return num_result(r, a * b);
        case OP_DIV: if (b == 0) rfail(r, "float division by zero"); return num_result(r, a / b);
        case OP_FDIV:
        case OP_MOD: {
            if (b == 0) rfail(r, "float modulo");
            double m = fmod(a, b);
            if (m != 0 && ((m < 0) != (b < 0))) m += b;
            if (m == 0) m = copysign(0.0, b);
            if (op == OP_MOD) return num_result(r, m);
            double q = (a - fmod(a, b)) / b;
            if (fmod(a, b) != 0 && ((fmod(a, b) < 0) != (b < 0))) q -= 1;
            double fq = floor(q);
            if (q - fq > 0.5) fq += 1;
            return num_result(r, fq == 0 ? copysign(0.0, a / b) : fq);
        }
        case OP_POW:
            if (a == 0 && b < 0) rfail(r, "0.0 cannot be raised to a negative power");
            return num_result(r, pow(a, b));
        }
    }
    if (op == OP_ADD && x->kind == V_STR && y->kind == V_STR) {
        if (x->str.n + y->str.n > JINJA_MAX_OUTPUT) rfail(r, "string too large");
        char *d = ralloc(r, x->str.n + y->str.n + 1);
        memcpy(d, x->str.s, x->str.n);
        memcpy(d + x->str.n, y->str.s, y->str.n);
        d[x->str.n + y->str.n] = 0;
        return vstr(r, d, x->str.n + y->str.n);
    }
    if (op == OP_ADD && x->kind == V_LIST && y->kind == V_LIST && !x->gen && !y->gen && x->tuple == y->tuple) {
        Value *l = vlist(r, x->list.n + y->list.n);
        l->tuple = x->tuple;
        copy_ptrs(l->list.v, x->list.v, x->list.n);
        copy_ptrs(l->list.v + x->list.n, y->list.v, y->list.n);
        l->list.n = x->list.n + y->list.n;
        return l;
    }
    if (op == OP_MUL && (x->kind == V_INT || x->kind == V_BOOL) && (y->kind == V_STR || y->kind == V_LIST)) {
        Value *t = x;
        x = y;
        y = t;
    }
    if (op == OP_MUL && (y->kind == V_INT || y->kind == V_BOOL) && ((x->kind == V_STR) || (x->kind == V_LIST && !x->gen))) {
        int64_t k = num_i(y);
        if (k < 0) k = 0;
        size_t unit = x->kind == V_STR ? x->str.n : x->list.n * sizeof(Value *);
        if (unit && (uint64_t)k > JINJA_MAX_OUTPUT / unit) rfail(r, "repeated sequence too large");
        if (x->kind == V_STR) {
            char *d = ralloc(r, x->str.n * (size_t)k + 1);
            for (int64_t i = 0; i < k; i++) memcpy(d + (size_t)i * x->str.n, x->str.s, x->str.n);
            d[x->str.n * (size_t)k] = 0;
            return vstr(r, d, x->str.n * (size_t)k);
        }
        Value *l = vlist(r, x->list.n * (size_t)k);
        l->tuple = x->tuple;
        for (int64_t i = 0; i < k; i++) copy_ptrs(l->list.v + (size_t)i * x->list.n, x->list.v, x->list.n);
        l->list.n = x->list.n * (size_t)k;
        return l;
    }
    rfail(r, "unsupported operand type(s) for %s: '%s' and '%s'", sym[op], type_name(x), type_name(y));
overflow:
    rfail(r, "integer overflow (integers are limited to 64 bits)");
}

static bool contains(R *r, Value *container, Value *x) {
    switch (container->kind) {
    case V_STR:
        if (x->kind != V_STR) rfail(r, "'in <string>' requires string as left operand, not %s", type_name(x));
        return mem_find(container->str.s, container->str.n, x->str.s, x->str.n) != NULL;
    case V_LIST:
        for (size_t i = 0; i < container->list.n; i++)
            if (py_eq(container->list.v[i], x)) return true;
        return false;
    case V_DICT: return dict_slot(container, x) != NULL;
    case V_UNDEF: return false;
    default: rfail(r, "argument of type '%s' is not iterable", type_name(container));
    }
}

/* ---------------------------------------------------------------- tests */

static int t_defined(R *r, Value *v, Args *a) { (void)r, (void)a; return v->kind != V_UNDEF; }
static int t_undefined(R *r, Value *v, Args *a) { (void)r, (void)a; return v->kind == V_UNDEF; }
static int t_none(R *r, Value *v, Args *a) { (void)r, (void)a; return v->kind == V_NONE; }
static int t_boolean(R *r, Value *v, Args *a) { (void)r, (void)a; return v->kind == V_BOOL; }
static int t_true(R *r, Value *v, Args *a) { (void)r, (void)a; return v->kind == V_BOOL && v->b; }
static int t_false(R *r, Value *v, Args *a) { (void)r, (void)a; return v->kind == V_BOOL && !v->b; }
static int t_integer(R *r, Value *v, Args *a) { (void)r, (void)a; return v->kind == V_INT; }
static int t_float(R *r, Value *v, Args *a) { (void)r, (void)a; return v->kind == V_FLOAT; }
static int t_number(R *r, Value *v, Args *a) { (void)r, (void)a; return is_num(v); }
static int t_string(R *r, Value *v, Args *a) { (void)r, (void)a; return v->kind == V_STR; }
static int t_mapping(R *r, Value *v, Args *a) { (void)r, (void)a; return v->kind == V_DICT; }
static int t_iterable(R *r, Value *v, Args *a) {
    (void)r, (void)a;
    return v->kind == V_STR || v->kind == V_LIST || v->kind == V_DICT || v->kind == V_UNDEF;
}
static int t_sequence(R *r, Value *v, Args *a) {
    (void)r, (void)a;
    return v->kind == V_STR || (v->kind == V_LIST && !v->gen) || v->kind == V_DICT;
}
static int t_callable(R *r, Value *v, Args *a) { (void)r, (void)a; return v->kind == V_FUNC || v->kind == V_MACRO; }
static int t_escaped(R *r, Value *v, Args *a) { (void)r, (void)a, (void)v; return 0; }
static int t_odd(R *r, Value *v, Args *a) {
    (void)a;
    return truthy(arith(r, OP_MOD, v, vint(r, 2))) ? 1 : 0;
}
static int t_even(R *r, Value *v, Args *a) { return !t_odd(r, v, a); }
static int t_divisibleby(R *r, Value *v, Args *a) {
    return !truthy(arith(r, OP_MOD, v, arg_req(r, a, 0, "num", "divisibleby")));
}
static int t_eq(R *r, Value *v, Args *a) { return py_eq(v, arg_req(r, a, 0, "other", "eq")); }
static int t_ne(R *r, Value *v, Args *a) { return !py_eq(v, arg_req(r, a, 0, "other", "ne")); }
static int t_lt(R *r, Value *v, Args *a) { return py_cmp(r, v, arg_req(r, a, 0, "other", "lt"), "<") < 0; }
static int t_le(R *r, Value *v, Args *a) { return py_cmp(r, v, arg_req(r, a, 0, "other", "le"), "<=") <= 0; }
static int t_gt(R *r, Value *v, Args *a) { return py_cmp(r, v, arg_req(r, a, 0, "other", "gt"), ">") > 0; }
static int t_ge(R *r, Value *v, Args *a) { return py_cmp(r, v, arg_req(r, a, 0, "other", "ge"), ">=") >= 0; }
static int t_in(R *r, Value *v, Args *a) { return contains(r, arg_req(r, a, 0, "seq", "in"), v); }
static int t_sameas(R *r, Value *v, Args *a) {
    Value *o = arg_req(r, a, 0, "other", "sameas");
    if (v->kind != o->kind) return 0;
    if (v->kind == V_NONE || v->kind == V_UNDEF) return v->kind == V_NONE;
    if (v->kind == V_BOOL) return v->b == o->b;
    return v == o;
}
static int t_lower(R *r, Value *v, Args *a) { (void)a; return truthy(str_pred(r, str_of(r, v), 4)); }
static int t_upper(R *r, Value *v, Args *a) { (void)a; return truthy(str_pred(r, str_of(r, v), 5)); }
static int t_filter(R *r, Value *v, Args *a) {
    (void)r, (void)a;
    return v->kind == V_STR && filter_find(v->str.s) != NULL;
}
static int t_test(R *r, Value *v, Args *a) {
    (void)r, (void)a;
    return v->kind == V_STR && test_find(v->str.s) != NULL;
}

static const Test TESTS[] = {
    {"defined", t_defined}, {"undefined", t_undefined}, {"none", t_none}, {"boolean", t_boolean},
    {"true", t_true}, {"false", t_false}, {"integer", t_integer}, {"float", t_float}, {"number", t_number},
    {"string", t_string}, {"mapping", t_mapping}, {"iterable", t_iterable}, {"sequence", t_sequence},
    {"callable", t_callable}, {"escaped", t_escaped}, {"odd", t_odd}, {"even", t_even},
    {"divisibleby", t_divisibleby}, {"eq", t_eq}, {"equalto", t_eq}, {"==", t_eq}, {"ne", t_ne}, {"!=", t_ne},
    {"lt", t_lt}, {"lessthan", t_lt}, {"<", t_lt}, {"le", t_le}, {"<=", t_le}, {"gt", t_gt},
    {"greaterthan", t_gt}, {">", t_gt}, {"ge", t_ge}, {">=", t_ge}, {"in", t_in}, {"sameas", t_sameas},
    {"lower", t_lower}, {"upper", t_upper}, {"filter", t_filter}, {"test", t_test}, {NULL, NULL}};

static const Test *test_find(const char *name) {
    for (int i = 0; TESTS[i].name; i++)
        if (strcmp(TESTS[i].name, name) == 0) return &TESTS[i];
    return NULL;
}

/* ---------------------------------------------------------------- filters */

#define IN (a->pos[0])

static Value *f_tojson(R *r, Value *self, Args *a) {
    (void)self;
    Value *ea = arg_opt(a, 1, "ensure_ascii"), *ind = arg_opt(a, 2, "indent"), *sep = arg_opt(a, 3, "separators"),
          *sk = arg_opt(a, 4, "sort_keys");
    DumpOpts d = {ea && truthy(ea), sk && truthy(sk), NULL, ", ", ": "};
    if (ind && ind->kind != V_NONE) {
        if (ind->kind == V_STR) d.indent = ind->str.s;
        else {
            int64_t k = want_int(r, ind, "indent");
            if (k > 64) rfail(r, "indent too large");
            char *s = ralloc(r, (size_t)(k > 0 ? k : 0) + 1);
            memset(s, ' ', (size_t)(k > 0 ? k : 0));
            s[k > 0 ? k : 0] = 0;
            d.indent = s;
        }
        d.item_sep = ",";
    }
    if (sep && sep->kind != V_NONE) {
        if (sep->kind != V_LIST || sep->list.n != 2 || sep->list.v[0]->kind != V_STR || sep->list.v[1]->kind != V_STR)
            rfail(r, "separators must be a pair of strings");
        d.item_sep = sep->list.v[0]->str.s;
        d.key_sep = sep->list.v[1]->str.s;
    }
    SBuf *b = buf_push(r);
    dump_json(r, b, IN, &d, 0);
    return buf_pop_value(r);
}

static Value *f_string(R *r, Value *self, Args *a) { (void)self; return str_of(r, IN); }
static Value *f_safe(R *r, Value *self, Args *a) { (void)self; return IN->kind == V_STR ? IN : str_of(r, IN); }
static Value *f_escape(R *r, Value *self, Args *a) {
    (void)self;
    Value *s = str_of(r, IN);
    SBuf *b = buf_push(r);
    for (size_t i = 0; i < s->str.n; i++) {
        char c = s->str.s[i];
        if (c == '&') sbuf_puts(b, "&amp;");
        else if (c == '<') sbuf_puts(b, "&lt;");
        else if (c == '>') sbuf_puts(b, "&gt;");
        else if (c == '"') sbuf_puts(b, "&#34;");
        else if (c == '\'') sbuf_puts(b, "&#39;");
        else sbuf_putc(b, c);
    }
    return buf_pop_value(r);
}
static Value *f_length(R *r, Value *self, Args *a) { (void)self; return vint(r, (int64_t)py_len(r, IN)); }
static Value *f_lower(R *r, Value *self, Args *a) { (void)self; return str_case(r, str_of(r, IN), 0); }
static Value *f_upper(R *r, Value *self, Args *a) { (void)self; return str_case(r, str_of(r, IN), 1); }
static Value *f_capitalize(R *r, Value *self, Args *a) { (void)self; return str_case(r, str_of(r, IN), 2); }
static Value *f_title(R *r, Value *self, Args *a) {
    /* jinja2: split at runs of [-\s({\[<], upper the first char of each piece, lower the rest */
    (void)self;
    Value *s = str_of(r, IN);
    char *d = ralloc(r, s->str.n * 3 + 4);
    size_t k = 0, adv;
    bool piece_start = true, in_sep = false;
    for (size_t i = 0; i < s->str.n; i += adv) {
        int32_t c = utf8_next(s->str.s + i, s->str.n - i, &adv);
        bool sep = py_isspace(c) || c == '-' || c == '(' || c == '{' || c == '[' || c == '<';
        if (sep != in_sep) piece_start = true;
        in_sep = sep;
        int32_t o = piece_start ? utf8proc_toupper(c) : utf8proc_tolower(c);
        piece_start = false;
        if (adv == 1 && (unsigned char)s->str.s[i] >= 0x80) d[k++] = s->str.s[i];
        else k += utf8_put(d + k, o);
    }
    d[k] = 0;
    return vstr(r, d, k);
}
static Value *f_trim(R *r, Value *self, Args *a) {
    (void)self;
    return str_strip(r, str_of(r, IN), arg_opt(a, 1, "chars"), true, true);
}
static Value *f_replace(R *r, Value *self, Args *a) {
    (void)self;
    Value *c = arg_opt(a, 3, "count");
    return str_replace(r, str_of(r, IN), str_of(r, arg_req(r, a, 1, "old", "replace")),
                       str_of(r, arg_req(r, a, 2, "new", "replace")), c && c->kind != V_NONE ? want_int(r, c, "count") : -1);
}
static Value *f_first(R *r, Value *self, Args *a) {
    (void)self;
    Value *it = iter_items(r, IN);
    return it->list.n ? it->list.v[0] : vundef(r, "No first item, sequence was empty.");
}
static Value *f_last(R *r, Value *self, Args *a) {
    (void)self;
    if (IN->kind == V_UNDEF) undef_fail(r, IN);
    if (IN->kind == V_LIST && IN->gen) rfail(r, "'generator' object is not reversible");
    Value *it = iter_items(r, IN);
    return it->list.n ? it->list.v[it->list.n - 1] : vundef(r, "No last item, sequence was empty.");
}
static Value *f_list(R *r, Value *self, Args *a) { (void)self; return iter_items(r, IN); }
static Value *f_join(R *r, Value *self, Args *a) {
    (void)self;
    Value *items = iter_items(r, IN), *sep = arg_opt(a, 1, "d"), *attr = arg_opt(a, 2, "attribute");
    Value *seps = sep ? str_of(r, sep) : vstr(r, "", 0);
    SBuf *b = buf_push(r);
    for (size_t i = 0; i < items->list.n; i++) {
        if (i) sbuf_put(b, seps->str.s, seps->str.n);
        Value *x = attr && attr->kind != V_NONE ? get_path(r, items->list.v[i], attr) : items->list.v[i];
        to_str(r, b, x, false, 0);
        check_out(r, b);
    }
    return buf_pop_value(r);
}
static Value *f_default(R *r, Value *self, Args *a) {
    (void)self;
    Value *d = arg_opt(a, 1, "default_value"), *boolean = arg_opt(a, 2, "boolean");
    bool use = IN->kind == V_UNDEF || (boolean && truthy(boolean) && !truthy(IN));
    return use ? (d ? d : vstr(r, "", 0)) : IN;
}
static Value *f_items(R *r, Value *self, Args *a) {
    (void)self;
    if (IN->kind == V_UNDEF) return vlist(r, 0);
    if (IN->kind != V_DICT) rfail(r, "Can only get item pairs from a mapping.");
    Value *l = dict_pairs(r, IN);
    l->gen = 1;
    return l;
}

/* Python int(str): optional sign, digits with single underscores, surrounding whitespace. */
static bool parse_py_int(const char *s, size_t n, int64_t base, int64_t *out) {
    size_t i = 0;
    while (i < n && py_isspace((unsigned char)s[i])) i++;
    while (n > i && py_isspace((unsigned char)s[n - 1])) n--;
    bool neg = false;
    if (i < n && (s[i] == '+' || s[i] == '-')) neg = s[i++] == '-';
    if (base == 16 && i + 1 < n && s[i] == '0' && (s[i + 1] | 0x20) == 'x') i += 2;
    if (i >= n || base < 2 || base > 36) return false;
    uint64_t v = 0;
    bool prev_us = true;
    for (; i < n; i++) {
        char c = s[i];
        if (c == '_' && !prev_us) {
            prev_us = true;
            continue;
        }
        int d = is_digit(c) ? c - '0' : (c | 0x20) >= 'a' && (c | 0x20) <= 'z' ? (c | 0x20) - 'a' + 10 : 99;
        if (d >= base) return false;
        if (v > (UINT64_MAX - (uint64_t)d) / (uint64_t)base) return false;
        v = v * (uint64_t)base + (uint64_t)d;
        prev_us = false;
    }
    if (prev_us || v > (uint64_t)INT64_MAX) return false;
    *out = neg ? -(int64_t)v : (int64_t)v;
    return true;
}
static bool parse_py_float(const char *s, size_t n, double *out) {
    char buf[128];
    size_t i = 0;
    while (i < n && py_isspace((unsigned char)s[i])) i++;
    while (n > i && py_isspace((unsigned char)s[n - 1])) n--;
    if (n - i == 0 || n - i >= sizeof buf) return false;
    size_t k = 0;
    for (; i < n; i++) {
        char c = s[i];
        if (!(is_digit(c) || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-' || (c | 0x20) == 'i' ||
              (c | 0x20) == 'n' || (c | 0x20) == 'f' || (c | 0x20) == 't' || (c | 0x20) == 'y' || (c | 0x20) == 'a'))
            return false;
        buf[k++] = c;
    }
    buf[k] = 0;
    char *end;
    *out = strtod(buf, &end);
    return *end == 0;
}
static Value *f_int(R *r, Value *self, Args *a) {
    (void)self;
    Value *d = arg_opt(a, 1, "default"), *bv = arg_opt(a, 2, "base");
    int64_t base = bv ? want_int(r, bv, "base") : 10, i;
    double f;
    switch (IN->kind) {
    case V_INT: return IN;
    case V_BOOL: return vint(r, IN->b);
    case V_FLOAT:
        if (isfinite(IN->f) && fabs(IN->f) < 9.2e18) return vint(r, (int64_t)IN->f);
        break;
    case V_STR:
        if (parse_py_int(IN->str.s, IN->str.n, base, &i)) return vint(r, i);
        if (parse_py_float(IN->str.s, IN->str.n, &f) && isfinite(f) && fabs(f) < 9.2e18) return vint(r, (int64_t)f);
        break;
    default: break;
    }
    return d ? d : vint(r, 0);
}
static Value *f_float(R *r, Value *self, Args *a) {
    (void)self;
    Value *d = arg_opt(a, 1, "default");
    double f;
    if (is_num(IN)) return vfloat(r, num_f(IN));
    if (IN->kind == V_STR && parse_py_float(IN->str.s, IN->str.n, &f)) return vfloat(r, f);
    return d ? d : vfloat(r, 0.0);
}
static Value *f_abs(R *r, Value *self, Args *a) {
    (void)self;
    if (IN->kind == V_INT) {
        if (IN->i == INT64_MIN) rfail(r, "integer overflow");
        return vint(r, IN->i < 0 ? -IN->i : IN->i);
    }
    if (IN->kind == V_BOOL) return vint(r, IN->b);
    if (IN->kind == V_FLOAT) return vfloat(r, fabs(IN->f));
    if (IN->kind == V_UNDEF) undef_fail(r, IN);
    rfail(r, "bad operand type for abs(): '%s'", type_name(IN));
}
static Value *f_round(R *r, Value *self, Args *a) {
    (void)self;
    Value *pv = arg_opt(a, 1, "precision"), *mv = arg_opt(a, 2, "method");
    int64_t prec = pv ? want_int(r, pv, "precision") : 0;
    const char *method = mv ? want_str(r, mv, "method")->str.s : "common";
    if (!is_num(IN)) {
        if (IN->kind == V_UNDEF) undef_fail(r, IN);
        rfail(r, "round() needs a number, not %s", type_name(IN));
    }
    double v = num_f(IN), m = pow(10, (double)prec);
    if (strcmp(method, "common") == 0) {
        if (IN->kind != V_FLOAT) return vint(r, num_i(IN)); /* round(int, n) keeps the int */
        if (prec == 0) return vfloat(r, nearbyint(v));
        if (prec > 0 && prec < 300) {
            char buf[400];
            snprintf(buf, sizeof buf, "%.*f", (int)prec, v);
            return vfloat(r, strtod(buf, NULL));
        }
        return vfloat(r, nearbyint(v * m) / m);
    }
    if (strcmp(method, "ceil") == 0) return vfloat(r, ceil(v * m) / m);
    if (strcmp(method, "floor") == 0) return vfloat(r, floor(v * m) / m);
    rfail(r, "method must be common, ceil or floor");
}
static Value *f_indent(R *r, Value *self, Args *a) {
    (void)self;
    Value *wv = arg_opt(a, 1, "width"), *fv = arg_opt(a, 2, "first"), *bv = arg_opt(a, 3, "blank");
    Value *ind;
    if (wv && wv->kind == V_STR) ind = wv;
    else {
        int64_t w = wv ? want_int(r, wv, "width") : 4;
        if (w < 0) w = 0;
        if (w > 4096) rfail(r, "indent width too large");
        char *s = ralloc(r, (size_t)w + 1);
        memset(s, ' ', (size_t)w);
        s[w] = 0;
        ind = vstr(r, s, (size_t)w);
    }
    if (IN->kind == V_UNDEF) undef_fail(r, IN);
    Value *s = str_of(r, IN);
    Value *nl = vstr(r, "\n", 1);
    Value *lines = m_splitlines(r, arith(r, OP_ADD, s, nl), &(Args){0});
    SBuf *b = buf_push(r);
    if (fv && truthy(fv)) sbuf_put(b, ind->str.s, ind->str.n);
    bool blank = bv && truthy(bv);
    for (size_t i = 0; i < lines->list.n; i++) {
        Value *ln = lines->list.v[i];
        if (i) {
            sbuf_putc(b, '\n');
            if (blank || ln->str.n) sbuf_put(b, ind->str.s, ind->str.n);
        }
        sbuf_put(b, ln->str.s, ln->str.n);
        check_out(r, b);
    }
    return buf_pop_value(r);
}
static Value *f_center(R *r, Value *self, Args *a) {
    (void)self;
    Value *w = arg_opt(a, 1, "width");
    return str_pad(r, str_of(r, IN), w ? want_int(r, w, "width") : 80, NULL, 0);
}
static Value *f_wordcount(R *r, Value *self, Args *a) {
    (void)self;
    Value *s = str_of(r, IN);
    int64_t k = 0;
    bool in = false;
    size_t adv;
    for (size_t i = 0; i < s->str.n; i += adv) {
        int32_t c = utf8_next(s->str.s + i, s->str.n - i, &adv);
        utf8proc_category_t cat = utf8proc_category(c);
        bool w = c == '_' || (cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO) ||
                 (cat >= UTF8PROC_CATEGORY_ND && cat <= UTF8PROC_CATEGORY_NO);
        if (w && !in) k++;
        in = w;
    }
    return vint(r, k);
}

/* Sort key: the attribute if asked, lower-cased strings unless case-sensitive. */
static Value *sort_key(R *r, Value *x, Value *attr, bool cs) {
    if (attr && attr->kind == V_STR && memchr(attr->str.s, ',', attr->str.n)) { /* "a,b": a tuple of keys */
        Value *t = vlist(r, 2);
        t->tuple = 1;
        const char *p = attr->str.s, *end = p + attr->str.n;
        while (p <= end) {
            const char *c = memchr(p, ',', (size_t)(end - p));
            if (!c) c = end;
            list_push(r, t, sort_key(r, x, vstr(r, p, (size_t)(c - p)), cs));
            p = c + 1;
        }
        return t;
    }
    if (attr && attr->kind != V_NONE) x = get_path(r, x, attr);
    if (!cs && x->kind == V_STR) x = str_case(r, x, 0);
    return x;
}
static void merge_sort(R *r, Value **v, Value **keys, size_t n, bool rev, Value **tv, Value **tk) {
    if (n < 2) return;
    size_t h = n / 2;
    merge_sort(r, v, keys, h, rev, tv, tk);
    merge_sort(r, v + h, keys + h, n - h, rev, tv, tk);
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n) {
        int c = py_cmp(r, keys[j], keys[i], "<");
        bool take_right = rev ? c > 0 : c < 0;
        if (take_right) tv[k] = v[j], tk[k++] = keys[j++];
        else tv[k] = v[i], tk[k++] = keys[i++];
    }
    while (i < h) tv[k] = v[i], tk[k++] = keys[i++];
    while (j < n) tv[k] = v[j], tk[k++] = keys[j++];
    memcpy(v, tv, n * sizeof *v);
    memcpy(keys, tk, n * sizeof *keys);
}
static Value *sorted(R *r, Value *items, Value *attr, bool cs, bool rev) {
    size_t n = items->list.n;
    Value **keys = ralloc(r, (n + 1) * sizeof *keys), **tv = ralloc(r, (n + 1) * sizeof *tv),
          **tk = ralloc(r, (n + 1) * sizeof *tk);
    for (size_t i = 0; i < n; i++) keys[i] = sort_key(r, items->list.v[i], attr, cs);
    merge_sort(r, items->list.v, keys, n, rev, tv, tk);
    return items;
}
static Value *f_sort(R *r, Value *self, Args *a) {
    (void)self;
    Value *rv = arg_opt(a, 1, "reverse"), *cs = arg_opt(a, 2, "case_sensitive"), *attr = arg_opt(a, 3, "attribute");
    return sorted(r, iter_items(r, IN), attr, cs && truthy(cs), rv && truthy(rv));
}
static Value *f_dictsort(R *r, Value *self, Args *a) {
    (void)self;
    Value *cs = arg_opt(a, 1, "case_sensitive"), *by = arg_opt(a, 2, "by"), *rv = arg_opt(a, 3, "reverse");
    if (IN->kind != V_DICT) rfail(r, "dictsort needs a mapping");
    int pos = 0;
    if (by) {
        Value *b = want_str(r, by, "by");
        if (strcmp(b->str.s, "value") == 0) pos = 1;
        else if (strcmp(b->str.s, "key") != 0) rfail(r, "You can only sort by either \"key\" or \"value\"");
    }
    return sorted(r, dict_pairs(r, IN), vint(r, pos), cs && truthy(cs), rv && truthy(rv));
}
static Value *f_unique(R *r, Value *self, Args *a) {
    (void)self;
    Value *cs = arg_opt(a, 1, "case_sensitive"), *attr = arg_opt(a, 2, "attribute");
    Value *items = iter_items(r, IN), *out = vlist(r, items->list.n), *seen = vlist(r, items->list.n);
    for (size_t i = 0; i < items->list.n; i++) {
        Value *k = sort_key(r, items->list.v[i], attr, cs && truthy(cs));
        if (contains(r, seen, k)) continue;
        list_push(r, seen, k);
        list_push(r, out, items->list.v[i]);
    }
    out->gen = 1;
    return out;
}
static Value *f_reverse(R *r, Value *self, Args *a) {
    (void)self;
    if (IN->kind == V_STR) {
        Value *m1 = vint(r, -1);
        return do_slice(r, IN, NULL, NULL, m1);
    }
    if (IN->kind == V_UNDEF) undef_fail(r, IN);
    Value *items = iter_items(r, IN);
    for (size_t i = 0, j = items->list.n; i + 1 < j; i++, j--) {
        Value *t = items->list.v[i];
        items->list.v[i] = items->list.v[j - 1];
        items->list.v[j - 1] = t;
    }
    items->gen = 1;
    return items;
}

static Value *apply_named_filter(R *r, Value *name, Value *x, Args *rest);
static bool apply_named_test(R *r, Value *name, Value *x, Args *rest);

/* Args after the first `skip` positional ones of a (a view, no copy). */
static Args args_from(Args *a, int skip) {
    Args b = *a;
    if (skip > b.npos) skip = b.npos;
    b.pos += skip;
    b.npos -= skip;
    return b;
}

static Value *f_map(R *r, Value *self, Args *a) {
    (void)self;
    Value *items = iter_items(r, IN), *out = vlist(r, items->list.n);
    Value *attr = NULL, *def = NULL;
    for (int k = 0; k < a->nkw; k++) {
        if (strcmp(a->kwname[k], "attribute") == 0) attr = a->kwval[k];
        else if (strcmp(a->kwname[k], "default") == 0) def = a->kwval[k];
    }
    for (size_t i = 0; i < items->list.n; i++) {
        Value *x = items->list.v[i];
        if (attr) {
            x = get_path(r, x, attr);
            if (x->kind == V_UNDEF && def) x = def;
        } else {
            if (a->npos < 2) rfail(r, "map requires a filter argument");
            Args rest = args_from(a, 2);
            rest.nkw = 0;
            x = apply_named_filter(r, a->pos[1], x, &rest);
        }
        out->list.v[out->list.n++] = x;
    }
    out->gen = 1;
    return out;
}
static Value *select_impl(R *r, Args *a, bool attr_mode, bool keep) {
    Value *items = iter_items(r, IN), *out = vlist(r, items->list.n);
    int off = attr_mode ? 2 : 1;
    Value *attr = attr_mode ? arg_req(r, a, 1, "attribute", "selectattr") : NULL;
    for (size_t i = 0; i < items->list.n; i++) {
        Value *x = attr ? get_path(r, items->list.v[i], attr) : items->list.v[i];
        bool ok;
        if (a->npos > off) {
            Args rest = args_from(a, off + 1);
            ok = apply_named_test(r, a->pos[off], x, &rest);
        } else {
            ok = truthy(x);
        }
        if (ok == keep) out->list.v[out->list.n++] = items->list.v[i];
    }
    out->gen = 1;
    return out;
}
static Value *f_select(R *r, Value *self, Args *a) { (void)self; return select_impl(r, a, false, true); }
static Value *f_reject(R *r, Value *self, Args *a) { (void)self; return select_impl(r, a, false, false); }
static Value *f_selectattr(R *r, Value *self, Args *a) { (void)self; return select_impl(r, a, true, true); }
static Value *f_rejectattr(R *r, Value *self, Args *a) { (void)self; return select_impl(r, a, true, false); }

static Value *f_batch(R *r, Value *self, Args *a) {
    (void)self;
    int64_t n = want_int(r, arg_req(r, a, 1, "linecount", "batch"), "linecount");
    Value *fill = arg_opt(a, 2, "fill_with");
    if (n <= 0) rfail(r, "batch size must be positive");
    Value *items = iter_items(r, IN), *out = vlist(r, 4), *cur_b = NULL;
    for (size_t i = 0; i < items->list.n; i++) {
        if (!cur_b || (int64_t)cur_b->list.n == n) list_push(r, out, cur_b = vlist(r, 4));
        list_push(r, cur_b, items->list.v[i]);
    }
    if (cur_b && fill && fill->kind != V_NONE)
        while ((int64_t)cur_b->list.n < n) list_push(r, cur_b, fill);
    out->gen = 1;
    return out;
}
static Value *f_sum(R *r, Value *self, Args *a) {
    (void)self;
    Value *attr = arg_opt(a, 1, "attribute"), *acc = arg_opt(a, 2, "start");
    Value *items = iter_items(r, IN);
    if (!acc) acc = vint(r, 0);
    for (size_t i = 0; i < items->list.n; i++) acc = arith(r, OP_ADD, acc, sort_key(r, items->list.v[i], attr, true));
    return acc;
}
static Value *minmax(R *r, Args *a, bool want_max) {
    Value *cs = arg_opt(a, 1, "case_sensitive"), *attr = arg_opt(a, 2, "attribute");
    Value *items = iter_items(r, IN);
    if (!items->list.n) return vundef(r, "No aggregated item, sequence was empty.");
    Value *best = items->list.v[0], *bk = sort_key(r, best, attr, cs && truthy(cs));
    for (size_t i = 1; i < items->list.n; i++) {
        Value *k = sort_key(r, items->list.v[i], attr, cs && truthy(cs));
        int c = py_cmp(r, k, bk, "<");
        if (want_max ? c > 0 : c < 0) best = items->list.v[i], bk = k;
    }
    return best;
}
static Value *f_min(R *r, Value *self, Args *a) { (void)self; return minmax(r, a, false); }
static Value *f_max(R *r, Value *self, Args *a) { (void)self; return minmax(r, a, true); }
static Value *f_attr(R *r, Value *self, Args *a) {
    (void)self;
    Value *n = want_str(r, arg_req(r, a, 1, "name", "attr"), "attribute name");
    if (IN->kind == V_DICT) return vundef(r, "'dict object' has no attribute '%s'", n->str.s);
    return get_attr(r, IN, n->str.s, n->str.n);
}

static const Filter FILTERS[] = {
    {"tojson", f_tojson}, {"string", f_string}, {"safe", f_safe}, {"e", f_escape}, {"escape", f_escape},
    {"forceescape", f_escape}, {"length", f_length}, {"count", f_length}, {"lower", f_lower},
    {"upper", f_upper}, {"capitalize", f_capitalize}, {"title", f_title}, {"trim", f_trim},
    {"replace", f_replace}, {"first", f_first}, {"last", f_last}, {"list", f_list}, {"join", f_join},
    {"default", f_default}, {"d", f_default}, {"items", f_items}, {"int", f_int}, {"float", f_float},
    {"abs", f_abs}, {"round", f_round}, {"indent", f_indent}, {"center", f_center},
    {"wordcount", f_wordcount}, {"sort", f_sort}, {"dictsort", f_dictsort}, {"unique", f_unique},
    {"reverse", f_reverse}, {"map", f_map}, {"select", f_select}, {"reject", f_reject},
    {"selectattr", f_selectattr}, {"rejectattr", f_rejectattr}, {"batch", f_batch}, {"sum", f_sum},
    {"min", f_min}, {"max", f_max}, {"attr", f_attr}, {NULL, NULL}};

static const Filter *filter_find(const char *name) {
    for (int i = 0; FILTERS[i].name; i++)
        if (strcmp(FILTERS[i].name, name) == 0) return &FILTERS[i];
    return NULL;
}

static Value *apply_named_filter(R *r, Value *name, Value *x, Args *rest) {
    const Filter *f = filter_find(want_str(r, name, "filter name")->str.s);
    if (!f) rfail(r, "No filter named '%s'.", name->str.s);
    return call1(r, f->fn, x, rest);
}
static bool apply_named_test(R *r, Value *name, Value *x, Args *rest) {
    const Test *t = test_find(want_str(r, name, "test name")->str.s);
    if (!t) rfail(r, "No test named '%s'.", name->str.s);
    return t->fn(r, x, rest);
}

/* ---------------------------------------------------------------- globals */

static Value *g_range(R *r, Value *self, Args *a) {
    (void)self;
    if (a->npos < 1 || a->npos > 3) rfail(r, "range expected 1 to 3 arguments, got %d", a->npos);
    int64_t start = 0, stop, st = 1;
    if (a->npos == 1) stop = want_int(r, a->pos[0], "range argument");
    else {
        start = want_int(r, a->pos[0], "range argument");
        stop = want_int(r, a->pos[1], "range argument");
        if (a->npos == 3) st = want_int(r, a->pos[2], "range argument");
    }
    if (st == 0) rfail(r, "range() arg 3 must not be zero");
    double cnt = st > 0 ? ceil(((double)stop - (double)start) / (double)st) : ceil(((double)start - (double)stop) / (double)-st);
    if (cnt < 0) cnt = 0;
    if (cnt > 100000) rfail(r, "Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
    Value *l = vlist(r, (size_t)cnt);
    for (int64_t i = 0; i < (int64_t)cnt; i++) l->list.v[i] = vint(r, start + i * st);
    l->list.n = (size_t)cnt;
    return l;
}
static Value *dict_from(R *r, Args *a, VKind kind) {
    Value *d = vdict(r, kind);
    if (a->npos > 1) rfail(r, "expected at most 1 positional argument, got %d", a->npos);
    if (a->npos == 1) {
        Value *src = a->pos[0];
        if (src->kind == V_DICT || src->kind == V_NS) {
            for (size_t i = 0; i < src->dict.n; i++) dict_set(r, d, src->dict.k[i], src->dict.v[i]);
        } else {
            Value *items = iter_items(r, src);
            for (size_t i = 0; i < items->list.n; i++) {
                Value *p = items->list.v[i];
                if (p->kind != V_LIST || p->gen || p->list.n != 2) rfail(r, "dictionary update sequence element #%zu has wrong length", i);
                dict_set(r, d, p->list.v[0], p->list.v[1]);
            }
        }
    }
    for (int k = 0; k < a->nkw; k++) dict_set_s(r, d, a->kwname[k], a->kwval[k]);
    if (kind == V_NS)
        for (size_t i = 0; i < d->dict.n; i++)
            if (d->dict.k[i]->kind == V_STR && d->dict.k[i]->str.n && d->dict.k[i]->str.s[0] == '_')
                rfail(r, "Chat templates cannot store underscore-prefixed attributes on a namespace, but got '%s'.",
                      d->dict.k[i]->str.s);
    return d;
}
static Value *g_dict(R *r, Value *self, Args *a) { (void)self; return dict_from(r, a, V_DICT); }
static Value *g_namespace(R *r, Value *self, Args *a) { (void)self; return dict_from(r, a, V_NS); }
static Value *g_raise(R *r, Value *self, Args *a) {
    (void)self;
    Value *m = arg_opt(a, 0, "message");
    rfail(r, "%s", m ? str_of(r, m)->str.s : "");
}
static Value *g_strftime_now(R *r, Value *self, Args *a) {
    (void)self;
    Value *fmt = want_str(r, arg_req(r, a, 0, "format", "strftime_now"), "format");
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    char buf[512];
    size_t n = fmt->str.n ? strftime(buf, sizeof buf, fmt->str.s, &tm) : 0;
    return vstr_copy(r, buf, n);
}

/* ---------------------------------------------------------------- names and frames */

static Frame *frame_new(R *r, Frame *parent) {
    Frame *f = ralloc(r, sizeof *f);
    f->vars = vdict(r, V_DICT);
    f->parent = parent;
    return f;
}
static Value *lookup(Frame *f, const char *name) {
    size_t n = strlen(name);
    for (; f; f = f->parent) {
        Value *v = dict_get_s(f->vars, name, n);
        if (v) return v;
    }
    return NULL;
}
/* Bind key (a string value, often made once at parse time so that loops
 * do not allocate a key per iteration) to v in frame f. */
static void frame_bind(R *r, Frame *f, Value *key, Value *v) {
    for (size_t i = 0; i < f->vars->dict.n; i++) {
        Value *k = f->vars->dict.k[i];
        if (k->str.n == key->str.n && memcmp(k->str.s, key->str.s, key->str.n) == 0) {
            f->vars->dict.v[i] = v;
            return;
        }
    }
    dict_set(r, f->vars, key, v);
}
static void frame_set(R *r, Frame *f, const char *name, Value *v) { frame_bind(r, f, vstr_c(r, name), v); }
static Value KEY_LOOP = {.kind = V_STR, .str = {"loop", 4}};

/* ---------------------------------------------------------------- expressions */

static Value *eval(R *r, Frame *f, const Node *e);

static void eval_args(R *r, Frame *f, const Node *e, Args *a, int lead) {
    a->npos = e->nkids + lead;
    a->pos = ralloc(r, (size_t)(a->npos + 1) * sizeof(Value *));
    for (int i = 0; i < e->nkids; i++) a->pos[lead + i] = eval(r, f, e->kids[i]);
    a->nkw = e->nkw;
    a->kwname = (const char **)e->kwname;
    a->kwval = ralloc(r, (size_t)(e->nkw + 1) * sizeof(Value *));
    for (int i = 0; i < e->nkw; i++) a->kwval[i] = eval(r, f, e->kwval[i]);
}

static Value *eval(R *r, Frame *f, const Node *e) {
    const Node *saved = r->at;
    r->at = e;
    Value *v;
    switch ((NKind)e->kind) {
    case E_CONST: v = e->value; break;
    case E_NAME:
        v = lookup(f, e->str);
        if (!v) v = vundef(r, "'%s' is undefined", e->str);
        break;
    case E_ATTR: {
        Value *o = eval(r, f, e->a);
        r->at = e;
        v = get_attr(r, o, e->str, strlen(e->str));
        break;
    }
    case E_ITEM: {
        Value *o = eval(r, f, e->a), *k = eval(r, f, e->b);
        r->at = e;
        v = get_item(r, o, k);
        break;
    }
    case E_SLICE: {
        Value *o = eval(r, f, e->a);
        Value *x = e->b ? eval(r, f, e->b) : NULL, *y = e->c ? eval(r, f, e->c) : NULL, *z = e->d ? eval(r, f, e->d) : NULL;
        r->at = e;
        v = do_slice(r, o, x, y, z);
        break;
    }
    case E_CALL: {
        Value *fn = eval(r, f, e->a);
        Args a;
        eval_args(r, f, e, &a, 0);
        r->at = e;
        v = call_value(r, fn, &a);
        break;
    }
    case E_FILTER: {
        Value *in = e->a ? eval(r, f, e->a) : NONE;
        Args a;
        eval_args(r, f, e, &a, 1);
        a.pos[0] = in;
        r->at = e;
        v = e->filter->fn(r, NULL, &a);
        break;
    }
    case E_TEST: {
        Value *in = eval(r, f, e->a);
        Args a;
        eval_args(r, f, e, &a, 0);
        r->at = e;
        int ok = e->test->fn(r, in, &a);
        v = vbool(e->op ? !ok : ok);
        break;
    }
    case E_BIN: {
        Value *x = eval(r, f, e->a), *y = eval(r, f, e->b);
        r->at = e;
        v = arith(r, e->op, x, y);
        break;
    }
    case E_NEG:
    case E_POS: {
        Value *x = eval(r, f, e->a);
        r->at = e;
        if (x->kind == V_UNDEF) undef_fail(r, x);
        if (e->kind == E_POS && is_num(x)) v = x->kind == V_BOOL ? vint(r, x->b) : x;
        else if (x->kind == V_FLOAT) v = vfloat(r, -x->f);
        else if (x->kind == V_INT || x->kind == V_BOOL) {
            if (num_i(x) == INT64_MIN) rfail(r, "integer overflow");
            v = vint(r, -num_i(x));
        } else rfail(r, "bad operand type for unary %c: '%s'", e->kind == E_NEG ? '-' : '+', type_name(x));
        break;
    }
    case E_NOT: v = vbool(!truthy(eval(r, f, e->a))); break;
    case E_AND:
        v = eval(r, f, e->a);
        if (truthy(v)) v = eval(r, f, e->b);
        break;
    case E_OR:
        v = eval(r, f, e->a);
        if (!truthy(v)) v = eval(r, f, e->b);
        break;
    case E_CMP: {
        Value *l = eval(r, f, e->a);
        v = vbool(true);
        for (int i = 0; i < e->nkids; i++) {
            Value *rv = eval(r, f, e->kids[i]);
            r->at = e;
            bool ok;
            switch (e->ops[i]) {
            case C_EQ: ok = py_eq(l, rv); break;
            case C_NE: ok = !py_eq(l, rv); break;
            case C_LT: ok = py_cmp(r, l, rv, "<") < 0; break;
            case C_LE: ok = py_cmp(r, l, rv, "<=") <= 0; break;
            case C_GT: ok = py_cmp(r, l, rv, ">") > 0; break;
            case C_GE: ok = py_cmp(r, l, rv, ">=") >= 0; break;
            case C_IN: ok = contains(r, rv, l); break;
            default: ok = !contains(r, rv, l); break;
            }
            if (!ok) {
                v = vbool(false);
                break;
            }
            l = rv;
        }
        break;
    }
    case E_COND:
        if (truthy(eval(r, f, e->a))) v = eval(r, f, e->b);
        else if (e->c) v = eval(r, f, e->c);
        else v = vundef(r, "the inline if-expression on line %d evaluated to false and no else section was defined.", e->line);
        break;
    case E_LIST:
    case E_TUPLE:
        v = vlist(r, (size_t)e->nkids);
        v->tuple = e->kind == E_TUPLE;
        for (int i = 0; i < e->nkids; i++) v->list.v[i] = eval(r, f, e->kids[i]);
        v->list.n = (size_t)e->nkids;
        break;
    case E_DICT:
        v = vdict(r, V_DICT);
        for (int i = 0; i < e->nkids; i++) {
            Value *k = eval(r, f, e->kids[i]), *x = eval(r, f, e->kwval[i]);
            if (k->kind == V_LIST && !k->tuple) rfail(r, "unhashable type: 'list'");
            if (k->kind == V_DICT || k->kind == V_NS) rfail(r, "unhashable type: 'dict'");
            dict_set(r, v, k, x);
        }
        break;
    case E_CONCAT: {
        SBuf *b = buf_push(r);
        for (int i = 0; i < e->nkids; i++) {
            to_str(r, b, eval(r, f, e->kids[i]), false, 0);
            check_out(r, b);
        }
        v = buf_pop_value(r);
        break;
    }
    default: rfail(r, "internal error: bad expression node %d", e->kind);
    }
    r->at = saved;
    return v;
}

/* ---------------------------------------------------------------- statements */

enum { FLOW_NEXT, FLOW_BREAK, FLOW_CONTINUE };

static int exec(R *r, Frame *f, const Node *s);

static void assign(R *r, Frame *f, const Node *target, Value *v) {
    if (target->kind == E_NAME) {
        frame_bind(r, f, target->value, v);
    } else if (target->kind == E_ATTR) {
        Value *ns = lookup(f, target->a->str);
        if (!ns || ns->kind != V_NS) rfail(r, "cannot assign attribute on non-namespace object");
        if (target->str[0] == '_')
            rfail(r, "Chat templates cannot store underscore-prefixed attributes on a namespace, but got '%s'.", target->str);
        dict_set_s(r, ns, target->str, v);
    } else { /* tuple unpacking */
        Value *items = iter_items(r, v);
        if ((int)items->list.n != target->nkids)
            rfail(r, items->list.n > (size_t)target->nkids ? "too many values to unpack (expected %d)"
                                                            : "not enough values to unpack (expected %d)",
                  target->nkids);
        for (int i = 0; i < target->nkids; i++) assign(r, f, target->kids[i], items->list.v[i]);
    }
}

/* Run a body with output captured; returns the text. */
static Value *capture(R *r, Frame *f, const Node *body) {
    SBuf *saved = r->out;
    r->out = buf_push(r);
    exec(r, f, body);
    r->out = saved;
    return buf_pop_value(r);
}

static Value *apply_filter_chain(R *r, Frame *f, const Node *chain, Value *in) {
    if (!chain) return in;
    Value *x = apply_filter_chain(r, f, chain->a, in);
    Args a;
    eval_args(r, f, chain, &a, 1);
    a.pos[0] = x;
    r->at = chain;
    return chain->filter->fn(r, NULL, &a);
}

static Value *call_macro(R *r, Value *m, Args *a, Value *caller) {
    const Node *def = m->macro.node;
    if (++r->depth > JINJA_MAX_DEPTH) rfail(r, "maximum recursion depth exceeded");
    Frame *f = frame_new(r, m->macro.closure);
    Value *varargs = vlist(r, 0), *kwargs = vdict(r, V_DICT);
    for (int i = 0; i < def->nkw; i++) {
        Value *v = i < a->npos ? a->pos[i] : NULL;
        for (int k = 0; k < a->nkw; k++)
            if (strcmp(a->kwname[k], def->kwname[i]) == 0) {
                if (v) rfail(r, "macro '%s' got multiple values for argument '%s'", def->str ? def->str : "caller", def->kwname[i]);
                v = a->kwval[k];
            }
        if (!v) v = def->kwval[i] ? eval(r, f, def->kwval[i]) : vundef(r, "parameter '%s' was not provided", def->kwname[i]);
        frame_set(r, f, def->kwname[i], v);
    }
    varargs->tuple = 1;
    for (int i = def->nkw; i < a->npos; i++) list_push(r, varargs, a->pos[i]);
    for (int k = 0; k < a->nkw; k++) {
        bool known = false;
        for (int i = 0; i < def->nkw; i++) known |= strcmp(a->kwname[k], def->kwname[i]) == 0;
        if (!known) dict_set_s(r, kwargs, a->kwname[k], a->kwval[k]);
    }
    frame_set(r, f, "varargs", varargs);
    frame_set(r, f, "kwargs", kwargs);
    if (caller) frame_set(r, f, "caller", caller);
    else if (m->macro.caller) frame_set(r, f, "caller", m->macro.caller);
    Value *out = capture(r, f, def->b);
    r->depth--;
    return out;
}

static int exec_for(R *r, Frame *f, const Node *s) {
    Value *it = eval(r, f, s->b);
    r->at = s;
    /* Lists are never mutated in place (the sandbox is immutable), so one can be looped over as is. */
    Value *items = it->kind == V_LIST ? it : iter_items(r, it);
    if (s->c) { /* `for x in xs if cond`: filter first, so loop.length counts what is kept */
        Value *kept = vlist(r, items->list.n);
        for (size_t i = 0; i < items->list.n; i++) {
            step(r);
            Frame *tf = frame_new(r, f);
            assign(r, tf, s->a, items->list.v[i]);
            if (truthy(eval(r, tf, s->c))) kept->list.v[kept->list.n++] = items->list.v[i];
        }
        items = kept;
    }
    /* Each iteration starts from a fresh scope (what the body sets does not
     * carry over, as in jinja2); one frame and one loop object are reused,
     * so long loops do not eat memory. */
    Frame *bf = frame_new(r, f);
    Value *lp = vnew(r, V_LOOP);
    lp->loop.items = items;
    for (size_t i = 0; i < items->list.n; i++) {
        step(r);
        bf->vars->dict.n = 0;
        lp->loop.i = i;
        frame_bind(r, bf, &KEY_LOOP, lp);
        r->at = s;
        assign(r, bf, s->a, items->list.v[i]);
        if (exec(r, bf, s->d) == FLOW_BREAK) break;
    }
    if (!items->list.n && s->nkids) exec(r, frame_new(r, f), s->kids[0]);
    return FLOW_NEXT;
}

static int exec(R *r, Frame *f, const Node *s) {
    r->at = s;
    switch ((NKind)s->kind) {
    case S_BODY:
        for (int i = 0; i < s->nkids; i++) {
            int fl = exec(r, f, s->kids[i]);
            if (fl != FLOW_NEXT) return fl;
        }
        return FLOW_NEXT;
    case S_TEXT:
        sbuf_put(r->out, s->str, s->len);
        check_out(r, r->out);
        return FLOW_NEXT;
    case S_PRINT:
        to_str(r, r->out, eval(r, f, s->a), false, 0);
        check_out(r, r->out);
        return FLOW_NEXT;
    case S_IF:
        for (const Node *c = s; c; c = c->c) {
            if (c->kind != S_IF) return exec(r, f, c); /* else body */
            if (truthy(eval(r, f, c->a))) return exec(r, f, c->b);
        }
        return FLOW_NEXT;
    case S_FOR: return exec_for(r, f, s);
    case S_SET: {
        Value *v = eval(r, f, s->b);
        r->at = s;
        assign(r, f, s->a, v);
        return FLOW_NEXT;
    }
    case S_SETBLOCK: {
        if (++r->depth > JINJA_MAX_DEPTH) rfail(r, "blocks nested too deeply");
        Value *v = apply_filter_chain(r, f, s->c, capture(r, f, s->b));
        r->depth--;
        r->at = s;
        assign(r, f, s->a, v);
        return FLOW_NEXT;
    }
    case S_FILTERBLOCK: {
        if (++r->depth > JINJA_MAX_DEPTH) rfail(r, "blocks nested too deeply");
        Value *v = apply_filter_chain(r, f, s->c, capture(r, f, s->b));
        r->depth--;
        to_str(r, r->out, v, false, 0);
        check_out(r, r->out);
        return FLOW_NEXT;
    }
    case S_MACRO: {
        Value *m = vnew(r, V_MACRO);
        m->macro.node = s;
        m->macro.closure = f;
        frame_set(r, f, s->str, m);
        return FLOW_NEXT;
    }
    case S_CALLBLOCK: {
        Value *caller = vnew(r, V_MACRO);
        caller->macro.node = s;
        caller->macro.closure = f;
        const Node *call = s->a;
        Value *fn = eval(r, f, call->a);
        Args a;
        eval_args(r, f, call, &a, 0);
        r->at = s;
        if (fn->kind != V_MACRO) return to_str(r, r->out, call_value(r, fn, &a), false, 0), FLOW_NEXT;
        to_str(r, r->out, call_macro(r, fn, &a, caller), false, 0);
        check_out(r, r->out);
        return FLOW_NEXT;
    }
    case S_WITH: {
        Frame *wf = frame_new(r, f);
        for (int i = 0; i < s->nkids; i++) assign(r, wf, s->kids[i], eval(r, f, s->kwval[i]));
        return exec(r, wf, s->b);
    }
    case S_BREAK: return FLOW_BREAK;
    case S_CONTINUE: return FLOW_CONTINUE;
    default: rfail(r, "internal error: bad statement node %d", s->kind);
    }
}

/* ---------------------------------------------------------------- entry point */

static void add_global(R *r, Frame *g, const char *name, BuiltinFn fn) {
    Value *v = vnew(r, V_FUNC);
    v->func.fn = fn;
    v->func.name = name;
    frame_set(r, g, name, v);
}

char *jinja_render(const JinjaTemplate *t, const cJSON *context, size_t *len_out, char *err, size_t errlen) {
    R *r = xcalloc(1, sizeof *r);
    r->t = t;
    r->err = err;
    r->errlen = errlen;
    r->arena.limit = JINJA_MAX_MEMORY;
    SBuf out;
    sbuf_init(&out);
    char *result = NULL;
    if (setjmp(r->jb)) {
        for (int i = 0; i < r->nbufs; i++) sbuf_free(r->bufs[i]);
        sbuf_free(&out);
        arena_free(&r->arena);
        free(r);
        return NULL;
    }
    r->out = &out;
    Frame *builtins = frame_new(r, NULL);
    add_global(r, builtins, "range", g_range);
    add_global(r, builtins, "dict", g_dict);
    add_global(r, builtins, "namespace", g_namespace);
    add_global(r, builtins, "raise_exception", g_raise);
    add_global(r, builtins, "strftime_now", g_strftime_now);
    Frame *ctx = frame_new(r, builtins);
    if (context && cJSON_IsObject(context))
        for (const cJSON *c = context->child; c; c = c->next)
            if (c->string) frame_set(r, ctx, c->string, from_json(r, c));
    Frame *root = frame_new(r, ctx);
    exec(r, root, t->body);
    sbuf_putc(&out, 0); /* make data non-NULL even when empty */
    out.len--;
    if (len_out) *len_out = out.len;
    result = out.data;
    arena_free(&r->arena);
    free(r);
    return result;
}
