/*
 * ops: what the engine knows about each operator, independent of how it is
 * computed: the mapping from ONNX names, the load-time check of inputs and
 * attributes, and shape inference.
 */
#ifndef TANDEM_OPS_H
#define TANDEM_OPS_H

#include "graph.h"

/* Maps (domain, op_type) to our op; "" and "ai.onnx" are the default domain.
 * Returns OP_UNKNOWN for anything we do not run. */
graph_op ops_lookup(const char *domain, const char *op_type);

/* The ONNX name of op, e.g. "Conv". */
const char *ops_name(graph_op op);

/* Load-time check of node against what we implement (input count, attribute
 * values such as auto_pad modes, dtypes). On refusal sets g->err to a message
 * naming the node and op type and returns TDM_ERR_UNSUPPORTED. */
int ops_check(graph *g, int node);

/* Sets dtype, rank and dims of the node's outputs from its inputs. Inputs that
 * decide a shape (Reshape's shape, Pad's pads, ...) must be constants; if they
 * are not yet, returns TDM_ERR_INVALID with g->err set. */
int ops_infer(graph *g, int node);

/* Clip's bounds in their one representation: the float attributes "min" and
 * "max" (absent: that side open). Opset 11's bound inputs become those
 * attributes once they are constant (opt_infer_and_fold); false while a
 * bound is still a live input, known only when the graph runs. */
bool ops_clip_bounds(const graph_node *n, float *lo, float *hi);

/* True if the op is a pure function of its inputs, so constant folding may run it. */
bool ops_foldable(graph_op op);

/* For ops.c and ops_shape.c: fails with status and a message that reads
 * "node '<name>' (op <OpType>): <what>", so a user can find the node in a
 * model viewer. */
int ops_node_fail(graph *g, const graph_node *n, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* For ops.c and ops_shape.c: the tensor at input position i of n, or NULL
 * when absent or omitted. */
const graph_tensor *ops_input(const graph *g, const graph_node *n, int i);

#endif
