/*
 * queue: every Redis operation of the job system, for the proxy and the workers.
 *
 * Keys (the seed's three stay as they were, so seed clients and dashboards work):
 *
 *   queue:jobs          list    job ids (the name is QUEUE_NAME); the proxy LPUSHes,
 *                               workers BLMOVE from the RIGHT
 *   image:{id}          string  base64 of the image file, EX job_ttl; deleted when the job
 *                               is done (or its TTL cut to image_keep_s, IMAGE_KEEP_DONE);
 *                               EX QUEUE_STAGE_TTL_S while the proxy computes, before its job
 *                               exists (queue_create_begin)
 *   result:{id}         string  the async label, EX job_ttl
 *   job:{id}            hash    status queued|running|done|failed|expired, attempts,
 *                               deaths (workers that died while running it), error,
 *                               created/started/finished (ms since the epoch), sync_label,
 *                               sync_model, sync_top5, label, top5, model, inference_ms, worker,
 *                               agrees_with_fast (1|0, set at completion when sync_label exists),
 *                               callback_url, webhook (pending|delivered|failed),
 *                               webhook_attempts, webhook_error; EX job_ttl
 *   done:{id}           list    one element once the job is final (done, failed, expired);
 *                               what GET /job/{id}?wait= blocks on; EX 60 s
 *   processing:{worker} list    the jobs a worker holds: one, or a batch (reliable-queue pattern)
 *   worker:{worker}     string  heartbeat, EX heartbeat_ttl
 *   workers             set     worker ids known to be running or to have run
 *   queue:dead          list    ids of jobs given up (max_attempts failures, max_deaths
 *                               worker deaths) and queue entries that are no job id (their
 *                               first QUEUE_BAD_ENTRY_KEEP bytes); newest first, at most
 *                               dead_max entries, entries whose job record is gone or older
 *                               than dead_age_s dropped at each push, EX dead_age_s
 *   metrics:workers     hash    processed, failed, expired, retried, invalid (entries that
 *                               are no job id), inference_ms_sum, inference_count,
 *                               bucket_{le} (histogram of inference ms), agree, upgrade (slow
 *                               top-1 same as / different from the fast one),
 *                               webhook_delivered, webhook_retried, webhook_failed: a
 *                               fixed set of fields, so bounded
 *   webhooks:due        zset    ids of final jobs with a callback_url whose webhook is due,
 *                               scored by the time (ms since the epoch) of the next attempt;
 *                               a claimed id is re-scored to the end of its lease, so a
 *                               deliverer that dies mid-attempt only delays it
 *   webhooks:wake       list    one element when a webhook became due (what deliverers block on)
 *
 * The dead-letter and metrics keys follow the queue's name: BASE is
 * QUEUE_NAME less a trailing ":jobs" (QUEUE_NAME itself when it has none);
 * the dead-letter list is BASE:dead and the metrics hash BASE:metrics,
 * except for BASE "queue", the default, whose metrics hash keeps the seed's
 * name metrics:workers. So queue:jobs gives queue:dead and metrics:workers
 * (as above), and tenant1:jobs gives tenant1:dead and tenant1:metrics.
 *
 * Multi-key changes run as Lua scripts, so each is atomic: a job is created
 * (id reserved against every key of that id, image, status and LPUSH) in one
 * step before the proxy answers, and a job's completion (result, status,
 * metrics, LREM from the processing list, notification) is one step too.
 *
 * A queue handle owns one hiredis connection and is used by one thread at a
 * time (the proxy keeps one per thread; a forked child opens its own). It
 * never gives up: a call made while Redis is away fails at once with
 * QUEUE_ERR_IO, and the next call after a back-off delay (100 ms doubling to
 * 5 s) reconnects by itself. queue_errstr() says what went wrong last.
 * queue_endpoint() says which Redis it talks to (the master the sentinels
 * named last, with sentinels).
 *
 * The code is in queue_conn.c (connection, commands, options, key names),
 * queue_script.c (the Lua scripts of lua/), queue_job.c (proxy side),
 * queue_worker.c (worker side) and queue_stats.c (counts, webhook
 * schedule); queue_internal.h is what they share.
 */
