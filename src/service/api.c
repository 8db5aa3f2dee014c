/*
 * api: routing, body parsing and JSON answers for the proxy. Everything here
 * is a pure function of its arguments so that it can be unit-tested and
 * fuzzed without a server, a model or Redis. Base64 and the top-k JSON are
 * codec's (codec.c), shared with the worker.
 */
#include "api.h"
#include "codec.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

int api_http_status(int status)
{
    switch (status) {
    case API_OK:
        return 200;
    case API_ERR_BAD_REQUEST:
        return 400;
    case API_ERR_TOO_LARGE:
        return 413;
    case API_ERR_NOT_FOUND:
        return 404;
    case API_ERR_METHOD:
        return 405;
    case API_ERR_MEDIA_TYPE:
        return 415;
    default:
        return 500;
    }
}

const char *api_endpoint_name(api_endpoint ep)
{
    static const char *const names[API_EP_COUNT] = {"health", "metadata", "predict", "predict_test",
                                                    "job",    "metrics",  "events",  "stats",
                                                    "page",   "other"};
    return (unsigned)ep < API_EP_COUNT ? names[ep] : "other";
}

/* ---- routing ---------------------------------------------------------- */

static int id_char_ok(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

int api_route(const char *method, const char *path, api_endpoint *ep, const char **job_id,
              const char **allow, char *err, size_t errlen)
{
    static const struct {
        const char *path, *method;
        api_endpoint ep;
    } routes[] = {
        {"/health", "GET", API_EP_HEALTH},
        {"/metadata", "GET", API_EP_METADATA},
        {"/predict", "POST", API_EP_PREDICT},
        {"/predict/test", "GET", API_EP_PREDICT_TEST},
        {"/metrics", "GET", API_EP_METRICS},
        {"/stats", "GET", API_EP_STATS},
        {"/", "GET", API_EP_PAGE},
    };
    /* HEAD is GET without a body: libmicrohttpd drops the body itself. */
    int is_get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
    *ep = API_EP_OTHER;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        if (strcmp(path, routes[i].path)) continue;
        *ep = routes[i].ep;
        if (!strcmp(method, routes[i].method) || (is_get && !strcmp(routes[i].method, "GET")))
            return API_OK;
        *allow = routes[i].method;
        snprintf(err, errlen, "method %.16s not allowed on %s (use %s)", method, routes[i].path,
                 routes[i].method);
        return API_ERR_METHOD;
    }
    if (!strncmp(path, "/samples/", 9)) {
        *ep = API_EP_PAGE;
        if (is_get) return API_OK;
        *allow = "GET";
        snprintf(err, errlen, "method %.16s not allowed on /samples/ (use GET)", method);
        return API_ERR_METHOD;
    }
    if (!strncmp(path, "/job/", 5)) {
        const char *id = path + 5;
        size_t n = strlen(id);
        *ep = API_EP_JOB;
        const char *slash = strchr(id, '/');
        if (slash && !strcmp(slash, "/events")) {
            *ep = API_EP_EVENTS;
            n = (size_t)(slash - id);
        }
        if (!is_get) {
            *allow = "GET";
            snprintf(err, errlen, "method %.16s not allowed on %s (use GET)", method,
                     *ep == API_EP_EVENTS ? "/job/{job_id}/events" : "/job/{job_id}");
            return API_ERR_METHOD;
        }
        size_t i = 0;
        while (i < n && id_char_ok(id[i]))
            i++;
        /* No job can have such an id, whatever its length: 404 as for any
         * unknown id (the seed's contract), without a Redis lookup. */
        if (i < n || n < QUEUE_ID_MIN || n > QUEUE_ID_MAX) {
            snprintf(err, errlen,
                     "job not found: no job has this id (job ids are %d to %d characters of "
                     "[a-z0-9])",
                     QUEUE_ID_MIN, QUEUE_ID_MAX);
            return API_ERR_NOT_FOUND;
        }
        *job_id = id;
        return API_OK;
    }
    snprintf(err, errlen, "no such endpoint: %.200s", path);
    return API_ERR_NOT_FOUND;
}

int api_parse_wait(const char *text, double *out, char *err, size_t errlen)
{
    char *end;
    double v = text && *text ? strtod(text, &end) : NAN;
    if (isnan(v) || *end || !(v > 0) || v > API_WAIT_MAX_S) {
        snprintf(err, errlen, "wait must be a number of seconds, more than 0 and at most %g",
                 API_WAIT_MAX_S);
        return API_ERR_BAD_REQUEST;
    }
    *out = v;
    return API_OK;
}

