/* bench_llm_client.c — the OpenAI client (llm/llm_client.h) on loopback:
 * requests/s and p50/p99 latency, against the same load sent with raw
 * libcurl as the anchor.
 *
 *   bench_llm_client [--requests N] [--rounds R] [--serve-requests M]
 *                    [--serve-concurrency C] [--max-tokens T] [--model DIR] [--no-serve]
 *
 * Two endpoints, both in this process:
 *
 *   stub   a libmicrohttpd server (one polling thread) that drops the body
 *          and answers a fixed chat completion: what is left is the cost of
 *          HTTP on loopback and of the client itself. N requests (default
 *          2000) at concurrency 1, 16 and 64.
 *   serve  `tau2_hpc serve` (llm/server.h) on the tiny model: M requests
 *          (default 64) at concurrency C (default 16), each asking for T
 *          tokens (default 16) with seed i, so both loads do the same work.
 *          The server's own queue and engine times are printed too.
 *
 * The client under test is one thread submitting with llm_client_submit and
 * collecting with llm_client_poll, keeping exactly C requests in flight
 * (max_concurrency = C, no retries). The anchor is the bench_serve load
 * generator: one thread on libcurl's multi interface, a new easy handle per
 * request (as the client makes one per attempt), the same body bytes, C in
 * flight. "ratio" is the client's requests/s over the anchor's; near 1
 * means the client adds little. Each measured run follows a warm-up of the
 * same kind (connections opened, caches filled). On the stub, R rounds
 * (default 3) alternate anchor and client, and each side reports its
 * median round by requests/s: the machine's background load hits both.
 * Output, one line per run:
 *
 *   stub conc=16 anchor=raw_curl req_s=... p50_ms=... p99_ms=...
 *   stub conc=16 client=llm_client req_s=... p50_ms=... p99_ms=... ratio=0.97
 *   serve conc=16 ... server queue_ms p50=... engine_ms p50=...
 */
#include <curl/curl.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/error.h"
#include "core/json.h"
#include "core/sbuf.h"
#include "llm/llm_client.h"
#include "llm/server.h"

#include "bench_util.h"

/* ================================================================ stub server */

static const char STUB_REPLY[] =
    "{\"id\": \"chatcmpl-stub\", \"object\": \"chat.completion\", \"created\": 0, \"model\": \"stub\","
    " \"choices\": [{\"index\": 0, \"message\": {\"role\": \"assistant\", \"content\": \"Sure, I can help.\"},"
    " \"finish_reason\": \"stop\"}], \"usage\": {\"prompt_tokens\": 30, \"completion_tokens\": 5,"
    " \"total_tokens\": 35}}";

static char stub_started; /* a non-NULL marker for a connection's first call */

static enum MHD_Result stub_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                    const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    if (!*con_cls) { /* headers only so far */
        *con_cls = &stub_started;
        return MHD_YES;
    }
    if (*upload_size) { /* body bytes: dropped */
        *upload_size = 0;
        return MHD_YES;
    }
    int ok = !strcmp(method, "POST") && !strcmp(url, "/v1/chat/completions");
    const char *text = ok ? STUB_REPLY : "{\"error\": \"not found\"}";
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(r, "Content-Type", "application/json");
    enum MHD_Result ret = MHD_queue_response(conn, ok ? 200 : 404, r);
    MHD_destroy_response(r);
    return ret;
}

/* ================================================================ loads */

typedef struct {
    double wall;
    double *lat; /* n seconds, sorted */
    int n;
    int failed;
    long completion_tokens;
} RunResult;

static int g_failed; /* requests that failed, over every run: the exit status */

static void run_print(const char *what, int conc, const char *who, const RunResult *r, double anchor_req_s) {
    g_failed += r->failed;
    double req_s = r->n / r->wall;
    printf("%s conc=%d %s req_s=%.1f p50_ms=%.3f p99_ms=%.3f failed=%d", what, conc, who, req_s,
           1e3 * percentile(r->lat, r->n, 50), 1e3 * percentile(r->lat, r->n, 99), r->failed);
    if (r->completion_tokens) printf(" completion_tok_s=%.1f", r->completion_tokens / r->wall);
    if (anchor_req_s > 0) printf(" ratio=%.3f", req_s / anchor_req_s);
    printf("\n");
    fflush(stdout);
}

/* Request i: a short τ²-style conversation. seed_i gives request i seed i
 * (the serve runs); otherwise every request is the same. */
