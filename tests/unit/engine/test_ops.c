/*
 * ops: the op table, the load-time refusals (with their messages) and shape
 * inference for every op family, on small graphs built by hand.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "graph_build.h"
#include "ops.h"
#include "test.h"

/* ---- graph building helpers ------------------------------------------- */

static int node(graph *g, const char *name, graph_op op, int nin, const int *in, int out)
{
    return graph_add_node(g, name, ops_name(op), op, nin, in, 1, &out);
}

#define DIMS_EQ(t, ...)                                                                            \
    do {                                                                                           \
        const int64_t want_[] = {__VA_ARGS__};                                                     \
        int wr_ = (int)(sizeof want_ / sizeof want_[0]);                                           \
        ASSERT_EQ((t)->rank, wr_);                                                                 \
        for (int d_ = 0; d_ < wr_; d_++)                                                           \
            ASSERT_EQ((t)->dims[d_], want_[d_]);                                                   \
    } while (0)

/* ---- lookup ----------------------------------------------------------- */

TEST(lookup_names_round_trip)
{
    for (int op = OP_UNKNOWN + 1; op < OP_COUNT; op++) {
        if (op == OP_FAKEQUANT) continue;
        ASSERT_EQ(ops_lookup("", ops_name((graph_op)op)), op);
        ASSERT_EQ(ops_lookup("ai.onnx", ops_name((graph_op)op)), op);
    }
    ASSERT_EQ(ops_lookup(NULL, "Conv"), OP_CONV);
    ASSERT_STR_EQ(ops_name(OP_BATCHNORM), "BatchNormalization");
    ASSERT_STR_EQ(ops_name(OP_GLOBALAVGPOOL), "GlobalAveragePool");
}

TEST(lookup_refuses_other_domains_and_unknown_ops)
{
    ASSERT_EQ(ops_lookup("com.microsoft", "Conv"), OP_UNKNOWN);
    ASSERT_EQ(ops_lookup("ai.onnx.ml", "Relu"), OP_UNKNOWN);
    ASSERT_EQ(ops_lookup("", "LSTM"), OP_UNKNOWN);
    ASSERT_EQ(ops_lookup("", "conv"), OP_UNKNOWN);
    ASSERT_EQ(ops_lookup("", "FakeQuant"), OP_UNKNOWN);
    ASSERT_EQ(ops_lookup("", NULL), OP_UNKNOWN);
    ASSERT_STR_EQ(ops_name(OP_COUNT), "Unknown");
    ASSERT(ops_foldable(OP_CONV));
    ASSERT(!ops_foldable(OP_UNKNOWN));
}

/* ---- checks ----------------------------------------------------------- */

/* A Conv x[1,3,8,8] * w[4,3,3,3] -> y, for the refusal tests to spoil. */
static graph *conv_graph(int *conv)
{
    graph *g = graph_new();
    int x = tensor(g, "x", TDM_DTYPE_FLOAT, 4, (int64_t)1, (int64_t)3, (int64_t)8, (int64_t)8);
    int w = tensor(g, "w", TDM_DTYPE_FLOAT, 4, (int64_t)4, (int64_t)3, (int64_t)3, (int64_t)3);
    int y = tensor(g, "y", TDM_DTYPE_FLOAT, -1);
    int in[2] = {x, w};
    *conv = node(g, "c1", OP_CONV, 2, in, y);
    return g;
}

TEST(check_accepts_plain_conv)
{
    int c;
    graph *g = conv_graph(&c);
    attr_ints(g, c, "kernel_shape", 2, (int64_t[]){3, 3});
    attr_ints(g, c, "pads", 4, (int64_t[]){1, 1, 1, 1});
    attr_str(g, c, "auto_pad", "NOTSET");
    ASSERT_EQ(ops_check(g, c), 0);
    graph_free(g);
}

TEST(check_refuses_conv_auto_pad)
{
    int c;
    graph *g = conv_graph(&c);
    attr_str(g, c, "auto_pad", "SAME_WEIRD");
    ASSERT_EQ(ops_check(g, c), TDM_ERR_UNSUPPORTED);
    ASSERT(strstr(g->err, "node 'c1' (op Conv): ") == g->err);
    ASSERT(strstr(g->err, "SAME_WEIRD"));
    graph_free(g);
}

