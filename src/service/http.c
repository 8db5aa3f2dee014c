/*
 * http: libmicrohttpd in "internal polling thread" mode with suspend/resume.
 *
 * Design. MHD's own thread(s) do all socket I/O with epoll and never block:
 * the access callback accumulates the body (capped; a Content-Length over the
 * cap is answered 413 before a byte of the body is read), then calls the
 * handler. A handler that can answer at once (health, errors) does so; one
 * that must compute or talk to Redis passes the request to a worker thread
 * and returns. The callback then suspends the connection
 * (MHD_suspend_connection), which takes it out of the poll set, so the I/O
 * thread goes on serving every other connection. When the worker calls
 * http_respond(), the answer is stored and the connection resumed
 * (MHD_resume_connection wakes the I/O thread through its inter-thread
 * channel); MHD calls the callback again and the stored answer is queued.
 *
 * The race between "handler returned without an answer" (suspend) and
 * "worker answered" (resume) is closed by a per-request mutex: the callback
 * suspends only if no answer is stored yet, under the lock, and the worker
 * resumes only a connection that was suspended, under the same lock.
 *
 * Memory is bounded: each body is capped at max_body, the sum of bodies held
 * at once at max_buffered (503 beyond), and connections at max_connections.
 *
 * Hostile clients. libmicrohttpd's own timeout is an idle timer that every
 * byte resets, so a client that sends one header byte every few seconds
 * holds a connection for ever; and its connection limit is global, so one
 * address can take every slot. Here each address gets at most
 * max_per_ip connections (MHD_OPTION_PER_IP_CONNECTION_LIMIT), and a
 * watchdog thread closes every connection whose request has not arrived in
 * time: its headers within request_timeout_s of the connection opening or of
 * the previous answer (so an idle keep-alive connection goes too), and its
 * body within request_timeout_s of its headers (so the idle time before a
 * request is not taken from its upload). The clock stops while the handler
 * has the request. The watchdog knows each socket
 * from MHD's connection notifications, under a lock that MHD's "closed"
 * notification also takes before MHD closes the socket, so it never touches
 * a descriptor that was reused; it wakes MHD with shutdown(), which MHD sees
 * as the client's end of stream.
 *
 * MHD can queue an answer only before it reads a body or after the whole
 * body: a refusal in mid-upload (the body crossed max_body, or too much is
 * buffered), and the watchdog's 408 for a slow body, are written on the
 * socket here, with "Connection: close", and the write side is shut so the
 * client sees the end of the answer; the rest of the upload is read and
 * dropped (bounded by max_body and the deadline) until the client stops.
 * MHD's own answers to what it cannot parse (400, and 414/431 past its
 * per-connection memory) carry fixed HTML bodies that no option changes;
 * the URI and header limits below MHD's make the usual cases JSON.
 */
#include "http.h"

#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"

#define WATCH_TICK_NS 100000000L /* how often the watchdog looks at the deadlines */
#define MEMORY_PER_CONN (64 * 1024) /* MHD's pool per connection: room above our URI and header caps */

/* One open connection, as the watchdog sees it; guarded by conns_mu. */
struct http_conn {
    struct http_conn *prev, *next;
    int fd;
    double start_ms; /* the clock: connection opened or last answer, then headers complete */
    int busy;        /* the request is complete and with the handler: no deadline */
    int in_body;     /* headers seen: a timeout is answered 408 */
    int answered;    /* an answer was written here on the socket */
    int closing;     /* shut down by the watchdog */
};

struct http_server {
    struct MHD_Daemon *daemon;
    http_options opt;
    atomic_size_t buffered;
    atomic_uint in_flight;
    pthread_mutex_t conns_mu;
    struct http_conn *conns;
    pthread_t watchdog;
    int watchdog_started;
    atomic_int stop;
    atomic_ulong timed_out;
};

