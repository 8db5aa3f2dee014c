/*
 * kern_ref_impl: what the reference kernel files share. Private to
 * kern_ref.c (dispatch, element-wise, quantisation, post-ops), kern_ref_conv.c
 * (Conv, pools, Gemm, MatMul, BatchNormalization, Softmax) and kern_ref_data.c
 * (data movement, shape ops, Cast).
 *
 * Every kernel has the signature of ref_run and is called by ref_run after it
 * checked that out[0] exists; each kernel checks its own inputs. The helpers
 * below are defined in kern_ref_impl.c, the kernels in their family's file.
 */
#ifndef TANDEM_KERN_REF_IMPL_H
#define TANDEM_KERN_REF_IMPL_H

#include "graph.h"

typedef struct ref_args {
    int nin;
    const graph_tensor *const *in; /* in[i] == NULL for an omitted optional input */
    const void *const *in_data;
    int nout;
    const graph_tensor *const *out;
    void *const *out_data;
} ref_args;

typedef int (*ref_kernel)(const graph_node *n, const ref_args *a, char *err, size_t errlen);

/* Formats "node 'NAME' (OP): message" into err and returns status. */
int ref_fail(const graph_node *n, char *err, size_t errlen, int status, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* Fails unless inputs 0..count-1 are present with data. */
int ref_need_inputs(const graph_node *n, const ref_args *a, int count, char *err, size_t errlen);

/* Input i if present with data, else NULL (an omitted optional input). */
const graph_tensor *ref_opt_input(const ref_args *a, int i);

/* Element i of a tensor of any integer, bool or float dtype, converted. Fails
 * (returns false) only on a dtype we do not read. */
bool ref_read_i64(const graph_tensor *t, const void *data, int64_t i, int64_t *v);
bool ref_read_f32(const graph_tensor *t, const void *data, int64_t i, float *v);

/* Normalises a possibly negative axis against rank; false if out of range. */
bool ref_axis(int64_t axis, int rank, int *out);

/* Conv, pools, matrix products, normalisation (kern_ref_conv.c). */
int ref_conv(const graph_node *n, const ref_args *a, char *err, size_t errlen);
int ref_maxpool(const graph_node *n, const ref_args *a, char *err, size_t errlen);
int ref_avgpool(const graph_node *n, const ref_args *a, char *err, size_t errlen);
int ref_global_pool(const graph_node *n, const ref_args *a, char *err, size_t errlen);
int ref_gemm(const graph_node *n, const ref_args *a, char *err, size_t errlen);
int ref_matmul(const graph_node *n, const ref_args *a, char *err, size_t errlen);
int ref_batchnorm(const graph_node *n, const ref_args *a, char *err, size_t errlen);
int ref_softmax(const graph_node *n, const ref_args *a, char *err, size_t errlen);

/* Data movement and shape ops (kern_ref_data.c). */
int ref_copy(const graph_node *n, const ref_args *a, char *err, size_t errlen);
int ref_transpose(const graph_node *n, const ref_args *a, char *err, size_t errlen);
int ref_concat(const graph_node *n, const ref_args *a, char *err, size_t errlen);
int ref_pad(const graph_node *n, const ref_args *a, char *err, size_t errlen);
int ref_shape(const graph_node *n, const ref_args *a, char *err, size_t errlen);
int ref_gather(const graph_node *n, const ref_args *a, char *err, size_t errlen);
int ref_slice(const graph_node *n, const ref_args *a, char *err, size_t errlen);
int ref_cast(const graph_node *n, const ref_args *a, char *err, size_t errlen);

#endif
