/*
 * api: the pure parts of the HTTP API — routing, request-body parsing, job-id
 * and query validation, and building every JSON answer. No I/O here: the
 * proxy (proxy.c) does the inference and Redis calls around these, and the
 * fuzzer (fuzz/fuzz_request.c) drives api_parse_predict() with arbitrary bytes.
 *
 * Functions that can fail return 0 or a negative api_status, write a human
 * message into err, and set their out-parameters only on success;
 * api_http_status() gives the HTTP code that goes with a status.
 */
#ifndef TANDEM_API_H
#define TANDEM_API_H

#include <stddef.h>

#include "errors.h"
#include "queue.h"
#include "tandem/image.h"

typedef enum {
    API_OK = 0,
    API_ERR_BAD_REQUEST = ERR_BASE_API - 1, /* 400 */
    API_ERR_TOO_LARGE = ERR_BASE_API - 2,   /* 413 */
    API_ERR_NOT_FOUND = ERR_BASE_API - 3,   /* 404 */
    API_ERR_METHOD = ERR_BASE_API - 4,      /* 405 */
    API_ERR_MEDIA_TYPE = ERR_BASE_API - 5,  /* 415: a Content-Type we do not take */
    API_ERR_NOMEM = ERR_BASE_API - 6        /* 500 */
} api_status;

int api_http_status(int status);

typedef enum {
    API_EP_HEALTH = 0,
    API_EP_METADATA,
    API_EP_PREDICT,
    API_EP_PREDICT_TEST,
    API_EP_JOB,
    API_EP_METRICS,
    API_EP_EVENTS, /* GET /job/{id}/events */
    API_EP_STATS,
    API_EP_PAGE,  /* GET / and GET /samples/{name} */
    API_EP_OTHER, /* unknown paths and refused requests */
    API_EP_COUNT
} api_endpoint;

const char *api_endpoint_name(api_endpoint ep);

/* Maps a request to its endpoint. For /job/{id} and /job/{id}/events,
 * *job_id points into path (the id ends at the next '/' or the end).
 * API_ERR_NOT_FOUND for an unknown path, API_ERR_METHOD (and *allow, the
 * method to put in an Allow header) for a known path with the wrong method,
 * and API_ERR_NOT_FOUND with *ep API_EP_JOB for a job id that is not
 * QUEUE_ID_MIN..QUEUE_ID_MAX characters of [a-z0-9] (no job has one, so it
 * needs no lookup). *ep is set on every outcome (API_EP_OTHER for an unknown
 * path). */
int api_route(const char *method, const char *path, api_endpoint *ep, const char **job_id,
              const char **allow, char *err, size_t errlen);

/* The ?wait= value: a number of seconds, 0 < S <= 30. */
#define API_WAIT_MAX_S 30.0
int api_parse_wait(const char *text, double *out, char *err, size_t errlen);

/* The wait preference of a Prefer header (RFC 7240: "wait=10", possibly among
 * others, "respond-async, wait=10"): 1 and *seconds when there is one, 0
 * when there is none or it is not a number (a preference that is not
 * understood is ignored, as the RFC asks). */
int api_prefer_wait(const char *prefer, double *seconds);

/* The Last-Event-ID of a Server-Sent Events reconnection: 0 when absent or
 * not a small non-negative integer. */
int api_last_event_id(const char *text);

/* An image file taken out of a request body. */
typedef struct api_image {
    const unsigned char *data;
    size_t len;
    unsigned char *owned; /* the decoded copy when the body was JSON, else NULL */
    char *callback_url;   /* a JSON body's "callback_url" (unchecked), else NULL */
    /* The base64 the body carried, when it is exactly codec_b64_encode's text
     * of data (what the proxy stores in Redis, so it need not encode it
     * again): into body, or into b64_owned; else NULL. */
    const char *b64;
    size_t b64_len;
    char *b64_owned;
} api_image;

void api_image_clear(api_image *img);

/* The body of POST /predict: JSON {"image_data": "<base64>"} (whitespace and
 * a "data:image/...;base64," prefix accepted), or the raw file for
 * Content-Type image/jpeg, image/png or application/octet-stream. Without a
 * Content-Type the body is recognised by its first byte. The image must
 * start like a JPEG or a PNG; whether it decodes is the engine's business.
 * For raw bodies out->data, and out->b64 for JSON ones, may point into body,
 * which must outlive out. */
int api_parse_predict(const char *content_type, const void *body, size_t len, api_image *out,
                      char *err, size_t errlen);

/* The JSON body alone, as api_parse_predict takes it. set_aside 1 lets
 * jansson parse the body with its big base64 string set aside (api.c says
 * why that gives the same answer); 0 has jansson read all of it: for the
 * tests and the fuzzer, which check that both give the same answer. */
int api_parse_json_body(const char *body, size_t len, int set_aside, api_image *out, char *err,
                        size_t errlen);

/* ---- answers (each returns a malloc'd NUL-terminated JSON text, or NULL
 * when out of memory) ---- */

char *api_error_json(const char *message);
char *api_health_json(void);
char *api_metadata_json(void);

typedef struct api_prediction {
    const char *job_id; /* NULL: "job_id": null (not queued) */
    const char *label;
    const tdm_label_score *top;
    int ntop;
    const char *model;
    const char *scores; /* how the scores became probabilities (tdm_scores_name), or NULL */
    double inference_ms;
    const char *status; /* "queued", or NULL */
    const char *reason; /* why no job was queued (backpressure), or NULL */
    const char *error;  /* set for a 503 that still carries the fast answer, or NULL */
} api_prediction;

char *api_prediction_json(const api_prediction *p);

/* {"<id>": {"prediction": label or "", "status", "attempts", "error" (when
 * there is one), "top5", "model", "inference_ms", "fast_prediction",
 * "agrees_with_fast" (once done), "webhook": {"status", "attempts", "error"}
 * (with a callback), "sync": {...}}} */
char *api_job_json(const char *id, const queue_job *job);

/* POST /predict with Prefer: wait: the fast answer (fast_json, as
 * api_prediction_json made it) with "status" set to the job's and the job
 * object (the value of api_job_json's single key) under "async". NULL when
 * fast_json does not parse or out of memory. */
char *api_prediction_with_job_json(const char *fast_json, const char *id, const queue_job *job);

/* GET /stats: {"redis_up", and when Redis could be read "queue_length",
 * "processing", "workers_alive", "dead_letter_length", "processed",
 * "failed", "expired"; "event_streams": streams open on this proxy;
 * "max_body_bytes": the largest upload it takes, so a page can say so
 * before sending}. */
char *api_stats_json(const queue_stats *stats, long long event_streams, long long max_body_bytes);

#endif
