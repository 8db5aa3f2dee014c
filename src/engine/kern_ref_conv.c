/*
 * kern_ref_conv: the compute-heavy reference kernels — Conv, MaxPool,
 * AveragePool, the global pools, Gemm, MatMul, BatchNormalization, Softmax.
 *
 * Convolution and pooling share one description of the sliding window (kernel,
 * strides, dilations, begin/end pads after auto_pad) for one or two spatial
 * dimensions; a 1-D op is run as 2-D with a height of 1. The window's output
 * size is recomputed here and checked against the output tensor, so a shape
 * inference bug shows up as an error instead of a silent misread.
 *
 * Conv is a direct convolution ordered for the REF backend to run ResNet50 in
 * seconds: per output channel, accumulate each (input channel, kernel tap)
 * over whole output rows, so the innermost loop walks contiguous memory.
 */
#include <math.h>
#include <string.h>

#include "kern_ref_impl.h"

/* ------------------------------------------------------------------------ */
/* Sliding windows                                                           */
/* ------------------------------------------------------------------------ */

typedef struct window {
    int64_t k[2], s[2], d[2], pb[2], pe[2]; /* kernel, stride, dilation, pads */
    int64_t in[2], out[2];                  /* spatial sizes, height first */
} window;

/* Reads an INTS attribute of exactly len values into v (leaving v alone when
 * the attribute is absent). */
static int ints_attr(const graph_node *n, const char *name, int len, int64_t *v, char *err,
                     size_t errlen)
{
    const graph_attr *at = graph_attr_get(n, name);
    if (!at) return 0;
    if (at->type != ATTR_INTS || at->n != len)
        return ref_fail(n, err, errlen, TDM_ERR_INVALID, "attribute %s needs %d integers", name,
                        len);
    for (int i = 0; i < len; i++)
        v[i] = at->ints[i];
    return 0;
}

/* Fills w for input x and output y (rank 3 or 4, NC + spatial) with kernel
 * size kdims. For pools with ceil_mode the output may be the ceiling size,
 * for everything else it must be the floor size. */
static int window_init(const graph_node *n, const graph_tensor *x, const graph_tensor *y,
                       const int64_t *kdims, bool ceil_mode, window *w, char *err, size_t errlen)
{
    int ns = x->rank - 2;
    if (ns < 1 || ns > 2 || y->rank != x->rank)
        return ref_fail(n, err, errlen, TDM_ERR_UNSUPPORTED,
                        "only 1-D and 2-D windows (input rank %d, output rank %d)", x->rank,
                        y->rank);
    int64_t k[2], s[2] = {1, 1}, d[2] = {1, 1}, pads[4] = {0, 0, 0, 0};
    for (int i = 0; i < ns; i++)
        k[i] = kdims[i];
    int rc = ints_attr(n, "strides", ns, s, err, errlen);
    if (!rc) rc = ints_attr(n, "dilations", ns, d, err, errlen);
    if (!rc) rc = ints_attr(n, "pads", 2 * ns, pads, err, errlen);
    if (rc) return rc;
    const char *ap = graph_attr_string(n, "auto_pad", "NOTSET");

    /* Spatial dims beyond those of a 1-D op: a window of 1 over a height of 1. */
    int off = 2 - ns;
    for (int i = 0; i < off; i++) {
        w->k[i] = w->s[i] = w->d[i] = w->in[i] = w->out[i] = 1;
        w->pb[i] = w->pe[i] = 0;
    }
    for (int i = 0; i < ns; i++) {
        int j = i + off;
        int64_t in = x->dims[2 + i];
        /* Bounded so that no window arithmetic below can overflow. */
        const int64_t lim = INT64_C(1) << 24;
        if (k[i] < 1 || s[i] < 1 || d[i] < 1 || pads[i] < 0 || pads[i + ns] < 0 || k[i] > lim ||
            s[i] > lim || d[i] > lim || pads[i] > lim || pads[i + ns] > lim)
            return ref_fail(n, err, errlen, TDM_ERR_INVALID,
                            "bad window: kernel %lld stride %lld dilation %lld pads %lld,%lld",
                            (long long)k[i], (long long)s[i], (long long)d[i], (long long)pads[i],
                            (long long)pads[i + ns]);
        int64_t span = (k[i] - 1) * d[i] + 1;
        int64_t pb = pads[i], pe = pads[i + ns];
        if (strcmp(ap, "SAME_UPPER") == 0 || strcmp(ap, "SAME_LOWER") == 0) {
            int64_t o = (in + s[i] - 1) / s[i];
            int64_t total = (o - 1) * s[i] + span - in;
            if (total < 0) total = 0;
            pb = ap[5] == 'U' ? total / 2 : total - total / 2;
            pe = total - pb;
        } else if (strcmp(ap, "VALID") == 0) {
            pb = pe = 0;
        } else if (strcmp(ap, "NOTSET") != 0) {
            return ref_fail(n, err, errlen, TDM_ERR_UNSUPPORTED, "auto_pad %s", ap);
        }
        int64_t room = in + pb + pe - span;
        int64_t lo = room < 0 ? 0 : room / s[i] + 1;
        int64_t hi = room < 0 ? 0 : (room + s[i] - 1) / s[i] + 1;
        int64_t out = y->dims[2 + i];
        if (out < 1 || !(out == lo || (ceil_mode && out == hi)))
            return ref_fail(n, err, errlen, TDM_ERR_INVALID,
                            "spatial dim %d: output %lld does not match input %lld with this "
                            "window (expected %lld)",
                            i, (long long)out, (long long)in, (long long)lo);
        w->k[j] = k[i];
        w->s[j] = s[i];
        w->d[j] = d[i];
        w->pb[j] = pb;
        w->pe[j] = pe;
        w->in[j] = in;
        w->out[j] = out;
    }
    return 0;
}

