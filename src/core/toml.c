/* toml.c — TOML 1.0 reader (see toml.h for what maps to what).
 *
 * A recursive-descent reader over a length-delimited buffer. The whole text
 * is checked for valid UTF-8 and stray control characters first, so the rest
 * of the reader can treat every byte it meets as allowed text.
 *
 * TOML's "a table is defined once" rules need a little state per table;
 * it is kept in spare bits of each cJSON node's type (cJSON ignores bits it
 * does not know, json.h uses 1 << 12 for floats) and cleared before the tree
 * is handed out.
 */
#include "core/toml.h"

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/json.h"
#include "core/sbuf.h"

enum {
    TOML_DEFINED = 1 << 13, /* opened by a [header] or [[header]] */
    TOML_DOTTED = 1 << 14,  /* created or extended through a dotted key */
    TOML_SEALED = 1 << 15,  /* an inline table: closed to later additions */
    TOML_AOT = 1 << 16,     /* an array made by [[header]]: may grow */
    TOML_MARKS = TOML_DEFINED | TOML_DOTTED | TOML_SEALED | TOML_AOT,
};

enum { TOML_MAX_KEY_PARTS = 64, TOML_MAX_NESTING = 64 };

typedef struct {
    const char *s;
    size_t len;
    size_t pos;
    const char *name;
    char *err;
    size_t errlen;
    bool failed;
    int nesting; /* open arrays and inline tables */
} Toml;

/* A dotted key, each part with the offset where it starts (for messages). */
typedef struct {
    char *parts[TOML_MAX_KEY_PARTS];
    size_t at[TOML_MAX_KEY_PARTS];
    int n;
} TomlKey;

/* ---- errors ---- */

/* Record the first error only: later ones are consequences of it. */
static void toml_fail(Toml *t, size_t at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void toml_fail(Toml *t, size_t at, const char *fmt, ...) {
    if (t->failed) return;
    t->failed = true;
    if (!t->err || t->errlen == 0) return;
    int line = 1, col = 1;
    for (size_t i = 0; i < at && i < t->len; i++) {
        unsigned char c = (unsigned char)t->s[i];
        if (c == '\n') {
            line++;
            col = 1;
        } else if ((c & 0xC0) != 0x80) {
            col++;
        }
    }
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(t->err, t->errlen, "%s:%d:%d: %s", t->name, line, col, msg);
}

/* cJSON returns NULL only when out of memory. */
static cJSON *toml_node(cJSON *v) {
    if (!v) die_runtime("out of memory while building a TOML tree");
    return v;
}

static void toml_add(cJSON *obj, const char *key, cJSON *v) {
    if (!cJSON_AddItemToObject(obj, key, v)) die_runtime("out of memory while building a TOML tree");
}

/* "a.b.c" from the first n parts of a key, for messages. */
static const char *toml_key_str(const TomlKey *k, int n, char *buf, size_t size) {
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < n && used + 1 < size; i++) {
        int w = snprintf(buf + used, size - used, "%s%s", i ? "." : "", k->parts[i]);
        if (w < 0) break;
        used += (size_t)w;
    }
    return buf;
}

/* ---- characters ---- */

static int toml_peek(const Toml *t, size_t off) {
    size_t i = t->pos + off;
    return i < t->len ? (unsigned char)t->s[i] : -1;
}

static bool toml_is_digit(int c) { return c >= '0' && c <= '9'; }

static bool toml_is_bare(int c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || toml_is_digit(c) || c == '_' || c == '-';
}

static bool toml_at_newline(const Toml *t) {
    int c = toml_peek(t, 0);
    return c == '\n' || (c == '\r' && toml_peek(t, 1) == '\n');
}

static void toml_skip_newline(Toml *t) { t->pos += toml_peek(t, 0) == '\r' ? 2 : 1; }

static void toml_skip_ws(Toml *t) {
    while (toml_peek(t, 0) == ' ' || toml_peek(t, 0) == '\t') t->pos++;
}

static void toml_skip_comment(Toml *t) {
    if (toml_peek(t, 0) != '#') return;
    while (t->pos < t->len && !toml_at_newline(t)) t->pos++;
}

/* The blank space allowed between array elements: newlines and comments too. */
static void toml_skip_blank(Toml *t) {
    for (;;) {
        toml_skip_ws(t);
        if (toml_peek(t, 0) == '#') {
            toml_skip_comment(t);
        } else if (toml_at_newline(t)) {
            toml_skip_newline(t);
        } else {
            return;
        }
    }
}

