//! Reading a PDF page's text layer: a `hayro` device that records every glyph with its Unicode
//! text and its box in device pixels, then groups glyphs into words and lines.
//!
//! Glyph boxes are computed in the glyph's own frame (baseline direction and its normal), so
//! rotated and vertical text group correctly. Boxes span 0.2 em below to 0.8 em above the
//! baseline and the glyph's advance along it: fonts rarely carry trustworthy ascent and descent,
//! and the rendered ink sits inside that box for ordinary Latin, CJK and Cyrillic faces.
//!
//! The device also keeps the page's rules: straight horizontal and vertical strokes, and filled
//! subpaths that are thin axis-aligned bars, as boxes of ink (what ruled tables are drawn with),
//! and, apart, shaded boxes (what tables of shaded cells are drawn with).

use std::collections::HashSet;
use std::time::Instant;

use hayro_interpret::CacheKey;
use hayro_interpret::font::{Glyph as FontGlyph, GlyphRun, PositionedGlyph};
use hayro_interpret::hayro_cmap::BfString;
use hayro_interpret::{
    BlendMode, ClipPath, Device, DrawMode, DrawProps, Image, ImageDrawProps, Paint, SoftMask,
};
use kurbo::{BezPath, Point, Vec2};

use super::TextLayer;
use crate::document::{BBox, Line, Word};

/// One glyph in device pixels: its text, origin on the baseline, advance and up vectors.
#[derive(Debug, Clone)]
struct Glyph {
    text: String,
    origin: Point,
    advance: Vec2,
    up: Vec2,
}

impl Glyph {
    fn em(&self) -> f64 {
        self.up.hypot()
    }

    fn direction(&self) -> Vec2 {
        let len = self.advance.hypot();
        if len > 1e-6 {
            self.advance / len
        } else {
            // A zero-advance glyph: take the baseline as perpendicular to "up".
            let e = self.em().max(1e-6);
            Vec2::new(-self.up.y / e, self.up.x / e)
        }
    }

    fn bbox(&self) -> BBox {
        let corners = [
            self.origin - self.up * 0.2,
            self.origin + self.up * 0.8,
            self.origin + self.advance - self.up * 0.2,
            self.origin + self.advance + self.up * 0.8,
        ];
        let xs = corners.iter().map(|p| p.x as f32);
        let ys = corners.iter().map(|p| p.y as f32);
        BBox::new(
            xs.clone().fold(f32::INFINITY, f32::min),
            ys.clone().fold(f32::INFINITY, f32::min),
            xs.fold(f32::NEG_INFINITY, f32::max),
            ys.fold(f32::NEG_INFINITY, f32::max),
        )
    }
}

/// The device `hayro` drives while interpreting a page: it keeps glyphs and counts the
/// drawing operations, and stops recording once the deadline has passed.
pub(super) struct TextDevice {
    glyphs: Vec<Glyph>,
    pub(super) glyph_count: usize,
    pub(super) unmapped: usize,
    /// Paths, glyphs and image pixels (per 10 000) drawn: how costly the page is to render.
    pub(super) operations: u64,
    deadline: Instant,
    pub(super) timed_out: bool,
    max_glyphs: usize,
    /// Type3 glyph programs being interpreted, innermost last (by `hayro`'s cache key).
    type3_stack: Vec<u128>,
    /// Type3 glyph programs already checked.
    type3_checked: HashSet<u128>,
    /// Set when a Type3 glyph draws itself, directly or through others, or nests too deep:
    /// `hayro`'s renderer would recurse until the stack overflows, which no `catch_unwind`
    /// survives, so such a page must not be rendered.
    pub(super) type3_recursion: bool,
    rules: Vec<BBox>,
    shading: Vec<BBox>,
    px_per_pt: f64,
}

/// Rules kept per page at most: a hostile page may draw millions of paths.
const MAX_RULES: usize = 20_000;
/// A filled axis-aligned bar at most this thick (in points) is a rule; thicker, it is a shape.
const MAX_RULE_POINTS: f64 = 3.0;

