/*
 * The public engine API on real model files: the real int8 models in
 * data/models/st-int8 (required) and the generated float models in
 * build/test-models (used when `make test-models` has made them). Error
 * paths, model and session info, batch handling, sessions on two threads at
 * once, weight sharing between sessions, and the DNNL backend against REF
 * on whole models.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "session.h"
#include "test.h"

#define ST_MODELS "data/models/st-int8/"
#define MNV2_INT8 ST_MODELS "mobilenet_v2_1.0_224_int8_per_tensor.onnx"
#define MNV1_INT8 ST_MODELS "mobilenet_v1_0.5_128_quant.onnx"
#define MNV2_F32 "build/test-models/mobilenetv2_op13.onnx"
#define RN50_BN "build/test-models/resnet50_op9_bn.onnx"

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static tdm_model *load(const char *path, tdm_backend backend, int threads)
{
    tdm_options opt;
    tdm_options_init(&opt);
    opt.backend = backend;
    opt.threads = threads;
    tdm_model *m = NULL;
    char err[512];
    if (tdm_model_load(path, &opt, &m, err, sizeof err)) fprintf(stderr, "  %s\n", err);
    return m;
}

static void fill(void *buf, size_t n, tdm_dtype dt, unsigned seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        if (dt == TDM_DTYPE_FLOAT)
            ((float *)buf)[i] = (float)((seed >> 8) & 0xffff) / 32768.0f - 1.0f;
        else
            ((unsigned char *)buf)[i] = (unsigned char)(seed >> 16);
    }
}

/* Runs session s on a seeded input; returns the output (malloc'd) or NULL. */
static void *run_session(tdm_session *s, unsigned seed, size_t *nout)
{
    tdm_tensor_info ii;
    tdm_session_input_info(s, &ii);
    size_t nin = tdm_session_input_bytes(s);
    *nout = tdm_session_output_bytes(s);
    void *in = malloc(nin), *out = malloc(*nout);
    fill(in, nin / tdm_dtype_size(ii.dtype), ii.dtype, seed);
    if (tdm_session_run(s, in, nin, out, *nout)) {
        fprintf(stderr, "  %s\n", tdm_session_error(s));
        free(out);
        out = NULL;
    }
    free(in);
    return out;
}

/* Runs a fresh session of m at batch 1 on a seeded input; returns the output
 * (malloc'd) or NULL. */
static void *run_once(tdm_model *m, unsigned seed, size_t *nout)
{
    tdm_session *s;
    char err[512];
    if (tdm_session_create(m, 1, &s, err, sizeof err)) {
        fprintf(stderr, "  %s\n", err);
        return NULL;
    }
    void *out = run_session(s, seed, nout);
    tdm_session_free(s);
    return out;
}

TEST(names_and_options)
{
    ASSERT_STR_EQ(tdm_strerror(TDM_OK), "success");
    ASSERT(strlen(tdm_strerror(TDM_ERR_BACKEND)) > 0);
    ASSERT_STR_EQ(tdm_strerror(-100), "unknown error");
    ASSERT_EQ(tdm_dtype_size(TDM_DTYPE_FLOAT), 4);
    ASSERT_EQ(tdm_dtype_size(TDM_DTYPE_INT64), 8);
    ASSERT_EQ(tdm_dtype_size(TDM_DTYPE_UNDEFINED), 0);
    ASSERT_STR_EQ(tdm_dtype_name(TDM_DTYPE_UINT8), "uint8");
    tdm_options o;
    tdm_options_init(&o);
    ASSERT_EQ(o.threads, 0);
    ASSERT_EQ(o.backend, TDM_BACKEND_DNNL);
    ASSERT_EQ(o.precision, TDM_PRECISION_FP32);
}

TEST(load_errors)
{
    tdm_model *m = (tdm_model *)1;
    char err[512];
    ASSERT_EQ(tdm_model_load("/nonexistent/model.onnx", NULL, &m, err, sizeof err), TDM_ERR_IO);
    ASSERT(strstr(err, "/nonexistent/model.onnx") != NULL);
    ASSERT(m == (tdm_model *)1);
    ASSERT_EQ(tdm_model_load("/tmp", NULL, &m, err, sizeof err), TDM_ERR_IO);

    static const char garbage[] = "this is not a protobuf \xff\xff\xff\xff\xff";
    ASSERT_EQ(tdm_model_load_mem(garbage, sizeof garbage, NULL, &m, err, sizeof err),
              TDM_ERR_PARSE);
    ASSERT(err[0] != '\0');
    ASSERT(tdm_model_load_mem("", 0, NULL, &m, err, sizeof err) < 0);
    ASSERT(m == (tdm_model *)1);

    tdm_options bad;
    tdm_options_init(&bad);
    bad.threads = -1;
    ASSERT_EQ(tdm_model_load(MNV1_INT8, &bad, &m, err, sizeof err), TDM_ERR_INVALID);
}

