//! The neural-network runtime: the shipped models on fixed-size inputs, the
//! depthwise kernel against candle's grouped `conv2d`, and the chat model's int8
//! matmul against candle's quantized one.
//!
//! `nn_ort_compare.py` times onnxruntime on the same shapes for comparison.

use candle_core::{Device, Tensor};
use criterion::{BenchmarkId, Criterion, criterion_group};
use ocr_core::nn::Graph;
use ocr_core::nn::kernels::{Activation, Conv2d, Residual};

fn model(file: &str) -> Graph {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models")
        .join(file);
    Graph::from_onnx(&std::fs::read(path).expect("model file")).expect("model compiles")
}

/// A deterministic input in [-1, 1].
fn input(dims: &[usize]) -> Tensor {
    let n: usize = dims.iter().product();
    let data: Vec<f32> = (0..n)
        .map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0)
        .collect();
    Tensor::from_vec(data, dims, &Device::Cpu).expect("tensor")
}

fn models(c: &mut Criterion) {
    ocr_core::nn::retain_freed_memory();
    let _ = ocr_core::nn::configure_thread_pool(None);
    let mut group = c.benchmark_group("nn");
    group.sample_size(10);
    for tier in ["small", "tiny"] {
        let det = model(&format!("PP-OCRv6_det_{tier}.onnx"));
        let x = input(&[1, 3, 640, 640]);
        group.bench_function(BenchmarkId::new(format!("det_{tier}"), "640x640"), |b| {
            b.iter(|| det.run(x.clone()).expect("det"))
        });
        let rec = model(&format!("PP-OCRv6_rec_{tier}.onnx"));
        let x = input(&[1, 3, 48, 320]);
        group.bench_function(BenchmarkId::new(format!("rec_{tier}"), "1x48x320"), |b| {
            b.iter(|| rec.run(x.clone()).expect("rec"))
        });
        let x = input(&[6, 3, 48, 320]);
        group.bench_function(BenchmarkId::new(format!("rec_{tier}"), "6x48x320"), |b| {
            b.iter(|| rec.run(x.clone()).expect("rec"))
        });
        // A full page: a 2550×3300 scan's detector input, and a batch of six
        // of its lines.
        let x = input(&[1, 3, 2016, 1536]);
        group.bench_function(BenchmarkId::new(format!("det_{tier}"), "2016x1536"), |b| {
            b.iter(|| det.run(x.clone()).expect("det"))
        });
        let x = input(&[6, 3, 48, 1472]);
        group.bench_function(BenchmarkId::new(format!("rec_{tier}"), "6x48x1472"), |b| {
            b.iter(|| rec.run(x.clone()).expect("rec"))
        });
    }
    group.finish();
}

/// A 3×3 depthwise layer at 64×160×160, the case MODELS.md measured.
fn depthwise(c: &mut Criterion) {
    let (ch, h, w) = (64, 160, 160);
    let weight: Vec<f32> = (0..ch * 9).map(|i| (i % 13) as f32 / 13.0 - 0.5).collect();
    let x = input(&[1, ch, h, w]);
    let ours = Conv2d {
        out_channels: ch,
        in_channels: ch,
        kernel: (3, 3),
        stride: (1, 1),
        pads: [1; 4],
        groups: ch,
        weight: weight.clone(),
        bias: vec![0.0; ch],
        activation: Activation::None,
        residual: Residual::default(),
        packed: Default::default(),
    };
    let kernel = Tensor::from_vec(weight, (ch, 1, 3, 3), &Device::Cpu).expect("kernel");
    let mut group = c.benchmark_group("depthwise_3x3_64x160x160");
    group.bench_function("ours", |b| {
        b.iter(|| x.apply_op1_no_bwd(&ours).expect("conv"))
    });
    group.bench_function("candle_conv2d_groups", |b| {
        b.iter(|| x.conv2d(&kernel, 1, 1, 1, ch).expect("conv"))
    });
    let strided = Conv2d {
        stride: (2, 1),
        ..ours.clone()
    };
    group.bench_function("ours_stride_2x1", |b| {
        b.iter(|| x.apply_op1_no_bwd(&strided).expect("conv"))
    });
    group.finish();
}

/// The chat model's matrix products: the int8 kernel against candle's quantized matmul (the
/// 1.5B model's Q4_K) on `ffn_up` of a 700-token prompt and of one decoding step.
fn llm_matmul(c: &mut Criterion) {
    use candle_core::Module;
    use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
    use ocr_chat::int8::Int8Matrix;
    let mut group = c.benchmark_group("nn");
    group.sample_size(10);
    let (n, k) = (8960, 1536);
    let w = input(&[n, k]);
    let q4k = QMatMul::from_qtensor(QTensor::quantize(&w, GgmlDType::Q4K).expect("Q4_K"))
        .expect("QMatMul");
    let int8 = Int8Matrix::available().then(|| {
        Int8Matrix::from_f32(
            &w.flatten_all().and_then(|t| t.to_vec1()).expect("weights"),
            n,
            k,
        )
    });
    for m in [700, 1] {
        let x = input(&[m, k]);
        let shape = format!("{m}x{n}x{k}");
        group.bench_function(BenchmarkId::new("llm_matmul_candle_q4k", &shape), |b| {
            b.iter(|| q4k.forward(&x).expect("matmul"))
        });
        if let Some(int8) = &int8 {
            let xs: Vec<f32> = x.flatten_all().and_then(|t| t.to_vec1()).expect("input");
            group.bench_function(BenchmarkId::new("llm_matmul_int8", &shape), |b| {
                b.iter(|| int8.matmul(&xs, m))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, models, depthwise, llm_matmul);
