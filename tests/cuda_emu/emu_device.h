/* emu_device.h — force-included (-include) into every kernels/*.cu compiled
 * as C++ by the CUDA emulation (tests/cuda_emu/README.md).
 *
 * It takes the real CUDA headers in host mode for the types (dim3, float4,
 * cudaError_t, __nv_bfloat16, cuBLAS) and then defines the device side:
 * the execution-space keywords, the built-in index variables, barriers,
 * warp shuffles, atomics and the float intrinsics the kernels use. Kernels
 * run as cooperative fibers (emu_runtime.cpp): a thread runs until it
 * reaches __syncthreads or a warp collective, where it yields. */
#ifndef TAU2_CUDA_EMU_DEVICE_H
#define TAU2_CUDA_EMU_DEVICE_H

#ifndef __cplusplus
#error "emu_device.h is for the kernels compiled as C++"
#endif

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tuple>
#include <type_traits>
#include <utility>

#include <cuda_runtime.h>
#include <cuda_bf16.h>

#undef __global__
#undef __device__
#undef __host__
#undef __forceinline__
#undef __noinline__
#undef __launch_bounds__
#undef __shared__
#undef __constant__
#undef __restrict__
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __restrict__ __restrict
/* Static shared memory: a function-local static. Blocks run one after
 * another, so one copy serves every block (not zeroed, as on a GPU). */
#define __shared__ static
#define __constant__ static

/* ---- the runtime side (emu_runtime.cpp) ---- */
extern "C" {
extern uint3 threadIdx;
extern uint3 blockIdx;
extern dim3 blockDim;
extern dim3 gridDim;
void emu_syncthreads(void);
/* Deposits this lane's 64 bits for a warp collective over mask; returns the
 * 32 lanes' deposits once every lane of mask (that exists) has arrived. */
const uint64_t *emu_warp_exchange(uint64_t mine, unsigned mask);
void *emu_dynamic_smem(void);
/* programmatic: launched as a programmatic dependent of the stream's
 * previous kernel (common.cuh's launch_dependent): then every thread must
 * pass emu_grid_dependency_wait before it exits. */
void emu_launch_kernel(const char *name, const void *func, dim3 grid, dim3 block, size_t smem,
                       cudaStream_t stream, bool programmatic, void (*body)(void *), void *ctx);
/* Stream capture (graphs): whether stream is being captured, and a launch
 * recorded as a node that owns ctx (freed by del). */
bool emu_capture_active(cudaStream_t stream);
void emu_capture_kernel(const char *name, const void *func, dim3 grid, dim3 block, size_t smem,
                        cudaStream_t stream, bool programmatic, void (*body)(void *), void *ctx,
                        void (*del)(void *));
/* griddepcontrol.wait: launches run one after another here, so the
 * previous kernel is complete; it records that this thread waited. */
void emu_grid_dependency_wait(void);
}
static const int warpSize = 32;

static inline void __syncthreads(void) { emu_syncthreads(); }
static inline void __syncwarp(unsigned mask = 0xffffffffu) { (void)emu_warp_exchange(0, mask); }
static inline void __threadfence(void) {}
static inline void __threadfence_block(void) {}

/* ---- warp collectives ---- */
template <class T> static inline uint64_t emu_bits(T v) {
    static_assert(sizeof(T) <= 8, "shuffle of a type over 8 bytes");
    uint64_t b = 0;
    memcpy(&b, &v, sizeof v);
    return b;
}
template <class T> static inline T emu_from_bits(uint64_t b) {
    T v;
    memcpy(&v, &b, sizeof v);
    return v;
}
static inline int emu_lane(void) { return (int)((threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z)) % 32); }

