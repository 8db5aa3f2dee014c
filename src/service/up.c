/*
 * up: `tandem up`, the whole system on one machine with one command.
 *
 * 1. Models: when SYNC_MODEL_PATH or ASYNC_MODEL_PATH is missing, the
 *    `tandem models` logic fills MODEL_DIR (set $MODEL_SET, default zoo;
 *    $MODEL_MIRROR, else a download). When that fails (offline, no mirror)
 *    and no path or set was chosen, the real int8 pair shipped with tandem
 *    runs instead (models_shipped), said in one log line. Random-weight test
 *    models only with TANDEM_ALLOW_TEST_MODELS=1; test models left in
 *    MODEL_DIR by an earlier run are passed over for real ones without it.
 * 2. Redis: unless REDIS_HOST is set in the environment, a private
 *    redis-server (Debian's, found on PATH) on REDIS_PORT if that is set,
 *    else on the first free port from 6379, in a temporary directory with no
 *    persistence; it is removed on exit.
 * 3. `tandem proxy` and `tandem worker`, exec'd from /proc/self/exe with
 *    REDIS_HOST/REDIS_PORT pointing at that Redis.
 *
 * Every child gets PDEATHSIG, so none outlives a killed `up`. Ctrl-C or
 * SIGTERM stops proxy and workers (they finish what they hold), then Redis;
 * if any child dies on its own, the rest are stopped and `up` exits 1 with
 * a message naming it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "commands.h"
#include "clock.h"
#include "config.h"
#include "log.h"
#include "models.h"

#define TICK_MS 100
#define REDIS_READY_MS 10000
#define PROXY_READY_MS 60000
#define STOP_GRACE_MS 25000
#define PORT_SCAN 200

enum { C_REDIS, C_PROXY, C_WORKER, C_COUNT };
static const char *const child_names[C_COUNT] = {"redis-server", "proxy", "worker"};

static volatile sig_atomic_t stop_requested;

static void on_stop(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int port_free(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return 0;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

static int port_open(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return 0;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

static pid_t spawn(const char *const argv[], const char *path)
{
    pid_t pid = fork();
    if (pid != 0) return pid;
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    /* exec takes char *const[] for historical reasons; it does not write. */
    execvp(path, (char *const *)argv);
    fprintf(stderr, "tandem up: cannot run %s: %s\n", path, strerror(errno));
    _exit(127);
}

