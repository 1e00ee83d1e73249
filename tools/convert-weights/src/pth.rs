//! PyTorch checkpoint reader: `torch.save` files of a state dict, both the zip format (PyTorch
//! ≥ 1.6: `archive/data.pkl` plus one file per storage) and the legacy format (a sequence of
//! pickles followed by raw storages, as torchvision's `vgg16-397923af.pth`).
//!
//! No maintained Rust crate executes torch pickles (serde-pickle has no persistent ids or
//! object reconstruction), so this is a small pickle interpreter restricted to what
//! `torch.save(state_dict)` emits. It never executes anything: globals are just names, and the
//! only reconstructions understood are `OrderedDict` and `torch._utils._rebuild_tensor(_v2)`.
//! Work and memory are bounded, so hostile files fail with an error instead of exhausting
//! the machine.

use std::collections::HashMap;
use std::io::Read;

use neural_style_weights::{clip, WeightsError};

use crate::source::{read_dict, RawTensor, Source, TensorDict, MAX_SOURCE_BYTES};

#[derive(Clone, Debug)]
enum Value {
    None,
    Bool,
    Int(i64),
    Float,
    Str(String),
    Bytes,
    List(Vec<Value>),
    Tuple(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Global(String, String),
    /// A persistent id: for torch, a tuple naming a storage.
    Persistent(Box<Value>),
    Tensor(TensorRef),
    /// The result of a reconstruction we do not understand; harmless unless it is needed.
    Opaque,
    Mark,
}

#[derive(Clone, Debug)]
struct TensorRef {
    storage_key: String,
    storage_type: String,
    offset: usize,
    shape: Vec<usize>,
    stride: Vec<usize>,
}

/// Upper bounds on interpreter work; a VGG16 state dict needs a few thousand of each.
const MAX_OPS: usize = 10_000_000;
const MAX_NODES: usize = 5_000_000;

struct Vm<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    memo: HashMap<u32, Value>,
    nodes: usize,
}

fn bad(msg: impl Into<String>) -> WeightsError {
    WeightsError::corrupt(format!("PyTorch pickle: {}", msg.into()))
}

fn count_nodes(v: &Value) -> usize {
    match v {
        Value::List(x) | Value::Tuple(x) => 1 + x.iter().map(count_nodes).sum::<usize>(),
        Value::Dict(x) => 1 + x.iter().map(|(k, v)| count_nodes(k) + count_nodes(v)).sum::<usize>(),
        Value::Persistent(x) => 1 + count_nodes(x),
        _ => 1,
    }
}

impl<'a> Vm<'a> {
    fn new(data: &'a [u8], pos: usize) -> Self {
        Vm { data, pos, stack: Vec::new(), memo: HashMap::new(), nodes: 0 }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WeightsError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len()).ok_or_else(|| bad("truncated"))?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, WeightsError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, WeightsError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, WeightsError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, WeightsError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn line(&mut self) -> Result<String, WeightsError> {
        let rest = &self.data[self.pos..];
        let n = rest.iter().position(|&c| c == b'\n').ok_or_else(|| bad("unterminated text"))?;
        let s = String::from_utf8_lossy(&rest[..n]).into_owned();
        self.pos += n + 1;
        Ok(s)
    }
    fn text(&mut self, n: usize) -> Result<Value, WeightsError> {
        let b = self.take(n)?;
        Ok(Value::Str(String::from_utf8_lossy(b).into_owned()))
    }
    fn pop(&mut self) -> Result<Value, WeightsError> {
        self.stack.pop().ok_or_else(|| bad("stack underflow"))
    }
    fn pop_mark(&mut self) -> Result<Vec<Value>, WeightsError> {
        let m = self.stack.iter().rposition(|v| matches!(v, Value::Mark)).ok_or_else(|| bad("missing MARK"))?;
        let items = self.stack.split_off(m + 1);
        self.stack.pop();
        Ok(items)
    }
    fn push(&mut self, v: Value) -> Result<(), WeightsError> {
        self.nodes += count_nodes(&v);
        if self.nodes > MAX_NODES || self.stack.len() > MAX_NODES {
            return Err(bad("too large"));
        }
        self.stack.push(v);
        Ok(())
    }
    fn top_mut(&mut self) -> Result<&mut Value, WeightsError> {
        self.stack.last_mut().ok_or_else(|| bad("stack underflow"))
    }
    fn memo_put(&mut self, k: u32) -> Result<(), WeightsError> {
        let v = self.stack.last().ok_or_else(|| bad("stack underflow"))?.clone();
        self.memo.insert(k, v);
        Ok(())
    }
    fn memo_get(&mut self, k: u32) -> Result<(), WeightsError> {
        let v = self.memo.get(&k).cloned().ok_or_else(|| bad("unknown memo key"))?;
        self.push(v)
    }

