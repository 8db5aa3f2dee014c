/* Unit tests of the proxy's pure parts: routing, job ids, ?wait=, request
 * bodies (JSON, base64, raw files, content types) and JSON answers, plus the
 * Prometheus text of metrics. */
#include <jansson.h>
#include <sodium.h>
#include <stdlib.h>

#include "api.h"
#include "codec.h"
#include "metrics.h"
#include "test.h"

static const unsigned char jpeg[] = {0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 'J', 'F', 'I', 'F'};
static const unsigned char png[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13};

static int route(const char *method, const char *path, api_endpoint *ep, const char **id,
                 const char **allow)
{
    char err[256];
    *id = NULL;
    *allow = NULL;
    return api_route(method, path, ep, id, allow, err, sizeof err);
}

TEST(routes)
{
    api_endpoint ep;
    const char *id, *allow;
    ASSERT_EQ(route("GET", "/health", &ep, &id, &allow), API_OK);
    ASSERT_EQ(ep, API_EP_HEALTH);
    ASSERT_EQ(route("GET", "/metadata", &ep, &id, &allow), API_OK);
    ASSERT_EQ(ep, API_EP_METADATA);
    ASSERT_EQ(route("POST", "/predict", &ep, &id, &allow), API_OK);
    ASSERT_EQ(ep, API_EP_PREDICT);
    ASSERT_EQ(route("GET", "/predict/test", &ep, &id, &allow), API_OK);
    ASSERT_EQ(ep, API_EP_PREDICT_TEST);
    ASSERT_EQ(route("HEAD", "/metrics", &ep, &id, &allow), API_OK);
    ASSERT_EQ(ep, API_EP_METRICS);
    ASSERT_EQ(route("GET", "/job/a1b2c3", &ep, &id, &allow), API_OK);
    ASSERT_EQ(ep, API_EP_JOB);
    ASSERT_STR_EQ(id, "a1b2c3");
}

TEST(route_refusals)
{
    api_endpoint ep;
    const char *id, *allow;
    ASSERT_EQ(route("GET", "/predict", &ep, &id, &allow), API_ERR_METHOD);
    ASSERT_STR_EQ(allow, "POST");
    ASSERT_EQ(api_http_status(API_ERR_METHOD), 405);
    ASSERT_EQ(route("DELETE", "/job/abcdef", &ep, &id, &allow), API_ERR_METHOD);
    ASSERT_STR_EQ(allow, "GET");
    ASSERT_EQ(route("GET", "/nope", &ep, &id, &allow), API_ERR_NOT_FOUND);
    ASSERT_EQ(ep, API_EP_OTHER);
    ASSERT_EQ(route("GET", "/health/", &ep, &id, &allow), API_ERR_NOT_FOUND);
    ASSERT_EQ(api_http_status(API_ERR_NOT_FOUND), 404);
}

TEST(job_ids)
{
    api_endpoint ep;
    const char *id, *allow;
    static const char *const bad[] = {
        "/job/",       "/job/abc",     "/job/ABCDEF",
        "/job/ab-cd1", "/job/abc def", "/job/abcdef/x",
        "/job/%2e%2e", "/job/abcdéf",  "/job/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "/job/123e4567-e89b-12d3-a456-426614174000"};
    /* An id no job can have is unknown: 404 (the seed's contract), not 400. */
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (route("GET", bad[i], &ep, &id, &allow) != API_ERR_NOT_FOUND)
            TEST_FAIL_("%s not answered 404", bad[i]);
        ASSERT_EQ(ep, API_EP_JOB);
        ASSERT(id == NULL);
    }
    char huge[5 + 5000 + 1];
    memcpy(huge, "/job/", 5);
    memset(huge + 5, 'a', 5000);
    huge[5005] = 0;
    ASSERT_EQ(route("GET", huge, &ep, &id, &allow), API_ERR_NOT_FOUND);
    ASSERT(id == NULL);
    ASSERT_EQ(route("GET", "/job/abcd", &ep, &id, &allow), API_OK);
    ASSERT_EQ(route("GET", "/job/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", &ep, &id, &allow), API_OK);
}

