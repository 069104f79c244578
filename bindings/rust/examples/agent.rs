//! An agent process: sends compaction records to one audit file through the shared sink.
//! Run several at once on the same file; every line is serde_json's text of a record.
//!
//!     cargo run --example agent -- .local/audit/compaction.jsonl 1000 agent-1
//!
//! Arguments: the JSONL file, how many records (default 1000), this agent's id (default
//! its pid). Prints how many records the ring dropped (ring-wide) when done.
use shmring::{CompactedPageRecord, CompactionAuditSink, PageOrigin, PageType, SchemaViolation};
use std::path::PathBuf;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let path = PathBuf::from(args.next().unwrap_or_else(|| ".local/audit/compaction.jsonl".into()));
    let n: u32 = args.next().and_then(|s| s.parse().ok()).unwrap_or(1000);
    let id = args.next().unwrap_or_else(|| std::process::id().to_string());

    let sink = match CompactionAuditSink::open(&path, 256).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("agent {}: cannot open {}: {}", id, path.display(), e);
            std::process::exit(1);
        }
    };
    for i in 0..n {
        let origin = match i % 4 {
            0 => PageOrigin::ToolPair { tool_name: "grep".into() },
            1 => PageOrigin::Turn { message_id: format!("m{}", i) },
            2 => PageOrigin::Excerpt { source_label: "notes \"draft\"".into() },
            _ => PageOrigin::System { key: "policy/π".into() },
        };
        sink.send(CompactedPageRecord {
            ts: "2026-11-24T08:55:52.123456Z".into(),
            turn_id: format!("{}-{}", id, i),
            page_id: format!("p{}", i),
            page_type: [PageType::ToolOutput, PageType::ConversationTurn, PageType::MemoryExcerpt, PageType::SystemContext][i as usize % 4],
            origin,
            original_tokens: 1000 + i,
            compacted_tokens: 100 + i / 2,
            fidelity_level: "summary".into(),
            invariant_version: 2,
            provider_name: "anthropic".into(),
            violations: if i % 3 == 0 {
                vec![SchemaViolation { missing_field: "exit_code".into(), detail: "tab\there".into() }]
            } else {
                vec![]
            },
            classification_fallback: i % 5 == 0,
        });
        // A ring of 256 slots: let the writer keep up now and then.
        if i % 128 == 127 {
            sink.flush().await;
        }
    }
    sink.flush().await;
    println!("agent {}: sent {}, dropped (ring-wide) {}", id, n, sink.dropped_count());
}
