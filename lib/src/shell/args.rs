//! The command lines git-annex-shell accepts, parsed without I/O.
//!
//! Forms (see `spec/git-annex-shell.md`):
//! * `git-annex-shell [-c] CMD DIR [PARAMS...] [OPTIONS...] [-- field=value... -- [rest...]]`
//!   where CMD is one of the built-in commands (`p2pstdio`, `configlist`, ...);
//! * `git-annex-shell -c "git-annex-shell CMD DIR ..."`: a login shell gets the whole
//!   command as one string, split with git-annex's own unquoting rules (the string may
//!   also start with `annexgate-shell` or a path to either program, as a client sends it
//!   when its `remote.NAME.annex-shell` names annexgate-shell);
//! * anything else (`git-upload-pack '/path'`, ...) goes to `git-shell -c`, unless
//!   `GIT_ANNEX_SHELL_LIMITED` is set.
//!
//! Options may appear anywhere among the parameters, as git-annex's option parser allows:
//! `--uuid U` / `--uuid=U` selects the repository (or proxied node, or cluster) to serve;
//! `--debug`, `--quiet` and friends are accepted and ignored.

/// The built-in commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    ConfigList,
    NotifyChanges,
    P2pStdio,
    InAnnex,
    SendKey,
    RecvKey,
    DropKey,
    GcryptSetup,
}

impl Builtin {
    pub fn from_name(s: &str) -> Option<Builtin> {
        Some(match s {
            "configlist" => Builtin::ConfigList,
            "notifychanges" => Builtin::NotifyChanges,
            "p2pstdio" => Builtin::P2pStdio,
            "inannex" => Builtin::InAnnex,
            "sendkey" => Builtin::SendKey,
            "recvkey" => Builtin::RecvKey,
            "dropkey" => Builtin::DropKey,
            "gcryptsetup" => Builtin::GcryptSetup,
            _ => return None,
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            Builtin::ConfigList => "configlist",
            Builtin::NotifyChanges => "notifychanges",
            Builtin::P2pStdio => "p2pstdio",
            Builtin::InAnnex => "inannex",
            Builtin::SendKey => "sendkey",
            Builtin::RecvKey => "recvkey",
            Builtin::DropKey => "dropkey",
            Builtin::GcryptSetup => "gcryptsetup",
        }
    }
    /// Allowed with `GIT_ANNEX_SHELL_READONLY` (p2pstdio enforces its own policy).
    pub fn read_only_ok(self) -> bool {
        matches!(
            self,
            Builtin::ConfigList
                | Builtin::NotifyChanges
                | Builtin::P2pStdio
                | Builtin::InAnnex
                | Builtin::SendKey
        )
    }
    /// Allowed with `GIT_ANNEX_SHELL_APPENDONLY`.
    pub fn append_only_ok(self) -> bool {
        self.read_only_ok() || self == Builtin::RecvKey
    }
    /// Only p2pstdio can serve a proxied repository or a cluster.
    pub fn proxyable(self) -> bool {
        matches!(self, Builtin::P2pStdio | Builtin::NotifyChanges)
    }
}

/// A parsed built-in invocation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BuiltinCall {
    /// The repository directory as given (before `~` expansion).
    pub dir: String,
    /// Positional parameters after DIR (e.g. the client UUID of p2pstdio, keys of inannex).
    pub params: Vec<String>,
    /// `--uuid`: the repository the client expects to reach.
    pub uuid: Option<String>,
    /// Known field settings between the `--` markers (`remoteuuid`, `autoinit`), checked.
    pub fields: Vec<(String, String)>,
    /// Words after the last `--` (rsync options for the legacy sendkey/recvkey).
    pub rest: Vec<String>,
    pub debug: bool,
    /// `--force` (dropkey requires it).
    pub force: bool,
}

