/* json.c — JSON reader and Python-compatible writer over cJSON trees.
 *
 * The reader is hand-written because cJSON's parser drops two things τ²-bench
 * depends on: whether a number was written as a float (Python keeps 1 and
 * 1.0 apart in dumps and hashes) and where a syntax error is (we report
 * file:line:col). It builds plain cJSON nodes, so the rest of the program
 * uses cJSON's API. */
#include "core/json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

/* ------------------------------------------------------------------ reader */

typedef struct {
    const char *s;
    size_t len;
    size_t pos;
    const char *name;
    char *err;
    size_t errlen;
    int depth;
    bool unique_keys; /* a key given twice in one object is an error (json_load_config) */
} Reader;

enum { JSON_MAX_DEPTH = 512 };

static void reader_fail(Reader *r, const char *what) {
    if (!r->err || r->err[0]) return; /* keep the first error */
    int line = 1, col = 1;
    for (size_t i = 0; i < r->pos && i < r->len; i++) {
        if (r->s[i] == '\n') line++, col = 1;
        else col++;
    }
    snprintf(r->err, r->errlen, "%s:%d:%d: %s", r->name ? r->name : "<input>", line, col, what);
}

static void skip_ws(Reader *r) {
    while (r->pos < r->len) {
        char c = r->s[r->pos];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r') r->pos++;
        else break;
    }
}

static int hex4(const char *p, unsigned *out) {
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return -1;
    }
    *out = v;
    return 0;
}

