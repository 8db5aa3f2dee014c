/*
 * graph: building, attribute lookup, cloning with borrowed payloads,
 * topological order (including refusals of cycles, dangling reads and double
 * writers), consumer counts and compaction with renumbering.
 */
#include <stdlib.h>
#include <string.h>

#include "graph.h"
#include "test.h"

static int input(graph *g, const char *name)
{
    int64_t dims[2] = {1, 4};
    int t = graph_add_tensor(g, name, TDM_DTYPE_FLOAT, 2, dims);
    g->tensors[t].is_input = true;
    g->inputs = realloc(g->inputs, (size_t)(g->ninputs + 1) * sizeof *g->inputs);
    g->inputs[g->ninputs++] = t;
    return t;
}

static void mark_output(graph *g, int t)
{
    g->tensors[t].is_output = true;
    g->outputs = realloc(g->outputs, (size_t)(g->noutputs + 1) * sizeof *g->outputs);
    g->outputs[g->noutputs++] = t;
}

static int tmp(graph *g, const char *name)
{
    return graph_add_tensor(g, name, TDM_DTYPE_FLOAT, -1, NULL);
}

static int constant(graph *g, const char *name, float v)
{
    int t = graph_add_tensor(g, name, TDM_DTYPE_FLOAT, 0, NULL);
    float *p = malloc(sizeof *p);
    *p = v;
    graph_set_data(g, t, p, sizeof *p);
    return t;
}

static int unary(graph *g, const char *name, graph_op op, int in, int out)
{
    return graph_add_node(g, name, "Op", op, 1, &in, 1, &out);
}

static int binary(graph *g, const char *name, graph_op op, int a, int b, int out)
{
    int in[2] = {a, b};
    return graph_add_node(g, name, "Op", op, 2, in, 1, &out);
}

/* Position of node idx in order[0..count). */
static int pos(const int *order, int count, int idx)
{
    for (int i = 0; i < count; i++)
        if (order[i] == idx) return i;
    return -1;
}

TEST(add_and_find)
{
    graph *g = graph_new();
    int64_t dims[3] = {2, 3, 4};
    int a = graph_add_tensor(g, "a", TDM_DTYPE_FLOAT, 3, dims);
    int b = graph_add_tensor(g, "b", TDM_DTYPE_INT64, -1, NULL);
    ASSERT_EQ(a, 0);
    ASSERT_EQ(b, 1);
    ASSERT_EQ(graph_find_tensor(g, "b"), 1);
    ASSERT_EQ(graph_find_tensor(g, "zz"), -1);
    ASSERT_EQ(graph_tensor_numel(&g->tensors[a]), 24);
    ASSERT_EQ(graph_tensor_numel(&g->tensors[b]), -1);
    ASSERT_EQ(g->tensors[a].dims[3], -1);
    ASSERT_EQ(g->tensors[a].producer, -1);
    int64_t big[9] = {0};
    ASSERT_EQ(graph_add_tensor(g, "c", TDM_DTYPE_FLOAT, 9, big), TDM_ERR_INVALID);
    ASSERT(strstr(g->err, "'c'") != NULL);
    int n = unary(g, "n", OP_RELU, a, b);
    ASSERT_EQ(n, 0);
    ASSERT_EQ(g->tensors[b].producer, 0);
    int bad = 7;
    ASSERT_EQ(graph_add_node(g, "m", "Relu", OP_RELU, 1, &bad, 1, &b), TDM_ERR_INVALID);
    ASSERT(strstr(g->err, "'m'") != NULL);
    ASSERT_EQ(g->nnodes, 1);
    /* Many tensors: the arrays grow. */
    for (int i = 0; i < 1000; i++)
        ASSERT_EQ(graph_add_tensor(g, "x", TDM_DTYPE_FLOAT, 0, NULL), i + 2);
    graph_free(g);
}

TEST(numel_scalar_and_empty)
{
    graph *g = graph_new();
    int64_t zero[2] = {3, 0};
    int s = graph_add_tensor(g, "s", TDM_DTYPE_FLOAT, 0, NULL);
    int e = graph_add_tensor(g, "e", TDM_DTYPE_FLOAT, 2, zero);
    int64_t huge[3] = {INT64_MAX / 2, 4, 4};
    int h = graph_add_tensor(g, "h", TDM_DTYPE_FLOAT, 3, huge);
    ASSERT_EQ(graph_tensor_numel(&g->tensors[s]), 1);
    ASSERT_EQ(graph_tensor_numel(&g->tensors[e]), 0);
    ASSERT_EQ(graph_tensor_numel(&g->tensors[h]), -1);
    graph_free(g);
}

