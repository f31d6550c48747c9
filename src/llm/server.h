/* server.h — an OpenAI-compatible HTTP server over the CPU inference engine.
 *
 *   POST /v1/chat/completions   chat with tools (llm/openai_req.h lists the fields)
 *   GET  /v1/models             the one served model
 *   GET  /health                {"status": "ok"} while the server runs
 *
 * Threads. libmicrohttpd runs a thread per connection. A handler parses the
 * body, renders the conversation with the model directory's chat template
 * and tokenizes it (under one lock: the template interpreter and the
 * tokenizer handle are not shared between threads), then queues the request
 * and waits on a condition variable. One engine thread owns the model and
 * its InferGen: it admits queued requests between decode steps (continuous
 * batching) and steps every running one together, then hands each finished
 * request back to its handler, which decodes the tokens and answers.
 *
 * Admission. A request reserves KV-cache blocks for its prompt plus its
 * max_tokens when it is admitted, so a decode step never runs out of cache
 * and nothing is ever evicted; requests wait in the queue until their
 * reservation fits and a batch slot is free. A request whose prompt alone
 * does not fit gets 400 (context_length_exceeded); max_tokens beyond what
 * fits is cut to it (finish_reason "length"). A full queue answers 503.
 *
 * Determinism. Each token is drawn with rng_uniform(seed, 0, position) and
 * the engine's logits do not depend on which requests share a step, so a
 * request with a seed gives the same completion whatever else is running.
 * Without a seed the server picks one per request.
 *
 * Front ends. The HTTP daemon is one front end over the engine; the MPI
 * server (llm/mpi_server.h) is another. Both go through the same calls:
 * server_chat_submit parses, renders and queues a request body,
 * server_chat_finish turns the finished request into the reply JSON, and
 * the same engine turn (admission, one step, collection) runs on the
 * engine thread for HTTP and from server_engine_pass for a front end that
 * drives the engine from its own, single thread.
 */
#ifndef TAU2_LLM_SERVER_H
#define TAU2_LLM_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model/qwen3.h"
#include "text/chat.h"
#include "text/tokenizer.h"

typedef struct {
    const char *model_dir;         /* Hugging Face Qwen3 directory (config.json, model.safetensors,
                                      tokenizer.json, tokenizer_config.json); required */
    const char *served_model_name; /* NULL: the directory's base name */
    const char *host;              /* address to bind; NULL: "127.0.0.1" */
    int port;                      /* 0: any free port (server_port says which) */
    int max_batch;                 /* requests decoded together at most; 0: 32 */
    int kv_tokens;                 /* KV-cache budget in tokens; 0: 32768 */
    int chunked_prefill_size;      /* prompt tokens one engine step feeds at most (infer_gen_set_step_tokens);
                                      0: INFER_DEFAULT_STEP_TOKENS, -1: no limit */
    int max_queue;                 /* requests waiting for admission at most; 0: 256 */
    int default_max_tokens;        /* when a request gives none; 0: 2048 */
    size_t max_body_bytes;         /* request bodies above it get 413; 0: 8 MiB */
    int max_connections;           /* concurrent connections; 0: 512 */
    bool on_gpu;                   /* the GPU inference engine (model/infer_gpu.h, CUDA build) on device 0 */
} ServerOptions;

typedef struct Server Server;

/* Load the model, start the engine thread and the HTTP daemon. Returns the
 * running server, or NULL with err (a model directory that does not load,
 * a bad option, an address that cannot be bound). */
Server *server_start(const ServerOptions *opt, char *err, size_t errlen);
/* The KV-cache budget in tokens a server with opt will take (opt->kv_tokens,
 * or the default): what a memory plan counts for it before it starts. */
int server_kv_tokens(const ServerOptions *opt);

/* Stop accepting connections, answer requests still queued or running with
 * 503, join every thread and free everything. NULL is fine. */
void server_stop(Server *s);

/* The engine without HTTP and without an engine thread, for a front end
 * that runs it from one thread (llm/mpi_server.h). With model NULL the
 * model, tokenizer and chat template are loaded from opt->model_dir; else
 * all three are the caller's, borrowed until server_stop (model_dir may
 * then be NULL; it only names the model). Network options are ignored.
 * Free with server_stop after every request is finished. */
Server *server_open(const ServerOptions *opt, const Qwen3 *model, Tokenizer *tok, const ChatTemplate *ct, char *err,
                    size_t errlen);

/* One chat request in the engine, owned by its front end. */
typedef struct ServerChat ServerChat;

/* Parse, render and tokenize a request body and queue it. Never NULL: a
 * request that cannot run (bad body, prompt too long, queue full) comes
 * back already done, carrying its OpenAI error. */
ServerChat *server_chat_submit(Server *s, const char *body, size_t len);
bool server_chat_done(Server *s, const ServerChat *chat);
/* The reply to a done request: the response JSON (a new string; a
 * chat.completion, or an OpenAI error object) and its HTTP status in
 * *status. Frees chat. */
char *server_chat_finish(Server *s, ServerChat *chat, int *status);

/* For servers from server_open: one engine turn (admit what fits, step
 * every running request once, mark the finished ones done). Returns the
 * requests still queued or running. */
int server_engine_pass(Server *s);

int server_port(const Server *s);
const char *server_host(const Server *s);
const char *server_model_name(const Server *s);

typedef struct {
    uint64_t requests;          /* chat requests answered with 200 */
    uint64_t rejected;          /* answered with an error status */
    uint64_t prompt_tokens;
    uint64_t completion_tokens;
    uint64_t engine_steps;      /* infer_gen_step calls */
    uint64_t batched_tokens;    /* sum over steps of the requests in each step */
    int max_running;            /* most requests in one step */
    int running;                /* now */
    int queued;                 /* now */
} ServerStats;

void server_stats(Server *s, ServerStats *out);

/* Server-side latencies of the most recent completed requests (at most
 * SERVER_LATENCY_RING), in seconds: queue is enqueue → admission, engine
 * is admission → last token. Either array may be NULL. Returns how many
 * were written (at most max). */
#define SERVER_LATENCY_RING 65536
int server_latencies(Server *s, double *queue, double *engine, int max);

#endif
