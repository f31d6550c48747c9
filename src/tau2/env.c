/* env.c — domain registry and loading, episode environments, tool dispatch
 * and τ²-bench's result serialization (see env.h). */
#include "tau2/env.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/error.h"
#include "core/json.h"
#include "core/sbuf.h"
#include "core/toml.h"
#include "tau2/domains/domains.h"

/* ---------------------------------------------------------------- registry */

static const DomainSpec *const DOMAINS[] = {&DOMAIN_AIRLINE, &DOMAIN_RETAIL, &DOMAIN_TELECOM, &DOMAIN_MOCK};
enum { N_DOMAINS = sizeof DOMAINS / sizeof DOMAINS[0] };

const DomainSpec *domain_spec_find(const char *name) {
    for (int i = 0; i < N_DOMAINS; i++)
        if (strcmp(DOMAINS[i]->name, name) == 0) return DOMAINS[i];
    return NULL;
}

const char *domain_spec_names(void) { return "airline, retail, telecom, mock"; }

/* ---------------------------------------------------------------- loading */

char *domain_read_text(const char *domain_dir, const char *file, char *err, size_t errlen) {
    size_t n = strlen(domain_dir) + strlen(file) + 2;
    char *path = xmalloc(n);
    snprintf(path, n, "%s/%s", domain_dir, file);
    char *text = file_read_all(path, NULL, err, errlen);
    free(path);
    return text;
}

/* Read a data file and check it against its model: a file altered by hand
 * is refused here, naming the field, rather than failing the tasks it breaks. */
static cJSON *load_structured(const char *dir, const char *file, const DbModel *model, char *err, size_t errlen) {
    size_t n = strlen(dir) + strlen(file) + 2;
    char *path = xmalloc(n);
    snprintf(path, n, "%s/%s", dir, file);
    size_t fl = strlen(file);
    cJSON *v;
    if (fl > 5 && strcmp(file + fl - 5, ".toml") == 0) v = toml_load_file(path, err, errlen);
    else v = json_load_file(path, err, errlen);
    if (v && !cJSON_IsObject(v)) {
        snprintf(err, errlen, "%s: expected an object of tables at the top level", path);
        cJSON_Delete(v);
        v = NULL;
    }
    if (v && model && db_schema_check(v, model, path, err, errlen) != 0) {
        cJSON_Delete(v);
        v = NULL;
    }
    free(path);
    return v;
}

static cJSON *parse_schemas(const ToolDef *defs, int n) {
    cJSON *arr = cJSON_CreateArray();
    for (int i = 0; i < n; i++) {
        char err[256];
        cJSON *s = json_parse(defs[i].schema, strlen(defs[i].schema), defs[i].name, err, sizeof err);
        if (!s) die_runtime("built-in schema of tool %s is not valid JSON: %s", defs[i].name, err);
        cJSON_AddItemToArray(arr, s);
    }
    return arr;
}

/* Apply the domain's pydantic-style normalization to a freshly loaded base. */
static DbBase *normalized_base(Domain *d, cJSON *root, bool is_user) {
    DbBase *raw = dbbase_new(root);
    if (!d->spec->normalize_db) return raw;
    Env tmp = {d, NULL, NULL};
    Db *db = db_new(raw);
    if (is_user) tmp.user_db = db;
    else tmp.db = db;
    d->spec->normalize_db(&tmp, is_user);
    cJSON *fixed = db_to_json(db);
    db_free(db);
    dbbase_free(raw);
    return dbbase_new(fixed);
}

