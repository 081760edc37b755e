//! Runs an ONNX graph with candle tensors.
//!
//! The graph is compiled once into a list of steps over numbered value slots.
//! Compilation folds what the exporters spread over several nodes into single
//! kernels: `Identity` nodes disappear, a convolution absorbs the bias `Add`,
//! batch norm and activation that follow it, and the `x * 0.5 * (1 +
//! erf(x / √2))` chain becomes one GELU. What remains runs on candle's CPU
//! tensor ops, with the convolutions in [`super::kernels`].

use std::collections::HashMap;
use std::sync::Arc;

use candle_core::{CpuStorage, DType, Device, Storage, Tensor};

use super::kernels::{Activation, Conv2d, ConvTranspose2d, Residual};
use super::onnx::{self, Attribute, Node, TensorData};
use super::ops::{self, BinaryOp};

/// An error compiling or running a graph.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    #[error(transparent)]
    Onnx(#[from] onnx::OnnxError),
    #[error("model: {0}")]
    Unsupported(String),
    #[error("model: {0}")]
    Candle(#[from] candle_core::Error),
}

fn unsupported<T>(msg: impl Into<String>) -> Result<T, GraphError> {
    Err(GraphError::Unsupported(msg.into()))
}

/// A runtime value: a float tensor, or a small integer tensor (shapes,
/// indices) kept on the host.
#[derive(Debug, Clone)]
enum Value {
    F(Tensor),
    I(Vec<i64>, Vec<usize>),
}

impl Value {
    fn tensor(&self) -> Result<&Tensor, GraphError> {
        match self {
            Value::F(t) => Ok(t),
            Value::I(..) => unsupported("an integer tensor where a float tensor is expected"),
        }
    }

    fn ints(&self) -> Result<&[i64], GraphError> {
        match self {
            Value::I(v, _) => Ok(v),
            Value::F(_) => unsupported("a float tensor where an integer tensor is expected"),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Binary {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
}

#[derive(Debug, Clone)]
enum Op {
    Conv(Arc<Conv2d>),
    ConvTranspose(Arc<ConvTranspose2d>),
    Binary(Binary),
    Activation(Activation),
    Erf,
    Sqrt,
    MaxPool {
        kernel: (usize, usize),
        stride: (usize, usize),
        pads: [usize; 4],
    },
    AveragePool {
        kernel: (usize, usize),
        stride: (usize, usize),
    },
    GlobalAveragePool,
    ReduceMean {
        axes: Vec<i64>,
        keepdims: bool,
    },
    ResizeNearest,
    Concat {
        axis: i64,
    },
    /// `x * y + z` (`z` the shape of the product): a `Mul` whose product only an `Add` uses,
    /// computed into one buffer (the squeeze-excitation blocks' `x + x * scale`).
    MulAdd,
    /// Batch norm in inference form: `x * scale + shift` per channel (axis 1).
    ChannelAffine {
        scale: Vec<f32>,
        shift: Vec<f32>,
    },
    MatMul,
    /// A product with a constant matrix, maybe with a bias and a softmax over
    /// the last axis fused in.
    Linear(Arc<Linear>),
    Softmax {
        axis: i64,
    },
    Reshape,
    Transpose {
        perm: Vec<usize>,
    },
    Squeeze {
        axes: Vec<i64>,
    },
    Unsqueeze {
        axes: Vec<i64>,
    },
    Slice,
    Shape,
    Clip {
        min: f32,
        max: f32,
    },
    /// `Cast` to a float (`true`) or an integer type.
    Cast {
        to_float: bool,
    },
    /// One part of a `Split`: `len` entries of `axis` from `start`.
    Narrow {
        axis: i64,
        start: usize,
        len: usize,
    },
}

#[derive(Debug, Clone)]
struct Step {
    op: Op,
    inputs: Vec<usize>,
    output: usize,
    /// Slots whose last use is this step, freed after it runs.
    free: Vec<usize>,
    /// Where the step writes its output straight into a later concatenation's.
    into: Option<IntoConcat>,
}

/// A part of a channel concatenation (`Concat` on axis 1) written in place: the part is made by a
/// convolution or max pool and used by the concatenation alone, so the step writes its channels
/// straight into the whole's buffer instead of a tensor of its own that the concatenation would
/// then copy. The parts and the whole are then never all alive at once: at the detector's
/// full-resolution stem that was its peak of memory (two 68 MB parts and their 136 MB whole on a
/// page-sized input). Batches of more than one image run the ordinary way.
#[derive(Debug, Clone, Copy)]
struct IntoConcat {
    /// The step that concatenates.
    concat: usize,
    /// The part's first channel in the whole, its channels, and the whole's.
    channel: usize,
    part_channels: usize,
    channels: usize,
    /// How many parts the whole has.
    parts: usize,
}

/// A concatenation being written in place by its parts.
enum Whole {
    /// Its buffer (`[1, channels, h, w]`) and how many parts are written.
    Filling {
        data: Vec<f32>,
        dims: [usize; 4],
        written: usize,
    },
    /// The parts run the ordinary way (a batch of several images).
    Ordinary,
}

/// One executed step, as [`Graph::run_profiled`] reports it.
#[derive(Debug, Clone)]
pub struct StepTime {
    /// The operator kind, e.g. `Conv(1x1)`.
    pub kind: &'static str,
    /// The dimensions of the first input and of the output.
    pub input: Vec<usize>,
    pub output: Vec<usize>,
    pub time: std::time::Duration,
}

/// A compiled graph.
#[derive(Debug)]
pub struct Graph {
    steps: Vec<Step>,
    constants: Vec<(usize, Value)>,
    slots: usize,
    input: usize,
    outputs: Vec<usize>,
    /// The model's metadata (`character` holds the recogniser's alphabet).
    pub metadata: HashMap<String, String>,
}

impl Graph {
    /// Decodes and compiles an ONNX file.
    pub fn from_onnx(bytes: &[u8]) -> Result<Self, GraphError> {
        let model = onnx::Model::parse(bytes)?;
        Compiler::compile(model)
    }

    /// Decodes an ONNX file and compiles only what computes the named tensors, which become the
    /// graph's outputs: the part of a model this runtime runs when the rest (a decoding loop,
    /// say) is written in Rust.
    pub fn from_onnx_until(bytes: &[u8], outputs: &[&str]) -> Result<Self, GraphError> {
        let mut model = onnx::Model::parse(bytes)?;
        model.outputs = outputs.iter().map(|o| o.to_string()).collect();
        Compiler::compile(model)
    }

    /// Decodes an ONNX file that ends in a softmax over the last axis of a rank-3 output (a
    /// recogniser's `[batch, steps, classes]`) and compiles it without that softmax: its output
    /// is then the logits, for a caller that needs only each row's best class and that class's
    /// probability, not a second whole-sized tensor. The flag says whether the softmax was
    /// found and left out; without one the model is compiled whole.
    pub fn from_onnx_without_final_softmax(bytes: &[u8]) -> Result<(Self, bool), GraphError> {
        let mut model = onnx::Model::parse(bytes)?;
        let last = match model.outputs.as_slice() {
            [out] => model
                .nodes
                .iter()
                .find(|n| n.outputs.first() == Some(out))
                .filter(|n| n.op_type == "Softmax" && matches!(n.int("axis").unwrap_or(-1), -1 | 2))
                .and_then(|n| n.inputs.first().cloned()),
            _ => None,
        };
        let dropped = last.is_some();
        if let Some(logits) = last {
            model.outputs = vec![logits];
        }
        Ok((Compiler::compile(model)?, dropped))
    }

    /// Runs the graph on one input and returns its (first) output.
    pub fn run(&self, input: Tensor) -> Result<Tensor, GraphError> {
        self.run_inner(input, None)?
            .into_iter()
            .next()
            .ok_or_else(|| GraphError::Unsupported("the graph has no output".into()))
    }

    /// Runs the graph on one input and returns every output, in the model's order.
    pub fn run_all(&self, input: Tensor) -> Result<Vec<Tensor>, GraphError> {
        self.run_inner(input, None)
    }

    /// Runs the graph and also returns every step with its time, in order:
    /// a profiling aid.
    pub fn run_profiled(&self, input: Tensor) -> Result<(Tensor, Vec<StepTime>), GraphError> {
        let mut times = Vec::new();
        let out = self.run_inner(input, Some(&mut times))?;
        let first = out
            .into_iter()
            .next()
            .ok_or_else(|| GraphError::Unsupported("the graph has no output".into()))?;
        Ok((first, times))
    }

    fn run_inner(
        &self,
        input: Tensor,
        mut times: Option<&mut Vec<StepTime>>,
    ) -> Result<Vec<Tensor>, GraphError> {
        // Steps that run on this thread rather than on the pool's workers.
        let _flush = super::denormals::FlushGuard::new();
        let mut slots: Vec<Option<Value>> = vec![None; self.slots];
        for (slot, value) in &self.constants {
            slots[*slot] = Some(value.clone());
        }
        let x = input.to_dtype(DType::F32)?;
        // The slot is then the input's only owner, freed after its last use (a page-sized
        // detector input is tens of megabytes).
        drop(input);
        slots[self.input] = Some(Value::F(x));
        let mut wholes: HashMap<usize, Whole> = HashMap::new();
        let dims = |v: &Value| match v {
            Value::F(t) => t.dims().to_vec(),
            Value::I(_, d) => d.clone(),
        };
        for (index, step) in self.steps.iter().enumerate() {
            let start = times.as_ref().map(|_| std::time::Instant::now());
            // A part written into its concatenation's buffer leaves its own slot empty.
            let part = match step.into {
                Some(into) => write_part(step, into, &slots, &mut wholes)?,
                None => None,
            };
            let (value, input) = if let Some(part_dims) = part {
                (None, part_dims)
            } else if let Some(whole) = take_whole(&mut wholes, index, step.inputs.len())? {
                (Some(whole), Vec::new())
            } else {
                let args: Vec<&Value> = step
                    .inputs
                    .iter()
                    .map(|&i| {
                        slots[i].as_ref().ok_or_else(|| {
                            GraphError::Unsupported("a value is used before it is computed".into())
                        })
                    })
                    .collect::<Result<_, _>>()?;
                let input = args.first().map(|v| dims(v)).unwrap_or_default();
                (Some(execute(&step.op, &args)?), input)
            };
            if let (Some(times), Some(start)) = (times.as_deref_mut(), start) {
                times.push(StepTime {
                    kind: step.op.kind(),
                    input,
                    output: value.as_ref().map(dims).unwrap_or_default(),
                    time: start.elapsed(),
                });
            }
            for &slot in &step.free {
                slots[slot] = None;
            }
            slots[step.output] = value;
        }
        self.outputs
            .iter()
            .map(|&o| match slots[o].clone() {
                Some(Value::F(t)) => Ok(t),
                _ => unsupported("the graph produced no float output"),
            })
            .collect()
    }
}

impl Op {
    /// A short name for profiles.
    fn kind(&self) -> &'static str {
        match self {
            Op::Conv(c) if c.groups > 1 && c.groups == c.in_channels => "Conv(depthwise)",
            Op::Conv(c) if c.kernel == (1, 1) && c.stride == (1, 1) => "Conv(1x1)",
            Op::Conv(_) => "Conv(direct)",
            Op::ConvTranspose(_) => "ConvTranspose",
            Op::Binary(Binary::Add) => "Add",
            Op::Binary(Binary::Sub) => "Sub",
            Op::Binary(Binary::Mul) => "Mul",
            Op::Binary(Binary::Div) => "Div",
            Op::Binary(Binary::Pow) => "Pow",
            Op::Activation(_) => "Activation",
            Op::Erf => "Erf",
            Op::Sqrt => "Sqrt",
            Op::MaxPool { .. } => "MaxPool",
            Op::AveragePool { .. } => "AveragePool",
            Op::GlobalAveragePool => "GlobalAveragePool",
            Op::ReduceMean { .. } => "ReduceMean",
            Op::ResizeNearest => "Resize",
            Op::Concat { .. } => "Concat",
            Op::MulAdd => "MulAdd",
            Op::ChannelAffine { .. } => "BatchNorm",
            Op::MatMul => "MatMul",
            Op::Linear(_) => "Linear",
            Op::Softmax { .. } => "Softmax",
            Op::Reshape => "Reshape",
            Op::Transpose { .. } => "Transpose",
            Op::Squeeze { .. } => "Squeeze",
            Op::Unsqueeze { .. } => "Unsqueeze",
            Op::Slice => "Slice",
            Op::Shape => "Shape",
            Op::Cast { .. } => "Cast",
            Op::Clip { .. } => "Clip",
            Op::Narrow { .. } => "Split",
        }
    }
}

/// Runs a part of an in-place concatenation ([`IntoConcat`]) into the whole's buffer, which the
/// first part to run allocates. Returns the part's input dimensions, or `None` when the part is
/// to run the ordinary way (a batch of several images; the whole then stays ordinary too).
fn write_part(
    step: &Step,
    into: IntoConcat,
    slots: &[Option<Value>],
    wholes: &mut HashMap<usize, Whole>,
) -> Result<Option<Vec<usize>>, GraphError> {
    let operand = |i: usize| -> Result<&Tensor, GraphError> {
        slots[step.inputs[i]]
            .as_ref()
            .ok_or_else(|| GraphError::Unsupported("a value is used before it is computed".into()))?
            .tensor()
    };
    let x = operand(0)?;
    let (n, c, h, w) = x.dims4()?;
    let (channels, size) = match &step.op {
        Op::Conv(conv) => (conv.out_channels, conv.output_size(h, w)),
        Op::MaxPool {
            kernel,
            stride,
            pads,
        } => (c, ops::max_pool_size((h, w), *kernel, *stride, *pads)),
        _ => return Ok(None),
    };
    // An input the kernel cannot take runs the ordinary way, which reports it.
    let (Some((oh, ow)), 1) = (size, n) else {
        wholes.insert(into.concat, Whole::Ordinary);
        return Ok(None);
    };
    let whole = wholes.entry(into.concat).or_insert_with(|| Whole::Filling {
        data: super::memory::zeroed(into.channels * oh * ow),
        dims: [1, into.channels, oh, ow],
        written: 0,
    });
    let Whole::Filling {
        data,
        dims,
        written,
    } = whole
    else {
        return Ok(None);
    };
    if dims[2..] != [oh, ow] || channels != into.part_channels {
        return unsupported(format!(
            "concatenation of {:?} and a part of {channels} channels of {oh}x{ow}",
            dims
        ));
    }
    let out = &mut data[into.channel * oh * ow..][..channels * oh * ow];
    let done = match &step.op {
        Op::Conv(conv) => {
            if c != conv.in_channels {
                return unsupported(format!(
                    "conv: {c} input channels, the weights expect {}",
                    conv.in_channels
                ));
            }
            // SAFETY: the values are initialised (zeroed), so viewing them as possibly
            // uninitialised only forgets that; the kernel writes floats into them.
            #[allow(unsafe_code)]
            let out = unsafe { std::slice::from_raw_parts_mut(out.as_mut_ptr().cast(), out.len()) };
            let residual = step.inputs.get(1).map(|_| operand(1)).transpose()?;
            with_slice(x, |x| match residual {
                Some(r) => with_slice(r, |r| conv.forward_into(x, (n, h, w), Some(r), out)),
                None => Ok(conv.forward_into(x, (n, h, w), None, out)),
            })??
        }
        Op::MaxPool {
            kernel,
            stride,
            pads,
        } => with_slice(x, |x| {
            ops::max_pool_into(x, (n, c, h, w), *kernel, *stride, *pads, out)
        })?,
        _ => None,
    };
    if done.is_none() {
        return unsupported(format!("a concatenation part of {:?} failed", x.dims()));
    }
    *written += 1;
    debug_assert!(*written <= into.parts);
    Ok(Some(x.dims().to_vec()))
}

/// The concatenation at step `index` when its parts were written in place: the whole, checked
/// to have all `parts` written. `None` when it runs the ordinary way.
fn take_whole(
    wholes: &mut HashMap<usize, Whole>,
    index: usize,
    parts: usize,
) -> Result<Option<Value>, GraphError> {
    match wholes.remove(&index) {
        Some(Whole::Filling {
            data,
            dims,
            written,
        }) => {
            if written != parts {
                return unsupported("a concatenation ran before all its parts");
            }
            Ok(Some(Value::F(Tensor::from_vec(
                data,
                dims.as_slice(),
                &Device::Cpu,
            )?)))
        }
        _ => Ok(None),
    }
}

fn execute(op: &Op, args: &[&Value]) -> Result<Value, GraphError> {
    let t = |i: usize| -> Result<&Tensor, GraphError> {
        args.get(i)
            .ok_or_else(|| GraphError::Unsupported("missing operand".into()))?
            .tensor()
    };
    let out = match op {
        Op::Conv(conv) if args.len() == 2 => {
            let (x, residual) = (t(0)?, t(1)?);
            let (n, c, h, w) = x.dims4()?;
            if c != conv.in_channels {
                return unsupported(format!(
                    "conv: {c} input channels, the weights expect {}",
                    conv.in_channels
                ));
            }
            let out = with_slice(x, |x| {
                with_slice(residual, |r| {
                    conv.forward_with_residual(x, n, h, w, Some(r))
                })
            })??;
            let Some((data, oh, ow)) = out else {
                return unsupported(format!(
                    "convolution of {:?} with a residual of {:?}",
                    x.dims(),
                    residual.dims()
                ));
            };
            Tensor::from_vec(data, (n, conv.out_channels, oh, ow), x.device())?
        }
        Op::Conv(conv) => t(0)?.contiguous()?.apply_op1_no_bwd(conv.as_ref())?,
        Op::ConvTranspose(conv) => t(0)?.contiguous()?.apply_op1_no_bwd(conv.as_ref())?,
        Op::Binary(kind) => {
            if let (Value::I(a, sa), Value::I(b, sb)) = (args[0], args[1]) {
                return int_binary(*kind, a, sa, b, sb);
            }
            let (a, b) = (t(0)?, t(1)?);
            let fast = match kind {
                Binary::Add => Some(BinaryOp::Add),
                Binary::Sub => Some(BinaryOp::Sub),
                Binary::Mul => Some(BinaryOp::Mul),
                Binary::Div => Some(BinaryOp::Div),
                Binary::Pow => None,
            };
            if let Some(op) = fast {
                let out = with_slice(a, |x| {
                    with_slice(b, |y| {
                        ops::binary(op, x, a.dims(), y, b.dims(), false)
                            .map(|v| (v, a.dims().to_vec()))
                            .or_else(|| {
                                ops::binary(op, y, b.dims(), x, a.dims(), true)
                                    .map(|v| (v, b.dims().to_vec()))
                            })
                    })
                })??;
                if let Some((data, dims)) = out {
                    return Ok(Value::F(Tensor::from_vec(data, dims, a.device())?));
                }
            }
            match kind {
                Binary::Add => a.broadcast_add(b)?,
                Binary::Sub => a.broadcast_sub(b)?,
                Binary::Mul => a.broadcast_mul(b)?,
                Binary::Div => a.broadcast_div(b)?,
                Binary::Pow => {
                    if b.elem_count() == 1 && b.flatten_all()?.to_vec1::<f32>()?[0] == 2.0 {
                        a.sqr()?
                    } else {
                        a.broadcast_pow(b)?
                    }
                }
            }
        }
        Op::MulAdd => {
            let ordinary = || -> Result<Value, GraphError> {
                let product = execute(&Op::Binary(Binary::Mul), &args[..2])?;
                execute(&Op::Binary(Binary::Add), &[&product, args[2]])
            };
            if args.len() != 3 || args.iter().any(|v| matches!(v, Value::I(..))) {
                return ordinary();
            }
            let (x, y, z) = (t(0)?, t(1)?, t(2)?);
            let product = with_slice(x, |xv| {
                with_slice(y, |yv| {
                    ops::binary(BinaryOp::Mul, xv, x.dims(), yv, y.dims(), false)
                        .map(|v| (v, x.dims().to_vec()))
                        .or_else(|| {
                            ops::binary(BinaryOp::Mul, yv, y.dims(), xv, x.dims(), true)
                                .map(|v| (v, y.dims().to_vec()))
                        })
                })
            })??;
            match product {
                // Addition commutes bit for bit, so `z` may be added into the product whichever
                // side of the `Add` it was on.
                Some((mut data, dims)) if dims == z.dims() => {
                    with_slice(z, |zv| ops::add_into(&mut data, zv))?;
                    Tensor::from_vec(data, dims, x.device())?
                }
                _ => return ordinary(),
            }
        }
        Op::Activation(act) => {
            let x = t(0)?;
            let data = with_slice(x, |v| ops::activation(*act, v))?;
            Tensor::from_vec(data, x.dims(), x.device())?
        }
        Op::Erf => t(0)?.erf()?,
        Op::Clip { min, max } => t(0)?.clamp(*min, *max)?,
        Op::Narrow {
            axis: a,
            start,
            len,
        } => {
            let x = t(0)?;
            x.narrow(axis(*a, x.rank())?, *start, *len)?.contiguous()?
        }
        Op::Sqrt => t(0)?.sqrt()?,
        Op::MaxPool {
            kernel,
            stride,
            pads,
        } => {
            let x = t(0)?;
            let (n, c, h, w) = x.dims4()?;
            let Some((data, oh, ow)) = with_slice(x, |v| {
                ops::max_pool(v, (n, c, h, w), *kernel, *stride, *pads)
            })?
            else {
                return unsupported("MaxPool kernel larger than its padded input");
            };
            Tensor::from_vec(data, (n, c, oh, ow), x.device())?
        }
        Op::AveragePool { kernel, stride } => t(0)?.avg_pool2d_with_stride(*kernel, *stride)?,
        Op::GlobalAveragePool => t(0)?.mean_keepdim(3)?.mean_keepdim(2)?,
        Op::ReduceMean { axes, keepdims } => {
            let x = t(0)?;
            let mut axes: Vec<usize> = axes
                .iter()
                .map(|&a| axis(a, x.rank()))
                .collect::<Result<_, _>>()?;
            axes.sort_unstable();
            let mut y = x.clone();
            for &a in axes.iter().rev() {
                y = if *keepdims {
                    y.mean_keepdim(a)?
                } else {
                    y.mean(a)?
                };
            }
            y
        }
        Op::ResizeNearest => {
            let x = t(0)?;
            let (n, c, h, w) = x.dims4()?;
            let (oh, ow, scales) = match args.len() {
                n if n >= 4 => {
                    let sizes = args[3].ints()?;
                    let (oh, ow) = (sizes[2] as usize, sizes[3] as usize);
                    (oh, ow, (oh as f32 / h as f32, ow as f32 / w as f32))
                }
                _ => {
                    let scales = args[2].tensor()?.to_vec1::<f32>()?;
                    (
                        (h as f32 * scales[2]).floor() as usize,
                        (w as f32 * scales[3]).floor() as usize,
                        (scales[2], scales[3]),
                    )
                }
            };
            if h == 0 || w == 0 || scales.0 <= 0.0 || scales.1 <= 0.0 {
                return unsupported("Resize of an empty tensor or by a non-positive scale");
            }
            let data = with_slice(x, |v| {
                ops::resize_nearest(v, (n, c, h, w), (oh, ow), scales)
            })?;
            Tensor::from_vec(data, (n, c, oh, ow), x.device())?
        }
        Op::Concat { axis: a } => {
            if let Value::I(..) = args[0] {
                let mut all = Vec::new();
                for v in args {
                    all.extend_from_slice(v.ints()?);
                }
                let n = all.len();
                return Ok(Value::I(all, vec![n]));
            }
            let tensors: Vec<Tensor> = args
                .iter()
                .map(|v| v.tensor().and_then(|t| Ok(t.contiguous()?)))
                .collect::<Result<_, _>>()?;
            let a = axis(*a, tensors[0].rank())?;
            let fast = {
                let guards: Vec<_> = tensors.iter().map(|t| t.storage_and_layout()).collect();
                let inputs = guards
                    .iter()
                    .zip(&tensors)
                    .map(|((storage, layout), t)| Ok((cpu_f32(storage, layout)?, t.dims())))
                    .collect::<Result<Vec<_>, GraphError>>()?;
                ops::concat(&inputs, a)
            };
            match fast {
                Some((data, dims)) => Tensor::from_vec(data, dims, tensors[0].device())?,
                None => Tensor::cat(&tensors, a)?,
            }
        }
        Op::ChannelAffine { scale, shift } => {
            let x = t(0)?;
            let mut dims = vec![1usize; x.rank()];
            dims[1] = scale.len();
            let s = Tensor::from_slice(scale, dims.as_slice(), x.device())?;
            let b = Tensor::from_slice(shift, dims.as_slice(), x.device())?;
            x.broadcast_mul(&s)?.broadcast_add(&b)?
        }
        Op::Linear(linear) => {
            let x = t(0)?;
            let mut dims = x.dims().to_vec();
            let (k, n) = (linear.right.k(), linear.right.n());
            if dims.last() != Some(&k) {
                return unsupported(format!("MatMul of {dims:?} by a {}×{} matrix", k, n));
            }
            let softmax_axis = linear.softmax.map(|a| axis(a, dims.len())).transpose()?;
            let last = dims.len() - 1;
            let data = with_slice(x, |v| linear.forward(v, softmax_axis == Some(last)))?;
            dims[last] = n;
            let y = Tensor::from_vec(data, dims, x.device())?;
            match softmax_axis {
                Some(a) if a != last => softmax(&y, a)?,
                _ => y,
            }
        }
        Op::MatMul => {
            let (a, b) = (t(0)?.contiguous()?, t(1)?.contiguous()?);
            if b.rank() == 2 && a.rank() > 2 {
                // [.., k] x [k, n]: fold the batch dims into rows.
                let mut dims = a.dims().to_vec();
                let k = dims.pop().unwrap_or(1);
                let rows: usize = dims.iter().product();
                let y = a.reshape((rows, k))?.matmul(&b)?;
                dims.push(b.dim(1)?);
                y.reshape(dims)?
            } else {
                a.broadcast_matmul(&b)?
            }
        }
        Op::Softmax { axis: a } => {
            let x = t(0)?;
            softmax(x, axis(*a, x.rank())?)?
        }
        Op::Reshape => {
            let shape = args[1].ints()?;
            match args[0] {
                Value::I(v, _) => {
                    let dims = resolve_shape(shape, &[v.len()], v.len())?;
                    return Ok(Value::I(v.clone(), dims));
                }
                Value::F(x) => {
                    let dims = resolve_shape(shape, x.dims(), x.elem_count())?;
                    x.contiguous()?.reshape(dims)?
                }
            }
        }
        Op::Transpose { perm } => t(0)?.permute(perm.as_slice())?.contiguous()?,
        Op::Squeeze { axes } | Op::Unsqueeze { axes } => {
            // Both only change the shape: compute the new dims, then reshape.
            let axes = match args.get(1) {
                Some(v) => v.ints()?.to_vec(),
                None => axes.clone(),
            };
            let dims: Vec<usize> = match args[0] {
                Value::I(_, d) => d.clone(),
                Value::F(x) => x.dims().to_vec(),
            };
            let dims = if matches!(op, Op::Squeeze { .. }) {
                squeezed(&dims, &axes)?
            } else {
                unsqueezed(&dims, &axes)?
            };
            match args[0] {
                Value::I(v, _) => return Ok(Value::I(v.clone(), dims)),
                Value::F(x) => x.reshape(dims)?,
            }
        }
        Op::Slice => {
            let starts = args[1].ints()?;
            let ends = args[2].ints()?;
            let dims: Vec<usize> = match args[0] {
                Value::I(_, d) => d.clone(),
                Value::F(x) => x.dims().to_vec(),
            };
            let axes: Vec<usize> = match args.get(3) {
                Some(v) => v
                    .ints()?
                    .iter()
                    .map(|&a| axis(a, dims.len()))
                    .collect::<Result<_, _>>()?,
                None => (0..starts.len()).collect(),
            };
            if let Some(steps) = args.get(4)
                && steps.ints()?.iter().any(|&s| s != 1)
            {
                return unsupported("Slice with a step other than 1");
            }
            let mut ranges: Vec<(usize, usize)> = dims.iter().map(|&d| (0, d)).collect();
            for (i, &a) in axes.iter().enumerate() {
                let d = dims[a] as i64;
                let clampi =
                    |v: i64| -> usize { (if v < 0 { v + d } else { v }).clamp(0, d) as usize };
                let (s, e) = (clampi(starts[i]), clampi(ends[i]));
                ranges[a] = (s, e.max(s));
            }
            match args[0] {
                Value::I(v, _) => {
                    if dims.len() != 1 {
                        return unsupported("Slice of a multi-dimensional integer tensor");
                    }
                    let (s, e) = ranges[0];
                    return Ok(Value::I(v[s..e].to_vec(), vec![e - s]));
                }
                Value::F(x) => {
                    let mut y = x.clone();
                    for (a, &(s, e)) in ranges.iter().enumerate() {
                        if (s, e) != (0, dims[a]) {
                            y = y.narrow(a, s, e - s)?;
                        }
                    }
                    y
                }
            }
        }
        Op::Cast { to_float } => match (args[0], to_float) {
            (Value::I(v, dims), true) => {
                let data: Vec<f32> = v.iter().map(|&x| x as f32).collect();
                Tensor::from_vec(data, dims.as_slice(), &Device::Cpu)?
            }
            (Value::F(x), false) => {
                let dims = x.dims().to_vec();
                let v = x.flatten_all()?.to_vec1::<f32>()?;
                return Ok(Value::I(v.iter().map(|&x| x as i64).collect(), dims));
            }
            (same, _) => return Ok(same.clone()),
        },
        Op::Shape => {
            let dims: Vec<i64> = match args[0] {
                Value::I(_, d) => d.iter().map(|&x| x as i64).collect(),
                Value::F(x) => x.dims().iter().map(|&x| x as i64).collect(),
            };
            let n = dims.len();
            return Ok(Value::I(dims, vec![n]));
        }
    };
    Ok(Value::F(out))
}

/// Softmax along `axis`: the slice kernel over the last axis, candle's ops
/// over any other.
fn softmax(x: &Tensor, axis: usize) -> Result<Tensor, GraphError> {
    if axis + 1 == x.rank() {
        let row = x.dim(axis)?;
        let data = with_slice(x, |v| ops::softmax_last(v, row))?;
        return Ok(Tensor::from_vec(data, x.dims(), x.device())?);
    }
    let max = x.max_keepdim(axis)?;
    let e = x.broadcast_sub(&max)?.exp()?;
    Ok(e.broadcast_div(&e.sum_keepdim(axis)?)?)
}

/// Calls `f` with the tensor's f32 values, contiguous (read in place when they already are).
pub fn with_slice<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R, GraphError> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    Ok(f(cpu_f32(&storage, layout)?))
}

/// The f32 values of a contiguous CPU tensor's storage.
fn cpu_f32<'a>(
    storage: &'a Storage,
    layout: &candle_core::Layout,
) -> Result<&'a [f32], GraphError> {
    let Storage::Cpu(CpuStorage::F32(data)) = storage else {
        return unsupported("expected an f32 tensor on the CPU");
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => unsupported("expected a contiguous tensor"),
    }
}

