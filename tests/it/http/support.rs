//! What the p2phttp tests share: running a server (`annexgate-http` or the real
//! `git annex p2phttp`) on a free loopback port, a small raw HTTP/1.1 client (so tests see
//! exact statuses, headers and bodies, and can stop mid-request), and client set-up.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{tools, Repo, Side, TestEnv};

/// Which server program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Impl {
    /// `git annex p2phttp` (the reference).
    GitAnnex,
    /// `annexgate-http`.
    Ours,
}

/// A running server; killed when dropped.
pub struct Server {
    child: Option<Child>,
    pub port: u16,
    pub which: Impl,
    pub log: PathBuf,
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a free port");
    l.local_addr().unwrap().port()
}

pub fn annexgate_http() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_annexgate-http"))
}

impl Server {
    /// Start `which` in `dir` (a repository, or any folder with `--directory`) with
    /// `args`, and extra environment `envs`; waits until it accepts connections.
    pub fn start(
        env: &TestEnv,
        which: Impl,
        dir: &Path,
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> Server {
        for _attempt in 0..5 {
            let port = free_port();
            let log = env.root().join(format!("server-{which:?}-{port}.log"));
            let mut cmd: Command = match which {
                Impl::GitAnnex => {
                    let mut c = env.command(Side::Server, &tools().git_annex, dir);
                    c.args(["p2phttp", "-J4"]);
                    c
                }
                Impl::Ours => {
                    let mut c = env.command(Side::Server, annexgate_http(), dir);
                    c.env(
                        "ANNEXGATE_LOG",
                        std::env::var("ANNEXGATE_LOG").unwrap_or_else(|_| "debug".into()),
                    );
                    c
                }
            };
            cmd.args(["--bind", "127.0.0.1", "--port", &port.to_string()]);
            cmd.args(args);
            for (k, v) in envs {
                cmd.env(k, v);
            }
            let out = std::fs::File::create(&log).expect("creating the server log");
            cmd.stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out);
            let child = cmd.spawn().expect("starting the p2phttp server");
            let mut s = Server {
                child: Some(child),
                port,
                which,
                log,
            };
            if s.wait_ready() {
                return s;
            }
            // Lost a race for the port (or it failed): try another.
            drop(s);
        }
        panic!("the {which:?} p2phttp server did not start");
    }

    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(_)) = c.try_wait() {
                    eprintln!("server exited early:\n{}", self.log_text());
                    return false;
                }
            }
            if TcpStream::connect(self.addr()).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The `annex+http` URL a client uses.
    pub fn annex_url(&self) -> String {
        format!("annex+http://127.0.0.1:{}/git-annex/", self.port)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM and wait (our server then commits and exits 0).
    pub fn stop(mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                return st.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A response as it came over the wire.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    /// (lower-cased name, value), in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        let n = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == n)
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text()))
    }
}

/// Send one request (with `Connection: close`) and read the whole response.
pub fn request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Resp {
    let mut s = TcpStream::connect(addr).expect("connecting to the server");
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    if let Some(b) = body {
        s.write_all(b).unwrap();
    }
    read_response(&mut BufReader::new(s), method == "HEAD")
}

/// Read a response (status line, headers, then a chunked, sized or close-delimited body).
pub fn read_response(r: &mut impl BufRead, head: bool) -> Resp {
    let mut line = String::new();
    r.read_line(&mut line).expect("reading the status line");
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"));
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).unwrap();
        let h = h.trim_end_matches(['\r', '\n']);
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let mut body = Vec::new();
    if head {
    } else if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).unwrap();
            let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
                .unwrap_or_else(|_| panic!("bad chunk size {size:?}"));
            if n == 0 {
                let mut end = String::new();
                let _ = r.read_line(&mut end);
                break;
            }
            let mut chunk = vec![0; n];
            r.read_exact(&mut chunk).unwrap();
            body.extend_from_slice(&chunk);
            let mut crlf = [0u8; 2];
            r.read_exact(&mut crlf).unwrap();
        }
    } else if let Some(len) = get("content-length") {
        let n: usize = len.parse().unwrap();
        body.resize(n, 0);
        r.read_exact(&mut body).unwrap();
    } else {
        let _ = r.read_to_end(&mut body);
    }
    Resp {
        status,
        headers,
        body,
    }
}

/// `git annex` configuration a client needs to use a p2phttp server on loopback as
/// remote `name`: its annexUrl, and permission to connect to 127.0.0.1.
pub fn point_remote_at(client: &Repo<'_>, name: &str, server: &Server) {
    client.set_config(&format!("remote.{name}.annexurl"), &server.annex_url());
    client.set_config("annex.security.allowed-ip-addresses", "127.0.0.1");
}

/// A client clone of `origin` (a non-bare server repository), initialised as `name`.
pub fn clone_client<'e>(env: &'e TestEnv, origin: &Repo<'_>, name: &str) -> Repo<'e> {
    let path = env.root().join(name);
    env.run(
        env.command(Side::Client, "git", env.root())
            .args(["clone", "-q"])
            .arg(origin.path())
            .arg(&path),
    );
    let r = Repo::open(env, Side::Client, &path, name);
    r.annex(&["init", name]);
    Repo::open(env, Side::Client, &path, name)
}

/// Store credentials for the annex URL of `server` with git's credential store, as the
/// git-annex client asks `git credential` for them (protocol annex+http, path git-annex).
pub fn store_credentials(client: &Repo<'_>, server: &Server, user: &str, password: &str) {
    let file = client.path().join(".git/test-credentials");
    let _ = std::fs::remove_file(&file);
    client.set_config(
        "credential.helper",
        &format!("store --file={}", file.display()),
    );
    let line = format!(
        "annex+http://{user}:{password}@127.0.0.1%3a{}/git-annex\n",
        server.port
    );
    std::fs::write(&file, line).unwrap();
}

/// The git-annex branch's location log of `key` in `repo` (committed only), as UUIDs
/// present.
pub fn committed_locations(repo: &Repo<'_>, key: &str) -> Vec<String> {
    let hash = repo
        .annex(&["examinekey", "--format=${hashdirlower}", key])
        .stdout;
    let path = format!("git-annex:{}{key}.log", hash.trim());
    let r = repo.try_git(&["show", &path]);
    if !r.success() {
        return Vec::new();
    }
    // Lines "<time> <1|0> <uuid>"; the latest line for each UUID counts.
    let mut latest: std::collections::BTreeMap<String, (String, bool)> = Default::default();
    for l in r.stdout.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() == 3 {
            let e = latest
                .entry(f[2].to_string())
                .or_insert((f[0].to_string(), f[1] == "1"));
            if f[0] >= e.0.as_str() {
                *e = (f[0].to_string(), f[1] == "1");
            }
        }
    }
    latest
        .into_iter()
        .filter(|(_, (_, p))| *p)
        .map(|(u, _)| u)
        .collect()
}

/// Poll `f` until it holds (or panic after `secs` seconds with `what`).
pub fn eventually(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for: {what}");
}