static int redis_ready(int port)
{
    struct timeval tv = {0, 300000};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    int ok = 0;
    if (c && !c->err) {
        redisReply *r = redisCommand(c, "PING");
        ok = r && r->type == REDIS_REPLY_STATUS;
        freeReplyObject(r);
    }
    if (c) redisFree(c);
    return ok;
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void describe(int st, char *buf, size_t cap)
{
    if (WIFEXITED(st))
        snprintf(buf, cap, "exited with status %d", WEXITSTATUS(st));
    else if (WIFSIGNALED(st))
        snprintf(buf, cap, "was killed by signal %d", WTERMSIG(st));
    else
        snprintf(buf, cap, "stopped (wait status %d)", st);
}

/* Reaps children; returns the index of one that exited, -1 if none. */
static int reap_one(pid_t *pids, int *st_out)
{
    int st;
    pid_t pid = waitpid(-1, &st, WNOHANG);
    if (pid <= 0) return -1;
    for (int i = 0; i < C_COUNT; i++)
        if (pids[i] == pid) {
            pids[i] = 0;
            *st_out = st;
            return i;
        }
    return -1;
}

static void stop_children(pid_t *pids, int first, int last)
{
    for (int i = first; i <= last; i++)
        if (pids[i] > 0) kill(pids[i], SIGTERM);
    int64_t deadline = mono_ms_int() + STOP_GRACE_MS;
    int killed = 0;
    for (;;) {
        int alive = 0;
        for (int i = first; i <= last; i++)
            alive += pids[i] > 0;
        if (!alive) return;
        if (!killed && mono_ms_int() > deadline) {
            for (int i = first; i <= last; i++)
                if (pids[i] > 0) {
                    LOG(WARN, "%s (pid %d) did not stop: killing it", child_names[i], (int)pids[i]);
                    kill(pids[i], SIGKILL);
                }
            killed = 1;
        }
        int st;
        if (reap_one(pids, &st) < 0) sleep_ms(TICK_MS);
    }
}

/* Step 1 of the list at the top. Returns 0 when both model paths in cfg
 * (and in the environment the children inherit) name usable files. */
static int choose_models(struct config *cfg)
{
    const char *set = getenv("MODEL_SET"), *allow_s = getenv("TANDEM_ALLOW_TEST_MODELS");
    int allow = allow_s && !strcmp(allow_s, "1");
    int chosen = (set && set[0]) || getenv("SYNC_MODEL_PATH") || getenv("ASYNC_MODEL_PATH");
    int missing = access(cfg->sync_model_path, R_OK) || access(cfg->async_model_path, R_OK);
    int test = !allow && !chosen && models_test_marked(cfg->model_dir);
    if (!missing && !test) return 0;
    if (missing)
        LOG(INFO, "models missing (%s, %s): running `tandem models` for %s", cfg->sync_model_path,
            cfg->async_model_path, cfg->model_dir);
    else
        LOG(WARN,
            "%s holds random-weight test models: looking for real ones instead "
            "(TANDEM_ALLOW_TEST_MODELS=1 keeps them)",
            cfg->model_dir);
    int mode = allow ? MODELS_EXPORT_YES : chosen ? MODELS_EXPORT_ASK : MODELS_EXPORT_NEVER;
    if (!models_ensure(cfg->model_dir, set && set[0] ? set : "zoo", mode)) {
        if (access(cfg->sync_model_path, R_OK) || access(cfg->async_model_path, R_OK)) {
            LOG(ERROR,
                "SYNC_MODEL_PATH=%s or ASYNC_MODEL_PATH=%s still missing (outside "
                "MODEL_DIR=%s?)",
                cfg->sync_model_path, cfg->async_model_path, cfg->model_dir);
            return -1;
        }
        return 0;
    }
    if (mode != MODELS_EXPORT_NEVER ||
        models_shipped(cfg->sync_model_path, cfg->async_model_path, sizeof cfg->sync_model_path))
        return -1;
    setenv("SYNC_MODEL_PATH", cfg->sync_model_path, 1);
    setenv("ASYNC_MODEL_PATH", cfg->async_model_path, 1);
    LOG(INFO,
        "no Model Zoo download and no MODEL_MIRROR: running the real int8 pair shipped with "
        "tandem, ImageNet labels: fast MobileNetV1 0.5/128 %s, accurate MobileNetV2 %s",
        cfg->sync_model_path, cfg->async_model_path);
    return 0;
}

int cli_up(int argc, char **argv)
{
    struct config cfg;
    int rc;
    if (config_cli(argc, argv, CONFIG_ROLE_UP,
                   "start redis (unless REDIS_HOST is set), the proxy and the workers", &cfg,
                   &rc) == CONFIG_CLI_EXIT) {
        for (int i = 1; i < argc && rc == 0; i++)
            if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
                printf(
                    "\nMissing models are put in place as `tandem models` does (see its --help):\n"
                    "  MODEL_SET        zoo (default) or st-int8\n"
                    "  MODEL_MIRROR     a folder holding the upstream files\n"
                    "When neither a download nor MODEL_MIRROR gives them, and no model path\n"
                    "or MODEL_SET is set, the real int8 pair shipped with tandem runs\n"
                    "(data/models/st-int8: MobileNetV1 0.5/128 fast, MobileNetV2 accurate).\n"
                    "  TANDEM_ALLOW_TEST_MODELS=1  export random-weight test models instead\n"
                    "                   when no real zoo files can be had\n"
                    "REDIS_HOST set in the environment: use that Redis, start none.\n");
        return rc;
    }
    log_init("up", cfg.log_level);
    pid_t pids[C_COUNT] = {0};
    char tmpdir[] = "/tmp/tandem-redis-XXXXXX";
    int have_tmp = 0, status = 0;
    char port_s[16], self[4096];

    if (choose_models(&cfg)) return 1;
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) {
        LOG(ERROR, "cannot find my own executable: %s", strerror(errno));
        return 1;
    }
    self[n] = '\0';

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (!getenv("REDIS_HOST")) {
        int port = cfg.redis_port;
        if (!getenv("REDIS_PORT"))
            while (!port_free(port) && port < cfg.redis_port + PORT_SCAN)
                port++;
        if (!port_free(port)) {
            LOG(ERROR, "port %d is taken: set REDIS_PORT, or REDIS_HOST to use a running Redis",
                port);
            return 1;
        }
        if (!mkdtemp(tmpdir)) {
            LOG(ERROR, "cannot create a directory for redis: %s", strerror(errno));
            return 1;
        }
        have_tmp = 1;
        snprintf(port_s, sizeof port_s, "%d", port);
        /* A bound on memory with noeviction: past it Redis refuses new jobs
         * (the proxy answers 503 with the fast label) instead of growing
         * until the kernel kills it, and never silently drops a job's keys. */
        char maxmem[24];
        snprintf(maxmem, sizeof maxmem, "%lld", cfg.redis_maxmemory);
        const char *rargv[] = {"redis-server", "--port",      port_s, "--bind",
                               "127.0.0.1",    "--save",      "",     "--appendonly",
                               "no",           "--dir",       tmpdir, "--loglevel",
                               "warning",      "--maxmemory", maxmem, "--maxmemory-policy",
                               "noeviction",   NULL};
        pids[C_REDIS] = spawn(rargv, "redis-server");
        int64_t deadline = mono_ms_int() + REDIS_READY_MS;
        int st;
        while (!redis_ready(port)) {
            if (reap_one(pids, &st) == C_REDIS || mono_ms_int() > deadline || stop_requested) {
                LOG(ERROR,
                    "redis-server did not start on port %d (is the redis-server package "
                    "installed?)",
                    port);
                status = 1;
                goto out;
            }
            sleep_ms(TICK_MS);
        }
        setenv("REDIS_HOST", "127.0.0.1", 1);
        setenv("REDIS_PORT", port_s, 1);
        LOG(INFO, "redis-server (pid %d) on 127.0.0.1:%d, data in %s, maxmemory %lld (noeviction)",
            (int)pids[C_REDIS], port, tmpdir, cfg.redis_maxmemory);
    } else {
        LOG(INFO, "using the redis at %s:%d (REDIS_HOST is set)", cfg.redis_host, cfg.redis_port);
    }

    const char *pargv[] = {"tandem", "proxy", NULL}, *wargv[] = {"tandem", "worker", NULL};
    pids[C_PROXY] = spawn(pargv, self);
    pids[C_WORKER] = spawn(wargv, self);

    int announced = 0, st;
    int64_t ready_deadline = mono_ms_int() + PROXY_READY_MS;
    while (!stop_requested) {
        int dead = reap_one(pids, &st);
        if (dead >= 0) {
            char why[64];
            describe(st, why, sizeof why);
            LOG(ERROR, "%s %s: stopping everything", child_names[dead], why);
            status = 1;
            break;
        }
        if (!announced && port_open(cfg.port)) {
            LOG(INFO,
                "tandem is up: http://127.0.0.1:%d (try GET /health); %d workers; "
                "Ctrl-C stops it",
                cfg.port, cfg.num_workers);
            announced = 1;
        }
        if (!announced && mono_ms_int() > ready_deadline) {
            LOG(WARN, "the proxy is not answering on port %d yet", cfg.port);
            ready_deadline = INT64_MAX;
        }
        sleep_ms(TICK_MS);
    }
    if (stop_requested) LOG(INFO, "stopping");
out:
    stop_children(pids, C_PROXY, C_WORKER);
    stop_children(pids, C_REDIS, C_REDIS);
    if (have_tmp) nftw(tmpdir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
    LOG(INFO, "stopped");
    return status;
}
