/*
 * The int8 convolution path (dnnl_int8.h): the grid and weight-scale
 * checks on their own, then small fake-quantised graphs planned twice
 * (backend REF, which runs them in float, and backend DNNL, which should run
 * their convolutions in int8), compared within one quantisation step. Bad
 * quantisation parameters must leave the graph on the float path, never
 * crash it.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "backend_run.h"
#include "dnnl_int8.h"
#include "graph_build.h"
#include "session.h"
#include "test.h"

/* ---- the checks on their own ------------------------------------------ */

TEST(grid_accepts_the_two_8bit_ranges)
{
    dnq_params q;
    ASSERT(dnq_grid(0.02f, 128.0f, 0.0f, 255.0f, &q));
    ASSERT_EQ(q.dt, dnnl_u8);
    ASSERT_EQ(q.zp, 128);
    ASSERT(dnq_grid(0.5f, -128.0f, -128.0f, 127.0f, &q)); /* stored as uint8 */
    ASSERT_EQ(q.dt, dnnl_u8);
    ASSERT_EQ(q.zp, 0);
    ASSERT(dnq_grid(0.5f, 3.0f, -128.0f, 127.0f, &q));
    ASSERT_EQ(q.zp, 131);
}

TEST(grid_refuses_malformed_parameters)
{
    dnq_params q;
    ASSERT(!dnq_grid(0.0f, 0.0f, 0.0f, 255.0f, &q));  /* zero scale */
    ASSERT(!dnq_grid(-0.1f, 0.0f, 0.0f, 255.0f, &q)); /* negative scale */
    ASSERT(!dnq_grid(NAN, 0.0f, 0.0f, 255.0f, &q));
    ASSERT(!dnq_grid(INFINITY, 0.0f, 0.0f, 255.0f, &q));
    ASSERT(!dnq_grid(1e-45f, 0.0f, 0.0f, 255.0f, &q)); /* 1 / scale overflows */
    ASSERT(!dnq_grid(0.1f, 256.0f, 0.0f, 255.0f, &q)); /* zero point out of range */
    ASSERT(!dnq_grid(0.1f, -129.0f, -128.0f, 127.0f, &q));
    ASSERT(!dnq_grid(0.1f, 3.5f, 0.0f, 255.0f, &q)); /* fractional zero point */
    ASSERT(!dnq_grid(0.1f, NAN, 0.0f, 255.0f, &q));
    ASSERT(!dnq_grid(0.1f, 0.0f, 0.0f, 127.0f, &q)); /* not an 8-bit type's range */
    ASSERT(!dnq_grid(0.1f, 0.0f, -32768.0f, 32767.0f, &q));
}

static graph_tensor const_f32(float *d, int64_t n)
{
    graph_tensor t;
    memset(&t, 0, sizeof t);
    t.dtype = TDM_DTYPE_FLOAT;
    t.rank = 1;
    t.dims[0] = n;
    t.data = d;
    t.nbytes = (size_t)n * sizeof *d;
    return t;
}

TEST(weight_scale_recovers_the_grid)
{
    float d[6] = {127 * 0.013f, -5 * 0.013f, 0.0f, 64 * 0.013f, -127 * 0.013f, 1 * 0.013f};
    graph_tensor t = const_f32(d, 6);
    float s = 0;
    ASSERT(dnq_weight_scale(&t, &s));
    ASSERT_NEAR(s, 0.013, 1e-8);
    float z[3] = {0, 0, 0};
    t = const_f32(z, 3);
    ASSERT(dnq_weight_scale(&t, &s));
}

TEST(weight_scale_refuses_off_grid_weights)
{
    float d[3] = {1.0f, 0.3f, -0.77f};
    graph_tensor t = const_f32(d, 3);
    float s = 0;
    ASSERT(!dnq_weight_scale(&t, &s));
    float n[2] = {1.0f, NAN};
    t = const_f32(n, 2);
    ASSERT(!dnq_weight_scale(&t, &s));
    t = const_f32(d, 3);
    t.dtype = TDM_DTYPE_INT32;
    ASSERT(!dnq_weight_scale(&t, &s));
    t = const_f32(d, 3);
    t.nbytes = 4; /* a payload shorter than its shape */
    ASSERT(!dnq_weight_scale(&t, &s));
}

/* ---- graph building ----------------------------------------------------- */

/* A float constant of n values: integers in [-127, 127] times scale (an
 * int8 exporter's weights), or off any grid when scale is 0. */
