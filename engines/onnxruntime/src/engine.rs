//! One exit segment (or the head) as an onnxruntime session with bound,
//! preallocated inputs and outputs.

use crate::api::{cstr, Runtime};
use offramp_engines::manifest::{DType, TensorSpec};
use offramp_engines::{check_arity, run_error, Engine, Error, Result};
use ort_sys as sys;
use std::ffi::{c_char, c_void, CString};
use std::path::{Path, PathBuf};

/// An input's buffer, in the graph's element type.
enum Buffer {
    F32(Vec<f32>),
    /// Token ids, held by the chain as exact f32 integers.
    I64(Vec<i64>),
}

impl Buffer {
    fn new(spec: &TensorSpec) -> Self {
        match spec.dtype {
            DType::F32 => Buffer::F32(vec![0.0; spec.elements()]),
            DType::I64 => Buffer::I64(vec![0; spec.elements()]),
        }
    }

    fn len(&self) -> usize {
        match self {
            Buffer::F32(v) => v.len(),
            Buffer::I64(v) => v.len(),
        }
    }

    /// The buffer's address and size in bytes (stable: never resized).
    fn raw(&mut self) -> (*mut c_void, usize) {
        match self {
            Buffer::F32(v) => (v.as_mut_ptr().cast(), std::mem::size_of_val(v.as_slice())),
            Buffer::I64(v) => (v.as_mut_ptr().cast(), std::mem::size_of_val(v.as_slice())),
        }
    }
}

pub struct OrtEngine {
    rt: &'static Runtime,
    artifact: PathBuf,
    session: *mut sys::OrtSession,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    /// Kept alive for the pointers in `*_name_ptrs`.
    _names: Vec<CString>,
    input_name_ptrs: Vec<*const c_char>,
    output_name_ptrs: Vec<*const c_char>,
    input_buffers: Vec<Buffer>,
    output_buffers: Vec<Vec<f32>>,
    /// onnxruntime values over the buffers above, made once at load.
    input_values: Vec<*const sys::OrtValue>,
    output_values: Vec<*mut sys::OrtValue>,
}

// SAFETY: the session and values are used only through `&mut self`, by one
// thread at a time; onnxruntime sessions may move between threads.
unsafe impl Send for OrtEngine {}

impl Drop for OrtEngine {
    fn drop(&mut self) {
        let api = self.rt.api;
        // SAFETY: each pointer was created by this API and is released once.
        unsafe {
            for v in self.input_values.drain(..) {
                ((*api).ReleaseValue)(v.cast_mut());
            }
            for v in self.output_values.drain(..) {
                ((*api).ReleaseValue)(v);
            }
            if !self.session.is_null() {
                ((*api).ReleaseSession)(self.session);
            }
        }
    }
}