TEST(truncated_file)
{
    FILE *f = fopen(MNV1_INT8, "rb");
    ASSERT(f != NULL);
    static unsigned char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    ASSERT(n > 1000);
    tdm_model *m = NULL;
    char err[512];
    for (size_t cut = 7; cut < n; cut = cut * 3 + 1) {
        int rc = tdm_model_load_mem(buf, cut, NULL, &m, err, sizeof err);
        ASSERT(rc < 0);
        ASSERT(err[0] != '\0');
    }
}

TEST(model_and_session_info)
{
    tdm_model *m = load(MNV2_INT8, TDM_BACKEND_DNNL, 1);
    ASSERT(m != NULL);
    ASSERT_EQ(tdm_model_ninputs(m), 1);
    ASSERT(tdm_model_noutputs(m) >= 1);
    tdm_tensor_info in, out;
    ASSERT_EQ(tdm_model_input(m, 0, &in), 0);
    ASSERT_EQ(in.dtype, TDM_DTYPE_UINT8);
    ASSERT_EQ(in.rank, 4);
    ASSERT_EQ(in.dims[1], 224);
    ASSERT_EQ(in.dims[3], 3);
    ASSERT_EQ(tdm_model_output(m, 0, &out), 0);
    ASSERT_EQ(out.dtype, TDM_DTYPE_FLOAT);
    ASSERT_EQ(out.rank, 2);
    ASSERT_EQ(out.dims[1], 1000);
    ASSERT_EQ(tdm_model_input(m, 1, &in), TDM_ERR_INVALID);
    ASSERT_EQ(tdm_model_options(m)->threads, 1);

    tdm_session *s;
    char err[512];
    ASSERT_EQ(tdm_session_create(m, 1, &s, err, sizeof err), 0);
    ASSERT_EQ(tdm_session_input_bytes(s), 224 * 224 * 3);
    ASSERT_EQ(tdm_session_output_bytes(s), 1000 * 4);
    ASSERT_EQ(tdm_session_input_info(s, &in), 0);
    ASSERT_EQ(in.dims[0], 1);
    ASSERT_STR_EQ(tdm_session_error(s), "");

    /* Wrong sizes: a clear error, then the session still works. */
    unsigned char *x = calloc(1, 224 * 224 * 3 + 1);
    float y[1000];
    ASSERT_EQ(tdm_session_run(s, x, 224 * 224 * 3 + 1, y, sizeof y), TDM_ERR_INVALID);
    ASSERT(strstr(tdm_session_error(s), "bytes") != NULL);
    ASSERT_EQ(tdm_session_run(s, x, 224 * 224 * 3, y, sizeof y - 4), TDM_ERR_INVALID);
    ASSERT_EQ(tdm_session_run(s, NULL, 0, y, sizeof y), TDM_ERR_INVALID);
    ASSERT_EQ(tdm_session_run(s, x, 224 * 224 * 3, y, sizeof y), 0);
    ASSERT_STR_EQ(tdm_session_error(s), "");
    double sum = 0;
    for (int i = 0; i < 1000; i++)
        sum += y[i];
    ASSERT_NEAR(sum, 1.0, 0.2); /* softmax probabilities, quantised to 1/256 */
    free(x);
    tdm_session_free(s);
    tdm_model_free(m);
}

/* What the outputs hold: probabilities behind a dequantisation (MobileNetV2
 * int8), 8-bit probabilities with their scale (MobileNetV1 int8), logits
 * (the torchvision export). */
TEST(output_origin)
{
    char err[512];
    tdm_output_origin o;
    tdm_model *m = load(MNV2_INT8, TDM_BACKEND_DNNL, 1);
    ASSERT(m != NULL);
    ASSERT_EQ(tdm_model_output_origin(m, 0, &o, err, sizeof err), 0);
    ASSERT_EQ(o.softmax, 1);
    ASSERT_EQ(o.quantised, 0);
    ASSERT_EQ(tdm_model_output_origin(m, 1, &o, err, sizeof err), TDM_ERR_INVALID);
    tdm_model_free(m);

    ASSERT((m = load(MNV1_INT8, TDM_BACKEND_DNNL, 1)) != NULL);
    ASSERT_EQ(tdm_model_output_origin(m, 0, &o, err, sizeof err), 0);
    ASSERT_EQ(o.softmax, 1);
    ASSERT_EQ(o.quantised, 1);
    ASSERT(o.scale > 0 && o.scale < 0.01f); /* 8-bit probabilities: about 1/256 */
    tdm_model_free(m);

    if (!exists(MNV2_F32)) SKIP("run `make test-models` for the float models");
    ASSERT((m = load(MNV2_F32, TDM_BACKEND_DNNL, 1)) != NULL);
    ASSERT_EQ(tdm_model_output_origin(m, 0, &o, err, sizeof err), 0);
    ASSERT_EQ(o.softmax, 0);
    ASSERT_EQ(o.quantised, 0);
    tdm_model_free(m);
}

