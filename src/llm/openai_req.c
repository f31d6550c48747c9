/* openai_req.c — OpenAI chat-completions requests in, responses out (see openai_req.h). */
#include "llm/openai_req.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/json.h"
#include "core/rng.h"
#include "core/sbuf.h"
#include "text/toolcall.h"

/* ---------------------------------------------------------------- errors */

static const char *status_type(int status) {
    switch (status) {
    case 404: return "not_found_error";
    case 405: return "invalid_request_error";
    case 413: return "invalid_request_error";
    case 500: return "server_error";
    case 503: return "service_unavailable_error";
    default: return "invalid_request_error";
    }
}

int openai_error_set(OpenAIError *e, int status, const char *param, const char *code, const char *fmt, ...) {
    if (!e) return -1;
    e->status = status;
    snprintf(e->type, sizeof e->type, "%s", status_type(status));
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    snprintf(e->code, sizeof e->code, "%s", code ? code : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return -1;
}

/* Messages quote values from the request; keep them short and printable
 * ASCII so that an error body is always valid JSON text. */
static void quote_value(char *out, size_t outlen, const char *s) {
    size_t j = 0;
    for (size_t i = 0; s && s[i] && j + 4 < outlen; i++) {
        unsigned char c = (unsigned char)s[i];
        out[j++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
        if (i >= 40) {
            out[j++] = '.';
            out[j++] = '.';
            out[j++] = '.';
            break;
        }
    }
    out[j] = 0;
}

static void add_str_or_null(cJSON *o, const char *key, const char *s) {
    if (s && s[0]) cJSON_AddStringToObject(o, key, s);
    else cJSON_AddNullToObject(o, key);
}

char *openai_error_json(const OpenAIError *e) {
    cJSON *root = cJSON_CreateObject(), *err = cJSON_AddObjectToObject(root, "error");
    cJSON_AddStringToObject(err, "message", e->message);
    cJSON_AddStringToObject(err, "type", e->type[0] ? e->type : status_type(e->status));
    add_str_or_null(err, "param", e->param);
    add_str_or_null(err, "code", e->code);
    /* ensure_ascii: a message that quotes the request stays ASCII JSON */
    char *s = json_dumps(root, JSON_DUMP_COMPACT);
    cJSON_Delete(root);
    return s;
}

/* ---------------------------------------------------------------- request */

static bool is_finite_number(const cJSON *v) {
    return cJSON_IsNumber(v) && isfinite(v->valuedouble);
}

static bool is_null_or_absent(const cJSON *v) {
    return !v || cJSON_IsNull(v);
}

/* A message's content as one string: a string, null (""), or a list of
 * text parts joined. NULL with err on anything else. */
static char *content_text(const cJSON *c, const char *param, OpenAIError *err) {
    if (is_null_or_absent(c)) return xstrdup("");
    if (cJSON_IsString(c)) return xstrdup(c->valuestring);
    if (!cJSON_IsArray(c)) {
        openai_error_set(err, 400, param, NULL, "%s: expected a string, null or a list of text parts", param);
        return NULL;
    }
    SBuf b;
    sbuf_init(&b);
    sbuf_puts(&b, "");
    int i = 0;
    for (const cJSON *part = c->child; part; part = part->next, i++) {
        const char *type = json_get_str(part, "type");
        const char *text = json_get_str(part, "text");
        if (!cJSON_IsObject(part) || !type || strcmp(type, "text") != 0 || !text) {
            char t[64];
            quote_value(t, sizeof t, type ? type : "(none)");
            openai_error_set(err, 400, param, NULL,
                             "%s[%d]: expected a text part {\"type\": \"text\", \"text\": \"...\"} (got type '%s'; "
                             "this server accepts text only)", param, i, t);
            sbuf_free(&b);
            return NULL;
        }
        sbuf_puts(&b, text);
    }
    return sbuf_take(&b);
}

/* One OpenAI tool call of an assistant message → template form:
 * {"type": "function", "id", "function": {"name", "arguments": object}}.
 * Arguments that are not a JSON object stay the string they were (the
 * template then prints them verbatim). */
static cJSON *tool_call_to_template(const cJSON *tc, const char *param, OpenAIError *err) {
    if (!cJSON_IsObject(tc)) {
        openai_error_set(err, 400, param, NULL, "%s: expected an object", param);
        return NULL;
    }
    const cJSON *type = json_get(tc, "type");
    if (!is_null_or_absent(type) && !(cJSON_IsString(type) && !strcmp(type->valuestring, "function"))) {
        openai_error_set(err, 400, param, NULL, "%s.type: expected \"function\"", param);
        return NULL;
    }
    const cJSON *id = json_get(tc, "id");
    if (!is_null_or_absent(id) && !cJSON_IsString(id)) {
        openai_error_set(err, 400, param, NULL, "%s.id: expected a string", param);
        return NULL;
    }
    const cJSON *fn = json_get(tc, "function");
    const char *name = json_get_str(fn, "name");
    if (!cJSON_IsObject(fn) || !name || !name[0]) {
        openai_error_set(err, 400, param, NULL, "%s.function: expected an object with a non-empty string \"name\"",
                         param);
        return NULL;
    }
    const cJSON *args = json_get(fn, "arguments");
    cJSON *targs;
    if (is_null_or_absent(args)) {
        targs = cJSON_CreateObject();
    } else if (cJSON_IsString(args)) {
        char perr[256];
        cJSON *parsed = json_parse(args->valuestring, strlen(args->valuestring), "arguments", perr, sizeof perr);
        if (cJSON_IsObject(parsed)) {
            targs = parsed;
        } else {
            cJSON_Delete(parsed);
            targs = cJSON_CreateString(args->valuestring);
        }
    } else if (cJSON_IsObject(args)) {
        targs = cJSON_Duplicate(args, 1);
    } else {
        openai_error_set(err, 400, param, NULL, "%s.function.arguments: expected a JSON string", param);
        return NULL;
    }
    cJSON *out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "type", "function");
    if (cJSON_IsString(id)) cJSON_AddStringToObject(out, "id", id->valuestring);
    cJSON *tfn = cJSON_AddObjectToObject(out, "function");
    cJSON_AddStringToObject(tfn, "name", name);
    cJSON_AddItemToObject(tfn, "arguments", targs);
    return out;
}

/* One request message → template form (see text/chat.h). */
static cJSON *message_to_template(const cJSON *m, int i, OpenAIError *err) {
    char param[96];
    snprintf(param, sizeof param, "messages[%d]", i);
    if (!cJSON_IsObject(m)) {
        openai_error_set(err, 400, param, NULL, "%s: expected an object with \"role\" and \"content\"", param);
        return NULL;
    }
    const char *role = json_get_str(m, "role");
    if (!role) {
        openai_error_set(err, 400, param, NULL, "%s.role: expected a string (system, user, assistant or tool)", param);
        return NULL;
    }
    const char *trole;
    if (!strcmp(role, "system") || !strcmp(role, "developer")) trole = "system";
    else if (!strcmp(role, "user")) trole = "user";
    else if (!strcmp(role, "assistant")) trole = "assistant";
    else if (!strcmp(role, "tool")) trole = "tool";
    else {
        char r[64];
        quote_value(r, sizeof r, role);
        openai_error_set(err, 400, param, NULL, "%s.role: expected system, user, assistant or tool, got '%s'", param, r);
        return NULL;
    }
    char cparam[112];
    snprintf(cparam, sizeof cparam, "%s.content", param);
    const cJSON *content = json_get(m, "content");
    const cJSON *calls = json_get(m, "tool_calls");
    bool has_calls = cJSON_IsArray(calls) && cJSON_GetArraySize(calls) > 0;
    if (!content && strcmp(trole, "assistant") != 0) {
        openai_error_set(err, 400, cparam, NULL, "%s: missing (a %s message needs content)", cparam, role);
        return NULL;
    }
    if (!strcmp(trole, "assistant") && is_null_or_absent(content) && !has_calls) {
        openai_error_set(err, 400, cparam, NULL, "%s: an assistant message needs content or tool_calls", cparam);
        return NULL;
    }
    char *text = content_text(content, cparam, err);
    if (!text) return NULL;
    cJSON *out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "role", trole);
    cJSON_AddStringToObject(out, "content", text);
    free(text);

    if (!strcmp(trole, "assistant")) {
        const cJSON *rc = json_get(m, "reasoning_content");
        if (cJSON_IsString(rc)) cJSON_AddStringToObject(out, "reasoning_content", rc->valuestring);
        if (!is_null_or_absent(calls) && !cJSON_IsArray(calls)) {
            openai_error_set(err, 400, param, NULL, "%s.tool_calls: expected a list of tool calls", param);
            cJSON_Delete(out);
            return NULL;
        }
        if (has_calls) {
            cJSON *tcalls = cJSON_AddArrayToObject(out, "tool_calls");
            int j = 0;
            for (const cJSON *tc = calls->child; tc; tc = tc->next, j++) {
                char tparam[128];
                snprintf(tparam, sizeof tparam, "%s.tool_calls[%d]", param, j);
                cJSON *t = tool_call_to_template(tc, tparam, err);
                if (!t) {
                    cJSON_Delete(out);
                    return NULL;
                }
                cJSON_AddItemToArray(tcalls, t);
            }
        }
    } else if (calls && !cJSON_IsNull(calls)) {
        openai_error_set(err, 400, param, NULL, "%s.tool_calls: only assistant messages have tool calls", param);
        cJSON_Delete(out);
        return NULL;
    }
    if (!strcmp(trole, "tool")) {
        const cJSON *id = json_get(m, "tool_call_id");
        if (!is_null_or_absent(id) && !cJSON_IsString(id)) {
            openai_error_set(err, 400, param, NULL, "%s.tool_call_id: expected a string", param);
            cJSON_Delete(out);
            return NULL;
        }
        if (cJSON_IsString(id)) cJSON_AddStringToObject(out, "tool_call_id", id->valuestring);
        const char *name = json_get_str(m, "name");
        if (name) cJSON_AddStringToObject(out, "name", name);
    }
    return out;
}