TEST(attributes)
{
    graph *g = graph_new();
    int x = input(g, "x"), y = tmp(g, "y");
    int n = unary(g, "n", OP_LEAKYRELU, x, y);
    graph_node *nd = &g->nodes[n];
    nd->attrs = calloc(3, sizeof *nd->attrs);
    nd->nattrs = 3;
    nd->attrs[0] = (graph_attr){.name = strdup("alpha"), .type = ATTR_FLOAT, .f = 0.5f};
    nd->attrs[1] = (graph_attr){.name = strdup("axis"), .type = ATTR_INT, .i = -2};
    nd->attrs[2] = (graph_attr){.name = strdup("mode"), .type = ATTR_STRING, .s = strdup("edge")};
    ASSERT_NEAR(graph_attr_float(nd, "alpha", 1.0f), 0.5, 0);
    ASSERT_NEAR(graph_attr_float(nd, "beta", 3.0f), 3.0, 0);
    ASSERT_NEAR(graph_attr_float(nd, "axis", 0.0f), -2.0, 0);
    ASSERT_EQ(graph_attr_int(nd, "axis", 1), -2);
    ASSERT_EQ(graph_attr_int(nd, "alpha", 7), 7); /* wrong type: default */
    ASSERT_STR_EQ(graph_attr_string(nd, "mode", "constant"), "edge");
    ASSERT_STR_EQ(graph_attr_string(nd, "nope", "constant"), "constant");
    ASSERT(graph_attr_get(nd, "mode") == &nd->attrs[2]);
    ASSERT(graph_attr_get(nd, "x") == NULL);
    graph_free(g);
}

TEST(set_data_replaces_owned_payload)
{
    graph *g = graph_new();
    int c = constant(g, "c", 1.0f);
    float *p = malloc(2 * sizeof *p);
    p[0] = 2;
    p[1] = 3;
    graph_set_data(g, c, p, 2 * sizeof *p);
    ASSERT(g->tensors[c].data == p);
    ASSERT_EQ(g->tensors[c].nbytes, 8);
    ASSERT(g->tensors[c].owns_data);
    graph_free(g); /* ASan reports the first payload if it leaked */
}

TEST(topo_sort_orders_a_diamond_listed_backwards)
{
    graph *g = graph_new();
    int x = input(g, "x"), a = tmp(g, "a"), b = tmp(g, "b"), c = tmp(g, "c"), y = tmp(g, "y");
    int w = constant(g, "w", 2.0f);
    mark_output(g, y);
    int n3 = binary(g, "join", OP_ADD, b, c, y);
    int n2 = binary(g, "right", OP_MUL, a, w, c);
    int n1 = unary(g, "left", OP_RELU, a, b);
    int n0 = unary(g, "head", OP_RELU, x, a);
    int order[4], count = -1;
    ASSERT_EQ(graph_topo_sort(g, order, &count), 0);
    ASSERT_EQ(count, 4);
    ASSERT(pos(order, 4, n0) < pos(order, 4, n1));
    ASSERT(pos(order, 4, n0) < pos(order, 4, n2));
    ASSERT(pos(order, 4, n1) < pos(order, 4, n3));
    ASSERT(pos(order, 4, n2) < pos(order, 4, n3));
    /* Dead nodes are left out. */
    g->nodes[n1].dead = true;
    g->nodes[n3].inputs[0] = a;
    ASSERT_EQ(graph_topo_sort(g, order, &count), 0);
    ASSERT_EQ(count, 3);
    ASSERT_EQ(pos(order, 3, n1), -1);
    graph_free(g);
}

TEST(topo_sort_node_reading_a_tensor_twice)
{
    graph *g = graph_new();
    int x = input(g, "x"), a = tmp(g, "a"), y = tmp(g, "y");
    mark_output(g, y);
    int n1 = binary(g, "sq", OP_MUL, a, a, y);
    int n0 = unary(g, "r", OP_RELU, x, a);
    int order[2], count = 0;
    ASSERT_EQ(graph_topo_sort(g, order, &count), 0);
    ASSERT_EQ(count, 2);
    ASSERT_EQ(order[0], n0);
    ASSERT_EQ(order[1], n1);
    ASSERT_EQ(graph_consumers(g, a), 2);
    ASSERT_EQ(graph_consumers(g, y), 1);
    ASSERT_EQ(graph_consumers(g, x), 1);
    graph_free(g);
}

TEST(topo_sort_refuses_cycle)
{
    graph *g = graph_new();
    int x = input(g, "x"), a = tmp(g, "a"), b = tmp(g, "b");
    mark_output(g, b);
    binary(g, "first", OP_ADD, x, b, a);
    unary(g, "second", OP_RELU, a, b);
    int order[2], count = 99;
    ASSERT_EQ(graph_topo_sort(g, order, &count), TDM_ERR_PARSE);
    ASSERT_EQ(count, 99); /* untouched on failure */
    ASSERT(strstr(g->err, "cycle") != NULL);
    graph_free(g);
}

