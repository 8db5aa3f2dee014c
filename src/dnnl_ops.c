/*
 * dnnl_ops: one builder per op family, turning a graph node into a oneDNN
 * primitive descriptor plus the layouts it reads and writes (dnnl_util.h).
 *
 * Layouts: convolutions choose their own (format_tag_any; on this CPU with
 * AVX-512 oneDNN 2.6 picks channels-last for f32 and bf16 alike, which also
 * keeps channel counts such as 24 or 144 free of block padding); pooling,
 * binary and element-wise ops take their input as it comes, so a chain of
 * convolutions, pools and additions never leaves that layout. Ops that need
 * plain row-major data (softmax, transpose, matmul) ask for it and the
 * planner converts.
 *
 * Post-ops: ReLU and Clip are oneDNN eltwise post-ops; a fake quantisation
 * is four (linear(1/scale, zp), round, clip(qmin, qmax), linear(scale,
 * -zp*scale)); a residual sum is oneDNN's sum post-op. A standalone chain of
 * element-wise ops runs as a binary add of a zero scalar carrying the chain as
 * post-ops: oneDNN 2.6 runs eltwise primitives with post-ops only in its
 * reference code, binary ones in JIT code.
 *
 * Int8: a convolution between two fake quantisations runs as a oneDNN int8
 * convolution reading and writing the 8-bit forms of its tensors (see
 * dnnl_int8.h); its post-op chain is the same compiled chain, started in
 * the units of the first fake quantisation and ended on the integers.
 */
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "dnnl_int8.h"
#include "dnnl_util.h"
#include "tandem/engine.h"

/* ------------------------------------------------------------------------ */
/* Engine, types, descriptors                                                */
/* ------------------------------------------------------------------------ */

static dnnl_engine_t engine;
static pthread_once_t engine_once = PTHREAD_ONCE_INIT;

static void engine_init(void)
{
    if (dnnl_engine_create(&engine, dnnl_cpu, 0) != dnnl_success) engine = NULL;
}

dnnl_engine_t dn_engine(void)
{
    pthread_once(&engine_once, engine_init);
    return engine;
}

int dn_status(dnnl_status_t s)
{
    switch (s) {
    case dnnl_success:
        return 0;
    case dnnl_out_of_memory:
        return TDM_ERR_NOMEM;
    case dnnl_unimplemented:
        return TDM_ERR_UNSUPPORTED;
    default:
        return TDM_ERR_BACKEND;
    }
}

dnnl_data_type_t dn_type(tdm_dtype dt)
{
    switch (dt) {
    case TDM_DTYPE_FLOAT:
        return dnnl_f32;
    case TDM_DTYPE_UINT8:
        return dnnl_u8;
    case TDM_DTYPE_INT8:
        return dnnl_s8;
    case TDM_DTYPE_INT32:
        return dnnl_s32;
    case TDM_DTYPE_BFLOAT16:
        return dnnl_bf16;
    default:
        return dnnl_data_type_undef;
    }
}

bool dn_plain_dims(int rank, const int64_t *dims, dnnl_data_type_t dt, dnnl_memory_desc_t *md)
{
    dnnl_dims_t d, st;
    int nd = rank > 0 ? rank : 1;
    if (rank > DNNL_MAX_NDIMS || dt == dnnl_data_type_undef) return false;
    if (rank <= 0) d[0] = 1;
    for (int i = 0; i < rank; i++) {
        if (dims[i] < 0) return false;
        d[i] = dims[i];
    }
    dnnl_dim_t s = 1;
    for (int i = nd - 1; i >= 0; i--) {
        st[i] = s;
        s *= d[i] > 0 ? d[i] : 1;
    }
    return dnnl_memory_desc_init_by_strides(md, nd, d, dt, st) == dnnl_success;
}

bool dn_plain_md(const graph_tensor *t, dnnl_data_type_t dt, dnnl_memory_desc_t *md)
{
    if (dt == dnnl_data_type_undef) dt = dn_type(t->dtype);
    return dn_plain_dims(t->rank, t->dims, dt, md);
}

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

