//! What `--camera` names (`sim`, `replay:DIR`, `v4l:/dev/videoN`, or
//! several separated by commas), and opening the sources this crate serves.

use super::replay::load_replay;
use super::several::Several;
use super::source::{CameraError, Source};
use std::path::PathBuf;

/// Which camera, or cameras (shown as given: `v4l:/dev/video0,replay:DIR`).
#[derive(Debug, Clone)]
pub enum CameraSpec {
    Sim,
    Replay(PathBuf),
    V4l(PathBuf),
    /// Several cameras, one per image input, in `preprocess.images` order
    /// (`v4l:/dev/video0,v4l:/dev/video2`): frames follow the first.
    Several(Vec<CameraSpec>),
}

impl std::fmt::Display for CameraSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sim => write!(f, "sim"),
            Self::Replay(p) => write!(f, "replay:{}", p.display()),
            Self::V4l(p) => write!(f, "v4l:{}", p.display()),
            Self::Several(specs) => {
                for (k, s) in specs.iter().enumerate() {
                    write!(f, "{}{s}", if k > 0 { "," } else { "" })?;
                }
                Ok(())
            }
        }
    }
}

impl std::str::FromStr for CameraSpec {
    type Err = CameraError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.contains(',') {
            let specs = s
                .split(',')
                .map(|p| match p.parse()? {
                    CameraSpec::Sim => Err(CameraError::Spec {
                        spec: format!("{p} (the simulator has one camera; it cannot be combined)"),
                    }),
                    spec => Ok(spec),
                })
                .collect::<Result<_, _>>()?;
            return Ok(Self::Several(specs));
        }
        match s.split_once(':') {
            None if s == "sim" => Ok(Self::Sim),
            Some(("replay", p)) if !p.is_empty() => Ok(Self::Replay(p.into())),
            Some(("v4l", p)) if !p.is_empty() => Ok(Self::V4l(p.into())),
            _ => Err(CameraError::Spec { spec: s.into() }),
        }
    }
}

/// The source a spec names, for the specs this crate serves (`replay:` and
/// `v4l:`); `sim` is served by the simulator crate.
pub fn open(spec: &CameraSpec) -> Result<Box<dyn Source>, CameraError> {
    match spec {
        CameraSpec::Replay(dir) => Ok(Box::new(load_replay(dir)?)),
        CameraSpec::V4l(dev) => {
            #[cfg(feature = "v4l")]
            {
                Ok(Box::new(super::v4l::V4lSource::probe(dev)?))
            }
            #[cfg(not(feature = "v4l"))]
            Err(CameraError::NoV4l(dev.display().to_string()))
        }
        CameraSpec::Several(specs) => Ok(Box::new(Several {
            sources: specs.iter().map(open).collect::<Result<_, _>>()?,
        })),
        CameraSpec::Sim => Err(CameraError::Spec {
            spec: "sim (the simulator camera is opened by offramp_sim::camera)".into(),
        }),
    }
}
