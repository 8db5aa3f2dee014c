/*
 * ops: the operator table and everything about an op that does not depend on
 * how it is computed.
 *
 * Three questions are answered here, each by one function:
 *   - which ONNX (domain, op_type) pairs we run (ops_lookup / ops_name);
 *   - whether a node's inputs and attributes stay inside what the kernels
 *     implement (ops_check, at load time, so a model is refused early with a
 *     message naming the node rather than failing at the first request);
 *   - what shape and dtype each output has (ops_infer, run by the optimiser
 *     once a session has fixed the batch size).
 *
 * The ops whose meaning changed between opsets (Softmax's axis, Clip's bounds,
 * Pad's pads, Squeeze/Unsqueeze's axes) are accepted in every form here; the
 * optimiser then normalises them so the kernels need not know the opset.
 */
#include "ops.h"

#include <string.h>

/* ONNX op_type of each graph_op, indexed by the enum. OP_FAKEQUANT is ours and
 * never looked up from a file. */
static const char *const op_names[OP_COUNT] = {
    [OP_UNKNOWN] = "Unknown",
    [OP_CONV] = "Conv",
    [OP_BATCHNORM] = "BatchNormalization",
    [OP_GEMM] = "Gemm",
    [OP_MATMUL] = "MatMul",
    [OP_MAXPOOL] = "MaxPool",
    [OP_AVGPOOL] = "AveragePool",
    [OP_GLOBALAVGPOOL] = "GlobalAveragePool",
    [OP_GLOBALMAXPOOL] = "GlobalMaxPool",
    [OP_SOFTMAX] = "Softmax",
    [OP_RELU] = "Relu",
    [OP_CLIP] = "Clip",
    [OP_SIGMOID] = "Sigmoid",
    [OP_TANH] = "Tanh",
    [OP_LEAKYRELU] = "LeakyRelu",
    [OP_HARDSIGMOID] = "HardSigmoid",
    [OP_HARDSWISH] = "HardSwish",
    [OP_EXP] = "Exp",
    [OP_SQRT] = "Sqrt",
    [OP_NEG] = "Neg",
    [OP_ABS] = "Abs",
    [OP_ADD] = "Add",
    [OP_SUB] = "Sub",
    [OP_MUL] = "Mul",
    [OP_DIV] = "Div",
    [OP_MIN] = "Min",
    [OP_MAX] = "Max",
    [OP_QUANTIZELINEAR] = "QuantizeLinear",
    [OP_DEQUANTIZELINEAR] = "DequantizeLinear",
    [OP_FAKEQUANT] = "FakeQuant",
    [OP_RESHAPE] = "Reshape",
    [OP_FLATTEN] = "Flatten",
    [OP_SQUEEZE] = "Squeeze",
    [OP_UNSQUEEZE] = "Unsqueeze",
    [OP_TRANSPOSE] = "Transpose",
    [OP_CONCAT] = "Concat",
    [OP_PAD] = "Pad",
    [OP_SHAPE] = "Shape",
    [OP_GATHER] = "Gather",
    [OP_SLICE] = "Slice",
    [OP_CAST] = "Cast",
    [OP_CONSTANT] = "Constant",
    [OP_IDENTITY] = "Identity",
    [OP_DROPOUT] = "Dropout",
};

graph_op ops_lookup(const char *domain, const char *op_type)
{
    if (!op_type) return OP_UNKNOWN;
    if (domain && domain[0] && strcmp(domain, "ai.onnx") != 0) return OP_UNKNOWN;
    /* OP_FAKEQUANT is internal: a file naming "FakeQuant" is not ours. */
    for (int op = OP_UNKNOWN + 1; op < OP_COUNT; op++)
        if (op != OP_FAKEQUANT && strcmp(op_names[op], op_type) == 0) return (graph_op)op;
    return OP_UNKNOWN;
}

const char *ops_name(graph_op op)
{
    if ((int)op < 0 || op >= OP_COUNT || !op_names[op]) return "Unknown";
    return op_names[op];
}
