/* The C ABI between offramp and TensorRT: the few runtime calls the
 * TensorRT backend needs, plus the CUDA calls around them.
 *
 * TensorRT has no C API and its C++ vtables differ between major versions,
 * so offramp does not link it. This shim is a shared library of its own,
 * built on the robot against the TensorRT and CUDA headers installed there
 * (`offramp build-shim`, run by the bundle's install script) and opened by
 * offramp at run time. One offramp binary therefore serves JetPack 5
 * (TensorRT 8.6), 6 (10.x) and 7 (10.x/11.x): only this library differs.
 *
 * The Rust side declares the same entry points once
 * (engines/tensorrt/src/abi.rs) and refuses a library whose
 * `ofr_trt_abi_version` differs from OFR_TRT_ABI_VERSION. A test double
 * (engines/tensorrt/shim/trt_double.c) implements the same ABI on the CPU so
 * that CI drives the real Rust backend.
 *
 * Every call that can fail returns 0 on success and -1 on failure (or NULL
 * for constructors), with the reason, including the last error TensorRT
 * logged, readable from `ofr_trt_last_error` on the same thread.
 *
 * Streams and events are CUDA handles (cudaStream_t, cudaEvent_t); device
 * pointers are CUDA device addresses in device 0's primary context, so a
 * buffer from another CUDA user of that context (e.g. the preprocessing
 * kernels) can be handed to an engine directly.
 */
#ifndef OFFRAMP_TRT_SHIM_H
#define OFFRAMP_TRT_SHIM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped whenever an entry point below changes. */
#define OFR_TRT_ABI_VERSION 3

typedef struct ofr_trt_library ofr_trt_library;
typedef struct ofr_trt_runtime ofr_trt_runtime;
typedef struct ofr_trt_engine ofr_trt_engine;
typedef struct ofr_trt_context ofr_trt_context;

/* OFR_TRT_ABI_VERSION of the library. */
int32_t ofr_trt_abi_version(void);

/* The TensorRT version the shim was compiled against, as
 * major * 10000 + minor * 100 + patch. */
int32_t ofr_trt_header_version(void);

const char* ofr_trt_last_error(void);

/* Opens libnvinfer (`library`; NULL: libnvinfer.so.<major of the headers>)
 * and resolves its entry points. Fails if the library's major version
 * differs from the headers': the C++ vtables differ between majors. */
ofr_trt_library* ofr_trt_open(const char* library);

/* getInferLibVersion() of the opened library, in its own encoding
 * (8.x: major * 1000 + minor * 100 + patch; 10.x and later:
 * major * 10000 + minor * 100 + patch). */
int32_t ofr_trt_library_version(const ofr_trt_library* lib);

/* CUDA device 0: its name (NUL-terminated, truncated to `cap`) and compute
 * capability. */
int ofr_trt_device_identity(ofr_trt_library* lib, char* name, size_t cap, int32_t* major, int32_t* minor);

/* Device memory, zero-filled. */
int ofr_trt_malloc(ofr_trt_library* lib, void** ptr, size_t bytes);
int ofr_trt_free(ofr_trt_library* lib, void* ptr);

/* A non-blocking stream. */
int ofr_trt_stream_create(ofr_trt_library* lib, void** stream);
int ofr_trt_stream_destroy(ofr_trt_library* lib, void* stream);
int ofr_trt_stream_synchronize(ofr_trt_library* lib, void* stream);

/* Asynchronous copies on `stream`: host memory must stay valid, and is not
 * written (device to host), until the stream is synchronized. */
int ofr_trt_memcpy_htod(ofr_trt_library* lib, void* dst, const void* src, size_t bytes, void* stream);
int ofr_trt_memcpy_dtoh(ofr_trt_library* lib, void* dst, const void* src, size_t bytes, void* stream);

/* Events with timing enabled. */
int ofr_trt_event_create(ofr_trt_library* lib, void** event);
int ofr_trt_event_destroy(ofr_trt_library* lib, void* event);
int ofr_trt_event_record(ofr_trt_library* lib, void* event, void* stream);
/* Milliseconds between two recorded, completed events. */
int ofr_trt_event_elapsed_ms(ofr_trt_library* lib, void* start, void* end, float* ms);

ofr_trt_runtime* ofr_trt_runtime_create(ofr_trt_library* lib);
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
/* Enqueue one inference on `stream`. */
int ofr_trt_context_enqueue(ofr_trt_context* context, void* stream);

/* CUDA graphs: the work queued on `stream` between begin and end (only
 * inferences: no host copies, events or synchronization) is captured
 * instead of run, and instantiated into `graph`, which
 * ofr_trt_graph_launch replays on a stream with one launch. TensorRT asks
 * for one ordinary enqueue of a context before its capture. A capture that
 * TensorRT or CUDA refuses fails at end (always call it after begin: it
 * also takes the stream out of capture mode). */
int ofr_trt_graph_begin(ofr_trt_library* lib, void* stream);
int ofr_trt_graph_end(ofr_trt_library* lib, void* stream, void** graph);
int ofr_trt_graph_launch(ofr_trt_library* lib, void* graph, void* stream);
int ofr_trt_graph_destroy(ofr_trt_library* lib, void* graph);

#ifdef __cplusplus
}
#endif

#endif
