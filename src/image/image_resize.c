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

/* The source row as floats, each pixel converted once rather than once per
 * output column that reads it (2-3 times when shrinking); the values are the
 * same, so is every sum made of them. */
static void row_to_float(const uint8_t *restrict src, size_t n, float *restrict dst)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (size_t k = 0; k < 8; k++)
            dst[i + k] = src[i + k];
    for (; i < n; i++)
        dst[i] = src[i];
}

/* Four float lanes: one pixel's r, g, b and a fourth lane that is computed
 * and dropped. The vector extension GCC (12 and later) and clang share, so
 * no intrinsics and any target. */
typedef float f32x4 __attribute__((vector_size(16)));

/* Horizontal pass of one source row (as floats, with one float of padding
 * after its last pixel for the fourth lane). Each lane computes exactly the
 * scalar sum it replaces, in the same order. */
static void resample_row(const float *src, const struct taps *h, int out_w, float *dst)
{
    for (int x = 0; x < out_w; x++) {
        const float *s = src + (size_t)h->start[x] * 3;
        const float *w = h->w + h->off[x];
        f32x4 sum = {0, 0, 0, 0};
        for (int k = 0; k < h->count[x]; k++) {
            f32x4 px;
            memcpy(&px, s + 3 * k, sizeof px);
            sum += w[k] * px;
        }
        memcpy(dst + 3 * x, &sum, 3 * sizeof(float));
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

/* Rounds to the nearest byte value, clamping (NaN gives 0). */
static float to_u8(float v)
{
    float c = v > 0 ? v : 0;
    c = c < 255 ? c : 255;
    return (float)(int)(c + 0.5f);
}

typedef int32_t i32x4 __attribute__((vector_size(16)));

/* Every sum to_u8'd in place, four at a time; the clamps are masks
 * (comparisons give all-ones lanes), so NaN and negatives give 0 here too.
 * GCC's -O2 leaves the scalar loop branchy, at a third of the resize. */
static void round_to_bytes(float *acc, size_t n)
{
    const f32x4 zero = {0, 0, 0, 0}, top = {255, 255, 255, 255}, half = {0.5f, 0.5f, 0.5f, 0.5f};
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        f32x4 v;
        memcpy(&v, acc + i, sizeof v);
        v = (f32x4)((i32x4)v & (v > zero));
        i32x4 below = v < top;
        v = (f32x4)(((i32x4)v & below) | ((i32x4)top & ~below));
        v = __builtin_convertvector(__builtin_convertvector(v + half, i32x4), f32x4);
        memcpy(acc + i, &v, sizeof v);
    }
    for (; i < n; i++)
        acc[i] = to_u8(acc[i]);
}

/* Interleaved RGB bytes (as floats) to three normalised planes, four pixels
 * at a time: three loads, shuffles to r, g, b vectors, then each element
 * gets the same x * scale + bias as one at a time. */
static void to_planes(const float *acc, size_t plane, const tdm_preprocess *pp, float *dst)
{
    f32x4 scale[3], bias[3];
    for (int c = 0; c < 3; c++) {
        float k = 1.0f / (255.0f * pp->std[c]), b = -pp->mean[c] / pp->std[c];
        scale[c] = (f32x4){k, k, k, k};
        bias[c] = (f32x4){b, b, b, b};
    }
    float *r = dst, *g = dst + plane, *b = dst + 2 * plane;
    size_t i = 0;
    for (; i + 4 <= plane; i += 4) {
        f32x4 v0, v1, v2; /* r0 g0 b0 r1 | g1 b1 r2 g2 | b2 r3 g3 b3 */
        memcpy(&v0, acc + 3 * i, sizeof v0);
        memcpy(&v1, acc + 3 * i + 4, sizeof v1);
        memcpy(&v2, acc + 3 * i + 8, sizeof v2);
        f32x4 vr = __builtin_shufflevector(__builtin_shufflevector(v0, v1, 0, 3, 6, 0), v2, 0, 1,
                                           2, 5);
        f32x4 vg = __builtin_shufflevector(__builtin_shufflevector(v0, v1, 1, 4, 7, 0), v2, 0, 1,
                                           2, 6);
        f32x4 vb = __builtin_shufflevector(__builtin_shufflevector(v0, v1, 2, 5, 0, 0), v2, 0, 1,
                                           4, 7);
        vr = vr * scale[0] + bias[0];
        vg = vg * scale[1] + bias[1];
        vb = vb * scale[2] + bias[2];
        memcpy(r + i, &vr, sizeof vr);
        memcpy(g + i, &vg, sizeof vg);
        memcpy(b + i, &vb, sizeof vb);
    }
    for (; i < plane; i++) {
        r[i] = acc[3 * i] * scale[0][0] + bias[0][0];
        g[i] = acc[3 * i + 1] * scale[1][0] + bias[1][0];
        b[i] = acc[3 * i + 2] * scale[2][0] + bias[2][0];
    }
}

int image_resize_to_layout(const image_rgb *src, const tdm_preprocess *pp, void *dst, char *err,
                           size_t errlen)
{
    const int ow = pp->width, oh = pp->height;
    const size_t row_len = (size_t)ow * 3, plane = (size_t)ow * oh;
    struct taps th = {0}, tv = {0};
    float *acc = NULL, *row = NULL, *src_row = NULL;
    int rc;

    rc = taps_make(src->w, ow, &th);
    if (!rc) rc = taps_make(src->h, oh, &tv);
    if (!rc) {
        acc = calloc(plane * 3, sizeof(float));
        row = malloc(row_len * sizeof(float));
        src_row = calloc((size_t)src->w * 3 + 1, sizeof(float));
        if (!acc || !row || !src_row) rc = TDM_ERR_NOMEM;
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
        row_to_float(src->px + (size_t)y * src->w * 3, (size_t)src->w * 3, src_row);
        resample_row(src_row, &th, ow, row);
        for (int o = first; o < oh && tv.start[o] <= y; o++) {
            if (y >= tv.start[o] + tv.count[o]) continue;
            accumulate(acc + (size_t)o * row_len, row, tv.w[tv.off[o] + (size_t)(y - tv.start[o])],
                       row_len);
        }
    }

    round_to_bytes(acc, plane * 3);
    if (pp->layout == TDM_LAYOUT_NHWC_UINT8) {
        uint8_t *d = dst;
        for (size_t i = 0; i < plane * 3; i++)
            d[i] = (uint8_t)acc[i];
    } else {
        to_planes(acc, plane, pp, dst);
    }
out:
    free(src_row);
    free(row);
    free(acc);
    taps_free(&tv);
    taps_free(&th);
    return rc;
}
