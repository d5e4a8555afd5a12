//! Conditional requests: `If-Match` on PATCH and DELETE (../shared/API.md §4, 412 on mismatch).

use actix_web::HttpRequest;
use actix_web::http::header;

/// `If-Match` (RFC 9110 §13.1.1) → the versions it accepts, or `None` when absent or `*`.
/// A list (`"3", "4"`) accepts any of its entries. Comparison is strong: weak tags (`W/"3"`) and
/// anything unparsable accept nothing, so such a header always fails with 412.
pub fn if_match(req: &HttpRequest) -> Option<Vec<i64>> {
    let raw = req.headers().get(header::IF_MATCH)?;
    let Ok(v) = raw.to_str() else {
        return Some(Vec::new());
    };
    if v.trim() == "*" {
        return None;
    }
    Some(
        v.split(',')
            .filter_map(|tag| {
                tag.trim()
                    .strip_prefix('"')?
                    .strip_suffix('"')?
                    .parse()
                    .ok()
            })
            .collect(),
    )
}
