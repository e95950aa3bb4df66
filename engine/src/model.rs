//! Whisper model files: read CTranslate2 (`model.bin` v6) weights, write whisper.cpp ggml, and
//! verify a ggml file before handing it to whisper.cpp (which aborts on bad input).
//!
//! The conversion follows the facts in `shared/MODEL.md`; it works on any reader and writer so
//! that it can be tested without touching the file system.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// The ggml magic number, `"ggml"` read as a little-endian u32.
pub const GGML_MAGIC: u32 = 0x6767_6d6c;
/// The only CTranslate2 binary format version this converter understands.
const CT2_VERSION: u32 = 6;
/// Tokens written to the ggml vocabulary: 0..=50256 (through `<|endoftext|>`); whisper.cpp
/// creates the remaining special tokens itself.
const GGML_VOCAB_TOKENS: usize = 50257;
/// Refuse absurd sizes in headers instead of allocating them (a foreign or corrupt file).
const MAX_TENSOR_BYTES: u64 = 4 << 30;

/// What can go wrong reading or writing model files. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The file could not be opened, read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying I/O error.
        source: io::Error,
    },
    /// The file ended before its header or data said it would.
    #[error("{path}: truncated: {what}")]
    Truncated {
        /// The file concerned.
        path: PathBuf,
        /// What was being read when the file ended.
        what: String,
    },
    /// The file is readable but is not what it should be.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong, in words.
        reason: String,
    },
}

impl ModelError {
    fn invalid(path: &Path, reason: impl Into<String>) -> Self {
        ModelError::Invalid {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }

    fn io(path: &Path, source: io::Error) -> Self {
        ModelError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Element type of a stored tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    /// 32-bit float.
    F32,
    /// 8-bit integer.
    I8,
    /// 16-bit integer.
    I16,
    /// 32-bit integer.
    I32,
    /// IEEE half float.
    F16,
    /// bfloat16.
    BF16,
}

impl DType {
    fn from_ct2(code: u8) -> Option<Self> {
        Some(match code {
            0 => DType::F32,
            1 => DType::I8,
            2 => DType::I16,
            3 => DType::I32,
            4 => DType::F16,
            5 => DType::BF16,
            _ => return None,
        })
    }

    fn size(self) -> usize {
        match self {
            DType::I8 => 1,
            DType::I16 | DType::F16 | DType::BF16 => 2,
            DType::F32 | DType::I32 => 4,
        }
    }
}

/// One named variable of a CTranslate2 model.
#[derive(Debug, Clone)]
pub struct Variable {
    /// Shape, outermost dimension first (row-major).
    pub dims: Vec<usize>,
    /// Element type.
    pub dtype: DType,
    /// Raw little-endian data.
    pub data: Vec<u8>,
}

impl Variable {
    fn len(&self) -> usize {
        self.dims.iter().product()
    }

    /// The values as f32, whatever the stored float type.
    fn to_f32(&self, path: &Path, name: &str) -> Result<Vec<f32>, ModelError> {
        let values = match self.dtype {
            DType::F32 => self
                .data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            DType::F16 => self
                .data
                .chunks_exact(2)
                .map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]])))
                .collect(),
            DType::BF16 => self
                .data
                .chunks_exact(2)
                .map(|b| f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16))
                .collect(),
            other => {
                return Err(ModelError::invalid(
                    path,
                    format!(
                        "variable {name}: quantized type {other:?} is not supported; use a float16 or float32 model"
                    ),
                ));
            }
        };
        Ok(values)
    }

    /// An integer scalar (head counts are stored as small integers).
    fn scalar_int(&self) -> Option<i64> {
        if self.len() != 1 {
            return None;
        }
        let d = &self.data;
        Some(match self.dtype {
            DType::I8 => i64::from(d[0] as i8),
            DType::I16 => i64::from(i16::from_le_bytes([d[0], d[1]])),
            DType::I32 => i64::from(i32::from_le_bytes([d[0], d[1], d[2], d[3]])),
            DType::F32 => f32::from_le_bytes([d[0], d[1], d[2], d[3]]) as i64,
            DType::F16 => f16_to_f32(u16::from_le_bytes([d[0], d[1]])) as i64,
            DType::BF16 => return None,
        })
    }
}

/// Converts an IEEE 754 half-precision value to f32.
pub fn f16_to_f32(bits: u16) -> f32 {
    let sign = u32::from(bits >> 15) << 31;
    let exponent = u32::from((bits >> 10) & 0x1f);
    let mantissa = u32::from(bits & 0x3ff);
    let out = match (exponent, mantissa) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal half: renormalise into an f32 exponent.
            let shift = m.leading_zeros() - 21;
            let m = (m << shift) & 0x3ff;
            let e = 127 - 15 + 1 - shift;
            sign | (e << 23) | (m << 13)
        }
        (0x1f, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 127 - 15) << 23) | (m << 13),
    };
    f32::from_bits(out)
}

/// Converts an f32 to IEEE half precision, rounding to nearest even.
pub fn f32_to_f16(value: f32) -> u16 {
    let bits = value.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exponent = ((bits >> 23) & 0xff) as i32;
    let mantissa = bits & 0x7f_ffff;
    if exponent == 0xff {
        return sign | 0x7c00 | if mantissa != 0 { 0x200 } else { 0 };
    }
    let e = exponent - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        let m = mantissa | 0x80_0000;
        let shift = (14 - e) as u32;
        let half = m >> shift;
        let rem = m & ((1 << shift) - 1);
        let halfway = 1 << (shift - 1);
        let round = u32::from(rem > halfway || (rem == halfway && half & 1 == 1));
        return sign | (half + round) as u16;
    }
    let half = ((e as u32) << 10) | (mantissa >> 13);
    let rem = mantissa & 0x1fff;
    let round = u32::from(rem > 0x1000 || (rem == 0x1000 && half & 1 == 1));
    sign | (half + round) as u16
}

