/*
 * worker: take a job, classify its image with the async model, store the
 * result; repeat until told to stop.
 *
 * Reliability comes from the processing list (queue.h): queue_take moves the
 * id atomically from the queue into processing:{id}, and it leaves that list
 * only when the job is done, requeued after a failure, given up, or found
 * expired. A worker killed at any point leaves the id there, and the
 * supervisor (or, if the whole host vanished, any supervisor once the
 * heartbeat key has expired) moves it back onto the queue. Completion is
 * idempotent, so a job run twice that way still gets one result.
 *
 * The heartbeat is refreshed between blocking takes (each at most a third of
 * HEARTBEAT_TTL) and right before each inference, so HEARTBEAT_TTL only has
 * to exceed one inference of the slow model.
 *
 * Redis going away is not fatal: calls fail fast (queue.c backs off), the
 * loop waits and retries, and work resumes by itself when Redis is back.
 */
#include "worker.h"

#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "api.h"
#include "log.h"
#include "queue.h"
#include "tandem/classifier.h"

#define TOPK 5
#define RETRY_SLEEP_MS 200
#define DONE_RETRY_S 10

struct worker {
    const struct config *cfg;
    const char *id;
    volatile sig_atomic_t *stop;
    const char *model_name; /* file name part of the model path */
    tdm_classifier *clf;
    queue *q;
    double last_beat;
    int redis_down;
    int warned_slow;
};

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Sleeps up to ms, in short steps so that a stop request is seen quickly. */
static void nap(const struct worker *w, int ms)
{
    for (int slept = 0; slept < ms && !*w->stop; slept += 50)
        usleep(50 * 1000);
}

static void note_redis(struct worker *w, int rc)
{
    if (rc == QUEUE_ERR_IO && !w->redis_down) {
        LOG(WARN, "redis unavailable, retrying: %s", queue_errstr(w->q));
        w->redis_down = 1;
    } else if (rc != QUEUE_ERR_IO && w->redis_down) {
        LOG(INFO, "redis is back");
        w->redis_down = 0;
    }
}

static int load_model(struct worker *w)
{
    const struct config *cfg = w->cfg;
    char err[512];
    tdm_classifier_options opt;
    tdm_classifier_options_init(&opt);
    opt.engine.threads = cfg->engine_threads;
    opt.engine.precision = (tdm_precision)cfg->precision;
    opt.labels_path = cfg->labels_path;
    config_image_limits(cfg, &opt.limits);
    int rc = tdm_classifier_open(cfg->async_model_path, &opt, &w->clf, err, sizeof err);
    if (rc) {
        LOG(ERROR, "cannot load the async model %s: %s (%s)", cfg->async_model_path, err,
            tdm_strerror(rc));
        return rc;
    }
    tdm_classifier_info info;
    tdm_classifier_get_info(w->clf, &info);
    w->model_name = info.model_name;
    return 0;
}

static void unload_model(struct worker *w)
{
    tdm_classifier_close(w->clf);
}

static void heartbeat(struct worker *w, int force)
{
    double now = mono_s();
    double every = w->cfg->heartbeat_ttl / 3.0;
    if (!force && now - w->last_beat < every) return;
    char info[128];
    snprintf(info, sizeof info, "pid=%d model=%s", (int)getpid(), w->model_name);
    int rc = queue_heartbeat(w->q, w->id, info, w->cfg->heartbeat_ttl);
    note_redis(w, rc);
    if (!rc) w->last_beat = now;
}

/* The top-k as JSON text [{"label": .., "score": ..}, ..] (caller frees). */
static char *top_json(const tdm_label_score *top, int n)
{
    json_t *arr = json_array();
    for (int i = 0; arr && i < n; i++)
        json_array_append_new(arr, json_pack("{s:s,s:f}", "label", top[i].label ? top[i].label : "",
                                             "score", (double)top[i].score));
    char *s = arr ? json_dumps(arr, JSON_COMPACT) : NULL;
    json_decref(arr);
    return s;
}

/* Decodes the base64 text (a data: URL prefix is accepted) into *bin. */
static int decode_b64(const char *b64, size_t len, unsigned char **bin, size_t *bin_len)
{
    if (len > 5 && !memcmp(b64, "data:", 5)) {
        const char *comma = memchr(b64, ',', len);
        if (!comma) return -1;
        len -= (size_t)(comma + 1 - b64);
        b64 = comma + 1;
    }
    char err[160];
    return api_b64_decode(b64, len, bin, bin_len, err, sizeof err) == API_OK ? 0 : -1;
}

/* Classifies one image. On failure, reason says why (for the job record). */
static int classify(struct worker *w, const char *b64, size_t len, queue_result *res, char **top5,
                    char *reason, size_t reason_len)
{
    unsigned char *bin = NULL;
    size_t bin_len = 0;
    char err[256];
    tdm_label_score top[TOPK];
    int rc = decode_b64(b64, len, &bin, &bin_len);
    if (rc) {
        snprintf(reason, reason_len, "image:{id} is not valid base64");
        goto out;
    }
    rc = tdm_classifier_set_image(w->clf, bin, bin_len, err, sizeof err);
    if (rc) {
        snprintf(reason, reason_len, "bad image: %s", err);
        goto out;
    }
    heartbeat(w, 1);
    double t0 = mono_s();
    int n = tdm_classifier_run(w->clf, TOPK, top, err, sizeof err);
    double ms = (mono_s() - t0) * 1000.0;
    if (n < 0) {
        rc = n;
        snprintf(reason, reason_len, "inference failed: %s", err);
        goto out;
    }
    if (n < 1 || !top[0].label) {
        rc = TDM_ERR_INVALID;
        snprintf(reason, reason_len, "the model's output has no labelled class");
        goto out;
    }
    *top5 = top_json(top, n);
    res->label = top[0].label;
    res->top5 = *top5;
    res->model = w->model_name;
    res->inference_ms = ms;
out:
    free(bin);
    return rc;
}