fn int_binary(
    kind: Binary,
    a: &[i64],
    sa: &[usize],
    b: &[i64],
    sb: &[usize],
) -> Result<Value, GraphError> {
    let f = |x: i64, y: i64| -> i64 {
        match kind {
            Binary::Add => x + y,
            Binary::Sub => x - y,
            Binary::Mul => x * y,
            Binary::Div => {
                if y == 0 {
                    0
                } else {
                    x / y
                }
            }
            Binary::Pow => x.pow(y.clamp(0, 63) as u32),
        }
    };
    if a.len() == b.len() {
        return Ok(Value::I(
            a.iter().zip(b).map(|(&x, &y)| f(x, y)).collect(),
            sa.to_vec(),
        ));
    }
    if b.len() == 1 {
        return Ok(Value::I(
            a.iter().map(|&x| f(x, b[0])).collect(),
            sa.to_vec(),
        ));
    }
    if a.len() == 1 {
        return Ok(Value::I(
            b.iter().map(|&y| f(a[0], y)).collect(),
            sb.to_vec(),
        ));
    }
    unsupported("broadcasting between integer tensors")
}

/// `dims` without the listed axes (all size-1 axes when none are listed).
fn squeezed(dims: &[usize], axes: &[i64]) -> Result<Vec<usize>, GraphError> {
    if axes.is_empty() {
        return Ok(dims.iter().copied().filter(|&d| d != 1).collect());
    }
    let drop: Vec<usize> = axes
        .iter()
        .map(|&a| axis(a, dims.len()))
        .collect::<Result<_, _>>()?;
    if drop.iter().any(|&a| dims[a] != 1) {
        return unsupported(format!("Squeeze of a dimension other than 1 in {dims:?}"));
    }
    Ok(dims
        .iter()
        .enumerate()
        .filter(|(i, _)| !drop.contains(i))
        .map(|(_, &d)| d)
        .collect())
}

