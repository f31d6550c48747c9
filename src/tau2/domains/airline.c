/* airline.c — τ²-bench's airline domain: flights, users and reservations.
 *
 * Every tool mirrors AirlineTools (tau2/domains/airline/tools.py) down to
 * its error texts, the order of its checks and its quirks: new reservation
 * ids HATHAT/HATHAU/HATHAV, certificate ids certificate_3221322.., a fixed
 * clock (2024-05-15T15:00:00), cancel_reservation releasing no seats,
 * update_reservation_flights changing no seat counts, and the one-stop
 * search building the next day's date without zero padding.
 *
 * The DB file is not in pydantic field order (flights list origin before
 * flight_number, reservations lack "status"), while tool results are
 * model_dumps. So results are built fresh from the stored record in model
 * field order by the dumpers below, and records this file creates are
 * written in model order with every field present.
 *
 * Pydantic is not in C: where τ²-bench validates nested arguments
 * (FlightInfo(**d), Passenger(**d), Payment(**d), Reservation(...)) the
 * checks and the ValidationError text are reproduced by the small
 * validators below, including pydantic's truncated input_value repr. */
#include <ctype.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/json.h"
#include "core/sbuf.h"
#include "tau2/domains/domains.h"

/* The pydantic version in τ²-bench's error links ("errors.pydantic.dev/2.13/v/..."). */
#define PYDANTIC_DOCS_VERSION "2.13"

static const char *const RESERVATION_IDS[] = {"HATHAT", "HATHAU", "HATHAV"};
static const char *const CERTIFICATE_IDS[] = {"certificate_3221322", "certificate_3221323", "certificate_3221324"};
static const char NOW[] = "2024-05-15T15:00:00";

/* ------------------------------------------------------------------ Python repr */

/* Decode one UTF-8 code point at s (valid input assumed; a stray byte
 * counts as itself). Returns its length. */
static int utf8_decode(const unsigned char *s, unsigned *cp) {
    unsigned c = s[0];
    if (c < 0x80) return *cp = c, 1;
    if ((c & 0xE0) == 0xC0 && (s[1] & 0xC0) == 0x80) return *cp = ((c & 0x1F) << 6) | (s[1] & 0x3F), 2;
    if ((c & 0xF0) == 0xE0 && (s[1] & 0xC0) == 0x80 && (s[2] & 0xC0) == 0x80)
        return *cp = ((c & 0x0F) << 12) | ((s[1] & 0x3F) << 6) | (s[2] & 0x3F), 3;
    if ((c & 0xF8) == 0xF0 && (s[1] & 0xC0) == 0x80 && (s[2] & 0xC0) == 0x80 && (s[3] & 0xC0) == 0x80)
        return *cp = ((c & 0x07) << 18) | ((s[1] & 0x3F) << 12) | ((s[2] & 0x3F) << 6) | (s[3] & 0x3F), 4;
    return *cp = c, 1;
}

/* Code points Python's repr escapes (str.isprintable() is false): the
 * common ones; the full Unicode table is not worth carrying. */
static bool py_unprintable(unsigned cp) {
    return cp < 0x20 || (cp >= 0x7F && cp <= 0xA0) || cp == 0xAD || (cp >= 0x200B && cp <= 0x200F) ||
           (cp >= 0x2028 && cp <= 0x202E) || (cp >= 0x2060 && cp <= 0x2064) || (cp >= 0xD800 && cp <= 0xDFFF) ||
           cp == 0xFEFF || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x205F || cp == 0x3000;
}

/* Python repr() of a str. */
static void py_repr_str(SBuf *b, const char *s) {
    char q = (strchr(s, '\'') && !strchr(s, '"')) ? '"' : '\'';
    sbuf_putc(b, q);
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned cp;
        int n = utf8_decode(p, &cp);
        if (cp == '\\' || cp == (unsigned)q) sbuf_putc(b, '\\'), sbuf_putc(b, (char)cp);
        else if (cp == '\n') sbuf_puts(b, "\\n");
        else if (cp == '\r') sbuf_puts(b, "\\r");
        else if (cp == '\t') sbuf_puts(b, "\\t");
        else if (py_unprintable(cp)) {
            if (cp < 0x100) sbuf_printf(b, "\\x%02x", cp);
            else if (cp < 0x10000) sbuf_printf(b, "\\u%04x", cp);
            else sbuf_printf(b, "\\U%08x", cp);
        } else sbuf_put(b, (const char *)p, (size_t)n);
        p += n;
    }
    sbuf_putc(b, q);
}

/* Python repr() / str() of a float: "inf" and "nan" where JSON says Infinity. */
static void py_float_repr(char *buf, double v) {
    if (isnan(v)) strcpy(buf, "nan");
    else if (isinf(v)) strcpy(buf, v > 0 ? "inf" : "-inf");
    else json_format_float(buf, v);
}

static void py_number_repr(char *buf, const cJSON *num) {
    if (json_is_float(num)) py_float_repr(buf, num->valuedouble);
    else json_format_number(buf, num);
}

/* Python repr() of a JSON value (dict/list/str/int/float/bool/None). */
static void py_repr(SBuf *b, const cJSON *v) {
    char num[JSON_NUMBER_BUFSIZE];
    if (!v || cJSON_IsNull(v)) sbuf_puts(b, "None");
    else if (cJSON_IsTrue(v)) sbuf_puts(b, "True");
    else if (cJSON_IsFalse(v)) sbuf_puts(b, "False");
    else if (cJSON_IsNumber(v)) py_number_repr(num, v), sbuf_puts(b, num);
    else if (cJSON_IsString(v)) py_repr_str(b, v->valuestring);
    else if (cJSON_IsArray(v) || cJSON_IsObject(v)) {
        bool obj = cJSON_IsObject(v);
        sbuf_putc(b, obj ? '{' : '[');
        for (const cJSON *e = v->child; e; e = e->next) {
            if (e != v->child) sbuf_puts(b, ", ");
            if (obj) py_repr_str(b, e->string), sbuf_puts(b, ": ");
            py_repr(b, e);
        }
        sbuf_putc(b, obj ? '}' : ']');
    }
}

static const char *py_type_name(const cJSON *v) {
    if (!v || cJSON_IsNull(v)) return "NoneType";
    if (cJSON_IsBool(v)) return "bool";
    if (cJSON_IsNumber(v)) return json_is_float(v) ? "float" : "int";
    if (cJSON_IsString(v)) return "str";
    if (cJSON_IsArray(v)) return "list";
    return "dict";
}

/* ------------------------------------------------------------------ pydantic errors */

/* Accumulated ValidationError lines for one model. */
typedef struct {
    SBuf lines;
    int n;
} ValErrs;

/* pydantic shows input_value as repr, cut to 25 + "..." + 24 bytes (on
 * character boundaries) when longer than 50 bytes. */
static void verr_put_input(SBuf *b, const cJSON *input) {
    SBuf r;
    sbuf_init(&r);
    py_repr(&r, input);
    if (r.len <= 50) {
        sbuf_put(b, r.data, r.len);
    } else {
        size_t head = 25, tail = r.len - 24;
        while (head > 0 && ((unsigned char)r.data[head] & 0xC0) == 0x80) head--;
        while (tail < r.len && ((unsigned char)r.data[tail] & 0xC0) == 0x80) tail++;
        sbuf_put(b, r.data, head);
        sbuf_puts(b, "...");
        sbuf_put(b, r.data + tail, r.len - tail);
    }
    sbuf_free(&r);
}

static void verr_add(ValErrs *e, const char *loc, const char *msg, const char *type, const cJSON *input) {
    if (e->n++) sbuf_putc(&e->lines, '\n');
    sbuf_printf(&e->lines, "%s\n  %s [type=%s, input_value=", loc, msg, type);
    verr_put_input(&e->lines, input);
    sbuf_printf(&e->lines, ", input_type=%s]\n    For further information visit https://errors.pydantic.dev/%s/v/%s",
                py_type_name(input), PYDANTIC_DOCS_VERSION, type);
}

/* Report the collected errors as str(ValidationError). Frees e. */
static cJSON *verr_fail(ToolCtx *ctx, ValErrs *e, const char *model) {
    tool_error(ctx, "%d validation error%s for %s\n%s", e->n, e->n == 1 ? "" : "s", model,
               e->lines.data ? e->lines.data : "");
    sbuf_free(&e->lines);
    return NULL;
}

/* pydantic's lax int parsing of a string: whitespace, sign, digits with
 * single underscores between them, optionally ".000". */
static bool parse_int_str(const char *s, double *out) {
    while (isspace((unsigned char)*s)) s++;
    const char *end = s + strlen(s);
    while (end > s && isspace((unsigned char)end[-1])) end--;
    bool neg = false;
    if (s < end && (*s == '+' || *s == '-')) neg = *s == '-', s++;
    if (s >= end || !isdigit((unsigned char)*s)) return false;
    double v = 0;
    while (s < end && (isdigit((unsigned char)*s) || *s == '_')) {
        if (*s == '_') {
            if (s + 1 >= end || !isdigit((unsigned char)s[1])) return false;
        } else {
            v = v * 10 + (*s - '0');
        }
        s++;
    }
    if (s < end && *s == '.') {
        s++;
        if (s >= end) return false;
        while (s < end && *s == '0') s++;
    }
    if (s != end) return false;
    *out = neg ? -v : v;
    return true;
}

/* Validate an `int` field value; on success *out holds it. */
static bool check_int(ValErrs *e, const char *loc, const cJSON *v, double *out) {
    if (cJSON_IsBool(v)) return *out = cJSON_IsTrue(v) ? 1 : 0, true;
    if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        if (!json_is_float(v)) return *out = d, true;
        if (!isfinite(d)) return verr_add(e, loc, "Input should be a finite number", "finite_number", v), false;
        if (d != floor(d)) {
            verr_add(e, loc, "Input should be a valid integer, got a number with a fractional part", "int_from_float",
                     v);
            return false;
        }
        if (fabs(d) >= 9223372036854775808.0) {
            verr_add(e, loc, "Unable to parse input string as an integer, exceeded maximum size", "int_parsing_size",
                     v);
            return false;
        }
        return *out = d + 0.0, true; /* -0.0 becomes 0 */
    }
    if (cJSON_IsString(v)) {
        if (parse_int_str(v->valuestring, out)) return true;
        verr_add(e, loc, "Input should be a valid integer, unable to parse string as an integer", "int_parsing", v);
        return false;
    }
    verr_add(e, loc, "Input should be a valid integer", "int_type", v);
    return false;
}

/* Validate a `str` field (pydantic's lax mode takes only strings from JSON). */
static bool check_str(ValErrs *e, const char *loc, const cJSON *v) {
    if (cJSON_IsString(v)) return true;
    verr_add(e, loc, "Input should be a valid string", "string_type", v);
    return false;
}

/* Validate a Literal[...] field of string choices. */
static bool check_literal(ValErrs *e, const char *loc, const cJSON *v, const char *const *choices, int n) {
    if (cJSON_IsString(v))
        for (int i = 0; i < n; i++)
            if (strcmp(v->valuestring, choices[i]) == 0) return true;
    SBuf msg;
    sbuf_init(&msg);
    sbuf_puts(&msg, "Input should be ");
    for (int i = 0; i < n; i++) {
        if (i) sbuf_puts(&msg, i == n - 1 ? " or " : ", ");
        sbuf_printf(&msg, "'%s'", choices[i]);
    }
    verr_add(e, loc, msg.data, "literal_error", v);
    sbuf_free(&msg);
    return false;
}

/* NULL-terminated, so the model tables at the end of this file share them. */
static const char *const FLIGHT_TYPES[] = {"round_trip", "one_way", NULL};
static const char *const CABINS[] = {"business", "economy", "basic_economy", NULL};
static const char *const INSURANCES[] = {"yes", "no", NULL};

/* The small models that tool arguments are validated as; the data model at
 * the end of this file uses them too. */
static const DbField FLIGHT_INFO_FIELDS[] = {{"flight_number", &DB_T_STR}, {"date", &DB_T_STR}, {NULL}};
static const DbField PASSENGER_FIELDS[] = {{"first_name", &DB_T_STR}, {"last_name", &DB_T_STR}, {"dob", &DB_T_STR}, {NULL}};
static const DbField PAYMENT_FIELDS[] = {{"payment_id", &DB_T_STR}, {"amount", &DB_T_INT}, {NULL}};
static const DbModel FLIGHT_INFO = {"FlightInfo", FLIGHT_INFO_FIELDS};
static const DbModel PASSENGER = {"Passenger", PASSENGER_FIELDS};
static const DbModel PAYMENT = {"Payment", PAYMENT_FIELDS};

/* Validate dict `d` as model `m` (extra keys ignored), errors located
 * under `prefix` ("" at top level, "passengers.1." inside Reservation).
 * On success returns the model_dump in field order; NULL otherwise. */
static cJSON *model_validate(ValErrs *e, const DbModel *m, const cJSON *d, const char *prefix) {
    char loc[256];
    if (!cJSON_IsObject(d)) {
        snprintf(loc, sizeof loc, "%.*s", prefix[0] ? (int)strlen(prefix) - 1 : 0, prefix);
        char msg[96];
        snprintf(msg, sizeof msg, "Input should be a valid dictionary or instance of %s", m->name);
        verr_add(e, loc, msg, "model_type", d);
        return NULL;
    }
    cJSON *out = cJSON_CreateObject();
    bool ok = true;
    for (const DbField *f = m->fields; f->name; f++) {
        const cJSON *v = json_get(d, f->name);
        snprintf(loc, sizeof loc, "%s%s", prefix, f->name);
        if (!v) {
            verr_add(e, loc, "Field required", "missing", d);
            ok = false;
        } else if (f->type->kind == DB_STR) {
            if (check_str(e, loc, v)) cJSON_AddItemToObject(out, f->name, cJSON_CreateString(v->valuestring));
            else ok = false;
        } else {
            double x;
            if (check_int(e, loc, v, &x)) cJSON_AddItemToObject(out, f->name, json_int(x));
            else ok = false;
        }
    }
    if (!ok) cJSON_Delete(out), out = NULL;
    return out;
}