int api_prefer_wait(const char *prefer, double *seconds)
{
    /* preference *( "," preference ), each token [ "=" value ] *( ";" param ) */
    for (const char *p = prefer; p && *p;) {
        p += strspn(p, " \t,");
        size_t n = strcspn(p, ",");
        if (n >= 4 && !strncasecmp(p, "wait", 4)) {
            const char *v = p + 4;
            v += strspn(v, " \t");
            if (*v == '=') {
                v++;
                v += strspn(v, " \t\"");
                char *end;
                errno = 0;
                unsigned long long s = strtoull(v, &end, 10);
                const char *rest = end + strspn(end, " \t\"");
                if (end != v && isdigit((unsigned char)*v) && !errno &&
                    (!*rest || *rest == ',' || *rest == ';')) {
                    *seconds = s > 86400 ? 86400.0 : (double)s;
                    return 1;
                }
            }
        }
        p += n;
    }
    return 0;
}

int api_last_event_id(const char *text)
{
    if (!text || !isdigit((unsigned char)*text)) return 0;
    char *end;
    long v = strtol(text, &end, 10);
    return *end || v < 0 || v > 1000000 ? 0 : (int)v;
}

/* ---- POST /predict bodies ---------------------------------------------- */

void api_image_clear(api_image *img)
{
    free(img->owned);
    free(img->callback_url);
    free(img->b64_owned);
    memset(img, 0, sizeof *img);
}

