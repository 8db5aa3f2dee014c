/*
 * metrics: the proxy's own counters (requests by endpoint and code, sync
 * response time, sync inference time, refusals) kept in process memory with
 * atomics, rendered as Prometheus text together with the system-wide figures
 * the workers keep in Redis (queue_stats), so one scrape of any proxy shows
 * the whole system.
 */
#ifndef TANDEM_METRICS_H
#define TANDEM_METRICS_H

#include <stddef.h>

#include "api.h"
#include "queue.h"

/* One answered request: endpoint, HTTP code, time from headers to answer. */
void metrics_request(api_endpoint ep, int code, double ms);
/* One sync inference (decode + preprocess + run), in ms. */
void metrics_sync_inference(double ms);
/* A job not queued because the backlog was at its bound. */
void metrics_backpressure(void);
/* A Redis call that failed (connection or reply). */
void metrics_redis_error(void);

/* The Prometheus text; stats is NULL when Redis could not be read (then
 * tandem_redis_up is 0 and the system figures are left out). malloc'd. */
char *metrics_render(const queue_stats *stats, size_t *len);

#endif
