//! The onnxruntime library, opened once per process, and its C API.

use offramp_engines::{Error, Result};
use ort_sys as sys;
use std::ffi::{c_char, CStr};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The C API version asked for: onnxruntime 1.14's. Every function this
/// backend calls is in it, and later libraries serve earlier versions.
pub const MIN_API_VERSION: u32 = 14;

const BACKEND: &str = "onnxruntime";

/// The opened library: its API table, the process's one environment and the
/// CPU memory description the engines' buffers are wrapped with.
pub struct Runtime {
    /// The library's API table, read field by field through the pointer: a
    /// library older than ort-sys's declarations has a shorter table, so no
    /// reference to the whole struct is ever made.
    pub(crate) api: *const sys::OrtApi,
    pub(crate) env: *mut sys::OrtEnv,
    pub(crate) cpu: *mut sys::OrtMemoryInfo,
    /// The library's own version string (e.g. "1.23.2").
    pub version: String,
    /// Where it was opened from (as asked: a path, or the loader's name).
    pub library: PathBuf,
    _lib: libloading::Library,
}

// SAFETY: onnxruntime's environment and memory info are immutable after
// creation and documented thread-safe; sessions are used by one engine (one
// thread) at a time.
unsafe impl Send for Runtime {}
unsafe impl Sync for Runtime {}

/// The process's runtime, once one opened (never closed: sessions and
/// values hold pointers into the library).
static RUNTIME: Mutex<Option<&'static Runtime>> = Mutex::new(None);

fn unavailable(what: &str, why: String) -> Error {
    Error::Unavailable {
        what: what.to_string(),
        backend: BACKEND,
        why,
    }
}

/// Where to look when no library is named, and what to tell a user who has
/// none.
const SYSTEM_NAMES: [&str; 2] = ["libonnxruntime.so.1", "libonnxruntime.so"];
const HOW: &str = "set OFFRAMP_ONNXRUNTIME_LIB to a libonnxruntime.so: the onnxruntime Python \
    wheel has one in onnxruntime/capi/ (python3 -c 'import onnxruntime, os; \
    print(os.path.dirname(onnxruntime.__file__))'), JetPack's and the release \
    tarballs' in lib/";

