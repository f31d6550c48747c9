/* qwen3.c — Qwen3 config, parameters, forward, backward and AdamW on the CPU.
 *
 * The structure follows llm.c's train_gpt2.c: sizes of every parameter kind,
 * one buffer they point into, an activation arena, and forward/backward as
 * long linear sequences of layer calls (layers_cpu.h) that read top to bottom.
 *
 * Tensor parallelism (Megatron, see qwen3.h): q/k/v/gate/up are
 * column-parallel and o/down row-parallel, embedding and output head
 * vocab-parallel. Layer functions take local sizes; the comments "TP" mark the
 * collectives, which are skipped entirely at TP = 1 (no copies, no calls).
 * Forward: all-reduce after o_proj and down_proj (before the residual add)
 * and after the embedding; the head all-reduces the row max and the softmax
 * sums. Backward: all-reduce of the input gradient of every column-parallel
 * block (q/k/v, gate/up, and the vocab-parallel head), and of the q/k-norm
 * weight gradients (each rank saw only its heads).
 */
#include "model/qwen3.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "comm/comm.h"
#include "core/json.h"
#include "core/sysmem.h"
#include "model/layers_cpu.h"

/* ================================================================ config */

static int cfg_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int cfg_err(char *err, size_t errlen, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

/* A required positive Python int. */
static int cfg_int(const cJSON *j, const char *path, const char *key, int *out, char *err, size_t errlen) {
    const cJSON *v = json_get(j, key);
    if (!v) return cfg_err(err, errlen, "%s: missing key \"%s\"", path, key);
    if (!json_is_int(v) || v->valuedouble < 1 || v->valuedouble > 2147483647.0) {
        return cfg_err(err, errlen, "%s: \"%s\" must be a positive integer", path, key);
    }
    *out = (int)v->valuedouble;
    return 0;
}

/* A required positive number (int or float). */
static int cfg_num(const cJSON *j, const char *path, const char *key, double *out, char *err, size_t errlen) {
    const cJSON *v = json_get(j, key);
    if (!v) return cfg_err(err, errlen, "%s: missing key \"%s\"", path, key);
    if (!cJSON_IsNumber(v) || !(v->valuedouble > 0) || isinf(v->valuedouble)) {
        return cfg_err(err, errlen, "%s: \"%s\" must be a positive number", path, key);
    }
    *out = v->valuedouble;
    return 0;
}

/* An optional token id: int, null, or a list of ints (first taken). */
static int cfg_token_id(const cJSON *j, const char *path, const char *key, int *out, char *err, size_t errlen) {
    const cJSON *v = json_get(j, key);
    *out = -1;
    if (!v || cJSON_IsNull(v)) return 0;
    if (cJSON_IsArray(v)) v = cJSON_GetArrayItem(v, 0);
    if (!v || !json_is_int(v) || v->valuedouble < 0 || v->valuedouble > 2147483647.0) {
        return cfg_err(err, errlen, "%s: \"%s\" must be a non-negative integer, a list of them, or null", path, key);
    }
    *out = (int)v->valuedouble;
    return 0;
}

/* An optional boolean that must have the value `want` (features not supported). */
static int cfg_bool_must(const cJSON *j, const char *path, const char *key, bool want, char *err, size_t errlen) {
    const cJSON *v = json_get(j, key);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsBool(v)) return cfg_err(err, errlen, "%s: \"%s\" must be true or false", path, key);
    if ((bool)cJSON_IsTrue(v) != want) {
        return cfg_err(err, errlen, "%s: \"%s\": %s is not supported", path, key, want ? "false" : "true");
    }
    return 0;
}

int qwen3_config_from_json(const cJSON *j, const char *path, Qwen3Config *cfg, char *err, size_t errlen) {
    memset(cfg, 0, sizeof *cfg);
    if (!cJSON_IsObject(j)) return cfg_err(err, errlen, "%s: expected a JSON object", path);

    const cJSON *mt = json_get(j, "model_type");
    if (!mt) return cfg_err(err, errlen, "%s: missing key \"model_type\"", path);
    if (!cJSON_IsString(mt)) return cfg_err(err, errlen, "%s: \"model_type\" must be a string", path);
    if (strcmp(mt->valuestring, "qwen3") != 0) {
        return cfg_err(err, errlen, "%s: \"model_type\" is \"%s\"; only \"qwen3\" (dense) is supported", path,
                       mt->valuestring);
    }
    if (cfg_int(j, path, "vocab_size", &cfg->vocab_size, err, errlen) ||
        cfg_int(j, path, "hidden_size", &cfg->hidden_size, err, errlen) ||
        cfg_int(j, path, "intermediate_size", &cfg->intermediate_size, err, errlen) ||
        cfg_int(j, path, "num_hidden_layers", &cfg->num_layers, err, errlen) ||
        cfg_int(j, path, "num_attention_heads", &cfg->num_heads, err, errlen) ||
        cfg_int(j, path, "num_key_value_heads", &cfg->num_kv_heads, err, errlen) ||
        cfg_int(j, path, "head_dim", &cfg->head_dim, err, errlen) ||
        cfg_int(j, path, "max_position_embeddings", &cfg->max_position_embeddings, err, errlen)) {
        return -1;
    }
    double eps = 0, theta = 0;
    if (cfg_num(j, path, "rms_norm_eps", &eps, err, errlen) || cfg_num(j, path, "rope_theta", &theta, err, errlen)) {
        return -1;
    }
    cfg->rms_norm_eps = (float)eps;
    cfg->rope_theta = theta;

    const cJSON *tie = json_get(j, "tie_word_embeddings");
    if (tie && !cJSON_IsBool(tie)) return cfg_err(err, errlen, "%s: \"tie_word_embeddings\" must be true or false", path);
    cfg->tie_word_embeddings = tie && cJSON_IsTrue(tie); /* transformers' Qwen3Config default: false */

    /* transformers >= 4.56 writes "dtype"; older versions "torch_dtype". */
    const cJSON *dt = json_get(j, "torch_dtype");
    if (!dt) dt = json_get(j, "dtype");
    if (dt && !cJSON_IsNull(dt)) {
        if (!cJSON_IsString(dt) || strlen(dt->valuestring) >= sizeof cfg->torch_dtype) {
            return cfg_err(err, errlen, "%s: \"torch_dtype\" must be a dtype name such as \"bfloat16\"", path);
        }
        strcpy(cfg->torch_dtype, dt->valuestring);
    }
    if (cfg_token_id(j, path, "bos_token_id", &cfg->bos_token_id, err, errlen) ||
        cfg_token_id(j, path, "eos_token_id", &cfg->eos_token_id, err, errlen)) {
        return -1;
    }

    /* Features of the Qwen3 config class this engine does not implement. */
    const cJSON *rs = json_get(j, "rope_scaling");
    if (rs && !cJSON_IsNull(rs)) {
        return cfg_err(err, errlen, "%s: \"rope_scaling\": only null is supported (no RoPE scaling)", path);
    }
    if (cfg_bool_must(j, path, "use_sliding_window", false, err, errlen) ||
        cfg_bool_must(j, path, "attention_bias", false, err, errlen)) {
        return -1;
    }
    const cJSON *act = json_get(j, "hidden_act");
    if (act && (!cJSON_IsString(act) || strcmp(act->valuestring, "silu") != 0)) {
        return cfg_err(err, errlen, "%s: \"hidden_act\": only \"silu\" is supported", path);
    }

    if (cfg->num_heads % cfg->num_kv_heads != 0) {
        return cfg_err(err, errlen, "%s: \"num_attention_heads\" (%d) must be a multiple of \"num_key_value_heads\" (%d)",
                       path, cfg->num_heads, cfg->num_kv_heads);
    }
    if (cfg->head_dim % 2 != 0 || cfg->head_dim > 512) {
        return cfg_err(err, errlen, "%s: \"head_dim\" (%d) must be even and at most 512", path, cfg->head_dim);
    }
    return 0;
}

int qwen3_config_load(const char *path, Qwen3Config *cfg, char *err, size_t errlen) {
    cJSON *j = json_load_file(path, err, errlen);
    if (!j) return -1;
    int rc = qwen3_config_from_json(j, path, cfg, err, errlen);
    cJSON_Delete(j);
    return rc;
}

/* The shortest decimal that reads back as the same float (1e-06, not
 * 9.99999997e-07), so exported configs look like the originals. */
static double float_shortest(float x) {
    char buf[32];
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, (double)x);
        double d = strtod(buf, NULL);
        if ((float)d == x) return d;
    }
    return (double)x;
}

