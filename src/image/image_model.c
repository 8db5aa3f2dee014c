/*
 * image_model: the preprocessing a model wants, read off the model itself
 * and, when present, a sidecar file beside it.
 *
 * The model's first input decides the layout: [N,3,H,W] float is the
 * torchvision/Model Zoo convention (RGB, x/255, ImageNet mean/std), [N,H,W,3]
 * uint8 the TFLite-converted one (raw RGB). The first output's last
 * dimension decides the labels: 1000 is ImageNet-1k, 1001 is ImageNet with
 * TensorFlow's leading "background" class, anything else gets "class N".
 *
 * The sidecar, model_path + ".json", is for models those rules do not fit:
 *
 *     {"labels": "my_labels.txt", "label_offset": 0,
 *      "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
 *      "width": 256, "height": 256, "layout": "nchw_float"}
 *
 * Every key is optional; "labels" is relative to the sidecar's folder. The
 * sidecar may only state what the model allows (a fixed 224x224 input cannot
 * be told to take 256x256), so a wrong sidecar is an error at load time, not
 * a wrong answer later. Unknown keys are errors too: a typo must not be
 * silently ignored.
 */
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "image_internal.h"
#include "tandem/image.h"

#define SIDECAR_MAX_BYTES (1u << 20)
#define STR_(x) #x
#define STR(x) STR_(x)

static const float imagenet_mean[3] = {0.485f, 0.456f, 0.406f};
static const float imagenet_std[3] = {0.229f, 0.224f, 0.225f};

struct sidecar {
    char path[PATH_MAX];
    char labels[PATH_MAX]; /* "" when not given; resolved against path's folder */
    int has_mean, has_std, has_layout;
    float mean[3], std[3];
    tdm_layout layout;
    int width, height; /* 0 when not given */
    int label_offset;  /* -1 when not given */
};

/* The bounds are checked on the double, before the narrowing: a std such as
 * 1e-57 is positive as a double but 0 as a float, and the pixels would be
 * divided by it. */
static int read_triple(json_t *v, float *dst, double min, double max)
{
    if (!json_is_array(v) || json_array_size(v) != 3) return -1;
    for (int i = 0; i < 3; i++) {
        json_t *x = json_array_get(v, (size_t)i);
        if (!json_is_number(x)) return -1;
        double d = json_number_value(x);
        if (!(d >= min && d <= max)) return -1;
        dst[i] = (float)d;
    }
    return 0;
}

static int read_side(json_t *v, int *dst)
{
    if (!json_is_integer(v)) return -1;
    json_int_t n = json_integer_value(v);
    if (n < 1 || n > IMAGE_MAX_SIDE) return -1;
    *dst = (int)n;
    return 0;
}

static int sidecar_apply_key(struct sidecar *sc, const char *key, json_t *v, char *err,
                             size_t errlen)
{
    const char *want;
    if (!strcmp(key, "labels")) {
        want = "a file name";
        if (!json_is_string(v) || !*json_string_value(v)) goto bad;
        const char *name = json_string_value(v);
        int n;
        if (name[0] == '/') {
            n = snprintf(sc->labels, sizeof sc->labels, "%s", name);
        } else {
            const char *slash = strrchr(sc->path, '/');
            int dirlen = slash ? (int)(slash - sc->path) + 1 : 0;
            n = snprintf(sc->labels, sizeof sc->labels, "%.*s%s", dirlen, sc->path, name);
        }
        want = "a shorter file name";
        if (n < 0 || (size_t)n >= sizeof sc->labels) goto bad;
    } else if (!strcmp(key, "mean")) {
        want = "an array of 3 numbers from -1e6 to 1e6";
        if (read_triple(v, sc->mean, -1e6, 1e6)) goto bad;
        sc->has_mean = 1;
    } else if (!strcmp(key, "std")) {
        want = "an array of 3 numbers from 1e-6 to 1e6";
        if (read_triple(v, sc->std, 1e-6, 1e6)) goto bad;
        sc->has_std = 1;
    } else if (!strcmp(key, "width") || !strcmp(key, "height")) {
        want = "an integer from 1 to " STR(IMAGE_MAX_SIDE);
        if (read_side(v, key[0] == 'w' ? &sc->width : &sc->height)) goto bad;
    } else if (!strcmp(key, "layout")) {
        want = "\"nchw_float\" or \"nhwc_uint8\"";
        const char *s = json_is_string(v) ? json_string_value(v) : "";
        if (!strcmp(s, "nchw_float"))
            sc->layout = TDM_LAYOUT_NCHW_FLOAT;
        else if (!strcmp(s, "nhwc_uint8"))
            sc->layout = TDM_LAYOUT_NHWC_UINT8;
        else
            goto bad;
        sc->has_layout = 1;
    } else if (!strcmp(key, "label_offset")) {
        want = "0 or 1";
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 1) goto bad;
        sc->label_offset = (int)json_integer_value(v);
    } else {
        image_err(err, errlen,
                  "sidecar %s: unknown key \"%s\" (known: labels, label_offset, mean, std, "
                  "width, height, layout)",
                  sc->path, key);
        return TDM_ERR_INVALID;
    }
    return 0;