TEST(wait_values)
{
    double w = -1;
    char err[128];
    ASSERT_EQ(api_parse_wait("5", &w, err, sizeof err), API_OK);
    ASSERT_NEAR(w, 5, 0);
    ASSERT_EQ(api_parse_wait("0.25", &w, err, sizeof err), API_OK);
    ASSERT_NEAR(w, 0.25, 0);
    ASSERT_EQ(api_parse_wait("30", &w, err, sizeof err), API_OK);
    static const char *const bad[] = {"0", "-1", "31", "abc", "", "5s", "nan", "inf", "1e9"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        w = -1;
        if (api_parse_wait(bad[i], &w, err, sizeof err) != API_ERR_BAD_REQUEST)
            TEST_FAIL_("wait=%s accepted", bad[i]);
        ASSERT_NEAR(w, -1, 0);
    }
    ASSERT(strstr(err, "30") != NULL);
}

TEST(base64_round_trip_and_variants)
{
    unsigned char data[256];
    for (int i = 0; i < 256; i++)
        data[i] = (unsigned char)i;
    size_t n;
    char *b = codec_b64_encode(data, sizeof data, &n);
    ASSERT(b != NULL);
    ASSERT_EQ(n, strlen(b));
    ASSERT_EQ(n, 344);
    unsigned char *out;
    size_t len;
    char err[256];
    ASSERT_EQ(codec_b64_decode(b, n, &out, &len, err, sizeof err), CODEC_OK);
    ASSERT_EQ(len, 256);
    ASSERT(!memcmp(out, data, 256));
    free(out);
    /* Wrapped at 76 columns with CRLF, as MIME encoders do. */
    char wrapped[512];
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        if (i && i % 76 == 0) wrapped[w++] = '\r', wrapped[w++] = '\n';
        wrapped[w++] = b[i];
    }
    ASSERT_EQ(codec_b64_decode(wrapped, w, &out, &len, err, sizeof err), CODEC_OK);
    ASSERT_EQ(len, 256);
    ASSERT(!memcmp(out, data, 256));
    free(out);
    free(b);
    ASSERT_EQ(codec_b64_decode("aGk", 3, &out, &len, err, sizeof err), CODEC_OK); /* no padding */
    ASSERT_EQ(len, 2);
    ASSERT(!memcmp(out, "hi", 2));
    free(out);
    ASSERT_EQ(codec_b64_decode("-_8=", 4, &out, &len, err, sizeof err), CODEC_OK); /* URL-safe */
    ASSERT_EQ(len, 2);
    ASSERT_EQ(out[0], 0xfb);
    free(out);
    ASSERT_EQ(codec_b64_decode("", 0, &out, &len, err, sizeof err), CODEC_OK);
    ASSERT_EQ(len, 0);
    free(out);
}

/* The OpenSSL fast path and libsodium must agree, byte for byte, on every
 * length (all three paddings) and on whitespace at the ends. */
TEST(base64_fast_path_matches_libsodium)
{
    unsigned char data[70], *out;
    char ref[128], err[256], padded[130];
    size_t len;
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (unsigned char)(i * 151 + 7);
    for (size_t n = 0; n <= sizeof data; n++) {
        size_t blen;
        char *b = codec_b64_encode(data, n, &blen);
        ASSERT(b != NULL);
        sodium_bin2base64(ref, sizeof ref, data, n, sodium_base64_VARIANT_ORIGINAL);
        ASSERT_STR_EQ(b, ref);
        ASSERT_EQ(blen, strlen(ref));
        ASSERT_EQ(codec_b64_decode(b, blen, &out, &len, err, sizeof err), CODEC_OK);
        ASSERT_EQ(len, n);
        ASSERT(n == 0 || !memcmp(out, data, n));
        free(out);
        snprintf(padded, sizeof padded, " %s\n", b);
        ASSERT_EQ(codec_b64_decode(padded, blen + 2, &out, &len, err, sizeof err), CODEC_OK);
        ASSERT_EQ(len, n);
        free(out);
        free(b);
    }
}

