/*
 * queue_worker: the worker's side of the queue (worker.c), and the reaping
 * of dead workers' jobs (supervisor.c).
 *
 * The reliable-queue pattern: queue_take moves an id atomically from the
 * queue into processing:{worker} (BLMOVE), and it leaves that list only in
 * a script that also records why: done, failed (requeued or, at
 * max_attempts, dead-lettered), expired, refused, or put back by a
 * requeue. A job costs three round trips: the take, the start (a script
 * for status and attempt, and a GET of the image in the same write) and
 * the completion; a batch (take more) costs the take of its first job, one
 * script that moves the others and starts them all, one write of GETs for
 * their images, and a completion per job. Images never pass through Lua,
 * which would copy each twice. Entries that are no job id, and jobs whose
 * keys Redis refuses, are dead-lettered with the reason rather than run or
 * dropped.
 */
#include "queue_internal.h"

#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Off processing list kproc, onto queue:dead (its first bytes), with a
 * job record saying why unless one exists, counted as invalid. */
static int refuse(queue *q, const char *kproc, const char *entry, size_t len, const char *why)
{
    size_t kept = len < QUEUE_BAD_ENTRY_KEEP ? len : QUEUE_BAD_ENTRY_KEEP;
    char now[24];
    snprintf(now, sizeof now, "%lld", (long long)qi_now_ms(CLOCK_REALTIME));
    const char *args[10] = {kproc, q->kdead, q->kmetrics, entry,       entry,
                            why,   now,      q->dead_max, q->dead_age, q->ttl};
    size_t lens[10];
    for (int i = 0; i < 10; i++)
        lens[i] = strlen(args[i]);
    lens[3] = len;
    lens[4] = kept;
    redisReply *r = NULL;
    int rc = qi_script(q, S_INVALID, 3, 10, args, lens, &r);
    if (rc) return rc;
    freeReplyObject(r);
    return 0;
}

int queue_job_refuse(queue *q, const char *worker, const char *id, const char *why)
{
    if (!qi_worker_id_valid(worker) || !id || !why)
        return qi_fail(q, QUEUE_ERR_INVALID, "bad refuse arguments");
    struct qi_job_keys k;
    qi_job_keys(&k, id, worker);
    return refuse(q, k.processing, id, strlen(id), why);
}

/* A queue entry that is no job id (another producer's: too long, odd
 * characters): dead-lettered with a reason rather than dropped or run. On
 * success q->err describes the entry for the caller's log. */
static int reject_entry(queue *q, const char *kproc, const char *entry, size_t len)
{
    char why[512], shown[3 * 40 + 1];
    size_t o = 0;
    for (size_t i = 0; i < len && i < 40; i++) {
        unsigned char ch = (unsigned char)entry[i];
        if (ch >= 0x20 && ch < 0x7f && ch != '\\')
            shown[o++] = (char)ch;
        else
            o += (size_t)snprintf(shown + o, sizeof shown - o, "\\x%02x", ch);
    }
    shown[o] = '\0';
    int cut = len > QUEUE_BAD_ENTRY_KEEP;
    snprintf(
        why, sizeof why,
        "queue entry is not a job id (%zu bytes; ids are %d to %d characters of [a-z0-9])%s%s%s",
        len, QUEUE_ID_MIN, QUEUE_ID_MAX, cut ? "; " : "", cut ? q->kdead : "",
        cut ? " keeps its first bytes" : "");
    int rc = refuse(q, kproc, entry, len, why);
    if (rc) return rc;
    qi_fail(q, QUEUE_ERR_INVALID,
            "dead-lettered a queue entry that is not a job id: \"%s%s\" (%zu bytes)", shown,
            len > 40 ? "..." : "", len);
    return 0;
}

