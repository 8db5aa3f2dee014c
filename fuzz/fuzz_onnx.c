/*
 * libFuzzer target for the ONNX loader: any bytes must either load into a
 * consistent graph or be refused with a message, never crash, leak or hang.
 * A loaded graph is also walked in topological order and compacted, the two
 * operations every later stage relies on.
 */
#include <stdint.h>
#include <stdlib.h>

#include "onnx_load.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    graph *g = NULL;
    char err[256];
    if (onnx_load(data, size, &g, err, sizeof err) != 0) {
        if (!err[0]) abort(); /* every refusal must say why */
        return 0;
    }
    int count = 0;
    int *order = malloc(((size_t)g->nnodes + 1) * sizeof *order);
    if (graph_topo_sort(g, order, &count) != 0 || count != g->nnodes) abort();
    free(order);
    if (graph_compact(g) != 0) abort();
    graph_free(g);
    return 0;
}
