/* bench_offload_gpu.c — what a colocated job's offload_train costs per step
 * (qwen3_gpu_offload and qwen3_gpu_onload, doc/memory_plan.md): the
 * trainer's moments out to host memory and its weights and moments back in,
 * as GB/s of the bytes moved, against copies of the same direction through
 * a page-locked buffer (what the PCIe link gives) measured in the same run.
 *
 * The engine offloads to and onloads from the host model's own arrays, which
 * are pageable (malloc'd) memory: the ratio to the pinned copies says what
 * registering them with the driver would gain, and a second round with them
 * registered (cudaHostRegister, as train_device.c does) measures it, with
 * the registration's own cost. Random weights; the moments exist (uploaded
 * once) as after a first AdamW step. The "4b" config at
 * --layers 18 (the default) has 2.2 B parameters, about a TP-2 shard of
 * Qwen3-4B (2.01 B): 17.6 GB of moments out, 26.4 GB in.
 *
 * usage: bench_offload_gpu [--config 4b|100m|tiny] [--layers N] [--iters N]
 * Exits 77 without a GPU. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef TAU2_HAVE_CUDA

int main(void) {
    fprintf(stderr, "bench_offload_gpu: this build has no CUDA backend (configure with -DTAU2_CUDA=ON)\n");
    return 2;
}

#else

#include <cuda_runtime_api.h>

#include "kernels.h"
#include "model/qwen3.h"
#include "model/qwen3_gpu.h"

#include "bench_train_common.h"
#include "bench_util.h"

/* GB/s of copies of `bytes` between device buffer dev and host buffer host
 * (page-locked or not), in chunks of at most `chunk` bytes of both: the
 * median of iters runs. */
static double copy_rate(void *dev, void *host, size_t bytes, size_t chunk, bool to_device, int iters) {
    double *t = malloc((size_t)iters * sizeof(double));
    for (int i = 0; i < iters; i++) {
        double t0 = now();
        for (size_t off = 0; off < bytes; off += chunk) {
            size_t n = bytes - off < chunk ? bytes - off : chunk;
            if (to_device) cuda_check(cudaMemcpy(dev, (char *)host + off, n, cudaMemcpyHostToDevice));
            else cuda_check(cudaMemcpy((char *)host + off, dev, n, cudaMemcpyDeviceToHost));
        }
        t[i] = now() - t0;
    }
    qsort(t, (size_t)iters, sizeof(double), cmp_double);
    double rate = (double)bytes / t[iters / 2] / 1e9;
    free(t);
    return rate;
}

/* The median offload and onload times of g over iters rounds, each to and
 * from m's own host arrays. */
static void time_offload(Qwen3Gpu *g, Qwen3 *m, int iters, double *t_off, double *t_on) {
    double *off_t = malloc((size_t)iters * sizeof(double)), *on_t = malloc((size_t)iters * sizeof(double));
    if (!off_t || !on_t) {
        fprintf(stderr, "bench_offload_gpu: out of memory\n");
        exit(1);
    }
    for (int i = 0; i < iters; i++) {
        double t0 = now();
        qwen3_gpu_offload(g, m->m_memory, m->v_memory); /* synchronizes */
        double t1 = now();
        qwen3_gpu_onload(g, m->params_memory, m->m_memory, m->v_memory); /* synchronizes */
        double t2 = now();
        off_t[i] = t1 - t0, on_t[i] = t2 - t1;
    }
    qsort(off_t, (size_t)iters, sizeof(double), cmp_double);
    qsort(on_t, (size_t)iters, sizeof(double), cmp_double);
    *t_off = off_t[iters / 2], *t_on = on_t[iters / 2];
    free(off_t), free(on_t);
}

