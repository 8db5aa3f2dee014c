/*
 * engine: the public model API of include/tandem/engine.h — status names,
 * options, and loading a model: read the file (size capped), parse it
 * (onnx_load), refuse what we cannot run (ops_check on every node), then the
 * load-time rewrites (opt_model). Sessions live in session.c.
 *
 * A loaded model is a classifier: exactly one non-constant input, whose rank
 * is known, and at least one output. Anything else is refused here, so every
 * later stage may rely on it.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "onnx_load.h"
#include "ops.h"
#include "opt.h"
#include "session.h"

/* protobuf cannot represent a message above 2 GiB, so no valid .onnx file
 * without external data is larger. */
#define ENGINE_MAX_FILE_BYTES ((size_t)2 << 30)

#define ENGINE_MAX_THREADS 1024

const char *tdm_strerror(int status)
{
    switch (status) {
    case TDM_OK:
        return "success";
    case TDM_ERR_NOMEM:
        return "out of memory or over a size limit";
    case TDM_ERR_IO:
        return "input/output error";
    case TDM_ERR_PARSE:
        return "not a valid ONNX model";
    case TDM_ERR_UNSUPPORTED:
        return "unsupported model feature";
    case TDM_ERR_INVALID:
        return "invalid argument";
    case TDM_ERR_BACKEND:
        return "oneDNN failure";
    case TDM_ERR_IMAGE:
        return "not a usable image";
    case TDM_ERR_LIMIT:
        return "input exceeds a configured limit";
    default:
        return "unknown error";
    }
}

void tdm_options_init(tdm_options *opt)
{
    if (!opt) return;
    memset(opt, 0, sizeof *opt);
    opt->threads = 0;
    opt->precision = TDM_PRECISION_FP32;
    opt->backend = TDM_BACKEND_DNNL;
}

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

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int check_options(const tdm_options *opt, char *err, size_t errlen)
{
    if (opt->threads < 0 || opt->threads > ENGINE_MAX_THREADS)
        return fail(err, errlen, TDM_ERR_INVALID, "threads must be 0..%d, not %d",
                    ENGINE_MAX_THREADS, opt->threads);
    if (opt->precision != TDM_PRECISION_FP32 && opt->precision != TDM_PRECISION_BF16)
        return fail(err, errlen, TDM_ERR_INVALID, "unknown precision %d", (int)opt->precision);
    if (opt->backend != TDM_BACKEND_DNNL && opt->backend != TDM_BACKEND_REF)
        return fail(err, errlen, TDM_ERR_INVALID, "unknown backend %d", (int)opt->backend);
    return 0;
}

/* What the rest of the engine relies on: one non-constant input of known
 * rank, at least one output, every node an op we run. */
static int check_graph(graph *g, char *err, size_t errlen)
{
    if (g->ninputs < 1) return fail(err, errlen, TDM_ERR_UNSUPPORTED, "the model has no input");
    if (g->ninputs > 1)
        return fail(err, errlen, TDM_ERR_UNSUPPORTED,
                    "the model has %d inputs; only single-input classifiers are supported",
                    g->ninputs);
    if (g->noutputs < 1) return fail(err, errlen, TDM_ERR_UNSUPPORTED, "the model has no output");
    const graph_tensor *in = &g->tensors[g->inputs[0]];
    if (in->rank < 0)
        return fail(err, errlen, TDM_ERR_UNSUPPORTED, "input '%s' has no known rank", in->name);
    if (tdm_dtype_size(in->dtype) == 0)
        return fail(err, errlen, TDM_ERR_UNSUPPORTED, "input '%s' has unsupported dtype %s",
                    in->name, tdm_dtype_name(in->dtype));
    for (int i = 1; i < in->rank; i++)
        if (in->dims[i] < 0)
            return fail(err, errlen, TDM_ERR_UNSUPPORTED,
                        "input '%s': dimension %d is symbolic; only the batch may be", in->name,
                        i);
    for (int i = 0; i < g->nnodes; i++) {
        if (g->nodes[i].dead) continue;
        int rc = ops_check(g, i);
        if (rc) return fail(err, errlen, rc, "%s", g->err);
    }
    return 0;
}

/* Output shapes for tdm_model_output(): inferred on a batch-1 copy, the
 * batch shown as -1 again when the input's batch is free. Also catches shape
 * errors at load time rather than at the first session. */
