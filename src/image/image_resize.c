/*
 * image_resize: RGB pixels to the model's input size and tensor layout.
 *
 * The filter is the triangle ("bilinear") kernel applied the way PIL's
 * Image.resize(BILINEAR) applies it, which is what torchvision's Resize and
 * the classic ImageNet preprocessing use: sample centres at half-pixel
 * offsets, and when shrinking, the kernel is stretched by the scale factor so
 * every source pixel contributes (an antialiased bilinear). A plain 2x2
 * bilinear would skip most pixels of a large PNG and alias; JPEGs mostly
 * arrive already close to the target thanks to DCT scaling, where the two
 * coincide anyway. Upscaling is ordinary bilinear interpolation.
 *
 * It is separable and streams: each source row is resampled horizontally
 * into one row buffer, which is then added, weighted, into the (at most
 * three) output rows whose vertical window covers it. Memory is the output
 * plus the two weight tables (about 8 bytes per source column and row), so
 * a tall or wide image never needs a source-sized intermediate.
 *
 * The result is rounded to 8 bits before normalisation, like the usual
 * PIL -> ToTensor -> Normalize pipeline, so NCHW float inputs match what a
 * Python reference produces from the same resized image.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "image_internal.h"

/* Filter weights for one axis: output i reads `count[i]` inputs starting at
 * `start[i]`, weighted by w[off[i]..]. */
struct taps {
    int *start;
    int *count;
    size_t *off;
    float *w;
};

static void taps_free(struct taps *t)
{
    free(t->start);
    free(t->count);
    free(t->off);
    free(t->w);
}

static int taps_make(int in, int out, struct taps *t)
{
    double scale = (double)in / out;
    double fscale = scale > 1 ? scale : 1;
    double support = fscale; /* the triangle's radius is 1 at scale 1 */
    size_t per = (size_t)ceil(2 * support) + 2;

    t->start = malloc(sizeof(int) * (size_t)out);
    t->count = malloc(sizeof(int) * (size_t)out);
    t->off = malloc(sizeof(size_t) * (size_t)out);
    t->w = malloc(sizeof(float) * per * (size_t)out);
    if (!t->start || !t->count || !t->off || !t->w) return TDM_ERR_NOMEM; /* caller frees */
    size_t off = 0;
    for (int i = 0; i < out; i++) {
        double center = (i + 0.5) * scale;
        int lo = (int)floor(center - support + 0.5);
        int hi = (int)floor(center + support + 0.5);
        if (lo < 0) lo = 0;
        if (hi > in) hi = in;
        if (hi <= lo) { /* cannot happen for in, out >= 1; keep one tap anyway */
            lo = (int)center < in ? (int)center : in - 1;
            hi = lo + 1;
        }
        double total = 0;
        for (int x = lo; x < hi; x++) {
            double d = fabs((x + 0.5 - center) / fscale);
            double wt = d < 1 ? 1 - d : 0;
            t->w[off + (size_t)(x - lo)] = (float)wt;
            total += wt;
        }
        for (int x = lo; x < hi; x++)
            t->w[off + (size_t)(x - lo)] =
                total > 0 ? (float)(t->w[off + (size_t)(x - lo)] / total) : 1.0f / (hi - lo);
        t->start[i] = lo;
        t->count[i] = hi - lo;
        t->off[i] = off;
        off += (size_t)(hi - lo);
    }
    return 0;
}

static void resample_row(const uint8_t *src, const struct taps *h, int out_w, float *dst)
{
    for (int x = 0; x < out_w; x++) {
        const uint8_t *s = src + (size_t)h->start[x] * 3;
        const float *w = h->w + h->off[x];
        float r = 0, g = 0, b = 0;
        for (int k = 0; k < h->count[x]; k++) {
            r += w[k] * s[3 * k];
            g += w[k] * s[3 * k + 1];
            b += w[k] * s[3 * k + 2];
        }
        dst[3 * x] = r;
        dst[3 * x + 1] = g;
        dst[3 * x + 2] = b;
    }
}

/* acc += wt * row, the largest cost of a resize. Written in groups of 8 so
 * that GCC's -O2 (which vectorises no loop needing a remainder) turns each
 * group into SIMD instructions. */
static void accumulate(float *restrict acc, const float *restrict row, float wt, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (size_t k = 0; k < 8; k++)
            acc[i + k] += wt * row[i + k];
    for (; i < n; i++)
        acc[i] += wt * row[i];
}

static uint8_t to_u8(float v)
{
    if (!(v > 0)) return 0;
    if (v >= 255) return 255;
    return (uint8_t)(v + 0.5f);
}

int image_resize_to_layout(const image_rgb *src, const tdm_preprocess *pp, void *dst, char *err,
                           size_t errlen)
{
    const int ow = pp->width, oh = pp->height;
    const size_t row_len = (size_t)ow * 3, plane = (size_t)ow * oh;
    struct taps th = {0}, tv = {0};
    float *acc = NULL, *row = NULL;
    int rc;

    rc = taps_make(src->w, ow, &th);
    if (!rc) rc = taps_make(src->h, oh, &tv);
    if (!rc) {
        acc = calloc(plane * 3, sizeof(float));
        row = malloc(row_len * sizeof(float));
        if (!acc || !row) rc = TDM_ERR_NOMEM;
    }
    if (rc) {
        image_err(err, errlen, "out of memory resizing %dx%d to %dx%d", src->w, src->h, ow, oh);
        goto out;
    }

    int first = 0; /* the first output row whose window has not ended */
    for (int y = 0; y < src->h && first < oh; y++) {
        while (first < oh && tv.start[first] + tv.count[first] <= y)
            first++;
        if (first == oh || tv.start[first] > y) continue;
        resample_row(src->px + (size_t)y * src->w * 3, &th, ow, row);
        for (int o = first; o < oh && tv.start[o] <= y; o++) {
            if (y >= tv.start[o] + tv.count[o]) continue;
            accumulate(acc + (size_t)o * row_len, row, tv.w[tv.off[o] + (size_t)(y - tv.start[o])],
                       row_len);
        }
    }

    if (pp->layout == TDM_LAYOUT_NHWC_UINT8) {
        uint8_t *d = dst;
        for (size_t i = 0; i < plane * 3; i++)
            d[i] = to_u8(acc[i]);
    } else {
        float *d = dst;
        float scale[3], bias[3];
        for (int c = 0; c < 3; c++) {
            scale[c] = 1.0f / (255.0f * pp->std[c]);
            bias[c] = -pp->mean[c] / pp->std[c];
        }
        for (size_t i = 0; i < plane; i++)
            for (int c = 0; c < 3; c++)
                d[(size_t)c * plane + i] = to_u8(acc[3 * i + (size_t)c]) * scale[c] + bias[c];
    }
out:
    free(row);
    free(acc);
    taps_free(&tv);
    taps_free(&th);
    return rc;
}