bad:
    image_err(err, errlen, "sidecar %s: \"%s\" must be %s", sc->path, key, want);
    return TDM_ERR_INVALID;
}

/* Reads model_path.json into sc. Returns 1 when there is none, 0 when read. */
static int sidecar_load(const char *model_path, struct sidecar *sc, char *err, size_t errlen)
{
    struct stat st;
    FILE *f = NULL;
    char *text = NULL;
    json_t *root = NULL;
    json_error_t jerr;
    int rc = 0;

    memset(sc, 0, sizeof *sc);
    sc->label_offset = -1;
    int n = snprintf(sc->path, sizeof sc->path, "%s.json", model_path);
    if (n < 0 || (size_t)n >= sizeof sc->path) {
        image_err(err, errlen, "model path is too long for a sidecar name");
        return TDM_ERR_INVALID;
    }
    if (stat(sc->path, &st) != 0) {
        if (errno == ENOENT) return 1;
        image_err(err, errlen, "sidecar %s: %s", sc->path, strerror(errno));
        return TDM_ERR_IO;
    }
    if (!S_ISREG(st.st_mode) || st.st_size > SIDECAR_MAX_BYTES) {
        image_err(err, errlen, "sidecar %s: not a regular file of at most %u bytes", sc->path,
                  SIDECAR_MAX_BYTES);
        return TDM_ERR_INVALID;
    }
    f = fopen(sc->path, "rb");
    /* The size it has, and one byte more, so that a file that grew since
     * stat() is noticed rather than cut. */
    text = malloc((size_t)st.st_size + 1);
    if (!f || !text) {
        image_err(err, errlen, "sidecar %s: %s", sc->path, f ? "out of memory" : strerror(errno));
        rc = f ? TDM_ERR_NOMEM : TDM_ERR_IO;
        goto out;
    }
    size_t len = fread(text, 1, (size_t)st.st_size + 1, f);
    if (ferror(f) || len > (size_t)st.st_size) {
        image_err(err, errlen, "sidecar %s: cannot read it whole", sc->path);
        rc = TDM_ERR_IO;
        goto out;
    }
    root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root || !json_is_object(root)) {
        if (root)
            image_err(err, errlen, "sidecar %s: must be a JSON object", sc->path);
        else
            image_err(err, errlen, "sidecar %s: line %d: %s", sc->path, jerr.line, jerr.text);
        rc = TDM_ERR_INVALID;
        goto out;
    }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v)
    {
        rc = sidecar_apply_key(sc, key, v, err, errlen);
        if (rc) goto out;
    }
out:
    json_decref(root);
    free(text);
    if (f) fclose(f);
    return rc;
}

static void format_dims(const tdm_tensor_info *t, char *buf, size_t len)
{
    size_t used = (size_t)snprintf(buf, len, "[");
    for (int i = 0; i < t->rank && i < TDM_MAX_RANK && used < len; i++)
        used +=
            (size_t)snprintf(buf + used, len - used, "%s%lld", i ? "," : "", (long long)t->dims[i]);
    if (used < len) snprintf(buf + used, len - used, "]");
}

/* One spatial size: the model's own when fixed, the sidecar's when the model
 * leaves it open; both given and different is a mistake in the sidecar. */
static int pick_side(const char *what, int64_t model, int sidecar, const char *sc_path, int *out,
                     char *err, size_t errlen)
{
    if (model > 0) {
        if (model > IMAGE_MAX_SIDE) {
            image_err(err, errlen, "model input %s %lld is over %d", what, (long long)model,
                      IMAGE_MAX_SIDE);
            return TDM_ERR_UNSUPPORTED;
        }
        if (sidecar && sidecar != model) {
            image_err(err, errlen, "sidecar %s: %s %d, but the model's input %s is %lld", sc_path,
                      what, sidecar, what, (long long)model);
            return TDM_ERR_INVALID;
        }
        *out = (int)model;
        return 0;
    }
    if (!sidecar) {
        image_err(err, errlen,
                  "model input %s is not fixed: give \"width\" and \"height\" in a sidecar "
                  "file (model path + .json)",
                  what);
        return TDM_ERR_UNSUPPORTED;
    }
    *out = sidecar;
    return 0;
}