static int is_image(const unsigned char *p, size_t n)
{
    static const unsigned char png[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (n >= 3 && p[0] == 0xff && p[1] == 0xd8 && p[2] == 0xff) return 1;
    return n >= 8 && !memcmp(p, png, 8);
}

/* "image/png; charset=x" -> compares the media type only, case-blind. */
static int media_is(const char *ct, const char *type)
{
    size_t n = strlen(type);
    if (strncasecmp(ct, type, n)) return 0;
    return ct[n] == 0 || ct[n] == ';' || ct[n] == ' ' || ct[n] == '\t';
}

enum body_kind { BODY_JSON, BODY_RAW, BODY_SNIFF, BODY_REFUSED };

static enum body_kind kind_of(const char *ct)
{
    if (!ct || !*ct) return BODY_SNIFF;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    if (media_is(ct, "application/json")) return BODY_JSON;
    if (media_is(ct, "image/jpeg") || media_is(ct, "image/png") ||
        media_is(ct, "application/octet-stream"))
        return BODY_RAW;
    /* curl -d and many scripts label JSON as a form or as text. */
    if (media_is(ct, "application/x-www-form-urlencoded") || media_is(ct, "text/plain"))
        return BODY_SNIFF;
    return BODY_REFUSED;
}

static int check_image(const unsigned char *p, size_t n, char *err, size_t errlen)
{
    if (n == 0) {
        snprintf(err, errlen, "the image is empty");
        return API_ERR_BAD_REQUEST;
    }
    if (!is_image(p, n)) {
        snprintf(err, errlen, "the image is neither a JPEG nor a PNG file");
        return API_ERR_BAD_REQUEST;
    }
    return API_OK;
}

/* ---- the JSON body's big string ----
 *
 * jansson spends ~10 ns a byte checking and copying a string; the base64 of
 * an image is nearly all of a body (220 kB for a 160 kB JPEG: ~2.5 ms). So
 * jansson parses a copy of the body in which that string is replaced by a
 * random nonce, and the string itself is decoded where it lies in the body.
 *
 * Why this is the same as parsing the body: the copy is A "N" B where the
 * body is A "R" B, R a run of base64 characters (no quote, backslash or
 * control character in it, so "R" is a complete JSON string whose value is
 * R), and N 32 hex digits from getrandom that the sender cannot know. The
 * copy is taken only when jansson accepts it and root["image_data"] is a
 * string equal to N. A string token whose value is N cannot be one the
 * sender wrote (they do not know N), so it is the token that covers our N;
 * a token that covers any of it covers all of it (no quote or backslash in
 * N) up to the quote after it, and has more than N in it unless it opens at
 * the quote before it: that token is exactly "N", and it is the value of
 * root's "image_data". A JSON lexer reads left to right, so the body gives
 * the same tokens with "R" in place of "N"; a string value for a string
 * value changes neither the structure nor the keys (duplicates included):
 * the body is valid JSON with the same root and image_data == R. Anything
 * else (no such run, a data URL, whitespace or \/ in the base64, the run
 * somewhere else) goes the plain way, so every error message stays the same. */

#define RUN_MIN 1024
#define NONCE_BYTES 16

static int b64_char(unsigned char c)
{
    static const unsigned char t[256] = {
        ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1, ['H'] = 1,
        ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1,
        ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1,
        ['Y'] = 1, ['Z'] = 1, ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1,
        ['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1,
        ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1,
        ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1, ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1,
        ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1, ['+'] = 1, ['/'] = 1,
        ['='] = 1};
    return t[c];
}

/* 1 when the quote at body[q] is escaped (an odd number of backslashes before it). */
static int escaped(const char *body, size_t q)
{
    size_t n = 0;
    while (n < q && body[q - 1 - n] == '\\')
        n++;
    return n & 1;
}

/* The first run of at least RUN_MIN base64 characters between two quotes,
 * the first of them not escaped: body[*start, *end). */
static int find_run(const char *body, size_t len, size_t *start, size_t *end)
{
    size_t i = 0;
    while (i < len) {
        if (!b64_char((unsigned char)body[i])) {
            i++;
            continue;
        }
        size_t j = i + 1;
        while (j < len && b64_char((unsigned char)body[j]))
            j++;
        if (j - i >= RUN_MIN && i > 0 && body[i - 1] == '"' && j < len && body[j] == '"' &&
            !escaped(body, i - 1)) {
            *start = i;
            *end = j;
            return 1;
        }
        i = j;
    }
    return 0;
}

/* The body parsed with its big base64 string set aside (see above): *root
 * and *run, *run_len (into body, the value of "image_data") when that way
 * is proven to give what json_loadb of the body gives; 0 (nothing set)
 * when the body must be parsed the plain way. */
static int load_set_aside(const char *body, size_t len, json_t **root, const char **run,
                          size_t *run_len)
{
    unsigned char raw[NONCE_BYTES];
    char nonce[2 * NONCE_BYTES + 1];
    size_t start, end;
    if (!find_run(body, len, &start, &end)) return 0;
    if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw) return 0;
    for (int i = 0; i < NONCE_BYTES; i++)
        snprintf(nonce + 2 * i, 3, "%02x", raw[i]);
    size_t n = len - (end - start) + 2 * NONCE_BYTES;
    char *copy = malloc(n);
    if (!copy) return 0;
    memcpy(copy, body, start);
    memcpy(copy + start, nonce, 2 * NONCE_BYTES);
    memcpy(copy + start + 2 * NONCE_BYTES, body + end, len - end);
    json_t *r = json_loadb(copy, n, JSON_REJECT_DUPLICATES, NULL);
    free(copy);
    json_t *v = json_is_object(r) ? json_object_get(r, "image_data") : NULL;
    if (!json_is_string(v) || json_string_length(v) != 2 * NONCE_BYTES ||
        memcmp(json_string_value(v), nonce, 2 * NONCE_BYTES)) {
        json_decref(r);
        return 0;
    }
    *root = r;
    *run = body + start;
    *run_len = end - start;
    return 1;
}

int api_parse_json_body(const char *body, size_t len, int set_aside, api_image *out, char *err,
                        size_t errlen)
{
    json_error_t jerr;
    json_t *root = NULL;
    const char *s = NULL;
    size_t slen = 0;
    set_aside = set_aside && load_set_aside(body, len, &root, &s, &slen);
    int rc = API_ERR_BAD_REQUEST, canonical = 0;
    unsigned char *bin = NULL;
    char *url = NULL, *b64_copy = NULL;
    size_t n = 0;
    if (!set_aside) root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        snprintf(err, errlen, "the body is not valid JSON: %s (line %d, column %d)", jerr.text,
                 jerr.line, jerr.column);
        goto out;
    }
    if (!json_is_object(root)) {
        snprintf(err, errlen, "the body must be a JSON object with an \"image_data\" field");
        goto out;
    }
    json_t *v = json_object_get(root, "image_data");
    if (!v) {
        snprintf(err, errlen, "missing field \"image_data\" (base64 of a JPEG or PNG file)");
        goto out;
    }
    if (!json_is_string(v)) {
        snprintf(err, errlen, "\"image_data\" must be a string of base64");
        goto out;
    }
    if (!set_aside) {
        s = json_string_value(v);
        slen = json_string_length(v);
    }
    while (slen && isspace((unsigned char)*s))
        s++, slen--;
    if (codec_data_url_payload(&s, &slen)) {
        snprintf(err, errlen, "\"image_data\" is a data URL without \";base64,\"");
        goto out;
    }
    char why[160];
    rc = codec_b64_decode_ex(s, slen, &bin, &n, &canonical, why, sizeof why);
    if (rc == CODEC_ERR_NOMEM) {
        rc = API_ERR_NOMEM;
        snprintf(err, errlen, "%s", why);
        goto out;
    }
    if (rc) {
        rc = API_ERR_BAD_REQUEST;
        snprintf(err, errlen, "image_data is %s", why);
        goto out;
    }
    rc = check_image(bin, n, err, errlen);
    if (rc) goto out;
    json_t *cb = json_object_get(root, "callback_url");
    if (cb && !json_is_null(cb)) {
        if (!json_is_string(cb)) {
            rc = API_ERR_BAD_REQUEST;
            snprintf(err, errlen, "\"callback_url\" must be a string (an http or https URL)");
            goto out;
        }
        if (!(url = strdup(json_string_value(cb)))) {
            rc = API_ERR_NOMEM;
            snprintf(err, errlen, "out of memory");
            goto out;
        }
    }
    /* The string jansson holds goes with root: a copy (a memcpy) is still
     * cheaper than encoding the image again. */
    if (canonical && !set_aside && !(s = b64_copy = strndup(s, slen))) {
        rc = API_ERR_NOMEM;
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    out->data = bin;
    out->len = n;
    out->owned = bin;
    out->callback_url = url;
    out->b64 = canonical ? s : NULL;
    out->b64_len = canonical ? slen : 0;
    out->b64_owned = b64_copy;
    bin = NULL;
    url = NULL;
out:
    free(url);
    free(bin);
    json_decref(root);
    return rc;
}

int api_parse_predict(const char *content_type, const void *body, size_t len, api_image *out,
                      char *err, size_t errlen)
{
    const unsigned char *p = body;
    enum body_kind kind = kind_of(content_type);
    if (kind == BODY_REFUSED) {
        snprintf(err, errlen,
                 "unsupported Content-Type %.64s: send application/json {\"image_data\": "
                 "\"<base64>\"} or the file as image/jpeg, image/png or "
                 "application/octet-stream",
                 content_type);
        return API_ERR_MEDIA_TYPE;
    }
    if (len == 0) {
        snprintf(err, errlen, "empty body: send {\"image_data\": \"<base64>\"} or an image file");
        return API_ERR_BAD_REQUEST;
    }
    if (kind == BODY_SNIFF) kind = is_image(p, len) ? BODY_RAW : BODY_JSON;
    if (kind == BODY_JSON) return api_parse_json_body(body, len, 1, out, err, errlen);
    int rc = check_image(p, len, err, errlen);
    if (rc) return rc;
    out->data = p;
    out->len = len;
    out->owned = NULL;
    return API_OK;
}

/* ---- answers ------------------------------------------------------------ */

/* Serialises and frees root; NULL if root is NULL or out of memory. */
static char *dump(json_t *root)
{
    if (!root) return NULL;
    char *s = json_dumps(root, JSON_COMPACT | JSON_REAL_PRECISION(9));
    json_decref(root);
    return s;
}

/* jansson refuses invalid UTF-8; a label or message from outside may have
 * it, and an answer must still leave. */
static json_t *str(const char *s)
{
    json_t *v = json_string(s ? s : "");
    return v ? v : json_string("(invalid UTF-8)");
}

char *api_error_json(const char *message)
{
    return dump(json_pack("{s:o}", "error", str(message)));
}

char *api_health_json(void)
{
    return dump(json_pack("{s:s}", "health", "ok"));
}

char *api_metadata_json(void)
{
    return dump(json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "data_type", "str", "data_structure",
                          "(1,1)", "data_sample", "base64 encoded image file", "prediction_type",
                          "str", "prediction_structure", "(1,1)", "prediction_sample",
                          "Persian cat"));
}

