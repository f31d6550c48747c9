/* llm_client.c — see llm_client.h.
 *
 * Every submitted request lives on one list, in id order, until it
 * finishes: waiting (for its first try, a backoff, a concurrency slot or a
 * rate-limit token) or running (an easy handle in the multi handle). Each
 * pass starts what may start, oldest first so retries keep their place,
 * lets curl move bytes, and settles finished transfers: a success or a
 * final failure becomes a result on the done queue, a transient failure
 * goes back to waiting with a not-before time.
 *
 * An MPI endpoint runs the same list: an attempt is an MPI_Isend of the
 * body to the server rank, and it finishes when the reply with the tag
 * the server will use for it (llm/openai_req.h) has arrived; its status
 * line then goes through the same judgement as an HTTP status. */
#include "llm/llm_client.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "core/clock.h"
#include "core/error.h"
#include "core/json.h"
#include "core/rng.h"
#include "core/sbuf.h"
#include "llm/llm_cache.h"
#include "llm/openai_req.h"

/* A response bigger than this is not a chat completion; the transfer is
 * aborted (and retried, like any damaged response). */
#define MAX_RESPONSE_BYTES (64u << 20)

typedef struct Request {
    long id;
    int ep;
    void *tag;
    char *body;      /* the JSON sent */
    char *canonical; /* cache form of the body; NULL without a cache */
    char key[LLM_CACHE_KEY_HEX];
    int attempts;
    double submitted_at;
    double not_before;    /* earliest start of the next attempt */
    CURL *easy;           /* non-NULL while running (HTTP) */
    bool mpi_running;     /* an MPI attempt is out */
    bool mpi_sent;        /* ... and its send has completed */
    MPI_Request send_req;
    int reply_tag;
    SBuf resp;            /* response body of the running attempt */
    char curl_err[CURL_ERROR_SIZE];
    char *last_error;     /* why the last attempt failed */
    int last_status;
    struct Request *prev, *next;
} Request;

typedef struct {
    char *base_url;
    char *model;
    char *url;     /* base_url + "/chat/completions" */
    char *label;   /* "endpoint <i> (<base_url>)" for messages */
    char *api_key; /* NULL without one; wiped on free */
    double timeout_s, connect_timeout_s, backoff_base_s, backoff_max_s, retry_after_max_s, rpm;
    int max_retries, max_concurrency;
    bool verify_tls;
    struct curl_slist *headers;
    int running;
    bool mpi;          /* an MPI endpoint: no URL, headers or key */
    MPI_Comm comm;
    int server_rank;
    uint64_t sent;     /* request messages sent to the server rank: the k of the next */
    bool shut;         /* the shutdown has been sent */
    double tokens;    /* rate-limit bucket */
    double tokens_at; /* when tokens was last brought up to date */
    LlmEndpointStats stats;
} Endpoint;

struct LlmClient {
    Endpoint *eps;
    int n_eps;
    CURLM *multi;
    char *cache_dir;
    uint64_t seed;
    long next_id;
    Request *head, *tail; /* unfinished requests, id order */
    int n_active;
    int mpi_running;  /* MPI attempts out, over all endpoints */
    LlmResult *done; /* finished, not yet returned (FIFO) */
    int n_done, cap_done;
};

static pthread_once_t g_curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void) {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) die_runtime("libcurl initialization failed");
}

/* ---- results ---- */

void llm_result_free(LlmResult *r) {
    if (!r) return;
    cJSON_Delete(r->message);
    cJSON_Delete(r->usage);
    free(r->finish_reason);
    free(r->error);
    memset(r, 0, sizeof *r);
}

/* Replace every occurrence of the endpoint's key in s (a server may echo a
 * rejected key in its error message). */
static char *redact(const Endpoint *e, char *s) {
    if (!e->api_key || !e->api_key[0] || !strstr(s, e->api_key)) return s;
    SBuf b;
    sbuf_init(&b);
    size_t klen = strlen(e->api_key);
    const char *p = s, *hit;
    while ((hit = strstr(p, e->api_key))) {
        sbuf_put(&b, p, (size_t)(hit - p));
        sbuf_puts(&b, "[redacted]");
        p = hit + klen;
    }
    sbuf_puts(&b, p);
    free(s);
    return sbuf_take(&b);
}

static void done_push(LlmClient *c, LlmResult *r) {
    if (c->n_done == c->cap_done) {
        c->cap_done = c->cap_done ? 2 * c->cap_done : 16;
        c->done = xrealloc(c->done, (size_t)c->cap_done * sizeof *c->done);
    }
    c->done[c->n_done++] = *r;
}

/* Pull the assistant message out of a chat-completion response object.
 * Returns 0 and fills r, or -1 with why in *why (static text). */