cJSON *qwen3_config_to_json(const Qwen3Config *c) {
    cJSON *j = cJSON_CreateObject();
    cJSON *arch = cJSON_CreateArray();
    cJSON_AddItemToArray(arch, cJSON_CreateString("Qwen3ForCausalLM"));
    cJSON_AddItemToObject(j, "architectures", arch);
    cJSON_AddItemToObject(j, "attention_bias", cJSON_CreateFalse());
    cJSON_AddItemToObject(j, "attention_dropout", json_float(0.0));
    cJSON_AddItemToObject(j, "bos_token_id", c->bos_token_id >= 0 ? json_int(c->bos_token_id) : cJSON_CreateNull());
    cJSON_AddItemToObject(j, "eos_token_id", c->eos_token_id >= 0 ? json_int(c->eos_token_id) : cJSON_CreateNull());
    cJSON_AddItemToObject(j, "head_dim", json_int(c->head_dim));
    cJSON_AddItemToObject(j, "hidden_act", cJSON_CreateString("silu"));
    cJSON_AddItemToObject(j, "hidden_size", json_int(c->hidden_size));
    cJSON_AddItemToObject(j, "initializer_range", json_float(0.02));
    cJSON_AddItemToObject(j, "intermediate_size", json_int(c->intermediate_size));
    cJSON_AddItemToObject(j, "max_position_embeddings", json_int(c->max_position_embeddings));
    cJSON_AddItemToObject(j, "max_window_layers", json_int(c->num_layers));
    cJSON_AddItemToObject(j, "model_type", cJSON_CreateString("qwen3"));
    cJSON_AddItemToObject(j, "num_attention_heads", json_int(c->num_heads));
    cJSON_AddItemToObject(j, "num_hidden_layers", json_int(c->num_layers));
    cJSON_AddItemToObject(j, "num_key_value_heads", json_int(c->num_kv_heads));
    cJSON_AddItemToObject(j, "rms_norm_eps", json_float(float_shortest(c->rms_norm_eps)));
    cJSON_AddItemToObject(j, "rope_scaling", cJSON_CreateNull());
    cJSON_AddItemToObject(j, "rope_theta", json_float(c->rope_theta));
    cJSON_AddItemToObject(j, "sliding_window", cJSON_CreateNull());
    cJSON_AddItemToObject(j, "tie_word_embeddings", cJSON_CreateBool(c->tie_word_embeddings));
    cJSON_AddItemToObject(j, "torch_dtype", cJSON_CreateString(c->torch_dtype[0] ? c->torch_dtype : "float32"));
    cJSON_AddItemToObject(j, "use_cache", cJSON_CreateTrue());
    cJSON_AddItemToObject(j, "use_sliding_window", cJSON_CreateFalse());
    cJSON_AddItemToObject(j, "vocab_size", json_int(c->vocab_size));
    return j;
}

/* ================================================================ parameters */

/* Sizes of this rank's shard of each parameter kind. */
static void fill_in_parameter_sizes(size_t *s, const Qwen3Config *c, const Qwen3Shard *sh) {
    size_t V = sh->vocab_size, C = c->hidden_size, I = sh->intermediate_size, L = c->num_layers;
    size_t QD = (size_t)sh->num_heads * c->head_dim, KD = (size_t)sh->num_kv_heads * c->head_dim;
    size_t D = c->head_dim;
    s[0] = V * C;      /* embed */
    s[1] = L * C;      /* ln1_w */
    s[2] = L * QD * C; /* wq */
    s[3] = L * KD * C; /* wk */
    s[4] = L * KD * C; /* wv */
    s[5] = L * D;      /* q_norm_w */
    s[6] = L * D;      /* k_norm_w */
    s[7] = L * C * QD; /* wo */
    s[8] = L * C;      /* ln2_w */
    s[9] = L * I * C;  /* wgate */
    s[10] = L * I * C; /* wup */
    s[11] = L * C * I; /* wdown */
    s[12] = C;         /* norm_w */
    s[13] = c->tie_word_embeddings ? 0 : V * C; /* lm_head */
}

/* Point the 14 fields of p into memory; lm_head aliases embed when tied. */
static void point_parameters(Qwen3Params *p, float *memory, const size_t *sizes, bool tied) {
    float **ptrs[QWEN3_NUM_PARAM_KINDS] = {&p->embed, &p->ln1_w,  &p->wq,    &p->wk,  &p->wv,
                                           &p->q_norm_w, &p->k_norm_w, &p->wo, &p->ln2_w, &p->wgate,
                                           &p->wup, &p->wdown, &p->norm_w, &p->lm_head};
    float *it = memory;
    for (int i = 0; i < QWEN3_NUM_PARAM_KINDS; i++) {
        *ptrs[i] = it;
        it += sizes[i];
    }
    if (tied) p->lm_head = p->embed;
}

/* One tensor of the table: local shape (rows, cols; cols 0 for 1-d) and how
 * the full tensor is split over the tp ranks. */
static void add_tensor(Qwen3 *m, const float *base, const float *ptr, size_t rows, size_t cols, Qwen3Split split,
                       const char *fmt, int layer) {
    Qwen3Tensor *t = &m->tensors[m->n_tensors++];
    int tp = m->shard.size;
    snprintf(t->name, sizeof t->name, fmt, layer);
    t->offset = (size_t)(ptr - base);
    t->numel = rows * (cols ? cols : 1);
    t->ndim = cols ? 2 : 1;
    t->shape[0] = (int64_t)rows;
    t->shape[1] = (int64_t)cols;
    t->split = tp > 1 ? split : QWEN3_REPLICATED;
    t->full_shape[0] = t->shape[0] * (t->split == QWEN3_SPLIT_ROWS ? tp : 1);
    t->full_shape[1] = t->shape[1] * (t->split == QWEN3_SPLIT_COLS ? tp : 1);
}

/* The Hugging Face view of the buffer, in the order transformers saves it. */
static void build_tensor_table(Qwen3 *m) {
    const Qwen3Config *c = &m->config;
    const Qwen3Shard *sh = &m->shard;
    const Qwen3Params *p = &m->params;
    const float *b = m->params_memory;
    size_t C = c->hidden_size, I = sh->intermediate_size, D = c->head_dim, V = sh->vocab_size;
    size_t QD = (size_t)sh->num_heads * D, KD = (size_t)sh->num_kv_heads * D;
    const Qwen3Split REP = QWEN3_REPLICATED, ROWS = QWEN3_SPLIT_ROWS, COLS = QWEN3_SPLIT_COLS;
    m->tensors = xcalloc((size_t)c->num_layers * 11 + 3, sizeof(Qwen3Tensor));
    m->n_tensors = 0;
    add_tensor(m, b, p->embed, V, C, ROWS, "model.embed_tokens.weight", 0);
    for (int l = 0; l < c->num_layers; l++) {
        add_tensor(m, b, p->ln1_w + l * C, C, 0, REP, "model.layers.%d.input_layernorm.weight", l);
        add_tensor(m, b, p->wq + l * QD * C, QD, C, ROWS, "model.layers.%d.self_attn.q_proj.weight", l);
        add_tensor(m, b, p->wk + l * KD * C, KD, C, ROWS, "model.layers.%d.self_attn.k_proj.weight", l);
        add_tensor(m, b, p->wv + l * KD * C, KD, C, ROWS, "model.layers.%d.self_attn.v_proj.weight", l);
        add_tensor(m, b, p->q_norm_w + l * D, D, 0, REP, "model.layers.%d.self_attn.q_norm.weight", l);
        add_tensor(m, b, p->k_norm_w + l * D, D, 0, REP, "model.layers.%d.self_attn.k_norm.weight", l);
        add_tensor(m, b, p->wo + l * C * QD, C, QD, COLS, "model.layers.%d.self_attn.o_proj.weight", l);
        add_tensor(m, b, p->ln2_w + l * C, C, 0, REP, "model.layers.%d.post_attention_layernorm.weight", l);
        add_tensor(m, b, p->wgate + l * I * C, I, C, ROWS, "model.layers.%d.mlp.gate_proj.weight", l);
        add_tensor(m, b, p->wup + l * I * C, I, C, ROWS, "model.layers.%d.mlp.up_proj.weight", l);
        add_tensor(m, b, p->wdown + l * C * I, C, I, COLS, "model.layers.%d.mlp.down_proj.weight", l);
    }
    add_tensor(m, b, p->norm_w, C, 0, REP, "model.norm.weight", 0);
    if (!c->tie_word_embeddings) add_tensor(m, b, p->lm_head, V, C, ROWS, "lm_head.weight", 0);
}

int qwen3_tp_check(const Qwen3Config *cfg, int tp, char *err, size_t errlen) {
    if (tp < 1) return cfg_err(err, errlen, "tensor parallel size %d must be positive", tp);
    const struct {
        const char *key;
        int n;
        const char *why;
    } counts[] = {
        {"num_key_value_heads", cfg->num_kv_heads, "each rank holds whole kv heads"},
        {"num_attention_heads", cfg->num_heads, "each rank holds whole query heads"},
        {"intermediate_size", cfg->intermediate_size, "each rank holds an equal slice of the MLP"},
        {"vocab_size", cfg->vocab_size, "each rank holds an equal slice of the vocabulary; no padding"},
    };
    for (size_t i = 0; i < sizeof counts / sizeof *counts; i++) {
        if (counts[i].n % tp != 0) {
            return cfg_err(err, errlen, "tensor parallel size %d does not divide %s (%d): %s", tp, counts[i].key,
                           counts[i].n, counts[i].why);
        }
    }
    return 0;
}

