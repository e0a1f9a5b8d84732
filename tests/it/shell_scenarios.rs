//! A git-annex client working with ssh remotes, with the real `git-annex-shell` or with
//! `annexgate-shell` on the far side: copy, get, drop (numcopies 1 and 2, the latter locking
//! another copy), move, remote fsck, sync --content, an interrupted and resumed upload, and
//! the read-only / append-only settings.
//!
//! Each scenario is one function of (transport, shell) that asserts what must hold and returns
//! an [`Outcome`]. For every scenario and transport there are two tests: `<transport>` runs it
//! against git-annex-shell (the reference), `<transport>_annexgate` runs it against
//! annexgate-shell and also requires the same outcome as the reference run (which is computed
//! once per test run and shared by both tests).

use std::fs;
use std::os::unix::fs::PermissionsExt;

use crate::harness::{
    assert_same_outcome, client_p2p_trace, pseudo_random, shared_outcome, Outcome, Repo, RepoKind,
    ShellImpl, TestEnv, Transport,
};

type Scenario = fn(Transport, ShellImpl) -> Outcome;

/// The scenario against git-annex-shell, run once per test binary run.
fn reference(name: &str, scenario: Scenario, t: Transport) -> Outcome {
    let out = shared_outcome(format!("{name}/{t:?}"), || {
        scenario(t, ShellImpl::GitAnnexShell)
    });
    // Shown with --nocapture, and kept with a failing test's output.
    eprintln!("{name} over {t:?} with git-annex-shell:\n{out}");
    out
}

/// The scenario against annexgate-shell; its outcome must equal the reference's.
fn compare_with_reference(name: &str, scenario: Scenario, t: Transport) {
    let ours = scenario(t, ShellImpl::AnnexgateShell);
    eprintln!("{name} over {t:?} with annexgate-shell:\n{ours}");
    let reference = reference(name, scenario, t);
    assert_same_outcome(name, &reference, &ours);
}

/// The four tests of a scenario: each transport, with each shell.
macro_rules! scenario_tests {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use super::*;

            #[test]
            fn shim() {
                reference(stringify!($name), super::$name, Transport::Shim);
            }

            #[test]
            fn shim_annexgate() {
                compare_with_reference(stringify!($name), super::$name, Transport::Shim);
            }

            #[test]
            fn sshd() {
                reference(stringify!($name), super::$name, Transport::Sshd);
            }

            #[test]
            fn sshd_annexgate() {
                compare_with_reference(stringify!($name), super::$name, Transport::Sshd);
            }
        }
    )*};
}

scenario_tests!(
    copy_to,
    get_from,
    drop_from_numcopies_1,
    drop_from_numcopies_2_locks_other_copy,
    move_to_and_from,
    fsck_from,
    sync_content,
    interrupted_upload_resumes,
    readonly_and_appendonly,
);

/// Files of the kinds that matter: small text, empty, a few hundred KB in a subdirectory.
fn sample_files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("small.txt", b"hello world\n".to_vec()),
        ("empty.dat", Vec::new()),
        ("sub/medium.bin", pseudo_random(300_000, 1)),
    ]
}

fn add(repo: &Repo<'_>, files: &[(&str, Vec<u8>)]) {
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(n, c)| (*n, c.as_slice())).collect();
    repo.add_files(&refs);
}

/// A client holding `files`, and bare servers with the given names added as its ssh remotes.
fn client_and_servers<'e>(
    env: &'e TestEnv,
    shell: ShellImpl,
    servers: &[&str],
    files: &[(&str, Vec<u8>)],
) -> (Repo<'e>, Vec<Repo<'e>>) {
    let client = env.client_repo("client");
    add(&client, files);
    let servers: Vec<Repo<'e>> = servers
        .iter()
        .map(|name| {
            let srv = env.server_repo(name, RepoKind::Bare);
            client.add_ssh_remote(name, &srv, shell);
            srv
        })
        .collect();
    (client, servers)
}

/// The client's P2P messages reduced to direction and verb (`> PUT`, `< PUT-FROM`): what the
/// protocol exchange was, without UUIDs, offsets or timestamps.
fn verbs(stderr: &str) -> Vec<String> {
    client_p2p_trace(stderr)
        .iter()
        .map(|m| m.split(' ').take(2).collect::<Vec<_>>().join(" "))
        .collect()
}

