/*
 * ops_shape: shape and dtype inference, one function per op family.
 *
 * ops_infer() is run by the optimiser in topological order, so a node's
 * inputs already carry their shapes. A dimension may still be -1 (unknown,
 * e.g. the batch before a session fixes it): arithmetic on it gives -1, and
 * only the checks that need the value are skipped. Inputs that decide a shape
 * (Reshape's shape, Slice's bounds, ...) must be constants by then; when they
 * are not, the node cannot be planned and the caller gets TDM_ERR_INVALID.
 */
#include <string.h>

#include "ops.h"

/* Dimensions past this are refused: no tensor we can run comes near it, and
 * it keeps products of a few dims far from int64 overflow. */
#define OPS_MAX_DIM ((int64_t)1 << 40)

#define infer_fail(g, n, ...) ops_node_fail(g, n, TDM_ERR_INVALID, __VA_ARGS__)

/* Reads a constant integer tensor (int64 or int32) of at most max elements. */
static int const_ints(graph *g, const graph_node *n, const graph_tensor *t, int64_t *vals, int max,
                      int *count)
{
    if (!t->data) return infer_fail(g, n, "input '%s' must be a constant here", t->name);
    size_t esz = t->dtype == TDM_DTYPE_INT64 ? 8 : t->dtype == TDM_DTYPE_INT32 ? 4 : 0;
    if (!esz) return infer_fail(g, n, "input '%s' must be int64 or int32", t->name);
    if (t->rank > 1) return infer_fail(g, n, "input '%s' must be 1-D", t->name);
    size_t cnt = t->nbytes / esz;
    if (cnt > (size_t)max) return infer_fail(g, n, "input '%s' has too many values", t->name);
    for (size_t i = 0; i < cnt; i++) {
        if (esz == 8) {
            int64_t v;
            memcpy(&v, (const char *)t->data + i * 8, 8);
            vals[i] = v;
        } else {
            int32_t v;
            memcpy(&v, (const char *)t->data + i * 4, 4);
            vals[i] = v;
        }
    }
    *count = (int)cnt;
    return 0;
}

/* Integer list from attribute name, or else from input position idx (the form
 * later opsets use); *count = -1 when neither is present. */
static int ints_attr_or_input(graph *g, const graph_node *n, const char *name, int idx,
                              int64_t *vals, int max, int *count)
{
    const graph_attr *a = graph_attr_get(n, name);
    if (a && a->type == ATTR_INTS) {
        if (a->n > max) return infer_fail(g, n, "attribute '%s' has too many values", name);
        memcpy(vals, a->ints, (size_t)a->n * sizeof *vals);
        *count = a->n;
        return 0;
    }
    const graph_tensor *t = ops_input(g, n, idx);
    if (!t) {
        *count = -1;
        return 0;
    }
    return const_ints(g, n, t, vals, max, count);
}

static int set_out(graph *g, const graph_node *n, int i, tdm_dtype dtype, int rank,
                   const int64_t *dims)
{
    if (i >= n->noutputs || n->outputs[i] < 0) return 0;
    if (rank < 0 || rank > GRAPH_MAX_RANK)
        return infer_fail(g, n, "output rank %d is not supported", rank);
    for (int d = 0; d < rank; d++)
        if (dims[d] > OPS_MAX_DIM) return infer_fail(g, n, "output dimension %d is too large", d);
    graph_tensor *t = &g->tensors[n->outputs[i]];
    t->dtype = dtype;
    t->rank = rank;
    for (int d = 0; d < rank; d++)
        t->dims[d] = dims[d] < 0 ? -1 : dims[d];
    return 0;
}

static int norm_axis(graph *g, const graph_node *n, int64_t axis, int rank, int64_t *out)
{
    if (axis < -rank || axis >= rank)
        return infer_fail(g, n, "axis %lld is out of range for rank %d", (long long)axis, rank);
    *out = axis < 0 ? axis + rank : axis;
    return 0;
}

