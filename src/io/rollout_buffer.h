/* rollout_buffer.h — one step's episodes in one HDF5 file
 * (rollouts/step_NNNNNN.h5), written by the rollout side and read by the
 * trainer.
 *
 * Layout (format_version 1; n = episodes, N = tokens of all episodes):
 *
 *   /tokens          int32   [N]      token ids, episode after episode
 *   /loss_mask       uint8   [N]      1 on sampled agent tokens
 *   /logprobs        float32 [N]      rollout logprob of each token (0 where mask 0)
 *   /offsets         int64   [n + 1]  episode i is [offsets[i], offsets[i+1])
 *   /reward_raw      float64 [n]      binary task reward
 *   /reward_partial  float64 [n]      partial credit in [0, 1]
 *   /reward_shaped   float64 [n]      raw + α·partial
 *   /group_id        int32   [n]      episodes of one prompt share a group
 *   /turns           int32   [n]      agent turns
 *   /termination     string  [n]      "user_stop", "agent_stop", "max_steps", ...
 *   /task_ref        string  [n]      JSON: {"domain", "task_split", "task_id", ...}
 *   /reward_info     string  [n]      JSON: reward breakdown
 *   /messages        string  [n]      JSON: the τ²-bench messages (optional: only
 *                                     when the rollout kept them, as evaluation does)
 *   attributes on /: format_version (1), step, policy_version (int64),
 *                    config_hash (string)
 *
 * Strings are variable-length UTF-8: h5py's ds.asstr()[...] gives str
 * objects and h5dump prints them as text. Token arrays are chunked and
 * compressed (shuffle + gzip level 1); see doc/files.md for the measurement.
 *
 * Writing goes to "<path>.tmp.<pid>" in the same directory (registered with
 * tmpfile_register, so a die removes it), then fsync and rename: a reader
 * never sees a partial file. Reading validates everything above and names
 * the file and dataset in every error.
 */
#ifndef TAU2_IO_ROLLOUT_BUFFER_H
#define TAU2_IO_ROLLOUT_BUFFER_H

#include <stddef.h>
#include <stdint.h>

#define ROLLOUT_BUFFER_FORMAT_VERSION 1

/* One episode, as added or as viewed (pointers borrowed). */
typedef struct {
    int64_t n_tokens;
    const int32_t *tokens;    /* (n_tokens) */
    const uint8_t *loss_mask; /* (n_tokens) */
    const float *logprobs;    /* (n_tokens) */
    double reward_raw, reward_partial, reward_shaped;
    int32_t group_id;
    int32_t turns;
    const char *termination;
    const char *task_ref;    /* JSON text */
    const char *reward_info; /* JSON text */
    const char *messages;    /* JSON text of the conversation, or NULL/"" when not kept */
} RolloutEpisode;

/* All episodes of a step; owns every array. */
typedef struct {
    int64_t step;
    int64_t policy_version;
    char *config_hash;

    int n_episodes, cap_episodes;
    int64_t n_tokens, cap_tokens;
    int32_t *tokens;     /* (n_tokens) */
    uint8_t *loss_mask;  /* (n_tokens) */
    float *logprobs;     /* (n_tokens) */
    int64_t *offsets;    /* (n_episodes + 1) */
    double *reward_raw, *reward_partial, *reward_shaped; /* (n_episodes) */
    int32_t *group_id, *turns;                           /* (n_episodes) */
    char **termination, **task_ref, **reward_info;       /* (n_episodes) */
    char **messages;                                     /* (n_episodes) "" when not kept */
} RolloutBuffer;

/* An empty buffer; config_hash is copied. */
RolloutBuffer *rollout_buffer_new(int64_t step, int64_t policy_version, const char *config_hash);
void rollout_buffer_free(RolloutBuffer *rb);

/* Append a copy of one episode. */
void rollout_buffer_add(RolloutBuffer *rb, const RolloutEpisode *ep);
/* A view of episode i (valid until the buffer changes). */
RolloutEpisode rollout_buffer_episode(const RolloutBuffer *rb, int i);

/* Episodes as bytes, for sending between ranks: pack appends episodes
 * [from, to) of rb to a new buffer (free(); *len its size); unpack appends
 * the episodes of such bytes to rb. Both ends are the same program, so the
 * encoding is the machine's own (no byte swapping). */
char *rollout_buffer_pack(const RolloutBuffer *rb, int from, int to, size_t *len);
void rollout_buffer_unpack(RolloutBuffer *rb, const char *bytes, size_t len);
/* Write atomically to path. 0, or -1 with err (no file is left behind). */
int rollout_buffer_write(const RolloutBuffer *rb, const char *path, char *err, size_t errlen);
/* Read and validate. NULL with err naming the file and dataset: a missing
 * dataset or attribute, a wrong dtype or shape, offsets not starting at 0,
 * decreasing or not ending at the token count, a loss_mask other than 0/1,
 * an unknown format_version. */
RolloutBuffer *rollout_buffer_read(const char *path, char *err, size_t errlen);

#endif