/* `[Model(**d) for d in items]`: the list of dumps, or NULL after reporting
 * the first failing item's ValidationError. */
static cJSON *models_from_dicts(ToolCtx *ctx, const DbModel *m, const cJSON *items) {
    cJSON *out = cJSON_CreateArray();
    for (const cJSON *d = items ? items->child : NULL; d; d = d->next) {
        ValErrs e = {{0}, 0};
        sbuf_init(&e.lines);
        cJSON *rec = model_validate(&e, m, d, "");
        if (!rec) {
            cJSON_Delete(out);
            return verr_fail(ctx, &e, m->name);
        }
        sbuf_free(&e.lines);
        cJSON_AddItemToArray(out, rec);
    }
    return out;
}

/* ------------------------------------------------------------------ dumps in model order */

static cJSON *dup_or_null(const cJSON *v) { return v ? cJSON_Duplicate(v, 1) : cJSON_CreateNull(); }

/* Copy the named fields of rec in the given order (absent ones as null). */
static cJSON *dump_fields(const cJSON *rec, const char *const *names, int n) {
    if (!cJSON_IsObject(rec)) return dup_or_null(rec);
    cJSON *out = cJSON_CreateObject();
    for (int i = 0; i < n; i++) cJSON_AddItemToObject(out, names[i], dup_or_null(json_get(rec, names[i])));
    return out;
}

static cJSON *dump_list(const cJSON *list, const char *const *names, int n) {
    if (!cJSON_IsArray(list)) return dup_or_null(list);
    cJSON *out = cJSON_CreateArray();
    for (const cJSON *e = list->child; e; e = e->next) cJSON_AddItemToArray(out, dump_fields(e, names, n));
    return out;
}

static const char *const PASSENGER_KEYS[] = {"first_name", "last_name", "dob"};
static const char *const PAYMENT_KEYS[] = {"payment_id", "amount"};
static const char *const RES_FLIGHT_KEYS[] = {"flight_number", "origin", "destination", "date", "price"};

/* A float-typed field (GiftCard/Certificate amount): pydantic makes ints floats. */
static cJSON *as_float(const cJSON *v) {
    if (cJSON_IsNumber(v)) return json_float(v->valuedouble);
    return dup_or_null(v);
}

static cJSON *reservation_dump(const cJSON *r) {
    static const char *const scalar_head[] = {"reservation_id", "user_id", "origin", "destination", "flight_type",
                                              "cabin"};
    static const char *const scalar_tail[] = {"created_at", "total_baggages", "nonfree_baggages", "insurance",
                                              "status"};
    cJSON *out = cJSON_CreateObject();
    for (int i = 0; i < 6; i++) cJSON_AddItemToObject(out, scalar_head[i], dup_or_null(json_get(r, scalar_head[i])));
    cJSON_AddItemToObject(out, "flights", dump_list(json_get(r, "flights"), RES_FLIGHT_KEYS, 5));
    cJSON_AddItemToObject(out, "passengers", dump_list(json_get(r, "passengers"), PASSENGER_KEYS, 3));
    cJSON_AddItemToObject(out, "payment_history", dump_list(json_get(r, "payment_history"), PAYMENT_KEYS, 2));
    for (int i = 0; i < 5; i++) cJSON_AddItemToObject(out, scalar_tail[i], dup_or_null(json_get(r, scalar_tail[i])));
    return out;
}

static cJSON *payment_method_dump(const cJSON *pm) {
    const char *source = json_get_str(pm, "source");
    if (source && strcmp(source, "credit_card") == 0) {
        static const char *const keys[] = {"source", "id", "brand", "last_four"};
        return dump_fields(pm, keys, 4);
    }
    if (!cJSON_IsObject(pm)) return dup_or_null(pm);
    cJSON *out = cJSON_CreateObject();
    cJSON_AddItemToObject(out, "source", dup_or_null(json_get(pm, "source")));
    cJSON_AddItemToObject(out, "id", dup_or_null(json_get(pm, "id")));
    cJSON_AddItemToObject(out, "amount", as_float(json_get(pm, "amount")));
    return out;
}

static cJSON *user_dump(const cJSON *u) {
    static const char *const name_keys[] = {"first_name", "last_name"};
    static const char *const address_keys[] = {"address1", "address2", "city", "country", "state", "zip"};
    cJSON *out = cJSON_CreateObject();
    cJSON_AddItemToObject(out, "user_id", dup_or_null(json_get(u, "user_id")));
    cJSON_AddItemToObject(out, "name", dump_fields(json_get(u, "name"), name_keys, 2));
    cJSON_AddItemToObject(out, "address", dump_fields(json_get(u, "address"), address_keys, 6));
    cJSON_AddItemToObject(out, "email", dup_or_null(json_get(u, "email")));
    cJSON_AddItemToObject(out, "dob", dup_or_null(json_get(u, "dob")));
    const cJSON *pms = json_get(u, "payment_methods");
    cJSON *pm_out = cJSON_CreateObject();
    for (const cJSON *pm = cJSON_IsObject(pms) ? pms->child : NULL; pm; pm = pm->next)
        cJSON_AddItemToObject(pm_out, pm->string, payment_method_dump(pm));
    cJSON_AddItemToObject(out, "payment_methods", pm_out);
    cJSON_AddItemToObject(out, "saved_passengers", dump_list(json_get(u, "saved_passengers"), PASSENGER_KEYS, 3));
    cJSON_AddItemToObject(out, "membership", dup_or_null(json_get(u, "membership")));
    cJSON_AddItemToObject(out, "reservations", dup_or_null(json_get(u, "reservations")));
    return out;
}

/* DirectFlight(...) from a flight record and one of its date entries. */
static cJSON *direct_flight_dump(const cJSON *flight, const cJSON *day, const char *date) {
    cJSON *out = cJSON_CreateObject();
    cJSON_AddItemToObject(out, "flight_number", dup_or_null(json_get(flight, "flight_number")));
    cJSON_AddItemToObject(out, "origin", dup_or_null(json_get(flight, "origin")));
    cJSON_AddItemToObject(out, "destination", dup_or_null(json_get(flight, "destination")));
    cJSON_AddStringToObject(out, "status", "available");
    cJSON_AddItemToObject(out, "scheduled_departure_time_est",
                          dup_or_null(json_get(flight, "scheduled_departure_time_est")));
    cJSON_AddItemToObject(out, "scheduled_arrival_time_est",
                          dup_or_null(json_get(flight, "scheduled_arrival_time_est")));
    cJSON_AddItemToObject(out, "date", date ? cJSON_CreateString(date) : cJSON_CreateNull());
    cJSON_AddItemToObject(out, "available_seats", dup_or_null(json_get(day, "available_seats")));
    cJSON_AddItemToObject(out, "prices", dup_or_null(json_get(day, "prices")));
    return out;
}

/* ------------------------------------------------------------------ numbers */

/* A Python int-or-float intermediate (prices, totals, balances). */
typedef struct {
    double v;
    bool is_float;
} Num;

static Num num_of(const cJSON *v) {
    Num n = {0, false};
    if (cJSON_IsNumber(v)) n.v = v->valuedouble, n.is_float = json_is_float(v);
    else if (cJSON_IsTrue(v)) n.v = 1;
    return n;
}

static void num_str(char *buf, Num n) {
    if (n.is_float) py_float_repr(buf, n.v);
    else if (fabs(n.v) < 9.2e18) sprintf(buf, "%lld", (long long)n.v);
    else sprintf(buf, "%.0f", n.v);
}

static cJSON *num_json(Num n) { return n.is_float ? json_float(n.v) : json_int(n.v); }

/* ------------------------------------------------------------------ lookups */

static const cJSON *get_user(Env *env, ToolCtx *ctx, const char *user_id) {
    const cJSON *u = user_id ? db_get(env->db, "users", user_id) : NULL;
    if (!u) tool_error(ctx, "User %s not found", user_id ? user_id : "None");
    return u;
}

static const cJSON *get_reservation(Env *env, ToolCtx *ctx, const char *id) {
    const cJSON *r = id ? db_get(env->db, "reservations", id) : NULL;
    if (!r) tool_error(ctx, "Reservation %s not found", id ? id : "None");
    return r;
}

static const cJSON *get_flight(Env *env, ToolCtx *ctx, const char *number) {
    const cJSON *f = number ? db_get(env->db, "flights", number) : NULL;
    if (!f) tool_error(ctx, "Flight %s not found", number ? number : "None");
    return f;
}

/* _get_flight_instance: the flight's entry for a date. */
static const cJSON *get_flight_instance(Env *env, ToolCtx *ctx, const char *number, const char *date) {
    const cJSON *f = get_flight(env, ctx, number);
    if (!f) return NULL;
    const cJSON *day = json_get(json_get(f, "dates"), date);
    if (!day) tool_error(ctx, "Flight %s not found on date %s", number, date);
    return day;
}

static bool is_available(const cJSON *day) {
    const char *status = json_get_str(day, "status");
    return status && strcmp(status, "available") == 0;
}

/* KeyError(cabin) prints as the repr of the key. */
static cJSON *key_error(ToolCtx *ctx, const char *key) {
    SBuf b;
    sbuf_init(&b);
    py_repr_str(&b, key);
    tool_error(ctx, "%s", b.data);
    sbuf_free(&b);
    return NULL;
}

/* ------------------------------------------------------------------ search */

/* _search_direct_flight: DirectFlight dumps, appended to out in DB order. */
static void search_direct(Env *env, cJSON *out, const char *date, const char *origin, const char *destination,
                          const char *leave_after, const char *result_date) {
    DbIter it;
    const char *key;
    const cJSON *f;
    db_iter_init(&it, env->db, "flights");
    while (db_iter_next(&it, &key, &f)) {
        const char *o = json_get_str(f, "origin");
        const char *d = json_get_str(f, "destination");
        if (origin && (!o || strcmp(o, origin) != 0)) continue;
        if (destination && (!d || strcmp(d, destination) != 0)) continue;
        const cJSON *day = json_get(json_get(f, "dates"), date);
        if (!day || !is_available(day)) continue;
        if (leave_after) {
            const char *dep = json_get_str(f, "scheduled_departure_time_est");
            if (!dep || strcmp(dep, leave_after) < 0) continue;
        }
        cJSON_AddItemToArray(out, direct_flight_dump(f, day, result_date));
    }
}

static cJSON *airline_search_direct_flight(Env *env, const cJSON *args, ToolCtx *ctx) {
    cJSON *out = cJSON_CreateArray();
    search_direct(env, out, arg_str(args, "date"), arg_str(args, "origin"), arg_str(args, "destination"), NULL, NULL);
    return out;
}

/* Python's int() of a short str: whitespace, sign, digits with single
 * underscores between them. */
static bool py_int_parse(const char *s, long long *out) {
    while (*s == ' ' || (*s >= '\t' && *s <= '\r')) s++;
    bool neg = false;
    if (*s == '+' || *s == '-') neg = *s == '-', s++;
    if (!isdigit((unsigned char)*s)) return false;
    long long v = 0;
    for (; isdigit((unsigned char)*s) || *s == '_'; s++) {
        if (*s == '_') {
            if (!isdigit((unsigned char)s[1])) return false;
            continue;
        }
        if (v < 100000000000000000LL) v = v * 10 + (*s - '0');
    }
    while (*s == ' ' || (*s >= '\t' && *s <= '\r')) s++;
    if (*s) return false;
    *out = neg ? -v : v;
    return true;
}

/* date[-2:]: the last two code points. */
static const char *last_two_chars(const char *s) {
    const char *p = s + strlen(s);
    for (int n = 0; n < 2 && p > s;) {
        p--;
        if (((unsigned char)*p & 0xC0) != 0x80) n++;
    }
    return p;
}

static cJSON *airline_search_onestop_flight(Env *env, const cJSON *args, ToolCtx *ctx) {
    const char *origin = arg_str(args, "origin");
    const char *destination = arg_str(args, "destination");
    const char *date = arg_str(args, "date");
    cJSON *firsts = cJSON_CreateArray();
    search_direct(env, firsts, date, origin, NULL, NULL, date);
    cJSON *out = cJSON_CreateArray();
    for (const cJSON *r1 = firsts->child; r1; r1 = r1->next) {
        const char *arrival = json_get_str(r1, "scheduled_arrival_time_est");
        if (!arrival) arrival = "";
        /* τ²-bench builds the next day as f"2024-05-{int(date[-2:]) + 1}": no zero padding. */
        char date2_buf[64];
        const char *date2 = date;
        if (strstr(arrival, "+1")) {
            const char *tail = last_two_chars(date);
            long long day;
            if (!py_int_parse(tail, &day)) {
                SBuf b;
                sbuf_init(&b);
                py_repr_str(&b, tail);
                tool_error(ctx, "invalid literal for int() with base 10: %s", b.data);
                sbuf_free(&b);
                cJSON_Delete(firsts);
                cJSON_Delete(out);
                return NULL;
            }
            snprintf(date2_buf, sizeof date2_buf, "2024-05-%lld", day + 1);
            date2 = date2_buf;
        }
        cJSON *seconds = cJSON_CreateArray();
        search_direct(env, seconds, date2, json_get_str(r1, "destination"), destination, arrival, date2);
        for (cJSON *r2 = seconds->child; r2; r2 = r2->next) {
            cJSON *pair = cJSON_CreateArray();
            cJSON_AddItemToArray(pair, cJSON_Duplicate(r1, 1));
            cJSON_AddItemToArray(pair, cJSON_Duplicate(r2, 1));
            cJSON_AddItemToArray(out, pair);
        }
        cJSON_Delete(seconds);
    }
    cJSON_Delete(firsts);
    return out;
}