TEST(base64_refusals)
{
    static const char *const bad[] = {"aGk*", "a",      "aGk=x",    "a===",    "aG=k",
                                      "@@@@", "aGk===", "aG==aGk=", "aGk=aGk="};
    unsigned char *out = (unsigned char *)"untouched";
    size_t len = 77;
    char err[256];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (codec_b64_decode(bad[i], strlen(bad[i]), &out, &len, err, sizeof err) !=
            CODEC_ERR_INVALID)
            TEST_FAIL_("\"%s\" accepted", bad[i]);
        ASSERT(strstr(err, "base64") != NULL);
    }
    ASSERT_EQ(len, 77);
    ASSERT_STR_EQ((const char *)out, "untouched");
}

static int parse(const char *ct, const void *body, size_t len, api_image *img, char *err)
{
    return api_parse_predict(ct, body, len, img, err, 512);
}

static char *json_body(const unsigned char *data, size_t n, const char *prefix)
{
    char *b64 = codec_b64_encode(data, n, NULL);
    size_t cap = strlen(b64) + 128;
    char *s = malloc(cap);
    snprintf(s, cap, "{\"image_data\": \"%s%s\", \"extra\": 1}", prefix, b64);
    free(b64);
    return s;
}

TEST(predict_bodies_accepted)
{
    api_image img = {0};
    char err[512];
    char *j = json_body(jpeg, sizeof jpeg, "");
    ASSERT_EQ(parse("application/json", j, strlen(j), &img, err), API_OK);
    ASSERT_EQ(img.len, sizeof jpeg);
    ASSERT(!memcmp(img.data, jpeg, sizeof jpeg));
    ASSERT(img.owned != NULL);
    api_image_clear(&img);
    ASSERT_EQ(parse(NULL, j, strlen(j), &img, err), API_OK); /* sniffed */
    api_image_clear(&img);
    ASSERT_EQ(parse("application/x-www-form-urlencoded", j, strlen(j), &img, err), API_OK);
    api_image_clear(&img);
    ASSERT_EQ(parse("Application/JSON; charset=utf-8", j, strlen(j), &img, err), API_OK);
    api_image_clear(&img);
    free(j);
    j = json_body(png, sizeof png, "data:image/png;base64,");
    ASSERT_EQ(parse("application/json", j, strlen(j), &img, err), API_OK);
    ASSERT_EQ(img.len, sizeof png);
    api_image_clear(&img);
    free(j);
    ASSERT_EQ(parse("image/jpeg", jpeg, sizeof jpeg, &img, err), API_OK);
    ASSERT(img.data == jpeg); /* raw bodies are not copied */
    ASSERT(img.owned == NULL);
    api_image_clear(&img);
    ASSERT_EQ(parse("application/octet-stream", png, sizeof png, &img, err), API_OK);
    api_image_clear(&img);
    ASSERT_EQ(parse(NULL, png, sizeof png, &img, err), API_OK);
    ASSERT(img.data == png);
    api_image_clear(&img);
}

static void expect_refused(int *failed_, const char *ct, const char *body, size_t len, int want,
                           const char *needle)
{
    api_image img = {0};
    char err[512] = "";
    int rc = parse(ct, body, len, &img, err);
    if (rc != want) TEST_FAIL_("%.40s: got %d, want %d (%s)", body, rc, want, err);
    if (!strstr(err, needle)) TEST_FAIL_("%.40s: message \"%s\" lacks \"%s\"", body, err, needle);
    if (img.data || img.owned) TEST_FAIL_("%.40s: image set on failure", body);
}

