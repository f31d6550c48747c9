/* openai_req.h — the OpenAI chat-completions wire format, server side:
 * parse a request body into what the engine needs, and build the JSON the
 * server answers with (completions, model lists, errors).
 *
 * Kept apart from the HTTP server so that the parser, which sees untrusted
 * bytes, can be fuzzed on its own (tests/fuzz/fuzz_openai_request.c).
 *
 * Accepted request fields:
 *   model                  any string (the server has one model; not checked)
 *   messages               roles system, user, assistant, tool (and developer,
 *                          read as system); content a string, null, or a list
 *                          of {"type": "text", "text": ...} parts; assistant
 *                          tool_calls in OpenAI form (arguments a JSON
 *                          string); tool messages' tool_call_id
 *   tools                  [{"type": "function", "function": {"name", ...}}]
 *   tool_choice            "auto" (default) or "none"
 *   temperature            [0, 2], default 1; 0 is greedy
 *   top_p                  (0, 1], default 1
 *   top_k                  extension (vLLM, SGLang): >= 0, or -1 for off
 *   max_tokens, max_completion_tokens   >= 1
 *   seed                   an integer
 *   stop                   a string or a list of up to OPENAI_MAX_STOP strings
 *   n                      1 only
 *   stream                 false only
 *   chat_template_kwargs   extension (vLLM): an object of template variables,
 *                          e.g. {"enable_thinking": false}
 * Other fields are ignored, as vLLM ignores them, except that the ones this
 * server knows but does not implement (logprobs, penalties, ...) are
 * refused when they ask for something other than their default.
 */
#ifndef TAU2_LLM_OPENAI_REQ_H
#define TAU2_LLM_OPENAI_REQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cJSON.h>

#define OPENAI_MAX_STOP 16

/* An error as OpenAI reports it: HTTP status and the "error" object. */
typedef struct {
    int status;        /* 400, 404, 405, 413, 500, 503 */
    char type[48];     /* "invalid_request_error", "server_error", ... */
    char message[768];
    char param[128];   /* "" for null */
    char code[64];     /* "" for null */
} OpenAIError;

/* Fill e (status 400 and type "invalid_request_error" unless the status
 * says otherwise). param and code may be NULL. Returns -1 so parsers can
 * `return openai_error_set(...)`. */
int openai_error_set(OpenAIError *e, int status, const char *param, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* {"error": {"message", "type", "param", "code"}} as a new string. */
char *openai_error_json(const OpenAIError *e);

/* A parsed chat-completions request. */
typedef struct {
    cJSON *messages;         /* template form (text/chat.h), owned */
    cJSON *tools;            /* OpenAI tool schemas, or NULL; owned */
    cJSON *template_kwargs;  /* object, or NULL; owned */
    char *model;             /* as requested, or NULL */
    bool parse_tool_calls;   /* false for tool_choice "none" */
    float temperature;
    float top_p;
    int top_k;               /* 0: off */
    int max_tokens;          /* 0: the server's default */
    bool has_seed;
    uint64_t seed;
    char **stop;             /* (n_stop) non-empty strings, owned */
    int n_stop;
} OpenAIChatRequest;

/* Parse len bytes of a request body. Returns 0, or -1 with err filled
 * (status 400, param naming the field: "messages[2].tool_calls[0].function.arguments").
 * On error *out holds nothing to free. */
int openai_chat_request_parse(const char *body, size_t len, OpenAIChatRequest *out, OpenAIError *err);
void openai_chat_request_free(OpenAIChatRequest *r);

/* The assistant message for len bytes of generated text (stop tokens
 * already removed). When parse_tool_calls, <tool_call> blocks become OpenAI
 * tool_calls ({"id", "type": "function", "function": {"name", "arguments":
 * a JSON string}}) with ids derived from id_seed, and leave the content;
 * content is null when nothing but whitespace is left. A turn with a
 * malformed block is returned as plain text, as vLLM's Hermes parser does.
 * *n_calls (if given) gets the number of tool calls. */
cJSON *openai_assistant_message(const char *text, size_t len, bool parse_tool_calls, uint64_t id_seed, int *n_calls);

/* Everything a chat.completion object holds. */
typedef struct {
    const char *id;          /* "chatcmpl-..." */
    const char *model;
    int64_t created;         /* Unix seconds */
    const char *text;        /* generated text without the stop token */
    size_t text_len;
    bool parse_tool_calls;
    uint64_t id_seed;        /* for tool-call ids */
    const char *finish;      /* "stop" or "length"; "tool_calls" replaces "stop" when calls were parsed */
    int prompt_tokens;
    int completion_tokens;
} OpenAIChatResult;

/* The chat.completion JSON as a new string. */
char *openai_chat_response_json(const OpenAIChatResult *r);

/* GET /v1/models: {"object": "list", "data": [{"id", "object": "model", "created", "owned_by"}]}. */
char *openai_models_json(const char *model, int64_t created);

/* ---- the same requests over MPI (the local backend, llm/mpi_server.h) ----
 *
 * A client rank sends each request body, byte for byte what it would POST,
 * with tag OPENAI_MPI_TAG_REQUEST to the server rank. An empty message with
 * the same tag says the client is done; sharing the tag keeps it behind the
 * client's last request (MPI does not let a message overtake an earlier one
 * from the same rank that matches the same receive).
 *
 * The server numbers the request messages it gets from each rank 0, 1, ...
 * and answers the k-th with tag openai_mpi_reply_tag(k). Messages between
 * two ranks stay in order, so the client knows k without it being sent.
 * A client must not have two requests in flight whose k share a tag.
 *
 * A reply is the HTTP status as three ASCII digits and a newline, then the
 * response JSON (a chat.completion or an OpenAI error object): the status
 * that HTTP carries in its status line. */
#define OPENAI_MPI_TAG_REQUEST 7100
#define OPENAI_MPI_TAG_REPLY_BASE 7200
#define OPENAI_MPI_REPLY_TAGS 8192 /* 7200 + 8192 stays below 32767, the least MPI_TAG_UB MPI allows */

int openai_mpi_reply_tag(uint64_t k);
/* The reply message for status (100..599) and json; *len gets its length. */
char *openai_mpi_reply_pack(int status, const char *json, size_t *len);
/* Split a reply message. Returns 0 with *status and the JSON (pointing into
 * msg), or -1 when msg does not start with a status line. */
int openai_mpi_reply_unpack(const char *msg, size_t len, int *status, const char **json, size_t *json_len);

#endif