/* Retries a completion while Redis is away: the result is worth keeping. */
static int record_done(struct worker *w, const char *id, const queue_result *res)
{
    double give_up = mono_s() + DONE_RETRY_S;
    for (;;) {
        int rc = queue_job_done(w->q, id, w->id, res);
        note_redis(w, rc);
        if (rc != QUEUE_ERR_IO || mono_s() > give_up) return rc;
        usleep(RETRY_SLEEP_MS * 1000);
    }
}

static void process(struct worker *w, const char *id)
{
    int skip = 0, attempts = 0, final = 0, rc;
    char *b64 = NULL, *top5 = NULL;
    size_t len = 0;
    char reason[384];
    queue_result res = {0};
    LOG(INFO, "Processing job: %s", id);
    rc = queue_job_start(w->q, id, w->id, w->cfg->max_attempts, &skip, &attempts);
    if (rc) goto redis_error;
    if (skip) {
        LOG(INFO, "job %s needs no work (it has a result or was given up)", id);
        goto out;
    }
    rc = queue_load_image(w->q, id, &b64, &len);
    if (rc == QUEUE_ERR_NOTFOUND) {
        LOG(WARN, "job %s: its image has expired", id);
        rc = queue_job_expired(w->q, id, w->id);
        if (rc) goto redis_error;
        goto out;
    }
    if (rc) goto redis_error;
    if (classify(w, b64, len, &res, &top5, reason, sizeof reason)) {
        rc = queue_job_fail(w->q, id, w->id, reason, w->cfg->max_attempts, &final);
        if (rc) goto redis_error;
        LOG(WARN, "job %s failed (attempt %d of %d): %s%s", id, attempts, w->cfg->max_attempts,
            reason, final ? "; moved to queue:dead" : "; requeued");
        goto out;
    }
    rc = record_done(w, id, &res);
    if (rc) goto redis_error;
    LOG(INFO, "Async prediction: %s (job %s, %.1f ms)", res.label, id, res.inference_ms);
    /* The heartbeat is refreshed only between inferences. */
    if (!w->warned_slow && res.inference_ms > w->cfg->heartbeat_ttl * 1000.0 / 2) {
        LOG(WARN,
            "inference took %.0f ms, over half of HEARTBEAT_TTL=%d s: raise it, or other "
            "supervisors may requeue jobs this worker is still running",
            res.inference_ms, w->cfg->heartbeat_ttl);
        w->warned_slow = 1;
    }
    goto out;
redis_error:
    /* The id stays in our processing list: it is requeued when we exit or,
     * if we cannot reach Redis then, once our heartbeat has expired. */
    note_redis(w, rc);
    LOG(WARN, "job %s: %s (%s)", id, queue_strerror(rc), queue_errstr(w->q));
out:
    free(top5);
    free(b64);
}

int worker_run(const struct config *cfg, const char *id, volatile sig_atomic_t *stop)
{
    struct worker w = {.cfg = cfg, .id = id, .stop = stop};
    int status = WORKER_EXIT_OK;
    if (sodium_init() < 0) {
        LOG(ERROR, "libsodium failed to initialise");
        return WORKER_EXIT_FAILED;
    }
    if (load_model(&w)) {
        status = WORKER_EXIT_MODEL;
        goto out;
    }
    queue_options qo;
    queue_options_from_config(cfg, &qo);
    if (queue_open(&qo, &w.q)) {
        LOG(ERROR, "cannot set up the redis client");
        status = WORKER_EXIT_FAILED;
        goto out;
    }
    LOG(INFO, "worker %s ready: model %s, redis %s:%d, queue %s", id, cfg->async_model_path,
        cfg->redis_host, cfg->redis_port, cfg->queue_name);
    double take_s = cfg->heartbeat_ttl / 3.0 < 1.0 ? cfg->heartbeat_ttl / 3.0 : 1.0;
    while (!*stop) {
        heartbeat(&w, 0);
        char job[QUEUE_ID_MAX + 1];
        int rc = queue_take(w.q, id, take_s, job, sizeof job);
        if (rc == QUEUE_ERR_EMPTY) {
            note_redis(&w, rc);
            continue;
        }
        if (rc == QUEUE_ERR_INVALID) {
            LOG(WARN, "skipped a queue entry: %s", queue_errstr(w.q));
            continue;
        }
        if (rc) {
            note_redis(&w, rc);
            nap(&w, RETRY_SLEEP_MS);
            continue;
        }
        note_redis(&w, rc);
        process(&w, job);
    }
    /* Leaving: anything still held goes back to the queue, then we go. */
    long long moved = 0;
    if (!queue_requeue_worker(w.q, id, 1, &moved) && moved > 0)
        LOG(WARN, "requeued %lld job(s) this worker still held", moved);
    if (queue_worker_gone(w.q, id)) LOG(WARN, "could not remove heartbeat: %s", queue_errstr(w.q));
    LOG(INFO, "worker %s stopped", id);
out:
    queue_close(w.q);
    unload_model(&w);
    return status;
}
