//! HTML escaping: the one function canvass escapes with, and the formatter
//! that makes every minijinja template (the report's, the mails' and pages'
//! of `crate::texts`) escape with it.

use minijinja::{AutoEscape, Error, Output, State, Value};

/// `s` safe inside HTML text and double- or single-quoted attributes.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A minijinja formatter escaping strings with [`html_escape`] where the
/// template is auto-escaped as HTML (minijinja's own escaper also turns `/`
/// into `&#x2f;`); anything else as minijinja does it.
pub fn formatter(out: &mut Output, state: &State, value: &Value) -> Result<(), Error> {
    match value.as_str() {
        Some(s) if !value.is_safe() && matches!(state.auto_escape(), AutoEscape::Html) => {
            out.write_str(&html_escape(s)).map_err(Error::from)
        }
        _ => minijinja::escape_formatter(out, state, value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_the_five_characters_and_nothing_else() {
        assert_eq!(
            html_escape("<b>Tom & \"Jerry\"</b> 'x' / æ"),
            "&lt;b&gt;Tom &amp; &quot;Jerry&quot;&lt;/b&gt; &#39;x&#39; / æ"
        );
    }

    #[test]
    fn the_formatter_escapes_html_templates_only() {
        let mut env = minijinja::Environment::new();
        env.set_formatter(formatter);
        env.add_template("a.html", "{{ s }}|{{ s|safe }}|{{ n }}")
            .expect("a valid template");
        env.add_template("a.txt", "{{ s }}")
            .expect("a valid template");
        let ctx = minijinja::context! { s => "</a & b>", n => 7 };
        let html = env.get_template("a.html").and_then(|t| t.render(&ctx));
        assert_eq!(html.expect("renders"), "&lt;/a &amp; b&gt;|</a & b>|7");
        let text = env.get_template("a.txt").and_then(|t| t.render(&ctx));
        assert_eq!(text.expect("renders"), "</a & b>");
    }
}
