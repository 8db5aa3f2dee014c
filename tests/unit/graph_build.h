/*
 * graph_build: the hand-built graphs of the engine's unit tests (test_ops,
 * test_opt, test_dnnl). Allocations abort on exhaustion (xalloc.h), so
 * builders return indices, never errors.
 */
#ifndef TANDEM_TEST_GRAPH_BUILD_H
#define TANDEM_TEST_GRAPH_BUILD_H

#include <stdarg.h>
#include <stdint.h>

#include "graph.h"
#include "xalloc.h"

/* A tensor of rank dims read from ap as int64_t (rank -1: unknown). */
static inline int tensor_v(graph *g, const char *name, tdm_dtype dt, int rank, va_list ap)
{
    int64_t dims[GRAPH_MAX_RANK];
    for (int i = 0; i < rank; i++)
        dims[i] = va_arg(ap, int64_t);
    return graph_add_tensor(g, name, dt, rank, dims);
}

/* A tensor of rank dims given as int64_t varargs (rank -1: unknown). */
static inline int tensor(graph *g, const char *name, tdm_dtype dt, int rank, ...)
{
    va_list ap;
    va_start(ap, rank);
    int t = tensor_v(g, name, dt, rank, ap);
    va_end(ap);
    return t;
}

/* Makes tensor t an input, or an output, of the graph. */
static inline void mark_input(graph *g, int t)
{
    g->tensors[t].is_input = true;
    g->inputs = xrealloc(g->inputs, (size_t)(g->ninputs + 1) * sizeof *g->inputs);
    g->inputs[g->ninputs++] = t;
}

static inline void mark_output(graph *g, int t)
{
    g->tensors[t].is_output = true;
    g->outputs = xrealloc(g->outputs, (size_t)(g->noutputs + 1) * sizeof *g->outputs);
    g->outputs[g->noutputs++] = t;
}

/* A constant 1-D int64 tensor. */
static inline int const_i64(graph *g, const char *name, int n, const int64_t *v)
{
    int64_t d = n;
    int t = graph_add_tensor(g, name, TDM_DTYPE_INT64, 1, &d);
    graph_set_data(g, t, xmemdup(v, (size_t)n * sizeof *v), (size_t)n * sizeof *v);
    return t;
}

/* A constant scalar of type dt holding v. */
static inline int const_scalar(graph *g, const char *name, tdm_dtype dt, double v)
{
    int t = graph_add_tensor(g, name, dt, 0, NULL);
    size_t sz = tdm_dtype_size(dt);
    void *p = xmalloc(sz);
    if (dt == TDM_DTYPE_FLOAT)
        *(float *)p = (float)v;
    else if (dt == TDM_DTYPE_INT8)
        *(int8_t *)p = (int8_t)v;
    else if (dt == TDM_DTYPE_UINT8)
        *(uint8_t *)p = (uint8_t)v;
    else if (dt == TDM_DTYPE_INT32)
        *(int32_t *)p = (int32_t)v;
    else
        *(int64_t *)p = (int64_t)v;
    graph_set_data(g, t, p, sz);
    return t;
}

/* A float tensor whose shape inference will tell. */
static inline int value(graph *g, const char *name)
{
    return graph_add_tensor(g, name, TDM_DTYPE_FLOAT, -1, NULL);
}

/* Appends a post-op with parameters a..d to node n. */
static inline void post(graph *g, int n, graph_post_kind kind, float a, float b, float c, float d)
{
    graph_node *nd = &g->nodes[n];
    nd->post[nd->npost++] = (graph_post){.kind = kind, .a = a, .b = b, .c = c, .d = d, .input = -1};
}

/* Appends a post-op of node n that reads tensor t (POST_SUM, POST_*_CHANNEL)
 * as an extra input, placed past a convolution's optional bias. */
static inline void post_input(graph *g, int n, graph_post_kind kind, int t)
{
    graph_node *nd = &g->nodes[n];
    int pos = nd->ninputs < 3 && nd->op == OP_CONV ? 3 : nd->ninputs;
    nd->inputs = xrealloc(nd->inputs, (size_t)(pos + 1) * sizeof *nd->inputs);
    for (int k = nd->ninputs; k < pos; k++)
        nd->inputs[k] = -1;
    nd->inputs[pos] = t;
    nd->ninputs = pos + 1;
    nd->post[nd->npost++] = (graph_post){.kind = kind, .input = pos};
}

/* Attributes of node n. */
static inline void attr_int(graph *g, int n, const char *name, int64_t v)
{
    graph_attr_set_int(&g->nodes[n], name, v);
}

static inline void attr_float(graph *g, int n, const char *name, float v)
{
    graph_attr_set_float(&g->nodes[n], name, v);
}

static inline void attr_str(graph *g, int n, const char *name, const char *v)
{
    graph_attr_set_string(&g->nodes[n], name, v);
}

static inline void attr_ints(graph *g, int n, const char *name, int count, const int64_t *v)
{
    graph_attr_set_ints(&g->nodes[n], name, v, count);
}

static inline void attr_floats(graph *g, int n, const char *name, int count, const float *v)
{
    graph_attr_set_floats(&g->nodes[n], name, v, count);
}

#endif
