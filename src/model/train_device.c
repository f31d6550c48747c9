/* train_device.c — see train_device.h. */
#include "model/train_device.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm/comm.h"
#include "core/error.h"
#include "model/gpu_check.h"
#ifdef TAU2_HAVE_CUDA
#include "kernels.h"
#include "model/qwen3_gpu.h"
#endif

struct TrainDevice {
    TrainDeviceKind kind;
    Qwen3 *host;   /* borrowed: the model of record */
    Qwen3 *mirror; /* CPU_MIRROR: the stand-in device model (owned) */
    bool offloaded; /* train_device_offload ran and no call has needed the device since */
#ifdef TAU2_HAVE_CUDA
    Qwen3Gpu *gpu; /* CUDA (owned) */
    Comm *dp_nccl; /* CUDA: NCCL over the DP ranks (owned), made for dp_of */
    const Comm *dp_of;
    float *pinned[3]; /* CUDA: the host's weights and moments, page-locked by pin_host_arrays */
    bool pin_off;     /* TAU2_CUDA_PIN=0, or the driver refused once */
#endif
};

static const char *const KIND_NAMES[] = {"cpu", "cuda", "cpu_mirror"};

int train_device_kind_parse(const char *name, TrainDeviceKind *out) {
    for (int k = 0; k < (int)(sizeof KIND_NAMES / sizeof KIND_NAMES[0]); k++) {
        if (strcmp(name, KIND_NAMES[k]) == 0) {
            *out = (TrainDeviceKind)k;
            return 0;
        }
    }
    return -1;
}

int train_device_check(TrainDeviceKind kind, int tp, char *err, size_t errlen) {
    if (kind != TRAIN_DEVICE_CUDA) return 0;
    return gpu_check(tp, 0, "tensor_parallel", "the GPU training step", err, errlen);
}

static void copy_floats(float *dst, const float *src, size_t n) { memcpy(dst, src, n * sizeof(float)); }

/* AdamW's moments (when src has them) and step count, from one CPU model
 * to another of the same layout. */
static void copy_optimizer_state(Qwen3 *dst, const Qwen3 *src) {
    if (src->m_memory) {
        qwen3_alloc_moments(dst);
        copy_floats(dst->m_memory, src->m_memory, src->num_parameters);
        copy_floats(dst->v_memory, src->v_memory, src->num_parameters);
    }
    dst->adam_step = src->adam_step;
}

/* Host -> device: the weights, and the moments and adam_step when the host
 * has moments. At creation only: later the device's moments are newer than
 * the host's. */
static void send_host_state(TrainDevice *d) {
    Qwen3 *h = d->host;
    switch (d->kind) {
    case TRAIN_DEVICE_CPU:
        break;
    case TRAIN_DEVICE_CPU_MIRROR:
        copy_floats(d->mirror->params_memory, h->params_memory, h->num_parameters);
        copy_optimizer_state(d->mirror, h);
        break;
    case TRAIN_DEVICE_CUDA:
#ifdef TAU2_HAVE_CUDA
        qwen3_gpu_upload_params(d->gpu, h->params_memory);
        if (h->m_memory) qwen3_gpu_upload_moments(d->gpu, h->m_memory, h->v_memory, h->adam_step);
#endif
        break;
    }
}

#ifdef TAU2_HAVE_CUDA
/* Page-locks the host arrays the GPU copies to and from at every update
 * (the weights after each AdamW step) and around every rollout of a
 * colocated job (the moments out, weights and moments back): in place,
 * once each, as they come to exist (the moments with the first step).
 * Registering Qwen3-4B's 48 GB takes ~3 s once; each offload and onload
 * of a TP-2 shard then takes 0.9 s instead of 5.3 (doc/perf.md).
 * TAU2_CUDA_PIN=0 keeps them pageable; so does a driver that refuses
 * (a memlock limit), said once. */
static void pin_host_arrays(TrainDevice *d) {
    if (d->kind != TRAIN_DEVICE_CUDA || d->pin_off) return;
    Qwen3 *h = d->host;
    float *arrays[3] = {h->params_memory, h->m_memory, h->v_memory};
    for (int i = 0; i < 3; i++) {
        if (!arrays[i] || d->pinned[i] == arrays[i]) continue;
        char err[160];
        if (!cuda_host_register(arrays[i], h->num_parameters * sizeof(float), err, sizeof err)) {
            fprintf(stderr, "train_device: the driver did not page-lock %.2f GB of host memory (%s; "
                    "TAU2_CUDA_PIN=0 skips it): copies to and from the GPU stay pageable, a few times slower\n",
                    h->num_parameters * sizeof(float) / 1e9, err);
            d->pin_off = true;
            return;
        }
        d->pinned[i] = arrays[i];
    }
}

static void unpin_host_arrays(TrainDevice *d) {
    for (int i = 0; i < 3; i++) cuda_host_unregister(d->pinned[i]), d->pinned[i] = NULL;
}
#endif

