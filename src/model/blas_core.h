/* blas_core.h — make OpenBLAS run the matrix kernel this CPU supports.
 *
 * Debian's OpenBLAS is built with DYNAMIC_ARCH: it picks its kernels once,
 * when the library loads, from the CPU's model number. A release older than
 * the CPU (0.3.21 in Debian 12 on recent Xeons, which virtual machines often
 * report as a bare "Intel Xeon Processor") does not know the model and falls
 * back to its generic SSE3 kernel, "Prescott": sgemm then runs about 3x
 * slower, and with it every training and rollout step. The choice can be
 * changed only through OPENBLAS_CORETYPE before the library loads.
 */
#ifndef TAU2_MODEL_BLAS_CORE_H
#define TAU2_MODEL_BLAS_CORE_H

/* When OpenBLAS chose its generic fallback on a CPU with AVX-512 (or AVX2 and
 * FMA), set OPENBLAS_CORETYPE to SkylakeX (Haswell) and execute this program
 * again with the same arguments: the same process id, so mpirun and srun see
 * nothing. Call first thing in main, before MPI or any thread starts. Does
 * nothing when OPENBLAS_CORETYPE is already set (a user's choice, or the
 * second run), when OpenBLAS chose a real kernel, or on other CPUs; if the
 * exec fails the program goes on with the slow kernel. */
void blas_select_core(char **argv);

/* The name of the kernel OpenBLAS runs ("SkylakeX", "Haswell", "Prescott"). */
const char *blas_core_name(void);

#endif
