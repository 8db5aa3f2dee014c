/*
 * proxy: `tandem proxy`, the HTTP API of the service, in five files:
 *   proxy.c         the routes and their handlers (what each request gets);
 *   proxy_taskq.c   the queue of requests handed to the proxy threads;
 *   proxy_stager.c  each inference thread's helper that sends the image;
 *   proxy_waiter.c  the thread that holds GET /job/{id}?wait= (and push.c's);
 *   proxy_main.c    start and stop: model, threads, HTTP server, shutdown.
 * This header is theirs alone: the state they share.
 *
 * Threads, and why:
 *   - libmicrohttpd's thread (http.c) reads requests and writes answers,
 *     never blocking; it answers /health, /metadata, the page and refusals
 *     itself and hands everything else on as a task;
 *   - SYNC_THREADS inference threads, each with its own engine session and
 *     Redis connection: POST /predict and GET /predict/test (decode, fast
 *     model, register the job) — a request waits only for a free session;
 *     each has a stager thread that writes the image to Redis meanwhile;
 *   - REDIS_THREADS Redis threads for GET /job/{id}, /job/{id}/events,
 *     /metrics and /stats, so reading a job never queues behind inferences;
 *   - one waiter thread holding every GET /job/{id}?wait=S (proxy_waiter.h).
 * Requests handed to a thread are suspended in http.c and resumed by the
 * answer.
 */
#ifndef TANDEM_PROXY_H
#define TANDEM_PROXY_H

#include <pthread.h>
#include <stdatomic.h>

#include "config.h"
#include "http.h"
#include "proxy_stager.h"
#include "proxy_taskq.h"
#include "proxy_waiter.h"
#include "push.h"
#include "queue.h"
#include "tandem/classifier.h"
#include "webhook.h"

#define REDIS_THREADS 2 /* the proxy's threads for Redis reads (not libmicrohttpd's) */

struct proxy;

/* One of the proxy's threads: its Redis connection and, for inference
 * threads, its session on the shared model. */
struct proxy_thread {
    struct proxy *p;
    pthread_t thread;
    int started;
    queue *q;
    tdm_classifier *clf; /* inference threads only */
    stager *stager;      /* inference threads only */
};

struct proxy {
    struct config cfg;
    tdm_classifier *clf; /* the model as loaded; each inference thread shares it */
    tdm_classifier_info info;
    const char *model_name;
    queue_options qopt;
    http_server *http;
    struct taskq infer_q, redis_q;
    struct proxy_thread *infer;
    int ninfer;
    struct proxy_thread redis[REDIS_THREADS];
    proxy_waiter waiter;
    push *push;          /* event streams and Prefer: wait, held by the waiter too */
    atomic_int stopping; /* 1: draining (held waits answered early), 2: stopping */
    webhook *hooks;      /* callback_url checks and delivery threads (webhook.h) */
};

/* proxy.c: libmicrohttpd's callback (ud the proxy) and the threads' loops (arg
 * their struct proxy_thread). */
void proxy_on_request(void *ud, http_request *r);
void *proxy_infer_main(void *arg);
void *proxy_redis_main(void *arg);
/* GET /job/{id}: the waiter's proxy_answer_fn. */
int proxy_job_answer(void *ud, queue *q, struct task *t, int may_wait);

#endif
