//! Reading a LeRobot dataset (the layout robot-learning teams keep their
//! demonstrations in): `meta/info.json`, the frames' rows in parquet and one
//! mp4 per camera. Layout v2.x keeps one parquet file and one video per
//! episode; v3.0 packs many episodes per file and says in
//! `meta/episodes/*/*.parquet` where each episode's video starts. Videos are
//! decoded by `ffmpeg` (AV1 or H.264, as LeRobot writes them).

use anyhow::{bail, Context};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

/// `meta/info.json`, the parts an import reads.
#[derive(Debug, Deserialize)]
pub struct Info {
    pub codebase_version: String,
    pub fps: f64,
    #[serde(default)]
    pub total_episodes: usize,
    #[serde(default = "default_chunks")]
    pub chunks_size: usize,
    pub data_path: String,
    #[serde(default)]
    pub video_path: Option<String>,
    pub features: BTreeMap<String, Feature>,
}

fn default_chunks() -> usize {
    1000
}

#[derive(Debug, Deserialize)]
pub struct Feature {
    pub dtype: String,
    #[serde(default)]
    pub shape: Vec<usize>,
    #[serde(default)]
    pub names: Option<serde_json::Value>,
}

/// The largest task index a dataset may use (its task list is made dense).
const MAX_TASKS: i64 = 1 << 20;

/// One frame's row.
#[derive(Debug, Clone)]
pub struct FrameRow {
    pub episode: i64,
    pub frame: i64,
    pub timestamp: f64,
    pub task: i64,
    pub action: Vec<f32>,
}

/// A dataset opened for import.
pub struct Dataset {
    pub root: PathBuf,
    pub info: Info,
    pub v3: bool,
}

/// The widest zero-padded field a path template may ask for (a u64 has 20
/// digits): a width from a file is bounded before it sizes a string.
const MAX_WIDTH: usize = 20;

/// Python's `str.format` for the path templates: `{name}` and `{name:03d}`.
pub fn format_path(template: &str, values: &[(&str, String)]) -> anyhow::Result<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..]
            .find('}')
            .with_context(|| format!("{template:?}: unclosed '{{'"))?
            + open;
        let field = &rest[open + 1..close];
        let (name, spec) = field.split_once(':').unwrap_or((field, ""));
        let value = values
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .with_context(|| format!("{template:?}: unknown field {{{name}}}"))?;
        match spec.strip_suffix('d').and_then(|w| w.strip_prefix('0')) {
            Some(width) => {
                let width: usize = width
                    .parse()
                    .ok()
                    .filter(|w| *w <= MAX_WIDTH)
                    .with_context(|| {
                        format!("{template:?}: format {spec:?} (a width of at most {MAX_WIDTH})")
                    })?;
                out.push_str(&format!("{value:0>width$}"));
            }
            None if spec.is_empty() || spec == "d" => out.push_str(value),
            None => bail!("{template:?}: format {spec:?} is not supported"),
        }
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn number(f: &Field) -> Option<f64> {
    Some(match f {
        Field::Byte(v) => *v as f64,
        Field::Short(v) => *v as f64,
        Field::Int(v) => *v as f64,
        Field::Long(v) => *v as f64,
        Field::UByte(v) => *v as f64,
        Field::UShort(v) => *v as f64,
        Field::UInt(v) => *v as f64,
        Field::ULong(v) => *v as f64,
        Field::Float(v) => *v as f64,
        Field::Double(v) => *v,
        Field::Bool(v) => *v as u8 as f64,
        _ => return None,
    })
}

fn floats(f: &Field) -> Option<Vec<f32>> {
    match f {
        Field::ListInternal(l) => l
            .elements()
            .iter()
            .map(|e| number(e).map(|x| x as f32))
            .collect(),
        other => number(other).map(|x| vec![x as f32]),
    }
}

