/*
 * proxy: `tandem proxy`, the HTTP API of the service.
 *
 * Threads, and why:
 *   - libmicrohttpd's I/O thread (http.c) reads requests and writes answers,
 *     never blocking; it answers /health, /metadata and refusals itself;
 *   - SYNC_THREADS inference threads, each with its own engine session and
 *     Redis connection: POST /predict and GET /predict/test (decode, fast
 *     model, register the job) — a request waits only for a free session;
 *   - two Redis threads for GET /job/{id} and GET /metrics, so reading a job
 *     never queues behind inferences;
 *   - one waiter thread holding every GET /job/{id}?wait=S: it sleeps in
 *     Redis, one BLPOP on the done:{id} markers of all the jobs it holds
 *     (which workers set when a job becomes final) and on this proxy's own
 *     wake key (set when a request is handed over), so it answers the moment
 *     a job ends, and long waits cost no other thread and no polling.
 * Requests handed to a thread are suspended in http.c and resumed by the
 * answer.
 *
 * Redis down: queue.c fails fast (bounded timeouts, back-off reconnect), so
 * POST /predict still answers — 503 with the fast label, because the
 * promise of the API (a job id that exists) cannot be kept; the client gets
 * the label it can use now and knows to resubmit for the slow answer.
 * Nothing here keeps state another process needs: jobs, results and the
 * workers' metrics live in Redis.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "api.h"
#include "cli.h"
#include "clock.h"
#include "codec.h"
#include "config.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "push.h"
#include "queue.h"
#include "tandem/classifier.h"
#include "web.h"
#include "webhook.h"

/* The sample picture of GET /predict/test (data/sample.jpg, a landscape drawn
 * for this project), built into the binary so the endpoint works wherever the
 * binary is. */
__asm__(".pushsection .rodata\n"
        ".balign 16\n"
        ".globl tandem_sample_jpg\n"
        ".hidden tandem_sample_jpg\n"
        "tandem_sample_jpg:\n"
        ".incbin \"data/sample.jpg\"\n"
        ".globl tandem_sample_jpg_end\n"
        ".hidden tandem_sample_jpg_end\n"
        "tandem_sample_jpg_end:\n"
        ".popsection\n");
extern const unsigned char tandem_sample_jpg[], tandem_sample_jpg_end[];

#define TOPK 5
#define MAX_PENDING 1024 /* tasks waiting for a thread; past it 503 */
#define STREAM_MAX_S 600 /* an event stream ends after this; the EventSource reconnects */
#define WAIT_BLOCK_S 1.0 /* longest sleep of the waiter in Redis: how soon it sees a shutdown */
#define WAIT_RETRY_MS 50 /* pause of the waiter after a Redis error */
#define IO_THREADS 2
#define FDS_SPARE 64 /* descriptors besides connections: Redis, model files, logs, epoll */
#define RETRY_AFTER_S "5"

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    stop_requested = 1;
    log_raw(sig == SIGINT ? "proxy: SIGINT, stopping" : "proxy: SIGTERM, stopping");
}

struct task {
    struct task *next;
    http_request *req;
    api_endpoint ep;
    char content_type[128];
    char job_id[QUEUE_ID_MAX + 1];
    double wait_s;
    double deadline_s; /* mono_s() at which the wait ends */
    int held;             /* with the waiter thread */
    int has_callback;     /* ?callback_url= was given (the JSON field comes with the body) */
    char callback_url[WEBHOOK_URL_MAX + 1];
    double prefer_wait_s; /* POST /predict: Prefer: wait=N as applied, 0 without */
    int last_event_id;    /* GET /job/{id}/events: Last-Event-ID */
};

struct taskq {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct task *head, *tail;
    int len, stop;
};

struct proxy;

/* What one thread owns: a Redis connection and, for inference threads, a session. */
struct worker {
    struct proxy *p;
    pthread_t thread;
    int started;
    queue *q;
    tdm_classifier *clf; /* inference threads only */
};