static int extract_completion(const cJSON *resp, LlmResult *r, const char **why) {
    const cJSON *choices = json_get(resp, "choices");
    if (!cJSON_IsArray(choices) || cJSON_GetArraySize(choices) == 0) {
        *why = "response has no choices";
        return -1;
    }
    const cJSON *choice = cJSON_GetArrayItem(choices, 0);
    const cJSON *msg = json_get(choice, "message");
    if (!cJSON_IsObject(msg)) {
        *why = "response choice has no message object";
        return -1;
    }
    const cJSON *content = json_get(msg, "content");
    const cJSON *calls = json_get(msg, "tool_calls");
    if ((content && !cJSON_IsString(content) && !cJSON_IsNull(content)) || (calls && !cJSON_IsArray(calls) && !cJSON_IsNull(calls))) {
        *why = "response message has a content or tool_calls of the wrong type";
        return -1;
    }
    r->message = cJSON_Duplicate(msg, 1);
    if (!json_get(r->message, "role")) cJSON_AddStringToObject(r->message, "role", "assistant");
    if (!content) cJSON_AddNullToObject(r->message, "content");
    const char *fr = json_get_str(choice, "finish_reason");
    r->finish_reason = fr ? xstrdup(fr) : NULL;
    const cJSON *usage = json_get(resp, "usage");
    r->usage = cJSON_IsObject(usage) ? cJSON_Duplicate(usage, 1) : NULL;
    return 0;
}

/* What a cache file keeps of a result. */
static cJSON *result_to_cache(const LlmResult *r) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "message", cJSON_Duplicate(r->message, 1));
    if (r->finish_reason) cJSON_AddStringToObject(o, "finish_reason", r->finish_reason);
    else cJSON_AddNullToObject(o, "finish_reason");
    if (r->usage) cJSON_AddItemToObject(o, "usage", cJSON_Duplicate(r->usage, 1));
    return o;
}

/* ---- configuration ---- */

void llm_endpoint_defaults(LlmEndpointConfig *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->timeout_s = 120;
    cfg->connect_timeout_s = 10;
    cfg->max_retries = 5;
    cfg->backoff_base_s = 1;
    cfg->backoff_max_s = 60;
    cfg->retry_after_max_s = 300;
    cfg->max_concurrency = 16;
    cfg->requests_per_minute = 0;
    cfg->verify_tls = true;
}

static int endpoint_init(Endpoint *e, const LlmEndpointConfig *cfg, int index, char *err, size_t errlen) {
    if (!cfg->base_url || !cfg->base_url[0]) {
        snprintf(err, errlen, "endpoint %d: base_url is empty (expected e.g. http://127.0.0.1:8000/v1)", index);
        return -1;
    }
    if (strncmp(cfg->base_url, "http://", 7) != 0 && strncmp(cfg->base_url, "https://", 8) != 0) {
        snprintf(err, errlen, "endpoint %d: base_url \"%s\" must start with http:// or https://", index, cfg->base_url);
        return -1;
    }
    if (!cfg->model || !cfg->model[0]) {
        snprintf(err, errlen, "endpoint %d (%s): model is empty", index, cfg->base_url);
        return -1;
    }
    if (!(cfg->timeout_s > 0) || !(cfg->connect_timeout_s > 0) || cfg->max_retries < 0 || !(cfg->backoff_base_s >= 0) ||
        !(cfg->backoff_max_s >= 0) || !(cfg->retry_after_max_s >= 0) || cfg->max_concurrency < 1 ||
        !(cfg->requests_per_minute >= 0)) {
        snprintf(err, errlen,
                 "endpoint %d (%s): expected timeout_s > 0, connect_timeout_s > 0, max_retries >= 0, backoff and "
                 "retry_after_max_s >= 0, max_concurrency >= 1, requests_per_minute >= 0",
                 index, cfg->base_url);
        return -1;
    }
    const char *key = NULL;
    if (cfg->api_key_var && cfg->api_key_var[0]) {
        key = getenv(cfg->api_key_var);
        if (!key || !key[0]) {
            snprintf(err, errlen, "endpoint %d (%s): environment variable %s (api_key_var) is not set or empty", index,
                     cfg->base_url, cfg->api_key_var);
            return -1;
        }
    }
    size_t n = strlen(cfg->base_url);
    while (n > 0 && cfg->base_url[n - 1] == '/') n--; /* "…/v1/" and "…/v1" are one endpoint */
    e->base_url = xstrndup(cfg->base_url, n);
    e->model = xstrdup(cfg->model);
    SBuf b;
    sbuf_init(&b);
    sbuf_printf(&b, "%s/chat/completions", e->base_url);
    e->url = sbuf_take(&b);
    sbuf_printf(&b, "endpoint %d (%s)", index, e->base_url);
    e->label = sbuf_take(&b);
    e->timeout_s = cfg->timeout_s;
    e->connect_timeout_s = cfg->connect_timeout_s;
    e->backoff_base_s = cfg->backoff_base_s;
    e->backoff_max_s = cfg->backoff_max_s;
    e->retry_after_max_s = cfg->retry_after_max_s;
    e->rpm = cfg->requests_per_minute;
    e->max_retries = cfg->max_retries;
    e->max_concurrency = cfg->max_concurrency;
    e->verify_tls = cfg->verify_tls;
    e->headers = curl_slist_append(NULL, "Content-Type: application/json");
    /* No "Expect: 100-continue" round trip before large bodies. */
    e->headers = curl_slist_append(e->headers, "Expect:");
    if (key) {
        e->api_key = xstrdup(key);
        sbuf_printf(&b, "Authorization: Bearer %s", key);
        e->headers = curl_slist_append(e->headers, b.data);
        memset(b.data, 0, b.len); /* curl_slist_append copied it */
        sbuf_free(&b);
    }
    if (!e->headers) die_runtime("out of memory building request headers");
    e->tokens = e->rpm > 0 ? fmax(1.0, e->rpm / 60.0) : 0;
    e->tokens_at = clock_now_s();
    return 0;
}

