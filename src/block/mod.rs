//! The transport-neutral block layer: byte stores (files, block devices, memfds) and
//! volumes (a store as logical blocks with the operations every front end needs).
//!
//! It knows files, not NVMe or virtio. `unsafe` is allowed here only in `file.rs`
//! (preadv/pwritev into guest-memory slices, ioctls, copy_file_range), `direct_copy.rs`
//! (the reflink ioctl and a non-blocking preadv2 probe), `memfd.rs` (memfd_create) and
//! `uring.rs` (io_uring requests into guest memory); every block carries a `// SAFETY:`
//! comment.

pub mod direct_copy;
pub mod file;
pub mod memfd;
pub mod pool;
pub mod side_file;
pub mod store;
pub mod unreadable;
pub mod uring;
pub mod volume;

pub use file::FileStore;
pub use pool::StorePool;
pub use side_file::SideFile;
pub use store::{copy_range_bounce, move_within, same_file, CopyError, Store, BOUNCE_LIMIT};
pub use volume::{BlockError, Volume, VolumeError};