static void put_utf8(SBuf *b, unsigned cp) {
    char t[4];
    if (cp < 0x80) {
        sbuf_putc(b, (char)cp);
    } else if (cp < 0x800) {
        t[0] = (char)(0xC0 | (cp >> 6));
        t[1] = (char)(0x80 | (cp & 0x3F));
        sbuf_put(b, t, 2);
    } else if (cp < 0x10000) {
        t[0] = (char)(0xE0 | (cp >> 12));
        t[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        t[2] = (char)(0x80 | (cp & 0x3F));
        sbuf_put(b, t, 3);
    } else {
        t[0] = (char)(0xF0 | (cp >> 18));
        t[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        t[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        t[3] = (char)(0x80 | (cp & 0x3F));
        sbuf_put(b, t, 4);
    }
}

/* Length of the well-formed UTF-8 sequence at p (1-4), or 0 if it is not
 * one (overlong forms, surrogates and code points above U+10FFFF included). */
static int utf8_seq_len(const unsigned char *p, size_t avail) {
    unsigned c = p[0];
    int n;
    unsigned min;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) n = 2, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF) n = 3, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4) n = 4, min = 0x10000;
    else return 0;
    if ((size_t)n > avail) return 0;
    unsigned cp = c & (0x7F >> n);
    for (int i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (p[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return n;
}

/* Parse a string starting at the opening quote into a new NUL-terminated buffer. */
static char *read_string(Reader *r) {
    r->pos++; /* opening quote */
    size_t start = r->pos;
    /* Fast path: no escapes. */
    while (r->pos < r->len) {
        unsigned char c = (unsigned char)r->s[r->pos];
        if (c == '"') {
            char *out = xstrndup(r->s + start, r->pos - start);
            r->pos++;
            return out;
        }
        if (c == '\\') break;
        if (c < 0x20) {
            reader_fail(r, "control character in string (expected an escape such as \\n)");
            return NULL;
        }
        if (c >= 0x80) {
            int n = utf8_seq_len((const unsigned char *)r->s + r->pos, r->len - r->pos);
            if (!n) {
                reader_fail(r, "invalid UTF-8 in string");
                return NULL;
            }
            r->pos += (size_t)n;
            continue;
        }
        r->pos++;
    }
    SBuf b;
    sbuf_init(&b);
    sbuf_put(&b, r->s + start, r->pos - start);
    while (r->pos < r->len) {
        unsigned char c = (unsigned char)r->s[r->pos];
        if (c == '"') {
            r->pos++;
            return sbuf_take(&b);
        }
        if (c < 0x20) {
            reader_fail(r, "control character in string (expected an escape such as \\n)");
            sbuf_free(&b);
            return NULL;
        }
        if (c >= 0x80) {
            int n = utf8_seq_len((const unsigned char *)r->s + r->pos, r->len - r->pos);
            if (!n) {
                reader_fail(r, "invalid UTF-8 in string");
                sbuf_free(&b);
                return NULL;
            }
            sbuf_put(&b, r->s + r->pos, (size_t)n);
            r->pos += (size_t)n;
            continue;
        }
        if (c != '\\') {
            sbuf_putc(&b, (char)c);
            r->pos++;
            continue;
        }
        if (r->pos + 1 >= r->len) break;
        char e = r->s[r->pos + 1];
        r->pos += 2;
        switch (e) {
        case '"': sbuf_putc(&b, '"'); break;
        case '\\': sbuf_putc(&b, '\\'); break;
        case '/': sbuf_putc(&b, '/'); break;
        case 'b': sbuf_putc(&b, '\b'); break;
        case 'f': sbuf_putc(&b, '\f'); break;
        case 'n': sbuf_putc(&b, '\n'); break;
        case 'r': sbuf_putc(&b, '\r'); break;
        case 't': sbuf_putc(&b, '\t'); break;
        case 'u': {
            unsigned cp;
            if (r->pos + 4 > r->len || hex4(r->s + r->pos, &cp) != 0) {
                reader_fail(r, "expected 4 hex digits after \\u");
                sbuf_free(&b);
                return NULL;
            }
            r->pos += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF && r->pos + 6 <= r->len && r->s[r->pos] == '\\' &&
                r->s[r->pos + 1] == 'u') {
                unsigned lo;
                if (hex4(r->s + r->pos + 2, &lo) == 0 && lo >= 0xDC00 && lo <= 0xDFFF) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    r->pos += 6;
                }
            }
            /* A lone surrogate cannot be UTF-8; Python keeps it, we substitute U+FFFD. */
            if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0xFFFD;
            /* Python keeps a NUL too, but a C string would end there and
             * quietly lose the rest ("path\u0000/junk" read as "path"). */
            if (cp == 0) {
                r->pos -= 6; /* point at the backslash */
                reader_fail(r, "\\u0000 in a string (a NUL character is not supported)");
                sbuf_free(&b);
                return NULL;
            }
            put_utf8(&b, cp);
            break;
        }
        default:
            r->pos -= 2; /* point at the backslash */
            reader_fail(r, "invalid escape in string (expected one of \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)");
            sbuf_free(&b);
            return NULL;
        }
    }
    reader_fail(r, "unterminated string (expected a closing '\"')");
    sbuf_free(&b);
    return NULL;
}

static cJSON *read_number(Reader *r) {
    size_t start = r->pos;
    bool is_float = false;
    if (r->s[r->pos] == '-') r->pos++;
    if (r->pos < r->len && r->s[r->pos] == 'I') { /* -Infinity */
        if (r->len - r->pos >= 8 && memcmp(r->s + r->pos, "Infinity", 8) == 0) {
            r->pos += 8;
            return json_float(-INFINITY);
        }
        reader_fail(r, "expected a number");
        return NULL;
    }
    if (r->pos >= r->len || r->s[r->pos] < '0' || r->s[r->pos] > '9') {
        reader_fail(r, "expected a digit");
        return NULL;
    }
    if (r->s[r->pos] == '0') {
        r->pos++;
    } else {
        while (r->pos < r->len && r->s[r->pos] >= '0' && r->s[r->pos] <= '9') r->pos++;
    }
    if (r->pos < r->len && r->s[r->pos] == '.') {
        is_float = true;
        r->pos++;
        if (r->pos >= r->len || r->s[r->pos] < '0' || r->s[r->pos] > '9') {
            reader_fail(r, "expected a digit after the decimal point");
            return NULL;
        }
        while (r->pos < r->len && r->s[r->pos] >= '0' && r->s[r->pos] <= '9') r->pos++;
    }
    if (r->pos < r->len && (r->s[r->pos] == 'e' || r->s[r->pos] == 'E')) {
        is_float = true;
        r->pos++;
        if (r->pos < r->len && (r->s[r->pos] == '+' || r->s[r->pos] == '-')) r->pos++;
        if (r->pos >= r->len || r->s[r->pos] < '0' || r->s[r->pos] > '9') {
            reader_fail(r, "expected a digit in the exponent");
            return NULL;
        }
        while (r->pos < r->len && r->s[r->pos] >= '0' && r->s[r->pos] <= '9') r->pos++;
    }
    char tmp[64];
    size_t n = r->pos - start;
    double v;
    if (n < sizeof tmp) {
        memcpy(tmp, r->s + start, n);
        tmp[n] = '\0';
        v = strtod(tmp, NULL);
    } else {
        char *big = xstrndup(r->s + start, n);
        v = strtod(big, NULL);
        free(big);
    }
    /* Python reads any integer exactly; we hold numbers as doubles, so an
     * integer beyond a double's range (about 1.8e308) would become infinity
     * and could not be written back as an integer. Refuse it instead. */
    if (!is_float && isinf(v)) {
        r->pos = start;
        reader_fail(r, "integer too large (at most about 1.8e308 is supported)");
        return NULL;
    }
    return is_float ? json_float(v) : json_int(v);
}

static cJSON *read_value(Reader *r);

static cJSON *read_array(Reader *r) {
    r->pos++;
    cJSON *arr = cJSON_CreateArray();
    cJSON *tail = NULL;
    skip_ws(r);
    if (r->pos < r->len && r->s[r->pos] == ']') {
        r->pos++;
        return arr;
    }
    for (;;) {
        cJSON *item = read_value(r);
        if (!item) {
            cJSON_Delete(arr);
            return NULL;
        }
        /* Append in O(1): cJSON_AddItemToArray walks the list. */
        if (!tail) {
            arr->child = item;
            item->prev = item;
        } else {
            tail->next = item;
            item->prev = tail;
            arr->child->prev = item;
        }
        tail = item;
        skip_ws(r);
        if (r->pos < r->len && r->s[r->pos] == ',') {
            r->pos++;
            continue;
        }
        if (r->pos < r->len && r->s[r->pos] == ']') {
            r->pos++;
            return arr;
        }
        reader_fail(r, "expected ',' or ']' in array");
        cJSON_Delete(arr);
        return NULL;
    }
}

static cJSON *read_object(Reader *r) {
    r->pos++;
    cJSON *obj = cJSON_CreateObject();
    cJSON *tail = NULL;
    skip_ws(r);
    if (r->pos < r->len && r->s[r->pos] == '}') {
        r->pos++;
        return obj;
    }
    for (;;) {
        skip_ws(r);
        if (r->pos >= r->len || r->s[r->pos] != '"') {
            reader_fail(r, "expected a string key in object");
            cJSON_Delete(obj);
            return NULL;
        }
        size_t key_pos = r->pos;
        char *key = read_string(r);
        if (!key) {
            cJSON_Delete(obj);
            return NULL;
        }
        skip_ws(r);
        if (r->pos >= r->len || r->s[r->pos] != ':') {
            reader_fail(r, "expected ':' after object key");
            free(key);
            cJSON_Delete(obj);
            return NULL;
        }
        r->pos++;
        cJSON *item = read_value(r);
        if (!item) {
            free(key);
            cJSON_Delete(obj);
            return NULL;
        }
        item->string = key;
        cJSON *dup = NULL;
        /* Python keeps the last of duplicate keys at the first key's position. */
        for (cJSON *c = obj->child; c; c = c->next) {
            if (strcmp(c->string, key) == 0) {
                dup = c;
                break;
            }
        }
        if (dup && r->unique_keys) {
            r->pos = key_pos;
            char what[300];
            snprintf(what, sizeof what, "key '%.200s' given twice in this object (a later one would silently win)",
                     key);
            reader_fail(r, what);
            cJSON_Delete(item);
            cJSON_Delete(obj);
            return NULL;
        }
        if (dup) {
            cJSON_ReplaceItemViaPointer(obj, dup, item);
            if (tail == dup) tail = item;
        } else {
            if (!tail) {
                obj->child = item;
                item->prev = item;
            } else {
                tail->next = item;
                item->prev = tail;
                obj->child->prev = item;
            }
            tail = item;
        }
        skip_ws(r);
        if (r->pos < r->len && r->s[r->pos] == ',') {
            r->pos++;
            continue;
        }
        if (r->pos < r->len && r->s[r->pos] == '}') {
            r->pos++;
            return obj;
        }
        reader_fail(r, "expected ',' or '}' in object");
        cJSON_Delete(obj);
        return NULL;
    }
}

static bool match_word(Reader *r, const char *w) {
    size_t n = strlen(w);
    if (r->len - r->pos >= n && memcmp(r->s + r->pos, w, n) == 0) {
        r->pos += n;
        return true;
    }
    return false;
}

static cJSON *read_value(Reader *r) {
    skip_ws(r);
    if (r->pos >= r->len) {
        reader_fail(r, "unexpected end of input (expected a value)");
        return NULL;
    }
    if (++r->depth > JSON_MAX_DEPTH) {
        reader_fail(r, "nesting too deep");
        return NULL;
    }
    cJSON *v = NULL;
    char c = r->s[r->pos];
    if (c == '{') v = read_object(r);
    else if (c == '[') v = read_array(r);
    else if (c == '"') {
        char *s = read_string(r);
        if (s) {
            v = cJSON_CreateNull();
            v->type = cJSON_String;
            v->valuestring = s;
        }
    } else if (c == '-' || (c >= '0' && c <= '9')) v = read_number(r);
    else if (match_word(r, "true")) v = cJSON_CreateTrue();
    else if (match_word(r, "false")) v = cJSON_CreateFalse();
    else if (match_word(r, "null")) v = cJSON_CreateNull();
    else if (match_word(r, "NaN")) v = json_float(NAN);
    else if (match_word(r, "Infinity")) v = json_float(INFINITY);
    else reader_fail(r, "expected a value (object, array, string, number, true, false or null)");
    r->depth--;
    return v;
}

static cJSON *parse_text(const char *text, size_t len, const char *name, bool unique_keys, char *err,
                         size_t errlen) {
    if (err && errlen) err[0] = '\0';
    Reader r = {text, len, 0, name, err, errlen, 0, unique_keys};
    /* A UTF-8 byte order mark is allowed, as Python's utf-8-sig readers do. */
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) r.pos = 3;
    cJSON *v = read_value(&r);
    if (!v) return NULL;
    skip_ws(&r);
    if (r.pos != r.len) {
        reader_fail(&r, "extra data after the JSON value");
        cJSON_Delete(v);
        return NULL;
    }
    return v;
}

