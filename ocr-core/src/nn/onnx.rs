//! A reader for the part of the ONNX format the engine needs: the graph's
//! nodes, their attributes, the initializers (weights) and the model's
//! metadata. ONNX files are Protocol Buffers; this is a small wire-format
//! decoder for the handful of messages involved, so that the upstream model
//! files load unchanged without a protobuf code generator.

use std::collections::HashMap;

/// An error reading an ONNX file.
#[derive(Debug, thiserror::Error)]
#[error("onnx: {0}")]
pub struct OnnxError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, OnnxError> {
    Err(OnnxError(msg.into()))
}

/// The element type of a tensor (ONNX `TensorProto.DataType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    Float,
    Int64,
    Int32,
    Bool,
    Other(i64),
}

impl DataType {
    fn from_code(code: i64) -> Self {
        match code {
            1 => Self::Float,
            6 => Self::Int32,
            7 => Self::Int64,
            9 => Self::Bool,
            other => Self::Other(other),
        }
    }
}

/// A constant tensor: an initializer or a `Constant` node's value.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

/// A named constant tensor with its shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub name: String,
    pub dims: Vec<usize>,
    pub data: TensorData,
}

/// A node attribute.
#[derive(Debug, Clone, PartialEq)]
pub enum Attribute {
    Float(f32),
    Int(i64),
    String(Vec<u8>),
    Tensor(Tensor),
    Floats(Vec<f32>),
    Ints(Vec<i64>),
}

/// One operation of the graph.
#[derive(Debug, Clone, Default)]
pub struct Node {
    pub op_type: String,
    pub name: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub attributes: HashMap<String, Attribute>,
}

impl Node {
    pub fn int(&self, name: &str) -> Option<i64> {
        match self.attributes.get(name) {
            Some(Attribute::Int(v)) => Some(*v),
            _ => None,
        }
    }

    pub fn float(&self, name: &str) -> Option<f32> {
        match self.attributes.get(name) {
            Some(Attribute::Float(v)) => Some(*v),
            _ => None,
        }
    }

    pub fn ints(&self, name: &str) -> Option<&[i64]> {
        match self.attributes.get(name) {
            Some(Attribute::Ints(v)) => Some(v),
            _ => None,
        }
    }

    pub fn string(&self, name: &str) -> Option<&[u8]> {
        match self.attributes.get(name) {
            Some(Attribute::String(v)) => Some(v),
            _ => None,
        }
    }
}

/// A decoded ONNX model.
#[derive(Debug, Clone, Default)]
pub struct Model {
    pub opset: i64,
    pub nodes: Vec<Node>,
    pub initializers: Vec<Tensor>,
    /// Names of the graph inputs that are not initializers.
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub metadata: HashMap<String, String>,
}

impl Model {
    /// Decodes an ONNX file.
    pub fn parse(bytes: &[u8]) -> Result<Self, OnnxError> {
        let mut model = Model::default();
        let mut graph: Option<&[u8]> = None;
        for field in Fields::new(bytes) {
            let (number, value) = field?;
            match (number, value) {
                (7, Value::Bytes(b)) => graph = Some(b),
                (8, Value::Bytes(b)) => {
                    // OperatorSetIdProto { domain = 1, version = 2 }
                    let mut domain = Vec::new();
                    let mut version = 0;
                    for f in Fields::new(b) {
                        match f? {
                            (1, Value::Bytes(d)) => domain = d.to_vec(),
                            (2, Value::Varint(v)) => version = v as i64,
                            _ => {}
                        }
                    }
                    if domain.is_empty() || domain == b"ai.onnx" {
                        model.opset = version;
                    }
                }
                (14, Value::Bytes(b)) => {
                    let mut key = String::new();
                    let mut val = String::new();
                    for f in Fields::new(b) {
                        match f? {
                            (1, Value::Bytes(k)) => key = utf8(k)?,
                            (2, Value::Bytes(v)) => val = utf8(v)?,
                            _ => {}
                        }
                    }
                    model.metadata.insert(key, val);
                }
                _ => {}
            }
        }
        let Some(graph) = graph else {
            return err("the file has no graph");
        };
        let mut graph_inputs = Vec::new();
        for field in Fields::new(graph) {
            match field? {
                (1, Value::Bytes(b)) => model.nodes.push(parse_node(b)?),
                (5, Value::Bytes(b)) => model.initializers.push(parse_tensor(b)?),
                (11, Value::Bytes(b)) => graph_inputs.push(value_info_name(b)?),
                (12, Value::Bytes(b)) => model.outputs.push(value_info_name(b)?),
                _ => {}
            }
        }
        let weights: std::collections::HashSet<&str> =
            model.initializers.iter().map(|t| t.name.as_str()).collect();
        model.inputs = graph_inputs
            .into_iter()
            .filter(|name| !weights.contains(name.as_str()))
            .collect();
        Ok(model)
    }
}

