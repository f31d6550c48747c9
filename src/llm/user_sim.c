/* user_sim.c — the user simulator's prompt, request and response (see
 * user_sim.h). The text forms follow τ²-bench's UserSimulator.system_prompt,
 * UserScenario.__str__, UserState.flip_roles and to_litellm_messages. */
#include "llm/user_sim.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/json.h"
#include "core/sbuf.h"

/* ---------------------------------------------------------------- text */

/* Decode one UTF-8 code point at s (s[0] != 0); *len gets its byte count.
 * A malformed sequence reads as one byte that is neither space nor break. */
static uint32_t utf8_next(const unsigned char *s, size_t *len) {
    uint32_t c = s[0];
    int n = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
    if (n == 0) {
        *len = 1;
        return 0xFFFD;
    }
    if (n == 1) {
        *len = 1;
        return c;
    }
    c &= 0xFF >> (n + 1);
    for (int i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            *len = 1;
            return 0xFFFD;
        }
        c = (c << 6) | (s[i] & 0x3F);
    }
    *len = (size_t)n;
    return c;
}

/* Python's str.isspace() (characters with bidirectional type WS, B or S, or
 * category Zs). */
static bool py_isspace(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

/* A line boundary of Python's str.splitlines(). */
static bool py_linebreak(uint32_t c) {
    return c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || c == 0x1C || c == 0x1D || c == 0x1E || c == 0x85 ||
           c == 0x2028 || c == 0x2029;
}

char *user_sim_indent(const char *text, const char *prefix) {
    SBuf b;
    sbuf_init(&b);
    sbuf_puts(&b, ""); /* "" stays "" but never NULL */
    const unsigned char *p = (const unsigned char *)text;
    while (*p) {
        /* One line with its end: up to and including a boundary ("\r\n" is one). */
        const unsigned char *start = p;
        bool blank = true;
        while (*p) {
            size_t n;
            uint32_t c = utf8_next(p, &n);
            p += n;
            if (py_linebreak(c)) {
                if (c == '\r' && *p == '\n') p++;
                break;
            }
            if (!py_isspace(c)) blank = false;
        }
        if (!blank) sbuf_puts(&b, prefix);
        sbuf_put(&b, (const char *)start, (size_t)(p - start));
    }
    return sbuf_take(&b);
}

/* ---------------------------------------------------------------- scenario */

/* A required string member, or NULL with err naming the field. */
static const char *need_str(const cJSON *obj, const char *key, const char *where, char *err, size_t errlen) {
    const char *s = json_get_str(obj, key);
    if (!s) snprintf(err, errlen, "%s.%s: expected a string", where, key);
    return s;
}

/* An optional string member: *out is NULL when absent or null. */
static int opt_str(const cJSON *obj, const char *key, const char *where, const char **out, char *err,
                   size_t errlen) {
    const cJSON *v = json_get(obj, key);
    *out = NULL;
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsString(v)) {
        snprintf(err, errlen, "%s.%s: expected a string or null", where, key);
        return -1;
    }
    *out = v->valuestring;
    return 0;
}

/* "Label:\n" + indent(text, "\t") — a labelled block of the structured form. */
static void put_block(SBuf *b, const char *label, const char *text) {
    char *ind = user_sim_indent(text, "\t");
    sbuf_printf(b, "\n%s:\n%s", label, ind);
    free(ind);
}

/* str(StructuredUserInstructions). */
static char *structured_text(const cJSON *ins, char *err, size_t errlen) {
    static const char where[] = "user_scenario.instructions";
    const char *domain = need_str(ins, "domain", where, err, errlen);
    const char *reason = domain ? need_str(ins, "reason_for_call", where, err, errlen) : NULL;
    const char *task_ins = reason ? need_str(ins, "task_instructions", where, err, errlen) : NULL;
    const char *known, *unknown;
    if (!task_ins || opt_str(ins, "known_info", where, &known, err, errlen) ||
        opt_str(ins, "unknown_info", where, &unknown, err, errlen))
        return NULL;
    SBuf b;
    sbuf_init(&b);
    sbuf_printf(&b, "Domain: %s", domain);
    put_block(&b, "Reason for call", reason);
    if (known) put_block(&b, "Known info", known);
    if (unknown) put_block(&b, "Unknown info", unknown);
    put_block(&b, "Task instructions", task_ins);
    return sbuf_take(&b);
}