TEST(topo_sort_refuses_self_loop)
{
    graph *g = graph_new();
    int a = tmp(g, "a");
    mark_output(g, a);
    unary(g, "loop", OP_RELU, a, a);
    int order[1], count = 0;
    ASSERT_EQ(graph_topo_sort(g, order, &count), TDM_ERR_PARSE);
    ASSERT(strstr(g->err, "'loop'") != NULL);
    graph_free(g);
}

TEST(topo_sort_refuses_dangling_read)
{
    graph *g = graph_new();
    int x = input(g, "x"), ghost = tmp(g, "ghost"), y = tmp(g, "y");
    mark_output(g, y);
    binary(g, "add", OP_ADD, x, ghost, y);
    int order[1], count = 0;
    ASSERT_EQ(graph_topo_sort(g, order, &count), TDM_ERR_PARSE);
    ASSERT(strstr(g->err, "'ghost'") != NULL);
    ASSERT(strstr(g->err, "'add'") != NULL);
    /* A tensor whose producer died and that was not folded is dangling too. */
    graph_free(g);
    g = graph_new();
    x = input(g, "x");
    int a = tmp(g, "a");
    y = tmp(g, "y");
    mark_output(g, y);
    int p = unary(g, "p", OP_RELU, x, a);
    unary(g, "q", OP_RELU, a, y);
    g->nodes[p].dead = true;
    ASSERT_EQ(graph_topo_sort(g, order, &count), TDM_ERR_PARSE);
    ASSERT(strstr(g->err, "'a'") != NULL);
    graph_free(g);
}

TEST(topo_sort_refuses_unproduced_output_and_double_writer)
{
    graph *g = graph_new();
    int x = input(g, "x"), y = tmp(g, "y"), z = tmp(g, "z");
    mark_output(g, y);
    mark_output(g, z);
    unary(g, "r", OP_RELU, x, y);
    int order[2], count = 0;
    ASSERT_EQ(graph_topo_sort(g, order, &count), TDM_ERR_PARSE);
    ASSERT(strstr(g->err, "'z'") != NULL);
    unary(g, "s", OP_RELU, x, y);
    g->noutputs = 1;
    ASSERT_EQ(graph_topo_sort(g, order, &count), TDM_ERR_PARSE);
    ASSERT(strstr(g->err, "two nodes") != NULL);
    graph_free(g);
}

TEST(consumers_count_live_reads_and_outputs)
{
    graph *g = graph_new();
    int x = input(g, "x"), a = tmp(g, "a"), b = tmp(g, "b"), c = tmp(g, "c");
    mark_output(g, a);
    unary(g, "r", OP_RELU, x, a);
    unary(g, "s", OP_SIGMOID, a, b);
    int t = unary(g, "t", OP_TANH, a, c);
    ASSERT_EQ(graph_consumers(g, a), 3); /* two readers and an output */
    g->nodes[t].dead = true;
    ASSERT_EQ(graph_consumers(g, a), 2);
    ASSERT_EQ(graph_consumers(g, c), 0);
    graph_free(g);
}

TEST(clone_borrows_payloads)
{
    graph *g = graph_new();
    g->opset = 13;
    int x = input(g, "x"), w = constant(g, "w", 4.0f), y = tmp(g, "y");
    mark_output(g, y);
    int n = binary(g, "mul", OP_MUL, x, w, y);
    graph_node *nd = &g->nodes[n];
    nd->attrs = calloc(1, sizeof *nd->attrs);
    nd->nattrs = 1;
    nd->attrs[0] = (graph_attr){.name = strdup("perm"), .type = ATTR_INTS, .n = 2};
    nd->attrs[0].ints = malloc(2 * sizeof(int64_t));
    nd->attrs[0].ints[0] = 1;
    nd->attrs[0].ints[1] = 0;
    graph *c = NULL;
    ASSERT_EQ(graph_clone(g, &c), 0);
    ASSERT_EQ(c->opset, 13);
    ASSERT_EQ(c->ntensors, g->ntensors);
    ASSERT_EQ(c->nnodes, 1);
    ASSERT(c->tensors[w].data == g->tensors[w].data);
    ASSERT(!c->tensors[w].owns_data);
    ASSERT(g->tensors[w].owns_data);
    ASSERT(c->tensors[w].name != g->tensors[w].name);
    ASSERT_STR_EQ(c->tensors[w].name, "w");
    ASSERT(c->nodes[0].inputs != g->nodes[0].inputs);
    ASSERT(c->nodes[0].attrs[0].ints != g->nodes[0].attrs[0].ints);
    ASSERT_EQ(c->nodes[0].attrs[0].ints[0], 1);
    ASSERT_EQ(c->ninputs, 1);
    ASSERT_EQ(c->outputs[0], y);
    /* Editing the clone leaves the original alone. */
    c->nodes[0].inputs[1] = x;
    float *p = malloc(sizeof *p);
    *p = 9;
    graph_set_data(c, w, p, sizeof *p);
    ASSERT_EQ(g->nodes[0].inputs[1], w);
    ASSERT_NEAR(*(float *)g->tensors[w].data, 4.0, 0);
    graph_free(c);
    ASSERT_NEAR(*(float *)g->tensors[w].data, 4.0, 0);
    graph_free(g);
}