template <class T> static inline T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
    const uint64_t *all = emu_warp_exchange(emu_bits(v), mask);
    int lane = emu_lane(), base = lane & ~(width - 1);
    return emu_from_bits<T>(all[base + (src & (width - 1))]);
}
template <class T> static inline T __shfl_xor_sync(unsigned mask, T v, int o, int width = 32) {
    const uint64_t *all = emu_warp_exchange(emu_bits(v), mask);
    int lane = emu_lane(), s = lane ^ o;
    if ((s & ~(width - 1)) != (lane & ~(width - 1))) s = lane;
    return emu_from_bits<T>(all[s]);
}
template <class T> static inline T __shfl_up_sync(unsigned mask, T v, unsigned d, int width = 32) {
    const uint64_t *all = emu_warp_exchange(emu_bits(v), mask);
    int lane = emu_lane(), s = lane - (int)d;
    if (s < (lane & ~(width - 1))) s = lane;
    return emu_from_bits<T>(all[s]);
}
template <class T> static inline T __shfl_down_sync(unsigned mask, T v, unsigned d, int width = 32) {
    const uint64_t *all = emu_warp_exchange(emu_bits(v), mask);
    int lane = emu_lane(), s = lane + (int)d;
    if (s >= (lane & ~(width - 1)) + width) s = lane;
    return emu_from_bits<T>(all[s]);
}
static inline unsigned __ballot_sync(unsigned mask, int pred) {
    const uint64_t *all = emu_warp_exchange(pred ? 1u : 0u, mask);
    unsigned r = 0;
    for (int i = 0; i < 32; i++)
        if (((mask >> i) & 1u) && all[i]) r |= 1u << i;
    return r;
}
static inline int __all_sync(unsigned mask, int pred) { return __ballot_sync(mask, pred) == (mask & __ballot_sync(mask, 1)); }
static inline int __any_sync(unsigned mask, int pred) { return __ballot_sync(mask, pred) != 0; }

/* ---- atomics: fibers never preempt each other, so plain read-modify-write ---- */
template <class T, class U> static inline T atomicAdd(T *p, U v) { T old = *p; *p = (T)(old + (T)v); return old; }
template <class T, class U> static inline T atomicSub(T *p, U v) { T old = *p; *p = (T)(old - (T)v); return old; }
template <class T, class U> static inline T atomicMax(T *p, U v) { T old = *p; if ((T)v > old) *p = (T)v; return old; }
template <class T, class U> static inline T atomicMin(T *p, U v) { T old = *p; if ((T)v < old) *p = (T)v; return old; }
template <class T, class U> static inline T atomicExch(T *p, U v) { T old = *p; *p = (T)v; return old; }
template <class T, class U> static inline T atomicOr(T *p, U v) { T old = *p; *p = old | (T)v; return old; }
template <class T, class U> static inline T atomicAnd(T *p, U v) { T old = *p; *p = old & (T)v; return old; }
template <class T, class U, class V> static inline T atomicCAS(T *p, U cmp, V v) {
    T old = *p;
    if (old == (T)cmp) *p = (T)v;
    return old;
}

/* ---- integer min/max of device code ---- */
template <class A, class B>
static inline typename std::enable_if<std::is_arithmetic<A>::value && std::is_arithmetic<B>::value,
                                      typename std::common_type<A, B>::type>::type
min(A a, B b) { typedef typename std::common_type<A, B>::type C; return (C)a < (C)b ? (C)a : (C)b; }
template <class A, class B>
static inline typename std::enable_if<std::is_arithmetic<A>::value && std::is_arithmetic<B>::value,
                                      typename std::common_type<A, B>::type>::type
max(A a, B b) { typedef typename std::common_type<A, B>::type C; return (C)a > (C)b ? (C)a : (C)b; }

