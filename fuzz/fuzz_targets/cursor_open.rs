//! The list-cursor decoder against arbitrary input. Panics (and libFuzzer's crash report) on:
//! any panic inside the decoder; anything opening that this process did not seal; a mutated
//! valid cursor opening; a plaintext the parser accepts that does not survive a round trip.

#![no_main]

use std::sync::LazyLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use tessera::crm::list::cursor::{self, Binding, Cursor, CursorSealer, Fingerprint, SortKey};
use uuid::Uuid;

struct Fixture {
    sealer: CursorSealer,
    binding: Binding,
    /// A genuine cursor for `binding`: the one input that may open.
    valid: String,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let sealer = CursorSealer::new([0x5a; 32]);
    let binding = Binding::new(
        "contacts",
        Uuid::from_u128(1),
        "email",
        Fingerprint::of([("q", "a")]),
    );
    let last = Cursor {
        key: SortKey::Text("ada@example.com".into()),
        id: Uuid::from_u128(2),
    };
    let valid = sealer.seal(&binding, &last).expect("seals");
    Fixture {
        sealer,
        binding,
        valid,
    }
});

fuzz_target!(|data: &[u8]| {
    let f = &*FIXTURE;
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        // The input as the `cursor` parameter.
        0 => {
            let text = String::from_utf8_lossy(rest);
            let opened = f.sealer.open(&f.binding, &text);
            assert!(opened.is_none() || text == f.valid, "opened: {text:?}");
        }
        // The input as the sealed bytes (version byte forced): reaches the AEAD itself.
        1 => {
            let mut raw = vec![1];
            raw.extend_from_slice(rest);
            let text = URL_SAFE_NO_PAD.encode(&raw);
            assert!(text == f.valid || f.sealer.open(&f.binding, &text).is_none());
        }
        // A genuine cursor, changed: one byte xored, truncated, or extended.
        2 => {
            let mut raw = URL_SAFE_NO_PAD.decode(&f.valid).unwrap();
            let (Some(&at), Some(&by)) = (rest.first(), rest.get(1)) else {
                return;
            };
            let at = usize::from(at) % raw.len();
            match by {
                0 => raw.truncate(at),
                1 => raw.extend_from_slice(&rest[2..]),
                _ => raw[at] ^= by,
            }
            if by == 1 && rest.len() == 2 {
                return; // nothing appended: still the genuine cursor
            }
            let text = URL_SAFE_NO_PAD.encode(&raw);
            assert!(f.sealer.open(&f.binding, &text).is_none(), "mutant opened");
        }
        // The input as a plaintext behind a valid tag (only our own seal gets there).
        _ => {
            if let Some(c) = cursor::fuzz_parse_plaintext(rest) {
                if let SortKey::Text(t) = &c.key {
                    assert!(!t.contains('\0'));
                }
                let again = f.sealer.seal(&f.binding, &c).expect("what opens, seals");
                assert_eq!(f.sealer.open(&f.binding, &again), Some(c));
            }
        }
    }
});
