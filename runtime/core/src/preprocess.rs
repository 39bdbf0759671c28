//! Camera frame → model inputs: per camera view, resize, scale to [0, 1],
//! `(x - mean) / std` per channel, HWC RGB → CHW, into that view's image
//! input ([`FramePreprocess`]; one [`Preprocessor`] per view).
//!
//! The resize is Pillow's BILINEAR on float images: a separable triangle
//! filter whose support widens with the downscale factor (antialiasing, so a
//! 640×480 camera frame shrunk to 32×32 does not alias), horizontal pass then
//! vertical, with Pillow's coefficient rules. A test compares it with Pillow
//! on real photographs. Every table, the intermediate image and the output
//! tensor are sized at start-up; `run` allocates nothing.

use crate::camera::Views;
use thiserror::Error;

#[derive(Debug, Error, PartialEq)]
pub enum PreprocessError {
    #[error("frame is {got} bytes; a {width}x{height} RGB frame is {want}")]
    FrameSize {
        got: usize,
        want: usize,
        width: usize,
        height: usize,
    },
    #[error("output tensor has {got} values; [1, 3, {height}, {width}] needs {want}")]
    OutputSize {
        got: usize,
        want: usize,
        width: usize,
        height: usize,
    },
    #[error("invalid size {width}x{height}")]
    Size { width: usize, height: usize },
    #[error("{path}: {message}")]
    Manifest { path: String, message: String },
    #[error("frame is {got} bytes; a frame of {views} (HWC RGB, views end to end) is {want}")]
    Frame {
        got: usize,
        want: usize,
        views: String,
    },
}

/// The frame check every preprocessor (CPU or GPU) makes before touching a
/// frame: `len` bytes must be one HWC RGB frame of `src` (width, height).
pub fn check_frame(src: (usize, usize), len: usize) -> Result<(), PreprocessError> {
    let (width, height) = src;
    let want = width * height * 3;
    if len != want {
        return Err(PreprocessError::FrameSize {
            got: len,
            want,
            width,
            height,
        });
    }
    Ok(())
}

/// Filter taps of one axis: output `i` reads `len[i]` inputs from `start[i]`
/// with weights `w[i * stride ..]`.
#[derive(Debug, Clone)]
struct Taps {
    start: Vec<usize>,
    len: Vec<usize>,
    stride: usize,
    w: Vec<f32>,
}

impl Taps {
    /// Pillow's `precompute_coeffs` for the bilinear (triangle) filter.
    fn new(src: usize, dst: usize) -> Self {
        let scale = src as f64 / dst as f64;
        let filterscale = scale.max(1.0);
        let support = filterscale; // the triangle's support is 1
        let stride = (support.ceil() as usize) * 2 + 1;
        let (mut start, mut len, mut w) = (Vec::new(), Vec::new(), vec![0.0f32; dst * stride]);
        let tri = |x: f64| {
            let x = x.abs();
            if x < 1.0 {
                1.0 - x
            } else {
                0.0
            }
        };
        for i in 0..dst {
            let center = (i as f64 + 0.5) * scale;
            let xmin = ((center - support + 0.5).floor().max(0.0)) as usize;
            let xmax = (((center + support + 0.5).floor()) as usize).min(src);
            let n = xmax - xmin;
            let mut ws = [0.0f64; 64];
            let mut total = 0.0;
            for (k, slot) in ws.iter_mut().enumerate().take(n.min(stride)) {
                let v = tri((k as f64 + xmin as f64 - center + 0.5) / filterscale);
                *slot = v;
                total += v;
            }
            for k in 0..n.min(stride) {
                w[i * stride + k] = if total != 0.0 {
                    (ws[k] / total) as f32
                } else {
                    0.0
                };
            }
            start.push(xmin);
            len.push(n.min(stride));
        }
        Self {
            start,
            len,
            stride,
            w,
        }
    }
}

/// One axis' filter: output `i` reads `len[i]` inputs from `start[i]` with
/// `weights[i * stride ..]`.
pub struct AxisTaps<'a> {
    pub start: &'a [usize],
    pub len: &'a [usize],
    pub stride: usize,
    pub weights: &'a [f32],
}

/// Everything that defines a [`Preprocessor`]: sizes are (width, height).
pub struct Tables<'a> {
    pub src: (usize, usize),
    pub dst: (usize, usize),
    pub x: AxisTaps<'a>,
    pub y: AxisTaps<'a>,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

/// A fixed preprocessing from `src` frames to a `dst` tensor.
#[derive(Debug, Clone)]
pub struct Preprocessor {
    src: (usize, usize),
    dst: (usize, usize),
    xs: Taps,
    ys: Taps,
    /// After the horizontal pass: src height × dst width × 3.
    tmp: Vec<f32>,
    mean: [f32; 3],
    std: [f32; 3],
    /// `(v / 255 - mean) / std` for every byte value and channel: when the
    /// frame already has the tensor's size (Pillow then copies, it does not
    /// filter) a frame is one table lookup per value.
    lut: [[f32; 256]; 3],
}

