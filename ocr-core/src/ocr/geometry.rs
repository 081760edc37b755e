//! Geometry for text detection: connected regions of a mask, their minimum
//! area rectangles, polygon scoring, expansion ("unclip") and perspective
//! crops.

use image::RgbImage;

/// A point `[x, y]` in pixels.
pub type Point = [f32; 2];

/// A quadrilateral in clockwise order from the top-left corner:
/// top-left, top-right, bottom-right, bottom-left (as read along the text).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quad(pub [Point; 4]);

impl Quad {
    pub fn from_rect(x0: f32, y0: f32, x1: f32, y1: f32) -> Self {
        Quad([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
    }

    /// Length of the text direction (top edge and bottom edge, the longer).
    pub fn width(&self) -> f32 {
        dist(self.0[0], self.0[1]).max(dist(self.0[3], self.0[2]))
    }

    /// Extent across the text direction.
    pub fn height(&self) -> f32 {
        dist(self.0[0], self.0[3]).max(dist(self.0[1], self.0[2]))
    }

    /// Axis-aligned bounds: x0, y0, x1, y1.
    pub fn bounds(&self) -> [f32; 4] {
        let xs = self.0.map(|p| p[0]);
        let ys = self.0.map(|p| p[1]);
        [
            xs.iter().copied().fold(f32::MAX, f32::min),
            ys.iter().copied().fold(f32::MAX, f32::min),
            xs.iter().copied().fold(f32::MIN, f32::max),
            ys.iter().copied().fold(f32::MIN, f32::max),
        ]
    }

    pub fn center(&self) -> Point {
        let [x0, y0, x1, y1] = self.bounds();
        [(x0 + x1) / 2.0, (y0 + y1) / 2.0]
    }

    /// Angle of the text direction against the x axis, in degrees.
    pub fn angle(&self) -> f32 {
        let [a, b] = [self.0[0], self.0[1]];
        (b[1] - a[1]).atan2(b[0] - a[0]).to_degrees()
    }

    /// The part of the quad between fractions `u0` and `u1` of its width.
    pub fn slice(&self, u0: f32, u1: f32) -> Quad {
        let lerp =
            |a: Point, b: Point, t: f32| [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t];
        let [tl, tr, br, bl] = self.0;
        Quad([
            lerp(tl, tr, u0),
            lerp(tl, tr, u1),
            lerp(bl, br, u1),
            lerp(bl, br, u0),
        ])
    }

    pub fn scale(&self, sx: f32, sy: f32) -> Quad {
        Quad(self.0.map(|p| [p[0] * sx, p[1] * sy]))
    }
}

pub fn dist(a: Point, b: Point) -> f32 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt()
}

/// The 8-connected regions of `mask` (row-major, `w`×`h`), each as the
/// pixel centres on its outer boundary (enough for its convex hull).
pub fn regions(mask: &[bool], w: usize, h: usize) -> Vec<Vec<Point>> {
    let mut label = vec![false; w * h];
    let mut out = Vec::new();
    let mut stack = Vec::new();
    for start in 0..w * h {
        if !mask[start] || label[start] {
            continue;
        }
        label[start] = true;
        stack.push(start);
        let mut boundary = Vec::new();
        while let Some(i) = stack.pop() {
            let (x, y) = (i % w, i / w);
            let mut edge = false;
            for dy in -1i32..=1 {
                for dx in -1i32..=1 {
                    if dx == 0 && dy == 0 {
                        continue;
                    }
                    let (nx, ny) = (x as i32 + dx, y as i32 + dy);
                    if nx < 0 || ny < 0 || nx >= w as i32 || ny >= h as i32 {
                        edge = true;
                        continue;
                    }
                    let j = ny as usize * w + nx as usize;
                    if !mask[j] {
                        edge = true;
                    } else if !label[j] {
                        label[j] = true;
                        stack.push(j);
                    }
                }
            }
            if edge {
                boundary.push([x as f32, y as f32]);
            }
        }
        out.push(boundary);
    }
    out
}

/// Convex hull (Andrew's monotone chain), counter-clockwise in image
/// coordinates' math orientation.
pub fn convex_hull(points: &[Point]) -> Vec<Point> {
    let mut p: Vec<Point> = points.to_vec();
    p.sort_by(|a, b| a[0].total_cmp(&b[0]).then(a[1].total_cmp(&b[1])));
    p.dedup();
    if p.len() < 3 {
        return p;
    }
    let cross = |o: Point, a: Point, b: Point| {
        (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])
    };
    let mut hull: Vec<Point> = Vec::with_capacity(p.len() * 2);
    for &pt in &p {
        while hull.len() >= 2 && cross(hull[hull.len() - 2], hull[hull.len() - 1], pt) <= 0.0 {
            hull.pop();
        }
        hull.push(pt);
    }
    let lower = hull.len() + 1;
    for &pt in p.iter().rev().skip(1) {
        while hull.len() >= lower && cross(hull[hull.len() - 2], hull[hull.len() - 1], pt) <= 0.0 {
            hull.pop();
        }
        hull.push(pt);
    }
    hull.pop();
    hull
}

