/* vector_clones.h — compile a loop for several vector widths, picked once
 * when the program loads (GCC/clang function multiversioning).
 *
 * For leaf loops that do the same float operations on each element at any
 * width (no reassociation: C11 keeps FP contraction off, and sums run in
 * fixed lanes), so every clone gives the same bits; only the speed differs.
 * The default build targets baseline x86-64 (SSE2), which would otherwise
 * leave AVX2 and AVX-512 unused in exp and the sampler's passes.
 *
 * Put the attribute on the definition only, and define the function above
 * its first use in its file: clang refuses to make a function
 * multiversioned after a call has used it, and GCC, given the attribute on
 * a header's declaration, emits a resolver in every caller's file that
 * links to clones only the defining file has. */
#ifndef TAU2_MODEL_VECTOR_CLONES_H
#define TAU2_MODEL_VECTOR_CLONES_H

#if defined(__x86_64__) && defined(__GNUC__)
#define VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define VECTOR_CLONES
#endif

#endif
