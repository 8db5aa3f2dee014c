/*
 * The oneDNN backend against the reference kernels: each test builds a tiny
 * graph by hand, plans it twice (backend REF and backend DNNL), runs both on
 * the same random input and compares. Each check also asserts that the DNNL
 * session really ran the node on oneDNN (not on the reference fallback).
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "backend_run.h"
#include "graph_build.h"
#include "session.h"
#include "test.h"

/* ---- graph building ---------------------------------------------------- */

/* The graph input (float unless dt says otherwise). */
static int input(graph *g, tdm_dtype dt, int rank, ...)
{
    va_list ap;
    va_start(ap, rank);
    int t = tensor_v(g, "x", dt, rank, ap);
    va_end(ap);
    mark_input(g, t);
    return t;
}

/* A random float constant; scale multiplies the values. */
static int weight(graph *g, const char *name, float scale, int rank, ...)
{
    va_list ap;
    va_start(ap, rank);
    int t = tensor_v(g, name, TDM_DTYPE_FLOAT, rank, ap);
    va_end(ap);
    int64_t n = graph_tensor_numel(&g->tensors[t]);
    float *d = malloc((size_t)n * sizeof *d);
    for (int64_t i = 0; i < n; i++)
        d[i] = frand() * scale;
    graph_set_data(g, t, d, (size_t)n * sizeof *d);
    return t;
}

/* A node reading nin tensors and writing one. */
static int node(graph *g, graph_op op, const char *type, int out, int nin, ...)
{
    int ins[8];
    va_list ap;
    va_start(ap, nin);
    for (int i = 0; i < nin; i++)
        ins[i] = va_arg(ap, int);
    va_end(ap);
    return graph_add_node(g, type, type, op, nin, ins, 1, &out);
}

static void fakequant_attrs(graph *g, int n, float scale, float zp, float qmin, float qmax)
{
    attr_float(g, n, "scale", scale);
    attr_float(g, n, "zero_point", zp);
    attr_float(g, n, "qmin", qmin);
    attr_float(g, n, "qmax", qmax);
}

/* ---- running both backends -------------------------------------------- */

/* Runs variant through both backends: outputs must agree within tol of the
 * largest magnitude (elements may differ by up to `step` on at most 1 % of
 * them when step > 0: fake quantisation ties), and the DNNL session must run
 * at least min_prim oneDNN primitives and at most max_ref reference steps. */
static int compare(builder b, int variant, tdm_precision prec, double tol, double step,
                   int min_prim, int max_ref)
{
    result ref = {0}, dn = {0};
    int bad = 1;
    if (run_backend(b, variant, TDM_BACKEND_REF, TDM_PRECISION_FP32, 1, 2.0f, &ref) ||
        run_backend(b, variant, TDM_BACKEND_DNNL, prec, 2, 2.0f, &dn))
        goto out;
    if (ref.n != dn.n || ref.n == 0) {
        fprintf(stderr, "  output sizes %zu vs %zu\n", ref.n, dn.n);
        goto out;
    }
    double mx = 0;
    for (size_t i = 0; i < ref.n; i++)
        if (fabs(ref.out[i]) > mx) mx = fabs(ref.out[i]);
    size_t off = 0;
    double worst = 0;
    for (size_t i = 0; i < ref.n; i++) {
        double d = fabs((double)ref.out[i] - dn.out[i]);
        if (d > tol * (mx > 1 ? mx : 1)) {
            off++;
            if (d > worst) worst = d;
        }
    }
    bool ok = step > 0 ? off * 100 <= ref.n && worst <= step * 1.01 : off == 0;
    if (!ok)
        fprintf(stderr, "  variant %d: %zu/%zu elements off, worst %g (max %g)\n", variant, off,
                ref.n, worst, mx);
    if (dn.st.prim_steps < min_prim || dn.st.ref_steps > max_ref) {
        fprintf(stderr, "  variant %d: %d oneDNN primitives, %d reference steps\n", variant,
                dn.st.prim_steps, dn.st.ref_steps);
        ok = false;
    }
    bad = !ok;
out:
    free(ref.out);
    free(dn.out);
    return bad;
}

