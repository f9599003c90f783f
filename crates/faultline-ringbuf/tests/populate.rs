//! `Reservation::populate_ahead`: the first record of a block maps that block and the next
//! one (clipped to the CPU's data area), later records of the block map nothing, and the
//! thread's `errno` is unchanged.

use faultline_ringbuf::*;

fn errno() -> i32 {
    // SAFETY: __errno_location returns this thread's errno slot, always valid.
    unsafe { *libc::__errno_location() }
}

fn set_errno(e: i32) {
    // SAFETY: as in `errno`.
    unsafe { *libc::__errno_location() = e }
}

#[test]
fn first_record_of_a_block_maps_two_blocks_and_keeps_errno() {
    // Buffers of 4 x 64 KiB: blocks of 64 KiB (shift 16).
    let ch = Channel::create(&ChannelConfig {
        subbuf_size: 64 * 1024,
        num_subbuf: 4,
        sync: SyncMode::Atomic,
        ..Default::default()
    })
    .unwrap();
    let before = ch.resident_bytes().unwrap();
    set_errno(4321);
    let r = ch.reserve(1, 40).unwrap();
    r.populate_ahead(16);
    assert_eq!(errno(), 4321, "populate_ahead changed errno");
    r.commit();
    let after_first = ch.resident_bytes().unwrap();
    // Two blocks of the data area (128 KiB) are resident now, not just the record's page.
    assert!(
        after_first >= before + 128 * 1024,
        "before {before}, after the first record {after_first}"
    );
    // The next record is in the same block: nothing more is mapped.
    let r = ch.reserve(1, 40).unwrap();
    r.populate_ahead(16);
    r.commit();
    assert_eq!(ch.resident_bytes().unwrap(), after_first);
}

#[test]
fn a_block_larger_than_the_buffer_is_clipped_to_its_data_area() {
    let ch = Channel::create(&ChannelConfig {
        subbuf_size: 64 * 1024,
        num_subbuf: 4,
        sync: SyncMode::Atomic,
        ..Default::default()
    })
    .unwrap();
    let before = ch.resident_bytes().unwrap();
    let r = ch.reserve(1, 40).unwrap();
    // Clamped to 16 MiB blocks: two of them would be 32 MiB, the data area is 256 KiB.
    r.populate_ahead(30);
    r.commit();
    let after = ch.resident_bytes().unwrap();
    // The whole data area of this CPU's buffer, and its header page: nothing of the other
    // buffers.
    assert!(after >= before + 256 * 1024, "{before} -> {after}");
    assert!(
        after <= before + 256 * 1024 + 2 * 4096,
        "{before} -> {after}"
    );
}