struct http_request {
    http_server *server;
    struct MHD_Connection *conn;
    struct http_conn *hc; /* NULL if it could not be allocated: no deadline then */
    const char *method, *path;
    size_t uri_len; /* the whole request target, query included */
    int started;    /* the access callback has seen this request */
    int early;      /* refused in mid-upload: the answer goes straight to the socket */
    double t0;
    char *body;
    size_t len, cap;
    size_t discarded;
    int refused; /* 0, 413 or 503 */
    const char *refused_msg;
    int dispatched;
    int queued; /* the stored answer has gone to MHD */
    pthread_mutex_t lock;
    int suspended;
    struct MHD_Response *response;
    int status;
};

const char *http_method(const http_request *r)
{
    return r->method;
}
const char *http_path(const http_request *r)
{
    return r->path;
}

const char *http_header(const http_request *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

const char *http_query(const http_request *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}

const void *http_body(const http_request *r, size_t *len)
{
    *len = r->len;
    return r->body;
}

int http_refused(const http_request *r, const char **message)
{
    if (message) *message = r->refused_msg;
    return r->refused;
}

double http_age_ms(const http_request *r)
{
    return mono_ms() - r->t0;
}

static void release_body(http_request *r)
{
    if (r->cap) atomic_fetch_sub(&r->server->buffered, r->cap);
    free(r->body);
    r->body = NULL;
    r->len = r->cap = 0;
}

/* Stores the answer for the I/O thread and resumes the connection if it waits for one. */
static void deliver(http_request *r, struct MHD_Response *resp, int status)
{
    pthread_mutex_lock(&r->lock);
    r->response = resp;
    r->status = resp ? status : 500;
    /* A request body is no longer needed once answered: give its budget back now. */
    release_body(r);
    if (r->suspended) {
        r->suspended = 0;
        MHD_resume_connection(r->conn);
    }
    pthread_mutex_unlock(&r->lock);
}

/* Writes a whole answer on the socket, past MHD (which cannot answer in
 * mid-upload), then shuts the write side so that the client sees its end.
 * Best effort: the socket is non-blocking and its buffer holds an error
 * answer; a client that does not read loses it. */
static void send_raw(int fd, int status, const char *content_type, const char *body, size_t len,
                     const char *hdr_name, const char *hdr_value)
{
    char head[512];
    const char *reason = MHD_get_reason_phrase_for((unsigned)status);
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n",
                     status, reason && *reason ? reason : "Error",
                     content_type ? content_type : "application/json", len);
    if (n > 0 && hdr_name && hdr_value && (size_t)n < sizeof head)
        n += snprintf(head + n, sizeof head - (size_t)n, "%s: %s\r\n", hdr_name, hdr_value);
    if (n > 0 && (size_t)n < sizeof head) n += snprintf(head + n, sizeof head - (size_t)n, "\r\n");
    if (n < 0 || (size_t)n >= sizeof head) return;
    struct iovec iov[2] = {{head, (size_t)n}, {(void *)body, len}};
    struct msghdr msg = {.msg_iov = iov, .msg_iovlen = body && len ? 2 : 1};
    ssize_t sent = sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (sent < (ssize_t)((size_t)n + (body ? len : 0)))
        LOG(DEBUG, "http: a %d answer was cut short (%zd bytes written)", status, sent);
    shutdown(fd, SHUT_WR);
}

void http_respond(http_request *r, int status, const char *content_type, char *body, size_t len,
                  const char *hdr_name, const char *hdr_value)
{
    if (r->early) {
        /* Refused in mid-upload, from the handler call inside on_access. */
        http_server *s = r->server;
        pthread_mutex_lock(&s->conns_mu);
        if (r->hc && !r->hc->closing) {
            send_raw(r->hc->fd, status, content_type, body, len, hdr_name, hdr_value);
            r->hc->answered = 1;
        }
        pthread_mutex_unlock(&s->conns_mu);
        free(body);
        pthread_mutex_lock(&r->lock);
        r->status = status; /* answer_or_suspend then closes the connection */
        release_body(r);
        pthread_mutex_unlock(&r->lock);
        return;
    }
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        len, body ? body : (char *)"", body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!resp) {
        free(body);
        LOG(ERROR, "out of memory building a %d answer", status);
    } else {
        if (content_type) MHD_add_response_header(resp, "Content-Type", content_type);
        if (hdr_name && hdr_value) MHD_add_response_header(resp, hdr_name, hdr_value);
    }
    deliver(r, resp, status);
}

