/* A test double of the TensorRT shim (trt_shim.h), on the CPU.
 *
 * CI has no GPU and no TensorRT, yet the Rust TensorRT backend (binding
 * tensors by name, the shared activation scratch, copies and stream order,
 * timing events, version and GPU refusal) must run there. This library
 * implements the shim's entry points with deterministic CPU work and checks
 * what TensorRT and CUDA would punish:
 *
 *  - device memory is a table of allocations; every device pointer handed to
 *    a copy, a tensor address or the scratch must lie inside one live
 *    allocation with room for the bytes used (checked again when the work
 *    runs, so a buffer freed too early is caught);
 *  - streams defer their work: copies, inferences and event records queue up
 *    and run, in order, only at ofr_trt_stream_synchronize, so host memory
 *    read before the stream is synchronized holds stale data, as on a GPU;
 *  - an inference needs every IO tensor's address and a scratch at least as
 *    large as ofr_trt_engine_device_memory_size, and writes through it;
 *  - a CUDA graph capture records inferences only: a copy, an event or a
 *    synchronization on a capturing stream fails and invalidates the
 *    capture, as does an inference whose plan says `capture no` (TensorRT
 *    refuses capture for some engines); a graph replays its inferences with
 *    the bindings they had when captured.
 *
 * "libnvinfer" is a text file naming what the double pretends to be:
 *
 *     offramp-trt-double-library 1
 *     version 100300             # getInferLibVersion()
 *     device Orin                # CUDA device 0's name
 *     compute 8 7                # its compute capability
 *
 * A plan is a text file too:
 *
 *     offramp-trt-double-plan 1
 *     built 100300               # refused unless it equals the library's version
 *     scratch 4096               # activation bytes a context needs
 *     cost_us 250                # device time of one inference (event clock)
 *     input image 0 1 3 8 8      # name, DataType (0 = float32), dims
 *     output feature 0 1 16
 *     weight feature image 0.5   # optional; default 1/(i+1) + o/8
 *     bias feature 0.25          # optional; default 0
 *     capture no                 # optional; enqueue refuses graph capture
 *
 * Output o, element k = bias(o) + sum over inputs i of w(o,i) * in_i[k mod len(i)],
 * computed into the scratch first and then copied to the output.
 */
#include "trt_shim.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_IO 8
#define MAX_DIMS 8

static __thread char g_error[512];

static void fail(const char* fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_error, sizeof g_error, fmt, ap);
    va_end(ap);
}

typedef struct
{
    char* base;
    size_t bytes;
} alloc_t;

typedef enum
{
    OP_COPY,
    OP_EXEC,
    OP_EVENT,
} op_kind;

typedef struct ev_t
{
    int recorded;
    double at_us;
} ev_t;

typedef struct op_t op_t;

typedef struct
{
    op_t* ops;
    size_t len, cap;
    /* Graph capture: ops from `mark` on are being captured, not queued. */
    int capturing, invalidated;
    size_t mark;
} stream_t;

typedef struct
{
    op_t* ops;
    size_t len;
} graph_t;

struct ofr_trt_library
{
    pthread_mutex_t lock;
    int32_t version;
    char device[128];
    int32_t major, minor;
    alloc_t* allocs;
    size_t nallocs, cap_allocs;
    double clock_us;
    /* For tests: inferences run, synchronizations, graphs captured and
     * launched. */
    int64_t executed, synchronized, captured, launched;
    /* Copies queued host to device and device to host. */
    int64_t htod, dtoh;
};

typedef struct
{
    char name[64];
    int is_input;
    int32_t dtype;
    int64_t dims[MAX_DIMS];
    int32_t nb;
    size_t elements;
} tensor_t;

struct ofr_trt_runtime
{
    ofr_trt_library* lib;
};

struct ofr_trt_engine
{
    ofr_trt_library* lib;
    tensor_t io[2 * MAX_IO];
    int32_t nio;
    int64_t scratch;
    double cost_us;
    double weight[2 * MAX_IO][2 * MAX_IO]; /* [output io index][input io index] */
    double bias[2 * MAX_IO];
    int capture_refused;
};

