/*
 * kern_ref: dispatch of the reference kernels, the element-wise ops, the
 * quantisation ops and the fused post-ops.
 *
 * ref_run checks what every kernel relies on (each tensor it is handed has a
 * known shape and data), calls the op's kernel from a table, then applies the
 * node's post-ops to output 0. The kernels themselves are split by family:
 * this file, kern_ref_conv.c (Conv, pools, matrix products, BatchNormalization,
 * Softmax) and kern_ref_data.c (copies, layout and shape ops, Cast).
 *
 * Rounding is always half to even (nearbyintf in the default FP rounding
 * mode), as ONNX's QuantizeLinear specifies, so the fused FakeQuant post-op
 * and a literal QuantizeLinear/DequantizeLinear pair give identical results.
 */
#include <math.h>
#include <string.h>

#include "kern_ref.h"
#include "ops.h"

/* ------------------------------------------------------------------------ */
/* Element-wise, one input                                                   */
/* ------------------------------------------------------------------------ */

static int check_float_same(const graph_node *n, const graph_tensor *x, const graph_tensor *y,
                            char *err, size_t errlen)
{
    if (x->dtype != TDM_DTYPE_FLOAT || y->dtype != TDM_DTYPE_FLOAT)
        return ref_fail(n, err, errlen, TDM_ERR_UNSUPPORTED, "only float tensors (got %s -> %s)",
                        tdm_dtype_name(x->dtype), tdm_dtype_name(y->dtype));
    if (graph_tensor_numel(x) != graph_tensor_numel(y))
        return ref_fail(n, err, errlen, TDM_ERR_INVALID, "output has %lld elements, input %lld",
                        (long long)graph_tensor_numel(y), (long long)graph_tensor_numel(x));
    return 0;
}

static float hardsigmoid(float x, float alpha, float beta)
{
    return fmaxf(0.0f, fminf(1.0f, alpha * x + beta));
}

/* Clip's bounds: the attributes (ops_clip_bounds), overridden by the bound
 * inputs that are still there (computed at run time, or a graph the
 * optimiser has not normalised yet); an absent bound leaves that side open. */
static int clip_bounds(const graph_node *n, const ref_args *a, float *lo, float *hi, char *err,
                       size_t errlen)
{
    ops_clip_bounds(n, lo, hi);
    for (int i = 1; i <= 2; i++) {
        const graph_tensor *t = ref_opt_input(a, i);
        if (!t || graph_tensor_numel(t) == 0) continue;
        float v;
        if (graph_tensor_numel(t) != 1 || !ref_read_f32(t, a->in_data[i], 0, &v))
            return ref_fail(n, err, errlen, TDM_ERR_INVALID,
                            "bound input %d must be a numeric scalar", i);
        if (i == 1)
            *lo = v;
        else
            *hi = v;
    }
    return 0;
}

