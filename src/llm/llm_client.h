/* llm_client.h — an OpenAI-compatible chat-completions client.
 *
 * Many requests are in flight at once from one thread: the client runs on
 * libcurl's multi interface and never blocks unless asked to. The rollout
 * loop submits requests (llm_client_submit) and collects finished ones
 * (llm_client_poll) between its own work; llm_client_complete is the
 * blocking form for callers with nothing else to do.
 *
 * A request is retried with exponential backoff and full jitter after a
 * connection error, a timeout, HTTP 408, 429 or 5xx, or a 200 response that
 * is not a chat completion (malformed JSON, no choices). Retry-After is
 * honored. Other 4xx fail at once. A request that still fails after
 * max_retries retries comes back with ok = false and an error string; the
 * caller marks its episode infrastructure_error (episode_abort with
 * TERM_INFRASTRUCTURE_ERROR), never a policy failure.
 *
 * Each endpoint has its own limit on concurrent transfers and a
 * requests-per-minute token bucket. Retries count against both.
 *
 * The API key is read from the environment variable an endpoint names and
 * sent only as "Authorization: Bearer ...". It never appears in a log, an
 * error string (error bodies that echo it are redacted) or a cache file.
 *
 * With a cache directory, successful responses are stored one file per
 * request (llm_cache.h) and an identical later request is answered from
 * the file without touching the network. See doc/llm_client.md.
 *
 * MPI endpoints (the `local` user simulator, llm/mpi_server.h) carry the
 * same request bodies to a rank of the job that serves the model, and the
 * same response JSON back; submit, poll, complete, retries (the server's
 * statuses are judged like HTTP ones), concurrency limits, statistics and
 * the cache work on them unchanged. Only the thread that initialized MPI
 * may use a client with MPI endpoints (MPI_THREAD_FUNNELED).
 */
#ifndef TAU2_LLM_CLIENT_H
#define TAU2_LLM_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cJSON.h>
#include <mpi.h>

typedef struct {
    const char *base_url;    /* e.g. "https://api.openai.com/v1"; requests go to base_url + "/chat/completions" */
    const char *model;       /* put into every request body as "model" */
    const char *api_key_var; /* environment variable holding the key; NULL or "": send no Authorization */
    double timeout_s;        /* whole attempt, connect to last byte */
    double connect_timeout_s;
    int max_retries;         /* retries after the first attempt (attempts = max_retries + 1 at most) */
    double backoff_base_s;   /* retry n waits uniform(0, min(backoff_max_s, backoff_base_s * 2^(n-1))) */
    double backoff_max_s;
    double retry_after_max_s; /* a server's Retry-After is honored up to this many seconds */
    int max_concurrency;     /* transfers in flight to this endpoint at most */
    double requests_per_minute; /* 0: no limit */
    bool verify_tls;         /* CURLOPT_SSL_VERIFYPEER and VERIFYHOST */
} LlmEndpointConfig;

/* Defaults: timeout 120 s, connect 10 s, 5 retries, backoff 1 s .. 60 s,
 * Retry-After up to 300 s, 16 concurrent, no rate limit, TLS verified.
 * Strings are left NULL. */
void llm_endpoint_defaults(LlmEndpointConfig *cfg);

typedef struct {
    const char *cache_dir; /* NULL or "": no response cache; made by the first entry stored */
    uint64_t seed;         /* backoff jitter draws rng_uniform(seed, request id, attempt) */
} LlmClientOptions;

/* Per-endpoint counters, for metrics. */
typedef struct {
    long submitted;       /* requests submitted */
    long requests;        /* HTTP attempts sent (first tries and retries) */
    long retries;         /* attempts after a request's first */
    long successes;       /* requests answered by the network */
    long failures;        /* requests that failed for good */
    long cache_hits;      /* requests answered from the cache */
    long http_429;        /* 429 responses */
    double latency_sum_s; /* submit to finish, summed over requests that went to the network */
} LlmEndpointStats;

