//! Text this program did not write (a plugin's answer, a request, a remote server's error)
//! made safe to show: bounded in size and with control characters escaped, so it can neither flood a log or an
//! answer, forge a log line (CR, LF), nor repaint an operator's terminal (ANSI escapes,
//! bidirectional overrides).

use std::borrow::Cow;
use std::fmt::Write as _;

/// Longest untrusted text kept, in bytes after escaping; the rest is cut and marked as cut.
pub const UNTRUSTED_MAX: usize = 4096;

/// `text` bounded to [`UNTRUSTED_MAX`] bytes (cut on a character boundary, with a marker that
/// says how long it was) and with control and bidirectional-formatting characters escaped as
/// `\u{..}` (`\n`, `\r`, `\t` as themselves). Borrows when nothing needed changing.
pub fn untrusted(text: &str) -> Cow<'_, str> {
    bounded(text, UNTRUSTED_MAX)
}

/// [`untrusted`] with another bound.
pub fn bounded(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max && !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len().min(max) + 48);
    for c in text.chars() {
        let before = out.len();
        if needs_escape(c) {
            match c {
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                _ => {
                    let _ = write!(out, "\\u{{{:x}}}", c as u32);
                }
            }
        } else {
            out.push(c);
        }
        if out.len() > max {
            out.truncate(before);
            let _ = write!(out, "… (cut: {} bytes in all)", text.len());
            break;
        }
    }
    Cow::Owned(out)
}

/// Control characters (C0, DEL, C1) and the Unicode formatting characters that reorder
/// what a terminal shows (bidirectional embeddings, overrides and isolates).
fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed() {
        assert!(matches!(untrusted("all fine: ü ✓"), Cow::Borrowed(_)));
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(
            untrusted("line\r\nINFO forged\x1b[2J\u{202e}"),
            "line\\r\\nINFO forged\\u{1b}[2J\\u{202e}"
        );
        assert_eq!(untrusted("\u{9b}31m\x7f"), "\\u{9b}31m\\u{7f}");
    }

    #[test]
    fn long_text_is_cut_on_a_character_boundary_and_marked() {
        let long = "é".repeat(10_000);
        let cut = untrusted(&long);
        assert!(cut.len() <= UNTRUSTED_MAX + 48, "{}", cut.len());
        assert!(cut.ends_with("… (cut: 20000 bytes in all)"), "{cut}");
        assert!(cut.starts_with("éé"));
        let escapes = "\x1b".repeat(5000);
        let cut = untrusted(&escapes);
        assert!(cut.len() <= UNTRUSTED_MAX + 48);
        assert!(!cut.contains('\x1b'));
    }

    #[test]
    fn text_at_the_bound_is_kept_whole() {
        let exact = "a".repeat(UNTRUSTED_MAX);
        assert_eq!(untrusted(&exact), exact);
    }
}