#ifndef TANDEM_QUEUE_H
#define TANDEM_QUEUE_H

#include <stddef.h>
#include <stdint.h>

#include "errors.h"

typedef enum {
    QUEUE_OK = 0,
    QUEUE_ERR_IO = ERR_BASE_QUEUE - 1,       /* Redis unreachable, timed out or the connection broke */
    QUEUE_ERR_REPLY = ERR_BASE_QUEUE - 2,    /* Redis answered with an error or an unexpected reply */
    QUEUE_ERR_NOTFOUND = ERR_BASE_QUEUE - 3, /* no such job (or its image has expired) */
    QUEUE_ERR_INVALID = ERR_BASE_QUEUE - 4,  /* bad argument (e.g. a job id with odd characters) */
    QUEUE_ERR_FULL = ERR_BASE_QUEUE - 5,     /* backlog at its bound: job not queued */
    QUEUE_ERR_EMPTY = ERR_BASE_QUEUE - 6,    /* a blocking take timed out with nothing to do */
    QUEUE_ERR_NOMEM = ERR_BASE_QUEUE - 7,    /* an allocation failed or a size cap was hit */
    QUEUE_ERR_BUSY = ERR_BASE_QUEUE - 8,     /* could not find a free job id after many tries */
    QUEUE_ERR_OOM = ERR_BASE_QUEUE - 9       /* Redis refused a write: it is at its maxmemory */
} queue_status;

#define QUEUE_ID_MIN 4
#define QUEUE_ID_MAX 32
#define QUEUE_WORKER_ID_MAX 96
#define QUEUE_HIST_BUCKETS 12 /* inference-time histogram, the last one is +Inf */
/* Bytes of a queue entry that is no job id kept in queue:dead. */
#define QUEUE_BAD_ENTRY_KEEP 128

/* Upper bounds (ms) of the inference-time histogram buckets; the last is +Inf (0 here). */
extern const double queue_hist_bounds[QUEUE_HIST_BUCKETS];

typedef struct queue queue;

typedef struct queue_options {
    const char *host;
    int port;
    int timeout_ms;         /* connect and command timeout (not counting a blocking wait) */
    const char *queue_name; /* "queue:jobs" */
    int job_ttl;            /* seconds for image:, result: and job: keys */
    const char *username;   /* ACL user for AUTH, NULL or "" for the default user */
    const char *password;   /* AUTH password, NULL or "" for none */
    /* High availability: with sentinels ("host:port,..."), host/port are
     * ignored; the master of master_name is found through them at every
     * (re)connection and followed across failovers (a connection lost, or a
     * -READONLY reply from a master that was demoted). */
    const char *sentinels;
    const char *master_name;
    const char *sentinel_password;
    /* Durability: with min_replicas > 0 a new job, and a result, count only
     * once that many replicas acknowledged them (WAIT, wait_timeout_ms). */
    int min_replicas;
    int wait_timeout_ms;
    /* Worker side; 0 picks the default. */
    int max_deaths;   /* worker deaths while running one job before it is given up (3) */
    long dead_max;    /* entries kept in queue:dead (10000) */
    int dead_age_s;   /* seconds a queue:dead entry is kept (86400) */
    int image_keep_s; /* seconds image:{id} stays once its job is done; 0 deletes it */
} queue_options;

struct config;
/* Fills o from the REDIS_* and queue settings of cfg (pointers into cfg). */
void queue_options_from_config(const struct config *cfg, queue_options *o);

const char *queue_strerror(int status);

/* Creates the handle and tries to connect; a Redis that is down is not an
 * error here (calls fail with QUEUE_ERR_IO until it is back). Fails only on
 * bad options or memory. */
int queue_open(const queue_options *opt, queue **out);
void queue_close(queue *q);
/* The last error's message, "" if none. */
const char *queue_errstr(const queue *q);
/* "host:port" of the Redis this handle last connected to (or will try). */
const char *queue_endpoint(const queue *q);
/* How many connections this handle has made so far: a caller that sees it
 * grow knows that commands may have been lost with the old connection. */
unsigned long queue_connects(const queue *q);
/* PING; 0 when Redis answers. */
int queue_ping(queue *q);