cJSON *json_parse(const char *text, size_t len, const char *name, char *err, size_t errlen) {
    return parse_text(text, len, name, false, err, errlen);
}

static cJSON *load_file(const char *path, bool unique_keys, char *err, size_t errlen) {
    size_t len;
    char *text = file_read_all(path, &len, err, errlen);
    if (!text) return NULL;
    cJSON *v = parse_text(text, len, path, unique_keys, err, errlen);
    free(text);
    return v;
}

cJSON *json_load_file(const char *path, char *err, size_t errlen) { return load_file(path, false, err, errlen); }

cJSON *json_load_config(const char *path, char *err, size_t errlen) { return load_file(path, true, err, errlen); }

/* ------------------------------------------------------------------ values */

cJSON *json_int(double v) { return cJSON_CreateNumber(v); }

cJSON *json_float(double v) {
    cJSON *n = cJSON_CreateNumber(v);
    n->type |= JSON_FLOAT_FLAG;
    return n;
}

bool json_is_float(const cJSON *v) { return v && cJSON_IsNumber(v) && (v->type & JSON_FLOAT_FLAG); }

/* ------------------------------------------------------------------ writer */

void json_format_float(char *buf, double v) {
    if (isnan(v)) {
        strcpy(buf, "NaN");
        return;
    }
    if (isinf(v)) {
        strcpy(buf, v > 0 ? "Infinity" : "-Infinity");
        return;
    }
    if (v == 0) {
        strcpy(buf, signbit(v) ? "-0.0" : "0.0");
        return;
    }
    /* Python's repr: the shortest digits that round-trip, then positional
     * notation for 1e-4 <= |v| < 1e16 and scientific otherwise. */
    char digits[40];
    int prec;
    for (prec = 1; prec <= 17; prec++) {
        snprintf(digits, sizeof digits, "%.*e", prec - 1, v);
        if (strtod(digits, NULL) == v) break;
    }
    /* digits is like "-d.ddde+XX": split mantissa digits and exponent. */
    const char *p = digits;
    bool neg = false;
    if (*p == '-') neg = true, p++;
    char mant[24];
    int nm = 0;
    for (; *p && *p != 'e'; p++)
        if (*p != '.') mant[nm++] = *p;
    mant[nm] = '\0';
    int exp10 = atoi(p + 1);
    while (nm > 1 && mant[nm - 1] == '0') mant[--nm] = '\0';
    char *o = buf;
    if (neg) *o++ = '-';
    if (exp10 >= -4 && exp10 < 16) {
        if (exp10 < 0) {
            *o++ = '0';
            *o++ = '.';
            for (int i = 0; i < -exp10 - 1; i++) *o++ = '0';
            memcpy(o, mant, (size_t)nm);
            o += nm;
        } else {
            for (int i = 0; i <= exp10; i++) *o++ = i < nm ? mant[i] : '0';
            *o++ = '.';
            if (nm > exp10 + 1) {
                memcpy(o, mant + exp10 + 1, (size_t)(nm - exp10 - 1));
                o += nm - exp10 - 1;
            } else {
                *o++ = '0';
            }
        }
        *o = '\0';
    } else {
        *o++ = mant[0];
        if (nm > 1) {
            *o++ = '.';
            memcpy(o, mant + 1, (size_t)(nm - 1));
            o += nm - 1;
        }
        sprintf(o, "e%c%02d", exp10 < 0 ? '-' : '+', exp10 < 0 ? -exp10 : exp10);
    }
}

