/*
 * proxy: the routes of `tandem proxy` and their handlers (proxy.h has the
 * threads and the other files of the proxy).
 *
 * proxy_on_request runs on libmicrohttpd's thread and must not block: it
 * routes (api_route), answers what needs neither a model nor Redis at once,
 * copies what the handlers need from the headers into a task and queues it
 * for an inference thread (POST /predict, GET /predict/test) or a Redis
 * thread (everything about jobs, /metrics, /stats). Every answer leaves
 * through reply(), which counts and logs it.
 *
 * Redis down: queue_conn.c fails fast (bounded timeouts, back-off reconnect), so
 * POST /predict still answers — 503 with the fast label, because the
 * promise of the API (a job id that exists) cannot be kept; the client gets
 * the label it can use now and knows to resubmit for the slow answer.
 * Nothing here keeps state another process needs: jobs, results and the
 * workers' metrics live in Redis.
 */
#include "proxy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "clock.h"
#include "codec.h"
#include "embed.h"
#include "log.h"
#include "metrics.h"
#include "web.h"

/* The sample picture of GET /predict/test (data/sample.jpg, a landscape drawn
 * for this project), built into the binary so the endpoint works wherever the
 * binary is. */
EMBED(tandem_sample_jpg, "data/sample.jpg");

#define TOPK 5
#define RETRY_AFTER_S "5"

/* ---- answers --------------------------------------------------------------- */

/* Every answer leaves through here: counted, logged at debug, JSON always. */
static void reply(http_request *r, api_endpoint ep, int code, char *json, const char *hdr,
                  const char *val)
{
    static const char oom[] = "{\"error\":\"out of memory\"}";
    if (!json) {
        code = 500;
        json = strdup(oom);
    }
    double ms = http_age_ms(r);
    metrics_request(ep, code, ms);
    LOG(DEBUG, "%s %s -> %d in %.2f ms", http_method(r), http_path(r), code, ms);
    http_respond(r, code, "application/json", json, json ? strlen(json) : 0, hdr, val);
}

static void reply_error(http_request *r, api_endpoint ep, int code, const char *msg)
{
    reply(r, ep, code, api_error_json(msg), NULL, NULL);
}

/* ---- POST /predict, GET /predict/test -------------------------------------- */