TEST(predict_bodies_refused)
{
    const char *J = "application/json";
    expect_refused(failed_, J, "", 0, API_ERR_BAD_REQUEST, "empty body");
    expect_refused(failed_, J, "{\"image_data\": ", 15, API_ERR_BAD_REQUEST, "not valid JSON");
    expect_refused(failed_, J, "hello", 5, API_ERR_BAD_REQUEST, "not valid JSON");
    expect_refused(failed_, J, "[1,2]", 5, API_ERR_BAD_REQUEST, "JSON object");
    expect_refused(failed_, J, "{}", 2, API_ERR_BAD_REQUEST, "missing field \"image_data\"");
    expect_refused(failed_, J, "{\"image\": \"x\"}", 14, API_ERR_BAD_REQUEST, "missing field");
    expect_refused(failed_, J, "{\"image_data\": 5}", 17, API_ERR_BAD_REQUEST, "string");
    expect_refused(failed_, J, "{\"image_data\": \"@@@\"}", 21, API_ERR_BAD_REQUEST, "base64");
    expect_refused(failed_, J, "{\"image_data\": \"\"}", 18, API_ERR_BAD_REQUEST, "empty");
    /* "hello world" in base64: decodes, but is no image. */
    expect_refused(failed_, J, "{\"image_data\": \"aGVsbG8gd29ybGQ=\"}", 34, API_ERR_BAD_REQUEST,
                   "neither a JPEG nor a PNG");
    expect_refused(failed_, J, "{\"image_data\": \"data:text/plain,aGk=\"}", 38,
                   API_ERR_BAD_REQUEST, "data URL");
    expect_refused(failed_, J, "{\"image_data\":\"a\",\"image_data\":\"b\"}", 35,
                   API_ERR_BAD_REQUEST, "not valid JSON");
    expect_refused(failed_, "image/jpeg", "GIF89a", 6, API_ERR_BAD_REQUEST, "neither");
    expect_refused(failed_, "image/gif", "GIF89a", 6, API_ERR_MEDIA_TYPE, "Content-Type");
    expect_refused(failed_, "multipart/form-data; boundary=x", "--x", 3, API_ERR_MEDIA_TYPE,
                   "image/jpeg");
    ASSERT_EQ(api_http_status(API_ERR_MEDIA_TYPE), 415);
    ASSERT_EQ(api_http_status(API_ERR_BAD_REQUEST), 400);
}

static json_t *load(char *text)
{
    json_t *v = text ? json_loads(text, 0, NULL) : NULL;
    free(text);
    return v;
}

TEST(answers)
{
    json_t *v = load(api_health_json());
    ASSERT(v != NULL);
    ASSERT_STR_EQ(json_string_value(json_object_get(v, "health")), "ok");
    json_decref(v);
    v = load(api_metadata_json());
    ASSERT_STR_EQ(json_string_value(json_object_get(v, "prediction_sample")), "Persian cat");
    ASSERT_STR_EQ(json_string_value(json_object_get(v, "data_structure")), "(1,1)");
    ASSERT_EQ(json_object_size(v), 6);
    json_decref(v);
    v = load(api_error_json("bad \"thing\"\n"));
    ASSERT_STR_EQ(json_string_value(json_object_get(v, "error")), "bad \"thing\"\n");
    json_decref(v);
    v = load(api_error_json("\xff\xfe not utf-8"));
    ASSERT(json_is_string(json_object_get(v, "error")));
    json_decref(v);
}

