/* mpi_gpu.h — the MPI tests that need a GPU per rank (NCCL): which GPU a
 * rank takes, or that the test is skipped. */
#ifndef TAU2_TEST_MPI_GPU_H
#define TAU2_TEST_MPI_GPU_H

#include <stdio.h>

#include <mpi.h>

#include "comm/comm.h"
#ifdef TAU2_HAVE_CUDA
#include "kernels.h"
#endif

/* This rank's GPU, its index on its node, made current; or -1 on every rank
 * (rank 0 says why) when the build has no CUDA or some node has fewer GPUs
 * than ranks. Collective over world. */
static inline int mpi_test_gpu(Comm *world) {
#ifndef TAU2_HAVE_CUDA
    if (world->rank == 0) printf("built without CUDA: skipped\n");
    return -1;
#else
    int node_rank = comm_node_rank(world), ndev = cuda_device_count();
    int have[2] = {-ndev, node_rank + 1}; /* the fewest GPUs, the most ranks of a node */
    MPI_Allreduce(MPI_IN_PLACE, have, 2, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (-have[0] < have[1]) {
        if (world->rank == 0) printf("no CUDA device for each of %d ranks on a node (%d found): skipped\n", have[1], -have[0]);
        return -1;
    }
    cuda_device_init(node_rank);
    return node_rank;
#endif
}

#endif
