/* test_job_gpu_memory.c — job_gpu_memory_check (rl/job_memory.h), the
 * per-GPU sum of the ranks' device-memory plans, on made-up GPUs: every
 * build runs it, no GPU needed. Every rank plans 10 GiB (its parts spread
 * over weights, KV cache and workspace); ranks 2r and 2r + 1 share GPU r
 * (of this host), the last rank alone on its GPU when the count is odd.
 *
 *   1. 30 GiB free on every GPU: passes on every rank (two ranks, 20 GiB +
 *      2 x 1 GiB held back, fit);
 *   2. 15 GiB free: one rank alone fits (10 + 1), two on a GPU do not: at
 *      one rank it passes, else every rank gets the same refusal naming
 *      the 2 ranks, the GPU's UUID and name, the sum and the parts;
 *   3. a rank without a GPU adds nothing: with rank 1 off the GPU, GPU 0
 *      holds one rank and passes at 15 GiB when every other GPU does;
 *   4. the free memory of a GPU is the least its ranks read;
 *   5. phases (a colocated job's offloads): 9 GiB a rank training and
 *      11 GiB rolling out, whose sum (40 GiB on a shared GPU) would not
 *      fit 30 GiB, pass (22 + 2 GiB); at 23 GiB free a shared GPU is
 *      refused with the rolling-out phase named, its sum and its parts;
 *      each rank learns what its GPU has to spare in each phase.
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <mpi.h>

#include "mpi_check.h"
#include "comm/comm.h"
#include "rl/job_memory.h"

static const double GiB = 1024.0 * 1024 * 1024;

static JobGpu gpu_of(int rank, double free_gib) {
    JobGpu g = {.uses_gpu = true, .free_bytes = free_gib * GiB};
    memset(g.uuid, 0, sizeof g.uuid);
    g.uuid[15] = (unsigned char)(rank / 2 + 1);
    snprintf(g.name, sizeof g.name, "Test GPU %d", rank / 2);
    return g;
}

int main(int argc, char **argv) {
    int rank, size;
    mpi_test_begin(&argc, &argv, &rank, &size);
    Comm *world = comm_mpi_world();
    JobMemory one = {.weights = 4 * GiB, .kv_cache = 5 * GiB, .workspace = 1 * GiB};
    JobMemory mine[JOB_PHASES] = {one, one}; /* the same in both phases */
    char err[2048];
    bool shared = size > 1; /* GPU 0 holds ranks 0 and 1 */

    /* 1. room for everyone */
    JobGpu g = gpu_of(rank, 30);
    CHECK(job_gpu_memory_check(world, mine, &g, NULL, err, sizeof err) == 0);

    /* 2. room for one rank a GPU */
    g = gpu_of(rank, 15);
    err[0] = '\0';
    int rc = job_gpu_memory_check(world, mine, &g, NULL, err, sizeof err);
    CHECK(rc == (shared ? -1 : 0));
    if (shared) {
        CHECK(strstr(err, "the 2 ranks of this job on GPU-00000000-0000-0000-0000-000000000001 (Test GPU 0)") != NULL);
        CHECK(strstr(err, "would take 20.0 GiB of its memory together (weights 8.0 GiB, KV cache 10.0 GiB, "
                          "scratch and workspaces 2.0 GiB) and hold back 2.0 GiB for NCCL and cuBLAS, more than "
                          "the 15.0 GiB free on it") != NULL);
        if (rank == 0) printf("refusal: %s\n", err);
    }

    /* 3. rank 1 off the GPU: GPU 0 holds rank 0 alone; the other GPUs
     * still hold two ranks each, so they must have room for them */
    g = gpu_of(rank, rank / 2 == 0 ? 15 : 30);
    if (rank == 1) g.uses_gpu = false;
    CHECK(job_gpu_memory_check(world, mine, &g, NULL, err, sizeof err) == 0);

    /* 4. the least free memory its ranks read: rank 1 reads 20 GiB on GPU 0 */
    if (shared) {
        g = gpu_of(rank, rank == 1 ? 20 : 30);
        rc = job_gpu_memory_check(world, mine, &g, NULL, err, sizeof err);
        CHECK(rc == -1);
        CHECK(strstr(err, "more than the 20.0 GiB free on it") != NULL);
    }

    /* 5. the phases apart: the larger one counts */
    JobMemory phased[JOB_PHASES] = {
        {.weights = 4 * GiB, .train_state = 4 * GiB, .workspace = 1 * GiB},
        {.weights = 1 * GiB, .kv_cache = 9 * GiB, .workspace = 1 * GiB},
    };
    g = gpu_of(rank, 30);
    double room[JOB_PHASES];
    CHECK(job_gpu_memory_check(world, phased, &g, room, err, sizeof err) == 0);
    /* what each phase leaves on this rank's GPU: 30 less the reserve and the phase's sum */
    bool pair = rank / 2 * 2 + 1 < size;
    CHECK(room[JOB_PHASE_TRAIN] == (pair ? 30 - 2 - 18 : 30 - 1 - 9) * GiB);
    CHECK(room[JOB_PHASE_ROLLOUT] == (pair ? 30 - 2 - 22 : 30 - 1 - 11) * GiB);
    g = gpu_of(rank, 23);
    err[0] = '\0';
    rc = job_gpu_memory_check(world, phased, &g, room, err, sizeof err);
    CHECK(rc == (shared ? -1 : 0));
    if (shared) {
        CHECK(strstr(err, "would take 22.0 GiB of its memory together while rolling out (weights 2.0 GiB, KV cache "
                          "18.0 GiB, scratch and workspaces 2.0 GiB) and hold back 2.0 GiB for NCCL and cuBLAS, more "
                          "than the 23.0 GiB free on it") != NULL);
        if (rank == 0) printf("refusal: %s\n", err);
    }
    comm_free(world);
    return mpi_test_end("test_job_gpu_memory");
}
