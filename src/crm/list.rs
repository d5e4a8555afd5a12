//! Shared list mechanics (API.md §5): `limit`, `sort`, opaque keyset cursors, the page envelope.
//! Resources declare their sortable fields; this module parses and validates the rest.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{AppError, FieldError};

/// Default page size.
pub const DEFAULT_LIMIT: i64 = 50;
/// Largest page size.
pub const MAX_LIMIT: i64 = 200;

/// A validated sort: field name and direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sort {
    /// One of the resource's sortable fields.
    pub field: &'static str,
    /// Descending?
    pub desc: bool,
}

/// Where the previous page ended: the sort value (as text) and the id of its last row.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Cursor {
    /// The sort the cursor was made for (`-created_at`).
    pub s: String,
    /// Last row's sort value.
    pub v: String,
    /// Last row's id.
    pub id: Uuid,
}

impl Cursor {
    /// Opaque form.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    fn decode(s: &str) -> Option<Self> {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(s).ok()?).ok()
    }
}

/// `limit`, `sort`, `cursor` after validation.
#[derive(Debug, Clone)]
pub struct Paging {
    /// Rows per page.
    pub limit: i64,
    /// Sort order.
    pub sort: Sort,
    /// Where to continue, if not the first page.
    pub after: Option<Cursor>,
}

impl Sort {
    /// The sort as the client writes it (`-created_at`).
    pub fn as_param(&self) -> String {
        format!("{}{}", if self.desc { "-" } else { "" }, self.field)
    }
}

/// Checks a list's query parameters as a whole: names outside `allowed` and values holding NUL
/// (which PostgreSQL text cannot store or compare) become field errors.
pub fn check_params<'a>(
    params: impl IntoIterator<Item = (&'a String, &'a String)>,
    allowed: &[&str],
    errors: &mut Vec<FieldError>,
) {
    for (k, v) in params {
        if !allowed.contains(&k.as_str()) {
            errors.push(FieldError::new(
                k.clone(),
                "unknown_parameter",
                "is not a recognized parameter",
            ));
        } else if v.contains('\0') {
            errors.push(FieldError::new(
                k.clone(),
                "invalid_characters",
                "must not contain NUL (%00)",
            ));
        }
    }
}

/// Parses the paging parameters against `sortable` (first entry of `default_sort` applies when
/// `sort` is absent). Field problems are collected into `errors`.
pub fn paging(
    limit: Option<&str>,
    sort: Option<&str>,
    cursor: Option<&str>,
    sortable: &[&'static str],
    default_sort: Sort,
    errors: &mut Vec<FieldError>,
) -> Result<Paging, AppError> {
    let limit = match limit {
        None => DEFAULT_LIMIT,
        Some(s) => match s.parse::<i64>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                errors.push(FieldError::new(
                    "limit",
                    "out_of_range",
                    format!("must be an integer from 1 to {MAX_LIMIT}"),
                ));
                DEFAULT_LIMIT
            }
        },
    };
    let sort = match sort {
        None => default_sort,
        Some(s) => {
            let (desc, name) = s.strip_prefix('-').map_or((false, s), |n| (true, n));
            match sortable.iter().find(|f| **f == name) {
                Some(field) => Sort { field, desc },
                None => {
                    errors.push(FieldError::new(
                        "sort",
                        "invalid_value",
                        format!(
                            "must be one of {} (prefix - for descending)",
                            sortable.join(", ")
                        ),
                    ));
                    default_sort
                }
            }
        }
    };
    let after = match cursor {
        None | Some("") => None,
        Some(c) => {
            let cur = Cursor::decode(c)
                .ok_or_else(|| AppError::Malformed("cursor is not a valid cursor".into()))?;
            if cur.s != sort.as_param() {
                return Err(AppError::Malformed(
                    "cursor was issued for a different sort; start again without it".into(),
                ));
            }
            Some(cur)
        }
    };
    Ok(Paging { limit, sort, after })
}

/// A page of results.
#[derive(Debug, Serialize)]
pub struct Page<T> {
    /// The rows.
    pub data: Vec<T>,
    /// Cursor for the next page; null on the last one.
    pub next_cursor: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT: Sort = Sort {
        field: "created_at",
        desc: true,
    };
    const FIELDS: &[&str] = &["created_at", "email"];

    #[test]
    fn parses_and_validates() {
        let mut e = Vec::new();
        let p = paging(Some("10"), Some("email"), None, FIELDS, DEFAULT, &mut e).unwrap();
        assert!(e.is_empty());
        assert_eq!((p.limit, p.sort.field, p.sort.desc), (10, "email", false));
        paging(Some("201"), Some("nope"), None, FIELDS, DEFAULT, &mut e).unwrap();
        assert_eq!(e.len(), 2);
    }

    #[test]
    fn cursors_round_trip_and_bind_to_sort() {
        let c = Cursor {
            s: "-created_at".into(),
            v: "x".into(),
            id: Uuid::now_v7(),
        };
        let mut e = Vec::new();
        let p = paging(None, None, Some(&c.encode()), FIELDS, DEFAULT, &mut e).unwrap();
        assert_eq!(p.after, Some(c.clone()));
        assert!(
            paging(
                None,
                Some("email"),
                Some(&c.encode()),
                FIELDS,
                DEFAULT,
                &mut e
            )
            .is_err()
        );
        assert!(paging(None, None, Some("garbage!"), FIELDS, DEFAULT, &mut e).is_err());
    }
}
