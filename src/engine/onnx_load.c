/*
 * onnx_load: ModelProto bytes -> graph (see onnx_load.h for the contract).
 *
 * protobuf-c (code generated at build time from Debian's onnx.proto) does the
 * wire decoding; everything here is about trusting nothing the message says:
 * every count and size is checked before it is used to allocate or index, and
 * every refusal names the tensor or node it is about.
 *
 * The load runs in four passes over the unpacked message:
 *   1. initializers -> constant tensors (the large payloads: raw_data buffers
 *      are taken over from the unpacked message instead of copied, so a
 *      100 MB model is not held three times at the peak);
 *   2. graph inputs that are not initializers -> input tensors;
 *   3. node outputs -> tensors (Constant nodes become constants right here),
 *      so nodes listed out of order still find their inputs;
 *   4. nodes -> graph nodes with their attributes; graph outputs.
 * A final topological sort proves the graph acyclic and free of dangling
 * reads. Names are resolved through a hash table local to the load, so a
 * hostile file with many tensors costs linear, not quadratic, time.
 */
#include "onnx_load.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnx.pb-c.h"
#include "ops.h"
#include "xalloc.h"

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "raw_data payloads are little-endian and are used in place"
#endif

/* Hard limits on what a file may ask for (beyond the 4 GiB of constants). */
#define MAX_NAME 4096         /* tensor, node, attribute names, op types */
#define MAX_STRING_ATTR 65536 /* a string attribute's bytes */
#define MAX_ATTR_ELEMS (1 << 24)
#define MAX_NODE_IO 65536   /* inputs or outputs of one node */
#define MAX_ATTRS 4096      /* attributes of one node */
#define MAX_ITEMS (1 << 24) /* nodes, initializers, graph inputs/outputs */

typedef struct loader {
    graph *g;
    size_t const_bytes;
    int *slots; /* open-addressing name table: tensor index or -1 */
    size_t mask;
} loader;

/* ------------------------------------------------------------------------ */
/* Small helpers                                                            */
/* ------------------------------------------------------------------------ */

static const char *str(const char *s)
{
    return s ? s : "";
}

/* Element size of a type a model file may hold, 0 for one we refuse:
 * bfloat16 exists only inside sessions (--precision bf16), not in files. */
static size_t dtype_size(int dt)
{
    return dt == TDM_DTYPE_BFLOAT16 ? 0 : tdm_dtype_size((tdm_dtype)dt);
}

/* ONNX names of element types, for messages about ones we refuse. */
static const char *onnx_type_name(int dt)
{
    static const char *const names[] = {"undefined",  "float",   "uint8",  "int8",   "uint16",
                                        "int16",      "int32",   "int64",  "string", "bool",
                                        "float16",    "double",  "uint32", "uint64", "complex64",
                                        "complex128", "bfloat16"};
    return dt >= 0 && dt < (int)(sizeof names / sizeof names[0]) ? names[dt] : "unknown";
}

static bool is_default_domain(const char *d)
{
    return !d || !*d || strcmp(d, "ai.onnx") == 0;
}

/* ------------------------------------------------------------------------ */
/* Name table                                                               */
/* ------------------------------------------------------------------------ */