static void do_predict(struct proxy_thread *w, struct task *t)
{
    struct proxy *p = w->p;
    http_request *r = t->req;
    char err[512] = "";
    api_image img = {0};
    char *b64 = NULL, *top_json = NULL;
    tdm_label_score top[TOPK];
    if (t->ep == API_EP_PREDICT_TEST) {
        img.data = tandem_sample_jpg;
        img.len = (size_t)(tandem_sample_jpg_end - tandem_sample_jpg);
    } else {
        size_t len;
        const void *body = http_body(r, &len);
        int rc = api_parse_predict(t->content_type, body, len, &img, err, sizeof err);
        if (rc) {
            reply_error(r, t->ep, api_http_status(rc), err);
            goto out;
        }
    }
    const char *callback = img.callback_url;
    if (t->has_callback && callback) {
        reply_error(r, t->ep, 400, "callback_url given both in the body and in the query");
        goto out;
    }
    if (t->has_callback) callback = t->callback_url;
    if (callback && webhook_check(p->hooks, callback, err, sizeof err)) {
        char msg[600];
        snprintf(msg, sizeof msg, "callback_url refused: %s", err);
        reply_error(r, t->ep, 400, msg);
        goto out;
    }
    double t0 = mono_ms();
    int rc = tdm_classifier_set_image(w->clf, img.data, img.len, err, sizeof err);
    if (rc) {
        int code = rc == TDM_ERR_LIMIT ? 413 : rc == TDM_ERR_IMAGE ? 400 : 500;
        char msg[600];
        snprintf(msg, sizeof msg, "cannot use the image: %s", err);
        reply_error(r, t->ep, code, msg);
        goto out;
    }
    /* The image (its biggest part by far) travels to Redis from the stager's
     * thread while the model computes; the job is made of it once the sync
     * fields are known. A JSON body's base64 is stored as the client sent it
     * when it is the very text encoding would give (api_image.b64); a raw
     * body is encoded there. */
    double decode_ms = mono_ms_since(t0);
    queue_new_job nj = {.image_b64 = img.b64,
                        .image_b64_len = img.b64_len,
                        .callback_url = callback,
                        .id_len = p->cfg.job_id_length,
                        .max_backlog = p->cfg.max_queue};
    queue_staged staged;
    stager_begin(w->stager, w->q, &nj, img.data, img.len, &staged);
    double run_start = mono_ms();
    int ntop = tdm_classifier_run(w->clf, TOPK, top, err, sizeof err);
    double run_end = mono_ms();
    b64 = stager_wait(w->stager);
    double send_ms = mono_ms_since(run_end);
    if (!nj.image_b64) {
        reply_error(r, t->ep, 500, "out of memory");
        goto out;
    }
    if (ntop < 0) {
        queue_create_abandon(w->q, &staged);
        LOG(ERROR, "inference failed: %s", err);
        reply_error(r, t->ep, 500, "inference failed (see the proxy's log)");
        goto out;
    }
    double infer_ms = decode_ms + (run_end - run_start);
    metrics_sync_inference(infer_ms);
    const char *label = ntop > 0 && top[0].label ? top[0].label : "";
    top_json = codec_top_json(top, ntop);
    /* The raw body is no longer needed past this point, but it lives in the
     * request until the answer: nothing to free early. */
    api_prediction pred = {.label = label,
                           .top = top,
                           .ntop = ntop,
                           .model = p->model_name,
                           .scores = tdm_scores_name(p->info.scores),
                           .inference_ms = infer_ms};
    if (!top_json) {
        queue_create_abandon(w->q, &staged);
        reply_error(r, t->ep, 500, "out of memory");
        goto out;
    }
    nj.sync_label = label;
    nj.sync_model = p->model_name;
    nj.sync_top5 = top_json;
    char id[QUEUE_ID_MAX + 1];
    double t3 = mono_ms();
    rc = queue_create_finish(w->q, &nj, &staged, id, sizeof id);
    LOG(DEBUG,
        "predict: %.2f ms since headers, %.2f ms inference, %.2f ms waiting for the image's "
        "send after it, %.2f ms registering the job",
        http_age_ms(r), infer_ms, send_ms, mono_ms_since(t3));
    if (rc == 0) {
        LOG(INFO, "POST /predict - job_id: %s", id);
        LOG(INFO, "Sync prediction: %s", label);
        pred.job_id = id;
        pred.status = "queued";
        char *json = api_prediction_json(&pred);
        if (t->prefer_wait_s > 0 && json &&
            !push_hold(p->push, w->q, r, id, json, t->prefer_wait_s))
            goto out;
        reply(r, t->ep, 200, json, NULL, NULL);
    } else if (rc == QUEUE_ERR_FULL) {
        metrics_backpressure();
        LOG(WARN, "backlog at MAX_QUEUE=%lld: job not queued; Sync prediction: %s",
            p->cfg.max_queue, label);
        snprintf(err, sizeof err,
                 "the job queue is full (%lld waiting): no async job was created; retry later",
                 p->cfg.max_queue);
        pred.reason = err;
        reply(r, t->ep, 200, api_prediction_json(&pred), "Retry-After", RETRY_AFTER_S);
    } else {
        metrics_redis_error();
        LOG(WARN, "job not queued (%s: %s); Sync prediction: %s", queue_strerror(rc),
            queue_errstr(w->q), label);
        snprintf(err, sizeof err,
                 "the job queue is unavailable (%s): no async job was created; the sync "
                 "result is included, retry later for the async one",
                 queue_strerror(rc));
        pred.error = err;
        reply(r, t->ep, 503, api_prediction_json(&pred), "Retry-After", RETRY_AFTER_S);
    }
out:
    free(top_json);
    free(b64);
    api_image_clear(&img);
}

