/* emu_cublas.cpp — the cuBLAS calls of kernels/matmul.cu over host memory:
 * column-major GEMM with fp32 or bf16 operands and fp32 accumulation (the
 * operands widened to fp32, the product through the CPU's BLAS). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <functional>
#include <vector>

#include <cblas.h>
#include <cublas_v2.h>

#include "kernels.h" /* CUDA_BLAS_HANDLE_BYTES */

struct EmuBlas {
    cudaStream_t stream;
    void *workspace;
    size_t workspace_bytes;
};

static cublasStatus_t bad(const char *fmt, const char *what) {
    fprintf(stderr, "cuda-emu: cuBLAS: %s: %s\n", what, fmt);
    return CUBLAS_STATUS_INVALID_VALUE;
}

/* Whether [p, p + bytes) is device memory (emu_runtime.cpp's registry). */
static bool dev_range(const void *p, size_t bytes) {
    cudaPointerAttributes a;
    if (cudaPointerGetAttributes(&a, p) != cudaSuccess || a.type != cudaMemoryTypeDevice) return false;
    if (bytes == 0) return true;
    if (cudaPointerGetAttributes(&a, (const char *)p + bytes - 1) != cudaSuccess || a.type != cudaMemoryTypeDevice)
        return false;
    return true;
}

/* emu_runtime.cpp: work for a stream being captured becomes a graph node */
bool emu_capture_add(cudaStream_t stream, std::function<void()> node);

static float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

extern "C" {

bool tau2_cuda_emu_hold(long bytes); /* emu_runtime.cpp */

/* What a handle takes of device memory for itself, beyond the workspace it
 * is given: what the plans count (CUDA_BLAS_HANDLE_BYTES, cuBLAS's on an
 * H100 with CUDA 13.0), given back when it is destroyed. */
static const long HANDLE_BYTES = (long)CUDA_BLAS_HANDLE_BYTES;

cublasStatus_t cublasCreate_v2(cublasHandle_t *h) {
    if (!h) return CUBLAS_STATUS_INVALID_VALUE;
    if (!tau2_cuda_emu_hold(HANDLE_BYTES)) return CUBLAS_STATUS_ALLOC_FAILED;
    *h = (cublasHandle_t)(new EmuBlas{0, 0, 0});
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy_v2(cublasHandle_t h) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    delete (EmuBlas *)h;
    tau2_cuda_emu_hold(-HANDLE_BYTES);
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream_v2(cublasHandle_t h, cudaStream_t s) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    ((EmuBlas *)h)->stream = s;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasGetStream_v2(cublasHandle_t h, cudaStream_t *s) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    *s = ((EmuBlas *)h)->stream;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetWorkspace_v2(cublasHandle_t h, void *w, size_t bytes) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (bytes && !dev_range(w, bytes)) return bad("workspace is not device memory", "cublasSetWorkspace");
    ((EmuBlas *)h)->workspace = w;
    ((EmuBlas *)h)->workspace_bytes = bytes;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t mode) {
    (void)mode;
    return h ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_INITIALIZED;
}
const char *cublasGetStatusName(cublasStatus_t s) {
    switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return "CUBLAS_STATUS_(emu other)";
    }
}
const char *cublasGetStatusString(cublasStatus_t s) {
    switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "success";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "the library was not initialized";
    case CUBLAS_STATUS_INVALID_VALUE: return "an invalid numeric value was used as an argument";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "the functionality requested is not supported";
    default: return "error (cuda emulator)";
    }
}

/* op(X) as a dense row-major (rows, k) fp32 matrix: row r is element (r, l)
 * of op(X), l = 0..k-1. X is column-major (ld) of type t. */
static void op_rows(std::vector<float> &out, const void *X, cudaDataType_t t, int ld, cublasOperation_t op, int rows,
                    int k) {
    out.resize((size_t)rows * k);
    for (int r = 0; r < rows; r++)
        for (int l = 0; l < k; l++) {
            /* op N: element (r, l) of X at r + l*ld; op T: element (l, r) at l + r*ld */
            size_t idx = op == CUBLAS_OP_N ? (size_t)r + (size_t)l * ld : (size_t)l + (size_t)r * ld;
            out[(size_t)r * k + l] = t == CUDA_R_16BF ? bf16_to_f32(((const uint16_t *)X)[idx]) : ((const float *)X)[idx];
        }
}

} /* extern "C" */

/* C = al op(A) op(B) + be C, the operands widened to fp32 (checked by
 * the caller). */
