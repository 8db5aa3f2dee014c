/*
 * libFuzzer target for image decoding and preprocessing: any bytes must
 * either become a model input or be refused with a message, never crash,
 * leak or hang. The target is small (32x32 NCHW float, then 7x5 NHWC uint8
 * for a second resampling ratio) and the pixel cap is 1 Mpx, so a hostile
 * header can make us neither allocate gigabytes nor decode for seconds.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tandem/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void prepare(tdm_preprocess *pp, tdm_layout layout, int w, int h)
{
    static const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    memset(pp, 0, sizeof *pp);
    pp->layout = layout;
    pp->width = w;
    pp->height = h;
    pp->limits.max_pixels = 1u << 20;
    memcpy(pp->mean, mean, sizeof mean);
    memcpy(pp->std, std, sizeof std);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static float nchw[3 * 32 * 32];
    static uint8_t nhwc[3 * 7 * 5];
    tdm_preprocess pp;
    char err[256];

    err[0] = '\0';
    prepare(&pp, TDM_LAYOUT_NCHW_FLOAT, 32, 32);
    int rc = tdm_image_to_input(data, size, &pp, nchw, sizeof nchw, err, sizeof err);
    if (rc) {
        if (!err[0]) abort(); /* every refusal must say why */
        if (rc != TDM_ERR_IMAGE && rc != TDM_ERR_LIMIT && rc != TDM_ERR_NOMEM) abort();
        return 0;
    }
    for (size_t i = 0; i < sizeof nchw / sizeof nchw[0]; i++)
        if (!(nchw[i] > -3.0f && nchw[i] < 3.0f)) abort(); /* normalised 0..255 stays in range */

    prepare(&pp, TDM_LAYOUT_NHWC_UINT8, 7, 5);
    if (tdm_image_to_input(data, size, &pp, nhwc, sizeof nhwc, err, sizeof err) != 0) abort();
    return 0;
}