struct ofr_trt_context
{
    ofr_trt_engine* engine;
    void* address[2 * MAX_IO];
    void* memory;
    int64_t memory_size;
};

struct op_t
{
    op_kind kind;
    /* OP_COPY */
    void* dst;
    const void* src;
    size_t bytes;
    int check_dst, check_src;
    /* OP_EXEC: the context's bindings as they were at enqueue. */
    ofr_trt_context snapshot;
    /* OP_EVENT */
    ev_t* event;
};

/* Is [p, p + bytes) inside one live allocation? Caller holds the lock. */
static int in_alloc(ofr_trt_library* lib, const void* p, size_t bytes)
{
    const char* c = (const char*) p;
    for (size_t i = 0; i < lib->nallocs; ++i)
    {
        alloc_t* a = &lib->allocs[i];
        if (c >= a->base && c <= a->base + a->bytes && bytes <= (size_t) (a->base + a->bytes - c))
        {
            return 1;
        }
    }
    return 0;
}

static int check_device(ofr_trt_library* lib, const void* p, size_t bytes, const char* what)
{
    if (p == NULL || !in_alloc(lib, p, bytes))
    {
        fail("%s: %zu bytes at %p are not inside one live device allocation", what, bytes, p);
        return -1;
    }
    return 0;
}

/* Every library opened, by path, for the stats hook at the end. */
#define MAX_LIBRARIES 256
static struct
{
    char path[512];
    ofr_trt_library* lib;
} g_opened[MAX_LIBRARIES];
static size_t g_nopened;
static pthread_mutex_t g_registry_lock = PTHREAD_MUTEX_INITIALIZER;

int32_t ofr_trt_abi_version(void)
{
    return OFR_TRT_ABI_VERSION;
}

/* The double stands for a shim built against TensorRT 10.3.0's headers. */
int32_t ofr_trt_header_version(void)
{
    return 100300;
}

const char* ofr_trt_last_error(void)
{
    return g_error;
}

static char* read_file(const char* path, size_t* len)
{
    FILE* f = fopen(path, "rb");
    if (f == NULL)
    {
        return NULL;
    }
    size_t cap = 4096, n = 0;
    char* buf = malloc(cap + 1);
    size_t got;
    while (buf != NULL && (got = fread(buf + n, 1, cap - n, f)) > 0)
    {
        n += got;
        if (n == cap)
        {
            cap *= 2;
            char* more = realloc(buf, cap + 1);
            if (more == NULL)
            {
                free(buf);
                buf = NULL;
            }
            buf = more;
        }
    }
    fclose(f);
    if (buf != NULL)
    {
        buf[n] = 0;
        *len = n;
    }
    return buf;
}

ofr_trt_library* ofr_trt_open(const char* library)
{
    const char* name = library != NULL ? library : "libnvinfer.so.10";
    size_t len = 0;
    char* text = read_file(name, &len);
    if (text == NULL)
    {
        fail("cannot open %s: no such file", name);
        return NULL;
    }
    ofr_trt_library* lib = calloc(1, sizeof *lib);
    if (lib == NULL)
    {
        free(text);
        fail("out of memory");
        return NULL;
    }
    int ok = strncmp(text, "offramp-trt-double-library 1\n", 29) == 0;
    for (char* line = strtok(text, "\n"); ok && line != NULL; line = strtok(NULL, "\n"))
    {
        if (strncmp(line, "version ", 8) == 0)
        {
            lib->version = atoi(line + 8);
        }
        else if (strncmp(line, "device ", 7) == 0)
        {
            snprintf(lib->device, sizeof lib->device, "%s", line + 7);
        }
        else if (strncmp(line, "compute ", 8) == 0)
        {
            ok = sscanf(line + 8, "%d %d", &lib->major, &lib->minor) == 2;
        }
    }
    free(text);
    if (!ok || lib->version <= 0)
    {
        free(lib);
        fail("%s lacks getInferLibVersion or createInferRuntime_INTERNAL: not a TensorRT library", name);
        return NULL;
    }
    int32_t major = lib->version >= 100000 ? lib->version / 10000 : lib->version / 1000;
    if (major != ofr_trt_header_version() / 10000)
    {
        fail("%s is TensorRT %d.x but this shim was built against %d.x headers: rebuild it here with `offramp "
             "build-shim`",
            name, major, ofr_trt_header_version() / 10000);
        free(lib);
        return NULL;
    }
    pthread_mutex_init(&lib->lock, NULL);
    pthread_mutex_lock(&g_registry_lock);
    if (g_nopened < MAX_LIBRARIES)
    {
        snprintf(g_opened[g_nopened].path, sizeof g_opened[g_nopened].path, "%s", name);
        g_opened[g_nopened++].lib = lib;
    }
    pthread_mutex_unlock(&g_registry_lock);
    return lib;
}