void *proxy_infer_main(void *arg)
{
    struct proxy_thread *w = arg;
    struct task *t;
    while ((t = taskq_pop(&w->p->infer_q))) {
        /* Past the drain deadline what is still queued is refused, not computed. */
        if (atomic_load(&w->p->stopping) == 2)
            reply(t->req, t->ep, 503, api_error_json("the server is shutting down, retry later"),
                  "Retry-After", RETRY_AFTER_S);
        else
            do_predict(w, t);
        free(t);
    }
    return NULL;
}

/* ---- GET /job/{id}, GET /metrics --------------------------------------------- */

/* Reads the job and answers, unless it must wait longer: returns 1 then.
 * A held request rides out a Redis error (its connection reconnects with
 * back-off) until its time is up. */
int proxy_job_answer(void *ud, queue *q, struct task *t, int may_wait)
{
    queue_job job;
    int rc = queue_get_job(q, t->job_id, &job);
    if (rc && rc != QUEUE_ERR_NOTFOUND && may_wait && t->held) return 1;
    if (rc == QUEUE_ERR_NOTFOUND) {
        char msg[128];
        snprintf(msg, sizeof msg, "job %s not found (unknown id, or expired)", t->job_id);
        reply_error(t->req, API_EP_JOB, 404, msg);
        return 0;
    }
    if (rc) {
        metrics_redis_error();
        char msg[256];
        snprintf(msg, sizeof msg, "the job store is unavailable (%s), retry later",
                 queue_strerror(rc));
        reply(t->req, API_EP_JOB, 503, api_error_json(msg), "Retry-After", RETRY_AFTER_S);
        return 0;
    }
    int wait_more = may_wait && !queue_status_final(job.status);
    if (!wait_more) reply(t->req, API_EP_JOB, 200, api_job_json(t->job_id, &job), NULL, NULL);
    queue_job_clear(&job);
    return wait_more;
}

static void do_metrics(struct proxy_thread *w, struct task *t)
{
    queue_stats st;
    int rc = queue_get_stats(w->q, &st);
    if (rc) metrics_redis_error();
    size_t len = 0;
    char *text = metrics_render(rc ? NULL : &st, &len);
    if (!text) {
        reply_error(t->req, API_EP_METRICS, 500, "out of memory");
        return;
    }
    metrics_request(API_EP_METRICS, 200, http_age_ms(t->req));
    http_respond(t->req, 200, "text/plain; version=0.0.4; charset=utf-8", text, len, NULL, NULL);
}

static void do_stats(struct proxy_thread *w, struct task *t)
{
    queue_stats st;
    int rc = queue_get_stats(w->q, &st);
    if (rc) metrics_redis_error();
    char *json =
        api_stats_json(rc ? NULL : &st, push_streams_open(w->p->push), w->p->cfg.max_body_bytes);
    reply(t->req, API_EP_STATS, 200, json, "Cache-Control", "no-store");
}

void *proxy_redis_main(void *arg)
{
    struct proxy_thread *w = arg;
    struct proxy *p = w->p;
    struct task *t;
    while ((t = taskq_pop(&p->redis_q))) {
        if (t->ep == API_EP_METRICS) {
            do_metrics(w, t);
        } else if (t->ep == API_EP_STATS) {
            do_stats(w, t);
        } else if (t->ep == API_EP_EVENTS) {
            push_events(p->push, w->q, t->req, t->job_id, t->last_event_id);
        } else if (t->wait_s > 0 && !atomic_load(&p->stopping) &&
                   proxy_waiter_take_slot(&p->waiter)) {
            if (proxy_job_answer(p, w->q, t, 1)) {
                proxy_waiter_hand(&p->waiter, w->q, t);
                continue;
            }
            proxy_waiter_release_slot(&p->waiter);
        } else {
            proxy_job_answer(p, w->q, t, 0);
        }
        free(t);
    }
    return NULL;
}

/* ---- the request callback (libmicrohttpd's thread) -------------------------- */