Domain *domain_load(const char *data_dir, const char *name, char *err, size_t errlen) {
    const DomainSpec *spec = domain_spec_find(name);
    if (!spec) {
        snprintf(err, errlen, "unknown domain '%s' (valid domains: %s)", name, domain_spec_names());
        return NULL;
    }
    Domain *d = xcalloc(1, sizeof *d);
    d->spec = spec;
    size_t n = strlen(data_dir) + strlen(name) + 16;
    d->dir = xmalloc(n);
    snprintf(d->dir, n, "%s/domains/%s", data_dir, name);
    struct stat st;
    if (stat(d->dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(err, errlen,
                 "%s: no such directory (expected a τ²-bench data directory with domains/%s/; "
                 "set --data-dir, the config's data_dir, or TAU2_DATA_DIR)",
                 d->dir, name);
        domain_free(d);
        return NULL;
    }
    cJSON *root = load_structured(d->dir, spec->db_file, spec->db_model, err, errlen);
    if (!root) {
        domain_free(d);
        return NULL;
    }
    d->db_base = normalized_base(d, root, false);
    if (spec->user_db_file) {
        cJSON *uroot = load_structured(d->dir, spec->user_db_file, spec->user_db_model, err, errlen);
        if (!uroot) {
            domain_free(d);
            return NULL;
        }
        d->user_db_base = normalized_base(d, uroot, true);
    }
    d->policy = spec->load_policy ? spec->load_policy(d->dir, err, errlen) : xstrdup("");
    if (!d->policy) {
        domain_free(d);
        return NULL;
    }
    d->agent_schemas = parse_schemas(spec->agent_tools, spec->n_agent_tools);
    if (spec->user_tools) d->user_schemas = parse_schemas(spec->user_tools, spec->n_user_tools);
    return d;
}

void domain_free(Domain *d) {
    if (!d) return;
    free(d->dir);
    free(d->policy);
    dbbase_free(d->db_base);
    dbbase_free(d->user_db_base);
    cJSON_Delete(d->agent_schemas);
    cJSON_Delete(d->user_schemas);
    free(d);
}

/* ---------------------------------------------------------------- episodes */

Env *env_new(const Domain *d) {
    Env *env = xcalloc(1, sizeof *env);
    env->domain = d;
    env->db = db_new(d->db_base);
    if (d->user_db_base) env->user_db = db_new(d->user_db_base);
    return env;
}

void env_free(Env *env) {
    if (!env) return;
    db_free(env->db);
    db_free(env->user_db);
    free(env);
}

void env_sync(Env *env) {
    if (env->domain->spec->sync) env->domain->spec->sync(env);
}

cJSON *tool_error(ToolCtx *ctx, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->err, sizeof ctx->err, fmt, ap);
    va_end(ap);
    ctx->failed = true;
    return NULL;
}

void tool_result_free(ToolResult *r) {
    free(r->content);
    r->content = NULL;
}

const cJSON *arg_get(const cJSON *args, const char *name) {
    const cJSON *v = json_get(args, name);
    return (v && !cJSON_IsNull(v)) ? v : NULL;
}

const char *arg_str(const cJSON *args, const char *name) {
    const cJSON *v = arg_get(args, name);
    return (v && cJSON_IsString(v)) ? v->valuestring : NULL;
}

static const ToolDef *find_def(const ToolDef *defs, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (strcmp(defs[i].name, name) == 0) return &defs[i];
    return NULL;
}

static int def_index(const ToolDef *defs, int n, const ToolDef *t) {
    return (t >= defs && t < defs + n) ? (int)(t - defs) : -1;
}

const ToolDef *env_find_tool(const Env *env, const char *requestor, const char *name) {
    const DomainSpec *s = env->domain->spec;
    if (strcmp(requestor, "user") == 0) return s->user_tools ? find_def(s->user_tools, s->n_user_tools, name) : NULL;
    return find_def(s->agent_tools, s->n_agent_tools, name);
}

/* The tool's parsed schema (from the domain's schema arrays). */
static const cJSON *tool_schema(const Env *env, const ToolDef *t) {
    const DomainSpec *s = env->domain->spec;
    int i = def_index(s->agent_tools, s->n_agent_tools, t);
    if (i >= 0) return cJSON_GetArrayItem(env->domain->agent_schemas, i);
    i = s->user_tools ? def_index(s->user_tools, s->n_user_tools, t) : -1;
    if (i >= 0) return cJSON_GetArrayItem(env->domain->user_schemas, i);
    return NULL;
}

