/*
 * webhook: destinations, signatures and the delivery threads (see webhook.h
 * for the design and the SSRF rules).
 */
#include "webhook.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <netdb.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "api.h"
#include "clock.h"
#include "log.h"

#define SECRET_PREFIX "whsec_"
#define KEY_MIN 24
#define ALLOW_MAX 64    /* entries in WEBHOOK_ALLOW */
#define RESOLVED_MAX 16 /* addresses of one name looked at */
#define BACKOFF_CAP_MS 3600000LL
#define LEASE_EXTRA_MS 10000 /* a claim outlives an attempt by this much */
#define REDIS_RETRY_MS 200
#define WAIT_MAX_S 1.0 /* longest sleep in Redis: how soon a stop is seen */

/* ---- secret and signature ------------------------------------------------------ */

int webhook_parse_secret(const char *text, unsigned char *key, size_t *key_len, char *err,
                         size_t errlen)
{
    size_t plen = strlen(SECRET_PREFIX), n = text ? strlen(text) : 0;
    unsigned char buf[256];
    if (n <= plen || strncmp(text, SECRET_PREFIX, plen)) {
        snprintf(err, errlen, "WEBHOOK_SECRET must be \"whsec_\" followed by base64");
        return WEBHOOK_ERR_REFUSED;
    }
    const char *b64 = text + plen;
    n -= plen;
    size_t pad = n >= 1 && b64[n - 1] == '=' ? (n >= 2 && b64[n - 2] == '=' ? 2 : 1) : 0;
    for (size_t i = 0; i < n - pad; i++)
        if (!isalnum((unsigned char)b64[i]) && b64[i] != '+' && b64[i] != '/') n = 0;
    if (n == 0 || n % 4 || n / 4 * 3 > sizeof buf) {
        snprintf(err, errlen, "WEBHOOK_SECRET: the part after \"whsec_\" is not padded base64");
        return WEBHOOK_ERR_REFUSED;
    }
    int got = EVP_DecodeBlock(buf, (const unsigned char *)b64, (int)n);
    if (got < 0) {
        snprintf(err, errlen, "WEBHOOK_SECRET: the part after \"whsec_\" is not base64");
        return WEBHOOK_ERR_REFUSED;
    }
    size_t len = (size_t)got - pad;
    if (len < KEY_MIN || len > WEBHOOK_KEY_MAX) {
        snprintf(err, errlen, "WEBHOOK_SECRET: the key is %zu bytes, expected %d to %d", len,
                 KEY_MIN, WEBHOOK_KEY_MAX);
        return WEBHOOK_ERR_REFUSED;
    }
    memcpy(key, buf, len);
    *key_len = len;
    return 0;
}

int webhook_sign(const unsigned char *key, size_t key_len, const char *msg_id, long long timestamp,
                 const char *body, size_t body_len, char *out, size_t cap)
{
    char head[128];
    int hn = snprintf(head, sizeof head, "%s.%lld.", msg_id, timestamp);
    if (hn < 0 || (size_t)hn >= sizeof head || cap < 4 + 45) return WEBHOOK_ERR_SYSTEM;
    /* HMAC through EVP_MAC: the prefix and the body are fed in turn, no copy. */
    unsigned char mac[EVP_MAX_MD_SIZE];
    EVP_MAC *m = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = m ? EVP_MAC_CTX_new(m) : NULL;
    OSSL_PARAM params[2] = {OSSL_PARAM_construct_utf8_string("digest", (char *)"SHA256", 0),
                            OSSL_PARAM_construct_end()};
    size_t outl = 0;
    int ok = ctx && EVP_MAC_init(ctx, key, key_len, params) == 1 &&
             EVP_MAC_update(ctx, (const unsigned char *)head, (size_t)hn) == 1 &&
             EVP_MAC_update(ctx, (const unsigned char *)body, body_len) == 1 &&
             EVP_MAC_final(ctx, mac, &outl, sizeof mac) == 1;
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(m);
    if (!ok || outl != 32) return WEBHOOK_ERR_SYSTEM;
    memcpy(out, "v1,", 3);
    EVP_EncodeBlock((unsigned char *)out + 3, mac, (int)outl);
    return 0;
}

/* ---- the allow list ---------------------------------------------------------------- */

struct allow_entry {
    int is_net;     /* 1: address range; 0: host name */
    char name[254]; /* lower case */
    int family;     /* AF_INET or AF_INET6 */
    unsigned char addr[16];
    int bits;
    int port; /* 0: any */
};

