"""A minimal ONNX Runtime binding over its C API (ctypes), for the seed peer.

Debian has no python3-onnxruntime; the C library ships inside the npm package
onnxruntime-node (1.30.0). This module exposes the small part of the Python
package the seed's service uses:

    sess = InferenceSession(path, intra_op_num_threads=1)
    sess.get_inputs()[0].name / .shape / .type
    outputs = sess.run(None, {name: ndarray})   # list of ndarrays

OrtGetApiBase()->GetApi(version) returns the OrtApi struct: a table of
function pointers whose order is fixed by onnxruntime_c_api.h (entries are
only ever appended, so an index stays valid in later releases). The indices
below are those of that header. Every OrtStatus is checked; a failure raises
OrtError with ORT's own message.

ORT_LIB overrides where the library is looked up (default: the copy under
node_modules/onnxruntime-node/bin/*/linux/x64 of the repository).
"""
import ctypes as C
import glob
import os

import numpy as np

ORT_API_VERSION = 30  # onnxruntime 1.30

# Indices into struct OrtApi (onnxruntime_c_api.h).
_CreateStatus = 0
_GetErrorMessage = 2
_CreateEnv = 3
_CreateSession = 7
_Run = 9
_CreateSessionOptions = 10
_SetSessionGraphOptimizationLevel = 23
_SetIntraOpNumThreads = 24
_SetInterOpNumThreads = 25
_SessionGetInputCount = 30
_SessionGetOutputCount = 31
_SessionGetInputTypeInfo = 33
_SessionGetInputName = 36
_SessionGetOutputName = 37
_CreateTensorWithDataAsOrtValue = 49
_GetTensorMutableData = 51
_CastTypeInfoToTensorInfo = 55
_GetTensorElementType = 60
_GetDimensionsCount = 61
_GetDimensions = 62
_GetTensorTypeAndShape = 65
_CreateCpuMemoryInfo = 69
_AllocatorFree = 76
_GetAllocatorWithDefaultOptions = 78
_ReleaseEnv = 92
_ReleaseStatus = 93
_ReleaseMemoryInfo = 94
_ReleaseSession = 95
_ReleaseValue = 96
_ReleaseTypeInfo = 98
_ReleaseTensorTypeAndShapeInfo = 99
_ReleaseSessionOptions = 100
_API_SIZE = 101

# ONNXTensorElementDataType <-> numpy
_NP = {1: np.float32, 2: np.uint8, 3: np.int8, 5: np.int16, 6: np.int32, 7: np.int64, 11: np.float64}
_TYPE_NAMES = {1: "tensor(float)", 2: "tensor(uint8)", 3: "tensor(int8)", 5: "tensor(int16)",
               6: "tensor(int32)", 7: "tensor(int64)", 11: "tensor(double)"}
_ORT_LOGGING_LEVEL_WARNING = 2
_ORT_ENABLE_ALL = 99
_ORT_ARENA_ALLOCATOR = 1
_ORT_MEM_TYPE_DEFAULT = 0

P = C.c_void_p
PP = C.POINTER(C.c_void_p)
# Every status-returning entry: OrtStatus* f(...)
_SIGS = {
    _CreateStatus: (P, [C.c_int, C.c_char_p]),
    _GetErrorMessage: (C.c_char_p, [P]),
    _CreateEnv: (P, [C.c_int, C.c_char_p, PP]),
    _CreateSession: (P, [P, C.c_char_p, P, PP]),
    _Run: (P, [P, P, C.POINTER(C.c_char_p), PP, C.c_size_t, C.POINTER(C.c_char_p), C.c_size_t, PP]),
    _CreateSessionOptions: (P, [PP]),
    _SetSessionGraphOptimizationLevel: (P, [P, C.c_int]),
    _SetIntraOpNumThreads: (P, [P, C.c_int]),
    _SetInterOpNumThreads: (P, [P, C.c_int]),
    _SessionGetInputCount: (P, [P, C.POINTER(C.c_size_t)]),
    _SessionGetOutputCount: (P, [P, C.POINTER(C.c_size_t)]),
    _SessionGetInputTypeInfo: (P, [P, C.c_size_t, PP]),
    _SessionGetInputName: (P, [P, C.c_size_t, P, C.POINTER(C.c_char_p)]),
    _SessionGetOutputName: (P, [P, C.c_size_t, P, C.POINTER(C.c_char_p)]),
    _CreateTensorWithDataAsOrtValue: (P, [P, P, C.c_size_t, C.POINTER(C.c_int64), C.c_size_t, C.c_int, PP]),
    _GetTensorMutableData: (P, [P, PP]),
    _CastTypeInfoToTensorInfo: (P, [P, PP]),
    _GetTensorElementType: (P, [P, C.POINTER(C.c_int)]),
    _GetDimensionsCount: (P, [P, C.POINTER(C.c_size_t)]),
    _GetDimensions: (P, [P, C.POINTER(C.c_int64), C.c_size_t]),
    _GetTensorTypeAndShape: (P, [P, PP]),
    _CreateCpuMemoryInfo: (P, [C.c_int, C.c_int, PP]),
    _AllocatorFree: (P, [P, P]),
    _GetAllocatorWithDefaultOptions: (P, [PP]),
}
_RELEASES = (_ReleaseEnv, _ReleaseStatus, _ReleaseMemoryInfo, _ReleaseSession, _ReleaseValue,
             _ReleaseTypeInfo, _ReleaseTensorTypeAndShapeInfo, _ReleaseSessionOptions)