static const char *json_type_name(const cJSON *v) {
    switch (v->type & 0xFF) {
    case cJSON_NULL: return "null";
    case cJSON_True:
    case cJSON_False: return "boolean";
    case cJSON_Number: return json_is_float(v) ? "number" : "integer";
    case cJSON_String: return "string";
    case cJSON_Array: return "array";
    case cJSON_Object: return "object";
    default: return "unknown";
    }
}

/* Does value v fit JSON-schema fragment `prop` (type / anyOf / $ref)? */
static bool value_fits(const cJSON *v, const cJSON *prop) {
    if (!prop) return true;
    const cJSON *any = json_get(prop, "anyOf");
    if (any) {
        for (const cJSON *alt = any->child; alt; alt = alt->next)
            if (value_fits(v, alt)) return true;
        return false;
    }
    if (json_get(prop, "$ref")) return cJSON_IsObject(v);
    const char *type = json_get_str(prop, "type");
    if (!type) return true;
    if (strcmp(type, "string") == 0) return cJSON_IsString(v);
    if (strcmp(type, "integer") == 0) return cJSON_IsNumber(v) && v->valuedouble == (double)(long long)v->valuedouble;
    if (strcmp(type, "number") == 0) return cJSON_IsNumber(v);
    if (strcmp(type, "boolean") == 0) return cJSON_IsBool(v);
    if (strcmp(type, "array") == 0) {
        if (!cJSON_IsArray(v)) return false;
        const cJSON *items = json_get(prop, "items");
        for (const cJSON *e = v->child; e && items; e = e->next)
            if (!value_fits(e, items)) return false;
        return true;
    }
    if (strcmp(type, "object") == 0) return cJSON_IsObject(v);
    if (strcmp(type, "null") == 0) return cJSON_IsNull(v);
    return true;
}

static const char *expected_type(const cJSON *prop) {
    const char *t = json_get_str(prop, "type");
    if (t) return t;
    if (json_get(prop, "$ref")) return "object";
    const cJSON *any = json_get(prop, "anyOf");
    if (any && any->child) return expected_type(any->child);
    return "a value";
}

/* Check arguments as Python's call would (missing/unexpected names) and
 * types against the schema. Returns false with ctx->err set. */
static bool check_args(const ToolDef *t, const cJSON *schema, const cJSON *args, ToolCtx *ctx) {
    const cJSON *params = json_get(json_get(schema, "function"), "parameters");
    const cJSON *props = json_get(params, "properties");
    const cJSON *required = json_get(params, "required");
    for (const cJSON *a = args->child; a; a = a->next) {
        if (!json_get(props, a->string)) {
            tool_error(ctx, "%s() got an unexpected keyword argument '%s'", t->name, a->string);
            return false;
        }
    }
    int nmissing = 0;
    for (const cJSON *r = required ? required->child : NULL; r; r = r->next)
        if (cJSON_IsString(r) && !json_get(args, r->valuestring)) nmissing++;
    if (nmissing) {
        /* Python: "missing 2 required positional arguments: 'a' and 'b'"
         * (three or more: "'a', 'b', and 'c'"). */
        SBuf names;
        sbuf_init(&names);
        int k = 0;
        for (const cJSON *r = required->child; r; r = r->next) {
            if (!cJSON_IsString(r) || json_get(args, r->valuestring)) continue;
            if (k > 0) sbuf_puts(&names, k == nmissing - 1 ? (nmissing > 2 ? ", and " : " and ") : ", ");
            sbuf_printf(&names, "'%s'", r->valuestring);
            k++;
        }
        tool_error(ctx, "%s() missing %d required positional argument%s: %s", t->name, nmissing,
                   nmissing > 1 ? "s" : "", names.data);
        sbuf_free(&names);
        return false;
    }
    for (const cJSON *a = args->child; a; a = a->next) {
        const cJSON *prop = json_get(props, a->string);
        if (!value_fits(a, prop)) {
            tool_error(ctx, "argument '%s' of %s() must be %s, got %s", a->string, t->name, expected_type(prop),
                       json_type_name(a));
            return false;
        }
    }
    return true;
}

