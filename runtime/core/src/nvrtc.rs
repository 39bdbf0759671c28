//! NVRTC, the CUDA runtime compiler, found and opened at run time.
//!
//! cudarc's own loader asks for `libnvrtc.so` and the sonames of CUDA 9 to
//! 12; CUDA 13 ships `libnvrtc.so.13` only (no unversioned name without the
//! development package), so a machine with CUDA 13 alone (JetPack 7, a
//! current CUDA container, the `nvidia-cuda-nvrtc` wheel) would have no
//! GPU preprocessing. This module asks for the unversioned name (the
//! toolkit's development link), then the sonames of CUDA 13, 12 and 11,
//! and takes `OFFRAMP_NVRTC_LIB` before anything else. The API used here
//! (create, compile, log, PTX) is the same from CUDA 11 to 13.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The environment variable that names the library to use.
pub const ENV: &str = "OFFRAMP_NVRTC_LIB";

/// The sonames the loader is asked for, after [`ENV`].
const SONAMES: &[&str] = &[
    "libnvrtc.so",
    "libnvrtc.so.13",
    "libnvrtc.so.12",
    // CUDA 11.2 to 11.8 all ship this soname.
    "libnvrtc.so.11.2",
];

/// Toolkit folders searched last: a CUDA that the loader's cache lacks.
const HOMES: &[&str] = &["CUDA_HOME", "CUDA_PATH"];

type Program = *mut c_void;
type Status = c_int;

/// An opened libnvrtc.
pub struct Nvrtc {
    path: String,
    version: (i32, i32),
    create: unsafe extern "C" fn(
        *mut Program,
        *const c_char,
        *const c_char,
        c_int,
        *const *const c_char,
        *const *const c_char,
    ) -> Status,
    compile: unsafe extern "C" fn(Program, c_int, *const *const c_char) -> Status,
    log_size: unsafe extern "C" fn(Program, *mut usize) -> Status,
    log: unsafe extern "C" fn(Program, *mut c_char) -> Status,
    ptx_size: unsafe extern "C" fn(Program, *mut usize) -> Status,
    ptx: unsafe extern "C" fn(Program, *mut c_char) -> Status,
    destroy: unsafe extern "C" fn(*mut Program) -> Status,
    error_string: unsafe extern "C" fn(Status) -> *const c_char,
    // Kept open for as long as the function pointers above are used.
    _lib: libloading::Library,
}