/* Rank `rank`'s part of the model split `size` ways (checked). */
void qwen3_shard_init(Qwen3Shard *sh, const Qwen3Config *cfg, int size, int rank) {
    sh->rank = rank;
    sh->size = size;
    sh->num_heads = cfg->num_heads / size;
    sh->num_kv_heads = cfg->num_kv_heads / size;
    sh->intermediate_size = cfg->intermediate_size / size;
    sh->vocab_size = cfg->vocab_size / size;
    sh->vocab_start = rank * sh->vocab_size;
}

size_t qwen3_shard_num_parameters(const Qwen3Config *cfg, int tp) {
    Qwen3Shard sh;
    qwen3_shard_init(&sh, cfg, tp, 0);
    size_t sizes[QWEN3_NUM_PARAM_KINDS], n = 0;
    fill_in_parameter_sizes(sizes, cfg, &sh);
    for (int i = 0; i < QWEN3_NUM_PARAM_KINDS; i++) n += sizes[i];
    return n;
}

/* A model of this rank's shard; tp was checked. */
static Qwen3 *model_new(const Qwen3Config *cfg, Comm *tp) {
    Qwen3 *m = xcalloc(1, sizeof *m);
    m->config = *cfg;
    m->tp = tp && tp->size > 1 ? tp : NULL;
    Qwen3Shard *sh = &m->shard;
    qwen3_shard_init(sh, cfg, tp ? tp->size : 1, tp ? tp->rank : 0);
    fill_in_parameter_sizes(m->param_sizes, cfg, sh);
    m->num_parameters = 0;
    for (int i = 0; i < QWEN3_NUM_PARAM_KINDS; i++) m->num_parameters += m->param_sizes[i];
    m->vocab_chunk = qwen3_default_vocab_chunk(sh->vocab_size);
    m->params_memory = xcalloc(m->num_parameters, sizeof(float));
    point_parameters(&m->params, m->params_memory, m->param_sizes, cfg->tie_word_embeddings);
    build_tensor_table(m);
    return m;
}

int qwen3_default_vocab_chunk(int vocab_shard) { return qwen3_vocab_chunk_within(vocab_shard, QWEN3_LOGITS_BYTES); }

int qwen3_vocab_chunk_within(int vocab_shard, long logits_bytes) {
    if (vocab_shard < 1) return QWEN3_VOCAB_CHUNK;
    long rows = logits_bytes / ((long)vocab_shard * (long)sizeof(float));
    rows -= rows % QWEN3_VOCAB_CHUNK;
    return rows > QWEN3_VOCAB_CHUNK ? (int)rows : QWEN3_VOCAB_CHUNK;
}

Qwen3 *qwen3_new(const Qwen3Config *cfg) { return model_new(cfg, NULL); }

Qwen3 *qwen3_new_tp(const Qwen3Config *cfg, Comm *tp, char *err, size_t errlen) {
    if (qwen3_tp_check(cfg, tp ? tp->size : 1, err, errlen) != 0) return NULL;
    return model_new(cfg, tp);
}

static void acts_free(Qwen3Acts *a);

void qwen3_free(Qwen3 *m) {
    if (!m) return;
    free(m->params_memory);
    free(m->grads_memory);
    free(m->m_memory);
    free(m->v_memory);
    free(m->tensors);
    acts_free(m->acts);
    free(m);
}

/* ================================================================ load / export */

static void format_shape(char *buf, size_t n, const int64_t *shape, int ndim) {
    size_t off = 0;
    off += (size_t)snprintf(buf + off, n - off, "[");
    for (int i = 0; i < ndim && off < n; i++) {
        off += (size_t)snprintf(buf + off, n - off, "%s%lld", i ? ", " : "", (long long)shape[i]);
    }
    if (off < n) snprintf(buf + off, n - off, "]");
}

/* Copy this rank's slice of a full tensor (full_shape) into dst (shape). */
static void take_slice(const Qwen3Tensor *t, int rank, const float *full, float *dst) {
    if (t->split == QWEN3_SPLIT_ROWS) {
        memcpy(dst, full + (size_t)rank * t->numel, t->numel * sizeof(float));
    } else { /* QWEN3_SPLIT_COLS */
        size_t rows = (size_t)t->shape[0], cols = (size_t)t->shape[1], fcols = (size_t)t->full_shape[1];
        for (size_t r = 0; r < rows; r++) {
            memcpy(dst + r * cols, full + r * fcols + (size_t)rank * cols, cols * sizeof(float));
        }
    }
}

/* The inverse: put rank r's slice (src, shape) into the full tensor. */
static void put_slice(const Qwen3Tensor *t, int rank, const float *src, float *full) {
    if (t->split == QWEN3_SPLIT_ROWS) {
        memcpy(full + (size_t)rank * t->numel, src, t->numel * sizeof(float));
    } else if (t->split == QWEN3_SPLIT_COLS) {
        size_t rows = (size_t)t->shape[0], cols = (size_t)t->shape[1], fcols = (size_t)t->full_shape[1];
        for (size_t r = 0; r < rows; r++) {
            memcpy(full + r * fcols + (size_t)rank * cols, src + r * cols, cols * sizeof(float));
        }
    } else {
        memcpy(full, src, t->numel * sizeof(float));
    }
}

int qwen3_load_weights(Qwen3 *m, const StDir *st, const char *dir_name, char *err, size_t errlen) {
    char want[64], got[64];
    float *full = NULL; /* TP: one full tensor at a time */
    for (int i = 0; i < m->n_tensors; i++) {
        const Qwen3Tensor *t = &m->tensors[i];
        format_shape(want, sizeof want, t->full_shape, t->ndim);
        const StTensor *s = st_dir_find(st, t->name);
        if (!s) return cfg_err(err, errlen, "%s: tensor %s is missing (expected shape %s)", dir_name, t->name, want);
        bool same = s->ndim == t->ndim;
        for (int d = 0; same && d < t->ndim; d++) same = s->shape[d] == t->full_shape[d];
        if (!same) {
            free(full);
            format_shape(got, sizeof got, s->shape, s->ndim);
            return cfg_err(err, errlen, "%s: tensor %s: expected shape %s, found %s", dir_name, t->name, want, got);
        }
        char e2[256];
        float *dst = m->params_memory + t->offset;
        if (t->split != QWEN3_REPLICATED) {
            full = xrealloc(full, (size_t)s->numel * sizeof(float));
            dst = full;
        }
        if (st_to_f32(s, dst, e2, sizeof e2) != 0) {
            free(full);
            return cfg_err(err, errlen, "%s: tensor %s: %s", dir_name, t->name, e2);
        }
        if (t->split != QWEN3_REPLICATED) take_slice(t, m->shard.rank, full, m->params_memory + t->offset);
    }
    free(full);
    int n = st_dir_count(st);
    for (int i = 0; i < n; i++) {
        const char *name = st_dir_tensor_at(st, i)->name;
        bool known = false;
        for (int k = 0; k < m->n_tensors && !known; k++) known = strcmp(m->tensors[k].name, name) == 0;
        if (!known) {
            bool tied_head = m->config.tie_word_embeddings && strcmp(name, "lm_head.weight") == 0;
            return cfg_err(err, errlen, "%s: unexpected tensor %s%s", dir_name, name,
                           tied_head ? " (config.json has tie_word_embeddings true)" : "");
        }
    }
    return 0;
}

Qwen3 *qwen3_load_dir(const char *dir, char *err, size_t errlen) { return qwen3_load_dir_tp(dir, NULL, err, errlen); }

Qwen3 *qwen3_load_dir_tp(const char *dir, Comm *tp, char *err, size_t errlen) {
    size_t plen = strlen(dir) + 32;
    char *path = xmalloc(plen);
    snprintf(path, plen, "%s/config.json", dir);
    Qwen3Config cfg;
    int rc = qwen3_config_load(path, &cfg, err, errlen);
    free(path);
    if (rc != 0) return NULL;
    char why[384];
    if (qwen3_tp_check(&cfg, tp ? tp->size : 1, why, sizeof why) != 0) {
        cfg_err(err, errlen, "%s/config.json: %s", dir, why); /* name the model that does not split */
        return NULL;
    }
    /* a config too big for this machine: refused naming it, before the allocation fails */
    int tp_size = tp ? tp->size : 1;
    double n_params = (double)qwen3_shard_num_parameters(&cfg, tp_size);
    char what[128];
    snprintf(what, sizeof what, "the fp32 weights (%.3g billion parameters%s)", n_params / 1e9,
             tp_size > 1 ? " in this rank's shard" : "");
    if (sysmem_check(n_params * sizeof(float), what, why, sizeof why) != 0) {
        cfg_err(err, errlen, "%s/config.json: %s", dir, why);
        return NULL;
    }
    StDir *st = st_open_dir(dir, err, errlen);
    if (!st) return NULL;
    Qwen3 *m = model_new(&cfg, tp);
    if (qwen3_load_weights(m, st, dir, err, errlen) != 0) {
        qwen3_free(m);
        m = NULL;
    }
    st_close_dir(st);
    return m;
}

