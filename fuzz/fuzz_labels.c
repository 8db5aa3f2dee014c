/*
 * libFuzzer target for the labels file parser (src/image/labels.c, LABELS_PATH and
 * a sidecar's "labels"): any bytes must give one label per line (valid
 * UTF-8, no NUL, none longer than the limit) or a refusal with a
 * message. Parsed labels then name the classes of a ranking (tdm_topk, with
 * the first byte choosing a background offset) and go into the JSON answer
 * (codec_top_json), as in the proxy.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "codec.h"
#include "image_internal.h"
#include "tandem/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tdm_labels *labels = NULL;
    char err[256] = "";
    int rc = labels_parse((const char *)data, size, &labels, err, sizeof err);
    if (rc) {
        if (!err[0] || labels) abort();
        if (rc != TDM_ERR_INVALID && rc != TDM_ERR_LIMIT && rc != TDM_ERR_NOMEM) abort();
        return 0;
    }
    size_t lines = 0;
    for (size_t i = 0; i < size; i++)
        lines += data[i] == '\n';
    if (size && data[size - 1] != '\n') lines++;
    int n = tdm_labels_count(labels);
    if (n < 1 || (size_t)n != lines) abort();
    for (int i = 0; i < n; i++) {
        const char *s = tdm_labels_get(labels, i);
        if (!s || strlen(s) > 4096 || strchr(s, '\n')) abort();
    }
    if (tdm_labels_get(labels, n) || tdm_labels_get(labels, -1)) abort();

    /* Scores from the bytes themselves; one class more with an offset. */
    tdm_preprocess pp;
    memset(&pp, 0, sizeof pp);
    pp.labels = labels;
    pp.label_offset = size ? data[0] & 1 : 0;
    int nclasses = n + pp.label_offset;
    float *scores = malloc(sizeof(float) * (size_t)nclasses);
    if (!scores) abort();
    for (int i = 0; i < nclasses; i++)
        scores[i] = (float)data[(size_t)i % size] - (float)i * 0.5f;
    tdm_label_score top[5];
    int k = tdm_topk(&pp, scores, TDM_DTYPE_FLOAT, nclasses, 5, top);
    if (k != (nclasses < 5 ? nclasses : 5)) abort();
    for (int i = 0; i < k; i++) {
        if (!top[i].label || top[i].index < 0 || top[i].index >= nclasses) abort();
        if (i && top[i].score > top[i - 1].score) abort();
    }
    char *json = codec_top_json(top, k);
    if (!json) abort();
    json_error_t jerr;
    json_t *back = json_loads(json, 0, &jerr);
    if (!back || json_array_size(back) != (size_t)k) abort();
    json_decref(back);
    free(json);
    free(scores);
    tdm_preprocess_clear(&pp);
    return 0;
}
