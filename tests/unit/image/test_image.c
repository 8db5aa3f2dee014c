/*
 * image: decoding the real test images against PIL's reading of them, the
 * refusals (not an image, truncated, decompression bombs), every PNG colour
 * type and greyscale/CMYK JPEGs made in the test, resizing and both tensor
 * layouts on synthetic images, labels files and top-k.
 *
 * Reference numbers: printed once, when this test was written, by Debian's
 * /usr/bin/python3 with PIL 9.4 (python3-pil, linked to the same
 * libjpeg-turbo 2.1.5), e.g.
 *     im = Image.open("dog.jpg").convert("RGB"); im.getpixel((300, 200))
 *     im = Image.open("dog.jpg"); im.draft("RGB", (224, 224))    # DCT scaling
 *     Image.open("chelsea.png").convert("RGB").resize((224, 224), Image.BILINEAR)
 * Decoded pixels must match exactly; resized ones within 1 (PIL rounds to
 * 8 bits between its two passes, we do not). Images are read from
 * $TEST_DATA/images (default data/images).
 *
 * tdm_preprocess_for_model is checked on tiny models built here with
 * protobuf-c (input -> GlobalAveragePool -> Flatten, so the class count is
 * the channel count), on the real int8 models in $TEST_DATA/models, and with
 * sidecar files written to a temporary folder.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jpeglib.h> /* after stdio.h: it needs FILE and size_t */
#include <spng.h>

#include "image_internal.h"
#include "tandem/image.h"
#include "test.h"
#include "tiny_model.h"

/* ---- helpers ------------------------------------------------------------- */

static uint8_t *read_file(const char *name, size_t *len)
{
    const char *data = getenv("TEST_DATA");
    char path[512];
    snprintf(path, sizeof path, "%s/images/%s", data && *data ? data : "data", name);
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "  cannot open %s (set TEST_DATA to the folder holding images/)\n", path);
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)n);
    *len = fread(b, 1, (size_t)n, f);
    fclose(f);
    return b;
}

static void pp_init(tdm_preprocess *pp, tdm_layout layout, int w, int h)
{
    static const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    memset(pp, 0, sizeof *pp);
    pp->layout = layout;
    pp->width = w;
    pp->height = h;
    memcpy(pp->mean, mean, sizeof mean);
    memcpy(pp->std, std, sizeof std);
}

/* Encodes a PNG with libspng; px holds rows in the PNG's own sample format. */
static void *png_encode(int w, int h, int depth, int color, const void *px, size_t px_len,
                        const struct spng_plte *plte, size_t *len)
{
    spng_ctx *enc = spng_ctx_new(SPNG_CTX_ENCODER);
    struct spng_ihdr ihdr = {(uint32_t)w, (uint32_t)h, (uint8_t)depth, (uint8_t)color, 0, 0, 0};
    int e = 0;
    spng_set_option(enc, SPNG_ENCODE_TO_BUFFER, 1);
    spng_set_ihdr(enc, &ihdr);
    if (plte) spng_set_plte(enc, (struct spng_plte *)plte);
    void *png = NULL;
    if (!spng_encode_image(enc, px, px_len, SPNG_FMT_PNG, SPNG_ENCODE_FINALIZE))
        png = spng_get_png_buffer(enc, len, &e);
    spng_ctx_free(enc);
    return png;
}

/* Encodes a JPEG with libjpeg from rows of `comps` samples in color space cs;
 * adobe says whether to write the Adobe marker (which CMYK readers take to
 * mean inverted samples); -1 asks for a progressive file instead. */
static uint8_t *jpeg_encode(int w, int h, int comps, J_COLOR_SPACE cs, const uint8_t *px, int adobe,
                            size_t *len)
{
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr jerr;
    unsigned char *out = NULL;
    unsigned long n = 0;
    c.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&c);
    jpeg_mem_dest(&c, &out, &n);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = comps;
    c.in_color_space = cs;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 100, TRUE);
    c.write_Adobe_marker = adobe ? TRUE : FALSE;
    if (adobe < 0) jpeg_simple_progression(&c); /* adobe = -1: progressive, no marker */
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = (JSAMPROW)(px + (size_t)c.next_scanline * (size_t)w * (size_t)comps);
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    *len = n;
    return out;
}

static uint32_t crc32_of(const uint8_t *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1)));
    }
    return c ^ 0xffffffffu;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* ---- real images ---------------------------------------------------------- */

struct px_ref {
    int x, y;
    uint8_t rgb[3];
};

static int check_pixels(const image_rgb *img, const struct px_ref *ref, int n, int tol)
{
    for (int i = 0; i < n; i++) {
        const uint8_t *p = img->px + ((size_t)ref[i].y * (size_t)img->w + (size_t)ref[i].x) * 3;
        for (int c = 0; c < 3; c++)
            if (abs((int)p[c] - (int)ref[i].rgb[c]) > tol) {
                fprintf(stderr, "  pixel (%d,%d) channel %d: %d, reference %d\n", ref[i].x,
                        ref[i].y, c, p[c], ref[i].rgb[c]);
                return 0;
            }
    }
    return 1;
}

TEST(decode_png_matches_pil)
{
    static const struct px_ref ref[] = {{0, 0, {143, 120, 104}},
                                        {450, 299, {162, 138, 128}},
                                        {200, 150, {125, 64, 35}},
                                        {123, 45, {141, 98, 66}}};
    size_t len;
    uint8_t *b = read_file("chelsea.png", &len);
    ASSERT(b);
    image_rgb img;
    char err[256];
    int rc = image_decode(b, len, 0, 0, 0, &img, err, sizeof err);
    free(b);
    ASSERT_EQ(rc, 0);
    ASSERT_EQ(img.w, 451);
    ASSERT_EQ(img.h, 300);
    int ok = check_pixels(&img, ref, 4, 0);
    image_rgb_free(&img);
    ASSERT(ok);
}

TEST(decode_jpeg_full_and_dct_scaled_match_pil)
{
    static const struct px_ref full[] = {{0, 0, {57, 58, 50}},
                                         {767, 575, {50, 39, 35}},
                                         {300, 200, {141, 141, 149}},
                                         {511, 77, {255, 253, 255}}};
    static const struct px_ref half[] = {{0, 0, {58, 59, 51}},
                                         {383, 287, {54, 43, 39}},
                                         {150, 100, {142, 144, 139}},
                                         {255, 38, {246, 240, 240}}};
    size_t len;
    uint8_t *b = read_file("dog.jpg", &len);
    ASSERT(b);
    image_rgb img;
    char err[256];
    int rc = image_decode(b, len, 0, 0, 0, &img, err, sizeof err);
    ASSERT_EQ(rc, 0);
    ASSERT_EQ(img.w, 768);
    ASSERT_EQ(img.h, 576);
    int ok = check_pixels(&img, full, 4, 0);
    image_rgb_free(&img);
    ASSERT(ok);

    /* 224x224 is covered by 1/2 (384x288) but not by 1/4 (192x144). */
    rc = image_decode(b, len, 224, 224, 0, &img, err, sizeof err);
    ASSERT_EQ(rc, 0);
    ASSERT_EQ(img.w, 384);
    ASSERT_EQ(img.h, 288);
    ok = check_pixels(&img, half, 4, 0);
    image_rgb_free(&img);
    ASSERT(ok);

    /* A small target takes the smallest scale, 1/8. */
    rc = image_decode(b, len, 32, 32, 0, &img, err, sizeof err);
    free(b);
    ASSERT_EQ(rc, 0);
    ASSERT_EQ(img.w, 96);
    ASSERT_EQ(img.h, 72);
    image_rgb_free(&img);
}

