/* Unit tests of the JSON body of POST /predict with its big base64 string
 * set aside while jansson parses the rest (api.c): the way taken when it is
 * proven right, the plain way otherwise, and the same answer either way —
 * status, message, image, callback and the base64 text kept for Redis. And
 * what it costs to parse dog.jpg sent as JSON base64 (printed, not
 * asserted). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "api.h"
#include "codec.h"
#include "test.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The whole file at path, or NULL. */
static unsigned char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = n > 0 ? malloc((size_t)n) : NULL;
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

/* {"image_data": "<base64 of data>"} */
static char *body_of(const unsigned char *data, size_t n, size_t *len)
{
    char *b64 = codec_b64_encode(data, n, NULL);
    size_t cap = strlen(b64) + 64;
    char *s = malloc(cap);
    *len = (size_t)snprintf(s, cap, "{\"image_data\": \"%s\"}", b64);
    free(b64);
    return s;
}

/* A fake JPEG of n bytes (its head, then a pattern seeded by seed). */
static unsigned char *fake_jpeg(size_t n, unsigned seed)
{
    unsigned char *p = malloc(n);
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)((i * 131 + seed * 7919) >> 3);
    p[0] = 0xff, p[1] = 0xd8, p[2] = 0xff;
    return p;
}

static char *b64_of(const unsigned char *p, size_t n)
{
    return codec_b64_encode(p, n, NULL);
}

/* printf into a fresh buffer. */
__attribute__((format(printf, 1, 2))) static char *fmt(const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    char *s = NULL;
    if (vasprintf(&s, f, ap) < 0) s = NULL;
    va_end(ap);
    return s;
}

enum way { PLAIN, SET_ASIDE };

/* Parses body both ways and checks they agree; returns the status and fills
 * *img (the set-aside way's) and err; *way says which way it went. */
static int parse_both(int *failed_, const char *body, api_image *img, char *err, enum way *way)
{
    size_t len = strlen(body);
    api_image plain = {0};
    char perr[512] = "";
    err[0] = '\0';
    int rc = api_parse_json_body(body, len, 1, img, err, 512);
    int prc = api_parse_json_body(body, len, 0, &plain, perr, sizeof perr);
    int agree = rc == prc && !strcmp(err, perr) && img->len == plain.len &&
                (!img->len || !memcmp(img->data, plain.data, img->len)) &&
                !img->callback_url == !plain.callback_url &&
                (!img->callback_url || !strcmp(img->callback_url, plain.callback_url)) &&
                !img->b64 == !plain.b64 && img->b64_len == plain.b64_len &&
                (!img->b64 || !memcmp(img->b64, plain.b64, img->b64_len));
    /* The plain way copies what it keeps; the other points into the body. */
    *way = img->b64 && img->b64 >= body && img->b64 < body + len ? SET_ASIDE : PLAIN;
    api_image_clear(&plain);
    if (!agree) {
        api_image_clear(img);
        *failed_ = 1;
        fprintf(stderr, "  %.60s...: the two ways differ: %d \"%s\" / %d \"%s\"\n", body, rc, err,
                prc, perr);
    }
    return rc;
}

TEST(big_string_set_aside)
{
    unsigned char *jpg = fake_jpeg(3000, 1);
    char *b64 = b64_of(jpg, 3000);
    char err[512];
    enum way way;
    api_image img = {0};
    const char *forms[] = {
        "{\"image_data\": \"%s\"}",
        "{\"callback_url\": \"http://h/x?a=\\\"b\\\"\", \"image_data\":\"%s\", \"n\": [1, {}]}",
        "\n { \"a\\\\\": \"\\\\\", \"image_data\"  :  \"%s\" } \n",
    };
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        char *body = fmt(forms[i], b64);
        ASSERT_EQ(parse_both(failed_, body, &img, err, &way), API_OK);
        ASSERT_EQ(way, SET_ASIDE);
        ASSERT_EQ(img.len, 3000);
        ASSERT(!memcmp(img.data, jpg, 3000));
        ASSERT(img.b64_owned == NULL);
        ASSERT_EQ(img.b64_len, strlen(b64));
        ASSERT(!memcmp(img.b64, b64, img.b64_len));
        if (i == 1) ASSERT_STR_EQ(img.callback_url, "http://h/x?a=\"b\"");
        api_image_clear(&img);
        free(body);
    }
    free(b64);
    free(jpg);
}

