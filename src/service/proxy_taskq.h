/*
 * proxy_taskq: the requests the proxy's HTTP thread hands to its own threads.
 *
 * libmicrohttpd's thread must never block, so every request that needs a
 * model session or Redis becomes a task: the HTTP thread parses what it can
 * from the headers into a struct task, suspends the request (http.c) and
 * pushes the task onto a bounded FIFO; a pool of proxy threads pops tasks
 * and answers them, which resumes the request. The bound (MAX_PENDING) turns
 * an overload into a prompt 503 instead of a queue that grows until the
 * clients time out. A stopped queue refuses new tasks and lets its threads
 * drain what is left, so no handed-over request stays suspended.
 */
#ifndef TANDEM_PROXY_TASKQ_H
#define TANDEM_PROXY_TASKQ_H

#include <pthread.h>

#include "api.h"
#include "errors.h"
#include "http.h"
#include "queue.h"
#include "webhook.h"

/* One request handed to a proxy thread, with what the HTTP thread read from
 * its headers. */
struct task {
    struct task *next;
    http_request *req;
    api_endpoint ep;
    char content_type[128];
    char job_id[QUEUE_ID_MAX + 1];
    double wait_s;     /* GET /job/{id}?wait= */
    double deadline_s; /* mono_s() at which the wait ends */
    int held;          /* with the waiter thread (proxy_waiter.h) */
    int has_callback;  /* ?callback_url= was given (the JSON field comes with the body) */
    char callback_url[WEBHOOK_URL_MAX + 1];
    double prefer_wait_s; /* POST /predict: Prefer: wait=N as applied, 0 without */
    int last_event_id;    /* GET /job/{id}/events: Last-Event-ID */
};

#define PROXY_ERR_BUSY (ERR_BASE_PROXY - 1)    /* MAX_PENDING tasks wait, or stopped */
#define PROXY_ERR_THREAD (ERR_BASE_PROXY - 2) /* a thread could not be started */

struct taskq {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct task *head, *tail;
    int len, stop;
};

void taskq_init(struct taskq *q);
/* Appends t; PROXY_ERR_BUSY if MAX_PENDING tasks wait or the queue is stopped
 * (the caller answers 503 and keeps t). */
int taskq_push(struct taskq *q, struct task *t);
/* Blocks for a task; NULL once the queue is stopped and empty. */
struct task *taskq_pop(struct taskq *q);
/* Refuses new tasks and wakes every thread blocked in taskq_pop. */
void taskq_stop(struct taskq *q);
void taskq_destroy(struct taskq *q);

#endif