impl Nvrtc {
    /// The library the process uses: [`ENV`] when set (and only it), else
    /// the first of the loader's names ([`SONAMES`]), else the newest
    /// `libnvrtc.so.*` under `$CUDA_HOME`, `$CUDA_PATH` or `/usr/local/cuda`.
    /// Opened once; the error (every place tried) is kept too.
    pub fn get() -> Result<&'static Nvrtc, String> {
        static LIB: OnceLock<Result<Nvrtc, String>> = OnceLock::new();
        LIB.get_or_init(|| match std::env::var_os(ENV) {
            Some(p) => Nvrtc::open(&p.to_string_lossy()).map_err(|e| format!("{ENV}: {e}")),
            None => Nvrtc::first(&candidates()),
        })
        .as_ref()
        .map_err(Clone::clone)
    }

    /// The first of `names` (sonames or paths) that opens as NVRTC; the
    /// error lists each with its reason.
    pub fn first(names: &[String]) -> Result<Nvrtc, String> {
        let mut tried = Vec::new();
        for name in names {
            match Nvrtc::open(name) {
                Ok(lib) => return Ok(lib),
                Err(e) => tried.push(e),
            }
        }
        Err(format!(
            "libnvrtc (the CUDA toolkit's runtime compiler) is not installed: tried {}; \
             install CUDA's NVRTC or set {ENV} to its libnvrtc.so.N",
            tried.join("; ")
        ))
    }

    /// Opens `name` (a soname the loader looks up, or a path) and checks
    /// that it is NVRTC.
    pub fn open(name: &str) -> Result<Nvrtc, String> {
        // SAFETY: loading runs the library's initialisers; libnvrtc's (or
        // any CUDA library's) have no preconditions.
        let lib = unsafe { libloading::Library::new(name) }.map_err(|e| format!("{name}: {e}"))?;
        macro_rules! sym {
            ($s:literal) => {
                // SAFETY: the type is the symbol's C signature from nvrtc.h.
                *unsafe { lib.get(concat!($s, "\0").as_bytes()) }
                    .map_err(|_| format!("{name}: no {} (not NVRTC)", $s))?
            };
        }
        let version: unsafe extern "C" fn(*mut c_int, *mut c_int) -> Status = sym!("nvrtcVersion");
        let (mut major, mut minor) = (0, 0);
        // SAFETY: two valid out-pointers.
        if unsafe { version(&mut major, &mut minor) } != 0 {
            return Err(format!("{name}: nvrtcVersion failed"));
        }
        Ok(Nvrtc {
            path: name.to_string(),
            version: (major, minor),
            create: sym!("nvrtcCreateProgram"),
            compile: sym!("nvrtcCompileProgram"),
            log_size: sym!("nvrtcGetProgramLogSize"),
            log: sym!("nvrtcGetProgramLog"),
            ptx_size: sym!("nvrtcGetPTXSize"),
            ptx: sym!("nvrtcGetPTX"),
            destroy: sym!("nvrtcDestroyProgram"),
            error_string: sym!("nvrtcGetErrorString"),
            _lib: lib,
        })
    }

    /// Where the library was found (the soname or path it was opened by).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// NVRTC's CUDA version, e.g. (13, 0).
    pub fn version(&self) -> (i32, i32) {
        self.version
    }

    /// Compiles CUDA C++ `source` (named `name` in messages) to PTX with the
    /// given NVRTC options; on failure the error holds the compiler's log.
    pub fn compile_ptx(
        &self,
        source: &str,
        name: &str,
        options: &[&str],
    ) -> Result<String, String> {
        let c = |s: &str| CString::new(s).map_err(|_| format!("{name}: a NUL byte in {s:?}"));
        let (src, cname) = (c(source)?, c(name)?);
        let opts = options
            .iter()
            .map(|o| c(o))
            .collect::<Result<Vec<_>, _>>()?;
        let ptrs: Vec<*const c_char> = opts.iter().map(|o| o.as_ptr()).collect();
        let mut prog: Program = std::ptr::null_mut();
        // SAFETY: valid NUL-terminated strings, no headers, an out-pointer.
        let st = unsafe {
            (self.create)(
                &mut prog,
                src.as_ptr(),
                cname.as_ptr(),
                0,
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        if st != 0 {
            return Err(format!("nvrtcCreateProgram: {}", self.describe(st)));
        }
        let out = self.compile_created(prog, &ptrs);
        // SAFETY: `prog` was created above and is destroyed once.
        unsafe { (self.destroy)(&mut prog) };
        out
    }

    fn compile_created(&self, prog: Program, options: &[*const c_char]) -> Result<String, String> {
        // SAFETY: `prog` is a live program; `options` outlive the call.
        let st = unsafe { (self.compile)(prog, options.len() as c_int, options.as_ptr()) };
        if st != 0 {
            return Err(format!(
                "{}: {}",
                self.describe(st),
                self.read(prog, self.log_size, self.log)
            ));
        }
        Ok(self.read(prog, self.ptx_size, self.ptx))
    }

    /// Reads a sized, NUL-terminated string out of `prog` (its log or PTX).
    fn read(
        &self,
        prog: Program,
        size: unsafe extern "C" fn(Program, *mut usize) -> Status,
        get: unsafe extern "C" fn(Program, *mut c_char) -> Status,
    ) -> String {
        let mut n = 0usize;
        // SAFETY: a live program and an out-pointer.
        if unsafe { size(prog, &mut n) } != 0 || n == 0 {
            return String::new();
        }
        let mut buf = vec![0u8; n];
        // SAFETY: `buf` holds the `n` bytes NVRTC said it writes.
        if unsafe { get(prog, buf.as_mut_ptr().cast()) } != 0 {
            return String::new();
        }
        let end = buf.iter().position(|&b| b == 0).unwrap_or(n);
        String::from_utf8_lossy(&buf[..end]).trim_end().to_string()
    }

    fn describe(&self, st: Status) -> String {
        // SAFETY: NVRTC returns a static string for any status.
        let p = unsafe { (self.error_string)(st) };
        if p.is_null() {
            return format!("NVRTC error {st}");
        }
        // SAFETY: non-null, NUL-terminated, static.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }
}

/// Whether the driver can load what NVRTC `version` makes: PTX carries the
/// ISA of the compiler's CUDA, which a driver of an older major CUDA
/// refuses. `driver` is `cuDriverGetVersion`'s (1000 × major + 10 × minor).
pub fn driver_loads_ptx_of(version: (i32, i32), driver: i32) -> Result<(), String> {
    let (major, minor) = version;
    if driver / 1000 >= major {
        return Ok(());
    }
    Err(format!(
        "NVRTC {major}.{minor} is newer than the driver (CUDA {}.{}): its PTX would not load; \
         set {ENV} to the NVRTC of CUDA {} or older",
        driver / 1000,
        driver % 1000 / 10,
        driver / 1000
    ))
}

/// The loader's sonames, then the newest `libnvrtc.so.*` in each toolkit
/// folder (`lib64`, or `targets/*/lib` as on a Jetson).
pub fn candidates() -> Vec<String> {
    let mut out: Vec<String> = SONAMES.iter().map(|s| s.to_string()).collect();
    let homes = HOMES
        .iter()
        .filter_map(|v| std::env::var_os(v).map(PathBuf::from))
        .chain([PathBuf::from("/usr/local/cuda")]);
    for home in homes {
        let mut dirs = vec![home.join("lib64"), home.join("lib")];
        if let Ok(targets) = std::fs::read_dir(home.join("targets")) {
            dirs.extend(targets.flatten().map(|t| t.path().join("lib")));
        }
        out.extend(
            dirs.iter()
                .filter_map(|d| newest_in(d))
                .map(|p| p.display().to_string()),
        );
    }
    out
}

/// The `libnvrtc.so.N[.M...]` in `dir` with the highest version.
fn newest_in(dir: &Path) -> Option<PathBuf> {
    let version = |name: &str| -> Option<Vec<u32>> {
        name.strip_prefix("libnvrtc.so.")?
            .split('.')
            .map(|p| p.parse().ok())
            .collect()
    };
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|e| Some((version(e.file_name().to_str()?)?, e.path())))
        .max()
        .map(|(_, p)| p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_library_of_a_toolkit_folder_is_chosen() {
        let dir = tempfile::tempdir().unwrap();
        for f in [
            "libnvrtc.so.12",
            "libnvrtc.so.13.0.88",
            "libnvrtc.so.13.2.1",
            "libnvrtc-builtins.so.13.2",
            "libnvrtc.so",
        ] {
            std::fs::write(dir.path().join(f), b"").unwrap();
        }
        assert_eq!(
            newest_in(dir.path()),
            Some(dir.path().join("libnvrtc.so.13.2.1"))
        );
        assert_eq!(newest_in(&dir.path().join("none")), None);
    }

    #[test]
    fn ptx_newer_than_the_driver_is_refused_before_it_is_made() {
        assert_eq!(driver_loads_ptx_of((12, 9), 12020), Ok(()));
        assert_eq!(driver_loads_ptx_of((12, 9), 13000), Ok(()));
        let e = driver_loads_ptx_of((13, 5), 12080).unwrap_err();
        assert!(
            e.contains("NVRTC 13.5 is newer than the driver (CUDA 12.8)"),
            "{e}"
        );
        assert!(
            e.contains("OFFRAMP_NVRTC_LIB to the NVRTC of CUDA 12 or older"),
            "{e}"
        );
    }

    #[test]
    fn cuda_13_is_asked_for_before_12() {
        let c = candidates();
        let at = |s: &str| c.iter().position(|x| x == s).unwrap();
        assert!(at("libnvrtc.so.13") < at("libnvrtc.so.12"), "{c:?}");
    }

    #[test]
    fn a_library_that_is_not_nvrtc_is_named_with_what_it_lacks() {
        let e = Nvrtc::first(&["/nonexistent/libnvrtc.so.13".into(), "libc.so.6".into()])
            .err()
            .unwrap();
        assert!(e.contains("/nonexistent/libnvrtc.so.13:"), "{e}");
        assert!(e.contains("libc.so.6: no nvrtcVersion (not NVRTC)"), "{e}");
        assert!(e.contains("set OFFRAMP_NVRTC_LIB"), "{e}");
    }
}
