/*
 * sentinel: the master's address from a list of Redis Sentinels (see
 * sentinel.h). One short-lived connection per question: discovery happens
 * only when a connection to the master is (re)made, so keeping sentinel
 * connections open would buy nothing.
 */
#include "sentinel.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HOST_MAX 255

/* The i-th "host:port" of the list; 0 when it exists and is well formed. */
static int list_entry(const char *list, int i, char *host, size_t cap, int *port)
{
    const char *s = list;
    for (int k = 0; k < i; k++) {
        s = strchr(s, ',');
        if (!s) return -1;
        s++;
    }
    size_t len = strcspn(s, ",");
    const char *colon = memrchr(s, ':', len);
    if (!colon || colon == s || (size_t)(colon - s) > HOST_MAX || (size_t)(colon - s) >= cap)
        return -1;
    char *end;
    errno = 0;
    long p = strtol(colon + 1, &end, 10);
    if (errno || end != s + len || end == colon + 1 || p < 1 || p > 65535) return -1;
    /* An IPv6 address is written in brackets, hiredis wants it without. */
    size_t hlen = (size_t)(colon - s);
    if (hlen > 2 && s[0] == '[' && s[hlen - 1] == ']') s++, hlen -= 2;
    memcpy(host, s, hlen);
    host[hlen] = '\0';
    *port = (int)p;
    return 0;
}

int sentinel_list_valid(const char *list, char *err, size_t errlen)
{
    char host[HOST_MAX + 1];
    int port, n = 1;
    if (!list || !list[0]) {
        snprintf(err, errlen, "empty sentinel list");
        return SENTINEL_ERR;
    }
    for (const char *s = list; (s = strchr(s, ',')); s++)
        n++;
    if (n > SENTINEL_LIST_MAX) {
        snprintf(err, errlen, "%d sentinels listed, at most %d", n, SENTINEL_LIST_MAX);
        return SENTINEL_ERR;
    }
    for (int i = 0; i < n; i++) {
        if (list_entry(list, i, host, sizeof host, &port)) {
            snprintf(err, errlen, "entry %d of \"%s\" is not host:port", i + 1, list);
            return SENTINEL_ERR;
        }
    }
    return 0;
}

static struct timeval tv_ms(int ms)
{
    return (struct timeval){.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
}

/* Asks one sentinel; 0 with the address, else a reason in why. */
static int ask(const char *shost, int sport, const char *name, const char *password,
               int timeout_ms, char *host, size_t host_cap, int *port, char *why, size_t whylen)
{
    int rc = -1;
    redisReply *r = NULL;
    redisContext *c = redisConnectWithTimeout(shost, sport, tv_ms(timeout_ms));
    if (!c || c->err) {
        snprintf(why, whylen, "%s", c ? c->errstr : "out of memory");
        goto out;
    }
    redisSetTimeout(c, tv_ms(timeout_ms));
    if (password && password[0]) {
        r = redisCommand(c, "AUTH %s", password);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            snprintf(why, whylen, "AUTH: %.100s", r ? r->str : c->errstr);
            goto out;
        }
        freeReplyObject(r);
    }
    r = redisCommand(c, "SENTINEL get-master-addr-by-name %s", name);
    if (!r || r->type == REDIS_REPLY_ERROR) {
        snprintf(why, whylen, "%s", r ? r->str : c->errstr);
        goto out;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_STRING) {
        snprintf(why, whylen, "knows no master named \"%s\"", name);
        goto out;
    }
    long p = strtol(r->element[1]->str, NULL, 10);
    if (r->element[0]->len >= host_cap || p < 1 || p > 65535) {
        snprintf(why, whylen, "gave an unusable address");
        goto out;
    }
    memcpy(host, r->element[0]->str, r->element[0]->len + 1);
    *port = (int)p;
    rc = 0;
out:
    if (r) freeReplyObject(r);
    if (c) redisFree(c);
    return rc;
}

int sentinel_master(const char *list, const char *name, const char *password, int timeout_ms,
                    char *host, size_t host_cap, int *port, char *err, size_t errlen)
{
    char shost[HOST_MAX + 1], why[128];
    int sport;
    size_t used = 0;
    err[0] = '\0';
    for (int i = 0; i < SENTINEL_LIST_MAX && !list_entry(list, i, shost, sizeof shost, &sport);
         i++) {
        if (!ask(shost, sport, name, password, timeout_ms, host, host_cap, port, why, sizeof why))
            return 0;
        int n = snprintf(err + used, errlen - used, "%ssentinel %s:%d: %s", used ? "; " : "",
                         shost, sport, why);
        if (n < 0 || (size_t)n >= errlen - used) break;
        used += (size_t)n;
    }
    if (!err[0]) snprintf(err, errlen, "no usable sentinel in \"%s\"", list);
    return SENTINEL_ERR;
}