TEST(compact_drops_and_renumbers)
{
    graph *g = graph_new();
    int unused = constant(g, "unused", 1.0f);
    int x = input(g, "x"), a = tmp(g, "a"), b = tmp(g, "b"), y = tmp(g, "y");
    int w = constant(g, "w", 2.0f), pads = constant(g, "attr_t", 0.0f);
    mark_output(g, y);
    int n0 = unary(g, "gone", OP_RELU, x, a);
    unary(g, "keep1", OP_RELU, x, b);
    int n2 = binary(g, "keep2", OP_MUL, b, w, y);
    g->nodes[n0].dead = true;
    graph_node *nd = &g->nodes[n2];
    nd->attrs = calloc(1, sizeof *nd->attrs);
    nd->nattrs = 1;
    nd->attrs[0] = (graph_attr){.name = strdup("value"), .type = ATTR_TENSOR, .tensor = pads};
    (void)unused;
    ASSERT_EQ(graph_compact(g), 0);
    ASSERT_EQ(g->nnodes, 2);
    ASSERT_EQ(g->ntensors, 5); /* x, b, y, w, attr_t */
    ASSERT_EQ(graph_find_tensor(g, "unused"), -1);
    ASSERT_EQ(graph_find_tensor(g, "a"), -1);
    ASSERT_STR_EQ(g->nodes[0].name, "keep1");
    ASSERT_STR_EQ(g->nodes[1].name, "keep2");
    int nb = graph_find_tensor(g, "b"), ny = graph_find_tensor(g, "y");
    int nw = graph_find_tensor(g, "w"), nx = graph_find_tensor(g, "x");
    ASSERT_EQ(g->nodes[0].inputs[0], nx);
    ASSERT_EQ(g->nodes[0].outputs[0], nb);
    ASSERT_EQ(g->nodes[1].inputs[0], nb);
    ASSERT_EQ(g->nodes[1].inputs[1], nw);
    ASSERT_EQ(g->nodes[1].outputs[0], ny);
    ASSERT_EQ(g->nodes[1].attrs[0].tensor, graph_find_tensor(g, "attr_t"));
    ASSERT_EQ(g->tensors[nb].producer, 0);
    ASSERT_EQ(g->tensors[ny].producer, 1);
    ASSERT_EQ(g->tensors[nw].producer, -1);
    ASSERT_EQ(g->inputs[0], nx);
    ASSERT_EQ(g->outputs[0], ny);
    ASSERT_NEAR(*(float *)g->tensors[nw].data, 2.0, 0);
    int order[2], count = 0;
    ASSERT_EQ(graph_topo_sort(g, order, &count), 0);
    ASSERT_EQ(count, 2);
    graph_free(g);
}

TEST(compact_keeps_unread_graph_input)
{
    graph *g = graph_new();
    int x = input(g, "x");
    int w = constant(g, "w", 1.0f);
    mark_output(g, w);
    ASSERT_EQ(graph_compact(g), 0);
    ASSERT_EQ(g->ntensors, 2);
    ASSERT_EQ(g->inputs[0], graph_find_tensor(g, "x"));
    ASSERT_EQ(g->outputs[0], graph_find_tensor(g, "w"));
    (void)x;
    int count = -1;
    ASSERT_EQ(graph_topo_sort(g, NULL, &count), 0);
    ASSERT_EQ(count, 0);
    graph_free(g);
}

TEST(fail_is_sticky_and_bounded)
{
    graph *g = graph_new();
    char name[600];
    memset(name, 'n', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    ASSERT_EQ(graph_fail(g, TDM_ERR_UNSUPPORTED, "node '%s': no", name), TDM_ERR_UNSUPPORTED);
    ASSERT_EQ(strlen(g->err), GRAPH_ERR_LEN - 1);
    ASSERT_EQ(graph_fail(g, TDM_ERR_PARSE, "x=%d", 3), TDM_ERR_PARSE);
    ASSERT_STR_EQ(g->err, "x=3");
    graph_free(g);
}

TEST_MAIN()
