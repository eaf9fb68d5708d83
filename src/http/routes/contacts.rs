//! /contacts: list, create, get, partial update, delete.

use axum::{
    extract::{DefaultBodyLimit, State},
    http::StatusCode,
    response::Response,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_postgres::types::Json;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::http::routes::{events::Event, history::HistoryQuery};
use crate::http::routes::{list_query, ListPage};
use crate::{
    http::csv::{read_import, CsvBody, CsvFile, IMPORT_BODY_LIMIT},
    http::cursor::Fingerprint,
    http::etag::{IfMatch, IfNoneMatch, Versioned},
    http::extract::{ApiJson, ApiPath, ApiQuery, Created, JsonText, OrgActor},
    http::list::Paging,
    http::problem::{AppResult, Problem},
    http::routes::bulk::{batch_created, upserted, Batch, BatchCreated},
    http::routes::fields::{present, present_fields},
    state::AppState,
};

#[derive(Serialize, ToSchema)]
pub struct Contact {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub owner_id: Uuid,
    pub name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    /// The key another system knows this contact by (unique in the
    /// organization among contacts); null when none was given.
    #[schema(required = true, min_length = 1, max_length = 255)]
    pub external_id: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
    /// 1 on creation, +1 on every change; the `ETag` header is `"<version>"`.
    #[schema(minimum = 1)]
    pub version: i32,
}

list_query! {
    pub struct ContactQuery {
        /// Words, any case: a contact matches when each begins a word of its
        /// name or email (`ada lov` finds Ada Lovelace, `lace` does not).
        /// Punctuation is searched literally (`%`, `_`, `o'b`, `ada@`). At most
        /// 16 words.
        pub search: Option<String>,
        /// Only contacts of this owner (members: only themselves).
        pub owner_id: Option<Uuid>,
        /// The contact with this external id (at most one).
        #[param(min_length = 1, max_length = 255)]
        pub external_id: Option<String>,
    }
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewContact {
    /// Not blank; surrounding white space is trimmed.
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    #[schema(
        max_length = 254,
        pattern = r"^[^@\s]+@[^@\s]+$",
        example = "ada@example.com"
    )]
    pub email: Option<String>,
    #[schema(min_length = 1, max_length = 50)]
    pub phone: Option<String>,
    /// Defaults to the caller; another member needs manager or above.
    pub owner_id: Option<Uuid>,
    /// The key another system knows this contact by, kept exactly as given;
    /// unique among the organization's contacts (409 `contacts_external_id_taken`).
    #[schema(min_length = 1, max_length = 255, example = "hubspot-1234")]
    pub external_id: Option<String>,
}

/// Only the fields present change; `email`, `phone` and `external_id` may be
/// set to null.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactPatch {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 200)]
    pub name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 254, pattern = r"^[^@\s]+@[^@\s]+$")]
    pub email: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 50)]
    pub phone: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Uuid>)]
    pub owner_id: Option<Option<Uuid>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 255)]
    pub external_id: Option<Option<String>>,
}

/// The body of an upsert: a create body without `external_id` (the path
/// gives it). Creating needs `name`; updating changes only the fields
/// present (`email` and `phone` may be set to null).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactUpsert {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 200)]
    pub name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 254, pattern = r"^[^@\s]+@[^@\s]+$")]
    pub email: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 50)]
    pub phone: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Uuid>)]
    pub owner_id: Option<Option<Uuid>>,
}