TEST(batch_handling)
{
    char err[512];
    tdm_session *s = NULL;
    tdm_model *fixed = load(MNV1_INT8, TDM_BACKEND_DNNL, 1);
    ASSERT(fixed != NULL);
    ASSERT_EQ(tdm_session_create(fixed, 2, &s, err, sizeof err), TDM_ERR_INVALID);
    ASSERT(strstr(err, "batch") != NULL);
    ASSERT_EQ(tdm_session_create(fixed, 0, &s, err, sizeof err), TDM_ERR_INVALID);
    ASSERT(s == NULL);
    tdm_model_free(fixed);

    /* A free batch: two identical images give two identical rows, equal to
     * the batch-1 answer. */
    tdm_model *m = load(MNV2_INT8, TDM_BACKEND_DNNL, 1);
    ASSERT(m != NULL);
    tdm_tensor_info in;
    tdm_model_input(m, 0, &in);
    if (in.dims[0] != -1) {
        tdm_model_free(m);
        SKIP("%s has a fixed batch dimension", MNV2_INT8);
    }
    size_t n1;
    float *one = run_once(m, 5, &n1);
    ASSERT(one != NULL);
    ASSERT_EQ(tdm_session_create(m, 2, &s, err, sizeof err), 0);
    size_t nin = tdm_session_input_bytes(s), nout = tdm_session_output_bytes(s);
    ASSERT_EQ(nin, 2 * 224 * 224 * 3);
    ASSERT_EQ(nout, 2 * n1);
    unsigned char *x = malloc(nin);
    fill(x, nin / 2, TDM_DTYPE_UINT8, 5);
    memcpy(x + nin / 2, x, nin / 2);
    float *y = malloc(nout);
    ASSERT_EQ(tdm_session_run(s, x, nin, y, nout), 0);
    for (size_t i = 0; i < n1 / 4; i++) {
        ASSERT_NEAR(y[i], one[i], 1e-6);
        ASSERT_NEAR(y[i + n1 / 4], one[i], 1e-6);
    }
    free(x);
    free(y);
    free(one);
    tdm_session_free(s);
    tdm_model_free(m);
}

/* ---- two sessions, two threads ----------------------------------------- */

typedef struct job {
    tdm_model *m;
    float *out;
    size_t n;
} job;

static void *worker(void *arg)
{
    job *j = arg;
    for (int i = 0; i < 3; i++) {
        free(j->out);
        j->out = run_once(j->m, 9, &j->n);
    }
    return NULL;
}

