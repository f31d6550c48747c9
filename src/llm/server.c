/* server.c — OpenAI-compatible HTTP server over the inference engine (see server.h). */
#include "llm/server.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "core/clock.h"
#include "core/error.h"
#include "core/rng.h"
#include "core/sbuf.h"
#include "llm/openai_req.h"
#include "model/infer.h"
#include "model/infer_gpu.h"
#include "model/qwen3.h"
#include "text/chat.h"
#include "text/tokenizer.h"

#define DEFAULT_HOST "127.0.0.1"
#define DEFAULT_MAX_BATCH 32
#define DEFAULT_KV_TOKENS 32768
#define DEFAULT_MAX_QUEUE 256
#define DEFAULT_MAX_TOKENS 2048
#define DEFAULT_MAX_BODY ((size_t)8 << 20)
#define DEFAULT_MAX_CONNECTIONS 512
/* Idle keep-alive connections are closed after this many seconds. */
#define CONNECTION_TIMEOUT_S 300
/* On stop, how long answers still being sent may take before the
 * connections are closed under them. */
#define STOP_DRAIN_S 5

typedef enum { REQ_QUEUED, REQ_RUNNING, REQ_DONE } ReqState;

/* One chat request on its way through the engine. Its front end (an HTTP
 * handler thread, or the MPI loop) owns it from server_chat_submit to
 * server_chat_finish; the engine writes its output fields under Server.mu. */
typedef struct ServerChat {
    /* input, fixed before it is queued */
    OpenAIChatRequest q;  /* the parsed body; the stop strings point into it */
    bool parsed;
    uint64_t counter;     /* the server's request number: default seed, ids */
    int32_t *ids;
    int n_ids;
    InferGenParams p;
    int reserve_blocks;   /* KV blocks held from admission to the end */
    /* engine state */
    ReqState state;
    int seq, gen_id;
    struct ServerChat *next; /* queue link */
    /* output */
    int32_t *out_ids;
    int n_out;
    InferFinish finish;
    bool failed;
    OpenAIError error;    /* when failed */
    double t_enqueue, t_admit, t_done;
} Req;

struct Server {
    char *model_dir, *name, *host;
    ServerOptions opt;
    int port;
    int64_t created;

    const Qwen3 *model;
    Tokenizer *tok;
    const ChatTemplate *ct;
    /* what this server loaded itself (NULL when the caller lent them) */
    Qwen3 *own_model;
    Tokenizer *own_tok;
    ChatTemplate *own_ct;
    InferEngine *cpu_eng; /* the engine: the CPU's, */
    InferGpu *gpu_eng;    /* or the GPU's */
    InferBackend eng;     /* whichever it is */
    InferGen *gen;
    int32_t stop_ids[4];
    int n_stop_ids;
    int vocab;            /* the model's V: prompt ids must be below it */
    int max_len;          /* longest sequence */
    int block_size, total_blocks;

    pthread_mutex_t text_mu; /* the chat template and the tokenizer handle */

    pthread_mutex_t mu;      /* everything below */
    pthread_cond_t engine_cv, done_cv;
    Req *q_head, *q_tail;
    int n_queued;
    Req **running;           /* (max_batch) */
    int n_running;
    int reserved_blocks;
    bool stopping;
    int open_requests;       /* HTTP requests begun and not yet completed */
    uint64_t base_seed, counter;
    ServerStats stats;
    double *lat_queue, *lat_engine; /* rings of SERVER_LATENCY_RING */
    uint64_t n_lat;

    pthread_t engine_thread;
    bool engine_started;
    struct MHD_Daemon *mhd;
};

/* ---------------------------------------------------------------- engine thread */

/* Hand a request back to its front end (status 0: it succeeded). Called
 * with mu held. */
static void req_finish(Server *s, Req *r, int status, const char *msg) {
    if (status) {
        r->failed = true;
        openai_error_set(&r->error, status, NULL, status == 503 ? "shutting_down" : NULL, "%s", msg ? msg : "");
    }
    r->state = REQ_DONE;
    r->t_done = clock_now_s();
    pthread_cond_broadcast(&s->done_cv);
}

/* Release a running request's generator slot, sequence and reservation. */
static void req_release(Server *s, Req *r) {
    infer_gen_release(s->gen, r->gen_id);
    s->eng.seq_free(s->eng.engine, r->seq);
    s->reserved_blocks -= r->reserve_blocks;
}

