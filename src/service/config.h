/*
 * config: every setting of every role in one table (name, environment
 * variable, default, bounds, target field, roles, help), loaded from the
 * environment into a struct config.
 *
 *     struct config cfg;
 *     int status;
 *     if (config_cli(argc, argv, CONFIG_ROLE_PROXY, "serve the HTTP API", &cfg, &status) ==
 *         CONFIG_CLI_EXIT)
 *         return status;            // --help, --check-config or a bad value
 *
 * Only the variables of the given roles are read and validated; the other
 * fields keep their defaults. A bad value is refused with a message naming
 * the variable, the value and what is allowed.
 */
#ifndef TANDEM_CONFIG_H
#define TANDEM_CONFIG_H

#include <stdio.h>

#include "errors.h"

enum {
    CONFIG_ROLE_PROXY = 1,
    CONFIG_ROLE_WORKER = 2,
    CONFIG_ROLE_UP = 4, /* `tandem up`: starts redis, proxy and workers */
    CONFIG_ROLE_ALL = 7
};

/* What config_cli tells the command to do. */
enum { CONFIG_CLI_RUN = 0, CONFIG_CLI_EXIT = 1 };

#define CONFIG_ERR_INVALID (ERR_BASE_CONFIG - 1) /* a bad value (errors.h) */

#define CONFIG_PATH_MAX 1024
#define CONFIG_NAME_MAX 256

