/*
 * queue_job: the proxy's side of the queue: creating a job, reading it,
 * and waiting until it is final.
 *
 * Creating a job is one script: it checks that no key of the fresh random
 * id exists (an atomic SET NX over all of them), applies the backlog
 * bound, and writes image, status and the LPUSH in the same step; the
 * proxy answers only after it returned (and, with REDIS_MIN_REPLICAS,
 * after WAIT said enough replicas hold it). The proxy sends the image
 * first, while its model computes (queue_create_begin: SET NX with a short
 * TTL, the answer read later), and a second script makes it a job
 * (queue_create_finish). Reading a job is one script
 * too (its hash, result and whether its image exists), and its reply is
 * parsed by code the fuzzer reaches without Redis (queue_parse_job_reply).
 * Waiting is a BLPOP on the jobs' done:{id} markers and a wake key.
 */
#include "queue_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define CREATE_TRIES 64

/* n characters of [a-z0-9], uniformly: bytes >= 252 are rejected so that
 * 252 = 7 * 36 maps evenly. */
static int random_id(char *out, int n)
{
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    unsigned char buf[64];
    int filled = 0;
    while (filled < n) {
        ssize_t got = getrandom(buf, sizeof buf, 0);
        if (got < 0) {
            if (errno == EINTR) continue;
            return QUEUE_ERR_IO;
        }
        for (ssize_t i = 0; i < got && filled < n; i++)
            if (buf[i] < 252) out[filled++] = alphabet[buf[i] % 36];
    }
    out[n] = '\0';
    return 0;
}

int queue_create_job(queue *q, const queue_new_job *job, char *id_out, size_t id_cap)
{
    if (!job || !job->image_b64 || job->id_len < QUEUE_ID_MIN || job->id_len > QUEUE_ID_MAX ||
        id_cap < (size_t)job->id_len + 1)
        return qi_fail(q, QUEUE_ERR_INVALID, "bad job arguments");
    char id[QUEUE_ID_MAX + 1], max[24], now[24];
    struct qi_job_keys k;
    snprintf(max, sizeof max, "%ld", job->max_backlog > 0 ? job->max_backlog : 0L);
    for (int tries = 0; tries < CREATE_TRIES; tries++) {
        if (random_id(id, job->id_len)) return qi_fail(q, QUEUE_ERR_IO, "getrandom failed");
        qi_job_keys(&k, id, NULL);
        snprintf(now, sizeof now, "%lld", (long long)qi_now_ms(CLOCK_REALTIME));
        const char *args[14] = {k.job,
                                k.image,
                                k.result,
                                q->qname,
                                k.done,
                                id,
                                job->image_b64,
                                q->ttl,
                                max,
                                now,
                                job->sync_label ? job->sync_label : "",
                                job->sync_model ? job->sync_model : "",
                                job->sync_top5 ? job->sync_top5 : "",
                                job->callback_url ? job->callback_url : ""};
        size_t lens[14];
        for (int i = 0; i < 14; i++)
            lens[i] = i == 6 ? job->image_b64_len : strlen(args[i]);
        redisReply *r = NULL;
        long long v = 0;
        int rc = qi_script(q, S_CREATE, 5, 14, args, lens, &r);
        if (rc) return rc;
        rc = qi_reply_int(q, r, &v);
        freeReplyObject(r);
        if (rc) return rc;
        if (v == -1) return qi_fail(q, QUEUE_ERR_FULL, "backlog at its bound of %s jobs", max);
        if (v == 1) {
            if ((rc = qi_replicated(q, "the new job"))) return rc;
            memcpy(id_out, id, (size_t)job->id_len + 1);
            return 0;
        }
    }
    return qi_fail(q, QUEUE_ERR_BUSY, "no free job id of length %d after %d tries", job->id_len,
                   CREATE_TRIES);
}