/// `dims` with size-1 axes inserted at the listed positions of the result.
fn unsqueezed(dims: &[usize], axes: &[i64]) -> Result<Vec<usize>, GraphError> {
    let rank = dims.len() + axes.len();
    let mut insert: Vec<usize> = axes
        .iter()
        .map(|&a| axis(a, rank))
        .collect::<Result<_, _>>()?;
    insert.sort_unstable();
    let mut out = dims.to_vec();
    for a in insert {
        out.insert(a, 1);
    }
    Ok(out)
}

fn axis(a: i64, rank: usize) -> Result<usize, GraphError> {
    let r = rank as i64;
    let v = if a < 0 { a + r } else { a };
    if v < 0 || v >= r {
        return unsupported(format!("axis {a} out of range for rank {rank}"));
    }
    Ok(v as usize)
}

/// ONNX Reshape semantics: 0 copies the input dimension, -1 is inferred.
fn resolve_shape(shape: &[i64], input: &[usize], count: usize) -> Result<Vec<usize>, GraphError> {
    let mut dims = Vec::with_capacity(shape.len());
    let mut infer = None;
    for (i, &d) in shape.iter().enumerate() {
        match d {
            0 => dims.push(*input.get(i).ok_or_else(|| {
                GraphError::Unsupported("Reshape copies a missing dimension".into())
            })?),
            -1 => {
                infer = Some(i);
                dims.push(1);
            }
            d if d > 0 => dims.push(d as usize),
            _ => return unsupported("Reshape to a negative dimension"),
        }
    }
    if let Some(i) = infer {
        let known: usize = dims.iter().product();
        if known == 0 || !count.is_multiple_of(known) {
            return unsupported("Reshape cannot infer a dimension");
        }
        dims[i] = count / known;
    }
    if dims.iter().product::<usize>() != count {
        return unsupported(format!("Reshape of {count} values to {dims:?}"));
    }
    Ok(dims)
}