static void running_remove(Server *s, int i) {
    s->running[i] = s->running[--s->n_running];
}

/* Move queued requests into the batch while a slot is free and their
 * reservation fits. First come, first served: a large request at the head
 * waits for room rather than being overtaken forever. Called with mu held. */
static void admit(Server *s) {
    char err[512];
    while (s->q_head && s->n_running < s->opt.max_batch &&
           s->reserved_blocks + s->q_head->reserve_blocks <= s->total_blocks) {
        Req *r = s->q_head;
        s->q_head = r->next;
        if (!s->q_head) s->q_tail = NULL;
        s->n_queued--;
        r->next = NULL;
        r->t_admit = clock_now_s();
        r->seq = s->eng.seq_new(s->eng.engine, err, sizeof err);
        if (r->seq < 0) {
            req_finish(s, r, 500, err);
            continue;
        }
        r->gen_id = infer_gen_add(s->gen, r->seq, r->ids, r->n_ids, &r->p, err, sizeof err);
        if (r->gen_id < 0) {
            s->eng.seq_free(s->eng.engine, r->seq);
            req_finish(s, r, 500, err);
            continue;
        }
        s->reserved_blocks += r->reserve_blocks;
        r->state = REQ_RUNNING;
        s->running[s->n_running++] = r;
    }
}

static void record_latency(Server *s, const Req *r) {
    uint64_t k = s->n_lat++ % SERVER_LATENCY_RING;
    s->lat_queue[k] = r->t_admit - r->t_enqueue;
    s->lat_engine[k] = r->t_done - r->t_admit;
}

/* Collect finished requests after a step. Called with mu held. */
static void collect(Server *s) {
    for (int i = 0; i < s->n_running;) {
        Req *r = s->running[i];
        InferGenResult res = infer_gen_result(s->gen, r->gen_id);
        if (res.finish == INFER_RUNNING) {
            i++;
            continue;
        }
        r->n_out = res.n;
        r->out_ids = xmalloc((size_t)(res.n > 0 ? res.n : 1) * sizeof(int32_t));
        if (res.n > 0) memcpy(r->out_ids, res.ids, (size_t)res.n * sizeof(int32_t));
        r->finish = res.finish;
        req_release(s, r);
        running_remove(s, i);
        req_finish(s, r, 0, NULL);
        record_latency(s, r);
    }
}

static void fail_all(Server *s, int status, const char *msg) {
    while (s->n_running > 0) {
        Req *r = s->running[0];
        req_release(s, r);
        running_remove(s, 0);
        req_finish(s, r, status, msg);
    }
    while (s->q_head) {
        Req *r = s->q_head;
        s->q_head = r->next;
        r->next = NULL;
        req_finish(s, r, status, msg);
    }
    s->q_tail = NULL;
    s->n_queued = 0;
}

/* One turn of the engine loop: admit what fits, step every running request
 * once, hand back the ones that finished. The engine thread (HTTP) and
 * single-threaded front ends (server_engine_pass) both run exactly this.
 * Called with mu held; releases it around the step so that handlers can
 * queue meanwhile. Returns false when nothing was running. */
static bool engine_turn(Server *s) {
    char err[1024];
    admit(s);
    if (s->n_running == 0) return false;
    int batch = s->n_running;
    pthread_mutex_unlock(&s->mu);
    int rc = infer_gen_step(s->gen, err, sizeof err);
    pthread_mutex_lock(&s->mu);
    s->stats.engine_steps++;
    s->stats.batched_tokens += (uint64_t)batch;
    if (batch > s->stats.max_running) s->stats.max_running = batch;
    if (rc < 0) {
        /* Reservations make this a bug; answer rather than hang. */
        fprintf(stderr, "%s: serve: engine step failed: %s\n", g_prog_name, err);
        fail_all(s, 500, err);
        return true;
    }
    collect(s);
    return true;
}

