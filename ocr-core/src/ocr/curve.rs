//! Curved text lines: a detected region that bends is cut into short pieces
//! along its length, each a quad that follows the band of text there; the
//! pieces are cropped one by one and set side by side, which straightens the
//! line for the recogniser, and a position along the straightened crop maps
//! back into the piece it came from, so words keep boxes on the page.

use image::RgbImage;

use super::geometry::{Point, Quad, dist, warp_quad};

/// A band is curved when its median thickness is at most this share of its
/// minimum-area rectangle's height (a straight line fills its rectangle).
const CURVED_FILL: f32 = 0.6;
/// A piece is about this many band thicknesses long.
const PIECE_LENGTH: f32 = 1.0;
/// The most pieces a line is cut into.
const MAX_PIECES: usize = 48;

/// The pieces of a curved region, or `None` for a region that a rectangle
/// fits (or one that is not a single band of text).
///
/// `outline` holds the region's boundary pixels and `rect` its minimum-area
/// rectangle (top-left, top-right, bottom-right, bottom-left along the text).
/// The band is measured in slices across its length: its top and bottom in
/// each slice give the pieces' edges, which neighbouring pieces share. The
/// pieces are grown as DB's unclip grows a rectangle, by
/// `area × ratio / perimeter` of the band.
pub fn pieces(outline: &[Point], rect: &Quad, ratio: f32) -> Option<Vec<Quad>> {
    let [tl, tr, _, bl] = rect.0;
    let (length, height) = (dist(tl, tr), dist(tl, bl));
    if length < 2.0 * height || height < 2.0 {
        return None;
    }
    let ux = [(tr[0] - tl[0]) / length, (tr[1] - tl[1]) / length];
    let uy = [(bl[0] - tl[0]) / height, (bl[1] - tl[1]) / height];
    let along = |p: Point| {
        let d = [p[0] - tl[0], p[1] - tl[1]];
        (d[0] * ux[0] + d[1] * ux[1], d[0] * uy[0] + d[1] * uy[1])
    };
    // The band's extent across the line in narrow slices, to measure its thickness.
    let slices = ((length / 2.0) as usize).clamp(4, 256);
    let extent = |n: usize| {
        let mut lo = vec![f32::MAX; n];
        let mut hi = vec![f32::MIN; n];
        for &p in outline {
            let (u, v) = along(p);
            let i = ((u / length * n as f32) as usize).min(n - 1);
            lo[i] = lo[i].min(v);
            hi[i] = hi[i].max(v);
        }
        (lo, hi)
    };
    let (lo, hi) = extent(slices);
    let mut thickness: Vec<f32> = lo
        .iter()
        .zip(&hi)
        .filter(|(l, h)| l <= h)
        .map(|(l, h)| h - l)
        .collect();
    if thickness.len() < slices * 3 / 4 {
        return None;
    }
    thickness.sort_by(f32::total_cmp);
    let band = thickness[thickness.len() / 2].max(1.0);
    if band > CURVED_FILL * height || length < 3.0 * band {
        return None;
    }
    // One band, not two lines or a line and a mark: no slice much thicker than the median.
    if thickness[thickness.len() * 9 / 10] > 1.6 * band {
        return None;
    }
    let n = ((length / (PIECE_LENGTH * band)).round() as usize).clamp(2, MAX_PIECES);
    // The pieces' edges meet the band's top and bottom where they cross it: the narrow
    // slice there (an empty one takes its nearest filled neighbour's extent).
    let filled: Vec<usize> = (0..slices).filter(|&i| lo[i] <= hi[i]).collect();
    let nearest = |i: usize| {
        let k = filled.partition_point(|&f| f < i);
        match (k.checked_sub(1).map(|k| filled[k]), filled.get(k)) {
            (Some(a), Some(&b)) if i - a > b - i => b,
            (Some(a), _) => a,
            (None, Some(&b)) => b,
            (None, None) => i,
        }
    };
    let edge = |v: &[f32], k: usize| v[nearest((k * slices / n).min(slices - 1))];
    let grow = length * band * ratio / (2.0 * (length + band));
    let at = |u: f32, v: f32| [tl[0] + ux[0] * u + uy[0] * v, tl[1] + ux[1] * u + uy[1] * v];
    let u_at = |k: usize| match k {
        0 => -grow,
        k if k == n => length + grow,
        k => length * k as f32 / n as f32,
    };
    Some(
        (0..n)
            .map(|k| {
                let (u0, u1) = (u_at(k), u_at(k + 1));
                Quad([
                    at(u0, edge(&lo, k) - grow),
                    at(u1, edge(&lo, k + 1) - grow),
                    at(u1, edge(&hi, k + 1) + grow),
                    at(u0, edge(&hi, k) + grow),
                ])
            })
            .collect(),
    )
}

