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
    Stress {
        /// Writer threads (more than CPUs forces preemption inside critical sections)
        #[arg(long, default_value_t = 8)]
        threads: usize,
        /// Events each writer emits
        #[arg(long, default_value_t = 100_000)]
        events: u64,
        /// Largest payload in bytes (payload sizes are random in 16..=this)
        #[arg(long, default_value_t = 200)]
        max_payload: usize,
        /// Sub-buffer size in bytes (power of two)
        #[arg(long, default_value_t = 64 * 1024)]
        subbuf_size: u64,
        /// Sub-buffers per CPU (power of two)
        #[arg(long, default_value_t = 8)]
        subbufs: u64,
        /// Buffer mode
        #[arg(long, value_enum, default_value = "discard")]
        mode: ModeArg,
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
        /// Run the copy-strategy study instead (reserve-copy-commit, bounce, prefault-restart)
        #[arg(long)]
        study: bool,
        /// Measure `record --libc` instead: real workloads (dd micro loop, find, tar, git
        /// status) untraced, under faultline, strace -f and ltrace -f, same run
        #[arg(long)]
        libc: bool,
    },
}

fn main() -> anyhow::Result<()> {
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
        } => {
            let opt = stress::StressOptions {
                threads,
                events_per_thread: events,
                max_payload,
                subbuf_size,
                num_subbuf: subbufs,
                mode: match mode {
                    ModeArg::Discard => Mode::Discard,
                    ModeArg::Overwrite => Mode::Overwrite,
                },
                sync: match path {
                    Some(PathArg::Rseq) => SyncMode::Rseq,
                    Some(PathArg::Atomic) => SyncMode::Atomic,
                    None => stress::StressOptions::default().sync,
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
        Cmd::Bench {
            rounds,
            iters,
            quick,
            json,
            lttng_events,
            no_lttng,
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
