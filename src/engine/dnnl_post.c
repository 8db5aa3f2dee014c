/*
 * dnnl_post: the post-op compiler of the oneDNN backend, and the helpers
 * the builders in dnnl_ops.c share with it.
 *
 * What follows a primitive (the anchor's own element-wise op for a
 * standalone chain, then the node's post-ops) is a list of chain items. They
 * are compiled into the few oneDNN operations that compute the same values:
 * a ReLU or Clip is one eltwise post-op; a fake quantisation is
 * linear(1/scale, zp), round, clip(qmin, qmax), linear(scale, -zp*scale),
 * with consecutive scalings and clamps merged; a residual addition is the
 * sum post-op; a per-channel Min/Max is a binary post-op reading its
 * constant. What one primitive cannot take (oneDNN 2.6 keeps one set of
 * parameters per eltwise kind, see pick_alg) goes to in-place follow-up
 * passes. For an 8-bit primitive (dnnl_int8.h) the chain starts in the
 * units of its first fake quantisation and ends on the integers.
 */
#include "dnnl_post.h"

#include <float.h>
#include <math.h>
#include <string.h>

#include "dnnl_int8.h"

bool dn_is_float(const graph *g, int t)
{
    return t >= 0 && g->tensors[t].dtype == TDM_DTYPE_FLOAT && g->tensors[t].rank >= 0;
}

/* The chain items (dnnl_post.h) are compiled into oneDNN operations of
 * these classes. */
enum { EO_SCALE, EO_ROUND, EO_CLIP, EO_SUM, EO_RAW, EO_BIN };

typedef struct eop {
    int cls;
    dnnl_alg_kind_t alg; /* RAW, BIN */
    float a, b;
    int tensor; /* BIN; its constant multiplied by a when a is not 0 */
} eop;

#define CHAIN_MAX (4 * (GRAPH_MAX_POST + 1) + 4)

static float bounded(float v)
{
    if (v == INFINITY) return FLT_MAX;
    if (v == -INFINITY) return -FLT_MAX;
    return v;
}

int dn_post_cost(const graph_post *p)
{
    return p->kind == POST_FAKEQUANT ? 4 : 1;
}

/* The compiler's state: the true value is k * clamp(u, lo, hi), where u is
 * what the emitted operations compute, k > 0 a scale and [lo, hi] bounds
 * not yet emitted. Clamps commute with positive scales and with rounding
 * (both monotone), so they are carried along and merged, and consecutive
 * scales multiply into one. */
typedef struct chain {
    eop ops[CHAIN_MAX];
    int n;
    float k, lo, hi;
} chain;

static void emit(chain *ch, int cls, dnnl_alg_kind_t alg, float a, float b)
{
    if (ch->n < CHAIN_MAX) ch->ops[ch->n++] = (eop){cls, alg, a, b, -1};
}

/* Emits the pending clamp only. */
static void flush_clip(chain *ch)
{
    if (ch->lo > -INFINITY || ch->hi < INFINITY)
        emit(ch, EO_CLIP, dnnl_alg_kind_undef, bounded(ch->lo), bounded(ch->hi));
    ch->lo = -INFINITY;
    ch->hi = INFINITY;
}

static void flush(chain *ch)
{
    flush_clip(ch);
    if (ch->k != 1.0f) emit(ch, EO_SCALE, dnnl_alg_kind_undef, ch->k, 0);
    ch->k = 1.0f;
}

static void chain_clip(chain *ch, float a, float b)
{
    float lo = fmaxf(ch->lo, a / ch->k), hi = fminf(ch->hi, b / ch->k);
    if (lo <= hi) {
        ch->lo = lo;
        ch->hi = hi;
        return;
    }
    flush(ch);
    ch->lo = a;
    ch->hi = b;
}

/* y = s * clamp(round(x / s) + zp, qmin, qmax) - zp * s. With an integral
 * zero point the shift moves into the bounds: s * clamp(round(x / s),
 * qmin - zp, qmax - zp), and x / s with x = k * clamp(u, lo, hi) rounds to
 * clamp(round(u * k / s), round(lo * k / s), round(hi * k / s)). */
