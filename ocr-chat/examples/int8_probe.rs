//! Times the int8 kernel on one matrix product: `cargo run --release -p ocr-chat --example
//! int8_probe -- M N K` (M rows of K inputs against N output channels), and candle's quantized
//! matmul (Q4_K) on the same shape.
use std::time::Instant;

use anyhow::Context;
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};
use ocr_chat::int8::Int8Matrix;

fn main() -> anyhow::Result<()> {
    ocr_core::nn::retain_freed_memory();
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let [m, n, k] = args[..] else {
        anyhow::bail!("usage: int8_probe M N K");
    };
    let w: Vec<f32> = (0..n * k)
        .map(|i| ((i * 7919) % 255) as f32 / 127.0 - 1.0)
        .collect();
    let x: Vec<f32> = (0..m * k)
        .map(|i| ((i * 104729) % 251) as f32 / 125.0 - 1.0)
        .collect();
    let macs = (m * n * k) as f64;
    if Int8Matrix::available() {
        let q = Int8Matrix::from_f32(&w, n, k);
        for _ in 0..3 {
            let t = Instant::now();
            let y = q.matmul(&x, m);
            let s = t.elapsed().as_secs_f64();
            println!(
                "int8   {:8.1} ms {:6.1} GMAC/s ({})",
                s * 1e3,
                macs / s / 1e9,
                y[0]
            );
        }
    } else {
        println!("int8: no AVX-512 VNNI on this CPU");
    }
    let device = Device::Cpu;
    let wt = Tensor::from_vec(w, (n, k), &device)?;
    let qm = QMatMul::from_qtensor(QTensor::quantize(&wt, GgmlDType::Q4K)?)?;
    let xt = Tensor::from_vec(x, (m, k), &device)?;
    for _ in 0..3 {
        let t = Instant::now();
        let y = qm.forward(&xt)?;
        let s = t.elapsed().as_secs_f64();
        let first = y
            .flatten_all()?
            .get(0)?
            .to_scalar::<f32>()
            .context("first")?;
        println!(
            "candle {:8.1} ms {:6.1} GMAC/s ({first})",
            s * 1e3,
            macs / s / 1e9
        );
    }
    Ok(())
}
