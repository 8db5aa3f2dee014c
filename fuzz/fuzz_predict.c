/*
 * libFuzzer target for the whole request path of POST /predict, without
 * Redis: body (api_parse_predict, the first byte picking the Content-Type)
 * -> image (decoding under the proxy's limits) -> the model's input tensor
 * (tdm_preprocess_for_model of a real, tiny model) -> inference -> ranking ->
 * the JSON answer. Every step must either work or refuse with a message and
 * the HTTP code the proxy would send (4xx for anything the client sent),
 * never crash, leak or hang. The pixel cap is 1 Mpx and the CPU budget
 * 200 ms so that a hostile header costs the fuzzer little.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "tandem/image.h"
#include "tiny_model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static tdm_model *model;
static tdm_session *session;
static tdm_preprocess pp;
static float *input, *output;
static size_t input_len, output_len;

static int setup(void)
{
    char err[256];
    model = fuzz_tiny_model(32, 32);
    if (!model || tdm_session_create(model, 1, &session, err, sizeof err) ||
        tdm_preprocess_for_model(model, NULL, &pp, err, sizeof err))
        return -1;
    pp.limits.max_pixels = 1u << 20;
    pp.limits.max_decode_ms = 200;
    input_len = tdm_session_input_bytes(session);
    output_len = tdm_session_output_bytes(session);
    input = malloc(input_len);
    output = malloc(output_len);
    return input && output && output_len == 3 * sizeof(float) ? 0 : -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const types[] = {
        NULL,
        "application/json",
        "image/jpeg",
        "image/png",
        "application/octet-stream",
        "application/json; charset=utf-8",
        "IMAGE/PNG",
        "text/plain",
    };
    static int ready;
    if (!ready) {
        if (setup()) abort();
        ready = 1;
    }
    if (size == 0) return 0;
    const char *ct = types[data[0] % (sizeof types / sizeof types[0])];
    api_image img = {0};
    char err[512] = "";
    int rc = api_parse_predict(ct, data + 1, size - 1, &img, err, sizeof err);
    if (rc) {
        int code = api_http_status(rc);
        if (!err[0] || code < 400 || code > 499) abort();
        return 0;
    }
    rc = tdm_image_to_input(img.data, img.len, &pp, input, input_len, err, sizeof err);
    api_image_clear(&img);
    if (rc) {
        /* The proxy answers 413 for a limit, 400 for a bad image; 500 for
         * out of memory, which a 1 Mpx cap must make impossible. */
        if (!err[0] || (rc != TDM_ERR_IMAGE && rc != TDM_ERR_LIMIT)) abort();
        return 0;
    }
    for (size_t i = 0; i < input_len / sizeof(float); i++)
        if (!(input[i] > -3.0f && input[i] < 3.0f)) abort(); /* normalised 0..255 */
    if (tdm_session_run(session, input, input_len, output, output_len)) abort();
    tdm_label_score top[5];
    int n = tdm_topk(&pp, output, TDM_DTYPE_FLOAT, 3, 5, top);
    if (n != 3) abort();
    api_prediction p = {.job_id = "abc123",
                        .label = top[0].label,
                        .top = top,
                        .ntop = n,
                        .model = "tiny.onnx",
                        .inference_ms = 1.0,
                        .status = "queued"};
    char *json = api_prediction_json(&p);
    if (!json) abort();
    free(json);
    return 0;
}
