/* Unit tests of config (environment table) and log (levels). */
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "tandem/engine.h"
#include "test.h"

static const char *const vars[] = {
    "PORT",           "REDIS_HOST",      "REDIS_PORT",       "REDIS_TIMEOUT_MS", "QUEUE_NAME",
    "MODEL_DIR",      "SYNC_MODEL_PATH", "ASYNC_MODEL_PATH", "LABELS_PATH",      "NUM_WORKERS",
    "SYNC_THREADS",   "ENGINE_THREADS",  "PRECISION",        "JOB_ID_LENGTH",    "JOB_TTL",
    "MAX_BODY_BYTES", "MAX_PIXELS",      "MAX_QUEUE",        "MAX_ATTEMPTS",     "HEARTBEAT_TTL",
    "LOG_LEVEL",      "REDIS_SENTINELS", "REDIS_PASSWORD",   "REDIS_USERNAME",   "REDIS_MIN_REPLICAS",
};

static void clear_env(void)
{
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        unsetenv(vars[i]);
}

TEST(defaults_match_the_seed)
{
    clear_env();
    struct config c;
    char err[256];
    ASSERT_EQ(config_load(CONFIG_ROLE_ALL, &c, err, sizeof err), 0);
    ASSERT_EQ(c.port, 8000);
    ASSERT_STR_EQ(c.redis_host, "127.0.0.1");
    ASSERT_EQ(c.redis_port, 6379);
    ASSERT_STR_EQ(c.queue_name, "queue:jobs");
    ASSERT_STR_EQ(c.sync_model_path, "models/mobilenet_v2.onnx");
    ASSERT_STR_EQ(c.async_model_path, "models/resnet50.onnx");
    ASSERT_EQ(c.num_workers, 2);
    ASSERT_EQ(c.job_id_length, 6);
    ASSERT_EQ(c.job_ttl, 3600);
    ASSERT_EQ(c.max_body_bytes, 20LL << 20);
    ASSERT_EQ(c.max_pixels, 64LL << 20);
    ASSERT_EQ(c.engine_threads, 1);
    ASSERT_EQ(c.precision, TDM_PRECISION_FP32);
    ASSERT_EQ(c.log_level, LOG_LEVEL_INFO);
    ASSERT_STR_EQ(c.labels_path, "");
    ASSERT(c.sync_threads >= 1);
    ASSERT_EQ(c.sync_threads, sysconf(_SC_NPROCESSORS_ONLN));
}

TEST(environment_overrides)
{
    clear_env();
    setenv("PORT", "8081", 1);
    setenv("REDIS_HOST", "redis", 1);
    setenv("MAX_BODY_BYTES", "512K", 1);
    setenv("PRECISION", "BF16", 1);
    setenv("LOG_LEVEL", "debug", 1);
    setenv("SYNC_THREADS", "3", 1);
    setenv("MAX_QUEUE", "0", 1);
    struct config c;
    char err[256];
    ASSERT_EQ(config_load(CONFIG_ROLE_PROXY, &c, err, sizeof err), 0);
    ASSERT_EQ(c.port, 8081);
    ASSERT_STR_EQ(c.redis_host, "redis");
    ASSERT_EQ(c.max_body_bytes, 512 * 1024);
    ASSERT_EQ(c.precision, TDM_PRECISION_BF16);
    ASSERT_EQ(c.log_level, LOG_LEVEL_DEBUG);
    ASSERT_EQ(c.sync_threads, 3);
    ASSERT_EQ(c.max_queue, 0);
    clear_env();
}

TEST(only_the_roles_variables_are_read)
{
    clear_env();
    setenv("NUM_WORKERS", "nonsense", 1); /* a worker variable: the proxy ignores it */
    struct config c;
    char err[256];
    ASSERT_EQ(config_load(CONFIG_ROLE_PROXY, &c, err, sizeof err), 0);
    ASSERT_EQ(c.num_workers, 2);
    ASSERT_EQ(config_load(CONFIG_ROLE_WORKER, &c, err, sizeof err), CONFIG_ERR_INVALID);
    ASSERT(strstr(err, "NUM_WORKERS") != NULL);
    clear_env();
}