/// A CTranslate2 Whisper model read into memory.
#[derive(Debug)]
pub struct Ct2Model {
    /// Variables by name, aliases resolved.
    pub variables: HashMap<String, Variable>,
    /// The decoded vocabulary (token bytes), in token id order.
    pub vocabulary: Vec<Vec<u8>>,
}

/// Counts bytes read so that truncation errors can say where they happened.
struct Cursor<'a, R> {
    inner: &'a mut R,
    path: &'a Path,
}

impl<R: Read> Cursor<'_, R> {
    /// The next `n` bytes. The buffer grows as data arrives, so a length field claiming
    /// gigabytes in a short file costs nothing before the file runs out.
    fn bytes(&mut self, n: usize, what: &str) -> Result<Vec<u8>, ModelError> {
        let mut buf = Vec::with_capacity(n.min(1 << 20));
        self.inner
            .by_ref()
            .take(n as u64)
            .read_to_end(&mut buf)
            .map_err(|e| ModelError::io(self.path, e))?;
        if buf.len() < n {
            return Err(ModelError::Truncated {
                path: self.path.to_path_buf(),
                what: what.to_string(),
            });
        }
        Ok(buf)
    }

    fn u8(&mut self, what: &str) -> Result<u8, ModelError> {
        Ok(self.bytes(1, what)?[0])
    }

    fn u16(&mut self, what: &str) -> Result<u16, ModelError> {
        let b = self.bytes(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &str) -> Result<u32, ModelError> {
        let b = self.bytes(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn i32(&mut self, what: &str) -> Result<i32, ModelError> {
        Ok(self.u32(what)? as i32)
    }

    /// A CT2 string: u16 length including the trailing NUL, bytes, NUL.
    fn ct2_string(&mut self, what: &str) -> Result<String, ModelError> {
        let len = usize::from(self.u16(what)?);
        if len == 0 {
            return Err(ModelError::invalid(
                self.path,
                format!("{what}: zero-length string"),
            ));
        }
        let mut bytes = self.bytes(len, what)?;
        if bytes.pop() != Some(0) {
            return Err(ModelError::invalid(
                self.path,
                format!("{what}: string is not NUL-terminated"),
            ));
        }
        String::from_utf8(bytes)
            .map_err(|_| ModelError::invalid(self.path, format!("{what}: string is not UTF-8")))
    }
}

impl Ct2Model {
    /// Reads a CTranslate2 Whisper model directory (`model.bin` and `vocabulary.txt`).
    pub fn read_dir(dir: &Path) -> Result<Self, ModelError> {
        if !dir.is_dir() {
            return Err(ModelError::invalid(
                dir,
                "not a directory; expected a CTranslate2 model directory with model.bin and vocabulary.txt",
            ));
        }
        let model_path = dir.join("model.bin");
        if !model_path.is_file() {
            return Err(ModelError::invalid(
                dir,
                "not a CTranslate2 model directory: model.bin is missing",
            ));
        }
        let vocab_path = dir.join("vocabulary.txt");
        if !vocab_path.is_file() {
            return Err(ModelError::invalid(
                dir,
                "CTranslate2 model directory has no vocabulary.txt",
            ));
        }
        let file = File::open(&model_path).map_err(|e| ModelError::io(&model_path, e))?;
        let variables = read_ct2_variables(&mut BufReader::new(file), &model_path)?;
        let text =
            std::fs::read_to_string(&vocab_path).map_err(|e| ModelError::io(&vocab_path, e))?;
        let vocabulary = decode_vocabulary(&text, &vocab_path)?;
        Ok(Ct2Model {
            variables,
            vocabulary,
        })
    }
}

/// Reads the variables of a CTranslate2 `model.bin`, resolving aliases.
pub fn read_ct2_variables<R: Read>(
    reader: &mut R,
    path: &Path,
) -> Result<HashMap<String, Variable>, ModelError> {
    let mut c = Cursor {
        inner: reader,
        path,
    };
    let version = c.u32("format version")?;
    if version != CT2_VERSION {
        return Err(ModelError::invalid(
            path,
            format!(
                "not a CTranslate2 v{CT2_VERSION} model.bin (format version field is {version})"
            ),
        ));
    }
    let spec = c.ct2_string("spec name")?;
    if spec != "WhisperSpec" {
        return Err(ModelError::invalid(
            path,
            format!("model spec is {spec:?}, expected \"WhisperSpec\" (not a Whisper model)"),
        ));
    }
    let _revision = c.u32("spec revision")?;
    let count = c.u32("variable count")?;
    if count > 100_000 {
        return Err(ModelError::invalid(
            path,
            format!("absurd variable count {count}"),
        ));
    }
    let mut variables = HashMap::with_capacity(count as usize);
    for index in 0..count {
        let name = c.ct2_string(&format!("name of variable {index}"))?;
        let rank = c.u8(&format!("rank of {name}"))?;
        if rank > 8 {
            return Err(ModelError::invalid(
                path,
                format!("variable {name}: absurd rank {rank}"),
            ));
        }
        let mut dims = Vec::with_capacity(usize::from(rank));
        for _ in 0..rank {
            dims.push(c.u32(&format!("dims of {name}"))? as usize);
        }
        let code = c.u8(&format!("dtype of {name}"))?;
        let dtype = DType::from_ct2(code).ok_or_else(|| {
            ModelError::invalid(path, format!("variable {name}: unknown dtype code {code}"))
        })?;
        let byte_count = c.u32(&format!("byte count of {name}"))?;
        let elements = dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        if u64::from(byte_count) > MAX_TENSOR_BYTES
            || elements.and_then(|n| n.checked_mul(dtype.size())) != Some(byte_count as usize)
        {
            return Err(ModelError::invalid(
                path,
                format!(
                    "variable {name}: {byte_count} bytes do not match shape {dims:?} of {dtype:?}"
                ),
            ));
        }
        let data = c.bytes(byte_count as usize, &format!("data of {name}"))?;
        variables.insert(name, Variable { dims, dtype, data });
    }
    // Aliases are optional at the very end of older files; a clean EOF means none.
    let mut first = [0u8; 4];
    match c.inner.read(&mut first) {
        Ok(0) => return Ok(variables),
        Ok(n) if n < 4 => {
            let rest = c.bytes(4 - n, "alias count")?;
            first[n..].copy_from_slice(&rest);
        }
        Ok(_) => {}
        Err(e) => return Err(ModelError::io(path, e)),
    }
    let alias_count = u32::from_le_bytes(first);
    for _ in 0..alias_count {
        let alias = c.ct2_string("alias name")?;
        let target = c.ct2_string(&format!("target of alias {alias}"))?;
        if let Some(v) = variables.get(&target).cloned() {
            variables.insert(alias, v);
        }
    }
    Ok(variables)
}

/// GPT-2's byte-level alphabet: the printable character that stands for each byte.
fn byte_level_alphabet() -> HashMap<char, u8> {
    let mut printable: Vec<u32> = (u32::from('!')..=u32::from('~'))
        .chain(u32::from('¡')..=u32::from('¬'))
        .chain(u32::from('®')..=u32::from('ÿ'))
        .collect();
    let mut chars: Vec<u32> = printable.clone();
    let mut extra = 0;
    for b in 0..256u32 {
        if !printable.contains(&b) {
            printable.push(b);
            chars.push(256 + extra);
            extra += 1;
        }
    }
    printable
        .into_iter()
        .zip(chars)
        .filter_map(|(b, c)| Some((char::from_u32(c)?, b as u8)))
        .collect()
}

/// Maps `vocabulary.txt` (one byte-level token a line) back to raw token bytes.
pub fn decode_vocabulary(text: &str, path: &Path) -> Result<Vec<Vec<u8>>, ModelError> {
    let alphabet = byte_level_alphabet();
    let mut tokens = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if index >= GGML_VOCAB_TOKENS {
            break;
        }
        let mut bytes = Vec::with_capacity(line.len());
        for ch in line.chars() {
            match alphabet.get(&ch) {
                Some(&b) => bytes.push(b),
                None if line.starts_with("<|") => {
                    bytes = line.as_bytes().to_vec();
                    break;
                }
                None => {
                    return Err(ModelError::invalid(
                        path,
                        format!(
                            "line {}: {ch:?} is not a byte-level token character",
                            index + 1
                        ),
                    ));
                }
            }
        }
        tokens.push(bytes);
    }
    if tokens.len() < GGML_VOCAB_TOKENS {
        return Err(ModelError::invalid(
            path,
            format!(
                "vocabulary has {} tokens, expected at least {GGML_VOCAB_TOKENS}",
                tokens.len()
            ),
        ));
    }
    Ok(tokens)
}

/// The Slaney-style mel filter bank librosa computes for `filters.mel(sr, n_fft, n_mels)`,
/// row-major `n_mels × (n_fft/2 + 1)`.
pub fn mel_filters(sample_rate: f64, n_fft: usize, n_mels: usize) -> Vec<f32> {
    const F_SP: f64 = 200.0 / 3.0;
    const MIN_LOG_HZ: f64 = 1000.0;
    let min_log_mel = MIN_LOG_HZ / F_SP;
    let logstep = 6.4f64.ln() / 27.0;
    let hz_to_mel = |f: f64| {
        if f >= MIN_LOG_HZ {
            min_log_mel + (f / MIN_LOG_HZ).ln() / logstep
        } else {
            f / F_SP
        }
    };
    let mel_to_hz = |m: f64| {
        if m >= min_log_mel {
            MIN_LOG_HZ * (logstep * (m - min_log_mel)).exp()
        } else {
            F_SP * m
        }
    };
    let n_bins = n_fft / 2 + 1;
    let fmax = sample_rate / 2.0;
    let fft_freqs: Vec<f64> = (0..n_bins)
        .map(|i| fmax * i as f64 / (n_bins - 1) as f64)
        .collect();
    let mel_max = hz_to_mel(fmax);
    let mel_points: Vec<f64> = (0..n_mels + 2)
        .map(|i| mel_to_hz(mel_max * i as f64 / (n_mels + 1) as f64))
        .collect();
    let mut weights = vec![0f32; n_mels * n_bins];
    for m in 0..n_mels {
        let (lo, centre, hi) = (mel_points[m], mel_points[m + 1], mel_points[m + 2]);
        let norm = 2.0 / (hi - lo);
        for (k, &f) in fft_freqs.iter().enumerate() {
            let lower = (f - lo) / (centre - lo);
            let upper = (hi - f) / (hi - centre);
            let w = lower.min(upper).max(0.0);
            weights[m * n_bins + k] = (w * norm) as f32;
        }
    }
    weights
}

/// How the weight matrices of a converted model are stored. Vectors, biases, positional
/// embeddings stay f32 and convolution kernels f16 in every format (whisper.cpp expects that).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeightFormat {
    /// Half floats: the reference weights, bit for bit what the source holds.
    #[default]
    F16,
    /// ggml's Q8_0 (blocks of 32 signed bytes sharing one half-float scale): about half the
    /// size and faster matrix products on CPUs with 8-bit dot products (AVX2, AVX-512 VNNI);
    /// each weight is off by at most half a step (a 254th of its block's largest magnitude).
    Q8_0,
}

