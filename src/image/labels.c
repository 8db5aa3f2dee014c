/*
 * labels: class names, one per line, and the top-k of a model's output row.
 *
 * A label file is read whole (capped), split at '\n' with a trailing '\r'
 * trimmed, and kept as one buffer plus an array of pointers into it. Blank
 * lines count (indices must stay aligned with the model's classes); only the
 * empty "line" after a final newline is not a label. Labels must be UTF-8
 * without NUL bytes, because they end up in JSON answers.
 *
 * The built-in list is data/imagenet_labels.txt, built into the binary with
 * EMBED (embed.h), so the binary needs no data files at run time.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "embed.h"
#include "image_internal.h"
#include "tandem/image.h"

#define LABELS_MAX_BYTES (16u << 20)
#define LABELS_MAX_COUNT 1000000
#define LABEL_MAX_LEN 4096

struct tdm_labels {
    int n;
    char **v;
    char *buf;
};

EMBED(builtin_imagenet, "data/imagenet_labels.txt");

void tdm_labels_free(tdm_labels *labels)
{
    if (!labels) return;
    free(labels->v);
    free(labels->buf);
    free(labels);
}

/* Length of the UTF-8 sequence at s (at most n bytes), 0 if it is invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    size_t len;
    unsigned cp;
    if (s[0] < 0x80) return 1;
    if ((s[0] & 0xe0) == 0xc0)
        len = 2, cp = s[0] & 0x1f;
    else if ((s[0] & 0xf0) == 0xe0)
        len = 3, cp = s[0] & 0x0f;
    else if ((s[0] & 0xf8) == 0xf0)
        len = 4, cp = s[0] & 0x07;
    else
        return 0;
    if (len > n) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    /* overlong forms, surrogates, beyond Unicode */
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
        return 0;
    return len;
}

static int line_too_long(size_t line_no, char *err, size_t errlen)
{
    image_err(err, errlen, "labels line %zu is longer than %d bytes", line_no, LABEL_MAX_LEN);
    return TDM_ERR_LIMIT;
}

int labels_parse(const char *data, size_t len, tdm_labels **out, char *err, size_t errlen)
{
    tdm_labels *l = NULL;
    int rc = 0;

    if (len > LABELS_MAX_BYTES) {
        image_err(err, errlen, "labels are %zu bytes, over the limit of %u", len, LABELS_MAX_BYTES);
        return TDM_ERR_LIMIT;
    }
    size_t lines = 0, line_no = 1, line_start = 0;
    for (size_t i = 0; i < len;) {
        const unsigned char *p = (const unsigned char *)data + i;
        size_t n = *p ? utf8_seq(p, len - i) : 0;
        if (!n) {
            image_err(err, errlen, "labels line %zu: %s", line_no,
                      *p ? "not valid UTF-8" : "contains a NUL byte");
            return TDM_ERR_INVALID;
        }
        if (*p == '\n') {
            if (i - line_start > LABEL_MAX_LEN) return line_too_long(line_no, err, errlen);
            lines++;
            line_no++;
            line_start = i + 1;
        }
        i += n;
    }
    if (len - line_start > LABEL_MAX_LEN) return line_too_long(line_no, err, errlen);
    if (len > line_start) lines++; /* a last line without newline */
    if (lines > LABELS_MAX_COUNT) {
        image_err(err, errlen, "%zu labels, over the limit of %d", lines, LABELS_MAX_COUNT);
        return TDM_ERR_LIMIT;
    }
    if (lines == 0) {
        image_err(err, errlen, "no labels");
        return TDM_ERR_INVALID;
    }

    l = calloc(1, sizeof *l);
    if (l) l->buf = malloc(len + 1);
    if (l) l->v = malloc(sizeof(char *) * lines);
    if (!l || !l->buf || !l->v) {
        image_err(err, errlen, "out of memory for %zu labels", lines);
        rc = TDM_ERR_NOMEM;
        goto out;
    }
    memcpy(l->buf, data, len);
    l->buf[len] = '\0';
    char *s = l->buf;
    for (size_t k = 0; k < lines; k++) {
        char *nl = strchr(s, '\n');
        if (nl) *nl = '\0';
        size_t n = strlen(s);
        if (n && s[n - 1] == '\r') s[n - 1] = '\0';
        l->v[k] = s;
        s = nl ? nl + 1 : s + n;
    }
    l->n = (int)lines;
    *out = l;
    l = NULL;
out:
    tdm_labels_free(l);
    return rc;
}

