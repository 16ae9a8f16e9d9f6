//! safetensors files: named float arrays plus string metadata, written atomically and read
//! with every header check of Hugging Face's reference implementation (`fg.save`/`fg.load`).
//!
//! Arrays are written as plain little-endian `F32`/`F64`/`I64`/`I32`/`BOOL`, so other
//! safetensors tools open them. Reading also takes `F16`, `BF16` and the other integer types,
//! converted by the dtype rules of docs/design.md: float16/bfloat16 become float32, other
//! integers int64.

use std::borrow::{Borrow, Cow};
use std::collections::{HashMap, HashSet};
use std::path::Path;

use safetensors::{Dtype, SafeTensorError, SafeTensors, View};

use crate::dynarray::DynArray;
use crate::ndarray::{try_with_capacity, NdArray};
use crate::{Error, Result};

/// The header key safetensors reserves for the metadata map.
const METADATA_KEY: &str = "__metadata__";

/// Named arrays in file order, and the file's string metadata.
pub type Loaded = (Vec<(String, DynArray)>, HashMap<String, String>);

/// One array as the safetensors writer sees it: bytes produced on demand, one tensor at a time.
struct ArrayView<'a>(&'a DynArray);

impl View for ArrayView<'_> {
    fn dtype(&self) -> Dtype {
        match self.0 {
            DynArray::F32(_) => Dtype::F32,
            DynArray::F64(_) => Dtype::F64,
            DynArray::I64(_) => Dtype::I64,
            DynArray::I32(_) => Dtype::I32,
            DynArray::Bool(_) => Dtype::BOOL,
        }
    }

    fn shape(&self) -> &[usize] {
        self.0.shape()
    }

    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Owned(match self.0 {
            DynArray::F32(a) => a.data().iter().flat_map(|x| x.to_le_bytes()).collect(),
            DynArray::F64(a) => a.data().iter().flat_map(|x| x.to_le_bytes()).collect(),
            DynArray::I64(a) => a.data().iter().flat_map(|x| x.to_le_bytes()).collect(),
            DynArray::I32(a) => a.data().iter().flat_map(|x| x.to_le_bytes()).collect(),
            DynArray::Bool(a) => a.data().iter().map(|&x| u8::from(x)).collect(),
        })
    }

    fn data_len(&self) -> usize {
        self.0.size() * self.0.dtype().itemsize()
    }
}

/// Writes `tensors` (name, array) and optional string `metadata` to a safetensors file at
/// `path`. The file is written beside `path` under a temporary name and renamed into place,
/// so a reader never sees half a file and a failed save leaves any old file intact.
pub fn save_safetensors<S, A>(
    path: impl AsRef<Path>,
    tensors: &[(S, A)],
    metadata: Option<HashMap<String, String>>,
) -> Result<()>
where
    S: AsRef<str>,
    A: Borrow<DynArray>,
{
    let path = path.as_ref();
    let mut seen = HashSet::new();
    for (name, _) in tensors {
        let name = name.as_ref();
        if name == METADATA_KEY {
            return Err(Error::Value(format!(
                "save: {METADATA_KEY:?} is reserved by the safetensors format and cannot name a tensor"
            )));
        }
        if !seen.insert(name) {
            return Err(Error::Value(format!(
                "save: the tensor name {name:?} appears twice"
            )));
        }
    }
    let views = tensors
        .iter()
        .map(|(name, array)| (name.as_ref(), ArrayView(array.borrow())));
    safetensors::serialize_to_file(views, metadata, path).map_err(|e| match e {
        SafeTensorError::IoError(io) => {
            Error::Value(format!("save: cannot write {}: {io}", path.display()))
        }
        other => Error::Value(format!("save: cannot write {}: {other}", path.display())),
    })
}

/// Reads a safetensors file: its arrays in file order, and its metadata (empty when none).
/// A truncated or corrupt file is an `Error::Value` saying it is not a valid safetensors file.
pub fn load_safetensors(path: impl AsRef<Path>) -> Result<Loaded> {
    let path = path.as_ref();
    let bytes = std::fs::read(path)
        .map_err(|e| Error::Value(format!("load: cannot read {}: {e}", path.display())))?;
    let not_safetensors = |e: SafeTensorError| {
        Error::Value(format!(
            "load: {} is not a valid safetensors file (truncated or corrupt?): {e}",
            path.display()
        ))
    };
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(not_safetensors)?;
    let file = SafeTensors::deserialize(&bytes).map_err(not_safetensors)?;
    let mut arrays = Vec::with_capacity(file.len());
    for name in header.offset_keys() {
        let view = file.tensor(&name).map_err(not_safetensors)?;
        let array = array_from_bytes(&name, view.dtype(), view.shape(), view.data())?;
        arrays.push((name, array));
    }
    Ok((arrays, header.metadata().clone().unwrap_or_default()))
}