static void expect_invalid(int *failed_, const char *var, const char *val, const char *needle)
{
    clear_env();
    setenv(var, val, 1);
    struct config c;
    c.port = -7;
    char err[256] = "";
    int rc = config_load(CONFIG_ROLE_ALL, &c, err, sizeof err);
    clear_env();
    if (rc != CONFIG_ERR_INVALID) TEST_FAIL_("%s=%s accepted", var, val);
    if (c.port != -7) TEST_FAIL_("%s=%s: cfg written on failure", var, val);
    if (!strstr(err, var) || !strstr(err, needle))
        TEST_FAIL_("%s=%s: message \"%s\" lacks \"%s\"", var, val, err, needle);
}

TEST(bad_values_are_refused_with_a_message)
{
    expect_invalid(failed_, "PORT", "0", "1 to 65535");
    if (*failed_) return;
    expect_invalid(failed_, "PORT", "80x", "integer");
    if (*failed_) return;
    expect_invalid(failed_, "PORT", "", "integer");
    if (*failed_) return;
    expect_invalid(failed_, "JOB_ID_LENGTH", "3", "4 to 32");
    if (*failed_) return;
    expect_invalid(failed_, "JOB_ID_LENGTH", "33", "4 to 32");
    if (*failed_) return;
    expect_invalid(failed_, "REDIS_PORT", "99999999999999999999", "integer");
    if (*failed_) return;
    expect_invalid(failed_, "MAX_BODY_BYTES", "10T", "suffix");
    if (*failed_) return;
    expect_invalid(failed_, "MAX_BODY_BYTES", "9000000000G", "integer");
    if (*failed_) return;
    expect_invalid(failed_, "REDIS_HOST", "", "non-empty");
    if (*failed_) return;
    expect_invalid(failed_, "PRECISION", "fp16", "fp32 or bf16");
    if (*failed_) return;
    expect_invalid(failed_, "LOG_LEVEL", "loud", "debug");
    if (*failed_) return;
    char big[2000];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = 0;
    expect_invalid(failed_, "SYNC_MODEL_PATH", big, "at most");
}

/* --help and --check-config print to stdout: keep the test output readable. */
static int mute_stdout(void)
{
    fflush(stdout);
    int saved = dup(STDOUT_FILENO);
    int nul = open("/dev/null", O_WRONLY);
    dup2(nul, STDOUT_FILENO);
    close(nul);
    return saved;
}

static void unmute_stdout(int saved)
{
    fflush(stdout);
    dup2(saved, STDOUT_FILENO);
    close(saved);
}

TEST(cli_help_and_check)
{
    int saved = mute_stdout();
    int rc_help, rc_check;
    clear_env();
    struct config c;
    char a0[] = "proxy", a_help[] = "--help", a_check[] = "--check-config",
         a_bad[] = "--frobnicate";
    char *help[] = {a0, a_help};
    char *check[] = {a0, a_check};
    int status = -7;
    ASSERT_EQ(config_cli(2, help, CONFIG_ROLE_PROXY, "test", &c, &rc_help), CONFIG_CLI_EXIT);
    ASSERT_EQ(config_cli(2, check, CONFIG_ROLE_PROXY, "test", &c, &rc_check), CONFIG_CLI_EXIT);
    unmute_stdout(saved);
    ASSERT_EQ(rc_help, 0);
    ASSERT_EQ(rc_check, 0);
    char *bad[] = {a0, a_bad};
    ASSERT_EQ(config_cli(2, bad, CONFIG_ROLE_PROXY, "test", &c, &status), CONFIG_CLI_EXIT);
    ASSERT_EQ(status, 2);
    setenv("PORT", "-1", 1);
    status = -7;
    ASSERT_EQ(config_cli(2, check, CONFIG_ROLE_PROXY, "test", &c, &status), CONFIG_CLI_EXIT);
    ASSERT_EQ(status, 2);
    char *run[] = {a0};
    status = -7;
    ASSERT_EQ(config_cli(1, run, CONFIG_ROLE_PROXY, "test", &c, &status), CONFIG_CLI_EXIT);
    ASSERT_EQ(status, 2);
    setenv("PORT", "9000", 1);
    status = -7;
    ASSERT_EQ(config_cli(1, run, CONFIG_ROLE_PROXY, "test", &c, &status), CONFIG_CLI_RUN);
    ASSERT_EQ(status, -7); /* untouched: the command goes on */
    ASSERT_EQ(c.port, 9000);
    clear_env();
}

