/*
 * tandem engine: run standard ONNX image classifiers on the CPU.
 *
 * A short tour:
 *
 *     tdm_options opt;
 *     tdm_options_init(&opt);
 *     opt.threads = 2;
 *
 *     tdm_model *model;
 *     char err[256];
 *     if (tdm_model_load("resnet50.onnx", &opt, &model, err, sizeof err) < 0)
 *         fprintf(stderr, "%s\n", err);
 *
 *     tdm_session *s;                        // one per thread
 *     tdm_session_create(model, 1, &s, err, sizeof err);
 *     tdm_session_run(s, input, tdm_session_input_bytes(s),
 *                     output, tdm_session_output_bytes(s));
 *     tdm_session_free(s);
 *     tdm_model_free(model);
 *
 * A model is immutable once loaded and may be shared by any number of sessions
 * on any threads. A session owns everything one inference needs (buffers,
 * kernels, planned for a fixed batch size), so running it allocates nothing; a
 * session must be used by one thread at a time.
 *
 * Every function that can fail returns 0 or a negative tdm_status and sets its
 * out-parameters only on success; tdm_strerror() names the status and the
 * err buffer (or tdm_session_error()) says what exactly went wrong.
 */
#ifndef TANDEM_ENGINE_H
#define TANDEM_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TDM_MAX_RANK 8

typedef enum {
    TDM_OK = 0,
    TDM_ERR_NOMEM = -1,       /* an allocation failed or a size cap was hit */
    TDM_ERR_IO = -2,          /* a file could not be read or written */
    TDM_ERR_PARSE = -3,       /* the model file is not valid ONNX */
    TDM_ERR_UNSUPPORTED = -4, /* a valid model uses an op or attribute we do not run */
    TDM_ERR_INVALID = -5,     /* bad argument: wrong size, shape or option */
    TDM_ERR_BACKEND = -6,     /* oneDNN refused or failed */
    TDM_ERR_IMAGE = -7,       /* the bytes are not a usable image */
    TDM_ERR_LIMIT = -8        /* input exceeds a configured limit (e.g. pixel count) */
} tdm_status;

/* Element types; the values are those of ONNX's TensorProto.DataType. */
typedef enum {
    TDM_DTYPE_UNDEFINED = 0,
    TDM_DTYPE_FLOAT = 1,
    TDM_DTYPE_UINT8 = 2,
    TDM_DTYPE_INT8 = 3,
    TDM_DTYPE_INT32 = 6,
    TDM_DTYPE_INT64 = 7,
    TDM_DTYPE_BOOL = 9,
    TDM_DTYPE_BFLOAT16 = 16
} tdm_dtype;

typedef enum { TDM_PRECISION_FP32 = 0, TDM_PRECISION_BF16 = 1 } tdm_precision;

/* DNNL is the fast path; REF runs every node with the plain C reference kernels. */
typedef enum { TDM_BACKEND_DNNL = 0, TDM_BACKEND_REF = 1 } tdm_backend;

typedef struct tdm_options {
    int threads;             /* compute threads per session run; 0 = all CPUs */
    tdm_precision precision; /* BF16 applies to float models only */
    tdm_backend backend;
} tdm_options;

typedef struct tdm_tensor_info {
    const char *name; /* valid while the model lives */
    tdm_dtype dtype;
    int rank;
    int64_t dims[TDM_MAX_RANK]; /* -1 marks a dimension fixed only per session (batch) */
} tdm_tensor_info;

typedef struct tdm_model tdm_model;
typedef struct tdm_session tdm_session;

const char *tdm_strerror(int status);
size_t tdm_dtype_size(tdm_dtype dtype); /* 0 for an unknown dtype */
const char *tdm_dtype_name(tdm_dtype dtype);

void tdm_options_init(tdm_options *opt);

/* Loads, checks and optimises a model. Unsupported ops are refused here, with
 * the node's name and op type in err. */
int tdm_model_load(const char *path, const tdm_options *opt, tdm_model **out, char *err,
                   size_t errlen);
int tdm_model_load_mem(const void *data, size_t len, const tdm_options *opt, tdm_model **out,
                       char *err, size_t errlen);
void tdm_model_free(tdm_model *model);

/* Frees the model's own (plain) copy of each large weight that the sessions
 * planned so far only read in a converted layout, so that a process holds
 * one copy of its weights, not two. Sessions keep running unchanged; a
 * session created afterwards first converts the freed weights back, exactly
 * (slower, and the plain copies are held again until the next trim). Does
 * nothing while a session of the model is being created. freed_bytes (may
 * be NULL) receives the bytes freed. */
int tdm_model_trim(tdm_model *model, size_t *freed_bytes);

int tdm_model_ninputs(const tdm_model *model);
int tdm_model_noutputs(const tdm_model *model);
int tdm_model_input(const tdm_model *model, int i, tdm_tensor_info *out);
int tdm_model_output(const tdm_model *model, int i, tdm_tensor_info *out);
const tdm_options *tdm_model_options(const tdm_model *model);

/* Where the values of output i come from, read off the optimised graph by
 * walking back through ops that do not change values (reshapes, casts,
 * quantisation round trips). */
typedef struct tdm_output_origin {
    int softmax;   /* a Softmax wrote them: they are probabilities */
    int quantised; /* a per-tensor QuantizeLinear wrote them, and then */
    float scale;   /* value = (q - zero_point) * scale */
    int zero_point;
} tdm_output_origin;

/* TDM_ERR_UNSUPPORTED when output i is written by a QuantizeLinear whose
 * scale and zero point are not per-tensor constants. */
int tdm_model_output_origin(const tdm_model *model, int i, tdm_output_origin *out, char *err,
                            size_t errlen);

/* Plans a session for a batch size (>= 1): shapes, buffers and kernels are
 * fixed here so that tdm_session_run() allocates nothing. */
int tdm_session_create(tdm_model *model, int batch, tdm_session **out, char *err, size_t errlen);
void tdm_session_free(tdm_session *s);

/* Concrete shapes of the first input and first output for this session. */
int tdm_session_input_info(const tdm_session *s, tdm_tensor_info *out);
int tdm_session_output_info(const tdm_session *s, tdm_tensor_info *out);
size_t tdm_session_input_bytes(const tdm_session *s);
size_t tdm_session_output_bytes(const tdm_session *s);

/* Runs the model on the first input (raw bytes in the model's own dtype and
 * layout) and writes the first output. Sizes must match exactly. */
int tdm_session_run(tdm_session *s, const void *input, size_t input_len, void *output,
                    size_t output_len);

/* The message of the last failure of this session, "" if none. */
const char *tdm_session_error(const tdm_session *s);

#ifdef __cplusplus
}
#endif
#endif