static int ref_unary(const graph_node *n, const ref_args *a, char *err, size_t errlen)
{
    int rc = ref_need_inputs(n, a, 1, err, errlen);
    if (rc) return rc;
    rc = check_float_same(n, a->in[0], a->out[0], err, errlen);
    if (rc) return rc;
    const float *x = a->in_data[0];
    float *y = a->out_data[0];
    int64_t count = graph_tensor_numel(a->out[0]);
    float lo = 0, hi = 0, alpha = 0, beta = 0;

    switch (n->op) {
    case OP_CLIP:
        rc = clip_bounds(n, a, &lo, &hi, err, errlen);
        if (rc) return rc;
        break;
    case OP_LEAKYRELU:
        alpha = graph_attr_float(n, "alpha", 0.01f);
        break;
    case OP_HARDSIGMOID:
        alpha = graph_attr_float(n, "alpha", 0.2f);
        beta = graph_attr_float(n, "beta", 0.5f);
        break;
    default:
        break;
    }

    for (int64_t i = 0; i < count; i++) {
        float v = x[i];
        switch (n->op) {
        case OP_RELU:
            v = v > 0.0f ? v : 0.0f;
            break;
        case OP_CLIP:
            v = fminf(fmaxf(v, lo), hi);
            break;
        case OP_SIGMOID:
            v = 1.0f / (1.0f + expf(-v));
            break;
        case OP_TANH:
            v = tanhf(v);
            break;
        case OP_LEAKYRELU:
            v = v >= 0.0f ? v : alpha * v;
            break;
        case OP_HARDSIGMOID:
            v = hardsigmoid(v, alpha, beta);
            break;
        case OP_HARDSWISH:
            v = v * hardsigmoid(v, 1.0f / 6.0f, 0.5f);
            break;
        case OP_EXP:
            v = expf(v);
            break;
        case OP_SQRT:
            v = sqrtf(v);
            break;
        case OP_NEG:
            v = -v;
            break;
        case OP_ABS:
            v = fabsf(v);
            break;
        default:
            return ref_fail(n, err, errlen, TDM_ERR_UNSUPPORTED, "not an element-wise op");
        }
        y[i] = v;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Element-wise, two or more inputs, numpy broadcasting                      */
/* ------------------------------------------------------------------------ */

/* Strides (in elements) to read t as if it had out's shape: dimensions are
 * aligned from the right and a dimension of 1 (or a missing one) repeats. */
static bool bcast_strides(const graph_tensor *t, const graph_tensor *out, int64_t *st)
{
    if (t->rank > out->rank) return false;
    int shift = out->rank - t->rank;
    int64_t s = 1;
    for (int d = out->rank - 1; d >= 0; d--) {
        int td = d - shift;
        if (td < 0) {
            st[d] = 0;
            continue;
        }
        if (t->dims[td] == out->dims[d])
            st[d] = out->dims[d] == 1 ? 0 : s;
        else if (t->dims[td] == 1)
            st[d] = 0;
        else
            return false;
        s *= t->dims[td];
    }
    return true;
}

static float binary_f32(graph_op op, float x, float y)
{
    switch (op) {
    case OP_ADD:
        return x + y;
    case OP_SUB:
        return x - y;
    case OP_MUL:
        return x * y;
    case OP_DIV:
        return x / y;
    case OP_MIN:
        return fminf(x, y);
    default:
        return fmaxf(x, y);
    }
}

/* Integer arithmetic wraps (two's complement, as ONNX Runtime's does) rather
 * than invoking undefined behaviour; Div truncates toward zero. */
static bool binary_i64(graph_op op, int64_t x, int64_t y, int64_t *r)
{
    switch (op) {
    case OP_ADD:
        *r = (int64_t)((uint64_t)x + (uint64_t)y);
        return true;
    case OP_SUB:
        *r = (int64_t)((uint64_t)x - (uint64_t)y);
        return true;
    case OP_MUL:
        *r = (int64_t)((uint64_t)x * (uint64_t)y);
        return true;
    case OP_DIV:
        if (y == 0 || (x == INT64_MIN && y == -1)) return false;
        *r = x / y;
        return true;
    case OP_MIN:
        *r = x < y ? x : y;
        return true;
    default:
        *r = x > y ? x : y;
        return true;
    }
}

/* out = op(x, y) where x and y broadcast to out's shape. x may be the output
 * itself (a running Min/Max), which is safe because each element is read
 * before it is written at the same position. */
static int binary_pass(const graph_node *n, const graph_tensor *xt, const void *xd,
                       const graph_tensor *yt, const void *yd, const graph_tensor *ot, void *od,
                       char *err, size_t errlen)
{
    int64_t sx[GRAPH_MAX_RANK], sy[GRAPH_MAX_RANK];
    if (!bcast_strides(xt, ot, sx) || !bcast_strides(yt, ot, sy))
        return ref_fail(n, err, errlen, TDM_ERR_INVALID,
                        "input shapes do not broadcast to the output shape");
    if (xt->dtype != ot->dtype || yt->dtype != ot->dtype)
        return ref_fail(n, err, errlen, TDM_ERR_INVALID, "inputs and output differ in dtype");

    int rank = ot->rank;
    int64_t inner = rank ? ot->dims[rank - 1] : 1;
    int64_t total = graph_tensor_numel(ot);
    if (inner == 0 || total == 0) return 0;
    int64_t isx = rank ? sx[rank - 1] : 0, isy = rank ? sy[rank - 1] : 0;

    for (int64_t row = 0; row < total / inner; row++) {
        int64_t ox = 0, oy = 0, rem = row;
        for (int d = rank - 2; d >= 0; d--) {
            int64_t i = rem % ot->dims[d];
            rem /= ot->dims[d];
            ox += i * sx[d];
            oy += i * sy[d];
        }
        int64_t base = row * inner;
        switch (ot->dtype) {
        case TDM_DTYPE_FLOAT: {
            const float *x = (const float *)xd + ox, *y = (const float *)yd + oy;
            float *o = (float *)od + base;
            for (int64_t j = 0; j < inner; j++)
                o[j] = binary_f32(n->op, x[j * isx], y[j * isy]);
            break;
        }
        case TDM_DTYPE_INT64:
        case TDM_DTYPE_INT32:
            for (int64_t j = 0; j < inner; j++) {
                int64_t x, y, r;
                ref_read_i64(xt, xd, ox + j * isx, &x);
                ref_read_i64(yt, yd, oy + j * isy, &y);
                if (!binary_i64(n->op, x, y, &r))
                    return ref_fail(n, err, errlen, TDM_ERR_INVALID, "integer division by zero");
                if (ot->dtype == TDM_DTYPE_INT64)
                    ((int64_t *)od)[base + j] = r;
                else
                    ((int32_t *)od)[base + j] = (int32_t)(uint32_t)(uint64_t)r;
            }
            break;
        default:
            return ref_fail(n, err, errlen, TDM_ERR_UNSUPPORTED, "dtype %s not supported",
                            tdm_dtype_name(ot->dtype));
        }
    }
    return 0;
}

static int ref_binary(const graph_node *n, const ref_args *a, char *err, size_t errlen)
{
    bool variadic = n->op == OP_MIN || n->op == OP_MAX;
    if (a->nin < 1 || (!variadic && a->nin != 2))
        return ref_fail(n, err, errlen, TDM_ERR_INVALID, "takes %s inputs, got %d",
                        variadic ? "1 or more" : "2", a->nin);
    int rc = ref_need_inputs(n, a, a->nin, err, errlen);
    if (rc) return rc;
    const graph_tensor *ot = a->out[0];

    /* Min/Max of one input is the input itself: op(x, x) == x. */
    int second = a->nin > 1 ? 1 : 0;
    rc = binary_pass(n, a->in[0], a->in_data[0], a->in[second], a->in_data[second], ot,
                     a->out_data[0], err, errlen);
    for (int i = 2; !rc && i < a->nin; i++)
        rc = binary_pass(n, ot, a->out_data[0], a->in[i], a->in_data[i], ot, a->out_data[0], err,
                         errlen);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Quantisation                                                              */
/* ------------------------------------------------------------------------ */

static bool quant_range(tdm_dtype t, float *qmin, float *qmax)
{
    switch (t) {
    case TDM_DTYPE_UINT8:
        *qmin = 0.0f;
        *qmax = 255.0f;
        return true;
    case TDM_DTYPE_INT8:
        *qmin = -128.0f;
        *qmax = 127.0f;
        return true;
    default:
        return false;
    }
}

/* Per-tensor when the scale has one element, else per-axis along "axis"
 * (default 1): element i then uses channel (i / inner) % dims[axis]. Sets
 * *inner = 0 for per-tensor. */
static int quant_layout(const graph_node *n, const graph_tensor *x, const graph_tensor *scale,
                        const graph_tensor *zp, int64_t *inner, int64_t *channels, char *err,
                        size_t errlen)
{
    int64_t ns = graph_tensor_numel(scale);
    if (scale->dtype != TDM_DTYPE_FLOAT)
        return ref_fail(n, err, errlen, TDM_ERR_UNSUPPORTED, "scale must be float, is %s",
                        tdm_dtype_name(scale->dtype));
    if (zp && graph_tensor_numel(zp) != ns)
        return ref_fail(n, err, errlen, TDM_ERR_INVALID, "zero point has %lld elements, scale %lld",
                        (long long)graph_tensor_numel(zp), (long long)ns);
    *channels = ns;
    *inner = 0;
    if (ns == 1) return 0;
    int axis;
    if (scale->rank != 1 || !ref_axis(graph_attr_int(n, "axis", 1), x->rank, &axis))
        return ref_fail(n, err, errlen, TDM_ERR_INVALID, "bad axis for a per-axis scale");
    if (x->dims[axis] != ns)
        return ref_fail(n, err, errlen, TDM_ERR_INVALID,
                        "scale has %lld elements, axis %d has %lld", (long long)ns, axis,
                        (long long)x->dims[axis]);
    int64_t in = 1;
    for (int d = axis + 1; d < x->rank; d++)
        in *= x->dims[d];
    *inner = in;
    return 0;
}

static int64_t quant_channel(int64_t i, int64_t inner, int64_t channels)
{
    return inner ? (i / inner) % channels : 0;
}

static int ref_quantize(const graph_node *n, const ref_args *a, char *err, size_t errlen)
{
    int rc = ref_need_inputs(n, a, 2, err, errlen);
    if (rc) return rc;
    const graph_tensor *x = a->in[0], *scale = a->in[1], *zp = ref_opt_input(a, 2);
    const graph_tensor *y = a->out[0];
    float qmin, qmax;
    if (x->dtype != TDM_DTYPE_FLOAT || !quant_range(y->dtype, &qmin, &qmax) ||
        (zp && zp->dtype != y->dtype))
        return ref_fail(n, err, errlen, TDM_ERR_UNSUPPORTED,
                        "quantises float to uint8 or int8 only (got %s -> %s)",
                        tdm_dtype_name(x->dtype), tdm_dtype_name(y->dtype));
    if (graph_tensor_numel(x) != graph_tensor_numel(y))
        return ref_fail(n, err, errlen, TDM_ERR_INVALID, "input and output sizes differ");
    int64_t inner, channels;
    rc = quant_layout(n, x, scale, zp, &inner, &channels, err, errlen);
    if (rc) return rc;

    const float *xd = a->in_data[0], *sd = a->in_data[1];
    int64_t count = graph_tensor_numel(x);
    for (int64_t i = 0; i < count; i++) {
        int64_t c = quant_channel(i, inner, channels);
        float z = 0.0f;
        if (zp) ref_read_f32(zp, a->in_data[2], c, &z);
        float q = fminf(fmaxf(nearbyintf(xd[i] / sd[c]) + z, qmin), qmax);
        if (y->dtype == TDM_DTYPE_UINT8)
            ((uint8_t *)a->out_data[0])[i] = (uint8_t)q;
        else
            ((int8_t *)a->out_data[0])[i] = (int8_t)q;
    }
    return 0;
}

static int ref_dequantize(const graph_node *n, const ref_args *a, char *err, size_t errlen)
{
    int rc = ref_need_inputs(n, a, 2, err, errlen);
    if (rc) return rc;
    const graph_tensor *x = a->in[0], *scale = a->in[1], *zp = ref_opt_input(a, 2);
    const graph_tensor *y = a->out[0];
    bool int_in =
        x->dtype == TDM_DTYPE_UINT8 || x->dtype == TDM_DTYPE_INT8 || x->dtype == TDM_DTYPE_INT32;
    if (!int_in || y->dtype != TDM_DTYPE_FLOAT || (zp && zp->dtype != x->dtype))
        return ref_fail(n, err, errlen, TDM_ERR_UNSUPPORTED,
                        "dequantises uint8, int8 or int32 to float only (got %s -> %s)",
                        tdm_dtype_name(x->dtype), tdm_dtype_name(y->dtype));
    if (graph_tensor_numel(x) != graph_tensor_numel(y))
        return ref_fail(n, err, errlen, TDM_ERR_INVALID, "input and output sizes differ");
    int64_t inner, channels;
    rc = quant_layout(n, x, scale, zp, &inner, &channels, err, errlen);
    if (rc) return rc;

    const float *sd = a->in_data[1];
    float *yd = a->out_data[0];
    int64_t count = graph_tensor_numel(x);
    for (int64_t i = 0; i < count; i++) {
        int64_t c = quant_channel(i, inner, channels), v, z = 0;
        ref_read_i64(x, a->in_data[0], i, &v);
        if (zp) ref_read_i64(zp, a->in_data[2], c, &z);
        yd[i] = (float)(v - z) * sd[c];
    }
    return 0;
}

static float fakequant(float x, float scale, float zp, float qmin, float qmax)
{
    return (fminf(fmaxf(nearbyintf(x / scale) + zp, qmin), qmax) - zp) * scale;
}

static int ref_fakequant(const graph_node *n, const ref_args *a, char *err, size_t errlen)
{
    int rc = ref_need_inputs(n, a, 1, err, errlen);
    if (rc) return rc;
    rc = check_float_same(n, a->in[0], a->out[0], err, errlen);
    if (rc) return rc;
    if (!graph_attr_get(n, "scale") || !graph_attr_get(n, "qmin") || !graph_attr_get(n, "qmax"))
        return ref_fail(n, err, errlen, TDM_ERR_INVALID, "needs attributes scale, qmin, qmax");
    float scale = graph_attr_float(n, "scale", 1.0f), zp = graph_attr_float(n, "zero_point", 0);
    float qmin = graph_attr_float(n, "qmin", 0), qmax = graph_attr_float(n, "qmax", 0);
    if (!(scale > 0.0f) || !(qmin <= qmax))
        return ref_fail(n, err, errlen, TDM_ERR_INVALID, "bad scale %g or range [%g, %g]",
                        (double)scale, (double)qmin, (double)qmax);
    const float *x = a->in_data[0];
    float *y = a->out_data[0];
    int64_t count = graph_tensor_numel(a->out[0]);
    for (int64_t i = 0; i < count; i++)
        y[i] = fakequant(x[i], scale, zp, qmin, qmax);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Post-ops and dispatch                                                     */
/* ------------------------------------------------------------------------ */

static int apply_post(const graph_node *n, const ref_args *a, char *err, size_t errlen)
{
    if (n->npost == 0) return 0;
    const graph_tensor *ot = a->out[0];
    if (ot->dtype != TDM_DTYPE_FLOAT)
        return ref_fail(n, err, errlen, TDM_ERR_UNSUPPORTED, "post-ops need a float output");
    if (n->npost < 0 || n->npost > GRAPH_MAX_POST)
        return ref_fail(n, err, errlen, TDM_ERR_INVALID, "bad post-op count %d", n->npost);
    float *y = a->out_data[0];
    int64_t count = graph_tensor_numel(ot);

    for (int p = 0; p < n->npost; p++) {
        const graph_post *po = &n->post[p];
        switch (po->kind) {
        case POST_RELU:
            for (int64_t i = 0; i < count; i++)
                y[i] = y[i] > 0.0f ? y[i] : 0.0f;
            break;
        case POST_CLIP:
            for (int64_t i = 0; i < count; i++)
                y[i] = fminf(fmaxf(y[i], po->a), po->b);
            break;
        case POST_FAKEQUANT:
            if (!(po->a > 0.0f))
                return ref_fail(n, err, errlen, TDM_ERR_INVALID, "post-op %d: scale %g", p,
                                (double)po->a);
            for (int64_t i = 0; i < count; i++)
                y[i] = fakequant(y[i], po->a, po->b, po->c, po->d);
            break;
        case POST_SUM: {
            const graph_tensor *t = ref_opt_input(a, po->input);
            if (po->input < 0 || !t || t->dtype != TDM_DTYPE_FLOAT || graph_tensor_numel(t) != count)
                return ref_fail(n, err, errlen, TDM_ERR_INVALID,
                                "post-op %d: addend input %d is not a float tensor of %lld "
                                "elements",
                                p, po->input, (long long)count);
            const float *s = a->in_data[po->input];
            for (int64_t i = 0; i < count; i++)
                y[i] += s[i];
            break;
        }
        case POST_MIN_CHANNEL:
        case POST_MAX_CHANNEL: {
            const graph_tensor *t = ref_opt_input(a, po->input);
            int64_t ch = ot->rank >= 2 ? ot->dims[1] : 0;
            if (po->input < 0 || !t || t->dtype != TDM_DTYPE_FLOAT || ch < 1 ||
                graph_tensor_numel(t) != ch)
                return ref_fail(n, err, errlen, TDM_ERR_INVALID,
                                "post-op %d: input %d is not a float tensor of one value per "
                                "channel",
                                p, po->input);
            const float *v = a->in_data[po->input];
            int64_t inner = count ? count / (ot->dims[0] * ch) : 1;
            bool is_min = po->kind == POST_MIN_CHANNEL;
            for (int64_t i = 0; i < count; i++) {
                float c = v[(i / inner) % ch];
                y[i] = is_min ? fminf(y[i], c) : fmaxf(y[i], c);
            }
            break;
        }
        default:
            return ref_fail(n, err, errlen, TDM_ERR_UNSUPPORTED, "unknown post-op kind %d",
                            (int)po->kind);
        }
    }
    return 0;
}

/* Each op's kernel, from column 9 of ops.def. */
static const ref_kernel kernels[OP_COUNT] = {
#define OP(op, name, min_in, max_in, min_out, max_out, check, infer, kernel) [op] = kernel,
#include "ops.def"
#undef OP
};

/* Every tensor handed over must have a known shape and, unless empty, data:
 * the kernels rely on it and never check again. */
static int check_tensor(const graph_node *n, const graph_tensor *t, const void *data,
                        const char *what, int i, char *err, size_t errlen)
{
    if (t->rank < 0 || t->rank > GRAPH_MAX_RANK || graph_tensor_numel(t) < 0)
        return ref_fail(n, err, errlen, TDM_ERR_INVALID, "%s %d has an unknown shape", what, i);
    if (tdm_dtype_size(t->dtype) == 0)
        return ref_fail(n, err, errlen, TDM_ERR_UNSUPPORTED, "%s %d has dtype %d", what, i,
                        (int)t->dtype);
    if (!data && graph_tensor_numel(t) != 0)
        return ref_fail(n, err, errlen, TDM_ERR_INVALID, "%s %d has no data", what, i);
    return 0;
}

int ref_run(const graph_node *n, const ref_args *a, char *err, size_t errlen)
{
    int op = (int)n->op;
    if (op <= OP_UNKNOWN || op >= OP_COUNT || !kernels[op])
        return ref_fail(n, err, errlen, TDM_ERR_UNSUPPORTED, "no reference kernel for this op");
    if (a->nin < 0 || a->nout < 1 || !a->out[0])
        return ref_fail(n, err, errlen, TDM_ERR_INVALID, "needs an output");
    for (int i = 0; i < a->nin; i++) {
        if (!a->in[i]) continue;
        int rc = check_tensor(n, a->in[i], a->in_data[i], "input", i, err, errlen);
        if (rc) return rc;
    }
    for (int i = 0; i < a->nout; i++) {
        if (!a->out[i]) continue;
        int rc = check_tensor(n, a->out[i], a->out_data[i], "output", i, err, errlen);
        if (rc) return rc;
    }
    int rc = kernels[op](n, a, err, errlen);
    if (rc) return rc;
    return apply_post(n, a, err, errlen);
}