TEST(check_refuses_3d_conv)
{
    graph *g = graph_new();
    int x = tensor(g, "x", TDM_DTYPE_FLOAT, 5, (int64_t)1, (int64_t)3, (int64_t)8, (int64_t)8,
                   (int64_t)8);
    int w = tensor(g, "w", TDM_DTYPE_FLOAT, 5, (int64_t)4, (int64_t)3, (int64_t)3, (int64_t)3,
                   (int64_t)3);
    int y = tensor(g, "y", TDM_DTYPE_FLOAT, -1);
    int c = node(g, "c3d", OP_CONV, 2, (int[]){x, w}, y);
    ASSERT_EQ(ops_check(g, c), TDM_ERR_UNSUPPORTED);
    ASSERT(strstr(g->err, "node 'c3d' (op Conv)"));
    ASSERT(strstr(g->err, "2-D"));
    graph_free(g);
}

TEST(check_refuses_bad_conv_attrs)
{
    int c;
    graph *g = conv_graph(&c);
    attr_ints(g, c, "strides", 3, (int64_t[]){1, 1, 1});
    ASSERT_EQ(ops_check(g, c), TDM_ERR_UNSUPPORTED);
    ASSERT(strstr(g->err, "strides"));
    graph_free(g);

    g = conv_graph(&c);
    attr_int(g, c, "group", 0);
    ASSERT_EQ(ops_check(g, c), TDM_ERR_UNSUPPORTED);
    ASSERT(strstr(g->err, "group"));
    graph_free(g);

    g = conv_graph(&c);
    attr_ints(g, c, "kernel_shape", 2, (int64_t[]){5, 5});
    ASSERT_EQ(ops_check(g, c), TDM_ERR_UNSUPPORTED);
    ASSERT(strstr(g->err, "kernel_shape"));
    graph_free(g);
}

static graph *unary_graph(graph_op op, int *n)
{
    graph *g = graph_new();
    int x = tensor(g, "x", TDM_DTYPE_FLOAT, 4, (int64_t)1, (int64_t)3, (int64_t)8, (int64_t)8);
    int y = tensor(g, "y", TDM_DTYPE_FLOAT, -1);
    *n = node(g, "n", op, 1, &x, y);
    return g;
}

TEST(check_refuses_pool_attrs)
{
    int p;
    graph *g = unary_graph(OP_MAXPOOL, &p);
    ASSERT_EQ(ops_check(g, p), TDM_ERR_UNSUPPORTED); /* no kernel_shape */
    ASSERT(strstr(g->err, "kernel_shape"));
    attr_ints(g, p, "kernel_shape", 2, (int64_t[]){2, 2});
    ASSERT_EQ(ops_check(g, p), 0);
    attr_int(g, p, "storage_order", 1);
    ASSERT_EQ(ops_check(g, p), TDM_ERR_UNSUPPORTED);
    ASSERT(strstr(g->err, "node 'n' (op MaxPool): ") && strstr(g->err, "storage_order"));
    graph_free(g);

    g = unary_graph(OP_AVGPOOL, &p);
    attr_ints(g, p, "kernel_shape", 2, (int64_t[]){2, 2});
    attr_ints(g, p, "dilations", 2, (int64_t[]){2, 2});
    ASSERT_EQ(ops_check(g, p), TDM_ERR_UNSUPPORTED);
    ASSERT(strstr(g->err, "dilations"));
    graph_free(g);

    g = unary_graph(OP_AVGPOOL, &p);
    attr_ints(g, p, "kernel_shape", 2, (int64_t[]){2, 2});
    attr_int(g, p, "count_include_pad", 2);
    ASSERT_EQ(ops_check(g, p), TDM_ERR_UNSUPPORTED);
    graph_free(g);
}

TEST(check_refuses_misc)
{
    int n;
    graph *g = unary_graph(OP_PAD, &n);
    attr_str(g, n, "mode", "reflect");
    attr_ints(g, n, "pads", 8, (int64_t[]){0, 0, 1, 1, 0, 0, 1, 1});
    ASSERT_EQ(ops_check(g, n), TDM_ERR_UNSUPPORTED);
    ASSERT(strstr(g->err, "node 'n' (op Pad): ") && strstr(g->err, "reflect"));
    graph_free(g);

    g = unary_graph(OP_CAST, &n);
    attr_int(g, n, "to", 8); /* string */
    ASSERT_EQ(ops_check(g, n), TDM_ERR_UNSUPPORTED);
    ASSERT(strstr(g->err, "cast"));
    graph_free(g);

    g = unary_graph(OP_CAST, &n);
    ASSERT_EQ(ops_check(g, n), TDM_ERR_UNSUPPORTED); /* no 'to' */
    graph_free(g);

    g = unary_graph(OP_CONSTANT, &n); /* a Constant with an input */
    ASSERT_EQ(ops_check(g, n), TDM_ERR_UNSUPPORTED);
    ASSERT(strstr(g->err, "inputs"));
    graph_free(g);

    g = unary_graph(OP_UNKNOWN, &n);
    ASSERT_EQ(ops_check(g, n), TDM_ERR_UNSUPPORTED);
    graph_free(g);
}

