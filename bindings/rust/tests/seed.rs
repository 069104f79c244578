//! The seed's documented API, used as its callers use it (only the `use` line differs):
//! open a relative path, send, flush, dropped_count; the line is serde_json's. Its own
//! test program because it changes the working directory.
use shmring::{CompactedPageRecord, CompactionAuditSink, PageOrigin, PageType, SchemaViolation};
use std::path::Path;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_program_runs_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    std::env::set_current_dir(dir.path()).unwrap();

    let sink = CompactionAuditSink::open(Path::new(".local/audit/compaction.jsonl"), 256)
        .await
        .expect("open audit sink");
    let record = CompactedPageRecord {
        ts: "2026-11-24T08:55:52.123456Z".to_string(),
        turn_id: "t1".to_string(),
        page_id: "p1".to_string(),
        page_type: PageType::ToolOutput,
        origin: PageOrigin::ToolPair { tool_name: "grep".to_string() },
        original_tokens: 1200,
        compacted_tokens: 300,
        fidelity_level: "summary".to_string(),
        invariant_version: 2,
        provider_name: "anthropic".to_string(),
        violations: vec![SchemaViolation { missing_field: "exit_code".to_string(), detail: "...".to_string() }],
        classification_fallback: false,
    };
    let handle = sink.clone();
    tokio::spawn(async move { handle.send(record) }).await.unwrap();
    sink.flush().await;
    assert_eq!(sink.dropped_count(), 0);

    let text = std::fs::read_to_string(".local/audit/compaction.jsonl").unwrap();
    let want = CompactedPageRecord {
        ts: "2026-11-24T08:55:52.123456Z".to_string(),
        turn_id: "t1".to_string(),
        page_id: "p1".to_string(),
        page_type: PageType::ToolOutput,
        origin: PageOrigin::ToolPair { tool_name: "grep".to_string() },
        original_tokens: 1200,
        compacted_tokens: 300,
        fidelity_level: "summary".to_string(),
        invariant_version: 2,
        provider_name: "anthropic".to_string(),
        violations: vec![SchemaViolation { missing_field: "exit_code".to_string(), detail: "...".to_string() }],
        classification_fallback: false,
    };
    assert_eq!(text, serde_json::to_string(&want).unwrap() + "\n");
    let _ = shmring::unlink(&sink.ring_name());
}
