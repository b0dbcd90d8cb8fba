//! A small NVMe host driver over the vfio-user test client (filled in once the model
//! lands).
