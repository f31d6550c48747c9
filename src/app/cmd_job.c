/* cmd_job.c — `tau2_hpc CONFIG.json`: run the job a config describes.
 *
 * Under mpirun/srun the program joins MPI and the job spans the world;
 * started alone it runs on one rank without initializing MPI at all (so a
 * CPU run needs no MPI launcher). */
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "app/cli.h"
#include "app/config.h"
#include "comm/comm.h"
#include "core/error.h"
#include "core/json.h"
#include "core/stop_signal.h"
#include "core/sysmem.h"
#include "rl/job.h"

/* True when a launcher started this process as one rank of several. */
static bool launched_by_mpi(void) {
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "SLURM_STEP_NUM_TASKS",
                                       "MPI_LOCALNRANKS", NULL};
    for (const char *const *v = vars; *v; v++)
        if (getenv(*v)) return true;
    return false;
}

/* The rank a launcher gave this process (before MPI is up), or 0. */
static int launcher_rank(void) {
    static const char *const vars[] = {"OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "SLURM_PROCID", NULL};
    for (const char *const *v = vars; *v; v++) {
        const char *s = getenv(*v);
        if (s) return atoi(s);
    }
    return 0;
}

int cmd_run_config(const char *path, int argc, char **argv) {
    char err[1024];
    cJSON *root = json_load_file(path, err, sizeof err);
    if (!root) die_input("%s", err);
    const char *job = json_get_str(root, "job");
    bool oracle = job && strcmp(job, "oracle") == 0;
    cJSON_Delete(root);
    if (oracle) return cmd_run_oracle_config(path, argc, argv);

    /* From the start: a scheduler's warning that arrives while the ranks
     * start up must not kill them (the job checks it at its first step). */
    stop_signal_install();
    static const CliOption known[] = {{"--data-dir", CLI_VALUE}, {"--output-dir", CLI_VALUE}, {NULL, 0}};
    cli_check_args("run", argc, argv, known, 0, NULL, NULL);
    /* Every rank reads the config; only rank 0 reports its errors. */
    error_set_quiet_input(launcher_rank() != 0);
    JobConfig cfg;
    config_load_job(path, &cfg);
    /* A malformed TAU2_MEMORY_LIMIT is refused now, not once the job has
     * loaded its data to plan its memory. */
    sysmem_limit_bytes();
    error_set_quiet_input(0);
    const char *out = cli_opt(argc, argv, "--output-dir");
    if (out) {
        if (!*out) die_input("run: --output-dir: expected a directory name, got an empty string");
        free(cfg.output_dir);
        cfg.output_dir = xstrdup(out);
        cfg.output_dir_from_cli = true;
    }
    const char *data_dir = cli_data_dir(cli_opt(argc, argv, "--data-dir"), cfg.data_dir);

    bool mpi = launched_by_mpi();
    if (mpi) {
        int provided;
        MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
    }
    Comm *world = mpi ? comm_mpi_world() : comm_self();
    job_run(&cfg, data_dir, world);
    comm_free(world);
    if (mpi) MPI_Finalize();
    job_config_free(&cfg);
    return EXIT_OK;
}