/// Decodes a tensor's little-endian bytes into an array of the matching dtype.
fn array_from_bytes(name: &str, dtype: Dtype, shape: &[usize], bytes: &[u8]) -> Result<DynArray> {
    Ok(match dtype {
        Dtype::F64 => DynArray::F64(decode(shape, bytes, f64::from_le_bytes)?),
        Dtype::F32 => DynArray::F32(decode(shape, bytes, f32::from_le_bytes)?),
        Dtype::F16 => DynArray::F32(decode(shape, bytes, |b| f16_to_f32(u16::from_le_bytes(b)))?),
        Dtype::BF16 => DynArray::F32(decode(shape, bytes, |b| {
            f32::from_bits(u32::from(u16::from_le_bytes(b)) << 16)
        })?),
        Dtype::I64 => DynArray::I64(decode(shape, bytes, i64::from_le_bytes)?),
        Dtype::I32 => DynArray::I32(decode(shape, bytes, i32::from_le_bytes)?),
        Dtype::BOOL => DynArray::Bool(decode(shape, bytes, |b: [u8; 1]| b[0] != 0)?),
        // Other integer kinds become int64, as NumPy's do.
        Dtype::U64 => DynArray::I64(decode(shape, bytes, |b| u64::from_le_bytes(b) as i64)?),
        Dtype::U32 => DynArray::I64(decode(shape, bytes, |b| i64::from(u32::from_le_bytes(b)))?),
        Dtype::I16 => DynArray::I64(decode(shape, bytes, |b| i64::from(i16::from_le_bytes(b)))?),
        Dtype::U16 => DynArray::I64(decode(shape, bytes, |b| i64::from(u16::from_le_bytes(b)))?),
        Dtype::I8 => DynArray::I64(decode(shape, bytes, |b: [u8; 1]| {
            i64::from(i8::from_le_bytes(b))
        })?),
        Dtype::U8 => DynArray::I64(decode(shape, bytes, |b: [u8; 1]| i64::from(b[0]))?),
        other => {
            return Err(Error::Value(format!(
                "load: tensor {name:?} has dtype {other:?}, which ferrograd cannot read \
                 (supported: F64, F32, F16, BF16, integers and BOOL)"
            )))
        }
    })
}

/// Decodes `N`-byte little-endian elements (the header was validated: sizes agree).
fn decode<T: Clone, const N: usize>(
    shape: &[usize],
    bytes: &[u8],
    element: impl Fn([u8; N]) -> T,
) -> Result<NdArray<T>> {
    let mut data = try_with_capacity(bytes.len() / N)?;
    data.extend(bytes.chunks_exact(N).map(|chunk| {
        let mut b = [0u8; N];
        b.copy_from_slice(chunk);
        element(b)
    }));
    NdArray::from_vec(data, shape)
}

