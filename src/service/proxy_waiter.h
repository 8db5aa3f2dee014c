/*
 * proxy_waiter: the one thread that holds every GET /job/{id}?wait=S and
 * sleeps for them, and the event streams and Prefer: wait holds of push.c.
 *
 * It sleeps in Redis: one BLPOP (queue_wait_any) on the done:{id} markers of
 * all the jobs it holds (which workers set when a job becomes final) and on
 * this proxy's own wake key (set when a request is handed over), so it
 * answers the moment a job ends, and long waits cost no other thread and no
 * polling. A Redis thread first reads the job itself (most waits end there)
 * and hands the request over only when it must wait; MAX_WAITERS bounds the
 * held requests, counted from before that first read so that the Redis
 * threads together never hold more. At shutdown every held request gets the
 * job as it stands. How a job is answered is the caller's (answer_fn), so
 * this file knows nothing of routes or JSON.
 */
#ifndef TANDEM_PROXY_WAITER_H
#define TANDEM_PROXY_WAITER_H

#include <pthread.h>
#include <stdatomic.h>

#include "proxy_taskq.h"
#include "push.h"
#include "queue.h"

/* Reads t's job on connection q and answers it, unless may_wait and the job
 * is not final yet: returns 1 then (the request stays held). */
typedef int (*proxy_answer_fn)(void *ud, queue *q, struct task *t, int may_wait);

typedef struct proxy_waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct task *handed; /* handed over, not yet taken by the thread */
    atomic_int nheld;    /* slots taken, of max_waiters */
    int max_waiters;
    char wake_key[128];         /* queue_wait_any's wake key: one per proxy process */
    push *push;                 /* set before the thread starts */
    const atomic_int *stopping; /* the proxy's: 1 draining, 2 stopping */
    proxy_answer_fn answer;
    void *answer_ud;
    queue *q;
    pthread_t thread;
    int started;
} proxy_waiter;

/* No I/O: the lock and the bounds. */
void proxy_waiter_init(proxy_waiter *w, int max_waiters, const atomic_int *stopping,
                       proxy_answer_fn answer, void *answer_ud);
/* Names the wake key (after sodium_init) and opens the thread's own Redis
 * connection (a queue_status on failure). */
int proxy_waiter_connect(proxy_waiter *w, const queue_options *qopt);
/* 0 or PROXY_ERR_THREAD. */
int proxy_waiter_start(proxy_waiter *w);

/* A place among the MAX_WAITERS held requests: 1 if taken. Give it back with
 * proxy_waiter_release_slot unless the request is handed over. */
int proxy_waiter_take_slot(proxy_waiter *w);
void proxy_waiter_release_slot(proxy_waiter *w);
/* Hands t (with a slot) to the waiter thread, from a thread with connection q. */
void proxy_waiter_hand(proxy_waiter *w, queue *q, struct task *t);
/* Wakes the waiter from another thread with Redis connection q (push.h's
 * wake callback, ud the proxy_waiter). */
void proxy_waiter_wake(void *ud, queue *q);

/* After the proxy set *stopping to 2: joins the thread and answers what was
 * handed over as it ended. */
void proxy_waiter_stop(proxy_waiter *w);
void proxy_waiter_destroy(proxy_waiter *w);

#endif