class OrtError(RuntimeError):
    pass


class _OrtApiBase(C.Structure):
    _fields_ = [("GetApi", C.CFUNCTYPE(P, C.c_uint32)), ("GetVersionString", C.CFUNCTYPE(C.c_char_p))]


def _find_lib():
    if os.environ.get("ORT_LIB"):
        return os.environ["ORT_LIB"]
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    hits = sorted(glob.glob(os.path.join(root, "node_modules/onnxruntime-node/bin/napi-v*/linux/x64/libonnxruntime.so.1")))
    if not hits:
        raise OrtError("libonnxruntime.so.1 not found under node_modules/onnxruntime-node (npm install, or set ORT_LIB)")
    return hits[-1]


class _Api:
    def __init__(self):
        self.lib = C.CDLL(_find_lib())
        self.lib.OrtGetApiBase.restype = C.POINTER(_OrtApiBase)
        base = self.lib.OrtGetApiBase().contents
        self.version = base.GetVersionString().decode()
        table = base.GetApi(ORT_API_VERSION)
        if not table:
            raise OrtError("ONNX Runtime %s does not offer API version %d" % (self.version, ORT_API_VERSION))
        ptrs = C.cast(table, C.POINTER(P * _API_SIZE)).contents
        self.fn = {}
        for i, (res, args) in _SIGS.items():
            self.fn[i] = C.CFUNCTYPE(res, *args)(ptrs[i])
        for i in _RELEASES:
            self.fn[i] = C.CFUNCTYPE(None, P)(ptrs[i])
        self.check(_GetAllocatorWithDefaultOptions, C.byref(alloc := P()))
        self.allocator = alloc
        self.check(_CreateCpuMemoryInfo, _ORT_ARENA_ALLOCATOR, _ORT_MEM_TYPE_DEFAULT, C.byref(mi := P()))
        self.cpu = mi
        self.check(_CreateEnv, _ORT_LOGGING_LEVEL_WARNING, b"seed", C.byref(env := P()))
        self.env = env

    def check(self, index, *args):
        status = self.fn[index](*args)
        if status:
            msg = self.fn[_GetErrorMessage](status).decode(errors="replace")
            self.fn[_ReleaseStatus](status)
            raise OrtError(msg)

    def release(self, index, ptr):
        if ptr:
            self.fn[index](ptr)

    def name(self, index, session, i):
        s = C.c_char_p()
        self.check(index, session, i, self.allocator, C.byref(s))
        try:
            return s.value.decode()
        finally:
            self.check(_AllocatorFree, self.allocator, C.cast(s, P))


_api = None


def _get_api():
    global _api
    if _api is None:
        _api = _Api()
    return _api


def get_version_string():
    return _get_api().version


class NodeArg:
    def __init__(self, name, shape, type_):
        self.name, self.shape, self.type = name, shape, type_


