/*
 * image internals shared by image.c (decoding), image_resize.c (resampling
 * and tensor layout), image_model.c (preprocessing inferred from a model) and
 * labels.c. The public API is include/tandem/image.h; this header exists so
 * the unit tests can check decoded sizes and pixels before any resizing.
 */
#ifndef TANDEM_IMAGE_INTERNAL_H
#define TANDEM_IMAGE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "tandem/image.h"

/* The defaults of tdm_image_limits (keep equal to the settings in config.c). */
#define IMAGE_DEFAULT_MAX_PIXELS (64ull << 20)
#define IMAGE_DEFAULT_MAX_IMAGE_SIDE 16384u
#define IMAGE_DEFAULT_MAX_ASPECT 100u
#define IMAGE_DEFAULT_MAX_DECODE_MS 1000u
#define IMAGE_DEFAULT_JPEG_MAX_SCANS 100u
#define IMAGE_DEFAULT_JPEG_MAX_MEMORY (100ull << 20)
#define IMAGE_DEFAULT_PNG_MAX_CHUNK (8ull << 20)
#define IMAGE_DEFAULT_PNG_MAX_CACHE (16ull << 20)
/* Largest model input side we prepare; also bounds sidecar width/height. */
#define IMAGE_MAX_SIDE 8192

/* An interleaved 8-bit RGB image, rows packed (stride = 3 * w). */
typedef struct image_rgb {
    uint8_t *px;
    int w, h;
} image_rgb;

/* Decodes a JPEG or PNG (detected by its magic bytes) to RGB. JPEGs are
 * decoded at the smallest DCT scale (1/8, 1/4, 1/2, 1) whose size still
 * covers min_w x min_h; pass 0 for full size. An image that passes a limit
 * (NULL or a 0 field: the default) is refused with TDM_ERR_LIMIT: sizes
 * before any pixel buffer exists, scans and CPU time while decoding. */
int image_decode(const void *data, size_t len, int min_w, int min_h, const tdm_image_limits *limits,
                 image_rgb *out, char *err, size_t errlen);
void image_rgb_free(image_rgb *img);

/* Resamples src to dst_w x dst_h with a triangle (bilinear) filter whose
 * support widens with the downscale factor, and writes the result in the
 * layout pp asks for into dst (exactly dst_len bytes, checked by the caller). */
int image_resize_to_layout(const image_rgb *src, const tdm_preprocess *pp, void *dst, char *err,
                           size_t errlen);

/* snprintf into err when err is not NULL. */
void image_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Parses labels from memory (one per line, CR trimmed, UTF-8 checked). */
int labels_parse(const char *data, size_t len, tdm_labels **out, char *err, size_t errlen);
/* Labels "class 0" .. "class n-1" for models without a known label set. */
int labels_numbered(int n, tdm_labels **out);

#endif