typedef struct {
    long id;             /* llm_client_submit's return value */
    void *tag;           /* the caller's tag, as submitted */
    int endpoint;
    bool ok;
    bool from_cache;
    int attempts;        /* HTTP attempts made (0 for a cache hit) */
    int http_status;     /* of the last attempt; 0 when no response came */
    double latency_s;    /* submit to finish */
    cJSON *message;      /* ok: the assistant message {"role", "content", "tool_calls"?, ...} in OpenAI form */
    char *finish_reason; /* ok: "stop", "tool_calls", "length", ... or NULL */
    cJSON *usage;        /* ok: the response's usage object, or NULL */
    char *error;         /* failed: what went wrong, naming the endpoint; never the key */
} LlmResult;

/* Free a result's members (the struct itself is the caller's). */
void llm_result_free(LlmResult *r);

typedef struct LlmClient LlmClient;

/* Whether url can be an endpoint's base URL: an absolute http:// or
 * https:// URL with a host and, when given, a port in 1..65535, as
 * libcurl's URL parser reads it. Configs check theirs with it at start. */
bool llm_url_is_http(const char *url);

/* A client over n_endpoints HTTP endpoints (configs and strings are
 * copied); endpoints NULL with n_endpoints 0 for a client whose endpoints
 * are all added with llm_client_add_mpi_endpoint. Returns NULL with err
 * filled when a config is invalid or an endpoint's API key variable is
 * unset or empty (the message names the variable). */
LlmClient *llm_client_new(const LlmEndpointConfig *endpoints, int n_endpoints, const LlmClientOptions *opt, char *err,
                          size_t errlen);
/* Add an endpoint served by rank server_rank of comm (llm/mpi_server.h),
 * for the served model name `model`; max_concurrency <= 0: 16. Returns its
 * index (the next one after the HTTP endpoints and earlier MPI ones). The
 * server numbers the messages each rank sends it, so a rank reaches a
 * server rank through one endpoint of one client only (a second endpoint
 * to the same rank and comm is a bug: die_runtime). An attempt has no
 * timeout: the server is a rank of this job. Its cache identity is
 * "mpi://rank<server_rank>" and the model. */
int llm_client_add_mpi_endpoint(LlmClient *c, MPI_Comm comm, int server_rank, const char *model,
                                int max_concurrency);

/* Tell the endpoint's server rank that this client is done: progress until
 * every request to that endpoint has finished (their results wait for the
 * next poll), then send the shutdown message. Every client of a server must
 * call it once, before llm_client_free, or the server never returns.
 * Submitting to the endpoint afterwards is a bug. */
void llm_client_mpi_shutdown(LlmClient *c, int endpoint);

/* Abandon unfinished requests and free everything (before MPI_Finalize
 * when the client has MPI endpoints). */
void llm_client_free(LlmClient *c);

int llm_client_endpoint_count(const LlmClient *c);

/* Queue a chat-completions request to endpoint (0 <= endpoint < count).
 * body is an OpenAI request object (messages, tools, temperature, seed,
 * max_tokens, ...); it is copied, "model" is set from the endpoint and
 * "stream" is removed. A cache hit is queued as finished at once. Returns
 * the request's id (>= 0, increasing). A bad endpoint index or a body that
 * is not an object is a bug: die_runtime. */
long llm_client_submit(LlmClient *c, int endpoint, const cJSON *body, void *tag);

/* Progress transfers for up to wait_s seconds (0: one pass without
 * waiting), returning as soon as something has finished. Moves up to max
 * finished results into out (the caller frees each with llm_result_free)
 * in the order they finished and returns how many. */
int llm_client_poll(LlmClient *c, double wait_s, LlmResult *out, int max);

/* Requests submitted and not yet returned by poll or complete. */
int llm_client_pending(const LlmClient *c);

/* Submit and wait for that one request (others progress meanwhile and wait
 * for a later poll). Returns 0 when it succeeded, -1 when it failed; out
 * is filled in both cases. */
int llm_client_complete(LlmClient *c, int endpoint, const cJSON *body, LlmResult *out);

void llm_client_stats(const LlmClient *c, int endpoint, LlmEndpointStats *out);

#endif