/* Queues the stored answer, or suspends until there is one. */
static enum MHD_Result answer_or_suspend(http_request *r)
{
    enum MHD_Result res = MHD_YES;
    pthread_mutex_lock(&r->lock);
    if (r->queued) {
        /* Called again after the answer was queued (should not happen): nothing to do. */
    } else if (r->response || r->status) {
        r->queued = 1;
        if (!r->response)
            res = MHD_NO;
        else
            res = MHD_queue_response(r->conn, (unsigned)r->status, r->response);
        if (r->response) MHD_destroy_response(r->response);
        r->response = NULL;
    } else {
        r->suspended = 1;
        MHD_suspend_connection(r->conn);
    }
    pthread_mutex_unlock(&r->lock);
    return res;
}

/* The request has arrived in full (or been answered from its headers): the
 * deadline stops; the next request on this connection starts it again. */
static void set_busy(http_request *r)
{
    if (!r->hc) return;
    pthread_mutex_lock(&r->server->conns_mu);
    r->hc->busy = 1;
    pthread_mutex_unlock(&r->server->conns_mu);
}

static void dispatch(http_request *r)
{
    r->dispatched = 1;
    r->server->opt.handler(r->server->opt.ud, r);
}

static void refuse(http_request *r, int status, const char *msg)
{
    release_body(r);
    r->refused = status;
    r->refused_msg = msg;
}

/* A refusal from the headers: MHD sends it and closes, the body unread. */
static enum MHD_Result refuse_at_headers(http_request *r, int status, const char *msg)
{
    refuse(r, status, msg);
    set_busy(r);
    dispatch(r);
    return answer_or_suspend(r);
}

/* A refusal in mid-upload: answered on the socket at once (see the top of
 * this file); the rest of the body is dropped as it comes. */
static void refuse_in_body(http_request *r, int status, const char *msg)
{
    refuse(r, status, msg);
    r->early = 1;
    dispatch(r);
}

static http_request *new_request(http_server *s, struct MHD_Connection *conn)
{
    http_request *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    pthread_mutex_init(&r->lock, NULL);
    r->server = s;
    r->conn = conn;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    r->hc = ci ? ci->socket_context : NULL;
    atomic_fetch_add(&s->in_flight, 1);
    return r;
}