char *env_result_to_string(const cJSON *result) {
    if (!result) return xstrdup("null");
    if (cJSON_IsString(result)) return xstrdup(result->valuestring ? result->valuestring : "");
    return json_dumps(result, 0);
}

static ToolResult call_tool(Env *env, const char *requestor, const char *name, const cJSON *args, bool sync) {
    ToolResult r = {NULL, false};
    ToolCtx ctx;
    ctx.err[0] = '\0';
    ctx.failed = false;
    const DomainSpec *s = env->domain->spec;
    const ToolDef *t = NULL;
    cJSON *empty = NULL;
    if (strcmp(requestor, "user") == 0 && !s->user_tools) {
        tool_error(&ctx, "User tools not available");
    } else if (strcmp(requestor, "user") != 0 && strcmp(requestor, "assistant") != 0) {
        tool_error(&ctx, "Invalid requestor: %s", requestor);
    } else if (!(t = env_find_tool(env, requestor, name))) {
        tool_error(&ctx, "Tool '%s' not found.", name);
    } else {
        if (!args || cJSON_IsNull(args)) args = empty = cJSON_CreateObject();
        if (!cJSON_IsObject(args)) {
            tool_error(&ctx, "arguments of %s() must be a JSON object, got %s", name, json_type_name(args));
        } else if (check_args(t, tool_schema(env, t), args, &ctx)) {
            cJSON *res = t->fn(env, args, &ctx);
            if (!ctx.failed) {
                r.content = env_result_to_string(res);
                if (sync) env_sync(env);
            }
            cJSON_Delete(res);
        }
    }
    cJSON_Delete(empty);
    if (ctx.failed) {
        free(r.content);
        size_t n = strlen(ctx.err) + 8;
        r.content = xmalloc(n);
        snprintf(r.content, n, "Error: %s", ctx.err);
        r.error = true;
    }
    return r;
}

ToolResult env_tool_call(Env *env, const char *requestor, const char *name, const cJSON *args) {
    return call_tool(env, requestor, name, args, true);
}

ToolResult env_tool_call_nosync(Env *env, const char *requestor, const char *name, const cJSON *args) {
    return call_tool(env, requestor, name, args, false);
}

cJSON *env_run_function(Env *env, const char *env_type, const char *func_name, const cJSON *args, char *err,
                        size_t errlen) {
    const DomainSpec *s = env->domain->spec;
    bool user = strcmp(env_type, "user") == 0;
    if (!user && strcmp(env_type, "assistant") != 0) {
        snprintf(err, errlen, "invalid env_type '%s' (expected \"assistant\" or \"user\")", env_type);
        return NULL;
    }
    const ToolDef *t = user ? (s->user_tools ? find_def(s->user_tools, s->n_user_tools, func_name) : NULL)
                            : find_def(s->agent_tools, s->n_agent_tools, func_name);
    bool is_tool = t != NULL;
    if (!t) t = user ? (s->user_funcs ? find_def(s->user_funcs, s->n_user_funcs, func_name) : NULL)
                     : (s->agent_funcs ? find_def(s->agent_funcs, s->n_agent_funcs, func_name) : NULL);
    if (!t) {
        snprintf(err, errlen, "function '%s' not found in the %s toolkit of domain %s", func_name,
                 user ? "user" : "assistant", s->name);
        return NULL;
    }
    ToolCtx ctx;
    ctx.err[0] = '\0';
    ctx.failed = false;
    cJSON *empty = NULL;
    if (!args || cJSON_IsNull(args)) args = empty = cJSON_CreateObject();
    cJSON *res = NULL;
    if (!cJSON_IsObject(args)) tool_error(&ctx, "arguments of %s must be a JSON object", func_name);
    else if (!is_tool || check_args(t, tool_schema(env, t), args, &ctx)) res = t->fn(env, args, &ctx);
    cJSON_Delete(empty);
    if (ctx.failed) {
        cJSON_Delete(res);
        snprintf(err, errlen, "%s", ctx.err);
        return NULL;
    }
    env_sync(env);
    return res ? res : cJSON_CreateNull();
}