/* ---- convolution ------------------------------------------------------- */

/* 0: 3x3 pad 1; 1: grouped 2, stride 2; 2: depthwise dilation 2, uneven
 * pads; 3: 1x1 without bias; 4: 5x5 stride 2 on 3 channels. */
static void conv_graph(graph *g, int v)
{
    static const int64_t C[] = {16, 8, 24, 32, 3}, OC[] = {32, 12, 24, 16, 8},
                         K[] = {3, 3, 3, 1, 5}, G[] = {1, 2, 24, 1, 1}, S[] = {1, 2, 1, 1, 2},
                         D[] = {1, 1, 2, 1, 1};
    static const int64_t P[][4] = {{1, 1, 1, 1}, {1, 0, 1, 0}, {2, 1, 2, 3}, {0, 0, 0, 0},
                                   {2, 2, 1, 1}};
    int c = v % 5;
    int x = input(g, TDM_DTYPE_FLOAT, 4, (int64_t)1, C[c], (int64_t)13, (int64_t)11);
    int w = weight(g, "w", 0.3f, 4, OC[c], C[c] / G[c], K[c], K[c]);
    int y = value(g, "y");
    int n = c == 3 ? node(g, OP_CONV, "Conv", y, 2, x, w)
                   : node(g, OP_CONV, "Conv", y, 3, x, w, weight(g, "b", 1.0f, 1, OC[c]));
    attr_int(g, n, "group", G[c]);
    attr_ints(g, n, "strides", 2, (int64_t[]){S[c], S[c]});
    attr_ints(g, n, "dilations", 2, (int64_t[]){D[c], D[c]});
    attr_ints(g, n, "pads", 4, P[c]);
    attr_ints(g, n, "kernel_shape", 2, (int64_t[]){K[c], K[c]});
    /* Variants 5..: the same convolutions with post-ops. */
    switch (v / 5) {
    case 1:
        post(g, n, POST_RELU, 0, 0, 0, 0);
        break;
    case 2:
        post(g, n, POST_CLIP, 0.0f, 0.5f, 0, 0);
        break;
    case 3:
        post(g, n, POST_FAKEQUANT, 0.05f, -3.0f, -128, 127);
        break;
    case 4: /* the chain that needs follow-up passes on oneDNN 2.6 */
        post(g, n, POST_FAKEQUANT, 0.05f, 3.0f, -128, 127);
        post(g, n, POST_RELU, 0, 0, 0, 0);
        post(g, n, POST_FAKEQUANT, 0.03f, -7.0f, -128, 127);
        post(g, n, POST_CLIP, 0.0f, 1.0f, 0, 0);
        break;
    default:
        break;
    }
    mark_output(g, y);
}

TEST(conv_variants)
{
    for (int v = 0; v < 25; v++) {
        double step = v >= 15 ? 0.05 : 0;
        ASSERT_EQ(compare(conv_graph, v, TDM_PRECISION_FP32, 1e-4, step, 1, 0), 0);
    }
}

TEST(conv_bf16)
{
    for (int v = 0; v < 10; v++)
        ASSERT_EQ(compare(conv_graph, v, TDM_PRECISION_BF16, 3e-2, 0, 1, 0), 0);
}

/* A residual block: y = conv2(relu(conv1(x))) + r where r is x itself (the
 * addend is also read by conv1: copied) or relu(x) (dies at the sum: in
 * place), with a fake quantisation after the sum. */
