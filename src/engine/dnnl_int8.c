/*
 * dnnl_int8: which tensors lie on an 8-bit grid, which weights are 8-bit
 * integers times one scale, and the conversions between a tensor's f32 and
 * 8-bit forms. The int8 convolution itself is built in dnnl_ops.c with the
 * other convolutions, from what this file finds; see dnnl_int8.h.
 */
#include "dnnl_int8.h"

#include <math.h>
#include <string.h>

#include "tandem/engine.h"

bool dnq_grid(float scale, float zp, float qmin, float qmax, dnq_params *q)
{
    dnnl_data_type_t dt;
    if (!isfinite(scale) || !(scale > 0.0f) || !isfinite(1.0f / scale)) return false;
    if (qmin == 0.0f && qmax == 255.0f)
        dt = dnnl_u8;
    else if (qmin == -128.0f && qmax == 127.0f)
        dt = dnnl_s8;
    else
        return false;
    if (!(zp >= qmin && zp <= qmax) || zp != rintf(zp)) return false;
    /* An int8 grid is a uint8 one shifted by 128: stored as uint8, the
     * common zero point -128 (after a Relu) becomes none at all, and
     * oneDNN's u8 x s8 kernels need no compensation for a signed source. */
    q->scale = scale;
    q->zp = (int32_t)zp + (dt == dnnl_s8 ? 128 : 0);
    q->dt = dnnl_u8;
    return true;
}

/* The live node writing tensor t as its first output, or -1. */
static int producer_of(const graph *g, int t)
{
    int p = g->tensors[t].producer;
    if (p >= 0 && p < g->nnodes && !g->nodes[p].dead && g->nodes[p].noutputs > 0 &&
        g->nodes[p].outputs[0] == t)
        return p;
    for (int i = 0; i < g->nnodes; i++)
        if (!g->nodes[i].dead && g->nodes[i].noutputs > 0 && g->nodes[i].outputs[0] == t) return i;
    return -1;
}

/* The one value of a constant scalar of dtype dt, as a float. */
static bool scalar_of(const graph *g, int t, tdm_dtype dt, float *v)
{
    if (t < 0 || t >= g->ntensors) return false;
    const graph_tensor *c = &g->tensors[t];
    size_t esz = tdm_dtype_size(dt);
    if (!c->data || c->dtype != dt || graph_tensor_numel(c) != 1 || !esz || c->nbytes < esz)
        return false;
    if (dt == TDM_DTYPE_FLOAT)
        memcpy(v, c->data, sizeof *v);
    else if (dt == TDM_DTYPE_UINT8)
        *v = *(const uint8_t *)c->data;
    else if (dt == TDM_DTYPE_INT8)
        *v = *(const int8_t *)c->data;
    else
        return false;
    return true;
}

/* The grid of a per-tensor DequantizeLinear's output: its input's type,
 * its scalar scale and zero point. */
static bool dequant_grid(const graph *g, const graph_node *n, dnq_params *q)
{
    int x = n->inputs[0];
    if (n->ninputs < 2 || x < 0 || g->tensors[x].data) return false;
    tdm_dtype dt = g->tensors[x].dtype;
    float scale, zp = 0.0f;
    if ((dt != TDM_DTYPE_UINT8 && dt != TDM_DTYPE_INT8) ||
        !scalar_of(g, n->inputs[1], TDM_DTYPE_FLOAT, &scale) ||
        (n->ninputs > 2 && n->inputs[2] >= 0 && !scalar_of(g, n->inputs[2], dt, &zp)))
        return false;
    bool u8 = dt == TDM_DTYPE_UINT8;
    return dnq_grid(scale, zp, u8 ? 0.0f : -128.0f, u8 ? 255.0f : 127.0f, q);
}

bool dnq_tensor_params(const graph *g, int t, dnq_params *q)
{
    if (t < 0 || t >= g->ntensors) return false;
    const graph_tensor *gt = &g->tensors[t];
    if (gt->dtype != TDM_DTYPE_FLOAT || gt->data) return false;
    int p = producer_of(g, t);
    if (p < 0) return false;
    const graph_node *n = &g->nodes[p];
    if (n->npost > 0) {
        const graph_post *last = &n->post[n->npost - 1];
        return last->kind == POST_FAKEQUANT && dnq_grid(last->a, last->b, last->c, last->d, q);
    }
    if (n->op == OP_DEQUANTIZELINEAR) return dequant_grid(g, n, q);
    if (n->op != OP_FAKEQUANT || !graph_attr_get(n, "scale") || !graph_attr_get(n, "zero_point") ||
        !graph_attr_get(n, "qmin") || !graph_attr_get(n, "qmax"))
        return false;
    return dnq_grid(graph_attr_float(n, "scale", 0), graph_attr_float(n, "zero_point", 0),
                    graph_attr_float(n, "qmin", 0), graph_attr_float(n, "qmax", 0), q);
}

