/* db_schema.c — checking a data file against its domain's model tables (see
 * db_schema.h). Hand-written: the models are pydantic's, and what is checked
 * is the small part of pydantic's validation the data files exercise (types,
 * required fields, literals, tagged unions, closed models), which no JSON
 * Schema library in Debian offers with messages that name the file. */
#include "tau2/db_schema.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"

const DbType DB_T_STR = {DB_STR};
const DbType DB_T_INT = {DB_INT};
const DbType DB_T_FLOAT = {DB_FLOAT};
const DbType DB_T_BOOL = {DB_BOOL};
const DbType DB_T_DATE = {DB_DATE};
const DbType DB_T_DATETIME = {DB_DATETIME};
const DbType DB_T_LIST_STR = {DB_LIST, .item = &DB_T_STR};
const DbType DB_T_DICT_STR_STR = {DB_DICT, .item = &DB_T_STR};

/* Where the walk is: the path so far ("users.mia_li_3668.name") and where
 * the first misfit is reported. */
typedef struct {
    char path[512];
    size_t len;
    const char *file;
    char *err;
    size_t errlen;
} Walk;

/* Append a segment to the path (cut short at the buffer's end); returns
 * where it began, for walk_pop. */
static size_t walk_push(Walk *w, const char *sep, const char *key, int index) {
    size_t at = w->len;
    int n = key ? snprintf(w->path + at, sizeof w->path - at, "%s%s", at ? sep : "", key)
                : snprintf(w->path + at, sizeof w->path - at, "[%d]", index);
    w->len = n < 0 ? at : (at + (size_t)n < sizeof w->path ? at + (size_t)n : sizeof w->path - 1);
    return at;
}

static size_t walk_push_key(Walk *w, const char *key) { return walk_push(w, ".", key, 0); }

static size_t walk_push_index(Walk *w, int i) { return walk_push(w, "", NULL, i); }

static void walk_pop(Walk *w, size_t at) {
    w->len = at;
    w->path[at] = '\0';
}

/* Report the misfit at the current path; returns -1 for `return walk_fail(...)`. */
static int walk_fail(Walk *w, const char *what, const cJSON *got) {
    char shown[64] = "";
    if (got) {
        char *text = cJSON_PrintUnformatted(got);
        if (text && strlen(text) > 40) snprintf(shown, sizeof shown, ", got %.40s...", text);
        else if (text) snprintf(shown, sizeof shown, ", got %s", text);
        free(text);
    }
    if (w->len) snprintf(w->err, w->errlen, "%s: %s: %s%s", w->file, w->path, what, shown);
    else snprintf(w->err, w->errlen, "%s: %s%s", w->file, what, shown);
    return -1;
}

bool db_choices_have(const char *const *choices, const char *s) {
    for (int i = 0; s && choices[i]; i++)
        if (strcmp(choices[i], s) == 0) return true;
    return false;
}

/* "a, b or c", for messages. */
static void choices_list(const char *const *choices, char *out, size_t outlen) {
    size_t at = 0;
    out[0] = '\0';
    for (int i = 0; choices[i] && at < outlen; i++) {
        const char *sep = i == 0 ? "" : choices[i + 1] ? ", " : " or ";
        int n = snprintf(out + at, outlen - at, "%s%s", sep, choices[i]);
        if (n < 0) break;
        at += (size_t)n;
    }
}

static bool looks_like_date(const char *s) {
    for (int i = 0; i < 10; i++) {
        bool dash = i == 4 || i == 7;
        if (dash ? s[i] != '-' : !isdigit((unsigned char)s[i])) return false;
    }
    return s[10] == '\0' || s[10] == 'T' || s[10] == ' ';
}

static int check_model(Walk *w, const cJSON *obj, const DbModel *m);