TEST(decode_every_test_image)
{
    static const struct {
        const char *name;
        int w, h;
    } imgs[] = {{"astronaut.png", 512, 512}, {"chelsea.png", 451, 300}, {"coffee.png", 600, 400},
                {"dog.jpg", 768, 576},       {"eagle.jpg", 773, 512},   {"giraffe.jpg", 500, 500},
                {"rocket.jpg", 640, 427}};
    for (size_t i = 0; i < sizeof imgs / sizeof imgs[0]; i++) {
        size_t len;
        uint8_t *b = read_file(imgs[i].name, &len);
        ASSERT(b);
        image_rgb img;
        char err[256];
        int rc = image_decode(b, len, 0, 0, 0, &img, err, sizeof err);
        free(b);
        if (rc) TEST_FAIL_("%s: %s", imgs[i].name, err);
        int w = img.w, h = img.h;
        image_rgb_free(&img);
        ASSERT_EQ(w, imgs[i].w);
        ASSERT_EQ(h, imgs[i].h);
    }
}

TEST(resize_matches_pil_bilinear)
{
    static const struct px_ref chelsea[] = {{0, 0, {144, 121, 105}},
                                            {223, 223, {163, 139, 129}},
                                            {100, 100, {64, 41, 41}},
                                            {37, 180, {175, 140, 122}},
                                            {200, 13, {92, 64, 48}}};
    /* dog.jpg: PIL's draft (1/2 DCT scale) then resize, as we do. */
    static const struct px_ref dog[] = {{0, 0, {59, 60, 52}},
                                        {223, 223, {76, 64, 61}},
                                        {100, 100, {117, 110, 55}},
                                        {37, 180, {145, 151, 163}},
                                        {200, 13, {140, 179, 100}}};
    const struct {
        const char *name;
        const struct px_ref *ref;
    } cases[] = {{"chelsea.png", chelsea}, {"dog.jpg", dog}};
    for (int i = 0; i < 2; i++) {
        size_t len;
        uint8_t *b = read_file(cases[i].name, &len);
        ASSERT(b);
        tdm_preprocess pp;
        pp_init(&pp, TDM_LAYOUT_NHWC_UINT8, 224, 224);
        image_rgb out = {malloc(224 * 224 * 3), 224, 224};
        char err[256];
        int rc = tdm_image_to_input(b, len, &pp, out.px, 224 * 224 * 3, err, sizeof err);
        free(b);
        int ok = !rc && check_pixels(&out, cases[i].ref, 5, 1);
        image_rgb_free(&out);
        if (rc) TEST_FAIL_("%s: %s", cases[i].name, err);
        ASSERT(ok);
    }
}

/* ---- refusals ------------------------------------------------------------- */

static int to_input_status(const void *data, size_t len, uint64_t max_pixels, char *err,
                           size_t errlen)
{
    tdm_preprocess pp;
    pp_init(&pp, TDM_LAYOUT_NCHW_FLOAT, 8, 8);
    pp.limits.max_pixels = max_pixels;
    float dst[3 * 8 * 8];
    err[0] = '\0';
    return tdm_image_to_input(data, len, &pp, dst, sizeof dst, err, errlen);
}

TEST(not_an_image)
{
    char err[256];
    ASSERT_EQ(to_input_status("hello, world", 12, 0, err, sizeof err), TDM_ERR_IMAGE);
    ASSERT(strstr(err, "not a JPEG or PNG"));
    ASSERT_EQ(to_input_status("GIF89a\x01\x00\x01\x00", 10, 0, err, sizeof err), TDM_ERR_IMAGE);
    ASSERT_EQ(to_input_status("", 0, 0, err, sizeof err), TDM_ERR_IMAGE);
    ASSERT(strstr(err, "empty"));
    /* Magic bytes and nothing else. */
    ASSERT_EQ(to_input_status("\xff\xd8\xff", 3, 0, err, sizeof err), TDM_ERR_IMAGE);
    ASSERT(err[0]);
    ASSERT_EQ(to_input_status("\x89PNG\r\n\x1a\n", 8, 0, err, sizeof err), TDM_ERR_IMAGE);
    ASSERT(err[0]);
}

TEST(truncated_jpeg_and_png)
{
    const char *names[] = {"dog.jpg", "chelsea.png", "rocket.jpg", "coffee.png"};
    for (int i = 0; i < 4; i++) {
        size_t len;
        uint8_t *b = read_file(names[i], &len);
        ASSERT(b);
        const size_t cuts[] = {len / 2, len * 9 / 10, 40, len - 20};
        for (int k = 0; k < 4; k++) {
            char err[256];
            int rc = to_input_status(b, cuts[k], 0, err, sizeof err);
            if (rc != TDM_ERR_IMAGE) {
                free(b);
                TEST_FAIL_("%s cut to %zu bytes: status %d (%s)", names[i], cuts[k], rc, err);
            }
        }
        char err[256];
        int rc = to_input_status(b, len / 2, 0, err, sizeof err);
        free(b);
        ASSERT_EQ(rc, TDM_ERR_IMAGE);
        ASSERT(strstr(err, "truncated"));
    }
}

TEST(png_bomb_refused_from_header)
{
    /* Signature + IHDR claiming 50000x50000 RGB + an empty IDAT and IEND:
     * 7.5 GB if anyone believed it. */
    uint8_t png[8 + 25 + 12 + 12] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    uint8_t *p = png + 8;
    put_be32(p, 13);
    memcpy(p + 4, "IHDR", 4);
    put_be32(p + 8, 50000);
    put_be32(p + 12, 50000);
    p[16] = 8; /* depth */
    p[17] = 2; /* truecolour */
    put_be32(p + 21, crc32_of(p + 4, 17));
    p += 25;
    put_be32(p, 0);
    memcpy(p + 4, "IDAT", 4);
    put_be32(p + 8, crc32_of(p + 4, 4));
    p += 12;
    put_be32(p, 0);
    memcpy(p + 4, "IEND", 4);
    put_be32(p + 8, crc32_of(p + 4, 4));

    char err[256];
    ASSERT_EQ(to_input_status(png, sizeof png, 0, err, sizeof err), TDM_ERR_LIMIT);
    ASSERT(strstr(err, "50000x50000"));
    ASSERT(strstr(err, "67108864"));
}

TEST(jpeg_bomb_refused_from_header)
{
    size_t len;
    uint8_t *b = read_file("dog.jpg", &len);
    ASSERT(b);
    /* Rewrite the frame header (SOF0..SOF2) to claim 50000x50000. */
    size_t i;
    for (i = 2; i + 9 < len; i++)
        if (b[i] == 0xff && b[i + 1] >= 0xc0 && b[i + 1] <= 0xc2) break;
    if (i + 9 >= len) {
        free(b);
        TEST_FAIL_("no SOF marker in dog.jpg");
    }
    b[i + 5] = 50000 >> 8;
    b[i + 6] = 50000 & 0xff;
    b[i + 7] = 50000 >> 8;
    b[i + 8] = 50000 & 0xff;
    char err[256];
    int rc = to_input_status(b, len, 0, err, sizeof err);
    free(b);
    ASSERT_EQ(rc, TDM_ERR_LIMIT);
    ASSERT(strstr(err, "50000x50000"));
}

TEST(pixel_cap_is_configurable)
{
    size_t len;
    uint8_t *b = read_file("chelsea.png", &len);
    ASSERT(b);
    char err[256];
    int over = to_input_status(b, len, 451 * 300 - 1, err, sizeof err);
    int exact = to_input_status(b, len, 451 * 300, err, sizeof err);
    free(b);
    ASSERT_EQ(over, TDM_ERR_LIMIT);
    ASSERT_EQ(exact, 0);
}