TEST(check_refuses_reshape_allowzero_and_gemm_trans)
{
    graph *g = graph_new();
    int x = tensor(g, "x", TDM_DTYPE_FLOAT, 2, (int64_t)2, (int64_t)3);
    int s = const_i64(g, "s", 1, (int64_t[]){6});
    int y = tensor(g, "y", TDM_DTYPE_FLOAT, -1);
    int r = node(g, "r", OP_RESHAPE, 2, (int[]){x, s}, y);
    ASSERT_EQ(ops_check(g, r), 0);
    attr_int(g, r, "allowzero", 1);
    ASSERT_EQ(ops_check(g, r), TDM_ERR_UNSUPPORTED);
    ASSERT(strstr(g->err, "allowzero"));
    int z = tensor(g, "z", TDM_DTYPE_FLOAT, -1);
    int gm = node(g, "gm", OP_GEMM, 2, (int[]){x, x}, z);
    attr_int(g, gm, "transA", 2);
    ASSERT_EQ(ops_check(g, gm), TDM_ERR_UNSUPPORTED);
    ASSERT(strstr(g->err, "node 'gm' (op Gemm)"));
    graph_free(g);
}

TEST(check_arity_and_missing_inputs)
{
    graph *g = graph_new();
    int x = tensor(g, "x", TDM_DTYPE_FLOAT, 1, (int64_t)4);
    int y = tensor(g, "y", TDM_DTYPE_FLOAT, -1);
    int a = node(g, "add3", OP_ADD, 3, (int[]){x, x, x}, y);
    ASSERT_EQ(ops_check(g, a), TDM_ERR_UNSUPPORTED);
    ASSERT(strstr(g->err, "node 'add3' (op Add): 3 inputs"));
    int c = node(g, "conv", OP_CONV, 2, (int[]){x, -1}, y);
    ASSERT_EQ(ops_check(g, c), TDM_ERR_UNSUPPORTED);
    ASSERT(strstr(g->err, "missing"));
    graph_free(g);
}

TEST(check_clip_forms_follow_opset)
{
    graph *g = graph_new();
    int x = tensor(g, "x", TDM_DTYPE_FLOAT, 1, (int64_t)4);
    int lo = const_scalar(g, "lo", TDM_DTYPE_FLOAT, 0),
        hi = const_scalar(g, "hi", TDM_DTYPE_FLOAT, 6);
    int y = tensor(g, "y", TDM_DTYPE_FLOAT, -1);
    int c = node(g, "clip", OP_CLIP, 3, (int[]){x, lo, hi}, y);
    g->opset = 10;
    ASSERT_EQ(ops_check(g, c), TDM_ERR_UNSUPPORTED);
    ASSERT(strstr(g->err, "opset 11"));
    g->opset = 11;
    ASSERT_EQ(ops_check(g, c), 0);
    g->opset = 9;
    int c9 = node(g, "clip9", OP_CLIP, 1, &x, y);
    attr_float(g, c9, "min", 0.0f);
    attr_float(g, c9, "max", 6.0f);
    ASSERT_EQ(ops_check(g, c9), 0);
    graph_free(g);
}

TEST(check_qdq)
{
    graph *g = graph_new();
    int x = tensor(g, "x", TDM_DTYPE_FLOAT, 2, (int64_t)2, (int64_t)3);
    int s = const_scalar(g, "s", TDM_DTYPE_FLOAT, 0.5);
    int zp = const_scalar(g, "zp", TDM_DTYPE_INT64, 0);
    int y = tensor(g, "y", TDM_DTYPE_UINT8, -1);
    int q = node(g, "q", OP_QUANTIZELINEAR, 3, (int[]){x, s, zp}, y);
    ASSERT_EQ(ops_check(g, q), TDM_ERR_UNSUPPORTED);
    ASSERT(strstr(g->err, "zero point"));
    int q2 = node(g, "q2", OP_QUANTIZELINEAR, 2, (int[]){x, s}, y);
    ASSERT_EQ(ops_check(g, q2), 0);
    int dq = node(g, "dq", OP_DEQUANTIZELINEAR, 2, (int[]){x, s}, y); /* float input */
    ASSERT_EQ(ops_check(g, dq), TDM_ERR_UNSUPPORTED);
    graph_free(g);
}

