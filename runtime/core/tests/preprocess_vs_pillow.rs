//! The preprocessing matches Pillow (resize BILINEAR on float images, then
//! normalise) within 1e-5 on real photographs from scikit-image's sample data.

use offramp_runtime::preprocess::Preprocessor;
use std::process::Command;

fn python() -> String {
    std::env::var("OFFRAMP_PYTHON").unwrap_or_else(|_| "python3".into())
}

#[test]
#[ignore = "needs the Python test environment (scripts/test.sh sets OFFRAMP_PYTHON)"]
fn matches_pillow_on_photographs() {
    let dir = tempfile::tempdir().unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tools/reference/pillow_preprocess.py"
    );
    let (mean, std) = (0.5f32, 0.25f32);
    for (w, h) in [(32usize, 32usize), (64, 48), (224, 224)] {
        let out = dir.path().join(format!("{w}x{h}"));
        let st = Command::new(python())
            .args([
                script,
                out.to_str().unwrap(),
                &w.to_string(),
                &h.to_string(),
                "0.5",
                "0.25",
            ])
            .status()
            .expect("python runs (set OFFRAMP_PYTHON to a Python with pillow and scikit-image)");
        assert!(st.success(), "reference script failed");
        let index: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("index.json")).unwrap())
                .unwrap();
        for img in index.as_array().unwrap() {
            let name = img["name"].as_str().unwrap();
            let (sw, sh) = (
                img["width"].as_u64().unwrap() as usize,
                img["height"].as_u64().unwrap() as usize,
            );
            let rgb = std::fs::read(out.join(format!("{name}.rgb"))).unwrap();
            let reference: Vec<f32> = std::fs::read(out.join(format!("{name}.ref")))
                .unwrap()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            let mut p = Preprocessor::new((sw, sh), (w, h), [mean; 3], [std; 3]).unwrap();
            let mut got = vec![0.0f32; 3 * w * h];
            p.run(&rgb, &mut got).unwrap();
            let max = got
                .iter()
                .zip(&reference)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            eprintln!("{name} {sw}x{sh} -> {w}x{h}: max |diff| {max:e}");
            assert!(max <= 1e-5, "{name} -> {w}x{h}: max diff {max}");
        }
    }
}