void queue_create_begin(queue *q, const queue_new_job *job, queue_staged *st)
{
    char ttl[16];
    struct qi_job_keys k;
    st->sent = 0;
    if (!job || !job->image_b64 || job->id_len < QUEUE_ID_MIN || job->id_len > QUEUE_ID_MAX ||
        random_id(st->id, job->id_len))
        return; /* finish does it all the usual way, and says what went wrong */
    qi_job_keys(&k, st->id, NULL);
    snprintf(ttl, sizeof ttl, "%d",
             q->job_ttl < QUEUE_STAGE_TTL_S ? q->job_ttl : QUEUE_STAGE_TTL_S);
    const char *argv[6] = {"SET", k.image, job->image_b64, "NX", "EX", ttl};
    size_t lens[6] = {3, strlen(k.image), job->image_b64_len, 2, 2, strlen(ttl)};
    st->sent = qi_send(q, 6, argv, lens) == 0;
}

/* The answer to begin's SET: 0 and *staged, or the error queue_create_job
 * would have met (the connection, -OOM, -READONLY). */
static int staged_answer(queue *q, queue_staged *st, int *staged)
{
    redisReply *r = NULL;
    st->sent = 0;
    int rc = qi_receive(q, &r);
    if (rc) return rc;
    *staged = r->type == REDIS_REPLY_STATUS; /* +OK; nil when the id was taken */
    freeReplyObject(r);
    return 0;
}

int queue_create_finish(queue *q, const queue_new_job *job, queue_staged *st, char *id_out,
                        size_t id_cap)
{
    int staged = 0;
    if (!st->sent) return queue_create_job(q, job, id_out, id_cap);
    int rc = staged_answer(q, st, &staged);
    if (rc) return rc;
    if (!staged || id_cap < (size_t)job->id_len + 1)
        return queue_create_job(q, job, id_out, id_cap);
    char max[24], now[24];
    struct qi_job_keys k;
    qi_job_keys(&k, st->id, NULL);
    snprintf(max, sizeof max, "%ld", job->max_backlog > 0 ? job->max_backlog : 0L);
    snprintf(now, sizeof now, "%lld", (long long)qi_now_ms(CLOCK_REALTIME));
    const char *args[13] = {k.job,
                            k.image,
                            k.result,
                            q->qname,
                            k.done,
                            st->id,
                            q->ttl,
                            max,
                            now,
                            job->sync_label ? job->sync_label : "",
                            job->sync_model ? job->sync_model : "",
                            job->sync_top5 ? job->sync_top5 : "",
                            job->callback_url ? job->callback_url : ""};
    redisReply *r = NULL;
    long long v = 0;
    if ((rc = qi_script(q, S_REGISTER, 5, 13, args, NULL, &r))) return rc;
    rc = qi_reply_int(q, r, &v);
    freeReplyObject(r);
    if (rc) return rc;
    if (v == -1) return qi_fail(q, QUEUE_ERR_FULL, "backlog at its bound of %s jobs", max);
    /* The id turned out taken (its image was deleted), or the image outlived
     * its short TTL: the usual way, with a fresh id. */
    if (v != 1) return queue_create_job(q, job, id_out, id_cap);
    if ((rc = qi_replicated(q, "the new job"))) return rc;
    memcpy(id_out, st->id, (size_t)job->id_len + 1);
    return 0;
}

void queue_create_abandon(queue *q, queue_staged *st)
{
    int staged = 0;
    if (!st->sent || staged_answer(q, st, &staged) || !staged) return;
    struct qi_job_keys k;
    qi_job_keys(&k, st->id, NULL);
    redisReply *r = NULL;
    if (!qi_command(q, 2, (const char *[]){"DEL", k.image}, NULL, &r)) freeReplyObject(r);
}

void queue_job_clear(queue_job *job)
{
    if (!job) return;
    free(job->label);
    free(job->error);
    free(job->top5);
    free(job->model);
    free(job->sync_label);
    free(job->sync_model);
    free(job->sync_top5);
    free(job->worker);
    free(job->callback_url);
    free(job->webhook_error);
    memset(job, 0, sizeof *job);
}

/* A copy of a reply string, NULL for nil or "". A field met twice (not
 * from Redis, whose hashes have unique fields) keeps the last value. */
static int dup_str(const redisReply *r, char **out)
{
    free(*out);
    *out = NULL;
    if (!r || r->type != REDIS_REPLY_STRING || r->len == 0) return 0;
    *out = strndup(r->str, r->len);
    return *out ? 0 : QUEUE_ERR_NOMEM;
}

