/* matmul.cu — the matrix products of the linear layers through cuBLAS:
 * bf16 (or fp32) inputs, fp32 accumulation and fp32 outputs, so gradients
 * add into fp32 buffers across micro-batches.
 *
 * cuBLAS is column-major; a row-major (R, K) matrix is the column-major
 * (K, R) matrix, its transpose. So each row-major product X = A B is asked
 * as the column-major X^T = B^T A^T, with the operands swapped:
 *   out  (N, OC) = inp @ w^T   ->  out^T  = w (op T) * inp^T
 *   dinp (N, IC) = dout @ w    ->  dinp^T = w^T      * dout^T
 *   dw  (OC, IC) = dout^T @ inp -> dw^T   = inp^T    * dout (op T)
 */
#include <stdio.h>
#include <stdlib.h>

#include <cublas_v2.h>

#include "common.cuh"

/* cuBLAS's own recommendation for Hopper (32 MiB); plenty for Ampere. */
#define BLAS_WORKSPACE CUDA_BLAS_WORKSPACE_BYTES

struct CudaBlas {
    cublasHandle_t handle;
    void *workspace;
    cudaStream_t stream; /* the handle's stream */
};

/* Puts the handle on stream when it is on another. cublasSetStream also
 * resets the handle to cuBLAS's default workspace pool, so the workspace
 * is set again after it. */
static void blas_use_stream(CudaBlas *b, cudaStream_t stream) {
    if (stream == b->stream) return;
    cublas_check(cublasSetStream(b->handle, stream));
    cublas_check(cublasSetWorkspace(b->handle, b->workspace, BLAS_WORKSPACE));
    b->stream = stream;
}

extern "C" CudaBlas *cuda_blas_new(void) {
    CudaBlas *b = (CudaBlas *)calloc(1, sizeof *b);
    if (!b) {
        fprintf(stderr, "cuda_blas_new: out of memory\n");
        exit(1);
    }
    cublas_check(cublasCreate(&b->handle));
    cuda_check(cudaMalloc(&b->workspace, BLAS_WORKSPACE));
    cublas_check(cublasSetWorkspace(b->handle, b->workspace, BLAS_WORKSPACE));
    /* fp32 products stay fp32 (no TF32): they are the parity reference. */
    cublas_check(cublasSetMathMode(b->handle, CUBLAS_DEFAULT_MATH));
    return b;
}

extern "C" void cuda_blas_free(CudaBlas *b) {
    if (!b) return;
    cublas_check(cublasDestroy(b->handle));
    cuda_check(cudaFree(b->workspace));
    free(b);
}

static cudaDataType_t blas_type(CudaDtype dt) { return dt == CUDA_BF16 ? CUDA_R_16BF : CUDA_R_32F; }

/* Column-major C (m, n) = alpha op(A) op(B) + beta C; A and B of dtype dt,
 * C fp32, fp32 compute. */
static void gemm(CudaBlas *b, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, const void *A, int lda,
                 const void *B, int ldb, float beta, float *C, int ldc, CudaDtype dt, cudaStream_t stream) {
    const float alpha = 1.0f;
    blas_use_stream(b, stream);
    cublas_check(cublasGemmEx(b->handle, ta, tb, m, n, k, &alpha, A, blas_type(dt), lda, B, blas_type(dt), ldb, &beta,
                              C, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

extern "C" void cuda_matmul_forward(CudaBlas *b, float *out, const void *inp, const void *w, CudaDtype dt, int N,
                                    int IC, int OC, cudaStream_t stream) {
    if (N <= 0 || OC <= 0) return;
    gemm(b, CUBLAS_OP_T, CUBLAS_OP_N, OC, N, IC, w, IC, inp, IC, 0.0f, out, OC, dt, stream);
}

extern "C" void cuda_matmul_backward(CudaBlas *b, float *dinp, float *dw, const void *dout, const void *inp,
                                     const void *w, CudaDtype dt, int N, int IC, int OC, bool accumulate_dinp,
                                     cudaStream_t stream) {
    if (N <= 0) return;
    if (dinp) gemm(b, CUBLAS_OP_N, CUBLAS_OP_N, IC, N, OC, w, IC, dout, OC, accumulate_dinp ? 1.0f : 0.0f, dinp, IC,
                   dt, stream);
    gemm(b, CUBLAS_OP_N, CUBLAS_OP_T, IC, OC, N, inp, IC, dout, OC, 1.0f, dw, IC, dt, stream);
}
