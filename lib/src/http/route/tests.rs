//! Routing decisions checked against what git-annex's server answered (spec p2phttp.md and
//! probes of `git annex p2phttp` 10.20261026).

use super::*;

const U: &str = "614d209b-1c65-4f22-b598-6d1f03f8c6ed";
const K: &str = "SHA256E-s9--198cef2c92e80b728ae28c9978e64381fa18d9b31adf2068ca63b1d53153cf95.txt";
const C: &str = "11111111-2222-3333-4444-555555555555";

fn run(method: &str, target: &str, headers: &[(&str, &str)]) -> Result<Routed, HttpError> {
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let hs: Vec<(String, Vec<u8>)> = headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_bytes().to_vec()))
        .collect();
    let header = |name: &str| {
        let name = name.to_ascii_lowercase();
        hs.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_slice())
    };
    route(&RequestParts {
        method,
        path,
        query,
        header: &header,
    })
}

fn err(method: &str, target: &str) -> (u16, String) {
    let e = run(method, target, &[]).expect_err("routing should fail");
    (e.status, e.body)
}

#[test]
fn checkpresent_parses() {
    let r = run(
        "POST",
        &format!("/git-annex/{U}/v4/checkpresent?key={K}&clientuuid={C}"),
        &[],
    )
    .unwrap();
    assert_eq!(r.server, U);
    assert_eq!(r.version, Some(4));
    assert_eq!(r.client.as_deref(), Some(C));
    assert_eq!(
        r.call,
        Call::CheckPresent {
            key: Key::from_str(K).unwrap()
        }
    );
}

#[test]
fn missing_and_bad_parameters() {
    assert_eq!(
        err("POST", &format!("/git-annex/{U}/v4/checkpresent?key={K}")),
        (400, "Query parameter clientuuid is required".into())
    );
    assert_eq!(
        err(
            "POST",
            &format!("/git-annex/{U}/v4/checkpresent?clientuuid={C}")
        ),
        (400, "Query parameter key is required".into())
    );
    assert_eq!(
        err(
            "POST",
            &format!("/git-annex/{U}/v4/checkpresent?key=bad&clientuuid={C}")
        ),
        (
            400,
            "Error parsing query parameter key failed: key parse error".into()
        )
    );
    assert_eq!(
        err(
            "POST",
            &format!("/git-annex/{U}/v4/checkpresent?key={K}&clientuuid=")
        ),
        (
            400,
            "Error parsing query parameter clientuuid failed: empty UUID".into()
        )
    );
    assert_eq!(
        err("POST", &format!("/git-annex/{U}/v4/checkpresent?key={K}&clientuuid=%5Bxx%5D")),
        (400, "Error parsing query parameter clientuuid failed: unable to base64 decode [] wrapped value".into())
    );
    assert_eq!(
        err(
            "POST",
            &format!("/git-annex/{U}/v4/checkpresent?key&clientuuid={C}")
        ),
        (400, "Query parameter key is required".into())
    );
    assert_eq!(
        err(
            "POST",
            &format!("/git-annex/{U}/v4/checkpresent?key={K}&clientuuid={C}&bypass=")
        ),
        (
            400,
            "Error parsing query parameter(s) bypass failed: empty UUID".into()
        )
    );
    assert_eq!(
        err(
            "POST",
            &format!("/git-annex/{U}/v4/remove-before?key={K}&clientuuid={C}")
        ),
        (400, "Query parameter timestamp is required".into())
    );
    assert_eq!(
        err(
            "POST",
            &format!("/git-annex/{U}/v4/remove-before?key={K}&clientuuid={C}&timestamp=x")
        ),
        (
            400,
            "Error parsing query parameter timestamp failed: timestamp parse error".into()
        )
    );
    assert_eq!(
        err(
            "POST",
            &format!("/git-annex/{U}/v4/keeplocked?clientuuid={C}")
        ),
        (400, "Query parameter lockid is required".into())
    );
    assert_eq!(
        err(
            "POST",
            &format!("/git-annex/{U}/v4/put?key={K}&clientuuid={C}&data-present=yes")
        ),
        (
            400,
            "Error parsing query parameter data-present failed: could not parse: `yes'".into()
        )
    );
    assert_eq!(
        err(
            "GET",
            &format!("/git-annex/{U}/v4/key/{K}?clientuuid={C}&offset=x")
        ),
        (
            400,
            "Error parsing query parameter offset failed: offset parse error".into()
        )
    );
}

