/*
 * opt: each rewrite on a small hand-built graph, checked both structurally
 * (which nodes remain, which names survive) and numerically (the rewritten
 * graph computes what the original did, both run on the reference kernels);
 * then the whole pipeline on the generated test models and the real int8
 * models when they are present.
 */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "kern_ref.h"
#include "onnx_load.h"
#include "graph_build.h"
#include "ops.h"
#include "opt.h"
#include "test.h"

/* ---- graph building helpers ------------------------------------------- */

static int graph_input(graph *g, const char *name, int rank, ...)
{
    va_list ap;
    va_start(ap, rank);
    int t = tensor_v(g, name, TDM_DTYPE_FLOAT, rank, ap);
    va_end(ap);
    mark_input(g, t);
    return t;
}

static int graph_output(graph *g, const char *name)
{
    int t = graph_add_tensor(g, name, TDM_DTYPE_FLOAT, -1, NULL);
    mark_output(g, t);
    return t;
}

/* Deterministic pseudo-random values in [lo, hi). */
static float rnd(unsigned *s, float lo, float hi)
{
    *s = *s * 1103515245u + 12345u;
    return lo + (hi - lo) * (float)((*s >> 8) & 0xffff) / 65536.0f;
}

static int const_f32(graph *g, const char *name, int rank, const int64_t *dims, unsigned seed,
                     float lo, float hi)
{
    int t = graph_add_tensor(g, name, TDM_DTYPE_FLOAT, rank, dims);
    int64_t n = graph_tensor_numel(&g->tensors[t]);
    float *p = malloc((size_t)n * sizeof *p);
    for (int64_t i = 0; i < n; i++)
        p[i] = rnd(&seed, lo, hi);
    graph_set_data(g, t, p, (size_t)n * sizeof *p);
    return t;
}

static int node(graph *g, const char *name, graph_op op, int nin, const int *in, int out)
{
    return graph_add_node(g, name, ops_name(op), op, nin, in, 1, &out);
}

static int count_op(const graph *g, graph_op op)
{
    int c = 0;
    for (int i = 0; i < g->nnodes; i++)
        if (!g->nodes[i].dead && g->nodes[i].op == op) c++;
    return c;
}

static int find_node(const graph *g, graph_op op)
{
    for (int i = 0; i < g->nnodes; i++)
        if (!g->nodes[i].dead && g->nodes[i].op == op) return i;
    return -1;
}

/* ---- a tiny interpreter on the reference kernels ------------------------ */

/* Runs g (nodes in any order; shapes inferred on the way) on one float input
 * and copies its first output into out (count floats). Returns 0 or the
 * failing status. */
static int run_graph(graph *g, const float *x, float *out, int64_t count)
{
    int n = 0, rc = 0;
    int *order = malloc((size_t)(g->nnodes + 1) * sizeof *order);
    void **buf = calloc((size_t)g->ntensors + 1, sizeof *buf);
    if ((rc = graph_topo_sort(g, order, &n))) goto out;
    buf[g->inputs[0]] = (void *)x;
    for (int i = 0; i < n; i++) {
        graph_node *nd = &g->nodes[order[i]];
        if ((rc = ops_infer(g, order[i]))) goto out;
        const graph_tensor *in[16], *o[4];
        const void *ind[16];
        void *od[4];
        for (int k = 0; k < nd->ninputs; k++) {
            in[k] = nd->inputs[k] >= 0 ? &g->tensors[nd->inputs[k]] : NULL;
            ind[k] = in[k] ? (in[k]->data ? in[k]->data : buf[nd->inputs[k]]) : NULL;
        }
        for (int k = 0; k < nd->noutputs; k++) {
            o[k] = &g->tensors[nd->outputs[k]];
            size_t nb = (size_t)graph_tensor_numel(o[k]) * tdm_dtype_size(o[k]->dtype);
            od[k] = buf[nd->outputs[k]] = calloc(1, nb ? nb : 1);
        }
        ref_args a = {.nin = nd->ninputs,
                      .in = in,
                      .in_data = ind,
                      .nout = nd->noutputs,
                      .out = o,
                      .out_data = od};
        char err[256];
        if ((rc = ref_run(nd, &a, err, sizeof err))) {
            fprintf(stderr, "  ref_run: %s\n", err);
            goto out;
        }
    }
    int y = g->outputs[0];
    if (graph_tensor_numel(&g->tensors[y]) != count) {
        rc = TDM_ERR_INVALID;
        goto out;
    }
    memcpy(out, g->tensors[y].data ? g->tensors[y].data : buf[y], (size_t)count * sizeof *out);
out:
    for (int t = 0; t < g->ntensors; t++)
        if (t != g->inputs[0]) free(buf[t]);
    free(buf);
    free(order);
    return rc;
}

static double max_abs_diff(const float *a, const float *b, int64_t n)
{
    double m = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d > m) m = d;
    }
    return m;
}

/* ---- load-time rewrites ------------------------------------------------- */

