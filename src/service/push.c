/*
 * push: Server-Sent Events and Prefer: wait on the waiter thread (push.h).
 *
 * An item is an open event stream or a held POST /predict. Request threads
 * put new items on `handed` (under mu) and wake the waiter; from then on only
 * the waiter touches them, so the held list needs no lock. Event ids are the
 * job's states in order (1 queued, 2 running, 3 final): a reconnecting
 * client's Last-Event-ID says which it has.
 */
#include "push.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.h"
#include "clock.h"
#include "log.h"
#include "metrics.h"

enum { EV_QUEUED = 1, EV_RUNNING = 2, EV_FINAL = 3 };

struct item {
    struct item *next;
    char id[QUEUE_ID_MAX + 1];
    http_request *req;   /* a held POST /predict, else NULL */
    http_stream *stream; /* an event stream, else NULL */
    char *fast_json;     /* the held fast answer */
    double wait_s;       /* as applied, for Preference-Applied */
    double due;          /* hold: answer by then; stream: end by then */
    double last_write;   /* stream: when it last sent something */
    int last_event;      /* stream: the last event id the client has */
};

struct push {
    push_options opt;
    pthread_mutex_t mu;
    struct item *handed; /* under mu */
    struct item *held;   /* the waiter's */
    atomic_int streams, holds, stopping;
};

static const char *const stream_headers[] = {"Cache-Control", "no-store", "X-Accel-Buffering", "no",
                                             NULL};

int push_create(const push_options *opt, push **out)
{
    push *ps = calloc(1, sizeof *ps);
    if (!ps) return PUSH_ERR_NOMEM;
    ps->opt = *opt;
    pthread_mutex_init(&ps->mu, NULL);
    *out = ps;
    return 0;
}

long long push_streams_open(const push *ps)
{
    return atomic_load(&ps->streams);
}

int push_capacity(const push *ps)
{
    return ps->opt.max_streams + ps->opt.max_holds;
}

/* ---- sending ---------------------------------------------------------------- */

/* One event, unless the client has it already; -1 when the client is gone. */
static int emit(struct item *it, int seq, const char *event, const queue_job *job)
{
    if (seq <= it->last_event) return 0;
    char *json = api_job_json(it->id, job);
    if (!json) return -1;
    size_t cap = strlen(json) + 96;
    char *text = malloc(cap);
    int rc = -1;
    if (text) {
        int n = snprintf(text, cap, "id: %d\nevent: %s\ndata: %s\n\n", seq, event, json);
        rc = http_stream_write(it->stream, text, (size_t)n);
    }
    free(text);
    free(json);
    if (rc == 0) {
        it->last_event = seq;
        it->last_write = mono_s();
    }
    return rc;
}

/* The events the job record implies. Returns 1 once the final one is out,
 * 0 while the job goes on, -1 when the client is gone. */
static int emit_job(struct item *it, const queue_job *job)
{
    if (!queue_status_final(job->status)) {
        int running = !strcmp(job->status, "running");
        return emit(it, running ? EV_RUNNING : EV_QUEUED, running ? "running" : "queued", job);
    }
    if (job->started_ms && it->last_event < EV_RUNNING) {
        /* It went through running while no wake-up told us: the record as it was then. */
        queue_job was = *job;
        snprintf(was.status, sizeof was.status, "running");
        was.error = NULL;
        was.finished_ms = 0;
        if (emit(it, EV_RUNNING, "running", &was)) return -1;
    }
    return emit(it, EV_FINAL, job->status, job) ? -1 : 1;
}

static void answer_json(http_request *r, int code, char *json, const char *hdr, const char *val,
                        api_endpoint ep)
{
    static const char oom[] = "{\"error\":\"out of memory\"}";
    if (!json) {
        code = 500;
        json = strdup(oom);
    }
    metrics_request(ep, code, http_age_ms(r));
    http_respond(r, code, "application/json", json, json ? strlen(json) : 0, hdr, val);
}