int32_t ofr_trt_library_version(const ofr_trt_library* lib)
{
    return lib->version;
}

int ofr_trt_device_identity(ofr_trt_library* lib, char* name, size_t cap, int32_t* major, int32_t* minor)
{
    if (lib->device[0] == 0)
    {
        fail("cudaGetDeviceProperties: cudaErrorNoDevice: no CUDA-capable device is detected");
        return -1;
    }
    if (cap > 0)
    {
        snprintf(name, cap, "%s", lib->device);
    }
    *major = lib->major;
    *minor = lib->minor;
    return 0;
}

int ofr_trt_malloc(ofr_trt_library* lib, void** ptr, size_t bytes)
{
    /* Never zero bytes, so that every allocation has a distinct address. */
    char* p = calloc(1, bytes > 0 ? bytes : 1);
    if (p == NULL)
    {
        fail("cudaMalloc: cudaErrorMemoryAllocation: out of memory (%zu bytes)", bytes);
        return -1;
    }
    pthread_mutex_lock(&lib->lock);
    if (lib->nallocs == lib->cap_allocs)
    {
        size_t cap = lib->cap_allocs ? 2 * lib->cap_allocs : 16;
        alloc_t* more = realloc(lib->allocs, cap * sizeof *more);
        if (more == NULL)
        {
            pthread_mutex_unlock(&lib->lock);
            free(p);
            fail("out of memory");
            return -1;
        }
        lib->allocs = more;
        lib->cap_allocs = cap;
    }
    lib->allocs[lib->nallocs++] = (alloc_t){p, bytes};
    pthread_mutex_unlock(&lib->lock);
    *ptr = p;
    return 0;
}

int ofr_trt_free(ofr_trt_library* lib, void* ptr)
{
    pthread_mutex_lock(&lib->lock);
    for (size_t i = 0; i < lib->nallocs; ++i)
    {
        if (lib->allocs[i].base == ptr)
        {
            lib->allocs[i] = lib->allocs[--lib->nallocs];
            pthread_mutex_unlock(&lib->lock);
            free(ptr);
            return 0;
        }
    }
    pthread_mutex_unlock(&lib->lock);
    fail("cudaFree: cudaErrorInvalidValue: %p is not a device allocation", ptr);
    return -1;
}

int ofr_trt_stream_create(ofr_trt_library* lib, void** stream)
{
    (void) lib;
    stream_t* s = calloc(1, sizeof *s);
    if (s == NULL)
    {
        fail("out of memory");
        return -1;
    }
    *stream = s;
    return 0;
}

int ofr_trt_stream_destroy(ofr_trt_library* lib, void* stream)
{
    (void) lib;
    stream_t* s = stream;
    free(s->ops);
    free(s);
    return 0;
}

