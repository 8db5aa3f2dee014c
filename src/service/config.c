/*
 * config: the table below is the single place where a setting is declared.
 * Everything else (loading, validation, --help, --check-config) walks it, so
 * adding a variable is one line here and one field in struct config.
 *
 * Sizes accept a binary suffix (20M = 20 MiB) because MAX_BODY_BYTES and
 * MAX_PIXELS are natural to write that way; plain integers are exact.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "log.h"
#include "sentinel.h"
#include "tandem/engine.h"
#include "tandem/image.h"

/* OPT_SECRET: a string that --check-config does not print; OPT_HOSTPORTS: a
 * "host:port,..." list (empty allowed). */
enum opt_type { OPT_INT, OPT_SIZE, OPT_STR, OPT_SECRET, OPT_HOSTPORTS, OPT_LEVEL, OPT_PRECISION };

struct opt {
    const char *env;
    enum opt_type type;
    const char *def;
    long long min, max; /* OPT_INT/OPT_SIZE: bounds; OPT_STR: min 1 = must not be empty */
    size_t offset;      /* into struct config */
    size_t size;        /* of the target field (strings: capacity) */
    int roles;
    const char *help;
};

#define P CONFIG_ROLE_PROXY
#define W CONFIG_ROLE_WORKER
#define U CONFIG_ROLE_UP
#define FIELD(f) offsetof(struct config, f), sizeof(((struct config *)0)->f)

