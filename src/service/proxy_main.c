/*
 * proxy_main: `tandem proxy` starting and stopping (proxy.h has the threads).
 *
 * Start: configuration, descriptor limit, webhooks, push, the model (loaded
 * once, then shared by every inference thread: one session each), a Redis
 * connection per thread, the threads, and last the HTTP server, so that no
 * request arrives before something can answer it. Stop (SIGTERM, SIGINT):
 * no new connections, the requests in flight finish within DRAIN_TIMEOUT
 * (held waits are answered early), then the threads answer whatever they were
 * handed and go; no request is left suspended.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "commands.h"
#include "clock.h"
#include "log.h"
#include "proxy.h"

#define STREAM_MAX_S 600 /* an event stream ends after this; the EventSource reconnects */
#define FDS_SPARE 64     /* descriptors besides connections: Redis, model files, logs, epoll */

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    stop_requested = 1;
    log_raw(sig == SIGINT ? "proxy: SIGINT, stopping" : "proxy: SIGTERM, stopping");
}

static int load_model(struct proxy *p)
{
    char err[512];
    tdm_classifier_options opt;
    tdm_classifier_options_init(&opt);
    opt.engine.threads = p->cfg.engine_threads;
    opt.engine.precision = (tdm_precision)p->cfg.precision;
    opt.labels_path = p->cfg.labels_path;
    config_image_limits(&p->cfg, &opt.limits);
    int rc = tdm_classifier_open(p->cfg.sync_model_path, &opt, &p->clf, err, sizeof err);
    if (rc) {
        LOG(ERROR, "cannot load SYNC_MODEL_PATH %s: %s", p->cfg.sync_model_path, err);
        return rc;
    }
    tdm_classifier_get_info(p->clf, &p->info);
    p->model_name = p->info.model_name;
    return 0;
}

static int thread_init(struct proxy *p, struct proxy_thread *w, int with_model)
{
    char err[512];
    w->p = p;
    int rc = queue_open(&p->qopt, &w->q);
    if (rc) {
        LOG(ERROR, "queue_open: %s", queue_strerror(rc));
        return rc;
    }
    if (!with_model) return 0;
    rc = tdm_classifier_share(p->clf, &w->clf, err, sizeof err);
    if (rc) {
        LOG(ERROR, "cannot plan a session for %s: %s", p->model_name, err);
        return rc;
    }
    rc = stager_start(&w->stager);
    if (rc) LOG(ERROR, "cannot start the stager thread of an inference thread");
    return rc;
}

/* After the thread itself has stopped. */
static void thread_free(struct proxy_thread *w)
{
    stager_stop(w->stager);
    tdm_classifier_close(w->clf);
    queue_close(w->q);
}

static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
}

static int start_threads(struct proxy *p)
{
    for (int i = 0; i < p->ninfer; i++) {
        if (pthread_create(&p->infer[i].thread, NULL, proxy_infer_main, &p->infer[i]))
            return PROXY_ERR_THREAD;
        p->infer[i].started = 1;
    }
    for (int i = 0; i < REDIS_THREADS; i++) {
        if (pthread_create(&p->redis[i].thread, NULL, proxy_redis_main, &p->redis[i]))
            return PROXY_ERR_THREAD;
        p->redis[i].started = 1;
    }
    return proxy_waiter_start(&p->waiter);
}

/* Stop accepting, let in-flight requests finish (held waits are answered
 * early) for at most DRAIN_TIMEOUT, which must fit in the grace period of
 * Docker (10 s) and Kubernetes (30 s); then stop the threads, which answer
 * every request they were handed, and close what is left (slow uploads). */