static void gemm_now(cublasOperation_t transa, cublasOperation_t transb, int m, int n, int k, float al, const void *A,
                     cudaDataType_t Atype, int lda, const void *B, int ldb, float be, float *c, int ldc) {
    std::vector<float> a, b;
    op_rows(a, A, Atype, lda, transa, m, k);
    /* row j of b: column j of op(B), i.e. row j of op(B)^T */
    op_rows(b, B, Atype, ldb, transb == CUBLAS_OP_N ? CUBLAS_OP_T : CUBLAS_OP_N, n, k); /* Btype == Atype */
    /* TAU2_CUDA_EMU_GEMM_F64: products summed in double (an accuracy
     * reference: the differences a test sees then come from elsewhere) */
    static const bool f64 = getenv("TAU2_CUDA_EMU_GEMM_F64") != NULL;
    if (f64) {
        for (int j = 0; j < n; j++)
            for (int i = 0; i < m; i++) {
                const float *ai = &a[(size_t)i * k], *bj = &b[(size_t)j * k];
                double dot = 0.0;
                for (int l = 0; l < k; l++) dot += (double)ai[l] * bj[l];
                float *cij = &c[(size_t)i + (size_t)j * ldc];
                *cij = be == 0.0f ? (float)(al * dot) : (float)(al * dot + (double)be * *cij);
            }
        return;
    }
    /* The fp32 sums through OpenBLAS: another summation order than
     * cuBLAS's, as any is, and fast enough for the mid-size parity tests.
     * beta 0: C is not read (it may be NaN), as cuBLAS promises. */
    if (k == 0) {
        for (int j = 0; j < n; j++)
            for (int i = 0; i < m; i++) {
                float *cij = &c[(size_t)i + (size_t)j * ldc];
                *cij = be == 0.0f ? 0.0f : be * *cij;
            }
        return;
    }
    cblas_sgemm(CblasColMajor, CblasTrans, CblasNoTrans, m, n, k, al, a.data(), k, b.data(), k, be, c, ldc);
}

extern "C" {

cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
                            int k, const void *alpha, const void *A, cudaDataType_t Atype, int lda, const void *B,
                            cudaDataType_t Btype, int ldb, const void *beta, void *C, cudaDataType_t Ctype, int ldc,
                            cublasComputeType_t computeType, cublasGemmAlgo_t algo) {
    (void)algo;
    const char *what = "cublasGemmEx";
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (m < 0 || n < 0 || k < 0) return bad("negative size", what);
    if ((transa != CUBLAS_OP_N && transa != CUBLAS_OP_T) || (transb != CUBLAS_OP_N && transb != CUBLAS_OP_T))
        return bad("only OP_N and OP_T are emulated", what);
    if (!((Atype == CUDA_R_32F || Atype == CUDA_R_16BF) && Btype == Atype && Ctype == CUDA_R_32F &&
          (computeType == CUBLAS_COMPUTE_32F || computeType == CUBLAS_COMPUTE_32F_FAST_TF32)))
        return bad("only A, B fp32 or bf16, C fp32, compute fp32 are emulated", what);
    /* cuBLAS's checks: leading dimensions at least the stored rows */
    int arows = transa == CUBLAS_OP_N ? m : k, brows = transb == CUBLAS_OP_N ? k : n;
    if (lda < (arows > 1 ? arows : 1) || ldb < (brows > 1 ? brows : 1) || ldc < (m > 1 ? m : 1))
        return bad("leading dimension too small", what);
    if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
    float al = *(const float *)alpha, be = *(const float *)beta; /* host pointer mode */
    size_t es = Atype == CUDA_R_16BF ? 2 : 4;
    int acols = transa == CUBLAS_OP_N ? k : m, bcols = transb == CUBLAS_OP_N ? n : k;
    if (k > 0 && !dev_range(A, ((size_t)(acols - 1) * lda + arows) * es)) return bad("A is not (all) device memory", what);
    if (k > 0 && !dev_range(B, ((size_t)(bcols - 1) * ldb + brows) * es)) return bad("B is not (all) device memory", what);
    if (!dev_range(C, ((size_t)(n - 1) * ldc + m) * 4)) return bad("C is not (all) device memory", what);
    /* captured into a graph: the product is made at each launch of it,
     * from the memory as it is then (alpha and beta by value, as cuBLAS's
     * host pointer mode) */
    auto run = [=] { gemm_now(transa, transb, m, n, k, al, A, Atype, lda, B, ldb, be, (float *)C, ldc); };
    if (!emu_capture_add(((EmuBlas *)handle)->stream, run)) run();
    return CUBLAS_STATUS_SUCCESS;
}

} /* extern "C" */
