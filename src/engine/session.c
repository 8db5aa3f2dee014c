/*
 * session: plans one model for one batch size, then runs it with no
 * allocation.
 *
 * Planning (tdm_session_create):
 *   1. The model's graph is cloned (constant payloads borrowed), the batch
 *      fixed, shapes inferred and folded (opt_infer_and_fold), activations
 *      fused (opt_fuse). For the oneDNN backend the rewrites of opt_dnnl
 *      (opt_dnnl.c: pads into convolutions, longer post-op chains) and
 *      dnq_drop_requant follow.
 *   2. Nodes are walked in order. Each becomes one step: a oneDNN primitive
 *      when dn_build() (dnnl_ops.c) has a fast one, else the reference kernel
 *      (kern_ref.h). A tensor may exist in several layouts ("forms"): the
 *      one its producer wrote, plus converted copies made by reorder steps
 *      inserted in front of the first consumer that wants another layout;
 *      later consumers wanting that layout share the copy.
 *   3. Every form lives in a buffer with a lifetime [first step, last step];
 *      buffers are packed into one arena by greedy first-fit in decreasing
 *      size, two buffers sharing bytes only if their lifetimes are disjoint.
 *      A residual sum (oneDNN's sum post-op adds into dst) works in place in
 *      the addend's buffer when nothing reads that buffer afterwards.
 *   4. Weights are converted once into the layout the primitive asked for
 *      and cached in the model, so sessions of one model share them.
 *      tdm_model_trim then frees the model's plain copy of those no session
 *      reads as they are (the cache restores them exactly when a later
 *      session is planned), so a process holds one copy of its weights.
 *
 * Running (tdm_session_run): copy the input into its buffer, execute the
 * steps in order on the session's oneDNN stream (reference steps call
 * ref_run on arena pointers), copy the output out. Each session has its own
 * stream, arena and scratchpad, so sessions run concurrently on different
 * threads; OpenMP's thread count is set in the calling thread.
 */
#include <limits.h>
#include <malloc.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dnnl_int8.h"
#include "dnnl_util.h"
#include "kern_ref.h"
#include "opt.h"
#include "session.h"
#include "xalloc.h"

#define SESSION_MAX_FORMS 4
#define SESSION_ALIGN 64
#define SESSION_ERR_LEN 512

/* A tensor's value in one layout: md (when oneDNN has a type for it; plain
 * marks row-major in the tensor's own dtype, which the reference kernels
 * read) stored in buffer buf. */
typedef struct form {
    dnnl_memory_desc_t md;
    bool has_md, plain;
    int buf;
} form;

typedef struct tstate {
    int nforms;
    form forms[SESSION_MAX_FORMS];
} tstate;

typedef struct buffer {
    size_t size, off;
    int first, last; /* steps writing first and reading last */
    int max_use;     /* last node reading any tensor held here (INT_MAX: a graph output) */
} buffer;

/* One argument of a primitive: an arena buffer, a fixed pointer (constant
 * or converted weight), or the session's scratchpad. */
enum { ARG_BUF, ARG_PTR, ARG_SCRATCH };

typedef struct argref {
    int arg, kind, buf;
    const void *ptr;
    dnnl_memory_desc_t md;
} argref;

typedef enum { STEP_PRIM, STEP_REF } step_kind;

typedef struct step {
    step_kind kind;
    int node;
    /* STEP_PRIM */
    dnnl_primitive_t prim;
    bool int8; /* a graph node's primitive writing 8-bit data */
    int nargs;
    argref *refs;
    dnnl_exec_arg_t *args;
    /* STEP_REF: buffers (-1: a constant, in_data set at planning) */
    int nin, nout;
    const graph_tensor **in, **out;
    const void **in_data;
    void **out_data;
    int *in_buf, *out_buf;
} step;

struct tdm_session {
    tdm_model *model;
    graph *g;
    int threads;
    bool dnnl, bf16;
    dnnl_engine_t eng;
    dnnl_stream_t stream;
    tstate *ts;
    int *last_use; /* per tensor: last node index reading it, INT_MAX for outputs */
    buffer *bufs;
    int nbufs, cap_bufs;
    step *steps;
    int nsteps, cap_steps;
    void **owned; /* weights converted for this session only */
    int nowned, cap_owned;
    unsigned char *arena;
    size_t arena_size;
    void *scratch;
    size_t scratch_size;
    int in_tensor, out_tensor, in_buf, out_buf;
    const void *out_const;
    size_t in_bytes, out_bytes;
    tdm_tensor_info in_info, out_info;
    char err[SESSION_ERR_LEN];
};

/* ------------------------------------------------------------------------ */
/* Small helpers                                                             */
/* ------------------------------------------------------------------------ */

static int sfail(tdm_session *s, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int sfail(tdm_session *s, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->err, sizeof s->err, fmt, ap);
    va_end(ap);
    return status;
}

/* Grows an array of elem-sized entries to hold need, zeroing the new part.
 * Sizes are bounded by the graph, which the loader capped (xalloc.h). */
static void *xgrow(void *p, int *cap, int need, size_t elem)
{
    if (need <= *cap) return p;
    int nc = *cap ? *cap * 2 : 16;
    while (nc < need)
        nc *= 2;
    char *q = xrealloc(p, (size_t)nc * elem);
    memset(q + (size_t)*cap * elem, 0, (size_t)(nc - *cap) * elem);
    *cap = nc;
    return q;
}

static int threads_of(const tdm_options *opt)
{
    return opt->threads > 0 ? opt->threads : omp_get_num_procs();
}

static size_t tensor_bytes(const graph_tensor *t)
{
    int64_t n = graph_tensor_numel(t);
    return n > 0 ? (size_t)n * tdm_dtype_size(t->dtype) : 0;
}

