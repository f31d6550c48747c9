/* test_job_config.c — training-job configs (config_load_job): values and
 * defaults of a valid config, and for each kind of mistake an exit status 2
 * with a message naming the field. The loader exits on errors, so those run
 * in a forked child whose stderr comes back through a pipe. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <xxhash.h>

#include "app/config.h"
#include "core/error.h"
#include "core/json.h"
#include "rl/job_config.h"

/* Write text to a new /tmp/tau2_jobcfg_XXXXXX.json; the caller unlinks and
 * frees the returned path. */
static char *write_config(const char *text) {
    char *path = xstrdup("/tmp/tau2_jobcfg_XXXXXX.json");
    int fd = mkstemps(path, 5);
    assert_true(fd >= 0);
    size_t n = strlen(text);
    assert_int_equal(write(fd, text, n), (ssize_t)n);
    close(fd);
    return path;
}

static void remove_config(char *path) {
    unlink(path);
    free(path);
}

/* Run config_load_job(path) in a child; returns its exit status (-1 if it
 * did not exit normally) and its stderr in err. */
static int load_in_child(const char *path, char *err, size_t errlen) {
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], STDERR_FILENO);
        close(fds[1]);
        JobConfig cfg;
        config_load_job(path, &cfg);
        job_config_free(&cfg);
        _exit(0);
    }
    close(fds[1]);
    size_t used = 0;
    ssize_t got;
    while ((got = read(fds[0], err + used, errlen - 1 - used)) > 0) used += (size_t)got;
    err[used] = '\0';
    close(fds[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* The config text must be rejected with exit 2 and a message holding every
 * one of the NULL-terminated strings. */
static void expect_error(const char *text, ...) {
    char *path = write_config(text);
    char err[8192];
    int code = load_in_child(path, err, sizeof err);
    if (code != EXIT_BAD_INPUT) fprintf(stderr, "config %s\nexit %d, stderr: %s\n", text, code, err);
    assert_int_equal(code, EXIT_BAD_INPUT);
    va_list ap;
    va_start(ap, text);
    for (const char *want; (want = va_arg(ap, const char *));) {
        if (!strstr(err, want)) fprintf(stderr, "config %s\nmessage %s\nlacks: %s\n", text, err, want);
        assert_non_null(strstr(err, want));
    }
    va_end(ap);
    assert_non_null(strstr(err, path)); /* every message names the file */
    remove_config(path);
}

/* ------------------------------------------------------------ valid configs */

static const char GRPO_CONFIG[] = "{\n"
                                  "  \"job\": \"grpo\",\n"
                                  "  \"model\": \"models/Qwen3-4B-Instruct-2507\",\n"
                                  "  \"prompt_data\": \"runs/prepared/multi_domain_train_tasks.jsonl\",\n"
                                  "  \"seed\": 42,\n"
                                  "  \"tensor_parallel\": 2,\n"
                                  "  \"rollout_tensor_parallel\": 2,\n"
                                  "  \"num_rollout\": 100,\n"
                                  "  \"rollout_batch_size\": 32,\n"
                                  "  \"n_samples_per_prompt\": 8,\n"
                                  "  \"rollout_temperature\": 0.7,\n"
                                  "  \"rollout_top_p\": 0.95,\n"
                                  "  \"dynamic_sampling_filter\": \"reward_nonzero_std\",\n"
                                  "  \"balance_data\": true,\n"
                                  "  \"global_batch_size\": 64,\n"
                                  "  \"lr\": 2e-6,\n"
                                  "  \"lr_decay_style\": \"cosine\",\n"
                                  "  \"kl_coef\": 0.01,\n"
                                  "  \"kl_loss_type\": \"k3\",\n"
                                  "  \"user\": \"policy\",\n"
                                  "  \"default_domain\": \"telecom\",\n"
                                  "  \"save_interval\": 20\n"
                                  "}\n";

static void test_grpo_values_and_defaults(void **state) {
    (void)state;
    char *path = write_config(GRPO_CONFIG);
    JobConfig cfg;
    config_load_job(path, &cfg);

    /* What the file sets. */
    assert_string_equal(cfg.job, "grpo");
    assert_string_equal(cfg.model, "models/Qwen3-4B-Instruct-2507");
    assert_string_equal(cfg.prompt_data, "runs/prepared/multi_domain_train_tasks.jsonl");
    assert_int_equal(cfg.seed, 42);
    assert_int_equal(cfg.tensor_parallel, 2);
    assert_int_equal(cfg.rollout_tensor_parallel, 2);
    assert_int_equal(cfg.num_rollout, 100);
    assert_int_equal(cfg.rollout_batch_size, 32);
    assert_int_equal(cfg.n_samples_per_prompt, 8);
    assert_true(cfg.rollout_temperature == 0.7);
    assert_true(cfg.rollout_top_p == 0.95);
    assert_string_equal(cfg.dynamic_sampling_filter, "reward_nonzero_std");
    assert_true(cfg.balance_data);
    assert_int_equal(cfg.global_batch_size, 64);
    assert_true(cfg.lr == 2e-6);
    assert_string_equal(cfg.lr_decay_style, "cosine");
    assert_true(cfg.kl_coef == 0.01);
    assert_string_equal(cfg.kl_loss_type, "k3");
    assert_string_equal(cfg.user, "policy");
    assert_string_equal(cfg.default_domain, "telecom");
    assert_int_equal(cfg.save_interval, 20);

    /* The defaults of rl/job_config.h. */
    assert_null(cfg.data_dir);
    assert_string_equal(cfg.tokenizer, cfg.model);
    assert_int_equal(cfg.data_parallel, 0);
    assert_int_equal(cfg.rollout_groups, 0);
    assert_int_equal(cfg.user_sim_ranks, 0);
    assert_true(cfg.colocate);
    assert_string_equal(cfg.default_task_split, "base");
    assert_true(cfg.rollout_shuffle);
    assert_int_equal(cfg.rollout_max_response_len, 8192);
    assert_int_equal(cfg.rollout_max_turn_len, 1024);
    assert_int_equal(cfg.rollout_top_k, 0);
    assert_int_equal(cfg.max_steps, 200);
    assert_int_equal(cfg.max_errors, 10);
    assert_int_equal(cfg.max_sampling_rounds, 4);
    assert_int_equal(cfg.max_staleness, 0);
    assert_int_equal(cfg.kv_cache_tokens, 0);
    assert_int_equal(cfg.chunked_prefill_size, 8192);
    assert_true(cfg.partial_alpha == 0.25);
    assert_true(cfg.w_action == 0.5 && cfg.w_comm == 0.15 && cfg.w_env == 0.35);
    assert_true(cfg.telecom_w_action == 0.35 && cfg.telecom_w_comm == 0.35 && cfg.telecom_w_env == 0.30);
    assert_true(cfg.telecom_alpha_scale == 1.6);
    assert_int_equal(cfg.max_tokens_per_gpu, 16384);
    assert_true(cfg.min_lr == 0);
    assert_true(cfg.lr_warmup_fraction == 0);
    assert_true(cfg.weight_decay == 0.1);
    assert_true(cfg.adam_beta1 == 0.9 && cfg.adam_beta2 == 0.98 && cfg.adam_eps == 1e-8);
    assert_true(cfg.clip_grad == 1.0);
    assert_true(cfg.eps_clip == 0.2 && cfg.eps_clip_high == 0.28);
    assert_true(cfg.entropy_coef == 0);
    assert_false(cfg.calculate_per_token_loss);
    assert_false(cfg.recompute_activations);
    assert_null(cfg.sft_data);
    assert_int_equal(cfg.sft_num_epoch, 1);
    assert_int_equal(cfg.sft_global_batch_size, 64); /* global_batch_size */
    assert_true(cfg.sft_lr == 2e-6);                 /* lr */
    assert_int_equal(cfg.keep_checkpoints, 3);
    assert_true(cfg.save_rollouts);

    /* The file as read: path, compact JSON, its XXH64, and the run directory
     * named after the file. */
    assert_string_equal(cfg.path, path);
    char err[256];
    cJSON *root = json_parse(GRPO_CONFIG, strlen(GRPO_CONFIG), "<test>", err, sizeof err);
    assert_non_null(root);
    char *compact = json_dumps(root, JSON_DUMP_COMPACT);
    assert_string_equal(cfg.json, compact);
    assert_null(strchr(cfg.json, '\n'));
    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)XXH64(compact, strlen(compact), 0));
    assert_string_equal(cfg.hash, hex);
    free(compact);
    cJSON_Delete(root);
    const char *name = strrchr(path, '/') + 1;
    char want_dir[256];
    snprintf(want_dir, sizeof want_dir, "runs/%.*s", (int)(strlen(name) - 5), name);
    assert_string_equal(cfg.output_dir, want_dir);

    job_config_free(&cfg);
    assert_null(cfg.model);
    job_config_free(&cfg); /* freeing twice is harmless */
    remove_config(path);
}