static op_t* push(stream_t* s)
{
    if (s->len == s->cap)
    {
        size_t cap = s->cap ? 2 * s->cap : 16;
        op_t* more = realloc(s->ops, cap * sizeof *more);
        if (more == NULL)
        {
            fail("out of memory");
            return NULL;
        }
        s->ops = more;
        s->cap = cap;
    }
    op_t* op = &s->ops[s->len++];
    memset(op, 0, sizeof *op);
    return op;
}

/* Refuses `what` on a capturing stream, invalidating the capture. */
static int not_while_capturing(stream_t* s, const char* what)
{
    if (!s->capturing)
    {
        return 0;
    }
    s->invalidated = 1;
    fail("%s: cudaErrorStreamCaptureUnsupported: operation not permitted when stream is capturing", what);
    return -1;
}

static int copy(ofr_trt_library* lib, void* dst, const void* src, size_t bytes, void* stream, int check_dst,
    int check_src, const char* what)
{
    if (not_while_capturing(stream, what) != 0)
    {
        return -1;
    }
    pthread_mutex_lock(&lib->lock);
    int rc = (check_dst ? check_device(lib, dst, bytes, what) : 0) | (check_src ? check_device(lib, src, bytes, what) : 0);
    pthread_mutex_unlock(&lib->lock);
    if (rc != 0)
    {
        return -1;
    }
    op_t* op = push(stream);
    if (op == NULL)
    {
        return -1;
    }
    op->kind = OP_COPY;
    op->dst = dst;
    op->src = src;
    op->bytes = bytes;
    op->check_dst = check_dst;
    op->check_src = check_src;
    pthread_mutex_lock(&lib->lock);
    if (check_dst)
    {
        lib->htod += 1;
    }
    else
    {
        lib->dtoh += 1;
    }
    pthread_mutex_unlock(&lib->lock);
    return 0;
}

int ofr_trt_memcpy_htod(ofr_trt_library* lib, void* dst, const void* src, size_t bytes, void* stream)
{
    return copy(lib, dst, src, bytes, stream, 1, 0, "cudaMemcpyAsync (host to device)");
}

int ofr_trt_memcpy_dtoh(ofr_trt_library* lib, void* dst, const void* src, size_t bytes, void* stream)
{
    return copy(lib, dst, src, bytes, stream, 0, 1, "cudaMemcpyAsync (device to host)");
}

int ofr_trt_event_create(ofr_trt_library* lib, void** event)
{
    (void) lib;
    ev_t* e = calloc(1, sizeof *e);
    if (e == NULL)
    {
        fail("out of memory");
        return -1;
    }
    *event = e;
    return 0;
}

int ofr_trt_event_destroy(ofr_trt_library* lib, void* event)
{
    (void) lib;
    free(event);
    return 0;
}

int ofr_trt_event_record(ofr_trt_library* lib, void* event, void* stream)
{
    (void) lib;
    if (not_while_capturing(stream, "cudaEventRecord") != 0)
    {
        return -1;
    }
    ev_t* e = event;
    e->recorded = 0;
    op_t* op = push(stream);
    if (op == NULL)
    {
        return -1;
    }
    op->kind = OP_EVENT;
    op->event = e;
    return 0;
}

int ofr_trt_event_elapsed_ms(ofr_trt_library* lib, void* start, void* end, float* ms)
{
    (void) lib;
    ev_t *a = start, *b = end;
    if (!a->recorded || !b->recorded)
    {
        fail("cudaEventElapsedTime: cudaErrorNotReady: an event has not completed");
        return -1;
    }
    *ms = (float) ((b->at_us - a->at_us) / 1000.0);
    return 0;
}

static size_t tensor_bytes(const tensor_t* t)
{
    return t->elements * sizeof(float);
}