/// Deeper Type3 nesting than any real font uses.
const MAX_TYPE3_DEPTH: usize = 8;

impl TextDevice {
    /// `px_per_pt`: device pixels per point of the page (dpi / 72).
    pub(super) fn new(deadline: Instant, max_glyphs: usize, px_per_pt: f64) -> Self {
        Self {
            px_per_pt,
            glyphs: Vec::new(),
            glyph_count: 0,
            unmapped: 0,
            operations: 0,
            deadline,
            timed_out: false,
            max_glyphs,
            type3_stack: Vec::new(),
            type3_checked: HashSet::new(),
            type3_recursion: false,
            rules: Vec::new(),
            shading: Vec::new(),
        }
    }

    fn tick(&mut self, ops: u64) -> bool {
        self.operations = self.operations.saturating_add(ops);
        // Checking the clock every call is cheap next to what each call represents.
        if !self.timed_out && Instant::now() > self.deadline {
            self.timed_out = true;
        }
        !self.timed_out
    }

    /// Groups the recorded glyphs into lines of words.
    pub(super) fn into_text_layer(self, page_width: f32, page_height: f32) -> TextLayer {
        let lines = group_lines(&self.glyphs)
            .into_iter()
            .filter_map(|glyphs| line_from_glyphs(&glyphs, page_width, page_height))
            .collect();
        TextLayer {
            lines,
            glyphs: self.glyph_count,
            unmapped_glyphs: self.unmapped,
            rules: self.rules,
            shading: self.shading,
        }
    }
}

