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
 * the completion (queue_job_done, or a failure). In between, the classifier
 * turns the image's bytes into a result and touches no Redis.
 *
 * Batches (BATCH_MAX > 1): the take still blocks for one job only; then one
 * script (queue_take_more) moves up to BATCH_MAX - 1 more from a backlog
 * into the processing list and starts them all, so the recovery above
 * covers every job of a batch. Their images fill the classifier's slots and
 * run as one batch; each job then ends on its own (result, status record,
 * agreement, webhook, metrics, log line), with its share of the batch's
 * inference time as its inference_ms. A job whose worker died while running
 * it runs alone (queue.h). A model whose input fixes its batch runs one job
 * at a time, and the worker says so at start.
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
#define BATCH_CAP 32 /* BATCH_MAX's upper bound (config.c) */
#define RETRY_SLEEP_MS 200
#define DONE_RETRY_S 10

struct worker {
    const struct config *cfg;
    const char *id;
    volatile sig_atomic_t *stop;
    const char *model_name; /* file name part of the model path */
    tdm_classifier *clf;
    int batch; /* jobs one take may hold: BATCH_MAX, or 1 if the model fixes its batch */
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

/* The job stays in our processing list: recover_own puts it back once
 * Redis answers again (or the supervisor, if we die first). */
static void redis_error(struct worker *w, const char *id, int rc)
{
    w->recover = 1;
    note_redis(w, rc);
    LOG(WARN, "job %s: %s (%s)", id, queue_strerror(rc), queue_errstr(w->q));
}

static void fail_job(struct worker *w, const char *id, const queue_start *st, const char *reason)
{
    int final = 0;
    int rc = queue_job_fail(w->q, id, w->id, reason, w->cfg->max_attempts, &final);
    if (rc) {
        redis_error(w, id, rc);
        return;
    }
    LOG(WARN, "job %s failed (attempt %d of %d): %s%s", id, st->attempts, w->cfg->max_attempts,
        reason, final ? "; moved to queue:dead" : "; requeued");
}

/* A started job up to its image in the classifier's slot: 1 when it is
 * there, 0 when the job ended here (no work, expired, failed) or stays for
 * recovery after a Redis error. */
static int prepare(struct worker *w, const char *id, const queue_start *st, int slot)
{
    char reason[384], err[256];
    unsigned char *bin = NULL;
    size_t bin_len = 0;
    if (st->skip) {
        LOG(INFO, "job %s needs no work (it has a result or was given up)", id);
        return 0;
    }
    if (hook_hits(w, id, HOOK_KILL)) {
        LOG(WARN, "test hook: job %s kills its worker", id);
        raise(SIGKILL);
    }
    if (st->image_state == QUEUE_IMAGE_GONE) {
        LOG(WARN, "job %s: its image has expired", id);
        int rc = queue_job_expired(w->q, id, w->id);
        if (rc) redis_error(w, id, rc);
        return 0;
    }
    if (st->image_state == QUEUE_IMAGE_BAD) {
        snprintf(reason, sizeof reason, "image:{id} cannot be read: %s", queue_errstr(w->q));
        fail_job(w, id, st, reason);
        return 0;
    }
    if (hook_hits(w, id, HOOK_SLEEP)) {
        LOG(WARN, "test hook: job %s stalls its worker for %d ms", id, w->hook_ms);
        struct timespec left = {w->hook_ms / 1000, (long)(w->hook_ms % 1000) * 1000000L};
        while (nanosleep(&left, &left) && errno == EINTR)
            ;
    }
    if (decode_b64(st->image, st->image_len, &bin, &bin_len)) {
        fail_job(w, id, st, "image:{id} is not valid base64");
        return 0;
    }
    int rc = tdm_classifier_set_image_at(w->clf, slot, bin, bin_len, err, sizeof err);
    free(bin);
    if (rc) {
        snprintf(reason, sizeof reason, "bad image: %s", err);
        fail_job(w, id, st, reason);
        return 0;
    }
    return 1;
}

/* A job whose slot ran: its result stored, or its failure recorded. */
static void finish(struct worker *w, const char *id, const queue_start *st, int slot, double ms)
{
    char err[256];
    tdm_label_score top[TOPK];
    int n = tdm_classifier_topk_at(w->clf, slot, TOPK, top, err, sizeof err);
    if (n < 0) {
        char reason[384];
        snprintf(reason, sizeof reason, "inference failed: %s", err);
        fail_job(w, id, st, reason);
        return;
    }
    if (n < 1 || !top[0].label) {
        fail_job(w, id, st, "the model's output has no labelled class");
        return;
    }
    char *top5 = codec_top_json(top, n);
    queue_result res = {
        .label = top[0].label, .top5 = top5, .model = w->model_name, .inference_ms = ms};
    int rc = record_done(w, id, &res);
    if (rc)
        redis_error(w, id, rc);
    else
        LOG(INFO, "Async prediction: %s (job %s, %.1f ms)", res.label, id, ms);
    free(top5);
}

/* Started jobs ids[0..n), all in our processing list: their images go into
 * the classifier's slots, run as one batch, and each job ends on its own. */
static void run_jobs(struct worker *w, char (*ids)[QUEUE_ID_MAX + 1], queue_start *st, int n)
{
    int job_of[BATCH_CAP]; /* slot -> index of its job */
    int used = 0;
    double tp = mono_s();
    for (int i = 0; i < n; i++)
        if (prepare(w, ids[i], &st[i], used)) job_of[used++] = i;
    tp = (mono_s() - tp) * 1000.0;
    if (used) {
        char err[256];
        double t0 = mono_s();
        int rc = tdm_classifier_run_batch(w->clf, used, err, sizeof err);
        double ms = (mono_s() - t0) * 1000.0;
        if (used > 1) {
            char list[BATCH_CAP * (QUEUE_ID_MAX + 1) + 1];
            size_t o = 0;
            for (int s = 0; s < used; s++)
                o += (size_t)snprintf(list + o, sizeof list - o, "%s%s", s ? " " : "",
                                      ids[job_of[s]]);
            LOG(INFO, "batch of %d jobs (%s): %.1f ms, %.1f ms a job", used, list, ms, ms / used);
        }
        double tf = mono_s();
        for (int s = 0; s < used; s++) {
            int i = job_of[s];
            if (rc) {
                char reason[384];
                snprintf(reason, sizeof reason, "inference failed: %s", err);
                fail_job(w, ids[i], &st[i], reason);
            } else {
                finish(w, ids[i], &st[i], s, ms / used);
            }
        }
        /* Where an idle system's created -> stored time goes, with the
         * start's line of process() (the record's created -> started is
         * the take itself). */
        LOG(DEBUG, "job %s%s: decode and preprocess %.1f ms, inference %.1f ms, stored %.1f ms",
            ids[job_of[0]], used > 1 ? " and the rest of its batch" : "", tp, ms,
            (mono_s() - tf) * 1000.0);
    }
    for (int i = 0; i < n; i++)
        queue_start_clear(&st[i]);
}

/* One job the way it came: started on its own. */
static void process(struct worker *w, const char *id)
{
    char ids[1][QUEUE_ID_MAX + 1];
    queue_start st = {0};
    snprintf(ids[0], sizeof ids[0], "%s", id);
    LOG(INFO, "Processing job: %s", id);
    /* Redis before: the job marked running, its image in hand. */
    double t0 = mono_s();
    int rc = queue_job_start(w->q, id, w->id, w->cfg->max_attempts, &st);
    LOG(DEBUG, "job %s: started, image in hand, in %.1f ms", id, (mono_s() - t0) * 1000.0);
    if (rc == QUEUE_ERR_REPLY) {
        /* Redis refuses the job's keys (another producer's job:{id} of
         * another type): it would come back for ever, so it goes. */
        char reason[384];
        snprintf(reason, sizeof reason, "redis refused to start the job: %s", queue_errstr(w->q));
        rc = queue_job_refuse(w->q, w->id, id, reason);
        if (rc)
            redis_error(w, id, rc);
        else
            LOG(WARN, "job %s moved to queue:dead: %s", id, reason);
        queue_start_clear(&st);
        return;
    }
    if (rc) {
        redis_error(w, id, rc);
        queue_start_clear(&st);
        return;
    }
    run_jobs(w, ids, &st, 1);
}

/* The classifier's sessions for batches of up to BATCH_MAX jobs; one job at
 * a time when the model's input fixes its batch or the plan fails. */
static void plan_batches(struct worker *w)
{
    int max = w->cfg->batch_max < BATCH_CAP ? w->cfg->batch_max : BATCH_CAP, allowed = 1;
    char err[512] = "";
    w->batch = 1;
    if (max < 2) return;
    int rc = tdm_classifier_set_batch(w->clf, max, &allowed, err, sizeof err);
    if (rc)
        LOG(WARN, "BATCH_MAX=%d: cannot plan batches: %s (%s); jobs run one at a time", max, err,
            tdm_strerror(rc));
    else if (allowed < max)
        LOG(WARN, "BATCH_MAX=%d: %s, so jobs run one at a time", max, err);
    else
        LOG(INFO, "batches of up to %d jobs when a backlog waits", allowed);
    w->batch = rc ? 1 : allowed;
}

/* After the take of job first: more jobs from a backlog, up to w->batch,
 * run as one batch; or first alone. */
static void process_take(struct worker *w, const char *first)
{
    char ids[BATCH_CAP][QUEUE_ID_MAX + 1];
    queue_start st[BATCH_CAP];
    int n = 0;
    if (w->batch < 2) {
        process(w, first);
        return;
    }
    snprintf(ids[0], sizeof ids[0], "%s", first);
    int rc = queue_take_more(w->q, w->id, w->cfg->max_attempts, w->batch, ids, st, &n);
    if (rc == QUEUE_ERR_REPLY && n == 0) {
        /* The single path says why; anything the script moved goes back. */
        w->recover = 1;
        rc = 0;
    }
    if (rc) {
        /* What was taken and started stays in our processing list for recover_own. */
        redis_error(w, first, rc);
        for (int i = 0; i < n; i++)
            queue_start_clear(&st[i]);
        return;
    }
    if (n == 0) {
        process(w, first);
        return;
    }
    for (int i = 0; i < n; i++)
        LOG(INFO, "Processing job: %s", ids[i]);
    run_jobs(w, ids, st, n);
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
    plan_batches(&w);
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
        process_take(&w, job);
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