TEST(bad_arguments)
{
    size_t len;
    uint8_t *b = read_file("chelsea.png", &len);
    ASSERT(b);
    tdm_preprocess pp;
    float dst[3 * 8 * 8];
    char err[256];
    pp_init(&pp, TDM_LAYOUT_NCHW_FLOAT, 8, 8);
    int wrong_len = tdm_image_to_input(b, len, &pp, dst, sizeof dst - 1, err, sizeof err);
    pp.width = 0;
    int no_width = tdm_image_to_input(b, len, &pp, dst, 0, err, sizeof err);
    pp_init(&pp, TDM_LAYOUT_NCHW_FLOAT, 8, 8);
    pp.std[1] = 0;
    int zero_std = tdm_image_to_input(b, len, &pp, dst, sizeof dst, err, sizeof err);
    pp_init(&pp, (tdm_layout)7, 8, 8);
    int bad_layout = tdm_image_to_input(b, len, &pp, dst, sizeof dst, err, sizeof err);
    pp_init(&pp, TDM_LAYOUT_NHWC_UINT8, 8, 8);
    int u8_len = tdm_image_to_input(b, len, &pp, dst, 3 * 8 * 8, NULL, 0);
    free(b);
    ASSERT_EQ(wrong_len, TDM_ERR_INVALID);
    ASSERT_EQ(no_width, TDM_ERR_INVALID);
    ASSERT_EQ(zero_std, TDM_ERR_INVALID);
    ASSERT_EQ(bad_layout, TDM_ERR_INVALID);
    ASSERT_EQ(u8_len, 0);
    ASSERT_EQ(tdm_image_to_input(NULL, 0, &pp, dst, 3 * 8 * 8, err, sizeof err), TDM_ERR_INVALID);
}

/* ---- colour types --------------------------------------------------------- */

TEST(png_colour_types_become_rgb)
{
    char err[256];
    image_rgb img;
    size_t len;

    const uint8_t grey[6] = {0, 50, 100, 150, 200, 255};
    void *png = png_encode(3, 2, 8, SPNG_COLOR_TYPE_GRAYSCALE, grey, sizeof grey, NULL, &len);
    ASSERT(png);
    int rc = image_decode(png, len, 0, 0, 0, &img, err, sizeof err);
    free(png);
    ASSERT_EQ(rc, 0);
    ASSERT_EQ(img.w, 3);
    ASSERT_EQ(img.h, 2);
    int ok = 1;
    for (int i = 0; i < 6; i++)
        ok &= img.px[3 * i] == grey[i] && img.px[3 * i + 1] == grey[i] &&
              img.px[3 * i + 2] == grey[i];
    image_rgb_free(&img);
    ASSERT(ok);

    /* 16-bit RGB, host-endian samples: 8-bit output keeps the high byte. */
    const uint16_t rgb16[3 * 2] = {0xffff, 0x8000, 0x0000, 0x1234, 0xabcd, 0x00ff};
    png = png_encode(2, 1, 16, SPNG_COLOR_TYPE_TRUECOLOR, rgb16, sizeof rgb16, NULL, &len);
    ASSERT(png);
    rc = image_decode(png, len, 0, 0, 0, &img, err, sizeof err);
    free(png);
    ASSERT_EQ(rc, 0);
    ok = img.px[0] == 0xff && img.px[1] == 0x80 && img.px[2] == 0 && img.px[3] == 0x12 &&
         img.px[4] == 0xab && img.px[5] == 0;
    image_rgb_free(&img);
    ASSERT(ok);

    /* Palette. */
    struct spng_plte plte = {0};
    plte.n_entries = 2;
    plte.entries[0] = (struct spng_plte_entry){10, 20, 30, 255};
    plte.entries[1] = (struct spng_plte_entry){200, 100, 50, 255};
    const uint8_t idx[2] = {1, 0};
    png = png_encode(2, 1, 8, SPNG_COLOR_TYPE_INDEXED, idx, sizeof idx, &plte, &len);
    ASSERT(png);
    rc = image_decode(png, len, 0, 0, 0, &img, err, sizeof err);
    free(png);
    ASSERT_EQ(rc, 0);
    ok = img.px[0] == 200 && img.px[1] == 100 && img.px[2] == 50 && img.px[3] == 10 &&
         img.px[4] == 20 && img.px[5] == 30;
    image_rgb_free(&img);
    ASSERT(ok);

    /* RGBA: alpha dropped, colour kept (as PIL's convert("RGB")). */
    const uint8_t rgba[4] = {90, 80, 70, 0};
    png = png_encode(1, 1, 8, SPNG_COLOR_TYPE_TRUECOLOR_ALPHA, rgba, sizeof rgba, NULL, &len);
    ASSERT(png);
    rc = image_decode(png, len, 0, 0, 0, &img, err, sizeof err);
    free(png);
    ASSERT_EQ(rc, 0);
    ok = img.px[0] == 90 && img.px[1] == 80 && img.px[2] == 70;
    image_rgb_free(&img);
    ASSERT(ok);
}

TEST(jpeg_greyscale_and_cmyk)
{
    char err[256];
    image_rgb img;
    size_t len;
    uint8_t grey[16 * 16], cmyk[16 * 16 * 4];
    memset(grey, 120, sizeof grey);
    uint8_t *jpg = jpeg_encode(16, 16, 1, JCS_GRAYSCALE, grey, 0, &len);
    ASSERT(jpg);
    int rc = image_decode(jpg, len, 0, 0, 0, &img, err, sizeof err);
    free(jpg);
    ASSERT_EQ(rc, 0);
    ASSERT_EQ(img.w, 16);
    int ok = 1;
    for (int i = 0; i < 16 * 16 * 3; i++)
        ok &= abs(img.px[i] - 120) <= 1;
    image_rgb_free(&img);
    ASSERT(ok);

    /* 50% cyan, no black -> R about 127, G = B = 255: written plain without
     * the Adobe marker, and inverted (255 - ink) with it. */
    for (int adobe = 0; adobe < 2; adobe++) {
        for (int i = 0; i < 16 * 16; i++) {
            cmyk[4 * i] = adobe ? 127 : 128;
            cmyk[4 * i + 1] = cmyk[4 * i + 2] = cmyk[4 * i + 3] = adobe ? 255 : 0;
        }
        jpg = jpeg_encode(16, 16, 4, JCS_CMYK, cmyk, adobe, &len);
        ASSERT(jpg);
        rc = image_decode(jpg, len, 0, 0, 0, &img, err, sizeof err);
        free(jpg);
        if (rc) TEST_FAIL_("%s", err);
        ok = abs(img.px[0] - 127) <= 2 && img.px[1] >= 253 && img.px[2] >= 253;
        if (!ok) fprintf(stderr, "  adobe %d: %d %d %d\n", adobe, img.px[0], img.px[1], img.px[2]);
        image_rgb_free(&img);
        ASSERT(ok);
    }
}

TEST(progressive_jpeg_scan_limit)
{
    /* A progressive file whose last scan is repeated: 80 extra scans still
     * decode (libjpeg only warns about the bogus progression), 600 are
     * refused (JPEG_MAX_SCANS, 100 by default) before they can burn CPU. */
    uint8_t px[16 * 16 * 3];
    for (size_t i = 0; i < sizeof px; i++)
        px[i] = (uint8_t)(i * 7);
    size_t len;
    uint8_t *jpg = jpeg_encode(16, 16, 3, JCS_RGB, px, -1, &len);
    ASSERT(jpg);
    size_t sos = 0;
    for (size_t i = 2; i + 1 < len; i++)
        if (jpg[i] == 0xff && jpg[i + 1] == 0xda) sos = i;
    ASSERT(sos > 0);
    size_t scan = len - 2 - sos; /* the last scan, up to the EOI marker */
    int status[2];
    const int repeats[2] = {80, 600};
    for (int t = 0; t < 2; t++) {
        size_t n = len + (size_t)repeats[t] * scan;
        uint8_t *big = malloc(n);
        memcpy(big, jpg, len - 2);
        for (int r = 0; r < repeats[t]; r++)
            memcpy(big + len - 2 + (size_t)r * scan, jpg + sos, scan);
        big[n - 2] = 0xff;
        big[n - 1] = 0xd9;
        char err[256];
        status[t] = to_input_status(big, n, 0, err, sizeof err);
        if (t == 1 && !strstr(err, "scans")) status[t] = -100;
        free(big);
    }
    free(jpg);
    ASSERT_EQ(status[0], 0);
    ASSERT_EQ(status[1], TDM_ERR_LIMIT);
}

/* ---- bombs that pass the pixel cap ---------------------------------------- */

/* Appends bits to a growing buffer; deflate packs them from the low bit of
 * each byte, JPEG from the high bit (with 0xFF bytes stuffed). */
struct bits {
    uint8_t *b;
    size_t len, cap;
    uint32_t acc;
    int n, msb_first;
};