impl<'a> Device<'a> for TextDevice {
    fn draw_path(&mut self, path: &BezPath, props: DrawProps<'a>, mode: &DrawMode) {
        if self.tick(1) && self.type3_stack.is_empty() && self.rules.len() < MAX_RULES {
            self.keep_rules(path, &props.transform, &props.paint, mode);
        }
    }
    fn push_clip_path(&mut self, _: &ClipPath) {
        self.tick(1);
    }
    fn push_transparency_group(&mut self, _: f32, _: Option<SoftMask<'a>>, _: BlendMode) {}
    fn draw_glyph_run(&mut self, run: &GlyphRun<'_, 'a>, props: DrawProps<'a>, _: &DrawMode) {
        let glyphs = run.glyphs();
        if !self.tick(glyphs.len() as u64) {
            return;
        }
        if !self.type3_stack.is_empty() {
            // Glyphs drawn by a Type3 glyph's own program are artwork, not text: only look for
            // further Type3 nesting.
            self.check_type3(glyphs, &props);
            return;
        }
        self.check_type3(glyphs, &props);
        for glyph in glyphs {
            self.glyph_count += 1;
            let Some(text) = glyph.as_unicode().map(|u| match u {
                BfString::Char(c) => c.to_string(),
                BfString::String(s) => s,
            }) else {
                self.unmapped += 1;
                continue;
            };
            if self.glyphs.len() >= self.max_glyphs {
                continue;
            }
            let t = props.transform * glyph.transform();
            let origin = t * Point::ZERO;
            // Glyph space is 1000 units per em; advances are in the same units.
            let advance_units = match &**glyph {
                FontGlyph::Outline(o) => o.advance_width(),
                FontGlyph::Type3(g) => g.advance_width(),
            }
            .filter(|a| a.is_finite() && *a > 0.0)
            .unwrap_or(500.0);
            let advance = t * Point::new(f64::from(advance_units), 0.0) - origin;
            let up = t * Point::new(0.0, 1000.0) - origin;
            if !(origin.x.is_finite()
                && origin.y.is_finite()
                && advance.is_finite()
                && up.is_finite())
            {
                continue;
            }
            // In device space (y down) this points from the baseline towards the ascender.
            let g = Glyph {
                text,
                origin,
                advance,
                up,
            };
            if !is_duplicate(&self.glyphs, &g) {
                self.glyphs.push(g);
            }
        }
    }
    fn draw_image(&mut self, image: Image<'a, '_>, _: ImageDrawProps<'a>) {
        let pixels = u64::from(image.width()) * u64::from(image.height());
        self.tick(1 + pixels / 10_000);
    }
    fn pop_clip(&mut self) {}
    fn pop_transparency_group(&mut self) {}
}

impl TextDevice {
    /// Records the rules `path` draws: each straight axis-aligned segment of a stroke, widened by
    /// the line width, and each filled subpath that is a thin axis-aligned bar; and, apart, each
    /// filled axis-aligned box in a colour other than white (shading).
    fn keep_rules(
        &mut self,
        path: &BezPath,
        transform: &kurbo::Affine,
        paint: &Paint<'_>,
        mode: &DrawMode,
    ) {
        // Device pixels per unit of the path's space (the transform's mean scale).
        let scale = transform.determinant().abs().sqrt();
        let (stroke, fill) = match mode {
            DrawMode::Stroke(s) => (Some(s.line_width), false),
            DrawMode::FillAndStroke(_, s) => (Some(s.line_width), true),
            DrawMode::Fill(_) => (None, true),
            DrawMode::Invisible => return,
        };
        let device = *transform * path.clone();
        if let Some(width) = stroke {
            // A hairline (width 0) is drawn one pixel wide.
            let half = (f64::from(width) * scale).max(1.0) / 2.0;
            for seg in device.segments() {
                if let kurbo::PathSeg::Line(l) = seg
                    && let Some(b) = axis_aligned(l.p0, l.p1, half)
                {
                    self.rules.push(b);
                }
            }
        }
        if fill {
            let thin = MAX_RULE_POINTS * self.px_per_pt;
            let shaded = match paint {
                Paint::Color(c) => {
                    let [r, g, b, a] = c.to_rgba().to_rgba8();
                    a > 0 && r.min(g).min(b) < 240
                }
                Paint::Pattern(_) => false,
            };
            let mut start = 0;
            let elements = device.elements();
            for end in 1..=elements.len() {
                if end == elements.len() || matches!(elements[end], kurbo::PathEl::MoveTo(_)) {
                    let sub = BezPath::from_vec(elements[start..end].to_vec());
                    start = end;
                    let Some(r) = axis_rect(&sub) else {
                        continue;
                    };
                    let (long, short) = (r.width().max(r.height()), r.width().min(r.height()));
                    if short <= thin && long >= 2.0 * short.max(1.0) {
                        self.rules.push(bbox(r));
                    } else if shaded && short > thin && self.shading.len() < MAX_RULES {
                        self.shading.push(bbox(r));
                    }
                }
            }
        }
        self.rules.truncate(MAX_RULES);
    }

    /// Interprets each Type3 glyph program once, with this device, to find programs that draw
    /// themselves; the nesting depth is bounded here, so this check cannot recurse endlessly.
    fn check_type3<'a>(&mut self, glyphs: &[PositionedGlyph<'a>], props: &DrawProps<'a>) {
        for glyph in glyphs {
            let FontGlyph::Type3(g) = &**glyph else {
                continue;
            };
            let key = g.cache_key();
            if self.type3_stack.contains(&key) || self.type3_stack.len() >= MAX_TYPE3_DEPTH {
                self.type3_recursion = true;
                return;
            }
            if self.type3_recursion || !self.type3_checked.insert(key) {
                continue;
            }
            self.type3_stack.push(key);
            g.interpret(self, props.transform, glyph.transform(), &props.paint);
            self.type3_stack.pop();
        }
    }
}

/// The ink box of a straight segment from `a` to `b` drawn `2 * half` wide, when it is
/// horizontal or vertical (within 1 in 50).
fn axis_aligned(a: Point, b: Point, half: f64) -> Option<BBox> {
    let (dx, dy) = ((b.x - a.x).abs(), (b.y - a.y).abs());
    if !(a.is_finite() && b.is_finite()) || dx.max(dy) < 1.0 {
        return None;
    }
    let b = if dy <= dx / 50.0 {
        let y = (a.y + b.y) / 2.0;
        BBox::new(
            a.x.min(b.x) as f32,
            (y - half) as f32,
            a.x.max(b.x) as f32,
            (y + half) as f32,
        )
    } else if dx <= dy / 50.0 {
        let x = (a.x + b.x) / 2.0;
        BBox::new(
            (x - half) as f32,
            a.y.min(b.y) as f32,
            (x + half) as f32,
            a.y.max(b.y) as f32,
        )
    } else {
        return None;
    };
    Some(b)
}