static const struct opt opts[] = {
    {"PORT", OPT_INT, "8000", 1, 65535, FIELD(port), P | U, "HTTP port of the proxy"},
    {"REDIS_HOST", OPT_STR, "127.0.0.1", 1, 0, FIELD(redis_host), P | W | U,
     "Redis host (the seed's compose file uses \"redis\"; 127.0.0.1 outside containers)"},
    {"REDIS_PORT", OPT_INT, "6379", 1, 65535, FIELD(redis_port), P | W | U, "Redis port"},
    {"REDIS_TIMEOUT_MS", OPT_INT, "1000", 10, 60000, FIELD(redis_timeout_ms), P | W | U,
     "Redis connect and command timeout (ms)"},
    {"REDIS_USERNAME", OPT_STR, "", 0, 0, FIELD(redis_username), P | W | U,
     "Redis ACL user (empty: the default user)"},
    {"REDIS_PASSWORD", OPT_SECRET, "", 0, 0, FIELD(redis_password), P | W | U,
     "Redis password, sent with AUTH (empty: none)"},
    {"REDIS_SENTINELS", OPT_HOSTPORTS, "", 0, 0, FIELD(redis_sentinels), P | W,
     "Sentinels as host:port,... (set: the master is found and followed through them, "
     "REDIS_HOST/REDIS_PORT are ignored)"},
    {"REDIS_MASTER_NAME", OPT_STR, "mymaster", 1, 0, FIELD(redis_master_name), P | W,
     "the master's name as the sentinels know it"},
    {"REDIS_SENTINEL_PASSWORD", OPT_SECRET, "", 0, 0, FIELD(redis_sentinel_password), P | W,
     "password of the sentinels (empty: none)"},
    {"REDIS_MIN_REPLICAS", OPT_INT, "0", 0, 16, FIELD(redis_min_replicas), P | W,
     "replicas that must hold a new job (and a result) before it counts (Redis WAIT; 0: off)"},
    {"REDIS_WAIT_TIMEOUT_MS", OPT_INT, "500", 10, 60000, FIELD(redis_wait_timeout_ms), P | W,
     "longest wait for REDIS_MIN_REPLICAS (ms); past it the job is refused with 503"},
    {"QUEUE_NAME", OPT_STR, "queue:jobs", 1, 0, FIELD(queue_name), P | W | U,
     "Redis list of pending job ids"},
    {"MODEL_DIR", OPT_STR, "models", 1, 0, FIELD(model_dir), P | W | U,
     "folder of the model files (`tandem models` fills it)"},
    {"SYNC_MODEL_PATH", OPT_STR, "models/mobilenet_v2.onnx", 1, 0, FIELD(sync_model_path), P | U,
     "fast model, run inline by the proxy"},
    {"ASYNC_MODEL_PATH", OPT_STR, "models/resnet50.onnx", 1, 0, FIELD(async_model_path), W | U,
     "slow model, run by the workers"},
    {"LABELS_PATH", OPT_STR, "", 0, 0, FIELD(labels_path), P | W | U,
     "class names, one per line (empty: built-in ImageNet-1k)"},
    {"NUM_WORKERS", OPT_INT, "2", 1, 256, FIELD(num_workers), W | U,
     "worker processes the supervisor keeps running"},
    {"SYNC_THREADS", OPT_INT, "0", 0, 256, FIELD(sync_threads), P | U,
     "sync inference threads in the proxy (0: one per CPU)"},
    {"WORKER_NICE", OPT_INT, "10", 0, 19, FIELD(worker_nice), W | U,
     "nice value of `tandem worker` and its workers (0: as the proxy), so the proxy's sync "
     "answers win the CPUs they share"},
    {"ENGINE_THREADS", OPT_INT, "1", 1, 256, FIELD(engine_threads), P | W | U,
     "compute threads per inference"},
    {"PRECISION", OPT_PRECISION, "fp32", 0, 0, FIELD(precision), P | W | U,
     "float model arithmetic: fp32 or bf16"},
    {"JOB_ID_LENGTH", OPT_INT, "6", 4, 32, FIELD(job_id_length), P | U,
     "characters of a job id ([a-z0-9])"},
    {"JOB_TTL", OPT_INT, "3600", 1, 30 * 86400, FIELD(job_ttl), P | W | U,
     "seconds image:, result: and job: keys live"},
    {"MAX_BODY_BYTES", OPT_SIZE, "20M", 1024, 1LL << 30, FIELD(max_body_bytes), P | U,
     "largest request body accepted (suffix K, M, G: binary)"},
    {"MAX_PIXELS", OPT_SIZE, "64M", 1, 1LL << 32, FIELD(max_pixels), P | W | U,
     "largest decoded image, width*height (decompression-bomb guard)"},
    {"MAX_IMAGE_SIDE", OPT_INT, "16384", 1, 1 << 30, FIELD(max_image_side), P | W | U,
     "largest image width or height (a 1 x 64M image passes MAX_PIXELS)"},
    {"MAX_ASPECT_RATIO", OPT_INT, "100", 1, 1 << 30, FIELD(max_aspect_ratio), P | W | U,
     "largest ratio of an image's longer side to its shorter side"},
    {"MAX_DECODE_MS", OPT_INT, "1000", 1, 3600000, FIELD(max_decode_ms), P | W | U,
     "CPU time one image decode may take (ms)"},
    {"JPEG_MAX_SCANS", OPT_INT, "100", 1, 100000, FIELD(jpeg_max_scans), P | W | U,
     "most scans of a progressive JPEG (each one a pass over the whole image)"},
    {"JPEG_MAX_MEMORY", OPT_SIZE, "100M", 1 << 20, 1LL << 40, FIELD(jpeg_max_mem), P | W | U,
     "libjpeg's memory for one image (progressive: 2 bytes a sample)"},
    {"PNG_MAX_CHUNK", OPT_SIZE, "8M", 1024, 1LL << 31, FIELD(png_max_chunk), P | W | U,
     "largest PNG chunk read, inflated (IDAT aside)"},
    {"PNG_MAX_CHUNK_CACHE", OPT_SIZE, "16M", 1024, 1LL << 32, FIELD(png_max_cache), P | W | U,
     "PNG ancillary chunks held per image, in all"},
    {"MAX_QUEUE", OPT_INT, "1000", 0, 100000000, FIELD(max_queue), P | U,
     "backlog above which new jobs are refused (0: no bound)"},
    {"MAX_ATTEMPTS", OPT_INT, "3", 1, 100, FIELD(max_attempts), W | U,
     "tries per job before it is failed and dead-lettered"},
    {"BATCH_MAX", OPT_INT, "1", 1, 32, FIELD(batch_max), W | U,
     "jobs a worker takes from a backlog and runs as one batch (1: one at a time)"},
    {"HEARTBEAT_TTL", OPT_INT, "10", 2, 3600, FIELD(heartbeat_ttl), W | U,
     "seconds a silent worker counts as alive"},
    {"SSE_MAX_STREAMS", OPT_INT, "256", 1, 65536, FIELD(sse_max_streams), P | U,
     "event streams (GET /job/{id}/events) open at once; past it 503"},
    {"SSE_HEARTBEAT_S", OPT_INT, "15", 1, 300, FIELD(sse_heartbeat_s), P | U,
     "seconds between heartbeat comments on an idle event stream"},
    {"PREFER_WAIT_MAX_S", OPT_INT, "30", 0, 300, FIELD(prefer_wait_max_s), P | U,
     "cap of `Prefer: wait=N` on POST /predict (0: the preference is ignored)"},
    {"MAX_CONNECTIONS", OPT_INT, "1024", 16, 1000000, FIELD(max_connections), P | U,
     "HTTP connections the proxy holds at once (past it new ones are refused)"},
    {"MAX_CONNECTIONS_PER_IP", OPT_INT, "256", 0, 1000000, FIELD(max_connections_per_ip), P | U,
     "HTTP connections from one client address (0: no limit; behind a reverse proxy all "
     "clients share its address)"},
    {"MAX_WAITERS", OPT_INT, "256", 1, 1000000, FIELD(max_waiters), P | U,
     "GET /job?wait= requests held at once, below MAX_CONNECTIONS so that the rest stay for "
     "other requests (past it wait= is answered at once)"},
    {"REQUEST_TIMEOUT", OPT_INT, "30", 1, 3600, FIELD(request_timeout_s), P | U,
     "seconds a client has to send a whole request, headers and body (not reset by each "
     "byte); then it is answered 408 or closed"},
    {"DRAIN_TIMEOUT", OPT_INT, "8", 0, 3600, FIELD(drain_timeout_s), P | U,
     "seconds the proxy finishes requests in flight after SIGTERM before it exits"},
    {"MAX_WORKER_DEATHS", OPT_INT, "3", 1, 100, FIELD(max_worker_deaths), W | U,
     "workers that may die while running one job before it is failed and dead-lettered"},
    {"IMAGE_KEEP_DONE", OPT_INT, "0", 0, 30 * 86400, FIELD(image_keep_done), W | U,
     "seconds image:{id} is kept once its job is done (0: deleted at once)"},
    {"DEAD_LETTER_MAX", OPT_INT, "10000", 1, 100000000, FIELD(dead_letter_max), W | U,
     "entries kept in the dead-letter list queue:dead (oldest dropped)"},
    {"DEAD_LETTER_AGE", OPT_INT, "86400", 1, 365 * 86400, FIELD(dead_letter_age), W | U,
     "seconds a queue:dead entry is kept"},
    {"REDIS_MAXMEMORY", OPT_SIZE, "512M", 0, 1LL << 40, FIELD(redis_maxmemory), U,
     "maxmemory of the redis-server `tandem up` starts, policy noeviction (0: no limit)"},
    {"TANDEM_TEST_HOOK", OPT_STR, "", 0, 0, FIELD(test_hook), W,
     "test hook, leave unset: kill:PREFIX (SIGKILL self) or sleep:PREFIX:MS on jobs whose id "
     "starts with PREFIX"},
    {"LOG_LEVEL", OPT_LEVEL, "info", 0, 0, FIELD(log_level), P | W | U,
     "debug, info, warn or error"},
    {"WEBHOOK_ALLOW", OPT_STR, "", 0, 0, FIELD(webhook_allow), P | U,
     "callback_url destinations: host[:port], IP[:port] or CIDR, comma-separated (empty: off)"},
    {"WEBHOOK_SECRET", OPT_SECRET, "", 0, 0, FIELD(webhook_secret), P | U,
     "webhook signing key, whsec_<base64 of 24-64 bytes> (needed with WEBHOOK_ALLOW)"},
    {"WEBHOOK_MAX_ATTEMPTS", OPT_INT, "6", 1, 50, FIELD(webhook_max_attempts), P | U,
     "webhook delivery attempts before it is given up"},
    {"WEBHOOK_BACKOFF_MS", OPT_INT, "1000", 10, 3600000, FIELD(webhook_backoff_ms), P | U,
     "delay before the first webhook retry (ms); doubles each retry, at most 1 h"},
    {"WEBHOOK_TIMEOUT_MS", OPT_INT, "5000", 100, 120000, FIELD(webhook_timeout_ms), P | U,
     "time limit of one webhook attempt (ms)"},
    {"WEBHOOK_THREADS", OPT_INT, "2", 1, 64, FIELD(webhook_threads), P | U,
     "webhook delivery threads per proxy"},
};