char *api_prediction_json(const api_prediction *p)
{
    json_t *root = json_object();
    if (!root) return NULL;
    if (p->error) json_object_set_new(root, "error", str(p->error));
    json_object_set_new(root, "job_id", p->job_id ? json_string(p->job_id) : json_null());
    json_object_set_new(root, "result_sync", str(p->label));
    json_object_set_new(root, "top5", codec_top_array(p->top, p->ntop));
    json_object_set_new(root, "model", str(p->model));
    if (p->scores) json_object_set_new(root, "scores", json_string(p->scores));
    json_object_set_new(root, "inference_ms", json_real(round(p->inference_ms * 1000) / 1000));
    if (p->status) json_object_set_new(root, "status", json_string(p->status));
    if (p->reason) json_object_set_new(root, "reason", str(p->reason));
    return dump(root);
}

/* A JSON text stored by someone else: embedded as a value when it parses. */
static void set_json_text(json_t *obj, const char *key, const char *text)
{
    if (!text) return;
    json_t *v = json_loads(text, JSON_DECODE_ANY, NULL);
    if (v) json_object_set_new(obj, key, v);
}

char *api_job_json(const char *id, const queue_job *job)
{
    json_t *j = json_object();
    json_t *root = json_object();
    if (!j || !root) {
        json_decref(j);
        json_decref(root);
        return NULL;
    }
    int done = !strcmp(job->status, "done");
    json_object_set_new(j, "prediction", str(done && job->label ? job->label : ""));
    json_object_set_new(j, "status", str(job->status));
    json_object_set_new(j, "attempts", json_integer(job->attempts));
    if (job->error && *job->error) json_object_set_new(j, "error", str(job->error));
    if (done) {
        set_json_text(j, "top5", job->top5);
        if (job->model) json_object_set_new(j, "model", str(job->model));
        json_object_set_new(j, "inference_ms", json_real(round(job->inference_ms * 1000) / 1000));
    }
    if (job->worker) json_object_set_new(j, "worker", str(job->worker));
    if (job->created_ms) json_object_set_new(j, "created_ms", json_integer(job->created_ms));
    if (job->started_ms) json_object_set_new(j, "started_ms", json_integer(job->started_ms));
    if (job->finished_ms) json_object_set_new(j, "finished_ms", json_integer(job->finished_ms));
    if (job->sync_label) json_object_set_new(j, "fast_prediction", str(job->sync_label));
    if (done && job->agreement != QUEUE_AGREE_UNKNOWN)
        json_object_set_new(j, "agrees_with_fast", json_boolean(job->agreement == QUEUE_AGREE_YES));
    /* The destination itself stays out: a URL may carry a token in its query. */
    if (job->webhook[0]) {
        json_t *h =
            json_pack("{s:s,s:i}", "status", job->webhook, "attempts", job->webhook_attempts);
        if (h && job->webhook_error) json_object_set_new(h, "error", str(job->webhook_error));
        if (h) json_object_set_new(j, "webhook", h);
    }
    if (job->sync_label) {
        json_t *s = json_object();
        json_object_set_new(s, "prediction", str(job->sync_label));
        if (job->sync_model) json_object_set_new(s, "model", str(job->sync_model));
        set_json_text(s, "top5", job->sync_top5);
        json_object_set_new(j, "sync", s);
    }
    json_object_set_new(root, id, j);
    return dump(root);
}