/* 1 if id is QUEUE_ID_MIN..QUEUE_ID_MAX characters of [a-z0-9]. */
int queue_id_valid(const char *id);

/* ---- proxy side ---- */

typedef struct queue_new_job {
    const char *image_b64; /* base64 of the image file (the seed's image:{id} value): */
    size_t image_b64_len;  /* its length (image_b64 need not be NUL-terminated) */
    const char *sync_label; /* may be NULL */
    const char *sync_model; /* may be NULL */
    const char *sync_top5;  /* JSON text, may be NULL */
    const char *callback_url; /* webhook destination (already checked), may be NULL */
    int id_len;             /* QUEUE_ID_MIN..QUEUE_ID_MAX */
    long max_backlog;       /* QUEUE_ERR_FULL when queue:jobs holds this many; 0 = no bound */
} queue_new_job;

/* Reserves a fresh random id and, atomically, stores image, status record and
 * LPUSHes the id. id_out receives id_len characters and a NUL. */
int queue_create_job(queue *q, const queue_new_job *job, char *id_out, size_t id_cap);

/* queue_create_job in two steps, so that the image travels while the caller
 * computes the sync fields: queue_create_begin picks the id and sends
 * SET image:{id} NX EX QUEUE_STAGE_TTL_S without waiting for the answer;
 * queue_create_finish (job now with its sync fields; image, id_len,
 * max_backlog and callback_url as given to begin) reads that answer and
 * makes the image a job in one script (deleting it when the queue is full),
 * with the outcomes of queue_create_job, which it falls back to when the
 * image could not be set aside (the id taken, Redis away when begin ran).
 * Between the two nothing else may use q; a caller that will not finish
 * calls queue_create_abandon, which reads the answer and deletes the image.
 * An image whose proxy died in between expires after QUEUE_STAGE_TTL_S. */
#define QUEUE_STAGE_TTL_S 60
typedef struct queue_staged {
    int sent; /* 1 while the SET's answer is unread */
    char id[QUEUE_ID_MAX + 1];
} queue_staged;

void queue_create_begin(queue *q, const queue_new_job *job, queue_staged *st);
int queue_create_finish(queue *q, const queue_new_job *job, queue_staged *st, char *id_out,
                        size_t id_cap);
void queue_create_abandon(queue *q, queue_staged *st);

typedef struct queue_job {
    char status[16]; /* queued|running|done|failed|expired; "done" for a seed-style
                        job with only result:{id}, "queued" with only image:{id} */
    int attempts;
    char *label;         /* result:{id}, NULL while there is none */
    char *error;         /* last failure's reason, or NULL */
    char *top5;          /* JSON array text [{"label":..,"score":..},..], or NULL */
    char *model;         /* async model name, or NULL */
    char *sync_label;    /* or NULL */
    char *sync_model;    /* or NULL */
    char *sync_top5;     /* or NULL */
    char *worker;        /* the worker that ran it last, or NULL */
    double inference_ms; /* async inference time, 0 if not done */
    int64_t created_ms, started_ms, finished_ms; /* 0 if unknown */
    int agreement;      /* QUEUE_AGREE_*: the slow top-1 against the fast one */
    char *callback_url; /* or NULL */
    char webhook[16];   /* pending|delivered|failed, "" when there is no callback */
    int webhook_attempts;
    char *webhook_error; /* the last failed attempt's reason, or NULL */
} queue_job;

enum {
    QUEUE_AGREE_UNKNOWN = 0, /* not done, or no fast answer was recorded */
    QUEUE_AGREE_YES = 1,     /* same top-1 label: the fast answer is confirmed */
    QUEUE_AGREE_NO = 2       /* a different top-1: the slow answer upgrades it */
};

/* QUEUE_ERR_NOTFOUND when no key of the job exists. Free with queue_job_clear. */
int queue_get_job(queue *q, const char *id, queue_job *out);
/* The part of queue_get_job that reads Redis's answer, here the raw RESP
 * bytes of it (for tests and the fuzzer): QUEUE_ERR_REPLY when they are no
 * complete reply of the expected shape. err receives the reason. */