static int parse_job(queue *q, const redisReply *r, queue_job *out)
{
    queue_job job = {0};
    int rc = 0;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        r->element[0]->type != REDIS_REPLY_ARRAY || r->element[2]->type != REDIS_REPLY_INTEGER)
        return qi_fail(q, QUEUE_ERR_REPLY, "redis: unexpected job reply");
    const redisReply *h = r->element[0], *res = r->element[1];
    int has_result = res->type == REDIS_REPLY_STRING;
    if (h->elements == 0 && !has_result && r->element[2]->integer == 0)
        return qi_fail(q, QUEUE_ERR_NOTFOUND, "no such job");
    snprintf(job.status, sizeof job.status, "%s", has_result ? "done" : "queued");
    for (size_t i = 0; i + 1 < h->elements && !rc; i += 2) {
        const redisReply *f = h->element[i], *v = h->element[i + 1];
        if (qi_field_is(f, "status")) {
            /* Only a status of the known set: whatever else is in the record. */
            static const char *const known[] = {"queued", "running", "done", "failed", "expired"};
            for (size_t k = 0; k < sizeof known / sizeof known[0]; k++)
                if (qi_field_is(v, known[k]))
                    snprintf(job.status, sizeof job.status, "%s", known[k]);
        } else if (qi_field_is(f, "attempts"))
            job.attempts = (int)qi_str_ll(v);
        else if (qi_field_is(f, "error"))
            rc = dup_str(v, &job.error);
        else if (qi_field_is(f, "top5"))
            rc = dup_str(v, &job.top5);
        else if (qi_field_is(f, "model"))
            rc = dup_str(v, &job.model);
        else if (qi_field_is(f, "sync_label"))
            rc = dup_str(v, &job.sync_label);
        else if (qi_field_is(f, "sync_model"))
            rc = dup_str(v, &job.sync_model);
        else if (qi_field_is(f, "sync_top5"))
            rc = dup_str(v, &job.sync_top5);
        else if (qi_field_is(f, "worker"))
            rc = dup_str(v, &job.worker);
        else if (qi_field_is(f, "inference_ms"))
            job.inference_ms = qi_str_double(v);
        else if (qi_field_is(f, "created"))
            job.created_ms = qi_str_ll(v);
        else if (qi_field_is(f, "started"))
            job.started_ms = qi_str_ll(v);
        else if (qi_field_is(f, "finished"))
            job.finished_ms = qi_str_ll(v);
        else if (qi_field_is(f, "agrees_with_fast"))
            job.agreement = qi_str_ll(v) ? QUEUE_AGREE_YES : QUEUE_AGREE_NO;
        else if (qi_field_is(f, "callback_url"))
            rc = dup_str(v, &job.callback_url);
        else if (qi_field_is(f, "webhook") && v->type == REDIS_REPLY_STRING &&
                 v->len < sizeof job.webhook) {
            memcpy(job.webhook, v->str, v->len);
            job.webhook[v->len] = '\0';
        } else if (qi_field_is(f, "webhook_attempts"))
            job.webhook_attempts = (int)qi_str_ll(v);
        else if (qi_field_is(f, "webhook_error"))
            rc = dup_str(v, &job.webhook_error);
    }
    /* result:{id} is the truth for the label (a seed worker writes only it). */
    if (!rc && has_result) {
        job.label = strndup(res->str, res->len);
        if (!job.label)
            rc = QUEUE_ERR_NOMEM;
        else
            snprintf(job.status, sizeof job.status, "done");
    }
    if (rc) {
        queue_job_clear(&job);
        return qi_fail(q, rc, "out of memory reading a job");
    }
    *out = job;
    return 0;
}

/* hiredis 0.14's reader allocates an array of whatever size a header
 * claims; bytes that do not come from Redis may claim billions. No array can
 * have more elements than the input has bytes. */
struct bounded_reader {
    size_t limit;
    void *(*create_array)(const redisReadTask *, int);
};

static void *bounded_array(const redisReadTask *task, int n)
{
    const struct bounded_reader *b = task->privdata;
    if (n < 0 || (size_t)n > b->limit) return NULL; /* the reader reports an error */
    return b->create_array(task, n);
}