struct webhook_allow {
    int n;
    struct allow_entry e[ALLOW_MAX];
};

static int parse_port(const char *s, int *port)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno || v < 1 || v > 65535) return -1;
    *port = (int)v;
    return 0;
}

static int valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 253) return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '.') return 0;
    return 1;
}

static int parse_entry(char *tok, struct allow_entry *e, char *err, size_t errlen)
{
    memset(e, 0, sizeof *e);
    char orig[300];
    snprintf(orig, sizeof orig, "%s", tok);
    char *slash = strchr(tok, '/'), *host = tok, *port = NULL;
    if (slash) { /* CIDR */
        *slash = '\0';
        char *end;
        long bits = strtol(slash + 1, &end, 10);
        e->family = strchr(tok, ':') ? AF_INET6 : AF_INET;
        int max = e->family == AF_INET ? 32 : 128;
        if (!slash[1] || *end || bits < 0 || bits > max ||
            inet_pton(e->family, tok, e->addr) != 1) {
            snprintf(err, errlen, "WEBHOOK_ALLOW: \"%s\" is not a CIDR range", orig);
            return -1;
        }
        e->is_net = 1;
        e->bits = (int)bits;
        return 0;
    }
    if (tok[0] == '[') { /* [v6] or [v6]:port */
        char *close = strchr(tok, ']');
        if (!close || (close[1] && close[1] != ':')) goto bad;
        *close = '\0';
        host = tok + 1;
        if (close[1] == ':') port = close + 2;
    } else if (strchr(tok, ':') == strrchr(tok, ':') && strchr(tok, ':')) { /* host:port */
        port = strchr(tok, ':');
        *port++ = '\0';
    }
    if (port && parse_port(port, &e->port)) goto bad;
    if (inet_pton(AF_INET6, host, e->addr) == 1) {
        e->family = AF_INET6;
        e->bits = 128;
        e->is_net = 1;
    } else if (inet_pton(AF_INET, host, e->addr) == 1) {
        e->family = AF_INET;
        e->bits = 32;
        e->is_net = 1;
    } else if (tok[0] != '[' && valid_name(host)) {
        for (size_t i = 0; host[i]; i++)
            e->name[i] = (char)tolower((unsigned char)host[i]);
    } else {
        goto bad;
    }
    return 0;
bad:
    snprintf(err, errlen,
             "WEBHOOK_ALLOW: \"%s\" is not host[:port], IPv4[:port], [IPv6][:port] or a CIDR "
             "range",
             orig);
    return -1;
}

int webhook_allow_parse(const char *text, webhook_allow **out, char *err, size_t errlen)
{
    webhook_allow *a = calloc(1, sizeof *a);
    char *copy = strdup(text ? text : "");
    int rc = WEBHOOK_ERR_REFUSED;
    if (!a || !copy) {
        rc = WEBHOOK_ERR_SYSTEM;
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    char *save = NULL;
    for (char *tok = strtok_r(copy, ", \t\n", &save); tok; tok = strtok_r(NULL, ", \t\n", &save)) {
        if (a->n == ALLOW_MAX) {
            snprintf(err, errlen, "WEBHOOK_ALLOW: more than %d entries", ALLOW_MAX);
            goto out;
        }
        if (strlen(tok) > 260) {
            snprintf(err, errlen, "WEBHOOK_ALLOW: an entry of %zu characters", strlen(tok));
            goto out;
        }
        if (parse_entry(tok, &a->e[a->n], err, errlen)) goto out;
        a->n++;
    }
    *out = a;
    a = NULL;
    rc = 0;
out:
    free(copy);
    free(a);
    return rc;
}

void webhook_allow_free(webhook_allow *a)
{
    free(a);
}

/* ---- addresses --------------------------------------------------------------------- */

/* An address in a common form: IPv4-mapped IPv6 is its IPv4 address (that is
 * where a connection to it goes). */
struct ip {
    int family;
    unsigned char b[16];
};

static struct ip ip_of(const struct sockaddr *sa)
{
    struct ip ip = {0};
    if (sa->sa_family == AF_INET) {
        ip.family = AF_INET;
        memcpy(ip.b, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a6)) {
            ip.family = AF_INET;
            memcpy(ip.b, a6->s6_addr + 12, 4);
        } else {
            ip.family = AF_INET6;
            memcpy(ip.b, a6->s6_addr, 16);
        }
    }
    return ip;
}

