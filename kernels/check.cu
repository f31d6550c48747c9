/* check.cu — checked CUDA/cuBLAS calls and device setup. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "kernels.h"

extern "C" void cuda_check_at(cudaError_t rc, const char *what, const char *file, int line) {
    if (rc == cudaSuccess) return;
    fprintf(stderr, "%s:%d: CUDA error %s (%s) in %s\n", file, line, cudaGetErrorName(rc), cudaGetErrorString(rc),
            what);
    exit(1);
}

extern "C" void cublas_check_at(int status, const char *what, const char *file, int line) {
    if (status == CUBLAS_STATUS_SUCCESS) return;
    fprintf(stderr, "%s:%d: cuBLAS error %s (%s) in %s\n", file, line,
            cublasGetStatusName((cublasStatus_t)status), cublasGetStatusString((cublasStatus_t)status), what);
    exit(1);
}

extern "C" int cuda_device_count(void) {
    int n = 0;
    /* No driver or no GPU is a normal answer here, not an error. */
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError(); /* clear the sticky error for later calls */
        return 0;
    }
    return n;
}

extern "C" void cuda_device_init(int dev) {
    cuda_check(cudaSetDevice(dev));
    /* The default pool would hand freed scratch back to the driver at every
     * synchronization; keeping it makes cudaMallocAsync a pointer bump. */
    cudaMemPool_t pool;
    cuda_check(cudaDeviceGetDefaultMemPool(&pool, dev));
    uint64_t keep = UINT64_MAX;
    cuda_check(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep));
}

extern "C" void cuda_pool_trim(void) {
    int dev = 0;
    cuda_check(cudaGetDevice(&dev));
    /* memory freed on a stream returns to the pool when that work ends */
    cuda_check(cudaDeviceSynchronize());
    cudaMemPool_t pool;
    cuda_check(cudaDeviceGetDefaultMemPool(&pool, dev));
    cuda_check(cudaMemPoolTrimTo(pool, 0));
}

extern "C" bool cuda_host_register(void *p, size_t bytes, char *err, size_t errlen) {
    if (!p || !bytes) {
        snprintf(err, errlen, "nothing to register");
        return false;
    }
    cudaError_t e = cudaHostRegister(p, bytes, cudaHostRegisterDefault);
    if (e == cudaSuccess) return true;
    snprintf(err, errlen, "%s", cudaGetErrorString(e));
    (void)cudaGetLastError(); /* not sticky: the memory stays pageable */
    return false;
}

extern "C" void cuda_host_unregister(void *p) {
    if (p) cuda_check(cudaHostUnregister(p));
}

/* Per host thread: the inference engine turns it on around a step's
 * launches, a training step on another thread is not affected. */
static thread_local bool dependent_launch = false;

extern "C" bool cuda_dependent_launch_available(void) {
    int dev = 0, major = 0;
    cuda_check(cudaGetDevice(&dev));
    cuda_check(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
    return major >= 9;
}

extern "C" bool cuda_dependent_launch_set(bool on) {
    dependent_launch = on && cuda_dependent_launch_available();
    return dependent_launch;
}

extern "C" bool cuda_dependent_launch_on(void) { return dependent_launch; }
