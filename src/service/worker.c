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
 * The heartbeat is a thread of its own with its own Redis connection,
 * refreshing worker:{id} every third of HEARTBEAT_TTL whatever the main
 * thread is doing, so a slow decode or inference is never mistaken for a
 * dead worker (which would requeue the job and run it twice at once). The
 * supervisor sees a dead worker process directly; the heartbeat's expiry is
 * only for a whole host that vanished.
 *
 * Redis going away is not fatal: calls fail fast (queue_conn.c backs off), the
 * loop waits and retries, and work resumes by itself when Redis is back. A
 * command whose answer was lost may still have run (a BLMOVE that moved a
 * job into our processing list, a start that marked it running), so after
 * any Redis error, whenever the connection was made anew, and every third
 * of HEARTBEAT_TTL anyway, the worker puts back what its own processing list
 * holds between jobs (the attempt stays counted, so a job that keeps
 * failing that way still ends after MAX_ATTEMPTS): no job waits on anything
 * but a dead worker's heartbeat.
 *
 * A job is three round trips to Redis: the take (BLMOVE), the start (status
 * running, attempt counted, and the image returned in the same script) and
 * the completion (queue_job_done, or a failure). In between, compute() turns
 * the image's bytes into a result and touches no Redis.
 *
 * TANDEM_TEST_HOOK (config.c) lets the fault suites make a job kill its
 * worker or stall it; it does nothing unless set.
 */
#include "worker.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "codec.h"
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
    int redis_down;
    /* taking back our own processing list (see the top of the file) */
    int recover;            /* a Redis error happened since the last time */
    unsigned long connects; /* queue_connects() at the last time */
    double next_recover;    /* mono_s() of the next periodic time */
    /* the heartbeat thread */
    queue *beat_q;
    pthread_t beat;
    int beat_running;
    int beat_stop; /* under beat_mu */
    pthread_mutex_t beat_mu;
    pthread_cond_t beat_cv;
    /* TANDEM_TEST_HOOK */
    enum { HOOK_NONE, HOOK_KILL, HOOK_SLEEP } hook;
    char hook_prefix[QUEUE_ID_MAX + 1];
    int hook_ms;
    double prep_ms; /* the last compute()'s base64 + image decode and preprocessing */
};

/* Sleeps up to ms, in short steps so that a stop request is seen quickly. */
static void nap(const struct worker *w, int ms)
{
    for (int slept = 0; slept < ms && !*w->stop; slept += 50)
        usleep(50 * 1000);
}