/* Bodies the set-aside way does not take: the plain way answers, and the
 * base64 is still kept when it is what encoding would give. */
TEST(plain_way_when_not_set_aside)
{
    unsigned char *jpg = fake_jpeg(3000, 2);
    char *b64 = b64_of(jpg, 3000);
    size_t n = strlen(b64);
    char err[512];
    enum way way;
    api_image img = {0};
    /* A data URL: the run follows a comma, not a quote. */
    char *body = fmt("{\"image_data\": \"data:image/jpeg;base64,%s\"}", b64);
    ASSERT_EQ(parse_both(failed_, body, &img, err, &way), API_OK);
    ASSERT_EQ(way, PLAIN);
    ASSERT(img.b64_owned && img.b64_len == n && !memcmp(img.b64, b64, n));
    api_image_clear(&img);
    free(body);
    /* Wrapped at 76 columns: decoded, but not kept (it is not what encoding gives). */
    body = fmt("{\"image_data\": \"%.76s\\n%s\"}", b64, b64 + 76);
    ASSERT_EQ(parse_both(failed_, body, &img, err, &way), API_OK);
    ASSERT(img.b64 == NULL);
    ASSERT(!memcmp(img.data, jpg, 3000));
    api_image_clear(&img);
    free(body);
    /* An escaped slash inside, and a short string. */
    char *slashed = fmt("%s", b64);
    char *slash = strchr(slashed, '/');
    ASSERT(slash != NULL);
    *slash = '\0';
    body = fmt("{\"image_data\": \"%s\\/%s\"}", slashed, slash + 1);
    ASSERT_EQ(parse_both(failed_, body, &img, err, &way), API_OK);
    ASSERT_EQ(way, PLAIN);
    ASSERT(img.b64_owned && img.b64_len == n && !memcmp(img.b64, b64, n));
    api_image_clear(&img);
    free(body);
    free(slashed);
    unsigned char *small = fake_jpeg(32, 3);
    char *small64 = b64_of(small, 32);
    body = fmt("{\"image_data\": \"%s\"}", small64);
    ASSERT_EQ(parse_both(failed_, body, &img, err, &way), API_OK);
    ASSERT_EQ(way, PLAIN);
    ASSERT(img.len == 32 && !memcmp(img.data, small, 32));
    ASSERT(img.b64_owned != NULL);
    api_image_clear(&img);
    free(body);
    /* Unpadded: decoded, not kept (it is not what encoding gives). */
    small64[strlen(small64) - 1] = '\0';
    body = fmt("{\"image_data\": \"%s\"}", small64);
    ASSERT_EQ(parse_both(failed_, body, &img, err, &way), API_OK);
    ASSERT(img.len == 32 && !memcmp(img.data, small, 32));
    ASSERT(img.b64 == NULL);
    api_image_clear(&img);
    free(body);
    free(b64);
    free(small64);
    free(small);
    free(jpg);
}

TEST(non_canonical_padding_is_not_kept)
{
    /* 3001 bytes: two '=' of padding, 4 bits left over. */
    unsigned char *jpg = fake_jpeg(3001, 4);
    char *b64 = b64_of(jpg, 3001);
    size_t n = strlen(b64);
    ASSERT(b64[n - 1] == '=' && b64[n - 2] == '=');
    char err[512];
    enum way way;
    api_image img = {0};
    char *body = fmt("{\"image_data\": \"%s\"}", b64);
    ASSERT_EQ(parse_both(failed_, body, &img, err, &way), API_OK);
    ASSERT_EQ(way, SET_ASIDE);
    api_image_clear(&img);
    free(body);
    /* The last character's low 4 bits set: the same bytes, another text. */
    const char *abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t v = (size_t)(strchr(abc, b64[n - 3]) - abc);
    b64[n - 3] = abc[(v & ~15u) | 5];
    body = fmt("{\"image_data\": \"%s\"}", b64);
    ASSERT_EQ(parse_both(failed_, body, &img, err, &way), API_OK);
    ASSERT(img.b64 == NULL); /* decoded the same, but encoding would give another text */
    ASSERT(img.len == 3001 && !memcmp(img.data, jpg, 3001));
    api_image_clear(&img);
    free(body);
    free(b64);
    free(jpg);
}

