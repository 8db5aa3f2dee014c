/*
 * supervisor: `tandem worker`, a parent that pre-forks NUM_WORKERS worker
 * processes and keeps them running.
 *
 * Why the model is loaded in each child, after the fork, and never in the
 * parent: oneDNN computes on an OpenMP thread pool, and a pool created
 * before fork() does not exist in the child (only the forking thread is
 * copied) while libgomp still believes it does; the child then deadlocks or
 * runs single-threaded on the first parallel region. So the parent stays
 * free of any engine, OpenMP or Redis state a child could inherit: it only
 * forks, reaps, requeues and restarts. The price is one model load per child
 * (tens of ms for our models) and no copy-on-write sharing of weights, which
 * matters little next to the safety and the isolation: a child that crashes
 * takes nothing else down.
 *
 * The parent's own Redis connection (for requeueing) is opened before the
 * forks, so each child closes its inherited copy without using it and opens
 * its own. Signal handlers only set flags. The parent reaps with
 * waitpid(-1, WNOHANG) every tick (SIGCHLD only cuts the sleep short), logs
 * why a child died, moves the jobs left in that child's processing list back
 * to the head of the queue at once (each counts a death of its worker: a job
 * at MAX_WORKER_DEATHS is dead-lettered instead), and restarts the slot.
 *
 * Restart policy: a child tells the parent through a pipe when its start-up
 * (model load, Redis set-up) is over. A child that was ready and was killed
 * from outside (an operator, the OOM killer, a test) is restarted at once:
 * waiting would only lose throughput. Back-off (0.5 s doubling to 30 s) is
 * for children that die during start-up, or crash the same way (same exit
 * status or fault signal) twice in a row; it is forgotten once a child has
 * been ready for HEALTHY_AFTER_MS. Every few seconds it
 * also requeues the lists of workers anywhere whose heartbeat expired (a host
 * that vanished). On SIGTERM/SIGINT each child finishes or requeues the job
 * in hand and exits; the parent waits (bounded), kills stragglers, requeues
 * what they held and exits 0.
 *
 * Worker ids are hostname-pid-random, unique across hosts and restarts.
 *
 * The supervisor sets its own nice value to WORKER_NICE before the first
 * fork, so every child and every thread a child starts inherits it: the
 * workers yield the CPUs to the proxy's sync answers (and to Redis) when they
 * share them, and take whatever is left. With autogroup scheduling (Linux's
 * default when the cpu cgroup is the root) a nice value only weighs against
 * processes of the same session: when the supervisor leads its own session
 * (setsid, a container's or a service's main process) the session holds only
 * us, so its autogroup gets the same nice value; started from a shell or by
 * `tandem up` we share the session with others and leave it alone. In
 * separate cgroups (containers, services) the cgroups' CPU weights decide.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "commands.h"
#include "clock.h"
#include "config.h"
#include "log.h"
#include "queue.h"
#include "worker.h"

#define TICK_MS 100
#define BACKOFF_MIN_MS 500
#define BACKOFF_MAX_MS 30000
#define HEALTHY_AFTER_MS 30000 /* a child ready this long resets its back-off */
#define STOP_GRACE_MS 20000
#define HOST_PART_MAX 40

static volatile sig_atomic_t stop_requested;

static void on_stop(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void on_child(int sig)
{
    (void)sig;
}

struct slot {
    pid_t pid; /* 0: not running */
    char id[QUEUE_WORKER_ID_MAX + 1];
    int64_t started_ms;
    int64_t restart_at_ms;
    int backoff_ms;
    int ready_fd; /* read end of the child's ready pipe, -1 when closed */
    int ready;    /* the child finished its start-up */
    int64_t ready_ms;
    int have_last; /* last_status holds the previous death's wait status */
    int last_status;
    int requeue_pending; /* the dead child's list could not be requeued yet */
    int refund;          /* the dead child's death was not its job's fault */
    char dead_id[QUEUE_WORKER_ID_MAX + 1];
    char dead_why[160];
};

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL); /* a signal cuts it short: fine, the loop re-checks */
}

/* hostname with anything outside the worker-id alphabet replaced. */
static void host_part(char *out, size_t cap)
{
    char host[256] = "host";
    if (gethostname(host, sizeof host - 1)) snprintf(host, sizeof host, "host");
    host[sizeof host - 1] = '\0';
    size_t n = 0;
    for (; n < cap - 1 && n < HOST_PART_MAX && host[n]; n++) {
        char ch = host[n];
        int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                 ch == '.' || ch == '_';
        out[n] = ok ? ch : '-';
    }
    out[n] = '\0';
}

