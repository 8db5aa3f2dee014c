/*
 * A minimal test runner: each TEST is a function; a failed ASSERT prints
 * file:line with both values and marks the test failed; main() runs every
 * registered test and prints one "N passed, M failed" line, exiting non-zero
 * if anything failed.
 *
 *     TEST(adds) { ASSERT_EQ(1 + 1, 2); }
 *     TEST_MAIN()
 */
#ifndef TANDEM_TEST_H
#define TANDEM_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

#define TEST_MAIN()                                                                  \
    int main(int argc, char **argv)                                                  \
    {                                                                                \
        int passed = 0, failed = 0;                                                  \
        for (int i = 0; i < test_count_; i++) {                                      \
            if (argc > 1 && !strstr(test_cases_[i].name, argv[1])) continue;         \
            int f = 0;                                                               \
            test_cases_[i].fn(&f);                                                   \
            fprintf(stderr, "%s %s\n", f ? "FAIL" : "ok  ", test_cases_[i].name);    \
            if (f) failed++; else passed++;                                          \
        }                                                                            \
        printf("%d passed, %d failed\n", passed, failed);                           \
        return failed ? 1 : 0;                                                       \
    }

#endif