static cJSON *make_body(int i, int seed_i, int max_tokens) {
    char text[512];
    snprintf(text, sizeof text,
             "{\"messages\": [{\"role\": \"system\", \"content\": \"You are a customer of an airline.\"},"
             " {\"role\": \"user\", \"content\": \"Request %d: I want to change my flight to Boston.\"}],"
             " \"max_tokens\": %d, \"seed\": %d, \"temperature\": 1.0}",
             seed_i ? i : 0, max_tokens, seed_i ? i : 0);
    char err[256];
    cJSON *b = json_parse(text, strlen(text), "body", err, sizeof err);
    if (!b) die_runtime("bench_llm_client: %s", err);
    return b;
}

/* The bytes the client puts on the wire for body: "model" first. */
static char *wire_body(const cJSON *body, const char *model) {
    cJSON *w = cJSON_CreateObject();
    cJSON_AddStringToObject(w, "model", model);
    for (const cJSON *it = body->child; it; it = it->next) cJSON_AddItemToObject(w, it->string, cJSON_Duplicate(it, 1));
    char *s = cJSON_PrintUnformatted(w);
    cJSON_Delete(w);
    char *out = xstrdup(s);
    cJSON_free(s);
    return out;
}

static void count_tokens(RunResult *r, const cJSON *usage) {
    const cJSON *ct = json_get(usage, "completion_tokens");
    if (cJSON_IsNumber(ct)) r->completion_tokens += (long)ct->valuedouble;
}

/* ---- anchor: raw libcurl multi, as in bench_serve ---- */

typedef struct {
    CURL *easy;
    SBuf out;
    double t0;
} Flight;

