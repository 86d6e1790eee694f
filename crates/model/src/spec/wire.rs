//! The table form of a [`ModelSpec`], in a config's `[models.NAME]` and in a model
//! folder: `type` names the model; a flat model's table holds its switcher's keys beside
//! `tower` and `batch_norm` (`bottom` for the shared bottom's layers, no switcher keys for
//! `single`), a tree model's the keys of a [`TreeSpec`].

use super::{FlatSpec, ModelSpec};
use crate::cgc::CgcShape;
use crate::keys;
use crate::mmoe::MmoeShape;
use crate::pepnet::PepnetSpec;
use crate::ple::PleShape;
use crate::shared_bottom::SharedBottomShape;
use crate::stem::StemSpec;
use crate::tree::TreeSpec;
use crate::unit::UnitSpec;
use serde::de::{Error, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use std::marker::PhantomData;

/// One variant per `type`, in the order error messages list them.
#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum Wire {
    SharedBottom(Towered<Bottom>),
    Mmoe(Towered<MmoeShape>),
    Single(Towered<NoKeys>),
    Cgc(Towered<CgcShape>),
    Ple(Towered<PleShape>),
    Hmtl(TreeSpec),
    Mfh(TreeSpec),
    Pepnet(PepnetSpec),
    Stem(StemSpec),
}

/// The shared bottom's layers under the flat model's key.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Bottom {
    bottom: Vec<usize>,
}

/// No switcher keys (`single`).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NoKeys {}

/// A switcher's keys `U` beside the towers' keys.
#[derive(Serialize)]
pub(super) struct Towered<U> {
    #[serde(flatten)]
    unit: U,
    tower: Vec<usize>,
    batch_norm: bool,
}

impl<'de, U: Deserialize<'de>> Deserialize<'de> for Towered<U> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Table<U>(PhantomData<U>);
        impl<'de, U: Deserialize<'de>> Visitor<'de> for Table<U> {
            type Value = Towered<U>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a model table")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Towered<U>, A::Error> {
                let (mut tower, mut batch_norm) = (None, None);
                let unit = keys::split(map, |key: &str, map: &mut A| match key {
                    "tower" => keys::take(&mut tower, "tower", map),
                    "batch_norm" => keys::take(&mut batch_norm, "batch_norm", map),
                    _ => Ok(false),
                })?;
                Ok(Towered {
                    unit,
                    tower: tower.ok_or_else(|| A::Error::missing_field("tower"))?,
                    batch_norm: batch_norm.unwrap_or(false),
                })
            }
        }
        d.deserialize_map(Table(PhantomData))
    }
}

impl<U> Towered<U> {
    fn flat(self, switcher: impl FnOnce(U) -> UnitSpec) -> ModelSpec {
        ModelSpec::Flat(FlatSpec {
            switcher: switcher(self.unit),
            tower: self.tower,
            batch_norm: self.batch_norm,
        })
    }
}

impl From<Wire> for ModelSpec {
    fn from(w: Wire) -> Self {
        match w {
            Wire::SharedBottom(t) => {
                t.flat(|b| UnitSpec::SharedBottom(SharedBottomShape { layers: b.bottom }))
            }
            Wire::Mmoe(t) => t.flat(UnitSpec::Mmoe),
            Wire::Single(t) => t.flat(|_| UnitSpec::Identity {}),
            Wire::Cgc(t) => t.flat(UnitSpec::Cgc),
            Wire::Ple(t) => t.flat(UnitSpec::Ple),
            Wire::Hmtl(t) => ModelSpec::Hmtl(t),
            Wire::Mfh(t) => ModelSpec::Mfh(t),
            Wire::Pepnet(p) => ModelSpec::Pepnet(p),
            Wire::Stem(s) => ModelSpec::Stem(s),
        }
    }
}

impl From<ModelSpec> for Wire {
    fn from(m: ModelSpec) -> Self {
        let f = match m {
            ModelSpec::Hmtl(t) => return Wire::Hmtl(t),
            ModelSpec::Mfh(t) => return Wire::Mfh(t),
            ModelSpec::Pepnet(p) => return Wire::Pepnet(p),
            ModelSpec::Stem(s) => return Wire::Stem(s),
            ModelSpec::Flat(f) => f,
        };
        let (tower, batch_norm) = (f.tower, f.batch_norm);
        match f.switcher {
            UnitSpec::SharedBottom(s) => Wire::SharedBottom(Towered {
                unit: Bottom { bottom: s.layers },
                tower,
                batch_norm,
            }),
            UnitSpec::Mmoe(s) => Wire::Mmoe(Towered {
                unit: s,
                tower,
                batch_norm,
            }),
            UnitSpec::Identity {} => Wire::Single(Towered {
                unit: NoKeys {},
                tower,
                batch_norm,
            }),
            UnitSpec::Cgc(s) => Wire::Cgc(Towered {
                unit: s,
                tower,
                batch_norm,
            }),
            UnitSpec::Ple(s) => Wire::Ple(Towered {
                unit: s,
                tower,
                batch_norm,
            }),
        }
    }
}
