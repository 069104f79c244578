//! A full ring drops, counts and never blocks; flush stays bounded with no writer. Its own
//! test program: it sets SHMRING_NO_AUTOSTART, which other tests must not see.
mod common;

use rand::rngs::StdRng;
use rand::SeedableRng;
use shmring::CompactionAuditSink;
use std::time::Duration;

#[tokio::test]
async fn full_ring_drops_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("full.jsonl");
    std::env::set_var("SHMRING_NO_AUTOSTART", "1");
    let opened = CompactionAuditSink::open(&path, 64).await;
    std::env::remove_var("SHMRING_NO_AUTOSTART");
    let sink = opened.unwrap();
    let mut r = StdRng::seed_from_u64(1);
    let t0 = std::time::Instant::now();
    for _ in 0..200 {
        sink.send(common::gen_record(&mut r, false));
    }
    assert!(t0.elapsed() < Duration::from_secs(2));
    assert!(sink.dropped_count() >= 200 - 64, "dropped {}", sink.dropped_count());
    let t0 = std::time::Instant::now();
    sink.flush().await;
    assert!(t0.elapsed() < Duration::from_millis(500), "flush took {:?}", t0.elapsed());
    let _ = shmring::unlink(&sink.ring_name());
}
