/*
 * ops: the operator table and everything about an op that does not depend on
 * how it is computed.
 *
 * Three questions are answered here, each by one function:
 *   - which ONNX (domain, op_type) pairs we run (ops_lookup / ops_name);
 *   - whether a node's inputs and attributes stay inside what the kernels
 *     implement (ops_check, at load time, so a model is refused early with a
 *     message naming the node rather than failing at the first request);
 *   - what shape and dtype each output has (ops_infer, run by the optimiser
 *     once a session has fixed the batch size).
 *
 * The ops whose meaning changed between opsets (Softmax's axis, Clip's bounds,
 * Pad's pads, Squeeze/Unsqueeze's axes) are accepted in every form here; the
 * optimiser then normalises them so the kernels need not know the opset.
 */
#include "ops.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ONNX op_type of each graph_op, indexed by the enum (ops.def). */
static const char *const op_names[OP_COUNT] = {
    [OP_UNKNOWN] = "Unknown",
#define OP(op, name, min_in, max_in, min_out, max_out, check, infer, kernel) [op] = name,
#include "ops.def"
#undef OP
};

graph_op ops_lookup(const char *domain, const char *op_type)
{
    if (!op_type) return OP_UNKNOWN;
    if (domain && domain[0] && strcmp(domain, "ai.onnx") != 0) return OP_UNKNOWN;
    /* OP_FAKEQUANT is internal: a file naming "FakeQuant" is not ours. */
    for (int op = OP_UNKNOWN + 1; op < OP_COUNT; op++)
        if (op != OP_FAKEQUANT && strcmp(op_names[op], op_type) == 0) return (graph_op)op;
    return OP_UNKNOWN;
}

const char *ops_name(graph_op op)
{
    if ((int)op < 0 || op >= OP_COUNT || !op_names[op]) return "Unknown";
    return op_names[op];
}

/* ------------------------------------------------------------------------ */
/* Load-time checks                                                          */
/* ------------------------------------------------------------------------ */

/* Input and output counts each op accepts; -1 = no upper bound. */
typedef struct {
    signed char min_in, max_in, min_out, max_out;
} op_arity;

static const op_arity arity[OP_COUNT] = {
#define OP(op, name, min_in, max_in, min_out, max_out, check, infer, kernel)                       \
    [op] = {min_in, max_in, min_out, max_out},
#include "ops.def"
#undef OP
};

int ops_node_fail(graph *g, const graph_node *n, int status, const char *fmt, ...)
{
    char what[GRAPH_ERR_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return graph_fail(g, status, "node '%s' (op %s): %s", n->name ? n->name : "",
                      n->op_type ? n->op_type : ops_name(n->op), what);
}

const graph_tensor *ops_input(const graph *g, const graph_node *n, int i)
{
    if (i < 0 || i >= n->ninputs || n->inputs[i] < 0 || n->inputs[i] >= g->ntensors) return NULL;
    return &g->tensors[n->inputs[i]];
}

#define refuse(g, n, ...) ops_node_fail(g, n, TDM_ERR_UNSUPPORTED, __VA_ARGS__)

/* Spatial attributes (kernel, stride, dilation, pads) beyond this are not a
 * real model; bounding them keeps all later size arithmetic far from overflow. */
#define OPS_MAX_SPATIAL ((int64_t)1 << 20)

/* An optional integer list attribute: if present it must be ints, of length
 * want (when want > 0), each element in [lo, hi]. */
static int check_ints_attr(graph *g, const graph_node *n, const char *name, int want, int64_t lo,
                           int64_t hi)
{
    const graph_attr *a = graph_attr_get(n, name);
    if (!a) return 0;
    if (a->type != ATTR_INTS) return refuse(g, n, "attribute '%s' must be a list of ints", name);
    if (want > 0 && a->n != want)
        return refuse(g, n, "attribute '%s' has %d values, expected %d (only 2-D is supported)",
                      name, a->n, want);
    for (int i = 0; i < a->n; i++)
        if (a->ints[i] < lo || a->ints[i] > hi)
            return refuse(g, n, "attribute '%s' value %lld is outside %lld..%lld", name,
                          (long long)a->ints[i], (long long)lo, (long long)hi);
    return 0;
}

/* An optional integer attribute within [lo, hi]. */
static int check_int_attr(graph *g, const graph_node *n, const char *name, int64_t lo, int64_t hi)
{
    const graph_attr *a = graph_attr_get(n, name);
    if (!a) return 0;
    if (a->type != ATTR_INT) return refuse(g, n, "attribute '%s' must be an int", name);
    if (a->i < lo || a->i > hi)
        return refuse(g, n, "attribute '%s' = %lld is not supported (allowed %lld..%lld)", name,
                      (long long)a->i, (long long)lo, (long long)hi);
    return 0;
}

static int check_float_attr(graph *g, const graph_node *n, const char *name)
{
    const graph_attr *a = graph_attr_get(n, name);
    if (a && a->type != ATTR_FLOAT) return refuse(g, n, "attribute '%s' must be a float", name);
    return 0;
}

static int check_auto_pad(graph *g, const graph_node *n)
{
    const graph_attr *a = graph_attr_get(n, "auto_pad");
    if (!a) return 0;
    if (a->type != ATTR_STRING || !a->s)
        return refuse(g, n, "attribute 'auto_pad' must be a string");
    static const char *const modes[] = {"NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"};
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++)
        if (strcmp(a->s, modes[i]) == 0) return 0;
    return refuse(g, n, "auto_pad '%s' is not supported", a->s);
}

