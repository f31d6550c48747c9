/* schedule.c — Megatron-LM learning-rate schedules (see schedule.h). */
#include "rl/schedule.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

int lr_decay_style_parse(const char *name, LrDecayStyle *out) {
    if (strcmp(name, "constant") == 0) *out = LR_CONSTANT;
    else if (strcmp(name, "linear") == 0) *out = LR_LINEAR;
    else if (strcmp(name, "cosine") == 0) *out = LR_COSINE;
    else return -1;
    return 0;
}

int lr_schedule_init(LrSchedule *s, LrDecayStyle style, double max_lr, double min_lr, double init_lr,
                     double warmup_fraction, int64_t warmup_iters, int64_t decay_steps, char *err,
                     size_t errlen) {
    double warmup = warmup_fraction >= 0.0 ? warmup_fraction * (double)decay_steps : (double)warmup_iters;
    if (!(min_lr >= 0.0) || !(max_lr >= min_lr)) {
        snprintf(err, errlen, "lr schedule: need 0 <= min_lr <= lr (min_lr %g, lr %g)", min_lr, max_lr);
        return -1;
    }
    if (!(init_lr <= max_lr)) {
        snprintf(err, errlen, "lr schedule: lr_warmup_init %g exceeds lr %g", init_lr, max_lr);
        return -1;
    }
    if (decay_steps <= 0) {
        snprintf(err, errlen, "lr schedule: decay steps must be > 0 (got %lld)", (long long)decay_steps);
        return -1;
    }
    if (!(warmup >= 0.0) || !(warmup < (double)decay_steps)) {
        snprintf(err, errlen, "lr schedule: warmup steps %g must be >= 0 and < decay steps %lld", warmup,
                 (long long)decay_steps);
        return -1;
    }
    s->style = style;
    s->max_lr = max_lr;
    s->min_lr = min_lr;
    s->init_lr = init_lr;
    s->warmup_steps = warmup;
    s->decay_steps = decay_steps;
    return 0;
}

double lr_schedule_at(const LrSchedule *s, int64_t k) {
    double step = (double)k;
    if (s->warmup_steps > 0.0 && step <= s->warmup_steps)
        return s->init_lr + (s->max_lr - s->init_lr) * step / s->warmup_steps;
    if (s->style == LR_CONSTANT) return s->max_lr;
    if (k > s->decay_steps) return s->min_lr;
    double ratio = (step - s->warmup_steps) / ((double)s->decay_steps - s->warmup_steps);
    double coeff = s->style == LR_LINEAR ? 1.0 - ratio : 0.5 * (cos(M_PI * ratio) + 1.0);
    return s->min_lr + coeff * (s->max_lr - s->min_lr);
}