static cJSON *parse_tools(const cJSON *tools, OpenAIError *err) {
    if (!cJSON_IsArray(tools)) {
        openai_error_set(err, 400, "tools", NULL, "tools: expected a list of {\"type\": \"function\", \"function\": {...}}");
        return NULL;
    }
    int i = 0;
    for (const cJSON *t = tools->child; t; t = t->next, i++) {
        char param[64];
        snprintf(param, sizeof param, "tools[%d]", i);
        const char *type = json_get_str(t, "type");
        const cJSON *fn = json_get(t, "function");
        const char *name = json_get_str(fn, "name");
        if (!cJSON_IsObject(t) || !type || strcmp(type, "function") != 0) {
            openai_error_set(err, 400, param, NULL, "%s.type: expected \"function\"", param);
            return NULL;
        }
        if (!cJSON_IsObject(fn) || !name || !name[0]) {
            openai_error_set(err, 400, param, NULL, "%s.function: expected an object with a non-empty string \"name\"",
                             param);
            return NULL;
        }
        const cJSON *params = json_get(fn, "parameters");
        if (!is_null_or_absent(params) && !cJSON_IsObject(params)) {
            openai_error_set(err, 400, param, NULL, "%s.function.parameters: expected a JSON Schema object", param);
            return NULL;
        }
    }
    return i > 0 ? cJSON_Duplicate(tools, 1) : NULL;
}