static void endpoint_free(Endpoint *e) {
    free(e->base_url);
    free(e->model);
    free(e->url);
    free(e->label);
    if (e->api_key) {
        memset(e->api_key, 0, strlen(e->api_key));
        free(e->api_key);
    }
    /* The Authorization header's copy of the key. */
    for (struct curl_slist *h = e->headers; h; h = h->next) memset(h->data, 0, strlen(h->data));
    curl_slist_free_all(e->headers);
}

bool llm_url_is_http(const char *url) {
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL;
    bool ok = u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
              curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
              (strcmp(scheme, "http") == 0 || strcmp(scheme, "https") == 0) &&
              curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK && host[0] != '\0';
    /* the parser takes any number of digits; a socket takes 1..65535 */
    if (ok && curl_url_get(u, CURLUPART_PORT, &port, 0) == CURLUE_OK) ok = atol(port) >= 1 && atol(port) <= 65535;
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
    return ok;
}

LlmClient *llm_client_new(const LlmEndpointConfig *endpoints, int n_endpoints, const LlmClientOptions *opt, char *err,
                          size_t errlen) {
    /* No endpoints at all is fine only for a client whose endpoints are
     * all added later (llm_client_add_mpi_endpoint). */
    if (n_endpoints < 0 || (n_endpoints == 0 && endpoints)) {
        snprintf(err, errlen, "LLM client: no endpoints configured");
        return NULL;
    }
    pthread_once(&g_curl_once, curl_init_once);
    LlmClient *c = xcalloc(1, sizeof *c);
    c->eps = n_endpoints ? xcalloc((size_t)n_endpoints, sizeof *c->eps) : NULL;
    for (int i = 0; i < n_endpoints; i++) {
        if (endpoint_init(&c->eps[i], &endpoints[i], i, err, errlen) != 0) {
            c->n_eps = i;
            llm_client_free(c);
            return NULL;
        }
    }
    c->n_eps = n_endpoints;
    if (opt && opt->cache_dir && opt->cache_dir[0]) {
        /* made by the first entry stored (llm_cache_put): a job refused at
         * start leaves no cache directory, but one that cannot be made is
         * an error now */
        if (dir_check_creatable(opt->cache_dir, err, errlen) != 0) {
            llm_client_free(c);
            return NULL;
        }
        c->cache_dir = xstrdup(opt->cache_dir);
    }
    c->seed = opt ? opt->seed : 0;
    c->multi = curl_multi_init();
    if (!c->multi) die_runtime("curl_multi_init failed");
    return c;
}

static double pump(LlmClient *c);

