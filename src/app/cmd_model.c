/* cmd_model.c — the model subcommands: score (per-token logprobs of given
 * token sequences) and generate (sample continuations of a prompt). */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "app/cli.h"
#include "core/error.h"
#include "core/json.h"
#include "core/sbuf.h"
#include "io/checkpoint.h"
#include "model/infer.h"
#ifdef TAU2_HAVE_CUDA
#include "model/infer_gpu.h"
#endif
#include "model/qwen3.h"
#include "model/sample.h"
#include "text/tokenizer.h"

#define MAX_STOP_STRINGS 64

static Qwen3 *load_model_or_die(const char *cmd, const char *dir) {
    if (!dir) die_input("%s: --model is required (a Hugging Face Qwen3 model directory)", cmd);
    char err[1024];
    Qwen3 *m = qwen3_load_dir(dir, err, sizeof err);
    if (!m) die_input("%s", err);
    return m;
}

static bool is_file(const char *p) {
    struct stat st;
    return p && stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* A JSON list of token ids, each in [0, V); `where` names it in messages. */
static int32_t *parse_ids_or_die(const cJSON *arr, int V, const char *where, int *n_out) {
    if (!cJSON_IsArray(arr)) die_input("%s: expected a list of token ids", where);
    int n = cJSON_GetArraySize(arr);
    int32_t *ids = xmalloc((size_t)(n > 0 ? n : 1) * sizeof(int32_t));
    int i = 0;
    for (const cJSON *it = arr->child; it; it = it->next, i++) {
        if (!json_is_int(it) || it->valuedouble < 0 || it->valuedouble >= V) {
            die_input("%s[%d]: expected a token id (an integer in [0, %d))", where, i, V);
        }
        ids[i] = (int32_t)it->valuedouble;
    }
    *n_out = n;
    return ids;
}

/* ---------------------------------------------------------------- score */

int cmd_score(int argc, char **argv) {
    static const CliOption known[] = {{"--model", CLI_VALUE}, {"--input", CLI_VALUE}, {NULL, 0}};
    cli_check_args("score", argc, argv, known, 0, NULL, NULL);
    const char *input = cli_opt(argc, argv, "--input");
    if (!input) die_input("score: usage: tau2_hpc score --model DIR --input T.json|-");
    const char *model_dir = cli_opt(argc, argv, "--model");
    if (!model_dir) die_input("score: --model is required (a Hugging Face Qwen3 model directory)");

    const char *name = strcmp(input, "-") == 0 ? "<stdin>" : input;
    cJSON *doc = cli_load_json(input);
    const cJSON *seqs = cJSON_IsArray(doc) ? doc : json_get(doc, "sequences");
    if (!cJSON_IsArray(seqs)) {
        die_input("%s: expected {\"sequences\": [[ids...], ...]} or a list of token-id lists", name);
    }
    int n_seqs = cJSON_GetArraySize(seqs);
    if (n_seqs == 0) die_input("%s: sequences: expected at least one sequence", name);

    Qwen3 *m = load_model_or_die("score", model_dir);
    int V = m->config.vocab_size;
    int32_t *seq_start = xmalloc((size_t)(n_seqs + 1) * sizeof(int32_t));
    int32_t **ids = xcalloc((size_t)n_seqs, sizeof(int32_t *));
    int T = 0, s = 0;
    for (const cJSON *it = seqs->child; it; it = it->next, s++) {
        char where[256];
        snprintf(where, sizeof where, "%s: sequences[%d]", name, s);
        int n;
        ids[s] = parse_ids_or_die(it, V, where, &n);
        if (n == 0) die_input("%s: expected at least one token", where);
        if (n > m->config.max_position_embeddings) {
            die_input("%s: %d tokens exceed the model's max_position_embeddings (%d)", where, n,
                      m->config.max_position_embeddings);
        }
        seq_start[s] = T;
        T += n;
    }
    seq_start[n_seqs] = T;
    int32_t *tokens = xmalloc((size_t)T * sizeof(int32_t)), *targets = xmalloc((size_t)T * sizeof(int32_t));
    for (s = 0; s < n_seqs; s++) {
        memcpy(tokens + seq_start[s], ids[s], (size_t)(seq_start[s + 1] - seq_start[s]) * sizeof(int32_t));
    }
    qwen3_next_token_targets(tokens, seq_start, n_seqs, targets);
    float *logprob = xmalloc((size_t)T * sizeof(float)), *entropy = xmalloc((size_t)T * sizeof(float));
    Qwen3Batch batch = {T, n_seqs, tokens, targets, seq_start, NULL};
    qwen3_forward(m, &batch, logprob, entropy);

    /* logprobs[s][i] is token i's logprob given tokens before it: the
     * forward's value at position i - 1. */
    cJSON *out = cJSON_CreateObject(), *all = cJSON_AddArrayToObject(out, "logprobs");
    for (s = 0; s < n_seqs; s++) {
        cJSON *row = cJSON_CreateArray();
        cJSON_AddItemToArray(row, cJSON_CreateNull());
        for (int t = seq_start[s] + 1; t < seq_start[s + 1]; t++) cJSON_AddItemToArray(row, json_float(logprob[t - 1]));
        cJSON_AddItemToArray(all, row);
    }
    char *text = json_dumps(out, JSON_DUMP_UTF8);
    puts(text);
    free(text);
    cJSON_Delete(out);
    for (s = 0; s < n_seqs; s++) free(ids[s]);
    free(ids);
    free(seq_start);
    free(tokens);
    free(targets);
    free(logprob);
    free(entropy);
    qwen3_free(m);
    cJSON_Delete(doc);
    return EXIT_OK;
}

/* ---------------------------------------------------------------- generate */

static float parse_float_or_die(const char *opt, const char *s, const char *what) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v)) die_input("generate: %s: expected %s, got '%s'", opt, what, s);
    return (float)v;
}

