/*
 * classifier: the one code path from a model file to ranked labels with
 * probabilities (include/tandem/classifier.h), used by the proxy, the worker
 * and `tandem classify` alike, so that the same model, sidecar and labels
 * give the same label everywhere.
 *
 * What the model's output means is read off the optimised graph once, at
 * open (tdm_model_output_origin): walking back from the output through ops that do not change values
 * (reshapes, casts, quantisation round trips), a Softmax means probabilities;
 * anything else means logits, to which softmax is applied here. An 8-bit
 * output must come from a per-tensor QuantizeLinear, whose scale and zero
 * point dequantise it; an 8-bit output with no such origin is refused rather
 * than ranked on meaningless numbers.
 */
#include "tandem/classifier.h"

#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image_internal.h"

/* Outputs wider than this are not class scores. */
#define CLASSIFIER_MAX_CLASSES (1 << 24)
/* Sessions of batch 1, 2, 4, ... 2^(CLASSIFIER_SESSIONS-1). */
#define CLASSIFIER_SESSIONS 8

/* What every handle on one model shares; immutable after open. */
struct classifier_model {
    atomic_int refs;
    tdm_model *model;
    tdm_preprocess pp;
    char *name;
    int nclasses;
    tdm_dtype out_dtype;
    tdm_scores scores;
    int quantised;
    float scale; /* value = (q - zero_point) * scale */
    int zero_point;
};

enum { SLOT_EMPTY, SLOT_IMAGE, SLOT_RESULT };

/* Slot i's input is in + i * in_len, its output out + i * out_len, so a
 * session of batch b runs on b consecutive slots in place. */
struct tdm_classifier {
    struct classifier_model *m;
    tdm_session *sessions[CLASSIFIER_SESSIONS]; /* [i]: batch 1 << i, NULL until planned */
    int nslots;
    unsigned char *slot; /* SLOT_* of each slot */
    void *in, *out;
    size_t in_len, out_len; /* of one image */
    float *prob;            /* nclasses probabilities of the slot read last */
};