TEST(print_writes_values_as_they_are_set)
{
    clear_env();
    setenv("LOG_LEVEL", "warn", 1);
    setenv("MAX_BODY_BYTES", "1M", 1);
    struct config c;
    char err[256];
    ASSERT_EQ(config_load(CONFIG_ROLE_ALL, &c, err, sizeof err), 0);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    config_print(f, CONFIG_ROLE_PROXY, &c);
    fclose(f);
    int ok = strstr(text, "LOG_LEVEL=warn\n") && strstr(text, "MAX_BODY_BYTES=1048576\n") &&
             strstr(text, "PRECISION=fp32\n") && !strstr(text, "NUM_WORKERS");
    free(text);
    clear_env();
    ASSERT(ok);
}

TEST(sentinel_lists_are_checked)
{
    expect_invalid(failed_, "REDIS_SENTINELS", "10.0.0.1", "not host:port");
    if (*failed_) return;
    expect_invalid(failed_, "REDIS_SENTINELS", "a:1,b:0", "entry 2");
    if (*failed_) return;
    expect_invalid(failed_, "REDIS_SENTINELS", "a:1,,b:2", "entry 2");
    if (*failed_) return;
    expect_invalid(failed_, "REDIS_SENTINELS", "a:26379x", "not host:port");
    if (*failed_) return;
    expect_invalid(failed_, "REDIS_MIN_REPLICAS", "17", "0 to 16");
    if (*failed_) return;
    clear_env();
    setenv("REDIS_SENTINELS", "10.0.0.1:26379,sentinel-b:26380,[::1]:26381", 1);
    struct config c;
    char err[256];
    ASSERT_EQ(config_load(CONFIG_ROLE_PROXY, &c, err, sizeof err), 0);
    ASSERT_STR_EQ(c.redis_sentinels, "10.0.0.1:26379,sentinel-b:26380,[::1]:26381");
    ASSERT_STR_EQ(c.redis_master_name, "mymaster");
    clear_env();
}

TEST(passwords_are_not_printed)
{
    clear_env();
    setenv("REDIS_PASSWORD", "hunter2-secret", 1);
    setenv("REDIS_USERNAME", "tandem", 1);
    struct config c;
    char err[256];
    ASSERT_EQ(config_load(CONFIG_ROLE_PROXY, &c, err, sizeof err), 0);
    ASSERT_STR_EQ(c.redis_password, "hunter2-secret");
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    config_print(f, CONFIG_ROLE_PROXY, &c);
    fclose(f);
    int ok = !strstr(text, "hunter2") && strstr(text, "REDIS_PASSWORD=(set, not shown)\n") &&
             strstr(text, "REDIS_USERNAME=tandem\n");
    free(text);
    clear_env();
    ASSERT(ok);
}

TEST(log_levels)
{
    int l = -1;
    ASSERT_EQ(log_level_parse("WARNING", &l), 0);
    ASSERT_EQ(l, LOG_LEVEL_WARN);
    ASSERT_EQ(log_level_parse("verbose", &l), -1);
    ASSERT_EQ(l, LOG_LEVEL_WARN);
    ASSERT_STR_EQ(log_level_name(LOG_LEVEL_ERROR), "ERROR");
    log_init("test", LOG_LEVEL_ERROR);
    int evaluated = 0;
    LOG(INFO, "filtered %d", ++evaluated);
    ASSERT_EQ(evaluated, 0); /* arguments of a filtered line are never evaluated */
    LOG(ERROR, "logged %d", ++evaluated);
    ASSERT_EQ(evaluated, 1);
    log_init("test", LOG_LEVEL_INFO);
}

TEST_MAIN()
