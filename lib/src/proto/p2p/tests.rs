use super::*;
use proptest::prelude::*;

const K: &str = "SHA256E-s11--b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9.txt";
const U: &str = "de2c220a-31f0-4f79-a0cf-2ae34a0559b9";

fn key() -> Key {
    Key::from_str(K).unwrap()
}
fn uuid(s: &str) -> Uuid {
    Uuid::parse(s).unwrap()
}
fn parse(s: &str) -> Result<Message, ParseError> {
    parse_line(s.as_bytes())
}

/// Lines seen on the wire in real git-annex sessions (spec §7 and the fixtures), with
/// the value each stands for: decoding gives the value, encoding gives the line back.
#[test]
fn real_lines_decode_and_encode_exactly() {
    let cases: Vec<(String, Message)> = vec![
        (format!("AUTH-SUCCESS {U}"), Message::AuthSuccess(uuid(U))),
        ("VERSION 4".into(), Message::Version(4)),
        (
            "BYPASS 11111111-1111-1111-1111-111111111111".into(),
            Message::Bypass(vec![uuid("11111111-1111-1111-1111-111111111111")]),
        ),
        ("BYPASS".into(), Message::Bypass(vec![])),
        (format!("CHECKPRESENT {K}"), Message::CheckPresent(key())),
        (
            format!("PUT hello%%world.txt {K}"),
            Message::Put {
                af: AssociatedFile::new("hello%world.txt"),
                key: key(),
            },
        ),
        (
            format!("PUT  {K}"),
            Message::Put {
                af: AssociatedFile::none(),
                key: key(),
            },
        ),
        ("PUT-FROM 6".into(), Message::PutFrom(6)),
        ("DATA 11".into(), Message::Data(11)),
        ("VALID".into(), Message::Valid),
        ("INVALID".into(), Message::Invalid),
        ("SUCCESS".into(), Message::Success),
        ("FAILURE".into(), Message::Failure),
        ("ALREADY-HAVE".into(), Message::AlreadyHave),
        (
            format!("GET 6 hello.txt {K}"),
            Message::Get {
                offset: 6,
                af: AssociatedFile::new("hello.txt"),
                key: key(),
            },
        ),
        (format!("LOCKCONTENT {K}"), Message::LockContent(key())),
        ("UNLOCKCONTENT".into(), Message::UnlockContent),
        ("GETTIMESTAMP".into(), Message::GetTimestamp),
        ("TIMESTAMP 998".into(), Message::Timestamp(998)),
        (
            format!("REMOVE-BEFORE 1598 {K}"),
            Message::RemoveBefore {
                timestamp: 1598,
                key: key(),
            },
        ),
        (format!("REMOVE {K}"), Message::Remove(key())),
        ("DATA-PRESENT".into(), Message::DataPresent),
        (
            format!("SUCCESS-PLUS {U} 350e264d-a98e-4449-affe-9cdb92de9916"),
            Message::SuccessPlus(vec![uuid(U), uuid("350e264d-a98e-4449-affe-9cdb92de9916")]),
        ),
        (
            format!("ALREADY-HAVE-PLUS {U}"),
            Message::AlreadyHavePlus(vec![uuid(U)]),
        ),
        ("FAILURE-PLUS".into(), Message::FailurePlus(vec![])),
        (
            "ERROR unknown command".into(),
            Message::Error("unknown command".into()),
        ),
        ("ERROR ".into(), Message::Error(String::new())),
        (
            "CONNECT git-upload-pack".into(),
            Message::Connect(Service::UploadPack),
        ),
        ("CONNECTDONE 0".into(), Message::ConnectDone(0)),
        ("NOTIFYCHANGE".into(), Message::NotifyChange),
        (
            "CHANGED refs/heads/master refs/heads/git-annex".into(),
            Message::Changed(vec![
                "refs/heads/master".into(),
                "refs/heads/git-annex".into(),
            ]),
        ),
        ("CHANGED ".into(), Message::Changed(vec![])),
        (
            format!("AUTH {U} abc123"),
            Message::Auth {
                uuid: uuid(U),
                token: AuthToken::parse(b"abc123").unwrap(),
            },
        ),
        ("AUTH-FAILURE".into(), Message::AuthFailure),
    ];
    for (line, msg) in cases {
        assert_eq!(parse(&line).as_ref(), Ok(&msg), "decoding {line:?}");
        assert_eq!(
            String::from_utf8(msg.to_bytes()).unwrap(),
            format!("{line}\n"),
            "encoding {msg:?}"
        );
    }
}

