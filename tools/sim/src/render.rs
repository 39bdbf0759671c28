//! The forward camera: one ray per sub-column against the cylinders and the
//! walls (a 2.5-D ray caster), painted far to near with vertical coverage so
//! thin, distant objects fade in rather than flicker. Lighting, tint and
//! sensor noise come from the episode; all buffers are allocated once.

use crate::rng::Rng;
use crate::world::{Rgb, SimConfig, World};

const CAMERA_HEIGHT: f32 = 0.25;
const WALL_HEIGHT: f32 = 0.6;
const WALL_COLOURS: [Rgb; 4] = [
    [170.0, 160.0, 140.0],
    [150.0, 155.0, 165.0],
    [165.0, 150.0, 150.0],
    [145.0, 160.0, 145.0],
];
const FLOOR: Rgb = [95.0, 85.0, 75.0];
const CEILING: Rgb = [60.0, 62.0, 70.0];
const FOG: Rgb = [110.0, 110.0, 110.0];
/// Rays per pixel column.
const SUBSAMPLES: usize = 3;

/// Renders frames of one configuration into caller-provided RGB buffers.
pub struct Camera {
    width: usize,
    height: usize,
    focal: f32,
    column: Vec<Rgb>,
    accum: Vec<Rgb>,
    hits: Vec<(f32, Rgb, f32)>,
}

fn mix(a: Rgb, b: Rgb, t: f32) -> Rgb {
    [
        a[0] + (b[0] - a[0]) * t,
        a[1] + (b[1] - a[1]) * t,
        a[2] + (b[2] - a[2]) * t,
    ]
}

impl Camera {
    pub fn new(cfg: &SimConfig) -> Self {
        let focal = (cfg.image_width as f32 / 2.0) / (cfg.fov_deg.to_radians() / 2.0).tan();
        Self {
            width: cfg.image_width,
            height: cfg.image_height,
            focal,
            column: vec![[0.0; 3]; cfg.image_height],
            accum: vec![[0.0; 3]; cfg.image_height],
            hits: Vec::with_capacity(64),
        }
    }

    /// Bytes of one frame: height × width × 3 (HWC, RGB).
    pub fn frame_len(&self) -> usize {
        self.width * self.height * 3
    }

    /// Bearing of image column `x` (0..width) relative to the heading,
    /// positive to the left.
    pub fn column_bearing(&self, x: f32) -> f32 {
        -((x - self.width as f32 / 2.0) / self.focal).atan()
    }

    /// Draws the view from `pose` (x, y, heading) into `out` (HWC RGB).
    pub fn render(
        &mut self,
        world: &World,
        pose: (f32, f32, f32),
        noise: &mut Rng,
        out: &mut [u8],
    ) {
        let (w, h) = (self.width, self.height);
        assert_eq!(out.len(), w * h * 3, "frame buffer size");
        let horizon = h as f32 / 2.0;
        for x in 0..w {
            self.accum.iter_mut().for_each(|p| *p = [0.0; 3]);
            for s in 0..SUBSAMPLES {
                let sx = x as f32 + (s as f32 + 0.5) / SUBSAMPLES as f32;
                let rel = self.column_bearing(sx);
                self.cast(world, pose, rel, horizon);
                for (a, c) in self.accum.iter_mut().zip(&self.column) {
                    for k in 0..3 {
                        a[k] += c[k] / SUBSAMPLES as f32;
                    }
                }
            }
            for (y, c) in self.accum.iter().enumerate() {
                for k in 0..3 {
                    let v = c[k] * world.light * world.tint[k] + world.noise_sigma * noise.normal();
                    out[(y * w + x) * 3 + k] = v.round().clamp(0.0, 255.0) as u8;
                }
            }
        }
    }

    /// Fills `self.column` for one ray at bearing `rel` from the heading.
    fn cast(&mut self, world: &World, pose: (f32, f32, f32), rel: f32, horizon: f32) {
        let (px, py, heading) = pose;
        let a = heading + rel;
        let (dx, dy) = (a.cos(), a.sin());
        let cos_rel = rel.cos();
        let h = self.height;
        // Background: ceiling above the horizon, floor below, darker far away.
        for (y, c) in self.column.iter_mut().enumerate() {
            let yc = y as f32 + 0.5;
            *c = if yc < horizon {
                CEILING
            } else {
                let dist = CAMERA_HEIGHT * self.focal / (yc - horizon).max(0.5);
                mix(FLOOR, FOG, (dist / 8.0).min(1.0))
            };
        }
        self.hits.clear();
        // Walls: the ray leaves the room through exactly one of them.
        let mut wall = (f32::INFINITY, 0usize, 0.0f32);
        for (i, (n, plane)) in [(dx, world.size), (dx, 0.0), (dy, world.size), (dy, 0.0)]
            .iter()
            .enumerate()
        {
            if n.abs() > 1e-6 {
                let origin = if i < 2 { px } else { py };
                let t = (plane - origin) / n;
                if t > 0.0 && t < wall.0 {
                    let along = if i < 2 { py + t * dy } else { px + t * dx };
                    wall = (t, i, along);
                }
            }
        }
        if wall.0.is_finite() {
            // Faint vertical stripes every metre help judge motion.
            let stripe = if (wall.2.rem_euclid(1.0)) < 0.05 {
                0.85
            } else {
                1.0
            };
            let c = WALL_COLOURS[wall.1];
            self.hits.push((
                wall.0 * cos_rel,
                [c[0] * stripe, c[1] * stripe, c[2] * stripe],
                WALL_HEIGHT,
            ));
        }
        for cyl in &world.cylinders {
            let (ox, oy) = (px - cyl.x, py - cyl.y);
            let b = ox * dx + oy * dy;
            let c = ox * ox + oy * oy - cyl.radius * cyl.radius;
            let disc = b * b - c;
            if disc < 0.0 {
                continue;
            }
            let t = -b - disc.sqrt();
            if t <= 0.01 {
                continue;
            }
            // Lambert shading from a light up and to the side of the room.
            let (nx, ny) = ((ox + t * dx) / cyl.radius, (oy + t * dy) / cyl.radius);
            let lambert = 0.55 + 0.45 * (nx * 0.6 + ny * 0.8).max(0.0);
            let shaded = [
                cyl.colour[0] * lambert,
                cyl.colour[1] * lambert,
                cyl.colour[2] * lambert,
            ];
            self.hits.push((t * cos_rel, shaded, cyl.height));
        }
        self.hits
            .sort_unstable_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or(std::cmp::Ordering::Equal));
        for &(depth, colour, height) in &self.hits {
            let depth = depth.max(0.05);
            let colour = mix(colour, FOG, (depth / 10.0).min(0.6));
            let top = horizon - self.focal * (height - CAMERA_HEIGHT) / depth;
            let bottom = horizon + self.focal * CAMERA_HEIGHT / depth;
            let first = top.floor().max(0.0) as usize;
            let last = (bottom.ceil().max(0.0) as usize).min(h);
            for y in first..last {
                let cover = (bottom.min(y as f32 + 1.0) - top.max(y as f32)).clamp(0.0, 1.0);
                self.column[y] = mix(self.column[y], colour, cover);
            }
        }
    }
}