impl WeightFormat {
    /// The header's `ftype`: ggml's file type, with the quantisation version (2) times 1000
    /// added for quantised files, as whisper.cpp writes and reads it.
    pub fn ftype(self) -> i32 {
        match self {
            WeightFormat::F16 => 1,
            WeightFormat::Q8_0 => 2000 + 7,
        }
    }
}

/// Storage type of one tensor in the file (ggml type codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TensorType {
    F32 = 0,
    F16 = 1,
    Q8_0 = 8,
}

/// Values per Q8_0 block.
const Q8_BLOCK: usize = 32;

/// Appends `values` (a whole number of blocks) as ggml Q8_0 blocks: a half-float scale
/// `max |v| / 127`, then each value divided by it, rounded half away from zero.
fn push_q8_0(values: &[f32], buf: &mut Vec<u8>) {
    for block in values.chunks(Q8_BLOCK) {
        let amax = block.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let scale = amax / 127.0;
        let inverse = if scale == 0.0 { 0.0 } else { 1.0 / scale };
        buf.extend_from_slice(&f32_to_f16(scale).to_le_bytes());
        buf.extend(block.iter().map(|v| (v * inverse).round() as i8 as u8));
    }
}

/// One tensor as it will be written to the ggml file.
struct GgmlTensor {
    name: String,
    /// Shape, outermost first (written reversed).
    dims: Vec<usize>,
    values: Vec<f32>,
    f16: bool,
}

