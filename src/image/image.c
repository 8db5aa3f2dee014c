/*
 * image: JPEG and PNG bytes to an RGB pixel buffer, and the public entry
 * point that turns encoded bytes into a model's input tensor.
 *
 * The format is taken from the magic bytes only (FF D8 FF for JPEG, the
 * 8-byte PNG signature), never from a file name or content type: callers get
 * bytes from HTTP bodies and cannot be trusted to label them.
 *
 * Both decoders read the header first and refuse an image whose pixel count,
 * side or aspect ratio passes its limit before any pixel buffer is
 * allocated, so a 50000x50000 "decompression bomb" costs a header parse, not
 * gigabytes. The side and aspect limits matter as much as the pixel count:
 * a 1 x 67M PNG is under a 64 Mpx cap, yet libspng pays per row (45 s for
 * that one) and a 67M x 1 one needs two 500 MB row buffers. What the header
 * cannot tell, the CPU time a decode takes, is watched while rows and scans
 * arrive (CLOCK_THREAD_CPUTIME_ID: the work the input causes, whatever else
 * runs on the machine).
 *
 * JPEG (libjpeg-turbo): errors longjmp back to us instead of calling exit();
 * the "premature end of data" warning, which libjpeg would answer by padding
 * the image with grey, is an error here because a truncated upload must not
 * be classified as if it were whole. Other warnings (extraneous bytes and the
 * like, common in camera files) are ignored. Large JPEGs are decoded with DCT
 * scaling at 1/8, 1/4 or 1/2 when that still covers the model's input size:
 * the scaled IDCT does a cheap, well-filtered downscale for free and cuts the
 * decode time roughly by the square of the factor. Only power-of-two scales
 * are used because libjpeg-turbo has SIMD IDCTs for those; the other M/8
 * scales run plain C. A progressive file keeps every coefficient of the whole
 * image in memory and passes over all of it once per scan, so a small file
 * with a thousand tiny refinement scans of a large image costs hundreds of MB
 * and tens of seconds: libjpeg's memory is capped (max_memory_to_use; with no
 * backing store, a coefficient buffer over the cap is an error before any
 * scan is read), and the progress monitor counts scans as they arrive and
 * checks the CPU budget on every row of every scan. Greyscale is expanded to
 * RGB by libjpeg; CMYK/YCCK (Adobe) files are converted here with the usual
 * naive formula.
 *
 * PNG (libspng): every colour type and bit depth is converted by libspng to
 * 8-bit RGB (alpha dropped without compositing, as PIL's convert("RGB") does;
 * no gamma correction, as PIL). Image and chunk limits are set so that
 * ancillary chunks cannot make the decoder hoard memory (a zTXt chunk is
 * inflated only up to the chunk limit). Rows are decoded one at a time so
 * that the CPU budget is checked as they come.
 */
#include <limits.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* jpeglib.h needs stdio.h's FILE and size_t first. */
#include <jpeglib.h>
#include <jerror.h>
#include <spng.h>

#include "image_internal.h"
#include "tandem/image.h"

/* The CPU clock is read once per this many PNG rows (a syscall; rows of a
 * narrow image cost less than reading it). */
#define PNG_ROWS_PER_CLOCK 8

void image_rgb_free(image_rgb *img)
{
    if (!img) return;
    free(img->px);
    img->px = NULL;
    img->w = img->h = 0;
}

