/* schedule.h — learning-rate schedules as Megatron-LM's OptimizerParamScheduler
 * computes them (megatron/core/optimizer_param_scheduler.py, get_lr), which
 * slime uses unchanged.
 *
 * Megatron counts its scheduler in samples and advances it by the global
 * batch size after each optimizer step; slime sets warmup = fraction × decay
 * samples (or warmup_iters × global batch) and decay = lr_decay_iters ×
 * global batch. The batch size cancels, so here the unit is the optimizer
 * step: the update number k (0 for the first update, k = steps already
 * taken) uses
 *
 *   k <= W (W > 0):       init + (max − init) · k / W        (linear warmup)
 *   constant style:       max
 *   k > D:                min
 *   otherwise:            r = (k − W) / (D − W)
 *                         linear: min + (max − min) · (1 − r)
 *                         cosine: min + (max − min) · ½ (1 + cos(π r))
 *
 * W is not rounded (fraction × D may be fractional, as in Megatron). Note
 * what Megatron does with warmup: the first update (k = 0) runs at init
 * (lr_warmup_init, 0 by default), and lr reaches max at k = W.
 */
#ifndef TAU2_RL_SCHEDULE_H
#define TAU2_RL_SCHEDULE_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    LR_CONSTANT, /* "constant": warmup (if any), then max */
    LR_LINEAR,   /* "linear" */
    LR_COSINE,   /* "cosine" */
} LrDecayStyle;

typedef struct {
    LrDecayStyle style;
    double max_lr;       /* --lr */
    double min_lr;       /* --min-lr (0) */
    double init_lr;      /* --lr-warmup-init (0) */
    double warmup_steps; /* W, in optimizer steps */
    int64_t decay_steps; /* D: --lr-decay-iters, default the run's total optimizer steps */
} LrSchedule;

/* "constant", "linear", "cosine" -> *out; -1 otherwise. */
int lr_decay_style_parse(const char *name, LrDecayStyle *out);

/* Fill a schedule; warmup is warmup_fraction × decay_steps when
 * warmup_fraction >= 0, else warmup_iters (slime: --lr-warmup-fraction takes
 * precedence over --lr-warmup-iters). Checks what Megatron asserts:
 * 0 <= min <= max, init <= max, decay_steps > 0, warmup < decay_steps.
 * Returns 0, or -1 with err naming the value. */
int lr_schedule_init(LrSchedule *s, LrDecayStyle style, double max_lr, double min_lr, double init_lr,
                     double warmup_fraction, int64_t warmup_iters, int64_t decay_steps, char *err,
                     size_t errlen);

/* The learning rate of update number k (k = optimizer steps already done). */
double lr_schedule_at(const LrSchedule *s, int64_t k);

#endif