static int infer_outputs(graph *g, char *err, size_t errlen)
{
    graph *c = NULL;
    int rc = graph_clone(g, &c);
    if (rc) return fail(err, errlen, rc, "out of memory copying the graph");
    graph_tensor *in = &c->tensors[c->inputs[0]];
    bool dynamic = in->rank > 0 && in->dims[0] < 0;
    if (dynamic) in->dims[0] = 1;
    if ((rc = opt_infer_and_fold(c))) {
        fail(err, errlen, rc, "%s", c->err);
        goto out;
    }
    for (int i = 0; i < g->noutputs && i < c->noutputs; i++) {
        const graph_tensor *ct = &c->tensors[c->outputs[i]];
        graph_tensor *t = &g->tensors[g->outputs[i]];
        t->dtype = ct->dtype;
        t->rank = ct->rank;
        memcpy(t->dims, ct->dims, sizeof t->dims);
        if (dynamic && t->rank > 0 && t->dims[0] == 1) t->dims[0] = -1;
    }
out:
    graph_free(c);
    return rc;
}

int tdm_model_load_mem(const void *data, size_t len, const tdm_options *opt, tdm_model **out,
                       char *err, size_t errlen)
{
    tdm_options defaults;
    graph *g = NULL;
    tdm_model *m = NULL;
    double t0 = now_ms();
    int rc;
    if (err && errlen) err[0] = '\0';
    if (!out || (!data && len)) return fail(err, errlen, TDM_ERR_INVALID, "no model data");
    if (!opt) {
        tdm_options_init(&defaults);
        opt = &defaults;
    }
    if ((rc = check_options(opt, err, errlen))) return rc;
    if ((rc = onnx_load(data, len, &g, err, errlen))) goto out;
    if ((rc = check_graph(g, err, errlen))) goto out;
    if ((rc = opt_model(g))) {
        fail(err, errlen, rc, "%s", g->err);
        goto out;
    }
    if ((rc = infer_outputs(g, err, errlen))) goto out;
    if (!(m = calloc(1, sizeof *m))) {
        rc = fail(err, errlen, TDM_ERR_NOMEM, "out of memory");
        goto out;
    }
    if (pthread_mutex_init(&m->lock, NULL)) {
        free(m);
        m = NULL;
        rc = fail(err, errlen, TDM_ERR_NOMEM, "cannot create a lock");
        goto out;
    }
    m->g = g;
    m->opt = *opt;
    g = NULL;
    m->load_ms = now_ms() - t0;
    *out = m;
    m = NULL;
out:
    graph_free(g);
    return rc;
}