/* ---------------------------------------------------------------- set_state */

static bool has_tool_anywhere(const Env *env, const char *name, bool *mutates) {
    const DomainSpec *s = env->domain->spec;
    const ToolDef *t = find_def(s->agent_tools, s->n_agent_tools, name);
    if (!t && s->user_tools) t = find_def(s->user_tools, s->n_user_tools, name);
    if (t) *mutates = t->mutates;
    return t != NULL;
}

/* Tool message contents compare as json.loads values when both parse, else as strings. */
static bool contents_match(const char *a, const char *b) {
    char e[8];
    cJSON *x = json_parse(a, strlen(a), "", e, sizeof e);
    cJSON *y = json_parse(b, strlen(b), "", e, sizeof e);
    bool eq = (x && y) ? json_equal(x, y, false) : (!x && !y && strcmp(a, b) == 0);
    cJSON_Delete(x);
    cJSON_Delete(y);
    return eq;
}

int env_replay_messages(Env *env, const cJSON *messages, bool strict, char *err, size_t errlen) {
    if (messages && !cJSON_IsNull(messages) && !cJSON_IsArray(messages)) {
        snprintf(err, errlen, "message_history: expected a list of messages or null");
        return -1;
    }
    const cJSON *m = messages ? messages->child : NULL;
    while (m) {
        const char *role = json_get_str(m, "role");
        const cJSON *calls = json_get(m, "tool_calls");
        if (role && strcmp(role, "tool") == 0) {
            snprintf(err, errlen, "message_history: tool message not expected (tool messages must follow a tool call)");
            return -1;
        }
        m = m->next;
        if (!cJSON_IsArray(calls) || cJSON_GetArraySize(calls) == 0) continue;
        for (const cJSON *tc = calls->child; tc; tc = tc->next) {
            if (!m || !json_get_str(m, "role") || strcmp(json_get_str(m, "role"), "tool") != 0) {
                snprintf(err, errlen, "message_history: expected a tool message after tool call '%s'",
                         json_get_str(tc, "name") ? json_get_str(tc, "name") : "?");
                return -1;
            }
            const cJSON *tm = m;
            m = m->next;
            const char *name = json_get_str(tc, "name");
            bool mutates = true;
            if (!name || !has_tool_anywhere(env, name, &mutates) || !mutates) continue;
            const char *requestor = json_get_str(tc, "requestor");
            if (!requestor) requestor = (role && strcmp(role, "user") == 0) ? "user" : "assistant";
            ToolResult r = env_tool_call(env, requestor, name, json_get(tc, "arguments"));
            const char *expected = json_get_str(tm, "content");
            bool ok = contents_match(r.content, expected ? expected : "");
            tool_result_free(&r);
            if (!ok && strict) {
                snprintf(err, errlen, "message_history: replaying tool call '%s' gave a different result than recorded",
                         name);
                return -1;
            }
        }
    }
    return 0;
}

/* One side's initialization_data: deep-merge it into the DB, then check what
 * it touched against the DB's model, as τ²-bench's update_db validates the
 * merged model again: a record of the wrong shape fails the task's setup
 * there, and here too, rather than misleading the tools later. */