void qwen3_set_tensor(const Qwen3 *m, float *memory, int ti, const float *full) {
    const Qwen3Tensor *t = &m->tensors[ti];
    if (!m->tp || t->split == QWEN3_REPLICATED) memcpy(memory + t->offset, full, t->numel * sizeof(float));
    else take_slice(t, m->shard.rank, full, memory + t->offset);
}

void qwen3_gather_tensor(const Qwen3 *m, const float *memory, int ti, float *out, int root) {
    const Qwen3Tensor *t = &m->tensors[ti];
    const float *local = memory + t->offset;
    if (!m->tp || t->split == QWEN3_REPLICATED) {
        if (m->shard.rank == root) memcpy(out, local, t->numel * sizeof(float));
        return;
    }
    int tp = m->shard.size;
    bool is_root = m->shard.rank == root;
    /* rank-major pieces: for a row split that is already the full tensor */
    float *pieces = is_root && t->split == QWEN3_SPLIT_COLS ? xmalloc((size_t)tp * t->numel * sizeof(float)) : out;
    comm_gather_f32(m->tp, local, pieces, t->numel, root);
    if (is_root && pieces != out) {
        for (int r = 0; r < tp; r++) put_slice(t, r, pieces + (size_t)r * t->numel, out);
        free(pieces);
    }
}

/* model.safetensors of the full model. At TP > 1 every rank takes part in the
 * gathers and TP rank 0 writes; the others return 0 (see qwen3_export_dir). */
static int write_tensors(const Qwen3 *m, const char *path, StDtype dtype, char *err, size_t errlen) {
    bool root = m->shard.rank == 0;
    StWriter *w = root ? st_writer_new(dtype) : NULL;
    if (root) st_writer_metadata(w, "format", "pt");
    float *full = NULL;
    for (int i = 0; i < m->n_tensors; i++) {
        const Qwen3Tensor *t = &m->tensors[i];
        const float *data = m->params_memory + t->offset;
        if (m->tp) { /* TP: one gathered tensor at a time */
            size_t n = (size_t)t->full_shape[0] * (size_t)(t->ndim == 2 ? t->full_shape[1] : 1);
            if (root) full = xrealloc(full, n * sizeof(float));
            qwen3_gather_tensor(m, m->params_memory, i, full, 0);
            data = full;
        }
        if (root) st_writer_add(w, t->name, t->full_shape, t->ndim, data);
    }
    free(full);
    int rc = 0;
    if (root) {
        rc = st_writer_save(w, path, err, errlen);
        st_writer_free(w);
    }
    return rc;
}

int qwen3_export_dir(const Qwen3 *m, const char *dir, StDtype dtype, char *err, size_t errlen) {
    if (dtype != ST_F32 && dtype != ST_BF16 && dtype != ST_F16) {
        return cfg_err(err, errlen, "%s: export dtype must be F32, BF16 or F16", dir);
    }
    bool root = m->shard.rank == 0;
    int rc = 0;
    char msg[512] = "";
    size_t plen = strlen(dir) + 32;
    char *path = xmalloc(plen);
    if (root && mkdir(dir, 0755) != 0 && errno != EEXIST)
        rc = cfg_err(msg, sizeof msg, "%s: cannot create directory: %s", dir, strerror(errno));
    if (root && rc == 0) { /* an earlier export's config.json goes first: it does not describe the new weights */
        snprintf(path, plen, "%s/config.json", dir);
        if (unlink(path) != 0 && errno != ENOENT)
            rc = cfg_err(msg, sizeof msg, "%s: cannot replace: %s", path, strerror(errno));
    }
    /* TP: every rank learns whether rank 0 can go on, since the tensor
     * gathers below are collective. */
    if (m->tp) comm_broadcast(m->tp, &rc, sizeof rc, 0);
    if (rc == 0) {
        snprintf(path, plen, "%s/model.safetensors", dir);
        rc = write_tensors(m, path, dtype, msg, sizeof msg);
    }
    /* config.json last: a directory that has it has its weights too */
    if (root && rc == 0) {
        Qwen3Config c = m->config;
        snprintf(c.torch_dtype, sizeof c.torch_dtype, "%s",
                 dtype == ST_F32 ? "float32" : dtype == ST_BF16 ? "bfloat16" : "float16");
        cJSON *j = qwen3_config_to_json(&c);
        char *text = json_dumps(j, JSON_DUMP_INDENT);
        cJSON_Delete(j);
        snprintf(path, plen, "%s/config.json", dir);
        rc = file_write_atomic(path, text, strlen(text), msg, sizeof msg);
        free(text);
    }
    if (m->tp) {
        comm_broadcast(m->tp, &rc, sizeof rc, 0);
        comm_broadcast(m->tp, msg, sizeof msg, 0);
    }
    if (rc != 0) snprintf(err, errlen, "%s", msg);
    free(path);
    return rc;
}

/* ================================================================ activations */

/* One layer's saved activations (T rows each). */
typedef struct {
    float *ln1;     /* (T, C) */
    float *rstd1;   /* (T) */
    float *q;       /* (T, NH*D) before q_norm */
    float *k;       /* (T, NKV*D) before k_norm */
    float *v;       /* (T, NKV*D) */
    float *q_rstd;  /* (T, NH) */
    float *k_rstd;  /* (T, NKV) */
    float *qr;      /* (T, NH*D) normed and rotated */
    float *kr;      /* (T, NKV*D) normed and rotated */
    float *att;     /* (T, NH*D) attention output */
    float *att_lse; /* (T, NH) */
    float *res2;    /* (T, C) residual after attention */
    float *ln2;     /* (T, C) */
    float *rstd2;   /* (T) */
    float *gate;    /* (T, I) */
    float *up;      /* (T, I) */
    float *h;       /* (T, I) silu(gate) * up */
} LayerActs;

#define LAYER_ACT_FIELDS 17

struct Qwen3Acts {
    int T_cap;          /* tokens the arena holds */
    bool recompute;     /* layout: one layer slot instead of L */
    int chunk;          /* rows of the logits scratch */
    float *memory;
    int32_t *imemory;

    int T, n_seqs;      /* the last forward's batch */
    bool have_forward;
    int32_t *tokens, *targets, *pos, *seq_of, *seq_start; /* (T), (T), (T), (T), (T + 1) */

    LayerActs layers_base; /* slot 0; slot l is base + l * the field's size */
    size_t layer_sizes[LAYER_ACT_FIELDS];
    int field_slots[LAYER_ACT_FIELDS]; /* L, or 1 when recomputing (all but att, att_lse) */

    float *res;     /* (L + 1, T, C) input of each layer; res[L] the last output */
    float *xf;      /* (T, C) after the final norm */
    float *rstdf;   /* (T) */
    float *lm_lse;  /* (T) */
    float *lm_ent;  /* (T) */
    float *logits;  /* (chunk, V) */
    /* the forward's last chunk of logits (chunks of logits_chunk rows) is
     * still in `logits`: no backward has turned it into dlogits */
    bool logits_kept;
    /* the head's backward already ran in the forward (qwen3_forward_head_grad):
     * dln holds dxf, the head's weight gradient is added */
    bool head_grad_done;
    int logits_chunk;
    float *rope_cos, *rope_sin; /* (T, D/2) */
    /* the output head works on the rows it needs, gathered chunk by chunk */
    int n_head;                 /* rows in head_rows */
    int32_t *head_rows;         /* (T) */
    int32_t *head_targets;      /* (chunk) */
    float *head_x, *head_dx;    /* (chunk, C) */
    float *head_lp, *head_ent, *head_lse, *head_dlp, *head_dent; /* (chunk) */

    /* backward scratch, one layer */
    float *dres, *dln;          /* (T, C) */
    float *dqr, *dq, *datt;     /* (T, NH*D) */
    float *dkr, *dk, *dv;       /* (T, NKV*D) */
    float *dgate, *dup, *dh;    /* (T, I) */
    float *delta;               /* (T, NH) */

    /* TP only (NULL at TP = 1) */
    float *lm_max;              /* (chunk) row max of the logits, all-reduced */
    double *lm_stats;           /* (chunk, 3) softmax sums, all-reduced */
    float *dnorm;               /* (2, D) this backward's q/k-norm weight gradients */
};

static void acts_free(Qwen3Acts *a) {
    if (!a) return;
    free(a->memory);
    free(a->imemory);
    free(a->lm_max);
    free(a->lm_stats);
    free(a->dnorm);
    free(a);
}

static float *carve(float **it, size_t n) {
    float *p = *it;
    *it += n;
    return p;
}

/* The addresses of a LayerActs' fields, in declaration order. */
static void layer_fields(LayerActs *a, float **f[LAYER_ACT_FIELDS]) {
    float **list[LAYER_ACT_FIELDS] = {&a->ln1, &a->rstd1, &a->q,   &a->k,    &a->v,     &a->q_rstd,
                                      &a->k_rstd, &a->qr, &a->kr, &a->att, &a->att_lse, &a->res2,
                                      &a->ln2, &a->rstd2, &a->gate, &a->up,  &a->h};
    memcpy(f, list, sizeof list);
}

