/* rope.cu — rotary position embedding, rotate-half convention (Hugging
 * Face): the pair (x[i], x[i + D/2]) of each head turns by pos * inv_freq[i].
 * The cos/sin tables are rope_tables' (fp32 angles, as transformers), copied
 * to the device once. */
#include "common.cuh"

/* One thread per (token, head, i < D/2): the threads of a warp take
 * consecutive i of one head, so both halves are read and written coalesced. */
__global__ static void rope_kernel(float *x, const int32_t *pos, const float *cosb, const float *sinb, int T, int NH,
                                   int D, float sign) {
    int half = D / 2;
    long n = (long)T * NH * half;
    for (long idx = blockIdx.x * (long)blockDim.x + threadIdx.x; idx < n; idx += (long)gridDim.x * blockDim.x) {
        int i = (int)(idx % half);
        long th = idx / half; /* token * NH + head */
        int t = (int)(th / NH);
        size_t tab = (size_t)pos[t] * half + i;
        float c = cosb[tab], s = sign * sinb[tab];
        float *v = x + (size_t)th * D;
        float x1 = v[i], x2 = v[i + half];
        v[i] = x1 * c - x2 * s;
        v[i + half] = x2 * c + x1 * s;
    }
}

extern "C" void cuda_rope_forward(float *x, const int32_t *pos, const float *cosb, const float *sinb, int T, int NH,
                                  int D, cudaStream_t stream) {
    long n = (long)T * NH * (D / 2);
    if (n <= 0) return;
    rope_kernel<<<grid_for(n, 256), 256, 0, stream>>>(x, pos, cosb, sinb, T, NH, D, 1.0f);
    cuda_check_launch();
}

/* The transpose of a rotation is the rotation by the opposite angle. */
extern "C" void cuda_rope_backward(float *dx, const int32_t *pos, const float *cosb, const float *sinb, int T, int NH,
                                   int D, cudaStream_t stream) {
    long n = (long)T * NH * (D / 2);
    if (n <= 0) return;
    rope_kernel<<<grid_for(n, 256), 256, 0, stream>>>(dx, pos, cosb, sinb, T, NH, D, -1.0f);
    cuda_check_launch();
}