static void residual_graph(graph *g, int v)
{
    int x = input(g, TDM_DTYPE_FLOAT, 4, (int64_t)1, (int64_t)16, (int64_t)9, (int64_t)9);
    int r = x;
    if (v & 1) {
        r = value(g, "r");
        node(g, OP_RELU, "Relu", r, 1, x);
    }
    int t = value(g, "t"), y = value(g, "y");
    int n1 = node(g, OP_CONV, "Conv", t, 3, x, weight(g, "w1", 0.2f, 4, (int64_t)16, (int64_t)16,
                                                     (int64_t)3, (int64_t)3),
                  weight(g, "b1", 0.5f, 1, (int64_t)16));
    attr_ints(g, n1, "pads", 4, (int64_t[]){1, 1, 1, 1});
    post(g, n1, POST_RELU, 0, 0, 0, 0);
    int n2 = node(g, OP_CONV, "Conv", y, 3, t, weight(g, "w2", 0.2f, 4, (int64_t)16, (int64_t)16,
                                                     (int64_t)1, (int64_t)1),
                  weight(g, "b2", 0.5f, 1, (int64_t)16));
    post_input(g, n2, POST_SUM, r);
    if (v & 2) post(g, n2, POST_FAKEQUANT, 0.04f, 1.0f, -128, 127);
    mark_output(g, y);
}

TEST(conv_residual_sum)
{
    for (int v = 0; v < 4; v++)
        ASSERT_EQ(compare(residual_graph, v, TDM_PRECISION_FP32, 1e-4, v & 2 ? 0.04 : 0, 2, 0),
                  0);
    ASSERT_EQ(compare(residual_graph, 1, TDM_PRECISION_BF16, 3e-2, 0, 2, 0), 0);
}

/* Per-channel bounds as oneDNN binary post-ops. 0: depthwise 3x3 with a
 * per-channel ceiling; 1: 1x1 without bias with a per-channel floor of shape
 * [C,1,1]; 2: the int8 MobileNetV2 chain (relu, fake quantisation, the
 * ceiling, fake quantisation, relu, fake quantisation) on a depthwise conv;
 * 3: that chain on a 3x3 conv after a chain long enough to need a
 * follow-up pass before the ceiling. */
static void channel_graph(graph *g, int v)
{
    int64_t C = v == 1 ? 16 : 24, OC = v == 1 ? 40 : 24, G = v == 1 || v == 3 ? 1 : 24,
            K = v == 1 ? 1 : 3;
    int x = input(g, TDM_DTYPE_FLOAT, 4, (int64_t)1, C, (int64_t)10, (int64_t)9);
    int w = weight(g, "w", 0.4f, 4, OC, C / G, K, K);
    int y = value(g, "y");
    int n = v == 1 ? node(g, OP_CONV, "Conv", y, 2, x, w)
                   : node(g, OP_CONV, "Conv", y, 3, x, w, weight(g, "b", 0.5f, 1, OC));
    attr_int(g, n, "group", G);
    int64_t p = K / 2;
    attr_ints(g, n, "pads", 4, (int64_t[]){p, p, p, p});
    attr_ints(g, n, "kernel_shape", 2, (int64_t[]){K, K});
    int bound = v == 1 ? weight(g, "lo", 0.5f, 3, OC, (int64_t)1, (int64_t)1)
                       : weight(g, "hi", 1.0f, 4, (int64_t)1, OC, (int64_t)1, (int64_t)1);
    switch (v) {
    case 0:
        post_input(g, n, POST_MIN_CHANNEL, bound);
        break;
    case 1:
        post_input(g, n, POST_MAX_CHANNEL, bound);
        break;
    default:
        if (v == 3) {
            post(g, n, POST_FAKEQUANT, 0.05f, 3.0f, -128, 127);
            post(g, n, POST_FAKEQUANT, 0.03f, -7.0f, -128, 127);
        }
        post(g, n, POST_RELU, 0, 0, 0, 0);
        post(g, n, POST_FAKEQUANT, 0.02f, -128.0f, -128, 127);
        post_input(g, n, POST_MIN_CHANNEL, bound);
        post(g, n, POST_FAKEQUANT, 0.02f, -128.0f, -128, 127);
        post(g, n, POST_RELU, 0, 0, 0, 0);
        post(g, n, POST_FAKEQUANT, 0.02f, -128.0f, -128, 127);
        break;
    }
    mark_output(g, y);
}