/* ------------------------------------------------------------------ reads */

static cJSON *airline_get_reservation_details(Env *env, const cJSON *args, ToolCtx *ctx) {
    const cJSON *r = get_reservation(env, ctx, arg_str(args, "reservation_id"));
    return r ? reservation_dump(r) : NULL;
}

static cJSON *airline_get_user_details(Env *env, const cJSON *args, ToolCtx *ctx) {
    const cJSON *u = get_user(env, ctx, arg_str(args, "user_id"));
    return u ? user_dump(u) : NULL;
}

static cJSON *airline_get_flight_status(Env *env, const cJSON *args, ToolCtx *ctx) {
    const cJSON *day = get_flight_instance(env, ctx, arg_str(args, "flight_number"), arg_str(args, "date"));
    if (!day) return NULL;
    const cJSON *status = json_get(day, "status");
    return cJSON_IsString(status) ? cJSON_CreateString(status->valuestring) : dup_or_null(status);
}

static cJSON *airline_list_all_airports(Env *env, const cJSON *args, ToolCtx *ctx) {
    static const char *const airports[][2] = {
        {"SFO", "San Francisco"}, {"JFK", "New York"},   {"LAX", "Los Angeles"},  {"ORD", "Chicago"},
        {"DFW", "Dallas"},        {"DEN", "Denver"},     {"SEA", "Seattle"},      {"ATL", "Atlanta"},
        {"MIA", "Miami"},         {"BOS", "Boston"},     {"PHX", "Phoenix"},      {"IAH", "Houston"},
        {"LAS", "Las Vegas"},     {"MCO", "Orlando"},    {"EWR", "Newark"},       {"CLT", "Charlotte"},
        {"MSP", "Minneapolis"},   {"DTW", "Detroit"},    {"PHL", "Philadelphia"}, {"LGA", "LaGuardia"},
    };
    cJSON *out = cJSON_CreateArray();
    for (size_t i = 0; i < sizeof airports / sizeof airports[0]; i++) {
        cJSON *a = cJSON_CreateObject();
        cJSON_AddStringToObject(a, "iata", airports[i][0]);
        cJSON_AddStringToObject(a, "city", airports[i][1]);
        cJSON_AddItemToArray(out, a);
    }
    return out;
}

static cJSON *airline_transfer_to_human_agents(Env *env, const cJSON *args, ToolCtx *ctx) {
    return cJSON_CreateString("Transfer successful");
}

/* ------------------------------------------------------------------ payments */

/* _payment_for_update: checks the method, deducts a gift card, and returns
 * the Payment dump to append (NULL with *failed false when total is 0). */
static cJSON *payment_for_update(Env *env, ToolCtx *ctx, const char *user_id, const char *payment_id, Num total,
                                 bool *failed) {
    *failed = true;
    const cJSON *user = db_get(env->db, "users", user_id);
    const cJSON *pm = json_get(json_get(user, "payment_methods"), payment_id);
    if (!pm) return tool_error(ctx, "Payment method not found");
    const char *source = json_get_str(pm, "source");
    if (source && strcmp(source, "certificate") == 0)
        return tool_error(ctx, "Certificate cannot be used to update reservation");
    bool gift = source && strcmp(source, "gift_card") == 0;
    if (gift && num_of(json_get(pm, "amount")).v < total.v) return tool_error(ctx, "Gift card balance is not enough");
    if (gift) {
        cJSON *mpm = json_get(json_get(db_get_mut(env->db, "users", user_id), "payment_methods"), payment_id);
        /* GiftCard.amount is a float, so the difference is one too. */
        json_set(mpm, "amount", json_float(num_of(json_get(mpm, "amount")).v - total.v));
    }
    if (total.v == 0) {
        *failed = false;
        return NULL;
    }
    /* Payment(amount=total_price): an int field. */
    ValErrs e = {{0}, 0};
    sbuf_init(&e.lines);
    cJSON *amount = num_json(total);
    double x;
    bool ok = check_int(&e, "amount", amount, &x);
    cJSON_Delete(amount);
    if (!ok) return verr_fail(ctx, &e, "Payment");
    sbuf_free(&e.lines);
    cJSON *p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "payment_id", payment_id);
    cJSON_AddItemToObject(p, "amount", json_int(x));
    *failed = false;
    return p;
}

/* ------------------------------------------------------------------ book_reservation */

/* Reservation(...) validation of the arguments τ²-bench passes through
 * unchecked: the literals and the two baggage ints. */
static bool validate_reservation_args(ToolCtx *ctx, const cJSON *args, double *total_bags, double *nonfree_bags) {
    ValErrs e = {{0}, 0};
    sbuf_init(&e.lines);
    check_literal(&e, "flight_type", json_get(args, "flight_type"), FLIGHT_TYPES, 2);
    check_literal(&e, "cabin", json_get(args, "cabin"), CABINS, 3);
    check_int(&e, "total_baggages", json_get(args, "total_baggages"), total_bags);
    check_int(&e, "nonfree_baggages", json_get(args, "nonfree_baggages"), nonfree_bags);
    check_literal(&e, "insurance", json_get(args, "insurance"), INSURANCES, 2);
    if (e.n) {
        verr_fail(ctx, &e, "Reservation");
        return false;
    }
    sbuf_free(&e.lines);
    return true;
}

/* One flight of a new booking or of a change, checked as τ²-bench does
 * and in its order (the flight, its date, its status, the cabin, n_pass
 * seats in it, the cabin's price): the segment's record (flight number,
 * origin, destination, date, price), with its price times n_pass added to
 * *total; or NULL with the tool's error. */
static cJSON *segment_priced(Env *env, ToolCtx *ctx, const char *number, const char *date, const char *cabin,
                             int n_pass, Num *total) {
    const cJSON *flight = get_flight(env, ctx, number);
    if (!flight) return NULL;
    const cJSON *day = get_flight_instance(env, ctx, number, date);
    if (!day) return NULL;
    if (!is_available(day)) {
        tool_error(ctx, "Flight %s not available on date %s", number, date);
        return NULL;
    }
    const cJSON *seats = json_get(json_get(day, "available_seats"), cabin);
    if (!seats) {
        key_error(ctx, cabin);
        return NULL;
    }
    if (seats->valuedouble < n_pass) {
        tool_error(ctx, "Not enough seats on flight %s", number);
        return NULL;
    }
    const cJSON *price = json_get(json_get(day, "prices"), cabin);
    if (!price) {
        key_error(ctx, cabin);
        return NULL;
    }
    cJSON *rf = cJSON_CreateObject();
    cJSON_AddStringToObject(rf, "flight_number", number);
    cJSON_AddItemToObject(rf, "origin", dup_or_null(json_get(flight, "origin")));
    cJSON_AddItemToObject(rf, "destination", dup_or_null(json_get(flight, "destination")));
    cJSON_AddStringToObject(rf, "date", date);
    cJSON_AddItemToObject(rf, "price", cJSON_Duplicate(price, 1));
    Num p = num_of(price);
    total->v += p.v * n_pass;
    total->is_float = total->is_float || p.is_float;
    return rf;
}

static cJSON *airline_book_reservation(Env *env, const cJSON *args, ToolCtx *ctx) {
    const char *user_id = arg_str(args, "user_id");
    const char *cabin = arg_str(args, "cabin");
    cJSON *flights = NULL, *passengers = NULL, *payments = NULL, *res_flights = NULL;
    cJSON *result = NULL;
    if (!(flights = models_from_dicts(ctx, &FLIGHT_INFO, json_get(args, "flights")))) goto done;
    if (!(passengers = models_from_dicts(ctx, &PASSENGER, json_get(args, "passengers")))) goto done;
    if (!(payments = models_from_dicts(ctx, &PAYMENT, json_get(args, "payment_methods")))) goto done;
    if (!get_user(env, ctx, user_id)) goto done;
    const char *reservation_id = NULL;
    for (int i = 0; i < 3 && !reservation_id; i++)
        if (!db_get(env->db, "reservations", RESERVATION_IDS[i])) reservation_id = RESERVATION_IDS[i];
    if (!reservation_id) {
        tool_error(ctx, "Too many reservations");
        goto done;
    }
    double total_bags = 0, nonfree_bags = 0;
    if (!validate_reservation_args(ctx, args, &total_bags, &nonfree_bags)) goto done;

    /* Flights: availability, seats and price; Python keeps the raw
     * nonfree_baggages argument for the fee, so a float stays a float. */
    int n_pass = cJSON_GetArraySize(passengers);
    Num total = {0, false};
    res_flights = cJSON_CreateArray();
    for (const cJSON *fi = flights->child; fi; fi = fi->next) {
        const char *number = json_get_str(fi, "flight_number");
        const char *date = json_get_str(fi, "date");
        cJSON *rf = segment_priced(env, ctx, number, date, cabin, n_pass, &total);
        if (!rf) goto done;
        cJSON_AddItemToArray(res_flights, rf);
    }
    const char *insurance = arg_str(args, "insurance");
    if (insurance && strcmp(insurance, "yes") == 0) total.v += 30.0 * n_pass;
    Num nonfree_raw = num_of(json_get(args, "nonfree_baggages"));
    total.v += 50 * nonfree_raw.v;
    total.is_float = total.is_float || nonfree_raw.is_float;

    const cJSON *user = db_get(env->db, "users", user_id);
    const cJSON *methods = json_get(user, "payment_methods");
    double paid = 0;
    for (const cJSON *p = payments->child; p; p = p->next) {
        const char *pid = json_get_str(p, "payment_id");
        double amount = json_get(p, "amount")->valuedouble;
        const cJSON *pm = json_get(methods, pid);
        if (!pm) {
            tool_error(ctx, "Payment method %s not found", pid);
            goto done;
        }
        const char *source = json_get_str(pm, "source");
        if (source && (strcmp(source, "gift_card") == 0 || strcmp(source, "certificate") == 0) &&
            num_of(json_get(pm, "amount")).v < amount) {
            tool_error(ctx, "Not enough balance in payment method %s", pid);
            goto done;
        }
        paid += amount;
    }
    if (paid != total.v) {
        char tbuf[64];
        num_str(tbuf, total);
        tool_error(ctx, "Payment amount does not add up, total price is %s, but paid %.0f", tbuf, paid);
        goto done;
    }

    /* Checks passed: deduct. A certificate listed twice is popped by the
     * first use and the second lookup raises KeyError, keeping what was
     * already deducted, as in Python. */
    cJSON *muser = db_get_mut(env->db, "users", user_id);
    cJSON *mmethods = json_get(muser, "payment_methods");
    for (const cJSON *p = payments->child; p; p = p->next) {
        const char *pid = json_get_str(p, "payment_id");
        double amount = json_get(p, "amount")->valuedouble;
        cJSON *pm = json_get(mmethods, pid);
        if (!pm) {
            key_error(ctx, pid);
            goto done;
        }
        const char *source = json_get_str(pm, "source");
        if (source && strcmp(source, "gift_card") == 0) {
            Num bal = num_of(json_get(pm, "amount"));
            json_set(pm, "amount", json_float(bal.v - amount));
        } else if (source && strcmp(source, "certificate") == 0) {
            cJSON_DeleteItemFromObjectCaseSensitive(mmethods, pid);
        }
    }
    for (const cJSON *rf = res_flights->child; rf; rf = rf->next) {
        cJSON *f = db_get_mut(env->db, "flights", json_get_str(rf, "flight_number"));
        cJSON *seats = json_get(json_get(json_get(json_get(f, "dates"), json_get_str(rf, "date")), "available_seats"),
                                cabin);
        if (seats) cJSON_SetNumberValue(seats, seats->valuedouble - n_pass);
    }

    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "reservation_id", reservation_id);
    cJSON_AddStringToObject(r, "user_id", user_id);
    cJSON_AddItemToObject(r, "origin", dup_or_null(json_get(args, "origin")));
    cJSON_AddItemToObject(r, "destination", dup_or_null(json_get(args, "destination")));
    cJSON_AddItemToObject(r, "flight_type", dup_or_null(json_get(args, "flight_type")));
    cJSON_AddStringToObject(r, "cabin", cabin);
    cJSON_AddItemToObject(r, "flights", res_flights);
    res_flights = NULL;
    cJSON_AddItemToObject(r, "passengers", passengers);
    passengers = NULL;
    cJSON_AddItemToObject(r, "payment_history", payments);
    payments = NULL;
    cJSON_AddStringToObject(r, "created_at", NOW);
    cJSON_AddItemToObject(r, "total_baggages", json_int(total_bags));
    cJSON_AddItemToObject(r, "nonfree_baggages", json_int(nonfree_bags));
    cJSON_AddItemToObject(r, "insurance", dup_or_null(json_get(args, "insurance")));
    cJSON_AddItemToObject(r, "status", cJSON_CreateNull());
    result = cJSON_Duplicate(r, 1);
    db_put(env->db, "reservations", reservation_id, r);
    cJSON *list = json_get(muser, "reservations");
    if (cJSON_IsArray(list)) cJSON_AddItemToArray(list, cJSON_CreateString(reservation_id));

