/*
 * dnnl_int8: running fake-quantised convolutions and MatMuls as real 8-bit
 * ones.
 *
 * The optimiser leaves a QDQ model in float: weights dequantised into f32
 * constants, QuantizeLinear->DequantizeLinear pairs as fake quantisation
 * (FAKEQUANT nodes or post-ops). A tensor whose producer ends in a fake
 * quantisation (or is a DequantizeLinear) holds only values s * (q - zp)
 * with q an 8-bit integer, so the oneDNN backend may store it as q (a u8
 * "form" of the tensor; int8 grids are stored shifted to uint8) and convert
 * to f32 only where a consumer needs floats. A convolution reading such a
 * tensor, whose weights are an 8-bit grid times one scale and whose output
 * ends in a fake quantisation, then runs as one oneDNN int8 convolution (u8
 * src with its zero point, s8 weights, s32 accumulation, output scale,
 * post-ops in f32, dst zero point) that writes q directly; a MatMul with
 * such weights reads q and writes f32.
 *
 * Nothing here changes what the graph computes: the reference kernels keep
 * running the float graph, and every value the int8 path stores is one the
 * float path would have produced. Anything outside that (a zero or
 * non-finite scale, a fractional or out-of-range zero point, weights off any
 * 8-bit grid) is refused and the node stays on the f32 path.
 */
#ifndef TANDEM_DNNL_INT8_H
#define TANDEM_DNNL_INT8_H

#include <dnnl.h>
#include <stdbool.h>
#include <stdint.h>

#include "graph.h"

/* A per-tensor 8-bit grid: real = scale * (q - zp), q of type dt. Grids
 * are always given as u8 (see dnq_grid); dt is kept for the checks. */
typedef struct dnq_params {
    float scale;
    int32_t zp;
    dnnl_data_type_t dt;
} dnq_params;

/* The grid of a fake quantisation (scale, zero point, qmin, qmax as in
 * graph_post), as uint8 (an int8 grid is the uint8 one with the zero point
 * moved by 128): false unless the scale is finite and positive, the zero
 * point integral and inside [qmin, qmax], and [qmin, qmax] is exactly the
 * range of uint8 or int8. */
bool dnq_grid(float scale, float zp, float qmin, float qmax, dnq_params *q);

/* The grid float tensor t of g lies on: its producer's last post-op is a
 * fake quantisation, or its producer is a FAKEQUANT node or a per-tensor
 * DequantizeLinear, without post-ops. False for constants, graph inputs and
 * anything else. */
bool dnq_tensor_params(const graph *g, int t, dnq_params *q);

/* The one scale s with every element of the f32 constant w equal to s * q,
 * q an integer in [-127, 127] (symmetric per-tensor weights, as int8
 * exporters write them). False when no such scale exists. */
bool dnq_weight_scale(const graph_tensor *w, float *scale);

/* Sets on attr the output scale and zero point that a reorder converting
 * tensor t of g from type `from` to type `to` needs: none when neither is
 * an 8-bit type standing for the float tensor's grid. TDM_ERR_UNSUPPORTED
 * when one is and t has no grid of that type. */
int dnq_reorder_attr(const graph *g, int t, dnnl_data_type_t from, dnnl_data_type_t to,
                     dnnl_primitive_attr_t attr);

/* md with its element type changed to dt: only for layouts described by
 * strides alone (no blocking, no extra data such as compensations). */
bool dnq_retype(const dnnl_memory_desc_t *md, dnnl_data_type_t dt, dnnl_memory_desc_t *out);

/* Session rewrite for the oneDNN backend: a FAKEQUANT node (without
 * post-ops) whose input already lies on the same grid is the identity;
 * its readers read the input instead. */
int dnq_drop_requant(graph *g);

#endif