    /// Runs one pickle up to STOP and returns its value.
    fn run(&mut self) -> Result<Value, WeightsError> {
        for _ in 0..MAX_OPS {
            let op = self.u8()?;
            match op {
                0x80 => {
                    self.u8()?; // PROTO
                }
                0x95 => {
                    self.u64()?; // FRAME: a size hint only
                }
                b'.' => return self.pop(),
                b'}' => self.push(Value::Dict(Vec::new()))?,
                b']' => self.push(Value::List(Vec::new()))?,
                b')' => self.push(Value::Tuple(Vec::new()))?,
                b'(' => self.stack.push(Value::Mark),
                b'N' => self.push(Value::None)?,
                0x88 => self.push(Value::Bool)?,
                0x89 => self.push(Value::Bool)?,
                b'J' => {
                    let v = self.u32()? as i32 as i64;
                    self.push(Value::Int(v))?
                }
                b'K' => {
                    let v = self.u8()? as i64;
                    self.push(Value::Int(v))?
                }
                b'M' => {
                    let v = self.u16()? as i64;
                    self.push(Value::Int(v))?
                }
                0x8a => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    // Only values that fit an i64 matter (sizes, offsets); others become 0.
                    let v = if n <= 8 && n > 0 {
                        let mut buf = if b[n - 1] & 0x80 != 0 { [0xff; 8] } else { [0; 8] };
                        buf[..n].copy_from_slice(b);
                        i64::from_le_bytes(buf)
                    } else {
                        0
                    };
                    self.push(Value::Int(v))?
                }
                b'G' => {
                    self.take(8)?;
                    self.push(Value::Float)?
                }
                b'X' => {
                    let n = self.u32()? as usize;
                    let v = self.text(n)?;
                    self.push(v)?
                }
                0x8c => {
                    let n = self.u8()? as usize;
                    let v = self.text(n)?;
                    self.push(v)?
                }
                0x8d => {
                    let n = usize::try_from(self.u64()?).map_err(|_| bad("string too long"))?;
                    let v = self.text(n)?;
                    self.push(v)?
                }
                b'U' => {
                    let n = self.u8()? as usize;
                    let v = self.text(n)?;
                    self.push(v)?
                }
                b'T' => {
                    let n = self.u32()? as usize;
                    let v = self.text(n)?;
                    self.push(v)?
                }
                b'C' => {
                    let n = self.u8()? as usize;
                    self.take(n)?;
                    self.push(Value::Bytes)?
                }
                b'B' => {
                    let n = self.u32()? as usize;
                    self.take(n)?;
                    self.push(Value::Bytes)?
                }
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Value::Tuple(items))?
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n {
                        return Err(bad("stack underflow"));
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    if items.iter().any(|v| matches!(v, Value::Mark)) {
                        return Err(bad("MARK inside a tuple"));
                    }
                    self.push(Value::Tuple(items))?
                }
                b'q' => {
                    let k = self.u8()? as u32;
                    self.memo_put(k)?
                }
                b'r' => {
                    let k = self.u32()?;
                    self.memo_put(k)?
                }
                0x94 => {
                    let k = self.memo.len() as u32;
                    self.memo_put(k)?
                }
                b'h' => {
                    let k = self.u8()? as u32;
                    self.memo_get(k)?
                }
                b'j' => {
                    let k = self.u32()?;
                    self.memo_get(k)?
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    match self.top_mut()? {
                        Value::Dict(d) => d.push((k, v)),
                        _ => return Err(bad("SETITEM on a non-dict")),
                    }
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    if items.len() % 2 != 0 {
                        return Err(bad("odd SETITEMS"));
                    }
                    let mut it = items.into_iter();
                    let mut pairs = Vec::new();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        pairs.push((k, v));
                    }
                    match self.top_mut()? {
                        Value::Dict(d) => d.extend(pairs),
                        _ => return Err(bad("SETITEMS on a non-dict")),
                    }
                }
                b'a' => {
                    let v = self.pop()?;
                    match self.top_mut()? {
                        Value::List(l) => l.push(v),
                        _ => return Err(bad("APPEND on a non-list")),
                    }
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    match self.top_mut()? {
                        Value::List(l) => l.extend(items),
                        _ => return Err(bad("APPENDS on a non-list")),
                    }
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.push(Value::Global(module, name))?
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(m), Value::Str(n)) => self.push(Value::Global(m, n))?,
                        _ => return Err(bad("STACK_GLOBAL of non-strings")),
                    }
                }
                b'Q' => {
                    let pid = self.pop()?;
                    self.push(Value::Persistent(Box::new(pid)))?
                }
                b'R' | 0x81 => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let v = reduce(callable, args)?;
                    self.push(v)?
                }
                b'b' => {
                    // BUILD sets an object's state; a state dict's OrderedDict may carry
                    // `_metadata`, which is irrelevant here.
                    self.pop()?;
                    self.top_mut()?;
                }
                other => return Err(bad(format!("unsupported opcode 0x{other:02x}"))),
            }
        }
        Err(bad("too many operations"))
    }
}

