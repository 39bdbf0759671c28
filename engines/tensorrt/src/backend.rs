//! The TensorRT backend over the shim's ABI: engines, device memory, runs.

use super::abi::{Library, RawContext, RawEngine, RawRuntime};
use super::*;
use offramp_engines::manifest::device_identity;
use std::ffi::{c_char, c_void, CStr, CString};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

/// One device allocation, freed on drop.
pub(crate) struct DeviceBuffer {
    lib: Arc<Library>,
    ptr: *mut c_void,
    bytes: usize,
}

// SAFETY: a device address; the shim's calls on it are thread-safe.
unsafe impl Send for DeviceBuffer {}
unsafe impl Sync for DeviceBuffer {}

impl DeviceBuffer {
    fn new(lib: &Arc<Library>, bytes: usize) -> Result<Self, String> {
        let mut ptr = std::ptr::null_mut();
        // SAFETY: valid out-pointer.
        if unsafe { (lib.abi.ofr_trt_malloc)(lib.raw, &mut ptr, bytes) } != 0 {
            return Err(lib.last_error());
        }
        Ok(Self {
            lib: lib.clone(),
            ptr,
            bytes,
        })
    }
}

impl Drop for DeviceBuffer {
    fn drop(&mut self) {
        // SAFETY: allocated by ofr_trt_malloc, freed once.
        if unsafe { (self.lib.abi.ofr_trt_free)(self.lib.raw, self.ptr) } != 0 {
            tracing::warn!(error = %self.lib.last_error(), "freeing device memory");
        }
    }
}

/// A CUDA stream or event of the shim, destroyed on drop.
struct Handle {
    lib: Arc<Library>,
    raw: *mut c_void,
    destroy: DestroyFn,
}

type CreateFn = unsafe extern "C" fn(*mut abi::RawLibrary, *mut *mut c_void) -> std::ffi::c_int;
type DestroyFn = unsafe extern "C" fn(*mut abi::RawLibrary, *mut c_void) -> std::ffi::c_int;

impl Handle {
    fn new(lib: &Arc<Library>, create: CreateFn, destroy: DestroyFn) -> Result<Self, String> {
        let mut raw = std::ptr::null_mut();
        // SAFETY: valid out-pointer; `create` is the shim's.
        if unsafe { create(lib.raw, &mut raw) } != 0 {
            return Err(lib.last_error());
        }
        Ok(Self {
            lib: lib.clone(),
            raw,
            destroy,
        })
    }

    fn stream(lib: &Arc<Library>) -> Result<Self, String> {
        Self::new(
            lib,
            lib.abi.ofr_trt_stream_create,
            lib.abi.ofr_trt_stream_destroy,
        )
    }

    /// An event with timing enabled.
    fn event(lib: &Arc<Library>) -> Result<Self, String> {
        Self::new(
            lib,
            lib.abi.ofr_trt_event_create,
            lib.abi.ofr_trt_event_destroy,
        )
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: created by the matching create call, destroyed once.
        unsafe { (self.destroy)(self.lib.raw, self.raw) };
    }
}

// SAFETY: CUDA streams and events may be used from any thread.
unsafe impl Send for Handle {}
unsafe impl Sync for Handle {}

/// Opens libnvinfer through the shim and returns its version.
pub fn open_library(opts: &Options) -> Result<TrtVersion> {
    let shown = opts
        .library
        .clone()
        .unwrap_or_else(|| PathBuf::from("libnvinfer.so"));
    abi::open(opts.shim.as_deref(), opts.library.as_deref())
        .and_then(|lib| lib.trt_version())
        .map_err(|e| unavailable(&shown, e))
}

/// What every engine of a set shares; dropped after the last engine.
struct Shared {
    lib: Arc<Library>,
    runtime: *mut RawRuntime,
    stream: Handle,
    scratch: OnceLock<DeviceBuffer>,
}

// SAFETY: the runtime is only used under the owning chain's `&mut`, and
// TensorRT's IRuntime may be used from any one thread at a time.
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

impl Drop for Shared {
    fn drop(&mut self) {
        // SAFETY: created by ofr_trt_runtime_create; every engine is gone.
        unsafe { (self.lib.abi.ofr_trt_runtime_destroy)(self.runtime) };
    }
}

pub struct Loader {
    shared: Arc<Shared>,
    contexts: Vec<(*mut RawContext, i64, PathBuf)>,
    eager: bool,
}