static void test_sft_defaults(void **state) {
    (void)state;
    /* sft_global_batch_size alone sets global_batch_size too; sft_lr follows lr. */
    char *path = write_config("{\"job\": \"sft\", \"model\": \"m\", \"tokenizer\": \"tok/tokenizer.json\","
                              " \"sft_data\": \"traces.jsonl\", \"sft_global_batch_size\": 16, \"lr\": 1e-5,"
                              " \"output_dir\": \"runs/x\", \"data_dir\": \"/data/tau2\", \"seed\": 9007199254740992}");
    JobConfig cfg;
    config_load_job(path, &cfg);
    assert_string_equal(cfg.job, "sft");
    assert_string_equal(cfg.tokenizer, "tok/tokenizer.json");
    assert_string_equal(cfg.sft_data, "traces.jsonl");
    assert_int_equal(cfg.sft_global_batch_size, 16);
    assert_int_equal(cfg.global_batch_size, 16);
    assert_true(cfg.sft_lr == 1e-5);
    assert_string_equal(cfg.output_dir, "runs/x");
    assert_string_equal(cfg.data_dir, "/data/tau2");
    assert_true(cfg.seed == 9007199254740992ull);
    assert_null(cfg.prompt_data);
    job_config_free(&cfg);
    remove_config(path);

    /* A zeroed struct frees cleanly. */
    JobConfig zero = {0};
    job_config_free(&zero);
}