TEST(identity_removed_graph_output_keeps_name)
{
    graph *g = graph_new();
    int x = graph_input(g, "x", 2, (int64_t)1, (int64_t)4);
    int a = tensor(g, "a", TDM_DTYPE_FLOAT, -1);
    int b = tensor(g, "b", TDM_DTYPE_FLOAT, -1);
    int y = graph_output(g, "y");
    node(g, "id0", OP_IDENTITY, 1, &x, a);
    node(g, "relu", OP_RELU, 1, &a, b);
    node(g, "id1", OP_IDENTITY, 1, &b, y);
    ASSERT_EQ(opt_model(g), 0);
    ASSERT_EQ(g->nnodes, 1);
    ASSERT_EQ(g->nodes[0].op, OP_RELU);
    ASSERT_STR_EQ(g->tensors[g->nodes[0].inputs[0]].name, "x");
    ASSERT_STR_EQ(g->tensors[g->nodes[0].outputs[0]].name, "y");
    ASSERT_EQ(g->noutputs, 1);
    ASSERT_EQ(g->outputs[0], g->nodes[0].outputs[0]);
    ASSERT(g->tensors[g->outputs[0]].is_output);
    graph_free(g);
}

TEST(identity_from_input_to_output_is_kept)
{
    graph *g = graph_new();
    int x = graph_input(g, "x", 1, (int64_t)4);
    int y = graph_output(g, "y");
    int z = tensor(g, "z", TDM_DTYPE_FLOAT, -1);
    int d = graph_output(g, "d");
    node(g, "id", OP_IDENTITY, 1, &x, y);
    int dr = graph_add_node(g, "drop", "Dropout", OP_DROPOUT, 1, &x, 1, &z);
    (void)dr;
    node(g, "relu", OP_RELU, 1, &z, d);
    ASSERT_EQ(opt_model(g), 0);
    ASSERT_EQ(count_op(g, OP_IDENTITY), 1); /* both names must exist: the copy stays */
    ASSERT_EQ(count_op(g, OP_DROPOUT), 0);
    int r = find_node(g, OP_RELU);
    ASSERT(r >= 0);
    ASSERT_STR_EQ(g->tensors[g->nodes[r].inputs[0]].name, "x");
    graph_free(g);
}

TEST(softmax_gets_explicit_axis)
{
    for (int opset = 11; opset <= 13; opset += 2) {
        graph *g = graph_new();
        g->opset = opset;
        int x = graph_input(g, "x", 2, (int64_t)2, (int64_t)5);
        int y = graph_output(g, "y");
        node(g, "sm", OP_SOFTMAX, 1, &x, y);
        ASSERT_EQ(opt_model(g), 0);
        ASSERT_EQ(graph_attr_int(&g->nodes[0], "axis", 99), opset < 13 ? 1 : -1);
        ASSERT_EQ(graph_attr_int(&g->nodes[0], "coerce_2d", 99), opset < 13 ? 1 : 0);
        graph_free(g);
    }
}

TEST(constant_and_dequantized_weights_fold)
{
    graph *g = graph_new();
    int x = graph_input(g, "x", 4, (int64_t)1, (int64_t)2, (int64_t)3, (int64_t)3);
    int64_t wd[4] = {2, 2, 1, 1};
    int wq = graph_add_tensor(g, "wq", TDM_DTYPE_INT8, 4, wd);
    int8_t *wv = malloc(4);
    wv[0] = 10, wv[1] = -20, wv[2] = 30, wv[3] = -128;
    graph_set_data(g, wq, wv, 4);
    int s = const_scalar(g, "s", TDM_DTYPE_FLOAT, 0.5);
    int zp = const_scalar(g, "zp", TDM_DTYPE_INT8, 0);
    int w = tensor(g, "w", TDM_DTYPE_UNDEFINED, -1);
    node(g, "dqw", OP_DEQUANTIZELINEAR, 3, (int[]){wq, s, zp}, w);
    int k = tensor(g, "k", TDM_DTYPE_UNDEFINED, -1);
    int kn = graph_add_node(g, "k", "Constant", OP_CONSTANT, 0, NULL, 1, &k);
    attr_floats(g, kn, "value_floats", 1, (float[]){1.5f});
    int c = tensor(g, "c", TDM_DTYPE_FLOAT, -1);
    int y = graph_output(g, "y");
    node(g, "conv", OP_CONV, 2, (int[]){x, w}, c);
    node(g, "add", OP_ADD, 2, (int[]){c, k}, y);
    ASSERT_EQ(opt_model(g), 0);
    ASSERT_EQ(g->nnodes, 2);
    ASSERT_EQ(count_op(g, OP_DEQUANTIZELINEAR), 0);
    ASSERT_EQ(count_op(g, OP_CONSTANT), 0);
    int cv = find_node(g, OP_CONV);
    ASSERT(cv >= 0);
    ASSERT_EQ(cv, 0); /* nodes are stored in execution order */
    const graph_tensor *wt = &g->tensors[g->nodes[cv].inputs[1]];
    ASSERT_EQ(wt->dtype, TDM_DTYPE_FLOAT);
    ASSERT(wt->data);
    const float *wf = wt->data;
    ASSERT_NEAR(wf[0], 5.0, 0);
    ASSERT_NEAR(wf[1], -10.0, 0);
    ASSERT_NEAR(wf[3], -64.0, 0);
    const graph_tensor *kt = &g->tensors[g->nodes[find_node(g, OP_ADD)].inputs[1]];
    ASSERT(kt->data);
    ASSERT_NEAR(((const float *)kt->data)[0], 1.5, 0);
    graph_free(g);
}

