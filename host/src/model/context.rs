//! What every layer of one batch shares, on each device the layers run on: the rows'
//! lengths, the rotary tables and, only where candle's ops must run attention, the masks.

use std::cell::RefCell;
use std::rc::Rc;

use candle_core::{DType, Device, Tensor};

use super::mask::attention_mask;
use super::rope::Rotary;
use super::ModelError;

type Result<T> = std::result::Result<T, ModelError>;

/// The keys and values each layer has seen, `[batch, kv_heads, tokens, head_dim]` after
/// RoPE, so that generation runs one new token at a time. Each layer's are written into a
/// buffer of room for `tokens` positions (candle-nn's cache, grown by as much again when
/// full), so a step copies only its new keys and values, not the whole cache.
pub struct KvCache {
    tokens: usize,
    layers: RefCell<Vec<Option<candle_nn::kv_cache::KvCache>>>,
}

impl KvCache {
    /// A cache with room for `tokens` positions per layer before it grows.
    pub fn new(tokens: usize) -> KvCache {
        KvCache {
            tokens: tokens.max(1),
            layers: RefCell::new(Vec::new()),
        }
    }

    /// Tokens cached so far.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.layers
            .borrow()
            .first()
            .and_then(|l| l.as_ref())
            .map_or(0, |c| c.current_seq_len())
    }

    /// Layer `i`'s keys and values with `k`, `v` appended: views of the layer's buffer.
    pub(super) fn extend(&self, i: usize, k: Tensor, v: Tensor) -> Result<(Tensor, Tensor)> {
        let mut layers = self.layers.borrow_mut();
        if layers.len() <= i {
            layers.resize(i + 1, None);
        }
        let cache =
            layers[i].get_or_insert_with(|| candle_nn::kv_cache::KvCache::new(2, self.tokens));
        Ok(cache.append(&k.contiguous()?, &v.contiguous()?)?)
    }
}

/// The per-device contexts of one batch and which one each layer uses.
pub struct BatchContext {
    per_device: Vec<DeviceContext>,
    /// Index into `per_device` of each layer's device.
    of_layer: Vec<usize>,
    /// Generation: the cache the layers read and extend, and the position of the batch's first
    /// token.
    pub(super) cache: Option<(Rc<KvCache>, usize)>,
}

impl BatchContext {
    /// For a right-padded batch whose rows hold `lengths` real tokens out of `t`, with the
    /// layers on `layer_devices`. Positions restart at 0 in every row, as for separate windows.
    pub(super) fn new(
        lengths: &[usize],
        t: usize,
        layer_devices: &[Device],
        rotaries: &[Rotary],
        dtype: DType,
        cache: Option<Rc<KvCache>>,
    ) -> Result<BatchContext> {
        let start = cache.as_ref().map_or(0, |c| c.len());
        let mut per_device: Vec<(Device, DeviceContext)> = Vec::new();
        let mut of_layer = Vec::with_capacity(layer_devices.len());
        for device in layer_devices {
            let at = match per_device.iter().position(|(d, _)| d.same_device(device)) {
                Some(at) => at,
                None => {
                    let ctx = DeviceContext::new(lengths, (start, t), device, rotaries, dtype)?;
                    per_device.push((device.clone(), ctx));
                    per_device.len() - 1
                }
            };
            of_layer.push(at);
        }
        Ok(BatchContext {
            per_device: per_device.into_iter().map(|(_, c)| c).collect(),
            of_layer,
            cache: cache.map(|c| (c, start)),
        })
    }

    /// Layer `i`'s context.
    pub(super) fn of_layer(&self, i: usize) -> &DeviceContext {
        &self.per_device[self.of_layer[i]]
    }
}

/// cos and sin of one `Rotary` for the batch's positions, `[t, rotary_dim / 2]`.
pub(super) struct RopeTables {
    /// In the model's dtype, for candle's RoPE.
    pub cos: Tensor,
    pub sin: Tensor,
    /// In f32, for the CPU's RoPE kernel.
    pub cos_f32: Vec<f32>,
    pub sin_f32: Vec<f32>,
    pub rotary_dim: usize,
}

pub(super) struct DeviceContext {
    /// Real tokens per row (the rest is padding).
    pub lengths: Vec<usize>,
    /// Off the CPU, `lengths` as u32 on the device, which the fused kernel masks by (the CPU's
    /// kernel reads `lengths`).
    pub lengths_on_device: Option<Tensor>,
    /// Made only if candle's ops must run attention: the additive mask `[batch, 1, t, t]` per
    /// sliding window, built by the first layer that needs it.
    masks: RefCell<Vec<(Option<usize>, Tensor)>>,
    pub ropes: Vec<RopeTables>,
}

impl DeviceContext {
    /// Rotary tables for positions `start..start + t`.
    fn new(
        lengths: &[usize],
        (start, t): (usize, usize),
        device: &Device,
        rotaries: &[Rotary],
        dtype: DType,
    ) -> Result<DeviceContext> {
        let lengths_on_device = match device {
            Device::Cpu => None,
            _ => {
                let rows: Vec<u32> = lengths.iter().map(|&n| n as u32).collect();
                Some(Tensor::from_vec(rows, lengths.len(), device)?)
            }
        };
        let longest = start + lengths.iter().copied().max().unwrap_or(0);
        let ropes = rotaries
            .iter()
            .map(|r| {
                let (cos_f32, sin_f32) = r.tables(start, t, longest);
                let half = r.rotary_dim / 2;
                let table = |v: &[f32]| Tensor::from_slice(v, (t, half), device)?.to_dtype(dtype);
                Ok(RopeTables {
                    cos: table(&cos_f32)?,
                    sin: table(&sin_f32)?,
                    cos_f32,
                    sin_f32,
                    rotary_dim: r.rotary_dim,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(DeviceContext {
            lengths: lengths.to_vec(),
            lengths_on_device,
            masks: RefCell::new(Vec::new()),
            ropes,
        })
    }

    /// The additive mask for `window` on `device`, made once per batch.
    pub fn mask(&self, window: Option<usize>, t: usize, device: &Device) -> Result<Tensor> {
        if let Some((_, m)) = self.masks.borrow().iter().find(|(w, _)| *w == window) {
            return Ok(m.clone());
        }
        let m = attention_mask(&self.lengths, t, window, device)?;
        self.masks.borrow_mut().push((window, m.clone()));
        Ok(m)
    }
}
