/*
 * dnnl_util: the oneDNN backend's kernels, as seen by the session planner.
 *
 * For one graph node, dn_build() creates a oneDNN primitive descriptor and
 * says what the primitive reads (each input: the layout it wants, and for
 * constants where their bytes are) and what it writes (the layout of the
 * output). The planner (session.c) owns layouts and buffers: it converts
 * tensors into the wanted layouts, converts and caches weights, places every
 * buffer in the session's arena, and creates the primitive.
 *
 * A builder refuses (TDM_ERR_UNSUPPORTED) what oneDNN cannot run or can run
 * only with its slow reference code; the planner then runs the node on the
 * reference kernels (kern_ref.h) instead.
 */
#ifndef TANDEM_DNNL_UTIL_H
#define TANDEM_DNNL_UTIL_H

#include <dnnl.h>
#include <stdbool.h>

#include "graph.h"

#define DN_MAX_IN 6
#define DN_MAX_FOLLOW 4

typedef struct dn_input {
    int arg;           /* DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, ... */
    int tensor;        /* graph tensor index; -1 for a builder-made constant */
    const void *cdata; /* constant payload (plain bytes in user_md's layout), or NULL */
    dnnl_memory_desc_t user_md; /* constants: the layout of cdata */
    dnnl_memory_desc_t md;      /* the layout the tensor must be in (in its own dims) */
    dnnl_memory_desc_t exec_md; /* how the primitive views those bytes; ndims 0: md itself */
    int pass; /* who reads it: 0 the primitive, k > 0 follow-up pass k - 1 (a post-op operand) */
    float qscale; /* constants: 0, or the factor converting cdata into md multiplies by */
} dn_input;

typedef struct dn_prim {
    dnnl_primitive_desc_t pd;
    int nin;
    dn_input in[DN_MAX_IN];
    dnnl_memory_desc_t dst_md;      /* layout of output 0 */
    dnnl_memory_desc_t dst_exec_md; /* ndims 0: dst_md itself */
    int sum_tensor; /* POST_SUM addend: must be in dst (layout dst_md) before execution; -1 */
    /* Passes over dst after the primitive (in place: dst + zero, with the
     * post-ops one primitive could not take; see dnnl_ops.c). */
    int nfollow;
    dnnl_primitive_desc_t follow[DN_MAX_FOLLOW];
    dnnl_post_ops_t follow_po[DN_MAX_FOLLOW]; /* builder-internal */
    dnnl_memory_desc_t zero_md;
    const void *zero;
} dn_prim;

/* What a builder may ask of the planner. */
typedef struct dn_ctx {
    dnnl_engine_t eng;
    bool bf16; /* run convolutions and inner products in bf16 */
    bool plain; /* every activation plain row-major (the fallback when a layout fails) */
    /* The layout tensor t is in now (NULL when it has none oneDNN knows). */
    const dnnl_memory_desc_t *(*layout)(void *planner, int t);
    void *planner;
} dn_ctx;

/* The process-wide CPU engine, created on first use; NULL if oneDNN fails. */
dnnl_engine_t dn_engine(void);

/* oneDNN's status as a tdm_status. */
int dn_status(dnnl_status_t s);

/* Plain row-major descriptor of a tensor's shape in the given oneDNN type
 * (dnnl_data_type_undef: the tensor's own dtype). Fails on dtypes oneDNN has
 * no type for. A rank-0 tensor is described as one element of rank 1. */
bool dn_plain_md(const graph_tensor *t, dnnl_data_type_t dt, dnnl_memory_desc_t *md);

/* Plain row-major descriptor of explicit dims. */
bool dn_plain_dims(int rank, const int64_t *dims, dnnl_data_type_t dt, dnnl_memory_desc_t *md);

/* The oneDNN type of a tensor dtype (dnnl_data_type_undef if none). */
dnnl_data_type_t dn_type(tdm_dtype dt);

/* Builds the primitive for node `node` of g (whose shapes are all known).
 * On success p->pd must be destroyed by the caller. */
int dn_build(const dn_ctx *c, const graph *g, int node, dn_prim *p);

/* Whether op is one of the element-wise ops dn_build runs alone (one binary
 * primitive carrying the chain; dnnl_ops.c) and so may anchor a post-op chain. */
bool dn_is_eltwise(graph_op op);

/* The count of oneDNN post-ops node posts expand to (a fake quantisation
 * takes four). */
int dn_post_cost(const graph_post *p);

/* The most post-ops one primitive takes. */
#define DN_MAX_POSTS 32

#endif
