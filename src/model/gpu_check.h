/* gpu_check.h — whether a GPU part (the training step, the inference
 * engine) can run in this process: the one question every "device": "cuda"
 * key asks at startup (defined in every build), and which GPU a rank takes
 * (CUDA build). */
#ifndef TAU2_MODEL_GPU_CHECK_H
#define TAU2_MODEL_GPU_CHECK_H

#include <stddef.h>

/* 0 when `what` (e.g. "the GPU inference engine") can run here at tensor
 * parallel size tp, the value of config key tp_key: a CUDA build, tp at
 * most tp_max (0: any size), a visible device. Else -1 with the reason in
 * err. */
int gpu_check(int tp, int tp_max, const char *tp_key, const char *what, char *err, size_t errlen);

#ifdef TAU2_HAVE_CUDA
struct Comm;

/* The GPU a rank takes: its index on its node (comm_node_rank) modulo the
 * devices the process sees (one with srun --gpu-bind, all of the node's
 * with mpirun). CUDA build with a visible device only. */
int gpu_pick_device(int node_rank);
/* Makes that GPU this thread's current device (before a NCCL comm is made
 * on a rank that has no engine yet). */
void gpu_select(int node_rank);

/* 0 when the ranks of c (collective over it) each take a GPU of their own
 * (gpu_pick_device of their node_rank; compared by the devices' UUIDs, so
 * binding by CUDA_VISIBLE_DEVICES counts right): what NCCL asks of the
 * ranks of one communicator. Else -1 on every rank with the first pair
 * that shares a GPU in err. */
int gpu_distinct_devices_check(struct Comm *c, int node_rank, char *err, size_t errlen);

/* The GPU a rank takes (gpu_pick_device of node_rank), made current, and
 * its memory as the driver reports it now: free counts the contexts and
 * allocations of every process on it so far. */
typedef struct {
    unsigned char uuid[16];
    char name[256];
    size_t free_bytes, total_bytes;
} GpuMemInfo;
void gpu_memory_info(int node_rank, GpuMemInfo *out);
#endif

#endif
