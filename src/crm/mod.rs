//! The CRM domain. Each resource is a folder: `model` (records, inputs, validation), `repo`
//! (queries, inside a tenant transaction), `handlers` (HTTP). Shared list mechanics live in
//! `list`.

pub mod contacts;
pub mod list;