/* Every key of rl/job_config.h is accepted and documented in doc/config.md. */
static void test_every_key_accepted_and_documented(void **state) {
    (void)state;
    static const char CONFIG[] =
        "{\"job\": \"grpo\", \"data_dir\": null, \"output_dir\": \"runs/all\", \"seed\": 1,"
        " \"model\": \"m\", \"tokenizer\": \"m\","
        " \"tensor_parallel\": 1, \"data_parallel\": 2, \"rollout_groups\": 1, \"rollout_tensor_parallel\": 1,"
        " \"user_sim_ranks\": 0, \"colocate\": false,"
        " \"prompt_data\": \"p.jsonl\", \"default_domain\": null, \"default_task_split\": \"train\","
        " \"rollout_shuffle\": false, \"balance_data\": true,"
        " \"num_rollout\": 3, \"rollout_batch_size\": 4, \"n_samples_per_prompt\": 4,"
        " \"rollout_max_response_len\": 4096, \"rollout_max_turn_len\": 512, \"rollout_temperature\": 0,"
        " \"rollout_top_p\": 1, \"rollout_top_k\": 20, \"max_steps\": 100, \"max_errors\": 5, \"user\": \"gold\","
        " \"dynamic_sampling_filter\": null, \"max_sampling_rounds\": 0, \"max_staleness\": 1,"
        " \"kv_cache_tokens\": 65536, \"chunked_prefill_size\": -1,"
        " \"partial_alpha\": 0, \"w_action\": 1, \"w_comm\": 0, \"w_env\": 0,"
        " \"telecom_w_action\": 0.2, \"telecom_w_comm\": 0.5, \"telecom_w_env\": 0.3, \"telecom_alpha_scale\": 1,"
        " \"global_batch_size\": 8, \"max_tokens_per_gpu\": 8192, \"lr\": 1e-6, \"min_lr\": 1e-7,"
        " \"lr_decay_style\": \"linear\", \"lr_warmup_fraction\": 0.1, \"weight_decay\": 0, \"adam_beta1\": 0.9,"
        " \"adam_beta2\": 0.999, \"adam_eps\": 1e-6, \"clip_grad\": 0, \"eps_clip\": 0.2, \"eps_clip_high\": 0.2,"
        " \"kl_coef\": 0.001, \"kl_loss_type\": \"k1\", \"entropy_coef\": 0.001, \"calculate_per_token_loss\": true,"
        " \"recompute_activations\": true,"
        " \"sft_data\": \"oracle\", \"sft_num_epoch\": 2, \"sft_global_batch_size\": 4, \"sft_lr\": 1e-5,"
        " \"save_interval\": 5, \"keep_checkpoints\": 1, \"save_rollouts\": false}";
    char *path = write_config(CONFIG);
    JobConfig cfg;
    config_load_job(path, &cfg);
    assert_int_equal(cfg.max_staleness, 1);
    assert_false(cfg.colocate);
    assert_null(cfg.data_dir);
    assert_null(cfg.dynamic_sampling_filter);
    assert_int_equal(cfg.global_batch_size, 8);
    assert_int_equal(cfg.sft_global_batch_size, 4);
    assert_true(cfg.rollout_temperature == 0);
    assert_false(cfg.save_rollouts);
    assert_int_equal(cfg.chunked_prefill_size, -1);

    char doc_path[1024], err[512];
    snprintf(doc_path, sizeof doc_path, "%s/doc/config.md", TAU2_SOURCE_DIR);
    char *doc = file_read_all(doc_path, NULL, err, sizeof err);
    assert_non_null(doc);
    cJSON *root = json_parse(CONFIG, strlen(CONFIG), "<test>", err, sizeof err);
    int n_keys = 0;
    for (const cJSON *c = root->child; c; c = c->next, n_keys++) {
        char quoted[128];
        snprintf(quoted, sizeof quoted, "`%s`", c->string);
        if (!strstr(doc, quoted)) fprintf(stderr, "doc/config.md does not describe %s\n", quoted);
        assert_non_null(strstr(doc, quoted));
    }
    assert_int_equal(n_keys, 66); /* the keys of JobConfig, less path, json and hash */
    cJSON_Delete(root);
    free(doc);
    job_config_free(&cfg);
    remove_config(path);
}