/// Every row of a parquet file as (column name → field).
fn rows(path: &Path) -> anyhow::Result<Vec<HashMap<String, Field>>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let reader = SerializedFileReader::new(file)
        .with_context(|| format!("{}: not a readable parquet file", path.display()))?;
    let mut out = Vec::new();
    for row in reader
        .get_row_iter(None)
        .with_context(|| format!("{}: reading rows", path.display()))?
    {
        let row = row.with_context(|| format!("{}: reading a row", path.display()))?;
        out.push(
            row.get_column_iter()
                .map(|(n, f)| (n.clone(), f.clone()))
                .collect(),
        );
    }
    Ok(out)
}

fn column<'a>(
    path: &Path,
    row: &'a HashMap<String, Field>,
    name: &str,
) -> anyhow::Result<&'a Field> {
    row.get(name)
        .with_context(|| format!("{}: no column {name:?}", path.display()))
}

fn num_col(path: &Path, row: &HashMap<String, Field>, name: &str) -> anyhow::Result<f64> {
    let f = column(path, row, name)?;
    number(f).with_context(|| format!("{}: column {name:?} is {f:?}, not a number", path.display()))
}

/// The parquet files under `dir`, sorted (v3 chunk and file order).
fn parquet_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("listing {}", d.display()))? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

