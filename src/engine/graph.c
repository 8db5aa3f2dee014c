/*
 * graph: storage and bookkeeping for the engine's model IR (see graph.h).
 *
 * Tensors and nodes sit in two arrays that double when full. Every string and
 * array hanging off them is a separate malloc block so that passes may
 * realloc a node's inputs or attributes in place; graph_free() releases each.
 *
 * Allocation policy: the loader caps every size that comes from a model file
 * before it reaches this module, so an allocation failing here means the
 * process is out of memory, not that the input is hostile. Such failures
 * abort through xmalloc()/xrealloc() rather than threading an error status
 * through every small helper.
 *
 * Ordering and compaction compute producers from the live nodes themselves
 * instead of trusting graph_tensor.producer, which rewrites may leave stale
 * between passes.
 */
#include "graph.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xalloc.h"

/* ------------------------------------------------------------------------ */
/* Creation and destruction                                                 */
/* ------------------------------------------------------------------------ */

graph *graph_new(void)
{
    graph *g = xmalloc(sizeof *g);
    memset(g, 0, sizeof *g);
    return g;
}

static void attr_release(graph_attr *a)
{
    free(a->name);
    free(a->s);
    free(a->floats);
    free(a->ints);
}

static void node_release(graph_node *n)
{
    free(n->name);
    free(n->op_type);
    free(n->inputs);
    free(n->outputs);
    for (int i = 0; i < n->nattrs; i++)
        attr_release(&n->attrs[i]);
    free(n->attrs);
}

static void tensor_release(graph_tensor *t)
{
    free(t->name);
    if (t->owns_data) free(t->data);
}

void graph_free(graph *g)
{
    if (!g) return;
    for (int i = 0; i < g->ntensors; i++)
        tensor_release(&g->tensors[i]);
    for (int i = 0; i < g->nnodes; i++)
        node_release(&g->nodes[i]);
    free(g->tensors);
    free(g->nodes);
    free(g->inputs);
    free(g->outputs);
    free(g);
}

static void attr_copy(graph_attr *dst, const graph_attr *src)
{
    *dst = *src;
    dst->name = xstrdup(src->name);
    dst->s = src->s ? xstrdup(src->s) : NULL;
    dst->floats = src->floats ? xmemdup(src->floats, (size_t)src->n * sizeof *src->floats) : NULL;
    dst->ints = src->ints ? xmemdup(src->ints, (size_t)src->n * sizeof *src->ints) : NULL;
}