impl OrtEngine {
    /// Opens `path` as a session on `threads` intra-op threads and checks
    /// its inputs and outputs against the manifest's, by name.
    pub fn load(
        rt: &'static Runtime,
        path: &Path,
        inputs: &[TensorSpec],
        outputs: &[TensorSpec],
        threads: usize,
    ) -> Result<Self> {
        let err = |message: String| Error::Load {
            artifact: path.to_path_buf(),
            backend: "onnxruntime",
            message,
        };
        let api = rt.api;
        let file = CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| err("the path holds a NUL byte".into()))?;
        let names: Vec<CString> = inputs
            .iter()
            .chain(outputs)
            .map(|s| CString::new(s.name.as_str()))
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| err("a tensor name holds a NUL byte".into()))?;
        let mut engine = Self {
            rt,
            artifact: path.to_path_buf(),
            session: std::ptr::null_mut(),
            inputs: inputs.to_vec(),
            outputs: outputs.to_vec(),
            input_name_ptrs: names[..inputs.len()].iter().map(|c| c.as_ptr()).collect(),
            output_name_ptrs: names[inputs.len()..].iter().map(|c| c.as_ptr()).collect(),
            _names: names,
            input_buffers: inputs.iter().map(Buffer::new).collect(),
            output_buffers: outputs.iter().map(|s| vec![0.0; s.elements()]).collect(),
            input_values: Vec::with_capacity(inputs.len()),
            output_values: Vec::with_capacity(outputs.len()),
        };
        // SAFETY: every call gets valid pointers; what is created is owned by
        // `engine` (released by its Drop) or released here.
        unsafe {
            let mut options = std::ptr::null_mut();
            rt.check(((*api).CreateSessionOptions)(&mut options))
                .map_err(&err)?;
            let configured = (|| {
                let threads = i32::try_from(threads.max(1)).unwrap_or(i32::MAX);
                rt.check(((*api).SetIntraOpNumThreads)(options, threads))?;
                rt.check(((*api).SetInterOpNumThreads)(options, 1))?;
                // Each session has its own pool; a pool that spins after its
                // run holds a core while the next segment's pool works (the
                // chain ran 2–3× slower on two threads), and takes it from
                // the bridge and the camera on a robot. Idle threads sleep.
                rt.check(((*api).AddSessionConfigEntry)(
                    options,
                    c"session.intra_op.allow_spinning".as_ptr(),
                    c"0".as_ptr(),
                ))?;
                // The environment's arena (see `Runtime::open`).
                rt.check(((*api).AddSessionConfigEntry)(
                    options,
                    c"session.use_env_allocators".as_ptr(),
                    c"1".as_ptr(),
                ))?;
                rt.check(((*api).SetSessionExecutionMode)(
                    options,
                    sys::ExecutionMode::ORT_SEQUENTIAL,
                ))?;
                rt.check(((*api).SetSessionGraphOptimizationLevel)(
                    options,
                    sys::GraphOptimizationLevel::ORT_ENABLE_ALL,
                ))?;
                rt.check(((*api).CreateSession)(
                    rt.env,
                    file.as_ptr(),
                    options,
                    &mut engine.session,
                ))
            })();
            ((*api).ReleaseSessionOptions)(options);
            configured.map_err(&err)?;
            engine.check_tensors(true).map_err(&err)?;
            engine.check_tensors(false).map_err(&err)?;
            for (b, spec) in engine.input_buffers.iter_mut().zip(inputs) {
                let v = value(rt, b.raw(), &dims(spec), element_type(spec.dtype)).map_err(&err)?;
                engine.input_values.push(v);
            }
            for (b, spec) in engine.output_buffers.iter_mut().zip(outputs) {
                let raw = (b.as_mut_ptr().cast(), std::mem::size_of_val(b.as_slice()));
                let v = value(rt, raw, &dims(spec), element_type(DType::F32)).map_err(&err)?;
                engine.output_values.push(v);
            }
        }
        Ok(engine)
    }

    /// The session's inputs (or outputs) against the manifest's: each name
    /// present, of the manifest's element type and shape.
    unsafe fn check_tensors(&self, inputs: bool) -> std::result::Result<(), String> {
        // SAFETY: the caller's contract (see the doc comment).
        unsafe {
            let (rt, api) = (self.rt, self.rt.api);
            let (side, specs) = if inputs {
                ("input", &self.inputs)
            } else {
                ("output", &self.outputs)
            };
            let mut count = 0;
            rt.check(if inputs {
                ((*api).SessionGetInputCount)(self.session, &mut count)
            } else {
                ((*api).SessionGetOutputCount)(self.session, &mut count)
            })?;
            let mut allocator = std::ptr::null_mut();
            rt.check(((*api).GetAllocatorWithDefaultOptions)(&mut allocator))?;
            let mut graph = Vec::with_capacity(count);
            for k in 0..count {
                let mut name = std::ptr::null_mut();
                rt.check(if inputs {
                    ((*api).SessionGetInputName)(self.session, k, allocator, &mut name)
                } else {
                    ((*api).SessionGetOutputName)(self.session, k, allocator, &mut name)
                })?;
                graph.push(cstr(name));
                rt.check(((*api).AllocatorFree)(allocator, name.cast()))?;
            }
            for spec in specs {
                let k = offramp_engines::position_by_name(&graph, &spec.name, "graph", side)?;
                let mut info = std::ptr::null_mut();
                rt.check(if inputs {
                    ((*api).SessionGetInputTypeInfo)(self.session, k, &mut info)
                } else {
                    ((*api).SessionGetOutputTypeInfo)(self.session, k, &mut info)
                })?;
                let described = describe(rt, info);
                ((*api).ReleaseTypeInfo)(info);
                let (element, shape) = described?;
                let want = element_type(spec.dtype) as i32;
                // A dimension the graph leaves open (< 0) takes the manifest's.
                let fits = shape.len() == spec.shape.len()
                    && shape
                        .iter()
                        .zip(&spec.shape)
                        .all(|(&g, &m)| g < 0 || g as usize == m);
                if element != want || !fits || (!inputs && spec.dtype != DType::F32) {
                    return Err(format!(
                        "{side} {:?} is {} {shape:?} in the graph, the manifest says {:?} {:?}",
                        spec.name,
                        element_name(element),
                        spec.dtype,
                        spec.shape
                    ));
                }
            }
            // Every input the graph needs must be fed: one the manifest does
            // not list would fail every run.
            if inputs {
                let extra: Vec<&String> = graph
                    .iter()
                    .filter(|n| !specs.iter().any(|s| s.name == **n))
                    .collect();
                if !extra.is_empty() {
                    return Err(format!(
                        "the graph also needs input(s) {extra:?}, which the manifest does not list"
                    ));
                }
            }
            Ok(())
        }
    }
}