/* Range [*lo, *hi) of output positions o whose tap o*s - pb + t*d lands in
 * [0, in). */
static void tap_range(int64_t t, int64_t s, int64_t d, int64_t pb, int64_t in, int64_t out,
                      int64_t *lo, int64_t *hi)
{
    int64_t first = pb - t * d;         /* o*s >= first */
    int64_t last = in - 1 + pb - t * d; /* o*s <= last */
    int64_t l = first <= 0 ? 0 : (first + s - 1) / s;
    int64_t h = last < 0 ? 0 : last / s + 1;
    *lo = l;
    *hi = h < out ? h : out;
    if (*hi < *lo) *hi = *lo;
}

/* ------------------------------------------------------------------------ */
/* Conv                                                                      */
/* ------------------------------------------------------------------------ */

/* y[i] += a * x[i] for i < len. Blocks of 8 with restrict pointers let the
 * compiler vectorise at -O2; the input and output never overlap. */
static void axpy(float a, const float *restrict x, float *restrict y, int64_t len)
{
    int64_t i = 0;
    for (; i + 8 <= len; i += 8)
        for (int j = 0; j < 8; j++)
            y[i + j] += a * x[i + j];
    for (; i < len; i++)
        y[i] += a * x[i];
}

/* y[i] += sum over q < 4 input channels of a[c] * x[c * plane + i]. Four
 * channels at once read and write y a quarter as often, which is most of
 * the cost of a direct convolution (and of running it under ASan). */
static void taps(int q, const float *a, const float *x, int64_t plane, float *restrict y,
                 int64_t len)
{
    if (q < 4) {
        for (int c = 0; c < q; c++)
            axpy(a[c], x + c * plane, y, len);
        return;
    }
    const float *restrict x0 = x, *restrict x1 = x + plane, *restrict x2 = x + 2 * plane,
                          *restrict x3 = x + 3 * plane;
    float a0 = a[0], a1 = a[1], a2 = a[2], a3 = a[3];
    int64_t i = 0;
    for (; i + 8 <= len; i += 8)
        for (int j = 0; j < 8; j++)
            y[i + j] += a0 * x0[i + j] + a1 * x1[i + j] + a2 * x2[i + j] + a3 * x3[i + j];
    for (; i < len; i++)
        y[i] += a0 * x0[i] + a1 * x1[i] + a2 * x2[i] + a3 * x3[i];
}

