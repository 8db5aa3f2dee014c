/*
 * models: `tandem models [--dir DIR] [--set zoo|st-int8] [--export-test-models]`.
 *
 * The service reads MODEL_DIR/mobilenet_v2.onnx (fast, SYNC_MODEL_PATH) and
 * MODEL_DIR/resnet50.onnx (slow, ASYNC_MODEL_PATH) by default. This command
 * puts a pair there, each file pinned by size and sha256 (OpenSSL's EVP
 * digest, never a hand-written one), trying in order:
 *
 *   1. the file already in place and matching its pin: kept;
 *   2. $MODEL_MIRROR/<upstream file name>, a local folder (verified, copied);
 *   3. a download from the upstream repository with libcurl (verified while
 *      it streams; refused past the pinned size; fails fast when offline).
 *
 * Sets: "zoo" (default): the ONNX Model Zoo's float MobileNetV2
 * (mobilenetv2-12.onnx) and ResNet50 (resnet50-v1-12.onnx), the seed's pair.
 * "st-int8": STMicroelectronics' int8 MobileNetV1 0.5/128 (fast) and
 * MobileNetV2 1.0/224 (slow) from github.com/STMicroelectronics/meta-st-x-linux-ai
 * (X-LINUX-AI v6.1.1, recipes-samples/image-classification/models/files),
 * installed under the same two names.
 *
 * When no real file can be had (offline, no mirror) the zoo set can be
 * replaced by architecture-identical models with random weights, exported by
 * tools/gen_test_models.py with /usr/bin/python3 and torchvision. Their labels
 * mean nothing, so this happens only when asked: --export-test-models,
 * TANDEM_ALLOW_TEST_MODELS=1, or a "y" typed at the prompt shown when stdin is
 * a terminal. A file MODEL_DIR/TEST-MODELS marks such a directory, and every
 * later check warns again.
 */
#include "models.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "commands.h"

#define PATH_LEN 2048
#define MARKER "TEST-MODELS"

struct model_file {
    const char *dest;     /* name in MODEL_DIR */
    const char *upstream; /* name in the mirror and at the URL */
    long long size;
    const char *sha256;
    const char *url;
};

struct model_set {
    const char *name;
    struct model_file files[2]; /* fast (sync), slow (async) */
};

#define ZOO "https://github.com/onnx/models/raw/main/validated/vision/classification/"
#define ST                                                                                         \
    "https://github.com/STMicroelectronics/meta-st-x-linux-ai/raw/main/"                           \
    "recipes-samples/image-classification/models/files/"

static const struct model_set sets[] = {
    {"zoo",
     {{"mobilenet_v2.onnx", "mobilenetv2-12.onnx", 13964571,
       "c0c3f76d93fa3fd6580652a45618618a220fced18babf65774ed169de0432ad5",
       ZOO "mobilenet/model/mobilenetv2-12.onnx"},
      {"resnet50.onnx", "resnet50-v1-12.onnx", 102576593,
       "3f03fdef724b22947eed826f1eef1dc5c34151bb4c37d634f1db89dfa2dd1526",
       ZOO "resnet/model/resnet50-v1-12.onnx"}}},
    {"st-int8",
     {{"mobilenet_v2.onnx", "mobilenet_v1_0.5_128_quant.onnx", 1394525,
       "49af8ae154eff00b0675119e126927929cc1c1988c335f2898204a7f8eb6db0d",
       ST "mobilenet_v1_0.5_128_quant.onnx"},
      {"resnet50.onnx", "mobilenet_v2_1.0_224_int8_per_tensor.onnx", 3718423,
       "479b0a378ff2503319dfd62913fde9ded309a2db5c9984bb8dfd3950b502c309",
       ST "mobilenet_v2_1.0_224_int8_per_tensor.onnx"}}},
};

/* a, b and c joined into out (PATH_LEN bytes); -1 when it does not fit. */
static int join(char *out, const char *a, const char *b, const char *c)
{
    int n = snprintf(out, PATH_LEN, "%s%s%s", a, b, c);
    return n < 0 || n >= PATH_LEN ? -1 : 0;
}

/* ------------------------------------------------------------------------ */

/* Streams bytes into a temporary file while hashing and counting them. */
struct sink {
    FILE *f;
    EVP_MD_CTX *md;
    long long size, cap;
    int over; /* more bytes than the pin allows */
};