impl GgmlTensor {
    /// How this tensor is stored in a file of `weights` format: only the weight matrices
    /// (two-dimensional, rows a whole number of blocks) are quantised; convolution kernels and
    /// everything else keep their type.
    fn storage(&self, weights: WeightFormat) -> TensorType {
        match (self.f16, weights) {
            (false, _) => TensorType::F32,
            (true, WeightFormat::Q8_0)
                if self.dims.len() == 2 && self.dims[1].is_multiple_of(Q8_BLOCK) =>
            {
                TensorType::Q8_0
            }
            (true, _) => TensorType::F16,
        }
    }
}

/// The hyper-parameters in a ggml Whisper header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hparams {
    /// Vocabulary size.
    pub n_vocab: i32,
    /// Audio context (encoder positions).
    pub n_audio_ctx: i32,
    /// Encoder width.
    pub n_audio_state: i32,
    /// Encoder attention heads.
    pub n_audio_head: i32,
    /// Encoder layers.
    pub n_audio_layer: i32,
    /// Text context (decoder positions).
    pub n_text_ctx: i32,
    /// Decoder width.
    pub n_text_state: i32,
    /// Decoder attention heads.
    pub n_text_head: i32,
    /// Decoder layers.
    pub n_text_layer: i32,
    /// Mel bands.
    pub n_mels: i32,
    /// Weight type: 1 = f16, 2007 = Q8_0 (ggml file type + 1000 × quantisation version).
    pub ftype: i32,
}

/// What a conversion or a verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GgmlSummary {
    /// Header hyper-parameters.
    pub hparams: Hparams,
    /// Tokens in the vocabulary section.
    pub vocab_tokens: usize,
    /// Tensors in the file.
    pub tensors: usize,
    /// File size in bytes.
    pub bytes: u64,
}

fn count_layers(vars: &HashMap<String, Variable>, prefix: &str) -> usize {
    (0..)
        .take_while(|i| {
            vars.contains_key(&format!(
                "{prefix}/layer_{i}/self_attention/layer_norm/gamma"
            ))
        })
        .count()
}