#[test]
fn first_occurrence_wins_and_flags_are_absent() {
    let r = run(
        "POST",
        &format!(
            "/git-annex/{U}/v4/checkpresent?key={K}&key=bad&clientuuid={C}&clientuuid=&bypass"
        ),
        &[],
    )
    .unwrap();
    assert_eq!(r.client.as_deref(), Some(C));
    assert!(r.bypass.is_empty());
    let e = run(
        "POST",
        &format!("/git-annex/{U}/v4/checkpresent?key=bad&key={K}&clientuuid={C}"),
        &[],
    )
    .unwrap_err();
    assert_eq!(
        e.body,
        "Error parsing query parameter key failed: key parse error"
    );
    // '+' is a space in the query; Haskell's read allows blanks around numbers.
    let r = run(
        "GET",
        &format!("/git-annex/{U}/v4/key/{K}?clientuuid={C}&offset=+3&offset=x"),
        &[],
    )
    .unwrap();
    assert!(matches!(r.call, Call::Get { offset: 3, .. }));
}

#[test]
fn version_and_method_errors_follow_servant_priority() {
    // GET on a POST route: the v4 route says 405, the others "bad version" (400 wins).
    assert_eq!(
        err(
            "GET",
            &format!("/git-annex/{U}/v4/checkpresent?key={K}&clientuuid={C}")
        ),
        (400, "bad version".into())
    );
    assert_eq!(
        err(
            "POST",
            &format!("/git-annex/{U}/v5/checkpresent?key={K}&clientuuid={C}")
        ),
        (400, "bad version".into())
    );
    assert_eq!(
        err(
            "POST",
            &format!("/git-annex/{U}/v2/gettimestamp?clientuuid={C}")
        ),
        (400, "bad version".into())
    );
    assert_eq!(
        err(
            "POST",
            &format!("/git-annex/{U}/v0/putoffset?key={K}&clientuuid={C}")
        ),
        (400, "bad version".into())
    );
    assert_eq!(
        err(
            "POST",
            &format!("/git-annex/{U}/v4/nosuch?key={K}&clientuuid={C}")
        ),
        (404, "".into())
    );
    assert_eq!(
        err("POST", &format!("/git-annex/{U}/key/{K}")),
        (405, "".into())
    );
    assert_eq!(
        err("OPTIONS", &format!("/git-annex/{U}/key/{K}")),
        (405, "".into())
    );
    assert_eq!(
        err("POST", &format!("/git-annex/{U}/v4/key/{K}?clientuuid={C}")),
        (400, "bad version".into())
    );
    // A capture error of an earlier route wins a tie with a later one's.
    assert_eq!(
        err("GET", &format!("/git-annex/{U}/v3/key/bad?clientuuid={C}")),
        (400, "bad version".into())
    );
    assert_eq!(
        err("GET", &format!("/git-annex/{U}/v4/key/bad?clientuuid={C}")),
        (400, "key parse error".into())
    );
    // A parameter error is final.
    assert_eq!(
        err("GET", &format!("/git-annex/{U}/v3/key/{K}")),
        (400, "Query parameter clientuuid is required".into())
    );
    assert_eq!(
        err(
            "POST",
            &format!("/git-annex//v4/checkpresent?key={K}&clientuuid={C}")
        ),
        (400, "empty UUID".into())
    );
    assert_eq!(err("GET", "/"), (404, "".into()));
    assert_eq!(
        err("GET", &format!("//git-annex/{U}/v4/key/{K}?clientuuid={C}")),
        (404, "".into())
    );
}