fn note_locations(out: &mut Outcome, repo: &Repo<'_>, file: &str) -> Vec<String> {
    let locs = repo.whereis(&[file]);
    out.note(&format!("whereis {file} (from {})", repo.name()), &locs);
    locs
}

fn copy_to(t: Transport, shell: ShellImpl) -> Outcome {
    let env = TestEnv::new(t);
    let mut out = Outcome::default();
    let files = sample_files();
    let (client, mut servers) = client_and_servers(&env, shell, &["srv"], &files);
    // A server with a work tree too: its objects live under .git/annex, in the other hash
    // layout.
    let wsrv = env.server_repo("wsrv", RepoKind::NonBare);
    client.add_ssh_remote("wsrv", &wsrv, shell);
    servers.push(wsrv);

    for srv in &servers {
        let r = client.annex(&["copy", "--to", srv.name(), "--debug", "."]);
        out.note(&format!("copy --to {}: P2P", srv.name()), verbs(&r.stderr));
    }
    for (name, content) in &files {
        assert_eq!(
            note_locations(&mut out, &client, name),
            ["client", "srv", "wsrv"]
        );
        let key = client.key_of(name);
        for srv in &servers {
            assert_eq!(
                srv.object_content(&key).as_deref(),
                Some(content.as_slice()),
                "{}'s object for {name}",
                srv.name()
            );
        }
    }
    for srv in &servers {
        // The server's own view: its git-annex branch lists every key as present, and each
        // object verifies.
        let (code, items) = srv.fsck(&["--all"]);
        assert_eq!(code, Some(0), "fsck --all on {}: {items:?}", srv.name());
        assert_eq!(items.len(), files.len(), "{} knows every key", srv.name());
        out.note(&format!("fsck --all on {}", srv.name()), &items);
    }
    // Copying again finds everything there and sends nothing.
    let r = client.annex(&["copy", "--to", "srv", "--debug", "."]);
    let again = verbs(&r.stderr);
    assert!(!again.iter().any(|v| v == "> PUT"), "{again:?}");
    out.note("second copy --to srv: P2P", again);
    out
}

