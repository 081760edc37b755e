//! The engine's runtime against onnxruntime's outputs for the shipped models
//! (`fixtures/golden/make_goldens.py` wrote the goldens).

#![allow(clippy::unwrap_used)] // test helpers: a failure should panic with the value

use candle_core::{Device, Tensor};
use ocr_core::nn::Graph;
use ocr_core::ocr::rec;

use crate::support::fixture;

/// The tensors of one golden file: input first, then the output.
fn golden(name: &str) -> Vec<(Vec<usize>, Vec<f32>)> {
    let bytes = fixture(&format!("golden/{name}.bin"));
    assert_eq!(&bytes[..4], b"OCRG");
    let mut pos = 4;
    let u32_at = |pos: &mut usize| {
        let v = u32::from_le_bytes(bytes[*pos..*pos + 4].try_into().unwrap());
        *pos += 4;
        v as usize
    };
    let count = u32_at(&mut pos);
    let mut out = Vec::new();
    for _ in 0..count {
        let rank = u32_at(&mut pos);
        let dims: Vec<usize> = (0..rank).map(|_| u32_at(&mut pos)).collect();
        let n: usize = dims.iter().product();
        let data = bytes[pos..pos + 4 * n]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        pos += 4 * n;
        out.push((dims, data));
    }
    out
}

fn model(file: &str) -> Graph {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models")
        .join(file);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    Graph::from_onnx(&bytes).unwrap_or_else(|e| panic!("compiling {file}: {e}"))
}

/// What must match beyond the max abs difference.
#[derive(Clone, Copy)]
enum Also {
    /// The argmax along the last axis (class scores, CTC logits).
    Argmax,
    /// The text mask at the DB threshold 0.3 (a probability map has
    /// saturated ties, so its argmax means nothing).
    Mask,
}

/// Runs `file` on the golden input and checks the output: shape, max abs
/// difference, and the argmax or mask.
fn check(file: &str, golden_name: &str, also: Also) {
    let g = golden(golden_name);
    let (in_dims, input) = &g[0];
    let (out_dims, expected) = &g[1];
    let x = Tensor::from_slice(input, in_dims.as_slice(), &Device::Cpu).unwrap();
    let y = model(file).run(x).unwrap();
    assert_eq!(y.dims(), out_dims.as_slice(), "{file}: output shape");
    let got: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
    let max_diff = got
        .iter()
        .zip(expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(
        max_diff <= 1e-4,
        "{file}: max abs difference {max_diff:e} > 1e-4"
    );
    let last = *out_dims.last().unwrap();
    if let Also::Mask = also {
        let flipped = got
            .iter()
            .zip(expected)
            .filter(|(a, b)| (**a > 0.3) != (**b > 0.3))
            .count();
        assert_eq!(
            flipped, 0,
            "{file}: {flipped} pixels change side of the threshold"
        );
    } else {
        let argmax = |v: &[f32]| -> Vec<usize> {
            v.chunks(last)
                .map(|row| {
                    row.iter()
                        .enumerate()
                        .fold((0, f32::MIN), |b, (i, &x)| if x > b.1 { (i, x) } else { b })
                        .0
                })
                .collect()
        };
        assert_eq!(argmax(&got), argmax(expected), "{file}: argmax differs");
    }
    eprintln!("{file}: max abs difference {max_diff:e}");
}

#[test]
fn det_small_matches_onnxruntime() {
    check("PP-OCRv6_det_small.onnx", "det_small", Also::Mask);
}

#[test]
fn det_tiny_matches_onnxruntime() {
    check("PP-OCRv6_det_tiny.onnx", "det_tiny", Also::Mask);
}

#[test]
fn rec_small_matches_onnxruntime() {
    check("PP-OCRv6_rec_small.onnx", "rec_small", Also::Argmax);
}

#[test]
fn rec_tiny_matches_onnxruntime() {
    check("PP-OCRv6_rec_tiny.onnx", "rec_tiny", Also::Argmax);
}

/// The pipeline runs the recogniser without its softmax and decodes the logits: the same
/// characters, at the same steps, with the same probabilities as onnxruntime's output decoded.
#[test]
fn rec_decoded_from_logits_matches_onnxruntime() {
    for (file, name) in [
        ("PP-OCRv6_rec_small.onnx", "rec_small"),
        ("PP-OCRv6_rec_tiny.onnx", "rec_tiny"),
    ] {
        let g = golden(name);
        let (in_dims, input) = &g[0];
        let (out_dims, expected) = &g[1];
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../models")
            .join(file);
        let (graph, logits) =
            Graph::from_onnx_without_final_softmax(&std::fs::read(path).unwrap()).unwrap();
        assert!(logits, "{file}: the final softmax is found");
        let x = Tensor::from_slice(input, in_dims.as_slice(), &Device::Cpu).unwrap();
        let y = graph.run(x).unwrap();
        assert_eq!(y.dims(), out_dims.as_slice());
        let got: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
        let (n, steps, classes) = (out_dims[0], out_dims[1], out_dims[2]);
        let alphabet: Vec<String> = (1..classes).map(|c| format!("<{c}>")).collect();
        let mut chars = 0;
        let line = steps * classes;
        for k in 0..n {
            let want = &expected[k * line..][..line];
            let want = rec::ctc_decode(want, steps, classes, &alphabet, false);
            let have = rec::ctc_decode(&got[k * line..][..line], steps, classes, &alphabet, true);
            assert_eq!(have.text(), want.text(), "{file}: line {k}");
            for (a, b) in have.chars.iter().zip(&want.chars) {
                assert_eq!(a.steps, b.steps, "{file}: line {k}");
                assert!(
                    (a.prob - b.prob).abs() <= 1e-4,
                    "{file}: {} vs {}",
                    a.prob,
                    b.prob
                );
            }
            chars += want.chars.len();
        }
        assert!(chars > 0, "{file}: the golden input reads as something");
    }
}

#[test]
fn textline_orientation_matches_onnxruntime() {
    check("PP-LCNet_textline_ori.onnx", "textline_ori", Also::Argmax);
}

#[test]
fn page_orientation_matches_onnxruntime() {
    check("PP-LCNet_page_ori.onnx", "page_ori", Also::Argmax);
}

/// The layout model (PP-PicoDet, eight outputs: class scores and box distributions at four
/// strides) on a synthetic page: every output within 1e-4, and no class score on the other side
/// of the detection threshold.
#[test]
fn layout_matches_onnxruntime() {
    let expected = golden("layout");
    let page = image::open(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/golden/layout_page.png"),
    )
    .unwrap()
    .to_rgb8();
    let (w, h) = (page.width() as usize, page.height() as usize);
    let mut input = vec![0f32; 3 * h * w];
    ocr_core::ocr::geometry::resize_normalize(
        &page,
        w,
        h,
        [0.485, 0.456, 0.406],
        [0.229, 0.224, 0.225],
        false,
        &mut input,
        w,
    );
    let x = Tensor::from_vec(input, (1, 3, h, w), &Device::Cpu).unwrap();
    let outputs = model("layout_cdla.onnx").run_all(x).unwrap();
    assert_eq!(outputs.len(), expected.len());
    for (k, (y, (dims, want))) in outputs.iter().zip(&expected).enumerate() {
        assert_eq!(y.dims(), dims.as_slice(), "output {k}: shape");
        let got: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
        let max_diff = got
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            max_diff <= 1e-4,
            "output {k}: max abs difference {max_diff:e}"
        );
        if k < 4 {
            let flipped = got
                .iter()
                .zip(want)
                .filter(|(a, b)| (**a > 0.4) != (**b > 0.4))
                .count();
            assert_eq!(flipped, 0, "output {k}: scores change side of 0.4");
        }
        eprintln!("layout output {k}: max abs difference {max_diff:e}");
    }
}

