/*
 * queue: the Redis side of the job system (see queue.h for the keys).
 *
 * Connection: one hiredis context per handle, made with
 * redisConnectWithTimeout and given redisSetTimeout, so no call waits longer
 * than timeout_ms (plus the blocking time a blocking command asks for).
 * hiredis 0.14 has no safe automatic reconnect, so we do it ourselves: a
 * context that reports an error is dropped, and the next call reconnects,
 * but not before a back-off delay (100 ms, doubling to 5 s). Calls made in
 * between fail at once with QUEUE_ERR_IO: the proxy answers 503 quickly
 * instead of stalling every request on a connect timeout.
 *
 * Every change that touches several keys is a Lua script (EVALSHA, loaded on
 * first use and again after NOSCRIPT, i.e. after Redis restarted), so it is
 * atomic: Redis runs a script with nothing interleaved. Creating a job
 * checks that no key of the random id exists (an atomic SET NX over all of
 * them), applies the backlog bound, and writes image, status and the LPUSH
 * in the same step; the proxy answers only after it returned.
 */
#include "queue.h"

#include "config.h"
#include "embed.h"
#include "log.h"
#include "sentinel.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define KEY_MAX 160
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define CREATE_TRIES 64
#define SCRIPT_ARGS_MAX 20
#define DEF_MAX_DEATHS 3
#define DEF_DEAD_MAX 10000
#define DEF_DEAD_AGE_S 86400

const double queue_hist_bounds[QUEUE_HIST_BUCKETS] = {5,   10,   25,   50,   100,   250,
                                                      500, 1000, 2500, 5000, 10000, 0};

struct queue {
    redisContext *c;
    char *host; /* REDIS_HOST, or the master the sentinels named last */
    int port;
    char *username, *password;
    char *sentinels, *master_name, *sentinel_password; /* sentinels NULL: plain host */
    int min_replicas, wait_timeout_ms;
    char endpoint[300];
    int timeout_ms;
    char *qname;
    char kdead[KEY_MAX], kmetrics[KEY_MAX]; /* derived from qname (queue.h) */
    int job_ttl;
    char ttl[16]; /* job_ttl as text, for scripts */
    int max_deaths;
    char dead_max[24], dead_age[16], image_keep[16];
    unsigned long connects;
    int backoff_ms;
    int64_t next_try_ms;
    char err[256];
    char sha[32][41];
};

/* ------------------------------------------------------------------------ */
/* Scripts. KEYS and ARGV layouts are documented atop each .lua file.       */

enum {
    S_CREATE,
    S_GET,
    S_START,
    S_DONE,
    S_FAIL,
    S_EXPIRED,
    S_HEARTBEAT,
    S_REQUEUE,
    S_REAP_ONE,
    S_STATS,
    S_NOTIFY,
    S_HOOK_CLAIM,
    S_HOOK_RECORD,
    S_INVALID,
    S_COUNT
};
_Static_assert(S_COUNT <= 32, "queue.sha holds 32 scripts");

/* The scripts live in src/service/lua/NAME.lua, built in with EMBED; the
 * local functions several of them share are lua/lib/NAME.lua, put in front
 * of a script's text when it is loaded (in the order of the LIB_ bits). */
EMBED(lua_lib_notify, "src/service/lua/lib/notify.lua");
EMBED(lua_lib_hook, "src/service/lua/lib/hook.lua");
EMBED(lua_lib_keep_ttl, "src/service/lua/lib/keep_ttl.lua");
EMBED(lua_lib_dead_letter, "src/service/lua/lib/dead_letter.lua");
EMBED(lua_lib_requeue, "src/service/lua/lib/requeue.lua");
EMBED(lua_lib_requeue_args, "src/service/lua/lib/requeue_args.lua");
EMBED(lua_create, "src/service/lua/create.lua");
EMBED(lua_get, "src/service/lua/get.lua");
EMBED(lua_start, "src/service/lua/start.lua");
EMBED(lua_done, "src/service/lua/done.lua");
EMBED(lua_fail, "src/service/lua/fail.lua");
EMBED(lua_expired, "src/service/lua/expired.lua");
EMBED(lua_heartbeat, "src/service/lua/heartbeat.lua");
EMBED(lua_requeue, "src/service/lua/requeue.lua");
EMBED(lua_reap_one, "src/service/lua/reap_one.lua");
EMBED(lua_stats, "src/service/lua/stats.lua");
EMBED(lua_notify, "src/service/lua/notify.lua");
EMBED(lua_hook_claim, "src/service/lua/hook_claim.lua");
EMBED(lua_hook_record, "src/service/lua/hook_record.lua");
EMBED(lua_invalid, "src/service/lua/invalid.lua");

enum {
    LIB_NOTIFY = 1,   /* notify() and hook() */
    LIB_KEEP_TTL = 2, /* keep_ttl() */
    LIB_DEAD = 4,     /* dead_letter() */
    LIB_REQUEUE = 8   /* requeue() and its ARGV table a (needs the three above) */
};