/// IEEE half precision to single precision, exactly (every f16 is an f32).
fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exponent = u32::from((h >> 10) & 0x1f);
    let mantissa = u32::from(h & 0x3ff);
    let magnitude = match (exponent, mantissa) {
        (0, 0) => 0,
        // Subnormal: mantissa · 2^-24, exact in f32.
        (0, m) => (m as f32 * f32::powi(2.0, -24)).to_bits(),
        (0x1f, 0) => 0x7f80_0000,
        (0x1f, m) => 0x7fc0_0000 | (m << 13),
        (e, m) => ((e + 127 - 15) << 23) | (m << 13),
    };
    f32::from_bits(sign | magnitude)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DType;

    fn temp_path(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("ferrograd-io-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    fn array(values: &[f64], shape: &[usize], dtype: DType) -> DynArray {
        DynArray::from_f64(values.to_vec(), shape, dtype).unwrap()
    }

    #[test]
    fn both_dtypes_scalars_and_empty_arrays_round_trip_with_metadata() {
        let path = temp_path("round_trip.safetensors");
        let tensors = vec![
            (
                "weight".to_string(),
                array(&[1.5, -2.0, 3.25, 1e-30, 7.0, 8.0], &[2, 3], DType::F32),
            ),
            ("bias".to_string(), array(&[0.1, 0.2], &[2], DType::F64)),
            ("scalar".to_string(), array(&[42.0], &[], DType::F64)),
            ("empty".to_string(), array(&[], &[0, 3], DType::F32)),
        ];
        let metadata = HashMap::from([("format".to_string(), "ferrograd".to_string())]);
        save_safetensors(&path, &tensors, Some(metadata.clone())).unwrap();
        let (loaded, meta) = load_safetensors(&path).unwrap();
        assert_eq!(meta, metadata);
        let mut want = tensors.clone();
        want.sort_by(|a, b| a.0.cmp(&b.0));
        let mut got = loaded;
        got.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(got, want);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_file_without_metadata_or_tensors_loads_empty() {
        let path = temp_path("empty.safetensors");
        save_safetensors::<&str, DynArray>(&path, &[], None).unwrap();
        let (loaded, meta) = load_safetensors(&path).unwrap();
        assert!(loaded.is_empty() && meta.is_empty());
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn saving_borrowed_arrays_overwrites_an_existing_file() {
        let path = temp_path("overwrite.safetensors");
        let a = array(&[1.0], &[1], DType::F32);
        save_safetensors(&path, &[("a", &a)], None).unwrap();
        let b = array(&[2.0, 3.0], &[2], DType::F64);
        save_safetensors(&path, &[("b", &b)], None).unwrap();
        let (loaded, _) = load_safetensors(&path).unwrap();
        assert_eq!(loaded, vec![("b".to_string(), b)]);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn truncated_and_garbage_files_are_not_valid_safetensors_files() {
        let path = temp_path("truncated.safetensors");
        let a = array(&[1.0, 2.0, 3.0], &[3], DType::F64);
        save_safetensors(&path, &[("a", &a)], None).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        for cut in [bytes.len() - 1, bytes.len() - 8, 12, 4, 0] {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            let err = load_safetensors(&path).unwrap_err();
            assert!(
                matches!(&err, Error::Value(m) if m.contains("not a valid safetensors file")),
                "cut at {cut}: {err:?}"
            );
        }
        std::fs::write(&path, b"this is not a safetensors file at all, just text").unwrap();
        let err = load_safetensors(&path).unwrap_err();
        assert!(matches!(&err, Error::Value(m) if m.contains("not a valid safetensors file")));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_missing_file_is_an_error_naming_it() {
        let err = load_safetensors(temp_path("does-not-exist.safetensors")).unwrap_err();
        assert!(matches!(&err, Error::Value(m) if m.contains("does-not-exist")));
    }

    #[test]
    fn reserved_and_repeated_names_are_rejected() {
        let path = temp_path("names.safetensors");
        let a = array(&[1.0], &[1], DType::F32);
        assert!(save_safetensors(&path, &[("__metadata__", &a)], None).is_err());
        assert!(save_safetensors(&path, &[("x", &a), ("x", &a)], None).is_err());
    }

    /// A file with one tensor of `dtype` holding `data`, built by hand.
    fn raw_file(dtype: &str, shape: &str, data: &[u8]) -> Vec<u8> {
        let header = format!(
            r#"{{"t":{{"dtype":"{dtype}","shape":{shape},"data_offsets":[0,{}]}}}}"#,
            data.len()
        );
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend(header.as_bytes());
        out.extend(data);
        out
    }

    #[test]
    fn half_bfloat_integer_and_bool_tensors_load_as_float32() {
        let path = temp_path("dtypes.safetensors");
        let halves: Vec<u8> = [0x3c00u16, 0xc000, 0x0001, 0x7c00, 0x3555]
            .iter()
            .flat_map(|h| h.to_le_bytes())
            .collect();
        let cases: Vec<(&str, Vec<u8>, Vec<f32>)> = vec![
            (
                "F16",
                halves,
                vec![1.0, -2.0, 5.960_464_5e-8, f32::INFINITY, 0.333_251_95],
            ),
            (
                "BF16",
                [0x3f80u16, 0xc040, 0, 0x4120, 0x3e80]
                    .iter()
                    .flat_map(|h| h.to_le_bytes())
                    .collect(),
                vec![1.0, -3.0, 0.0, 10.0, 0.25],
            ),
            (
                "I64",
                [1i64, -2, 3, 0, 100]
                    .iter()
                    .flat_map(|x| x.to_le_bytes())
                    .collect(),
                vec![1.0, -2.0, 3.0, 0.0, 100.0],
            ),
            (
                "I32",
                [7i32, -7, 0, 1, 2]
                    .iter()
                    .flat_map(|x| x.to_le_bytes())
                    .collect(),
                vec![7.0, -7.0, 0.0, 1.0, 2.0],
            ),
            ("BOOL", vec![1, 0, 1, 1, 0], vec![1.0, 0.0, 1.0, 1.0, 0.0]),
        ];
        for (dtype, data, want) in cases {
            std::fs::write(&path, raw_file(dtype, "[5]", &data)).unwrap();
            let (loaded, _) = load_safetensors(&path).unwrap();
            assert_eq!(loaded.len(), 1);
            match &loaded[0].1 {
                DynArray::F32(a) => assert_eq!(a.data(), &want[..], "{dtype}"),
                other => panic!("{dtype} loaded as {other:?}"),
            }
        }
        std::fs::write(&path, raw_file("C64", "[1]", &[0; 8])).unwrap();
        let err = load_safetensors(&path).unwrap_err();
        assert!(
            matches!(&err, Error::Value(m) if m.contains("C64")),
            "{err:?}"
        );
        std::fs::remove_file(&path).unwrap();
    }
}
