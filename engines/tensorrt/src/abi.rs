//! The shim's C ABI (`shim/trt_shim.h`), declared once, and the loading of
//! a shim library at run time.
//!
//! Nothing here depends on TensorRT's headers: the shim is a shared library
//! built on the robot (`offramp build-shim`) and opened with dlopen, so every
//! offramp build compiles this backend, and CI runs it against the test
//! double in `shim/trt_double.c`.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// `OFR_TRT_ABI_VERSION` of `shim/trt_shim.h`: a shim built from other
/// sources is refused.
pub const ABI_VERSION: i32 = 3;

/// File name of the shim library `offramp build-shim` writes.
pub const SHIM_FILE: &str = "libofframp_trt_shim.so";

#[repr(C)]
pub(crate) struct RawLibrary {
    _p: [u8; 0],
}
#[repr(C)]
pub(crate) struct RawRuntime {
    _p: [u8; 0],
}
#[repr(C)]
pub(crate) struct RawEngine {
    _p: [u8; 0],
}
#[repr(C)]
pub(crate) struct RawContext {
    _p: [u8; 0],
}

/// Declares the entry points once: the table's fields are the C symbols,
/// resolved by name when the library is opened.
macro_rules! abi {
    ($( fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)?; )*) => {
        /// The shim's entry points, resolved from one shared library.
        #[allow(clippy::type_complexity)]
        pub(crate) struct Abi {
            $( pub(crate) $name: unsafe extern "C" fn($($ty),*) $(-> $ret)?, )*
            _lib: libloading::Library,
        }

        impl Abi {
            /// # Safety
            /// `lib` must implement `trt_shim.h` with these signatures; the
            /// ABI version is checked right after.
            unsafe fn resolve(lib: libloading::Library) -> Result<Self, String> {
                $(
                    // SAFETY: the caller vouches for the signature.
                    let $name = *unsafe {
                        lib.get::<unsafe extern "C" fn($($ty),*) $(-> $ret)?>(
                            concat!(stringify!($name), "\0").as_bytes(),
                        )
                    }
                    .map_err(|e| format!("lacks `{}` ({e})", stringify!($name)))?;
                )*
                Ok(Self { $($name,)* _lib: lib })
            }
        }
    };
}

