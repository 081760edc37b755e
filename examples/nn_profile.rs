//! Times each operator of a shipped model on a fixed input: a profiling aid
//! for the neural-network runtime. Prints the total per operator kind, then
//! the slowest steps with their shapes.
//!
//! `cargo run --release -p ocr-examples --example nn_profile -- models/PP-OCRv6_det_small.onnx 1,3,640,640`

use std::collections::HashMap;

use anyhow::Context;
use ocr_core::candle_core::{Device, Tensor};
use ocr_core::nn::Graph;

fn main() -> anyhow::Result<()> {
    ocr_core::nn::retain_freed_memory();
    let _ = ocr_core::nn::configure_thread_pool(None);
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .context("usage: nn_profile MODEL.onnx N,C,H,W [RUNS] [STEPS]")?;
    let dims: Vec<usize> = args
        .next()
        .context("the input shape, e.g. 1,3,640,640")?
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let runs: u32 = args.next().map(|r| r.parse()).transpose()?.unwrap_or(5);
    let show: usize = args.next().map(|r| r.parse()).transpose()?.unwrap_or(15);
    let graph = Graph::from_onnx(&std::fs::read(&path)?)?;
    let n: usize = dims.iter().product();
    let data: Vec<f32> = (0..n)
        .map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0)
        .collect();
    let x = Tensor::from_vec(data, dims.as_slice(), &Device::Cpu)?;
    graph.run(x.clone())?; // warm up
    let mut per_kind: HashMap<&str, f64> = HashMap::new();
    let mut per_step: Vec<(String, f64)> = Vec::new();
    let start = std::time::Instant::now();
    for _ in 0..runs {
        let (_, steps) = graph.run_profiled(x.clone())?;
        per_step.resize(steps.len(), (String::new(), 0.0));
        for (i, step) in steps.iter().enumerate() {
            let ms = step.time.as_secs_f64() * 1000.0 / f64::from(runs);
            *per_kind.entry(step.kind).or_default() += ms;
            per_step[i].0 = format!("{} {:?} -> {:?}", step.kind, step.input, step.output);
            per_step[i].1 += ms;
        }
    }
    let per_run = start.elapsed().as_secs_f64() * 1000.0 / f64::from(runs);
    println!("{path} {dims:?}: {per_run:.1} ms per run");
    let mut kinds: Vec<_> = per_kind.into_iter().collect();
    kinds.sort_by(|a, b| b.1.total_cmp(&a.1));
    for (kind, ms) in kinds {
        println!("  {kind:<20} {ms:8.2} ms");
    }
    per_step.sort_by(|a, b| b.1.total_cmp(&a.1));
    println!("slowest steps:");
    for (step, ms) in per_step.iter().take(show) {
        println!("  {ms:8.3} ms  {step}");
    }
    Ok(())
}
