/*
 * codec: the encodings the proxy and the worker share — base64 of image
 * files (the proxy encodes what it stores in Redis, the worker decodes it, and
 * POST /predict bodies carry it) and the top-k as JSON (the proxy's answer and
 * the worker's job record write the same text). Pure functions, no I/O; the
 * worker uses this without the HTTP API (api.h).
 *
 * base64: OpenSSL's EVP_EncodeBlock/EVP_DecodeBlock do the common case,
 * padded standard base64 in one piece, at ~2 GB/s; libsodium's decoder
 * (sodium_base642bin) takes everything else: it is strict, takes an "ignore"
 * set, so clients that wrap their base64 at 76 columns work, knows the
 * URL-safe and unpadded variants, and reports exactly where bad input stops
 * it. Its constant-time code runs at ~0.2 GB/s: on a 220 kB image that was
 * 1 ms to decode and 1-2 ms to encode, of a ~12 ms request.
 */
#ifndef TANDEM_CODEC_H
#define TANDEM_CODEC_H

#include <jansson.h>
#include <stddef.h>

#include "errors.h"
#include "tandem/image.h"

typedef enum {
    CODEC_OK = 0,
    CODEC_ERR_INVALID = ERR_BASE_CODEC - 1, /* not base64, or a data URL without ";base64," */
    CODEC_ERR_NOMEM = ERR_BASE_CODEC - 2
} codec_status;

/* Strict standard base64 (padding optional; spaces, tabs and newlines
 * ignored; URL-safe alphabet accepted). *out is malloc'd, free() it; err says
 * where bad input stops the decoder. */
int codec_b64_decode(const char *text, size_t len, unsigned char **out, size_t *out_len, char *err,
                     size_t errlen);
/* The same; *canonical is set to 1 when text is exactly what
 * codec_b64_encode gives for the decoded bytes (padded standard base64 in one
 * piece, the bits left over by the padding zero), so whoever stores the
 * image's base64 can keep the text instead of encoding it again; 0 otherwise
 * (and on failure). */
int codec_b64_decode_ex(const char *text, size_t len, unsigned char **out, size_t *out_len,
                        int *canonical, char *err, size_t errlen);
/* Standard base64 with padding, NUL-terminated; NULL if out of memory. */
char *codec_b64_encode(const void *data, size_t len, size_t *out_len);

/* A data URL "data:<type>;base64,<payload>": moves *text and *len onto the
 * payload. Text that does not start with "data:" is left as it is (CODEC_OK);
 * a data URL without ";base64," is CODEC_ERR_INVALID. */
int codec_data_url_payload(const char **text, size_t *len);

/* The top classes as a JSON array [{"label": .., "score": ..}, ..] (a NULL
 * label is ""); NULL if out of memory. */
json_t *codec_top_array(const tdm_label_score *top, int n);
/* The same as compact JSON text (caller frees); NULL if out of memory. */
char *codec_top_json(const tdm_label_score *top, int n);

#endif