/* Runs one inference from the bindings captured at enqueue. Lock held. */
static int execute(ofr_trt_library* lib, const ofr_trt_context* c)
{
    const ofr_trt_engine* e = c->engine;
    if (check_device(lib, c->memory, (size_t) e->scratch, "inference scratch") != 0)
    {
        return -1;
    }
    for (int32_t i = 0; i < e->nio; ++i)
    {
        if (check_device(lib, c->address[i], tensor_bytes(&e->io[i]), e->io[i].name) != 0)
        {
            return -1;
        }
    }
    float* scratch = c->memory;
    for (int32_t o = 0; o < e->nio; ++o)
    {
        if (e->io[o].is_input)
        {
            continue;
        }
        for (size_t k = 0; k < e->io[o].elements; ++k)
        {
            double acc = e->bias[o];
            for (int32_t i = 0; i < e->nio; ++i)
            {
                if (e->io[i].is_input)
                {
                    const float* in = c->address[i];
                    acc += e->weight[o][i] * in[k % e->io[i].elements];
                }
            }
            scratch[k] = (float) acc;
        }
        memcpy(c->address[o], scratch, tensor_bytes(&e->io[o]));
    }
    lib->clock_us += e->cost_us;
    lib->executed += 1;
    return 0;
}

int ofr_trt_stream_synchronize(ofr_trt_library* lib, void* stream)
{
    stream_t* s = stream;
    if (not_while_capturing(s, "cudaStreamSynchronize") != 0)
    {
        return -1;
    }
    int rc = 0;
    pthread_mutex_lock(&lib->lock);
    for (size_t i = 0; i < s->len && rc == 0; ++i)
    {
        op_t* op = &s->ops[i];
        switch (op->kind)
        {
        case OP_COPY:
            if ((op->check_dst && check_device(lib, op->dst, op->bytes, "copy destination") != 0)
                || (op->check_src && check_device(lib, op->src, op->bytes, "copy source") != 0))
            {
                rc = -1;
                break;
            }
            memcpy(op->dst, op->src, op->bytes);
            break;
        case OP_EXEC: rc = execute(lib, &op->snapshot); break;
        case OP_EVENT:
            op->event->recorded = 1;
            op->event->at_us = lib->clock_us;
            break;
        }
    }
    s->len = 0;
    lib->synchronized += 1;
    pthread_mutex_unlock(&lib->lock);
    return rc;
}

ofr_trt_runtime* ofr_trt_runtime_create(ofr_trt_library* lib)
{
    ofr_trt_runtime* r = calloc(1, sizeof *r);
    if (r == NULL)
    {
        fail("out of memory");
        return NULL;
    }
    r->lib = lib;
    return r;
}

void ofr_trt_runtime_destroy(ofr_trt_runtime* runtime)
{
    free(runtime);
}

static int find_io(const ofr_trt_engine* e, const char* name)
{
    for (int32_t i = 0; i < e->nio; ++i)
    {
        if (strcmp(e->io[i].name, name) == 0)
        {
            return i;
        }
    }
    return -1;
}

