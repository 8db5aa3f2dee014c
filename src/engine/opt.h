/*
 * opt: graph rewrites. Load-time passes run once per model; session-time
 * passes run on each session's clone once the batch size is known.
 */
#ifndef TANDEM_OPT_H
#define TANDEM_OPT_H

#include "graph.h"

/* Load time: drop Identity/Dropout, fold constant subgraphs (Constant nodes,
 * DequantizeLinear of weights, ...), fold BatchNormalization into the Conv
 * before it, turn QuantizeLinear->DequantizeLinear pairs into OP_FAKEQUANT. */
int opt_model(graph *g);

/* Infers every tensor's shape in topological order (ops_infer), folding
 * constant nodes as they become computable (Shape of a known tensor, Gather,
 * Concat, ...), so shape-computing subgraphs vanish once shapes are known.
 * Then normalises what kernels would otherwise read several ways: auto_pad
 * becomes explicit pads, Clip's constant bound inputs its min/max attributes. */
int opt_infer_and_fold(graph *g);

/* Session time (shapes known): fuse Relu, Clip, Min/Max with a scalar
 * constant, OP_FAKEQUANT and a same-shape Add into the preceding Conv, Gemm,
 * MatMul or Add as post-ops. */
int opt_fuse(graph *g);

/* Session time, oneDNN backend only, after opt_fuse (opt_dnnl.c): zero Pads
 * into the following convolution's padding, and element-wise chains behind
 * binary and element-wise nodes as their post-ops. */
int opt_dnnl(graph *g);

#endif