int tdm_labels_load(const char *path, tdm_labels **out, char *err, size_t errlen)
{
    FILE *f = NULL;
    char *data = NULL;
    size_t len = 0;
    int rc = 0;

    if (!path || !out) {
        image_err(err, errlen, "no labels file given");
        return TDM_ERR_INVALID;
    }
    f = fopen(path, "rb");
    if (!f) {
        image_err(err, errlen, "cannot open labels file %s: %s", path, strerror(errno));
        return TDM_ERR_IO;
    }
    /* Read one byte past the cap so an oversized file is noticed without
     * trusting its reported size. */
    data = malloc(LABELS_MAX_BYTES + 1);
    if (!data) {
        image_err(err, errlen, "out of memory reading %s", path);
        rc = TDM_ERR_NOMEM;
        goto out;
    }
    len = fread(data, 1, LABELS_MAX_BYTES + 1, f);
    if (ferror(f)) {
        image_err(err, errlen, "cannot read labels file %s: %s", path, strerror(errno));
        rc = TDM_ERR_IO;
        goto out;
    }
    rc = labels_parse(data, len, out, err, errlen);
    if (rc && err && errlen) {
        char inner[256];
        snprintf(inner, sizeof inner, "%s", err);
        image_err(err, errlen, "%s: %s", path, inner);
    }
out:
    free(data);
    fclose(f);
    return rc;
}

int tdm_labels_builtin(tdm_labels **out)
{
    if (!out) return TDM_ERR_INVALID;
    return labels_parse((const char *)builtin_imagenet, EMBED_LEN(builtin_imagenet), out, NULL, 0);
}

int labels_numbered(int n, tdm_labels **out)
{
    if (n < 1 || n > LABELS_MAX_COUNT) return TDM_ERR_INVALID;
    /* "class " + up to 7 digits + '\n' */
    size_t cap = (size_t)n * 15, len = 0;
    char *text = malloc(cap);
    if (!text) return TDM_ERR_NOMEM;
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(text + len, cap - len, "class %d\n", i);
    int rc = labels_parse(text, len, out, NULL, 0);
    free(text);
    return rc;
}

int tdm_labels_count(const tdm_labels *labels)
{
    return labels ? labels->n : 0;
}

const char *tdm_labels_get(const tdm_labels *labels, int i)
{
    if (!labels || i < 0 || i >= labels->n) return NULL;
    return labels->v[i];
}

/* ------------------------------------------------------------------------ */
/* Top-k                                                                    */
/* ------------------------------------------------------------------------ */

/* NaN ranks below every number, so a broken output never hides real scores. */
static int ranks_above(float a, float b)
{
    if (a != a) return 0;
    if (b != b) return 1;
    return a > b;
}

static const char *label_of(const tdm_preprocess *pp, int index)
{
    int i = index - (pp ? pp->label_offset : 0);
    if (i < 0) return "background";
    const char *s = pp ? tdm_labels_get(pp->labels, i) : NULL;
    return s ? s : "unknown";
}

int tdm_topk(const tdm_preprocess *pp, const void *scores, tdm_dtype dtype, int nclasses, int k,
             tdm_label_score *top)
{
    if (!scores || !top || nclasses < 1 || k < 1) return 0;
    if (dtype != TDM_DTYPE_FLOAT && dtype != TDM_DTYPE_UINT8) return TDM_ERR_INVALID;
    if (k > nclasses) k = nclasses;
    int n = 0;
    for (int i = 0; i < nclasses; i++) {
        float v = dtype == TDM_DTYPE_FLOAT ? ((const float *)scores)[i]
                                           : (float)((const uint8_t *)scores)[i];
        /* Insertion from the end: strictly better only, so ties keep the
         * lower index first. */
        int p = n;
        while (p > 0 && ranks_above(v, top[p - 1].score))
            p--;
        if (p >= k) continue;
        int last = n < k ? n : k - 1;
        memmove(top + p + 1, top + p, sizeof *top * (size_t)(last - p));
        top[p].index = i;
        top[p].score = v;
        if (n < k) n++;
    }
    for (int j = 0; j < n; j++)
        top[j].label = label_of(pp, top[j].index);
    return n;
}