/* Whitespace, an optional comment, then a newline or the end of the text. */
static bool toml_expect_eol(Toml *t, const char *after) {
    toml_skip_ws(t);
    toml_skip_comment(t);
    if (t->pos >= t->len) return true;
    if (toml_at_newline(t)) {
        toml_skip_newline(t);
        return true;
    }
    toml_fail(t, t->pos, "expected a newline or a comment after %s", after);
    return false;
}

/* TOML text must be UTF-8, and control characters other than tab and
 * newline (LF or CRLF) may appear nowhere unescaped: not in strings, not in
 * comments, not between tokens. Checking once up front keeps every later
 * scanner simple. */
static bool toml_check_text(Toml *t) {
    const unsigned char *s = (const unsigned char *)t->s;
    size_t n = t->len;
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        if (c < 0x80) {
            if (c == '\r' && !(i + 1 < n && s[i + 1] == '\n')) {
                toml_fail(t, i, "a carriage return must be followed by a newline");
                return false;
            }
            if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7F) {
                toml_fail(t, i, "control character U+%04X is not allowed (use an escape in a basic string)", c);
                return false;
            }
            i++;
            continue;
        }
        size_t extra;
        uint32_t cp, min;
        if ((c & 0xE0) == 0xC0) {
            extra = 1, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            extra = 2, cp = c & 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            extra = 3, cp = c & 0x07, min = 0x10000;
        } else {
            toml_fail(t, i, "invalid UTF-8 byte 0x%02X", c);
            return false;
        }
        for (size_t k = 1; k <= extra; k++) {
            if (i + k >= n || (s[i + k] & 0xC0) != 0x80) {
                toml_fail(t, i, "invalid UTF-8 sequence starting with byte 0x%02X", c);
                return false;
            }
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
            toml_fail(t, i, "invalid UTF-8 sequence starting with byte 0x%02X", c);
            return false;
        }
        i += extra + 1;
    }
    return true;
}

/* ---- strings ---- */