int llm_client_add_mpi_endpoint(LlmClient *c, MPI_Comm comm, int server_rank, const char *model,
                                int max_concurrency) {
    int size = 0, me = 0;
    MPI_Comm_size(comm, &size);
    MPI_Comm_rank(comm, &me);
    if (server_rank < 0 || server_rank >= size || server_rank == me)
        die_runtime("llm_client_add_mpi_endpoint: server rank %d on a communicator of %d ranks (this is rank %d)",
                    server_rank, size, me);
    if (!model || !model[0]) die_runtime("llm_client_add_mpi_endpoint: the model name is empty");
    if (max_concurrency <= 0) max_concurrency = 16;
    if (max_concurrency > OPENAI_MPI_REPLY_TAGS) max_concurrency = OPENAI_MPI_REPLY_TAGS;
    for (int i = 0; i < c->n_eps; i++) {
        /* The server numbers the messages of a rank, so one rank may talk
         * to one server rank through one endpoint only. */
        if (c->eps[i].mpi && c->eps[i].comm == comm && c->eps[i].server_rank == server_rank)
            die_runtime("llm_client_add_mpi_endpoint: endpoint %d already reaches rank %d", i, server_rank);
    }
    c->eps = xrealloc(c->eps, (size_t)(c->n_eps + 1) * sizeof *c->eps);
    int index = c->n_eps++;
    Endpoint *e = &c->eps[index];
    memset(e, 0, sizeof *e);
    SBuf b;
    sbuf_init(&b);
    /* The endpoint's identity for the response cache: the server rank and
     * the model it serves. */
    sbuf_printf(&b, "mpi://rank%d", server_rank);
    e->base_url = sbuf_take(&b);
    sbuf_printf(&b, "endpoint %d (MPI rank %d)", index, server_rank);
    e->label = sbuf_take(&b);
    e->model = xstrdup(model);
    /* No timeout: the server is a rank of this job, and a hung rank hangs
     * the job like a hung collective would. Refusals (a full queue: 503)
     * are retried with the usual backoff. */
    LlmEndpointConfig d;
    llm_endpoint_defaults(&d);
    e->timeout_s = d.timeout_s;
    e->connect_timeout_s = d.connect_timeout_s;
    e->backoff_base_s = d.backoff_base_s;
    e->backoff_max_s = d.backoff_max_s;
    e->retry_after_max_s = d.retry_after_max_s;
    e->max_retries = d.max_retries;
    e->max_concurrency = max_concurrency;
    e->mpi = true;
    e->comm = comm;
    e->server_rank = server_rank;
    e->tokens_at = clock_now_s();
    return index;
}

void llm_client_mpi_shutdown(LlmClient *c, int endpoint) {
    if (endpoint < 0 || endpoint >= c->n_eps || !c->eps[endpoint].mpi)
        die_runtime("llm_client_mpi_shutdown: endpoint %d is not an MPI endpoint", endpoint);
    Endpoint *e = &c->eps[endpoint];
    if (e->shut) return;
    /* Let this endpoint's requests finish first (their results wait for a
     * later poll): the server then owes this rank nothing. */
    for (;;) {
        pump(c);
        bool busy = false;
        for (Request *q = c->head; q && !busy; q = q->next) busy = q->ep == endpoint;
        if (!busy) break;
        curl_multi_poll(c->multi, NULL, 0, 1, NULL);
    }
    MPI_Send(NULL, 0, MPI_CHAR, e->server_rank, OPENAI_MPI_TAG_REQUEST, e->comm);
    e->sent++;
    e->shut = true;
}

static void request_free(Request *q) {
    if (q->easy) curl_easy_cleanup(q->easy);
    if (q->mpi_running && !q->mpi_sent) {
        /* The body must outlive its send; the server always receives, so
         * this returns (unless MPI is gone, when nothing is pending). */
        int finalized = 0;
        MPI_Finalized(&finalized);
        if (!finalized) MPI_Wait(&q->send_req, MPI_STATUS_IGNORE);
    }
    sbuf_free(&q->resp);
    free(q->body);
    free(q->canonical);
    free(q->last_error);
    free(q);
}

void llm_client_free(LlmClient *c) {
    if (!c) return;
    for (Request *q = c->head, *next; q; q = next) {
        next = q->next;
        if (q->easy) curl_multi_remove_handle(c->multi, q->easy);
        request_free(q);
    }
    for (int i = 0; i < c->n_done; i++) llm_result_free(&c->done[i]);
    free(c->done);
    if (c->multi) curl_multi_cleanup(c->multi);
    for (int i = 0; i < c->n_eps; i++) endpoint_free(&c->eps[i]);
    free(c->eps);
    free(c->cache_dir);
    free(c);
}

int llm_client_endpoint_count(const LlmClient *c) { return c->n_eps; }

int llm_client_pending(const LlmClient *c) { return c->n_active + c->n_done; }

void llm_client_stats(const LlmClient *c, int endpoint, LlmEndpointStats *out) {
    if (endpoint < 0 || endpoint >= c->n_eps) die_runtime("llm_client_stats: endpoint %d out of range", endpoint);
    *out = c->eps[endpoint].stats;
}

/* ---- submitting ---- */

static void list_unlink(LlmClient *c, Request *q) {
    if (q->prev) q->prev->next = q->next;
    else c->head = q->next;
    if (q->next) q->next->prev = q->prev;
    else c->tail = q->prev;
    q->prev = q->next = NULL;
    c->n_active--;
}