/* MHD's URI callback: the first look at a request, with its whole target. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    http_request *r = new_request(cls, conn);
    if (r) r->uri_len = strlen(uri);
    return r;
}

static enum MHD_Result add_header_size(void *cls, enum MHD_ValueKind kind, const char *key,
                                       const char *value)
{
    *(size_t *)cls += strlen(key) + (value ? strlen(value) : 0) + 4;
    return MHD_YES;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **con_cls)
{
    http_server *s = cls;
    http_request *r = *con_cls;
    if (!r || !r->started) {
        if (!r && !(r = new_request(s, conn))) return MHD_NO;
        *con_cls = r;
        r->started = 1;
        r->method = method;
        r->path = url;
        r->t0 = mono_ms();
        if (r->hc) {
            pthread_mutex_lock(&s->conns_mu);
            r->hc->in_body = 1;
            r->hc->start_ms = r->t0;
            pthread_mutex_unlock(&s->conns_mu);
        }
        if (r->uri_len > HTTP_MAX_URI) return refuse_at_headers(r, 414, "request URI too long");
        size_t header_bytes = 0;
        MHD_get_connection_values(conn, MHD_HEADER_KIND, add_header_size, &header_bytes);
        if (header_bytes > HTTP_MAX_HEADER_BYTES)
            return refuse_at_headers(r, 431, "request header fields too large");
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > s->opt.max_body)
            return refuse_at_headers(r, 413, "request body too large");
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (r->refused) {
            /* Answered already; the client may go on sending for a while. */
            r->discarded += n;
            return r->discarded > s->opt.max_body ? MHD_NO : MHD_YES;
        }
        if (r->len + n > s->opt.max_body) {
            r->discarded = r->len + n;
            refuse_in_body(r, 413, "request body too large");
            return MHD_YES;
        }
        if (r->len + n > r->cap) {
            size_t cap = r->cap ? r->cap * 2 : 64 * 1024;
            while (cap < r->len + n)
                cap *= 2;
            if (cap > s->opt.max_body) cap = s->opt.max_body;
            size_t total = atomic_fetch_add(&s->buffered, cap - r->cap) + (cap - r->cap);
            if (total > s->opt.max_buffered) {
                atomic_fetch_sub(&s->buffered, cap - r->cap);
                refuse_in_body(r, 503,
                               "server busy: too many request bodies in memory, retry later");
                return MHD_YES;
            }
            char *b = realloc(r->body, cap);
            if (!b) {
                atomic_fetch_sub(&s->buffered, cap - r->cap);
                refuse_in_body(r, 503, "server out of memory, retry later");
                return MHD_YES;
            }
            r->body = b;
            r->cap = cap;
        }
        memcpy(r->body + r->len, upload_data, n);
        r->len += n;
        return MHD_YES;
    }
    if (!r->dispatched) {
        set_busy(r);
        dispatch(r);
    }
    return answer_or_suspend(r);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    http_server *s = cls;
    http_request *r = *con_cls;
    if (!r) return;
    *con_cls = NULL;
    if (r->hc) {
        pthread_mutex_lock(&s->conns_mu);
        r->hc->busy = 0;
        r->hc->in_body = 0;
        r->hc->start_ms = mono_ms();
        pthread_mutex_unlock(&s->conns_mu);
    }
    release_body(r);
    if (r->response) MHD_destroy_response(r->response);
    pthread_mutex_destroy(&r->lock);
    free(r);
    atomic_fetch_sub(&s->in_flight, 1);
}

/* MHD's connection notifications: the watchdog's list of sockets. MHD sends
 * "closed" before it closes the socket. */
static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    http_server *s = cls;
    struct http_conn *c = *socket_context;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        c = calloc(1, sizeof *c);
        if (!c) return; /* MHD's idle timeout still applies to it */
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        c->fd = ci ? ci->connect_fd : -1;
        c->start_ms = mono_ms();
        pthread_mutex_lock(&s->conns_mu);
        c->next = s->conns;
        if (s->conns) s->conns->prev = c;
        s->conns = c;
        pthread_mutex_unlock(&s->conns_mu);
        *socket_context = c;
        return;
    }
    if (!c) return;
    pthread_mutex_lock(&s->conns_mu);
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    pthread_mutex_unlock(&s->conns_mu);
    free(c);
    *socket_context = NULL;
}

/* Closes the connections whose request is overdue (see the top of this file). */
static void *watchdog_main(void *arg)
{
    http_server *s = arg;
    double limit_ms = s->opt.request_timeout_s * 1000.0, last_log = mono_ms();
    char body[160];
    int len = snprintf(body, sizeof body,
                       "{\"error\":\"the request did not arrive in full within %u s\"}",
                       s->opt.request_timeout_s);
    unsigned long since_log = 0;
    while (!atomic_load(&s->stop)) {
        nanosleep(&(struct timespec){0, WATCH_TICK_NS}, NULL);
        double now = mono_ms();
        unsigned long n = 0;
        pthread_mutex_lock(&s->conns_mu);
        for (struct http_conn *c = s->conns; c; c = c->next) {
            if (c->busy || c->closing || c->fd < 0 || now - c->start_ms < limit_ms) continue;
            if (c->in_body && !c->answered)
                send_raw(c->fd, 408, "application/json", body, (size_t)len, NULL, NULL);
            shutdown(c->fd, SHUT_RDWR);
            c->closing = 1;
            n++;
        }
        pthread_mutex_unlock(&s->conns_mu);
        atomic_fetch_add(&s->timed_out, n);
        since_log += n;
        if (since_log && now - last_log > 10000) {
            LOG(WARN, "closed %lu connections whose request did not arrive within %u s", since_log,
                s->opt.request_timeout_s);
            since_log = 0;
            last_log = now;
        }
    }
    return NULL;
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && msg[n - 1] == '\n')
        msg[--n] = 0;
    LOG(DEBUG, "libmicrohttpd: %s", msg);
}

