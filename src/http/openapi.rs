//! The OpenAPI 3.1 document and the Swagger UI at `/docs` (served from the
//! binary: it works with no internet access).
//!
//! Operations come from the route registry (`http::registry`); this module
//! adds what every operation shares, once: the bearer scheme, the answers any
//! authenticated, organization-scoped or body-carrying request can get (401,
//! 400 for the organization header or the body, 413, 503), and the response
//! headers (`X-Request-Id` everywhere, `Location` on 201, `Retry-After` on 429
//! and 503, `WWW-Authenticate` on 401, `ETag` on the 200 and 201 of a
//! versioned record). An operation that reads `If-None-Match` gets its 304,
//! one that reads `If-Match` its 412, and both the 400 of a malformed value.

use axum::Router;
use utoipa::openapi::{
    header::HeaderBuilder,
    security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme},
    ContentBuilder, OpenApi, Ref, RefOr, Response, ResponseBuilder, Server,
};
use utoipa_swagger_ui::{Config, SwaggerUi};

use crate::{http::problem, state::AppState};

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "minicrm",
        license(name = "Proprietary", identifier = "LicenseRef-Proprietary"),
        description = "A multi-tenant CRM whose rules live in PostgreSQL.\n\n\
            **Authentication.** `POST /api/v1/auth/register` or `POST /api/v1/auth/login` \
            returns an `access_token`; send it as `Authorization: Bearer <token>`. \
            Organization-scoped routes also take `X-Organization-Id` (your organizations: \
            `GET /api/v1/organizations/me`).\n\n\
            **Errors.** Every error is `application/problem+json` (RFC 9457) with a stable \
            `code`. A method a path does not accept is 405 `method_not_allowed`; an unknown \
            path is 404 `route_not_found`.",
    ),
    servers((url = "/", description = "This server")),
    tags(
        (name = "health", description = "Liveness, readiness and metrics, for operators"),
        (name = "auth", description = "Registration, login and the token lifecycle"),
        (name = "users", description = "The calling user"),
        (name = "organizations", description = "Organizations (tenants) and the caller's place in them"),
        (name = "members", description = "Who belongs to an organization, with which role; adding a member invites them"),
        (name = "invitations", description = "Invitations to join an organization: the organization's list and revocation, and the invitee's answer (accept or decline)"),
        (name = "contacts", description = "People and companies deals are made with"),
        (name = "pipelines", description = "An organization's pipelines and their stages: the steps its deals go through"),
        (name = "deals", description = "Deals, each in a stage of a pipeline"),
        (name = "tasks", description = "Things to do on a deal"),
        (name = "activities", description = "A deal's timeline: comments and what happened"),
        (name = "trash", description = "Deleted contacts, deals and tasks: restore them, or erase them for good (they are erased automatically after the retention)"),
        (name = "analytics", description = "Pipeline reports, computed in the database"),
        (name = "events", description = "The change feed: every committed change, in order, polled or live (SSE)"),
        (name = "webhooks", description = "Signed HTTP deliveries of the organization's events to its endpoints (owner or admin)"),
    ),
    components(schemas(problem::Problem, problem::FieldError)),
)]
pub struct ApiDoc;

const PROBLEM: &str = "application/problem+json";
const REQUEST_ID_HEADER: &str = "X-Request-Id";

fn problem_content() -> utoipa::openapi::Content {
    ContentBuilder::new()
        .schema(Some(Ref::from_schema_name("Problem")))
        .build()
}

fn header(
    description: &str,
    schema: utoipa::openapi::schema::Type,
) -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(utoipa::openapi::ObjectBuilder::new().schema_type(schema))
        .description(Some(description))
        .build()
}

fn request_id_header() -> utoipa::openapi::header::Header {
    header(
        "The request's id: the client's `X-Request-Id` when it is 1 to 64 characters of \
         `[A-Za-z0-9._-]`, otherwise a new UUID. It is on the server's log line too.",
        utoipa::openapi::schema::Type::String,
    )
}

/// A shared problem answer, referenced from the operations as `#/components/responses/<name>`.
fn shared(description: &str) -> ResponseBuilder {
    ResponseBuilder::new()
        .description(description)
        .content(PROBLEM, problem_content())
        .header(REQUEST_ID_HEADER, request_id_header())
}

fn retry_after() -> utoipa::openapi::header::Header {
    header(
        "Seconds to wait before trying again.",
        utoipa::openapi::schema::Type::Integer,
    )
}

