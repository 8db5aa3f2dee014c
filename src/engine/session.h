/*
 * session: what engine.c (the public model API) and session.c (planning and
 * execution of one session) share: the model object itself and the cache of
 * weights already converted for oneDNN.
 *
 * A model is immutable after tdm_model_load() except for that cache, which
 * sessions fill under the model's lock: two sessions of one model that want
 * a weight in the same layout share one converted copy instead of each
 * holding its own.
 */
#ifndef TANDEM_SESSION_H
#define TANDEM_SESSION_H

#include <dnnl.h>
#include <pthread.h>

#include "graph.h"
#include "tandem/engine.h"

/* One converted weight: the constant it came from (a payload of the model's
 * own graph, so the address stays unique while the model lives), its layout
 * there, the layout it was converted to, the scale applied on the way (int8
 * weights and biases), and the converted bytes. */
typedef struct model_weight {
    const void *src;
    dnnl_memory_desc_t user_md, md;
    float qscale; /* the factor the conversion multiplied by (0: none) */
    void *data;
    struct model_weight *next;
} model_weight;

/* A payload tdm_model_trim freed: the tensor of the model's graph, and the
 * address it had (the key of its cache entries until they are restored). */
typedef struct model_trimmed {
    int tensor;
    const void *old;
} model_trimmed;

struct tdm_model {
    graph *g; /* optimised at load time; batch may still be -1 */
    tdm_options opt;
    double load_ms;
    pthread_mutex_t lock; /* guards what follows */
    model_weight *weights;
    /* Payloads some session reads as they are (not through a converted
     * copy): tdm_model_trim leaves them alone. */
    const void **pins;
    int npins, cap_pins;
    int creating; /* sessions being planned: no trim meanwhile */
    /* Freed by tdm_model_trim: the graph's tensor keeps its dangling data
     * pointer (owns_data false) until the next tdm_session_create restores
     * it; nothing reads a model's graph payloads in between. */
    model_trimmed *trimmed;
    int ntrimmed, cap_trimmed;
};

/* What a session's plan consists of, for tests and diagnostics. */
typedef struct session_stats {
    int prim_steps;    /* oneDNN primitives for graph nodes (follow-up passes included) */
    int reorder_steps; /* layout conversions inserted between nodes */
    int ref_steps;     /* nodes run on the reference kernels */
    int int8_steps;    /* of prim_steps, those writing 8-bit data (dnnl_int8.h) */
    size_t arena_bytes, buffer_bytes; /* the arena, and the sum of the buffers in it */
} session_stats;

void session_get_stats(const tdm_session *s, session_stats *out);

/* Frees the converted weights of a model (engine.c calls it from
 * tdm_model_free). */
void session_model_weights_free(tdm_model *m);

#endif
