//! GET /openapi.json (OpenAPI 3.1, generated from the handlers) and GET /docs
//! (Swagger UI, served from the binary: it works with no internet access).

use axum::Router;
use utoipa::{
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    Modify, OpenApi,
};
use utoipa_swagger_ui::SwaggerUi;

use crate::{
    http::{problem, routes},
    state::AppState,
};

#[derive(OpenApi)]
#[openapi(
    info(title = "minicrm", description = "A multi-tenant CRM whose rules live in PostgreSQL. \
        Every error is `application/problem+json` with a stable `code`."),
    paths(
        routes::health::healthz, routes::health::readyz, routes::health::metrics,
        routes::auth::register, routes::auth::login, routes::auth::refresh, routes::auth::logout,
        routes::users::me,
        routes::organizations::mine, routes::organizations::create, routes::organizations::get,
        routes::organizations::rename, routes::organizations::delete,
        routes::organizations::members, routes::organizations::add_member,
        routes::organizations::change_role, routes::organizations::remove_member,
        routes::contacts::list, routes::contacts::create, routes::contacts::get,
        routes::contacts::update, routes::contacts::delete,
        routes::deals::list, routes::deals::create, routes::deals::get,
        routes::deals::update, routes::deals::delete,
        routes::tasks::list, routes::tasks::create, routes::tasks::get,
        routes::tasks::update, routes::tasks::delete,
        routes::activities::list, routes::activities::create,
        routes::analytics::summary, routes::analytics::funnel,
    ),
    components(schemas(problem::Problem, problem::FieldError)),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

pub fn routes() -> Router<AppState> {
    SwaggerUi::new("/docs")
        .url("/openapi.json", ApiDoc::openapi())
        .into()
}
