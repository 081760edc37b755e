//! The neural-network runtime: ONNX graphs executed with candle tensors and
//! the engine's own convolution kernels.

pub mod graph;
pub mod kernels;
pub mod onnx;
pub mod simd;

pub use graph::{Graph, GraphError};
