//! NumPy `.npz` archives (both the name → array layout and the `arr_0` … positional one).

use std::io::Read;

use neural_style_weights::{clip, WeightsError};

use crate::source::{permute, RawTensor, TensorDict};

pub(crate) struct NpzDict<'a> {
    pub(crate) archive: npyz::npz::NpzArchive<std::io::Cursor<&'a [u8]>>,
}

impl NpzDict<'_> {
    fn open(&mut self, name: &str) -> Result<npyz::NpyFile<impl Read + '_>, WeightsError> {
        self.archive
            .by_name(name)
            .map_err(|e| WeightsError::corrupt(format!("array '{}': {e}", clip(name))))?
            .ok_or_else(|| WeightsError::corrupt(format!("array '{}' vanished", clip(name))))
    }
}

impl TensorDict for NpzDict<'_> {
    fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.archive.array_names().map(str::to_string).collect();
        v.sort();
        v
    }
    fn shape(&mut self, name: &str) -> Result<Vec<usize>, WeightsError> {
        let f = self.open(name)?;
        f.shape()
            .iter()
            .map(|&d| usize::try_from(d).map_err(|_| WeightsError::corrupt("dimension too large")))
            .collect()
    }
    fn read(&mut self, name: &str) -> Result<RawTensor, WeightsError> {
        use npyz::{DType, TypeChar};
        let f = self.open(name)?;
        let shape: Vec<usize> = f.shape().iter().map(|&d| d as usize).collect();
        let fortran = f.order() == npyz::Order::Fortran;
        let dtype = f.dtype();
        let bad = |e: std::io::Error| WeightsError::corrupt(format!("array '{}': {e}", clip(name)));
        let data: Vec<f32> = match &dtype {
            DType::Plain(ts) if ts.type_char() == TypeChar::Float && ts.size_field() == 4 => {
                f.into_vec::<f32>().map_err(bad)?
            }
            DType::Plain(ts) if ts.type_char() == TypeChar::Float && ts.size_field() == 8 => {
                f.into_vec::<f64>().map_err(bad)?.into_iter().map(|v| v as f32).collect()
            }
            other => return Err(WeightsError::dtype(clip(name), other.descr())),
        };
        let t = if fortran {
            // Fortran order is C order of the reversed shape; permute it back.
            let rev: Vec<usize> = shape.iter().rev().copied().collect();
            let perm: Vec<usize> = (0..shape.len()).rev().collect();
            let c = RawTensor { name: name.to_string(), shape: rev, data };
            permute(&c, &perm).ok_or_else(|| WeightsError::corrupt(format!("array '{}' has a bad size", clip(name))))?
        } else {
            RawTensor { name: name.to_string(), shape, data }
        };
        if t.data.len() != t.shape.iter().product::<usize>() {
            return Err(WeightsError::corrupt(format!("array '{}' is truncated", clip(name))));
        }
        Ok(t)
    }
}

/// Source formats, recognised by content.
pub(crate) fn zip_names(bytes: &[u8]) -> Result<Vec<String>, WeightsError> {
    let archive = npyz::npz::NpzArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| WeightsError::corrupt(format!("zip archive cannot be read, probably truncated ({e})")))?;
    let mut archive = archive;
    Ok(archive.zip_archive().file_names().map(str::to_string).collect())
}