TEST(conv_per_channel_min_max)
{
    for (int v = 0; v < 4; v++)
        ASSERT_EQ(compare(channel_graph, v, TDM_PRECISION_FP32, 1e-4, v >= 2 ? 0.05 : 0, 1, 0),
                  0);
    ASSERT_EQ(compare(channel_graph, 0, TDM_PRECISION_BF16, 3e-2, 0, 1, 0), 0);
}

/* ---- pooling ----------------------------------------------------------- */

/* 0: max 3x3 s2 p1; 1: avg 3x3 s2 p1 excluding pads; 2: including pads;
 * 3: max 2x2 s2 ceil_mode; 4: avg 3x3 s2 ceil_mode; 5: global average;
 * 6: global max. */
static void pool_graph(graph *g, int v)
{
    int x = input(g, TDM_DTYPE_FLOAT, 4, (int64_t)1, (int64_t)8, (int64_t)11, (int64_t)10);
    int y = value(g, "y");
    graph_op op = v == 5 ? OP_GLOBALAVGPOOL
                  : v == 6 ? OP_GLOBALMAXPOOL
                  : v == 0 || v == 3 ? OP_MAXPOOL
                                     : OP_AVGPOOL;
    int n = node(g, op, "Pool", y, 1, x);
    if (v >= 5) {
        mark_output(g, y);
        return;
    }
    int64_t k = v == 3 ? 2 : 3;
    attr_ints(g, n, "kernel_shape", 2, (int64_t[]){k, k});
    attr_ints(g, n, "strides", 2, (int64_t[]){2, 2});
    if (v < 3) attr_ints(g, n, "pads", 4, (int64_t[]){1, 1, 1, 1});
    if (v == 2) attr_int(g, n, "count_include_pad", 1);
    if (v >= 3) attr_int(g, n, "ceil_mode", 1);
    mark_output(g, y);
}

TEST(pools)
{
    for (int v = 0; v < 7; v++)
        ASSERT_EQ(compare(pool_graph, v, TDM_PRECISION_FP32, 1e-5, 0, 1, 0), 0);
}

/* ---- Gemm and MatMul --------------------------------------------------- */

/* 0: Gemm transB=1 with bias; 1: transB=0 with bias and relu; 2: no bias;
 * 3: MatMul with constant B; 4: batched MatMul of two computed tensors. */
static void matmul_graph(graph *g, int v)
{
    int y = value(g, "y");
    if (v < 3) {
        int x = input(g, TDM_DTYPE_FLOAT, 2, (int64_t)3, (int64_t)40);
        int b = v == 1 ? weight(g, "B", 0.2f, 2, (int64_t)40, (int64_t)24)
                       : weight(g, "B", 0.2f, 2, (int64_t)24, (int64_t)40);
        int n = v == 2 ? node(g, OP_GEMM, "Gemm", y, 2, x, b)
                       : node(g, OP_GEMM, "Gemm", y, 3, x, b, weight(g, "C", 1.0f, 1, (int64_t)24));
        if (v != 1) attr_int(g, n, "transB", 1);
        if (v == 1) post(g, n, POST_RELU, 0, 0, 0, 0);
    } else if (v == 3) {
        int x = input(g, TDM_DTYPE_FLOAT, 2, (int64_t)2, (int64_t)64);
        node(g, OP_MATMUL, "MatMul", y, 2, x, weight(g, "B", 0.2f, 2, (int64_t)64, (int64_t)10));
    } else {
        int x = input(g, TDM_DTYPE_FLOAT, 3, (int64_t)4, (int64_t)5, (int64_t)6);
        int t = value(g, "t");
        node(g, OP_RELU, "Relu", t, 1, x);
        int p = value(g, "p");
        int tn = node(g, OP_TRANSPOSE, "Transpose", p, 1, t);
        attr_ints(g, tn, "perm", 3, (int64_t[]){0, 2, 1});
        node(g, OP_MATMUL, "MatMul", y, 2, x, p);
    }
    mark_output(g, y);
}

