//! A LeRobot dataset's `meta/info.json` (`offramp import-lerobot`): parsed,
//! then its cameras, frame sizes and path templates used as the import
//! uses them. Paths must stay inside the dataset; nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use offramp_lerobot::Dataset;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let root = Path::new("/nonexistent/offramp-fuzz-dataset");
    let Ok(d) = Dataset::from_info(root, text) else {
        return;
    };
    let cameras: Vec<String> = d.cameras().iter().map(|c| c.to_string()).collect();
    for key in &cameras {
        let _ = d.frame_size(key);
        if let Ok(videos) = d.episode_videos(key, &[0, 1, 999, -1, i64::MAX]) {
            for (path, _) in videos.values() {
                assert!(
                    path.starts_with(root),
                    "{} escapes the dataset",
                    path.display()
                );
            }
        }
    }
    let _ = d.frame_rows();
    let _ = d.tasks();
});