/* The float arena of T tokens: each layer field's size per slot (ls), its
 * slots (L, or 1 when recomputing all but the attention's output and lse),
 * the rows of the logits chunk, and the total. Sizes are this rank's (sh):
 * heads, MLP and vocab columns of its shard. */
static size_t acts_layout(const Qwen3Config *c, const Qwen3Shard *sh, int T, bool recompute, int chunk_rows,
                          size_t ls_out[LAYER_ACT_FIELDS], int slots_out[LAYER_ACT_FIELDS], size_t *chunk_out) {
    size_t C = c->hidden_size, I = sh->intermediate_size, V = sh->vocab_size, L = c->num_layers;
    size_t NH = sh->num_heads, NKV = sh->num_kv_heads, D = c->head_dim;
    size_t QD = NH * D, KD = NKV * D, t = (size_t)T;
    size_t ls[LAYER_ACT_FIELDS] = {t * C,  t,      t * QD, t * KD, t * KD, t * NH, t * NKV, t * QD, t * KD,
                                   t * QD, t * NH, t * C,  t * C,  t,      t * I,  t * I,   t * I};
    LayerActs probe;
    float **lf[LAYER_ACT_FIELDS];
    layer_fields(&probe, lf);
    /* The attention's output and lse are kept for every layer, recomputing
     * or not: the backward's recomputation skips the attention itself. */
    size_t layer_mem = 0;
    for (int i = 0; i < LAYER_ACT_FIELDS; i++) {
        bool kept = lf[i] == &probe.att || lf[i] == &probe.att_lse;
        ls_out[i] = ls[i];
        slots_out[i] = recompute && !kept ? 1 : (int)L;
        layer_mem += ls[i] * slots_out[i];
    }
    size_t chunk = (size_t)chunk_rows < t ? (size_t)chunk_rows : t;
    *chunk_out = chunk;
    return layer_mem + (L + 1) * t * C + t * C + t * 3 + chunk * V + t * D /* cos+sin */ + 2 * chunk * C +
           5 * chunk + 2 * t * C + 3 * t * QD + 3 * t * KD + 3 * t * I + t * NH;
}

double qwen3_acts_bytes(const Qwen3Config *cfg, int tp, int T, bool recompute) {
    Qwen3Shard sh;
    qwen3_shard_init(&sh, cfg, tp, 0);
    size_t ls[LAYER_ACT_FIELDS], chunk;
    int slots[LAYER_ACT_FIELDS];
    size_t floats = acts_layout(cfg, &sh, T, recompute, qwen3_default_vocab_chunk(sh.vocab_size), ls, slots, &chunk);
    return (double)floats * sizeof(float) + (6.0 * T + 1 + (double)chunk) * sizeof(int32_t);
}

static Qwen3Acts *acts_new(const Qwen3Config *c, const Qwen3Shard *sh, int T, bool recompute, int chunk_rows) {
    Qwen3Acts *a = xcalloc(1, sizeof *a);
    a->T_cap = T;
    a->recompute = recompute;
    size_t C = c->hidden_size, I = sh->intermediate_size, V = sh->vocab_size, L = c->num_layers;
    size_t NH = sh->num_heads, NKV = sh->num_kv_heads, D = c->head_dim;
    size_t QD = NH * D, KD = NKV * D, t = (size_t)T, chunk;
    size_t total = acts_layout(c, sh, T, recompute, chunk_rows, a->layer_sizes, a->field_slots, &chunk);
    a->chunk = (int)chunk;
    float **lf[LAYER_ACT_FIELDS];
    layer_fields(&a->layers_base, lf);
    a->memory = xmalloc(total * sizeof(float));
    float *it = a->memory;
    /* Field-major: all slots of ln1, then all slots of rstd1, ... */
    for (int i = 0; i < LAYER_ACT_FIELDS; i++) *lf[i] = carve(&it, a->layer_sizes[i] * a->field_slots[i]);
    a->res = carve(&it, (L + 1) * t * C);
    a->xf = carve(&it, t * C);
    a->rstdf = carve(&it, t);
    a->lm_lse = carve(&it, t);
    a->lm_ent = carve(&it, t);
    a->logits = carve(&it, chunk * V);
    a->rope_cos = carve(&it, t * D / 2);
    a->rope_sin = carve(&it, t * D / 2);
    a->head_x = carve(&it, chunk * C);
    a->head_dx = carve(&it, chunk * C);
    a->head_lp = carve(&it, chunk);
    a->head_ent = carve(&it, chunk);
    a->head_lse = carve(&it, chunk);
    a->head_dlp = carve(&it, chunk);
    a->head_dent = carve(&it, chunk);
    a->dres = carve(&it, t * C);
    a->dln = carve(&it, t * C);
    a->dqr = carve(&it, t * QD);
    a->dq = carve(&it, t * QD);
    a->datt = carve(&it, t * QD);
    a->dkr = carve(&it, t * KD);
    a->dk = carve(&it, t * KD);
    a->dv = carve(&it, t * KD);
    a->dgate = carve(&it, t * I);
    a->dup = carve(&it, t * I);
    a->dh = carve(&it, t * I);
    a->delta = carve(&it, t * NH);
    if ((size_t)(it - a->memory) != total) die_runtime("qwen3: activation arena size mismatch");

    a->imemory = xmalloc((6 * t + 1 + chunk) * sizeof(int32_t));
    a->tokens = a->imemory;
    a->targets = a->tokens + t;
    a->pos = a->targets + t;
    a->seq_of = a->pos + t;
    a->seq_start = a->seq_of + t; /* n_seqs + 1 <= T + 1 */
    a->head_rows = a->seq_start + t + 1;
    a->head_targets = a->head_rows + t;
    if (sh->size > 1) {
        a->lm_max = xmalloc(chunk * sizeof(float));
        a->lm_stats = xmalloc(chunk * 3 * sizeof(double));
        a->dnorm = xmalloc(2 * D * sizeof(float));
    }
    return a;
}

/* The activations of layer l (slot 0 of the fields with one slot). */
static LayerActs layer_acts(const Qwen3Acts *a, int l) {
    LayerActs r = a->layers_base;
    float **f[LAYER_ACT_FIELDS];
    layer_fields(&r, f);
    for (int i = 0; i < LAYER_ACT_FIELDS; i++) *f[i] += a->layer_sizes[i] * (a->field_slots[i] == 1 ? 0 : l);
    return r;
}

/* ================================================================ forward */

void qwen3_next_token_targets(const int32_t *tokens, const int32_t *seq_start, int n_seqs, int32_t *targets) {
    for (int s = 0; s < n_seqs; s++) {
        for (int t = seq_start[s]; t < seq_start[s + 1]; t++) {
            targets[t] = t + 1 < seq_start[s + 1] ? tokens[t + 1] : -1;
        }
    }
}

int qwen3_batch_positions(const Qwen3Batch *b, int32_t *pos, int32_t *seq_of) {
    int max_len = 0;
    for (int s = 0; s < b->n_seqs; s++) {
        int s0 = b->seq_start[s], s1 = b->seq_start[s + 1];
        if (s1 - s0 > max_len) max_len = s1 - s0;
        for (int t = s0; t < s1; t++) {
            pos[t] = t - s0;
            seq_of[t] = s;
        }
    }
    return max_len;
}

int qwen3_head_rows(const Qwen3Batch *b, int32_t *rows) {
    int n = 0;
    for (int t = 0; t < b->T; t++)
        if (!b->head_mask || b->head_mask[t]) rows[n++] = t;
    return n;
}

int qwen3_check_batch(const Qwen3 *m, const Qwen3Batch *b, char *err, size_t errlen) {
    int V = m->config.vocab_size;
    if (b->T < 1 || b->n_seqs < 1 || b->n_seqs > b->T) {
        return cfg_err(err, errlen, "batch: T = %d, n_seqs = %d (need 1 <= n_seqs <= T)", b->T, b->n_seqs);
    }
    if (b->seq_start[0] != 0 || b->seq_start[b->n_seqs] != b->T) {
        return cfg_err(err, errlen, "batch: seq_start must run from 0 to T = %d", b->T);
    }
    for (int s = 0; s < b->n_seqs; s++) {
        if (b->seq_start[s + 1] <= b->seq_start[s]) return cfg_err(err, errlen, "batch: sequence %d is empty", s);
    }
    for (int t = 0; t < b->T; t++) {
        if (b->tokens[t] < 0 || b->tokens[t] >= V) {
            return cfg_err(err, errlen, "batch: token %d at position %d is outside the vocabulary (%d)", b->tokens[t],
                           t, V);
        }
        if (b->targets[t] < -1 || b->targets[t] >= V) {
            return cfg_err(err, errlen, "batch: target %d at position %d is outside the vocabulary (%d)",
                           b->targets[t], t, V);
        }
    }
    return 0;
}