/* Quantised models stay in f32: their fake quantisation is exact only there. */
static bool has_quant(const graph *g)
{
    for (int i = 0; i < g->nnodes; i++) {
        const graph_node *n = &g->nodes[i];
        if (n->op == OP_QUANTIZELINEAR || n->op == OP_DEQUANTIZELINEAR || n->op == OP_FAKEQUANT)
            return true;
        for (int k = 0; k < n->npost; k++)
            if (n->post[k].kind == POST_FAKEQUANT) return true;
    }
    return false;
}

/* ------------------------------------------------------------------------ */
/* Buffers, forms, steps                                                     */
/* ------------------------------------------------------------------------ */

static int new_buffer(tdm_session *s, size_t size, int first, int max_use)
{
    s->bufs = xgrow(s->bufs, &s->cap_bufs, s->nbufs + 1, sizeof *s->bufs);
    buffer *b = &s->bufs[s->nbufs];
    b->size = size;
    b->first = first;
    b->last = first;
    b->max_use = max_use;
    return s->nbufs++;
}

static void use_buffer(tdm_session *s, int buf, int at)
{
    if (s->bufs[buf].last < at) s->bufs[buf].last = at;
}

static step *new_step(tdm_session *s, step_kind kind, int node)
{
    s->steps = xgrow(s->steps, &s->cap_steps, s->nsteps + 1, sizeof *s->steps);
    step *st = &s->steps[s->nsteps++];
    memset(st, 0, sizeof *st);
    st->kind = kind;
    st->node = node;
    return st;
}

static void add_form(tdm_session *s, int t, const dnnl_memory_desc_t *md, bool plain, int buf)
{
    tstate *ts = &s->ts[t];
    form *f = &ts->forms[ts->nforms++];
    memset(f, 0, sizeof *f);
    if (md) {
        f->md = *md;
        f->has_md = true;
    }
    f->plain = plain;
    f->buf = buf;
    int use = s->last_use[t];
    if (s->bufs[buf].max_use < use) s->bufs[buf].max_use = use;
}

static bool md_is_plain(const graph_tensor *t, const dnnl_memory_desc_t *md)
{
    dnnl_memory_desc_t p;
    return dn_plain_md(t, dnnl_data_type_undef, &p) && dnnl_memory_desc_equal(&p, md);
}

static const dnnl_memory_desc_t *home_layout(void *planner, int t)
{
    tdm_session *s = planner;
    const tstate *ts = &s->ts[t];
    return ts->nforms && ts->forms[0].has_md ? &ts->forms[0].md : NULL;
}

/* Scratchpad size of a primitive, for the one shared scratchpad. */
static void note_scratch(tdm_session *s, dnnl_primitive_desc_t pd)
{
    const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    size_t sz = md ? dnnl_memory_desc_get_size(md) : 0;
    if (sz > s->scratch_size) s->scratch_size = sz;
}

static void add_arg(step *st, int arg, int kind, int buf, const void *ptr,
                    const dnnl_memory_desc_t *md)
{
    argref *r = &st->refs[st->nargs++];
    r->arg = arg;
    r->kind = kind;
    r->buf = buf;
    r->ptr = ptr;
    r->md = *md;
}

/* Appends a primitive step for pd, with room for nargs arguments plus the
 * scratchpad. Takes ownership of pd (destroyed here). */
static int prim_step(tdm_session *s, dnnl_primitive_desc_t pd, int node, int nargs, step **out)
{
    dnnl_primitive_t prim;
    dnnl_status_t st = dnnl_primitive_create(&prim, pd);
    if (st != dnnl_success) {
        dnnl_primitive_desc_destroy(pd);
        return sfail(s, dn_status(st), "oneDNN could not create a primitive for node '%s'",
                     node >= 0 ? s->g->nodes[node].name : "(reorder)");
    }
    step *sp = new_step(s, STEP_PRIM, node);
    sp->prim = prim;
    sp->refs = xcalloc((size_t)nargs + 1, sizeof *sp->refs);
    const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    note_scratch(s, pd);
    if (smd && dnnl_memory_desc_get_size(smd) > 0)
        add_arg(sp, DNNL_ARG_SCRATCHPAD, ARG_SCRATCH, -1, NULL, smd);
    dnnl_primitive_desc_destroy(pd);
    *out = sp;
    return 0;
}

/* A reorder from one layout to another. Values are copied, multiplied by
 * qscale when it is not 0, or, with t >= 0, converted between the f32 and
 * the 8-bit form of tensor t (dnnl_int8.h). */
static int reorder_pd(tdm_session *s, const dnnl_memory_desc_t *from, const dnnl_memory_desc_t *to,
                      int t, float qscale, dnnl_primitive_desc_t *pd)
{
    dnnl_primitive_attr_t attr;
    if (dnnl_primitive_attr_create(&attr) != dnnl_success) return TDM_ERR_NOMEM;
    dnnl_status_t st = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    if (st == dnnl_success && qscale != 0.0f)
        st = dnnl_primitive_attr_set_output_scales(attr, 1, 0, &qscale);
    if (st == dnnl_success && t >= 0 &&
        dnq_reorder_attr(s->g, t, from->data_type, to->data_type, attr)) {
        dnnl_primitive_attr_destroy(attr);
        return sfail(s, TDM_ERR_UNSUPPORTED, "tensor '%s' has no 8-bit grid to convert with",
                     s->g->tensors[t].name);
    }
    if (st == dnnl_success)
        st = dnnl_reorder_primitive_desc_create(pd, from, s->eng, to, s->eng, attr);
    dnnl_primitive_attr_destroy(attr);
    return st == dnnl_success ? 0 : sfail(s, dn_status(st), "oneDNN cannot convert a layout");
}

/* Appends a step copying buffer `from` (layout fmd) into buffer `to` (tmd),
 * converting values as reorder_pd does for tensor t (-1: none). */