/// `x · W (+ bias) (then softmax over each row)` for a constant `W`.
#[derive(Debug)]
pub struct Linear {
    /// `W` (`k × n`) and the bias, packed for the matrix-product kernel.
    right: super::kernels::PackedRight,
    /// The axis of a fused softmax; it runs in the layer's pass only when
    /// that is the last axis, and as a separate step otherwise.
    softmax: Option<i64>,
}

impl Linear {
    /// Applies the layer to rows of `k` values, then the softmax over each
    /// output row when asked.
    fn forward(&self, x: &[f32], softmax: bool) -> Vec<f32> {
        use rayon::prelude::*;
        let n = self.right.n();
        let mut out = self.right.product(x);
        if softmax {
            let rows = out.len() / n.max(1);
            let block = rows.div_ceil(4 * rayon::current_num_threads()).max(1) * n;
            out.par_chunks_mut(block.max(1))
                .for_each(|rows| ops::softmax_rows(rows, n));
        }
        out
    }
}

/// Turns the decoded ONNX graph into steps.
struct Compiler {
    nodes: Vec<Option<Node>>,
    constants: HashMap<String, onnx::Tensor>,
    alias: HashMap<String, String>,
}

impl Compiler {
    fn compile(model: onnx::Model) -> Result<Graph, GraphError> {
        let mut constants: HashMap<String, onnx::Tensor> = HashMap::new();
        for t in model.initializers {
            constants.insert(t.name.clone(), t);
        }
        let mut nodes = Vec::new();
        let mut alias = HashMap::new();
        for node in model.nodes {
            match node.op_type.as_str() {
                "Constant" => {
                    let Some(Attribute::Tensor(t)) = node.attributes.get("value") else {
                        return unsupported("Constant without a tensor value");
                    };
                    let out = node.outputs.first().cloned().unwrap_or_default();
                    constants.insert(
                        out.clone(),
                        onnx::Tensor {
                            name: out,
                            ..t.clone()
                        },
                    );
                }
                "Identity" | "Dropout" => {
                    if let (Some(o), Some(i)) = (node.outputs.first(), node.inputs.first()) {
                        alias.insert(o.clone(), i.clone());
                    }
                }
                _ => nodes.push(Some(node)),
            }
        }
        let mut c = Compiler {
            nodes,
            constants,
            alias,
        };
        // Resolve aliases everywhere first.
        let alias = c.alias.clone();
        let resolve = |name: &str| -> String {
            let mut n = name.to_string();
            let mut hops = 0;
            while let Some(next) = alias.get(&n) {
                n = next.clone();
                hops += 1;
                if hops > 10_000 {
                    break;
                }
            }
            n
        };
        for node in c.nodes.iter_mut().flatten() {
            for i in node.inputs.iter_mut() {
                *i = resolve(i);
            }
        }
        let outputs: Vec<String> = model.outputs.iter().map(|o| resolve(o)).collect();
        c.prune(&outputs);
        c.fuse_gelu();
        c.fuse_hardswish();
        let steps = c.lower(&outputs)?;
        c.finish(steps, &model.inputs, &outputs, model.metadata)
    }