static void chain_fq(chain *ch, float s, float zp, float qmin, float qmax)
{
    if (zp != rintf(zp)) {
        flush(ch);
        emit(ch, EO_SCALE, dnnl_alg_kind_undef, 1.0f / s, zp);
        emit(ch, EO_ROUND, dnnl_alg_kind_undef, 0, 0);
        emit(ch, EO_CLIP, dnnl_alg_kind_undef, qmin, qmax);
        emit(ch, EO_SCALE, dnnl_alg_kind_undef, s, -zp * s);
        return;
    }
    float r = ch->k / s;
    float lo = fmaxf(rintf(ch->lo * r), qmin - zp), hi = fminf(rintf(ch->hi * r), qmax - zp);
    if (!(lo <= hi)) {
        flush(ch);
        r = 1.0f / s;
        lo = qmin - zp;
        hi = qmax - zp;
    }
    /* u straight out of a rounding is integral already: with nothing to
     * scale, rounding it again changes nothing. */
    bool integral = r == 1.0f && ch->n > 0 && ch->ops[ch->n - 1].cls == EO_ROUND;
    if (r != 1.0f) emit(ch, EO_SCALE, dnnl_alg_kind_undef, r, 0);
    if (!integral) emit(ch, EO_ROUND, dnnl_alg_kind_undef, 0, 0);
    ch->lo = lo;
    ch->hi = hi;
    ch->k = s;
}

/* Compiles items it[0..n) for a primitive whose output is the true value
 * divided by k0. With quant_out the chain must end in a fake quantisation
 * and leaves its integer (less the zero point, which the caller adds as
 * oneDNN's dst zero point) instead of the float value: what an 8-bit dst
 * stores. False when it does not end so. */
static bool compile_chain(const citem *it, int n, float k0, bool quant_out, chain *ch)
{
    ch->n = 0;
    ch->k = k0;
    ch->lo = -INFINITY;
    ch->hi = INFINITY;
    for (int i = 0; i < n; i++) {
        switch (it[i].kind) {
        case CI_RELU:
            chain_clip(ch, 0.0f, INFINITY);
            break;
        case CI_CLIP:
            chain_clip(ch, it[i].a, it[i].b);
            break;
        case CI_FQ:
            chain_fq(ch, it[i].a, it[i].b, it[i].c, it[i].d);
            break;
        case CI_SUM:
            flush(ch);
            emit(ch, EO_SUM, dnnl_alg_kind_undef, 0, 0);
            if (ch->n > 0) ch->ops[ch->n - 1].tensor = it[i].tensor;
            break;
        case CI_BIN:
            /* The constant is per channel, so no clamp moves past it; the
             * scale does, dividing the constant (min(k u, c) = k min(u, c / k)
             * for k > 0), which keeps a quantised u in its integer units. */
            flush_clip(ch);
            emit(ch, EO_BIN, it[i].alg, ch->k != 1.0f ? 1.0f / ch->k : 0.0f, 0);
            if (ch->n > 0) ch->ops[ch->n - 1].tensor = it[i].tensor;
            break;
        default:
            flush(ch);
            emit(ch, EO_RAW, it[i].alg, it[i].a, it[i].b);
            break;
        }
    }
    if (!quant_out) {
        flush(ch);
        return true;
    }
    if (n < 1 || it[n - 1].kind != CI_FQ || ch->k != it[n - 1].a || !isfinite(ch->lo) ||
        !isfinite(ch->hi))
        return false;
    emit(ch, EO_CLIP, dnnl_alg_kind_undef, ch->lo, ch->hi);
    return true;
}

/* oneDNN 2.6's JIT post-op code keeps one set of parameters per eltwise
 * algorithm in a primitive: a second linear or clip silently computes with
 * the first one's alpha and beta. So each parametrised algorithm may appear
 * once per primitive (scales alternate between linear and pow, clamps among
 * the three clip kinds); past that the chain continues in a follow-up pass
 * over the output. */
typedef struct seg_state {
    dnnl_alg_kind_t used[16];
    float ua[16], ub[16];
    int nused;
} seg_state;

static bool try_alg(seg_state *st, dnnl_alg_kind_t alg, float a, float b)
{
    for (int i = 0; i < st->nused; i++)
        if (st->used[i] == alg) return st->ua[i] == a && st->ub[i] == b;
    if (st->nused == 16) return false;
    st->used[st->nused] = alg;
    st->ua[st->nused] = a;
    st->ub[st->nused] = b;
    st->nused++;
    return true;
}

/* Picks an algorithm for op e not yet used with other parameters in this
 * segment: false when none is left. */