static void bits_byte(struct bits *w, uint8_t v)
{
    if (w->len + 2 > w->cap) {
        w->cap = w->cap ? 2 * w->cap : 4096;
        w->b = realloc(w->b, w->cap);
    }
    w->b[w->len++] = v;
    if (w->msb_first && v == 0xff) w->b[w->len++] = 0;
}

static void bits_put(struct bits *w, uint32_t v, int n)
{
    for (int i = 0; i < n; i++) {
        uint32_t bit = w->msb_first ? (v >> (n - 1 - i)) & 1 : (v >> i) & 1;
        w->acc = w->msb_first ? w->acc << 1 | bit : w->acc | bit << w->n;
        if (++w->n == 8) {
            bits_byte(w, (uint8_t)w->acc);
            w->acc = 0;
            w->n = 0;
        }
    }
}

/* Deflate's Huffman codes go out from their top bit. */
static void bits_code(struct bits *w, uint32_t code, int n)
{
    for (int i = n - 1; i >= 0; i--)
        bits_put(w, (code >> i) & 1, 1);
}

/* A zlib stream of n zero bytes: one literal, then matches of 258 bytes at
 * distance 1, 13 bits each in deflate's fixed codes (about 160:1). */
static void zlib_zeros(struct bits *w, uint64_t n)
{
    bits_byte(w, 0x78);
    bits_byte(w, 0x01);
    bits_put(w, 1, 1); /* final block */
    bits_put(w, 1, 2); /* fixed Huffman codes */
    uint64_t left = n;
    if (left) {
        bits_code(w, 0x30, 8); /* literal 0 */
        left--;
    }
    for (; left >= 258; left -= 258) {
        bits_code(w, 0xc5, 8); /* length 258 */
        bits_code(w, 0, 5);    /* distance 1 */
    }
    for (; left; left--)
        bits_code(w, 0x30, 8);
    bits_code(w, 0, 7); /* end of block */
    if (w->n) bits_put(w, 0, 8 - w->n);
    uint32_t adler = (uint32_t)(n % 65521) << 16 | 1; /* of zeros: a = 1, b = n */
    for (int i = 3; i >= 0; i--)
        bits_byte(w, (uint8_t)(adler >> (8 * i)));
}

static void png_chunk(struct bits *png, const char *type, const uint8_t *data, size_t n)
{
    uint8_t head[8];
    put_be32(head, (uint32_t)n);
    memcpy(head + 4, type, 4);
    for (int i = 0; i < 8; i++)
        bits_byte(png, head[i]);
    size_t type_at = png->len - 4;
    for (size_t i = 0; i < n; i++)
        bits_byte(png, data[i]);
    uint8_t crc[4];
    put_be32(crc, crc32_of(png->b + type_at, n + 4));
    for (int i = 0; i < 4; i++)
        bits_byte(png, crc[i]);
}

/* A PNG of w x h zero pixels of the given depth and colour type, its image
 * data one deflate stream; text_zeros > 0 adds a zTXt chunk before it that
 * inflates to that many zero bytes. */
static uint8_t *png_zero_bomb(uint32_t w, uint32_t h, int depth, int color, uint64_t text_zeros,
                              size_t *len)
{
    static const int channels[7] = {1, 0, 3, 1, 2, 0, 4};
    struct bits png = {0}, z = {0};
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    for (int i = 0; i < 8; i++)
        bits_byte(&png, sig[i]);
    uint8_t ihdr[13] = {0};
    put_be32(ihdr, w);
    put_be32(ihdr + 4, h);
    ihdr[8] = (uint8_t)depth;
    ihdr[9] = (uint8_t)color;
    png_chunk(&png, "IHDR", ihdr, sizeof ihdr);
    if (text_zeros) {
        bits_byte(&z, 'k');
        bits_byte(&z, 0); /* keyword "k", then compression method 0 */
        bits_byte(&z, 0);
        zlib_zeros(&z, text_zeros);
        png_chunk(&png, "zTXt", z.b, z.len);
        free(z.b);
        memset(&z, 0, sizeof z);
    }
    uint64_t row = 1 + ((uint64_t)w * (uint64_t)channels[color] * (uint64_t)depth + 7) / 8;
    zlib_zeros(&z, row * h);
    png_chunk(&png, "IDAT", z.b, z.len);
    png_chunk(&png, "IEND", NULL, 0);
    free(z.b);
    *len = png.len;
    return png.b;
}

/* A progressive JPEG of w x h (greyscale, or 4:2:0 colour with ncomp 3)
 * holding no coefficient at all in nscans AC scans: each scan is a few
 * end-of-band runs of 32767 blocks, ~80 bytes that make the decoder visit
 * every block of a component. The scans form a valid progression (a first
 * scan at Al 13, then refinements down to 0, coefficient by coefficient). */
static uint8_t *jpeg_scan_bomb(int w, int h, int ncomp, int nscans, size_t *len)
{
    struct bits out = {0}, data = {0};
    uint8_t seg[80];
    data.msb_first = 1;
#define JPEG_SEG(marker, n)                                                                        \
    do {                                                                                           \
        bits_byte(&out, 0xff);                                                                     \
        bits_byte(&out, marker);                                                                   \
        bits_byte(&out, (uint8_t)(((n) + 2) >> 8));                                                \
        bits_byte(&out, (uint8_t)((n) + 2));                                                       \
        for (int i_ = 0; i_ < (n); i_++)                                                           \
            bits_byte(&out, seg[i_]);                                                              \
    } while (0)
    bits_byte(&out, 0xff);
    bits_byte(&out, 0xd8);
    seg[0] = 0; /* DQT 0: all ones */
    memset(seg + 1, 1, 64);
    JPEG_SEG(0xdb, 65);
    uint8_t sof[6 + 9] = {8,          (uint8_t)(h >> 8), (uint8_t)h, (uint8_t)(w >> 8),
                          (uint8_t)w, (uint8_t)ncomp};
    for (int c = 0; c < ncomp; c++) {
        sof[6 + 3 * c] = (uint8_t)(c + 1);
        sof[7 + 3 * c] = ncomp == 3 && c == 0 ? 0x22 : 0x11;
        sof[8 + 3 * c] = 0;
    }
    memcpy(seg, sof, 6 + 3 * (size_t)ncomp);
    JPEG_SEG(0xc2, 6 + 3 * ncomp);
    /* AC table 0: the end-of-band symbols EOB0..EOB14, 4-bit codes 0..14. */
    memset(seg, 0, 17);
    seg[0] = 0x10;
    seg[4] = 15;
    for (int r = 0; r < 15; r++)
        seg[17 + r] = (uint8_t)(r << 4);
    JPEG_SEG(0xc4, 32);
    int n = 0;
    for (int c = 0; c < ncomp && n < nscans; c++) {
        int sub = ncomp == 3 && c != 0 ? 2 : 1;
        size_t blocks = (size_t)((w + 8 * sub - 1) / (8 * sub)) * ((h + 8 * sub - 1) / (8 * sub));
        free(data.b);
        memset(&data, 0, sizeof data);
        data.msb_first = 1;
        for (size_t left = blocks; left;) {
            size_t run = left < 32767 ? left : 32767;
            int r = 0;
            while ((run >> (r + 1)) != 0)
                r++;
            bits_put(&data, (uint32_t)r, 4);
            bits_put(&data, (uint32_t)(run - ((size_t)1 << r)), r);
            left -= run;
        }
        if (data.n) bits_put(&data, (1u << (8 - data.n)) - 1, 8 - data.n);
        for (int k = 1; k < 64 && n < nscans; k++)
            for (int ah = 0; ah < 14 && n < nscans; ah++, n++) {
                uint8_t sos[6] = {1,          (uint8_t)(c + 1),
                                  0,          (uint8_t)k,
                                  (uint8_t)k, (uint8_t)(ah ? (14 - ah) << 4 | (13 - ah) : 13)};
                memcpy(seg, sos, sizeof sos);
                JPEG_SEG(0xda, 6);
                for (size_t i = 0; i < data.len; i++) /* already stuffed */
                    bits_byte(&out, data.b[i]);
            }
    }
#undef JPEG_SEG
    free(data.b);
    bits_byte(&out, 0xff);
    bits_byte(&out, 0xd9);
    *len = out.len;
    return out.b;
}

