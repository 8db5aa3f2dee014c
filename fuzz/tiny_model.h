/*
 * The fuzz targets' model: float [1,3,h,w] -> GlobalAveragePool -> Flatten
 * -> [1,3] (three classes), from the tests' builder (tests/unit/tiny_model.h).
 * NULL (and a message) on error.
 */
#ifndef TANDEM_FUZZ_TINY_MODEL_H
#define TANDEM_FUZZ_TINY_MODEL_H

#include <stdio.h>

#include "../tests/unit/tiny_model.h"

static tdm_model *fuzz_tiny_model(int64_t h, int64_t w)
{
    const int64_t dims[4] = {1, 3, h, w};
    char err[256];
    tdm_model *model = tiny_model(TDM_DTYPE_FLOAT, 4, dims, err, sizeof err);
    if (!model) fprintf(stderr, "tiny model: %s\n", err);
    return model;
}

#endif