    /// Drops the nodes no output depends on.
    fn prune(&mut self, outputs: &[String]) {
        let mut producer: HashMap<&str, usize> = HashMap::new();
        for (i, node) in self.nodes.iter().enumerate() {
            for o in node.iter().flat_map(|n| &n.outputs) {
                producer.insert(o, i);
            }
        }
        let mut needed = vec![false; self.nodes.len()];
        let mut stack: Vec<&str> = outputs.iter().map(String::as_str).collect();
        while let Some(name) = stack.pop() {
            if let Some(&i) = producer.get(name)
                && !needed[i]
            {
                needed[i] = true;
                if let Some(node) = &self.nodes[i] {
                    stack.extend(node.inputs.iter().map(String::as_str));
                }
            }
        }
        for (node, keep) in self.nodes.iter_mut().zip(needed) {
            if !keep {
                *node = None;
            }
        }
    }

    fn users(&self) -> HashMap<String, Vec<usize>> {
        let mut users: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, node) in self.nodes.iter().enumerate() {
            if let Some(node) = node {
                for input in &node.inputs {
                    users.entry(input.clone()).or_default().push(i);
                }
            }
        }
        users
    }

    fn scalar(&self, name: &str) -> Option<f32> {
        match &self.constants.get(name)?.data {
            TensorData::F32(v) if v.len() == 1 => Some(v[0]),
            _ => None,
        }
    }

    fn other_input<'a>(node: &'a Node, name: &str) -> Option<&'a str> {
        match node.inputs.as_slice() {
            [a, b] if a == name => Some(b),
            [a, b] if b == name => Some(a),
            _ => None,
        }
    }

    /// Removes the nodes of a matched chain and puts one `op_type` node from `x` to `out` in the
    /// place of its last node (`at`), so the graph stays in topological order.
    fn replace_chain(
        &mut self,
        removed: &[usize],
        at: usize,
        op_type: &str,
        x: String,
        out: String,
    ) {
        for &k in removed {
            self.nodes[k] = None;
        }
        self.nodes[at] = Some(Node {
            op_type: op_type.into(),
            name: format!("{}:{out}", op_type.to_lowercase()),
            inputs: vec![x],
            outputs: vec![out],
            attributes: HashMap::new(),
        });
    }

    /// `x / √2 → erf → + 1 → × x → × 0.5` becomes one `Gelu` node.
    fn fuse_gelu(&mut self) {
        let users = self.users();
        let only = |name: &str| sole_user(&users, name);
        for i in 0..self.nodes.len() {
            let Some(div) = self.nodes[i].clone() else {
                continue;
            };
            if div.op_type != "Div" || div.inputs.len() != 2 {
                continue;
            }
            let x = div.inputs[0].clone();
            if !self
                .scalar(&div.inputs[1])
                .is_some_and(|v| (v - std::f32::consts::SQRT_2).abs() < 1e-4)
            {
                continue;
            }
            let chain = (|| {
                let erf = only(&div.outputs[0])?;
                let erf_n = self.nodes[erf].as_ref()?;
                (erf_n.op_type == "Erf").then_some(())?;
                let add = only(&erf_n.outputs[0])?;
                let add_n = self.nodes[add].as_ref()?;
                (add_n.op_type == "Add"
                    && self.scalar(Self::other_input(add_n, &erf_n.outputs[0])?)? == 1.0)
                    .then_some(())?;
                let mul = only(&add_n.outputs[0])?;
                let mul_n = self.nodes[mul].as_ref()?;
                (mul_n.op_type == "Mul" && Self::other_input(mul_n, &add_n.outputs[0])? == x)
                    .then_some(())?;
                let half = only(&mul_n.outputs[0])?;
                let half_n = self.nodes[half].as_ref()?;
                (half_n.op_type == "Mul"
                    && self.scalar(Self::other_input(half_n, &mul_n.outputs[0])?)? == 0.5)
                    .then_some(())?;
                Some((erf, add, mul, half, half_n.outputs[0].clone()))
            })();
            let Some((erf, add, mul, half, out)) = chain else {
                continue;
            };
            self.replace_chain(&[i, erf, add, mul], half, "Gelu", x, out);
        }
    }

    /// `x · clip(x + 3, 0, 6) / 6` (as Paddle exports hard-swish) becomes one `HardSwish` node.
    fn fuse_hardswish(&mut self) {
        let users = self.users();
        let only = |name: &str| sole_user(&users, name);
        for i in 0..self.nodes.len() {
            let Some(add) = self.nodes[i].clone() else {
                continue;
            };
            if add.op_type != "Add" || add.inputs.len() != 2 {
                continue;
            }
            let chain = (|| {
                let (x, three) = match (self.scalar(&add.inputs[0]), self.scalar(&add.inputs[1])) {
                    (_, Some(v)) => (add.inputs[0].clone(), v),
                    (Some(v), _) => (add.inputs[1].clone(), v),
                    _ => return None,
                };
                (three == 3.0).then_some(())?;
                let clip = only(&add.outputs[0])?;
                let clip_n = self.nodes[clip].as_ref()?;
                let bound = |k: usize| clip_n.inputs.get(k).and_then(|n| self.scalar(n));
                (clip_n.op_type == "Clip" && bound(1)? == 0.0 && bound(2)? == 6.0).then_some(())?;
                let mul = only(&clip_n.outputs[0])?;
                let mul_n = self.nodes[mul].as_ref()?;
                (mul_n.op_type == "Mul" && Self::other_input(mul_n, &clip_n.outputs[0])? == x)
                    .then_some(())?;
                let div = only(&mul_n.outputs[0])?;
                let div_n = self.nodes[div].as_ref()?;
                let by = self.scalar(Self::other_input(div_n, &mul_n.outputs[0])?)?;
                let sixth = match div_n.op_type.as_str() {
                    "Div" => div_n.inputs[0] == mul_n.outputs[0] && by == 6.0,
                    "Mul" => (by - 1.0 / 6.0).abs() < 1e-6,
                    _ => false,
                };
                sixth.then_some((x, clip, mul, div, div_n.outputs[0].clone()))
            })();
            let Some((x, clip, mul, div, out)) = chain else {
                continue;
            };
            self.replace_chain(&[i, clip, mul], div, "HardSwish", x, out);
        }
    }

    /// The node that alone consumes `name`, with its index, while `name` is
    /// not a graph output and that node is not yet lowered or fused: what a
    /// kernel may absorb.
    fn sole_consumer(
        &self,
        users: &HashMap<String, Vec<usize>>,
        graph_outputs: &[String],
        name: &str,
    ) -> Option<(usize, &Node)> {
        if graph_outputs.iter().any(|o| o == name) {
            return None;
        }
        match users.get(name).map(Vec::as_slice) {
            Some([j]) => Some((*j, self.nodes[*j].as_ref()?)),
            _ => None,
        }
    }

    /// Removes node `j`, absorbed into the step being built, and returns its
    /// output: the step's output from now on.
    fn fuse(&mut self, j: usize) -> Result<String, GraphError> {
        let node = self.nodes[j]
            .take()
            .ok_or_else(|| GraphError::Unsupported("fused node vanished".into()))?;
        node.outputs
            .into_iter()
            .next()
            .ok_or_else(|| GraphError::Unsupported("a fused node has no output".into()))
    }

    fn const_f32(&self, name: &str) -> Result<(&[usize], &[f32]), GraphError> {
        match self.constants.get(name) {
            Some(onnx::Tensor {
                dims,
                data: TensorData::F32(v),
                ..
            }) => Ok((dims, v)),
            _ => unsupported(format!("{name} must be a float constant")),
        }
    }

    fn lower(
        &mut self,
        graph_outputs: &[String],
    ) -> Result<Vec<(Op, Vec<String>, String)>, GraphError> {
        let users = self.users();
        let mut producer: HashMap<String, usize> = HashMap::new();
        for (i, node) in self.nodes.iter().enumerate() {
            for o in node.iter().flat_map(|n| &n.outputs) {
                producer.insert(o.clone(), i);
            }
        }
        let mut steps = Vec::new();
        for i in 0..self.nodes.len() {
            let Some(node) = self.nodes[i].take() else {
                continue;
            };
            let out = node.outputs.first().cloned().unwrap_or_default();
            let op = match node.op_type.as_str() {
                "Conv" => {
                    let mut conv = self.conv(&node)?;
                    let mut out = out.clone();
                    // Absorb bias, batch norm, activation and a residual
                    // Add while the convolution's output has no other user.
                    let mut residual: Option<String> = None;
                    while let Some((j, next)) = self.sole_consumer(&users, graph_outputs, &out) {
                        let plain = conv.activation == Activation::None && residual.is_none();
                        let other = Self::other_input(next, &out);
                        let absorbed = match next.op_type.as_str() {
                            "Add" => match other.map(|b| (b, self.const_f32(b))) {
                                Some((_, Ok((_, b))))
                                    if b.len() == conv.out_channels
                                        && conv.activation == Activation::None =>
                                {
                                    conv.bias.iter_mut().zip(b).for_each(|(x, y)| *x += y);
                                    true
                                }
                                // A residual computed before this convolution
                                // (or the graph input) can be added in its
                                // output pass.
                                Some((r, Err(_)))
                                    if residual.is_none()
                                        && producer.get(r).is_none_or(|&p| p < i) =>
                                {
                                    conv.residual = if conv.activation == Activation::None {
                                        Residual::BeforeActivation
                                    } else {
                                        Residual::AfterActivation
                                    };
                                    residual = Some(r.to_string());
                                    true
                                }
                                _ => false,
                            },
                            "BatchNormalization" if plain => {
                                let (scale, shift) = self.batch_norm(next)?;
                                let per = conv.weight.len() / conv.out_channels;
                                for c in 0..conv.out_channels {
                                    conv.weight[c * per..][..per]
                                        .iter_mut()
                                        .for_each(|w| *w *= scale[c]);
                                    conv.bias[c] = conv.bias[c] * scale[c] + shift[c];
                                }
                                true
                            }
                            "Relu" | "HardSwish" | "Gelu"
                                if conv.activation == Activation::None =>
                            {
                                conv.activation = match next.op_type.as_str() {
                                    "Relu" => Activation::Relu,
                                    "HardSwish" => Activation::HardSwish,
                                    _ => Activation::Gelu,
                                };
                                true
                            }
                            _ => false,
                        };
                        if !absorbed {
                            break;
                        }
                        out = self.fuse(j)?;
                    }
                    let mut inputs = vec![node.inputs[0].clone()];
                    inputs.extend(residual);
                    steps.push((Op::Conv(Arc::new(conv)), inputs, out));
                    continue;
                }
                "ConvTranspose" => {
                    let (dims, w) = self.const_f32(&node.inputs[1])?;
                    if dims.len() != 4 {
                        return unsupported("ConvTranspose weights must be 4-D");
                    }
                    let (cin, cout, kh, kw) = (dims[0], dims[1], dims[2], dims[3]);
                    let strides = node.ints("strides").unwrap_or(&[1, 1]);
                    let pads = node.ints("pads").unwrap_or(&[0, 0, 0, 0]);
                    if node.int("group").unwrap_or(1) != 1
                        || strides != [kh as i64, kw as i64]
                        || pads.iter().any(|&p| p != 0)
                        || node
                            .ints("output_padding")
                            .is_some_and(|p| p.iter().any(|&v| v != 0))
                    {
                        return unsupported(
                            "ConvTranspose other than kernel = stride without padding",
                        );
                    }
                    let bias = match node.inputs.get(2) {
                        Some(b) if !b.is_empty() => self.const_f32(b)?.1.to_vec(),
                        _ => vec![0.0; cout],
                    };
                    let mut conv = ConvTranspose2d::new(cin, cout, (kh, kw), w, bias);
                    // Absorb a bias Add, then an activation, while the output
                    // has a single user.
                    let mut out = out.clone();
                    while let Some((j, next)) = self.sole_consumer(&users, graph_outputs, &out) {
                        let bias = match Self::other_input(next, &out).map(|b| self.const_f32(b)) {
                            Some(Ok((_, b))) if next.op_type == "Add" && b.len() == cout => Some(b),
                            _ => None,
                        };
                        let activation = match next.op_type.as_str() {
                            "Relu" => Some(Activation::Relu),
                            "Sigmoid" => Some(Activation::Sigmoid),
                            _ => None,
                        };
                        match (bias, activation) {
                            (Some(b), _) if conv.activation == Activation::None => {
                                conv.bias.iter_mut().zip(b).for_each(|(x, y)| *x += y);
                            }
                            (_, Some(a)) if conv.activation == Activation::None => {
                                conv.activation = a;
                            }
                            _ => break,
                        }
                        out = self.fuse(j)?;
                    }
                    steps.push((
                        Op::ConvTranspose(Arc::new(conv)),
                        vec![node.inputs[0].clone()],
                        out,
                    ));
                    continue;
                }
                "Add" => Op::Binary(Binary::Add),
                "Sub" => Op::Binary(Binary::Sub),
                "Mul" => Op::Binary(Binary::Mul),
                "Div" => Op::Binary(Binary::Div),
                "Pow" => Op::Binary(Binary::Pow),
                "Relu" => Op::Activation(Activation::Relu),
                "HardSwish" => Op::Activation(Activation::HardSwish),
                "Gelu" => Op::Activation(Activation::Gelu),
                "HardSigmoid" => Op::Activation(Activation::HardSigmoid {
                    alpha: node.float("alpha").unwrap_or(0.2),
                    beta: node.float("beta").unwrap_or(0.5),
                }),
                "Sigmoid" => Op::Activation(Activation::Sigmoid),
                "Erf" => Op::Erf,
                "Sqrt" => Op::Sqrt,
                "MaxPool" | "AveragePool" => {
                    let k = pair(node.ints("kernel_shape"), "kernel_shape")?;
                    let s = node
                        .ints("strides")
                        .map(|s| pair(Some(s), "strides"))
                        .transpose()?
                        .unwrap_or((1, 1));
                    if node.int("ceil_mode").unwrap_or(0) != 0 {
                        return unsupported("pooling with ceil_mode");
                    }
                    let pads = match node.string("auto_pad") {
                        Some(b"SAME_UPPER") => {
                            // Only valid for stride 1: total padding k - 1, the extra at the end.
                            if s != (1, 1) {
                                return unsupported("SAME_UPPER pooling with a stride");
                            }
                            [
                                (k.0 - 1) / 2,
                                (k.1 - 1) / 2,
                                k.0 - 1 - (k.0 - 1) / 2,
                                k.1 - 1 - (k.1 - 1) / 2,
                            ]
                        }
                        Some(b"NOTSET") | Some(b"") | None => pads4(node.ints("pads"))?,
                        Some(other) => {
                            return unsupported(format!(
                                "auto_pad {}",
                                String::from_utf8_lossy(other)
                            ));
                        }
                    };
                    if node.op_type == "MaxPool" {
                        Op::MaxPool {
                            kernel: k,
                            stride: s,
                            pads,
                        }
                    } else {
                        if pads != [0; 4] {
                            return unsupported("AveragePool with padding");
                        }
                        Op::AveragePool {
                            kernel: k,
                            stride: s,
                        }
                    }
                }
                "GlobalAveragePool" => Op::GlobalAveragePool,
                "ReduceMean" => {
                    let axes = node.ints("axes").map(<[i64]>::to_vec).unwrap_or_default();
                    if axes.is_empty() {
                        return unsupported("ReduceMean without axes");
                    }
                    Op::ReduceMean {
                        axes,
                        keepdims: node.int("keepdims").unwrap_or(1) != 0,
                    }
                }
                "Resize" => {
                    if node.string("mode").unwrap_or(b"nearest") != b"nearest" {
                        return unsupported("Resize other than nearest");
                    }
                    let ctm = node
                        .string("coordinate_transformation_mode")
                        .unwrap_or(b"half_pixel");
                    let nearest = node.string("nearest_mode").unwrap_or(b"round_prefer_floor");
                    if ctm != b"asymmetric" || nearest != b"floor" {
                        return unsupported("Resize other than asymmetric/floor nearest");
                    }
                    Op::ResizeNearest
                }
                "Concat" => Op::Concat {
                    axis: node.int("axis").unwrap_or(0),
                },
                "BatchNormalization" => {
                    let (scale, shift) = self.batch_norm(&node)?;
                    Op::ChannelAffine { scale, shift }
                }
                "MatMul" => match self.const_f32(&node.inputs[1]) {
                    Ok((dims, w)) if dims.len() == 2 => {
                        let (k, n) = (dims[0], dims[1]);
                        let w = w.to_vec();
                        let mut bias = None;
                        let mut softmax = None;
                        // Absorb a bias Add, then a softmax over the last
                        // axis, while each output has a single user.
                        let mut out = out.clone();
                        if let Some((j, next)) = self.sole_consumer(&users, graph_outputs, &out)
                            && next.op_type == "Add"
                            && let Some(Ok((_, b))) =
                                Self::other_input(next, &out).map(|b| self.const_f32(b))
                            && b.len() == n
                        {
                            bias = Some(b.to_vec());
                            out = self.fuse(j)?;
                        }
                        if let Some((j, next)) = self.sole_consumer(&users, graph_outputs, &out)
                            && next.op_type == "Softmax"
                        {
                            softmax = Some(next.int("axis").unwrap_or(-1));
                            out = self.fuse(j)?;
                        }
                        let linear = Linear {
                            right: super::kernels::PackedRight::new(&w, bias.as_deref(), k, n),
                            softmax,
                        };
                        steps.push((
                            Op::Linear(Arc::new(linear)),
                            vec![node.inputs[0].clone()],
                            out,
                        ));
                        continue;
                    }
                    _ => Op::MatMul,
                },
                "Softmax" => Op::Softmax {
                    axis: node.int("axis").unwrap_or(-1),
                },
                "Reshape" => Op::Reshape,
                "Transpose" => Op::Transpose {
                    perm: node
                        .ints("perm")
                        .ok_or_else(|| GraphError::Unsupported("Transpose without perm".into()))?
                        .iter()
                        .map(|&p| p as usize)
                        .collect(),
                },
                "Squeeze" => Op::Squeeze {
                    axes: node.ints("axes").map(<[i64]>::to_vec).unwrap_or_default(),
                },
                "Unsqueeze" => Op::Unsqueeze {
                    axes: node.ints("axes").map(<[i64]>::to_vec).unwrap_or_default(),
                },
                "Slice" => Op::Slice,
                "Shape" => Op::Shape,
                "Cast" => Op::Cast {
                    // FLOAT, FLOAT16, DOUBLE, BFLOAT16.
                    to_float: matches!(node.int("to"), Some(1 | 10 | 11 | 16)),
                },
                "Clip" => {
                    // Opset 11 on: bounds as (optional) constant inputs; before: attributes.
                    let bound = |k: usize, attr: &str, default: f32| -> Result<f32, GraphError> {
                        match node.inputs.get(k).filter(|s| !s.is_empty()) {
                            Some(name) => self.scalar(name).ok_or_else(|| {
                                GraphError::Unsupported("Clip bounds must be constants".into())
                            }),
                            None => Ok(node.float(attr).unwrap_or(default)),
                        }
                    };
                    Op::Clip {
                        min: bound(1, "min", f32::NEG_INFINITY)?,
                        max: bound(2, "max", f32::INFINITY)?,
                    }
                }
                "Split" => {
                    // One `Narrow` step per output.
                    let axis = node.int("axis").unwrap_or(0);
                    let sizes: Option<Vec<usize>> = match node.inputs.get(1) {
                        Some(name) if !name.is_empty() => match self.constants.get(name) {
                            Some(onnx::Tensor {
                                data: TensorData::I64(v),
                                ..
                            }) => Some(v.iter().map(|&x| x.max(0) as usize).collect()),
                            _ => return unsupported("Split sizes must be a constant"),
                        },
                        _ => node
                            .ints("split")
                            .map(|v| v.iter().map(|&x| x.max(0) as usize).collect()),
                    };
                    let Some(sizes) = sizes else {
                        return unsupported("Split into equal parts of an unknown size");
                    };
                    if sizes.len() != node.outputs.len() {
                        return unsupported("Split sizes do not match its outputs");
                    }
                    let mut start = 0;
                    for (len, out) in sizes.into_iter().zip(&node.outputs) {
                        steps.push((
                            Op::Narrow { axis, start, len },
                            vec![node.inputs[0].clone()],
                            out.clone(),
                        ));
                        start += len;
                    }
                    continue;
                }
                other => return unsupported(format!("operator {other} is not supported")),
            };
            let inputs = node
                .inputs
                .iter()
                .filter(|s| !s.is_empty())
                .cloned()
                .collect();
            steps.push((op, inputs, out));
        }
        Ok(steps)
    }

    fn batch_norm(&self, node: &Node) -> Result<(Vec<f32>, Vec<f32>), GraphError> {
        let eps = node.float("epsilon").unwrap_or(1e-5);
        let get = |i: usize| -> Result<&[f32], GraphError> {
            let name = node.inputs.get(i).ok_or_else(|| {
                GraphError::Unsupported("BatchNormalization input missing".into())
            })?;
            Ok(self.const_f32(name)?.1)
        };
        let (gamma, beta, mean, var) = (get(1)?, get(2)?, get(3)?, get(4)?);
        let scale: Vec<f32> = gamma
            .iter()
            .zip(var)
            .map(|(g, v)| g / (v + eps).sqrt())
            .collect();
        let shift = beta
            .iter()
            .zip(mean)
            .zip(&scale)
            .map(|((b, m), s)| b - m * s)
            .collect();
        Ok((scale, shift))
    }

    fn conv(&self, node: &Node) -> Result<Conv2d, GraphError> {
        let (dims, w) = self.const_f32(&node.inputs[1])?;
        if dims.len() != 4 {
            return unsupported("only 2-D convolutions are supported");
        }
        let (cout, cin_g, kh, kw) = (dims[0], dims[1], dims[2], dims[3]);
        let groups = node.int("group").unwrap_or(1).max(1) as usize;
        if node
            .ints("dilations")
            .is_some_and(|d| d.iter().any(|&v| v != 1))
        {
            return unsupported("dilated convolutions");
        }
        let stride = node
            .ints("strides")
            .map(|s| pair(Some(s), "strides"))
            .transpose()?
            .unwrap_or((1, 1));
        let pads = match node.string("auto_pad") {
            Some(b"SAME_UPPER") | Some(b"SAME_LOWER") => {
                if stride != (1, 1) {
                    return unsupported("SAME padding with a stride");
                }
                let (th, tw) = (kh - 1, kw - 1);
                if node.string("auto_pad") == Some(b"SAME_UPPER") {
                    [th / 2, tw / 2, th - th / 2, tw - tw / 2]
                } else {
                    [th - th / 2, tw - tw / 2, th / 2, tw / 2]
                }
            }
            Some(b"VALID") => [0; 4],
            _ => pads4(node.ints("pads"))?,
        };
        let bias = match node.inputs.get(2) {
            Some(b) if !b.is_empty() => self.const_f32(b)?.1.to_vec(),
            _ => vec![0.0; cout],
        };
        if groups == 0 || cout % groups != 0 || bias.len() != cout {
            return unsupported("inconsistent convolution weights");
        }
        Ok(Conv2d {
            out_channels: cout,
            in_channels: cin_g * groups,
            kernel: (kh, kw),
            stride,
            pads,
            groups,
            weight: w.to_vec(),
            bias,
            activation: Activation::None,
            residual: Residual::default(),
            packed: Default::default(),
        })
    }

    fn finish(
        self,
        steps: Vec<(Op, Vec<String>, String)>,
        inputs: &[String],
        outputs: &[String],
        metadata: HashMap<String, String>,
    ) -> Result<Graph, GraphError> {
        let mut ids: HashMap<String, usize> = HashMap::new();
        let mut id = |name: &str| -> usize {
            let n = ids.len();
            *ids.entry(name.to_string()).or_insert(n)
        };
        let input = id(inputs
            .first()
            .ok_or_else(|| GraphError::Unsupported("the graph has no input".into()))?);
        if outputs.is_empty() {
            return unsupported("the graph has no output");
        }
        let outputs: Vec<usize> = outputs.iter().map(|o| id(o)).collect();
        let mut compiled: Vec<Step> = steps
            .into_iter()
            .map(|(op, ins, out)| Step {
                op,
                inputs: ins.iter().map(|s| id(s)).collect(),
                output: id(&out),
                free: Vec::new(),
                into: None,
            })
            .collect();
        let mut constants = Vec::new();
        let device = Device::Cpu;
        for (name, t) in &self.constants {
            if let Some(&slot) = ids.get(name) {
                let value = match &t.data {
                    TensorData::F32(v) => {
                        Value::F(Tensor::from_slice(v, t.dims.as_slice(), &device)?)
                    }
                    TensorData::I64(v) => Value::I(v.clone(), t.dims.clone()),
                };
                constants.push((slot, value));
            }
        }
        let is_const: std::collections::HashSet<usize> =
            constants.iter().map(|(s, _)| *s).collect();
        let pinned: std::collections::HashSet<usize> = is_const
            .iter()
            .copied()
            .chain(outputs.iter().copied())
            .chain([input])
            .collect();
        fuse_mul_add(&mut compiled, &pinned);
        concatenate_in_place(&mut compiled, &pinned);
        // Free each computed value after its last use.
        let mut last_use: HashMap<usize, usize> = HashMap::new();
        for (i, step) in compiled.iter().enumerate() {
            for &s in &step.inputs {
                last_use.insert(s, i);
            }
        }
        for (slot, step_index) in last_use {
            if !outputs.contains(&slot) && !is_const.contains(&slot) {
                compiled[step_index].free.push(slot);
            }
        }
        Ok(Graph {
            steps: compiled,
            constants,
            slots: ids.len(),
            input,
            outputs,
            metadata,
        })
    }
}

