//! The fitted states' common frame: a 4-byte magic naming the codec, a u32 format version and
//! the u32 hidden size fitted to, then the codec's own tables (little-endian). A state is read
//! back in full or refused: wrong magic or version, a length that disagrees with its header,
//! trailing bytes, or a non-finite value.

use splitbench_plugin_api::{
    convert::bytes_to_f32,
    wire::{self, WireReader},
    CodecError, DType,
};

const VERSION: u32 = 1;

/// The header of a state for the codec `magic` names, fitted to `hidden`.
pub fn header(magic: &[u8; 4], hidden: usize) -> Vec<u8> {
    let mut state = magic.to_vec();
    state.extend_from_slice(&VERSION.to_le_bytes());
    put_u32(&mut state, hidden);
    state
}

/// Hidden sizes and counts are u32 in a state; the codecs refuse larger ones when fitting.
pub fn put_u32(state: &mut Vec<u8>, value: usize) {
    state.extend_from_slice(&(value as u32).to_le_bytes());
}

pub fn put_f32s(state: &mut Vec<u8>, values: impl IntoIterator<Item = f32>) {
    for v in values {
        state.extend_from_slice(&v.to_le_bytes());
    }
}

/// Reads a state of `codec` back.
pub struct StateReader<'a> {
    codec: &'static str,
    reader: WireReader<'a>,
    pub hidden: usize,
}

impl<'a> StateReader<'a> {
    /// Checks the magic and version and reads the hidden size (at least 1).
    pub fn open(state: &'a [u8], magic: &[u8; 4], codec: &'static str) -> Result<Self, CodecError> {
        let mut reader = WireReader::new(state);
        let refused = |why: &str| {
            CodecError::new(format!(
                "this is not a calibration state of `{codec}` ({why}); calibrate again"
            ))
        };
        if reader.take(4).ok() != Some(&magic[..]) {
            return Err(refused("its magic differs"));
        }
        if reader.u32().ok() != Some(VERSION) {
            return Err(refused("its format version differs"));
        }
        let hidden = reader.u32().map_err(|_| refused("it is truncated"))? as usize;
        if hidden == 0 {
            return Err(refused("its hidden size is 0"));
        }
        Ok(StateReader {
            codec,
            reader,
            hidden,
        })
    }

    fn error(&self, e: CodecError) -> CodecError {
        CodecError::new(format!("calibration state of `{}`: {e}", self.codec))
    }

    pub fn u32(&mut self) -> Result<usize, CodecError> {
        let v = self.reader.u32().map_err(|e| self.error(e))?;
        Ok(v as usize)
    }

    /// `count` finite f32 values; the length is checked before anything is allocated.
    pub fn f32s(&mut self, count: usize) -> Result<Vec<f32>, CodecError> {
        let bytes = count
            .checked_mul(4)
            .ok_or_else(|| self.error(CodecError::new("table size overflows")))?;
        let bytes = self.reader.take(bytes).map_err(|e| self.error(e))?;
        let values = bytes_to_f32(bytes, DType::F32);
        if values.iter().any(|v| !v.is_finite()) {
            return Err(self.error(CodecError::new("a table holds NaN/Inf")));
        }
        Ok(values)
    }

    /// Errors unless every byte was read.
    pub fn finish(self) -> Result<(), CodecError> {
        let error = |e| CodecError::new(format!("calibration state of `{}`: {e}", self.codec));
        self.reader.finish().map_err(error)
    }
}

/// Rows of a tensor of `shape`, which must have the hidden size `codec` was fitted to.
pub fn fitted_rows(shape: &[usize], hidden: usize, codec: &str) -> Result<usize, CodecError> {
    let (rows, given) = wire::rows_and_hidden(shape)?;
    if given != hidden {
        return Err(CodecError::new(format!(
            "`{codec}` was calibrated for hidden size {hidden}; this tensor's is {given}"
        )));
    }
    Ok(rows)
}

/// Samples' hidden size, which a state stores as u32, and token count (at least one).
pub fn sample_dims(shape: &[usize], codec: &str) -> Result<(usize, usize), CodecError> {
    let (rows, hidden) = wire::rows_and_hidden(shape)?;
    if rows == 0 || hidden == 0 {
        return Err(CodecError::new(format!(
            "`{codec}` cannot be calibrated on an empty tensor ({shape:?})"
        )));
    }
    if u32::try_from(hidden).is_err() {
        return Err(CodecError::new(format!(
            "hidden size {hidden} is too large"
        )));
    }
    Ok((rows, hidden))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_reads_back() {
        let mut state = header(b"TEST", 3);
        put_f32s(&mut state, [1.0, -2.0, 0.5]);
        assert_eq!(&state[..12], b"TEST\x01\0\0\0\x03\0\0\0");
        let mut reader = StateReader::open(&state, b"TEST", "test").unwrap();
        assert_eq!(reader.hidden, 3);
        assert_eq!(reader.f32s(3).unwrap(), [1.0, -2.0, 0.5]);
        reader.finish().unwrap();
    }

    #[test]
    fn hostile_states_are_refused() {
        let mut state = header(b"TEST", 2);
        put_f32s(&mut state, [1.0, f32::NAN]);
        let err = StateReader::open(&state, b"ABCD", "test").err().unwrap();
        assert!(err.to_string().contains("magic"), "{err}");
        let mut reader = StateReader::open(&state, b"TEST", "test").unwrap();
        assert!(reader.f32s(2).is_err());
        let mut reader = StateReader::open(&state, b"TEST", "test").unwrap();
        assert!(reader.f32s(usize::MAX / 2).is_err());
        assert!(StateReader::open(&header(b"TEST", 0), b"TEST", "test").is_err());
    }

    #[test]
    fn wrong_hidden_is_named() {
        let err = fitted_rows(&[2, 3, 8], 16, "pca").unwrap_err().to_string();
        assert!(
            err.contains("hidden size 16") && err.contains("is 8"),
            "{err}"
        );
        assert_eq!(fitted_rows(&[2, 3, 16], 16, "pca").unwrap(), 6);
    }
}