/* x -> Conv(w[, b]) -> BatchNormalization -> Relu -> y */
static graph *conv_bn_graph(bool bias, bool second_reader)
{
    graph *g = graph_new();
    g->opset = 9;
    int x = graph_input(g, "x", 4, (int64_t)1, (int64_t)3, (int64_t)6, (int64_t)6);
    int w = const_f32(g, "w", 4, (int64_t[]){4, 3, 3, 3}, 1, -1, 1);
    int b = bias ? const_f32(g, "b", 1, (int64_t[]){4}, 2, -1, 1) : -1;
    int gam = const_f32(g, "gamma", 1, (int64_t[]){4}, 3, 0.5f, 2);
    int bet = const_f32(g, "beta", 1, (int64_t[]){4}, 4, -1, 1);
    int mean = const_f32(g, "mean", 1, (int64_t[]){4}, 5, -1, 1);
    int var = const_f32(g, "var", 1, (int64_t[]){4}, 6, 0.1f, 2);
    int c = tensor(g, "c", TDM_DTYPE_FLOAT, -1), n = tensor(g, "n", TDM_DTYPE_FLOAT, -1);
    int y = graph_output(g, "y");
    int cv = node(g, "conv", OP_CONV, bias ? 3 : 2, (int[]){x, w, b}, c);
    attr_ints(g, cv, "pads", 4, (int64_t[]){1, 1, 1, 1});
    node(g, "bn", OP_BATCHNORM, 5, (int[]){c, gam, bet, mean, var}, n);
    node(g, "relu", OP_RELU, 1, &n, y);
    if (second_reader) {
        int z = graph_output(g, "z");
        node(g, "relu2", OP_RELU, 1, &c, z);
    }
    return g;
}

TEST(batchnorm_folds_into_conv_numerically)
{
    enum { N = 4 * 6 * 6 };
    float x[3 * 36], before[N], after[N];
    unsigned seed = 7;
    for (int i = 0; i < 3 * 36; i++)
        x[i] = rnd(&seed, -2, 2);
    for (int bias = 0; bias < 2; bias++) {
        graph *g = conv_bn_graph(bias, false);
        ASSERT_EQ(run_graph(g, x, before, N), 0);
        ASSERT_EQ(opt_model(g), 0);
        ASSERT_EQ(count_op(g, OP_BATCHNORM), 0);
        ASSERT_EQ(g->nnodes, 2);
        int cv = find_node(g, OP_CONV);
        ASSERT_EQ(g->nodes[cv].ninputs, 3);
        ASSERT(g->tensors[g->nodes[cv].inputs[2]].data);
        ASSERT_EQ(run_graph(g, x, after, N), 0);
        ASSERT(max_abs_diff(before, after, N) < 1e-4);
        graph_free(g);
    }
}

TEST(batchnorm_kept_when_conv_output_is_shared)
{
    graph *g = conv_bn_graph(true, true);
    ASSERT_EQ(opt_model(g), 0);
    ASSERT_EQ(count_op(g, OP_BATCHNORM), 1);
    graph_free(g);

    /* No Conv before it: stays for the kernels. */
    g = graph_new();
    int x = graph_input(g, "x", 4, (int64_t)1, (int64_t)2, (int64_t)2, (int64_t)2);
    int p[4];
    for (int i = 0; i < 4; i++)
        p[i] = const_f32(g, "p", 1, (int64_t[]){2}, 9 + (unsigned)i, 0.5f, 1);
    int y = graph_output(g, "y");
    node(g, "bn", OP_BATCHNORM, 5, (int[]){x, p[0], p[1], p[2], p[3]}, y);
    ASSERT_EQ(opt_model(g), 0);
    ASSERT_EQ(count_op(g, OP_BATCHNORM), 1);
    graph_free(g);
}

/* x -> Relu -> Q(scale, zp) -> DQ(scale2, zp2) -> y */
static graph *qdq_graph(double dq_scale, tdm_dtype zt)
{
    graph *g = graph_new();
    int x = graph_input(g, "x", 2, (int64_t)2, (int64_t)8);
    int r = tensor(g, "r", TDM_DTYPE_FLOAT, -1), q = tensor(g, "q", TDM_DTYPE_INT8, -1);
    int y = graph_output(g, "y");
    int s = const_scalar(g, "s", TDM_DTYPE_FLOAT, 0.05);
    int s2 = const_scalar(g, "s2", TDM_DTYPE_FLOAT, dq_scale);
    int z = const_scalar(g, "z", zt, zt == TDM_DTYPE_INT8 ? -5 : 7);
    int z2 = const_scalar(g, "z2", zt, zt == TDM_DTYPE_INT8 ? -5 : 7);
    node(g, "relu", OP_RELU, 1, &x, r);
    node(g, "q", OP_QUANTIZELINEAR, 3, (int[]){r, s, z}, q);
    node(g, "dq", OP_DEQUANTIZELINEAR, 3, (int[]){q, s2, z2}, y);
    return g;
}