struct proxy {
    struct config cfg;
    tdm_classifier *clf; /* the model as loaded; each inference thread shares it */
    tdm_classifier_info info;
    const char *model_name;
    queue_options qopt;
    http_server *http;
    struct taskq infer_q, io_q;
    struct worker *infer;
    int ninfer;
    struct worker io[IO_THREADS];
    struct worker waiter;
    pthread_mutex_t wait_mu;
    pthread_cond_t wait_cv;
    struct task *waiting; /* handed to the waiter thread */
    atomic_int nwaiting;
    char wake_key[128]; /* queue_wait_any's wake key: one per proxy process */
    push *push;         /* event streams and Prefer: wait, held by the waiter too */
    atomic_int stopping;
    webhook *hooks; /* callback_url checks and delivery threads (webhook.h) */
};

/* ---- task queues --------------------------------------------------------- */

static void taskq_init(struct taskq *q)
{
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
}

static int taskq_push(struct taskq *q, struct task *t)
{
    int rc = 0;
    pthread_mutex_lock(&q->mu);
    /* Stopped: its threads may be gone, and a task pushed now would never be answered. */
    if (q->len >= MAX_PENDING || q->stop) {
        rc = -1;
    } else {
        t->next = NULL;
        if (q->tail)
            q->tail->next = t;
        else
            q->head = t;
        q->tail = t;
        q->len++;
        pthread_cond_signal(&q->cv);
    }
    pthread_mutex_unlock(&q->mu);
    return rc;
}

/* Blocks for a task; NULL once the queue is stopped and empty. */
static struct task *taskq_pop(struct taskq *q)
{
    pthread_mutex_lock(&q->mu);
    while (!q->head && !q->stop)
        pthread_cond_wait(&q->cv, &q->mu);
    struct task *t = q->head;
    if (t) {
        q->head = t->next;
        if (!q->head) q->tail = NULL;
        q->len--;
    }
    pthread_mutex_unlock(&q->mu);
    return t;
}

static void taskq_stop(struct taskq *q)
{
    pthread_mutex_lock(&q->mu);
    q->stop = 1;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
}

static void taskq_destroy(struct taskq *q)
{
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->cv);
}

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

static void do_predict(struct worker *w, struct task *t)
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
    int ntop = tdm_classifier_run(w->clf, TOPK, top, err, sizeof err);
    if (ntop < 0) {
        LOG(ERROR, "inference failed: %s", err);
        reply_error(r, t->ep, 500, "inference failed (see the proxy's log)");
        goto out;
    }
    double infer_ms = mono_ms_since(t0);
    metrics_sync_inference(infer_ms);
    const char *label = ntop > 0 && top[0].label ? top[0].label : "";

    size_t b64_len = 0;
    b64 = codec_b64_encode(img.data, img.len, &b64_len);
    top_json = codec_top_json(top, ntop);
    /* The raw body is no longer needed past this point, but it lives in the
     * request until the answer: nothing to free early. */
    api_prediction pred = {.label = label,
                           .top = top,
                           .ntop = ntop,
                           .model = p->model_name,
                           .scores = tdm_scores_name(p->info.scores),
                           .inference_ms = infer_ms};
    if (!b64 || !top_json) {
        reply_error(r, t->ep, 500, "out of memory");
        goto out;
    }
    queue_new_job nj = {.image_b64 = b64,
                        .image_b64_len = b64_len,
                        .sync_label = label,
                        .sync_model = p->model_name,
                        .sync_top5 = top_json,
                        .callback_url = callback,
                        .id_len = p->cfg.job_id_length,
                        .max_backlog = p->cfg.max_queue};
    char id[QUEUE_ID_MAX + 1];
    double t1 = mono_ms();
    rc = queue_create_job(w->q, &nj, id, sizeof id);
    LOG(DEBUG, "predict: %.2f ms since headers, %.2f ms inference, %.2f ms registering the job",
        http_age_ms(r), infer_ms, mono_ms_since(t1));
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

