//! A namespace: its LBA format, copy limits and backing store.
//!
//! STUB: the model work fills this in.

use crate::config::{ConfigError, NamespaceConfig};

pub struct Namespace {
    pub nsid: u32,
    pub cfg: NamespaceConfig,
}

impl Namespace {
    /// Opens (or creates) the backing store. Errors name the option at fault.
    pub fn open(cfg: &NamespaceConfig, nsid: u32) -> Result<Namespace, ConfigError> {
        cfg.validate()?;
        Ok(Namespace {
            nsid,
            cfg: cfg.clone(),
        })
    }
}
