/*
 * The classifier object (include/tandem/classifier.h) on the real int8
 * models in $TEST_DATA/models/st-int8 and a generated float model in
 * build/test-models: scores are probabilities whatever the output (a
 * quantised softmax, a float softmax, logits), the labels rule for
 * labels files, handles shared between threads agree with the one they
 * came from, and bad input is refused with a message.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tandem/classifier.h"
#include "test.h"

static void data_path(char *out, size_t cap, const char *rel)
{
    const char *d = getenv("TEST_DATA");
    snprintf(out, cap, "%s/%s", d && *d ? d : "data", rel);
}

#define V1 "models/st-int8/mobilenet_v1_0.5_128_quant.onnx"
#define V2 "models/st-int8/mobilenet_v2_1.0_224_int8_per_tensor.onnx"
#define F32 "build/test-models/mobilenetv2_op13.onnx"

static uint8_t *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = n > 0 ? malloc((size_t)n) : NULL;
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return b;
}

static tdm_classifier *open_model(const char *path, int data_rel, const char *labels, char *err,
                                  size_t errlen)
{
    char p[512], l[512];
    tdm_classifier_options opt;
    tdm_classifier_options_init(&opt);
    opt.engine.threads = 1;
    if (data_rel)
        data_path(p, sizeof p, path);
    else
        snprintf(p, sizeof p, "%s", path);
    if (labels) {
        data_path(l, sizeof l, labels);
        opt.labels_path = l;
    }
    tdm_classifier *c = NULL;
    return tdm_classifier_open(p, &opt, &c, err, errlen) ? NULL : c;
}

/* Classifies chelsea.png; the top 5 into top, the count returned. */
static int chelsea(tdm_classifier *c, tdm_label_score *top)
{
    char path[512], err[256];
    size_t len;
    data_path(path, sizeof path, "images/chelsea.png");
    uint8_t *img = read_all(path, &len);
    if (!img) return -1;
    int n = tdm_classifier_classify(c, img, len, 5, top, err, sizeof err);
    if (n < 0) fprintf(stderr, "  %s\n", err);
    free(img);
    return n;
}

static int probabilities(const tdm_label_score *top, int n)
{
    double sum = 0;
    for (int i = 0; i < n; i++) {
        if (!(top[i].score >= 0 && top[i].score <= 1)) return 0;
        if (i && top[i].score > top[i - 1].score) return 0;
        sum += top[i].score;
    }
    return n == 5 && sum <= 1 + 1e-4;
}

static int is_cat(const char *s)
{
    return !strcmp(s, "tabby") || !strcmp(s, "tiger cat") || !strcmp(s, "Egyptian cat");
}

TEST(quantised_softmax_is_dequantised)
{
    char err[512] = "";
    tdm_classifier *c = open_model(V1, 1, NULL, err, sizeof err);
    if (!c) TEST_FAIL_("%s", err);
    tdm_classifier_info info;
    tdm_classifier_get_info(c, &info);
    ASSERT_EQ(info.nclasses, 1001);
    ASSERT_EQ(info.label_offset, 1);
    ASSERT_EQ(info.scores, TDM_SCORES_PROBABILITIES);
    ASSERT_EQ(info.output_dtype, TDM_DTYPE_UINT8);
    ASSERT_STR_EQ(info.model_name, "mobilenet_v1_0.5_128_quant.onnx");
    tdm_label_score top[5];
    ASSERT_EQ(chelsea(c, top), 5);
    ASSERT(is_cat(top[0].label));
    ASSERT(probabilities(top, 5));
    /* The output step is 1/256: every score is a multiple of it. */
    for (int i = 0; i < 5; i++)
        ASSERT_NEAR(top[i].score * 256, rintf(top[i].score * 256), 1e-3);
    tdm_classifier_close(c);
}

TEST(float_softmax_and_logits)
{
    char err[512] = "";
    tdm_classifier *c = open_model(V2, 1, NULL, err, sizeof err);
    if (!c) TEST_FAIL_("%s", err);
    tdm_classifier_info info;
    tdm_classifier_get_info(c, &info);
    ASSERT_EQ(info.scores, TDM_SCORES_PROBABILITIES);
    ASSERT_STR_EQ(tdm_scores_name(info.scores), "probabilities");
    tdm_label_score top[5];
    ASSERT_EQ(chelsea(c, top), 5);
    ASSERT(is_cat(top[0].label));
    ASSERT(probabilities(top, 5));
    tdm_classifier_close(c);

    if (access(F32, R_OK)) {
        SKIP("logits part: run `make test-models`");
    }
    c = open_model(F32, 0, NULL, err, sizeof err);
    if (!c) TEST_FAIL_("%s", err);
    tdm_classifier_get_info(c, &info);
    ASSERT_EQ(info.scores, TDM_SCORES_SOFTMAX);
    ASSERT_STR_EQ(tdm_scores_name(info.scores), "softmax");
    ASSERT_EQ(chelsea(c, top), 5);
    ASSERT(probabilities(top, 5));
    tdm_classifier_close(c);
}