static int reorder_step(tdm_session *s, int from, const dnnl_memory_desc_t *fmd, int to,
                        const dnnl_memory_desc_t *tmd, int t)
{
    dnnl_primitive_desc_t pd;
    step *st;
    int rc = reorder_pd(s, fmd, tmd, t, 0.0f, &pd);
    if (!rc) rc = prim_step(s, pd, -1, 2, &st);
    if (rc) return rc;
    int idx = s->nsteps - 1;
    add_arg(st, DNNL_ARG_FROM, ARG_BUF, from, NULL, fmd);
    add_arg(st, DNNL_ARG_TO, ARG_BUF, to, NULL, tmd);
    use_buffer(s, from, idx);
    use_buffer(s, to, idx);
    return 0;
}

/* The buffer holding tensor t in layout md, converting it there (once) if
 * it is not yet. */
static int get_form(tdm_session *s, int t, const dnnl_memory_desc_t *md, int *buf)
{
    tstate *ts = &s->ts[t];
    const graph_tensor *gt = &s->g->tensors[t];
    for (int i = 0; i < ts->nforms; i++)
        if (ts->forms[i].has_md && dnnl_memory_desc_equal(&ts->forms[i].md, md)) {
            *buf = ts->forms[i].buf;
            return 0;
        }
    if (ts->nforms == 0)
        return sfail(s, TDM_ERR_INVALID, "tensor '%s' is read before it is computed", gt->name);
    if (!ts->forms[0].has_md)
        return sfail(s, TDM_ERR_UNSUPPORTED, "tensor '%s' (%s) cannot change layout", gt->name,
                     tdm_dtype_name(gt->dtype));
    if (ts->nforms == SESSION_MAX_FORMS)
        return sfail(s, TDM_ERR_UNSUPPORTED, "tensor '%s' is wanted in too many layouts",
                     gt->name);
    int from = ts->forms[0].buf, rc;
    const dnnl_memory_desc_t *fmd = &ts->forms[0].md;
    dnnl_memory_desc_t mid;
    /* oneDNN 2.6's reorder drops the source zero point when it changes
     * the layout too (s8 acdb to f32 abcd of 1x1280x7x7, for one), and
     * quantising while moving takes its slow path: an 8-bit form is
     * converted where it lies first, then moved. */
    bool q8 = fmd->data_type == dnnl_u8 || fmd->data_type == dnnl_s8 ||
              md->data_type == dnnl_u8 || md->data_type == dnnl_s8;
    if (q8 && fmd->data_type != md->data_type && dnq_retype(fmd, md->data_type, &mid) &&
        !dnnl_memory_desc_equal(&mid, md)) {
        if ((rc = get_form(s, t, &mid, &from))) return rc;
        fmd = &mid;
        t = -1;
    }
    int nb = new_buffer(s, dnnl_memory_desc_get_size(md), s->nsteps, -1);
    if ((rc = reorder_step(s, from, fmd, nb, md, t))) return rc;
    add_form(s, (int)(ts - s->ts), md, md_is_plain(gt, md), nb);
    *buf = nb;
    return 0;
}

/* The buffer holding t plain row-major in its own dtype (f32 for floats). */
static int get_plain(tdm_session *s, int t, int *buf)
{
    tstate *ts = &s->ts[t];
    for (int i = 0; i < ts->nforms; i++)
        if (ts->forms[i].plain) {
            *buf = ts->forms[i].buf;
            return 0;
        }
    dnnl_memory_desc_t md;
    if (!dn_plain_md(&s->g->tensors[t], dnnl_data_type_undef, &md))
        return sfail(s, TDM_ERR_UNSUPPORTED, "tensor '%s' has no plain form",
                     s->g->tensors[t].name);
    return get_form(s, t, &md, buf);
}

/* ------------------------------------------------------------------------ */
/* Weights                                                                   */
/* ------------------------------------------------------------------------ */

static size_t align_up(size_t n)
{
    return (n + SESSION_ALIGN - 1) / SESSION_ALIGN * SESSION_ALIGN;
}

/* Converts a constant from layout user to md (multiplying by qscale when it
 * is not 0) into new memory. */
static int convert_const(tdm_session *s, const void *src, const dnnl_memory_desc_t *user,
                         const dnnl_memory_desc_t *md, float qscale, void **out)
{
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t prim = NULL;
    dnnl_memory_t from = NULL, to = NULL;
    void *data = aligned_alloc(SESSION_ALIGN, align_up(dnnl_memory_desc_get_size(md) + 1));
    int rc = 0;
    if (!data) return sfail(s, TDM_ERR_NOMEM, "out of memory converting weights");
    if ((rc = reorder_pd(s, user, md, -1, qscale, &pd))) goto out;
    const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    size_t ssz = smd ? dnnl_memory_desc_get_size(smd) : 0;
    void *scratch = ssz ? aligned_alloc(SESSION_ALIGN, align_up(ssz)) : NULL;
    dnnl_memory_t sm = NULL;
    dnnl_status_t st = ssz && !scratch ? dnnl_out_of_memory : dnnl_success;
    if (st == dnnl_success) st = dnnl_primitive_create(&prim, pd);
    if (st == dnnl_success) st = dnnl_memory_create(&from, user, s->eng, (void *)src);
    if (st == dnnl_success) st = dnnl_memory_create(&to, md, s->eng, data);
    if (st == dnnl_success && ssz) st = dnnl_memory_create(&sm, smd, s->eng, scratch);
    if (st == dnnl_success) {
        dnnl_exec_arg_t args[3] = {
            {DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}, {DNNL_ARG_SCRATCHPAD, sm}};
        st = dnnl_primitive_execute(prim, s->stream, ssz ? 3 : 2, args);
        if (st == dnnl_success) st = dnnl_stream_wait(s->stream);
    }
    if (sm) dnnl_memory_destroy(sm);
    free(scratch);
    if (st != dnnl_success) rc = sfail(s, dn_status(st), "oneDNN failed converting weights");
out:
    if (to) dnnl_memory_destroy(to);
    if (from) dnnl_memory_destroy(from);
    if (prim) dnnl_primitive_destroy(prim);
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (rc) {
        free(data);
        return rc;
    }
    *out = data;
    return 0;
}