#undef P
#undef W
#undef U

static int cpu_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 256 ? 256 : (int)n;
}

static int parse_ll(const char *s, int allow_suffix, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || errno) return -1;
    long long mul = 1;
    if (allow_suffix && *end) {
        switch (*end) {
        case 'k':
        case 'K':
            mul = 1LL << 10;
            break;
        case 'm':
        case 'M':
            mul = 1LL << 20;
            break;
        case 'g':
        case 'G':
            mul = 1LL << 30;
            break;
        default:
            return -1;
        }
        end++;
        if (*end == 'i' || *end == 'I') end++;
        if (*end == 'b' || *end == 'B') end++;
    }
    if (*end) return -1;
    if (v > LLONG_MAX / mul || v < LLONG_MIN / mul) return -1;
    *out = v * mul;
    return 0;
}

static void store_int(void *field, size_t size, long long v)
{
    if (size == sizeof(long long))
        *(long long *)field = v;
    else
        *(int *)field = (int)v;
}

/* Parses one value into cfg; the message names what is allowed. */
static int apply(const struct opt *o, const char *val, struct config *cfg, char *err, size_t errlen)
{
    void *field = (char *)cfg + o->offset;
    long long v;
    int level;
    switch (o->type) {
    case OPT_INT:
    case OPT_SIZE:
        if (parse_ll(val, o->type == OPT_SIZE, &v) < 0 || v < o->min || v > o->max) {
            snprintf(err, errlen, "%s=\"%s\": expected an integer%s from %lld to %lld", o->env, val,
                     o->type == OPT_SIZE ? " (suffix K, M or G allowed)" : "", o->min, o->max);
            return CONFIG_ERR_INVALID;
        }
        store_int(field, o->size, v);
        return 0;
    case OPT_HOSTPORTS:
        if (*val && sentinel_list_valid(val, err, errlen)) {
            char why[160];
            snprintf(why, sizeof why, "%s", err);
            snprintf(err, errlen, "%s: %s", o->env, why);
            return CONFIG_ERR_INVALID;
        }
        /* a valid list is stored as a string */
        /* fall through */
    case OPT_STR:
    case OPT_SECRET:
        if (strlen(val) >= o->size || (o->min > 0 && !*val)) {
            snprintf(err, errlen, "%s=\"%.64s%s\": expected %s of at most %zu characters", o->env,
                     val, strlen(val) > 64 ? "..." : "",
                     o->min > 0 ? "a non-empty value" : "a value", o->size - 1);
            return CONFIG_ERR_INVALID;
        }
        memcpy(field, val, strlen(val) + 1);
        return 0;
    case OPT_LEVEL:
        if (log_level_parse(val, &level) < 0) {
            snprintf(err, errlen, "%s=\"%s\": expected debug, info, warn or error", o->env, val);
            return CONFIG_ERR_INVALID;
        }
        *(int *)field = level;
        return 0;
    case OPT_PRECISION:
        if (!strcasecmp(val, "fp32"))
            *(int *)field = TDM_PRECISION_FP32;
        else if (!strcasecmp(val, "bf16"))
            *(int *)field = TDM_PRECISION_BF16;
        else {
            snprintf(err, errlen, "%s=\"%s\": expected fp32 or bf16", o->env, val);
            return CONFIG_ERR_INVALID;
        }
        return 0;
    }
    snprintf(err, errlen, "%s: unknown option type", o->env);
    return CONFIG_ERR_INVALID;
}

