/*
 * queue_internal: what the queue_*.c files share, and nothing else includes.
 *
 * The queue is one subsystem in five files, split along who calls what:
 *   queue_conn.c    the connection (sentinels, AUTH, back-off, reconnects),
 *                   commands, errors, the options and the keys of a job
 *   queue_script.c  the Lua scripts (the .lua files in lua/, built in), EVALSHA
 *   queue_job.c     the proxy side: create a job, read it, wait for it
 *   queue_worker.c  the worker side: take, start, done, fail, requeue, reap
 *   queue_stats.c   counts for /metrics and the webhook schedule
 * Functions here are prefixed qi_ so that they cannot clash with any other
 * module's in the same library.
 */
#ifndef TANDEM_QUEUE_INTERNAL_H
#define TANDEM_QUEUE_INTERNAL_H

#include <hiredis/hiredis.h>
#include <stdint.h>

#include "queue.h"

#define KEY_MAX 160

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
    char sha[32][41]; /* SCRIPT LOAD's sha1 of each script, "" until loaded */
};

/* The scripts (queue_script.c); KEYS and ARGV are described atop each .lua. */
enum {
    S_CREATE,
    S_REGISTER,
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
    S_TAKE_MORE,
    S_COUNT
};
_Static_assert(S_COUNT <= 32, "queue.sha holds 32 scripts");

/* The keys of one job, and of the worker's processing list (worker may be
 * NULL when no worker is involved), built once per call. */
struct qi_job_keys {
    char job[KEY_MAX], image[KEY_MAX], result[KEY_MAX], done[KEY_MAX], processing[KEY_MAX];
};
void qi_job_keys(struct qi_job_keys *k, const char *id, const char *worker);
/* buf (KEY_MAX bytes) = prefix id */
void qi_key(char *buf, const char *prefix, const char *id);
int qi_worker_id_valid(const char *w);

/* Sets q's error message and returns status. */
int qi_fail(queue *q, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int64_t qi_now_ms(int clock);
/* Connects if there is no connection (after the back-off delay). */
int qi_ensure_connected(queue *q);
/* One command; on success *out is a non-error reply the caller frees. */
int qi_command(queue *q, int argc, const char **argv, const size_t *lens, redisReply **out);
/* One command sent without waiting for its reply, which qi_receive reads
 * (before any other command on q); the same outcomes as qi_command. */
int qi_send(queue *q, int argc, const char **argv, const size_t *lens);
int qi_receive(queue *q, redisReply **out);
/* Queues count commands formatted by redisFormatCommand* (NULL or a length
 * <= 0: formatting failed) as one write, all or none, so that no reply is
 * left unread; frees them. The caller is connected and reads each reply
 * with qi_receive, in order. */
int qi_append_joined(queue *q, int count, char **cmds, const int *lens);
/* A blocking command: the read timeout covers block_s too. */
int qi_blocking(queue *q, double block_s, int argc, const char **argv, redisReply **out);
/* EVALSHA of script which with nkeys keys first among args (lens NULL: strlen). */
int qi_script(queue *q, int which, int nkeys, int nargs, const char **args, const size_t *lens,
              redisReply **out);
/* qi_script, and one more command in the same write, which Redis runs
 * right after the script: a plain read beside a script costs no round trip
 * of its own and no copy through Lua (220 kB of image: 0.45 ms). Returns
 * the script's status and *out as qi_script does; *then_rc and *then_out
 * are the command's, as qi_command's (QUEUE_ERR_IO and no reply when the
 * connection broke before it was read). q's error is the script's if it
 * failed, else the command's. */
int qi_script_then(queue *q, int which, int nkeys, int nargs, const char **args,
                   const size_t *lens, int argc, const char **argv, const size_t *alens,
                   redisReply **out, int *then_rc, redisReply **then_out);
/* With min_replicas: 0 once that many replicas hold this connection's writes. */
int qi_replicated(queue *q, const char *what);

/* Reading replies. */
int qi_reply_int(queue *q, redisReply *r, long long *out);
long long qi_str_ll(const redisReply *r);
double qi_str_double(const redisReply *r);
int qi_field_is(const redisReply *r, const char *name);
/* The metrics hash field of histogram bucket i. */
void qi_bucket_field(char *buf, size_t cap, int i);

#endif