/* Product of two dims; -1 (unknown) is contagious, and an overflowing
 * product saturates past OPS_MAX_DIM so the caller's bound check fails. */
static int64_t dim_mul(int64_t a, int64_t b)
{
    int64_t r;
    if (a < 0 || b < 0) return -1;
    if (__builtin_mul_overflow(a, b, &r) || r > OPS_MAX_DIM) return OPS_MAX_DIM + 1;
    return r;
}

/* Output size of a convolution or pooling window along one axis. */
static int64_t window_out(const char *auto_pad, int64_t in, int64_t k, int64_t s, int64_t d,
                          int64_t pb, int64_t pe, bool ceil_mode)
{
    if (in < 0) return -1;
    int64_t eff = (k - 1) * d + 1;
    if (strcmp(auto_pad, "SAME_UPPER") == 0 || strcmp(auto_pad, "SAME_LOWER") == 0)
        return (in + s - 1) / s;
    if (strcmp(auto_pad, "VALID") == 0) pb = pe = 0;
    int64_t span = in + pb + pe - eff;
    if (span < 0) return 0;
    if (!ceil_mode) return span / s + 1;
    /* As PyTorch and ONNX Runtime: no window starts in the end padding. */
    int64_t out = (span + s - 1) / s + 1;
    return (out - 1) * s >= in + pb ? out - 1 : out;
}

static int infer_window(graph *g, const graph_node *n, const graph_tensor *x, int64_t cout,
                        const int64_t *k)
{
    const graph_attr *st = graph_attr_get(n, "strides"), *di = graph_attr_get(n, "dilations"),
                     *pa = graph_attr_get(n, "pads");
    const char *auto_pad = graph_attr_string(n, "auto_pad", "NOTSET");
    bool ceil_mode = graph_attr_int(n, "ceil_mode", 0) != 0;
    int64_t dims[4] = {x->dims[0], cout, 0, 0};
    for (int i = 0; i < 2; i++) {
        int64_t s = st && st->n == 2 ? st->ints[i] : 1, d = di && di->n == 2 ? di->ints[i] : 1;
        int64_t pb = pa && pa->n == 4 ? pa->ints[i] : 0,
                pe = pa && pa->n == 4 ? pa->ints[i + 2] : 0;
        if (s < 1 || d < 1 || k[i] < 1) return infer_fail(g, n, "bad stride, dilation or kernel");
        dims[2 + i] = window_out(auto_pad, x->dims[2 + i], k[i], s, d, pb, pe, ceil_mode);
        if (dims[2 + i] == 0) return infer_fail(g, n, "the window is larger than the input");
    }
    return set_out(g, n, 0, x->dtype, 4, dims);
}

static int infer_conv(graph *g, const graph_node *n, const graph_tensor *x)
{
    const graph_tensor *w = ops_input(g, n, 1), *b = ops_input(g, n, 2);
    if (x->rank != 4 || w->rank != 4)
        return infer_fail(g, n, "input and weight must have rank 4 (NCHW, OIHW)");
    int64_t group = graph_attr_int(n, "group", 1);
    if (group < 1) return infer_fail(g, n, "group must be >= 1");
    if (x->dims[1] >= 0 && w->dims[1] >= 0 && x->dims[1] != w->dims[1] * group)
        return infer_fail(g, n, "input has %lld channels, weight expects %lld x group %lld",
                          (long long)x->dims[1], (long long)w->dims[1], (long long)group);
    if (w->dims[0] >= 0 && w->dims[0] % group != 0)
        return infer_fail(g, n, "output channels are not a multiple of group");
    if (b && (b->rank != 1 || (b->dims[0] >= 0 && w->dims[0] >= 0 && b->dims[0] != w->dims[0])))
        return infer_fail(g, n, "bias must be 1-D with one value per output channel");
    int64_t k[2] = {w->dims[2], w->dims[3]};
    const graph_attr *ks = graph_attr_get(n, "kernel_shape");
    if (ks && ks->n == 2) k[0] = ks->ints[0], k[1] = ks->ints[1];
    return infer_window(g, n, x, w->dims[0], k);
}