abi! {
    fn ofr_trt_abi_version() -> i32;
    fn ofr_trt_header_version() -> i32;
    fn ofr_trt_last_error() -> *const c_char;
    fn ofr_trt_open(library: *const c_char) -> *mut RawLibrary;
    fn ofr_trt_library_version(lib: *const RawLibrary) -> i32;
    fn ofr_trt_device_identity(
        lib: *mut RawLibrary,
        name: *mut c_char,
        cap: usize,
        major: *mut i32,
        minor: *mut i32,
    ) -> c_int;
    fn ofr_trt_malloc(lib: *mut RawLibrary, ptr: *mut *mut c_void, bytes: usize) -> c_int;
    fn ofr_trt_free(lib: *mut RawLibrary, ptr: *mut c_void) -> c_int;
    fn ofr_trt_stream_create(lib: *mut RawLibrary, stream: *mut *mut c_void) -> c_int;
    fn ofr_trt_stream_destroy(lib: *mut RawLibrary, stream: *mut c_void) -> c_int;
    fn ofr_trt_stream_synchronize(lib: *mut RawLibrary, stream: *mut c_void) -> c_int;
    fn ofr_trt_memcpy_htod(
        lib: *mut RawLibrary,
        dst: *mut c_void,
        src: *const c_void,
        bytes: usize,
        stream: *mut c_void,
    ) -> c_int;
    fn ofr_trt_memcpy_dtoh(
        lib: *mut RawLibrary,
        dst: *mut c_void,
        src: *const c_void,
        bytes: usize,
        stream: *mut c_void,
    ) -> c_int;
    fn ofr_trt_event_create(lib: *mut RawLibrary, event: *mut *mut c_void) -> c_int;
    fn ofr_trt_event_destroy(lib: *mut RawLibrary, event: *mut c_void) -> c_int;
    fn ofr_trt_event_record(lib: *mut RawLibrary, event: *mut c_void, stream: *mut c_void) -> c_int;
    fn ofr_trt_event_elapsed_ms(
        lib: *mut RawLibrary,
        start: *mut c_void,
        end: *mut c_void,
        ms: *mut f32,
    ) -> c_int;
    fn ofr_trt_runtime_create(lib: *mut RawLibrary) -> *mut RawRuntime;
    fn ofr_trt_runtime_destroy(runtime: *mut RawRuntime);
    fn ofr_trt_engine_deserialize(
        runtime: *mut RawRuntime,
        plan: *const c_void,
        len: usize,
    ) -> *mut RawEngine;
    fn ofr_trt_engine_destroy(engine: *mut RawEngine);
    fn ofr_trt_engine_io_count(engine: *const RawEngine) -> i32;
    fn ofr_trt_engine_io(
        engine: *const RawEngine,
        index: i32,
        name: *mut *const c_char,
        is_input: *mut i32,
        dtype: *mut i32,
        dims: *mut i64,
        nb_dims: *mut i32,
    ) -> c_int;
    fn ofr_trt_engine_device_memory_size(engine: *const RawEngine) -> i64;
    fn ofr_trt_context_create(engine: *mut RawEngine) -> *mut RawContext;
    fn ofr_trt_context_destroy(context: *mut RawContext);
    fn ofr_trt_context_set_device_memory(
        context: *mut RawContext,
        memory: *mut c_void,
        size: i64,
    ) -> c_int;
    fn ofr_trt_context_set_tensor_address(
        context: *mut RawContext,
        name: *const c_char,
        address: *mut c_void,
    ) -> c_int;
    fn ofr_trt_context_enqueue(context: *mut RawContext, stream: *mut c_void) -> c_int;
    fn ofr_trt_graph_begin(lib: *mut RawLibrary, stream: *mut c_void) -> c_int;
    fn ofr_trt_graph_end(lib: *mut RawLibrary, stream: *mut c_void, graph: *mut *mut c_void) -> c_int;
    fn ofr_trt_graph_launch(lib: *mut RawLibrary, graph: *mut c_void, stream: *mut c_void) -> c_int;
    fn ofr_trt_graph_destroy(lib: *mut RawLibrary, graph: *mut c_void) -> c_int;
}

impl Abi {
    /// The shim's last error on this thread.
    pub(crate) fn last_error(&self) -> String {
        // SAFETY: the shim returns a NUL-terminated thread-local string.
        let p = unsafe { (self.ofr_trt_last_error)() };
        if p.is_null() {
            return "unknown error".into();
        }
        // SAFETY: non-null, NUL-terminated, valid until the next shim call.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }
}

/// Where the shim library is looked for, in order: `OFFRAMP_TRT_SHIM`, then
/// next to the binary (`../lib/` as the bundle installs it, and its own
/// folder), then `/opt/offramp/lib`.
pub fn shim_candidates() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::env::var_os("OFFRAMP_TRT_SHIM")
        .map(PathBuf::from)
        .into_iter()
        .collect();
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        out.push(dir.join("../lib").join(SHIM_FILE));
        out.push(dir.join(SHIM_FILE));
    }
    out.push(Path::new("/opt/offramp/lib").join(SHIM_FILE));
    out
}

/// Loaded shims by path: a shared library is opened once per process.
static SHIMS: Mutex<Vec<(PathBuf, Arc<Abi>)>> = Mutex::new(Vec::new());

/// Opens the shim at `path` (or the first of [`shim_candidates`] that
/// exists) and checks its ABI version.
pub(crate) fn load_shim(path: Option<&Path>) -> Result<(PathBuf, Arc<Abi>), String> {
    let path = match path {
        Some(p) => p.to_path_buf(),
        None => {
            let candidates = shim_candidates();
            candidates
                .iter()
                .find(|p| p.is_file())
                .cloned()
                .ok_or_else(|| {
                    format!(
                        "the TensorRT shim ({SHIM_FILE}) was not found in {}: build it on this \
                         machine with `offramp build-shim` (needs TensorRT's and CUDA's headers), \
                         or point OFFRAMP_TRT_SHIM at it",
                        candidates
                            .iter()
                            .map(|p| p.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })?
        }
    };
    let mut shims = SHIMS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, abi)) = shims.iter().find(|(p, _)| *p == path) {
        return Ok((path, abi.clone()));
    }
    // SAFETY: loading runs the library's initialisers; a shim has none
    // beyond the C++ runtime's.
    let lib = unsafe { libloading::Library::new(&path) }
        .map_err(|e| format!("cannot open the TensorRT shim {}: {e}", path.display()))?;
    // SAFETY: the signatures are those of trt_shim.h; the ABI version,
    // checked next, guards against a shim from other sources.
    let abi = unsafe { Abi::resolve(lib) }
        .map_err(|e| format!("{} is not an offramp TensorRT shim: it {e}", path.display()))?;
    // SAFETY: resolved above; takes no arguments.
    let v = unsafe { (abi.ofr_trt_abi_version)() };
    if v != ABI_VERSION {
        return Err(format!(
            "{} implements shim ABI {v}, this offramp needs {ABI_VERSION}: rebuild it with \
             `offramp build-shim`",
            path.display()
        ));
    }
    let abi = Arc::new(abi);
    shims.push((path.clone(), abi.clone()));
    Ok((path, abi))
}

