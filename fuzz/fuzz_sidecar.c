/*
 * libFuzzer target for the model sidecar (MODEL.onnx.json, src/image/image_model.c):
 * the first byte picks a model (a 32x32 or a 7x5 input), the rest is the
 * sidecar file. Any bytes must give a
 * usable preprocessing (sizes in range, finite normalisation, one label per
 * class after the offset) or a refusal with a message, never a crash, a leak
 * or a hang. The preprocessing is then used on a real image.
 *
 * The sidecar's "labels" names a file beside it: labels3.txt (3 classes) and
 * labels2.txt (2, for 3 classes with a background one) exist there.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include <spng.h>

#include "tandem/image.h"
#include "tiny_model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* On tmpfs (ext4 would flush the rewritten file on every close); the folder
 * and the labels files are shared by concurrent runs, the sidecar is this
 * process's own and is removed after each input, so nothing piles up. */
#define DIR "/dev/shm/tandem-fuzz-sidecar"
static char model_path[64], sidecar_path[80];
static tdm_model *square_model, *oblong_model;
static void *png;
static size_t png_len;

/* Whole or not at all: written aside, then renamed over the old one. */
static int write_file(const char *path, const void *data, size_t len)
{
    char tmp[128];
    snprintf(tmp, sizeof tmp, "%s.%d.tmp", path, (int)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) return -1;
    size_t n = fwrite(data, 1, len, f);
    if (fclose(f) != 0 || n != len) return -1;
    return rename(tmp, path);
}

static int setup(void)
{
    if (mkdir(DIR, 0700) && errno != EEXIST) return -1;
    if (write_file(DIR "/labels3.txt", "cat\ndog\nbird\n", 13) ||
        write_file(DIR "/labels2.txt", "cat\r\ndog", 8))
        return -1;
    snprintf(model_path, sizeof model_path, DIR "/model-%d.onnx", (int)getpid());
    snprintf(sidecar_path, sizeof sidecar_path, "%s.json", model_path);
    square_model = fuzz_tiny_model(32, 32);
    oblong_model = fuzz_tiny_model(5, 7);
    /* A 5x4 RGB PNG to prepare with what the sidecar says. */
    uint8_t px[5 * 4 * 3];
    for (size_t i = 0; i < sizeof px; i++)
        px[i] = (uint8_t)(i * 37);
    spng_ctx *enc = spng_ctx_new(SPNG_CTX_ENCODER);
    struct spng_ihdr ihdr = {5, 4, 8, SPNG_COLOR_TYPE_TRUECOLOR, 0, 0, 0};
    int e = 0;
    spng_set_option(enc, SPNG_ENCODE_TO_BUFFER, 1);
    spng_set_ihdr(enc, &ihdr);
    if (!spng_encode_image(enc, px, sizeof px, SPNG_FMT_PNG, SPNG_ENCODE_FINALIZE))
        png = spng_get_png_buffer(enc, &png_len, &e);
    spng_ctx_free(enc);
    return square_model && oblong_model && png ? 0 : -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        if (setup()) abort();
        ready = 1;
    }
    if (size == 0) return 0;
    FILE *f = fopen(sidecar_path, "wb");
    if (!f || fwrite(data + 1, 1, size - 1, f) != size - 1 || fclose(f)) abort();
    tdm_model *model = data[0] & 1 ? oblong_model : square_model;
    tdm_preprocess pp;
    char err[512] = "";
    int rc = tdm_preprocess_for_model(model, model_path, &pp, err, sizeof err);
    unlink(sidecar_path);
    if (rc) {
        if (!err[0]) abort(); /* every refusal must say why */
        if (rc != TDM_ERR_INVALID && rc != TDM_ERR_UNSUPPORTED && rc != TDM_ERR_IO &&
            rc != TDM_ERR_LIMIT && rc != TDM_ERR_NOMEM)
            abort();
        return 0;
    }
    if (pp.layout != TDM_LAYOUT_NCHW_FLOAT) abort();
    if (model == square_model ? pp.width != 32 || pp.height != 32 : pp.width != 7 || pp.height != 5)
        abort();
    for (int c = 0; c < 3; c++)
        if (!(pp.std[c] > 0 && pp.std[c] < 1e7f) || !(pp.mean[c] > -1e7f && pp.mean[c] < 1e7f))
            abort();
    if (pp.label_offset != 0 && pp.label_offset != 1) abort();
    int n = tdm_labels_count(pp.labels);
    if (n != 3 - pp.label_offset) abort();
    for (int i = 0; i < n; i++)
        if (!tdm_labels_get(pp.labels, i)) abort();
    static float input[3 * 32 * 32];
    size_t bytes = (size_t)pp.width * (size_t)pp.height * 3 * sizeof(float);
    if (tdm_image_to_input(png, png_len, &pp, input, bytes, err, sizeof err) != 0) abort();
    tdm_preprocess_clear(&pp);
    return 0;
}
