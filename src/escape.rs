//! Text from outside (media package ids sent by viewers, answers of Opencast, S3 or
//! Elasticsearch, file contents) printed safely: every control character is written as an
//! escape, so no such text can forge a log line (`\n`), overwrite one (`\r`), or drive the
//! terminal (ESC sequences that erase lines or set the window title). Used by the log format,
//! the `error:` line and the reports.

use std::fmt::Write as _;

/// Whether `c` would act on a terminal or a line-based log rather than show as itself: the C0
/// and C1 controls, DEL, and the Unicode marks that reorder or hide text (bidi overrides and
/// isolates, line and paragraph separators).
fn acts(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}')
}

/// Whether `s` holds anything [`text`] would change.
pub fn needs(s: &str) -> bool {
    s.chars().any(acts)
}

/// `s` with every control character escaped (`\n`, `\r`, `\t`, `\u{1b}`); other text as is.
pub fn text(s: &str) -> std::borrow::Cow<'_, str> {
    if !needs(s) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        push(&mut out, c);
    }
    std::borrow::Cow::Owned(out)
}

fn push(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if acts(c) => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
        c => out.push(c),
    }
}

/// `s` escaped and cut to `max` characters (an ellipsis and the full length say it was cut):
/// what a message quotes of text it does not control, a 1 MB S3 object say.
pub fn quoted_short(s: &str, max: usize) -> String {
    let mut out = String::new();
    for (n, c) in s.chars().enumerate() {
        if n == max {
            let _ = write!(out, "… ({} bytes in all)", s.len());
            return out;
        }
        push(&mut out, c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_escaped_and_other_text_kept() {
        assert_eq!(text("plain ünïcode"), "plain ünïcode");
        assert_eq!(
            text("a\nERROR forged\r\u{1b}]0;title\u{7}\u{9b}2K\u{202e}"),
            "a\\nERROR forged\\r\\u{1b}]0;title\\u{7}\\u{9b}2K\\u{202e}"
        );
        assert_eq!(quoted_short("abcdef", 3), "abc… (6 bytes in all)");
        assert_eq!(quoted_short("a\u{1b}", 3), "a\\u{1b}");
    }

    proptest::proptest! {
        /// Whatever text comes from outside, what is printed holds nothing that acts on a
        /// terminal or a line-based log, and text without such characters is printed as is.
        #[test]
        fn escaped_text_never_acts_and_plain_text_is_kept(s in proptest::prelude::any::<String>()) {
            let out = text(&s);
            proptest::prop_assert!(!out.chars().any(acts), "{out:?}");
            if !needs(&s) {
                proptest::prop_assert_eq!(out.as_ref(), s.as_str());
            }
            let short = quoted_short(&s, 20);
            proptest::prop_assert!(!short.chars().any(acts));
            proptest::prop_assert!(short.chars().count() <= 20 * 10 + 40, "{short:?}");
        }
    }
}