TEST(check_gather_needs_constant_or_shape_data)
{
    graph *g = graph_new();
    int x = tensor(g, "x", TDM_DTYPE_FLOAT, 2, (int64_t)2, (int64_t)3);
    g->tensors[x].is_input = true;
    int i = const_i64(g, "i", 1, (int64_t[]){0});
    int y = tensor(g, "y", TDM_DTYPE_FLOAT, -1);
    int ga = node(g, "ga", OP_GATHER, 2, (int[]){x, i}, y);
    ASSERT_EQ(ops_check(g, ga), TDM_ERR_UNSUPPORTED);
    ASSERT(strstr(g->err, "node 'ga' (op Gather)"));
    int sh = tensor(g, "sh", TDM_DTYPE_INT64, -1);
    node(g, "shape", OP_SHAPE, 1, &x, sh);
    int z = tensor(g, "z", TDM_DTYPE_INT64, -1);
    int gb = node(g, "gb", OP_GATHER, 2, (int[]){sh, i}, z);
    ASSERT_EQ(ops_check(g, gb), 0);
    graph_free(g);
}

/* ---- shape inference -------------------------------------------------- */

TEST(infer_conv_and_pools)
{
    int c;
    graph *g = conv_graph(&c);
    attr_ints(g, c, "strides", 2, (int64_t[]){2, 2});
    attr_ints(g, c, "pads", 4, (int64_t[]){1, 1, 1, 1});
    ASSERT_EQ(ops_infer(g, c), 0);
    const graph_tensor *y = &g->tensors[g->nodes[c].outputs[0]];
    DIMS_EQ(y, 1, 4, 4, 4);
    ASSERT_EQ(y->dtype, TDM_DTYPE_FLOAT);
    graph_free(g);

    g = conv_graph(&c);
    attr_ints(g, c, "dilations", 2, (int64_t[]){2, 2}); /* effective kernel 5 */
    ASSERT_EQ(ops_infer(g, c), 0);
    DIMS_EQ(&g->tensors[g->nodes[c].outputs[0]], 1, 4, 4, 4);
    graph_free(g);

    g = conv_graph(&c);
    attr_str(g, c, "auto_pad", "SAME_UPPER");
    attr_ints(g, c, "strides", 2, (int64_t[]){3, 3});
    ASSERT_EQ(ops_infer(g, c), 0);
    DIMS_EQ(&g->tensors[g->nodes[c].outputs[0]], 1, 4, 3, 3);
    graph_free(g);

    g = conv_graph(&c);
    attr_int(g, c, "group", 3); /* 3 input channels cannot feed a weight expecting 9 */
    ASSERT_EQ(ops_infer(g, c), TDM_ERR_INVALID);
    ASSERT(strstr(g->err, "node 'c1' (op Conv)"));
    graph_free(g);

    int p;
    g = unary_graph(OP_MAXPOOL, &p);
    attr_ints(g, p, "kernel_shape", 2, (int64_t[]){3, 3});
    attr_ints(g, p, "strides", 2, (int64_t[]){2, 2});
    ASSERT_EQ(ops_infer(g, p), 0);
    DIMS_EQ(&g->tensors[g->nodes[p].outputs[0]], 1, 3, 3, 3);
    attr_int(g, p, "ceil_mode", 1);
    ASSERT_EQ(ops_infer(g, p), 0);
    DIMS_EQ(&g->tensors[g->nodes[p].outputs[0]], 1, 3, 4, 4);
    /* ceil_mode would start a 5th window at 8, past the input: dropped. */
    attr_ints(g, p, "pads", 4, (int64_t[]){0, 0, 2, 2});
    ASSERT_EQ(ops_infer(g, p), 0);
    DIMS_EQ(&g->tensors[g->nodes[p].outputs[0]], 1, 3, 4, 4);
    graph_free(g);

    g = unary_graph(OP_GLOBALAVGPOOL, &p);
    g->tensors[0].dims[0] = -1; /* batch not fixed yet */
    ASSERT_EQ(ops_infer(g, p), 0);
    DIMS_EQ(&g->tensors[g->nodes[p].outputs[0]], -1, 3, 1, 1);
    graph_free(g);
}

