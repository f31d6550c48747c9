/* checkpoint.h — full-state training checkpoints in HDF5
 * (ckpt/step_NNNNNN.h5), atomic, with a `latest` marker and keep-last-K.
 *
 * Layout (format_version 1):
 *
 *   /model/<name>          float32, the tensor's shape   (Hugging Face names,
 *                          e.g. model.layers.0.self_attn.q_proj.weight)
 *   /optim/m/<name>        float32, same shapes           AdamW first moment
 *   /optim/v/<name>        float32, same shapes           AdamW second moment
 *   /state/step            int64 scalar   optimizer steps done
 *   /state/adam_step       int64 scalar   AdamW's bias-correction step
 *   /state/data_cursor     int64 scalar   position in the prompt stream
 *   /state/rng             uint64 [k]     RNG states (seeds, counters)
 *   /state/consumed_prompts int64 [m]     prompt indices already used
 *   attributes on /: format_version (1), step (int64), config (string:
 *                    the run's config JSON)
 *
 * The API is a flat list of named tensors (CkptTensor: name, shape, float
 * data), so the model layer hands its Qwen3Tensor list over without io
 * knowing the model; names must not contain '/'.
 *
 * Saving writes "<file>.tmp.<pid>" (registered with tmpfile_register),
 * fsyncs it, renames it into place, fsyncs the directory, then rewrites the
 * `latest` marker (a one-line text file holding the checkpoint's file name,
 * itself written atomically), and only then deletes older checkpoints
 * beyond the last K. A kill at any moment leaves the previous checkpoint and
 * a marker naming a complete file.
 */
#ifndef TAU2_IO_CHECKPOINT_H
#define TAU2_IO_CHECKPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CKPT_FORMAT_VERSION 1
#define CKPT_MAX_DIMS 4
#define CKPT_LATEST "latest"

/* A named fp32 tensor: data holds Π shape floats (borrowed). */
typedef struct {
    const char *name;
    int ndim; /* 1 .. CKPT_MAX_DIMS */
    int64_t shape[CKPT_MAX_DIMS];
    float *data;
} CkptTensor;

/* Everything besides tensors. In a loaded state the arrays and config are
 * owned (ckpt_state_free); in a state to save they are borrowed. */
typedef struct {
    int64_t step;
    int64_t adam_step;
    int64_t data_cursor;
    uint64_t *rng;
    int64_t n_rng;
    int64_t *consumed_prompts;
    int64_t n_consumed;
    char *config_json;
} CkptState;

void ckpt_state_free(CkptState *st);

/* "<dir>/step_<step, 6 digits>.h5" into out. */
void ckpt_path(const char *dir, int64_t step, char *out, size_t outlen);

/* Save a checkpoint of step st->step into dir (which must exist):
 * model tensors, and the AdamW moments when m and v are not NULL (same
 * names and shapes as model, n tensors each). Then the latest marker, then
 * keep_last > 0 deletes the oldest step_*.h5 files with a step at most
 * st->step until keep_last remain (files of later steps, left by an
 * abandoned run, are not touched). 0, or -1 with err; on failure the
 * previous checkpoint and marker are unchanged. */
int ckpt_save(const char *dir, const CkptState *st, const CkptTensor *model, const CkptTensor *m,
              const CkptTensor *v, int n, int keep_last, char *err, size_t errlen);

/* The path of the checkpoint the latest marker of dir names, into out.
 * -1 with err when there is no marker, or it names a missing file. */
int ckpt_latest(const char *dir, char *out, size_t outlen, char *err, size_t errlen);

/* Load a checkpoint into tensors the caller describes: every name must be
 * present with that shape and float32 dtype, and /model must hold no other
 * tensor. m and v may be NULL (moments not wanted); when given, /optim must
 * hold them. st receives the state (free with ckpt_state_free). -1 with err
 * naming the file and the tensor or dataset. */
int ckpt_load(const char *path, CkptState *st, CkptTensor *model, CkptTensor *m, CkptTensor *v, int n,
              char *err, size_t errlen);

/* The checkpoint file a path names: the path itself when it is not a
 * directory, else the directory's latest checkpoint, else that of its
 * ckpt/ subdirectory (a run directory). -1 with err when a directory holds
 * none. */
int ckpt_resolve(const char *path, char *out, size_t outlen, char *err, size_t errlen);

/* The config attribute of a checkpoint alone (a new string), so a reader
 * can size the tensors before ckpt_load. NULL with err. */
char *ckpt_read_config(const char *path, char *err, size_t errlen);

#endif
