/*
 * opt_dnnl: the graph rewrites only the oneDNN backend wants, run by the
 * session planner on its clone once shapes are known and opt_fuse has run
 * (the reference backend runs the graph as opt_fuse left it):
 *   - a zero Pad in front of a convolution becomes the convolution's own
 *     padding;
 *   - element-wise ops following a binary or element-wise node become its
 *     post-ops (oneDNN runs those chains in one pass), within oneDNN's
 *     post-op limit (dn_post_cost, dnnl_post.c).
 */
#include <string.h>

#include "dnnl_post.h"
#include "ops.h"
#include "opt.h"

static bool const_i64s(const graph *g, int t, int64_t *v, int n)
{
    if (t < 0 || !g->tensors[t].data || g->tensors[t].dtype != TDM_DTYPE_INT64 ||
        graph_tensor_numel(&g->tensors[t]) != n || g->tensors[t].nbytes < (size_t)n * 8)
        return false;
    memcpy(v, g->tensors[t].data, (size_t)n * 8);
    return true;
}

/* The spatial pads [top, left, bottom, right] of a zero Pad on an NCHW
 * tensor, or false if it pads anything else or with another value. */
static bool zero_pad(const graph *g, const graph_node *p, int64_t *sp)
{
    int64_t pads[8];
    if (p->op != OP_PAD || strcmp(graph_attr_string(p, "mode", "constant"), "constant") != 0)
        return false;
    const graph_tensor *x = &g->tensors[p->inputs[0]];
    if (x->rank != 4 || x->dtype != TDM_DTYPE_FLOAT || x->data) return false;
    const graph_attr *pa = graph_attr_get(p, "pads");
    if (p->ninputs > 1 && p->inputs[1] >= 0) {
        if (!const_i64s(g, p->inputs[1], pads, 8)) return false;
    } else if (pa && pa->type == ATTR_INTS && pa->n == 8) {
        memcpy(pads, pa->ints, sizeof pads);
    } else {
        return false;
    }
    if (graph_attr_float(p, "value", 0.0f) != 0.0f) return false;
    if (p->ninputs > 2 && p->inputs[2] >= 0) {
        const graph_tensor *v = &g->tensors[p->inputs[2]];
        float f;
        if (!v->data || v->dtype != TDM_DTYPE_FLOAT || v->nbytes < 4) return false;
        memcpy(&f, v->data, 4);
        if (f != 0.0f) return false;
    }
    if (pads[0] || pads[1] || pads[4] || pads[5]) return false;
    sp[0] = pads[2], sp[1] = pads[3], sp[2] = pads[6], sp[3] = pads[7];
    for (int i = 0; i < 4; i++)
        if (sp[i] < 0) return false;
    return true;
}

/* Adds sp to a convolution's explicit pads (creating the attribute when the
 * file had none). */
static int conv_add_pads(graph_node *c, const int64_t *sp)
{
    if (strcmp(graph_attr_string(c, "auto_pad", "NOTSET"), "NOTSET") != 0)
        return TDM_ERR_UNSUPPORTED;
    for (int i = 0; i < c->nattrs; i++) {
        graph_attr *a = &c->attrs[i];
        if (strcmp(a->name, "pads") != 0) continue;
        if (a->type != ATTR_INTS || a->n != 4) return TDM_ERR_UNSUPPORTED;
        for (int k = 0; k < 4; k++)
            a->ints[k] += sp[k];
        return 0;
    }
    graph_attr_set_ints(c, "pads", sp, 4);
    return 0;
}

/* A zero Pad feeding a convolution, directly or through a fake quantisation
 * that maps 0 to 0 (so quantising before or after padding is the same),
 * becomes the convolution's padding: one pass over the data fewer, and the
 * tensor keeps its oneDNN layout. */
