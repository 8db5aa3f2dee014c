/*
 * A tiny image model for the fuzz targets, built in memory with protobuf-c:
 * float [1,3,h,w] -> GlobalAveragePool -> Flatten -> [1,3] (three classes).
 * Loaded with tdm_model_load_mem; NULL (and a message) on error.
 */
#ifndef TANDEM_FUZZ_TINY_MODEL_H
#define TANDEM_FUZZ_TINY_MODEL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "onnx.pb-c.h"
#include "tandem/engine.h"

static tdm_model *fuzz_tiny_model(int64_t h, int64_t w)
{
    Onnx__ModelProto m;
    Onnx__OperatorSetIdProto opset, *opsets[1] = {&opset};
    Onnx__GraphProto g;
    Onnx__NodeProto pool, flat, *nodes[2] = {&pool, &flat};
    Onnx__ValueInfoProto vin, vout, *ins[1] = {&vin}, *outs[1] = {&vout};
    Onnx__TypeProto tin, tout;
    Onnx__TypeProto__Tensor ttin, ttout;
    Onnx__TensorShapeProto shape;
    Onnx__TensorShapeProto__Dimension dim[4], *dims[4];
    const int64_t size[4] = {1, 3, h, w};
    static char *x = (char *)"x", *pooled = (char *)"pooled", *y = (char *)"y";

    onnx__model_proto__init(&m);
    onnx__operator_set_id_proto__init(&opset);
    onnx__graph_proto__init(&g);
    opset.domain = (char *)"";
    opset.has_version = 1;
    opset.version = 13;
    m.n_opset_import = 1;
    m.opset_import = opsets;
    m.has_ir_version = 1;
    m.ir_version = 7;
    m.graph = &g;
    g.name = (char *)"tiny";

    onnx__value_info_proto__init(&vin);
    onnx__value_info_proto__init(&vout);
    onnx__type_proto__init(&tin);
    onnx__type_proto__init(&tout);
    onnx__type_proto__tensor__init(&ttin);
    onnx__type_proto__tensor__init(&ttout);
    onnx__tensor_shape_proto__init(&shape);
    vin.name = x;
    vin.type = &tin;
    tin.value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    tin.tensor_type = &ttin;
    ttin.has_elem_type = 1;
    ttin.elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    ttin.shape = &shape;
    shape.n_dim = 4;
    shape.dim = dims;
    for (int k = 0; k < 4; k++) {
        onnx__tensor_shape_proto__dimension__init(&dim[k]);
        dim[k].value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
        dim[k].dim_value = size[k];
        dims[k] = &dim[k];
    }
    vout.name = y;
    vout.type = &tout;
    tout.value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    tout.tensor_type = &ttout;
    ttout.has_elem_type = 1;
    ttout.elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    g.n_input = 1;
    g.input = ins;
    g.n_output = 1;
    g.output = outs;

    onnx__node_proto__init(&pool);
    onnx__node_proto__init(&flat);
    pool.op_type = (char *)"GlobalAveragePool";
    pool.n_input = pool.n_output = 1;
    pool.input = &x;
    pool.output = &pooled;
    flat.op_type = (char *)"Flatten";
    flat.n_input = flat.n_output = 1;
    flat.input = &pooled;
    flat.output = &y;
    g.n_node = 2;
    g.node = nodes;

    size_t len = onnx__model_proto__get_packed_size(&m);
    uint8_t *buf = malloc(len);
    if (!buf) return NULL;
    onnx__model_proto__pack(&m, buf);
    tdm_options opt;
    tdm_options_init(&opt);
    opt.threads = 1;
    tdm_model *model = NULL;
    char err[256];
    if (tdm_model_load_mem(buf, len, &opt, &model, err, sizeof err) != 0) {
        fprintf(stderr, "tiny model: %s\n", err);
        model = NULL;
    }
    free(buf);
    return model;
}

#endif
