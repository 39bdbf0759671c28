//! The preprocessing as CUDA kernels, compiled at start-up with NVRTC:
//! horizontal filter pass (u8 HWC → f32), vertical pass + scale + normalise +
//! HWC → CHW into this module's own device tensor, shaped like the model's
//! input. It uses the CPU [`Preprocessor`]'s own filter tables and the same
//! float operations in the same order (FMA contraction off), so the two agree
//! to rounding; `tests/cuda_preprocess.rs` compares them (it skips where there
//! is no GPU).
//!
//! With a TensorRT engine set, [`crate::pipeline::Pipeline::use_cuda_preprocessing`]
//! puts it in front of the engines: each frame is uploaded once and its
//! tensor goes device to device into the first segment's input buffer
//! ([`CudaPreprocess::write_device`]), never back through the host.
//!
//! Everything is allocated in [`CudaPreprocess::new`]: the device tables,
//! the frame buffer, the intermediate image, the output tensor, a pinned
//! upload buffer (write-combined: the CPU only writes it) and a pinned
//! readback buffer (not write-combined: the CPU reads it). One stream, and a
//! pair of timing events around each run.
//!
//! cudarc loads libcuda at run time and panics when it is absent, so
//! [`available`] checks first and every entry point returns an error
//! instead; NVRTC is opened by [`crate::nvrtc`], which also finds CUDA 13's.

use crate::preprocess::Preprocessor;
use cudarc::driver::sys::{CUevent_flags, CU_MEMHOSTALLOC_WRITECOMBINED};
use cudarc::driver::{
    CudaContext, CudaEvent, CudaFunction, CudaSlice, CudaStream, DevicePtr, LaunchConfig,
    PinnedHostSlice, PushKernelArg,
};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum CudaPreprocessError {
    #[error("CUDA preprocessing unavailable: {0}")]
    Unavailable(String),
    #[error("CUDA {what}: {why}")]
    Cuda { what: &'static str, why: String },
    #[error("NVRTC could not compile the preprocessing kernels: {0}")]
    Compile(String),
    #[error(transparent)]
    Frame(#[from] crate::preprocess::PreprocessError),
    #[error("output has {got} values, the tensor {want}")]
    OutputSize { got: usize, want: usize },
}

/// Whether libcuda and libnvrtc can be loaded and a device exists; the
/// reason when not.
pub fn available() -> Result<(), String> {
    // SAFETY: this only tries to dlopen the library.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err("libcuda (the NVIDIA driver) is not installed".into());
    }
    let nvrtc = crate::nvrtc::Nvrtc::get()?;
    let mut driver = 0;
    // SAFETY: libcuda is present (checked above); one out-pointer.
    let r = unsafe { cudarc::driver::sys::cuDriverGetVersion(&mut driver) };
    if r != cudarc::driver::sys::cudaError_enum::CUDA_SUCCESS {
        return Err(format!("CUDA: cuDriverGetVersion: {r:?}"));
    }
    crate::nvrtc::driver_loads_ptx_of(nvrtc.version(), driver)
        .map_err(|e| format!("{}: {e}", nvrtc.path()))?;
    let n = CudaContext::device_count().map_err(|e| format!("CUDA: {e}"))?;
    if n < 1 {
        return Err("no CUDA device".into());
    }
    Ok(())
}

const KERNELS: &str = r#"
extern "C" __global__ void offramp_h_pass(
    const unsigned char* frame, float* tmp, int sw, int sh, int dw,
    const int* start, const int* len, int stride, const float* w)
{
    int x = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= dw || y >= sh) return;
    const unsigned char* row = frame + (size_t)y * sw * 3;
    const float* wx = w + (size_t)x * stride;
    int s0 = start[x], n = len[x];
    float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f;
    for (int k = 0; k < n; ++k) {
        const unsigned char* p = row + (size_t)(s0 + k) * 3;
        a0 += (float)p[0] * wx[k];
        a1 += (float)p[1] * wx[k];
        a2 += (float)p[2] * wx[k];
    }
    float* o = tmp + ((size_t)y * dw + x) * 3;
    o[0] = a0; o[1] = a1; o[2] = a2;
}

extern "C" __global__ void offramp_v_pass(
    const float* tmp, float* out, int dw, int dh,
    const int* start, const int* len, int stride, const float* w,
    float m0, float m1, float m2, float s0_, float s1_, float s2_)
{
    int x = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= dw || y >= dh) return;
    const float* wy = w + (size_t)y * stride;
    int s0 = start[y], n = len[y];
    float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f;
    for (int k = 0; k < n; ++k) {
        const float* p = tmp + ((size_t)(s0 + k) * dw + x) * 3;
        a0 += p[0] * wy[k];
        a1 += p[1] * wy[k];
        a2 += p[2] * wy[k];
    }
    size_t plane = (size_t)dw * dh, i = (size_t)y * dw + x;
    out[i] = (a0 / 255.0f - m0) / s0_;
    out[plane + i] = (a1 / 255.0f - m1) / s1_;
    out[2 * plane + i] = (a2 / 255.0f - m2) / s2_;
}
"#;

