/* test_train.c — the updates' packing (rl/train.h): a sequence runs up to
 * its last trained token, and the tokens after it change nothing. A GRPO
 * and an SFT update on sequences with an untrained tail give bit for bit the
 * loss, metrics and weights of the same update on the sequences cut there,
 * and the micro-batches are packed by the cut lengths. The model is a
 * fixture of tests/fixtures/qwen3 (random weights). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "model/qwen3.h"
#include "model/train_device.h"
#include "rl/train.h"

#define MODEL_DIR TAU2_SOURCE_DIR "/tests/fixtures/qwen3/untied_gqa"

enum { N_SEQ = 3, LEN = 24, CUT = 15 };

typedef struct {
    int32_t ids[N_SEQ][LEN];
    uint8_t mask[N_SEQ][LEN];
    float old_logprob[N_SEQ][LEN];
} Seqs;

/* Sequence s: tokens of the 97-token vocabulary, trained on positions
 * 6 .. CUT-1 - s (the agent's turns), then an untrained tail. */
static void seqs_fill(Seqs *q) {
    for (int s = 0; s < N_SEQ; s++)
        for (int t = 0; t < LEN; t++) {
            q->ids[s][t] = (int32_t)((7 * t + 13 * s + 3) % 97);
            q->mask[s][t] = t >= 6 && t < CUT - s;
            q->old_logprob[s][t] = -2.0f - 0.01f * (float)t;
        }
}

static void seqs_view(Seqs *q, int64_t n, TrainSeq *out) {
    for (int s = 0; s < N_SEQ; s++)
        out[s] = (TrainSeq){.ids = q->ids[s], .mask = q->mask[s], .old_logprob = q->old_logprob[s], .n = n,
                            .advantage = s == 1 ? -0.5 : 1.0};
}

static void test_seq_tokens(void **state) {
    (void)state;
    Seqs q;
    seqs_fill(&q);
    TrainSeq s[N_SEQ];
    seqs_view(&q, LEN, s);
    for (int i = 0; i < N_SEQ; i++) assert_int_equal(train_seq_tokens(&s[i]), CUT - i);
    memset(q.mask[0], 0, LEN);
    assert_int_equal(train_seq_tokens(&s[0]), 1); /* nothing trained: one token, no target */
    q.mask[0][LEN - 1] = 1;
    assert_int_equal(train_seq_tokens(&s[0]), LEN);
}

static Qwen3 *model_load(void) {
    char err[1024];
    Qwen3 *m = qwen3_load_dir(MODEL_DIR, err, sizeof err);
    if (!m) fail_msg("%s: %s", MODEL_DIR, err);
    return m;
}

static TrainOptions options(int max_tokens) {
    TrainOptions o;
    memset(&o, 0, sizeof o);
    grpo_loss_config_default(&o.loss);
    o.adam = (Qwen3AdamW){.beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .max_grad_norm = 1.0f};
    o.max_tokens_per_gpu = max_tokens;
    return o;
}

/* One update of each kind on the full sequences and on the cut ones. */
static void update_pair(bool grpo, TrainReport *full, TrainReport *cut, Qwen3 **m_full, Qwen3 **m_cut) {
    Seqs q;
    seqs_fill(&q);
    TrainSeq s_full[N_SEQ], s_cut[N_SEQ];
    seqs_view(&q, LEN, s_full);
    seqs_view(&q, LEN, s_cut);
    for (int i = 0; i < N_SEQ; i++) s_cut[i].n = CUT - i;
    /* two cut sequences fit a micro-batch; two full ones would not */
    TrainOptions o = options(2 * CUT);
    *m_full = model_load();
    *m_cut = model_load();
    TrainDevice *d_full = train_device_new(*m_full, TRAIN_DEVICE_CPU, 0);
    TrainDevice *d_cut = train_device_new(*m_cut, TRAIN_DEVICE_CPU, 0);
    if (grpo) {
        train_grpo_update(d_full, NULL, NULL, s_full, N_SEQ, &o, 1e-2f, full);
        train_grpo_update(d_cut, NULL, NULL, s_cut, N_SEQ, &o, 1e-2f, cut);
    } else {
        train_sft_update(d_full, NULL, s_full, N_SEQ, &o, 1e-2f, full);
        train_sft_update(d_cut, NULL, s_cut, N_SEQ, &o, 1e-2f, cut);
    }
    train_device_free(d_full);
    train_device_free(d_cut);
}

static void check_same(bool grpo) {
    TrainReport full, cut;
    Qwen3 *m_full, *m_cut;
    update_pair(grpo, &full, &cut, &m_full, &m_cut);
    int64_t run = 0;
    for (int i = 0; i < N_SEQ; i++) run += CUT - i;
    assert_int_equal(full.tokens, run);
    assert_int_equal(cut.tokens, run);
    assert_int_equal(full.trained_tokens, cut.trained_tokens);
    assert_true(full.trained_tokens > 0);
    assert_int_equal(full.micro_batches, 2);
    assert_int_equal(cut.micro_batches, 2);
    assert_memory_equal(&full.loss, &cut.loss, sizeof full.loss);
    assert_memory_equal(&full.entropy, &cut.entropy, sizeof full.entropy);
    assert_memory_equal(&full.grad_norm, &cut.grad_norm, sizeof full.grad_norm);
    assert_true(full.grad_norm > 0);
    if (grpo) assert_memory_equal(&full.grpo, &cut.grpo, sizeof full.grpo);
    assert_int_equal(m_full->num_parameters, m_cut->num_parameters);
    assert_memory_equal(m_full->params_memory, m_cut->params_memory, m_full->num_parameters * sizeof(float));
    qwen3_free(m_full);
    qwen3_free(m_cut);
}

static void test_grpo_tail_changes_nothing(void **state) {
    (void)state;
    check_same(true);
}

static void test_sft_tail_changes_nothing(void **state) {
    (void)state;
    check_same(false);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seq_tokens),
        cmocka_unit_test(test_grpo_tail_changes_nothing),
        cmocka_unit_test(test_sft_tail_changes_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