/* A held POST /predict: the fast answer with the job as it stands. */
static void answer_hold(push *ps, struct item *it, queue *q)
{
    queue_job job;
    char *json = NULL, applied[32];
    int rc = q ? queue_get_job(q, it->id, &job) : QUEUE_ERR_IO;
    if (rc == 0) {
        json = api_prediction_with_job_json(it->fast_json, it->id, &job);
        queue_job_clear(&job);
    } else if (q) {
        metrics_redis_error();
        LOG(WARN, "Prefer: wait: cannot read job %s (%s); answering the fast result alone", it->id,
            queue_strerror(rc));
    }
    snprintf(applied, sizeof applied, "wait=%.0f", it->wait_s);
    LOG(DEBUG, "POST /predict (Prefer: %s) -> 200 in %.2f ms", applied, http_age_ms(it->req));
    if (json) {
        http_respond(it->req, 200, "application/json", json, strlen(json), "Preference-Applied",
                     applied);
        free(it->fast_json);
    } else {
        http_respond(it->req, 200, "application/json", it->fast_json, strlen(it->fast_json), NULL,
                     NULL);
    }
    it->fast_json = NULL;
    it->req = NULL;
    atomic_fetch_sub(&ps->holds, 1);
}

static void end_stream(push *ps, struct item *it)
{
    http_stream_end(it->stream);
    it->stream = NULL;
    atomic_fetch_sub(&ps->streams, 1);
}

/* Ends or answers an item and frees it. */
static void finish(push *ps, struct item *it, queue *q)
{
    if (it->stream) end_stream(ps, it);
    if (it->req) answer_hold(ps, it, q);
    free(it);
}

static void hand_over(push *ps, queue *q, struct item *it)
{
    pthread_mutex_lock(&ps->mu);
    it->next = ps->handed;
    ps->handed = it;
    pthread_mutex_unlock(&ps->mu);
    ps->opt.wake(ps->opt.wake_ud, q);
}

/* ---- request threads ----------------------------------------------------------- */

void push_events(push *ps, queue *q, http_request *r, const char *id, int last_event_id)
{
    char msg[256];
    if (atomic_load(&ps->stopping)) {
        answer_json(r, 503, api_error_json("the proxy is shutting down, retry later"),
                    "Retry-After", "5", API_EP_EVENTS);
        return;
    }
    if (atomic_fetch_add(&ps->streams, 1) >= ps->opt.max_streams) {
        atomic_fetch_sub(&ps->streams, 1);
        snprintf(msg, sizeof msg,
                 "too many event streams open (SSE_MAX_STREAMS=%d), retry later or use "
                 "GET /job/{id}?wait=",
                 ps->opt.max_streams);
        answer_json(r, 503, api_error_json(msg), "Retry-After", "5", API_EP_EVENTS);
        return;
    }
    queue_job job;
    int rc = queue_get_job(q, id, &job);
    if (rc) {
        atomic_fetch_sub(&ps->streams, 1);
        if (rc == QUEUE_ERR_NOTFOUND) {
            snprintf(msg, sizeof msg, "job %s not found (unknown id, or expired)", id);
            answer_json(r, 404, api_error_json(msg), NULL, NULL, API_EP_EVENTS);
        } else {
            metrics_redis_error();
            snprintf(msg, sizeof msg, "the job store is unavailable (%s), retry later",
                     queue_strerror(rc));
            answer_json(r, 503, api_error_json(msg), "Retry-After", "5", API_EP_EVENTS);
        }
        return;
    }
    struct item *it = calloc(1, sizeof *it);
    if (!it || (queue_status_final(job.status) && last_event_id >= EV_FINAL)) {
        /* Nothing left to tell (or no memory to tell it). */
        atomic_fetch_sub(&ps->streams, 1);
        if (it) {
            metrics_request(API_EP_EVENTS, 204, http_age_ms(r));
            http_respond(r, 204, NULL, NULL, 0, NULL, NULL);
        } else {
            answer_json(r, 503, api_error_json("server out of memory, retry later"), "Retry-After",
                        "5", API_EP_EVENTS);
        }
        free(it);
        queue_job_clear(&job);
        return;
    }
    snprintf(it->id, sizeof it->id, "%s", id);
    it->last_event = last_event_id;
    metrics_request(API_EP_EVENTS, 200, http_age_ms(r));
    it->stream = http_respond_stream(r, 200, "text/event-stream", stream_headers);
    double now = mono_s();
    it->due = now + ps->opt.stream_max_s;
    it->last_write = now;
    /* Something to send at once, so that the headers leave now even when
     * the client has every event so far; retry: how long an EventSource
     * waits before it reconnects. */
    static const char hello[] = "retry: 2000\n\n";
    int sent = -1;
    if (it->stream && !http_stream_write(it->stream, hello, sizeof hello - 1))
        sent = emit_job(it, &job);
    queue_job_clear(&job);
    if (sent != 0) {
        /* Final, or the client is gone already. */
        if (it->stream)
            end_stream(ps, it);
        else
            atomic_fetch_sub(&ps->streams, 1);
        free(it);
        return;
    }
    hand_over(ps, q, it);
}