int queue_parse_job_reply(const char *resp, size_t len, queue_job *out, char *err, size_t errlen)
{
    queue tmp = {0};
    redisReader *rd = redisReaderCreate();
    redisReplyObjectFunctions fns;
    struct bounded_reader bounds = {.limit = len};
    void *reply = NULL;
    int rc = QUEUE_ERR_NOMEM;
    if (!rd) goto out;
    fns = *rd->fn;
    bounds.create_array = fns.createArray;
    fns.createArray = bounded_array;
    rd->fn = &fns;
    rd->privdata = &bounds;
    rc = QUEUE_ERR_REPLY;
    if (redisReaderFeed(rd, resp, len) != REDIS_OK || redisReaderGetReply(rd, &reply) != REDIS_OK) {
        qi_fail(&tmp, rc, "not a RESP reply: %s", rd->errstr);
        goto out;
    }
    if (!reply) {
        qi_fail(&tmp, rc, "an incomplete RESP reply");
        goto out;
    }
    rc = parse_job(&tmp, reply, out);
out:
    if (reply) freeReplyObject(reply);
    if (rd) redisReaderFree(rd);
    if (err && errlen) snprintf(err, errlen, "%s", tmp.err);
    return rc;
}

int queue_get_job(queue *q, const char *id, queue_job *out)
{
    if (!queue_id_valid(id)) return qi_fail(q, QUEUE_ERR_INVALID, "bad job id");
    struct qi_job_keys k;
    qi_job_keys(&k, id, NULL);
    const char *args[3] = {k.job, k.result, k.image};
    redisReply *r = NULL;
    int rc = qi_script(q, S_GET, 3, 3, args, NULL, &r);
    if (rc) return rc;
    rc = parse_job(q, r, out);
    freeReplyObject(r);
    return rc;
}

int queue_status_final(const char *status)
{
    return !strcmp(status, "done") || !strcmp(status, "failed") || !strcmp(status, "expired");
}

int queue_wait_any(queue *q, const char *wake_key, const char *const *ids, int n, double block_s,
                   int *which)
{
    if (!wake_key || n < 0 || (n && !ids) || !which || !(block_s > 0))
        return qi_fail(q, QUEUE_ERR_INVALID, "bad wait arguments");
    char secs[32], (*keys)[KEY_MAX] = calloc((size_t)n + 1, sizeof *keys);
    const char **argv = calloc((size_t)n + 3, sizeof *argv);
    redisReply *r = NULL, *back = NULL;
    int rc = QUEUE_ERR_NOMEM;
    if (!keys || !argv) {
        qi_fail(q, rc, "no memory to wait for %d jobs", n);
        goto out;
    }
    argv[0] = "BLPOP";
    for (int i = 0; i < n; i++) {
        qi_key(keys[i], "done:", ids[i]);
        argv[i + 1] = keys[i];
    }
    argv[n + 1] = wake_key;
    snprintf(secs, sizeof secs, "%.3f", block_s < 0.001 ? 0.001 : block_s);
    argv[n + 2] = secs;
    if ((rc = qi_blocking(q, block_s, n + 3, argv, &r))) goto out;
    *which = -1;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_STRING)
        goto out; /* nil: the time passed */
    const char *k = r->element[0]->str;
    *which = n;
    for (int i = 0; i < n && *which == n; i++)
        if (!strcmp(k, keys[i])) *which = i;
    /* Give the marker back: other proxies' waiters may hold this job too. */
    if (*which < n) rc = qi_script(q, S_NOTIFY, 1, 1, (const char *[]){k}, NULL, &back);
out:
    if (back) freeReplyObject(back);
    if (r) freeReplyObject(r);
    free(argv);
    free(keys);
    return rc;
}

int queue_wake(queue *q, const char *wake_key)
{
    if (!wake_key) return qi_fail(q, QUEUE_ERR_INVALID, "no wake key");
    redisReply *r = NULL;
    int rc = qi_script(q, S_NOTIFY, 1, 1, (const char *[]){wake_key}, NULL, &r);
    if (r) freeReplyObject(r);
    return rc;
}