char *api_prediction_with_job_json(const char *fast_json, const char *id, const queue_job *job)
{
    json_t *root = fast_json ? json_loads(fast_json, 0, NULL) : NULL;
    char *job_text = api_job_json(id, job);
    json_t *wrapped = job_text ? json_loads(job_text, 0, NULL) : NULL;
    json_t *inner = wrapped ? json_object_get(wrapped, id) : NULL;
    free(job_text);
    if (!json_is_object(root) || !inner) {
        json_decref(root);
        json_decref(wrapped);
        return NULL;
    }
    json_object_set_new(root, "status", str(job->status));
    json_object_set(root, "async", inner);
    json_decref(wrapped);
    return dump(root);
}

char *api_stats_json(const queue_stats *st, long long event_streams, long long max_body_bytes)
{
    json_t *root = json_object();
    if (!root) return NULL;
    json_object_set_new(root, "redis_up", json_boolean(st != NULL));
    if (st) {
        json_object_set_new(root, "queue_length", json_integer(st->queue_length));
        json_object_set_new(root, "processing", json_integer(st->processing));
        json_object_set_new(root, "workers_alive", json_integer(st->workers_alive));
        json_object_set_new(root, "dead_letter_length", json_integer(st->dead_length));
        json_object_set_new(root, "processed", json_integer(st->processed));
        json_object_set_new(root, "failed", json_integer(st->failed));
        json_object_set_new(root, "expired", json_integer(st->expired));
    }
    json_object_set_new(root, "event_streams", json_integer(event_streams));
    json_object_set_new(root, "max_body_bytes", json_integer(max_body_bytes));
    return dump(root);
}
