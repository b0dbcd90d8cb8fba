//! A PCI function any transport can present: config space and capabilities, and the
//! interrupt vectors behind MSI-X / INTx.

pub mod config_space;
pub mod msix;

pub use config_space::{BarLayout, ConfigSpace, PciIds};
pub use msix::Interrupts;
