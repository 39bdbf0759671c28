//! Camera pixel formats to RGB: YUYV 4:2:2 (BT.601, limited range, what UVC
//! cameras send) and MJPEG (zune-jpeg). Both write into a caller buffer.

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PixelError {
    #[error("YUYV frame is {got} bytes; {width}x{height} needs {want}")]
    YuyvSize {
        got: usize,
        want: usize,
        width: usize,
        height: usize,
    },
    #[error("MJPEG frame: {0}")]
    Jpeg(String),
    #[error("MJPEG frame is {got_w}x{got_h}, the camera was set to {width}x{height}")]
    JpegSize {
        got_w: usize,
        got_h: usize,
        width: usize,
        height: usize,
    },
}

fn clamp(v: i32) -> u8 {
    v.clamp(0, 255) as u8
}

/// YUYV (Y0 U Y1 V per two pixels) → RGB, integer BT.601 limited range.
pub fn yuyv_to_rgb(
    src: &[u8],
    width: usize,
    height: usize,
    rgb: &mut [u8],
) -> Result<(), PixelError> {
    let want = width * height * 2;
    if src.len() < want || rgb.len() != width * height * 3 || width % 2 != 0 {
        return Err(PixelError::YuyvSize {
            got: src.len(),
            want,
            width,
            height,
        });
    }
    for (quad, out) in src[..want].chunks_exact(4).zip(rgb.chunks_exact_mut(6)) {
        let (u, v) = (quad[1] as i32 - 128, quad[3] as i32 - 128);
        for (k, y) in [quad[0], quad[2]].into_iter().enumerate() {
            let c = 298 * (y as i32 - 16);
            out[3 * k] = clamp((c + 409 * v + 128) >> 8);
            out[3 * k + 1] = clamp((c - 100 * u - 208 * v + 128) >> 8);
            out[3 * k + 2] = clamp((c + 516 * u + 128) >> 8);
        }
    }
    Ok(())
}

/// Decodes one MJPEG frame into RGB of the expected size.
pub fn mjpeg_to_rgb(
    src: &[u8],
    width: usize,
    height: usize,
    rgb: &mut [u8],
) -> Result<(), PixelError> {
    use zune_jpeg::zune_core::colorspace::ColorSpace;
    use zune_jpeg::zune_core::options::DecoderOptions;
    let opts = DecoderOptions::default().jpeg_set_out_colorspace(ColorSpace::RGB);
    let mut d = zune_jpeg::JpegDecoder::new_with_options(src, opts);
    d.decode_headers()
        .map_err(|e| PixelError::Jpeg(e.to_string()))?;
    let (w, h) = d
        .dimensions()
        .ok_or_else(|| PixelError::Jpeg("no dimensions in the header".into()))?;
    if (w, h) != (width, height) {
        return Err(PixelError::JpegSize {
            got_w: w,
            got_h: h,
            width,
            height,
        });
    }
    d.decode_into(rgb)
        .map_err(|e| PixelError::Jpeg(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuyv_greys_and_primaries() {
        // Black (Y 16), white (Y 235), with neutral chroma.
        let src = [16, 128, 235, 128];
        let mut rgb = [0u8; 6];
        yuyv_to_rgb(&src, 2, 1, &mut rgb).unwrap();
        assert_eq!(rgb, [0, 0, 0, 255, 255, 255]);
        // Pure red in BT.601 limited: Y 81, U 90, V 240.
        let src = [81, 90, 81, 240];
        yuyv_to_rgb(&src, 2, 1, &mut rgb).unwrap();
        assert!(rgb[0] > 250 && rgb[1] < 5 && rgb[2] < 5, "{rgb:?}");
        let e = yuyv_to_rgb(&[0; 3], 2, 1, &mut rgb).unwrap_err();
        assert_eq!(e.to_string(), "YUYV frame is 3 bytes; 2x1 needs 4");
    }

    #[test]
    fn corrupt_mjpeg_is_an_error_not_a_panic() {
        let mut rgb = vec![0u8; 12];
        assert!(mjpeg_to_rgb(b"\\xff\\xd8garbage", 2, 2, &mut rgb).is_err());
        assert!(mjpeg_to_rgb(&[], 2, 2, &mut rgb).is_err());
    }
}