static int prefix_match(const unsigned char *a, const unsigned char *net, int bits)
{
    int whole = bits / 8, rest = bits % 8;
    if (memcmp(a, net, (size_t)whole)) return 0;
    if (!rest) return 1;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return (a[whole] & mask) == (net[whole] & mask);
}

/* Ranges a public destination never is: private, loopback, link-local,
 * shared (CGNAT), documentation, benchmarking, multicast, reserved, and the
 * IPv6 forms that embed an IPv4 address (NAT64, 6to4, Teredo, compatible). */
static int ip_special(const struct ip *ip)
{
    static const struct {
        unsigned char net[4];
        int bits;
    } v4[] = {{{0, 0, 0, 0}, 8},      {{10, 0, 0, 0}, 8},     {{100, 64, 0, 0}, 10},
              {{127, 0, 0, 0}, 8},    {{169, 254, 0, 0}, 16}, {{172, 16, 0, 0}, 12},
              {{192, 0, 0, 0}, 24},   {{192, 0, 2, 0}, 24},   {{192, 88, 99, 0}, 24},
              {{192, 168, 0, 0}, 16}, {{198, 18, 0, 0}, 15},  {{198, 51, 100, 0}, 24},
              {{203, 0, 113, 0}, 24}, {{224, 0, 0, 0}, 4},    {{240, 0, 0, 0}, 4}};
    static const struct {
        unsigned char net[16];
        int bits;
    } v6[] = {
        {{0}, 96},                         /* ::/96: unspecified, loopback, compatible */
        {{0, 0x64, 0xff, 0x9b}, 96},       /* NAT64 */
        {{0, 0x64, 0xff, 0x9b, 0, 1}, 48}, /* local-use NAT64 */
        {{0x01, 0x00}, 64},                /* discard-only */
        {{0x20, 0x01, 0x00, 0x00}, 32},    /* Teredo */
        {{0x20, 0x01, 0x0d, 0xb8}, 32},    /* documentation */
        {{0x20, 0x02}, 16},                /* 6to4 */
        {{0xfc}, 7},                       /* unique local */
        {{0xfe, 0x80}, 10},                /* link-local */
        {{0xfe, 0xc0}, 10},                /* site-local (deprecated) */
        {{0xff}, 8},                       /* multicast */
    };
    if (ip->family == AF_INET) {
        for (size_t i = 0; i < sizeof v4 / sizeof v4[0]; i++)
            if (prefix_match(ip->b, v4[i].net, v4[i].bits)) return 1;
        return 0;
    }
    for (size_t i = 0; i < sizeof v6 / sizeof v6[0]; i++)
        if (prefix_match(ip->b, v6[i].net, v6[i].bits)) return 1;
    return 0;
}

static int covered_by_net(const webhook_allow *a, const struct ip *ip, int port)
{
    for (int i = 0; i < a->n; i++) {
        const struct allow_entry *e = &a->e[i];
        if (e->is_net && e->family == ip->family && (!e->port || e->port == port) &&
            prefix_match(ip->b, e->addr, e->bits))
            return 1;
    }
    return 0;
}

static int name_listed(const webhook_allow *a, const char *host, int port)
{
    for (int i = 0; i < a->n; i++)
        if (!a->e[i].is_net && !strcasecmp(a->e[i].name, host) &&
            (!a->e[i].port || a->e[i].port == port))
            return 1;
    return 0;
}