impl BuiltinCall {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What a command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invocation {
    Builtin(Builtin, BuiltinCall),
    /// Pass to `git-shell -c` (words as given, fields stripped).
    External(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgsError {
    #[error("bad parameters\n\n{USAGE}")]
    BadParameters,
    #[error("option {0} needs a value")]
    MissingValue(String),
    #[error("unknown option {0}")]
    UnknownOption(String),
}

pub const USAGE: &str = "Usage: git-annex-shell [-c] command [parameters ...] [option ...]\n\
\n\
Commands: configlist DIRECTORY, p2pstdio DIRECTORY UUID, notifychanges DIRECTORY,\n\
inannex DIRECTORY KEY ..., sendkey DIRECTORY KEY, recvkey DIRECTORY KEY,\n\
dropkey DIRECTORY KEY ..., gcryptsetup DIRECTORY VALUE\n\
Options: --uuid=UUID (the repository, proxied repository or cluster to serve)";

/// Split a string the way git-annex-shell splits a login shell's command string: words
/// separated by single spaces, `'...'` and `"..."` quote (no escapes inside).
pub fn shell_unescape(s: &str) -> Vec<String> {
    let mut words = Vec::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    if chars.is_empty() {
        return words;
    }
    loop {
        let mut w = String::new();
        let mut ended_by_space = false;
        while i < chars.len() {
            let c = chars[i];
            i += 1;
            if c == ' ' {
                ended_by_space = true;
                break;
            } else if c == '\'' || c == '"' {
                while i < chars.len() && chars[i] != c {
                    w.push(chars[i]);
                    i += 1;
                }
                i += 1; // closing quote (or past the end)
            } else {
                w.push(c);
            }
        }
        words.push(w);
        if !ended_by_space || i >= chars.len() {
            break;
        }
    }
    words
}

/// Quote a word for a POSIX shell (single quotes).
pub fn shell_quote(w: &str) -> String {
    if !w.is_empty()
        && w.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@%+,".contains(&b))
    {
        return w.to_string();
    }
    format!("'{}'", w.replace('\'', "'\"'\"'"))
}

/// Whether a login shell's command string runs git-annex-shell: its first word is
/// `git-annex-shell`, or (a client configured with `remote.NAME.annex-shell`) this
/// program, by name or by path. Any of them is served here, never run.
fn names_a_shell(s: &str) -> bool {
    let words = shell_unescape(s);
    let [first, _, ..] = words.as_slice() else {
        return false;
    };
    let base = first.rsplit('/').next().unwrap_or(first);
    base == "git-annex-shell" || base == "annexgate-shell"
}

/// Parse argv (without the program name).
pub fn parse(argv: &[String]) -> Result<Invocation, ArgsError> {
    let mut args: &[String] = argv;
    // Leading -c options, as passed by ssh to a login shell.
    while args.first().map(String::as_str) == Some("-c") {
        args = &args[1..];
    }
    match args {
        [] => Err(ArgsError::BadParameters),
        [one] if names_a_shell(one) => {
            let words: Vec<String> = shell_unescape(one).into_iter().skip(1).collect();
            parse(&words)
        }
        [cmd, dir, params @ ..] if Builtin::from_name(cmd).is_some() => {
            let b = Builtin::from_name(cmd).expect("checked");
            parse_builtin(b, dir, params).map(|c| Invocation::Builtin(b, c))
        }
        [cmd, ..] if Builtin::from_name(cmd).is_some() => Err(ArgsError::BadParameters),
        other => {
            let (params, _, _) = partition(other);
            Ok(Invocation::External(params))
        }
    }
}

/// Split at `--` markers: (params, fields, rest).
fn partition(ps: &[String]) -> (Vec<String>, Vec<String>, Vec<String>) {
    let mut segments: Vec<Vec<String>> = vec![Vec::new()];
    for p in ps {
        if p == "--" {
            segments.push(Vec::new());
        } else {
            segments.last_mut().expect("non-empty").push(p.clone());
        }
    }
    let mut it = segments.into_iter();
    let params = it.next().unwrap_or_default();
    match it.next() {
        None => (params, Vec::new(), Vec::new()),
        Some(fields) => {
            let rest: Vec<Vec<String>> = it.collect();
            let mut joined = Vec::new();
            for (i, seg) in rest.into_iter().enumerate() {
                if i > 0 {
                    joined.push("--".to_string());
                }
                joined.extend(seg);
            }
            (params, fields, joined)
        }
    }
}

fn field_ok(name: &str, value: &str) -> bool {
    match name {
        "remoteuuid" => value.chars().all(|c| c.is_alphanumeric() || c == '-'),
        "autoinit" => value == "1",
        _ => false,
    }
}

fn parse_builtin(_b: Builtin, dir: &str, params: &[String]) -> Result<BuiltinCall, ArgsError> {
    let (params, fieldparams, rest) = partition(params);
    let mut call = BuiltinCall {
        dir: dir.to_string(),
        rest,
        ..Default::default()
    };
    for f in fieldparams {
        let (k, v) = match f.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (f.clone(), String::new()),
        };
        if field_ok(&k, &v) {
            call.fields.push((k, v));
        }
    }
    let mut i = 0;
    while i < params.len() {
        let p = &params[i];
        if let Some(v) = p.strip_prefix("--uuid=") {
            call.uuid = Some(v.to_string());
        } else if p == "--uuid" {
            i += 1;
            let v = params
                .get(i)
                .ok_or_else(|| ArgsError::MissingValue("--uuid".into()))?;
            call.uuid = Some(v.clone());
        } else if p == "--debug" {
            call.debug = true;
        } else if p == "--force" {
            call.force = true;
        } else if matches!(
            p.as_str(),
            "--no-debug" | "--quiet" | "-q" | "--verbose" | "-v" | "--fast"
        ) || p.starts_with("--debugfilter=")
        {
            // accepted, as git-annex does; nothing to do for a shell
        } else if p == "--debugfilter" || p == "-c" || p == "--config" {
            // options with a value that git-annex accepts; the value is not used here
            i += 1;
            if i >= params.len() {
                return Err(ArgsError::MissingValue(p.clone()));
            }
        } else if p.starts_with("--") && p.len() > 2 {
            return Err(ArgsError::UnknownOption(p.clone()));
        } else {
            call.params.push(p.clone());
        }
        i += 1;
    }
    Ok(call)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(ws: &[&str]) -> Vec<String> {
        ws.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn p2pstdio_as_git_annex_sends_it() {
        let inv = parse(&v(&[
            "p2pstdio",
            "/srv/gw.git",
            "CLIENT",
            "--uuid",
            "TARGET",
        ]))
        .unwrap();
        let Invocation::Builtin(Builtin::P2pStdio, c) = inv else {
            panic!("{inv:?}")
        };
        assert_eq!(c.dir, "/srv/gw.git");
        assert_eq!(c.params, v(&["CLIENT"]));
        assert_eq!(c.uuid.as_deref(), Some("TARGET"));
    }

    #[test]
    fn login_shell_string() {
        let inv = parse(&v(&[
            "-c",
            "git-annex-shell 'p2pstdio' '/~/x y' '--debug' 'C' --uuid U",
        ]))
        .unwrap();
        let Invocation::Builtin(Builtin::P2pStdio, c) = inv else {
            panic!("{inv:?}")
        };
        assert_eq!(c.dir, "/~/x y");
        assert!(c.debug);
        assert_eq!(c.params, v(&["C"]));
        assert_eq!(c.uuid.as_deref(), Some("U"));
    }

    /// A client with `remote.NAME.annex-shell` set to annexgate-shell (by name or path)
    /// talking to an account whose login shell is annexgate-shell: the command string
    /// names annexgate-shell, and went to git-shell (which refused it).
    #[test]
    fn login_shell_string_naming_annexgate_shell() {
        for prog in [
            "annexgate-shell",
            "/usr/local/bin/annexgate-shell",
            "'/opt/annex gate/annexgate-shell'",
            "/usr/bin/git-annex-shell",
        ] {
            let inv = parse(&v(&["-c", &format!("{prog} 'p2pstdio' '/r' 'C' --uuid U")])).unwrap();
            let Invocation::Builtin(Builtin::P2pStdio, c) = inv else {
                panic!("{prog}: {inv:?}")
            };
            assert_eq!(c.dir, "/r");
            assert_eq!(c.uuid.as_deref(), Some("U"));
        }
        // Other programs are still git-shell's business.
        assert!(matches!(
            parse(&v(&["-c", "not-annexgate-shell 'p2pstdio' '/r' 'C'"])).unwrap(),
            Invocation::External(_)
        ));
        assert!(matches!(
            parse(&v(&["-c", "git-upload-pack '/r'"])).unwrap(),
            Invocation::External(_)
        ));
    }

    #[test]
    fn fields_between_markers() {
        let inv = parse(&v(&[
            "configlist",
            "/r",
            "--",
            "autoinit=1",
            "remoteuuid=bad uuid!",
            "junk=1",
            "--",
        ]))
        .unwrap();
        let Invocation::Builtin(Builtin::ConfigList, c) = inv else {
            panic!()
        };
        assert_eq!(c.field("autoinit"), Some("1"));
        assert_eq!(c.field("remoteuuid"), None);
        assert_eq!(c.field("junk"), None);
    }

    #[test]
    fn external_commands_and_errors() {
        assert_eq!(
            parse(&v(&["-c", "git-upload-pack '/srv/r.git'"])).unwrap(),
            Invocation::External(v(&["git-upload-pack '/srv/r.git'"]))
        );
        assert_eq!(
            parse(&v(&["git-receive-pack", "/srv/r.git"])).unwrap(),
            Invocation::External(v(&["git-receive-pack", "/srv/r.git"]))
        );
        assert_eq!(parse(&[]), Err(ArgsError::BadParameters));
        assert_eq!(parse(&v(&["p2pstdio"])), Err(ArgsError::BadParameters));
        assert!(matches!(
            parse(&v(&["p2pstdio", "/r", "C", "--uuid"])),
            Err(ArgsError::MissingValue(_))
        ));
        assert!(matches!(
            parse(&v(&["p2pstdio", "/r", "C", "--bogus"])),
            Err(ArgsError::UnknownOption(_))
        ));
    }

    #[test]
    fn unescape_like_git_annex() {
        assert_eq!(shell_unescape("a 'b c' \"d\""), v(&["a", "b c", "d"]));
        assert_eq!(shell_unescape("a  b"), v(&["a", "", "b"]));
        assert_eq!(shell_unescape("x'y'z"), v(&["xyz"]));
        for w in ["plain", "with space", "it's", "", "a\"b"] {
            assert_eq!(shell_unescape(&shell_quote(w)).concat(), w);
        }
    }
}