static int infer_pool(graph *g, const graph_node *n, const graph_tensor *x)
{
    if (x->rank != 4) return infer_fail(g, n, "input must have rank 4 (NCHW)");
    const graph_attr *ks = graph_attr_get(n, "kernel_shape");
    if (!ks || ks->n != 2) return infer_fail(g, n, "kernel_shape must have 2 values");
    return infer_window(g, n, x, x->dims[1], ks->ints);
}

/* Numpy broadcasting of a and b into dims; rank is the larger rank. */
static int broadcast(graph *g, const graph_node *n, const graph_tensor *a, const graph_tensor *b,
                     int64_t *dims, int *rank)
{
    int r = a->rank > b->rank ? a->rank : b->rank;
    for (int i = 0; i < r; i++) {
        int ia = i - (r - a->rank), ib = i - (r - b->rank);
        int64_t da = ia >= 0 ? a->dims[ia] : 1, db = ib >= 0 ? b->dims[ib] : 1;
        if (da == 1)
            dims[i] = db;
        else if (db == 1)
            dims[i] = da;
        else if (da < 0)
            dims[i] = db;
        else if (db < 0 || da == db)
            dims[i] = da;
        else
            return infer_fail(g, n, "shapes of '%s' and '%s' do not broadcast (%lld vs %lld)",
                              a->name, b->name, (long long)da, (long long)db);
    }
    *rank = r;
    return 0;
}

static int infer_matmul(graph *g, const graph_node *n, const graph_tensor *a)
{
    const graph_tensor *b = ops_input(g, n, 1);
    if (a->rank < 1 || b->rank < 1) return infer_fail(g, n, "inputs must have rank >= 1");
    /* Numpy: a 1-D operand is promoted to a matrix and the added axis dropped. */
    int64_t m = a->rank == 1 ? 1 : a->dims[a->rank - 2], ka = a->dims[a->rank - 1];
    int64_t kb = b->rank == 1 ? b->dims[0] : b->dims[b->rank - 2];
    int64_t nn = b->rank == 1 ? 1 : b->dims[b->rank - 1];
    if (ka >= 0 && kb >= 0 && ka != kb)
        return infer_fail(g, n, "inner dimensions differ (%lld vs %lld)", (long long)ka,
                          (long long)kb);
    graph_tensor ba = *a, bb = *b;
    ba.rank = a->rank > 2 ? a->rank - 2 : 0;
    bb.rank = b->rank > 2 ? b->rank - 2 : 0;
    int64_t dims[GRAPH_MAX_RANK + 2];
    int r, rc;
    if ((rc = broadcast(g, n, &ba, &bb, dims, &r))) return rc;
    if (a->rank > 1) dims[r++] = m;
    if (b->rank > 1) dims[r++] = nn;
    return set_out(g, n, 0, a->dtype, r, dims);
}

static int infer_gemm(graph *g, const graph_node *n, const graph_tensor *a)
{
    const graph_tensor *b = ops_input(g, n, 1);
    if (a->rank != 2 || b->rank != 2) return infer_fail(g, n, "A and B must be 2-D");
    bool ta = graph_attr_int(n, "transA", 0) != 0, tb = graph_attr_int(n, "transB", 0) != 0;
    int64_t m = a->dims[ta ? 1 : 0], ka = a->dims[ta ? 0 : 1];
    int64_t kb = b->dims[tb ? 1 : 0], nn = b->dims[tb ? 0 : 1];
    if (ka >= 0 && kb >= 0 && ka != kb)
        return infer_fail(g, n, "inner dimensions differ (%lld vs %lld)", (long long)ka,
                          (long long)kb);
    int64_t dims[2] = {m, nn};
    const graph_tensor *c = ops_input(g, n, 2);
    if (c) {
        graph_tensor out = *a;
        out.rank = 2;
        out.dims[0] = m, out.dims[1] = nn;
        int64_t bd[GRAPH_MAX_RANK];
        int r, rc;
        if (c->rank > 2) return infer_fail(g, n, "C must have rank <= 2");
        if ((rc = broadcast(g, n, &out, c, bd, &r))) return rc;
        if ((bd[0] >= 0 && m >= 0 && bd[0] != m) || (bd[1] >= 0 && nn >= 0 && bd[1] != nn))
            return infer_fail(g, n, "C does not broadcast to the output");
    }
    return set_out(g, n, 0, a->dtype, 2, dims);
}

