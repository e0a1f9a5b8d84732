//! The same HTTP requests sent to `git annex p2phttp` and to `annexgate-http`, serving the
//! same repository side by side: statuses, bodies and the headers that matter must be
//! identical (lock ids and clock readings aside).
//!
//! Requests that change the repository are chosen so that running them on one server and
//! then the other gives both the same answer (a store then finds the content there, a
//! removal then finds it gone, both still "success").

use super::support::{request, Impl, Resp, Server};
use crate::harness::{pseudo_random, RepoKind, TestEnv, Transport};

/// One request; `{U}`, `{K1}`… in the target are filled in per run.
struct Req {
    method: &'static str,
    target: String,
    headers: Vec<(&'static str, String)>,
    body: Option<Vec<u8>>,
}

fn req(method: &'static str, target: impl Into<String>) -> Req {
    Req {
        method,
        target: target.into(),
        headers: Vec::new(),
        body: None,
    }
}

impl Req {
    fn h(mut self, k: &'static str, v: impl Into<String>) -> Req {
        self.headers.push((k, v.into()));
        self
    }
    fn body(mut self, b: &[u8]) -> Req {
        self.body = Some(b.to_vec());
        self
    }
    fn send(&self, s: &Server) -> Resp {
        let hs: Vec<(&str, &str)> = self.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        request(
            s.addr(),
            self.method,
            &self.target,
            &hs,
            self.body.as_deref(),
        )
    }
}

/// What must be equal between the two servers' answers.
fn comparable(r: &Resp) -> (u16, String, Vec<(String, String)>) {
    let mut body = r.text();
    if let Ok(serde_json::Value::Object(mut m)) = serde_json::from_slice(&r.body) {
        if m.contains_key("lockid") {
            m.insert("lockid".into(), "<lockid>".into());
        }
        if let Some(t) = m.get("timestamp").and_then(|t| t.as_u64()) {
            // Both read the same clock; allow for a second ticking over.
            m.insert("timestamp".into(), (t / 10).into());
        }
        let rebuilt = serde_json::Value::Object(m).to_string();
        // Field order and spelling must match byte for byte apart from the above.
        if !r.text().contains("lockid") && !r.text().contains("timestamp") {
            assert_eq!(rebuilt, body, "JSON not in git-annex's canonical form");
        }
        body = rebuilt;
    }
    let keep = [
        "content-type",
        "x-git-annex-data-length",
        "www-authenticate",
        "transfer-encoding",
    ];
    let mut headers: Vec<(String, String)> = r
        .headers
        .iter()
        .filter(|(k, _)| keep.contains(&k.as_str()))
        .cloned()
        .collect();
    headers.sort();
    (r.status, body, headers)
}

fn compare(name: &str, reqs: &[Req], reference: &Server, ours: &Server) {
    let mut failures = Vec::new();
    for (i, r) in reqs.iter().enumerate() {
        let a = r.send(reference);
        let mut b = r.send(ours);
        if b.status == 500 && b.text().contains("already in progress") {
            // git-annex's server keeps a key's transfer lock for a moment after answering a
            // broken upload; ours then finds the key busy. Ask again once it let go.
            std::thread::sleep(std::time::Duration::from_secs(2));
            b = r.send(ours);
        }
        let (ca, cb) = (comparable(&a), comparable(&b));
        if ca != cb {
            failures.push(format!(
                "#{i} {} {}\n  git-annex: {ca:?}\n  ours:      {cb:?}",
                r.method, r.target
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{name}: {} of {} requests answered differently:\n{}\n--- our log ---\n{}",
        failures.len(),
        reqs.len(),
        failures.join("\n"),
        ours.log_text()
    );
}

struct World {
    env: TestEnv,
    u: String,
    k1: String,
    k2: String,
    k2_data: Vec<u8>,
    k3: String,
    k3_data: Vec<u8>,
}

fn world() -> World {
    let env = TestEnv::new(Transport::Shim);
    let k2_data = pseudo_random(70_000, 2);
    let k3_data = pseudo_random(5000, 3);
    let (u, k1, k2, k3) = {
        let srv = env.server_repo("srv", RepoKind::NonBare);
        srv.add_files(&[("one.txt", b"file one\n")]);
        // Keys for content the repository does not have yet.
        let calc = |name: &str, data: &[u8]| {
            let p = env.root().join(name);
            std::fs::write(&p, data).unwrap();
            let k = srv
                .annex(&["calckey", p.to_str().unwrap()])
                .stdout
                .trim()
                .to_string();
            k
        };
        let k2 = calc("two.bin", &k2_data);
        let k3 = calc("three.bin", &k3_data);
        (srv.uuid().to_string(), srv.key_of("one.txt"), k2, k3)
    };
    World {
        env,
        u,
        k1,
        k2,
        k2_data,
        k3,
        k3_data,
    }
}

const C: &str = "11111111-2222-3333-4444-555555555555";

fn b64(s: &str) -> String {
    annexgate::http::route::encode_value(format!("[{s}]").as_bytes())
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string()
}

#[test]
fn same_answers_as_git_annex_wideopen() {
    let w = world();
    let dir = w.env.root().join("srv");
    let reference = Server::start(&w.env, Impl::GitAnnex, &dir, &["--wideopen"], &[]);
    let ours = Server::start(&w.env, Impl::Ours, &dir, &["--wideopen"], &[]);
    let (u, k1, k2, k3) = (&w.u, &w.k1, &w.k2, &w.k3);
    let g = "/git-annex";
    let mut reqs = Vec::new();
    // Reading.
    for v in 0..=4 {
        reqs.push(req(
            "POST",
            format!("{g}/{u}/v{v}/checkpresent?key={k1}&clientuuid={C}"),
        ));
        reqs.push(req(
            "POST",
            format!("{g}/{u}/v{v}/checkpresent?key={k2}&clientuuid={C}"),
        ));
        reqs.push(req(
            "GET",
            format!("{g}/{u}/v{v}/key/{k1}?clientuuid={C}&associatedfile=one.txt"),
        ));
        reqs.push(req("GET", format!("{g}/{u}/v{v}/key/{k2}?clientuuid={C}")));
        reqs.push(req(
            "POST",
            format!("{g}/{u}/v{v}/gettimestamp?clientuuid={C}"),
        ));
        reqs.push(req(
            "POST",
            format!("{g}/{u}/v{v}/putoffset?key={k1}&clientuuid={C}"),
        ));
        reqs.push(req(
            "POST",
            format!("{g}/{u}/v{v}/remove-before?key={k2}&clientuuid={C}&timestamp=1"),
        ));
    }
    reqs.push(req(
        "GET",
        format!("{g}/{u}/v4/key/{k1}?clientuuid={C}&offset=5"),
    ));
    reqs.push(req(
        "GET",
        format!("{g}/{u}/v4/key/{k1}?clientuuid={C}&offset=9"),
    ));
    reqs.push(req(
        "GET",
        format!("{g}/{u}/v4/key/{k1}?clientuuid={C}&offset=100"),
    ));
    reqs.push(req(
        "GET",
        format!("{g}/{u}/v4/key/{k1}/?clientuuid={C}&offset=%203"),
    ));
    reqs.push(req("GET", format!("{g}/{u}/key/{k1}")));
    reqs.push(req("HEAD", format!("{g}/{u}/key/{k1}")));
    reqs.push(req("GET", format!("{g}/{u}/key/{k2}")));
    reqs.push(req(
        "GET",
        format!("{g}/%5B{}%5D/key/%5B{}%5D", b64(u), b64(k1)),
    ));
    reqs.push(req(
        "GET",
        format!("{g}/{u}/v4/key/{k1}?clientuuid=%5B{}%5D&bypass={C}", b64(C)),
    ));
    // Refusals and errors.
    reqs.push(req("POST", format!("{g}/{u}/v4/checkpresent?key={k1}")));
    reqs.push(req(
        "POST",
        format!("{g}/{u}/v4/checkpresent?clientuuid={C}"),
    ));
    reqs.push(req(
        "POST",
        format!("{g}/{u}/v4/checkpresent?key=bad&clientuuid={C}"),
    ));
    reqs.push(req(
        "POST",
        format!("{g}/{u}/v4/checkpresent?key={k1}&clientuuid="),
    ));
    reqs.push(req(
        "POST",
        format!("{g}/{u}/v4/checkpresent?key={k1}&clientuuid=%5Bx%5D"),
    ));
    reqs.push(req(
        "POST",
        format!("{g}/{u}/v4/checkpresent?key={k1}&clientuuid={C}&bypass="),
    ));
    reqs.push(req(
        "GET",
        format!("{g}/{u}/v4/checkpresent?key={k1}&clientuuid={C}"),
    ));
    reqs.push(req(
        "POST",
        format!("{g}/{u}/v5/checkpresent?key={k1}&clientuuid={C}"),
    ));
    reqs.push(req(
        "POST",
        format!("{g}/{u}/v2/gettimestamp?clientuuid={C}"),
    ));
    reqs.push(req(
        "POST",
        format!("{g}/{u}/v0/putoffset?key={k1}&clientuuid={C}"),
    ));
    reqs.push(req(
        "POST",
        format!("{g}/{u}/v4/nosuch?key={k1}&clientuuid={C}"),
    ));
    reqs.push(req(
        "POST",
        format!("{g}/00000000-0000-0000-0000-000000000000/v4/checkpresent?key={k1}&clientuuid={C}"),
    ));
    reqs.push(req("GET", format!("{g}/nosuch/key/{k1}")));
    reqs.push(req(
        "POST",
        format!("{g}//v4/checkpresent?key={k1}&clientuuid={C}"),
    ));
    reqs.push(req("POST", format!("{g}/{u}/key/{k1}")));
    reqs.push(req("GET", format!("{g}/{u}/v3/key/bad?clientuuid={C}")));
    reqs.push(req("GET", format!("{g}/{u}/v4/key/bad?clientuuid={C}")));
    reqs.push(req("GET", format!("{g}/{u}/v3/key/{k1}")));
    reqs.push(req(
        "GET",
        format!("{g}/{u}/v4/key/{k1}?clientuuid={C}&offset=x"),
    ));
    reqs.push(req("GET", format!("{g}/{u}/key/{k1}")).h("Accept", "text/html"));
    reqs.push(
        req(
            "POST",
            format!("{g}/{u}/v4/checkpresent?key={k1}&clientuuid={C}"),
        )
        .h("Authorization", "garbage"),
    );
    reqs.push(req(
        "POST",
        format!("{g}/{u}/v4/remove-before?key={k1}&clientuuid={C}"),
    ));
    reqs.push(req(
        "POST",
        format!("{g}/{u}/v4/remove-before?key={k1}&clientuuid={C}&timestamp=x"),
    ));
    reqs.push(req("POST", format!("{g}/{u}/v4/keeplocked?clientuuid={C}")));
    reqs.push(req("POST", format!("{g}/{u}/v4/put?key={k2}&clientuuid={C}")).body(b"x"));
    reqs.push(
        req("POST", format!("{g}/{u}/v4/put?key={k2}&clientuuid={C}"))
            .h("X-git-annex-data-length", "x")
            .body(b"x"),
    );
    reqs.push(
        req(
            "POST",
            format!("{g}/{u}/v4/put?key={k2}&clientuuid={C}&data-present=yes"),
        )
        .h("X-git-annex-data-length", "0"),
    );
    reqs.push(req("GET", "/"));
    // Storing and removing (each server in turn; the second finds the first's work).
    let len2 = w.k2_data.len().to_string();
    reqs.push(
        req(
            "POST",
            format!("{g}/{u}/v4/put?key={k2}&clientuuid={C}&associatedfile=two.bin"),
        )
        .h("X-git-annex-data-length", &len2)
        .h("Content-Type", "application/octet-stream")
        .body(&w.k2_data),
    );
    reqs.push(req(
        "POST",
        format!("{g}/{u}/v4/checkpresent?key={k2}&clientuuid={C}"),
    ));
    reqs.push(req(
        "GET",
        format!("{g}/{u}/v2/key/{k2}?clientuuid={C}&offset=1000"),
    ));
    reqs.push(req(
        "POST",
        format!("{g}/{u}/v4/putoffset?key={k2}&clientuuid={C}"),
    ));
    reqs.push(req(
        "POST",
        format!("{g}/{u}/v1/putoffset?key={k2}&clientuuid={C}"),
    ));
    reqs.push(req(
        "POST",
        format!("{g}/{u}/v4/remove?key={k2}&clientuuid={C}"),
    ));
    reqs.push(req(
        "POST",
        format!("{g}/{u}/v1/remove?key={k2}&clientuuid={C}"),
    ));
    reqs.push(
        req("POST", format!("{g}/{u}/v0/put?key={k2}&clientuuid={C}"))
            .h("X-git-annex-data-length", &len2)
            .body(&w.k2_data),
    );
    reqs.push(req(
        "POST",
        format!("{g}/{u}/v0/remove?key={k2}&clientuuid={C}"),
    ));
    reqs.push(
        req("POST", format!("{g}/{u}/v4/put?key={k2}&clientuuid={C}"))
            .h("X-git-annex-data-length", "-1"),
    );
    reqs.push(
        req(
            "POST",
            format!("{g}/{u}/v4/put?key={k2}&clientuuid={C}&data-present=true"),
        )
        .h("X-git-annex-data-length", "0"),
    );
    // A short upload leaves a partial file; both then report its size and resume it.
    let len3 = w.k3_data.len().to_string();
    reqs.push(
        req("POST", format!("{g}/{u}/v4/put?key={k3}&clientuuid={C}"))
            .h("X-git-annex-data-length", &len3)
            .body(&w.k3_data[..3]),
    );
    reqs.push(req(
        "POST",
        format!("{g}/{u}/v4/putoffset?key={k3}&clientuuid={C}"),
    ));
    reqs.push(
        req(
            "POST",
            format!("{g}/{u}/v4/put?key={k3}&clientuuid={C}&offset=3"),
        )
        .h("X-git-annex-data-length", (w.k3_data.len() - 3).to_string())
        .body(&w.k3_data[3..]),
    );
    reqs.push(req(
        "POST",
        format!("{g}/{u}/v4/checkpresent?key={k3}&clientuuid={C}"),
    ));
    reqs.push(req(
        "POST",
        format!("{g}/{u}/v4/remove-before?key={k3}&clientuuid={C}&timestamp=1"),
    ));
    reqs.push(req(
        "POST",
        format!("{g}/{u}/v4/remove-before?key={k3}&clientuuid={C}&timestamp=99999999999"),
    ));
    reqs.push(req(
        "POST",
        format!("{g}/{u}/v4/checkpresent?key={k3}&clientuuid={C}"),
    ));
    // Locks.
    reqs.push(req(
        "POST",
        format!("{g}/{u}/v4/lockcontent?key={k2}&clientuuid={C}"),
    ));
    reqs.push(
        req(
            "POST",
            format!(
                "{g}/{u}/v4/keeplocked?lockid=00000000-1111-2222-3333-444444444444&clientuuid={C}"
            ),
        )
        .body(b""),
    );
    reqs.push(
        req("POST", format!("{g}/{u}/v0/keeplocked?lockid=abc"))
            .h("Content-Type", "text/plain")
            .body(b"garbage"),
    );
    compare("wideopen", &reqs, &reference, &ours);

    // lockcontent then keeplocked with the lock id each server gave.
    for s in [&reference, &ours] {
        let r = req(
            "POST",
            format!("{g}/{u}/v4/lockcontent?key={k1}&clientuuid={C}"),
        )
        .send(s);
        let j = r.json();
        assert_eq!(j["locked"], true, "{:?}: {}", s.which, r.text());
        let id = j["lockid"].as_str().unwrap().to_string();
        assert_eq!(id.len(), 36, "lock ids are UUIDs");
        let r = req(
            "POST",
            format!("{g}/{u}/v4/keeplocked?lockid={id}&clientuuid={C}"),
        )
        .h("Content-Type", "application/json")
        .body(b"{\"unlock\":false}\n{\"unlock\":true}\n")
        .send(s);
        assert_eq!(
            (r.status, r.text()),
            (200, "{\"locked\":false}".to_string()),
            "{:?}",
            s.which
        );
    }
}

fn auth_requests(w: &World) -> Vec<Req> {
    let (u, k1, k2) = (&w.u, &w.k1, &w.k2);
    let g = "/git-annex";
    let basic = |up: &str| format!("Basic {}", b64_std(up.as_bytes()));
    let creds: Vec<Option<String>> = vec![
        None,
        Some(basic("alice:apw")),
        Some(basic("alice:wrong")),
        Some(basic("bob:bpw")),
        Some(basic("carol:cpw")),
        Some(basic("nobody:x")),
    ];
    let mut out = Vec::new();
    for c in creds {
        let mut add = |r: Req| {
            out.push(match &c {
                Some(v) => r.h("Authorization", v.clone()),
                None => r,
            })
        };
        add(req(
            "POST",
            format!("{g}/{u}/v4/checkpresent?key={k1}&clientuuid={C}"),
        ));
        add(req("GET", format!("{g}/{u}/key/{k1}")));
        add(req(
            "POST",
            format!("{g}/{u}/v4/gettimestamp?clientuuid={C}"),
        ));
        add(req(
            "POST",
            format!("{g}/{u}/v4/putoffset?key={k2}&clientuuid={C}"),
        ));
        add(req(
            "POST",
            format!("{g}/{u}/v4/put?key={k2}&clientuuid={C}&data-present=true"),
        )
        .h("X-git-annex-data-length", "0"));
        add(req(
            "POST",
            format!("{g}/{u}/v4/remove?key={k2}&clientuuid={C}"),
        ));
        add(req(
            "POST",
            format!("{g}/{u}/v3/remove-before?key={k2}&clientuuid={C}&timestamp=1"),
        ));
        add(req(
            "POST",
            format!("{g}/{u}/v4/lockcontent?key={k2}&clientuuid={C}"),
        ));
        add(req("POST", format!("{g}/{u}/v4/keeplocked?lockid=abc")).body(b""));
        add(req(
            "POST",
            format!("{g}/nosuch/v4/checkpresent?key={k1}&clientuuid={C}"),
        ));
    }
    out
}

/// Standard base64 (what curl and browsers send for Basic auth).
fn b64_std(b: &[u8]) -> String {
    annexgate::http::route::base64_encode(b)
        .replace('-', "+")
        .replace('_', "/")
}

#[test]
fn same_permissions_as_git_annex() {
    let w = world();
    let dir = w.env.root().join("srv");
    let users = [
        ("GIT_ANNEX_P2PHTTP_PASSWORD_alice", "apw"),
        ("GIT_ANNEX_P2PHTTP_PASSWORD_bob", "bpw"),
        ("GIT_ANNEX_P2PHTTP_PERMISSIONS_bob", "readonly"),
        ("GIT_ANNEX_P2PHTTP_PASSWORD_carol", "cpw"),
        ("GIT_ANNEX_P2PHTTP_PERMISSIONS_carol", "appendonly"),
    ];
    let reqs = auth_requests(&w);
    let combos: &[&[&str]] = &[
        &[],
        &["--authenv-http"],
        &["--authenv"],
        &["--authenv-http", "--unauth-readonly"],
        &["--unauth-readonly"],
        &["--unauth-appendonly", "--unauth-nolocking"],
        &["--authenv-http", "--unauth-appendonly"],
        &["--wideopen", "--authenv-http"],
    ];
    for opts in combos {
        let reference = Server::start(&w.env, Impl::GitAnnex, &dir, opts, &users);
        let ours = Server::start(&w.env, Impl::Ours, &dir, opts, &users);
        compare(&format!("{opts:?}"), &reqs, &reference, &ours);
    }
}

#[test]
fn lockedfiles_limit_like_git_annex() {
    let w = world();
    let dir = w.env.root().join("srv");
    let (u, k1) = (&w.u, &w.k1);
    let args = ["--wideopen", "--lockedfiles", "1"];
    let reference = Server::start(&w.env, Impl::GitAnnex, &dir, &args, &[]);
    let ours = Server::start(&w.env, Impl::Ours, &dir, &args, &[]);
    let lock = req(
        "POST",
        format!("/git-annex/{u}/v4/lockcontent?key={k1}&clientuuid={C}"),
    );
    let mut seen = Vec::new();
    for s in [&reference, &ours] {
        let first = lock.send(s).json();
        let second = lock.send(s).text();
        let id = first["lockid"]
            .as_str()
            .expect("the first lock is taken")
            .to_string();
        let unlock = req("POST", format!("/git-annex/{u}/v4/keeplocked?lockid={id}"))
            .body(b"{\"unlock\":true}\n")
            .send(s)
            .text();
        let third = lock.send(s).json();
        seen.push((
            first["locked"].clone(),
            second,
            unlock,
            third["locked"].clone(),
        ));
    }
    assert_eq!(seen[0], seen[1], "git-annex, then ours");
    assert_eq!(
        seen[1].1, "{\"locked\":false}",
        "the second lock is over the limit"
    );
    assert_eq!(seen[1].3, true, "a released lock frees its slot");
}