TEST(qdq_pair_becomes_fakequant)
{
    float x[16], before[16], after[16];
    unsigned seed = 3;
    for (int i = 0; i < 16; i++)
        x[i] = rnd(&seed, -3, 9);
    tdm_dtype types[2] = {TDM_DTYPE_INT8, TDM_DTYPE_UINT8};
    for (int k = 0; k < 2; k++) {
        graph *g = qdq_graph(0.05, types[k]);
        ASSERT_EQ(run_graph(g, x, before, 16), 0);
        ASSERT_EQ(opt_model(g), 0);
        ASSERT_EQ(g->nnodes, 2);
        int f = find_node(g, OP_FAKEQUANT);
        ASSERT(f >= 0);
        const graph_node *fq = &g->nodes[f];
        ASSERT_NEAR(graph_attr_float(fq, "scale", 0), 0.05, 1e-9);
        ASSERT_NEAR(graph_attr_float(fq, "zero_point", 0), k == 0 ? -5 : 7, 0);
        ASSERT_NEAR(graph_attr_float(fq, "qmin", 1), k == 0 ? -128 : 0, 0);
        ASSERT_NEAR(graph_attr_float(fq, "qmax", 1), k == 0 ? 127 : 255, 0);
        ASSERT_STR_EQ(g->tensors[fq->outputs[0]].name, "y");
        ASSERT_EQ(run_graph(g, x, after, 16), 0);
        ASSERT(max_abs_diff(before, after, 16) < 1e-6);
        graph_free(g);
    }
}

TEST(qdq_pair_with_different_scales_is_kept)
{
    graph *g = qdq_graph(0.1, TDM_DTYPE_INT8);
    ASSERT_EQ(opt_model(g), 0);
    ASSERT_EQ(count_op(g, OP_FAKEQUANT), 0);
    ASSERT_EQ(count_op(g, OP_QUANTIZELINEAR), 1);
    ASSERT_EQ(count_op(g, OP_DEQUANTIZELINEAR), 1);
    graph_free(g);
}

/* ---- session-time passes ------------------------------------------------ */

/* The ONNX-Model-Zoo way to flatten: Reshape(x, Concat(Unsqueeze(Gather(Shape(x), 0)), [-1])). */
TEST(shape_subgraph_folds_once_batch_is_known)
{
    graph *g = graph_new();
    g->opset = 11;
    int x = graph_input(g, "x", 4, (int64_t)-1, (int64_t)3, (int64_t)4, (int64_t)4);
    int sh = tensor(g, "sh", TDM_DTYPE_UNDEFINED, -1),
        ga = tensor(g, "ga", TDM_DTYPE_UNDEFINED, -1),
        un = tensor(g, "un", TDM_DTYPE_UNDEFINED, -1),
        cc = tensor(g, "cc", TDM_DTYPE_UNDEFINED, -1);
    int zero = const_scalar(g, "zero", TDM_DTYPE_INT64, 0);
    int minus1 = const_i64(g, "m1", 1, (int64_t[]){-1});
    int y = graph_output(g, "y");
    node(g, "shape", OP_SHAPE, 1, &x, sh);
    node(g, "gather", OP_GATHER, 2, (int[]){sh, zero}, ga);
    int u = node(g, "unsq", OP_UNSQUEEZE, 1, &ga, un);
    attr_ints(g, u, "axes", 1, (int64_t[]){0});
    int c = node(g, "concat", OP_CONCAT, 2, (int[]){un, minus1}, cc);
    attr_int(g, c, "axis", 0);
    node(g, "reshape", OP_RESHAPE, 2, (int[]){x, cc}, y);
    for (int i = 0; i < g->nnodes; i++)
        ASSERT_EQ(ops_check(g, i), 0);
    ASSERT_EQ(opt_model(g), 0);
    ASSERT_EQ(g->nnodes, 5); /* nothing is constant before the batch is known */

    graph *s = NULL;
    ASSERT_EQ(graph_clone(g, &s), 0);
    s->tensors[s->inputs[0]].dims[0] = 2;
    ASSERT_EQ(opt_infer_and_fold(s), 0);
    ASSERT_EQ(s->nnodes, 1);
    ASSERT_EQ(s->nodes[0].op, OP_RESHAPE);
    const graph_tensor *shape = &s->tensors[s->nodes[0].inputs[1]];
    ASSERT(shape->data);
    ASSERT_EQ(((const int64_t *)shape->data)[0], 2);
    const graph_tensor *out = &s->tensors[s->outputs[0]];
    ASSERT_STR_EQ(out->name, "y");
    ASSERT_EQ(out->rank, 2);
    ASSERT_EQ(out->dims[0], 2);
    ASSERT_EQ(out->dims[1], 48);
    graph_free(s);
    graph_free(g);
}

TEST(infer_failure_names_the_node)
{
    graph *g = graph_new();
    int x = graph_input(g, "x", 2, (int64_t)2, (int64_t)6);
    int sh = graph_input(g, "shape_in", 1, (int64_t)2);
    g->tensors[sh].dtype = TDM_DTYPE_INT64;
    int y = graph_output(g, "y");
    node(g, "dyn_reshape", OP_RESHAPE, 2, (int[]){x, sh}, y);
    ASSERT_EQ(opt_model(g), 0);
    ASSERT_EQ(opt_infer_and_fold(g), TDM_ERR_INVALID);
    ASSERT(strstr(g->err, "dyn_reshape"));
    graph_free(g);
}