impl Loader {
    pub fn new(set: &EngineSet, opts: &Options) -> Result<Self> {
        let what = &set.manifest_path;
        let shown = opts
            .library
            .clone()
            .unwrap_or_else(|| PathBuf::from("libnvinfer.so"));
        let lib = abi::open(opts.shim.as_deref(), opts.library.as_deref())
            .map_err(|e| unavailable(&shown, e))?;
        let version = lib.trt_version().map_err(|e| unavailable(&shown, e))?;
        check_version(set, version)?;
        let (name, major, minor) = lib.device().map_err(|e| unavailable(what, e))?;
        check_device(set, &device_identity(&name, major, minor))?;
        let stream = Handle::stream(&lib).map_err(|e| unavailable(what, e))?;
        // SAFETY: `lib` is open.
        let runtime = unsafe { (lib.abi.ofr_trt_runtime_create)(lib.raw) };
        if runtime.is_null() {
            return Err(unavailable(what, lib.last_error()));
        }
        tracing::debug!(
            shim = %lib.shim.display(),
            headers = lib.header_version,
            library = %version,
            "tensorrt runtime"
        );
        Ok(Self {
            shared: Arc::new(Shared {
                lib,
                runtime,
                stream,
                scratch: OnceLock::new(),
            }),
            contexts: Vec::new(),
            eager: opts.eager,
        })
    }

