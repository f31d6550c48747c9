/* gpu_check.h — whether a GPU part (the training step, the inference
 * engine) can run in this process: the one question every "device": "cuda"
 * key asks at startup. Defined in every build. */
#ifndef TAU2_MODEL_GPU_CHECK_H
#define TAU2_MODEL_GPU_CHECK_H

#include <stddef.h>

/* 0 when `what` (e.g. "the GPU training step") can run here at tensor
 * parallel size tp, the value of config key tp_key: a CUDA build, tp 1, a
 * visible device. Else -1 with the reason in err. */
int gpu_check(int tp, const char *tp_key, const char *what, char *err, size_t errlen);

#endif