/* A constant in layout md: its own bytes when they already are, else a
 * converted copy — cached in the model when the payload is the model's (so
 * every session shares it), owned by the session when the session's own
 * folding made it. */
/* Marks a payload of the model's graph as read as it is by a session, so
 * that tdm_model_trim keeps it. */
static void pin(tdm_session *s, const void *data)
{
    tdm_model *m = s->model;
    pthread_mutex_lock(&m->lock);
    int i = 0;
    while (i < m->npins && m->pins[i] != data)
        i++;
    if (i == m->npins) {
        m->pins = xgrow(m->pins, &m->cap_pins, m->npins + 1, sizeof *m->pins);
        m->pins[m->npins++] = data;
    }
    pthread_mutex_unlock(&m->lock);
}

static int const_in(tdm_session *s, const dn_input *in, const void **out)
{
    bool shared = in->tensor >= 0 && !s->g->tensors[in->tensor].owns_data;
    if (in->qscale == 0.0f && dnnl_memory_desc_equal(&in->user_md, &in->md)) {
        if (shared) pin(s, in->cdata);
        *out = in->cdata;
        return 0;
    }
    tdm_model *m = s->model;
    void *data;
    int rc;
    if (!shared) {
        if ((rc = convert_const(s, in->cdata, &in->user_md, &in->md, in->qscale, &data)))
            return rc;
        s->owned = xgrow(s->owned, &s->cap_owned, s->nowned + 1, sizeof *s->owned);
        s->owned[s->nowned++] = data;
        *out = data;
        return 0;
    }
    pthread_mutex_lock(&m->lock);
    for (model_weight *w = m->weights; w; w = w->next)
        if (w->src == in->cdata && w->qscale == in->qscale &&
            dnnl_memory_desc_equal(&w->md, &in->md) &&
            dnnl_memory_desc_equal(&w->user_md, &in->user_md)) {
            *out = w->data;
            pthread_mutex_unlock(&m->lock);
            return 0;
        }
    model_weight *w = calloc(1, sizeof *w);
    rc = w ? convert_const(s, in->cdata, &in->user_md, &in->md, in->qscale, &data)
           : sfail(s, TDM_ERR_NOMEM, "out of memory caching weights");
    if (!rc) {
        w->src = in->cdata;
        w->user_md = in->user_md;
        w->md = in->md;
        w->qscale = in->qscale;
        w->data = data;
        w->next = m->weights;
        m->weights = w;
        *out = data;
    } else {
        free(w);
    }
    pthread_mutex_unlock(&m->lock);
    return rc;
}

void session_model_weights_free(tdm_model *m)
{
    model_weight *w = m->weights;
    while (w) {
        model_weight *next = w->next;
        free(w->data);
        free(w);
        w = next;
    }
    m->weights = NULL;
    free(m->pins);
    m->pins = NULL;
    m->npins = m->cap_pins = 0;
    free(m->trimmed);
    m->trimmed = NULL;
    m->ntrimmed = m->cap_trimmed = 0;
}

/* ------------------------------------------------------------------------ */
/* Trimming the model's plain weights (tdm_model_trim)                       */
/* ------------------------------------------------------------------------ */

/* Payloads below this stay: scalars and shapes are read off the model's
 * graph (classifier.c, folding), and small ones save little. */
#define TRIM_MIN_BYTES 4096

/* A cache entry from which the payload at src comes back exactly: a change
 * of layout only (same data type, no scale, no compensation bytes) that
 * covers the whole payload. */
static model_weight *exact_copy(tdm_model *m, const void *src, size_t nbytes)
{
    for (model_weight *w = m->weights; w; w = w->next)
        if (w->src == src && w->qscale == 0.0f && w->md.data_type == w->user_md.data_type &&
            w->md.extra.flags == 0 && dnnl_memory_desc_get_size(&w->user_md) == nbytes)
            return w;
    return NULL;
}

static bool pinned(const tdm_model *m, const graph_tensor *t)
{
    const char *lo = t->data, *hi = lo + t->nbytes;
    for (int i = 0; i < m->npins; i++)
        if ((const char *)m->pins[i] >= lo && (const char *)m->pins[i] < hi) return true;
    return false;
}

int tdm_model_trim(tdm_model *m, size_t *freed_bytes)
{
    size_t freed = 0;
    if (!m) return TDM_ERR_INVALID;
    pthread_mutex_lock(&m->lock);
    for (int i = 0; !m->creating && i < m->g->ntensors; i++) {
        graph_tensor *t = &m->g->tensors[i];
        if (!t->data || !t->owns_data || t->nbytes < TRIM_MIN_BYTES || pinned(m, t) ||
            !exact_copy(m, t->data, t->nbytes))
            continue;
        m->trimmed = xgrow(m->trimmed, &m->cap_trimmed, m->ntrimmed + 1, sizeof *m->trimmed);
        m->trimmed[m->ntrimmed++] = (model_trimmed){.tensor = i, .old = t->data};
        free(t->data);
        t->owns_data = false;
        freed += t->nbytes;
    }
    pthread_mutex_unlock(&m->lock);
    /* Small payloads came from the heap: give its free pages back too. */
    if (freed) malloc_trim(0);
    if (freed_bytes) *freed_bytes = freed;
    return 0;
}

/* Converts the trimmed payloads back from their cached copies into new
 * memory, and re-keys the cache entries of each (its old address, or an
 * address inside it) to the new one. All or nothing: on failure the model
 * stays trimmed. Under the model's lock. */