static void shutdown_proxy(struct proxy *p)
{
    if (p->http) {
        http_quiesce(p->http);
        atomic_store(&p->stopping, 1);
        double t0 = mono_ms();
        while (http_in_flight(p->http) > 0 && mono_ms_since(t0) < p->cfg.drain_timeout_s * 1000.0)
            nanosleep(&(struct timespec){0, 10000000L}, NULL);
        if (http_in_flight(p->http) > 0)
            LOG(WARN, "%u requests still in flight after DRAIN_TIMEOUT=%d s; closing them",
                http_in_flight(p->http), p->cfg.drain_timeout_s);
    }
    atomic_store(&p->stopping, 2);
    taskq_stop(&p->infer_q);
    taskq_stop(&p->redis_q);
    for (int i = 0; i < p->ninfer; i++)
        if (p->infer[i].started) pthread_join(p->infer[i].thread, NULL);
    for (int i = 0; i < REDIS_THREADS; i++)
        if (p->redis[i].started) pthread_join(p->redis[i].thread, NULL);
    proxy_waiter_stop(&p->waiter);
    push_free(p->push);
    p->push = NULL;
    /* Every request handed to a thread is answered: none stays suspended. */
    http_stop(p->http);
}

/* Each connection is a descriptor: the soft limit (often 1024) goes up to
 * the hard one; if that is still short, fewer connections are taken. */
static void raise_fd_limit(struct config *cfg)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl)) {
        LOG(WARN, "getrlimit(RLIMIT_NOFILE): %s", strerror(errno));
        return;
    }
    rlim_t was = rl.rlim_cur;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl)) {
            LOG(WARN, "cannot raise the descriptor limit to %llu: %s",
                (unsigned long long)rl.rlim_max, strerror(errno));
            rl.rlim_cur = was;
        }
    }
    LOG(INFO, "file descriptors: limit %llu (was %llu, hard limit %llu)",
        (unsigned long long)rl.rlim_cur, (unsigned long long)was, (unsigned long long)rl.rlim_max);
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t)cfg->max_connections + FDS_SPARE) {
        int n = rl.rlim_cur > FDS_SPARE + 16 ? (int)(rl.rlim_cur - FDS_SPARE) : 16;
        LOG(WARN, "descriptor limit %llu is short of MAX_CONNECTIONS=%d: taking %d connections",
            (unsigned long long)rl.rlim_cur, cfg->max_connections, n);
        cfg->max_connections = n;
        if (cfg->max_waiters >= n) cfg->max_waiters = n / 2;
    }
}

