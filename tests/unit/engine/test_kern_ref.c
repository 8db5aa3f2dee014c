/*
 * Tests of the reference kernels: every op on tiny tensors against values
 * worked out by hand (or, for Conv and the pools, against a brute-force
 * evaluation of the ONNX definition), plus the edge cases that distinguish a
 * right kernel from a nearly right one: padding with dilation, ceil_mode,
 * count_include_pad, broadcasting, negative axes, per-axis quantisation,
 * rounding ties and saturation.
 */
#include <stdint.h>

#include "kern_ref.h"
#include "test.h"

/* ------------------------------------------------------------------------ */
/* Building nodes and tensors                                                */
/* ------------------------------------------------------------------------ */

#define DIMS(...) ((const int64_t[]){__VA_ARGS__})
#define INTS(...) ((int64_t[]){__VA_ARGS__})
#define NINTS(...) (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t))

static graph_tensor tensor(tdm_dtype dt, int rank, const int64_t *dims)
{
    graph_tensor t;
    memset(&t, 0, sizeof t);
    t.name = (char *)"t";
    t.dtype = dt;
    t.rank = rank;
    for (int i = 0; i < rank; i++)
        t.dims[i] = dims[i];
    t.producer = -1;
    return t;
}

static graph_attr attr_i(const char *name, int64_t v)
{
    return (graph_attr){.name = (char *)name, .type = ATTR_INT, .i = v};
}

static graph_attr attr_f(const char *name, float v)
{
    return (graph_attr){.name = (char *)name, .type = ATTR_FLOAT, .f = v};
}

static graph_attr attr_s(const char *name, const char *v)
{
    return (graph_attr){.name = (char *)name, .type = ATTR_STRING, .s = (char *)v};
}

static graph_attr attr_ints(const char *name, int n, int64_t *v)
{
    return (graph_attr){.name = (char *)name, .type = ATTR_INTS, .n = n, .ints = v};
}

#define ATTR_INTS_(name, ...) attr_ints(name, NINTS(__VA_ARGS__), INTS(__VA_ARGS__))

static graph_node node(graph_op op, int nattrs, graph_attr *attrs)
{
    graph_node n;
    memset(&n, 0, sizeof n);
    n.name = (char *)"n0";
    n.op = op;
    n.nattrs = nattrs;
    n.attrs = attrs;
    return n;
}

static char errbuf[256];

/* Runs n with nin inputs and one output. */
static int run(const graph_node *n, int nin, const graph_tensor *const *in,
               const void *const *in_data, const graph_tensor *out, void *out_data)
{
    const graph_tensor *outs[1] = {out};
    void *outd[1] = {out_data};
    ref_args a = {
        .nin = nin, .in = in, .in_data = in_data, .nout = 1, .out = outs, .out_data = outd};
    errbuf[0] = '\0';
    return ref_run(n, &a, errbuf, sizeof errbuf);
}

/* One input, one output, float. */
static int run1f(const graph_node *n, const graph_tensor *x, const float *xd, const graph_tensor *y,
                 float *yd)
{
    const graph_tensor *in[1] = {x};
    const void *ind[1] = {xd};
    return run(n, 1, in, ind, y, yd);
}

static int run2(const graph_node *n, const graph_tensor *x, const void *xd, const graph_tensor *w,
                const void *wd, const graph_tensor *y, void *yd)
{
    const graph_tensor *in[2] = {x, w};
    const void *ind[2] = {xd, wd};
    return run(n, 2, in, ind, y, yd);
}

static int run3(const graph_node *n, const graph_tensor *x, const void *xd, const graph_tensor *w,
                const void *wd, const graph_tensor *b, const void *bd, const graph_tensor *y,
                void *yd)
{
    const graph_tensor *in[3] = {x, w, b};
    const void *ind[3] = {xd, wd, bd};
    return run(n, 3, in, ind, y, yd);
}

#define ASSERT_FLOATS(got, ...)                                                                    \
    do {                                                                                           \
        const float want_[] = {__VA_ARGS__};                                                       \
        for (size_t i_ = 0; i_ < sizeof want_ / sizeof want_[0]; i_++)                             \
            ASSERT_NEAR((got)[i_], want_[i_], 1e-5 + 1e-5 * fabs(want_[i_]));                      \
    } while (0)

#define ASSERT_INTS(got, ...)                                                                      \
    do {                                                                                           \
        const long long want_[] = {__VA_ARGS__};                                                   \
        for (size_t i_ = 0; i_ < sizeof want_ / sizeof want_[0]; i_++)                             \
            ASSERT_EQ((got)[i_], want_[i_]);                                                       \
    } while (0)

/* A small deterministic generator for the brute-force comparisons. */
static uint32_t rng_state = 12345;
static float frand(void)
{
    rng_state = rng_state * 1664525u + 1013904223u;
    return (float)((rng_state >> 8) & 0xffff) / 32768.0f - 1.0f;
}

/* ------------------------------------------------------------------------ */
/* Element-wise                                                              */
/* ------------------------------------------------------------------------ */