done:
    cJSON_Delete(flights);
    cJSON_Delete(passengers);
    cJSON_Delete(payments);
    cJSON_Delete(res_flights);
    return result;
}

/* ------------------------------------------------------------------ other writes */

static cJSON *airline_cancel_reservation(Env *env, const cJSON *args, ToolCtx *ctx) {
    const char *id = arg_str(args, "reservation_id");
    if (!get_reservation(env, ctx, id)) return NULL;
    cJSON *r = db_get_mut(env->db, "reservations", id);
    cJSON *history = json_get(r, "payment_history");
    if (cJSON_IsArray(history)) {
        int n = cJSON_GetArraySize(history);
        cJSON *p = history->child;
        for (int i = 0; i < n && p; i++, p = p->next) {
            cJSON *refund = cJSON_CreateObject();
            cJSON_AddItemToObject(refund, "payment_id", dup_or_null(json_get(p, "payment_id")));
            cJSON_AddItemToObject(refund, "amount", json_int(-num_of(json_get(p, "amount")).v + 0.0));
            cJSON_AddItemToArray(history, refund);
        }
    }
    json_set(r, "status", cJSON_CreateString("cancelled"));
    /* τ²-bench does not release the seats. */
    return reservation_dump(r);
}

static cJSON *airline_send_certificate(Env *env, const cJSON *args, ToolCtx *ctx) {
    const char *user_id = arg_str(args, "user_id");
    const cJSON *amount = json_get(args, "amount");
    const cJSON *user = get_user(env, ctx, user_id);
    if (!user) return NULL;
    const cJSON *methods = json_get(user, "payment_methods");
    for (int i = 0; i < 3; i++) {
        const char *pid = CERTIFICATE_IDS[i];
        if (json_get(methods, pid)) continue;
        cJSON *cert = cJSON_CreateObject();
        cJSON_AddStringToObject(cert, "source", "certificate");
        cJSON_AddStringToObject(cert, "id", pid);
        cJSON_AddItemToObject(cert, "amount", json_float(num_of(amount).v));
        cJSON *mmethods = json_get(db_get_mut(env->db, "users", user_id), "payment_methods");
        cJSON_AddItemToObject(mmethods, pid, cert);
        char abuf[JSON_NUMBER_BUFSIZE], msg[512];
        py_number_repr(abuf, amount);
        snprintf(msg, sizeof msg, "Certificate %s added to user %s with amount %s.", pid, user_id, abuf);
        return cJSON_CreateString(msg);
    }
    return tool_error(ctx, "Too many certificates");
}

static cJSON *airline_update_reservation_baggages(Env *env, const cJSON *args, ToolCtx *ctx) {
    const char *id = arg_str(args, "reservation_id");
    const cJSON *r = get_reservation(env, ctx, id);
    if (!r) return NULL;
    const char *user_id = json_get_str(r, "user_id");
    if (!get_user(env, ctx, user_id)) return NULL;
    /* 50 * max(0, nonfree_baggages - reservation.nonfree_baggages) */
    Num nonfree = num_of(json_get(args, "nonfree_baggages"));
    Num old = num_of(json_get(r, "nonfree_baggages"));
    Num diff = {nonfree.v - old.v, nonfree.is_float || old.is_float};
    Num total = {0, false};
    if (diff.v > 0) total.v = 50 * diff.v, total.is_float = diff.is_float;
    bool failed;
    cJSON *payment = payment_for_update(env, ctx, user_id, arg_str(args, "payment_id"), total, &failed);
    if (failed) return NULL;
    cJSON *mr = db_get_mut(env->db, "reservations", id);
    if (payment) cJSON_AddItemToArray(json_get(mr, "payment_history"), payment);
    json_set(mr, "total_baggages", cJSON_Duplicate(json_get(args, "total_baggages"), 1));
    json_set(mr, "nonfree_baggages", cJSON_Duplicate(json_get(args, "nonfree_baggages"), 1));
    return reservation_dump(mr);
}

static cJSON *airline_update_reservation_flights(Env *env, const cJSON *args, ToolCtx *ctx) {
    const char *id = arg_str(args, "reservation_id");
    const char *cabin = arg_str(args, "cabin");
    cJSON *flights = models_from_dicts(ctx, &FLIGHT_INFO, json_get(args, "flights"));
    if (!flights) return NULL;
    cJSON *new_flights = NULL;
    cJSON *result = NULL;
    const cJSON *r = get_reservation(env, ctx, id);
    if (!r) goto done;
    const char *user_id = json_get_str(r, "user_id");
    if (!get_user(env, ctx, user_id)) goto done;
    const cJSON *old_flights = json_get(r, "flights");
    const char *old_cabin = json_get_str(r, "cabin");
    bool same_cabin = old_cabin && strcmp(old_cabin, cabin) == 0;
    int n_pass = cJSON_GetArraySize(json_get(r, "passengers"));

    Num total = {0, false};
    new_flights = cJSON_CreateArray();
    for (const cJSON *fi = flights->child; fi; fi = fi->next) {
        const char *number = json_get_str(fi, "flight_number");
        const char *date = json_get_str(fi, "date");
        /* An unchanged segment keeps its booked price. */
        const cJSON *match = NULL;
        for (const cJSON *of = same_cabin && cJSON_IsArray(old_flights) ? old_flights->child : NULL; of && !match;
             of = of->next) {
            const char *on = json_get_str(of, "flight_number");
            const char *od = json_get_str(of, "date");
            if (on && od && strcmp(on, number) == 0 && strcmp(od, date) == 0) match = of;
        }
        if (match) {
            Num p = num_of(json_get(match, "price"));
            total.v += p.v * n_pass;
            total.is_float = total.is_float || p.is_float;
            cJSON_AddItemToArray(new_flights, cJSON_Duplicate(match, 1));
            continue;
        }
        cJSON *rf = segment_priced(env, ctx, number, date, cabin, n_pass, &total);
        if (!rf) goto done;
        cJSON_AddItemToArray(new_flights, rf);
    }
    /* Deduct what the old segments cost. */
    Num old_sum = {0, false};
    for (const cJSON *of = cJSON_IsArray(old_flights) ? old_flights->child : NULL; of; of = of->next) {
        Num p = num_of(json_get(of, "price"));
        old_sum.v += p.v;
        old_sum.is_float = old_sum.is_float || p.is_float;
    }
    total.v -= old_sum.v * n_pass;
    total.is_float = total.is_float || old_sum.is_float;

    bool failed;
    cJSON *payment = payment_for_update(env, ctx, user_id, arg_str(args, "payment_id"), total, &failed);
    if (failed) goto done;
    cJSON *mr = db_get_mut(env->db, "reservations", id);
    if (payment) cJSON_AddItemToArray(json_get(mr, "payment_history"), payment);
    json_set(mr, "flights", new_flights);
    new_flights = NULL;
    json_set(mr, "cabin", cJSON_CreateString(cabin));
    /* τ²-bench leaves the seat counts alone here. */
    result = reservation_dump(mr);
done:
    cJSON_Delete(flights);
    cJSON_Delete(new_flights);
    return result;
}

static cJSON *airline_update_reservation_passengers(Env *env, const cJSON *args, ToolCtx *ctx) {
    cJSON *passengers = models_from_dicts(ctx, &PASSENGER, json_get(args, "passengers"));
    if (!passengers) return NULL;
    const char *id = arg_str(args, "reservation_id");
    const cJSON *r = get_reservation(env, ctx, id);
    if (!r) {
        cJSON_Delete(passengers);
        return NULL;
    }
    if (cJSON_GetArraySize(passengers) != cJSON_GetArraySize(json_get(r, "passengers"))) {
        cJSON_Delete(passengers);
        return tool_error(ctx, "Number of passengers does not match");
    }
    cJSON *mr = db_get_mut(env->db, "reservations", id);
    json_set(mr, "passengers", passengers);
    return reservation_dump(mr);
}

/* ------------------------------------------------------------------ calculate */

/* calculate() runs Python's eval on an expression of digits, + - * / ( ) .
 * and spaces, then str(round(float(result), 2)). Within that alphabet the
 * language is: numbers, unary +/-, + - * / // **, parentheses, calls (a
 * number "called" raises TypeError), the empty tuple and `...`. This is a
 * small compiler for it: a tokenizer with CPython's tokenizer errors, a
 * parser that reports syntax errors as CPython 3.11 words them, and an
 * evaluator with Python's int/float semantics. Integers are exact to 2^127;
 * beyond that they are carried as long doubles (Python's are unbounded). */

/* CPython's limits, as 3.11 reaches them from a shallow call stack: 200
 * nested parentheses (tokenizer), about 2988 nested unary operators (the
 * parser's stack, a MemoryError with an empty message) and about 2990
 * nested operations (the compiler's recursion limit). */
enum { CALC_MAX_NEST = 200, CALC_MAX_UNARY = 2987, CALC_MAX_TREE = 2991 };

typedef enum { T_NUM, T_OP, T_ELLIPSIS, T_END } TokKind;
typedef struct {
    TokKind kind;
    char op[3]; /* "+", "-", "*", "/", "**", "//", "(", ")", "." */
    const char *start;
    int len;
    int level; /* paren depth after this token, as CPython records it */
} CalcTok;

typedef enum { N_NUM, N_TUPLE, N_ELLIPSIS, N_NEG, N_POS, N_BIN, N_CALL } NodeKind;
typedef struct {
    NodeKind kind;
    char op[3];
    int a, b;  /* children; b = -1 when absent (call without argument) */
    int tok;   /* the number token of N_NUM */
    int depth; /* height of the subtree, bounding the evaluator's recursion */
} CalcNode;

typedef struct {
    CalcTok *toks;
    int ntok, cap;
    CalcNode *nodes;
    int nnode, ncap;
    int pos;
    int maxfetch; /* furthest token the parser looked at */
    int depth;
    bool too_deep;
    char err[160]; /* the SyntaxError or runtime error text */
} Calc;

static void calc_push_tok(Calc *c, TokKind kind, const char *op, const char *start, int len, int level) {
    if (c->ntok == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 16;
        c->toks = xrealloc(c->toks, (size_t)c->cap * sizeof *c->toks);
    }
    CalcTok *t = &c->toks[c->ntok++];
    t->kind = kind;
    snprintf(t->op, sizeof t->op, "%s", op ? op : "");
    t->start = start;
    t->len = len;
    t->level = level;
}

/* Tokenize; returns false with c->err set on a tokenizer error (these
 * outrank every parser error in CPython's reporting). */
static bool calc_tokenize(Calc *c, const char *s, int *final_level) {
    int level = 0;
    const char *p = s;
    while (*p) {
        if (*p == ' ') {
            p++;
            continue;
        }
        const char *start = p;
        if (isdigit((unsigned char)*p) || (*p == '.' && isdigit((unsigned char)p[1]))) {
            bool is_float = false;
            if (*p == '.') {
                is_float = true;
                p++;
                while (isdigit((unsigned char)*p)) p++;
            } else {
                while (isdigit((unsigned char)*p)) p++;
                if (*p == '.') {
                    is_float = true;
                    p++;
                    while (isdigit((unsigned char)*p)) p++;
                }
            }
            if (!is_float && start[0] == '0') {
                for (const char *q = start; q < p; q++)
                    if (*q != '0') {
                        snprintf(c->err, sizeof c->err,
                                 "leading zeros in decimal integer literals are not permitted; use an 0o prefix "
                                 "for octal integers (<string>, line 1)");
                        return false;
                    }
            }
            calc_push_tok(c, T_NUM, NULL, start, (int)(p - start), level);
            continue;
        }
        if (p[0] == '.' && p[1] == '.' && p[2] == '.') {
            calc_push_tok(c, T_ELLIPSIS, NULL, start, 3, level);
            p += 3;
            continue;
        }
        if ((p[0] == '*' && p[1] == '*') || (p[0] == '/' && p[1] == '/')) {
            char op[3] = {p[0], p[1], 0};
            calc_push_tok(c, T_OP, op, start, 2, level);
            p += 2;
            continue;
        }
        char op[2] = {*p, 0};
        if (*p == '(') {
            if (++level > CALC_MAX_NEST) {
                snprintf(c->err, sizeof c->err, "too many nested parentheses (<string>, line 1)");
                return false;
            }
        } else if (*p == ')') {
            if (level == 0) {
                snprintf(c->err, sizeof c->err, "unmatched ')' (<string>, line 1)");
                return false;
            }
            level--;
        }
        calc_push_tok(c, T_OP, op, start, 1, level);
        p++;
    }
    calc_push_tok(c, T_END, NULL, p, 0, level);
    *final_level = level;
    return true;
}

static const CalcTok *calc_peek(Calc *c) {
    if (c->pos > c->maxfetch) c->maxfetch = c->pos;
    return &c->toks[c->pos];
}

static bool calc_is_op(Calc *c, const char *op) {
    const CalcTok *t = calc_peek(c);
    return t->kind == T_OP && strcmp(t->op, op) == 0;
}