int cli_proxy(int argc, char **argv)
{
    struct proxy *p = calloc(1, sizeof *p);
    if (!p) return 1;
    int status;
    int cli = config_cli(argc, argv, CONFIG_ROLE_PROXY,
                         "Serve the HTTP API: the fast model answers at once, the job goes "
                         "to Redis for the workers' slow model.",
                         &p->cfg, &status);
    if (cli == CONFIG_CLI_EXIT) {
        free(p);
        return status;
    }
    status = 1;
    log_init("proxy", p->cfg.log_level);
    install_signals();
    /* ?wait=, Prefer: wait (each up to MAX_WAITERS) and event streams together. */
    if (2LL * p->cfg.max_waiters + p->cfg.sse_max_streams >= p->cfg.max_connections) {
        LOG(ERROR,
            "2 x MAX_WAITERS=%d (?wait= and Prefer: wait) + SSE_MAX_STREAMS=%d must be below "
            "MAX_CONNECTIONS=%d: held requests must leave connections for the others",
            p->cfg.max_waiters, p->cfg.sse_max_streams, p->cfg.max_connections);
        free(p);
        return 2;
    }
    raise_fd_limit(&p->cfg);
    taskq_init(&p->infer_q);
    taskq_init(&p->redis_q);
    proxy_waiter_init(&p->waiter, p->cfg.max_waiters, &p->stopping, proxy_job_answer, p);
    if (sodium_init() < 0) {
        LOG(ERROR, "libsodium failed to initialise");
        goto out;
    }
    queue_options_from_config(&p->cfg, &p->qopt);
    char werr[512];
    if (webhook_start(&p->cfg, &p->qopt, &p->hooks, werr, sizeof werr)) {
        LOG(ERROR, "webhooks: %s", werr);
        goto out;
    }
    if (p->cfg.webhook_allow[0])
        LOG(INFO, "webhooks on: destinations %s, %d delivery threads, %d attempts",
            p->cfg.webhook_allow, p->cfg.webhook_threads, p->cfg.webhook_max_attempts);
    push_options po = {.max_streams = p->cfg.sse_max_streams,
                       .max_holds = p->cfg.max_waiters,
                       .heartbeat_s = p->cfg.sse_heartbeat_s,
                       .stream_max_s = STREAM_MAX_S,
                       .wake = proxy_waiter_wake,
                       .wake_ud = &p->waiter};
    if (push_create(&po, &p->push)) goto out;
    p->waiter.push = p->push;
    if (load_model(p)) goto out;
    p->ninfer = p->cfg.sync_threads;
    p->infer = calloc((size_t)p->ninfer, sizeof *p->infer);
    if (!p->infer) goto out;
    for (int i = 0; i < p->ninfer; i++)
        if (thread_init(p, &p->infer[i], 1)) goto out;
    /* Each inference thread holds the model now: the loading handle's session can go. */
    tdm_classifier_close(p->clf);
    p->clf = NULL;
    for (int i = 0; i < REDIS_THREADS; i++)
        if (thread_init(p, &p->redis[i], 0)) goto out;
    if (proxy_waiter_connect(&p->waiter, &p->qopt)) goto out;
    if (queue_ping(p->redis[0].q))
        LOG(WARN,
            "Redis at %s:%d is not answering (%s); jobs will be refused with 503 until "
            "it is",
            p->cfg.redis_host, p->cfg.redis_port, queue_errstr(p->redis[0].q));
    if (start_threads(p)) {
        LOG(ERROR, "cannot start threads: %s", strerror(errno));
        goto out;
    }
    http_options ho = {.port = p->cfg.port,
                       .max_body = (size_t)p->cfg.max_body_bytes,
                       .max_connections = (unsigned)p->cfg.max_connections,
                       .max_per_ip = (unsigned)p->cfg.max_connections_per_ip,
                       .request_timeout_s = (unsigned)p->cfg.request_timeout_s,
                       .handler = proxy_on_request,
                       .ud = p};
    char err[256];
    if (http_start(&ho, &p->http, err, sizeof err)) {
        LOG(ERROR, "%s", err);
        goto out;
    }
    LOG(INFO,
        "listening on port %d: model %s, %d inference threads x %d engine threads, Redis "
        "%s:%d, queue %s",
        p->cfg.port, p->model_name, p->ninfer, p->cfg.engine_threads, p->cfg.redis_host,
        p->cfg.redis_port, p->cfg.queue_name);
    LOG(INFO,
        "connections: %d at most, %d per address, %d held ?wait= requests; a request must "
        "arrive within %d s",
        p->cfg.max_connections, p->cfg.max_connections_per_ip, p->cfg.max_waiters,
        p->cfg.request_timeout_s);
    while (!stop_requested)
        nanosleep(&(struct timespec){0, 100000000L}, NULL);
    LOG(INFO, "stopping: no new connections, finishing %u requests in flight",
        http_in_flight(p->http));
    status = 0;
out:
    shutdown_proxy(p);
    webhook_stop(p->hooks);
    if (p->infer)
        for (int i = 0; i < p->ninfer; i++)
            thread_free(&p->infer[i]);
    free(p->infer);
    for (int i = 0; i < REDIS_THREADS; i++)
        thread_free(&p->redis[i]);
    proxy_waiter_destroy(&p->waiter);
    tdm_classifier_close(p->clf);
    taskq_destroy(&p->infer_q);
    taskq_destroy(&p->redis_q);
    if (status == 0) LOG(INFO, "stopped");
    free(p);
    return status;
}
