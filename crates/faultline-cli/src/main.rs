//! The `faultline` command line.

use clap::{Parser, Subcommand, ValueEnum};
use faultline_cli::{bench, stress};
use faultline_ringbuf::{Mode, SyncMode};

#[derive(Parser)]
#[command(name = "faultline", version, about = "A user-space tracer whose probes may fault, block or migrate between reserve and commit", long_about = None)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum PathArg {
    /// rseq critical sections (LOCAL commits without atomics)
    Rseq,
    /// atomics everywhere (fallback when rseq is unavailable)
    Atomic,
}

#[derive(Clone, Copy, ValueEnum)]
enum ModeArg {
    /// drop new events when the buffer is full
    Discard,
    /// flight recorder: overwrite the oldest sub-buffers
    Overwrite,
}

#[derive(Subcommand)]
enum Cmd {
    Demo(faultline_cli::demo::DemoArgs),
    Record(faultline_cli::record::RecordArgs),
    View(faultline_cli::view::ViewArgs),
    Stats(faultline_cli::stats::StatsArgs),
    Export(faultline_cli::export::ExportArgs),
    Timeline(faultline_cli::timeline::TimelineArgs),
    /// Torture the ring buffer: many threads, migrations between reserve and commit, signal
    /// storms, a concurrent consumer; then check every event was delivered exactly once or
    /// counted as lost. Exits non-zero if the check fails.
    ///
    /// With --record: the overload soak through the real `faultline record` instead. Rounds of
    /// `faultline record` tracing faultline-testapp with all its writers pinned on one CPU and
    /// tiny sub-buffers, in discard and overwrite modes, most rounds ending with a SIGKILL of
    /// the program; after each round: zero packets rejected by the trace writer, cumulative
    /// loss counters that never decrease, babeltrace2 reading the trace with no warning other
    /// than discarded notices, and delivered + lost == emitted for every writer.
    Stress {
        /// Writer threads (more than CPUs forces preemption inside critical sections) [default: 8]
        #[arg(long)]
        threads: Option<usize>,
        /// Events each writer emits
        #[arg(long, default_value_t = 100_000)]
        events: u64,
        /// Largest payload in bytes (payload sizes are random in 16..=this)
        #[arg(long, default_value_t = 200)]
        max_payload: usize,
        /// Sub-buffer size in bytes (power of two) [default: 65536; with --record: 512]
        #[arg(long)]
        subbuf_size: Option<u64>,
        /// Sub-buffers per CPU (power of two) [default: 8; with --record: 4]
        #[arg(long)]
        subbufs: Option<u64>,
        /// Buffer mode [default: discard; with --record: both, one after the other]
        #[arg(long, value_enum)]
        mode: Option<ModeArg>,
        /// The overload soak through `faultline record` (see above)
        #[arg(long)]
        record: bool,
        /// With --record: seconds of rounds per mode
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// Synchronisation path (default: rseq when available)
        #[arg(long, value_enum)]
        path: Option<PathArg>,
        /// Per mille of events whose writer is moved to another CPU between reserve and commit
        #[arg(long, default_value_t = 5)]
        migrate_permille: u32,
        /// Do not send SIGUSR1 storms
        #[arg(long)]
        no_signals: bool,
        /// Spin this many iterations inside the reserve critical section to provoke aborts (0 = off)
        #[arg(long, default_value_t = 8)]
        inject_spins: u64,
        /// Write events through the recorder probe with this copy strategy:
        /// reserve-copy-commit, bounce, prefault-restart, or mixed (thread t uses strategy
        /// t mod 3). Without it, events go straight into the ring buffer API (unless
        /// --fault-ms or --bad-pointers ask for the recorder, which then uses mixed).
        #[arg(long, value_name = "NAME")]
        strategy: Option<stress::StrategyChoice>,
        /// Hold a userfaultfd page fault this many ms in the payload copy of some events
        /// (one in --fault-every per writer); recorded bytes are checked against the page
        #[arg(long, value_name = "MS", default_value_t = 0)]
        fault_ms: u64,
        /// With --fault-ms: one event in this many (per writer) takes a held fault
        #[arg(long, value_name = "N", default_value_t = 2000)]
        fault_every: u64,
        /// Some events copy part of their payload from a PROT_NONE page: they must be
        /// recorded zero-filled and counted as faulted, exactly
        #[arg(long)]
        bad_pointers: bool,
        /// Print a JSON summary instead of text
        #[arg(long)]
        json: bool,
    },
    /// Throughput through one lttng-relayd on loopback (events/s, packets/s, MB/s):
    /// faultline's streamer next to LTTng's own consumer, same workload, same relay
    RelayBench {
        /// Writer threads per side
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// Events per thread per round
        #[arg(long, default_value_t = 2_000_000)]
        events: u64,
        /// Rounds (both sides each round, alternating which goes first)
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Skip the LTTng side
        #[arg(long)]
        no_lttng: bool,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Benchmark tracepoints against the floor (rdtsc, clock_gettime, a copy) and LTTng-UST,
    /// rseq and atomic paths, 1 and 2 threads; with --study, the copy-strategy study.
    Bench {
        /// Rounds per configuration (median and spread are reported; default 5, --quick 3)
        #[arg(long)]
        rounds: Option<usize>,
        /// Events per round per thread (default 2,000,000; --quick 300,000)
        #[arg(long)]
        iters: Option<u64>,
        /// A shorter run (under a minute)
        #[arg(long)]
        quick: bool,
        /// Print JSON
        #[arg(long)]
        json: bool,
        /// Events per thread per LTTng-UST run (default: 1,000,000; --quick: 200,000)
        #[arg(long)]
        lttng_events: Option<u64>,
        /// Skip the LTTng-UST side
        #[arg(long)]
        no_lttng: bool,
        /// Skip the lossless-rate search (Session and LTTng-UST, about 2-3 minutes in a full
        /// run; a few seconds with --quick)
        #[arg(long)]
        no_lossless: bool,
        /// Seconds per step of the lossless-rate search (default 5; --quick 0.1)
        #[arg(long)]
        lossless_secs: Option<f64>,
        /// Skip the Tracy client rows
        #[arg(long)]
        no_tracy: bool,
        /// Run the copy-strategy study instead (reserve-copy-commit, bounce, prefault-restart)
        #[arg(long)]
        study: bool,
        /// Measure `record --libc` instead: real workloads (dd micro loop, find, tar, git
        /// status) untraced, under faultline, strace -f and ltrace -f, same run
        #[arg(long)]
        libc: bool,
    },
}

/// `faultline record`'s arguments, parsed by a parser of that subcommand alone: its start is
/// part of every traced run, and building the whole command tree (every subcommand's
/// arguments and help texts) cost ~0.2 ms of it. `None` for any other command and for
/// anything but a successful parse (`--help`, an error): the full parser then prints what it
/// always does.
fn record_args() -> Option<faultline_cli::record::RecordArgs> {
    use clap::{Args, FromArgMatches};
    let mut argv = std::env::args_os().skip(1);
    if argv.next()? != "record" {
        return None;
    }
    let cmd = faultline_cli::record::RecordArgs::augment_args(
        clap::Command::new("record").no_binary_name(true),
    );
    let m = cmd.try_get_matches_from(argv).ok()?;
    faultline_cli::record::RecordArgs::from_arg_matches(&m).ok()
}

fn main() -> anyhow::Result<()> {
    // `record`'s TSC calibration starts here: the argument parsing and the rest of its set-up
    // are the first part of the interval, so it spins for less of it before the program
    // starts (faultline_cli::record, "Clock"). Eight clock readings for other commands.
    faultline_ringbuf::clock::begin_quick_calibration();
    if let Some(args) = record_args() {
        std::process::exit(faultline_cli::record::main(&args));
    }
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Demo(args) => std::process::exit(faultline_cli::demo::main(&args)),
        Cmd::Record(args) => std::process::exit(faultline_cli::record::main(&args)),
        Cmd::View(args) => std::process::exit(faultline_cli::view::main(&args)),
        Cmd::Stats(args) => std::process::exit(faultline_cli::stats::main(&args)),
        Cmd::Export(args) => std::process::exit(faultline_cli::export::main(&args)),
        Cmd::Timeline(args) => std::process::exit(faultline_cli::timeline::main(&args)),
        Cmd::Stress {
            threads,
            events,
            max_payload,
            subbuf_size,
            subbufs,
            mode,
            path,
            migrate_permille,
            no_signals,
            inject_spins,
            strategy,
            fault_ms,
            fault_every,
            bad_pointers,
            json,
            record,
            seconds,
        } => {
            let to_mode = |m: ModeArg| match m {
                ModeArg::Discard => Mode::Discard,
                ModeArg::Overwrite => Mode::Overwrite,
            };
            if record {
                let d = faultline_cli::soak::SoakOptions::default();
                let opt = faultline_cli::soak::SoakOptions {
                    seconds,
                    modes: mode.map_or(d.modes.clone(), |m| vec![to_mode(m)]),
                    threads: threads.map_or(d.threads, |t| t as u32),
                    subbuf_size: subbuf_size.unwrap_or(d.subbuf_size),
                    num_subbuf: subbufs.unwrap_or(d.num_subbuf),
                    ..d
                };
                let rep = faultline_cli::soak::run(&opt, !json)?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&rep)?);
                } else {
                    faultline_cli::soak::print_report(&rep);
                }
                if !rep.ok {
                    std::process::exit(1);
                }
                return Ok(());
            }
            let d = stress::StressOptions::default();
            let opt = stress::StressOptions {
                threads: threads.unwrap_or(d.threads),
                events_per_thread: events,
                max_payload,
                subbuf_size: subbuf_size.unwrap_or(d.subbuf_size),
                num_subbuf: subbufs.unwrap_or(d.num_subbuf),
                mode: mode.map_or(d.mode, to_mode),
                sync: match path {
                    Some(PathArg::Rseq) => SyncMode::Rseq,
                    Some(PathArg::Atomic) => SyncMode::Atomic,
                    None => d.sync,
                },
                migrate_permille,
                signals: !no_signals,
                inject_spins,
                strategy,
                fault_ms,
                fault_every,
                bad_pointers,
                ..Default::default()
            };
            if opt.mode == Mode::Overwrite {
                anyhow::bail!("stress checks exactly-once delivery, which overwrite mode gives up by design; use the overwrite tests instead");
            }
            let rep = stress::run(&opt, !json)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rep)?);
            } else {
                stress::print_report(&rep);
            }
            if !rep.ok {
                std::process::exit(1);
            }
        }
        Cmd::RelayBench {
            threads,
            events,
            rounds,
            no_lttng,
            json,
        } => {
            let o = faultline_cli::relay_bench::RelayBenchOptions {
                threads,
                events,
                rounds,
                no_lttng,
            };
            let r = faultline_cli::relay_bench::run(&o)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                faultline_cli::relay_bench::print(&r);
            }
        }
        Cmd::Bench {
            rounds,
            iters,
            quick,
            json,
            lttng_events,
            no_lttng,
            no_lossless,
            lossless_secs,
            no_tracy,
            study,
            libc,
        } => {
            if libc {
                let opt = faultline_cli::libc_bench::LibcBenchOptions {
                    rounds: rounds.unwrap_or(if quick { 3 } else { 5 }),
                    quick,
                };
                let rep = faultline_cli::libc_bench::run(&opt)?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&rep)?);
                } else {
                    faultline_cli::libc_bench::print(&rep);
                }
                return Ok(());
            }
            if study {
                let mut opt = faultline_cli::study::StudyOptions::new(quick);
                opt.rounds = rounds.unwrap_or(opt.rounds);
                let rep = faultline_cli::study::run(&opt)?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&rep)?);
                } else {
                    faultline_cli::study::print(&rep);
                }
                return Ok(());
            }
            let mut opt = if quick {
                bench::BenchOptions::quick()
            } else {
                bench::BenchOptions::full()
            };
            opt.rounds = rounds.unwrap_or(opt.rounds);
            opt.iters = iters.unwrap_or(opt.iters);
            opt.lttng_events = lttng_events.unwrap_or(opt.lttng_events);
            opt.lttng = !no_lttng;
            opt.tracy = !no_tracy;
            if no_lossless {
                opt.lossless = None;
            } else if let (Some(l), Some(secs)) = (opt.lossless.as_mut(), lossless_secs) {
                l.step_secs = secs;
            }
            let rep = bench::run(&opt)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rep)?);
            } else {
                bench::print(&rep);
            }
        }
    }
    Ok(())
}
