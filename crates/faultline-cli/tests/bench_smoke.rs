//! Smoke test of `faultline bench --quick --json` with tiny counts: the JSON has every field
//! the issue asks for, with sane values (no timing targets are checked here: speed targets
//! belong to the benchmark's own output, not to tests).

use std::process::Command;

fn num(v: &serde_json::Value, key: &str) -> f64 {
    v.get(key)
        .unwrap_or_else(|| panic!("missing field {key}"))
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number: {}", v[key]))
}

#[test]
fn bench_quick_json_has_every_field() {
    let out = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args([
            "bench",
            "--quick",
            "--json",
            "--rounds",
            "1",
            "--iters",
            "20000",
            "--lttng-events",
            "2000",
        ])
        .output()
        .expect("run faultline bench");
    assert!(
        out.status.success(),
        "faultline bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("bench prints JSON");

    // Issue 10's tracing rows (same run): faultline-tracing, fmt + appender, raw trace!.
    for key in [
        "tracing_int_ns",
        "tracing_fmt_int_ns",
        "tracing_str_ns",
        "tracing_fmt_str_ns",
        "tracing_int_2t_ns",
        "tracing_fmt_int_2t_ns",
        "tracing_raw_int_ns",
        "tracing_raw_str_ns",
        "tracing_sub_int_ns",
        "tracing_sub_str_ns",
        "tracing_sub_int_2t_ns",
        "tracing_sub_str_2t_ns",
    ] {
        let x = num(&v, key);
        assert!(x.is_finite() && x > 0.0, "{key} = {x}");
    }
    for key in [
        "tracing_lost",
        "tracing_fmt_lost",
        "tracing_raw_lost",
        "tracing_sub_lost",
    ] {
        assert!(num(&v, key) >= 0.0, "{key}");
    }
    assert_eq!(
        num(&v, "tracing_unaccounted"),
        0.0,
        "tracing rows: events unaccounted for"
    );
    for key in [
        "rdtsc_ns",
        "int_ns",
        "string_ns",
        "two_thread_scaling",
        // The same run's scaling references (faultline-cli bench_scaling.rs).
        "floor_two_thread_scaling",
        "two_thread_scaling_vs_floor",
        "scaling_consumer_ns_per_event",
        "two_thread_scaling_bound",
        "session_two_thread_scaling",
        "two_thread_imbalance",
    ] {
        let x = num(&v, key);
        assert!(x.is_finite() && x > 0.0, "{key} = {x}");
    }
    let disabled = num(&v, "disabled_ns");
    assert!(
        disabled > 0.0 && disabled < 1000.0,
        "disabled_ns = {disabled}"
    );
    for key in ["lttng_int_ns", "lttng_string_ns"] {
        let f = v.get(key).unwrap_or_else(|| panic!("missing field {key}"));
        assert!(
            f.is_null() || f.as_f64().is_some_and(|x| x > 0.0),
            "{key} must be null or positive: {f}"
        );
    }
    // LTTng present => both numbers; absent => both null and a reason.
    assert_eq!(v["lttng_int_ns"].is_null(), v["lttng_string_ns"].is_null());
    if v["lttng_int_ns"].is_null() {
        assert!(
            v["lttng_missing"].is_string(),
            "no reason given for missing LTTng"
        );
    }

    let rows = v["rows"].as_array().expect("rows array");
    let has = |group: &str, name: &str, path: &str, threads: u64| {
        rows.iter().any(|r| {
            r["group"] == group && r["name"] == name && r["path"] == path && r["threads"] == threads
        })
    };
    for name in ["int", "string"] {
        for path in ["rseq", "atomic"] {
            for threads in [1, 2] {
                if path == "rseq" && !faultline_rseq::available() {
                    continue;
                }
                assert!(
                    has("faultline", name, path, threads),
                    "missing row {name}/{path}/{threads}"
                );
            }
        }
    }
    for r in rows {
        let ns = r["ns_median"].as_f64().expect("ns_median");
        assert!(ns > 0.0 && ns.is_finite(), "row {r}");
        // Every emitted faultline event is delivered or counted lost.
        if let Some(u) = r["unaccounted"].as_u64() {
            assert_eq!(u, 0, "unaccounted events in row {r}");
        }
    }
    // The `tracing` comparison (issue 10): the keys it names are a contract.
    for key in [
        "tracing_int_ns",
        "tracing_fmt_int_ns",
        "tracing_str_ns",
        "tracing_fmt_str_ns",
        "tracing_raw_int_ns",
        "tracing_raw_str_ns",
    ] {
        let x = num(&v, key);
        assert!(x.is_finite() && x > 0.0, "{key} = {x}");
    }
    // Issue 11: bytes per event on disk, consumer CPU per event, lossless rates, Tracy rows.
    for key in ["int_bytes", "string_bytes", "consumer_ns_per_event"] {
        let x = num(&v, key);
        assert!(x.is_finite() && x > 0.0, "{key} = {x}");
    }
    // A default Session's consumer does not walk the records: no verification pass.
    assert_eq!(num(&v, "verify_ns_per_event"), 0.0);
    // A string event is bigger than an int event, and neither is below its payload.
    assert!(num(&v, "int_bytes") >= 8.0);
    assert!(num(&v, "string_bytes") > num(&v, "int_bytes"));
    let lttng_ran = !v["lttng_int_ns"].is_null();
    for key in ["lttng_int_bytes", "lttng_string_bytes"] {
        let f = v.get(key).unwrap_or_else(|| panic!("missing field {key}"));
        if lttng_ran {
            assert!(f.as_f64().is_some_and(|x| x > 0.0), "{key}: {f}");
        } else {
            assert!(f.is_null(), "{key}: {f}");
        }
    }
    // The searches ran (quick mode: a few short steps); their results are a rate or null (no
    // step lossless on a loaded machine), never garbage.
    assert!(num(&v, "lossless_secs") > 0.0);
    for (key, detail, ran) in [
        ("lossless_mev_s", "lossless", true),
        ("lttng_lossless_mev_s", "lttng_lossless", lttng_ran),
    ] {
        let f = v.get(key).unwrap_or_else(|| panic!("missing field {key}"));
        assert!(
            f.is_null() || f.as_f64().is_some_and(|x| x > 0.0 && x < 1e4),
            "{key}: {f}"
        );
        let d = &v[detail];
        if !ran {
            assert!(d.is_null() && f.is_null(), "{detail}: {d}");
            continue;
        }
        let steps = d["steps"].as_array().expect("steps");
        assert!(!steps.is_empty(), "{detail}: no step ran: {d}");
        assert!(steps.len() <= 3, "quick mode runs at most 3 steps: {d}");
        for (i, s) in steps.iter().enumerate() {
            for k in ["achieved_mev_s", "events", "lost", "secs"] {
                assert!(s[k].as_f64().is_some_and(|x| x >= 0.0), "{k} in {s}");
            }
            // The first step is the unpaced one (the writer's own rate), the others paced.
            if i == 0 {
                assert!(s["rate_mev_s"].is_null(), "first step unpaced: {s}");
                assert_eq!(d["writer_max_mev_s"], s["achieved_mev_s"], "{d}");
            } else {
                assert!(
                    s["rate_mev_s"].as_f64().is_some_and(|x| x > 0.0),
                    "rate_mev_s in {s}"
                );
            }
        }
        // The Session's consumer thread is measured at every step.
        if detail == "lossless" {
            for s in steps {
                assert!(
                    s["consumer_ns_per_event"].as_f64().is_some_and(|x| x > 0.0),
                    "consumer CPU missing in {s}"
                );
            }
        }
        // The best lossless rate is one of the lossless steps' achieved rates.
        if let Some(best) = f.as_f64() {
            assert!(steps
                .iter()
                .skip(1)
                .any(|s| s["lost"] == 0 && s["achieved_mev_s"].as_f64() == Some(best)));
        }
    }
    // Issue 11 item 4: buffers per CPU vs per concurrency id, same run.
    assert!(matches!(v["buffers_default"].as_str(), Some("cpu" | "cid")));
    let cid_ran = v["buffers_missing"].is_null();
    for side in ["cpu", "cid"] {
        let ran = side == "cpu" || cid_ran;
        for key in [
            format!("session_int_ns_{side}"),
            format!("session_string_ns_{side}"),
            format!("buffers_mapped_{side}"),
            format!("buffer_bytes_{side}"),
            format!("buffers_mapped_{side}_taskset1"),
            format!("buffer_bytes_{side}_taskset1"),
        ] {
            let f = v.get(&key).unwrap_or_else(|| panic!("missing field {key}"));
            assert!(
                !ran || f.as_f64().is_some_and(|x| x > 0.0),
                "{key}: {f} ({})",
                v["buffers_missing"]
            );
        }
        let lost = &v[format!("session_lost_{side}")];
        assert!(
            !ran || lost.as_u64().is_some(),
            "session_lost_{side}: {lost}"
        );
        let rate = &v[format!("lossless_mev_s_{side}")];
        assert!(rate.is_null() || rate.as_f64().is_some_and(|x| x > 0.0));
        // The process on one CPU: one buffer, whatever the index.
        if ran {
            assert_eq!(v[format!("buffers_mapped_{side}_taskset1")], 1);
            assert!(
                num(&v, &format!("buffers_mapped_{side}")) <= num(&v, "buffers_possible"),
                "{side}"
            );
        }
    }
    let tracy_ran = v["tracy_missing"].is_null();
    for key in [
        "tracy_int_ns",
        "tracy_string_ns",
        "tracy_int_bytes",
        "tracy_string_bytes",
    ] {
        let f = v.get(key).unwrap_or_else(|| panic!("missing field {key}"));
        if tracy_ran {
            assert!(f.as_f64().is_some_and(|x| x > 0.0), "{key}: {f}");
        } else {
            assert!(f.is_null(), "{key}: {f}");
        }
    }
    if tracy_ran {
        assert!(has("tracy", "int (plot)", "tracy-client", 1));
    } else {
        assert!(v["tracy_missing"].is_string());
    }

    // Six core targets, two per tracing row (1 and 2 threads, int and int+string), and
    // issue 11's seven.
    let targets = v["targets"].as_array().expect("targets");
    assert_eq!(targets.len(), 6 + 2 * 4 + 7);
}
