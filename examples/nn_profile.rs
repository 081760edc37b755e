//! Times each operator kind of a shipped model on a fixed input: a
//! profiling aid for the neural-network runtime.
//!
//! `cargo run --release -p ocr-examples --example nn_profile -- models/PP-OCRv6_det_small.onnx 1,3,640,640`

use anyhow::Context;
use ocr_core::candle_core::{Device, Tensor};
use ocr_core::nn::Graph;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .context("usage: nn_profile MODEL.onnx N,C,H,W [RUNS]")?;
    let dims: Vec<usize> = args
        .next()
        .context("the input shape, e.g. 1,3,640,640")?
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let runs: u32 = args.next().map(|r| r.parse()).transpose()?.unwrap_or(5);
    let graph = Graph::from_onnx(&std::fs::read(&path)?)?;
    let n: usize = dims.iter().product();
    let data: Vec<f32> = (0..n)
        .map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0)
        .collect();
    let x = Tensor::from_vec(data, dims.as_slice(), &Device::Cpu)?;
    graph.run(x.clone())?; // warm up
    let mut totals: Vec<(&'static str, f64)> = Vec::new();
    let start = std::time::Instant::now();
    for _ in 0..runs {
        let (_, times) = graph.run_profiled(x.clone())?;
        for (kind, t) in times {
            match totals.iter_mut().find(|(k, _)| *k == kind) {
                Some((_, total)) => *total += t.as_secs_f64(),
                None => totals.push((kind, t.as_secs_f64())),
            }
        }
    }
    let per_run = start.elapsed().as_secs_f64() * 1000.0 / f64::from(runs);
    totals.sort_by(|a, b| b.1.total_cmp(&a.1));
    println!("{path} {dims:?}: {per_run:.1} ms per run");
    for (kind, total) in totals {
        println!("  {kind:<20} {:8.2} ms", total * 1000.0 / f64::from(runs));
    }
    Ok(())
}