/// An opened libnvinfer, through a shim; lives as long as the process
/// (engines keep vtables into it).
pub(crate) struct Library {
    pub(crate) abi: Arc<Abi>,
    pub(crate) raw: *mut RawLibrary,
    /// `getInferLibVersion()` as the library reports it.
    pub(crate) version: i32,
    /// The TensorRT headers the shim was compiled against.
    pub(crate) header_version: i32,
    pub(crate) shim: PathBuf,
}

// SAFETY: the shim's library object is read-only after opening (the test
// double locks its own state); CUDA and TensorRT calls on it are
// thread-safe.
unsafe impl Send for Library {}
unsafe impl Sync for Library {}

type LibraryKey = (PathBuf, Option<PathBuf>);
static LIBRARIES: Mutex<Vec<(LibraryKey, Arc<Library>)>> = Mutex::new(Vec::new());

/// Opens libnvinfer (`library`, or the one the shim's headers name) through
/// the shim at `shim`; once per pair per process.
pub(crate) fn open(shim: Option<&Path>, library: Option<&Path>) -> Result<Arc<Library>, String> {
    let (shim_path, abi) = load_shim(shim)?;
    let key = (shim_path.clone(), library.map(Path::to_path_buf));
    let mut libs = LIBRARIES.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, lib)) = libs.iter().find(|(k, _)| *k == key) {
        return Ok(lib.clone());
    }
    let c = library
        .map(|p| CString::new(p.as_os_str().as_encoded_bytes()))
        .transpose()
        .map_err(|_| "the library path contains a NUL byte".to_string())?;
    // SAFETY: `c` outlives the call.
    let raw = unsafe { (abi.ofr_trt_open)(c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr())) };
    if raw.is_null() {
        return Err(abi.last_error());
    }
    // SAFETY: `raw` was just opened.
    let version = unsafe { (abi.ofr_trt_library_version)(raw) };
    // SAFETY: no arguments.
    let header_version = unsafe { (abi.ofr_trt_header_version)() };
    let lib = Arc::new(Library {
        abi,
        raw,
        version,
        header_version,
        shim: shim_path,
    });
    libs.push((key, lib.clone()));
    Ok(lib)
}

impl Library {
    /// The library's TensorRT version, decoded.
    pub(crate) fn trt_version(&self) -> Result<super::TrtVersion, String> {
        super::TrtVersion::from_lib(self.version)
            .ok_or_else(|| format!("reports version {}, which is not valid", self.version))
    }

    pub(crate) fn last_error(&self) -> String {
        self.abi.last_error()
    }

    /// CUDA device 0's name and compute capability.
    pub(crate) fn device(&self) -> Result<(String, i32, i32), String> {
        let mut name = [0 as c_char; 256];
        let (mut major, mut minor) = (0, 0);
        // SAFETY: valid buffer of `name.len()` bytes and out-pointers.
        let rc = unsafe {
            (self.abi.ofr_trt_device_identity)(
                self.raw,
                name.as_mut_ptr(),
                name.len(),
                &mut major,
                &mut minor,
            )
        };
        if rc != 0 {
            return Err(self.last_error());
        }
        // SAFETY: the shim NUL-terminates within `cap`.
        let name = unsafe { CStr::from_ptr(name.as_ptr()) }
            .to_string_lossy()
            .into_owned();
        Ok((name, major, minor))
    }
}
