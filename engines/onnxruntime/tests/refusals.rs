//! Without onnxruntime, the backend says what is missing and how to get it.
//! A file of its own: the library is opened once per process, and these
//! must run before any test opens a real one.

use offramp_engines_onnxruntime::Runtime;
use std::path::Path;

#[test]
fn a_missing_or_foreign_library_is_named_with_the_fix() {
    let e = Runtime::get(Some(Path::new("/nonexistent/libonnxruntime.so.1")))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("cannot open /nonexistent/libonnxruntime.so.1"),
        "{e}"
    );
    // A library that is not onnxruntime: no C API entry point.
    let e = Runtime::get(Some(Path::new("libm.so.6")))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("libm.so.6 is not an onnxruntime library"), "{e}");
    assert!(e.contains("OFFRAMP_ONNXRUNTIME_LIB"), "the fix: {e}");
}
