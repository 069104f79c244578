//! Rust, C and Python producers on one file share one ring and one writer: three
//! `examples/agent` processes at once, the `shmring send` CLI (C, when SHMRING_CLI_PATH is
//! set) and Python's shmring module (when SHMRING_PYTHONPATH and SHMRING_LIB are set).
//! Every line is serde_json's text of the record it carries.
mod common;

use rand::rngs::StdRng;
use rand::SeedableRng;
use shmring::{CompactedPageRecord, CompactionAuditSink};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

fn agent_exe() -> PathBuf {
    // target/<profile>/deps/processes-HASH -> target/<profile>/examples/agent
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().join("examples/agent")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_c_and_python_share_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.jsonl");
    let sink = CompactionAuditSink::open(&path, 1024).await.unwrap();
    let ring = sink.ring_name();
    let per_agent = 600;
    let mut expected = 0;
    let mut foreign_producers = 0;

    let agents: Vec<_> = (0..3)
        .map(|i| {
            Command::new(agent_exe())
                .arg(&path)
                .arg(per_agent.to_string())
                .arg(format!("agent{}", i))
                .spawn()
                .expect("run examples/agent (built by cargo test)")
        })
        .collect();
    expected += 3 * per_agent;

    // Records from C and Python: their JSON is serde_json's, packed by them as maps in
    // that key order.
    let mut r = StdRng::seed_from_u64(7);
    let foreign: Vec<String> = (0..50).map(|_| serde_json::to_string(&common::gen_record(&mut r, false)).unwrap()).collect();
    if let Ok(cli) = std::env::var("SHMRING_CLI_PATH") {
        let st = Command::new(cli).arg("send").arg(&ring).args(&foreign).status().unwrap();
        assert!(st.success(), "shmring send: {}", st);
        expected += foreign.len();
        foreign_producers += 1;
    } else {
        eprintln!("SHMRING_CLI_PATH not set: no C producer");
    }
    if let (Ok(pp), Ok(_)) = (std::env::var("SHMRING_PYTHONPATH"), std::env::var("SHMRING_LIB")) {
        let script = "import json, sys, shmring\n\
                      r = shmring.Ring.attach(sys.argv[1])\n\
                      for line in sys.stdin:\n    r.send(json.loads(line))\n\
                      r.flush()\n";
        // Debian's python3, which python3-msgpack serves (as test_python uses it)
        let py = std::env::var("SHMRING_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".into());
        let mut child = Command::new(py)
            .arg("-c")
            .arg(script)
            .arg(&ring)
            .env("PYTHONPATH", pp)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all((foreign.join("\n") + "\n").as_bytes()).unwrap();
        assert!(child.wait().unwrap().success(), "python producer failed");
        expected += foreign.len();
        foreign_producers += 1;
    } else {
        eprintln!("SHMRING_PYTHONPATH/SHMRING_LIB not set: no Python producer");
    }
    for mut a in agents {
        assert!(a.wait().unwrap().success(), "an agent failed");
    }
    sink.flush().await;

    let lines = common::wait_lines(&path, expected, Duration::from_secs(20));
    let dropped = sink.dropped_count();
    assert_eq!(lines.len() as u64 + dropped, expected as u64, "lines + dropped");
    // agents flush every 128 records into a 1024-slot ring: drops are possible under
    // load but must be rare
    assert!(dropped * 10 < expected as u64, "dropped {}", dropped);
    let mut from_agents = 0;
    for line in &lines {
        let rec: CompactedPageRecord = serde_json::from_str(line).unwrap_or_else(|e| panic!("{}: {}", e, line));
        assert_eq!(&serde_json::to_string(&rec).unwrap(), line);
        from_agents += rec.turn_id.starts_with("agent") as usize;
    }
    if dropped == 0 {
        // each C and Python record is the very line serde_json writes for it
        for f in &foreign {
            assert_eq!(lines.iter().filter(|l| *l == f).count(), foreign_producers, "{}", f);
        }
    }
    assert!(from_agents as u64 + dropped >= 3 * per_agent as u64);
    let _ = shmring::unlink(&ring);
}
