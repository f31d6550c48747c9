/* mpi_check.h — failure reporting for the MPI test programs: a failed check
 * prints the rank and file:line and marks the run failed; main() ends with
 * the failures of all ranks combined. */
#ifndef TAU2_TEST_MPI_CHECK_H
#define TAU2_TEST_MPI_CHECK_H

#include <stdio.h>

static int g_fail = 0;
static int g_rank = 0;

static inline void mpi_check_at(int ok, const char *what, const char *file, int line) {
    if (ok) return;
    fprintf(stderr, "rank %d: %s:%d: check failed: %s\n", g_rank, file, line, what);
    g_fail = 1;
}

#define CHECK(cond) mpi_check_at((cond) != 0, #cond, __FILE__, __LINE__)

#endif
