/*
 * status: names any status code of tandem, whatever module it came from
 * (the ranges and the convention are in src/common/errors.h). For logs and
 * job records, where a code may come from the engine, the queue or the
 * service itself.
 */
#ifndef TANDEM_STATUS_H
#define TANDEM_STATUS_H

/* A short lower-case name ("redis unavailable", "bad request", ...); 0 is
 * "ok"; a code in no range, or unknown in its range, is "unknown error". */
const char *status_str(int code);

#endif