/* Bodies built to mislead the scan: the answer is always the plain way's. */
TEST(adversarial_bodies)
{
    unsigned char *a = fake_jpeg(2000, 5), *b = fake_jpeg(2100, 6), *s = fake_jpeg(24, 7);
    char *A = b64_of(a, 2000), *B = b64_of(b, 2100), *S = b64_of(s, 24);
    char err[512];
    enum way way;
    api_image img = {0};
    char *body;

    /* Escaped quotes around a long run: not a string of its own. */
    body = fmt("{\"x\": \"\\\"%s\\\"\", \"image_data\": \"%s\"}", A, S);
    ASSERT_EQ(parse_both(failed_, body, &img, err, &way), API_OK);
    ASSERT_EQ(way, PLAIN);
    ASSERT(img.len == 24 && !memcmp(img.data, s, 24));
    api_image_clear(&img);
    free(body);
    body = fmt("{\"x\": \"\\\"%s\\\"\", \"image_data\": \"%s\"}", A, B);
    ASSERT_EQ(parse_both(failed_, body, &img, err, &way), API_OK);
    ASSERT_EQ(way, SET_ASIDE); /* the next run, the right one */
    ASSERT(img.len == 2100 && !memcmp(img.data, b, 2100));
    api_image_clear(&img);
    free(body);

    /* The first run in another key (or as a key): the plain way finds image_data. */
    const char *elsewhere[] = {"{\"other\": \"%s\", \"image_data\": \"%s\"}",
                               "{\"%s\": 1, \"image_data\": \"%s\"}",
                               "{\"k\": [\"%s\"], \"image_data\": \"%s\"}"};
    for (size_t i = 0; i < sizeof elsewhere / sizeof elsewhere[0]; i++) {
        body = fmt(elsewhere[i], A, B);
        ASSERT_EQ(parse_both(failed_, body, &img, err, &way), API_OK);
        ASSERT_EQ(way, PLAIN);
        ASSERT(img.len == 2100 && !memcmp(img.data, b, 2100));
        api_image_clear(&img);
        free(body);
    }

    /* Duplicate keys, the run in either of them: refused as by jansson. */
    const char *dups[] = {"{\"image_data\": \"%s\", \"image_data\": \"%s\"}",
                          "{\"image_data\": \"%s\", \"x\": 1, \"image_data\": 5}"};
    for (size_t i = 0; i < sizeof dups / sizeof dups[0]; i++) {
        body = fmt(dups[i], A, B);
        ASSERT_EQ(parse_both(failed_, body, &img, err, &way), API_ERR_BAD_REQUEST);
        ASSERT(strstr(err, "not valid JSON") && strstr(err, "duplicate"));
        free(body);
    }

    /* Strings that look like a nonce: 32 hex digits, beside the run or as
     * image_data itself (then the run elsewhere). */
    const char *hex = "0123456789abcdef0123456789abcdef";
    body = fmt("{\"n\": \"%s\", \"image_data\": \"%s\", \"m\": \"%s\"}", hex, A, hex);
    ASSERT_EQ(parse_both(failed_, body, &img, err, &way), API_OK);
    ASSERT_EQ(way, SET_ASIDE);
    ASSERT(img.len == 2000 && !memcmp(img.data, a, 2000));
    api_image_clear(&img);
    free(body);
    body = fmt("{\"x\": \"%s\", \"image_data\": \"%s\"}", A, hex);
    ASSERT_EQ(parse_both(failed_, body, &img, err, &way), API_ERR_BAD_REQUEST);
    ASSERT(strstr(err, "neither a JPEG nor a PNG"));
    free(body);

    /* A long run that is no valid base64: taken aside, refused as before. */
    char *bad = fmt("%s", A);
    bad[100] = '=';
    body = fmt("{\"image_data\": \"%s\"}", bad);
    ASSERT_EQ(parse_both(failed_, body, &img, err, &way), API_ERR_BAD_REQUEST);
    ASSERT(strstr(err, "image_data is not valid base64"));
    free(body);
    memset(bad, '=', strlen(bad));
    body = fmt("{\"image_data\": \"%s\"}", bad);
    ASSERT_EQ(parse_both(failed_, body, &img, err, &way), API_ERR_BAD_REQUEST);
    ASSERT(strstr(err, "not valid base64"));
    free(body);
    free(bad);

    /* image_data not a string, the body not an object, broken JSON after the run. */
    const char *refused[][2] = {
        {"{\"image_data\": [\"%s\"]}", "must be a string"},
        {"{\"image_data\": {\"k\": \"%s\"}}", "must be a string"},
        {"[\"%s\"]", "must be a JSON object"},
        {"\"%s\"", "not valid JSON"},
        {"{\"image_data\": \"%s\"", "not valid JSON"},
        {"{\"image_data\": \"%s\"}}", "not valid JSON"},
        {"{\"image_data\": \"%s\", \"x\": \"\xff\"}", "not valid JSON"},
        {"{\"image_data\": \"%s\", \"callback_url\": 7}", "callback_url"},
        {"{\"image\": \"%s\"}", "missing field"},
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        body = fmt(refused[i][0], A);
        ASSERT_EQ(parse_both(failed_, body, &img, err, &way), API_ERR_BAD_REQUEST);
        if (!strstr(err, refused[i][1]))
            TEST_FAIL_("%s: \"%s\" lacks \"%s\"", refused[i][0], err, refused[i][1]);
        free(body);
    }
    /* A NUL byte after the run: the body's length counts, not strlen. */
    body = fmt("{\"image_data\": \"%s\"}", A);
    size_t len = strlen(body);
    body[len - 1] = '\0';
    api_image p = {0};
    char perr[512];
    ASSERT_EQ(api_parse_json_body(body, len, 1, &img, err, sizeof err), API_ERR_BAD_REQUEST);
    ASSERT_EQ(api_parse_json_body(body, len, 0, &p, perr, sizeof perr), API_ERR_BAD_REQUEST);
    ASSERT_STR_EQ(err, perr);
    free(body);
    free(A), free(B), free(S), free(a), free(b), free(s);
}

TEST(dog_jpg_parse_time)
{
    const char *d = getenv("TEST_DATA");
    char path[512];
    snprintf(path, sizeof path, "%s/images/dog.jpg", d && *d ? d : "data");
    size_t n = 0, len = 0;
    unsigned char *jpg = read_file(path, &n);
    if (!jpg) SKIP("no %s", path);
    char *body = body_of(jpg, n, &len);
    enum { RUNS = 41 };
    double ms[RUNS];
    for (int i = 0; i < RUNS; i++) {
        api_image img = {0};
        char err[512];
        double t0 = now_ms();
        int rc = api_parse_predict("application/json", body, len, &img, err, sizeof err);
        ms[i] = now_ms() - t0;
        ASSERT_EQ(rc, API_OK);
        ASSERT_EQ(img.len, n);
        ASSERT(!memcmp(img.data, jpg, n));
        api_image_clear(&img);
    }
    qsort(ms, RUNS, sizeof ms[0], cmp_double);
    printf("  dog.jpg as JSON (%zu bytes): parse + decode %.3f ms median, %.3f ms min\n", len,
           ms[RUNS / 2], ms[0]);
    free(body);
    free(jpg);
}

TEST_MAIN()