static uint64_t hash_name(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static void names_init(loader *l, size_t expected)
{
    size_t cap = 64;
    while (cap < 2 * expected)
        cap *= 2;
    l->slots = xcalloc(cap, sizeof *l->slots);
    for (size_t i = 0; i < cap; i++)
        l->slots[i] = -1;
    l->mask = cap - 1;
}

/* Slot of name: the one holding it, or the empty one where it would go. */
static size_t names_slot(const loader *l, const char *name)
{
    size_t i = hash_name(name) & l->mask;
    while (l->slots[i] >= 0 && strcmp(l->g->tensors[l->slots[i]].name, name) != 0)
        i = (i + 1) & l->mask;
    return i;
}

static int names_find(const loader *l, const char *name)
{
    return l->slots[names_slot(l, name)];
}

/* Checks a name against the length limit; what names it in a message. */
static int check_name(loader *l, const char *name, const char *what)
{
    if (strnlen(name, MAX_NAME + 1) > MAX_NAME)
        return graph_fail(l->g, TDM_ERR_PARSE, "%s has a name longer than %d bytes", what,
                          MAX_NAME);
    return 0;
}

/* Adds a named tensor; a second definition of a name is refused. */
static int add_named(loader *l, const char *name, tdm_dtype dt, int rank, const int64_t *dims,
                     const char *what)
{
    int rc = check_name(l, name, what);
    if (rc) return rc;
    size_t slot = names_slot(l, name);
    if (l->slots[slot] >= 0)
        return graph_fail(l->g, TDM_ERR_PARSE, "tensor '%s' (%s) is defined twice", name, what);
    int t = graph_add_tensor(l->g, name, dt, rank, dims);
    if (t < 0) return t;
    l->slots[slot] = t;
    return t;
}

/* ------------------------------------------------------------------------ */
/* Tensors                                                                  */
/* ------------------------------------------------------------------------ */

/* A checked tensor payload, ready for graph_set_data. */
typedef struct payload {
    tdm_dtype dtype;
    int rank;
    int64_t dims[GRAPH_MAX_RANK];
    void *data;
    size_t nbytes;
} payload;

/* Converts a TensorProto into a payload; `label` names it in messages. */
static int tensor_payload(loader *l, Onnx__TensorProto *tp, const char *label, payload *out)
{
    graph *g = l->g;
    payload p = {.dtype = TDM_DTYPE_UNDEFINED};
    if ((tp->has_data_location &&
         tp->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL) ||
        tp->n_external_data > 0)
        return graph_fail(g, TDM_ERR_UNSUPPORTED,
                          "%s keeps its data in an external file, which tandem does not load; "
                          "save the model with its weights inline",
                          label);
    if (tp->segment) return graph_fail(g, TDM_ERR_UNSUPPORTED, "%s is a segmented tensor", label);
    size_t esz = dtype_size(tp->data_type);
    if (!esz)
        return graph_fail(g, TDM_ERR_UNSUPPORTED,
                          "%s has element type %s (%d), which tandem does not run", label,
                          onnx_type_name(tp->data_type), (int)tp->data_type);
    if (tp->n_dims > GRAPH_MAX_RANK)
        return graph_fail(g, TDM_ERR_PARSE, "%s has rank %zu, above the limit of %d", label,
                          tp->n_dims, GRAPH_MAX_RANK);
    p.dtype = (tdm_dtype)tp->data_type;
    p.rank = (int)tp->n_dims;
    size_t room = ONNX_MAX_CONST_BYTES - l->const_bytes, numel = 1; /* const_bytes <= max */
    for (size_t i = 0; i < tp->n_dims; i++) {
        int64_t d = tp->dims[i];
        if (d < 0)
            return graph_fail(g, TDM_ERR_PARSE, "%s has a negative dimension (%lld)", label,
                              (long long)d);
        p.dims[i] = d;
    }
    for (size_t i = 0; i < tp->n_dims; i++) {
        /* Any zero dim makes the tensor empty, whatever the others say. */
        if (p.dims[i] == 0) {
            numel = 0;
            break;
        }
        if ((uint64_t)p.dims[i] > room / esz / numel)
            return graph_fail(g, TDM_ERR_PARSE,
                              "%s is too large: constants may total at most %zu bytes", label,
                              (size_t)ONNX_MAX_CONST_BYTES);
        numel *= (size_t)p.dims[i];
    }
    p.nbytes = numel * esz;
    if (p.nbytes > room)
        return graph_fail(g, TDM_ERR_PARSE,
                          "%s is too large: constants may total at most %zu bytes", label,
                          (size_t)ONNX_MAX_CONST_BYTES);
    size_t typed = tp->data_type == TDM_DTYPE_FLOAT   ? tp->n_float_data
                   : tp->data_type == TDM_DTYPE_INT64 ? tp->n_int64_data
                                                      : tp->n_int32_data;
    bool raw = tp->has_raw_data && tp->raw_data.len > 0;
    if (raw && typed)
        return graph_fail(g, TDM_ERR_PARSE, "%s has both raw_data and typed data", label);
    if (raw) {
        if (tp->raw_data.len != p.nbytes)
            return graph_fail(g, TDM_ERR_PARSE,
                              "%s: raw_data holds %zu bytes but its shape needs %zu", label,
                              tp->raw_data.len, p.nbytes);
        /* protobuf-c's default allocator is malloc: take the buffer over. */
        p.data = tp->raw_data.data;
        tp->raw_data.data = NULL;
        tp->raw_data.len = 0;
    } else {
        if (typed != numel)
            return graph_fail(g, TDM_ERR_PARSE, "%s holds %zu values but its shape needs %zu",
                              label, typed, numel);
        p.data = xcalloc(p.nbytes ? p.nbytes : 1, 1);
        if (tp->data_type == TDM_DTYPE_FLOAT) {
            if (numel) memcpy(p.data, tp->float_data, p.nbytes);
        } else if (tp->data_type == TDM_DTYPE_INT64) {
            if (numel) memcpy(p.data, tp->int64_data, p.nbytes);
        } else if (tp->data_type == TDM_DTYPE_INT32) {
            if (numel) memcpy(p.data, tp->int32_data, p.nbytes);
        } else {
            /* uint8, int8 and bool travel one per int32_data element. */
            int32_t lo = tp->data_type == TDM_DTYPE_INT8 ? -128 : 0;
            int32_t hi = tp->data_type == TDM_DTYPE_INT8   ? 127
                         : tp->data_type == TDM_DTYPE_BOOL ? 1
                                                           : 255;
            for (size_t i = 0; i < numel; i++) {
                int32_t v = tp->int32_data[i];
                if (v < lo || v > hi) {
                    free(p.data);
                    return graph_fail(g, TDM_ERR_PARSE,
                                      "%s: value %d at %zu is out of range for %s", label, (int)v,
                                      i, onnx_type_name(tp->data_type));
                }
                ((uint8_t *)p.data)[i] = (uint8_t)v;
            }
        }
    }
    l->const_bytes += p.nbytes;
    *out = p;
    return 0;
}

/* Adds a constant tensor from a payload (taking it). */
static int add_const(loader *l, const char *name, payload *p, bool named, const char *what)
{
    int t = named ? add_named(l, name, p->dtype, p->rank, p->dims, what)
                  : graph_add_tensor(l->g, name, p->dtype, p->rank, p->dims);
    if (t < 0) {
        free(p->data);
        return t;
    }
    graph_set_data(l->g, t, p->data, p->nbytes);
    p->data = NULL;
    return t;
}

/* dtype and dims from a ValueInfo. `required`: a graph input must be a tensor
 * of a type we run; an output may leave its type to shape inference. */
static int value_info_type(loader *l, const Onnx__ValueInfoProto *vi, bool required,
                           const char *what, tdm_dtype *dt, int *rank, int64_t *dims)
{
    graph *g = l->g;
    const char *name = str(vi->name);
    *dt = TDM_DTYPE_UNDEFINED;
    *rank = -1;
    const Onnx__TypeProto *tp = vi->type;
    if (!tp || tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !tp->tensor_type) {
        if (!required) return 0;
        return graph_fail(g, TDM_ERR_UNSUPPORTED, "%s '%s' is not a tensor", what, name);
    }
    const Onnx__TypeProto__Tensor *tt = tp->tensor_type;
    if (tt->has_elem_type && tt->elem_type != 0) {
        if (!dtype_size(tt->elem_type))
            return graph_fail(g, TDM_ERR_UNSUPPORTED,
                              "%s '%s' has element type %s (%d), which tandem does not run", what,
                              name, onnx_type_name(tt->elem_type), (int)tt->elem_type);
        *dt = (tdm_dtype)tt->elem_type;
    } else if (required) {
        return graph_fail(g, TDM_ERR_PARSE, "%s '%s' has no element type", what, name);
    }
    if (!tt->shape) return 0;
    if (tt->shape->n_dim > GRAPH_MAX_RANK)
        return graph_fail(g, TDM_ERR_PARSE, "%s '%s' has rank %zu, above the limit of %d", what,
                          name, tt->shape->n_dim, GRAPH_MAX_RANK);
    for (size_t i = 0; i < tt->shape->n_dim; i++) {
        const Onnx__TensorShapeProto__Dimension *d = tt->shape->dim[i];
        dims[i] = -1;
        if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE) {
            if (d->dim_value < 0)
                return graph_fail(g, TDM_ERR_PARSE, "%s '%s' has a negative dimension (%lld)", what,
                                  name, (long long)d->dim_value);
            dims[i] = d->dim_value;
        }
    }
    *rank = (int)tt->shape->n_dim;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Nodes                                                                    */
/* ------------------------------------------------------------------------ */

/* The node's name for messages and for the graph: exporters may leave it
 * empty, so fall back to op type and position. */
static char *node_name(const Onnx__NodeProto *np, size_t idx)
{
    if (np->name && *np->name) return xstrndup(np->name, strnlen(np->name, MAX_NAME));
    char buf[MAX_NAME + 32];
    int n = snprintf(buf, sizeof buf, "%.*s_%zu", MAX_NAME, str(np->op_type), idx);
    return xstrndup(buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

/* Attribute kind, inferred from the content when an old exporter left the
 * type field out. */
static int attr_kind(const Onnx__AttributeProto *a)
{
    if (a->has_type && a->type != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__UNDEFINED) return a->type;
    if (a->n_floats) return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS;
    if (a->n_ints) return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
    if (a->t) return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR;
    if (a->has_s) return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING;
    if (a->has_f) return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT;
    if (a->has_i) return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
    return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__UNDEFINED;
}

/* Fills *out from a; out->name is set by the caller. */
static int convert_attr(loader *l, const char *node, const char *op, Onnx__AttributeProto *a,
                        graph_attr *out)
{
    graph *g = l->g;
    const char *an = str(a->name);
    out->tensor = -1;
    switch (attr_kind(a)) {
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT:
        out->type = ATTR_FLOAT;
        out->f = a->f;
        return 0;
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT:
        out->type = ATTR_INT;
        out->i = a->i;
        return 0;
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING:
        if (a->s.len > MAX_STRING_ATTR || (a->s.len && memchr(a->s.data, 0, a->s.len)))
            return graph_fail(g, TDM_ERR_PARSE,
                              "node '%s' (op %s): string attribute '%s' is too long or holds NUL",
                              node, op, an);
        out->type = ATTR_STRING;
        out->s = xstrndup(a->s.len ? (const char *)a->s.data : "", a->s.len);
        return 0;
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS:
        if (a->n_floats > MAX_ATTR_ELEMS)
            return graph_fail(g, TDM_ERR_PARSE, "node '%s' (op %s): attribute '%s' is too long",
                              node, op, an);
        out->type = ATTR_FLOATS;
        out->n = (int)a->n_floats;
        out->floats = xcalloc(a->n_floats, sizeof *out->floats);
        if (a->n_floats) memcpy(out->floats, a->floats, a->n_floats * sizeof *out->floats);
        return 0;
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS:
        if (a->n_ints > MAX_ATTR_ELEMS)
            return graph_fail(g, TDM_ERR_PARSE, "node '%s' (op %s): attribute '%s' is too long",
                              node, op, an);
        out->type = ATTR_INTS;
        out->n = (int)a->n_ints;
        out->ints = xcalloc(a->n_ints, sizeof *out->ints);
        if (a->n_ints) memcpy(out->ints, a->ints, a->n_ints * sizeof *out->ints);
        return 0;
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR: {
        if (!a->t)
            return graph_fail(g, TDM_ERR_PARSE, "node '%s' (op %s): tensor attribute '%s' is empty",
                              node, op, an);
        char label[2 * MAX_NAME + 64], tname[2 * MAX_NAME + 2];
        snprintf(label, sizeof label, "attribute '%s' of node '%s' (op %s)", an, node, op);
        payload p;
        int rc = tensor_payload(l, a->t, label, &p);
        if (rc) return rc;
        /* Not entered in the name table: nothing refers to it by name. */
        snprintf(tname, sizeof tname, "%s:%s", node, an);
        int t = add_const(l, tname, &p, false, label);
        if (t < 0) return t;
        out->type = ATTR_TENSOR;
        out->tensor = t;
        return 0;
    }
    default:
        return graph_fail(g, TDM_ERR_UNSUPPORTED,
                          "node '%s' (op %s): attribute '%s' is of a kind tandem does not run "
                          "(graph, strings, tensors or type)",
                          node, op, an);
    }
}

static int convert_attrs(loader *l, const Onnx__NodeProto *np, int idx)
{
    graph *g = l->g;
    graph_node *n = &g->nodes[idx];
    if (np->n_attribute > MAX_ATTRS)
        return graph_fail(g, TDM_ERR_PARSE, "node '%s' (op %s) has too many attributes", n->name,
                          n->op_type);
    n->attrs = xcalloc(np->n_attribute, sizeof *n->attrs);
    for (size_t i = 0; i < np->n_attribute; i++) {
        Onnx__AttributeProto *a = np->attribute[i];
        const char *an = str(a->name);
        if (!*an || strnlen(an, MAX_NAME + 1) > MAX_NAME)
            return graph_fail(g, TDM_ERR_PARSE,
                              "node '%s' (op %s): an attribute has no name or "
                              "one that is too long",
                              n->name, n->op_type);
        if (graph_attr_get(n, an))
            return graph_fail(g, TDM_ERR_PARSE, "node '%s' (op %s): attribute '%s' appears twice",
                              n->name, n->op_type, an);
        graph_attr tmp = {0};
        int rc = convert_attr(l, n->name, n->op_type, a, &tmp);
        if (rc) {
            free(tmp.s);
            free(tmp.floats);
            free(tmp.ints);
            return rc;
        }
        tmp.name = xstrndup(an, strlen(an));
        n->attrs[n->nattrs++] = tmp;
    }
    return 0;
}

/* A Constant node's value as a payload. */
static int constant_payload(loader *l, Onnx__NodeProto *np, const char *name, payload *out)
{
    graph *g = l->g;
    Onnx__AttributeProto *a = np->n_attribute == 1 ? np->attribute[0] : NULL;
    const char *an = a ? str(a->name) : "";
    char label[2 * MAX_NAME + 32];
    snprintf(label, sizeof label, "node '%s' (op Constant)", name);
    if (!a) return graph_fail(g, TDM_ERR_PARSE, "%s must have exactly one attribute", label);
    payload p = {.rank = 0};
    if (strcmp(an, "value") == 0 && a->t) return tensor_payload(l, a->t, label, out);
    if (strcmp(an, "value_float") == 0 && a->has_f) {
        p.dtype = TDM_DTYPE_FLOAT;
        p.nbytes = sizeof(float);
        p.data = xcalloc(1, sizeof(float));
        memcpy(p.data, &a->f, sizeof(float));
    } else if (strcmp(an, "value_int") == 0 && a->has_i) {
        p.dtype = TDM_DTYPE_INT64;
        p.nbytes = sizeof(int64_t);
        p.data = xcalloc(1, sizeof(int64_t));
        memcpy(p.data, &a->i, sizeof(int64_t));
    } else if (strcmp(an, "value_floats") == 0 && a->n_floats <= MAX_ATTR_ELEMS) {
        p.dtype = TDM_DTYPE_FLOAT;
        p.rank = 1;
        p.dims[0] = (int64_t)a->n_floats;
        p.nbytes = a->n_floats * sizeof(float);
        p.data = xcalloc(a->n_floats, sizeof(float));
        if (p.nbytes) memcpy(p.data, a->floats, p.nbytes);
    } else if (strcmp(an, "value_ints") == 0 && a->n_ints <= MAX_ATTR_ELEMS) {
        p.dtype = TDM_DTYPE_INT64;
        p.rank = 1;
        p.dims[0] = (int64_t)a->n_ints;
        p.nbytes = a->n_ints * sizeof(int64_t);
        p.data = xcalloc(a->n_ints, sizeof(int64_t));
        if (p.nbytes) memcpy(p.data, a->ints, p.nbytes);
    } else {
        return graph_fail(g, TDM_ERR_UNSUPPORTED,
                          "%s: attribute '%.*s' is not a value tandem runs (value, value_float, "
                          "value_int, value_floats or value_ints)",
                          label, 64, an);
    }
    if (p.nbytes > ONNX_MAX_CONST_BYTES - l->const_bytes) {
        free(p.data);
        return graph_fail(g, TDM_ERR_PARSE, "%s is too large", label);
    }
    l->const_bytes += p.nbytes;
    *out = p;
    return 0;
}

/* Pass 3 for one node: its output tensors. Returns 1 for a Constant node
 * (fully handled here), 0 for any other, or a negative status. */
static int declare_outputs(loader *l, Onnx__NodeProto *np, size_t idx)
{
    graph *g = l->g;
    int rc = 0;
    char *name = node_name(np, idx);
    char what[MAX_NAME + 64];
    snprintf(what, sizeof what, "output of node '%s'", name);
    if (np->n_output == 0 || np->n_output > MAX_NODE_IO || np->n_input > MAX_NODE_IO) {
        rc = graph_fail(g, TDM_ERR_PARSE, "node '%s' (op %.*s) has %zu outputs and %zu inputs",
                        name, 64, str(np->op_type), np->n_output, np->n_input);
        goto out;
    }
    if (!np->output[0] || !*np->output[0]) {
        rc = graph_fail(g, TDM_ERR_PARSE, "node '%s' (op %.*s): its first output has no name", name,
                        64, str(np->op_type));
        goto out;
    }
    if (is_default_domain(np->domain) &&
        ops_lookup(str(np->domain), str(np->op_type)) == OP_CONSTANT) {
        if (np->n_output != 1 || np->n_input != 0) {
            rc = graph_fail(g, TDM_ERR_PARSE,
                            "node '%s' (op Constant) must have no inputs and one output", name);
            goto out;
        }
        payload p;
        if ((rc = constant_payload(l, np, name, &p))) goto out;
        rc = add_const(l, np->output[0], &p, true, what);
        rc = rc < 0 ? rc : 1;
        goto out;
    }
    for (size_t k = 0; k < np->n_output; k++) {
        const char *o = str(np->output[k]);
        if (!*o) continue;
        if ((rc = add_named(l, o, TDM_DTYPE_UNDEFINED, -1, NULL, what)) < 0) goto out;
        rc = 0;
    }
out:
    free(name);
    return rc;
}

/* Pass 4 for one node. */
static int add_node(loader *l, Onnx__NodeProto *np, size_t idx)
{
    graph *g = l->g;
    int rc = 0;
    char *name = node_name(np, idx);
    const char *op_type = str(np->op_type);
    int *ins = xcalloc(np->n_input, sizeof *ins), *outs = xcalloc(np->n_output, sizeof *outs);
    if ((rc = check_name(l, op_type, "an op type"))) goto out;
    graph_op op = ops_lookup(str(np->domain), op_type);
    if (op == OP_UNKNOWN) {
        if (is_default_domain(np->domain))
            rc = graph_fail(g, TDM_ERR_UNSUPPORTED, "node '%s' (op %s): unsupported operator", name,
                            op_type);
        else
            rc = graph_fail(g, TDM_ERR_UNSUPPORTED,
                            "node '%s' (op %s, domain %.*s): unsupported operator", name, op_type,
                            64, np->domain);
        goto out;
    }
    for (size_t k = 0; k < np->n_input; k++) {
        const char *in = str(np->input[k]);
        ins[k] = *in ? names_find(l, in) : -1;
        if (*in && ins[k] < 0) {
            rc = graph_fail(g, TDM_ERR_PARSE,
                            "node '%s' (op %s): input '%.*s' is produced by no node and is neither "
                            "a graph input nor an initializer",
                            name, op_type, MAX_NAME, in);
            goto out;
        }
    }
    for (size_t k = 0; k < np->n_output; k++) {
        const char *o = str(np->output[k]);
        outs[k] = *o ? names_find(l, o) : -1;
    }
    int n = graph_add_node(g, name, op_type, op, (int)np->n_input, ins, (int)np->n_output, outs);
    if (n < 0) {
        rc = n;
        goto out;
    }
    rc = convert_attrs(l, np, n);
out:
    free(outs);
    free(ins);
    free(name);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Nesting guard                                                            */
/* ------------------------------------------------------------------------ */

/* protobuf-c unpacks nested messages recursively with no depth limit, and
 * ONNX nests without bound (a node's attribute holds a graph whose node holds
 * an attribute...): a few hundred kilobytes of crafted bytes would overflow
 * the stack. This walks the wire format with the generated descriptors before
 * unpacking, descending only into fields the schema says are messages, and
 * refuses nesting deeper than MAX_DEPTH. Everything else is left to unpack. */
#define MAX_DEPTH 32

static bool read_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    uint64_t r = 0;
    for (int shift = 0; shift < 64 && *p < end; shift += 7) {
        uint8_t b = *(*p)++;
        r |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = r;
            return true;
        }
    }
    return false;
}

/* 0: fine, or too malformed for this walk to judge (unpack will refuse it);
 * -1: nested too deep. */
static int nesting_check(const ProtobufCMessageDescriptor *desc, const uint8_t *p,
                         const uint8_t *end, int depth)
{
    if (depth > MAX_DEPTH) return -1;
    while (p < end) {
        uint64_t key, v;
        if (!read_varint(&p, end, &key)) return 0;
        switch (key & 7) {
        case 0:
            if (!read_varint(&p, end, &v)) return 0;
            break;
        case 1:
            if (end - p < 8) return 0;
            p += 8;
            break;
        case 5:
            if (end - p < 4) return 0;
            p += 4;
            break;
        case 2: {
            if (!read_varint(&p, end, &v) || v > (uint64_t)(end - p)) return 0;
            const ProtobufCFieldDescriptor *f =
                key >> 3 <= UINT32_MAX
                    ? protobuf_c_message_descriptor_get_field(desc, (unsigned)(key >> 3))
                    : NULL;
            if (f && f->type == PROTOBUF_C_TYPE_MESSAGE &&
                nesting_check(f->descriptor, p, p + v, depth + 1) < 0)
                return -1;
            p += v;
            break;
        }
        default:
            return 0;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* The model                                                                */
/* ------------------------------------------------------------------------ */

static int load_opset(loader *l, const Onnx__ModelProto *m)
{
    for (size_t i = 0; i < m->n_opset_import; i++) {
        const Onnx__OperatorSetIdProto *o = m->opset_import[i];
        if (!is_default_domain(o->domain)) continue;
        if (!o->has_version || o->version < 1)
            return graph_fail(l->g, TDM_ERR_PARSE, "the model's default-domain opset is invalid");
        l->g->opset = o->version;
        return 0;
    }
    return graph_fail(l->g, TDM_ERR_PARSE, "the model imports no opset of the default ONNX domain");
}

static int load_inputs(loader *l, const Onnx__GraphProto *gp)
{
    graph *g = l->g;
    g->inputs = xcalloc(gp->n_input, sizeof *g->inputs);
    for (size_t i = 0; i < gp->n_input; i++) {
        const Onnx__ValueInfoProto *vi = gp->input[i];
        const char *name = str(vi->name);
        int rc = check_name(l, name, "a graph input");
        if (rc) return rc;
        if (!*name) return graph_fail(g, TDM_ERR_PARSE, "graph input %zu has no name", i);
        int t = names_find(l, name);
        if (t >= 0 && g->tensors[t].data) continue; /* an initializer: a constant, not an input */
        tdm_dtype dt;
        int rank;
        int64_t dims[GRAPH_MAX_RANK];
        if ((rc = value_info_type(l, vi, true, "graph input", &dt, &rank, dims))) return rc;
        if ((t = add_named(l, name, dt, rank, dims, "graph input")) < 0) return t;
        g->tensors[t].is_input = true;
        g->inputs[g->ninputs++] = t;
    }
    if (g->ninputs == 0) return graph_fail(g, TDM_ERR_PARSE, "the model has no input");
    return 0;
}

static int load_outputs(loader *l, const Onnx__GraphProto *gp)
{
    graph *g = l->g;
    if (gp->n_output == 0) return graph_fail(g, TDM_ERR_PARSE, "the model has no output");
    g->outputs = xcalloc(gp->n_output, sizeof *g->outputs);
    for (size_t i = 0; i < gp->n_output; i++) {
        const Onnx__ValueInfoProto *vi = gp->output[i];
        const char *name = str(vi->name);
        int rc = check_name(l, name, "a graph output");
        if (rc) return rc;
        int t = *name ? names_find(l, name) : -1;
        if (t < 0)
            return graph_fail(g, TDM_ERR_PARSE, "graph output '%s' is produced by no node", name);
        graph_tensor *gt = &g->tensors[t];
        if (gt->is_output)
            return graph_fail(g, TDM_ERR_PARSE, "graph output '%s' is listed twice", name);
        tdm_dtype dt;
        int rank;
        int64_t dims[GRAPH_MAX_RANK];
        if ((rc = value_info_type(l, vi, false, "graph output", &dt, &rank, dims))) return rc;
        gt = &g->tensors[t];
        /* Constants and inputs already know their type; computed outputs
         * take what the file declares until shape inference refines it. */
        if (!gt->data && !gt->is_input && gt->rank < 0) {
            gt->dtype = dt;
            gt->rank = rank;
            for (int k = 0; k < rank; k++)
                gt->dims[k] = dims[k];
        }
        gt->is_output = true;
        g->outputs[g->noutputs++] = t;
    }
    return 0;
}

static int load_graph(loader *l, Onnx__GraphProto *gp)
{
    graph *g = l->g;
    int rc;
    if (gp->n_node > MAX_ITEMS || gp->n_initializer > MAX_ITEMS || gp->n_input > MAX_ITEMS ||
        gp->n_output > MAX_ITEMS)
        return graph_fail(g, TDM_ERR_PARSE, "the graph has too many nodes, inputs or initializers");
    if (gp->n_sparse_initializer)
        return graph_fail(g, TDM_ERR_UNSUPPORTED, "the model has sparse initializers");
    size_t names = gp->n_initializer + gp->n_input;
    for (size_t i = 0; i < gp->n_node; i++) {
        if (gp->node[i]->n_output > MAX_NODE_IO)
            return graph_fail(g, TDM_ERR_PARSE, "node %zu has too many outputs", i);
        names += gp->node[i]->n_output;
    }
    names_init(l, names);

    for (size_t i = 0; i < gp->n_initializer; i++) {
        Onnx__TensorProto *tp = gp->initializer[i];
        const char *name = str(tp->name);
        if ((rc = check_name(l, name, "an initializer"))) return rc;
        if (!*name) return graph_fail(g, TDM_ERR_PARSE, "initializer %zu has no name", i);
        char label[MAX_NAME + 32];
        snprintf(label, sizeof label, "initializer '%s'", name);
        payload p;
        if ((rc = tensor_payload(l, tp, label, &p))) return rc;
        if ((rc = add_const(l, name, &p, true, "initializer")) < 0) return rc;
    }
    if ((rc = load_inputs(l, gp))) return rc;

    bool *is_const = xcalloc(gp->n_node, sizeof *is_const);
    for (size_t i = 0; i < gp->n_node && rc >= 0; i++) {
        rc = declare_outputs(l, gp->node[i], i);
        is_const[i] = rc == 1;
    }
    for (size_t i = 0; i < gp->n_node && rc >= 0; i++)
        if (!is_const[i]) rc = add_node(l, gp->node[i], i);
    free(is_const);
    if (rc < 0) return rc;
    return load_outputs(l, gp);
}

int onnx_load(const void *data, size_t len, graph **out, char *err, size_t errlen)
{
    loader l = {.g = graph_new()};
    int rc = 0, count = 0;
    int *order = NULL;
    Onnx__ModelProto *m = NULL;
    if (len &&
        nesting_check(&onnx__model_proto__descriptor, data, (const uint8_t *)data + len, 0) < 0) {
        rc = graph_fail(l.g, TDM_ERR_PARSE, "the model nests messages deeper than %d levels",
                        MAX_DEPTH);
        goto out;
    }
    m = onnx__model_proto__unpack(NULL, len, data);
    if (!m) {
        rc = graph_fail(l.g, TDM_ERR_PARSE,
                        "not an ONNX model: the bytes do not decode as a ModelProto");
        goto out;
    }
    if (!m->graph) {
        rc = graph_fail(l.g, TDM_ERR_PARSE, "not an ONNX model: it has no graph");
        goto out;
    }
    if ((rc = load_opset(&l, m))) goto out;
    if ((rc = load_graph(&l, m->graph))) goto out;
    order = xcalloc((size_t)l.g->nnodes, sizeof *order);
    if ((rc = graph_topo_sort(l.g, order, &count))) goto out;
out:
    free(order);
    free(l.slots);
    if (m) onnx__model_proto__free_unpacked(m, NULL);
    if (rc) {
        if (errlen) snprintf(err, errlen, "%s", l.g->err);
        graph_free(l.g);
        return rc;
    }
    l.g->err[0] = '\0';
    *out = l.g;
    return 0;
}
