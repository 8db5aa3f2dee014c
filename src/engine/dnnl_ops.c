/*
 * dnnl_ops: one builder per op family, turning a graph node into a oneDNN
 * primitive descriptor plus the layouts it reads and writes (dnnl_util.h).
 *
 * Layouts: convolutions choose their own (format_tag_any; on this CPU with
 * AVX-512 oneDNN 2.6 picks channels-last for f32 and bf16 alike, which also
 * keeps channel counts such as 24 or 144 free of block padding), except
 * next to depthwise convolutions, which run faster in nChw16c (see
 * wants_blocked); pooling, binary and element-wise ops take their input as
 * it comes, so a chain of convolutions, pools and additions never leaves
 * that layout. Ops that need plain row-major data (softmax, transpose,
 * matmul) ask for it and the planner converts.
 *
 * Post-ops (activations, fake quantisation, residual sums) are compiled by
 * dnnl_post.c. A standalone chain of element-wise ops runs as a binary add
 * of a zero scalar carrying the chain as post-ops: oneDNN 2.6 runs eltwise
 * primitives with post-ops only in its reference code, binary ones in JIT
 * code.
 *
 * Int8: a convolution between two fake quantisations runs as a oneDNN int8
 * convolution reading and writing the 8-bit forms of its tensors (see
 * dnnl_int8.h); its post-op chain is the same compiled chain, started in
 * the units of the first fake quantisation and ended on the integers.
 */
#include <math.h>
#include <string.h>

#include "dnnl_int8.h"
#include "dnnl_post.h"
#include "ops.h"
#include "tandem/engine.h"

/* ------------------------------------------------------------------------ */
/* Descriptors                                                               */
/* ------------------------------------------------------------------------ */

static bool any_md(int rank, const int64_t *dims, dnnl_data_type_t dt, dnnl_memory_desc_t *md)
{
    dnnl_dims_t d;
    for (int i = 0; i < rank; i++)
        d[i] = dims[i];
    return dnnl_memory_desc_init_by_tag(md, rank, d, dt, dnnl_format_tag_any) == dnnl_success;
}

/* A zero that element-wise chains add to their input: the binary primitive
 * carrying a chain as post-ops needs a second operand. Never written. */
static const float zero_scalar[1];

/* The descriptor of zero_scalar broadcast at rank nd. */
static bool zero_md(int nd, dnnl_memory_desc_t *md)
{
    int64_t ones[DNNL_MAX_NDIMS];
    for (int i = 0; i < DNNL_MAX_NDIMS; i++)
        ones[i] = 1;
    return dn_plain_dims(nd, ones, dnnl_f32, md);
}

static const dnnl_memory_desc_t *query_md(dnnl_primitive_desc_t pd, dnnl_query_t what)
{
    return dnnl_primitive_desc_query_md(pd, what, 0);
}

static bool same_dims(const graph_tensor *a, const graph_tensor *b)
{
    if (a->rank != b->rank) return false;
    for (int i = 0; i < a->rank; i++)
        if (a->dims[i] != b->dims[i]) return false;
    return true;
}

/* The layout an op that follows its input should read x in: the layout x is
 * in now when it is a float one, that layout in f32 when x is in an 8-bit
 * form (dnnl_int8.h), else plain f32. */
static bool follow_md(const dn_ctx *c, const graph *g, int x, dnnl_memory_desc_t *md)
{
    const dnnl_memory_desc_t *cur = c->plain ? NULL : c->layout(c->planner, x);
    bool rank_ok = cur && cur->ndims == (g->tensors[x].rank > 0 ? g->tensors[x].rank : 1);
    if (rank_ok && (cur->data_type == dnnl_f32 || cur->data_type == dnnl_bf16)) {
        *md = *cur;
        return true;
    }
    if (rank_ok && g->tensors[x].dtype == TDM_DTYPE_FLOAT &&
        (cur->data_type == dnnl_u8 || cur->data_type == dnnl_s8) &&
        dnq_retype(cur, dnnl_f32, md))
        return true;
    return dn_plain_md(&g->tensors[x], dnnl_f32, md);
}

static int make_attr(const graph *g, const graph_node *n, const citem *pre, int npre,
                     bool allow_sum, dn_prim *p, dnnl_primitive_attr_t *out)
{
    return dn_attr(g, n, pre, npre, allow_sum, NULL, p, out);
}

/* Creates the primitive descriptor; refuses oneDNN's reference
 * implementations unless the caller already fell back to plain layouts (then
 * a parallel reference beats our serial one). */
static int create_pd(const dn_ctx *c, const void *desc, dnnl_primitive_attr_t attr,
                     dnnl_primitive_desc_t *pd)
{
    dnnl_status_t s = dnnl_primitive_desc_create(pd, desc, attr, c->eng, NULL);
    dnnl_primitive_attr_destroy(attr);
    if (s != dnnl_success) return TDM_ERR_UNSUPPORTED;
    const char *impl = NULL;
    if (!c->plain && dnnl_primitive_desc_query(*pd, dnnl_query_impl_info_str, 0, &impl) ==
                         dnnl_success &&
        impl && strncmp(impl, "ref", 3) == 0) {
        dnnl_primitive_desc_destroy(*pd);
        *pd = NULL;
        return TDM_ERR_UNSUPPORTED;
    }
    return 0;
}