/* ------------------------------------------------------------ errors */

#define GRPO_MIN "\"job\": \"grpo\", \"model\": \"m\", \"prompt_data\": \"p.jsonl\", \"num_rollout\": 2"
#define GRPO_BATCH "\"rollout_batch_size\": 4, \"global_batch_size\": 32"

static void test_unknown_keys(void **state) {
    (void)state;
    expect_error("{" GRPO_MIN ", " GRPO_BATCH ", \"rollout_batch_sise\": 8}", "unknown key 'rollout_batch_sise'",
                 "did you mean 'rollout_batch_size'", NULL);
    expect_error("{" GRPO_MIN ", " GRPO_BATCH ", \"kl_loss_coef\": 0.1}", "unknown key 'kl_loss_coef'",
                 "did you mean 'kl_loss_type'", NULL);
    expect_error("{" GRPO_MIN ", " GRPO_BATCH ", \"temperature\": 0.5}", "unknown key 'temperature'", NULL);
}

static void test_wrong_types_and_ranges(void **state) {
    (void)state;
    expect_error("{" GRPO_MIN ", " GRPO_BATCH ", \"lr\": \"x\"}", "field 'lr'", "expected a number > 0", "got \"x\"",
                 NULL);
    expect_error("{" GRPO_MIN ", " GRPO_BATCH ", \"lr\": 0}", "field 'lr'", "got 0", NULL);
    expect_error("{" GRPO_MIN ", " GRPO_BATCH ", \"n_samples_per_prompt\": -8}", "field 'n_samples_per_prompt'",
                 "a positive integer", "got -8", NULL);
    expect_error("{" GRPO_MIN ", " GRPO_BATCH ", \"n_samples_per_prompt\": 8.0}", "field 'n_samples_per_prompt'",
                 "got 8.0", NULL);
    expect_error("{" GRPO_MIN ", \"global_batch_size\": 32, \"rollout_batch_size\": 3000000000}",
                 "field 'rollout_batch_size'", "at most 2147483647", NULL);
    expect_error("{" GRPO_MIN ", " GRPO_BATCH ", \"rollout_top_p\": 0}", "field 'rollout_top_p'", "(0, 1]", NULL);
    expect_error("{" GRPO_MIN ", " GRPO_BATCH ", \"rollout_top_p\": 1.5}", "field 'rollout_top_p'", "got 1.5",
                 NULL);
    expect_error("{" GRPO_MIN ", " GRPO_BATCH ", \"rollout_temperature\": -0.1}", "field 'rollout_temperature'",
                 "a number >= 0", NULL);
    expect_error("{" GRPO_MIN ", " GRPO_BATCH ", \"eps_clip\": -0.2}", "field 'eps_clip'", NULL);
    expect_error("{" GRPO_MIN ", " GRPO_BATCH ", \"adam_beta2\": 1}", "field 'adam_beta2'", "[0, 1)", NULL);
    expect_error("{" GRPO_MIN ", " GRPO_BATCH ", \"kl_coef\": NaN}", "field 'kl_coef'", "got NaN", NULL);
    expect_error("{" GRPO_MIN ", " GRPO_BATCH ", \"colocate\": \"yes\"}", "field 'colocate'", "true or false",
                 NULL);
    expect_error("{\"job\": \"grpo\", \"model\": 7, \"prompt_data\": \"p.jsonl\", \"num_rollout\": 2, " GRPO_BATCH "}",
                 "field 'model'", "a non-empty string", "got 7", NULL);
    expect_error("{" GRPO_MIN ", " GRPO_BATCH ", \"output_dir\": \"\"}", "field 'output_dir'", "a non-empty string",
                 "got \"\"", NULL);
    expect_error("{" GRPO_MIN ", " GRPO_BATCH ", \"seed\": -1}", "field 'seed'", NULL);
    expect_error("{" GRPO_MIN ", " GRPO_BATCH ", \"chunked_prefill_size\": 0}", "field 'chunked_prefill_size'",
                 "expected -1 (no limit) or a positive integer", "got 0", NULL);
    expect_error("{" GRPO_MIN ", " GRPO_BATCH ", \"chunked_prefill_size\": -2}", "field 'chunked_prefill_size'",
                 "got -2", NULL);
    expect_error("{" GRPO_MIN ", " GRPO_BATCH ", \"tokenizer\": null}", "field 'tokenizer'", "got null", NULL);
    /* user_base_url: an http(s) URL with a host and a port a socket can have */
    const char *urls[] = {"\"ftp://h/v1\"", "\"http://\"", "\"http://127.0.0.1:99999/v1\"", "\"localhost:8000\""};
    for (size_t i = 0; i < sizeof urls / sizeof urls[0]; i++) {
        char cfg[512];
        snprintf(cfg, sizeof cfg, "{" GRPO_MIN ", " GRPO_BATCH ", \"user\": \"api\", \"user_model\": \"m\", "
                 "\"user_base_url\": %s}", urls[i]);
        expect_error(cfg, "field 'user_base_url'", "an http:// or https:// URL with a host", NULL);
    }
}