static int sink_open(struct sink *s, const char *tmp, long long cap)
{
    memset(s, 0, sizeof *s);
    s->cap = cap;
    s->f = tmp ? fopen(tmp, "wb") : NULL;
    s->md = EVP_MD_CTX_new();
    if ((tmp && !s->f) || !s->md || EVP_DigestInit_ex(s->md, EVP_sha256(), NULL) != 1) {
        if (s->f) fclose(s->f);
        EVP_MD_CTX_free(s->md);
        return -1;
    }
    return 0;
}

static int sink_write(struct sink *s, const void *p, size_t n)
{
    if (s->size + (long long)n > s->cap) {
        s->over = 1;
        return -1;
    }
    if ((s->f && fwrite(p, 1, n, s->f) != n) || EVP_DigestUpdate(s->md, p, n) != 1) return -1;
    s->size += (long long)n;
    return 0;
}

/* Closes the sink; 0 when what was written matches the pin. */
static int sink_close(struct sink *s, const struct model_file *f, char *why, size_t why_len)
{
    unsigned char dig[32];
    unsigned int dlen = 0;
    char hex[65];
    int rc = -1;
    int flushed = 1;
    if (s->f) {
        flushed = fflush(s->f) == 0 && fsync(fileno(s->f)) == 0;
        flushed = fclose(s->f) == 0 && flushed;
    }
    if (EVP_DigestFinal_ex(s->md, dig, &dlen) != 1 || dlen != 32) {
        snprintf(why, why_len, "sha256 failed");
        goto out;
    }
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", dig[i]);
    if (!flushed)
        snprintf(why, why_len, "cannot write: %s", strerror(errno));
    else if (s->over)
        snprintf(why, why_len, "larger than the pinned %lld bytes", f->size);
    else if (s->size != f->size)
        snprintf(why, why_len, "%lld bytes, expected %lld", s->size, f->size);
    else if (strcmp(hex, f->sha256))
        snprintf(why, why_len, "sha256 %s, expected %s", hex, f->sha256);
    else
        rc = 0;
out:
    EVP_MD_CTX_free(s->md);
    return rc;
}

/* Copies a local file to tmp, or only checks it when tmp is NULL, against the pin. */
static int from_file(const char *src, const char *tmp, const struct model_file *f, char *why,
                     size_t why_len)
{
    struct sink s;
    char buf[1 << 16];
    FILE *in = fopen(src, "rb");
    if (!in) {
        snprintf(why, why_len, "%s", strerror(errno));
        return -1;
    }
    if (sink_open(&s, tmp, f->size)) {
        fclose(in);
        snprintf(why, why_len, "cannot write %s: %s", tmp ? tmp : "(nothing)", strerror(errno));
        return -1;
    }
    size_t n;
    int werr = 0;
    while (!werr && (n = fread(buf, 1, sizeof buf, in)) > 0)
        werr = sink_write(&s, buf, n);
    int rerr = ferror(in);
    fclose(in);
    int rc = sink_close(&s, f, why, why_len);
    if (rerr) {
        snprintf(why, why_len, "read error on %s", src);
        rc = -1;
    }
    if (rc && tmp) unlink(tmp);
    return rc;
}

static size_t on_data(char *p, size_t size, size_t n, void *user)
{
    struct sink *s = user;
    return sink_write(s, p, size * n) ? 0 : size * n;
}

static int from_url(const char *tmp, const struct model_file *f, char *why, size_t why_len)
{
    struct sink s;
    char cerr[CURL_ERROR_SIZE] = "";
    CURL *c = curl_easy_init();
    if (!c || sink_open(&s, tmp, f->size)) {
        if (c) curl_easy_cleanup(c);
        snprintf(why, why_len, "cannot start the download");
        return -1;
    }
    curl_easy_setopt(c, CURLOPT_URL, f->url);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
    /* A stalled transfer (under 1 kB/s for 30 s) is abandoned. */
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1024L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 30L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
    CURLcode res = curl_easy_perform(c);
    curl_easy_cleanup(c);
    int rc = sink_close(&s, f, why, why_len);
    if (res != CURLE_OK && !s.over) {
        snprintf(why, why_len, "%s", cerr[0] ? cerr : curl_easy_strerror(res));
        rc = -1;
    }
    if (rc) unlink(tmp);
    return rc;
}

/* ------------------------------------------------------------------------ */