static int calc_node(Calc *c, NodeKind kind, const char *op, int a, int b, int tok) {
    if (c->nnode == c->ncap) {
        c->ncap = c->ncap ? 2 * c->ncap : 32;
        c->nodes = xrealloc(c->nodes, (size_t)c->ncap * sizeof *c->nodes);
    }
    CalcNode *n = &c->nodes[c->nnode];
    n->kind = kind;
    snprintf(n->op, sizeof n->op, "%s", op ? op : "");
    n->a = a;
    n->b = b;
    n->tok = tok;
    n->depth = 1;
    if (a >= 0 && c->nodes[a].depth + 1 > n->depth) n->depth = c->nodes[a].depth + 1;
    if (b >= 0 && c->nodes[b].depth + 1 > n->depth) n->depth = c->nodes[b].depth + 1;
    return c->nnode++;
}

/* Second-pass state: CPython's invalid_expression rule ("Perhaps you
 * forgot a comma?") fires where, inside parentheses, one complete
 * expression is directly followed by another. */
typedef struct {
    bool active;
    bool raised;
    const char *msg; /* the message raised */
} CalcSecond;

static int calc_expr(Calc *c, CalcSecond *sp);

static int calc_sum(Calc *c, CalcSecond *sp);
static int calc_expr(Calc *c, CalcSecond *sp);

/* After "(": a starred item ("*x" of a tuple, "**x" of a call). Nothing in
 * this alphabet can complete one (that needs a comma), but the parser
 * reads through it, and "(*x)" / "(**x)" have their own messages. */
static int calc_starred(Calc *c, CalcSecond *sp) {
    bool dbl = calc_is_op(c, "**");
    c->pos++;
    int e = calc_expr(c, sp);
    if (sp->raised) return -1;
    if (e >= 0 && sp->active && calc_is_op(c, ")")) {
        sp->raised = true;
        sp->msg = dbl ? "cannot use double starred expression here" : "cannot use starred expression here";
    }
    return -1;
}

/* The parser is a PEG like CPython's: an operator whose operand fails is
 * left unconsumed (the shorter parse wins), and the caller fails on it. */
static int calc_atom(Calc *c, CalcSecond *sp) {
    const CalcTok *t = calc_peek(c);
    if (t->kind == T_NUM) return calc_node(c, N_NUM, NULL, -1, -1, c->pos++);
    if (t->kind == T_ELLIPSIS) return c->pos++, calc_node(c, N_ELLIPSIS, NULL, -1, -1, -1);
    if (t->kind == T_OP && strcmp(t->op, "(") == 0) {
        c->pos++;
        if (calc_is_op(c, ")")) return c->pos++, calc_node(c, N_TUPLE, NULL, -1, -1, -1);
        if (calc_is_op(c, "*") || calc_is_op(c, "**")) return calc_starred(c, sp);
        int e = calc_expr(c, sp);
        if (e < 0 || !calc_is_op(c, ")")) return -1;
        c->pos++;
        return e;
    }
    return -1;
}

static int calc_primary(Calc *c, CalcSecond *sp) {
    int a = calc_atom(c, sp);
    if (a >= 0 && calc_is_op(c, ".")) {
        /* An attribute trailer: the parser looks at the token after the dot for a name. */
        c->pos++;
        calc_peek(c);
        c->pos--;
        return a;
    }
    while (a >= 0 && calc_is_op(c, "(")) {
        int save = c->pos;
        c->pos++;
        int arg = -1;
        bool ok = true;
        if (calc_is_op(c, "*")) {
            /* f(*x) is valid syntax; calling a number fails before the
             * unpacking matters. */
            c->pos++;
            arg = calc_expr(c, sp);
            ok = arg >= 0 && calc_is_op(c, ")");
        } else if (calc_is_op(c, "**")) {
            c->pos++;
            (void)calc_expr(c, sp);
            ok = false;
        } else if (!calc_is_op(c, ")")) {
            arg = calc_expr(c, sp);
            ok = arg >= 0 && calc_is_op(c, ")");
        }
        if (sp->raised) return -1;
        if (!ok) {
            c->pos = save;
            break;
        }
        c->pos++;
        a = calc_node(c, N_CALL, NULL, a, arg, -1);
    }
    return a;
}

static int calc_factor(Calc *c, CalcSecond *sp);

static int calc_power(Calc *c, CalcSecond *sp) {
    int a = calc_primary(c, sp);
    if (a >= 0 && calc_is_op(c, "**")) {
        int save = c->pos++;
        int b = calc_factor(c, sp);
        if (sp->raised) return -1;
        if (b < 0) c->pos = save;
        else a = calc_node(c, N_BIN, "**", a, b, -1);
    }
    return a;
}

static int calc_factor(Calc *c, CalcSecond *sp) {
    if (++c->depth > CALC_MAX_UNARY) {
        c->too_deep = true;
        c->depth--;
        return -1;
    }
    int r;
    if (calc_is_op(c, "+") || calc_is_op(c, "-")) {
        bool neg = calc_is_op(c, "-");
        c->pos++;
        int a = calc_factor(c, sp);
        r = a < 0 ? -1 : calc_node(c, neg ? N_NEG : N_POS, NULL, a, -1, -1);
    } else {
        r = calc_power(c, sp);
    }
    c->depth--;
    return r;
}

static int calc_term(Calc *c, CalcSecond *sp) {
    int a = calc_factor(c, sp);
    while (a >= 0 && (calc_is_op(c, "*") || calc_is_op(c, "/") || calc_is_op(c, "//"))) {
        char op[3];
        snprintf(op, sizeof op, "%s", c->toks[c->pos].op);
        int save = c->pos++;
        int b = calc_factor(c, sp);
        if (sp->raised) return -1;
        if (b < 0) {
            c->pos = save;
            break;
        }
        a = calc_node(c, N_BIN, op, a, b, -1);
    }
    return a;
}

static int calc_sum(Calc *c, CalcSecond *sp) {
    int a = calc_term(c, sp);
    while (a >= 0 && (calc_is_op(c, "+") || calc_is_op(c, "-"))) {
        char op[3];
        snprintf(op, sizeof op, "%s", c->toks[c->pos].op);
        int save = c->pos++;
        int b = calc_term(c, sp);
        if (sp->raised) return -1;
        if (b < 0) {
            c->pos = save;
            break;
        }
        a = calc_node(c, N_BIN, op, a, b, -1);
    }
    return a;
}

static bool calc_starts_expr(const CalcTok *t) {
    if (t->kind == T_NUM || t->kind == T_ELLIPSIS) return true;
    return t->kind == T_OP && (strcmp(t->op, "(") == 0 || strcmp(t->op, "+") == 0 || strcmp(t->op, "-") == 0);
}

static int calc_expr(Calc *c, CalcSecond *sp) {
    if (sp->raised) return -1;
    int a = calc_sum(c, sp);
    if (sp->raised || !sp->active || a < 0) return sp->raised ? -1 : a;
    /* invalid_expression: a, then a complete b, raised when a's last token
     * is inside parentheses. b is parsed either way, and its lookahead
     * reaching an unclosed end raises "was never closed" (see calc_parse). */
    int after_a = c->pos;
    if (calc_starts_expr(calc_peek(c))) {
        CalcSecond plain = {false, false, NULL};
        int b = calc_sum(c, &plain);
        if (b >= 0 && after_a > 0 && c->toks[after_a - 1].level > 0) {
            sp->raised = true;
            sp->msg = "invalid syntax. Perhaps you forgot a comma?";
            return -1;
        }
        c->pos = after_a;
    }
    return a;
}

/* Parse tokens into nodes; false with c->err set on a SyntaxError. */
static bool calc_parse(Calc *c, int final_level, int *root) {
    CalcSecond first = {false, false, NULL};
    c->pos = 0;
    c->maxfetch = 0;
    int r = calc_expr(c, &first);
    if (r >= 0 && calc_peek(c)->kind == T_END) {
        if (c->nodes[r].depth > CALC_MAX_TREE) {
            snprintf(c->err, sizeof c->err, "maximum recursion depth exceeded during compilation");
            return false;
        }
        *root = r;
        return true;
    }
    if (c->too_deep) {
        c->err[0] = '\0'; /* MemoryError() */
        return false;
    }
    if (c->maxfetch == c->ntok - 1 && final_level > 0) {
        snprintf(c->err, sizeof c->err, "'(' was never closed (<string>, line 1)");
        return false;
    }
    /* Second pass, looking for the comma case; its lookahead may reach the end. */
    CalcSecond second = {true, false, NULL};
    c->pos = 0;
    c->nnode = 0;
    (void)calc_expr(c, &second);
    if (c->maxfetch == c->ntok - 1 && final_level > 0)
        snprintf(c->err, sizeof c->err, "'(' was never closed (<string>, line 1)");
    else if (second.msg)
        snprintf(c->err, sizeof c->err, "%s (<string>, line 1)", second.msg);
    else
        snprintf(c->err, sizeof c->err, "invalid syntax (<string>, line 1)");
    return false;
}

/* ---- evaluation ---- */

typedef enum { V_INT, V_BIGINT, V_FLOAT, V_TUPLE, V_ELLIPSIS, V_COMPLEX } ValKind;
typedef struct {
    ValKind kind;
    __int128 i;    /* V_INT */
    double f;      /* V_FLOAT */
    long double l; /* V_BIGINT's approximation */
} CalcVal;

static const char *calc_type_name(const CalcVal *v) {
    switch (v->kind) {
    case V_INT:
    case V_BIGINT: return "int";
    case V_FLOAT: return "float";
    case V_TUPLE: return "tuple";
    case V_ELLIPSIS: return "ellipsis";
    default: return "complex";
    }
}

static bool calc_is_num(const CalcVal *v) { return v->kind == V_INT || v->kind == V_BIGINT || v->kind == V_FLOAT; }

/* float(int): OverflowError beyond the double range. */
static bool calc_to_double(Calc *c, const CalcVal *v, double *out) {
    if (v->kind == V_INT) return *out = (double)v->i, true;
    if (v->kind == V_FLOAT) return *out = v->f, true;
    if (v->kind == V_BIGINT) {
        if (!isfinite(v->l) || fabsl(v->l) > DBL_MAX) {
            snprintf(c->err, sizeof c->err, "int too large to convert to float");
            return false;
        }
        return *out = (double)v->l, true;
    }
    return false;
}

static CalcVal calc_int(__int128 i) {
    CalcVal v = {V_INT, i, 0, 0};
    return v;
}

static CalcVal calc_bigint(long double approx) {
    CalcVal v = {V_BIGINT, 0, 0, approx};
    return v;
}

static CalcVal calc_float(double f) {
    CalcVal v = {V_FLOAT, 0, f, 0};
    return v;
}

static long double calc_approx(const CalcVal *v) {
    return v->kind == V_INT ? (long double)v->i : v->kind == V_BIGINT ? v->l : (long double)v->f;
}

/* Python's float floor division (floatobject.c). */
static double py_float_floordiv(double vx, double wx) {
    double mod = fmod(vx, wx);
    double div = (vx - mod) / wx;
    if (mod) {
        if ((wx < 0) != (mod < 0)) div -= 1.0;
    }
    double floordiv;
    if (div) {
        floordiv = floor(div);
        if (div - floordiv > 0.5) floordiv += 1.0;
    } else {
        floordiv = copysign(0.0, vx / wx);
    }
    return floordiv;
}

static bool calc_unsupported(Calc *c, const char *op, const CalcVal *a, const CalcVal *b) {
    snprintf(c->err, sizeof c->err, "unsupported operand type(s) for %s: '%s' and '%s'",
             strcmp(op, "**") == 0 ? "** or pow()" : op, calc_type_name(a), calc_type_name(b));
    return false;
}

/* float ** float with Python's special cases. */
static bool calc_float_pow(Calc *c, double x, double y, CalcVal *out) {
    if (y == 0) return *out = calc_float(1.0), true;
    if (x == 1.0) return *out = calc_float(1.0), true;
    if (x == 0 && y < 0) {
        snprintf(c->err, sizeof c->err, "0.0 cannot be raised to a negative power");
        return false;
    }
    if (x < 0 && isfinite(x) && isfinite(y) && y != floor(y)) {
        out->kind = V_COMPLEX;
        return true;
    }
    double r = pow(x, y);
    if (isinf(r) && isfinite(x) && isfinite(y)) {
        snprintf(c->err, sizeof c->err, "(34, 'Numerical result out of range')");
        return false;
    }
    *out = calc_float(r);
    return true;
}