static void test_duplicate_key(void **state) {
    (void)state;
    /* a later value would silently win: refused at the second, nested objects too */
    expect_error("{" GRPO_MIN ", " GRPO_BATCH ", \"lr\": 0.1, \"lr\": 0.2}", "key 'lr' given twice", NULL);
    expect_error("{" GRPO_MIN ", " GRPO_BATCH ", \"eval\": {\"datasets\": [], \"datasets\": []}}",
                 "key 'datasets' given twice", NULL);
}

static void test_bad_enums(void **state) {
    (void)state;
    expect_error("{" GRPO_MIN ", " GRPO_BATCH ", \"lr_decay_style\": \"cosin\"}", "field 'lr_decay_style'",
                 "one of \"constant\", \"linear\", \"cosine\"", "got \"cosin\"", NULL);
    expect_error("{" GRPO_MIN ", " GRPO_BATCH ", \"kl_loss_type\": \"k4\"}", "field 'kl_loss_type'",
                 "\"low_var_kl\"", NULL);
    expect_error("{" GRPO_MIN ", " GRPO_BATCH ", \"user\": \"llm\"}", "field 'user'", "\"gold\", \"policy\"", NULL);
    expect_error("{" GRPO_MIN ", " GRPO_BATCH ", \"dynamic_sampling_filter\": \"check_reward_nonzero_std\"}",
                 "field 'dynamic_sampling_filter'", "\"reward_nonzero_std\" or null", NULL);
    expect_error("{" GRPO_MIN ", " GRPO_BATCH ", \"default_domain\": \"bank\"}", "field 'default_domain'",
                 "telecom", NULL);
    expect_error("{\"job\": \"oracle\", \"domains\": [\"mock\"]}", "field 'job'", "\"sft\", \"grpo\"",
                 "got \"oracle\"", NULL);
    expect_error("{\"model\": \"m\"}", "field 'job'", "got nothing", NULL);
}