TEST(auto_pad_becomes_explicit_pads)
{
    graph *g = graph_new();
    int x = graph_input(g, "x", 4, (int64_t)1, (int64_t)1, (int64_t)5, (int64_t)5);
    int w = const_f32(g, "w", 4, (int64_t[]){1, 1, 2, 2}, 1, -1, 1);
    int y = graph_output(g, "y");
    int c = node(g, "conv", OP_CONV, 2, (int[]){x, w}, y);
    attr_str(g, c, "auto_pad", "SAME_LOWER");
    ASSERT_EQ(opt_model(g), 0);
    ASSERT_EQ(opt_infer_and_fold(g), 0);
    const graph_attr *p = graph_attr_get(&g->nodes[0], "pads");
    ASSERT(p && p->n == 4);
    ASSERT_EQ(p->ints[0], 1); /* SAME_LOWER puts the odd pad first */
    ASSERT_EQ(p->ints[2], 0);
    ASSERT_STR_EQ(graph_attr_string(&g->nodes[0], "auto_pad", ""), "NOTSET");
    ASSERT_EQ(g->tensors[g->outputs[0]].dims[2], 5);
    graph_free(g);
}

/* Clip's constant bound inputs (opset 11) become its min/max attributes, an
 * omitted one stays open, so every reader takes one form (ops_clip_bounds);
 * a bound known only at run time stays an input and is not taken. */
TEST(clip_constant_bounds_become_attributes)
{
    graph *g = graph_new();
    g->opset = 13;
    int x = graph_input(g, "x", 2, (int64_t)1, (int64_t)4);
    int b = graph_input(g, "b", 0);
    int lo = const_scalar(g, "lo", TDM_DTYPE_FLOAT, -0.5);
    int c1 = tensor(g, "c1", TDM_DTYPE_FLOAT, -1);
    int y = graph_output(g, "y");
    node(g, "const_clip", OP_CLIP, 3, (int[]){x, lo, -1}, c1);
    node(g, "dyn_clip", OP_CLIP, 3, (int[]){c1, -1, b}, y);
    ASSERT_EQ(opt_model(g), 0);
    ASSERT_EQ(opt_infer_and_fold(g), 0);
    float a, z;
    for (int i = 0; i < g->nnodes; i++) {
        const graph_node *n = &g->nodes[i];
        if (strcmp(n->name, "const_clip") == 0) {
            ASSERT_EQ(n->ninputs, 1);
            ASSERT(ops_clip_bounds(n, &a, &z));
            ASSERT_NEAR(a, -0.5, 0);
            ASSERT(isinf(z) && z > 0);
        } else {
            ASSERT_EQ(n->ninputs, 3);
            ASSERT(!ops_clip_bounds(n, &a, &z));
        }
    }
    graph_free(g);
}

/* x -> Conv a -> FakeQuant -> Add(with Conv b's output) -> Relu -> Min(6) -> y */
TEST(fusion_builds_post_op_chains)
{
    graph *g = graph_new();
    int x = graph_input(g, "x", 4, (int64_t)1, (int64_t)2, (int64_t)4, (int64_t)4);
    int wa = const_f32(g, "wa", 4, (int64_t[]){3, 2, 1, 1}, 1, -1, 1);
    int wb = const_f32(g, "wb", 4, (int64_t[]){3, 2, 3, 3}, 2, -1, 1);
    int bb = const_f32(g, "bb", 1, (int64_t[]){3}, 3, -1, 1);
    int64_t c3[4] = {1, 3, 1, 1};
    int six = graph_add_tensor(g, "six", TDM_DTYPE_FLOAT, 4, c3);
    float *sv = malloc(3 * sizeof *sv);
    sv[0] = sv[1] = sv[2] = 1.5f;
    graph_set_data(g, six, sv, 3 * sizeof *sv);
    int ca = tensor(g, "ca", TDM_DTYPE_FLOAT, -1), cb = tensor(g, "cb", TDM_DTYPE_FLOAT, -1),
        q = tensor(g, "q", TDM_DTYPE_INT8, -1), fq = tensor(g, "fq", TDM_DTYPE_FLOAT, -1),
        sum = tensor(g, "sum", TDM_DTYPE_FLOAT, -1), r = tensor(g, "r", TDM_DTYPE_FLOAT, -1);
    int s = const_scalar(g, "s", TDM_DTYPE_FLOAT, 0.02),
        z = const_scalar(g, "z", TDM_DTYPE_INT8, 3);
    int y = graph_output(g, "y");
    node(g, "conv_a", OP_CONV, 2, (int[]){x, wa}, ca);
    node(g, "q", OP_QUANTIZELINEAR, 3, (int[]){ca, s, z}, q);
    node(g, "dq", OP_DEQUANTIZELINEAR, 3, (int[]){q, s, z}, fq);
    int cvb = node(g, "conv_b", OP_CONV, 3, (int[]){x, wb, bb}, cb);
    attr_ints(g, cvb, "pads", 4, (int64_t[]){1, 1, 1, 1});
    node(g, "add", OP_ADD, 2, (int[]){fq, cb}, sum);
    node(g, "relu", OP_RELU, 1, &sum, r);
    node(g, "min", OP_MIN, 2, (int[]){six, r}, y);

    enum { N = 3 * 16 };
    float xin[2 * 16], before[N], after[N];
    unsigned seed = 11;
    for (int i = 0; i < 32; i++)
        xin[i] = rnd(&seed, -1, 1);
    ASSERT_EQ(run_graph(g, xin, before, N), 0);
    ASSERT_EQ(opt_model(g), 0);
    ASSERT_EQ(opt_infer_and_fold(g), 0);
    ASSERT_EQ(opt_fuse(g), 0);
    ASSERT_EQ(g->nnodes, 2);
    ASSERT_EQ(count_op(g, OP_CONV), 2);
    int a = -1;
    for (int i = 0; i < g->nnodes; i++)
        if (strcmp(g->nodes[i].name, "conv_a") == 0) a = i;
    ASSERT(a >= 0);
    const graph_node *an = &g->nodes[a];
    ASSERT_EQ(an->npost, 4);
    ASSERT_EQ(an->post[0].kind, POST_FAKEQUANT);
    ASSERT_NEAR(an->post[0].a, 0.02, 1e-9);
    ASSERT_NEAR(an->post[0].b, 3, 0);
    ASSERT_NEAR(an->post[0].c, -128, 0);
    ASSERT_NEAR(an->post[0].d, 127, 0);
    ASSERT_EQ(an->post[1].kind, POST_SUM);
    ASSERT_EQ(an->post[1].input, 3); /* after the empty bias slot */
    ASSERT_EQ(an->inputs[2], -1);
    ASSERT_STR_EQ(g->tensors[an->inputs[3]].name, "cb");
    ASSERT_EQ(an->post[2].kind, POST_RELU);
    ASSERT_EQ(an->post[3].kind, POST_CLIP);
    ASSERT(isinf(an->post[3].a) && an->post[3].a < 0);
    ASSERT_NEAR(an->post[3].b, 1.5, 0);
    ASSERT_STR_EQ(g->tensors[an->outputs[0]].name, "y");
    ASSERT_EQ(a, 1); /* the addend's producer runs first */
    ASSERT_EQ(g->nodes[1 - a].npost, 0);
    ASSERT_EQ(run_graph(g, xin, after, N), 0);
    ASSERT(max_abs_diff(before, after, N) < 1e-5);
    graph_free(g);
}

