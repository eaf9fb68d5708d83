//! Tenancy probes generated from the OpenAPI document: every operation that
//! takes an id in its path, or a reference in its query or body, is aimed at
//! organization B's records by a user of organization A (the owner of A, so
//! that only tenancy can stop it). Each probe must answer exactly 404 (list
//! filters: an empty page), exactly as for an id that does not exist, and B's
//! data must be unchanged. Every organization-scoped operation is also sent
//! with `X-Organization-Id: B` (404 `organization_not_found`).
//!
//! The tables below say which of B's records each path parameter and each
//! reference field names. A new route, parameter or field that they do not
//! cover fails the test, so a new route cannot be forgotten.

use std::collections::BTreeMap;

use axum::http::Method;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::helpers::{id_of, invite, today_plus, Req, TestApp, TestResponse, TestUser};

/// The kinds of record an id can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Org,
    Contact,
    Deal,
    Task,
    /// A member's user id.
    Member,
    /// An invitation the organization made (to someone else than the caller).
    Invitation,
    /// A pipeline (the organization's default one).
    Pipeline,
    /// A deal in the trash.
    TrashedDeal,
    /// A webhook subscription.
    Webhook,
}

/// (path template, path parameter) → the kind of record it names.
const PATH_PARAMS: &[(&str, &str, Kind)] = &[
    ("/api/v1/organizations/{org_id}", "org_id", Kind::Org),
    (
        "/api/v1/organizations/{org_id}/members",
        "org_id",
        Kind::Org,
    ),
    (
        "/api/v1/organizations/{org_id}/members/{user_id}",
        "org_id",
        Kind::Org,
    ),
    (
        "/api/v1/organizations/{org_id}/members/{user_id}",
        "user_id",
        Kind::Member,
    ),
    (
        "/api/v1/organizations/{org_id}/invitations",
        "org_id",
        Kind::Org,
    ),
    (
        "/api/v1/organizations/{org_id}/invitations/{id}",
        "org_id",
        Kind::Org,
    ),
    (
        "/api/v1/organizations/{org_id}/invitations/{id}",
        "id",
        Kind::Invitation,
    ),
    ("/api/v1/invitations/{id}/accept", "id", Kind::Invitation),
    ("/api/v1/invitations/{id}/decline", "id", Kind::Invitation),
    ("/api/v1/contacts/{id}", "id", Kind::Contact),
    ("/api/v1/contacts/{id}/history", "id", Kind::Contact),
    ("/api/v1/deals/{id}", "id", Kind::Deal),
    ("/api/v1/deals/{id}/activities", "id", Kind::Deal),
    ("/api/v1/deals/{id}/stage-history", "id", Kind::Deal),
    ("/api/v1/deals/{id}/history", "id", Kind::Deal),
    ("/api/v1/tasks/{id}", "id", Kind::Task),
    ("/api/v1/tasks/{id}/history", "id", Kind::Task),
    ("/api/v1/pipelines/{id}", "id", Kind::Pipeline),
    ("/api/v1/pipelines/{id}/stages", "id", Kind::Pipeline),
    ("/api/v1/pipelines/{id}/stages/{key}", "id", Kind::Pipeline),
    ("/api/v1/trash/{type}/{id}", "id", Kind::TrashedDeal),
    ("/api/v1/trash/{type}/{id}/restore", "id", Kind::TrashedDeal),
    ("/api/v1/webhooks/{id}", "id", Kind::Webhook),
    ("/api/v1/webhooks/{id}/deliveries", "id", Kind::Webhook),
    ("/api/v1/webhooks/{id}/rotate-secret", "id", Kind::Webhook),
    ("/api/v1/webhooks/{id}/test", "id", Kind::Webhook),
];

/// Path parameters that name no record by themselves, with the value every
/// probe sends (a stage's key means something only in its pipeline, which
/// the pipeline id of the same path names and the probes aim at).
/// An external id names a record only in the organization of the request
/// (the probes aim the references of the body at B's records instead).
const FIXED_PATH_PARAMS: &[(&str, &str, &str)] = &[
    ("/api/v1/pipelines/{id}/stages/{key}", "key", "proposal"),
    (
        "/api/v1/contacts/by-external-id/{external_id}",
        "external_id",
        "probe-external-id",
    ),
    (
        "/api/v1/deals/by-external-id/{external_id}",
        "external_id",
        "probe-external-id",
    ),
    ("/api/v1/trash/{type}/{id}", "type", "deal"),
    ("/api/v1/trash/{type}/{id}/restore", "type", "deal"),
];