static int infer_reshape(graph *g, const graph_node *n, const graph_tensor *x)
{
    int64_t shape[GRAPH_MAX_RANK];
    int cnt, rc, minus = -1;
    if ((rc = const_ints(g, n, ops_input(g, n, 1), shape, GRAPH_MAX_RANK, &cnt))) return rc;
    int64_t known = 1, total = 1;
    for (int i = 0; i < x->rank; i++)
        total = dim_mul(total, x->dims[i]);
    for (int i = 0; i < cnt; i++) {
        if (shape[i] == 0) {
            if (i >= x->rank) return infer_fail(g, n, "shape value 0 at %d has no input dim", i);
            shape[i] = x->dims[i];
        } else if (shape[i] == -1) {
            if (minus >= 0) return infer_fail(g, n, "shape has more than one -1");
            minus = i;
            continue;
        } else if (shape[i] < -1 || shape[i] > OPS_MAX_DIM) {
            return infer_fail(g, n, "shape value %lld is invalid", (long long)shape[i]);
        }
        known = dim_mul(known, shape[i]);
    }
    if (minus >= 0) {
        if (known > OPS_MAX_DIM) return infer_fail(g, n, "shape is too large");
        if (total >= 0 && known > 0 && total % known != 0)
            return infer_fail(g, n, "cannot reshape %lld elements with this shape",
                              (long long)total);
        shape[minus] = total < 0 || known < 0 ? -1 : known == 0 ? 0 : total / known;
    } else if (total >= 0 && known >= 0 && total != known) {
        return infer_fail(g, n, "cannot reshape %lld elements into %lld", (long long)total,
                          (long long)known);
    }
    return set_out(g, n, 0, x->dtype, cnt, shape);
}

static int infer_flatten(graph *g, const graph_node *n, const graph_tensor *x)
{
    int64_t axis = graph_attr_int(n, "axis", 1);
    if (axis < -x->rank || axis > x->rank)
        return infer_fail(g, n, "axis %lld is out of range", (long long)axis);
    if (axis < 0) axis += x->rank;
    int64_t dims[2] = {1, 1};
    for (int i = 0; i < x->rank; i++)
        dims[i < axis ? 0 : 1] = dim_mul(dims[i < axis ? 0 : 1], x->dims[i]);
    return set_out(g, n, 0, x->dtype, 2, dims);
}

static int infer_squeeze(graph *g, const graph_node *n, const graph_tensor *x)
{
    int64_t axes[GRAPH_MAX_RANK], dims[GRAPH_MAX_RANK];
    bool drop[GRAPH_MAX_RANK] = {false};
    int cnt, rc, r = 0;
    if ((rc = ints_attr_or_input(g, n, "axes", 1, axes, GRAPH_MAX_RANK, &cnt))) return rc;
    if (cnt < 0) {
        for (int i = 0; i < x->rank; i++) {
            if (x->dims[i] < 0) return infer_fail(g, n, "squeeze without axes needs a known shape");
            drop[i] = x->dims[i] == 1;
        }
    }
    for (int i = 0; i < cnt; i++) {
        int64_t a = 0;
        if ((rc = norm_axis(g, n, axes[i], x->rank, &a))) return rc;
        if (x->dims[a] > 1)
            return infer_fail(g, n, "cannot squeeze axis %lld of size %lld", (long long)a,
                              (long long)x->dims[a]);
        drop[a] = true;
    }
    for (int i = 0; i < x->rank; i++)
        if (!drop[i]) dims[r++] = x->dims[i];
    return set_out(g, n, 0, x->dtype, r, dims);
}

