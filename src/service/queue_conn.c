/*
 * queue_conn: the queue's connection to Redis, its commands and errors, its
 * options, and the names of its keys (see queue.h for the keys, and
 * queue_internal.h for how the queue's files divide the work).
 *
 * One hiredis context per handle, made with redisConnectWithTimeout and
 * given redisSetTimeout, so no call waits longer than timeout_ms (plus the
 * blocking time a blocking command asks for). hiredis 0.14 has no safe
 * automatic reconnect, so we do it ourselves: a context that reports an
 * error is dropped, and the next call reconnects, but not before a back-off
 * delay (100 ms, doubling to 5 s). Calls made in between fail at once with
 * QUEUE_ERR_IO: the proxy answers 503 quickly instead of stalling every
 * request on a connect timeout. With sentinels, every (re)connection asks
 * them for the master first, and a -READONLY reply (a demoted master)
 * drops the connection so the next call finds the new one.
 */
#include "queue_internal.h"

#include "config.h"
#include "log.h"
#include "sentinel.h"

#include <errno.h>
#include <hiredis/sds.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define DEF_MAX_DEATHS 3
#define DEF_DEAD_MAX 10000
#define DEF_DEAD_AGE_S 86400

const double queue_hist_bounds[QUEUE_HIST_BUCKETS] = {5,   10,   25,   50,   100,   250,
                                                      500, 1000, 2500, 5000, 10000, 0};

const char *queue_strerror(int status)
{
    switch (status) {
    case QUEUE_OK:
        return "ok";
    case QUEUE_ERR_IO:
        return "redis unavailable";
    case QUEUE_ERR_REPLY:
        return "redis error";
    case QUEUE_ERR_NOTFOUND:
        return "not found";
    case QUEUE_ERR_INVALID:
        return "invalid argument";
    case QUEUE_ERR_FULL:
        return "queue full";
    case QUEUE_ERR_EMPTY:
        return "no job";
    case QUEUE_ERR_NOMEM:
        return "out of memory";
    case QUEUE_ERR_BUSY:
        return "no free job id";
    case QUEUE_ERR_OOM:
        return "redis out of memory";
    default:
        return "unknown error";
    }
}

int64_t qi_now_ms(int clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int qi_fail(queue *q, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(q->err, sizeof q->err, fmt, ap);
    va_end(ap);
    return status;
}

static void drop_connection(queue *q)
{
    if (q->c) redisFree(q->c);
    q->c = NULL;
    q->backoff_ms = q->backoff_ms ? q->backoff_ms * 2 : BACKOFF_MIN_MS;
    if (q->backoff_ms > BACKOFF_MAX_MS) q->backoff_ms = BACKOFF_MAX_MS;
    q->next_try_ms = qi_now_ms(CLOCK_MONOTONIC) + q->backoff_ms;
}

static struct timeval tv_ms(int64_t ms)
{
    return (struct timeval){.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
}

/* With sentinels: points q->host/port at the master they name now. */
static int discover_master(queue *q)
{
    char host[256], err[512];
    int port;
    if (sentinel_master(q->sentinels, q->master_name, q->sentinel_password, q->timeout_ms, host,
                        sizeof host, &port, err, sizeof err))
        return qi_fail(q, QUEUE_ERR_IO, "redis master \"%s\": %s", q->master_name, err);
    if (strcmp(host, q->host) || port != q->port) {
        char *h = strdup(host);
        if (!h) return qi_fail(q, QUEUE_ERR_NOMEM, "out of memory");
        LOG(INFO, "redis: master \"%s\" is %s:%d (was %s:%d)", q->master_name, host, port, q->host,
            q->port);
        free(q->host);
        q->host = h;
        q->port = port;
    }
    snprintf(q->endpoint, sizeof q->endpoint, "%s:%d", q->host, q->port);
    return 0;
}

/* AUTH, and with sentinels a check that the server is still a master (one
 * named just before a failover may have been demoted since). */
static int handshake(queue *q, redisContext *c)
{
    redisReply *r = NULL;
    int rc = 0;
    if (q->password) {
        r = q->username ? redisCommand(c, "AUTH %s %s", q->username, q->password)
                        : redisCommand(c, "AUTH %s", q->password);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            rc =
                qi_fail(q, QUEUE_ERR_IO, "redis %s: AUTH: %s", q->endpoint, r ? r->str : c->errstr);
            goto out;
        }
        freeReplyObject(r);
        r = NULL;
    }
    if (q->sentinels) {
        r = redisCommand(c, "ROLE");
        if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
            r->element[0]->type != REDIS_REPLY_STRING || strcmp(r->element[0]->str, "master"))
            rc = qi_fail(q, QUEUE_ERR_IO, "redis %s: not a master (yet): %s", q->endpoint,
                         r && r->type == REDIS_REPLY_ERROR ? r->str : "ROLE says otherwise");
    }
out:
    if (r) freeReplyObject(r);
    return rc;
}