static int check_size(const char *fmt, uint64_t w, uint64_t h, const tdm_image_limits *lim,
                      char *err, size_t errlen)
{
    unsigned long long uw = w, uh = h;
    uint64_t lo = w < h ? w : h, hi = w < h ? h : w;
    if (w == 0 || h == 0) {
        image_err(err, errlen, "%s image has no pixels (%llux%llu)", fmt, uw, uh);
        return TDM_ERR_IMAGE;
    }
    if (w * h > lim->max_pixels) {
        image_err(err, errlen, "%s image is %llux%llu = %llu pixels, over the limit of %llu pixels",
                  fmt, uw, uh, uw * uh, (unsigned long long)lim->max_pixels);
        return TDM_ERR_LIMIT;
    }
    if (hi > lim->max_side) {
        image_err(err, errlen, "%s image is %llux%llu, over the limit of %u pixels a side", fmt, uw,
                  uh, lim->max_side);
        return TDM_ERR_LIMIT;
    }
    if (hi > lo * lim->max_aspect) {
        image_err(err, errlen, "%s image is %llux%llu, an aspect ratio over the limit of %u:1", fmt,
                  uw, uh, lim->max_aspect);
        return TDM_ERR_LIMIT;
    }
    return 0;
}

static uint64_t cpu_ns(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)) return 0;
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The CPU time one decode may still take. */
struct budget {
    uint64_t start_ns, limit_ns;
};

static void budget_start(struct budget *b, uint32_t ms)
{
    b->start_ns = cpu_ns();
    b->limit_ns = (uint64_t)ms * 1000000u;
}

static int budget_spent(const struct budget *b)
{
    return cpu_ns() - b->start_ns > b->limit_ns;
}

/* ------------------------------------------------------------------------ */
/* JPEG                                                                     */
/* ------------------------------------------------------------------------ */

/* Everything the error handlers touch, and everything the cleanup path needs
 * after a longjmp, lives here rather than in locals (which setjmp/longjmp
 * would leave indeterminate). */
struct jpeg_ctx {
    struct jpeg_error_mgr mgr;
    struct jpeg_progress_mgr progress;
    jmp_buf jmp;
    char msg[JMSG_LENGTH_MAX];
    int rc; /* TDM_ERR_IMAGE, or TDM_ERR_LIMIT for a limit */
    const tdm_image_limits *lim;
    struct budget budget;
    int created;
    int cmyk;
    uint8_t *px;
    uint8_t *row;
};

static void jpeg_on_error(j_common_ptr cinfo)
{
    struct jpeg_ctx *c = (struct jpeg_ctx *)cinfo->err;
    j_decompress_ptr d = (j_decompress_ptr)cinfo;
    /* libjpeg asks for a backing store (a temporary file, which we do not
     * provide) when its arrays would pass max_memory_to_use. */
    if (cinfo->err->msg_code == JERR_NO_BACKING_STORE) {
        c->rc = TDM_ERR_LIMIT;
        snprintf(c->msg, sizeof c->msg,
                 "a %ux%u %s JPEG needs more than the limit of %llu bytes of decoder memory",
                 d->image_width, d->image_height, d->progressive_mode ? "progressive" : "baseline",
                 (unsigned long long)c->lim->jpeg_max_memory);
    } else
        cinfo->err->format_message(cinfo, c->msg);
    longjmp(c->jmp, 1);
}

static void jpeg_on_message(j_common_ptr cinfo, int level)
{
    struct jpeg_ctx *c = (struct jpeg_ctx *)cinfo->err;
    if (level >= 0) return; /* trace messages */
    if (cinfo->err->msg_code == JWRN_JPEG_EOF) {
        snprintf(c->msg, sizeof c->msg, "truncated data (premature end of the JPEG stream)");
        longjmp(c->jmp, 1);
    }
    cinfo->err->num_warnings++;
}

static void jpeg_on_progress(j_common_ptr cinfo)
{
    j_decompress_ptr d = (j_decompress_ptr)cinfo;
    struct jpeg_ctx *c = (struct jpeg_ctx *)cinfo->err;
    if (d->progressive_mode && (unsigned)d->input_scan_number > c->lim->jpeg_max_scans) {
        c->rc = TDM_ERR_LIMIT;
        snprintf(c->msg, sizeof c->msg, "progressive JPEG has more than the limit of %u scans",
                 c->lim->jpeg_max_scans);
        longjmp(c->jmp, 1);
    }
    if (budget_spent(&c->budget)) {
        c->rc = TDM_ERR_LIMIT;
        snprintf(c->msg, sizeof c->msg,
                 "decoding took more than the limit of %u ms of CPU time (a %ux%u %s JPEG, at "
                 "scan %d)",
                 c->lim->max_decode_ms, d->image_width, d->image_height,
                 d->progressive_mode ? "progressive" : "baseline", d->input_scan_number);
        longjmp(c->jmp, 1);
    }
}