static void test_missing_required(void **state) {
    (void)state;
    expect_error("{\"job\": \"grpo\", \"prompt_data\": \"p\", \"num_rollout\": 1, " GRPO_BATCH "}", "field 'model'",
                 "got nothing", NULL);
    expect_error("{\"job\": \"grpo\", \"model\": \"m\", \"num_rollout\": 1, " GRPO_BATCH "}", "field 'prompt_data'",
                 "required for job \"grpo\"", NULL);
    expect_error("{\"job\": \"grpo\", \"model\": \"m\", \"prompt_data\": \"p\", " GRPO_BATCH "}",
                 "field 'num_rollout'", NULL);
    expect_error("{" GRPO_MIN ", \"global_batch_size\": 8}", "field 'rollout_batch_size'", NULL);
    expect_error("{" GRPO_MIN ", \"rollout_batch_size\": 8}", "field 'global_batch_size'", NULL);
    expect_error("{\"job\": \"sft\", \"model\": \"m\", \"global_batch_size\": 8}", "field 'sft_data'", NULL);
    expect_error("{\"job\": \"sft\", \"model\": \"m\", \"sft_data\": null, \"global_batch_size\": 8}",
                 "field 'sft_data'", "got null", NULL);
    expect_error("{\"job\": \"sft\", \"model\": \"m\", \"sft_data\": \"t.jsonl\"}", "field 'global_batch_size'",
                 "sft_global_batch_size", NULL);
    expect_error("{\"job\": \"sft\", \"model\": \"m\", \"sft_data\": \"oracle\", \"global_batch_size\": 8}",
                 "field 'prompt_data'", NULL);
}