void json_format_number(char *buf, const cJSON *num) {
    double v = num->valuedouble;
    if (json_is_float(num)) {
        json_format_float(buf, v);
    } else if (isfinite(v) && v == floor(v)) {
        /* An int: all its digits (cJSON holds numbers as doubles, so ints
         * beyond 2^53 print as the nearest double's digits; the largest
         * double has 309 of them, within JSON_NUMBER_BUFSIZE). */
        snprintf(buf, JSON_NUMBER_BUFSIZE, "%.0f", v);
    } else {
        /* An "int" that is not integral can only come from a bad producer;
         * print it as Python would print the float. */
        json_format_float(buf, v);
    }
}

static void dump_string(SBuf *out, const char *s, bool ascii) {
    static const char hex[] = "0123456789abcdef";
    sbuf_putc(out, '"');
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned char c = *p;
        const unsigned char *run = p;
        while (*p && *p >= 0x20 && *p != '"' && *p != '\\' && ((*p < 0x7f) || !ascii)) p++;
        if (p > run) {
            sbuf_put(out, (const char *)run, (size_t)(p - run));
            continue;
        }
        c = *p;
        if (c == '"') sbuf_puts(out, "\\\""), p++;
        else if (c == '\\') sbuf_puts(out, "\\\\"), p++;
        else if (c == '\n') sbuf_puts(out, "\\n"), p++;
        else if (c == '\r') sbuf_puts(out, "\\r"), p++;
        else if (c == '\t') sbuf_puts(out, "\\t"), p++;
        else if (c == '\b') sbuf_puts(out, "\\b"), p++;
        else if (c == '\f') sbuf_puts(out, "\\f"), p++;
        else if (c < 0x20 || (c == 0x7f && ascii)) { /* Python's ascii mode escapes DEL too */
            char t[7] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15], 0};
            sbuf_puts(out, t);
            p++;
        } else {
            /* Non-ASCII with ensure_ascii: decode UTF-8, emit \uXXXX (surrogate pairs above the BMP). */
            unsigned cp;
            int n;
            if ((c & 0xE0) == 0xC0) cp = c & 0x1F, n = 1;
            else if ((c & 0xF0) == 0xE0) cp = c & 0x0F, n = 2;
            else if ((c & 0xF8) == 0xF0) cp = c & 0x07, n = 3;
            else cp = 0xFFFD, n = 0;
            int i;
            for (i = 1; i <= n && (p[i] & 0xC0) == 0x80; i++) cp = (cp << 6) | (p[i] & 0x3F);
            if (i <= n) cp = 0xFFFD, n = i - 1;
            p += n + 1;
            unsigned units[2];
            int nu = 0;
            if (cp >= 0x10000) {
                cp -= 0x10000;
                units[nu++] = 0xD800 + (cp >> 10);
                units[nu++] = 0xDC00 + (cp & 0x3FF);
            } else {
                units[nu++] = cp;
            }
            for (int k = 0; k < nu; k++) {
                char t[7] = {'\\', 'u', hex[(units[k] >> 12) & 15], hex[(units[k] >> 8) & 15],
                             hex[(units[k] >> 4) & 15], hex[units[k] & 15], 0};
                sbuf_puts(out, t);
            }
        }
    }
    sbuf_putc(out, '"');
}