impl Preprocessor {
    /// `src` and `dst` are (width, height).
    pub fn new(
        src: (usize, usize),
        dst: (usize, usize),
        mean: [f32; 3],
        std: [f32; 3],
    ) -> Result<Self, PreprocessError> {
        for (w, h) in [src, dst] {
            if w == 0 || h == 0 || w > 1 << 14 || h > 1 << 14 {
                return Err(PreprocessError::Size {
                    width: w,
                    height: h,
                });
            }
        }
        // Taps are capped at 64 per output: shrinking by more than ~30x per
        // axis is not a camera preprocessing.
        if src.0 > dst.0 * 30 || src.1 > dst.1 * 30 {
            return Err(PreprocessError::Size {
                width: src.0,
                height: src.1,
            });
        }
        Ok(Self {
            src,
            dst,
            xs: Taps::new(src.0, dst.0),
            ys: Taps::new(src.1, dst.1),
            tmp: vec![0.0; src.1 * dst.0 * 3],
            mean,
            std,
            lut: std::array::from_fn(|c| {
                std::array::from_fn(|v| (v as f32 / 255.0 - mean[c]) / std[c])
            }),
        })
    }

    pub fn source_size(&self) -> (usize, usize) {
        self.src
    }

    /// The filter tables, for another implementation of the same
    /// preprocessing (the CUDA kernel uploads them once).
    pub fn tables(&self) -> Tables<'_> {
        fn axis(t: &Taps) -> AxisTaps<'_> {
            AxisTaps {
                start: &t.start,
                len: &t.len,
                stride: t.stride,
                weights: &t.w,
            }
        }
        Tables {
            src: self.src,
            dst: self.dst,
            x: axis(&self.xs),
            y: axis(&self.ys),
            mean: self.mean,
            std: self.std,
        }
    }

    /// Fills `out` ([1, 3, H, W]) from `frame` (HWC RGB u8).
    pub fn run(&mut self, frame: &[u8], out: &mut [f32]) -> Result<(), PreprocessError> {
        let (dw, dh) = self.dst;
        check_frame(self.src, frame.len())?;
        if out.len() != dw * dh * 3 {
            return Err(PreprocessError::OutputSize {
                got: out.len(),
                want: dw * dh * 3,
                width: dw,
                height: dh,
            });
        }
        if self.src == self.dst {
            let plane = dw * dh;
            let (r, rest) = out.split_at_mut(plane);
            let (g, b) = rest.split_at_mut(plane);
            for (i, p) in frame.chunks_exact(3).enumerate() {
                r[i] = self.lut[0][p[0] as usize];
                g[i] = self.lut[1][p[1] as usize];
                b[i] = self.lut[2][p[2] as usize];
            }
            return Ok(());
        }
        self.filter(frame, out);
        Ok(())
    }

    /// The two-pass resize + normalise; sizes already checked.
    fn filter(&mut self, frame: &[u8], out: &mut [f32]) {
        let (sw, sh) = self.src;
        let (dw, dh) = self.dst;
        // Horizontal pass (Pillow resizes width first).
        for y in 0..sh {
            let row = &frame[y * sw * 3..(y + 1) * sw * 3];
            for x in 0..dw {
                let (s0, n) = (self.xs.start[x], self.xs.len[x]);
                let w = &self.xs.w[x * self.xs.stride..x * self.xs.stride + n];
                let mut acc = [0.0f32; 3];
                for (k, wk) in w.iter().enumerate() {
                    let p = &row[(s0 + k) * 3..(s0 + k) * 3 + 3];
                    for c in 0..3 {
                        acc[c] += p[c] as f32 * wk;
                    }
                }
                self.tmp[(y * dw + x) * 3..(y * dw + x) * 3 + 3].copy_from_slice(&acc);
            }
        }
        // Vertical pass, then normalise into CHW.
        let plane = dw * dh;
        for y in 0..dh {
            let (s0, n) = (self.ys.start[y], self.ys.len[y]);
            let w = &self.ys.w[y * self.ys.stride..y * self.ys.stride + n];
            for x in 0..dw {
                let mut acc = [0.0f32; 3];
                for (k, wk) in w.iter().enumerate() {
                    let p = &self.tmp[((s0 + k) * dw + x) * 3..((s0 + k) * dw + x) * 3 + 3];
                    for c in 0..3 {
                        acc[c] += p[c] * wk;
                    }
                }
                for c in 0..3 {
                    out[c * plane + y * dw + x] = (acc[c] / 255.0 - self.mean[c]) / self.std[c];
                }
            }
        }
    }
}

/// One camera view's preprocessing and where it goes.
#[derive(Debug, Clone)]
struct View {
    pre: Preprocessor,
    /// The image input it fills (index into the model inputs).
    input: usize,
}

/// The preprocessing of whole frames: view k into image input k, each with
/// its own size and normalisation. Built at start-up; `run` allocates
/// nothing.
#[derive(Debug, Clone)]
pub struct FramePreprocess {
    views: Vec<View>,
    /// The frames it takes.
    layout: Views,
}