fn utf8(b: &[u8]) -> Result<String, OnnxError> {
    String::from_utf8(b.to_vec()).or_else(|_| err("a string is not UTF-8"))
}

fn value_info_name(b: &[u8]) -> Result<String, OnnxError> {
    for f in Fields::new(b) {
        if let (1, Value::Bytes(name)) = f? {
            return utf8(name);
        }
    }
    err("a graph input or output has no name")
}

fn parse_node(b: &[u8]) -> Result<Node, OnnxError> {
    let mut node = Node::default();
    for f in Fields::new(b) {
        match f? {
            (1, Value::Bytes(s)) => node.inputs.push(utf8(s)?),
            (2, Value::Bytes(s)) => node.outputs.push(utf8(s)?),
            (3, Value::Bytes(s)) => node.name = utf8(s)?,
            (4, Value::Bytes(s)) => node.op_type = utf8(s)?,
            (5, Value::Bytes(s)) => {
                let (name, attr) = parse_attribute(s)?;
                if let Some(attr) = attr {
                    node.attributes.insert(name, attr);
                }
            }
            (7, Value::Bytes(s)) if !s.is_empty() && s != b"ai.onnx" => {
                return err(format!(
                    "operator domain {:?} is not supported",
                    String::from_utf8_lossy(s)
                ));
            }
            _ => {}
        }
    }
    Ok(node)
}

fn parse_attribute(b: &[u8]) -> Result<(String, Option<Attribute>), OnnxError> {
    let mut name = String::new();
    let mut kind = 0u64;
    let (mut f, mut i, mut s, mut t) = (None, None, None, None);
    let mut floats = Vec::new();
    let mut ints = Vec::new();
    for field in Fields::new(b) {
        match field? {
            (1, Value::Bytes(v)) => name = utf8(v)?,
            (2, Value::Fixed32(v)) => f = Some(f32::from_bits(v)),
            (3, Value::Varint(v)) => i = Some(v as i64),
            (4, Value::Bytes(v)) => s = Some(v.to_vec()),
            (5, Value::Bytes(v)) => t = Some(parse_tensor(v)?),
            (7, Value::Fixed32(v)) => floats.push(f32::from_bits(v)),
            (7, Value::Bytes(v)) => floats.extend(packed_f32(v)?),
            (8, Value::Varint(v)) => ints.push(v as i64),
            (8, Value::Bytes(v)) => ints.extend(packed_varints(v)?),
            (20, Value::Varint(v)) => kind = v,
            _ => {}
        }
    }
    // AttributeType: FLOAT 1, INT 2, STRING 3, TENSOR 4, FLOATS 6, INTS 7.
    let attr = match kind {
        1 => f.map(Attribute::Float).or(Some(Attribute::Float(0.0))),
        2 => i.map(Attribute::Int).or(Some(Attribute::Int(0))),
        3 => s
            .map(Attribute::String)
            .or(Some(Attribute::String(Vec::new()))),
        4 => t.map(Attribute::Tensor),
        6 => Some(Attribute::Floats(floats)),
        7 => Some(Attribute::Ints(ints)),
        _ => None,
    };
    Ok((name, attr))
}

fn parse_tensor(b: &[u8]) -> Result<Tensor, OnnxError> {
    let mut name = String::new();
    let mut dims = Vec::new();
    let mut dtype = DataType::Other(0);
    let mut raw: Option<&[u8]> = None;
    let mut floats = Vec::new();
    let mut int64s = Vec::new();
    let mut int32s = Vec::new();
    for f in Fields::new(b) {
        match f? {
            (1, Value::Varint(v)) => dims.push(v as i64),
            (1, Value::Bytes(v)) => dims.extend(packed_varints(v)?),
            (2, Value::Varint(v)) => dtype = DataType::from_code(v as i64),
            (4, Value::Fixed32(v)) => floats.push(f32::from_bits(v)),
            (4, Value::Bytes(v)) => floats.extend(packed_f32(v)?),
            (5, Value::Varint(v)) => int32s.push(v as i64 as i32 as i64),
            (5, Value::Bytes(v)) => {
                int32s.extend(packed_varints(v)?.into_iter().map(|x| x as i32 as i64))
            }
            (7, Value::Varint(v)) => int64s.push(v as i64),
            (7, Value::Bytes(v)) => int64s.extend(packed_varints(v)?),
            (8, Value::Bytes(v)) => name = utf8(v)?,
            (9, Value::Bytes(v)) => raw = Some(v),
            (14, Value::Varint(_)) => {
                return err(format!("tensor {name}: external data is not supported"));
            }
            _ => {}
        }
    }
    let dims: Vec<usize> = dims
        .into_iter()
        .map(|d| usize::try_from(d).or_else(|_| err("negative tensor dimension")))
        .collect::<Result<_, _>>()?;
    let count: usize = dims.iter().product();
    let data = match dtype {
        DataType::Float => {
            let values = match raw {
                Some(raw) => packed_f32(raw)?,
                None => floats,
            };
            TensorData::F32(values)
        }
        DataType::Int64 => TensorData::I64(match raw {
            Some(raw) => le_words::<8>(raw, &format!("tensor {name}: raw data"))?
                .map(i64::from_le_bytes)
                .collect(),
            None => int64s,
        }),
        DataType::Int32 => TensorData::I64(match raw {
            Some(raw) => le_words::<4>(raw, &format!("tensor {name}: raw data"))?
                .map(|w| i64::from(i32::from_le_bytes(w)))
                .collect(),
            None => int32s,
        }),
        // Booleans are one byte each in raw data, else in the int32 field.
        DataType::Bool => TensorData::I64(match raw {
            Some(raw) => raw.iter().map(|&b| i64::from(b != 0)).collect(),
            None => int32s,
        }),
        DataType::Other(code) => {
            return err(format!(
                "tensor {name}: element type {code} is not supported"
            ));
        }
    };
    let len = match &data {
        TensorData::F32(v) => v.len(),
        TensorData::I64(v) => v.len(),
    };
    if len != count {
        return err(format!("tensor {name}: {len} values for shape {dims:?}"));
    }
    Ok(Tensor { name, dims, data })
}

