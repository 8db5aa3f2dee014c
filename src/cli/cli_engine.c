/*
 * cli_engine: `tandem run-model` (one inference on raw bytes, for
 * conformance tests against ONNX Runtime) and `tandem bench` (latency
 * figures as one JSON object, for the benchmark scripts). Other tools drive
 * both with exact argument forms; see usage_run() and usage_bench().
 */
#include <errno.h>
#include <limits.h>
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

#include "cli.h"
#include "clock.h"
#include "tandem/engine.h"

typedef struct cli_opts {
    const char *model, *input, *output;
    int threads, iterations, batch;
    tdm_precision precision;
    tdm_backend backend;
    bool help;
} cli_opts;

static void usage_run(FILE *f)
{
    fprintf(f,
            "usage: tandem run-model --model FILE --input IN.bin --output OUT.bin\n"
            "                        [--threads N] [--precision fp32|bf16] [--backend dnnl|ref]\n"
            "                        [--batch B]\n"
            "\n"
            "Runs the model once. IN.bin holds the raw bytes of the model's first input at\n"
            "batch 1 (or B), in its own dtype and layout (the size must match exactly);\n"
            "OUT.bin receives the raw bytes of its first output.\n"
            "\n"
            "  --threads N      compute threads (default 0: all CPUs)\n"
            "  --batch B        batch size (default 1; the model's batch must be free)\n"
            "  --precision P    fp32 (default) or bf16 (convolutions and inner products)\n"
            "  --backend B      dnnl (default, oneDNN) or ref (plain C reference kernels)\n");
}

static void usage_bench(FILE *f)
{
    fprintf(f,
            "usage: tandem bench --model FILE [--threads N] [--iterations K] [--batch B]\n"
            "                    [--precision fp32|bf16] [--backend dnnl|ref]\n"
            "\n"
            "Times the model on random input and prints one JSON object: model, threads,\n"
            "batch, precision, backend, iterations, p50_ms, min_ms, mean_ms, load_ms (model\n"
            "load and session creation), peak_rss_mb, isa (the highest instruction set\n"
            "oneDNN dispatches to on this CPU: avx512_core_vnni, avx512_core_bf16,\n"
            "avx512_core_amx, ...). Warm-up runs are not counted.\n"
            "\n"
            "  --threads N      compute threads (default 0: all CPUs)\n"
            "  --iterations K   timed runs (default 50)\n"
            "  --batch B        batch size (default 1)\n"
            "  --precision P    fp32 (default) or bf16\n"
            "  --backend B      dnnl (default) or ref\n");
}

static bool parse_int(const char *s, int lo, int hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return false;
    *out = (int)v;
    return true;
}

/* Parses the options both commands share (and run-model's files); returns 0
 * or 2 after a message. */
static int parse(int argc, char **argv, bool bench, cli_opts *o)
{
    memset(o, 0, sizeof *o);
    o->iterations = 50;
    o->batch = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            o->help = true;
            return 0;
        }
        if (i + 1 >= argc || strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "tandem %s: unexpected argument '%s'\n", argv[0], a);
            return 2;
        }
        const char *v = argv[++i];
        bool ok = true;
        if (!strcmp(a, "--model")) {
            o->model = v;
        } else if (!bench && !strcmp(a, "--input")) {
            o->input = v;
        } else if (!bench && !strcmp(a, "--output")) {
            o->output = v;
        } else if (!strcmp(a, "--threads")) {
            ok = parse_int(v, 0, 1024, &o->threads);
        } else if (bench && !strcmp(a, "--iterations")) {
            ok = parse_int(v, 1, 1000000, &o->iterations);
        } else if (!strcmp(a, "--batch")) {
            ok = parse_int(v, 1, 4096, &o->batch);
        } else if (!strcmp(a, "--precision")) {
            ok = !strcmp(v, "fp32") || !strcmp(v, "bf16");
            o->precision = !strcmp(v, "bf16") ? TDM_PRECISION_BF16 : TDM_PRECISION_FP32;
        } else if (!strcmp(a, "--backend")) {
            ok = !strcmp(v, "dnnl") || !strcmp(v, "ref");
            o->backend = !strcmp(v, "ref") ? TDM_BACKEND_REF : TDM_BACKEND_DNNL;
        } else {
            fprintf(stderr, "tandem %s: unknown option '%s'\n", argv[0], a);
            return 2;
        }
        if (!ok) {
            fprintf(stderr, "tandem %s: bad value '%s' for %s\n", argv[0], v, a);
            return 2;
        }
    }
    if (!o->model || (!bench && (!o->input || !o->output))) {
        fprintf(stderr, "tandem %s: missing %s (see --help)\n", argv[0],
                !o->model ? "--model" : !o->input ? "--input" : "--output");
        return 2;
    }
    return 0;
}