fn as_usize(v: &Value) -> Option<usize> {
    match v {
        Value::Int(i) => usize::try_from(*i).ok(),
        _ => None,
    }
}

fn usize_tuple(v: &Value) -> Option<Vec<usize>> {
    match v {
        Value::Tuple(x) | Value::List(x) => x.iter().map(as_usize).collect(),
        _ => None,
    }
}

fn reduce(callable: Value, args: Value) -> Result<Value, WeightsError> {
    let Value::Global(module, name) = callable else {
        return Ok(Value::Opaque);
    };
    let Value::Tuple(args) = args else {
        return Ok(Value::Opaque);
    };
    match (module.as_str(), name.as_str()) {
        ("collections", "OrderedDict") => Ok(Value::Dict(Vec::new())),
        ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") => {
            let (Some(Value::Persistent(pid)), Some(offset), Some(shape), Some(stride)) = (
                args.first(),
                args.get(1).and_then(as_usize),
                args.get(2).and_then(usize_tuple),
                args.get(3).and_then(usize_tuple),
            ) else {
                return Err(bad("malformed tensor record"));
            };
            // ('storage', storage_type, key, location, numel[, view_metadata])
            let Value::Tuple(p) = pid.as_ref() else {
                return Err(bad("malformed storage id"));
            };
            let storage_type = match p.get(1) {
                Some(Value::Global(_, n)) => n.clone(),
                _ => return Err(bad("malformed storage id")),
            };
            let storage_key = match p.get(2) {
                Some(Value::Str(s)) => s.clone(),
                _ => return Err(bad("malformed storage id")),
            };
            if shape.len() != stride.len() {
                return Err(bad("tensor shape and stride differ in length"));
            }
            Ok(Value::Tensor(TensorRef { storage_key, storage_type, offset, shape, stride }))
        }
        _ => Ok(Value::Opaque),
    }
}

/// Bytes per element and a decoder, by storage class name.
/// Decodes one little-endian element.
type Decode = fn(&[u8]) -> f32;

