/* sample.h — pick the next token from a row of logits.
 *
 * The order follows SGLang's sampler (slime's rollout engine): logits are
 * divided by the temperature and turned into probabilities p; tokens are
 * ranked by p (ties: lower id first); a token is kept when its rank is below
 * top_k and the probability mass of the tokens ranked above it is <= top_p;
 * the kept tokens are renormalized and one is drawn by inverting their
 * cumulative distribution at a uniform u in [0, 1). temperature == 0 is
 * greedy (the argmax, lower id on ties); top_k == 1 and a tiny top_p give the
 * same token.
 *
 * The draw u comes from the caller (rng_uniform(seed, stream, position)), so
 * the sampler is a pure function and the token depends on nothing but the
 * logits and u.
 *
 * The logprob returned with each token is log_softmax(logits)[token]: the
 * model's distribution at temperature 1 without top-p/top-k, the quantity the
 * trainer recomputes for the same token (GRPO's log pi_old). It is not the
 * log-probability under the truncated, temperature-scaled distribution the
 * token was actually drawn from.
 */
#ifndef TAU2_MODEL_SAMPLE_H
#define TAU2_MODEL_SAMPLE_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    float temperature; /* >= 0; 0: greedy */
    float top_p;       /* (0, 1]; 1: off */
    int top_k;         /* >= 0; 0: off */
} SampleParams;

/* Candidate lists for top-k / top-p; one per thread, grown on demand. */
typedef struct {
    float *w;     /* (cap) unnormalized probabilities */
    int32_t *id;  /* (cap) token ids */
    int cap;
} SampleScratch;

void sample_scratch_free(SampleScratch *s);

/* 0, or -1 with err naming the bad field ("temperature", "top_p", "top_k"). */
int sample_check_params(const SampleParams *p, char *err, size_t errlen);

/* The next token for logits (V) and a uniform u in [0, 1); *logprob (if not
 * NULL) gets log_softmax(logits)[token] at temperature 1. */
int32_t sample_token(const float *logits /* (V) */, int V, const SampleParams *p, double u, SampleScratch *s,
                     float *logprob);

/* log_softmax(logits)[token], sums in double (as the trainer's head). */
float sample_logprob(const float *logits /* (V) */, int V, int32_t token);

#endif