static const struct {
    const unsigned char *lib, *end;
    unsigned bit;
} libs[] = {
    {lua_lib_notify, lua_lib_notify_end, LIB_NOTIFY},
    {lua_lib_hook, lua_lib_hook_end, LIB_NOTIFY},
    {lua_lib_keep_ttl, lua_lib_keep_ttl_end, LIB_KEEP_TTL},
    {lua_lib_dead_letter, lua_lib_dead_letter_end, LIB_DEAD},
    {lua_lib_requeue, lua_lib_requeue_end, LIB_REQUEUE},
    {lua_lib_requeue_args, lua_lib_requeue_args_end, LIB_REQUEUE},
};

#define ALL_LIBS (LIB_NOTIFY | LIB_KEEP_TTL | LIB_DEAD | LIB_REQUEUE)
static const struct {
    const unsigned char *text, *end;
    unsigned libs;
} scripts[S_COUNT] = {
    [S_CREATE] = {lua_create, lua_create_end, 0},
    [S_GET] = {lua_get, lua_get_end, 0},
    [S_START] = {lua_start, lua_start_end, LIB_NOTIFY | LIB_KEEP_TTL | LIB_DEAD},
    [S_DONE] = {lua_done, lua_done_end, LIB_NOTIFY | LIB_KEEP_TTL},
    [S_FAIL] = {lua_fail, lua_fail_end, LIB_NOTIFY | LIB_KEEP_TTL | LIB_DEAD},
    [S_EXPIRED] = {lua_expired, lua_expired_end, LIB_NOTIFY | LIB_KEEP_TTL},
    [S_HEARTBEAT] = {lua_heartbeat, lua_heartbeat_end, 0},
    [S_REQUEUE] = {lua_requeue, lua_requeue_end, ALL_LIBS},
    [S_REAP_ONE] = {lua_reap_one, lua_reap_one_end, ALL_LIBS},
    [S_STATS] = {lua_stats, lua_stats_end, 0},
    [S_NOTIFY] = {lua_notify, lua_notify_end, LIB_NOTIFY},
    [S_HOOK_CLAIM] = {lua_hook_claim, lua_hook_claim_end, 0},
    [S_HOOK_RECORD] = {lua_hook_record, lua_hook_record_end, 0},
    [S_INVALID] = {lua_invalid, lua_invalid_end, LIB_DEAD},
};

/* The text of scripts[which]: its libraries, then itself (caller frees). */
static char *script_text(int which, size_t *len)
{
    size_t n = (size_t)(scripts[which].end - scripts[which].text), o = 0;
    for (size_t i = 0; i < sizeof libs / sizeof libs[0]; i++)
        if (scripts[which].libs & libs[i].bit) n += (size_t)(libs[i].end - libs[i].lib);
    char *t = malloc(n + 1);
    if (!t) return NULL;
    for (size_t i = 0; i < sizeof libs / sizeof libs[0]; i++)
        if (scripts[which].libs & libs[i].bit) {
            memcpy(t + o, libs[i].lib, (size_t)(libs[i].end - libs[i].lib));
            o += (size_t)(libs[i].end - libs[i].lib);
        }
    memcpy(t + o, scripts[which].text, (size_t)(scripts[which].end - scripts[which].text));
    t[n] = '\0';
    *len = n;
    return t;
}

/* ------------------------------------------------------------------------ */

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

static int64_t now_ms(int clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int fail(queue *q, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(queue *q, int status, const char *fmt, ...)
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
    q->next_try_ms = now_ms(CLOCK_MONOTONIC) + q->backoff_ms;
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
        return fail(q, QUEUE_ERR_IO, "redis master \"%s\": %s", q->master_name, err);
    if (strcmp(host, q->host) || port != q->port) {
        char *h = strdup(host);
        if (!h) return fail(q, QUEUE_ERR_NOMEM, "out of memory");
        LOG(INFO, "redis: master \"%s\" is %s:%d (was %s:%d)", q->master_name, host, port,
            q->host, q->port);
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
            rc = fail(q, QUEUE_ERR_IO, "redis %s: AUTH: %s", q->endpoint,
                      r ? r->str : c->errstr);
            goto out;
        }
        freeReplyObject(r);
        r = NULL;
    }
    if (q->sentinels) {
        r = redisCommand(c, "ROLE");
        if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
            r->element[0]->type != REDIS_REPLY_STRING || strcmp(r->element[0]->str, "master"))
            rc = fail(q, QUEUE_ERR_IO, "redis %s: not a master (yet): %s", q->endpoint,
                      r && r->type == REDIS_REPLY_ERROR ? r->str : "ROLE says otherwise");
    }
out:
    if (r) freeReplyObject(r);
    return rc;
}

