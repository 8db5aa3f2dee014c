/*
 * worker: one worker process's life. It loads the async model (after the
 * fork, in the process that uses it: see supervisor.c), opens its own Redis
 * connection and takes jobs until *stop is set, finishing the job in hand
 * first.
 */
#ifndef TANDEM_WORKER_H
#define TANDEM_WORKER_H

#include <signal.h>

#include "config.h"

/* Exit statuses of a worker process, read by the supervisor. */
enum {
    WORKER_EXIT_OK = 0,
    WORKER_EXIT_FAILED = 1, /* a runtime failure (memory, Redis refused a script) */
    WORKER_EXIT_MODEL = 3   /* the model cannot be loaded: restarting will not help */
};

/* Runs the worker loop as worker `id` (unique across hosts: queue.h's
 * worker id characters) and returns one of the WORKER_EXIT_ statuses. Once
 * the model is loaded and Redis set up, one byte is written to ready_fd
 * (if >= 0), which is then closed. */
int worker_run(const struct config *cfg, const char *id, int ready_fd, volatile sig_atomic_t *stop);

#endif