static int ensure_file(const char *dir, const struct model_file *f, const char *mirror)
{
    char dest[PATH_LEN], tmp[PATH_LEN], src[PATH_LEN], why[256];
    if (join(dest, dir, "/", f->dest) || join(tmp, dest, ".part", "")) {
        fprintf(stderr, "tandem models: path too long: %s\n", dir);
        return -1;
    }
    if (access(dest, F_OK) == 0) {
        if (!from_file(dest, NULL, f, why, sizeof why)) {
            fprintf(stderr, "tandem models: %s: in place (%s, sha256 ok)\n", dest, f->upstream);
            return 0;
        }
        fprintf(stderr, "tandem models: %s is not %s (%s)\n", dest, f->upstream, why);
    }
    if (mirror && mirror[0]) {
        if (join(src, mirror, "/", f->upstream)) {
            snprintf(src, sizeof src, "%s", mirror);
            snprintf(why, sizeof why, "path too long");
        } else if (!from_file(src, tmp, f, why, sizeof why)) {
            if (rename(tmp, dest)) goto rename_failed;
            fprintf(stderr, "tandem models: %s <- %s (sha256 ok)\n", dest, src);
            return 0;
        }
        fprintf(stderr, "tandem models: mirror %s: %s\n", src, why);
    }
    fprintf(stderr, "tandem models: downloading %s (%lld bytes)\n", f->url, f->size);
    if (!from_url(tmp, f, why, sizeof why)) {
        if (rename(tmp, dest)) goto rename_failed;
        fprintf(stderr, "tandem models: %s <- %s (sha256 ok)\n", dest, f->url);
        return 0;
    }
    fprintf(stderr, "tandem models: download failed: %s%s\n", why,
            mirror && mirror[0] ? ""
                                : " (offline? set MODEL_MIRROR to a folder holding the files)");
    return -1;
rename_failed:
    fprintf(stderr, "tandem models: cannot rename %s: %s\n", tmp, strerror(errno));
    unlink(tmp);
    return -1;
}

/* The folder of the running binary, into out (PATH_LEN bytes). */
static int exe_dir(char *out)
{
    ssize_t n = readlink("/proc/self/exe", out, PATH_LEN - 1);
    if (n <= 0) return -1;
    out[n] = '\0';
    char *slash = strrchr(out, '/');
    if (!slash) return -1;
    *slash = '\0';
    return 0;
}

/* tools/gen_test_models.py: $TANDEM_TOOLS, else beside the binary (build/..),
 * else under the current directory. */
static int find_generator(char *out)
{
    const char *env = getenv("TANDEM_TOOLS");
    char exe[PATH_LEN];
    if (env && env[0]) {
        if (!join(out, env, "/gen_test_models.py", "") && access(out, R_OK) == 0) return 0;
    }
    if (!exe_dir(exe) && !join(out, exe, "/../tools/gen_test_models.py", "") &&
        access(out, R_OK) == 0)
        return 0;
    join(out, "tools/gen_test_models.py", "", "");
    return access(out, R_OK);
}

static const struct model_set *find_set(const char *name)
{
    for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++)
        if (!strcmp(sets[i].name, name)) return &sets[i];
    return NULL;
}

int models_shipped(char *fast, char *slow, size_t cap)
{
    /* build/tandem (or build/san/tandem) sits in the source tree; an
     * installed binary in PREFIX/bin. */
    static const char *const below_bin[] = {"/../data/models/st-int8", "/../../data/models/st-int8",
                                            "/../share/tandem/models/st-int8"};
    const struct model_set *set = find_set("st-int8");
    char bin[PATH_LEN] = "?", dirs[4][PATH_LEN], a[PATH_LEN], b[PATH_LEN], why[256];
    int ndirs = 0;
    if (!exe_dir(bin))
        for (int i = 0; i < 3; i++)
            if (!join(dirs[ndirs], bin, below_bin[i], "")) ndirs++;
    join(dirs[ndirs++], "data/models/st-int8", "", "");
    for (int i = 0; i < ndirs; i++) {
        if (join(a, dirs[i], "/", set->files[0].upstream) ||
            join(b, dirs[i], "/", set->files[1].upstream) || access(a, R_OK) || access(b, R_OK))
            continue;
        if (from_file(a, NULL, &set->files[0], why, sizeof why) ||
            from_file(b, NULL, &set->files[1], why, sizeof why)) {
            fprintf(stderr, "tandem models: the shipped pair in %s is damaged: %s\n", dirs[i], why);
            continue;
        }
        /* Tidy names for the log: build/../data becomes data. */
        char *ra = realpath(a, NULL), *rb = realpath(b, NULL);
        int fits = ra && rb && (size_t)snprintf(fast, cap, "%s", ra) < cap &&
                   (size_t)snprintf(slow, cap, "%s", rb) < cap;
        free(ra);
        free(rb);
        if (fits) return 0;
    }
    fprintf(stderr,
            "tandem models: the int8 pair shipped with tandem (data/models/st-int8) is neither "
            "beside %s nor under the current directory\n",
            bin);
    return MODELS_ERR_UNAVAILABLE;
}

