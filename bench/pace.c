/*
 * pace: an open-loop load generator for bench/service.sh.
 *
 * Request i leaves at t0 + i/rate whatever happened to the others, so a slow
 * answer cannot hold back the next request and hide latency; each request
 * has its own connection, as a new client's would. Latency counts from the
 * scheduled send time to the last byte of the answer.
 *
 * It replaces a Python pacer whose own overhead (the interpreter, a thread
 * per request, late wake-ups) added ~1.7 ms to every p50, more than the
 * whole 1.5 ms budget issue #10 gives the service around its model: one
 * thread driving libcurl's multi interface adds well under 0.1 ms.
 *
 * An answer's own "inference_ms" (tandem's decode + model time for that
 * request) is collected too, so that the service's overhead around its
 * model can be read off the same requests, on the CPU as it was then.
 *
 * usage: pace URL BODY_FILE CONTENT_TYPE RATE N
 * prints one JSON object: n, ok, errors, codes, p50_ms, p99_ms, mean_ms,
 * max_ms, rate (achieved), and server_p50_ms (the answers' inference_ms,
 * null when they have none).
 */
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_IN_FLIGHT 256
#define MAX_ANSWER 65536 /* bytes of an answer kept for its inference_ms */

typedef struct {
    double due_ms;  /* scheduled send time */
    double took_ms; /* due to last byte; < 0 until done */
    long code;      /* HTTP status, 0 on a transport error */
    double server_ms; /* the answer's inference_ms; NAN without one */
    char *answer;
    size_t answer_len;
} request;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void sleep_until(double t_ms)
{
    double left = t_ms - now_ms();
    if (left <= 0) return;
    struct timespec ts = {.tv_sec = (time_t)(left / 1e3),
                          .tv_nsec = (long)((left - (double)(time_t)(left / 1e3) * 1e3) * 1e6)};
    while (nanosleep(&ts, &ts) && errno == EINTR) {
    }
}

/* Keeps the first MAX_ANSWER bytes of an answer; the rest is counted only. */
static size_t keep_answer(char *p, size_t size, size_t n, void *user)
{
    request *r = user;
    size_t len = size * n, room = MAX_ANSWER - r->answer_len;
    if (!r->answer && !(r->answer = malloc(MAX_ANSWER))) return len;
    memcpy(r->answer + r->answer_len, p, len < room ? len : room);
    r->answer_len += len < room ? len : room;
    return len;
}

static double answer_inference_ms(const request *r)
{
    double ms = NAN;
    json_t *root = r->answer ? json_loadb(r->answer, r->answer_len, 0, NULL) : NULL;
    json_t *v = json_object_get(root, "inference_ms");
    if (json_is_number(v)) ms = json_number_value(v);
    json_decref(root);
    return ms;
}

static int read_file(const char *path, char **out, long *len)
{
    FILE *f = fopen(path, "rb");
    int rc = -1;
    char *buf = NULL;
    if (!f) goto out;
    if (fseek(f, 0, SEEK_END) || (*len = ftell(f)) < 0 || fseek(f, 0, SEEK_SET)) goto out;
    if (!(buf = malloc((size_t)*len + 1))) goto out;
    if (fread(buf, 1, (size_t)*len, f) != (size_t)*len) goto out;
    *out = buf;
    buf = NULL;
    rc = 0;
out:
    free(buf);
    if (f) fclose(f);
    return rc;
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The same rank as the Python pacer it replaces, so figures stay comparable. */
static double percentile(const double *sorted, int n, double p)
{
    int i = (int)(p / 100.0 * (n - 1) + 0.5);
    return sorted[i < n ? i : n - 1];
}

static CURL *start_request(CURLM *multi, const char *url, const char *body, long len,
                           struct curl_slist *headers, request *r)
{
    CURL *h = curl_easy_init();
    if (!h) return NULL;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, len);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, keep_answer);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(h, CURLOPT_FORBID_REUSE, 1L);
    curl_easy_setopt(h, CURLOPT_FRESH_CONNECT, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(h, CURLOPT_PRIVATE, r);
    if (curl_multi_add_handle(multi, h) != CURLM_OK) {
        curl_easy_cleanup(h);
        return NULL;
    }
    return h;
}