impl Runtime {
    /// The process's runtime, opening `library` (or the system's) the first
    /// time. One library per process: asking for another once one is open
    /// is refused, naming both.
    pub fn get(library: Option<&Path>) -> Result<&'static Runtime> {
        let mut slot = RUNTIME.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(rt) = *slot {
            return match library {
                Some(p) if p != rt.library => Err(unavailable(
                    &p.display().to_string(),
                    format!(
                        "onnxruntime {} is already open in this process, from {} (one library per process)",
                        rt.version,
                        rt.library.display()
                    ),
                )),
                _ => Ok(rt),
            };
        }
        let rt: &'static Runtime = Box::leak(Box::new(Self::open(library)?));
        *slot = Some(rt);
        Ok(rt)
    }

    fn open(library: Option<&Path>) -> Result<Self> {
        let (lib, path) = match library {
            Some(p) => {
                // SAFETY: opening a shared library runs its initialisers; the
                // user named this one as onnxruntime.
                let lib = unsafe { libloading::Library::new(p) }.map_err(|e| {
                    unavailable(
                        &p.display().to_string(),
                        format!("cannot open {}: {e}", p.display()),
                    )
                })?;
                (lib, p.to_path_buf())
            }
            None => {
                let mut tried = Vec::new();
                let mut found = None;
                for name in SYSTEM_NAMES {
                    // SAFETY: as above, the system's onnxruntime.
                    match unsafe { libloading::Library::new(name) } {
                        Ok(lib) => {
                            found = Some((lib, PathBuf::from(name)));
                            break;
                        }
                        Err(e) => tried.push(format!("{name}: {e}")),
                    }
                }
                found.ok_or_else(|| {
                    unavailable(
                        "the onnxruntime library",
                        format!("not found ({}); {HOW}", tried.join("; ")),
                    )
                })?
            }
        };
        let shown = path.display().to_string();
        // SAFETY: the symbol's type is the C API's entry point.
        let base = unsafe {
            lib.get::<unsafe extern "C" fn() -> *const sys::OrtApiBase>(b"OrtGetApiBase\0")
                .map(|f| f())
        }
        .map_err(|_| {
            unavailable(
                &shown,
                format!("{shown} is not an onnxruntime library (it has no OrtGetApiBase); {HOW}"),
            )
        })?;
        // SAFETY: OrtGetApiBase returns a static table or null.
        let base = unsafe { base.as_ref() }
            .ok_or_else(|| unavailable(&shown, "OrtGetApiBase returned nothing".into()))?;
        // SAFETY: a static NUL-terminated string.
        let version = unsafe { cstr((base.GetVersionString)()) };
        // SAFETY: GetApi returns a static table, or null for a version the
        // library does not serve.
        let api = unsafe { (base.GetApi)(MIN_API_VERSION) };
        if api.is_null() {
            return Err(unavailable(
                &shown,
                format!(
                    "onnxruntime {version} does not serve C API version {MIN_API_VERSION} \
                     (onnxruntime 1.14 or later is needed)"
                ),
            ));
        }
        let mut env = std::ptr::null_mut();
        let mut cpu = std::ptr::null_mut();
        // SAFETY: valid out-pointers and a static log id.
        unsafe {
            status(
                api,
                ((*api).CreateEnv)(
                    sys::OrtLoggingLevel::ORT_LOGGING_LEVEL_ERROR,
                    c"offramp".as_ptr(),
                    &mut env,
                ),
            )
            .map_err(|e| unavailable(&shown, format!("creating its environment: {e}")))?;
            status(
                api,
                ((*api).CreateCpuMemoryInfo)(
                    sys::OrtAllocatorType::OrtArenaAllocator,
                    sys::OrtMemType::OrtMemTypeDefault,
                    &mut cpu,
                ),
            )
            .map_err(|e| {
                // The environment goes before the library does.
                ((*api).ReleaseEnv)(env);
                unavailable(&shown, format!("describing CPU memory: {e}"))
            })?;
            // One arena for every session of this environment (sessions ask
            // for it with `session.use_env_allocators`): the segments run
            // one after another, so one scratch serves them all (4 segments
            // with 10 MB attention maps: 35 MB instead of 60; tests/arena.rs).
            // Once per environment: a second registration is refused, and
            // `Runtime::get` opens one runtime per process.
            status(
                api,
                ((*api).CreateAndRegisterAllocator)(env, cpu, std::ptr::null()),
            )
            .map_err(|e| {
                ((*api).ReleaseMemoryInfo)(cpu);
                ((*api).ReleaseEnv)(env);
                unavailable(&shown, format!("registering a shared CPU arena: {e}"))
            })?;
        }
        Ok(Self {
            api,
            env,
            cpu,
            version,
            library: path,
            _lib: lib,
        })
    }

    /// `Ok` for a null status, else its message (the status released).
    ///
    /// # Safety
    ///
    /// `s` must be a status this runtime's API returned, or null.
    pub(crate) unsafe fn check(&self, s: sys::OrtStatusPtr) -> std::result::Result<(), String> {
        // SAFETY: the caller's contract (see the doc comment).
        unsafe { status(self.api, s) }
    }
}

/// See [`Runtime::check`].
unsafe fn status(api: *const sys::OrtApi, s: sys::OrtStatusPtr) -> std::result::Result<(), String> {
    // SAFETY: the caller's contract (see the doc comment).
    unsafe {
        if s.0.is_null() {
            return Ok(());
        }
        let message = cstr(((*api).GetErrorMessage)(s.0));
        ((*api).ReleaseStatus)(s.0);
        Err(message)
    }
}

/// A C string the library owns, copied.
pub(crate) unsafe fn cstr(p: *const c_char) -> String {
    // SAFETY: the caller's contract (see the doc comment).
    unsafe {
        if p.is_null() {
            return String::new();
        }
        CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}