int queue_take(queue *q, const char *worker, double timeout_s, char *id_out, size_t id_cap)
{
    if (!qi_worker_id_valid(worker) || timeout_s <= 0)
        return qi_fail(q, QUEUE_ERR_INVALID, "bad take arguments");
    char kproc[KEY_MAX], secs[32];
    qi_key(kproc, "processing:", worker);
    snprintf(secs, sizeof secs, "%.3f", timeout_s);
    const char *argv[6] = {"BLMOVE", q->qname, kproc, "RIGHT", "LEFT", secs};
    redisReply *r = NULL;
    int rc = qi_blocking(q, timeout_s, 6, argv, &r);
    if (rc) return rc;
    if (r->type == REDIS_REPLY_NIL) {
        freeReplyObject(r);
        return QUEUE_ERR_EMPTY;
    }
    if (r->type != REDIS_REPLY_STRING) {
        freeReplyObject(r);
        return qi_fail(q, QUEUE_ERR_REPLY, "redis: unexpected BLMOVE reply");
    }
    char id[QUEUE_ID_MAX + 1];
    size_t n = r->len < sizeof id - 1 ? r->len : sizeof id - 1;
    memcpy(id, r->str, n);
    id[n] = '\0';
    if (r->len >= id_cap || n != r->len || strlen(id) != n || !queue_id_valid(id)) {
        rc = reject_entry(q, kproc, r->str, r->len);
        freeReplyObject(r);
        return rc ? rc : QUEUE_ERR_INVALID;
    }
    memcpy(id_out, r->str, r->len);
    id_out[r->len] = '\0';
    freeReplyObject(r);
    return 0;
}

void queue_start_clear(queue_start *s)
{
    if (!s) return;
    free(s->image);
    memset(s, 0, sizeof *s);
}

/* The image of a job to run, as Redis answered a read of image:{id}: a
 * string, nil (expired), or the error why names (another type). */
static int start_image(queue *q, const char *id, const redisReply *img, const char *why,
                       queue_start *out)
{
    if (why) {
        out->image_state = QUEUE_IMAGE_BAD;
        return qi_fail(q, QUEUE_OK, "redis: image:%s: %s", id, why);
    }
    if (!img || img->type == REDIS_REPLY_NIL) {
        out->image_state = QUEUE_IMAGE_GONE;
        return qi_fail(q, QUEUE_OK, "image:%s does not exist", id);
    }
    if (img->type != REDIS_REPLY_STRING)
        return qi_fail(q, QUEUE_ERR_REPLY, "redis: bad image reply");
    out->image = malloc(img->len + 1);
    if (!out->image)
        return qi_fail(q, QUEUE_ERR_NOMEM, "no memory for an image of %zu bytes", img->len);
    memcpy(out->image, img->str, img->len);
    out->image[img->len] = '\0';
    out->image_len = img->len;
    out->image_state = QUEUE_IMAGE_OK;
    return 0;
}

/* The head of a start_job answer (lua/lib/start.lua): {status, attempt}. */
static int start_head(queue *q, const redisReply *r, queue_start *out)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 2 ||
        r->element[0]->type != REDIS_REPLY_INTEGER || r->element[1]->type != REDIS_REPLY_INTEGER)
        return qi_fail(q, QUEUE_ERR_REPLY, "redis: unexpected start reply");
    out->skip = r->element[0]->integer != 0;
    out->attempts = (int)r->element[1]->integer;
    return 0;
}

/* A job's image from what its GET gave: rc and, when rc is 0, the reply. */
static int got_image(queue *q, const char *id, int rc, const redisReply *img, queue_start *out)
{
    if (rc == QUEUE_ERR_REPLY) {
        /* take_reply's "redis: " goes: start_image puts it first. */
        char why[sizeof q->err];
        snprintf(why, sizeof why, "%s", q->err + (strncmp(q->err, "redis: ", 7) ? 0 : 7));
        return start_image(q, id, NULL, why, out);
    }
    return rc ? rc : start_image(q, id, img, NULL, out);
}

/* The images of the started jobs of a batch that are to run: one GET each,
 * all in one write. */
static int batch_images(queue *q, char (*ids)[QUEUE_ID_MAX + 1], queue_start *starts, int n)
{
    char **cmds = calloc((size_t)n, sizeof *cmds);
    int *lens = calloc((size_t)n, sizeof *lens), count = 0;
    if (!cmds || !lens) {
        free(cmds);
        free(lens);
        return qi_fail(q, QUEUE_ERR_NOMEM, "out of memory reading a batch's images");
    }
    for (int i = 0; i < n; i++)
        if (!starts[i].skip) {
            char key[KEY_MAX];
            qi_key(key, "image:", ids[i]);
            const char *get[2] = {"GET", key};
            lens[count] = redisFormatCommandArgv(&cmds[count], 2, get, NULL);
            count++;
        }
    int rc = count ? qi_append_joined(q, count, cmds, lens) : 0;
    free(cmds);
    free(lens);
    /* Every reply is read, whatever one of them gave, so that the
     * connection stays in step (unless it broke: the replies went with it);
     * the first error is the answer. */
    int broken = rc != 0;
    for (int i = 0; i < n && !broken; i++) {
        if (starts[i].skip) continue;
        redisReply *img = NULL;
        int got = qi_receive(q, &img);
        broken = got == QUEUE_ERR_IO;
        if (!broken) got = got_image(q, ids[i], got, img, &starts[i]);
        if (!rc) rc = got;
        freeReplyObject(img);
    }
    return rc;
}

