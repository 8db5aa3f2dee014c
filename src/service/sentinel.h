/*
 * sentinel: finds the current Redis master through Redis Sentinel.
 *
 *     char host[256]; int port;
 *     if (sentinel_master("10.0.0.1:26379,10.0.0.2:26379", "mymaster", NULL, 500,
 *                         host, sizeof host, &port, err, sizeof err) == 0) ...
 *
 * The sentinels are asked in order (SENTINEL get-master-addr-by-name); the
 * first that answers with an address wins. Sentinels agree on the master
 * once a failover is over; during one, a caller just asks again later.
 */
#ifndef TANDEM_SENTINEL_H
#define TANDEM_SENTINEL_H

#include <stddef.h>

#include "errors.h"

#define SENTINEL_ERR (ERR_BASE_SENTINEL - 1) /* a bad list, or no sentinel knows a master */
#define SENTINEL_LIST_MAX 16 /* sentinels in one list */

/* Checks a "host:port,host:port" list; 0 if well formed, else SENTINEL_ERR
 * and a message. */
int sentinel_list_valid(const char *list, char *err, size_t errlen);

/* Writes the master's address of `name`; password (NULL or "" for none)
 * authenticates to the sentinels. SENTINEL_ERR with a message naming each
 * sentinel's failure when none knows a master. */
int sentinel_master(const char *list, const char *name, const char *password, int timeout_ms,
                    char *host, size_t host_cap, int *port, char *err, size_t errlen);

#endif