static RunResult run_raw(const char *url, int n, int conc, int seed_i, int max_tokens, const char *model) {
    char **bodies = xcalloc((size_t)n, sizeof(char *));
    for (int i = 0; i < n; i++) {
        if (seed_i || i == 0) {
            cJSON *b = make_body(i, seed_i, max_tokens);
            bodies[i] = wire_body(b, model);
            cJSON_Delete(b);
        }
    }
    struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
    CURLM *multi = curl_multi_init();
    RunResult r = {.lat = xcalloc((size_t)n, sizeof(double)), .n = n};
    int started = 0, done = 0;
    double t_start = now();
    while (done < n) {
        while (started < n && started - done < conc) {
            const char *body = bodies[seed_i ? started : 0];
            Flight *f = xcalloc(1, sizeof *f);
            sbuf_init(&f->out);
            f->easy = curl_easy_init();
            curl_easy_setopt(f->easy, CURLOPT_URL, url);
            curl_easy_setopt(f->easy, CURLOPT_HTTPHEADER, headers);
            curl_easy_setopt(f->easy, CURLOPT_POSTFIELDS, body);
            curl_easy_setopt(f->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
            curl_easy_setopt(f->easy, CURLOPT_WRITEFUNCTION, on_body);
            curl_easy_setopt(f->easy, CURLOPT_WRITEDATA, &f->out);
            curl_easy_setopt(f->easy, CURLOPT_PRIVATE, f);
            curl_easy_setopt(f->easy, CURLOPT_NOSIGNAL, 1L);
            curl_easy_setopt(f->easy, CURLOPT_TIMEOUT, 600L);
            f->t0 = now();
            curl_multi_add_handle(multi, f->easy);
            started++;
        }
        int running;
        curl_multi_perform(multi, &running);
        int finished = 0;
        Flight *f;
        CURLcode result;
        long status;
        while ((f = bench_next_done(multi, &result, &status))) {
            r.lat[done++] = now() - f->t0;
            finished++;
            if (result != CURLE_OK || status != 200) {
                r.failed++;
            } else {
                /* parse the answer, as any caller would */
                char perr[256];
                cJSON *resp = json_parse(f->out.data, f->out.len, "response", perr, sizeof perr);
                if (!resp) r.failed++;
                count_tokens(&r, json_get(resp, "usage"));
                cJSON_Delete(resp);
            }
            curl_multi_remove_handle(multi, f->easy);
            curl_easy_cleanup(f->easy);
            sbuf_free(&f->out);
            free(f);
        }
        /* wait only when nothing finished: a freed slot is refilled first
         * (waiting with nothing in flight would sleep the whole timeout) */
        if (done < n && !finished) curl_multi_poll(multi, NULL, 0, 100, NULL);
    }
    r.wall = now() - t_start;
    curl_multi_cleanup(multi);
    curl_slist_free_all(headers);
    for (int i = 0; i < n; i++) free(bodies[i]);
    free(bodies);
    qsort(r.lat, (size_t)n, sizeof(double), cmp_double);
    return r;
}

/* ---- the client under test ---- */

static RunResult run_client(const char *base_url, int n, int conc, int seed_i, int max_tokens, const char *model) {
    LlmEndpointConfig ep;
    llm_endpoint_defaults(&ep);
    ep.base_url = base_url;
    ep.model = model;
    ep.timeout_s = 600;
    ep.max_retries = 0;
    ep.max_concurrency = conc;
    char err[512];
    LlmClient *c = llm_client_new(&ep, 1, &(LlmClientOptions){.seed = 1}, err, sizeof err);
    if (!c) die_runtime("bench_llm_client: %s", err);
    cJSON *same = seed_i ? NULL : make_body(0, 0, max_tokens);
    RunResult r = {.lat = xcalloc((size_t)n, sizeof(double)), .n = n};
    LlmResult res[64];
    int started = 0, done = 0;
    double t_start = now();
    while (done < n) {
        while (started < n && started - done < conc) {
            if (same) {
                llm_client_submit(c, 0, same, NULL);
            } else {
                cJSON *b = make_body(started, 1, max_tokens);
                llm_client_submit(c, 0, b, NULL);
                cJSON_Delete(b);
            }
            started++;
        }
        int k = llm_client_poll(c, 1.0, res, 64);
        for (int i = 0; i < k; i++) {
            r.lat[done++] = res[i].latency_s;
            if (!res[i].ok) {
                if (r.failed++ < 3) fprintf(stderr, "bench_llm_client: %s\n", res[i].error);
            }
            count_tokens(&r, res[i].usage);
            llm_result_free(&res[i]);
        }
    }
    r.wall = now() - t_start;
    cJSON_Delete(same);
    llm_client_free(c);
    qsort(r.lat, (size_t)n, sizeof(double), cmp_double);
    return r;
}

/* ================================================================ main */

static long parse_int(const char *opt, const char *v, long lo, long hi) {
    char *end;
    long n = strtol(v, &end, 10);
    if (end == v || *end || n < lo || n > hi)
        die_input("bench_llm_client: %s: expected an integer in [%ld, %ld]", opt, lo, hi);
    return n;
}

/* Median by requests/s of R runs; the others are freed. */
static RunResult pick_median(RunResult *runs, int R) {
    for (int i = 1; i < R; i++) { /* insertion sort by req/s; R is small */
        RunResult t = runs[i];
        int j = i;
        for (; j > 0 && runs[j - 1].n / runs[j - 1].wall > t.n / t.wall; j--) runs[j] = runs[j - 1];
        runs[j] = t;
    }
    for (int i = 0; i < R; i++) {
        if (i != R / 2) free(runs[i].lat);
    }
    return runs[R / 2];
}

/* R rounds of anchor then client, alternating so that both see the same
 * background load of a shared machine; each side reports its median round
 * (failures summed over every round). */
static void compare(const char *what, const char *base, const char *url, int n, int conc, int seed_i, int max_tokens,
                    const char *model, int R, RunResult *anchor, RunResult *client) {
    RunResult *a = xcalloc((size_t)R, sizeof *a), *c = xcalloc((size_t)R, sizeof *c);
    int fa = 0, fc = 0;
    for (int r = 0; r < R; r++) {
        a[r] = run_raw(url, n, conc, seed_i, max_tokens, model);
        c[r] = run_client(base, n, conc, seed_i, max_tokens, model);
        fa += a[r].failed;
        fc += c[r].failed;
    }
    *anchor = pick_median(a, R);
    *client = pick_median(c, R);
    anchor->failed = fa;
    client->failed = fc;
    run_print(what, conc, "anchor=raw_curl", anchor, 0);
    run_print(what, conc, "client=llm_client", client, anchor->n / anchor->wall);
    free(a);
    free(c);
}

static void bench_stub(int n, int R) {
    struct MHD_Daemon *d = MHD_start_daemon(MHD_USE_AUTO_INTERNAL_THREAD, 0, NULL, NULL, stub_request, NULL,
                                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)1024, MHD_OPTION_END);
    if (!d) die_runtime("bench_llm_client: cannot start the stub server");
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    int port = info ? info->port : 0;
    char base[128], url[160];
    snprintf(base, sizeof base, "http://127.0.0.1:%d/v1", port);
    snprintf(url, sizeof url, "%s/chat/completions", base);
    static const int concs[] = {1, 16, 64};
    for (size_t k = 0; k < sizeof concs / sizeof concs[0]; k++) {
        int conc = concs[k], warm = n / 10 > conc ? n / 10 : conc;
        RunResult w = run_raw(url, warm, conc, 0, 16, "stub");
        free(w.lat);
        w = run_client(base, warm, conc, 0, 16, "stub");
        free(w.lat);
        RunResult a, c;
        compare("stub", base, url, n, conc, 0, 16, "stub", R, &a, &c);
        free(a.lat);
        free(c.lat);
    }
    MHD_stop_daemon(d);
}