static int decode_status(const void *data, size_t len, const tdm_image_limits *lim, char *err,
                         size_t errlen)
{
    image_rgb img = {0};
    err[0] = '\0';
    int rc = image_decode(data, len, 224, 224, lim, &img, err, errlen);
    image_rgb_free(&img);
    return rc;
}

TEST(png_bombs_under_the_pixel_cap)
{
    /* 16-bit RGBA of 1 x 67108863 and 67108863 x 1: under the 64 Mpx cap,
     * 600 MB of image data in 3.8 MB, and libspng pays per row (the tall
     * one decoded for 45 s) or for two 500 MB row buffers (the wide one). */
    char err[256];
    size_t len;
    uint8_t *tall = png_zero_bomb(1, 67108863, 16, 6, 0, &len);
    ASSERT(tall);
    int rc = decode_status(tall, len, NULL, err, sizeof err);
    int side =
        rc == TDM_ERR_LIMIT && strstr(err, "1x67108863") && strstr(err, "16384 pixels a side");
    /* With the side limit lifted, the aspect ratio still refuses it. */
    tdm_image_limits lim = {.max_side = 1u << 30};
    int rc2 = decode_status(tall, len, &lim, err, sizeof err);
    int aspect = rc2 == TDM_ERR_LIMIT && strstr(err, "aspect ratio");
    free(tall);
    ASSERT_EQ(rc, TDM_ERR_LIMIT);
    ASSERT(side);
    ASSERT_EQ(rc2, TDM_ERR_LIMIT);
    ASSERT(aspect);

    uint8_t *wide = png_zero_bomb(67108863, 1, 16, 6, 0, &len);
    ASSERT(wide);
    rc = decode_status(wide, len, NULL, err, sizeof err);
    side = strstr(err, "67108863x1") && strstr(err, "a side");
    free(wide);
    ASSERT_EQ(rc, TDM_ERR_LIMIT);
    ASSERT(side);
}

TEST(aspect_and_side_limits_are_configurable)
{
    char err[256];
    size_t len;
    uint8_t *png = png_zero_bomb(1000, 5, 8, 2, 0, &len); /* 200:1 */
    ASSERT(png);
    int by_default = decode_status(png, len, NULL, err, sizeof err);
    int said = strstr(err, "200") != NULL || strstr(err, "aspect") != NULL;
    tdm_image_limits lim = {.max_aspect = 200};
    int raised = decode_status(png, len, &lim, err, sizeof err);
    lim.max_side = 999;
    int narrow = decode_status(png, len, &lim, err, sizeof err);
    int side = strstr(err, "999 pixels a side") != NULL;
    free(png);
    ASSERT_EQ(by_default, TDM_ERR_LIMIT);
    ASSERT(said);
    ASSERT_EQ(raised, 0);
    ASSERT_EQ(narrow, TDM_ERR_LIMIT);
    ASSERT(side);
}

TEST(png_decode_time_budget)
{
    /* 4096 x 4096 16-bit RGBA zeros: 128 MB of image data in 0.8 MB, within
     * every size limit; a 20 ms CPU budget stops it well before the end. */
    char err[256];
    size_t len;
    uint8_t *png = png_zero_bomb(4096, 4096, 16, 6, 0, &len);
    ASSERT(png);
    tdm_image_limits lim = {.max_decode_ms = 20};
    int rc = decode_status(png, len, &lim, err, sizeof err);
    int said = strstr(err, "20 ms of CPU time") != NULL;
    free(png);
    ASSERT_EQ(rc, TDM_ERR_LIMIT);
    ASSERT(said);
}

TEST(png_chunk_limits)
{
    /* A zTXt chunk that inflates to 9 MB: over the 8 MB chunk default. */
    char err[256];
    size_t len;
    uint8_t *png = png_zero_bomb(4, 4, 8, 2, 9u << 20, &len);
    ASSERT(png);
    int by_default = decode_status(png, len, NULL, err, sizeof err);
    int said = strstr(err, "metadata") != NULL;
    /* libspng grows its buffer by doubling: 16 MB for 9 MB of text. */
    tdm_image_limits lim = {.png_max_chunk = 32u << 20, .png_max_cache = 32u << 20};
    int raised = decode_status(png, len, &lim, err, sizeof err);
    if (raised) fprintf(stderr, "  %s\n", err);
    lim.png_max_cache = 4u << 20; /* the chunk limit is clamped to the cache's */
    int small_cache = decode_status(png, len, &lim, err, sizeof err);
    free(png);
    ASSERT_EQ(by_default, TDM_ERR_LIMIT);
    ASSERT(said);
    ASSERT_EQ(raised, 0);
    ASSERT_EQ(small_cache, TDM_ERR_LIMIT);
}

TEST(progressive_jpeg_bomb_refused_by_memory)
{
    /* The file: 8000 x 8000 colour, 1000 refinement scans in 107 kB;
     * 24 s of CPU before the old scan limit. Its coefficients alone need
     * 192 MB, over the 100 MiB default: refused before the first scan. */
    char err[256];
    size_t len;
    uint8_t *jpg = jpeg_scan_bomb(8000, 8000, 3, 1000, &len);
    ASSERT(jpg);
    int rc = decode_status(jpg, len, NULL, err, sizeof err);
    int said = strstr(err, "8000x8000 progressive JPEG needs more than") != NULL;
    free(jpg);
    ASSERT_EQ(rc, TDM_ERR_LIMIT);
    ASSERT(said);
}

TEST(progressive_jpeg_scans_and_time)
{
    char err[256];
    size_t len;
    /* 512 x 512 grey with 1000 scans: refused at scan 101 by default. */
    uint8_t *jpg = jpeg_scan_bomb(512, 512, 1, 1000, &len);
    ASSERT(jpg);
    int rc = decode_status(jpg, len, NULL, err, sizeof err);
    int said = strstr(err, "100 scans") != NULL;
    tdm_image_limits lim = {.jpeg_max_scans = 1000};
    int allowed = decode_status(jpg, len, &lim, err, sizeof err);
    lim.jpeg_max_scans = 5;
    int five = decode_status(jpg, len, &lim, err, sizeof err);
    free(jpg);
    ASSERT_EQ(rc, TDM_ERR_LIMIT);
    ASSERT(said);
    ASSERT_EQ(allowed, 0);
    ASSERT_EQ(five, TDM_ERR_LIMIT);

    /* 2048 x 2048 grey, 1000 scans allowed: seconds of CPU in all; a 50 ms
     * budget stops it, checked on every row of every scan. */
    jpg = jpeg_scan_bomb(2048, 2048, 1, 1000, &len);
    ASSERT(jpg);
    lim = (tdm_image_limits){.jpeg_max_scans = 100000, .max_decode_ms = 50};
    rc = decode_status(jpg, len, &lim, err, sizeof err);
    said = strstr(err, "50 ms of CPU time") != NULL;
    free(jpg);
    ASSERT_EQ(rc, TDM_ERR_LIMIT);
    ASSERT(said);
}

TEST(progressive_jpeg_memory_limit_is_configurable)
{
    /* A real 1024 x 1024 progressive file: 2 MB of coefficients. */
    char err[256];
    size_t len;
    uint8_t *px = malloc(1024 * 1024);
    ASSERT(px);
    for (size_t i = 0; i < 1024 * 1024; i++)
        px[i] = (uint8_t)(i * 13 + i / 1024);
    uint8_t *jpg = jpeg_encode(1024, 1024, 1, JCS_GRAYSCALE, px, -1, &len);
    free(px);
    ASSERT(jpg);
    tdm_image_limits lim = {.jpeg_max_memory = 1u << 20};
    int small = decode_status(jpg, len, &lim, err, sizeof err);
    int said = strstr(err, "1048576 bytes of decoder memory") != NULL;
    int by_default = decode_status(jpg, len, NULL, err, sizeof err);
    free(jpg);
    ASSERT_EQ(small, TDM_ERR_LIMIT);
    ASSERT(said);
    ASSERT_EQ(by_default, 0);
}