int qi_ensure_connected(queue *q)
{
    if (q->c) return 0;
    if (q->next_try_ms && qi_now_ms(CLOCK_MONOTONIC) < q->next_try_ms)
        return QUEUE_ERR_IO; /* q->err still says why */
    if (q->sentinels) {
        int rc = discover_master(q);
        if (rc) {
            drop_connection(q);
            return rc;
        }
    }
    redisContext *c = redisConnectWithTimeout(q->host, q->port, tv_ms(q->timeout_ms));
    if (!c || c->err) {
        qi_fail(q, QUEUE_ERR_IO, "redis %s: %s", q->endpoint,
                c ? c->errstr : "cannot allocate a context");
        if (c) redisFree(c);
        drop_connection(q);
        return QUEUE_ERR_IO;
    }
    if (redisSetTimeout(c, tv_ms(q->timeout_ms)) != REDIS_OK) {
        qi_fail(q, QUEUE_ERR_IO, "redis %s: cannot set timeout", q->endpoint);
        redisFree(c);
        drop_connection(q);
        return QUEUE_ERR_IO;
    }
    if (handshake(q, c)) {
        redisFree(c);
        drop_connection(q);
        return QUEUE_ERR_IO;
    }
    q->c = c;
    q->connects++;
    q->backoff_ms = 0;
    q->next_try_ms = 0;
    /* Redis may have restarted: its script cache is empty. */
    memset(q->sha, 0, sizeof q->sha);
    return 0;
}

static int connection_lost(queue *q)
{
    qi_fail(q, QUEUE_ERR_IO, "redis %s: %s", q->endpoint,
            q->c->errstr[0] ? q->c->errstr : "connection lost");
    drop_connection(q);
    /* The next call retries at once: a single broken connection (e.g.
     * Redis restarted) should not cost a back-off delay. */
    q->next_try_ms = 0;
    return QUEUE_ERR_IO;
}

/* What qi_command makes of a reply (NULL: the connection broke). */
static int take_reply(queue *q, redisReply *r, redisReply **out)
{
    if (!r) return connection_lost(q);
    if (r->type == REDIS_REPLY_ERROR) {
        /* A master demoted by a failover: find the new one, at once. At
         * maxmemory with noeviction Redis refuses writes with "-OOM ..."
         * (inside a script too): a state of its own, so callers can say so. */
        int demoted = !strncmp(r->str, "READONLY", 8);
        int oom = r->len >= 3 && (!memcmp(r->str, "OOM", 3) || memmem(r->str, r->len, "-OOM", 4));
        int status = demoted ? QUEUE_ERR_IO : oom ? QUEUE_ERR_OOM : QUEUE_ERR_REPLY;
        qi_fail(q, status, "redis: %.*s", (int)r->len, r->str);
        freeReplyObject(r);
        if (!demoted) return status;
        drop_connection(q);
        q->next_try_ms = 0;
        return QUEUE_ERR_IO;
    }
    *out = r;
    return 0;
}

