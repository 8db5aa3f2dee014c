/*
 * opt: the graph rewrites that turn an exported ONNX graph into the few fat
 * nodes the kernels run fast.
 *
 * Two moments:
 *   - opt_model(), once per model at load time, on shapes that may still have
 *     an unknown batch: normalise opset-dependent attributes, drop Identity
 *     and inference Dropout, fold every subgraph whose inputs are all constant
 *     (Constant nodes, DequantizeLinear of int8 weights...), fold
 *     BatchNormalization into the Conv before it, and collapse
 *     QuantizeLinear->DequantizeLinear pairs into one float FAKEQUANT node.
 *   - opt_infer_and_fold() and opt_fuse(), on each session's clone once its
 *     batch is fixed: infer every shape, fold what became constant (Shape of a
 *     known tensor and everything computed from it), then attach activations,
 *     fake quantisation and residual additions to the Conv/Gemm/MatMul/Add
 *     before them as post-ops.
 *
 * Every pass only marks nodes dead and rewires tensor indices; the passes end
 * with graph_compact() and a physical reordering of the nodes into execution
 * order, so later stages can walk g->nodes front to back.
 *
 * Constant folding runs the reference kernels (ref_run), so a folded value is
 * by definition what the unfused graph would have computed.
 */
#include "opt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kern_ref.h"
#include "ops.h"

/* Folding never creates a constant larger than this; bigger results are left
 * for the kernels to compute at run time. */
#define OPT_FOLD_MAX_BYTES ((size_t)256 << 20)

/* ------------------------------------------------------------------------ */
/* Small helpers                                                             */
/* ------------------------------------------------------------------------ */

static bool is_const(const graph *g, int t)
{
    return t >= 0 && t < g->ntensors && g->tensors[t].data != NULL;
}

/* Element i of a constant as a double; integer and float dtypes. */
static bool const_elem(const graph_tensor *t, int64_t i, double *v)
{
    const char *p = t->data;
    size_t esz = tdm_dtype_size(t->dtype);
    if (!p || i < 0 || !esz || (size_t)(i + 1) * esz > t->nbytes) return false;
    switch (t->dtype) {
    case TDM_DTYPE_FLOAT: {
        float f;
        memcpy(&f, p + i * 4, 4);
        *v = f;
        return true;
    }
    case TDM_DTYPE_UINT8:
        *v = ((const uint8_t *)p)[i];
        return true;
    case TDM_DTYPE_INT8:
        *v = ((const int8_t *)p)[i];
        return true;
    case TDM_DTYPE_INT32: {
        int32_t x;
        memcpy(&x, p + i * 4, 4);
        *v = x;
        return true;
    }
    case TDM_DTYPE_INT64: {
        int64_t x;
        memcpy(&x, p + i * 8, 8);
        *v = (double)x;
        return true;
    }
    default:
        return false;
    }
}

/* The single value of a constant whose elements are all equal (a scalar, or
 * a tensor broadcasting one value). */
static bool const_uniform(const graph *g, int t, double *v)
{
    if (!is_const(g, t)) return false;
    const graph_tensor *tt = &g->tensors[t];
    int64_t n = graph_tensor_numel(tt);
    size_t esz = tdm_dtype_size(tt->dtype);
    if (n < 1 || !esz || tt->nbytes < (size_t)n * esz) return false;
    double first, x;
    if (!const_elem(tt, 0, &first)) return false;
    for (int64_t i = 1; i < n; i++)
        if (!const_elem(tt, i, &x) || x != first) return false;
    *v = first;
    return true;
}

/* Makes node `keep` produce what node `gone` produced, and kills `gone`:
 * the fused chain's last output keeps its name (and graph-output status). */
static void take_output(graph *g, int keep, int gone)
{
    graph_node *k = &g->nodes[keep], *d = &g->nodes[gone];
    k->outputs[0] = d->outputs[0];
    g->tensors[d->outputs[0]].producer = keep;
    d->dead = true;
}

/* Drops dead nodes and unused tensors, then stores the nodes in execution
 * order so that every later stage may simply walk g->nodes. */