/* A spatial input (X of Conv or a pool) must be NCHW when its rank is known. */
static int check_spatial_input(graph *g, const graph_node *n)
{
    const graph_tensor *x = ops_input(g, n, 0);
    if (x && x->rank >= 0 && x->rank != 4)
        return refuse(g, n, "input '%s' has rank %d; only 2-D (rank 4, NCHW) is supported", x->name,
                      x->rank);
    return 0;
}

static int check_conv(graph *g, const graph_node *n)
{
    int rc;
    if ((rc = check_spatial_input(g, n))) return rc;
    const graph_tensor *w = ops_input(g, n, 1);
    if (!w) return refuse(g, n, "the weight input is missing");
    if (w->rank >= 0 && w->rank != 4)
        return refuse(g, n, "weight '%s' has rank %d; only 2-D convolution is supported", w->name,
                      w->rank);
    if ((rc = check_ints_attr(g, n, "kernel_shape", 2, 1, OPS_MAX_SPATIAL))) return rc;
    if ((rc = check_ints_attr(g, n, "strides", 2, 1, OPS_MAX_SPATIAL))) return rc;
    if ((rc = check_ints_attr(g, n, "dilations", 2, 1, OPS_MAX_SPATIAL))) return rc;
    if ((rc = check_ints_attr(g, n, "pads", 4, 0, OPS_MAX_SPATIAL))) return rc;
    if ((rc = check_int_attr(g, n, "group", 1, INT32_MAX))) return rc;
    if ((rc = check_auto_pad(g, n))) return rc;
    const graph_attr *ks = graph_attr_get(n, "kernel_shape");
    if (ks && w->rank == 4 &&
        ((w->dims[2] >= 0 && w->dims[2] != ks->ints[0]) ||
         (w->dims[3] >= 0 && w->dims[3] != ks->ints[1])))
        return refuse(g, n, "kernel_shape does not match the weight's shape");
    return 0;
}

static int check_pool(graph *g, const graph_node *n)
{
    int rc;
    if ((rc = check_spatial_input(g, n))) return rc;
    if (!graph_attr_get(n, "kernel_shape"))
        return refuse(g, n, "attribute 'kernel_shape' is missing");
    if ((rc = check_ints_attr(g, n, "kernel_shape", 2, 1, OPS_MAX_SPATIAL))) return rc;
    if ((rc = check_ints_attr(g, n, "strides", 2, 1, OPS_MAX_SPATIAL))) return rc;
    if ((rc = check_ints_attr(g, n, "pads", 4, 0, OPS_MAX_SPATIAL))) return rc;
    if ((rc = check_auto_pad(g, n))) return rc;
    if ((rc = check_int_attr(g, n, "ceil_mode", 0, 1))) return rc;
    const graph_attr *d = graph_attr_get(n, "dilations");
    if (d) {
        if ((rc = check_ints_attr(g, n, "dilations", 2, 1, OPS_MAX_SPATIAL))) return rc;
        if (d->ints[0] != 1 || d->ints[1] != 1)
            return refuse(g, n, "pooling dilations other than 1 are not supported");
    }
    if (n->op == OP_MAXPOOL) return check_int_attr(g, n, "storage_order", 0, 0);
    return check_int_attr(g, n, "count_include_pad", 0, 1);
}

