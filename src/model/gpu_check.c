/* gpu_check.c — can a GPU part run here (see gpu_check.h). */
#include "model/gpu_check.h"

#include <stdio.h>

#ifdef TAU2_HAVE_CUDA
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>

#include "comm/comm.h"
#include "core/error.h"
#include "kernels.h"
#endif

int gpu_check(int tp, int tp_max, const char *tp_key, const char *what, char *err, size_t errlen) {
#ifndef TAU2_HAVE_CUDA
    (void)tp, (void)tp_max, (void)tp_key, (void)what;
    snprintf(err, errlen, "this build has no CUDA backend (configure with -DTAU2_CUDA=ON on a machine with nvcc)");
    return -1;
#else
    if (tp_max > 0 && tp > tp_max) {
        snprintf(err, errlen, "%s %d: %s runs at %s %d at most so far", tp_key, tp, what, tp_key, tp_max);
        return -1;
    }
    if (cuda_device_count() < 1) {
        snprintf(err, errlen, "no CUDA device is visible to this process");
        return -1;
    }
    return 0;
#endif
}

#ifdef TAU2_HAVE_CUDA
int gpu_pick_device(int node_rank) {
    int n = cuda_device_count();
    if (n < 1) die_runtime("gpu_pick_device: no CUDA device is visible to this process");
    return node_rank % n;
}

void gpu_select(int node_rank) { cuda_device_init(gpu_pick_device(node_rank)); }

int gpu_distinct_devices_check(Comm *c, int node_rank, char *err, size_t errlen) {
    struct cudaDeviceProp prop;
    int dev = gpu_pick_device(node_rank);
    cuda_check(cudaGetDeviceProperties(&prop, dev));
    char *all = NULL;
    size_t *counts = xcalloc((size_t)c->size, sizeof(size_t));
    size_t U = sizeof prop.uuid.bytes;
    comm_gatherv_bytes(c, prop.uuid.bytes, U, 0, &all, counts);
    int pair[2] = {-1, -1};
    if (c->rank == 0) {
        for (int a = 0; a < c->size && pair[0] < 0; a++)
            for (int b = a + 1; b < c->size && pair[0] < 0; b++)
                if (memcmp(all + (size_t)a * U, all + (size_t)b * U, U) == 0) pair[0] = a, pair[1] = b;
    }
    free(all);
    free(counts);
    comm_broadcast(c, pair, sizeof pair, 0);
    if (pair[0] < 0) return 0;
    snprintf(err, errlen,
             "ranks %d and %d of the %d trainer ranks take the same GPU (%s, GPU %d of the %d this rank sees): "
             "NCCL, which sums the TP shards and the DP gradients, needs a GPU of its own for each trainer rank "
             "(one rank per GPU: srun --gpus-per-task=1, or at most as many ranks per node as it has GPUs)",
             pair[0], pair[1], c->size, prop.name, dev, cuda_device_count());
    return -1;
}

void gpu_memory_info(int node_rank, GpuMemInfo *out) {
    int dev = gpu_pick_device(node_rank);
    cuda_device_init(dev);
    struct cudaDeviceProp prop;
    cuda_check(cudaGetDeviceProperties(&prop, dev));
    memset(out, 0, sizeof *out);
    memcpy(out->uuid, prop.uuid.bytes, sizeof out->uuid);
    snprintf(out->name, sizeof out->name, "%s", prop.name);
    cuda_check(cudaMemGetInfo(&out->free_bytes, &out->total_bytes));
}
#endif