TEST(interlaced_png_decodes_row_by_row)
{
    /* Adam7 passes come row by row; each must land at its own place. */
    uint8_t px[9 * 7 * 3];
    for (size_t i = 0; i < sizeof px; i++)
        px[i] = (uint8_t)(i * 11);
    spng_ctx *enc = spng_ctx_new(SPNG_CTX_ENCODER);
    struct spng_ihdr ihdr = {9, 7, 8, SPNG_COLOR_TYPE_TRUECOLOR, 0, 0, SPNG_INTERLACE_ADAM7};
    int e = 0;
    size_t len = 0;
    spng_set_option(enc, SPNG_ENCODE_TO_BUFFER, 1);
    spng_set_ihdr(enc, &ihdr);
    void *png = NULL;
    if (!spng_encode_image(enc, px, sizeof px, SPNG_FMT_PNG, SPNG_ENCODE_FINALIZE))
        png = spng_get_png_buffer(enc, &len, &e);
    spng_ctx_free(enc);
    ASSERT(png);
    image_rgb img = {0};
    char err[256];
    int rc = image_decode(png, len, 0, 0, NULL, &img, err, sizeof err);
    free(png);
    int same = !rc && img.w == 9 && img.h == 7 && !memcmp(img.px, px, sizeof px);
    image_rgb_free(&img);
    ASSERT_EQ(rc, 0);
    ASSERT(same);
}

/* ---- resizing and layouts -------------------------------------------------- */

TEST(layouts_and_normalisation)
{
    /* 2x2 RGB: identity size, so values pass through unresampled. */
    const uint8_t px[12] = {0, 128, 255, 10, 20, 30, 255, 0, 0, 1, 2, 3};
    size_t len;
    void *png = png_encode(2, 2, 8, SPNG_COLOR_TYPE_TRUECOLOR, px, sizeof px, NULL, &len);
    ASSERT(png);
    tdm_preprocess pp;
    char err[256];

    pp_init(&pp, TDM_LAYOUT_NHWC_UINT8, 2, 2);
    uint8_t u8[12];
    int rc = tdm_image_to_input(png, len, &pp, u8, sizeof u8, err, sizeof err);
    int same = !memcmp(u8, px, sizeof px);

    pp_init(&pp, TDM_LAYOUT_NCHW_FLOAT, 2, 2);
    pp.mean[2] = 0.25f;
    pp.std[2] = 0.5f;
    float f[12];
    int rc2 = tdm_image_to_input(png, len, &pp, f, sizeof f, err, sizeof err);
    free(png);
    ASSERT_EQ(rc, 0);
    ASSERT(same);
    ASSERT_EQ(rc2, 0);
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < 4; i++)
            ASSERT_NEAR(f[c * 4 + i], (px[3 * i + c] / 255.0 - pp.mean[c]) / pp.std[c], 1e-5);
    ASSERT_NEAR(f[0], (0 - 0.485) / 0.229, 1e-5);
    ASSERT_NEAR(f[8], (255 / 255.0 - 0.25) / 0.5, 1e-5);
}

TEST(resize_bilinear_values)
{
    /* 2x1 [0, 255] to 4x1: sample centres 0.25, 0.75, 1.25, 1.75 in source
     * pixels -> 0, 0.25*255, 0.75*255, 255. */
    const uint8_t px[6] = {0, 0, 0, 255, 255, 255};
    image_rgb src = {(uint8_t *)px, 2, 1};
    tdm_preprocess pp;
    pp_init(&pp, TDM_LAYOUT_NHWC_UINT8, 4, 1);
    uint8_t out[12];
    ASSERT_EQ(image_resize_to_layout(&src, &pp, out, NULL, 0), 0);
    ASSERT_EQ(out[0], 0);
    ASSERT_EQ(out[3], 64);
    ASSERT_EQ(out[6], 191);
    ASSERT_EQ(out[9], 255);

    /* Shrinking 4x1 [0, 100, 200, 255] to 2x1: a triangle of radius 2 around
     * centres 1.0 and 3.0 weighs pixels 0..2 by 3/4, 3/4, 1/4 and pixels 1..3
     * by 1/4, 3/4, 3/4 (the window ends at the edge) -> (75 + 50) / 1.75 and
     * (25 + 150 + 191.25) / 1.75. */
    const uint8_t px4[12] = {0, 0, 0, 100, 100, 100, 200, 200, 200, 255, 255, 255};
    image_rgb src4 = {(uint8_t *)px4, 4, 1};
    pp_init(&pp, TDM_LAYOUT_NHWC_UINT8, 2, 1);
    uint8_t out2[6];
    ASSERT_EQ(image_resize_to_layout(&src4, &pp, out2, NULL, 0), 0);
    ASSERT_EQ(out2[0], 71);  /* 71.4 */
    ASSERT_EQ(out2[3], 209); /* 209.3 */

    /* A flat image stays flat at any size, up or down, odd or even. */
    static uint8_t flat[37 * 23 * 3];
    memset(flat, 77, sizeof flat);
    image_rgb fsrc = {flat, 37, 23};
    const int sizes[][2] = {{5, 3}, {224, 224}, {37, 23}, {1, 1}, {100, 7}};
    for (int s = 0; s < 5; s++) {
        pp_init(&pp, TDM_LAYOUT_NHWC_UINT8, sizes[s][0], sizes[s][1]);
        size_t n = (size_t)sizes[s][0] * (size_t)sizes[s][1] * 3;
        uint8_t *o = malloc(n);
        ASSERT_EQ(image_resize_to_layout(&fsrc, &pp, o, NULL, 0), 0);
        int ok = 1;
        for (size_t i = 0; i < n; i++)
            ok &= o[i] == 77;
        free(o);
        ASSERT(ok);
    }
}

TEST(resize_extreme_aspect)
{
    /* 1 x 20000 column down to 4x4: bounded memory, every output row filled. */
    const int h = 20000;
    uint8_t *col = malloc((size_t)h * 3);
    for (int y = 0; y < h; y++)
        col[3 * y] = col[3 * y + 1] = col[3 * y + 2] = y < h / 2 ? 0 : 200;
    image_rgb src = {col, 1, h};
    tdm_preprocess pp;
    pp_init(&pp, TDM_LAYOUT_NHWC_UINT8, 4, 4);
    uint8_t out[48];
    int rc = image_resize_to_layout(&src, &pp, out, NULL, 0);
    free(col);
    ASSERT_EQ(rc, 0);
    ASSERT_EQ(out[0], 0);
    ASSERT_EQ(out[3 * 4 * 3], 200);
}

/* ---- labels ----------------------------------------------------------------- */

TEST(labels_builtin)
{
    tdm_labels *l;
    ASSERT_EQ(tdm_labels_builtin(&l), 0);
    int n = tdm_labels_count(l);
    const char *first = tdm_labels_get(l, 0), *cat = tdm_labels_get(l, 283);
    const char *espresso = tdm_labels_get(l, 967), *last = tdm_labels_get(l, 999);
    const char *past = tdm_labels_get(l, 1000), *neg = tdm_labels_get(l, -1);
    int ok = first && !strcmp(first, "tench") && cat && !strcmp(cat, "Persian cat") && espresso &&
             !strcmp(espresso, "espresso") && last && !strcmp(last, "toilet tissue");
    tdm_labels_free(l);
    ASSERT_EQ(n, 1000);
    ASSERT(ok);
    ASSERT(!past);
    ASSERT(!neg);
}