class InferenceSession:
    def __init__(self, path, intra_op_num_threads=0, inter_op_num_threads=1):
        api = _get_api()
        self._api = api
        self._session = P()
        opts = P()
        try:
            api.check(_CreateSessionOptions, C.byref(opts))
            api.check(_SetIntraOpNumThreads, opts, int(intra_op_num_threads))
            api.check(_SetInterOpNumThreads, opts, int(inter_op_num_threads))
            api.check(_SetSessionGraphOptimizationLevel, opts, _ORT_ENABLE_ALL)
            api.check(_CreateSession, api.env, os.fsencode(path), opts, C.byref(self._session))
        finally:
            api.release(_ReleaseSessionOptions, opts)
        n = C.c_size_t()
        api.check(_SessionGetInputCount, self._session, C.byref(n))
        self._inputs = [self._input_arg(i) for i in range(n.value)]
        api.check(_SessionGetOutputCount, self._session, C.byref(n))
        self._outputs = [api.name(_SessionGetOutputName, self._session, i) for i in range(n.value)]

    def _input_arg(self, i):
        api = self._api
        name = api.name(_SessionGetInputName, self._session, i)
        info = P()
        api.check(_SessionGetInputTypeInfo, self._session, i, C.byref(info))
        try:
            tinfo = P()  # owned by info
            api.check(_CastTypeInfoToTensorInfo, info, C.byref(tinfo))
            if not tinfo:
                return NodeArg(name, [], "non-tensor")
            et = C.c_int()
            api.check(_GetTensorElementType, tinfo, C.byref(et))
            nd = C.c_size_t()
            api.check(_GetDimensionsCount, tinfo, C.byref(nd))
            dims = (C.c_int64 * nd.value)()
            api.check(_GetDimensions, tinfo, dims, nd.value)
            shape = [d if d >= 0 else None for d in dims]
            return NodeArg(name, shape, _TYPE_NAMES.get(et.value, "tensor(%d)" % et.value))
        finally:
            api.release(_ReleaseTypeInfo, info)

    def get_inputs(self):
        return list(self._inputs)

    def get_outputs(self):
        return [NodeArg(n, None, None) for n in self._outputs]

    def run(self, output_names, feeds):
        api = self._api
        names = output_names or self._outputs
        in_names = list(feeds)
        arrays = [np.ascontiguousarray(feeds[k]) for k in in_names]
        values = (P * len(arrays))()
        outs = (P * len(names))()
        codes = {v: k for k, v in _NP.items()}
        try:
            for j, a in enumerate(arrays):
                code = codes.get(a.dtype.type)
                if code is None:
                    raise OrtError("input %s: dtype %s is not supported" % (in_names[j], a.dtype))
                shape = (C.c_int64 * a.ndim)(*a.shape)
                v = P()
                api.check(_CreateTensorWithDataAsOrtValue, api.cpu, a.ctypes.data_as(P), a.nbytes,
                          shape, a.ndim, code, C.byref(v))
                values[j] = v
            c_in = (C.c_char_p * len(in_names))(*[n.encode() for n in in_names])
            c_out = (C.c_char_p * len(names))(*[n.encode() for n in names])
            api.check(_Run, self._session, None, c_in, values, len(arrays), c_out, len(names), outs)
            return [self._to_numpy(outs[j]) for j in range(len(names))]
        finally:
            for v in list(values) + list(outs):
                api.release(_ReleaseValue, v)

    def _to_numpy(self, value):
        api = self._api
        info = P()
        api.check(_GetTensorTypeAndShape, value, C.byref(info))
        try:
            et = C.c_int()
            api.check(_GetTensorElementType, info, C.byref(et))
            nd = C.c_size_t()
            api.check(_GetDimensionsCount, info, C.byref(nd))
            dims = (C.c_int64 * nd.value)()
            api.check(_GetDimensions, info, dims, nd.value)
        finally:
            api.release(_ReleaseTensorTypeAndShapeInfo, info)
        dtype = _NP.get(et.value)
        if dtype is None:
            raise OrtError("output element type %d is not supported" % et.value)
        data = P()
        api.check(_GetTensorMutableData, value, C.byref(data))
        shape = tuple(dims)
        count = int(np.prod(shape)) if shape else 1
        buf = (C.c_char * (count * np.dtype(dtype).itemsize)).from_address(data.value) if count else b""
        return np.frombuffer(buf, dtype=dtype, count=count).reshape(shape).copy()

    def __del__(self):
        if getattr(self, "_session", None) and self._api:
            self._api.release(_ReleaseSession, self._session)
            self._session = None
