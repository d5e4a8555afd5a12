//! Property tests of the cursor decoder: bounded case counts (a few seconds in all), so they run
//! in every `cargo test`. `scripts/fuzz-cursors` fuzzes the same decoder with coverage guidance.

use proptest::prelude::*;

use super::*;

fn sealer() -> CursorSealer {
    CursorSealer::new([42; 32])
}

fn binding() -> Binding {
    Binding::new(
        "contacts",
        Uuid::from_u128(7),
        "email",
        Fingerprint::of([("tag", "vip")]),
    )
}

/// Any text key a cursor may carry: no NUL, at most the byte cap.
fn text_key() -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>().prop_filter("no NUL", |c| *c != '\0'), 0..300)
        .prop_map(String::from_iter)
        .prop_filter("fits", |s| s.len() <= MAX_TEXT_KEY_BYTES)
}

/// Any cursor the server could seal.
fn cursor() -> impl Strategy<Value = Cursor> {
    // Years 1 to 9999, to the microsecond.
    let time = (-62_135_596_800_000_000i64..253_402_300_799_999_999)
        .prop_map(|us| SortKey::Time(DateTime::from_timestamp_micros(us).unwrap()));
    let key = prop_oneof![time, text_key().prop_map(SortKey::Text)];
    (key, any::<u128>()).prop_map(|(key, id)| Cursor {
        key,
        id: Uuid::from_u128(id),
    })
}

/// Arbitrary text, including long and non-ASCII strings.
fn any_text() -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>(), 0..3000).prop_map(String::from_iter)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_text_never_opens(text in any_text()) {
        prop_assert_eq!(sealer().open(&binding(), &text), None);
    }

    #[test]
    fn arbitrary_base64url_never_opens(text in "[A-Za-z0-9_-]{0,400}") {
        prop_assert_eq!(sealer().open(&binding(), &text), None);
    }

    #[test]
    fn arbitrary_bytes_never_open(
        bytes in prop::collection::vec(any::<u8>(), 0..600),
        versioned in any::<bool>(),
    ) {
        // With the right version byte in front, the bytes reach the AEAD itself.
        let mut raw = bytes;
        if versioned {
            raw.insert(0, VERSION);
        }
        let text = URL_SAFE_NO_PAD.encode(&raw);
        prop_assert_eq!(sealer().open(&binding(), &text), None);
    }

    #[test]
    fn every_sealable_cursor_round_trips(c in cursor()) {
        let (s, b) = (sealer(), binding());
        let text = s.seal(&b, &c).unwrap();
        prop_assert!(text.len() <= MAX_CURSOR_LEN);
        prop_assert_eq!(s.open(&b, &text), Some(c));
    }

    #[test]
    fn any_sealed_plaintext_opens_only_if_canonical(
        plain in prop::collection::vec(any::<u8>(), 0..80),
        kind in prop_oneof![Just(KIND_TIME), Just(KIND_TEXT), any::<u8>()],
    ) {
        // Past the tag, the parser sees whatever a (buggy or key-holding) sealer wrote: it
        // must not panic, and what it accepts must be exactly what `plaintext` would write.
        let (s, b) = (sealer(), binding());
        let mut bytes = plain.clone();
        if bytes.len() > ID_LEN {
            bytes[ID_LEN] = kind;
        }
        if let Some(c) = s.open(&b, &s.seal_bytes(&b, &bytes)) {
            prop_assert_eq!(plaintext(&c), Some(bytes));
            if let SortKey::Text(t) = &c.key {
                prop_assert!(!t.contains('\0'));
            }
        }
    }

    #[test]
    fn a_changed_character_never_opens(c in cursor(), at in any::<prop::sample::Index>(), by in any::<char>()) {
        let (s, b) = (sealer(), binding());
        let text = s.seal(&b, &c).unwrap();
        let i = at.index(text.len());
        prop_assume!(text.as_bytes()[i] as u32 != by as u32);
        let mut mutated = text[..i].to_string();
        mutated.push(by);
        mutated.push_str(&text[i + 1..]);
        prop_assert_eq!(s.open(&b, &mutated), None);
    }

    #[test]
    fn a_flipped_bit_in_the_sealed_bytes_never_opens(c in cursor(), at in any::<prop::sample::Index>(), bit in 0u8..8) {
        let (s, b) = (sealer(), binding());
        let mut raw = URL_SAFE_NO_PAD.decode(s.seal(&b, &c).unwrap()).unwrap();
        let i = at.index(raw.len());
        raw[i] ^= 1 << bit;
        prop_assert_eq!(s.open(&b, &URL_SAFE_NO_PAD.encode(&raw)), None);
    }

    #[test]
    fn a_truncated_or_extended_cursor_never_opens(c in cursor(), keep in any::<prop::sample::Index>(), tail in "\\PC{1,40}") {
        let (s, b) = (sealer(), binding());
        let text = s.seal(&b, &c).unwrap();
        prop_assert_eq!(s.open(&b, &text[..keep.index(text.len())]), None);
        prop_assert_eq!(s.open(&b, &format!("{text}{tail}")), None);
    }
}