/* QuantizeLinear / DequantizeLinear: scale float, zero point uint8/int8 (or
 * int32 for a DequantizeLinear of int32 biases), per-tensor or per-axis. */
static int check_qdq(graph *g, const graph_node *n)
{
    int rc;
    const graph_tensor *x = ops_input(g, n, 0), *s = ops_input(g, n, 1), *zp = ops_input(g, n, 2);
    if (!x || !s) return refuse(g, n, "input and scale are required");
    if (s->dtype != TDM_DTYPE_FLOAT) return refuse(g, n, "scale must be float");
    if (s->rank > 1) return refuse(g, n, "scale must be a scalar or 1-D (per-axis)");
    if ((rc = check_int_attr(g, n, "axis", -GRAPH_MAX_RANK, GRAPH_MAX_RANK - 1))) return rc;
    if (zp) {
        bool ok = zp->dtype == TDM_DTYPE_UINT8 || zp->dtype == TDM_DTYPE_INT8 ||
                  (n->op == OP_DEQUANTIZELINEAR && zp->dtype == TDM_DTYPE_INT32);
        if (!ok)
            return refuse(g, n, "zero point dtype %s is not supported", tdm_dtype_name(zp->dtype));
        if (zp->rank != s->rank) return refuse(g, n, "scale and zero point differ in rank");
    }
    if (n->op == OP_QUANTIZELINEAR) {
        if (x->dtype != TDM_DTYPE_UNDEFINED && x->dtype != TDM_DTYPE_FLOAT)
            return refuse(g, n, "input must be float, not %s", tdm_dtype_name(x->dtype));
    } else if (x->dtype != TDM_DTYPE_UNDEFINED && x->dtype != TDM_DTYPE_UINT8 &&
               x->dtype != TDM_DTYPE_INT8 && x->dtype != TDM_DTYPE_INT32) {
        return refuse(g, n, "input dtype %s is not supported", tdm_dtype_name(x->dtype));
    }
    return 0;
}

/* True if t is a constant or computed only from constants and Shape outputs,
 * so that it disappears once shapes are known. The depth bound and the visit
 * budget keep a hostile graph from recursing deeply or exponentially. */
static bool is_shape_computable(const graph *g, int t, int depth, int *budget)
{
    if (t < 0 || t >= g->ntensors || depth > 32 || --*budget < 0) return false;
    const graph_tensor *tt = &g->tensors[t];
    if (tt->data) return true;
    if (tt->producer < 0 || tt->producer >= g->nnodes) return false;
    const graph_node *p = &g->nodes[tt->producer];
    if (p->op == OP_SHAPE || p->op == OP_CONSTANT) return true;
    if (p->op == OP_UNKNOWN) return false;
    for (int i = 0; i < p->ninputs; i++)
        if (p->inputs[i] >= 0 && !is_shape_computable(g, p->inputs[i], depth + 1, budget))
            return false;
    return true;
}

static bool supported_cast_target(int64_t to)
{
    return to == TDM_DTYPE_FLOAT || to == TDM_DTYPE_UINT8 || to == TDM_DTYPE_INT8 ||
           to == TDM_DTYPE_INT32 || to == TDM_DTYPE_INT64 || to == TDM_DTYPE_BOOL;
}

