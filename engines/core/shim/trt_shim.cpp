// C ABI over the TensorRT runtime; see trt_shim.h for why and how.
//
// Compiles against the TensorRT 10 headers (10.1+ uses the V2 device-memory
// calls) and, where cheap, 8.6's: the older calls are chosen by preprocessor.

#include "trt_shim.h"

#include <NvInferRuntime.h>

#include <dlfcn.h>

#include <cstdio>
#include <cstring>
#include <mutex>
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

std::mutex g_open_mutex;
CreateRuntimeFn g_create_runtime = nullptr;

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

} // namespace

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

int32_t ofr_trt_header_version(void)
{
    return NV_TENSORRT_MAJOR * 10000 + NV_TENSORRT_MINOR * 100 + NV_TENSORRT_PATCH;
}

const char* ofr_trt_last_error(void)
{
    return g_error.c_str();
}

int ofr_trt_open(const char* library, int32_t* lib_version)
{
    std::lock_guard<std::mutex> lock(g_open_mutex);
    char fallback[32];
    std::snprintf(fallback, sizeof fallback, "libnvinfer.so.%d", NV_TENSORRT_MAJOR);
    char const* name = library != nullptr ? library : fallback;
    void* handle = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr)
    {
        char const* why = dlerror();
        g_error = std::string("cannot open ") + name + ": " + (why != nullptr ? why : "unknown error");
        return -1;
    }
    auto version = reinterpret_cast<LibVersionFn>(dlsym(handle, "getInferLibVersion"));
    auto create = reinterpret_cast<CreateRuntimeFn>(dlsym(handle, "createInferRuntime_INTERNAL"));
    if (version == nullptr || create == nullptr)
    {
        g_error = std::string(name) + " lacks getInferLibVersion or createInferRuntime_INTERNAL: not a TensorRT library";
        return -1;
    }
    int32_t v = version();
    if (lib_version != nullptr)
    {
        *lib_version = v;
    }
    // 10.x encodes versions as major*10000 + minor*100 + patch, 8.x as major*1000 + ...
    int32_t major = v >= 100000 ? v / 10000 : v / 1000;
    if (major != NV_TENSORRT_MAJOR)
    {
        g_error = std::string(name) + " is TensorRT " + std::to_string(major) + ".x but offramp's shim was built against "
            + std::to_string(NV_TENSORRT_MAJOR) + ".x headers";
        return -1;
    }
    g_create_runtime = create;
    return 0;
}

ofr_trt_runtime* ofr_trt_runtime_create(void)
{
    ofr_trt_runtime* out = nullptr;
    guarded("createInferRuntime failed", [&] {
        if (g_create_runtime == nullptr)
        {
            throw std::runtime_error("ofr_trt_open was not called");
        }
        auto* rt = static_cast<IRuntime*>(g_create_runtime(&g_logger, NV_TENSORRT_VERSION));
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

} // extern "C"