/* Parses one plan line into `e`; 0, or -1 with the error set. */
static int parse_line(ofr_trt_engine* e, char* line, int lineno, int32_t lib_version)
{
    char word[16], name[64], other[64];
    int n = 0;
    if (sscanf(line, "%15s%n", word, &n) != 1)
    {
        return 0;
    }
    char* rest = line + n;
    if (strcmp(word, "built") == 0)
    {
        int32_t v = atoi(rest);
        if (v != lib_version)
        {
            fail("IRuntime::deserializeCudaEngine: Error Code 1: Serialization (Serialization assertion "
                 "plan built with TensorRT %d, this library is %d)",
                v, lib_version);
            return -1;
        }
        return 0;
    }
    if (strcmp(word, "scratch") == 0)
    {
        e->scratch = atoll(rest);
        return 0;
    }
    if (strcmp(word, "cost_us") == 0)
    {
        e->cost_us = atof(rest);
        return 0;
    }
    if (strcmp(word, "capture") == 0)
    {
        e->capture_refused = strstr(rest, "no") != NULL;
        return 0;
    }
    if (strcmp(word, "input") == 0 || strcmp(word, "output") == 0)
    {
        if (e->nio == 2 * MAX_IO)
        {
            fail("plan line %d: too many tensors", lineno);
            return -1;
        }
        tensor_t* t = &e->io[e->nio];
        int32_t dtype = 0;
        if (sscanf(rest, "%63s %d%n", t->name, &dtype, &n) != 2)
        {
            fail("plan line %d: expected `%s NAME DTYPE DIMS...`", lineno, word);
            return -1;
        }
        t->is_input = word[0] == 'i';
        t->dtype = dtype;
        rest += n;
        t->elements = 1;
        long long d;
        while (t->nb < MAX_DIMS && sscanf(rest, "%lld%n", &d, &n) == 1)
        {
            t->dims[t->nb++] = d;
            t->elements *= d > 0 ? (size_t) d : 1;
            rest += n;
        }
        e->nio += 1;
        return 0;
    }
    if (strcmp(word, "weight") == 0)
    {
        double w;
        if (sscanf(rest, "%63s %63s %lf", name, other, &w) != 3 || find_io(e, name) < 0 || find_io(e, other) < 0)
        {
            fail("plan line %d: expected `weight OUTPUT INPUT W` naming declared tensors", lineno);
            return -1;
        }
        e->weight[find_io(e, name)][find_io(e, other)] = w;
        return 0;
    }
    if (strcmp(word, "bias") == 0)
    {
        double b;
        if (sscanf(rest, "%63s %lf", name, &b) != 2 || find_io(e, name) < 0)
        {
            fail("plan line %d: expected `bias OUTPUT B` naming a declared tensor", lineno);
            return -1;
        }
        e->bias[find_io(e, name)] = b;
        return 0;
    }
    fail("plan line %d: unknown key `%s`", lineno, word);
    return -1;
}

ofr_trt_engine* ofr_trt_engine_deserialize(ofr_trt_runtime* runtime, const void* plan, size_t len)
{
    static const char magic[] = "offramp-trt-double-plan 1\n";
    if (len < sizeof magic - 1 || memcmp(plan, magic, sizeof magic - 1) != 0)
    {
        fail("deserializeCudaEngine rejected the plan: IRuntime::deserializeCudaEngine: Error Code 1: "
             "Serialization (Serialization assertion magicTagRead == kMAGIC_TAG failed.Magic tag does not "
             "match)");
        return NULL;
    }
    ofr_trt_engine* e = calloc(1, sizeof *e);
    char* text = malloc(len + 1);
    if (e == NULL || text == NULL)
    {
        free(e);
        free(text);
        fail("out of memory");
        return NULL;
    }
    memcpy(text, plan, len);
    text[len] = 0;
    e->lib = runtime->lib;
    int lineno = 0, rc = 0;
    int built = 0;
    char* save = NULL;
    for (char* line = strtok_r(text, "\n", &save); line != NULL && rc == 0; line = strtok_r(NULL, "\n", &save))
    {
        lineno += 1;
        if (lineno == 1)
        {
            continue;
        }
        built |= strncmp(line, "built ", 6) == 0;
        rc = parse_line(e, line, lineno, runtime->lib->version);
    }
    free(text);
    if (rc == 0 && !built)
    {
        fail("deserializeCudaEngine rejected the plan: no `built` line");
        rc = -1;
    }
    /* Defaults for weights not given: distinct per input, so swapped
     * bindings change the result. */
    size_t max_out = 0;
    int32_t nin = 0;
    for (int32_t o = 0; rc == 0 && o < e->nio; ++o)
    {
        if (e->io[o].is_input)
        {
            nin += 1;
            continue;
        }
        max_out = e->io[o].elements > max_out ? e->io[o].elements : max_out;
        int32_t i_rank = 0;
        for (int32_t i = 0; i < e->nio; ++i)
        {
            if (e->io[i].is_input)
            {
                if (e->weight[o][i] == 0.0)
                {
                    e->weight[o][i] = 1.0 / (i_rank + 1) + o / 8.0;
                }
                i_rank += 1;
            }
        }
    }
    if (rc == 0 && (nin == 0 || e->nio == nin))
    {
        fail("deserializeCudaEngine rejected the plan: it needs inputs and outputs");
        rc = -1;
    }
    if (rc == 0 && (size_t) e->scratch < max_out * sizeof(float))
    {
        fail("deserializeCudaEngine rejected the plan: scratch %lld is less than the %zu bytes its largest output "
             "needs",
            (long long) e->scratch, max_out * sizeof(float));
        rc = -1;
    }
    if (rc != 0)
    {
        free(e);
        return NULL;
    }
    return e;
}

