//! What a new tenant and its first owner must satisfy: one set of rules for signup, the operator
//! API and (for the slug) manifests, so a tenant one path accepts is never refused by another.

use crate::auth::{password, users};
use crate::error::FieldError;
use crate::tenancy::host::{SLUG_MAX, SLUG_MIN, SLUG_PATTERN, valid_slug};

/// Longest display name (tenant or user), in characters.
pub const MAX_NAME: usize = 200;

/// A display name: 1–[`MAX_NAME`] characters once trimmed. Characters, not bytes, so the
/// OpenAPI `maxLength` (which counts characters) describes it exactly.
pub fn display_name_ok(name: &str) -> bool {
    (1..=MAX_NAME).contains(&name.trim().chars().count())
}

/// Field errors of a new tenant's slug and name, reported under `{prefix}.slug` / `.name`.
pub fn check_tenant(slug: &str, name: &str, prefix: &str, errors: &mut Vec<FieldError>) {
    if !valid_slug(slug) {
        errors.push(FieldError::new(
            format!("{prefix}.slug"),
            "invalid_format",
            format!(
                "must be {SLUG_MIN}–{SLUG_MAX} characters matching {SLUG_PATTERN} (no double \
                 hyphens) and not a reserved name"
            ),
        ));
    }
    check_name(name, &format!("{prefix}.name"), errors);
}

/// Field errors of a display name at `field`.
pub fn check_name(name: &str, field: &str, errors: &mut Vec<FieldError>) {
    if !display_name_ok(name) {
        errors.push(FieldError::new(
            field,
            "invalid_length",
            format!("must be 1–{MAX_NAME} characters"),
        ));
    }
}

/// Field errors of a first owner under `{prefix}.email` / `.name` / `.password` (a password is
/// checked only when one is given: the operator API generates one otherwise).
pub fn check_owner(
    email: &str,
    name: &str,
    password: Option<&str>,
    prefix: &str,
    errors: &mut Vec<FieldError>,
) {
    if let Err(m) = users::validate_email(email) {
        errors.push(FieldError::new(
            format!("{prefix}.email"),
            "invalid_format",
            m,
        ));
    }
    if let Some(pw) = password
        && let Err(e) = password::check_policy(pw)
    {
        errors.push(FieldError::new(
            format!("{prefix}.password"),
            e.code(),
            e.to_string(),
        ));
    }
    check_name(name, &format!("{prefix}.name"), errors);
}