static int cmp_keys(const void *a, const void *b) {
    const cJSON *x = *(const cJSON *const *)a, *y = *(const cJSON *const *)b;
    return strcmp(x->string, y->string);
}

static void dump_indent(SBuf *out, int level) {
    sbuf_putc(out, '\n');
    for (int i = 0; i < level * 2; i++) sbuf_putc(out, ' ');
}

static void dump_value(SBuf *out, const cJSON *v, int flags, int level) {
    bool ascii = !(flags & JSON_DUMP_UTF8);
    bool indent = flags & JSON_DUMP_INDENT;
    const char *item_sep = (flags & JSON_DUMP_COMPACT) ? "," : (indent ? "," : ", ");
    const char *key_sep = (flags & JSON_DUMP_COMPACT) ? ":" : ": ";
    char num[JSON_NUMBER_BUFSIZE];
    switch (v->type & 0xFF) {
    case cJSON_NULL: sbuf_puts(out, "null"); break;
    case cJSON_True: sbuf_puts(out, "true"); break;
    case cJSON_False: sbuf_puts(out, "false"); break;
    case cJSON_Number:
        json_format_number(num, v);
        sbuf_puts(out, num);
        break;
    case cJSON_String: dump_string(out, v->valuestring ? v->valuestring : "", ascii); break;
    case cJSON_Raw: sbuf_puts(out, v->valuestring ? v->valuestring : ""); break;
    case cJSON_Array: {
        if (!v->child) {
            sbuf_puts(out, "[]");
            break;
        }
        sbuf_putc(out, '[');
        for (const cJSON *c = v->child; c; c = c->next) {
            if (indent) dump_indent(out, level + 1);
            dump_value(out, c, flags, level + 1);
            if (c->next) sbuf_puts(out, item_sep);
        }
        if (indent) dump_indent(out, level);
        sbuf_putc(out, ']');
        break;
    }
    case cJSON_Object: {
        if (!v->child) {
            sbuf_puts(out, "{}");
            break;
        }
        int n = 0;
        for (const cJSON *c = v->child; c; c = c->next) n++;
        const cJSON **items = xmalloc((size_t)n * sizeof *items);
        n = 0;
        for (const cJSON *c = v->child; c; c = c->next) items[n++] = c;
        if (flags & JSON_DUMP_SORT_KEYS) qsort(items, (size_t)n, sizeof *items, cmp_keys);
        sbuf_putc(out, '{');
        for (int i = 0; i < n; i++) {
            if (indent) dump_indent(out, level + 1);
            dump_string(out, items[i]->string ? items[i]->string : "", ascii);
            sbuf_puts(out, key_sep);
            dump_value(out, items[i], flags, level + 1);
            if (i + 1 < n) sbuf_puts(out, item_sep);
        }
        free(items);
        if (indent) dump_indent(out, level);
        sbuf_putc(out, '}');
        break;
    }
    default: sbuf_puts(out, "null"); break;
    }
}

