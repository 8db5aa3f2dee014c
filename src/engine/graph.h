/*
 * graph: the engine's internal representation of a model.
 *
 * The ONNX loader (onnx_load.c) turns a ModelProto into a graph; the optimiser
 * (opt.c) rewrites it in place; a session (session.c) clones it, fixes the
 * batch size, infers concrete shapes and plans buffers and kernels.
 *
 * Tensors and nodes live in two growable arrays and refer to each other by
 * index, so rewriting never leaves dangling pointers. Removing a node only
 * marks it dead; graph_compact() drops dead nodes and unused tensors.
 *
 * A tensor with data != NULL is a constant (an initializer, a Constant node's
 * value, or the result of constant folding). Constant payloads may be shared
 * between a model's graph and its sessions' clones: owns_data says who frees.
 * Payloads are always plain row-major in the tensor's dtype.
 */
#ifndef TANDEM_GRAPH_H
#define TANDEM_GRAPH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tandem/engine.h"

#define GRAPH_MAX_RANK TDM_MAX_RANK
#define GRAPH_MAX_POST 8
#define GRAPH_ERR_LEN 256

/* Operators we know, in the order of the table ops.def. The loader maps
 * (domain, op_type) to one of these through ops_lookup(); OP_FAKEQUANT only
 * ever comes from the optimiser. */
typedef enum {
    OP_UNKNOWN = 0,
#define OP(op, name, min_in, max_in, min_out, max_out, check, infer, kernel) op,
#include "ops.def"
#undef OP
    OP_COUNT
} graph_op;

typedef enum {
    ATTR_UNDEFINED = 0,
    ATTR_FLOAT,
    ATTR_INT,
    ATTR_STRING,
    ATTR_FLOATS,
    ATTR_INTS,
    ATTR_TENSOR
} graph_attr_type;

typedef struct graph_attr {
    char *name;
    graph_attr_type type;
    float f;
    int64_t i;
    char *s;        /* ATTR_STRING, NUL-terminated */
    int n;          /* element count of floats / ints */
    float *floats;
    int64_t *ints;
    int tensor;     /* ATTR_TENSOR: index of a constant tensor in the graph */
} graph_attr;

/* Operations fused onto the output of a node, applied in order. The backend
 * maps them to oneDNN post-ops; the reference kernels apply them in C. */
typedef enum {
    POST_RELU,      /* max(x, 0) */
    POST_CLIP,      /* clamp(x, a, b); +-INFINITY for an open side */
    POST_FAKEQUANT, /* (clamp(rint(x / a) + b, c, d) - b) * a: a=scale b=zero point c,d=range */
    POST_SUM,       /* x + inputs[input]; same shape as the output, no broadcasting */
    POST_MIN_CHANNEL, /* min(x, inputs[input][c]): a constant of one value per channel c (axis 1) */
    POST_MAX_CHANNEL  /* max(x, inputs[input][c]), likewise */
} graph_post_kind;

typedef struct graph_post {
    graph_post_kind kind;
    float a, b, c, d;
    int input; /* POST_SUM, POST_*_CHANNEL: position in node->inputs of the operand */
} graph_post;

typedef struct graph_tensor {
    char *name;
    tdm_dtype dtype;
    int rank;                      /* -1 while unknown */
    int64_t dims[GRAPH_MAX_RANK];  /* -1 for a dimension not yet known */
    void *data;                    /* constant payload, or NULL */
    size_t nbytes;                 /* of data */
    bool owns_data;
    int producer;                  /* node index, or -1 */
    bool is_input, is_output;      /* graph inputs/outputs (not initializers) */
} graph_tensor;

typedef struct graph_node {
    char *name;
    char *op_type; /* as written in the file, for messages */
    graph_op op;
    int ninputs, noutputs;
    int *inputs;   /* tensor indices; -1 for an omitted optional input */
    int *outputs;
    int nattrs;
    graph_attr *attrs;
    int npost;
    graph_post post[GRAPH_MAX_POST];
    bool dead;
} graph_node;

typedef struct graph {
    graph_tensor *tensors;
    int ntensors, cap_tensors;
    graph_node *nodes;
    int nnodes, cap_nodes;
    int *inputs, ninputs;   /* graph inputs, in file order */
    int *outputs, noutputs; /* graph outputs, in file order */
    int64_t opset;          /* of the default domain */
    char err[GRAPH_ERR_LEN];
} graph;

graph *graph_new(void);
void graph_free(graph *g);

/* A copy whose constant payloads are borrowed from g (owns_data = false);
 * g must outlive it. */
int graph_clone(const graph *g, graph **out);

/* Returns the new tensor's index, or a negative tdm_status. */
int graph_add_tensor(graph *g, const char *name, tdm_dtype dtype, int rank, const int64_t *dims);
int graph_find_tensor(const graph *g, const char *name); /* -1 if absent */
/* Returns the new node's index; inputs/outputs are copied. */
int graph_add_node(graph *g, const char *name, const char *op_type, graph_op op, int ninputs,
                   const int *inputs, int noutputs, const int *outputs);

/* Gives a tensor a constant payload (taking ownership of data). */
void graph_set_data(graph *g, int tensor, void *data, size_t nbytes);

/* Attribute lookup: returns the attribute or NULL. */
const graph_attr *graph_attr_get(const graph_node *n, const char *name);
int64_t graph_attr_int(const graph_node *n, const char *name, int64_t dflt);
float graph_attr_float(const graph_node *n, const char *name, float dflt);
const char *graph_attr_string(const graph_node *n, const char *name, const char *dflt);

/* Attribute setters: add the attribute, or replace the one of that name. */
void graph_attr_set_int(graph_node *n, const char *name, int64_t v);
void graph_attr_set_float(graph_node *n, const char *name, float v);
void graph_attr_set_ints(graph_node *n, const char *name, const int64_t *v, int count);
void graph_attr_set_floats(graph_node *n, const char *name, const float *v, int count);
void graph_attr_set_string(graph_node *n, const char *name, const char *v);

/* Element count of a tensor with known shape, or -1 if any dim is unknown. */
int64_t graph_tensor_numel(const graph_tensor *t);

/* Makes every live node that reads tensor `from` (as an input or a post-op
 * operand) read `to` instead. */
void graph_replace_uses(graph *g, int from, int to);

/* Number of live nodes reading tensor t (including as a POST_SUM addend), plus
 * one if it is a graph output. */
int graph_consumers(const graph *g, int tensor);

/* The only live node reading tensor t, or -1 when there is not exactly one
 * reader (a node reading t twice counts twice) or t is a graph output. */
int graph_sole_consumer(const graph *g, int t);

/* Fills order[] with live node indices in a valid execution order.
 * Fails with TDM_ERR_PARSE on a cycle or a reference to a missing tensor. */
int graph_topo_sort(graph *g, int *order, int *count);

/* Drops dead nodes and tensors no live node or graph output refers to,
 * renumbering indices. */
int graph_compact(graph *g);

/* Sticky error: formats into g->err and returns status. */
int graph_fail(graph *g, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
