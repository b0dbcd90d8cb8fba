//! Byte-addressed stores (files, block devices, memfd). Knows nothing of NVMe. (to be written)