int push_hold(push *ps, queue *q, http_request *r, const char *id, char *fast_json, double wait_s)
{
    if (atomic_load(&ps->stopping)) return PUSH_ERR_STOPPING;
    if (atomic_fetch_add(&ps->holds, 1) >= ps->opt.max_holds) {
        atomic_fetch_sub(&ps->holds, 1);
        return PUSH_ERR_FULL;
    }
    struct item *it = calloc(1, sizeof *it);
    if (!it) {
        atomic_fetch_sub(&ps->holds, 1);
        return PUSH_ERR_NOMEM;
    }
    snprintf(it->id, sizeof it->id, "%s", id);
    it->req = r;
    it->fast_json = fast_json;
    it->wait_s = wait_s;
    it->due = mono_s() + wait_s;
    /* Counted once, with the time the fast answer took: the sync latency
     * histogram keeps its meaning. */
    metrics_request(API_EP_PREDICT, 200, http_age_ms(r));
    hand_over(ps, q, it);
    return 0;
}

/* ---- the waiter thread ------------------------------------------------------------ */

int push_active(push *ps)
{
    pthread_mutex_lock(&ps->mu);
    int active = ps->handed != NULL;
    pthread_mutex_unlock(&ps->mu);
    return active || ps->held;
}

double push_tick(push *ps, queue *q, int stopping)
{
    if (stopping) atomic_store(&ps->stopping, 1);
    pthread_mutex_lock(&ps->mu);
    while (ps->handed) {
        struct item *it = ps->handed;
        ps->handed = it->next;
        it->next = ps->held;
        ps->held = it;
    }
    pthread_mutex_unlock(&ps->mu);
    double now = mono_s(), next = ps->opt.heartbeat_s;
    struct item **link = &ps->held;
    while (*link) {
        struct item *it = *link;
        int done = stopping || now >= it->due;
        if (!done && it->stream && now - it->last_write >= ps->opt.heartbeat_s) {
            /* A comment line: EventSource ignores it; a client that left is found here. */
            done = http_stream_write(it->stream, ": ping\n\n", 8) != 0;
            it->last_write = now;
        }
        if (done) {
            *link = it->next;
            finish(ps, it, q);
            continue;
        }
        double due = it->due - now;
        if (it->stream && it->last_write + ps->opt.heartbeat_s - now < due)
            due = it->last_write + ps->opt.heartbeat_s - now;
        if (due < next) next = due;
        link = &it->next;
    }
    return next > 0.001 ? next : 0.001;
}

int push_ids(push *ps, const char **ids, int cap)
{
    int n = 0;
    for (struct item *it = ps->held; it && n < cap; it = it->next)
        ids[n++] = it->id;
    return n;
}

void push_final(push *ps, queue *q, const char *id_in)
{
    /* id_in may point into an item this frees. */
    char id[QUEUE_ID_MAX + 1];
    snprintf(id, sizeof id, "%s", id_in);
    queue_job job;
    int have = 0;
    struct item **link = &ps->held;
    while (*link) {
        struct item *it = *link;
        if (strcmp(it->id, id)) {
            link = &it->next;
            continue;
        }
        if (it->stream && !have) {
            int rc = queue_get_job(q, id, &job);
            if (rc) {
                /* The stream ends without its last event; the client
                 * reconnects with its Last-Event-ID and gets it then. */
                metrics_redis_error();
                LOG(WARN, "events: cannot read final job %s (%s)", id, queue_strerror(rc));
            }
            have = rc == 0 ? 1 : -1;
        }
        if (it->stream && have == 1) emit_job(it, &job);
        *link = it->next;
        finish(ps, it, q);
    }
    if (have == 1) queue_job_clear(&job);
}

void push_free(push *ps)
{
    if (!ps) return;
    /* Without Redis now: holds get their fast answer alone. */
    push_tick(ps, NULL, 1);
    pthread_mutex_destroy(&ps->mu);
    free(ps);
}