/* An optional number field in [lo, hi] (lo_open: lo itself excluded). */
static int get_number(const cJSON *req, const char *key, double lo, bool lo_open, double hi, double *out,
                      OpenAIError *err) {
    const cJSON *v = json_get(req, key);
    if (is_null_or_absent(v)) return 0;
    if (!is_finite_number(v) || v->valuedouble < lo || (lo_open && v->valuedouble == lo) || v->valuedouble > hi) {
        return openai_error_set(err, 400, key, NULL, "%s: expected a number in %c%g, %g]", key, lo_open ? '(' : '[',
                                lo, hi);
    }
    *out = v->valuedouble;
    return 0;
}

/* An optional integer field in [lo, hi]. */
static int get_int(const cJSON *req, const char *key, double lo, double hi, double *out, OpenAIError *err) {
    const cJSON *v = json_get(req, key);
    if (is_null_or_absent(v)) return 0;
    if (!json_is_int(v) || !isfinite(v->valuedouble) || v->valuedouble < lo || v->valuedouble > hi) {
        return openai_error_set(err, 400, key, NULL, "%s: expected an integer in [%.0f, %.0f]", key, lo, hi);
    }
    *out = v->valuedouble;
    return 0;
}

static int parse_stop(const cJSON *stop, OpenAIChatRequest *r, OpenAIError *err) {
    if (is_null_or_absent(stop)) return 0;
    if (cJSON_IsString(stop)) {
        if (!stop->valuestring[0]) return openai_error_set(err, 400, "stop", NULL, "stop: expected a non-empty string");
        r->stop = xmalloc(sizeof(char *));
        r->stop[0] = xstrdup(stop->valuestring);
        r->n_stop = 1;
        return 0;
    }
    int n = cJSON_IsArray(stop) ? cJSON_GetArraySize(stop) : -1;
    if (n < 0 || n > OPENAI_MAX_STOP) {
        return openai_error_set(err, 400, "stop", NULL, "stop: expected a string or a list of at most %d strings",
                                OPENAI_MAX_STOP);
    }
    int i = 0;
    for (const cJSON *s = stop->child; s; s = s->next, i++) {
        if (!cJSON_IsString(s) || !s->valuestring[0]) {
            return openai_error_set(err, 400, "stop", NULL, "stop[%d]: expected a non-empty string", i);
        }
    }
    if (n == 0) return 0;
    r->stop = xmalloc((size_t)n * sizeof(char *));
    for (const cJSON *s = stop->child; s; s = s->next) r->stop[r->n_stop++] = xstrdup(s->valuestring);
    return 0;
}