fn storage_dtype(t: &str) -> Option<(usize, Decode)> {
    Some(match t {
        "FloatStorage" => (4, |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        "DoubleStorage" => (8, |b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32),
        "HalfStorage" => (2, |b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()),
        "BFloat16Storage" => (2, |b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()),
        _ => return None,
    })
}

/// Element size of every storage class, so the legacy reader can skip the ones it does not
/// decode (say, a batch-norm counter's LongStorage).
fn storage_elem_size(t: &str) -> Option<usize> {
    storage_dtype(t).map(|d| d.0).or(match t {
        "LongStorage" => Some(8),
        "IntStorage" => Some(4),
        "ShortStorage" => Some(2),
        "ByteStorage" | "CharStorage" | "BoolStorage" => Some(1),
        _ => None,
    })
}

struct PthDict<'a> {
    tensors: Vec<(String, TensorRef)>,
    storages: HashMap<String, &'a [u8]>,
}

impl PthDict<'_> {
    fn get(&self, name: &str) -> Result<&TensorRef, WeightsError> {
        self.tensors
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t)
            .ok_or_else(|| bad(format!("tensor '{}' vanished", clip(name))))
    }
}

impl TensorDict for PthDict<'_> {
    fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.tensors.iter().map(|(n, _)| n.clone()).collect();
        v.sort();
        v
    }
    fn shape(&mut self, name: &str) -> Result<Vec<usize>, WeightsError> {
        Ok(self.get(name)?.shape.clone())
    }
    fn read(&mut self, name: &str) -> Result<RawTensor, WeightsError> {
        let t = self.get(name)?;
        let (size, decode) =
            storage_dtype(&t.storage_type).ok_or_else(|| WeightsError::dtype(clip(name), clip(&t.storage_type)))?;
        let storage = self
            .storages
            .get(&t.storage_key)
            .ok_or_else(|| bad(format!("storage '{}' of '{}' is missing", clip(&t.storage_key), clip(name))))?;
        let n_storage = storage.len() / size;
        let count: usize =
            t.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or_else(|| bad("impossible shape"))?;
        // The last element addressed must lie inside the storage.
        let mut max_off = t.offset;
        for (&d, &s) in t.shape.iter().zip(&t.stride) {
            if d > 0 {
                max_off = (d - 1)
                    .checked_mul(s)
                    .and_then(|x| x.checked_add(max_off))
                    .ok_or_else(|| bad("impossible stride"))?;
            }
        }
        if count > 0 && max_off >= n_storage {
            return Err(bad(format!("tensor '{}' reaches past the end of its storage (truncated file?)", clip(name))));
        }
        let mut data = Vec::with_capacity(count);
        let mut idx = vec![0usize; t.shape.len()];
        for _ in 0..count {
            let off = t.offset + idx.iter().zip(&t.stride).map(|(i, s)| i * s).sum::<usize>();
            data.push(decode(&storage[off * size..off * size + size]));
            for k in (0..idx.len()).rev() {
                idx[k] += 1;
                if idx[k] < t.shape[k] {
                    break;
                }
                idx[k] = 0;
            }
        }
        Ok(RawTensor { name: name.to_string(), shape: t.shape.clone(), data })
    }
}

/// Finds the `name → tensor` dictionary: the pickled object itself, or a `state_dict` /
/// `model` entry of a training checkpoint.
fn state_dict(v: Value) -> Result<Vec<(String, TensorRef)>, WeightsError> {
    let Value::Dict(entries) = v else {
        return Err(WeightsError::not_weights("the PyTorch file does not hold a state dict (a whole pickled model cannot be read; save model.state_dict())"));
    };
    let tensors: Vec<(String, TensorRef)> = entries
        .iter()
        .filter_map(|(k, v)| match (k, v) {
            (Value::Str(k), Value::Tensor(t)) => Some((k.clone(), t.clone())),
            _ => None,
        })
        .collect();
    if !tensors.is_empty() {
        return Ok(tensors);
    }
    for (k, v) in entries {
        if let (Value::Str(k), Value::Dict(_)) = (&k, &v) {
            if k == "state_dict" || k == "model" {
                return state_dict(v);
            }
        }
    }
    Err(WeightsError::not_weights("the PyTorch file holds no tensors"))
}

