/*
 * onnx_load: models built in the test with protobuf-c, packed to bytes and
 * loaded back (a correct load checked field by field, then one refusal per
 * rule: truncation, garbage, payload sizes, unknown ops, external data,
 * dangling names, cycles, limits, deep nesting), then the generated test
 * models and the real int8 models when they are present.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "onnx.pb-c.h"
#include "onnx_load.h"
#include "test.h"

/* ---- building ModelProtos ------------------------------------------------ */

/* A model under construction; everything hangs off fixed arrays so that one
 * free of the struct releases it. */
typedef struct mb {
    Onnx__ModelProto model;
    Onnx__OperatorSetIdProto opset;
    Onnx__OperatorSetIdProto *opsets[1];
    Onnx__GraphProto graph;
    Onnx__NodeProto nodes[16], *node_ptrs[16];
    Onnx__AttributeProto attrs[16], *attr_ptrs[16];
    int nattrs;
    Onnx__TensorProto inits[8], *init_ptrs[8];
    Onnx__ValueInfoProto vis[8], *in_ptrs[4], *out_ptrs[4];
    int nvis;
    Onnx__TypeProto types[8];
    Onnx__TypeProto__Tensor ttypes[8];
    Onnx__TensorShapeProto shapes[8];
    Onnx__TensorShapeProto__Dimension dims[8][4], *dim_ptrs[8][4];
    char *strs[64][4];
} mb;

static mb *mb_new(int64_t opset)
{
    mb *b = calloc(1, sizeof *b);
    onnx__model_proto__init(&b->model);
    onnx__operator_set_id_proto__init(&b->opset);
    onnx__graph_proto__init(&b->graph);
    b->opset.domain = (char *)"";
    b->opset.has_version = 1;
    b->opset.version = opset;
    b->opsets[0] = &b->opset;
    b->model.n_opset_import = 1;
    b->model.opset_import = b->opsets;
    b->model.has_ir_version = 1;
    b->model.ir_version = 7;
    b->model.graph = &b->graph;
    b->graph.node = b->node_ptrs;
    b->graph.initializer = b->init_ptrs;
    b->graph.input = b->in_ptrs;
    b->graph.output = b->out_ptrs;
    return b;
}

/* A ValueInfo of a float tensor; dims < 0 become a symbolic "N". */
static Onnx__ValueInfoProto *mb_vi(mb *b, const char *name, int elem, int rank, const int64_t *dims)
{
    int i = b->nvis++;
    Onnx__ValueInfoProto *vi = &b->vis[i];
    onnx__value_info_proto__init(vi);
    onnx__type_proto__init(&b->types[i]);
    onnx__type_proto__tensor__init(&b->ttypes[i]);
    onnx__tensor_shape_proto__init(&b->shapes[i]);
    vi->name = (char *)name;
    vi->type = &b->types[i];
    b->types[i].value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    b->types[i].tensor_type = &b->ttypes[i];
    b->ttypes[i].has_elem_type = 1;
    b->ttypes[i].elem_type = elem;
    if (rank >= 0) {
        b->ttypes[i].shape = &b->shapes[i];
        b->shapes[i].n_dim = (size_t)rank;
        b->shapes[i].dim = b->dim_ptrs[i];
        for (int k = 0; k < rank; k++) {
            Onnx__TensorShapeProto__Dimension *d = &b->dims[i][k];
            onnx__tensor_shape_proto__dimension__init(d);
            if (dims[k] >= 0) {
                d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
                d->dim_value = dims[k];
            } else {
                d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
                d->dim_param = (char *)"N";
            }
            b->dim_ptrs[i][k] = d;
        }
    }
    return vi;
}

static void mb_input(mb *b, const char *name, int rank, const int64_t *dims)
{
    b->in_ptrs[b->graph.n_input++] = mb_vi(b, name, 1, rank, dims);
}

static void mb_output(mb *b, const char *name)
{
    b->out_ptrs[b->graph.n_output++] = mb_vi(b, name, 1, -1, NULL);
}