void ofr_trt_engine_destroy(ofr_trt_engine* engine)
{
    free(engine);
}

int32_t ofr_trt_engine_io_count(const ofr_trt_engine* engine)
{
    return engine->nio;
}

int ofr_trt_engine_io(const ofr_trt_engine* engine, int32_t index, const char** name, int32_t* is_input,
    int32_t* dtype, int64_t* dims, int32_t* nb_dims)
{
    if (index < 0 || index >= engine->nio)
    {
        fail("getIOTensorName: index %d out of range", index);
        return -1;
    }
    const tensor_t* t = &engine->io[index];
    *name = t->name;
    *is_input = t->is_input;
    *dtype = t->dtype;
    memcpy(dims, t->dims, sizeof(int64_t) * (size_t) t->nb);
    *nb_dims = t->nb;
    return 0;
}

int64_t ofr_trt_engine_device_memory_size(const ofr_trt_engine* engine)
{
    return engine->scratch;
}

ofr_trt_context* ofr_trt_context_create(ofr_trt_engine* engine)
{
    ofr_trt_context* c = calloc(1, sizeof *c);
    if (c == NULL)
    {
        fail("out of memory");
        return NULL;
    }
    c->engine = engine;
    return c;
}

void ofr_trt_context_destroy(ofr_trt_context* context)
{
    free(context);
}

int ofr_trt_context_set_device_memory(ofr_trt_context* context, void* memory, int64_t size)
{
    context->memory = memory;
    context->memory_size = size;
    return 0;
}

int ofr_trt_context_set_tensor_address(ofr_trt_context* context, const char* name, void* address)
{
    int i = find_io(context->engine, name);
    if (i < 0)
    {
        fail("setTensorAddress failed: IExecutionContext::setTensorAddress: Error Code 3: API Usage Error (no "
             "tensor named %s)",
            name);
        return -1;
    }
    context->address[i] = address;
    return 0;
}

int ofr_trt_context_enqueue(ofr_trt_context* context, void* stream)
{
    const ofr_trt_engine* e = context->engine;
    ofr_trt_library* lib = e->lib;
    for (int32_t i = 0; i < e->nio; ++i)
    {
        if (context->address[i] == NULL)
        {
            fail("enqueueV3 failed: IExecutionContext::enqueueV3: Error Code 3: API Usage Error (tensor %s has no "
                 "address)",
                e->io[i].name);
            return -1;
        }
    }
    if (context->memory == NULL || context->memory_size < e->scratch)
    {
        fail("enqueueV3 failed: the context's device memory (%lld bytes) is smaller than the %lld the engine needs",
            (long long) context->memory_size, (long long) e->scratch);
        return -1;
    }
    pthread_mutex_lock(&lib->lock);
    int rc = check_device(lib, context->memory, (size_t) e->scratch, "scratch");
    for (int32_t i = 0; i < e->nio && rc == 0; ++i)
    {
        rc = check_device(lib, context->address[i], tensor_bytes(&e->io[i]), e->io[i].name);
    }
    pthread_mutex_unlock(&lib->lock);
    if (rc != 0)
    {
        return -1;
    }
    stream_t* s = stream;
    if (s->capturing && e->capture_refused)
    {
        s->invalidated = 1;
        fail("enqueueV3 failed: IExecutionContext::enqueueV3: Error Code 1: Cuda Runtime (operation not permitted "
             "when stream is capturing: this engine cannot be captured in a CUDA graph)");
        return -1;
    }
    op_t* op = push(s);
    if (op == NULL)
    {
        return -1;
    }
    op->kind = OP_EXEC;
    op->snapshot = *context;
    return 0;
}