static cJSON *sample_json(const InferGenResult *r, const Tokenizer *tok) {
    cJSON *o = cJSON_CreateObject();
    cJSON *ids = cJSON_AddArrayToObject(o, "ids"), *lps = cJSON_AddArrayToObject(o, "logprobs");
    for (int i = 0; i < r->n; i++) {
        cJSON_AddItemToArray(ids, json_int(r->ids[i]));
        cJSON_AddItemToArray(lps, json_float(r->logprobs[i]));
    }
    if (tok) {
        char *text = tok_decode(tok, r->ids, (size_t)r->n, 0, NULL);
        cJSON_AddStringToObject(o, "text", text);
        free(text);
    } else {
        cJSON_AddNullToObject(o, "text");
    }
    cJSON_AddStringToObject(o, "finish_reason", infer_finish_name(r->finish));
    return o;
}

int cmd_generate(int argc, char **argv) {
    static const CliOption known[] = {{"--model", CLI_VALUE}, {"--prompt", CLI_VALUE}, {"--prompt-ids", CLI_VALUE},
                                      {"--tokenizer", CLI_VALUE}, {"--max-new-tokens", CLI_VALUE},
                                      {"--temperature", CLI_VALUE}, {"--top-p", CLI_VALUE}, {"--top-k", CLI_VALUE},
                                      {"--seed", CLI_VALUE}, {"--n", CLI_VALUE}, {"--stop", CLI_LIST},
                                      {"--ignore-eos", CLI_FLAG}, {"--device", CLI_VALUE}, {NULL, 0}};
    cli_check_args("generate", argc, argv, known, 0, NULL, NULL);
    const char *device = cli_opt(argc, argv, "--device");
    bool on_gpu = device && !strcmp(device, "cuda");
    if (device && !on_gpu && strcmp(device, "cpu")) die_input("generate: --device: expected cpu or cuda, got '%s'", device);
#ifndef TAU2_HAVE_CUDA
    if (on_gpu) die_input("generate: --device cuda: this build has no CUDA backend (configure with -DTAU2_CUDA=ON)");
#endif
    const char *model_dir = cli_opt(argc, argv, "--model");
    const char *prompt = cli_opt(argc, argv, "--prompt");
    const char *prompt_ids = cli_opt(argc, argv, "--prompt-ids");
    const char *tok_path = cli_opt(argc, argv, "--tokenizer");
    const char *v;
    if (!model_dir) die_input("generate: --model is required (a Hugging Face Qwen3 model directory)");
    if (!prompt == !prompt_ids) die_input("generate: give exactly one of --prompt TEXT and --prompt-ids JSON");

    InferGenParams p = {.sample = {.temperature = 1.0f, .top_p = 1.0f, .top_k = 0}, .max_new_tokens = 128};
    if ((v = cli_opt(argc, argv, "--max-new-tokens"))) {
        p.max_new_tokens = (int)cli_long("generate", "--max-new-tokens", v, 1, 1 << 24, NULL);
    }
    if ((v = cli_opt(argc, argv, "--temperature"))) {
        p.sample.temperature = parse_float_or_die("--temperature", v, "a number >= 0 (0: greedy)");
    }
    if ((v = cli_opt(argc, argv, "--top-p"))) p.sample.top_p = parse_float_or_die("--top-p", v, "a number in (0, 1]");
    if ((v = cli_opt(argc, argv, "--top-k")))
        p.sample.top_k = (int)cli_long("generate", "--top-k", v, 0, 1 << 30, NULL);
    if ((v = cli_opt(argc, argv, "--seed"))) {
        char *end;
        errno = 0;
        unsigned long long s = strtoull(v, &end, 10);
        if (errno || end == v || *end || v[0] == '-') die_input("generate: --seed: expected an integer >= 0, got '%s'", v);
        p.seed = s;
    }
    int n_samples = 1;
    if ((v = cli_opt(argc, argv, "--n"))) n_samples = (int)cli_long("generate", "--n", v, 1, 4096, NULL);
    char err[1024];
    if (sample_check_params(&p.sample, err, sizeof err) != 0) die_input("generate: %s", err);
    const char *stops[MAX_STOP_STRINGS];
    int n_stops = cli_opt_list(argc, argv, "--stop", stops, MAX_STOP_STRINGS);
    for (int i = 0; i < n_stops; i++) {
        if (!stops[i][0]) die_input("generate: --stop: stop string %d is empty", i);
    }

    Qwen3 *m = load_model_or_die("generate", model_dir);
    int V = m->config.vocab_size;

    /* The tokenizer: --tokenizer (a file or a directory), else the model's own. */
    char tok_file[2048] = "";
    if (tok_path) {
        snprintf(tok_file, sizeof tok_file, cli_is_dir(tok_path) ? "%s/tokenizer.json" : "%s", tok_path);
    } else {
        snprintf(tok_file, sizeof tok_file, "%s/tokenizer.json", model_dir);
        if (!is_file(tok_file)) tok_file[0] = 0;
    }
    Tokenizer *tok = NULL;
    if (tok_file[0]) {
        tok = tok_load(tok_file, err, sizeof err);
        if (!tok) die_input("%s", err);
    }
    if (prompt && !tok) die_input("generate: --prompt needs a tokenizer (--tokenizer PATH, or tokenizer.json in the model directory)");
    if (n_stops > 0 && !tok) die_input("generate: --stop needs a tokenizer (--tokenizer PATH)");

    int32_t *ids = NULL;
    int n_ids = 0;
    if (prompt) {
        size_t n;
        tok_encode(tok, prompt, strlen(prompt), &ids, &n);
        n_ids = (int)n;
        for (int i = 0; i < n_ids; i++) {
            if (ids[i] >= V) {
                die_input("generate: --prompt: token %d ('%s' in the tokenizer) is outside the model's vocabulary (%d)",
                          ids[i], prompt, V);
            }
        }
    } else {
        cJSON *arr = json_parse(prompt_ids, strlen(prompt_ids), "--prompt-ids", err, sizeof err);
        if (!arr) die_input("generate: %s (expected a JSON list of token ids)", err);
        ids = parse_ids_or_die(arr, V, "generate: --prompt-ids", &n_ids);
        cJSON_Delete(arr);
    }
    if (n_ids == 0) die_input("generate: the prompt is empty (at least one token is needed)");
    if (n_ids >= m->config.max_position_embeddings) {
        die_input("generate: the prompt has %d tokens; the model's context is %d", n_ids,
                  m->config.max_position_embeddings);
    }

    /* Stop ids: the model's eos and the chat end-of-turn token, unless --ignore-eos. */
    int32_t stop_ids[3];
    int n_stop_ids = 0;
    if (!cli_flag(argc, argv, "--ignore-eos")) {
        if (m->config.eos_token_id >= 0 && m->config.eos_token_id < V) stop_ids[n_stop_ids++] = m->config.eos_token_id;
        const char *ends[2] = {"<|im_end|>", "<|endoftext|>"};
        for (int i = 0; tok && i < 2; i++) {
            int32_t id = tok_id_of(tok, ends[i]);
            bool have = false;
            for (int j = 0; j < n_stop_ids; j++) have |= stop_ids[j] == id;
            if (id >= 0 && id < V && !have) stop_ids[n_stop_ids++] = id;
        }
    }
    p.stop_ids = stop_ids;
    p.n_stop_ids = n_stop_ids;
    p.stop_strings = stops;
    p.n_stop_strings = n_stops;

    /* KV budget: the shared prompt once, each sample's own tokens, a block
     * of slack per sequence for partly filled and copied blocks. */
    int bs = INFER_DEFAULT_BLOCK_SIZE;
    long max_ctx = m->config.max_position_embeddings;
    long own = (long)p.max_new_tokens + 1 < max_ctx ? (long)p.max_new_tokens + 1 : max_ctx;
    long kv = (long)n_ids + (long)n_samples * (own + 2L * bs) + bs;
    if (kv > (1L << 30)) die_input("generate: --n %d x --max-new-tokens %d is too large", n_samples, p.max_new_tokens);
    InferOptions opt = {.kv_tokens = (int)kv, .block_size = bs, .max_seqs = n_samples + 1};
    /* The engine: the CPU's, or the GPU's (device 0) with --device cuda. */
    InferEngine *e = NULL;
    InferBackend eng;
#ifdef TAU2_HAVE_CUDA
    InferGpu *eg = NULL;
    if (on_gpu) {
        eg = infer_gpu_new(m, &opt, 0, err, sizeof err);
        if (!eg) die_input("generate: --device cuda: %s", err);
        eng = infer_gpu_backend(eg);
    } else
#endif
    {
        e = infer_new(m, &opt, err, sizeof err);
        if (!e) die_input("generate: %s", err);
        eng = infer_backend(e);
    }
    InferGen *g = infer_gen_new_backend(&eng, tok);

    /* Prefill the prompt but its last token once; fork it for each sample. */
    int parent = eng.seq_new(eng.engine, err, sizeof err);
    if (parent < 0) die_runtime("generate: %s", err);
    if (n_ids > 1 && infer_gen_prefill(g, parent, ids, n_ids - 1, err, sizeof err) != 0)
        die_runtime("generate: %s", err);
    int *req = xmalloc((size_t)n_samples * sizeof(int));
    for (int i = 0; i < n_samples; i++) {
        int s = eng.seq_fork(eng.engine, parent, err, sizeof err);
        if (s < 0) die_runtime("generate: %s", err);
        p.stream = (uint64_t)i;
        req[i] = infer_gen_add(g, s, ids + n_ids - 1, 1, &p, err, sizeof err);
        if (req[i] < 0) die_input("generate: %s", err);
    }
    eng.seq_free(eng.engine, parent);
    while (infer_gen_running(g) > 0) {
        if (infer_gen_step(g, err, sizeof err) < 0) die_runtime("generate: %s", err);
    }

    cJSON *out = cJSON_CreateObject(), *samples = cJSON_AddArrayToObject(out, "samples");
    for (int i = 0; i < n_samples; i++) {
        InferGenResult r = infer_gen_result(g, req[i]);
        cJSON_AddItemToArray(samples, sample_json(&r, tok));
    }
    char *text = json_dumps(out, JSON_DUMP_UTF8);
    puts(text);
    free(text);
    cJSON_Delete(out);
    free(req);
    free(ids);
    infer_gen_free(g);
    infer_free(e);
#ifdef TAU2_HAVE_CUDA
    infer_gpu_free(eg);
#endif
    tok_free(tok);
    qwen3_free(m);
    return EXIT_OK;
}