/// The length of a piece along the text (the mean of its top and bottom edges).
fn piece_width(q: &Quad) -> f32 {
    (dist(q.0[0], q.0[1]) + dist(q.0[3], q.0[2])) / 2.0
}

/// The height every piece is cropped to: the thickest piece's.
fn strip_height(pieces: &[Quad]) -> u32 {
    pieces
        .iter()
        .map(|q| (dist(q.0[0], q.0[3]) + dist(q.0[1], q.0[2])) / 2.0)
        .fold(1.0f32, f32::max)
        .round() as u32
}

/// Each piece cropped upright at one height and set side by side, left to right.
pub fn warp_pieces(image: &RgbImage, pieces: &[Quad]) -> RgbImage {
    let h = strip_height(pieces);
    let crops: Vec<RgbImage> = pieces
        .iter()
        .map(|q| warp_quad(image, q, piece_width(q).round().max(1.0) as u32, h))
        .collect();
    let w: u32 = crops.iter().map(RgbImage::width).sum();
    let mut out = RgbImage::new(w.max(1), h);
    let mut x = 0;
    for crop in &crops {
        image::imageops::replace(&mut out, crop, i64::from(x), 0);
        x += crop.width();
    }
    out
}

/// The page-space bounds of the part of a straightened line between
/// fractions `u0` and `u1` of its width: the union of the pieces' parts.
pub fn slice_bounds(pieces: &[Quad], u0: f32, u1: f32) -> [f32; 4] {
    let widths: Vec<f32> = pieces
        .iter()
        .map(|q| piece_width(q).round().max(1.0))
        .collect();
    let total: f32 = widths.iter().sum();
    let mut bounds = [f32::MAX, f32::MAX, f32::MIN, f32::MIN];
    let mut start = 0.0;
    for (q, w) in pieces.iter().zip(&widths) {
        let (a, b) = (start / total, (start + w) / total);
        start += w;
        if b <= u0 || a >= u1 {
            continue;
        }
        let local = |u: f32| ((u - a) / (b - a)).clamp(0.0, 1.0);
        let part = q.slice(local(u0), local(u1)).bounds();
        bounds = [
            bounds[0].min(part[0]),
            bounds[1].min(part[1]),
            bounds[2].max(part[2]),
            bounds[3].max(part[3]),
        ];
    }
    if bounds[0] > bounds[2] {
        // Nothing between u0 and u1 (an empty span): the point where it sits.
        let p = pieces.last().map_or([0.0; 2], |q| q.0[1]);
        return [p[0], p[1], p[0], p[1]];
    }
    bounds
}

/// The outline of the pieces: along the top, then back along the bottom.
pub fn outline(pieces: &[Quad]) -> Vec<Point> {
    let mut out: Vec<Point> = Vec::with_capacity(2 * pieces.len() + 2);
    if let Some(first) = pieces.first() {
        out.push(first.0[0]);
    }
    out.extend(pieces.iter().map(|q| q.0[1]));
    out.extend(pieces.iter().rev().map(|q| q.0[2]));
    if let Some(first) = pieces.first() {
        out.push(first.0[3]);
    }
    out
}