/* Clip(0, 6) given as inputs after a Conv whose output is also read elsewhere:
 * the first fuses nothing, a second Conv fuses its Clip. */
TEST(fusion_stops_at_shared_tensors)
{
    graph *g = graph_new();
    g->opset = 13;
    int x = graph_input(g, "x", 4, (int64_t)1, (int64_t)2, (int64_t)3, (int64_t)3);
    int w = const_f32(g, "w", 4, (int64_t[]){2, 2, 1, 1}, 5, -1, 1);
    int lo = const_scalar(g, "lo", TDM_DTYPE_FLOAT, 0),
        hi = const_scalar(g, "hi", TDM_DTYPE_FLOAT, 6);
    int c1 = tensor(g, "c1", TDM_DTYPE_FLOAT, -1), c2 = tensor(g, "c2", TDM_DTYPE_FLOAT, -1);
    int y1 = graph_output(g, "y1"), y2 = graph_output(g, "y2"), y3 = graph_output(g, "y3");
    node(g, "conv1", OP_CONV, 2, (int[]){x, w}, c1);
    node(g, "relu", OP_RELU, 1, &c1, y1);
    node(g, "relu_b", OP_RELU, 1, &c1, y2);
    node(g, "conv2", OP_CONV, 2, (int[]){x, w}, c2);
    node(g, "clip", OP_CLIP, 3, (int[]){c2, lo, hi}, y3);
    ASSERT_EQ(opt_model(g), 0);
    ASSERT_EQ(opt_infer_and_fold(g), 0);
    ASSERT_EQ(opt_fuse(g), 0);
    ASSERT_EQ(count_op(g, OP_RELU), 2);
    ASSERT_EQ(count_op(g, OP_CLIP), 0);
    for (int i = 0; i < g->nnodes; i++) {
        const graph_node *n = &g->nodes[i];
        if (strcmp(n->name, "conv1") == 0) ASSERT_EQ(n->npost, 0);
        if (strcmp(n->name, "conv2") == 0) {
            ASSERT_EQ(n->npost, 1);
            ASSERT_EQ(n->post[0].kind, POST_CLIP);
            ASSERT_NEAR(n->post[0].a, 0, 0);
            ASSERT_NEAR(n->post[0].b, 6, 0);
            ASSERT_STR_EQ(g->tensors[n->outputs[0]].name, "y3");
        }
    }
    graph_free(g);
}

/* Min/Max with a constant of one value per output channel ([1,C,1,1] or
 * [C,1,1]) fuse onto a Conv as per-channel post-ops reading the constant as
 * an extra input; one of another shape ([1,1,1,W]) stays a node, and so
 * does one after a Gemm. The fused graph computes what the original did. */