/* Runs one command; on success *out is a non-error reply the caller frees. */
int qi_command(queue *q, int argc, const char **argv, const size_t *lens, redisReply **out)
{
    int rc = qi_ensure_connected(q);
    if (rc) return rc;
    return take_reply(q, redisCommandArgv(q->c, argc, argv, lens), out);
}

int qi_send(queue *q, int argc, const char **argv, const size_t *lens)
{
    int rc = qi_ensure_connected(q);
    if (rc) return rc;
    if (redisAppendCommandArgv(q->c, argc, argv, lens) != REDIS_OK)
        return qi_fail(q, QUEUE_ERR_NOMEM, "out of memory sending a command");
    /* What the socket takes now, without waiting for Redis to read: a big
     * command (an image) fills Redis's receive buffer, and the caller has
     * better things to do meanwhile. hiredis's blocking redisGetReply
     * writes the rest of its output buffer before it reads. This is
     * redisBufferWrite's own step, with MSG_DONTWAIT. */
    ssize_t n = send(q->c->fd, q->c->obuf, sdslen(q->c->obuf), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0)
        sdsrange(q->c->obuf, n, -1);
    else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        snprintf(q->c->errstr, sizeof q->c->errstr, "%s", strerror(errno));
        return connection_lost(q);
    }
    return 0;
}

int qi_append_joined(queue *q, int count, char **cmds, const int *lens)
{
    size_t total = 0;
    int ok = 1;
    for (int i = 0; i < count; i++) {
        if (!cmds[i] || lens[i] <= 0) ok = 0;
        total += ok ? (size_t)lens[i] : 0;
    }
    char *joined = ok && total ? malloc(total) : NULL;
    int rc = QUEUE_ERR_NOMEM;
    if (joined) {
        size_t o = 0;
        for (int i = 0; i < count; i++) {
            memcpy(joined + o, cmds[i], (size_t)lens[i]);
            o += (size_t)lens[i];
        }
        if (redisAppendFormattedCommand(q->c, joined, total) == REDIS_OK) rc = 0;
    }
    for (int i = 0; i < count; i++)
        redisFreeCommand(cmds[i]);
    free(joined);
    return rc ? qi_fail(q, rc, "out of memory sending %d commands", count) : 0;
}

int qi_receive(queue *q, redisReply **out)
{
    void *r = NULL;
    if (!q->c) return qi_fail(q, QUEUE_ERR_IO, "redis %s: connection lost", q->endpoint);
    if (redisGetReply(q->c, &r) != REDIS_OK) r = NULL;
    return take_reply(q, r, out);
}

/* A blocking command: the read timeout covers the blocking time too. */
int qi_blocking(queue *q, double block_s, int argc, const char **argv, redisReply **out)
{
    int rc = qi_ensure_connected(q);
    if (rc) return rc;
    redisSetTimeout(q->c, tv_ms(q->timeout_ms + (int64_t)(block_s * 1000)));
    rc = qi_command(q, argc, argv, NULL, out);
    if (q->c) redisSetTimeout(q->c, tv_ms(q->timeout_ms));
    return rc;
}

/* With min_replicas: 0 once that many replicas hold this connection's
 * writes so far, else QUEUE_ERR_IO (a failover now could lose them). */
int qi_replicated(queue *q, const char *what)
{
    if (q->min_replicas <= 0) return 0;
    char n[12], ms[12];
    snprintf(n, sizeof n, "%d", q->min_replicas);
    snprintf(ms, sizeof ms, "%d", q->wait_timeout_ms);
    const char *argv[3] = {"WAIT", n, ms};
    redisReply *r = NULL;
    long long acked = 0;
    int rc = qi_blocking(q, q->wait_timeout_ms / 1000.0, 3, argv, &r);
    if (rc) return rc;
    rc = qi_reply_int(q, r, &acked);
    freeReplyObject(r);
    if (rc) return rc;
    if (acked < q->min_replicas)
        return qi_fail(q, QUEUE_ERR_IO,
                       "%s reached %lld of %d replicas in %d ms (REDIS_MIN_REPLICAS)", what, acked,
                       q->min_replicas, q->wait_timeout_ms);
    return 0;
}