static Onnx__TensorProto *mb_init(mb *b, const char *name, int dtype, int rank, int64_t *dims)
{
    Onnx__TensorProto *t = &b->inits[b->graph.n_initializer];
    onnx__tensor_proto__init(t);
    t->name = (char *)name;
    t->has_data_type = 1;
    t->data_type = dtype;
    t->n_dims = (size_t)rank;
    t->dims = dims;
    b->init_ptrs[b->graph.n_initializer++] = t;
    return t;
}

/* A node with up to 3 inputs and 1 output ("" for an omitted input). */
static Onnx__NodeProto *mb_node(mb *b, const char *name, const char *op, int nin, const char *in0,
                                const char *in1, const char *in2, const char *out)
{
    int i = (int)b->graph.n_node++;
    Onnx__NodeProto *n = &b->nodes[i];
    onnx__node_proto__init(n);
    n->name = (char *)name;
    n->op_type = (char *)op;
    n->n_input = (size_t)nin;
    n->input = b->strs[2 * i];
    n->input[0] = (char *)in0;
    n->input[1] = (char *)in1;
    n->input[2] = (char *)in2;
    n->n_output = 1;
    n->output = b->strs[2 * i + 1];
    n->output[0] = (char *)out;
    b->node_ptrs[i] = n;
    return n;
}

static Onnx__AttributeProto *mb_attr(mb *b, Onnx__NodeProto *n, const char *name,
                                     Onnx__AttributeProto__AttributeType type)
{
    Onnx__AttributeProto *a = &b->attrs[b->nattrs];
    onnx__attribute_proto__init(a);
    a->name = (char *)name;
    a->has_type = 1;
    a->type = type;
    if (!n->attribute) n->attribute = &b->attr_ptrs[b->nattrs];
    b->attr_ptrs[b->nattrs++] = a;
    n->n_attribute++;
    return a;
}

static uint8_t *mb_pack(const mb *b, size_t *len)
{
    *len = onnx__model_proto__get_packed_size(&b->model);
    uint8_t *buf = malloc(*len ? *len : 1);
    onnx__model_proto__pack(&b->model, buf);
    return buf;
}

/* Packs and loads; returns the status, *g on success, the message in err. */
static int mb_load(const mb *b, graph **g, char *err, size_t errlen)
{
    size_t len;
    uint8_t *buf = mb_pack(b, &len);
    err[0] = '\0';
    int rc = onnx_load(buf, len, g, err, errlen);
    free(buf);
    return rc;
}

/* The reference model: y = Reshape(Relu(Add(x, w)) * s, shape), where w is
 * raw_data, s uses float_data, shape comes from a Constant node, and the
 * nodes are listed out of order. */
static float w_vals[3] = {1.0f, -2.0f, 0.5f};
static float s_vals[1] = {3.0f};
static int64_t dims3[1] = {3}, dims_scalar[1] = {1};
static int64_t shape_vals[2] = {-1, 3};
static int64_t perm_vals[2] = {1, 0};