TEST(prediction_answer)
{
    tdm_label_score top[2] = {{281, 0.75f, "tabby, tabby cat"}, {285, 0.125f, "Egyptian cat"}};
    api_prediction p = {.job_id = "abc123",
                        .label = "tabby, tabby cat",
                        .top = top,
                        .ntop = 2,
                        .model = "m.onnx",
                        .inference_ms = 1.23456,
                        .status = "queued"};
    json_t *v = load(api_prediction_json(&p));
    ASSERT(v != NULL);
    ASSERT_STR_EQ(json_string_value(json_object_get(v, "job_id")), "abc123");
    ASSERT_STR_EQ(json_string_value(json_object_get(v, "result_sync")), "tabby, tabby cat");
    ASSERT_STR_EQ(json_string_value(json_object_get(v, "status")), "queued");
    ASSERT_STR_EQ(json_string_value(json_object_get(v, "model")), "m.onnx");
    ASSERT_NEAR(json_real_value(json_object_get(v, "inference_ms")), 1.235, 1e-9);
    json_t *t = json_object_get(v, "top5");
    ASSERT_EQ(json_array_size(t), 2);
    ASSERT_STR_EQ(json_string_value(json_object_get(json_array_get(t, 1), "label")),
                  "Egyptian cat");
    ASSERT_NEAR(json_real_value(json_object_get(json_array_get(t, 1), "score")), 0.125, 1e-9);
    ASSERT(!json_object_get(v, "error"));
    json_decref(v);
    p.job_id = NULL;
    p.status = NULL;
    p.reason = "queue full";
    v = load(api_prediction_json(&p));
    ASSERT(json_is_null(json_object_get(v, "job_id")));
    ASSERT_STR_EQ(json_string_value(json_object_get(v, "reason")), "queue full");
    ASSERT(!json_object_get(v, "status"));
    json_decref(v);
    p.reason = NULL;
    p.error = "redis down";
    v = load(api_prediction_json(&p));
    ASSERT_STR_EQ(json_string_value(json_object_get(v, "error")), "redis down");
    ASSERT_STR_EQ(json_string_value(json_object_get(v, "result_sync")), "tabby, tabby cat");
    json_decref(v);
    v = load(codec_top_json(top, 2));
    ASSERT_EQ(json_array_size(v), 2);
    json_decref(v);
}

TEST(job_answer)
{
    queue_job job;
    memset(&job, 0, sizeof job);
    snprintf(job.status, sizeof job.status, "running");
    job.attempts = 1;
    job.sync_label = (char *)"tabby";
    job.sync_top5 = (char *)"[{\"label\":\"tabby\",\"score\":0.5}]";
    json_t *v = load(api_job_json("abc123", &job));
    json_t *j = json_object_get(v, "abc123");
    ASSERT(j != NULL);
    ASSERT_STR_EQ(json_string_value(json_object_get(j, "prediction")), "");
    ASSERT_STR_EQ(json_string_value(json_object_get(j, "status")), "running");
    ASSERT_EQ(json_integer_value(json_object_get(j, "attempts")), 1);
    ASSERT(!json_object_get(j, "error"));
    json_t *sync = json_object_get(j, "sync");
    ASSERT_STR_EQ(json_string_value(json_object_get(sync, "prediction")), "tabby");
    json_t *first = json_array_get(json_object_get(sync, "top5"), 0);
    ASSERT_STR_EQ(json_string_value(json_object_get(first, "label")), "tabby");
    json_decref(v);
    snprintf(job.status, sizeof job.status, "done");
    job.label = (char *)"Siamese cat";
    job.top5 = (char *)"not json";
    job.inference_ms = 42;
    v = load(api_job_json("abc123", &job));
    j = json_object_get(v, "abc123");
    ASSERT_STR_EQ(json_string_value(json_object_get(j, "prediction")), "Siamese cat");
    ASSERT(!json_object_get(j, "top5")); /* unparseable stored text is left out */
    ASSERT_NEAR(json_real_value(json_object_get(j, "inference_ms")), 42, 0);
    json_decref(v);
    snprintf(job.status, sizeof job.status, "failed");
    job.label = NULL;
    job.error = (char *)"cannot decode";
    v = load(api_job_json("abc123", &job));
    j = json_object_get(v, "abc123");
    ASSERT_STR_EQ(json_string_value(json_object_get(j, "error")), "cannot decode");
    ASSERT_STR_EQ(json_string_value(json_object_get(j, "prediction")), "");
    json_decref(v);
}

