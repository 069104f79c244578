// Shared by the integration tests (included with `#[path]`/`mod common`).
#![allow(dead_code)]
use rand::rngs::StdRng;
use rand::Rng;
use shmring::{CompactedPageRecord, PageOrigin, PageType, SchemaViolation};
use std::path::Path;
use std::time::{Duration, Instant};

pub fn gen_string(r: &mut StdRng, nul: bool) -> String {
    let n = r.gen_range(0..40);
    (0..n)
        .map(|_| match r.gen_range(0..10) {
            0 => ['"', '\\', '/', '\n', '\r', '\t', '\u{8}', '\u{c}', '\u{7f}'][r.gen_range(0..9)],
            1 => char::from_u32(r.gen_range(if nul { 0 } else { 1 }..0x20)).unwrap(),
            2 => ['é', '€', '😀', '\u{2028}', '\u{fffd}', 'π'][r.gen_range(0..6)],
            3 => char::from_u32(r.gen_range(0x10000..0x110000)).unwrap(),
            _ => r.gen_range(0x20u8..0x7f) as char,
        })
        .collect()
}

/// A random record; `nul` allows NUL bytes in its strings.
pub fn gen_record(r: &mut StdRng, nul: bool) -> CompactedPageRecord {
    let v = gen_string(r, nul);
    CompactedPageRecord {
        ts: if r.gen_bool(0.8) { "2026-11-24T08:55:52.123456Z".into() } else { gen_string(r, nul) },
        turn_id: gen_string(r, nul),
        page_id: gen_string(r, nul),
        page_type: [PageType::ToolOutput, PageType::ConversationTurn, PageType::MemoryExcerpt, PageType::SystemContext][r.gen_range(0..4)],
        origin: match r.gen_range(0..4) {
            0 => PageOrigin::ToolPair { tool_name: v },
            1 => PageOrigin::Turn { message_id: v },
            2 => PageOrigin::Excerpt { source_label: v },
            _ => PageOrigin::System { key: v },
        },
        original_tokens: if r.gen_bool(0.1) { u32::MAX } else { r.gen() },
        compacted_tokens: r.gen_range(0..5000),
        fidelity_level: gen_string(r, nul),
        invariant_version: r.gen(),
        provider_name: gen_string(r, nul),
        violations: (0..r.gen_range(0..4))
            .map(|_| SchemaViolation { missing_field: gen_string(r, nul), detail: gen_string(r, nul) })
            .collect(),
        classification_fallback: r.gen(),
    }
}

/// The file's lines once it has `n` of them (or whatever it has after `wait`).
pub fn wait_lines(path: &Path, n: usize, wait: Duration) -> Vec<String> {
    let t0 = Instant::now();
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(String::from).collect();
        if lines.len() >= n || t0.elapsed() > wait {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