int tdm_preprocess_for_model(const tdm_model *model, const char *model_path, tdm_preprocess *out,
                             char *err, size_t errlen)
{
    tdm_preprocess pp;
    tdm_tensor_info in, o;
    struct sidecar sc;
    char dims[160];
    int rc, has_sidecar = 0;

    memset(&pp, 0, sizeof pp);
    if (!model || !out) {
        image_err(err, errlen, "no model");
        return TDM_ERR_INVALID;
    }
    if (tdm_model_input(model, 0, &in) || tdm_model_output(model, 0, &o) || o.rank < 1) {
        image_err(err, errlen, "model has no usable first input and output");
        return TDM_ERR_UNSUPPORTED;
    }
    if (model_path) {
        rc = sidecar_load(model_path, &sc, err, errlen);
        if (rc < 0) return rc;
        has_sidecar = rc == 0;
    }
    if (!has_sidecar) {
        memset(&sc, 0, sizeof sc);
        sc.label_offset = -1;
    }

    int64_t mh, mw;
    format_dims(&in, dims, sizeof dims);
    if (in.rank == 4 && in.dtype == TDM_DTYPE_FLOAT && in.dims[1] == 3) {
        pp.layout = TDM_LAYOUT_NCHW_FLOAT;
        mh = in.dims[2];
        mw = in.dims[3];
    } else if (in.rank == 4 && in.dtype == TDM_DTYPE_UINT8 && in.dims[3] == 3) {
        pp.layout = TDM_LAYOUT_NHWC_UINT8;
        mh = in.dims[1];
        mw = in.dims[2];
    } else {
        image_err(err, errlen,
                  "model input '%s' is %s %s: images need [N,3,H,W] float or [N,H,W,3] uint8",
                  in.name ? in.name : "?", tdm_dtype_name(in.dtype), dims);
        return TDM_ERR_UNSUPPORTED;
    }
    if (sc.has_layout && sc.layout != pp.layout) {
        image_err(err, errlen, "sidecar %s: layout %s, but the model's input is %s %s", sc.path,
                  sc.layout == TDM_LAYOUT_NCHW_FLOAT ? "nchw_float" : "nhwc_uint8",
                  tdm_dtype_name(in.dtype), dims);
        return TDM_ERR_INVALID;
    }
    rc = pick_side("height", mh, sc.height, sc.path, &pp.height, err, errlen);
    if (!rc) rc = pick_side("width", mw, sc.width, sc.path, &pp.width, err, errlen);
    if (rc) return rc;
    memcpy(pp.mean, sc.has_mean ? sc.mean : imagenet_mean, sizeof pp.mean);
    memcpy(pp.std, sc.has_std ? sc.std : imagenet_std, sizeof pp.std);

    int64_t ncls = o.dims[o.rank - 1];
    if (sc.labels[0]) {
        rc = tdm_labels_load(sc.labels, &pp.labels, err, errlen);
        if (rc) return rc;
        int nl = tdm_labels_count(pp.labels);
        pp.label_offset = sc.label_offset >= 0 ? sc.label_offset : (nl == ncls - 1 ? 1 : 0);
        if (ncls > 0 && nl != ncls - pp.label_offset) {
            image_err(err, errlen,
                      "sidecar %s: %s has %d labels, the model has %lld classes "
                      "(label_offset %d)",
                      sc.path, sc.labels, nl, (long long)ncls, pp.label_offset);
            rc = TDM_ERR_INVALID;
            goto out;
        }
    } else if (ncls == 1000 || ncls == 1001) {
        rc = tdm_labels_builtin(&pp.labels);
        if (rc) image_err(err, errlen, "built-in labels: %s", tdm_strerror(rc));
        pp.label_offset = (int)(ncls - 1000);
        if (!rc && sc.label_offset >= 0 && sc.label_offset != pp.label_offset) {
            image_err(err, errlen,
                      "sidecar %s: label_offset %d does not fit the built-in ImageNet labels "
                      "on a %lld-class output",
                      sc.path, sc.label_offset, (long long)ncls);
            rc = TDM_ERR_INVALID;
        }
    } else if (ncls > 0) {
        /* No names: "class N", after a background class if the sidecar says so. */
        pp.label_offset = sc.label_offset > 0 && ncls > 1 ? sc.label_offset : 0;
        int64_t named = ncls - pp.label_offset;
        rc = labels_numbered((int)(named < INT_MAX ? named : INT_MAX), &pp.labels);
        if (rc)
            image_err(err, errlen, "cannot make labels for %lld classes: %s", (long long)ncls,
                      tdm_strerror(rc));
    }
    if (rc) goto out;
    *out = pp;
    pp.labels = NULL;
out:
    tdm_labels_free(pp.labels);
    return rc;
}
