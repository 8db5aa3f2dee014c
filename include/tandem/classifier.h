/*
 * tandem classifier: an image file's bytes in, ranked labels with
 * probabilities out. One object owns what that takes: the model, its
 * preprocessing (inferred from the model, a sidecar MODEL.onnx.json may
 * override it), the labels, a session and its buffers.
 *
 *     tdm_classifier_options opt;
 *     tdm_classifier_options_init(&opt);
 *     opt.labels_path = "my_labels.txt";       // optional
 *     tdm_classifier *c;
 *     char err[512];
 *     if (tdm_classifier_open("model.onnx", &opt, &c, err, sizeof err) < 0) ...
 *     tdm_label_score top[5];
 *     int n = tdm_classifier_classify(c, bytes, len, 5, top, err, sizeof err);
 *     tdm_classifier_close(c);
 *
 * Scores are always probabilities: a quantised output is dequantised with its
 * QuantizeLinear scale and zero point, and an output that does not come from
 * a Softmax (logits) goes through one; tdm_classifier_info says which.
 *
 * Labels: opt.labels_path, else the sidecar's "labels", else the built-in
 * ImageNet list for 1000- and 1001-class outputs, else "class N". A labels
 * file with as many names as the model has classes maps one to one; one
 * with one name fewer skips a leading "background" class (index 0); any
 * other count is refused at open.
 *
 * A classifier is used by one thread at a time. tdm_classifier_share gives
 * another handle on the same loaded model, with its own session and buffers,
 * for another thread; the model goes when the last handle is closed.
 */
#ifndef TANDEM_CLASSIFIER_H
#define TANDEM_CLASSIFIER_H

#include <stddef.h>
#include <stdint.h>

#include "tandem/engine.h"
#include "tandem/image.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tdm_classifier tdm_classifier;

typedef enum {
    TDM_SCORES_PROBABILITIES = 0, /* the model outputs probabilities (a Softmax ends it) */
    TDM_SCORES_SOFTMAX = 1        /* the model outputs logits: softmax applied here */
} tdm_scores;

typedef struct tdm_classifier_options {
    tdm_options engine;      /* threads, precision, backend */
    const char *labels_path; /* NULL or "": the sidecar's, built-in or numbered labels */
    tdm_image_limits limits; /* what decoding one image may cost; zeroed: the defaults */
} tdm_classifier_options;

typedef struct tdm_classifier_info {
    const char *model_name; /* the file name part of the model path */
    int nclasses;           /* values in the model's output row */
    int label_offset;       /* 1: output 0 is "background", labels name outputs 1.. */
    tdm_scores scores;
    tdm_dtype output_dtype; /* as the model writes it (uint8 when quantised) */
    const tdm_preprocess *pp;
} tdm_classifier_info;

void tdm_classifier_options_init(tdm_classifier_options *opt);

/* Loads the model, its sidecar and labels and plans a session (batch 1). A
 * model whose output is not one row of class scores, or whose labels do not
 * fit its classes, is refused here with a message naming the file. */
int tdm_classifier_open(const char *model_path, const tdm_classifier_options *opt,
                        tdm_classifier **out, char *err, size_t errlen);
/* Another handle on c's model with its own session, for another thread. */
int tdm_classifier_share(tdm_classifier *c, tdm_classifier **out, char *err, size_t errlen);
void tdm_classifier_close(tdm_classifier *c);

void tdm_classifier_get_info(const tdm_classifier *c, tdm_classifier_info *out);
/* "probabilities" or "softmax". */
const char *tdm_scores_name(tdm_scores scores);

/* Decodes a JPEG or PNG into the model's input (TDM_ERR_IMAGE, TDM_ERR_LIMIT
 * for bad or oversized images). */
int tdm_classifier_set_image(tdm_classifier *c, const void *data, size_t len, char *err,
                             size_t errlen);
/* Runs the model on the image set last and writes the k best classes, best
 * first, with probabilities. Returns how many were written (<= k), or a
 * negative status. Labels stay valid while any handle on the model lives. */
int tdm_classifier_run(tdm_classifier *c, int k, tdm_label_score *top, char *err, size_t errlen);
/* Both of the above. */
int tdm_classifier_classify(tdm_classifier *c, const void *data, size_t len, int k,
                            tdm_label_score *top, char *err, size_t errlen);

/* Batches: several images in one run. tdm_classifier_set_batch plans
 * sessions for the powers of two up to max (they share the model's converted
 * weights; each has its own activations), and *allowed is the most images a
 * run may then take: max, or 1 when the model's input fixes its batch (err
 * then says so; not an error). Images go into slots 0..*allowed-1 (slot 0
 * is the image of tdm_classifier_set_image); a run of n slots is split into
 * power-of-two sessions, largest first (7 = 4 + 2 + 1), so no session runs
 * on padding; then each slot's top-k is read on its own. */
int tdm_classifier_set_batch(tdm_classifier *c, int max, int *allowed, char *err, size_t errlen);
/* The image of one slot (0 <= slot < *allowed); a failure leaves it empty. */
int tdm_classifier_set_image_at(tdm_classifier *c, int slot, const void *data, size_t len,
                                char *err, size_t errlen);
/* Runs the model on slots 0..n-1, each of which must hold an image. */
int tdm_classifier_run_batch(tdm_classifier *c, int n, char *err, size_t errlen);
/* The k best classes of a slot of the last run, as tdm_classifier_run. */
int tdm_classifier_topk_at(tdm_classifier *c, int slot, int k, tdm_label_score *top, char *err,
                           size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
