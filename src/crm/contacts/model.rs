//! Contact records, create/patch inputs, and their validation.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::db::schema::contacts;
use crate::error::FieldError;
use crate::ids::{ContactId, TenantId};

/// Allowed `lifecycle_stage` values.
pub const LIFECYCLE_STAGES: &[&str] = &[
    "subscriber",
    "lead",
    "mql",
    "sql",
    "opportunity",
    "customer",
    "evangelist",
    "other",
];

/// The `lifecycle_stage` values as a schema for the API description; validation uses
/// [`LIFECYCLE_STAGES`] (a unit test keeps the two equal).
#[derive(Debug, ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum LifecycleStage {
    /// Subscriber.
    Subscriber,
    /// Lead.
    Lead,
    /// Marketing-qualified lead.
    Mql,
    /// Sales-qualified lead.
    Sql,
    /// Opportunity.
    Opportunity,
    /// Customer.
    Customer,
    /// Evangelist.
    Evangelist,
    /// Other.
    Other,
}
/// Most keys a `custom` object may hold.
pub const MAX_CUSTOM_KEYS: usize = 50;
/// Most tags per contact.
pub const MAX_TAGS: usize = 50;
const MAX_TEXT: usize = 255;
const MAX_TAG: usize = 64;
const MAX_CUSTOM_STRING: usize = 2000;
/// What a `custom` key must look like.
const CUSTOM_KEY: &str = "^[a-z][a-z0-9_]{0,63}$";

/// A contact row.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = contacts, check_for_backend(diesel::pg::Pg))]
pub struct Contact {
    /// Tenant.
    pub tenant_id: TenantId,
    /// Id.
    pub id: ContactId,
    /// First name.
    pub first_name: Option<String>,
    /// Last name.
    pub last_name: Option<String>,
    /// Email.
    pub email: Option<String>,
    /// Phone.
    pub phone: Option<String>,
    /// Job title.
    pub title: Option<String>,
    /// Account.
    pub account_id: Option<Uuid>,
    /// Owning user.
    pub owner_id: Option<Uuid>,
    /// Lifecycle stage.
    pub lifecycle_stage: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Custom fields.
    pub custom: Value,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Updated.
    pub updated_at: DateTime<Utc>,
    /// Soft-deleted.
    pub deleted_at: Option<DateTime<Utc>>,
    /// Version (+1 per update).
    pub version: i64,
}

/// A contact as the API returns it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ContactView {
    /// Id.
    pub id: Uuid,
    /// First name.
    pub first_name: Option<String>,
    /// Last name.
    pub last_name: Option<String>,
    /// Email (unique per tenant among live contacts).
    pub email: Option<String>,
    /// Phone.
    pub phone: Option<String>,
    /// Job title.
    pub title: Option<String>,
    /// Account.
    pub account_id: Option<Uuid>,
    /// Owning user.
    pub owner_id: Option<Uuid>,
    /// One of subscriber, lead, mql, sql, opportunity, customer, evangelist, other.
    #[schema(value_type = Option<LifecycleStage>)]
    pub lifecycle_stage: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Custom fields: up to 50 keys with scalar values.
    #[schema(value_type = Object)]
    pub custom: Value,
    /// Created (RFC 3339 UTC).
    pub created_at: DateTime<Utc>,
    /// Last updated.
    pub updated_at: DateTime<Utc>,
    /// Version, +1 per update; also the `ETag`.
    pub version: i64,
}

impl From<Contact> for ContactView {
    fn from(c: Contact) -> Self {
        Self {
            id: c.id.as_uuid(),
            first_name: c.first_name,
            last_name: c.last_name,
            email: c.email,
            phone: c.phone,
            title: c.title,
            account_id: c.account_id,
            owner_id: c.owner_id,
            lifecycle_stage: c.lifecycle_stage,
            tags: c.tags,
            custom: c.custom,
            created_at: c.created_at,
            updated_at: c.updated_at,
            version: c.version,
        }
    }
}

