//! The consumer's in-place path writes exactly the bytes the checked copy-out path writes:
//! the same channel memory (a byte-for-byte copy) drained both ways gives identical stream
//! files — for every packet that was complete before the drains, the in-place trace starts
//! with exactly the reference's bytes — and babeltrace2 prints the same events for them. With
//! direct I/O (packets padded to 4 KiB on disk) the events are the same too.

use faultline::drain::{Drain, DrainConfig};
use faultline_ctf::{ClockDesc, EnvDesc, TraceDesc, TraceWriter};
use faultline_ringbuf::{Channel, ChannelConfig, Consumer, Mode, SyncMode};
use faultline_schema::{EventDesc, FieldDesc, FieldType};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

const UUID: [u8; 16] = *b"faultline-inplac";
const EV: EventDesc = EventDesc {
    provider: "t",
    name: "ev",
    fields: &[
        FieldDesc {
            name: "n",
            ty: FieldType::U64,
        },
        FieldDesc {
            name: "s",
            ty: FieldType::String,
        },
    ],
};

fn desc() -> TraceDesc {
    TraceDesc {
        uuid: UUID,
        clock: ClockDesc {
            name: "monotonic".into(),
            freq_hz: 1_000_000_000,
            offset_s: 0,
            offset_ticks: 0,
            description: "CLOCK_MONOTONIC".into(),
        },
        env: EnvDesc {
            hostname: "h".into(),
            procname: "p".into(),
            tracer_major: 0,
            tracer_minor: 1,
            extra: vec![],
        },
        events: vec![(0, EV)],
    }
}

fn cfg() -> ChannelConfig {
    ChannelConfig {
        subbuf_size: 4096,
        num_subbuf: 16,
        mode: Mode::Discard,
        sync: SyncMode::Atomic,
        num_cpus: Some(1),
        uuid: UUID,
        ..ChannelConfig::default()
    }
}

fn babeltrace(dir: &Path) -> Option<Vec<String>> {
    let out = Command::new("babeltrace2").arg(dir).output().ok()?;
    assert!(
        out.status.success(),
        "babeltrace2 failed on {}",
        dir.display()
    );
    Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(String::from)
            .collect(),
    )
}

#[test]
fn in_place_path_writes_the_same_bytes_as_the_checked_copy_path() {
    if faultline_rseq::pin_to_cpu(0).is_err() {
        eprintln!("skipped: cannot run on CPU 0");
        return;
    }
    let ch = Channel::create(&cfg()).unwrap();
    // Records of varying length (strings of 0..40 bytes), 10 sub-buffers' worth.
    let mut payload = Vec::new();
    for i in 0..1500u64 {
        payload.clear();
        payload.extend_from_slice(&i.to_le_bytes());
        payload.extend(std::iter::repeat_n(
            b'a' + (i % 26) as u8,
            (i % 41) as usize,
        ));
        payload.push(0);
        let Ok(mut r) = ch.reserve(0, payload.len()) else {
            break;
        };
        r.payload().copy_from_slice(&payload);
        r.commit();
    }
    // The same memory in a second channel.
    let ch2 = Arc::new(Channel::create(&cfg()).unwrap());
    let ch3 = Arc::new(Channel::create(&cfg()).unwrap());
    {
        let map = |c: &Channel| {
            let fd = c.fd().try_clone_to_owned().unwrap();
            memmap2::MmapOptions::new()
                .len(c.map_len())
                .map_raw(&std::fs::File::from(fd))
                .unwrap()
        };
        let (a, b, c) = (map(&ch), map(&ch2), map(&ch3));
        // SAFETY: all mappings are map_len bytes; distinct memfds; nothing writes them now.
        unsafe {
            std::ptr::copy_nonoverlapping(a.as_ptr(), b.as_mut_ptr(), ch.map_len());
            std::ptr::copy_nonoverlapping(a.as_ptr(), c.as_mut_ptr(), ch.map_len());
        }
    }
    let base = faultline_testkit::TmpDir::new("in-place");
    let (dir_ref, dir_new) = (base.join("copy"), base.join("in-place"));
    // Reference: copy each complete packet out, the writer checks it whole.
    let mut w = TraceWriter::create(&dir_ref, &desc()).unwrap();
    let cons = Consumer::new(&ch);
    let mut buf = Vec::new();
    let mut packets = 0;
    while let Some(_info) = cons.next_packet(0, &mut buf).unwrap() {
        w.write_packet(0, &buf).unwrap();
        packets += 1;
    }
    assert!(packets >= 8, "{packets} packets");
    w.finish().unwrap();
    // In place with buffered writes, then the drain's finish (it also flushes the partial
    // sub-buffer); and in place with direct I/O (packets padded to 4 KiB: the same events).
    let dir_direct = base.join("direct");
    for (ch, dir, direct_io) in [(ch2, &dir_new, false), (ch3, &dir_direct, true)] {
        let w2 = TraceWriter::create(dir, &desc()).unwrap();
        let dcfg = DrainConfig {
            verbose: false,
            direct_io,
            ..DrainConfig::default()
        };
        let mut d = Drain::new(ch, w2, dcfg);
        while d.poll() > 0 {}
        let (st, fin) = d.finish();
        fin.unwrap();
        assert_eq!(st.packets_rejected, 0, "{st:?}");
    }
    let a = std::fs::read(dir_ref.join("stream_0")).unwrap();
    let b = std::fs::read(dir_new.join("stream_0")).unwrap();
    assert!(b.len() > a.len());
    assert!(
        b[..a.len()] == a[..],
        "the in-place stream starts with the reference's bytes"
    );
    let events = |dir: &Path| {
        faultline_ctf::Trace::open(dir)
            .unwrap()
            .events(&faultline_ctf::Filter::default())
            .map(|e| {
                let e = e.unwrap();
                format!("{} {} {} {:?}", e.ts, e.cpu, e.id, e.fields)
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        events(&dir_new),
        events(&dir_direct),
        "direct I/O: the same events"
    );
    match (
        babeltrace(&dir_ref),
        babeltrace(&dir_new),
        babeltrace(&dir_direct),
    ) {
        (Some(r), Some(n), Some(d)) => {
            assert!(r.len() > 1000);
            assert_eq!(n[..r.len()], r[..], "babeltrace2 prints the same events");
            assert_eq!(d, n, "babeltrace2 prints the same events (direct I/O)");
        }
        _ => eprintln!("babeltrace2 not installed: skipping its check (scripts/install-deps.sh)"),
    }
}