/* ---- float intrinsics (no contraction: the kernels' _rn calls exist to forbid it) ---- */
static inline float __fadd_rn(float a, float b) { volatile float r = a + b; return r; }
static inline float __fsub_rn(float a, float b) { volatile float r = a - b; return r; }
static inline float __fmul_rn(float a, float b) { volatile float r = a * b; return r; }
static inline float __fdiv_rn(float a, float b) { volatile float r = a / b; return r; }
static inline double __dadd_rn(double a, double b) { volatile double r = a + b; return r; }
static inline double __dmul_rn(double a, double b) { volatile double r = a * b; return r; }
/* glibc's math.h declares its own __expf & co.: macros keep the kernels off them. */
#define __expf(x) expf(x)
#define __logf(x) logf(x)
#define __sinf(x) sinf(x)
#define __cosf(x) cosf(x)
#define __powf(x, y) powf(x, y)
static inline float __fdividef(float a, float b) { return a / b; }
static inline float __frcp_rn(float x) { return 1.0f / x; }
static inline float __fsqrt_rn(float x) { return sqrtf(x); }
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }
static inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }
static inline float __uint_as_float(unsigned i) { float f; memcpy(&f, &i, 4); return f; }
static inline int __float_as_int(float f) { int i; memcpy(&i, &f, 4); return i; }
static inline unsigned __float_as_uint(float f) { unsigned i; memcpy(&i, &f, 4); return i; }
static inline long long __double_as_longlong(double d) { long long i; memcpy(&i, &d, 8); return i; }
static inline double __longlong_as_double(long long i) { double d; memcpy(&d, &i, 8); return d; }
static inline unsigned long long __double2ull_rn(double d) { return (unsigned long long)nearbyint(d); }
static inline long long __double2ll_rn(double d) { return (long long)nearbyint(d); }
static inline int __float2int_rn(float f) { return (int)nearbyintf(f); }
static inline int __popc(unsigned x) { return __builtin_popcount(x); }
/* a cache-hinted (streaming) load: the hint means nothing here */
template <class T> static inline T __ldcs(const T *p) { return *p; }
static inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
static inline int __clz(int x) { return x ? __builtin_clz((unsigned)x) : 32; }
static inline int __ffs(int x) { return __builtin_ffs(x); }

/* ---- WMMA (nvcuda::wmma), 16 x 16 x 16 tiles only ----
 * <mma.h> declares nothing outside nvcc, so the emulation defines the API.
 * A fragment's element-to-lane mapping is unspecified on the GPU; here
 * every lane has room for the whole 16 x 16 tile (element i = row * 16 +
 * col) and owns the accumulator elements i with i % 32 == lane, that is
 * rows lane / 16 + 2j of column lane % 16: mma_sync computes and
 * store_matrix_sync writes only those. A lane loads what its part of the
 * product reads and nothing more: of matrix_a the rows of its parity, of
 * matrix_b its column, of an accumulator its own elements (a load of the
 * whole tile per lane cost a fifth of the mid-size test's time). So a lane that
 * reads a tile stored by the warp without a __syncwarp() in between finds
 * the other lanes' parts missing, as on a GPU. Pointers must be 32-byte
 * aligned and ldm a multiple of 16 bytes, as the hardware requires. */