int ref_conv(const graph_node *n, const ref_args *a, char *err, size_t errlen)
{
    int rc = ref_need_inputs(n, a, 2, err, errlen);
    if (rc) return rc;
    const graph_tensor *xt = a->in[0], *wt = a->in[1], *bt = ref_opt_input(a, 2);
    const graph_tensor *yt = a->out[0];
    if (xt->dtype != TDM_DTYPE_FLOAT || wt->dtype != TDM_DTYPE_FLOAT ||
        yt->dtype != TDM_DTYPE_FLOAT || (bt && bt->dtype != TDM_DTYPE_FLOAT))
        return ref_fail(n, err, errlen, TDM_ERR_UNSUPPORTED, "only float Conv");
    if (wt->rank != xt->rank)
        return ref_fail(n, err, errlen, TDM_ERR_INVALID, "weight rank %d, input rank %d", wt->rank,
                        xt->rank);
    int64_t kd[2] = {1, 1};
    for (int i = 0; i + 2 < wt->rank && i < 2; i++)
        kd[i] = wt->dims[2 + i];
    int64_t ks[2] = {kd[0], kd[1]};
    if (xt->rank >= 3 && xt->rank <= 4) {
        rc = ints_attr(n, "kernel_shape", xt->rank - 2, ks, err, errlen);
        if (rc) return rc;
        if (ks[0] != kd[0] || ks[1] != kd[1])
            return ref_fail(n, err, errlen, TDM_ERR_INVALID,
                            "kernel_shape disagrees with the weight");
    }
    window w;
    rc = window_init(n, xt, yt, kd, false, &w, err, errlen);
    if (rc) return rc;

    int64_t N = xt->dims[0], C = xt->dims[1], M = wt->dims[0], Cg = wt->dims[1];
    int64_t G = graph_attr_int(n, "group", 1);
    if (G < 1 || C != Cg * G || M % G != 0 || yt->dims[0] != N || yt->dims[1] != M ||
        (bt && graph_tensor_numel(bt) != M))
        return ref_fail(n, err, errlen, TDM_ERR_INVALID,
                        "channels do not fit: input %lld, weight %lldx%lld, group %lld",
                        (long long)C, (long long)M, (long long)Cg, (long long)G);
    int64_t Mg = M / G, H = w.in[0], W = w.in[1], OH = w.out[0], OW = w.out[1];
    int64_t KH = w.k[0], KW = w.k[1], sh = w.s[0], sw = w.s[1];
    const float *X = a->in_data[0], *Wd = a->in_data[1], *B = bt ? a->in_data[2] : NULL;
    float *Y = a->out_data[0];

    for (int64_t b = 0; b < N; b++) {
        for (int64_t m = 0; m < M; m++) {
            float *yp = Y + (b * M + m) * OH * OW;
            float bias = B ? B[m] : 0.0f;
            for (int64_t i = 0; i < OH * OW; i++)
                yp[i] = bias;
            int64_t g = m / Mg;
            for (int64_t cg = 0; cg < Cg; cg += 4) {
                int q = Cg - cg < 4 ? (int)(Cg - cg) : 4;
                const float *xp = X + (b * C + g * Cg + cg) * H * W;
                const float *wp = Wd + (m * Cg + cg) * KH * KW;
                for (int64_t kh = 0; kh < KH; kh++) {
                    int64_t oh0, oh1;
                    tap_range(kh, sh, w.d[0], w.pb[0], H, OH, &oh0, &oh1);
                    for (int64_t kw = 0; kw < KW; kw++) {
                        int64_t ow0, ow1;
                        tap_range(kw, sw, w.d[1], w.pb[1], W, OW, &ow0, &ow1);
                        if (oh0 >= oh1 || ow0 >= ow1) continue;
                        float wv[4] = {0, 0, 0, 0};
                        for (int c = 0; c < q; c++)
                            wv[c] = wp[c * KH * KW + kh * KW + kw];
                        int64_t iw0 = kw * w.d[1] - w.pb[1];
                        int64_t row = (oh0 * sh + kh * w.d[0] - w.pb[0]) * W;
                        /* Whole rows at stride 1 (then iw0 is 0) are one
                         * contiguous run across rows. */
                        if (sh == 1 && sw == 1 && ow0 == 0 && ow1 == OW && OW == W) {
                            taps(q, wv, xp + row, H * W, yp + oh0 * OW, (oh1 - oh0) * OW);
                            continue;
                        }
                        for (int64_t oh = oh0; oh < oh1; oh++, row += sh * W) {
                            float *yr = yp + oh * OW;
                            if (sw == 1) {
                                taps(q, wv, xp + row + ow0 + iw0, H * W, yr + ow0, ow1 - ow0);
                                continue;
                            }
                            for (int c = 0; c < q; c++) {
                                const float *xr = xp + c * H * W + row;
                                for (int64_t ow = ow0; ow < ow1; ow++)
                                    yr[ow] += wv[c] * xr[ow * sw + iw0];
                            }
                        }
                    }
                }
            }
        }
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Pools                                                                     */
/* ------------------------------------------------------------------------ */

static int pool_window(const graph_node *n, const ref_args *a, window *w, char *err, size_t errlen)
{
    int rc = ref_need_inputs(n, a, 1, err, errlen);
    if (rc) return rc;
    const graph_tensor *xt = a->in[0], *yt = a->out[0];
    if (xt->dtype != TDM_DTYPE_FLOAT || yt->dtype != TDM_DTYPE_FLOAT)
        return ref_fail(n, err, errlen, TDM_ERR_UNSUPPORTED, "only float pooling");
    if (a->nout > 1 && a->out[1])
        return ref_fail(n, err, errlen, TDM_ERR_UNSUPPORTED, "MaxPool's Indices output");
    int ns = xt->rank - 2;
    const graph_attr *ks = graph_attr_get(n, "kernel_shape");
    if (ns < 1 || ns > 2 || !ks || ks->type != ATTR_INTS || ks->n != ns)
        return ref_fail(n, err, errlen, TDM_ERR_INVALID,
                        "needs kernel_shape for the %d spatial dims", ns);
    if (yt->rank != xt->rank || yt->dims[0] != xt->dims[0] || yt->dims[1] != xt->dims[1])
        return ref_fail(n, err, errlen, TDM_ERR_INVALID, "output is not N x C like the input");
    if (graph_attr_int(n, "storage_order", 0) != 0)
        return ref_fail(n, err, errlen, TDM_ERR_UNSUPPORTED, "storage_order 1");
    return window_init(n, xt, yt, ks->ints, graph_attr_int(n, "ceil_mode", 0) != 0, w, err, errlen);
}

static int pool(const graph_node *n, const ref_args *a, bool is_max, char *err, size_t errlen)
{
    window w;
    int rc = pool_window(n, a, &w, err, errlen);
    if (rc) return rc;
    bool include_pad = graph_attr_int(n, "count_include_pad", 0) != 0;
    int64_t planes = a->in[0]->dims[0] * a->in[0]->dims[1];
    int64_t H = w.in[0], W = w.in[1], OH = w.out[0], OW = w.out[1];
    const float *X = a->in_data[0];
    float *Y = a->out_data[0];

    for (int64_t p = 0; p < planes; p++) {
        const float *xp = X + p * H * W;
        float *yp = Y + p * OH * OW;
        for (int64_t oh = 0; oh < OH; oh++) {
            for (int64_t ow = 0; ow < OW; ow++) {
                int64_t h0 = oh * w.s[0] - w.pb[0], w0 = ow * w.s[1] - w.pb[1];
                float acc = is_max ? -INFINITY : 0.0f;
                int64_t inside = 0, padded = 0;
                for (int64_t kh = 0; kh < w.k[0]; kh++) {
                    int64_t ih = h0 + kh * w.d[0];
                    for (int64_t kw = 0; kw < w.k[1]; kw++) {
                        int64_t iw = w0 + kw * w.d[1];
                        /* count_include_pad counts the explicit pads, not the
                         * extra positions ceil_mode adds past them. */
                        if (ih < H + w.pe[0] && iw < W + w.pe[1]) padded++;
                        if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                        float v = xp[ih * W + iw];
                        inside++;
                        if (is_max)
                            acc = v > acc ? v : acc;
                        else
                            acc += v;
                    }
                }
                /* A ceil_mode window wholly past the input averages nothing:
                 * 0 rather than 0/0. */
                if (!is_max) {
                    int64_t div = include_pad ? padded : inside;
                    acc = div ? acc / (float)div : 0.0f;
                }
                yp[oh * OW + ow] = acc;
            }
        }
    }
    return 0;
}

int ref_maxpool(const graph_node *n, const ref_args *a, char *err, size_t errlen)
{
    return pool(n, a, true, err, errlen);
}

int ref_avgpool(const graph_node *n, const ref_args *a, char *err, size_t errlen)
{
    return pool(n, a, false, err, errlen);
}

int ref_global_pool(const graph_node *n, const ref_args *a, char *err, size_t errlen)
{
    int rc = ref_need_inputs(n, a, 1, err, errlen);
    if (rc) return rc;
    const graph_tensor *xt = a->in[0], *yt = a->out[0];
    if (xt->dtype != TDM_DTYPE_FLOAT || yt->dtype != TDM_DTYPE_FLOAT)
        return ref_fail(n, err, errlen, TDM_ERR_UNSUPPORTED, "only float pooling");
    if (xt->rank < 3 || graph_tensor_numel(yt) != xt->dims[0] * xt->dims[1])
        return ref_fail(n, err, errlen, TDM_ERR_INVALID,
                        "needs an N x C x spatial input and an N x C output");
    int64_t planes = xt->dims[0] * xt->dims[1], size = graph_tensor_numel(xt) / (planes ? planes : 1);
    const float *X = a->in_data[0];
    float *Y = a->out_data[0];
    for (int64_t p = 0; p < planes; p++) {
        const float *xp = X + p * size;
        float acc = n->op == OP_GLOBALMAXPOOL ? -INFINITY : 0.0f;
        for (int64_t i = 0; i < size; i++) {
            if (n->op == OP_GLOBALMAXPOOL)
                acc = xp[i] > acc ? xp[i] : acc;
            else
                acc += xp[i];
        }
        Y[p] = n->op == OP_GLOBALMAXPOOL ? acc : acc / (float)size;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Gemm and MatMul                                                           */
/* ------------------------------------------------------------------------ */

int ref_gemm(const graph_node *n, const ref_args *a, char *err, size_t errlen)
{
    int rc = ref_need_inputs(n, a, 2, err, errlen);
    if (rc) return rc;
    const graph_tensor *at = a->in[0], *bt = a->in[1], *ct = ref_opt_input(a, 2);
    const graph_tensor *yt = a->out[0];
    if (at->dtype != TDM_DTYPE_FLOAT || bt->dtype != TDM_DTYPE_FLOAT ||
        yt->dtype != TDM_DTYPE_FLOAT || (ct && ct->dtype != TDM_DTYPE_FLOAT))
        return ref_fail(n, err, errlen, TDM_ERR_UNSUPPORTED, "only float Gemm");
    if (at->rank != 2 || bt->rank != 2 || yt->rank != 2)
        return ref_fail(n, err, errlen, TDM_ERR_INVALID, "A, B and Y must be 2-D");
    bool ta = graph_attr_int(n, "transA", 0) != 0, tb = graph_attr_int(n, "transB", 0) != 0;
    float alpha = graph_attr_float(n, "alpha", 1.0f), beta = graph_attr_float(n, "beta", 1.0f);
    int64_t M = at->dims[ta ? 1 : 0], K = at->dims[ta ? 0 : 1];
    int64_t K2 = bt->dims[tb ? 1 : 0], N = bt->dims[tb ? 0 : 1];
    if (K != K2 || yt->dims[0] != M || yt->dims[1] != N)
        return ref_fail(n, err, errlen, TDM_ERR_INVALID,
                        "shapes do not fit: A %lldx%lld, B %lldx%lld, Y %lldx%lld",
                        (long long)at->dims[0], (long long)at->dims[1], (long long)bt->dims[0],
                        (long long)bt->dims[1], (long long)yt->dims[0], (long long)yt->dims[1]);
    /* C broadcasts to M x N: a scalar, [N], [1|M, 1|N]. */
    int64_t csm = 0, csn = 0;
    if (ct) {
        int64_t cm = ct->rank == 2 ? ct->dims[0] : 1;
        int64_t cn = ct->rank >= 1 ? ct->dims[ct->rank - 1] : 1;
        if (ct->rank > 2 || (cm != 1 && cm != M) || (cn != 1 && cn != N))
            return ref_fail(n, err, errlen, TDM_ERR_INVALID, "C does not broadcast to %lldx%lld",
                            (long long)M, (long long)N);
        csm = cm == 1 ? 0 : cn;
        csn = cn == 1 ? 0 : 1;
    }
    const float *A = a->in_data[0], *B = a->in_data[1], *C = ct ? a->in_data[2] : NULL;
    float *Y = a->out_data[0];

    for (int64_t i = 0; i < M; i++) {
        float *y = Y + i * N;
        if (tb) {
            for (int64_t j = 0; j < N; j++) {
                float acc = 0.0f;
                for (int64_t k = 0; k < K; k++)
                    acc += A[ta ? k * M + i : i * K + k] * B[j * K + k];
                y[j] = acc;
            }
        } else {
            for (int64_t j = 0; j < N; j++)
                y[j] = 0.0f;
            for (int64_t k = 0; k < K; k++) {
                float av = A[ta ? k * M + i : i * K + k];
                const float *b = B + k * N;
                for (int64_t j = 0; j < N; j++)
                    y[j] += av * b[j];
            }
        }
        for (int64_t j = 0; j < N; j++)
            y[j] = alpha * y[j] + (C ? beta * C[i * csm + j * csn] : 0.0f);
    }
    return 0;
}

int ref_matmul(const graph_node *n, const ref_args *a, char *err, size_t errlen)
{
    int rc = ref_need_inputs(n, a, 2, err, errlen);
    if (rc) return rc;
    const graph_tensor *at = a->in[0], *bt = a->in[1], *yt = a->out[0];
    if (at->dtype != TDM_DTYPE_FLOAT || bt->dtype != TDM_DTYPE_FLOAT ||
        yt->dtype != TDM_DTYPE_FLOAT)
        return ref_fail(n, err, errlen, TDM_ERR_UNSUPPORTED, "only float MatMul");
    int ra = at->rank, rb = bt->rank, ry = yt->rank;
    if (ra < 1 || rb < 1) return ref_fail(n, err, errlen, TDM_ERR_INVALID, "MatMul of a scalar");
    /* A 1-D A is a row [1, K], a 1-D B a column [K, 1]; that dim is dropped
     * from the output. */
    int64_t M = ra == 1 ? 1 : at->dims[ra - 2], K = at->dims[ra - 1];
    int64_t K2 = rb == 1 ? bt->dims[0] : bt->dims[rb - 2], N = rb == 1 ? 1 : bt->dims[rb - 1];
    int mat_dims = (ra > 1) + (rb > 1);
    int nb = ry - mat_dims, nba = ra > 1 ? ra - 2 : 0, nbb = rb > 1 ? rb - 2 : 0;
    bool ok = K == K2 && nb >= 0 && nb >= nba && nb >= nbb;
    if (ok && ra > 1) ok = yt->dims[nb] == M;
    if (ok && rb > 1) ok = yt->dims[ry - 1] == N;
    /* Batch strides (in matrices) of A and B over the output's batch dims. */
    int64_t sa[GRAPH_MAX_RANK], sb[GRAPH_MAX_RANK], ma = 1, mb = 1, batches = 1;
    for (int d = nb - 1; ok && d >= 0; d--) {
        int64_t od = yt->dims[d];
        int da = d - (nb - nba), db = d - (nb - nbb);
        int64_t ad = da >= 0 ? at->dims[da] : 1, bd = db >= 0 ? bt->dims[db] : 1;
        ok = (ad == od || ad == 1) && (bd == od || bd == 1);
        sa[d] = ad == 1 ? 0 : ma;
        sb[d] = bd == 1 ? 0 : mb;
        ma *= ad;
        mb *= bd;
        batches *= od;
    }
    if (!ok)
        return ref_fail(n, err, errlen, TDM_ERR_INVALID,
                        "shapes do not fit: A rank %d, B rank %d, Y rank %d", ra, rb, ry);
    const float *A = a->in_data[0], *B = a->in_data[1];
    float *Y = a->out_data[0];

    for (int64_t bi = 0; bi < batches; bi++) {
        int64_t oa = 0, ob = 0, rem = bi;
        for (int d = nb - 1; d >= 0; d--) {
            int64_t i = rem % yt->dims[d];
            rem /= yt->dims[d];
            oa += i * sa[d];
            ob += i * sb[d];
        }
        const float *Ap = A + oa * M * K, *Bp = B + ob * K * N;
        float *Yp = Y + bi * M * N;
        for (int64_t i = 0; i < M; i++) {
            float *y = Yp + i * N;
            for (int64_t j = 0; j < N; j++)
                y[j] = 0.0f;
            for (int64_t k = 0; k < K; k++) {
                float av = Ap[i * K + k];
                const float *b = Bp + k * N;
                for (int64_t j = 0; j < N; j++)
                    y[j] += av * b[j];
            }
        }
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* BatchNormalization, Softmax                                               */
/* ------------------------------------------------------------------------ */

int ref_batchnorm(const graph_node *n, const ref_args *a, char *err, size_t errlen)
{
    int rc = ref_need_inputs(n, a, 5, err, errlen);
    if (rc) return rc;
    const graph_tensor *xt = a->in[0], *yt = a->out[0];
    int64_t C = xt->rank >= 2 ? xt->dims[1] : -1;
    if (xt->dtype != TDM_DTYPE_FLOAT || yt->dtype != TDM_DTYPE_FLOAT)
        return ref_fail(n, err, errlen, TDM_ERR_UNSUPPORTED, "only float BatchNormalization");
    if (C < 0 || graph_tensor_numel(yt) != graph_tensor_numel(xt))
        return ref_fail(n, err, errlen, TDM_ERR_INVALID, "needs an N x C x ... input");
    for (int i = 1; i < 5; i++)
        if (a->in[i]->dtype != TDM_DTYPE_FLOAT || graph_tensor_numel(a->in[i]) != C)
            return ref_fail(n, err, errlen, TDM_ERR_INVALID, "input %d must be %lld floats", i,
                            (long long)C);
    /* Inference: the running mean and variance pass through unchanged; the
     * training-only saved statistics are not produced. */
    for (int i = 1; i < a->nout; i++) {
        if (!a->out[i]) continue;
        if (i > 2 || graph_tensor_numel(a->out[i]) != C || a->out[i]->dtype != TDM_DTYPE_FLOAT)
            return ref_fail(n, err, errlen, TDM_ERR_UNSUPPORTED, "training-mode output %d", i);
        memmove(a->out_data[i], a->in_data[i + 2], (size_t)C * sizeof(float));
    }
    float eps = graph_attr_float(n, "epsilon", 1e-5f);
    const float *X = a->in_data[0], *S = a->in_data[1], *Bv = a->in_data[2];
    const float *Mean = a->in_data[3], *Var = a->in_data[4];
    float *Y = a->out_data[0];
    int64_t N = xt->dims[0], inner = N > 0 && C > 0 ? graph_tensor_numel(xt) / (N * C) : 0;
    for (int64_t b = 0; b < N; b++) {
        for (int64_t c = 0; c < C; c++) {
            float k = S[c] / sqrtf(Var[c] + eps), o = Bv[c] - Mean[c] * k;
            const float *x = X + (b * C + c) * inner;
            float *y = Y + (b * C + c) * inner;
            for (int64_t i = 0; i < inner; i++)
                y[i] = x[i] * k + o;
        }
    }
    return 0;
}

int ref_softmax(const graph_node *n, const ref_args *a, char *err, size_t errlen)
{
    int rc = ref_need_inputs(n, a, 1, err, errlen);
    if (rc) return rc;
    const graph_tensor *xt = a->in[0], *yt = a->out[0];
    if (xt->dtype != TDM_DTYPE_FLOAT || yt->dtype != TDM_DTYPE_FLOAT ||
        graph_tensor_numel(xt) != graph_tensor_numel(yt))
        return ref_fail(n, err, errlen, TDM_ERR_UNSUPPORTED, "only float Softmax of equal shape");
    int axis;
    if (!ref_axis(graph_attr_int(n, "axis", -1), xt->rank ? xt->rank : 1, &axis))
        return ref_fail(n, err, errlen, TDM_ERR_INVALID, "axis out of range for rank %d", xt->rank);
    /* Before opset 13 the input is coerced to 2-D at axis and normalised over
     * each row; since, over the one axis. Both are "len elements at stride
     * inner", with inner == 1 in the coerced case. */
    int64_t outer = 1, len = 1, inner = 1;
    for (int d = 0; d < xt->rank; d++) {
        if (d < axis)
            outer *= xt->dims[d];
        else if (d == axis)
            len *= xt->dims[d];
        else if (graph_attr_int(n, "coerce_2d", 0))
            len *= xt->dims[d];
        else
            inner *= xt->dims[d];
    }
    const float *X = a->in_data[0];
    float *Y = a->out_data[0];
    for (int64_t o = 0; o < outer; o++) {
        for (int64_t i = 0; i < inner; i++) {
            const float *x = X + o * len * inner + i;
            float *y = Y + o * len * inner + i;
            float mx = -INFINITY, sum = 0.0f;
            for (int64_t j = 0; j < len; j++)
                mx = x[j * inner] > mx ? x[j * inner] : mx;
            for (int64_t j = 0; j < len; j++) {
                y[j * inner] = expf(x[j * inner] - mx);
                sum += y[j * inner];
            }
            for (int64_t j = 0; j < len; j++)
                y[j * inner] /= sum;
        }
    }
    return 0;
}