int queue_parse_job_reply(const char *resp, size_t len, queue_job *out, char *err, size_t errlen);
void queue_job_clear(queue_job *job);

/* Blocks this connection until one of the jobs ids[0..n) becomes final
 * (done, failed, expired: its done:{id} marker exists), queue_wake() is
 * called on wake_key, or block_s seconds pass. *which is then the index of
 * a final job, n for a wake-up, or -1 when the time passed. A job's marker
 * stays for every other waiter; a wake-up is consumed. */
int queue_wait_any(queue *q, const char *wake_key, const char *const *ids, int n,
                   double block_s, int *which);
int queue_wake(queue *q, const char *wake_key);

/* 1 for a status no worker will change any more: done, failed, expired. */
int queue_status_final(const char *status);

typedef struct queue_stats {
    long long queue_length;  /* LLEN queue:jobs */
    long long dead_length;   /* LLEN queue:dead */
    long long workers_alive; /* members of `workers` whose heartbeat key exists */
    long long processing;    /* jobs held in processing lists of live workers */
    long long processed, failed, expired, retried, invalid;
    double inference_ms_sum;
    long long inference_count;
    long long hist[QUEUE_HIST_BUCKETS]; /* cumulative counts, Prometheus style */
    long long agree, upgrade;           /* completions against the fast answer */
    long long webhook_delivered, webhook_retried, webhook_failed;
} queue_stats;

int queue_length(queue *q, long long *out);
int queue_get_stats(queue *q, queue_stats *out);

/* ---- worker side ---- */

/* Blocks up to timeout_s for a job: BLMOVE queue RIGHT -> processing:{worker} LEFT.
 * QUEUE_ERR_EMPTY on timeout. An entry that is no valid job id (another
 * producer's) is taken off the processing list, pushed onto queue:dead with
 * a job:{entry} record saying why, and counted (metrics `invalid`); the call
 * then returns QUEUE_ERR_INVALID and queue_errstr() describes the entry. */
int queue_take(queue *q, const char *worker, double timeout_s, char *id_out, size_t id_cap);

enum {
    QUEUE_IMAGE_OK,   /* image holds the job's image */
    QUEUE_IMAGE_GONE, /* image:{id} has expired: queue_job_expired */
    QUEUE_IMAGE_BAD   /* image:{id} cannot be read (not a string); queue_errstr says why */
};

typedef struct queue_start {
    int skip;         /* 1: no work (it has a result, or was given up) */
    int attempts;     /* this attempt's number */
    int image_state;  /* QUEUE_IMAGE_*, when the job is to run */
    char *image;      /* base64 text of image:{id}, NUL-terminated, or NULL */
    size_t image_len;
} queue_start;

/* Marks the job running, counts the attempt and returns its image, in one
 * round trip (the image is read right after the script that starts it).
 * out->skip is set to 1 when the job needs no work: it already has a
 * result (it is then taken off the processing list) or it was given up
 * after max_attempts (failed, dead-lettered). Free with queue_start_clear. */
int queue_job_start(queue *q, const char *id, const char *worker, int max_attempts,
                    queue_start *out);
void queue_start_clear(queue_start *s);

/* A batch: after queue_take gave ids[0], moves up to max - 1 more ids from
 * the queue into processing:{worker} without blocking and starts every job
 * of the batch as queue_job_start does, ids[0] included, in one atomic step,
 * then reads the images of those to run.
 * *n = 0 when ids[0] is to run alone (queue_job_start then): a job whose
 * worker died while running it (so one that kills workers cannot count
 * deaths against others), or keys of another type. The batch also stops
 * before such a job or an entry that is no job id. Otherwise ids[0..*n) and
 * starts[0..*n) are the jobs taken, in queue order, each to be freed with
 * queue_start_clear (also when an error is returned: *n says how many). */
int queue_take_more(queue *q, const char *worker, int max_attempts, int max,
                    char (*ids)[QUEUE_ID_MAX + 1], queue_start *starts, int *n);

typedef struct queue_result {
    const char *label;
    const char *top5; /* JSON text */
    const char *model;
    double inference_ms;
} queue_result;

