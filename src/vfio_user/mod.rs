//! The vfio-user transport: knows the wire, not NVMe. (to be written)