/* GET / and the sample images: built in, answered at once. */
static void serve_file(http_request *r)
{
    web_file f;
    if (web_find(http_path(r), &f)) {
        char msg[256];
        snprintf(msg, sizeof msg, "no such file: %.200s", http_path(r));
        reply_error(r, API_EP_PAGE, 404, msg);
        return;
    }
    char *copy = malloc(f.len);
    if (!copy) {
        reply_error(r, API_EP_PAGE, 503, "server out of memory, retry later");
        return;
    }
    memcpy(copy, f.data, f.len);
    metrics_request(API_EP_PAGE, 200, http_age_ms(r));
    http_respond(r, 200, f.content_type, copy, f.len, "Cache-Control", f.cache_control);
}

void proxy_on_request(void *ud, http_request *r)
{
    struct proxy *p = ud;
    const char *msg = NULL, *job_id = NULL, *allow = NULL;
    char err[256];
    api_endpoint ep = API_EP_OTHER;
    int rc = api_route(http_method(r), http_path(r), &ep, &job_id, &allow, err, sizeof err);
    int refused = http_refused(r, &msg);
    if (refused) {
        char text[160];
        if (refused == 413)
            snprintf(text, sizeof text, "%s: the limit is %lld bytes (MAX_BODY_BYTES)", msg,
                     p->cfg.max_body_bytes);
        else
            snprintf(text, sizeof text, "%s", msg);
        reply(r, ep, refused, api_error_json(text), refused == 503 ? "Retry-After" : NULL,
              RETRY_AFTER_S);
        return;
    }
    if (rc) {
        reply(r, ep, api_http_status(rc), api_error_json(err), allow ? "Allow" : NULL, allow);
        return;
    }
    if (ep == API_EP_HEALTH) {
        reply(r, ep, 200, api_health_json(), NULL, NULL);
        return;
    }
    if (ep == API_EP_METADATA) {
        reply(r, ep, 200, api_metadata_json(), NULL, NULL);
        return;
    }
    if (ep == API_EP_PAGE) {
        serve_file(r);
        return;
    }
    struct task *t = calloc(1, sizeof *t);
    if (!t) {
        reply_error(r, ep, 503, "server out of memory, retry later");
        return;
    }
    t->req = r;
    t->ep = ep;
    if (ep == API_EP_EVENTS) {
        snprintf(t->job_id, sizeof t->job_id, "%.*s", (int)strcspn(job_id, "/"), job_id);
        t->last_event_id = api_last_event_id(http_header(r, "Last-Event-ID"));
    }
    if (ep == API_EP_PREDICT && p->cfg.prefer_wait_max_s > 0 &&
        api_prefer_wait(http_header(r, "Prefer"), &t->prefer_wait_s) &&
        t->prefer_wait_s > p->cfg.prefer_wait_max_s)
        t->prefer_wait_s = p->cfg.prefer_wait_max_s;
    if (ep == API_EP_JOB) {
        snprintf(t->job_id, sizeof t->job_id, "%s", job_id);
        const char *wait = http_query(r, "wait");
        if (wait && api_parse_wait(wait, &t->wait_s, err, sizeof err)) {
            free(t);
            reply_error(r, ep, 400, err);
            return;
        }
        t->deadline_s = mono_s() + t->wait_s;
    }
    const char *ct = http_header(r, "Content-Type");
    if (ct) snprintf(t->content_type, sizeof t->content_type, "%s", ct);
    const char *cb = http_query(r, "callback_url");
    if (cb && strlen(cb) >= sizeof t->callback_url) {
        free(t);
        reply_error(r, ep, 400, "callback_url is longer than 2048 characters");
        return;
    }
    if (cb) {
        t->has_callback = 1;
        snprintf(t->callback_url, sizeof t->callback_url, "%s", cb);
    }
    int is_infer = ep == API_EP_PREDICT || ep == API_EP_PREDICT_TEST;
    if (taskq_push(is_infer ? &p->infer_q : &p->redis_q, t)) {
        free(t);
        reply(r, ep, 503, api_error_json("server busy: too many requests waiting, retry later"),
              "Retry-After", RETRY_AFTER_S);
    }
}