TEST(push_routes)
{
    api_endpoint ep;
    const char *id, *allow;
    ASSERT_EQ(route("GET", "/job/a1b2c3/events", &ep, &id, &allow), API_OK);
    ASSERT_EQ(ep, API_EP_EVENTS);
    ASSERT(!strncmp(id, "a1b2c3/", 7));
    ASSERT_EQ(route("POST", "/job/a1b2c3/events", &ep, &id, &allow), API_ERR_METHOD);
    ASSERT_EQ(route("GET", "/job/a1/events", &ep, &id, &allow), API_ERR_NOT_FOUND);
    ASSERT_EQ(route("GET", "/job/a1b2c3/eventsx", &ep, &id, &allow), API_ERR_NOT_FOUND);
    ASSERT_EQ(route("GET", "/stats", &ep, &id, &allow), API_OK);
    ASSERT_EQ(ep, API_EP_STATS);
    ASSERT_EQ(route("GET", "/", &ep, &id, &allow), API_OK);
    ASSERT_EQ(ep, API_EP_PAGE);
    ASSERT_EQ(route("GET", "/samples/coffee.jpg", &ep, &id, &allow), API_OK);
    ASSERT_EQ(ep, API_EP_PAGE);
    ASSERT_EQ(route("POST", "/", &ep, &id, &allow), API_ERR_METHOD);
    ASSERT_STR_EQ(api_endpoint_name(API_EP_EVENTS), "events");
    ASSERT_STR_EQ(api_endpoint_name(API_EP_OTHER), "other");
}

TEST(prefer_wait)
{
    double w = -1;
    ASSERT_EQ(api_prefer_wait("wait=10", &w), 1);
    ASSERT_NEAR(w, 10, 0);
    ASSERT_EQ(api_prefer_wait("respond-async, wait=5", &w), 1);
    ASSERT_NEAR(w, 5, 0);
    ASSERT_EQ(api_prefer_wait("WAIT = \"7\";x=y, return=minimal", &w), 1);
    ASSERT_NEAR(w, 7, 0);
    ASSERT_EQ(api_prefer_wait("wait=0", &w), 1);
    ASSERT_NEAR(w, 0, 0);
    static const char *const ignored[] = {NULL,           "",         "respond-async",
                                          "wait",         "wait=",    "wait=-1",
                                          "wait=1.5",     "wait=abc", "waiting=5",
                                          "return=wait=5"};
    for (size_t i = 0; i < sizeof ignored / sizeof ignored[0]; i++)
        if (api_prefer_wait(ignored[i], &w))
            TEST_FAIL_("%s taken", ignored[i] ? ignored[i] : "NULL");
    ASSERT_EQ(api_last_event_id("2"), 2);
    ASSERT_EQ(api_last_event_id(NULL), 0);
    ASSERT_EQ(api_last_event_id("x"), 0);
    ASSERT_EQ(api_last_event_id("-1"), 0);
    ASSERT_EQ(api_last_event_id("3 "), 0);
}