static int check_constant(graph *g, const graph_node *n)
{
    const graph_attr *a = NULL;
    static const char *const forms[] = {"value", "value_float", "value_floats", "value_int",
                                        "value_ints"};
    for (size_t i = 0; i < sizeof forms / sizeof forms[0] && !a; i++)
        a = graph_attr_get(n, forms[i]);
    if (!a) return refuse(g, n, "only 'value', 'value_float(s)' and 'value_int(s)' are supported");
    if (strcmp(a->name, "value") == 0 && (a->type != ATTR_TENSOR || a->tensor < 0 ||
                                          a->tensor >= g->ntensors || !g->tensors[a->tensor].data))
        return refuse(g, n, "attribute 'value' must hold a tensor");
    return 0;
}

static int check_global_pool(graph *g, const graph_node *n)
{
    return check_spatial_input(g, n);
}

static int check_batchnorm(graph *g, const graph_node *n)
{
    int rc;
    if ((rc = check_float_attr(g, n, "epsilon"))) return rc;
    if ((rc = check_int_attr(g, n, "spatial", 1, 1))) return rc;
    return check_int_attr(g, n, "training_mode", 0, 0);
}

static int check_gemm(graph *g, const graph_node *n)
{
    int rc;
    if ((rc = check_float_attr(g, n, "alpha"))) return rc;
    if ((rc = check_float_attr(g, n, "beta"))) return rc;
    if ((rc = check_int_attr(g, n, "transA", 0, 1))) return rc;
    return check_int_attr(g, n, "transB", 0, 1);
}

static int check_softmax(graph *g, const graph_node *n)
{
    return check_int_attr(g, n, "axis", -GRAPH_MAX_RANK, GRAPH_MAX_RANK - 1);
}

static int check_clip(graph *g, const graph_node *n)
{
    int rc;
    if (g->opset < 11 && n->ninputs > 1)
        return refuse(g, n, "min/max inputs need opset 11 (this model is opset %lld)",
                      (long long)g->opset);
    if ((rc = check_float_attr(g, n, "min"))) return rc;
    return check_float_attr(g, n, "max");
}

static int check_leakyrelu(graph *g, const graph_node *n)
{
    return check_float_attr(g, n, "alpha");
}

static int check_hardsigmoid(graph *g, const graph_node *n)
{
    int rc;
    if ((rc = check_float_attr(g, n, "alpha"))) return rc;
    return check_float_attr(g, n, "beta");
}

static int check_reshape(graph *g, const graph_node *n)
{
    return check_int_attr(g, n, "allowzero", 0, 0);
}

static int check_flatten(graph *g, const graph_node *n)
{
    return check_int_attr(g, n, "axis", -GRAPH_MAX_RANK, GRAPH_MAX_RANK);
}

/* Squeeze and Unsqueeze: axes as an attribute (before opset 13) or an input. */
static int check_squeeze(graph *g, const graph_node *n)
{
    if (n->ninputs > 1 && graph_attr_get(n, "axes"))
        return refuse(g, n, "axes given both as attribute and input");
    if (n->op == OP_UNSQUEEZE && n->ninputs < 2 && !graph_attr_get(n, "axes"))
        return refuse(g, n, "axes are missing");
    return check_ints_attr(g, n, "axes", 0, -GRAPH_MAX_RANK, GRAPH_MAX_RANK - 1);
}

static int check_transpose(graph *g, const graph_node *n)
{
    return check_ints_attr(g, n, "perm", 0, 0, GRAPH_MAX_RANK - 1);
}

static int check_concat(graph *g, const graph_node *n)
{
    if (!graph_attr_get(n, "axis")) return refuse(g, n, "attribute 'axis' is missing");
    return check_int_attr(g, n, "axis", -GRAPH_MAX_RANK, GRAPH_MAX_RANK - 1);
}

static int check_pad(graph *g, const graph_node *n)
{
    int rc;
    const char *mode = graph_attr_string(n, "mode", "constant");
    if (strcmp(mode, "constant") != 0) return refuse(g, n, "pad mode '%s' is not supported", mode);
    if (n->ninputs < 2 && !graph_attr_get(n, "pads")) return refuse(g, n, "pads are missing");
    if ((rc = check_float_attr(g, n, "value"))) return rc;
    return check_ints_attr(g, n, "pads", 0, -OPS_MAX_SPATIAL, OPS_MAX_SPATIAL);
}