/// The minimum-area rectangle around `hull` (rotating calipers over the
/// hull's edges): its four corners, in no particular order.
pub fn min_area_rect(hull: &[Point]) -> [Point; 4] {
    match hull.len() {
        0 => return [[0.0; 2]; 4],
        1 => return [hull[0]; 4],
        _ => {}
    }
    let mut best = (f32::MAX, [[0.0f32; 2]; 4]);
    for i in 0..hull.len() {
        let a = hull[i];
        let b = hull[(i + 1) % hull.len()];
        let len = dist(a, b);
        if len == 0.0 {
            continue;
        }
        let u = [(b[0] - a[0]) / len, (b[1] - a[1]) / len];
        let v = [-u[1], u[0]];
        let (mut min_u, mut max_u, mut min_v, mut max_v) = (f32::MAX, f32::MIN, f32::MAX, f32::MIN);
        for p in hull {
            let d = [p[0] - a[0], p[1] - a[1]];
            let pu = d[0] * u[0] + d[1] * u[1];
            let pv = d[0] * v[0] + d[1] * v[1];
            min_u = min_u.min(pu);
            max_u = max_u.max(pu);
            min_v = min_v.min(pv);
            max_v = max_v.max(pv);
        }
        let area = (max_u - min_u) * (max_v - min_v);
        if area < best.0 {
            let corner =
                |pu: f32, pv: f32| [a[0] + u[0] * pu + v[0] * pv, a[1] + u[1] * pu + v[1] * pv];
            best = (
                area,
                [
                    corner(min_u, min_v),
                    corner(max_u, min_v),
                    corner(max_u, max_v),
                    corner(min_u, max_v),
                ],
            );
        }
    }
    best.1
}

/// Orders four corners as PaddleOCR's `get_mini_boxes` does: the two
/// leftmost give the top-left and bottom-left, the two rightmost the
/// top-right and bottom-right. Returns the quad and its shorter side.
pub fn mini_box(corners: [Point; 4]) -> (Quad, f32) {
    let mut p = corners;
    p.sort_by(|a, b| a[0].total_cmp(&b[0]));
    let (tl, bl) = if p[1][1] > p[0][1] {
        (p[0], p[1])
    } else {
        (p[1], p[0])
    };
    let (tr, br) = if p[3][1] > p[2][1] {
        (p[2], p[3])
    } else {
        (p[3], p[2])
    };
    let quad = Quad([tl, tr, br, bl]);
    let side = dist(corners[0], corners[1]).min(dist(corners[1], corners[2]));
    (quad, side)
}

/// Mean of `prob` inside the quad (`w`×`h` map).
pub fn quad_score(prob: &[f32], w: usize, h: usize, quad: &Quad) -> f32 {
    let [x0, y0, x1, y1] = quad.bounds();
    let xmin = (x0.floor().max(0.0) as usize).min(w - 1);
    let xmax = (x1.ceil().max(0.0) as usize).min(w - 1);
    let ymin = (y0.floor().max(0.0) as usize).min(h - 1);
    let ymax = (y1.ceil().max(0.0) as usize).min(h - 1);
    // Pixels inside the quad; a degenerate quad has none and is scored by
    // the pixels under its bounds.
    let (mut inside, mut n_inside, mut all, mut n_all) = (0f64, 0usize, 0f64, 0usize);
    for y in ymin..=ymax {
        for x in xmin..=xmax {
            let v = f64::from(prob[y * w + x]);
            all += v;
            n_all += 1;
            if point_in_quad([x as f32, y as f32], quad) {
                inside += v;
                n_inside += 1;
            }
        }
    }
    if n_inside == 0 {
        return (all / n_all.max(1) as f64) as f32;
    }
    (inside / n_inside as f64) as f32
}

