/* toml.h — a TOML 1.0 reader that builds cJSON trees.
 *
 * τ²-bench's telecom domain keeps its databases in TOML (db.toml,
 * user_db.toml), which Python reads with the `toml` package into plain dicts.
 * Debian packages no C TOML library, so this is a small hand-written reader
 * giving the same shape as that dict:
 *
 *   tables, [a.b] headers, dotted keys, inline tables -> objects, keys in order
 *                                                         of first appearance
 *   [[a]] arrays of tables                            -> arrays of objects
 *   arrays (multi-line, trailing comma, mixed types)  -> arrays
 *   basic, literal and multi-line strings             -> strings
 *   integers (decimal with _, 0x, 0o, 0b, +/-)        -> json_int()
 *   floats (fraction, exponent, inf, nan, _)          -> json_float()
 *   booleans                                          -> true / false
 *   offset and local date-times, local dates, times   -> strings holding the
 *       literal text ("1979-05-27T07:32:00Z"). Python's `toml` gives datetime
 *       objects here, but the τ²-bench models fed from these files declare str
 *       fields, and the files themselves quote their dates.
 *
 * The rules of TOML 1.0 are checked: duplicate keys, tables defined twice,
 * additions to inline tables or static arrays, bad escapes, bad numbers and
 * dates, invalid UTF-8 and raw control characters are errors.
 *
 * Limits: integers are held as doubles (exact up to 2^53, like all cJSON
 * numbers); strings and keys may not contain NUL (\u0000) because cJSON
 * strings are C strings; a key has at most 64 parts and arrays and inline
 * tables nest at most 64 deep. A leading UTF-8 byte order mark is skipped.
 * Key lookup is linear per table, which is fine for configuration-sized files.
 */
#ifndef TAU2_CORE_TOML_H
#define TAU2_CORE_TOML_H

#include <stddef.h>

#include <cJSON.h>

/* Parse TOML text into a cJSON object. NULL on error with
 * err = "<name>:<line>:<col>: <what was expected>" (columns count characters). */
cJSON *toml_parse(const char *text, size_t len, const char *name, char *err, size_t errlen);
/* Read and parse a file; errors name the path. */
cJSON *toml_load_file(const char *path, char *err, size_t errlen);

#endif