/* Loads the model and creates a session; prints the error and returns 1 on
 * failure. */
static int open_model(const cli_opts *o, const char *cmd, int batch, tdm_model **m,
                      tdm_session **s)
{
    char err[512];
    tdm_options opt;
    tdm_options_init(&opt);
    opt.threads = o->threads;
    opt.precision = o->precision;
    opt.backend = o->backend;
    int rc = tdm_model_load(o->model, &opt, m, err, sizeof err);
    if (rc) {
        fprintf(stderr, "tandem %s: %s\n", cmd, err);
        return 1;
    }
    rc = tdm_session_create(*m, batch, s, err, sizeof err);
    if (rc) {
        fprintf(stderr, "tandem %s: %s: %s\n", cmd, o->model, err);
        tdm_model_free(*m);
        *m = NULL;
        return 1;
    }
    return 0;
}

/* Reads exactly want bytes from path; any other size is an error. */
static int read_exact(const char *path, void *buf, size_t want)
{
    struct stat st;
    FILE *f = fopen(path, "rb");
    int rc = 1;
    if (!f) {
        fprintf(stderr, "tandem run-model: %s: %s\n", path, strerror(errno));
        return 1;
    }
    if (fstat(fileno(f), &st) < 0 || !S_ISREG(st.st_mode)) {
        fprintf(stderr, "tandem run-model: %s: not a regular file\n", path);
        goto out;
    }
    if ((uint64_t)st.st_size != want) {
        fprintf(stderr, "tandem run-model: %s is %lld bytes; the model's input takes %zu\n", path,
                (long long)st.st_size, want);
        goto out;
    }
    if (fread(buf, 1, want, f) != want) {
        fprintf(stderr, "tandem run-model: %s: short read\n", path);
        goto out;
    }
    rc = 0;
out:
    fclose(f);
    return rc;
}

int cli_run_model(int argc, char **argv)
{
    cli_opts o;
    tdm_model *m = NULL;
    tdm_session *s = NULL;
    void *in = NULL, *out = NULL;
    int rc = parse(argc, argv, false, &o);
    if (rc) return rc;
    if (o.help) {
        usage_run(stdout);
        return 0;
    }
    if ((rc = open_model(&o, "run-model", o.batch, &m, &s))) return rc;
    size_t nin = tdm_session_input_bytes(s), nout = tdm_session_output_bytes(s);
    in = malloc(nin ? nin : 1);
    out = malloc(nout ? nout : 1);
    rc = 1;
    if (!in || !out) {
        fprintf(stderr, "tandem run-model: out of memory\n");
        goto out;
    }
    if (read_exact(o.input, in, nin)) goto out;
    if (tdm_session_run(s, in, nin, out, nout)) {
        fprintf(stderr, "tandem run-model: %s\n", tdm_session_error(s));
        goto out;
    }
    FILE *f = fopen(o.output, "wb");
    if (!f) {
        fprintf(stderr, "tandem run-model: %s: %s\n", o.output, strerror(errno));
        goto out;
    }
    bool ok = fwrite(out, 1, nout, f) == nout;
    if (fclose(f) != 0) ok = false;
    if (!ok) {
        fprintf(stderr, "tandem run-model: %s: write failed\n", o.output);
        goto out;
    }
    rc = 0;
out:
    free(in);
    free(out);
    tdm_session_free(s);
    tdm_model_free(m);
    return rc;
}

/* Random input in the input's dtype: floats in [-1, 1), integers over a
 * small range, uint8 over its whole range. */