TEST(gemm_matmul)
{
    for (int v = 0; v < 5; v++)
        ASSERT_EQ(compare(matmul_graph, v, TDM_PRECISION_FP32, 1e-5, 0, 1, 0), 0);
    ASSERT_EQ(compare(matmul_graph, 0, TDM_PRECISION_BF16, 3e-2, 0, 1, 0), 0);
}

/* ---- element-wise ------------------------------------------------------ */

/* 0: Add of two computed tensors; 1: Mul by a per-channel constant; 2: Sub
 * with the constant first (no swap possible); 3: Min by a per-channel
 * constant with the fake-quant/relu chain of the real int8 MobileNetV2;
 * 4: Div by a scalar; 5: Max of a broadcast row. */
static void binary_graph(graph *g, int v)
{
    int x = input(g, TDM_DTYPE_FLOAT, 4, (int64_t)1, (int64_t)12, (int64_t)7, (int64_t)5);
    int y = value(g, "y"), n;
    switch (v) {
    case 0: {
        int t = value(g, "t");
        node(g, OP_RELU, "Relu", t, 1, x);
        n = node(g, OP_ADD, "Add", y, 2, x, t);
        break;
    }
    case 1:
        n = node(g, OP_MUL, "Mul", y, 2, x,
                 weight(g, "c", 1.0f, 4, (int64_t)1, (int64_t)12, (int64_t)1, (int64_t)1));
        break;
    case 2:
        n = node(g, OP_SUB, "Sub", y, 2,
                 weight(g, "c", 1.0f, 4, (int64_t)1, (int64_t)12, (int64_t)7, (int64_t)5), x);
        break;
    case 3:
        n = node(g, OP_MIN, "Min", y, 2, x,
                 weight(g, "c", 1.0f, 4, (int64_t)1, (int64_t)12, (int64_t)1, (int64_t)1));
        post(g, n, POST_FAKEQUANT, 0.02f, -128, -128, 127);
        post(g, n, POST_RELU, 0, 0, 0, 0);
        post(g, n, POST_FAKEQUANT, 0.015f, -128, -128, 127);
        break;
    case 4:
        n = node(g, OP_DIV, "Div", y, 2, x, weight(g, "c", 1.0f, 1, (int64_t)1));
        g->tensors[g->nodes[n].inputs[1]].rank = 0;
        ((float *)g->tensors[g->nodes[n].inputs[1]].data)[0] = 1.7f;
        break;
    default:
        n = node(g, OP_MAX, "Max", y, 2, weight(g, "c", 1.0f, 1, (int64_t)5), x);
        break;
    }
    (void)n;
    mark_output(g, y);
}

TEST(binary)
{
    for (int v = 0; v < 6; v++)
        ASSERT_EQ(compare(binary_graph, v, TDM_PRECISION_FP32, 1e-5, v == 3 ? 0.02 : 0, 1, 0),
                  0);
}

/* Standalone element-wise ops: 0 Relu, 1 Clip with inputs, 2 Sigmoid,
 * 3 FakeQuant, 4 Neg, 5 Tanh, 6 LeakyRelu, 7 Clip then FakeQuant fused by
 * the planner into one pass. */