TEST(push_answers)
{
    queue_job job;
    memset(&job, 0, sizeof job);
    snprintf(job.status, sizeof job.status, "done");
    job.label = (char *)"tabby";
    job.top5 = (char *)"[{\"label\":\"tabby\",\"score\":0.5}]";
    json_t *v = load(api_prediction_with_job_json(
        "{\"job_id\":\"abc123\",\"result_sync\":\"tiger cat\",\"status\":\"queued\"}", "abc123",
        &job));
    ASSERT_STR_EQ(json_string_value(json_object_get(v, "result_sync")), "tiger cat");
    ASSERT_STR_EQ(json_string_value(json_object_get(v, "status")), "done");
    json_t *a = json_object_get(v, "async");
    ASSERT_STR_EQ(json_string_value(json_object_get(a, "prediction")), "tabby");
    json_decref(v);
    ASSERT(api_prediction_with_job_json("not json", "abc123", &job) == NULL);
    queue_stats st;
    memset(&st, 0, sizeof st);
    st.queue_length = 3;
    st.workers_alive = 2;
    v = load(api_stats_json(&st, 4, 1 << 20));
    ASSERT(json_is_true(json_object_get(v, "redis_up")));
    ASSERT_EQ(json_integer_value(json_object_get(v, "queue_length")), 3);
    ASSERT_EQ(json_integer_value(json_object_get(v, "workers_alive")), 2);
    ASSERT_EQ(json_integer_value(json_object_get(v, "event_streams")), 4);
    ASSERT_EQ(json_integer_value(json_object_get(v, "max_body_bytes")), 1 << 20);
    json_decref(v);
    v = load(api_stats_json(NULL, 0, 1 << 20));
    ASSERT(json_is_false(json_object_get(v, "redis_up")));
    ASSERT(!json_object_get(v, "queue_length"));
    json_decref(v);
}

TEST(metrics_text)
{
    metrics_request(API_EP_PREDICT, 200, 12.0);
    metrics_request(API_EP_PREDICT, 200, 3.0);
    metrics_request(API_EP_JOB, 404, 1.0);
    metrics_request(API_EP_OTHER, 999, 1.0); /* out of range: counted as 500 */
    metrics_sync_inference(7.5);
    metrics_backpressure();
    size_t len = 0;
    char *t = metrics_render(NULL, &len);
    ASSERT(t != NULL);
    ASSERT_EQ(len, strlen(t));
    ASSERT(strstr(t, "tandem_http_requests_total{endpoint=\"predict\",code=\"200\"} 2\n"));
    ASSERT(strstr(t, "tandem_http_requests_total{endpoint=\"job\",code=\"404\"} 1\n"));
    ASSERT(strstr(t, "tandem_http_requests_total{endpoint=\"other\",code=\"500\"} 1\n"));
    ASSERT(strstr(t, "tandem_http_errors_total 2\n"));
    ASSERT(strstr(t, "tandem_http_error_ratio 0.5\n"));
    ASSERT(strstr(t, "tandem_sync_response_seconds_bucket{le=\"0.005\"} 1\n"));
    ASSERT(strstr(t, "tandem_sync_response_seconds_bucket{le=\"+Inf\"} 2\n"));
    ASSERT(strstr(t, "tandem_sync_response_seconds_sum 0.015000\n"));
    ASSERT(strstr(t, "tandem_sync_inference_seconds_count 1\n"));
    ASSERT(strstr(t, "tandem_backpressure_total 1\n"));
    ASSERT(strstr(t, "tandem_redis_up 0\n"));
    ASSERT(!strstr(t, "tandem_queue_length"));
    free(t);
    queue_stats st;
    memset(&st, 0, sizeof st);
    st.queue_length = 7;
    st.workers_alive = 2;
    st.processed = 40;
    st.inference_count = 40;
    st.inference_ms_sum = 2000;
    for (int i = 0; i < QUEUE_HIST_BUCKETS; i++)
        st.hist[i] = 40;
    t = metrics_render(&st, &len);
    ASSERT(strstr(t, "tandem_redis_up 1\n"));
    ASSERT(strstr(t, "tandem_queue_length 7\n"));
    ASSERT(strstr(t, "tandem_workers_alive 2\n"));
    ASSERT(strstr(t, "tandem_jobs_processed_total 40\n"));
    ASSERT(strstr(t, "tandem_async_inference_seconds_sum 2.000000\n"));
    ASSERT(strstr(t, "tandem_async_inference_seconds_bucket{le=\"+Inf\"} 40\n"));
    free(t);
}

