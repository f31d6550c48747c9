/* test_local_user.c — the `local` user-simulator backend: OpenAI requests
 * over MPI (llm/mpi_server.h, the MPI endpoints of llm/llm_client.h).
 * Run under mpiexec with any number of ranks; returns nonzero on any
 * rank's failure.
 *
 * With two ranks or more the last rank serves inputs/tiny_model over
 * MPI_COMM_WORLD and every other rank is a client that submits a handful of
 * requests at once (plain chat, chat with tools, a bad body, a short
 * max_tokens, and a repeat of the first), polls until all are back, checks
 * them and shuts down. Rank 0 also runs the HTTP server on loopback and
 * sends the same requests there through an HTTP endpoint of the same
 * client: the replies must match (content and tool calls; tool-call ids
 * and completion ids are per server). Every client's seeded reply must be
 * the same.
 *
 * On one rank there is nobody to serve: the message framing, the argument
 * checks, and the single-threaded engine path the MPI loop drives
 * (server_open, server_chat_submit, server_engine_pass) against the HTTP
 * server's reply for the same request.
 *
 * The tiny model has random weights: its text is noise, so the checks are
 * on protocol, equality and determinism, never on what it says.
 */
#include <ftw.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mpi.h>

#include "mpi_check.h"
#include "core/error.h"
#include "core/json.h"
#include "llm/llm_client.h"
#include "llm/mpi_server.h"
#include "llm/openai_req.h"
#include "llm/server.h"

#define MODEL_DIR TAU2_SOURCE_DIR "/inputs/tiny_model"
#define MODEL_NAME "tiny_model"

#define TOOLS                                                                                                   \
    "[{\"type\": \"function\", \"function\": {\"name\": \"find_user_id_by_email\", \"description\": \"Find a " \
    "user\", \"parameters\": {\"type\": \"object\", \"properties\": {\"email\": {\"type\": \"string\"}}, "      \
    "\"required\": [\"email\"]}}}]"

enum { REQ_PLAIN, REQ_TOOLS, REQ_BAD, REQ_SHORT, REQ_REPEAT, N_REQ };

static const char *const g_bodies[N_REQ] = {
    [REQ_PLAIN] = "{\"messages\": [{\"role\": \"system\", \"content\": \"You are a customer.\"}, {\"role\": "
                  "\"user\", \"content\": \"Hi! How can I help you today?\"}], \"max_tokens\": 12, \"seed\": 7}",
    [REQ_TOOLS] = "{\"messages\": [{\"role\": \"user\", \"content\": \"Who is mia_li_3668?\"}], \"tools\": " TOOLS
                  ", \"max_tokens\": 10, \"seed\": 11, \"temperature\": 0.8}",
    [REQ_BAD] = "{\"messages\": 5}",
    [REQ_SHORT] = "{\"messages\": [{\"role\": \"user\", \"content\": \"Tell me everything.\"}], \"max_tokens\": 3, "
                  "\"seed\": 5, \"temperature\": 1.2}",
    [REQ_REPEAT] = "{\"messages\": [{\"role\": \"system\", \"content\": \"You are a customer.\"}, {\"role\": "
                   "\"user\", \"content\": \"Hi! How can I help you today?\"}], \"max_tokens\": 12, \"seed\": 7}",
};

static ServerOptions server_options(void) {
    ServerOptions o;
    memset(&o, 0, sizeof o);
    o.model_dir = MODEL_DIR;
    o.served_model_name = MODEL_NAME;
    o.max_batch = 8;
    o.kv_tokens = 8192;
    o.default_max_tokens = 16;
    return o;
}

static cJSON *parse_body(const char *s) {
    cJSON *j = cJSON_Parse(s);
    if (!j) die_runtime("test body does not parse: %s", s);
    return j;
}

/* The message without what each server makes up on its own (tool-call ids). */
static cJSON *message_sans_ids(const cJSON *m) {
    cJSON *d = cJSON_Duplicate(m, 1);
    cJSON *calls = cJSON_GetObjectItemCaseSensitive(d, "tool_calls");
    if (cJSON_IsArray(calls)) {
        cJSON *c;
        cJSON_ArrayForEach(c, calls) cJSON_DeleteItemFromObjectCaseSensitive(c, "id");
    }
    return d;
}

