/*
 * dnnl_post: the post-op compiler of the oneDNN backend (see dnnl_post.c),
 * and the helpers the builders in dnnl_ops.c share with it.
 */
#ifndef TANDEM_DNNL_POST_H
#define TANDEM_DNNL_POST_H

#include "dnnl_util.h"

/* What a primitive's output goes through: the anchor's own element-wise op
 * (for a standalone chain) and then the node's post-ops, as items. */
enum { CI_RELU, CI_CLIP, CI_FQ, CI_SUM, CI_RAW, CI_BIN };

typedef struct citem {
    int kind;
    float a, b, c, d;    /* CLIP: a, b; FQ: scale, zero point, qmin, qmax; RAW: a, b */
    dnnl_alg_kind_t alg; /* RAW; BIN: dnnl_binary_min or _max */
    int tensor;          /* SUM: the addend; BIN: the per-channel constant */
} citem;

/* What differs for a primitive writing 8-bit data (see dnnl_int8.h). */
typedef struct qchain {
    float k0;                /* the primitive's own output is the true value / k0 */
    dnnl_data_type_t dst_dt; /* u8 or s8: dst holds the last fake quantisation's integers */
} qchain;

/* A primitive attribute with a user-managed scratchpad (so sessions on
 * different threads never share one) and, from pre[0..npre) then node n's
 * post-ops (n may be NULL), its post-ops; what does not fit goes to in-place
 * follow-up passes (p->follow_po). allow_sum: the primitive can take a sum
 * post-op. q: the post-ops of an 8-bit primitive, or NULL. Sets
 * p->sum_tensor and adds post-op operands to p's inputs. */
int dn_attr(const graph *g, const graph_node *n, const citem *pre, int npre, bool allow_sum,
            const qchain *q, dn_prim *p, dnnl_primitive_attr_t *out);

/* Adds an input the primitive (or a follow-up pass) reads. */
dn_input *dn_add_input(dn_prim *p, int arg, int tensor);

/* A constant input: its payload as it is (user_md) and the layout wanted. */
void dn_add_const(dn_prim *p, int arg, int tensor, const void *data,
                  const dnnl_memory_desc_t *user_md, const dnnl_memory_desc_t *md);

/* Tensor t is a float tensor of known rank. */
bool dn_is_float(const graph *g, int t);

#endif
