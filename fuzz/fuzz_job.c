/*
 * libFuzzer target for the job record parser (queue_job.c's parse_job, through
 * queue_parse_job_reply): the bytes are a Redis (RESP) reply as GET's
 * script returns it, {HGETALL job:{id}, GET result:{id}, EXISTS image:{id}}.
 * Any bytes must give a parsed job or a clear refusal with a message, never
 * a crash, a leak or a hang; a parsed job has a status of its known set and
 * only NUL-terminated strings.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "queue.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    queue_job job;
    char err[256] = "";
    memset(&job, 0, sizeof job);
    int rc = queue_parse_job_reply((const char *)data, size, &job, err, sizeof err);
    if (rc) {
        if (!err[0]) abort();
        return 0;
    }
    static const char *const known[] = {"queued", "running", "done", "failed", "expired"};
    int status_ok = 0;
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        status_ok |= !strncmp(job.status, known[i], sizeof job.status);
    if (!status_ok) abort();
    const char *strs[] = {job.label,      job.error,      job.top5,      job.model,
                          job.sync_label, job.sync_model, job.sync_top5, job.worker};
    size_t total = 0;
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        if (strs[i]) total += strlen(strs[i]);
    if (total > size) abort(); /* every string came from the input */
    queue_job_clear(&job);
    return 0;
}
