//! The TensorRT backend over the C++ shim (compiled where the build script
//! found TensorRT headers): library loading, engines, device memory, runs.

use super::*;
use cudarc::driver::sys::CUevent_flags;
use cudarc::driver::{CudaContext, CudaEvent, CudaSlice, CudaStream, DevicePtr, DevicePtrMut};
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

#[repr(C)]
struct RawRuntime {
    _p: [u8; 0],
}
#[repr(C)]
struct RawEngine {
    _p: [u8; 0],
}
#[repr(C)]
struct RawContext {
    _p: [u8; 0],
}

extern "C" {
    fn ofr_trt_open(library: *const c_char, lib_version: *mut i32) -> c_int;
    fn ofr_trt_last_error() -> *const c_char;
    fn ofr_trt_runtime_create() -> *mut RawRuntime;
    fn ofr_trt_runtime_destroy(r: *mut RawRuntime);
    fn ofr_trt_engine_deserialize(
        r: *mut RawRuntime,
        plan: *const c_void,
        len: usize,
    ) -> *mut RawEngine;
    fn ofr_trt_engine_destroy(e: *mut RawEngine);
    fn ofr_trt_engine_io_count(e: *const RawEngine) -> i32;
    fn ofr_trt_engine_io(
        e: *const RawEngine,
        index: i32,
        name: *mut *const c_char,
        is_input: *mut i32,
        dtype: *mut i32,
        dims: *mut i64,
        nb_dims: *mut i32,
    ) -> c_int;
    fn ofr_trt_engine_device_memory_size(e: *const RawEngine) -> i64;
    fn ofr_trt_context_create(e: *mut RawEngine) -> *mut RawContext;
    fn ofr_trt_context_destroy(c: *mut RawContext);
    fn ofr_trt_context_set_device_memory(c: *mut RawContext, mem: *mut c_void, size: i64) -> c_int;
    fn ofr_trt_context_set_tensor_address(
        c: *mut RawContext,
        name: *const c_char,
        addr: *mut c_void,
    ) -> c_int;
    fn ofr_trt_context_enqueue(c: *mut RawContext, stream: *mut c_void) -> c_int;
}

fn last_error() -> String {
    // SAFETY: the shim returns a NUL-terminated thread-local string.
    unsafe { CStr::from_ptr(ofr_trt_last_error()) }
        .to_string_lossy()
        .into_owned()
}

/// The library to open: `OFFRAMP_TENSORRT_LIB` overrides the default.
fn library_path(library: Option<&Path>) -> Option<PathBuf> {
    library
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("OFFRAMP_TENSORRT_LIB").map(PathBuf::from))
}

pub fn open_library(library: Option<&Path>) -> Result<TrtVersion> {
    let path = library_path(library);
    let shown = path
        .clone()
        .unwrap_or_else(|| PathBuf::from("libnvinfer.so"));
    let c = path
        .as_ref()
        .map(|p| CString::new(p.as_os_str().as_encoded_bytes()))
        .transpose()
        .map_err(|_| unavailable(&shown, "the path contains a NUL byte"))?;
    let mut v = 0i32;
    // SAFETY: `c` outlives the call; `v` is a valid out-pointer.
    let rc = unsafe { ofr_trt_open(c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()), &mut v) };
    if rc != 0 {
        return Err(unavailable(&shown, last_error()));
    }
    TrtVersion::from_lib(v)
        .ok_or_else(|| unavailable(&shown, format!("reports version {v}, which is not valid")))
}

/// What every engine of a set shares; dropped after the last engine.
struct Shared {
    runtime: *mut RawRuntime,
    stream: Arc<CudaStream>,
    scratch: OnceLock<CudaSlice<u8>>,
    _ctx: Arc<CudaContext>,
}

// SAFETY: the runtime is only used under the owning chain's `&mut`, and
// TensorRT's IRuntime may be used from any one thread at a time.
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

impl Drop for Shared {
    fn drop(&mut self) {
        // SAFETY: created by ofr_trt_runtime_create; every engine is gone.
        unsafe { ofr_trt_runtime_destroy(self.runtime) };
    }
}

pub struct Loader {
    shared: Arc<Shared>,
    contexts: Vec<(*mut RawContext, i64, PathBuf)>,
}