void json_dump(SBuf *out, const cJSON *v, int flags) { dump_value(out, v, flags, 0); }

char *json_dumps(const cJSON *v, int flags) {
    SBuf b;
    sbuf_init(&b);
    json_dump(&b, v, flags);
    return sbuf_take(&b);
}

/* ------------------------------------------------------- compare and merge */

bool json_equal(const cJSON *a, const cJSON *b, bool strict_numbers) {
    if (a == b) return true;
    if (!a || !b) return false;
    int ta = a->type & 0xFF, tb = b->type & 0xFF;
    if (ta != tb) return false;
    switch (ta) {
    case cJSON_NULL:
    case cJSON_True:
    case cJSON_False: return true;
    case cJSON_Number:
        if (strict_numbers && json_is_float(a) != json_is_float(b)) return false;
        if (isnan(a->valuedouble) && isnan(b->valuedouble)) return true;
        return a->valuedouble == b->valuedouble;
    case cJSON_String:
    case cJSON_Raw: return strcmp(a->valuestring ? a->valuestring : "", b->valuestring ? b->valuestring : "") == 0;
    case cJSON_Array: {
        const cJSON *x = a->child, *y = b->child;
        for (; x && y; x = x->next, y = y->next)
            if (!json_equal(x, y, strict_numbers)) return false;
        return !x && !y;
    }
    case cJSON_Object: {
        int na = 0, nb = 0;
        for (const cJSON *x = a->child; x; x = x->next) na++;
        for (const cJSON *y = b->child; y; y = y->next) nb++;
        if (na != nb) return false;
        /* Same key order is the common case: walk both lists together and
         * fall back to lookups when the keys differ. */
        const cJSON *y = b->child;
        for (const cJSON *x = a->child; x; x = x->next) {
            const cJSON *match = (y && strcmp(x->string, y->string) == 0) ? y : json_get(b, x->string);
            if (!match || !json_equal(x, match, strict_numbers)) return false;
            y = y ? y->next : NULL;
        }
        return true;
    }
    default: return false;
    }
}