#[test]
fn accept_header() {
    let e = run(
        "GET",
        &format!("/git-annex/{U}/key/{K}"),
        &[("Accept", "text/html")],
    )
    .unwrap_err();
    assert_eq!((e.status, e.body.as_str()), (406, ""));
    let e = run(
        "POST",
        &format!("/git-annex/{U}/v3/checkpresent?key={K}&clientuuid={C}"),
        &[("Accept", "text/html")],
    )
    .unwrap_err();
    assert_eq!((e.status, e.body.as_str()), (400, "bad version"));
    for ok in [
        "application/octet-stream",
        "*/*",
        "application/*",
        "text/html, application/octet-stream;q=0.5",
    ] {
        assert!(
            run("GET", &format!("/git-annex/{U}/key/{K}"), &[("Accept", ok)]).is_ok(),
            "{ok}"
        );
    }
    // git-annex's client's own Accept for JSON.
    assert!(run(
        "POST",
        &format!("/git-annex/{U}/v4/checkpresent?key={K}&clientuuid={C}"),
        &[("Accept", "application/json;charset=utf-8,application/json")]
    )
    .is_ok());
    assert!(!accepts(
        b"application/octet-stream;q=0",
        &["application/octet-stream"]
    ));
}

#[test]
fn trailing_slash_and_brackets() {
    let r = run("GET", &format!("/git-annex/{U}/key/{K}/"), &[]).unwrap();
    assert_eq!(r.version, None);
    assert!(matches!(r.call, Call::Get { offset: 0, .. }));
    // base64url of the UUID and of the key.
    let bu = format!("%5B{}%5D", base64_encode(U.as_bytes()));
    let bk = format!("%5B{}%5D", base64_encode(K.as_bytes()));
    let r = run("GET", &format!("/git-annex/{bu}/key/{bk}"), &[]).unwrap();
    assert_eq!(r.server, U);
    assert_eq!(
        r.call,
        Call::Get {
            key: Key::from_str(K).unwrap(),
            af: AssociatedFile::none(),
            offset: 0
        }
    );
    // Unpadded base64 is refused, as git-annex does.
    let unpadded = base64_encode(K.as_bytes())
        .trim_end_matches('=')
        .to_string();
    assert_ne!(unpadded.len() % 4, 0);
    let e = run("GET", &format!("/git-annex/{U}/key/%5B{unpadded}%5D"), &[]).unwrap_err();
    assert_eq!(e.body, "unable to base64 decode [] wrapped value");
    // An unclosed bracket is plain text.
    assert_eq!(decode_bytes("[abc").unwrap(), b"[abc");
    assert_eq!(encode_value(b"[x]"), format!("[{}]", base64_encode(b"[x]")));
    assert_eq!(encode_value(b"plain"), "plain");
    assert_eq!(encode_value(&[0xff, 0x00]), "[_wA=]");
}

#[test]
fn base64_round_trips() {
    for n in 0..40usize {
        let data: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
        let enc = base64_encode(&data);
        assert_eq!(base64_decode(enc.as_bytes(), false).unwrap(), data);
    }
    assert!(base64_decode(b"a===", false).is_none());
    assert!(base64_decode(b"ab=c", false).is_none());
    assert!(base64_decode(b"+/==", false).is_none());
    assert_eq!(base64_decode(b"+/8=", true).unwrap(), vec![0xfb, 0xff]);
}

