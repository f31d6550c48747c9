/* json.h — JSON with Python's semantics, over cJSON trees.
 *
 * τ²-bench is Python: its JSON values distinguish int from float (1 != "1.0"
 * in a dump, and the DB hash is a dump), and its tool results are serialized
 * with json.dumps defaults (", " and ": " separators, ASCII escapes, floats
 * printed with repr). cJSON keeps neither the int/float distinction nor a
 * line and column for parse errors, so this module brings its own reader
 * that builds ordinary cJSON trees, marking Python floats with
 * JSON_FLOAT_FLAG in the node's type bits (cJSON keeps unknown bits through
 * cJSON_Duplicate and ignores them in cJSON_Is* checks).
 */
#ifndef TAU2_CORE_JSON_H
#define TAU2_CORE_JSON_H

#include <stdbool.h>
#include <stddef.h>

#include <cJSON.h>

#include "core/sbuf.h"

/* Set on a cJSON_Number whose Python type is float. */
#define JSON_FLOAT_FLAG (1 << 12)

/* ---- reading ---- */

/* Parse RFC 8259 JSON (plus NaN/Infinity/-Infinity, as Python accepts).
 * On error returns NULL and writes "<name>:<line>:<col>: <what was expected>"
 * into err. `name` is the file name (or "<stdin>", "<arguments>") used in
 * messages. Duplicate object keys keep the last value, as Python does.
 * Unlike Python, \u0000 in a string is an error (a C string would end at
 * it), and a lone surrogate escape reads as U+FFFD (UTF-8 cannot hold it). */
cJSON *json_parse(const char *text, size_t len, const char *name, char *err, size_t errlen);
/* Read and parse a file; errors name the path. */
cJSON *json_load_file(const char *path, char *err, size_t errlen);
/* The same for a config a person writes: a key given twice in one object
 * is an error at the second (Python would keep the later value silently). */
cJSON *json_load_config(const char *path, char *err, size_t errlen);

/* ---- making values ---- */
cJSON *json_int(double v);   /* a Python int */
cJSON *json_float(double v); /* a Python float */
bool json_is_float(const cJSON *v);
static inline bool json_is_int(const cJSON *v) {
    return v && cJSON_IsNumber(v) && !json_is_float(v);
}

/* ---- writing ---- */
enum {
    JSON_DUMP_SORT_KEYS = 1, /* json.dumps(sort_keys=True) */
    JSON_DUMP_COMPACT = 2,   /* separators (",", ":") instead of (", ", ": ") */
    JSON_DUMP_UTF8 = 4,      /* ensure_ascii=False */
    JSON_DUMP_INDENT = 8,    /* indent=2 (newline separators, ": ") */
};
/* Append the value as Python's json.dumps would print it. */
void json_dump(SBuf *out, const cJSON *v, int flags);
/* Same, returning a new string the caller frees. */
char *json_dumps(const cJSON *v, int flags);
/* Python repr() of a float ("1.0", "0.1", "1e-05", "inf", "nan"); buf >= 32. */
void json_format_float(char *buf, double v);
/* Python str() of a value that is a number: int or float repr. */
#define JSON_NUMBER_BUFSIZE 320
void json_format_number(char *buf /* JSON_NUMBER_BUFSIZE */, const cJSON *num);

/* ---- comparing and merging ---- */
/* Structural equality, order-insensitive for objects, ordered for arrays.
 * strict_numbers: int 1 and float 1.0 differ (what json.dumps-based hashes
 * see); otherwise numbers compare by value (what Python's == sees). */
bool json_equal(const cJSON *a, const cJSON *b, bool strict_numbers);
/* addict-style deep update: objects merge key by key, anything else replaces. */
void json_merge(cJSON *dst, const cJSON *src);

/* ---- access ---- */
/* Member lookup (case-sensitive); NULL when obj is not an object or lacks key. */
cJSON *json_get(const cJSON *obj, const char *key);
/* String member or NULL. */
const char *json_get_str(const cJSON *obj, const char *key);
/* Replace (or add) obj[key] with item, keeping the key's position. Takes item. */
void json_set(cJSON *obj, const char *key, cJSON *item);

#endif