void json_merge(cJSON *dst, const cJSON *src) {
    if (!cJSON_IsObject(dst) || !cJSON_IsObject(src)) return;
    for (const cJSON *s = src->child; s; s = s->next) {
        cJSON *d = json_get(dst, s->string);
        if (d && cJSON_IsObject(d) && cJSON_IsObject(s)) {
            json_merge(d, s);
        } else {
            json_set(dst, s->string, cJSON_Duplicate(s, 1));
        }
    }
}

/* ------------------------------------------------------------------ access */

cJSON *json_get(const cJSON *obj, const char *key) {
    if (!obj || !cJSON_IsObject(obj)) return NULL;
    for (cJSON *c = obj->child; c; c = c->next)
        if (c->string && strcmp(c->string, key) == 0) return c;
    return NULL;
}

const char *json_get_str(const cJSON *obj, const char *key) {
    const cJSON *v = json_get(obj, key);
    return (v && cJSON_IsString(v)) ? v->valuestring : NULL;
}

void json_set(cJSON *obj, const char *key, cJSON *item) {
    cJSON *old = json_get(obj, key);
    if (old) {
        cJSON_ReplaceItemViaPointer(obj, old, item);
        /* ReplaceItemViaPointer keeps item->string as given: name it. */
        if (!item->string || strcmp(item->string, key) != 0) {
            if (!(item->type & cJSON_StringIsConst)) free(item->string);
            item->type &= ~cJSON_StringIsConst;
            item->string = xstrdup(key);
        }
    } else {
        cJSON_AddItemToObject(obj, key, item);
    }
}