static bool calc_binop(Calc *c, const char *op, const CalcVal *a, const CalcVal *b, CalcVal *out) {
    /* Sequences and odd types first. */
    if (a->kind == V_TUPLE || b->kind == V_TUPLE || a->kind == V_ELLIPSIS || b->kind == V_ELLIPSIS) {
        if (strcmp(op, "+") == 0 && a->kind == V_TUPLE) {
            if (b->kind == V_TUPLE) {
                out->kind = V_TUPLE;
                return true;
            }
            snprintf(c->err, sizeof c->err, "can only concatenate tuple (not \"%s\") to tuple", calc_type_name(b));
            return false;
        }
        if (strcmp(op, "*") == 0 && (a->kind == V_TUPLE || b->kind == V_TUPLE)) {
            const CalcVal *n = a->kind == V_TUPLE ? b : a;
            if (n->kind == V_INT) {
                out->kind = V_TUPLE;
                return true;
            }
            if (n->kind == V_BIGINT) {
                snprintf(c->err, sizeof c->err, "cannot fit 'int' into an index-sized integer");
                return false;
            }
            snprintf(c->err, sizeof c->err, "can't multiply sequence by non-int of type '%s'", calc_type_name(n));
            return false;
        }
        return calc_unsupported(c, op, a, b);
    }
    if (a->kind == V_COMPLEX || b->kind == V_COMPLEX) {
        if (strcmp(op, "//") == 0) return calc_unsupported(c, op, a, b);
        if (strcmp(op, "/") == 0 && b->kind != V_COMPLEX && calc_approx(b) == 0) {
            snprintf(c->err, sizeof c->err, "complex division by zero");
            return false;
        }
        out->kind = V_COMPLEX;
        return true;
    }
    bool ints = a->kind != V_FLOAT && b->kind != V_FLOAT;
    if (ints && (strcmp(op, "+") == 0 || strcmp(op, "-") == 0 || strcmp(op, "*") == 0)) {
        if (a->kind == V_INT && b->kind == V_INT) {
            __int128 r;
            bool ovf = op[0] == '+'   ? __builtin_add_overflow(a->i, b->i, &r)
                       : op[0] == '-' ? __builtin_sub_overflow(a->i, b->i, &r)
                                      : __builtin_mul_overflow(a->i, b->i, &r);
            if (!ovf) return *out = calc_int(r), true;
        }
        long double x = calc_approx(a), y = calc_approx(b);
        *out = calc_bigint(op[0] == '+' ? x + y : op[0] == '-' ? x - y : x * y);
        return true;
    }
    if (ints && strcmp(op, "//") == 0) {
        if (calc_approx(b) == 0) {
            snprintf(c->err, sizeof c->err, "integer division or modulo by zero");
            return false;
        }
        if (a->kind == V_INT && b->kind == V_INT) {
            __int128 q = a->i / b->i;
            if ((a->i % b->i != 0) && ((a->i < 0) != (b->i < 0))) q--;
            return *out = calc_int(q), true;
        }
        *out = calc_bigint(floorl(calc_approx(a) / calc_approx(b)));
        return true;
    }
    if (ints && strcmp(op, "/") == 0) {
        if (calc_approx(b) == 0) {
            snprintf(c->err, sizeof c->err, "division by zero");
            return false;
        }
        if (a->kind == V_INT && b->kind == V_INT) {
            *out = calc_float((double)((long double)a->i / (long double)b->i));
            return true;
        }
        double r = (double)(calc_approx(a) / calc_approx(b));
        if (!isfinite(r)) {
            snprintf(c->err, sizeof c->err, "integer division result too large for a float");
            return false;
        }
        *out = calc_float(r);
        return true;
    }
    if (ints && strcmp(op, "**") == 0) {
        long double y = calc_approx(b);
        if (y < 0) {
            double x;
            if (!calc_to_double(c, a, &x)) return false;
            return calc_float_pow(c, x, (double)y, out);
        }
        if (a->kind == V_INT && b->kind == V_INT) {
            __int128 base = a->i, r = 1;
            if (base == 0 || base == 1) return *out = calc_int(b->i == 0 ? 1 : base), true;
            if (base == -1) return *out = calc_int((b->i & 1) ? -1 : 1), true;
            if (b->i < 128) {
                bool ovf = false;
                for (__int128 k = 0; k < b->i && !ovf; k++) ovf = __builtin_mul_overflow(r, base, &r);
                if (!ovf) return *out = calc_int(r), true;
            }
        }
        *out = calc_bigint(powl(calc_approx(a), y));
        return true;
    }
    /* Float arithmetic (an int operand converts first). */
    double x, y;
    if (!calc_to_double(c, a, &x) || !calc_to_double(c, b, &y)) return false;
    if (strcmp(op, "+") == 0) return *out = calc_float(x + y), true;
    if (strcmp(op, "-") == 0) return *out = calc_float(x - y), true;
    if (strcmp(op, "*") == 0) return *out = calc_float(x * y), true;
    if (strcmp(op, "/") == 0) {
        if (y == 0) {
            snprintf(c->err, sizeof c->err, "float division by zero");
            return false;
        }
        return *out = calc_float(x / y), true;
    }
    if (strcmp(op, "//") == 0) {
        if (y == 0) {
            snprintf(c->err, sizeof c->err, "float floor division by zero");
            return false;
        }
        return *out = calc_float(py_float_floordiv(x, y)), true;
    }
    return calc_float_pow(c, x, y, out);
}

static bool calc_eval(Calc *c, int node, CalcVal *out) {
    const CalcNode *n = &c->nodes[node];
    switch (n->kind) {
    case N_NUM: {
        const CalcTok *t = &c->toks[n->tok];
        char *text = xstrndup(t->start, (size_t)t->len);
        bool is_float = memchr(text, '.', (size_t)t->len) != NULL;
        if (is_float) {
            *out = calc_float(strtod(text, NULL));
        } else {
            __int128 v = 0;
            bool big = false;
            for (int i = 0; i < t->len && !big; i++)
                big = __builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, text[i] - '0', &v);
            *out = big ? calc_bigint(strtod(text, NULL)) : calc_int(v);
        }
        free(text);
        return true;
    }
    case N_TUPLE: out->kind = V_TUPLE; return true;
    case N_ELLIPSIS: out->kind = V_ELLIPSIS; return true;
    case N_NEG:
    case N_POS: {
        CalcVal a;
        if (!calc_eval(c, n->a, &a)) return false;
        if (a.kind == V_TUPLE || a.kind == V_ELLIPSIS) {
            snprintf(c->err, sizeof c->err, "bad operand type for unary %s: '%s'", n->kind == N_NEG ? "-" : "+",
                     calc_type_name(&a));
            return false;
        }
        if (n->kind == N_NEG) {
            if (a.kind == V_INT) a.i = -a.i;
            else if (a.kind == V_BIGINT) a.l = -a.l;
            else a.f = -a.f;
        }
        *out = a;
        return true;
    }
    case N_CALL: {
        CalcVal f, arg;
        if (!calc_eval(c, n->a, &f)) return false;
        if (n->b >= 0 && !calc_eval(c, n->b, &arg)) return false;
        snprintf(c->err, sizeof c->err, "'%s' object is not callable", calc_type_name(&f));
        return false;
    }
    case N_BIN: {
        CalcVal a, b;
        if (!calc_eval(c, n->a, &a) || !calc_eval(c, n->b, &b)) return false;
        return calc_binop(c, n->op, &a, &b, out);
    }
    }
    return false;
}

/* str(round(float(v), 2)) */
static bool calc_result(Calc *c, const CalcVal *v, char *buf, size_t len) {
    if (!calc_is_num(v)) {
        snprintf(c->err, sizeof c->err, "float() argument must be a string or a real number, not '%s'",
                 calc_type_name(v));
        return false;
    }
    double x;
    if (!calc_to_double(c, v, &x)) return false;
    if (isfinite(x)) {
        /* glibc prints the exact binary value rounded half-even, which is
         * what Python's correctly rounded round(x, 2) computes. */
        char tmp[400];
        snprintf(tmp, sizeof tmp, "%.2f", x);
        x = strtod(tmp, NULL);
    }
    char out[64];
    py_float_repr(out, x);
    snprintf(buf, len, "%s", out);
    return true;
}

static cJSON *airline_calculate(Env *env, const cJSON *args, ToolCtx *ctx) {
    const char *expr = arg_str(args, "expression");
    if (!expr) expr = "";
    for (const char *p = expr; *p; p++)
        if (!strchr("0123456789+-*/(). ", *p)) return tool_error(ctx, "Invalid characters in expression");
    /* eval() strips leading spaces. */
    while (*expr == ' ') expr++;
    Calc c;
    memset(&c, 0, sizeof c);
    cJSON *result = NULL;
    int final_level = 0, root = -1;
    if (!*expr) {
        tool_error(ctx, "invalid syntax (<string>, line 0)");
    } else if (!calc_tokenize(&c, expr, &final_level) || !calc_parse(&c, final_level, &root)) {
        tool_error(ctx, "%s", c.err);
    } else {
        CalcVal v;
        char buf[64];
        if (calc_eval(&c, root, &v) && calc_result(&c, &v, buf, sizeof buf)) result = cJSON_CreateString(buf);
        else tool_error(ctx, "%s", c.err);
    }
    free(c.toks);
    free(c.nodes);
    return result;
}

/* ------------------------------------------------------------------ schemas */

static const char SCHEMA_BOOK_RESERVATION[] =
    "{\"type\":\"function\",\"function\":{\"name\":\"book_reservation\",\"description\":\"Book a reservation.\",\"pa"
    "rameters\":{\"$defs\":{\"FlightInfo\":{\"properties\":{\"flight_number\":{\"description\":\"Flight number, s"
    "uch as 'HAT001'.\",\"title\":\"Flight Number\",\"type\":\"string\"},\"date\":{\"description\":\"The date for t"
    "he flight in the format 'YYYY-MM-DD', such as '2024-05-01'.\",\"title\":\"Date\",\"type\":\"string\"}},\"r"
    "equired\":[\"flight_number\",\"date\"],\"title\":\"FlightInfo\",\"type\":\"object\"},\"Passenger\":{\"properties"
    "\":{\"first_name\":{\"description\":\"Passenger's first name\",\"title\":\"First Name\",\"type\":\"string\"},\"l"
    "ast_name\":{\"description\":\"Passenger's last name\",\"title\":\"Last Name\",\"type\":\"string\"},\"dob\":{\"de"
    "scription\":\"Date of birth in YYYY-MM-DD format\",\"title\":\"Dob\",\"type\":\"string\"}},\"required\":[\"fir"
    "st_name\",\"last_name\",\"dob\"],\"title\":\"Passenger\",\"type\":\"object\"},\"Payment\":{\"properties\":{\"payme"
    "nt_id\":{\"description\":\"Unique identifier for the payment\",\"title\":\"Payment Id\",\"type\":\"string\"},"
    "\"amount\":{\"description\":\"Payment amount in dollars\",\"title\":\"Amount\",\"type\":\"integer\"}},\"require"
    "d\":[\"payment_id\",\"amount\"],\"title\":\"Payment\",\"type\":\"object\"}},\"properties\":{\"user_id\":{\"descrip"
    "tion\":\"The ID of the user to book the reservation such as 'sara_doe_496'`.\",\"title\":\"User Id\",\"t"
    "ype\":\"string\"},\"origin\":{\"description\":\"The IATA code for the origin city such as 'SFO'.\",\"title"
    "\":\"Origin\",\"type\":\"string\"},\"destination\":{\"description\":\"The IATA code for the destination city"
    " such as 'JFK'.\",\"title\":\"Destination\",\"type\":\"string\"},\"flight_type\":{\"description\":\"The type o"
    "f flight such as 'one_way' or 'round_trip'.\",\"enum\":[\"round_trip\",\"one_way\"],\"title\":\"Flight Typ"
    "e\",\"type\":\"string\"},\"cabin\":{\"description\":\"The cabin class such as 'basic_economy', 'economy', "
    "or 'business'.\",\"enum\":[\"business\",\"economy\",\"basic_economy\"],\"title\":\"Cabin\",\"type\":\"string\"},\""
    "flights\":{\"description\":\"An array of objects containing details about each piece of flight.\",\"it"
    "ems\":{\"anyOf\":[{\"$ref\":\"#/$defs/FlightInfo\"},{\"additionalProperties\":true,\"type\":\"object\"}]},\"ti"
    "tle\":\"Flights\",\"type\":\"array\"},\"passengers\":{\"description\":\"An array of objects containing detai"
    "ls about each passenger.\",\"items\":{\"anyOf\":[{\"$ref\":\"#/$defs/Passenger\"},{\"additionalProperties\""
    ":true,\"type\":\"object\"}]},\"title\":\"Passengers\",\"type\":\"array\"},\"payment_methods\":{\"description\":\""
    "An array of objects containing details about each payment method.\",\"items\":{\"anyOf\":[{\"$ref\":\"#/"
    "$defs/Payment\"},{\"additionalProperties\":true,\"type\":\"object\"}]},\"title\":\"Payment Methods\",\"type\""
    ":\"array\"},\"total_baggages\":{\"description\":\"The total number of baggage items to book the reserva"
    "tion.\",\"title\":\"Total Baggages\",\"type\":\"integer\"},\"nonfree_baggages\":{\"description\":\"The number "
    "of non-free baggage items to book the reservation.\",\"title\":\"Nonfree Baggages\",\"type\":\"integer\"}"
    ",\"insurance\":{\"description\":\"Whether the reservation has insurance.\",\"enum\":[\"yes\",\"no\"],\"title\""
    ":\"Insurance\",\"type\":\"string\"}},\"required\":[\"user_id\",\"origin\",\"destination\",\"flight_type\",\"cabin"
    "\",\"flights\",\"passengers\",\"payment_methods\",\"total_baggages\",\"nonfree_baggages\",\"insurance\"],\"tit"
    "le\":\"parameters\",\"type\":\"object\"}}}";

static const char SCHEMA_CALCULATE[] =
    "{\"type\":\"function\",\"function\":{\"name\":\"calculate\",\"description\":\"Calculate the result of a mathe"
    "matical expression.\",\"parameters\":{\"properties\":{\"expression\":{\"description\":\"The mathematical e"
    "xpression to calculate, such as '2 + 2'. The expression can contain numbers, operators (+, -, *,"
    " /), parentheses, and spaces.\",\"title\":\"Expression\",\"type\":\"string\"}},\"required\":[\"expression\"],"
    "\"title\":\"parameters\",\"type\":\"object\"}}}";

