/*
 * metrics: lock-free counters (C11 atomics) updated on every request from
 * any thread, read by GET /metrics. A (endpoint, code) table covers every
 * HTTP code 100..599 so that recording never allocates or locks; rendering
 * skips the zero cells.
 *
 * Histograms are cumulative at render time (Prometheus "le" buckets). Times
 * are exported in seconds, the Prometheus convention.
 */
#include "metrics.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CODE_MIN 100
#define CODE_MAX 599
#define NBUCKETS 14

/* Upper bounds in ms; the last bucket is +Inf. */
static const double bounds_ms[NBUCKETS - 1] = {1,   2.5, 5,    10,   25,   50,   100,
                                               250, 500, 1000, 2500, 5000, 10000};

struct histogram {
    atomic_llong count[NBUCKETS];
    atomic_llong n;
    atomic_llong sum_us; /* integer microseconds: atomics on doubles are not portable */
};

static atomic_llong requests[API_EP_COUNT][CODE_MAX - CODE_MIN + 1];
static struct histogram sync_response, sync_inference;
static atomic_llong backpressure_total, redis_errors_total;

static void observe(struct histogram *h, double ms)
{
    int b = 0;
    while (b < NBUCKETS - 1 && ms > bounds_ms[b])
        b++;
    atomic_fetch_add(&h->count[b], 1);
    atomic_fetch_add(&h->n, 1);
    atomic_fetch_add(&h->sum_us, (long long)(ms * 1000));
}

void metrics_request(api_endpoint ep, int code, double ms)
{
    if ((unsigned)ep >= API_EP_COUNT) ep = API_EP_OTHER;
    if (code < CODE_MIN || code > CODE_MAX) code = 500;
    atomic_fetch_add(&requests[ep][code - CODE_MIN], 1);
    if (ep == API_EP_PREDICT || ep == API_EP_PREDICT_TEST) observe(&sync_response, ms);
}

void metrics_sync_inference(double ms)
{
    observe(&sync_inference, ms);
}
void metrics_backpressure(void)
{
    atomic_fetch_add(&backpressure_total, 1);
}
void metrics_redis_error(void)
{
    atomic_fetch_add(&redis_errors_total, 1);
}

/* A growable text buffer; on allocation failure it stays failed and
 * metrics_render returns NULL. */
struct buf {
    char *p;
    size_t len, cap;
    int failed;
};

__attribute__((format(printf, 2, 3))) static void put(struct buf *b, const char *fmt, ...)
{
    if (b->failed) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = 1;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap * 2 + (size_t)n;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->failed = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
}