#[test]
fn last_parameter_takes_the_rest_of_the_line() {
    // A key with a space in its name is still one key, being last.
    let url = "URL--http://example.com/a b";
    assert_eq!(
        parse(&format!("CHECKPRESENT {url}")),
        Ok(Message::CheckPresent(Key::from_str(url).unwrap()))
    );
    assert_eq!(
        parse("ERROR this repository is read-only; write access denied"),
        Ok(Message::Error(
            "this repository is read-only; write access denied".into()
        ))
    );
    // Tabs separate too (verified with git-annex: CHECKPRESENT<TAB>K is answered).
    assert_eq!(
        parse(&format!("GET\t0\t\t{K}")),
        Ok(Message::Get {
            offset: 0,
            af: AssociatedFile::none(),
            key: key()
        })
    );
    // The single separator is dropped; a second space belongs to the key (git-annex too
    // parses it as a key, and answers FAILURE: no such content).
    match parse(&format!("CHECKPRESENT  {K}")) {
        Ok(Message::CheckPresent(k)) => assert_eq!(k.as_bytes(), format!(" {K}").as_bytes()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn messages_without_parameters_refuse_extra_text() {
    // One trailing space leaves an empty rest (git-annex answers GETTIMESTAMP ); two do not.
    assert_eq!(parse("GETTIMESTAMP "), Ok(Message::GetTimestamp));
    assert!(matches!(
        parse("GETTIMESTAMP  "),
        Err(ParseError::ExtraParameters { .. })
    ));
    assert!(matches!(
        parse("GETTIMESTAMP x"),
        Err(ParseError::ExtraParameters { .. })
    ));
    assert_eq!(parse(""), Err(ParseError::Empty));
    assert!(matches!(parse("FROB"), Err(ParseError::UnknownCommand(_))));
    assert!(matches!(
        parse("version 4"),
        Err(ParseError::UnknownCommand(_))
    ));
}

#[test]
fn lists_split_on_whitespace_runs_and_may_be_empty() {
    assert_eq!(
        parse("SUCCESS-PLUS  a \t b  "),
        Ok(Message::SuccessPlus(vec![uuid("a"), uuid("b")]))
    );
    assert_eq!(parse("SUCCESS-PLUS   "), Ok(Message::SuccessPlus(vec![])));
    assert_eq!(parse("BYPASS "), Ok(Message::Bypass(vec![])));
}

/// git-annex 10.20261026's answers to `VERSION <x>`, observed with git-annex-shell
/// p2pstdio (`-` = `ERROR unknown command`). Negative numbers are the one deliberate
/// difference (git-annex echoes `VERSION -1`; we refuse the line).
#[test]
fn numbers_are_read_like_git_annex() {
    let observed: &[(&str, Option<u64>)] = &[
        ("4abc", Some(4)),
        (" 3", Some(3)),
        ("0x2", Some(2)),
        ("4.5", None),
        ("(1)", Some(1)),
        ("", None),
        ("4e3", None),
        ("4.", Some(4)),
        ("4.x", Some(4)),
        ("4e", Some(4)),
        ("4ex", Some(4)),
        ("0x", Some(0)),
        ("0xg", Some(0)),
        ("0o7", Some(7)),
        ("0b1", Some(0)),
        ("4_0", Some(4)),
        ("+4", None),
        ("((4))", Some(4)),
        ("( 4 )", Some(4)),
        ("(4)x", Some(4)),
        ("(4", None),
        ("4)", Some(4)),
        ("-(4)", None),
        ("--4", None),
        ("0X1f", Some(31)),
        ("00012", Some(12)),
        ("４", None),
        ("4 5", Some(4)),
        ("99999999999999999999999", Some(u64::MAX)),
        ("-1", None),
        ("-0", Some(0)),
    ];
    for (text, want) in observed {
        let got = match parse(&format!("VERSION {text}")) {
            Ok(Message::Version(v)) => Some(v),
            Ok(other) => panic!("VERSION {text:?} decoded as {other:?}"),
            Err(ParseError::BadNumber { .. }) => None,
            Err(e) => panic!("VERSION {text:?}: unexpected error {e}"),
        };
        assert_eq!(got, *want, "VERSION {text:?}");
    }
    // Non-last numbers are cut at whitespace first.
    assert_eq!(
        parse(&format!("GET 4x hello.txt {K}")),
        Ok(Message::Get {
            offset: 4,
            af: AssociatedFile::new("hello.txt"),
            key: key()
        })
    );
    assert!(matches!(
        parse(&format!("GET x y {K}")),
        Err(ParseError::BadNumber { .. })
    ));
    // Exit codes are strict: only whitespace may follow.
    assert_eq!(parse("CONNECTDONE 1 "), Ok(Message::ConnectDone(1)));
    assert_eq!(parse("CONNECTDONE -1"), Ok(Message::ConnectDone(-1)));
    assert!(parse("CONNECTDONE 1x").is_err());
}

#[test]
fn field_checks() {
    // Absolute associated files make the whole message unparsable.
    assert!(matches!(
        parse(&format!("GET 0 /abs {K}")),
        Err(ParseError::BadAssociatedFile { .. })
    ));
    assert!(matches!(
        parse(&format!("PUT /abs {K}")),
        Err(ParseError::BadAssociatedFile { .. })
    ));
    assert!(matches!(
        parse("CHECKPRESENT notakey"),
        Err(ParseError::BadKey { .. })
    ));
    assert!(matches!(
        parse("CHECKPRESENT "),
        Err(ParseError::BadKey { .. })
    ));
    // A key with path-like parts is just a key here; nothing treats it as a path.
    assert_eq!(
        parse("CHECKPRESENT SHA256E-s1--a/../../b"),
        Ok(Message::CheckPresent(
            Key::from_str("SHA256E-s1--a/../../b").unwrap()
        ))
    );
    assert!(matches!(
        parse("CONNECT foo"),
        Err(ParseError::BadService(_))
    ));
    assert!(matches!(
        parse("CONNECT git-upload-pack "),
        Err(ParseError::BadService(_))
    ));
    // Tokens are lower-cased; anything but letters and digits is refused.
    assert_eq!(
        parse(&format!("AUTH {U} AbC")),
        Ok(Message::Auth {
            uuid: uuid(U),
            token: AuthToken::parse(b"abc").unwrap()
        })
    );
    assert_eq!(parse(&format!("AUTH {U} a-b")), Err(ParseError::BadToken));
    assert!(AuthToken::parse(b"abc")
        .unwrap()
        .matches(&AuthToken::parse(b"ABC").unwrap()));
    assert!(!AuthToken::parse(b"abc")
        .unwrap()
        .matches(&AuthToken::parse(b"abd").unwrap()));
    assert!(!format!("{:?}", AuthToken::parse(b"secret").unwrap()).contains("secret"));
}

#[test]
fn framing() {
    // Need more until the newline.
    assert_eq!(decode(b"VERSION 4"), Ok(None));
    assert_eq!(decode(b""), Ok(None));
    // \r before \n is dropped; the count includes both.
    assert_eq!(
        decode(b"VERSION 4\r\nGETTIMESTAMP\n"),
        Ok(Some((Message::Version(4), 11)))
    );
    // DATA gives a length; the payload is left in the buffer.
    assert_eq!(
        decode(b"DATA 5\nhelloVALID\n"),
        Ok(Some((Message::Data(5), 7)))
    );
    // An unparsable line is skipped as a whole and is not fatal.
    let e = decode(b"FROB x\nVERSION 1\n").unwrap_err();
    assert!(!e.is_fatal());
    assert!(matches!(e, DecodeError::Unparsable { consumed: 7, .. }));
    // The longest acceptable line: 32767 bytes before the newline (verified).
    let mut ok = vec![b'X'; MAX_LINE - 1];
    ok.push(b'\n');
    assert!(matches!(
        decode(&ok),
        Err(DecodeError::Unparsable { consumed, .. }) if consumed == MAX_LINE
    ));
    let mut ok = vec![b'X'; MAX_LINE - 2];
    ok.extend_from_slice(b"\r\n");
    assert!(matches!(decode(&ok), Err(DecodeError::Unparsable { .. })));
    // One more byte is fatal, with or without the newline having arrived.
    let mut long = vec![b'X'; MAX_LINE];
    assert_eq!(decode(&long), Err(DecodeError::LineTooLong));
    long.push(b'\n');
    let e = decode(&long).unwrap_err();
    assert!(e.is_fatal());
    // Short of the limit, no newline yet: wait.
    assert_eq!(decode(&vec![b'X'; MAX_LINE - 1]), Ok(None));
}

#[test]
fn newlines_never_leak_into_the_output() {
    let m = Message::Error("two\nlines".into());
    assert_eq!(m.to_bytes(), b"ERROR two lines\n");
    let m = Message::Changed(vec!["a\nb".into()]);
    assert_eq!(m.to_bytes(), b"CHANGED a b\n");
}

// ---- property tests ----

fn arb_uuid() -> impl Strategy<Value = Uuid> {
    "[A-Za-z0-9-]{1,40}".prop_map(|s| Uuid::parse(&s).unwrap())
}

fn arb_key() -> impl Strategy<Value = Key> {
    (
        prop::sample::select(vec!["SHA256E", "SHA1", "WORM", "URL", "XXH3E", "MD5E"]),
        prop::option::of(any::<u64>()),
        prop::option::of(0i64..2_000_000_000),
        // Key names: any bytes but newline and NUL; no trailing \r (the reader drops it).
        proptest::collection::vec(
            any::<u8>().prop_filter("no newline/NUL", |b| *b != b'\n' && *b != 0),
            0..60,
        )
        .prop_filter("no trailing CR", |v| v.last() != Some(&b'\r')),
    )
        .prop_filter_map("valid key", |(variety, size, mtime, name)| {
            Key::from_parts(crate::types::key::KeyParts {
                variety: variety.as_bytes(),
                size,
                mtime,
                chunk_size: None,
                chunk_num: None,
                name: &name,
            })
            .ok()
        })
}

fn arb_af() -> impl Strategy<Value = AssociatedFile> {
    // Paths whose wire form decodes back to themselves: no whitespace or control bytes,
    // not absolute.
    prop_oneof![
        Just(AssociatedFile::none()),
        "[A-Za-z0-9._%-][A-Za-z0-9._/%-]{0,40}".prop_map(AssociatedFile::new),
    ]
}

fn arb_text() -> impl Strategy<Value = String> {
    "[^\n\r]{0,60}"
}

fn arb_message() -> impl Strategy<Value = Message> {
    let uuids = || proptest::collection::vec(arb_uuid(), 0..5);
    prop_oneof![
        (arb_uuid(), "[a-z0-9]{0,20}").prop_map(|(uuid, t)| Message::Auth {
            uuid,
            token: AuthToken::parse(t.as_bytes()).unwrap()
        }),
        arb_uuid().prop_map(Message::AuthSuccess),
        Just(Message::AuthFailure),
        any::<u64>().prop_map(Message::Version),
        prop_oneof![Just(Service::UploadPack), Just(Service::ReceivePack)]
            .prop_map(Message::Connect),
        any::<i64>()
            .prop_filter("representable", |c| *c != i64::MIN)
            .prop_map(Message::ConnectDone),
        Just(Message::NotifyChange),
        proptest::collection::vec("[A-Za-z0-9/_.-]{1,30}", 0..4).prop_map(Message::Changed),
        arb_key().prop_map(Message::CheckPresent),
        arb_key().prop_map(Message::LockContent),
        Just(Message::UnlockContent),
        arb_key().prop_map(Message::Remove),
        (any::<u64>(), arb_key())
            .prop_map(|(timestamp, key)| Message::RemoveBefore { timestamp, key }),
        Just(Message::GetTimestamp),
        (any::<u64>(), arb_af(), arb_key()).prop_map(|(offset, af, key)| Message::Get {
            offset,
            af,
            key
        }),
        (arb_af(), arb_key()).prop_map(|(af, key)| Message::Put { af, key }),
        any::<u64>().prop_map(Message::PutFrom),
        Just(Message::AlreadyHave),
        uuids().prop_map(Message::AlreadyHavePlus),
        Just(Message::Success),
        uuids().prop_map(Message::SuccessPlus),
        Just(Message::Failure),
        uuids().prop_map(Message::FailurePlus),
        uuids().prop_map(Message::Bypass),
        any::<u64>().prop_map(Message::Data),
        Just(Message::DataPresent),
        Just(Message::Valid),
        Just(Message::Invalid),
        any::<u64>().prop_map(Message::Timestamp),
        arb_text().prop_map(Message::Error),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn decode_inverts_encode(m in arb_message()) {
        let bytes = m.to_bytes();
        prop_assert_eq!(decode(&bytes), Ok(Some((m.clone(), bytes.len()))));
        // Without its newline the same bytes are incomplete.
        prop_assert_eq!(decode(&bytes[..bytes.len() - 1]), Ok(None));
    }

    #[test]
    fn a_stream_of_messages_decodes_in_order(ms in proptest::collection::vec(arb_message(), 1..8)) {
        let mut stream = Vec::new();
        for m in &ms {
            m.encode(&mut stream);
        }
        let mut at = 0;
        for m in &ms {
            let (got, used) = decode(&stream[at..]).unwrap().unwrap();
            prop_assert_eq!(&got, m);
            at += used;
        }
        prop_assert_eq!(at, stream.len());
    }

    #[test]
    fn decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        check_total(&bytes);
    }

    #[test]
    fn decoder_never_panics_on_near_misses(
        cmd in prop::sample::select(COMMANDS.to_vec()),
        rest in proptest::collection::vec(
            prop_oneof![Just(b' '), Just(b'\t'), Just(b'('), Just(b')'), Just(b'-'),
                        Just(b'0'), Just(b'x'), Just(b'9'), Just(b'%'), Just(b'/'),
                        Just(b'\r'), any::<u8>()],
            0..80),
    ) {
        let mut line = cmd.as_bytes().to_vec();
        line.push(b' ');
        line.extend_from_slice(&rest);
        line.push(b'\n');
        check_total(&line);
    }
}

/// Decoding consumes within bounds and, when it returns a message, re-encoding and
/// decoding that message is stable.
fn check_total(bytes: &[u8]) {
    match decode(bytes) {
        Ok(Some((m, used))) => {
            assert!(used <= bytes.len() && used > 0);
            let again = m.to_bytes();
            // (A last field ending in \r cannot survive a round trip: the reader drops a
            // \r before the newline, in git-annex too.)
            if !again.ends_with(b"\r\n") {
                assert_eq!(decode(&again), Ok(Some((m, again.len()))));
            }
        }
        Ok(None) => assert!(!bytes[..bytes.len().min(MAX_LINE)].contains(&b'\n')),
        Err(DecodeError::Unparsable { consumed, .. }) => {
            assert!(consumed <= bytes.len() && consumed > 0)
        }
        Err(DecodeError::LineTooLong) => assert!(bytes.len() >= MAX_LINE),
    }
}