int queue_job_start(queue *q, const char *id, const char *worker, int max_attempts,
                    queue_start *out)
{
    if (!qi_worker_id_valid(worker) || max_attempts < 1 || !out)
        return qi_fail(q, QUEUE_ERR_INVALID, "bad start arguments");
    *out = (queue_start){0};
    struct qi_job_keys k;
    char now[24], max[16];
    qi_job_keys(&k, id, worker);
    snprintf(now, sizeof now, "%lld", (long long)qi_now_ms(CLOCK_REALTIME));
    snprintf(max, sizeof max, "%d", max_attempts);
    const char *args[13] = {k.job, k.result, k.processing, q->kdead,  q->kmetrics,
                            k.done, id,      worker,       now,       max,
                            q->ttl, q->dead_max, q->dead_age};
    const char *get[2] = {"GET", k.image};
    redisReply *r = NULL, *img = NULL;
    int img_rc = 0;
    int rc = qi_script_then(q, S_START, 6, 13, args, NULL, 2, get, NULL, &r, &img_rc, &img);
    if (!rc) rc = start_head(q, r, out);
    if (!rc && !out->skip) rc = got_image(q, id, img_rc, img, out);
    freeReplyObject(r);
    freeReplyObject(img);
    return rc;
}

int queue_take_more(queue *q, const char *worker, int max_attempts, int max,
                    char (*ids)[QUEUE_ID_MAX + 1], queue_start *starts, int *n)
{
    if (!qi_worker_id_valid(worker) || max_attempts < 1 || max < 1 || !ids || !starts || !n ||
        !queue_id_valid(ids[0]))
        return qi_fail(q, QUEUE_ERR_INVALID, "bad take-more arguments");
    *n = 0;
    char kproc[KEY_MAX], more[16], idmin[8], idmax[8], now[24], maxa[16];
    qi_key(kproc, "processing:", worker);
    snprintf(more, sizeof more, "%d", max - 1);
    snprintf(idmin, sizeof idmin, "%d", QUEUE_ID_MIN);
    snprintf(idmax, sizeof idmax, "%d", QUEUE_ID_MAX);
    snprintf(now, sizeof now, "%lld", (long long)qi_now_ms(CLOCK_REALTIME));
    snprintf(maxa, sizeof maxa, "%d", max_attempts);
    const char *args[14] = {q->qname, kproc,  q->kdead,    q->kmetrics, ids[0],
                            more,     idmin,  idmax,       worker,      now,
                            maxa,     q->ttl, q->dead_max, q->dead_age};
    redisReply *r = NULL;
    int rc = qi_script(q, S_TAKE_MORE, 4, 14, args, NULL, &r);
    if (rc) return rc;
    if (r->type != REDIS_REPLY_ARRAY || r->elements % 2 || r->elements > 2 * (size_t)max) {
        freeReplyObject(r);
        return qi_fail(q, QUEUE_ERR_REPLY, "redis: unexpected take-more reply");
    }
    /* Every job named here is in our processing list, started: each gets
     * its entry, even when a later one's reply is odd (the caller's error
     * path puts back what the list still holds). */
    int got = 0;
    for (size_t i = 0; i < r->elements; i += 2) {
        const redisReply *id = r->element[i];
        if (id->type != REDIS_REPLY_STRING || id->len > QUEUE_ID_MAX) {
            rc = qi_fail(q, QUEUE_ERR_REPLY, "redis: unexpected take-more reply");
            break;
        }
        memcpy(ids[got], id->str, id->len);
        ids[got][id->len] = '\0';
        starts[got] = (queue_start){0};
        int src = start_head(q, r->element[i + 1], &starts[got]);
        got++;
        if (src) {
            rc = src;
            break;
        }
    }
    freeReplyObject(r);
    *n = got;
    return rc ? rc : batch_images(q, ids, starts, got);
}