/// `POST /v1/contacts` body. Unknown fields are refused (mass-assignment guard).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewContact {
    /// First name.
    #[schema(schema_with = api_schema::text)]
    pub first_name: Option<String>,
    /// Last name.
    #[schema(schema_with = api_schema::text)]
    pub last_name: Option<String>,
    /// Email.
    #[schema(schema_with = api_schema::email)]
    pub email: Option<String>,
    /// Phone.
    #[schema(schema_with = api_schema::text)]
    pub phone: Option<String>,
    /// Job title.
    #[schema(schema_with = api_schema::text)]
    pub title: Option<String>,
    /// Account id.
    #[schema(schema_with = api_schema::account_id)]
    pub account_id: Option<Uuid>,
    /// Owning user id (must be a user of this tenant).
    #[schema(schema_with = api_schema::owner_id)]
    pub owner_id: Option<Uuid>,
    /// Lifecycle stage.
    #[schema(value_type = Option<LifecycleStage>)]
    pub lifecycle_stage: Option<String>,
    /// Tags.
    #[schema(schema_with = api_schema::tags)]
    pub tags: Option<Vec<String>>,
    /// Custom fields.
    #[schema(schema_with = api_schema::custom)]
    pub custom: Option<Map<String, Value>>,
}

/// `PATCH /v1/contacts/{id}` body: absent = unchanged, `null` = cleared. `custom` merges key by
/// key; a `null` value removes that key.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactPatch {
    /// First name.
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = api_schema::text)]
    pub first_name: Option<Option<String>>,
    /// Last name.
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = api_schema::text)]
    pub last_name: Option<Option<String>>,
    /// Email.
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = api_schema::email)]
    pub email: Option<Option<String>>,
    /// Phone.
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = api_schema::text)]
    pub phone: Option<Option<String>>,
    /// Job title.
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = api_schema::text)]
    pub title: Option<Option<String>>,
    /// Account id.
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = api_schema::account_id)]
    pub account_id: Option<Option<Uuid>>,
    /// Owner id.
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = api_schema::owner_id)]
    pub owner_id: Option<Option<Uuid>>,
    /// Lifecycle stage.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<LifecycleStage>)]
    pub lifecycle_stage: Option<Option<String>>,
    /// Tags (replaces the list).
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = api_schema::tags)]
    pub tags: Option<Option<Vec<String>>>,
    /// Custom fields to merge: a `null` value removes that key. The merged record may hold at
    /// most 50 keys.
    #[schema(schema_with = api_schema::custom)]
    pub custom: Option<Map<String, Value>>,
}

/// Request-body schemas for the API description, built from the constants [`ContactValues::validate`]
/// checks against, so the two cannot drift apart.
mod api_schema {
    use serde_json::json;
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, SchemaType, Type};

    use super::{CUSTOM_KEY, MAX_CUSTOM_KEYS, MAX_CUSTOM_STRING, MAX_TAG, MAX_TAGS, MAX_TEXT};
    use crate::auth::users::MAX_EMAIL;
    use crate::http::openapi::rules;

    /// A free-text field.
    pub fn text() -> ObjectBuilder {
        rules::string(true).max_length(Some(MAX_TEXT)).description(Some(format!(
            "At most {MAX_TEXT} characters. Surrounding whitespace is trimmed; a value that trims \
             to nothing (or `null`) leaves the field empty."
        )))
    }

    /// The contact's email (unique per tenant among live contacts, stored lower-cased).
    pub fn email() -> ObjectBuilder {
        rules::string(true)
            .pattern(Some(rules::email(true)))
            .max_length(Some(MAX_EMAIL))
            .description(Some(format!(
                "An email address (one `@`, a dot in the domain, no whitespace inside; at most \
                 {MAX_EMAIL} characters), stored trimmed and lower-cased. A value that trims to \
                 nothing (or `null`) leaves the field empty. Unique among the tenant's live \
                 contacts (409)."
            )))
    }

    /// The account the contact belongs to.
    pub fn account_id() -> ObjectBuilder {
        rules::uuid(true).description(Some("Account id."))
    }

    /// The owning user.
    pub fn owner_id() -> ObjectBuilder {
        rules::uuid(true).description(Some(
            "Owning user's id: must name a user of this tenant (else 422, `owner_id` `not_found`).",
        ))
    }

    /// Tags.
    pub fn tags() -> ArrayBuilder {
        ArrayBuilder::new()
            .schema_type(SchemaType::from_iter([Type::Array, Type::Null]))
            .items(rules::string(false).max_length(Some(MAX_TAG)))
            .max_items(Some(MAX_TAGS))
            .description(Some(format!(
                "At most {MAX_TAGS} tags of at most {MAX_TAG} characters each; tags are trimmed, \
                 and blank or repeated ones dropped. `null` means none."
            )))
    }

    /// Custom fields: scalar values under snake_case keys.
    pub fn custom() -> ObjectBuilder {
        let value = ObjectBuilder::new()
            .schema_type(SchemaType::from_iter([
                Type::String,
                Type::Number,
                Type::Boolean,
                Type::Null,
            ]))
            .max_length(Some(MAX_CUSTOM_STRING))
            .pattern(Some(rules::NO_NUL));
        ObjectBuilder::new()
            .schema_type(SchemaType::from_iter([Type::Object, Type::Null]))
            .property_names(Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(CUSTOM_KEY)),
            ))
            .additional_properties(Some(value))
            .max_properties(Some(MAX_CUSTOM_KEYS))
            .description(Some(format!(
                "At most {MAX_CUSTOM_KEYS} keys matching `{CUSTOM_KEY}`, each with a string (at \
                 most {MAX_CUSTOM_STRING} characters), number or boolean; a `null` value means no \
                 such key."
            )))
            .examples([json!({"tier": "gold", "score": 3})])
    }
}

