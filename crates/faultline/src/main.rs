//! The `faultline` command line.

use clap::{Parser, Subcommand, ValueEnum};
use faultline::{bench, stress};
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
        /// Print a JSON summary instead of text
        #[arg(long)]
        json: bool,
    },
    /// Measure ns per reserve+commit (rseq and atomic paths, 1 and 2 threads) against rdtsc.
    Bench {
        /// Rounds per configuration (median and spread are reported)
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Events per round per thread
        #[arg(long, default_value_t = 2_000_000)]
        iters: u64,
        /// A shorter run (under a minute)
        #[arg(long)]
        quick: bool,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
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
        } => {
            let (rounds, iters) = if quick { (3, 300_000) } else { (rounds, iters) };
            let rep = bench::run(rounds, iters)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rep)?);
            } else {
                bench::print(&rep);
            }
        }
    }
    Ok(())
}