static void addr_text(const struct sockaddr *sa, char *buf, size_t cap)
{
    const void *p = sa->sa_family == AF_INET
                        ? (const void *)&((const struct sockaddr_in *)sa)->sin_addr
                        : (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
    if (!inet_ntop(sa->sa_family, p, buf, (socklen_t)cap)) snprintf(buf, cap, "?");
}

/* Splits the URL with libcurl's own parser, so that what is checked is what
 * curl will connect to. */
static int split_url(const char *url, webhook_target *t, char *err, size_t errlen)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL, *user = NULL, *pass = NULL, *zone = NULL,
         *norm = NULL;
    int rc = -1;
    if (!u) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
        snprintf(err, errlen, "not a valid absolute URL");
        goto out;
    }
    if (strcasecmp(scheme, "http") && strcasecmp(scheme, "https")) {
        snprintf(err, errlen, "only http and https URLs are allowed");
        goto out;
    }
    if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK ||
        curl_url_get(u, CURLUPART_PASSWORD, &pass, 0) == CURLUE_OK) {
        snprintf(err, errlen, "credentials in the URL are not allowed");
        goto out;
    }
    if (curl_url_get(u, CURLUPART_ZONEID, &zone, 0) == CURLUE_OK) {
        snprintf(err, errlen, "IPv6 zone ids are not allowed");
        goto out;
    }
    if (curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK ||
        parse_port(port, &t->port) || curl_url_get(u, CURLUPART_URL, &norm, 0) != CURLUE_OK) {
        snprintf(err, errlen, "not a valid URL (port)");
        goto out;
    }
    size_t hl = strlen(host);
    const char *h = host;
    if (hl >= 2 && host[0] == '[') {
        h++;
        hl -= 2;
    }
    if (hl == 0 || hl >= sizeof t->host || strlen(norm) > WEBHOOK_URL_MAX) {
        snprintf(err, errlen, "the URL or its host name is too long");
        goto out;
    }
    memcpy(t->host, h, hl);
    t->host[hl] = '\0';
    snprintf(t->url, sizeof t->url, "%s", norm);
    rc = 0;
out:
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_free(user);
    curl_free(pass);
    curl_free(zone);
    curl_free(norm);
    curl_url_cleanup(u);
    return rc;
}

int webhook_resolve(const webhook_allow *a, const char *url, webhook_target *t, char *err,
                    size_t errlen)
{
    memset(t, 0, sizeof *t);
    if (!url || strlen(url) > WEBHOOK_URL_MAX) {
        snprintf(err, errlen, "callback_url is missing or longer than %d characters",
                 WEBHOOK_URL_MAX);
        return WEBHOOK_ERR_REFUSED;
    }
    if (split_url(url, t, err, errlen)) return WEBHOOK_ERR_REFUSED;
    struct in6_addr probe;
    t->host_is_ip =
        inet_pton(AF_INET, t->host, &probe) == 1 || inet_pton(AF_INET6, t->host, &probe) == 1;
    /* A name must be listed as a name; one that is not is never looked up
     * (no DNS query for names chosen by a client). */
    if (!t->host_is_ip && !name_listed(a, t->host, t->port)) {
        snprintf(err, errlen, "%s:%d is not in WEBHOOK_ALLOW", t->host, t->port);
        return WEBHOOK_ERR_REFUSED;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = t->host_is_ip ? AI_NUMERICHOST : 0};
    struct addrinfo *res = NULL;
    int gai = getaddrinfo(t->host, NULL, &hints, &res);
    if (gai) {
        snprintf(err, errlen, "cannot resolve %s: %s", t->host, gai_strerror(gai));
        return WEBHOOK_ERR_REFUSED;
    }
    int seen = 0, special_seen = 0, found = 0;
    char first[64] = "";
    for (struct addrinfo *ai = res; ai && seen < RESOLVED_MAX && !found; ai = ai->ai_next) {
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
        seen++;
        struct ip ip = ip_of(ai->ai_addr);
        if (!first[0]) addr_text(ai->ai_addr, first, sizeof first);
        int special = ip_special(&ip);
        special_seen |= special;
        if (covered_by_net(a, &ip, t->port) || (!t->host_is_ip && !special)) {
            memcpy(&t->addr, ai->ai_addr, ai->ai_addrlen);
            t->addr_len = ai->ai_addrlen;
            if (ai->ai_family == AF_INET)
                ((struct sockaddr_in *)&t->addr)->sin_port = htons((uint16_t)t->port);
            else
                ((struct sockaddr_in6 *)&t->addr)->sin6_port = htons((uint16_t)t->port);
            addr_text(ai->ai_addr, t->addr_text, sizeof t->addr_text);
            found = 1;
        }
    }
    freeaddrinfo(res);
    if (found) return 0;
    if (!seen)
        snprintf(err, errlen, "%s has no IPv4 or IPv6 address", t->host);
    else if (special_seen)
        snprintf(err, errlen,
                 "%s:%d (%s) is a private, loopback, link-local or reserved address that "
                 "WEBHOOK_ALLOW does not list",
                 t->host, t->port, first);
    else
        snprintf(err, errlen, "%s:%d (%s) is not in WEBHOOK_ALLOW", t->host, t->port, first);
    return WEBHOOK_ERR_REFUSED;
}

