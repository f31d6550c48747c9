/* mpi_check.h — failure reporting for the MPI test programs: a failed check
 * prints the rank and file:line and marks the run failed; main() ends with
 * the failures of all ranks combined. */
#ifndef TAU2_TEST_MPI_CHECK_H
#define TAU2_TEST_MPI_CHECK_H

#include <stdio.h>

#include <mpi.h>

static int g_fail = 0;
static int g_rank = 0;

static inline void mpi_check_at(int ok, const char *what, const char *file, int line) {
    if (ok) return;
    fprintf(stderr, "rank %d: %s:%d: check failed: %s\n", g_rank, file, line, what);
    g_fail = 1;
}

#define CHECK(cond) mpi_check_at((cond) != 0, #cond, __FILE__, __LINE__)

/* MPI_Init; this rank (also g_rank) and the world's size. */
static inline void mpi_test_begin(int *argc, char ***argv, int *rank, int *size) {
    MPI_Init(argc, argv);
    MPI_Comm_rank(MPI_COMM_WORLD, rank);
    MPI_Comm_size(MPI_COMM_WORLD, size);
    g_rank = *rank;
}

/* Every rank's failures combined, "name: N ranks: ok" (or FAILED) from rank
 * 0, MPI_Finalize; the exit status. */
static inline int mpi_test_end(const char *name) {
    int fail = g_fail, size;
    MPI_Allreduce(MPI_IN_PLACE, &fail, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (g_rank == 0) printf("%s: %d ranks: %s\n", name, size, fail ? "FAILED" : "ok");
    MPI_Finalize();
    return fail ? 1 : 0;
}

#endif