int queue_job_done(queue *q, const char *id, const char *worker, const queue_result *res)
{
    if (!qi_worker_id_valid(worker) || !res || !res->label)
        return qi_fail(q, QUEUE_ERR_INVALID, "bad done arguments");
    struct qi_job_keys k;
    char ms[32], now[24], bucket[32];
    qi_job_keys(&k, id, worker);
    snprintf(ms, sizeof ms, "%.3f", res->inference_ms);
    snprintf(now, sizeof now, "%lld", (long long)qi_now_ms(CLOCK_REALTIME));
    int b = 0;
    while (b < QUEUE_HIST_BUCKETS - 1 && res->inference_ms > queue_hist_bounds[b])
        b++;
    qi_bucket_field(bucket, sizeof bucket, b);
    const char *args[15] = {k.job,
                            k.result,
                            k.processing,
                            q->kmetrics,
                            k.done,
                            k.image,
                            id,
                            res->label,
                            res->top5 ? res->top5 : "",
                            res->model ? res->model : "",
                            ms,
                            now,
                            q->ttl,
                            bucket,
                            q->image_keep};
    redisReply *r = NULL;
    int rc = qi_script(q, S_DONE, 6, 15, args, NULL, &r);
    if (rc) return rc;
    freeReplyObject(r);
    /* The job is done on the master whatever WAIT says, and running it again
     * would count it twice. If the master dies before a replica has the
     * result, the new master still lists the job in this worker's processing
     * list, and the worker runs it again when it reconnects. */
    if (qi_replicated(q, "the result"))
        LOG(WARN, "job %s: %s; it is rerun if the master fails before a replica has it", id,
            q->err);
    return 0;
}

int queue_job_fail(queue *q, const char *id, const char *worker, const char *reason,
                   int max_attempts, int *final)
{
    if (!qi_worker_id_valid(worker) || !reason || max_attempts < 1)
        return qi_fail(q, QUEUE_ERR_INVALID, "bad fail arguments");
    struct qi_job_keys k;
    char max[16], now[24];
    qi_job_keys(&k, id, worker);
    snprintf(max, sizeof max, "%d", max_attempts);
    snprintf(now, sizeof now, "%lld", (long long)qi_now_ms(CLOCK_REALTIME));
    const char *args[13] = {k.job,  k.processing, q->qname, q->kdead, q->kmetrics, k.done,     id,
                            reason, max,          now,      q->ttl,   q->dead_max, q->dead_age};
    redisReply *r = NULL;
    long long v = 0;
    int rc = qi_script(q, S_FAIL, 6, 13, args, NULL, &r);
    if (rc) return rc;
    rc = qi_reply_int(q, r, &v);
    freeReplyObject(r);
    if (rc) return rc;
    *final = v == 1;
    return 0;
}

int queue_job_expired(queue *q, const char *id, const char *worker)
{
    if (!qi_worker_id_valid(worker)) return qi_fail(q, QUEUE_ERR_INVALID, "bad worker id");
    struct qi_job_keys k;
    char now[24];
    qi_job_keys(&k, id, worker);
    snprintf(now, sizeof now, "%lld", (long long)qi_now_ms(CLOCK_REALTIME));
    const char *args[7] = {k.job, k.processing, q->kmetrics, k.done, id, now, q->ttl};
    redisReply *r = NULL;
    int rc = qi_script(q, S_EXPIRED, 4, 7, args, NULL, &r);
    if (rc) return rc;
    freeReplyObject(r);
    return 0;
}

int queue_heartbeat(queue *q, const char *worker, const char *info, int ttl_s)
{
    if (!qi_worker_id_valid(worker) || ttl_s < 1)
        return qi_fail(q, QUEUE_ERR_INVALID, "bad heartbeat arguments");
    char kw[KEY_MAX], ttl[16];
    qi_key(kw, "worker:", worker);
    snprintf(ttl, sizeof ttl, "%d", ttl_s);
    const char *args[5] = {kw, "workers", worker, info ? info : "alive", ttl};
    redisReply *r = NULL;
    int rc = qi_script(q, S_HEARTBEAT, 2, 5, args, NULL, &r);
    if (rc) return rc;
    freeReplyObject(r);
    return 0;
}