static int grid_const(graph *g, const char *name, float scale, int rank, const int64_t *dims)
{
    int t = graph_add_tensor(g, name, TDM_DTYPE_FLOAT, rank, dims);
    int64_t n = graph_tensor_numel(&g->tensors[t]);
    float *d = malloc((size_t)n * sizeof *d);
    for (int64_t i = 0; i < n; i++)
        d[i] = scale > 0 ? rintf(frand() * 127.0f) * scale : frand() * 0.3f;
    if (scale > 0) d[0] = 127.0f * scale;
    graph_set_data(g, t, d, (size_t)n * sizeof *d);
    return t;
}

/* x -> FAKEQUANT(scale, zp, qmin, qmax) -> y */
static int fakequant(graph *g, int x, float scale, float zp, float qmin, float qmax)
{
    int y = value(g, "xq");
    int n = graph_add_node(g, "fq", "FakeQuant", OP_FAKEQUANT, 1, &x, 1, &y);
    attr_float(g, n, "scale", scale);
    attr_float(g, n, "zero_point", zp);
    attr_float(g, n, "qmin", qmin);
    attr_float(g, n, "qmax", qmax);
    return y;
}

TEST(tensor_grids_come_from_producers)
{
    graph *g = graph_new();
    int x = tensor(g, "x", TDM_DTYPE_FLOAT, 2, (int64_t)1, (int64_t)8);
    mark_input(g, x);
    int a = fakequant(g, x, 0.1f, -128, -128, 127);
    int b = fakequant(g, a, 0.1f, -128, -128, 127); /* the same grid again */
    int c = fakequant(g, b, 0.2f, 0, 0, 255);       /* another grid */
    int r = value(g, "r"), y = value(g, "y");
    graph_add_node(g, "relu", "Relu", OP_RELU, 1, &c, 1, &r);
    int ins[2] = {r, a};
    graph_add_node(g, "add", "Add", OP_ADD, 2, ins, 1, &y);
    mark_output(g, y);
    dnq_params q;
    ASSERT(!dnq_tensor_params(g, x, &q)); /* a graph input */
    ASSERT(dnq_tensor_params(g, a, &q));
    ASSERT_EQ(q.zp, 0);
    ASSERT(dnq_tensor_params(g, c, &q));
    ASSERT_NEAR(q.scale, 0.2, 1e-7);
    ASSERT(!dnq_tensor_params(g, r, &q)); /* a Relu is no fake quantisation */
    ASSERT(!dnq_tensor_params(g, -1, &q));
    ASSERT(!dnq_tensor_params(g, g->ntensors, &q));
    /* b re-quantises a onto its own grid: dropped, c reads a; c's grid is
     * another one, so c stays. */
    ASSERT_EQ(dnq_drop_requant(g), 0);
    ASSERT_EQ(g->nnodes, 4);
    int fq = 0;
    for (int i = 0; i < g->nnodes; i++)
        fq += g->nodes[i].op == OP_FAKEQUANT;
    ASSERT_EQ(fq, 2);
    graph_free(g);
}

typedef struct qconv_case {
    int64_t c, oc, h, k, stride, group;
    int64_t pads[4];
    float xs, xzp, xmin, xmax; /* the input's grid */
    float ws;                  /* weight scale; 0: weights off any grid */
    float ys, yzp;             /* the output's grid (s8) */
    bool relu6, chmin, sum;
} qconv_case;

/* The MobileNetV2 shapes (expand, depthwise stride 1 and 2 with the
 * explicit Pad's asymmetric padding, project with a residual sum, the
 * 320->1280 head whose channels oneDNN pads), a u8 input, and then
 * malformed cases that must stay in float. */
