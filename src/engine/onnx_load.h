/*
 * onnx_load: turns the bytes of an .onnx file (a serialized ModelProto) into
 * a graph (graph.h). A pure function over bytes: no I/O, so it is also the
 * fuzz target for the model parser.
 *
 * What the result holds:
 *   - graph inputs that are not initializers, in file order, with dtype and
 *     dims from their ValueInfo (a symbolic or missing dim is -1);
 *   - graph outputs, in file order;
 *   - every initializer as a constant tensor (payload plain row-major,
 *     owned by the graph); Constant nodes become constant tensors too and
 *     are dropped; tensor-valued attributes become constant tensors that
 *     graph_attr.tensor points at;
 *   - every other node, mapped through ops_lookup(), in file order;
 *   - g->opset: the version of the default domain ("" or "ai.onnx").
 * Every tensor a node or output refers to exists and the graph has no cycle.
 *
 * Refusals: undecodable bytes, sizes past the hard limits (rank > 8, negative
 * dims, payload size not matching the shape, constants above 4 GiB in total,
 * over-long names) are TDM_ERR_PARSE; ops, element types, external data and
 * attribute kinds we do not run are TDM_ERR_UNSUPPORTED. The message names
 * the tensor or the node and its op type.
 */
#ifndef TANDEM_ONNX_LOAD_H
#define TANDEM_ONNX_LOAD_H

#include <stddef.h>

#include "graph.h"

/* Total bytes of constant payloads a model may carry. */
#define ONNX_MAX_CONST_BYTES ((size_t)4 << 30)

/* Parses data[0..len). On success sets *out (free with graph_free) and
 * returns 0; on failure returns a negative tdm_status and writes a
 * NUL-terminated message into err (when errlen > 0). */
int onnx_load(const void *data, size_t len, graph **out, char *err, size_t errlen);

#endif