static bool same_message(const cJSON *a, const cJSON *b) {
    if (!a || !b) return false;
    cJSON *x = message_sans_ids(a), *y = message_sans_ids(b);
    bool eq = cJSON_Compare(x, y, 1);
    if (!eq) {
        char *sx = cJSON_PrintUnformatted(x), *sy = cJSON_PrintUnformatted(y);
        fprintf(stderr, "rank %d: messages differ:\n  %s\n  %s\n", g_rank, sx, sy);
        free(sx);
        free(sy);
    }
    cJSON_Delete(x);
    cJSON_Delete(y);
    return eq;
}

static uint64_t fnv1a(const char *s) {
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static int usage_int(const LlmResult *r, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(r->usage, key);
    return cJSON_IsNumber(v) ? v->valueint : -1;
}

/* The checks every reply to g_bodies must pass, whichever path it came by. */
static void check_reply(int which, const LlmResult *r) {
    if (which == REQ_BAD) {
        CHECK(!r->ok);
        CHECK(r->http_status == 400);
        CHECK(r->attempts == 1); /* a 400 is not retried */
        CHECK(r->error && strstr(r->error, "messages"));
        return;
    }
    CHECK(r->ok);
    if (!r->ok) {
        fprintf(stderr, "rank %d: request %d failed: %s\n", g_rank, which, r->error ? r->error : "?");
        return;
    }
    CHECK(r->http_status == 200);
    CHECK(cJSON_IsObject(r->message));
    CHECK(json_get_str(r->message, "role") && !strcmp(json_get_str(r->message, "role"), "assistant"));
    CHECK(r->finish_reason != NULL);
    int completion = usage_int(r, "completion_tokens");
    CHECK(completion >= 1);
    CHECK(usage_int(r, "prompt_tokens") > 0);
    if (which == REQ_SHORT) {
        CHECK(completion <= 3);
        if (completion == 3 && r->finish_reason) CHECK(!strcmp(r->finish_reason, "length"));
    } else {
        CHECK(completion <= (which == REQ_TOOLS ? 10 : 12));
    }
}

/* ---------------------------------------------------------------- one rank */

static void check_framing(void) {
    size_t len = 0;
    char *m = openai_mpi_reply_pack(200, "{\"a\": 1}", &len);
    CHECK(len == 4 + strlen("{\"a\": 1}"));
    CHECK(!memcmp(m, "200\n{", 5));
    int st = 0;
    const char *json = NULL;
    size_t jl = 0;
    CHECK(openai_mpi_reply_unpack(m, len, &st, &json, &jl) == 0);
    CHECK(st == 200 && jl == strlen("{\"a\": 1}") && !memcmp(json, "{\"a\": 1}", jl));
    free(m);
    m = openai_mpi_reply_pack(503, "{}", &len);
    CHECK(openai_mpi_reply_unpack(m, len, &st, &json, &jl) == 0 && st == 503 && jl == 2);
    free(m);
    /* not a status line */
    CHECK(openai_mpi_reply_unpack("{\"choices\": []}", 15, &st, &json, &jl) == -1);
    CHECK(openai_mpi_reply_unpack("20\n{}", 5, &st, &json, &jl) == -1);
    CHECK(openai_mpi_reply_unpack("2x0\n{}", 6, &st, &json, &jl) == -1);
    CHECK(openai_mpi_reply_unpack("099\n{}", 6, &st, &json, &jl) == -1);
    CHECK(openai_mpi_reply_unpack("200", 3, &st, &json, &jl) == -1);
    CHECK(openai_mpi_reply_unpack(NULL, 0, &st, &json, &jl) == -1);
    /* reply tags: distinct over a window, inside the range, wrapping */
    CHECK(openai_mpi_reply_tag(0) == OPENAI_MPI_TAG_REPLY_BASE);
    CHECK(openai_mpi_reply_tag(1) == OPENAI_MPI_TAG_REPLY_BASE + 1);
    CHECK(openai_mpi_reply_tag(OPENAI_MPI_REPLY_TAGS) == OPENAI_MPI_TAG_REPLY_BASE);
    CHECK(openai_mpi_reply_tag(UINT64_MAX) < OPENAI_MPI_TAG_REPLY_BASE + OPENAI_MPI_REPLY_TAGS);
    CHECK(OPENAI_MPI_TAG_REQUEST < OPENAI_MPI_TAG_REPLY_BASE);
    int *ub = NULL, flag = 0;
    MPI_Comm_get_attr(MPI_COMM_WORLD, MPI_TAG_UB, &ub, &flag);
    CHECK(flag && *ub >= OPENAI_MPI_TAG_REPLY_BASE + OPENAI_MPI_REPLY_TAGS - 1);
}

/* The engine path of the MPI server, driven from this thread, against the
 * HTTP server (through the client) for the same requests. */
static void check_engine_path_against_http(void) {
    char err[1024];
    ServerOptions o = server_options();
    Server *http = server_start(&o, err, sizeof err);
    CHECK(http != NULL);
    Server *s = server_open(&o, NULL, NULL, NULL, err, sizeof err);
    CHECK(s != NULL);
    if (!http || !s) {
        fprintf(stderr, "rank %d: %s\n", g_rank, err);
        server_stop(http);
        server_stop(s);
        return;
    }
    /* A loop over no clients returns at once; a client count the
     * communicator cannot hold is refused. */
    CHECK(server_mpi_serve(s, MPI_COMM_SELF, 0, err, sizeof err) == 0);
    CHECK(server_mpi_serve(s, MPI_COMM_SELF, 1, err, sizeof err) == -1 && strstr(err, "clients"));
    ServerOptions bad = o;
    bad.model_dir = TAU2_SOURCE_DIR "/no/such/model";
    CHECK(server_mpi_run(&bad, MPI_COMM_SELF, 0, err, sizeof err) == -1);

    ServerChat *chats[N_REQ];
    for (int i = 0; i < N_REQ; i++) chats[i] = server_chat_submit(s, g_bodies[i], strlen(g_bodies[i]));
    CHECK(server_chat_done(s, chats[REQ_BAD])); /* refused before the engine */
    int passes = 0;
    while (server_engine_pass(s) > 0 && passes < 10000) passes++;
    CHECK(passes > 0 && passes < 10000);
    ServerStats st;
    server_stats(s, &st);
    CHECK(st.max_running >= 2); /* the four good requests were batched */

    LlmEndpointConfig ep;
    llm_endpoint_defaults(&ep);
    char base[128];
    snprintf(base, sizeof base, "http://127.0.0.1:%d/v1", server_port(http));
    ep.base_url = base;
    ep.model = MODEL_NAME;
    ep.max_retries = 0;
    LlmClient *c = llm_client_new(&ep, 1, NULL, err, sizeof err);
    CHECK(c != NULL);
    for (int i = 0; i < N_REQ && c; i++) {
        CHECK(server_chat_done(s, chats[i]));
        int status = 0;
        char *json = server_chat_finish(s, chats[i], &status);
        cJSON *body = parse_body(g_bodies[i]);
        LlmResult r;
        llm_client_complete(c, 0, body, &r);
        check_reply(i, &r);
        CHECK(status == (i == REQ_BAD ? 400 : 200));
        cJSON *j = cJSON_Parse(json);
        CHECK(j != NULL);
        if (i == REQ_BAD) {
            CHECK(json_get_str(json_get(j, "error"), "message") != NULL);
            const char *param = json_get_str(json_get(j, "error"), "param");
            CHECK(param && !strcmp(param, "messages"));
        } else if (r.ok) {
            const cJSON *choice = cJSON_GetArrayItem(json_get(j, "choices"), 0);
            CHECK(same_message(json_get(choice, "message"), r.message));
            CHECK(json_get_str(choice, "finish_reason") && r.finish_reason &&
                  !strcmp(json_get_str(choice, "finish_reason"), r.finish_reason));
        }
        cJSON_Delete(j);
        cJSON_Delete(body);
        free(json);
        llm_result_free(&r);
    }
    llm_client_free(c);
    server_stop(s);
    server_stop(http);

    /* A client with no endpoints yet is for MPI endpoints added later; an
     * array of none is still a configuration error. */
    c = llm_client_new(NULL, 0, NULL, err, sizeof err);
    CHECK(c != NULL && llm_client_endpoint_count(c) == 0 && llm_client_pending(c) == 0);
    llm_client_free(c);
    CHECK(llm_client_new(&ep, 0, NULL, err, sizeof err) == NULL);
}

/* ---------------------------------------------------------------- server rank */

static void run_server(int n_clients) {
    char err[1024];
    ServerOptions o = server_options();
    Server *s = server_open(&o, NULL, NULL, NULL, err, sizeof err);
    CHECK(s != NULL);
    if (!s) {
        fprintf(stderr, "rank %d: %s\n", g_rank, err);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    int rc = server_mpi_serve(s, MPI_COMM_WORLD, n_clients, err, sizeof err);
    CHECK(rc == 0);
    ServerStats st;
    server_stats(s, &st);
    /* Every client: four good requests and two bad ones (rank 0's cache
     * hit never reaches the server). */
    CHECK(st.requests == (uint64_t)(4 * n_clients));
    CHECK(st.rejected == (uint64_t)(2 * n_clients));
    CHECK(st.max_running >= 2);
    CHECK(st.running == 0 && st.queued == 0);
    server_stop(s);
}

/* ---------------------------------------------------------------- client ranks */

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Returns the fingerprint of the seeded plain reply, for the cross-client check. */
static uint64_t run_client(int server_rank) {
    char err[1024];
    bool http_too = g_rank == 0;
    Server *http = NULL;
    LlmClient *c;
    char cache_dir[] = "/tmp/tau2_local_user_XXXXXX";
    int ep_http = -1;
    if (http_too) {
        ServerOptions o = server_options();
        http = server_start(&o, err, sizeof err);
        CHECK(http != NULL);
        if (!http) MPI_Abort(MPI_COMM_WORLD, 1);
        CHECK(mkdtemp(cache_dir) != NULL);
        LlmEndpointConfig ep;
        llm_endpoint_defaults(&ep);
        char base[128];
        snprintf(base, sizeof base, "http://127.0.0.1:%d/v1", server_port(http));
        ep.base_url = base;
        ep.model = MODEL_NAME;
        LlmClientOptions lo = {.cache_dir = cache_dir, .seed = 1};
        c = llm_client_new(&ep, 1, &lo, err, sizeof err);
        ep_http = 0;
    } else {
        LlmClientOptions lo = {.cache_dir = NULL, .seed = 1};
        c = llm_client_new(NULL, 0, &lo, err, sizeof err);
    }
    CHECK(c != NULL);
    if (!c) MPI_Abort(MPI_COMM_WORLD, 1);
    int ep = llm_client_add_mpi_endpoint(c, MPI_COMM_WORLD, server_rank, MODEL_NAME, 8);
    CHECK(ep == (http_too ? 1 : 0));
    CHECK(llm_client_endpoint_count(c) == ep + 1);

    /* Everything at once: the server batches across requests and clients. */
    cJSON *bodies[N_REQ];
    long ids[N_REQ];
    for (int i = 0; i < N_REQ; i++) {
        bodies[i] = parse_body(g_bodies[i]);
        ids[i] = llm_client_submit(c, ep, bodies[i], (void *)(intptr_t)(i + 1));
    }
    CHECK(llm_client_pending(c) == N_REQ);
    LlmResult res[N_REQ];
    memset(res, 0, sizeof res);
    bool have[N_REQ] = {false};
    int got = 0, polls = 0;
    while (got < N_REQ && polls < 100000) {
        LlmResult batch[4];
        int k = llm_client_poll(c, 0.2, batch, 4);
        polls++;
        for (int i = 0; i < k; i++) {
            int which = (int)(intptr_t)batch[i].tag - 1;
            CHECK(which >= 0 && which < N_REQ && !have[which]);
            if (which < 0 || which >= N_REQ || have[which]) {
                llm_result_free(&batch[i]);
                continue;
            }
            CHECK(batch[i].id == ids[which] && batch[i].endpoint == ep && !batch[i].from_cache);
            res[which] = batch[i];
            have[which] = true;
            got++;
        }
    }
    CHECK(got == N_REQ);
    CHECK(llm_client_pending(c) == 0);
    for (int i = 0; i < N_REQ; i++) {
        if (have[i]) check_reply(i, &res[i]);
    }
    /* The same seeded request twice in one batch: the same completion. */
    CHECK(res[REQ_PLAIN].ok && res[REQ_REPEAT].ok && same_message(res[REQ_PLAIN].message, res[REQ_REPEAT].message));
    LlmEndpointStats es;
    llm_client_stats(c, ep, &es);
    CHECK(es.submitted == N_REQ && es.requests == N_REQ && es.retries == 0);
    CHECK(es.successes == N_REQ - 1 && es.failures == 1 && es.cache_hits == 0);

    if (http_too) {
        /* The HTTP server answers the same requests the same way. Its
         * cache entries (written just now for the MPI replies) must not
         * answer for it: the endpoint is part of the key. */
        for (int i = 0; i < N_REQ; i++) {
            if (i == REQ_REPEAT) continue;
            LlmResult h;
            llm_client_complete(c, ep_http, bodies[i], &h);
            CHECK(!h.from_cache);
            check_reply(i, &h);
            if (i == REQ_BAD) {
                CHECK(h.http_status == res[i].http_status);
            } else if (h.ok && res[i].ok) {
                CHECK(same_message(h.message, res[i].message));
                CHECK(h.finish_reason && res[i].finish_reason && !strcmp(h.finish_reason, res[i].finish_reason));
                CHECK(usage_int(&h, "completion_tokens") == usage_int(&res[i], "completion_tokens"));
                CHECK(usage_int(&h, "prompt_tokens") == usage_int(&res[i], "prompt_tokens"));
            }
            llm_result_free(&h);
        }
        /* ... and the MPI endpoint's own entry answers an identical request. */
        LlmResult again;
        CHECK(llm_client_complete(c, ep, bodies[REQ_TOOLS], &again) == 0);
        CHECK(again.from_cache && again.attempts == 0);
        CHECK(same_message(again.message, res[REQ_TOOLS].message));
        llm_result_free(&again);
    }

    const char *content = res[REQ_PLAIN].ok ? json_get_str(res[REQ_PLAIN].message, "content") : NULL;
    uint64_t fp = res[REQ_PLAIN].ok ? fnv1a(content ? content : "(null)") : 0;
    /* A request left in flight is finished before the shutdown goes out;
     * its result waits for the next poll. */
    llm_client_submit(c, ep, bodies[REQ_BAD], NULL);
    llm_client_mpi_shutdown(c, ep);
    llm_client_mpi_shutdown(c, ep); /* once only */
    LlmResult last;
    CHECK(llm_client_poll(c, 0, &last, 1) == 1);
    CHECK(!last.ok && last.http_status == 400);
    llm_result_free(&last);

    for (int i = 0; i < N_REQ; i++) {
        llm_result_free(&res[i]);
        cJSON_Delete(bodies[i]);
    }
    llm_client_free(c);
    server_stop(http);
    if (http_too) nftw(cache_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return fp;
}

int main(int argc, char **argv) {
    int provided = 0;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
    int wr, ws;
    MPI_Comm_rank(MPI_COMM_WORLD, &wr);
    MPI_Comm_size(MPI_COMM_WORLD, &ws);
    g_rank = wr;

    if (ws == 1) {
        check_framing();
        check_engine_path_against_http();
    } else {
        int server = ws - 1;
        uint64_t fp = 0;
        if (wr == server) run_server(ws - 1);
        else fp = run_client(server);
        /* Every client got the same seeded completion. */
        uint64_t *all = xcalloc((size_t)ws, sizeof *all);
        MPI_Allgather(&fp, 1, MPI_UINT64_T, all, 1, MPI_UINT64_T, MPI_COMM_WORLD);
        for (int i = 0; i < server; i++) CHECK(all[i] != 0 && all[i] == all[0]);
        free(all);
    }

    int fail = g_fail;
    MPI_Allreduce(MPI_IN_PLACE, &fail, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (wr == 0) printf("test_local_user: %d ranks: %s\n", ws, fail ? "FAILED" : "ok");
    MPI_Finalize();
    return fail ? 1 : 0;
}