static const char SCHEMA_CANCEL_RESERVATION[] =
    "{\"type\":\"function\",\"function\":{\"name\":\"cancel_reservation\",\"description\":\"Cancel the whole reser"
    "vation.\",\"parameters\":{\"properties\":{\"reservation_id\":{\"description\":\"The reservation ID, such a"
    "s 'ZFA04Y'.\",\"title\":\"Reservation Id\",\"type\":\"string\"}},\"required\":[\"reservation_id\"],\"title\":\"p"
    "arameters\",\"type\":\"object\"}}}";

static const char SCHEMA_GET_RESERVATION_DETAILS[] =
    "{\"type\":\"function\",\"function\":{\"name\":\"get_reservation_details\",\"description\":\"Get the details o"
    "f a reservation.\",\"parameters\":{\"properties\":{\"reservation_id\":{\"description\":\"The reservation I"
    "D, such as '8JX2WO'.\",\"title\":\"Reservation Id\",\"type\":\"string\"}},\"required\":[\"reservation_id\"],\""
    "title\":\"parameters\",\"type\":\"object\"}}}";

static const char SCHEMA_GET_USER_DETAILS[] =
    "{\"type\":\"function\",\"function\":{\"name\":\"get_user_details\",\"description\":\"Get the details of a use"
    "r, including their reservations.\",\"parameters\":{\"properties\":{\"user_id\":{\"description\":\"The user"
    " ID, such as 'sara_doe_496'.\",\"title\":\"User Id\",\"type\":\"string\"}},\"required\":[\"user_id\"],\"title\""
    ":\"parameters\",\"type\":\"object\"}}}";

static const char SCHEMA_LIST_ALL_AIRPORTS[] =
    "{\"type\":\"function\",\"function\":{\"name\":\"list_all_airports\",\"description\":\"Returns a list of all a"
    "vailable airports.\",\"parameters\":{\"properties\":{},\"title\":\"parameters\",\"type\":\"object\"}}}";

static const char SCHEMA_SEARCH_DIRECT_FLIGHT[] =
    "{\"type\":\"function\",\"function\":{\"name\":\"search_direct_flight\",\"description\":\"Search for direct fl"
    "ights between two cities on a specific date.\",\"parameters\":{\"properties\":{\"origin\":{\"description"
    "\":\"The origin city airport in three letters, such as 'JFK'.\",\"title\":\"Origin\",\"type\":\"string\"},\""
    "destination\":{\"description\":\"The destination city airport in three letters, such as 'LAX'.\",\"tit"
    "le\":\"Destination\",\"type\":\"string\"},\"date\":{\"description\":\"The date of the flight in the format '"
    "YYYY-MM-DD', such as '2024-01-01'.\",\"title\":\"Date\",\"type\":\"string\"}},\"required\":[\"origin\",\"desti"
    "nation\",\"date\"],\"title\":\"parameters\",\"type\":\"object\"}}}";

static const char SCHEMA_SEARCH_ONESTOP_FLIGHT[] =
    "{\"type\":\"function\",\"function\":{\"name\":\"search_onestop_flight\",\"description\":\"Search for one-stop"
    " flights between two cities on a specific date.\",\"parameters\":{\"properties\":{\"origin\":{\"descript"
    "ion\":\"The origin city airport in three letters, such as 'JFK'.\",\"title\":\"Origin\",\"type\":\"string\""
    "},\"destination\":{\"description\":\"The destination city airport in three letters, such as 'LAX'.\",\""
    "title\":\"Destination\",\"type\":\"string\"},\"date\":{\"description\":\"The date of the flight in the forma"
    "t 'YYYY-MM-DD', such as '2024-05-01'.\",\"title\":\"Date\",\"type\":\"string\"}},\"required\":[\"origin\",\"de"
    "stination\",\"date\"],\"title\":\"parameters\",\"type\":\"object\"}}}";

static const char SCHEMA_SEND_CERTIFICATE[] =
    "{\"type\":\"function\",\"function\":{\"name\":\"send_certificate\",\"description\":\"Send a certificate to a "
    "user. Be careful!\",\"parameters\":{\"properties\":{\"user_id\":{\"description\":\"The ID of the user to b"
    "ook the reservation, such as 'sara_doe_496'.\",\"title\":\"User Id\",\"type\":\"string\"},\"amount\":{\"desc"
    "ription\":\"The amount of the certificate to send.\",\"title\":\"Amount\",\"type\":\"integer\"}},\"required\""
    ":[\"user_id\",\"amount\"],\"title\":\"parameters\",\"type\":\"object\"}}}";

static const char SCHEMA_TRANSFER_TO_HUMAN_AGENTS[] =
    "{\"type\":\"function\",\"function\":{\"name\":\"transfer_to_human_agents\",\"description\":\"Transfer the use"
    "r to a human agent, with a summary of the user's issue.\\n\\nOnly transfer if\\n -  the user explic"
    "itly asks for a human agent\\n -  given the policy and the available tools, you cannot solve the "
    "user's issue.\",\"parameters\":{\"properties\":{\"summary\":{\"description\":\"A summary of the user's iss"
    "ue.\",\"title\":\"Summary\",\"type\":\"string\"}},\"required\":[\"summary\"],\"title\":\"parameters\",\"type\":\"obj"
    "ect\"}}}";

static const char SCHEMA_UPDATE_RESERVATION_BAGGAGES[] =
    "{\"type\":\"function\",\"function\":{\"name\":\"update_reservation_baggages\",\"description\":\"Update the ba"
    "ggage information of a reservation.\",\"parameters\":{\"properties\":{\"reservation_id\":{\"description\""
    ":\"The reservation ID, such as 'ZFA04Y'\",\"title\":\"Reservation Id\",\"type\":\"string\"},\"total_baggage"
    "s\":{\"description\":\"The updated total number of baggage items included in the reservation.\",\"titl"
    "e\":\"Total Baggages\",\"type\":\"integer\"},\"nonfree_baggages\":{\"description\":\"The updated number of n"
    "on-free baggage items included in the reservation.\",\"title\":\"Nonfree Baggages\",\"type\":\"integer\"}"
    ",\"payment_id\":{\"description\":\"The payment id stored in user profile, such as 'credit_card_781582"
    "6', 'gift_card_7815826', 'certificate_7815826'.\",\"title\":\"Payment Id\",\"type\":\"string\"}},\"require"
    "d\":[\"reservation_id\",\"total_baggages\",\"nonfree_baggages\",\"payment_id\"],\"title\":\"parameters\",\"typ"
    "e\":\"object\"}}}";

static const char SCHEMA_UPDATE_RESERVATION_FLIGHTS[] =
    "{\"type\":\"function\",\"function\":{\"name\":\"update_reservation_flights\",\"description\":\"Update the fli"
    "ght information of a reservation.\",\"parameters\":{\"$defs\":{\"FlightInfo\":{\"properties\":{\"flight_nu"
    "mber\":{\"description\":\"Flight number, such as 'HAT001'.\",\"title\":\"Flight Number\",\"type\":\"string\"}"
    ",\"date\":{\"description\":\"The date for the flight in the format 'YYYY-MM-DD', such as '2024-05-01'"
    ".\",\"title\":\"Date\",\"type\":\"string\"}},\"required\":[\"flight_number\",\"date\"],\"title\":\"FlightInfo\",\"ty"
    "pe\":\"object\"}},\"properties\":{\"reservation_id\":{\"description\":\"The reservation ID, such as 'ZFA04"
    "Y'.\",\"title\":\"Reservation Id\",\"type\":\"string\"},\"cabin\":{\"description\":\"The cabin class of the re"
    "servation\",\"enum\":[\"business\",\"economy\",\"basic_economy\"],\"title\":\"Cabin\",\"type\":\"string\"},\"fligh"
    "ts\":{\"description\":\"An array of objects containing details about each piece of flight in the ENT"
    "IRE new reservation. Even if the a flight segment is not changed, it should still be included in"
    " the array.\",\"items\":{\"anyOf\":[{\"$ref\":\"#/$defs/FlightInfo\"},{\"additionalProperties\":true,\"type\""
    ":\"object\"}]},\"title\":\"Flights\",\"type\":\"array\"},\"payment_id\":{\"description\":\"The payment id store"
    "d in user profile, such as 'credit_card_7815826', 'gift_card_7815826', 'certificate_7815826'.\",\""
    "title\":\"Payment Id\",\"type\":\"string\"}},\"required\":[\"reservation_id\",\"cabin\",\"flights\",\"payment_id"
    "\"],\"title\":\"parameters\",\"type\":\"object\"}}}";

static const char SCHEMA_UPDATE_RESERVATION_PASSENGERS[] =
    "{\"type\":\"function\",\"function\":{\"name\":\"update_reservation_passengers\",\"description\":\"Update the "
    "passenger information of a reservation.\",\"parameters\":{\"$defs\":{\"Passenger\":{\"properties\":{\"firs"
    "t_name\":{\"description\":\"Passenger's first name\",\"title\":\"First Name\",\"type\":\"string\"},\"last_name"
    "\":{\"description\":\"Passenger's last name\",\"title\":\"Last Name\",\"type\":\"string\"},\"dob\":{\"descriptio"
    "n\":\"Date of birth in YYYY-MM-DD format\",\"title\":\"Dob\",\"type\":\"string\"}},\"required\":[\"first_name\""
    ",\"last_name\",\"dob\"],\"title\":\"Passenger\",\"type\":\"object\"}},\"properties\":{\"reservation_id\":{\"descr"
    "iption\":\"The reservation ID, such as 'ZFA04Y'.\",\"title\":\"Reservation Id\",\"type\":\"string\"},\"passe"
    "ngers\":{\"description\":\"An array of objects containing details about each passenger.\",\"items\":{\"a"
    "nyOf\":[{\"$ref\":\"#/$defs/Passenger\"},{\"additionalProperties\":true,\"type\":\"object\"}]},\"title\":\"Pas"
    "sengers\",\"type\":\"array\"}},\"required\":[\"reservation_id\",\"passengers\"],\"title\":\"parameters\",\"type\""
    ":\"object\"}}}";

static const char SCHEMA_GET_FLIGHT_STATUS[] =
    "{\"type\":\"function\",\"function\":{\"name\":\"get_flight_status\",\"description\":\"Get the status of a fli"
    "ght.\",\"parameters\":{\"properties\":{\"flight_number\":{\"description\":\"The flight number.\",\"title\":\"F"
    "light Number\",\"type\":\"string\"},\"date\":{\"description\":\"The date of the flight.\",\"title\":\"Date\",\"t"
    "ype\":\"string\"}},\"required\":[\"flight_number\",\"date\"],\"title\":\"parameters\",\"type\":\"object\"}}}";

/* ------------------------------------------------------------------ tables */

static const ToolDef AIRLINE_TOOLS[] = {
    {"book_reservation", airline_book_reservation, true, SCHEMA_BOOK_RESERVATION},
    {"calculate", airline_calculate, false, SCHEMA_CALCULATE},
    {"cancel_reservation", airline_cancel_reservation, true, SCHEMA_CANCEL_RESERVATION},
    {"get_reservation_details", airline_get_reservation_details, false, SCHEMA_GET_RESERVATION_DETAILS},
    {"get_user_details", airline_get_user_details, false, SCHEMA_GET_USER_DETAILS},
    {"list_all_airports", airline_list_all_airports, false, SCHEMA_LIST_ALL_AIRPORTS},
    {"search_direct_flight", airline_search_direct_flight, false, SCHEMA_SEARCH_DIRECT_FLIGHT},
    {"search_onestop_flight", airline_search_onestop_flight, false, SCHEMA_SEARCH_ONESTOP_FLIGHT},
    {"send_certificate", airline_send_certificate, true, SCHEMA_SEND_CERTIFICATE},
    {"transfer_to_human_agents", airline_transfer_to_human_agents, false, SCHEMA_TRANSFER_TO_HUMAN_AGENTS},
    {"update_reservation_baggages", airline_update_reservation_baggages, true, SCHEMA_UPDATE_RESERVATION_BAGGAGES},
    {"update_reservation_flights", airline_update_reservation_flights, true, SCHEMA_UPDATE_RESERVATION_FLIGHTS},
    {"update_reservation_passengers", airline_update_reservation_passengers, true,
     SCHEMA_UPDATE_RESERVATION_PASSENGERS},
    {"get_flight_status", airline_get_flight_status, false, SCHEMA_GET_FLIGHT_STATUS},
};

/* ------------------------------------------------------------------ normalization */

/* What FlightDB.model_validate adds to the file's records: the defaults
 * (Reservation.status, Address.address2) and float gift-card and
 * certificate amounts. The DB hash is computed over the model_dump, so the
 * stored records must carry them. Only records that need a change are
 * copied, so this is cheap when run again after a merge. */
