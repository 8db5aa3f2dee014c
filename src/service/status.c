/*
 * status: one switch per range. The engine's and the queue's codes are named
 * by their own modules (tdm_strerror, queue_strerror); the service's small
 * enums are named here, next to each other, so that a new code is one line.
 */
#include "status.h"

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
#include "tandem/engine.h"
#include "web.h"
#include "webhook.h"

static const char *service_str(int code)
{
    switch (code) {
    case CONFIG_ERR_INVALID:
        return "invalid configuration";
    case API_ERR_BAD_REQUEST:
        return "bad request";
    case API_ERR_TOO_LARGE:
        return "request too large";
    case API_ERR_NOT_FOUND:
        return "not found";
    case API_ERR_METHOD:
        return "method not allowed";
    case API_ERR_MEDIA_TYPE:
        return "unsupported media type";
    case API_ERR_NOMEM:
        return "out of memory";
    case CODEC_ERR_INVALID:
        return "not valid base64";
    case CODEC_ERR_NOMEM:
        return "out of memory";
    case HTTP_ERR_INVALID:
        return "bad http options";
    case HTTP_ERR_NOMEM:
        return "out of memory";
    case HTTP_ERR_START:
        return "cannot start the http server";
    case HTTP_ERR_GONE:
        return "client gone";
    case WEBHOOK_ERR_REFUSED:
        return "webhook refused";
    case WEBHOOK_ERR_SYSTEM:
        return "webhook system error";
    case PUSH_ERR_NOMEM:
        return "out of memory";
    case PUSH_ERR_FULL:
        return "too many held";
    case PUSH_ERR_STOPPING:
        return "stopping";
    case SENTINEL_ERR:
        return "no redis master";
    case PROXY_ERR_BUSY:
        return "too many requests waiting";
    case PROXY_ERR_THREAD:
        return "cannot start a thread";
    case MODELS_ERR_UNAVAILABLE:
        return "models unavailable";
    case WEB_ERR_NOT_FOUND:
        return "no such file";
    default:
        return "unknown error";
    }
}

const char *status_str(int code)
{
    if (code == 0) return "ok";
    if (code < 0 && code > ERR_BASE_TDM - ERR_RANGE) return tdm_strerror(code);
    if (code <= ERR_BASE_QUEUE && code > ERR_BASE_QUEUE - ERR_RANGE) return queue_strerror(code);
    return service_str(code);
}
