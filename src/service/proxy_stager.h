/*
 * proxy_stager: sends a job's image to Redis from a helper thread while the
 * inference thread computes the fast model.
 *
 * Before the model runs, an inference thread base64-encodes a raw body for
 * Redis (0.13 ms for dog.jpg) and writes the 220 kB SET image:{id}
 * (queue_create_begin, 0.17 ms): 0.3 ms on the request's path, on one core,
 * while the other core is often idle. Each inference thread has a stager
 * that does both beside the model: stager_begin hands over the job, the
 * helper encodes (when the job has no base64 text yet) and calls
 * queue_create_begin on the inference thread's queue, and stager_wait
 * returns once it has. Between the two calls the inference thread must not
 * touch that queue, the job or the bytes; after stager_wait it has them all
 * back. Under load the work is the same, done on another thread.
 */
#ifndef TANDEM_PROXY_STAGER_H
#define TANDEM_PROXY_STAGER_H

#include <stddef.h>

#include "queue.h"

typedef struct stager stager;

/* Starts the helper thread: 0, or PROXY_ERR_THREAD (or -1 without memory). */
int stager_start(stager **out);

/* Hands the job to the helper. If job->image_b64 is NULL, the helper sets it
 * (and image_b64_len) to the base64 of raw[0..raw_len), or leaves it NULL
 * when that cannot be allocated, in which case nothing is sent. */
void stager_begin(stager *s, queue *q, queue_new_job *job, const void *raw, size_t raw_len,
                  queue_staged *st);

/* Waits for the helper; returns the text it allocated (the caller frees it)
 * or NULL when the job came with its own. */
char *stager_wait(stager *s);

/* Stops and joins the helper; s must be idle (no begin without a wait). */
void stager_stop(stager *s);

#endif
