/* bench_broadcast.c — the trainer -> rollout weight broadcast: one flat
 * buffer from rank 0 to every rank in buckets (comm_broadcast_buckets, what
 * the job does with the policy's weights), GB/s for several bucket sizes.
 *
 * Host memory over the MPI backend by default; with --device (CUDA build),
 * device memory over NCCL, each rank on GPU (its rank on the node) modulo
 * the node's GPUs, which needs one GPU per rank.
 *
 * GB/s is the buffer's bytes over the slowest rank's time for the whole
 * broadcast (ranks start together after a barrier), the median of --reps.
 * The anchor, measured in the same run: one local copy of the same bytes on
 * rank 0 (memcpy in host memory; a device-to-device copy with --device),
 * the speed at which a rank could take the weights from its own memory.
 *
 * usage: mpirun -np N bench_broadcast [--mib 1024] [--buckets 1,4,16,64,256,0] [--reps 5] [--device]
 * (bucket 0: the whole buffer in one broadcast) */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#ifdef TAU2_HAVE_CUDA
#include <cuda_runtime_api.h>

#include "kernels.h"
#endif

#include "comm/comm.h"

#include "bench_util.h"

#define MAX_LIST 8

static int parse_list(const char *s, long *out) {
    int n = 0;
    while (*s && n < MAX_LIST) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 0) return -1;
        out[n++] = v;
        if (*end && *end != ',') return -1;
        s = *end == ',' ? end + 1 : end;
    }
    return n;
}

/* The broadcast's time on the slowest rank, seconds. */
static double timed_broadcast(Comm *c, void *buf, size_t bytes, size_t bucket) {
    comm_barrier(c);
    double t0 = now();
    comm_broadcast_buckets(c, buf, bytes, bucket, 0);
    double t = now() - t0;
    MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    return t;
}

/* One local copy of bytes (the anchor), seconds: the best of 3. */
static double local_copy(void *dst, const void *src, size_t bytes, bool device) {
    double best = 1e30;
    for (int i = 0; i < 3; i++) {
        double t0 = now();
#ifdef TAU2_HAVE_CUDA
        if (device) {
            cuda_check(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice));
            cuda_check(cudaDeviceSynchronize());
        } else
#endif
            memcpy(dst, src, bytes);
        double t = now() - t0;
        if (t < best) best = t;
    }
    (void)device;
    return best;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    long mib = 1024, buckets[MAX_LIST] = {1, 4, 16, 64, 256, 0};
    int n_buckets = 6, reps = 5;
    bool device = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--device")) device = true;
        else if (i + 1 < argc && !strcmp(argv[i], "--mib")) mib = atol(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--buckets")) n_buckets = parse_list(argv[++i], buckets);
        else if (i + 1 < argc && !strcmp(argv[i], "--reps")) reps = atoi(argv[++i]);
        else {
            fprintf(stderr, "bench_broadcast: unknown option %s\n", argv[i]);
            MPI_Finalize();
            return 2;
        }
    }
    if (mib < 1 || n_buckets < 1 || reps < 1) {
        fprintf(stderr, "bench_broadcast: bad arguments (--mib >= 1, --buckets like 1,16,0, --reps >= 1)\n");
        MPI_Finalize();
        return 2;
    }
    Comm *world = comm_mpi_world();
    Comm *c = world;
    size_t bytes = (size_t)mib << 20;
    void *buf = NULL, *copy = NULL;
    if (device) {
#ifdef TAU2_HAVE_CUDA
        int n_dev = cuda_device_count(), local = comm_node_rank(world);
        int per_node_ok = n_dev > 0 && local < n_dev;
        MPI_Allreduce(MPI_IN_PLACE, &per_node_ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
        if (!per_node_ok) {
            if (world->rank == 0) printf("bench_broadcast: --device needs one GPU per rank on each node\n");
            comm_free(world);
            MPI_Finalize();
            return 77;
        }
        cuda_device_init(local);
        cuda_check(cudaMalloc(&buf, bytes));
        cuda_check(cudaMemset(buf, world->rank == 0 ? 1 : 0, bytes));
        if (world->rank == 0) cuda_check(cudaMalloc(&copy, bytes));
        c = comm_nccl_from_mpi(world);
#else
        if (world->rank == 0) fprintf(stderr, "bench_broadcast: --device needs the CUDA build\n");
        comm_free(world);
        MPI_Finalize();
        return 2;
#endif
    } else {
        buf = malloc(bytes);
        memset(buf, world->rank == 0 ? 1 : 0, bytes); /* every page touched before timing */
        if (world->rank == 0) {
            copy = malloc(bytes);
            memset(copy, 0, bytes);
        }
    }
    double anchor = world->rank == 0 ? local_copy(copy, buf, bytes, device) : 0.0;
    if (world->rank == 0) {
        printf("%d ranks, %ld MiB of %s memory over %s; local copy %.2f GB/s\n", world->size, mib,
               device ? "device" : "host", c->ops->name, bytes / anchor / 1e9);
    }
    double *times = malloc((size_t)reps * sizeof(double));
    for (int b = 0; b < n_buckets; b++) {
        size_t bucket = buckets[b] > 0 ? (size_t)buckets[b] << 20 : bytes;
        timed_broadcast(c, buf, bytes, bucket); /* warm-up: connections, registration */
        for (int r = 0; r < reps; r++) times[r] = timed_broadcast(c, buf, bytes, bucket);
        qsort(times, reps, sizeof(double), cmp_double);
        double med = times[reps / 2];
        if (world->rank == 0) {
            char label[32];
            if (buckets[b] > 0) snprintf(label, sizeof label, "%ld MiB", buckets[b]);
            else snprintf(label, sizeof label, "whole");
            printf("bucket %-9s %8.2f GB/s (%.1f ms, median of %d), %.2f of the local copy\n", label,
                   bytes / med / 1e9, 1e3 * med, reps, anchor / med);
            printf("RESULT broadcast %s %d %ld %ld %.3f %.3f\n", device ? "device" : "host", world->size, mib,
                   buckets[b], bytes / med / 1e9, anchor / med);
        }
    }
    free(times);
    if (c != world) comm_free(c);
    comm_free(world);
#ifdef TAU2_HAVE_CUDA
    if (device) {
        cuda_check(cudaFree(buf));
        if (copy) cuda_check(cudaFree(copy));
        buf = copy = NULL;
    }
#endif
    free(buf);
    free(copy);
    MPI_Finalize();
    return 0;
}
