/* fault_server.c — see fault_server.h.
 *
 * libmicrohttpd with a thread per connection: a slow answer holds only its
 * own connection. State shared by the connection threads (the records,
 * the attempt counts, the in-flight count) sits behind one mutex. */
#include "fault_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cJSON.h>
#include <microhttpd.h>
#include <xxhash.h>

#include "core/error.h"
#include "core/rng.h"
#include "core/sbuf.h"

typedef struct {
    char *method, *url, *headers, *body;
    FaultKind kind;
} FaultRecord;

typedef struct {
    uint64_t hash;
    int seen;
} BodyCount;

struct FaultServer {
    FaultSpec spec;
    struct MHD_Daemon *daemon;
    pthread_mutex_t mu;
    pthread_cond_t wake; /* signalled on stop, so slow answers end */
    bool stopping;
    FaultRecord *rec;
    int n_rec, cap_rec;
    BodyCount *bodies;
    int n_bodies, cap_bodies;
    int count[FAULT_KIND_COUNT];
    int inflight, max_inflight;
    long next_response_id;
    int judge_requests;
};

/* One connection's request while its body arrives. */
typedef struct {
    SBuf body;
} ConnState;

static const char *const kind_names[FAULT_KIND_COUNT] = {"ok", "drop", "429", "500", "503", "slow", "malformed",
                                                         "nochoices", "400", "401"};

const char *fault_kind_name(FaultKind k) {
    return (k >= 0 && k < FAULT_KIND_COUNT) ? kind_names[k] : "?";
}

int fault_kind_parse(const char *name) {
    for (int k = 0; k < FAULT_KIND_COUNT; k++)
        if (strcmp(name, kind_names[k]) == 0) return k;
    return -1;
}

/* ---- choosing a fault ---- */

/* The attempt number (0-based) of this body: how often it was seen before. */
static int body_attempt(FaultServer *s, uint64_t hash) {
    for (int i = 0; i < s->n_bodies; i++)
        if (s->bodies[i].hash == hash) return s->bodies[i].seen++;
    if (s->n_bodies == s->cap_bodies) {
        s->cap_bodies = s->cap_bodies ? 2 * s->cap_bodies : 64;
        s->bodies = xrealloc(s->bodies, (size_t)s->cap_bodies * sizeof *s->bodies);
    }
    s->bodies[s->n_bodies++] = (BodyCount){hash, 1};
    return 0;
}

/* The text of the last user message with string content, or "". */
static const char *last_user_text(const cJSON *req) {
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(req, "messages");
    const char *text = "";
    const cJSON *m;
    cJSON_ArrayForEach(m, msgs) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        if (cJSON_IsString(role) && strcmp(role->valuestring, "user") == 0 && cJSON_IsString(content))
            text = content->valuestring;
    }
    return text;
}

/* "[fault:a,b,c]" in text: the kind for this attempt, or -1 when there is
 * no directive (an unknown name counts as ok). */
static int directive_kind(const char *text, int attempt) {
    const char *d = strstr(text, "[fault:");
    if (!d) return -1;
    d += 7;
    const char *end = strchr(d, ']');
    if (!end) return -1;
    int i = 0, kind = FAULT_OK;
    while (d < end) {
        const char *comma = memchr(d, ',', (size_t)(end - d));
        const char *stop = comma ? comma : end;
        char name[32];
        size_t n = (size_t)(stop - d) < sizeof name - 1 ? (size_t)(stop - d) : sizeof name - 1;
        memcpy(name, d, n);
        name[n] = '\0';
        int k = fault_kind_parse(name);
        kind = k < 0 ? FAULT_OK : k;
        if (i == attempt) return kind;
        i++;
        d = stop + 1;
    }
    return kind; /* past the list: the last one repeats */
}

static FaultKind random_kind(const FaultSpec *spec, uint64_t hash, int attempt) {
    if (spec->max_faults >= 0 && attempt >= spec->max_faults) return FAULT_OK;
    double total = 0;
    for (int k = 0; k < FAULT_KIND_COUNT; k++) total += spec->weight[k] > 0 ? spec->weight[k] : 0;
    if (total <= 0) return FAULT_OK;
    double u = rng_uniform(spec->seed, hash, (uint64_t)attempt) * total;
    for (int k = 0; k < FAULT_KIND_COUNT; k++) {
        double w = spec->weight[k] > 0 ? spec->weight[k] : 0;
        if (u < w) return (FaultKind)k;
        u -= w;
    }
    return FAULT_OK;
}

/* ---- answering ---- */