/// Who computes each slot and how many steps read it: what the rewrites below need to know
/// that a value is private to one consumer.
struct Flow<'a> {
    uses: HashMap<usize, usize>,
    producer: HashMap<usize, usize>,
    /// The graph's input and outputs and the constants: never private.
    pinned: &'a std::collections::HashSet<usize>,
}

impl<'a> Flow<'a> {
    fn new(steps: &[Step], pinned: &'a std::collections::HashSet<usize>) -> Self {
        let mut uses: HashMap<usize, usize> = HashMap::new();
        let mut producer = HashMap::new();
        for (i, step) in steps.iter().enumerate() {
            for &s in &step.inputs {
                *uses.entry(s).or_default() += 1;
            }
            producer.insert(step.output, i);
        }
        Self {
            uses,
            producer,
            pinned,
        }
    }

    /// The step computing `slot` when exactly one step reads it and it is not pinned.
    fn sole_use(&self, slot: usize) -> Option<usize> {
        (self.uses.get(&slot) == Some(&1) && !self.pinned.contains(&slot))
            .then(|| self.producer.get(&slot).copied())
            .flatten()
    }
}

/// Turns each `Add` of a `Mul`'s product that nothing else uses into one [`Op::MulAdd`] step,
/// so that the product is not a tensor of its own beside the sum.
fn fuse_mul_add(steps: &mut Vec<Step>, pinned: &std::collections::HashSet<usize>) {
    let flow = Flow::new(steps, pinned);
    let mut fused_away = std::collections::HashSet::new();
    for i in 0..steps.len() {
        if !matches!(steps[i].op, Op::Binary(Binary::Add)) || steps[i].inputs.len() != 2 {
            continue;
        }
        for k in 0..2 {
            let product = steps[i].inputs[k];
            let Some(p) = flow.sole_use(product) else {
                continue;
            };
            if !fused_away.contains(&p)
                && matches!(steps[p].op, Op::Binary(Binary::Mul))
                && steps[p].inputs.len() == 2
            {
                let other = steps[i].inputs[1 - k];
                let factors = steps[p].inputs.clone();
                steps[i].op = Op::MulAdd;
                steps[i].inputs = vec![factors[0], factors[1], other];
                fused_away.insert(p);
                break;
            }
        }
    }
    let mut index = 0;
    steps.retain(|_| {
        index += 1;
        !fused_away.contains(&(index - 1))
    });
}