/// The mean of `prob` over the pixels inside a convex polygon (a region's hull): PaddleOCR's
/// "slow" box score, which does not count the empty corners of a rectangle drawn round a
/// region that is not one.
pub fn hull_score(prob: &[f32], w: usize, h: usize, hull: &[Point]) -> f32 {
    if hull.len() < 3 {
        return 0.0;
    }
    let (mut x0, mut y0, mut x1, mut y1) = (f32::MAX, f32::MAX, f32::MIN, f32::MIN);
    for p in hull {
        (x0, y0, x1, y1) = (x0.min(p[0]), y0.min(p[1]), x1.max(p[0]), y1.max(p[1]));
    }
    let (xmin, xmax) = (x0.max(0.0) as usize, (x1.max(0.0) as usize).min(w - 1));
    let (ymin, ymax) = (y0.max(0.0) as usize, (y1.max(0.0) as usize).min(h - 1));
    let (mut sum, mut n) = (0f64, 0usize);
    for y in ymin..=ymax {
        for x in xmin..=xmax {
            if point_in_convex([x as f32, y as f32], hull) {
                sum += f64::from(prob[y * w + x]);
                n += 1;
            }
        }
    }
    (sum / n.max(1) as f64) as f32
}

/// Whether `p` lies inside or on the edge of a convex quad.
pub fn point_in_quad(p: Point, quad: &Quad) -> bool {
    point_in_convex(p, &quad.0)
}

/// Whether `p` lies inside or on the edge of a convex polygon, its corners in either order.
pub fn point_in_convex(p: Point, q: &[Point]) -> bool {
    let mut sign = 0i8;
    for i in 0..q.len() {
        let a = q[i];
        let b = q[(i + 1) % q.len()];
        let c = (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0]);
        let s = if c > 1e-6 {
            1
        } else if c < -1e-6 {
            -1
        } else {
            0
        };
        if s != 0 {
            if sign != 0 && s != sign {
                return false;
            }
            sign = s;
        }
    }
    true
}

/// Expands a rectangle outward by `area × ratio / perimeter` on every side:
/// what DB's polygon offset does to a rectangle, corners aside.
pub fn unclip(quad: &Quad, ratio: f32) -> Quad {
    let (w, h) = (dist(quad.0[0], quad.0[1]), dist(quad.0[1], quad.0[2]));
    let perimeter = 2.0 * (w + h);
    if perimeter <= 0.0 {
        return *quad;
    }
    let d = w * h * ratio / perimeter;
    let c = [
        quad.0.iter().map(|p| p[0]).sum::<f32>() / 4.0,
        quad.0.iter().map(|p| p[1]).sum::<f32>() / 4.0,
    ];
    let unit = |a: Point, b: Point| {
        let l = dist(a, b).max(1e-6);
        [(b[0] - a[0]) / l, (b[1] - a[1]) / l]
    };
    let ux = unit(quad.0[0], quad.0[1]);
    let uy = unit(quad.0[1], quad.0[2]);
    let (hw, hh) = (w / 2.0 + d, h / 2.0 + d);
    let corner = |sx: f32, sy: f32| {
        [
            c[0] + ux[0] * hw * sx + uy[0] * hh * sy,
            c[1] + ux[1] * hw * sx + uy[1] * hh * sy,
        ]
    };
    // Same winding as the input: corner 0 is at (-, -) along (ux, uy).
    Quad([
        corner(-1.0, -1.0),
        corner(1.0, -1.0),
        corner(1.0, 1.0),
        corner(-1.0, 1.0),
    ])
}

