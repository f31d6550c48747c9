/* bench_serve.c — the OpenAI-compatible server on loopback: requests/s and
 * latency percentiles, client side (wall per request) and server side
 * (queue wait, time in the engine).
 *
 *   bench_serve [--model DIR] [--requests N] [--concurrency C] [--max-tokens M]
 *               [--max-batch B] [--url http://HOST:PORT]
 *
 * The server runs in this process (llm/server.h) unless --url names one
 * already running (then only client numbers are printed). The client is
 * one thread on libcurl's multi interface keeping C requests in flight;
 * request i has seed i and asks for exactly max_tokens tokens unless the
 * model stops first. Output:
 *   serve requests=64 concurrency=16 max_tokens=32 wall_s=1.23 req_s=52.0 completion_tok_s=1660.1
 *   client latency_ms p50=... p99=...
 *   server queue_ms p50=... p99=... engine_ms p50=... p99=... mean_batch=... max_batch=...
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/error.h"
#include "core/json.h"
#include "core/sbuf.h"
#include "llm/server.h"

#include "bench_util.h"

typedef struct {
    CURL *easy;
    struct curl_slist *headers;
    char *body;
    SBuf out;
    double t0;
} Flight;

static void flight_start(CURLM *multi, Flight *f, const char *url, int i, int max_tokens) {
    char body[512];
    snprintf(body, sizeof body,
             "{\"model\": \"bench\", \"messages\": [{\"role\": \"system\", \"content\": \"You are a customer.\"},"
             " {\"role\": \"user\", \"content\": \"Request %d: I want to change my flight.\"}],"
             " \"max_tokens\": %d, \"seed\": %d, \"temperature\": 1.0}",
             i, max_tokens, i);
    f->body = xstrdup(body);
    sbuf_init(&f->out);
    f->easy = curl_easy_init();
    f->headers = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(f->easy, CURLOPT_URL, url);
    curl_easy_setopt(f->easy, CURLOPT_HTTPHEADER, f->headers);
    curl_easy_setopt(f->easy, CURLOPT_POSTFIELDS, f->body);
    curl_easy_setopt(f->easy, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(f->easy, CURLOPT_WRITEDATA, &f->out);
    curl_easy_setopt(f->easy, CURLOPT_PRIVATE, f);
    curl_easy_setopt(f->easy, CURLOPT_TIMEOUT, 600L);
    f->t0 = now();
    curl_multi_add_handle(multi, f->easy);
}

static void flight_end(CURLM *multi, Flight *f) {
    curl_multi_remove_handle(multi, f->easy);
    curl_easy_cleanup(f->easy);
    curl_slist_free_all(f->headers);
    free(f->body);
    sbuf_free(&f->out);
    free(f);
}

static long parse_int(const char *opt, const char *v, long lo, long hi) {
    char *end;
    long n = strtol(v, &end, 10);
    if (end == v || *end || n < lo || n > hi) die_input("bench_serve: %s: expected an integer in [%ld, %ld]", opt, lo, hi);
    return n;
}

int main(int argc, char **argv) {
    const char *model = NULL, *url_base = NULL;
    int n_req = 64, conc = 16, max_tokens = 32, max_batch = 32;
    for (int i = 1; i < argc; i += 2) { /* option, value */
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) die_input("bench_serve: %s: missing value (see the usage at the top of bench_serve.c)", a);
        if (!strcmp(a, "--model")) model = v;
        else if (!strcmp(a, "--url")) url_base = v;
        else if (!strcmp(a, "--requests")) n_req = (int)parse_int(a, v, 1, 1000000);
        else if (!strcmp(a, "--concurrency")) conc = (int)parse_int(a, v, 1, 4096);
        else if (!strcmp(a, "--max-tokens")) max_tokens = (int)parse_int(a, v, 1, 1 << 20);
        else if (!strcmp(a, "--max-batch")) max_batch = (int)parse_int(a, v, 1, 4096);
        else die_input("bench_serve: unknown option '%s'", a);
    }
    if (!model && !url_base) {
        /* the tiny model from the repository root or from a build directory */
        FILE *f = fopen("inputs/tiny_model/config.json", "r");
        model = f ? "inputs/tiny_model" : "../inputs/tiny_model";
        if (f) fclose(f);
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    Server *srv = NULL;
    char url[512], err[2048];
    if (url_base) {
        snprintf(url, sizeof url, "%s/v1/chat/completions", url_base);
    } else {
        ServerOptions o = {.model_dir = model, .max_batch = max_batch, .max_queue = n_req + 1,
                           .kv_tokens = conc * (max_tokens + 128) + 1024};
        srv = server_start(&o, err, sizeof err);
        if (!srv) die_input("bench_serve: %s", err);
        snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/chat/completions", server_port(srv));
    }

    CURLM *multi = curl_multi_init();
    curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)conc);
    double *lat = xcalloc((size_t)n_req, sizeof(double));
    int started = 0, done = 0, failed = 0;
    long completion_tokens = 0;
    double t_start = now();
    while (done < n_req) {
        while (started < n_req && started - done < conc) flight_start(multi, xcalloc(1, sizeof(Flight)), url, started++, max_tokens);
        int running;
        curl_multi_perform(multi, &running);
        Flight *f;
        CURLcode result;
        long status;
        while ((f = bench_next_done(multi, &result, &status))) {
            lat[done] = now() - f->t0;
            if (result != CURLE_OK || status != 200) {
                if (failed++ < 3) {
                    fprintf(stderr, "bench_serve: request failed: %s, HTTP %ld: %.200s\n",
                            curl_easy_strerror(result), status, f->out.data ? f->out.data : "");
                }
            } else {
                char perr[256];
                cJSON *r = json_parse(f->out.data, f->out.len, "response", perr, sizeof perr);
                const cJSON *ct = json_get(json_get(r, "usage"), "completion_tokens");
                if (cJSON_IsNumber(ct)) completion_tokens += (long)ct->valuedouble;
                cJSON_Delete(r);
            }
            done++;
            flight_end(multi, f);
        }
        if (done < n_req) curl_multi_poll(multi, NULL, 0, 100, NULL);
    }
    double wall = now() - t_start;
    curl_multi_cleanup(multi);

    qsort(lat, (size_t)n_req, sizeof(double), cmp_double);
    printf("serve requests=%d concurrency=%d max_tokens=%d failed=%d wall_s=%.3f req_s=%.2f completion_tok_s=%.1f\n",
           n_req, conc, max_tokens, failed, wall, n_req / wall, completion_tokens / wall);
    printf("client latency_ms p50=%.2f p99=%.2f\n", 1e3 * percentile(lat, n_req, 50), 1e3 * percentile(lat, n_req, 99));
    if (srv) {
        double *q = xcalloc((size_t)n_req, sizeof(double)), *e = xcalloc((size_t)n_req, sizeof(double));
        int n = server_latencies(srv, q, e, n_req);
        qsort(q, (size_t)n, sizeof(double), cmp_double);
        qsort(e, (size_t)n, sizeof(double), cmp_double);
        ServerStats st;
        server_stats(srv, &st);
        printf("server queue_ms p50=%.2f p99=%.2f engine_ms p50=%.2f p99=%.2f mean_batch=%.2f max_batch=%d\n",
               1e3 * percentile(q, n, 50), 1e3 * percentile(q, n, 99), 1e3 * percentile(e, n, 50),
               1e3 * percentile(e, n, 99), st.engine_steps ? (double)st.batched_tokens / (double)st.engine_steps : 0.0,
               st.max_running);
        free(q);
        free(e);
        server_stop(srv);
    }
    free(lat);
    curl_global_cleanup();
    return failed ? 1 : 0;
}