TEST(concurrent_sessions)
{
    const char *path = exists(MNV2_F32) ? MNV2_F32 : MNV2_INT8;
    tdm_model *m = load(path, TDM_BACKEND_DNNL, 1);
    ASSERT(m != NULL);
    size_t n;
    float *expect = run_once(m, 9, &n);
    ASSERT(expect != NULL);
    job a = {m, NULL, 0}, b = {m, NULL, 0};
    pthread_t ta, tb;
    ASSERT_EQ(pthread_create(&ta, NULL, worker, &a), 0);
    ASSERT_EQ(pthread_create(&tb, NULL, worker, &b), 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    ASSERT(a.out != NULL && b.out != NULL);
    ASSERT_EQ(a.n, n);
    ASSERT_EQ(memcmp(a.out, expect, n), 0);
    ASSERT_EQ(memcmp(b.out, expect, n), 0);
    free(a.out);
    free(b.out);
    free(expect);
    tdm_model_free(m);
}

static int count_weights(tdm_model *m)
{
    int n = 0;
    for (model_weight *w = m->weights; w; w = w->next)
        n++;
    return n;
}

TEST(sessions_share_weights)
{
    tdm_model *m = load(MNV2_INT8, TDM_BACKEND_DNNL, 1);
    ASSERT(m != NULL);
    tdm_session *s1, *s2;
    char err[512];
    ASSERT_EQ(tdm_session_create(m, 1, &s1, err, sizeof err), 0);
    int n1 = count_weights(m);
    ASSERT(n1 > 10);
    ASSERT_EQ(tdm_session_create(m, 1, &s2, err, sizeof err), 0);
    ASSERT_EQ(count_weights(m), n1);
    session_stats st;
    session_get_stats(s1, &st);
    ASSERT(st.prim_steps > 50);
    ASSERT(st.arena_bytes < st.buffer_bytes / 2); /* buffers reuse memory */
    tdm_session_free(s1);
    tdm_session_free(s2);
    tdm_model_free(m);
}

/* Whole models: the oneDNN backend against the reference backend. Outputs
 * agree within tol of the largest, except (step > 0, quantised models) at
 * most 1 % of them by more than one quantisation step; top-1 agrees. */
static void agree(const char *path, double tol, double step, int *failed_)
{
    tdm_model *r = load(path, TDM_BACKEND_REF, 1), *d = load(path, TDM_BACKEND_DNNL, 2);
    ASSERT(r != NULL && d != NULL);
    size_t nr, nd;
    float *yr = run_once(r, 3, &nr), *yd = run_once(d, 3, &nd);
    ASSERT(yr != NULL && yd != NULL);
    ASSERT_EQ(nr, nd);
    double mx = 0, worst = 0;
    int ar = 0, ad = 0;
    size_t off = 0, n = nr / 4;
    for (size_t i = 0; i < n; i++) {
        if (fabs(yr[i]) > mx) mx = fabs(yr[i]);
        if (fabs(yr[i] - yd[i]) > worst) worst = fabs(yr[i] - yd[i]);
        if (fabs(yr[i] - yd[i]) > step * 1.01) off++;
        if (yr[i] > yr[ar]) ar = (int)i;
        if (yd[i] > yd[ad]) ad = (int)i;
    }
    fprintf(stderr, "  %s: max |ref - dnnl| %g of %g\n", path, worst, mx);
    if (step > 0)
        ASSERT(off * 100 <= n);
    else
        ASSERT(worst <= tol * mx);
    ASSERT(yr[ad] >= yr[ar] - tol * mx); /* same top-1, ties allowed */
    free(yr);
    free(yd);
    tdm_model_free(r);
    tdm_model_free(d);
}

/* Same bytes from session s as from a session of the same batch on an
 * untrimmed copy of the model. */
static bool same_as_untrimmed(const char *path, tdm_session *s, int batch)
{
    tdm_model *m0 = load(path, TDM_BACKEND_DNNL, 1);
    tdm_session *s0 = NULL;
    char err[512];
    size_t n0 = 0, n = 0;
    if (!m0 || tdm_session_create(m0, batch, &s0, err, sizeof err)) return false;
    void *y0 = run_session(s0, 7, &n0), *y = run_session(s, 7, &n);
    bool same = y0 && y && n0 == n && !memcmp(y0, y, n);
    free(y0);
    free(y);
    tdm_session_free(s0);
    tdm_model_free(m0);
    return same;
}

/* tdm_model_trim frees the plain copies of weights the sessions hold
 * converted; the sessions still compute the same bytes, and a later session
 * (another batch: other layouts may be wanted) gets them back exactly. */
static void trim_model(const char *path, bool expect_freed, int *failed_)
{
    tdm_model *m = load(path, TDM_BACKEND_DNNL, 1);
    ASSERT(m != NULL);
    tdm_session *a = NULL, *b = NULL;
    char err[512];
    size_t freed = 0;
    ASSERT_EQ(tdm_session_create(m, 1, &a, err, sizeof err), 0);
    ASSERT_EQ(tdm_model_trim(m, &freed), 0);
    fprintf(stderr, "  %s: trim freed %zu bytes\n", path, freed);
    if (expect_freed) ASSERT(freed > (size_t)1 << 20);
    ASSERT(same_as_untrimmed(path, a, 1));
    ASSERT_EQ(tdm_model_trim(m, &freed), 0);
    ASSERT_EQ(freed, 0);
    ASSERT_EQ(tdm_session_create(m, 2, &b, err, sizeof err), 0);
    ASSERT(same_as_untrimmed(path, b, 2));
    ASSERT(same_as_untrimmed(path, a, 1));
    ASSERT_EQ(tdm_model_trim(m, &freed), 0);
    if (expect_freed) ASSERT(freed > (size_t)1 << 20);
    ASSERT(same_as_untrimmed(path, b, 2));
    tdm_session_free(a);
    tdm_session_free(b);
    tdm_model_free(m);
}

TEST(trim_keeps_one_copy_of_the_weights)
{
    trim_model(MNV2_INT8, false, failed_);
    if (*failed_) return;
    if (!exists(MNV2_F32)) {
        SKIP("run `make test-models` for the float models");
    }
    trim_model(MNV2_F32, true, failed_);
}

TEST(dnnl_matches_ref_float_models)
{
    if (!exists(MNV2_F32) || !exists(RN50_BN)) {
        SKIP("run `make test-models` for the float models");
    }
    agree(MNV2_F32, 1e-4, 0, failed_);
    agree(RN50_BN, 1e-4, 0, failed_);
}

TEST(dnnl_matches_ref_int8_model)
{
    /* Fake quantisation may flip a rounding tie somewhere; the output step
     * is 1/256 (the quantised softmax). */
    agree(MNV2_INT8, 0, 1.0 / 256, failed_);
}

TEST_MAIN()