    pub fn load(
        &mut self,
        path: &Path,
        inputs: &[TensorSpec],
        outputs: &[TensorSpec],
    ) -> Result<Box<dyn offramp_engines::Engine>> {
        let load_err = |message: String| Error::Load {
            artifact: path.to_path_buf(),
            backend: "tensorrt",
            message,
        };
        let lib = &self.shared.lib;
        let started = Handle::event(lib).map_err(load_err)?;
        let finished = Handle::event(lib).map_err(load_err)?;
        let plan = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        // SAFETY: the plan bytes outlive the call; TensorRT copies them.
        let engine = unsafe {
            (lib.abi.ofr_trt_engine_deserialize)(
                self.shared.runtime,
                plan.as_ptr().cast(),
                plan.len(),
            )
        };
        if engine.is_null() {
            return Err(load_err(lib.last_error()));
        }
        let mut e = TrtEngine {
            artifact: path.to_path_buf(),
            shared: self.shared.clone(),
            engine,
            context: std::ptr::null_mut(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            ran: false,
            started,
            finished,
            last_device_seconds: None,
            graph: if self.eager {
                Graph::Eager
            } else {
                Graph::Pending
            },
        };
        let io = e.io().map_err(load_err)?;
        check_io(&io, inputs, outputs).map_err(load_err)?;
        // SAFETY: `engine` is live.
        let context = unsafe { (lib.abi.ofr_trt_context_create)(engine) };
        if context.is_null() {
            return Err(load_err(lib.last_error()));
        }
        e.context = context;
        for (specs, is_input) in [(inputs, true), (outputs, false)] {
            for spec in specs {
                let name = CString::new(spec.name.as_str())
                    .map_err(|_| load_err(format!("{:?} contains a NUL byte", spec.name)))?;
                let buf = DeviceBuffer::new(lib, spec.elements() * std::mem::size_of::<f32>())
                    .map_err(|err| load_err(format!("allocating {:?}: {err}", spec.name)))?;
                // SAFETY: the buffer lives as long as the context (both in `e`).
                let rc = unsafe {
                    (lib.abi.ofr_trt_context_set_tensor_address)(context, name.as_ptr(), buf.ptr)
                };
                if rc != 0 {
                    return Err(load_err(format!("{:?}: {}", spec.name, lib.last_error())));
                }
                let t = Tensor {
                    name,
                    bytes: buf.bytes,
                    address: buf.ptr,
                    own: Some(buf),
                    host_copy: true,
                };
                if is_input {
                    e.inputs.push(t);
                } else {
                    e.outputs.push(t);
                }
            }
        }
        // SAFETY: `engine` is live.
        let need = unsafe { (lib.abi.ofr_trt_engine_device_memory_size)(engine) };
        self.contexts.push((context, need, path.to_path_buf()));
        Ok(Box::new(e))
    }

    /// One activation scratch for every context, as large as the largest
    /// need: exits run one after another on one stream.
    pub fn finish(self) -> Result<()> {
        let need = self.contexts.iter().map(|c| c.1).max().unwrap_or(0).max(1);
        let lib = &self.shared.lib;
        let scratch = DeviceBuffer::new(lib, need as usize).map_err(|e| Error::Unavailable {
            what: "activation scratch".into(),
            backend: "tensorrt",
            why: format!("allocating {need} bytes: {e}"),
        })?;
        let scratch = self.shared.scratch.get_or_init(|| scratch);
        for (context, size, path) in &self.contexts {
            // SAFETY: the context is owned by a live engine; the scratch
            // lives in `Shared`, which every engine keeps alive.
            let rc = unsafe {
                (lib.abi.ofr_trt_context_set_device_memory)(*context, scratch.ptr, (*size).max(0))
            };
            if rc != 0 {
                return Err(Error::Load {
                    artifact: path.clone(),
                    backend: "tensorrt",
                    message: lib.last_error(),
                });
            }
        }
        tracing::info!(
            bytes = need,
            contexts = self.contexts.len(),
            "tensorrt activation scratch shared by all exits"
        );
        Ok(())
    }
}

struct Io {
    name: String,
    is_input: bool,
    dtype: i32,
    dims: Vec<i64>,
}

/// TensorRT's DataType::kFLOAT.
const DTYPE_F32: i32 = 0;

fn check_io(io: &[Io], inputs: &[TensorSpec], outputs: &[TensorSpec]) -> Result<(), String> {
    for (specs, is_input, side) in [(inputs, true, "input"), (outputs, false, "output")] {
        let side_io: Vec<&Io> = io.iter().filter(|t| t.is_input == is_input).collect();
        let names: Vec<&str> = side_io.iter().map(|t| t.name.as_str()).collect();
        let n = side_io.len();
        if n != specs.len() {
            return Err(format!(
                "the plan has {n} {side}s, the manifest lists {}",
                specs.len()
            ));
        }
        for spec in specs {
            if spec.dtype != offramp_engines::manifest::DType::F32 {
                return Err(format!(
                    "{side} {:?} is {:?} token ids; the tensorrt backend feeds f32 tensors only \
                     (run a model with token-id inputs on the cpu backend, or feed the \
                     instruction as a one-hot f32 input)",
                    spec.name, spec.dtype
                ));
            }
            let t = side_io[offramp_engines::position_by_name(&names, &spec.name, "plan", side)?];
            let want: Vec<i64> = spec.shape.iter().map(|&d| d as i64).collect();
            if t.dtype != DTYPE_F32 || t.dims != want {
                return Err(format!(
                    "{side} {:?} is dtype {} shape {:?}, the manifest says f32 {:?} \
                     (offramp feeds fp32 tensors; keep IO in fp32 when building)",
                    spec.name, t.dtype, t.dims, spec.shape
                ));
            }
        }
    }
    Ok(())
}

/// One IO tensor of an engine, on the device.
struct Tensor {
    name: CString,
    bytes: usize,
    /// Where TensorRT reads or writes it.
    address: *mut c_void,
    /// The engine's own buffer at `address`; `None` for an input read from
    /// another engine's output ([`offramp_engines::Engine::read_input_from`]), whose
    /// buffer that engine owns.
    own: Option<DeviceBuffer>,
    /// Whether `run` copies it between its host slice and the device: not
    /// for an input its producer writes on the device, nor for an output
    /// only the next segment reads.
    host_copy: bool,
}

impl Tensor {
    fn device(&self) -> offramp_engines::DeviceTensor {
        offramp_engines::DeviceTensor {
            address: self.address as u64,
            bytes: self.bytes,
        }
    }
}

pub struct TrtEngine {
    artifact: PathBuf,
    shared: Arc<Shared>,
    engine: *mut RawEngine,
    context: *mut RawContext,
    inputs: Vec<Tensor>,
    outputs: Vec<Tensor>,
    /// Whether `run` was called: tensor addresses are fixed from then on
    /// (the CUDA graph captured after it keeps them).
    ran: bool,
    /// Timing events around each run.
    started: Handle,
    finished: Handle,
    last_device_seconds: Option<f32>,
    graph: Graph,
}

/// The CUDA graph of an engine's inference.
enum Graph {
    /// Captured after the first run (TensorRT wants one ordinary enqueue
    /// of a context before its capture).
    Pending,
    /// Replayed by every run.
    Ready(Handle),
    /// Not captured: asked for, or refused by TensorRT or CUDA.
    Eager,
}

// SAFETY: an engine and its context are used by one thread at a time
// (`Engine::run` takes `&mut self`).
unsafe impl Send for TrtEngine {}

impl TrtEngine {
    fn io(&self) -> Result<Vec<Io>, String> {
        let abi = &self.shared.lib.abi;
        // SAFETY: `engine` is live.
        let n = unsafe { (abi.ofr_trt_engine_io_count)(self.engine) };
        (0..n)
            .map(|i| {
                let mut name: *const c_char = std::ptr::null();
                let (mut is_input, mut dtype, mut nb) = (0, 0, 0);
                let mut dims = [0i64; 8];
                // SAFETY: `engine` is live; out-pointers are valid, `dims` holds 8.
                let rc = unsafe {
                    (abi.ofr_trt_engine_io)(
                        self.engine,
                        i,
                        &mut name,
                        &mut is_input,
                        &mut dtype,
                        dims.as_mut_ptr(),
                        &mut nb,
                    )
                };
                if rc != 0 || name.is_null() {
                    return Err(self.shared.lib.last_error());
                }
                Ok(Io {
                    // SAFETY: TensorRT owns the name for the engine's life.
                    name: unsafe { CStr::from_ptr(name) }
                        .to_string_lossy()
                        .into_owned(),
                    is_input: is_input != 0,
                    dtype,
                    dims: dims[..nb.clamp(0, 8) as usize].to_vec(),
                })
            })
            .collect()
    }