TrainDevice *train_device_new(Qwen3 *m, TrainDeviceKind kind, int node_rank) {
    char err[512];
    if (train_device_check(kind, m->shard.size, err, sizeof err) != 0)
        die_runtime("train_device_new: %s", err);
    (void)node_rank; /* the CUDA kind's only */
    TrainDevice *d = xcalloc(1, sizeof *d);
    d->kind = kind;
    d->host = m;
    switch (kind) {
    case TRAIN_DEVICE_CPU:
        break;
    case TRAIN_DEVICE_CPU_MIRROR:
        d->mirror = qwen3_new_tp(&m->config, m->tp, err, sizeof err);
        if (!d->mirror) die_runtime("train_device_new: %s", err);
        send_host_state(d);
        break;
    case TRAIN_DEVICE_CUDA:
#ifdef TAU2_HAVE_CUDA
        /* the GPU runs the head in larger chunks than the CPU (qwen3_gpu.h) */
        m->vocab_chunk = qwen3_gpu_vocab_chunk(m->shard.vocab_size);
        d->gpu = qwen3_gpu_new(m, gpu_pick_device(node_rank), QWEN3_GPU_BF16);
        const char *pin = getenv("TAU2_CUDA_PIN");
        d->pin_off = pin && strcmp(pin, "0") == 0;
        pin_host_arrays(d);
        if (m->m_memory) send_host_state(d); /* the moments too */
#endif
        break;
    }
    return d;
}

void train_device_free(TrainDevice *d) {
    if (!d) return;
    qwen3_free(d->mirror);
#ifdef TAU2_HAVE_CUDA
    comm_free(d->dp_nccl);
    qwen3_gpu_free(d->gpu);
    unpin_host_arrays(d);
#endif
    free(d);
}

Qwen3 *train_device_host(const TrainDevice *d) { return d->host; }

/* ------------------------------------------------------------ offload */

static void fill_nan(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = NAN;
}

bool train_device_offload(TrainDevice *d) {
    Qwen3 *h = d->host;
    if (d->offloaded || d->kind == TRAIN_DEVICE_CPU) return false;
    switch (d->kind) {
    case TRAIN_DEVICE_CPU:
        break;
    case TRAIN_DEVICE_CPU_MIRROR: {
        /* as the GPU: the moments to the host; the mirror's state is then
         * NaN, so that whatever the onload failed to bring back shows in
         * the numbers */
        Qwen3 *mr = d->mirror;
        copy_optimizer_state(h, mr);
        fill_nan(mr->params_memory, h->num_parameters);
        if (mr->m_memory) fill_nan(mr->m_memory, h->num_parameters), fill_nan(mr->v_memory, h->num_parameters);
        if (mr->grads_memory) fill_nan(mr->grads_memory, h->num_parameters);
        break;
    }
    case TRAIN_DEVICE_CUDA:
#ifdef TAU2_HAVE_CUDA
        /* the device has moments once it stepped or was sent the host's */
        if (h->adam_step > 0 || h->m_memory) qwen3_alloc_moments(h);
        pin_host_arrays(d);
        qwen3_gpu_offload(d->gpu, h->m_memory, h->v_memory);
#endif
        break;
    }
    d->offloaded = true;
    return true;
}

void train_device_onload(TrainDevice *d) {
    if (!d->offloaded) return;
    Qwen3 *h = d->host;
    switch (d->kind) {
    case TRAIN_DEVICE_CPU:
        break;
    case TRAIN_DEVICE_CPU_MIRROR: {
        Qwen3 *mr = d->mirror;
        copy_floats(mr->params_memory, h->params_memory, h->num_parameters);
        copy_optimizer_state(mr, h);
        if (mr->grads_memory) memset(mr->grads_memory, 0, h->num_parameters * sizeof(float));
        break;
    }
    case TRAIN_DEVICE_CUDA:
#ifdef TAU2_HAVE_CUDA
        qwen3_gpu_onload(d->gpu, h->params_memory, h->m_memory, h->v_memory);
#endif
        break;
    }
    d->offloaded = false;
}

/* The mirror runs with the host's current settings (the job may change them between steps). */
static Qwen3 *mirror_of(TrainDevice *d) {
    d->mirror->recompute = d->host->recompute;
    d->mirror->vocab_chunk = d->host->vocab_chunk;
    return d->mirror;
}

void train_device_forward(TrainDevice *d, const Qwen3Batch *b, float *logprob, float *entropy) {
    train_device_onload(d);
    switch (d->kind) {
    case TRAIN_DEVICE_CPU:
        qwen3_forward(d->host, b, logprob, entropy);
        break;
    case TRAIN_DEVICE_CPU_MIRROR:
        qwen3_forward(mirror_of(d), b, logprob, entropy);
        break;
    case TRAIN_DEVICE_CUDA:
#ifdef TAU2_HAVE_CUDA
        qwen3_gpu_forward(d->gpu, b, logprob, entropy);
#endif
        break;
    }
}