static void print_summary(const request *reqs, int n, double elapsed_ms)
{
    double *lat = malloc(sizeof *lat * (size_t)(n ? n : 1));
    double *server = malloc(sizeof *server * (size_t)(n ? n : 1));
    int ok = 0, nserver = 0, ncodes = 0;
    long codes[16];
    int counts[16];
    double sum = 0;
    for (int i = 0; i < n; i++) {
        int c = 0;
        while (c < ncodes && codes[c] != reqs[i].code)
            c++;
        if (c == ncodes && ncodes < 16) codes[ncodes] = reqs[i].code, counts[ncodes++] = 0;
        if (c < ncodes) counts[c]++;
        if (reqs[i].code == 200 && lat) lat[ok++] = reqs[i].took_ms, sum += reqs[i].took_ms;
        if (reqs[i].code == 200 && server && !isnan(reqs[i].server_ms))
            server[nserver++] = reqs[i].server_ms;
    }
    printf("{\"n\": %d, \"ok\": %d, \"errors\": %d, \"codes\": {", n, ok, n - ok);
    for (int c = 0; c < ncodes; c++)
        printf("%s\"%ld\": %d", c ? ", " : "", codes[c], counts[c]);
    printf("}");
    if (ok && lat) {
        qsort(lat, (size_t)ok, sizeof *lat, by_value);
        printf(", \"p50_ms\": %.3f, \"p99_ms\": %.3f, \"mean_ms\": %.3f, \"max_ms\": %.3f",
               percentile(lat, ok, 50), percentile(lat, ok, 99), sum / ok, lat[ok - 1]);
    } else {
        printf(", \"p50_ms\": null, \"p99_ms\": null, \"mean_ms\": null, \"max_ms\": null");
    }
    if (nserver) {
        qsort(server, (size_t)nserver, sizeof *server, by_value);
        printf(", \"server_p50_ms\": %.3f", percentile(server, nserver, 50));
    } else {
        printf(", \"server_p50_ms\": null");
    }
    printf(", \"rate\": %.3f}\n", elapsed_ms > 0 ? n / (elapsed_ms / 1e3) : 0.0);
    free(server);
    free(lat);
}

int main(int argc, char **argv)
{
    if (argc != 6 || !strcmp(argv[1], "--help")) {
        fprintf(stderr, "usage: pace URL BODY_FILE CONTENT_TYPE RATE N\n"
                        "Sends N POST requests at RATE per second, open loop, one connection "
                        "each; prints latency figures as JSON.\n");
        return argc == 2 ? 0 : 2;
    }
    const char *url = argv[1];
    double rate = atof(argv[4]);
    int n = atoi(argv[5]);
    char *body = NULL, ctype[256];
    long len = 0;
    int rc = 1, sent = 0, done = 0, running = 0;
    request *reqs = NULL;
    struct curl_slist *headers = NULL;
    CURLM *multi = NULL;
    if (rate <= 0 || n < 1) {
        fprintf(stderr, "pace: RATE must be > 0 and N >= 1\n");
        return 2;
    }
    if (read_file(argv[2], &body, &len)) {
        fprintf(stderr, "pace: cannot read %s: %s\n", argv[2], strerror(errno));
        return 1;
    }
    snprintf(ctype, sizeof ctype, "Content-Type: %s", argv[3]);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (!(reqs = calloc((size_t)n, sizeof *reqs)) || !(multi = curl_multi_init()) ||
        !(headers = curl_slist_append(NULL, ctype)) ||
        !(headers = curl_slist_append(headers, "Expect:")))
        goto out;
    double t0 = now_ms() + 200;
    for (int i = 0; i < n; i++)
        reqs[i] = (request){.due_ms = t0 + i * 1e3 / rate, .took_ms = -1, .server_ms = NAN};
    while (done < n) {
        while (sent < n && reqs[sent].due_ms <= now_ms() && sent - done < MAX_IN_FLIGHT) {
            if (!start_request(multi, url, body, len, headers, &reqs[sent])) goto out;
            sent++;
        }
        curl_multi_perform(multi, &running);
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(multi, &left))) {
            if (m->msg != CURLMSG_DONE) continue;
            request *r;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
            r->took_ms = now_ms() - r->due_ms;
            if (m->data.result == CURLE_OK)
                curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &r->code);
            r->server_ms = answer_inference_ms(r);
            free(r->answer);
            r->answer = NULL;
            curl_multi_remove_handle(multi, m->easy_handle);
            curl_easy_cleanup(m->easy_handle);
            done++;
        }
        if (done == n) break;
        /* Wait for traffic, but wake in time for the next scheduled send,
         * finishing the last millisecond by sleeping (poll's unit is 1 ms). */
        double next = sent < n ? reqs[sent].due_ms : now_ms() + 100;
        int wait = (int)(next - now_ms());
        if (wait > 0)
            curl_multi_poll(multi, NULL, 0, wait, NULL);
        else if (sent < n)
            sleep_until(next);
    }
    print_summary(reqs, n, now_ms() - t0);
    rc = 0;
out:
    if (rc) fprintf(stderr, "pace: out of memory or libcurl failed to start a request\n");
    curl_slist_free_all(headers);
    if (multi) curl_multi_cleanup(multi);
    curl_global_cleanup();
    free(reqs);
    free(body);
    return rc;
}