static void put_histogram(struct buf *b, const char *name, const char *help,
                          const struct histogram *h)
{
    put(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    long long cum = 0;
    for (int i = 0; i < NBUCKETS; i++) {
        cum += atomic_load(&h->count[i]);
        if (i < NBUCKETS - 1)
            put(b, "%s_bucket{le=\"%g\"} %lld\n", name, bounds_ms[i] / 1000, cum);
        else
            put(b, "%s_bucket{le=\"+Inf\"} %lld\n", name, cum);
    }
    put(b, "%s_sum %.6f\n%s_count %lld\n", name, atomic_load(&h->sum_us) / 1e6, name,
        atomic_load(&h->n));
}

static void put_counter(struct buf *b, const char *name, const char *help, const char *type,
                        double v)
{
    put(b, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, type, name, v);
}

static void put_workers(struct buf *b, const queue_stats *st)
{
    put_counter(b, "tandem_jobs_processed_total", "Jobs the workers completed.", "counter",
                (double)st->processed);
    put_counter(b, "tandem_jobs_failed_total", "Jobs failed for good (dead-lettered).", "counter",
                (double)st->failed);
    put_counter(b, "tandem_jobs_expired_total", "Jobs whose image expired before a worker ran.",
                "counter", (double)st->expired);
    put_counter(b, "tandem_jobs_retried_total", "Job attempts that failed and were retried.",
                "counter", (double)st->retried);
    put_counter(b, "tandem_jobs_invalid_total",
                "Queue entries that were no job id, dead-lettered by the workers.", "counter",
                (double)st->invalid);
    put_counter(b, "tandem_queue_length", "Jobs waiting in the queue.", "gauge",
                (double)st->queue_length);
    put_counter(b, "tandem_jobs_processing", "Jobs held by live workers.", "gauge",
                (double)st->processing);
    put_counter(b, "tandem_dead_letter_length", "Jobs in the dead-letter list.", "gauge",
                (double)st->dead_length);
    put_counter(b, "tandem_workers_alive", "Workers with a live heartbeat.", "gauge",
                (double)st->workers_alive);
    put(b,
        "# HELP tandem_fast_slow_agreement_total Completed jobs whose slow top-1 label agrees "
        "with the fast one (agree) or replaces it (upgrade).\n"
        "# TYPE tandem_fast_slow_agreement_total counter\n"
        "tandem_fast_slow_agreement_total{result=\"agree\"} %lld\n"
        "tandem_fast_slow_agreement_total{result=\"upgrade\"} %lld\n",
        st->agree, st->upgrade);
    put(b,
        "# HELP tandem_webhook_attempts_total Webhook delivery attempts by outcome (retried: "
        "failed and scheduled again; failed: given up).\n"
        "# TYPE tandem_webhook_attempts_total counter\n"
        "tandem_webhook_attempts_total{result=\"delivered\"} %lld\n"
        "tandem_webhook_attempts_total{result=\"retried\"} %lld\n"
        "tandem_webhook_attempts_total{result=\"failed\"} %lld\n",
        st->webhook_delivered, st->webhook_retried, st->webhook_failed);
    const char *name = "tandem_async_inference_seconds";
    put(b, "# HELP %s Async (worker) inference time.\n# TYPE %s histogram\n", name, name);
    for (int i = 0; i < QUEUE_HIST_BUCKETS; i++) {
        if (i < QUEUE_HIST_BUCKETS - 1)
            put(b, "%s_bucket{le=\"%g\"} %lld\n", name, queue_hist_bounds[i] / 1000, st->hist[i]);
        else
            put(b, "%s_bucket{le=\"+Inf\"} %lld\n", name, st->hist[i]);
    }
    put(b, "%s_sum %.6f\n%s_count %lld\n", name, st->inference_ms_sum / 1000, name,
        st->inference_count);
}

char *metrics_render(const queue_stats *stats, size_t *len)
{
    struct buf b = {malloc(8192), 0, 8192, 0};
    if (!b.p) return NULL;
    long long total = 0, errors = 0;
    put(&b, "# HELP tandem_http_requests_total Requests answered by this proxy.\n"
            "# TYPE tandem_http_requests_total counter\n");
    for (int e = 0; e < API_EP_COUNT; e++)
        for (int c = 0; c <= CODE_MAX - CODE_MIN; c++) {
            long long v = atomic_load(&requests[e][c]);
            if (!v) continue;
            put(&b, "tandem_http_requests_total{endpoint=\"%s\",code=\"%d\"} %lld\n",
                api_endpoint_name((api_endpoint)e), c + CODE_MIN, v);
            total += v;
            if (c + CODE_MIN >= 400) errors += v;
        }
    put_counter(&b, "tandem_http_errors_total", "Requests answered 4xx or 5xx by this proxy.",
                "counter", (double)errors);
    put_counter(&b, "tandem_http_error_ratio",
                "Share of this proxy's requests answered 4xx or 5xx since start.", "gauge",
                total ? (double)errors / (double)total : 0.0);
    put_histogram(&b, "tandem_sync_response_seconds",
                  "POST /predict and GET /predict/test, headers in to answer out.", &sync_response);
    put_histogram(&b, "tandem_sync_inference_seconds",
                  "Sync model: decode, preprocess and inference.", &sync_inference);
    put_counter(&b, "tandem_backpressure_total", "Jobs refused because the backlog was full.",
                "counter", (double)atomic_load(&backpressure_total));
    put_counter(&b, "tandem_redis_errors_total", "Redis calls of this proxy that failed.",
                "counter", (double)atomic_load(&redis_errors_total));
    put_counter(&b, "tandem_redis_up", "1 if this scrape could read Redis.", "gauge",
                stats ? 1 : 0);
    if (stats) put_workers(&b, stats);
    if (b.failed) {
        free(b.p);
        return NULL;
    }
    *len = b.len;
    return b.p;
}