void train_device_forward_head_grad(TrainDevice *d, const Qwen3Batch *b, float *logprob, float *entropy,
                                    Qwen3HeadGradFn grad_fn, void *grad_ctx, bool with_dentropy) {
    train_device_onload(d);
    switch (d->kind) {
    case TRAIN_DEVICE_CPU:
        qwen3_forward_head_grad(d->host, b, logprob, entropy, grad_fn, grad_ctx, with_dentropy);
        break;
    case TRAIN_DEVICE_CPU_MIRROR:
        qwen3_forward_head_grad(mirror_of(d), b, logprob, entropy, grad_fn, grad_ctx, with_dentropy);
        break;
    case TRAIN_DEVICE_CUDA:
#ifdef TAU2_HAVE_CUDA
        qwen3_gpu_forward_head_grad(d->gpu, b, logprob, entropy, grad_fn, grad_ctx, with_dentropy);
#endif
        break;
    }
}

void train_device_zero_grad(TrainDevice *d) {
    train_device_onload(d);
    switch (d->kind) {
    case TRAIN_DEVICE_CPU:
        qwen3_zero_grad(d->host);
        break;
    case TRAIN_DEVICE_CPU_MIRROR:
        qwen3_zero_grad(d->mirror);
        break;
    case TRAIN_DEVICE_CUDA:
#ifdef TAU2_HAVE_CUDA
        qwen3_gpu_zero_grad(d->gpu);
#endif
        break;
    }
}

void train_device_backward(TrainDevice *d, const float *dlogprob, const float *dentropy) {
    train_device_onload(d);
    switch (d->kind) {
    case TRAIN_DEVICE_CPU:
        qwen3_backward(d->host, dlogprob, dentropy);
        break;
    case TRAIN_DEVICE_CPU_MIRROR:
        qwen3_backward(mirror_of(d), dlogprob, dentropy);
        break;
    case TRAIN_DEVICE_CUDA:
#ifdef TAU2_HAVE_CUDA
        qwen3_gpu_backward(d->gpu, dlogprob, dentropy);
#endif
        break;
    }
}

void train_device_allreduce_grads(TrainDevice *d, Comm *dp) {
    train_device_onload(d);
    Qwen3 *h = d->host;
    switch (d->kind) {
    case TRAIN_DEVICE_CPU:
        if (!h->grads_memory) qwen3_zero_grad(h);
        comm_allreduce_sum_f32(dp, h->grads_memory, h->num_parameters);
        break;
    case TRAIN_DEVICE_CPU_MIRROR:
        if (!d->mirror->grads_memory) qwen3_zero_grad(d->mirror);
        comm_allreduce_sum_f32(dp, d->mirror->grads_memory, h->num_parameters);
        break;
    case TRAIN_DEVICE_CUDA:
#ifdef TAU2_HAVE_CUDA
        if (d->dp_of != dp) { /* collective over dp: every DP rank gets here together */
            comm_free(d->dp_nccl);
            d->dp_nccl = comm_nccl_from_mpi(dp);
            d->dp_of = dp;
        }
        qwen3_gpu_allreduce_grads(d->gpu, d->dp_nccl);
#endif
        break;
    }
}

float train_device_adamw_step(TrainDevice *d, const Qwen3AdamW *opt, float lr) {
    train_device_onload(d);
    Qwen3 *h = d->host;
    float norm = 0.0f;
    switch (d->kind) {
    case TRAIN_DEVICE_CPU:
        norm = qwen3_adamw_step(h, opt, lr);
        break;
    case TRAIN_DEVICE_CPU_MIRROR:
        norm = qwen3_adamw_step(d->mirror, opt, lr);
        copy_floats(h->params_memory, d->mirror->params_memory, h->num_parameters);
        h->adam_step = d->mirror->adam_step;
        break;
    case TRAIN_DEVICE_CUDA:
#ifdef TAU2_HAVE_CUDA
        norm = qwen3_gpu_adamw_step(d->gpu, opt, lr);
        qwen3_gpu_download_params(d->gpu, h->params_memory);
        h->adam_step++;
#endif
        break;
    }
    return norm;
}

void train_device_pull_moments(TrainDevice *d) {
    Qwen3 *h = d->host;
    if (d->offloaded) return; /* the offload brought them out */
    switch (d->kind) {
    case TRAIN_DEVICE_CPU:
        break;
    case TRAIN_DEVICE_CPU_MIRROR:
        copy_optimizer_state(h, d->mirror);
        break;
    case TRAIN_DEVICE_CUDA:
#ifdef TAU2_HAVE_CUDA
    {
        /* the device has moments once it stepped or was sent the host's */
        if (h->adam_step == 0 && !h->m_memory) break;
        qwen3_alloc_moments(h);
        pin_host_arrays(d);
        int step = 0;
        qwen3_gpu_download_moments(d->gpu, h->m_memory, h->v_memory, &step);
        h->adam_step = step;
    }
#endif
        break;
    }
}

const float *train_device_gpu_params(const TrainDevice *d, int *device) {
#ifdef TAU2_HAVE_CUDA
    if (d->kind == TRAIN_DEVICE_CUDA) {
        *device = qwen3_gpu_device(d->gpu);
        return qwen3_gpu_params_device(d->gpu);
    }
#endif
    (void)d;
    *device = -1;
    return NULL;
}