static void random_input(tdm_dtype dt, void *buf, size_t bytes)
{
    uint32_t x = 12345;
    size_t esz = tdm_dtype_size(dt), n = esz ? bytes / esz : 0;
    for (size_t i = 0; i < n; i++) {
        x = x * 1664525u + 1013904223u;
        uint32_t r = x >> 8;
        switch (dt) {
        case TDM_DTYPE_FLOAT:
            ((float *)buf)[i] = (float)r / (float)(1u << 23) - 1.0f;
            break;
        case TDM_DTYPE_UINT8:
            ((uint8_t *)buf)[i] = (uint8_t)r;
            break;
        case TDM_DTYPE_INT8:
            ((int8_t *)buf)[i] = (int8_t)(r % 256 - 128);
            break;
        case TDM_DTYPE_INT32:
            ((int32_t *)buf)[i] = (int32_t)(r % 16);
            break;
        case TDM_DTYPE_INT64:
            ((int64_t *)buf)[i] = (int64_t)(r % 16);
            break;
        default:
            ((uint8_t *)buf)[i * esz] = (uint8_t)(r & 1);
            break;
        }
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Writes s as a JSON string. */
static void json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

int cli_bench(int argc, char **argv)
{
    cli_opts o;
    tdm_model *m = NULL;
    tdm_session *s = NULL;
    void *in = NULL, *out = NULL;
    double *t = NULL;
    int rc = parse(argc, argv, true, &o);
    if (rc) return rc;
    if (o.help) {
        usage_bench(stdout);
        return 0;
    }
    double t0 = mono_ms();
    if ((rc = open_model(&o, "bench", o.batch, &m, &s))) return rc;
    double load_ms = mono_ms() - t0;
    size_t nin = tdm_session_input_bytes(s), nout = tdm_session_output_bytes(s);
    tdm_tensor_info ii;
    tdm_session_input_info(s, &ii);
    in = malloc(nin ? nin : 1);
    out = malloc(nout ? nout : 1);
    t = malloc((size_t)o.iterations * sizeof *t);
    rc = 1;
    if (!in || !out || !t) {
        fprintf(stderr, "tandem bench: out of memory\n");
        goto out;
    }
    random_input(ii.dtype, in, nin);
    int warmup = o.iterations / 10 < 3 ? 3 : o.iterations / 10;
    for (int i = 0; i < warmup + o.iterations; i++) {
        double a = mono_ms();
        if (tdm_session_run(s, in, nin, out, nout)) {
            fprintf(stderr, "tandem bench: %s\n", tdm_session_error(s));
            goto out;
        }
        if (i >= warmup) t[i - warmup] = mono_ms() - a;
    }
    double sum = 0;
    for (int i = 0; i < o.iterations; i++)
        sum += t[i];
    qsort(t, (size_t)o.iterations, sizeof *t, cmp_double);
    double p50 = o.iterations % 2 ? t[o.iterations / 2]
                                  : (t[o.iterations / 2 - 1] + t[o.iterations / 2]) / 2;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    int threads = o.threads ? o.threads : omp_get_num_procs();
    /* Which kernels oneDNN picks (e.g. bf16 with or without AMX) decides
     * the figures, so they can only be compared between runs that name it. */
    const char *isa = dnnl_cpu_isa2str(dnnl_get_effective_cpu_isa());
    if (!strncmp(isa, "cpu_isa_", 8)) isa += 8;
    printf("{\"model\": ");
    json_str(o.model);
    printf(", \"threads\": %d, \"batch\": %d, \"precision\": \"%s\", \"backend\": \"%s\", "
           "\"iterations\": %d, \"p50_ms\": %.4f, \"min_ms\": %.4f, \"mean_ms\": %.4f, "
           "\"load_ms\": %.3f, \"peak_rss_mb\": %.1f, \"isa\": \"%s\"}\n",
           threads, o.batch, o.precision == TDM_PRECISION_BF16 ? "bf16" : "fp32",
           o.backend == TDM_BACKEND_REF ? "ref" : "dnnl", o.iterations, p50, t[0],
           sum / o.iterations, load_ms, (double)ru.ru_maxrss / 1024.0, isa);
    rc = 0;
out:
    free(t);
    free(in);
    free(out);
    tdm_session_free(s);
    tdm_model_free(m);
    return rc;
}
