/*
 * cli_classify: `tandem classify` — the top labels of image files, with one
 * model load and one session for all of them.
 *
 * Each image is read whole (capped) and handed to the classifier
 * (include/tandem/classifier.h), the same code path as the proxy's and the
 * worker's, so the same model and labels give the same answer. An image that fails is
 * reported on stderr with its file name and the others still run; the exit
 * status is 1 if any failed, 2 on a usage error.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "clock.h"
#include "tandem/classifier.h"

/* Larger than any sane photo; the pixel cap is what bounds decoding. */
#define CLASSIFY_MAX_FILE_BYTES ((size_t)256 << 20)
#define CLASSIFY_MAX_TOP 1000

static void usage(FILE *f)
{
    fprintf(f,
            "usage: tandem classify --model FILE [--labels FILE] [--top K] [--threads N]\n"
            "                       [--backend dnnl|ref] [--timing] IMAGE...\n"
            "\n"
            "Prints the K most likely classes of each JPEG or PNG image:\n"
            "\n"
            "    chelsea.png: tiger cat\n"
            "      0.4213  tiger cat\n"
            "      0.3322  tabby\n"
            "\n"
            "a header line with the file and its best label, then K lines of score and\n"
            "label, best first. Scores are probabilities: a quantised output is\n"
            "dequantised, and softmax is applied to a model that outputs logits.\n"
            "\n"
            "  --model FILE    ONNX image classifier; its input shape picks the\n"
            "                  preprocessing, FILE.json may override it (see README)\n"
            "  --labels FILE   class names, one per line (default: ImageNet for 1000- and\n"
            "                  1001-class models, else \"class N\"); a file with one line\n"
            "                  fewer than the model has classes skips a leading background\n"
            "  --top K         labels per image, 1..%d (default 5)\n"
            "  --threads N     compute threads (default 0: all CPUs)\n"
            "  --backend B     dnnl (default, oneDNN) or ref (plain C reference kernels)\n"
            "  --timing        print decode+preprocess and inference times on stderr\n"
            "\n"
            "Exit status: 0 if every image was classified, 1 if any failed (each failure\n"
            "is named on stderr), 2 on a usage error.\n",
            CLASSIFY_MAX_TOP);
}

static int parse_int(const char *s, int lo, int hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return -1;
    *out = (int)v;
    return 0;
}

static int read_file(const char *path, void **data, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf = NULL;
    size_t cap = 1 << 16, n = 0;
    int rc = 0;

    if (!f) {
        snprintf(err, errlen, "%s", strerror(errno));
        return TDM_ERR_IO;
    }
    for (;;) {
        if (n == cap || !buf) {
            if (buf) cap *= 2;
            uint8_t *nb = realloc(buf, cap + 1);
            if (!nb) {
                snprintf(err, errlen, "out of memory reading the file");
                rc = TDM_ERR_NOMEM;
                goto out;
            }
            buf = nb;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n > CLASSIFY_MAX_FILE_BYTES) {
            snprintf(err, errlen, "file is larger than %zu bytes", CLASSIFY_MAX_FILE_BYTES);
            rc = TDM_ERR_LIMIT;
            goto out;
        }
        if (got == 0) break;
    }
    if (ferror(f)) {
        snprintf(err, errlen, "%s", strerror(errno));
        rc = TDM_ERR_IO;
        goto out;
    }
    *data = buf;
    *len = n;
    buf = NULL;
out:
    free(buf);
    fclose(f);
    return rc;
}

int cli_classify(int argc, char **argv)
{
    static const struct option opts[] = {
        {"model", required_argument, NULL, 'm'},   {"labels", required_argument, NULL, 'l'},
        {"top", required_argument, NULL, 'k'},     {"threads", required_argument, NULL, 't'},
        {"timing", no_argument, NULL, 'T'},        {"help", no_argument, NULL, 'h'},
        {"backend", required_argument, NULL, 'b'}, {NULL, 0, NULL, 0}};
    const char *model_path = NULL, *labels_path = NULL;
    int top = 5, threads = 0, timing = 0, c;
    tdm_backend backend = TDM_BACKEND_DNNL;

    optind = 1;
    while ((c = getopt_long(argc, argv, "m:l:k:t:b:Th", opts, NULL)) != -1) {
        switch (c) {
        case 'm':
            model_path = optarg;
            break;
        case 'l':
            labels_path = optarg;
            break;
        case 'k':
            if (parse_int(optarg, 1, CLASSIFY_MAX_TOP, &top)) {
                fprintf(stderr, "tandem classify: --top wants 1..%d, not '%s'\n", CLASSIFY_MAX_TOP,
                        optarg);
                return 2;
            }
            break;
        case 't':
            if (parse_int(optarg, 0, 1024, &threads)) {
                fprintf(stderr, "tandem classify: --threads wants 0..1024, not '%s'\n", optarg);
                return 2;
            }
            break;
        case 'T':
            timing = 1;
            break;
        case 'b':
            if (!strcmp(optarg, "dnnl")) {
                backend = TDM_BACKEND_DNNL;
            } else if (!strcmp(optarg, "ref")) {
                backend = TDM_BACKEND_REF;
            } else {
                fprintf(stderr, "tandem classify: --backend wants dnnl or ref, not '%s'\n", optarg);
                return 2;
            }
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (!model_path || optind >= argc) {
        fprintf(stderr, "tandem classify: %s\n\n",
                model_path ? "no image given" : "--model is required");
        usage(stderr);
        return 2;
    }

    tdm_classifier_options opt;
    tdm_classifier *clf = NULL;
    tdm_label_score *best = NULL;
    char err[512];
    int status = 1;

    tdm_classifier_options_init(&opt);
    opt.engine.threads = threads;
    opt.engine.backend = backend;
    opt.labels_path = labels_path;
    if (tdm_classifier_open(model_path, &opt, &clf, err, sizeof err) < 0) {
        /* the message already names the file */
        fprintf(stderr, "tandem classify: %s\n", err);
        goto out;
    }
    best = malloc(sizeof *best * (size_t)top);
    if (!best) {
        fprintf(stderr, "tandem classify: out of memory\n");
        goto out;
    }

    status = 0;
    for (int i = optind; i < argc; i++) {
        const char *path = argv[i];
        void *data = NULL;
        size_t len = 0;
        double t0 = mono_ms();
        int rc = read_file(path, &data, &len, err, sizeof err);
        if (!rc) rc = tdm_classifier_set_image(clf, data, len, err, sizeof err);
        free(data);
        double t1 = mono_ms();
        int n = rc ? rc : tdm_classifier_run(clf, top, best, err, sizeof err);
        double t2 = mono_ms();
        if (n < 0) {
            fprintf(stderr, "tandem classify: %s: %s\n", path, err);
            status = 1;
            continue;
        }
        printf("%s: %s\n", path, n > 0 ? best[0].label : "?");
        for (int k = 0; k < n; k++)
            printf("  %.4f  %s\n", best[k].score, best[k].label);
        if (timing)
            fprintf(stderr, "%s: read+decode+preprocess %.2f ms, inference %.2f ms\n", path,
                    t1 - t0, t2 - t1);
    }
    fflush(stdout);
out:
    free(best);
    tdm_classifier_close(clf);
    return status;
}