static int check_value(Walk *w, const cJSON *v, const DbType *t) {
    char what[320], listed[256];
    switch (t->kind) {
    case DB_STR: return cJSON_IsString(v) ? 0 : walk_fail(w, "expected a string", v);
    case DB_INT:
        if (cJSON_IsNumber(v) && v->valuedouble == floor(v->valuedouble) && isfinite(v->valuedouble)) return 0;
        return walk_fail(w, "expected a whole number", v);
    case DB_FLOAT: return cJSON_IsNumber(v) ? 0 : walk_fail(w, "expected a number", v);
    case DB_BOOL: return cJSON_IsBool(v) ? 0 : walk_fail(w, "expected true or false", v);
    case DB_DATE:
    case DB_DATETIME:
        if (cJSON_IsString(v) && looks_like_date(v->valuestring)) return 0;
        return walk_fail(w, t->kind == DB_DATE ? "expected a date (YYYY-MM-DD)" : "expected a date and time (YYYY-MM-DD...)",
                         v);
    case DB_ENUM:
        if (cJSON_IsString(v) && db_choices_have(t->choices, v->valuestring)) return 0;
        choices_list(t->choices, listed, sizeof listed);
        snprintf(what, sizeof what, "expected one of %s", listed);
        return walk_fail(w, what, v);
    case DB_MODEL:
        if (!cJSON_IsObject(v)) {
            snprintf(what, sizeof what, "expected an object (%s)", t->model->name);
            return walk_fail(w, what, v);
        }
        return check_model(w, v, t->model);
    case DB_UNION: {
        if (!cJSON_IsObject(v)) return walk_fail(w, "expected an object", v);
        const cJSON *tag = json_get(v, t->tag);
        for (int i = 0; t->variants[i]; i++) {
            const DbField *f = db_model_field(t->variants[i], t->tag);
            if (cJSON_IsString(tag) && strcmp(f->type->choices[0], tag->valuestring) == 0)
                return check_model(w, v, t->variants[i]);
        }
        const char *tags[16];
        int n = 0;
        for (; t->variants[n] && n < 15; n++) tags[n] = db_model_field(t->variants[n], t->tag)->type->choices[0];
        tags[n] = NULL;
        choices_list(tags, listed, sizeof listed);
        size_t at = walk_push_key(w, t->tag);
        snprintf(what, sizeof what, "expected one of %s", listed);
        int rc = walk_fail(w, tag ? what : "missing (it says which kind of record this is)", tag);
        walk_pop(w, at);
        return rc;
    }
    case DB_LIST: {
        if (!cJSON_IsArray(v)) return walk_fail(w, "expected a list", v);
        int i = 0;
        for (const cJSON *x = v->child; x; x = x->next, i++) {
            size_t at = walk_push_index(w, i);
            int rc = check_value(w, x, t->item);
            if (rc) return rc;
            walk_pop(w, at);
        }
        return 0;
    }
    case DB_DICT: {
        if (!cJSON_IsObject(v)) return walk_fail(w, "expected an object (a mapping)", v);
        for (const cJSON *x = v->child; x; x = x->next) {
            size_t at = walk_push_key(w, x->string);
            if (t->choices && !db_choices_have(t->choices, x->string)) {
                choices_list(t->choices, listed, sizeof listed);
                snprintf(what, sizeof what, "unknown key (expected %s)", listed);
                return walk_fail(w, what, NULL);
            }
            int rc = check_value(w, x, t->item);
            if (rc) return rc;
            walk_pop(w, at);
        }
        return 0;
    }
    }
    return walk_fail(w, "unknown field type in the domain's model table", NULL);
}

static int check_model(Walk *w, const cJSON *obj, const DbModel *m) {
    char what[160];
    for (const DbField *f = m->fields; f->name; f++) {
        const cJSON *v = json_get(obj, f->name);
        if (!v) {
            if (f->dflt) continue;
            snprintf(what, sizeof what, "missing field '%s' (%s)", f->name, m->name);
            return walk_fail(w, what, NULL);
        }
        if (cJSON_IsNull(v) && f->nullable) continue;
        size_t at = walk_push_key(w, f->name);
        int rc = check_value(w, v, f->type);
        if (rc) return rc;
        walk_pop(w, at);
    }
    if (!m->closed) return 0;
    for (const cJSON *x = obj->child; x; x = x->next)
        if (!db_model_field(m, x->string)) {
            snprintf(what, sizeof what, "unknown field '%s' (%s has no such field)", x->string, m->name);
            return walk_fail(w, what, NULL);
        }
    return 0;
}

const DbField *db_model_field(const DbModel *m, const char *name) {
    for (const DbField *f = m->fields; f->name; f++)
        if (strcmp(f->name, name) == 0) return f;
    return NULL;
}

void db_model_field_names(const DbModel *m, char *out, size_t outlen) {
    size_t at = 0;
    out[0] = '\0';
    for (const DbField *f = m->fields; f->name && at < outlen; f++) {
        int n = snprintf(out + at, outlen - at, "%s%s", at ? ", " : "", f->name);
        if (n < 0) break;
        at += (size_t)n;
    }
}

int db_schema_check_value(const cJSON *v, const DbType *type, const char *file, const char *path, char *err,
                          size_t errlen) {
    Walk w = {.len = 0, .file = file, .err = err, .errlen = errlen};
    w.path[0] = '\0';
    if (path && *path) walk_push(&w, "", path, 0);
    return check_value(&w, v, type);
}

int db_schema_check(const cJSON *root, const DbModel *model, const char *file, char *err, size_t errlen) {
    if (cJSON_IsObject(root) && !root->child) {
        char names[256];
        db_model_field_names(model, names, sizeof names);
        snprintf(err, errlen, "%s: empty (expected the tables of %s: %s)", file, model->name, names);
        return -1;
    }
    DbType top = {DB_MODEL, .model = model};
    return db_schema_check_value(root, &top, file, "", err, errlen);
}
