/*
 * dtype: the element types of include/tandem/engine.h, their sizes and names.
 * The ground floor of the engine: the loader, the kernels, the optimiser and
 * the session all speak this vocabulary, and it calls nothing of theirs.
 */
#include <stddef.h>

#include "tandem/engine.h"

size_t tdm_dtype_size(tdm_dtype dtype)
{
    switch (dtype) {
    case TDM_DTYPE_FLOAT:
    case TDM_DTYPE_INT32:
        return 4;
    case TDM_DTYPE_UINT8:
    case TDM_DTYPE_INT8:
    case TDM_DTYPE_BOOL:
        return 1;
    case TDM_DTYPE_INT64:
        return 8;
    case TDM_DTYPE_BFLOAT16:
        return 2;
    default:
        return 0;
    }
}

const char *tdm_dtype_name(tdm_dtype dtype)
{
    switch (dtype) {
    case TDM_DTYPE_FLOAT:
        return "float32";
    case TDM_DTYPE_UINT8:
        return "uint8";
    case TDM_DTYPE_INT8:
        return "int8";
    case TDM_DTYPE_INT32:
        return "int32";
    case TDM_DTYPE_INT64:
        return "int64";
    case TDM_DTYPE_BOOL:
        return "bool";
    case TDM_DTYPE_BFLOAT16:
        return "bfloat16";
    default:
        return "undefined";
    }
}