TEST(infer_broadcasting)
{
    graph *g = graph_new();
    int a = tensor(g, "a", TDM_DTYPE_FLOAT, 3, (int64_t)2, (int64_t)3, (int64_t)4);
    int b = tensor(g, "b", TDM_DTYPE_FLOAT, 2, (int64_t)3, (int64_t)1);
    int c = tensor(g, "c", TDM_DTYPE_FLOAT, 1, (int64_t)5);
    int s = tensor(g, "s", TDM_DTYPE_FLOAT, 0);
    int y1 = tensor(g, "y1", TDM_DTYPE_FLOAT, -1), y2 = tensor(g, "y2", TDM_DTYPE_FLOAT, -1),
        y3 = tensor(g, "y3", TDM_DTYPE_FLOAT, -1);
    int n1 = node(g, "add", OP_ADD, 2, (int[]){a, b}, y1);
    int n2 = node(g, "mul", OP_MUL, 2, (int[]){s, a}, y2);
    int n3 = node(g, "bad", OP_SUB, 2, (int[]){a, c}, y3);
    ASSERT_EQ(ops_infer(g, n1), 0);
    DIMS_EQ(&g->tensors[y1], 2, 3, 4);
    ASSERT_EQ(ops_infer(g, n2), 0);
    DIMS_EQ(&g->tensors[y2], 2, 3, 4);
    ASSERT_EQ(ops_infer(g, n3), TDM_ERR_INVALID);
    ASSERT(strstr(g->err, "node 'bad' (op Sub)") && strstr(g->err, "broadcast"));
    graph_free(g);
}

TEST(infer_matmul_and_gemm)
{
    graph *g = graph_new();
    int a = tensor(g, "a", TDM_DTYPE_FLOAT, 3, (int64_t)5, (int64_t)2, (int64_t)3);
    int b = tensor(g, "b", TDM_DTYPE_FLOAT, 2, (int64_t)3, (int64_t)7);
    int v = tensor(g, "v", TDM_DTYPE_FLOAT, 1, (int64_t)3);
    int w = tensor(g, "w", TDM_DTYPE_FLOAT, 2, (int64_t)10, (int64_t)3);
    int m2 = tensor(g, "m2", TDM_DTYPE_FLOAT, 2, (int64_t)4, (int64_t)3);
    int bias = tensor(g, "bias", TDM_DTYPE_FLOAT, 1, (int64_t)10);
    int y[4];
    for (int i = 0; i < 4; i++)
        y[i] = tensor(g, "y", TDM_DTYPE_FLOAT, -1);
    int n0 = node(g, "mm", OP_MATMUL, 2, (int[]){a, b}, y[0]);
    int n1 = node(g, "mv", OP_MATMUL, 2, (int[]){v, b}, y[1]);
    int n2 = node(g, "gemm", OP_GEMM, 3, (int[]){m2, w, bias}, y[2]);
    attr_int(g, n2, "transB", 1);
    int n3 = node(g, "bad", OP_MATMUL, 2, (int[]){b, b}, y[3]);
    ASSERT_EQ(ops_infer(g, n0), 0);
    DIMS_EQ(&g->tensors[y[0]], 5, 2, 7);
    ASSERT_EQ(ops_infer(g, n1), 0);
    DIMS_EQ(&g->tensors[y[1]], 7);
    ASSERT_EQ(ops_infer(g, n2), 0);
    DIMS_EQ(&g->tensors[y[2]], 4, 10);
    ASSERT_EQ(ops_infer(g, n3), TDM_ERR_INVALID);
    graph_free(g);
}

TEST(infer_reshape_flatten)
{
    graph *g = graph_new();
    int x = tensor(g, "x", TDM_DTYPE_FLOAT, 4, (int64_t)2, (int64_t)3, (int64_t)4, (int64_t)5);
    int s1 = const_i64(g, "s1", 3, (int64_t[]){0, -1, 5});
    int s2 = const_i64(g, "s2", 2, (int64_t[]){7, -1});
    int s3 = tensor(g, "s3", TDM_DTYPE_INT64, 1, (int64_t)2); /* not a constant */
    int y[6];
    for (int i = 0; i < 6; i++)
        y[i] = tensor(g, "y", TDM_DTYPE_FLOAT, -1);
    int r1 = node(g, "r1", OP_RESHAPE, 2, (int[]){x, s1}, y[0]);
    int r2 = node(g, "r2", OP_RESHAPE, 2, (int[]){x, s2}, y[1]);
    int r3 = node(g, "r3", OP_RESHAPE, 2, (int[]){x, s3}, y[2]);
    int f1 = node(g, "f1", OP_FLATTEN, 1, &x, y[3]);
    int f2 = node(g, "f2", OP_FLATTEN, 1, &x, y[4]);
    attr_int(g, f2, "axis", -1);
    int f3 = node(g, "f3", OP_FLATTEN, 1, &x, y[5]);
    attr_int(g, f3, "axis", 0);
    ASSERT_EQ(ops_infer(g, r1), 0);
    DIMS_EQ(&g->tensors[y[0]], 2, 12, 5);
    ASSERT_EQ(ops_infer(g, r2), TDM_ERR_INVALID); /* 120 is not a multiple of 7 */
    ASSERT_EQ(ops_infer(g, r3), TDM_ERR_INVALID);
    ASSERT(strstr(g->err, "constant"));
    ASSERT_EQ(ops_infer(g, f1), 0);
    DIMS_EQ(&g->tensors[y[3]], 2, 60);
    ASSERT_EQ(ops_infer(g, f2), 0);
    DIMS_EQ(&g->tensors[y[4]], 24, 5);
    ASSERT_EQ(ops_infer(g, f3), 0);
    DIMS_EQ(&g->tensors[y[5]], 1, 120);

    /* Unknown batch: 0 copies it, -1 cannot be resolved. */
    g->tensors[x].dims[0] = -1;
    ASSERT_EQ(ops_infer(g, r1), 0);
    DIMS_EQ(&g->tensors[y[0]], -1, -1, 5);
    graph_free(g);
}