int qi_reply_int(queue *q, redisReply *r, long long *out)
{
    if (r->type != REDIS_REPLY_INTEGER)
        return qi_fail(q, QUEUE_ERR_REPLY, "redis: expected an integer reply (type %d)", r->type);
    *out = r->integer;
    return 0;
}

long long qi_str_ll(const redisReply *r)
{
    if (!r || r->type != REDIS_REPLY_STRING) return 0;
    char buf[32];
    size_t n = r->len < sizeof buf - 1 ? r->len : sizeof buf - 1;
    memcpy(buf, r->str, n);
    buf[n] = '\0';
    return strtoll(buf, NULL, 10);
}

double qi_str_double(const redisReply *r)
{
    if (!r || r->type != REDIS_REPLY_STRING) return 0;
    char buf[48];
    size_t n = r->len < sizeof buf - 1 ? r->len : sizeof buf - 1;
    memcpy(buf, r->str, n);
    buf[n] = '\0';
    return strtod(buf, NULL);
}

int qi_field_is(const redisReply *r, const char *name)
{
    return r->type == REDIS_REPLY_STRING && r->len == strlen(name) && !memcmp(r->str, name, r->len);
}

void qi_bucket_field(char *buf, size_t cap, int i)
{
    if (queue_hist_bounds[i] > 0)
        snprintf(buf, cap, "bucket_%g", queue_hist_bounds[i]);
    else
        snprintf(buf, cap, "bucket_inf");
}

void qi_key(char *buf, const char *prefix, const char *id)
{
    snprintf(buf, KEY_MAX, "%s%s", prefix, id);
}

void qi_job_keys(struct qi_job_keys *k, const char *id, const char *worker)
{
    qi_key(k->job, "job:", id);
    qi_key(k->image, "image:", id);
    qi_key(k->result, "result:", id);
    qi_key(k->done, "done:", id);
    qi_key(k->processing, "processing:", worker ? worker : "");
}

/* The dead-letter and metrics keys of queue name (queue.h): the default
 * queue:jobs keeps the seed's queue:dead and metrics:workers. */
static void queue_keys(queue *q)
{
    size_t n = strlen(q->qname);
    if (n > 5 && !strcmp(q->qname + n - 5, ":jobs")) n -= 5;
    snprintf(q->kdead, sizeof q->kdead, "%.*s:dead", (int)n, q->qname);
    if (n == 5 && !strncmp(q->qname, "queue", 5))
        snprintf(q->kmetrics, sizeof q->kmetrics, "metrics:workers");
    else
        snprintf(q->kmetrics, sizeof q->kmetrics, "%.*s:metrics", (int)n, q->qname);
}

void queue_options_from_config(const struct config *cfg, queue_options *o)
{
    *o = (queue_options){.host = cfg->redis_host,
                         .port = cfg->redis_port,
                         .timeout_ms = cfg->redis_timeout_ms,
                         .queue_name = cfg->queue_name,
                         .job_ttl = cfg->job_ttl,
                         .username = cfg->redis_username,
                         .password = cfg->redis_password,
                         .sentinels = cfg->redis_sentinels,
                         .master_name = cfg->redis_master_name,
                         .sentinel_password = cfg->redis_sentinel_password,
                         .min_replicas = cfg->redis_min_replicas,
                         .wait_timeout_ms = cfg->redis_wait_timeout_ms,
                         .max_deaths = cfg->max_worker_deaths,
                         .dead_max = (long)cfg->dead_letter_max,
                         .dead_age_s = cfg->dead_letter_age,
                         .image_keep_s = cfg->image_keep_done};
}

/* strdup of an optional string: NULL stays NULL and so does "". */
static int dup_opt(const char *s, char **out)
{
    *out = NULL;
    if (!s || !s[0]) return 0;
    *out = strdup(s);
    return *out ? 0 : -1;
}