static void server_free(http_server *s)
{
    pthread_mutex_destroy(&s->conns_mu);
    free(s);
}

int http_start(const http_options *opt, http_server **out, char *err, size_t errlen)
{
    if (!opt->handler || opt->port < 1 || opt->port > 65535 || !opt->max_body) {
        snprintf(err, errlen, "http: bad options");
        return HTTP_ERR_INVALID;
    }
    http_server *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "http: out of memory");
        return HTTP_ERR_NOMEM;
    }
    pthread_mutex_init(&s->conns_mu, NULL);
    s->opt = *opt;
    if (!s->opt.max_buffered) s->opt.max_buffered = 8 * s->opt.max_body;
    if (!s->opt.max_connections) s->opt.max_connections = 1024;
    if (!s->opt.mhd_threads) s->opt.mhd_threads = 1;
    if (!s->opt.request_timeout_s) s->opt.request_timeout_s = 30;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG;
    /* The logger goes first so that MHD's own option warnings reach it; a
     * pool size of 1 is left out because MHD warns about it. */
    s->daemon = MHD_start_daemon(
        flags, (uint16_t)opt->port, NULL, NULL, on_access, s, MHD_OPTION_EXTERNAL_LOGGER,
        on_mhd_log, NULL, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, s, MHD_OPTION_URI_LOG_CALLBACK, on_uri, s,
        MHD_OPTION_CONNECTION_LIMIT, s->opt.max_connections, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        s->opt.max_per_ip, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)MEMORY_PER_CONN,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)60,
        s->opt.mhd_threads > 1 ? MHD_OPTION_THREAD_POOL_SIZE : MHD_OPTION_END, s->opt.mhd_threads,
        MHD_OPTION_END);
    if (!s->daemon) {
        snprintf(err, errlen, "http: cannot listen on port %d (in use, or no permission)",
                 opt->port);
        server_free(s);
        return HTTP_ERR_START;
    }
    if (pthread_create(&s->watchdog, NULL, watchdog_main, s)) {
        snprintf(err, errlen, "http: cannot start the watchdog thread");
        MHD_stop_daemon(s->daemon);
        server_free(s);
        return HTTP_ERR_START;
    }
    s->watchdog_started = 1;
    *out = s;
    return 0;
}

void http_quiesce(http_server *s)
{
    MHD_socket fd = MHD_quiesce_daemon(s->daemon);
    if (fd != MHD_INVALID_SOCKET) close(fd);
}

unsigned http_in_flight(const http_server *s)
{
    return atomic_load(&s->in_flight);
}

unsigned long http_timed_out(const http_server *s)
{
    return atomic_load(&s->timed_out);
}

void http_stop(http_server *s)
{
    if (!s) return;
    atomic_store(&s->stop, 1);
    if (s->watchdog_started) pthread_join(s->watchdog, NULL);
    MHD_stop_daemon(s->daemon);
    server_free(s);
}

/* ---- streamed answers ------------------------------------------------------
 * MHD pulls the body through stream_read() on its I/O thread. With nothing
 * to send, the reader suspends the connection (allowed from a content
 * reader) and returns 0; a write or the end resumes it. The stream is shared
 * by the writer and the MHD response, each holding a reference; MHD drops
 * its own when it is done with the response (the connection ended or the
 * client left), after which writes fail. */

