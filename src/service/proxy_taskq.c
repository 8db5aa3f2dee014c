/*
 * proxy_taskq: a bounded FIFO of tasks under one mutex (see proxy_taskq.h).
 * A handful of threads share it and a task costs milliseconds of inference or
 * a Redis round trip, so one lock is never the bottleneck.
 */
#include "proxy_taskq.h"

#define MAX_PENDING 1024 /* tasks waiting for a thread; past it 503 */

void taskq_init(struct taskq *q)
{
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
}

int taskq_push(struct taskq *q, struct task *t)
{
    int rc = 0;
    pthread_mutex_lock(&q->mu);
    /* Stopped: its threads may be gone, and a task pushed now would never be answered. */
    if (q->len >= MAX_PENDING || q->stop) {
        rc = PROXY_ERR_BUSY;
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

struct task *taskq_pop(struct taskq *q)
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

void taskq_stop(struct taskq *q)
{
    pthread_mutex_lock(&q->mu);
    q->stop = 1;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
}

void taskq_destroy(struct taskq *q)
{
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->cv);
}