TEST(infer_squeeze_unsqueeze_transpose)
{
    graph *g = graph_new();
    int x = tensor(g, "x", TDM_DTYPE_INT8, 4, (int64_t)2, (int64_t)1, (int64_t)3, (int64_t)1);
    int ax = const_i64(g, "ax", 2, (int64_t[]){-1, 1});
    int y[6];
    for (int i = 0; i < 6; i++)
        y[i] = tensor(g, "y", TDM_DTYPE_FLOAT, -1);
    int s1 = node(g, "s1", OP_SQUEEZE, 2, (int[]){x, ax}, y[0]);
    int s2 = node(g, "s2", OP_SQUEEZE, 1, &x, y[1]);
    attr_ints(g, s2, "axes", 1, (int64_t[]){3});
    int s3 = node(g, "s3", OP_SQUEEZE, 1, &x, y[2]);
    int u1 = node(g, "u1", OP_UNSQUEEZE, 2, (int[]){x, ax}, y[3]);
    int t1 = node(g, "t1", OP_TRANSPOSE, 1, &x, y[4]);
    attr_ints(g, t1, "perm", 4, (int64_t[]){0, 3, 1, 2});
    int t2 = node(g, "t2", OP_TRANSPOSE, 1, &x, y[5]);
    ASSERT_EQ(ops_infer(g, s1), 0);
    DIMS_EQ(&g->tensors[y[0]], 2, 3);
    ASSERT_EQ(g->tensors[y[0]].dtype, TDM_DTYPE_INT8);
    ASSERT_EQ(ops_infer(g, s2), 0);
    DIMS_EQ(&g->tensors[y[1]], 2, 1, 3);
    ASSERT_EQ(ops_infer(g, s3), 0);
    DIMS_EQ(&g->tensors[y[2]], 2, 3);
    ASSERT_EQ(ops_infer(g, u1), 0); /* axes -1 and 1 of a rank-6 output */
    DIMS_EQ(&g->tensors[y[3]], 2, 1, 1, 3, 1, 1);
    ASSERT_EQ(ops_infer(g, t1), 0);
    DIMS_EQ(&g->tensors[y[4]], 2, 1, 1, 3);
    ASSERT_EQ(ops_infer(g, t2), 0);
    DIMS_EQ(&g->tensors[y[5]], 1, 3, 1, 2);

    int bad = node(g, "bad", OP_SQUEEZE, 1, &x, y[0]);
    attr_ints(g, bad, "axes", 1, (int64_t[]){2});
    ASSERT_EQ(ops_infer(g, bad), TDM_ERR_INVALID);
    int badp = node(g, "badp", OP_TRANSPOSE, 1, &x, y[0]);
    attr_ints(g, badp, "perm", 4, (int64_t[]){0, 0, 1, 2});
    ASSERT_EQ(ops_infer(g, badp), TDM_ERR_INVALID);
    graph_free(g);
}