#define STREAM_BUF_MAX (256 * 1024) /* unsent bytes kept for a slow reader */

struct http_stream {
    pthread_mutex_t mu;
    struct MHD_Connection *conn;
    char *buf;
    size_t len, off, cap;
    int suspended, ended, gone, refs;
};

static void stream_unref(http_stream *s)
{
    pthread_mutex_lock(&s->mu);
    int last = --s->refs == 0;
    pthread_mutex_unlock(&s->mu);
    if (!last) return;
    pthread_mutex_destroy(&s->mu);
    free(s->buf);
    free(s);
}

static ssize_t stream_read(void *cls, uint64_t pos, char *out, size_t max)
{
    http_stream *s = cls;
    ssize_t n = 0;
    pthread_mutex_lock(&s->mu);
    if (s->off < s->len) {
        size_t k = s->len - s->off < max ? s->len - s->off : max;
        memcpy(out, s->buf + s->off, k);
        s->off += k;
        if (s->off == s->len) s->off = s->len = 0;
        n = (ssize_t)k;
    } else if (s->ended) {
        n = MHD_CONTENT_READER_END_OF_STREAM;
    } else {
        s->suspended = 1;
        MHD_suspend_connection(s->conn);
    }
    pthread_mutex_unlock(&s->mu);
    return n;
}

static void stream_release(void *cls)
{
    http_stream *s = cls;
    pthread_mutex_lock(&s->mu);
    s->gone = 1;
    s->conn = NULL;
    pthread_mutex_unlock(&s->mu);
    stream_unref(s);
}

static void stream_wake(http_stream *s)
{
    if (s->suspended && s->conn) {
        s->suspended = 0;
        MHD_resume_connection(s->conn);
    }
}

http_stream *http_respond_stream(http_request *r, int status, const char *content_type,
                                 const char *const *headers)
{
    http_stream *s = calloc(1, sizeof *s);
    struct MHD_Response *resp = NULL;
    if (s) {
        pthread_mutex_init(&s->mu, NULL);
        s->conn = r->conn;
        s->refs = 2;
        resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, s,
                                                 stream_release);
    }
    if (!resp) {
        if (s) pthread_mutex_destroy(&s->mu);
        free(s);
        LOG(ERROR, "out of memory building a streamed answer");
        char *msg = strdup("{\"error\":\"out of memory\"}");
        http_respond(r, 500, "application/json", msg, msg ? strlen(msg) : 0, NULL, NULL);
        return NULL;
    }
    MHD_add_response_header(resp, "Content-Type", content_type);
    for (size_t i = 0; headers && headers[i] && headers[i + 1]; i += 2)
        MHD_add_response_header(resp, headers[i], headers[i + 1]);
    deliver(r, resp, status);
    return s;
}

int http_stream_write(http_stream *s, const char *data, size_t len)
{
    int rc = HTTP_ERR_GONE;
    pthread_mutex_lock(&s->mu);
    if (s->gone || s->ended || s->len + len > STREAM_BUF_MAX) goto out;
    if (s->len + len > s->cap) {
        size_t cap = s->cap ? s->cap : 1024;
        while (cap < s->len + len)
            cap *= 2;
        char *b = realloc(s->buf, cap);
        if (!b) goto out;
        s->buf = b;
        s->cap = cap;
    }
    memcpy(s->buf + s->len, data, len);
    s->len += len;
    stream_wake(s);
    rc = 0;
out:
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int http_stream_gone(http_stream *s)
{
    pthread_mutex_lock(&s->mu);
    int gone = s->gone;
    pthread_mutex_unlock(&s->mu);
    return gone;
}

void http_stream_end(http_stream *s)
{
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->ended = 1;
    stream_wake(s);
    pthread_mutex_unlock(&s->mu);
    stream_unref(s);
}
