/*
 * kern_ref_data: reference kernels that move data rather than compute it —
 * the shape-only copies (Reshape, Flatten, Squeeze, Unsqueeze, Identity,
 * Dropout), Transpose, Concat, Pad, Shape, Gather, Slice, and Cast.
 *
 * Most work for any dtype: they move elements of tdm_dtype_size() bytes and
 * never look inside. The output tensor's shape is always given (inferred
 * before the run); the kernels recompute it from their inputs and attributes
 * and refuse a mismatch, since writing by a wrong shape would overrun buffers.
 */
#include <string.h>

#include "kern_ref_impl.h"

/* Row-major strides of dims, in elements. */
static void strides_of(const graph_tensor *t, int64_t *st)
{
    int64_t s = 1;
    for (int d = t->rank - 1; d >= 0; d--) {
        st[d] = s;
        s *= t->dims[d];
    }
}

/* Advances a row-major multi-index over dims by one. */
static void index_next(int rank, const int64_t *dims, int64_t *idx)
{
    for (int d = rank - 1; d >= 0; d--) {
        if (++idx[d] < dims[d]) return;
        idx[d] = 0;
    }
}

static int same_dtype(const graph_node *n, const graph_tensor *x, const graph_tensor *y, char *err,
                      size_t errlen)
{
    if (x->dtype != y->dtype)
        return ref_fail(n, err, errlen, TDM_ERR_INVALID, "input is %s, output %s",
                        tdm_dtype_name(x->dtype), tdm_dtype_name(y->dtype));
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Copies                                                                    */
/* ------------------------------------------------------------------------ */

int ref_copy(const graph_node *n, const ref_args *a, char *err, size_t errlen)
{
    int rc = ref_need_inputs(n, a, 1, err, errlen);
    if (rc) return rc;
    const graph_tensor *x = a->in[0], *y = a->out[0];
    rc = same_dtype(n, x, y, err, errlen);
    if (rc) return rc;
    if (graph_tensor_numel(x) != graph_tensor_numel(y))
        return ref_fail(n, err, errlen, TDM_ERR_INVALID, "output has %lld elements, input %lld",
                        (long long)graph_tensor_numel(y), (long long)graph_tensor_numel(x));
    size_t bytes = (size_t)graph_tensor_numel(y) * tdm_dtype_size(y->dtype);
    if (bytes && a->out_data[0] != a->in_data[0]) memmove(a->out_data[0], a->in_data[0], bytes);

    /* Dropout at inference keeps everything: its optional mask is all true. */
    if (n->op == OP_DROPOUT && a->nout > 1 && a->out[1]) {
        const graph_tensor *m = a->out[1];
        if (m->dtype != TDM_DTYPE_BOOL || graph_tensor_numel(m) != graph_tensor_numel(y))
            return ref_fail(n, err, errlen, TDM_ERR_INVALID, "mask must be bool like the input");
        memset(a->out_data[1], 1, (size_t)graph_tensor_numel(m));
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Transpose, Concat                                                         */
/* ------------------------------------------------------------------------ */

int ref_transpose(const graph_node *n, const ref_args *a, char *err, size_t errlen)
{
    int rc = ref_need_inputs(n, a, 1, err, errlen);
    if (rc) return rc;
    const graph_tensor *x = a->in[0], *y = a->out[0];
    rc = same_dtype(n, x, y, err, errlen);
    if (rc) return rc;
    int rank = x->rank;
    int64_t perm[GRAPH_MAX_RANK];
    const graph_attr *pa = graph_attr_get(n, "perm");
    if (pa && (pa->type != ATTR_INTS || pa->n != rank))
        return ref_fail(n, err, errlen, TDM_ERR_INVALID, "perm needs %d values", rank);
    bool seen[GRAPH_MAX_RANK] = {false};
    for (int d = 0; d < rank; d++) {
        perm[d] = pa ? pa->ints[d] : rank - 1 - d;
        if (perm[d] < 0 || perm[d] >= rank || seen[perm[d]])
            return ref_fail(n, err, errlen, TDM_ERR_INVALID, "perm is not a permutation");
        seen[perm[d]] = true;
    }
    if (y->rank != rank)
        return ref_fail(n, err, errlen, TDM_ERR_INVALID, "output rank %d, input %d", y->rank, rank);
    for (int d = 0; d < rank; d++)
        if (y->dims[d] != x->dims[perm[d]])
            return ref_fail(n, err, errlen, TDM_ERR_INVALID, "output dim %d is not input dim %lld",
                            d, (long long)perm[d]);

    int64_t xs[GRAPH_MAX_RANK], st[GRAPH_MAX_RANK], idx[GRAPH_MAX_RANK] = {0};
    strides_of(x, xs);
    for (int d = 0; d < rank; d++)
        st[d] = xs[perm[d]];
    size_t es = tdm_dtype_size(x->dtype);
    const char *src = a->in_data[0];
    char *dst = a->out_data[0];
    int64_t count = graph_tensor_numel(y);
    for (int64_t i = 0; i < count; i++) {
        int64_t off = 0;
        for (int d = 0; d < rank; d++)
            off += idx[d] * st[d];
        memcpy(dst + (size_t)i * es, src + (size_t)off * es, es);
        index_next(rank, y->dims, idx);
    }
    return 0;
}

int ref_concat(const graph_node *n, const ref_args *a, char *err, size_t errlen)
{
    int rc = ref_need_inputs(n, a, a->nin, err, errlen);
    if (rc) return rc;
    const graph_tensor *y = a->out[0];
    int axis;
    if (a->nin < 1 || !ref_axis(graph_attr_int(n, "axis", 0), y->rank, &axis))
        return ref_fail(n, err, errlen, TDM_ERR_INVALID, "needs inputs and an axis within rank %d",
                        y->rank);
    int64_t total = 0;
    for (int i = 0; i < a->nin; i++) {
        const graph_tensor *x = a->in[i];
        rc = same_dtype(n, x, y, err, errlen);
        if (rc) return rc;
        bool ok = x->rank == y->rank;
        for (int d = 0; ok && d < y->rank; d++)
            ok = d == axis || x->dims[d] == y->dims[d];
        if (!ok)
            return ref_fail(n, err, errlen, TDM_ERR_INVALID,
                            "input %d differs from the output outside axis %d", i, axis);
        total += x->dims[axis];
    }
    if (total != y->dims[axis])
        return ref_fail(n, err, errlen, TDM_ERR_INVALID, "inputs sum to %lld along axis, not %lld",
                        (long long)total, (long long)y->dims[axis]);

    int64_t outer = 1, inner = tdm_dtype_size(y->dtype);
    for (int d = 0; d < axis; d++)
        outer *= y->dims[d];
    for (int d = axis + 1; d < y->rank; d++)
        inner *= y->dims[d];
    char *dst = a->out_data[0];
    for (int64_t o = 0; o < outer; o++) {
        for (int i = 0; i < a->nin; i++) {
            size_t chunk = (size_t)(a->in[i]->dims[axis] * inner);
            if (!chunk) continue;
            memcpy(dst, (const char *)a->in_data[i] + (size_t)o * chunk, chunk);
            dst += chunk;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Pad                                                                       */
/* ------------------------------------------------------------------------ */

/* Integer results wrap to the target width (two's complement), as C casts in
 * ONNX Runtime do; floats go to integers by truncation toward zero, with NaN
 * as 0 and out-of-range values saturated to int64 first so nothing is
 * undefined behaviour. */
static void store_int(tdm_dtype t, int64_t v, void *dst)
{
    switch (t) {
    case TDM_DTYPE_UINT8:
        *(uint8_t *)dst = (uint8_t)(uint64_t)v;
        break;
    case TDM_DTYPE_INT8:
        *(int8_t *)dst = (int8_t)(uint8_t)(uint64_t)v;
        break;
    case TDM_DTYPE_INT32:
        *(int32_t *)dst = (int32_t)(uint32_t)(uint64_t)v;
        break;
    case TDM_DTYPE_INT64:
        *(int64_t *)dst = v;
        break;
    case TDM_DTYPE_BOOL:
        *(uint8_t *)dst = v != 0;
        break;
    default:
        break;
    }
}

static int64_t float_to_i64(float f)
{
    if (f != f) return 0;
    if (f >= 9.2233720e18f) return INT64_MAX;
    if (f <= -9.2233720e18f) return INT64_MIN;
    return (int64_t)f;
}

/* Writes the float v converted to dtype t into dst. */
static void store_float(tdm_dtype t, float v, void *dst)
{
    if (t == TDM_DTYPE_FLOAT)
        *(float *)dst = v;
    else if (t == TDM_DTYPE_BOOL)
        *(uint8_t *)dst = v != 0.0f;
    else
        store_int(t, float_to_i64(v), dst);
}

/* Maps an output coordinate of a padded dim to the input coordinate it reads,
 * or -1 for a constant-padded position. */
static int64_t pad_source(int mode, int64_t o, int64_t pb, int64_t in)
{
    int64_t i = o - pb;
    if (i >= 0 && i < in) return i;
    if (mode == 0 || in == 0) return -1;
    if (mode == 1) return i < 0 ? 0 : in - 1;
    /* reflect, excluding the edge: period 2 * (in - 1) */
    if (in == 1) return 0;
    int64_t p = 2 * (in - 1);
    i %= p;
    if (i < 0) i += p;
    return i < in ? i : p - i;
}

int ref_pad(const graph_node *n, const ref_args *a, char *err, size_t errlen)
{
    int rc = ref_need_inputs(n, a, 1, err, errlen);
    if (rc) return rc;
    const graph_tensor *x = a->in[0], *y = a->out[0];
    const graph_tensor *pt = ref_opt_input(a, 1), *vt = ref_opt_input(a, 2);
    rc = same_dtype(n, x, y, err, errlen);
    if (rc) return rc;
    int rank = x->rank;
    if (ref_opt_input(a, 3))
        return ref_fail(n, err, errlen, TDM_ERR_UNSUPPORTED, "the axes input (opset 18)");
    const char *ms = graph_attr_string(n, "mode", "constant");
    int mode = strcmp(ms, "constant") == 0  ? 0
               : strcmp(ms, "edge") == 0    ? 1
               : strcmp(ms, "reflect") == 0 ? 2
                                            : -1;
    if (mode < 0) return ref_fail(n, err, errlen, TDM_ERR_UNSUPPORTED, "mode %s", ms);

    int64_t pads[2 * GRAPH_MAX_RANK];
    if (pt) {
        if (graph_tensor_numel(pt) != 2 * rank)
            return ref_fail(n, err, errlen, TDM_ERR_INVALID, "pads input needs %d values",
                            2 * rank);
        for (int i = 0; i < 2 * rank; i++)
            if (!ref_read_i64(pt, a->in_data[1], i, &pads[i]) || pt->dtype == TDM_DTYPE_FLOAT)
                return ref_fail(n, err, errlen, TDM_ERR_INVALID, "pads input must be integers");
    } else {
        const graph_attr *pa = graph_attr_get(n, "pads");
        if (!pa || pa->type != ATTR_INTS || pa->n != 2 * rank)
            return ref_fail(n, err, errlen, TDM_ERR_INVALID, "needs %d pads", 2 * rank);
        for (int i = 0; i < 2 * rank; i++)
            pads[i] = pa->ints[i];
    }
    /* The fill value: input 2 in the data's dtype, else attribute "value". */
    size_t es = tdm_dtype_size(x->dtype);
    unsigned char fill[8];
    if (vt && graph_tensor_numel(vt) > 0) {
        if (graph_tensor_numel(vt) != 1 || vt->dtype != x->dtype)
            return ref_fail(n, err, errlen, TDM_ERR_INVALID, "constant_value must be one %s",
                            tdm_dtype_name(x->dtype));
        memcpy(fill, a->in_data[2], es);
    } else {
        store_float(x->dtype, graph_attr_float(n, "value", 0.0f), fill);
    }
    if (y->rank != rank)
        return ref_fail(n, err, errlen, TDM_ERR_INVALID, "output rank %d, input %d", y->rank, rank);
    for (int d = 0; d < rank; d++) {
        int64_t want;
        if (__builtin_add_overflow(x->dims[d], pads[d], &want) ||
            __builtin_add_overflow(want, pads[d + rank], &want) || y->dims[d] != want)
            return ref_fail(n, err, errlen, TDM_ERR_INVALID,
                            "dim %d: output %lld is not input %lld padded by %lld,%lld", d,
                            (long long)y->dims[d], (long long)x->dims[d], (long long)pads[d],
                            (long long)pads[d + rank]);
        if (mode && x->dims[d] == 0 && y->dims[d] > 0)
            return ref_fail(n, err, errlen, TDM_ERR_INVALID, "cannot %s-pad an empty dim", ms);
    }

    int64_t xs[GRAPH_MAX_RANK], idx[GRAPH_MAX_RANK] = {0};
    strides_of(x, xs);
    const char *src = a->in_data[0];
    char *dst = a->out_data[0];
    int64_t count = graph_tensor_numel(y);
    for (int64_t i = 0; i < count; i++) {
        int64_t off = 0;
        bool inside = true;
        for (int d = 0; inside && d < rank; d++) {
            int64_t s = pad_source(mode, idx[d], pads[d], x->dims[d]);
            inside = s >= 0;
            off += s * xs[d];
        }
        memcpy(dst + (size_t)i * es, inside ? src + (size_t)off * es : (const char *)fill, es);
        index_next(rank, y->dims, idx);
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Shape, Gather, Slice                                                      */
/* ------------------------------------------------------------------------ */

int ref_shape(const graph_node *n, const ref_args *a, char *err, size_t errlen)
{
    int rc = ref_need_inputs(n, a, 1, err, errlen);
    if (rc) return rc;
    const graph_tensor *x = a->in[0], *y = a->out[0];
    int64_t r = x->rank;
    int64_t start = graph_attr_int(n, "start", 0), end = graph_attr_int(n, "end", r);
    if (start < 0) start += r;
    if (end < 0) end += r;
    start = start < 0 ? 0 : start > r ? r : start;
    end = end < 0 ? 0 : end > r ? r : end;
    int64_t len = end > start ? end - start : 0;
    if (y->dtype != TDM_DTYPE_INT64 || graph_tensor_numel(y) != len)
        return ref_fail(n, err, errlen, TDM_ERR_INVALID, "output must be %lld int64 values",
                        (long long)len);
    int64_t *out = a->out_data[0];
    for (int64_t i = 0; i < len; i++)
        out[i] = x->dims[start + i];
    return 0;
}

int ref_gather(const graph_node *n, const ref_args *a, char *err, size_t errlen)
{
    int rc = ref_need_inputs(n, a, 2, err, errlen);
    if (rc) return rc;
    const graph_tensor *x = a->in[0], *it = a->in[1], *y = a->out[0];
    rc = same_dtype(n, x, y, err, errlen);
    if (rc) return rc;
    int axis;
    if (!ref_axis(graph_attr_int(n, "axis", 0), x->rank, &axis))
        return ref_fail(n, err, errlen, TDM_ERR_INVALID, "axis out of range for rank %d", x->rank);
    if (it->dtype != TDM_DTYPE_INT64 && it->dtype != TDM_DTYPE_INT32)
        return ref_fail(n, err, errlen, TDM_ERR_UNSUPPORTED, "indices must be int32 or int64");
    int64_t outer = 1, inner = 1, dim = x->dims[axis], nidx = graph_tensor_numel(it);
    for (int d = 0; d < axis; d++)
        outer *= x->dims[d];
    for (int d = axis + 1; d < x->rank; d++)
        inner *= x->dims[d];
    if (y->rank != x->rank - 1 + it->rank || graph_tensor_numel(y) != outer * nidx * inner)
        return ref_fail(n, err, errlen, TDM_ERR_INVALID, "output shape does not fit");

    size_t chunk = (size_t)inner * tdm_dtype_size(x->dtype);
    const char *src = a->in_data[0];
    char *dst = a->out_data[0];
    for (int64_t o = 0; o < outer; o++) {
        for (int64_t j = 0; j < nidx; j++) {
            int64_t k;
            ref_read_i64(it, a->in_data[1], j, &k);
            if (k < -dim || k >= dim)
                return ref_fail(n, err, errlen, TDM_ERR_INVALID,
                                "index %lld out of range for a dim of %lld", (long long)k,
                                (long long)dim);
            if (k < 0) k += dim;
            memcpy(dst, src + (size_t)(o * dim + k) * chunk, chunk);
            dst += chunk;
        }
    }
    return 0;
}

/* Reads element i of starts/ends/axes/steps, whichever form (inputs since
 * opset 10, attributes before) the node uses. */
typedef struct slice_list {
    const graph_tensor *t;
    const void *data;
    const graph_attr *attr;
    int64_t len;
} slice_list;

static bool slice_list_get(const graph_node *n, const ref_args *a, int input, const char *name,
                           slice_list *l)
{
    const graph_tensor *t = ref_opt_input(a, input);
    l->t = NULL;
    l->attr = NULL;
    l->len = -1;
    if (t) {
        if (t->dtype != TDM_DTYPE_INT64 && t->dtype != TDM_DTYPE_INT32) return false;
        l->t = t;
        l->data = a->in_data[input];
        l->len = graph_tensor_numel(t);
    } else if ((l->attr = graph_attr_get(n, name))) {
        if (l->attr->type != ATTR_INTS) return false;
        l->len = l->attr->n;
    }
    return true;
}

static int64_t slice_list_at(const slice_list *l, int64_t i)
{
    int64_t v = 0;
    if (l->t)
        ref_read_i64(l->t, l->data, i, &v);
    else
        v = l->attr->ints[i];
    return v;
}

static int64_t clamp64(int64_t v, int64_t lo, int64_t hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

int ref_slice(const graph_node *n, const ref_args *a, char *err, size_t errlen)
{
    int rc = ref_need_inputs(n, a, 1, err, errlen);
    if (rc) return rc;
    const graph_tensor *x = a->in[0], *y = a->out[0];
    rc = same_dtype(n, x, y, err, errlen);
    if (rc) return rc;
    slice_list starts, ends, axes, steps;
    if (!slice_list_get(n, a, 1, "starts", &starts) || !slice_list_get(n, a, 2, "ends", &ends) ||
        !slice_list_get(n, a, 3, "axes", &axes) || !slice_list_get(n, a, 4, "steps", &steps))
        return ref_fail(n, err, errlen, TDM_ERR_INVALID,
                        "starts/ends/axes/steps must be int32 or int64");
    int64_t len = starts.len;
    if (len < 0 || ends.len != len || (axes.len >= 0 && axes.len != len) ||
        (steps.len >= 0 && steps.len != len))
        return ref_fail(n, err, errlen, TDM_ERR_INVALID,
                        "starts, ends, axes and steps differ in length");

    int rank = x->rank;
    int64_t start[GRAPH_MAX_RANK], step[GRAPH_MAX_RANK], cnt[GRAPH_MAX_RANK];
    bool seen[GRAPH_MAX_RANK] = {false};
    for (int d = 0; d < rank; d++) {
        start[d] = 0;
        step[d] = 1;
        cnt[d] = x->dims[d];
    }
    for (int64_t i = 0; i < len; i++) {
        int ax;
        int64_t axv = axes.len >= 0 ? slice_list_at(&axes, i) : i;
        if (!ref_axis(axv, rank, &ax) || seen[ax])
            return ref_fail(n, err, errlen, TDM_ERR_INVALID, "bad or repeated axis %lld",
                            (long long)axv);
        seen[ax] = true;
        int64_t dim = x->dims[ax], s = slice_list_at(&starts, i), e = slice_list_at(&ends, i);
        int64_t st = steps.len >= 0 ? slice_list_at(&steps, i) : 1;
        if (st == 0) return ref_fail(n, err, errlen, TDM_ERR_INVALID, "step 0");
        /* A step longer than the dim takes at most one element either way;
         * shortening it keeps the arithmetic below from overflowing. */
        if (st > dim) st = dim + 1;
        if (st < -dim) st = -dim - 1;
        if (s < 0) s = s < -dim ? -1 - dim : s + dim; /* stays below 0, no overflow */
        if (e < 0) e = e < -dim ? -1 - dim : e + dim;
        if (st > 0) {
            s = clamp64(s, 0, dim);
            e = clamp64(e, 0, dim);
            cnt[ax] = e > s ? (e - s - 1) / st + 1 : 0;
        } else {
            s = clamp64(s, 0, dim - 1);
            e = clamp64(e, -1, dim - 1);
            cnt[ax] = s > e ? (s - e - 1) / -st + 1 : 0;
        }
        start[ax] = s;
        step[ax] = st;
    }
    if (y->rank != rank)
        return ref_fail(n, err, errlen, TDM_ERR_INVALID, "output rank %d, input %d", y->rank, rank);
    for (int d = 0; d < rank; d++)
        if (y->dims[d] != cnt[d])
            return ref_fail(n, err, errlen, TDM_ERR_INVALID, "dim %d: output %lld, slice %lld", d,
                            (long long)y->dims[d], (long long)cnt[d]);

    size_t es = tdm_dtype_size(x->dtype);
    int64_t xs[GRAPH_MAX_RANK], idx[GRAPH_MAX_RANK] = {0};
    strides_of(x, xs);
    const char *src = a->in_data[0];
    char *dst = a->out_data[0];
    int64_t count = graph_tensor_numel(y);
    for (int64_t i = 0; i < count; i++) {
        int64_t off = 0;
        for (int d = 0; d < rank; d++)
            off += (start[d] + idx[d] * step[d]) * xs[d];
        memcpy(dst + (size_t)i * es, src + (size_t)off * es, es);
        index_next(rank, y->dims, idx);
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Cast                                                                      */
/* ------------------------------------------------------------------------ */

static bool castable(tdm_dtype t)
{
    return t == TDM_DTYPE_FLOAT || t == TDM_DTYPE_UINT8 || t == TDM_DTYPE_INT8 ||
           t == TDM_DTYPE_INT32 || t == TDM_DTYPE_INT64 || t == TDM_DTYPE_BOOL;
}

int ref_cast(const graph_node *n, const ref_args *a, char *err, size_t errlen)
{
    int rc = ref_need_inputs(n, a, 1, err, errlen);
    if (rc) return rc;
    const graph_tensor *x = a->in[0], *y = a->out[0];
    int64_t to = graph_attr_int(n, "to", y->dtype);
    if (!castable(x->dtype) || !castable(y->dtype) || to != (int64_t)y->dtype)
        return ref_fail(n, err, errlen, TDM_ERR_UNSUPPORTED, "cast %s -> %s (to=%lld)",
                        tdm_dtype_name(x->dtype), tdm_dtype_name(y->dtype), (long long)to);
    if (graph_tensor_numel(x) != graph_tensor_numel(y))
        return ref_fail(n, err, errlen, TDM_ERR_INVALID, "input and output sizes differ");
    size_t es = tdm_dtype_size(y->dtype);
    char *dst = a->out_data[0];
    int64_t count = graph_tensor_numel(y);
    for (int64_t i = 0; i < count; i++, dst += es) {
        if (x->dtype == TDM_DTYPE_FLOAT) {
            float f = ((const float *)a->in_data[0])[i];
            store_float(y->dtype, f, dst);
        } else {
            int64_t v;
            ref_read_i64(x, a->in_data[0], i, &v);
            if (x->dtype == TDM_DTYPE_BOOL) v = v != 0;
            if (y->dtype == TDM_DTYPE_FLOAT)
                *(float *)dst = (float)v;
            else
                store_int(y->dtype, v, dst);
        }
    }
    return 0;
}