fn get_from(t: Transport, shell: ShellImpl) -> Outcome {
    let env = TestEnv::new(t);
    let mut out = Outcome::default();
    let mut files = sample_files();
    files.push(("lost.txt", b"srv will lose this one\n".to_vec()));
    let (a, servers) = client_and_servers(&env, shell, &["srv"], &files);
    let srv = &servers[0];
    a.annex(&["copy", "--to", "srv", "."]);
    a.annex(&["sync", "--no-content", "srv"]);
    // srv loses an object behind git-annex's back: its location log still claims it.
    let lost = srv
        .find_object(&a.key_of("lost.txt"))
        .expect("srv has lost.txt");
    fs::set_permissions(lost.parent().unwrap(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::remove_dir_all(lost.parent().unwrap()).unwrap();

    // A second client learns the files from srv and gets their content from it.
    let b = env.client_repo("client2");
    b.add_ssh_remote("srv", srv, shell);
    let r = b.annex(&[
        "get",
        "--from",
        "srv",
        "--debug",
        "small.txt",
        "empty.dat",
        "sub/medium.bin",
    ]);
    out.note("get --from srv: P2P", verbs(&r.stderr));
    for (name, content) in &files[..3] {
        let got = fs::read(b.path().join(name)).unwrap_or_default();
        assert!(
            got == *content,
            "client2's {name} differs from the original"
        );
        assert_eq!(
            note_locations(&mut out, &b, name),
            ["client", "client2", "srv"]
        );
    }
    // Asked for what it lost, srv says no: get fails cleanly, nothing partial appears.
    let r = b
        .try_annex(&["get", "--from", "srv", "--debug", "lost.txt"])
        .failed();
    out.exit("get --from srv lost.txt", &r);
    out.note("get --from srv lost.txt: P2P", verbs(&r.stderr));
    assert!(b.find_object(&b.key_of("lost.txt")).is_none());
    note_locations(&mut out, &b, "lost.txt");
    out
}

fn drop_from_numcopies_1(t: Transport, shell: ShellImpl) -> Outcome {
    let env = TestEnv::new(t);
    let mut out = Outcome::default();
    let files = sample_files();
    let (client, servers) = client_and_servers(&env, shell, &["srv"], &files);
    let srv = &servers[0];
    client.annex(&["numcopies", "1"]);
    client.annex(&["copy", "--to", "srv", "."]);

    let r = client.annex(&["drop", "--from", "srv", "--debug", "."]);
    out.note("drop --from srv: P2P", verbs(&r.stderr));
    for (name, content) in &files {
        assert_eq!(note_locations(&mut out, &client, name), ["client"]);
        let key = client.key_of(name);
        assert!(srv.find_object(&key).is_none(), "srv still has {name}");
        assert_eq!(
            client.object_content(&key).as_deref(),
            Some(content.as_slice())
        );
    }
    let (code, items) = srv.fsck(&["--all"]);
    out.note("fsck --all on srv", (code, &items));
    assert_eq!(code, Some(0), "{items:?}");
    out
}

fn drop_from_numcopies_2_locks_other_copy(t: Transport, shell: ShellImpl) -> Outcome {
    let env = TestEnv::new(t);
    let mut out = Outcome::default();
    let files = vec![("small.txt", b"two copies at least\n".to_vec())];
    let (client, servers) = client_and_servers(&env, shell, &["srv1", "srv2"], &files);
    let key = client.key_of("small.txt");
    client.annex(&["numcopies", "2"]);
    client.annex(&["copy", "--to", "srv1", "small.txt"]);
    client.annex(&["copy", "--to", "srv2", "small.txt"]);

    // Dropping from srv1 leaves the local copy and srv2's, which must be locked meanwhile.
    let r = client.annex(&["drop", "--from", "srv1", "--debug", "small.txt"]);
    let v = verbs(&r.stderr);
    assert!(v.iter().any(|m| m == "> LOCKCONTENT"), "{v:?}");
    out.note("drop --from srv1: P2P", v);
    assert_eq!(
        note_locations(&mut out, &client, "small.txt"),
        ["client", "srv2"]
    );
    assert!(servers[0].find_object(&key).is_none());
    assert!(servers[1].find_object(&key).is_some());

    // Two copies left: neither may go.
    let r = client
        .try_annex(&["drop", "--from", "srv2", "small.txt"])
        .failed();
    out.exit("drop --from srv2 (would leave 1)", &r);
    let r = client.try_annex(&["drop", "small.txt"]).failed();
    out.exit("drop here (would leave 1)", &r);
    assert_eq!(
        note_locations(&mut out, &client, "small.txt"),
        ["client", "srv2"]
    );
    assert!(servers[1].find_object(&key).is_some());

    // With srv1 holding it again, the local copy can go: both servers are locked.
    client.annex(&["copy", "--to", "srv1", "small.txt"]);
    let r = client.annex(&["drop", "--debug", "small.txt"]);
    let v = verbs(&r.stderr);
    let locks = v.iter().filter(|m| *m == "> LOCKCONTENT").count();
    assert_eq!(locks, 2, "{v:?}");
    out.note("drop here: P2P", v);
    assert_eq!(
        note_locations(&mut out, &client, "small.txt"),
        ["srv1", "srv2"]
    );
    assert!(client.find_object(&key).is_none());
    out
}

fn move_to_and_from(t: Transport, shell: ShellImpl) -> Outcome {
    let env = TestEnv::new(t);
    let mut out = Outcome::default();
    let files = sample_files();
    let (client, servers) = client_and_servers(&env, shell, &["srv"], &files);
    let srv = &servers[0];

    let r = client.annex(&["move", "--to", "srv", "--debug", "."]);
    out.note("move --to srv: P2P", verbs(&r.stderr));
    for (name, content) in &files {
        assert_eq!(note_locations(&mut out, &client, name), ["srv"]);
        let key = client.key_of(name);
        assert!(client.find_object(&key).is_none(), "client kept {name}");
        assert_eq!(
            srv.object_content(&key).as_deref(),
            Some(content.as_slice())
        );
    }
    let r = client.annex(&["move", "--from", "srv", "--debug", "."]);
    out.note("move --from srv: P2P", verbs(&r.stderr));
    for (name, content) in &files {
        assert_eq!(note_locations(&mut out, &client, name), ["client"]);
        let key = client.key_of(name);
        assert!(srv.find_object(&key).is_none(), "srv kept {name}");
        assert_eq!(fs::read(client.path().join(name)).unwrap(), *content);
    }
    out
}

/// Makes an object file writable and overwrites it with same-sized garbage.
fn corrupt(path: &std::path::Path) {
    let dir = path.parent().unwrap();
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).unwrap();
    let len = fs::metadata(path).unwrap().len() as usize;
    fs::write(path, vec![b'#'; len]).unwrap();
}

fn fsck_from(t: Transport, shell: ShellImpl) -> Outcome {
    let env = TestEnv::new(t);
    let mut out = Outcome::default();
    let files = sample_files();
    let (client, servers) = client_and_servers(&env, shell, &["srv"], &files);
    let srv = &servers[0];
    client.annex(&["copy", "--to", "srv", "."]);

    let (code, items) = client.fsck(&["--from", "srv"]);
    assert_eq!(code, Some(0), "{items:?}");
    assert!(items.iter().all(|(_, ok)| *ok) && items.len() == files.len());
    out.note("fsck --from srv", (code, &items));

    // Bad content on srv is found (the whole object is fetched and checked).
    let small = client.key_of("small.txt");
    corrupt(&srv.find_object(&small).expect("srv has small.txt"));
    let (code, items) = client.fsck(&["--from", "srv"]);
    assert_eq!(code, Some(1), "{items:?}");
    assert!(
        items.contains(&("small.txt".to_string(), false)),
        "{items:?}"
    );
    out.note("fsck --from srv, small.txt corrupted", (code, &items));
    note_locations(&mut out, &client, "small.txt");

    // Missing content is found by the fast check (presence only).
    let medium = client.key_of("sub/medium.bin");
    let obj = srv.find_object(&medium).expect("srv has medium.bin");
    let dir = obj.parent().unwrap().to_path_buf();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    fs::remove_dir_all(&dir).unwrap();
    let (code, items) = client.fsck(&["--from", "srv", "--fast", "sub/medium.bin"]);
    assert_eq!(code, Some(1), "{items:?}");
    assert_eq!(items, [("sub/medium.bin".to_string(), false)]);
    out.note("fsck --from srv --fast, medium.bin removed", (code, &items));
    assert_eq!(
        note_locations(&mut out, &client, "sub/medium.bin"),
        ["client"]
    );
    out
}

fn sync_content(t: Transport, shell: ShellImpl) -> Outcome {
    let env = TestEnv::new(t);
    let mut out = Outcome::default();
    let files = sample_files();
    let (a, servers) = client_and_servers(&env, shell, &["srv"], &files);
    let srv = &servers[0];

    let r = a.annex(&["sync", "--content"]);
    out.exit("sync --content (client)", &r);
    for (name, content) in &files {
        let key = a.key_of(name);
        assert_eq!(
            srv.object_content(&key).as_deref(),
            Some(content.as_slice())
        );
    }
    let b = env.client_repo("client2");
    b.add_ssh_remote("srv", srv, shell);
    b.annex(&["sync", "--content"]);
    for (name, content) in &files {
        assert_eq!(fs::read(b.path().join(name)).unwrap(), *content);
        assert_eq!(
            note_locations(&mut out, &b, name),
            ["client", "client2", "srv"]
        );
    }
    // New content from the second client reaches the first through srv.
    let new = pseudo_random(70_000, 2);
    b.add_files(&[("new.bin", &new[..])]);
    b.annex(&["sync", "--content"]);
    a.annex(&["sync", "--content"]);
    assert_eq!(fs::read(a.path().join("new.bin")).unwrap(), new);
    assert_eq!(
        note_locations(&mut out, &a, "new.bin"),
        ["client", "client2", "srv"]
    );
    out
}

fn interrupted_upload_resumes(t: Transport, shell: ShellImpl) -> Outcome {
    let env = TestEnv::new(t);
    let mut out = Outcome::default();
    let big = pseudo_random(4 << 20, 3);
    let files = vec![("big.bin", big.clone())];
    let (client, servers) = client_and_servers(&env, shell, &["srv"], &files);
    let srv = &servers[0];
    let key = client.key_of("big.bin");
    // git-annex retries a transfer that made progress by itself; one attempt per command here.
    client.set_config("annex.forward-retry", "0");

    env.cut_p2p_input_after(Some(1_500_000));
    let r = client
        .try_annex(&["copy", "--to", "srv", "big.bin"])
        .failed();
    out.exit("copy --to srv, connection cut", &r);
    let partial = fs::metadata(srv.tmp_object(&key))
        .map(|m| m.len())
        .unwrap_or(0);
    assert!(
        partial > 0 && partial < big.len() as u64,
        "srv kept {partial} bytes of the cut upload\n{r}"
    );
    out.note("srv kept part of the upload", true);
    assert!(
        srv.find_object(&key).is_none(),
        "a partial object became visible"
    );
    assert_eq!(note_locations(&mut out, &client, "big.bin"), ["client"]);

    env.cut_p2p_input_after(None);
    let r = client.annex(&["copy", "--to", "srv", "--debug", "big.bin"]);
    let offsets: Vec<u64> = client_p2p_trace(&r.stderr)
        .iter()
        .filter_map(|m| m.strip_prefix("< PUT-FROM ")?.trim().parse().ok())
        .collect();
    assert_eq!(offsets, [partial], "the upload resumes where it broke off");
    out.note("resumed from the kept part", offsets == [partial]);
    assert_eq!(srv.object_content(&key).as_deref(), Some(big.as_slice()));
    assert!(!srv.tmp_object(&key).exists(), "the temp file is gone");
    assert_eq!(
        note_locations(&mut out, &client, "big.bin"),
        ["client", "srv"]
    );
    let (code, items) = client.fsck(&["--from", "srv"]);
    assert_eq!(code, Some(0), "{items:?}");
    out.note("fsck --from srv", (code, &items));
    out
}

fn readonly_and_appendonly(t: Transport, shell: ShellImpl) -> Outcome {
    let env = TestEnv::new(t);
    let mut out = Outcome::default();
    let files = sample_files();
    let (client, servers) = client_and_servers(&env, shell, &["srv"], &files);
    let srv = &servers[0];
    let small = client.key_of("small.txt");
    client.annex(&["copy", "--to", "srv", "small.txt"]);

    // Append-only: stores are fine, removals are refused.
    env.set_server_env("GIT_ANNEX_SHELL_APPENDONLY", Some("1"));
    let r = client
        .try_annex(&["drop", "--from", "srv", "small.txt"])
        .failed();
    out.exit("append-only: drop --from srv", &r);
    assert!(srv.find_object(&small).is_some());
    let r = client.annex(&["copy", "--to", "srv", "sub/medium.bin"]);
    out.exit("append-only: copy --to srv", &r);
    assert_eq!(
        note_locations(&mut out, &client, "sub/medium.bin"),
        ["client", "srv"]
    );

    // Read-only: stores are refused, reads work.
    env.set_server_env("GIT_ANNEX_SHELL_APPENDONLY", None);
    env.set_server_env("GIT_ANNEX_SHELL_READONLY", Some("1"));
    let r = client
        .try_annex(&["copy", "--to", "srv", "empty.dat"])
        .failed();
    out.exit("read-only: copy --to srv", &r);
    assert_eq!(note_locations(&mut out, &client, "empty.dat"), ["client"]);
    let r = client.try_annex(&["drop", "small.txt"]);
    out.exit("read-only: drop here (locks srv's copy)", &r);
    let r = client.try_annex(&["get", "--from", "srv", "small.txt"]);
    out.exit("read-only: get --from srv", &r);
    assert!(r.success(), "{r}");
    assert_eq!(
        fs::read(client.path().join("small.txt")).unwrap(),
        b"hello world\n"
    );
    out
}