TEST(labels_file_rule)
{
    char err[512] = "";
    tdm_label_score a[5], b[5], d[5];
    /* 1001 names (background first) and 1000 names: the same labels. */
    tdm_classifier *c1 = open_model(V1, 1, "models/st-int8/labels_imagenet.txt", err, sizeof err);
    if (!c1) TEST_FAIL_("%s", err);
    tdm_classifier *c2 =
        open_model(V1, 1, "models/st-int8/labels_imagenet_2012.txt", err, sizeof err);
    if (!c2) TEST_FAIL_("%s", err);
    tdm_classifier *c3 = open_model(V1, 1, NULL, err, sizeof err);
    if (!c3) TEST_FAIL_("%s", err);
    tdm_classifier_info info;
    tdm_classifier_get_info(c1, &info);
    ASSERT_EQ(info.label_offset, 0);
    tdm_classifier_get_info(c2, &info);
    ASSERT_EQ(info.label_offset, 1);
    ASSERT_EQ(chelsea(c1, a), 5);
    ASSERT_EQ(chelsea(c2, b), 5);
    ASSERT_EQ(chelsea(c3, d), 5);
    for (int i = 0; i < 5; i++) {
        ASSERT_STR_EQ(a[i].label, b[i].label);
        ASSERT_STR_EQ(a[i].label, d[i].label);
        ASSERT_EQ(a[i].index, d[i].index);
    }
    tdm_classifier_close(c1);
    tdm_classifier_close(c2);
    tdm_classifier_close(c3);

    /* 1001 names on the 1000-class model: refused, naming both counts. */
    ASSERT(!open_model(V2, 1, "models/st-int8/labels_imagenet.txt", err, sizeof err));
    ASSERT(strstr(err, "1001 labels") && strstr(err, "1000 classes"));
    ASSERT(!open_model(V2, 1, "models/st-int8/no-such-labels.txt", err, sizeof err));
    ASSERT(strstr(err, "no-such-labels.txt"));
}

TEST(shared_handles_agree)
{
    char err[512] = "";
    tdm_classifier *c = open_model(V2, 1, NULL, err, sizeof err);
    if (!c) TEST_FAIL_("%s", err);
    tdm_classifier *s = NULL;
    ASSERT_EQ(tdm_classifier_share(c, &s, err, sizeof err), 0);
    tdm_label_score a[5], b[5];
    ASSERT_EQ(chelsea(c, a), 5);
    /* The first handle may go: the model lives while a handle does. */
    tdm_classifier_close(c);
    ASSERT_EQ(chelsea(s, b), 5);
    for (int i = 0; i < 5; i++) {
        ASSERT_EQ(a[i].index, b[i].index);
        ASSERT_NEAR(a[i].score, b[i].score, 1e-6);
    }
    ASSERT(is_cat(b[0].label));
    tdm_classifier_close(s);
}

TEST(bad_input_refused)
{
    char err[512] = "";
    tdm_classifier *c = open_model(V1, 1, NULL, err, sizeof err);
    if (!c) TEST_FAIL_("%s", err);
    tdm_label_score top[5];
    ASSERT_EQ(tdm_classifier_run(c, 5, top, err, sizeof err), TDM_ERR_INVALID);
    ASSERT_EQ(tdm_classifier_classify(c, "not an image", 12, 5, top, err, sizeof err),
              TDM_ERR_IMAGE);
    tdm_classifier_close(c);
    ASSERT(!open_model("models/st-int8/LICENSE", 1, NULL, err, sizeof err));
    ASSERT(strstr(err, "LICENSE"));
}

static const char *const batch_images[] = {
    "images/chelsea.png", "images/dog.jpg",    "images/eagle.jpg",    "images/giraffe.jpg",
    "images/rocket.jpg",  "images/coffee.png", "images/astronaut.png"};
#define NBATCH ((int)(sizeof batch_images / sizeof batch_images[0]))

/* Seven images in one batch (run as 4 + 2 + 1) rank as they do one at a
 * time, within tol, on a model with a dynamic batch axis. */
