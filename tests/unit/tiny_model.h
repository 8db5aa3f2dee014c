/*
 * A tiny model built in memory with protobuf-c, for tests and fuzz targets
 * that need a real loaded model whose input shape and dtype they choose:
 * x[dims] -> GlobalAveragePool -> Flatten -> y for rank 4, x -> Softmax -> y
 * otherwise. Needs onnx.pb-c.h (the build's gen folder) and libtandem.
 */
#ifndef TANDEM_TEST_TINY_MODEL_H
#define TANDEM_TEST_TINY_MODEL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "onnx.pb-c.h"
#include "tandem/engine.h"

/* A model x[dims] (dtype elem; dims < 0 symbolic) -> GlobalAveragePool ->
 * Flatten -> y, or x -> Softmax -> y for rank 2. Returns the loaded model. */
static inline tdm_model *tiny_model(int elem, int rank, const int64_t *dims, char *err,
                                    size_t errlen)
{
    Onnx__ModelProto m;
    Onnx__OperatorSetIdProto opset;
    Onnx__OperatorSetIdProto *opsets[1] = {&opset};
    Onnx__GraphProto g;
    Onnx__NodeProto nodes[2], *node_ptrs[2] = {&nodes[0], &nodes[1]};
    Onnx__ValueInfoProto vin, vout, *ins[1] = {&vin}, *outs[1] = {&vout};
    Onnx__TypeProto tin, tout;
    Onnx__TypeProto__Tensor ttin, ttout;
    Onnx__TensorShapeProto shape;
    Onnx__TensorShapeProto__Dimension dim[4], *dim_ptrs[4];
    char *names[6] = {(char *)"x", (char *)"pooled", (char *)"pooled",
                      (char *)"y", (char *)"x",      (char *)"y"};
    static const char *params[4] = {"n", "c", "h", "w"};

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
    vin.name = (char *)"x";
    vin.type = &tin;
    tin.value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    tin.tensor_type = &ttin;
    ttin.has_elem_type = 1;
    ttin.elem_type = elem;
    ttin.shape = &shape;
    shape.n_dim = (size_t)rank;
    shape.dim = dim_ptrs;
    for (int k = 0; k < rank; k++) {
        onnx__tensor_shape_proto__dimension__init(&dim[k]);
        if (dims[k] >= 0) {
            dim[k].value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            dim[k].dim_value = dims[k];
        } else {
            dim[k].value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            dim[k].dim_param = (char *)params[k];
        }
        dim_ptrs[k] = &dim[k];
    }
    vout.name = (char *)"y";
    vout.type = &tout;
    tout.value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    tout.tensor_type = &ttout;
    ttout.has_elem_type = 1;
    ttout.elem_type = elem;
    g.n_input = 1;
    g.input = ins;
    g.n_output = 1;
    g.output = outs;

    for (int i = 0; i < 2; i++)
        onnx__node_proto__init(&nodes[i]);
    if (rank == 4) {
        nodes[0].op_type = (char *)"GlobalAveragePool";
        nodes[0].n_input = nodes[0].n_output = 1;
        nodes[0].input = &names[0];
        nodes[0].output = &names[1];
        nodes[1].op_type = (char *)"Flatten";
        nodes[1].n_input = nodes[1].n_output = 1;
        nodes[1].input = &names[2];
        nodes[1].output = &names[3];
        g.n_node = 2;
    } else {
        nodes[0].op_type = (char *)"Softmax";
        nodes[0].n_input = nodes[0].n_output = 1;
        nodes[0].input = &names[4];
        nodes[0].output = &names[5];
        g.n_node = 1;
    }
    g.node = node_ptrs;

    size_t len = onnx__model_proto__get_packed_size(&m);
    uint8_t *buf = malloc(len);
    if (!buf) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    onnx__model_proto__pack(&m, buf);
    tdm_options opt;
    tdm_options_init(&opt);
    opt.threads = 1;
    tdm_model *model = NULL;
    if (tdm_model_load_mem(buf, len, &opt, &model, err, errlen) != 0) model = NULL;
    free(buf);
    return model;
}

#endif
