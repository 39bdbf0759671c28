// The C ABI of trt_shim.h over TensorRT and the CUDA runtime.
//
// Built on the robot, against its TensorRT and CUDA headers, into its own
// shared library (`offramp build-shim`; scripts/check-trt-shim.sh
// compile-checks it against several header sets):
//
//   c++ -std=c++17 -O2 -shared -fPIC trt_shim.cpp -o libofframp_trt_shim.so
//       -isystem <TensorRT include> -isystem <CUDA include> -L<CUDA lib> -lcudart -ldl
//
// Supports TensorRT 8.5 and 8.6 (JetPack 5 and 6.0), 10.x (JetPack 6.1+ and
// 7) and 11.x (JetPack 7.2+; 11 removed the pre-10.1 device-memory calls): the
// calls that differ are chosen by preprocessor. libnvinfer itself is opened
// with dlopen, and only `createInferRuntime_INTERNAL` and
// `getInferLibVersion` are taken from it; everything else is a virtual call.
#include "trt_shim.h"

#include <NvInferRuntime.h>
#include <cuda_runtime_api.h>

#include <dlfcn.h>

#include <cstdio>
#include <cstring>
#include <mutex>
#include <new>
#include <string>

namespace
{

using nvinfer1::ICudaEngine;
using nvinfer1::IExecutionContext;
using nvinfer1::ILogger;
using nvinfer1::IRuntime;

#define OFR_TRT_AT_LEAST(maj, min) \
    (NV_TENSORRT_MAJOR > (maj) || (NV_TENSORRT_MAJOR == (maj) && NV_TENSORRT_MINOR >= (min)))

thread_local std::string g_error;

void set_error(std::string what);

// Keeps the last message TensorRT logged at error severity, to append to the
// shim's own error when a call fails.
class Logger final : public ILogger
{
public:
    void log(Severity severity, char const* msg) noexcept override
    {
        if (severity > Severity::kERROR || msg == nullptr)
        {
            return;
        }
        try
        {
            std::lock_guard<std::mutex> lock(mMutex);
            mLast = msg;
        }
        catch (...)
        {
        }
    }

    std::string take()
    {
        std::lock_guard<std::mutex> lock(mMutex);
        std::string out;
        out.swap(mLast);
        return out;
    }

private:
    std::mutex mMutex;
    std::string mLast;
};

Logger g_logger;

using CreateRuntimeFn = void* (*) (void*, int32_t);
using LibVersionFn = int32_t (*)();

void set_error(std::string what)
{
    try
    {
        std::string trt = g_logger.take();
        if (!trt.empty())
        {
            what += ": ";
            what += trt;
        }
        g_error = std::move(what);
    }
    catch (...)
    {
    }
}

template <typename F>
int guarded(char const* what, F&& f)
{
    try
    {
        if (f())
        {
            return 0;
        }
        set_error(what);
    }
    catch (std::exception const& e)
    {
        set_error(std::string(what) + ": " + e.what());
    }
    catch (...)
    {
        set_error(what);
    }
    return -1;
}

// A CUDA runtime call's status as the shim's return code.
int cuda_call(char const* what, cudaError_t status)
{
    if (status == cudaSuccess)
    {
        return 0;
    }
    set_error(std::string(what) + ": " + cudaGetErrorName(status) + ": " + cudaGetErrorString(status));
    return -1;
}

} // namespace

struct ofr_trt_library
{
    void* handle;
    CreateRuntimeFn create_runtime;
    int32_t version;
};

struct ofr_trt_runtime
{
    IRuntime* runtime;
};

struct ofr_trt_engine
{
    ICudaEngine* engine;
};

struct ofr_trt_context
{
    IExecutionContext* context;
};

extern "C" {

int32_t ofr_trt_abi_version(void)
{
    return OFR_TRT_ABI_VERSION;
}

int32_t ofr_trt_header_version(void)
{
    return NV_TENSORRT_MAJOR * 10000 + NV_TENSORRT_MINOR * 100 + NV_TENSORRT_PATCH;
}

const char* ofr_trt_last_error(void)
{
    return g_error.c_str();
}

ofr_trt_library* ofr_trt_open(const char* library)
{
    char fallback[32];
    std::snprintf(fallback, sizeof fallback, "libnvinfer.so.%d", NV_TENSORRT_MAJOR);
    char const* name = library != nullptr ? library : fallback;
    void* handle = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr)
    {
        char const* why = dlerror();
        g_error = std::string("cannot open ") + name + ": " + (why != nullptr ? why : "unknown error");
        return nullptr;
    }
    auto version = reinterpret_cast<LibVersionFn>(dlsym(handle, "getInferLibVersion"));
    auto create = reinterpret_cast<CreateRuntimeFn>(dlsym(handle, "createInferRuntime_INTERNAL"));
    if (version == nullptr || create == nullptr)
    {
        g_error = std::string(name) + " lacks getInferLibVersion or createInferRuntime_INTERNAL: not a TensorRT library";
        dlclose(handle);
        return nullptr;
    }
    int32_t v = version();
    // 10.x and later encode versions as major*10000 + minor*100 + patch, 8.x as major*1000 + ...
    int32_t major = v >= 100000 ? v / 10000 : v / 1000;
    if (major != NV_TENSORRT_MAJOR)
    {
        g_error = std::string(name) + " is TensorRT " + std::to_string(major) + ".x but this shim was built against "
            + std::to_string(NV_TENSORRT_MAJOR) + ".x headers: rebuild it here with `offramp build-shim`";
        dlclose(handle);
        return nullptr;
    }
    // The handle stays open for the process's life: engines keep vtables into it.
    return new (std::nothrow) ofr_trt_library{handle, create, v};
}