/* ---- delivery ---------------------------------------------------------------------- */

struct deliverer {
    struct webhook *w;
    pthread_t thread;
    int started;
    queue *q;
    CURL *curl;
    const webhook_target *target; /* during an attempt: what the socket may connect to */
};

struct webhook {
    int enabled;
    webhook_allow *allow;
    unsigned char key[WEBHOOK_KEY_MAX];
    size_t key_len;
    int max_attempts, backoff_ms, timeout_ms;
    int curl_ready;
    int nthreads;
    struct deliverer *threads;
    atomic_int stop;
};

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void nap_ms(const struct webhook *w, int ms)
{
    for (int slept = 0; slept < ms && !atomic_load(&w->stop); slept += 20)
        nanosleep(&(struct timespec){0, 20000000L}, NULL);
}

static int same_ip(const struct sockaddr *a, const struct sockaddr_storage *b)
{
    if (a->sa_family != b->ss_family) return 0;
    if (a->sa_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
    return x->sin6_port == y->sin6_port &&
           !memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr);
}

/* The last word on where a connection goes: only to the address that was
 * checked. CURLOPT_RESOLVE already points curl there; this refuses anything
 * else (a second lookup, a proxy from the environment, a bug). */
static curl_socket_t open_socket(void *ud, curlsocktype purpose, struct curl_sockaddr *a)
{
    const struct deliverer *d = ud;
    if (purpose != CURLSOCKTYPE_IPCXN || !d->target || !same_ip(&a->addr, &d->target->addr)) {
        char text[64];
        addr_text(&a->addr, text, sizeof text);
        LOG(WARN, "webhook: refused a connection to %s (checked address: %s)", text,
            d->target ? d->target->addr_text : "none");
        return CURL_SOCKET_BAD;
    }
    return socket(a->family, a->socktype, a->protocol);
}

static size_t discard(char *p, size_t size, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return size * n;
}

static int abort_on_stop(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    const struct deliverer *d = ud;
    return atomic_load(&d->w->stop) ? 1 : 0;
}

/* curl_slist_append keeps the list when it fails: remember the failure. */
static struct curl_slist *append(struct curl_slist *l, const char *s, int *failed)
{
    struct curl_slist *n = *failed ? NULL : curl_slist_append(l, s);
    if (!n) *failed = 1;
    return n ? n : l;
}

/* One POST. Returns the HTTP status, or -1 with the reason in err. */
static long post(struct deliverer *d, const webhook_target *t, const char *msg_id, const char *body,
                 char *err, size_t errlen)
{
    struct webhook *w = d->w;
    CURL *c = d->curl;
    struct curl_slist *hdrs = NULL, *resolve = NULL;
    char sig[64], line[400];
    long long ts = (long long)(wall_ms() / 1000);
    long code = -1;
    if (webhook_sign(w->key, w->key_len, msg_id, ts, body, strlen(body), sig, sizeof sig)) {
        snprintf(err, errlen, "cannot sign the body");
        return -1;
    }
    curl_easy_reset(c);
    int failed = 0;
    hdrs = append(hdrs, "Content-Type: application/json", &failed);
    /* No "Expect: 100-continue" round trip before the body. */
    hdrs = append(hdrs, "Expect:", &failed);
    snprintf(line, sizeof line, "webhook-id: %s", msg_id);
    hdrs = append(hdrs, line, &failed);
    snprintf(line, sizeof line, "webhook-timestamp: %lld", ts);
    hdrs = append(hdrs, line, &failed);
    snprintf(line, sizeof line, "webhook-signature: %s", sig);
    hdrs = append(hdrs, line, &failed);
    if (!t->host_is_ip) {
        snprintf(line, sizeof line, "%s:%d:%s%s%s", t->host, t->port,
                 t->addr.ss_family == AF_INET6 ? "[" : "", t->addr_text,
                 t->addr.ss_family == AF_INET6 ? "]" : "");
        resolve = append(resolve, line, &failed);
    }
    if (failed) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    d->target = t;
    curl_easy_setopt(c, CURLOPT_URL, t->url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_PROXY, "");
    if (resolve) curl_easy_setopt(c, CURLOPT_RESOLVE, resolve);
    curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, open_socket);
    curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, d);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
    curl_easy_setopt(c, CURLOPT_USERAGENT, "tandem-webhook/1");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)w->timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)w->timeout_ms);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, abort_on_stop);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, d);
    CURLcode rc = curl_easy_perform(c);
    if (rc != CURLE_OK) {
        snprintf(err, errlen, "%s", curl_easy_strerror(rc));
        goto out;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    if (code < 200 || code > 299) snprintf(err, errlen, "HTTP %ld", code);
out:
    d->target = NULL;
    /* The handle keeps pointers to these until the next reset. */
    curl_easy_reset(c);
    curl_slist_free_all(hdrs);
    curl_slist_free_all(resolve);
    return code;
}