/// Builds the ggml tensor list from CT2 variables, splitting fused attention projections.
fn ggml_tensors(model: &Ct2Model, path: &Path) -> Result<Vec<GgmlTensor>, ModelError> {
    let vars = &model.variables;
    let get = |name: &str| -> Result<&Variable, ModelError> {
        vars.get(name)
            .ok_or_else(|| ModelError::invalid(path, format!("variable {name} is missing")))
    };
    let mut out = Vec::new();
    let mut push = |name: String, var: &Variable, values: Vec<f32>, dims: Vec<usize>| {
        // Matrices stay f16; vectors, conv biases and positional embeddings are f32
        // (whisper.cpp expects exactly this split; f32 conv weights crash its encoder).
        let f16 = dims.len() >= 2
            && !name.ends_with("conv1.bias")
            && !name.ends_with("conv2.bias")
            && !name.ends_with("positional_embedding");
        let _ = var;
        out.push(GgmlTensor {
            name,
            dims,
            values,
            f16,
        });
    };
    let mut copy = |from: &str, to: String, push: &mut PushFn<'_>| -> Result<(), ModelError> {
        let v = get(from)?;
        let values = v.to_f32(path, from)?;
        let mut dims = v.dims.clone();
        if to.ends_with("conv1.bias") || to.ends_with("conv2.bias") {
            dims = vec![v.len(), 1];
        }
        push(to, v, values, dims);
        Ok(())
    };
    // Splits a fused projection by rows into `parts` equal pieces.
    let split = |from: &str, parts: usize| -> Result<Vec<Part>, ModelError> {
        let v = get(from)?;
        let values = v.to_f32(path, from)?;
        let rows = v.dims[0];
        if rows % parts != 0 {
            return Err(ModelError::invalid(
                path,
                format!("{from}: {rows} rows cannot be split in {parts}"),
            ));
        }
        let per = rows / parts;
        let row_len = v.len() / rows;
        let mut dims = v.dims.clone();
        dims[0] = per;
        Ok(values
            .chunks(per * row_len)
            .map(|chunk| (chunk.to_vec(), dims.clone()))
            .collect())
    };

    for conv in ["conv1", "conv2"] {
        copy(
            &format!("encoder/{conv}/weight"),
            format!("encoder.{conv}.weight"),
            &mut push,
        )?;
        copy(
            &format!("encoder/{conv}/bias"),
            format!("encoder.{conv}.bias"),
            &mut push,
        )?;
    }
    copy(
        "encoder/position_encodings/encodings",
        "encoder.positional_embedding".into(),
        &mut push,
    )?;

    // Self-attention in both stacks: linear_0 fuses q, k, v; k has no bias.
    let attention = |src: &str, dst: &str, push: &mut PushFn<'_>| -> Result<(), ModelError> {
        let w = split(&format!("{src}/linear_0/weight"), 3)?;
        let b = split(&format!("{src}/linear_0/bias"), 3)?;
        let dummy = get(&format!("{src}/linear_0/weight"))?;
        for (i, part) in ["query", "key", "value"].iter().enumerate() {
            push(
                format!("{dst}.{part}.weight"),
                dummy,
                w[i].0.clone(),
                w[i].1.clone(),
            );
            if *part != "key" {
                push(
                    format!("{dst}.{part}.bias"),
                    dummy,
                    b[i].0.clone(),
                    b[i].1.clone(),
                );
            }
        }
        Ok(())
    };

    let encoder_layers = count_layers(vars, "encoder");
    let decoder_layers = count_layers(vars, "decoder");
    if encoder_layers == 0 || decoder_layers == 0 {
        return Err(ModelError::invalid(
            path,
            "no encoder or decoder layers found",
        ));
    }
    for i in 0..encoder_layers {
        let e = format!("encoder/layer_{i}");
        let g = format!("encoder.blocks.{i}");
        attention(
            &format!("{e}/self_attention"),
            &format!("{g}.attn"),
            &mut push,
        )?;
        for wb in ["weight", "bias"] {
            copy(
                &format!("{e}/self_attention/linear_1/{wb}"),
                format!("{g}.attn.out.{wb}"),
                &mut push,
            )?;
        }
        ln(
            &mut copy,
            &mut push,
            &format!("{e}/self_attention/layer_norm"),
            &format!("{g}.attn_ln"),
        )?;
        ln(
            &mut copy,
            &mut push,
            &format!("{e}/ffn/layer_norm"),
            &format!("{g}.mlp_ln"),
        )?;
        for wb in ["weight", "bias"] {
            copy(
                &format!("{e}/ffn/linear_0/{wb}"),
                format!("{g}.mlp.0.{wb}"),
                &mut push,
            )?;
            copy(
                &format!("{e}/ffn/linear_1/{wb}"),
                format!("{g}.mlp.2.{wb}"),
                &mut push,
            )?;
        }
    }
    ln(
        &mut copy,
        &mut push,
        "encoder/layer_norm",
        "encoder.ln_post",
    )?;

    copy(
        "decoder/embeddings/weight",
        "decoder.token_embedding.weight".into(),
        &mut push,
    )?;
    copy(
        "decoder/position_encodings/encodings",
        "decoder.positional_embedding".into(),
        &mut push,
    )?;
    for i in 0..decoder_layers {
        let d = format!("decoder/layer_{i}");
        let g = format!("decoder.blocks.{i}");
        attention(
            &format!("{d}/self_attention"),
            &format!("{g}.attn"),
            &mut push,
        )?;
        for wb in ["weight", "bias"] {
            copy(
                &format!("{d}/self_attention/linear_1/{wb}"),
                format!("{g}.attn.out.{wb}"),
                &mut push,
            )?;
        }
        ln(
            &mut copy,
            &mut push,
            &format!("{d}/self_attention/layer_norm"),
            &format!("{g}.attn_ln"),
        )?;
        ln(
            &mut copy,
            &mut push,
            &format!("{d}/attention/layer_norm"),
            &format!("{g}.cross_attn_ln"),
        )?;
        for wb in ["weight", "bias"] {
            copy(
                &format!("{d}/attention/linear_0/{wb}"),
                format!("{g}.cross_attn.query.{wb}"),
                &mut push,
            )?;
        }
        // linear_1 fuses cross-attention k and v; k has no bias.
        let w = split(&format!("{d}/attention/linear_1/weight"), 2)?;
        let b = split(&format!("{d}/attention/linear_1/bias"), 2)?;
        let dummy = get(&format!("{d}/attention/linear_1/weight"))?;
        push(
            format!("{g}.cross_attn.key.weight"),
            dummy,
            w[0].0.clone(),
            w[0].1.clone(),
        );
        push(
            format!("{g}.cross_attn.value.weight"),
            dummy,
            w[1].0.clone(),
            w[1].1.clone(),
        );
        push(
            format!("{g}.cross_attn.value.bias"),
            dummy,
            b[1].0.clone(),
            b[1].1.clone(),
        );
        for wb in ["weight", "bias"] {
            copy(
                &format!("{d}/attention/linear_2/{wb}"),
                format!("{g}.cross_attn.out.{wb}"),
                &mut push,
            )?;
        }
        ln(
            &mut copy,
            &mut push,
            &format!("{d}/ffn/layer_norm"),
            &format!("{g}.mlp_ln"),
        )?;
        for wb in ["weight", "bias"] {
            copy(
                &format!("{d}/ffn/linear_0/{wb}"),
                format!("{g}.mlp.0.{wb}"),
                &mut push,
            )?;
            copy(
                &format!("{d}/ffn/linear_1/{wb}"),
                format!("{g}.mlp.2.{wb}"),
                &mut push,
            )?;
        }
    }
    ln(&mut copy, &mut push, "decoder/layer_norm", "decoder.ln")?;
    Ok(out)
}

