/*
 * kern_ref: the reference kernels, one plain C implementation per op.
 *
 * They define what each op computes: constant folding runs them, the REF
 * backend runs whole models on them, and the tests check every oneDNN kernel
 * against them. Clarity beats speed here.
 *
 * All buffers are plain row-major in the tensor's dtype and shape as given by
 * the graph_tensor (whose shape must be fully known). Fused post-ops in
 * node->post are applied to the output in order.
 */
#ifndef TANDEM_KERN_REF_H
#define TANDEM_KERN_REF_H

#include "kern_ref_impl.h"

/* Runs node n. Returns 0, or TDM_ERR_UNSUPPORTED / TDM_ERR_INVALID with a
 * message in err. Never allocates more than O(output) scratch. */
int ref_run(const graph_node *n, const ref_args *a, char *err, size_t errlen);

#endif
