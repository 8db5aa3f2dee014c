/*
 * kern_ref_impl: the helpers every reference kernel file uses (error
 * messages, input checks, reading an element of any dtype, axes). The
 * ground floor of kern_ref*.c: it calls none of them.
 */
#include <stdarg.h>
#include <stdio.h>

#include "kern_ref_impl.h"
#include "ops.h"

int ref_fail(const graph_node *n, char *err, size_t errlen, int status, const char *fmt, ...)
{
    if (err && errlen) {
        const char *type = n->op_type ? n->op_type : ops_name(n->op);
        int k = snprintf(err, errlen, "node '%s' (%s): ", n->name ? n->name : "", type);
        if (k >= 0 && (size_t)k < errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(err + k, errlen - (size_t)k, fmt, ap);
            va_end(ap);
        }
    }
    return status;
}

int ref_need_inputs(const graph_node *n, const ref_args *a, int count, char *err, size_t errlen)
{
    if (a->nin < count)
        return ref_fail(n, err, errlen, TDM_ERR_INVALID, "needs %d inputs, got %d", count, a->nin);
    for (int i = 0; i < count; i++)
        if (!a->in[i]) return ref_fail(n, err, errlen, TDM_ERR_INVALID, "input %d is missing", i);
    return 0;
}

const graph_tensor *ref_opt_input(const ref_args *a, int i)
{
    return i < a->nin ? a->in[i] : NULL;
}

bool ref_read_i64(const graph_tensor *t, const void *data, int64_t i, int64_t *v)
{
    switch (t->dtype) {
    case TDM_DTYPE_INT64:
        *v = ((const int64_t *)data)[i];
        return true;
    case TDM_DTYPE_INT32:
        *v = ((const int32_t *)data)[i];
        return true;
    case TDM_DTYPE_INT8:
        *v = ((const int8_t *)data)[i];
        return true;
    case TDM_DTYPE_UINT8:
    case TDM_DTYPE_BOOL:
        *v = ((const uint8_t *)data)[i];
        return true;
    case TDM_DTYPE_FLOAT: {
        float f = ((const float *)data)[i];
        if (!(f >= -9.2e18f && f <= 9.2e18f)) return false;
        *v = (int64_t)f;
        return true;
    }
    default:
        return false;
    }
}

bool ref_read_f32(const graph_tensor *t, const void *data, int64_t i, float *v)
{
    switch (t->dtype) {
    case TDM_DTYPE_FLOAT:
        *v = ((const float *)data)[i];
        return true;
    case TDM_DTYPE_INT64:
        *v = (float)((const int64_t *)data)[i];
        return true;
    case TDM_DTYPE_INT32:
        *v = (float)((const int32_t *)data)[i];
        return true;
    case TDM_DTYPE_INT8:
        *v = ((const int8_t *)data)[i];
        return true;
    case TDM_DTYPE_UINT8:
    case TDM_DTYPE_BOOL:
        *v = ((const uint8_t *)data)[i];
        return true;
    default:
        return false;
    }
}

bool ref_axis(int64_t axis, int rank, int *out)
{
    if (axis < -rank || axis >= rank) return false;
    *out = (int)(axis < 0 ? axis + rank : axis);
    return true;
}
