/*
 * proxy_stager: one helper thread per inference thread (see proxy_stager.h).
 * Two threads and one job at a time: a state under a mutex and one
 * condition variable, broadcast on every change, are enough.
 */
#include "proxy_stager.h"

#include <pthread.h>
#include <stdlib.h>

#include "codec.h"
#include "proxy_taskq.h"

enum stager_state { STAGER_IDLE, STAGER_BUSY, STAGER_STOP };

struct stager {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    enum stager_state state;
    /* The job in hand while BUSY: */
    queue *q;
    queue_new_job *job;
    const void *raw;
    size_t raw_len;
    queue_staged *st;
    char *encoded;
};

static void stage(stager *s)
{
    s->encoded = NULL;
    if (!s->job->image_b64) {
        s->encoded = codec_b64_encode(s->raw, s->raw_len, &s->job->image_b64_len);
        s->job->image_b64 = s->encoded;
    }
    queue_create_begin(s->q, s->job, s->st); /* sends nothing without the text */
}

static void *stager_main(void *arg)
{
    stager *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (s->state == STAGER_IDLE)
            pthread_cond_wait(&s->cv, &s->mu);
        if (s->state == STAGER_STOP) break;
        pthread_mutex_unlock(&s->mu);
        stage(s);
        pthread_mutex_lock(&s->mu);
        s->state = STAGER_IDLE;
        pthread_cond_broadcast(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

int stager_start(stager **out)
{
    stager *s = calloc(1, sizeof *s);
    if (!s) return -1;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->state = STAGER_IDLE;
    if (pthread_create(&s->thread, NULL, stager_main, s)) {
        pthread_cond_destroy(&s->cv);
        pthread_mutex_destroy(&s->mu);
        free(s);
        return PROXY_ERR_THREAD;
    }
    *out = s;
    return 0;
}

void stager_begin(stager *s, queue *q, queue_new_job *job, const void *raw, size_t raw_len,
                  queue_staged *st)
{
    pthread_mutex_lock(&s->mu);
    s->q = q;
    s->job = job;
    s->raw = raw;
    s->raw_len = raw_len;
    s->st = st;
    s->state = STAGER_BUSY;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

char *stager_wait(stager *s)
{
    pthread_mutex_lock(&s->mu);
    while (s->state == STAGER_BUSY)
        pthread_cond_wait(&s->cv, &s->mu);
    char *encoded = s->encoded;
    s->encoded = NULL;
    pthread_mutex_unlock(&s->mu);
    return encoded;
}

void stager_stop(stager *s)
{
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->state = STAGER_STOP;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}