TEST(infer_concat_pad_shape_gather_slice_cast)
{
    graph *g = graph_new();
    int a = tensor(g, "a", TDM_DTYPE_FLOAT, 3, (int64_t)2, (int64_t)3, (int64_t)4);
    int b = tensor(g, "b", TDM_DTYPE_FLOAT, 3, (int64_t)2, (int64_t)5, (int64_t)4);
    int pads = const_i64(g, "pads", 6, (int64_t[]){0, 1, 2, 0, 3, 4});
    int idx = const_scalar(g, "idx", TDM_DTYPE_INT64, 1);
    int idx2 = const_i64(g, "idx2", 2, (int64_t[]){0, 2});
    int st = const_i64(g, "st", 2, (int64_t[]){-1, 0});
    int en = const_i64(g, "en", 2, (int64_t[]){INT64_MIN, 100});
    int axs = const_i64(g, "axs", 2, (int64_t[]){-1, 1});
    int stp = const_i64(g, "stp", 2, (int64_t[]){-1, 2});
    int y[8];
    for (int i = 0; i < 8; i++)
        y[i] = tensor(g, "y", TDM_DTYPE_FLOAT, -1);
    int cc = node(g, "cc", OP_CONCAT, 2, (int[]){a, b}, y[0]);
    attr_int(g, cc, "axis", -2);
    int pd = node(g, "pd", OP_PAD, 2, (int[]){a, pads}, y[1]);
    int sh = node(g, "sh", OP_SHAPE, 1, &a, y[2]);
    int sh2 = node(g, "sh2", OP_SHAPE, 1, &a, y[3]);
    attr_int(g, sh2, "start", -2);
    int ga = node(g, "ga", OP_GATHER, 2, (int[]){a, idx}, y[4]);
    int gb = node(g, "gb", OP_GATHER, 2, (int[]){a, idx2}, y[5]);
    attr_int(g, gb, "axis", 2);
    int sl = node(g, "sl", OP_SLICE, 5, (int[]){a, st, en, axs, stp}, y[6]);
    int ca = node(g, "ca", OP_CAST, 1, &a, y[7]);
    attr_int(g, ca, "to", TDM_DTYPE_INT32);

    ASSERT_EQ(ops_infer(g, cc), 0);
    DIMS_EQ(&g->tensors[y[0]], 2, 8, 4);
    ASSERT_EQ(ops_infer(g, pd), 0);
    DIMS_EQ(&g->tensors[y[1]], 2, 7, 10);
    ASSERT_EQ(ops_infer(g, sh), 0);
    DIMS_EQ(&g->tensors[y[2]], 3);
    ASSERT_EQ(g->tensors[y[2]].dtype, TDM_DTYPE_INT64);
    ASSERT_EQ(ops_infer(g, sh2), 0);
    DIMS_EQ(&g->tensors[y[3]], 2);
    ASSERT_EQ(ops_infer(g, ga), 0);
    DIMS_EQ(&g->tensors[y[4]], 3, 4);
    ASSERT_EQ(ops_infer(g, gb), 0);
    DIMS_EQ(&g->tensors[y[5]], 2, 3, 2);
    ASSERT_EQ(ops_infer(g, sl), 0); /* axis 2 reversed whole, axis 1 every other: 0, 2 */
    DIMS_EQ(&g->tensors[y[6]], 2, 2, 4);
    ASSERT_EQ(ops_infer(g, ca), 0);
    DIMS_EQ(&g->tensors[y[7]], 2, 3, 4);
    ASSERT_EQ(g->tensors[y[7]].dtype, TDM_DTYPE_INT32);

    int bad = node(g, "bad", OP_CONCAT, 2, (int[]){a, b}, y[0]);
    attr_int(g, bad, "axis", 0);
    ASSERT_EQ(ops_infer(g, bad), TDM_ERR_INVALID);
    graph_free(g);
}

TEST(infer_quantisation_dtypes)
{
    graph *g = graph_new();
    int x = tensor(g, "x", TDM_DTYPE_FLOAT, 2, (int64_t)2, (int64_t)3);
    int s = const_scalar(g, "s", TDM_DTYPE_FLOAT, 0.1);
    int zi = const_scalar(g, "zi", TDM_DTYPE_INT8, -3);
    int q8 = tensor(g, "q8", TDM_DTYPE_UNDEFINED, -1),
        qu = tensor(g, "qu", TDM_DTYPE_UNDEFINED, -1),
        dq = tensor(g, "dq", TDM_DTYPE_UNDEFINED, -1);
    int n1 = node(g, "q1", OP_QUANTIZELINEAR, 3, (int[]){x, s, zi}, q8);
    int n2 = node(g, "q2", OP_QUANTIZELINEAR, 2, (int[]){x, s}, qu);
    int n3 = node(g, "d1", OP_DEQUANTIZELINEAR, 3, (int[]){q8, s, zi}, dq);
    ASSERT_EQ(ops_infer(g, n1), 0);
    ASSERT_EQ(g->tensors[q8].dtype, TDM_DTYPE_INT8);
    DIMS_EQ(&g->tensors[q8], 2, 3);
    ASSERT_EQ(ops_infer(g, n2), 0);
    ASSERT_EQ(g->tensors[qu].dtype, TDM_DTYPE_UINT8);
    ASSERT_EQ(ops_infer(g, n3), 0);
    ASSERT_EQ(g->tensors[dq].dtype, TDM_DTYPE_FLOAT);

    /* Per-axis: 3 scales along axis 1 fit, along axis 0 they do not. */
    int64_t three = 3;
    int sv = graph_add_tensor(g, "sv", TDM_DTYPE_FLOAT, 1, &three);
    graph_set_data(g, sv, calloc(3, sizeof(float)), 3 * sizeof(float));
    int n4 = node(g, "q4", OP_QUANTIZELINEAR, 2, (int[]){x, sv}, qu);
    ASSERT_EQ(ops_infer(g, n4), 0);
    int n5 = node(g, "q5", OP_QUANTIZELINEAR, 2, (int[]){x, sv}, qu);
    attr_int(g, n5, "axis", 0);
    ASSERT_EQ(ops_infer(g, n5), TDM_ERR_INVALID);
    graph_free(g);
}