static void unary_graph(graph *g, int v)
{
    int x = input(g, TDM_DTYPE_FLOAT, 4, (int64_t)1, (int64_t)6, (int64_t)5, (int64_t)5);
    int y = value(g, "y"), n;
    static const graph_op ops[] = {OP_RELU,      OP_CLIP, OP_SIGMOID,   OP_FAKEQUANT,
                                   OP_NEG,       OP_TANH, OP_LEAKYRELU, OP_CLIP};
    static const char *names[] = {"Relu", "Clip", "Sigmoid", "FakeQuant",
                                  "Neg",  "Tanh", "LeakyRelu", "Clip"};
    if (v == 1 || v == 7) {
        int lo = weight(g, "lo", 1.0f, 1, (int64_t)1), hi = weight(g, "hi", 1.0f, 1, (int64_t)1);
        ((float *)g->tensors[lo].data)[0] = -0.5f;
        ((float *)g->tensors[hi].data)[0] = 0.75f;
        int t = v == 7 ? value(g, "t") : y;
        n = node(g, ops[v], names[v], t, 3, x, lo, hi);
        if (v == 7) {
            n = node(g, OP_FAKEQUANT, "FakeQuant", y, 1, t);
            fakequant_attrs(g, n, 0.01f, 5.0f, -128, 127);
        }
    } else {
        n = node(g, ops[v], names[v], y, 1, x);
        if (v == 3) fakequant_attrs(g, n, 0.03f, 128.0f, 0, 255);
        if (v == 6) attr_float(g, n, "alpha", 0.2f);
    }
    mark_output(g, y);
}

TEST(unary)
{
    for (int v = 0; v < 8; v++)
        ASSERT_EQ(compare(unary_graph, v, TDM_PRECISION_FP32, 1e-5,
                          v == 3 ? 0.03 : v == 7 ? 0.01 : 0, 1, 0),
                  0);
}

/* QuantizeLinear and DequantizeLinear with scalar parameters: 0 float ->
 * uint8 -> float; 1 int8 with a negative zero point; 2 a uint8 input
 * dequantised (the real int8 models' first node). */
static int scalar8(graph *g, const char *name, tdm_dtype dt, int v)
{
    int t = graph_add_tensor(g, name, dt, 0, NULL);
    unsigned char *d = malloc(1);
    d[0] = (unsigned char)v;
    graph_set_data(g, t, d, 1);
    return t;
}

static void quant_graph(graph *g, int v)
{
    tdm_dtype qt = v == 1 ? TDM_DTYPE_INT8 : TDM_DTYPE_UINT8;
    int x = input(g, v == 2 ? TDM_DTYPE_UINT8 : TDM_DTYPE_FLOAT, 4, (int64_t)1, (int64_t)5,
                  (int64_t)6, (int64_t)7);
    int s = graph_add_tensor(g, "s", TDM_DTYPE_FLOAT, 0, NULL);
    float *sd = malloc(sizeof *sd);
    *sd = 0.0123f;
    graph_set_data(g, s, sd, sizeof *sd);
    int z = scalar8(g, "z", qt, v == 1 ? -7 : 131), y = value(g, "y");
    if (v == 2) {
        node(g, OP_DEQUANTIZELINEAR, "DequantizeLinear", y, 3, x, s, z);
    } else {
        int q = graph_add_tensor(g, "q", qt, -1, NULL);
        node(g, OP_QUANTIZELINEAR, "QuantizeLinear", q, 3, x, s, z);
        node(g, OP_DEQUANTIZELINEAR, "DequantizeLinear", y, 3, q, s, z);
    }
    mark_output(g, y);
}

TEST(quantize_dequantize)
{
    for (int v = 0; v < 3; v++)
        ASSERT_EQ(compare(quant_graph, v, TDM_PRECISION_FP32, 1e-6, v < 2 ? 0.0123 : 0,
                          v < 2 ? 2 : 1, 0),
                  0);
}

/* ---- Softmax, Transpose, Pad absorption -------------------------------- */

/* 0: along the last axis; 1: opset < 13 form on axis 1 of a rank-4 tensor. */
static void softmax_graph(graph *g, int v)
{
    int x = input(g, TDM_DTYPE_FLOAT, 4, (int64_t)2, (int64_t)3, (int64_t)4, (int64_t)5);
    int y = value(g, "y");
    int n = node(g, OP_SOFTMAX, "Softmax", y, 1, x);
    attr_int(g, n, "axis", v == 0 ? -1 : 1);
    attr_int(g, n, "coerce_2d", v);
    mark_output(g, y);
}

