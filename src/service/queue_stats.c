/*
 * queue_stats: the queue's counts for /metrics and `tandem up`, and the
 * webhook schedule (webhook.c delivers, this keeps the books).
 *
 * The counts are one script (the lengths, the metrics hash and the live
 * workers) so that a scrape sees one moment. The webhook schedule is the
 * zset webhooks:due: a deliverer claims the due ids by re-scoring them to
 * the end of a lease (one that dies mid-attempt only delays them), and
 * records each attempt's outcome on the job and in the metrics hash.
 */
#include "queue_internal.h"

#include <stdio.h>
#include <string.h>

static int count_field(const redisReply *h, const char *name, long long *out)
{
    for (size_t i = 0; i + 1 < h->elements; i += 2)
        if (qi_field_is(h->element[i], name)) {
            *out = qi_str_ll(h->element[i + 1]);
            return 1;
        }
    return 0;
}

int queue_length(queue *q, long long *out)
{
    const char *argv[2] = {"LLEN", q->qname};
    redisReply *r = NULL;
    int rc = qi_command(q, 2, argv, NULL, &r);
    if (rc) return rc;
    rc = qi_reply_int(q, r, out);
    freeReplyObject(r);
    return rc;
}

int queue_get_stats(queue *q, queue_stats *out)
{
    const char *args[4] = {q->qname, q->kdead, q->kmetrics, "workers"};
    redisReply *r = NULL;
    int rc = qi_script(q, S_STATS, 4, 4, args, NULL, &r);
    if (rc) return rc;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 5 ||
        r->element[2]->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(r);
        return qi_fail(q, QUEUE_ERR_REPLY, "redis: unexpected stats reply");
    }
    queue_stats s = {0};
    s.queue_length = r->element[0]->integer;
    s.dead_length = r->element[1]->integer;
    s.workers_alive = r->element[3]->integer;
    s.processing = r->element[4]->integer;
    const redisReply *h = r->element[2];
    count_field(h, "processed", &s.processed);
    count_field(h, "failed", &s.failed);
    count_field(h, "expired", &s.expired);
    count_field(h, "retried", &s.retried);
    count_field(h, "invalid", &s.invalid);
    count_field(h, "inference_count", &s.inference_count);
    count_field(h, "agree", &s.agree);
    count_field(h, "upgrade", &s.upgrade);
    count_field(h, "webhook_delivered", &s.webhook_delivered);
    count_field(h, "webhook_retried", &s.webhook_retried);
    count_field(h, "webhook_failed", &s.webhook_failed);
    for (size_t i = 0; i + 1 < h->elements; i += 2)
        if (qi_field_is(h->element[i], "inference_ms_sum"))
            s.inference_ms_sum = qi_str_double(h->element[i + 1]);
    long long cum = 0;
    for (int i = 0; i < QUEUE_HIST_BUCKETS; i++) {
        char name[32];
        long long v = 0;
        qi_bucket_field(name, sizeof name, i);
        count_field(h, name, &v);
        cum += v;
        s.hist[i] = cum;
    }
    freeReplyObject(r);
    *out = s;
    return 0;
}

int queue_webhook_claim(queue *q, int64_t now_ms, int64_t lease_ms, int max,
                        char (*ids)[QUEUE_ID_MAX + 1], int *n, int64_t *next_due_ms)
{
    if (!ids || !n || !next_due_ms || max < 1 || lease_ms < 1)
        return qi_fail(q, QUEUE_ERR_INVALID, "bad claim arguments");
    char now[24], lease[24], maxs[16];
    snprintf(now, sizeof now, "%lld", (long long)now_ms);
    snprintf(lease, sizeof lease, "%lld", (long long)lease_ms);
    snprintf(maxs, sizeof maxs, "%d", max);
    const char *args[5] = {"webhooks:due", "webhooks:wake", now, lease, maxs};
    redisReply *r = NULL;
    int rc = qi_script(q, S_HOOK_CLAIM, 2, 5, args, NULL, &r);
    if (rc) return rc;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(r);
        return qi_fail(q, QUEUE_ERR_REPLY, "redis: unexpected webhook claim reply");
    }
    const redisReply *list = r->element[0];
    int k = 0;
    for (size_t i = 0; i < list->elements && k < max; i++) {
        const redisReply *e = list->element[i];
        /* Anything that is not one of our ids cannot be delivered: it stays
         * leased, out of the way, and is never claimed again before its lease ends. */
        if (e->type != REDIS_REPLY_STRING || e->len > QUEUE_ID_MAX) continue;
        memcpy(ids[k], e->str, e->len);
        ids[k][e->len] = '\0';
        if (queue_id_valid(ids[k])) k++;
    }
    *n = k;
    *next_due_ms = r->element[1]->type == REDIS_REPLY_STRING ? qi_str_ll(r->element[1]) : -1;
    freeReplyObject(r);
    return 0;
}

int queue_webhook_wait(queue *q, double block_s)
{
    char secs[32];
    snprintf(secs, sizeof secs, "%.3f", block_s < 0.001 ? 0.001 : block_s);
    const char *argv[3] = {"BLPOP", "webhooks:wake", secs};
    redisReply *r = NULL;
    int rc = qi_blocking(q, block_s, 3, argv, &r);
    if (rc) return rc;
    freeReplyObject(r);
    return 0;
}

int queue_webhook_record(queue *q, const char *id, int outcome, int attempts, const char *error,
                         int64_t due_ms)
{
    static const char *const names[] = {
        [QUEUE_HOOK_DELIVERED] = "delivered",
        [QUEUE_HOOK_RETRY] = "retry",
        [QUEUE_HOOK_FAILED] = "failed",
        [QUEUE_HOOK_DROPPED] = "dropped",
    };
    if (!queue_id_valid(id) || outcome < QUEUE_HOOK_DELIVERED || outcome > QUEUE_HOOK_DROPPED)
        return qi_fail(q, QUEUE_ERR_INVALID, "bad webhook record arguments");
    struct qi_job_keys k;
    char att[16], due[24];
    qi_job_keys(&k, id, NULL);
    snprintf(att, sizeof att, "%d", attempts);
    snprintf(due, sizeof due, "%lld", (long long)due_ms);
    const char *args[8] = {k.job, "webhooks:due",     q->kmetrics, id, names[outcome],
                           att,   error ? error : "", due};
    redisReply *r = NULL;
    int rc = qi_script(q, S_HOOK_RECORD, 3, 8, args, NULL, &r);
    if (rc) return rc;
    freeReplyObject(r);
    return 0;
}