long llm_client_submit(LlmClient *c, int endpoint, const cJSON *body, void *tag) {
    if (endpoint < 0 || endpoint >= c->n_eps) die_runtime("llm_client_submit: endpoint %d out of range", endpoint);
    if (!cJSON_IsObject(body)) die_runtime("llm_client_submit: the request body is not a JSON object");
    Endpoint *e = &c->eps[endpoint];
    if (e->shut) die_runtime("llm_client_submit: %s has been shut down", e->label);
    long id = c->next_id++;
    double t = clock_now_s();
    e->stats.submitted++;

    char *canonical = NULL;
    char key[LLM_CACHE_KEY_HEX] = "";
    if (c->cache_dir) {
        canonical = llm_cache_canonical(body);
        llm_cache_key(e->base_url, e->model, canonical, key);
        cJSON *hit = llm_cache_get(c->cache_dir, key, e->base_url, e->model, canonical);
        if (hit) {
            LlmResult r = {.id = id, .tag = tag, .endpoint = endpoint, .ok = true, .from_cache = true};
            r.message = cJSON_DetachItemFromObjectCaseSensitive(hit, "message");
            const char *fr = json_get_str(hit, "finish_reason");
            r.finish_reason = fr ? xstrdup(fr) : NULL;
            cJSON *usage = json_get(hit, "usage");
            if (cJSON_IsObject(usage)) r.usage = cJSON_DetachItemFromObjectCaseSensitive(hit, "usage");
            cJSON_Delete(hit);
            e->stats.cache_hits++;
            done_push(c, &r);
            free(canonical);
            return id;
        }
    }

    /* The wire body: "model" first (the endpoint's), then the caller's
     * members in their order, without "stream" (one JSON answer). */
    cJSON *wire = cJSON_CreateObject();
    cJSON_AddStringToObject(wire, "model", e->model);
    for (const cJSON *it = body->child; it; it = it->next) {
        if (!it->string || strcmp(it->string, "model") == 0 || strcmp(it->string, "stream") == 0) continue;
        cJSON *dup = cJSON_Duplicate(it, 1);
        if (!dup) die_runtime("out of memory duplicating a request body");
        cJSON_AddItemToObject(wire, it->string, dup);
    }

    Request *q = xcalloc(1, sizeof *q);
    q->id = id;
    q->ep = endpoint;
    q->tag = tag;
    q->body = json_dumps(wire, JSON_DUMP_COMPACT | JSON_DUMP_UTF8);
    cJSON_Delete(wire);
    q->canonical = canonical;
    memcpy(q->key, key, sizeof key);
    q->submitted_at = t;
    q->not_before = t;
    sbuf_init(&q->resp);
    q->prev = c->tail;
    if (c->tail) c->tail->next = q;
    else c->head = q;
    c->tail = q;
    c->n_active++;
    return id;
}

/* ---- running ---- */

static size_t on_body(char *data, size_t size, size_t nmemb, void *userdata) {
    Request *q = userdata;
    size_t n = size * nmemb;
    if (q->resp.len + n > MAX_RESPONSE_BYTES) return 0; /* curl aborts with CURLE_WRITE_ERROR */
    sbuf_put(&q->resp, data, n);
    return n;
}

/* Refill the endpoint's bucket; true when a token is there to take. */
static bool rate_ok(Endpoint *e, double t) {
    if (e->rpm <= 0) return true;
    /* At most one second's worth of requests in a burst, and never less
     * than one: steady pacing rather than a minute's quota at once. */
    double cap = fmax(1.0, e->rpm / 60.0);
    e->tokens = fmin(cap, e->tokens + (t - e->tokens_at) * e->rpm / 60.0);
    e->tokens_at = t;
    return e->tokens >= 1.0;
}

/* When the endpoint's bucket will next hold a token. */
static double rate_next(const Endpoint *e, double t) {
    if (e->rpm <= 0 || e->tokens >= 1.0) return t;
    return t + (1.0 - e->tokens) * 60.0 / e->rpm;
}

/* An attempt's bookkeeping, HTTP or MPI. */
static void attempt_started(Endpoint *e, Request *q) {
    q->attempts++;
    e->running++;
    e->stats.requests++;
    if (q->attempts > 1) e->stats.retries++;
    if (e->rpm > 0) e->tokens -= 1.0;
}

/* The reply tag of the next message to e's server, if no attempt out on e
 * is waiting on the same tag (else -1: wait for that one). */
static int mpi_next_tag(const LlmClient *c, const Endpoint *e) {
    int tag = openai_mpi_reply_tag(e->sent);
    for (const Request *q = c->head; q; q = q->next) {
        if (q->mpi_running && &c->eps[q->ep] == e && q->reply_tag == tag) return -1;
    }
    return tag;
}