static int infer_unsqueeze(graph *g, const graph_node *n, const graph_tensor *x)
{
    int64_t axes[GRAPH_MAX_RANK], dims[GRAPH_MAX_RANK];
    bool added[GRAPH_MAX_RANK] = {false};
    int cnt, rc;
    if ((rc = ints_attr_or_input(g, n, "axes", 1, axes, GRAPH_MAX_RANK, &cnt))) return rc;
    if (cnt < 0) return infer_fail(g, n, "axes are missing");
    int r = x->rank + cnt;
    if (r > GRAPH_MAX_RANK) return infer_fail(g, n, "output rank %d is too large", r);
    for (int i = 0; i < cnt; i++) {
        int64_t a = 0;
        if ((rc = norm_axis(g, n, axes[i], r, &a))) return rc;
        if (added[a]) return infer_fail(g, n, "axis %lld repeated", (long long)a);
        added[a] = true;
    }
    for (int i = 0, j = 0; i < r; i++)
        dims[i] = added[i] ? 1 : x->dims[j++];
    return set_out(g, n, 0, x->dtype, r, dims);
}

static int infer_transpose(graph *g, const graph_node *n, const graph_tensor *x)
{
    int64_t dims[GRAPH_MAX_RANK];
    bool seen[GRAPH_MAX_RANK] = {false};
    const graph_attr *p = graph_attr_get(n, "perm");
    if (p && p->n != x->rank)
        return infer_fail(g, n, "perm has %d values for rank %d", p->n, x->rank);
    for (int i = 0; i < x->rank; i++) {
        int64_t src = p ? p->ints[i] : x->rank - 1 - i;
        if (src < 0 || src >= x->rank || seen[src])
            return infer_fail(g, n, "perm is not a permutation");
        seen[src] = true;
        dims[i] = x->dims[src];
    }
    return set_out(g, n, 0, x->dtype, x->rank, dims);
}

static int infer_concat(graph *g, const graph_node *n, const graph_tensor *x)
{
    int64_t axis = 0, dims[GRAPH_MAX_RANK];
    int rc;
    if ((rc = norm_axis(g, n, graph_attr_int(n, "axis", 0), x->rank, &axis))) return rc;
    memcpy(dims, x->dims, sizeof dims);
    for (int i = 1; i < n->ninputs; i++) {
        const graph_tensor *t = ops_input(g, n, i);
        if (!t) return infer_fail(g, n, "input %d is missing", i);
        if (t->rank != x->rank || t->dtype != x->dtype)
            return infer_fail(g, n, "inputs differ in rank or dtype");
        for (int d = 0; d < x->rank; d++) {
            if (d == axis)
                dims[d] = dims[d] < 0 || t->dims[d] < 0 ? -1 : dims[d] + t->dims[d];
            else if (dims[d] >= 0 && t->dims[d] >= 0 && dims[d] != t->dims[d])
                return infer_fail(g, n, "inputs differ in dimension %d", d);
            else if (dims[d] < 0)
                dims[d] = t->dims[d];
        }
    }
    return set_out(g, n, 0, x->dtype, x->rank, dims);
}

static int infer_pad(graph *g, const graph_node *n, const graph_tensor *x)
{
    int64_t pads[2 * GRAPH_MAX_RANK], dims[GRAPH_MAX_RANK];
    int cnt, rc;
    if ((rc = ints_attr_or_input(g, n, "pads", 1, pads, 2 * GRAPH_MAX_RANK, &cnt))) return rc;
    if (cnt != 2 * x->rank) return infer_fail(g, n, "pads has %d values for rank %d", cnt, x->rank);
    for (int i = 0; i < 2 * x->rank; i++)
        if (pads[i] < -OPS_MAX_DIM || pads[i] > OPS_MAX_DIM)
            return infer_fail(g, n, "pad %lld is out of range", (long long)pads[i]);
    for (int i = 0; i < x->rank; i++) {
        dims[i] = x->dims[i] < 0 ? -1 : x->dims[i] + pads[i] + pads[i + x->rank];
        if (x->dims[i] >= 0 && dims[i] < 0) return infer_fail(g, n, "pads crop below zero");
    }
    return set_out(g, n, 0, x->dtype, x->rank, dims);
}