int models_test_marked(const char *dir)
{
    char marker[PATH_LEN];
    return !join(marker, dir, "/" MARKER, "") && access(marker, F_OK) == 0;
}

static int run_generator(const char *script, const char *outdir)
{
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        execl("/usr/bin/python3", "python3", script, outdir, (char *)NULL);
        fprintf(stderr, "tandem models: cannot run /usr/bin/python3: %s\n", strerror(errno));
        _exit(127);
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) return -1;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

static int copy_plain(const char *src, const char *dest)
{
    char tmp[PATH_LEN], buf[1 << 16];
    if (join(tmp, dest, ".part", "")) return -1;
    FILE *in = fopen(src, "rb"), *out = in ? fopen(tmp, "wb") : NULL;
    int rc = in && out ? 0 : -1;
    size_t n;
    while (!rc && (n = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, n, out) != n) rc = -1;
    if (in && ferror(in)) rc = -1;
    if (in) fclose(in);
    if (out && fclose(out)) rc = -1;
    if (!rc && rename(tmp, dest)) rc = -1;
    if (rc) unlink(tmp);
    return rc;
}

static void warn_test_models(const char *dir)
{
    fprintf(stderr,
            "\n"
            "  *******************************************************************\n"
            "  * WARNING: %s holds TEST MODELS with RANDOM WEIGHTS.\n"
            "  * Their architecture is MobileNetV2/ResNet50, their labels mean\n"
            "  * NOTHING. Put real models in place with MODEL_MIRROR or online\n"
            "  * (`tandem models`), or use `--set st-int8`.\n"
            "  *******************************************************************\n\n",
            dir);
}

static int export_test_models(const char *dir)
{
    char script[PATH_LEN], cache[PATH_LEN], src[PATH_LEN], dest[PATH_LEN];
    static const char *const pairs[2][2] = {{"mobilenetv2_op13.onnx", "mobilenet_v2.onnx"},
                                            {"resnet50_op13.onnx", "resnet50.onnx"}};
    if (find_generator(script)) {
        fprintf(stderr, "tandem models: tools/gen_test_models.py not found (set TANDEM_TOOLS)\n");
        return -1;
    }
    if (join(cache, dir, "/test-models", "")) return -1;
    fprintf(stderr, "tandem models: exporting test models with %s (torchvision)...\n", script);
    if (run_generator(script, cache)) {
        fprintf(stderr, "tandem models: the export failed (needs /usr/bin/python3 with torch, "
                        "torchvision and onnx: python3-torchvision python3-onnx)\n");
        return -1;
    }
    for (int i = 0; i < 2; i++) {
        if (join(src, cache, "/", pairs[i][0]) || join(dest, dir, "/", pairs[i][1]) ||
            copy_plain(src, dest)) {
            fprintf(stderr, "tandem models: cannot copy %s to %s\n", src, dest);
            return -1;
        }
    }
    FILE *m = join(dest, dir, "/" MARKER, "") ? NULL : fopen(dest, "w");
    if (!m || fprintf(m, "random-weight test models from tools/gen_test_models.py\n") < 0 ||
        fclose(m)) {
        fprintf(stderr, "tandem models: cannot write %s\n", dest);
        return -1;
    }
    warn_test_models(dir);
    return 0;
}

static int ask_export(void)
{
    if (!isatty(STDIN_FILENO)) return 0;
    fprintf(stderr, "No real models available. Export test models with random weights "
                    "(their labels mean nothing)? [y/N] ");
    char line[16];
    if (!fgets(line, sizeof line, stdin)) return 0;
    return line[0] == 'y' || line[0] == 'Y';
}

static int mkdir_p(const char *dir)
{
    char buf[PATH_LEN];
    if (join(buf, dir, "", "")) return -1;
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buf, 0755) && errno != EEXIST) return -1;
        *p = '/';
    }
    return mkdir(buf, 0755) && errno != EEXIST ? -1 : 0;
}