int queue_worker_gone(queue *q, const char *worker)
{
    if (!qi_worker_id_valid(worker)) return qi_fail(q, QUEUE_ERR_INVALID, "bad worker id");
    char kw[KEY_MAX];
    qi_key(kw, "worker:", worker);
    const char *del[2] = {"DEL", kw};
    const char *srem[3] = {"SREM", "workers", worker};
    redisReply *r = NULL;
    int rc = qi_command(q, 2, del, NULL, &r);
    if (rc) return rc;
    freeReplyObject(r);
    rc = qi_command(q, 3, srem, NULL, &r);
    if (rc) return rc;
    freeReplyObject(r);
    return 0;
}

/* {requeued, given up} from REQUEUE or REAP_ONE. */
static int reply_pair(queue *q, const redisReply *r, long long *a, long long *b)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_INTEGER || r->element[1]->type != REDIS_REPLY_INTEGER)
        return qi_fail(q, QUEUE_ERR_REPLY, "redis: unexpected requeue reply");
    *a = r->element[0]->integer;
    *b = r->element[1]->integer;
    return 0;
}

/* REQUEUE of processing:{worker}, or with reap REAP_ONE (only if the
 * worker's heartbeat is gone, and the worker is then forgotten). */
static int requeue(queue *q, const char *worker, int refund, int death, const char *why, int reap,
                   long long *moved, long long *given_up)
{
    if (!qi_worker_id_valid(worker)) return qi_fail(q, QUEUE_ERR_INVALID, "bad worker id");
    char kproc[KEY_MAX], kw[KEY_MAX], now[24], maxd[16];
    qi_key(kproc, "processing:", worker);
    qi_key(kw, "worker:", worker);
    snprintf(now, sizeof now, "%lld", (long long)qi_now_ms(CLOCK_REALTIME));
    snprintf(maxd, sizeof maxd, "%d", q->max_deaths);
    const char *args[15] = {kproc, q->qname, q->kdead, q->kmetrics};
    int nkeys = 4;
    if (reap) {
        args[nkeys++] = kw;
        args[nkeys++] = "workers";
    }
    const char *argv[9] = {refund ? "1" : "0", death ? "1" : "0", why ? why : "", maxd,  now,
                           q->dead_max,        q->dead_age,       q->ttl,         worker};
    int nargv = reap ? 9 : 8;
    memcpy(&args[nkeys], argv, (size_t)nargv * sizeof argv[0]);
    redisReply *r = NULL;
    long long n = 0, gone = 0;
    int rc = qi_script(q, reap ? S_REAP_ONE : S_REQUEUE, nkeys, nkeys + nargv, args, NULL, &r);
    if (rc) return rc;
    rc = reply_pair(q, r, &n, &gone);
    freeReplyObject(r);
    if (rc) return rc;
    *moved = n;
    if (given_up) *given_up = gone;
    return 0;
}

int queue_requeue_worker(queue *q, const char *worker, int refund, long long *moved)
{
    return requeue(q, worker, refund, 0, "", 0, moved, NULL);
}

int queue_requeue_dead(queue *q, const char *worker, int refund, const char *why, long long *moved,
                       long long *given_up)
{
    if (!why || !why[0]) return qi_fail(q, QUEUE_ERR_INVALID, "a death needs a reason");
    return requeue(q, worker, refund, 1, why, 0, moved, given_up);
}

int queue_reap_dead_workers(queue *q, long long *moved)
{
    const char *argv[2] = {"SMEMBERS", "workers"};
    redisReply *members = NULL;
    long long total = 0;
    int rc = qi_command(q, 2, argv, NULL, &members);
    if (rc) return rc;
    if (members->type != REDIS_REPLY_ARRAY) {
        rc = qi_fail(q, QUEUE_ERR_REPLY, "redis: unexpected SMEMBERS reply");
        goto out;
    }
    for (size_t i = 0; i < members->elements; i++) {
        const redisReply *m = members->element[i];
        if (m->type != REDIS_REPLY_STRING || m->len >= QUEUE_WORKER_ID_MAX) continue;
        char w[QUEUE_WORKER_ID_MAX + 1], why[QUEUE_WORKER_ID_MAX + 64];
        memcpy(w, m->str, m->len);
        w[m->len] = '\0';
        if (!qi_worker_id_valid(w)) continue;
        snprintf(why, sizeof why, "worker %s stopped sending heartbeats", w);
        long long v = 0;
        rc = requeue(q, w, 1, 1, why, 1, &v, NULL);
        if (rc) goto out;
        if (v > 0) total += v;
    }
    *moved = total;
out:
    freeReplyObject(members);
    return rc;
}