static mb *reference_model(void)
{
    mb *b = mb_new(13);
    int64_t xd[2] = {-1, 3};
    mb_input(b, "x", 2, xd);
    mb_input(b, "w", 1, dims3); /* also an initializer: a constant, not an input */
    mb_output(b, "y");
    Onnx__TensorProto *w = mb_init(b, "w", 1, 1, dims3);
    w->has_raw_data = 1;
    w->raw_data.len = sizeof w_vals;
    w->raw_data.data = (uint8_t *)w_vals;
    Onnx__TensorProto *s = mb_init(b, "s", 1, 1, dims_scalar);
    s->n_float_data = 1;
    s->float_data = s_vals;
    mb_node(b, "reshape", "Reshape", 2, "scaled", "shape", "", "y");
    Onnx__NodeProto *mul = mb_node(b, "", "Mul", 2, "relu_out", "s", "", "scaled");
    Onnx__AttributeProto *a = mb_attr(b, mul, "perm", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
    a->n_ints = 2;
    a->ints = perm_vals;
    a = mb_attr(b, mul, "alpha", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
    a->has_f = 1;
    a->f = 0.25f;
    a = mb_attr(b, mul, "mode", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING);
    a->has_s = 1;
    a->s.len = 4;
    a->s.data = (uint8_t *)"edge";
    mb_node(b, "relu", "Relu", 1, "sum", "", "", "relu_out");
    mb_node(b, "add", "Add", 2, "x", "w", "", "sum");
    Onnx__NodeProto *c = mb_node(b, "shape_const", "Constant", 0, "", "", "", "shape");
    a = mb_attr(b, c, "value_ints", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
    a->n_ints = 2;
    a->ints = shape_vals;
    return b;
}

static const graph_node *find_node(const graph *g, const char *name)
{
    for (int i = 0; i < g->nnodes; i++)
        if (strcmp(g->nodes[i].name, name) == 0) return &g->nodes[i];
    return NULL;
}

/* ---- a correct load --------------------------------------------------------- */

TEST(loads_reference_model)
{
    mb *b = reference_model();
    graph *g = NULL;
    char err[256];
    int rc = mb_load(b, &g, err, sizeof err);
    free(b);
    if (rc) TEST_FAIL_("load failed: %d %s", rc, err);
    ASSERT_EQ(g->opset, 13);
    ASSERT_EQ(g->ninputs, 1);
    const graph_tensor *x = &g->tensors[g->inputs[0]];
    ASSERT_STR_EQ(x->name, "x");
    ASSERT(x->is_input);
    ASSERT_EQ(x->dtype, TDM_DTYPE_FLOAT);
    ASSERT_EQ(x->rank, 2);
    ASSERT_EQ(x->dims[0], -1);
    ASSERT_EQ(x->dims[1], 3);
    ASSERT_EQ(g->noutputs, 1);
    ASSERT_STR_EQ(g->tensors[g->outputs[0]].name, "y");
    ASSERT(g->tensors[g->outputs[0]].is_output);

    int w = graph_find_tensor(g, "w");
    ASSERT(w >= 0);
    ASSERT(!g->tensors[w].is_input);
    ASSERT_EQ(g->tensors[w].nbytes, 12);
    ASSERT_NEAR(((float *)g->tensors[w].data)[1], -2.0, 0);
    int s = graph_find_tensor(g, "s");
    ASSERT_NEAR(((float *)g->tensors[s].data)[0], 3.0, 0);

    /* The Constant node is gone; its output is a constant. */
    ASSERT_EQ(g->nnodes, 4);
    ASSERT(find_node(g, "shape_const") == NULL);
    int sh = graph_find_tensor(g, "shape");
    ASSERT_EQ(g->tensors[sh].dtype, TDM_DTYPE_INT64);
    ASSERT_EQ(g->tensors[sh].rank, 1);
    ASSERT_EQ(g->tensors[sh].dims[0], 2);
    ASSERT_EQ(((int64_t *)g->tensors[sh].data)[0], -1);
    ASSERT_EQ(((int64_t *)g->tensors[sh].data)[1], 3);

    const graph_node *add = find_node(g, "add");
    ASSERT(add != NULL);
    ASSERT_EQ(add->op, OP_ADD);
    ASSERT_STR_EQ(add->op_type, "Add");
    ASSERT_EQ(add->inputs[0], g->inputs[0]);
    ASSERT_EQ(add->inputs[1], w);
    ASSERT_EQ(g->tensors[add->outputs[0]].producer, (int)(add - g->nodes));

    /* The unnamed Mul got a name from its op type and position. */
    const graph_node *mul = find_node(g, "Mul_1");
    ASSERT(mul != NULL);
    ASSERT_EQ(mul->op, OP_MUL);
    ASSERT_EQ(mul->nattrs, 3);
    const graph_attr *a = graph_attr_get(mul, "perm");
    ASSERT(a && a->type == ATTR_INTS && a->n == 2 && a->ints[0] == 1 && a->ints[1] == 0);
    ASSERT_NEAR(graph_attr_float(mul, "alpha", 0), 0.25, 0);
    ASSERT_STR_EQ(graph_attr_string(mul, "mode", ""), "edge");
    const graph_node *rs = find_node(g, "reshape");
    ASSERT_EQ(rs->op, OP_RESHAPE);
    ASSERT_EQ(rs->inputs[1], sh);
    ASSERT_EQ(g->tensors[rs->outputs[0]].producer, (int)(rs - g->nodes));
    ASSERT_STR_EQ(err, "");
    ASSERT_STR_EQ(g->err, "");
    graph_free(g);
}

TEST(loads_typed_payloads_and_tensor_attributes)
{
    mb *b = mb_new(11);
    int64_t one[1] = {1}, four[1] = {4}, two[1] = {2};
    mb_input(b, "x", 1, four);
    mb_output(b, "q");
    static int32_t u8[4] = {0, 17, 200, 255}, i8[2] = {-128, 127};
    static int64_t i64[2] = {-5, 1LL << 40};
    static uint8_t raw_i8[2] = {0x80, 0x7f};
    Onnx__TensorProto *t = mb_init(b, "u8", 2, 1, four);
    t->n_int32_data = 4;
    t->int32_data = u8;
    t = mb_init(b, "i8", 3, 1, two);
    t->n_int32_data = 2;
    t->int32_data = i8;
    t = mb_init(b, "i64", 7, 1, two);
    t->n_int64_data = 2;
    t->int64_data = i64;
    t = mb_init(b, "i8raw", 3, 1, two);
    t->has_raw_data = 1;
    t->raw_data.len = 2;
    t->raw_data.data = raw_i8;
    static int32_t zp[1] = {128};
    t = mb_init(b, "zp", 2, 0, one);
    t->n_int32_data = 1;
    t->int32_data = zp;
    static float scale[1] = {0.5f};
    t = mb_init(b, "scale", 1, 0, one);
    t->n_float_data = 1;
    t->float_data = scale;
    Onnx__NodeProto *n = mb_node(b, "quant", "QuantizeLinear", 3, "x", "scale", "zp", "q");
    /* A tensor-valued attribute becomes a constant the attribute points at. */
    static Onnx__TensorProto val;
    onnx__tensor_proto__init(&val);
    val.has_data_type = 1;
    val.data_type = 1;
    val.n_float_data = 1;
    val.float_data = scale;
    Onnx__AttributeProto *a = mb_attr(b, n, "value", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR);
    a->t = &val;
    graph *g = NULL;
    char err[256];
    int rc = mb_load(b, &g, err, sizeof err);
    free(b);
    if (rc) TEST_FAIL_("load failed: %d %s", rc, err);
    ASSERT_EQ(g->opset, 11);
    const graph_tensor *u = &g->tensors[graph_find_tensor(g, "u8")];
    ASSERT_EQ(u->dtype, TDM_DTYPE_UINT8);
    ASSERT_EQ(u->nbytes, 4);
    ASSERT_EQ(((uint8_t *)u->data)[2], 200);
    const graph_tensor *s8 = &g->tensors[graph_find_tensor(g, "i8")];
    ASSERT_EQ(((int8_t *)s8->data)[0], -128);
    ASSERT_EQ(((int8_t *)s8->data)[1], 127);
    const graph_tensor *r8 = &g->tensors[graph_find_tensor(g, "i8raw")];
    ASSERT_EQ(((int8_t *)r8->data)[0], -128);
    const graph_tensor *l = &g->tensors[graph_find_tensor(g, "i64")];
    ASSERT_EQ(l->nbytes, 16);
    ASSERT_EQ(((int64_t *)l->data)[1], 1LL << 40);
    const graph_tensor *z = &g->tensors[graph_find_tensor(g, "zp")];
    ASSERT_EQ(z->rank, 0);
    ASSERT_EQ(((uint8_t *)z->data)[0], 128);
    const graph_node *q = find_node(g, "quant");
    ASSERT_EQ(q->op, OP_QUANTIZELINEAR);
    const graph_attr *va = graph_attr_get(q, "value");
    ASSERT(va && va->type == ATTR_TENSOR && va->tensor >= 0);
    ASSERT_NEAR(*(float *)g->tensors[va->tensor].data, 0.5, 0);
    graph_free(g);
}

TEST(optional_inputs_are_minus_one)
{
    mb *b = mb_new(13);
    int64_t four[1] = {4};
    mb_input(b, "x", 1, four);
    mb_output(b, "y");
    mb_node(b, "clip", "Clip", 3, "x", "", "", "y");
    graph *g = NULL;
    char err[256];
    int rc = mb_load(b, &g, err, sizeof err);
    free(b);
    if (rc) TEST_FAIL_("load failed: %d %s", rc, err);
    ASSERT_EQ(g->nodes[0].ninputs, 3);
    ASSERT_EQ(g->nodes[0].inputs[1], -1);
    ASSERT_EQ(g->nodes[0].inputs[2], -1);
    graph_free(g);
}

/* ---- refusals ---------------------------------------------------------------- */

/* Loads b and expects status want with needle in the message. */
#define EXPECT_REFUSAL(b, want, needle)                                                            \
    do {                                                                                           \
        graph *g_ = (graph *)0x1;                                                                  \
        char err_[256];                                                                            \
        int rc_ = mb_load(b, &g_, err_, sizeof err_);                                              \
        free(b);                                                                                   \
        if (rc_ != (want)) TEST_FAIL_("status %d, want %d (%s)", rc_, (int)(want), err_);          \
        ASSERT(g_ == (graph *)0x1);                                                                \
        if (!strstr(err_, needle)) TEST_FAIL_("message \"%s\" lacks \"%s\"", err_, needle);        \
    } while (0)

TEST(refuses_every_truncation)
{
    mb *b = reference_model();
    size_t len;
    uint8_t *buf = mb_pack(b, &len);
    free(b);
    for (size_t cut = 0; cut < len; cut++) {
        /* A copy of exactly cut bytes, so ASan sees any read past it. */
        uint8_t *p = malloc(cut ? cut : 1);
        memcpy(p, buf, cut);
        graph *g = NULL;
        char err[256] = "";
        int rc = onnx_load(p, cut, &g, err, sizeof err);
        free(p);
        if (rc == 0) {
            graph_free(g);
            free(buf);
            TEST_FAIL_("a model cut to %zu of %zu bytes loaded", cut, len);
        }
        if (rc != TDM_ERR_PARSE || !err[0]) {
            free(buf);
            TEST_FAIL_("cut %zu: status %d, message \"%s\"", cut, rc, err);
        }
    }
    free(buf);
}

TEST(refuses_garbage)
{
    const char *text = "this is not a protobuf message at all\n";
    graph *g = NULL;
    char err[256];
    ASSERT_EQ(onnx_load(text, strlen(text), &g, err, sizeof err), TDM_ERR_PARSE);
    ASSERT(g == NULL);
    ASSERT(strstr(err, "ONNX") != NULL);
    /* Pseudo-random bytes of many lengths never crash or load. */
    uint32_t s = 12345;
    uint8_t buf[512];
    for (int round = 0; round < 2000; round++) {
        size_t n = (size_t)(round % 512);
        for (size_t i = 0; i < n; i++) {
            s = s * 1664525u + 1013904223u;
            buf[i] = (uint8_t)(s >> 24);
        }
        int rc = onnx_load(buf, n, &g, err, sizeof err);
        if (rc == 0) {
            graph_free(g);
            TEST_FAIL_("random bytes (round %d) loaded", round);
        }
    }
    /* A message too small for the error buffer is cut, NUL-terminated. */
    char tiny[8];
    ASSERT_EQ(onnx_load(text, strlen(text), &g, tiny, sizeof tiny), TDM_ERR_PARSE);
    ASSERT_EQ(strlen(tiny), sizeof tiny - 1);
    ASSERT_EQ(onnx_load(text, strlen(text), &g, NULL, 0), TDM_ERR_PARSE);
}

TEST(refuses_wrong_payload_size)
{
    mb *b = reference_model();
    b->inits[0].raw_data.len = 8; /* w is [3] float: 12 bytes */
    EXPECT_REFUSAL(b, TDM_ERR_PARSE, "initializer 'w'");
    b = reference_model();
    b->inits[1].n_float_data = 0; /* s is [1] */
    EXPECT_REFUSAL(b, TDM_ERR_PARSE, "initializer 's'");
    b = reference_model();
    b->inits[1].has_raw_data = 1; /* both raw and typed data */
    b->inits[1].raw_data.len = 4;
    b->inits[1].raw_data.data = (uint8_t *)s_vals;
    EXPECT_REFUSAL(b, TDM_ERR_PARSE, "both raw_data and typed");
}

TEST(refuses_bad_dims)
{
    static int64_t neg[1] = {-3}, nine[9] = {1, 1, 1, 1, 1, 1, 1, 1, 3};
    static int64_t huge[2] = {1LL << 40, 1LL << 40}, over[2] = {1LL << 31, 3};
    mb *b = reference_model();
    b->inits[0].dims = neg;
    EXPECT_REFUSAL(b, TDM_ERR_PARSE, "negative dimension");
    b = reference_model();
    b->inits[0].dims = nine;
    b->inits[0].n_dims = 9;
    EXPECT_REFUSAL(b, TDM_ERR_PARSE, "rank 9");
    b = reference_model();
    b->inits[0].dims = huge;
    b->inits[0].n_dims = 2;
    EXPECT_REFUSAL(b, TDM_ERR_PARSE, "too large");
    b = reference_model();
    b->inits[0].dims = over; /* 24 GiB of float: past the 4 GiB cap */
    b->inits[0].n_dims = 2;
    EXPECT_REFUSAL(b, TDM_ERR_PARSE, "too large");
    b = reference_model();
    b->dims[0][1].dim_value = -2;
    EXPECT_REFUSAL(b, TDM_ERR_PARSE, "graph input 'x' has a negative dimension");
}

TEST(refuses_out_of_range_int32_data)
{
    mb *b = mb_new(13);
    int64_t two[1] = {2};
    mb_input(b, "x", 1, two);
    mb_output(b, "y");
    static int32_t bad[2] = {3, 256};
    Onnx__TensorProto *t = mb_init(b, "u", 2, 1, two);
    t->n_int32_data = 2;
    t->int32_data = bad;
    mb_node(b, "add", "Add", 2, "x", "u", "", "y");
    EXPECT_REFUSAL(b, TDM_ERR_PARSE, "initializer 'u': value 256");
}

TEST(refuses_unknown_op_by_name)
{
    mb *b = reference_model();
    b->nodes[2].op_type = (char *)"FancyRelu";
    EXPECT_REFUSAL(b, TDM_ERR_UNSUPPORTED, "node 'relu' (op FancyRelu): unsupported operator");
    b = reference_model();
    b->nodes[2].domain = (char *)"com.example";
    EXPECT_REFUSAL(b, TDM_ERR_UNSUPPORTED, "node 'relu' (op Relu, domain com.example)");
}

TEST(refuses_external_data)
{
    mb *b = reference_model();
    b->inits[0].has_raw_data = 0;
    b->inits[0].has_data_location = 1;
    b->inits[0].data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
    EXPECT_REFUSAL(b, TDM_ERR_UNSUPPORTED, "initializer 'w' keeps its data in an external file");
}

TEST(refuses_unsupported_types)
{
    mb *b = reference_model();
    b->inits[1].data_type = 11; /* double */
    EXPECT_REFUSAL(b, TDM_ERR_UNSUPPORTED, "element type double");
    b = reference_model();
    b->ttypes[0].elem_type = 10; /* float16 input */
    EXPECT_REFUSAL(b, TDM_ERR_UNSUPPORTED, "graph input 'x' has element type float16");
    b = reference_model();
    b->attrs[0].type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__GRAPHS;
    EXPECT_REFUSAL(b, TDM_ERR_UNSUPPORTED, "attribute 'perm'");
    b = reference_model();
    b->attrs[3].name = (char *)"sparse_value"; /* the Constant's attribute */
    EXPECT_REFUSAL(b, TDM_ERR_UNSUPPORTED, "node 'shape_const' (op Constant)");
}

TEST(refuses_dangling_and_duplicate_names)
{
    mb *b = reference_model();
    b->nodes[3].input[1] = (char *)"nowhere";
    EXPECT_REFUSAL(b, TDM_ERR_PARSE, "node 'add' (op Add): input 'nowhere'");
    b = reference_model();
    b->out_ptrs[0]->name = (char *)"missing";
    EXPECT_REFUSAL(b, TDM_ERR_PARSE, "graph output 'missing'");
    b = reference_model();
    b->nodes[2].output[0] = (char *)"sum"; /* Relu writes what Add writes */
    EXPECT_REFUSAL(b, TDM_ERR_PARSE, "'sum'");
    b = reference_model();
    b->nodes[3].output[0] = (char *)"x"; /* a node overwriting the graph input */
    EXPECT_REFUSAL(b, TDM_ERR_PARSE, "'x'");
    b = reference_model();
    b->opset.domain = (char *)"com.example";
    EXPECT_REFUSAL(b, TDM_ERR_PARSE, "opset");
    b = reference_model();
    b->model.graph = NULL;
    EXPECT_REFUSAL(b, TDM_ERR_PARSE, "no graph");
    b = reference_model();
    b->attrs[1].name = (char *)"perm";
    EXPECT_REFUSAL(b, TDM_ERR_PARSE, "attribute 'perm' appears twice");
}

TEST(refuses_cycle)
{
    mb *b = reference_model();
    b->nodes[3].input[0] = (char *)"relu_out"; /* add reads relu, relu reads add */
    EXPECT_REFUSAL(b, TDM_ERR_PARSE, "cycle");
}

TEST(refuses_long_names)
{
    char *name = malloc(5000);
    memset(name, 'a', 4999);
    name[4999] = '\0';
    mb *b = reference_model();
    b->inits[1].name = name;
    b->nodes[1].input[1] = name;
    EXPECT_REFUSAL(b, TDM_ERR_PARSE, "longer than");
    free(name);
}

TEST(refuses_deep_nesting_without_crashing)
{
    /* Attribute -> graph -> node -> attribute ... 5000 levels deep. */
    enum { DEPTH = 5000 };
    Onnx__GraphProto *graphs = calloc(DEPTH, sizeof *graphs);
    Onnx__NodeProto *nodes = calloc(DEPTH, sizeof *nodes);
    Onnx__NodeProto **node_ptrs = calloc(DEPTH, sizeof *node_ptrs);
    Onnx__AttributeProto *attrs = calloc(DEPTH, sizeof *attrs);
    Onnx__AttributeProto **attr_ptrs = calloc(DEPTH, sizeof *attr_ptrs);
    for (int i = 0; i < DEPTH; i++) {
        onnx__graph_proto__init(&graphs[i]);
        onnx__node_proto__init(&nodes[i]);
        onnx__attribute_proto__init(&attrs[i]);
        nodes[i].op_type = (char *)"If";
        graphs[i].n_node = 1;
        graphs[i].node = &node_ptrs[i];
        node_ptrs[i] = &nodes[i];
        if (i + 1 < DEPTH) {
            nodes[i].n_attribute = 1;
            nodes[i].attribute = &attr_ptrs[i];
            attr_ptrs[i] = &attrs[i];
            attrs[i].name = (char *)"then_branch";
            attrs[i].g = &graphs[i + 1];
        }
    }
    mb *b = reference_model();
    b->model.graph = &graphs[0];
    EXPECT_REFUSAL(b, TDM_ERR_PARSE, "nests");
    free(attr_ptrs);
    free(attrs);
    free(node_ptrs);
    free(nodes);
    free(graphs);
}

/* ---- real files ----------------------------------------------------------------- */

static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    struct stat st;
    uint8_t *buf = NULL;
    if (fstat(fileno(f), &st) == 0 && (buf = malloc((size_t)st.st_size + 1)) &&
        fread(buf, 1, (size_t)st.st_size, f) != (size_t)st.st_size) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *len = buf ? (size_t)st.st_size : 0;
    return buf;
}

/* Loads path if it exists: 0 = absent, 1 = loaded and checked. */
static int check_file(int *failed_, const char *path, int min_nodes, tdm_dtype in_dtype)
{
    size_t len;
    uint8_t *buf = read_file(path, &len);
    if (!buf) return 0;
    graph *g = NULL;
    char err[256];
    int rc = onnx_load(buf, len, &g, err, sizeof err);
    free(buf);
    if (rc) {
        fprintf(stderr, "  %s: %s\n", path, err);
        *failed_ = 1;
        return 1;
    }
    int order_ok = 1, count = 0;
    int *order = malloc((size_t)(g->nnodes + 1) * sizeof *order);
    if (graph_topo_sort(g, order, &count) || count != g->nnodes) order_ok = 0;
    free(order);
    if (!order_ok || g->nnodes < min_nodes || g->ninputs != 1 || g->noutputs != 1 ||
        g->tensors[g->inputs[0]].dtype != in_dtype) {
        fprintf(stderr, "  %s: %d nodes, %d inputs, %d outputs, input dtype %d\n", path, g->nnodes,
                g->ninputs, g->noutputs, g->tensors[g->inputs[0]].dtype);
        *failed_ = 1;
    }
    for (int i = 0; i < g->nnodes; i++)
        if (g->nodes[i].op == OP_UNKNOWN || g->nodes[i].op == OP_CONSTANT) *failed_ = 1;
    graph_free(g);
    return 1;
}

static const char *env_or(const char *name, const char *dflt)
{
    const char *v = getenv(name);
    return v && *v ? v : dflt;
}

TEST(loads_test_and_real_models)
{
    static const struct {
        const char *file;
        int min_nodes;
    } models[] = {
        {"mobilenetv2_op13.onnx", 100},
        {"mobilenetv2_op11_bn.onnx", 150},
        {"mobilenetv2_op9_bn.onnx", 150},
        {"mobilenetv2_zoo7.onnx", 150},
        {"resnet50_op13.onnx", 120},
        {"resnet50_op11_bn.onnx", 170},
        {"resnet50_op9_bn.onnx", 170},
        {"ops_conv.onnx", 4},
        {"ops_shape.onnx", 5},
        {"ops_batchnorm.onnx", 4},
    };
    char path[1024];
    int found = 0;
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) {
        snprintf(path, sizeof path, "build/test-models/%s", models[i].file);
        found += check_file(failed_, path, models[i].min_nodes, TDM_DTYPE_FLOAT);
        if (*failed_) return;
    }
    const char *data = env_or("TEST_DATA", "data");
    snprintf(path, sizeof path, "%s/models/st-int8/mobilenet_v2_1.0_224_int8_per_tensor.onnx",
             data);
    found += check_file(failed_, path, 100, TDM_DTYPE_UINT8);
    snprintf(path, sizeof path, "%s/models/st-int8/mobilenet_v1_0.5_128_quant.onnx", data);
    found += check_file(failed_, path, 50, TDM_DTYPE_UINT8);
    fprintf(stderr, "  (%d model files loaded%s)\n", found, found ? "" : ": run make test-models");
}

TEST_MAIN()