static int ensure_connected(queue *q)
{
    if (q->c) return 0;
    if (q->next_try_ms && now_ms(CLOCK_MONOTONIC) < q->next_try_ms)
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
        fail(q, QUEUE_ERR_IO, "redis %s: %s", q->endpoint,
             c ? c->errstr : "cannot allocate a context");
        if (c) redisFree(c);
        drop_connection(q);
        return QUEUE_ERR_IO;
    }
    if (redisSetTimeout(c, tv_ms(q->timeout_ms)) != REDIS_OK) {
        fail(q, QUEUE_ERR_IO, "redis %s: cannot set timeout", q->endpoint);
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

/* Runs one command; on success *out is a non-error reply the caller frees. */
static int command(queue *q, int argc, const char **argv, const size_t *lens, redisReply **out)
{
    int rc = ensure_connected(q);
    if (rc) return rc;
    redisReply *r = redisCommandArgv(q->c, argc, argv, lens);
    if (!r) {
        fail(q, QUEUE_ERR_IO, "redis %s: %s", q->endpoint,
             q->c->errstr[0] ? q->c->errstr : "connection lost");
        drop_connection(q);
        /* The next call retries at once: a single broken connection (e.g.
         * Redis restarted) should not cost a back-off delay. */
        q->next_try_ms = 0;
        return QUEUE_ERR_IO;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        /* A master demoted by a failover: find the new one, at once. At
         * maxmemory with noeviction Redis refuses writes with "-OOM ..."
         * (inside a script too): a state of its own, so callers can say so. */
        int demoted = !strncmp(r->str, "READONLY", 8);
        int oom = r->len >= 3 && (!memcmp(r->str, "OOM", 3) || memmem(r->str, r->len, "-OOM", 4));
        int status = demoted ? QUEUE_ERR_IO : oom ? QUEUE_ERR_OOM : QUEUE_ERR_REPLY;
        fail(q, status, "redis: %.*s", (int)r->len, r->str);
        freeReplyObject(r);
        if (!demoted) return status;
        drop_connection(q);
        q->next_try_ms = 0;
        return QUEUE_ERR_IO;
    }
    *out = r;
    return 0;
}

static int load_script(queue *q, int which)
{
    size_t len = 0;
    char *text = script_text(which, &len);
    if (!text) return fail(q, QUEUE_ERR_NOMEM, "out of memory loading a script");
    const char *argv[3] = {"SCRIPT", "LOAD", text};
    size_t lens[3] = {6, 4, len};
    redisReply *r = NULL;
    int rc = command(q, 3, argv, lens, &r);
    free(text);
    if (rc) return rc;
    if (r->type != REDIS_REPLY_STRING || r->len != 40) {
        freeReplyObject(r);
        return fail(q, QUEUE_ERR_REPLY, "redis: SCRIPT LOAD gave no sha1");
    }
    memcpy(q->sha[which], r->str, 40);
    q->sha[which][40] = '\0';
    freeReplyObject(r);
    return 0;
}

/* EVALSHA scripts[which] with nkeys keys followed by the other args. */
static int script(queue *q, int which, int nkeys, int nargs, const char **args, const size_t *lens,
                  redisReply **out)
{
    const char *argv[SCRIPT_ARGS_MAX + 3];
    size_t alen[SCRIPT_ARGS_MAX + 3];
    char nk[12];
    if (nargs > SCRIPT_ARGS_MAX) return fail(q, QUEUE_ERR_INVALID, "too many script args");
    snprintf(nk, sizeof nk, "%d", nkeys);
    for (int attempt = 0; attempt < 2; attempt++) {
        int rc = ensure_connected(q);
        if (rc) return rc;
        if (!q->sha[which][0] && (rc = load_script(q, which))) return rc;
        argv[0] = "EVALSHA";
        alen[0] = 7;
        argv[1] = q->sha[which];
        alen[1] = 40;
        argv[2] = nk;
        alen[2] = strlen(nk);
        for (int i = 0; i < nargs; i++) {
            argv[3 + i] = args[i];
            alen[3 + i] = lens ? lens[i] : strlen(args[i]);
        }
        rc = command(q, nargs + 3, argv, alen, out);
        if (rc == QUEUE_ERR_REPLY && !strncmp(q->err, "redis: NOSCRIPT", 15)) {
            q->sha[which][0] = '\0';
            continue;
        }
        return rc;
    }
    return fail(q, QUEUE_ERR_REPLY, "redis: script %d keeps disappearing", which);
}

static int reply_int(queue *q, redisReply *r, long long *out)
{
    if (r->type != REDIS_REPLY_INTEGER)
        return fail(q, QUEUE_ERR_REPLY, "redis: expected an integer reply (type %d)", r->type);
    *out = r->integer;
    return 0;
}

/* ------------------------------------------------------------------------ */

static void key(char *buf, const char *prefix, const char *id)
{
    snprintf(buf, KEY_MAX, "%s%s", prefix, id);
}

/* The keys of one job, and of the worker's processing list (worker may be
 * NULL when no worker is involved). */
struct job_keys {
    char job[KEY_MAX], image[KEY_MAX], result[KEY_MAX], done[KEY_MAX], processing[KEY_MAX];
};

static void job_keys(struct job_keys *k, const char *id, const char *worker)
{
    key(k->job, "job:", id);
    key(k->image, "image:", id);
    key(k->result, "result:", id);
    key(k->done, "done:", id);
    key(k->processing, "processing:", worker ? worker : "");
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
    (void)ensure_connected(q);
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
    int rc = command(q, 1, argv, NULL, &r);
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

static int worker_id_valid(const char *w)
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

/* ------------------------------------------------------------------------ */
/* Proxy side                                                               */

static int blocking(queue *q, double block_s, int argc, const char **argv, redisReply **out);

/* With min_replicas: 0 once that many replicas hold this connection's
 * writes so far, else QUEUE_ERR_IO (a failover now could lose them). */
static int replicated(queue *q, const char *what)
{
    if (q->min_replicas <= 0) return 0;
    char n[12], ms[12];
    snprintf(n, sizeof n, "%d", q->min_replicas);
    snprintf(ms, sizeof ms, "%d", q->wait_timeout_ms);
    const char *argv[3] = {"WAIT", n, ms};
    redisReply *r = NULL;
    long long acked = 0;
    int rc = blocking(q, q->wait_timeout_ms / 1000.0, 3, argv, &r);
    if (rc) return rc;
    rc = reply_int(q, r, &acked);
    freeReplyObject(r);
    if (rc) return rc;
    if (acked < q->min_replicas)
        return fail(q, QUEUE_ERR_IO, "%s reached %lld of %d replicas in %d ms (REDIS_MIN_REPLICAS)",
                    what, acked, q->min_replicas, q->wait_timeout_ms);
    return 0;
}

int queue_create_job(queue *q, const queue_new_job *job, char *id_out, size_t id_cap)
{
    if (!job || !job->image_b64 || job->id_len < QUEUE_ID_MIN || job->id_len > QUEUE_ID_MAX ||
        id_cap < (size_t)job->id_len + 1)
        return fail(q, QUEUE_ERR_INVALID, "bad job arguments");
    char id[QUEUE_ID_MAX + 1], max[24], now[24];
    struct job_keys k;
    snprintf(max, sizeof max, "%ld", job->max_backlog > 0 ? job->max_backlog : 0L);
    for (int tries = 0; tries < CREATE_TRIES; tries++) {
        if (random_id(id, job->id_len)) return fail(q, QUEUE_ERR_IO, "getrandom failed");
        job_keys(&k, id, NULL);
        snprintf(now, sizeof now, "%lld", (long long)now_ms(CLOCK_REALTIME));
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
            lens[i] = strlen(args[i]);
        lens[6] = job->image_b64_len;
        redisReply *r = NULL;
        long long v = 0;
        int rc = script(q, S_CREATE, 5, 14, args, lens, &r);
        if (rc) return rc;
        rc = reply_int(q, r, &v);
        freeReplyObject(r);
        if (rc) return rc;
        if (v == -1) return fail(q, QUEUE_ERR_FULL, "backlog at its bound of %s jobs", max);
        if (v == 1) {
            if ((rc = replicated(q, "the new job"))) return rc;
            memcpy(id_out, id, (size_t)job->id_len + 1);
            return 0;
        }
    }
    return fail(q, QUEUE_ERR_BUSY, "no free job id of length %d after %d tries", job->id_len,
                CREATE_TRIES);
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

static long long str_ll(const redisReply *r)
{
    if (!r || r->type != REDIS_REPLY_STRING) return 0;
    char buf[32];
    size_t n = r->len < sizeof buf - 1 ? r->len : sizeof buf - 1;
    memcpy(buf, r->str, n);
    buf[n] = '\0';
    return strtoll(buf, NULL, 10);
}

static double str_double(const redisReply *r)
{
    if (!r || r->type != REDIS_REPLY_STRING) return 0;
    char buf[48];
    size_t n = r->len < sizeof buf - 1 ? r->len : sizeof buf - 1;
    memcpy(buf, r->str, n);
    buf[n] = '\0';
    return strtod(buf, NULL);
}

static int field_is(const redisReply *r, const char *name)
{
    return r->type == REDIS_REPLY_STRING && r->len == strlen(name) && !memcmp(r->str, name, r->len);
}

static int parse_job(queue *q, const redisReply *r, queue_job *out)
{
    queue_job job = {0};
    int rc = 0;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        r->element[0]->type != REDIS_REPLY_ARRAY || r->element[2]->type != REDIS_REPLY_INTEGER)
        return fail(q, QUEUE_ERR_REPLY, "redis: unexpected job reply");
    const redisReply *h = r->element[0], *res = r->element[1];
    int has_result = res->type == REDIS_REPLY_STRING;
    if (h->elements == 0 && !has_result && r->element[2]->integer == 0)
        return fail(q, QUEUE_ERR_NOTFOUND, "no such job");
    snprintf(job.status, sizeof job.status, "%s", has_result ? "done" : "queued");
    for (size_t i = 0; i + 1 < h->elements && !rc; i += 2) {
        const redisReply *f = h->element[i], *v = h->element[i + 1];
        if (field_is(f, "status")) {
            /* Only a status of the known set: whatever else is in the record. */
            static const char *const known[] = {"queued", "running", "done", "failed", "expired"};
            for (size_t k = 0; k < sizeof known / sizeof known[0]; k++)
                if (field_is(v, known[k])) snprintf(job.status, sizeof job.status, "%s", known[k]);
        } else if (field_is(f, "attempts"))
            job.attempts = (int)str_ll(v);
        else if (field_is(f, "error"))
            rc = dup_str(v, &job.error);
        else if (field_is(f, "top5"))
            rc = dup_str(v, &job.top5);
        else if (field_is(f, "model"))
            rc = dup_str(v, &job.model);
        else if (field_is(f, "sync_label"))
            rc = dup_str(v, &job.sync_label);
        else if (field_is(f, "sync_model"))
            rc = dup_str(v, &job.sync_model);
        else if (field_is(f, "sync_top5"))
            rc = dup_str(v, &job.sync_top5);
        else if (field_is(f, "worker"))
            rc = dup_str(v, &job.worker);
        else if (field_is(f, "inference_ms"))
            job.inference_ms = str_double(v);
        else if (field_is(f, "created"))
            job.created_ms = str_ll(v);
        else if (field_is(f, "started"))
            job.started_ms = str_ll(v);
        else if (field_is(f, "finished"))
            job.finished_ms = str_ll(v);
        else if (field_is(f, "agrees_with_fast"))
            job.agreement = str_ll(v) ? QUEUE_AGREE_YES : QUEUE_AGREE_NO;
        else if (field_is(f, "callback_url"))
            rc = dup_str(v, &job.callback_url);
        else if (field_is(f, "webhook") && v->type == REDIS_REPLY_STRING &&
                 v->len < sizeof job.webhook) {
            memcpy(job.webhook, v->str, v->len);
            job.webhook[v->len] = '\0';
        } else if (field_is(f, "webhook_attempts"))
            job.webhook_attempts = (int)str_ll(v);
        else if (field_is(f, "webhook_error"))
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
        return fail(q, rc, "out of memory reading a job");
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
        fail(&tmp, rc, "not a RESP reply: %s", rd->errstr);
        goto out;
    }
    if (!reply) {
        fail(&tmp, rc, "an incomplete RESP reply");
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
    if (!queue_id_valid(id)) return fail(q, QUEUE_ERR_INVALID, "bad job id");
    struct job_keys k;
    job_keys(&k, id, NULL);
    const char *args[3] = {k.job, k.result, k.image};
    redisReply *r = NULL;
    int rc = script(q, S_GET, 3, 3, args, NULL, &r);
    if (rc) return rc;
    rc = parse_job(q, r, out);
    freeReplyObject(r);
    return rc;
}

int queue_status_final(const char *status)
{
    return !strcmp(status, "done") || !strcmp(status, "failed") || !strcmp(status, "expired");
}

/* A blocking command: the read timeout covers the blocking time too. */
static int blocking(queue *q, double block_s, int argc, const char **argv, redisReply **out)
{
    int rc = ensure_connected(q);
    if (rc) return rc;
    redisSetTimeout(q->c, tv_ms(q->timeout_ms + (int64_t)(block_s * 1000)));
    rc = command(q, argc, argv, NULL, out);
    if (q->c) redisSetTimeout(q->c, tv_ms(q->timeout_ms));
    return rc;
}

int queue_wait_any(queue *q, const char *wake_key, const char *const *ids, int n,
                   double block_s, int *which)
{
    if (!wake_key || n < 0 || (n && !ids) || !which || !(block_s > 0))
        return fail(q, QUEUE_ERR_INVALID, "bad wait arguments");
    char secs[32], (*keys)[KEY_MAX] = calloc((size_t)n + 1, sizeof *keys);
    const char **argv = calloc((size_t)n + 3, sizeof *argv);
    redisReply *r = NULL, *back = NULL;
    int rc = QUEUE_ERR_NOMEM;
    if (!keys || !argv) {
        fail(q, rc, "no memory to wait for %d jobs", n);
        goto out;
    }
    argv[0] = "BLPOP";
    for (int i = 0; i < n; i++) {
        key(keys[i], "done:", ids[i]);
        argv[i + 1] = keys[i];
    }
    argv[n + 1] = wake_key;
    snprintf(secs, sizeof secs, "%.3f", block_s < 0.001 ? 0.001 : block_s);
    argv[n + 2] = secs;
    if ((rc = blocking(q, block_s, n + 3, argv, &r))) goto out;
    *which = -1;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_STRING)
        goto out; /* nil: the time passed */
    const char *k = r->element[0]->str;
    *which = n;
    for (int i = 0; i < n && *which == n; i++)
        if (!strcmp(k, keys[i])) *which = i;
    /* Give the marker back: other proxies' waiters may hold this job too. */
    if (*which < n) rc = script(q, S_NOTIFY, 1, 1, (const char *[]){k}, NULL, &back);
out:
    if (back) freeReplyObject(back);
    if (r) freeReplyObject(r);
    free(argv);
    free(keys);
    return rc;
}

int queue_wake(queue *q, const char *wake_key)
{
    if (!wake_key) return fail(q, QUEUE_ERR_INVALID, "no wake key");
    redisReply *r = NULL;
    int rc = script(q, S_NOTIFY, 1, 1, (const char *[]){wake_key}, NULL, &r);
    if (r) freeReplyObject(r);
    return rc;
}

static int count_field(const redisReply *h, const char *name, long long *out)
{
    for (size_t i = 0; i + 1 < h->elements; i += 2)
        if (field_is(h->element[i], name)) {
            *out = str_ll(h->element[i + 1]);
            return 1;
        }
    return 0;
}

int queue_length(queue *q, long long *out)
{
    const char *argv[2] = {"LLEN", q->qname};
    redisReply *r = NULL;
    int rc = command(q, 2, argv, NULL, &r);
    if (rc) return rc;
    rc = reply_int(q, r, out);
    freeReplyObject(r);
    return rc;
}

static void bucket_field(char *buf, size_t cap, int i)
{
    if (queue_hist_bounds[i] > 0)
        snprintf(buf, cap, "bucket_%g", queue_hist_bounds[i]);
    else
        snprintf(buf, cap, "bucket_inf");
}

int queue_get_stats(queue *q, queue_stats *out)
{
    const char *args[4] = {q->qname, q->kdead, q->kmetrics, "workers"};
    redisReply *r = NULL;
    int rc = script(q, S_STATS, 4, 4, args, NULL, &r);
    if (rc) return rc;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 5 ||
        r->element[2]->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(r);
        return fail(q, QUEUE_ERR_REPLY, "redis: unexpected stats reply");
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
        if (field_is(h->element[i], "inference_ms_sum"))
            s.inference_ms_sum = str_double(h->element[i + 1]);
    long long cum = 0;
    for (int i = 0; i < QUEUE_HIST_BUCKETS; i++) {
        char name[32];
        long long v = 0;
        bucket_field(name, sizeof name, i);
        count_field(h, name, &v);
        cum += v;
        s.hist[i] = cum;
    }
    freeReplyObject(r);
    *out = s;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Worker side                                                              */

/* Off processing list kproc, onto queue:dead (its first bytes), with a
 * job record saying why unless one exists, counted as invalid. */
static int refuse(queue *q, const char *kproc, const char *entry, size_t len, const char *why)
{
    size_t kept = len < QUEUE_BAD_ENTRY_KEEP ? len : QUEUE_BAD_ENTRY_KEEP;
    char now[24];
    snprintf(now, sizeof now, "%lld", (long long)now_ms(CLOCK_REALTIME));
    const char *args[10] = {kproc, q->kdead, q->kmetrics, entry,       entry,
                            why,   now,      q->dead_max, q->dead_age, q->ttl};
    size_t lens[10];
    for (int i = 0; i < 10; i++)
        lens[i] = strlen(args[i]);
    lens[3] = len;
    lens[4] = kept;
    redisReply *r = NULL;
    int rc = script(q, S_INVALID, 3, 10, args, lens, &r);
    if (rc) return rc;
    freeReplyObject(r);
    return 0;
}

int queue_job_refuse(queue *q, const char *worker, const char *id, const char *why)
{
    if (!worker_id_valid(worker) || !id || !why)
        return fail(q, QUEUE_ERR_INVALID, "bad refuse arguments");
    struct job_keys k;
    job_keys(&k, id, worker);
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
    snprintf(why, sizeof why,
             "queue entry is not a job id (%zu bytes; ids are %d to %d characters of [a-z0-9])%s%s%s",
             len, QUEUE_ID_MIN, QUEUE_ID_MAX, cut ? "; " : "", cut ? q->kdead : "",
             cut ? " keeps its first bytes" : "");
    int rc = refuse(q, kproc, entry, len, why);
    if (rc) return rc;
    fail(q, QUEUE_ERR_INVALID,
         "dead-lettered a queue entry that is not a job id: \"%s%s\" (%zu bytes)", shown,
         len > 40 ? "..." : "", len);
    return 0;
}

int queue_take(queue *q, const char *worker, double timeout_s, char *id_out, size_t id_cap)
{
    if (!worker_id_valid(worker) || timeout_s <= 0)
        return fail(q, QUEUE_ERR_INVALID, "bad take arguments");
    char kproc[KEY_MAX], secs[32];
    key(kproc, "processing:", worker);
    snprintf(secs, sizeof secs, "%.3f", timeout_s);
    const char *argv[6] = {"BLMOVE", q->qname, kproc, "RIGHT", "LEFT", secs};
    redisReply *r = NULL;
    int rc = blocking(q, timeout_s, 6, argv, &r);
    if (rc) return rc;
    if (r->type == REDIS_REPLY_NIL) {
        freeReplyObject(r);
        return QUEUE_ERR_EMPTY;
    }
    if (r->type != REDIS_REPLY_STRING) {
        freeReplyObject(r);
        return fail(q, QUEUE_ERR_REPLY, "redis: unexpected BLMOVE reply");
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

/* The image part of a START reply for a job to run: {0, attempt, image or
 * nil[, error]}. */
static int start_image(queue *q, const char *id, const redisReply *r, queue_start *out)
{
    const redisReply *img = r->elements > 2 ? r->element[2] : NULL;
    if (r->elements > 3 && r->element[3]->type == REDIS_REPLY_STRING) {
        out->image_state = QUEUE_IMAGE_BAD;
        return fail(q, QUEUE_OK, "redis: image:%s: %s", id, r->element[3]->str);
    }
    if (!img || img->type == REDIS_REPLY_NIL) {
        out->image_state = QUEUE_IMAGE_GONE;
        return fail(q, QUEUE_OK, "image:%s does not exist", id);
    }
    if (img->type != REDIS_REPLY_STRING) return fail(q, QUEUE_ERR_REPLY, "redis: bad image reply");
    out->image = malloc(img->len + 1);
    if (!out->image)
        return fail(q, QUEUE_ERR_NOMEM, "no memory for an image of %zu bytes", img->len);
    memcpy(out->image, img->str, img->len);
    out->image[img->len] = '\0';
    out->image_len = img->len;
    out->image_state = QUEUE_IMAGE_OK;
    return 0;
}

int queue_job_start(queue *q, const char *id, const char *worker, int max_attempts,
                    queue_start *out)
{
    if (!worker_id_valid(worker) || max_attempts < 1 || !out)
        return fail(q, QUEUE_ERR_INVALID, "bad start arguments");
    *out = (queue_start){0};
    struct job_keys k;
    char now[24], max[16];
    job_keys(&k, id, worker);
    snprintf(now, sizeof now, "%lld", (long long)now_ms(CLOCK_REALTIME));
    snprintf(max, sizeof max, "%d", max_attempts);
    const char *args[14] = {k.job,  k.result, k.processing, q->kdead, q->kmetrics,
                            k.done, k.image,  id,           worker,   now,
                            max,    q->ttl,   q->dead_max,  q->dead_age};
    redisReply *r = NULL;
    int rc = script(q, S_START, 7, 14, args, NULL, &r);
    if (rc) return rc;
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 2 ||
        r->element[0]->type != REDIS_REPLY_INTEGER || r->element[1]->type != REDIS_REPLY_INTEGER) {
        freeReplyObject(r);
        return fail(q, QUEUE_ERR_REPLY, "redis: unexpected start reply");
    }
    out->skip = r->element[0]->integer != 0;
    out->attempts = (int)r->element[1]->integer;
    if (!out->skip) rc = start_image(q, id, r, out);
    freeReplyObject(r);
    return rc;
}

int queue_job_done(queue *q, const char *id, const char *worker, const queue_result *res)
{
    if (!worker_id_valid(worker) || !res || !res->label)
        return fail(q, QUEUE_ERR_INVALID, "bad done arguments");
    struct job_keys k;
    char ms[32], now[24], bucket[32];
    job_keys(&k, id, worker);
    snprintf(ms, sizeof ms, "%.3f", res->inference_ms);
    snprintf(now, sizeof now, "%lld", (long long)now_ms(CLOCK_REALTIME));
    int b = 0;
    while (b < QUEUE_HIST_BUCKETS - 1 && res->inference_ms > queue_hist_bounds[b])
        b++;
    bucket_field(bucket, sizeof bucket, b);
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
    int rc = script(q, S_DONE, 6, 15, args, NULL, &r);
    if (rc) return rc;
    freeReplyObject(r);
    /* The job is done on the master whatever WAIT says, and running it again
     * would count it twice. If the master dies before a replica has the
     * result, the new master still lists the job in this worker's processing
     * list, and the worker runs it again when it reconnects. */
    if (replicated(q, "the result"))
        LOG(WARN, "job %s: %s; it is rerun if the master fails before a replica has it", id,
            q->err);
    return 0;
}

int queue_job_fail(queue *q, const char *id, const char *worker, const char *reason,
                   int max_attempts, int *final)
{
    if (!worker_id_valid(worker) || !reason || max_attempts < 1)
        return fail(q, QUEUE_ERR_INVALID, "bad fail arguments");
    struct job_keys k;
    char max[16], now[24];
    job_keys(&k, id, worker);
    snprintf(max, sizeof max, "%d", max_attempts);
    snprintf(now, sizeof now, "%lld", (long long)now_ms(CLOCK_REALTIME));
    const char *args[13] = {k.job,  k.processing, q->qname,   q->kdead, q->kmetrics,
                            k.done, id,           reason,     max,      now,
                            q->ttl, q->dead_max,  q->dead_age};
    redisReply *r = NULL;
    long long v = 0;
    int rc = script(q, S_FAIL, 6, 13, args, NULL, &r);
    if (rc) return rc;
    rc = reply_int(q, r, &v);
    freeReplyObject(r);
    if (rc) return rc;
    *final = v == 1;
    return 0;
}

int queue_job_expired(queue *q, const char *id, const char *worker)
{
    if (!worker_id_valid(worker)) return fail(q, QUEUE_ERR_INVALID, "bad worker id");
    struct job_keys k;
    char now[24];
    job_keys(&k, id, worker);
    snprintf(now, sizeof now, "%lld", (long long)now_ms(CLOCK_REALTIME));
    const char *args[7] = {k.job, k.processing, q->kmetrics, k.done, id, now, q->ttl};
    redisReply *r = NULL;
    int rc = script(q, S_EXPIRED, 4, 7, args, NULL, &r);
    if (rc) return rc;
    freeReplyObject(r);
    return 0;
}

int queue_heartbeat(queue *q, const char *worker, const char *info, int ttl_s)
{
    if (!worker_id_valid(worker) || ttl_s < 1)
        return fail(q, QUEUE_ERR_INVALID, "bad heartbeat arguments");
    char kw[KEY_MAX], ttl[16];
    key(kw, "worker:", worker);
    snprintf(ttl, sizeof ttl, "%d", ttl_s);
    const char *args[5] = {kw, "workers", worker, info ? info : "alive", ttl};
    redisReply *r = NULL;
    int rc = script(q, S_HEARTBEAT, 2, 5, args, NULL, &r);
    if (rc) return rc;
    freeReplyObject(r);
    return 0;
}

int queue_worker_gone(queue *q, const char *worker)
{
    if (!worker_id_valid(worker)) return fail(q, QUEUE_ERR_INVALID, "bad worker id");
    char kw[KEY_MAX];
    key(kw, "worker:", worker);
    const char *del[2] = {"DEL", kw};
    const char *srem[3] = {"SREM", "workers", worker};
    redisReply *r = NULL;
    int rc = command(q, 2, del, NULL, &r);
    if (rc) return rc;
    freeReplyObject(r);
    rc = command(q, 3, srem, NULL, &r);
    if (rc) return rc;
    freeReplyObject(r);
    return 0;
}

/* {requeued, given up} from REQUEUE or REAP_ONE. */
static int reply_pair(queue *q, const redisReply *r, long long *a, long long *b)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_INTEGER || r->element[1]->type != REDIS_REPLY_INTEGER)
        return fail(q, QUEUE_ERR_REPLY, "redis: unexpected requeue reply");
    *a = r->element[0]->integer;
    *b = r->element[1]->integer;
    return 0;
}

/* REQUEUE of processing:{worker}, or with reap REAP_ONE (only if the
 * worker's heartbeat is gone, and the worker is then forgotten). */
static int requeue(queue *q, const char *worker, int refund, int death, const char *why, int reap,
                   long long *moved, long long *given_up)
{
    if (!worker_id_valid(worker)) return fail(q, QUEUE_ERR_INVALID, "bad worker id");
    char kproc[KEY_MAX], kw[KEY_MAX], now[24], maxd[16];
    key(kproc, "processing:", worker);
    key(kw, "worker:", worker);
    snprintf(now, sizeof now, "%lld", (long long)now_ms(CLOCK_REALTIME));
    snprintf(maxd, sizeof maxd, "%d", q->max_deaths);
    const char *args[15] = {kproc, q->qname, q->kdead, q->kmetrics};
    int nkeys = 4;
    if (reap) {
        args[nkeys++] = kw;
        args[nkeys++] = "workers";
    }
    const char *argv[9] = {refund ? "1" : "0",
                           death ? "1" : "0",
                           why ? why : "",
                           maxd,
                           now,
                           q->dead_max,
                           q->dead_age,
                           q->ttl,
                           worker};
    int nargv = reap ? 9 : 8;
    memcpy(&args[nkeys], argv, (size_t)nargv * sizeof argv[0]);
    redisReply *r = NULL;
    long long n = 0, gone = 0;
    int rc = script(q, reap ? S_REAP_ONE : S_REQUEUE, nkeys, nkeys + nargv, args, NULL, &r);
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
    if (!why || !why[0]) return fail(q, QUEUE_ERR_INVALID, "a death needs a reason");
    return requeue(q, worker, refund, 1, why, 0, moved, given_up);
}

int queue_reap_dead_workers(queue *q, long long *moved)
{
    const char *argv[2] = {"SMEMBERS", "workers"};
    redisReply *members = NULL;
    long long total = 0;
    int rc = command(q, 2, argv, NULL, &members);
    if (rc) return rc;
    if (members->type != REDIS_REPLY_ARRAY) {
        rc = fail(q, QUEUE_ERR_REPLY, "redis: unexpected SMEMBERS reply");
        goto out;
    }
    for (size_t i = 0; i < members->elements; i++) {
        const redisReply *m = members->element[i];
        if (m->type != REDIS_REPLY_STRING || m->len >= QUEUE_WORKER_ID_MAX) continue;
        char w[QUEUE_WORKER_ID_MAX + 1], why[QUEUE_WORKER_ID_MAX + 64];
        memcpy(w, m->str, m->len);
        w[m->len] = '\0';
        if (!worker_id_valid(w)) continue;
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

/* ------------------------------------------------------------------------ */
/* Webhook delivery                                                         */

int queue_webhook_claim(queue *q, int64_t now_ms, int64_t lease_ms, int max,
                        char (*ids)[QUEUE_ID_MAX + 1], int *n, int64_t *next_due_ms)
{
    if (!ids || !n || !next_due_ms || max < 1 || lease_ms < 1)
        return fail(q, QUEUE_ERR_INVALID, "bad claim arguments");
    char now[24], lease[24], maxs[16];
    snprintf(now, sizeof now, "%lld", (long long)now_ms);
    snprintf(lease, sizeof lease, "%lld", (long long)lease_ms);
    snprintf(maxs, sizeof maxs, "%d", max);
    const char *args[5] = {"webhooks:due", "webhooks:wake", now, lease, maxs};
    redisReply *r = NULL;
    int rc = script(q, S_HOOK_CLAIM, 2, 5, args, NULL, &r);
    if (rc) return rc;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(r);
        return fail(q, QUEUE_ERR_REPLY, "redis: unexpected webhook claim reply");
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
    *next_due_ms = r->element[1]->type == REDIS_REPLY_STRING ? str_ll(r->element[1]) : -1;
    freeReplyObject(r);
    return 0;
}

int queue_webhook_wait(queue *q, double block_s)
{
    char secs[32];
    snprintf(secs, sizeof secs, "%.3f", block_s < 0.001 ? 0.001 : block_s);
    const char *argv[3] = {"BLPOP", "webhooks:wake", secs};
    redisReply *r = NULL;
    int rc = blocking(q, block_s, 3, argv, &r);
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
        return fail(q, QUEUE_ERR_INVALID, "bad webhook record arguments");
    struct job_keys k;
    char att[16], due[24];
    job_keys(&k, id, NULL);
    snprintf(att, sizeof att, "%d", attempts);
    snprintf(due, sizeof due, "%lld", (long long)due_ms);
    const char *args[8] = {
        k.job, "webhooks:due", q->kmetrics, id, names[outcome], att, error ? error : "", due};
    redisReply *r = NULL;
    int rc = script(q, S_HOOK_RECORD, 3, 8, args, NULL, &r);
    if (rc) return rc;
    freeReplyObject(r);
    return 0;
}
