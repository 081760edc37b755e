//! The neural-network runtime: ONNX graphs executed with candle tensors and
//! the engine's own convolution kernels.

pub mod denormals;
pub mod graph;
pub mod kernels;
pub mod memory;
pub mod onnx;
pub mod ops;
pub mod packed;
pub mod simd;

pub use denormals::{configure_thread_pool, flush_to_zero};
pub use graph::{Graph, GraphError, StepTime};
pub use memory::retain_freed_memory;