static void *infer_main(void *arg)
{
    struct worker *w = arg;
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
static int job_answer(struct worker *w, struct task *t, int may_wait)
{
    queue_job job;
    int rc = queue_get_job(w->q, t->job_id, &job);
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

static void do_metrics(struct worker *w, struct task *t)
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

static void do_stats(struct worker *w, struct task *t)
{
    queue_stats st;
    int rc = queue_get_stats(w->q, &st);
    if (rc) metrics_redis_error();
    char *json =
        api_stats_json(rc ? NULL : &st, push_streams_open(w->p->push), w->p->cfg.max_body_bytes);
    reply(t->req, API_EP_STATS, 200, json, "Cache-Control", "no-store");
}

/* From another thread with Redis connection q: the waiter may be asleep in
 * Redis, so it is woken there too (if Redis is away, its sleep ends by
 * WAIT_BLOCK_S anyway). */
static void wake_waiter(void *ud, queue *q)
{
    struct proxy *p = ud;
    pthread_mutex_lock(&p->wait_mu);
    pthread_cond_signal(&p->wait_cv);
    pthread_mutex_unlock(&p->wait_mu);
    queue_wake(q, p->wake_key);
}

static void hand_to_waiter(struct worker *w, struct task *t)
{
    struct proxy *p = w->p;
    t->held = 1;
    pthread_mutex_lock(&p->wait_mu);
    t->next = p->waiting;
    p->waiting = t;
    pthread_mutex_unlock(&p->wait_mu);
    wake_waiter(p, w->q);
}

/* A place among the MAX_WAITERS held requests, taken before the job is read
 * so that the I/O threads together never hold more. */
static int take_waiter_slot(struct proxy *p)
{
    if (atomic_fetch_add(&p->nwaiting, 1) < p->cfg.max_waiters) return 1;
    atomic_fetch_sub(&p->nwaiting, 1);
    return 0;
}

static void *io_main(void *arg)
{
    struct worker *w = arg;
    struct proxy *p = w->p;
    struct task *t;
    while ((t = taskq_pop(&p->io_q))) {
        if (t->ep == API_EP_METRICS) {
            do_metrics(w, t);
        } else if (t->ep == API_EP_STATS) {
            do_stats(w, t);
        } else if (t->ep == API_EP_EVENTS) {
            push_events(p->push, w->q, t->req, t->job_id, t->last_event_id);
        } else if (t->wait_s > 0 && !atomic_load(&p->stopping) && take_waiter_slot(p)) {
            if (job_answer(w, t, 1)) {
                hand_to_waiter(w, t);
                continue;
            }
            atomic_fetch_sub(&p->nwaiting, 1);
        } else {
            job_answer(w, t, 0);
        }
        free(t);
    }
    return NULL;
}

/* Answers and drops the held requests for which done(t, arg) holds. */
static struct task *answer_held(struct worker *w, struct task *held,
                                int (*done)(const struct task *, const void *), const void *arg)
{
    struct task *keep = NULL;
    while (held) {
        struct task *t = held;
        held = t->next;
        if (done(t, arg)) {
            job_answer(w, t, 0);
            atomic_fetch_sub(&w->p->nwaiting, 1);
            free(t);
        } else {
            t->next = keep;
            keep = t;
        }
    }
    return keep;
}

static int is_due(const struct task *t, const void *stopping)
{
    return *(const int *)stopping || t->deadline_s <= mono_s();
}

static int is_job(const struct task *t, const void *id)
{
    return strcmp(t->job_id, id) == 0;
}

static void *waiter_main(void *arg)
{
    struct worker *w = arg;
    struct proxy *p = w->p;
    struct task *held = NULL;
    int cap = p->cfg.max_waiters + push_capacity(p->push);
    const char **ids = malloc((size_t)cap * sizeof *ids);
    if (!ids) {
        LOG(ERROR, "waiter: out of memory");
        return NULL;
    }
    for (;;) {
        pthread_mutex_lock(&p->wait_mu);
        /* Idle: sleep until a request is handed over (or a shutdown check is due). */
        if (!held && !p->waiting && !push_active(p->push) && !atomic_load(&p->stopping)) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_nsec += 100000000L;
            if (until.tv_nsec >= 1000000000L) until.tv_sec++, until.tv_nsec -= 1000000000L;
            pthread_cond_timedwait(&p->wait_cv, &p->wait_mu, &until);
        }
        while (p->waiting) {
            struct task *t = p->waiting;
            p->waiting = t->next;
            t->next = held;
            held = t;
        }
        pthread_mutex_unlock(&p->wait_mu);
        int stopping = atomic_load(&p->stopping);
        double push_due = push_tick(p->push, w->q, stopping);
        if (!held && stopping == 2 && !push_active(p->push)) break;
        /* At shutdown every held request gets the job as it stands now. */
        held = answer_held(w, held, is_due, &stopping);
        if (!held && !push_active(p->push)) continue;
        int n = 0;
        double block = push_due < WAIT_BLOCK_S ? push_due : WAIT_BLOCK_S;
        for (struct task *t = held; t && n < p->cfg.max_waiters; t = t->next) {
            double left = t->deadline_s - mono_s();
            if (left < block) block = left;
            ids[n++] = t->job_id;
        }
        int nheld = n;
        n += push_ids(p->push, ids + n, cap - n);
        int which = -1;
        if (queue_wait_any(w->q, p->wake_key, ids, n, block, &which)) {
            /* Redis is away: the held requests ride it out until their time is up. */
            nanosleep(&(struct timespec){0, WAIT_RETRY_MS * 1000000L}, NULL);
            continue;
        }
        if (which >= 0 && which < nheld) {
            /* ids[which] points into a task that answer_held frees. */
            char id[QUEUE_ID_MAX + 1];
            snprintf(id, sizeof id, "%s", ids[which]);
            held = answer_held(w, held, is_job, id);
        } else if (which >= nheld && which < n) {
            push_final(p->push, w->q, ids[which]);
        }
    }
    free(ids);
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

static void on_request(void *ud, http_request *r)
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
    if (taskq_push(is_infer ? &p->infer_q : &p->io_q, t)) {
        free(t);
        reply(r, ep, 503, api_error_json("server busy: too many requests waiting, retry later"),
              "Retry-After", RETRY_AFTER_S);
    }
}

/* ---- start and stop ------------------------------------------------------------ */

static int load_model(struct proxy *p)
{
    char err[512];
    tdm_classifier_options opt;
    tdm_classifier_options_init(&opt);
    opt.engine.threads = p->cfg.engine_threads;
    opt.engine.precision = (tdm_precision)p->cfg.precision;
    opt.labels_path = p->cfg.labels_path;
    config_image_limits(&p->cfg, &opt.limits);
    int rc = tdm_classifier_open(p->cfg.sync_model_path, &opt, &p->clf, err, sizeof err);
    if (rc) {
        LOG(ERROR, "cannot load SYNC_MODEL_PATH %s: %s", p->cfg.sync_model_path, err);
        return rc;
    }
    tdm_classifier_get_info(p->clf, &p->info);
    p->model_name = p->info.model_name;
    return 0;
}

static int worker_init(struct proxy *p, struct worker *w, int with_model)
{
    char err[512];
    w->p = p;
    int rc = queue_open(&p->qopt, &w->q);
    if (rc) {
        LOG(ERROR, "queue_open: %s", queue_strerror(rc));
        return rc;
    }
    if (!with_model) return 0;
    rc = tdm_classifier_share(p->clf, &w->clf, err, sizeof err);
    if (rc) LOG(ERROR, "cannot plan a session for %s: %s", p->model_name, err);
    return rc;
}

static void worker_free(struct worker *w)
{
    tdm_classifier_close(w->clf);
    queue_close(w->q);
}

static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
}