    /// Queues the copies in, the inference and the copies out on the
    /// stream, between the two timing events.
    fn enqueue(&self, inputs: &[&[f32]], outputs: &mut [&mut [f32]]) -> Result<(), String> {
        let lib = &self.shared.lib;
        let abi = &lib.abi;
        let stream = self.shared.stream.raw;
        let call = |rc: std::ffi::c_int, what: &str| {
            if rc == 0 {
                Ok(())
            } else {
                Err(format!("{what}: {}", lib.last_error()))
            }
        };
        // SAFETY (every call below): handles and buffers are live for the
        // engine's life; the caller synchronizes the stream before the host
        // slices go out of scope.
        call(
            unsafe { (abi.ofr_trt_event_record)(lib.raw, self.started.raw, stream) },
            "recording a CUDA event",
        )?;
        for (host, t) in inputs.iter().zip(&self.inputs).filter(|(_, t)| t.host_copy) {
            call(
                unsafe {
                    (abi.ofr_trt_memcpy_htod)(
                        lib.raw,
                        t.address,
                        host.as_ptr().cast(),
                        t.bytes,
                        stream,
                    )
                },
                &format!("copying {:?} to the GPU", t.name),
            )?;
        }
        match &self.graph {
            Graph::Ready(graph) => call(
                unsafe { (abi.ofr_trt_graph_launch)(lib.raw, graph.raw, stream) },
                "launching the inference's CUDA graph",
            )?,
            Graph::Pending | Graph::Eager => call(
                unsafe { (abi.ofr_trt_context_enqueue)(self.context, stream) },
                "queueing the inference",
            )?,
        }
        for (host, t) in outputs
            .iter_mut()
            .zip(&self.outputs)
            .filter(|(_, t)| t.host_copy)
        {
            call(
                unsafe {
                    (abi.ofr_trt_memcpy_dtoh)(
                        lib.raw,
                        host.as_mut_ptr().cast(),
                        t.address,
                        t.bytes,
                        stream,
                    )
                },
                &format!("copying {:?} from the GPU", t.name),
            )?;
        }
        call(
            unsafe { (abi.ofr_trt_event_record)(lib.raw, self.finished.raw, stream) },
            "recording a CUDA event",
        )
    }
}

impl TrtEngine {
    /// Captures the inference into a CUDA graph, once, after the first run.
    /// A refusal is not an error: the engine goes on enqueueing.
    fn capture(&mut self) {
        if !matches!(self.graph, Graph::Pending) {
            return;
        }
        let lib = &self.shared.lib;
        let abi = &lib.abi;
        let stream = self.shared.stream.raw;
        let mut raw = std::ptr::null_mut();
        // SAFETY: stream and context are live; end is called after every
        // successful begin, so the stream never stays in capture mode.
        let captured = unsafe {
            if (abi.ofr_trt_graph_begin)(lib.raw, stream) != 0 {
                Err(lib.last_error())
            } else {
                let queued = (abi.ofr_trt_context_enqueue)(self.context, stream);
                let queued_err = (queued != 0).then(|| lib.last_error());
                let ended = (abi.ofr_trt_graph_end)(lib.raw, stream, &mut raw);
                match (queued_err, ended) {
                    (Some(e), _) => Err(e),
                    (None, 0) => Ok(()),
                    (None, _) => Err(lib.last_error()),
                }
            }
        };
        self.graph = match captured {
            Ok(()) => Graph::Ready(Handle {
                lib: lib.clone(),
                raw,
                destroy: abi.ofr_trt_graph_destroy,
            }),
            Err(why) => {
                tracing::warn!(
                    engine = %self.artifact.display(),
                    %why,
                    "TensorRT inference not captured as a CUDA graph; enqueued on every run instead"
                );
                Graph::Eager
            }
        };
    }
}

impl Drop for TrtEngine {
    fn drop(&mut self) {
        // The graph goes before the context whose work it replays.
        self.graph = Graph::Eager;
        let abi = &self.shared.lib.abi;
        // SAFETY: context before engine, each created by the shim once.
        unsafe {
            (abi.ofr_trt_context_destroy)(self.context);
            (abi.ofr_trt_engine_destroy)(self.engine);
        }
    }
}

impl offramp_engines::Engine for TrtEngine {
    fn run(&mut self, inputs: &[&[f32]], outputs: &mut [&mut [f32]]) -> Result<()> {
        let err = |message| offramp_engines::run_error(&self.artifact, message);
        offramp_engines::check_arity(
            &self.artifact,
            (inputs.len(), outputs.len()),
            (self.inputs.len(), self.outputs.len()),
        )?;
        for (host, t) in inputs
            .iter()
            .map(|h| std::mem::size_of_val(*h))
            .chain(outputs.iter().map(|h| std::mem::size_of_val(&**h)))
            .zip(self.inputs.iter().chain(&self.outputs))
        {
            if host != t.bytes {
                return Err(err(format!(
                    "{:?} is {} bytes on the device, the caller passed {host}",
                    t.name, t.bytes
                )));
            }
        }
        if self.shared.scratch.get().is_none() {
            return Err(err("the activation scratch was never set".into()));
        }
        let lib = &self.shared.lib;
        let abi = &lib.abi;
        let stream = self.shared.stream.raw;
        let call = |rc: std::ffi::c_int, what: &str| {
            if rc == 0 {
                Ok(())
            } else {
                Err(err(format!("{what}: {}", lib.last_error())))
            }
        };
        self.last_device_seconds = None;
        self.ran = true;
        let queued = self.enqueue(inputs, outputs);
        // Always wait for the stream: on failure too, so that no queued copy
        // writes into the caller's buffers after this call returns.
        // SAFETY: the stream is live.
        let synced = call(
            unsafe { (abi.ofr_trt_stream_synchronize)(lib.raw, stream) },
            "stream synchronize",
        );
        queued.map_err(err)?;
        synced?;
        let mut ms = 0f32;
        // SAFETY: both events were recorded and the stream synchronized.
        let rc = unsafe {
            (abi.ofr_trt_event_elapsed_ms)(lib.raw, self.started.raw, self.finished.raw, &mut ms)
        };
        self.last_device_seconds = (rc == 0).then_some(ms / 1e3);
        self.capture();
        Ok(())
    }