static bool is_float(const graph *g, int t)
{
    return t >= 0 && g->tensors[t].dtype == TDM_DTYPE_FLOAT && g->tensors[t].rank >= 0;
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

/* ------------------------------------------------------------------------ */
/* Attributes and post-ops                                                   */
/* ------------------------------------------------------------------------ */

/* What a primitive's output goes through: the anchor's own element-wise op
 * (for a standalone chain) and then the node's post-ops, as items... */
enum { CI_RELU, CI_CLIP, CI_FQ, CI_SUM, CI_RAW, CI_BIN };

typedef struct citem {
    int kind;
    float a, b, c, d;    /* CLIP: a, b; FQ: scale, zero point, qmin, qmax; RAW: a, b */
    dnnl_alg_kind_t alg; /* RAW; BIN: dnnl_binary_min or _max */
    int tensor;          /* SUM: the addend; BIN: the per-channel constant */
} citem;

/* ...compiled into oneDNN operations of these classes. */
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

static dn_input *add_input(dn_prim *p, int arg, int tensor)
{
    dn_input *in = &p->in[p->nin++];
    memset(in, 0, sizeof *in);
    in->arg = arg;
    in->tensor = tensor;
    return in;
}

/* A constant input: its payload as it is (user_md) and the layout wanted. */
static void add_const(dn_prim *p, int arg, int tensor, const void *data,
                      const dnnl_memory_desc_t *user_md, const dnnl_memory_desc_t *md)
{
    dn_input *in = add_input(p, arg, tensor);
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
    if (yt->rank < 2 || yt->rank > DNNL_MAX_NDIMS || !c->data ||
        c->dtype != TDM_DTYPE_FLOAT || graph_tensor_numel(c) != yt->dims[1])
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

/* What differs for a primitive writing 8-bit data (see dnnl_int8.h). */
typedef struct qchain {
    float k0;               /* the primitive's own output is the true value / k0 */
    dnnl_data_type_t dst_dt; /* u8 or s8: dst holds the last fake quantisation's integers */
} qchain;

/* Splits the compiled chain into post-op lists: the first for the primitive
 * itself, the others for in-place follow-up passes (p->follow_po). A binary
 * post-op's operand is an input (DNNL_ARG_ATTR_MULTIPLE_POST_OP(index) |
 * DNNL_ARG_SRC_1) of whichever pass carries it. With q, everything must fit
 * the primitive (a follow-up pass would compute on integers), and a sum
 * reads the 8-bit addend through its grid. */
static int chain_to_posts(const graph *g, int y, const chain *ch, bool allow_sum,
                          const qchain *q, dn_prim *p, dnnl_post_ops_t *first)
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
            add_const(p, DNNL_ARG_ATTR_MULTIPLE_POST_OP(count) | DNNL_ARG_SRC_1, e->tensor,
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
static bool gather_items(const graph *g, const graph_node *n, const citem *pre, int npre,
                         citem *it, int *count)
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
            if (p->input < 0 || p->input >= n->ninputs || !is_float(g, n->inputs[p->input]))
                return false;
            c.kind = CI_SUM, c.tensor = n->inputs[p->input];
            break;
        case POST_MIN_CHANNEL:
        case POST_MAX_CHANNEL:
            /* Only a convolution's dst has the channel at axis 1 for sure. */
            if (n->op != OP_CONV || p->input < 0 || p->input >= n->ninputs ||
                !is_float(g, n->inputs[p->input]))
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

/* A primitive attribute with a user-managed scratchpad (so sessions on
 * different threads never share one) and, from pre then node n's posts, its
 * post-ops; what does not fit goes to follow-up passes (p->follow_po).
 * With q, the post-ops of an 8-bit primitive (qchain). */
static int make_attr_q(const graph *g, const graph_node *n, const citem *pre, int npre,
                       bool allow_sum, const qchain *q, dn_prim *p, dnnl_primitive_attr_t *out)
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
        if ((rc = chain_to_posts(g, n ? n->outputs[0] : -1, &ch, allow_sum, q, p, &po)))
            goto out;
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

static int make_attr(const graph *g, const graph_node *n, const citem *pre, int npre,
                     bool allow_sum, dn_prim *p, dnnl_primitive_attr_t *out)
{
    return make_attr_q(g, n, pre, npre, allow_sum, NULL, p, out);
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

/* A depthwise convolution, or one that reads or feeds one. */
static bool near_depthwise(const graph *g, const graph_node *n)
{
    if (is_depthwise(g, n)) return true;
    int producer = g->tensors[n->inputs[0]].producer;
    if (producer >= 0 && is_depthwise(g, &g->nodes[producer])) return true;
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
 * chooses. */
static bool wants_blocked(const graph *g, const graph_node *n)
{
    for (int i = 0; i < n->npost; i++)
        if (n->post[i].kind != POST_RELU && n->post[i].kind != POST_CLIP &&
            n->post[i].kind != POST_SUM)
            return false;
    return near_depthwise(g, n);
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
    int rc = make_attr_q(g, n, NULL, 0, true, &qc, p, &attr);
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
    if (!is_float(g, xi) || !is_float(g, wi) || !is_float(g, yi)) return TDM_ERR_UNSUPPORTED;
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
    add_input(p, DNNL_ARG_SRC, xi)->md = *query_md(p->pd, dnnl_query_src_md);
    add_const(p, DNNL_ARG_WEIGHTS, wi, w->data, &wt_user, query_md(p->pd, dnnl_query_weights_md));
    if (q) p->in[p->nin - 1].qscale = 1.0f / q->ws;
    if (b) add_const(p, DNNL_ARG_BIAS, bi, b->data, &bias, &bias);
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
    if (!is_float(g, xi) || !is_float(g, yi)) return TDM_ERR_UNSUPPORTED;
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
    add_input(p, DNNL_ARG_SRC, xi)->md = *query_md(p->pd, dnnl_query_src_md);
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
    if (!is_float(g, ai) || !is_float(g, bi) || !is_float(g, yi)) return TDM_ERR_UNSUPPORTED;
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
    if (!dn_plain_dims(2, adims, dt, &src) || !any_md(2, wdims, dt, &wt) ||
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
    add_input(p, DNNL_ARG_SRC, ai)->md = *query_md(p->pd, dnnl_query_src_md);
    add_const(p, DNNL_ARG_WEIGHTS, bi, b->data, &wt_user, query_md(p->pd, dnnl_query_weights_md));
    if (cc) add_const(p, DNNL_ARG_BIAS, ci, cc->data, &bias, &bias);
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
    if (!is_float(g, ai) || !is_float(g, bi) || !is_float(g, yi)) return TDM_ERR_UNSUPPORTED;
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
    dn_input *in = add_input(p, DNNL_ARG_SRC, ai);
    in->md = src;
    in->exec_md = src_view;
    if (b->data) {
        add_const(p, DNNL_ARG_WEIGHTS, bi, b->data, &wt_user,
                  query_md(p->pd, dnnl_query_weights_md));
        if (q) p->in[p->nin - 1].qscale = 1.0f / q->ws;
    } else {
        in = add_input(p, DNNL_ARG_WEIGHTS, bi);
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
            add_const(p, DNNL_ARG_SRC_1, ti, t->data, &own, src0);
        else
            add_input(p, DNNL_ARG_SRC_1, ti)->md = *src0;
        return 0;
    }
    if (!dn_plain_dims(y->rank, d, dnnl_f32, view)) return TDM_ERR_UNSUPPORTED;
    if (t->data) {
        add_const(p, DNNL_ARG_SRC_1, ti, t->data, view, view);
    } else {
        dn_input *in = add_input(p, DNNL_ARG_SRC_1, ti);
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
    if (!is_float(g, ai) || !is_float(g, bi) || !is_float(g, yi)) return TDM_ERR_UNSUPPORTED;
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
        add_const(p, DNNL_ARG_SRC_0, ai, a->data, &src0, &src0);
    else
        add_input(p, DNNL_ARG_SRC_0, ai)->md = src0;
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

/* Clip bounds from attributes (opset < 11) or constant scalar inputs. */
static bool clip_bounds(const graph *g, const graph_node *n, float *lo, float *hi)
{
    *lo = graph_attr_float(n, "min", -INFINITY);
    *hi = graph_attr_float(n, "max", INFINITY);
    for (int k = 1; k < 3 && k < n->ninputs; k++) {
        int t = n->inputs[k];
        if (t < 0) continue;
        const graph_tensor *b = &g->tensors[t];
        if (!b->data || b->dtype != TDM_DTYPE_FLOAT || graph_tensor_numel(b) != 1 ||
            b->nbytes < sizeof(float))
            return false;
        float v;
        memcpy(&v, b->data, sizeof v);
        *(k == 1 ? lo : hi) = v;
    }
    return true;
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
        return clip_bounds(g, n, &c->a, &c->b);
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
    if (!unary_item(g, n, &it) || !is_float(g, xi) || !is_float(g, yi) || g->tensors[xi].data)
        return TDM_ERR_UNSUPPORTED;
    const graph_tensor *x = &g->tensors[xi], *y = &g->tensors[yi];
    if (!same_dims(x, y)) return TDM_ERR_UNSUPPORTED;
    dnnl_memory_desc_t src, dst;
    if (!follow_md(c, g, xi, &src)) return TDM_ERR_UNSUPPORTED;
    add_input(p, DNNL_ARG_SRC, xi)->md = src;
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
    add_const(p, DNNL_ARG_SRC_1, -1, zero_scalar, &zero, &zero);
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
    if (!is_float(g, xi) || !is_float(g, yi) || n->npost) return TDM_ERR_UNSUPPORTED;
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
    dn_input *in = add_input(p, DNNL_ARG_SRC, xi);
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
    add_input(p, DNNL_ARG_FROM, xi)->md = src;
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
    dn_input *in = add_input(p, DNNL_ARG_FROM, xi);
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
        rc = build_unary(c, g, n, p);
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
        rc = TDM_ERR_UNSUPPORTED;
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