static void start_attempt_mpi(LlmClient *c, Request *q, int tag) {
    Endpoint *e = &c->eps[q->ep];
    size_t len = strlen(q->body);
    if (len > (size_t)INT32_MAX) die_runtime("%s: a request body of %zu bytes is too large", e->label, len);
    sbuf_free(&q->resp);
    sbuf_init(&q->resp);
    MPI_Isend(q->body, (int)len, MPI_CHAR, e->server_rank, OPENAI_MPI_TAG_REQUEST, e->comm, &q->send_req);
    e->sent++;
    q->reply_tag = tag;
    q->mpi_running = true;
    q->mpi_sent = false;
    c->mpi_running++;
    attempt_started(e, q);
}

static void start_attempt(LlmClient *c, Request *q) {
    Endpoint *e = &c->eps[q->ep];
    CURL *h = curl_easy_init();
    if (!h) die_runtime("curl_easy_init failed");
    sbuf_free(&q->resp);
    sbuf_init(&q->resp);
    q->curl_err[0] = '\0';
    curl_easy_setopt(h, CURLOPT_URL, e->url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, q->body);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(q->body));
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, e->headers);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "tau2_hpc");
    curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)ceil(e->timeout_s * 1000));
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)ceil(e->connect_timeout_s * 1000));
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, e->verify_tls ? 1L : 0L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, e->verify_tls ? 2L : 0L);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, q);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, q->curl_err);
    curl_easy_setopt(h, CURLOPT_PRIVATE, q);
    if (curl_multi_add_handle(c->multi, h) != CURLM_OK) die_runtime("curl_multi_add_handle failed");
    q->easy = h;
    attempt_started(e, q);
}

/* Start every waiting request that may start now; return the earliest
 * time a still-waiting one could start (INFINITY: none is held back by
 * time, only by concurrency). */
static double start_ready(LlmClient *c, double t) {
    double next = INFINITY;
    for (Request *q = c->head; q; q = q->next) {
        if (q->easy || q->mpi_running) continue;
        Endpoint *e = &c->eps[q->ep];
        if (q->not_before > t) {
            next = fmin(next, q->not_before);
            continue;
        }
        if (e->running >= e->max_concurrency) continue; /* a finishing transfer wakes the poll */
        int tag = e->mpi ? mpi_next_tag(c, e) : 0;
        if (tag < 0) continue; /* a finishing attempt frees it */
        if (!rate_ok(e, t)) {
            next = fmin(next, rate_next(e, t));
            continue;
        }
        if (e->mpi) start_attempt_mpi(c, q, tag);
        else start_attempt(c, q);
    }
    return next;
}

typedef enum { OUTCOME_OK, OUTCOME_RETRY, OUTCOME_FAIL } Outcome;

/* A short, printable form of an error response: OpenAI's error.message
 * when there is one, else the start of the body. */
