/* rollout.h — τ²-bench episodes with the policy model as the agent, many in
 * flight on one inference engine.
 *
 * For each prompt (a task) the rollout runs n_samples episodes: one GRPO
 * group. Every episode owns its environment and its token-in/token-out
 * trajectory (text/trajectory.h). Whenever an episode waits for the agent, a
 * generation request for it joins the engine's continuous batch; when the
 * request finishes, its sampled ids are decoded, parsed into a τ²-bench
 * message (text/toolcall.h) and submitted to the episode, which runs the tool
 * calls; then the user answers and the episode's new turns are appended to
 * its trajectory as a template delta (mask 0), and the episode queues for
 * the agent again. Other episodes decode meanwhile.
 *
 * The user (RolloutUser) is one of
 *   gold    the task's scripted user (tau2/oracle.h), answered at once;
 *   policy  the policy model itself, prompted as τ²-bench's user simulator
 *           (llm/user_sim.h); its turns are generation requests on the same
 *           engine, batched with the agents' and not trained on;
 *   api     an OpenAI-compatible endpoint through llm/llm_client.h (or, as
 *           "local", the job's user-simulator ranks over MPI); requests
 *           are in flight while the engine decodes other episodes. A request
 *           that still fails after the client's retries, or a reply that
 *           cannot be read, ends the episode as infrastructure_error: the
 *           job drops such episodes from training and rewards and counts
 *           them.
 *
 * The episodes of a group share their prompt when their first user turns
 * agree (always with the gold user): the first episode to reach the agent
 * prefills the prompt once, the others fork its cache (copy-on-write).
 *
 * Each episode has a token budget: max_response_len tokens after its prompt
 * (sampled and environment tokens alike, as slime counts a multi-turn
 * response). An episode that runs out ends with the status "truncated"
 * (reward 0); an agent turn is also cut at max_turn_len tokens.
 *
 * Determinism: the sampler's draw for token k of sample s of prompt p is
 * rng_uniform(seed, p.stream_base + s, k), and the engine's logits do not
 * depend on which other sequences share a step (model/infer.h). So an
 * episode's tokens depend only on the weights, the task and its stream, not
 * on how prompts are spread over rollout ranks.
 */
#ifndef TAU2_RL_ROLLOUT_H
#define TAU2_RL_ROLLOUT_H

#include <stdbool.h>
#include <stdint.h>

#include <cJSON.h>

#include "io/rollout_buffer.h"
#include "llm/llm_client.h"
#include "model/infer.h"
#include "model/qwen3.h"
#include "tau2/episode.h"
#include "tau2/evaluate.h"
#include "text/chat.h"
#include "text/tokenizer.h"

/* One model of the api user: the client endpoint that serves it and its
 * name (recorded with each episode; borrowed). */
typedef struct {
    int endpoint;
    const char *model;
} RolloutUserModel;

/* One prompt: a task of a loaded domain. */
typedef struct {
    const Domain *domain;
    const cJSON *task;
    const char *task_split;
    int64_t index;       /* position in the run's prompt stream (seeds, consumed set) */
    int32_t group_id;    /* written to the buffer for each of its episodes */
    /* api user: the prompt's own models (rl/user_routes.h): sample s of the
     * group talks to user_models[s % n_user_models], and the group's NL
     * assertions are judged by user_models[0]; NULL (0): the RolloutUser's
     * endpoint and model */
    const RolloutUserModel *user_models;
    int n_user_models;
} RolloutPrompt;

typedef struct {
    SampleParams sample;
    uint64_t seed;
    int n_samples;        /* episodes per prompt */
    int max_response_len; /* tokens after the prompt */
    int max_turn_len;     /* new tokens per agent turn */
    EpisodeOptions episode;
    PartialCreditWeights weights;         /* reward shaping, every domain but telecom */
    PartialCreditWeights telecom_weights; /* telecom's */
    int kv_cache_tokens;  /* engine budget; 0: enough for every episode of the call at full length */
    int step_tokens;      /* pending tokens one engine step feeds at most (infer_gen_set_step_tokens;
                             0: INFER_DEFAULT_STEP_TOKENS, -1: no limit) */
    int max_inflight;     /* episodes decoding at once at most (0: no limit) */
    bool keep_messages;   /* store each episode's τ²-bench messages (JSON) in the buffer (evaluation) */
} RolloutOptions;

typedef enum { ROLLOUT_USER_GOLD, ROLLOUT_USER_POLICY, ROLLOUT_USER_API } RolloutUserKind;