static void print_server_side(Server *srv, int n) {
    double *q = xcalloc((size_t)n, sizeof(double)), *e = xcalloc((size_t)n, sizeof(double));
    int got = server_latencies(srv, q, e, n);
    qsort(q, (size_t)got, sizeof(double), cmp_double);
    qsort(e, (size_t)got, sizeof(double), cmp_double);
    printf("    server queue_ms p50=%.2f p99=%.2f engine_ms p50=%.2f p99=%.2f (last %d requests)\n",
           1e3 * percentile(q, got, 50), 1e3 * percentile(q, got, 99), 1e3 * percentile(e, got, 50),
           1e3 * percentile(e, got, 99), got);
    free(q);
    free(e);
}

static void bench_serve(const char *model, int n, int conc, int max_tokens) {
    char err[2048];
    ServerOptions o = {.model_dir = model, .max_batch = 32, .max_queue = n + conc + 1,
                       .kv_tokens = conc * (max_tokens + 128) + 1024};
    Server *srv = server_start(&o, err, sizeof err);
    if (!srv) die_input("bench_llm_client: %s", err);
    char base[128], url[160];
    snprintf(base, sizeof base, "http://127.0.0.1:%d/v1", server_port(srv));
    snprintf(url, sizeof url, "%s/chat/completions", base);
    const char *name = server_model_name(srv);
    RunResult w = run_raw(url, conc, conc, 1, max_tokens, name);
    free(w.lat);
    /* one round each: the server's latency ring then holds exactly the
     * requests of the run printed above it */
    RunResult a = run_raw(url, n, conc, 1, max_tokens, name);
    run_print("serve", conc, "anchor=raw_curl", &a, 0);
    print_server_side(srv, n);
    RunResult c = run_client(base, n, conc, 1, max_tokens, name);
    run_print("serve", conc, "client=llm_client", &c, a.n / a.wall);
    print_server_side(srv, n);
    ServerStats st;
    server_stats(srv, &st);
    printf("    server requests=%llu rejected=%llu mean_batch=%.2f max_batch=%d\n", (unsigned long long)st.requests,
           (unsigned long long)st.rejected,
           st.engine_steps ? (double)st.batched_tokens / (double)st.engine_steps : 0.0, st.max_running);
    free(a.lat);
    free(c.lat);
    server_stop(srv);
}

int main(int argc, char **argv) {
    const char *model = NULL;
    int n = 2000, rounds = 3, n_serve = 64, conc_serve = 16, max_tokens = 16, serve = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--no-serve")) {
            serve = 0;
            continue;
        }
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) die_input("bench_llm_client: %s: missing value (see the usage at the top of bench_llm_client.c)", a);
        if (!strcmp(a, "--model")) model = v;
        else if (!strcmp(a, "--requests")) n = (int)parse_int(a, v, 1, 10000000);
        else if (!strcmp(a, "--rounds")) rounds = (int)parse_int(a, v, 1, 100);
        else if (!strcmp(a, "--serve-requests")) n_serve = (int)parse_int(a, v, 1, 1000000);
        else if (!strcmp(a, "--serve-concurrency")) conc_serve = (int)parse_int(a, v, 1, 1024);
        else if (!strcmp(a, "--max-tokens")) max_tokens = (int)parse_int(a, v, 1, 1 << 20);
        else die_input("bench_llm_client: unknown option '%s'", a);
        i++;
    }
    if (!model) {
        /* the tiny model from the repository root or from a build directory */
        FILE *f = fopen("inputs/tiny_model/config.json", "r");
        model = f ? "inputs/tiny_model" : "../inputs/tiny_model";
        if (f) fclose(f);
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    bench_stub(n, rounds);
    if (serve) bench_serve(model, n_serve, conc_serve, max_tokens);
    curl_global_cleanup();
    return g_failed ? 1 : 0;
}
