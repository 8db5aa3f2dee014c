/*
 * proxy_waiter: the waiter thread (see proxy_waiter.h). Requests arrive on a
 * list under a mutex (handed), which the thread moves to its own list (held)
 * each round, so the Redis threads never wait for the waiter's Redis calls.
 * One round: push_tick (heartbeats and expiries of push.c), answer what is
 * due, then one blocking queue_wait_any on every held job, bounded by the
 * nearest deadline and WAIT_BLOCK_S so that a shutdown is seen promptly.
 */
#include "proxy_waiter.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "clock.h"
#include "log.h"

#define WAIT_BLOCK_S 1.0 /* longest sleep of the waiter in Redis: how soon it sees a shutdown */
#define WAIT_RETRY_MS 50 /* pause of the waiter after a Redis error */

void proxy_waiter_init(proxy_waiter *w, int max_waiters, const atomic_int *stopping,
                       proxy_answer_fn answer, void *answer_ud)
{
    memset(w, 0, sizeof *w);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    w->max_waiters = max_waiters;
    w->stopping = stopping;
    w->answer = answer;
    w->answer_ud = answer_ud;
}

int proxy_waiter_connect(proxy_waiter *w, const queue_options *qopt)
{
    /* Unique among all proxies on one Redis, also in containers that share a
     * hostname and start as pid 1. */
    char host[64] = "";
    gethostname(host, sizeof host - 1);
    snprintf(w->wake_key, sizeof w->wake_key, "wake:proxy:%s:%d:%08x", host, (int)getpid(),
             randombytes_random());
    int rc = queue_open(qopt, &w->q);
    if (rc) LOG(ERROR, "queue_open: %s", queue_strerror(rc));
    return rc;
}

int proxy_waiter_take_slot(proxy_waiter *w)
{
    if (atomic_fetch_add(&w->nheld, 1) < w->max_waiters) return 1;
    atomic_fetch_sub(&w->nheld, 1);
    return 0;
}

void proxy_waiter_release_slot(proxy_waiter *w)
{
    atomic_fetch_sub(&w->nheld, 1);
}

/* The waiter may be asleep in Redis, so it is woken there too (if Redis is
 * away, its sleep ends by WAIT_BLOCK_S anyway). */
void proxy_waiter_wake(void *ud, queue *q)
{
    proxy_waiter *w = ud;
    pthread_mutex_lock(&w->mu);
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    queue_wake(q, w->wake_key);
}

void proxy_waiter_hand(proxy_waiter *w, queue *q, struct task *t)
{
    t->held = 1;
    pthread_mutex_lock(&w->mu);
    t->next = w->handed;
    w->handed = t;
    pthread_mutex_unlock(&w->mu);
    proxy_waiter_wake(w, q);
}

/* Answers and drops the held requests for which done(t, arg) holds. */
static struct task *answer_held(proxy_waiter *w, struct task *held,
                                int (*done)(const struct task *, const void *), const void *arg)
{
    struct task *keep = NULL;
    while (held) {
        struct task *t = held;
        held = t->next;
        if (done(t, arg)) {
            w->answer(w->answer_ud, w->q, t, 0);
            proxy_waiter_release_slot(w);
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
    proxy_waiter *w = arg;
    struct task *held = NULL;
    int cap = w->max_waiters + push_capacity(w->push);
    const char **ids = malloc((size_t)cap * sizeof *ids);
    if (!ids) {
        LOG(ERROR, "waiter: out of memory");
        return NULL;
    }
    for (;;) {
        pthread_mutex_lock(&w->mu);
        /* Idle: sleep until a request is handed over (or a shutdown check is due). */
        if (!held && !w->handed && !push_active(w->push) && !atomic_load(w->stopping)) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_nsec += 100000000L;
            if (until.tv_nsec >= 1000000000L) until.tv_sec++, until.tv_nsec -= 1000000000L;
            pthread_cond_timedwait(&w->cv, &w->mu, &until);
        }
        while (w->handed) {
            struct task *t = w->handed;
            w->handed = t->next;
            t->next = held;
            held = t;
        }
        pthread_mutex_unlock(&w->mu);
        int stopping = atomic_load(w->stopping);
        double push_due = push_tick(w->push, w->q, stopping);
        if (!held && stopping == 2 && !push_active(w->push)) break;
        /* At shutdown every held request gets the job as it stands now. */
        held = answer_held(w, held, is_due, &stopping);
        if (!held && !push_active(w->push)) continue;
        int n = 0;
        double block = push_due < WAIT_BLOCK_S ? push_due : WAIT_BLOCK_S;
        for (struct task *t = held; t && n < w->max_waiters; t = t->next) {
            double left = t->deadline_s - mono_s();
            if (left < block) block = left;
            ids[n++] = t->job_id;
        }
        int nheld = n;
        n += push_ids(w->push, ids + n, cap - n);
        int which = -1;
        if (queue_wait_any(w->q, w->wake_key, ids, n, block, &which)) {
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
            push_final(w->push, w->q, ids[which]);
        }
    }
    free(ids);
    return NULL;
}

int proxy_waiter_start(proxy_waiter *w)
{
    if (pthread_create(&w->thread, NULL, waiter_main, w)) return PROXY_ERR_THREAD;
    w->started = 1;
    return 0;
}

void proxy_waiter_stop(proxy_waiter *w)
{
    if (w->started) pthread_join(w->thread, NULL);
    w->started = 0;
    /* A request a Redis thread handed over as the waiter ended. */
    int now = 1;
    if (w->q) w->handed = answer_held(w, w->handed, is_due, &now);
}

void proxy_waiter_destroy(proxy_waiter *w)
{
    queue_close(w->q);
    w->q = NULL;
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
}
