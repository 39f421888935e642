//! Properties of the heartbeat stream's framing (hand-written: see the module's top comment),
//! over generated streams and arbitrary bytes.

use proptest::prelude::*;

use super::*;

/// One SSE frame a worker sends, and the signal it carries.
fn frame() -> impl Strategy<Value = (String, Option<Signal>)> {
    prop_oneof![
        Just(("data: beat\n\n".to_string(), Some(Signal::Beat))),
        "[a-zA-Z0-9][a-zA-Z0-9 :.,]{0,49}".prop_map(|why| {
            let why = why.trim_end().to_string();
            (format!("event: unready\ndata: {why}\n\n"), Some(Signal::Unready(why)))
        }),
        (0u32..1000).prop_map(|n| {
            (format!("event: draining\ndata: {{\"activeCalls\":{n}}}\n\n"), Some(Signal::Draining(n)))
        }),
        (20u64..60_000).prop_map(|ms| (format!("event: hello\ndata: {{\"periodMs\":{ms}}}\n\n"), None)),
        Just((": keep-alive\n\n".to_string(), None)),
    ]
}

proptest! {
    /// However the stream is cut into reads, and with either line ending, the latest signal is
    /// the last frame's: a worker's state is never lost or invented at a read boundary.
    #[test]
    fn the_latest_signal_does_not_depend_on_how_reads_split_the_stream(
        frames in prop::collection::vec(frame(), 1..20),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..10),
        crlf in any::<bool>(),
    ) {
        let mut bytes: String = frames.iter().map(|(f, _)| f.as_str()).collect();
        if crlf {
            bytes = bytes.replace('\n', "\r\n");
        }
        let bytes = bytes.into_bytes();
        let mut at: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        at.extend([0, bytes.len()]);
        at.sort_unstable();
        let mut f = Frames::default();
        let mut last = None;
        for w in at.windows(2) {
            let pushed = f.push(&bytes[w[0]..w[1]]).expect("frames are short");
            last = pushed.last.or(last);
        }
        let want = frames.iter().rev().find_map(|(_, s)| s.clone());
        prop_assert_eq!(last, want);
    }

    /// Any bytes at all: no panic, and a frame never grows past its bound.
    #[test]
    fn arbitrary_bytes_never_panic_and_stay_bounded(chunks in prop::collection::vec(any::<Vec<u8>>(), 0..20)) {
        let mut f = Frames::default();
        for c in &chunks {
            if f.push(c).is_none() {
                break; // not a heartbeat stream: the caller drops it
            }
            prop_assert!(f.frame.len() <= MAX_FRAME);
        }
    }

    /// Any response head: a status, or partial; never a panic.
    #[test]
    fn any_head_is_a_status_or_partial(bytes in any::<Vec<u8>>()) {
        match head(&bytes) {
            Head::Partial => {}
            Head::Status(_, at) => prop_assert!(at <= bytes.len()),
        }
    }
}