TEST(softmax)
{
    for (int v = 0; v < 2; v++)
        ASSERT_EQ(compare(softmax_graph, v, TDM_PRECISION_FP32, 1e-6, 0, 1, 0), 0);
}

/* 0: NCHW -> NHWC; 1: a permutation moving every axis. */
static void transpose_graph(graph *g, int v)
{
    int x = input(g, TDM_DTYPE_FLOAT, 4, (int64_t)1, (int64_t)3, (int64_t)6, (int64_t)7);
    int y = value(g, "y");
    int n = node(g, OP_TRANSPOSE, "Transpose", y, 1, x);
    attr_ints(g, n, "perm", 4, v == 0 ? (int64_t[]){0, 2, 3, 1} : (int64_t[]){3, 1, 0, 2});
    mark_output(g, y);
}

TEST(transpose)
{
    for (int v = 0; v < 2; v++)
        ASSERT_EQ(compare(transpose_graph, v, TDM_PRECISION_FP32, 0, 0, 1, 0), 0);
}

/* A zero Pad before a convolution, directly (0) or through a fake
 * quantisation mapping 0 to 0 (1): the planner folds it into the
 * convolution's padding, so no reference step remains. */
static void pad_graph(graph *g, int v)
{
    int x = input(g, TDM_DTYPE_FLOAT, 4, (int64_t)1, (int64_t)8, (int64_t)10, (int64_t)10);
    int p = value(g, "p"), y = value(g, "y"), c = p;
    node(g, OP_PAD, "Pad", p, 2, x, const_i64(g, "pads", 8, (int64_t[]){0, 0, 0, 1, 0, 0, 1, 1}));
    if (v == 1) {
        c = value(g, "q");
        int fq = node(g, OP_FAKEQUANT, "FakeQuant", c, 1, p);
        fakequant_attrs(g, fq, 0.02f, -128, -128, 127);
    }
    int n = node(g, OP_CONV, "Conv", y, 2, c,
                 weight(g, "w", 0.3f, 4, (int64_t)8, (int64_t)1, (int64_t)3, (int64_t)3));
    attr_int(g, n, "group", 8);
    attr_ints(g, n, "strides", 2, (int64_t[]){2, 2});
    mark_output(g, y);
}

TEST(pad_into_conv)
{
    for (int v = 0; v < 2; v++)
        ASSERT_EQ(compare(pad_graph, v, TDM_PRECISION_FP32, 1e-5, v ? 0.02 : 0, 1, 0), 0);
}

/* Concat has no oneDNN kernel here: it runs on the reference kernels, with
 * layout conversions from and back to the convolutions' layout around it. */
static void mixed_graph(graph *g, int v)
{
    int x = input(g, TDM_DTYPE_FLOAT, 4, (int64_t)1, (int64_t)8, (int64_t)6, (int64_t)6);
    int a = value(g, "a"), b = value(g, "b"), cc = value(g, "cc"), y = value(g, "y");
    int n1 = node(g, OP_CONV, "Conv", a, 2, x,
                  weight(g, "w1", 0.3f, 4, (int64_t)8, (int64_t)8, (int64_t)1, (int64_t)1));
    post(g, n1, POST_RELU, 0, 0, 0, 0);
    node(g, OP_CONV, "Conv", b, 2, x,
         weight(g, "w2", 0.3f, 4, (int64_t)8, (int64_t)8, (int64_t)1, (int64_t)1));
    int cn = node(g, OP_CONCAT, "Concat", cc, 2, a, b);
    attr_int(g, cn, "axis", 1);
    node(g, OP_CONV, "Conv", y, 2, cc,
         weight(g, "w3", 0.3f, 4, (int64_t)4, (int64_t)16, (int64_t)3, (int64_t)3));
    mark_output(g, y);
    (void)v;
}

TEST(reference_steps_between_primitives)
{
    ASSERT_EQ(compare(mixed_graph, 0, TDM_PRECISION_FP32, 1e-5, 0, 3, 1), 0);
}

TEST_MAIN()
