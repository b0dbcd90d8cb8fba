//! A hostile host over the real socket (issue 11): messages and NVMe commands a buggy or
//! malicious client sends. The device must answer each with the error the protocol or
//! the NVMe spec names, stay up, and serve the next client at once.

mod common;

use std::time::{Duration, Instant};

use common::{small_config, TestServer};
use vfio_bindings::bindings::vfio as vb;

/// SET_IRQS with a huge count and a start near u32::MAX is refused with EINVAL at once:
/// nothing proportional to the count is allocated or iterated before it is checked
/// against the real vector count (it used to allocate ~7.7 GB and stall ~10 s).
#[test]
fn set_irqs_with_an_extreme_count_is_refused_at_once() {
    let s = TestServer::start("hostile-irqs", &small_config());
    let mut c = s.negotiated();
    let flags = vb::VFIO_IRQ_SET_DATA_EVENTFD | vb::VFIO_IRQ_SET_ACTION_TRIGGER;
    let t0 = Instant::now();
    let r = c.set_irqs_raw(
        flags,
        vb::VFIO_PCI_MSIX_IRQ_INDEX,
        0xffff_fff0,
        0x7fff_ffff,
        &[],
        &[],
    );
    assert!(r.is_error(), "an extreme SET_IRQS must fail");
    assert_eq!(r.errno(), libc::EINVAL);
    let r = c.set_irqs_raw(flags, vb::VFIO_PCI_MSIX_IRQ_INDEX, 0, u32::MAX, &[], &[]);
    assert_eq!(r.errno(), libc::EINVAL);
    let bools = vb::VFIO_IRQ_SET_DATA_NONE | vb::VFIO_IRQ_SET_ACTION_MASK;
    let r = c.set_irqs_raw(bools, vb::VFIO_PCI_MSIX_IRQ_INDEX, u32::MAX, 2, &[], &[]);
    assert_eq!(r.errno(), libc::EINVAL);
    assert!(
        t0.elapsed() < Duration::from_secs(1),
        "took {:?}",
        t0.elapsed()
    );
    // The same client is still served.
    let info = c.device_info();
    assert!(info.num_irqs > 0);
}
