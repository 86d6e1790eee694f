//! `[models.NAME]`: named model sections. Here only "a table with a `type`"; what the
//! other keys mean is checked by `mfh-train` when it builds the model.

use crate::schema::check::Check;
use crate::ConfigError;
use std::collections::BTreeMap;

/// Every model section names its `type`.
pub(crate) fn validate(
    models: &BTreeMap<String, toml::Table>,
    c: &Check,
) -> Result<(), ConfigError> {
    for (name, m) in models {
        if !m.contains_key("type") {
            return c.fail(
                format!("models.{name}.type"),
                "missing (e.g. \"mmoe\" or \"shared_bottom\")",
            );
        }
    }
    Ok(())
}