TEST(job_answer_agreement_and_webhook)
{
    queue_job job;
    memset(&job, 0, sizeof job);
    snprintf(job.status, sizeof job.status, "running");
    job.sync_label = (char *)"tabby";
    json_t *v = load(api_job_json("abc123", &job));
    json_t *j = json_object_get(v, "abc123");
    ASSERT_STR_EQ(json_string_value(json_object_get(j, "fast_prediction")), "tabby");
    ASSERT(!json_object_get(j, "agrees_with_fast")); /* not before it is done */
    ASSERT(!json_object_get(j, "webhook"));
    json_decref(v);
    snprintf(job.status, sizeof job.status, "done");
    job.label = (char *)"tabby";
    job.agreement = QUEUE_AGREE_YES;
    job.callback_url = (char *)"http://127.0.0.1:9/hook?token=secret";
    snprintf(job.webhook, sizeof job.webhook, "pending");
    job.webhook_attempts = 2;
    job.webhook_error = (char *)"HTTP 500";
    v = load(api_job_json("abc123", &job));
    j = json_object_get(v, "abc123");
    ASSERT(json_is_true(json_object_get(j, "agrees_with_fast")));
    json_t *h = json_object_get(j, "webhook");
    ASSERT_STR_EQ(json_string_value(json_object_get(h, "status")), "pending");
    ASSERT_EQ(json_integer_value(json_object_get(h, "attempts")), 2);
    ASSERT_STR_EQ(json_string_value(json_object_get(h, "error")), "HTTP 500");
    char *text = json_dumps(v, 0);
    ASSERT(!strstr(text, "token=secret")); /* the destination is not shown */
    free(text);
    json_decref(v);
    job.label = (char *)"tiger cat";
    job.agreement = QUEUE_AGREE_NO;
    v = load(api_job_json("abc123", &job));
    j = json_object_get(v, "abc123");
    ASSERT(json_is_false(json_object_get(j, "agrees_with_fast")));
    json_decref(v);
}

TEST(predict_body_callback_url)
{
    api_image img = {0};
    char err[512];
    char *b64 = codec_b64_encode(jpeg, sizeof jpeg, NULL);
    char body[256];
    snprintf(body, sizeof body, "{\"image_data\":\"%s\",\"callback_url\":\"http://h/x\"}", b64);
    ASSERT_EQ(parse("application/json", body, strlen(body), &img, err), API_OK);
    ASSERT_STR_EQ(img.callback_url, "http://h/x");
    api_image_clear(&img);
    ASSERT(img.callback_url == NULL);
    snprintf(body, sizeof body, "{\"image_data\":\"%s\",\"callback_url\":null}", b64);
    ASSERT_EQ(parse("application/json", body, strlen(body), &img, err), API_OK);
    ASSERT(img.callback_url == NULL);
    api_image_clear(&img);
    snprintf(body, sizeof body, "{\"image_data\":\"%s\",\"callback_url\":42}", b64);
    expect_refused(failed_, "application/json", body, strlen(body), API_ERR_BAD_REQUEST,
                   "callback_url");
    free(b64);
}

TEST(metrics_agreement_and_webhooks)
{
    queue_stats st;
    memset(&st, 0, sizeof st);
    st.agree = 5;
    st.upgrade = 3;
    st.webhook_delivered = 7;
    st.webhook_retried = 2;
    st.webhook_failed = 1;
    size_t len = 0;
    char *t = metrics_render(&st, &len);
    ASSERT(t != NULL);
    ASSERT(strstr(t, "tandem_fast_slow_agreement_total{result=\"agree\"} 5\n"));
    ASSERT(strstr(t, "tandem_fast_slow_agreement_total{result=\"upgrade\"} 3\n"));
    ASSERT(strstr(t, "tandem_webhook_attempts_total{result=\"delivered\"} 7\n"));
    ASSERT(strstr(t, "tandem_webhook_attempts_total{result=\"retried\"} 2\n"));
    ASSERT(strstr(t, "tandem_webhook_attempts_total{result=\"failed\"} 1\n"));
    free(t);
}

TEST_MAIN()