/// The pieces of the same line read the other way up (turned 180°).
pub fn turned(pieces: &[Quad]) -> Vec<Quad> {
    pieces
        .iter()
        .rev()
        .map(|q| {
            let [tl, tr, br, bl] = q.0;
            Quad([br, bl, tl, tr])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The boundary pixels of a band `thick` px thick whose centre follows
    /// `y = base + bend·(x - 100)² / 100²` for x in 0..=200.
    fn arc(base: f32, bend: f32, thick: f32) -> Vec<Point> {
        let centre = |x: f32| base + bend * (x - 100.0).powi(2) / 10_000.0;
        let mut out = Vec::new();
        for x in 0..=200 {
            let (x, c) = (x as f32, centre(x as f32));
            out.push([x, c - thick / 2.0]);
            out.push([x, c + thick / 2.0]);
        }
        for k in 0..=thick as usize {
            for x in [0.0, 200.0] {
                out.push([x, centre(x) - thick / 2.0 + k as f32]);
            }
        }
        out
    }

    fn rect_of(points: &[Point]) -> Quad {
        use super::super::geometry::{convex_hull, min_area_rect, mini_box};
        mini_box(min_area_rect(&convex_hull(points))).0
    }

    #[test]
    fn a_bent_band_is_cut_into_pieces_that_follow_it() {
        let band = arc(50.0, 40.0, 10.0);
        let pieces = pieces(&band, &rect_of(&band), 1.5).expect("curved");
        assert!(pieces.len() >= 10, "{}", pieces.len());
        // Each piece holds the band where it is: its middle lies on the curve.
        for q in &pieces {
            let [x0, y0, x1, y1] = q.bounds();
            let xm = ((x0 + x1) / 2.0).clamp(0.0, 200.0);
            let c = 50.0 + 40.0 * (xm - 100.0).powi(2) / 10_000.0;
            assert!(y0 < c && c < y1, "piece {:?} misses the curve at {c}", q.0);
            // As thick as the band grown on both sides, not as the rectangle round the arc.
            let across = dist(q.0[0], q.0[3]).max(dist(q.0[1], q.0[2]));
            assert!(across < 30.0, "piece {:?} is not thin", q.0);
        }
        // Neighbours share their edge.
        for pair in pieces.windows(2) {
            assert_eq!(pair[0].0[1], pair[1].0[0]);
            assert_eq!(pair[0].0[2], pair[1].0[3]);
        }
        // The outline runs along the top, then back along the bottom.
        let ring = outline(&pieces);
        assert_eq!(ring.len(), 2 * pieces.len() + 2);
        // The straightened line's ends map back to the band's ends.
        let left = slice_bounds(&pieces, 0.0, 0.05);
        let right = slice_bounds(&pieces, 0.95, 1.0);
        assert!(left[0] < 5.0 && right[2] > 195.0, "{left:?} {right:?}");
        // Turned over, the first piece is the last one, corners swapped.
        let back = turned(&pieces);
        assert_eq!(back[0].0[0], pieces[pieces.len() - 1].0[2]);
    }

    #[test]
    fn a_straight_band_or_a_blob_is_left_to_its_rectangle() {
        let straight = arc(50.0, 0.0, 10.0);
        assert_eq!(pieces(&straight, &rect_of(&straight), 1.5), None);
        // A band with a tall mark on it is not one band of text.
        let mut marked = arc(50.0, 40.0, 10.0);
        for y in 0..60 {
            for x in 80..120 {
                marked.push([x as f32, 10.0 + y as f32]);
            }
        }
        assert_eq!(pieces(&marked, &rect_of(&marked), 1.5), None);
    }

    #[test]
    fn pieces_set_side_by_side_make_one_crop() {
        let band = arc(50.0, 40.0, 10.0);
        let pieces = pieces(&band, &rect_of(&band), 1.5).expect("curved");
        let image = RgbImage::from_pixel(220, 120, image::Rgb([255, 255, 255]));
        let crop = warp_pieces(&image, &pieces);
        let widths: f32 = pieces.iter().map(|q| piece_width(q).round().max(1.0)).sum();
        assert_eq!(crop.width() as f32, widths);
        assert_eq!(crop.height(), strip_height(&pieces));
    }
}
