/* rng.h — counter-based random numbers (Philox4x32-10).
 *
 * A draw is a pure function of (seed, stream, counter): no state is carried
 * from one draw to the next, so a sampled token depends only on the run's
 * seed, which sample it belongs to (stream: e.g. prompt index * n + sample
 * index) and where it is (counter: e.g. the token's position). Results do
 * not depend on batch composition, scheduling order or thread count, and a
 * checkpoint needs to store only the seed.
 *
 * Philox4x32-10 is the generator of Salmon et al., "Parallel random numbers:
 * as easy as 1, 2, 3" (SC'11), as in Random123, cuRAND and PyTorch's CUDA
 * generator; its outputs match Random123's known-answer vectors.
 */
#ifndef TAU2_CORE_RNG_H
#define TAU2_CORE_RNG_H

#include <stdint.h>

/* One Philox4x32 block: ten rounds over counter ctr with key. */
void philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

/* Four 32-bit random words for (seed, stream, counter): key = seed,
 * counter block = (counter lo, counter hi, stream lo, stream hi). */
void rng_draw(uint64_t seed, uint64_t stream, uint64_t counter, uint32_t out[4]);

/* A uniform double in [0, 1) with 53 random bits. */
double rng_uniform(uint64_t seed, uint64_t stream, uint64_t counter);

/* Derive a new seed from a seed and a tag (splitmix64 of both), for
 * independent families of draws: rng_derive(run_seed, step). */
uint64_t rng_derive(uint64_t seed, uint64_t tag);

#endif