TEST(fusion_takes_per_channel_min_and_max)
{
    graph *g = graph_new();
    int x = graph_input(g, "x", 4, (int64_t)1, (int64_t)2, (int64_t)4, (int64_t)4);
    int w = const_f32(g, "w", 4, (int64_t[]){3, 2, 3, 3}, 1, -1, 1);
    int b = const_f32(g, "b", 1, (int64_t[]){3}, 2, -1, 1);
    int hi = const_f32(g, "hi", 4, (int64_t[]){1, 3, 1, 1}, 3, 0.2f, 1);
    int lo = const_f32(g, "lo", 3, (int64_t[]){3, 1, 1}, 4, -1, -0.2f);
    int col = const_f32(g, "col", 4, (int64_t[]){1, 1, 1, 4}, 5, -0.5f, 0.5f);
    int c = tensor(g, "c", TDM_DTYPE_FLOAT, -1), m = tensor(g, "m", TDM_DTYPE_FLOAT, -1),
        r = tensor(g, "r", TDM_DTYPE_FLOAT, -1), mx = tensor(g, "mx", TDM_DTYPE_FLOAT, -1);
    int y = graph_output(g, "y");
    int cv = node(g, "conv", OP_CONV, 3, (int[]){x, w, b}, c);
    attr_ints(g, cv, "pads", 4, (int64_t[]){1, 1, 1, 1});
    node(g, "min", OP_MIN, 2, (int[]){c, hi}, m);
    node(g, "relu", OP_RELU, 1, &m, r);
    node(g, "max", OP_MAX, 2, (int[]){lo, r}, mx);
    node(g, "min_col", OP_MIN, 2, (int[]){mx, col}, y);

    enum { N = 3 * 16 };
    float xin[2 * 16], before[N], after[N];
    unsigned seed = 17;
    for (int i = 0; i < 32; i++)
        xin[i] = rnd(&seed, -2, 2);
    ASSERT_EQ(run_graph(g, xin, before, N), 0);
    ASSERT_EQ(opt_model(g), 0);
    ASSERT_EQ(opt_infer_and_fold(g), 0);
    ASSERT_EQ(opt_fuse(g), 0);
    ASSERT_EQ(g->nnodes, 2);
    ASSERT_EQ(count_op(g, OP_MIN), 1);
    ASSERT_EQ(count_op(g, OP_MAX), 0);
    const graph_node *n = &g->nodes[find_node(g, OP_CONV)];
    ASSERT_EQ(n->npost, 3);
    ASSERT_EQ(n->post[0].kind, POST_MIN_CHANNEL);
    ASSERT_EQ(n->post[1].kind, POST_RELU);
    ASSERT_EQ(n->post[2].kind, POST_MAX_CHANNEL);
    ASSERT_EQ(n->ninputs, 5);
    ASSERT_STR_EQ(g->tensors[n->inputs[n->post[0].input]].name, "hi");
    ASSERT_STR_EQ(g->tensors[n->inputs[n->post[2].input]].name, "lo");
    ASSERT_STR_EQ(g->tensors[g->nodes[find_node(g, OP_MIN)].inputs[1]].name, "col");
    ASSERT_EQ(run_graph(g, xin, after, N), 0);
    ASSERT(max_abs_diff(before, after, N) < 1e-6);
    graph_free(g);

    /* After a Gemm the same constant is left to a Min node. */
    g = graph_new();
    x = graph_input(g, "x", 2, (int64_t)2, (int64_t)4);
    w = const_f32(g, "w", 2, (int64_t[]){4, 3}, 6, -1, 1);
    hi = const_f32(g, "hi", 2, (int64_t[]){1, 3}, 7, 0, 1);
    c = tensor(g, "c", TDM_DTYPE_FLOAT, -1);
    y = graph_output(g, "y");
    node(g, "gemm", OP_GEMM, 2, (int[]){x, w}, c);
    node(g, "min", OP_MIN, 2, (int[]){c, hi}, y);
    ASSERT_EQ(opt_model(g), 0);
    ASSERT_EQ(opt_infer_and_fold(g), 0);
    ASSERT_EQ(opt_fuse(g), 0);
    ASSERT_EQ(count_op(g, OP_MIN), 1);
    ASSERT_EQ(g->nodes[find_node(g, OP_GEMM)].npost, 0);
    graph_free(g);
}

/* ---- the whole pipeline on real models ----------------------------------- */

typedef struct {
    int ops[OP_COUNT];
    int posts[POST_MAX_CHANNEL + 1];
    int nodes;
} model_counts;

/* Loads path, runs every load- and session-time pass for batch 1 and counts
 * what remains. Returns 1 if the file is absent (test models not generated),
 * 0 on success, or a negative status. */
static int pipeline(const char *path, model_counts *c, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) return 1;
    int rc = TDM_ERR_IO;
    graph *g = NULL, *s = NULL;
    long len = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    void *data = len > 0 ? malloc((size_t)len) : NULL;
    if (!data || fseek(f, 0, SEEK_SET) != 0 || fread(data, 1, (size_t)len, f) != (size_t)len)
        goto out;
    if ((rc = onnx_load(data, (size_t)len, &g, err, errlen))) goto out;
    for (int i = 0; i < g->nnodes; i++)
        if ((rc = ops_check(g, i))) goto fail;
    if ((rc = opt_model(g))) goto fail;
    if ((rc = graph_clone(g, &s))) goto fail;
    for (int i = 0; i < s->ninputs; i++)
        s->tensors[s->inputs[i]].dims[0] = 1;
    if ((rc = opt_infer_and_fold(s)) || (rc = opt_fuse(s))) {
        snprintf(err, errlen, "%s", s->err);
        goto out;
    }
    memset(c, 0, sizeof *c);
    c->nodes = s->nnodes;
    for (int i = 0; i < s->nnodes; i++) {
        c->ops[s->nodes[i].op]++;
        for (int k = 0; k < s->nodes[i].npost; k++)
            c->posts[s->nodes[i].post[k].kind]++;
    }
    goto out;
fail:
    snprintf(err, errlen, "%s", g->err);