int32_t ofr_trt_library_version(const ofr_trt_library* lib)
{
    return lib->version;
}

int ofr_trt_device_identity(ofr_trt_library*, char* name, size_t cap, int32_t* major, int32_t* minor)
{
    cudaDeviceProp prop{};
    if (cuda_call("cudaGetDeviceProperties", cudaGetDeviceProperties(&prop, 0)) != 0)
    {
        return -1;
    }
    if (cap > 0)
    {
        std::snprintf(name, cap, "%s", prop.name);
    }
    *major = prop.major;
    *minor = prop.minor;
    return 0;
}

int ofr_trt_malloc(ofr_trt_library*, void** ptr, size_t bytes)
{
    if (cuda_call("cudaMalloc", cudaMalloc(ptr, bytes)) != 0)
    {
        return -1;
    }
    if (cuda_call("cudaMemset", cudaMemset(*ptr, 0, bytes)) != 0)
    {
        cudaFree(*ptr);
        *ptr = nullptr;
        return -1;
    }
    return 0;
}

int ofr_trt_free(ofr_trt_library*, void* ptr)
{
    return cuda_call("cudaFree", cudaFree(ptr));
}

int ofr_trt_stream_create(ofr_trt_library*, void** stream)
{
    cudaStream_t s = nullptr;
    if (cuda_call("cudaStreamCreateWithFlags", cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking)) != 0)
    {
        return -1;
    }
    *stream = s;
    return 0;
}

int ofr_trt_stream_destroy(ofr_trt_library*, void* stream)
{
    return cuda_call("cudaStreamDestroy", cudaStreamDestroy(static_cast<cudaStream_t>(stream)));
}

int ofr_trt_stream_synchronize(ofr_trt_library*, void* stream)
{
    return cuda_call("cudaStreamSynchronize", cudaStreamSynchronize(static_cast<cudaStream_t>(stream)));
}

int ofr_trt_memcpy_htod(ofr_trt_library*, void* dst, const void* src, size_t bytes, void* stream)
{
    return cuda_call("cudaMemcpyAsync (host to device)",
        cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, static_cast<cudaStream_t>(stream)));
}

int ofr_trt_memcpy_dtoh(ofr_trt_library*, void* dst, const void* src, size_t bytes, void* stream)
{
    return cuda_call("cudaMemcpyAsync (device to host)",
        cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, static_cast<cudaStream_t>(stream)));
}

int ofr_trt_event_create(ofr_trt_library*, void** event)
{
    cudaEvent_t e = nullptr;
    if (cuda_call("cudaEventCreate", cudaEventCreate(&e)) != 0)
    {
        return -1;
    }
    *event = e;
    return 0;
}

int ofr_trt_event_destroy(ofr_trt_library*, void* event)
{
    return cuda_call("cudaEventDestroy", cudaEventDestroy(static_cast<cudaEvent_t>(event)));
}

int ofr_trt_event_record(ofr_trt_library*, void* event, void* stream)
{
    return cuda_call(
        "cudaEventRecord", cudaEventRecord(static_cast<cudaEvent_t>(event), static_cast<cudaStream_t>(stream)));
}

int ofr_trt_event_elapsed_ms(ofr_trt_library*, void* start, void* end, float* ms)
{
    return cuda_call("cudaEventElapsedTime",
        cudaEventElapsedTime(ms, static_cast<cudaEvent_t>(start), static_cast<cudaEvent_t>(end)));
}

ofr_trt_runtime* ofr_trt_runtime_create(ofr_trt_library* lib)
{
    ofr_trt_runtime* out = nullptr;
    guarded("createInferRuntime failed", [&] {
        auto* rt = static_cast<IRuntime*>(lib->create_runtime(&g_logger, NV_TENSORRT_VERSION));
        if (rt == nullptr)
        {
            return false;
        }
        out = new ofr_trt_runtime{rt};
        return true;
    });
    return out;
}

void ofr_trt_runtime_destroy(ofr_trt_runtime* runtime)
{
    if (runtime != nullptr)
    {
        delete runtime->runtime;
        delete runtime;
    }
}

ofr_trt_engine* ofr_trt_engine_deserialize(ofr_trt_runtime* runtime, const void* plan, size_t len)
{
    ofr_trt_engine* out = nullptr;
    guarded("deserializeCudaEngine rejected the plan", [&] {
        ICudaEngine* e = runtime->runtime->deserializeCudaEngine(plan, len);
        if (e == nullptr)
        {
            return false;
        }
        out = new ofr_trt_engine{e};
        return true;
    });
    return out;
}

