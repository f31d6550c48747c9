/* cuda_test_rng.h — the random inputs of the CUDA parity tests (header
 * only: each test is one program): an xorshift generator whose state the
 * test may save and restore to draw the same values twice. */
#ifndef TAU2_CUDA_TEST_RNG_H
#define TAU2_CUDA_TEST_RNG_H

#include <stdint.h>

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;

static uint32_t rnd_u32(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng >> 16);
}

/* uniform in [-a, a) */
static float rnd_f(float a) { return a * (2.0f * (float)(rnd_u32() & 0xffffff) / 16777216.0f - 1.0f); }

#endif