/* Who plays the customer (borrowed pointers). */
typedef struct {
    RolloutUserKind kind;
    const char *data_dir;     /* policy, api: the τ²-bench data directory (user-simulator guidelines) */
    LlmClient *client;        /* api */
    int endpoint;             /* api: the client's endpoint for prompts that name none */
    const char *model;        /* api: that endpoint's model (recorded as each episode's "user_model"), or NULL */
    SampleParams sample;      /* policy: the user's sampling (τ²-bench: temperature 0) */
    double temperature;       /* api: sent with each request */
    int max_tokens;           /* tokens of one user turn (policy; api when > 0) */
    bool judge;               /* api: NL assertions judged through the same endpoint (llm/judge.h) */
} RolloutUser;

/* "gold", "policy", "api" -> *out ("local" is api: an MPI endpoint of
 * the same client); -1 for another name. */
int rollout_user_kind_parse(const char *name, RolloutUserKind *out);

/* The policy as the rollout sees it (borrowed). At one rank model is a full
 * (TP = 1) copy of the weights. With an engine group of several ranks
 * (group), model is this rank's shard, rollout_run runs on group rank 0
 * and the other ranks replay its engine in infer_follow (model/infer.h)
 * until rank 0 calls infer_follow_end. */
typedef struct {
    const Qwen3 *model;
    Tokenizer *tok;
    const ChatTemplate *ct;
    struct Comm *group; /* the engine's TP group, or NULL: this rank alone */
    bool on_gpu;        /* rollouts on the GPU engine (model/infer_gpu.h; CUDA build, no group) */
    int gpu_device;     /* its CUDA device */
    /* on_gpu: where the caller keeps the GPU engine from one call to the
     * next (NULL: each call makes and frees its own). A kept engine that
     * fits the call is reset and used with the weights it holds, so the
     * caller refreshes them before each call; one that does not fit is
     * replaced by a new one loaded from model. The caller frees the last. */
    struct InferGpu **gpu_keep;
} RolloutPolicy;

typedef struct {
    int episodes;
    int64_t tokens;        /* all tokens of all trajectories */
    int64_t sampled;       /* agent (mask 1) tokens */
    int64_t prompt_tokens; /* prompt tokens prefilled (once per group) */
    int agent_turns;
    int truncated;         /* episodes that ran out of budget */
    int parse_errors;      /* tool calls the parser rejected */
    int user_turns;        /* answers of the policy or api user */
    int infra_errors;      /* episodes ended as infrastructure_error */
    double reward_sum, shaped_sum;
    long drift_checked, drift_tokens; /* episodes checked and their total drift (0 when token-exact) */
} RolloutStats;

/* The policy's text side: the tokenizer (`tokenizer` is a tokenizer.json
 * or a directory holding one; NULL: the model directory's) and the chat
 * template of model directory `model`, checked against the model's
 * vocab_size. -1 with err starting with the config field at fault
 * ("field 'tokenizer': ..."). */
int rollout_load_text(const char *model, const char *tokenizer, int vocab_size, Tokenizer **tok, ChatTemplate **ct,
                      char *err, size_t errlen);

/* The KV budget in tokens that a call of n_prompts prompts takes when
 * opt->kv_cache_tokens is 0: every episode at full length, each group's
 * prompt once, and with the policy user (policy_user) its turns too. An
 * estimate; the engine checks exactly. */
int rollout_kv_budget(const RolloutOptions *opt, bool policy_user, int n_prompts);
/* The engine options (KV cache and sequences; no group) rollout_run asks
 * for in a call of n_prompts prompts: what a memory plan sizes. */
InferOptions rollout_engine_options(const RolloutOptions *opt, bool policy_user, int n_prompts);

/* Tokens of domain d's trajectory before its first agent turn, at most:
 * the agent's system prompt and tools, the greeting, one user turn of
 * user_turn_tokens and the template's framing of each, rendered with ct
 * and tok. A trained sequence ends within opt->max_response_len tokens
 * after that (its later untrained tokens are not trained on). A task whose
 * initial state holds earlier messages starts longer. -1 with err when
 * the template fails. */
int64_t rollout_opening_tokens(const ChatTemplate *ct, Tokenizer *tok, const Domain *d, int user_turn_tokens,
                               char *err, size_t errlen);

/* Run n_samples episodes for each of the prompts and append them to rb,
 * prompt after prompt, samples in order. Each episode's task_ref JSON is
 * {"domain", "task_split", "task_id", "index", "sample"} and, with an api
 * user, "user_model" (the model that played the customer); reward_info is the
 * evaluation's RewardInfo with the partial credit. stats (may be NULL) are
 * added to. Returns 0, or -1 with err (engine out of KV budget, a task
 * whose initial state fails, a template that fails to render). */
int rollout_run(const RolloutPolicy *pol, const RolloutUser *user /* NULL: gold */, const RolloutPrompt *prompts,
                int n_prompts, const RolloutOptions *opt, RolloutBuffer *rb, RolloutStats *stats, char *err,
                size_t errlen);

#endif