static int absorb_pads(graph *g)
{
    for (int i = 0; i < g->nnodes; i++) {
        graph_node *p = &g->nodes[i];
        int64_t sp[4];
        if (p->dead || !zero_pad(g, p, sp)) continue;
        int y = p->outputs[0], x = p->inputs[0];
        int c = graph_sole_consumer(g, y);
        if (c < 0) continue;
        graph_node *cn = &g->nodes[c];
        if (cn->op == OP_CONV && cn->inputs[0] == y) {
            int rc = conv_add_pads(cn, sp);
            if (rc == TDM_ERR_UNSUPPORTED) continue;
            if (rc) return rc;
            cn->inputs[0] = x;
            p->dead = true;
            continue;
        }
        if (cn->op != OP_FAKEQUANT || cn->npost) continue;
        float zp = graph_attr_float(cn, "zero_point", 0), qmin = graph_attr_float(cn, "qmin", 0),
              qmax = graph_attr_float(cn, "qmax", 0);
        if (zp < qmin || zp > qmax) continue;
        int y2 = cn->outputs[0], cc = graph_sole_consumer(g, y2);
        if (cc < 0 || g->nodes[cc].op != OP_CONV || g->nodes[cc].inputs[0] != y2) continue;
        int rc = conv_add_pads(&g->nodes[cc], sp);
        if (rc == TDM_ERR_UNSUPPORTED) continue;
        if (rc) return rc;
        cn->inputs[0] = x;
        memcpy(g->tensors[y2].dims, g->tensors[x].dims, sizeof g->tensors[x].dims);
        p->dead = true;
    }
    return graph_compact(g);
}

static bool post_anchor(graph_op op)
{
    return op == OP_CONV || op == OP_GEMM || op == OP_MATMUL || op == OP_ADD || op == OP_SUB ||
           op == OP_MUL || op == OP_DIV || op == OP_MIN || op == OP_MAX || dn_is_eltwise(op);
}

/* Node c as a post-op, if it is one of the kinds graph_post has. */
static bool as_post(const graph *g, const graph_node *c, int t, graph_post *p)
{
    memset(p, 0, sizeof *p);
    p->input = -1;
    if (c->inputs[0] != t) return false;
    switch (c->op) {
    case OP_RELU:
        p->kind = POST_RELU;
        return true;
    case OP_CLIP:
        p->kind = POST_CLIP;
        return ops_clip_bounds(c, &p->a, &p->b);
    case OP_FAKEQUANT:
        if (!graph_attr_get(c, "scale") || c->npost) return false;
        p->kind = POST_FAKEQUANT;
        p->a = graph_attr_float(c, "scale", 1.0f);
        p->b = graph_attr_float(c, "zero_point", 0.0f);
        p->c = graph_attr_float(c, "qmin", 0.0f);
        p->d = graph_attr_float(c, "qmax", 255.0f);
        return p->a > 0.0f && p->c <= p->d;
    default:
        return false;
    }
}

/* opt_fuse attaches activations to Conv/Gemm/MatMul/Add only; oneDNN's
 * binary primitive takes post-ops too, and standalone element-wise chains
 * run as one (dnnl_ops.c), so fuse behind those as well. The cost bound
 * keeps every primitive within oneDNN's post-op limit. */
static int fuse_more(graph *g)
{
    for (int i = 0; i < g->nnodes; i++) {
        graph_node *a = &g->nodes[i];
        if (a->dead || !post_anchor(a->op) || a->noutputs < 1) continue;
        int cost = dn_is_eltwise(a->op) ? 4 : 0;
        for (int k = 0; k < a->npost; k++)
            cost += dn_post_cost(&a->post[k]);
        while (a->npost < GRAPH_MAX_POST) {
            int t = a->outputs[0];
            if (g->tensors[t].dtype != TDM_DTYPE_FLOAT) break;
            int ci = graph_sole_consumer(g, t);
            graph_post p;
            if (ci < 0 || !as_post(g, &g->nodes[ci], t, &p)) break;
            const graph_tensor *o = &g->tensors[g->nodes[ci].outputs[0]];
            if (o->rank != g->tensors[t].rank ||
                memcmp(o->dims, g->tensors[t].dims, sizeof o->dims) != 0 ||
                o->dtype != TDM_DTYPE_FLOAT || cost + dn_post_cost(&p) > DN_MAX_POSTS)
                break;
            cost += dn_post_cost(&p);
            a->post[a->npost++] = p;
            graph_node *c = &g->nodes[ci];
            a->outputs[0] = c->outputs[0];
            g->tensors[c->outputs[0]].producer = i;
            c->dead = true;
        }
    }
    return graph_compact(g);
}

int opt_dnnl(graph *g)
{
    int rc;
    if ((rc = absorb_pads(g))) return rc;
    return fuse_more(g);
}