static int compact_and_sort(graph *g)
{
    int rc = graph_compact(g), count = 0;
    if (rc) return rc;
    if (g->nnodes == 0) return 0;
    int *order = malloc((size_t)g->nnodes * sizeof *order);
    graph_node *sorted = malloc((size_t)g->nnodes * sizeof *sorted);
    if (!order || !sorted) {
        rc = graph_fail(g, TDM_ERR_NOMEM, "out of memory sorting the graph");
        goto out;
    }
    if ((rc = graph_topo_sort(g, order, &count))) goto out;
    if (count != g->nnodes) {
        rc = graph_fail(g, TDM_ERR_PARSE, "the graph has a cycle");
        goto out;
    }
    for (int i = 0; i < count; i++)
        sorted[i] = g->nodes[order[i]];
    memcpy(g->nodes, sorted, (size_t)count * sizeof *sorted);
    for (int i = 0; i < count; i++)
        for (int k = 0; k < g->nodes[i].noutputs; k++)
            if (g->nodes[i].outputs[k] >= 0) g->tensors[g->nodes[i].outputs[k]].producer = i;
out:
    free(sorted);
    free(order);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Constant folding                                                          */
/* ------------------------------------------------------------------------ */

static int fold_constant_node(graph *g, int idx)
{
    graph_node *n = &g->nodes[idx];
    int out = n->outputs[0], rc;
    if ((rc = ops_infer(g, idx))) return rc;
    const graph_tensor *o = &g->tensors[out];
    size_t nbytes = (size_t)graph_tensor_numel(o) * tdm_dtype_size(o->dtype);
    const graph_attr *a = graph_attr_get(n, "value");
    const void *src = NULL;
    if (a && a->type == ATTR_TENSOR) {
        src = g->tensors[a->tensor].data;
        if (g->tensors[a->tensor].nbytes != nbytes)
            return graph_fail(g, TDM_ERR_PARSE, "node '%s' (op Constant): value size mismatch",
                              n->name);
    } else if ((a = graph_attr_get(n, "value_float")) || (a = graph_attr_get(n, "value_int"))) {
        src = a->type == ATTR_FLOAT ? (const void *)&a->f : (const void *)&a->i;
    } else if ((a = graph_attr_get(n, "value_floats"))) {
        src = a->floats;
    } else if ((a = graph_attr_get(n, "value_ints"))) {
        src = a->ints;
    }
    void *data = malloc(nbytes ? nbytes : 1);
    if (!data) return graph_fail(g, TDM_ERR_NOMEM, "out of memory folding a Constant");
    if (nbytes) memcpy(data, src, nbytes);
    graph_set_data(g, out, data, nbytes);
    g->nodes[idx].dead = true;
    return 0;
}

/* Shape of a tensor whose dims are all known. */
static int fold_shape_node(graph *g, int idx)
{
    graph_node *n = &g->nodes[idx];
    const graph_tensor *x = &g->tensors[n->inputs[0]];
    int rc = ops_infer(g, idx);
    if (rc) return rc;
    int64_t start = graph_attr_int(n, "start", 0);
    if (start < 0) start += x->rank;
    if (start < 0) start = 0;
    int64_t len = graph_tensor_numel(&g->tensors[n->outputs[0]]);
    int64_t *v = malloc((size_t)(len ? len : 1) * sizeof *v);
    if (!v) return graph_fail(g, TDM_ERR_NOMEM, "out of memory folding a Shape");
    for (int64_t i = 0; i < len; i++)
        v[i] = x->dims[start + i];
    graph_set_data(g, n->outputs[0], v, (size_t)len * sizeof *v);
    n->dead = true;
    return 0;
}

/* Runs node idx, whose inputs are all constants, with the reference kernel
 * and turns its outputs into constants. Returns 1 when the node was left
 * alone (its result would be too large), 0 when folded. */
static int fold_node(graph *g, int idx)
{
    graph_node *n = &g->nodes[idx];
    if (n->op == OP_CONSTANT) return fold_constant_node(g, idx);
    if (n->op == OP_SHAPE) return fold_shape_node(g, idx);
    int rc = ops_infer(g, idx);
    if (rc) return rc;
    n = &g->nodes[idx];
    int nin = n->ninputs > 0 ? n->ninputs : 1, nout = n->noutputs > 0 ? n->noutputs : 1;
    const graph_tensor *in[nin];
    const void *in_data[nin];
    const graph_tensor *outs[nout];
    void *out_data[nout];
    size_t out_bytes[nout];
    for (int i = 0; i < n->ninputs; i++) {
        in[i] = n->inputs[i] >= 0 ? &g->tensors[n->inputs[i]] : NULL;
        in_data[i] = in[i] ? in[i]->data : NULL;
    }
    for (int i = 0; i < n->noutputs; i++) {
        outs[i] = n->outputs[i] >= 0 ? &g->tensors[n->outputs[i]] : NULL;
        out_data[i] = NULL;
        out_bytes[i] = 0;
    }
    for (int i = 0; i < n->noutputs; i++) {
        if (!outs[i]) continue;
        int64_t numel = graph_tensor_numel(outs[i]);
        size_t esz = tdm_dtype_size(outs[i]->dtype);
        if (numel < 0 || !esz || (uint64_t)numel > OPT_FOLD_MAX_BYTES / esz) {
            rc = 1;
            goto out;
        }
        out_bytes[i] = (size_t)numel * esz;
        if (!(out_data[i] = calloc(1, out_bytes[i] ? out_bytes[i] : 1))) {
            rc = graph_fail(g, TDM_ERR_NOMEM, "out of memory folding node '%s'", n->name);
            goto out;
        }
    }
    ref_args args = {.nin = n->ninputs,
                     .in = in,
                     .in_data = in_data,
                     .nout = n->noutputs,
                     .out = outs,
                     .out_data = out_data};
    char err[GRAPH_ERR_LEN];
    err[0] = '\0';
    if ((rc = ref_run(n, &args, err, sizeof err))) {
        rc = graph_fail(g, rc, "%s", err[0] ? err : "constant folding failed");
        goto out;
    }
    for (int i = 0; i < n->noutputs; i++) {
        if (!outs[i]) continue;
        graph_set_data(g, n->outputs[i], out_data[i], out_bytes[i]);
        out_data[i] = NULL;
    }
    n->dead = true;
out:
    for (int i = 0; i < n->noutputs; i++)
        free(out_data[i]);
    return rc;
}

/* True if every present input of node n is constant and none of its outputs
 * is a graph output (those stay computed so a session can write them). */
static bool all_inputs_const(const graph *g, const graph_node *n)
{
    if (!ops_foldable(n->op)) return false;
    for (int k = 0; k < n->noutputs; k++)
        if (n->outputs[k] >= 0 && g->tensors[n->outputs[k]].is_output) return false;
    if (n->op == OP_CONSTANT) return true;
    int present = 0;
    for (int k = 0; k < n->ninputs; k++) {
        if (n->inputs[k] < 0) continue;
        if (!is_const(g, n->inputs[k])) return false;
        present++;
    }
    return present > 0;
}

static bool shape_known(const graph_tensor *t)
{
    return t->rank >= 0 && graph_tensor_numel(t) >= 0;
}

/* Folds, in execution order, every node whose inputs are constants; with
 * infer_all, infers the shape of every other node too (and Shape of a known
 * tensor counts as constant). */
static int fold_pass(graph *g, bool infer_all)
{
    int count = 0, rc = 0;
    int *order = malloc((size_t)(g->nnodes ? g->nnodes : 1) * sizeof *order);
    if (!order) return graph_fail(g, TDM_ERR_NOMEM, "out of memory ordering the graph");
    if ((rc = graph_topo_sort(g, order, &count))) goto out;
    for (int i = 0; i < count; i++) {
        int idx = order[i];
        const graph_node *n = &g->nodes[idx];
        bool foldable = all_inputs_const(g, n) ||
                        (infer_all && n->op == OP_SHAPE && !g->tensors[n->outputs[0]].is_output &&
                         shape_known(&g->tensors[n->inputs[0]]));
        if (foldable) {
            rc = fold_node(g, idx);
            if (rc < 0) goto out;
            if (rc == 0) continue;
            rc = 0;
        }
        if (infer_all && (rc = ops_infer(g, idx))) goto out;
    }
out:
    free(order);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Load-time rewrites                                                        */
/* ------------------------------------------------------------------------ */

/* Softmax changed meaning at opset 13 (from "flatten to 2-D at axis" to "along
 * axis"): record the meaning explicitly so the kernels need not know the
 * opset. */
static void normalise_attrs(graph *g)
{
    for (int i = 0; i < g->nnodes; i++) {
        graph_node *n = &g->nodes[i];
        if (n->dead || n->op != OP_SOFTMAX) continue;
        graph_attr_set_int(n, "axis", graph_attr_int(n, "axis", g->opset < 13 ? 1 : -1));
        graph_attr_set_int(n, "coerce_2d", g->opset < 13 ? 1 : 0);
    }
}

/* Copies a constant's payload (for renaming a constant that is also a graph
 * output). */
static int copy_payload(graph *g, int from, int to)
{
    const graph_tensor *f = &g->tensors[from];
    void *data = malloc(f->nbytes ? f->nbytes : 1);
    if (!data) return graph_fail(g, TDM_ERR_NOMEM, "out of memory copying a constant");
    memcpy(data, f->data, f->nbytes);
    graph_tensor *t = &g->tensors[to];
    t->dtype = f->dtype;
    t->rank = f->rank;
    memcpy(t->dims, f->dims, sizeof t->dims);
    graph_set_data(g, to, data, f->nbytes);
    t->producer = -1;
    return 0;
}

/* Identity and inference-mode Dropout pass their input through. Readers are
 * rewired to the input; when the output is a graph output its name must
 * survive, so the producer of the input is made to write it instead. */
static int remove_passthrough(graph *g)
{
    int rc;
    for (int i = 0; i < g->nnodes; i++) {
        graph_node *n = &g->nodes[i];
        if (n->dead || (n->op != OP_IDENTITY && n->op != OP_DROPOUT)) continue;
        if (n->ninputs < 1 || n->inputs[0] < 0 || n->outputs[0] < 0) continue;
        if (n->op == OP_DROPOUT && n->noutputs > 1 && n->outputs[1] >= 0 &&
            graph_consumers(g, n->outputs[1]) > 0)
            continue; /* its mask is read: the kernels must produce it */
        int x = n->inputs[0], y = n->outputs[0];
        if (!g->tensors[y].is_output) {
            n->dead = true;
            graph_replace_uses(g, y, x);
            continue;
        }
        graph_tensor *xt = &g->tensors[x];
        if (xt->is_input || xt->is_output) continue; /* both names must stay: keep the copy */
        if (xt->data) {
            if ((rc = copy_payload(g, x, y))) return rc;
            g->nodes[i].dead = true;
            continue;
        }
        int p = xt->producer;
        if (p < 0 || g->nodes[p].dead) continue;
        graph_node *pn = &g->nodes[p];
        for (int k = 0; k < pn->noutputs; k++)
            if (pn->outputs[k] == x) pn->outputs[k] = y;
        g->tensors[y].producer = p;
        xt->producer = -1;
        n->dead = true;
        graph_replace_uses(g, x, y);
    }
    return 0;
}

/* y = gamma * (x - mean) / sqrt(var + eps) + beta folded into the Conv's
 * weights and bias: W' = W * s, b' = (b - mean) * s + beta, s per output
 * channel. New payloads: the originals may be shared with other nodes. */
static int fold_bn_into_conv(graph *g, int bn_idx)
{
    graph_node *bn = &g->nodes[bn_idx];
    int x = bn->inputs[0];
    int cv = g->tensors[x].producer;
    if (cv < 0 || g->nodes[cv].dead || g->nodes[cv].op != OP_CONV) return 0;
    if (g->tensors[x].is_output || graph_consumers(g, x) != 1) return 0;
    graph_node *conv = &g->nodes[cv];
    int w = conv->inputs[1], b = conv->ninputs > 2 ? conv->inputs[2] : -1;
    if (!is_const(g, w) || (b >= 0 && !is_const(g, b))) return 0;
    for (int k = 1; k < 5; k++)
        if (!is_const(g, bn->inputs[k]) || g->tensors[bn->inputs[k]].dtype != TDM_DTYPE_FLOAT)
            return 0;
    const graph_tensor *wt = &g->tensors[w];
    if (wt->dtype != TDM_DTYPE_FLOAT || wt->rank != 4 ||
        (b >= 0 && g->tensors[b].dtype != TDM_DTYPE_FLOAT))
        return 0;
    int64_t oc = wt->dims[0], numel = graph_tensor_numel(wt);
    if (oc <= 0 || numel <= 0) return 0;
    for (int k = 1; k < 5; k++)
        if (graph_tensor_numel(&g->tensors[bn->inputs[k]]) != oc) return 0;
    if (b >= 0 && graph_tensor_numel(&g->tensors[b]) != oc) return 0;

    int rc = 0;
    int64_t per = numel / oc;
    float *nw = malloc((size_t)numel * sizeof *nw), *nb = malloc((size_t)oc * sizeof *nb);
    if (!nw || !nb) {
        rc = graph_fail(g, TDM_ERR_NOMEM, "out of memory folding BatchNormalization");
        goto out;
    }
    const float *gam = g->tensors[bn->inputs[1]].data, *bet = g->tensors[bn->inputs[2]].data,
                *mean = g->tensors[bn->inputs[3]].data, *var = g->tensors[bn->inputs[4]].data,
                *ow = wt->data, *ob = b >= 0 ? g->tensors[b].data : NULL;
    double eps = graph_attr_float(bn, "epsilon", 1e-5f);
    for (int64_t o = 0; o < oc; o++) {
        double s = gam[o] / sqrt((double)var[o] + eps);
        for (int64_t j = 0; j < per; j++)
            nw[o * per + j] = (float)(ow[o * per + j] * s);
        nb[o] = (float)(((ob ? ob[o] : 0.0) - mean[o]) * s + bet[o]);
    }
    /* Names derived from the BN node so they stay unique and readable. */
    char name[512];
    int64_t wdims[4];
    memcpy(wdims, wt->dims, sizeof wdims);
    snprintf(name, sizeof name, "%s::folded_weight", bn->name ? bn->name : "bn");
    int nwt = graph_add_tensor(g, name, TDM_DTYPE_FLOAT, 4, wdims);
    if (nwt < 0) {
        rc = nwt;
        goto out;
    }
    snprintf(name, sizeof name, "%s::folded_bias",
             g->nodes[bn_idx].name ? g->nodes[bn_idx].name : "bn");
    int nbt = graph_add_tensor(g, name, TDM_DTYPE_FLOAT, 1, &oc);
    if (nbt < 0) {
        rc = nbt;
        goto out;
    }
    graph_set_data(g, nwt, nw, (size_t)numel * sizeof *nw);
    graph_set_data(g, nbt, nb, (size_t)oc * sizeof *nb);
    nw = nb = NULL;
    conv = &g->nodes[cv];
    if (conv->ninputs < 3) {
        int *grown = realloc(conv->inputs, 3 * sizeof *grown);
        if (!grown) {
            rc = graph_fail(g, TDM_ERR_NOMEM, "out of memory folding BatchNormalization");
            goto out;
        }
        conv->inputs = grown;
        conv->ninputs = 3;
    }
    conv->inputs[1] = nwt;
    conv->inputs[2] = nbt;
    take_output(g, cv, bn_idx);
out:
    free(nw);
    free(nb);
    return rc;
}

static int fold_batchnorms(graph *g)
{
    int rc;
    for (int i = 0; i < g->nnodes; i++)
        if (!g->nodes[i].dead && g->nodes[i].op == OP_BATCHNORM && (rc = fold_bn_into_conv(g, i)))
            return rc;
    return 0;
}

/* Scalar quantisation parameters of a Q or DQ node: constant scale, optional
 * constant zero point (uint8 0 when absent). */
typedef struct {
    double scale, zp;
    tdm_dtype qtype;
} qparams;

static bool scalar_qparams(const graph *g, const graph_node *n, qparams *q)
{
    int s = n->inputs[1], z = n->ninputs > 2 ? n->inputs[2] : -1;
    if (!is_const(g, s) || graph_tensor_numel(&g->tensors[s]) != 1) return false;
    if (g->tensors[s].dtype != TDM_DTYPE_FLOAT || !const_elem(&g->tensors[s], 0, &q->scale))
        return false;
    q->zp = 0;
    q->qtype = TDM_DTYPE_UINT8;
    if (z >= 0) {
        if (!is_const(g, z) || graph_tensor_numel(&g->tensors[z]) != 1) return false;
        q->qtype = g->tensors[z].dtype;
        if (!const_elem(&g->tensors[z], 0, &q->zp)) return false;
    }
    return q->scale > 0 && (q->qtype == TDM_DTYPE_UINT8 || q->qtype == TDM_DTYPE_INT8);
}

/* QuantizeLinear whose output is read only by DequantizeLinears with the same
 * scalar parameters: each DQ becomes FAKEQUANT(x), which stays in float. */
static int fuse_qdq(graph *g, int qi)
{
    qparams q, d;
    if (!scalar_qparams(g, &g->nodes[qi], &q)) return 0;
    int y = g->nodes[qi].outputs[0];
    if (g->tensors[y].is_output) return 0;
    int readers = 0;
    for (int i = 0; i < g->nnodes; i++) {
        const graph_node *n = &g->nodes[i];
        if (n->dead) continue;
        for (int k = 0; k < n->ninputs; k++) {
            if (n->inputs[k] != y) continue;
            if (n->op != OP_DEQUANTIZELINEAR || k != 0 || !scalar_qparams(g, n, &d) ||
                d.scale != q.scale || d.zp != q.zp || d.qtype != q.qtype)
                return 0;
            readers++;
        }
    }
    if (readers == 0 || readers != graph_consumers(g, y)) return 0;
    int x = g->nodes[qi].inputs[0];
    float qmin = q.qtype == TDM_DTYPE_UINT8 ? 0.0f : -128.0f;
    float qmax = q.qtype == TDM_DTYPE_UINT8 ? 255.0f : 127.0f;
    for (int i = 0; i < g->nnodes; i++) {
        if (g->nodes[i].dead || g->nodes[i].op != OP_DEQUANTIZELINEAR || g->nodes[i].inputs[0] != y)
            continue;
        int out = g->nodes[i].outputs[0];
        char *name = g->nodes[i].name;
        g->nodes[i].dead = true;
        int fq = graph_add_node(g, name, "FakeQuant", OP_FAKEQUANT, 1, &x, 1, &out);
        if (fq < 0) return fq;
        graph_node *f = &g->nodes[fq];
        g->tensors[out].producer = fq;
        graph_attr_set_float(f, "scale", (float)q.scale);
        graph_attr_set_float(f, "zero_point", (float)q.zp);
        graph_attr_set_float(f, "qmin", qmin);
        graph_attr_set_float(f, "qmax", qmax);
    }
    g->nodes[qi].dead = true;
    return 0;
}

static int fuse_qdq_pairs(graph *g)
{
    int rc, n = g->nnodes; /* nodes added here are FAKEQUANTs: no need to visit them */
    for (int i = 0; i < n; i++)
        if (!g->nodes[i].dead && g->nodes[i].op == OP_QUANTIZELINEAR && (rc = fuse_qdq(g, i)))
            return rc;
    return 0;
}

int opt_model(graph *g)
{
    int rc;
    if (!g) return TDM_ERR_INVALID;
    normalise_attrs(g);
    if ((rc = remove_passthrough(g))) return rc;
    if ((rc = fold_pass(g, false))) return rc;
    if ((rc = fold_batchnorms(g))) return rc;
    if ((rc = fuse_qdq_pairs(g))) return rc;
    return compact_and_sort(g);
}

/* ------------------------------------------------------------------------ */
/* Session-time passes                                                       */
/* ------------------------------------------------------------------------ */

/* With shapes known, auto_pad becomes explicit pads so kernels see one form. */
static void explicit_pads(graph *g, int idx)
{
    graph_node *n = &g->nodes[idx];
    const char *ap = graph_attr_string(n, "auto_pad", "NOTSET");
    if (strcmp(ap, "NOTSET") == 0) return;
    const graph_tensor *x = &g->tensors[n->inputs[0]], *y = &g->tensors[n->outputs[0]];
    const graph_attr *st = graph_attr_get(n, "strides"), *di = graph_attr_get(n, "dilations"),
                     *ks = graph_attr_get(n, "kernel_shape");
    int64_t pads[4] = {0, 0, 0, 0};
    if (strcmp(ap, "VALID") != 0) {
        for (int i = 0; i < 2; i++) {
            int64_t k = ks && ks->n == 2 ? ks->ints[i] : g->tensors[n->inputs[1]].dims[2 + i];
            int64_t s = st && st->n == 2 ? st->ints[i] : 1, d = di && di->n == 2 ? di->ints[i] : 1;
            int64_t total = (y->dims[2 + i] - 1) * s + (k - 1) * d + 1 - x->dims[2 + i];
            if (total < 0) total = 0;
            bool lower = strcmp(ap, "SAME_LOWER") == 0;
            pads[i] = lower ? total - total / 2 : total / 2;
            pads[i + 2] = total - pads[i];
        }
    }
    graph_attr_set_ints(n, "pads", pads, 4);
    graph_attr_set_string(n, "auto_pad", "NOTSET");
}

/* Clip's constant bound inputs (opset 11) become its "min"/"max"
 * attributes, the one form every later reader takes (ops_clip_bounds); a
 * bound that is not a constant scalar leaves the node as it is. */
static void normalise_clip(graph *g, int idx)
{
    graph_node *n = &g->nodes[idx];
    double v[2] = {-INFINITY, INFINITY};
    for (int k = 1; k < 3 && k < n->ninputs; k++) {
        int t = n->inputs[k];
        if (t >= 0 && (graph_tensor_numel(&g->tensors[t]) != 1 || !const_uniform(g, t, &v[k - 1])))
            return;
    }
    for (int k = 1; k < 3 && k < n->ninputs; k++)
        if (n->inputs[k] >= 0) graph_attr_set_float(n, k == 1 ? "min" : "max", (float)v[k - 1]);
    n->ninputs = 1;
}

int opt_infer_and_fold(graph *g)
{
    int rc;
    if (!g) return TDM_ERR_INVALID;
    if ((rc = fold_pass(g, true))) return rc;
    for (int i = 0; i < g->nnodes; i++) {
        graph_node *n = &g->nodes[i];
        if (n->dead) continue;
        if (n->op == OP_CLIP) normalise_clip(g, i);
        if (n->op != OP_CONV && n->op != OP_MAXPOOL && n->op != OP_AVGPOOL) continue;
        explicit_pads(g, i);
    }
    if ((rc = compact_and_sort(g))) return rc;
    for (int i = 0; i < g->ntensors; i++) {
        const graph_tensor *t = &g->tensors[i];
        if (!t->data && !shape_known(t))
            return graph_fail(g, TDM_ERR_INVALID, "the shape of tensor '%s' is unknown", t->name);
    }
    return 0;
}

static bool same_shape(const graph_tensor *a, const graph_tensor *b)
{
    if (a->rank != b->rank || a->dtype != b->dtype) return false;
    for (int i = 0; i < a->rank; i++)
        if (a->dims[i] != b->dims[i] || a->dims[i] < 0) return false;
    return true;
}

/* Whether constant t holds one float per channel of y (axis 1): its shape,
 * aligned to y's from the right as broadcasting aligns it, is all ones but
 * for y's channel count at y's axis 1. */
static bool const_per_channel(const graph *g, int t, const graph_tensor *y)
{
    if (!is_const(g, t) || y->rank < 2) return false;
    const graph_tensor *c = &g->tensors[t];
    if (c->dtype != TDM_DTYPE_FLOAT || c->rank < y->rank - 1 || c->rank > y->rank) return false;
    int64_t n = graph_tensor_numel(c);
    if (n != y->dims[1] || c->nbytes < (size_t)n * sizeof(float)) return false;
    for (int i = 0; i < c->rank; i++) {
        int yaxis = y->rank - c->rank + i;
        if (c->dims[i] != (yaxis == 1 ? y->dims[1] : 1)) return false;
    }
    return true;
}

/* Appends the addend of a POST_SUM to the anchor's inputs; a Conv keeps its
 * bias slot (2) even when it has no bias, so the addend sits at 3 or later. */
static int append_input(graph *g, int anchor, int t, int *pos)
{
    graph_node *a = &g->nodes[anchor];
    int base = a->op == OP_CONV && a->ninputs < 3 ? 3 : a->ninputs;
    int *grown = realloc(a->inputs, (size_t)(base + 1) * sizeof *grown);
    if (!grown) return graph_fail(g, TDM_ERR_NOMEM, "out of memory fusing node '%s'", a->name);
    for (int k = a->ninputs; k < base; k++)
        grown[k] = -1;
    grown[base] = t;
    a->inputs = grown;
    a->ninputs = base + 1;
    *pos = base;
    return 0;
}

/* Tries to fuse the consumer c of the anchor's current output t. Returns 1 if
 * fused, 0 if the chain stops here, or a negative status. */
static int fuse_one(graph *g, int anchor, int ci, int t)
{
    graph_node *a = &g->nodes[anchor], *c = &g->nodes[ci];
    graph_post p = {.kind = POST_RELU, .a = 0, .b = 0, .c = 0, .d = 0, .input = -1};
    const graph_tensor *tt = &g->tensors[t];
    if (c->noutputs < 1 || c->outputs[0] < 0) return 0;
    if (!same_shape(tt, &g->tensors[c->outputs[0]])) return 0;
    switch (c->op) {
    case OP_RELU:
        break;
    case OP_CLIP:
        if (c->inputs[0] != t || !ops_clip_bounds(c, &p.a, &p.b)) return 0;
        p.kind = POST_CLIP;
        break;
    case OP_MIN:
    case OP_MAX: {
        int other = c->inputs[0] == t ? c->inputs[1] : c->inputs[0];
        double v;
        if (other == t) return 0;
        if (const_uniform(g, other, &v)) {
            p.kind = POST_CLIP;
            p.a = c->op == OP_MIN ? -INFINITY : (float)v;
            p.b = c->op == OP_MIN ? (float)v : INFINITY;
            break;
        }
        /* A per-channel bound (a relu6-like clamp with one ceiling per
         * channel) only onto a Conv, whose backend takes it as a binary
         * post-op; the constant becomes one more input of the anchor. */
        if (a->op != OP_CONV || !const_per_channel(g, other, tt)) return 0;
        int rc = append_input(g, anchor, other, &p.input);
        if (rc) return rc;
        a = &g->nodes[anchor];
        p.kind = c->op == OP_MIN ? POST_MIN_CHANNEL : POST_MAX_CHANNEL;
        break;
    }
    case OP_FAKEQUANT:
        p.kind = POST_FAKEQUANT;
        p.a = graph_attr_float(c, "scale", 1.0f);
        p.b = graph_attr_float(c, "zero_point", 0.0f);
        p.c = graph_attr_float(c, "qmin", 0.0f);
        p.d = graph_attr_float(c, "qmax", 255.0f);
        break;
    case OP_ADD: {
        if (a->op != OP_CONV) return 0;
        for (int k = 0; k < a->npost; k++)
            if (a->post[k].kind == POST_SUM) return 0;
        int other = c->inputs[0] == t ? c->inputs[1] : c->inputs[0];
        if (other == t || other < 0 || !same_shape(tt, &g->tensors[other])) return 0;
        int rc = append_input(g, anchor, other, &p.input);
        if (rc) return rc;
        a = &g->nodes[anchor];
        p.kind = POST_SUM;
        break;
    }
    default:
        return 0;
    }
    a->post[a->npost++] = p;
    take_output(g, anchor, ci);
    return 1;
}

int opt_fuse(graph *g)
{
    int rc = 0, count = 0;
    if (!g) return TDM_ERR_INVALID;
    int *order = malloc((size_t)(g->nnodes ? g->nnodes : 1) * sizeof *order);
    if (!order) return graph_fail(g, TDM_ERR_NOMEM, "out of memory ordering the graph");
    if ((rc = graph_topo_sort(g, order, &count))) goto out;
    for (int i = 0; i < count; i++) {
        int anchor = order[i];
        graph_op op = g->nodes[anchor].op;
        if (g->nodes[anchor].dead ||
            (op != OP_CONV && op != OP_GEMM && op != OP_MATMUL && op != OP_ADD))
            continue;
        while (g->nodes[anchor].npost < GRAPH_MAX_POST) {
            int t = g->nodes[anchor].outputs[0];
            int ci = graph_sole_consumer(g, t);
            if (ci < 0 || g->tensors[t].dtype != TDM_DTYPE_FLOAT) break;
            if ((rc = fuse_one(g, anchor, ci, t)) < 0) goto out;
            if (rc == 0) break;
        }
        rc = 0;
    }
    rc = compact_and_sort(g);
out:
    free(order);
    return rc;
}