char *user_sim_scenario_text(const cJSON *scenario, char *err, size_t errlen) {
    if (!cJSON_IsObject(scenario)) {
        snprintf(err, errlen, "user_scenario: expected an object");
        return NULL;
    }
    const char *persona;
    if (opt_str(scenario, "persona", "user_scenario", &persona, err, errlen)) return NULL;
    const cJSON *ins = json_get(scenario, "instructions");
    char *ins_text;
    if (cJSON_IsString(ins)) {
        ins_text = xstrdup(ins->valuestring);
    } else if (cJSON_IsObject(ins)) {
        ins_text = structured_text(ins, err, errlen);
        if (!ins_text) return NULL;
    } else {
        snprintf(err, errlen, "user_scenario.instructions: expected a string or an object");
        return NULL;
    }
    SBuf b;
    sbuf_init(&b);
    if (persona) {
        char *p = user_sim_indent(persona, "\t");
        sbuf_printf(&b, "Persona:\n%s\n", p);
        free(p);
    }
    char *i = user_sim_indent(ins_text, "\t");
    sbuf_printf(&b, "Instructions:\n%s", i);
    free(i);
    free(ins_text);
    return sbuf_take(&b);
}

/* Replace every occurrence of `from` in s by `to`; a new string. */
static char *str_replace_all(const char *s, const char *from, const char *to) {
    SBuf b;
    sbuf_init(&b);
    sbuf_puts(&b, "");
    size_t nf = strlen(from);
    for (const char *hit; (hit = strstr(s, from)) != NULL; s = hit + nf) {
        sbuf_put(&b, s, (size_t)(hit - s));
        sbuf_puts(&b, to);
    }
    sbuf_puts(&b, s);
    return sbuf_take(&b);
}

char *user_sim_system_prompt(const char *data_dir, const cJSON *task, bool has_tools, char *err, size_t errlen) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", data_dir, has_tools ? USER_SIM_GUIDELINES_TOOLS : USER_SIM_GUIDELINES);
    char *guidelines = file_read_all(path, NULL, err, errlen);
    if (!guidelines) return NULL;
    char serr[512];
    char *scenario = user_sim_scenario_text(json_get(task, "user_scenario"), serr, sizeof serr);
    if (!scenario) {
        const char *id = json_get_str(task, "id");
        snprintf(err, errlen, "task %s: %s", id ? id : "(no id)", serr);
        free(guidelines);
        return NULL;
    }
    /* The runtime persona config adds no guidelines at its defaults, and
     * τ²-bench then replaces the placeholder with nothing. */
    char *g = str_replace_all(guidelines, "<PERSONA_GUIDELINES>", "");
    SBuf b;
    sbuf_init(&b);
    sbuf_printf(&b, "%s\n\n<scenario>\n%s\n</scenario>", g, scenario);
    free(g);
    free(guidelines);
    free(scenario);
    return sbuf_take(&b);
}

/* ---------------------------------------------------------------- request */

/* τ²-bench's is_tool_call, as the episode stores messages (tool_calls is
 * null or a non-empty array). */
static bool is_tool_call(const cJSON *m) {
    const cJSON *c = json_get(m, "tool_calls");
    return cJSON_IsArray(c) && c->child;
}

/* content as it is: a string, or null. */
static cJSON *content_of(const cJSON *m) {
    const char *c = json_get_str(m, "content");
    return c ? cJSON_CreateString(c) : cJSON_CreateNull();
}