/// The little-endian `N`-byte words of `raw`; `what` names it in the error.
fn le_words<const N: usize>(
    raw: &[u8],
    what: &str,
) -> Result<impl Iterator<Item = [u8; N]>, OnnxError> {
    if !raw.len().is_multiple_of(N) {
        return err(format!("{what} has a ragged length"));
    }
    Ok(raw.chunks_exact(N).map(|c| {
        let mut word = [0u8; N];
        word.copy_from_slice(c);
        word
    }))
}

fn packed_f32(b: &[u8]) -> Result<Vec<f32>, OnnxError> {
    Ok(le_words::<4>(b, "float data")?
        .map(f32::from_le_bytes)
        .collect())
}

fn packed_varints(mut b: &[u8]) -> Result<Vec<i64>, OnnxError> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let (v, rest) = varint(b)?;
        out.push(v as i64);
        b = rest;
    }
    Ok(out)
}

fn varint(b: &[u8]) -> Result<(u64, &[u8]), OnnxError> {
    let mut value = 0u64;
    for (i, &byte) in b.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((value, &b[i + 1..]));
        }
    }
    err("truncated or overlong varint")
}

/// A protobuf field value, by wire type.
#[derive(Debug)]
enum Value<'a> {
    Varint(u64),
    Fixed64,
    Bytes(&'a [u8]),
    Fixed32(u32),
}

/// Iterates over the fields of one protobuf message.
struct Fields<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> Fields<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self {
            rest: bytes,
            failed: false,
        }
    }

    fn next_field(&mut self) -> Result<(u64, Value<'a>), OnnxError> {
        let (key, rest) = varint(self.rest)?;
        let number = key >> 3;
        let (value, rest) = match key & 7 {
            0 => {
                let (v, rest) = varint(rest)?;
                (Value::Varint(v), rest)
            }
            1 => {
                let Some((bytes, rest)) = rest.split_first_chunk::<8>() else {
                    return err("truncated fixed64 field");
                };
                {
                    let _ = bytes;
                    (Value::Fixed64, rest)
                }
            }
            2 => {
                let (len, rest) = varint(rest)?;
                let len = usize::try_from(len).or_else(|_| err("field length overflows"))?;
                if len > rest.len() {
                    return err("truncated length-delimited field");
                }
                let (bytes, rest) = rest.split_at(len);
                (Value::Bytes(bytes), rest)
            }
            5 => {
                let Some((bytes, rest)) = rest.split_first_chunk::<4>() else {
                    return err("truncated fixed32 field");
                };
                (Value::Fixed32(u32::from_le_bytes(*bytes)), rest)
            }
            other => return err(format!("unsupported wire type {other}")),
        };
        self.rest = rest;
        Ok((number, value))
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u64, Value<'a>), OnnxError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        let field = self.next_field();
        self.failed = field.is_err();
        Some(field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_decode() {
        assert_eq!(varint(&[0x96, 0x01]).unwrap().0, 150);
        assert!(varint(&[0x80]).is_err());
    }

    #[test]
    fn truncated_input_is_an_error_not_a_panic() {
        // A graph field claiming more bytes than follow.
        assert!(Model::parse(&[0x3a, 0x10, 0x01]).is_err());
        assert!(Model::parse(&[]).is_err());
        assert!(Model::parse(b"not a model at all").is_err());
    }
}
