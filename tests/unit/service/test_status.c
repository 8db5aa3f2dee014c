/* The status convention (src/common/errors.h): every module's codes lie in
 * its own range, no two codes are equal, and status_str names each of them. */
#include <string.h>

#include "api.h"
#include "codec.h"
#include "config.h"
#include "errors.h"
#include "http.h"
#include "models.h"
#include "proxy_taskq.h"
#include "push.h"
#include "queue.h"
#include "sentinel.h"
#include "status.h"
#include "tandem/engine.h"
#include "test.h"
#include "web.h"
#include "webhook.h"

struct code {
    int value, base;
    const char *name;
};

#define C(base, x)                                                                                 \
    {                                                                                              \
        x, base, #x                                                                                \
    }

static const struct code codes[] = {
    C(ERR_BASE_TDM, TDM_ERR_NOMEM),
    C(ERR_BASE_TDM, TDM_ERR_IO),
    C(ERR_BASE_TDM, TDM_ERR_PARSE),
    C(ERR_BASE_TDM, TDM_ERR_UNSUPPORTED),
    C(ERR_BASE_TDM, TDM_ERR_INVALID),
    C(ERR_BASE_TDM, TDM_ERR_BACKEND),
    C(ERR_BASE_TDM, TDM_ERR_IMAGE),
    C(ERR_BASE_TDM, TDM_ERR_LIMIT),
    C(ERR_BASE_CONFIG, CONFIG_ERR_INVALID),
    C(ERR_BASE_API, API_ERR_BAD_REQUEST),
    C(ERR_BASE_API, API_ERR_TOO_LARGE),
    C(ERR_BASE_API, API_ERR_NOT_FOUND),
    C(ERR_BASE_API, API_ERR_METHOD),
    C(ERR_BASE_API, API_ERR_MEDIA_TYPE),
    C(ERR_BASE_API, API_ERR_NOMEM),
    C(ERR_BASE_QUEUE, QUEUE_ERR_IO),
    C(ERR_BASE_QUEUE, QUEUE_ERR_REPLY),
    C(ERR_BASE_QUEUE, QUEUE_ERR_NOTFOUND),
    C(ERR_BASE_QUEUE, QUEUE_ERR_INVALID),
    C(ERR_BASE_QUEUE, QUEUE_ERR_FULL),
    C(ERR_BASE_QUEUE, QUEUE_ERR_EMPTY),
    C(ERR_BASE_QUEUE, QUEUE_ERR_NOMEM),
    C(ERR_BASE_QUEUE, QUEUE_ERR_BUSY),
    C(ERR_BASE_QUEUE, QUEUE_ERR_OOM),
    C(ERR_BASE_CODEC, CODEC_ERR_INVALID),
    C(ERR_BASE_CODEC, CODEC_ERR_NOMEM),
    C(ERR_BASE_HTTP, HTTP_ERR_INVALID),
    C(ERR_BASE_HTTP, HTTP_ERR_NOMEM),
    C(ERR_BASE_HTTP, HTTP_ERR_START),
    C(ERR_BASE_HTTP, HTTP_ERR_GONE),
    C(ERR_BASE_WEBHOOK, WEBHOOK_ERR_REFUSED),
    C(ERR_BASE_WEBHOOK, WEBHOOK_ERR_SYSTEM),
    C(ERR_BASE_PUSH, PUSH_ERR_NOMEM),
    C(ERR_BASE_PUSH, PUSH_ERR_FULL),
    C(ERR_BASE_PUSH, PUSH_ERR_STOPPING),
    C(ERR_BASE_SENTINEL, SENTINEL_ERR),
    C(ERR_BASE_PROXY, PROXY_ERR_BUSY),
    C(ERR_BASE_PROXY, PROXY_ERR_THREAD),
    C(ERR_BASE_MODELS, MODELS_ERR_UNAVAILABLE),
    C(ERR_BASE_WEB, WEB_ERR_NOT_FOUND),
};
#define NCODES (sizeof codes / sizeof codes[0])

TEST(codes_in_their_ranges)
{
    for (size_t i = 0; i < NCODES; i++)
        if (codes[i].value >= codes[i].base || codes[i].value <= codes[i].base - ERR_RANGE)
            TEST_FAIL_("%s = %d is outside its range (%d, %d]", codes[i].name, codes[i].value,
                       codes[i].base - ERR_RANGE, codes[i].base);
}

TEST(codes_distinct)
{
    for (size_t i = 0; i < NCODES; i++)
        for (size_t j = i + 1; j < NCODES; j++)
            if (codes[i].value == codes[j].value)
                TEST_FAIL_("%s and %s are both %d", codes[i].name, codes[j].name, codes[i].value);
}

TEST(every_code_named)
{
    ASSERT_STR_EQ(status_str(0), "ok");
    for (size_t i = 0; i < NCODES; i++)
        if (!strcmp(status_str(codes[i].value), "unknown error"))
            TEST_FAIL_("status_str(%s) is not named", codes[i].name);
    ASSERT_STR_EQ(status_str(-99999), "unknown error");
    ASSERT_STR_EQ(status_str(QUEUE_ERR_IO), queue_strerror(QUEUE_ERR_IO));
    ASSERT_STR_EQ(status_str(TDM_ERR_IMAGE), tdm_strerror(TDM_ERR_IMAGE));
}

TEST_MAIN()