/// Body fields the document cannot mark required because only one case
/// needs them: an upsert that creates (each probe's external id is new).
/// The probes send them as if required, so that the reference probed is
/// what the request stumbles on.
const NEEDED_TO_CREATE: &[(&str, &str)] =
    &[("/api/v1/deals/by-external-id/{external_id}", "contact_id")];

fn fixed_path_value(template: &str, param: &str) -> Option<&'static str> {
    FIXED_PATH_PARAMS
        .iter()
        .find(|(t, p, _)| *t == template && *p == param)
        .map(|(_, _, v)| *v)
}

/// Body fields and query parameters that reference a record, by name.
const REFERENCE_FIELDS: &[(&str, Kind)] = &[
    ("contact_id", Kind::Contact),
    ("deal_id", Kind::Deal),
    ("owner_id", Kind::Member),
    ("pipeline_id", Kind::Pipeline),
    ("reassign_to", Kind::Member),
];

/// A body or query field that names a record (and so must be in the table).
/// An `external_id` is a key the request's own organization gives its
/// records, not a reference (the upserts take it in the path: see
/// FIXED_PATH_PARAMS).
fn is_reference(name: &str) -> bool {
    (name.ends_with("_id") && name != "external_id") || name == "reassign_to"
}

fn path_kind(template: &str, param: &str) -> Option<Kind> {
    PATH_PARAMS
        .iter()
        .find(|(t, p, _)| *t == template && *p == param)
        .map(|(_, _, k)| *k)
}

fn field_kind(name: &str) -> Option<Kind> {
    REFERENCE_FIELDS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, k)| *k)
}

/// One organization's records.
#[derive(Clone, Copy)]
struct Tenant {
    org: Uuid,
    contact: Uuid,
    deal: Uuid,
    task: Uuid,
    /// A member (role `member`) other than the owner.
    member: Uuid,
    /// A pending invitation of someone who is in neither organization.
    invitation: Uuid,
    pipeline: Uuid,
    trashed_deal: Uuid,
    webhook: Uuid,
}

impl Tenant {
    fn id(&self, kind: Kind) -> Uuid {
        match kind {
            Kind::Org => self.org,
            Kind::Contact => self.contact,
            Kind::Deal => self.deal,
            Kind::Task => self.task,
            Kind::Member => self.member,
            Kind::Invitation => self.invitation,
            Kind::Pipeline => self.pipeline,
            Kind::TrashedDeal => self.trashed_deal,
            Kind::Webhook => self.webhook,
        }
    }
}

/// Valid values for the non-reference body fields, chosen so that a request
/// that got through would change something (and the fingerprint would show it).
fn sample(field: &str, loner_email: &str) -> Option<Value> {
    Some(match field {
        "name" | "title" => json!("Probe"),
        "organization_name" => json!("Probe Inc"),
        "email" => json!(loner_email),
        "password" => json!("correct horse"),
        "refresh_token" => json!("not-a-token"),
        "phone" => json!("+1 555 0100"),
        "amount" => json!("123.00"),
        "currency" => json!("USD"),
        "status" => json!("in_progress"),
        "stage" => json!("proposal"),
        "due_date" => json!(today_plus(3)),
        "expected_close_date" => json!(today_plus(30)),
        "description" => json!("probe"),
        "is_done" => json!(true),
        "role" => json!("admin"),
        "type" => json!("comment"),
        "payload" => json!({"text": "probe"}),
        "key" => json!("probe"),
        "probability" => json!(50),
        "position" => json!(1),
        "stages" => json!([{"key": "probe", "name": "Probe", "probability": 50}]),
        // An IP literal that is public: no name to resolve, past the SSRF check.
        "url" => json!("https://8.8.8.8/probe"),
        "events" => json!(["deal.*"]),
        _ => return None,
    })
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Slot {
    Path(String),
    Query(String),
    Body(String),
}

impl Slot {
    fn name(&self) -> &str {
        match self {
            Slot::Path(n) | Slot::Query(n) | Slot::Body(n) => n,
        }
    }
}

/// One operation of the document, as far as the probes need it.
struct Operation {
    method: Method,
    path: String,
    org_header: bool,
    path_params: Vec<String>,
    /// Query parameters that reference a record.
    query_refs: Vec<String>,
    /// Body properties: (name, required); of each item, for a batch.
    body: Option<Vec<(String, bool)>>,
    /// A batch: the body is `{"items": [<one item of these properties>]}`.
    batch: bool,
    /// Whether its answer is a list page (a reference in its query is a filter).
    lists: bool,
    /// Whether its answer is a CSV export (a reference in its query is a
    /// filter: a file with no rows, only the header).
    exports: bool,
    /// A `text/csv` request body (an import): a file of one row that names no
    /// record is sent.
    csv_body: bool,
    /// Where the document disagrees with the path template.
    doc_issues: Vec<String>,
}

impl Operation {
    fn label(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    fn slots(&self) -> Vec<Slot> {
        let mut slots: Vec<Slot> = self
            .path_params
            .iter()
            .filter(|p| fixed_path_value(&self.path, p).is_none())
            .cloned()
            .map(Slot::Path)
            .collect();
        slots.extend(self.query_refs.iter().cloned().map(Slot::Query));
        if let Some(body) = &self.body {
            slots.extend(
                body.iter()
                    .filter(|(n, _)| is_reference(n))
                    .map(|(n, _)| Slot::Body(n.clone())),
            );
        }
        slots
    }

    fn kind(&self, slot: &Slot) -> Option<Kind> {
        match slot {
            Slot::Path(p) => path_kind(&self.path, p),
            Slot::Query(n) | Slot::Body(n) => field_kind(n),
        }
    }

    /// A list read that only filters by the reference (no path id). A
    /// reference in the query of another read (a report of one pipeline)
    /// names a record, like a path id.
    fn is_list_filter(&self, slot: &Slot) -> bool {
        matches!(slot, Slot::Query(_))
            && self.method == Method::GET
            && self.path_params.is_empty()
            && (self.lists || self.exports)
    }
}

/// Follows a local `$ref` into the document's components.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let pointer = r.strip_prefix('#').expect("a local $ref");
            resolve(
                doc,
                doc.pointer(pointer)
                    .unwrap_or_else(|| panic!("dangling $ref {r}")),
            )
        }
        None => schema,
    }
}

