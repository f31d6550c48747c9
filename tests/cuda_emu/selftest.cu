/* selftest.cu — checks of the emulator itself (tests/cuda_emu/README.md):
 * barriers, shuffles, dynamic shared memory, bf16 rounding, WMMA products,
 * when cp.async copies land, launch errors, stream capture into graphs, and the detection of a barrier
 * that exited threads never reach. Built
 * like the kernels (transform.py + emu_device.h), run as emu_selftest. */
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <mma.h>
#include <stdio.h>
#include <stdlib.h>

static int g_fail;
#define CHECK(cond, ...)                                                      \
    do {                                                                      \
        if (!(cond)) {                                                        \
            printf("FAIL %s:%d: ", __FILE__, __LINE__), printf(__VA_ARGS__); \
            printf("\n");                                                     \
            g_fail++;                                                         \
        }                                                                     \
    } while (0)

/* y[i] = x[i] * a + y[i]: a is a by-value argument */
__global__ void axpy_kernel(float *y, const float *x, float a, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = x[i] * a + y[i];
}

/* block sum through shared memory with a tree of barriers */
__global__ void block_sum_kernel(const int *x, int *out) {
    __shared__ int sh[256];
    sh[threadIdx.x] = x[blockIdx.x * blockDim.x + threadIdx.x];
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
        __syncthreads();
    }
    if (threadIdx.x == 0) out[blockIdx.x] = sh[0];
}

__global__ void shuffle_kernel(int *out) {
    int lane = threadIdx.x % 32, w = threadIdx.x / 32;
    int *o = out + (size_t)w * 32 * 4;
    o[lane] = __shfl_xor_sync(0xffffffffu, lane * 10, 5);
    o[32 + lane] = __shfl_up_sync(0xffffffffu, lane * 10, 3);
    o[64 + lane] = __shfl_down_sync(0xffffffffu, lane * 10, 3);
    o[96 + lane] = __shfl_sync(0xffffffffu, lane * 10 + w, 7);
}

__global__ void dyn_smem_kernel(float *out) {
    extern __shared__ float buf[];
    buf[threadIdx.x] = (float)threadIdx.x;
    __syncthreads();
    out[blockIdx.x * blockDim.x + threadIdx.x] = buf[blockDim.x - 1 - threadIdx.x];
}

__global__ void early_exit_kernel(int *out) {
    if (threadIdx.x == 5) return; /* undefined behaviour: the barrier below */
    __syncthreads();
    out[threadIdx.x] = 1;
}

/* c (16 x 16) = a (16 x 16, row-major) b (16 x 16, column-major: b[n * 16 + k])
 * + 1, by one warp; `peek` is what lane 0 reads back of the stored tile
 * before (without) and after a __syncwarp. */
__global__ void wmma_kernel(const __nv_bfloat16 *a, const __nv_bfloat16 *b, float *c, float *peek) {
    using namespace nvcuda;
    __shared__ __align__(32) float tile[256];
    wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> fa;
    wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> fb;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> fc;
    wmma::load_matrix_sync(fa, a, 16);
    wmma::load_matrix_sync(fb, b, 16);
    wmma::fill_fragment(fc, 1.0f);
    wmma::mma_sync(fc, fa, fb, fc);
    wmma::store_matrix_sync(tile, fc, 16, wmma::mem_row_major);
    /* element 255 is lane 31's; in the forward order lane 31 has not run yet */
    if (threadIdx.x == 0) peek[0] = tile[255];
    __syncwarp();
    if (threadIdx.x == 0) peek[1] = tile[255];
    wmma::store_matrix_sync(c, fc, 16, wmma::mem_row_major);
}

__global__ void bf16_kernel(const float *x, __nv_bfloat16 *y, float *back, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        y[i] = __float2bfloat16_rn(x[i]);
        back[i] = __bfloat162float(y[i]);
    }
}

/* cp.async (kernels/mma.cuh's emu_ twins): a copy lands only at the wait
 * that covers its group; out gets what the thread saw at each point */