int tdm_model_load(const char *path, const tdm_options *opt, tdm_model **out, char *err,
                   size_t errlen)
{
    FILE *f = NULL;
    void *buf = NULL;
    struct stat st;
    int rc;
    if (err && errlen) err[0] = '\0';
    if (!path || !out) return fail(err, errlen, TDM_ERR_INVALID, "no model path");
    if (!(f = fopen(path, "rb"))) {
        rc = fail(err, errlen, TDM_ERR_IO, "%s: %s", path, strerror(errno));
        goto out;
    }
    if (fstat(fileno(f), &st) < 0) {
        rc = fail(err, errlen, TDM_ERR_IO, "%s: %s", path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = fail(err, errlen, TDM_ERR_IO, "%s: not a regular file", path);
        goto out;
    }
    if ((uint64_t)st.st_size > ENGINE_MAX_FILE_BYTES) {
        rc = fail(err, errlen, TDM_ERR_NOMEM, "%s: %lld bytes, over the %zu-byte limit", path,
                  (long long)st.st_size, ENGINE_MAX_FILE_BYTES);
        goto out;
    }
    size_t len = (size_t)st.st_size;
    if (!(buf = malloc(len ? len : 1))) {
        rc = fail(err, errlen, TDM_ERR_NOMEM, "%s: out of memory reading %zu bytes", path, len);
        goto out;
    }
    if (fread(buf, 1, len, f) != len) {
        rc = fail(err, errlen, TDM_ERR_IO, "%s: short read", path);
        goto out;
    }
    rc = tdm_model_load_mem(buf, len, opt, out, err, errlen);
    if (rc && err && errlen) {
        /* Prefix the file name so the caller's message says which model. */
        char msg[512];
        snprintf(msg, sizeof msg, "%s", err);
        snprintf(err, errlen, "%s: %s", path, msg);
    }
out:
    free(buf);
    if (f) fclose(f);
    return rc;
}

void tdm_model_free(tdm_model *model)
{
    if (!model) return;
    session_model_weights_free(model);
    pthread_mutex_destroy(&model->lock);
    graph_free(model->g);
    free(model);
}

int tdm_model_ninputs(const tdm_model *model)
{
    return model ? model->g->ninputs : 0;
}

int tdm_model_noutputs(const tdm_model *model)
{
    return model ? model->g->noutputs : 0;
}

static void tensor_info(const graph_tensor *t, tdm_tensor_info *out)
{
    memset(out, 0, sizeof *out);
    out->name = t->name;
    out->dtype = t->dtype;
    out->rank = t->rank;
    for (int i = 0; i < t->rank && i < TDM_MAX_RANK; i++)
        out->dims[i] = t->dims[i];
}

int tdm_model_input(const tdm_model *model, int i, tdm_tensor_info *out)
{
    if (!model || !out || i < 0 || i >= model->g->ninputs) return TDM_ERR_INVALID;
    tensor_info(&model->g->tensors[model->g->inputs[i]], out);
    return 0;
}

int tdm_model_output(const tdm_model *model, int i, tdm_tensor_info *out)
{
    if (!model || !out || i < 0 || i >= model->g->noutputs) return TDM_ERR_INVALID;
    tensor_info(&model->g->tensors[model->g->outputs[i]], out);
    return 0;
}

const tdm_options *tdm_model_options(const tdm_model *model)
{
    return model ? &model->opt : NULL;
}

/* One float or 8-bit value of a constant tensor's first element. */
static int const_scalar(const graph *g, int t, double *out)
{
    if (t < 0) return -1;
    const graph_tensor *c = &g->tensors[t];
    if (!c->data || graph_tensor_numel(c) != 1) return -1;
    switch (c->dtype) {
    case TDM_DTYPE_FLOAT:
        *out = *(const float *)c->data;
        return 0;
    case TDM_DTYPE_UINT8:
        *out = *(const uint8_t *)c->data;
        return 0;
    case TDM_DTYPE_INT8:
        *out = *(const int8_t *)c->data;
        return 0;
    default:
        return -1;
    }
}

/* Ops through which a value reaches the output unchanged, as far as the
 * output's meaning goes. */
static int passes_values(graph_op op)
{
    switch (op) {
    case OP_QUANTIZELINEAR:
    case OP_DEQUANTIZELINEAR:
    case OP_FAKEQUANT:
    case OP_RESHAPE:
    case OP_FLATTEN:
    case OP_SQUEEZE:
    case OP_UNSQUEEZE:
    case OP_IDENTITY:
    case OP_DROPOUT:
    case OP_CAST:
        return 1;
    default:
        return 0;
    }
}

int tdm_model_output_origin(const tdm_model *model, int i, tdm_output_origin *out, char *err,
                            size_t errlen)
{
    if (!model || !out || i < 0 || i >= model->g->noutputs)
        return fail(err, errlen, TDM_ERR_INVALID, "no output %d", i);
    const graph *g = model->g;
    memset(out, 0, sizeof *out);
    int t = g->outputs[i];
    for (int hops = 0; t >= 0 && hops < g->nnodes; hops++) {
        int p = g->tensors[t].producer;
        if (p < 0) break;
        const graph_node *n = &g->nodes[p];
        if (n->op == OP_SOFTMAX) {
            out->softmax = 1;
            break;
        }
        /* Only the last quantisation step decides what the output's integers mean. */
        if (hops == 0 && n->op == OP_QUANTIZELINEAR) {
            double scale, zp = 0;
            if (const_scalar(g, n->inputs[1], &scale) || !(scale > 0) ||
                (n->ninputs > 2 && n->inputs[2] >= 0 && const_scalar(g, n->inputs[2], &zp)))
                return fail(err, errlen, TDM_ERR_UNSUPPORTED,
                            "the quantised output '%s' has no per-tensor constant scale and "
                            "zero point",
                            g->tensors[t].name);
            out->quantised = 1;
            out->scale = (float)scale;
            out->zero_point = (int)zp;
        }
        t = passes_values(n->op) ? n->inputs[0] : -1;
    }
    return 0;
}