static int start_threads(struct proxy *p)
{
    for (int i = 0; i < p->ninfer; i++) {
        if (pthread_create(&p->infer[i].thread, NULL, infer_main, &p->infer[i])) return -1;
        p->infer[i].started = 1;
    }
    for (int i = 0; i < IO_THREADS; i++) {
        if (pthread_create(&p->io[i].thread, NULL, io_main, &p->io[i])) return -1;
        p->io[i].started = 1;
    }
    if (pthread_create(&p->waiter.thread, NULL, waiter_main, &p->waiter)) return -1;
    p->waiter.started = 1;
    return 0;
}

/* Stop accepting, let in-flight requests finish (held waits are answered
 * early) for at most DRAIN_TIMEOUT, which must fit in the grace period of
 * Docker (10 s) and Kubernetes (30 s); then stop the threads, which answer
 * every request they were handed, and close what is left (slow uploads). */
static void shutdown_proxy(struct proxy *p)
{
    if (p->http) {
        http_quiesce(p->http);
        atomic_store(&p->stopping, 1);
        double t0 = mono_ms();
        while (http_in_flight(p->http) > 0 && mono_ms_since(t0) < p->cfg.drain_timeout_s * 1000.0)
            nanosleep(&(struct timespec){0, 10000000L}, NULL);
        if (http_in_flight(p->http) > 0)
            LOG(WARN, "%u requests still in flight after DRAIN_TIMEOUT=%d s; closing them",
                http_in_flight(p->http), p->cfg.drain_timeout_s);
    }
    atomic_store(&p->stopping, 2);
    taskq_stop(&p->infer_q);
    taskq_stop(&p->io_q);
    for (int i = 0; i < p->ninfer; i++)
        if (p->infer[i].started) pthread_join(p->infer[i].thread, NULL);
    for (int i = 0; i < IO_THREADS; i++)
        if (p->io[i].started) pthread_join(p->io[i].thread, NULL);
    if (p->waiter.started) pthread_join(p->waiter.thread, NULL);
    /* A request an I/O thread handed over as the waiter ended. */
    int now = 1;
    if (p->waiter.q) p->waiting = answer_held(&p->waiter, p->waiting, is_due, &now);
    push_free(p->push);
    p->push = NULL;
    /* Every request handed to a thread is answered: none stays suspended. */
    http_stop(p->http);
}
/* Each connection is a descriptor: the soft limit (often 1024) goes up to
 * the hard one; if that is still short, fewer connections are taken. */