impl FramePreprocess {
    /// The preprocessing `set`'s manifest asks for, from frames of `views`
    /// (one per image input, in `preprocess.images` order) to its image
    /// inputs.
    pub fn for_set(
        set: &offramp_engines::EngineSet,
        views: &Views,
    ) -> Result<Self, PreprocessError> {
        let m = &set.manifest;
        let path = set.manifest_path.display().to_string();
        let p = m.preprocess.as_ref().ok_or_else(|| PreprocessError::Manifest {
            path: path.clone(),
            message: "no [preprocess] section: this engine set does not say how camera frames become its input".into(),
        })?;
        let images = p.image_inputs(&m.inputs);
        if images.len() != views.sizes().len() {
            return Err(PreprocessError::Manifest {
                path,
                message: format!(
                    "the model reads {} image input(s) ({}), but the camera gives {} view(s) ({views}): \
                     give one camera per image input, in this order",
                    images.len(),
                    images.iter().map(|i| i.input.as_str()).collect::<Vec<_>>().join(", "),
                    views.sizes().len()
                ),
            });
        }
        let mut out = Vec::with_capacity(images.len());
        for (img, &src) in images.iter().zip(views.sizes()) {
            // EngineSet::open checked each image input is [1, 3, H, W].
            let input = m
                .inputs
                .iter()
                .position(|t| t.name == img.input)
                .ok_or_else(|| PreprocessError::Manifest {
                    path: path.clone(),
                    message: format!("image input {:?} is not a model input", img.input),
                })?;
            let shape = &m.inputs[input].shape;
            out.push(View {
                pre: Preprocessor::new(src, (shape[3], shape[2]), img.mean, img.std)?,
                input,
            });
        }
        Ok(Self {
            views: out,
            layout: views.clone(),
        })
    }

    /// The preprocessing of a one-camera model and the input it fills
    /// (`None` with several cameras).
    pub fn single(&self) -> Option<(&Preprocessor, usize)> {
        match self.views.as_slice() {
            [v] => Some((&v.pre, v.input)),
            _ => None,
        }
    }

    /// Fills the image inputs among `inputs` (the model inputs, as
    /// [`offramp_engines::Chain::inputs_mut`] holds them) from `frame`.
    pub fn run(&mut self, frame: &[u8], inputs: &mut [Vec<f32>]) -> Result<(), PreprocessError> {
        let want = self.layout.frame_len();
        if frame.len() != want {
            return Err(PreprocessError::Frame {
                got: frame.len(),
                want,
                views: self.layout.to_string(),
            });
        }
        for (v, view) in self.views.iter_mut().zip(self.layout.split(frame)) {
            let (w, h) = v.pre.dst;
            let out = inputs.get_mut(v.input).ok_or(PreprocessError::OutputSize {
                got: 0,
                want: w * h * 3,
                width: w,
                height: h,
            })?;
            v.pre.run(view, out)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_size_normalises_and_transposes() {
        let mut p = Preprocessor::new((2, 1), (2, 1), [0.5; 3], [0.25; 3]).unwrap();
        let frame = [0, 255, 51, 102, 153, 204];
        let mut out = [0.0; 6];
        p.run(&frame, &mut out).unwrap();
        let want = |v: f32| (v / 255.0 - 0.5) / 0.25;
        // CHW: R of both pixels, then G, then B.
        let expect = [
            want(0.),
            want(102.),
            want(255.),
            want(153.),
            want(51.),
            want(204.),
        ];
        for (a, b) in out.iter().zip(expect) {
            assert!((a - b).abs() < 1e-6, "{out:?} vs {expect:?}");
        }
    }

    /// The same-size shortcut gives what the filter gives (its taps are
    /// then 1 and 0: a copy, as in Pillow).
    #[test]
    fn same_size_shortcut_matches_the_filter() {
        let (w, h) = (7, 5);
        let frame: Vec<u8> = (0..w * h * 3).map(|i| (i * 37 % 256) as u8).collect();
        let (mean, std) = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]);
        let mut fast = Preprocessor::new((w, h), (w, h), mean, std).unwrap();
        let mut out = vec![0.0; w * h * 3];
        fast.run(&frame, &mut out).unwrap();
        let mut want = vec![0.0; w * h * 3];
        fast.filter(&frame, &mut want);
        for (a, b) in out.iter().zip(&want) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
    }

    #[test]
    fn wrong_sizes_are_named() {
        let mut p = Preprocessor::new((4, 4), (2, 2), [0.0; 3], [1.0; 3]).unwrap();
        let mut out = [0.0; 12];
        let e = p.run(&[0u8; 10], &mut out).unwrap_err();
        assert_eq!(e.to_string(), "frame is 10 bytes; a 4x4 RGB frame is 48");
        let e = p.run(&[0u8; 48], &mut [0.0; 3]).unwrap_err();
        assert!(e.to_string().contains("[1, 3, 2, 2] needs 12"), "{e}");
        assert!(Preprocessor::new((0, 4), (2, 2), [0.0; 3], [1.0; 3]).is_err());
    }
}