/// A batch's body (`{"items": [...]}`, nothing else): the schema of an item.
fn batch_item<'a>(doc: &'a Value, schema: &'a Value) -> Option<&'a Value> {
    let schema = resolve(doc, schema);
    let props = schema.get("properties")?.as_object()?;
    let items = resolve(doc, props.get("items")?);
    (props.len() == 1 && items["type"] == "array").then(|| &items["items"])
}

/// The properties of a request body schema: (name, required).
fn body_properties(doc: &Value, schema: &Value, out: &mut Vec<(String, bool)>) {
    let schema = resolve(doc, schema);
    if let Some(parts) = schema.get("allOf").and_then(Value::as_array) {
        for part in parts {
            body_properties(doc, part, out);
        }
    }
    for combinator in ["oneOf", "anyOf"] {
        assert!(
            schema.get(combinator).is_none(),
            "request body schema with {combinator}: teach the tenancy probes about it: {schema}"
        );
    }
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for name in props.keys() {
            out.push((name.clone(), required.contains(&name.as_str())));
        }
    }
}

fn operations(doc: &Value) -> Vec<Operation> {
    let mut ops = Vec::new();
    let paths = doc["paths"].as_object().expect("paths in the document");
    for (path, item) in paths {
        let shared: Vec<Value> = item
            .get("parameters")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for (method, op) in item.as_object().unwrap() {
            let method = match method.as_str() {
                "get" => Method::GET,
                "put" => Method::PUT,
                "post" => Method::POST,
                "delete" => Method::DELETE,
                "patch" => Method::PATCH,
                "options" => Method::OPTIONS,
                "head" => Method::HEAD,
                "trace" => Method::TRACE,
                _ => continue,
            };
            let mut params = shared.clone();
            params.extend(
                op.get("parameters")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
            );
            // Every `{name}` of the template is a path parameter, whatever the
            // document says about it (a mismatch is a documentation bug,
            // reported by `path_parameters_are_documented_as_path_parameters`).
            let path_params: Vec<String> = path
                .split('/')
                .filter_map(|piece| piece.strip_prefix('{')?.strip_suffix('}'))
                .map(str::to_owned)
                .collect();
            let mut query_refs = Vec::new();
            let mut org_header = false;
            let mut doc_issues = Vec::new();
            for p in &params {
                let p = resolve(doc, p);
                let name = p["name"].as_str().expect("a parameter name").to_owned();
                let placeholder = path_params.contains(&name);
                match p["in"].as_str() {
                    Some("header") => {
                        org_header |= name.eq_ignore_ascii_case("x-organization-id");
                    }
                    Some("path") if placeholder => {}
                    Some(other) if placeholder => doc_issues.push(format!(
                        "{method} {path}: {{{name}}} is documented as a {other} parameter, not a path parameter"
                    )),
                    // Not in the template, so a client can only send it in the
                    // query string, whatever the document says: probe it there.
                    location => {
                        if location != Some("query") {
                            doc_issues.push(format!(
                                "{method} {path}: {name:?} is documented as a {} parameter, but it is not in the path (the server reads it from the query string)",
                                location.unwrap_or("?")
                            ));
                        }
                        if is_reference(&name) {
                            query_refs.push(name);
                        }
                    }
                }
            }
            for name in &path_params {
                if !params
                    .iter()
                    .any(|p| resolve(doc, p)["name"] == name.as_str())
                {
                    doc_issues.push(format!("{method} {path}: {{{name}}} is not documented"));
                }
            }
            let mut batch = false;
            let csv_body = op.pointer("/requestBody/content/text~1csv").is_some();
            let body = op.get("requestBody").filter(|_| !csv_body).map(|rb| {
                let rb = resolve(doc, rb);
                let content = rb["content"].as_object().expect("request body content");
                let mut schema = content
                    .get("application/json")
                    .unwrap_or_else(|| {
                        panic!("{method} {path}: a request body that is not application/json: {rb}")
                    })
                    .get("schema")
                    .expect("a request body schema");
                if let Some(item) = batch_item(doc, schema) {
                    (batch, schema) = (true, item);
                }
                let mut props = Vec::new();
                body_properties(doc, schema, &mut props);
                for (name, required) in &mut props {
                    *required |= NEEDED_TO_CREATE.contains(&(path.as_str(), name.as_str()));
                }
                props
            });
            let answer = op
                .pointer("/responses/200/content/application~1json/schema")
                .map(|schema| resolve(doc, schema));
            let lists = answer.is_some_and(|a| a.pointer("/properties/next_cursor").is_some());
            let exports = op.pointer("/responses/200/content/text~1csv").is_some();
            ops.push(Operation {
                method,
                path: path.clone(),
                org_header,
                path_params,
                query_refs,
                body,
                batch,
                lists,
                exports,
                csv_body,
                doc_issues,
            });
        }
    }
    ops
}

