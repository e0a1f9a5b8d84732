//! annexgate-shell: a drop-in for git-annex-shell (see the README and `annexgate::shell`).

fn main() {
    annexgate::logging::init();
    let argv: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(annexgate::shell::main(argv));
}