impl Loader {
    pub fn new(set: &EngineSet) -> Result<Self> {
        let what = &set.manifest_path;
        let version = open_library(None)?;
        check_version(set, version)?;
        check_device(
            set,
            &cuda_device_identity().map_err(|e| unavailable(what, e))?,
        )?;
        let cuda_err = |e: cudarc::driver::DriverError| unavailable(what, format!("CUDA: {e}"));
        let ctx = CudaContext::new(0).map_err(cuda_err)?;
        let stream = ctx.new_stream().map_err(cuda_err)?;
        // SAFETY: ofr_trt_open succeeded above.
        let runtime = unsafe { ofr_trt_runtime_create() };
        if runtime.is_null() {
            return Err(unavailable(what, last_error()));
        }
        Ok(Self {
            shared: Arc::new(Shared {
                runtime,
                stream,
                scratch: OnceLock::new(),
                _ctx: ctx,
            }),
            contexts: Vec::new(),
        })
    }

    pub fn load(
        &mut self,
        path: &Path,
        inputs: &[TensorSpec],
        outputs: &[TensorSpec],
    ) -> Result<Box<dyn crate::Engine>> {
        let load_err = |message: String| Error::Load {
            artifact: path.to_path_buf(),
            backend: "tensorrt",
            message,
        };
        let event = || {
            self.shared
                ._ctx
                .new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
                .map_err(|e| load_err(format!("CUDA event: {e}")))
        };
        let (started, finished) = (event()?, event()?);
        let plan = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        // SAFETY: the plan bytes outlive the call; TensorRT copies them.
        let engine = unsafe {
            ofr_trt_engine_deserialize(self.shared.runtime, plan.as_ptr().cast(), plan.len())
        };
        if engine.is_null() {
            return Err(load_err(last_error()));
        }
        let mut e = TrtEngine {
            artifact: path.to_path_buf(),
            shared: self.shared.clone(),
            engine,
            context: std::ptr::null_mut(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            started,
            finished,
            last_device_seconds: None,
        };
        let io = e.io().map_err(load_err)?;
        check_io(&io, inputs, outputs).map_err(load_err)?;
        // SAFETY: `engine` is live.
        let context = unsafe { ofr_trt_context_create(engine) };
        if context.is_null() {
            return Err(load_err(last_error()));
        }
        e.context = context;
        let stream = self.shared.stream.clone();
        for (specs, is_input) in [(inputs, true), (outputs, false)] {
            for spec in specs {
                let name = CString::new(spec.name.as_str())
                    .map_err(|_| load_err(format!("{:?} contains a NUL byte", spec.name)))?;
                let mut buf = stream
                    .alloc_zeros::<f32>(spec.elements())
                    .map_err(|err| load_err(format!("allocating {:?}: {err}", spec.name)))?;
                let (ptr, _sync) = buf.device_ptr_mut(&stream);
                // SAFETY: the buffer lives as long as the context (both in `e`).
                let rc = unsafe {
                    ofr_trt_context_set_tensor_address(context, name.as_ptr(), ptr as *mut c_void)
                };
                drop(_sync);
                if rc != 0 {
                    return Err(load_err(format!("{:?}: {}", spec.name, last_error())));
                }
                if is_input {
                    e.inputs.push((name, buf));
                } else {
                    e.outputs.push((name, buf));
                }
            }
        }
        // SAFETY: `engine` is live.
        let need = unsafe { ofr_trt_engine_device_memory_size(engine) };
        self.contexts.push((context, need, path.to_path_buf()));
        Ok(Box::new(e))
    }

    pub fn finish(self) -> Result<()> {
        let need = self.contexts.iter().map(|c| c.1).max().unwrap_or(0).max(1);
        let stream = &self.shared.stream;
        let scratch = stream
            .alloc_zeros::<u8>(need as usize)
            .map_err(|e| Error::Unavailable {
                what: "activation scratch".into(),
                backend: "tensorrt",
                why: format!("allocating {need} bytes: {e}"),
            })?;
        let scratch = self.shared.scratch.get_or_init(|| scratch);
        let (ptr, _sync) = scratch.device_ptr(stream);
        for (context, size, path) in &self.contexts {
            // SAFETY: the context is owned by a live engine; the scratch
            // lives in `Shared`, which every engine keeps alive.
            let rc = unsafe {
                ofr_trt_context_set_device_memory(*context, ptr as *mut c_void, (*size).max(0))
            };
            if rc != 0 {
                return Err(Error::Load {
                    artifact: path.clone(),
                    backend: "tensorrt",
                    message: last_error(),
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
        let n = io.iter().filter(|t| t.is_input == is_input).count();
        if n != specs.len() {
            return Err(format!(
                "the plan has {n} {side}s, the manifest lists {}",
                specs.len()
            ));
        }
        for spec in specs {
            let t = io
                .iter()
                .find(|t| t.name == spec.name && t.is_input == is_input)
                .ok_or_else(|| format!("the plan has no {side} named {:?}", spec.name))?;
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

pub struct TrtEngine {
    artifact: PathBuf,
    shared: Arc<Shared>,
    engine: *mut RawEngine,
    context: *mut RawContext,
    inputs: Vec<(CString, CudaSlice<f32>)>,
    outputs: Vec<(CString, CudaSlice<f32>)>,
    /// Timing events around each run (timing enabled: cudarc's default
    /// event disables it).
    started: CudaEvent,
    finished: CudaEvent,
    last_device_seconds: Option<f32>,
}

// SAFETY: an engine and its context are used by one thread at a time
// (`Engine::run` takes `&mut self`).
unsafe impl Send for TrtEngine {}

impl TrtEngine {
    fn io(&self) -> Result<Vec<Io>, String> {
        // SAFETY: `engine` is live; out-pointers are valid.
        let n = unsafe { ofr_trt_engine_io_count(self.engine) };
        (0..n)
            .map(|i| {
                let mut name: *const c_char = std::ptr::null();
                let (mut is_input, mut dtype, mut nb) = (0, 0, 0);
                let mut dims = [0i64; 8];
                let rc = unsafe {
                    ofr_trt_engine_io(
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
                    return Err(last_error());
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
}

impl Drop for TrtEngine {
    fn drop(&mut self) {
        // SAFETY: context before engine, each created by the shim once.
        unsafe {
            ofr_trt_context_destroy(self.context);
            ofr_trt_engine_destroy(self.engine);
        }
    }
}

impl crate::Engine for TrtEngine {
    fn run(&mut self, inputs: &[&[f32]], outputs: &mut [&mut [f32]]) -> Result<()> {
        let err = |message: String| Error::Run {
            artifact: self.artifact.clone(),
            message,
        };
        crate::error::check_arity(
            &self.artifact,
            (inputs.len(), outputs.len()),
            (self.inputs.len(), self.outputs.len()),
        )?;
        if self.shared.scratch.get().is_none() {
            return Err(err("the activation scratch was never set".into()));
        }
        let stream = &self.shared.stream;
        self.last_device_seconds = None;
        self.started
            .record(stream)
            .map_err(|e| err(format!("recording a CUDA event: {e}")))?;
        for (host, (name, dev)) in inputs.iter().zip(self.inputs.iter_mut()) {
            stream
                .memcpy_htod(*host, dev)
                .map_err(|e| err(format!("copying {name:?} to the GPU: {e}")))?;
        }
        // SAFETY: addresses and scratch were set at load and outlive the call.
        let rc = unsafe { ofr_trt_context_enqueue(self.context, stream.cu_stream().cast()) };
        if rc != 0 {
            return Err(err(last_error()));
        }
        for (host, (name, dev)) in outputs.iter_mut().zip(self.outputs.iter()) {
            stream
                .memcpy_dtoh(dev, &mut **host)
                .map_err(|e| err(format!("copying {name:?} from the GPU: {e}")))?;
        }
        self.finished
            .record(stream)
            .map_err(|e| err(format!("recording a CUDA event: {e}")))?;
        stream
            .synchronize()
            .map_err(|e| err(format!("stream synchronize: {e}")))?;
        self.last_device_seconds = self
            .started
            .elapsed_ms(&self.finished)
            .ok()
            .map(|ms| ms / 1e3);
        Ok(())
    }

    fn device_seconds(&self) -> Option<f32> {
        self.last_device_seconds
    }
}