static int infer_shape(graph *g, const graph_node *n, const graph_tensor *x)
{
    int64_t start = graph_attr_int(n, "start", 0), end = graph_attr_int(n, "end", x->rank);
    if (start < 0) start += x->rank;
    if (end < 0) end += x->rank;
    start = start < 0 ? 0 : start > x->rank ? x->rank : start;
    end = end < 0 ? 0 : end > x->rank ? x->rank : end;
    int64_t len = end > start ? end - start : 0;
    return set_out(g, n, 0, TDM_DTYPE_INT64, 1, &len);
}

static int infer_gather(graph *g, const graph_node *n, const graph_tensor *x)
{
    const graph_tensor *idx = ops_input(g, n, 1);
    int64_t axis = 0, dims[GRAPH_MAX_RANK];
    int rc, r = 0;
    if (idx->dtype != TDM_DTYPE_INT64 && idx->dtype != TDM_DTYPE_INT32)
        return infer_fail(g, n, "indices must be int64 or int32");
    if ((rc = norm_axis(g, n, graph_attr_int(n, "axis", 0), x->rank, &axis))) return rc;
    if (x->rank - 1 + idx->rank > GRAPH_MAX_RANK) return infer_fail(g, n, "output rank too large");
    for (int i = 0; i < axis; i++)
        dims[r++] = x->dims[i];
    for (int i = 0; i < idx->rank; i++)
        dims[r++] = idx->dims[i];
    for (int i = (int)axis + 1; i < x->rank; i++)
        dims[r++] = x->dims[i];
    return set_out(g, n, 0, x->dtype, r, dims);
}

