/*
 * push: answers that wait for a job to become final, held by the proxy's
 * waiter thread beside GET /job/{id}?wait= and woken by the same Redis
 * markers (done:{id}, see queue_wait_any):
 *
 *   - GET /job/{id}/events, Server-Sent Events: `queued`, `running`, then
 *     `done`, `failed` or `expired` (ids 1, 2, 3), each with the job object
 *     of GET /job/{id} as data; the stream ends after the final event.
 *     Last-Event-ID is honoured: events the client has are not sent again,
 *     and a client that has the final one gets 204 (which tells an
 *     EventSource to stop reconnecting). Heartbeat comments keep idle
 *     streams open through proxies and find clients that left.
 *   - POST /predict with `Prefer: wait=N` (RFC 7240): the fast answer is
 *     held until the job is final or N s pass, then sent with the job
 *     embedded and `Preference-Applied`.
 *
 * Workers signal only final states, so `running` is not pushed as it
 * happens: it is read from the job record when a stream starts and when the
 * final wake-up comes (a job that has a started_ms went through running; the
 * event then carries the record as it was while running: status "running",
 * no result). Nothing here polls Redis per connection.
 *
 * Threads: push_events() and push_hold() run on the proxy's request threads
 * and hand what must wait to the waiter; the push_tick/ids/final calls are
 * the waiter thread's alone.
 */
#ifndef TANDEM_PUSH_H
#define TANDEM_PUSH_H

#include "errors.h"
#include "http.h"
#include "queue.h"

typedef struct push push;

enum {
    PUSH_ERR_NOMEM = ERR_BASE_PUSH - 1,
    PUSH_ERR_FULL = ERR_BASE_PUSH - 2,    /* as many held as allowed */
    PUSH_ERR_STOPPING = ERR_BASE_PUSH - 3 /* the proxy is shutting down */
};

typedef struct push_options {
    int max_streams;     /* event streams open at once; past it 503 (SSE_MAX_STREAMS) */
    int max_holds;       /* POST /predict held at once; past it answered at once */
    double heartbeat_s;  /* idle time before a heartbeat comment (SSE_HEARTBEAT_S) */
    double stream_max_s; /* a stream ends after this long (the client reconnects) */
    /* Wakes the waiter thread (called after a hand-over, with the calling
     * thread's Redis connection). */
    void (*wake)(void *ud, queue *q);
    void *wake_ud;
} push_options;

/* 0 or PUSH_ERR_NOMEM. */
int push_create(const push_options *opt, push **out);
/* Ends whatever is still held; only once the waiter thread has stopped. */
void push_free(push *ps);

/* GET /job/{id}/events on a request thread with Redis connection q: reads
 * the job and answers r (404, 503, 204 or the stream), handing the stream to
 * the waiter when the job is not final yet. last_event_id: the client's. */
void push_events(push *ps, queue *q, http_request *r, const char *id, int last_event_id);

/* Holds r, whose fast answer is fast_json (taken over when held), until job
 * id is final or wait_s pass. 0 when held; PUSH_ERR_FULL, _STOPPING or
 * _NOMEM when not: the caller answers as usual and keeps fast_json. */
int push_hold(push *ps, queue *q, http_request *r, const char *id, char *fast_json, double wait_s);

/* Event streams open now (for GET /stats). */
long long push_streams_open(const push *ps);

/* ---- the waiter thread ---- */

/* 1 while anything is held or being handed over. */
int push_active(push *ps);
/* Takes over what was handed, sends heartbeats, ends streams past their age
 * and answers holds past their time; with stopping set, ends and answers
 * everything and refuses new work. Returns the seconds until the next of
 * these is due. */
double push_tick(push *ps, queue *q, int stopping);
/* The job ids held (pointers valid until the next push call), at most cap. */
int push_ids(push *ps, const char **ids, int cap);
/* Most ids push_ids can give. */
int push_capacity(const push *ps);
/* Job id is final: its streams get their last events, its holds an answer. */
void push_final(push *ps, queue *q, const char *id);

#endif