static int restore_trimmed(tdm_session *s)
{
    tdm_model *m = s->model;
    int n = m->ntrimmed, rc = 0;
    void **fresh = xcalloc((size_t)n, sizeof *fresh);
    dnnl_stream_t stream = NULL;
    s->eng = dn_engine();
    dnnl_status_t st = s->eng ? dnnl_stream_create(&stream, s->eng, dnnl_stream_default_flags)
                              : dnnl_runtime_error;
    if (st != dnnl_success) {
        rc = sfail(s, TDM_ERR_BACKEND, "oneDNN could not create a stream");
        goto out;
    }
    s->stream = stream;
    for (int k = 0; k < n && !rc; k++) {
        const graph_tensor *t = &m->g->tensors[m->trimmed[k].tensor];
        const model_weight *w = exact_copy(m, m->trimmed[k].old, t->nbytes);
        rc = w ? convert_const(s, w->data, &w->md, &w->user_md, 0.0f, &fresh[k])
               : sfail(s, TDM_ERR_BACKEND, "the weight '%s' cannot be restored", t->name);
    }
    if (rc) goto out;
    /* The old ranges were disjoint (live at once), so each entry moves once. */
    for (model_weight *w = m->weights; w; w = w->next)
        for (int k = 0; k < n; k++) {
            const char *old = m->trimmed[k].old;
            size_t nbytes = m->g->tensors[m->trimmed[k].tensor].nbytes;
            if ((const char *)w->src >= old && (const char *)w->src < old + nbytes) {
                w->src = (const char *)fresh[k] + ((const char *)w->src - old);
                break;
            }
        }
    for (int k = 0; k < n; k++) {
        graph_tensor *t = &m->g->tensors[m->trimmed[k].tensor];
        t->data = fresh[k];
        t->owns_data = true;
        fresh[k] = NULL;
    }
    m->ntrimmed = 0;
out:
    for (int k = 0; k < n; k++)
        free(fresh[k]);
    free(fresh);
    if (stream) dnnl_stream_destroy(stream);
    s->stream = NULL;
    s->eng = NULL;
    return rc;
}

/* Session planning starts: trimmed payloads come back first, and no trim
 * runs until model_leave. */
static int model_enter(tdm_session *s)
{
    tdm_model *m = s->model;
    int rc = 0;
    pthread_mutex_lock(&m->lock);
    if (m->ntrimmed) rc = restore_trimmed(s);
    if (!rc) m->creating++;
    pthread_mutex_unlock(&m->lock);
    return rc;
}

static void model_leave(tdm_model *m)
{
    pthread_mutex_lock(&m->lock);
    m->creating--;
    pthread_mutex_unlock(&m->lock);
}

/* ------------------------------------------------------------------------ */
/* Planning one node                                                         */
/* ------------------------------------------------------------------------ */

static int plan_ref(tdm_session *s, int node)
{
    const graph_node *n = &s->g->nodes[node];
    int bufs_in[n->ninputs > 0 ? n->ninputs : 1], rc;
    for (int k = 0; k < n->ninputs; k++) {
        int t = n->inputs[k];
        bufs_in[k] = -1;
        if (t < 0 || s->g->tensors[t].data) continue;
        if ((rc = get_plain(s, t, &bufs_in[k]))) return rc;
    }
    int idx = s->nsteps;
    step *st = new_step(s, STEP_REF, node);
    st->nin = n->ninputs;
    st->nout = n->noutputs;
    st->in = xcalloc((size_t)n->ninputs, sizeof *st->in);
    st->in_data = xcalloc((size_t)n->ninputs, sizeof *st->in_data);
    st->in_buf = xcalloc((size_t)n->ninputs, sizeof *st->in_buf);
    st->out = xcalloc((size_t)n->noutputs, sizeof *st->out);
    st->out_data = xcalloc((size_t)n->noutputs, sizeof *st->out_data);
    st->out_buf = xcalloc((size_t)n->noutputs, sizeof *st->out_buf);
    for (int k = 0; k < n->ninputs; k++) {
        int t = n->inputs[k];
        st->in_buf[k] = bufs_in[k];
        if (t < 0) continue;
        st->in[k] = &s->g->tensors[t];
        st->in_data[k] = s->g->tensors[t].data;
        if (st->in_data[k] && !s->g->tensors[t].owns_data) pin(s, st->in_data[k]);
        if (bufs_in[k] >= 0) use_buffer(s, bufs_in[k], idx);
    }
    for (int k = 0; k < n->noutputs; k++) {
        int t = n->outputs[k];
        st->out_buf[k] = -1;
        if (t < 0) continue;
        const graph_tensor *gt = &s->g->tensors[t];
        st->out[k] = gt;
        int b = new_buffer(s, tensor_bytes(gt), idx, -1);
        st->out_buf[k] = b;
        dnnl_memory_desc_t md;
        bool has = dn_plain_md(gt, dnnl_data_type_undef, &md);
        add_form(s, t, has ? &md : NULL, true, b);
    }
    return 0;
}

/* Commits a built oneDNN node: converts its inputs, places its output (in
 * the addend's buffer for an in-place sum) and appends the step. */
