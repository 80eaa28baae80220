//! Java properties text, read as `java.util.Properties.load` reads it (Kafka loads its
//! config files with it), so a file that works for Kafka means the same here.
//!
//! The rules, from the `Properties.load(Reader)` Javadoc:
//! - The text is split into natural lines at `\n`, `\r` or `\r\n`. A natural line that ends
//!   in an odd number of backslashes continues on the next one: the backslash and the line
//!   terminator are dropped, and so is the leading whitespace of the continuation.
//! - Whitespace is space, `\t` and `\f`. A logical line whose first non-whitespace character
//!   is `#` or `!` is a comment; a line holding only whitespace is blank. (A continuation
//!   line that starts with `#` is not a comment.)
//! - The key runs from the first non-whitespace character to the first unescaped `=`, `:` or
//!   whitespace. Whitespace after the key is skipped, then at most one `=` or `:`, then more
//!   whitespace; the rest of the line is the value. A line with only a key has an empty value.
//! - In keys and values, `\t`, `\n`, `\r`, `\f` and `\uXXXX` (exactly four hex digits) are
//!   escapes; a backslash before any other character stands for that character (so `\=`,
//!   `\:`, `\ `, `\#`, `\\`); a backslash at the very end of the text is dropped.
//! - A key given twice keeps its last value.
//!
//! Java's `String` is UTF-16, so `\uD83D\uDE00` is one character there: here too. A lone
//! surrogate escape has no Rust `char` and is refused, as is a malformed `\uXXXX`, which
//! Java refuses too (IllegalArgumentException).

use std::collections::BTreeMap;

/// Why a properties text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PropertiesError {
    #[error("line {line}: malformed \\uxxxx encoding")]
    MalformedUnicodeEscape { line: usize },
    #[error("line {line}: \\u{code:04X} is a lone UTF-16 surrogate")]
    LoneSurrogate { line: usize, code: u16 },
}

/// Parses a properties text; later keys override earlier ones. Total: every input gives a
/// map or an error, never a panic (a fuzz target calls this).
pub fn parse_properties(text: &str) -> Result<BTreeMap<String, String>, PropertiesError> {
    let mut props = BTreeMap::new();
    for (line_number, line) in LogicalLines::new(text) {
        let (key, value) = split_key_value(&line);
        let key = unescape(key, line_number)?;
        let value = unescape(value, line_number)?;
        props.insert(key, value);
    }
    Ok(props)
}

fn is_whitespace(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\x0c')
}

/// Java's `LineReader`: yields logical lines (continuations joined, comments and blank lines
/// skipped, leading whitespace dropped, escapes still in place) with the number of the
/// natural line each starts on.
struct LogicalLines<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    /// The natural line the reader is on (1-based).
    line_number: usize,
}

impl<'a> LogicalLines<'a> {
    fn new(text: &'a str) -> Self {
        LogicalLines {
            chars: text.chars().peekable(),
            line_number: 1,
        }
    }

    /// Consumes a line terminator (`\r\n` counts as one) that starts with `c`.
    fn end_natural_line(&mut self, c: char) {
        if c == '\r' && self.chars.peek() == Some(&'\n') {
            self.chars.next();
        }
        self.line_number += 1;
    }
}

impl Iterator for LogicalLines<'_> {
    type Item = (usize, String);

    fn next(&mut self) -> Option<(usize, String)> {
        let mut line = String::new();
        let mut start_line = self.line_number;
        // Skipping whitespace: at the start of a logical line (where line terminators are
        // skipped too: blank lines) and at the start of a continuation (where a terminator
        // ends the logical line: an empty continuation).
        let mut skip_whitespace = true;
        let mut in_continuation = false;
        let mut preceding_backslash = false;
        loop {
            let Some(c) = self.chars.next() else {
                if line.is_empty() {
                    return None;
                }
                // A backslash at the end of the text continues nothing: drop it.
                if preceding_backslash {
                    line.pop();
                }
                return Some((start_line, line));
            };
            if skip_whitespace {
                if is_whitespace(c) {
                    continue;
                }
                if !in_continuation && (c == '\r' || c == '\n') {
                    self.end_natural_line(c);
                    start_line = self.line_number;
                    continue;
                }
                skip_whitespace = false;
                in_continuation = false;
            }
            if line.is_empty() && (c == '#' || c == '!') {
                // A comment runs to the end of its natural line; continuations do not apply.
                while let Some(c) = self.chars.next() {
                    if c == '\r' || c == '\n' {
                        self.end_natural_line(c);
                        break;
                    }
                }
                start_line = self.line_number;
                skip_whitespace = true;
                continue;
            }
            if c != '\n' && c != '\r' {
                line.push(c);
                preceding_backslash = c == '\\' && !preceding_backslash;
                continue;
            }
            if line.is_empty() {
                // An empty continuation line ends a logical line that holds nothing.
                self.end_natural_line(c);
                skip_whitespace = true;
                start_line = self.line_number;
                continue;
            }
            let at_end = self.chars.peek().is_none();
            self.end_natural_line(c);
            if at_end {
                // The text ends with this terminator: a continuation backslash is dropped
                // and the line stands, even if nothing is left of it (Java's `readLine`).
                if preceding_backslash {
                    line.pop();
                }
                return Some((start_line, line));
            }
            if !preceding_backslash {
                return Some((start_line, line));
            }
            // An odd backslash at the end of the natural line: it and the terminator go, the
            // next natural line continues this one after its leading whitespace.
            line.pop();
            preceding_backslash = false;
            skip_whitespace = true;
            in_continuation = true;
        }
    }
}