/* Fields this server knows and does not implement: refused unless they
 * ask for the default behaviour. */
static int check_unsupported(const cJSON *req, OpenAIError *err) {
    const cJSON *v;
    if ((v = json_get(req, "stream")) && !cJSON_IsNull(v) && !cJSON_IsFalse(v)) {
        return openai_error_set(err, 400, "stream", "unsupported_value",
                                "stream: streaming is not supported by this server; send \"stream\": false or leave "
                                "it out");
    }
    if ((v = json_get(req, "n")) && !cJSON_IsNull(v) && !(json_is_int(v) && v->valuedouble == 1)) {
        return openai_error_set(err, 400, "n", "unsupported_value",
                                "n: this server returns one choice per request; send \"n\": 1 (or send n requests "
                                "with different seeds)");
    }
    if ((v = json_get(req, "logprobs")) && !cJSON_IsNull(v) && !cJSON_IsFalse(v)) {
        return openai_error_set(err, 400, "logprobs", "unsupported_value", "logprobs: not supported by this server");
    }
    static const char *const penalties[] = {"frequency_penalty", "presence_penalty", NULL};
    for (int i = 0; penalties[i]; i++) {
        v = json_get(req, penalties[i]);
        if (v && !cJSON_IsNull(v) && !(cJSON_IsNumber(v) && v->valuedouble == 0)) {
            return openai_error_set(err, 400, penalties[i], "unsupported_value",
                                    "%s: not supported by this server (only 0)", penalties[i]);
        }
    }
    if ((v = json_get(req, "response_format")) && !cJSON_IsNull(v)) {
        const char *type = json_get_str(v, "type");
        if (!type || strcmp(type, "text") != 0) {
            return openai_error_set(err, 400, "response_format", "unsupported_value",
                                    "response_format: only {\"type\": \"text\"} is supported (no constrained decoding)");
        }
    }
    return 0;
}

static int parse_fields(const cJSON *req, OpenAIChatRequest *r, OpenAIError *err) {
    if (check_unsupported(req, err) != 0) return -1;

    const cJSON *model = json_get(req, "model");
    if (!is_null_or_absent(model) && !cJSON_IsString(model)) {
        return openai_error_set(err, 400, "model", NULL, "model: expected a string");
    }
    if (cJSON_IsString(model)) r->model = xstrdup(model->valuestring);

    const cJSON *msgs = json_get(req, "messages");
    if (!cJSON_IsArray(msgs) || cJSON_GetArraySize(msgs) == 0) {
        return openai_error_set(err, 400, "messages", NULL, "messages: expected a non-empty list of messages");
    }
    r->messages = cJSON_CreateArray();
    int i = 0;
    for (const cJSON *m = msgs->child; m; m = m->next, i++) {
        cJSON *t = message_to_template(m, i, err);
        if (!t) return -1;
        cJSON_AddItemToArray(r->messages, t);
    }

    const cJSON *tools = json_get(req, "tools");
    if (!is_null_or_absent(tools)) {
        r->tools = parse_tools(tools, err);
        if (!r->tools && err->status) return -1;
    }
    const cJSON *choice = json_get(req, "tool_choice");
    if (!is_null_or_absent(choice)) {
        if (cJSON_IsString(choice) && !strcmp(choice->valuestring, "none")) {
            r->parse_tool_calls = false;
        } else if (!(cJSON_IsString(choice) && !strcmp(choice->valuestring, "auto"))) {
            return openai_error_set(err, 400, "tool_choice", "unsupported_value",
                                    "tool_choice: expected \"auto\" or \"none\" (forcing a tool is not supported)");
        }
    }
    const cJSON *kw = json_get(req, "chat_template_kwargs");
    if (!is_null_or_absent(kw)) {
        if (!cJSON_IsObject(kw)) {
            return openai_error_set(err, 400, "chat_template_kwargs", NULL, "chat_template_kwargs: expected an object");
        }
        r->template_kwargs = cJSON_Duplicate(kw, 1);
    }

    double v;
    v = r->temperature;
    if (get_number(req, "temperature", 0, false, 2, &v, err) != 0) return -1;
    r->temperature = (float)v;
    v = r->top_p;
    if (get_number(req, "top_p", 0, true, 1, &v, err) != 0) return -1;
    r->top_p = (float)v;
    v = 0;
    if (get_int(req, "top_k", -1, 1e9, &v, err) != 0) return -1;
    r->top_k = v < 0 ? 0 : (int)v;
    /* max_completion_tokens is the newer name; it wins when both are given. */
    v = 0;
    if (get_int(req, "max_tokens", 1, 1 << 30, &v, err) != 0) return -1;
    if (get_int(req, "max_completion_tokens", 1, 1 << 30, &v, err) != 0) return -1;
    r->max_tokens = (int)v;
    const cJSON *seed = json_get(req, "seed");
    if (!is_null_or_absent(seed)) {
        /* an int64 as OpenAI documents it; 2^63 itself does not fit */
        if (!json_is_int(seed) || !isfinite(seed->valuedouble) || seed->valuedouble < -9223372036854775808.0 ||
            seed->valuedouble >= 9223372036854775808.0) {
            return openai_error_set(err, 400, "seed", NULL, "seed: expected an integer");
        }
        r->has_seed = true;
        r->seed = (uint64_t)(int64_t)seed->valuedouble;
    }
    return parse_stop(json_get(req, "stop"), r, err);
}