/// Where a probe points.
enum Aim<'a> {
    /// Everything in A except this one slot, which names `id`.
    One(&'a Slot, Uuid),
    /// Everything in B, header included.
    AllB,
    /// Everything in A (nothing probed).
    AllA,
}

struct World {
    a: Tenant,
    b: Tenant,
    caller: TestUser,
    loner_email: String,
}

struct Probe {
    method: Method,
    uri: String,
    org: Option<Uuid>,
    body: Option<Value>,
    csv: Option<&'static str>,
}

impl World {
    fn target(&self, op: &Operation, aim: &Aim, slot: &Slot) -> Option<Uuid> {
        let kind = op.kind(slot).expect("a covered slot");
        match aim {
            Aim::One(probed, id) if *probed == slot => Some(*id),
            Aim::AllB => Some(self.b.id(kind)),
            Aim::One(..) | Aim::AllA => Some(self.a.id(kind)),
        }
    }

    fn build(&self, op: &Operation, aim: &Aim) -> Probe {
        let mut uri = op.path.clone();
        for p in &op.path_params {
            let value = match fixed_path_value(&op.path, p) {
                Some(fixed) => fixed.to_owned(),
                None => self
                    .target(op, aim, &Slot::Path(p.clone()))
                    .unwrap()
                    .to_string(),
            };
            uri = uri.replace(&format!("{{{p}}}"), &value);
        }
        // Query references are sent only when probed (or all into B).
        let query: Vec<String> = op
            .query_refs
            .iter()
            .filter(|n| match aim {
                Aim::One(slot, _) => **slot == Slot::Query((*n).clone()),
                Aim::AllB => true,
                Aim::AllA => false,
            })
            .map(|n| {
                let id = self.target(op, aim, &Slot::Query(n.clone())).unwrap();
                format!("{n}={id}")
            })
            .collect();
        if !query.is_empty() {
            uri = format!("{uri}?{}", query.join("&"));
        }
        let body = op.body.as_ref().map(|props| {
            let mut body = Map::new();
            for (name, required) in props {
                if is_reference(name) {
                    let slot = Slot::Body(name.clone());
                    let probed = match aim {
                        Aim::One(s, _) => **s == slot,
                        Aim::AllB => true,
                        Aim::AllA => false,
                    };
                    if *required || probed {
                        let id = self.target(op, aim, &slot).unwrap();
                        body.insert(name.clone(), json!(id));
                    }
                } else if let Some(value) = sample(name, &self.loner_email) {
                    body.insert(name.clone(), value);
                }
            }
            match op.batch {
                true => json!({ "items": [body] }),
                false => Value::Object(body),
            }
        });
        let org = op.org_header.then_some(match aim {
            Aim::AllB => self.b.org,
            Aim::One(..) | Aim::AllA => self.a.org,
        });
        Probe {
            method: op.method.clone(),
            uri,
            org,
            body,
            csv: op.csv_body.then_some("name\r\nProbe\r\n"),
        }
    }
}