impl Dataset {
    pub fn open(root: &Path) -> anyhow::Result<Self> {
        let path = root.join("meta/info.json");
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "{}: not a LeRobot dataset (no meta/info.json)",
                root.display()
            )
        })?;
        Self::from_info(root, &text)
    }

    /// The dataset at `root` described by `text` (its `meta/info.json`),
    /// checked as [`Dataset::open`] checks it.
    pub fn from_info(root: &Path, text: &str) -> anyhow::Result<Self> {
        let path = root.join("meta/info.json");
        let info: Info = serde_json::from_str(text)
            .with_context(|| format!("{}: not a LeRobot info.json", path.display()))?;
        let v3 = match info
            .codebase_version
            .trim_start_matches('v')
            .split('.')
            .next()
        {
            Some("2") => false,
            Some("3") => true,
            _ => bail!(
                "{}: codebase_version {:?}; this import reads LeRobot v2.x and v3.0",
                path.display(),
                info.codebase_version
            ),
        };
        if !(info.fps.is_finite() && info.fps > 0.0) {
            bail!("{}: fps {} is not a frame rate", path.display(), info.fps);
        }
        if info.chunks_size == 0 {
            bail!(
                "{}: chunks_size 0 (episodes per chunk must be at least 1)",
                path.display()
            );
        }
        Ok(Self {
            root: root.to_path_buf(),
            info,
            v3,
        })
    }

    /// The camera features (`dtype = "video"`), sorted.
    pub fn cameras(&self) -> Vec<&str> {
        self.info
            .features
            .iter()
            .filter(|(_, f)| f.dtype == "video")
            .map(|(k, _)| k.as_str())
            .collect()
    }

    /// A camera's frame size (height, width) from its feature's shape.
    pub fn frame_size(&self, key: &str) -> anyhow::Result<(usize, usize)> {
        let f = self
            .info
            .features
            .get(key)
            .with_context(|| format!("no feature {key:?} in meta/info.json"))?;
        let channels_first = f
            .names
            .as_ref()
            .and_then(|n| n.as_array())
            .and_then(|n| n.first())
            .and_then(|n| n.as_str())
            .is_some_and(|n| n.starts_with("channel"));
        match (f.shape.as_slice(), channels_first) {
            ([3, h, w], true) | ([h, w, 3], false) if *h > 0 && *w > 0 => Ok((*h, *w)),
            (s, _) => bail!("feature {key:?} has shape {s:?}; an RGB camera is [H, W, 3]"),
        }
    }

    /// `rel`, a path made from meta/info.json's `field` template, inside
    /// the dataset: a template (or a camera key) cannot reach other files.
    fn inside(&self, rel: &str, field: &str) -> anyhow::Result<PathBuf> {
        offramp_engines::join_inside(&self.root, rel).map_err(|why| {
            anyhow::anyhow!(
                "{}: {field} gives {why}",
                self.root.join("meta/info.json").display()
            )
        })
    }

    /// Every frame row, in episode then frame order.
    pub fn frame_rows(&self) -> anyhow::Result<Vec<FrameRow>> {
        let files = if self.v3 {
            parquet_files(&self.root.join("data"))?
        } else {
            (0..self.info.total_episodes)
                .map(|ep| {
                    let rel = format_path(
                        &self.info.data_path,
                        &[
                            ("episode_chunk", (ep / self.info.chunks_size).to_string()),
                            ("episode_index", ep.to_string()),
                        ],
                    )?;
                    self.inside(&rel, "data_path")
                })
                .collect::<anyhow::Result<Vec<_>>>()?
        };
        if files.is_empty() {
            bail!("{}: no frame data (data/*.parquet)", self.root.display());
        }
        let mut out = Vec::new();
        for path in &files {
            for row in rows(path)? {
                out.push(FrameRow {
                    episode: num_col(path, &row, "episode_index")? as i64,
                    frame: num_col(path, &row, "frame_index")? as i64,
                    timestamp: num_col(path, &row, "timestamp")?,
                    task: row.get("task_index").and_then(number).unwrap_or(0.0) as i64,
                    action: match row.get("action") {
                        Some(f) => floats(f).with_context(|| {
                            format!(
                                "{}: column \"action\" is {f:?}, not numbers",
                                path.display()
                            )
                        })?,
                        None => Vec::new(),
                    },
                });
            }
        }
        out.sort_by_key(|r| (r.episode, r.frame));
        Ok(out)
    }

    /// The task texts, by task index.
    pub fn tasks(&self) -> anyhow::Result<Vec<String>> {
        let mut by_index: BTreeMap<i64, String> = BTreeMap::new();
        let jsonl = self.root.join("meta/tasks.jsonl");
        let pq = self.root.join("meta/tasks.parquet");
        if jsonl.is_file() {
            let text = std::fs::read_to_string(&jsonl)?;
            for (k, line) in text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
            {
                let v: serde_json::Value = serde_json::from_str(line)
                    .with_context(|| format!("{} line {}", jsonl.display(), k + 1))?;
                let (Some(i), Some(t)) = (v["task_index"].as_i64(), v["task"].as_str()) else {
                    bail!(
                        "{} line {}: needs task_index and task",
                        jsonl.display(),
                        k + 1
                    );
                };
                by_index.insert(i, t.to_string());
            }
        } else if pq.is_file() {
            for row in rows(&pq)? {
                let i = num_col(&pq, &row, "task_index")? as i64;
                let text = row.values().find_map(|f| match f {
                    Field::Str(s) => Some(s.clone()),
                    _ => None,
                });
                by_index.insert(i, text.unwrap_or_default());
            }
        }
        if let Some((&i, _)) = by_index.iter().find(|(i, _)| !(0..=MAX_TASKS).contains(*i)) {
            bail!(
                "{}: task_index {i} is outside 0..={MAX_TASKS}",
                self.root.join("meta/tasks").display()
            );
        }
        let n = by_index.keys().next_back().map_or(0, |k| *k + 1) as usize;
        let mut out = vec![String::new(); n];
        for (i, t) in by_index {
            if let Some(slot) = usize::try_from(i).ok().and_then(|i| out.get_mut(i)) {
                *slot = t;
            }
        }
        Ok(out)
    }

    /// Per episode, the video file holding camera `key` and the time its
    /// first frame starts at in it.
    pub fn episode_videos(
        &self,
        key: &str,
        episodes: &[i64],
    ) -> anyhow::Result<HashMap<i64, (PathBuf, f64)>> {
        let template = self
            .info
            .video_path
            .as_deref()
            .context("meta/info.json has no video_path: the dataset has no videos")?;
        let mut out = HashMap::new();
        if !self.v3 {
            for &ep in episodes {
                let rel = format_path(
                    template,
                    &[
                        (
                            "episode_chunk",
                            (ep as usize / self.info.chunks_size).to_string(),
                        ),
                        ("episode_index", ep.to_string()),
                        ("video_key", key.to_string()),
                    ],
                )?;
                out.insert(ep, (self.inside(&rel, "video_path")?, 0.0));
            }
            return Ok(out);
        }
        let col = |what: &str| format!("videos/{key}/{what}");
        for path in parquet_files(&self.root.join("meta/episodes"))? {
            for row in rows(&path)? {
                let ep = num_col(&path, &row, "episode_index")? as i64;
                let rel = format_path(
                    template,
                    &[
                        ("video_key", key.to_string()),
                        (
                            "chunk_index",
                            (num_col(&path, &row, &col("chunk_index"))? as i64).to_string(),
                        ),
                        (
                            "file_index",
                            (num_col(&path, &row, &col("file_index"))? as i64).to_string(),
                        ),
                    ],
                )?;
                let from = num_col(&path, &row, &col("from_timestamp"))?;
                out.insert(ep, (self.inside(&rel, "video_path")?, from));
            }
        }
        Ok(out)
    }
}

