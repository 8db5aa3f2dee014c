/*
 * codec: base64 and the top-k JSON (see codec.h for why two libraries
 * decode base64).
 */
#include "codec.h"

#include <limits.h>
#include <openssl/evp.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The 6-bit value of a character of the standard alphabet (-1 for others). */
static int b64_value(char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* Padded standard base64 with nothing else in it, by OpenSSL; 0 for anything
 * else (EVP_DecodeBlock alone would take whitespace at either end and '='
 * inside). buf holds at least len / 4 * 3 bytes. *canonical: 1 when the bits
 * the padding leaves over are zero too, so that the text is exactly what
 * codec_b64_encode gives for the decoded bytes. */
static int b64_decode_plain(const char *text, size_t len, unsigned char *buf, size_t *out_len,
                            int *canonical)
{
    if (len == 0 || len % 4 || len > INT_MAX) return 0;
    size_t pad = text[len - 1] != '=' ? 0 : text[len - 2] != '=' ? 1 : 2;
    if (memchr(text, '=', len - pad)) return 0;
    int n = EVP_DecodeBlock(buf, (const unsigned char *)text, (int)len);
    if (n < 0 || (size_t)n != len / 4 * 3) return 0;
    *out_len = (size_t)n - pad;
    *canonical = pad == 0 || (b64_value(text[len - 1 - pad]) & (pad == 1 ? 3 : 15)) == 0;
    return 1;
}

int codec_b64_decode(const char *text, size_t len, unsigned char **out, size_t *out_len, char *err,
                     size_t errlen)
{
    return codec_b64_decode_ex(text, len, out, out_len, NULL, err, errlen);
}

int codec_b64_decode_ex(const char *text, size_t len, unsigned char **out, size_t *out_len,
                        int *canonical, char *err, size_t errlen)
{
    int canon = 0;
    if (canonical) *canonical = 0;
    static const int variants[] = {
        sodium_base64_VARIANT_ORIGINAL, sodium_base64_VARIANT_ORIGINAL_NO_PADDING,
        sodium_base64_VARIANT_URLSAFE, sodium_base64_VARIANT_URLSAFE_NO_PADDING};
    size_t cap = len / 4 * 3 + 3;
    unsigned char *buf = malloc(cap ? cap : 1);
    if (!buf) {
        snprintf(err, errlen, "out of memory decoding %zu bytes of base64", len);
        return CODEC_ERR_NOMEM;
    }
    if (b64_decode_plain(text, len, buf, out_len, &canon)) {
        *out = buf;
        if (canonical) *canonical = canon;
        return CODEC_OK;
    }
    /* Padded standard base64 is what nearly every client sends; the other
     * variants cost a second pass only on input the first one refused. */
    const char *stop = text;
    for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++) {
        size_t n = 0;
        const char *end = NULL;
        if (sodium_base642bin(buf, cap, text, len, " \t\r\n", &n, &end, variants[i]) == 0 &&
            end == text + len) {
            *out = buf;
            *out_len = n;
            return CODEC_OK;
        }
        if (i == 0) stop = end ? end : text;
    }
    free(buf);
    snprintf(err, errlen, "not valid base64 (bad input at offset %zu of %zu)",
             (size_t)(stop - text), len);
    return CODEC_ERR_INVALID;
}

char *codec_b64_encode(const void *data, size_t len, size_t *out_len)
{
    size_t cap = sodium_base64_ENCODED_LEN(len, sodium_base64_VARIANT_ORIGINAL);
    char *b = malloc(cap);
    if (!b) return NULL;
    if (len <= INT_MAX / 4 * 3)
        EVP_EncodeBlock((unsigned char *)b, data, (int)len);
    else
        sodium_bin2base64(b, cap, data, len, sodium_base64_VARIANT_ORIGINAL);
    if (out_len) *out_len = cap - 1;
    return b;
}

int codec_data_url_payload(const char **text, size_t *len)
{
    const char *s = *text;
    size_t n = *len;
    if (n <= 5 || strncmp(s, "data:", 5)) return CODEC_OK;
    const char *comma = memchr(s, ',', n);
    if (!comma || comma - s < 12 || strncmp(comma - 7, ";base64", 7)) return CODEC_ERR_INVALID;
    *len = n - (size_t)(comma + 1 - s);
    *text = comma + 1;
    return CODEC_OK;
}

/* jansson refuses invalid UTF-8; a label from a labels file may have it, and
 * the answer must still leave. */
static json_t *label_string(const char *s)
{
    json_t *v = json_string(s ? s : "");
    return v ? v : json_string("(invalid UTF-8)");
}

json_t *codec_top_array(const tdm_label_score *top, int n)
{
    json_t *a = json_array();
    for (int i = 0; a && i < n; i++)
        json_array_append_new(a, json_pack("{s:o,s:f}", "label", label_string(top[i].label),
                                           "score", (double)top[i].score));
    return a;
}

char *codec_top_json(const tdm_label_score *top, int n)
{
    json_t *a = codec_top_array(top, n);
    if (!a) return NULL;
    char *s = json_dumps(a, JSON_COMPACT | JSON_REAL_PRECISION(9));
    json_decref(a);
    return s;
}