/// Marks the parts of channel concatenations that can be written in place ([`IntoConcat`]):
/// every part made by a convolution or a max pool (whose channel count is then known) and used
/// by the concatenation alone.
fn concatenate_in_place(steps: &mut [Step], pinned: &std::collections::HashSet<usize>) {
    let flow = Flow::new(steps, pinned);
    // The channels of a slot, where the operators say it without running.
    let channels = |slot: usize| -> Option<usize> {
        let mut slot = slot;
        loop {
            let step = &steps[*flow.producer.get(&slot)?];
            match &step.op {
                Op::Conv(conv) => return Some(conv.out_channels),
                Op::MaxPool { .. } => slot = *step.inputs.first()?,
                _ => return None,
            }
        }
    };
    let mut marks = Vec::new();
    for (j, step) in steps.iter().enumerate() {
        if !matches!(step.op, Op::Concat { axis: 1 }) || step.inputs.len() < 2 {
            continue;
        }
        let mut parts = Vec::new();
        let mut channel = 0;
        for &slot in &step.inputs {
            let Some(p) = flow.sole_use(slot) else { break };
            let usable = matches!(steps[p].op, Op::Conv(_) | Op::MaxPool { .. });
            let Some(c) = channels(slot).filter(|_| usable) else {
                break;
            };
            parts.push((p, channel, c));
            channel += c;
        }
        if parts.len() == step.inputs.len() {
            for (p, first, part_channels) in parts {
                marks.push((
                    p,
                    IntoConcat {
                        concat: j,
                        channel: first,
                        part_channels,
                        channels: channel,
                        parts: step.inputs.len(),
                    },
                ));
            }
        }
    }
    for (p, into) in marks {
        steps[p].into = Some(into);
    }
}