static int ints_attr(const graph_node *n, const char *name, int len, int64_t *v)
{
    const graph_attr *a = graph_attr_get(n, name);
    if (!a) return 0;
    if (a->type != ATTR_INTS || a->n != len) return TDM_ERR_UNSUPPORTED;
    for (int i = 0; i < len; i++)
        v[i] = a->ints[i];
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Convolution                                                               */
/* ------------------------------------------------------------------------ */

/* One input channel per group. */
static bool is_depthwise(const graph *g, const graph_node *n)
{
    if (n->op != OP_CONV || n->ninputs < 2) return false;
    const graph_tensor *w = &g->tensors[n->inputs[1]];
    return graph_attr_int(n, "group", 1) > 1 && w->rank == 4 && w->dims[1] == 1;
}

/* Whether convolution n reads the output of a depthwise one. */
static bool reads_depthwise(const graph *g, const graph_node *n)
{
    int producer = g->tensors[n->inputs[0]].producer;
    return producer >= 0 && is_depthwise(g, &g->nodes[producer]);
}

/* Whether a depthwise convolution reads the output of node n. */
static bool feeds_depthwise(const graph *g, const graph_node *n)
{
    for (int i = 0; i < g->nnodes; i++)
        if (!g->nodes[i].dead && g->nodes[i].inputs[0] == n->outputs[0] &&
            is_depthwise(g, &g->nodes[i]))
            return true;
    return false;
}

/* Whether convolution n runs in the 16-channel blocked layout instead of the
 * one oneDNN would pick (nhwc, for its brgconv kernels). In oneDNN 2.6 the
 * blocked depthwise kernel beats the nhwc one, and the 1x1 convolutions on
 * either side of a depthwise one run faster blocked too, with no reorder in
 * between: MobileNetV2's primitives take 5 % less time in all (sum of
 * per-primitive minima, one thread, ONEDNN_VERBOSE). ResNet50's convolutions
 * are 15-30 % faster in nhwc, and long fake-quantisation chains (int8 models
 * run in f32) are slower blocked (8.2 against 6.6 ms), so there oneDNN
 * chooses.
 *
 * One exception: a convolution that feeds a depthwise one but does not read
 * one (MobileNetV2's expanding 1x1, 160 to 960 channels) on a map of 7x7 or
 * less. There the blocked 1x1 kernel is slow (240-260 us on one thread,
 * against 170-190 us for brgconv in nhwc), more than the reorder to the
 * blocked layout costs (12 us); at 14x14 the two kernels are even. */
static bool wants_blocked(const graph *g, const graph_node *n)
{
    enum { SMALL_MAP = 7 * 7 };
    for (int i = 0; i < n->npost; i++)
        if (n->post[i].kind != POST_RELU && n->post[i].kind != POST_CLIP &&
            n->post[i].kind != POST_SUM)
            return false;
    if (is_depthwise(g, n) || reads_depthwise(g, n)) return true;
    const graph_tensor *y = &g->tensors[n->outputs[0]];
    if (y->rank == 4 && y->dims[2] * y->dims[3] <= SMALL_MAP) return false;
    return feeds_depthwise(g, n);
}

/* A convolution activation's layout: nChw16c where wants_blocked() asks for
 * it and the channels fill whole blocks, else oneDNN's choice. */
static bool conv_md(bool blocked, const int64_t *dims, dnnl_data_type_t dt, dnnl_memory_desc_t *md)
{
    dnnl_dims_t d = {dims[0], dims[1], dims[2], dims[3]};
    dnnl_format_tag_t tag = blocked && dims[1] % 16 == 0 ? dnnl_aBcd16b : dnnl_format_tag_any;
    return dnnl_memory_desc_init_by_tag(md, 4, d, dt, tag) == dnnl_success;
}

/* The grids of a convolution that runs in int8 (see dnnl_int8.h): src x and
 * dst y, and the weights' one scale. */
typedef struct qconv {
    dnq_params x, y;
    float ws;
} qconv;

/* Whether node n (a Conv) may run in int8: its input lies on a grid, its
 * weights are 8-bit integers times one scale, and its output ends in a fake
 * quantisation. Only with oneDNN's own layouts, in f32 mode. */
static bool conv_int8(const dn_ctx *c, const graph *g, const graph_node *n, qconv *q)
{
    if (c->bf16 || c->plain || n->npost < 1) return false;
    const graph_post *last = &n->post[n->npost - 1];
    return last->kind == POST_FAKEQUANT && dnq_grid(last->a, last->b, last->c, last->d, &q->y) &&
           dnq_tensor_params(g, n->inputs[0], &q->x) &&
           dnq_weight_scale(&g->tensors[n->inputs[1]], &q->ws);
}

/* The attribute of an int8 convolution: oneDNN computes
 * os * (sum((x_q - x_zp) * w_q) + bias) and then the post-ops, so the
 * output scale takes the convolution to the units of the first fake
 * quantisation (where rounding happens) and the bias, converted, is in
 * units of x_scale * w_scale. */
static int conv_int8_attr(const graph *g, const graph_node *n, const qconv *q, dn_prim *p,
                          dnnl_primitive_attr_t *out)
{
    qchain qc = {.k0 = q->y.scale, .dst_dt = q->y.dt};
    for (int i = 0; i < n->npost; i++)
        if (n->post[i].kind == POST_FAKEQUANT) {
            qc.k0 = n->post[i].a;
            break;
        }
    dnnl_primitive_attr_t attr;
    int rc = dn_attr(g, n, NULL, 0, true, &qc, p, &attr);
    if (rc) return rc;
    float os = q->x.scale * q->ws / qc.k0;
    if (!isfinite(os) || !(os > 0.0f) ||
        dnnl_primitive_attr_set_output_scales(attr, 1, 0, &os) != dnnl_success ||
        (q->x.zp &&
         dnnl_primitive_attr_set_zero_points(attr, DNNL_ARG_SRC, 1, 0, &q->x.zp) != dnnl_success) ||
        (q->y.zp &&
         dnnl_primitive_attr_set_zero_points(attr, DNNL_ARG_DST, 1, 0, &q->y.zp) != dnnl_success)) {
        dnnl_primitive_attr_destroy(attr);
        return TDM_ERR_UNSUPPORTED;
    }
    *out = attr;
    return 0;
}

/* A convolution in f32 (or bf16), or with q in int8 (in oneDNN's layout:
 * its int8 kernels are the nhwc brgconv ones). */
static int build_conv_as(const dn_ctx *c, const graph *g, const graph_node *n, bool blocked,
                         const qconv *q, dn_prim *p)
{
    int xi = n->inputs[0], wi = n->inputs[1], bi = n->ninputs > 2 ? n->inputs[2] : -1;
    int yi = n->outputs[0];
    if (!dn_is_float(g, xi) || !dn_is_float(g, wi) || !dn_is_float(g, yi)) return TDM_ERR_UNSUPPORTED;
    const graph_tensor *x = &g->tensors[xi], *w = &g->tensors[wi], *y = &g->tensors[yi];
    const graph_tensor *b = bi >= 0 ? &g->tensors[bi] : NULL;
    if (x->rank != 4 || w->rank != 4 || y->rank != 4 || !w->data || x->data)
        return TDM_ERR_UNSUPPORTED;
    int64_t G = graph_attr_int(n, "group", 1), OC = w->dims[0];
    if (G < 1 || OC % G || x->dims[1] != w->dims[1] * G || y->dims[1] != OC)
        return TDM_ERR_UNSUPPORTED;
    if (b && (!b->data || b->dtype != TDM_DTYPE_FLOAT || graph_tensor_numel(b) != OC))
        return TDM_ERR_UNSUPPORTED;
    if (strcmp(graph_attr_string(n, "auto_pad", "NOTSET"), "NOTSET") != 0)
        return TDM_ERR_UNSUPPORTED;
    int64_t ks[2] = {w->dims[2], w->dims[3]}, st[2] = {1, 1}, dl[2] = {1, 1}, pads[4] = {0};
    if (ints_attr(n, "kernel_shape", 2, ks) || ints_attr(n, "strides", 2, st) ||
        ints_attr(n, "dilations", 2, dl) || ints_attr(n, "pads", 4, pads))
        return TDM_ERR_UNSUPPORTED;
    if (ks[0] != w->dims[2] || ks[1] != w->dims[3]) return TDM_ERR_UNSUPPORTED;
    dnnl_dims_t strides, dil, pl, pr;
    for (int i = 0; i < 2; i++) {
        if (st[i] < 1 || dl[i] < 1 || pads[i] < 0 || pads[i + 2] < 0) return TDM_ERR_UNSUPPORTED;
        int64_t span = (ks[i] - 1) * dl[i] + 1;
        if ((x->dims[2 + i] + pads[i] + pads[i + 2] - span) / st[i] + 1 != y->dims[2 + i])
            return TDM_ERR_UNSUPPORTED;
        strides[i] = st[i];
        dil[i] = dl[i] - 1;
        pl[i] = pads[i];
        pr[i] = pads[i + 2];
    }
    dnnl_data_type_t dt = c->bf16 ? dnnl_bf16 : dnnl_f32;
    dnnl_data_type_t xdt = q ? q->x.dt : dt, ydt = q ? q->y.dt : dt, wdt = q ? dnnl_s8 : dt;
    dnnl_memory_desc_t src, wt, wt_user, bias, dst;
    int64_t wd[5] = {G, OC / G, w->dims[1], w->dims[2], w->dims[3]};
    const int64_t *wdims = G > 1 ? wd : w->dims;
    int wrank = G > 1 ? 5 : 4;
    bool ok = c->plain ? dn_plain_md(x, xdt, &src) && dn_plain_md(y, ydt, &dst)
                       : conv_md(blocked && !q, x->dims, xdt, &src) &&
                             conv_md(blocked && !q, y->dims, ydt, &dst);
    if (!ok || !any_md(wrank, wdims, wdt, &wt) ||
        !dn_plain_dims(wrank, wdims, dnnl_f32, &wt_user) || !dn_plain_dims(1, &OC, dnnl_f32, &bias))
        return TDM_ERR_UNSUPPORTED;
    dnnl_convolution_desc_t cd;
    if (dnnl_dilated_convolution_forward_desc_init(
            &cd, dnnl_forward_inference, dnnl_convolution_direct, &src, &wt, b ? &bias : NULL, &dst,
            strides, dil, pl, pr) != dnnl_success)
        return TDM_ERR_UNSUPPORTED;
    dnnl_primitive_attr_t attr;
    int rc = q ? conv_int8_attr(g, n, q, p, &attr) : make_attr(g, n, NULL, 0, true, p, &attr);
    if (rc) return rc;
    if ((rc = create_pd(c, &cd, attr, &p->pd))) return rc;
    dn_add_input(p, DNNL_ARG_SRC, xi)->md = *query_md(p->pd, dnnl_query_src_md);
    dn_add_const(p, DNNL_ARG_WEIGHTS, wi, w->data, &wt_user, query_md(p->pd, dnnl_query_weights_md));
    if (q) p->in[p->nin - 1].qscale = 1.0f / q->ws;
    if (b) dn_add_const(p, DNNL_ARG_BIAS, bi, b->data, &bias, &bias);
    if (b && q) p->in[p->nin - 1].qscale = 1.0f / (q->x.scale * q->ws);
    p->dst_md = *query_md(p->pd, dnnl_query_dst_md);
    return 0;
}

/* In int8 when it may and oneDNN has a fast kernel for it, else in f32. */
static int build_conv(const dn_ctx *c, const graph *g, const graph_node *n, bool blocked,
                      dn_prim *p)
{
    qconv q;
    if (conv_int8(c, g, n, &q)) {
        int rc = build_conv_as(c, g, n, false, &q, p);
        if (rc != TDM_ERR_UNSUPPORTED) return rc;
        memset(p, 0, sizeof *p);
        p->sum_tensor = -1;
    }
    return build_conv_as(c, g, n, blocked, NULL, p);
}

/* ------------------------------------------------------------------------ */
/* Pooling                                                                   */
/* ------------------------------------------------------------------------ */

static int build_pool(const dn_ctx *c, const graph *g, const graph_node *n, dn_prim *p)
{
    int xi = n->inputs[0], yi = n->outputs[0];
    if (!dn_is_float(g, xi) || !dn_is_float(g, yi)) return TDM_ERR_UNSUPPORTED;
    const graph_tensor *x = &g->tensors[xi], *y = &g->tensors[yi];
    if (x->rank != 4 || y->rank != 4 || x->data || n->npost) return TDM_ERR_UNSUPPORTED;
    if (n->noutputs > 1 && n->outputs[1] >= 0) return TDM_ERR_UNSUPPORTED;
    int64_t ks[2] = {x->dims[2], x->dims[3]}, st[2] = {1, 1}, dl[2] = {1, 1}, pads[4] = {0};
    dnnl_alg_kind_t alg = dnnl_pooling_max;
    bool global = n->op == OP_GLOBALAVGPOOL || n->op == OP_GLOBALMAXPOOL;
    if (n->op == OP_GLOBALAVGPOOL || n->op == OP_AVGPOOL)
        alg = graph_attr_int(n, "count_include_pad", 0) ? dnnl_pooling_avg_include_padding
                                                        : dnnl_pooling_avg_exclude_padding;
    if (!global) {
        const graph_attr *k = graph_attr_get(n, "kernel_shape");
        if (!k || k->type != ATTR_INTS || k->n != 2 || graph_attr_int(n, "storage_order", 0))
            return TDM_ERR_UNSUPPORTED;
        if (strcmp(graph_attr_string(n, "auto_pad", "NOTSET"), "NOTSET") != 0)
            return TDM_ERR_UNSUPPORTED;
        if (ints_attr(n, "kernel_shape", 2, ks) || ints_attr(n, "strides", 2, st) ||
            ints_attr(n, "dilations", 2, dl) || ints_attr(n, "pads", 4, pads))
            return TDM_ERR_UNSUPPORTED;
    }
    dnnl_dims_t kernel, strides, dil, pl, pr;
    for (int i = 0; i < 2; i++) {
        if (ks[i] < 1 || st[i] < 1 || dl[i] < 1 || pads[i] < 0 || pads[i + 2] < 0)
            return TDM_ERR_UNSUPPORTED;
        int64_t span = (ks[i] - 1) * dl[i] + 1, in = x->dims[2 + i], out = y->dims[2 + i];
        int64_t floor_out = (in + pads[i] + pads[i + 2] - span) / st[i] + 1;
        int64_t end = pads[i + 2];
        if (out != floor_out) {
            /* ceil_mode: the last window starts inside the input and is cut
             * short; extend the end padding so oneDNN makes that window too.
             * Only right where padding is never counted. */
            if (out != floor_out + 1 || alg == dnnl_pooling_avg_include_padding)
                return TDM_ERR_UNSUPPORTED;
            end = (out - 1) * st[i] + span - in - pads[i];
        }
        kernel[i] = ks[i];
        strides[i] = st[i];
        dil[i] = dl[i] - 1;
        pl[i] = pads[i];
        pr[i] = end;
    }
    dnnl_memory_desc_t src, dst;
    if (!follow_md(c, g, xi, &src) || !any_md(4, y->dims, src.data_type, &dst))
        return TDM_ERR_UNSUPPORTED;
    dnnl_pooling_v2_desc_t pd;
    if (dnnl_pooling_v2_forward_desc_init(&pd, dnnl_forward_inference, alg, &src, &dst, strides,
                                          kernel, dil, pl, pr) != dnnl_success)
        return TDM_ERR_UNSUPPORTED;
    dnnl_primitive_attr_t attr;
    int rc = make_attr(g, n, NULL, 0, false, p, &attr);
    if (rc) return rc;
    if ((rc = create_pd(c, &pd, attr, &p->pd))) return rc;
    dn_add_input(p, DNNL_ARG_SRC, xi)->md = *query_md(p->pd, dnnl_query_src_md);
    p->dst_md = *query_md(p->pd, dnnl_query_dst_md);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Gemm (inner product) and MatMul                                           */
/* ------------------------------------------------------------------------ */

static int build_gemm(const dn_ctx *c, const graph *g, const graph_node *n, dn_prim *p)
{
    int ai = n->inputs[0], bi = n->inputs[1], ci = n->ninputs > 2 ? n->inputs[2] : -1;
    int yi = n->outputs[0];
    if (!dn_is_float(g, ai) || !dn_is_float(g, bi) || !dn_is_float(g, yi)) return TDM_ERR_UNSUPPORTED;
    const graph_tensor *a = &g->tensors[ai], *b = &g->tensors[bi], *y = &g->tensors[yi];
    const graph_tensor *cc = ci >= 0 ? &g->tensors[ci] : NULL;
    if (a->rank != 2 || b->rank != 2 || y->rank != 2 || a->data || !b->data)
        return TDM_ERR_UNSUPPORTED;
    bool tb = graph_attr_int(n, "transB", 0) != 0;
    if (graph_attr_int(n, "transA", 0) || graph_attr_float(n, "alpha", 1.0f) != 1.0f)
        return TDM_ERR_UNSUPPORTED;
    int64_t M = a->dims[0], K = a->dims[1], N = tb ? b->dims[0] : b->dims[1];
    if ((tb ? b->dims[1] : b->dims[0]) != K || y->dims[0] != M || y->dims[1] != N)
        return TDM_ERR_UNSUPPORTED;
    if (cc && (!cc->data || cc->dtype != TDM_DTYPE_FLOAT || graph_tensor_numel(cc) != N ||
               cc->dims[cc->rank - 1] != N || graph_attr_float(n, "beta", 1.0f) != 1.0f))
        return TDM_ERR_UNSUPPORTED;
    dnnl_data_type_t dt = c->bf16 ? dnnl_bf16 : dnnl_f32;
    dnnl_memory_desc_t src, wt, wt_user, bias, dst;
    dnnl_dims_t wdims = {N, K}, wstr = {tb ? K : 1, tb ? 1 : N};
    int64_t adims[2] = {M, K};
    /* For one row, oneDNN 2.6's gemm kernel on plain weights beats its
     * brgemm on blocked ones (MobileNetV2's 1280x1000 classifier, one
     * thread: 0.44-0.52 against 0.56-0.59 ms); from 4 rows on, brgemm wins. */
    bool gemv = M == 1 && !c->bf16;
    if (!dn_plain_dims(2, adims, dt, &src) ||
        !(gemv ? dnnl_memory_desc_init_by_tag(&wt, 2, wdims, dt, dnnl_ab) == dnnl_success
               : any_md(2, wdims, dt, &wt)) ||
        !dn_plain_dims(1, &N, dnnl_f32, &bias) || !dn_plain_md(y, dnnl_f32, &dst) ||
        dnnl_memory_desc_init_by_strides(&wt_user, 2, wdims, dnnl_f32, wstr) != dnnl_success)
        return TDM_ERR_UNSUPPORTED;
    dnnl_inner_product_desc_t ipd;
    if (dnnl_inner_product_forward_desc_init(&ipd, dnnl_forward_inference, &src, &wt,
                                             cc ? &bias : NULL, &dst) != dnnl_success)
        return TDM_ERR_UNSUPPORTED;
    dnnl_primitive_attr_t attr;
    int rc = make_attr(g, n, NULL, 0, false, p, &attr);
    if (rc) return rc;
    if ((rc = create_pd(c, &ipd, attr, &p->pd))) return rc;
    dn_add_input(p, DNNL_ARG_SRC, ai)->md = *query_md(p->pd, dnnl_query_src_md);
    dn_add_const(p, DNNL_ARG_WEIGHTS, bi, b->data, &wt_user, query_md(p->pd, dnnl_query_weights_md));
    if (cc) dn_add_const(p, DNNL_ARG_BIAS, ci, cc->data, &bias, &bias);
    p->dst_md = *query_md(p->pd, dnnl_query_dst_md);
    return 0;
}

/* Dims of t extended with leading ones to rank r. */
static void extend(const graph_tensor *t, int r, int64_t *d)
{
    int off = r - t->rank;
    for (int i = 0; i < r; i++)
        d[i] = i < off ? 1 : t->dims[i - off];
}

/* A MatMul with constant weights reading a tensor on an 8-bit grid: the
 * grid and the weights' one scale (see dnnl_int8.h). Its output stays f32. */
typedef struct qmatmul {
    dnq_params x;
    float ws;
} qmatmul;

static bool matmul_int8(const dn_ctx *c, const graph *g, const graph_node *n, qmatmul *q)
{
    return !c->bf16 && !c->plain && g->tensors[n->inputs[1]].data &&
           dnq_tensor_params(g, n->inputs[0], &q->x) &&
           dnq_weight_scale(&g->tensors[n->inputs[1]], &q->ws);
}

/* Output scale and source zero point of an int8 MatMul; its post-ops then
 * see the true f32 product. */
static int matmul_int8_attr(const qmatmul *q, dnnl_primitive_attr_t attr)
{
    float os = q->x.scale * q->ws;
    if (!isfinite(os) || !(os > 0.0f) ||
        dnnl_primitive_attr_set_output_scales(attr, 1, 0, &os) != dnnl_success ||
        (q->x.zp &&
         dnnl_primitive_attr_set_zero_points(attr, DNNL_ARG_SRC, 1, 0, &q->x.zp) != dnnl_success)) {
        dnnl_primitive_attr_destroy(attr);
        return TDM_ERR_UNSUPPORTED;
    }
    return 0;
}

static int build_matmul_as(const dn_ctx *c, const graph *g, const graph_node *n,
                           const qmatmul *q, dn_prim *p)
{
    int ai = n->inputs[0], bi = n->inputs[1], yi = n->outputs[0];
    if (!dn_is_float(g, ai) || !dn_is_float(g, bi) || !dn_is_float(g, yi)) return TDM_ERR_UNSUPPORTED;
    const graph_tensor *a = &g->tensors[ai], *b = &g->tensors[bi], *y = &g->tensors[yi];
    if (a->rank < 2 || b->rank < 2 || a->data || y->rank != (a->rank > b->rank ? a->rank : b->rank))
        return TDM_ERR_UNSUPPORTED;
    int r = y->rank;
    int64_t ad[GRAPH_MAX_RANK], bd[GRAPH_MAX_RANK];
    extend(a, r, ad);
    extend(b, r, bd);
    dnnl_data_type_t xdt = q ? q->x.dt : dnnl_f32;
    dnnl_memory_desc_t src, src_view, wt, wt_user, dst;
    if (!dn_plain_md(a, xdt, &src) || !dn_plain_dims(r, ad, xdt, &src_view) ||
        !dn_plain_dims(r, bd, dnnl_f32, &wt_user) || !dn_plain_dims(r, y->dims, dnnl_f32, &dst))
        return TDM_ERR_UNSUPPORTED;
    wt = wt_user;
    if (b->data && !any_md(r, bd, q ? dnnl_s8 : dnnl_f32, &wt)) return TDM_ERR_UNSUPPORTED;
    dnnl_matmul_desc_t md;
    if (dnnl_matmul_desc_init(&md, &src_view, &wt, NULL, &dst) != dnnl_success)
        return TDM_ERR_UNSUPPORTED;
    dnnl_primitive_attr_t attr;
    int rc = make_attr(g, n, NULL, 0, false, p, &attr);
    if (rc) return rc;
    if (q && (rc = matmul_int8_attr(q, attr))) return rc;
    if ((rc = create_pd(c, &md, attr, &p->pd))) return rc;
    dn_input *in = dn_add_input(p, DNNL_ARG_SRC, ai);
    in->md = src;
    in->exec_md = src_view;
    if (b->data) {
        dn_add_const(p, DNNL_ARG_WEIGHTS, bi, b->data, &wt_user,
                  query_md(p->pd, dnnl_query_weights_md));
        if (q) p->in[p->nin - 1].qscale = 1.0f / q->ws;
    } else {
        in = dn_add_input(p, DNNL_ARG_WEIGHTS, bi);
        if (!dn_plain_md(b, dnnl_f32, &in->md)) return TDM_ERR_UNSUPPORTED;
        in->exec_md = wt_user;
    }
    if (!dn_plain_md(y, dnnl_f32, &p->dst_md)) return TDM_ERR_UNSUPPORTED;
    p->dst_exec_md = dst;
    return 0;
}

/* In int8 when it may and oneDNN has a fast kernel for it, else in f32. */
static int build_matmul(const dn_ctx *c, const graph *g, const graph_node *n, dn_prim *p)
{
    qmatmul q;
    if (matmul_int8(c, g, n, &q)) {
        int rc = build_matmul_as(c, g, n, &q, p);
        if (rc != TDM_ERR_UNSUPPORTED) return rc;
        if (p->pd) dnnl_primitive_desc_destroy(p->pd);
        memset(p, 0, sizeof *p);
        p->sum_tensor = -1;
    }
    return build_matmul_as(c, g, n, NULL, p);
}

/* ------------------------------------------------------------------------ */
/* Element-wise: binary, unary chains                                        */
/* ------------------------------------------------------------------------ */

static int binary_alg(graph_op op, dnnl_alg_kind_t *alg, bool *commutes)
{
    *commutes = true;
    switch (op) {
    case OP_ADD:
        *alg = dnnl_binary_add;
        return 0;
    case OP_MUL:
        *alg = dnnl_binary_mul;
        return 0;
    case OP_MIN:
        *alg = dnnl_binary_min;
        return 0;
    case OP_MAX:
        *alg = dnnl_binary_max;
        return 0;
    case OP_SUB:
        *commutes = false;
        *alg = dnnl_binary_sub;
        return 0;
    case OP_DIV:
        *commutes = false;
        *alg = dnnl_binary_div;
        return 0;
    default:
        return TDM_ERR_UNSUPPORTED;
    }
}

/* The second operand of a binary op: the same layout as src0 when it has
 * the full shape, else plain with its dims extended to the output's rank
 * (oneDNN broadcasts the ones). */
static int binary_src1(const graph *g, int ti, const graph_tensor *y,
                       const dnnl_memory_desc_t *src0, dn_prim *p, dnnl_memory_desc_t *view)
{
    const graph_tensor *t = &g->tensors[ti];
    int64_t d[GRAPH_MAX_RANK];
    if (t->rank > y->rank) return TDM_ERR_UNSUPPORTED;
    extend(t, y->rank, d);
    for (int i = 0; i < y->rank; i++)
        if (d[i] != y->dims[i] && d[i] != 1) return TDM_ERR_UNSUPPORTED;
    dnnl_memory_desc_t own;
    if (!dn_plain_md(t, dnnl_f32, &own)) return TDM_ERR_UNSUPPORTED;
    if (same_dims(t, y)) {
        *view = *src0;
        if (t->data)
            dn_add_const(p, DNNL_ARG_SRC_1, ti, t->data, &own, src0);
        else
            dn_add_input(p, DNNL_ARG_SRC_1, ti)->md = *src0;
        return 0;
    }
    if (!dn_plain_dims(y->rank, d, dnnl_f32, view)) return TDM_ERR_UNSUPPORTED;
    if (t->data) {
        dn_add_const(p, DNNL_ARG_SRC_1, ti, t->data, view, view);
    } else {
        dn_input *in = dn_add_input(p, DNNL_ARG_SRC_1, ti);
        in->md = own;
        in->exec_md = *view;
    }
    return 0;
}

static int build_binary(const dn_ctx *c, const graph *g, const graph_node *n, dn_prim *p)
{
    dnnl_alg_kind_t alg;
    bool commutes;
    if (binary_alg(n->op, &alg, &commutes) || n->ninputs != 2) return TDM_ERR_UNSUPPORTED;
    int ai = n->inputs[0], bi = n->inputs[1], yi = n->outputs[0];
    if (!dn_is_float(g, ai) || !dn_is_float(g, bi) || !dn_is_float(g, yi)) return TDM_ERR_UNSUPPORTED;
    const graph_tensor *y = &g->tensors[yi];
    if (y->rank < 1) return TDM_ERR_UNSUPPORTED;
    /* oneDNN broadcasts only its second operand; prefer a computed tensor
     * first so it keeps its layout. */
    bool a_full = same_dims(&g->tensors[ai], y), b_full = same_dims(&g->tensors[bi], y);
    if (commutes && b_full && (!a_full || (g->tensors[ai].data && !g->tensors[bi].data))) {
        int t = ai;
        ai = bi;
        bi = t;
        a_full = true;
    }
    if (!a_full) return TDM_ERR_UNSUPPORTED;
    const graph_tensor *a = &g->tensors[ai];
    dnnl_memory_desc_t src0, src1, dst;
    if (a->data) {
        if (!dn_plain_md(a, dnnl_f32, &src0)) return TDM_ERR_UNSUPPORTED;
    } else if (!follow_md(c, g, ai, &src0)) {
        return TDM_ERR_UNSUPPORTED;
    }
    if (a->data)
        dn_add_const(p, DNNL_ARG_SRC_0, ai, a->data, &src0, &src0);
    else
        dn_add_input(p, DNNL_ARG_SRC_0, ai)->md = src0;
    int rc = binary_src1(g, bi, y, &src0, p, &src1);
    if (rc) return rc;
    if (!any_md(y->rank, y->dims, src0.data_type, &dst)) return TDM_ERR_UNSUPPORTED;
    dnnl_binary_desc_t bd;
    if (dnnl_binary_desc_init(&bd, alg, &src0, &src1, &dst) != dnnl_success)
        return TDM_ERR_UNSUPPORTED;
    dnnl_primitive_attr_t attr;
    if ((rc = make_attr(g, n, NULL, 0, false, p, &attr))) return rc;
    if ((rc = create_pd(c, &bd, attr, &p->pd))) return rc;
    p->dst_md = *query_md(p->pd, dnnl_query_dst_md);
    return 0;
}

/* Unary op n as one chain item (false for ops oneDNN does not have). */
static bool unary_item(const graph *g, const graph_node *n, citem *c)
{
    memset(c, 0, sizeof *c);
    c->kind = CI_RAW;
    c->tensor = -1;
    switch (n->op) {
    case OP_RELU:
        c->kind = CI_RELU;
        return true;
    case OP_CLIP:
        c->kind = CI_CLIP;
        return ops_clip_bounds(n, &c->a, &c->b);
    case OP_LEAKYRELU:
        c->alg = dnnl_eltwise_relu;
        c->a = graph_attr_float(n, "alpha", 0.01f);
        return true;
    case OP_SIGMOID:
        c->alg = dnnl_eltwise_logistic;
        return true;
    case OP_TANH:
        c->alg = dnnl_eltwise_tanh;
        return true;
    case OP_EXP:
        c->alg = dnnl_eltwise_exp;
        return true;
    case OP_SQRT:
        c->alg = dnnl_eltwise_sqrt;
        return true;
    case OP_ABS:
        c->alg = dnnl_eltwise_abs;
        return true;
    case OP_NEG:
        c->alg = dnnl_eltwise_linear;
        c->a = -1.0f;
        return true;
    case OP_FAKEQUANT:
        c->kind = CI_FQ;
        c->a = graph_attr_float(n, "scale", 0);
        c->b = graph_attr_float(n, "zero_point", 0);
        c->c = graph_attr_float(n, "qmin", 0);
        c->d = graph_attr_float(n, "qmax", 0);
        return graph_attr_get(n, "scale") && c->a > 0.0f && c->c <= c->d;
    default:
        return false;
    }
}

static int build_unary(const dn_ctx *c, const graph *g, const graph_node *n, dn_prim *p)
{
    int xi = n->inputs[0], yi = n->outputs[0];
    citem it;
    if (!unary_item(g, n, &it) || !dn_is_float(g, xi) || !dn_is_float(g, yi) || g->tensors[xi].data)
        return TDM_ERR_UNSUPPORTED;
    const graph_tensor *x = &g->tensors[xi], *y = &g->tensors[yi];
    if (!same_dims(x, y)) return TDM_ERR_UNSUPPORTED;
    dnnl_memory_desc_t src, dst;
    if (!follow_md(c, g, xi, &src)) return TDM_ERR_UNSUPPORTED;
    dn_add_input(p, DNNL_ARG_SRC, xi)->md = src;
    dnnl_primitive_attr_t attr;
    int rc;
    if (it.kind == CI_RAW && n->npost == 0) {
        dnnl_eltwise_desc_t ed;
        if (dnnl_eltwise_forward_desc_init(&ed, dnnl_forward_inference, it.alg, &src, it.a,
                                           it.b) != dnnl_success)
            return TDM_ERR_UNSUPPORTED;
        if ((rc = make_attr(g, NULL, NULL, 0, false, p, &attr))) return rc;
        if ((rc = create_pd(c, &ed, attr, &p->pd))) return rc;
        p->dst_md = *query_md(p->pd, dnnl_query_dst_md);
        return 0;
    }
    /* Anything else runs as x + 0 with the op and the posts as post-ops. */
    dnnl_memory_desc_t zero;
    if (!zero_md(src.ndims, &zero) || !any_md(src.ndims, src.dims, src.data_type, &dst))
        return TDM_ERR_UNSUPPORTED;
    dn_add_const(p, DNNL_ARG_SRC_1, -1, zero_scalar, &zero, &zero);
    dnnl_binary_desc_t bd;
    if (dnnl_binary_desc_init(&bd, dnnl_binary_add, &src, &zero, &dst) != dnnl_success)
        return TDM_ERR_UNSUPPORTED;
    if ((rc = make_attr(g, n, &it, 1, false, p, &attr))) return rc;
    if ((rc = create_pd(c, &bd, attr, &p->pd))) return rc;
    p->dst_md = *query_md(p->pd, dnnl_query_dst_md);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Softmax, Transpose                                                        */
/* ------------------------------------------------------------------------ */

static int build_softmax(const dn_ctx *c, const graph *g, const graph_node *n, dn_prim *p)
{
    int xi = n->inputs[0], yi = n->outputs[0];
    if (!dn_is_float(g, xi) || !dn_is_float(g, yi) || n->npost) return TDM_ERR_UNSUPPORTED;
    const graph_tensor *x = &g->tensors[xi], *y = &g->tensors[yi];
    if (!same_dims(x, y) || x->rank < 1 || x->data) return TDM_ERR_UNSUPPORTED;
    int64_t axis = graph_attr_int(n, "axis", -1);
    if (axis < 0) axis += x->rank;
    if (axis < 0 || axis >= x->rank) return TDM_ERR_UNSUPPORTED;
    dnnl_memory_desc_t md, view;
    if (!dn_plain_md(x, dnnl_f32, &md)) return TDM_ERR_UNSUPPORTED;
    view = md;
    if (graph_attr_int(n, "coerce_2d", 0) && axis != x->rank - 1) {
        /* Before opset 13: softmax over everything from axis on, as rows. */
        int64_t d[2] = {1, 1};
        for (int i = 0; i < x->rank; i++)
            d[i >= axis] *= x->dims[i];
        if (!dn_plain_dims(2, d, dnnl_f32, &view)) return TDM_ERR_UNSUPPORTED;
        axis = 1;
    }
    dnnl_softmax_desc_t sd;
    if (dnnl_softmax_forward_desc_init(&sd, dnnl_forward_inference, &view, (int)axis) !=
        dnnl_success)
        return TDM_ERR_UNSUPPORTED;
    dnnl_primitive_attr_t attr;
    int rc = make_attr(g, NULL, NULL, 0, false, p, &attr);
    if (rc) return rc;
    if ((rc = create_pd(c, &sd, attr, &p->pd))) return rc;
    dn_input *in = dn_add_input(p, DNNL_ARG_SRC, xi);
    in->md = md;
    in->exec_md = view;
    p->dst_md = md;
    p->dst_exec_md = view;
    return 0;
}

/* Per-tensor QuantizeLinear / DequantizeLinear as a converting reorder:
 * oneDNN computes dst = scale * (src - src_zp) + dst_zp, rounding to nearest
 * even and saturating when dst is an integer type. */
static bool scalar_const(const graph *g, int t, tdm_dtype dt, void *v, size_t size)
{
    if (t < 0) return false;
    const graph_tensor *c = &g->tensors[t];
    if (!c->data || c->dtype != dt || graph_tensor_numel(c) != 1 || c->nbytes < size) return false;
    memcpy(v, c->data, size);
    return true;
}

static int build_quant(const dn_ctx *c, const graph *g, const graph_node *n, dn_prim *p)
{
    int xi = n->inputs[0], yi = n->outputs[0];
    int zi = n->ninputs > 2 ? n->inputs[2] : -1;
    const graph_tensor *x = &g->tensors[xi], *y = &g->tensors[yi];
    bool quant = n->op == OP_QUANTIZELINEAR;
    const graph_tensor *q = quant ? y : x;
    float scale;
    int32_t zp = 0;
    if (x->data || n->npost || !same_dims(x, y) || x->rank < 1 ||
        !scalar_const(g, n->inputs[1], TDM_DTYPE_FLOAT, &scale, sizeof scale) || !(scale > 0.0f))
        return TDM_ERR_UNSUPPORTED;
    if (q->dtype != TDM_DTYPE_UINT8 && q->dtype != TDM_DTYPE_INT8) return TDM_ERR_UNSUPPORTED;
    if ((quant ? x : y)->dtype != TDM_DTYPE_FLOAT) return TDM_ERR_UNSUPPORTED;
    if (zi >= 0) {
        if (g->tensors[zi].dtype != q->dtype) return TDM_ERR_UNSUPPORTED;
        if (q->dtype == TDM_DTYPE_UINT8) {
            uint8_t v;
            if (!scalar_const(g, zi, TDM_DTYPE_UINT8, &v, 1)) return TDM_ERR_UNSUPPORTED;
            zp = v;
        } else {
            int8_t v;
            if (!scalar_const(g, zi, TDM_DTYPE_INT8, &v, 1)) return TDM_ERR_UNSUPPORTED;
            zp = v;
        }
    }
    dnnl_memory_desc_t src, dst;
    if (!dn_plain_md(x, dnnl_data_type_undef, &src) || !dn_plain_md(y, dnnl_data_type_undef, &dst))
        return TDM_ERR_UNSUPPORTED;
    dnnl_primitive_attr_t attr;
    int rc = make_attr(g, NULL, NULL, 0, false, p, &attr);
    if (rc) return rc;
    float os = quant ? 1.0f / scale : scale;
    dnnl_status_t st = dnnl_primitive_attr_set_output_scales(attr, 1, 0, &os);
    if (st == dnnl_success && zp)
        st = dnnl_primitive_attr_set_zero_points(attr, quant ? DNNL_ARG_DST : DNNL_ARG_SRC, 1, 0,
                                                 &zp);
    if (st == dnnl_success)
        st = dnnl_reorder_primitive_desc_create(&p->pd, &src, c->eng, &dst, c->eng, attr);
    dnnl_primitive_attr_destroy(attr);
    if (st != dnnl_success) return TDM_ERR_UNSUPPORTED;
    dn_add_input(p, DNNL_ARG_FROM, xi)->md = src;
    p->dst_md = dst;
    return 0;
}

/* A transpose is a reorder from the input viewed with permuted strides. */
static int build_transpose(const dn_ctx *c, const graph *g, const graph_node *n, dn_prim *p)
{
    int xi = n->inputs[0], yi = n->outputs[0];
    const graph_tensor *x = &g->tensors[xi], *y = &g->tensors[yi];
    dnnl_data_type_t dt = dn_type(x->dtype);
    if (dt == dnnl_data_type_undef || dt == dnnl_bf16 || x->dtype != y->dtype || x->data ||
        n->npost || x->rank < 1 || y->rank != x->rank)
        return TDM_ERR_UNSUPPORTED;
    int r = x->rank;
    int64_t perm[GRAPH_MAX_RANK];
    for (int i = 0; i < r; i++)
        perm[i] = r - 1 - i;
    if (ints_attr(n, "perm", r, perm)) return TDM_ERR_UNSUPPORTED;
    dnnl_dims_t in_str, vdims, vstr;
    dnnl_dim_t s = 1;
    for (int i = r - 1; i >= 0; i--) {
        in_str[i] = s;
        s *= x->dims[i];
    }
    for (int i = 0; i < r; i++) {
        if (perm[i] < 0 || perm[i] >= r || x->dims[perm[i]] != y->dims[i])
            return TDM_ERR_UNSUPPORTED;
        vdims[i] = y->dims[i];
        vstr[i] = in_str[perm[i]];
    }
    dnnl_memory_desc_t md, view, dst;
    if (!dn_plain_md(x, dt, &md) || !dn_plain_md(y, dt, &dst) ||
        dnnl_memory_desc_init_by_strides(&view, r, vdims, dt, vstr) != dnnl_success)
        return TDM_ERR_UNSUPPORTED;
    dnnl_primitive_attr_t attr;
    int rc = make_attr(g, NULL, NULL, 0, false, p, &attr);
    if (rc) return rc;
    dnnl_status_t st = dnnl_reorder_primitive_desc_create(&p->pd, &view, c->eng, &dst, c->eng, attr);
    dnnl_primitive_attr_destroy(attr);
    if (st != dnnl_success) return TDM_ERR_UNSUPPORTED;
    dn_input *in = dn_add_input(p, DNNL_ARG_FROM, xi);
    in->md = md;
    in->exec_md = view;
    p->dst_md = dst;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Dispatch                                                                  */
/* ------------------------------------------------------------------------ */

/* The in-place passes finishing a post-op chain: dst + 0 with the rest of
 * the chain as post-ops. */
static int build_follow(const dn_ctx *c, dn_prim *p)
{
    const dnnl_memory_desc_t *dst = p->dst_exec_md.ndims ? &p->dst_exec_md : &p->dst_md;
    if (p->nfollow && !zero_md(dst->ndims, &p->zero_md)) return TDM_ERR_UNSUPPORTED;
    p->zero = zero_scalar;
    for (int i = 0; i < p->nfollow; i++) {
        dnnl_binary_desc_t bd;
        dnnl_primitive_attr_t attr;
        if (dnnl_binary_desc_init(&bd, dnnl_binary_add, dst, &p->zero_md, dst) != dnnl_success)
            return TDM_ERR_UNSUPPORTED;
        if (dnnl_primitive_attr_create(&attr) != dnnl_success) return TDM_ERR_NOMEM;
        if (dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user) !=
                dnnl_success ||
            dnnl_primitive_attr_set_post_ops(attr, p->follow_po[i]) != dnnl_success) {
            dnnl_primitive_attr_destroy(attr);
            return TDM_ERR_UNSUPPORTED;
        }
        int rc = create_pd(c, &bd, attr, &p->follow[i]);
        if (rc) return rc;
    }
    return 0;
}

bool dn_is_eltwise(graph_op op)
{
    switch (op) {
    case OP_RELU:
    case OP_LEAKYRELU:
    case OP_CLIP:
    case OP_SIGMOID:
    case OP_TANH:
    case OP_EXP:
    case OP_SQRT:
    case OP_ABS:
    case OP_NEG:
    case OP_FAKEQUANT:
        return true;
    default:
        return false;
    }
}

static int build_node(const dn_ctx *c, const graph *g, const graph_node *n, bool blocked,
                      dn_prim *p)
{
    memset(p, 0, sizeof *p);
    p->sum_tensor = -1;
    if (n->ninputs < 1 || n->noutputs < 1 || n->inputs[0] < 0 || n->outputs[0] < 0)
        return TDM_ERR_UNSUPPORTED;
    for (int k = 1; k < n->noutputs; k++)
        if (n->outputs[k] >= 0) return TDM_ERR_UNSUPPORTED;
    int rc;
    switch (n->op) {
    case OP_CONV:
        rc = n->ninputs >= 2 ? build_conv(c, g, n, blocked, p) : TDM_ERR_UNSUPPORTED;
        break;
    case OP_MAXPOOL:
    case OP_AVGPOOL:
    case OP_GLOBALAVGPOOL:
    case OP_GLOBALMAXPOOL:
        rc = build_pool(c, g, n, p);
        break;
    case OP_GEMM:
        rc = n->ninputs >= 2 ? build_gemm(c, g, n, p) : TDM_ERR_UNSUPPORTED;
        break;
    case OP_MATMUL:
        rc = n->ninputs == 2 ? build_matmul(c, g, n, p) : TDM_ERR_UNSUPPORTED;
        break;
    case OP_ADD:
    case OP_SUB:
    case OP_MUL:
    case OP_DIV:
    case OP_MIN:
    case OP_MAX:
        rc = build_binary(c, g, n, p);
        break;
    case OP_SOFTMAX:
        rc = build_softmax(c, g, n, p);
        break;
    case OP_QUANTIZELINEAR:
    case OP_DEQUANTIZELINEAR:
        rc = n->ninputs >= 2 ? build_quant(c, g, n, p) : TDM_ERR_UNSUPPORTED;
        break;
    case OP_TRANSPOSE:
        rc = build_transpose(c, g, n, p);
        break;
    default:
        rc = dn_is_eltwise(n->op) ? build_unary(c, g, n, p) : TDM_ERR_UNSUPPORTED;
    }
    if (!rc) rc = build_follow(c, p);
    for (int i = 0; i < p->nfollow; i++)
        dnnl_post_ops_destroy(p->follow_po[i]);
    if (rc) {
        for (int i = 0; i < p->nfollow; i++)
            if (p->follow[i]) dnnl_primitive_desc_destroy(p->follow[i]);
        p->nfollow = 0;
    }
    if (rc && p->pd) {
        dnnl_primitive_desc_destroy(p->pd);
        p->pd = NULL;
    }
    return rc;
}

int dn_build(const dn_ctx *c, const graph *g, int node, dn_prim *p)
{
    const graph_node *n = &g->nodes[node];
    /* Some post-op chains have no blocked-layout kernel: then oneDNN picks. */
    if (n->op == OP_CONV && !c->plain && wants_blocked(g, n) && build_node(c, g, n, true, p) == 0)
        return 0;
    return build_node(c, g, n, false, p);
}