int openai_chat_request_parse(const char *body, size_t len, OpenAIChatRequest *out, OpenAIError *err) {
    memset(out, 0, sizeof *out);
    memset(err, 0, sizeof *err);
    out->temperature = 1.0f;
    out->top_p = 1.0f;
    out->parse_tool_calls = true;
    char perr[512];
    cJSON *req = json_parse(body ? body : "", body ? len : 0, "body", perr, sizeof perr);
    if (!req) {
        return openai_error_set(err, 400, NULL, "invalid_json", "the request body is not valid JSON: %s", perr);
    }
    if (!cJSON_IsObject(req)) {
        cJSON_Delete(req);
        return openai_error_set(err, 400, NULL, "invalid_json", "the request body must be a JSON object");
    }
    int rc = parse_fields(req, out, err);
    cJSON_Delete(req);
    if (rc != 0) {
        openai_chat_request_free(out);
        return -1;
    }
    return 0;
}

void openai_chat_request_free(OpenAIChatRequest *r) {
    if (!r) return;
    cJSON_Delete(r->messages);
    cJSON_Delete(r->tools);
    cJSON_Delete(r->template_kwargs);
    free(r->model);
    for (int i = 0; i < r->n_stop; i++) free(r->stop[i]);
    free(r->stop);
    memset(r, 0, sizeof *r);
}

/* ---------------------------------------------------------------- responses */

/* "call_" and 24 hex digits, a function of (seed, index). */
static void tool_call_id(char out[32], uint64_t seed, int index) {
    uint32_t w[4];
    rng_draw(seed, 0x746f6f6c63616c6cULL /* "toolcall" */, (uint64_t)index, w);
    snprintf(out, 32, "call_%08x%08x%08x", w[0], w[1], w[2]);
}

cJSON *openai_assistant_message(const char *text, size_t len, bool parse_tool_calls, uint64_t id_seed, int *n_calls) {
    cJSON *msg = cJSON_CreateObject();
    cJSON_AddStringToObject(msg, "role", "assistant");
    if (n_calls) *n_calls = 0;
    cJSON *parsed = NULL;
    const cJSON *calls = NULL;
    if (parse_tool_calls && text && memmem(text, len, TOOLCALL_OPEN, strlen(TOOLCALL_OPEN))) {
        parsed = toolcall_parse(text, len, NULL);
        calls = json_get(parsed, "tool_calls");
        if (!cJSON_IsArray(calls) || cJSON_GetArraySize(calls) == 0 || toolcall_count_errors(parsed) > 0) calls = NULL;
    }
    if (!calls) {
        /* cJSON strings end at a NUL: a decoded NUL byte ends the content */
        char *s = xstrndup(text ? text : "", text ? len : 0);
        cJSON_AddStringToObject(msg, "content", s);
        free(s);
        cJSON_Delete(parsed);
        return msg;
    }
    const char *content = json_get_str(parsed, "content");
    if (content) cJSON_AddStringToObject(msg, "content", content);
    else cJSON_AddNullToObject(msg, "content");
    cJSON *out = cJSON_AddArrayToObject(msg, "tool_calls");
    int i = 0;
    for (const cJSON *c = calls->child; c; c = c->next, i++) {
        char id[32];
        tool_call_id(id, id_seed, i);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "id", id);
        cJSON_AddStringToObject(o, "type", "function");
        cJSON *fn = cJSON_AddObjectToObject(o, "function");
        const char *name = json_get_str(c, "name");
        cJSON_AddStringToObject(fn, "name", name ? name : "");
        /* json.dumps(arguments, ensure_ascii=False), as vLLM's Hermes parser writes them */
        char *args = json_dumps(json_get(c, "arguments"), JSON_DUMP_UTF8);
        cJSON_AddStringToObject(fn, "arguments", args);
        free(args);
        cJSON_AddItemToArray(out, o);
    }
    if (n_calls) *n_calls = i;
    cJSON_Delete(parsed);
    return msg;
}