impl Probe {
    async fn send(&self, caller: &TestUser) -> TestResponse {
        let caller = match self.org {
            Some(org) => caller.in_org(org),
            None => caller.no_org(),
        };
        let req = caller.req(self.method.clone(), &self.uri);
        match (&self.body, self.csv) {
            (Some(body), _) => req.json(body.clone()).await,
            (None, Some(csv)) => req.raw("text/csv", csv).await,
            (None, None) => req.await,
        }
    }

    /// The request with `token` (if any) and `org` as X-Organization-Id (if
    /// any), whatever the probe's own organization.
    fn with(&self, app: &TestApp, token: Option<&str>, org: Option<&str>) -> Req {
        let mut req = app.req(self.method.clone(), &self.uri);
        if let Some(token) = token {
            req = req.token(token);
        }
        if let Some(org) = org {
            req = req.header("X-Organization-Id", org);
        }
        match (&self.body, self.csv) {
            (Some(body), _) => req.json(body.clone()),
            (None, Some(csv)) => req.raw("text/csv", csv),
            (None, None) => req,
        }
    }

    fn describe(&self) -> String {
        format!(
            "{} {} [X-Organization-Id: {}] body {}",
            self.method,
            self.uri,
            self.org.map_or("-".into(), |o| o.to_string()),
            self.body.as_ref().map_or("-".into(), Value::to_string)
        )
    }
}