int queue_open(const queue_options *opt, queue **out)
{
    int ha = opt && opt->sentinels && opt->sentinels[0];
    if (!opt || !opt->host || !opt->host[0] || opt->port <= 0 || opt->port > 65535 ||
        opt->timeout_ms <= 0 || !opt->queue_name || !opt->queue_name[0] || opt->job_ttl <= 0 ||
        (ha && (!opt->master_name || !opt->master_name[0])) || opt->min_replicas < 0 ||
        (opt->min_replicas > 0 && opt->wait_timeout_ms <= 0))
        return QUEUE_ERR_INVALID;
    queue *q = calloc(1, sizeof *q);
    if (!q) return QUEUE_ERR_NOMEM;
    q->host = strdup(opt->host);
    q->qname = strdup(opt->queue_name);
    if (!q->host || !q->qname || dup_opt(opt->username, &q->username) ||
        dup_opt(opt->password, &q->password) || dup_opt(opt->sentinels, &q->sentinels) ||
        dup_opt(ha ? opt->master_name : NULL, &q->master_name) ||
        dup_opt(opt->sentinel_password, &q->sentinel_password)) {
        queue_close(q);
        return QUEUE_ERR_NOMEM;
    }
    q->port = opt->port;
    q->timeout_ms = opt->timeout_ms;
    q->job_ttl = opt->job_ttl;
    snprintf(q->ttl, sizeof q->ttl, "%d", q->job_ttl);
    queue_keys(q);
    q->min_replicas = opt->min_replicas;
    q->wait_timeout_ms = opt->wait_timeout_ms;
    if (ha)
        snprintf(q->endpoint, sizeof q->endpoint, "master \"%s\"", q->master_name);
    else
        snprintf(q->endpoint, sizeof q->endpoint, "%s:%d", q->host, q->port);
    q->max_deaths = opt->max_deaths > 0 ? opt->max_deaths : DEF_MAX_DEATHS;
    snprintf(q->dead_max, sizeof q->dead_max, "%ld",
             opt->dead_max > 0 ? opt->dead_max : DEF_DEAD_MAX);
    snprintf(q->dead_age, sizeof q->dead_age, "%d",
             opt->dead_age_s > 0 ? opt->dead_age_s : DEF_DEAD_AGE_S);
    snprintf(q->image_keep, sizeof q->image_keep, "%d",
             opt->image_keep_s > 0 ? opt->image_keep_s : 0);
    (void)qi_ensure_connected(q);
    *out = q;
    return 0;
}

void queue_close(queue *q)
{
    if (!q) return;
    if (q->c) redisFree(q->c);
    free(q->host);
    free(q->qname);
    free(q->username);
    free(q->password);
    free(q->sentinels);
    free(q->master_name);
    free(q->sentinel_password);
    free(q);
}

const char *queue_endpoint(const queue *q)
{
    return q ? q->endpoint : "";
}

const char *queue_errstr(const queue *q)
{
    return q ? q->err : "";
}

unsigned long queue_connects(const queue *q)
{
    return q ? q->connects : 0;
}

int queue_ping(queue *q)
{
    const char *argv[1] = {"PING"};
    redisReply *r = NULL;
    int rc = qi_command(q, 1, argv, NULL, &r);
    if (rc) return rc;
    freeReplyObject(r);
    return 0;
}

int queue_id_valid(const char *id)
{
    if (!id) return 0;
    size_t n = 0;
    for (; id[n]; n++) {
        if (n >= QUEUE_ID_MAX) return 0;
        if (!((id[n] >= 'a' && id[n] <= 'z') || (id[n] >= '0' && id[n] <= '9'))) return 0;
    }
    return n >= QUEUE_ID_MIN;
}

int qi_worker_id_valid(const char *w)
{
    if (!w || !w[0]) return 0;
    size_t n = 0;
    for (; w[n]; n++) {
        if (n >= QUEUE_WORKER_ID_MAX) return 0;
        char ch = w[n];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '_' || ch == '.'))
            return 0;
    }
    return 1;
}