void ofr_trt_engine_destroy(ofr_trt_engine* engine)
{
    if (engine != nullptr)
    {
        delete engine->engine;
        delete engine;
    }
}

int32_t ofr_trt_engine_io_count(const ofr_trt_engine* engine)
{
    return engine->engine->getNbIOTensors();
}

int ofr_trt_engine_io(const ofr_trt_engine* engine, int32_t index, const char** name, int32_t* is_input,
    int32_t* dtype, int64_t* dims, int32_t* nb_dims)
{
    return guarded("getIOTensorName: index out of range", [&] {
        char const* n = engine->engine->getIOTensorName(index);
        if (n == nullptr)
        {
            return false;
        }
        *name = n;
        *is_input = engine->engine->getTensorIOMode(n) == nvinfer1::TensorIOMode::kINPUT ? 1 : 0;
        *dtype = static_cast<int32_t>(engine->engine->getTensorDataType(n));
        auto shape = engine->engine->getTensorShape(n);
        int32_t nb = shape.nbDims < 0 ? 0 : shape.nbDims;
        if (nb > 8)
        {
            nb = 8;
        }
        for (int32_t k = 0; k < nb; ++k)
        {
            dims[k] = static_cast<int64_t>(shape.d[k]);
        }
        *nb_dims = nb;
        return true;
    });
}

int64_t ofr_trt_engine_device_memory_size(const ofr_trt_engine* engine)
{
#if OFR_TRT_AT_LEAST(10, 1)
    return engine->engine->getDeviceMemorySizeV2();
#else
    return static_cast<int64_t>(engine->engine->getDeviceMemorySize());
#endif
}

ofr_trt_context* ofr_trt_context_create(ofr_trt_engine* engine)
{
    ofr_trt_context* out = nullptr;
    guarded("createExecutionContext (user-managed memory) failed", [&] {
#if OFR_TRT_AT_LEAST(10, 0)
        IExecutionContext* c
            = engine->engine->createExecutionContext(nvinfer1::ExecutionContextAllocationStrategy::kUSER_MANAGED);
#else
        IExecutionContext* c = engine->engine->createExecutionContextWithoutDeviceMemory();
#endif
        if (c == nullptr)
        {
            return false;
        }
        out = new ofr_trt_context{c};
        return true;
    });
    return out;
}

void ofr_trt_context_destroy(ofr_trt_context* context)
{
    if (context != nullptr)
    {
        delete context->context;
        delete context;
    }
}

int ofr_trt_context_set_device_memory(ofr_trt_context* context, void* memory, int64_t size)
{
    return guarded("setDeviceMemory failed", [&] {
#if OFR_TRT_AT_LEAST(10, 1)
        context->context->setDeviceMemoryV2(memory, size);
#else
        (void) size;
        context->context->setDeviceMemory(memory);
#endif
        return true;
    });
}

int ofr_trt_context_set_tensor_address(ofr_trt_context* context, const char* name, void* address)
{
    return guarded("setTensorAddress failed", [&] { return context->context->setTensorAddress(name, address); });
}

int ofr_trt_context_enqueue(ofr_trt_context* context, void* stream)
{
    return guarded(
        "enqueueV3 failed", [&] { return context->context->enqueueV3(static_cast<cudaStream_t>(stream)); });
}

int ofr_trt_graph_begin(ofr_trt_library*, void* stream)
{
    // Thread-local: another thread's CUDA calls do not invalidate the capture.
    return cuda_call("cudaStreamBeginCapture",
        cudaStreamBeginCapture(static_cast<cudaStream_t>(stream), cudaStreamCaptureModeThreadLocal));
}

int ofr_trt_graph_end(ofr_trt_library*, void* stream, void** graph)
{
    cudaGraph_t g = nullptr;
    cudaError_t status = cudaStreamEndCapture(static_cast<cudaStream_t>(stream), &g);
    if (status != cudaSuccess)
    {
        if (g != nullptr)
        {
            cudaGraphDestroy(g);
        }
        return cuda_call("cudaStreamEndCapture", status);
    }
    cudaGraphExec_t exec = nullptr;
    // cudaGraphInstantiateWithFlags: the same signature in CUDA 11.4 (JetPack 5) and 12/13.
    int rc = cuda_call("cudaGraphInstantiateWithFlags", cudaGraphInstantiateWithFlags(&exec, g, 0));
    cudaGraphDestroy(g);
    if (rc != 0)
    {
        return -1;
    }
    *graph = exec;
    return 0;
}

int ofr_trt_graph_launch(ofr_trt_library*, void* graph, void* stream)
{
    return cuda_call("cudaGraphLaunch",
        cudaGraphLaunch(static_cast<cudaGraphExec_t>(graph), static_cast<cudaStream_t>(stream)));
}

int ofr_trt_graph_destroy(ofr_trt_library*, void* graph)
{
    return cuda_call("cudaGraphExecDestroy", cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(graph)));
}

} // extern "C"
