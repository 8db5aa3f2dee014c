/*
 * libFuzzer target for the POST /predict body parser: the first byte picks a
 * Content-Type, the rest is the body. Any bytes must be accepted as an image
 * that starts like a JPEG or PNG, or refused with a message and an HTTP code
 * of 4xx — never crash, leak or hang. An accepted image also survives a
 * base64 round trip (what the proxy stores in Redis), and the base64 text
 * kept for Redis is that of the image. Every body is also parsed as JSON
 * both ways (with the big base64 string set aside and plainly): the same
 * status, message, image, callback and kept base64 text, or abort.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int same_bytes(const void *a, size_t na, const void *b, size_t nb)
{
    return na == nb && (!na || (a && b && !memcmp(a, b, na)));
}

static void check_both_ways(const char *body, size_t len)
{
    api_image a = {0}, b = {0};
    char ea[512] = "", eb[512] = "";
    int ra = api_parse_json_body(body, len, 1, &a, ea, sizeof ea);
    int rb = api_parse_json_body(body, len, 0, &b, eb, sizeof eb);
    if (ra != rb || strcmp(ea, eb) || !same_bytes(a.data, a.len, b.data, b.len) ||
        !a.callback_url != !b.callback_url ||
        (a.callback_url && strcmp(a.callback_url, b.callback_url)) || !a.b64 != !b.b64 ||
        !same_bytes(a.b64, a.b64_len, b.b64, b.b64_len))
        abort();
    api_image_clear(&a);
    api_image_clear(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const types[] = {
        NULL,
        "application/json",
        "image/jpeg",
        "image/png",
        "application/octet-stream",
        "text/plain",
        "application/x-www-form-urlencoded",
        "image/gif",
        "application/json; charset=utf-8",
        "",
    };
    if (size == 0) return 0;
    const char *ct = types[data[0] % (sizeof types / sizeof types[0])];
    check_both_ways((const char *)data + 1, size - 1);
    api_image img = {0};
    char err[512] = "";
    int rc = api_parse_predict(ct, data + 1, size - 1, &img, err, sizeof err);
    if (rc) {
        int code = api_http_status(rc);
        if (!err[0] || code < 400 || code > 499) abort();
        if (img.data || img.owned) abort();
        return 0;
    }
    if (!img.data || img.len < 3) abort();
    if (!(img.data[0] == 0xff && img.data[1] == 0xd8) && img.data[0] != 0x89) abort();
    size_t b64_len = 0;
    char *b64 = codec_b64_encode(img.data, img.len, &b64_len);
    if (!b64) abort();
    unsigned char *back = NULL;
    size_t back_len = 0;
    if (codec_b64_decode(b64, b64_len, &back, &back_len, err, sizeof err) || back_len != img.len ||
        memcmp(back, img.data, img.len))
        abort();
    if (img.b64 && !same_bytes(img.b64, img.b64_len, b64, b64_len)) abort();
    free(back);
    free(b64);
    api_image_clear(&img);
    return 0;
}