static void toml_put_utf8(SBuf *b, uint32_t cp) {
    if (cp < 0x80) {
        sbuf_putc(b, (char)cp);
    } else if (cp < 0x800) {
        sbuf_putc(b, (char)(0xC0 | (cp >> 6)));
        sbuf_putc(b, (char)(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
        sbuf_putc(b, (char)(0xE0 | (cp >> 12)));
        sbuf_putc(b, (char)(0x80 | ((cp >> 6) & 0x3F)));
        sbuf_putc(b, (char)(0x80 | (cp & 0x3F)));
    } else {
        sbuf_putc(b, (char)(0xF0 | (cp >> 18)));
        sbuf_putc(b, (char)(0x80 | ((cp >> 12) & 0x3F)));
        sbuf_putc(b, (char)(0x80 | ((cp >> 6) & 0x3F)));
        sbuf_putc(b, (char)(0x80 | (cp & 0x3F)));
    }
}

static int toml_hex_value(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* \uXXXX or \UXXXXXXXX; pos is on the letter, `at` on the backslash. */
static bool toml_unicode_escape(Toml *t, size_t at, SBuf *b) {
    int letter = toml_peek(t, 0);
    int digits = letter == 'u' ? 4 : 8;
    t->pos++;
    uint32_t cp = 0;
    for (int i = 0; i < digits; i++) {
        int h = toml_hex_value(toml_peek(t, 0));
        if (h < 0) {
            toml_fail(t, at, "expected %d hexadecimal digits after '\\%c'", digits, letter);
            return false;
        }
        cp = cp * 16 + (uint32_t)h;
        t->pos++;
    }
    if (cp == 0) {
        toml_fail(t, at, "the NUL character (\\%c0000) is not supported in strings", letter);
        return false;
    }
    if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
        toml_fail(t, at, "escape '\\%c' names U+%X, which is not a Unicode scalar value", letter, cp);
        return false;
    }
    toml_put_utf8(b, cp);
    return true;
}

/* One escape sequence of a basic string; pos is on the backslash. */
static bool toml_escape(Toml *t, SBuf *b) {
    size_t at = t->pos++;
    int c = toml_peek(t, 0);
    char out;
    switch (c) {
    case 'b': out = '\b'; break;
    case 't': out = '\t'; break;
    case 'n': out = '\n'; break;
    case 'f': out = '\f'; break;
    case 'r': out = '\r'; break;
    case '"': out = '"'; break;
    case '\\': out = '\\'; break;
    case 'u':
    case 'U': return toml_unicode_escape(t, at, b);
    case -1: toml_fail(t, at, "unterminated string"); return false;
    default:
        if (c > ' ' && c < 0x7F) {
            toml_fail(t, at, "invalid escape sequence '\\%c'", c);
        } else {
            toml_fail(t, at, "invalid escape sequence (expected one of \\b \\t \\n \\f \\r \\\" \\\\ \\u \\U)");
        }
        return false;
    }
    sbuf_putc(b, out);
    t->pos++;
    return true;
}

/* "..." on one line; pos is on the opening quote. */
static char *toml_basic_string(Toml *t) {
    size_t start = t->pos++;
    SBuf b;
    sbuf_init(&b);
    for (;;) {
        int c = toml_peek(t, 0);
        if (c == -1 || c == '\n' || c == '\r') {
            toml_fail(t, start, "unterminated string (expected '\"' before the end of the line)");
            sbuf_free(&b);
            return NULL;
        }
        if (c == '"') break;
        if (c == '\\') {
            if (!toml_escape(t, &b)) {
                sbuf_free(&b);
                return NULL;
            }
            continue;
        }
        sbuf_putc(&b, (char)c);
        t->pos++;
    }
    t->pos++;
    return sbuf_take(&b);
}

/* '...' on one line, no escapes; pos is on the opening quote. */
static char *toml_literal_string(Toml *t) {
    size_t start = t->pos++;
    size_t from = t->pos;
    for (;;) {
        int c = toml_peek(t, 0);
        if (c == -1 || c == '\n' || c == '\r') {
            toml_fail(t, start, "unterminated literal string (expected \"'\" before the end of the line)");
            return NULL;
        }
        if (c == '\'') break;
        t->pos++;
    }
    char *s = xstrndup(t->s + from, t->pos - from);
    t->pos++;
    return s;
}

/* A run of quote characters inside a multi-line string: up to two may sit
 * right before the closing three. Returns true when the string ended. */
static bool toml_ml_quotes(Toml *t, int quote, SBuf *b, bool *bad) {
    size_t n = 0;
    while (toml_peek(t, n) == quote) n++;
    *bad = false;
    if (n < 3) {
        for (size_t i = 0; i < n; i++) sbuf_putc(b, (char)quote);
        t->pos += n;
        return false;
    }
    if (n > 5) {
        toml_fail(t, t->pos, "too many quotes in a row in a multi-line string (escape some)");
        *bad = true;
        return true;
    }
    for (size_t i = 3; i < n; i++) sbuf_putc(b, (char)quote);
    t->pos += n;
    return true;
}

/* """...""" or '''...'''; pos is on the first of the three quotes. A newline
 * right after the opening quotes is dropped; CRLF becomes LF, as Python's
 * text-mode read gives. */
static char *toml_ml_string(Toml *t, bool basic) {
    int quote = basic ? '"' : '\'';
    size_t start = t->pos;
    t->pos += 3;
    if (toml_at_newline(t)) toml_skip_newline(t);
    SBuf b;
    sbuf_init(&b);
    for (;;) {
        int c = toml_peek(t, 0);
        if (c == -1) {
            toml_fail(t, start, "unterminated multi-line string (expected %s)", basic ? "'\"\"\"'" : "\"'''\"");
            goto fail;
        }
        if (c == quote) {
            bool bad;
            if (toml_ml_quotes(t, quote, &b, &bad)) {
                if (bad) goto fail;
                break;
            }
            continue;
        }
        if (toml_at_newline(t)) {
            sbuf_putc(&b, '\n');
            toml_skip_newline(t);
            continue;
        }
        if (basic && c == '\\') {
            int d = toml_peek(t, 1);
            if (d == ' ' || d == '\t' || d == '\n' || d == '\r') {
                /* Line-ending backslash: drop it and all blank space after. */
                size_t at = t->pos++;
                toml_skip_ws(t);
                if (!toml_at_newline(t)) {
                    toml_fail(t, at, "invalid escape sequence '\\ ' (a line-ending backslash must end its line)");
                    goto fail;
                }
                while (toml_at_newline(t) || toml_peek(t, 0) == ' ' || toml_peek(t, 0) == '\t') {
                    if (toml_at_newline(t)) {
                        toml_skip_newline(t);
                    } else {
                        t->pos++;
                    }
                }
                continue;
            }
            if (!toml_escape(t, &b)) goto fail;
            continue;
        }
        sbuf_putc(&b, (char)c);
        t->pos++;
    }
    return sbuf_take(&b);
fail:
    sbuf_free(&b);
    return NULL;
}

static cJSON *toml_string_value(Toml *t) {
    int q = toml_peek(t, 0);
    bool multi = toml_peek(t, 1) == q && toml_peek(t, 2) == q;
    char *s;
    if (multi) {
        s = toml_ml_string(t, q == '"');
    } else {
        s = q == '"' ? toml_basic_string(t) : toml_literal_string(t);
    }
    if (!s) return NULL;
    cJSON *v = toml_node(cJSON_CreateString(s));
    free(s);
    return v;
}

/* ---- keys ---- */

static void toml_key_free(TomlKey *k) {
    for (int i = 0; i < k->n; i++) free(k->parts[i]);
    k->n = 0;
}

static bool toml_simple_key(Toml *t, TomlKey *k) {
    size_t at = t->pos;
    if (k->n == TOML_MAX_KEY_PARTS) {
        toml_fail(t, at, "a key may have at most %d dotted parts", TOML_MAX_KEY_PARTS);
        return false;
    }
    int c = toml_peek(t, 0);
    char *s;
    if (c == '"') {
        s = toml_basic_string(t);
    } else if (c == '\'') {
        s = toml_literal_string(t);
    } else if (toml_is_bare(c)) {
        while (toml_is_bare(toml_peek(t, 0))) t->pos++;
        s = xstrndup(t->s + at, t->pos - at);
    } else {
        toml_fail(t, at, "expected a key (bare, \"quoted\" or 'literal')");
        return false;
    }
    if (!s) return false;
    k->parts[k->n] = s;
    k->at[k->n] = at;
    k->n++;
    return true;
}

/* key ( '.' key )*, with blank space allowed around the dots. */
static bool toml_key(Toml *t, TomlKey *k) {
    for (;;) {
        if (!toml_simple_key(t, k)) return false;
        toml_skip_ws(t);
        if (toml_peek(t, 0) != '.') return true;
        t->pos++;
        toml_skip_ws(t);
    }
}

/* ---- numbers ---- */

/* One or more digits of `base`, single underscores allowed between digits;
 * the digits (without underscores) go to out. */
static bool toml_scan_digits(const char **q, int base, SBuf *out) {
    const char *p = *q;
    int d = toml_hex_value((unsigned char)*p);
    if (d < 0 || d >= base) return false;
    for (;;) {
        d = toml_hex_value((unsigned char)*p);
        if (d >= 0 && d < base) {
            sbuf_putc(out, *p++);
            continue;
        }
        if (*p != '_') break;
        int next = toml_hex_value((unsigned char)p[1]);
        if (next < 0 || next >= base) break;
        p++;
    }
    *q = p;
    return true;
}

/* Digits to an int64 magnitude; false when it does not fit under limit. */
static bool toml_accumulate(const char *digits, int base, uint64_t limit, uint64_t *out) {
    uint64_t v = 0;
    for (const char *p = digits; *p; p++) {
        uint64_t d = (uint64_t)toml_hex_value((unsigned char)*p);
        if (v > (limit - d) / (uint64_t)base) return false;
        v = v * (uint64_t)base + d;
    }
    *out = v;
    return true;
}

static cJSON *toml_based_int(Toml *t, size_t at, const char *p, const char *tok) {
    int base = p[1] == 'x' ? 16 : p[1] == 'o' ? 8 : 2;
    const char *q = p + 2;
    SBuf digits;
    sbuf_init(&digits);
    cJSON *v = NULL;
    uint64_t mag;
    if (!toml_scan_digits(&q, base, &digits) || *q) {
        toml_fail(t, at, "invalid base-%d integer '%s' (digits, with single underscores between them)", base, tok);
    } else if (!toml_accumulate(digits.data, base, INT64_MAX, &mag)) {
        toml_fail(t, at, "integer '%s' does not fit in 64 bits", tok);
    } else {
        v = toml_node(json_int((double)mag));
    }
    sbuf_free(&digits);
    return v;
}

/* A decimal integer or float from its token (a run of number characters). */
static cJSON *toml_decimal(Toml *t, size_t at, const char *tok) {
    const char *p = tok;
    bool neg = *p == '-';
    if (*p == '+' || *p == '-') p++;
    if (!strcmp(p, "inf")) return toml_node(json_float(neg ? -INFINITY : INFINITY));
    if (!strcmp(p, "nan")) return toml_node(json_float(NAN));
    if (p[0] == '0' && (p[1] == 'x' || p[1] == 'o' || p[1] == 'b')) {
        if (p != tok) {
            toml_fail(t, at, "hexadecimal, octal and binary integers take no sign");
            return NULL;
        }
        return toml_based_int(t, at, p, tok);
    }
    SBuf num;
    sbuf_init(&num);
    cJSON *v = NULL;
    const char *q = p;
    bool is_float = false, ok = toml_scan_digits(&q, 10, &num);
    if (ok && num.len > 1 && num.data[0] == '0') {
        toml_fail(t, at, "leading zeros are not allowed in '%s'", tok);
        goto out;
    }
    if (ok && *q == '.') {
        is_float = true;
        sbuf_putc(&num, *q++);
        ok = toml_scan_digits(&q, 10, &num);
    }
    if (ok && (*q == 'e' || *q == 'E')) {
        is_float = true;
        sbuf_putc(&num, *q++);
        if (*q == '+' || *q == '-') sbuf_putc(&num, *q++);
        ok = toml_scan_digits(&q, 10, &num);
    }
    if (!ok || *q) {
        if (strchr(tok, '_')) {
            toml_fail(t, at, "invalid number '%s' (an underscore must sit between two digits)", tok);
        } else {
            toml_fail(t, at, "invalid number '%s'", tok);
        }
        goto out;
    }
    if (is_float) {
        double d = strtod(num.data, NULL);
        v = toml_node(json_float(neg ? -d : d));
    } else {
        uint64_t mag;
        if (!toml_accumulate(num.data, 10, neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX, &mag)) {
            toml_fail(t, at, "integer '%s' does not fit in 64 bits", tok);
            goto out;
        }
        double d = (double)mag;
        v = toml_node(json_int(neg && mag ? -d : d));
    }
out:
    sbuf_free(&num);
    return v;
}

static bool toml_is_number_char(int c) {
    return toml_is_bare(c) || c == '+' || c == '.';
}

static cJSON *toml_number(Toml *t) {
    size_t at = t->pos, end = t->pos;
    while (end < t->len && toml_is_number_char((unsigned char)t->s[end])) end++;
    char *tok = xstrndup(t->s + at, end - at);
    cJSON *v = toml_decimal(t, at, tok);
    free(tok);
    if (v) t->pos = end;
    return v;
}

/* ---- dates and times ---- */

/* Exactly n decimal digits. */
static bool toml_fixed_digits(Toml *t, int n, int *out) {
    int v = 0;
    for (int i = 0; i < n; i++) {
        int c = toml_peek(t, (size_t)i);
        if (!toml_is_digit(c)) return false;
        v = v * 10 + (c - '0');
    }
    t->pos += (size_t)n;
    *out = v;
    return true;
}

static bool toml_expect_char(Toml *t, int c) {
    if (toml_peek(t, 0) != c) return false;
    t->pos++;
    return true;
}

static int toml_days_in_month(int year, int month) {
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    return month == 2 && leap ? 29 : days[month - 1];
}

/* HH:MM:SS with an optional fraction. */
static bool toml_time(Toml *t, size_t at) {
    int h, m, s;
    if (!toml_fixed_digits(t, 2, &h) || !toml_expect_char(t, ':') || !toml_fixed_digits(t, 2, &m) ||
        !toml_expect_char(t, ':') || !toml_fixed_digits(t, 2, &s)) {
        toml_fail(t, at, "invalid time (expected HH:MM:SS)");
        return false;
    }
    if (h > 23 || m > 59 || s > 60) {
        toml_fail(t, at, "time out of range (hours 00-23, minutes 00-59, seconds 00-60)");
        return false;
    }
    if (toml_peek(t, 0) == '.') {
        t->pos++;
        if (!toml_is_digit(toml_peek(t, 0))) {
            toml_fail(t, at, "expected digits after the decimal point of a time");
            return false;
        }
        while (toml_is_digit(toml_peek(t, 0))) t->pos++;
    }
    return true;
}

/* Z or +HH:MM / -HH:MM after a date-time, when present. */
static bool toml_offset(Toml *t, size_t at) {
    int c = toml_peek(t, 0);
    if (c == 'Z' || c == 'z') {
        t->pos++;
        return true;
    }
    if (c != '+' && c != '-') return true;
    t->pos++;
    int h, m;
    if (!toml_fixed_digits(t, 2, &h) || !toml_expect_char(t, ':') || !toml_fixed_digits(t, 2, &m)) {
        toml_fail(t, at, "invalid time offset (expected Z or +HH:MM)");
        return false;
    }
    if (h > 23 || m > 59) {
        toml_fail(t, at, "time offset out of range");
        return false;
    }
    return true;
}

/* Date-times are kept as their literal text (see toml.h). */
static cJSON *toml_datetime(Toml *t) {
    size_t at = t->pos;
    if (toml_peek(t, 2) == ':') {
        if (!toml_time(t, at)) return NULL;
    } else {
        int y, m, d;
        if (!toml_fixed_digits(t, 4, &y) || !toml_expect_char(t, '-') || !toml_fixed_digits(t, 2, &m) ||
            !toml_expect_char(t, '-') || !toml_fixed_digits(t, 2, &d)) {
            toml_fail(t, at, "invalid date (expected YYYY-MM-DD)");
            return NULL;
        }
        if (m < 1 || m > 12 || d < 1 || d > toml_days_in_month(y, m)) {
            toml_fail(t, at, "date out of range (no such day)");
            return NULL;
        }
        int c = toml_peek(t, 0);
        bool spaced_time = c == ' ' && toml_is_digit(toml_peek(t, 1)) && toml_is_digit(toml_peek(t, 2)) &&
                           toml_peek(t, 3) == ':';
        if (c == 'T' || c == 't' || spaced_time) {
            t->pos++;
            if (!toml_time(t, at) || !toml_offset(t, at)) return NULL;
        }
    }
    char *s = xstrndup(t->s + at, t->pos - at);
    cJSON *v = toml_node(cJSON_CreateString(s));
    free(s);
    return v;
}

static bool toml_looks_like_datetime(const Toml *t) {
    bool date = toml_is_digit(toml_peek(t, 0)) && toml_is_digit(toml_peek(t, 1)) && toml_is_digit(toml_peek(t, 2)) &&
                toml_is_digit(toml_peek(t, 3)) && toml_peek(t, 4) == '-';
    bool time = toml_is_digit(toml_peek(t, 0)) && toml_is_digit(toml_peek(t, 1)) && toml_peek(t, 2) == ':';
    return date || time;
}

/* ---- values ---- */

static cJSON *toml_value(Toml *t);
static bool toml_keyval(Toml *t, cJSON *table);

static bool toml_match_word(Toml *t, const char *w) {
    size_t n = strlen(w);
    if (t->len - t->pos < n || memcmp(t->s + t->pos, w, n) != 0) return false;
    t->pos += n;
    return true;
}

static bool toml_enter(Toml *t, size_t at) {
    if (t->nesting >= TOML_MAX_NESTING) {
        toml_fail(t, at, "arrays and inline tables nest more than %d deep", TOML_MAX_NESTING);
        return false;
    }
    t->nesting++;
    return true;
}

/* [ v, v, ... ] across lines, comments allowed, trailing comma allowed. */
static cJSON *toml_array(Toml *t) {
    size_t at = t->pos;
    if (!toml_enter(t, at)) return NULL;
    t->pos++;
    cJSON *arr = toml_node(cJSON_CreateArray());
    for (;;) {
        toml_skip_blank(t);
        if (toml_peek(t, 0) == ']') break;
        cJSON *v = toml_value(t);
        if (!v) goto fail;
        cJSON_AddItemToArray(arr, v);
        toml_skip_blank(t);
        if (toml_peek(t, 0) == ',') {
            t->pos++;
            continue;
        }
        if (toml_peek(t, 0) == ']') break;
        if (toml_peek(t, 0) == -1) {
            toml_fail(t, at, "unterminated array (expected ']')");
        } else {
            toml_fail(t, t->pos, "expected ',' or ']' after an array element");
        }
        goto fail;
    }
    t->pos++;
    t->nesting--;
    return arr;
fail:
    t->nesting--;
    cJSON_Delete(arr);
    return NULL;
}

/* { k = v, k = v } on one line, no trailing comma (TOML 1.0); sealed after. */
static cJSON *toml_inline_table(Toml *t) {
    size_t at = t->pos;
    if (!toml_enter(t, at)) return NULL;
    t->pos++;
    cJSON *tab = toml_node(cJSON_CreateObject());
    toml_skip_ws(t);
    if (toml_peek(t, 0) != '}') {
        for (;;) {
            toml_skip_ws(t);
            if (!toml_keyval(t, tab)) goto fail;
            toml_skip_ws(t);
            if (toml_peek(t, 0) == ',') {
                t->pos++;
                continue;
            }
            if (toml_peek(t, 0) == '}') break;
            toml_fail(t, t->pos, "expected ',' or '}' in an inline table (inline tables stay on one line)");
            goto fail;
        }
    }
    t->pos++;
    t->nesting--;
    tab->type |= TOML_SEALED;
    return tab;
fail:
    t->nesting--;
    cJSON_Delete(tab);
    return NULL;
}

static cJSON *toml_value(Toml *t) {
    int c = toml_peek(t, 0);
    switch (c) {
    case '"':
    case '\'': return toml_string_value(t);
    case '[': return toml_array(t);
    case '{': return toml_inline_table(t);
    case 't':
        if (toml_match_word(t, "true")) return toml_node(cJSON_CreateTrue());
        break;
    case 'f':
        if (toml_match_word(t, "false")) return toml_node(cJSON_CreateFalse());
        break;
    default: break;
    }
    if (toml_looks_like_datetime(t)) return toml_datetime(t);
    if (toml_is_digit(c) || c == '+' || c == '-' || c == 'i' || c == 'n') return toml_number(t);
    toml_fail(t, t->pos, "expected a value (string, number, boolean, date, array or inline table)");
    return NULL;
}

/* ---- tables ---- */

/* Put v at the dotted key k below table. Intermediate parts create tables
 * or extend ones that are neither sealed nor opened by a [header]; the last
 * part must be new. Takes v on success only. */
static bool toml_insert(Toml *t, cJSON *table, const TomlKey *k, cJSON *v) {
    char path[256];
    cJSON *cur = table;
    for (int i = 0; i + 1 < k->n; i++) {
        cJSON *child = cJSON_GetObjectItemCaseSensitive(cur, k->parts[i]);
        if (!child) {
            child = toml_node(cJSON_CreateObject());
            toml_add(cur, k->parts[i], child);
        } else if (!cJSON_IsObject(child) || (child->type & (TOML_SEALED | TOML_DEFINED))) {
            toml_fail(t, k->at[i], "key '%s' is already defined; a dotted key cannot add to it",
                      toml_key_str(k, i + 1, path, sizeof path));
            return false;
        }
        child->type |= TOML_DOTTED;
        cur = child;
    }
    const char *last = k->parts[k->n - 1];
    if (cJSON_GetObjectItemCaseSensitive(cur, last)) {
        toml_fail(t, k->at[k->n - 1], "duplicate key '%s'", toml_key_str(k, k->n, path, sizeof path));
        return false;
    }
    toml_add(cur, last, v);
    return true;
}

/* key = value, into table (pos is on the key). */
static bool toml_keyval(Toml *t, cJSON *table) {
    TomlKey k;
    k.n = 0;
    cJSON *v = NULL;
    bool ok = false;
    if (!toml_key(t, &k)) goto out;
    if (toml_peek(t, 0) != '=') {
        toml_fail(t, t->pos, "expected '=' after a key");
        goto out;
    }
    t->pos++;
    toml_skip_ws(t);
    v = toml_value(t);
    if (!v) goto out;
    if (toml_insert(t, table, &k, v)) {
        v = NULL;
        ok = true;
    }
out:
    cJSON_Delete(v);
    toml_key_free(&k);
    return ok;
}

static cJSON *toml_last_item(cJSON *arr) {
    cJSON *it = arr->child;
    while (it && it->next) it = it->next;
    return it;
}

/* Walk the parts of a header before its last, creating tables as needed and
 * stepping into the newest element of arrays of tables. */
static cJSON *toml_header_parent(Toml *t, cJSON *root, const TomlKey *k) {
    char path[256];
    cJSON *cur = root;
    for (int i = 0; i + 1 < k->n; i++) {
        cJSON *child = cJSON_GetObjectItemCaseSensitive(cur, k->parts[i]);
        if (!child) {
            child = toml_node(cJSON_CreateObject());
            toml_add(cur, k->parts[i], child);
        } else if (cJSON_IsArray(child) && (child->type & TOML_AOT)) {
            child = toml_last_item(child);
        } else if (!cJSON_IsObject(child) || (child->type & TOML_SEALED)) {
            toml_fail(t, k->at[i], "key '%s' is already defined as a value, not a table",
                      toml_key_str(k, i + 1, path, sizeof path));
            return NULL;
        }
        cur = child;
    }
    return cur;
}

/* [a.b.c]: the table c, new or so far only implied by other headers. */
static cJSON *toml_open_table(Toml *t, cJSON *root, const TomlKey *k) {
    char path[256];
    cJSON *parent = toml_header_parent(t, root, k);
    if (!parent) return NULL;
    const char *last = k->parts[k->n - 1];
    cJSON *tab = cJSON_GetObjectItemCaseSensitive(parent, last);
    if (!tab) {
        tab = toml_node(cJSON_CreateObject());
        toml_add(parent, last, tab);
    } else if (!cJSON_IsObject(tab) || (tab->type & (TOML_DEFINED | TOML_DOTTED | TOML_SEALED))) {
        toml_fail(t, k->at[k->n - 1], "table '%s' is already defined", toml_key_str(k, k->n, path, sizeof path));
        return NULL;
    }
    tab->type |= TOML_DEFINED;
    return tab;
}

/* [[a.b.c]]: a new table appended to the array of tables c. */
static cJSON *toml_open_array_table(Toml *t, cJSON *root, const TomlKey *k) {
    char path[256];
    cJSON *parent = toml_header_parent(t, root, k);
    if (!parent) return NULL;
    const char *last = k->parts[k->n - 1];
    cJSON *arr = cJSON_GetObjectItemCaseSensitive(parent, last);
    if (!arr) {
        arr = toml_node(cJSON_CreateArray());
        arr->type |= TOML_AOT;
        toml_add(parent, last, arr);
    } else if (!cJSON_IsArray(arr) || !(arr->type & TOML_AOT)) {
        toml_fail(t, k->at[k->n - 1], "key '%s' is already defined and is not an array of tables",
                  toml_key_str(k, k->n, path, sizeof path));
        return NULL;
    }
    cJSON *tab = toml_node(cJSON_CreateObject());
    tab->type |= TOML_DEFINED;
    cJSON_AddItemToArray(arr, tab);
    return tab;
}

/* [header] or [[header]]; returns the table that following keys go into. */
static cJSON *toml_header(Toml *t, cJSON *root) {
    bool array = toml_peek(t, 1) == '[';
    t->pos += array ? 2 : 1;
    toml_skip_ws(t);
    TomlKey k;
    k.n = 0;
    cJSON *table = NULL;
    if (!toml_key(t, &k)) goto out;
    if (toml_peek(t, 0) != ']' || (array && toml_peek(t, 1) != ']')) {
        toml_fail(t, t->pos, array ? "expected ']]' to close the array-of-tables header" : "expected ']' to close the table header");
        goto out;
    }
    t->pos += array ? 2 : 1;
    table = array ? toml_open_array_table(t, root, &k) : toml_open_table(t, root, &k);
out:
    toml_key_free(&k);
    return table;
}

static void toml_clear_marks(cJSON *v) {
    for (; v; v = v->next) {
        v->type &= ~TOML_MARKS;
        toml_clear_marks(v->child);
    }
}

/* ---- entry points ---- */

cJSON *toml_parse(const char *text, size_t len, const char *name, char *err, size_t errlen) {
    if (err && errlen) err[0] = '\0';
    Toml t = {.s = text ? text : "", .len = text ? len : 0, .name = name ? name : "<toml>", .err = err, .errlen = errlen};
    if (!toml_check_text(&t)) return NULL;
    if (t.len >= 3 && memcmp(t.s, "\xEF\xBB\xBF", 3) == 0) t.pos = 3;
    cJSON *root = toml_node(cJSON_CreateObject());
    cJSON *cur = root;
    while (!t.failed) {
        toml_skip_ws(&t);
        int c = toml_peek(&t, 0);
        if (c == -1) break;
        if (c == '#') {
            toml_skip_comment(&t);
        } else if (toml_at_newline(&t)) {
            toml_skip_newline(&t);
        } else if (c == '[') {
            cur = toml_header(&t, root);
            if (cur) toml_expect_eol(&t, "a table header");
        } else if (toml_keyval(&t, cur)) {
            toml_expect_eol(&t, "a key/value pair");
        }
    }
    if (t.failed) {
        cJSON_Delete(root);
        return NULL;
    }
    toml_clear_marks(root);
    return root;
}

cJSON *toml_load_file(const char *path, char *err, size_t errlen) {
    size_t len;
    char *text = file_read_all(path, &len, err, errlen);
    if (!text) return NULL;
    cJSON *v = toml_parse(text, len, path, err, errlen);
    free(text);
    return v;
}
