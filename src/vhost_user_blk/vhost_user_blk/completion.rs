//! Posting one completion: the used-ring entry, the guest notification (EVENT_IDX
//! aware), then the hooks' record. Used by the vring workers and by the delay timer.

use vhost_user_backend::{VringRwLock, VringT};
use vm_memory::GuestMemoryAtomic;

use crate::hooks::{Completed, Hooks};

use super::request::Mem;

/// A virtqueue as the vhost-user handler shares it with its worker.
pub type Vring = VringRwLock<GuestMemoryAtomic<Mem>>;

/// Puts `head` on the used ring with `len` bytes written, signals the guest if it asked
/// to be (EVENT_IDX), then reports `done` (if any) to the hooks.
pub fn post(vring: &Vring, head: u16, len: u32, hooks: &dyn Hooks, done: Option<Completed>) {
    if let Err(e) = vring.add_used(head, len) {
        log::warn!("vhost-user-blk: cannot add head {head} to the used ring: {e}");
        return;
    }
    match vring.needs_notification() {
        Ok(false) => {}
        Ok(true) => {
            if let Err(e) = vring.signal_used_queue() {
                log::warn!("vhost-user-blk: cannot signal the used queue: {e}");
            }
        }
        Err(e) => {
            log::warn!("vhost-user-blk: used-event index unreadable ({e}); signalling");
            let _ = vring.signal_used_queue();
        }
    }
    if let Some(d) = done {
        hooks.completed(d);
    }
}