static bool pick_alg(seg_state *st, const eop *e, dnnl_alg_kind_t *alg, float *a, float *b)
{
    static const dnnl_alg_kind_t clips[] = {dnnl_eltwise_clip, dnnl_eltwise_clip_v2,
                                            dnnl_eltwise_clip_v2_use_dst_for_bwd};
    switch (e->cls) {
    case EO_SCALE:
        if (e->b == 0.0f && try_alg(st, dnnl_eltwise_pow, e->a, 1.0f)) {
            *alg = dnnl_eltwise_pow, *a = e->a, *b = 1.0f;
            return true;
        }
        *alg = dnnl_eltwise_linear, *a = e->a, *b = e->b;
        return try_alg(st, *alg, *a, *b);
    case EO_ROUND:
        *alg = dnnl_eltwise_round, *a = 0, *b = 0;
        return try_alg(st, *alg, 0, 0);
    case EO_CLIP:
        for (size_t i = 0; i < sizeof clips / sizeof clips[0]; i++)
            if (try_alg(st, clips[i], e->a, e->b)) {
                *alg = clips[i], *a = e->a, *b = e->b;
                return true;
            }
        return false;
    default:
        *alg = e->alg, *a = e->a, *b = e->b;
        return try_alg(st, e->alg, e->a, e->b);
    }
}

dn_input *dn_add_input(dn_prim *p, int arg, int tensor)
{
    dn_input *in = &p->in[p->nin++];
    memset(in, 0, sizeof *in);
    in->arg = arg;
    in->tensor = tensor;
    return in;
}

/* A constant input: its payload as it is (user_md) and the layout wanted. */
void dn_add_const(dn_prim *p, int arg, int tensor, const void *data,
                  const dnnl_memory_desc_t *user_md, const dnnl_memory_desc_t *md)
{
    dn_input *in = dn_add_input(p, arg, tensor);
    in->cdata = data;
    in->user_md = *user_md;
    in->md = *md;
}

/* A per-channel operand of a binary post-op: src1 of shape [1, C, 1...] at
 * the rank of output y, its constant bytes read as they are. */
static bool bin_operand(const graph *g, int y, int t, dnnl_memory_desc_t *md)
{
    if (y < 0 || t < 0) return false;
    const graph_tensor *yt = &g->tensors[y], *c = &g->tensors[t];
    int64_t dims[DNNL_MAX_NDIMS];
    if (yt->rank < 2 || yt->rank > DNNL_MAX_NDIMS || !c->data || c->dtype != TDM_DTYPE_FLOAT ||
        graph_tensor_numel(c) != yt->dims[1])
        return false;
    for (int i = 0; i < yt->rank; i++)
        dims[i] = i == 1 ? yt->dims[1] : 1;
    return dn_plain_dims(yt->rank, dims, dnnl_f32, md);
}

/* Closes the current post-op list (the primitive's or a follow-up pass's)
 * and starts the next one; false when no pass is left or oneDNN fails. */
static bool next_seg(dn_prim *p, dnnl_post_ops_t *first, dnnl_post_ops_t *cur, int *seg,
                     seg_state *st, int *count)
{
    if (*seg == 0)
        *first = *cur;
    else
        p->follow_po[p->nfollow++] = *cur;
    *cur = NULL;
    if (++*seg > DN_MAX_FOLLOW || dnnl_post_ops_create(cur) != dnnl_success) return false;
    memset(st, 0, sizeof *st);
    *count = 0;
    return true;
}

/* Splits the compiled chain into post-op lists: the first for the primitive
 * itself, the others for in-place follow-up passes (p->follow_po). A binary
 * post-op's operand is an input (DNNL_ARG_ATTR_MULTIPLE_POST_OP(index) |
 * DNNL_ARG_SRC_1) of whichever pass carries it. With q, everything must fit
 * the primitive (a follow-up pass would compute on integers), and a sum
 * reads the 8-bit addend through its grid. */
