/*
 * models: putting the default model pair in place (`tandem models`, and
 * `tandem up` when the models are missing).
 */
#ifndef TANDEM_MODELS_H
#define TANDEM_MODELS_H

#include <stddef.h>

#include "errors.h"

/* The models could not be put in place (the message is on stderr). */
#define MODELS_ERR_UNAVAILABLE (ERR_BASE_MODELS - 1)

/* How test models may be exported when no real file can be had. */
enum {
    MODELS_EXPORT_NO = 0,   /* never: say so and fail */
    MODELS_EXPORT_YES = 1,  /* yes, with a loud warning that labels mean nothing */
    MODELS_EXPORT_ASK = 2,  /* ask on the terminal (stdin must be a TTY, else no) */
    MODELS_EXPORT_NEVER = 3 /* never, and test models left in dir do not count: the caller
                               falls back to the shipped pair (models_shipped) */
};

/* Puts the set ("zoo" or "st-int8") in dir as mobilenet_v2.onnx (fast, sync)
 * and resnet50.onnx (slow, async), each checked by size and sha256: kept if
 * already there, else copied from $MODEL_MIRROR, else downloaded. Returns 0
 * when both files are in place, MODELS_ERR_UNAVAILABLE after a message on
 * stderr. */
int models_ensure(const char *dir, const char *set, int export_mode);

/* The real int8 pair shipped with tandem (data/models/st-int8 in the source
 * tree: STMicroelectronics' MobileNetV1 0.5/128 as the fast model,
 * MobileNetV2 as the accurate one, both with ImageNet labels), found beside
 * the binary or under the current directory and checked by size and sha256.
 * Writes both paths (cap bytes each) and returns 0, or MODELS_ERR_UNAVAILABLE
 * after a message. */
int models_shipped(char *fast, char *slow, size_t cap);

/* 1 when dir holds random-weight test models (its TEST-MODELS marker). */
int models_test_marked(const char *dir);

#endif