/* One transformer block: x_out = block(x_in), saving activations into a.
 * x_out NULL: the backward's recomputation of the activations, which stops
 * where the layer's backward stops needing them: a->att and a->att_lse
 * still hold this layer's attention (kept for every layer), and the down
 * projection's output is the next layer's input, already in acts->res. */
static void layer_forward(Qwen3 *m, int l, const LayerActs *a, const float *x_in /* (T, C) */,
                          float *x_out /* (T, C) or NULL */) {
    const Qwen3Config *c = &m->config;
    const Qwen3Params *p = &m->params;
    Qwen3Acts *A = m->acts;
    int T = A->T, C = c->hidden_size, I = m->shard.intermediate_size;
    int NH = m->shard.num_heads, NKV = m->shard.num_kv_heads, D = c->head_dim;
    int QD = NH * D, KD = NKV * D;
    float eps = c->rms_norm_eps;

    /* attention */
    rmsnorm_forward(a->ln1, a->rstd1, x_in, p->ln1_w + (size_t)l * C, T, C, eps);
    float *qkv[3] = {a->q, a->k, a->v};
    const float *w_qkv[3] = {p->wq + (size_t)l * QD * C, p->wk + (size_t)l * KD * C, p->wv + (size_t)l * KD * C};
    int oc_qkv[3] = {QD, KD, KD};
    matmul_forward_multi(3, qkv, a->ln1, w_qkv, oc_qkv, T, C);
    qk_norm_rope_forward(a->qr, a->q_rstd, a->q, p->q_norm_w + (size_t)l * D, NH, a->kr, a->k_rstd, a->k,
                         p->k_norm_w + (size_t)l * D, NKV, A->pos, A->rope_cos, A->rope_sin, T, D, eps);
    if (x_out) attention_forward(a->att, a->att_lse, a->qr, a->kr, a->v, A->seq_of, A->seq_start, T, NH, NKV, D);
    matmul_forward(a->res2, a->att, p->wo + (size_t)l * C * QD, T, QD, C);
    /* TP: res2 holds this rank's partial o_proj output (its heads' share) */
    if (m->tp) comm_allreduce_sum_f32(m->tp, a->res2, (size_t)T * C);

    /* MLP (its norm in one pass with the residual add) */
    residual_rmsnorm_forward(a->res2, x_in, a->ln2, a->rstd2, p->ln2_w + (size_t)l * C, T, C, eps);
    float *gate_up[2] = {a->gate, a->up};
    const float *w_gate_up[2] = {p->wgate + (size_t)l * I * C, p->wup + (size_t)l * I * C};
    int oc_gate_up[2] = {I, I};
    matmul_forward_multi(2, gate_up, a->ln2, w_gate_up, oc_gate_up, T, C);
    swiglu_forward(a->h, a->gate, a->up, (long)T * I);
    if (!x_out) return;
    matmul_forward(x_out, a->h, p->wdown + (size_t)l * C * I, T, I, C);
    /* TP: x_out holds this rank's partial down_proj output */
    if (m->tp) comm_allreduce_sum_f32(m->tp, x_out, (size_t)T * C);
    residual_add(x_out, a->res2, (long)T * C);
}

/* The final-norm rows of one output-head chunk: xf itself when the rows
 * are consecutive (no head mask), else gathered into head_x. */
static const float *head_gather(Qwen3Acts *A, const int32_t *rows, int R, int C) {
    if (rows[R - 1] - rows[0] == R - 1) return A->xf + (size_t)rows[0] * C;
    for (int r = 0; r < R; r++)
        memcpy(A->head_x + (size_t)r * C, A->xf + (size_t)rows[r] * C, (size_t)C * sizeof(float));
    return A->head_x;
}

static void grads_ensure(Qwen3 *m);
static void head_chunk_backward(Qwen3 *m, const float *x, const int32_t *rows, int R, bool with_dentropy, float *dxf);

static void forward_head(Qwen3 *m, const Qwen3Batch *b, float *logprob, float *entropy, Qwen3HeadGradFn grad_fn,
                         void *grad_ctx, bool with_dentropy) {
    char err[256];
    if (qwen3_check_batch(m, b, err, sizeof err) != 0) die_runtime("qwen3_forward: %s", err);
    const Qwen3Config *c = &m->config;
    const Qwen3Params *p = &m->params;
    int T = b->T, C = c->hidden_size, V = m->shard.vocab_size, L = c->num_layers, D = c->head_dim;
    int v0 = m->shard.vocab_start;

    if (m->vocab_chunk < 1) die_runtime("qwen3_forward: vocab_chunk must be positive");
    int chunk = m->vocab_chunk < T ? m->vocab_chunk : T;
    if (!m->acts || m->acts->T_cap < T || m->acts->recompute != m->recompute || m->acts->chunk < chunk) {
        acts_free(m->acts);
        m->acts = acts_new(c, &m->shard, T, m->recompute, chunk);
    }
    Qwen3Acts *A = m->acts;
    A->T = T;
    A->n_seqs = b->n_seqs;
    memcpy(A->tokens, b->tokens, (size_t)T * sizeof(int32_t));
    memcpy(A->targets, b->targets, (size_t)T * sizeof(int32_t));
    memcpy(A->seq_start, b->seq_start, (size_t)(b->n_seqs + 1) * sizeof(int32_t));
    int max_len = qwen3_batch_positions(b, A->pos, A->seq_of);
    rope_tables(A->rope_cos, A->rope_sin, max_len, D, c->rope_theta);

    /* vocab-parallel: each token's row comes from one rank, zeros elsewhere
     * (at TP = 1 the shard is the whole table) */
    embedding_forward_shard(A->res, A->tokens, p->embed, T, C, v0, V);
    if (m->tp) comm_allreduce_sum_f32(m->tp, A->res, (size_t)T * C);
    for (int l = 0; l < L; l++) {
        LayerActs a = layer_acts(A, l);
        layer_forward(m, l, &a, A->res + (size_t)l * T * C, A->res + (size_t)(l + 1) * T * C);
    }
    rmsnorm_forward(A->xf, A->rstdf, A->res + (size_t)L * T * C, p->norm_w, T, C, c->rms_norm_eps);

    /* Output head over the rows that need it, in chunks: logits never exist
     * for the whole batch. */
    A->n_head = qwen3_head_rows(b, A->head_rows);
    if (grad_fn) {
        grads_ensure(m);
        if (A->n_head < T) memset(A->dln, 0, (size_t)T * C * sizeof(float)); /* rows without the head */
    }
    memset(logprob, 0, (size_t)T * sizeof(float));
    memset(A->lm_ent, 0, (size_t)T * sizeof(float));
    memset(A->lm_lse, 0, (size_t)T * sizeof(float));
    for (int i0 = 0; i0 < A->n_head; i0 += chunk) {
        int R = A->n_head - i0 < chunk ? A->n_head - i0 : chunk;
        const int32_t *rows = A->head_rows + i0;
        const float *x = head_gather(A, rows, R, C);
        for (int r = 0; r < R; r++) A->head_targets[r] = A->targets[rows[r]];
        matmul_forward(A->logits, x, p->lm_head, R, C, V);
        if (m->tp) { /* vocab-parallel softmax: reduce the row statistics, not the logits */
            vocab_row_max(A->lm_max, A->logits, R, V);
            comm_allreduce_max_f32(m->tp, A->lm_max, (size_t)R);
            logprob_entropy_partial(A->lm_stats, A->logits, A->head_targets, A->lm_max, R, V, v0);
            comm_allreduce_sum_f64(m->tp, A->lm_stats, (size_t)R * 3);
            logprob_entropy_finish(A->head_lp, A->head_ent, A->head_lse, A->lm_stats, A->lm_max, A->head_targets,
                                   R);
        } else {
            logprob_entropy_forward(A->head_lp, A->head_ent, A->head_lse, A->logits, A->head_targets, R, V);
        }
        for (int r = 0; r < R; r++) {
            logprob[rows[r]] = A->head_lp[r];
            A->lm_ent[rows[r]] = A->head_ent[r];
            A->lm_lse[rows[r]] = A->head_lse[r];
        }
        if (grad_fn) {
            grad_fn(grad_ctx, R, rows, A->head_lp, A->head_ent, A->head_dlp, with_dentropy ? A->head_dent : NULL);
            head_chunk_backward(m, x, rows, R, with_dentropy, A->dln);
        }
    }
    memcpy(entropy, A->lm_ent, (size_t)T * sizeof(float));
    A->logits_kept = !grad_fn && A->n_head > 0; /* the last chunk's */
    A->logits_chunk = chunk;
    A->head_grad_done = grad_fn != NULL;
    A->have_forward = true;
}

void qwen3_forward(Qwen3 *m, const Qwen3Batch *b, float *logprob, float *entropy) {
    forward_head(m, b, logprob, entropy, NULL, NULL, false);
}