TEST(labels_file_parsing)
{
    char path[] = "/tmp/tandem_labels_XXXXXX";
    int fd = mkstemp(path);
    ASSERT(fd >= 0);
    const char text[] = "zero\r\none\n\nthree caf\xc3\xa9\nfour";
    ssize_t w = write(fd, text, sizeof text - 1);
    close(fd);
    ASSERT_EQ(w, (ssize_t)(sizeof text - 1));
    tdm_labels *l;
    char err[256];
    int rc = tdm_labels_load(path, &l, err, sizeof err);
    unlink(path);
    ASSERT_EQ(rc, 0);
    int n = tdm_labels_count(l);
    char got[5][32];
    for (int i = 0; i < 5; i++)
        snprintf(got[i], sizeof got[i], "%s", tdm_labels_get(l, i));
    tdm_labels_free(l);
    ASSERT_EQ(n, 5);
    ASSERT_STR_EQ(got[0], "zero");
    ASSERT_STR_EQ(got[1], "one");
    ASSERT_STR_EQ(got[2], "");
    ASSERT_STR_EQ(got[3], "three caf\xc3\xa9");
    ASSERT_STR_EQ(got[4], "four");

    /* A final newline does not add a label. */
    ASSERT_EQ(labels_parse("a\nb\n", 4, &l, err, sizeof err), 0);
    n = tdm_labels_count(l);
    tdm_labels_free(l);
    ASSERT_EQ(n, 2);

    ASSERT_EQ(labels_parse("", 0, &l, err, sizeof err), TDM_ERR_INVALID);
    ASSERT_EQ(labels_parse("ok\nbad\xff\n", 8, &l, err, sizeof err), TDM_ERR_INVALID);
    ASSERT(strstr(err, "line 2"));
    ASSERT_EQ(labels_parse("nul\0x", 5, &l, err, sizeof err), TDM_ERR_INVALID);
    ASSERT(strstr(err, "NUL"));
    ASSERT_EQ(labels_parse("\xc0\x80", 2, &l, err, sizeof err), TDM_ERR_INVALID); /* overlong */
    ASSERT_EQ(tdm_labels_load("/nonexistent/labels.txt", &l, err, sizeof err), TDM_ERR_IO);
    ASSERT(strstr(err, "/nonexistent/labels.txt"));

    static char longline[5000];
    memset(longline, 'x', sizeof longline);
    ASSERT_EQ(labels_parse(longline, sizeof longline, &l, err, sizeof err), TDM_ERR_LIMIT);
}

/* ---- top-k ----------------------------------------------------------------- */

TEST(topk_order_ties_and_nan)
{
    const float s[6] = {0.1f, 0.5f, NAN, 0.5f, 0.9f, -1.0f};
    tdm_preprocess pp;
    pp_init(&pp, TDM_LAYOUT_NCHW_FLOAT, 1, 1);
    ASSERT_EQ(labels_parse("a\nb\nc\nd\ne\nf\n", 12, &pp.labels, NULL, 0), 0);
    tdm_label_score top[8];
    int n = tdm_topk(&pp, s, TDM_DTYPE_FLOAT, 6, 4, top);
    ASSERT_EQ(n, 4);
    ASSERT_EQ(top[0].index, 4);
    ASSERT_EQ(top[1].index, 1); /* tie with 3: lower index first */
    ASSERT_EQ(top[2].index, 3);
    ASSERT_EQ(top[3].index, 0);
    ASSERT_STR_EQ(top[0].label, "e");
    ASSERT_NEAR(top[0].score, 0.9, 1e-7);

    /* k beyond the classes: all of them, NaN last. */
    n = tdm_topk(&pp, s, TDM_DTYPE_FLOAT, 6, 8, top);
    ASSERT_EQ(n, 6);
    ASSERT_EQ(top[4].index, 5);
    ASSERT_EQ(top[5].index, 2);

    ASSERT_EQ(tdm_topk(&pp, s, TDM_DTYPE_FLOAT, 6, 0, top), 0);
    ASSERT_EQ(tdm_topk(&pp, s, TDM_DTYPE_INT64, 6, 3, top), TDM_ERR_INVALID);
    tdm_preprocess_clear(&pp);
    ASSERT(!pp.labels);
}

TEST(topk_uint8_with_background_offset)
{
    /* A 1001-class output: index 0 is "background", index i is ImageNet i-1. */
    uint8_t s[1001] = {0};
    s[0] = 40;
    s[284] = 200; /* ImageNet 283, Persian cat */
    s[1000] = 40;
    tdm_preprocess pp;
    pp_init(&pp, TDM_LAYOUT_NHWC_UINT8, 1, 1);
    ASSERT_EQ(tdm_labels_builtin(&pp.labels), 0);
    pp.label_offset = 1;
    tdm_label_score top[3];
    int n = tdm_topk(&pp, s, TDM_DTYPE_UINT8, 1001, 3, top);
    char l0[32], l1[32], l2[32];
    snprintf(l0, sizeof l0, "%s", top[0].label);
    snprintf(l1, sizeof l1, "%s", top[1].label);
    snprintf(l2, sizeof l2, "%s", top[2].label);
    tdm_preprocess_clear(&pp);
    ASSERT_EQ(n, 3);
    ASSERT_EQ(top[0].index, 284);
    ASSERT_NEAR(top[0].score, 200, 0);
    ASSERT_STR_EQ(l0, "Persian cat");
    ASSERT_STR_EQ(l1, "background");
    ASSERT_STR_EQ(l2, "toilet tissue");

    /* Without labels, a label is still a string. */
    n = tdm_topk(NULL, s, TDM_DTYPE_UINT8, 1001, 1, top);
    ASSERT_EQ(n, 1);
    ASSERT_STR_EQ(top[0].label, "unknown");
}

TEST(numbered_labels)
{
    tdm_labels *l;
    ASSERT_EQ(labels_numbered(12, &l), 0);
    char last[32];
    snprintf(last, sizeof last, "%s", tdm_labels_get(l, 11));
    int n = tdm_labels_count(l);
    tdm_labels_free(l);
    ASSERT_EQ(n, 12);
    ASSERT_STR_EQ(last, "class 11");
}

/* ---- preprocessing from a model ------------------------------------------------ */

static tdm_model *st_model(const char *name)
{
    const char *data = getenv("TEST_DATA");
    char path[512], err[256];
    snprintf(path, sizeof path, "%s/models/st-int8/%s", data && *data ? data : "data", name);
    tdm_options opt;
    tdm_options_init(&opt);
    tdm_model *m = NULL;
    if (tdm_model_load(path, &opt, &m, err, sizeof err)) {
        fprintf(stderr, "  %s: %s\n", path, err);
        return NULL;
    }
    return m;
}

/* A temporary folder with model.onnx.json (and optional files) in it. */
struct sidecar_dir {
    char dir[64], model[96], json[112], labels[96];
};

static void sidecar_write(struct sidecar_dir *d, const char *json, const char *labels)
{
    FILE *f = fopen(d->json, "w");
    fputs(json, f);
    fclose(f);
    if (labels) {
        f = fopen(d->labels, "w");
        fputs(labels, f);
        fclose(f);
    }
}

static int sidecar_init(struct sidecar_dir *d)
{
    snprintf(d->dir, sizeof d->dir, "/tmp/tandem_sidecar_XXXXXX");
    if (!mkdtemp(d->dir)) return -1;
    snprintf(d->model, sizeof d->model, "%s/model.onnx", d->dir);
    snprintf(d->json, sizeof d->json, "%s.json", d->model);
    snprintf(d->labels, sizeof d->labels, "%s/names.txt", d->dir);
    return 0;
}

static void sidecar_cleanup(struct sidecar_dir *d)
{
    unlink(d->json);
    unlink(d->labels);
    rmdir(d->dir);
}

TEST(for_model_float_nchw)
{
    const int64_t dims[4] = {1, 3, 8, 6};
    char err[256];
    tdm_model *m = tiny_model(TDM_DTYPE_FLOAT, 4, dims, err, sizeof err);
    if (!m) TEST_FAIL_("tiny model: %s", err);
    tdm_preprocess pp;
    int rc = tdm_preprocess_for_model(m, NULL, &pp, err, sizeof err);
    tdm_model_free(m);
    if (rc) TEST_FAIL_("%s", err);
    tdm_layout layout = pp.layout;
    int w = pp.width, h = pp.height, n = tdm_labels_count(pp.labels), off = pp.label_offset;
    char last[32];
    snprintf(last, sizeof last, "%s", tdm_labels_get(pp.labels, 2));
    float mean0 = pp.mean[0], std2 = pp.std[2];
    tdm_preprocess_clear(&pp);
    ASSERT_EQ(layout, TDM_LAYOUT_NCHW_FLOAT);
    ASSERT_EQ(w, 6);
    ASSERT_EQ(h, 8);
    ASSERT_EQ(n, 3); /* 3 channels pooled: 3 "classes" */
    ASSERT_EQ(off, 0);
    ASSERT_STR_EQ(last, "class 2");
    ASSERT_NEAR(mean0, 0.485, 1e-7);
    ASSERT_NEAR(std2, 0.225, 1e-7);
}

