/*
 * tandem image: from encoded image bytes to a model's input tensor, and from
 * a model's output scores to labels.
 *
 *     tdm_preprocess pp;
 *     tdm_preprocess_for_model(model, "model.onnx", &pp, err, sizeof err);
 *     tdm_image_to_input(bytes, len, &pp, input, tdm_session_input_bytes(s), err, sizeof err);
 *     tdm_session_run(s, input, ..., scores, ...);
 *     tdm_topk(&pp, scores, k, top);   // top[i].label from pp.labels
 *
 * Decoding refuses anything that is not a JPEG or PNG and truncated data
 * (TDM_ERR_IMAGE), and images that would cost more than tdm_image_limits
 * allow (TDM_ERR_LIMIT: decompression bombs of every shape), with a message.
 * Large JPEGs are decoded at a reduced scale by libjpeg-turbo's DCT scaling
 * when that still covers the model's input size.
 */
#ifndef TANDEM_IMAGE_H
#define TANDEM_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "tandem/engine.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    TDM_LAYOUT_NCHW_FLOAT = 0, /* [N,3,H,W] float, RGB, (x/255 - mean) / std */
    TDM_LAYOUT_NHWC_UINT8 = 1  /* [N,H,W,3] uint8, raw RGB */
} tdm_layout;

typedef struct tdm_labels tdm_labels;

/* What decoding one untrusted image may cost; a field left 0 takes the
 * default named here (the same as the service's settings). Every limit is
 * checked before the memory it guards is allocated, or while decoding runs
 * (scans, CPU time), never only at the end. */
typedef struct tdm_image_limits {
    uint64_t max_pixels;      /* width*height; 64 Mpx */
    uint32_t max_side;        /* width and height each; 16384 */
    uint32_t max_aspect;      /* longer side / shorter side; 100 */
    uint32_t max_decode_ms;   /* CPU time of one decode (ms); 1000 */
    uint32_t jpeg_max_scans;  /* scans of a progressive JPEG; 100 */
    uint64_t jpeg_max_memory; /* libjpeg's own memory: a progressive JPEG keeps every
                                 coefficient (2 bytes a sample); 100 MiB */
    uint64_t png_max_chunk;   /* largest PNG chunk read, IDAT aside; 8 MiB */
    uint64_t png_max_cache;   /* PNG ancillary chunks held in all; 16 MiB */
} tdm_image_limits;

typedef struct tdm_preprocess {
    tdm_layout layout;
    int width, height;
    float mean[3], std[3];   /* TDM_LAYOUT_NCHW_FLOAT only */
    tdm_image_limits limits; /* zeroed: the defaults */
    tdm_labels *labels;      /* owned; freed by tdm_preprocess_clear */
    int label_offset;        /* 1 when the model has a leading "background" class */
} tdm_preprocess;

typedef struct tdm_label_score {
    int index;         /* class index in the model's output */
    float score;       /* the value ranked (a probability from tdm_classifier_run) */
    const char *label; /* valid while the tdm_preprocess lives */
} tdm_label_score;

/* Infers preprocessing from the model's first input and output: layout and
 * size from the input shape and dtype, labels from the output width (1000:
 * ImageNet; 1001: "background" first). A sidecar file model_path + ".json"
 * (see README) may override labels, mean, std and size. model_path may be NULL. */
int tdm_preprocess_for_model(const tdm_model *model, const char *model_path,
                             tdm_preprocess *out, char *err, size_t errlen);
void tdm_preprocess_clear(tdm_preprocess *pp);

/* Decodes an encoded JPEG/PNG and writes one image (batch 1) of model input
 * into dst, which must hold exactly dst_len bytes for the layout. */
int tdm_image_to_input(const void *data, size_t len, const tdm_preprocess *pp, void *dst,
                       size_t dst_len, char *err, size_t errlen);

/* Labels: one per line. The built-in list is the 1000 ImageNet-1k classes. */
int tdm_labels_load(const char *path, tdm_labels **out, char *err, size_t errlen);
int tdm_labels_builtin(tdm_labels **out);
int tdm_labels_count(const tdm_labels *labels);
const char *tdm_labels_get(const tdm_labels *labels, int i); /* NULL out of range */
void tdm_labels_free(tdm_labels *labels);

/* The k best classes of one output row (scores has nclasses values of dtype;
 * float or uint8), best first. Returns the number written (<= k). */
int tdm_topk(const tdm_preprocess *pp, const void *scores, tdm_dtype dtype, int nclasses, int k,
             tdm_label_score *top);

#ifdef __cplusplus
}
#endif
#endif