__global__ void cp_async_kernel(const int *src, int *out) {
    __shared__ __align__(16) int sh[8];
    for (int i = 0; i < 8; i++) sh[i] = -1;
    emu_cp_async_16(sh, src, true);
    emu_cp_async_commit();
    emu_cp_async_16(sh + 4, src + 4, true);
    emu_cp_async_commit();
    out[0] = sh[0];          /* -1: nothing waited for */
    emu_cp_async_wait(1);    /* the first group only */
    out[1] = sh[0], out[2] = sh[4];
    emu_cp_async_16(sh, src, false); /* zero fill, not committed yet */
    emu_cp_async_wait(0);    /* the second group; the uncommitted copy stays queued */
    out[3] = sh[4], out[4] = sh[0];
    emu_cp_async_commit();
    emu_cp_async_wait(0);
    out[5] = sh[0];
}

int main(void) {
    int n_dev = 0;
    CHECK(cudaGetDeviceCount(&n_dev) == cudaSuccess && n_dev == 1, "device count %d", n_dev);

    /* block sums, 4 blocks of 256 */
    int hx[1024], hs[4];
    for (int i = 0; i < 1024; i++) hx[i] = i;
    int *dx, *ds;
    cudaMalloc((void **)&dx, sizeof hx);
    cudaMalloc((void **)&ds, sizeof hs);
    cudaMemcpy(dx, hx, sizeof hx, cudaMemcpyHostToDevice);
    block_sum_kernel<<<4, 256>>>(dx, ds);
    CHECK(cudaGetLastError() == cudaSuccess, "block_sum launch");
    cudaMemcpy(hs, ds, sizeof hs, cudaMemcpyDeviceToHost);
    for (int b = 0; b < 4; b++) {
        int want = 0;
        for (int i = 0; i < 256; i++) want += b * 256 + i;
        CHECK(hs[b] == want, "block %d sum %d want %d", b, hs[b], want);
    }

    /* shuffles, 2 warps */
    int *dsh, hsh[2 * 128];
    cudaMalloc((void **)&dsh, sizeof hsh);
    shuffle_kernel<<<1, 64>>>(dsh);
    cudaMemcpy(hsh, dsh, sizeof hsh, cudaMemcpyDeviceToHost);
    for (int w = 0; w < 2; w++)
        for (int l = 0; l < 32; l++) {
            const int *o = hsh + w * 128;
            CHECK(o[l] == (l ^ 5) * 10, "xor lane %d: %d", l, o[l]);
            CHECK(o[32 + l] == (l >= 3 ? l - 3 : l) * 10, "up lane %d: %d", l, o[32 + l]);
            CHECK(o[64 + l] == (l + 3 < 32 ? l + 3 : l) * 10, "down lane %d: %d", l, o[64 + l]);
            CHECK(o[96 + l] == 70 + w, "idx lane %d: %d", l, o[96 + l]);
        }

    /* dynamic shared memory, and its limit without cudaFuncSetAttribute */
    float *dout, hout[3 * 128];
    cudaMalloc((void **)&dout, sizeof hout);
    dyn_smem_kernel<<<3, 128, 128 * sizeof(float)>>>(dout);
    CHECK(cudaGetLastError() == cudaSuccess, "dyn_smem launch");
    cudaMemcpy(hout, dout, sizeof hout, cudaMemcpyDeviceToHost);
    for (int i = 0; i < 3 * 128; i++) CHECK(hout[i] == (float)(127 - i % 128), "dyn smem [%d] %g", i, hout[i]);
    setenv("TAU2_CUDA_EMU_QUIET", "1", 1);
    dyn_smem_kernel<<<1, 128, 64 << 10>>>(dout);
    CHECK(cudaGetLastError() == cudaErrorInvalidValue, "64 KiB of dynamic smem without the attribute must fail");
    CHECK(cudaFuncSetAttribute(dyn_smem_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 64 << 10) == cudaSuccess,
          "set attribute");
    dyn_smem_kernel<<<1, 128, 64 << 10>>>(dout);
    CHECK(cudaGetLastError() == cudaSuccess, "64 KiB with the attribute");
    dyn_smem_kernel<<<1, 1025>>>(dout);
    CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration, "1025 threads must fail");

    /* copies are checked against the allocation registry */
    CHECK(cudaMemcpy(hx, dx, sizeof hx, cudaMemcpyHostToDevice) == cudaErrorInvalidValue, "H2D with swapped sides");
    CHECK(cudaMemcpy(hx, dx, sizeof hx + 4, cudaMemcpyDeviceToHost) == cudaErrorInvalidValue, "D2H past the end");
    CHECK(cudaMemset(hx, 0, 4) == cudaErrorInvalidValue, "memset of host memory");
    (void)cudaGetLastError();
    unsetenv("TAU2_CUDA_EMU_QUIET");

    /* bf16: round to nearest even */
    float hb[6] = {1.0f, 1.00390625f /* halfway, even: down */, 1.01171875f /* halfway, odd: up */, -3.14159f,
                   3.0e38f, 1e-40f};
    float want[6] = {1.0f, 1.0f, 1.015625f, -3.140625f, 2.9979e38f, 0};
    float *dbf, *dback, hback[6];
    __nv_bfloat16 *dy;
    cudaMalloc((void **)&dbf, sizeof hb);
    cudaMalloc((void **)&dback, sizeof hback);
    cudaMalloc((void **)&dy, 6 * sizeof(__nv_bfloat16));
    cudaMemcpy(dbf, hb, sizeof hb, cudaMemcpyHostToDevice);
    bf16_kernel<<<1, 32>>>(dbf, dy, dback, 6);
    cudaMemcpy(hback, dback, sizeof hback, cudaMemcpyDeviceToHost);
    for (int i = 0; i < 4; i++) CHECK(hback[i] == want[i], "bf16 [%d] %.9g -> %.9g want %.9g", i, hb[i], hback[i], want[i]);
    CHECK(fabsf(hback[4] - want[4]) < 1e36f, "bf16 large %.9g", hback[4]);

    /* WMMA: the product, and a lane sees the others' parts of a stored tile only after __syncwarp */
    {
        __nv_bfloat16 ha[256], hbm[256];
        float ref[256], hc[256], hpeek[2];
        for (int i = 0; i < 256; i++) {
            ha[i] = __float2bfloat16((float)(i % 7) - 3.0f);
            hbm[i] = __float2bfloat16(0.5f * (float)(i % 5) - 1.0f);
        }
        for (int r = 0; r < 16; r++)
            for (int n = 0; n < 16; n++) {
                float acc = 1.0f;
                for (int k = 0; k < 16; k++) acc += (float)ha[r * 16 + k] * (float)hbm[n * 16 + k];
                ref[r * 16 + n] = acc;
            }
        __nv_bfloat16 *da, *db;
        float *dc, *dpeek;
        cudaMalloc((void **)&da, sizeof ha);
        cudaMalloc((void **)&db, sizeof hbm);
        cudaMalloc((void **)&dc, sizeof hc);
        cudaMalloc((void **)&dpeek, sizeof hpeek);
        cudaMemcpy(da, ha, sizeof ha, cudaMemcpyHostToDevice);
        cudaMemcpy(db, hbm, sizeof hbm, cudaMemcpyHostToDevice);
        wmma_kernel<<<1, 32>>>(da, db, dc, dpeek);
        CHECK(cudaGetLastError() == cudaSuccess, "wmma launch");
        cudaMemcpy(hc, dc, sizeof hc, cudaMemcpyDeviceToHost);
        cudaMemcpy(hpeek, dpeek, sizeof hpeek, cudaMemcpyDeviceToHost);
        for (int i = 0; i < 256; i++) CHECK(hc[i] == ref[i], "wmma c[%d] %g want %g", i, hc[i], ref[i]);
        CHECK(hpeek[0] != ref[255], "a stored tile's other lanes' parts must be missing before __syncwarp");
        CHECK(hpeek[1] == ref[255], "wmma tile after __syncwarp %g want %g", hpeek[1], ref[255]);
    }

    {
        int hsrc[8] = {10, 11, 12, 13, 14, 15, 16, 17}, hout[6];
        int *dsrc, *dout;
        cudaMalloc((void **)&dsrc, sizeof hsrc);
        cudaMalloc((void **)&dout, sizeof hout);
        cudaMemcpy(dsrc, hsrc, sizeof hsrc, cudaMemcpyHostToDevice);
        cp_async_kernel<<<1, 1>>>(dsrc, dout);
        CHECK(cudaGetLastError() == cudaSuccess, "cp.async launch");
        cudaMemcpy(hout, dout, sizeof hout, cudaMemcpyDeviceToHost);
        const int want[6] = {-1, 10, -1, 14, 10, 0};
        for (int i = 0; i < 6; i++) CHECK(hout[i] == want[i], "cp.async step %d saw %d, want %d", i, hout[i], want[i]);
        cudaFree(dsrc), cudaFree(dout);
    }

    /* stream capture: the captured work runs at each launch of the graph,
     * not at capture; arguments by value as they were at capture, memory
     * as it is at the launch; calls CUDA refuses under capture invalidate
     * it */
    {
        const int n = 300;
        cudaStream_t st;
        cudaStreamCreate(&st);
        float *dx, *dy, *hpin, hy[n];
        cudaMalloc((void **)&dx, n * sizeof(float));
        cudaMalloc((void **)&dy, n * sizeof(float));
        cudaMallocHost((void **)&hpin, n * sizeof(float));
        for (int i = 0; i < n; i++) hpin[i] = (float)i;
        float a = 2.0f;
        CHECK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal) == cudaSuccess, "begin capture");
        cudaStreamCaptureStatus cs;
        CHECK(cudaStreamIsCapturing(st, &cs) == cudaSuccess && cs == cudaStreamCaptureStatusActive, "capturing");
        cudaMemcpyAsync(dx, hpin, n * sizeof(float), cudaMemcpyHostToDevice, st);
        cudaMemsetAsync(dy, 0, n * sizeof(float), st);
        axpy_kernel<<<(n + 127) / 128, 128, 0, st>>>(dy, dx, a, n);
        axpy_kernel<<<(n + 127) / 128, 128, 0, st>>>(dy, dx, a, n);
        a = 100.0f; /* too late: the nodes hold 2 */
        cudaGraph_t g;
        CHECK(cudaStreamEndCapture(st, &g) == cudaSuccess && g, "end capture");
        cudaGraphExec_t ge;
        CHECK(cudaGraphInstantiate(&ge, g, 0) == cudaSuccess, "instantiate");
        cudaGraphDestroy(g); /* the executable keeps its nodes */
        float probe = -1.0f;
        cudaMemcpy(&probe, dy, sizeof(float), cudaMemcpyDeviceToHost);
        CHECK(probe != 0.0f, "captured work must not run at capture");
        for (int round = 0; round < 2; round++) {
            for (int i = 0; i < n; i++) hpin[i] = (float)(i + round); /* read at the launch */
            CHECK(cudaGraphLaunch(ge, st) == cudaSuccess, "graph launch");
            cudaStreamSynchronize(st);
            cudaMemcpy(hy, dy, sizeof hy, cudaMemcpyDeviceToHost);
            bool ok = true;
            for (int i = 0; i < n; i++) ok &= hy[i] == 4.0f * (float)(i + round);
            CHECK(ok, "graph launch %d: y = 2 x + 2 x from the pinned input as it is at the launch", round);
        }
        cudaGraphExecDestroy(ge);

        setenv("TAU2_CUDA_EMU_QUIET", "1", 1);
        float hpage[4] = {0, 0, 0, 0};
        void *dm = NULL;
        cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal);
        CHECK(cudaMalloc(&dm, 64) == cudaErrorStreamCaptureUnsupported, "cudaMalloc under capture is refused");
        CHECK(cudaStreamIsCapturing(st, &cs) == cudaSuccess && cs == cudaStreamCaptureStatusInvalidated, "invalidated");
        CHECK(cudaStreamEndCapture(st, &g) == cudaErrorStreamCaptureInvalidated && !g, "an invalid capture ends in error");
        cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal);
        CHECK(cudaMemcpyAsync(dx, hpage, sizeof hpage, cudaMemcpyHostToDevice, st) == cudaErrorStreamCaptureUnsupported,
              "a pageable copy under capture is refused");
        cudaStreamEndCapture(st, &g);
        cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal);
        CHECK(cudaStreamSynchronize(st) == cudaErrorStreamCaptureUnsupported, "synchronizing the captured stream");
        cudaStreamEndCapture(st, &g);
        unsetenv("TAU2_CUDA_EMU_QUIET");
        cudaGetLastError();
        cudaFree(dx), cudaFree(dy), cudaFreeHost(hpin);
        cudaStreamDestroy(st);
    }

    /* a barrier that an exited thread never reaches: reported as a launch failure */
    setenv("TAU2_CUDA_EMU_CONTINUE", "1", 1);
    int *dee;
    cudaMalloc((void **)&dee, 64 * sizeof(int));
    printf("(an expected KERNEL BUG report follows)\n");
    fflush(stdout);
    early_exit_kernel<<<1, 64>>>(dee);
    CHECK(cudaGetLastError() == cudaErrorLaunchFailure, "exited thread before a barrier must be reported");

    printf(g_fail ? "FAILED: %d failure(s)\n" : "passed\n", g_fail);
    return g_fail ? 1 : 0;
}