static int check_shape(graph *g, const graph_node *n)
{
    int rc;
    if ((rc = check_int_attr(g, n, "start", INT64_MIN, INT64_MAX))) return rc;
    return check_int_attr(g, n, "end", INT64_MIN, INT64_MAX);
}

static int check_gather(graph *g, const graph_node *n)
{
    int rc;
    if ((rc = check_int_attr(g, n, "axis", -GRAPH_MAX_RANK, GRAPH_MAX_RANK - 1))) return rc;
    if (!is_shape_computable(g, n->inputs[0], 0, &(int){4096}))
        return refuse(g, n, "Gather is supported only on constant data or shape tensors");
    return 0;
}

static int check_slice(graph *g, const graph_node *n)
{
    if (n->ninputs == 1 && (!graph_attr_get(n, "starts") || !graph_attr_get(n, "ends")))
        return refuse(g, n, "starts/ends are missing");
    if (n->ninputs == 2) return refuse(g, n, "ends input is missing");
    return 0;
}

static int check_cast(graph *g, const graph_node *n)
{
    const graph_attr *to = graph_attr_get(n, "to");
    if (!to || to->type != ATTR_INT) return refuse(g, n, "attribute 'to' is missing");
    if (!supported_cast_target(to->i))
        return refuse(g, n, "cast to dtype %lld is not supported", (long long)to->i);
    return 0;
}

/* Inference only: a training_mode input must be a constant false. */
static int check_dropout(graph *g, const graph_node *n)
{
    const graph_tensor *tm = ops_input(g, n, 2);
    if (tm && (!tm->data || tm->nbytes < 1 || ((const uint8_t *)tm->data)[0]))
        return refuse(g, n, "training mode is not supported");
    return 0;
}

/* Each op's load-time check of its attributes (column 7 of ops.def), NULL
 * when its arity is all there is to check. */
static int (*const checks[OP_COUNT])(graph *g, const graph_node *n) = {
#define OP(op, name, min_in, max_in, min_out, max_out, check, infer, kernel) [op] = check,
#include "ops.def"
#undef OP
};

int ops_check(graph *g, int node)
{
    if (!g || node < 0 || node >= g->nnodes) return TDM_ERR_INVALID;
    const graph_node *n = &g->nodes[node];
    if (n->op <= OP_UNKNOWN || n->op >= OP_COUNT) return refuse(g, n, "operator is not supported");
    const op_arity *ar = &arity[n->op];
    if (n->ninputs < ar->min_in || (ar->max_in >= 0 && n->ninputs > ar->max_in))
        return refuse(g, n, "%d inputs given, %d..%d supported", n->ninputs, ar->min_in,
                      ar->max_in);
    if (n->noutputs < ar->min_out || n->noutputs > ar->max_out)
        return refuse(g, n, "%d outputs given, %d..%d supported", n->noutputs, ar->min_out,
                      ar->max_out);
    for (int i = 0; i < n->noutputs; i++)
        if (n->outputs[i] < 0 && i == 0) return refuse(g, n, "the first output is missing");
    /* Required inputs may not be omitted ("" in the file). Which are optional:
     * Conv/Gemm bias, Clip bounds, Q/DQ zero point, Pad's value, Slice's axes
     * and steps, Dropout's ratio and mode. */
    int required = ar->min_in;
    for (int i = 0; i < required; i++)
        if (n->inputs[i] < 0) return refuse(g, n, "required input %d is missing", i);
    return checks[n->op] ? checks[n->op](g, n) : 0;
}

/* Every op we run is a pure function of its inputs; only Dropout has a
 * training behaviour, and ops_check refuses that. */
bool ops_clip_bounds(const graph_node *n, float *lo, float *hi)
{
    *lo = graph_attr_float(n, "min", -INFINITY);
    *hi = graph_attr_float(n, "max", INFINITY);
    for (int k = 1; k < 3 && k < n->ninputs; k++)
        if (n->inputs[k] >= 0) return false;
    return true;
}

bool ops_foldable(graph_op op)
{
    return op > OP_UNKNOWN && op < OP_COUNT;
}