static void *engine_main(void *arg) {
    Server *s = arg;
    pthread_mutex_lock(&s->mu);
    while (!s->stopping) {
        if (!engine_turn(s)) pthread_cond_wait(&s->engine_cv, &s->mu);
    }
    fail_all(s, 503, "the server is shutting down");
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

int server_engine_pass(Server *s) {
    if (s->engine_started) die_runtime("server_engine_pass: this server has its own engine thread");
    pthread_mutex_lock(&s->mu);
    engine_turn(s);
    int left = s->n_running + s->n_queued;
    pthread_mutex_unlock(&s->mu);
    return left;
}

/* ---------------------------------------------------------------- chat requests */

/* The first occurrence of any stop string in text, or len. */
static size_t stop_cut(const char *text, size_t len, char *const *stops, int n_stops) {
    size_t cut = len;
    for (int i = 0; i < n_stops; i++) {
        const char *hit = memmem(text, len, stops[i], strlen(stops[i]));
        if (hit && (size_t)(hit - text) < cut) cut = (size_t)(hit - text);
    }
    return cut;
}

/* Render and tokenize the conversation; fill r's prompt. */
static int build_prompt(Server *s, const OpenAIChatRequest *q, Req *r, OpenAIError *oe) {
    char err[1024];
    size_t len = 0;
    pthread_mutex_lock(&s->text_mu);
    char *text = chat_render(s->ct, q->messages, q->tools, true, q->template_kwargs, &len, err, sizeof err);
    if (!text) {
        pthread_mutex_unlock(&s->text_mu);
        return openai_error_set(oe, 400, "messages", NULL, "the chat template could not render the messages: %s", err);
    }
    size_t n = 0;
    tok_encode(s->tok, text, len, &r->ids, &n);
    pthread_mutex_unlock(&s->text_mu);
    free(text);
    if (n == 0) return openai_error_set(oe, 400, "messages", NULL, "the rendered prompt is empty");
    for (size_t i = 0; i < n; i++) {
        if (r->ids[i] < 0 || r->ids[i] >= s->vocab) {
            return openai_error_set(oe, 400, "messages", NULL,
                                    "the prompt has token %d, outside the model's vocabulary (%d)", r->ids[i], s->vocab);
        }
    }
    if (n >= (size_t)s->max_len) {
        return openai_error_set(oe, 400, "messages", "context_length_exceeded",
                                "the prompt has %zu tokens; the model's context is %d", n, s->max_len);
    }
    r->n_ids = (int)n;
    return 0;
}

/* Sampling, stop conditions and the KV reservation. */
static int plan_generation(Server *s, const OpenAIChatRequest *q, Req *r, uint64_t counter, OpenAIError *oe) {
    long max_new = q->max_tokens > 0 ? q->max_tokens : s->opt.default_max_tokens;
    if (max_new > (long)s->max_len - r->n_ids) max_new = (long)s->max_len - r->n_ids;
    /* The cache holds the prompt and every sampled token but the last. */
    long capacity = (long)s->total_blocks * s->block_size;
    if ((long)r->n_ids + 1 > capacity) {
        return openai_error_set(oe, 400, "messages", "context_length_exceeded",
                                "the prompt has %d tokens; this server's KV cache holds %ld (serve --kv-tokens)",
                                r->n_ids, capacity);
    }
    if ((long)r->n_ids + max_new - 1 > capacity) max_new = capacity - r->n_ids + 1;
    long tokens = (long)r->n_ids + max_new - 1;
    r->reserve_blocks = (int)((tokens + s->block_size - 1) / s->block_size);

    r->p.sample.temperature = q->temperature;
    r->p.sample.top_p = q->top_p;
    r->p.sample.top_k = q->top_k;
    r->p.seed = q->has_seed ? q->seed : rng_derive(s->base_seed, counter);
    r->p.stream = 0;
    r->p.max_new_tokens = (int)max_new;
    r->p.stop_ids = s->stop_ids;
    r->p.n_stop_ids = s->n_stop_ids;
    r->p.stop_strings = (const char *const *)q->stop;
    r->p.n_stop_strings = q->n_stop;
    return 0;
}

/* Queue r for the engine. */
static int enqueue(Server *s, Req *r, OpenAIError *oe) {
    pthread_mutex_lock(&s->mu);
    if (s->stopping) {
        pthread_mutex_unlock(&s->mu);
        return openai_error_set(oe, 503, NULL, "shutting_down", "the server is shutting down");
    }
    if (s->n_queued >= s->opt.max_queue) {
        pthread_mutex_unlock(&s->mu);
        return openai_error_set(oe, 503, NULL, "queue_full",
                                "the server's queue is full (%d requests waiting); retry later", s->opt.max_queue);
    }
    r->state = REQ_QUEUED;
    r->t_enqueue = clock_now_s();
    if (s->q_tail) s->q_tail->next = r;
    else s->q_head = r;
    s->q_tail = r;
    s->n_queued++;
    pthread_cond_signal(&s->engine_cv);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

ServerChat *server_chat_submit(Server *s, const char *body, size_t len) {
    Req *r = xcalloc(1, sizeof *r);
    if (len > s->opt.max_body_bytes) {
        openai_error_set(&r->error, 413, NULL, "body_too_large",
                         "the request body has %zu bytes; this server accepts at most %zu", len, s->opt.max_body_bytes);
        r->failed = true;
        r->state = REQ_DONE;
        return r;
    }
    if (openai_chat_request_parse(body, len, &r->q, &r->error) != 0) {
        r->failed = true;
        r->state = REQ_DONE;
        return r;
    }
    r->parsed = true;
    pthread_mutex_lock(&s->mu);
    r->counter = ++s->counter;
    pthread_mutex_unlock(&s->mu);
    if (build_prompt(s, &r->q, r, &r->error) != 0 || plan_generation(s, &r->q, r, r->counter, &r->error) != 0 ||
        enqueue(s, r, &r->error) != 0) {
        r->failed = true;
        r->state = REQ_DONE;
    }
    return r;
}

bool server_chat_done(Server *s, const ServerChat *r) {
    pthread_mutex_lock(&s->mu);
    bool done = r->state == REQ_DONE;
    pthread_mutex_unlock(&s->mu);
    return done;
}

/* Wait for the engine thread to finish r. */
static void chat_wait(Server *s, Req *r) {
    pthread_mutex_lock(&s->mu);
    while (r->state != REQ_DONE) pthread_cond_wait(&s->done_cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
}

/* The chat.completion of a request the engine finished. */
static char *completion_json(Server *s, Req *r) {
    /* The end-of-turn token is not content; special tokens are skipped as
     * vLLM skips them by default. */
    int n = r->n_out;
    if (r->finish == INFER_FINISH_STOP_ID && n > 0) n--;
    size_t tlen = 0;
    char *text = tok_decode(s->tok, r->out_ids, (size_t)n, TOK_DECODE_SKIP_SPECIAL, &tlen);
    if (r->finish == INFER_FINISH_STOP_STRING) tlen = stop_cut(text, tlen, r->q.stop, r->q.n_stop);

    uint32_t w[4];
    rng_draw(s->base_seed, 0x636d706cULL /* "cmpl" */, r->counter, w);
    char id[64];
    snprintf(id, sizeof id, "chatcmpl-%08x%08x%08x", w[0], w[1], w[2]);
    OpenAIChatResult res = {
        .id = id,
        .model = s->name,
        .created = (int64_t)time(NULL),
        .text = text,
        .text_len = tlen,
        .parse_tool_calls = r->q.parse_tool_calls && r->q.tools != NULL,
        .id_seed = rng_derive(s->base_seed, r->counter),
        .finish = r->finish == INFER_FINISH_LENGTH ? "length" : "stop",
        .prompt_tokens = r->n_ids,
        .completion_tokens = r->n_out,
    };
    char *json = openai_chat_response_json(&res);
    free(text);
    return json;
}

char *server_chat_finish(Server *s, ServerChat *r, int *status) {
    if (r->state != REQ_DONE) die_runtime("server_chat_finish: the request is still in the engine");
    char *json;
    if (r->failed) {
        *status = r->error.status;
        json = openai_error_json(&r->error);
    } else {
        *status = 200;
        json = completion_json(s, r);
    }
    pthread_mutex_lock(&s->mu);
    if (*status == 200) {
        s->stats.requests++;
        s->stats.prompt_tokens += (uint64_t)r->n_ids;
        s->stats.completion_tokens += (uint64_t)r->n_out;
    } else {
        s->stats.rejected++;
    }
    pthread_mutex_unlock(&s->mu);
    free(r->ids);
    free(r->out_ids);
    if (r->parsed) openai_chat_request_free(&r->q);
    free(r);
    return json;
}

/* ---------------------------------------------------------------- HTTP */

/* Per-connection state of one request: the body read so far. */
typedef struct {
    SBuf body;
    bool too_large;
    bool answered; /* a response was queued before the body was read */
} ConnCtx;

static enum MHD_Result send_json(struct MHD_Connection *c, int status, char *json, const char *allow) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(strlen(json), json, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(json);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    if (allow) MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result send_error(Server *s, struct MHD_Connection *c, int status, const char *code, const char *allow,
                                  const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static enum MHD_Result send_error(Server *s, struct MHD_Connection *c, int status, const char *code, const char *allow,
                                  const char *fmt, ...) {
    OpenAIError e;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    openai_error_set(&e, status, NULL, code, "%s", msg);
    pthread_mutex_lock(&s->mu);
    s->stats.rejected++;
    pthread_mutex_unlock(&s->mu);
    return send_json(c, status, openai_error_json(&e), allow);
}

typedef enum { ROUTE_NONE, ROUTE_CHAT, ROUTE_MODELS, ROUTE_HEALTH } Route;

static Route route_of(const char *url) {
    if (!strcmp(url, "/v1/chat/completions")) return ROUTE_CHAT;
    if (!strcmp(url, "/v1/models")) return ROUTE_MODELS;
    if (!strcmp(url, "/health")) return ROUTE_HEALTH;
    return ROUTE_NONE;
}

/* Printable ASCII of an untrusted string for error messages. */
static void safe_copy(char *out, size_t outlen, const char *s) {
    size_t j = 0;
    for (size_t i = 0; s[i] && j + 1 < outlen; i++) {
        unsigned char ch = (unsigned char)s[i];
        out[j++] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
    }
    out[j] = 0;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
    Server *s = cls;
    ConnCtx *ctx = *con_cls;
    Route route = route_of(url);
    bool is_get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
    bool is_post = !strcmp(method, "POST");

    if (!ctx) { /* first call: headers only */
        ctx = xcalloc(1, sizeof *ctx);
        sbuf_init(&ctx->body);
        *con_cls = ctx;
        pthread_mutex_lock(&s->mu);
        s->open_requests++;
        pthread_mutex_unlock(&s->mu);
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (route == ROUTE_CHAT && is_post && cl) {
            char *end;
            unsigned long long n = strtoull(cl, &end, 10);
            if (end != cl && n > s->opt.max_body_bytes) {
                /* Refuse before reading a byte of it. */
                ctx->answered = true;
                return send_error(s, c, 413, "body_too_large", NULL,
                                  "the request body has %llu bytes; this server accepts at most %zu", n,
                                  s->opt.max_body_bytes);
            }
        }
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        if (!ctx->answered && !ctx->too_large) {
            if (ctx->body.len + *upload_data_size > s->opt.max_body_bytes) {
                ctx->too_large = true;
                sbuf_free(&ctx->body);
            } else {
                sbuf_put(&ctx->body, upload_data, *upload_data_size);
            }
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (ctx->answered) return MHD_YES;

    char safe_url[256], safe_method[32];
    safe_copy(safe_url, sizeof safe_url, url);
    safe_copy(safe_method, sizeof safe_method, method);
    if (route == ROUTE_NONE) {
        return send_error(s, c, 404, "not_found", NULL,
                          "no such endpoint: %s %s (this server has POST /v1/chat/completions, GET /v1/models, "
                          "GET /health)", safe_method, safe_url);
    }
    if (route == ROUTE_CHAT && !is_post) {
        return send_error(s, c, 405, "method_not_allowed", "POST", "%s %s: use POST", safe_method, safe_url);
    }
    if (route != ROUTE_CHAT && !is_get) {
        return send_error(s, c, 405, "method_not_allowed", "GET, HEAD", "%s %s: use GET", safe_method, safe_url);
    }
    if (route == ROUTE_HEALTH) {
        char buf[128];
        pthread_mutex_lock(&s->mu);
        snprintf(buf, sizeof buf, "{\"status\":\"%s\",\"running\":%d,\"queued\":%d}",
                 s->stopping ? "stopping" : "ok", s->n_running, s->n_queued);
        pthread_mutex_unlock(&s->mu);
        return send_json(c, 200, xstrdup(buf), NULL);
    }
    if (route == ROUTE_MODELS) return send_json(c, 200, openai_models_json(s->name, s->created), NULL);

    if (ctx->too_large) {
        return send_error(s, c, 413, "body_too_large", NULL, "the request body exceeds %zu bytes",
                          s->opt.max_body_bytes);
    }
    ServerChat *chat = server_chat_submit(s, ctx->body.data ? ctx->body.data : "", ctx->body.len);
    chat_wait(s, chat);
    int status;
    char *json = server_chat_finish(s, chat, &status);
    return send_json(c, status, json, NULL);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    Server *s = cls;
    ConnCtx *ctx = *con_cls;
    if (!ctx) return;
    sbuf_free(&ctx->body);
    free(ctx);
    *con_cls = NULL;
    pthread_mutex_lock(&s->mu);
    s->open_requests--;
    pthread_cond_broadcast(&s->done_cv);
    pthread_mutex_unlock(&s->mu);
}

/* ---------------------------------------------------------------- lifecycle */

/* The last component of a path ("inputs/tiny_model/" → "tiny_model"), new string. */
static char *base_name(const char *path) {
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--;
    size_t i = n;
    while (i > 0 && path[i - 1] != '/') i--;
    return xstrndup(path + i, n - i);
}

static void add_stop_id(Server *s, int32_t id) {
    if (id < 0 || id >= s->vocab || s->n_stop_ids >= 4) return;
    for (int i = 0; i < s->n_stop_ids; i++) {
        if (s->stop_ids[i] == id) return;
    }
    s->stop_ids[s->n_stop_ids++] = id;
}

/* The model, tokenizer and chat template: the caller's (borrowed) or
 * loaded from the model directory; then the engine over them. */
static int load_model(Server *s, const Qwen3 *model, Tokenizer *tok, const ChatTemplate *ct, char *err,
                      size_t errlen) {
    char path[4096], e[2048];
    if (model) {
        s->model = model;
        s->tok = tok;
        s->ct = ct;
    } else {
        s->model = s->own_model = qwen3_load_dir(s->model_dir, e, sizeof e);
        if (!s->model) return err_set(err, errlen, "%s", e);
        snprintf(path, sizeof path, "%s/tokenizer.json", s->model_dir);
        s->tok = s->own_tok = tok_load(path, e, sizeof e);
        if (!s->tok) return err_set(err, errlen, "%s", e);
        s->ct = s->own_ct = chat_load(s->model_dir, e, sizeof e);
        if (!s->ct) return err_set(err, errlen, "%s", e);
    }
    s->vocab = s->model->config.vocab_size;
    s->max_len = s->model->config.max_position_embeddings;
    /* Stop on the model's eos, the template's end of turn, and Qwen's two ends. */
    add_stop_id(s, s->model->config.eos_token_id);
    const char *eot = chat_eos_token(s->ct);
    if (eot) add_stop_id(s, tok_id_of(s->tok, eot));
    add_stop_id(s, tok_id_of(s->tok, "<|im_end|>"));
    add_stop_id(s, tok_id_of(s->tok, "<|endoftext|>"));

    InferOptions io = {.kv_tokens = s->opt.kv_tokens, .block_size = INFER_DEFAULT_BLOCK_SIZE,
                       .max_seqs = s->opt.max_batch + 1, .max_len = 0};
    if (s->opt.on_gpu) {
#ifdef TAU2_HAVE_CUDA
        s->gpu_eng = infer_gpu_new(s->model, &io, 0, e, sizeof e);
        if (!s->gpu_eng) return err_set(err, errlen, "--device cuda: %s", e);
        s->eng = infer_gpu_backend(s->gpu_eng);
#else
        return err_set(err, errlen, "--device cuda: this build has no CUDA backend (configure with -DTAU2_CUDA=ON)");
#endif
    } else {
        s->cpu_eng = infer_new(s->model, &io, e, sizeof e);
        if (!s->cpu_eng) return err_set(err, errlen, "%s", e);
        s->eng = infer_backend(s->cpu_eng);
    }
    s->gen = infer_gen_new_backend(&s->eng, s->tok);
    infer_gen_set_step_tokens(s->gen, s->opt.chunked_prefill_size);
    s->block_size = s->eng.block_size;
    s->total_blocks = s->eng.free_tokens(s->eng.engine) / s->block_size;
    return 0;
}

static int start_http(Server *s, char *err, size_t errlen) {
    struct sockaddr_in a4;
    struct sockaddr_in6 a6;
    struct sockaddr *addr;
    /* ITC: server_stop quiesces the daemon (stops accepting) first. */
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG | MHD_USE_ITC;
    const char *host = !strcmp(s->host, "localhost") ? "127.0.0.1" : s->host;
    memset(&a4, 0, sizeof a4);
    memset(&a6, 0, sizeof a6);
    if (inet_pton(AF_INET, host, &a4.sin_addr) == 1) {
        a4.sin_family = AF_INET;
        a4.sin_port = htons((uint16_t)s->opt.port);
        addr = (struct sockaddr *)&a4;
    } else if (inet_pton(AF_INET6, host, &a6.sin6_addr) == 1) {
        a6.sin6_family = AF_INET6;
        a6.sin6_port = htons((uint16_t)s->opt.port);
        addr = (struct sockaddr *)&a6;
        flags |= MHD_USE_IPv6;
    } else {
        return err_set(err, errlen, "serve: --host: expected an IPv4 or IPv6 address (or localhost), got '%s'",
                       s->host);
    }
    s->mhd = MHD_start_daemon(flags, (uint16_t)s->opt.port, NULL, NULL, &on_request, s,
                              MHD_OPTION_SOCK_ADDR, addr,
                              MHD_OPTION_CONNECTION_LIMIT, (unsigned)s->opt.max_connections,
                              MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)CONNECTION_TIMEOUT_S,
                              MHD_OPTION_NOTIFY_COMPLETED, &on_completed, s,
                              MHD_OPTION_END);
    if (!s->mhd) {
        return err_set(err, errlen, "serve: cannot listen on %s port %d (address in use, or not this machine's)",
                       s->host, s->opt.port);
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info && info->port ? info->port : s->opt.port;
    return 0;
}

/* A server with its model and engine, no engine thread and no HTTP yet. */
static Server *server_create(const ServerOptions *opt, const Qwen3 *model, Tokenizer *tok, const ChatTemplate *ct,
                             char *err, size_t errlen) {
    if (!opt || (!opt->model_dir && !model)) {
        err_set(err, errlen, "serve: a model directory is required");
        return NULL;
    }
    if (model && (!tok || !ct)) {
        err_set(err, errlen, "serve: a lent model needs its tokenizer and chat template too");
        return NULL;
    }
    if (opt->port < 0 || opt->port > 65535 || opt->max_batch < 0 || opt->kv_tokens < 0 || opt->max_queue < 0 ||
        opt->default_max_tokens < 0 || opt->max_connections < 0) {
        err_set(err, errlen, "serve: options: port must be in [0, 65535] and the sizes >= 0 (0: default)");
        return NULL;
    }
    Server *s = xcalloc(1, sizeof *s);
    s->opt = *opt;
    s->model_dir = opt->model_dir ? xstrdup(opt->model_dir) : NULL;
    s->host = xstrdup(opt->host ? opt->host : DEFAULT_HOST);
    s->name = opt->served_model_name ? xstrdup(opt->served_model_name)
              : opt->model_dir       ? base_name(opt->model_dir)
                                     : xstrdup("local");
    s->opt.model_dir = s->model_dir;
    s->opt.host = s->host;
    s->opt.served_model_name = s->name;
    if (!s->opt.max_batch) s->opt.max_batch = DEFAULT_MAX_BATCH;
    s->opt.kv_tokens = server_kv_tokens(opt);
    if (!s->opt.max_queue) s->opt.max_queue = DEFAULT_MAX_QUEUE;
    if (!s->opt.default_max_tokens) s->opt.default_max_tokens = DEFAULT_MAX_TOKENS;
    if (!s->opt.max_body_bytes) s->opt.max_body_bytes = DEFAULT_MAX_BODY;
    if (!s->opt.max_connections) s->opt.max_connections = DEFAULT_MAX_CONNECTIONS;
    s->created = (int64_t)time(NULL);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    s->base_seed = rng_derive((uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec, (uint64_t)getpid());
    pthread_mutex_init(&s->text_mu, NULL);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->engine_cv, NULL);
    pthread_cond_init(&s->done_cv, NULL);
    s->running = xcalloc((size_t)s->opt.max_batch, sizeof(Req *));
    s->lat_queue = xcalloc(SERVER_LATENCY_RING, sizeof(double));
    s->lat_engine = xcalloc(SERVER_LATENCY_RING, sizeof(double));

    if (load_model(s, model, tok, ct, err, errlen) != 0) {
        server_stop(s);
        return NULL;
    }
    return s;
}

int server_kv_tokens(const ServerOptions *opt) { return opt->kv_tokens ? opt->kv_tokens : DEFAULT_KV_TOKENS; }

Server *server_open(const ServerOptions *opt, const Qwen3 *model, Tokenizer *tok, const ChatTemplate *ct, char *err,
                    size_t errlen) {
    return server_create(opt, model, tok, ct, err, errlen);
}

Server *server_start(const ServerOptions *opt, char *err, size_t errlen) {
    Server *s = server_create(opt, NULL, NULL, NULL, err, errlen);
    if (!s) return NULL;
    if (pthread_create(&s->engine_thread, NULL, engine_main, s) != 0) {
        err_set(err, errlen, "serve: cannot start the engine thread");
        server_stop(s);
        return NULL;
    }
    s->engine_started = true;
    if (start_http(s, err, errlen) != 0) {
        server_stop(s);
        return NULL;
    }
    return s;
}

void server_stop(Server *s) {
    if (!s) return;
    /* No new connections; the engine answers everything queued or running
     * with 503 and exits; handler threads wake, reply, and MHD then joins
     * them. */
    if (s->mhd) {
        MHD_socket ls = MHD_quiesce_daemon(s->mhd);
        if (ls != MHD_INVALID_SOCKET) close(ls);
    }
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_cond_broadcast(&s->engine_cv);
    pthread_mutex_unlock(&s->mu);
    if (s->engine_started) pthread_join(s->engine_thread, NULL);
    else if (s->n_running + s->n_queued > 0) die_runtime("server_stop: requests are still in the engine");
    if (s->mhd) {
        /* Let the handlers just woken send their 503s before the daemon
         * closes the connections under them. */
        struct timespec deadline;
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += STOP_DRAIN_S;
        pthread_mutex_lock(&s->mu);
        while (s->open_requests > 0) {
            if (pthread_cond_timedwait(&s->done_cv, &s->mu, &deadline) != 0) break;
        }
        pthread_mutex_unlock(&s->mu);
        MHD_stop_daemon(s->mhd);
    }
    infer_gen_free(s->gen);
    infer_free(s->cpu_eng);
#ifdef TAU2_HAVE_CUDA
    infer_gpu_free(s->gpu_eng);
#endif
    chat_free(s->own_ct);
    tok_free(s->own_tok);
    qwen3_free(s->own_model);
    pthread_mutex_destroy(&s->text_mu);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->engine_cv);
    pthread_cond_destroy(&s->done_cv);
    free(s->running);
    free(s->lat_queue);
    free(s->lat_engine);
    free(s->model_dir);
    free(s->host);
    free(s->name);
    free(s);
}

int server_port(const Server *s) {
    return s->port;
}

const char *server_host(const Server *s) {
    return s->host;
}

const char *server_model_name(const Server *s) {
    return s->name;
}

void server_stats(Server *s, ServerStats *out) {
    pthread_mutex_lock(&s->mu);
    *out = s->stats;
    out->running = s->n_running;
    out->queued = s->n_queued;
    pthread_mutex_unlock(&s->mu);
}

int server_latencies(Server *s, double *queue, double *engine, int max) {
    pthread_mutex_lock(&s->mu);
    uint64_t have = s->n_lat < SERVER_LATENCY_RING ? s->n_lat : SERVER_LATENCY_RING;
    int n = (int)(have < (uint64_t)max ? have : (uint64_t)max);
    /* the newest n, oldest first */
    for (int i = 0; i < n; i++) {
        uint64_t k = (s->n_lat - (uint64_t)n + (uint64_t)i) % SERVER_LATENCY_RING;
        if (queue) queue[i] = s->lat_queue[k];
        if (engine) engine[i] = s->lat_engine[k];
    }
    pthread_mutex_unlock(&s->mu);
    return n;
}