static int plan_dnnl(tdm_session *s, int node, dn_prim *p)
{
    int bufs_in[DN_MAX_IN], rc, sum_buf = -1;
    const void *ptrs[DN_MAX_IN];
    for (int k = 0; k < p->nin; k++) {
        bufs_in[k] = -1;
        ptrs[k] = NULL;
        if (p->in[k].cdata)
            rc = const_in(s, &p->in[k], &ptrs[k]);
        else
            rc = get_form(s, p->in[k].tensor, &p->in[k].md, &bufs_in[k]);
        if (rc) goto fail;
    }
    int y = s->g->nodes[node].outputs[0], dst_buf = -1;
    if (p->sum_tensor >= 0) {
        if ((rc = get_form(s, p->sum_tensor, &p->dst_md, &sum_buf))) goto fail;
        /* In place when nothing reads the addend's buffer after this node
         * and the node reads it in no other role. */
        bool alone = s->bufs[sum_buf].max_use <= node;
        for (int k = 0; k < p->nin; k++)
            if (bufs_in[k] == sum_buf) alone = false;
        if (alone) dst_buf = sum_buf;
    }
    if (dst_buf < 0) {
        dst_buf = new_buffer(s, dnnl_memory_desc_get_size(&p->dst_md), s->nsteps, -1);
        if (sum_buf >= 0 &&
            (rc = reorder_step(s, sum_buf, &p->dst_md, dst_buf, &p->dst_md, -1)))
            goto fail;
    }
    step *st;
    rc = prim_step(s, p->pd, node, p->nin + 1, &st);
    p->pd = NULL;
    if (rc) goto fail;
    int idx = s->nsteps - 1;
    st->int8 = p->dst_md.data_type == dnnl_s8 || p->dst_md.data_type == dnnl_u8;
    for (int k = 0; k < p->nin; k++) {
        const dn_input *in = &p->in[k];
        const dnnl_memory_desc_t *md = in->exec_md.ndims ? &in->exec_md : &in->md;
        if (in->pass != 0) continue;
        if (in->cdata) {
            add_arg(st, in->arg, ARG_PTR, -1, ptrs[k], md);
        } else {
            add_arg(st, in->arg, ARG_BUF, bufs_in[k], NULL, md);
            use_buffer(s, bufs_in[k], idx);
        }
    }
    const dnnl_memory_desc_t *view = p->dst_exec_md.ndims ? &p->dst_exec_md : &p->dst_md;
    add_arg(st, DNNL_ARG_DST, ARG_BUF, dst_buf, NULL, view);
    use_buffer(s, dst_buf, idx);
    for (int i = 0; i < p->nfollow; i++) {
        rc = prim_step(s, p->follow[i], node, 3 + p->nin, &st);
        p->follow[i] = NULL;
        if (rc) goto fail;
        add_arg(st, DNNL_ARG_SRC_0, ARG_BUF, dst_buf, NULL, view);
        add_arg(st, DNNL_ARG_SRC_1, ARG_PTR, -1, p->zero, &p->zero_md);
        add_arg(st, DNNL_ARG_DST, ARG_BUF, dst_buf, NULL, view);
        /* Its post-ops' operands: constants (see dnnl_ops.c). */
        for (int k = 0; k < p->nin; k++)
            if (p->in[k].pass == i + 1 && p->in[k].cdata)
                add_arg(st, p->in[k].arg, ARG_PTR, -1, ptrs[k], &p->in[k].md);
        use_buffer(s, dst_buf, s->nsteps - 1);
    }
    add_form(s, y, &p->dst_md, md_is_plain(&s->g->tensors[y], &p->dst_md), dst_buf);
    return 0;
fail:
    if (p->pd) dnnl_primitive_desc_destroy(p->pd);
    p->pd = NULL;
    for (int i = 0; i < p->nfollow; i++)
        if (p->follow[i]) dnnl_primitive_desc_destroy(p->follow[i]);
    p->nfollow = 0;
    return rc;
}

static int plan_node(tdm_session *s, int node)
{
    if (s->dnnl) {
        dn_ctx c = {.eng = s->eng, .bf16 = s->bf16, .plain = false, .layout = home_layout,
                    .planner = s};
        dn_prim p;
        int rc = dn_build(&c, s->g, node, &p);
        if (rc == TDM_ERR_UNSUPPORTED) {
            c.plain = true;
            rc = dn_build(&c, s->g, node, &p);
        }
        if (!rc) return plan_dnnl(s, node, &p);
        if (rc != TDM_ERR_UNSUPPORTED) return sfail(s, rc, "planning node '%s' failed",
                                                    s->g->nodes[node].name);
    }
    return plan_ref(s, node);
}

/* ------------------------------------------------------------------------ */
/* Arena                                                                     */
/* ------------------------------------------------------------------------ */

static int by_size_desc(const void *a, const void *b, void *bufs)
{
    const buffer *x = &((const buffer *)bufs)[*(const int *)a],
                 *y = &((const buffer *)bufs)[*(const int *)b];
    if (x->size != y->size) return x->size < y->size ? 1 : -1;
    return *(const int *)a - *(const int *)b;
}

/* Greedy first fit in decreasing size: each buffer goes to the lowest
 * offset where it overlaps no already placed buffer that is alive at the
 * same time. */
static int place_buffers(tdm_session *s)
{
    int n = s->nbufs, *order = xcalloc((size_t)n, sizeof *order), nplaced = 0;
    int *placed = xcalloc((size_t)n, sizeof *placed);
    size_t total = 0;
    for (int i = 0; i < n; i++)
        order[i] = i;
    qsort_r(order, (size_t)n, sizeof *order, by_size_desc, s->bufs);
    for (int oi = 0; oi < n; oi++) {
        buffer *b = &s->bufs[order[oi]];
        size_t need = align_up(b->size), off = 0;
        bool moved = true;
        while (moved) {
            moved = false;
            for (int j = 0; j < nplaced; j++) {
                const buffer *o = &s->bufs[placed[j]];
                if (o->last < b->first || b->last < o->first) continue;
                size_t oend = o->off + align_up(o->size);
                if (off < oend && o->off < off + need) {
                    off = oend;
                    moved = true;
                }
            }
        }
        b->off = off;
        if (off + need > total) total = off + need;
        placed[nplaced++] = order[oi];
    }
    free(placed);
    free(order);
    s->arena_size = total;
    s->arena = aligned_alloc(SESSION_ALIGN, total ? total : SESSION_ALIGN);
    if (!s->arena) return sfail(s, TDM_ERR_NOMEM, "out of memory for %zu bytes of activations", total);
    memset(s->arena, 0, total);
    if (s->scratch_size) {
        s->scratch = aligned_alloc(SESSION_ALIGN, align_up(s->scratch_size));
        if (!s->scratch) return sfail(s, TDM_ERR_NOMEM, "out of memory for the scratchpad");
    }
    return 0;
}

