/*
 * webhook: POST /predict's callback_url. When the job becomes final the
 * service POSTs the job object (the body of GET /job/{id}) to that URL,
 * signed per the Standard Webhooks scheme:
 *
 *     webhook-id: <job id>            (the same on every retry: an idempotency key)
 *     webhook-timestamp: <seconds since the epoch>
 *     webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>
 *
 * with key the bytes of WEBHOOK_SECRET ("whsec_" + base64).
 *
 * Design. Workers never talk to the network: the Lua script that stores a
 * job's final state also puts its id in the Redis sorted set webhooks:due
 * and wakes the deliverers (queue.h). Every proxy with WEBHOOK_ALLOW set
 * runs WEBHOOK_THREADS delivery threads; each claims one due id at a time
 * (re-scoring it to the end of a lease, so a proxy that dies mid-attempt
 * only delays the webhook), reads the job, POSTs it with libcurl, and
 * records the outcome: delivered on 2xx, otherwise retried after
 * WEBHOOK_BACKOFF_MS doubling per attempt, and failed after
 * WEBHOOK_MAX_ATTEMPTS. Delivery is at least once; webhook-id lets a
 * receiver drop duplicates.
 *
 * SSRF. Destinations are deny-by-default: WEBHOOK_ALLOW lists host names
 * (optionally with a port), IP addresses (optionally with a port) and CIDR
 * ranges. A URL must be http or https without credentials. A literal
 * address must be covered by an IP or CIDR entry. A host name must match a
 * name entry (names that are not listed are never looked up); it is resolved
 * once, and an address it resolves to is usable when it is public or when
 * an IP or CIDR entry covers it: private, loopback, link-local, CGNAT,
 * multicast and other special ranges need an entry of their own, so a listed
 * name that resolves (or is re-pointed) into the internal network is
 * refused. curl then connects to
 * exactly the checked address (CURLOPT_RESOLVE pins it; the socket-open
 * callback refuses any other), with no proxy and no redirects, so DNS
 * rebinding cannot move the connection. The check runs at POST time (a
 * refused URL is a 400, before any job exists) and again before each attempt.
 */
#ifndef TANDEM_WEBHOOK_H
#define TANDEM_WEBHOOK_H

#include <netinet/in.h>
#include <stddef.h>
#include <sys/socket.h>

#include "config.h"
#include "errors.h"
#include "queue.h"

#define WEBHOOK_URL_MAX 2048
#define WEBHOOK_KEY_MAX 64

enum {
    WEBHOOK_ERR_REFUSED = ERR_BASE_WEBHOOK - 1, /* a bad secret, list or URL, or webhooks off */
    WEBHOOK_ERR_SYSTEM = ERR_BASE_WEBHOOK - 2   /* out of memory, or a library or thread failed */
};

/* Every function below that can fail returns 0 or a WEBHOOK_ERR_*, with the
 * reason in err where it takes one. */

/* ---- pure parts (unit-tested) ---- */

/* "whsec_" + standard base64 of 24..64 bytes -> key. */
int webhook_parse_secret(const char *text, unsigned char *key, size_t *key_len, char *err,
                         size_t errlen);

/* "v1,<base64 of HMAC-SHA256(key, msg_id "." timestamp "." body)>" into out. */
int webhook_sign(const unsigned char *key, size_t key_len, const char *msg_id, long long timestamp,
                 const char *body, size_t body_len, char *out, size_t cap);

typedef struct webhook_allow webhook_allow;

/* WEBHOOK_ALLOW: entries separated by commas or spaces. An empty text gives
 * an empty list (everything refused). */
int webhook_allow_parse(const char *text, webhook_allow **out, char *err, size_t errlen);
void webhook_allow_free(webhook_allow *a);

/* Where an allowed URL is to be sent. */
typedef struct webhook_target {
    char url[WEBHOOK_URL_MAX + 1]; /* normalised by libcurl's URL parser */
    char host[256];                /* as in the URL, without IPv6 brackets */
    int host_is_ip;
    int port;
    struct sockaddr_storage addr; /* the checked address: the only one connected to */
    socklen_t addr_len;
    char addr_text[64];
} webhook_target;

/* Parses and checks url against the list, resolving its host (once); 0 and
 * *t on success, else WEBHOOK_ERR_REFUSED with the reason in err. */
int webhook_resolve(const webhook_allow *a, const char *url, webhook_target *t, char *err,
                    size_t errlen);

/* ---- the service ---- */

typedef struct webhook webhook;

/* From the proxy's configuration: with WEBHOOK_ALLOW empty, webhooks are
 * off (*out is still a handle: webhook_check refuses every URL, nothing
 * runs); otherwise WEBHOOK_SECRET must be valid, and the delivery threads
 * start, each with its own Redis connection from qopt. */
int webhook_start(const struct config *cfg, const queue_options *qopt, webhook **out, char *err,
                  size_t errlen);
/* 0 if url may be given as a callback_url now, else WEBHOOK_ERR_REFUSED
 * (or _SYSTEM) and why in err. */
int webhook_check(const webhook *w, const char *url, char *err, size_t errlen);
/* Stops the threads (an attempt in flight is abandoned and retried later by
 * whoever runs next) and frees everything. NULL is fine. */
void webhook_stop(webhook *w);

#endif