static void describe_error_body(SBuf *out, const SBuf *resp) {
    if (resp->len == 0) return;
    cJSON *j = cJSON_ParseWithLength(resp->data, resp->len);
    const char *msg = NULL;
    if (j) {
        const cJSON *err = json_get(j, "error");
        msg = cJSON_IsString(err) ? err->valuestring : json_get_str(err, "message");
        if (!msg) msg = json_get_str(j, "message");
    }
    const char *s = msg ? msg : resp->data;
    size_t n = msg ? strlen(msg) : resp->len;
    if (n > 200) n = 200;
    sbuf_puts(out, ": ");
    for (size_t i = 0; i < n; i++) sbuf_putc(out, (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : ' ');
    cJSON_Delete(j);
}

/* Curl errors that another try will not fix. */
static bool curl_error_is_permanent(CURLcode rc) {
    switch (rc) {
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
    case CURLE_NOT_BUILT_IN:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_BAD_FUNCTION_ARGUMENT:
        return true;
    default:
        return false;
    }
}

static Outcome judge_response(LlmClient *c, Request *q, long status, LlmResult *r);

/* Judge a finished attempt. On OUTCOME_OK r holds the completion; else
 * q->last_error says what happened. *retry_after is the server's
 * Retry-After in seconds (0 when absent). */
static Outcome judge_attempt(LlmClient *c, Request *q, CURLcode rc, LlmResult *r, double *retry_after) {
    Endpoint *e = &c->eps[q->ep];
    long status = 0;
    curl_easy_getinfo(q->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_off_t ra = 0;
    if (curl_easy_getinfo(q->easy, CURLINFO_RETRY_AFTER, &ra) == CURLE_OK && ra > 0) *retry_after = (double)ra;
    if (rc == CURLE_OK) return judge_response(c, q, status, r);
    q->last_status = (int)status;
    SBuf why;
    sbuf_init(&why);
    sbuf_printf(&why, "%s", rc == CURLE_WRITE_ERROR ? "response too large" : curl_easy_strerror(rc));
    if (q->curl_err[0] && rc != CURLE_WRITE_ERROR) sbuf_printf(&why, " (%s)", q->curl_err);
    free(q->last_error);
    q->last_error = redact(e, sbuf_take(&why));
    return curl_error_is_permanent(rc) ? OUTCOME_FAIL : OUTCOME_RETRY;
}

/* Judge a response that came with a status (q->resp holds its body), the
 * same for HTTP and MPI endpoints. */
static Outcome judge_response(LlmClient *c, Request *q, long status, LlmResult *r) {
    Endpoint *e = &c->eps[q->ep];
    const char *what = e->mpi ? "status" : "HTTP";
    q->last_status = (int)status;
    SBuf why;
    sbuf_init(&why);
    Outcome out;
    if (status >= 200 && status < 300) {
        cJSON *j = cJSON_ParseWithLength(q->resp.data ? q->resp.data : "", q->resp.len);
        const char *bad = NULL;
        if (!j) bad = "response is not valid JSON";
        else if (extract_completion(j, r, &bad) == 0) out = OUTCOME_OK;
        cJSON_Delete(j);
        if (bad) {
            sbuf_printf(&why, "%s %ld: %s", what, status, bad);
            out = OUTCOME_RETRY;
        }
    } else {
        if (status == 429) e->stats.http_429++;
        sbuf_printf(&why, "%s %ld", what, status);
        describe_error_body(&why, &q->resp);
        out = (status == 408 || status == 429 || status >= 500) ? OUTCOME_RETRY : OUTCOME_FAIL;
    }
    free(q->last_error);
    q->last_error = why.data ? redact(e, sbuf_take(&why)) : NULL;
    sbuf_free(&why);
    return out;
}

static void finish_request(LlmClient *c, Request *q, LlmResult *r, bool ok, double t) {
    Endpoint *e = &c->eps[q->ep];
    r->id = q->id;
    r->tag = q->tag;
    r->endpoint = q->ep;
    r->ok = ok;
    r->attempts = q->attempts;
    r->http_status = q->last_status;
    r->latency_s = t - q->submitted_at;
    e->stats.latency_sum_s += r->latency_s;
    if (ok) {
        e->stats.successes++;
        if (c->cache_dir) {
            char err[512];
            cJSON *entry = result_to_cache(r);
            /* A cache that cannot be written costs reproducibility, not
             * the run: say so and go on. */
            if (llm_cache_put(c->cache_dir, q->key, e->base_url, e->model, q->canonical, entry, err, sizeof err) != 0)
                fprintf(stderr, "%s: warning: LLM response cache: %s\n", g_prog_name, err);
            cJSON_Delete(entry);
        }
    } else {
        e->stats.failures++;
        SBuf b;
        sbuf_init(&b);
        sbuf_printf(&b, "%s: chat completion failed after %d attempt%s: %s", e->label, q->attempts,
                    q->attempts == 1 ? "" : "s", q->last_error ? q->last_error : "unknown error");
        r->error = redact(e, sbuf_take(&b));
    }
    done_push(c, r);
    list_unlink(c, q);
    request_free(q);
}

/* After an attempt: finish the request, or schedule its retry. */
static void settle(LlmClient *c, Request *q, Outcome out, LlmResult *r, double retry_after) {
    Endpoint *e = &c->eps[q->ep];
    e->running--;
    double t = clock_now_s();
    if (out == OUTCOME_OK) {
        finish_request(c, q, r, true, t);
    } else if (out == OUTCOME_RETRY && q->attempts <= e->max_retries) {
        /* Full jitter: uniform over [0, capped exponential). */
        double cap = fmin(e->backoff_max_s, e->backoff_base_s * ldexp(1.0, q->attempts - 1));
        double delay = cap * rng_uniform(c->seed, (uint64_t)q->id, (uint64_t)q->attempts);
        if (retry_after > 0) delay = fmax(delay, fmin(retry_after, e->retry_after_max_s));
        q->not_before = t + delay;
    } else {
        finish_request(c, q, r, false, t);
    }
}

/* Settle every transfer curl reports finished. */
static void harvest(LlmClient *c) {
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(c->multi, &left))) {
        if (msg->msg != CURLMSG_DONE) continue;
        Request *q = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&q);
        CURLcode rc = msg->data.result; /* read before the handle goes away */
        LlmResult r = {0};
        double retry_after = 0;
        Outcome out = judge_attempt(c, q, rc, &r, &retry_after);
        curl_multi_remove_handle(c->multi, q->easy);
        curl_easy_cleanup(q->easy);
        q->easy = NULL;
        settle(c, q, out, &r, retry_after);
    }
}