char *openai_chat_response_json(const OpenAIChatResult *r) {
    int n_calls = 0;
    cJSON *msg = openai_assistant_message(r->text, r->text_len, r->parse_tool_calls, r->id_seed, &n_calls);
    const char *finish = r->finish ? r->finish : "stop";
    if (n_calls > 0 && !strcmp(finish, "stop")) finish = "tool_calls";

    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "id", r->id ? r->id : "chatcmpl");
    cJSON_AddStringToObject(root, "object", "chat.completion");
    cJSON_AddItemToObject(root, "created", json_int((double)r->created));
    cJSON_AddStringToObject(root, "model", r->model ? r->model : "");
    cJSON *choices = cJSON_AddArrayToObject(root, "choices");
    cJSON *choice = cJSON_CreateObject();
    cJSON_AddItemToObject(choice, "index", json_int(0));
    cJSON_AddItemToObject(choice, "message", msg);
    cJSON_AddNullToObject(choice, "logprobs");
    cJSON_AddStringToObject(choice, "finish_reason", finish);
    cJSON_AddItemToArray(choices, choice);
    cJSON *usage = cJSON_AddObjectToObject(root, "usage");
    cJSON_AddItemToObject(usage, "prompt_tokens", json_int(r->prompt_tokens));
    cJSON_AddItemToObject(usage, "completion_tokens", json_int(r->completion_tokens));
    cJSON_AddItemToObject(usage, "total_tokens", json_int((double)r->prompt_tokens + r->completion_tokens));
    char *s = json_dumps(root, JSON_DUMP_COMPACT | JSON_DUMP_UTF8);
    cJSON_Delete(root);
    return s;
}

char *openai_models_json(const char *model, int64_t created) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "object", "list");
    cJSON *data = cJSON_AddArrayToObject(root, "data");
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "id", model ? model : "");
    cJSON_AddStringToObject(m, "object", "model");
    cJSON_AddItemToObject(m, "created", json_int((double)created));
    cJSON_AddStringToObject(m, "owned_by", "tau2_hpc");
    cJSON_AddItemToArray(data, m);
    char *s = json_dumps(root, JSON_DUMP_COMPACT | JSON_DUMP_UTF8);
    cJSON_Delete(root);
    return s;
}

/* ---------------------------------------------------------------- MPI framing */

int openai_mpi_reply_tag(uint64_t k) {
    return OPENAI_MPI_TAG_REPLY_BASE + (int)(k % OPENAI_MPI_REPLY_TAGS);
}

char *openai_mpi_reply_pack(int status, const char *json, size_t *len) {
    if (status < 100 || status > 599) die_runtime("openai_mpi_reply_pack: status %d is not an HTTP status", status);
    size_t n = strlen(json);
    char *msg = xmalloc(n + 5);
    snprintf(msg, 5, "%03d\n", status);
    memcpy(msg + 4, json, n + 1);
    *len = n + 4;
    return msg;
}

int openai_mpi_reply_unpack(const char *msg, size_t len, int *status, const char **json, size_t *json_len) {
    if (!msg || len < 4 || msg[3] != '\n') return -1;
    int v = 0;
    for (int i = 0; i < 3; i++) {
        if (msg[i] < '0' || msg[i] > '9') return -1;
        v = 10 * v + (msg[i] - '0');
    }
    if (v < 100) return -1;
    *status = v;
    *json = msg + 4;
    *json_len = len - 4;
    return 0;
}