int main(int argc, char **argv) {
    const char *name = "4b";
    int layers = 18, iters = 3;
    for (int i = 1; i < argc; i++) {
        if (i + 1 < argc && !strcmp(argv[i], "--config")) name = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--layers")) layers = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--iters")) iters = atoi(argv[++i]);
        else {
            fprintf(stderr, "bench_offload_gpu: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    Qwen3Config cfg;
    if (bench_config_named(name, &cfg) != 0 || layers < 1 || iters < 1) {
        fprintf(stderr, "bench_offload_gpu: bad arguments (configs: 4b, 100m, tiny)\n");
        return 2;
    }
    if (cuda_device_count() == 0) {
        printf("bench_offload_gpu: no CUDA device\n");
        return 77;
    }
    if (!strcmp(name, "4b")) cfg.num_layers = layers;
    cuda_device_init(0);
    struct cudaDeviceProp prop;
    cuda_check(cudaGetDeviceProperties(&prop, 0));

    Qwen3 *m = qwen3_new(&cfg);
    bench_init_weights(m);
    qwen3_alloc_moments(m);
    size_t n = m->num_parameters, bytes = n * sizeof(float);
    memset(m->m_memory, 0, bytes);
    memset(m->v_memory, 0, bytes);
    Qwen3Gpu *g = qwen3_gpu_new(m, 0, QWEN3_GPU_BF16);
    qwen3_gpu_upload_moments(g, m->m_memory, m->v_memory, 1);

    double t_off, t_on;
    time_offload(g, m, iters, &t_off, &t_on);
    double out_gb = 2.0 * bytes / 1e9, in_gb = 3.0 * bytes / 1e9; /* m, v out; weights, m, v in */

    /* the same with the three host arrays registered with the driver
     * (page-locked where they are, cudaHostRegister), and what registering
     * and unregistering them costs, once per job */
    float *arrays[3] = {m->params_memory, m->m_memory, m->v_memory};
    double r0 = now();
    for (int i = 0; i < 3; i++) cuda_check(cudaHostRegister(arrays[i], bytes, cudaHostRegisterDefault));
    double t_reg = now() - r0;
    double t_off_reg, t_on_reg;
    time_offload(g, m, iters, &t_off_reg, &t_on_reg);
    r0 = now();
    for (int i = 0; i < 3; i++) cuda_check(cudaHostUnregister(arrays[i]));
    double t_unreg = now() - r0;

    /* the anchors: the same bytes through a page-locked buffer, and from the
     * host model's pageable weights, in chunks of up to 1 GiB */
    size_t chunk = bytes < ((size_t)1 << 30) ? bytes : (size_t)1 << 30;
    qwen3_gpu_free(g); /* room for the copies' device buffer */
    void *dev = NULL, *pinned = NULL;
    cuda_check(cudaMalloc(&dev, chunk));
    cuda_check(cudaMallocHost(&pinned, chunk));
    memset(pinned, 0, chunk);
    double pin_d2h = copy_rate(dev, pinned, chunk, chunk, false, iters);
    double pin_h2d = copy_rate(dev, pinned, chunk, chunk, true, iters);
    double page_d2h = copy_rate(dev, m->m_memory, bytes, chunk, false, iters);
    double page_h2d = copy_rate(dev, m->params_memory, bytes, chunk, true, iters);
    cuda_check(cudaFreeHost(pinned));
    cuda_check(cudaFree(dev));

    double r_off = out_gb / t_off, r_on = in_gb / t_on;
    printf("config %s (%d layers, %.2f B parameters), %s\n", name, cfg.num_layers, n / 1e9, prop.name);
    printf("RESULT offload_gpu %s %d %.4f %.4f %.2f %.2f %.2f %.2f\n", name, cfg.num_layers, t_off, t_on, r_off, r_on,
           pin_d2h, pin_h2d);
    printf("offload %.3f s (moments out, %.1f GB: %.1f GB/s), onload %.3f s (weights and moments in, %.1f GB: "
           "%.1f GB/s)\n", t_off, out_gb, r_off, t_on, in_gb, r_on);
    printf("anchors: page-locked copies device->host %.1f GB/s, host->device %.1f GB/s; pageable %.1f and %.1f GB/s\n",
           pin_d2h, pin_h2d, page_d2h, page_h2d);
    printf("ratio to the page-locked copies: offload %.2f, onload %.2f\n", r_off / pin_d2h, r_on / pin_h2d);
    printf("RESULT offload_gpu_registered %s %d %.4f %.4f %.2f %.2f %.3f %.3f\n", name, cfg.num_layers, t_off_reg,
           t_on_reg, out_gb / t_off_reg, in_gb / t_on_reg, t_reg, t_unreg);
    printf("registered host arrays: offload %.3f s (%.1f GB/s), onload %.3f s (%.1f GB/s): %.2fx and %.2fx the "
           "pageable; registering the %.1f GB took %.3f s, unregistering %.3f s\n", t_off_reg, out_gb / t_off_reg,
           t_on_reg, in_gb / t_on_reg, t_off / t_off_reg, t_on / t_on_reg, 3.0 * bytes / 1e9, t_reg, t_unreg);
    qwen3_free(m);
    return 0;
}

#endif /* TAU2_HAVE_CUDA */