int ofr_trt_graph_begin(ofr_trt_library* lib, void* stream)
{
    (void) lib;
    stream_t* s = stream;
    if (s->capturing)
    {
        fail("cudaStreamBeginCapture: cudaErrorIllegalState: the stream is already capturing");
        return -1;
    }
    s->capturing = 1;
    s->invalidated = 0;
    s->mark = s->len;
    return 0;
}

int ofr_trt_graph_end(ofr_trt_library* lib, void* stream, void** graph)
{
    stream_t* s = stream;
    if (!s->capturing)
    {
        fail("cudaStreamEndCapture: cudaErrorIllegalState: the stream is not capturing");
        return -1;
    }
    s->capturing = 0;
    size_t n = s->len - s->mark;
    s->len = s->mark;
    if (s->invalidated)
    {
        fail("cudaStreamEndCapture: cudaErrorStreamCaptureInvalidated: operation failed due to a previous error "
             "during capture");
        return -1;
    }
    graph_t* g = calloc(1, sizeof *g);
    op_t* ops = n ? malloc(n * sizeof *ops) : NULL;
    if (g == NULL || (n && ops == NULL))
    {
        free(g);
        free(ops);
        fail("out of memory");
        return -1;
    }
    if (n)
    {
        memcpy(ops, &s->ops[s->mark], n * sizeof *ops);
    }
    g->ops = ops;
    g->len = n;
    pthread_mutex_lock(&lib->lock);
    lib->captured += 1;
    pthread_mutex_unlock(&lib->lock);
    *graph = g;
    return 0;
}

int ofr_trt_graph_launch(ofr_trt_library* lib, void* graph, void* stream)
{
    stream_t* s = stream;
    const graph_t* g = graph;
    if (not_while_capturing(s, "cudaGraphLaunch") != 0)
    {
        return -1;
    }
    for (size_t i = 0; i < g->len; ++i)
    {
        op_t* op = push(s);
        if (op == NULL)
        {
            return -1;
        }
        *op = g->ops[i];
    }
    pthread_mutex_lock(&lib->lock);
    lib->launched += 1;
    pthread_mutex_unlock(&lib->lock);
    return 0;
}

int ofr_trt_graph_destroy(ofr_trt_library* lib, void* graph)
{
    (void) lib;
    graph_t* g = graph;
    free(g->ops);
    free(g);
    return 0;
}

/* Test hook, not part of the shim ABI: for the most recent library opened
 * from `path`, its live device allocations and their bytes, inferences run,
 * stream synchronizations, graphs captured, graph launches, and copies
 * queued host to device and device to host. Returns -1 if none was opened
 * from `path`. */
int ofr_trt_double_stats(const char* path, int64_t out[8])
{
    ofr_trt_library* lib = NULL;
    pthread_mutex_lock(&g_registry_lock);
    for (size_t i = 0; i < g_nopened; ++i)
    {
        if (strcmp(g_opened[i].path, path) == 0)
        {
            lib = g_opened[i].lib;
        }
    }
    pthread_mutex_unlock(&g_registry_lock);
    if (lib == NULL)
    {
        return -1;
    }
    pthread_mutex_lock(&lib->lock);
    int64_t bytes = 0;
    for (size_t i = 0; i < lib->nallocs; ++i)
    {
        bytes += (int64_t) lib->allocs[i].bytes;
    }
    out[0] = (int64_t) lib->nallocs;
    out[1] = bytes;
    out[2] = lib->executed;
    out[3] = lib->synchronized;
    out[4] = lib->captured;
    out[5] = lib->launched;
    out[6] = lib->htod;
    out[7] = lib->dtoh;
    pthread_mutex_unlock(&lib->lock);
    return 0;
}