static void raise_fd_limit(struct config *cfg)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl)) {
        LOG(WARN, "getrlimit(RLIMIT_NOFILE): %s", strerror(errno));
        return;
    }
    rlim_t was = rl.rlim_cur;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl)) {
            LOG(WARN, "cannot raise the descriptor limit to %llu: %s",
                (unsigned long long)rl.rlim_max, strerror(errno));
            rl.rlim_cur = was;
        }
    }
    LOG(INFO, "file descriptors: limit %llu (was %llu, hard limit %llu)",
        (unsigned long long)rl.rlim_cur, (unsigned long long)was,
        (unsigned long long)rl.rlim_max);
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t)cfg->max_connections + FDS_SPARE) {
        int n = rl.rlim_cur > FDS_SPARE + 16 ? (int)(rl.rlim_cur - FDS_SPARE) : 16;
        LOG(WARN, "descriptor limit %llu is short of MAX_CONNECTIONS=%d: taking %d connections",
            (unsigned long long)rl.rlim_cur, cfg->max_connections, n);
        cfg->max_connections = n;
        if (cfg->max_waiters >= n) cfg->max_waiters = n / 2;
    }
}

int cli_proxy(int argc, char **argv)
{
    struct proxy *p = calloc(1, sizeof *p);
    if (!p) return 1;
    int status = config_cli(argc, argv, CONFIG_ROLE_PROXY,
                            "Serve the HTTP API: the fast model answers at once, the job goes "
                            "to Redis for the workers' slow model.",
                            &p->cfg);
    if (status >= 0) {
        free(p);
        return status;
    }
    status = 1;
    log_init("proxy", p->cfg.log_level);
    install_signals();
    /* ?wait=, Prefer: wait (each up to MAX_WAITERS) and event streams together. */
    if (2LL * p->cfg.max_waiters + p->cfg.sse_max_streams >= p->cfg.max_connections) {
        LOG(ERROR,
            "2 x MAX_WAITERS=%d (?wait= and Prefer: wait) + SSE_MAX_STREAMS=%d must be below "
            "MAX_CONNECTIONS=%d: held requests must leave connections for the others",
            p->cfg.max_waiters, p->cfg.sse_max_streams, p->cfg.max_connections);
        free(p);
        return 2;
    }
    raise_fd_limit(&p->cfg);
    taskq_init(&p->infer_q);
    taskq_init(&p->io_q);
    pthread_mutex_init(&p->wait_mu, NULL);
    pthread_cond_init(&p->wait_cv, NULL);
    if (sodium_init() < 0) {
        LOG(ERROR, "libsodium failed to initialise");
        goto out;
    }
    /* Unique among all proxies on one Redis, also in containers that share a
     * hostname and start as pid 1. */
    char host[64] = "";
    gethostname(host, sizeof host - 1);
    snprintf(p->wake_key, sizeof p->wake_key, "wake:proxy:%s:%d:%08x", host, (int)getpid(),
             randombytes_random());
    queue_options_from_config(&p->cfg, &p->qopt);
    char werr[512];
    if (webhook_start(&p->cfg, &p->qopt, &p->hooks, werr, sizeof werr)) {
        LOG(ERROR, "webhooks: %s", werr);
        goto out;
    }
    if (p->cfg.webhook_allow[0])
        LOG(INFO, "webhooks on: destinations %s, %d delivery threads, %d attempts",
            p->cfg.webhook_allow, p->cfg.webhook_threads, p->cfg.webhook_max_attempts);
    push_options po = {.max_streams = p->cfg.sse_max_streams,
                       .max_holds = p->cfg.max_waiters,
                       .heartbeat_s = p->cfg.sse_heartbeat_s,
                       .stream_max_s = STREAM_MAX_S,
                       .wake = wake_waiter,
                       .wake_ud = p};
    if (push_create(&po, &p->push)) goto out;
    if (load_model(p)) goto out;
    p->ninfer = p->cfg.sync_threads;
    p->infer = calloc((size_t)p->ninfer, sizeof *p->infer);
    if (!p->infer) goto out;
    for (int i = 0; i < p->ninfer; i++)
        if (worker_init(p, &p->infer[i], 1)) goto out;
    /* Each inference thread holds the model now: the loading handle's session can go. */
    tdm_classifier_close(p->clf);
    p->clf = NULL;
    for (int i = 0; i < IO_THREADS; i++)
        if (worker_init(p, &p->io[i], 0)) goto out;
    if (worker_init(p, &p->waiter, 0)) goto out;
    if (queue_ping(p->io[0].q))
        LOG(WARN,
            "Redis at %s:%d is not answering (%s); jobs will be refused with 503 until "
            "it is",
            p->cfg.redis_host, p->cfg.redis_port, queue_errstr(p->io[0].q));
    if (start_threads(p)) {
        LOG(ERROR, "cannot start threads: %s", strerror(errno));
        goto out;
    }
    http_options ho = {.port = p->cfg.port,
                       .max_body = (size_t)p->cfg.max_body_bytes,
                       .max_connections = (unsigned)p->cfg.max_connections,
                       .max_per_ip = (unsigned)p->cfg.max_connections_per_ip,
                       .request_timeout_s = (unsigned)p->cfg.request_timeout_s,
                       .handler = on_request,
                       .ud = p};
    char err[256];
    if (http_start(&ho, &p->http, err, sizeof err)) {
        LOG(ERROR, "%s", err);
        goto out;
    }
    LOG(INFO,
        "listening on port %d: model %s, %d inference threads x %d engine threads, Redis "
        "%s:%d, queue %s",
        p->cfg.port, p->model_name, p->ninfer, p->cfg.engine_threads, p->cfg.redis_host,
        p->cfg.redis_port, p->cfg.queue_name);
    LOG(INFO,
        "connections: %d at most, %d per address, %d held ?wait= requests; a request must "
        "arrive within %d s",
        p->cfg.max_connections, p->cfg.max_connections_per_ip, p->cfg.max_waiters,
        p->cfg.request_timeout_s);
    while (!stop_requested)
        nanosleep(&(struct timespec){0, 100000000L}, NULL);
    LOG(INFO, "stopping: no new connections, finishing %u requests in flight",
        http_in_flight(p->http));
    status = 0;
out:
    shutdown_proxy(p);
    webhook_stop(p->hooks);
    if (p->infer)
        for (int i = 0; i < p->ninfer; i++)
            worker_free(&p->infer[i]);
    free(p->infer);
    for (int i = 0; i < IO_THREADS; i++)
        worker_free(&p->io[i]);
    worker_free(&p->waiter);
    tdm_classifier_close(p->clf);
    taskq_destroy(&p->infer_q);
    taskq_destroy(&p->io_q);
    pthread_mutex_destroy(&p->wait_mu);
    pthread_cond_destroy(&p->wait_cv);
    if (status == 0) LOG(INFO, "stopped");
    free(p);
    return status;
}