/// The box of a filled subpath made of straight horizontal and vertical segments only.
fn axis_rect(sub: &BezPath) -> Option<kurbo::Rect> {
    let mut segments = 0;
    for seg in sub.segments() {
        let kurbo::PathSeg::Line(l) = seg else {
            return None;
        };
        let (dx, dy) = ((l.p1.x - l.p0.x).abs(), (l.p1.y - l.p0.y).abs());
        if dx > 0.02 * dy.max(1e-9) && dy > 0.02 * dx.max(1e-9) {
            return None;
        }
        segments += 1;
    }
    let r = kurbo::Shape::bounding_box(sub);
    (segments >= 3 && r.width().is_finite() && r.height().is_finite()).then_some(r)
}

fn bbox(r: kurbo::Rect) -> BBox {
    BBox::new(r.x0 as f32, r.y0 as f32, r.x1 as f32, r.y1 as f32)
}

/// PDF producers fake bold by drawing the same text twice, slightly offset; keeping both copies
/// doubles every letter of the extracted text.
fn is_duplicate(previous: &[Glyph], g: &Glyph) -> bool {
    let tolerance = g.em() * 0.1;
    previous
        .iter()
        .rev()
        .take(32)
        .any(|p| p.text == g.text && (p.origin - g.origin).hypot() < tolerance)
}

/// Splits glyphs (in content order) into lines: a glyph continues the current line when it
/// runs in the same direction, sits on the same baseline and starts near where the last one
/// ended. Lines are returned in the order of their first glyph.
fn group_lines(glyphs: &[Glyph]) -> Vec<Vec<&Glyph>> {
    let mut lines: Vec<Vec<&Glyph>> = Vec::new();
    for g in glyphs {
        let joins = lines.last().and_then(|l| l.last()).is_some_and(|prev| {
            let dir = prev.direction();
            let em = prev.em().max(g.em()).max(1e-3);
            let aligned = dir.dot(g.direction()) > 0.95;
            let d = g.origin - (prev.origin + prev.advance);
            let along = d.dot(dir);
            let across = d.cross(dir).abs();
            aligned && across < 0.4 * em && along > -0.6 * em && along < 3.0 * em
        });
        if joins {
            if let Some(line) = lines.last_mut() {
                line.push(g);
            }
        } else {
            lines.push(vec![g]);
        }
    }
    lines
}

/// Builds a line from its glyphs, splitting words at whitespace glyphs and at gaps wider than
/// a fraction of the font size (PDFs often position words without a space glyph between them).
fn line_from_glyphs(glyphs: &[&Glyph], page_width: f32, page_height: f32) -> Option<Line> {
    let mut words: Vec<Word> = Vec::new();
    let mut current = String::new();
    let mut current_box: Option<BBox> = None;
    let mut prev: Option<&Glyph> = None;
    let flush = |text: &mut String, bbox: &mut Option<BBox>, words: &mut Vec<Word>| {
        if let Some(b) = bbox.take()
            && !text.trim().is_empty()
        {
            words.push(Word {
                text: std::mem::take(text),
                bbox: b.clamp_to(page_width, page_height),
                confidence: 1.0,
            });
        }
        text.clear();
    };
    for &g in glyphs {
        if g.text.chars().all(char::is_whitespace) {
            flush(&mut current, &mut current_box, &mut words);
            prev = None;
            continue;
        }
        if let Some(p) = prev {
            let gap = (g.origin - (p.origin + p.advance)).dot(p.direction());
            if gap > 0.15 * p.em().max(g.em()) {
                flush(&mut current, &mut current_box, &mut words);
            }
        }
        current.push_str(g.text.trim_matches(char::is_whitespace));
        let b = g.bbox();
        current_box = Some(current_box.map_or(b, |c| c.union(&b)));
        prev = Some(g);
    }
    flush(&mut current, &mut current_box, &mut words);
    to_logical_order(&mut words);
    (!words.is_empty()).then(|| Line::from_words(words))
}