static void install(int sig, void (*fn)(int))
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = fn;
    sigemptyset(&sa.sa_mask);
    sigaction(sig, &sa, NULL);
}

/* Sets this process's nice value (inherited by the children forked later);
 * returns the value in force. Raising it needs no privilege; lowering it
 * below what we were started with does, and then the higher value stays. */
static int set_nice(int nice)
{
    errno = 0;
    int cur = getpriority(PRIO_PROCESS, 0);
    if (cur == -1 && errno) cur = 0;
    if (cur != nice && setpriority(PRIO_PROCESS, 0, nice)) {
        LOG(WARN, "WORKER_NICE=%d: cannot change nice %d: %s", nice, cur, strerror(errno));
        return cur;
    }
    return nice;
}

/* The autogroup's nice value, when this session is ours (see the top).
 * The kernel refuses a change within 0.1 s of the previous one, system-wide,
 * to unprivileged callers: a few tries. */
static void set_group_nice(int nice)
{
    if (getsid(0) != getpid()) return;
    for (int tries = 0; tries < 5; tries++) {
        FILE *f = fopen("/proc/self/autogroup", "w");
        if (!f) return; /* no autogroup scheduling in this kernel */
        int bad = fprintf(f, "%d", nice) < 0;
        bad |= fclose(f) != 0;
        if (!bad) {
            LOG(INFO, "session's autogroup at nice %d", nice);
            return;
        }
        if (errno != EAGAIN) break;
        sleep_ms(110);
    }
    LOG(WARN, "WORKER_NICE=%d: cannot set the session's autogroup: %s", nice, strerror(errno));
}

static void describe_exit(int st, char *buf, size_t cap)
{
    if (WIFEXITED(st))
        snprintf(buf, cap, "exited with status %d%s", WEXITSTATUS(st),
                 WEXITSTATUS(st) == WORKER_EXIT_MODEL ? " (model could not be loaded)" : "");
    else if (WIFSIGNALED(st))
        snprintf(buf, cap, "killed by signal %d (SIG%s)%s", WTERMSIG(st),
                 sigabbrev_np(WTERMSIG(st)) ? sigabbrev_np(WTERMSIG(st)) : "?",
                 WCOREDUMP(st) ? ", core dumped" : "");
    else
        snprintf(buf, cap, "stopped with wait status %d", st);
}

/* A death the job in hand may have caused: a fault signal or a failure exit.
 * SIGKILL/SIGTERM come from outside (an operator, a test, the OOM killer
 * after MAX_PIXELS already bounds images) and do not count as an attempt. */
static int crashed(int st)
{
    if (WIFEXITED(st)) return WEXITSTATUS(st) != WORKER_EXIT_OK;
    if (!WIFSIGNALED(st)) return 0;
    int sig = WTERMSIG(st);
    return sig == SIGSEGV || sig == SIGBUS || sig == SIGFPE || sig == SIGILL || sig == SIGABRT ||
           sig == SIGSYS;
}

/* In the child: fresh handlers, no parent state, run, leave with _exit. */
static void child_main(const struct config *cfg, queue *parent_q, const char *id, pid_t parent,
                       int ready_fd)
{
    /* The parent's connection is its own: drop our copy unused. */
    queue_close(parent_q);
    install(SIGTERM, on_stop);
    install(SIGINT, on_stop);
    install(SIGCHLD, SIG_DFL);
    /* An orphaned worker stops too (finishing its job) when the supervisor dies. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    /* The supervisor died before PDEATHSIG was armed (it may itself be pid 1
     * in a container, so compare with its pid, not with 1). */
    if (getppid() != parent) _exit(WORKER_EXIT_OK);
    log_init("worker", cfg->log_level);
    _exit(worker_run(cfg, id, ready_fd, &stop_requested));
}