static const qconv_case cases[] = {
    {16,
     96,
     12,
     1,
     1,
     1,
     {0, 0, 0, 0},
     0.42f,
     3,
     -128,
     127,
     0.004f,
     0.0235f,
     -128,
     true,
     false,
     false},
    {32,
     32,
     12,
     3,
     1,
     32,
     {1, 1, 1, 1},
     0.0235f,
     -128,
     -128,
     127,
     0.02f,
     0.06f,
     -128,
     false,
     true,
     false},
    {48,
     48,
     12,
     3,
     2,
     48,
     {0, 0, 1, 1},
     0.0235f,
     -128,
     -128,
     127,
     0.02f,
     0.09f,
     -128,
     false,
     true,
     false},
    {24,
     24,
     9,
     1,
     1,
     1,
     {0, 0, 0, 0},
     0.09f,
     -128,
     -128,
     127,
     0.003f,
     0.33f,
     -8,
     false,
     false,
     true},
    {320,
     1280,
     7,
     1,
     1,
     1,
     {0, 0, 0, 0},
     0.19f,
     28,
     -128,
     127,
     0.002f,
     0.0235f,
     -128,
     true,
     false,
     false},
    {8, 16, 10, 3, 2, 1, {0, 0, 1, 1}, 0.0078f, 127, 0, 255, 0.01f, 0.05f, 3, true, false, false},
    /* malformed: weights off any grid; a zero point outside the range; a
     * non-8-bit range; then a zero output scale, which the float path
     * refuses too */
    {16, 24, 8, 1, 1, 1, {0, 0, 0, 0}, 0.1f, 0, -128, 127, 0.0f, 0.05f, 0, false, false, false},
    {16, 24, 8, 1, 1, 1, {0, 0, 0, 0}, 0.1f, 300, 0, 255, 0.01f, 0.05f, 0, false, false, false},
    {16, 24, 8, 1, 1, 1, {0, 0, 0, 0}, 0.1f, 0, 0, 127, 0.01f, 0.05f, 0, false, false, false},
    {16, 24, 8, 1, 1, 1, {0, 0, 0, 0}, 0.1f, 0, -128, 127, 0.01f, 0.0f, 0, false, false, false},
};
#define NCASES ((int)(sizeof cases / sizeof cases[0]))
#define NGOOD 6

static void qconv_graph(graph *g, int v)
{
    const qconv_case *q = &cases[v];
    int x = tensor(g, "x", TDM_DTYPE_FLOAT, 4, (int64_t)1, q->c, q->h, q->h);
    mark_input(g, x);
    int xq = fakequant(g, x, q->xs, q->xzp, q->xmin, q->xmax);
    int64_t wd[4] = {q->oc, q->c / q->group, q->k, q->k}, bd[1] = {q->oc};
    int w = grid_const(g, "w", q->ws, 4, wd);
    int b = grid_const(g, "b", q->xs * (q->ws > 0 ? q->ws : 0.01f), 1, bd);
    int y = value(g, "y");
    int ins[3] = {xq, w, b};
    int n = graph_add_node(g, "conv", "Conv", OP_CONV, 3, ins, 1, &y);
    attr_int(g, n, "group", q->group);
    attr_ints(g, n, "strides", 2, (int64_t[]){q->stride, q->stride});
    attr_ints(g, n, "pads", 4, q->pads);
    attr_ints(g, n, "kernel_shape", 2, (int64_t[]){q->k, q->k});
    if (q->relu6) post(g, n, POST_CLIP, 0.0f, 6.0f, 0, 0);
    if (q->chmin) {
        /* depthwise blocks: relu, quantise, a per-channel ceiling, quantise */
        post(g, n, POST_RELU, 0, 0, 0, 0);
        post(g, n, POST_FAKEQUANT, q->ys, q->yzp, -128, 127);
        int64_t cd[4] = {1, q->oc, 1, 1};
        post_input(g, n, POST_MIN_CHANNEL, grid_const(g, "ceil", 0.05f, 4, cd));
    }
    if (q->sum) {
        /* the residual: the input itself, on its own grid */
        post(g, n, POST_FAKEQUANT, q->ys * 0.8f, 2, -128, 127);
        post_input(g, n, POST_SUM, xq);
    }
    post(g, n, POST_FAKEQUANT, q->ys, q->yzp, -128, 127);
    mark_output(g, y);
}

/* A MatMul with grid weights reading a fake-quantised [2, 64] tensor (v 0:
 * uint8 zero point 5, 1: int8 zero point -128), then a fake quantisation
 * as the classifier head of the int8 models has; v 2: weights off any grid. */
static void qmatmul_graph(graph *g, int v)
{
    int64_t wd[2] = {64, 40};
    int t = tensor(g, "x", TDM_DTYPE_FLOAT, 2, (int64_t)2, (int64_t)64);
    mark_input(g, t);
    int xq = v == 1 ? fakequant(g, t, 0.03f, -128, -128, 127) : fakequant(g, t, 0.03f, 5, 0, 255);
    int w = grid_const(g, "w", v == 2 ? 0.0f : 0.004f, 2, wd);
    int y = value(g, "y"), ins[2] = {xq, w};
    int n = graph_add_node(g, "mm", "MatMul", OP_MATMUL, 2, ins, 1, &y);
    post(g, n, POST_FAKEQUANT, 0.05f, 0, -128, 127);
    mark_output(g, y);
}

/* Runs case v on both backends: the outputs may differ by one step of the
 * output grid on at most 1 % of the elements (rounding ties), and the DNNL
 * session must have run int8_min..int8_max primitives writing 8-bit data. */