/// Every frame of an mp4 as RGB, `height` × `width`, decoded by ffmpeg.
pub fn decode_video(path: &Path, height: usize, width: usize) -> anyhow::Result<Vec<u8>> {
    if !path.is_file() {
        bail!("{}: the video does not exist", path.display());
    }
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-i"])
        .arg(path)
        .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-s"])
        .arg(format!("{width}x{height}"))
        .arg("pipe:1")
        .output()
        .map_err(|e| {
            anyhow::anyhow!(
                "running ffmpeg to decode {}: {e} (install ffmpeg: apt-get install ffmpeg)",
                path.display()
            )
        })?;
    if !out.status.success() {
        bail!(
            "{}: ffmpeg could not decode it: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    if out.stdout.len() % (height * width * 3) != 0 {
        bail!(
            "{}: ffmpeg gave {} bytes, not whole {width}x{height} RGB frames",
            path.display(),
            out.stdout.len()
        );
    }
    Ok(out.stdout)
}

#[cfg(test)]
mod tests {
    use super::format_path;

    #[test]
    fn path_templates_format_like_python() {
        let v2 = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet";
        let got = format_path(
            v2,
            &[
                ("episode_chunk", "0".into()),
                ("episode_index", "12".into()),
            ],
        );
        assert_eq!(got.unwrap(), "data/chunk-000/episode_000012.parquet");
        let v3 = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4";
        let got = format_path(
            v3,
            &[
                ("video_key", "observation.images.front".into()),
                ("chunk_index", "1".into()),
                ("file_index", "7".into()),
            ],
        );
        assert_eq!(
            got.unwrap(),
            "videos/observation.images.front/chunk-001/file-007.mp4"
        );
        let e = format_path("{nope}", &[]).unwrap_err().to_string();
        assert!(e.contains("unknown field {nope}"), "{e}");
    }

    /// A width from info.json sized a string unchecked: over 65535 it
    /// panicked, and a huge one would allocate without bound.
    #[test]
    fn a_template_width_is_bounded() {
        for spec in ["{episode_index:065536d}", "{episode_index:0999999999999d}"] {
            let e = format_path(spec, &[("episode_index", "1".into())])
                .unwrap_err()
                .to_string();
            assert!(e.contains("a width of at most 20"), "{e}");
        }
        let ok = format_path("{episode_index:020d}", &[("episode_index", "1".into())]);
        assert_eq!(ok.unwrap().len(), 20);
    }

    /// A data_path (or a video key) that leads out of the dataset is
    /// refused, naming info.json and the field, before any file is read.
    #[test]
    fn template_paths_stay_inside_the_dataset() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("meta")).unwrap();
        for data_path in [
            "/etc/{episode_index}.parquet",
            "../outside/{episode_index}.parquet",
        ] {
            let info = serde_json::json!({
                "codebase_version": "v2.1",
                "fps": 10.0,
                "total_episodes": 1,
                "chunks_size": 1000,
                "data_path": data_path,
                "features": {},
            });
            std::fs::write(dir.path().join("meta/info.json"), info.to_string()).unwrap();
            let d = super::Dataset::open(dir.path()).unwrap();
            let e = d.frame_rows().unwrap_err().to_string();
            assert!(
                e.contains("info.json") && e.contains("data_path") && e.contains("inside"),
                "{e}"
            );
        }
    }
}