/// The table-structure model (backbone in the graph runtime, decoding loop in Rust) against the
/// whole ONNX model, its `Loop` included, on onnxruntime: the same structure tokens, and the same
/// cell boxes within half a pixel.
#[test]
fn table_structure_matches_onnxruntime() {
    let golden: serde_json::Value = serde_json::from_slice(&fixture("golden/table.json")).unwrap();
    let want_tokens: Vec<String> = serde_json::from_value(golden["tokens"].clone()).unwrap();
    let want_boxes: Vec<[f32; 4]> = serde_json::from_value(golden["boxes"].clone()).unwrap();
    let image = image::load_from_memory(&fixture("golden/table.png"))
        .unwrap()
        .to_rgb8();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
    let model = ocr_core::layout::table_model::TableModel::load(&dir).unwrap();
    let decoded = model.tokens(&image).unwrap();
    assert!(decoded.complete);
    let (tokens, boxes, score) = (decoded.tokens, decoded.boxes, decoded.score);
    assert_eq!(tokens, want_tokens);
    assert_eq!(boxes.len(), want_boxes.len());
    let max_diff = boxes
        .iter()
        .zip(&want_boxes)
        .flat_map(|(b, w)| [b.x0 - w[0], b.y0 - w[1], b.x1 - w[2], b.y1 - w[3]].map(f32::abs))
        .fold(0f32, f32::max);
    assert!(max_diff <= 0.5, "cell boxes differ by up to {max_diff} px");
    assert!(score > 0.5, "mean token probability {score}");
    eprintln!("table: {} tokens, boxes within {max_diff} px", tokens.len());
}

/// The detector's stem concatenates a convolution and a max pool, which then write straight
/// into the concatenation's buffer for a single image, and the ordinary way for a batch: both
/// ways give the same bits.
#[test]
fn concatenation_in_place_matches_the_ordinary_way() {
    let det = model("PP-OCRv6_det_small.onnx");
    let g = golden("det_small");
    let (dims, input) = &g[0];
    assert_eq!(dims[0], 1);
    let one = Tensor::from_vec(input.clone(), dims.as_slice(), &Device::Cpu).unwrap();
    let two = Tensor::cat(&[&one, &one], 0).unwrap();
    let (single, steps) = det.run_profiled(one).unwrap();
    assert!(
        steps
            .iter()
            .any(|s| s.kind == "Concat" && s.input.is_empty() && !s.output.is_empty()),
        "no concatenation was written in place"
    );
    // The squeeze-excitation blocks' `x + x * scale` run as one step.
    assert!(steps.iter().any(|s| s.kind == "MulAdd"));
    let single: Vec<f32> = single.flatten_all().unwrap().to_vec1().unwrap();
    let batch: Vec<f32> = det
        .run(two)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert_eq!(batch.len(), 2 * single.len());
    for half in batch.chunks_exact(single.len()) {
        assert!(
            half.iter()
                .zip(&single)
                .all(|(a, b)| a.to_bits() == b.to_bits())
        );
    }
}