static void airline_normalize_db(Env *env, bool is_user) {
    if (is_user) return;
    DbIter it;
    const char *key;
    const cJSON *rec;
    db_iter_init(&it, env->db, "reservations");
    while (db_iter_next(&it, &key, &rec))
        if (cJSON_IsObject(rec) && !json_get(rec, "status"))
            cJSON_AddItemToObject(db_get_mut(env->db, "reservations", key), "status", cJSON_CreateNull());
    db_iter_init(&it, env->db, "users");
    while (db_iter_next(&it, &key, &rec)) {
        const cJSON *address = json_get(rec, "address");
        bool fix_address = cJSON_IsObject(address) && !json_get(address, "address2");
        bool fix_amount = false;
        const cJSON *methods = json_get(rec, "payment_methods");
        for (const cJSON *pm = cJSON_IsObject(methods) ? methods->child : NULL; pm; pm = pm->next) {
            const cJSON *amount = json_get(pm, "amount");
            if (amount && cJSON_IsNumber(amount) && !json_is_float(amount)) fix_amount = true;
        }
        if (!fix_address && !fix_amount) continue;
        cJSON *u = db_get_mut(env->db, "users", key);
        if (fix_address) {
            /* address2 sits after address1 in field order. */
            cJSON *addr = json_get(u, "address");
            cJSON *fixed = dump_fields(addr, (const char *const[]){"address1", "address2", "city", "country", "state",
                                                                   "zip"},
                                       6);
            json_set(u, "address", fixed);
        }
        cJSON *m = json_get(u, "payment_methods");
        for (cJSON *pm = cJSON_IsObject(m) ? m->child : NULL; pm; pm = pm->next) {
            cJSON *amount = json_get(pm, "amount");
            if (amount && cJSON_IsNumber(amount) && !json_is_float(amount))
                json_set(pm, "amount", json_float(amount->valuedouble));
        }
    }
}

static char *airline_load_policy(const char *domain_dir, char *err, size_t errlen) {
    return domain_read_text(domain_dir, "policy.md", err, errlen);
}

/* ------------------------------------------------------------ data model */

/* FlightDB as data_model.py declares it, for the load-time check of db.json. */
static const DbField NAME_FIELDS[] = {{"first_name", &DB_T_STR}, {"last_name", &DB_T_STR}, {NULL}};
static const DbModel NAME_MODEL = {"Name", NAME_FIELDS};
static const DbType NAME_TYPE = {DB_MODEL, .model = &NAME_MODEL};

static const DbField ADDRESS_FIELDS[] = {
    {"address1", &DB_T_STR}, {"address2", &DB_T_STR, "null", true}, {"city", &DB_T_STR},
    {"country", &DB_T_STR},  {"state", &DB_T_STR},                  {"zip", &DB_T_STR},
    {NULL},
};
static const DbModel ADDRESS_MODEL = {"Address", ADDRESS_FIELDS};
static const DbType ADDRESS_TYPE = {DB_MODEL, .model = &ADDRESS_MODEL};

static const DbType PASSENGER_TYPE = {DB_MODEL, .model = &PASSENGER};
static const DbType PASSENGER_LIST = {DB_LIST, .item = &PASSENGER_TYPE};
static const DbType PAYMENT_TYPE = {DB_MODEL, .model = &PAYMENT};
static const DbType PAYMENT_LIST = {DB_LIST, .item = &PAYMENT_TYPE};

/* PaymentMethod = Union[CreditCard, GiftCard, Certificate], told apart by source. */
static const char *const SOURCE_CREDIT_CARD[] = {"credit_card", NULL};
static const char *const SOURCE_GIFT_CARD[] = {"gift_card", NULL};
static const char *const SOURCE_CERTIFICATE[] = {"certificate", NULL};
static const DbType SOURCE_CREDIT_CARD_TYPE = {DB_ENUM, .choices = SOURCE_CREDIT_CARD};
static const DbType SOURCE_GIFT_CARD_TYPE = {DB_ENUM, .choices = SOURCE_GIFT_CARD};
static const DbType SOURCE_CERTIFICATE_TYPE = {DB_ENUM, .choices = SOURCE_CERTIFICATE};
static const DbField CREDIT_CARD_FIELDS[] = {
    {"source", &SOURCE_CREDIT_CARD_TYPE}, {"id", &DB_T_STR}, {"brand", &DB_T_STR}, {"last_four", &DB_T_STR}, {NULL}};
static const DbField GIFT_CARD_FIELDS[] = {
    {"source", &SOURCE_GIFT_CARD_TYPE}, {"id", &DB_T_STR}, {"amount", &DB_T_FLOAT}, {NULL}};
static const DbField CERTIFICATE_FIELDS[] = {
    {"source", &SOURCE_CERTIFICATE_TYPE}, {"id", &DB_T_STR}, {"amount", &DB_T_FLOAT}, {NULL}};
static const DbModel CREDIT_CARD_MODEL = {"CreditCard", CREDIT_CARD_FIELDS};
static const DbModel GIFT_CARD_MODEL = {"GiftCard", GIFT_CARD_FIELDS};
static const DbModel CERTIFICATE_MODEL = {"Certificate", CERTIFICATE_FIELDS};
static const DbModel *const PAYMENT_METHOD_VARIANTS[] = {&CREDIT_CARD_MODEL, &GIFT_CARD_MODEL, &CERTIFICATE_MODEL, NULL};
static const DbType PAYMENT_METHOD_TYPE = {DB_UNION, .tag = "source", .variants = PAYMENT_METHOD_VARIANTS};
static const DbType PAYMENT_METHOD_DICT = {DB_DICT, .item = &PAYMENT_METHOD_TYPE};

/* FlightDateStatus: one model per status. */
static const DbType SEATS_TYPE = {DB_DICT, .item = &DB_T_INT, .choices = CABINS};
static const char *const STATUS_AVAILABLE[] = {"available", NULL};
static const char *const STATUS_LANDED[] = {"landed", NULL};
static const char *const STATUS_CANCELLED[] = {"cancelled", NULL};
static const char *const STATUS_DELAYED[] = {"delayed", NULL};
static const char *const STATUS_FLYING[] = {"flying", NULL};
static const char *const STATUS_ON_TIME[] = {"on time", NULL};
static const DbType STATUS_AVAILABLE_TYPE = {DB_ENUM, .choices = STATUS_AVAILABLE};
static const DbType STATUS_LANDED_TYPE = {DB_ENUM, .choices = STATUS_LANDED};
static const DbType STATUS_CANCELLED_TYPE = {DB_ENUM, .choices = STATUS_CANCELLED};
static const DbType STATUS_DELAYED_TYPE = {DB_ENUM, .choices = STATUS_DELAYED};
static const DbType STATUS_FLYING_TYPE = {DB_ENUM, .choices = STATUS_FLYING};
static const DbType STATUS_ON_TIME_TYPE = {DB_ENUM, .choices = STATUS_ON_TIME};
static const DbField DATE_AVAILABLE_FIELDS[] = {
    {"status", &STATUS_AVAILABLE_TYPE}, {"available_seats", &SEATS_TYPE}, {"prices", &SEATS_TYPE}, {NULL}};
static const DbField DATE_LANDED_FIELDS[] = {{"status", &STATUS_LANDED_TYPE},
                                             {"actual_departure_time_est", &DB_T_STR},
                                             {"actual_arrival_time_est", &DB_T_STR},
                                             {NULL}};
static const DbField DATE_CANCELLED_FIELDS[] = {{"status", &STATUS_CANCELLED_TYPE}, {NULL}};
static const DbField DATE_DELAYED_FIELDS[] = {{"status", &STATUS_DELAYED_TYPE},
                                              {"estimated_departure_time_est", &DB_T_STR},
                                              {"estimated_arrival_time_est", &DB_T_STR},
                                              {NULL}};
static const DbField DATE_FLYING_FIELDS[] = {{"status", &STATUS_FLYING_TYPE},
                                             {"actual_departure_time_est", &DB_T_STR},
                                             {"estimated_arrival_time_est", &DB_T_STR},
                                             {NULL}};
static const DbField DATE_ON_TIME_FIELDS[] = {{"status", &STATUS_ON_TIME_TYPE},
                                              {"estimated_departure_time_est", &DB_T_STR},
                                              {"estimated_arrival_time_est", &DB_T_STR},
                                              {NULL}};
static const DbModel DATE_AVAILABLE_MODEL = {"FlightDateStatusAvailable", DATE_AVAILABLE_FIELDS};
static const DbModel DATE_LANDED_MODEL = {"FlightDateStatusLanded", DATE_LANDED_FIELDS};
static const DbModel DATE_CANCELLED_MODEL = {"FlightDateStatusCancelled", DATE_CANCELLED_FIELDS};
static const DbModel DATE_DELAYED_MODEL = {"FlightDateStatusDelayed", DATE_DELAYED_FIELDS};
static const DbModel DATE_FLYING_MODEL = {"FlightDataStatusFlying", DATE_FLYING_FIELDS};
static const DbModel DATE_ON_TIME_MODEL = {"FlightDataStatusOnTime", DATE_ON_TIME_FIELDS};
static const DbModel *const DATE_STATUS_VARIANTS[] = {&DATE_AVAILABLE_MODEL, &DATE_LANDED_MODEL, &DATE_CANCELLED_MODEL,
                                                      &DATE_DELAYED_MODEL,   &DATE_FLYING_MODEL, &DATE_ON_TIME_MODEL,
                                                      NULL};
static const DbType DATE_STATUS_TYPE = {DB_UNION, .tag = "status", .variants = DATE_STATUS_VARIANTS};
static const DbType DATE_STATUS_DICT = {DB_DICT, .item = &DATE_STATUS_TYPE};

static const DbField FLIGHT_FIELDS[] = {
    {"flight_number", &DB_T_STR},
    {"origin", &DB_T_STR},
    {"destination", &DB_T_STR},
    {"scheduled_departure_time_est", &DB_T_STR},
    {"scheduled_arrival_time_est", &DB_T_STR},
    {"dates", &DATE_STATUS_DICT},
    {NULL},
};
static const DbModel FLIGHT_MODEL = {"Flight", FLIGHT_FIELDS};
static const DbType FLIGHT_TYPE = {DB_MODEL, .model = &FLIGHT_MODEL};

static const char *const MEMBERSHIPS[] = {"gold", "silver", "regular", NULL};
static const DbType MEMBERSHIP_TYPE = {DB_ENUM, .choices = MEMBERSHIPS};
static const DbField USER_FIELDS[] = {
    {"user_id", &DB_T_STR},
    {"name", &NAME_TYPE},
    {"address", &ADDRESS_TYPE},
    {"email", &DB_T_STR},
    {"dob", &DB_T_STR},
    {"payment_methods", &PAYMENT_METHOD_DICT},
    {"saved_passengers", &PASSENGER_LIST},
    {"membership", &MEMBERSHIP_TYPE},
    {"reservations", &DB_T_LIST_STR},
    {NULL},
};
static const DbModel USER_MODEL = {"User", USER_FIELDS};
static const DbType USER_TYPE = {DB_MODEL, .model = &USER_MODEL};

static const DbField RES_FLIGHT_FIELDS[] = {
    {"flight_number", &DB_T_STR}, {"origin", &DB_T_STR}, {"destination", &DB_T_STR},
    {"date", &DB_T_STR},          {"price", &DB_T_INT},  {NULL},
};
static const DbModel RES_FLIGHT_MODEL = {"ReservationFlight", RES_FLIGHT_FIELDS};
static const DbType RES_FLIGHT_TYPE = {DB_MODEL, .model = &RES_FLIGHT_MODEL};
static const DbType RES_FLIGHT_LIST = {DB_LIST, .item = &RES_FLIGHT_TYPE};

static const DbType FLIGHT_TYPE_TYPE = {DB_ENUM, .choices = FLIGHT_TYPES};
static const DbType CABIN_TYPE = {DB_ENUM, .choices = CABINS};
static const DbType INSURANCE_TYPE = {DB_ENUM, .choices = INSURANCES};
static const DbType CANCELLED_TYPE = {DB_ENUM, .choices = STATUS_CANCELLED};
static const DbField RESERVATION_FIELDS[] = {
    {"reservation_id", &DB_T_STR},
    {"user_id", &DB_T_STR},
    {"origin", &DB_T_STR},
    {"destination", &DB_T_STR},
    {"flight_type", &FLIGHT_TYPE_TYPE},
    {"cabin", &CABIN_TYPE},
    {"flights", &RES_FLIGHT_LIST},
    {"passengers", &PASSENGER_LIST},
    {"payment_history", &PAYMENT_LIST},
    {"created_at", &DB_T_STR},
    {"total_baggages", &DB_T_INT},
    {"nonfree_baggages", &DB_T_INT},
    {"insurance", &INSURANCE_TYPE},
    {"status", &CANCELLED_TYPE, "null", true},
    {NULL},
};
static const DbModel RESERVATION_MODEL = {"Reservation", RESERVATION_FIELDS};
static const DbType RESERVATION_TYPE = {DB_MODEL, .model = &RESERVATION_MODEL};

static const DbType FLIGHT_DICT = {DB_DICT, .item = &FLIGHT_TYPE};
static const DbType USER_DICT = {DB_DICT, .item = &USER_TYPE};
static const DbType RESERVATION_DICT = {DB_DICT, .item = &RESERVATION_TYPE};
static const DbField FLIGHT_DB_FIELDS[] = {
    {"flights", &FLIGHT_DICT}, {"users", &USER_DICT}, {"reservations", &RESERVATION_DICT}, {NULL}};
static const DbModel FLIGHT_DB_MODEL = {"FlightDB", FLIGHT_DB_FIELDS};

const DomainSpec DOMAIN_AIRLINE = {
    .name = "airline",
    .agent_tools = AIRLINE_TOOLS,
    .n_agent_tools = sizeof AIRLINE_TOOLS / sizeof AIRLINE_TOOLS[0],
    .agent_funcs = NULL,
    .n_agent_funcs = 0,
    .user_tools = NULL,
    .n_user_tools = 0,
    .user_funcs = NULL,
    .n_user_funcs = 0,
    .db_file = "db.json",
    .user_db_file = NULL,
    .db_model = &FLIGHT_DB_MODEL,
    .user_db_model = NULL,
    .load_policy = airline_load_policy,
    .normalize_db = airline_normalize_db,
    .sync = NULL,
};