/* With the arena placed, every step's pointers and oneDNN memories. */
static int bind_steps(tdm_session *s)
{
    for (int i = 0; i < s->nsteps; i++) {
        step *st = &s->steps[i];
        if (st->kind == STEP_REF) {
            for (int k = 0; k < st->nin; k++)
                if (st->in_buf[k] >= 0) st->in_data[k] = s->arena + s->bufs[st->in_buf[k]].off;
            for (int k = 0; k < st->nout; k++)
                if (st->out_buf[k] >= 0)
                    st->out_data[k] = s->arena + s->bufs[st->out_buf[k]].off;
            continue;
        }
        st->args = xcalloc((size_t)st->nargs, sizeof *st->args);
        for (int k = 0; k < st->nargs; k++) {
            const argref *r = &st->refs[k];
            void *ptr = r->kind == ARG_BUF       ? s->arena + s->bufs[r->buf].off
                        : r->kind == ARG_SCRATCH ? s->scratch
                                                 : (void *)r->ptr;
            dnnl_status_t rc = dnnl_memory_create(&st->args[k].memory, &r->md, s->eng, ptr);
            if (rc != dnnl_success)
                return sfail(s, dn_status(rc), "oneDNN could not describe a buffer");
            st->args[k].arg = r->arg;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Public API                                                                */
/* ------------------------------------------------------------------------ */

static void fill_info(const graph_tensor *t, tdm_tensor_info *info)
{
    memset(info, 0, sizeof *info);
    info->name = t->name;
    info->dtype = t->dtype;
    info->rank = t->rank;
    for (int i = 0; i < t->rank && i < TDM_MAX_RANK; i++)
        info->dims[i] = t->dims[i];
}

/* Last node index reading each tensor (INT_MAX for graph outputs). */
static void compute_last_use(tdm_session *s)
{
    const graph *g = s->g;
    for (int t = 0; t < g->ntensors; t++)
        s->last_use[t] = g->tensors[t].is_output ? INT_MAX : -1;
    for (int i = 0; i < g->nnodes; i++)
        for (int k = 0; k < g->nodes[i].ninputs; k++) {
            int t = g->nodes[i].inputs[k];
            if (t >= 0 && s->last_use[t] < i) s->last_use[t] = i;
        }
}

static int plan(tdm_session *s)
{
    graph *g = s->g;
    int rc;
    s->ts = xcalloc((size_t)g->ntensors, sizeof *s->ts);
    s->last_use = xcalloc((size_t)g->ntensors, sizeof *s->last_use);
    compute_last_use(s);

    s->in_tensor = g->inputs[0];
    const graph_tensor *it = &g->tensors[s->in_tensor];
    s->in_bytes = tensor_bytes(it);
    s->in_buf = new_buffer(s, s->in_bytes, -1, -1);
    dnnl_memory_desc_t md;
    bool has = dn_plain_md(it, dnnl_data_type_undef, &md);
    add_form(s, s->in_tensor, has ? &md : NULL, true, s->in_buf);

    for (int i = 0; i < g->nnodes; i++)
        if ((rc = plan_node(s, i))) return rc;

    s->out_tensor = g->outputs[0];
    const graph_tensor *ot = &g->tensors[s->out_tensor];
    s->out_bytes = tensor_bytes(ot);
    if (ot->data) {
        s->out_const = ot->data;
        if (!ot->owns_data) pin(s, ot->data);
    } else {
        if ((rc = get_plain(s, s->out_tensor, &s->out_buf))) return rc;
        use_buffer(s, s->out_buf, s->nsteps);
    }
    if ((rc = place_buffers(s))) return rc;
    return bind_steps(s);
}

int tdm_session_create(tdm_model *model, int batch, tdm_session **out, char *err, size_t errlen)
{
    tdm_session *s = NULL;
    bool entered = false;
    int rc;
    if (err && errlen) err[0] = '\0';
    if (!model || !out) {
        if (err && errlen) snprintf(err, errlen, "no model");
        return TDM_ERR_INVALID;
    }
    s = xcalloc(1, sizeof *s);
    s->model = model;
    s->threads = threads_of(&model->opt);
    s->dnnl = model->opt.backend == TDM_BACKEND_DNNL;
    if (batch < 1) {
        rc = sfail(s, TDM_ERR_INVALID, "batch must be at least 1, not %d", batch);
        goto out;
    }
    if ((rc = model_enter(s))) goto out;
    entered = true;
    if ((rc = graph_clone(model->g, &s->g))) {
        rc = sfail(s, rc, "out of memory cloning the model");
        goto out;
    }
    graph *g = s->g;
    graph_tensor *in = &g->tensors[g->inputs[0]];
    if (in->rank < 1) {
        if (batch != 1) {
            rc = sfail(s, TDM_ERR_INVALID, "input '%s' has no batch dimension: batch must be 1",
                       in->name);
            goto out;
        }
    } else if (in->dims[0] < 0) {
        in->dims[0] = batch;
    } else if (in->dims[0] != batch) {
        rc = sfail(s, TDM_ERR_INVALID, "input '%s' fixes the batch to %lld; %d is not possible",
                   in->name, (long long)in->dims[0], batch);
        goto out;
    }
    if ((rc = opt_infer_and_fold(g)) || (rc = opt_fuse(g))) {
        sfail(s, rc, "%s", g->err);
        goto out;
    }
    if (s->dnnl) {
        if ((rc = opt_dnnl(g)) || (rc = dnq_drop_requant(g))) {
            sfail(s, rc, "out of memory rewriting the graph");
            goto out;
        }
        s->bf16 = model->opt.precision == TDM_PRECISION_BF16 && !has_quant(g);
        if (!(s->eng = dn_engine())) {
            rc = sfail(s, TDM_ERR_BACKEND, "oneDNN has no CPU engine");
            goto out;
        }
        dnnl_status_t st = dnnl_stream_create(&s->stream, s->eng, dnnl_stream_default_flags);
        if (st != dnnl_success) {
            rc = sfail(s, dn_status(st), "oneDNN could not create a stream");
            goto out;
        }
    }
    /* oneDNN sizes its work split by the thread count seen at creation. */
    omp_set_num_threads(s->threads);
    if ((rc = plan(s))) goto out;
    fill_info(&g->tensors[s->in_tensor], &s->in_info);
    fill_info(&g->tensors[s->out_tensor], &s->out_info);
    *out = s;
    s = NULL;
out:
    if (entered) model_leave(model);
    if (s) {
        if (err && errlen) snprintf(err, errlen, "%s", s->err);
        tdm_session_free(s);
    }
    return rc;
}

void tdm_session_free(tdm_session *s)
{
    if (!s) return;
    for (int i = 0; i < s->nsteps; i++) {
        step *st = &s->steps[i];
        if (st->prim) dnnl_primitive_destroy(st->prim);
        for (int k = 0; st->args && k < st->nargs; k++)
            if (st->args[k].memory) dnnl_memory_destroy(st->args[k].memory);
        free(st->args);
        free(st->refs);
        free(st->in);
        free(st->out);
        free(st->in_data);
        free(st->out_data);
        free(st->in_buf);
        free(st->out_buf);
    }
    free(s->steps);
    for (int i = 0; i < s->nowned; i++)
        free(s->owned[i]);
    free(s->owned);
    free(s->bufs);
    free(s->ts);
    free(s->last_use);
    free(s->arena);
    free(s->scratch);
    if (s->stream) dnnl_stream_destroy(s->stream);
    graph_free(s->g);
    free(s);
}

int tdm_session_input_info(const tdm_session *s, tdm_tensor_info *out)
{
    if (!s || !out) return TDM_ERR_INVALID;
    *out = s->in_info;
    return 0;
}

int tdm_session_output_info(const tdm_session *s, tdm_tensor_info *out)
{
    if (!s || !out) return TDM_ERR_INVALID;
    *out = s->out_info;
    return 0;
}

size_t tdm_session_input_bytes(const tdm_session *s)
{
    return s ? s->in_bytes : 0;
}

size_t tdm_session_output_bytes(const tdm_session *s)
{
    return s ? s->out_bytes : 0;
}

const char *tdm_session_error(const tdm_session *s)
{
    return s ? s->err : "no session";
}

void session_get_stats(const tdm_session *s, session_stats *out)
{
    memset(out, 0, sizeof *out);
    for (int i = 0; i < s->nsteps; i++) {
        if (s->steps[i].kind == STEP_REF)
            out->ref_steps++;
        else if (s->steps[i].node < 0)
            out->reorder_steps++;
        else
            out->prim_steps++;
        if (s->steps[i].kind == STEP_PRIM && s->steps[i].node >= 0 && s->steps[i].int8)
            out->int8_steps++;
    }
    out->arena_bytes = s->arena_size;
    for (int i = 0; i < s->nbufs; i++)
        out->buffer_bytes += align_up(s->bufs[i].size);
}

static int run_steps(tdm_session *s)
{
    for (int i = 0; i < s->nsteps; i++) {
        step *st = &s->steps[i];
        if (st->kind == STEP_PRIM) {
            dnnl_status_t rc = dnnl_primitive_execute(st->prim, s->stream, st->nargs, st->args);
            if (rc != dnnl_success)
                return sfail(s, dn_status(rc), "oneDNN failed running node '%s'",
                             st->node >= 0 ? s->g->nodes[st->node].name : "(reorder)");
            continue;
        }
        if (s->stream && dnnl_stream_wait(s->stream) != dnnl_success)
            return sfail(s, TDM_ERR_BACKEND, "oneDNN stream failed");
        ref_args a = {.nin = st->nin,
                      .in = st->in,
                      .in_data = st->in_data,
                      .nout = st->nout,
                      .out = st->out,
                      .out_data = st->out_data};
        int rc = ref_run(&s->g->nodes[st->node], &a, s->err, sizeof s->err);
        if (rc) return rc;
    }
    if (s->stream && dnnl_stream_wait(s->stream) != dnnl_success)
        return sfail(s, TDM_ERR_BACKEND, "oneDNN stream failed");
    return 0;
}

int tdm_session_run(tdm_session *s, const void *input, size_t input_len, void *output,
                    size_t output_len)
{
    if (!s) return TDM_ERR_INVALID;
    if (!input || input_len != s->in_bytes)
        return sfail(s, TDM_ERR_INVALID, "input is %zu bytes; this session takes %zu", input_len,
                     s->in_bytes);
    if (!output || output_len != s->out_bytes)
        return sfail(s, TDM_ERR_INVALID, "output buffer is %zu bytes; the output has %zu",
                     output_len, s->out_bytes);
    omp_set_num_threads(s->threads);
    memcpy(s->arena + s->bufs[s->in_buf].off, input, input_len);
    int rc = run_steps(s);
    if (rc) return rc;
    const void *src = s->out_const ? s->out_const : s->arena + s->bufs[s->out_buf].off;
    memcpy(output, src, output_len);
    s->err[0] = '\0';
    return 0;
}
