/* mpi_server.h — the OpenAI-compatible server over MPI: the `local`
 * user-simulator backend.
 *
 * The job's user-sim ranks serve the user-simulator model to the rollout
 * ranks. A rollout rank's LlmClient reaches a server rank through an MPI
 * endpoint (llm_client_add_mpi_endpoint) and sends the very request bodies
 * it would POST to `tau2_hpc serve`; the reply is the very JSON that server
 * would answer with, behind its HTTP status (llm/openai_req.h has the
 * message format and the tags).
 *
 * One loop on one thread (the job runs MPI_THREAD_FUNNELED): between engine
 * steps it takes every request that has arrived from any rank of the
 * communicator (MPI_Improbe, MPI_ANY_SOURCE), queues it with the engine
 * that the HTTP server uses (llm/server.h: the same parsing, prompt,
 * admission, continuous batching across clients and seeded sampling, so a
 * request with a seed gets the same completion over HTTP and over MPI),
 * steps the engine once, and sends back what finished with MPI_Isend.
 * With nothing to run it sleeps in short naps rather than spin.
 *
 * It returns when n_clients shutdown messages have come (one from each
 * client rank, llm_client_mpi_shutdown) and every reply has been delivered.
 * A client shuts down only after its own replies have come back, so no
 * request is cut off.
 */
#ifndef TAU2_LLM_MPI_SERVER_H
#define TAU2_LLM_MPI_SERVER_H

#include <stddef.h>

#include <mpi.h>

#include "llm/server.h"

/* Load opt->model_dir and serve over comm until n_clients clients have shut
 * down. The network fields of opt are ignored. Returns 0, or -1 with err
 * (a model that does not load, a bad option, n_clients < 0). */
int server_mpi_run(const ServerOptions *opt, MPI_Comm comm, int n_clients, char *err, size_t errlen);

/* The same over a server from server_open (a model the caller has loaded
 * already); s stays the caller's, and server_stats reports on the run. */
int server_mpi_serve(Server *s, MPI_Comm comm, int n_clients, char *err, size_t errlen);

#endif