/* A τ²-bench tool call as an OpenAI one. */
static cJSON *openai_tool_call(const cJSON *tc) {
    cJSON *o = cJSON_CreateObject();
    const char *id = json_get_str(tc, "id");
    const char *name = json_get_str(tc, "name");
    const cJSON *args = json_get(tc, "arguments");
    cJSON_AddStringToObject(o, "id", id ? id : "");
    cJSON_AddStringToObject(o, "type", "function");
    cJSON *fn = cJSON_AddObjectToObject(o, "function");
    cJSON_AddStringToObject(fn, "name", name ? name : "");
    char *a = args ? json_dumps(args, 0) : xstrdup("{}");
    cJSON_AddStringToObject(fn, "arguments", a);
    free(a);
    return o;
}

cJSON *user_sim_request_messages(const char *system_prompt, const cJSON *episode_messages) {
    cJSON *out = cJSON_CreateArray();
    cJSON *sys = cJSON_CreateObject();
    cJSON_AddStringToObject(sys, "role", "system");
    cJSON_AddStringToObject(sys, "content", system_prompt);
    cJSON_AddItemToArray(out, sys);
    const cJSON *m;
    cJSON_ArrayForEach(m, episode_messages) {
        const char *role = json_get_str(m, "role");
        if (!role) continue;
        cJSON *o = NULL;
        if (!strcmp(role, "user")) { /* the simulator's own turn */
            o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "role", "assistant");
            cJSON_AddItemToObject(o, "content", content_of(m));
            if (is_tool_call(m)) {
                cJSON *calls = cJSON_AddArrayToObject(o, "tool_calls");
                const cJSON *tc;
                cJSON_ArrayForEach(tc, json_get(m, "tool_calls")) cJSON_AddItemToArray(calls, openai_tool_call(tc));
            }
        } else if (!strcmp(role, "assistant")) { /* the agent: only what it says to the customer */
            if (is_tool_call(m)) continue;
            o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "role", "user");
            cJSON_AddItemToObject(o, "content", content_of(m));
        } else if (!strcmp(role, "tool")) { /* results of the user's own calls only */
            const char *req = json_get_str(m, "requestor");
            if (!req || strcmp(req, "user") != 0) continue;
            const char *id = json_get_str(m, "id");
            o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "role", "tool");
            cJSON_AddItemToObject(o, "content", content_of(m));
            cJSON_AddStringToObject(o, "tool_call_id", id ? id : "");
        }
        if (o) cJSON_AddItemToArray(out, o);
    }
    return out;
}

/* ---------------------------------------------------------------- tools */

cJSON *user_sim_tools(const Domain *d, const cJSON *task) {
    if (!d || !d->user_schemas || !d->user_schemas->child) return NULL;
    const cJSON *include = json_get(task, "user_tools");
    if (!cJSON_IsArray(include)) return cJSON_Duplicate(d->user_schemas, 1);
    /* A task's selection, in the toolkit's order (τ²-bench filters the
     * toolkit's dict); an unknown name makes the runner give no tools. */
    const cJSON *want;
    cJSON_ArrayForEach(want, include) {
        bool known = false;
        const cJSON *s;
        cJSON_ArrayForEach(s, d->user_schemas) {
            const char *name = json_get_str(json_get(s, "function"), "name");
            if (cJSON_IsString(want) && name && !strcmp(name, want->valuestring)) known = true;
        }
        if (!known) return NULL;
    }
    cJSON *out = cJSON_CreateArray();
    const cJSON *s;
    cJSON_ArrayForEach(s, d->user_schemas) {
        const char *name = json_get_str(json_get(s, "function"), "name");
        bool keep = false;
        cJSON_ArrayForEach(want, include) if (name && !strcmp(name, want->valuestring)) keep = true;
        if (keep) cJSON_AddItemToArray(out, cJSON_Duplicate(s, 1));
    }
    if (!out->child) {
        cJSON_Delete(out);
        return NULL;
    }
    return out;
}

/* ---------------------------------------------------------------- response */

static bool all_space(const char *s) {
    for (; *s; s++)
        if (*s != ' ' && *s != '\t' && *s != '\n' && *s != '\r') return false;
    return true;
}

