//! The overload soak (`faultline stress --record`), short: a few seconds per mode of
//! `faultline record` tracing the test program with 8 writers pinned on one CPU, 512-byte
//! sub-buffers, SIGKILLs; every invariant count of the JSON report must be 0. The long version
//! is the command itself (`--seconds`).

use std::process::Command;

#[test]
fn overload_soak_keeps_every_invariant() {
    let out = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(["stress", "--record", "--seconds", "3", "--json"])
        .output()
        .expect("run faultline stress --record");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let rep: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("soak JSON: {e}; stderr: {stderr}"));
    let modes = rep["modes"].as_array().expect("modes");
    assert_eq!(modes.len(), 2, "{rep}");
    for m in modes {
        let n = |k: &str| {
            m[k].as_u64()
                .unwrap_or_else(|| panic!("key {k} missing in {m}"))
        };
        eprintln!(
            "{} mode: {} rounds ({} killed), emitted {}, delivered {}, lost {}, overwritten {}, \
             writer died {}, packets {}",
            m["mode"],
            n("rounds"),
            n("killed"),
            n("emitted"),
            n("delivered"),
            n("lost"),
            n("overwritten"),
            n("writer_died"),
            n("packets_written")
        );
        // The run did something: kills, overload (losses), and events through.
        assert!(n("rounds") >= 2 && n("killed") >= 1, "{m}");
        assert!(n("delivered") > 0 && n("lost") > 0, "{m}");
        for key in [
            "packets_rejected",
            "read_errors",
            "counter_decreases",
            "babeltrace2_warnings",
            "babeltrace2_disagreements",
            "duplicates",
            "corrupt",
            "unaccounted",
            "accounting_mismatches",
            "loss_count_mismatches",
            "record_failures",
        ] {
            assert_eq!(
                n(key),
                0,
                "{} mode: {key}; violations: {:#}",
                m["mode"],
                m["violations"]
            );
        }
        if m["babeltrace2_checked"] != true {
            println!(
                "babeltrace2 not installed: its checks were skipped (scripts/install-deps.sh)"
            );
        }
        assert_eq!(
            n("emitted"),
            n("delivered") + n("lost") + n("overwritten"),
            "{m}"
        );
        if m["mode"] == "discard" {
            assert_eq!(n("overwritten"), 0, "{m}");
        }
        assert_eq!(m["ok"], true, "{m}");
    }
    assert_eq!(rep["ok"], true);
    assert!(out.status.success(), "{stderr}");
}
