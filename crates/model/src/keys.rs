//! Serde for one table holding another type's keys beside a few keys of its own: a flat
//! model's table is its switcher's keys plus `tower` and `batch_norm`, a PLE's is a CGC
//! level's keys plus `levels`. The own keys are taken out as they come; the rest are
//! read as the inner type, which still refuses keys it does not know.

use serde::de::{DeserializeSeed, Deserializer, Error, IntoDeserializer, MapAccess, Visitor};
use serde::Deserialize;

/// Reads `U` from the entries of `map` that `own` does not take: `own(key, map)` reads
/// the value of a key of its own and returns true, or returns false for `U`'s keys.
pub(crate) fn split<'de, U, A, F>(map: A, own: F) -> Result<U, A::Error>
where
    U: Deserialize<'de>,
    A: MapAccess<'de>,
    F: FnMut(&str, &mut A) -> Result<bool, A::Error>,
{
    U::deserialize(OwnKeys { map, own })
}

/// Reads the value of an own key into `slot`, refusing a second one.
pub(crate) fn take<'de, V, A>(
    slot: &mut Option<V>,
    key: &'static str,
    map: &mut A,
) -> Result<bool, A::Error>
where
    V: Deserialize<'de>,
    A: MapAccess<'de>,
{
    if slot.is_some() {
        return Err(A::Error::duplicate_field(key));
    }
    *slot = Some(map.next_value()?);
    Ok(true)
}

/// The map without the own keys, as a deserializer of the inner type.
struct OwnKeys<A, F> {
    map: A,
    own: F,
}

impl<'de, A, F> MapAccess<'de> for OwnKeys<A, F>
where
    A: MapAccess<'de>,
    F: FnMut(&str, &mut A) -> Result<bool, A::Error>,
{
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        while let Some(key) = self.map.next_key::<String>()? {
            if !(self.own)(&key, &mut self.map)? {
                return seed.deserialize(key.into_deserializer()).map(Some);
            }
        }
        Ok(None)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.map.next_value_seed(seed)
    }
}

impl<'de, A, F> Deserializer<'de> for OwnKeys<A, F>
where
    A: MapAccess<'de>,
    F: FnMut(&str, &mut A) -> Result<bool, A::Error>,
{
    type Error = A::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, A::Error> {
        visitor.visit_map(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}