/// Receives one finished tensor: name, source variable, values, shape.
type PushFn<'a> = dyn FnMut(String, &Variable, Vec<f32>, Vec<usize>) + 'a;
/// One piece of a split tensor: values and shape.
type Part = (Vec<f32>, Vec<usize>);

type CopyFn<'a> = dyn FnMut(&str, String, &mut PushFn<'_>) -> Result<(), ModelError> + 'a;

/// A CT2 layer norm (gamma, beta) → ggml (weight, bias).
fn ln(
    copy: &mut CopyFn<'_>,
    push: &mut PushFn<'_>,
    from: &str,
    to: &str,
) -> Result<(), ModelError> {
    copy(&format!("{from}/gamma"), format!("{to}.weight"), push)?;
    copy(&format!("{from}/beta"), format!("{to}.bias"), push)
}

fn hparams_of(model: &Ct2Model, path: &Path) -> Result<Hparams, ModelError> {
    let vars = &model.variables;
    let dims = |name: &str| -> Result<Vec<usize>, ModelError> {
        vars.get(name)
            .map(|v| v.dims.clone())
            .ok_or_else(|| ModelError::invalid(path, format!("variable {name} is missing")))
    };
    let heads = |name: &str| -> Result<i32, ModelError> {
        vars.get(name)
            .and_then(Variable::scalar_int)
            .map(|h| h as i32)
            .ok_or_else(|| ModelError::invalid(path, format!("scalar {name} is missing")))
    };
    let enc_pos = dims("encoder/position_encodings/encodings")?;
    let dec_pos = dims("decoder/position_encodings/encodings")?;
    let emb = dims("decoder/embeddings/weight")?;
    let conv1 = dims("encoder/conv1/weight")?;
    if enc_pos.len() != 2 || dec_pos.len() != 2 || emb.len() != 2 || conv1.len() != 3 {
        return Err(ModelError::invalid(
            path,
            "unexpected tensor ranks for a Whisper model",
        ));
    }
    Ok(Hparams {
        n_vocab: emb[0] as i32,
        n_audio_ctx: enc_pos[0] as i32,
        n_audio_state: enc_pos[1] as i32,
        n_audio_head: heads("encoder/num_heads")?,
        n_audio_layer: count_layers(vars, "encoder") as i32,
        n_text_ctx: dec_pos[0] as i32,
        n_text_state: dec_pos[1] as i32,
        n_text_head: heads("decoder/num_heads")?,
        n_text_layer: count_layers(vars, "decoder") as i32,
        n_mels: conv1[1] as i32,
        ftype: 1,
    })
}

/// Writes a ggml Whisper model from a CT2 model, its weight matrices in `weights` format.
pub fn write_ggml<W: Write>(
    model: &Ct2Model,
    out: &mut W,
    source: &Path,
    weights: WeightFormat,
) -> Result<GgmlSummary, ModelError> {
    let hparams = Hparams {
        ftype: weights.ftype(),
        ..hparams_of(model, source)?
    };
    let tensors = ggml_tensors(model, source)?;
    let io = |e| ModelError::io(source, e);
    let mut bytes: u64 = 0;
    let mut put = |out: &mut W, b: &[u8]| -> Result<(), ModelError> {
        bytes += b.len() as u64;
        out.write_all(b).map_err(io)
    };
    put(out, &GGML_MAGIC.to_le_bytes())?;
    let h = hparams;
    for v in [
        h.n_vocab,
        h.n_audio_ctx,
        h.n_audio_state,
        h.n_audio_head,
        h.n_audio_layer,
        h.n_text_ctx,
        h.n_text_state,
        h.n_text_head,
        h.n_text_layer,
        h.n_mels,
        h.ftype,
    ] {
        put(out, &v.to_le_bytes())?;
    }
    let n_fft = 201usize;
    let filters = mel_filters(16000.0, 400, h.n_mels as usize);
    put(out, &h.n_mels.to_le_bytes())?;
    put(out, &(n_fft as i32).to_le_bytes())?;
    let mut buf = Vec::with_capacity(filters.len() * 4);
    for f in &filters {
        buf.extend_from_slice(&f.to_le_bytes());
    }
    put(out, &buf)?;
    let vocab = &model.vocabulary[..GGML_VOCAB_TOKENS];
    put(out, &(vocab.len() as i32).to_le_bytes())?;
    for token in vocab {
        put(out, &(token.len() as i32).to_le_bytes())?;
        put(out, token)?;
    }
    for t in &tensors {
        put(out, &(t.dims.len() as i32).to_le_bytes())?;
        put(out, &(t.name.len() as i32).to_le_bytes())?;
        let storage = t.storage(weights);
        put(out, &(storage as i32).to_le_bytes())?;
        for d in t.dims.iter().rev() {
            put(out, &(*d as i32).to_le_bytes())?;
        }
        put(out, t.name.as_bytes())?;
        buf.clear();
        match storage {
            TensorType::F32 => {
                for v in &t.values {
                    buf.extend_from_slice(&v.to_le_bytes());
                }
            }
            TensorType::F16 => {
                for v in &t.values {
                    buf.extend_from_slice(&f32_to_f16(*v).to_le_bytes());
                }
            }
            TensorType::Q8_0 => push_q8_0(&t.values, &mut buf),
        }
        put(out, &buf)?;
    }
    Ok(GgmlSummary {
        hparams,
        vocab_tokens: vocab.len(),
        tensors: tensors.len(),
        bytes,
    })
}