TEST(unary_ops)
{
    graph_tensor t = tensor(TDM_DTYPE_FLOAT, 1, DIMS(4));
    const float x[4] = {-3.0f, -0.5f, 0.0f, 4.0f};
    float y[4];
    struct {
        graph_op op;
        float want[4];
    } cases[] = {
        {OP_RELU, {0, 0, 0, 4}},
        {OP_SIGMOID, {0.0474258732f, 0.3775406688f, 0.5f, 0.9820137900f}},
        {OP_TANH, {-0.9950547537f, -0.4621171573f, 0.0f, 0.9993292997f}},
        {OP_LEAKYRELU, {-0.03f, -0.005f, 0, 4}}, /* default alpha 0.01 */
        {OP_HARDSIGMOID, {0.0f, 0.4f, 0.5f, 1.0f}},
        {OP_HARDSWISH, {0.0f, -0.5f * (2.5f / 6.0f), 0.0f, 4.0f}},
        {OP_EXP, {0.0497870684f, 0.6065306597f, 1.0f, 54.5981500331f}},
        {OP_NEG, {3, 0.5f, 0, -4}},
        {OP_ABS, {3, 0.5f, 0, 4}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        graph_node n = node(cases[c].op, 0, NULL);
        ASSERT_EQ(run1f(&n, &t, x, &t, y), 0);
        for (int i = 0; i < 4; i++)
            ASSERT_NEAR(y[i], cases[c].want[i], 1e-6);
    }
    const float s[3] = {0.0f, 4.0f, 2.25f};
    graph_tensor t3 = tensor(TDM_DTYPE_FLOAT, 1, DIMS(3));
    graph_node n = node(OP_SQRT, 0, NULL);
    ASSERT_EQ(run1f(&n, &t3, s, &t3, y), 0);
    ASSERT_FLOATS(y, 0.0f, 2.0f, 1.5f);
}

TEST(unary_attributes)
{
    graph_tensor t = tensor(TDM_DTYPE_FLOAT, 1, DIMS(3));
    const float x[3] = {-2.0f, 0.5f, 3.0f};
    float y[3];
    graph_attr la[] = {attr_f("alpha", 0.5f)};
    graph_node n = node(OP_LEAKYRELU, 1, la);
    ASSERT_EQ(run1f(&n, &t, x, &t, y), 0);
    ASSERT_FLOATS(y, -1.0f, 0.5f, 3.0f);
    graph_attr ha[] = {attr_f("alpha", 0.25f), attr_f("beta", 0.25f)};
    n = node(OP_HARDSIGMOID, 2, ha);
    ASSERT_EQ(run1f(&n, &t, x, &t, y), 0);
    ASSERT_FLOATS(y, 0.0f, 0.375f, 1.0f);
}

TEST(clip_forms)
{
    graph_tensor t = tensor(TDM_DTYPE_FLOAT, 1, DIMS(4));
    graph_tensor sc = tensor(TDM_DTYPE_FLOAT, 0, NULL);
    const float x[4] = {-8.0f, 0.5f, 3.0f, 9.0f};
    float y[4];
    /* opset < 11: attributes */
    graph_attr at[] = {attr_f("min", 0.0f), attr_f("max", 6.0f)};
    graph_node n = node(OP_CLIP, 2, at);
    ASSERT_EQ(run1f(&n, &t, x, &t, y), 0);
    ASSERT_FLOATS(y, 0.0f, 0.5f, 3.0f, 6.0f);
    /* opset >= 11: inputs, max omitted */
    n = node(OP_CLIP, 0, NULL);
    const float lo = 1.0f, hi = 2.0f;
    const graph_tensor *in[3] = {&t, &sc, NULL};
    const void *ind[3] = {x, &lo, NULL};
    ASSERT_EQ(run(&n, 3, in, ind, &t, y), 0);
    ASSERT_FLOATS(y, 1.0f, 1.0f, 3.0f, 9.0f);
    /* min omitted */
    const graph_tensor *in2[3] = {&t, NULL, &sc};
    const void *ind2[3] = {x, NULL, &hi};
    ASSERT_EQ(run(&n, 3, in2, ind2, &t, y), 0);
    ASSERT_FLOATS(y, -8.0f, 0.5f, 2.0f, 2.0f);
    /* no bounds at all: identity */
    ASSERT_EQ(run1f(&n, &t, x, &t, y), 0);
    ASSERT_FLOATS(y, -8.0f, 0.5f, 3.0f, 9.0f);
}

TEST(binary_broadcasting)
{
    graph_tensor a23 = tensor(TDM_DTYPE_FLOAT, 2, DIMS(2, 3)),
                 b3 = tensor(TDM_DTYPE_FLOAT, 1, DIMS(3));
    const float a[6] = {1, 2, 3, 4, 5, 6}, b[3] = {10, 20, 30};
    float y[6];
    graph_node n = node(OP_ADD, 0, NULL);
    ASSERT_EQ(run2(&n, &a23, a, &b3, b, &a23, y), 0);
    ASSERT_FLOATS(y, 11, 22, 33, 14, 25, 36);
    /* [2,1] - [1,3] -> [2,3]: both sides broadcast */
    graph_tensor c21 = tensor(TDM_DTYPE_FLOAT, 2, DIMS(2, 1)),
                 c13 = tensor(TDM_DTYPE_FLOAT, 2, DIMS(1, 3));
    const float c[2] = {100, 200};
    n = node(OP_SUB, 0, NULL);
    ASSERT_EQ(run2(&n, &c21, c, &c13, b, &a23, y), 0);
    ASSERT_FLOATS(y, 90, 80, 70, 190, 180, 170);
    /* rank-0 scalar on the left */
    graph_tensor s = tensor(TDM_DTYPE_FLOAT, 0, NULL);
    const float two = 2.0f;
    n = node(OP_DIV, 0, NULL);
    ASSERT_EQ(run2(&n, &s, &two, &a23, a, &a23, y), 0);
    ASSERT_FLOATS(y, 2, 1, 2.0f / 3, 0.5f, 0.4f, 2.0f / 6);
    n = node(OP_MUL, 0, NULL);
    ASSERT_EQ(run2(&n, &a23, a, &s, &two, &a23, y), 0);
    ASSERT_FLOATS(y, 2, 4, 6, 8, 10, 12);
    /* shapes that do not broadcast */
    graph_tensor b2 = tensor(TDM_DTYPE_FLOAT, 1, DIMS(2));
    n = node(OP_ADD, 0, NULL);
    ASSERT_EQ(run2(&n, &a23, a, &b2, b, &a23, y), TDM_ERR_INVALID);
    ASSERT(strstr(errbuf, "n0") != NULL);
}

TEST(binary_int64_shape_math)
{
    graph_tensor v = tensor(TDM_DTYPE_INT64, 1, DIMS(3)), s = tensor(TDM_DTYPE_INT64, 0, NULL);
    const int64_t a[3] = {7, -7, 224}, d = 2, zero = 0;
    int64_t y[3];
    graph_node n = node(OP_DIV, 0, NULL);
    ASSERT_EQ(run2(&n, &v, a, &s, &d, &v, y), 0);
    ASSERT_INTS(y, 3, -3, 112); /* truncation toward zero */
    n = node(OP_MUL, 0, NULL);
    ASSERT_EQ(run2(&n, &v, a, &s, &d, &v, y), 0);
    ASSERT_INTS(y, 14, -14, 448);
    n = node(OP_SUB, 0, NULL);
    ASSERT_EQ(run2(&n, &v, a, &s, &d, &v, y), 0);
    ASSERT_INTS(y, 5, -9, 222);
    n = node(OP_DIV, 0, NULL);
    ASSERT_EQ(run2(&n, &v, a, &s, &zero, &v, y), TDM_ERR_INVALID);
}

TEST(min_max_variadic)
{
    graph_tensor t = tensor(TDM_DTYPE_FLOAT, 1, DIMS(3)), s = tensor(TDM_DTYPE_FLOAT, 0, NULL);
    const float a[3] = {1, 5, -2}, b[3] = {3, 0, -1}, c = 2.0f;
    float y[3];
    graph_node n = node(OP_MIN, 0, NULL);
    const graph_tensor *in[3] = {&t, &t, &s};
    const void *ind[3] = {a, b, &c};
    ASSERT_EQ(run(&n, 3, in, ind, &t, y), 0);
    ASSERT_FLOATS(y, 1, 0, -2);
    n = node(OP_MAX, 0, NULL);
    ASSERT_EQ(run(&n, 3, in, ind, &t, y), 0);
    ASSERT_FLOATS(y, 3, 5, 2);
    /* a single input is passed through */
    ASSERT_EQ(run1f(&n, &t, a, &t, y), 0);
    ASSERT_FLOATS(y, 1, 5, -2);
    /* Min with a scalar: the int8 models' Relu6 */
    n = node(OP_MIN, 0, NULL);
    ASSERT_EQ(run2(&n, &t, a, &s, &c, &t, y), 0);
    ASSERT_FLOATS(y, 1, 2, -2);
}

/* ------------------------------------------------------------------------ */
/* Quantisation                                                              */
/* ------------------------------------------------------------------------ */

TEST(quantize_rounding_and_saturation)
{
    graph_tensor x = tensor(TDM_DTYPE_FLOAT, 1, DIMS(9)), s = tensor(TDM_DTYPE_FLOAT, 0, NULL);
    graph_tensor zu = tensor(TDM_DTYPE_UINT8, 0, NULL), yu = tensor(TDM_DTYPE_UINT8, 1, DIMS(9));
    /* x / 0.5: 0.5, 1.5, 2.5, -0.5, -1.5, -2.5 are ties -> 0, 2, 2, -0, -2, -2 */
    const float xd[9] = {0.25f, 0.75f, 1.25f, -0.25f, -0.75f, -1.25f, 1000.0f, -1000.0f, 10.0f};
    const float scale = 0.5f;
    const uint8_t zp = 128;
    uint8_t yd[9];
    graph_node n = node(OP_QUANTIZELINEAR, 0, NULL);
    ASSERT_EQ(run3(&n, &x, xd, &s, &scale, &zu, &zp, &yu, yd), 0);
    ASSERT_INTS(yd, 128, 130, 130, 128, 126, 126, 255, 0, 148);
    /* no zero point: uint8 with zero point 0 */
    ASSERT_EQ(run2(&n, &x, xd, &s, &scale, &yu, yd), 0);
    ASSERT_INTS(yd, 0, 2, 2, 0, 0, 0, 255, 0, 20);
    /* int8 saturates at -128 and 127 */
    graph_tensor zi = tensor(TDM_DTYPE_INT8, 0, NULL), yi = tensor(TDM_DTYPE_INT8, 1, DIMS(9));
    const int8_t zpi = -1;
    int8_t yid[9];
    ASSERT_EQ(run3(&n, &x, xd, &s, &scale, &zi, &zpi, &yi, yid), 0);
    ASSERT_INTS(yid, -1, 1, 1, -1, -3, -3, 127, -128, 19);
    /* a zero point of another dtype than the output is refused */
    ASSERT_EQ(run3(&n, &x, xd, &s, &scale, &zu, &zp, &yi, yid), TDM_ERR_UNSUPPORTED);
}

TEST(quantize_per_axis)
{
    graph_tensor x = tensor(TDM_DTYPE_FLOAT, 2, DIMS(2, 3)),
                 s = tensor(TDM_DTYPE_FLOAT, 1, DIMS(3));
    graph_tensor z = tensor(TDM_DTYPE_INT8, 1, DIMS(3)), y = tensor(TDM_DTYPE_INT8, 2, DIMS(2, 3));
    const float xd[6] = {1, 2, 4, -1, -2, 400};
    const float sd[3] = {1, 2, 4};
    const int8_t zd[3] = {0, 1, -1};
    int8_t yd[6];
    graph_attr at[] = {attr_i("axis", -1)};
    graph_node n = node(OP_QUANTIZELINEAR, 1, at);
    ASSERT_EQ(run3(&n, &x, xd, &s, sd, &z, zd, &y, yd), 0);
    ASSERT_INTS(yd, 1, 2, 0, -1, 0, 99);
    /* default axis 1 is the same axis here */
    n = node(OP_QUANTIZELINEAR, 0, NULL);
    ASSERT_EQ(run3(&n, &x, xd, &s, sd, &z, zd, &y, yd), 0);
    ASSERT_INTS(yd, 1, 2, 0, -1, 0, 99);
    /* axis 0 has 2 elements, the scale 3: refused */
    graph_attr a0[] = {attr_i("axis", 0)};
    n = node(OP_QUANTIZELINEAR, 1, a0);
    ASSERT_EQ(run3(&n, &x, xd, &s, sd, &z, zd, &y, yd), TDM_ERR_INVALID);
}

TEST(dequantize_forms)
{
    graph_tensor xu = tensor(TDM_DTYPE_UINT8, 1, DIMS(3)), s = tensor(TDM_DTYPE_FLOAT, 0, NULL);
    graph_tensor zu = tensor(TDM_DTYPE_UINT8, 0, NULL), y3 = tensor(TDM_DTYPE_FLOAT, 1, DIMS(3));
    const uint8_t xd[3] = {0, 128, 255}, zp = 128;
    const float sc = 0.5f;
    float y[4];
    graph_node n = node(OP_DEQUANTIZELINEAR, 0, NULL);
    ASSERT_EQ(run3(&n, &xu, xd, &s, &sc, &zu, &zp, &y3, y), 0);
    ASSERT_FLOATS(y, -64.0f, 0.0f, 63.5f);
    /* int8 per-axis along axis 0 of [2,2] */
    graph_tensor xi = tensor(TDM_DTYPE_INT8, 2, DIMS(2, 2)),
                 s2 = tensor(TDM_DTYPE_FLOAT, 1, DIMS(2));
    graph_tensor z2 = tensor(TDM_DTYPE_INT8, 1, DIMS(2)),
                 y22 = tensor(TDM_DTYPE_FLOAT, 2, DIMS(2, 2));
    const int8_t xid[4] = {-128, 127, 10, -10}, zid[2] = {0, 10};
    const float sd[2] = {1.0f, 0.25f};
    graph_attr at[] = {attr_i("axis", 0)};
    n = node(OP_DEQUANTIZELINEAR, 1, at);
    ASSERT_EQ(run3(&n, &xi, xid, &s2, sd, &z2, zid, &y22, y), 0);
    ASSERT_FLOATS(y, -128.0f, 127.0f, 0.0f, -5.0f);
    /* int32 (a bias), no zero point */
    graph_tensor x32 = tensor(TDM_DTYPE_INT32, 1, DIMS(3));
    const int32_t x32d[3] = {-100000, 0, 7};
    n = node(OP_DEQUANTIZELINEAR, 0, NULL);
    ASSERT_EQ(run2(&n, &x32, x32d, &s, &sc, &y3, y), 0);
    ASSERT_FLOATS(y, -50000.0f, 0.0f, 3.5f);
}

TEST(fakequant_matches_q_dq)
{
    graph_tensor t = tensor(TDM_DTYPE_FLOAT, 1, DIMS(6)), s = tensor(TDM_DTYPE_FLOAT, 0, NULL);
    graph_tensor zt = tensor(TDM_DTYPE_UINT8, 0, NULL), qt = tensor(TDM_DTYPE_UINT8, 1, DIMS(6));
    const float x[6] = {0.05f, 0.15f, -0.35f, 3.0f, 100.0f, -100.0f};
    const float scale = 0.1f;
    const uint8_t zp = 3;
    uint8_t q[6];
    float dq[6], fq[6];
    graph_node nq = node(OP_QUANTIZELINEAR, 0, NULL), nd = node(OP_DEQUANTIZELINEAR, 0, NULL);
    ASSERT_EQ(run3(&nq, &t, x, &s, &scale, &zt, &zp, &qt, q), 0);
    ASSERT_EQ(run3(&nd, &qt, q, &s, &scale, &zt, &zp, &t, dq), 0);
    graph_attr at[] = {attr_f("scale", scale), attr_f("zero_point", 3), attr_f("qmin", 0),
                       attr_f("qmax", 255)};
    graph_node nf = node(OP_FAKEQUANT, 4, at);
    ASSERT_EQ(run1f(&nf, &t, x, &t, fq), 0);
    for (int i = 0; i < 6; i++)
        ASSERT_EQ(fq[i] == dq[i], 1);
    ASSERT_NEAR(fq[4], 25.2f, 1e-5); /* saturated at 255: (255 - 3) * 0.1 */
    ASSERT_NEAR(fq[5], -0.3f, 1e-6); /* saturated at 0 */
    /* the post-op form gives the same bits */
    graph_node nr = node(OP_RELU, 0, NULL);
    nr.npost = 1;
    nr.post[0] = (graph_post){.kind = POST_FAKEQUANT, .a = scale, .b = 3, .c = 0, .d = 255};
    float pq[6];
    const float xr[6] = {0.05f, 0.15f, 0.0f, 3.0f, 100.0f, 0.0f};
    ASSERT_EQ(run1f(&nr, &t, x, &t, pq), 0);
    ASSERT_EQ(run1f(&nf, &t, xr, &t, fq), 0);
    for (int i = 0; i < 6; i++)
        ASSERT_EQ(pq[i] == fq[i], 1);
    /* missing attributes are an error */
    graph_node nb = node(OP_FAKEQUANT, 1, at);
    ASSERT_EQ(run1f(&nb, &t, x, &t, fq), TDM_ERR_INVALID);
}

/* ------------------------------------------------------------------------ */
/* Conv                                                                      */
/* ------------------------------------------------------------------------ */

TEST(conv_by_hand)
{
    /* 1x1x3x3 input, one 2x2 filter, bias 0.5, no padding */
    graph_tensor x = tensor(TDM_DTYPE_FLOAT, 4, DIMS(1, 1, 3, 3));
    graph_tensor w = tensor(TDM_DTYPE_FLOAT, 4, DIMS(1, 1, 2, 2));
    graph_tensor b = tensor(TDM_DTYPE_FLOAT, 1, DIMS(1));
    graph_tensor y = tensor(TDM_DTYPE_FLOAT, 4, DIMS(1, 1, 2, 2));
    const float xd[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, wd[4] = {1, 0, 0, -1}, bd[1] = {0.5f};
    float yd[9];
    graph_node n = node(OP_CONV, 0, NULL);
    ASSERT_EQ(run3(&n, &x, xd, &w, wd, &b, bd, &y, yd), 0);
    ASSERT_FLOATS(yd, -3.5f, -3.5f, -3.5f, -3.5f);

    /* pads 1 with dilation 2: a 3x3 output, taps 2 apart */
    graph_attr at[] = {ATTR_INTS_("pads", 1, 1, 1, 1), ATTR_INTS_("dilations", 2, 2)};
    n = node(OP_CONV, 2, at);
    graph_tensor y3 = tensor(TDM_DTYPE_FLOAT, 4, DIMS(1, 1, 3, 3));
    ASSERT_EQ(run2(&n, &x, xd, &w, wd, &y3, yd), 0);
    /* y[i][j] = x[i-1][j-1] - x[i+1][j+1], outside = 0 */
    ASSERT_FLOATS(yd, -5, -6, 0, -8, -8, 2, 0, 4, 5);

    /* stride 2 with pads 1: 2x2 output */
    graph_attr as[] = {ATTR_INTS_("pads", 1, 1, 1, 1), ATTR_INTS_("strides", 2, 2)};
    n = node(OP_CONV, 2, as);
    ASSERT_EQ(run2(&n, &x, xd, &w, wd, &y, yd), 0);
    /* windows at (-1,-1), (-1,1), (1,-1), (1,1): w00 * x[r][c] - w11 * x[r+1][c+1] */
    ASSERT_FLOATS(yd, -1, -3, -7, -4);

    /* a wrong output shape is caught, not overrun */
    n = node(OP_CONV, 0, NULL);
    ASSERT_EQ(run2(&n, &x, xd, &w, wd, &y3, yd), TDM_ERR_INVALID);
}

TEST(conv_auto_pad)
{
    /* 1x1x1x4 input, 1x2 kernel, stride 1: SAME pads 1 in total along W */
    graph_tensor x = tensor(TDM_DTYPE_FLOAT, 4, DIMS(1, 1, 1, 4));
    graph_tensor w = tensor(TDM_DTYPE_FLOAT, 4, DIMS(1, 1, 1, 2));
    const float xd[4] = {1, 2, 3, 4}, wd[2] = {1, 10};
    float yd[4];
    graph_attr up[] = {attr_s("auto_pad", "SAME_UPPER")};
    graph_node n = node(OP_CONV, 1, up);
    ASSERT_EQ(run2(&n, &x, xd, &w, wd, &x, yd), 0);
    ASSERT_FLOATS(yd, 21, 32, 43, 4); /* extra pad at the end */
    graph_attr lo[] = {attr_s("auto_pad", "SAME_LOWER")};
    n = node(OP_CONV, 1, lo);
    ASSERT_EQ(run2(&n, &x, xd, &w, wd, &x, yd), 0);
    ASSERT_FLOATS(yd, 10, 21, 32, 43); /* extra pad at the start */
    graph_attr va[] = {attr_s("auto_pad", "VALID"), ATTR_INTS_("pads", 5, 5, 5, 5)};
    graph_tensor y = tensor(TDM_DTYPE_FLOAT, 4, DIMS(1, 1, 1, 3));
    n = node(OP_CONV, 2, va);
    ASSERT_EQ(run2(&n, &x, xd, &w, wd, &y, yd), 0);
    ASSERT_FLOATS(yd, 21, 32, 43);
    graph_attr bad[] = {attr_s("auto_pad", "SAME_MIDDLE")};
    n = node(OP_CONV, 1, bad);
    ASSERT_EQ(run2(&n, &x, xd, &w, wd, &x, yd), TDM_ERR_UNSUPPORTED);
}

/* y = conv(x, w) straight from the definition, one output at a time. */
static void conv_naive(const float *x, const float *w, const float *b, float *y, int64_t N,
                       int64_t C, int64_t H, int64_t W, int64_t M, int64_t G, int64_t KH,
                       int64_t KW, const int64_t *s, const int64_t *d, const int64_t *p, int64_t OH,
                       int64_t OW)
{
    int64_t Cg = C / G, Mg = M / G;
    for (int64_t n = 0; n < N; n++)
        for (int64_t m = 0; m < M; m++)
            for (int64_t oh = 0; oh < OH; oh++)
                for (int64_t ow = 0; ow < OW; ow++) {
                    double acc = b ? b[m] : 0.0;
                    for (int64_t c = 0; c < Cg; c++)
                        for (int64_t kh = 0; kh < KH; kh++)
                            for (int64_t kw = 0; kw < KW; kw++) {
                                int64_t ih = oh * s[0] - p[0] + kh * d[0];
                                int64_t iw = ow * s[1] - p[1] + kw * d[1];
                                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                                int64_t ci = (m / Mg) * Cg + c;
                                acc += (double)x[((n * C + ci) * H + ih) * W + iw] *
                                       w[((m * Cg + c) * KH + kh) * KW + kw];
                            }
                    y[((n * M + m) * OH + oh) * OW + ow] = (float)acc;
                }
}

TEST(conv_matches_definition)
{
    /* grouped, depthwise, strided, dilated, asymmetric pads, batch 2 */
    struct {
        int64_t N, C, H, W, M, G, KH, KW, s[2], d[2], p[4];
    } cases[] = {
        {2, 4, 7, 6, 6, 2, 3, 3, {2, 1}, {1, 2}, {1, 0, 2, 1}},
        {1, 6, 9, 9, 6, 6, 3, 3, {2, 2}, {1, 1}, {1, 1, 1, 1}}, /* depthwise */
        {1, 3, 8, 5, 5, 1, 1, 1, {1, 1}, {1, 1}, {0, 0, 0, 0}}, /* 1x1 */
        {1, 2, 10, 10, 4, 1, 3, 2, {3, 2}, {2, 3}, {2, 3, 0, 1}},
        {1, 3, 11, 11, 2, 1, 7, 7, {2, 2}, {1, 1}, {3, 3, 3, 3}}, /* ResNet's stem, small */
        /* input channels in fours (and a remainder), on every loop path */
        {1, 6, 6, 7, 3, 1, 3, 3, {1, 2}, {1, 1}, {1, 1, 1, 1}},
        {2, 8, 5, 5, 4, 1, 1, 1, {1, 1}, {1, 1}, {0, 0, 0, 0}},
        {1, 10, 9, 9, 4, 2, 3, 3, {2, 2}, {2, 1}, {2, 1, 0, 2}},
        {1, 12, 8, 8, 6, 3, 3, 3, {1, 1}, {1, 1}, {1, 1, 1, 1}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int64_t N = cases[c].N, C = cases[c].C, H = cases[c].H, W = cases[c].W;
        int64_t M = cases[c].M, G = cases[c].G, KH = cases[c].KH, KW = cases[c].KW;
        const int64_t *s = cases[c].s, *d = cases[c].d, *p = cases[c].p;
        int64_t OH = (H + p[0] + p[2] - ((KH - 1) * d[0] + 1)) / s[0] + 1;
        int64_t OW = (W + p[1] + p[3] - ((KW - 1) * d[1] + 1)) / s[1] + 1;
        int64_t nx = N * C * H * W, nw = M * (C / G) * KH * KW, ny = N * M * OH * OW;
        float *x = malloc((size_t)nx * sizeof *x), *w = malloc((size_t)nw * sizeof *w);
        float *b = malloc((size_t)M * sizeof *b), *y = malloc((size_t)ny * sizeof *y);
        float *r = malloc((size_t)ny * sizeof *r);
        for (int64_t i = 0; i < nx; i++)
            x[i] = frand();
        for (int64_t i = 0; i < nw; i++)
            w[i] = frand();
        for (int64_t i = 0; i < M; i++)
            b[i] = frand();
        conv_naive(x, w, b, r, N, C, H, W, M, G, KH, KW, s, d, p, OH, OW);
        graph_tensor xt = tensor(TDM_DTYPE_FLOAT, 4, DIMS(N, C, H, W));
        graph_tensor wt = tensor(TDM_DTYPE_FLOAT, 4, DIMS(M, C / G, KH, KW));
        graph_tensor bt = tensor(TDM_DTYPE_FLOAT, 1, DIMS(M));
        graph_tensor yt = tensor(TDM_DTYPE_FLOAT, 4, DIMS(N, M, OH, OW));
        graph_attr at[] = {attr_i("group", G), attr_ints("strides", 2, (int64_t *)s),
                           attr_ints("dilations", 2, (int64_t *)d),
                           attr_ints("pads", 4, (int64_t *)p)};
        graph_node n = node(OP_CONV, 4, at);
        int rc = run3(&n, &xt, x, &wt, w, &bt, b, &yt, y);
        int bad = -1;
        for (int64_t i = 0; !rc && i < ny && bad < 0; i++)
            if (fabsf(y[i] - r[i]) > 1e-4f) bad = (int)i;
        free(x);
        free(w);
        free(b);
        free(y);
        free(r);
        ASSERT_EQ(rc, 0);
        ASSERT_EQ(bad, -1);
    }
}

TEST(conv_1d_and_channel_errors)
{
    graph_tensor x = tensor(TDM_DTYPE_FLOAT, 3, DIMS(1, 1, 4));
    graph_tensor w = tensor(TDM_DTYPE_FLOAT, 3, DIMS(1, 1, 3));
    graph_tensor y = tensor(TDM_DTYPE_FLOAT, 3, DIMS(1, 1, 4));
    const float xd[4] = {1, 2, 3, 4}, wd[3] = {1, 1, 1};
    float yd[4];
    graph_attr at[] = {ATTR_INTS_("pads", 1, 1)};
    graph_node n = node(OP_CONV, 1, at);
    ASSERT_EQ(run2(&n, &x, xd, &w, wd, &y, yd), 0);
    ASSERT_FLOATS(yd, 3, 6, 9, 7);
    /* group 2 with one input channel cannot work */
    graph_attr g2[] = {ATTR_INTS_("pads", 1, 1), attr_i("group", 2)};
    n = node(OP_CONV, 2, g2);
    ASSERT_EQ(run2(&n, &x, xd, &w, wd, &y, yd), TDM_ERR_INVALID);
}

TEST(conv_post_ops)
{
    /* 1x1 conv (scale by 2), then + addend, then Relu, then Clip at 5 */
    graph_tensor x = tensor(TDM_DTYPE_FLOAT, 4, DIMS(1, 1, 2, 2));
    graph_tensor w = tensor(TDM_DTYPE_FLOAT, 4, DIMS(1, 1, 1, 1));
    const float xd[4] = {-1, 1, 2, 3}, wd[1] = {2}, add[4] = {0.5f, -5, 0, 1};
    float yd[4];
    graph_node n = node(OP_CONV, 0, NULL);
    n.npost = 3;
    n.post[0] = (graph_post){.kind = POST_SUM, .input = 3};
    n.post[1] = (graph_post){.kind = POST_RELU};
    n.post[2] = (graph_post){.kind = POST_CLIP, .a = -INFINITY, .b = 5.0f};
    const graph_tensor *in[4] = {&x, &w, NULL, &x};
    const void *ind[4] = {xd, wd, NULL, add};
    ASSERT_EQ(run(&n, 4, in, ind, &x, yd), 0);
    ASSERT_FLOATS(yd, 0, 0, 4, 5);
    /* an addend that is not there */
    n.post[0].input = 2;
    ASSERT_EQ(run(&n, 4, in, ind, &x, yd), TDM_ERR_INVALID);
}

/* ------------------------------------------------------------------------ */
/* Pools                                                                     */
/* ------------------------------------------------------------------------ */

TEST(maxpool)
{
    graph_tensor x = tensor(TDM_DTYPE_FLOAT, 4, DIMS(1, 1, 4, 4));
    const float xd[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    float yd[16];
    graph_attr at[] = {ATTR_INTS_("kernel_shape", 2, 2), ATTR_INTS_("strides", 2, 2)};
    graph_node n = node(OP_MAXPOOL, 2, at);
    graph_tensor y = tensor(TDM_DTYPE_FLOAT, 4, DIMS(1, 1, 2, 2));
    ASSERT_EQ(run1f(&n, &x, xd, &y, yd), 0);
    ASSERT_FLOATS(yd, 6, 8, 14, 16);
    /* ResNet's: 3x3, stride 2, pads 1 */
    graph_attr rn[] = {ATTR_INTS_("kernel_shape", 3, 3), ATTR_INTS_("strides", 2, 2),
                       ATTR_INTS_("pads", 1, 1, 1, 1)};
    n = node(OP_MAXPOOL, 3, rn);
    ASSERT_EQ(run1f(&n, &x, xd, &y, yd), 0);
    ASSERT_FLOATS(yd, 6, 8, 14, 16);
    /* ceil_mode on a 3x3 input, 2x2 stride 2: the last window is partial */
    graph_tensor x3 = tensor(TDM_DTYPE_FLOAT, 4, DIMS(1, 1, 3, 3));
    const float x3d[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    graph_attr cm[] = {ATTR_INTS_("kernel_shape", 2, 2), ATTR_INTS_("strides", 2, 2),
                       attr_i("ceil_mode", 1)};
    n = node(OP_MAXPOOL, 3, cm);
    ASSERT_EQ(run1f(&n, &x3, x3d, &y, yd), 0);
    ASSERT_FLOATS(yd, 5, 6, 8, 9);
    /* without ceil_mode the same output shape is refused */
    n = node(OP_MAXPOOL, 2, cm);
    ASSERT_EQ(run1f(&n, &x3, x3d, &y, yd), TDM_ERR_INVALID);
    /* dilation 2 over 4x4: 2x2 window taps 2 apart, stride 1 -> 2x2 */
    graph_attr di[] = {ATTR_INTS_("kernel_shape", 2, 2), ATTR_INTS_("dilations", 2, 2)};
    n = node(OP_MAXPOOL, 2, di);
    ASSERT_EQ(run1f(&n, &x, xd, &y, yd), 0);
    ASSERT_FLOATS(yd, 11, 12, 15, 16);
    /* negative values with padding: the pad never wins */
    const float neg[9] = {-1, -2, -3, -4, -5, -6, -7, -8, -9};
    graph_attr pd[] = {ATTR_INTS_("kernel_shape", 2, 2), ATTR_INTS_("strides", 2, 2),
                       ATTR_INTS_("pads", 1, 1, 0, 0)};
    n = node(OP_MAXPOOL, 3, pd);
    ASSERT_EQ(run1f(&n, &x3, neg, &y, yd), 0);
    ASSERT_FLOATS(yd, -1, -2, -4, -5);
}

TEST(avgpool_padding_and_ceil)
{
    graph_tensor x = tensor(TDM_DTYPE_FLOAT, 4, DIMS(1, 1, 3, 3));
    const float xd[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    float yd[9];
    graph_attr ex[] = {ATTR_INTS_("kernel_shape", 3, 3), ATTR_INTS_("pads", 1, 1, 1, 1)};
    graph_node n = node(OP_AVGPOOL, 2, ex);
    ASSERT_EQ(run1f(&n, &x, xd, &x, yd), 0);
    /* count_include_pad 0: mean of the real elements only */
    ASSERT_FLOATS(yd, 3, 3.5f, 4, 4.5f, 5, 5.5f, 6, 6.5f, 7);
    graph_attr in[] = {ATTR_INTS_("kernel_shape", 3, 3), ATTR_INTS_("pads", 1, 1, 1, 1),
                       attr_i("count_include_pad", 1)};
    n = node(OP_AVGPOOL, 3, in);
    ASSERT_EQ(run1f(&n, &x, xd, &x, yd), 0);
    ASSERT_FLOATS(yd, 12.0f / 9, 21.0f / 9, 16.0f / 9, 27.0f / 9, 5, 33.0f / 9, 24.0f / 9,
                  39.0f / 9, 28.0f / 9);
    /* ceil_mode with count_include_pad: positions past the pads are not counted */
    graph_attr cm[] = {ATTR_INTS_("kernel_shape", 2, 2), ATTR_INTS_("strides", 2, 2),
                       attr_i("ceil_mode", 1), attr_i("count_include_pad", 1)};
    graph_tensor y = tensor(TDM_DTYPE_FLOAT, 4, DIMS(1, 1, 2, 2));
    n = node(OP_AVGPOOL, 4, cm);
    ASSERT_EQ(run1f(&n, &x, xd, &y, yd), 0);
    ASSERT_FLOATS(yd, 3, 4.5f, 7.5f, 9);
    /* MobileNet-v1-style global window as AveragePool */
    graph_attr gl[] = {ATTR_INTS_("kernel_shape", 3, 3)};
    graph_tensor y1 = tensor(TDM_DTYPE_FLOAT, 4, DIMS(1, 1, 1, 1));
    n = node(OP_AVGPOOL, 1, gl);
    ASSERT_EQ(run1f(&n, &x, xd, &y1, yd), 0);
    ASSERT_FLOATS(yd, 5);
    /* no kernel_shape: refused */
    n = node(OP_AVGPOOL, 0, NULL);
    ASSERT_EQ(run1f(&n, &x, xd, &y1, yd), TDM_ERR_INVALID);
}

/* Average pooling straight from the definition, for random configurations. */
TEST(pools_match_definition)
{
    for (int c = 0; c < 24; c++) {
        int64_t H = 5 + c % 4, W = 4 + c % 5, k0 = 1 + c % 3, k1 = 2 + c % 2, s0 = 1 + c % 2,
                s1 = 1 + (c / 2) % 3, pb0 = c % 2, pb1 = (c / 3) % 2, pe0 = (c / 4) % 2,
                pe1 = c % 2;
        if (pb0 >= k0) pb0 = 0;
        if (pe0 >= k0) pe0 = 0;
        if (pb1 >= k1) pb1 = 0;
        if (pe1 >= k1) pe1 = 0;
        bool ceil = c % 3 == 0, incl = c % 5 < 2, is_max = c % 4 == 3;
        int64_t r0 = H + pb0 + pe0 - k0, r1 = W + pb1 + pe1 - k1;
        int64_t OH = (ceil ? (r0 + s0 - 1) / s0 : r0 / s0) + 1;
        int64_t OW = (ceil ? (r1 + s1 - 1) / s1 : r1 / s1) + 1;
        float x[8 * 8], y[64], r[64];
        for (int i = 0; i < H * W; i++)
            x[i] = frand();
        for (int64_t oh = 0; oh < OH; oh++)
            for (int64_t ow = 0; ow < OW; ow++) {
                double acc = is_max ? -INFINITY : 0;
                int cnt = 0, padded = 0;
                for (int64_t kh = 0; kh < k0; kh++)
                    for (int64_t kw = 0; kw < k1; kw++) {
                        int64_t ih = oh * s0 - pb0 + kh, iw = ow * s1 - pb1 + kw;
                        if (ih < H + pe0 && iw < W + pe1) padded++;
                        if (ih < 0 || iw < 0 || ih >= H || iw >= W) continue;
                        cnt++;
                        if (is_max)
                            acc = fmax(acc, x[ih * W + iw]);
                        else
                            acc += x[ih * W + iw];
                    }
                int div = incl ? padded : cnt;
                r[oh * OW + ow] = is_max ? (float)acc : div ? (float)(acc / div) : 0.0f;
            }
        graph_tensor xt = tensor(TDM_DTYPE_FLOAT, 4, DIMS(1, 1, H, W));
        graph_tensor yt = tensor(TDM_DTYPE_FLOAT, 4, DIMS(1, 1, OH, OW));
        graph_attr at[] = {attr_ints("kernel_shape", 2, INTS(k0, k1)),
                           attr_ints("strides", 2, INTS(s0, s1)),
                           attr_ints("pads", 4, INTS(pb0, pb1, pe0, pe1)),
                           attr_i("ceil_mode", ceil), attr_i("count_include_pad", incl)};
        graph_node n = node(is_max ? OP_MAXPOOL : OP_AVGPOOL, 5, at);
        ASSERT_EQ(run1f(&n, &xt, x, &yt, y), 0);
        /* a ceil_mode window wholly past the input is -inf for max pooling,
         * 0 for average pooling (nothing to average) */
        for (int64_t i = 0; i < OH * OW; i++)
            if (y[i] != r[i]) ASSERT_NEAR(y[i], r[i], 1e-5);
    }
}

TEST(global_pools)
{
    graph_tensor x = tensor(TDM_DTYPE_FLOAT, 4, DIMS(1, 2, 2, 2));
    graph_tensor y = tensor(TDM_DTYPE_FLOAT, 4, DIMS(1, 2, 1, 1));
    const float xd[8] = {1, 2, 3, 6, -1, -2, -3, -4};
    float yd[2];
    graph_node n = node(OP_GLOBALAVGPOOL, 0, NULL);
    ASSERT_EQ(run1f(&n, &x, xd, &y, yd), 0);
    ASSERT_FLOATS(yd, 3, -2.5f);
    n = node(OP_GLOBALMAXPOOL, 0, NULL);
    ASSERT_EQ(run1f(&n, &x, xd, &y, yd), 0);
    ASSERT_FLOATS(yd, 6, -1);
}

/* ------------------------------------------------------------------------ */
/* Gemm, MatMul, BatchNormalization, Softmax                                 */
/* ------------------------------------------------------------------------ */

TEST(gemm_forms)
{
    /* A 2x3, B 3x2 -> 2x2 */
    graph_tensor a = tensor(TDM_DTYPE_FLOAT, 2, DIMS(2, 3)),
                 b = tensor(TDM_DTYPE_FLOAT, 2, DIMS(3, 2));
    graph_tensor y = tensor(TDM_DTYPE_FLOAT, 2, DIMS(2, 2));
    const float ad[6] = {1, 2, 3, 4, 5, 6}, bd[6] = {1, 0, 0, 1, 1, 1};
    float yd[4];
    graph_node n = node(OP_GEMM, 0, NULL);
    ASSERT_EQ(run2(&n, &a, ad, &b, bd, &y, yd), 0);
    ASSERT_FLOATS(yd, 4, 5, 10, 11);
    /* transB (the classifier layout), C of [N], alpha, beta */
    graph_tensor bt = tensor(TDM_DTYPE_FLOAT, 2, DIMS(2, 3)),
                 c = tensor(TDM_DTYPE_FLOAT, 1, DIMS(2));
    const float btd[6] = {1, 0, 1, 0, 1, 1}, cd[2] = {100, 200};
    graph_attr at[] = {attr_i("transB", 1), attr_f("alpha", 2.0f), attr_f("beta", 0.5f)};
    n = node(OP_GEMM, 3, at);
    ASSERT_EQ(run3(&n, &a, ad, &bt, btd, &c, cd, &y, yd), 0);
    ASSERT_FLOATS(yd, 58, 110, 70, 122);
    /* transA with C of [M, 1] */
    graph_tensor at32 = tensor(TDM_DTYPE_FLOAT, 2, DIMS(3, 2)),
                 cm = tensor(TDM_DTYPE_FLOAT, 2, DIMS(2, 1));
    const float atd[6] = {1, 4, 2, 5, 3, 6};
    graph_attr ta[] = {attr_i("transA", 1)};
    n = node(OP_GEMM, 1, ta);
    ASSERT_EQ(run3(&n, &at32, atd, &b, bd, &cm, cd, &y, yd), 0);
    ASSERT_FLOATS(yd, 104, 105, 210, 211);
    /* scalar C */
    graph_tensor cs = tensor(TDM_DTYPE_FLOAT, 0, NULL);
    n = node(OP_GEMM, 0, NULL);
    ASSERT_EQ(run3(&n, &a, ad, &b, bd, &cs, cd, &y, yd), 0);
    ASSERT_FLOATS(yd, 104, 105, 110, 111);
    /* C that does not broadcast */
    graph_tensor c3 = tensor(TDM_DTYPE_FLOAT, 1, DIMS(3));
    ASSERT_EQ(run3(&n, &a, ad, &b, bd, &c3, ad, &y, yd), TDM_ERR_INVALID);
    /* inner dims that differ */
    ASSERT_EQ(run2(&n, &a, ad, &a, ad, &y, yd), TDM_ERR_INVALID);
}

TEST(matmul_batched_broadcast)
{
    const float ad[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    const float bd[12] = {1, 0, 0, 1, 1, 1, 2, 0, 0, 2, 1, 1};
    float yd[16];
    graph_node n = node(OP_MATMUL, 0, NULL);
    /* [2,2,3] x [3,2]: B is shared */
    graph_tensor a = tensor(TDM_DTYPE_FLOAT, 3, DIMS(2, 2, 3));
    graph_tensor b = tensor(TDM_DTYPE_FLOAT, 2, DIMS(3, 2));
    graph_tensor y = tensor(TDM_DTYPE_FLOAT, 3, DIMS(2, 2, 2));
    ASSERT_EQ(run2(&n, &a, ad, &b, bd, &y, yd), 0);
    ASSERT_FLOATS(yd, 4, 5, 10, 11, 16, 17, 22, 23);
    /* [1,2,3] x [2,3,2]: A is shared, B's batches differ */
    graph_tensor a1 = tensor(TDM_DTYPE_FLOAT, 3, DIMS(1, 2, 3));
    graph_tensor b2 = tensor(TDM_DTYPE_FLOAT, 3, DIMS(2, 3, 2));
    ASSERT_EQ(run2(&n, &a1, ad, &b2, bd, &y, yd), 0);
    ASSERT_FLOATS(yd, 4, 5, 10, 11, 5, 7, 14, 16);
    /* 1-D on either side */
    graph_tensor v3 = tensor(TDM_DTYPE_FLOAT, 1, DIMS(3)), v2 = tensor(TDM_DTYPE_FLOAT, 1, DIMS(2));
    graph_tensor a23 = tensor(TDM_DTYPE_FLOAT, 2, DIMS(2, 3));
    ASSERT_EQ(run2(&n, &v3, ad, &b, bd, &v2, yd), 0);
    ASSERT_FLOATS(yd, 4, 5);
    ASSERT_EQ(run2(&n, &a23, ad, &v3, ad, &v2, yd), 0);
    ASSERT_FLOATS(yd, 14, 32);
    graph_tensor sc = tensor(TDM_DTYPE_FLOAT, 0, NULL);
    ASSERT_EQ(run2(&n, &v3, ad, &v3, ad, &sc, yd), 0);
    ASSERT_FLOATS(yd, 14);
    /* mismatched inner dims */
    ASSERT_EQ(run2(&n, &a23, ad, &a23, ad, &y, yd), TDM_ERR_INVALID);
}

TEST(batchnorm_inference)
{
    graph_tensor x = tensor(TDM_DTYPE_FLOAT, 4, DIMS(2, 2, 1, 2));
    graph_tensor c = tensor(TDM_DTYPE_FLOAT, 1, DIMS(2));
    const float xd[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    const float scale[2] = {1, 2}, bias[2] = {0, 1}, mean[2] = {1, 4}, var[2] = {4, 1};
    float yd[8];
    graph_attr at[] = {attr_f("epsilon", 0.0f)};
    graph_node n = node(OP_BATCHNORM, 1, at);
    const graph_tensor *in[5] = {&x, &c, &c, &c, &c};
    const void *ind[5] = {xd, scale, bias, mean, var};
    ASSERT_EQ(run(&n, 5, in, ind, &x, yd), 0);
    ASSERT_FLOATS(yd, 0, 0.5f, -1, 1, 2, 2.5f, 7, 9);
    /* default epsilon 1e-5 */
    n = node(OP_BATCHNORM, 0, NULL);
    ASSERT_EQ(run(&n, 5, in, ind, &x, yd), 0);
    ASSERT_NEAR(yd[1], 1.0f / sqrtf(4.00001f), 1e-7);
    /* a parameter of the wrong length */
    graph_tensor c3 = tensor(TDM_DTYPE_FLOAT, 1, DIMS(3));
    const float p3[3] = {1, 1, 1};
    const graph_tensor *bad[5] = {&x, &c, &c3, &c, &c};
    const void *badd[5] = {xd, scale, p3, mean, var};
    ASSERT_EQ(run(&n, 5, bad, badd, &x, yd), TDM_ERR_INVALID);
}

TEST(softmax_axis_forms)
{
    graph_tensor x = tensor(TDM_DTYPE_FLOAT, 3, DIMS(1, 2, 2));
    const float xd[4] = {0, 0, 0, 1000}; /* large: max subtraction must keep this finite */
    float yd[4];
    const float e = 1.0f / (1.0f + expf(-1000.0f));
    /* default axis -1: over the last dim */
    graph_node n = node(OP_SOFTMAX, 0, NULL);
    ASSERT_EQ(run1f(&n, &x, xd, &x, yd), 0);
    ASSERT_FLOATS(yd, 0.5f, 0.5f, 1 - e, e);
    /* axis 1 (opset 13): over dim 1, at stride 2 */
    graph_attr a1[] = {attr_i("axis", 1)};
    n = node(OP_SOFTMAX, 1, a1);
    const float xs[4] = {0, 1, 0, 3};
    ASSERT_EQ(run1f(&n, &x, xs, &x, yd), 0);
    ASSERT_FLOATS(yd, 0.5f, 1 / (1 + expf(2)), 0.5f, 1 / (1 + expf(-2)));
    /* axis 1 coerced to 2-D (opset < 13): over the last two dims together */
    graph_attr a2[] = {attr_i("axis", 1), attr_i("coerce_2d", 1)};
    n = node(OP_SOFTMAX, 2, a2);
    ASSERT_EQ(run1f(&n, &x, xs, &x, yd), 0);
    float z = 2 + expf(1) + expf(3);
    ASSERT_FLOATS(yd, 1 / z, expf(1) / z, 1 / z, expf(3) / z);
    graph_attr a9[] = {attr_i("axis", 3)};
    n = node(OP_SOFTMAX, 1, a9);
    ASSERT_EQ(run1f(&n, &x, xs, &x, yd), TDM_ERR_INVALID);
}

/* ------------------------------------------------------------------------ */
/* Data movement                                                             */
/* ------------------------------------------------------------------------ */

TEST(copies_and_dropout_mask)
{
    graph_tensor x = tensor(TDM_DTYPE_FLOAT, 2, DIMS(2, 3)),
                 y = tensor(TDM_DTYPE_FLOAT, 1, DIMS(6));
    graph_tensor sh = tensor(TDM_DTYPE_INT64, 1, DIMS(1));
    const float xd[6] = {1, 2, 3, 4, 5, 6};
    const int64_t shape[1] = {6};
    float yd[6];
    graph_node n = node(OP_RESHAPE, 0, NULL);
    ASSERT_EQ(run2(&n, &x, xd, &sh, shape, &y, yd), 0);
    ASSERT_FLOATS(yd, 1, 2, 3, 4, 5, 6);
    graph_op ops[] = {OP_FLATTEN, OP_SQUEEZE, OP_UNSQUEEZE, OP_IDENTITY};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        n = node(ops[i], 0, NULL);
        memset(yd, 0, sizeof yd);
        ASSERT_EQ(run1f(&n, &x, xd, &y, yd), 0);
        ASSERT_FLOATS(yd, 1, 2, 3, 4, 5, 6);
    }
    graph_tensor y5 = tensor(TDM_DTYPE_FLOAT, 1, DIMS(5));
    ASSERT_EQ(run1f(&n, &x, xd, &y5, yd), TDM_ERR_INVALID);
    /* Dropout's mask output is all true at inference */
    graph_tensor m = tensor(TDM_DTYPE_BOOL, 2, DIMS(2, 3));
    uint8_t md[6] = {0};
    n = node(OP_DROPOUT, 0, NULL);
    const graph_tensor *in[1] = {&x}, *outs[2] = {&x, &m};
    const void *ind[1] = {xd};
    void *outd[2] = {yd, md};
    ref_args a = {.nin = 1, .in = in, .in_data = ind, .nout = 2, .out = outs, .out_data = outd};
    ASSERT_EQ(ref_run(&n, &a, errbuf, sizeof errbuf), 0);
    ASSERT_INTS(md, 1, 1, 1, 1, 1, 1);
    ASSERT_FLOATS(yd, 1, 2, 3, 4, 5, 6);
}

TEST(transpose)
{
    graph_tensor x = tensor(TDM_DTYPE_FLOAT, 3, DIMS(1, 2, 3));
    const float xd[6] = {1, 2, 3, 4, 5, 6};
    float yd[6];
    graph_attr at[] = {ATTR_INTS_("perm", 0, 2, 1)};
    graph_node n = node(OP_TRANSPOSE, 1, at);
    graph_tensor y = tensor(TDM_DTYPE_FLOAT, 3, DIMS(1, 3, 2));
    ASSERT_EQ(run1f(&n, &x, xd, &y, yd), 0);
    ASSERT_FLOATS(yd, 1, 4, 2, 5, 3, 6);
    /* default: reversed dims */
    n = node(OP_TRANSPOSE, 0, NULL);
    graph_tensor yr = tensor(TDM_DTYPE_FLOAT, 3, DIMS(3, 2, 1));
    ASSERT_EQ(run1f(&n, &x, xd, &yr, yd), 0);
    ASSERT_FLOATS(yd, 1, 4, 2, 5, 3, 6);
    /* NHWC -> NCHW on uint8 */
    graph_tensor xu = tensor(TDM_DTYPE_UINT8, 4, DIMS(1, 2, 1, 3));
    graph_tensor yu = tensor(TDM_DTYPE_UINT8, 4, DIMS(1, 3, 2, 1));
    const uint8_t xud[6] = {1, 2, 3, 4, 5, 6};
    uint8_t yud[6];
    graph_attr nc[] = {ATTR_INTS_("perm", 0, 3, 1, 2)};
    n = node(OP_TRANSPOSE, 1, nc);
    const graph_tensor *in[1] = {&xu};
    const void *ind[1] = {xud};
    ASSERT_EQ(run(&n, 1, in, ind, &yu, yud), 0);
    ASSERT_INTS(yud, 1, 4, 2, 5, 3, 6);
    graph_attr bad[] = {ATTR_INTS_("perm", 0, 0, 1)};
    n = node(OP_TRANSPOSE, 1, bad);
    ASSERT_EQ(run1f(&n, &x, xd, &y, yd), TDM_ERR_INVALID);
}

TEST(concat_axes)
{
    graph_tensor a = tensor(TDM_DTYPE_INT64, 2, DIMS(2, 1)),
                 b = tensor(TDM_DTYPE_INT64, 2, DIMS(2, 2));
    graph_tensor y = tensor(TDM_DTYPE_INT64, 2, DIMS(2, 3));
    const int64_t ad[2] = {1, 2}, bd[4] = {3, 4, 5, 6};
    int64_t yd[6];
    graph_attr at[] = {attr_i("axis", -1)};
    graph_node n = node(OP_CONCAT, 1, at);
    ASSERT_EQ(run2(&n, &a, ad, &b, bd, &y, yd), 0);
    ASSERT_INTS(yd, 1, 3, 4, 2, 5, 6);
    /* axis 0, the shape-subgraph case: [1] ++ [1] */
    graph_tensor s = tensor(TDM_DTYPE_INT64, 1, DIMS(1)), s2 = tensor(TDM_DTYPE_INT64, 1, DIMS(2));
    const int64_t one = 1, m1 = -1;
    graph_attr a0[] = {attr_i("axis", 0)};
    n = node(OP_CONCAT, 1, a0);
    ASSERT_EQ(run2(&n, &s, &one, &s, &m1, &s2, yd), 0);
    ASSERT_INTS(yd, 1, -1);
    /* wrong total along the axis */
    ASSERT_EQ(run2(&n, &s, &one, &s2, ad, &s2, yd), TDM_ERR_INVALID);
}

TEST(pad_modes)
{
    graph_tensor x = tensor(TDM_DTYPE_FLOAT, 2, DIMS(2, 2));
    const float xd[4] = {1, 2, 3, 4};
    float yd[16];
    /* attribute form (opset < 11): one row above, one column right, value 9 */
    graph_attr at[] = {ATTR_INTS_("pads", 1, 0, 0, 1), attr_f("value", 9.0f)};
    graph_node n = node(OP_PAD, 2, at);
    graph_tensor y = tensor(TDM_DTYPE_FLOAT, 2, DIMS(3, 3));
    ASSERT_EQ(run1f(&n, &x, xd, &y, yd), 0);
    ASSERT_FLOATS(yd, 9, 9, 9, 1, 2, 9, 3, 4, 9);
    /* input form with a constant_value input */
    graph_tensor pt = tensor(TDM_DTYPE_INT64, 1, DIMS(4)), vt = tensor(TDM_DTYPE_FLOAT, 0, NULL);
    const int64_t pads[4] = {0, 1, 1, 0};
    const float v = -1.0f;
    n = node(OP_PAD, 0, NULL);
    ASSERT_EQ(run3(&n, &x, xd, &pt, pads, &vt, &v, &y, yd), 0);
    ASSERT_FLOATS(yd, -1, 1, 2, -1, 3, 4, -1, -1, -1);
    /* no value: zero */
    ASSERT_EQ(run2(&n, &x, xd, &pt, pads, &y, yd), 0);
    ASSERT_FLOATS(yd, 0, 1, 2, 0, 3, 4, 0, 0, 0);
    /* negative pads crop: drop the first row, add a column at the end */
    const int64_t crop[4] = {-1, 0, 0, 1};
    graph_tensor yc = tensor(TDM_DTYPE_FLOAT, 2, DIMS(1, 3));
    ASSERT_EQ(run2(&n, &x, xd, &pt, crop, &yc, yd), 0);
    ASSERT_FLOATS(yd, 3, 4, 0);
    /* edge and reflect along W by 2 on each side of [1,2,3] */
    graph_tensor x3 = tensor(TDM_DTYPE_FLOAT, 2, DIMS(1, 3)),
                 y7 = tensor(TDM_DTYPE_FLOAT, 2, DIMS(1, 7));
    const float x3d[3] = {1, 2, 3};
    const int64_t p2[4] = {0, 2, 0, 2};
    graph_attr ed[] = {attr_s("mode", "edge")};
    n = node(OP_PAD, 1, ed);
    ASSERT_EQ(run2(&n, &x3, x3d, &pt, p2, &y7, yd), 0);
    ASSERT_FLOATS(yd, 1, 1, 1, 2, 3, 3, 3);
    graph_attr rf[] = {attr_s("mode", "reflect")};
    n = node(OP_PAD, 1, rf);
    ASSERT_EQ(run2(&n, &x3, x3d, &pt, p2, &y7, yd), 0);
    ASSERT_FLOATS(yd, 3, 2, 1, 2, 3, 2, 1);
    /* uint8 with a uint8 value, as in the int8 models */
    graph_tensor xu = tensor(TDM_DTYPE_UINT8, 2, DIMS(1, 3)),
                 yu = tensor(TDM_DTYPE_UINT8, 2, DIMS(1, 7));
    graph_tensor vu = tensor(TDM_DTYPE_UINT8, 0, NULL);
    const uint8_t xud[3] = {1, 2, 3}, vud = 128;
    uint8_t yud[7];
    n = node(OP_PAD, 0, NULL);
    const graph_tensor *in[3] = {&xu, &pt, &vu};
    const void *ind[3] = {xud, p2, &vud};
    ASSERT_EQ(run(&n, 3, in, ind, &yu, yud), 0);
    ASSERT_INTS(yud, 128, 128, 1, 2, 3, 128, 128);
    /* a wrong output shape */
    ASSERT_EQ(run2(&n, &x, xd, &pt, pads, &y7, yd), TDM_ERR_INVALID);
}

TEST(shape_op)
{
    graph_tensor x = tensor(TDM_DTYPE_FLOAT, 4, DIMS(1, 3, 224, 224));
    graph_tensor y = tensor(TDM_DTYPE_INT64, 1, DIMS(4)), y2 = tensor(TDM_DTYPE_INT64, 1, DIMS(2));
    int64_t yd[4];
    float dummy = 0;
    graph_node n = node(OP_SHAPE, 0, NULL);
    ASSERT_EQ(run1f(&n, &x, &dummy, &y, (float *)yd), 0);
    ASSERT_INTS(yd, 1, 3, 224, 224);
    graph_attr at[] = {attr_i("start", 1), attr_i("end", -1)};
    n = node(OP_SHAPE, 2, at);
    ASSERT_EQ(run1f(&n, &x, &dummy, &y2, (float *)yd), 0);
    ASSERT_INTS(yd, 3, 224);
    ASSERT_EQ(run1f(&n, &x, &dummy, &y, (float *)yd), TDM_ERR_INVALID);
}

TEST(gather_indices)
{
    graph_tensor x = tensor(TDM_DTYPE_FLOAT, 2, DIMS(2, 3));
    const float xd[6] = {1, 2, 3, 4, 5, 6};
    float yd[6];
    /* axis 1, int64 indices with a negative one */
    graph_tensor it = tensor(TDM_DTYPE_INT64, 1, DIMS(2)),
                 y = tensor(TDM_DTYPE_FLOAT, 2, DIMS(2, 2));
    const int64_t idx[2] = {-1, 0};
    graph_attr at[] = {attr_i("axis", 1)};
    graph_node n = node(OP_GATHER, 1, at);
    ASSERT_EQ(run2(&n, &x, xd, &it, idx, &y, yd), 0);
    ASSERT_FLOATS(yd, 3, 1, 6, 4);
    /* axis 0, scalar int32 index: the shape-subgraph Gather */
    graph_tensor i0 = tensor(TDM_DTYPE_INT32, 0, NULL), y3 = tensor(TDM_DTYPE_FLOAT, 1, DIMS(3));
    const int32_t one = 1;
    n = node(OP_GATHER, 0, NULL);
    ASSERT_EQ(run2(&n, &x, xd, &i0, &one, &y3, yd), 0);
    ASSERT_FLOATS(yd, 4, 5, 6);
    const int32_t two = 2;
    ASSERT_EQ(run2(&n, &x, xd, &i0, &two, &y3, yd), TDM_ERR_INVALID);
}

TEST(slice_forms)
{
    graph_tensor x = tensor(TDM_DTYPE_FLOAT, 2, DIMS(2, 4));
    const float xd[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    float yd[8];
    graph_tensor v1 = tensor(TDM_DTYPE_INT64, 1, DIMS(1)), v2 = tensor(TDM_DTYPE_INT64, 1, DIMS(2));
    /* axis -1 from 1 to INT64_MAX step 2 */
    const int64_t st[1] = {1}, en[1] = {INT64_MAX}, ax[1] = {-1}, sp[1] = {2};
    graph_node n = node(OP_SLICE, 0, NULL);
    graph_tensor y = tensor(TDM_DTYPE_FLOAT, 2, DIMS(2, 2));
    const graph_tensor *in[5] = {&x, &v1, &v1, &v1, &v1};
    const void *ind[5] = {xd, st, en, ax, sp};
    ASSERT_EQ(run(&n, 5, in, ind, &y, yd), 0);
    ASSERT_FLOATS(yd, 2, 4, 6, 8);
    /* negative step: reverse both axes (ends below -dim clamp to -1) */
    const int64_t rs[2] = {-1, -1}, re[2] = {INT64_MIN, -100}, rst[2] = {-1, -1};
    const graph_tensor *rin[5] = {&x, &v2, &v2, NULL, &v2};
    const void *rind[5] = {xd, rs, re, NULL, rst};
    ASSERT_EQ(run(&n, 5, rin, rind, &x, yd), 0);
    ASSERT_FLOATS(yd, 8, 7, 6, 5, 4, 3, 2, 1);
    /* only starts and ends: axes 0..n-1, step 1 */
    const int64_t s0[1] = {1}, e0[1] = {2};
    graph_tensor y1 = tensor(TDM_DTYPE_FLOAT, 2, DIMS(1, 4));
    ASSERT_EQ(run3(&n, &x, xd, &v1, s0, &v1, e0, &y1, yd), 0);
    ASSERT_FLOATS(yd, 5, 6, 7, 8);
    /* opset < 10: attributes */
    graph_attr at[] = {ATTR_INTS_("starts", 0, -3), ATTR_INTS_("ends", 1, -1),
                       ATTR_INTS_("axes", 0, 1)};
    n = node(OP_SLICE, 3, at);
    ASSERT_EQ(run1f(&n, &x, xd, &y1, yd), TDM_ERR_INVALID); /* really 1x2 */
    graph_tensor y12 = tensor(TDM_DTYPE_FLOAT, 2, DIMS(1, 2));
    ASSERT_EQ(run1f(&n, &x, xd, &y12, yd), 0);
    ASSERT_FLOATS(yd, 2, 3);
    /* huge steps take one element, without overflow */
    const int64_t big[1] = {INT64_MAX}, small[1] = {INT64_MIN}, m1[1] = {-1};
    graph_tensor y21 = tensor(TDM_DTYPE_FLOAT, 2, DIMS(2, 1));
    n = node(OP_SLICE, 0, NULL);
    const void *bind[5] = {xd, st, en, ax, big};
    ASSERT_EQ(run(&n, 5, in, bind, &y21, yd), 0);
    ASSERT_FLOATS(yd, 2, 6);
    const void *sind[5] = {xd, m1, small, ax, small};
    ASSERT_EQ(run(&n, 5, in, sind, &y21, yd), 0);
    ASSERT_FLOATS(yd, 4, 8);
    /* step 0 */
    const int64_t zero[1] = {0};
    const void *zind[5] = {xd, st, en, ax, zero};
    n = node(OP_SLICE, 0, NULL);
    ASSERT_EQ(run(&n, 5, in, zind, &y, yd), TDM_ERR_INVALID);
}

TEST(cast_types)
{
    graph_tensor xf = tensor(TDM_DTYPE_FLOAT, 1, DIMS(6));
    const float xd[6] = {-1.7f, 2.9f, 0.0f, 300.0f, NAN, -0.2f};
    graph_tensor yi = tensor(TDM_DTYPE_INT64, 1, DIMS(6));
    int64_t yid[6];
    graph_attr at[] = {attr_i("to", TDM_DTYPE_INT64)};
    graph_node n = node(OP_CAST, 1, at);
    const graph_tensor *in[1] = {&xf};
    const void *ind[1] = {xd};
    ASSERT_EQ(run(&n, 1, in, ind, &yi, yid), 0);
    ASSERT_INTS(yid, -1, 2, 0, 300, 0, 0); /* truncation toward zero, NaN -> 0 */
    graph_tensor yb = tensor(TDM_DTYPE_BOOL, 1, DIMS(6));
    uint8_t ybd[6];
    graph_attr ab[] = {attr_i("to", TDM_DTYPE_BOOL)};
    n = node(OP_CAST, 1, ab);
    ASSERT_EQ(run(&n, 1, in, ind, &yb, ybd), 0);
    ASSERT_INTS(ybd, 1, 1, 0, 1, 1, 1);
    /* int64 -> float and int64 -> int32 */
    graph_tensor xi = tensor(TDM_DTYPE_INT64, 1, DIMS(3));
    const int64_t xid[3] = {-5, 1 << 20, 7};
    graph_tensor yf = tensor(TDM_DTYPE_FLOAT, 1, DIMS(3)),
                 y32 = tensor(TDM_DTYPE_INT32, 1, DIMS(3));
    float yfd[3];
    int32_t y32d[3];
    graph_attr af[] = {attr_i("to", TDM_DTYPE_FLOAT)};
    n = node(OP_CAST, 1, af);
    const graph_tensor *in2[1] = {&xi};
    const void *ind2[1] = {xid};
    ASSERT_EQ(run(&n, 1, in2, ind2, &yf, yfd), 0);
    ASSERT_FLOATS(yfd, -5, 1 << 20, 7);
    graph_attr a32[] = {attr_i("to", TDM_DTYPE_INT32)};
    n = node(OP_CAST, 1, a32);
    ASSERT_EQ(run(&n, 1, in2, ind2, &y32, y32d), 0);
    ASSERT_INTS(y32d, -5, 1 << 20, 7);
    /* uint8 -> float (the int8 models' input) */
    graph_tensor xu = tensor(TDM_DTYPE_UINT8, 1, DIMS(3));
    const uint8_t xud[3] = {0, 128, 255};
    n = node(OP_CAST, 1, af);
    const graph_tensor *in3[1] = {&xu};
    const void *ind3[1] = {xud};
    ASSERT_EQ(run(&n, 1, in3, ind3, &yf, yfd), 0);
    ASSERT_FLOATS(yfd, 0, 128, 255);
    /* "to" disagreeing with the output dtype */
    ASSERT_EQ(run(&n, 1, in2, ind2, &y32, y32d), TDM_ERR_UNSUPPORTED);
}

/* ------------------------------------------------------------------------ */
/* Refusals                                                                  */
/* ------------------------------------------------------------------------ */

TEST(refusals_are_clean)
{
    graph_tensor t = tensor(TDM_DTYPE_FLOAT, 1, DIMS(2)), ti = tensor(TDM_DTYPE_INT64, 1, DIMS(2));
    const float x[2] = {1, 2};
    float y[2];
    graph_node n = node(OP_CONSTANT, 0, NULL);
    ASSERT_EQ(run1f(&n, &t, x, &t, y), TDM_ERR_UNSUPPORTED);
    n = node(OP_UNKNOWN, 0, NULL);
    ASSERT_EQ(run1f(&n, &t, x, &t, y), TDM_ERR_UNSUPPORTED);
    n = node(OP_COUNT, 0, NULL);
    ASSERT_EQ(run1f(&n, &t, x, &t, y), TDM_ERR_UNSUPPORTED);
    /* Relu on int64: unsupported, and the message names the node and op */
    n = node(OP_RELU, 0, NULL);
    n.op_type = (char *)"Relu";
    const graph_tensor *in[1] = {&ti};
    const void *ind[1] = {x};
    ASSERT_EQ(run(&n, 1, in, ind, &ti, y), TDM_ERR_UNSUPPORTED);
    ASSERT(strstr(errbuf, "'n0'") && strstr(errbuf, "Relu"));
    /* missing input, missing data, unknown shape */
    ASSERT_EQ(run(&n, 0, NULL, NULL, &t, y), TDM_ERR_INVALID);
    const void *nod[1] = {NULL};
    const graph_tensor *tin[1] = {&t};
    ASSERT_EQ(run(&n, 1, tin, nod, &t, y), TDM_ERR_INVALID);
    graph_tensor unk = tensor(TDM_DTYPE_FLOAT, 1, DIMS(-1));
    ASSERT_EQ(run1f(&n, &unk, x, &t, y), TDM_ERR_INVALID);
    /* Conv missing its weight */
    n = node(OP_CONV, 0, NULL);
    ASSERT_EQ(run1f(&n, &t, x, &t, y), TDM_ERR_INVALID);
    /* a bad post-op addend index */
    n = node(OP_RELU, 0, NULL);
    n.npost = 1;
    n.post[0] = (graph_post){.kind = POST_SUM, .input = 7};
    ASSERT_EQ(run1f(&n, &t, x, &t, y), TDM_ERR_INVALID);
}

TEST_MAIN()