/// Samples the quad out of `image` as an upright `w`×`h` image with a
/// perspective transform (bilinear, edges replicated).
pub fn warp_quad(image: &RgbImage, quad: &Quad, w: u32, h: u32) -> RgbImage {
    let src = quad.0;
    let dst = [
        [0.0, 0.0],
        [w as f32, 0.0],
        [w as f32, h as f32],
        [0.0, h as f32],
    ];
    let m = homography(dst, src);
    let (iw, ih) = (image.width() as usize, image.height() as usize);
    let raw = image.as_raw();
    let mut out = vec![0u8; w as usize * h as usize * 3];
    if iw == 0 || ih == 0 {
        return RgbImage::from_raw(w, h, out).expect("buffer sized for the image");
    }
    let stride = iw * 3;
    for (y, row) in out.chunks_exact_mut((w as usize * 3).max(1)).enumerate() {
        // Pixel centres map to pixel centres.
        let fy = y as f64 + 0.5;
        for (x, px) in row.chunks_exact_mut(3).enumerate() {
            let fx = x as f64 + 0.5;
            let den = m[6] * fx + m[7] * fy + m[8];
            let sx = (m[0] * fx + m[1] * fy + m[2]) / den - 0.5;
            let sy = (m[3] * fx + m[4] * fy + m[5]) / den - 0.5;
            let (x0, y0) = (sx.floor() as i64, sy.floor() as i64);
            let (ax, ay) = ((sx - x0 as f64) as f32, (sy - y0 as f64) as f32);
            // The four neighbours' offsets, edges replicated.
            let col = |x: i64| x.clamp(0, iw as i64 - 1) as usize * 3;
            let line = |y: i64| y.clamp(0, ih as i64 - 1) as usize * stride;
            let (c0, c1) = (col(x0), col(x0 + 1));
            let (l0, l1) = (line(y0), line(y0 + 1));
            let (p00, p01, p10, p11) = (
                &raw[l0 + c0..][..3],
                &raw[l0 + c1..][..3],
                &raw[l1 + c0..][..3],
                &raw[l1 + c1..][..3],
            );
            for c in 0..3 {
                let v = f32::from(p00[c]) * (1.0 - ax) * (1.0 - ay)
                    + f32::from(p01[c]) * ax * (1.0 - ay)
                    + f32::from(p10[c]) * (1.0 - ax) * ay
                    + f32::from(p11[c]) * ax * ay;
                px[c] = v.round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    RgbImage::from_raw(w, h, out).expect("buffer sized for the image")
}

/// The 3×3 homography (row-major) taking `from[i]` to `to[i]`.
fn homography(from: [Point; 4], to: [Point; 4]) -> [f64; 9] {
    // Solve the 8×8 system A h = b for h = (h0..h7), h8 = 1.
    let mut a = [[0f64; 9]; 8];
    for i in 0..4 {
        let (x, y) = (f64::from(from[i][0]), f64::from(from[i][1]));
        let (u, v) = (f64::from(to[i][0]), f64::from(to[i][1]));
        a[2 * i] = [x, y, 1.0, 0.0, 0.0, 0.0, -u * x, -u * y, u];
        a[2 * i + 1] = [0.0, 0.0, 0.0, x, y, 1.0, -v * x, -v * y, v];
    }
    // Gaussian elimination with partial pivoting.
    for col in 0..8 {
        let pivot = (col..8)
            .max_by(|&r, &s| a[r][col].abs().total_cmp(&a[s][col].abs()))
            .unwrap_or(col);
        a.swap(col, pivot);
        let p = a[col][col];
        if p.abs() < 1e-12 {
            return [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0];
        }
        a[col][col..].iter_mut().for_each(|v| *v /= p);
        let pivot_row = a[col];
        for (r, row) in a.iter_mut().enumerate() {
            let f = row[col];
            if r != col && f != 0.0 {
                row[col..]
                    .iter_mut()
                    .zip(&pivot_row[col..])
                    .for_each(|(v, p)| *v -= f * p);
            }
        }
    }
    let mut h = [0f64; 9];
    for i in 0..8 {
        h[i] = a[i][8];
    }
    h[8] = 1.0;
    h
}

/// Bilinear resize of an RGB image into a CHW float buffer with
/// `(x / 255 - mean) / std` per channel, sampling with OpenCV's half-pixel
/// convention (no antialiasing, like `cv2.resize` with `INTER_LINEAR`).
/// `bgr` swaps the channel order of the output.
#[allow(clippy::too_many_arguments)]
pub fn resize_normalize(
    image: &RgbImage,
    out_w: usize,
    out_h: usize,
    mean: [f32; 3],
    std: [f32; 3],
    bgr: bool,
    dst: &mut [f32],
    dst_stride_w: usize,
) {
    let (iw, ih) = (image.width() as usize, image.height() as usize);
    let raw = image.as_raw();
    // Source coordinates as OpenCV works them out: the scale in double precision, the
    // coordinate rounded to float (a float scale moves some weights by 1/2048).
    let sx = iw as f64 / out_w as f64;
    let sy = ih as f64 / out_h as f64;
    let plane = out_h * dst_stride_w;
    // OpenCV's INTER_LINEAR on 8-bit images works in fixed point: weights
    // rounded (half to even) to 1/2048, the horizontal pass kept as
    // integers, the result rounded back to 8 bits. The reference pipelines
    // feed the networks those 8-bit values, so they are reproduced exactly
    // here (checked against cv2 in the tests).
    const ONE: i32 = 2048;
    let weights = |f: f32, size: usize| -> (usize, usize, i32) {
        let f = f.max(0.0);
        let i0 = (f.floor() as usize).min(size - 1);
        let frac = if i0 + 1 >= size { 0.0 } else { f - i0 as f32 };
        let w0 = ((1.0 - frac) * ONE as f32).round_ties_even() as i32;
        (i0, (i0 + 1).min(size - 1), w0)
    };
    let xs: Vec<(usize, usize, i32)> = (0..out_w)
        .map(|x| weights(((x as f64 + 0.5) * sx - 0.5) as f32, iw))
        .collect();
    let scale: [f32; 3] = std::array::from_fn(|c| 1.0 / (255.0 * std[c]));
    let offset: [f32; 3] = std::array::from_fn(|c| -mean[c] / std[c]);
    for y in 0..out_h {
        let (y0, y1, wy0) = weights(((y as f64 + 0.5) * sy - 0.5) as f32, ih);
        let wy1 = ONE - wy0;
        let r0 = &raw[y0 * iw * 3..][..iw * 3];
        let r1 = &raw[y1 * iw * 3..][..iw * 3];
        for (x, &(x0, x1, wx0)) in xs.iter().enumerate() {
            let wx1 = ONE - wx0;
            for c in 0..3 {
                let top = i32::from(r0[x0 * 3 + c]) * wx0 + i32::from(r0[x1 * 3 + c]) * wx1;
                let bottom = i32::from(r1[x0 * 3 + c]) * wx0 + i32::from(r1[x1 * 3 + c]) * wx1;
                // OpenCV's vertical pass (its vector form, which it uses
                // for every width): 16-bit high products, then a rounding
                // shift by 2.
                let hi = |s: i32, w: i32| ((s >> 4).min(i16::MAX as i32) * w) >> 16;
                let v = ((hi(top, wy0) + hi(bottom, wy1) + 2) >> 2).clamp(0, 255);
                let oc = if bgr { 2 - c } else { c };
                dst[oc * plane + y * dst_stride_w + x] = v as f32 * scale[oc] + offset[oc];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A text line's shrink (1082×106 to the recogniser's 489×48) against `cv2.resize` 5.1: the
    /// sum of the bytes and a position-weighted checksum. Source coordinates worked out in
    /// single precision move some weights by 1/2048, and the network reads a character
    /// differently on a handwritten line.
    #[test]
    fn a_large_shrink_matches_opencv() {
        let (iw, ih, ow, oh) = (1082u32, 106u32, 489usize, 48usize);
        let image = RgbImage::from_fn(iw, ih, |x, y| {
            image::Rgb(std::array::from_fn(|c| {
                ((x * 37 + y * 11 + c as u32 * 50) % 256) as u8
            }))
        });
        let mut out = vec![0f32; 3 * oh * ow];
        resize_normalize(&image, ow, oh, [0.0; 3], [1.0; 3], false, &mut out, ow);
        let (mut sum, mut weighted) = (0u64, 0u64);
        for y in 0..oh {
            for x in 0..ow {
                for c in 0..3 {
                    let v = (out[c * oh * ow + y * ow + x] * 255.0).round() as u64;
                    sum += v;
                    weighted += v * (((y * ow + x) * 3 + c) as u64 % 9973);
                }
            }
        }
        assert_eq!((sum, weighted), (8_967_712, 44_352_527_749));
    }

    /// `cv2.resize` (OpenCV 5.0, INTER_LINEAR) of a 13×7 pattern to 11×4
    /// and 5×3: the values the reference pipelines feed their networks.
    #[test]
    fn resize_matches_opencv_bit_for_bit() {
        let image = RgbImage::from_fn(13, 7, |x, y| {
            image::Rgb(std::array::from_fn(|c| {
                ((x * 37 + y * 11 + c as u32 * 50) % 256) as u8
            }))
        });
        let expected_11x4: [u8; 132] = [
            7, 57, 107, 51, 101, 151, 95, 145, 195, 139, 189, 177, 182, 232, 55, 226, 20, 70, 14,
            64, 114, 57, 107, 157, 101, 151, 201, 145, 195, 175, 189, 239, 47, 27, 77, 127, 70,
            120, 170, 114, 164, 214, 158, 208, 95, 201, 42, 45, 245, 39, 89, 33, 83, 133, 77, 127,
            177, 121, 171, 221, 164, 214, 78, 208, 25, 52, 46, 96, 146, 90, 140, 190, 133, 183,
            233, 177, 227, 114, 221, 61, 65, 41, 59, 109, 52, 102, 152, 96, 146, 196, 140, 190,
            118, 183, 233, 36, 227, 44, 71, 65, 115, 165, 109, 159, 209, 153, 203, 136, 196, 145,
            40, 240, 51, 84, 28, 78, 128, 72, 122, 172, 115, 165, 215, 159, 209, 119, 203, 66, 47,
            246, 40, 90,
        ];
        let expected_5x3: [u8; 45] = [
            37, 87, 137, 133, 183, 165, 229, 23, 73, 69, 119, 169, 166, 216, 78, 63, 113, 163, 159,
            209, 156, 255, 49, 99, 95, 145, 195, 191, 190, 35, 88, 138, 188, 184, 200, 28, 24, 75,
            125, 121, 171, 221, 217, 11, 61,
        ];
        for (w, h, expected) in [(11, 4, &expected_11x4[..]), (5, 3, &expected_5x3[..])] {
            let mut dst = vec![0f32; 3 * w * h];
            resize_normalize(&image, w, h, [0.0; 3], [1.0; 3], false, &mut dst, w);
            for y in 0..h {
                for x in 0..w {
                    for c in 0..3 {
                        let got = (dst[c * w * h + y * w + x] * 255.0).round() as u8;
                        assert_eq!(got, expected[(y * w + x) * 3 + c], "{w}x{h} at {x},{y},{c}");
                    }
                }
            }
        }
    }

    #[test]
    fn min_area_rect_of_a_tilted_rectangle_is_tight() {
        // A 20×4 rectangle rotated by 30°.
        let (c, s) = (30f32.to_radians().cos(), 30f32.to_radians().sin());
        let pts: Vec<Point> = [[0.0, 0.0], [20.0, 0.0], [20.0, 4.0], [0.0, 4.0]]
            .iter()
            .map(|p| [p[0] * c - p[1] * s + 50.0, p[0] * s + p[1] * c + 50.0])
            .collect();
        let rect = min_area_rect(&convex_hull(&pts));
        let (quad, side) = mini_box(rect);
        assert!((side - 4.0).abs() < 1e-3, "short side {side}");
        assert!((quad.width() - 20.0).abs() < 1e-3);
        assert!((quad.angle() - 30.0).abs() < 0.1, "angle {}", quad.angle());
    }

    #[test]
    fn unclip_grows_each_side_by_the_offset() {
        let q = Quad::from_rect(10.0, 10.0, 30.0, 20.0);
        let u = unclip(&q, 1.5);
        // d = 200 * 1.5 / 60 = 5
        assert_eq!(u.bounds(), [5.0, 5.0, 35.0, 25.0]);
    }

    #[test]
    fn regions_are_eight_connected() {
        #[rustfmt::skip]
        let m = [
            true, false, false, false,
            false, true, false, true,
            false, false, false, true,
        ];
        let r = regions(&m, 4, 3);
        assert_eq!(r.len(), 2);
    }

    /// The straightforward per-pixel warp the faster one must match bit for bit.
    fn warp_quad_reference(image: &RgbImage, quad: &Quad, w: u32, h: u32) -> RgbImage {
        let src = quad.0;
        let dst = [
            [0.0, 0.0],
            [w as f32, 0.0],
            [w as f32, h as f32],
            [0.0, h as f32],
        ];
        let m = homography(dst, src);
        let (iw, ih) = (image.width() as i64, image.height() as i64);
        let raw = image.as_raw();
        let px = |x: i64, y: i64, c: usize| -> f32 {
            let x = x.clamp(0, iw - 1) as usize;
            let y = y.clamp(0, ih - 1) as usize;
            f32::from(raw[(y * iw as usize + x) * 3 + c])
        };
        RgbImage::from_fn(w, h, |x, y| {
            // Pixel centres map to pixel centres.
            let (fx, fy) = (x as f64 + 0.5, y as f64 + 0.5);
            let den = m[6] * fx + m[7] * fy + m[8];
            let sx = (m[0] * fx + m[1] * fy + m[2]) / den - 0.5;
            let sy = (m[3] * fx + m[4] * fy + m[5]) / den - 0.5;
            let (x0, y0) = (sx.floor() as i64, sy.floor() as i64);
            let (ax, ay) = ((sx - x0 as f64) as f32, (sy - y0 as f64) as f32);
            let mut out = [0u8; 3];
            for (c, o) in out.iter_mut().enumerate() {
                let v = px(x0, y0, c) * (1.0 - ax) * (1.0 - ay)
                    + px(x0 + 1, y0, c) * ax * (1.0 - ay)
                    + px(x0, y0 + 1, c) * (1.0 - ax) * ay
                    + px(x0 + 1, y0 + 1, c) * ax * ay;
                *o = v.round().clamp(0.0, 255.0) as u8;
            }
            image::Rgb(out)
        })
    }

    #[test]
    fn warp_matches_the_straightforward_warp() {
        let img = RgbImage::from_fn(61, 37, |x, y| {
            image::Rgb([(x * 7 + y * 3) as u8, (x * y) as u8, (255 - x * 4) as u8])
        });
        let quads = [
            Quad::from_rect(5.0, 2.0, 15.0, 8.0),
            Quad::from_rect(-3.5, -2.25, 70.0, 40.0),
            Quad([[3.2, 5.1], [50.7, 2.3], [55.9, 30.4], [1.1, 33.8]]),
            Quad([[40.0, 2.0], [58.0, 20.0], [20.0, 36.0], [2.0, 18.0]]),
            Quad([[60.5, 36.5], [-1.0, 36.0], [0.0, -1.0], [61.0, 0.0]]),
        ];
        for quad in &quads {
            for (w, h) in [(1, 1), (17, 9), (48, 48), (120, 31)] {
                let fast = warp_quad(&img, quad, w, h);
                let slow = warp_quad_reference(&img, quad, w, h);
                assert_eq!(fast.as_raw(), slow.as_raw(), "{quad:?} {w}x{h}");
            }
        }
    }

    #[test]
    fn warp_of_an_axis_aligned_quad_is_a_crop() {
        let img = RgbImage::from_fn(20, 10, |x, y| {
            image::Rgb([(x * 10) as u8, (y * 20) as u8, 7])
        });
        let out = warp_quad(&img, &Quad::from_rect(5.0, 2.0, 15.0, 8.0), 10, 6);
        assert_eq!(out.get_pixel(0, 0), img.get_pixel(5, 2));
        assert_eq!(out.get_pixel(9, 5), img.get_pixel(14, 7));
    }
}