static int compare_graph(builder b, int v, double step, int int8_min, int int8_max)
{
    result ref = {0}, dn = {0};
    int bad = 1;
    if (run_backend(b, v, TDM_BACKEND_REF, TDM_PRECISION_FP32, 1, 4.0f, &ref) ||
        run_backend(b, v, TDM_BACKEND_DNNL, TDM_PRECISION_FP32, 1, 4.0f, &dn))
        goto out;
    if (ref.n != dn.n || ref.n == 0) goto out;
    size_t off = 0;
    double worst = 0;
    for (size_t i = 0; i < ref.n; i++) {
        double d = fabs((double)ref.out[i] - dn.out[i]);
        if (!(d <= 1e-5)) off++;
        if (!(d <= worst)) worst = d;
    }
    bool ok = off * 100 <= ref.n && worst <= step * 1.01;
    if (!ok) fprintf(stderr, "  case %d: %zu/%zu off, worst %g\n", v, off, ref.n, worst);
    if (dn.st.int8_steps < int8_min || dn.st.int8_steps > int8_max) {
        fprintf(stderr, "  case %d: %d int8 primitives\n", v, dn.st.int8_steps);
        ok = false;
    }
    bad = !ok;
out:
    free(ref.out);
    free(dn.out);
    return bad;
}

static int compare(int v, int int8_min, int int8_max)
{
    return compare_graph(qconv_graph, v, cases[v].ys, int8_min, int8_max);
}

TEST(int8_convolutions_match_the_float_graph)
{
    for (int v = 0; v < NGOOD; v++)
        ASSERT_EQ(compare(v, 1, 1), 0);
}

TEST(malformed_quantisation_stays_in_float)
{
    for (int v = NGOOD; v < NCASES - 1; v++)
        ASSERT_EQ(compare(v, 0, 0), 0);
}

TEST(zero_scale_is_an_error_not_a_crash)
{
    result r = {0};
    ASSERT(run_backend(qconv_graph, NCASES - 1, TDM_BACKEND_DNNL, TDM_PRECISION_FP32, 1, 4.0f,
                       &r) != 0);
    free(r.out);
}

TEST(int8_matmul_matches_the_float_graph)
{
    /* The MatMul's dst is f32 (int8_steps counts 8-bit dsts: none here);
     * that it ran in int8 shows in ONEDNN_VERBOSE, its result here. */
    for (int v = 0; v < 3; v++)
        ASSERT_EQ(compare_graph(qmatmul_graph, v, 0.05, 0, 0), 0);
}

/* A uint8 input dequantised (the real models' first node) into a 3x3
 * convolution: v 0 with a uint8 zero point, v 1 with an int8 zero point for
 * a uint8 input, which no grid describes. */
static void dequant_graph(graph *g, int v)
{
    int64_t wd[4] = {8, 3, 3, 3};
    int x = tensor(g, "x", TDM_DTYPE_UINT8, 4, (int64_t)1, (int64_t)3, (int64_t)12, (int64_t)12);
    mark_input(g, x);
    int sc = const_scalar(g, "s", TDM_DTYPE_FLOAT, 0.0078);
    int zp = v == 1 ? const_scalar(g, "z", TDM_DTYPE_INT8, -16)
                    : const_scalar(g, "z", TDM_DTYPE_UINT8, 128);
    int xf = value(g, "xf"), y = value(g, "y"), ins[3] = {x, sc, zp};
    graph_add_node(g, "dq", "DequantizeLinear", OP_DEQUANTIZELINEAR, 3, ins, 1, &xf);
    int cins[2] = {xf, grid_const(g, "w", 0.01f, 4, wd)};
    int n = graph_add_node(g, "conv", "Conv", OP_CONV, 2, cins, 1, &y);
    attr_ints(g, n, "pads", 4, (int64_t[]){1, 1, 1, 1});
    post(g, n, POST_FAKEQUANT, 0.02f, -128, -128, 127);
    mark_output(g, y);
}

TEST(dequantized_input_feeds_an_int8_convolution)
{
    ASSERT_EQ(compare_graph(dequant_graph, 0, 0.02, 1, 1), 0);
    /* Mismatched zero point type: an error or the float path, no crash. */
    result r = {0};
    int rc = run_backend(dequant_graph, 1, TDM_BACKEND_DNNL, TDM_PRECISION_FP32, 1, 4.0f, &r);
    ASSERT(rc != 0 || r.st.int8_steps == 0);
    free(r.out);
}

TEST_MAIN()