    fn device_seconds(&self) -> Option<f32> {
        self.last_device_seconds
    }

    fn device_input(&mut self, k: usize) -> Option<offramp_engines::DeviceTensor> {
        let t = self.inputs.get_mut(k)?;
        t.host_copy = false;
        Some(t.device())
    }

    fn device_output(&self, k: usize) -> Option<offramp_engines::DeviceTensor> {
        self.outputs.get(k).map(Tensor::device)
    }

    unsafe fn read_input_from(&mut self, k: usize, src: offramp_engines::DeviceTensor) -> bool {
        let lib = &self.shared.lib;
        let Some(t) = self.inputs.get_mut(k) else {
            return false;
        };
        if self.ran || src.bytes != t.bytes {
            return false;
        }
        let address = src.address as *mut c_void;
        // SAFETY: the context is live; the caller keeps `src` allocated
        // while this engine runs (Engine::read_input_from).
        let rc = unsafe {
            (lib.abi.ofr_trt_context_set_tensor_address)(self.context, t.name.as_ptr(), address)
        };
        if rc != 0 {
            tracing::warn!(
                engine = %self.artifact.display(),
                tensor = ?t.name,
                error = %lib.last_error(),
                "input left to be copied from the host"
            );
            return false;
        }
        t.address = address;
        t.own = None;
        t.host_copy = false;
        true
    }

    fn keep_output_on_device(&mut self, k: usize) -> bool {
        match self.outputs.get_mut(k) {
            Some(t) => {
                t.host_copy = false;
                true
            }
            None => false,
        }
    }
}