/// Distinguishes "field present with null" from "field absent".
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// The full set of writable values after applying an input; what the repo writes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContactValues {
    /// First name.
    pub first_name: Option<String>,
    /// Last name.
    pub last_name: Option<String>,
    /// Email.
    pub email: Option<String>,
    /// Phone.
    pub phone: Option<String>,
    /// Title.
    pub title: Option<String>,
    /// Account.
    pub account_id: Option<Uuid>,
    /// Owner.
    pub owner_id: Option<Uuid>,
    /// Stage.
    pub lifecycle_stage: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Custom.
    pub custom: Map<String, Value>,
}

impl ContactValues {
    /// Values of an existing record.
    pub fn of(c: &Contact) -> Self {
        Self {
            first_name: c.first_name.clone(),
            last_name: c.last_name.clone(),
            email: c.email.clone(),
            phone: c.phone.clone(),
            title: c.title.clone(),
            account_id: c.account_id,
            owner_id: c.owner_id,
            lifecycle_stage: c.lifecycle_stage.clone(),
            tags: c.tags.clone(),
            custom: c.custom.as_object().cloned().unwrap_or_default(),
        }
    }

    /// Values for a new record.
    pub fn from_new(n: NewContact) -> Self {
        let mut custom = n.custom.unwrap_or_default();
        custom.retain(|_, v| !v.is_null());
        Self {
            first_name: n.first_name,
            last_name: n.last_name,
            email: n.email,
            phone: n.phone,
            title: n.title,
            account_id: n.account_id,
            owner_id: n.owner_id,
            lifecycle_stage: n.lifecycle_stage,
            tags: n.tags.unwrap_or_default(),
            custom,
        }
        .normalized()
    }