/* One OpenAI tool call → {"id"?, "name", "arguments"}; NULL with err. */
static cJSON *parse_call(const cJSON *tc, int i, char *err, size_t errlen) {
    const cJSON *fn = json_get(tc, "function");
    const char *name = json_get_str(fn, "name");
    if (!name || !*name) {
        snprintf(err, errlen, "tool_calls[%d].function.name: expected a non-empty string", i);
        return NULL;
    }
    const cJSON *a = json_get(fn, "arguments");
    cJSON *args = NULL;
    if (cJSON_IsObject(a)) { /* some servers send the object itself */
        args = cJSON_Duplicate(a, 1);
    } else if (cJSON_IsString(a) && all_space(a->valuestring)) {
        args = cJSON_CreateObject();
    } else if (cJSON_IsString(a)) {
        char perr[256];
        args = json_parse(a->valuestring, strlen(a->valuestring), "<arguments>", perr, sizeof perr);
        if (!args) {
            snprintf(err, errlen, "tool_calls[%d] (%s): arguments are not valid JSON: %s", i, name, perr);
            return NULL;
        }
    } else if (!a || cJSON_IsNull(a)) {
        args = cJSON_CreateObject();
    }
    if (!cJSON_IsObject(args)) {
        cJSON_Delete(args);
        snprintf(err, errlen, "tool_calls[%d] (%s): arguments: expected a JSON object", i, name);
        return NULL;
    }
    cJSON *call = cJSON_CreateObject();
    const char *id = json_get_str(tc, "id");
    if (id && *id) cJSON_AddStringToObject(call, "id", id);
    cJSON_AddStringToObject(call, "name", name);
    cJSON_AddItemToObject(call, "arguments", args);
    return call;
}

/* A reasoning model served without a reasoning parser puts its thoughts in
 * the content as a leading <think>...</think> block; the customer must not
 * say them to the agent. Returns where the spoken text starts. */
static const char *skip_think(const char *s) {
    const char *p = s;
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
    if (strncmp(p, "<think>", 7) != 0) return s;
    const char *end = strstr(p, "</think>");
    if (!end) return s;
    p = end + 8;
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
    return p;
}

cJSON *user_sim_parse_response(const cJSON *msg, char *err, size_t errlen) {
    if (!cJSON_IsObject(msg)) {
        snprintf(err, errlen, "user model reply: expected a message object");
        return NULL;
    }
    const cJSON *content = json_get(msg, "content");
    if (content && !cJSON_IsString(content) && !cJSON_IsNull(content)) {
        snprintf(err, errlen, "user model reply: content: expected a string or null");
        return NULL;
    }
    cJSON *out = cJSON_CreateObject();
    if (cJSON_IsString(content)) {
        const char *text = skip_think(content->valuestring);
        bool thought_only = text != content->valuestring && !*text;
        cJSON_AddItemToObject(out, "content", thought_only ? cJSON_CreateNull() : cJSON_CreateString(text));
    } else {
        cJSON_AddNullToObject(out, "content");
    }
    const cJSON *calls = json_get(msg, "tool_calls");
    if (calls && !cJSON_IsNull(calls) && !cJSON_IsArray(calls)) {
        cJSON_Delete(out);
        snprintf(err, errlen, "user model reply: tool_calls: expected an array or null");
        return NULL;
    }
    if (cJSON_IsArray(calls) && calls->child) {
        cJSON *arr = cJSON_AddArrayToObject(out, "tool_calls");
        int i = 0;
        const cJSON *tc;
        cJSON_ArrayForEach(tc, calls) {
            cJSON *call = parse_call(tc, i++, err, errlen);
            if (!call) {
                cJSON_Delete(out);
                return NULL;
            }
            cJSON_AddItemToArray(arr, call);
        }
    }
    return out;
}

/* ---------------------------------------------------------------- models */

const char *user_sim_pick_model(const cJSON *models, int sample_index) {
    if (cJSON_IsString(models)) return models->valuestring;
    if (!cJSON_IsArray(models)) return NULL;
    int n = cJSON_GetArraySize(models);
    if (n == 0) return NULL;
    int i = sample_index % n;
    if (i < 0) i += n;
    const cJSON *m = cJSON_GetArrayItem(models, i);
    return cJSON_IsString(m) ? m->valuestring : NULL;
}