static enum MHD_Result send_json(struct MHD_Connection *conn, unsigned status, const char *json, int retry_after) {
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(json), (void *)json, MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(r, "Content-Type", "application/json");
    if (retry_after > 0) {
        char v[32];
        snprintf(v, sizeof v, "%d", retry_after);
        MHD_add_response_header(r, "Retry-After", v);
    }
    enum MHD_Result rc = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return rc;
}

static char *error_json(const char *type, const char *message) {
    cJSON *o = cJSON_CreateObject();
    cJSON *e = cJSON_AddObjectToObject(o, "error");
    cJSON_AddStringToObject(e, "message", message);
    cJSON_AddStringToObject(e, "type", type);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

/* ---- the script: τ²-bench's user simulator and NL-assertion judge ---- */

/* A sentence of τ²-bench's judge system prompt (llm/judge.c). */
#define JUDGE_PROMPT_MARK "Your job is to evaluate whether the agent satisfies each of the expected outcomes"

static bool is_judge_request(const cJSON *req) {
    const cJSON *first = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(req, "messages"), 0);
    const cJSON *role = cJSON_GetObjectItemCaseSensitive(first, "role");
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(first, "content");
    return cJSON_IsString(role) && strcmp(role->valuestring, "system") == 0 && cJSON_IsString(content) &&
           strstr(content->valuestring, JUDGE_PROMPT_MARK) != NULL;
}

/* The expected outcomes of a judge request: the Python list literal after
 * "expectedOutcomes:" in its user message, as an array of strings (escaped
 * quotes and backslashes undone, other escapes kept as written). */
static cJSON *judge_outcomes(const char *text) {
    cJSON *out = cJSON_CreateArray();
    const char *p = strstr(text, "expectedOutcomes:");
    if (!p || !(p = strchr(p, '['))) return out;
    p++;
    for (;;) {
        while (*p == ' ' || *p == ',') p++;
        if (*p != '\'' && *p != '"') break;
        char q = *p++;
        SBuf b;
        sbuf_init(&b);
        sbuf_puts(&b, "");
        while (*p && *p != q) {
            if (*p == '\\' && (p[1] == '\'' || p[1] == '"' || p[1] == '\\')) p++;
            else if (*p == '\\' && p[1]) sbuf_putc(&b, *p++);
            sbuf_putc(&b, *p++);
        }
        if (*p) p++;
        cJSON_AddItemToArray(out, cJSON_CreateString(b.data));
        sbuf_free(&b);
    }
    return out;
}

/* The scripted answer's text: a verdict for a judge request, else the
 * user simulator's last line. */
static void scripted_content(SBuf *content, const cJSON *req, bool judge_met) {
    if (!is_judge_request(req)) {
        sbuf_puts(content, "Thank you, that is all I needed. ###STOP###");
        return;
    }
    cJSON *outcomes = judge_outcomes(last_user_text(req));
    cJSON *verdict = cJSON_CreateObject();
    cJSON *results = cJSON_AddArrayToObject(verdict, "results");
    const cJSON *o;
    cJSON_ArrayForEach(o, outcomes) {
        cJSON *r = cJSON_CreateObject();
        cJSON_AddStringToObject(r, "expectedOutcome", o->valuestring);
        cJSON_AddStringToObject(r, "reasoning", judge_met ? "scripted: met" : "scripted: not met");
        cJSON_AddBoolToObject(r, "metExpectation", judge_met);
        cJSON_AddItemToArray(results, r);
    }
    char *text = cJSON_PrintUnformatted(verdict);
    sbuf_puts(content, text);
    free(text);
    cJSON_Delete(verdict);
    cJSON_Delete(outcomes);
}

/* A good chat completion for req, deterministic in its content; scripted:
 * NULL or the script's verdict for judge requests (&true, &false). */