static int64_t backoff_ms(const struct webhook *w, int attempt)
{
    int64_t ms = w->backoff_ms;
    for (int i = 1; i < attempt && ms < BACKOFF_CAP_MS; i++)
        ms *= 2;
    return ms < BACKOFF_CAP_MS ? ms : BACKOFF_CAP_MS;
}

static void record(struct deliverer *d, const char *id, int outcome, int attempts,
                   const char *error, int64_t due_ms)
{
    int rc = queue_webhook_record(d->q, id, outcome, attempts, error, due_ms);
    /* Unrecorded, the claim runs out and the webhook is tried again: at
     * least once, never lost. */
    if (rc) LOG(WARN, "webhook for job %s: cannot record the outcome: %s", id, queue_errstr(d->q));
}

static void deliver(struct deliverer *d, const char *id)
{
    struct webhook *w = d->w;
    queue_job job;
    char err[512] = "";
    int rc = queue_get_job(d->q, id, &job);
    if (rc == QUEUE_ERR_NOTFOUND) {
        LOG(WARN, "webhook for job %s: the job has expired; dropped", id);
        record(d, id, QUEUE_HOOK_DROPPED, 0, NULL, 0);
        return;
    }
    if (rc) {
        LOG(WARN, "webhook for job %s: cannot read the job: %s", id, queue_errstr(d->q));
        return;
    }
    char *body = NULL;
    webhook_target *t = malloc(sizeof *t);
    int attempt = job.webhook_attempts + 1;
    if (!t) goto out;
    if (!job.callback_url || !queue_status_final(job.status)) {
        LOG(WARN, "webhook for job %s: no callback or not final (%s); dropped", id, job.status);
        record(d, id, QUEUE_HOOK_DROPPED, 0, NULL, 0);
        goto out;
    }
    if (webhook_resolve(w->allow, job.callback_url, t, err, sizeof err)) {
        /* Allowed at POST time, refused now (configuration or DNS changed):
         * no request leaves, and retrying would not change that. */
        char why[600];
        snprintf(why, sizeof why, "destination refused: %s", err);
        LOG(WARN, "webhook for job %s: %s; given up", id, why);
        record(d, id, QUEUE_HOOK_FAILED, attempt, why, 0);
        goto out;
    }
    /* The body is the job as GET /job/{id} shows it during this attempt. */
    job.webhook_attempts = attempt;
    body = api_job_json(id, &job);
    if (!body) goto out;
    double t0 = mono_ms();
    long code = post(d, t, id, body, err, sizeof err);
    double ms = mono_ms_since(t0);
    if (atomic_load(&w->stop) && code < 0) goto out; /* abandoned: retried after the claim */
    if (code >= 200 && code <= 299) {
        LOG(INFO, "webhook for job %s delivered to %s (%s): HTTP %ld in %.1f ms, attempt %d", id,
            t->host, t->addr_text, code, ms, attempt);
        record(d, id, QUEUE_HOOK_DELIVERED, attempt, NULL, 0);
    } else if (attempt >= w->max_attempts) {
        LOG(WARN, "webhook for job %s to %s: %s; given up after %d attempts", id, t->host, err,
            attempt);
        record(d, id, QUEUE_HOOK_FAILED, attempt, err, 0);
    } else {
        int64_t delay = backoff_ms(w, attempt);
        LOG(INFO, "webhook for job %s to %s: %s (attempt %d of %d); next in %lld ms", id, t->host,
            err, attempt, w->max_attempts, (long long)delay);
        record(d, id, QUEUE_HOOK_RETRY, attempt, err, wall_ms() + delay);
    }
out:
    free(body);
    free(t);
    queue_job_clear(&job);
}

