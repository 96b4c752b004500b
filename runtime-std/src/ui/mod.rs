//! The page `GET /deployments/ui` serves (docs/PROTOCOL.md §7, "The page"): the deployments
//! and their lock-step, drawn in the browser from the reading endpoints and the event stream.
//!
//! One self-contained document, compiled in: its style and script are inline, and the
//! Content-Security-Policy admits exactly those two by their SHA-256 and nothing else (no
//! other script, style, image, frame, form or base; fetches to this origin only), so markup
//! that reached a deployment's fields (a bundle name or a failure from the cluster) could not
//! run even if the script inserted it as markup, which it never does: every value goes in
//! through `textContent`.

use std::sync::LazyLock;

use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::http::Response;

const STYLE: &str = include_str!("ui.css");
const SCRIPT: &str = include_str!("ui.js");

/// The document.
pub const PAGE: &str = concat!(
    include_str!("head.html"),
    "<style>",
    include_str!("ui.css"),
    "</style>\n",
    include_str!("body.html"),
    "<script>",
    include_str!("ui.js"),
    "</script>\n</body>\n</html>\n"
);

/// The `Content-Security-Policy` of the page.
pub fn content_security_policy() -> &'static str {
    static POLICY: LazyLock<String> = LazyLock::new(|| {
        let hash =
            |text: &str| base64::engine::general_purpose::STANDARD.encode(Sha256::digest(text));
        format!(
            "default-src 'none'; script-src 'sha256-{}'; style-src 'sha256-{}'; \
             connect-src 'self'; img-src 'none'; base-uri 'none'; form-action 'none'; \
             frame-ancestors 'none'",
            hash(SCRIPT),
            hash(STYLE)
        )
    });
    &POLICY
}

/// The answer to `GET {prefix}/ui`.
pub fn page() -> Response {
    Response::new(200, "text/html; charset=utf-8", PAGE)
        .with_header("Content-Security-Policy", content_security_policy())
        .with_header("X-Content-Type-Options", "nosniff")
        .with_header("Referrer-Policy", "no-referrer")
        .with_header("Cache-Control", "no-store")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_page_holds_one_style_and_one_script_the_policy_admits() {
        assert_eq!(PAGE.matches("<script").count(), 1);
        assert_eq!(PAGE.matches("<style").count(), 1);
        assert!(PAGE.contains(&format!("<script>{SCRIPT}</script>")));
        assert!(PAGE.contains(&format!("<style>{STYLE}</style>")));
        let policy = content_security_policy();
        assert!(
            policy.starts_with("default-src 'none'; script-src 'sha256-"),
            "{policy}"
        );
        assert!(!policy.contains("unsafe"), "{policy}");
    }

    #[test]
    fn test_script_never_inserts_markup() {
        for markup in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!SCRIPT.contains(markup), "{markup}");
        }
        // Reads only.
        assert!(!SCRIPT.contains("POST"));
    }
}
