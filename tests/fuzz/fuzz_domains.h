/* fuzz_domains.h — the four domains loaded once for a fuzz target, from
 * TAU2_DATA_DIR (or ../shared/tau2-data), in the order airline, retail,
 * telecom, mock; a target that cannot load them stops before fuzzing. */
#ifndef TAU2_FUZZ_DOMAINS_H
#define TAU2_FUZZ_DOMAINS_H

#include <stdio.h>
#include <stdlib.h>

#include "tau2/env.h"

static void fuzz_load_domains(Domain *out[4], const char *target) {
    const char *names[4] = {"airline", "retail", "telecom", "mock"};
    const char *dir = getenv("TAU2_DATA_DIR");
    for (int i = 0; i < 4; i++) {
        char err[1024];
        out[i] = domain_load(dir ? dir : "../shared/tau2-data", names[i], err, sizeof err);
        if (!out[i]) {
            fprintf(stderr, "%s: %s (set TAU2_DATA_DIR)\n", target, err);
            exit(1);
        }
    }
}

#endif
