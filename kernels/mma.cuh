/* mma.cuh — the warp-level tensor-core instructions the attention kernels
 * use (attention_mma.cu), as small device functions: mma.sync m16n8k16
 * bf16 -> fp32, ldmatrix (x4, plain and transposed) and cp.async with its
 * groups. CUDA has no C++ intrinsics for these (WMMA hides the fragment
 * layout they need), so they are inline PTX; the CPU emulation of the
 * tests (tests/cuda_emu) defines emu_* twins with the same lane semantics.
 *
 * Fragment layouts of mma.m16n8k16 (PTX ISA, "Matrix fragments for
 * mma.m16n8k16"), with g = lane / 4 and t = lane % 4; each 32-bit register
 * holds two bf16, the lower column (or row of B) in the low half:
 *   A (16 x 16, row-major)  a[0]: row g,     cols 2t, 2t+1
 *                           a[1]: row g + 8, cols 2t, 2t+1
 *                           a[2]: row g,     cols 2t+8, 2t+9
 *                           a[3]: row g + 8, cols 2t+8, 2t+9
 *   B (16 x 8, "col")       b[0]: rows 2t, 2t+1 of col g;  b[1]: rows 2t+8, 2t+9
 *   C, D (16 x 8, fp32)     c[0], c[1]: row g, cols 2t, 2t+1; c[2], c[3]: row g + 8
 * So the accumulators of two neighbouring 16 x 8 products (columns 0-7 and
 * 8-15), rounded to bf16 in pairs, are exactly the A operand of the next
 * product over those 16 columns: P and dS never leave registers.
 *
 * ldmatrix.x4: lanes 8j .. 8j + 7 give the row addresses (16 bytes each,
 * 16-byte aligned, shared memory) of 8 x 8 matrix j; the lane's register j
 * gets row g, columns 2t, 2t+1 of matrix j, or with .trans its transpose's:
 * rows 2t, 2t+1 of column g. */
#ifndef TAU2_KERNELS_MMA_CUH
#define TAU2_KERNELS_MMA_CUH

#include <stdint.h>

#include <cuda_bf16.h>

/* Two fp32 rounded to bf16 (nearest even), lo in the low half. */
__device__ __forceinline__ uint32_t bf16x2_pack(float lo, float hi) {
    return (uint32_t)__bfloat16_as_ushort(__float2bfloat16(lo)) |
           (uint32_t)__bfloat16_as_ushort(__float2bfloat16(hi)) << 16;
}

/* The two bf16 of a packed pair as fp32. */
__device__ __forceinline__ float bf16x2_lo(uint32_t x) { return __uint_as_float(x << 16); }
__device__ __forceinline__ float bf16x2_hi(uint32_t x) { return __uint_as_float(x & 0xffff0000u); }

#ifdef TAU2_CUDA_EMU_DEVICE_H

/* The emulation's twins (tests/cuda_emu/emu_device.h). */
__device__ __forceinline__ void mma_bf16_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    emu_mma_bf16_16816(d, a, b0, b1);
}
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void *row) { emu_ldmatrix_x4(r, row, false); }
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void *row) { emu_ldmatrix_x4(r, row, true); }
__device__ __forceinline__ void cp_async_16(void *dst, const void *src, bool valid) { emu_cp_async_16(dst, src, valid); }
__device__ __forceinline__ void cp_async_commit(void) { emu_cp_async_commit(); }
template <int N> __device__ __forceinline__ void cp_async_wait(void) { emu_cp_async_wait(N); }

#else

__device__ __forceinline__ uint32_t smem_u32(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

/* d += a b: A 16 x 16 and B 16 x 8 bf16, D 16 x 8 fp32 (layouts above). */
__device__ __forceinline__ void mma_bf16_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
                 "{%8, %9}, {%0, %1, %2, %3};"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* Four 8 x 8 bf16 matrices from shared memory; row = this lane's row address. */
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void *row) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_u32(row)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void *row) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_u32(row)));
}

/* 16 bytes global -> shared without passing through registers; zeros where
 * !valid (src is not read then). Visible after cp_async_wait and a barrier. */
__device__ __forceinline__ void cp_async_16(void *dst, const void *src, bool valid) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(smem_u32(dst)), "l"(src),
                 "r"(valid ? 16 : 0));
}
/* Closes the group of the copies issued since the last commit. */
__device__ __forceinline__ void cp_async_commit(void) { asm volatile("cp.async.commit_group;"); }
/* Waits until at most N of this thread's committed groups are in flight. */
template <int N> __device__ __forceinline__ void cp_async_wait(void) {
    asm volatile("cp.async.wait_group %0;" ::"n"(N));
}

#endif

#endif