/// Hebrew and Arabic letters (including presentation forms).
fn is_rtl(c: char) -> bool {
    matches!(c, '\u{0590}'..='\u{08FF}' | '\u{FB1D}'..='\u{FDFF}' | '\u{FE70}'..='\u{FEFF}')
}

/// Glyphs arrive in visual order, left to right. In a line that is mostly right-to-left script,
/// the reading order is the reverse: words are reversed, and so are the letters of RTL words,
/// while numbers and Latin words embedded in it keep their own left-to-right order (a
/// simplification of the Unicode bidirectional algorithm that covers ordinary text).
fn to_logical_order(words: &mut [Word]) {
    let (rtl, ltr) = words
        .iter()
        .flat_map(|w| w.text.chars())
        .fold((0, 0), |(r, l), c| {
            if is_rtl(c) {
                (r + 1, l)
            } else if c.is_alphabetic() {
                (r, l + 1)
            } else {
                (r, l)
            }
        });
    if rtl <= ltr {
        return;
    }
    words.reverse();
    for w in words.iter_mut() {
        if w.text.chars().any(is_rtl) {
            w.text = w.text.chars().rev().collect();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glyph(text: &str, x: f64, y: f64) -> Glyph {
        // 10 px font, 5 px advance, upright.
        Glyph {
            text: text.into(),
            origin: Point::new(x, y),
            advance: Vec2::new(5.0, 0.0),
            up: Vec2::new(0.0, -10.0),
        }
    }

    fn texts(glyphs: &[Glyph]) -> Vec<String> {
        group_lines(glyphs)
            .iter()
            .filter_map(|l| line_from_glyphs(l, 1000.0, 1000.0))
            .map(|l| l.text)
            .collect()
    }

    #[test]
    fn gaps_split_words_and_baselines_split_lines() {
        let glyphs = [
            glyph("H", 0.0, 100.0),
            glyph("i", 5.0, 100.0),
            glyph("y", 15.0, 100.0),
            glyph("o", 20.0, 100.0),
            glyph("N", 0.0, 120.0),
        ];
        assert_eq!(texts(&glyphs), ["Hi yo", "N"]);
    }

    #[test]
    fn right_to_left_lines_come_out_in_reading_order() {
        // Visually: "םולש 42" drawn left to right as ם ו ל ש, then "42".
        let glyphs = [
            glyph("\u{05DD}", 0.0, 100.0),
            glyph("\u{05D5}", 5.0, 100.0),
            glyph("\u{05DC}", 10.0, 100.0),
            glyph("\u{05E9}", 15.0, 100.0),
            glyph("4", 30.0, 100.0),
            glyph("2", 35.0, 100.0),
        ];
        assert_eq!(texts(&glyphs), ["42 \u{05E9}\u{05DC}\u{05D5}\u{05DD}"]);
    }

    #[test]
    fn double_drawn_glyphs_are_dropped() {
        let mut device =
            TextDevice::new(Instant::now() + std::time::Duration::from_secs(9), 100, 1.0);
        for g in [
            glyph("A", 0.0, 50.0),
            glyph("A", 0.3, 50.0),
            glyph("B", 5.0, 50.0),
        ] {
            if !is_duplicate(&device.glyphs, &g) {
                device.glyphs.push(g);
            }
        }
        let layer = device.into_text_layer(100.0, 100.0);
        assert_eq!(layer.lines.len(), 1);
        assert_eq!(layer.lines[0].text, "AB");
    }

    #[test]
    fn glyph_box_spans_descender_to_ascender() {
        let b = glyph("g", 10.0, 100.0).bbox();
        assert_eq!(b, BBox::new(10.0, 92.0, 15.0, 102.0));
    }
}