pub fn read_pth(bytes: &[u8]) -> Result<Source, WeightsError> {
    if bytes.starts_with(b"PK") {
        read_zip(bytes)
    } else {
        read_legacy(bytes)
    }
}

fn read_zip(bytes: &[u8]) -> Result<Source, WeightsError> {
    let mut archive = npyz::npz::NpzArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| WeightsError::corrupt(format!("zip archive cannot be read ({e})")))?;
    let zip = archive.zip_archive();
    let names: Vec<String> = zip.file_names().map(str::to_string).collect();
    let pkl = names
        .iter()
        .find(|n| n.ends_with("/data.pkl") || n.as_str() == "data.pkl")
        .ok_or_else(|| WeightsError::not_weights("zip archive without data.pkl"))?
        .clone();
    let prefix = pkl.strip_suffix("data.pkl").unwrap_or("").to_string();
    let mut read_entry = |name: &str, limit: u64| -> Result<Vec<u8>, WeightsError> {
        let f = zip.by_name(name).map_err(|e| WeightsError::corrupt(format!("zip entry '{}': {e}", clip(name))))?;
        let mut buf = Vec::new();
        f.take(limit)
            .read_to_end(&mut buf)
            .map_err(|e| WeightsError::corrupt(format!("zip entry '{}': {e}", clip(name))))?;
        Ok(buf)
    };
    let pickle = read_entry(&pkl, 64 << 20)?;
    let root = Vm::new(&pickle, 0).run()?;
    let tensors = state_dict(root)?;
    // Storages are read on demand below, but they must outlive the dict; keep them here.
    let mut owned: HashMap<String, Vec<u8>> = HashMap::new();
    for (_, t) in &tensors {
        if !owned.contains_key(&t.storage_key) {
            let entry = format!("{prefix}data/{}", t.storage_key);
            let data = read_entry(&entry, MAX_SOURCE_BYTES)?;
            owned.insert(t.storage_key.clone(), data);
        }
    }
    let storages = owned.iter().map(|(k, v)| (k.clone(), v.as_slice())).collect();
    read_dict(&mut PthDict { tensors, storages }, "PyTorch .pth (zip)")
}

fn read_legacy(bytes: &[u8]) -> Result<Source, WeightsError> {
    // magic number, protocol version, system info, the object, then the storage keys.
    let mut pos = 0;
    let mut values = Vec::new();
    for _ in 0..5 {
        let mut vm = Vm::new(bytes, pos);
        values.push(vm.run()?);
        pos = vm.pos;
    }
    let keys: Vec<String> = match values.pop() {
        Some(Value::List(k)) => k
            .into_iter()
            .map(|v| match v {
                Value::Str(s) => Ok(s),
                _ => Err(bad("storage key is not a string")),
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(bad("missing storage key list")),
    };
    let tensors = state_dict(values.pop().unwrap_or(Value::None))?;
    let mut storages = HashMap::new();
    for key in keys {
        let elem = tensors
            .iter()
            .find(|(_, t)| t.storage_key == key)
            .and_then(|(_, t)| storage_elem_size(&t.storage_type))
            .ok_or_else(|| bad(format!("storage '{}' has an unknown or unsupported type", clip(&key))))?;
        let n = bytes
            .get(pos..pos + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
            .ok_or_else(|| bad("truncated before a storage"))?;
        let len =
            usize::try_from(n).ok().and_then(|n| n.checked_mul(elem)).ok_or_else(|| bad("impossible storage size"))?;
        let start = pos + 8;
        let end = start.checked_add(len).filter(|&e| e <= bytes.len()).ok_or_else(|| bad("truncated storage data"))?;
        storages.insert(key, &bytes[start..end]);
        pos = end;
    }
    read_dict(&mut PthDict { tensors, storages }, "PyTorch .pth (legacy format)")
}