/// Java's `load0`: splits a logical line into its raw (still escaped) key and value.
fn split_key_value(line: &str) -> (&str, &str) {
    let mut key_end = line.len();
    let mut value_start = line.len();
    let mut has_separator = false;
    let mut preceding_backslash = false;
    for (i, c) in line.char_indices() {
        if !preceding_backslash && (c == '=' || c == ':') {
            key_end = i;
            value_start = i + 1;
            has_separator = true;
            break;
        }
        if !preceding_backslash && is_whitespace(c) {
            key_end = i;
            value_start = i + 1;
            break;
        }
        preceding_backslash = c == '\\' && !preceding_backslash;
    }
    // Whitespace, at most one `=` or `:` (unless one ended the key), whitespace.
    let rest = &line[value_start..];
    let mut skipped = rest.len();
    for (i, c) in rest.char_indices() {
        if is_whitespace(c) {
            continue;
        }
        if !has_separator && (c == '=' || c == ':') {
            has_separator = true;
            continue;
        }
        skipped = i;
        break;
    }
    (&line[..key_end], &rest[skipped..])
}

/// Java's `loadConvert`: resolves the escapes of a key or value.
fn unescape(raw: &str, line: usize) -> Result<String, PropertiesError> {
    if !raw.contains('\\') {
        return Ok(raw.to_string());
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    // A high surrogate from a `\uXXXX` escape, waiting for its low half.
    let mut high_surrogate: Option<u16> = None;
    while let Some(c) = chars.next() {
        let decoded = if c == '\\' {
            match chars.next() {
                // A trailing lone backslash (only possible at the very end of the text).
                None => break,
                Some('u') => {
                    let mut code: u16 = 0;
                    for _ in 0..4 {
                        let digit = chars
                            .next()
                            .and_then(|d| d.to_digit(16))
                            .ok_or(PropertiesError::MalformedUnicodeEscape { line })?;
                        code = (code << 4) | digit as u16;
                    }
                    Unit::Utf16(code)
                }
                Some('t') => Unit::Char('\t'),
                Some('n') => Unit::Char('\n'),
                Some('r') => Unit::Char('\r'),
                Some('f') => Unit::Char('\x0c'),
                Some(other) => Unit::Char(other),
            }
        } else {
            Unit::Char(c)
        };
        match (high_surrogate.take(), decoded) {
            (Some(high), Unit::Utf16(low)) if (0xDC00..0xE000).contains(&low) => {
                let code = 0x10000 + (((high as u32) - 0xD800) << 10) + ((low as u32) - 0xDC00);
                // Always a valid scalar value: a high and a low surrogate make one.
                out.push(char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER));
            }
            (Some(high), _) => return Err(PropertiesError::LoneSurrogate { line, code: high }),
            (None, Unit::Utf16(code)) if (0xD800..0xDC00).contains(&code) => {
                high_surrogate = Some(code);
            }
            (None, Unit::Utf16(code)) => match char::from_u32(code as u32) {
                Some(ch) => out.push(ch),
                None => return Err(PropertiesError::LoneSurrogate { line, code }),
            },
            (None, Unit::Char(ch)) => out.push(ch),
        }
    }
    if let Some(high) = high_surrogate {
        return Err(PropertiesError::LoneSurrogate { line, code: high });
    }
    Ok(out)
}

/// One decoded piece of a key or value: a character, or a UTF-16 unit from `\uXXXX`.
enum Unit {
    Char(char),
    Utf16(u16),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Vec<(String, String)> {
        parse_properties(text).unwrap().into_iter().collect()
    }

    fn one(text: &str) -> (String, String) {
        let mut all = parse(text);
        assert_eq!(all.len(), 1, "{text:?} gives {all:?}");
        all.remove(0)
    }

    fn kv(k: &str, v: &str) -> (String, String) {
        (k.to_string(), v.to_string())
    }

    #[test]
    fn separators_as_in_the_javadoc() {
        // `Properties.load`'s own examples: each line is the key "Truth" with "Beauty".
        for text in [
            "Truth = Beauty",
            "  Truth:Beauty",
            "Truth                    :Beauty",
        ] {
            assert_eq!(one(text), kv("Truth", "Beauty"), "{text:?}");
        }
        assert_eq!(one("Truth Beauty"), kv("Truth", "Beauty"));
        assert_eq!(one("Truth\tBeauty"), kv("Truth", "Beauty"));
        assert_eq!(one("Truth\x0cBeauty"), kv("Truth", "Beauty"));
        // A key alone has an empty value.
        assert_eq!(one("cheeses"), kv("cheeses", ""));
        assert_eq!(one("cheeses  =  "), kv("cheeses", ""));
        // Only the first separator counts; the value keeps later ones and trailing spaces.
        assert_eq!(one("a = = b"), kv("a", "= b"));
        assert_eq!(one("a:b=c"), kv("a", "b=c"));
        assert_eq!(one("a b = c"), kv("a", "b = c"));
        assert_eq!(one("a=b  "), kv("a", "b  "));
        assert_eq!(one("=b"), kv("", "b"));
        assert_eq!(one(":"), kv("", ""));
    }