static char *completion_json(const cJSON *req, long id, uint64_t hash, int attempt, const bool *script_met) {
    const char *text = last_user_text(req);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(req, "model");
    const cJSON *tools = cJSON_GetObjectItemCaseSensitive(req, "tools");
    const cJSON *tool0 = cJSON_GetArrayItem(tools, 0);
    const cJSON *fn = cJSON_GetObjectItemCaseSensitive(tool0, "function");
    const cJSON *tool_name = cJSON_GetObjectItemCaseSensitive(fn, "name");
    bool call = !script_met && strstr(text, "[tool]") && cJSON_IsString(tool_name);

    cJSON *o = cJSON_CreateObject();
    char buf[64];
    snprintf(buf, sizeof buf, "chatcmpl-%ld", id);
    cJSON_AddStringToObject(o, "id", buf);
    cJSON_AddStringToObject(o, "object", "chat.completion");
    cJSON_AddNumberToObject(o, "created", 0);
    cJSON_AddStringToObject(o, "model", cJSON_IsString(model) ? model->valuestring : "fault-server");
    cJSON *choice = cJSON_CreateObject();
    cJSON_AddNumberToObject(choice, "index", 0);
    cJSON *msg = cJSON_AddObjectToObject(choice, "message");
    cJSON_AddStringToObject(msg, "role", "assistant");
    SBuf content;
    sbuf_init(&content);
    if (call) {
        cJSON_AddNullToObject(msg, "content");
        cJSON *calls = cJSON_AddArrayToObject(msg, "tool_calls");
        cJSON *tc = cJSON_CreateObject();
        snprintf(buf, sizeof buf, "call_%016llx_%d", (unsigned long long)hash, attempt);
        cJSON_AddStringToObject(tc, "id", buf);
        cJSON_AddStringToObject(tc, "type", "function");
        cJSON *f = cJSON_AddObjectToObject(tc, "function");
        cJSON_AddStringToObject(f, "name", tool_name->valuestring);
        cJSON *args = cJSON_CreateObject();
        cJSON_AddStringToObject(args, "text", text);
        char *a = cJSON_PrintUnformatted(args);
        cJSON_Delete(args);
        cJSON_AddStringToObject(f, "arguments", a);
        free(a);
        cJSON_AddItemToArray(calls, tc);
        cJSON_AddStringToObject(choice, "finish_reason", "tool_calls");
    } else {
        if (script_met) scripted_content(&content, req, *script_met);
        else sbuf_printf(&content, "echo: %s", text);
        cJSON_AddStringToObject(msg, "content", content.data);
        cJSON_AddStringToObject(choice, "finish_reason", "stop");
    }
    cJSON_AddItemToArray(cJSON_AddArrayToObject(o, "choices"), choice);
    cJSON *usage = cJSON_AddObjectToObject(o, "usage");
    char *req_s = cJSON_PrintUnformatted(req);
    int prompt = (int)(strlen(req_s) / 4), completion = (int)(content.len / 4) + 1;
    free(req_s);
    sbuf_free(&content);
    cJSON_AddNumberToObject(usage, "prompt_tokens", prompt);
    cJSON_AddNumberToObject(usage, "completion_tokens", completion);
    cJSON_AddNumberToObject(usage, "total_tokens", prompt + completion);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

/* Wait up to secs, or until the server stops. Called with s->mu held. */
static void wait_locked(FaultServer *s, double secs) {
    if (secs <= 0) return;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double end = (double)ts.tv_sec + ts.tv_nsec * 1e-9 + secs;
    ts.tv_sec = (time_t)end;
    ts.tv_nsec = (long)((end - (double)ts.tv_sec) * 1e9);
    while (!s->stopping)
        if (pthread_cond_timedwait(&s->wake, &s->mu, &ts) == ETIMEDOUT) break;
}

static enum MHD_Result collect_header(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
    sbuf_printf(cls, "%s: %s\n", key, value ? value : "");
    return MHD_YES;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    FaultServer *s = cls;
    ConnState *st = *con_cls;
    if (!st) { /* headers are in; the body follows */
        st = xcalloc(1, sizeof *st);
        sbuf_init(&st->body);
        *con_cls = st;
        return MHD_YES;
    }
    if (*upload_size > 0) {
        sbuf_put(&st->body, upload, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }

    SBuf headers;
    sbuf_init(&headers);
    MHD_get_connection_values(conn, MHD_HEADER_KIND, collect_header, &headers);
    const char *body = st->body.data ? st->body.data : "";
    bool chat = strcmp(method, "POST") == 0 && ends_with(url, "/chat/completions");

    pthread_mutex_lock(&s->mu);
    if (s->n_rec == s->cap_rec) {
        s->cap_rec = s->cap_rec ? 2 * s->cap_rec : 64;
        s->rec = xrealloc(s->rec, (size_t)s->cap_rec * sizeof *s->rec);
    }
    int ri = s->n_rec++;
    s->rec[ri] = (FaultRecord){xstrdup(method), xstrdup(url), sbuf_take(&headers), xstrdup(body), FAULT_OK};
    pthread_mutex_unlock(&s->mu);
    sbuf_free(&headers);

    if (!chat) {
        if (strcmp(method, "GET") == 0 && ends_with(url, "/models"))
            return send_json(conn, 200, "{\"object\":\"list\",\"data\":[{\"id\":\"fault-server\",\"object\":\"model\"}]}", 0);
        if (strcmp(method, "GET") == 0 && strcmp(url, "/health") == 0) return send_json(conn, 200, "{\"status\":\"ok\"}", 0);
        char *e = error_json("not_found", "unknown path");
        enum MHD_Result rc = send_json(conn, 404, e, 0);
        free(e);
        return rc;
    }

    cJSON *req = cJSON_Parse(body);
    uint64_t hash = XXH3_64bits(body, strlen(body));
    pthread_mutex_lock(&s->mu);
    int attempt = body_attempt(s, hash);
    int dk = req ? directive_kind(last_user_text(req), attempt) : FAULT_400;
    FaultKind kind = dk >= 0 ? (FaultKind)dk : random_kind(&s->spec, hash, attempt);
    s->rec[ri].kind = kind;
    s->count[kind]++;
    long id = s->next_response_id++;
    bool scripted = s->spec.scripted, met = s->spec.judge_met;
    if (scripted && req && is_judge_request(req) && (kind == FAULT_OK || kind == FAULT_SLOW)) s->judge_requests++;
    if (++s->inflight > s->max_inflight) s->max_inflight = s->inflight;
    wait_locked(s, s->spec.delay_s);
    if (kind == FAULT_SLOW) wait_locked(s, s->spec.slow_s);
    /* Leave the in-flight count before the answer goes out: a client
     * cannot start its next request before it has this one's answer. */
    s->inflight--;
    pthread_mutex_unlock(&s->mu);

    enum MHD_Result rc;
    char *out = NULL;
    switch (kind) {
    case FAULT_DROP:
        rc = MHD_NO; /* libmicrohttpd closes the connection */
        break;
    case FAULT_429:
        out = error_json("rate_limit_exceeded", "Rate limit reached, retry later");
        rc = send_json(conn, 429, out, s->spec.retry_after_s);
        break;
    case FAULT_500:
        out = error_json("server_error", "The server had an error while processing your request");
        rc = send_json(conn, 500, out, 0);
        break;
    case FAULT_503:
        out = error_json("server_error", "The server is overloaded");
        rc = send_json(conn, 503, out, 0);
        break;
    case FAULT_MALFORMED:
        rc = send_json(conn, 200, "{\"id\":\"chatcmpl-x\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assis", 0);
        break;
    case FAULT_NO_CHOICES:
        rc = send_json(conn, 200, "{\"id\":\"chatcmpl-x\",\"object\":\"chat.completion\",\"choices\":[]}", 0);
        break;
    case FAULT_400:
        out = error_json("invalid_request_error", req ? "Invalid request (scripted)" : "Request body is not JSON");
        rc = send_json(conn, 400, out, 0);
        break;
    case FAULT_401: {
        const char *auth = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
        SBuf m;
        sbuf_init(&m);
        sbuf_printf(&m, "Incorrect API key provided: %s", auth ? auth : "(none)");
        out = error_json("invalid_request_error", m.data);
        sbuf_free(&m);
        rc = send_json(conn, 401, out, 0);
        break;
    }
    default: /* FAULT_OK, FAULT_SLOW */
        out = completion_json(req, id, hash, attempt, scripted ? &met : NULL);
        rc = send_json(conn, 200, out, 0);
        break;
    }
    free(out);
    cJSON_Delete(req);
    return rc;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe) {
    ConnState *st = *con_cls;
    if (!st) return;
    sbuf_free(&st->body);
    free(st);
    *con_cls = NULL;
}

FaultServer *fault_server_start(const FaultSpec *spec, int *port) {
    FaultServer *s = xcalloc(1, sizeof *s);
    if (spec) s->spec = *spec;
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->wake, &ca);
    pthread_condattr_destroy(&ca);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)*port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    s->daemon = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_AUTO_INTERNAL_THREAD, (uint16_t)*port, NULL,
                                 NULL, on_request, s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                                 MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_CONNECTION_TIMEOUT,
                                 (unsigned)30, MHD_OPTION_END);
    if (!s->daemon) {
        fprintf(stderr, "fault_server: cannot listen on 127.0.0.1:%d\n", *port);
        pthread_cond_destroy(&s->wake);
        pthread_mutex_destroy(&s->mu);
        free(s);
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    if (info) *port = info->port;
    return s;
}

