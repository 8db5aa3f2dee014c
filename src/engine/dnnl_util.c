/*
 * dnnl_util: the oneDNN vocabulary every backend file shares — the process-
 * wide CPU engine, status and type mapping, plain row-major descriptors. It
 * calls no other backend file, so dnnl_ops, dnnl_post, dnnl_int8 and the
 * session planner all stand on it.
 */
#include <pthread.h>

#include "dnnl_util.h"
#include "tandem/engine.h"

static dnnl_engine_t engine;
static pthread_once_t engine_once = PTHREAD_ONCE_INIT;

static void engine_init(void)
{
    if (dnnl_engine_create(&engine, dnnl_cpu, 0) != dnnl_success) engine = NULL;
}

dnnl_engine_t dn_engine(void)
{
    pthread_once(&engine_once, engine_init);
    return engine;
}

int dn_status(dnnl_status_t s)
{
    switch (s) {
    case dnnl_success:
        return 0;
    case dnnl_out_of_memory:
        return TDM_ERR_NOMEM;
    case dnnl_unimplemented:
        return TDM_ERR_UNSUPPORTED;
    default:
        return TDM_ERR_BACKEND;
    }
}

dnnl_data_type_t dn_type(tdm_dtype dt)
{
    switch (dt) {
    case TDM_DTYPE_FLOAT:
        return dnnl_f32;
    case TDM_DTYPE_UINT8:
        return dnnl_u8;
    case TDM_DTYPE_INT8:
        return dnnl_s8;
    case TDM_DTYPE_INT32:
        return dnnl_s32;
    case TDM_DTYPE_BFLOAT16:
        return dnnl_bf16;
    default:
        return dnnl_data_type_undef;
    }
}

bool dn_plain_dims(int rank, const int64_t *dims, dnnl_data_type_t dt, dnnl_memory_desc_t *md)
{
    dnnl_dims_t d, st;
    int nd = rank > 0 ? rank : 1;
    if (rank > DNNL_MAX_NDIMS || dt == dnnl_data_type_undef) return false;
    if (rank <= 0) d[0] = 1;
    for (int i = 0; i < rank; i++) {
        if (dims[i] < 0) return false;
        d[i] = dims[i];
    }
    dnnl_dim_t s = 1;
    for (int i = nd - 1; i >= 0; i--) {
        st[i] = s;
        s *= d[i] > 0 ? d[i] : 1;
    }
    return dnnl_memory_desc_init_by_strides(md, nd, d, dt, st) == dnnl_success;
}

bool dn_plain_md(const graph_tensor *t, dnnl_data_type_t dt, dnnl_memory_desc_t *md)
{
    if (dt == dnnl_data_type_undef) dt = dn_type(t->dtype);
    return dn_plain_dims(t->rank, t->dims, dt, md);
}
