//! `identity`: the raw bytes in the model dtype — the uncompressed baseline through the plugin path.

use serde::{Deserialize, Serialize};
use splitbench_plugin_api::{
    export_plugin, params, wire, Codec, CodecError, CodecInfo, DType, PluginInfo, TensorView,
};

#[derive(Debug, Default, Serialize, Deserialize)]
struct NoParams {}

pub fn info() -> PluginInfo {
    PluginInfo {
        name: "identity".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        description:
            "Raw bytes in the model dtype: the uncompressed baseline through the plugin path".into(),
        codecs: vec![CodecInfo::new::<NoParams>(
            "identity",
            "the hidden state's bytes as they are (2 bytes per element for bf16/f16, 4 for f32)",
            &[],
        )],
    }
}

pub fn new_codec(name: &str, params_json: &str) -> Result<Box<dyn Codec>, CodecError> {
    match name {
        "identity" => {
            params::parse::<NoParams>(name, params_json)?;
            Ok(Box::new(Identity))
        }
        other => Err(info().unknown_codec(other)),
    }
}

export_plugin!(info, new_codec);

pub struct Identity;

impl Codec for Identity {
    fn encode(&mut self, input: &TensorView<'_>) -> Result<Vec<u8>, CodecError> {
        Ok(input.bytes().to_vec())
    }

    fn decode(
        &mut self,
        wire: &[u8],
        shape: &[usize],
        dtype: DType,
    ) -> Result<Vec<u8>, CodecError> {
        wire::expect_len(wire, wire::raw_len(shape, dtype)?)?;
        Ok(wire.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_is_the_raw_bytes() {
        let raw = [1u8, 2, 3, 4, 5, 6, 7, 8];
        let shape = [1, 1, 4];
        let view = TensorView::new(DType::BF16, &shape, &raw).unwrap();
        let wire = Identity.encode(&view).unwrap();
        assert_eq!(wire, raw);
        assert_eq!(Identity.decode(&wire, &shape, DType::BF16).unwrap(), raw);
        assert!(Identity.decode(&wire[..7], &shape, DType::BF16).is_err());
    }

    #[test]
    fn rejects_params() {
        let err = new_codec("identity", r#"{"level": 1}"#).err().unwrap();
        assert!(err.to_string().contains("`level`"));
    }
}