namespace nvcuda {
namespace wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <class Use, int M, int N, int K, class T, class Layout = void> struct fragment {
    static_assert(M == 16 && N == 16 && K == 16, "the emulation knows 16 x 16 x 16 fragments only");
    enum { num_elements = 256 };
    typedef T element_type;
    T x[256];
};

static inline void emu_wmma_check(const void *p, unsigned ldm, size_t elem, const char *what) {
    if (((uintptr_t)p & 31u) || (ldm * elem) % 16u) {
        fprintf(stderr, "cuda-emu: wmma::%s: pointer %p must be 32-byte aligned and ldm %u (%zu-byte elements) a "
                "multiple of 16 bytes\n", what, p, ldm, elem);
        abort();
    }
}

/* Element (r, c) of a tile at p with leading dimension ldm. */
template <class T> static inline T emu_wmma_at(const T *p, unsigned ldm, bool col, int r, int c) {
    return col ? p[(size_t)c * ldm + r] : p[(size_t)r * ldm + c];
}

/* matrix_a: rows lane / 16, + 2, ...; matrix_b: column lane % 16. */
template <class T, class L>
static inline void load_matrix_sync(fragment<matrix_a, 16, 16, 16, T, L> &f, const T *p, unsigned ldm) {
    emu_wmma_check(p, ldm, sizeof(T), "load_matrix_sync");
    bool col = std::is_same<L, col_major>::value;
    for (int r = emu_lane() / 16; r < 16; r += 2)
        for (int c = 0; c < 16; c++) f.x[r * 16 + c] = emu_wmma_at(p, ldm, col, r, c);
}
template <class T, class L>
static inline void load_matrix_sync(fragment<matrix_b, 16, 16, 16, T, L> &f, const T *p, unsigned ldm) {
    emu_wmma_check(p, ldm, sizeof(T), "load_matrix_sync");
    bool col = std::is_same<L, col_major>::value;
    int c = emu_lane() % 16;
    for (int r = 0; r < 16; r++) f.x[r * 16 + c] = emu_wmma_at(p, ldm, col, r, c);
}
static inline void load_matrix_sync(fragment<accumulator, 16, 16, 16, float> &f, const float *p, unsigned ldm,
                                    layout_t layout) {
    emu_wmma_check(p, ldm, sizeof(float), "load_matrix_sync");
    for (int i = emu_lane(); i < 256; i += 32) f.x[i] = emu_wmma_at(p, ldm, layout == mem_col_major, i / 16, i % 16);
}
static inline void store_matrix_sync(float *p, const fragment<accumulator, 16, 16, 16, float> &f, unsigned ldm,
                                     layout_t layout) {
    emu_wmma_check(p, ldm, sizeof(float), "store_matrix_sync");
    for (int i = emu_lane(); i < 256; i += 32) {
        int r = i / 16, c = i % 16;
        (layout == mem_col_major ? p[(size_t)c * ldm + r] : p[(size_t)r * ldm + c]) = f.x[i];
    }
}
template <class Use, class T, class L, class V> static inline void fill_fragment(fragment<Use, 16, 16, 16, T, L> &f, V v) {
    for (int i = 0; i < 256; i++) f.x[i] = (T)v;
}
/* d = a b + c with products of the bf16 (or half) inputs exact in fp32 and
 * summed in fp32 in k order (the tensor cores' order is unspecified). */
template <class TA, class LA, class TB, class LB>
static inline void mma_sync(fragment<accumulator, 16, 16, 16, float> &d, const fragment<matrix_a, 16, 16, 16, TA, LA> &a,
                            const fragment<matrix_b, 16, 16, 16, TB, LB> &b,
                            const fragment<accumulator, 16, 16, 16, float> &c) {
    int n = emu_lane() % 16;
    float bcol[16];
    for (int k = 0; k < 16; k++) bcol[k] = (float)b.x[k * 16 + n];
    for (int i = emu_lane(); i < 256; i += 32) {
        int r = i / 16;
        float s = c.x[i];
        for (int k = 0; k < 16; k++) s += (float)a.x[r * 16 + k] * bcol[k];
        d.x[i] = s;
    }
}
} /* namespace wmma */
} /* namespace nvcuda */

/* ---- mma.sync m16n8k16, ldmatrix, cp.async (kernels/mma.cuh) ----
 * The PTX instructions kernels/mma.cuh wraps, with the lane semantics of
 * the PTX ISA (the layouts are listed there). mma and ldmatrix are warp
 * collectives: every lane deposits its registers (or its row address) and
 * computes its own part from all of them, so a lane missing from the warp
 * is reported as for a shuffle. */
static inline float emu_bf16_lo(uint32_t x) { return __uint_as_float(x << 16); }
static inline float emu_bf16_hi(uint32_t x) { return __uint_as_float(x & 0xffff0000u); }

/* d += a b; the products are exact in fp32 and summed in k order (the
 * tensor cores' order is unspecified), as the WMMA emulation. Each lane
 * unpacks only what its four outputs read: rows g and g + 8 of A, which
 * lanes 4g .. 4g + 3 hold (a[0], a[1] columns 0-7 and a[2], a[3] columns
 * 8-15), and columns 2t and 2t + 1 of B, which lanes 4n .. 4n + 3 hold
 * (b0 rows 0-7, b1 rows 8-15). */
