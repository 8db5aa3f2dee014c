/*
 * A minimal test runner: each TEST is a function; a failed ASSERT prints
 * file:line with both values and marks the test failed; SKIP("why") ends a
 * test that cannot run here (a missing model file) without passing it.
 * main() runs every registered test (or those whose name contains argv[1])
 * and prints one "N passed, M failed" line, with ", K skipped" appended when
 * K > 0, exiting non-zero if anything failed.
 *
 * Each test runs in a forked child, so a crash, a sanitizer report or a hang
 * fails that test alone and the rest of the file still runs. The child is
 * killed after TEST_TIMEOUT seconds (default 120). TEST_FORK=0 runs the tests
 * in-process instead (for a debugger). State a file keeps across tests (a
 * redis-server started once) must be created in the parent, before main(),
 * and torn down only by the process that created it.
 *
 *     TEST(adds) { ASSERT_EQ(1 + 1, 2); }
 *     TEST_MAIN()
 */
#ifndef TANDEM_TEST_H
#define TANDEM_TEST_H

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef void (*test_fn)(int *failed);
struct test_case {
    const char *name;
    test_fn fn;
};

#define TEST_MAX 512
static struct test_case test_cases_[TEST_MAX];
static int test_count_;

#define TEST(name)                                                                   \
    static void test_##name(int *failed_);                                           \
    __attribute__((constructor)) static void test_register_##name(void)              \
    {                                                                                \
        if (test_count_ < TEST_MAX)                                                  \
            test_cases_[test_count_++] = (struct test_case){#name, test_##name};     \
    }                                                                                \
    static void test_##name(int *failed_)

#define TEST_FAIL_(...)                                                              \
    do {                                                                             \
        fprintf(stderr, "  %s:%d: ", __FILE__, __LINE__);                           \
        fprintf(stderr, __VA_ARGS__);                                                \
        fputc('\n', stderr);                                                         \
        *failed_ = 1;                                                                \
        return;                                                                      \
    } while (0)

/* *failed_ values: 0 passed, 1 failed, TEST_SKIPPED_ skipped. */
#define TEST_SKIPPED_ 2
/* Exit status of a child whose test skipped (automake's convention). */
#define TEST_SKIP_EXIT_ 77

#define SKIP(...)                                                                    \
    do {                                                                             \
        fprintf(stderr, "  skipped: ");                                              \
        fprintf(stderr, __VA_ARGS__);                                                \
        fputc('\n', stderr);                                                         \
        *failed_ = TEST_SKIPPED_;                                                    \
        return;                                                                      \
    } while (0)

#define ASSERT(cond)                                                                 \
    do {                                                                             \
        if (!(cond)) TEST_FAIL_("assertion failed: %s", #cond);                      \
    } while (0)

#define ASSERT_EQ(a, b)                                                              \
    do {                                                                             \
        long long a_ = (long long)(a), b_ = (long long)(b);                          \
        if (a_ != b_) TEST_FAIL_("%s == %s: %lld != %lld", #a, #b, a_, b_);          \
    } while (0)

#define ASSERT_NEAR(a, b, tol)                                                       \
    do {                                                                             \
        double a_ = (double)(a), b_ = (double)(b);                                   \
        if (!(fabs(a_ - b_) <= (tol)))                                               \
            TEST_FAIL_("%s ~ %s: %.9g vs %.9g (tol %g)", #a, #b, a_, b_, (double)(tol)); \
    } while (0)

#define ASSERT_STR_EQ(a, b)                                                          \
    do {                                                                             \
        const char *a_ = (a), *b_ = (b);                                             \
        if (!a_ || !b_ || strcmp(a_, b_) != 0)                                       \
            TEST_FAIL_("%s == %s: \"%s\" != \"%s\"", #a, #b, a_ ? a_ : "(null)",     \
                       b_ ? b_ : "(null)");                                          \
    } while (0)

/* Seconds from TEST_TIMEOUT, or 120 when unset or not a positive number. */
__attribute__((unused)) static int test_timeout_(void)
{
    const char *s = getenv("TEST_TIMEOUT");
    char *end;
    long v = s ? strtol(s, &end, 10) : 0;
    return s && *s && !*end && v > 0 && v <= 86400 ? (int)v : 120;
}

/* Runs one test in a child in its own process group, killed with the group
 * (a redis-server it started included) when the timeout passes. Returns the
 * test's *failed_ value; on a crash or timeout, 1 with the reason in why. */
__attribute__((unused)) static int test_run_forked_(const struct test_case *t, int timeout_s,
                                                   char *why, size_t why_len)
{
    sigset_t chld, old;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, &old); /* SIGCHLD is waited for, not handled */
    fflush(NULL);
    pid_t runner = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(why, why_len, "fork: %s", strerror(errno));
        sigprocmask(SIG_SETMASK, &old, NULL);
        return 1;
    }
    if (pid == 0) {
        setpgid(0, 0); /* out of the terminal's group: the runner ends it */
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* ...also when the runner is interrupted */
        if (getppid() != runner) _exit(1);
        sigprocmask(SIG_SETMASK, &old, NULL);
        int f = 0;
        t->fn(&f);
        /* exit(), not _exit(): destructors and the leak checker run here. */
        exit(f == TEST_SKIPPED_ ? TEST_SKIP_EXIT_ : f ? 1 : 0);
    }
    setpgid(pid, pid); /* also here, so the group exists before any kill */
    struct timespec end, now;
    clock_gettime(CLOCK_MONOTONIC, &end);
    end.tv_sec += timeout_s;
    int st = 0, timed_out = 0;
    for (;;) {
        pid_t w = waitpid(pid, &st, WNOHANG);
        if (w == pid) break;
        if (w < 0 && errno != EINTR) {
            snprintf(why, why_len, "waitpid: %s", strerror(errno));
            sigprocmask(SIG_SETMASK, &old, NULL);
            return 1;
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        long long left_ns = (end.tv_sec - now.tv_sec) * 1000000000LL + (end.tv_nsec - now.tv_nsec);
        if (left_ns <= 0) {
            timed_out = 1;
            kill(-pid, SIGKILL);
            waitpid(pid, &st, 0);
            break;
        }
        struct timespec step = {(time_t)(left_ns / 1000000000LL), (long)(left_ns % 1000000000LL)};
        sigtimedwait(&chld, NULL, &step);
    }
    sigprocmask(SIG_SETMASK, &old, NULL);
    if (timed_out) {
        snprintf(why, why_len, "timed out after %d s (TEST_TIMEOUT)", timeout_s);
        return 1;
    }
    if (WIFSIGNALED(st)) {
        snprintf(why, why_len, "killed by signal %d (%s)", WTERMSIG(st), strsignal(WTERMSIG(st)));
        return 1;
    }
    if (WEXITSTATUS(st) == 0) return 0;
    if (WEXITSTATUS(st) == TEST_SKIP_EXIT_) return TEST_SKIPPED_;
    if (WEXITSTATUS(st) != 1) snprintf(why, why_len, "exit status %d", WEXITSTATUS(st));
    return 1;
}

#define TEST_MAIN()                                                                  \
    int main(int argc, char **argv)                                                  \
    {                                                                                \
        int passed = 0, failed = 0, skipped = 0, timeout = test_timeout_();          \
        const char *fork_env = getenv("TEST_FORK");                                  \
        int in_process = fork_env && strcmp(fork_env, "0") == 0;                     \
        for (int i = 0; i < test_count_; i++) {                                      \
            if (argc > 1 && !strstr(test_cases_[i].name, argv[1])) continue;         \
            int f = 0;                                                               \
            char why[96] = "";                                                       \
            if (in_process)                                                          \
                test_cases_[i].fn(&f);                                               \
            else                                                                     \
                f = test_run_forked_(&test_cases_[i], timeout, why, sizeof why);     \
            const char *mark = f == TEST_SKIPPED_ ? "skip" : f ? "FAIL" : "ok  ";    \
            fprintf(stderr, "%s %s%s%s%s\n", mark, test_cases_[i].name,              \
                    why[0] ? " (" : "", why, why[0] ? ")" : "");                     \
            if (f == TEST_SKIPPED_) skipped++;                                       \
            else if (f) failed++;                                                    \
            else passed++;                                                           \
        }                                                                            \
        if (skipped)                                                                 \
            printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);  \
        else                                                                         \
            printf("%d passed, %d failed\n", passed, failed);                       \
        return failed ? 1 : 0;                                                       \
    }

#endif
