//! A linear pre-scan that bounds how deeply a request body nests, run before the real parser.
//!
//! The YAML parser's cost grows with the square of the nesting depth (100,000 levels took
//! 19.5 s of CPU to refuse), so depth is bounded by a cheap single pass first: brackets
//! (outside strings) for JSON; for YAML, flow brackets plus block nesting, estimated from
//! indentation and `- ` / `? ` indicators. The YAML estimate may over-count (a sequence
//! item holding a mapping counts twice), never under-count, and [`MAX_NESTING_DEPTH`] is far
//! above what any object wasmfleet serves needs (a Pod is less than 10 levels deep).

/// The deepest nesting accepted in an object or patch body (JSON or YAML).
pub const MAX_NESTING_DEPTH: usize = 64;

/// The body nests deeper than [`MAX_NESTING_DEPTH`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the body nests deeper than the limit of {MAX_NESTING_DEPTH} levels (line {line})")]
pub struct TooDeep {
    /// The 1-based line where the limit was crossed.
    pub line: usize,
}

/// Checks the bracket depth of a JSON text (strings skipped); linear in its length.
pub fn check_json(bytes: &[u8]) -> Result<(), TooDeep> {
    let (mut depth, mut line) = (0usize, 1usize);
    let (mut in_string, mut escaped) = (false, false);
    for &byte in bytes {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'\n' => line += 1,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_NESTING_DEPTH {
                    return Err(TooDeep { line });
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Quote state of a YAML scan, carried across lines (quoted scalars may span lines).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Quote {
    None,
    Single,
    Double,
}

/// The state of a YAML pre-scan.
struct YamlScan {
    /// Indentations of the open block levels, increasing.
    indents: Vec<usize>,
    /// Open flow brackets (`[`, `{`).
    flow: usize,
    quote: Quote,
    /// Inside a block scalar (`|`, `>`) whose header line was indented this much.
    block_scalar: Option<usize>,
}

/// Checks the nesting depth of a YAML text (see the module docs); linear in its length.
/// Bytes that are not UTF-8 are scanned as U+FFFD: the parser reads (and nests) up to them
/// before it refuses them (found by the fuzz smoke: deep brackets before a bad byte).
pub fn check_yaml(bytes: &[u8]) -> Result<(), TooDeep> {
    let text = String::from_utf8_lossy(bytes);
    let mut scan = YamlScan {
        indents: Vec::new(),
        flow: 0,
        quote: Quote::None,
        block_scalar: None,
    };
    for (index, raw) in yaml_lines(&text).enumerate() {
        if scan.line_depth(raw) > MAX_NESTING_DEPTH {
            return Err(TooDeep { line: index + 1 });
        }
    }
    Ok(())
}

/// The lines of a YAML text: YAML breaks lines at CR LF, LF and a lone CR alike (a comment
/// ended by a lone CR once hid the brackets after it from the scan: found by the `api_body`
/// fuzz target).
fn yaml_lines(text: &str) -> impl Iterator<Item = &str> {
    text.split('\n')
        .flat_map(|line| line.strip_suffix('\r').unwrap_or(line).split('\r'))
}

impl YamlScan {
    /// Scans one line; returns the deepest nesting seen on it.
    fn line_depth(&mut self, line: &str) -> usize {
        let content = line.trim_start_matches(' ');
        let indent = line.len() - content.len();
        if let Some(header) = self.block_scalar {
            if content.is_empty() || indent > header {
                return 0; // block scalar text: not structure
            }
            self.block_scalar = None;
        }
        let fresh_line = self.flow == 0 && self.quote == Quote::None;
        if fresh_line && (content.is_empty() || content.starts_with('#')) {
            return 0;
        }
        let mut rest = content;
        let mut depth = 0;
        if fresh_line {
            while self.indents.last().is_some_and(|&open| open >= indent) {
                self.indents.pop();
            }
            self.indents.push(indent);
            // Compact nesting: `- - x` and `? - x` open a level per indicator.
            while let Some(after) = strip_indicator(rest) {
                depth += 1;
                rest = after;
            }
            if content.starts_with("---") || content.starts_with("...") {
                self.indents.clear();
                return 0;
            }
        }
        depth += self.indents.len();
        depth + self.scan_flow(rest, indent)
    }

    /// Tracks quotes, comments, flow brackets and block scalar headers in the rest of a line;
    /// returns the deepest flow nesting reached on it.
    ///
    /// Inside a plain (unquoted) scalar, quotes are its text and so are brackets outside
    /// flow (`a[1]`, `x{"`): only a real scalar start opens them. A plain scalar ends at a
    /// mapping indicator (`: `) or, in flow, at `,` `]` `}`. (Treating a `"` inside a plain
    /// scalar as a quote once hid the flow brackets after it: found by the `api_body` fuzz
    /// target.)
    fn scan_flow(&mut self, rest: &str, indent: usize) -> usize {
        let mut deepest = self.flow;
        let mut previous = ' ';
        let mut plain = false;
        let mut chars = rest.char_indices().peekable();
        while let Some((at, c)) = chars.next() {
            let boundary = !plain && starts_scalar(previous);
            match (self.quote, c) {
                (Quote::Double, '\\') => {
                    chars.next();
                }
                (Quote::Double, '"') | (Quote::Single, '\'') => self.quote = Quote::None,
                (Quote::Double | Quote::Single, _) => {}
                (Quote::None, '"') if boundary => self.quote = Quote::Double,
                (Quote::None, '\'') if boundary => self.quote = Quote::Single,
                (Quote::None, '#') if previous == ' ' || previous == '\t' => break,
                (Quote::None, '[' | '{') if self.flow > 0 || boundary => {
                    self.flow += 1;
                    deepest = deepest.max(self.flow);
                    plain = false;
                }
                (Quote::None, ']' | '}') if self.flow > 0 => {
                    self.flow -= 1;
                    plain = false;
                }
                (Quote::None, ',') if self.flow > 0 => plain = false,
                (Quote::None, ':')
                    if ends_key(chars.peek().map(|&(_, next)| next), self.flow > 0) =>
                {
                    plain = false;
                }
                (Quote::None, '|' | '>')
                    if self.flow == 0 && boundary && is_block_scalar_header(&rest[at + 1..]) =>
                {
                    self.block_scalar = Some(indent);
                    break;
                }
                (Quote::None, ' ' | '\t') => {}
                // An indicator only when a space or the line's end follows; `-{` or `?x`
                // starts a plain scalar (found by the `api_body` fuzz target: `-{":` was
                // read as a sequence entry opening a flow mapping and a quote).
                (Quote::None, '-' | '?')
                    if boundary && matches!(chars.peek(), None | Some((_, ' ' | '\t'))) => {}
                (Quote::None, _) => plain = true,
            }
            previous = c;
        }
        deepest
    }
}

/// Whether a `:` followed by `next` is a mapping indicator (it ends a plain key): followed
/// by a space or the end of the line, or, in flow, by a flow indicator.
fn ends_key(next: Option<char>, in_flow: bool) -> bool {
    match next {
        None | Some(' ' | '\t') => true,
        Some(',' | ']' | '}') => in_flow,
        Some(_) => false,
    }
}

/// Whether a quote or bracket after `previous` starts a value (rather than sitting inside a
/// plain scalar such as `a[1]`).
fn starts_scalar(previous: char) -> bool {
    matches!(previous, ' ' | '\t' | '[' | '{' | ',' | ':' | '-' | '?')
}

/// Whether what follows a `|` or `>` makes it a block scalar header: only chomping and
/// indentation indicators, then the end of the line or a comment.
fn is_block_scalar_header(after: &str) -> bool {
    let rest = after.trim_start_matches(|c: char| c == '+' || c == '-' || c.is_ascii_digit());
    let rest = rest.trim_start_matches([' ', '\t']);
    rest.is_empty() || rest.starts_with('#')
}

/// Strips one leading `- ` or `? ` block indicator (and the spaces after it).
fn strip_indicator(text: &str) -> Option<&str> {
    let rest = text
        .strip_prefix("- ")
        .or_else(|| text.strip_prefix("? "))
        .or_else(|| (text == "-" || text == "?").then_some(""))?;
    Some(rest.trim_start_matches(' '))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_lone_carriage_return_ends_a_comment() {
        let deep = format!("# a comment\r{}", "[".repeat(MAX_NESTING_DEPTH + 1));
        assert!(check_yaml(deep.as_bytes()).is_err());
        let crlf = "a:\r\n  b: 1\r\n";
        assert!(check_yaml(crlf.as_bytes()).is_ok());
    }

    const POD: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: web   # a comment with [ and {
  labels: {app: "we[b", tier: 'x{'}
spec:
  containers:
    - name: a
      image: hello:v1
      args: ["--x", "[[[["]
      env:
        - name: SCRIPT
          value: |
            [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[
                          deeply
                            indented
                              text
      resources: {limits: {memory: 64Mi}}
"#;

    /// Found by the `api_body` fuzz target: the `"` inside the plain key `$`0{":!a` was read
    /// as opening a quote, which hid the deep flow sequence after `: ` from the pre-scan.
    #[test]
    fn a_quote_inside_a_plain_scalar_hides_no_brackets() {
        let hidden = format!("a:\n $`0{{\":!a: {}y", "[".repeat(126));
        assert!(serde_yaml_ng::from_str::<serde_json::Value>(&hidden).is_err());
        assert_eq!(check_yaml(hidden.as_bytes()), Err(TooDeep { line: 2 }));
        // Quotes and brackets that really are text stay text.
        let text = "a: it's \"quoted\" [not a list\nb: x{\"y\nc: [\"[[[[\", 'x{', it's]\n";
        check_yaml(text.as_bytes()).unwrap();
    }

    /// Found by the `api_body` fuzz smoke in CI: `-{":!a` is a plain key (a `-` followed
    /// by no space is no sequence indicator), so its `{` and `"` are text.
    #[test]
    fn a_dash_without_a_space_starts_a_plain_scalar() {
        let hidden = format!("c:\n      -{{\":!a: {}y", "[".repeat(128));
        assert!(serde_yaml_ng::from_str::<serde_json::Value>(&hidden).is_err());
        assert_eq!(check_yaml(hidden.as_bytes()), Err(TooDeep { line: 2 }));
        check_yaml(b"a:\n  - -1\n  - ?x\n  - [-2, -{]\n").unwrap();
    }

    #[test]
    fn brackets_before_a_byte_that_is_not_utf8_still_count() {
        let mut deep = format!("a: {}\n", "[".repeat(100)).into_bytes();
        deep.extend_from_slice(b"x: \xf4\xb1");
        assert_eq!(check_yaml(&deep), Err(TooDeep { line: 1 }));
    }

    #[test]
    fn ordinary_objects_pass() {
        check_yaml(POD.as_bytes()).unwrap();
        let json = serde_json::to_vec(&serde_yaml_ng::from_str::<serde_json::Value>(POD).unwrap())
            .unwrap();
        check_json(&json).unwrap();
    }

    #[test]
    fn deep_json_is_refused_and_brackets_in_strings_do_not_count() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(check_json(deep.as_bytes()), Err(TooDeep { line: 1 }));
        let at_limit = format!(
            "{}{}",
            "[".repeat(MAX_NESTING_DEPTH),
            "]".repeat(MAX_NESTING_DEPTH)
        );
        check_json(at_limit.as_bytes()).unwrap();
        let quoted = format!(r#"{{"a": "{}\"{}"}}"#, "[".repeat(1000), "{".repeat(1000));
        check_json(quoted.as_bytes()).unwrap();
    }

    #[test]
    fn deep_yaml_is_refused_in_flow_block_and_compact_forms() {
        let flow = format!("a: {}", "[".repeat(100_000));
        assert!(check_yaml(flow.as_bytes()).is_err());
        let compact = format!("{}x", "- ".repeat(100));
        assert!(check_yaml(compact.as_bytes()).is_err());
        let block: String = (0..100).map(|i| format!("{}k:\n", " ".repeat(i))).collect();
        assert_eq!(
            check_yaml(block.as_bytes()),
            Err(TooDeep {
                line: MAX_NESTING_DEPTH + 1
            })
        );
        let multi_line_flow: String = (0..100).map(|_| "[\n").collect();
        assert!(check_yaml(multi_line_flow.as_bytes()).is_err());
    }

    #[test]
    fn a_pipe_inside_a_value_does_not_hide_the_lines_after_it() {
        let mut yaml = "command: echo a | grep b\n".to_owned();
        yaml.extend((0..100).map(|i| format!("{}k:\n", " ".repeat(i + 1))));
        assert!(check_yaml(yaml.as_bytes()).is_err());
    }

    #[test]
    fn yaml_at_the_limit_passes_and_sibling_levels_do_not_add_up() {
        let block: String = (0..MAX_NESTING_DEPTH)
            .map(|i| format!("{}k:\n", " ".repeat(i)))
            .collect();
        check_yaml(block.as_bytes()).unwrap();
        let siblings: String = (0..1000).map(|i| format!("k{i}:\n  - a\n")).collect();
        check_yaml(siblings.as_bytes()).unwrap();
    }
}
