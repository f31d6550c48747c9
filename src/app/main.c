/* main.c — the tau2_hpc program: a job config, or a subcommand. */
#include <stdio.h>
#include <signal.h>
#include <string.h>

#include "app/cli.h"
#include "core/error.h"
#include "model/blas_core.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: tau2_hpc CONFIG.json [--data-dir DIR] [--output-dir DIR]   run the job the config describes\n"
            "       tau2_hpc SUBCOMMAND [options]\n"
            "\n"
            "subcommands:\n"
            "  tools    --domain D [--user]                  print the OpenAI tool schemas of a domain\n"
            "  replay   --domain D --task ID --trajectory F  score a τ²-bench trajectory (F or - for stdin)\n"
            "           --results R                         score every simulation of a τ²-bench results file\n"
            "  oracle   --domain D [--split S] [--task ID]   run gold episodes and print their rewards\n"
            "  prepare  --output-dir DIR [--domains D ...]   write the recipe's task JSONL files\n"
            "           [--multi-domain-train D ...] [--multi-domain-name NAME]\n"
            "  tokenize --tokenizer PATH [--decode]          stdin text -> JSON ids (or ids -> text)\n"
            "  render   --tokenizer PATH --conversation C    render a conversation with the chat template\n"
            "           [--tools T.json] [--generation-prompt] [--ids] [--template-kwargs JSON]\n"
            "  score    --model DIR --input T.json|-         per-token logprobs of token sequences (JSON)\n"
            "  generate --model DIR --prompt TEXT|--prompt-ids JSON [--tokenizer PATH] [--max-new-tokens N]\n"
            "           [--temperature T] [--top-p P] [--top-k K] [--seed S] [--n N] [--stop STR ...] [--ignore-eos]\n"
            "  export   --checkpoint CKPT|DIR --output DIR     a training checkpoint as a Hugging Face model directory\n"
            "           [--dtype F32|BF16|F16]\n"
            "  serve    --model DIR [--port P] [--host H]      an OpenAI-compatible chat server over the model\n"
            "           [--max-batch N] [--kv-tokens N] [--served-model-name NAME]\n"
            "  report   RUN_DIR [--output FILE]              a self-contained HTML report of a run (curves, evals,\n"
            "           [--max-trajectories N]               trajectories); default RUN_DIR/report.html\n"
            "\n"
            "τ²-bench's data: --data-dir, the config's data_dir, TAU2_DATA_DIR, or ../shared/tau2-data.\n"
            "exit codes: 0 ok, 1 runtime failure, 2 bad usage or bad input.\n");
}

int main(int argc, char **argv) {
    /* Before anything else: this may execute the program again (blas_core.h). */
    blas_select_core(argv);
    /* A peer that closes its connection (an HTTP client or server) must be
     * an error return from write, not the end of the process. */
    signal(SIGPIPE, SIG_IGN);
    if (argc < 2) {
        usage(stderr);
        return EXIT_BAD_INPUT;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        usage(stdout);
        return EXIT_OK;
    }
    if (!strcmp(cmd, "--version")) {
        printf("tau2_hpc 0.1.0 (matrix kernels: OpenBLAS %s)\n", blas_core_name());
        return EXIT_OK;
    }
    if (!strcmp(cmd, "tools")) return cmd_tools(argc - 1, argv + 1);
    if (!strcmp(cmd, "replay")) return cmd_replay(argc - 1, argv + 1);
    if (!strcmp(cmd, "oracle")) return cmd_oracle(argc - 1, argv + 1);
    if (!strcmp(cmd, "prepare")) return cmd_prepare(argc - 1, argv + 1);
    if (!strcmp(cmd, "tokenize")) return cmd_tokenize(argc - 1, argv + 1);
    if (!strcmp(cmd, "render")) return cmd_render(argc - 1, argv + 1);
    if (!strcmp(cmd, "score")) return cmd_score(argc - 1, argv + 1);
    if (!strcmp(cmd, "generate")) return cmd_generate(argc - 1, argv + 1);
    if (!strcmp(cmd, "export")) return cmd_export(argc - 1, argv + 1);
    if (!strcmp(cmd, "serve")) return cmd_serve(argc - 1, argv + 1);
    if (!strcmp(cmd, "report")) return cmd_report(argc - 1, argv + 1);
    size_t n = strlen(cmd);
    if (n > 5 && !strcmp(cmd + n - 5, ".json")) return cmd_run_config(cmd, argc - 1, argv + 1);
    fprintf(stderr, "%s: error: unknown subcommand '%s' (expected a CONFIG.json or one of: tools, replay, oracle, "
                    "prepare, tokenize, render, score, generate, export, serve, report; see tau2_hpc --help)\n",
            g_prog_name, cmd);
    return EXIT_BAD_INPUT;
}
