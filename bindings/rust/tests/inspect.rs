//! `shmring::inspect` reads a ring's figures without a handle: the same as `Ring::stats`,
//! and the ring's timestamps do not move.
use shmring::{Options, Ring};
use std::os::unix::fs::MetadataExt;

#[test]
fn inspect_reads_without_a_handle() {
    let name = format!("rust-inspect-{}", std::process::id());
    let _ = shmring::unlink(&name);
    let ring = Ring::open(&name, &Options { capacity: 64, slot_size: 128, ..Default::default() }).unwrap();
    for _ in 0..3 {
        ring.send(&[0xc0]).unwrap();
    }
    let path = format!("/dev/shm/shmring.{}", name);
    let before = std::fs::metadata(&path).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let seen = shmring::inspect(&name).unwrap();
    let after = std::fs::metadata(&path).unwrap();
    assert_eq!(seen, ring.stats().unwrap());
    assert_eq!(seen.pending, 3);
    assert_eq!((before.mtime(), before.mtime_nsec(), before.ctime(), before.ctime_nsec()),
               (after.mtime(), after.mtime_nsec(), after.ctime(), after.ctime_nsec()));
    let missing = shmring::inspect(&format!("{}-none", name)).unwrap_err();
    assert_eq!(missing.errno(), libc::ENOENT);
    drop(ring);
    shmring::unlink(&name).unwrap();
}
