/*
 * models: putting the default model pair in place (`tandem models`, and
 * `tandem up` when the models are missing).
 */
#ifndef TANDEM_MODELS_H
#define TANDEM_MODELS_H

/* How test models may be exported when no real file can be had. */
enum {
    MODELS_EXPORT_NO = 0,  /* never: say so and fail */
    MODELS_EXPORT_YES = 1, /* yes, with a loud warning that labels mean nothing */
    MODELS_EXPORT_ASK = 2  /* ask on the terminal (stdin must be a TTY, else no) */
};

/* Puts the set ("zoo" or "st-int8") in dir as mobilenet_v2.onnx (fast, sync)
 * and resnet50.onnx (slow, async), each checked by size and sha256: kept if
 * already there, else copied from $MODEL_MIRROR, else downloaded. Returns 0
 * when both files are in place, -1 after a message on stderr. */
int models_ensure(const char *dir, const char *set, int export_mode);

#endif