    #[test]
    fn continuation_lines() {
        let text = "fruits                           apple, banana, pear, \\\n                                 cantaloupe, watermelon, \\\n                                 kiwi, mango\n";
        assert_eq!(
            one(text),
            kv(
                "fruits",
                "apple, banana, pear, cantaloupe, watermelon, kiwi, mango"
            )
        );
        // An even number of backslashes is escaped backslashes: no continuation.
        assert_eq!(parse("a=b\\\\\nc=d\n"), vec![kv("a", "b\\"), kv("c", "d")]);
        // Three: one escaped backslash, then a continuation.
        assert_eq!(one("a=b\\\\\\\n  c\n"), kv("a", "b\\c"));
        // \r\n and lone \r end lines too.
        assert_eq!(one("a=b\\\r\n   c\r\n"), kv("a", "bc"));
        assert_eq!(parse("a=1\rb=2\r"), vec![kv("a", "1"), kv("b", "2")]);
        // A continuation line that starts with # is part of the value.
        assert_eq!(one("a=b\\\n  #c"), kv("a", "b#c"));
        // A comment line does not continue.
        assert_eq!(parse("# x \\\na=b"), vec![kv("a", "b")]);
        // An empty continuation ends the logical line.
        assert_eq!(parse("a=b\\\n\nc=d"), vec![kv("a", "b"), kv("c", "d")]);
        // The continuation may continue the key.
        assert_eq!(one("ke\\\n   y=v"), kv("key", "v"));
        // A backslash at the end of the text is dropped.
        assert_eq!(one("a=b\\"), kv("a", "b"));
        assert_eq!(one("a=b\\\n"), kv("a", "b"));
    }

    #[test]
    fn comments_and_blank_lines() {
        let text =
            "# a comment\n! another\n   # indented\n\n  \t \n\x0c\na=1\n#b=2\n  !c=3\nd=#4\n";
        assert_eq!(parse(text), vec![kv("a", "1"), kv("d", "#4")]);
        assert_eq!(parse(""), vec![]);
        assert_eq!(parse("#only"), vec![]);
    }

    #[test]
    fn escapes() {
        assert_eq!(one("a=\\t\\n\\r\\f"), kv("a", "\t\n\r\x0c"));
        assert_eq!(one("a=\\u0041\\u00e9\\u4E2D"), kv("a", "Aé中"));
        // UTF-16 surrogate pairs are one character, as in a Java String.
        assert_eq!(one("a=\\uD83D\\uDE00"), kv("a", "😀"));
        // A backslash before anything else stands for that character.
        assert_eq!(one("a=\\b\\q\\\\\\#"), kv("a", "bq\\#"));
        // Escaped separators and whitespace belong to the key.
        assert_eq!(
            one("\\:\\=key\\ with\\ spaces = v"),
            kv(":=key with spaces", "v")
        );
        assert_eq!(one("a\\=b=c"), kv("a=b", "c"));
        assert_eq!(one("a\\:b:c"), kv("a:b", "c"));
        // An escaped leading space in the value keeps it.
        assert_eq!(one("a=\\  b"), kv("a", "  b"));
        // Unicode text stays as it is.
        assert_eq!(one("clé=valeur ünïcode"), kv("clé", "valeur ünïcode"));
    }

    #[test]
    fn malformed_unicode_escapes_are_refused() {
        for text in ["a=\\u12G4", "a=\\u12", "a=\\u", "\\uzzzz=1", "a=\\u+041"] {
            assert_eq!(
                parse_properties(text),
                Err(PropertiesError::MalformedUnicodeEscape { line: 1 }),
                "{text:?}"
            );
        }
        assert_eq!(
            parse_properties("x=1\n\ny=\\uD83D"),
            Err(PropertiesError::LoneSurrogate {
                line: 3,
                code: 0xD83D
            })
        );
        assert!(parse_properties("a=\\uDE00").is_err());
        assert!(parse_properties("a=\\uD83Dx").is_err());
    }

    #[test]
    fn later_keys_win() {
        assert_eq!(one("a=1\na=2\n"), kv("a", "2"));
    }

    #[test]
    fn never_panics_on_odd_input() {
        // Every prefix of a text full of edge cases parses or is refused, without panicking.
        let text = "a\\\r\n\\u00\\\n41=\\\\\\\r\r\n#\\\n!\\u\t\x0c:=\\\n\n\\uD83D\\\n\\uDE00 é\\";
        for (i, _) in text.char_indices() {
            let _ = parse_properties(&text[..i]);
        }
        assert_eq!(one("\\"), kv("", ""));
    }
}