struct config {
    int port;                               /* PORT */
    char redis_host[CONFIG_NAME_MAX];       /* REDIS_HOST */
    int redis_port;                         /* REDIS_PORT */
    int redis_timeout_ms;                   /* REDIS_TIMEOUT_MS */
    char redis_username[CONFIG_NAME_MAX];   /* REDIS_USERNAME */
    char redis_password[CONFIG_NAME_MAX];   /* REDIS_PASSWORD */
    char redis_sentinels[CONFIG_PATH_MAX];  /* REDIS_SENTINELS; "" = plain REDIS_HOST */
    char redis_master_name[CONFIG_NAME_MAX]; /* REDIS_MASTER_NAME */
    char redis_sentinel_password[CONFIG_NAME_MAX]; /* REDIS_SENTINEL_PASSWORD */
    int redis_min_replicas;                 /* REDIS_MIN_REPLICAS; 0 = no WAIT */
    int redis_wait_timeout_ms;              /* REDIS_WAIT_TIMEOUT_MS */
    char queue_name[CONFIG_NAME_MAX];       /* QUEUE_NAME */
    char model_dir[CONFIG_PATH_MAX];        /* MODEL_DIR */
    char sync_model_path[CONFIG_PATH_MAX];  /* SYNC_MODEL_PATH */
    char async_model_path[CONFIG_PATH_MAX]; /* ASYNC_MODEL_PATH */
    char labels_path[CONFIG_PATH_MAX];      /* LABELS_PATH; "" = built-in ImageNet labels */
    int num_workers;                        /* NUM_WORKERS */
    int worker_nice;                        /* WORKER_NICE: nice value of the workers */
    int sync_threads;         /* SYNC_THREADS; 0 in the environment = CPU count, resolved on load */
    int engine_threads;       /* ENGINE_THREADS: compute threads per inference */
    int precision;            /* PRECISION: tdm_precision */
    int job_id_length;        /* JOB_ID_LENGTH */
    int job_ttl;              /* JOB_TTL, seconds */
    long long max_body_bytes; /* MAX_BODY_BYTES */
    long long max_pixels;     /* MAX_PIXELS */
    int max_image_side;       /* MAX_IMAGE_SIDE */
    int max_aspect_ratio;     /* MAX_ASPECT_RATIO */
    int max_decode_ms;        /* MAX_DECODE_MS, CPU time */
    int jpeg_max_scans;       /* JPEG_MAX_SCANS */
    long long jpeg_max_mem;   /* JPEG_MAX_MEMORY */
    long long png_max_chunk;  /* PNG_MAX_CHUNK */
    long long png_max_cache;  /* PNG_MAX_CHUNK_CACHE */
    long long max_queue;      /* MAX_QUEUE; 0 = unbounded */
    int max_attempts;         /* MAX_ATTEMPTS */
    int batch_max;            /* BATCH_MAX: jobs one worker runs as one batch */
    int heartbeat_ttl;        /* HEARTBEAT_TTL, seconds */
    int sse_max_streams;      /* SSE_MAX_STREAMS */
    int sse_heartbeat_s;      /* SSE_HEARTBEAT_S */
    int prefer_wait_max_s;    /* PREFER_WAIT_MAX_S; 0 = ignore Prefer: wait */
    int max_connections;        /* MAX_CONNECTIONS */
    int max_connections_per_ip; /* MAX_CONNECTIONS_PER_IP; 0 = no limit */
    int max_waiters;            /* MAX_WAITERS: held GET /job?wait= requests */
    int request_timeout_s;      /* REQUEST_TIMEOUT: whole request, headers and body */
    int drain_timeout_s;        /* DRAIN_TIMEOUT: shutdown drain, seconds */
    int max_worker_deaths;    /* MAX_WORKER_DEATHS */
    int image_keep_done;      /* IMAGE_KEEP_DONE, seconds; 0 = deleted once done */
    long long dead_letter_max; /* DEAD_LETTER_MAX */
    int dead_letter_age;      /* DEAD_LETTER_AGE, seconds */
    long long redis_maxmemory; /* REDIS_MAXMEMORY, bytes; 0 = no limit (tandem up) */
    char test_hook[CONFIG_NAME_MAX]; /* TANDEM_TEST_HOOK: tests only, "" in production */
    int log_level;            /* LOG_LEVEL: enum log_level */
    char webhook_allow[CONFIG_PATH_MAX];  /* WEBHOOK_ALLOW; "" = webhooks off */
    char webhook_secret[CONFIG_NAME_MAX]; /* WEBHOOK_SECRET: whsec_<base64> */
    int webhook_max_attempts;             /* WEBHOOK_MAX_ATTEMPTS */
    int webhook_backoff_ms;               /* WEBHOOK_BACKOFF_MS: first retry delay, doubling */
    int webhook_timeout_ms;               /* WEBHOOK_TIMEOUT_MS: one attempt, connect to answer */
    int webhook_threads;                  /* WEBHOOK_THREADS: delivery threads per proxy */
};

struct tdm_image_limits;

/* The image decoding limits (MAX_PIXELS, MAX_IMAGE_SIDE, ...) as the image
 * library takes them: proxy and worker decode with the same ones. */
void config_image_limits(const struct config *cfg, struct tdm_image_limits *out);

/* Fills every field with its default (sync_threads resolved to the CPU count). */
void config_defaults(struct config *cfg);

/* Defaults, then the environment's values for the variables of `roles`.
 * CONFIG_ERR_INVALID with a message in err on a bad value; cfg is written
 * only on success. */
int config_load(int roles, struct config *cfg, char *err, size_t errlen);

/* The table of variables of `roles`: name, default and help, one per line. */
void config_print_help(FILE *f, int roles);

/* Prints the effective values of `roles` (one NAME=value per line). */
void config_print(FILE *f, int roles, const struct config *cfg);

/* The usual start of a service subcommand. CONFIG_CLI_RUN: cfg is loaded and
 * the command goes on. CONFIG_CLI_EXIT: the command ends at once with the
 * process exit status *exit_status — 0 after --help (usage and the
 * variables) or --check-config (validates, prints the values), 2 for an
 * unknown argument or a bad value (reported on stderr). argv[0] is the
 * subcommand's name. */
int config_cli(int argc, char **argv, int roles, const char *summary, struct config *cfg,
               int *exit_status);

#endif
