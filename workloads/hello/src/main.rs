//! `hello`: the smallest wasmfleet pod (wasm32-wasip1).
//!
//! Prints `hello from wasmfleet`, then each argument on its own line, then the value
//! of `GREETING` when it is set, and exits 0. The README walkthrough and the
//! end-to-end tests compare its output line by line, so keep the format stable.

use std::io::{self, Write};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let greeting = std::env::var("GREETING").ok();
    let mut out = io::stdout().lock();
    // A closed stdout is not this program's problem: exit 0 regardless.
    let _ = write_all(&mut out, &lines(&args, greeting.as_deref()));
}

/// The lines `hello` prints, in order.
fn lines(args: &[String], greeting: Option<&str>) -> Vec<String> {
    let mut lines = vec!["hello from wasmfleet".to_owned()];
    lines.extend(args.iter().cloned());
    lines.extend(greeting.map(str::to_owned));
    lines
}

fn write_all(out: &mut impl Write, lines: &[String]) -> io::Result<()> {
    for line in lines {
        writeln!(out, "{line}")?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greets_then_echoes_arguments_then_the_greeting() {
        let args = vec!["a".to_owned(), "b c".to_owned()];
        assert_eq!(
            lines(&args, Some("hi")),
            ["hello from wasmfleet", "a", "b c", "hi"]
        );
    }

    #[test]
    fn prints_only_the_banner_without_arguments_or_greeting() {
        assert_eq!(lines(&[], None), ["hello from wasmfleet"]);
    }
}