out:
    graph_free(s);
    graph_free(g);
    free(data);
    if (f) fclose(f);
    return rc;
}

static const char *data_dir(void)
{
    const char *s = getenv("TEST_DATA");
    return s && s[0] ? s : "data";
}

/* Runs the pipeline or, when the file does not exist, says so and returns 1. */
#define RUN_PIPELINE(path, c)                                                                      \
    do {                                                                                           \
        char err_[GRAPH_ERR_LEN] = "";                                                             \
        int rc_ = pipeline(path, c, err_, sizeof err_);                                            \
        if (rc_ == 1) {                                                                            \
            SKIP("%s not found (make test-models)", path);                                        \
        }                                                                                          \
        if (rc_) TEST_FAIL_("%s: %s (%d)", path, err_, rc_);                                       \
    } while (0)

TEST(resnet50_every_conv_carries_its_relu_and_residual_add)
{
    static const char *const files[] = {"resnet50_op13.onnx", "resnet50_op11_bn.onnx",
                                        "resnet50_op9_bn.onnx"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char path[256];
        model_counts c;
        snprintf(path, sizeof path, "build/test-models/%s", files[i]);
        RUN_PIPELINE(path, &c);
        ASSERT_EQ(c.ops[OP_CONV], 53);
        ASSERT_EQ(c.ops[OP_BATCHNORM], 0);
        ASSERT_EQ(c.ops[OP_RELU], 0);
        ASSERT_EQ(c.ops[OP_ADD], 0);
        ASSERT_EQ(c.ops[OP_IDENTITY], 0);
        ASSERT_EQ(c.posts[POST_RELU], 49);
        ASSERT_EQ(c.posts[POST_SUM], 16);
        ASSERT_EQ(c.nodes, 57); /* 53 Conv, MaxPool, GlobalAveragePool, Flatten, Gemm */
    }
}

TEST(mobilenetv2_convs_carry_relu6_and_residual_adds)
{
    static const char *const files[] = {"mobilenetv2_op13.onnx", "mobilenetv2_op11_bn.onnx",
                                        "mobilenetv2_op9_bn.onnx", "mobilenetv2_zoo7.onnx"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char path[256];
        model_counts c;
        snprintf(path, sizeof path, "build/test-models/%s", files[i]);
        RUN_PIPELINE(path, &c);
        ASSERT_EQ(c.ops[OP_CONV], 52);
        ASSERT_EQ(c.ops[OP_BATCHNORM], 0);
        ASSERT_EQ(c.ops[OP_CLIP], 0);
        ASSERT_EQ(c.ops[OP_ADD], 0);
        ASSERT_EQ(c.ops[OP_CONSTANT] + c.ops[OP_IDENTITY] + c.ops[OP_SHAPE] + c.ops[OP_GATHER] +
                      c.ops[OP_UNSQUEEZE] + c.ops[OP_CONCAT],
                  0);
        ASSERT_EQ(c.posts[POST_CLIP], 35);
        ASSERT_EQ(c.posts[POST_SUM], 10);
        ASSERT_EQ(c.nodes, 55); /* 52 Conv, GlobalAveragePool, Flatten or Reshape, Gemm */
    }
}

TEST(int8_mobilenetv2_convs_carry_activations_and_fakequants)
{
    char path[512];
    model_counts c;
    snprintf(path, sizeof path, "%s/models/st-int8/mobilenet_v2_1.0_224_int8_per_tensor.onnx",
             data_dir());
    RUN_PIPELINE(path, &c);
    ASSERT_EQ(c.ops[OP_CONV], 52);
    ASSERT_EQ(c.ops[OP_CLIP], 0);             /* all 18 Relu6 on convs */
    ASSERT_EQ(c.ops[OP_ADD], 1);              /* only the MatMul's bias add remains */
    ASSERT_EQ(c.ops[OP_DEQUANTIZELINEAR], 3); /* input, the Transpose and Squeeze paths */
    ASSERT_EQ(c.posts[POST_CLIP], 18);
    ASSERT_EQ(c.posts[POST_SUM], 10);
    ASSERT_EQ(c.posts[POST_FAKEQUANT], 97); /* with the two after each per-channel Min */
    /* The per-channel Min (ReLU6 with per-channel bounds) fuses as a binary
     * post-op, and the chain goes on through the Relu and fake quantisations
     * after it. */
    ASSERT_EQ(c.ops[OP_MIN], 0);
    ASSERT_EQ(c.posts[POST_MIN_CHANNEL], 17);
    ASSERT_EQ(c.posts[POST_MAX_CHANNEL], 0);
    ASSERT_EQ(c.ops[OP_RELU], 0);
    ASSERT_EQ(c.posts[POST_RELU], 34);
}

TEST(int8_mobilenetv1_convs_carry_fakequants)
{
    char path[512];
    model_counts c;
    snprintf(path, sizeof path, "%s/models/st-int8/mobilenet_v1_0.5_128_quant.onnx", data_dir());
    RUN_PIPELINE(path, &c);
    ASSERT_EQ(c.ops[OP_CONV], 28);
    ASSERT_EQ(c.posts[POST_FAKEQUANT], 27);
    ASSERT_EQ(c.ops[OP_FAKEQUANT], 1);
    ASSERT_EQ(c.nodes, 37);
}

TEST_MAIN()
