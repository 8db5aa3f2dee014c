/*
 * backend_run: builds a test graph, plans it on one backend and runs it on a
 * fixed pseudo-random input: the harness of test_dnnl and test_int8, which
 * compare the oneDNN backend against the reference kernels.
 */
#ifndef TANDEM_TEST_BACKEND_RUN_H
#define TANDEM_TEST_BACKEND_RUN_H

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph.h"
#include "session.h"

/* The builders' random stream; run_backend reseeds it per variant, so both
 * backends build the same graph. */
static unsigned rng = 1;

/* Pseudo-random in [-1, 1). */
static inline float frand(void)
{
    rng = rng * 1103515245u + 12345u;
    return (float)((rng >> 8) & 0xffff) / 32768.0f - 1.0f;
}

typedef void (*builder)(graph *g, int variant);

typedef struct result {
    float *out;
    size_t n;
    session_stats st;
} result;

/* Builds variant with b and runs it on backend at precision with threads.
 * A float input gets values in [-in_scale, in_scale); an 8-bit one, bytes
 * in [0, 127). The caller frees r->out. */
static inline int run_backend(builder b, int variant, tdm_backend backend, tdm_precision prec,
                              int threads, float in_scale, result *r)
{
    tdm_model *m = calloc(1, sizeof *m);
    char err[256];
    rng = 1000u + (unsigned)variant;
    m->g = graph_new();
    b(m->g, variant);
    tdm_options_init(&m->opt);
    m->opt.backend = backend;
    m->opt.precision = prec;
    m->opt.threads = threads;
    pthread_mutex_init(&m->lock, NULL);
    tdm_session *s = NULL;
    int batch = (int)m->g->tensors[m->g->inputs[0]].dims[0];
    int rc = tdm_session_create(m, batch, &s, err, sizeof err);
    if (rc) {
        fprintf(stderr, "  session: %s\n", err);
        tdm_model_free(m);
        return rc;
    }
    size_t nin = tdm_session_input_bytes(s), nout = tdm_session_output_bytes(s);
    unsigned char *in = malloc(nin);
    tdm_tensor_info ii;
    tdm_session_input_info(s, &ii);
    rng = 77;
    for (size_t i = 0; i < nin; i++) {
        if (ii.dtype == TDM_DTYPE_FLOAT && i % 4 == 0) {
            float v = frand() * in_scale;
            memcpy(in + i, &v, 4);
            i += 3;
        } else {
            in[i] = (unsigned char)(frand() * 127.0f);
        }
    }
    r->out = malloc(nout);
    r->n = nout / 4;
    rc = tdm_session_run(s, in, nin, r->out, nout);
    if (rc) fprintf(stderr, "  run: %s\n", tdm_session_error(s));
    session_get_stats(s, &r->st);
    free(in);
    tdm_session_free(s);
    tdm_model_free(m);
    return rc;
}

#endif