int graph_clone(const graph *g, graph **out)
{
    graph *c = graph_new();
    c->opset = g->opset;
    memcpy(c->err, g->err, sizeof c->err);
    c->ntensors = c->cap_tensors = g->ntensors;
    c->tensors = xmalloc((size_t)g->ntensors * sizeof *c->tensors);
    for (int i = 0; i < g->ntensors; i++) {
        c->tensors[i] = g->tensors[i];
        c->tensors[i].name = xstrdup(g->tensors[i].name);
        c->tensors[i].owns_data = false;
    }
    c->nnodes = c->cap_nodes = g->nnodes;
    c->nodes = xmalloc((size_t)g->nnodes * sizeof *c->nodes);
    for (int i = 0; i < g->nnodes; i++) {
        const graph_node *s = &g->nodes[i];
        graph_node *d = &c->nodes[i];
        *d = *s;
        d->name = xstrdup(s->name);
        d->op_type = xstrdup(s->op_type);
        d->inputs = xmemdup(s->inputs, (size_t)s->ninputs * sizeof *s->inputs);
        d->outputs = xmemdup(s->outputs, (size_t)s->noutputs * sizeof *s->outputs);
        d->attrs = xmalloc((size_t)s->nattrs * sizeof *d->attrs);
        for (int k = 0; k < s->nattrs; k++)
            attr_copy(&d->attrs[k], &s->attrs[k]);
    }
    c->ninputs = g->ninputs;
    c->inputs = xmemdup(g->inputs, (size_t)g->ninputs * sizeof *g->inputs);
    c->noutputs = g->noutputs;
    c->outputs = xmemdup(g->outputs, (size_t)g->noutputs * sizeof *g->outputs);
    *out = c;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Tensors and nodes                                                        */
/* ------------------------------------------------------------------------ */

int graph_add_tensor(graph *g, const char *name, tdm_dtype dtype, int rank, const int64_t *dims)
{
    if (rank < -1 || rank > GRAPH_MAX_RANK || (rank > 0 && !dims))
        return graph_fail(g, TDM_ERR_INVALID, "tensor '%s': invalid rank %d", name ? name : "",
                          rank);
    if (g->ntensors == INT32_MAX) return graph_fail(g, TDM_ERR_NOMEM, "too many tensors");
    if (g->ntensors == g->cap_tensors) {
        int cap =
            g->cap_tensors ? (g->cap_tensors > INT32_MAX / 2 ? INT32_MAX : 2 * g->cap_tensors) : 16;
        g->tensors = xrealloc(g->tensors, (size_t)cap * sizeof *g->tensors);
        g->cap_tensors = cap;
    }
    graph_tensor *t = &g->tensors[g->ntensors];
    memset(t, 0, sizeof *t);
    t->name = xstrdup(name);
    t->dtype = dtype;
    t->rank = rank;
    for (int i = 0; i < GRAPH_MAX_RANK; i++)
        t->dims[i] = i < rank ? dims[i] : -1;
    t->producer = -1;
    return g->ntensors++;
}

int graph_find_tensor(const graph *g, const char *name)
{
    for (int i = 0; i < g->ntensors; i++)
        if (strcmp(g->tensors[i].name, name) == 0) return i;
    return -1;
}

int graph_add_node(graph *g, const char *name, const char *op_type, graph_op op, int ninputs,
                   const int *inputs, int noutputs, const int *outputs)
{
    if (ninputs < 0 || noutputs < 0 || (ninputs && !inputs) || (noutputs && !outputs))
        return graph_fail(g, TDM_ERR_INVALID, "node '%s': invalid input or output count",
                          name ? name : "");
    for (int i = 0; i < ninputs; i++)
        if (inputs[i] < -1 || inputs[i] >= g->ntensors)
            return graph_fail(g, TDM_ERR_INVALID, "node '%s': input %d refers to no tensor",
                              name ? name : "", i);
    for (int i = 0; i < noutputs; i++)
        if (outputs[i] < -1 || outputs[i] >= g->ntensors)
            return graph_fail(g, TDM_ERR_INVALID, "node '%s': output %d refers to no tensor",
                              name ? name : "", i);
    if (g->nnodes == INT32_MAX) return graph_fail(g, TDM_ERR_NOMEM, "too many nodes");
    if (g->nnodes == g->cap_nodes) {
        int cap = g->cap_nodes ? (g->cap_nodes > INT32_MAX / 2 ? INT32_MAX : 2 * g->cap_nodes) : 16;
        g->nodes = xrealloc(g->nodes, (size_t)cap * sizeof *g->nodes);
        g->cap_nodes = cap;
    }
    int idx = g->nnodes;
    graph_node *n = &g->nodes[idx];
    memset(n, 0, sizeof *n);
    n->name = xstrdup(name);
    n->op_type = xstrdup(op_type);
    n->op = op;
    n->ninputs = ninputs;
    n->inputs = xmemdup(inputs, (size_t)ninputs * sizeof *inputs);
    n->noutputs = noutputs;
    n->outputs = xmemdup(outputs, (size_t)noutputs * sizeof *outputs);
    for (int i = 0; i < noutputs; i++)
        if (outputs[i] >= 0) g->tensors[outputs[i]].producer = idx;
    g->nnodes++;
    return idx;
}

void graph_set_data(graph *g, int tensor, void *data, size_t nbytes)
{
    graph_tensor *t = &g->tensors[tensor];
    if (t->owns_data && t->data != data) free(t->data);
    t->data = data;
    t->nbytes = nbytes;
    t->owns_data = true;
}

/* ------------------------------------------------------------------------ */
/* Attributes and shapes                                                    */
/* ------------------------------------------------------------------------ */

const graph_attr *graph_attr_get(const graph_node *n, const char *name)
{
    for (int i = 0; i < n->nattrs; i++)
        if (strcmp(n->attrs[i].name, name) == 0) return &n->attrs[i];
    return NULL;
}

int64_t graph_attr_int(const graph_node *n, const char *name, int64_t dflt)
{
    const graph_attr *a = graph_attr_get(n, name);
    return a && a->type == ATTR_INT ? a->i : dflt;
}

float graph_attr_float(const graph_node *n, const char *name, float dflt)
{
    const graph_attr *a = graph_attr_get(n, name);
    if (!a) return dflt;
    /* Some exporters write whole-number floats (alpha=1) as ints. */
    if (a->type == ATTR_FLOAT) return a->f;
    if (a->type == ATTR_INT) return (float)a->i;
    return dflt;
}

const char *graph_attr_string(const graph_node *n, const char *name, const char *dflt)
{
    const graph_attr *a = graph_attr_get(n, name);
    return a && a->type == ATTR_STRING && a->s ? a->s : dflt;
}

/* The slot of attribute `name`, emptied and typed, added when n has none. */
static graph_attr *attr_slot(graph_node *n, const char *name, graph_attr_type type)
{
    graph_attr *a = NULL;
    for (int i = 0; i < n->nattrs && !a; i++)
        if (strcmp(n->attrs[i].name, name) == 0) a = &n->attrs[i];
    if (a) {
        attr_release(a);
    } else {
        n->attrs = xrealloc(n->attrs, (size_t)(n->nattrs + 1) * sizeof *n->attrs);
        a = &n->attrs[n->nattrs++];
    }
    memset(a, 0, sizeof *a);
    a->name = xstrdup(name);
    a->type = type;
    a->tensor = -1;
    return a;
}

void graph_attr_set_int(graph_node *n, const char *name, int64_t v)
{
    attr_slot(n, name, ATTR_INT)->i = v;
}

void graph_attr_set_float(graph_node *n, const char *name, float v)
{
    attr_slot(n, name, ATTR_FLOAT)->f = v;
}

void graph_attr_set_ints(graph_node *n, const char *name, const int64_t *v, int count)
{
    graph_attr *a = attr_slot(n, name, ATTR_INTS);
    a->ints = xmemdup(v, (size_t)count * sizeof *v);
    a->n = count;
}

void graph_attr_set_floats(graph_node *n, const char *name, const float *v, int count)
{
    graph_attr *a = attr_slot(n, name, ATTR_FLOATS);
    a->floats = xmemdup(v, (size_t)count * sizeof *v);
    a->n = count;
}

void graph_attr_set_string(graph_node *n, const char *name, const char *v)
{
    attr_slot(n, name, ATTR_STRING)->s = xstrdup(v);
}

int64_t graph_tensor_numel(const graph_tensor *t)
{
    if (t->rank < 0) return -1;
    int64_t n = 1;
    for (int i = 0; i < t->rank; i++) {
        if (t->dims[i] < 0) return -1;
        if (t->dims[i] && n > INT64_MAX / t->dims[i]) return -1;
        n *= t->dims[i];
    }
    return n;
}

/* ------------------------------------------------------------------------ */
/* Structure queries                                                        */
/* ------------------------------------------------------------------------ */

/* Counts reads, so a node that reads t twice (Mul(x, x)) counts twice: a
 * fusion that needs "the only reader" must not fire on it. A POST_SUM addend
 * is one of node->inputs, so it is counted like any other read. */
void graph_replace_uses(graph *g, int from, int to)
{
    for (int i = 0; i < g->nnodes; i++) {
        graph_node *n = &g->nodes[i];
        if (n->dead) continue;
        for (int k = 0; k < n->ninputs; k++)
            if (n->inputs[k] == from) n->inputs[k] = to;
    }
}

int graph_consumers(const graph *g, int tensor)
{
    int count = 0;
    for (int i = 0; i < g->nnodes; i++) {
        const graph_node *n = &g->nodes[i];
        if (n->dead) continue;
        for (int k = 0; k < n->ninputs; k++)
            if (n->inputs[k] == tensor) count++;
    }
    if (tensor >= 0 && tensor < g->ntensors && g->tensors[tensor].is_output) count++;
    return count;
}

int graph_sole_consumer(const graph *g, int t)
{
    if (g->tensors[t].is_output || graph_consumers(g, t) != 1) return -1;
    for (int i = 0; i < g->nnodes; i++) {
        const graph_node *n = &g->nodes[i];
        if (n->dead) continue;
        for (int k = 0; k < n->ninputs; k++)
            if (n->inputs[k] == t) return i;
    }
    return -1;
}

/* producer[t] = the live node writing tensor t, or -1. Fails if two live
 * nodes write the same tensor or a node names a tensor that does not exist. */
static int live_producers(graph *g, int *producer)
{
    for (int t = 0; t < g->ntensors; t++)
        producer[t] = -1;
    for (int i = 0; i < g->nnodes; i++) {
        const graph_node *n = &g->nodes[i];
        if (n->dead) continue;
        for (int k = 0; k < n->noutputs; k++) {
            int t = n->outputs[k];
            if (t < 0) continue;
            if (t >= g->ntensors)
                return graph_fail(g, TDM_ERR_PARSE, "node '%s' (op %s): output %d is missing",
                                  n->name, n->op_type, k);
            if (producer[t] >= 0 && producer[t] != i)
                return graph_fail(g, TDM_ERR_PARSE,
                                  "tensor '%s' is written by two nodes ('%s', '%s')",
                                  g->tensors[t].name, g->nodes[producer[t]].name, n->name);
            producer[t] = i;
        }
    }
    return 0;
}

/* Kahn's algorithm over live nodes. A node's indegree counts its reads of
 * tensors produced by live nodes; every other read must be of a constant or a
 * graph input, or the graph refers to something that will never exist. */
int graph_topo_sort(graph *g, int *order, int *count)
{
    int rc = 0, n = g->nnodes, done = 0, head = 0;
    int *producer = xmalloc((size_t)g->ntensors * sizeof *producer);
    int *indeg = xmalloc((size_t)n * sizeof *indeg);
    int *queue = xmalloc((size_t)n * sizeof *queue);
    /* Readers of each tensor as a CSR list, so each edge is visited once. */
    int *first = xmalloc(((size_t)g->ntensors + 1) * sizeof *first);
    int *readers = NULL;
    if ((rc = live_producers(g, producer))) goto out;
    memset(first, 0, ((size_t)g->ntensors + 1) * sizeof *first);
    size_t edges = 0;
    for (int i = 0; i < n; i++) {
        const graph_node *nd = &g->nodes[i];
        indeg[i] = 0;
        if (nd->dead) continue;
        for (int k = 0; k < nd->ninputs; k++) {
            int t = nd->inputs[k];
            if (t < 0) continue;
            if (t >= g->ntensors) {
                rc = graph_fail(g, TDM_ERR_PARSE, "node '%s' (op %s): input %d is missing",
                                nd->name, nd->op_type, k);
                goto out;
            }
            const graph_tensor *tt = &g->tensors[t];
            if (producer[t] < 0) {
                if (!tt->data && !tt->is_input) {
                    rc = graph_fail(g, TDM_ERR_PARSE,
                                    "node '%s' (op %s): input '%s' is produced by no node and is "
                                    "neither a graph input nor a constant",
                                    nd->name, nd->op_type, tt->name);
                    goto out;
                }
                continue;
            }
            indeg[i]++;
            first[t + 1]++;
            edges++;
        }
    }
    for (int i = 0; i < g->noutputs; i++) {
        int t = g->outputs[i];
        if (t < 0 || t >= g->ntensors ||
            (producer[t] < 0 && !g->tensors[t].data && !g->tensors[t].is_input)) {
            rc = graph_fail(g, TDM_ERR_PARSE, "graph output '%s' is produced by no node",
                            t >= 0 && t < g->ntensors ? g->tensors[t].name : "?");
            goto out;
        }
    }
    for (int t = 0; t < g->ntensors; t++)
        first[t + 1] += first[t];
    readers = xmalloc(edges * sizeof *readers);
    {
        int *fill = xmemdup(first, (size_t)g->ntensors * sizeof *first);
        for (int i = 0; i < n; i++) {
            const graph_node *nd = &g->nodes[i];
            if (nd->dead) continue;
            for (int k = 0; k < nd->ninputs; k++) {
                int t = nd->inputs[k];
                if (t >= 0 && producer[t] >= 0) readers[fill[t]++] = i;
            }
        }
        free(fill);
    }
    int live = 0;
    for (int i = 0; i < n; i++) {
        if (g->nodes[i].dead) continue;
        live++;
        if (indeg[i] == 0) queue[done++] = i;
    }
    while (head < done) {
        const graph_node *nd = &g->nodes[queue[head++]];
        for (int k = 0; k < nd->noutputs; k++) {
            int t = nd->outputs[k];
            /* -2 marks a released tensor: a node listing the same output
             * twice must release its readers once. */
            if (t < 0 || producer[t] == -2) continue;
            producer[t] = -2;
            for (int r = first[t]; r < first[t + 1]; r++)
                if (--indeg[readers[r]] == 0) queue[done++] = readers[r];
        }
    }
    if (done != live) {
        int stuck = -1;
        for (int i = 0; i < n && stuck < 0; i++)
            if (!g->nodes[i].dead && indeg[i] > 0) stuck = i;
        rc = graph_fail(g, TDM_ERR_PARSE, "the graph has a cycle through node '%s' (op %s)",
                        g->nodes[stuck].name, g->nodes[stuck].op_type);
        goto out;
    }
    if (done) memcpy(order, queue, (size_t)done * sizeof *order);
    *count = done;
out:
    free(readers);
    free(first);
    free(queue);
    free(indeg);
    free(producer);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Compaction                                                               */
/* ------------------------------------------------------------------------ */

static int remap(const int *map, int t)
{
    return t < 0 ? t : map[t];
}

int graph_compact(graph *g)
{
    int *map = xmalloc((size_t)g->ntensors * sizeof *map);
    for (int t = 0; t < g->ntensors; t++)
        map[t] = g->tensors[t].is_input || g->tensors[t].is_output ? 0 : -1;
    for (int i = 0; i < g->ninputs; i++)
        if (g->inputs[i] >= 0 && g->inputs[i] < g->ntensors) map[g->inputs[i]] = 0;
    for (int i = 0; i < g->noutputs; i++)
        if (g->outputs[i] >= 0 && g->outputs[i] < g->ntensors) map[g->outputs[i]] = 0;
    for (int i = 0; i < g->nnodes; i++) {
        const graph_node *n = &g->nodes[i];
        if (n->dead) continue;
        for (int k = 0; k < n->ninputs; k++)
            if (n->inputs[k] >= 0) map[n->inputs[k]] = 0;
        for (int k = 0; k < n->noutputs; k++)
            if (n->outputs[k] >= 0) map[n->outputs[k]] = 0;
        for (int k = 0; k < n->nattrs; k++)
            if (n->attrs[k].type == ATTR_TENSOR && n->attrs[k].tensor >= 0)
                map[n->attrs[k].tensor] = 0;
    }
    int nt = 0;
    for (int t = 0; t < g->ntensors; t++) {
        if (map[t] < 0) {
            tensor_release(&g->tensors[t]);
            continue;
        }
        map[t] = nt;
        g->tensors[nt] = g->tensors[t];
        g->tensors[nt].producer = -1;
        nt++;
    }
    g->ntensors = nt;
    int nn = 0;
    for (int i = 0; i < g->nnodes; i++) {
        if (g->nodes[i].dead) {
            node_release(&g->nodes[i]);
            continue;
        }
        graph_node *n = &g->nodes[nn];
        *n = g->nodes[i];
        for (int k = 0; k < n->ninputs; k++)
            n->inputs[k] = remap(map, n->inputs[k]);
        for (int k = 0; k < n->noutputs; k++) {
            n->outputs[k] = remap(map, n->outputs[k]);
            if (n->outputs[k] >= 0) g->tensors[n->outputs[k]].producer = nn;
        }
        for (int k = 0; k < n->nattrs; k++)
            if (n->attrs[k].type == ATTR_TENSOR)
                n->attrs[k].tensor = remap(map, n->attrs[k].tensor);
        nn++;
    }
    g->nnodes = nn;
    for (int i = 0; i < g->ninputs; i++)
        g->inputs[i] = remap(map, g->inputs[i]);
    for (int i = 0; i < g->noutputs; i++)
        g->outputs[i] = remap(map, g->outputs[i]);
    free(map);
    return 0;
}

int graph_fail(graph *g, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g->err, sizeof g->err, fmt, ap);
    va_end(ap);
    return status;
}