/* How far w / s may be from an integer: the folded weights are q * s_w
 * rounded to f32, and s is recovered from the largest of them, so the
 * quotient is off by a few f32 epsilons times 127. */
#define DNQ_GRID_TOL 1e-3f

bool dnq_weight_scale(const graph_tensor *w, float *scale)
{
    int64_t n = graph_tensor_numel(w);
    if (w->dtype != TDM_DTYPE_FLOAT || !w->data || n < 1 || w->nbytes < (size_t)n * sizeof(float))
        return false;
    const float *d = w->data;
    float mx = 0.0f;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(d[i])) return false;
        if (fabsf(d[i]) > mx) mx = fabsf(d[i]);
    }
    if (mx == 0.0f) {
        *scale = 1.0f;
        return true;
    }
    float s = mx / 127.0f;
    if (!(s > 0.0f) || !isfinite(1.0f / s)) return false;
    for (int64_t i = 0; i < n; i++) {
        float v = d[i] / s, r = rintf(v);
        if (fabsf(v - r) > DNQ_GRID_TOL || fabsf(r) > 127.0f) return false;
    }
    *scale = s;
    return true;
}

static bool is_8bit(dnnl_data_type_t dt)
{
    return dt == dnnl_u8 || dt == dnnl_s8;
}

int dnq_reorder_attr(const graph *g, int t, dnnl_data_type_t from, dnnl_data_type_t to,
                     dnnl_primitive_attr_t attr)
{
    if (from == to || t < 0 || t >= g->ntensors || g->tensors[t].dtype != TDM_DTYPE_FLOAT ||
        (!is_8bit(from) && !is_8bit(to)))
        return 0;
    dnq_params q;
    if (!dnq_tensor_params(g, t, &q) || (is_8bit(from) && from != q.dt) ||
        (is_8bit(to) && to != q.dt) || (is_8bit(from) && is_8bit(to)))
        return TDM_ERR_UNSUPPORTED;
    float os = is_8bit(from) ? q.scale : 1.0f / q.scale;
    int arg = is_8bit(from) ? DNNL_ARG_SRC : DNNL_ARG_DST;
    if (dnnl_primitive_attr_set_output_scales(attr, 1, 0, &os) != dnnl_success ||
        (q.zp && dnnl_primitive_attr_set_zero_points(attr, arg, 1, 0, &q.zp) != dnnl_success))
        return TDM_ERR_UNSUPPORTED;
    return 0;
}

bool dnq_retype(const dnnl_memory_desc_t *md, dnnl_data_type_t dt, dnnl_memory_desc_t *out)
{
    if (md->format_kind != dnnl_blocked || md->format_desc.blocking.inner_nblks != 0 ||
        md->extra.flags != 0 || md->offset0 != 0)
        return false;
    for (int i = 0; i < md->ndims; i++)
        if (md->padded_dims[i] != md->dims[i] || md->padded_offsets[i] != 0) return false;
    return dnnl_memory_desc_init_by_strides(out, md->ndims, md->dims, dt,
                                            md->format_desc.blocking.strides) == dnnl_success;
}

static bool same_grid(const dnq_params *a, const dnq_params *b)
{
    return a->scale == b->scale && a->zp == b->zp && a->dt == b->dt;
}

int dnq_drop_requant(graph *g)
{
    for (int i = 0; i < g->nnodes; i++) {
        graph_node *n = &g->nodes[i];
        dnq_params in, out;
        if (n->dead || n->op != OP_FAKEQUANT || n->npost || n->ninputs < 1 || n->noutputs < 1)
            continue;
        int x = n->inputs[0], y = n->outputs[0];
        if (x < 0 || y < 0 || g->tensors[y].is_output || g->tensors[x].rank != g->tensors[y].rank ||
            memcmp(g->tensors[x].dims, g->tensors[y].dims, sizeof g->tensors[x].dims) != 0 ||
            !dnq_tensor_params(g, x, &in) || !dnq_tensor_params(g, y, &out) ||
            !same_grid(&in, &out))
            continue;
        n->dead = true;
        graph_replace_uses(g, y, x);
    }
    return graph_compact(g);
}