void config_defaults(struct config *cfg)
{
    char err[256];
    memset(cfg, 0, sizeof *cfg);
    /* The defaults are in the table and valid by construction (test_config checks). */
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++)
        apply(&opts[i], opts[i].def, cfg, err, sizeof err);
    cfg->sync_threads = cpu_count();
}

int config_load(int roles, struct config *cfg, char *err, size_t errlen)
{
    struct config c;
    config_defaults(&c);
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) {
        if (!(opts[i].roles & roles)) continue;
        const char *val = getenv(opts[i].env);
        if (!val) continue;
        int rc = apply(&opts[i], val, &c, err, errlen);
        if (rc < 0) return rc;
    }
    if (c.sync_threads == 0) c.sync_threads = cpu_count();
    *cfg = c;
    return 0;
}

void config_print_help(FILE *f, int roles)
{
    fprintf(f, "environment:\n");
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) {
        const struct opt *o = &opts[i];
        if (!(o->roles & roles)) continue;
        fprintf(f, "  %-17s %s (default: %s)\n", o->env, o->help, *o->def ? o->def : "\"\"");
    }
}

void config_print(FILE *f, int roles, const struct config *cfg)
{
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) {
        const struct opt *o = &opts[i];
        if (!(o->roles & roles)) continue;
        const char *field = (const char *)cfg + o->offset;
        switch (o->type) {
        case OPT_INT:
        case OPT_SIZE:
            fprintf(f, "%s=%lld\n", o->env,
                    o->size == sizeof(long long) ? *(const long long *)field
                                                 : (long long)*(const int *)field);
            break;
        case OPT_STR:
        case OPT_HOSTPORTS:
            fprintf(f, "%s=%s\n", o->env, field);
            break;
        case OPT_SECRET:
            fprintf(f, "%s=%s\n", o->env, *field ? "(set, not shown)" : "");
            break;
        case OPT_LEVEL: {
            /* Lower case, as the variable is written. */
            static const char *const names[] = {"debug", "info", "warn", "error"};
            int l = *(const int *)field;
            fprintf(f, "%s=%s\n", o->env, l >= 0 && l <= 3 ? names[l] : "?");
        } break;
        case OPT_PRECISION:
            fprintf(f, "%s=%s\n", o->env,
                    *(const int *)field == TDM_PRECISION_BF16 ? "bf16" : "fp32");
            break;
        }
    }
}

