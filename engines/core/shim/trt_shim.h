/* A C ABI over the few TensorRT runtime calls offramp needs.
 *
 * TensorRT has no C API, and its C++ classes are only usable from Rust through
 * a shim. Everything here goes through virtual calls on objects created by
 * `createInferRuntime_INTERNAL`, the one symbol the shim takes from libnvinfer,
 * which it opens with dlopen: one offramp binary runs with or without
 * TensorRT installed.
 *
 * Every call that can fail returns 0 on success and -1 on failure, with the
 * reason (including the last error TensorRT logged) readable from
 * `ofr_trt_last_error` on the same thread.
 */
#ifndef OFFRAMP_TRT_SHIM_H
#define OFFRAMP_TRT_SHIM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ofr_trt_runtime ofr_trt_runtime;
typedef struct ofr_trt_engine ofr_trt_engine;
typedef struct ofr_trt_context ofr_trt_context;

/* The TensorRT major.minor.patch the shim was compiled against, as
 * major * 10000 + minor * 100 + patch (NV_TENSORRT_VERSION's layout in 10.x). */
int32_t ofr_trt_header_version(void);

/* dlopen `library` (NULL: libnvinfer.so.<major of the headers>) and resolve its
 * entry points. Writes the library's own version (getInferLibVersion) to
 * `lib_version`. Fails if the library's major version differs from the
 * headers': the C++ vtables differ between majors. */
int ofr_trt_open(const char* library, int32_t* lib_version);

const char* ofr_trt_last_error(void);

ofr_trt_runtime* ofr_trt_runtime_create(void);
void ofr_trt_runtime_destroy(ofr_trt_runtime* runtime);

ofr_trt_engine* ofr_trt_engine_deserialize(ofr_trt_runtime* runtime, const void* plan, size_t len);
void ofr_trt_engine_destroy(ofr_trt_engine* engine);

int32_t ofr_trt_engine_io_count(const ofr_trt_engine* engine);

/* IO tensor `index`: its name (owned by the engine), whether it is an input,
 * its data type (TensorRT's DataType value; 0 = float32) and its dimensions
 * (at most 8; -1 marks a dynamic one). */
int ofr_trt_engine_io(const ofr_trt_engine* engine, int32_t index, const char** name, int32_t* is_input,
    int32_t* dtype, int64_t* dims, int32_t* nb_dims);

/* Bytes of activation scratch one execution context of this engine needs. */
int64_t ofr_trt_engine_device_memory_size(const ofr_trt_engine* engine);

/* A context whose activation memory the caller supplies (exits run one after
 * another, so one scratch buffer serves them all). */
ofr_trt_context* ofr_trt_context_create(ofr_trt_engine* engine);
void ofr_trt_context_destroy(ofr_trt_context* context);
int ofr_trt_context_set_device_memory(ofr_trt_context* context, void* memory, int64_t size);
int ofr_trt_context_set_tensor_address(ofr_trt_context* context, const char* name, void* address);
/* Enqueue one inference on `stream` (a CUstream / cudaStream_t). */
int ofr_trt_context_enqueue(ofr_trt_context* context, void* stream);

#ifdef __cplusplus
}
#endif

#endif