static int fail(char *err, size_t errlen, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(char *err, size_t errlen, int status, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return status;
}

void tdm_classifier_options_init(tdm_classifier_options *opt)
{
    memset(opt, 0, sizeof *opt);
    tdm_options_init(&opt->engine);
}

const char *tdm_scores_name(tdm_scores scores)
{
    return scores == TDM_SCORES_SOFTMAX ? "softmax" : "probabilities";
}

static void model_release(struct classifier_model *m)
{
    if (!m || atomic_fetch_sub(&m->refs, 1) != 1) return;
    tdm_preprocess_clear(&m->pp);
    tdm_model_free(m->model);
    free(m->name);
    free(m);
}

/* Reads the output's meaning off the graph (see the top of this file). */
static int read_output(struct classifier_model *m, char *err, size_t errlen)
{
    tdm_output_origin o;
    char inner[300];
    int rc = tdm_model_output_origin(m->model, 0, &o, inner, sizeof inner);
    if (rc)
        return fail(err, errlen, rc, "%s: %s, so its scores cannot be read as numbers", m->name,
                    inner);
    m->scores = o.softmax ? TDM_SCORES_PROBABILITIES : TDM_SCORES_SOFTMAX;
    m->quantised = o.quantised;
    m->scale = o.scale;
    m->zero_point = o.zero_point;
    if ((m->out_dtype == TDM_DTYPE_UINT8 || m->out_dtype == TDM_DTYPE_INT8) && !m->quantised)
        return fail(err, errlen, TDM_ERR_UNSUPPORTED,
                    "%s: the %s output does not come from a QuantizeLinear, so its scores "
                    "cannot be read as numbers",
                    m->name, tdm_dtype_name(m->out_dtype));
    return 0;
}

/* opt->labels_path replaces whatever labels the model came with. */
static int apply_labels_file(struct classifier_model *m, const char *path, char *err, size_t errlen)
{
    tdm_labels *l = NULL;
    char inner[400];
    int rc = tdm_labels_load(path, &l, inner, sizeof inner);
    if (rc) return fail(err, errlen, rc, "labels %s", inner);
    int n = tdm_labels_count(l);
    if (n != m->nclasses && n != m->nclasses - 1) {
        tdm_labels_free(l);
        return fail(err, errlen, TDM_ERR_INVALID,
                    "labels %s: %d labels, but %s has %d classes (give %d, or %d without a "
                    "leading background)",
                    path, n, m->name, m->nclasses, m->nclasses, m->nclasses - 1);
    }
    tdm_labels_free(m->pp.labels);
    m->pp.labels = l;
    m->pp.label_offset = n == m->nclasses ? 0 : 1;
    return 0;
}

static int handle_new(struct classifier_model *m, tdm_classifier **out, char *err, size_t errlen)
{
    tdm_classifier *c = calloc(1, sizeof *c);
    tdm_tensor_info oi;
    int rc;
    if (!c) return fail(err, errlen, TDM_ERR_NOMEM, "out of memory");
    c->m = m;
    c->nslots = 1;
    rc = tdm_session_create(m->model, 1, &c->sessions[0], err, errlen);
    if (rc) goto out;
    rc = tdm_session_output_info(c->sessions[0], &oi);
    if (rc) {
        fail(err, errlen, rc, "%s: no output description", m->name);
        goto out;
    }
    c->in_len = tdm_session_input_bytes(c->sessions[0]);
    c->out_len = tdm_session_output_bytes(c->sessions[0]);
    size_t esize = tdm_dtype_size(oi.dtype);
    if (oi.dtype != TDM_DTYPE_FLOAT && oi.dtype != TDM_DTYPE_UINT8 && oi.dtype != TDM_DTYPE_INT8) {
        rc = fail(err, errlen, TDM_ERR_UNSUPPORTED, "%s: output '%s' is %s, not class scores",
                  m->name, oi.name ? oi.name : "?", tdm_dtype_name(oi.dtype));
        goto out;
    }
    /* One row: every dimension but the last is 1 at batch 1. */
    size_t n = c->out_len / esize;
    if (oi.rank < 1 || n > CLASSIFIER_MAX_CLASSES || (int64_t)n != oi.dims[oi.rank - 1] || n < 1) {
        rc = fail(err, errlen, TDM_ERR_UNSUPPORTED,
                  "%s: output '%s' is not one row of class scores (%zu values)", m->name,
                  oi.name ? oi.name : "?", n);
        goto out;
    }
    if (m->nclasses && (int)n != m->nclasses) {
        rc = fail(err, errlen, TDM_ERR_INVALID, "%s: a new session has %zu classes, not %d",
                  m->name, n, m->nclasses);
        goto out;
    }
    m->nclasses = (int)n;
    m->out_dtype = oi.dtype;
    c->in = malloc(c->in_len);
    c->out = malloc(c->out_len);
    c->prob = malloc(sizeof *c->prob * n);
    c->slot = calloc(1, 1);
    if (!c->in || !c->out || !c->prob || !c->slot)
        rc = fail(err, errlen, TDM_ERR_NOMEM, "out of memory");
out:
    if (rc) {
        c->m = NULL;
        tdm_classifier_close(c);
        return rc;
    }
    atomic_fetch_add(&m->refs, 1);
    /* One copy of the weights: the session holds them in its own layout. */
    tdm_model_trim(m->model, NULL);
    *out = c;
    return 0;
}

int tdm_classifier_open(const char *model_path, const tdm_classifier_options *opt,
                        tdm_classifier **out, char *err, size_t errlen)
{
    struct classifier_model *m = NULL;
    tdm_classifier *c = NULL;
    char inner[480];
    int rc;
    if (!model_path || !opt || !out) return fail(err, errlen, TDM_ERR_INVALID, "no model given");
    m = calloc(1, sizeof *m);
    const char *slash = strrchr(model_path, '/');
    if (m) m->name = strdup(slash ? slash + 1 : model_path);
    if (!m || !m->name) {
        rc = fail(err, errlen, TDM_ERR_NOMEM, "out of memory");
        goto out;
    }
    atomic_init(&m->refs, 1);
    /* The engine's message already names the file. */
    rc = tdm_model_load(model_path, &opt->engine, &m->model, err, errlen);
    if (rc) goto out;
    rc = tdm_preprocess_for_model(m->model, model_path, &m->pp, inner, sizeof inner);
    if (rc) {
        fail(err, errlen, rc, "%s: %s", model_path, inner);
        goto out;
    }
    m->pp.limits = opt->limits;
    rc = handle_new(m, &c, err, errlen);
    if (rc) goto out;
    rc = read_output(m, err, errlen);
    if (rc) goto out;
    if (opt->labels_path && opt->labels_path[0]) {
        rc = apply_labels_file(m, opt->labels_path, err, errlen);
    } else if (!m->pp.labels) {
        /* The model's declared output width was open: name the classes now. */
        rc = labels_numbered(m->nclasses, &m->pp.labels);
        if (rc) fail(err, errlen, rc, "%s: cannot name %d classes", m->name, m->nclasses);
        m->pp.label_offset = 0;
    }
    if (rc) goto out;
    if (tdm_labels_count(m->pp.labels) + m->pp.label_offset != m->nclasses) {
        rc = fail(err, errlen, TDM_ERR_INVALID, "%s: %d labels (label offset %d) for %d classes",
                  model_path, tdm_labels_count(m->pp.labels), m->pp.label_offset, m->nclasses);
        goto out;
    }
    *out = c;
    c = NULL;
out:
    tdm_classifier_close(c);
    model_release(m);
    return rc;
}

int tdm_classifier_share(tdm_classifier *c, tdm_classifier **out, char *err, size_t errlen)
{
    if (!c || !out) return fail(err, errlen, TDM_ERR_INVALID, "no classifier given");
    return handle_new(c->m, out, err, errlen);
}

void tdm_classifier_close(tdm_classifier *c)
{
    if (!c) return;
    for (int i = 0; i < CLASSIFIER_SESSIONS; i++)
        tdm_session_free(c->sessions[i]);
    free(c->slot);
    free(c->in);
    free(c->out);
    free(c->prob);
    model_release(c->m);
    free(c);
}

void tdm_classifier_get_info(const tdm_classifier *c, tdm_classifier_info *out)
{
    const struct classifier_model *m = c->m;
    memset(out, 0, sizeof *out);
    out->model_name = m->name;
    out->nclasses = m->nclasses;
    out->label_offset = m->pp.label_offset;
    out->scores = m->scores;
    out->output_dtype = m->out_dtype;
    out->pp = &m->pp;
}

int tdm_classifier_set_image_at(tdm_classifier *c, int slot, const void *data, size_t len,
                                char *err, size_t errlen)
{
    if (!c || slot < 0 || slot >= c->nslots)
        return fail(err, errlen, TDM_ERR_INVALID, "no slot %d (the batch holds %d)", slot,
                    c ? c->nslots : 0);
    c->slot[slot] = SLOT_EMPTY;
    int rc = tdm_image_to_input(data, len, &c->m->pp, (char *)c->in + (size_t)slot * c->in_len,
                                c->in_len, err, errlen);
    if (!rc) c->slot[slot] = SLOT_IMAGE;
    return rc;
}

int tdm_classifier_set_image(tdm_classifier *c, const void *data, size_t len, char *err,
                             size_t errlen)
{
    return tdm_classifier_set_image_at(c, 0, data, len, err, errlen);
}

int tdm_classifier_set_batch(tdm_classifier *c, int max, int *allowed, char *err, size_t errlen)
{
    tdm_tensor_info ii;
    int rc = 0;
    if (!c || !allowed || max < 1 || max > 1 << (CLASSIFIER_SESSIONS - 1))
        return fail(err, errlen, TDM_ERR_INVALID, "a batch is 1 to %d images",
                    1 << (CLASSIFIER_SESSIONS - 1));
    if (err && errlen) err[0] = '\0';
    rc = tdm_model_input(c->m->model, 0, &ii);
    if (rc) return fail(err, errlen, rc, "%s: no input description", c->m->name);
    if (max > 1 && (ii.rank < 1 || ii.dims[0] >= 0)) {
        fail(err, errlen, 0, "%s: its input '%s' fixes the batch to %lld", c->m->name,
             ii.name ? ii.name : "?", ii.rank < 1 ? 1LL : (long long)ii.dims[0]);
        max = 1;
    }
    void *in = realloc(c->in, (size_t)max * c->in_len);
    if (in) c->in = in;
    void *out = realloc(c->out, (size_t)max * c->out_len);
    if (out) c->out = out;
    unsigned char *slot = realloc(c->slot, (size_t)max);
    if (slot) c->slot = slot;
    if (!in || !out || !slot) return fail(err, errlen, TDM_ERR_NOMEM, "out of memory");
    for (int i = c->nslots; i < max; i++)
        c->slot[i] = SLOT_EMPTY;
    c->nslots = max;
    for (int i = 1; i < CLASSIFIER_SESSIONS && !rc; i++) {
        int b = 1 << i;
        if (b > max) {
            tdm_session_free(c->sessions[i]);
            c->sessions[i] = NULL;
            continue;
        }
        if (c->sessions[i]) continue;
        rc = tdm_session_create(c->m->model, b, &c->sessions[i], err, errlen);
        if (!rc && (tdm_session_input_bytes(c->sessions[i]) != (size_t)b * c->in_len ||
                    tdm_session_output_bytes(c->sessions[i]) != (size_t)b * c->out_len))
            rc = fail(err, errlen, TDM_ERR_UNSUPPORTED,
                      "%s: a batch of %d does not take %d inputs and give %d outputs", c->m->name,
                      b, b, b);
    }
    /* The new sessions took the plain weights back (see tdm_model_trim). */
    tdm_model_trim(c->m->model, NULL);
    if (rc) {
        /* Back to what batch 1 needs; the buffers stay large enough. */
        for (int i = 1; i < CLASSIFIER_SESSIONS; i++) {
            tdm_session_free(c->sessions[i]);
            c->sessions[i] = NULL;
        }
        c->nslots = 1;
        return rc;
    }
    *allowed = max;
    return 0;
}

int tdm_classifier_run_batch(tdm_classifier *c, int n, char *err, size_t errlen)
{
    if (!c || n < 1 || n > c->nslots)
        return fail(err, errlen, TDM_ERR_INVALID, "a run of %d slots (the batch holds %d)", n,
                    c ? c->nslots : 0);
    for (int i = 0; i < n; i++)
        if (c->slot[i] == SLOT_EMPTY)
            return fail(err, errlen, TDM_ERR_INVALID, "slot %d has no image", i);
    for (int off = 0; off < n;) {
        int i = CLASSIFIER_SESSIONS - 1;
        while (!c->sessions[i] || 1 << i > n - off)
            i--;
        int b = 1 << i;
        int rc = tdm_session_run(c->sessions[i], (char *)c->in + (size_t)off * c->in_len,
                                 (size_t)b * c->in_len, (char *)c->out + (size_t)off * c->out_len,
                                 (size_t)b * c->out_len);
        if (rc) return fail(err, errlen, rc, "%s", tdm_session_error(c->sessions[i]));
        off += b;
    }
    for (int i = 0; i < n; i++)
        c->slot[i] = SLOT_RESULT;
    return 0;
}

/* The output row of a slot as probabilities in c->prob. */
static void to_probabilities(tdm_classifier *c, int slot)
{
    const struct classifier_model *m = c->m;
    const char *row = (const char *)c->out + (size_t)slot * c->out_len;
    int n = m->nclasses;
    for (int i = 0; i < n; i++) {
        if (m->out_dtype == TDM_DTYPE_FLOAT)
            c->prob[i] = ((const float *)row)[i];
        else if (m->out_dtype == TDM_DTYPE_UINT8)
            c->prob[i] = (float)(((const uint8_t *)row)[i] - m->zero_point) * m->scale;
        else
            c->prob[i] = (float)(((const int8_t *)row)[i] - m->zero_point) * m->scale;
    }
    if (m->scores != TDM_SCORES_SOFTMAX) return;
    float max = -INFINITY;
    for (int i = 0; i < n; i++)
        if (c->prob[i] > max) max = c->prob[i];
    double sum = 0;
    for (int i = 0; i < n; i++) {
        c->prob[i] = expf(c->prob[i] - max);
        sum += c->prob[i];
    }
    for (int i = 0; i < n; i++)
        c->prob[i] = (float)(c->prob[i] / sum);
}

int tdm_classifier_topk_at(tdm_classifier *c, int slot, int k, tdm_label_score *top, char *err,
                           size_t errlen)
{
    if (!c || !top || k < 1 || slot < 0 || slot >= c->nslots)
        return fail(err, errlen, TDM_ERR_INVALID, "bad arguments");
    if (c->slot[slot] != SLOT_RESULT)
        return fail(err, errlen, TDM_ERR_INVALID, "slot %d has no result", slot);
    to_probabilities(c, slot);
    return tdm_topk(&c->m->pp, c->prob, TDM_DTYPE_FLOAT, c->m->nclasses, k, top);
}

int tdm_classifier_run(tdm_classifier *c, int k, tdm_label_score *top, char *err, size_t errlen)
{
    if (!c || !top || k < 1) return fail(err, errlen, TDM_ERR_INVALID, "bad arguments");
    if (c->slot[0] == SLOT_EMPTY) return fail(err, errlen, TDM_ERR_INVALID, "no image set");
    int rc = tdm_classifier_run_batch(c, 1, err, errlen);
    return rc ? rc : tdm_classifier_topk_at(c, 0, k, top, err, errlen);
}

int tdm_classifier_classify(tdm_classifier *c, const void *data, size_t len, int k,
                            tdm_label_score *top, char *err, size_t errlen)
{
    int rc = tdm_classifier_set_image(c, data, len, err, errlen);
    return rc ? rc : tdm_classifier_run(c, k, top, err, errlen);
}