static void *deliverer_main(void *arg)
{
    struct deliverer *d = arg;
    struct webhook *w = d->w;
    /* An attempt's claim covers its DNS lookup, connect and answer. */
    int64_t lease = 2LL * w->timeout_ms + LEASE_EXTRA_MS;
    while (!atomic_load(&w->stop)) {
        char ids[1][QUEUE_ID_MAX + 1];
        int n = 0;
        int64_t next = -1, now = wall_ms();
        if (queue_webhook_claim(d->q, now, lease, 1, ids, &n, &next)) {
            nap_ms(w, REDIS_RETRY_MS);
            continue;
        }
        if (n) {
            deliver(d, ids[0]);
            continue;
        }
        double block = WAIT_MAX_S;
        if (next >= 0 && (double)(next - now) / 1000.0 < block)
            block = next > now ? (double)(next - now) / 1000.0 : 0.001;
        if (queue_webhook_wait(d->q, block)) nap_ms(w, REDIS_RETRY_MS);
    }
    return NULL;
}

int webhook_start(const struct config *cfg, const queue_options *qopt, webhook **out, char *err,
                  size_t errlen)
{
    webhook *w = calloc(1, sizeof *w);
    if (!w) {
        snprintf(err, errlen, "out of memory");
        return WEBHOOK_ERR_SYSTEM;
    }
    int rc = webhook_allow_parse(cfg->webhook_allow, &w->allow, err, errlen);
    if (rc) goto fail;
    w->enabled = w->allow->n > 0;
    w->max_attempts = cfg->webhook_max_attempts;
    w->backoff_ms = cfg->webhook_backoff_ms;
    w->timeout_ms = cfg->webhook_timeout_ms;
    if (!w->enabled) {
        *out = w;
        return 0;
    }
    if (!cfg->webhook_secret[0]) {
        snprintf(err, errlen,
                 "WEBHOOK_ALLOW is set but WEBHOOK_SECRET is empty: webhooks "
                 "must be signed (whsec_ + base64 of 24 to 64 random bytes)");
        rc = WEBHOOK_ERR_REFUSED;
        goto fail;
    }
    rc = webhook_parse_secret(cfg->webhook_secret, w->key, &w->key_len, err, errlen);
    if (rc) goto fail;
    rc = WEBHOOK_ERR_SYSTEM; /* what can fail from here on */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf(err, errlen, "libcurl failed to initialise");
        goto fail;
    }
    w->curl_ready = 1;
    w->threads = calloc((size_t)cfg->webhook_threads, sizeof *w->threads);
    if (!w->threads) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    w->nthreads = cfg->webhook_threads;
    for (int i = 0; i < w->nthreads; i++) {
        struct deliverer *d = &w->threads[i];
        d->w = w;
        if (queue_open(qopt, &d->q) || !(d->curl = curl_easy_init())) {
            snprintf(err, errlen, "cannot set up webhook delivery (redis client or curl)");
            goto fail;
        }
    }
    for (int i = 0; i < w->nthreads; i++) {
        if (pthread_create(&w->threads[i].thread, NULL, deliverer_main, &w->threads[i])) {
            snprintf(err, errlen, "cannot start a webhook thread: %s", strerror(errno));
            goto fail;
        }
        w->threads[i].started = 1;
    }
    *out = w;
    return 0;
fail:
    webhook_stop(w);
    return rc;
}

int webhook_check(const webhook *w, const char *url, char *err, size_t errlen)
{
    if (!w || !w->enabled) {
        snprintf(err, errlen, "webhooks are not enabled on this server (WEBHOOK_ALLOW is empty)");
        return WEBHOOK_ERR_REFUSED;
    }
    webhook_target *t = malloc(sizeof *t);
    if (!t) {
        snprintf(err, errlen, "out of memory");
        return WEBHOOK_ERR_SYSTEM;
    }
    int rc = webhook_resolve(w->allow, url, t, err, errlen);
    free(t);
    return rc;
}

void webhook_stop(webhook *w)
{
    if (!w) return;
    atomic_store(&w->stop, 1);
    for (int i = 0; i < w->nthreads; i++) {
        struct deliverer *d = &w->threads[i];
        if (d->started) pthread_join(d->thread, NULL);
        if (d->curl) curl_easy_cleanup(d->curl);
        queue_close(d->q);
    }
    free(w->threads);
    if (w->curl_ready) curl_global_cleanup();
    webhook_allow_free(w->allow);
    OPENSSL_cleanse(w->key, sizeof w->key);
    free(w);
}