static void batch_equals_single(int *failed_, const char *model, int data_rel, double tol)
{
    char err[512] = "", path[512];
    tdm_classifier *c = open_model(model, data_rel, NULL, err, sizeof err);
    if (!c) TEST_FAIL_("%s", err);
    int allowed = 0;
    ASSERT_EQ(tdm_classifier_set_batch(c, 8, &allowed, err, sizeof err), 0);
    ASSERT_EQ(allowed, 8);
    tdm_label_score one[NBATCH][5], many[5];
    uint8_t *img[NBATCH];
    size_t len[NBATCH];
    for (int i = 0; i < NBATCH; i++) {
        data_path(path, sizeof path, batch_images[i]);
        img[i] = read_all(path, &len[i]);
        ASSERT(img[i]);
        ASSERT_EQ(tdm_classifier_classify(c, img[i], len[i], 5, one[i], err, sizeof err), 5);
    }
    /* Slot 0 is the image of tdm_classifier_classify: the slots are set after. */
    for (int i = 0; i < NBATCH; i++) {
        ASSERT_EQ(tdm_classifier_set_image_at(c, i, img[i], len[i], err, sizeof err), 0);
        free(img[i]);
    }
    ASSERT_EQ(tdm_classifier_run_batch(c, NBATCH, err, sizeof err), 0);
    for (int i = 0; i < NBATCH; i++) {
        ASSERT_EQ(tdm_classifier_topk_at(c, i, 5, many, err, sizeof err), 5);
        ASSERT_EQ(many[0].index, one[i][0].index);
        for (int k = 0; k < 5; k++)
            ASSERT_NEAR(many[k].score, one[i][k].score, tol);
    }
    /* The batch-1 calls still work after a batch, on slot 0. */
    tdm_label_score top[5];
    ASSERT_EQ(chelsea(c, top), 5);
    ASSERT_EQ(top[0].index, one[0][0].index);
    tdm_classifier_close(c);
}

TEST(batch_equals_single_int8)
{
    batch_equals_single(failed_, V2, 1, 1e-3);
}

TEST(batch_equals_single_f32)
{
    if (access(F32, R_OK)) SKIP("%s missing (make test-models)", F32);
    batch_equals_single(failed_, F32, 0, 1e-4);
}

TEST(batch_misuse_refused)
{
    char err[512] = "";
    tdm_classifier *c = open_model(V2, 1, NULL, err, sizeof err);
    if (!c) TEST_FAIL_("%s", err);
    int allowed = 0;
    tdm_label_score top[5];
    ASSERT_EQ(tdm_classifier_set_batch(c, 0, &allowed, err, sizeof err), TDM_ERR_INVALID);
    ASSERT_EQ(tdm_classifier_set_batch(c, 4, &allowed, err, sizeof err), 0);
    ASSERT_EQ(allowed, 4);
    ASSERT_EQ(tdm_classifier_set_image_at(c, 4, "x", 1, err, sizeof err), TDM_ERR_INVALID);
    ASSERT_EQ(tdm_classifier_set_image_at(c, 1, "not an image", 12, err, sizeof err),
              TDM_ERR_IMAGE);
    ASSERT_EQ(tdm_classifier_run_batch(c, 2, err, sizeof err), TDM_ERR_INVALID);
    ASSERT(strstr(err, "slot 0 has no image"));
    ASSERT_EQ(tdm_classifier_run_batch(c, 5, err, sizeof err), TDM_ERR_INVALID);
    ASSERT_EQ(tdm_classifier_topk_at(c, 0, 5, top, err, sizeof err), TDM_ERR_INVALID);
    /* A smaller batch again frees the larger sessions. */
    ASSERT_EQ(tdm_classifier_set_batch(c, 2, &allowed, err, sizeof err), 0);
    ASSERT_EQ(allowed, 2);
    ASSERT_EQ(chelsea(c, top), 5);
    ASSERT(is_cat(top[0].label));
    tdm_classifier_close(c);
}

/* MobileNetV1's input is [1,128,128,3]: one image at a time, said in err. */
TEST(fixed_batch_stays_one)
{
    char err[512] = "";
    tdm_classifier *c = open_model(V1, 1, NULL, err, sizeof err);
    if (!c) TEST_FAIL_("%s", err);
    int allowed = 0;
    ASSERT_EQ(tdm_classifier_set_batch(c, 4, &allowed, err, sizeof err), 0);
    ASSERT_EQ(allowed, 1);
    ASSERT(strstr(err, "fixes the batch to 1"));
    ASSERT_EQ(tdm_classifier_set_image_at(c, 1, "x", 1, err, sizeof err), TDM_ERR_INVALID);
    tdm_label_score top[5];
    ASSERT_EQ(chelsea(c, top), 5);
    ASSERT(is_cat(top[0].label));
    tdm_classifier_close(c);
}

TEST_MAIN()