    /// Applies a patch.
    pub fn patched(mut self, p: ContactPatch) -> Self {
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = p.$f { self.$f = v; } )* };
        }
        set!(
            first_name,
            last_name,
            email,
            phone,
            title,
            account_id,
            owner_id,
            lifecycle_stage
        );
        if let Some(tags) = p.tags {
            self.tags = tags.unwrap_or_default();
        }
        if let Some(custom) = p.custom {
            for (k, v) in custom {
                if v.is_null() {
                    self.custom.remove(&k);
                } else {
                    self.custom.insert(k, v);
                }
            }
        }
        self.normalized()
    }

    /// Trims text, turns empty strings into null, lower-cases email, dedupes tags.
    fn normalized(mut self) -> Self {
        let clean = |v: Option<String>| v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        self.first_name = clean(self.first_name);
        self.last_name = clean(self.last_name);
        self.email = clean(self.email).map(|e| e.to_lowercase());
        self.phone = clean(self.phone);
        self.title = clean(self.title);
        let mut seen = std::collections::HashSet::new();
        self.tags = self
            .tags
            .into_iter()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty() && seen.insert(t.clone()))
            .collect();
        self
    }

    /// Field problems, if any.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        for (name, v) in [
            ("first_name", &self.first_name),
            ("last_name", &self.last_name),
            ("phone", &self.phone),
            ("title", &self.title),
        ] {
            if v.as_ref().is_some_and(|s| s.chars().count() > MAX_TEXT) {
                errors.push(FieldError::new(
                    name,
                    "too_long",
                    format!("must be at most {MAX_TEXT} characters"),
                ));
            }
        }
        if let Some(e) = &self.email
            && let Err(m) = crate::auth::users::validate_email(e)
        {
            errors.push(FieldError::new("email", "invalid_format", m));
        }
        if let Some(stage) = &self.lifecycle_stage
            && !LIFECYCLE_STAGES.contains(&stage.as_str())
        {
            errors.push(FieldError::new(
                "lifecycle_stage",
                "invalid_value",
                format!("must be one of {}", LIFECYCLE_STAGES.join(", ")),
            ));
        }
        if self.tags.len() > MAX_TAGS {
            errors.push(FieldError::new(
                "tags",
                "too_many",
                format!("at most {MAX_TAGS} tags"),
            ));
        }
        if self.tags.iter().any(|t| t.chars().count() > MAX_TAG) {
            errors.push(FieldError::new(
                "tags",
                "too_long",
                format!("each tag must be at most {MAX_TAG} characters"),
            ));
        }
        if self.custom.len() > MAX_CUSTOM_KEYS {
            errors.push(FieldError::new(
                "custom",
                "too_many_keys",
                format!("at most {MAX_CUSTOM_KEYS} keys"),
            ));
        }
        for (k, v) in &self.custom {
            let key_ok = k.len() <= 64
                && k.starts_with(|c: char| c.is_ascii_lowercase())
                && k.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !key_ok {
                errors.push(FieldError::new(
                    format!("custom.{k}"),
                    "invalid_key",
                    format!("keys must match {CUSTOM_KEY}"),
                ));
            }
            match v {
                Value::Array(_) | Value::Object(_) => errors.push(FieldError::new(
                    format!("custom.{k}"),
                    "not_scalar",
                    "values must be strings, numbers or booleans",
                )),
                Value::String(s) if s.chars().count() > MAX_CUSTOM_STRING => {
                    errors.push(FieldError::new(
                        format!("custom.{k}"),
                        "too_long",
                        format!("must be at most {MAX_CUSTOM_STRING} characters"),
                    ))
                }
                _ => {}
            }
        }
        errors
    }

    /// Names of fields whose value differs from `other` (for the audit trail).
    pub fn changed_fields(&self, other: &ContactValues) -> Vec<String> {
        let mut out = Vec::new();
        macro_rules! cmp {
            ($($f:ident),*) => { $( if self.$f != other.$f { out.push(stringify!($f).to_string()); } )* };
        }
        cmp!(
            first_name,
            last_name,
            email,
            phone,
            title,
            account_id,
            owner_id,
            lifecycle_stage,
            tags
        );
        let keys: std::collections::BTreeSet<&String> =
            self.custom.keys().chain(other.custom.keys()).collect();
        for k in keys {
            if self.custom.get(k) != other.custom.get(k) {
                out.push(format!("custom.{k}"));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lifecycle_stage_schema_lists_exactly_the_accepted_values() {
        // Read the values off the generated schema, so a variant added on one side only fails.
        let schema =
            serde_json::to_value(<LifecycleStage as utoipa::PartialSchema>::schema()).unwrap();
        assert_eq!(schema["enum"], json!(LIFECYCLE_STAGES), "{schema}");
    }

    #[test]
    fn patch_semantics() {
        let base = ContactValues::from_new(NewContact {
            first_name: Some(" Ada ".into()),
            email: Some("ADA@Example.com".into()),
            custom: Some(
                json!({"tier": "gold", "score": 3})
                    .as_object()
                    .unwrap()
                    .clone(),
            ),
            ..Default::default()
        });
        assert_eq!(base.first_name.as_deref(), Some("Ada"));
        assert_eq!(base.email.as_deref(), Some("ada@example.com"));
        let patch: ContactPatch = serde_json::from_value(
            json!({"first_name": null, "custom": {"tier": null, "x": true}}),
        )
        .unwrap();
        let after = base.clone().patched(patch);
        assert_eq!(after.first_name, None);
        assert_eq!(after.email.as_deref(), Some("ada@example.com"));
        assert_eq!(after.custom.get("tier"), None);
        assert_eq!(after.custom.get("x"), Some(&json!(true)));
        let changed = after.changed_fields(&base);
        assert_eq!(changed, vec!["first_name", "custom.tier", "custom.x"]);
    }

    #[test]
    fn validation() {
        let mut v = ContactValues::default();
        v.custom.insert("Bad".into(), json!(1));
        v.custom.insert("nested".into(), json!({"a": 1}));
        v.lifecycle_stage = Some("king".into());
        v.email = Some("nope".into());
        let fields: Vec<_> = v.validate().into_iter().map(|e| e.field).collect();
        assert!(fields.contains(&"custom.Bad".to_string()));
        assert!(fields.contains(&"custom.nested".to_string()));
        assert!(fields.contains(&"lifecycle_stage".to_string()));
        assert!(fields.contains(&"email".to_string()));
    }
}