void qwen3_forward_head_grad(Qwen3 *m, const Qwen3Batch *b, float *logprob, float *entropy, Qwen3HeadGradFn grad_fn,
                             void *grad_ctx, bool with_dentropy) {
    if (!grad_fn) die_runtime("qwen3_forward_head_grad: no gradient function");
    forward_head(m, b, logprob, entropy, grad_fn, grad_ctx, with_dentropy);
}

void qwen3_logits(Qwen3 *m, int t0, int n, float *out) {
    Qwen3Acts *A = m->acts;
    if (!A || !A->have_forward || t0 < 0 || n < 0 || t0 + n > A->T) die_runtime("qwen3_logits: rows out of range");
    int C = m->config.hidden_size, V = m->shard.vocab_size, tp = m->shard.size;
    if (!m->tp) {
        matmul_forward(out, A->xf + (size_t)t0 * C, m->params.lm_head, n, C, V);
        return;
    }
    /* TP: this rank's columns, gathered rank-major, then interleaved per row */
    size_t nl = (size_t)n * V;
    float *local = xmalloc((nl ? nl : 1) * sizeof(float));
    float *all = xmalloc((nl ? nl : 1) * tp * sizeof(float));
    matmul_forward(local, A->xf + (size_t)t0 * C, m->params.lm_head, n, C, V);
    comm_allgather_f32(m->tp, local, all, nl);
    for (int r = 0; r < tp; r++) {
        for (int i = 0; i < n; i++) {
            memcpy(out + ((size_t)i * tp + r) * V, all + (size_t)r * nl + (size_t)i * V, (size_t)V * sizeof(float));
        }
    }
    free(local);
    free(all);
}

/* ================================================================ backward */

/* Elements per block of the passes over all parameters (zero_grad, the
 * gradient norm, AdamW): fixed, so sums never depend on the threads. */
#define PARAM_BLOCK 65536

/* Sets n floats to zero by writing them, block by block on all the
 * threads: one thread alone gets about half the store bandwidth. Fresh
 * memory is cleared this way rather than by calloc because calloc's pages
 * are first mapped to the shared zero page when read: the first write to
 * each page then copies it and flushes the other CPUs' TLBs (nearly a
 * second for the AdamW moments of a 100M model). */
static void param_array_clear(float *a, size_t n) {
    long nb = (long)((n + PARAM_BLOCK - 1) / PARAM_BLOCK);
#pragma omp parallel for schedule(static)
    for (long b = 0; b < nb; b++) {
        size_t i0 = (size_t)b * PARAM_BLOCK, len = n - i0 < PARAM_BLOCK ? n - i0 : PARAM_BLOCK;
        memset(a + i0, 0, len * sizeof(float));
    }
}

/* A zeroed array of n floats (see param_array_clear). */
static float *param_array_zeroed(size_t n) {
    float *a = xmalloc(n * sizeof(float));
    param_array_clear(a, n);
    return a;
}

/* The gradients' memory, allocated zeroed on first use. */
static void grads_ensure(Qwen3 *m) {
    if (m->grads_memory) return;
    m->grads_memory = param_array_zeroed(m->num_parameters);
    point_parameters(&m->grads, m->grads_memory, m->param_sizes, m->config.tie_word_embeddings);
}

void qwen3_zero_grad(Qwen3 *m) {
    /* Allocated here too: a data-parallel rank without sequences in an
     * update still all-reduces (zero) gradients and steps. */
    if (m->grads_memory) {
        param_array_clear(m->grads_memory, m->num_parameters);
    } else {
        grads_ensure(m);
    }
}

/* One head chunk's backward: A->logits holds the chunk's logits (R, V),
 * head_lse/head_ent/head_dlp/head_dent its rows' values; the logits become
 * dlogits, dW_head += dlogits^T x, and each row's dx lands in dxf. */
static void head_chunk_backward(Qwen3 *m, const float *x, const int32_t *rows, int R, bool with_dentropy, float *dxf) {
    Qwen3Acts *A = m->acts;
    int C = m->config.hidden_size, V = m->shard.vocab_size;
    for (int r = 0; r < R; r++) A->head_targets[r] = A->targets[rows[r]];
    logprob_entropy_backward_shard(A->logits, A->head_dlp, with_dentropy ? A->head_dent : NULL, A->head_lse,
                                   A->head_ent, A->head_targets, R, V, m->shard.vocab_start);
    matmul_backward(A->head_dx, m->grads.lm_head, A->logits, x, m->params.lm_head, R, C, V, false);
    for (int r = 0; r < R; r++)
        memcpy(dxf + (size_t)rows[r] * C, A->head_dx + (size_t)r * C, (size_t)C * sizeof(float));
}

void qwen3_backward(Qwen3 *m, const float *dlogprob, const float *dentropy) {
    Qwen3Acts *A = m->acts;
    if (!A || !A->have_forward) die_runtime("qwen3_backward: no forward pass to differentiate");
    grads_ensure(m);
    const Qwen3Config *c = &m->config;
    const Qwen3Params *p = &m->params;
    const Qwen3Params *g = &m->grads;
    const Qwen3Shard *sh = &m->shard;
    int T = A->T, C = c->hidden_size, I = sh->intermediate_size, V = sh->vocab_size, L = c->num_layers;
    int NH = sh->num_heads, NKV = sh->num_kv_heads, D = c->head_dim, v0 = sh->vocab_start;
    int QD = NH * D, KD = NKV * D;

    /* Output head, chunk by chunk from the last: recompute logits (except
     * for the last chunk, whose logits the forward left in the buffer), turn
     * them into dlogits, then dxf = dlogits @ W and dW += dlogits^T @ xf.
     * After qwen3_forward_head_grad this is done already. */
    float *dxf = A->dln;
    int chunk = m->vocab_chunk < T ? m->vocab_chunk : T;
    if (chunk > A->chunk) die_runtime("qwen3_backward: vocab_chunk grew after the forward pass");
    if (A->head_grad_done) {
        if (dlogprob || dentropy) die_runtime("qwen3_backward: the head's gradient came from qwen3_forward_head_grad");
    } else {
        if (!dlogprob) die_runtime("qwen3_backward: dlogprob is required");
        if (A->n_head < T) memset(dxf, 0, (size_t)T * C * sizeof(float)); /* rows without the head */
        int n_chunks = (A->n_head + chunk - 1) / chunk;
        for (int ci = n_chunks - 1; ci >= 0; ci--) {
            int i0 = ci * chunk;
            int R = A->n_head - i0 < chunk ? A->n_head - i0 : chunk;
            const int32_t *rows = A->head_rows + i0;
            const float *x = head_gather(A, rows, R, C);
            for (int r = 0; r < R; r++) {
                int t = rows[r];
                A->head_lse[r] = A->lm_lse[t];
                A->head_ent[r] = A->lm_ent[t];
                A->head_dlp[r] = dlogprob[t];
                A->head_dent[r] = dentropy ? dentropy[t] : 0.0f;
            }
            bool kept = A->logits_kept && ci == n_chunks - 1 && chunk == A->logits_chunk;
            if (!kept) matmul_forward(A->logits, x, p->lm_head, R, C, V);
            A->logits_kept = false;
            head_chunk_backward(m, x, rows, R, dentropy != NULL, dxf);
        }
    }
    A->head_grad_done = false;
    /* TP: each rank's dxf covers its vocab columns only */
    if (m->tp) comm_allreduce_sum_f32(m->tp, dxf, (size_t)T * C);
    rmsnorm_backward(A->dres, g->norm_w, dxf, A->res + (size_t)L * T * C, p->norm_w, A->rstdf, T, C, false);

    for (int l = L - 1; l >= 0; l--) {
        LayerActs a = layer_acts(A, l);
        const float *x_in = A->res + (size_t)l * T * C;
        if (A->recompute) layer_forward(m, l, &a, x_in, NULL);

        /* MLP: dres is the gradient of this layer's output */
        matmul_backward(A->dh, g->wdown + (size_t)l * C * I, A->dres, a.h, p->wdown + (size_t)l * C * I, T, I, C,
                        false);
        swiglu_backward(A->dgate, A->dup, A->dh, a.gate, a.up, (long)T * I);
        float *dw_gate_up[2] = {g->wgate + (size_t)l * I * C, g->wup + (size_t)l * I * C};
        const float *d_gate_up[2] = {A->dgate, A->dup};
        const float *w_gate_up[2] = {p->wgate + (size_t)l * I * C, p->wup + (size_t)l * I * C};
        int oc_gate_up[2] = {I, I};
        matmul_backward_multi(2, A->dln, dw_gate_up, d_gate_up, a.ln2, w_gate_up, oc_gate_up, T, C, false);
        /* TP: dln is this rank's share (column-parallel gate/up) */
        if (m->tp) comm_allreduce_sum_f32(m->tp, A->dln, (size_t)T * C);
        rmsnorm_backward(A->dres, g->ln2_w + (size_t)l * C, A->dln, a.res2, p->ln2_w + (size_t)l * C, a.rstd2, T, C,
                         true);

        /* attention: dres is now the gradient of res2 */
        matmul_backward(A->datt, g->wo + (size_t)l * C * QD, A->dres, a.att, p->wo + (size_t)l * C * QD, T, QD, C,
                        false);
        attention_backward(A->dqr, A->dkr, A->dv, A->delta, A->datt, a.att, a.att_lse, a.qr, a.kr, a.v, A->seq_of,
                           A->seq_start, T, NH, NKV, D);
        /* TP: each rank sees its heads only, so its q/k-norm weight gradient
         * is partial; reduce this backward's part alone (the grads may
         * already hold earlier micro-batches) and add it in. */
        float *dqn = g->q_norm_w + (size_t)l * D, *dkn = g->k_norm_w + (size_t)l * D;
        if (m->tp) {
            memset(A->dnorm, 0, 2 * (size_t)D * sizeof(float));
            dqn = A->dnorm;
            dkn = A->dnorm + D;
        }
        qk_norm_rope_backward(A->dq, dqn, A->dqr, a.q, p->q_norm_w + (size_t)l * D, a.q_rstd, NH, A->dk, dkn, A->dkr,
                              a.k, p->k_norm_w + (size_t)l * D, a.k_rstd, NKV, A->pos, A->rope_cos, A->rope_sin, T,
                              D);
        if (m->tp) {
            comm_allreduce_sum_f32(m->tp, A->dnorm, 2 * (size_t)D);
            residual_add(g->q_norm_w + (size_t)l * D, A->dnorm, D);
            residual_add(g->k_norm_w + (size_t)l * D, A->dnorm + D, D);
        }
        float *dw_qkv[3] = {g->wq + (size_t)l * QD * C, g->wk + (size_t)l * KD * C, g->wv + (size_t)l * KD * C};
        const float *d_qkv[3] = {A->dq, A->dk, A->dv};
        const float *w_qkv[3] = {p->wq + (size_t)l * QD * C, p->wk + (size_t)l * KD * C, p->wv + (size_t)l * KD * C};
        int oc_qkv[3] = {QD, KD, KD};
        matmul_backward_multi(3, A->dln, dw_qkv, d_qkv, a.ln1, w_qkv, oc_qkv, T, C, false);
        /* TP: dln is this rank's share (column-parallel q/k/v) */
        if (m->tp) comm_allreduce_sum_f32(m->tp, A->dln, (size_t)T * C);
        rmsnorm_backward(A->dres, g->ln1_w + (size_t)l * C, A->dln, x_in, p->ln1_w + (size_t)l * C, a.rstd1, T, C,
                         true);
    }
    /* dres is whole on every rank: each scatters into its own vocab rows */
    embedding_backward_shard(g->embed, A->dres, A->tokens, T, C, v0, sh->vocab_size);
}

