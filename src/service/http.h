/*
 * http: a small server on libmicrohttpd. One callback sees each request once
 * its body is complete (or once it is refused for its size); it answers at
 * once with http_respond(), or hands the request to another thread, which
 * calls http_respond() later. Requests are independent: a slow answer never
 * holds up the I/O of others.
 *
 *     static void handle(void *ud, http_request *r) {
 *         http_respond(r, 200, "application/json", strdup("{}"), 2, NULL, NULL);
 *     }
 *     http_options o = {.port = 8000, .max_body = 1 << 20, .handler = handle};
 *     http_server *s;
 *     http_start(&o, &s, err, sizeof err);
 */
#ifndef TANDEM_HTTP_H
#define TANDEM_HTTP_H

#include <stddef.h>

#include "errors.h"

enum {
    HTTP_ERR_INVALID = ERR_BASE_HTTP - 1, /* bad http_options */
    HTTP_ERR_NOMEM = ERR_BASE_HTTP - 2,
    HTTP_ERR_START = ERR_BASE_HTTP - 3, /* cannot listen, or cannot start a thread */
    HTTP_ERR_GONE = ERR_BASE_HTTP - 4   /* a stream's client left, or it ended or is full */
};

/* Limits below libmicrohttpd's own (whose refusals are HTML), so that the
 * usual oversized requests get the handler's answer. */
#define HTTP_MAX_URI 8192
#define HTTP_MAX_HEADER_BYTES 16384

typedef struct http_server http_server;
typedef struct http_request http_request;

typedef void (*http_handler)(void *ud, http_request *req);

typedef struct http_options {
    int port;
    size_t max_body;     /* larger bodies are refused with 413 */
    size_t max_buffered; /* all bodies held at once; past it new ones get 503 (0: 8x max_body) */
    unsigned max_connections;   /* 0: 1024 */
    unsigned max_per_ip;        /* connections from one address; 0: no limit */
    unsigned request_timeout_s; /* a whole request, headers and body, must arrive in it; 0: 30 */
    unsigned mhd_threads;       /* libmicrohttpd's own socket threads (its pool); 0: 1 */
    http_handler handler;
    void *ud;
} http_options;

/* 0, or an HTTP_ERR_* with a message in err. */
int http_start(const http_options *opt, http_server **out, char *err, size_t errlen);
/* Stops accepting connections; requests in flight go on. */
void http_quiesce(http_server *s);
/* Requests received and not yet completely answered. */
unsigned http_in_flight(const http_server *s);
/* Connections closed so far because their request was not in by request_timeout_s. */
unsigned long http_timed_out(const http_server *s);
/* Stops the server and closes every connection; call once every request
 * handed to another thread has been answered, since libmicrohttpd cannot
 * stop with suspended requests. */
void http_stop(http_server *s);

/* During the handler call only: */
const char *http_method(const http_request *r);
const char *http_path(const http_request *r);
const char *http_header(const http_request *r, const char *name);
const char *http_query(const http_request *r, const char *name);

/* Until the answer: the body, and why the server itself refused the request
 * (0 if it did not; 413 body too large, 414 URI too long, 431 headers too
 * large, 503 too much buffered) with a message. A refused request must be
 * answered during the handler call: in mid-upload the answer is written on
 * the socket at once. */
const void *http_body(const http_request *r, size_t *len);
int http_refused(const http_request *r, const char **message);
/* Milliseconds since the request's headers arrived. */
double http_age_ms(const http_request *r);

/* Answers the request, exactly once, from any thread. Takes ownership of
 * body (malloc'd, may be NULL when len is 0). hdr_name/hdr_value: one extra
 * header, or NULL. */
void http_respond(http_request *r, int status, const char *content_type, char *body, size_t len,
                  const char *hdr_name, const char *hdr_value);

/* A streamed answer (Server-Sent Events): the body is written over time from
 * any thread and sent as it comes, chunked. */
typedef struct http_stream http_stream;

/* Answers r (exactly once, like http_respond) with a body to be written
 * later; headers: NULL-terminated name, value pairs, or NULL. NULL when out
 * of memory (r is then answered 500). The caller holds the stream until
 * http_stream_end(). */
http_stream *http_respond_stream(http_request *r, int status, const char *content_type,
                                 const char *const *headers);
/* Appends bytes to send; HTTP_ERR_GONE once the client has gone, the stream has ended,
 * or too much is unsent (a client that does not read). */
int http_stream_write(http_stream *s, const char *data, size_t len);
/* 1 once the connection is over (the client left, or everything was sent). */
int http_stream_gone(http_stream *s);
/* No more data: the answer ends after what was written. Releases s. */
void http_stream_end(http_stream *s);

#endif
