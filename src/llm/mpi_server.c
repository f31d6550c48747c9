/* mpi_server.c — the OpenAI-compatible server over MPI (see mpi_server.h).
 *
 * The loop keeps two lists: requests in the engine (each with the rank and
 * tag its reply goes to) and replies being sent (the buffer must live until
 * MPI_Isend completes). */
#include "llm/mpi_server.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/error.h"
#include "llm/openai_req.h"

/* With nothing to run and nothing arriving, the loop naps this long between
 * looks: short against a decode step, long enough not to steal the CPU
 * from ranks sharing the core. */
#define IDLE_NAP_NS 200000L

typedef struct InFlight {
    ServerChat *chat;
    int source, tag;
    struct InFlight *next;
} InFlight;

typedef struct {
    char *buf;
    MPI_Request req;
} Outgoing;

typedef struct {
    Server *s;
    MPI_Comm comm;
    uint64_t *received; /* (comm size) request messages taken from each rank */
    int shutdowns;
    InFlight *head;
    int n_inflight;
    Outgoing *out;
    int n_out, cap_out;
} Loop;

static void reply_send(Loop *l, int dest, int tag, int status, const char *json) {
    size_t len;
    char *msg = openai_mpi_reply_pack(status, json, &len);
    if (len > (size_t)INT32_MAX) die_runtime("MPI server: a reply of %zu bytes is too large for one message", len);
    if (l->n_out == l->cap_out) {
        l->cap_out = l->cap_out ? 2 * l->cap_out : 16;
        l->out = xrealloc(l->out, (size_t)l->cap_out * sizeof *l->out);
    }
    Outgoing *o = &l->out[l->n_out++];
    o->buf = msg;
    MPI_Isend(msg, (int)len, MPI_CHAR, dest, tag, l->comm, &o->req);
}

/* Free the buffers of replies that have gone out. */
static void sends_progress(Loop *l) {
    for (int i = 0; i < l->n_out;) {
        int done = 0;
        MPI_Test(&l->out[i].req, &done, MPI_STATUS_IGNORE);
        if (!done) {
            i++;
            continue;
        }
        free(l->out[i].buf);
        l->out[i] = l->out[--l->n_out];
    }
}

/* Take every request message that has arrived; true if any did. */
static bool receive_all(Loop *l) {
    bool got = false;
    for (;;) {
        int flag = 0;
        MPI_Message m;
        MPI_Status st;
        MPI_Improbe(MPI_ANY_SOURCE, OPENAI_MPI_TAG_REQUEST, l->comm, &flag, &m, &st);
        if (!flag) return got;
        got = true;
        int n = 0;
        MPI_Get_count(&st, MPI_CHAR, &n);
        char *body = xmalloc((size_t)n + 1);
        MPI_Mrecv(body, n, MPI_CHAR, &m, MPI_STATUS_IGNORE);
        body[n] = '\0';
        int src = st.MPI_SOURCE;
        uint64_t k = l->received[src]++;
        if (n == 0) {
            l->shutdowns++;
            free(body);
            continue;
        }
        InFlight *f = xcalloc(1, sizeof *f);
        f->chat = server_chat_submit(l->s, body, (size_t)n);
        f->source = src;
        f->tag = openai_mpi_reply_tag(k);
        f->next = l->head;
        l->head = f;
        l->n_inflight++;
        free(body);
    }
}

/* Answer every request the engine is done with (or that never ran). */
static void reply_finished(Loop *l) {
    for (InFlight **pp = &l->head; *pp;) {
        InFlight *f = *pp;
        if (!server_chat_done(l->s, f->chat)) {
            pp = &f->next;
            continue;
        }
        int status;
        char *json = server_chat_finish(l->s, f->chat, &status);
        reply_send(l, f->source, f->tag, status, json);
        free(json);
        *pp = f->next;
        free(f);
        l->n_inflight--;
    }
}

int server_mpi_serve(Server *s, MPI_Comm comm, int n_clients, char *err, size_t errlen) {
    int size = 0;
    MPI_Comm_size(comm, &size);
    if (n_clients < 0 || n_clients > size - 1) {
        snprintf(err, errlen, "MPI server: expected 0 to %d clients (the other ranks of the communicator), got %d",
                 size - 1, n_clients);
        return -1;
    }
    Loop l = {.s = s, .comm = comm};
    l.received = xcalloc((size_t)size, sizeof *l.received);
    while (l.shutdowns < n_clients || l.n_inflight > 0 || l.n_out > 0) {
        bool got = receive_all(&l);
        reply_finished(&l); /* requests refused at once need no engine turn */
        int left = server_engine_pass(s);
        reply_finished(&l);
        sends_progress(&l);
        if (!got && left == 0) {
            struct timespec nap = {0, IDLE_NAP_NS};
            nanosleep(&nap, NULL);
        }
    }
    free(l.received);
    free(l.out);
    return 0;
}

int server_mpi_run(const ServerOptions *opt, MPI_Comm comm, int n_clients, char *err, size_t errlen) {
    Server *s = server_open(opt, NULL, NULL, NULL, err, errlen);
    if (!s) return -1;
    int rc = server_mpi_serve(s, comm, n_clients, err, errlen);
    server_stop(s);
    return rc;
}