/// A fingerprint of everything an organization holds, read as the superuser.
async fn fingerprint(app: &TestApp, org: Uuid) -> BTreeMap<String, String> {
    let tables: Vec<String> = app
        .column(
            "SELECT table_name::text FROM information_schema.columns
              WHERE table_schema = 'crm' AND column_name = 'organization_id'
              ORDER BY 1",
            &[],
        )
        .await;
    assert!(
        tables.len() >= 6,
        "expected the tenant tables of crm, found {tables:?}"
    );
    let mut out = BTreeMap::new();
    let mut queries: Vec<(String, String)> = tables
        .iter()
        .map(|t| {
            (
                t.clone(),
                format!("SELECT count(*)::text || ':' || coalesce(md5(string_agg(t::text, ',' ORDER BY t::text)), '')
                           FROM crm.{t} t WHERE t.organization_id = $1"),
            )
        })
        .collect();
    queries.push((
        "organizations".into(),
        "SELECT count(*)::text || ':' || coalesce(md5(string_agg(t::text, ',' ORDER BY t::text)), '')
           FROM crm.organizations t WHERE t.id = $1"
            .into(),
    ));
    queries.push((
        "users of its members".into(),
        "SELECT count(*)::text || ':' || coalesce(md5(string_agg(t::text, ',' ORDER BY t::text)), '')
           FROM crm.users t
          WHERE t.id IN (SELECT user_id FROM crm.organization_members WHERE organization_id = $1)"
            .into(),
    ));
    for (name, sql) in queries {
        out.insert(name, app.value(&sql, &[&org]).await);
    }
    out
}

async fn tenant(app: &TestApp, owner: &TestUser, member: &TestUser, name: &str) -> Tenant {
    let org = owner.org_id;
    let member = member.in_org(org);
    let contact = member.contact(&format!("{name} contact")).await;
    let deal = member
        .deal(contact, &format!("{name} deal"), "500.00")
        .await;
    let task = member.task(deal, &format!("{name} task"), 2).await;
    member.comment(deal, &format!("{name} note")).await;
    let trashed_deal = member
        .deal(contact, &format!("{name} trashed deal"), "50.00")
        .await;
    member
        .task(trashed_deal, &format!("{name} trashed task"), 2)
        .await;
    member
        .delete(&format!("/api/v1/deals/{trashed_deal}"))
        .await
        .no_content();
    let invitation = id_of(&invite(owner, &format!("{name}-invitee@example.com"), "member").await);
    let pipeline = app
        .value(
            "SELECT id FROM crm.pipelines WHERE organization_id = $1 ORDER BY position LIMIT 1",
            &[&org],
        )
        .await;
    let webhook = id_of(
        &owner
            .create(
                "/api/v1/webhooks",
                json!({"url": format!("https://8.8.4.4/{name}"), "events": ["deal.*"]}),
            )
            .await,
    );
    Tenant {
        org,
        contact,
        deal,
        task,
        member: member.id,
        invitation,
        pipeline,
        trashed_deal,
        webhook,
    }
}

/// Organizations A and B with their records, A's owner as the caller, and a
/// user who belongs to neither.
async fn world(app: &TestApp) -> (World, TestUser) {
    let a_owner = app.user("probe-a-owner").await;
    let a_member = app.member_of(&a_owner, "probe-a-member", "member").await;
    let b_owner = app.user("probe-b-owner").await;
    let b_member = app.member_of(&b_owner, "probe-b-member", "member").await;
    let loner = app.user("probe-loner").await;
    // A's records belong to its owner; Kind::Member names A's other member.
    let mut a = tenant(app, &a_owner, &a_owner, "A").await;
    a.member = a_member.id;
    let world = World {
        a,
        b: tenant(app, &b_owner, &b_member, "B").await,
        caller: a_owner,
        loner_email: loner.email.clone(),
    };
    (world, loner)
}

fn document() -> Value {
    serde_json::to_value(minicrm::http::openapi()).unwrap()
}

/// The probes take path parameters from the templates; the document must
/// describe them as path parameters too (clients are generated from it).
#[test]
fn path_parameters_are_documented_as_path_parameters() {
    let doc = document();
    let issues: Vec<String> = operations(&doc)
        .into_iter()
        .flat_map(|op| op.doc_issues)
        .collect();
    assert!(
        issues.is_empty(),
        "the OpenAPI document misdescribes path parameters:\n  {}",
        issues.join("\n  ")
    );
}

#[tokio::test]
async fn no_operation_reaches_another_organizations_records() {
    let doc = document();
    let ops = operations(&doc);
    assert!(
        ops.len() >= 30,
        "only {} operations in the document",
        ops.len()
    );

    // Coverage first: everything that can name a record must be in the tables,
    // and every body must be buildable.
    let mut uncovered = Vec::new();
    for op in &ops {
        for slot in op.slots() {
            if op.kind(&slot).is_none() {
                uncovered.push(format!(
                    "{}: {slot:?} is not in PATH_PARAMS / REFERENCE_FIELDS",
                    op.label()
                ));
            }
        }
        for (name, required) in op.body.iter().flatten() {
            if *required && !is_reference(name) && sample(name, "x@example.com").is_none() {
                uncovered.push(format!(
                    "{}: required body field {name:?} has no sample value",
                    op.label()
                ));
            }
        }
    }
    assert!(
        uncovered.is_empty(),
        "the tenancy probe tables do not cover:\n  {}",
        uncovered.join("\n  ")
    );
    // And the tables name nothing that is not in the document (a stale entry
    // would hide a renamed route).
    for (template, param, _) in PATH_PARAMS {
        assert!(
            ops.iter()
                .any(|op| op.path == *template && op.path_params.iter().any(|p| p == param)),
            "PATH_PARAMS names {template} {{{param}}}, which the document does not have"
        );
    }
    for (template, param, _) in FIXED_PATH_PARAMS {
        assert!(
            ops.iter()
                .any(|op| op.path == *template && op.path_params.iter().any(|p| p == param)),
            "FIXED_PATH_PARAMS names {template} {{{param}}}, which the document does not have"
        );
    }

    let app = TestApp::spawn().await;
    let (world, _) = world(&app).await;

    let before_b = fingerprint(&app, world.b.org).await;
    let before_a = fingerprint(&app, world.a.org).await;

    let mut failures = Vec::new();
    let mut report = Vec::new();
    let mut probes = 0;
    let mut aimed = Vec::new();
    let mut as_b = Vec::new();
    for op in &ops {
        let slots = op.slots();
        for slot in &slots {
            let kind = op.kind(slot).unwrap();
            aimed.push(kind);
            let into_b = world.build(op, &Aim::One(slot, world.b.id(kind)));
            let random = world.build(op, &Aim::One(slot, Uuid::new_v4()));
            let got = into_b.send(&world.caller).await;
            let baseline = random.send(&world.caller).await;
            probes += 1;
            let code = got.body["code"].as_str().unwrap_or("").to_owned();
            report.push(format!(
                "{} {} → {} {}",
                op.label(),
                slot.name(),
                got.status.as_u16(),
                code
            ));
            let problem = if op.is_list_filter(slot) && op.exports {
                let empty = got.status == 200
                    && got
                        .body
                        .as_str()
                        .is_some_and(|csv| csv.matches("\r\n").count() == 1);
                (!empty || got.body != baseline.body).then(|| {
                    format!(
                        "expected a file with only the header like for an unknown id ({}), got {} {}",
                        baseline.body, got.status, got.body
                    )
                })
            } else if op.is_list_filter(slot) {
                let empty = got.status == 200
                    && got.body["total"] == 0
                    && got.body["items"].as_array().is_some_and(Vec::is_empty);
                (!empty || got.body != baseline.body).then(|| {
                    format!(
                        "expected an empty page like for an unknown id ({}), got {} {}",
                        baseline.body, got.status, got.body
                    )
                })
            } else if got.status != 404 || code.is_empty() || code == "route_not_found" {
                Some(format!("expected 404, got {} {}", got.status, got.body))
            } else if (baseline.status, &baseline.body["code"]) != (got.status, &got.body["code"]) {
                Some(format!(
                    "answers {} {} for B's record but {} {} for an unknown id: it reveals that the record exists",
                    got.status, code, baseline.status, baseline.body["code"]
                ))
            } else {
                None
            };
            if let Some(problem) = problem {
                failures.push(format!("{}: {problem}", into_b.describe()));
            }
        }
        let org_path = op
            .path_params
            .iter()
            .any(|p| path_kind(&op.path, p) == Some(Kind::Org));
        if op.org_header || org_path {
            let probe = world.build(op, &Aim::AllB);
            let got = probe.send(&world.caller).await;
            probes += 1;
            as_b.push(op.label());
            report.push(format!(
                "{} as B → {} {}",
                op.label(),
                got.status.as_u16(),
                got.body["code"].as_str().unwrap_or("")
            ));
            if (got.status.as_u16(), got.body["code"].as_str())
                != (404, Some("organization_not_found"))
            {
                failures.push(format!(
                    "{}: expected 404 organization_not_found, got {} {}",
                    probe.describe(),
                    got.status,
                    got.body
                ));
            }
        }
    }
    println!("tenancy probes ({probes}):\n  {}", report.join("\n  "));

    let after_b = fingerprint(&app, world.b.org).await;
    let after_a = fingerprint(&app, world.a.org).await;
    assert!(
        failures.is_empty(),
        "{} tenancy probe(s) failed:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
    assert_eq!(before_b, after_b, "organization B's data changed");
    assert_eq!(before_a, after_a, "organization A's data changed");
    // Every kind of B's record was aimed at, and every operation of an
    // organization's own surface was sent as B, whether or not the document
    // says it takes X-Organization-Id (the loop above trusts the document).
    for kind in [
        Kind::Org,
        Kind::Contact,
        Kind::Deal,
        Kind::Task,
        Kind::Member,
        Kind::Invitation,
        Kind::Pipeline,
        Kind::Webhook,
    ] {
        assert!(aimed.contains(&kind), "no probe named B's {kind:?}");
    }
    let never_as_b: Vec<String> = ops
        .iter()
        .filter(|op| organization_scoped(&op.path) && !as_b.contains(&op.label()))
        .map(Operation::label)
        .collect();
    assert!(
        never_as_b.is_empty(),
        "never sent as organization B: {never_as_b:?}"
    );
    assert!(probes >= 40, "only {probes} probes ran");
}

/// Whether a path belongs to one organization (rather than to the caller or
/// to nobody): anything under /api/v1 but auth, the caller's own user and
/// invitations, and creating or listing one's organizations.
fn organization_scoped(path: &str) -> bool {
    let unscoped = ["/api/v1/auth/", "/api/v1/users/", "/api/v1/invitations"];
    path.starts_with("/api/v1/")
        && !unscoped.iter().any(|p| path.starts_with(p))
        && !["/api/v1/organizations", "/api/v1/organizations/me"].contains(&path)
}

/// What a read answers for an id that names nothing.
fn not_found_code(kind: Kind) -> &'static str {
    match kind {
        Kind::Org => "organization_not_found",
        Kind::Contact => "contact_not_found",
        Kind::Deal => "deal_not_found",
        Kind::Task => "task_not_found",
        Kind::Member => "member_not_found",
        Kind::Invitation => "invitation_not_found",
        Kind::Pipeline => "pipeline_not_found",
        Kind::TrashedDeal => "deal_not_found",
        Kind::Webhook => "webhook_not_found",
    }
}

/// Every operation of an organization checks, in this order, the token (401),
/// the X-Organization-Id header (400) and membership (404), and refuses
/// malformed ids in its path (400); reads answer 404 for unknown ids. None of
/// it changes the organization's data.
#[tokio::test]
async fn every_operation_checks_token_header_membership_and_path_ids() {
    let doc = document();
    let ops = operations(&doc);
    let undocumented: Vec<String> = ops
        .iter()
        .filter(|op| {
            let under_org = op.path.starts_with("/api/v1/organizations/{org_id}");
            organization_scoped(&op.path) && !under_org && !op.org_header
        })
        .map(Operation::label)
        .collect();
    assert!(
        undocumented.is_empty(),
        "organization-scoped operations that do not document X-Organization-Id: {undocumented:?}"
    );

    let app = TestApp::spawn().await;
    let (world, eve) = world(&app).await;
    let (a, owner) = (world.a, &world.caller);
    let before = fingerprint(&app, a.org).await;

    let (org, unknown) = (a.org.to_string(), Uuid::new_v4().to_string());
    let (org, unknown) = (org.as_str(), unknown.as_str());
    let (token, eves) = (owner.access_token.as_str(), eve.access_token.as_str());
    let cases = [
        ("no token", None, Some(org), 401, "unauthenticated"),
        ("no token, no header", None, None, 401, "unauthenticated"),
        (
            "a token that is no JWT",
            Some("garbage"),
            Some(org),
            401,
            "invalid_token",
        ),
        (
            "no header",
            Some(token),
            None,
            400,
            "organization_header_missing",
        ),
        (
            "header acme",
            Some(token),
            Some("acme"),
            400,
            "organization_header_invalid",
        ),
        (
            "header 12345",
            Some(token),
            Some("12345"),
            400,
            "organization_header_invalid",
        ),
        (
            "header org-1",
            Some(token),
            Some("org-1"),
            400,
            "organization_header_invalid",
        ),
        (
            "an unknown organization",
            Some(token),
            Some(unknown),
            404,
            "organization_not_found",
        ),
        (
            "a non-member",
            Some(eves),
            Some(org),
            404,
            "organization_not_found",
        ),
    ];
    let mut failures = Vec::new();
    let mut checks = 0;
    let mut check = |what: String, res: TestResponse, status: u16, code: &str| {
        checks += 1;
        let got = (res.status.as_u16(), res.body["code"].as_str());
        let mut wrong = Vec::new();
        if got != (status, Some(code)) {
            wrong.push(format!(
                "expected {status} {code}, got {} {}",
                res.status, res.body
            ));
        } else if res.headers["content-type"] != "application/problem+json" {
            wrong.push(format!("content-type {:?}", res.headers["content-type"]));
        }
        if status == 401
            && res
                .headers
                .get("www-authenticate")
                .is_none_or(|v| v != "Bearer")
        {
            wrong.push("no WWW-Authenticate: Bearer".into());
        }
        if code == "organization_header_missing"
            && res.body["errors"][0]["field"] != "X-Organization-Id"
        {
            wrong.push(format!(
                "the error names {}",
                res.body["errors"][0]["field"]
            ));
        }
        failures.extend(wrong.into_iter().map(|w| format!("{what}: {w}")));
    };
    for op in &ops {
        let probe = world.build(op, &Aim::AllA);
        if op.org_header {
            for (what, token, header, status, code) in cases {
                let res = probe.with(&app, token, header).await;
                check(
                    format!("{} with {what}", probe.describe()),
                    res,
                    status,
                    code,
                );
            }
        }
        let header = op.org_header.then_some(org);
        for param in &op.path_params {
            if fixed_path_value(&op.path, param).is_some() {
                continue;
            }
            let slot = Slot::Path(param.clone());
            let marker = Uuid::new_v4();
            for malformed in ["not-a-uuid", "1234", "42"] {
                let mut bad = world.build(op, &Aim::One(&slot, marker));
                bad.uri = bad.uri.replace(&marker.to_string(), malformed);
                let res = bad.with(&app, Some(token), header).await;
                check(bad.describe(), res, 400, "invalid_path_parameter");
            }
            if op.method == Method::GET {
                let kind = op.kind(&slot).expect("a covered path parameter");
                let unknown = world.build(op, &Aim::One(&slot, Uuid::new_v4()));
                let res = unknown.with(&app, Some(token), header).await;
                check(unknown.describe(), res, 404, not_found_code(kind));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checks} checks failed:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
    assert!(checks >= 150, "only {checks} checks ran");
    assert_eq!(
        fingerprint(&app, a.org).await,
        before,
        "the organization's data changed"
    );
}