int config_cli(int argc, char **argv, int roles, const char *summary, struct config *cfg,
               int *exit_status)
{
    const char *name = argc > 0 ? argv[0] : "tandem";
    int check = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: tandem %s [--check-config]\n\n%s\n\n", name, summary);
            printf("  --check-config    validate the environment, print the values, exit\n\n");
            config_print_help(stdout, roles);
            *exit_status = 0;
            return CONFIG_CLI_EXIT;
        }
        if (!strcmp(argv[i], "--check-config")) {
            check = 1;
            continue;
        }
        fprintf(stderr, "tandem %s: unknown argument '%s' (see --help)\n", name, argv[i]);
        *exit_status = 2;
        return CONFIG_CLI_EXIT;
    }
    char err[512];
    struct config c;
    if (config_load(roles, &c, err, sizeof err) < 0) {
        fprintf(stderr, "tandem %s: invalid configuration: %s\n", name, err);
        *exit_status = 2;
        return CONFIG_CLI_EXIT;
    }
    if (check) {
        config_print(stdout, roles, &c);
        *exit_status = 0;
        return CONFIG_CLI_EXIT;
    }
    *cfg = c;
    return CONFIG_CLI_RUN;
}

void config_image_limits(const struct config *cfg, struct tdm_image_limits *out)
{
    memset(out, 0, sizeof *out);
    out->max_pixels = (uint64_t)cfg->max_pixels;
    out->max_side = (uint32_t)cfg->max_image_side;
    out->max_aspect = (uint32_t)cfg->max_aspect_ratio;
    out->max_decode_ms = (uint32_t)cfg->max_decode_ms;
    out->jpeg_max_scans = (uint32_t)cfg->jpeg_max_scans;
    out->jpeg_max_memory = (uint64_t)cfg->jpeg_max_mem;
    out->png_max_chunk = (uint64_t)cfg->png_max_chunk;
    out->png_max_cache = (uint64_t)cfg->png_max_cache;
}