TEST(infer_constant_softmax_unknown_input)
{
    graph *g = graph_new();
    int y = tensor(g, "y", TDM_DTYPE_UNDEFINED, -1);
    int c = graph_add_node(g, "k", "Constant", OP_CONSTANT, 0, NULL, 1, &y);
    attr_ints(g, c, "value_ints", 3, (int64_t[]){1, 2, 3});
    ASSERT_EQ(ops_infer(g, c), 0);
    ASSERT_EQ(g->tensors[y].dtype, TDM_DTYPE_INT64);
    DIMS_EQ(&g->tensors[y], 3);

    int x = tensor(g, "x", TDM_DTYPE_FLOAT, 2, (int64_t)2, (int64_t)3);
    int z = tensor(g, "z", TDM_DTYPE_FLOAT, -1);
    int sm = node(g, "sm", OP_SOFTMAX, 1, &x, z);
    attr_int(g, sm, "axis", 2);
    ASSERT_EQ(ops_infer(g, sm), TDM_ERR_INVALID);

    int u = tensor(g, "u", TDM_DTYPE_FLOAT, -1);
    int r = node(g, "r", OP_RELU, 1, &u, z);
    ASSERT_EQ(ops_infer(g, r), TDM_ERR_INVALID);
    ASSERT(strstr(g->err, "node 'r' (op Relu)") && strstr(g->err, "unknown"));
    graph_free(g);
}

/* Hostile values must give an error, never an overflow (UBSan checks it). */
TEST(infer_refuses_overflowing_sizes)
{
    graph *g = graph_new();
    int x = tensor(g, "x", TDM_DTYPE_FLOAT, 2, (int64_t)4, (int64_t)6);
    int big = const_i64(g, "big", 3, (int64_t[]){INT64_MAX / 2, INT64_MAX / 2, 4});
    int bigm = const_i64(g, "bigm", 3, (int64_t[]){(int64_t)1 << 39, (int64_t)1 << 39, -1});
    int pads = const_i64(g, "pads", 4, (int64_t[]){0, INT64_MAX, 0, INT64_MAX});
    int st = const_i64(g, "st", 1, (int64_t[]){0});
    int en = const_i64(g, "en", 1, (int64_t[]){INT64_MAX});
    int ax = const_i64(g, "ax", 1, (int64_t[]){1});
    int stp = const_i64(g, "stp", 1, (int64_t[]){INT64_MAX});
    int stn = const_i64(g, "stn", 1, (int64_t[]){INT64_MIN});
    int y[5];
    for (int i = 0; i < 5; i++)
        y[i] = tensor(g, "y", TDM_DTYPE_FLOAT, -1);
    int r1 = node(g, "r1", OP_RESHAPE, 2, (int[]){x, big}, y[0]);
    int r2 = node(g, "r2", OP_RESHAPE, 2, (int[]){x, bigm}, y[1]);
    int p1 = node(g, "p1", OP_PAD, 2, (int[]){x, pads}, y[2]);
    int s1 = node(g, "s1", OP_SLICE, 5, (int[]){x, st, en, ax, stp}, y[3]);
    int s2 = node(g, "s2", OP_SLICE, 5, (int[]){x, en, st, ax, stn}, y[4]);
    ASSERT_EQ(ops_infer(g, r1), TDM_ERR_INVALID);
    ASSERT_EQ(ops_infer(g, r2), TDM_ERR_INVALID);
    ASSERT_EQ(ops_infer(g, p1), TDM_ERR_INVALID);
    ASSERT_EQ(ops_infer(g, s1), 0);
    DIMS_EQ(&g->tensors[y[3]], 4, 1);
    ASSERT_EQ(ops_infer(g, s2), 0); /* from the last element backwards, one step */
    DIMS_EQ(&g->tensors[y[4]], 4, 1);
    graph_free(g);

    int c;
    g = conv_graph(&c);
    attr_ints(g, c, "pads", 4, (int64_t[]){0, 0, INT64_MAX, 0});
    ASSERT_EQ(ops_check(g, c), TDM_ERR_UNSUPPORTED);
    ASSERT(strstr(g->err, "pads"));
    graph_free(g);
}

TEST_MAIN()