static inline void emu_mma_bf16_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    int lane = emu_lane(), g = lane / 4, t = lane % 4;
    /* each exchange's snapshot lasts until the next: keep the lanes read */
    uint64_t a01[4], a23[4], bb[2][4];
    memcpy(a01, emu_warp_exchange(a[0] | (uint64_t)a[1] << 32, 0xffffffffu) + 4 * g, sizeof a01);
    memcpy(a23, emu_warp_exchange(a[2] | (uint64_t)a[3] << 32, 0xffffffffu) + 4 * g, sizeof a23);
    const uint64_t *b = emu_warp_exchange(b0 | (uint64_t)b1 << 32, 0xffffffffu);
    memcpy(bb[0], b + 4 * (2 * t), sizeof bb[0]);
    memcpy(bb[1], b + 4 * (2 * t + 1), sizeof bb[1]);
    float A[2][16], B[2][16]; /* A[h]: row g + 8h; B[j]: column 2t + j */
    for (int u = 0; u < 4; u++) {
        uint64_t lo = a01[u], hi = a23[u]; /* (a[0], a[1]) and (a[2], a[3]) of lane 4g + u */
        uint32_t ar[4] = {(uint32_t)lo, (uint32_t)(lo >> 32), (uint32_t)hi, (uint32_t)(hi >> 32)};
        for (int i = 0; i < 4; i++) {
            int h = i & 1, c = 2 * u + 8 * (i >> 1);
            A[h][c] = emu_bf16_lo(ar[i]), A[h][c + 1] = emu_bf16_hi(ar[i]);
        }
        for (int j = 0; j < 2; j++) {
            uint64_t w = bb[j][u];
            for (int i = 0; i < 2; i++) {
                uint32_t br = (uint32_t)(w >> (32 * i));
                int k = 2 * u + 8 * i;
                B[j][k] = emu_bf16_lo(br), B[j][k + 1] = emu_bf16_hi(br);
            }
        }
    }
    for (int i = 0; i < 4; i++) {
        const float *ar = A[i >> 1], *bc = B[i & 1];
        float s = d[i];
        for (int k = 0; k < 16; k++) s += ar[k] * bc[k];
        d[i] = s;
    }
}

/* Four 8 x 8 matrices of 16-bit values; lane 8j + i gives row i of matrix j. */
static inline void emu_ldmatrix_x4(uint32_t (&r)[4], const void *row, bool trans) {
    if ((uintptr_t)row & 15u) {
        fprintf(stderr, "cuda-emu: KERNEL BUG: ldmatrix: row address %p of lane %d is not 16-byte aligned\n", row,
                emu_lane());
        abort();
    }
    uint64_t rows[32];
    memcpy(rows, emu_warp_exchange((uint64_t)(uintptr_t)row, 0xffffffffu), sizeof rows);
    int lane = emu_lane(), g = lane / 4, t = lane % 4;
    for (int j = 0; j < 4; j++) {
        const uint16_t *p0, *p1;
        int c0, c1;
        if (!trans) p0 = p1 = (const uint16_t *)(uintptr_t)rows[8 * j + g], c0 = 2 * t, c1 = 2 * t + 1;
        else p0 = (const uint16_t *)(uintptr_t)rows[8 * j + 2 * t], p1 = (const uint16_t *)(uintptr_t)rows[8 * j + 2 * t + 1], c0 = c1 = g;
        r[j] = (uint32_t)p0[c0] | (uint32_t)p1[c1] << 16;
    }
}

/* cp.async: a thread's copies wait in its queue, tagged with the group they
 * will close into, and land only at the cp_async_wait that covers them, so
 * a kernel that reads a tile before waiting for it reads the old contents
 * (or the 0xff fill of fresh shared memory), as a GPU may. */
struct EmuCpAsync {
    void *dst;
    const void *src;
    bool valid;
    long group;
};
struct EmuCpAsyncThread {
    EmuCpAsync q[64];
    int n;
    long committed;
    long block;
};
static EmuCpAsyncThread emu_cp_async_threads[1024];