TEST(for_model_real_int8)
{
    static const struct {
        const char *file;
        int side, offset;
    } cases[] = {{"mobilenet_v2_1.0_224_int8_per_tensor.onnx", 224, 0},
                 {"mobilenet_v1_0.5_128_quant.onnx", 128, 1}};
    for (int i = 0; i < 2; i++) {
        tdm_model *m = st_model(cases[i].file);
        ASSERT(m);
        tdm_preprocess pp;
        char err[256];
        int rc = tdm_preprocess_for_model(m, NULL, &pp, err, sizeof err);
        tdm_model_free(m);
        if (rc) TEST_FAIL_("%s: %s", cases[i].file, err);
        int ok = pp.layout == TDM_LAYOUT_NHWC_UINT8 && pp.width == cases[i].side &&
                 pp.height == cases[i].side && pp.label_offset == cases[i].offset &&
                 tdm_labels_count(pp.labels) == 1000;
        tdm_preprocess_clear(&pp);
        if (!ok) TEST_FAIL_("%s: wrong layout, size or labels", cases[i].file);
    }
}

TEST(for_model_refuses_non_images)
{
    const int64_t flat[2] = {1, 10}, four[4] = {1, 4, 8, 8};
    char err[256];
    const int64_t *shapes[2] = {flat, four};
    const int ranks[2] = {2, 4};
    for (int i = 0; i < 2; i++) {
        tdm_model *m = tiny_model(TDM_DTYPE_FLOAT, ranks[i], shapes[i], err, sizeof err);
        if (!m) TEST_FAIL_("tiny model: %s", err);
        tdm_preprocess pp;
        int rc = tdm_preprocess_for_model(m, NULL, &pp, err, sizeof err);
        tdm_model_free(m);
        ASSERT_EQ(rc, TDM_ERR_UNSUPPORTED);
        ASSERT(strstr(err, "[N,3,H,W] float"));
    }
}

TEST(sidecar_overrides)
{
    const int64_t dims[4] = {1, 3, 8, 8};
    char err[256];
    struct sidecar_dir d;
    ASSERT_EQ(sidecar_init(&d), 0);
    tdm_model *m = tiny_model(TDM_DTYPE_FLOAT, 4, dims, err, sizeof err);
    if (!m) {
        sidecar_cleanup(&d);
        TEST_FAIL_("tiny model: %s", err);
    }
    tdm_preprocess pp;

    sidecar_write(&d,
                  "{\"labels\": \"names.txt\", \"mean\": [0.5, 0.5, 0.5], \"std\": [0.25, 1, 2],"
                  " \"width\": 8, \"height\": 8, \"layout\": \"nchw_float\"}",
                  "red\ngreen\nblue\n");
    int rc = tdm_preprocess_for_model(m, d.model, &pp, err, sizeof err);
    char l1[16] = "";
    float mean = 0, std = 0;
    if (!rc) {
        snprintf(l1, sizeof l1, "%s", tdm_labels_get(pp.labels, 1));
        mean = pp.mean[1];
        std = pp.std[0];
        tdm_preprocess_clear(&pp);
    }

    /* Background first: 2 names for 3 classes with label_offset 1. */
    sidecar_write(&d, "{\"labels\": \"names.txt\", \"label_offset\": 1}", "cat\ndog\n");
    int rc_off = tdm_preprocess_for_model(m, d.model, &pp, err, sizeof err);
    int off = pp.label_offset;
    float s[3] = {0.1f, 0.2f, 0.7f};
    tdm_label_score top[3];
    char best[16] = "", last[16] = "";
    if (!rc_off) {
        tdm_topk(&pp, s, TDM_DTYPE_FLOAT, 3, 3, top);
        snprintf(best, sizeof best, "%s", top[0].label);
        snprintf(last, sizeof last, "%s", top[2].label);
        tdm_preprocess_clear(&pp);
    }

    /* No names, but a background class: "background", "class 0", "class 1". */
    sidecar_write(&d, "{\"label_offset\": 1}", NULL);
    int rc_num = tdm_preprocess_for_model(m, d.model, &pp, err, sizeof err);
    char num0[16] = "", num2[16] = "";
    if (!rc_num) {
        tdm_topk(&pp, s, TDM_DTYPE_FLOAT, 3, 3, top);
        snprintf(num0, sizeof num0, "%s", top[2].label);
        snprintf(num2, sizeof num2, "%s", top[0].label);
        tdm_preprocess_clear(&pp);
    }

    static const struct {
        const char *json, *labels, *msg;
        int status;
    } bad[] = {
        {"{\"width\": 9}", NULL, "the model's input width is 8", TDM_ERR_INVALID},
        {"{\"layout\": \"nhwc_uint8\"}", NULL, "layout nhwc_uint8", TDM_ERR_INVALID},
        {"{\"layout\": \"planar\"}", NULL, "\"layout\" must be", TDM_ERR_INVALID},
        {"{\"meen\": [0, 0, 0]}", NULL, "unknown key \"meen\"", TDM_ERR_INVALID},
        {"{\"std\": [1, 0, 1]}", NULL, "from 1e-6 to 1e6", TDM_ERR_INVALID},
        /* Positive as a double, 0 once narrowed to a float (found by fuzz_sidecar). */
        {"{\"std\": [1, 1, 2.5e-57]}", NULL, "from 1e-6 to 1e6", TDM_ERR_INVALID},
        {"{\"mean\": [0, 0, 1e7]}", NULL, "from -1e6 to 1e6", TDM_ERR_INVALID},
        {"{\"mean\": [1, 2]}", NULL, "3 numbers", TDM_ERR_INVALID},
        {"{\"height\": 0}", NULL, "\"height\" must be", TDM_ERR_INVALID},
        {"[1, 2]", NULL, "JSON object", TDM_ERR_INVALID},
        {"{\"width\": 8,}", NULL, "line 1", TDM_ERR_INVALID},
        {"{\"width\": 8, \"width\": 8}", NULL, "duplicate", TDM_ERR_INVALID},
        {"{\"labels\": \"names.txt\"}", "a\nb\nc\nd\ne\n", "has 5 labels", TDM_ERR_INVALID},
        {"{\"labels\": \"nowhere.txt\"}", NULL, "nowhere.txt", TDM_ERR_IO},
    };
    int fails = 0;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sidecar_write(&d, bad[i].json, bad[i].labels);
        err[0] = '\0';
        int r = tdm_preprocess_for_model(m, d.model, &pp, err, sizeof err);
        if (r == 0) tdm_preprocess_clear(&pp);
        if (r != bad[i].status || !strstr(err, bad[i].msg) || !strstr(err, "sidecar")) {
            fprintf(stderr, "  sidecar %s: status %d, message \"%s\"\n", bad[i].json, r, err);
            fails++;
        }
    }
    tdm_model_free(m);
    sidecar_cleanup(&d);

    if (rc) TEST_FAIL_("sidecar: %s", err);
    ASSERT_STR_EQ(l1, "green");
    ASSERT_NEAR(mean, 0.5, 1e-7);
    ASSERT_NEAR(std, 0.25, 1e-7);
    ASSERT_EQ(rc_off, 0);
    ASSERT_EQ(off, 1);
    ASSERT_STR_EQ(best, "dog");
    ASSERT_STR_EQ(last, "background");
    ASSERT_EQ(rc_num, 0);
    ASSERT_STR_EQ(num0, "background");
    ASSERT_STR_EQ(num2, "class 1");
    ASSERT_EQ(fails, 0);
}

TEST_MAIN()
