/* fault_server.h — a loopback OpenAI-style chat-completions server that
 * misbehaves on purpose, for testing clients.
 *
 * Each POST to .../chat/completions gets one of the FaultKinds. Which one
 * depends only on the request body and on how many times that same body
 * has been seen (its attempt number), never on arrival order, so a run
 * with many requests in flight is reproducible:
 *
 *   - a directive in the last user message, "[fault:500,500,ok]", gives
 *     the kind of each attempt in turn (the last one repeats);
 *   - otherwise a draw from the weighted mix in FaultSpec, seeded by
 *     (seed, body hash, attempt), for the first max_faults attempts; later
 *     attempts are answered well.
 *
 * A good answer echoes the last user message ("echo: <text>"); with
 * "[tool]" in that message and tools in the request it is instead a call
 * of the first tool with arguments {"text": <message>}. Every request's
 * headers and body are recorded, and the largest number of requests being
 * handled at once is tracked.
 *
 * Scripted mode (FaultSpec.scripted) plays both models of a τ²-bench
 * episode instead of echoing: a request whose system message is τ²-bench's
 * NL-assertion judge prompt gets a verdict {"results": [...]} with one
 * result per expected outcome of the request, each met or not as
 * judge_met says (fault_server_set_judge changes it between runs); any
 * other request is a user simulator's turn and gets a line that ends the
 * conversation ("... ###STOP###").
 *
 * Other paths: GET .../models lists one model, GET /health answers ok.
 */
#ifndef TAU2_TESTS_FAULT_SERVER_H
#define TAU2_TESTS_FAULT_SERVER_H

#include <stdbool.h>
#include <stdint.h>

typedef enum {
    FAULT_OK = 0,
    FAULT_DROP,       /* close the connection without a response */
    FAULT_429,        /* 429 with Retry-After: retry_after_s */
    FAULT_500,
    FAULT_503,
    FAULT_SLOW,       /* wait slow_s, then a good answer (too late for a client with a shorter timeout) */
    FAULT_MALFORMED,  /* 200 with a truncated JSON body */
    FAULT_NO_CHOICES, /* 200 with valid JSON that is not a chat completion */
    FAULT_400,        /* invalid request */
    FAULT_401,        /* unauthorized; the error message echoes the Authorization header, as careless servers do */
    FAULT_KIND_COUNT
} FaultKind;

/* "ok", "drop", "429", "500", "503", "slow", "malformed", "nochoices", "400", "401". */
const char *fault_kind_name(FaultKind k);
/* The kind with that name, or -1. */
int fault_kind_parse(const char *name);

typedef struct {
    double weight[FAULT_KIND_COUNT]; /* random mix; all zero: every attempt OK (directives still apply) */
    uint64_t seed;
    int max_faults;      /* random faults for one body at most; after that OK. < 0: no limit */
    int retry_after_s;   /* Retry-After of a 429 (0: header left out) */
    double slow_s;       /* how long FAULT_SLOW waits */
    double delay_s;      /* every answer waits this long first (to make requests overlap) */
    bool scripted;       /* good answers follow the script above */
    bool judge_met;      /* scripted: the judge's verdict on every assertion */
} FaultSpec;

typedef struct FaultServer FaultServer;

/* Serve on 127.0.0.1:*port (0: an ephemeral port, written back to *port).
 * NULL (and a message on stderr) when it cannot start. */
FaultServer *fault_server_start(const FaultSpec *spec, int *port);
/* Stop serving (waiting requests, slow ones included, end at once) and free. */
void fault_server_stop(FaultServer *s);

/* Requests received so far (every path). */
int fault_server_request_count(FaultServer *s);
/* Copies of request i's headers ("Name: value\n" lines), body and the
 * kind it was given; returns false when i is out of range. Either pointer
 * may be NULL; the caller frees the strings. */
bool fault_server_request(FaultServer *s, int i, char **headers, char **body, FaultKind *kind);
/* Chat-completion requests answered with kind k. */
int fault_server_count(FaultServer *s, FaultKind k);
/* The most chat-completion requests being handled at the same time. */
int fault_server_max_inflight(FaultServer *s);
/* Scripted mode: the verdict later judge requests get. */
void fault_server_set_judge(FaultServer *s, bool met);
/* Scripted mode: judge requests answered so far. */
int fault_server_judge_count(FaultServer *s);

#endif