/// Compiles the kernels to PTX with NVRTC (needs only libnvrtc, no GPU;
/// found as [`crate::nvrtc::Nvrtc::get`] says).
pub fn compile_kernels() -> Result<cudarc::nvrtc::Ptx, CudaPreprocessError> {
    compile_kernels_with(crate::nvrtc::Nvrtc::get().map_err(CudaPreprocessError::Unavailable)?)
}

/// [`compile_kernels`] with a given NVRTC (to check each CUDA's).
pub fn compile_kernels_with(
    nvrtc: &crate::nvrtc::Nvrtc,
) -> Result<cudarc::nvrtc::Ptx, CudaPreprocessError> {
    // The CPU path rounds after every multiply and add: no FMA contraction.
    nvrtc
        .compile_ptx(KERNELS, "offramp_preprocess.cu", &["--fmad=false"])
        .map(cudarc::nvrtc::Ptx::from_src)
        .map_err(|log| {
            CudaPreprocessError::Compile(format!("{} ({}): {log}", nvrtc.path(), version(nvrtc)))
        })
}

fn version(n: &crate::nvrtc::Nvrtc) -> String {
    let (major, minor) = n.version();
    format!("CUDA {major}.{minor}")
}

struct Axis {
    start: CudaSlice<i32>,
    len: CudaSlice<i32>,
    stride: i32,
    w: CudaSlice<f32>,
}

pub struct CudaPreprocess {
    stream: Arc<CudaStream>,
    h_pass: CudaFunction,
    v_pass: CudaFunction,
    x: Axis,
    y: Axis,
    src: (usize, usize),
    dst: (usize, usize),
    mean: [f32; 3],
    std: [f32; 3],
    upload: PinnedHostSlice<u8>,
    frame: CudaSlice<u8>,
    tmp: CudaSlice<f32>,
    out: CudaSlice<f32>,
    readback: PinnedHostSlice<f32>,
    start: CudaEvent,
    end: CudaEvent,
    _ctx: Arc<CudaContext>,
}

fn cuda(what: &'static str) -> impl Fn(cudarc::driver::DriverError) -> CudaPreprocessError {
    move |e| CudaPreprocessError::Cuda {
        what,
        why: e.to_string(),
    }
}

fn as_i32(v: &[usize]) -> Vec<i32> {
    v.iter().map(|&x| x as i32).collect()
}

