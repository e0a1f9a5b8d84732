//! `annexgate check-expression EXPR`: parse a preferred content expression as git-annex
//! would. Prints the expression as it is understood (explicit `and`s, parentheses for the
//! left-to-right grouping) and exits 0, or prints the error with a marker under the first
//! bad term to stderr and exits 1. Negated unstable terms (`not present`,
//! `not balanced=…`) parse, but git-annex then never matches the expression: each is
//! warned about on stderr (the status stays 0).

use super::Io;
use crate::placement::Expr;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The expression (quote it: it usually contains spaces and parentheses).
    #[arg(allow_hyphen_values = true)]
    pub expression: String,
}

pub fn run(args: &Args, io: &mut Io<'_>) -> i32 {
    match Expr::parse(&args.expression) {
        Err(e) => {
            let _ = writeln!(io.stderr, "annexgate check-expression: {}", e.render());
            1
        }
        Ok(expr) => {
            let _ = writeln!(io.stdout, "{expr}");
            for t in expr.unstable_negations() {
                let _ = writeln!(
                    io.stderr,
                    "annexgate check-expression: warning: `not {}` negates an unstable term; \
                     git-annex never matches an expression that does (it would get content \
                     and then drop it again)",
                    t.text
                );
            }
            if expr.is_empty() {
                let _ = writeln!(
                    io.stderr,
                    "annexgate check-expression: warning: the expression has no terms: a \
                     repository with it counts as having no preferred content"
                );
            }
            0
        }
    }
}
