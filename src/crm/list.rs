//! Shared list mechanics (../shared/API.md §5): `limit`, `sort`, opaque keyset cursors, the page envelope.
//! Resources declare their sortable fields and fingerprint their filters; this module parses and
//! validates the rest, and seals and opens the cursors ([`cursor`]).
//!
//! A cursor is bound to its list: the resource, the tenant, the sort and the filters. Any
//! cursor that does not open for exactly the list being requested (forged, damaged, from an old
//! signing key, another tenant's, another sort's or filters') is a 400 `malformed_request`,
//! decided before any SQL runs.

pub mod cursor;

pub use self::cursor::{Binding, Cursor, CursorSealer, Fingerprint, SortKey};
use crate::error::{AppError, FieldError};
use crate::ids::TenantId;

/// Default page size.
pub const DEFAULT_LIMIT: i64 = 50;
/// Largest page size.
pub const MAX_LIMIT: i64 = 200;

/// The one answer to every unusable cursor: saying why (forged? other tenant? expired key?)
/// would tell a prober what they hit.
const INVALID_CURSOR: &str = "cursor is not a valid cursor for this list; start again without it";

/// The 400 for a cursor that cannot be used, for resources that find out late (their seek does
/// not fit the cursor's key).
pub fn invalid_cursor() -> AppError {
    AppError::Malformed(INVALID_CURSOR.into())
}

/// A validated sort: field name and direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sort {
    /// One of the resource's sortable fields.
    pub field: &'static str,
    /// Descending?
    pub desc: bool,
}

impl Sort {
    /// The sort as the client writes it (`-created_at`).
    pub fn as_param(&self) -> String {
        format!("{}{}", if self.desc { "-" } else { "" }, self.field)
    }
}

/// The list one request reads, as far as its cursors are concerned. Resources build it per
/// request; everything but the sort goes into each cursor's binding from here.
pub struct ListContext<'a> {
    /// The server's sealer (`AppState::cursors`).
    pub cursors: &'a CursorSealer,
    /// The resource, as a stable name (`contacts`).
    pub resource: &'static str,
    /// The tenant whose rows are listed.
    pub tenant: TenantId,
    /// The request's effective filters.
    pub filters: Fingerprint,
}

impl ListContext<'_> {
    fn binding(&self, sort: Sort) -> Binding {
        Binding::new(
            self.resource,
            self.tenant.as_uuid(),
            &sort.as_param(),
            self.filters,
        )
    }

    /// Opens a client's cursor for this list in `sort`, or refuses it (400).
    pub fn open(&self, sort: Sort, text: &str) -> Result<Cursor, AppError> {
        self.cursors
            .open(&self.binding(sort), text)
            .ok_or_else(invalid_cursor)
    }

    /// The opaque `next_cursor` for a page that ended at `last` (`None`: it was the last page).
    pub fn next_cursor(
        &self,
        sort: Sort,
        last: Option<&Cursor>,
    ) -> Result<Option<String>, AppError> {
        last.map(|c| self.cursors.seal(&self.binding(sort), c))
            .transpose()
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

/// A query string as a map of parameters; a malformed one is 400 `malformed_request`. Every
/// list and report reads its parameters through this, then [`check_params`].
pub fn parse_query(query: &str) -> Result<std::collections::HashMap<String, String>, AppError> {
    Ok(
        actix_web::web::Query::<std::collections::HashMap<String, String>>::from_query(query)
            .map_err(|_| AppError::Malformed("query string is malformed".into()))?
            .into_inner(),
    )
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

/// Parses the paging parameters against `sortable` (`default_sort` applies when `sort` is
/// absent) and opens the cursor for `list`. Field problems are collected into `errors`; an
/// unusable cursor is an immediate 400.
pub fn paging(
    limit: Option<&str>,
    sort: Option<&str>,
    cursor: Option<&str>,
    sortable: &[&'static str],
    default_sort: Sort,
    list: &ListContext<'_>,
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
    // An invalid `sort` falls back to the default above, under which no cursor for another
    // sort opens: a 400 either way.
    let after = match cursor {
        None | Some("") => None,
        Some(c) => Some(list.open(sort, c)?),
    };
    Ok(Paging { limit, sort, after })
}

/// A page of results, as the repository returns it (the handler seals `next`).
#[derive(Debug)]
pub struct Page<T> {
    /// The rows.
    pub data: Vec<T>,
    /// Where the next page starts; `None` on the last one.
    pub next: Option<Cursor>,
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    const DEFAULT: Sort = Sort {
        field: "created_at",
        desc: true,
    };
    const FIELDS: &[&str] = &["created_at", "email"];

    fn list<'a>(cursors: &'a CursorSealer, tenant: u128, q: &str) -> ListContext<'a> {
        ListContext {
            cursors,
            resource: "contacts",
            tenant: TenantId(Uuid::from_u128(tenant)),
            filters: Fingerprint::of([("q", q)]),
        }
    }

    #[test]
    fn parses_and_validates() {
        let sealer = CursorSealer::new([1; 32]);
        let l = list(&sealer, 1, "");
        let mut e = Vec::new();
        let p = paging(Some("10"), Some("email"), None, FIELDS, DEFAULT, &l, &mut e).unwrap();
        assert!(e.is_empty());
        assert_eq!((p.limit, p.sort.field, p.sort.desc), (10, "email", false));
        paging(Some("201"), Some("nope"), None, FIELDS, DEFAULT, &l, &mut e).unwrap();
        assert_eq!(e.len(), 2);
    }

    #[test]
    fn next_cursor_opens_for_the_same_list_only() {
        let sealer = CursorSealer::new([1; 32]);
        let email = Sort {
            field: "email",
            desc: false,
        };
        let last = Cursor {
            key: SortKey::Text("ada@example.com".into()),
            id: Uuid::now_v7(),
        };
        let l = list(&sealer, 1, "ada");
        assert_eq!(l.next_cursor(email, None).unwrap(), None);
        let next = l.next_cursor(email, Some(&last)).unwrap().unwrap();
        assert!(!next.contains("ada"), "opaque: {next}");
        let mut e = Vec::new();
        let open = |l: &ListContext<'_>, sort: Option<&str>| {
            paging(None, sort, Some(&next), FIELDS, DEFAULT, l, &mut Vec::new())
        };
        assert_eq!(open(&l, Some("email")).unwrap().after, Some(last));
        let other_sealer = CursorSealer::new([2; 32]);
        let refused = [
            open(&l, Some("-email")),
            open(&l, None),
            open(&list(&sealer, 2, "ada"), Some("email")),
            open(&list(&sealer, 1, "ad"), Some("email")),
            open(&list(&other_sealer, 1, "ada"), Some("email")),
        ];
        for r in refused {
            let err = r.unwrap_err();
            assert_eq!(err.code(), "malformed_request");
            assert_eq!(err.to_string(), INVALID_CURSOR);
        }
        let r = paging(None, None, Some("garbage!"), FIELDS, DEFAULT, &l, &mut e);
        assert_eq!(r.unwrap_err().to_string(), INVALID_CURSOR);
        // An empty cursor is no cursor.
        let p = paging(None, None, Some(""), FIELDS, DEFAULT, &l, &mut e).unwrap();
        assert_eq!(p.after, None);
    }
}