static void test_inconsistent(void **state) {
    (void)state;
    /* 4 prompts x 8 samples = 32 episodes do not split into steps of 12. */
    expect_error("{" GRPO_MIN ", \"rollout_batch_size\": 4, \"global_batch_size\": 12}", "field 'global_batch_size'",
                 "= 32", "got 12", NULL);
    expect_error("{" GRPO_MIN ", \"rollout_batch_size\": 4, \"n_samples_per_prompt\": 3, \"global_batch_size\": 8}",
                 "field 'global_batch_size'", "= 12", NULL);
    expect_error("{" GRPO_MIN ", " GRPO_BATCH ", \"max_staleness\": 1}", "field 'max_staleness'", "colocate", NULL);
    expect_error("{" GRPO_MIN ", " GRPO_BATCH ", \"user_sim_ranks\": 1}", "field 'user_sim_ranks'",
                 "0 unless user is \"local\"", "the user is \"gold\"", NULL);
    expect_error("{" GRPO_MIN ", \"rollout_batch_size\": 4, \"global_batch_size\": 4, \"n_samples_per_prompt\": 1,"
                 " \"dynamic_sampling_filter\": \"reward_nonzero_std\"}",
                 "field 'dynamic_sampling_filter'", NULL);
    expect_error("{" GRPO_MIN ", " GRPO_BATCH ", \"min_lr\": 1e-5}", "field 'min_lr'", NULL);
    expect_error("{" GRPO_MIN ", " GRPO_BATCH ", \"sft_data\": \"t.jsonl\", \"min_lr\": 1e-7, \"sft_lr\": 1e-8}",
                 "field 'sft_lr'", NULL);
}

static void test_unreadable(void **state) {
    (void)state;
    expect_error("{\"job\": \"grpo\",\n \"model\": }", ":2:", NULL);
    expect_error("[1, 2]", "expected a JSON object", NULL);
    char err[1024];
    assert_int_equal(load_in_child("/nonexistent/tau2_job.json", err, sizeof err), EXIT_BAD_INPUT);
    assert_non_null(strstr(err, "/nonexistent/tau2_job.json"));
}

/* Every sft/grpo config shipped under inputs/ loads. */
static void test_shipped_inputs(void **state) {
    (void)state;
    char pattern[1024];
    snprintf(pattern, sizeof pattern, "%s/inputs/*.json", TAU2_SOURCE_DIR);
    glob_t g;
    assert_int_equal(glob(pattern, 0, NULL, &g), 0);
    int n_jobs = 0;
    for (size_t i = 0; i < g.gl_pathc; i++) {
        char err[4096];
        cJSON *root = json_load_file(g.gl_pathv[i], err, sizeof err);
        assert_non_null(root);
        const char *job = json_get_str(root, "job");
        bool training = job && (!strcmp(job, "sft") || !strcmp(job, "grpo"));
        cJSON_Delete(root);
        if (!training) continue;
        int code = load_in_child(g.gl_pathv[i], err, sizeof err);
        if (code != 0) fprintf(stderr, "%s: exit %d: %s\n", g.gl_pathv[i], code, err);
        assert_int_equal(code, 0);
        assert_string_equal(err, "");
        n_jobs++;
    }
    globfree(&g);
    assert_true(n_jobs >= 3); /* multi, telecom_grpo, telecom_sft at least */

    /* The multi-domain run, checked in this process too (leaks show here). */
    char path[1024];
    snprintf(path, sizeof path, "%s/inputs/multi.json", TAU2_SOURCE_DIR);
    JobConfig cfg;
    config_load_job(path, &cfg);
    assert_string_equal(cfg.job, "grpo");
    assert_string_equal(cfg.prompt_data, "runs/prepared/multi_domain_train_tasks.jsonl");
    assert_string_equal(cfg.output_dir, "runs/multi");
    assert_int_equal((cfg.rollout_batch_size * cfg.n_samples_per_prompt) % cfg.global_batch_size, 0);
    job_config_free(&cfg);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grpo_values_and_defaults),
        cmocka_unit_test(test_sft_defaults),
        cmocka_unit_test(test_every_key_accepted_and_documented),
        cmocka_unit_test(test_unknown_keys),
        cmocka_unit_test(test_wrong_types_and_ranges),
        cmocka_unit_test(test_duplicate_key), cmocka_unit_test(test_bad_enums),
        cmocka_unit_test(test_missing_required),
        cmocka_unit_test(test_inconsistent),
        cmocka_unit_test(test_unreadable),
        cmocka_unit_test(test_shipped_inputs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
