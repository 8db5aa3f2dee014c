/*
 * queue against a real redis-server: this test starts Debian's
 * /usr/bin/redis-server itself on a free port in a temporary directory (no
 * persistence) and stops it when done; the child dies with us (PDEATHSIG).
 */
#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "queue.h"
#include "test.h"

static pid_t redis_pid;
static pid_t redis_owner; /* the process that started it: only it stops it */
static int redis_port;
static char redis_dir[64];

/* Each test runs in a forked child (test.h) that inherits this state and runs
 * the destructor at its exit: the server and its directory belong to the
 * process that made them. */
__attribute__((destructor)) static void stop_redis(void)
{
    if (redis_owner != getpid()) return;
    if (redis_pid > 0) {
        kill(redis_pid, SIGTERM);
        waitpid(redis_pid, NULL, 0);
        redis_pid = 0;
    }
    if (redis_dir[0]) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", redis_dir);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", redis_dir);
        redis_dir[0] = '\0';
    }
}

static redisContext *raw_connect(int port)
{
    struct timeval tv = {1, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (c && c->err) {
        redisFree(c);
        return NULL;
    }
    return c;
}

/* Starts redis once; returns a raw connection (FLUSHALLed) for checks. */
static redisContext *redis(void)
{
    if (!redis_pid) {
        redis_owner = getpid();
        snprintf(redis_dir, sizeof redis_dir, "/tmp/tandem-test-queue-XXXXXX");
        if (!mkdtemp(redis_dir)) return NULL;
        for (int tries = 0; tries < 20 && !redis_pid; tries++) {
            int port = 20000 + (int)((getpid() * 7 + tries * 131) % 30000);
            redisContext *probe = raw_connect(port);
            if (probe) { /* taken */
                redisFree(probe);
                continue;
            }
            char ports[16];
            snprintf(ports, sizeof ports, "%d", port);
            pid_t pid = fork();
            if (pid == 0) {
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                if (!freopen("/dev/null", "w", stdout)) _exit(127);
                execl("/usr/bin/redis-server", "redis-server", "--port", ports, "--bind",
                      "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", redis_dir,
                      (char *)NULL);
                _exit(127);
            }
            for (int i = 0; i < 100; i++) {
                redisContext *c = raw_connect(port);
                if (c) {
                    redisFree(c);
                    redis_pid = pid;
                    redis_port = port;
                    break;
                }
                int st;
                if (waitpid(pid, &st, WNOHANG) == pid) break; /* port race: try another */
                usleep(20000);
            }
        }
        if (!redis_pid) return NULL;
    }
    redisContext *c = raw_connect(redis_port);
    if (!c) return NULL;
    redisReply *r = redisCommand(c, "FLUSHALL");
    freeReplyObject(r);
    return c;
}

/* Started before main(), in the runner itself, so every forked test reuses
 * one server; a test that finds none (the start failed) tries again. */
__attribute__((constructor)) static void start_redis_once(void)
{
    redisContext *c = redis();
    if (c) redisFree(c);
}

static queue *open_queue(int port)
{
    queue_options o = {.host = "127.0.0.1",
                       .port = port,
                       .timeout_ms = 1000,
                       .queue_name = "queue:jobs",
                       .job_ttl = 3600};
    queue *q = NULL;
    return queue_open(&o, &q) == 0 ? q : NULL;
}

static long long raw_int(redisContext *c, const char *fmt, const char *arg)
{
    redisReply *r = redisCommand(c, fmt, arg);
    long long v = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -999;
    freeReplyObject(r);
    return v;
}

static char *raw_str(redisContext *c, const char *fmt, const char *arg)
{
    redisReply *r = redisCommand(c, fmt, arg);
    char *s = r && r->type == REDIS_REPLY_STRING ? strdup(r->str) : NULL;
    freeReplyObject(r);
    return s;
}

static int create(queue *q, char *id)
{
    queue_new_job j = {.image_b64 = "aGVsbG8=",
                       .image_b64_len = 8,
                       .sync_label = "tabby",
                       .sync_model = "fast.onnx",
                       .id_len = 6};
    return queue_create_job(q, &j, id, QUEUE_ID_MAX + 1);
}

/* queue_job_start for tests that need only skip and attempts. */
static int start_job(queue *q, const char *id, const char *worker, int max, int *skip,
                     int *attempts)
{
    queue_start st;
    int rc = queue_job_start(q, id, worker, max, &st);
    if (!rc) {
        *skip = st.skip;
        *attempts = st.attempts;
    }
    queue_start_clear(&st);
    return rc;
}

TEST(id_validation)
{
    ASSERT(queue_id_valid("a1b2c3"));
    ASSERT(queue_id_valid("abcd"));
    ASSERT(!queue_id_valid("abc"));
    ASSERT(!queue_id_valid("ABCDEF"));
    ASSERT(!queue_id_valid("a1b2c*"));
    ASSERT(!queue_id_valid("../../x"));
    ASSERT(!queue_id_valid(""));
    ASSERT(!queue_id_valid(NULL));
    ASSERT(!queue_id_valid("0123456789012345678901234567890123"));
}

TEST(open_refuses_bad_options)
{
    queue_options o = {.host = "127.0.0.1",
                       .port = 0,
                       .timeout_ms = 100,
                       .queue_name = "queue:jobs",
                       .job_ttl = 10};
    queue *q = NULL;
    ASSERT_EQ(queue_open(&o, &q), QUEUE_ERR_INVALID);
    ASSERT(q == NULL);
}

/* REDIS_USERNAME/REDIS_PASSWORD: an ACL user of the test's Redis. */
TEST(auth_with_an_acl_user)
{
    redisContext *c = redis();
    ASSERT(c);
    redisReply *r = redisCommand(c, "ACL SETUSER tandem-t on >s3cret ~* &* +@all");
    int set = r && r->type == REDIS_REPLY_STATUS;
    freeReplyObject(r);
    ASSERT(set);
    queue_options o = {.host = "127.0.0.1",
                       .port = redis_port,
                       .timeout_ms = 1000,
                       .queue_name = "queue:jobs",
                       .job_ttl = 3600,
                       .username = "tandem-t",
                       .password = "s3cret"};
    queue *good = NULL, *bad = NULL;
    int rc_open = queue_open(&o, &good);
    o.password = "wrong";
    rc_open |= queue_open(&o, &bad);
    int ping_good = good ? queue_ping(good) : -1, ping_bad = bad ? queue_ping(bad) : 0;
    int says_auth = bad && strstr(queue_errstr(bad), "AUTH") != NULL;
    queue_close(good);
    queue_close(bad);
    r = redisCommand(c, "ACL DELUSER tandem-t");
    freeReplyObject(r);
    redisFree(c);
    ASSERT_EQ(rc_open, 0);
    ASSERT_EQ(ping_good, 0);
    ASSERT_EQ(ping_bad, QUEUE_ERR_IO);
    ASSERT(says_auth);
}

TEST(create_writes_seed_keys_atomically)
{
    redisContext *c = redis();
    ASSERT(c);
    queue *q = open_queue(redis_port);
    ASSERT(q);
    char id[QUEUE_ID_MAX + 1];
    ASSERT_EQ(create(q, id), 0);
    ASSERT_EQ(strlen(id), 6);
    ASSERT(queue_id_valid(id));
    char k[64];
    snprintf(k, sizeof k, "image:%s", id);
    char *img = raw_str(c, "GET %s", k);
    ASSERT_STR_EQ(img, "aGVsbG8=");
    free(img);
    long long ttl = raw_int(c, "TTL %s", k);
    ASSERT(ttl > 3590 && ttl <= 3600);
    snprintf(k, sizeof k, "job:%s", id);
    ASSERT(raw_int(c, "TTL %s", k) > 3590);
    ASSERT_EQ(raw_int(c, "LLEN %s", "queue:jobs"), 1);
    queue_job j;
    ASSERT_EQ(queue_get_job(q, id, &j), 0);
    ASSERT_STR_EQ(j.status, "queued");
    ASSERT_STR_EQ(j.sync_label, "tabby");
    ASSERT(j.label == NULL);
    ASSERT(j.created_ms > 0);
    queue_job_clear(&j);
    ASSERT_EQ(queue_get_job(q, "zzzzzz", &j), QUEUE_ERR_NOTFOUND);
    ASSERT_EQ(queue_get_job(q, "bad*id", &j), QUEUE_ERR_INVALID);
    queue_close(q);
    redisFree(c);
}

TEST(ids_are_unique_and_backlog_is_bounded)
{
    redisContext *c = redis();
    ASSERT(c);
    queue *q = open_queue(redis_port);
    ASSERT(q);
    /* Length 4 over 36 symbols: 1.7M ids; 300 jobs must never collide. */
    queue_new_job j = {.image_b64 = "eA==", .image_b64_len = 4, .id_len = 4};
    for (int i = 0; i < 300; i++) {
        char id[QUEUE_ID_MAX + 1];
        ASSERT_EQ(queue_create_job(q, &j, id, sizeof id), 0);
    }
    long long n = 0;
    ASSERT_EQ(queue_length(q, &n), 0);
    ASSERT_EQ(n, 300);
    j.max_backlog = 300;
    char id[QUEUE_ID_MAX + 1];
    ASSERT_EQ(queue_create_job(q, &j, id, sizeof id), QUEUE_ERR_FULL);
    ASSERT_EQ(raw_int(c, "LLEN %s", "queue:jobs"), 300);
    j.max_backlog = 301;
    ASSERT_EQ(queue_create_job(q, &j, id, sizeof id), 0);
    queue_close(q);
    redisFree(c);
}

/* ---- creating a job in two steps (queue_create_begin/finish) ---- */

static const queue_new_job staged_job = {.image_b64 = "aGVsbG8=",
                                         .image_b64_len = 8,
                                         .sync_label = "tabby",
                                         .sync_model = "fast.onnx",
                                         .id_len = 6};

/* Waits until key exists (seen from another connection). */
static int appears(redisContext *c, const char *prefix, const char *id)
{
    char k[64];
    snprintf(k, sizeof k, "%s%s", prefix, id);
    for (int i = 0; i < 200; i++) {
        if (raw_int(c, "EXISTS %s", k) == 1) return 1;
        usleep(5000);
    }
    return 0;
}

TEST(create_in_two_steps_writes_what_create_writes)
{
    redisContext *c = redis();
    ASSERT(c);
    queue *q = open_queue(redis_port);
    ASSERT(q);
    queue_staged st;
    queue_create_begin(q, &staged_job, &st);
    ASSERT(st.sent);
    /* The image is in Redis before finish, with a short TTL. */
    ASSERT(appears(c, "image:", st.id));
    char k[64];
    snprintf(k, sizeof k, "image:%s", st.id);
    long long ttl = raw_int(c, "TTL %s", k);
    ASSERT(ttl > 0 && ttl <= QUEUE_STAGE_TTL_S);
    snprintf(k, sizeof k, "job:%s", st.id);
    ASSERT_EQ(raw_int(c, "EXISTS %s", k), 0);
    char id[QUEUE_ID_MAX + 1];
    ASSERT_EQ(queue_create_finish(q, &staged_job, &st, id, sizeof id), 0);
    ASSERT_STR_EQ(id, st.id);
    snprintf(k, sizeof k, "image:%s", id);
    char *img = raw_str(c, "GET %s", k);
    ASSERT_STR_EQ(img, "aGVsbG8=");
    free(img);
    ttl = raw_int(c, "TTL %s", k);
    ASSERT(ttl > 3590 && ttl <= 3600);
    snprintf(k, sizeof k, "job:%s", id);
    ASSERT(raw_int(c, "TTL %s", k) > 3590);
    ASSERT_EQ(raw_int(c, "LLEN %s", "queue:jobs"), 1);
    queue_job j;
    ASSERT_EQ(queue_get_job(q, id, &j), 0);
    ASSERT_STR_EQ(j.status, "queued");
    ASSERT_STR_EQ(j.sync_label, "tabby");
    ASSERT_STR_EQ(j.sync_model, "fast.onnx");
    ASSERT_EQ(j.attempts, 0);
    ASSERT(j.created_ms > 0);
    queue_job_clear(&j);
    /* Another job (the connection is in step), one with a callback. */
    queue_new_job cb = staged_job;
    cb.callback_url = "http://127.0.0.1:9/hook";
    queue_create_begin(q, &cb, &st);
    ASSERT_EQ(queue_create_finish(q, &cb, &st, id, sizeof id), 0);
    ASSERT_EQ(queue_get_job(q, id, &j), 0);
    ASSERT_STR_EQ(j.callback_url, "http://127.0.0.1:9/hook");
    queue_job_clear(&j);
    ASSERT_EQ(raw_int(c, "DBSIZE%s", ""), 5); /* 2 x (image, job), the queue */
    queue_close(q);
    redisFree(c);
}

/* An image bigger than the socket takes at once: begin sends a part, the
 * rest leaves when finish reads the answer, and Redis holds all of it. */
TEST(create_in_two_steps_sends_a_big_image_whole)
{
    redisContext *c = redis();
    ASSERT(c);
    queue *q = open_queue(redis_port);
    ASSERT(q);
    size_t n = 8u << 20;
    char *big = malloc(n + 1);
    ASSERT(big);
    for (size_t i = 0; i < n; i++)
        big[i] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[(i * 7) % 64];
    big[n] = '\0';
    queue_new_job j = staged_job;
    j.image_b64 = big;
    j.image_b64_len = n;
    char id[QUEUE_ID_MAX + 1], k[64];
    for (int round = 0; round < 2; round++) {
        queue_staged st;
        queue_create_begin(q, &j, &st);
        ASSERT(st.sent);
        if (round == 0) {
            ASSERT_EQ(queue_create_finish(q, &j, &st, id, sizeof id), 0);
            snprintf(k, sizeof k, "image:%s", id);
            char *img = raw_str(c, "GET %s", k);
            ASSERT(img && strlen(img) == n && !memcmp(img, big, n));
            free(img);
        } else {
            queue_create_abandon(q, &st);
            snprintf(k, sizeof k, "image:%s", st.id);
            ASSERT_EQ(raw_int(c, "EXISTS %s", k), 0);
        }
    }
    ASSERT_EQ(queue_ping(q), 0);
    ASSERT_EQ(raw_int(c, "LLEN %s", "queue:jobs"), 1);
    free(big);
    queue_close(q);
    redisFree(c);
}

TEST(create_in_two_steps_when_full_or_abandoned_leaves_no_image)
{
    redisContext *c = redis();
    ASSERT(c);
    queue *q = open_queue(redis_port);
    ASSERT(q);
    char id[QUEUE_ID_MAX + 1];
    ASSERT_EQ(create(q, id), 0);
    queue_new_job full = staged_job;
    full.max_backlog = 1;
    queue_staged st;
    queue_create_begin(q, &full, &st);
    ASSERT(appears(c, "image:", st.id));
    ASSERT_EQ(queue_create_finish(q, &full, &st, id, sizeof id), QUEUE_ERR_FULL);
    char k[64];
    snprintf(k, sizeof k, "image:%s", st.id);
    ASSERT_EQ(raw_int(c, "EXISTS %s", k), 0);
    ASSERT_EQ(raw_int(c, "LLEN %s", "queue:jobs"), 1);
    /* Abandoned (the inference failed): the image goes, the connection stays usable. */
    queue_create_begin(q, &staged_job, &st);
    ASSERT(appears(c, "image:", st.id));
    queue_create_abandon(q, &st);
    snprintf(k, sizeof k, "image:%s", st.id);
    ASSERT_EQ(raw_int(c, "EXISTS %s", k), 0);
    ASSERT_EQ(queue_ping(q), 0);
    ASSERT_EQ(raw_int(c, "DBSIZE%s", ""), 3); /* the first job only */
    queue_close(q);
    redisFree(c);
}

TEST(create_in_two_steps_takes_a_fresh_id_when_it_must)
{
    redisContext *c = redis();
    ASSERT(c);
    queue *q = open_queue(redis_port);
    ASSERT(q);
    char id[QUEUE_ID_MAX + 1], k[64];
    queue_staged st;
    /* The id is found taken (an old job's record): its image goes, a fresh id is used. */
    queue_create_begin(q, &staged_job, &st);
    ASSERT(appears(c, "image:", st.id));
    snprintf(k, sizeof k, "job:%s", st.id);
    redisReply *r = redisCommand(c, "HSET %s status done", k);
    freeReplyObject(r);
    ASSERT_EQ(queue_create_finish(q, &staged_job, &st, id, sizeof id), 0);
    ASSERT(strcmp(id, st.id) != 0);
    snprintf(k, sizeof k, "image:%s", st.id);
    ASSERT_EQ(raw_int(c, "EXISTS %s", k), 0);
    snprintf(k, sizeof k, "image:%s", id);
    ASSERT_EQ(raw_int(c, "EXISTS %s", k), 1);
    /* The image expired before finish (a proxy stalled past its TTL). */
    queue_create_begin(q, &staged_job, &st);
    ASSERT(appears(c, "image:", st.id));
    snprintf(k, sizeof k, "image:%s", st.id);
    r = redisCommand(c, "DEL %s", k);
    freeReplyObject(r);
    ASSERT_EQ(queue_create_finish(q, &staged_job, &st, id, sizeof id), 0);
    ASSERT(strcmp(id, st.id) != 0);
    snprintf(k, sizeof k, "image:%s", id);
    ASSERT_EQ(raw_int(c, "EXISTS %s", k), 1);
    ASSERT_EQ(raw_int(c, "LLEN %s", "queue:jobs"), 2);
    queue_close(q);
    redisFree(c);
}

TEST(create_in_two_steps_meets_redis_errors_as_create_does)
{
    redisContext *c = redis();
    ASSERT(c);
    char id[QUEUE_ID_MAX + 1];
    queue_staged st;
    /* Nothing listens: IO, quickly. */
    queue *q = open_queue(redis_port == 65000 ? 65001 : 65000);
    ASSERT(q);
    queue_create_begin(q, &staged_job, &st);
    ASSERT_EQ(queue_create_finish(q, &staged_job, &st, id, sizeof id), QUEUE_ERR_IO);
    queue_close(q);
    q = open_queue(redis_port);
    ASSERT(q);
    /* Out of memory: the image is refused, so is the job. */
    redisReply *r = redisCommand(c, "CONFIG SET maxmemory 1");
    freeReplyObject(r);
    queue_create_begin(q, &staged_job, &st);
    int rc = queue_create_finish(q, &staged_job, &st, id, sizeof id);
    r = redisCommand(c, "CONFIG SET maxmemory 0");
    freeReplyObject(r);
    ASSERT_EQ(rc, QUEUE_ERR_OOM);
    ASSERT(strstr(queue_errstr(q), "OOM"));
    ASSERT_EQ(raw_int(c, "DBSIZE%s", ""), 0);
    /* The connection broken between the steps (a failover): IO, and the
     * next job goes through on a new connection. */
    ASSERT_EQ(queue_ping(q), 0);
    queue_create_begin(q, &staged_job, &st);
    ASSERT(appears(c, "image:", st.id));
    r = redisCommand(c, "CLIENT KILL TYPE normal SKIPME yes");
    freeReplyObject(r);
    ASSERT_EQ(queue_create_finish(q, &staged_job, &st, id, sizeof id), QUEUE_ERR_IO);
    queue_create_begin(q, &staged_job, &st);
    ASSERT_EQ(queue_create_finish(q, &staged_job, &st, id, sizeof id), 0);
    ASSERT_EQ(raw_int(c, "LLEN %s", "queue:jobs"), 1);
    queue_close(q);
    redisFree(c);
}

TEST(take_run_done_is_idempotent)
{
    redisContext *c = redis();
    ASSERT(c);
    queue *q = open_queue(redis_port);
    ASSERT(q);
    char id[QUEUE_ID_MAX + 1], got[QUEUE_ID_MAX + 1];
    ASSERT_EQ(create(q, id), 0);
    ASSERT_EQ(queue_heartbeat(q, "w1", "test", 10), 0);
    ASSERT_EQ(queue_take(q, "w1", 1, got, sizeof got), 0);
    ASSERT_STR_EQ(got, id);
    ASSERT_EQ(raw_int(c, "LLEN %s", "processing:w1"), 1);
    int skip = -1, attempts = 0;
    queue_start st;
    ASSERT_EQ(queue_job_start(q, id, "w1", 3, &st), 0);
    ASSERT_EQ(st.skip, 0);
    ASSERT_EQ(st.attempts, 1);
    ASSERT_EQ(st.image_state, QUEUE_IMAGE_OK); /* the image comes with the start */
    ASSERT_EQ(st.image_len, 8);
    ASSERT_STR_EQ(st.image, "aGVsbG8=");
    queue_start_clear(&st);
    queue_job j;
    ASSERT_EQ(queue_get_job(q, id, &j), 0);
    ASSERT_STR_EQ(j.status, "running");
    ASSERT_STR_EQ(j.worker, "w1");
    queue_job_clear(&j);
    queue_result res = {
        .label = "tiger cat", .top5 = "[]", .model = "slow.onnx", .inference_ms = 42.5};
    ASSERT_EQ(queue_job_done(q, id, "w1", &res), 0);
    ASSERT_EQ(raw_int(c, "LLEN %s", "processing:w1"), 0);
    char k[64];
    snprintf(k, sizeof k, "result:%s", id);
    char *label = raw_str(c, "GET %s", k);
    ASSERT_STR_EQ(label, "tiger cat");
    free(label);
    ASSERT(raw_int(c, "TTL %s", k) > 3590);
    /* A second completion (e.g. a duplicate after a requeue) keeps the first. */
    queue_result other = {.label = "dog", .inference_ms = 1};
    ASSERT_EQ(queue_job_done(q, id, "w1", &other), 0);
    ASSERT_EQ(queue_get_job(q, id, &j), 0);
    ASSERT_STR_EQ(j.status, "done");
    ASSERT_STR_EQ(j.label, "tiger cat");
    ASSERT_STR_EQ(j.model, "slow.onnx");
    ASSERT_NEAR(j.inference_ms, 42.5, 1e-6);
    ASSERT_EQ(j.attempts, 1);
    queue_job_clear(&j);
    /* Taken again: start says skip and the processing list is cleaned. */
    redisReply *r = redisCommand(c, "RPUSH queue:jobs %s", id);
    freeReplyObject(r);
    ASSERT_EQ(queue_take(q, "w1", 1, got, sizeof got), 0);
    ASSERT_EQ(start_job(q, id, "w1", 3, &skip, &attempts), 0);
    ASSERT_EQ(skip, 1);
    ASSERT_EQ(raw_int(c, "LLEN %s", "processing:w1"), 0);
    queue_stats s;
    ASSERT_EQ(queue_get_stats(q, &s), 0);
    ASSERT_EQ(s.processed, 1);
    ASSERT_EQ(s.inference_count, 1);
    ASSERT_NEAR(s.inference_ms_sum, 42.5, 1e-6);
    ASSERT_EQ(s.hist[2], 0); /* <= 25 ms */
    ASSERT_EQ(s.hist[3], 1); /* <= 50 ms */
    ASSERT_EQ(s.hist[QUEUE_HIST_BUCKETS - 1], 1);
    ASSERT_EQ(s.workers_alive, 1);
    ASSERT_EQ(queue_take(q, "w1", 0.05, got, sizeof got), QUEUE_ERR_EMPTY);
    queue_close(q);
    redisFree(c);
}

TEST(failures_retry_then_dead_letter)
{
    redisContext *c = redis();
    ASSERT(c);
    queue *q = open_queue(redis_port);
    ASSERT(q);
    char id[QUEUE_ID_MAX + 1], got[QUEUE_ID_MAX + 1], other[QUEUE_ID_MAX + 1];
    ASSERT_EQ(create(q, id), 0);
    ASSERT_EQ(create(q, other), 0);
    int skip, attempts, final = -1;
    ASSERT_EQ(queue_take(q, "w1", 1, got, sizeof got), 0);
    ASSERT_STR_EQ(got, id); /* oldest first, as the seed's RPOP */
    ASSERT_EQ(start_job(q, id, "w1", 2, &skip, &attempts), 0);
    ASSERT_EQ(queue_job_fail(q, id, "w1", "not an image", 2, &final), 0);
    ASSERT_EQ(final, 0);
    /* Requeued behind the other job: a poison job does not block the queue. */
    ASSERT_EQ(queue_take(q, "w1", 1, got, sizeof got), 0);
    ASSERT_STR_EQ(got, other);
    ASSERT_EQ(queue_take(q, "w2", 1, got, sizeof got), 0);
    ASSERT_STR_EQ(got, id);
    ASSERT_EQ(start_job(q, id, "w2", 2, &skip, &attempts), 0);
    ASSERT_EQ(attempts, 2);
    ASSERT_EQ(queue_job_fail(q, id, "w2", "not an image", 2, &final), 0);
    ASSERT_EQ(final, 1);
    queue_job j;
    ASSERT_EQ(queue_get_job(q, id, &j), 0);
    ASSERT_STR_EQ(j.status, "failed");
    ASSERT_STR_EQ(j.error, "not an image");
    ASSERT_EQ(j.attempts, 2);
    queue_job_clear(&j);
    char *dead = raw_str(c, "LINDEX %s 0", "queue:dead");
    ASSERT_STR_EQ(dead, id);
    free(dead);
    ASSERT_EQ(raw_int(c, "LLEN %s", "processing:w2"), 0);
    queue_stats s;
    ASSERT_EQ(queue_get_stats(q, &s), 0);
    ASSERT_EQ(s.failed, 1);
    ASSERT_EQ(s.retried, 1);
    ASSERT_EQ(s.dead_length, 1);
    queue_close(q);
    redisFree(c);
}

TEST(a_job_whose_worker_keeps_dying_is_given_up)
{
    redisContext *c = redis();
    ASSERT(c);
    queue *q = open_queue(redis_port);
    ASSERT(q);
    char id[QUEUE_ID_MAX + 1], got[QUEUE_ID_MAX + 1];
    ASSERT_EQ(create(q, id), 0);
    int skip = 0, attempts = 0;
    long long moved = 0;
    for (int i = 1; i <= 2; i++) {
        ASSERT_EQ(queue_take(q, "w1", 1, got, sizeof got), 0);
        ASSERT_EQ(start_job(q, id, "w1", 2, &skip, &attempts), 0);
        ASSERT_EQ(skip, 0);
        ASSERT_EQ(queue_requeue_worker(q, "w1", 0, &moved), 0); /* as after a crash */
        ASSERT_EQ(moved, 1);
    }
    ASSERT_EQ(queue_take(q, "w1", 1, got, sizeof got), 0);
    ASSERT_EQ(start_job(q, id, "w1", 2, &skip, &attempts), 0);
    ASSERT_EQ(skip, 1);
    queue_job j;
    ASSERT_EQ(queue_get_job(q, id, &j), 0);
    ASSERT_STR_EQ(j.status, "failed");
    ASSERT(j.error && strstr(j.error, "gave up after 2 attempts"));
    queue_job_clear(&j);
    ASSERT_EQ(raw_int(c, "LLEN %s", "queue:dead"), 1);
    ASSERT_EQ(raw_int(c, "LLEN %s", "processing:w1"), 0);
    queue_close(q);
    redisFree(c);
}

TEST(a_worker_killed_from_outside_costs_no_attempt)
{
    redisContext *c = redis();
    ASSERT(c);
    queue *q = open_queue(redis_port);
    ASSERT(q);
    char id[QUEUE_ID_MAX + 1], got[QUEUE_ID_MAX + 1];
    ASSERT_EQ(create(q, id), 0);
    int skip = 0, attempts = 0;
    long long moved = 0;
    for (int i = 0; i < 5; i++) {
        ASSERT_EQ(queue_take(q, "w1", 1, got, sizeof got), 0);
        ASSERT_EQ(start_job(q, id, "w1", 2, &skip, &attempts), 0);
        ASSERT_EQ(skip, 0);
        ASSERT_EQ(attempts, 1);
        ASSERT_EQ(queue_requeue_worker(q, "w1", 1, &moved), 0); /* as after SIGKILL */
        ASSERT_EQ(moved, 1);
    }
    queue_job j;
    ASSERT_EQ(queue_get_job(q, id, &j), 0);
    ASSERT_STR_EQ(j.status, "queued");
    ASSERT_EQ(j.attempts, 0);
    queue_job_clear(&j);
    ASSERT_EQ(raw_int(c, "LLEN %s", "queue:dead"), 0);
    queue_close(q);
    redisFree(c);
}

TEST(expired_image)
{
    redisContext *c = redis();
    ASSERT(c);
    queue *q = open_queue(redis_port);
    ASSERT(q);
    char id[QUEUE_ID_MAX + 1], got[QUEUE_ID_MAX + 1], k[64];
    ASSERT_EQ(create(q, id), 0);
    snprintf(k, sizeof k, "image:%s", id);
    ASSERT_EQ(raw_int(c, "DEL %s", k), 1);
    ASSERT_EQ(queue_take(q, "w1", 1, got, sizeof got), 0);
    queue_start st;
    ASSERT_EQ(queue_job_start(q, id, "w1", 3, &st), 0);
    ASSERT_EQ(st.skip, 0);
    ASSERT_EQ(st.image_state, QUEUE_IMAGE_GONE);
    ASSERT(st.image == NULL);
    queue_start_clear(&st);
    ASSERT_EQ(queue_job_expired(q, id, "w1"), 0);
    const char *ids[1] = {id};
    int which = -1;
    ASSERT_EQ(queue_wait_any(q, "wake:test", ids, 1, 5, &which), 0); /* final: at once */
    ASSERT_EQ(which, 0);
    queue_job j;
    ASSERT_EQ(queue_get_job(q, id, &j), 0);
    ASSERT_STR_EQ(j.status, "expired");
    ASSERT(j.error != NULL);
    queue_job_clear(&j);
    ASSERT_EQ(raw_int(c, "LLEN %s", "processing:w1"), 0);
    queue_stats s;
    ASSERT_EQ(queue_get_stats(q, &s), 0);
    ASSERT_EQ(s.expired, 1);
    queue_close(q);
    redisFree(c);
}

TEST(seed_style_job_without_status_record)
{
    redisContext *c = redis();
    ASSERT(c);
    queue *q = open_queue(redis_port);
    ASSERT(q);
    redisReply *r = redisCommand(c, "SET result:abc123 %s", "Persian cat");
    freeReplyObject(r);
    queue_job j;
    ASSERT_EQ(queue_get_job(q, "abc123", &j), 0);
    ASSERT_STR_EQ(j.status, "done");
    ASSERT_STR_EQ(j.label, "Persian cat");
    queue_job_clear(&j);
    queue_close(q);
    redisFree(c);
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

TEST(wait_times_out_then_wakes_on_completion)
{
    redisContext *c = redis();
    ASSERT(c);
    queue *q = open_queue(redis_port);
    ASSERT(q);
    char id[QUEUE_ID_MAX + 1], other[QUEUE_ID_MAX + 1], got[QUEUE_ID_MAX + 1];
    ASSERT_EQ(create(q, other), 0);
    ASSERT_EQ(create(q, id), 0);
    const char *ids[2] = {other, id};
    int which = 7;
    double t0 = mono_s();
    ASSERT_EQ(queue_wait_any(q, "wake:test", ids, 2, 0.3, &which), 0);
    double waited = mono_s() - t0;
    ASSERT(waited >= 0.25 && waited < 2);
    ASSERT_EQ(which, -1);
    pid_t pid = fork();
    if (pid == 0) { /* a worker finishes the first job queued: `other` */
        queue *cq = open_queue(redis_port);
        usleep(200000);
        queue_result res = {.label = "lynx", .inference_ms = 3};
        int rc =
            cq && !queue_take(cq, "w9", 1, got, sizeof got) && !queue_job_done(cq, got, "w9", &res);
        queue_close(cq);
        _exit(rc ? 0 : 1);
    }
    t0 = mono_s();
    ASSERT_EQ(queue_wait_any(q, "wake:test", ids, 2, 10, &which), 0);
    waited = mono_s() - t0;
    int st = 0;
    waitpid(pid, &st, 0);
    ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    ASSERT_EQ(which, 0);
    ASSERT(waited < 5);
    queue_job j;
    ASSERT_EQ(queue_get_job(q, other, &j), 0);
    ASSERT_STR_EQ(j.status, "done");
    ASSERT_STR_EQ(j.label, "lynx");
    queue_job_clear(&j);
    /* The marker stays for every other waiter on the same job. */
    ASSERT_EQ(queue_wait_any(q, "wake:test", ids, 2, 10, &which), 0);
    ASSERT_EQ(which, 0);
    ASSERT(raw_int(c, "TTL done:%s", other) > 0);
    queue_close(q);
    redisFree(c);
}

TEST(wait_wakes_on_its_wake_key_and_consumes_it)
{
    redisContext *c = redis();
    ASSERT(c);
    queue *q = open_queue(redis_port), *io = open_queue(redis_port);
    ASSERT(q && io);
    char id[QUEUE_ID_MAX + 1];
    ASSERT_EQ(create(q, id), 0);
    const char *ids[1] = {id};
    int which = -1;
    ASSERT_EQ(queue_wake(io, "wake:a"), 0);
    ASSERT_EQ(queue_wait_any(q, "wake:b", ids, 1, 0.2, &which), 0); /* not its key */
    ASSERT_EQ(which, -1);
    ASSERT_EQ(queue_wait_any(q, "wake:a", ids, 1, 5, &which), 0);
    ASSERT_EQ(which, 1);
    ASSERT_EQ(raw_int(c, "EXISTS %s", "wake:a"), 0);
    ASSERT_EQ(queue_wait_any(q, "wake:a", ids, 0, 0.2, &which), 0); /* no jobs: wake key only */
    ASSERT_EQ(which, -1);
    queue_close(io);
    queue_close(q);
    redisFree(c);
}

TEST(reap_requeues_only_workers_without_heartbeat)
{
    redisContext *c = redis();
    ASSERT(c);
    queue *q = open_queue(redis_port);
    ASSERT(q);
    char a[QUEUE_ID_MAX + 1], b[QUEUE_ID_MAX + 1], got[QUEUE_ID_MAX + 1];
    ASSERT_EQ(create(q, a), 0);
    ASSERT_EQ(create(q, b), 0);
    ASSERT_EQ(queue_heartbeat(q, "host1-1-x", NULL, 30), 0);
    ASSERT_EQ(queue_heartbeat(q, "host2-2-y", NULL, 30), 0);
    int skip, attempts;
    ASSERT_EQ(queue_take(q, "host1-1-x", 1, got, sizeof got), 0);
    ASSERT_EQ(start_job(q, got, "host1-1-x", 3, &skip, &attempts), 0);
    ASSERT_EQ(queue_take(q, "host2-2-y", 1, got, sizeof got), 0);
    ASSERT_EQ(raw_int(c, "LLEN %s", "queue:jobs"), 0);
    long long moved = -1;
    ASSERT_EQ(queue_reap_dead_workers(q, &moved), 0);
    ASSERT_EQ(moved, 0);
    ASSERT_EQ(raw_int(c, "DEL %s", "worker:host1-1-x"), 1); /* its heartbeat ran out */
    ASSERT_EQ(queue_reap_dead_workers(q, &moved), 0);
    ASSERT_EQ(moved, 1);
    ASSERT_EQ(raw_int(c, "LLEN %s", "queue:jobs"), 1);
    ASSERT_EQ(raw_int(c, "LLEN %s", "processing:host1-1-x"), 0);
    ASSERT_EQ(raw_int(c, "LLEN %s", "processing:host2-2-y"), 1);
    ASSERT_EQ(raw_int(c, "SISMEMBER workers %s", "host1-1-x"), 0);
    char *back = raw_str(c, "LINDEX %s 0", "queue:jobs");
    queue_job j;
    ASSERT_EQ(queue_get_job(q, back, &j), 0);
    ASSERT_STR_EQ(j.status, "queued");
    queue_job_clear(&j);
    free(back);
    ASSERT_EQ(queue_worker_gone(q, "host2-2-y"), 0);
    ASSERT_EQ(raw_int(c, "EXISTS %s", "worker:host2-2-y"), 0);
    queue_close(q);
    redisFree(c);
}

TEST(redis_down_fails_fast_and_recovers)
{
    redisContext *c = redis();
    ASSERT(c);
    redisFree(c);
    /* A port where nothing listens: calls fail with IO, quickly. */
    queue *q = open_queue(redis_port == 65000 ? 65001 : 65000);
    ASSERT(q);
    double t0 = mono_s();
    char id[QUEUE_ID_MAX + 1];
    for (int i = 0; i < 50; i++)
        ASSERT_EQ(create(q, id), QUEUE_ERR_IO);
    ASSERT(mono_s() - t0 < 1.0);
    ASSERT(strstr(queue_errstr(q), "redis") != NULL);
    queue_close(q);
    /* A connection that broke (server side kill) comes back on the next call. */
    q = open_queue(redis_port);
    ASSERT(q);
    ASSERT_EQ(queue_ping(q), 0);
    c = raw_connect(redis_port);
    ASSERT(c);
    redisReply *r = redisCommand(c, "CLIENT KILL TYPE normal SKIPME yes");
    freeReplyObject(r);
    r = redisCommand(c, "SCRIPT FLUSH");
    freeReplyObject(r);
    int rc = create(q, id);
    if (rc) rc = create(q, id);
    ASSERT_EQ(rc, 0);
    queue_close(q);
    redisFree(c);
}

static queue *open_queue_with(int port, const queue_options *extra)
{
    queue_options o = *extra;
    o.host = "127.0.0.1";
    o.port = port;
    o.timeout_ms = 1000;
    o.queue_name = "queue:jobs";
    o.job_ttl = 3600;
    queue *q = NULL;
    return queue_open(&o, &q) == 0 ? q : NULL;
}

TEST(a_job_whose_workers_keep_dying_is_dead_lettered_with_the_reason)
{
    redisContext *c = redis();
    ASSERT(c);
    queue *q = open_queue_with(redis_port, &(queue_options){.max_deaths = 3});
    ASSERT(q);
    char id[QUEUE_ID_MAX + 1], got[QUEUE_ID_MAX + 1];
    ASSERT_EQ(create(q, id), 0);
    int skip = 0, attempts = 0;
    long long moved = 0, given_up = 0;
    for (int i = 1; i <= 3; i++) {
        ASSERT_EQ(queue_take(q, "w1", 1, got, sizeof got), 0);
        ASSERT_EQ(start_job(q, id, "w1", 3, &skip, &attempts), 0);
        ASSERT_EQ(skip, 0);
        ASSERT_EQ(attempts, 1); /* SIGKILL: the attempt is given back... */
        ASSERT_EQ(queue_requeue_dead(q, "w1", 1, "worker killed by signal 9 (SIGKILL)", &moved,
                                     &given_up),
                  0);
        ASSERT_EQ(moved, i < 3 ? 1 : 0); /* ...but the death counts */
        ASSERT_EQ(given_up, i < 3 ? 0 : 1);
    }
    queue_job j;
    ASSERT_EQ(queue_get_job(q, id, &j), 0);
    ASSERT_STR_EQ(j.status, "failed");
    ASSERT(j.error && strstr(j.error, "died 3 times") && strstr(j.error, "SIGKILL"));
    ASSERT(j.finished_ms > 0);
    queue_job_clear(&j);
    char k[64];
    snprintf(k, sizeof k, "job:%s", id);
    char *deaths = raw_str(c, "HGET %s deaths", k);
    ASSERT_STR_EQ(deaths, "3");
    free(deaths);
    char *dead = raw_str(c, "LINDEX %s 0", "queue:dead");
    ASSERT_STR_EQ(dead, id);
    free(dead);
    ASSERT_EQ(raw_int(c, "LLEN %s", "queue:jobs"), 0);
    snprintf(k, sizeof k, "done:%s", id);
    ASSERT_EQ(raw_int(c, "LLEN %s", k), 1); /* waiters are woken */
    /* A job a worker held but had not started is not the job's fault. */
    char other[QUEUE_ID_MAX + 1];
    ASSERT_EQ(create(q, other), 0);
    ASSERT_EQ(queue_take(q, "w2", 1, got, sizeof got), 0);
    for (int i = 0; i < 4; i++) {
        ASSERT_EQ(queue_requeue_dead(q, "w2", 1, "worker killed", &moved, &given_up), 0);
        ASSERT_EQ(moved, 1);
        ASSERT_EQ(queue_take(q, "w2", 1, got, sizeof got), 0);
    }
    ASSERT_EQ(queue_requeue_dead(q, "w2", 1, "", &moved, &given_up), QUEUE_ERR_INVALID);
    queue_close(q);
    redisFree(c);
}

TEST(reaped_jobs_count_a_death)
{
    redisContext *c = redis();
    ASSERT(c);
    queue *q = open_queue_with(redis_port, &(queue_options){.max_deaths = 2});
    ASSERT(q);
    char id[QUEUE_ID_MAX + 1], got[QUEUE_ID_MAX + 1];
    ASSERT_EQ(create(q, id), 0);
    int skip = 0, attempts = 0;
    long long moved = 0;
    for (int i = 0; i < 2; i++) {
        ASSERT_EQ(queue_heartbeat(q, "h-1-a", NULL, 30), 0);
        ASSERT_EQ(queue_take(q, "h-1-a", 1, got, sizeof got), 0);
        ASSERT_EQ(start_job(q, id, "h-1-a", 3, &skip, &attempts), 0);
        ASSERT_EQ(raw_int(c, "DEL %s", "worker:h-1-a"), 1);
        ASSERT_EQ(queue_reap_dead_workers(q, &moved), 0);
    }
    queue_job j;
    ASSERT_EQ(queue_get_job(q, id, &j), 0);
    ASSERT_STR_EQ(j.status, "failed");
    ASSERT(j.error && strstr(j.error, "stopped sending heartbeats"));
    queue_job_clear(&j);
    queue_close(q);
    redisFree(c);
}

TEST(entries_that_are_no_job_id_are_dead_lettered)
{
    redisContext *c = redis();
    ASSERT(c);
    queue *q = open_queue(redis_port);
    ASSERT(q);
    char big[5001], got[QUEUE_ID_MAX + 1];
    memset(big, 'x', 5000);
    big[5000] = '\0';
    const char *bad[] = {big, "UPPER-case", "ab", "abcd\nefg"};
    for (int i = 0; i < 4; i++) {
        redisReply *r = redisCommand(c, "LPUSH queue:jobs %s", bad[i]);
        freeReplyObject(r);
    }
    redisReply *r = redisCommand(c, "LPUSH queue:jobs %b", "abcd\0zz", (size_t)7);
    freeReplyObject(r);
    for (int i = 0; i < 5; i++) {
        ASSERT_EQ(queue_take(q, "w1", 1, got, sizeof got), QUEUE_ERR_INVALID);
        ASSERT(strstr(queue_errstr(q), "not a job id"));
    }
    ASSERT_EQ(queue_take(q, "w1", 0.05, got, sizeof got), QUEUE_ERR_EMPTY);
    ASSERT_EQ(raw_int(c, "LLEN %s", "processing:w1"), 0);
    ASSERT_EQ(raw_int(c, "LLEN %s", "queue:dead"), 5);
    char *e = raw_str(c, "HGET job:%s error", "UPPER-case");
    ASSERT(e && strstr(e, "not a job id (10 bytes"));
    free(e);
    char *kept = raw_str(c, "LINDEX %s 4", "queue:dead"); /* the first one pushed */
    ASSERT(kept && strlen(kept) == QUEUE_BAD_ENTRY_KEEP);
    free(kept);
    queue_stats s;
    ASSERT_EQ(queue_get_stats(q, &s), 0);
    ASSERT_EQ(s.invalid, 5);
    queue_close(q);
    redisFree(c);
}

TEST(a_job_whose_keys_redis_refuses_is_dead_lettered)
{
    redisContext *c = redis();
    ASSERT(c);
    queue *q = open_queue(redis_port);
    ASSERT(q);
    char got[QUEUE_ID_MAX + 1];
    int skip, attempts;
    redisReply *r = redisCommand(c, "SET job:abcd1 text");
    freeReplyObject(r);
    r = redisCommand(c, "LPUSH queue:jobs abcd1");
    freeReplyObject(r);
    ASSERT_EQ(queue_take(q, "w1", 1, got, sizeof got), 0);
    ASSERT_EQ(start_job(q, got, "w1", 3, &skip, &attempts), QUEUE_ERR_REPLY);
    ASSERT_EQ(queue_job_refuse(q, "w1", got, "redis refused"), 0);
    ASSERT_EQ(raw_int(c, "LLEN %s", "processing:w1"), 0);
    char *dead = raw_str(c, "LINDEX %s 0", "queue:dead");
    ASSERT_STR_EQ(dead, "abcd1");
    free(dead);
    char *kept = raw_str(c, "GET %s", "job:abcd1"); /* another producer's key is left alone */
    ASSERT_STR_EQ(kept, "text");
    free(kept);
    /* That entry at the old end of queue:dead, and in a dead worker's
     * list, does not break the scripts that read job records. */
    char id[QUEUE_ID_MAX + 1];
    int final = 0;
    long long moved = 0, given_up = 0;
    ASSERT_EQ(create(q, id), 0);
    ASSERT_EQ(queue_take(q, "w1", 1, got, sizeof got), 0);
    ASSERT_EQ(start_job(q, id, "w1", 1, &skip, &attempts), 0);
    ASSERT_EQ(queue_job_fail(q, id, "w1", "bad image", 1, &final), 0);
    ASSERT_EQ(final, 1);
    ASSERT_EQ(raw_int(c, "LLEN %s", "queue:dead"), 1); /* abcd1 had no finished time: gone */
    r = redisCommand(c, "LPUSH processing:w9 abcd1");
    freeReplyObject(r);
    ASSERT_EQ(queue_requeue_dead(q, "w9", 1, "worker killed", &moved, &given_up), 0);
    ASSERT_EQ(moved, 1);
    queue_close(q);
    redisFree(c);
}

TEST(dead_letter_list_is_bounded_in_length_and_age)
{
    redisContext *c = redis();
    ASSERT(c);
    queue *q = open_queue_with(redis_port, &(queue_options){.dead_max = 3, .dead_age_s = 100});
    ASSERT(q);
    char got[QUEUE_ID_MAX + 1];
    int final = 0, skip, attempts;
    /* Two entries whose jobs finished long ago, one whose record is gone. */
    redisReply *r = redisCommand(c, "RPUSH queue:dead old1 old2 gone1");
    freeReplyObject(r);
    r = redisCommand(c, "HSET job:old1 status failed finished 1000");
    freeReplyObject(r);
    r = redisCommand(c, "HSET job:old2 status failed finished 1000");
    freeReplyObject(r);
    char id[QUEUE_ID_MAX + 1];
    ASSERT_EQ(create(q, id), 0);
    ASSERT_EQ(queue_take(q, "w1", 1, got, sizeof got), 0);
    ASSERT_EQ(start_job(q, id, "w1", 1, &skip, &attempts), 0);
    ASSERT_EQ(queue_job_fail(q, id, "w1", "bad image", 1, &final), 0);
    ASSERT_EQ(final, 1);
    ASSERT_EQ(raw_int(c, "LLEN %s", "queue:dead"), 1); /* the stale three went */
    long long ttl = raw_int(c, "TTL %s", "queue:dead");
    ASSERT(ttl > 90 && ttl <= 100);
    for (int i = 0; i < 5; i++) {
        ASSERT_EQ(create(q, id), 0);
        ASSERT_EQ(queue_take(q, "w1", 1, got, sizeof got), 0);
        ASSERT_EQ(start_job(q, id, "w1", 1, &skip, &attempts), 0);
        ASSERT_EQ(queue_job_fail(q, id, "w1", "bad image", 1, &final), 0);
    }
    ASSERT_EQ(raw_int(c, "LLEN %s", "queue:dead"), 3);
    char *newest = raw_str(c, "LINDEX %s 0", "queue:dead");
    ASSERT_STR_EQ(newest, id);
    free(newest);
    queue_close(q);
    redisFree(c);
}

TEST(image_goes_once_the_job_is_done)
{
    redisContext *c = redis();
    ASSERT(c);
    queue_result res = {.label = "tabby", .top5 = "[]", .model = "m", .inference_ms = 3};
    int skip, attempts;
    char id[QUEUE_ID_MAX + 1], got[QUEUE_ID_MAX + 1], k[64];
    queue *q = open_queue(redis_port);
    ASSERT(q);
    ASSERT_EQ(create(q, id), 0);
    ASSERT_EQ(queue_take(q, "w1", 1, got, sizeof got), 0);
    ASSERT_EQ(start_job(q, id, "w1", 3, &skip, &attempts), 0);
    snprintf(k, sizeof k, "image:%s", id);
    ASSERT_EQ(raw_int(c, "EXISTS %s", k), 1);
    ASSERT_EQ(queue_job_done(q, id, "w1", &res), 0);
    ASSERT_EQ(raw_int(c, "EXISTS %s", k), 0);
    queue_close(q);
    q = open_queue_with(redis_port, &(queue_options){.image_keep_s = 60});
    ASSERT(q);
    ASSERT_EQ(create(q, id), 0);
    ASSERT_EQ(queue_take(q, "w1", 1, got, sizeof got), 0);
    ASSERT_EQ(start_job(q, id, "w1", 3, &skip, &attempts), 0);
    ASSERT_EQ(queue_job_done(q, id, "w1", &res), 0);
    snprintf(k, sizeof k, "image:%s", id);
    long long ttl = raw_int(c, "TTL %s", k);
    ASSERT(ttl > 50 && ttl <= 60);
    queue_close(q);
    redisFree(c);
}

TEST(redis_out_of_memory_is_its_own_error)
{
    redisContext *c = redis();
    ASSERT(c);
    queue *q = open_queue(redis_port);
    ASSERT(q);
    redisReply *r = redisCommand(c, "CONFIG SET maxmemory 1");
    freeReplyObject(r);
    char id[QUEUE_ID_MAX + 1];
    int rc = create(q, id);
    r = redisCommand(c, "CONFIG SET maxmemory 0");
    freeReplyObject(r);
    ASSERT_EQ(rc, QUEUE_ERR_OOM);
    ASSERT(strstr(queue_errstr(q), "OOM"));
    ASSERT_STR_EQ(queue_strerror(rc), "redis out of memory");
    ASSERT_EQ(raw_int(c, "LLEN %s", "queue:jobs"), 0);
    ASSERT_EQ(create(q, id), 0);
    /* A job in hand still completes (and frees its image) at maxmemory. */
    char got[QUEUE_ID_MAX + 1], k[64];
    int skip, attempts;
    ASSERT_EQ(queue_take(q, "w1", 1, got, sizeof got), 0);
    ASSERT_EQ(start_job(q, got, "w1", 3, &skip, &attempts), 0);
    r = redisCommand(c, "CONFIG SET maxmemory 1");
    freeReplyObject(r);
    queue_result res = {.label = "tabby", .top5 = "[]", .model = "m", .inference_ms = 3};
    rc = queue_job_done(q, got, "w1", &res);
    r = redisCommand(c, "CONFIG SET maxmemory 0");
    freeReplyObject(r);
    ASSERT_EQ(rc, 0);
    snprintf(k, sizeof k, "result:%s", got);
    ASSERT_EQ(raw_int(c, "EXISTS %s", k), 1);
    snprintf(k, sizeof k, "image:%s", got);
    ASSERT_EQ(raw_int(c, "EXISTS %s", k), 0);
    queue_close(q);
    redisFree(c);
}

TEST(connects_counts_new_connections)
{
    redisContext *c = redis();
    ASSERT(c);
    queue *q = open_queue(redis_port);
    ASSERT(q);
    ASSERT_EQ(queue_connects(q), 1);
    ASSERT_EQ(queue_ping(q), 0);
    ASSERT_EQ(queue_connects(q), 1);
    redisReply *r = redisCommand(c, "CLIENT KILL TYPE normal SKIPME yes");
    freeReplyObject(r);
    if (queue_ping(q)) ASSERT_EQ(queue_ping(q), 0);
    ASSERT_EQ(queue_connects(q), 2);
    queue_close(q);
    redisFree(c);
}

TEST(job_reply_parser)
{
    queue_job j;
    char err[128];
    static const char done[] = "*3\r\n*6\r\n$6\r\nstatus\r\n$4\r\ndone\r\n$8\r\nattempts\r\n"
                               "$1\r\n2\r\n$5\r\nmodel\r\n$1\r\nm\r\n$5\r\ntabby\r\n:0\r\n";
    ASSERT_EQ(queue_parse_job_reply(done, sizeof done - 1, &j, err, sizeof err), 0);
    ASSERT_STR_EQ(j.status, "done");
    ASSERT_STR_EQ(j.label, "tabby");
    ASSERT_STR_EQ(j.model, "m");
    ASSERT_EQ(j.attempts, 2);
    queue_job_clear(&j);
    static const char seed[] = "*3\r\n*0\r\n$-1\r\n:1\r\n";
    ASSERT_EQ(queue_parse_job_reply(seed, sizeof seed - 1, &j, err, sizeof err), 0);
    ASSERT_STR_EQ(j.status, "queued");
    queue_job_clear(&j);
    static const char none[] = "*3\r\n*0\r\n$-1\r\n:0\r\n";
    ASSERT_EQ(queue_parse_job_reply(none, sizeof none - 1, &j, err, sizeof err),
              QUEUE_ERR_NOTFOUND);
    ASSERT_EQ(queue_parse_job_reply(none, 6, &j, err, sizeof err), QUEUE_ERR_REPLY);
    ASSERT(strstr(err, "incomplete"));
    ASSERT_EQ(queue_parse_job_reply("*2\r\n:1\r\n:2\r\n", 12, &j, err, sizeof err),
              QUEUE_ERR_REPLY);
    ASSERT_EQ(queue_parse_job_reply("?bad\r\n", 6, &j, err, sizeof err), QUEUE_ERR_REPLY);
    /* Found by fuzz_job: a header claiming billions of elements is refused
     * before anything is allocated for them. */
    ASSERT_EQ(queue_parse_job_reply("*2000000000\r\n", 14, &j, err, sizeof err), QUEUE_ERR_REPLY);
    /* A status outside the known set is not taken over. */
    static const char odd[] = "*3\r\n*2\r\n$6\r\nstatus\r\n$3\r\nbad\r\n$-1\r\n:1\r\n";
    ASSERT_EQ(queue_parse_job_reply(odd, sizeof odd - 1, &j, err, sizeof err), 0);
    ASSERT_STR_EQ(j.status, "queued");
    queue_job_clear(&j);
}

/* take + start + done with a label, as a worker does. */
static int finish(queue *q, const char *id, const char *label)
{
    char got[QUEUE_ID_MAX + 1];
    int skip = 0, attempts = 0;
    queue_result res = {.label = label, .top5 = "[]", .model = "slow.onnx", .inference_ms = 3};
    if (queue_take(q, "w1", 1, got, sizeof got) || strcmp(got, id)) return -1;
    if (start_job(q, id, "w1", 3, &skip, &attempts) || skip) return -1;
    return queue_job_done(q, id, "w1", &res);
}

TEST(done_records_agreement_with_the_fast_answer)
{
    redisContext *c = redis();
    ASSERT(c);
    queue *q = open_queue(redis_port);
    ASSERT(q);
    char same[QUEUE_ID_MAX + 1], other[QUEUE_ID_MAX + 1];
    queue_job j;
    ASSERT_EQ(create(q, same), 0); /* fast answer: tabby */
    ASSERT_EQ(finish(q, same, "tabby"), 0);
    ASSERT_EQ(create(q, other), 0);
    ASSERT_EQ(finish(q, other, "tiger cat"), 0);
    /* A duplicate completion changes nothing and counts nothing. */
    queue_result dup = {.label = "tabby", .inference_ms = 1};
    ASSERT_EQ(queue_job_done(q, other, "w1", &dup), 0);
    /* A seed-style job has no fast answer: no agreement either way. */
    redisReply *r = redisCommand(c, "SET image:seed01 aGVsbG8=");
    freeReplyObject(r);
    r = redisCommand(c, "LPUSH queue:jobs seed01");
    freeReplyObject(r);
    ASSERT_EQ(finish(q, "seed01", "tabby"), 0);

    ASSERT_EQ(queue_get_job(q, same, &j), 0);
    ASSERT_EQ(j.agreement, QUEUE_AGREE_YES);
    ASSERT_STR_EQ(j.sync_label, "tabby");
    queue_job_clear(&j);
    ASSERT_EQ(queue_get_job(q, other, &j), 0);
    ASSERT_EQ(j.agreement, QUEUE_AGREE_NO);
    ASSERT_STR_EQ(j.label, "tiger cat");
    queue_job_clear(&j);
    ASSERT_EQ(queue_get_job(q, "seed01", &j), 0);
    ASSERT_EQ(j.agreement, QUEUE_AGREE_UNKNOWN);
    queue_job_clear(&j);
    char k[64];
    snprintf(k, sizeof k, "job:%s", same);
    char *v = raw_str(c, "HGET %s agrees_with_fast", k);
    ASSERT_STR_EQ(v, "1");
    free(v);
    queue_stats s;
    ASSERT_EQ(queue_get_stats(q, &s), 0);
    ASSERT_EQ(s.processed, 3);
    ASSERT_EQ(s.agree, 1);
    ASSERT_EQ(s.upgrade, 1);
    queue_close(q);
    redisFree(c);
}

static int create_hooked(queue *q, char *id, const char *url)
{
    queue_new_job j = {.image_b64 = "aGVsbG8=",
                       .image_b64_len = 8,
                       .sync_label = "tabby",
                       .callback_url = url,
                       .id_len = 6};
    return queue_create_job(q, &j, id, QUEUE_ID_MAX + 1);
}

static long long due_score(redisContext *c, const char *id)
{
    redisReply *r = redisCommand(c, "ZSCORE webhooks:due %s", id);
    long long v = r && r->type == REDIS_REPLY_STRING ? atoll(r->str) : -1;
    freeReplyObject(r);
    return v;
}

TEST(every_final_state_of_a_job_with_a_callback_schedules_its_webhook)
{
    redisContext *c = redis();
    ASSERT(c);
    queue *q = open_queue(redis_port);
    ASSERT(q);
    char done[QUEUE_ID_MAX + 1], plain[QUEUE_ID_MAX + 1], failed[QUEUE_ID_MAX + 1],
        expired[QUEUE_ID_MAX + 1], got[QUEUE_ID_MAX + 1], k[64];
    queue_job j;
    ASSERT_EQ(create_hooked(q, done, "http://127.0.0.1:9/hook"), 0);
    snprintf(k, sizeof k, "job:%s", done);
    char *url = raw_str(c, "HGET %s callback_url", k);
    ASSERT_STR_EQ(url, "http://127.0.0.1:9/hook");
    free(url);
    ASSERT_EQ(due_score(c, done), -1); /* not before it is final */
    ASSERT_EQ(finish(q, done, "tabby"), 0);
    ASSERT_EQ(due_score(c, done), 0);
    ASSERT_EQ(raw_int(c, "LLEN %s", "webhooks:wake"), 1);
    ASSERT_EQ(queue_get_job(q, done, &j), 0);
    ASSERT_STR_EQ(j.webhook, "pending");
    ASSERT_STR_EQ(j.callback_url, "http://127.0.0.1:9/hook");
    queue_job_clear(&j);

    ASSERT_EQ(create(q, plain), 0);
    ASSERT_EQ(finish(q, plain, "tabby"), 0);
    ASSERT_EQ(due_score(c, plain), -1);

    int skip, attempts, final = 0;
    ASSERT_EQ(create_hooked(q, failed, "http://127.0.0.1:9/f"), 0);
    ASSERT_EQ(queue_take(q, "w1", 1, got, sizeof got), 0);
    ASSERT_EQ(start_job(q, failed, "w1", 1, &skip, &attempts), 0);
    ASSERT_EQ(queue_job_fail(q, failed, "w1", "bad image", 1, &final), 0);
    ASSERT_EQ(final, 1);
    ASSERT_EQ(due_score(c, failed), 0);

    ASSERT_EQ(create_hooked(q, expired, "http://127.0.0.1:9/e"), 0);
    snprintf(k, sizeof k, "image:%s", expired);
    ASSERT_EQ(raw_int(c, "DEL %s", k), 1);
    ASSERT_EQ(queue_take(q, "w1", 1, got, sizeof got), 0);
    ASSERT_EQ(queue_job_expired(q, expired, "w1"), 0);
    ASSERT_EQ(due_score(c, expired), 0);
    ASSERT_EQ(raw_int(c, "ZCARD %s", "webhooks:due"), 3);

    /* Claims: one at a time, each leased; then nothing due until the lease ends. */
    char ids[4][QUEUE_ID_MAX + 1];
    int n = 0, seen = 0;
    int64_t next = 0;
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(queue_webhook_claim(q, 1000, 5000, 1, ids, &n, &next), 0);
        ASSERT_EQ(n, 1);
        ASSERT_EQ(due_score(c, ids[0]), 6000);
        seen |= !strcmp(ids[0], done) << 0 | !strcmp(ids[0], failed) << 1 |
                !strcmp(ids[0], expired) << 2;
    }
    ASSERT_EQ(seen, 7);
    ASSERT_EQ(queue_webhook_claim(q, 1000, 5000, 1, ids, &n, &next), 0);
    ASSERT_EQ(n, 0);
    ASSERT_EQ(next, 6000);
    ASSERT_EQ(queue_webhook_claim(q, 6000, 5000, 4, ids, &n, &next), 0);
    ASSERT_EQ(n, 3); /* the leases are over: claimable again */
    ASSERT_EQ(queue_webhook_wait(q, 0.05), 0);

    /* Outcomes. */
    ASSERT_EQ(queue_webhook_record(q, done, QUEUE_HOOK_RETRY, 1, "HTTP 500", 20000), 0);
    ASSERT_EQ(due_score(c, done), 20000);
    ASSERT_EQ(queue_get_job(q, done, &j), 0);
    ASSERT_STR_EQ(j.webhook, "pending");
    ASSERT_EQ(j.webhook_attempts, 1);
    ASSERT_STR_EQ(j.webhook_error, "HTTP 500");
    queue_job_clear(&j);
    ASSERT_EQ(queue_webhook_record(q, done, QUEUE_HOOK_DELIVERED, 2, NULL, 0), 0);
    ASSERT_EQ(due_score(c, done), -1);
    ASSERT_EQ(queue_get_job(q, done, &j), 0);
    ASSERT_STR_EQ(j.webhook, "delivered");
    ASSERT_EQ(j.webhook_attempts, 2);
    ASSERT(j.webhook_error == NULL);
    queue_job_clear(&j);
    ASSERT_EQ(queue_webhook_record(q, failed, QUEUE_HOOK_FAILED, 6, "HTTP 503", 0), 0);
    ASSERT_EQ(queue_get_job(q, failed, &j), 0);
    ASSERT_STR_EQ(j.webhook, "failed");
    queue_job_clear(&j);
    /* A job gone meanwhile is forgotten, not recreated. */
    snprintf(k, sizeof k, "job:%s", expired);
    ASSERT_EQ(raw_int(c, "DEL %s", k), 1);
    ASSERT_EQ(queue_webhook_record(q, expired, QUEUE_HOOK_DROPPED, 0, NULL, 0), 0);
    ASSERT_EQ(raw_int(c, "EXISTS %s", k), 0);
    ASSERT_EQ(raw_int(c, "ZCARD %s", "webhooks:due"), 0);
    /* A second completion does not schedule a second webhook. */
    queue_result again = {.label = "tabby", .inference_ms = 1};
    ASSERT_EQ(queue_job_done(q, done, "w1", &again), 0);
    ASSERT_EQ(due_score(c, done), -1);
    queue_stats s;
    ASSERT_EQ(queue_get_stats(q, &s), 0);
    ASSERT_EQ(s.webhook_retried, 1);
    ASSERT_EQ(s.webhook_delivered, 1);
    ASSERT_EQ(s.webhook_failed, 1);
    queue_close(q);
    redisFree(c);
}

/* The dead-letter and metrics keys follow QUEUE_NAME (queue.h); the
 * default's are the seed's queue:dead and metrics:workers (checked above). */
TEST(dead_letter_and_metrics_keys_follow_the_queue_name)
{
    redisContext *c = redis();
    ASSERT(c);
    queue_options o = {.host = "127.0.0.1",
                       .port = redis_port,
                       .timeout_ms = 1000,
                       .queue_name = "tenant1:jobs",
                       .job_ttl = 3600};
    queue *q = NULL;
    ASSERT_EQ(queue_open(&o, &q), 0);
    char id[QUEUE_ID_MAX + 1], got[QUEUE_ID_MAX + 1];
    int skip, attempts, final = 0;
    ASSERT_EQ(create(q, id), 0);
    ASSERT_EQ(raw_int(c, "LLEN %s", "tenant1:jobs"), 1);
    ASSERT_EQ(queue_take(q, "w1", 1, got, sizeof got), 0);
    ASSERT_EQ(start_job(q, id, "w1", 1, &skip, &attempts), 0);
    ASSERT_EQ(queue_job_fail(q, id, "w1", "not an image", 1, &final), 0);
    ASSERT_EQ(final, 1);
    char *dead = raw_str(c, "LINDEX %s 0", "tenant1:dead");
    ASSERT_STR_EQ(dead, id);
    free(dead);
    char *failed = raw_str(c, "HGET %s failed", "tenant1:metrics");
    ASSERT_STR_EQ(failed, "1");
    free(failed);
    ASSERT_EQ(raw_int(c, "EXISTS %s", "queue:dead"), 0);
    ASSERT_EQ(raw_int(c, "EXISTS %s", "metrics:workers"), 0);
    queue_stats st;
    ASSERT_EQ(queue_get_stats(q, &st), 0);
    ASSERT_EQ(st.dead_length, 1);
    ASSERT_EQ(st.failed, 1);
    queue_close(q);
    o.queue_name = "plain";
    ASSERT_EQ(queue_open(&o, &q), 0);
    ASSERT_EQ(create(q, id), 0);
    ASSERT_EQ(queue_take(q, "w1", 1, got, sizeof got), 0);
    ASSERT_EQ(start_job(q, id, "w1", 1, &skip, &attempts), 0);
    ASSERT_EQ(queue_job_fail(q, id, "w1", "not an image", 1, &final), 0);
    ASSERT_EQ(raw_int(c, "LLEN %s", "plain:dead"), 1);
    failed = raw_str(c, "HGET %s failed", "plain:metrics");
    ASSERT_STR_EQ(failed, "1");
    free(failed);
    queue_close(q);
    redisFree(c);
}

/* An image:{id} of another type (another producer's): the job still starts,
 * and the caller learns why it cannot have the image (the worker fails the
 * job with that reason). */
TEST(start_says_why_an_image_cannot_be_read)
{
    redisContext *c = redis();
    ASSERT(c);
    queue *q = open_queue(redis_port);
    ASSERT(q);
    char id[QUEUE_ID_MAX + 1], got[QUEUE_ID_MAX + 1], k[64];
    ASSERT_EQ(create(q, id), 0);
    snprintf(k, sizeof k, "image:%s", id);
    ASSERT_EQ(raw_int(c, "DEL %s", k), 1);
    ASSERT_EQ(raw_int(c, "HSET %s f v", k), 1);
    ASSERT_EQ(queue_take(q, "w1", 1, got, sizeof got), 0);
    queue_start st;
    ASSERT_EQ(queue_job_start(q, id, "w1", 3, &st), 0);
    ASSERT_EQ(st.skip, 0);
    ASSERT_EQ(st.attempts, 1);
    ASSERT_EQ(st.image_state, QUEUE_IMAGE_BAD);
    ASSERT(st.image == NULL);
    ASSERT(strstr(queue_errstr(q), "WRONGTYPE") != NULL);
    queue_start_clear(&st);
    queue_job j;
    ASSERT_EQ(queue_get_job(q, id, &j), 0);
    ASSERT_STR_EQ(j.status, "running");
    queue_job_clear(&j);
    queue_close(q);
    redisFree(c);
}

/* The start script and the image's GET travel in one write. After SCRIPT
 * FLUSH the script is loaded again and run once (one attempt), the image
 * still arrives, and the connection stays in step for the next command. */
TEST(start_after_script_flush_runs_once_and_brings_the_image)
{
    redisContext *c = redis();
    ASSERT(c);
    queue *q = open_queue(redis_port);
    ASSERT(q);
    char id[QUEUE_ID_MAX + 1], got[QUEUE_ID_MAX + 1];
    ASSERT_EQ(create(q, id), 0);
    ASSERT_EQ(queue_take(q, "w1", 1, got, sizeof got), 0);
    queue_start st;
    ASSERT_EQ(queue_job_start(q, got, "w1", 3, &st), 0);
    queue_start_clear(&st);
    redisReply *r = redisCommand(c, "SCRIPT FLUSH");
    freeReplyObject(r);
    long long moved = 0;
    ASSERT_EQ(queue_requeue_worker(q, "w1", 1, &moved), 0);
    ASSERT_EQ(moved, 1);
    ASSERT_EQ(queue_take(q, "w1", 1, got, sizeof got), 0);
    ASSERT_EQ(queue_job_start(q, got, "w1", 3, &st), 0);
    ASSERT_EQ(st.skip, 0);
    ASSERT_EQ(st.attempts, 1); /* the requeue gave the first attempt back */
    ASSERT_EQ(st.image_state, QUEUE_IMAGE_OK);
    ASSERT_STR_EQ(st.image, "aGVsbG8=");
    queue_start_clear(&st);
    queue_result res = {.label = "tabby", .top5 = "[]", .model = "m", .inference_ms = 1};
    ASSERT_EQ(queue_job_done(q, got, "w1", &res), 0);
    queue_job j;
    ASSERT_EQ(queue_get_job(q, id, &j), 0);
    ASSERT_STR_EQ(j.status, "done");
    queue_job_clear(&j);
    queue_close(q);
    redisFree(c);
}

/* A batch's images come in one write of GETs for the jobs to run only: each
 * job gets its own image, an expired one says so, and a job that already
 * has a result gets no GET (the replies stay in step with the jobs). */
TEST(take_more_gives_each_job_its_own_image)
{
    redisContext *c = redis();
    ASSERT(c);
    queue *q = open_queue(redis_port);
    ASSERT(q);
    char made[4][QUEUE_ID_MAX + 1], ids[4][QUEUE_ID_MAX + 1];
    queue_start st[4];
    int n = -1;
    for (int i = 0; i < 4; i++) {
        ASSERT_EQ(create(q, made[i]), 0);
        redisReply *r = redisCommand(c, "SET image:%s img%d KEEPTTL", made[i], i);
        freeReplyObject(r);
    }
    ASSERT_EQ(raw_int(c, "DEL image:%s", made[1]), 1);
    redisReply *r = redisCommand(c, "SET result:%s tabby", made[2]);
    freeReplyObject(r);
    ASSERT_EQ(queue_take(q, "w1", 1, ids[0], sizeof ids[0]), 0);
    ASSERT_EQ(queue_take_more(q, "w1", 3, 4, ids, st, &n), 0);
    ASSERT_EQ(n, 4);
    ASSERT_EQ(st[0].image_state, QUEUE_IMAGE_OK);
    ASSERT_STR_EQ(st[0].image, "img0");
    ASSERT_EQ(st[1].skip, 0);
    ASSERT_EQ(st[1].image_state, QUEUE_IMAGE_GONE);
    ASSERT(st[1].image == NULL);
    ASSERT_EQ(st[2].skip, 1);
    ASSERT(st[2].image == NULL);
    ASSERT_EQ(st[3].image_state, QUEUE_IMAGE_OK);
    ASSERT_STR_EQ(st[3].image, "img3");
    for (int i = 0; i < n; i++)
        queue_start_clear(&st[i]);
    ASSERT_EQ(queue_ping(q), 0); /* no reply left unread */
    queue_close(q);
    redisFree(c);
}

/* A batch: the first job by queue_take, up to max - 1 more in one step,
 * every one in the processing list and started, in queue order; an empty
 * queue gives a batch of one. */
TEST(take_more_takes_and_starts_a_backlog)
{
    redisContext *c = redis();
    ASSERT(c);
    queue *q = open_queue(redis_port);
    ASSERT(q);
    char made[6][QUEUE_ID_MAX + 1], ids[4][QUEUE_ID_MAX + 1];
    queue_start st[4];
    int n = -1;
    for (int i = 0; i < 6; i++)
        ASSERT_EQ(create(q, made[i]), 0);
    ASSERT_EQ(queue_take(q, "w1", 1, ids[0], sizeof ids[0]), 0);
    ASSERT_STR_EQ(ids[0], made[0]);
    ASSERT_EQ(queue_take_more(q, "w1", 3, 4, ids, st, &n), 0);
    ASSERT_EQ(n, 4);
    ASSERT_EQ(raw_int(c, "LLEN %s", "processing:w1"), 4);
    ASSERT_EQ(raw_int(c, "LLEN %s", "queue:jobs"), 2);
    for (int i = 0; i < 4; i++) {
        ASSERT_STR_EQ(ids[i], made[i]);
        ASSERT_EQ(st[i].skip, 0);
        ASSERT_EQ(st[i].attempts, 1);
        ASSERT_EQ(st[i].image_state, QUEUE_IMAGE_OK);
        ASSERT_STR_EQ(st[i].image, "aGVsbG8=");
        queue_start_clear(&st[i]);
        queue_job j;
        ASSERT_EQ(queue_get_job(q, ids[i], &j), 0);
        ASSERT_STR_EQ(j.status, "running");
        ASSERT_STR_EQ(j.worker, "w1");
        queue_job_clear(&j);
    }
    /* Each ends on its own. */
    queue_result res = {.label = "tabby", .top5 = "[]", .model = "slow.onnx", .inference_ms = 3};
    for (int i = 0; i < 4; i++)
        ASSERT_EQ(queue_job_done(q, ids[i], "w1", &res), 0);
    ASSERT_EQ(raw_int(c, "LLEN %s", "processing:w1"), 0);
    /* Two left: a batch of two, then of one on an empty queue. */
    ASSERT_EQ(queue_take(q, "w1", 1, ids[0], sizeof ids[0]), 0);
    ASSERT_EQ(queue_take_more(q, "w1", 3, 4, ids, st, &n), 0);
    ASSERT_EQ(n, 2);
    ASSERT_STR_EQ(ids[1], made[5]);
    for (int i = 0; i < n; i++)
        queue_start_clear(&st[i]);
    ASSERT_EQ(queue_requeue_worker(q, "w1", 1, &(long long){0}), 0);
    ASSERT_EQ(raw_int(c, "LLEN %s", "queue:jobs"), 2);
    ASSERT_EQ(queue_take(q, "w1", 1, ids[0], sizeof ids[0]), 0);
    ASSERT_EQ(queue_take_more(q, "w1", 3, 1, ids, st, &n), 0); /* max 1: itself */
    ASSERT_EQ(n, 1);
    ASSERT_EQ(st[0].attempts, 1); /* the requeue refunded the attempt */
    queue_start_clear(&st[0]);
    ASSERT_EQ(raw_int(c, "LLEN %s", "queue:jobs"), 1);
    queue_stats s;
    ASSERT_EQ(queue_get_stats(q, &s), 0);
    ASSERT_EQ(s.processed, 4);
    queue_close(q);
    redisFree(c);
}

/* A job whose worker died while running it runs alone, a batch stops before
 * one, and before an entry that is no job id (queue_take dead-letters it). */
TEST(take_more_keeps_jobs_that_killed_a_worker_and_bad_entries_out)
{
    redisContext *c = redis();
    ASSERT(c);
    queue *q = open_queue(redis_port);
    ASSERT(q);
    char made[4][QUEUE_ID_MAX + 1], ids[4][QUEUE_ID_MAX + 1];
    queue_start st[4];
    int n = -1;
    for (int i = 0; i < 4; i++)
        ASSERT_EQ(create(q, made[i]), 0);
    redisReply *r = redisCommand(c, "HSET job:%s deaths 1", made[0]);
    freeReplyObject(r);
    r = redisCommand(c, "HSET job:%s deaths 1", made[2]);
    freeReplyObject(r);
    ASSERT_EQ(queue_take(q, "w1", 1, ids[0], sizeof ids[0]), 0);
    ASSERT_STR_EQ(ids[0], made[0]);
    ASSERT_EQ(queue_take_more(q, "w1", 3, 4, ids, st, &n), 0);
    ASSERT_EQ(n, 0); /* alone: started the single way, nothing else moved */
    ASSERT_EQ(raw_int(c, "LLEN %s", "processing:w1"), 1);
    ASSERT_EQ(raw_int(c, "LLEN %s", "queue:jobs"), 3);
    char *status = raw_str(c, "HGET job:%s status", made[0]);
    ASSERT_STR_EQ(status, "queued");
    free(status);
    ASSERT_EQ(queue_requeue_worker(q, "w1", 1, &(long long){0}), 0);
    r = redisCommand(c, "RPOP queue:jobs"); /* made[0] goes */
    freeReplyObject(r);
    ASSERT_EQ(queue_take(q, "w1", 1, ids[0], sizeof ids[0]), 0);
    ASSERT_STR_EQ(ids[0], made[1]);
    ASSERT_EQ(queue_take_more(q, "w1", 3, 4, ids, st, &n), 0);
    ASSERT_EQ(n, 1); /* made[2] has a death: the batch stops before it */
    queue_start_clear(&st[0]);
    ASSERT_EQ(raw_int(c, "LLEN %s", "queue:jobs"), 2);
    /* An entry that is no job id behind a good job. */
    r = redisCommand(c, "DEL queue:jobs");
    freeReplyObject(r);
    r = redisCommand(c, "LPUSH queue:jobs %s NOT-AN-ID", made[3]);
    freeReplyObject(r);
    ASSERT_EQ(queue_take(q, "w2", 1, ids[0], sizeof ids[0]), 0);
    ASSERT_EQ(queue_take_more(q, "w2", 3, 4, ids, st, &n), 0);
    ASSERT_EQ(n, 1);
    queue_start_clear(&st[0]);
    ASSERT_EQ(queue_take(q, "w2", 1, ids[0], sizeof ids[0]), QUEUE_ERR_INVALID);
    ASSERT_EQ(raw_int(c, "LLEN %s", "queue:dead"), 1);
    queue_close(q);
    redisFree(c);
}

TEST_MAIN()