/* Adobe writes CMYK inverted (0 = full ink), which is what saw_Adobe_marker
 * tells us; otherwise the samples are plain ink amounts. */
static void cmyk_to_rgb(const uint8_t *in, uint8_t *out, int w, int inverted)
{
    for (int x = 0; x < w; x++) {
        unsigned c = in[4 * x], m = in[4 * x + 1], y = in[4 * x + 2], k = in[4 * x + 3];
        if (!inverted) {
            c = 255 - c;
            m = 255 - m;
            y = 255 - y;
            k = 255 - k;
        }
        out[3 * x] = (uint8_t)((c * k + 127) / 255);
        out[3 * x + 1] = (uint8_t)((m * k + 127) / 255);
        out[3 * x + 2] = (uint8_t)((y * k + 127) / 255);
    }
}

static int decode_jpeg(const uint8_t *data, size_t len, int min_w, int min_h,
                       const tdm_image_limits *lim, image_rgb *out, char *err, size_t errlen)
{
    struct jpeg_decompress_struct cinfo;
    struct jpeg_ctx c;
    int rc = 0;

    memset(&c, 0, sizeof c);
    c.rc = TDM_ERR_IMAGE;
    c.lim = lim;
    budget_start(&c.budget, lim->max_decode_ms);
    cinfo.err = jpeg_std_error(&c.mgr);
    c.mgr.error_exit = jpeg_on_error;
    c.mgr.emit_message = jpeg_on_message;
    if (setjmp(c.jmp)) {
        if (c.rc == TDM_ERR_LIMIT)
            image_err(err, errlen, "%s", c.msg);
        else
            image_err(err, errlen, "bad JPEG: %s", c.msg);
        rc = c.rc;
        goto out;
    }
    jpeg_create_decompress(&cinfo);
    c.created = 1;
    cinfo.mem->max_memory_to_use = (long)lim->jpeg_max_memory;
    c.progress.progress_monitor = jpeg_on_progress;
    cinfo.progress = &c.progress;
    jpeg_mem_src(&cinfo, data, (unsigned long)len);
    jpeg_read_header(&cinfo, TRUE);

    rc = check_size("JPEG", cinfo.image_width, cinfo.image_height, lim, err, errlen);
    if (rc) goto out;

    switch (cinfo.jpeg_color_space) {
    case JCS_CMYK:
    case JCS_YCCK:
        cinfo.out_color_space = JCS_CMYK;
        c.cmyk = 1;
        break;
    default: /* greyscale, YCbCr, RGB: libjpeg converts */
        cinfo.out_color_space = JCS_RGB;
        break;
    }

    cinfo.scale_num = 1;
    cinfo.scale_denom = 1;
    if (min_w > 0 && min_h > 0) {
        for (unsigned denom = 8; denom > 1; denom /= 2) {
            cinfo.scale_denom = denom;
            jpeg_calc_output_dimensions(&cinfo);
            if (cinfo.output_width >= (JDIMENSION)min_w && cinfo.output_height >= (JDIMENSION)min_h)
                break;
            cinfo.scale_denom = 1;
        }
    }

    jpeg_start_decompress(&cinfo);
    size_t w = cinfo.output_width, h = cinfo.output_height;
    if (cinfo.output_components != (c.cmyk ? 4 : 3)) {
        image_err(err, errlen, "JPEG decodes to %d components, expected %d",
                  cinfo.output_components, c.cmyk ? 4 : 3);
        rc = TDM_ERR_IMAGE;
        goto out;
    }
    c.px = malloc(w * h * 3);
    if (c.cmyk) c.row = malloc(w * 4);
    if (!c.px || (c.cmyk && !c.row)) {
        image_err(err, errlen, "out of memory for a %zux%zu JPEG", w, h);
        rc = TDM_ERR_NOMEM;
        goto out;
    }
    while (cinfo.output_scanline < h) {
        uint8_t *dst = c.px + (size_t)cinfo.output_scanline * w * 3;
        JSAMPROW row = c.cmyk ? c.row : dst;
        if (jpeg_read_scanlines(&cinfo, &row, 1) != 1) {
            image_err(err, errlen, "bad JPEG: decoding stopped at row %u", cinfo.output_scanline);
            rc = TDM_ERR_IMAGE;
            goto out;
        }
        if (c.cmyk) cmyk_to_rgb(c.row, dst, (int)w, cinfo.saw_Adobe_marker);
    }
    /* All rows are in: we do not ask for the EOI marker (jpeg_finish_decompress),
     * so a file that lost only its last two bytes still decodes, as in PIL. */
    out->px = c.px;
    out->w = (int)w;
    out->h = (int)h;
    c.px = NULL;
out:
    if (c.created) jpeg_destroy_decompress(&cinfo);
    free(c.row);
    free(c.px);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* PNG                                                                      */
/* ------------------------------------------------------------------------ */

/* Big-endian 32-bit value at p. */
static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int decode_png(const uint8_t *data, size_t len, const tdm_image_limits *lim, image_rgb *out,
                      char *err, size_t errlen)
{
    spng_ctx *ctx = spng_ctx_new(0);
    uint8_t *px = NULL;
    struct spng_ihdr ihdr;
    struct spng_row_info row;
    struct budget budget;
    size_t size, stride;
    int rc = 0, r;

    if (!ctx) {
        image_err(err, errlen, "out of memory for a PNG decoder");
        return TDM_ERR_NOMEM;
    }
    budget_start(&budget, lim->max_decode_ms);
    /* libspng wants chunk <= cache; both fit its 32-bit chunk lengths. */
    uint64_t cache = lim->png_max_cache < UINT32_MAX ? lim->png_max_cache : UINT32_MAX;
    uint64_t chunk = lim->png_max_chunk < cache ? lim->png_max_chunk : cache;
    r = spng_set_chunk_limits(ctx, (size_t)chunk, (size_t)cache);
    if (!r) r = spng_set_image_limits(ctx, lim->max_side, lim->max_side);
    if (r) {
        image_err(err, errlen, "cannot set the PNG decoder's limits: %s", spng_strerror(r));
        rc = TDM_ERR_INVALID;
        goto out;
    }
    r = spng_set_png_buffer(ctx, data, len);
    if (!r) r = spng_get_ihdr(ctx, &ihdr);
    if (r == SPNG_EUSER_WIDTH || r == SPNG_EUSER_HEIGHT) {
        /* libspng read IHDR, the first chunk, so its sizes are at 16..23. */
        rc = check_size("PNG", be32(data + 16), be32(data + 20), lim, err, errlen);
        if (!rc) {
            image_err(err, errlen, "PNG image is over the limit of %u pixels a side",
                      lim->max_side);
            rc = TDM_ERR_LIMIT;
        }
        goto out;
    }
    if (r) {
        image_err(err, errlen, "bad PNG header: %s", spng_strerror(r));
        rc = TDM_ERR_IMAGE;
        goto out;
    }
    rc = check_size("PNG", ihdr.width, ihdr.height, lim, err, errlen);
    if (rc) goto out;

    r = spng_decoded_image_size(ctx, SPNG_FMT_RGB8, &size);
    if (r || size != (size_t)ihdr.width * ihdr.height * 3) {
        image_err(err, errlen, "PNG cannot be converted to RGB: %s",
                  r ? spng_strerror(r) : "unexpected size");
        rc = TDM_ERR_IMAGE;
        goto out;
    }
    px = malloc(size);
    if (!px) {
        image_err(err, errlen, "out of memory for a %ux%u PNG", ihdr.width, ihdr.height);
        rc = TDM_ERR_NOMEM;
        goto out;
    }
    /* Row by row, so that the CPU budget is checked as the rows arrive;
     * interlaced images come pass by pass, each row written in place. */
    stride = (size_t)ihdr.width * 3;
    r = spng_decode_image(ctx, NULL, 0, SPNG_FMT_RGB8, SPNG_DECODE_PROGRESSIVE);
    for (unsigned n = 1; !r; n++) {
        r = spng_get_row_info(ctx, &row);
        if (!r) r = spng_decode_row(ctx, px + (size_t)row.row_num * stride, stride);
        if (!r && n % PNG_ROWS_PER_CLOCK == 0 && budget_spent(&budget)) {
            image_err(err, errlen,
                      "decoding took more than the limit of %u ms of CPU time (a %ux%u PNG, at "
                      "row %u)",
                      lim->max_decode_ms, ihdr.width, ihdr.height, row.row_num);
            rc = TDM_ERR_LIMIT;
            goto out;
        }
    }
    if (r == SPNG_ECHUNK_LIMITS) {
        image_err(err, errlen,
                  "PNG metadata is over the limits of %llu bytes a chunk, %llu in all (inflated)",
                  (unsigned long long)chunk, (unsigned long long)cache);
        rc = TDM_ERR_LIMIT;
        goto out;
    }
    if (r != SPNG_EOI) {
        image_err(err, errlen, "bad PNG: %s%s", spng_strerror(r),
                  r == SPNG_IO_EOF || r == SPNG_EOF || r == SPNG_EIDAT_TOO_SHORT
                      ? " (truncated data)"
                      : "");
        rc = TDM_ERR_IMAGE;
        goto out;
    }
    out->px = px;
    out->w = (int)ihdr.width;
    out->h = (int)ihdr.height;
    px = NULL;
out:
    free(px);
    spng_ctx_free(ctx);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Entry points                                                             */
/* ------------------------------------------------------------------------ */

static const uint8_t png_magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

/* The limits with their defaults filled in and clamped so that every side
 * and w*h*3 stay within int and size_t arithmetic. */
static void resolve_limits(const tdm_image_limits *in, tdm_image_limits *lim)
{
    static const tdm_image_limits none;
    if (!in) in = &none;
    *lim = *in;
    if (!lim->max_pixels) lim->max_pixels = IMAGE_DEFAULT_MAX_PIXELS;
    if (lim->max_pixels > (1ull << 31) - 1) lim->max_pixels = (1ull << 31) - 1;
    if (!lim->max_side) lim->max_side = IMAGE_DEFAULT_MAX_IMAGE_SIDE;
    if (lim->max_side > (1u << 30)) lim->max_side = 1u << 30;
    if (!lim->max_aspect) lim->max_aspect = IMAGE_DEFAULT_MAX_ASPECT;
    if (!lim->max_decode_ms) lim->max_decode_ms = IMAGE_DEFAULT_MAX_DECODE_MS;
    if (!lim->jpeg_max_scans) lim->jpeg_max_scans = IMAGE_DEFAULT_JPEG_MAX_SCANS;
    if (!lim->jpeg_max_memory) lim->jpeg_max_memory = IMAGE_DEFAULT_JPEG_MAX_MEMORY;
    if (lim->jpeg_max_memory > LONG_MAX) lim->jpeg_max_memory = LONG_MAX;
    if (!lim->png_max_chunk) lim->png_max_chunk = IMAGE_DEFAULT_PNG_MAX_CHUNK;
    if (!lim->png_max_cache) lim->png_max_cache = IMAGE_DEFAULT_PNG_MAX_CACHE;
}

int image_decode(const void *data, size_t len, int min_w, int min_h, const tdm_image_limits *limits,
                 image_rgb *out, char *err, size_t errlen)
{
    const uint8_t *b = data;
    image_rgb img = {0};
    tdm_image_limits lim;
    int rc;

    if (!data || !out) {
        image_err(err, errlen, "no image data");
        return TDM_ERR_INVALID;
    }
    resolve_limits(limits, &lim);

    if (len >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff)
        rc = decode_jpeg(b, len, min_w, min_h, &lim, &img, err, errlen);
    else if (len >= sizeof png_magic && !memcmp(b, png_magic, sizeof png_magic))
        rc = decode_png(b, len, &lim, &img, err, errlen);
    else {
        if (len == 0)
            image_err(err, errlen, "empty image data");
        else
            image_err(err, errlen,
                      "not a JPEG or PNG image (%zu bytes starting with %02x %02x %02x %02x)", len,
                      b[0], len > 1 ? b[1] : 0, len > 2 ? b[2] : 0, len > 3 ? b[3] : 0);
        return TDM_ERR_IMAGE;
    }
    if (rc) return rc;
    *out = img;
    return 0;
}

static size_t layout_bytes(const tdm_preprocess *pp)
{
    size_t n = (size_t)pp->width * (size_t)pp->height * 3;
    return pp->layout == TDM_LAYOUT_NCHW_FLOAT ? n * sizeof(float) : n;
}

static int check_preprocess(const tdm_preprocess *pp, char *err, size_t errlen)
{
    if (pp->layout != TDM_LAYOUT_NCHW_FLOAT && pp->layout != TDM_LAYOUT_NHWC_UINT8) {
        image_err(err, errlen, "unknown input layout %d", (int)pp->layout);
        return TDM_ERR_INVALID;
    }
    if (pp->width < 1 || pp->height < 1 || pp->width > IMAGE_MAX_SIDE ||
        pp->height > IMAGE_MAX_SIDE) {
        image_err(err, errlen, "input size %dx%d is outside 1..%d", pp->width, pp->height,
                  IMAGE_MAX_SIDE);
        return TDM_ERR_INVALID;
    }
    if (pp->layout == TDM_LAYOUT_NCHW_FLOAT)
        for (int c = 0; c < 3; c++)
            if (!(pp->std[c] > 0) || pp->mean[c] != pp->mean[c]) {
                image_err(err, errlen, "normalisation needs std > 0 and a finite mean");
                return TDM_ERR_INVALID;
            }
    return 0;
}

int tdm_image_to_input(const void *data, size_t len, const tdm_preprocess *pp, void *dst,
                       size_t dst_len, char *err, size_t errlen)
{
    image_rgb img = {0};
    int rc;

    if (!pp || !dst) {
        image_err(err, errlen, "no preprocessing or no destination");
        return TDM_ERR_INVALID;
    }
    rc = check_preprocess(pp, err, errlen);
    if (rc) return rc;
    if (dst_len != layout_bytes(pp)) {
        image_err(err, errlen, "input buffer is %zu bytes, the %dx%d %s input needs %zu", dst_len,
                  pp->width, pp->height,
                  pp->layout == TDM_LAYOUT_NCHW_FLOAT ? "NCHW float" : "NHWC uint8",
                  layout_bytes(pp));
        return TDM_ERR_INVALID;
    }
    rc = image_decode(data, len, pp->width, pp->height, &pp->limits, &img, err, errlen);
    if (rc) return rc;
    rc = image_resize_to_layout(&img, pp, dst, err, errlen);
    image_rgb_free(&img);
    return rc;
}

void tdm_preprocess_clear(tdm_preprocess *pp)
{
    if (!pp) return;
    tdm_labels_free(pp->labels);
    memset(pp, 0, sizeof *pp);
}