/* Stores the result once (SET result:{id} NX semantics: an existing result is
 * kept), marks done, counts metrics, takes the id off processing:{worker},
 * and deletes image:{id} (or cuts its TTL to image_keep_s). When the job
 * holds a fast answer, records whether the label agrees with it
 * (agrees_with_fast, counted as agree or upgrade). Every final state (done
 * here, failed, expired) of a job with a callback_url schedules its webhook. */
int queue_job_done(queue *q, const char *id, const char *worker, const queue_result *res);

/* Records a failure: below max_attempts the job goes back to the far end of
 * the queue (status queued); at max_attempts it is failed and pushed onto
 * queue:dead. Either way it leaves processing:{worker}. *final = 1 if failed. */
int queue_job_fail(queue *q, const char *id, const char *worker, const char *reason,
                   int max_attempts, int *final);

/* A job whose keys Redis refuses to handle (another producer's job:{id} of
 * another type: WRONGTYPE), which would otherwise come back for ever: off
 * processing:{worker}, onto queue:dead with a job:{id} record giving why
 * (unless a job:{id} key exists), counted as invalid. */
int queue_job_refuse(queue *q, const char *worker, const char *id, const char *why);

/* The image is gone: status expired, counted, off processing:{worker}. */
int queue_job_expired(queue *q, const char *id, const char *worker);

/* Refreshes worker:{worker} (EX ttl_s) and adds the worker to `workers`. */
int queue_heartbeat(queue *q, const char *worker, const char *info, int ttl_s);
/* A worker that exits cleanly: its heartbeat and set entry go. */
int queue_worker_gone(queue *q, const char *worker);

/* Moves every job of processing:{worker} back to the consuming end of the
 * queue (next to be taken), in one script, status back to queued.
 * refund = 1 gives back the attempt the worker had started (it was killed
 * from outside or stopped: not the job's fault); refund = 0 keeps it counted
 * (the worker crashed, perhaps because of the job), so a job that crashes
 * every worker is given up after max_attempts like any failing job. This is
 * also what a live worker does with its own list after a Redis error (a job
 * may have been moved into it by a command whose answer was lost). */
int queue_requeue_worker(queue *q, const char *worker, int refund, long long *moved);

/* The same for a worker process that died: each job it was running counts a
 * death (job:{id} deaths, error = why); a job at max_deaths is failed and
 * dead-lettered instead of requeued (*given_up counts those), so a job that
 * kills every worker that takes it (OOM) or stalls it cannot loop forever. */
int queue_requeue_dead(queue *q, const char *worker, int refund, const char *why, long long *moved,
                       long long *given_up);

/* For each known worker whose heartbeat key has expired: queue_requeue_dead
 * its processing list (attempts refunded: a vanished host is not the job's
 * fault, but the death counts) and forget it. Safe to run from any host at
 * any time. */
int queue_reap_dead_workers(queue *q, long long *moved);

/* ---- webhook delivery (webhook.c) ---- */

/* Claims up to max ids of webhooks:due whose time has come (now_ms, ms since
 * the epoch) by re-scoring them to now_ms + lease_ms. *next_due_ms: the
 * earliest score left in the set afterwards, or -1 when it is empty. */
int queue_webhook_claim(queue *q, int64_t now_ms, int64_t lease_ms, int max,
                        char (*ids)[QUEUE_ID_MAX + 1], int *n, int64_t *next_due_ms);

/* Blocks up to block_s on webhooks:wake; 0 whether woken or timed out. */
int queue_webhook_wait(queue *q, double block_s);

enum {
    QUEUE_HOOK_DELIVERED, /* answered 2xx: done */
    QUEUE_HOOK_RETRY,     /* failed, due again at due_ms */
    QUEUE_HOOK_FAILED,    /* failed for good (attempts spent, or the URL is refused now) */
    QUEUE_HOOK_DROPPED    /* the job is gone or has no callback: forget it */
};

/* Records an attempt's outcome on the job (webhook, webhook_attempts,
 * webhook_error), counts it in metrics:workers and reschedules or removes
 * the id in webhooks:due. */
int queue_webhook_record(queue *q, const char *id, int outcome, int attempts, const char *error,
                         int64_t due_ms);

#endif