/// The one node that uses `name`, if exactly one does.
fn sole_user(users: &HashMap<String, Vec<usize>>, name: &str) -> Option<usize> {
    match users.get(name).map(Vec::as_slice) {
        Some([one]) => Some(*one),
        _ => None,
    }
}

fn pair(v: Option<&[i64]>, what: &str) -> Result<(usize, usize), GraphError> {
    match v {
        Some([a, b]) if *a > 0 && *b > 0 => Ok((*a as usize, *b as usize)),
        _ => unsupported(format!("{what} must hold two positive values")),
    }
}

fn pads4(v: Option<&[i64]>) -> Result<[usize; 4], GraphError> {
    match v {
        None => Ok([0; 4]),
        // ONNX order: begins (top, left) then ends (bottom, right).
        Some([t, l, b, r]) if *t >= 0 && *l >= 0 && *b >= 0 && *r >= 0 => {
            Ok([*t as usize, *l as usize, *b as usize, *r as usize])
        }
        _ => unsupported("pads must hold four non-negative values"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(dims: &[usize], seed: usize) -> Value {
        let n: usize = dims.iter().product();
        let data: Vec<f32> = (0..n)
            .map(|i| ((i * 7919 + seed * 104_729) % 2003) as f32 / 97.0 - 10.0)
            .collect();
        Value::F(Tensor::from_vec(data, dims, &Device::Cpu).unwrap())
    }

    fn bits(v: &Value) -> (Vec<usize>, Vec<u32>) {
        let t = v.tensor().unwrap();
        let values: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        (
            t.dims().to_vec(),
            values.into_iter().map(f32::to_bits).collect(),
        )
    }

    /// The fused `x * y + z` gives the bits of the `Mul` then the `Add`, for a per-channel
    /// scale on either side, a scalar, a same-shape product and an `Add` that broadcasts (which
    /// runs the ordinary way).
    #[test]
    fn mul_add_matches_mul_then_add() {
        let big = [2, 5, 33, 41];
        for (x, y, z) in [
            (&big[..], &[1, 5, 1, 1][..], &big[..]),
            (&[1, 5, 1, 1][..], &big[..], &big[..]),
            (&big[..], &[1][..], &big[..]),
            (&big[..], &big[..], &big[..]),
            (&big[..], &[1, 5, 1, 1][..], &[1, 5, 1, 1][..]),
        ] {
            let (x, y, z) = (tensor(x, 1), tensor(y, 2), tensor(z, 3));
            let fused = execute(&Op::MulAdd, &[&x, &y, &z]).unwrap();
            let product = execute(&Op::Binary(Binary::Mul), &[&x, &y]).unwrap();
            let ordinary = execute(&Op::Binary(Binary::Add), &[&z, &product]).unwrap();
            assert_eq!(bits(&fused), bits(&ordinary));
        }
    }
}
