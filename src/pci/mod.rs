//! A PCI function any transport can present: config space and capabilities. (to be written)