#[test]
fn put_headers() {
    let t =
        format!("/git-annex/{U}/v4/put?key={K}&clientuuid={C}&associatedfile=a%20b.txt&offset=2");
    let e = run("POST", &t, &[]).unwrap_err();
    assert_eq!(e.body, "Header X-git-annex-data-length is required");
    let e = run("POST", &t, &[("X-git-annex-data-length", "x")]).unwrap_err();
    assert_eq!(
        e.body,
        "Error parsing header X-git-annex-data-length failed: X-git-annex-data-length parse error"
    );
    let r = run("POST", &t, &[("X-git-annex-data-length", "-1")]).unwrap();
    assert_eq!(
        r.call,
        Call::Put {
            key: Key::from_str(K).unwrap(),
            af: AssociatedFile::new("a b.txt"),
            offset: 2,
            data_length: -1,
            data_present: false
        }
    );
    // data-present only exists in v4; elsewhere it is an unknown parameter.
    let t3 = format!("/git-annex/{U}/v3/put?key={K}&clientuuid={C}&data-present=yes");
    let r = run("POST", &t3, &[("X-git-annex-data-length", "5")]).unwrap();
    assert!(matches!(
        r.call,
        Call::Put {
            data_present: false,
            ..
        }
    ));
    let t4 = format!("/git-annex/{U}/v4/put?key={K}&clientuuid={C}&data-present=TRUE");
    let r = run("POST", &t4, &[("X-git-annex-data-length", "0")]).unwrap();
    assert!(matches!(
        r.call,
        Call::Put {
            data_present: true,
            ..
        }
    ));
}

#[test]
fn authorization_header() {
    let t = format!("/git-annex/{U}/v4/checkpresent?key={K}&clientuuid={C}");
    let e = run("POST", &t, &[("Authorization", "garbage")]).unwrap_err();
    assert_eq!(
        e.body,
        "Error parsing header Authorization failed: invalid basic auth header"
    );
    let r = run("POST", &t, &[("Authorization", "Basic YWxpY2U6YTpwdw==")]).unwrap();
    assert_eq!(
        r.auth,
        Some(BasicAuth {
            user: b"alice".to_vec(),
            password: b"a:pw".to_vec()
        })
    );
    let r = run("POST", &t, &[("Authorization", "basic   Ym9i")]).unwrap();
    assert_eq!(
        r.auth,
        Some(BasicAuth {
            user: b"bob".to_vec(),
            password: vec![]
        })
    );
}

#[test]
fn keeplocked_and_generic_get_need_no_client() {
    let r = run(
        "POST",
        &format!("/git-annex/{U}/v0/keeplocked?lockid=abc"),
        &[],
    )
    .unwrap();
    assert_eq!(
        r.call,
        Call::KeepLocked {
            lockid: "abc".into()
        }
    );
    assert_eq!(r.client, None);
    let r = run("HEAD", &format!("/git-annex/{U}/key/{K}?bypass={C}"), &[]).unwrap();
    assert!(r.head);
    assert_eq!(r.bypass, vec![C.to_string()]);
}

#[test]
fn integers_as_haskell_reads_them() {
    assert_eq!(parse_integer(" 12 "), Some(12));
    assert_eq!(parse_integer("-3"), Some(-3));
    assert_eq!(parse_integer("+3"), None);
    assert_eq!(parse_integer(""), None);
    assert_eq!(parse_integer("1e3"), None);
}

#[test]
fn a_server_limited_to_older_versions_answers_as_an_older_git_annex() {
    let limited = |max: u8, method: &str, target: &str| {
        let header = |_: &str| None;
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        route_limited(
            &RequestParts {
                method,
                path,
                query: Some(query),
                header: &header,
            },
            max,
        )
    };
    let q = format!("?key={K}&clientuuid={C}");
    // Older routes of the endpoint exist: their version capture fails.
    let e = limited(2, "POST", &format!("/git-annex/{U}/v4/checkpresent{q}")).unwrap_err();
    assert_eq!((e.status, e.body.as_str()), (400, "bad version"));
    // No route of the endpoint is left: nothing fits.
    let e = limited(
        2,
        "POST",
        &format!("/git-annex/{U}/v3/gettimestamp?clientuuid={C}"),
    )
    .unwrap_err();
    assert_eq!(e.status, 404);
    let e = limited(0, "POST", &format!("/git-annex/{U}/v1/putoffset{q}")).unwrap_err();
    assert_eq!(e.status, 404);
    let r = limited(2, "POST", &format!("/git-annex/{U}/v2/checkpresent{q}")).unwrap();
    assert_eq!(r.version, Some(2));
    let r = limited(0, "GET", &format!("/git-annex/{U}/key/{K}")).unwrap();
    assert_eq!(r.version, None, "the unversioned GET stays");
}