static inline EmuCpAsyncThread &emu_cp_async_self(void) {
    long tid = (long)threadIdx.x + (long)blockDim.x * ((long)threadIdx.y + (long)blockDim.y * threadIdx.z);
    long block = (long)blockIdx.x + (long)gridDim.x * ((long)blockIdx.y + (long)gridDim.y * blockIdx.z);
    EmuCpAsyncThread &s = emu_cp_async_threads[tid];
    if (s.block != block) {
        if (s.n) {
            fprintf(stderr, "cuda-emu: KERNEL BUG: thread %ld of block %ld left %d cp.async copies never waited for\n",
                    tid, s.block, s.n);
            abort();
        }
        s.block = block, s.committed = 0;
    }
    return s;
}
static inline void emu_cp_async_16(void *dst, const void *src, bool valid) {
    if (((uintptr_t)dst & 15u) || (valid && ((uintptr_t)src & 15u))) {
        fprintf(stderr, "cuda-emu: KERNEL BUG: cp.async of 16 bytes from %p to %p: both must be 16-byte aligned\n",
                src, dst);
        abort();
    }
    EmuCpAsyncThread &s = emu_cp_async_self();
    if (s.n == 64) {
        fprintf(stderr, "cuda-emu: more than 64 cp.async copies in flight in one thread\n");
        abort();
    }
    s.q[s.n++] = EmuCpAsync{dst, src, valid, s.committed};
}
static inline void emu_cp_async_commit(void) { emu_cp_async_self().committed++; }
static inline void emu_cp_async_wait(int n) {
    EmuCpAsyncThread &s = emu_cp_async_self();
    int kept = 0;
    for (int i = 0; i < s.n; i++) {
        EmuCpAsync c = s.q[i];
        if (c.group < s.committed - n) {
            if (c.valid) memcpy(c.dst, c.src, 16);
            else memset(c.dst, 0, 16);
        } else {
            s.q[kept++] = c;
        }
    }
    s.n = kept;
}

/* The runtime's C++ overload for a kernel (the host-mode header has only the C one). */
template <class T> static inline cudaError_t cudaFuncSetAttribute(T *entry, enum cudaFuncAttribute attr, int value) {
    return ::cudaFuncSetAttribute((const void *)entry, attr, value);
}

/* ---- kernel launch: `k<<<g, b, s, st>>>(a...)` becomes emu_launch("k", g, b, s, st, k, a...) ---- */
template <class... P> struct EmuLaunchCtx {
    void (*fn)(P...);
    std::tuple<typename std::decay<P>::type...> args;
};
template <class Ctx, size_t... I> static inline void emu_call(Ctx *c, std::index_sequence<I...>) {
    c->fn(std::get<I>(c->args)...);
}
template <class... P> static void emu_body(void *p) {
    EmuLaunchCtx<P...> *c = (EmuLaunchCtx<P...> *)p;
    emu_call(c, std::index_sequence_for<P...>{});
}
template <class... P> static void emu_ctx_delete(void *p) { delete (EmuLaunchCtx<P...> *)p; }
template <class... P, class... A>
static inline void emu_launch_as(const char *name, dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                                 bool programmatic, void (*fn)(P...), A &&...a) {
    static_assert(sizeof...(P) == sizeof...(A), "kernel launched with the wrong number of arguments");
    EmuLaunchCtx<P...> c{fn, std::tuple<typename std::decay<P>::type...>((typename std::decay<P>::type)(a)...)};
    if (emu_capture_active(stream)) { /* a graph node keeps the arguments by value, as CUDA's */
        emu_capture_kernel(name, (const void *)fn, grid, block, smem, stream, programmatic, emu_body<P...>,
                           new EmuLaunchCtx<P...>(c), emu_ctx_delete<P...>);
        return;
    }
    emu_launch_kernel(name, (const void *)fn, grid, block, smem, stream, programmatic, emu_body<P...>, &c);
}
template <class... P, class... A>
static inline void emu_launch(const char *name, dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                              void (*fn)(P...), A &&...a) {
    emu_launch_as(name, grid, block, smem, stream, false, fn, std::forward<A>(a)...);
}

#endif
