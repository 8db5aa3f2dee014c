/*
 * cli_classify: `tandem classify` — the top labels of image files, with one
 * model load and one session for all of them.
 *
 * Each image is read whole (capped), decoded and laid out for the model by
 * tdm_image_to_input, run, and ranked by tdm_topk. An image that fails is
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
#include "tandem/engine.h"
#include "tandem/image.h"

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
            "label, best first. Scores are the model's raw outputs (probabilities or\n"
            "logits; 0..255 for uint8 outputs).\n"
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

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
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

/* --labels: the file must name every class, or every class but a leading
 * background. */
static int replace_labels(tdm_preprocess *pp, const char *path, int64_t nclasses, char *err,
                          size_t errlen)
{
    tdm_labels *l;
    int rc = tdm_labels_load(path, &l, err, errlen);
    if (rc) return rc;
    int n = tdm_labels_count(l);
    if (n != nclasses && n != nclasses - 1) {
        snprintf(err, errlen, "%s has %d labels, the model has %lld classes", path, n,
                 (long long)nclasses);
        tdm_labels_free(l);
        return TDM_ERR_INVALID;
    }
    tdm_labels_free(pp->labels);
    pp->labels = l;
    pp->label_offset = n == nclasses ? 0 : 1;
    return 0;
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

    tdm_options opt;
    tdm_model *model = NULL;
    tdm_session *s = NULL;
    tdm_preprocess pp;
    tdm_tensor_info oi;
    tdm_label_score *best = NULL;
    void *in = NULL, *out = NULL;
    char err[512];
    int status = 1;

    memset(&pp, 0, sizeof pp);
    tdm_options_init(&opt);
    opt.threads = threads;
    opt.backend = backend;
    if (tdm_model_load(model_path, &opt, &model, err, sizeof err) < 0) {
        /* the engine's message already names the file */
        fprintf(stderr, "tandem classify: %s\n", err);
        goto out;
    }
    if (tdm_preprocess_for_model(model, model_path, &pp, err, sizeof err) < 0 ||
        tdm_session_create(model, 1, &s, err, sizeof err) < 0 ||
        tdm_session_output_info(s, &oi) < 0) {
        fprintf(stderr, "tandem classify: %s: %s\n", model_path, err);
        goto out;
    }
    size_t in_bytes = tdm_session_input_bytes(s), out_bytes = tdm_session_output_bytes(s);
    size_t esize = tdm_dtype_size(oi.dtype);
    if ((oi.dtype != TDM_DTYPE_FLOAT && oi.dtype != TDM_DTYPE_UINT8) || !esize ||
        out_bytes / esize > (size_t)1 << 24) {
        fprintf(stderr, "tandem classify: %s: output '%s' is %s, not class scores\n", model_path,
                oi.name ? oi.name : "?", tdm_dtype_name(oi.dtype));
        goto out;
    }
    int nclasses = (int)(out_bytes / esize);
    if (labels_path && replace_labels(&pp, labels_path, nclasses, err, sizeof err) < 0) {
        fprintf(stderr, "tandem classify: %s\n", err);
        goto out;
    }
    in = malloc(in_bytes);
    out = malloc(out_bytes);
    best = malloc(sizeof *best * (size_t)top);
    if (!in || !out || !best) {
        fprintf(stderr, "tandem classify: out of memory\n");
        goto out;
    }

    status = 0;
    for (int i = optind; i < argc; i++) {
        const char *path = argv[i];
        void *data = NULL;
        size_t len = 0;
        double t0 = now_ms();
        int rc = read_file(path, &data, &len, err, sizeof err);
        if (!rc) rc = tdm_image_to_input(data, len, &pp, in, in_bytes, err, sizeof err);
        free(data);
        double t1 = now_ms();
        if (!rc) {
            rc = tdm_session_run(s, in, in_bytes, out, out_bytes);
            if (rc) snprintf(err, sizeof err, "%s", tdm_session_error(s));
        }
        double t2 = now_ms();
        if (rc) {
            fprintf(stderr, "tandem classify: %s: %s\n", path, err);
            status = 1;
            continue;
        }
        int n = tdm_topk(&pp, out, oi.dtype, nclasses, top, best);
        printf("%s: %s\n", path, n > 0 ? best[0].label : "?");
        for (int k = 0; k < n; k++) {
            if (oi.dtype == TDM_DTYPE_UINT8)
                printf("  %6d  %s\n", (int)best[k].score, best[k].label);
            else
                printf("  %.4f  %s\n", best[k].score, best[k].label);
        }
        if (timing)
            fprintf(stderr, "%s: read+decode+preprocess %.2f ms, inference %.2f ms\n", path,
                    t1 - t0, t2 - t1);
    }
    fflush(stdout);
out:
    free(best);
    free(out);
    free(in);
    tdm_preprocess_clear(&pp);
    tdm_session_free(s);
    tdm_model_free(model);
    return status;
}
