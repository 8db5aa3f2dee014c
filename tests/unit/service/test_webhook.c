/*
 * webhook: the secret format, the Standard Webhooks signature (the scheme's
 * own published example), WEBHOOK_ALLOW parsing and the destination rules.
 * Only literal addresses and "localhost" (from /etc/hosts) are resolved: no
 * network is needed and nothing connects anywhere.
 */
#include <string.h>

#include "test.h"
#include "webhook.h"

TEST(secret_format)
{
    unsigned char key[WEBHOOK_KEY_MAX];
    size_t n = 0;
    char err[256];
    ASSERT_EQ(
        webhook_parse_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", key, &n, err, sizeof err),
        0);
    ASSERT_EQ(n, 24);
    ASSERT_EQ(key[0], 0x31);
    ASSERT(webhook_parse_secret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", key, &n, err, sizeof err));
    ASSERT(strstr(err, "whsec_"));
    ASSERT(webhook_parse_secret("whsec_", key, &n, err, sizeof err));
    ASSERT(webhook_parse_secret("whsec_not*base64!", key, &n, err, sizeof err));
    ASSERT(webhook_parse_secret("whsec_c2hvcnQ=", key, &n, err, sizeof err)); /* 5 bytes */
    ASSERT(strstr(err, "5 bytes"));
    ASSERT(webhook_parse_secret(NULL, key, &n, err, sizeof err));
}

TEST(signature_matches_the_standard_webhooks_example)
{
    unsigned char key[WEBHOOK_KEY_MAX];
    size_t n = 0;
    char err[256], sig[64];
    ASSERT_EQ(
        webhook_parse_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", key, &n, err, sizeof err),
        0);
    const char *body = "{\"test\": 2432232314}";
    ASSERT_EQ(webhook_sign(key, n, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body, strlen(body),
                           sig, sizeof sig),
              0);
    ASSERT_STR_EQ(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    /* Any change to id, time or body changes it. */
    char other[64];
    ASSERT_EQ(webhook_sign(key, n, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265331, body, strlen(body),
                           other, sizeof other),
              0);
    ASSERT(strcmp(sig, other) != 0);
    ASSERT(webhook_sign(key, n, "x", 1, body, strlen(body), other, 10) != 0);
}

TEST(allow_list_syntax)
{
    webhook_allow *a = NULL;
    char err[256];
    ASSERT_EQ(webhook_allow_parse("", &a, err, sizeof err), 0);
    webhook_allow_free(a);
    ASSERT_EQ(webhook_allow_parse("127.0.0.1, hooks.example.com:8443 10.1.0.0/16,[::1]:9000,"
                                  "2001:db8::/32,::1,Example.ORG",
                                  &a, err, sizeof err),
              0);
    webhook_allow_free(a);
    const char *bad[] = {"10.0.0.0/33", "[::1",   "host:99999", "bad_host!",
                         "1.2.3.4/",    "[x]:80", "host:",      "a:b:c/200"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        a = NULL;
        if (webhook_allow_parse(bad[i], &a, err, sizeof err) == 0) {
            webhook_allow_free(a);
            TEST_FAIL_("WEBHOOK_ALLOW=\"%s\" was accepted", bad[i]);
        }
        ASSERT(strstr(err, "WEBHOOK_ALLOW"));
    }
}

/* 0 when url is allowed by the list text; the refusal reason in err. */
static int check(const char *list, const char *url, webhook_target *t, char *err, size_t errlen)
{
    webhook_allow *a = NULL;
    if (webhook_allow_parse(list, &a, err, errlen)) return -2;
    int rc = webhook_resolve(a, url, t, err, errlen);
    webhook_allow_free(a);
    return rc;
}

TEST(destinations_are_deny_by_default_and_pinned)
{
    webhook_target t;
    char err[512];
    /* Nothing listed: nothing allowed, and the name is not even looked up. */
    ASSERT(check("", "http://hooks.example.com/x", &t, err, sizeof err) == WEBHOOK_ERR_REFUSED);
    ASSERT(strstr(err, "not in WEBHOOK_ALLOW"));
    /* The cloud metadata address and private ranges, as literals. */
    ASSERT(check("hooks.example.com", "http://169.254.169.254/latest/meta-data/", &t, err,
                 sizeof err) == WEBHOOK_ERR_REFUSED);
    ASSERT(strstr(err, "private, loopback, link-local"));
    ASSERT(check("127.0.0.1", "http://10.0.0.1/", &t, err, sizeof err) == WEBHOOK_ERR_REFUSED);
    ASSERT(check("127.0.0.1", "http://[::1]:8080/", &t, err, sizeof err) == WEBHOOK_ERR_REFUSED);
    ASSERT(check("127.0.0.1", "http://[::ffff:169.254.169.254]/", &t, err, sizeof err) ==
           WEBHOOK_ERR_REFUSED);
    /* Listed: the address itself, at any port or at the listed port only. */
    ASSERT_EQ(check("127.0.0.1", "http://127.0.0.1:5000/hook?x=1", &t, err, sizeof err), 0);
    ASSERT_EQ(t.port, 5000);
    ASSERT_STR_EQ(t.addr_text, "127.0.0.1");
    ASSERT(t.host_is_ip);
    ASSERT_EQ(check("127.0.0.1:5000", "http://127.0.0.1:5000/", &t, err, sizeof err), 0);
    ASSERT(check("127.0.0.1:5000", "http://127.0.0.1:5001/", &t, err, sizeof err) ==
           WEBHOOK_ERR_REFUSED);
    ASSERT_EQ(check("10.1.0.0/16", "https://10.1.2.3/", &t, err, sizeof err), 0);
    ASSERT_EQ(t.port, 443);
    ASSERT(check("10.1.0.0/16", "https://10.2.0.1/", &t, err, sizeof err) == WEBHOOK_ERR_REFUSED);
    ASSERT_EQ(check("[::1]:9000", "http://[::1]:9000/", &t, err, sizeof err), 0);
    ASSERT_STR_EQ(t.host, "::1");
    /* Other spellings of a refused address are the same address. */
    ASSERT(check("hooks.example.com", "http://2130706433/", &t, err, sizeof err) ==
           WEBHOOK_ERR_REFUSED);
    ASSERT(check("hooks.example.com", "http://0x7f.1/", &t, err, sizeof err) ==
           WEBHOOK_ERR_REFUSED);
    /* A listed name that resolves to loopback is refused unless the address
     * is listed too (DNS pointing a name inside). */
    ASSERT(check("localhost", "http://localhost:8080/", &t, err, sizeof err) ==
           WEBHOOK_ERR_REFUSED);
    ASSERT(strstr(err, "private, loopback, link-local"));
    ASSERT_EQ(check("localhost,127.0.0.1", "http://LOCALHOST:8080/", &t, err, sizeof err), 0);
    ASSERT_STR_EQ(t.addr_text, "127.0.0.1");
    ASSERT(!t.host_is_ip);
    /* Not URLs we send to. */
    ASSERT(check("127.0.0.1", "ftp://127.0.0.1/", &t, err, sizeof err) == WEBHOOK_ERR_REFUSED);
    ASSERT(strstr(err, "http and https"));
    ASSERT(check("127.0.0.1", "file:///etc/passwd", &t, err, sizeof err) == WEBHOOK_ERR_REFUSED);
    ASSERT(check("127.0.0.1", "gopher://127.0.0.1:6379/", &t, err, sizeof err) ==
           WEBHOOK_ERR_REFUSED);
    ASSERT(check("127.0.0.1", "http://user:pw@127.0.0.1/", &t, err, sizeof err) ==
           WEBHOOK_ERR_REFUSED);
    ASSERT(strstr(err, "credentials"));
    ASSERT(check("127.0.0.1", "not a url", &t, err, sizeof err) == WEBHOOK_ERR_REFUSED);
    ASSERT(check("127.0.0.1", "", &t, err, sizeof err) == WEBHOOK_ERR_REFUSED);
    char longurl[WEBHOOK_URL_MAX + 40] = "http://127.0.0.1/";
    memset(longurl + 17, 'a', WEBHOOK_URL_MAX);
    longurl[WEBHOOK_URL_MAX + 17] = '\0';
    ASSERT(check("127.0.0.1", longurl, &t, err, sizeof err) == WEBHOOK_ERR_REFUSED);
}

TEST_MAIN()