static void note_redis(struct worker *w, int rc)
{
    /* Out of memory (maxmemory, noeviction) stops work like an outage does. */
    int down = rc == QUEUE_ERR_IO || rc == QUEUE_ERR_OOM;
    if (down && !w->redis_down) {
        LOG(WARN, "%s, retrying: %s", queue_strerror(rc), queue_errstr(w->q));
        w->redis_down = 1;
    } else if (!down && w->redis_down) {
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

static void *beat_main(void *arg)
{
    struct worker *w = arg;
    char info[128];
    int down = 0;
    snprintf(info, sizeof info, "pid=%d model=%s", (int)getpid(), w->model_name);
    pthread_mutex_lock(&w->beat_mu);
    while (!w->beat_stop) {
        pthread_mutex_unlock(&w->beat_mu);
        int rc = queue_heartbeat(w->beat_q, w->id, info, w->cfg->heartbeat_ttl);
        if (rc && !down) LOG(WARN, "heartbeat failed, retrying: %s", queue_errstr(w->beat_q));
        down = rc != 0;
        /* After a failure, again soon: queue_conn.c's back-off paces the tries. */
        double every = down ? 0.2 : w->cfg->heartbeat_ttl / 3.0;
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        long long ns = until.tv_nsec + (long long)(every * 1e9);
        until.tv_sec += (time_t)(ns / 1000000000LL);
        until.tv_nsec = (long)(ns % 1000000000LL);
        pthread_mutex_lock(&w->beat_mu);
        while (!w->beat_stop && pthread_cond_timedwait(&w->beat_cv, &w->beat_mu, &until) == 0)
            ;
    }
    pthread_mutex_unlock(&w->beat_mu);
    return NULL;
}

static int beat_start(struct worker *w, const queue_options *qo)
{
    if (queue_open(qo, &w->beat_q)) return -1;
    pthread_mutex_init(&w->beat_mu, NULL);
    pthread_cond_init(&w->beat_cv, NULL);
    if (pthread_create(&w->beat, NULL, beat_main, w)) return -1;
    w->beat_running = 1;
    return 0;
}

static void beat_stop(struct worker *w)
{
    if (w->beat_running) {
        pthread_mutex_lock(&w->beat_mu);
        w->beat_stop = 1;
        pthread_cond_signal(&w->beat_cv);
        pthread_mutex_unlock(&w->beat_mu);
        pthread_join(w->beat, NULL);
        pthread_cond_destroy(&w->beat_cv);
        pthread_mutex_destroy(&w->beat_mu);
        w->beat_running = 0;
    }
    queue_close(w->beat_q);
    w->beat_q = NULL;
}

/* Puts back what our processing list holds, between jobs, when it may hold
 * something we do not know of (see the top of the file). */
static void recover_own(struct worker *w)
{
    double now = mono_s();
    if (!w->recover && queue_connects(w->q) == w->connects && now < w->next_recover) return;
    long long moved = 0;
    int rc = queue_requeue_worker(w->q, w->id, 0, &moved);
    note_redis(w, rc);
    if (rc) {
        w->recover = 1;
        return;
    }
    if (moved)
        LOG(WARN, "put back %lld job(s) left in this worker's processing list by a redis error",
            moved);
    w->recover = 0;
    w->connects = queue_connects(w->q);
    w->next_recover = now + w->cfg->heartbeat_ttl / 3.0;
}

static void parse_hook(struct worker *w)
{
    const char *h = w->cfg->test_hook;
    const char *colon;
    size_t n;
    if (!strncmp(h, "kill:", 5)) {
        w->hook = HOOK_KILL;
        snprintf(w->hook_prefix, sizeof w->hook_prefix, "%s", h + 5);
    } else if (!strncmp(h, "sleep:", 6) && (colon = strchr(h + 6, ':')) &&
               (n = (size_t)(colon - (h + 6))) < sizeof w->hook_prefix) {
        w->hook = HOOK_SLEEP;
        memcpy(w->hook_prefix, h + 6, n);
        w->hook_prefix[n] = '\0';
        w->hook_ms = atoi(colon + 1);
    } else if (h[0]) {
        LOG(WARN, "TANDEM_TEST_HOOK=%s not understood: ignored", h);
        return;
    }
    if (w->hook != HOOK_NONE) LOG(WARN, "TANDEM_TEST_HOOK=%s is set: for tests only", h);
}

static int hook_hits(const struct worker *w, const char *id, int which)
{
    return (int)w->hook == which && !strncmp(id, w->hook_prefix, strlen(w->hook_prefix));
}

/* Decodes the base64 text (a data: URL prefix is accepted) into *bin. */
static int decode_b64(const char *b64, size_t len, unsigned char **bin, size_t *bin_len)
{
    char err[160];
    int rc = codec_data_url_payload(&b64, &len);
    return rc ? rc : codec_b64_decode(b64, len, bin, bin_len, err, sizeof err);
}

/* The compute step: the image's base64 text in, a result out (res points
 * into *top5 and the classifier, valid until the next call). No Redis here.
 * On failure, reason says why (for the job record). */
static int compute(struct worker *w, const char *b64, size_t len, queue_result *res, char **top5,
                   char *reason, size_t reason_len)
{
    unsigned char *bin = NULL;
    size_t bin_len = 0;
    char err[256];
    tdm_label_score top[TOPK];
    double t0 = mono_s();
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
    w->prep_ms = (mono_s() - t0) * 1000.0;
    t0 = mono_s();
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
    *top5 = codec_top_json(top, n);
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
    int final = 0, rc;
    char *top5 = NULL;
    char reason[384];
    queue_start st = {0};
    queue_result res = {0};
    double t0 = mono_s(), t1 = 0;
    LOG(INFO, "Processing job: %s", id);
    /* Redis before: the job marked running, its image in hand. */
    rc = queue_job_start(w->q, id, w->id, w->cfg->max_attempts, &st);
    if (rc == QUEUE_ERR_REPLY) {
        /* Redis refuses the job's keys (another producer's job:{id} of
         * another type): it would come back for ever, so it goes. */
        snprintf(reason, sizeof reason, "redis refused to start the job: %s", queue_errstr(w->q));
        rc = queue_job_refuse(w->q, w->id, id, reason);
        if (rc) goto redis_error;
        LOG(WARN, "job %s moved to queue:dead: %s", id, reason);
        goto out;
    }
    if (rc) goto redis_error;
    if (st.skip) {
        LOG(INFO, "job %s needs no work (it has a result or was given up)", id);
        goto out;
    }
    if (hook_hits(w, id, HOOK_KILL)) {
        LOG(WARN, "test hook: job %s kills its worker", id);
        raise(SIGKILL);
    }
    if (st.image_state == QUEUE_IMAGE_GONE) {
        LOG(WARN, "job %s: its image has expired", id);
        rc = queue_job_expired(w->q, id, w->id);
        if (rc) goto redis_error;
        goto out;
    }
    if (st.image_state == QUEUE_IMAGE_BAD) {
        snprintf(reason, sizeof reason, "image:{id} cannot be read: %s", queue_errstr(w->q));
        goto job_failed;
    }
    if (hook_hits(w, id, HOOK_SLEEP)) {
        LOG(WARN, "test hook: job %s stalls its worker for %d ms", id, w->hook_ms);
        struct timespec left = {w->hook_ms / 1000, (long)(w->hook_ms % 1000) * 1000000L};
        while (nanosleep(&left, &left) && errno == EINTR)
            ;
    }
    /* The compute step, then Redis after: the result, or the failure. */
    t1 = mono_s();
    if (compute(w, st.image, st.image_len, &res, &top5, reason, sizeof reason)) goto job_failed;
    double t2 = mono_s();
    rc = record_done(w, id, &res);
    if (rc) goto redis_error;
    LOG(INFO, "Async prediction: %s (job %s, %.1f ms)", res.label, id, res.inference_ms);
    /* Where an idle system's created -> stored time goes (the record's
     * created -> started is the take itself). */
    LOG(DEBUG,
        "job %s: start and image %.1f ms, decode and preprocess %.1f ms, inference %.1f ms, "
        "result stored %.1f ms",
        id, (t1 - t0) * 1e3, w->prep_ms, res.inference_ms, (mono_s() - t2) * 1e3);
    goto out;
job_failed:
    rc = queue_job_fail(w->q, id, w->id, reason, w->cfg->max_attempts, &final);
    if (rc) goto redis_error;
    LOG(WARN, "job %s failed (attempt %d of %d): %s%s", id, st.attempts, w->cfg->max_attempts,
        reason, final ? "; moved to queue:dead" : "; requeued");
    goto out;
redis_error:
    /* The id stays in our processing list: recover_own puts it back once
     * Redis answers again (or the supervisor, if we die first). */
    w->recover = 1;
    note_redis(w, rc);
    LOG(WARN, "job %s: %s (%s)", id, queue_strerror(rc), queue_errstr(w->q));
out:
    free(top5);
    queue_start_clear(&st);
}

int worker_run(const struct config *cfg, const char *id, int ready_fd, volatile sig_atomic_t *stop)
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
    parse_hook(&w);
    if (queue_open(&qo, &w.q) || beat_start(&w, &qo)) {
        LOG(ERROR, "cannot set up the redis client or the heartbeat thread");
        status = WORKER_EXIT_FAILED;
        goto out;
    }
    if (ready_fd >= 0) {
        /* Tells the supervisor that start-up is over (see supervisor.c). */
        if (write(ready_fd, "r", 1) != 1) LOG(WARN, "cannot tell the supervisor we are ready");
        close(ready_fd);
        ready_fd = -1;
    }
    LOG(INFO, "worker %s ready: model %s, redis %s:%d, queue %s, nice %d", id,
        cfg->async_model_path, cfg->redis_host, cfg->redis_port, cfg->queue_name,
        getpriority(PRIO_PROCESS, 0));
    double take_s = cfg->heartbeat_ttl / 3.0 < 1.0 ? cfg->heartbeat_ttl / 3.0 : 1.0;
    while (!*stop) {
        recover_own(&w);
        char job[QUEUE_ID_MAX + 1];
        int rc = queue_take(w.q, id, take_s, job, sizeof job);
        if (rc == QUEUE_ERR_EMPTY) {
            note_redis(&w, rc);
            continue;
        }
        if (rc == QUEUE_ERR_INVALID) {
            LOG(WARN, "%s", queue_errstr(w.q));
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
    /* Leaving: no more beats (a late one would outlive us), anything still
     * held goes back to the queue, then we go. */
    beat_stop(&w);
    long long moved = 0;
    if (!queue_requeue_worker(w.q, id, 1, &moved) && moved > 0)
        LOG(WARN, "requeued %lld job(s) this worker still held", moved);
    if (queue_worker_gone(w.q, id)) LOG(WARN, "could not remove heartbeat: %s", queue_errstr(w.q));
    LOG(INFO, "worker %s stopped", id);
out:
    beat_stop(&w);
    if (ready_fd >= 0) close(ready_fd);
    queue_close(w.q);
    unload_model(&w);
    return status;
}