impl CudaPreprocess {
    /// Device 0, the same preprocessing as `cpu`.
    pub fn new(cpu: &Preprocessor) -> Result<Self, CudaPreprocessError> {
        available().map_err(CudaPreprocessError::Unavailable)?;
        let t = cpu.tables();
        let ctx = CudaContext::new(0).map_err(cuda("context"))?;
        let stream = ctx.new_stream().map_err(cuda("stream"))?;
        let ptx = compile_kernels()?;
        let module = ctx.load_module(ptx).map_err(cuda("module"))?;
        let h_pass = module
            .load_function("offramp_h_pass")
            .map_err(cuda("kernel"))?;
        let v_pass = module
            .load_function("offramp_v_pass")
            .map_err(cuda("kernel"))?;
        let axis = |a: &crate::preprocess::AxisTaps<'_>| -> Result<Axis, CudaPreprocessError> {
            Ok(Axis {
                start: stream
                    .clone_htod(&as_i32(a.start))
                    .map_err(cuda("upload"))?,
                len: stream.clone_htod(&as_i32(a.len)).map_err(cuda("upload"))?,
                stride: a.stride as i32,
                w: stream.clone_htod(a.weights).map_err(cuda("upload"))?,
            })
        };
        let (x, y) = (axis(&t.x)?, axis(&t.y)?);
        let (sw, sh) = t.src;
        let (dw, dh) = t.dst;
        // SAFETY: both buffers are fully written before they are read
        // (frames are copied in whole; readback is filled by a copy).
        let upload = unsafe {
            ctx.alloc_pinned_with_flags::<u8>(sw * sh * 3, CU_MEMHOSTALLOC_WRITECOMBINED)
        }
        .map_err(cuda("pinned upload buffer"))?;
        let readback = unsafe { ctx.alloc_pinned_with_flags::<f32>(dw * dh * 3, 0) }
            .map_err(cuda("pinned readback buffer"))?;
        let new_event = || {
            ctx.new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
                .map_err(cuda("event"))
        };
        Ok(Self {
            frame: stream.alloc_zeros(sw * sh * 3).map_err(cuda("alloc"))?,
            tmp: stream.alloc_zeros(sh * dw * 3).map_err(cuda("alloc"))?,
            out: stream.alloc_zeros(dw * dh * 3).map_err(cuda("alloc"))?,
            start: new_event()?,
            end: new_event()?,
            stream,
            h_pass,
            v_pass,
            x,
            y,
            src: t.src,
            dst: t.dst,
            mean: t.mean,
            std: t.std,
            upload,
            readback,
            _ctx: ctx,
        })
    }

    /// Uploads `frame` (HWC RGB u8) and enqueues both passes; returns
    /// without waiting. The result is [`Self::output`] on the device.
    pub fn run(&mut self, frame: &[u8]) -> Result<(), CudaPreprocessError> {
        let (sw, sh) = self.src;
        let (dw, dh) = self.dst;
        crate::preprocess::check_frame(self.src, frame.len())?;
        self.upload
            .as_mut_slice()
            .map_err(cuda("pinned buffer"))?
            .copy_from_slice(frame);
        self.start.record(&self.stream).map_err(cuda("event"))?;
        self.stream
            .memcpy_htod(&self.upload, &mut self.frame)
            .map_err(cuda("upload"))?;
        let grid = |w: usize, h: usize| LaunchConfig {
            grid_dim: (w.div_ceil(16) as u32, h.div_ceil(16) as u32, 1),
            block_dim: (16, 16, 1),
            shared_mem_bytes: 0,
        };
        let (sw_i, sh_i, dw_i, dh_i) = (sw as i32, sh as i32, dw as i32, dh as i32);
        let mut b = self.stream.launch_builder(&self.h_pass);
        b.arg(&self.frame)
            .arg(&mut self.tmp)
            .arg(&sw_i)
            .arg(&sh_i)
            .arg(&dw_i)
            .arg(&self.x.start)
            .arg(&self.x.len)
            .arg(&self.x.stride)
            .arg(&self.x.w);
        // SAFETY: the argument list matches offramp_h_pass; every buffer was
        // sized for these dimensions in `new`.
        unsafe { b.launch(grid(dw, sh)) }.map_err(cuda("launch"))?;
        let [m0, m1, m2] = self.mean;
        let [s0, s1, s2] = self.std;
        let mut b = self.stream.launch_builder(&self.v_pass);
        b.arg(&self.tmp)
            .arg(&mut self.out)
            .arg(&dw_i)
            .arg(&dh_i)
            .arg(&self.y.start)
            .arg(&self.y.len)
            .arg(&self.y.stride)
            .arg(&self.y.w)
            .arg(&m0)
            .arg(&m1)
            .arg(&m2)
            .arg(&s0)
            .arg(&s1)
            .arg(&s2);
        // SAFETY: as above, for offramp_v_pass.
        unsafe { b.launch(grid(dw, dh)) }.map_err(cuda("launch"))?;
        self.end.record(&self.stream).map_err(cuda("event"))?;
        Ok(())
    }

    /// The preprocessed tensor on the device ([1, 3, H, W]); see
    /// [`Self::write_device`] to hand it to an engine.
    pub fn output(&self) -> &CudaSlice<f32> {
        &self.out
    }

    /// Copies the last run's tensor into an engine's input buffer on the
    /// device (see `offramp_engines::Engine::device_input`) and waits, so
    /// that the engine, on its own stream, reads a finished tensor.
    pub fn write_device(
        &mut self,
        dst: offramp_engines::DeviceTensor,
    ) -> Result<(), CudaPreprocessError> {
        let bytes = self.out.len() * std::mem::size_of::<f32>();
        if dst.bytes != bytes {
            return Err(CudaPreprocessError::OutputSize {
                got: dst.bytes / std::mem::size_of::<f32>(),
                want: self.out.len(),
            });
        }
        {
            let (src, _sync) = self.out.device_ptr(&self.stream);
            // SAFETY: both are f32 device buffers of `bytes` in device 0's
            // primary context; `dst` is owned by an engine that outlives
            // this call, and the stream is synchronized before returning.
            unsafe {
                cudarc::driver::result::memcpy_dtod_async(
                    dst.address,
                    src,
                    bytes,
                    self.stream.cu_stream(),
                )
            }
            .map_err(cuda("copy into the engine's input"))?;
        }
        self.end.record(&self.stream).map_err(cuda("event"))?;
        self.stream.synchronize().map_err(cuda("synchronize"))
    }

    /// Waits for the last run and copies the tensor into `out`.
    pub fn read(&mut self, out: &mut [f32]) -> Result<(), CudaPreprocessError> {
        if out.len() != self.out.len() {
            return Err(CudaPreprocessError::OutputSize {
                got: out.len(),
                want: self.out.len(),
            });
        }
        self.stream
            .memcpy_dtoh(&self.out, &mut self.readback)
            .map_err(cuda("readback"))?;
        self.stream.synchronize().map_err(cuda("synchronize"))?;
        out.copy_from_slice(self.readback.as_slice().map_err(cuda("pinned buffer"))?);
        Ok(())
    }

    /// GPU time of the last run (upload + both kernels), from the events.
    pub fn last_gpu_ms(&self) -> Result<f32, CudaPreprocessError> {
        self.start
            .elapsed_ms(&self.end)
            .map_err(cuda("event timing"))
    }
}