/* Settle every MPI attempt whose reply has arrived. */
static void harvest_mpi(LlmClient *c) {
    if (c->mpi_running == 0) return;
    for (Request *q = c->head, *next; q; q = next) {
        next = q->next; /* settle may free q */
        if (!q->mpi_running) continue;
        Endpoint *e = &c->eps[q->ep];
        if (!q->mpi_sent) {
            int sent = 0;
            MPI_Test(&q->send_req, &sent, MPI_STATUS_IGNORE);
            q->mpi_sent = sent != 0;
        }
        int flag = 0;
        MPI_Message m;
        MPI_Status st;
        MPI_Improbe(e->server_rank, q->reply_tag, e->comm, &flag, &m, &st);
        if (!flag) continue;
        int n = 0;
        MPI_Get_count(&st, MPI_CHAR, &n);
        char *msg = xmalloc((size_t)n + 1);
        MPI_Mrecv(msg, n, MPI_CHAR, &m, MPI_STATUS_IGNORE);
        msg[n] = '\0';
        /* A reply means the server has the request: the send is done. */
        if (!q->mpi_sent) MPI_Wait(&q->send_req, MPI_STATUS_IGNORE);
        q->mpi_running = false;
        q->mpi_sent = false;
        c->mpi_running--;
        int status = 0;
        const char *json = NULL;
        size_t json_len = 0;
        LlmResult r = {0};
        Outcome out;
        if (openai_mpi_reply_unpack(msg, (size_t)n, &status, &json, &json_len) != 0) {
            q->last_status = 0;
            free(q->last_error);
            q->last_error = xstrdup("the reply has no status line");
            out = OUTCOME_RETRY;
        } else {
            sbuf_put(&q->resp, json, json_len);
            out = judge_response(c, q, status, &r);
        }
        free(msg);
        settle(c, q, out, &r, 0);
    }
}

/* One pass: start what may start, move bytes, settle what finished.
 * Returns the earliest time a held-back request could start. */
static double pump(LlmClient *c) {
    double next = start_ready(c, clock_now_s());
    int running;
    curl_multi_perform(c->multi, &running);
    harvest(c);
    harvest_mpi(c);
    /* Settled retries with no delay, and freed slots, can start at once. */
    return fmin(next, start_ready(c, clock_now_s()));
}

static bool done_has(const LlmClient *c, long id) {
    for (int i = 0; i < c->n_done; i++)
        if (c->done[i].id == id) return true;
    return false;
}

/* Progress until deadline, or until something is done (id < 0) or the
 * request id is done. */
static void progress(LlmClient *c, double deadline, long id) {
    for (;;) {
        double next = pump(c);
        if (id < 0 ? c->n_done > 0 : done_has(c, id)) return;
        if (c->n_active == 0) return;
        double t = clock_now_s();
        if (t >= deadline) return;
        /* Wake for the deadline or a held-back start, and at least once a
         * second to re-check the clock. */
        double wait = fmin(fmin(deadline, next) - t, 1.0);
        /* MPI replies wake nothing curl watches: look again every ms. */
        if (c->mpi_running > 0) wait = fmin(wait, 0.001);
        int ms = (int)ceil(fmax(0.0, wait) * 1000);
        curl_multi_poll(c->multi, NULL, 0, ms, NULL);
    }
}

int llm_client_poll(LlmClient *c, double wait_s, LlmResult *out, int max) {
    /* With results already waiting, still give the transfers one pass. */
    progress(c, c->n_done > 0 ? 0.0 : clock_now_s() + fmax(0.0, wait_s), -1);
    int n = c->n_done < max ? c->n_done : max;
    if (n <= 0) return 0;
    memcpy(out, c->done, (size_t)n * sizeof *out);
    memmove(c->done, c->done + n, (size_t)(c->n_done - n) * sizeof *c->done);
    c->n_done -= n;
    return n;
}

int llm_client_complete(LlmClient *c, int endpoint, const cJSON *body, LlmResult *out) {
    long id = llm_client_submit(c, endpoint, body, NULL);
    while (!done_has(c, id)) progress(c, INFINITY, id);
    for (int i = 0; i < c->n_done; i++) {
        if (c->done[i].id != id) continue;
        *out = c->done[i];
        memmove(c->done + i, c->done + i + 1, (size_t)(c->n_done - i - 1) * sizeof *c->done);
        c->n_done--;
        break;
    }
    return out->ok ? 0 : -1;
}