static int merge_checked(Env *env, bool user, const cJSON *update, char *err, size_t errlen) {
    const char *what = user ? "initialization_data.user_data" : "initialization_data.agent_data";
    const DomainSpec *s = env->domain->spec;
    Db *db = user ? env->user_db : env->db;
    const DbModel *model = user ? s->user_db_model : s->db_model;
    if (!db) {
        snprintf(err, errlen, "%s: domain %s has no user DB", what, s->name);
        return -1;
    }
    for (const cJSON *u = model ? update->child : NULL; u; u = u->next)
        if (!db_model_field(model, u->string)) {
            char names[256];
            db_model_field_names(model, names, sizeof names);
            snprintf(err, errlen, "%s: unknown table '%s' (%s has %s)", what, u->string, model->name, names);
            return -1;
        }
    db_merge(db, update);
    for (const cJSON *u = model ? update->child : NULL; u; u = u->next) {
        const DbField *f = db_model_field(model, u->string);
        int rc = 0;
        if (f->type->kind == DB_DICT && cJSON_IsObject(u)) {
            /* A table of records (merging an object leaves an object):
             * check the records the update named, read through the
             * overlay, without db_table's whole copy of a 7 MB table. The
             * view holds references, not copies. */
            cJSON *view = cJSON_CreateObject();
            for (const cJSON *r = u->child; r; r = r->next)
                cJSON_AddItemReferenceToObject(view, r->string, (cJSON *)db_get(db, u->string, r->string));
            rc = db_schema_check_value(view, f->type, what, u->string, err, errlen);
            cJSON_Delete(view);
        } else {
            const cJSON *table = db_table(db, u->string);
            if (!(cJSON_IsNull(table) && f->nullable))
                rc = db_schema_check_value(table, f->type, what, u->string, err, errlen);
        }
        if (rc) return -1;
    }
    if (s->normalize_db) s->normalize_db(env, user);
    return 0;
}

/* initialization_data is an object (or null) of agent_data and user_data,
 * each an object of tables (or null). */
static int apply_data(Env *env, const cJSON *data, char *err, size_t errlen) {
    if (!data || cJSON_IsNull(data)) return 0;
    if (!cJSON_IsObject(data)) {
        snprintf(err, errlen, "initialization_data: expected an object with agent_data and user_data, or null");
        return -1;
    }
    const char *sides[2] = {"agent_data", "user_data"};
    for (int side = 0; side < 2; side++) {
        const cJSON *update = json_get(data, sides[side]);
        if (!update || cJSON_IsNull(update)) continue;
        if (!cJSON_IsObject(update)) {
            snprintf(err, errlen, "initialization_data.%s: expected an object of tables or null", sides[side]);
            return -1;
        }
        if (merge_checked(env, side == 1, update, err, errlen) != 0) return -1;
    }
    return 0;
}

static int run_actions(Env *env, const cJSON *actions, char *err, size_t errlen) {
    if (!actions || cJSON_IsNull(actions)) return 0;
    if (!cJSON_IsArray(actions)) {
        snprintf(err, errlen, "initialization_actions: expected a list of actions or null");
        return -1;
    }
    int i = 0;
    for (const cJSON *a = actions->child; a; a = a->next, i++) {
        const char *env_type = json_get_str(a, "env_type");
        const char *func = json_get_str(a, "func_name");
        if (!env_type || !func) {
            snprintf(err, errlen, "initialization_actions[%d]: expected an object with env_type and func_name strings",
                     i);
            return -1;
        }
        char ferr[512];
        cJSON *res = env_run_function(env, env_type, func, json_get(a, "arguments"), ferr, sizeof ferr);
        if (!res) {
            snprintf(err, errlen, "initialization_actions[%d] (%s): %s", i, func, ferr);
            return -1;
        }
        cJSON_Delete(res);
    }
    return 0;
}

int env_apply_initialization(Env *env, const cJSON *initial_state, char *err, size_t errlen) {
    if (!initial_state || cJSON_IsNull(initial_state)) return 0;
    if (!cJSON_IsObject(initial_state)) {
        snprintf(err, errlen, "initial_state: expected an object or null");
        return -1;
    }
    if (apply_data(env, json_get(initial_state, "initialization_data"), err, errlen) != 0) return -1;
    return run_actions(env, json_get(initial_state, "initialization_actions"), err, errlen);
}

int env_set_initial_state(Env *env, const cJSON *initial_state, char *err, size_t errlen) {
    if (env_apply_initialization(env, initial_state, err, errlen) != 0) return -1;
    if (env_replay_messages(env, json_get(initial_state, "message_history"), true, err, errlen) != 0) return -1;
    env_sync(env);
    return 0;
}
