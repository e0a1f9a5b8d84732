//! `annexgate`: the helper CLI (placement decisions, expression checks, repository sizes;
//! later cluster set-up and status). Everything is in `annexgate::cli`.

fn main() {
    annexgate::logging::init();
    std::process::exit(annexgate::cli::main());
}