/// A tensor type's element type and dimensions.
unsafe fn describe(
    rt: &Runtime,
    info: *const sys::OrtTypeInfo,
) -> std::result::Result<(i32, Vec<i64>), String> {
    // SAFETY: the caller's contract (see the doc comment).
    unsafe {
        let api = rt.api;
        let mut tensor = std::ptr::null();
        rt.check(((*api).CastTypeInfoToTensorInfo)(info, &mut tensor))?;
        if tensor.is_null() {
            return Err("not a tensor".into());
        }
        // Read as the C int it is: a library newer than ort-sys's
        // declarations may name an element type its Rust enum lacks.
        let mut element: i32 = 0;
        rt.check(((*api).GetTensorElementType)(
            tensor,
            (&mut element as *mut i32).cast(),
        ))?;
        let mut rank = 0;
        rt.check(((*api).GetDimensionsCount)(tensor, &mut rank))?;
        let mut shape = vec![0i64; rank];
        rt.check(((*api).GetDimensions)(tensor, shape.as_mut_ptr(), rank))?;
        Ok((element, shape))
    }
}

/// onnxruntime's element type for a manifest dtype.
fn element_type(dtype: DType) -> sys::ONNXTensorElementDataType {
    match dtype {
        DType::F32 => sys::ONNXTensorElementDataType::ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT,
        DType::I64 => sys::ONNXTensorElementDataType::ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64,
    }
}

/// ONNX's name for an element type code.
fn element_name(code: i32) -> String {
    match code {
        1 => "float32".into(),
        7 => "int64".into(),
        6 => "int32".into(),
        10 => "float16".into(),
        11 => "float64".into(),
        16 => "bfloat16".into(),
        9 => "bool".into(),
        c => format!("element type {c}"),
    }
}

fn dims(spec: &TensorSpec) -> Vec<i64> {
    spec.shape.iter().map(|&d| d as i64).collect()
}

/// An onnxruntime value over `raw` (the buffer stays ours, and must outlive
/// the value).
unsafe fn value(
    rt: &Runtime,
    (data, bytes): (*mut c_void, usize),
    shape: &[i64],
    element: sys::ONNXTensorElementDataType,
) -> std::result::Result<*mut sys::OrtValue, String> {
    // SAFETY: the caller's contract (see the doc comment).
    unsafe {
        let mut v = std::ptr::null_mut();
        rt.check(((*rt.api).CreateTensorWithDataAsOrtValue)(
            rt.cpu,
            data,
            bytes,
            shape.as_ptr(),
            shape.len(),
            element,
            &mut v,
        ))?;
        Ok(v)
    }
}

impl Engine for OrtEngine {
    fn run(&mut self, inputs: &[&[f32]], outputs: &mut [&mut [f32]]) -> Result<()> {
        let err = |message| run_error(&self.artifact, message);
        check_arity(
            &self.artifact,
            (inputs.len(), outputs.len()),
            (self.inputs.len(), self.outputs.len()),
        )?;
        for ((data, spec), buffer) in inputs.iter().zip(&self.inputs).zip(&mut self.input_buffers) {
            let len = buffer.len();
            if data.len() != len {
                return Err(err(format!(
                    "input {:?} has {} values, the engine takes {len}",
                    spec.name,
                    data.len()
                )));
            }
            match buffer {
                Buffer::F32(b) => b.copy_from_slice(data),
                // Token ids, held as exact f32 integers (checked < 2^24).
                Buffer::I64(b) => {
                    for (d, x) in b.iter_mut().zip(data.iter()) {
                        *d = *x as i64;
                    }
                }
            }
        }
        for ((out, b), spec) in outputs.iter().zip(&self.output_buffers).zip(&self.outputs) {
            if out.len() != b.len() {
                return Err(err(format!(
                    "output {:?} has {} values, the buffer {}",
                    spec.name,
                    b.len(),
                    out.len()
                )));
            }
        }
        // SAFETY: names, values and buffers were made at load for this
        // session and live as long as `self`; the output values wrap our
        // buffers, which onnxruntime writes in place.
        unsafe {
            self.rt
                .check(((*self.rt.api).Run)(
                    self.session,
                    std::ptr::null(),
                    self.input_name_ptrs.as_ptr(),
                    self.input_values.as_ptr(),
                    self.input_values.len(),
                    self.output_name_ptrs.as_ptr(),
                    self.output_name_ptrs.len(),
                    self.output_values.as_mut_ptr(),
                ))
                .map_err(err)?;
        }
        for (out, b) in outputs.iter_mut().zip(&self.output_buffers) {
            out.copy_from_slice(b);
        }
        Ok(())
    }
}