void fault_server_stop(FaultServer *s) {
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_cond_broadcast(&s->wake);
    pthread_mutex_unlock(&s->mu);
    MHD_stop_daemon(s->daemon);
    for (int i = 0; i < s->n_rec; i++) {
        free(s->rec[i].method);
        free(s->rec[i].url);
        free(s->rec[i].headers);
        free(s->rec[i].body);
    }
    free(s->rec);
    free(s->bodies);
    pthread_cond_destroy(&s->wake);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

int fault_server_request_count(FaultServer *s) {
    pthread_mutex_lock(&s->mu);
    int n = s->n_rec;
    pthread_mutex_unlock(&s->mu);
    return n;
}

bool fault_server_request(FaultServer *s, int i, char **headers, char **body, FaultKind *kind) {
    pthread_mutex_lock(&s->mu);
    bool ok = i >= 0 && i < s->n_rec;
    if (ok) {
        if (headers) *headers = xstrdup(s->rec[i].headers);
        if (body) *body = xstrdup(s->rec[i].body);
        if (kind) *kind = s->rec[i].kind;
    }
    pthread_mutex_unlock(&s->mu);
    return ok;
}

int fault_server_count(FaultServer *s, FaultKind k) {
    pthread_mutex_lock(&s->mu);
    int n = (k >= 0 && k < FAULT_KIND_COUNT) ? s->count[k] : 0;
    pthread_mutex_unlock(&s->mu);
    return n;
}

void fault_server_set_judge(FaultServer *s, bool met) {
    pthread_mutex_lock(&s->mu);
    s->spec.judge_met = met;
    pthread_mutex_unlock(&s->mu);
}

int fault_server_judge_count(FaultServer *s) {
    pthread_mutex_lock(&s->mu);
    int n = s->judge_requests;
    pthread_mutex_unlock(&s->mu);
    return n;
}

int fault_server_max_inflight(FaultServer *s) {
    pthread_mutex_lock(&s->mu);
    int n = s->max_inflight;
    pthread_mutex_unlock(&s->mu);
    return n;
}

#ifdef FAULT_SERVER_MAIN
/* fault_server [--port N] [--mix ok=8,drop=1,429=1,...] [--seed S]
 *              [--max-faults N] [--retry-after S] [--slow S] [--delay S]
 *              [--script met|unmet]  (scripted mode, the judge's verdict)
 * Serves until SIGINT or SIGTERM; prints "fault_server: listening on
 * 127.0.0.1:<port>" once ready, and a count per kind when it stops. */
#include <signal.h>

static int parse_mix(FaultSpec *spec, const char *mix) {
    char *copy = xstrdup(mix), *save = NULL;
    for (char *item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(item, '=');
        if (eq) *eq = '\0';
        int k = fault_kind_parse(item);
        if (k < 0) {
            fprintf(stderr, "fault_server: --mix: unknown fault \"%s\" (expected ok, drop, 429, 500, 503, slow, "
                            "malformed, nochoices, 400, 401)\n", item);
            free(copy);
            return -1;
        }
        spec->weight[k] = eq ? atof(eq + 1) : 1.0;
    }
    free(copy);
    return 0;
}

int main(int argc, char **argv) {
    FaultSpec spec = {.max_faults = 3, .retry_after_s = 1, .slow_s = 30};
    int port = 0;
    for (int i = 1; i < argc; i += 2) { /* option, value */
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr, "fault_server: %s needs a value\n", a);
            return 2;
        }
        if (strcmp(a, "--port") == 0) port = atoi(v);
        else if (strcmp(a, "--mix") == 0) {
            if (parse_mix(&spec, v) != 0) return 2;
        } else if (strcmp(a, "--seed") == 0) spec.seed = strtoull(v, NULL, 10);
        else if (strcmp(a, "--max-faults") == 0) spec.max_faults = atoi(v);
        else if (strcmp(a, "--retry-after") == 0) spec.retry_after_s = atoi(v);
        else if (strcmp(a, "--slow") == 0) spec.slow_s = atof(v);
        else if (strcmp(a, "--delay") == 0) spec.delay_s = atof(v);
        else if (strcmp(a, "--script") == 0) {
            if (strcmp(v, "met") && strcmp(v, "unmet")) {
                fprintf(stderr, "fault_server: --script: expected met or unmet, got \"%s\"\n", v);
                return 2;
            }
            spec.scripted = true;
            spec.judge_met = strcmp(v, "met") == 0;
        }
        else {
            fprintf(stderr, "fault_server: unknown option %s\n", a);
            return 2;
        }
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* before the server's threads start, so they inherit it */
    FaultServer *s = fault_server_start(&spec, &port);
    if (!s) return 1;
    printf("fault_server: listening on 127.0.0.1:%d\n", port);
    fflush(stdout);
    int sig;
    sigwait(&set, &sig);
    for (int k = 0; k < FAULT_KIND_COUNT; k++) printf("%s %d\n", fault_kind_name(k), fault_server_count(s, k));
    fault_server_stop(s);
    return 0;
}
#endif