/* ================================================================ optimizer */

/* Sum of squares of gm[0, n) in fixed blocks (the order never depends on threads). */
static double sum_squares(const float *gm, size_t n) {
    long nb = (long)((n + PARAM_BLOCK - 1) / PARAM_BLOCK);
    if (nb == 0) return 0.0;
    double *part = xcalloc((size_t)nb, sizeof(double));
#pragma omp parallel for
    for (long b = 0; b < nb; b++) {
        size_t i0 = (size_t)b * PARAM_BLOCK, i1 = i0 + PARAM_BLOCK < n ? i0 + PARAM_BLOCK : n;
        part[b] = sum_squares_array(gm + i0, i1 - i0);
    }
    double total = 0.0;
    for (long b = 0; b < nb; b++) total += part[b];
    free(part);
    return total;
}

/* TP: the squares of this rank's shards, replicated tensors on rank 0 only
 * (they are the same on every rank and must count once), summed over ranks. */
static float grad_norm_tp(const Qwen3 *m) {
    double total = 0.0;
    for (int i = 0; i < m->n_tensors; i++) {
        const Qwen3Tensor *t = &m->tensors[i];
        if (t->split == QWEN3_REPLICATED && m->shard.rank != 0) continue;
        total += sum_squares(m->grads_memory + t->offset, t->numel);
    }
    comm_allreduce_sum_f64(m->tp, &total, 1);
    return (float)sqrt(total);
}

float qwen3_grad_norm(const Qwen3 *m) {
    if (m->tp) {
        /* collective: every rank must take part, with or without gradients */
        if (!m->grads_memory) die_runtime("qwen3_grad_norm: no gradients (run backward first)");
        return grad_norm_tp(m);
    }
    if (!m->grads_memory) return 0.0f;
    return (float)sqrt(sum_squares(m->grads_memory, m->num_parameters));
}

void qwen3_alloc_moments(Qwen3 *m) {
    if (m->m_memory) return;
    m->m_memory = param_array_zeroed(m->num_parameters);
    m->v_memory = param_array_zeroed(m->num_parameters);
}

float qwen3_adamw_step(Qwen3 *m, const Qwen3AdamW *o, float lr) {
    if (!m->grads_memory) die_runtime("qwen3_adamw_step: no gradients (run backward first)");
    qwen3_alloc_moments(m);
    float norm = qwen3_grad_norm(m);
    float gscale = 1.0f;
    if (o->max_grad_norm > 0) {
        double coef = (double)o->max_grad_norm / ((double)norm + 1e-6);
        if (coef < 1.0) gscale = (float)coef;
    }
    m->adam_step++;
    double bc1 = 1.0 - pow((double)o->beta1, m->adam_step);
    double bc2 = 1.0 - pow((double)o->beta2, m->adam_step);
    /* PyTorch's AdamW in its order of operations, with its scalars computed
     * in double and rounded once: p *= 1 - lr wd; then
     * p -= lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps). One pass that reads
     * p, g, m, v and writes p, m, v (adamw_update_array, the CPU twin of
     * kernels/adamw.cu); the gradients are left as they are (zero_grad
     * clears them). */
    float b1 = o->beta1, b2 = o->beta2, eps = o->eps;
    float step_size = (float)((double)lr / bc1), bc2_sqrt = (float)sqrt(bc2);
    /* one parallel region for every tensor (no meeting of the threads per
     * tensor: the small norm weights would leave one thread waiting) */
#pragma omp parallel
    for (int ti = 0; ti < m->n_tensors; ti++) {
        const Qwen3Tensor *t = &m->tensors[ti];
        float wd = (t->ndim == 1 && !o->decay_1d) ? 0.0f : o->weight_decay;
        float decay = (float)(1.0 - (double)lr * wd);
        float *p = m->params_memory + t->offset;
        const float *gr = m->grads_memory + t->offset;
        float *mm = m->m_memory + t->offset;
        float *vv = m->v_memory + t->offset;
        size_t n = t->numel;
        long nb = (long)((n + PARAM_BLOCK - 1) / PARAM_BLOCK);
#pragma omp for schedule(dynamic, 1) nowait
        for (long b = 0; b < nb; b++) {
            size_t i0 = (size_t)b * PARAM_BLOCK, len = n - i0 < PARAM_BLOCK ? n - i0 : PARAM_BLOCK;
            adamw_update_array(p + i0, gr + i0, mm + i0, vv + i0, len, gscale, b1, b2, eps, decay, step_size,
                               bc2_sqrt);
        }
    }
    if (m->tp) { /* keep replicated weights bit-identical: rank 0's copy wins */
        const Qwen3Params *p = &m->params;
        float *rep[] = {p->ln1_w, p->q_norm_w, p->k_norm_w, p->ln2_w, p->norm_w};
        const size_t *sz = m->param_sizes;
        size_t n[] = {sz[1], sz[5], sz[6], sz[8], sz[12]};
        for (int i = 0; i < 5; i++) comm_broadcast(m->tp, rep[i], n[i] * sizeof(float), 0);
    }
    return norm;
}

/* ================================================================ losses */

float qwen3_sft_loss(const float *logprob, const float *mask, int T, float *dlogprob) {
    int n = 0;
    for (int t = 0; t < T; t++) n += mask[t] != 0.0f;
    double sum = 0.0;
    for (int t = 0; t < T; t++) {
        if (mask[t] != 0.0f) sum -= logprob[t];
        if (dlogprob) dlogprob[t] = (n && mask[t] != 0.0f) ? -1.0f / (float)n : 0.0f;
    }
    return n ? (float)(sum / n) : 0.0f;
}

Qwen3SftRows qwen3_sft_rows_for(const float *mask, int T) {
    int n = 0;
    for (int t = 0; t < T; t++) n += mask[t] != 0.0f;
    Qwen3SftRows r = {mask, n ? -1.0f / (float)n : 0.0f};
    return r;
}

void qwen3_sft_rows(void *ctx, int n, const int32_t *rows, const float *logprob, const float *entropy,
                    float *dlogprob, float *dentropy) {
    const Qwen3SftRows *r = ctx;
    (void)logprob, (void)entropy;
    for (int i = 0; i < n; i++) {
        dlogprob[i] = r->mask[rows[i]] != 0.0f ? r->g : 0.0f;
        if (dentropy) dentropy[i] = 0.0f;
    }
}