/* ---------------------------------------------------------------- export */

int cmd_export(int argc, char **argv) {
    static const CliOption known[] = {{"--checkpoint", CLI_VALUE}, {"--output", CLI_VALUE}, {"--dtype", CLI_VALUE},
                                      {NULL, 0}};
    cli_check_args("export", argc, argv, known, 0, NULL, NULL);
    const char *ck = cli_opt(argc, argv, "--checkpoint"), *outdir = cli_opt(argc, argv, "--output");
    if (!ck || !outdir) die_input("export: usage: tau2_hpc export --checkpoint CKPT --output DIR [--dtype F32|BF16|F16]");
    const char *dt = cli_opt(argc, argv, "--dtype");
    int dtype = st_dtype_parse(dt ? dt : "BF16");
    if (dtype != ST_F32 && dtype != ST_BF16 && dtype != ST_F16)
        die_input("export: --dtype: expected F32, BF16 or F16, got '%s'", dt);
    char path[2048], err[2048];
    if (path_check_output(outdir, 1, err, sizeof err) != 0) die_input("export: --output: %s", err);
    /* in a directory that exists, the names export writes */
    const char *files[] = {"model.safetensors", "config.json"};
    struct stat sb;
    for (int i = 0; i < 2 && stat(outdir, &sb) == 0; i++) {
        char file[2100];
        snprintf(file, sizeof file, "%s/%s", outdir, files[i]);
        if (path_check_output(file, 0, err, sizeof err) != 0) die_input("export: --output: %s", err);
    }
    char rerr[2100];
    if (ckpt_resolve(ck, path, sizeof path, rerr, sizeof rerr) != 0) die_input("export: --checkpoint %s", rerr);
    char *config = ckpt_read_config(path, err, sizeof err);
    if (!config) die_input("export: %s", err);
    cJSON *cj = json_parse(config, strlen(config), path, err, sizeof err);
    const cJSON *mc = cj ? json_get(cj, "model_config") : NULL;
    if (!mc) die_input("export: %s: the config attribute has no model_config (not a tau2_hpc training checkpoint)", path);
    Qwen3Config cfg;
    if (qwen3_config_from_json(mc, path, &cfg, err, sizeof err) != 0) die_input("export: %s", err);
    Qwen3 *m = qwen3_new(&cfg);
    CkptTensor *t = xcalloc((size_t)m->n_tensors, sizeof *t);
    for (int i = 0; i < m->n_tensors; i++) {
        const Qwen3Tensor *q = &m->tensors[i];
        t[i] = (CkptTensor){.name = q->name, .ndim = q->ndim, .data = m->params_memory + q->offset};
        for (int d = 0; d < q->ndim; d++) t[i].shape[d] = q->shape[d];
    }
    CkptState st;
    if (ckpt_load(path, &st, t, NULL, NULL, m->n_tensors, err, sizeof err) != 0) die_input("export: %s", err);
    if (qwen3_export_dir(m, outdir, (StDtype)dtype, err, sizeof err) != 0) die_runtime("export: %s", err);
    printf("exported %s (step %" PRId64 ") to %s as %s\n", path, st.step, outdir, st_dtype_name((StDtype)dtype));
    ckpt_state_free(&st);
    free(t);
    qwen3_free(m);
    cJSON_Delete(cj);
    free(config);
    return EXIT_OK;
}