/// Converts a CT2 model directory into a ggml file, atomically: the data goes to a temporary
/// file beside `out` which is renamed into place only once complete and verified.
pub fn convert_ct2_dir(
    ct2_dir: &Path,
    out: &Path,
    weights: WeightFormat,
) -> Result<GgmlSummary, ModelError> {
    let model = Ct2Model::read_dir(ct2_dir)?;
    let tmp = temp_sibling(out);
    let result = (|| {
        let file = File::create(&tmp).map_err(|e| ModelError::io(&tmp, e))?;
        let mut writer = BufWriter::new(file);
        let summary = write_ggml(&model, &mut writer, &ct2_dir.join("model.bin"), weights)?;
        let file = writer
            .into_inner()
            .map_err(|e| ModelError::io(&tmp, e.into_error()))?;
        file.sync_all().map_err(|e| ModelError::io(&tmp, e))?;
        let verified = verify_ggml(&tmp)?;
        if verified.tensors != summary.tensors || verified.bytes != summary.bytes {
            return Err(ModelError::invalid(
                &tmp,
                "written file does not read back as written",
            ));
        }
        std::fs::rename(&tmp, out).map_err(|e| ModelError::io(out, e))?;
        Ok(summary)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// A temporary path in the same directory (so the final rename is atomic).
pub fn temp_sibling(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    path.with_file_name(format!(".{name}.{}.partial", std::process::id()))
}

/// Reads a ggml Whisper file end to end (header, filters, vocabulary, every tensor header and
/// its data length) without loading the weights, so that a truncated or foreign file gives a
/// clear error instead of an abort inside whisper.cpp.
pub fn verify_ggml(path: &Path) -> Result<GgmlSummary, ModelError> {
    let file = File::open(path).map_err(|e| ModelError::io(path, e))?;
    let bytes = file.metadata().map_err(|e| ModelError::io(path, e))?.len();
    verify_ggml_reader(&mut BufReader::new(file), bytes, path)
}

/// [`verify_ggml`] over any reader holding `bytes` bytes; `path` names it in errors.
pub fn verify_ggml_reader<R: Read>(
    reader: &mut R,
    bytes: u64,
    path: &Path,
) -> Result<GgmlSummary, ModelError> {
    let mut c = Cursor {
        inner: reader,
        path,
    };
    let magic = c.u32("magic")?;
    if magic != GGML_MAGIC {
        return Err(ModelError::invalid(
            path,
            format!(
                "not a whisper.cpp ggml model (magic {magic:#010x}, expected {GGML_MAGIC:#010x})"
            ),
        ));
    }
    let mut h = [0i32; 11];
    for (i, v) in h.iter_mut().enumerate() {
        *v = c.i32(&format!("header field {i}"))?;
    }
    let hparams = Hparams {
        n_vocab: h[0],
        n_audio_ctx: h[1],
        n_audio_state: h[2],
        n_audio_head: h[3],
        n_audio_layer: h[4],
        n_text_ctx: h[5],
        n_text_state: h[6],
        n_text_head: h[7],
        n_text_layer: h[8],
        n_mels: h[9],
        ftype: h[10],
    };
    if h[..10].iter().any(|&v| v <= 0 || v > 1_000_000) {
        return Err(ModelError::invalid(
            path,
            format!("implausible header {hparams:?}"),
        ));
    }
    let n_mel = c.i32("mel filter rows")?;
    let n_fft = c.i32("mel filter columns")?;
    if !(1..=512).contains(&n_mel) || !(1..=4096).contains(&n_fft) {
        return Err(ModelError::invalid(
            path,
            format!("implausible mel filter shape {n_mel}×{n_fft}"),
        ));
    }
    skip(&mut c, (n_mel * n_fft) as u64 * 4, "mel filters")?;
    let vocab_tokens = c.i32("vocabulary size")?;
    if !(0..=1_000_000).contains(&vocab_tokens) {
        return Err(ModelError::invalid(
            path,
            format!("implausible vocabulary size {vocab_tokens}"),
        ));
    }
    for i in 0..vocab_tokens {
        let len = c.i32(&format!("length of token {i}"))?;
        if !(0..=1024).contains(&len) {
            return Err(ModelError::invalid(
                path,
                format!("token {i}: implausible length {len}"),
            ));
        }
        skip(&mut c, len as u64, &format!("token {i}"))?;
    }
    let mut tensors = 0;
    loop {
        let mut first = [0u8; 4];
        let n = read_some(c.inner, &mut first).map_err(|e| ModelError::io(path, e))?;
        if n == 0 {
            break;
        }
        if n < 4 {
            return Err(ModelError::Truncated {
                path: path.to_path_buf(),
                what: format!("header of tensor {tensors}"),
            });
        }
        let n_dims = i32::from_le_bytes(first);
        let name_len = c.i32("tensor name length")?;
        let ttype = c.i32("tensor type")?;
        if !(1..=4).contains(&n_dims) || !(1..=256).contains(&name_len) {
            return Err(ModelError::invalid(
                path,
                format!(
                    "tensor {tensors}: implausible header (dims {n_dims}, name length {name_len})"
                ),
            ));
        }
        let mut elements: u64 = 1;
        for _ in 0..n_dims {
            let d = c.i32("tensor dimension")?;
            if d <= 0 {
                return Err(ModelError::invalid(
                    path,
                    format!("tensor {tensors}: dimension {d}"),
                ));
            }
            elements = elements.saturating_mul(d as u64);
        }
        let name = c.bytes(name_len as usize, "tensor name")?;
        let name = String::from_utf8_lossy(&name).into_owned();
        // Bytes per block of values: (values, bytes); quantized types pack 32 values a block.
        let (per, size) = match ttype {
            0 => (1, 4),
            1 => (1, 2),
            2 => (32, 18),
            3 => (32, 20),
            6 => (32, 22),
            7 => (32, 24),
            8 => (32, 34),
            other => {
                return Err(ModelError::invalid(
                    path,
                    format!("tensor {name}: unsupported tensor type {other}"),
                ));
            }
        };
        let data = (elements / per)
            .checked_mul(size)
            .filter(|&n| n <= MAX_TENSOR_BYTES)
            .ok_or_else(|| ModelError::invalid(path, format!("tensor {name}: implausible size")))?;
        skip(&mut c, data, &format!("data of tensor {name}"))?;
        tensors += 1;
    }
    if tensors == 0 {
        return Err(ModelError::Truncated {
            path: path.to_path_buf(),
            what: "no tensors after the vocabulary".into(),
        });
    }
    Ok(GgmlSummary {
        hparams,
        vocab_tokens: vocab_tokens as usize,
        tensors,
        bytes,
    })
}

fn read_some<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

fn skip<R: Read>(c: &mut Cursor<'_, R>, n: u64, what: &str) -> Result<(), ModelError> {
    let copied = io::copy(&mut c.inner.by_ref().take(n), &mut io::sink())
        .map_err(|e| ModelError::io(c.path, e))?;
    if copied != n {
        return Err(ModelError::Truncated {
            path: c.path.to_path_buf(),
            what: what.to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q8_0_blocks_hold_each_value_within_half_a_step() {
        let values: Vec<f32> = (0..64)
            .map(|i| ((i as f32) * 0.37).sin() * if i < 32 { 0.02 } else { 3.0 })
            .chain(std::iter::repeat_n(0.0, 32))
            .collect();
        let mut buf = Vec::new();
        push_q8_0(&values, &mut buf);
        assert_eq!(buf.len(), 3 * 34, "34 bytes a block of 32");
        for (block, chunk) in buf.chunks(34).zip(values.chunks(32)) {
            let scale = f16_to_f32(u16::from_le_bytes([block[0], block[1]]));
            let amax = chunk.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            assert!((scale - amax / 127.0).abs() <= amax / 127.0 * 1e-3);
            for (q, v) in block[2..].iter().zip(chunk) {
                let back = f32::from(*q as i8) * scale;
                assert!(
                    (back - v).abs() <= scale * 0.5 + amax * 1e-3,
                    "{v} -> {back}"
                );
            }
        }
        // An all-zero block has scale 0 and zero values, never NaN.
        assert!(buf[68..].iter().all(|b| *b == 0));
    }

    #[test]
    fn half_floats_round_trip() {
        for v in [
            0.0f32,
            1.0,
            -2.5,
            0.000_061_035_156,
            65504.0,
            1e-7,
            -0.333_251_95,
        ] {
            let back = f16_to_f32(f32_to_f16(v));
            assert!((back - v).abs() <= v.abs() * 1e-3 + 1e-7, "{v} -> {back}");
        }
        assert!(f16_to_f32(f32_to_f16(f32::INFINITY)).is_infinite());
    }

    #[test]
    fn mel_filters_match_librosa_shape_and_norm() {
        let f = mel_filters(16000.0, 400, 80);
        assert_eq!(f.len(), 80 * 201);
        // Slaney norm makes each triangle's area ≈ constant; the first filter peaks near bin 1.
        assert!(f[..201].iter().all(|v| *v >= 0.0));
        let first_peak = f[..201]
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i);
        assert_eq!(first_peak, Some(1));
        // librosa's value for filters.mel(16000, 400, 80)[0, 1] is 0.02486259.
        assert!((f[1] - 0.024_862_59).abs() < 1e-6, "{}", f[1]);
        // ...and the whole bank sums to 1.9990242 (whisper's own mel_filters.npz, mel_80).
        let sum: f64 = f.iter().map(|v| f64::from(*v)).sum();
        assert!((sum - 1.999_024_2).abs() < 1e-4, "{sum}");
    }

    #[test]
    fn byte_level_alphabet_covers_all_bytes() {
        let a = byte_level_alphabet();
        assert_eq!(a.len(), 256);
        assert_eq!(a.get(&'Ġ'), Some(&b' '));
        assert_eq!(a.get(&'!'), Some(&b'!'));
    }

    #[test]
    fn foreign_model_bin_names_the_problem() {
        let path = Path::new("model.bin");
        let err = read_ct2_variables(&mut &b"GGUF\x03\x00\x00\x00"[..], path).unwrap_err();
        assert!(err.to_string().contains("not a CTranslate2"), "{err}");
        let mut bytes = 6u32.to_le_bytes().to_vec();
        bytes.extend_from_slice(&5u16.to_le_bytes());
        bytes.extend_from_slice(b"Spec\0");
        let err = read_ct2_variables(&mut &bytes[..], path).unwrap_err();
        assert!(err.to_string().contains("WhisperSpec"), "{err}");
        let err = read_ct2_variables(&mut &bytes[..6], path).unwrap_err();
        assert!(matches!(err, ModelError::Truncated { .. }), "{err}");
    }
}