static int spawn(struct slot *s, const struct config *cfg, queue *q, const char *host)
{
    unsigned int rnd = 0;
    pid_t parent = getpid();
    int fds[2];
    if (getrandom(&rnd, sizeof rnd, 0) != sizeof rnd) rnd = (unsigned int)mono_ms_int();
    if (pipe2(fds, O_CLOEXEC | O_NONBLOCK)) {
        LOG(ERROR, "pipe failed: %s", strerror(errno));
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        LOG(ERROR, "fork failed: %s", strerror(errno));
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    /* Both sides build the same id from the child's pid. */
    pid_t child = pid ? pid : getpid();
    snprintf(s->id, sizeof s->id, "%s-%d-%06x", host, (int)child, rnd & 0xffffff);
    if (pid == 0) {
        close(fds[0]);
        child_main(cfg, q, s->id, parent, fds[1]);
    }
    close(fds[1]);
    s->ready_fd = fds[0];
    s->ready = 0;
    s->pid = pid;
    s->started_ms = mono_ms_int();
    LOG(INFO, "started worker %s (pid %d)", s->id, (int)pid);
    return 0;
}

/* Puts back what a dead child held; on a Redis failure it is retried next tick
 * (and the heartbeat expiry is the last resort). */
static void requeue_dead(struct slot *s, queue *q)
{
    long long moved = 0, given_up = 0;
    int rc = queue_requeue_dead(q, s->dead_id, s->refund, s->dead_why, &moved, &given_up);
    if (rc) {
        if (!s->requeue_pending)
            LOG(WARN, "cannot requeue the jobs of %s yet: %s", s->dead_id, queue_errstr(q));
        s->requeue_pending = 1;
        return;
    }
    s->requeue_pending = 0;
    if (moved) LOG(WARN, "requeued %lld job(s) left by %s", moved, s->dead_id);
    if (given_up)
        LOG(WARN, "dead-lettered %lld job(s) of %s: their workers died with them too often",
            given_up, s->dead_id);
    if (queue_worker_gone(q, s->dead_id))
        LOG(WARN, "could not forget %s: %s", s->dead_id, queue_errstr(q));
}

/* Reads the child's "ready" byte if it has come; closes the pipe then or
 * when the child is gone (end of file). */
static void poll_ready(struct slot *s)
{
    if (s->ready_fd < 0) return;
    char b;
    ssize_t got = read(s->ready_fd, &b, 1);
    if (got < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (got == 1) {
        s->ready = 1;
        s->ready_ms = mono_ms_int();
    }
    close(s->ready_fd);
    s->ready_fd = -1;
}

/* When to restart a slot whose child died with wait status st (see the top). */
static void plan_restart(struct slot *s, int st)
{
    int64_t now = mono_ms_int();
    if (s->ready && now - s->ready_ms >= HEALTHY_AFTER_MS) {
        s->backoff_ms = 0;
        s->have_last = 0;
    }
    int repeated = s->have_last && crashed(st) && st == s->last_status;
    s->have_last = 1;
    s->last_status = st;
    if (s->ready && !repeated) {
        s->backoff_ms = 0;
        s->restart_at_ms = now;
        return;
    }
    s->backoff_ms = s->backoff_ms ? s->backoff_ms * 2 : BACKOFF_MIN_MS;
    if (s->backoff_ms > BACKOFF_MAX_MS) s->backoff_ms = BACKOFF_MAX_MS;
    s->restart_at_ms = now + s->backoff_ms;
    if (!stop_requested)
        LOG(WARN, "restarting the slot of %s in %.1f s (%s)", s->id, s->backoff_ms / 1000.0,
            s->ready ? "it failed the same way as before" : "it died during start-up");
}

static struct slot *find_slot(struct slot *slots, int n, pid_t pid)
{
    for (int i = 0; i < n; i++)
        if (slots[i].pid == pid) return &slots[i];
    return NULL;
}

/* Reaps every child that has exited. Returns how many model-load failures were seen. */
static int reap(struct slot *slots, int n, queue *q)
{
    int model_failures = 0, st;
    pid_t pid;
    while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
        struct slot *s = find_slot(slots, n, pid);
        if (!s) continue;
        char why[128];
        describe_exit(st, why, sizeof why);
        int64_t lived = mono_ms_int() - s->started_ms;
        if (stop_requested && WIFEXITED(st) && WEXITSTATUS(st) == 0)
            LOG(INFO, "worker %s (pid %d) stopped", s->id, (int)pid);
        else
            LOG(WARN, "worker %s (pid %d) %s after %.1f s", s->id, (int)pid, why, lived / 1000.0);
        if (WIFEXITED(st) && WEXITSTATUS(st) == WORKER_EXIT_MODEL) model_failures++;
        poll_ready(s);
        if (s->ready_fd >= 0) {
            close(s->ready_fd);
            s->ready_fd = -1;
        }
        s->pid = 0;
        memcpy(s->dead_id, s->id, sizeof s->dead_id);
        snprintf(s->dead_why, sizeof s->dead_why, "worker %s", why);
        s->refund = !crashed(st);
        requeue_dead(s, q);
        plan_restart(s, st);
    }
    return model_failures;
}

static int running(const struct slot *slots, int n)
{
    int k = 0;
    for (int i = 0; i < n; i++)
        k += slots[i].pid > 0;
    return k;
}

static void signal_all(const struct slot *slots, int n, int sig)
{
    for (int i = 0; i < n; i++)
        if (slots[i].pid > 0) kill(slots[i].pid, sig);
}

int cli_worker(int argc, char **argv)
{
    struct config cfg;
    int exit_status;
    if (config_cli(argc, argv, CONFIG_ROLE_WORKER,
                   "supervise NUM_WORKERS processes running the slow model", &cfg,
                   &exit_status) == CONFIG_CLI_EXIT)
        return exit_status;
    log_init("supervisor", cfg.log_level);
    if (access(cfg.async_model_path, R_OK)) {
        LOG(ERROR, "ASYNC_MODEL_PATH=%s: %s (see `tandem models`)", cfg.async_model_path,
            strerror(errno));
        return 1;
    }
    int n = cfg.num_workers, status = 0;
    struct slot *slots = calloc((size_t)n, sizeof *slots);
    queue *q = NULL;
    char host[HOST_PART_MAX + 1];
    queue_options qo;
    queue_options_from_config(&cfg, &qo);
    if (!slots || queue_open(&qo, &q)) {
        LOG(ERROR, "out of memory");
        status = 1;
        goto out;
    }
    host_part(host, sizeof host);
    install(SIGTERM, on_stop);
    install(SIGINT, on_stop);
    install(SIGCHLD, on_child);
    install(SIGPIPE, SIG_IGN);
    int nice = set_nice(cfg.worker_nice);
    set_group_nice(nice);
    LOG(INFO, "supervisor: %d workers, model %s, redis %s:%d, nice %d", n, cfg.async_model_path,
        cfg.redis_host, cfg.redis_port, nice);
    for (int i = 0; i < n; i++)
        slots[i].ready_fd = -1;
    for (int i = 0; i < n; i++)
        spawn(&slots[i], &cfg, q, host);

    int64_t reap_every = cfg.heartbeat_ttl * 1000LL / 2, next_reap = mono_ms_int() + reap_every;
    while (!stop_requested) {
        sleep_ms(TICK_MS);
        if (reap(slots, n, q) && !stop_requested) {
            LOG(ERROR, "a worker cannot load %s: not restarting; stopping", cfg.async_model_path);
            status = 1;
            break;
        }
        int64_t now = mono_ms_int();
        for (int i = 0; i < n && !stop_requested; i++) {
            if (slots[i].pid) poll_ready(&slots[i]);
            if (slots[i].requeue_pending) requeue_dead(&slots[i], q);
            if (!slots[i].pid && now >= slots[i].restart_at_ms) spawn(&slots[i], &cfg, q, host);
        }
        if (now >= next_reap) {
            long long moved = 0;
            if (!queue_reap_dead_workers(q, &moved) && moved)
                LOG(WARN, "requeued %lld job(s) of workers whose heartbeat expired", moved);
            next_reap = now + reap_every;
        }
    }

    LOG(INFO, "stopping %d worker(s)", running(slots, n));
    signal_all(slots, n, SIGTERM);
    int64_t deadline = mono_ms_int() + STOP_GRACE_MS;
    while (running(slots, n) && mono_ms_int() < deadline) {
        sleep_ms(TICK_MS);
        reap(slots, n, q);
    }
    if (running(slots, n)) {
        LOG(WARN, "%d worker(s) did not stop in %d s: killing them", running(slots, n),
            STOP_GRACE_MS / 1000);
        signal_all(slots, n, SIGKILL);
        deadline = mono_ms_int() + STOP_GRACE_MS;
        while (running(slots, n) && mono_ms_int() < deadline) {
            sleep_ms(TICK_MS);
            reap(slots, n, q);
        }
    }
    LOG(INFO, "supervisor stopped");
out:
    queue_close(q);
    free(slots);
    return status;
}