int models_ensure(const char *dir, const char *set_name, int export_mode)
{
    const struct model_set *set = find_set(set_name);
    char marker[PATH_LEN], a[PATH_LEN], b[PATH_LEN];
    if (!set) {
        fprintf(stderr, "tandem models: unknown set '%s' (zoo or st-int8)\n", set_name);
        return MODELS_ERR_UNAVAILABLE;
    }
    if (join(marker, dir, "/" MARKER, "") || join(a, dir, "/", set->files[0].dest) ||
        join(b, dir, "/", set->files[1].dest)) {
        fprintf(stderr, "tandem models: path too long: %s\n", dir);
        return MODELS_ERR_UNAVAILABLE;
    }
    if (mkdir_p(dir)) {
        fprintf(stderr, "tandem models: cannot create %s: %s\n", dir, strerror(errno));
        return MODELS_ERR_UNAVAILABLE;
    }
    const char *mirror = getenv("MODEL_MIRROR");
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "tandem models: libcurl failed to initialise\n");
        return MODELS_ERR_UNAVAILABLE;
    }
    int rc = 0;
    for (int i = 0; i < 2; i++)
        if (ensure_file(dir, &set->files[i], mirror)) rc = MODELS_ERR_UNAVAILABLE;
    curl_global_cleanup();
    if (!rc) {
        unlink(marker);
        return 0;
    }
    if (strcmp(set->name, "zoo") || export_mode == MODELS_EXPORT_NEVER) return MODELS_ERR_UNAVAILABLE;
    /* Test models exported earlier stay until real ones can be had. */
    if (access(marker, F_OK) == 0 && access(a, R_OK) == 0 && access(b, R_OK) == 0) {
        warn_test_models(dir);
        return 0;
    }
    int yes =
        export_mode == MODELS_EXPORT_YES || (export_mode == MODELS_EXPORT_ASK && ask_export());
    if (!yes) {
        fprintf(stderr,
                "tandem models: no real models could be had. Options: MODEL_MIRROR=DIR "
                "(a folder with %s and %s), `--set st-int8` with MODEL_MIRROR=data/models/st-int8 "
                "(shipped with tandem), or "
                "`--export-test-models` (TANDEM_ALLOW_TEST_MODELS=1) for "
                "random-weight test models\n",
                set->files[0].upstream, set->files[1].upstream);
        return MODELS_ERR_UNAVAILABLE;
    }
    return export_test_models(dir) ? MODELS_ERR_UNAVAILABLE : 0;
}

static void usage(FILE *f)
{
    fprintf(
        f, "usage: tandem models [--dir DIR] [--set zoo|st-int8] [--export-test-models]\n\n"
           "Puts the default model pair in DIR (default $MODEL_DIR, else ./models) as\n"
           "mobilenet_v2.onnx (fast, sync) and resnet50.onnx (slow, async), each checked\n"
           "by size and sha256: kept if present, else copied from $MODEL_MIRROR/<name>,\n"
           "else downloaded.\n\n"
           "  --set zoo      ONNX Model Zoo mobilenetv2-12.onnx and resnet50-v1-12.onnx (default,\n"
           "                 or $MODEL_SET)\n"
           "  --set st-int8  STMicroelectronics int8 mobilenet_v1_0.5_128_quant.onnx (fast) and\n"
           "                 mobilenet_v2_1.0_224_int8_per_tensor.onnx (slow), real labels\n"
           "  --export-test-models  if no real zoo model can be had, export random-weight\n"
           "                 models of the same architecture (labels mean nothing); also\n"
           "                 TANDEM_ALLOW_TEST_MODELS=1; asked on a terminal otherwise\n\n"
           "environment: MODEL_DIR, MODEL_SET, MODEL_MIRROR, TANDEM_ALLOW_TEST_MODELS,\n"
           "TANDEM_TOOLS (folder of gen_test_models.py)\n");
}

int cli_models(int argc, char **argv)
{
    const char *dir = getenv("MODEL_DIR"), *set = getenv("MODEL_SET");
    const char *allow = getenv("TANDEM_ALLOW_TEST_MODELS");
    int export_mode = allow && !strcmp(allow, "1") ? MODELS_EXPORT_YES : MODELS_EXPORT_ASK;
    if (!dir || !dir[0]) dir = "models";
    if (!set || !set[0]) set = "zoo";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--dir") && i + 1 < argc) {
            dir = argv[++i];
        } else if (!strcmp(argv[i], "--set") && i + 1 < argc) {
            set = argv[++i];
        } else if (!strcmp(argv[i], "--export-test-models")) {
            export_mode = MODELS_EXPORT_YES;
        } else {
            fprintf(stderr, "tandem models: unknown or incomplete argument '%s'\n\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (strcmp(set, "zoo") && strcmp(set, "st-int8")) {
        fprintf(stderr, "tandem models: unknown set '%s' (zoo or st-int8)\n", set);
        return 2;
    }
    return models_ensure(dir, set, export_mode) ? 1 : 0;
}