static int chain_to_posts(const graph *g, int y, const chain *ch, bool allow_sum, const qchain *q,
                          dn_prim *p, dnnl_post_ops_t *first)
{
    dnnl_post_ops_t cur = NULL;
    seg_state st = {.nused = 0};
    int seg = 0, count = 0;
    if (dnnl_post_ops_create(&cur) != dnnl_success) return TDM_ERR_NOMEM;
    for (int i = 0; i < ch->n; i++) {
        const eop *e = &ch->ops[i];
        dnnl_alg_kind_t alg;
        float a, b;
        dnnl_status_t s;
        if (e->cls == EO_SUM) {
            dnq_params r;
            if (!allow_sum || seg > 0) goto fail;
            if (q && (!dnq_tensor_params(g, e->tensor, &r) || r.dt != q->dst_dt)) goto fail;
            s = q ? dnnl_post_ops_append_sum_v3(cur, r.scale, r.zp, r.dt)
                  : dnnl_post_ops_append_sum(cur, 1.0f);
        } else if (e->cls == EO_BIN) {
            dnnl_memory_desc_t md;
            if (p->nin == DN_MAX_IN || !bin_operand(g, y, e->tensor, &md)) goto fail;
            if (count == DN_MAX_POSTS && (q || !next_seg(p, first, &cur, &seg, &st, &count)))
                goto fail;
            s = dnnl_post_ops_append_binary(cur, e->alg, &md);
            dn_add_const(p, DNNL_ARG_ATTR_MULTIPLE_POST_OP(count) | DNNL_ARG_SRC_1, e->tensor,
                         g->tensors[e->tensor].data, &md, &md);
            p->in[p->nin - 1].pass = seg;
            p->in[p->nin - 1].qscale = e->a;
        } else {
            if (!pick_alg(&st, e, &alg, &a, &b) || count == DN_MAX_POSTS) {
                if (q || !next_seg(p, first, &cur, &seg, &st, &count) ||
                    !pick_alg(&st, e, &alg, &a, &b))
                    goto fail;
            }
            s = dnnl_post_ops_append_eltwise(cur, 1.0f, alg, a, b);
        }
        if (s != dnnl_success) goto fail;
        count++;
    }
    if (seg == 0)
        *first = cur;
    else
        p->follow_po[p->nfollow++] = cur;
    return 0;
fail:
    if (cur) dnnl_post_ops_destroy(cur);
    if (seg > 0) {
        dnnl_post_ops_destroy(*first);
        *first = NULL;
    }
    for (int i = 0; i < p->nfollow; i++)
        dnnl_post_ops_destroy(p->follow_po[i]);
    p->nfollow = 0;
    return TDM_ERR_UNSUPPORTED;
}

/* Node n's post-ops as chain items after pre[0..npre). */
static bool gather_items(const graph *g, const graph_node *n, const citem *pre, int npre, citem *it,
                         int *count)
{
    int k = 0;
    for (int i = 0; i < npre; i++)
        it[k++] = pre[i];
    for (int i = 0; n && i < n->npost; i++) {
        const graph_post *p = &n->post[i];
        citem c = {.kind = CI_RELU, .tensor = -1};
        switch (p->kind) {
        case POST_RELU:
            break;
        case POST_CLIP:
            c.kind = CI_CLIP, c.a = p->a, c.b = p->b;
            break;
        case POST_FAKEQUANT:
            if (!(p->a > 0.0f) || !(p->c <= p->d)) return false;
            c.kind = CI_FQ, c.a = p->a, c.b = p->b, c.c = p->c, c.d = p->d;
            break;
        case POST_SUM:
            if (p->input < 0 || p->input >= n->ninputs || !dn_is_float(g, n->inputs[p->input]))
                return false;
            c.kind = CI_SUM, c.tensor = n->inputs[p->input];
            break;
        case POST_MIN_CHANNEL:
        case POST_MAX_CHANNEL:
            /* Only a convolution's dst has the channel at axis 1 for sure. */
            if (n->op != OP_CONV || p->input < 0 || p->input >= n->ninputs ||
                !dn_is_float(g, n->inputs[p->input]))
                return false;
            c.kind = CI_BIN, c.tensor = n->inputs[p->input];
            c.alg = p->kind == POST_MIN_CHANNEL ? dnnl_binary_min : dnnl_binary_max;
            break;
        default:
            return false;
        }
        it[k++] = c;
    }
    *count = k;
    return true;
}

int dn_attr(const graph *g, const graph_node *n, const citem *pre, int npre, bool allow_sum,
            const qchain *q, dn_prim *p, dnnl_primitive_attr_t *out)
{
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    citem it[GRAPH_MAX_POST + 1];
    chain ch;
    int rc = TDM_ERR_UNSUPPORTED, nit;
    p->sum_tensor = -1;
    if (npre > 1 || !gather_items(g, n, pre, npre, it, &nit)) return TDM_ERR_UNSUPPORTED;
    if (dnnl_primitive_attr_create(&attr) != dnnl_success) return TDM_ERR_NOMEM;
    if (dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user) != dnnl_success)
        goto out;
    for (int i = 0; i < nit; i++)
        if (it[i].kind == CI_SUM) p->sum_tensor = it[i].tensor;
    if (q && !nit) goto out;
    if (nit) {
        if (!compile_chain(it, nit, q ? q->k0 : 1.0f, q != NULL, &ch)) goto out;
        if ((rc = chain_to_posts(g, n ? n->outputs[0] : -1, &ch, allow_sum, q, p, &po))) goto out;
        rc = TDM_ERR_UNSUPPORTED;
        if (dnnl_primitive_attr_set_post_ops(attr, po) != dnnl_success) goto out;
    }
    rc = 0;
out:
    if (po) dnnl_post_ops_destroy(po);
    if (rc) {
        dnnl_primitive_attr_destroy(attr);
        return rc;
    }
    *out = attr;
    return 0;
}