/// The shared answers: (name, status, response).
fn shared_responses() -> Vec<(&'static str, &'static str, Response)> {
    vec![
        (
            "Unauthenticated",
            "401",
            shared(
                "No valid access token: `unauthenticated` (none sent) or `invalid_token` \
                (malformed, expired or forged)",
            )
            .header(
                "WWW-Authenticate",
                header("Always `Bearer`.", utoipa::openapi::schema::Type::String),
            )
            .build(),
        ),
        (
            "BodyTooLarge",
            "413",
            shared("The request body is over 64 KiB: `body_too_large`").build(),
        ),
        (
            "Unavailable",
            "503",
            shared(
                "The database is unavailable (`database_unavailable`), took too long \
                (`statement_timeout`, `request_timeout`) or the request conflicted with a \
                concurrent one (`transaction_conflict`); retry after `Retry-After` seconds",
            )
            .header("Retry-After", retry_after())
            .build(),
        ),
    ]
}

/// Operations limited per client address and per email (`App::limit_auth_address`, `App::limit_auth_email`):
/// every answer carries the `RateLimit-*` headers.
const RATE_LIMITED: [&str; 2] = ["auth_register", "auth_login"];
/// Operations whose success carries tokens: `Cache-Control: no-store`.
const CARRIES_TOKENS: [&str; 3] = ["auth_register", "auth_login", "auth_refresh"];

/// Adds what every operation shares (see the module comment).
pub fn finish(mut doc: OpenApi) -> OpenApi {
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .description(Some(
                    "An access token from `POST /api/v1/auth/login` or `POST /api/v1/auth/register` \
                     (`access_token`), valid for 15 minutes; renew it with `POST /api/v1/auth/refresh`.",
                ))
                .build(),
        ),
    );
    for (name, _, response) in shared_responses() {
        components
            .responses
            .insert(name.to_owned(), RefOr::T(response));
    }
    let statuses: Vec<(&str, &str)> = shared_responses()
        .into_iter()
        .map(|(name, status, _)| (name, status))
        .collect();
    for item in doc.paths.paths.values_mut() {
        for op in operations(item) {
            let authenticated = op.security.as_ref().is_some_and(|s| !s.is_empty());
            if !authenticated {
                // Said explicitly: this operation needs no credentials.
                op.security = Some(vec![SecurityRequirement::default()]);
            }
            let org_scoped = op
                .parameters
                .iter()
                .flatten()
                .any(|p| p.name == "X-Organization-Id");
            let has_body = op.request_body.is_some();
            let mut add = |status: &str, name: &str| {
                op.responses
                    .responses
                    .entry(status.to_owned())
                    .or_insert_with(|| {
                        RefOr::Ref(Ref::new(format!("#/components/responses/{name}")))
                    });
            };
            for (name, status) in &statuses {
                match *name {
                    "Unauthenticated" if authenticated => add(status, name),
                    "BodyTooLarge" if has_body => add(status, name),
                    "Unavailable" => add(status, name),
                    _ => {}
                }
            }
            let mut bad_request = Vec::new();
            let has_in = |place: utoipa::openapi::path::ParameterIn| {
                op.parameters
                    .iter()
                    .flatten()
                    .any(|p| p.parameter_in == place)
            };
            if has_in(utoipa::openapi::path::ParameterIn::Path) {
                bad_request.push("an id in the path is not a UUID (`invalid_path_parameter`)");
            }
            if has_in(utoipa::openapi::path::ParameterIn::Query) {
                bad_request.push(
                    "a query parameter is unknown or malformed (`invalid_query_parameter`, with \
                     `errors[].field`)",
                );
            }
            if org_scoped {
                bad_request.push(
                    "the `X-Organization-Id` header is missing (`organization_header_missing`) \
                     or not a UUID (`organization_header_invalid`)",
                );
            }
            let reads = |name: &str| op.parameters.iter().flatten().any(|p| p.name == name);
            let (if_match, if_none_match) = (reads("If-Match"), reads("If-None-Match"));
            if if_match {
                bad_request.push(
                    "`If-Match` is neither `*` nor a list of quoted entity tags (`invalid_if_match`)",
                );
            }
            if if_none_match {
                bad_request.push(
                    "`If-None-Match` is neither `*` nor a list of quoted entity tags \
                     (`invalid_if_none_match`)",
                );
            }
            if has_body {
                bad_request.push(
                    "the body is not JSON (`unsupported_content_type`, `malformed_json`) or a \
                     field is missing, unknown or of the wrong type (`validation_failed`, with \
                     `errors[].field`)",
                );
            }
            if !bad_request.is_empty() {
                let extra = bad_request.join("; or ");
                match op.responses.responses.get_mut("400") {
                    Some(RefOr::T(response)) => {
                        response.description = format!("{}; or {extra}", response.description);
                    }
                    _ => {
                        op.responses.responses.insert(
                            "400".to_owned(),
                            RefOr::T(shared(&capitalize(&extra)).build()),
                        );
                    }
                }
            }
            if org_scoped && !op.responses.responses.contains_key("404") {
                op.responses.responses.insert(
                    "404".to_owned(),
                    RefOr::T(
                        shared(
                            "The organization does not exist or the caller is not a member: \
                            `organization_not_found`",
                        )
                        .build(),
                    ),
                );
            }
            if if_none_match {
                op.responses.responses.insert(
                    "304".to_owned(),
                    RefOr::T(
                        ResponseBuilder::new()
                            .description(
                                "Not Modified: `If-None-Match` names the record's current \
                                 `ETag` (or is `*`); no body",
                            )
                            .header("ETag", etag_header())
                            .build(),
                    ),
                );
            }
            if if_match {
                op.responses.responses.insert(
                    "412".to_owned(),
                    RefOr::T(
                        shared(
                            "`If-Match` does not name the record's current version: \
                             `precondition_failed`; nothing changed (a missing record is 404)",
                        )
                        .build(),
                    ),
                );
            }
            let id = op.operation_id.clone().unwrap_or_default();
            let rate_limited = RATE_LIMITED.contains(&id.as_str());
            if rate_limited {
                op.responses.responses.insert(
                    "429".to_owned(),
                    RefOr::T(
                        shared(
                            "Too many attempts for this email or client address: `rate_limited`",
                        )
                        .build(),
                    ),
                );
            }
            for (status, response) in op.responses.responses.iter_mut() {
                let RefOr::T(response) = response else {
                    continue;
                };
                if rate_limited {
                    for (name, text) in [
                        ("RateLimit-Limit", "Attempts allowed per window (a minute)."),
                        ("RateLimit-Remaining", "Attempts left in this window."),
                        ("RateLimit-Reset", "Seconds until the window resets."),
                    ] {
                        response.headers.insert(
                            name.to_owned(),
                            header(text, utoipa::openapi::schema::Type::Integer),
                        );
                    }
                }
                if CARRIES_TOKENS.contains(&id.as_str()) && status.starts_with('2') {
                    response.headers.insert(
                        "Cache-Control".to_owned(),
                        header(
                            "`no-store`: the body holds credentials.",
                            utoipa::openapi::schema::Type::String,
                        ),
                    );
                }
                response
                    .headers
                    .entry(REQUEST_ID_HEADER.to_owned())
                    .or_insert_with(request_id_header);
                if (status == "200" || status == "201") && versioned(response) {
                    response
                        .headers
                        .entry("ETag".to_owned())
                        .or_insert_with(etag_header);
                }
                match status.as_str() {
                    "201" => {
                        response
                            .headers
                            .entry("Location".to_owned())
                            .or_insert_with(|| {
                                header(
                                    "The URL of the created resource.",
                                    utoipa::openapi::schema::Type::String,
                                )
                            });
                    }
                    "429" => {
                        response
                            .headers
                            .entry("Retry-After".to_owned())
                            .or_insert_with(retry_after);
                    }
                    _ => {}
                }
            }
        }
    }
    doc.servers = Some(vec![Server::new("/")]);
    doc
}

