//! Random CompactedPageRecords sent through the C audit sink, a real ring and writer: each
//! line in the file is byte for byte serde_json::to_string of the record, and reads back
//! as the same record. SHMRING_AUDIT_RECORDS (default 20000) sets the count.
mod common;

use rand::rngs::StdRng;
use rand::SeedableRng;
use shmring::{CompactedPageRecord, CompactionAuditSink, PageOrigin, PageType};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_records_match_serde_json() {
    let n: usize = std::env::var("SHMRING_AUDIT_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(20000);
    let seed = std::process::id() as u64;
    let mut r = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit/compaction.jsonl");
    let sink = CompactionAuditSink::open(&path, 4096).await.unwrap();
    let ring = sink.ring();
    let mut want = Vec::with_capacity(n);
    for i in 0..n {
        // one record in 50 has a NUL byte somewhere: the rmp-serde path
        let rec = common::gen_record(&mut r, i % 50 == 0);
        want.push(rec.clone());
        sink.try_send(&rec).unwrap();
        if i % 1000 == 999 {
            // stay well below the ring's 4096 slots
            sink.flush().await;
            let t0 = std::time::Instant::now();
            while ring.stats().unwrap().pending > 0 {
                assert!(t0.elapsed() < Duration::from_secs(10), "seed {}: the writer does not drain", seed);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    }
    sink.flush().await;
    let lines = common::wait_lines(&path, n, Duration::from_secs(20));
    assert_eq!(lines.len(), n, "seed {}: lines written", seed);
    for (i, (line, rec)) in lines.iter().zip(&want).enumerate() {
        let expect = serde_json::to_string(rec).unwrap();
        assert_eq!(line, &expect, "seed {} record {}: {:?}", seed, i, rec);
        let back: CompactedPageRecord = serde_json::from_str(line).unwrap();
        assert_eq!(&back, rec);
    }
    assert_eq!(sink.dropped_count(), 0);
    let _ = shmring::unlink(&sink.ring_name());
}

#[tokio::test]
async fn the_readme_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("compaction.jsonl");
    let sink = CompactionAuditSink::open(&path, 64).await.unwrap();
    let clone = sink.clone();
    clone.send(CompactedPageRecord {
        ts: "2026-11-24T08:55:52.123456Z".into(),
        turn_id: "t1".into(),
        page_id: "p1".into(),
        page_type: PageType::ToolOutput,
        origin: PageOrigin::ToolPair { tool_name: "grep".into() },
        original_tokens: 1200,
        compacted_tokens: 300,
        fidelity_level: "summary".into(),
        invariant_version: 2,
        provider_name: "anthropic".into(),
        violations: vec![shmring::SchemaViolation { missing_field: "exit_code".into(), detail: "...".into() }],
        classification_fallback: true,
    });
    drop(clone);
    sink.flush().await;
    let lines = common::wait_lines(&path, 1, Duration::from_secs(5));
    assert_eq!(
        lines,
        vec![concat!(
            r#"{"ts":"2026-11-24T08:55:52.123456Z","turn_id":"t1","page_id":"p1","#,
            r#""page_type":"tool_output","origin":{"kind":"tool_pair","tool_name":"grep"},"#,
            r#""original_tokens":1200,"compacted_tokens":300,"fidelity_level":"summary","#,
            r#""invariant_version":2,"provider_name":"anthropic","#,
            r#""violations":[{"missing_field":"exit_code","detail":"..."}],"#,
            r#""classification_fallback":true}"#
        )
        .to_string()]
    );
    // classification_fallback is optional when read back
    let rec: CompactedPageRecord = serde_json::from_str(&lines[0].replace(r#","classification_fallback":true"#, "")).unwrap();
    assert!(!rec.classification_fallback);
    let _ = shmring::unlink(&sink.ring_name());
}