static int64_t clamp64(int64_t v, int64_t lo, int64_t hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

static int infer_slice(graph *g, const graph_node *n, const graph_tensor *x)
{
    int64_t starts[GRAPH_MAX_RANK], ends[GRAPH_MAX_RANK], axes[GRAPH_MAX_RANK],
        steps[GRAPH_MAX_RANK], dims[GRAPH_MAX_RANK];
    bool done[GRAPH_MAX_RANK] = {false};
    int ns, ne, na, nst, rc;
    if ((rc = ints_attr_or_input(g, n, "starts", 1, starts, GRAPH_MAX_RANK, &ns))) return rc;
    if ((rc = ints_attr_or_input(g, n, "ends", 2, ends, GRAPH_MAX_RANK, &ne))) return rc;
    if ((rc = ints_attr_or_input(g, n, "axes", 3, axes, GRAPH_MAX_RANK, &na))) return rc;
    if ((rc = ints_attr_or_input(g, n, "steps", 4, steps, GRAPH_MAX_RANK, &nst))) return rc;
    if (ns < 0 || ns != ne || (na >= 0 && na != ns) || (nst >= 0 && nst != ns))
        return infer_fail(g, n, "starts, ends, axes and steps differ in length");
    memcpy(dims, x->dims, sizeof dims);
    for (int i = 0; i < ns; i++) {
        int64_t a = 0, step = nst >= 0 ? steps[i] : 1;
        if ((rc = norm_axis(g, n, na >= 0 ? axes[i] : i, x->rank, &a))) return rc;
        if (done[a]) return infer_fail(g, n, "axis %lld repeated", (long long)a);
        done[a] = true;
        if (step == 0) return infer_fail(g, n, "step 0 is invalid");
        int64_t d = x->dims[a];
        if (d < 0) {
            dims[a] = -1;
            continue;
        }
        /* Any step longer than the axis takes at most one element; clamping
         * it keeps the arithmetic below from overflowing. */
        if (step > d + 1) step = d + 1;
        if (step < -d - 1) step = -d - 1;
        int64_t s = starts[i] < 0 ? starts[i] + d : starts[i];
        int64_t e = ends[i] < 0 ? ends[i] + d : ends[i];
        if (step > 0) {
            s = clamp64(s, 0, d);
            e = clamp64(e, 0, d);
            dims[a] = e > s ? (e - s + step - 1) / step : 0;
        } else {
            s = clamp64(s, 0, d - 1);
            e = clamp64(e, -1, d - 1);
            dims[a] = s > e ? (s - e - step - 1) / -step : 0;
        }
    }
    return set_out(g, n, 0, x->dtype, x->rank, dims);
}

static int infer_constant(graph *g, const graph_node *n, const graph_tensor *x)
{
    int64_t len;
    const graph_attr *a;
    if ((a = graph_attr_get(n, "value")) && a->type == ATTR_TENSOR && a->tensor >= 0 &&
        a->tensor < g->ntensors) {
        const graph_tensor *v = &g->tensors[a->tensor];
        return set_out(g, n, 0, v->dtype, v->rank, v->dims);
    }
    if ((a = graph_attr_get(n, "value_float"))) return set_out(g, n, 0, TDM_DTYPE_FLOAT, 0, NULL);
    if ((a = graph_attr_get(n, "value_int"))) return set_out(g, n, 0, TDM_DTYPE_INT64, 0, NULL);
    if ((a = graph_attr_get(n, "value_floats")) && a->type == ATTR_FLOATS)
        return len = a->n, set_out(g, n, 0, TDM_DTYPE_FLOAT, 1, &len);
    if ((a = graph_attr_get(n, "value_ints")) && a->type == ATTR_INTS)
        return len = a->n, set_out(g, n, 0, TDM_DTYPE_INT64, 1, &len);
    return infer_fail(g, n, "no supported value attribute");
}

/* Per-axis Q/DQ: a 1-D scale must have one value per element of the axis. */
static int check_qdq_axis(graph *g, const graph_node *n, const graph_tensor *x)
{
    const graph_tensor *s = ops_input(g, n, 1), *zp = ops_input(g, n, 2);
    int64_t ns = graph_tensor_numel(s), axis = 0;
    int rc;
    if (zp && graph_tensor_numel(zp) != ns && ns >= 0)
        return infer_fail(g, n, "scale and zero point differ in size");
    if (s->rank == 0 || ns == 1) return 0;
    if ((rc = norm_axis(g, n, graph_attr_int(n, "axis", 1), x->rank, &axis))) return rc;
    if (x->dims[axis] >= 0 && ns >= 0 && x->dims[axis] != ns)
        return infer_fail(g, n, "per-axis scale has %lld values for axis size %lld", (long long)ns,
                          (long long)x->dims[axis]);
    return 0;
}

/* Element-wise with two inputs: numpy broadcasting, one dtype. */
static int infer_binary(graph *g, const graph_node *n, const graph_tensor *a)
{
    const graph_tensor *b = ops_input(g, n, 1);
    int64_t dims[GRAPH_MAX_RANK];
    int r, rc;
    if (a->dtype != b->dtype)
        return infer_fail(g, n, "inputs differ in dtype (%s vs %s)", tdm_dtype_name(a->dtype),
                          tdm_dtype_name(b->dtype));
    if ((rc = broadcast(g, n, a, b, dims, &r))) return rc;
    return set_out(g, n, 0, a->dtype, r, dims);
}

/* Element-wise with one input: the output is input 0's dtype and shape. */
static int infer_same(graph *g, const graph_node *n, const graph_tensor *x)
{
    return set_out(g, n, 0, x->dtype, x->rank, x->dims);
}

static int infer_global_pool(graph *g, const graph_node *n, const graph_tensor *x)
{
    if (x->rank < 3) return infer_fail(g, n, "input must have rank >= 3");
    int64_t dims[GRAPH_MAX_RANK];
    for (int i = 0; i < x->rank; i++)
        dims[i] = i < 2 ? x->dims[i] : 1;
    return set_out(g, n, 0, x->dtype, x->rank, dims);
}

static int infer_batchnorm(graph *g, const graph_node *n, const graph_tensor *x)
{
    if (x->rank < 2) return infer_fail(g, n, "input must have rank >= 2");
    for (int i = 1; i < 5; i++) {
        const graph_tensor *p = ops_input(g, n, i);
        if (!p || p->rank != 1 || (p->dims[0] >= 0 && x->dims[1] >= 0 && p->dims[0] != x->dims[1]))
            return infer_fail(g, n, "scale, bias, mean and var must be 1-D of the channel count");
    }
    return set_out(g, n, 0, x->dtype, x->rank, x->dims);
}

static int infer_softmax(graph *g, const graph_node *n, const graph_tensor *x)
{
    int64_t axis = 0;
    int rc = norm_axis(g, n, graph_attr_int(n, "axis", g->opset < 13 ? 1 : -1), x->rank, &axis);
    return rc ? rc : set_out(g, n, 0, x->dtype, x->rank, x->dims);
}

static int infer_clip(graph *g, const graph_node *n, const graph_tensor *x)
{
    for (int i = 1; i < 3; i++) {
        const graph_tensor *b = ops_input(g, n, i);
        if (b && graph_tensor_numel(b) != 1) return infer_fail(g, n, "min and max must be scalars");
    }
    return set_out(g, n, 0, x->dtype, x->rank, x->dims);
}

static int infer_dropout(graph *g, const graph_node *n, const graph_tensor *x)
{
    int rc = set_out(g, n, 0, x->dtype, x->rank, x->dims);
    return rc ? rc : set_out(g, n, 1, TDM_DTYPE_BOOL, x->rank, x->dims);
}

static int infer_quantize(graph *g, const graph_node *n, const graph_tensor *x)
{
    const graph_tensor *zp = ops_input(g, n, 2);
    int rc = check_qdq_axis(g, n, x);
    return rc ? rc : set_out(g, n, 0, zp ? zp->dtype : TDM_DTYPE_UINT8, x->rank, x->dims);
}

static int infer_dequantize(graph *g, const graph_node *n, const graph_tensor *x)
{
    int rc = check_qdq_axis(g, n, x);
    return rc ? rc : set_out(g, n, 0, TDM_DTYPE_FLOAT, x->rank, x->dims);
}

static int infer_cast(graph *g, const graph_node *n, const graph_tensor *x)
{
    return set_out(g, n, 0, (tdm_dtype)graph_attr_int(n, "to", TDM_DTYPE_FLOAT), x->rank, x->dims);
}

/* Each op's shape rule (column 8 of ops.def) and its least input count:
 * only an op that takes no inputs (Constant) is inferred without input 0. */
static const struct {
    int (*infer)(graph *g, const graph_node *n, const graph_tensor *x);
    int min_in;
} rules[OP_COUNT] = {
#define OP(op, name, min_in_, max_in, min_out, max_out, check, infer_, kernel)                     \
    [op] = {.infer = infer_, .min_in = min_in_},
#include "ops.def"
#undef OP
};

int ops_infer(graph *g, int node)
{
    if (!g || node < 0 || node >= g->nnodes) return TDM_ERR_INVALID;
    const graph_node *n = &g->nodes[node];
    for (int i = 0; i < n->ninputs; i++) {
        const graph_tensor *t = ops_input(g, n, i);
        if (t && t->rank < 0)
            return infer_fail(g, n, "the shape of input '%s' is unknown", t->name);
    }
    bool known = n->op > OP_UNKNOWN && n->op < OP_COUNT && rules[n->op].infer;
    const graph_tensor *x = ops_input(g, n, 0);
    if (!x && (!known || rules[n->op].min_in > 0))
        return infer_fail(g, n, "the first input is missing");
    if (!known) return infer_fail(g, n, "no shape inference for this operator");
    return rules[n->op].infer(g, n, x);
}