/// List contacts.
#[utoipa::path(get, operation_id = "contacts_list",
    path = "/contacts", tag = "contacts",
    security(("bearer" = [])), params(crate::http::routes::OrgHeader, ContactQuery),
    responses(
        (status = 200, description = "Newest first", body = ListPage<Contact>),
        (status = 400, description = "Bad query value (a `search` of more than 16 words, too) or organization header, `page_too_deep`, `invalid_cursor`, `cursor_with_page`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "A member filtering by another member's owner_id: `role_forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Organization not found", body = Problem, content_type = "application/problem+json"),
        (status = 414, description = "Request target over 8 KiB (`uri_too_long`): e.g. a very long `cursor` or `search`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(app): State<AppState>,
    OrgActor(ctx): OrgActor,
    ApiQuery(q): ApiQuery<ContactQuery>,
) -> AppResult<JsonText> {
    let query = Fingerprint::of("contacts")
        .with_opt("search", q.search.as_deref())
        .with_opt("owner_id", q.owner_id)
        .with_opt("external_id", q.external_id.as_deref())
        .done();
    let paging = Paging::new(&app, ctx, query, q.page, q.page_size, q.cursor.as_deref())?;
    let json = app
        .db
        .call(
            ctx,
            "api.contacts_list",
            &[
                ("p_page", &paging.page),
                ("p_page_size", &paging.page_size),
                ("p_search", &q.search),
                ("p_owner_id", &q.owner_id),
                ("p_after_created_at", &paging.after_key::<DateTime<Utc>>()?),
                ("p_after_id", &paging.after_id()),
                ("p_external_id", &q.external_id),
            ],
        )
        .await?;
    paging.respond(&app, json)
}

/// Create a contact.
#[utoipa::path(post, operation_id = "contacts_create",
    path = "/contacts", tag = "contacts",
    security(("bearer" = [])), params(crate::http::routes::OrgHeader),
    request_body = NewContact,
    responses(
        (status = 201, description = "Created", body = Contact),
        (status = 400, description = "Validation failed", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "A member creating a contact for another member: `role_forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Organization not found, or owner_id is not a member (`contacts_owner_id_not_member`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Another contact has this external_id: `contacts_external_id_taken`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(app): State<AppState>,
    OrgActor(ctx): OrgActor,
    ApiJson(c): ApiJson<NewContact>,
) -> AppResult<Created<Versioned>> {
    let json = app
        .db
        .call(
            ctx,
            "api.contacts_create",
            &[
                ("p_name", &c.name),
                ("p_email", &c.email),
                ("p_phone", &c.phone),
                ("p_owner_id", &c.owner_id),
                ("p_external_id", &c.external_id),
            ],
        )
        .await?;
    Versioned::created(json, "/api/v1/contacts", "id")
}

/// Get a contact.
#[utoipa::path(get, operation_id = "contacts_get",
    path = "/contacts/{id}", tag = "contacts",
    security(("bearer" = [])), params(crate::http::routes::OrgHeader, crate::http::etag::IfNoneMatchHeader, ("id" = Uuid, Path)),
    responses(
        (status = 200, description = "The contact", body = Contact),
        (status = 404, description = "Not found in this organization: `contact_not_found`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(app): State<AppState>,
    OrgActor(ctx): OrgActor,
    ApiPath(id): ApiPath<Uuid>,
    condition: IfNoneMatch,
) -> AppResult<Response> {
    Ok(
        Versioned::call(&app.db, ctx, "api.contacts_get", &[("p_id", &id)])
            .await?
            .unless(&condition),
    )
}

/// Update a contact (only the fields given).
#[utoipa::path(patch, operation_id = "contacts_update",
    path = "/contacts/{id}", tag = "contacts",
    security(("bearer" = [])), params(crate::http::routes::OrgHeader, crate::http::etag::IfMatchHeader, ("id" = Uuid, Path)),
    request_body = ContactPatch,
    responses(
        (status = 200, description = "Updated", body = Contact),
        (status = 400, description = "Validation failed", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "A member changing another member's contact or reassigning it: `role_forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not found in this organization, or owner_id not a member", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Another contact has this external_id: `contacts_external_id_taken`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update(
    State(app): State<AppState>,
    OrgActor(ctx): OrgActor,
    ApiPath(id): ApiPath<Uuid>,
    IfMatch(if_match): IfMatch,
    ApiJson(p): ApiJson<ContactPatch>,
) -> AppResult<Versioned> {
    let fields = present_fields([
        ("name", p.name.is_some()),
        ("email", p.email.is_some()),
        ("phone", p.phone.is_some()),
        ("owner_id", p.owner_id.is_some()),
        ("external_id", p.external_id.is_some()),
    ]);
    let json = app
        .db
        .call(
            ctx,
            "api.contacts_update",
            &[
                ("p_id", &id),
                ("p_fields", &fields),
                ("p_name", &p.name.flatten()),
                ("p_email", &p.email.flatten()),
                ("p_phone", &p.phone.flatten()),
                ("p_owner_id", &p.owner_id.flatten()),
                ("p_if_match", &if_match),
                ("p_external_id", &p.external_id.flatten()),
            ],
        )
        .await?;
    Versioned::from_db(json)
}

/// Create or update the contact with this external id.
#[utoipa::path(put, operation_id = "contacts_upsert",
    path = "/contacts/by-external-id/{external_id}", tag = "contacts",
    security(("bearer" = [])),
    params(crate::http::routes::OrgHeader, crate::http::etag::IfMatchHeader,
        ("external_id" = String, Path, min_length = 1, max_length = 255,
         description = "The contact's external id (percent-encoded), 1 to 255 characters")),
    request_body = ContactUpsert,
    responses(
        (status = 412, description = "`If-Match` names another version, or a version of a record that does not exist: `precondition_failed`", body = Problem, content_type = "application/problem+json"),
        (status = 200, description = "Updated: only the fields given changed (as PATCH)", body = Contact),
        (status = 201, description = "Created, with this external id (as POST)", body = Contact),
        (status = 400, description = "Validation failed; `name` missing when creating (`validation_failed`, field `name`); an external id over 255 characters: `external_id_invalid`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "A member changing another member's contact, or creating or reassigning one for another member: `role_forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Organization not found, or owner_id not a member", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The external id is held by a contact this request cannot update: `contacts_external_id_taken`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn upsert(
    State(app): State<AppState>,
    OrgActor(ctx): OrgActor,
    ApiPath(external_id): ApiPath<String>,
    IfMatch(if_match): IfMatch,
    ApiJson(p): ApiJson<ContactUpsert>,
) -> AppResult<Response> {
    let fields = present_fields([
        ("name", p.name.is_some()),
        ("email", p.email.is_some()),
        ("phone", p.phone.is_some()),
        ("owner_id", p.owner_id.is_some()),
    ]);
    let json = app
        .db
        .call(
            ctx,
            "api.contacts_upsert",
            &[
                ("p_external_id", &external_id),
                ("p_if_match", &if_match),
                ("p_fields", &fields),
                ("p_name", &p.name.flatten()),
                ("p_email", &p.email.flatten()),
                ("p_phone", &p.phone.flatten()),
                ("p_owner_id", &p.owner_id.flatten()),
            ],
        )
        .await?;
    upserted(json, "/api/v1/contacts")
}

/// Create up to 100 contacts, all or nothing.
#[utoipa::path(post, operation_id = "contacts_batch",
    path = "/contacts/batch", tag = "contacts",
    security(("bearer" = [])), params(crate::http::routes::OrgHeader),
    request_body = Batch<NewContact>,
    responses(
        (status = 201, description = "Every item created, in order", body = BatchCreated<Contact>,
         headers(("Location" = String, description = "The collection the contacts were created in"))),
        (status = 400, description = "No items or more than 100 (`batch_size_invalid`), or an item failed validation: its error, `errors[].field` prefixed with its place (`items[3].email`); nothing was created", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "An item a member may not create (for another member): `role_forbidden`, field `items[n].owner_id`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Organization not found, or an item's owner_id is not a member", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "An item's external_id is taken (by another contact or an earlier item): `contacts_external_id_taken`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn batch(
    State(app): State<AppState>,
    OrgActor(ctx): OrgActor,
    ApiJson(b): ApiJson<Batch<NewContact>>,
) -> AppResult<Created<JsonText>> {
    let items = b.to_json()?;
    let json = app
        .db
        .call(ctx, "api.contacts_batch", &[("p_items", &Json(&items))])
        .await?;
    batch_created(json, "/api/v1/contacts")
}

/// Delete a contact.
#[utoipa::path(delete, operation_id = "contacts_delete",
    path = "/contacts/{id}", tag = "contacts",
    security(("bearer" = [])), params(crate::http::routes::OrgHeader, crate::http::etag::IfMatchHeader, ("id" = Uuid, Path)),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "A member deleting another member's contact: `role_forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not found in this organization", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The contact has deals (R2): `contact_has_deals`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete(
    State(app): State<AppState>,
    OrgActor(ctx): OrgActor,
    ApiPath(id): ApiPath<Uuid>,
    IfMatch(if_match): IfMatch,
) -> AppResult<StatusCode> {
    app.db
        .call(
            ctx,
            "api.contacts_delete",
            &[("p_id", &id), ("p_if_match", &if_match)],
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The list's filters, for an export (no paging: every match).
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ContactExportQuery {
    /// As the list's `search`.
    pub search: Option<String>,
    /// As the list's `owner_id` (members: only themselves).
    pub owner_id: Option<Uuid>,
    /// The contact with this external id.
    #[param(min_length = 1, max_length = 255)]
    pub external_id: Option<String>,
}

/// Export contacts as CSV.
#[utoipa::path(get, operation_id = "contacts_export",
    path = "/contacts/export", tag = "contacts",
    security(("bearer" = [])), params(crate::http::routes::OrgHeader, ContactExportQuery),
    responses(
        (status = 200, description = "Every contact the filters match, newest first, as CSV (RFC 4180, UTF-8, CRLF): a header row, then one row per contact with the JSON fields in the JSON's order and `owner_email` (the owner's address) last; null is an empty field. Streamed from one snapshot.",
            content_type = "text/csv", body = String,
            headers(("Content-Disposition" = String, description = "`attachment; filename=\"contacts.csv\"`"))),
        (status = 400, description = "Bad query value (a `search` of more than 16 words, a paging parameter, ...) or organization header", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "A member filtering by another member's owner_id: `role_forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Organization not found", body = Problem, content_type = "application/problem+json"),
        (status = 414, description = "Request target over 8 KiB (`uri_too_long`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn export(
    State(app): State<AppState>,
    OrgActor(ctx): OrgActor,
    ApiQuery(q): ApiQuery<ContactExportQuery>,
) -> AppResult<CsvFile> {
    let export = app
        .db
        .export(
            ctx,
            "api.contacts_export",
            &[
                ("p_search", &q.search),
                ("p_owner_id", &q.owner_id),
                ("p_external_id", &q.external_id),
            ],
        )
        .await?;
    Ok(CsvFile {
        filename: "contacts.csv",
        export,
    })
}

/// The import's path (it has its own request time limit: `http::TimeLimit`).
pub const IMPORT_PATH: &str = "/api/v1/contacts/import";

/// The columns an import writes, in the staging table's order (V19,
/// `app.contact_import_row`).
const IMPORT_COLUMNS: [&str; 5] = ["name", "email", "phone", "external_id", "owner_email"];
/// The other columns of an export: accepted and ignored, so that an export
/// can be imported as it is.
const EXPORT_ONLY: [&str; 6] = [
    "id",
    "organization_id",
    "owner_id",
    "created_at",
    "updated_at",
    "version",
];

/// A CSV file, as the import's body is documented (`CsvBody` reads it):
/// bytes sent as they are, so that generated clients send a file unchanged.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)] // documentation only
pub struct CsvUpload(String);

/// The answer of an import.
#[derive(Serialize, ToSchema)]
pub struct ImportResult {
    /// Contacts created.
    pub created: i64,
    /// Contacts updated (rows whose `external_id` a contact has).
    pub updated: i64,
}

/// Import contacts from CSV.
#[utoipa::path(post, operation_id = "contacts_import",
    path = "/contacts/import", tag = "contacts",
    security(("bearer" = [])), params(crate::http::routes::OrgHeader),
    request_body(content = CsvUpload, content_type = "text/csv",
        description = "RFC 4180 CSV, UTF-8 (a leading byte order mark is skipped), at most 50,000 rows and 10 MiB. The header row names any of `name`, `email`, `phone`, `external_id`, `owner_email` (an export's other columns are accepted and ignored). An empty field is no value. A row creates a contact owned by the member whose address is `owner_email` (default: the caller), or, when its `external_id` is a contact's, updates that contact's columns present in the file."),
    responses(
        (status = 200, description = "Every row was written", body = ImportResult),
        (status = 400, description = "Nothing was written. The file: `unsupported_content_type`, `csv_empty`, `csv_no_rows`, `csv_invalid_encoding`, `csv_bad_quoting`, `csv_unknown_column`, `csv_duplicate_column`, `csv_field_count`, `csv_too_many_rows`; or its rows: `import_invalid`, with one `errors[]` entry per bad row (up to 100), `field` `row <n>: <column>` (rows numbered as a spreadsheet shows them, the header being row 1), `message` `<code>: <text>`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Organization not found", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Over 10 MiB: `body_too_large`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn import(
    State(app): State<AppState>,
    OrgActor(ctx): OrgActor,
    CsvBody(body): CsvBody,
) -> AppResult<JsonText> {
    let file = read_import(&body, &IMPORT_COLUMNS, &EXPORT_ONLY)?;
    drop(body);
    let json = app
        .db
        .import(
            ctx,
            "api.contacts_import_begin",
            "COPY pg_temp.contacts_import (row_no, name, email, phone, external_id, owner_email) FROM STDIN",
            file.copy,
            "api.contacts_import",
            &[("p_columns", &file.columns)],
        )
        .await?;
    JsonText::from_db(json)
}

/// A contact's history: its events, newest first: who changed what, when,
/// and from which value (SPEC §13).
#[utoipa::path(get, operation_id = "contacts_history",
    path = "/contacts/{id}/history", tag = "contacts",
    security(("bearer" = [])), params(crate::http::routes::OrgHeader, ("id" = Uuid, Path, description = "The contact"), HistoryQuery),
    responses(
        (status = 200, description = "The contact's events, newest first", body = ListPage<Event>),
        (status = 400, description = "Malformed id, query or header, `page_too_deep`, `invalid_cursor`, `cursor_with_page`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Contact not found in this organization: `contact_not_found` (one in the trash still has its history)", body = Problem, content_type = "application/problem+json"),
        (status = 414, description = "Request target over 8 KiB (`uri_too_long`): e.g. a very long `cursor`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn history(
    State(app): State<AppState>,
    OrgActor(ctx): OrgActor,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> AppResult<JsonText> {
    crate::http::routes::history::page(&app, ctx, "api.contacts_history", id, q).await
}

/// The routes of this module, each registered with its OpenAPI operation.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(crate::http::idempotency::idempotent(routes!(list, create)))
        .routes(routes!(export))
        .merge(
            OpenApiRouter::new()
                .routes(crate::http::idempotency::idempotent_with_limit(
                    routes!(import),
                    IMPORT_BODY_LIMIT,
                ))
                .layer(DefaultBodyLimit::max(IMPORT_BODY_LIMIT)),
        )
        .routes(routes!(get, update, delete))
        .routes(routes!(upsert))
        .routes(crate::http::idempotency::idempotent(routes!(batch)))
        .routes(routes!(history))
}
