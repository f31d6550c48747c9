/* cmd_serve.c — `tau2_hpc serve`: the OpenAI-compatible server (llm/server.h)
 * until SIGINT or SIGTERM. */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app/cli.h"
#include "core/error.h"
#include "llm/server.h"

int cmd_serve(int argc, char **argv);

static int g_sig_pipe[2] = {-1, -1};

static void on_signal(int sig) {
    unsigned char b = (unsigned char)sig;
    int saved = errno;
    if (write(g_sig_pipe[1], &b, 1) < 0) {
        /* nothing to do: a second signal finds the pipe already readable */
    }
    errno = saved;
}

int cmd_serve(int argc, char **argv) {
    static const CliOption known[] = {{"--model", CLI_VALUE}, {"--host", CLI_VALUE}, {"--port", CLI_VALUE},
                                      {"--max-batch", CLI_VALUE}, {"--kv-tokens", CLI_VALUE},
                                      {"--served-model-name", CLI_VALUE}, {"--max-queue", CLI_VALUE},
                                      {"--default-max-tokens", CLI_VALUE}, {"--device", CLI_VALUE},
                                      {"--chunked-prefill-size", CLI_VALUE}, {NULL, 0}};
    cli_check_args("serve", argc, argv, known, 0, NULL, "usage: tau2_hpc serve --model DIR [--host H] [--port P] ...");
    ServerOptions opt = {0};
    opt.model_dir = cli_opt(argc, argv, "--model");
    if (!opt.model_dir) {
        die_input("serve: --model is required (usage: tau2_hpc serve --model DIR [--host H] [--port P] "
                  "[--max-batch N] [--kv-tokens N] [--served-model-name NAME])");
    }
    if (!cli_is_dir(opt.model_dir)) die_input("serve: --model %s: not a directory", opt.model_dir);
    opt.host = cli_opt(argc, argv, "--host");
    opt.served_model_name = cli_opt(argc, argv, "--served-model-name");
    if (opt.served_model_name && !opt.served_model_name[0]) die_input("serve: --served-model-name: empty");
    const char *v;
    if ((v = cli_opt(argc, argv, "--port"))) opt.port = (int)cli_long("serve", "--port", v, 0, 65535, NULL);
    if ((v = cli_opt(argc, argv, "--max-batch")))
        opt.max_batch = (int)cli_long("serve", "--max-batch", v, 1, 4096, NULL);
    if ((v = cli_opt(argc, argv, "--kv-tokens")))
        opt.kv_tokens = (int)cli_long("serve", "--kv-tokens", v, 16, 1 << 30, NULL);
    if ((v = cli_opt(argc, argv, "--max-queue")))
        opt.max_queue = (int)cli_long("serve", "--max-queue", v, 1, 1 << 20, NULL);
    if ((v = cli_opt(argc, argv, "--default-max-tokens"))) {
        opt.default_max_tokens = (int)cli_long("serve", "--default-max-tokens", v, 1, 1 << 30, NULL);
    }
    if ((v = cli_opt(argc, argv, "--chunked-prefill-size"))) {
        opt.chunked_prefill_size = (int)cli_long("serve", "--chunked-prefill-size", v, -1, 1 << 30,
                                                 "-1 (no limit) or a positive number of tokens");
        if (opt.chunked_prefill_size == 0)
            die_input("serve: --chunked-prefill-size: expected -1 (no limit) or a positive number of tokens, got 0");
    }
    if ((v = cli_opt(argc, argv, "--device"))) {
        if (strcmp(v, "cpu") && strcmp(v, "cuda")) die_input("serve: --device: expected cpu or cuda, got '%s'", v);
        opt.on_gpu = strcmp(v, "cuda") == 0;
    }

    /* Threads started before us (OpenBLAS's pool) may take the signal, so a
     * handler rather than sigwait: it writes the signal number to a pipe
     * the main thread blocks on. */
    if (pipe(g_sig_pipe) != 0) die_runtime("serve: pipe: %s", strerror(errno));
    struct sigaction sa, old_int, old_term;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    char err[2048];
    Server *s = server_start(&opt, err, sizeof err);
    if (!s) die_input("%s", err);
    const char *host = server_host(s);
    bool v6 = strchr(host, ':') != NULL; /* an IPv6 address goes in brackets in a URL */
    printf("serving %s on http://%s%s%s:%d\n", server_model_name(s), v6 ? "[" : "", host, v6 ? "]" : "",
           server_port(s));
    fflush(stdout);

    unsigned char sig = 0;
    while (read(g_sig_pipe[0], &sig, 1) != 1) {
        if (errno != EINTR) die_runtime("serve: reading the signal pipe: %s", strerror(errno));
    }
    fprintf(stderr, "%s: serve: %s, stopping\n", g_prog_name, sig == SIGINT ? "SIGINT" : "SIGTERM");
    server_stop(s);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    close(g_sig_pipe[0]);
    close(g_sig_pipe[1]);
    return EXIT_OK;
}