fn etag_header() -> utoipa::openapi::header::Header {
    header(
        "The record's version as a strong entity tag, `\"<version>\"`: send it back in \
         `If-Match` (writes) or `If-None-Match` (reads).",
        utoipa::openapi::schema::Type::String,
    )
}

/// Does this answer hold one record that carries a version (`etag::Versioned`)?
fn versioned(response: &Response) -> bool {
    response
        .content
        .get("application/json")
        .and_then(|c| c.schema.as_ref())
        .is_some_and(|schema| {
            matches!(schema, RefOr::Ref(r) if crate::http::etag::VERSIONED_SCHEMAS
                .iter()
                .any(|name| r.ref_location == format!("#/components/schemas/{name}")))
        })
}

fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

fn operations(
    item: &mut utoipa::openapi::PathItem,
) -> impl Iterator<Item = &mut utoipa::openapi::path::Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.options.as_mut(),
        item.head.as_mut(),
        item.patch.as_mut(),
        item.trace.as_mut(),
    ]
    .into_iter()
    .flatten()
}

/// `/openapi.json` and Swagger UI at `/docs`. The validator is off: Swagger UI
/// would otherwise send the document to validator.swagger.io.
pub fn docs(doc: OpenApi) -> Router<AppState> {
    SwaggerUi::new("/docs")
        .url("/openapi.json", doc)
        .config(
            Config::default()
                .validator_url("none")
                .persist_authorization(true),
        )
        .into()
}
