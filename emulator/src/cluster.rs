//! The emulated API server's state and its request handling, free of any networking so that
//! each convention can be read (and tested) in one place.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde_json::{json, Map, Value};

use crate::controller;
use crate::faults::{FaultAction, Faults};
use crate::protobuf;
use crate::rbac::{self, Attributes, UserInfo};
use crate::resources::{self, ResourceType, VIRTUAL};
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::{ApiError, ApiResult};
use crate::store::{self, Store};
use crate::tokens::{self, ServiceAccountIdentity, TokenAuthority};
use crate::watch::{self, Watch};

/// A request as the handler needs it, already read off the wire.
pub struct ApiRequest {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub content_type: String,
    /// The `Accept` header: `...;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1` asks a list
    /// for metadata only, as the API server answers it.
    pub accept: String,
    pub bearer: Option<String>,
    pub body: Vec<u8>,
}

impl ApiRequest {
    fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Who a request asks to act as (`Impersonate-User`, `Impersonate-Group` headers), as
/// `kubectl --as=... --as-group=...` sends it.
#[derive(Debug, Clone, Default)]
pub struct Impersonation {
    pub user: Option<String>,
    pub groups: Vec<String>,
}

/// One served request, for tests that count calls.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    pub verb: String,
    pub resource: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub user: String,
    pub code: u16,
}

enum Caller {
    Admin,
    /// Anyone else: a service account's token, or an impersonated user; RBAC decides.
    User(UserInfo),
}

impl Caller {
    fn username(&self) -> String {
        match self {
            Caller::Admin => "kubernetes-admin".to_string(),
            Caller::User(user) => user.name.clone(),
        }
    }
}

enum Route {
    Version,
    CoreVersions,
    GroupList,
    Group(String),
    /// `/openapi/v3` and one group-version's document under it (`api/v1`, `apis/apps/v1`).
    OpenApiV3(Option<String>),
    ResourceList(String, String),
    Resource {
        rt: &'static ResourceType,
        namespace: Option<String>,
        name: Option<String>,
        subresource: Option<String>,
    },
}

fn route(path: &str) -> ApiResult<Route> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let not_found = || ApiError::not_found("path", path);
    let (group, version, rest) = match segments.as_slice() {
        ["version"] => return Ok(Route::Version),
        ["api"] => return Ok(Route::CoreVersions),
        ["apis"] => return Ok(Route::GroupList),
        ["apis", group] => return Ok(Route::Group(group.to_string())),
        ["openapi", "v3"] => return Ok(Route::OpenApiV3(None)),
        ["openapi", "v3", gv @ ..] => return Ok(Route::OpenApiV3(Some(gv.join("/")))),
        ["api", version] => return Ok(Route::ResourceList(String::new(), version.to_string())),
        ["apis", group, version] => {
            return Ok(Route::ResourceList(group.to_string(), version.to_string()))
        }
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Err(not_found()),
    };
    let find = |plural: &str| ResourceType::find(group, version, plural).ok_or_else(not_found);
    let owned = |s: &&str| Some(s.to_string());
    let (rt, namespace, name, subresource) = match rest {
        ["namespaces", ns, plural] => (find(plural)?, owned(ns), None, None),
        ["namespaces", ns, plural, name] => (find(plural)?, owned(ns), owned(name), None),
        ["namespaces", ns, plural, name, sub] => {
            (find(plural)?, owned(ns), owned(name), owned(sub))
        }
        [plural] => (find(plural)?, None, None, None),
        [plural, name] => (find(plural)?, None, owned(name), None),
        _ => return Err(not_found()),
    };
    if namespace.is_some() && !rt.namespaced {
        return Err(not_found());
    }
    if name.is_some() && namespace.is_none() && rt.namespaced {
        return Err(not_found());
    }
    Ok(Route::Resource {
        rt,
        namespace,
        name,
        subresource,
    })
}

/// The whole emulated cluster.
pub struct Cluster {
    pub store: Store,
    pub tokens: TokenAuthority,
    pub faults: Faults,
    pub log: Vec<RequestRecord>,
    /// Requests with no credentials at all act as the admin, as on the API server's old
    /// insecure port: client-go (kubectl) never sends a bearer token over plain http.
    /// A wrong or expired token is still refused with 401. Tests of anonymous refusal
    /// turn this off.
    pub anonymous_is_admin: bool,
    admin_token: String,
}

/// What the handler decided; the server turns it into bytes on the wire.
pub struct Outcome {
    pub code: u16,
    pub body: Value,
    /// A fault that the server must act out around this response.
    pub fault: Option<FaultAction>,
    /// An accepted watch: the server streams its events instead of `body`.
    pub watch: Option<Watch>,
}

pub fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

pub fn now_unix() -> i64 {
    jiff::Timestamp::now().as_second()
}

impl Cluster {
    pub fn new() -> Self {
        let mut cluster = Cluster {
            store: Store::default(),
            tokens: TokenAuthority::new(),
            faults: Faults::default(),
            log: Vec::new(),
            anonymous_is_admin: true,
            admin_token: format!("admin-{}", tokens::random_id()),
        };
        for ns in ["default", "kube-system"] {
            cluster
                .seed(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}));
        }
        cluster.seed(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "system:auth-delegator"},
            "rules": [
                {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]},
                {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"], "verbs": ["create"]},
            ],
        }));
        cluster
    }

    fn seed(&mut self, object: Value) {
        self.create_object(object).expect("seed objects are valid");
    }

    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// Creates an object as the cluster admin would, bypassing the HTTP layer (for fixtures).
    pub fn create_object(&mut self, object: Value) -> ApiResult<Value> {
        let rt = type_of(&object)?;
        let namespace = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string();
        self.create(rt, &namespace, object)
    }

    /// Issues a service-account token with any lifetime (negative gives an expired one).
    pub fn issue_token(
        &self,
        namespace: &str,
        name: &str,
        audiences: &[String],
        lifetime_seconds: i64,
    ) -> ApiResult<String> {
        let uid = self
            .store
            .service_account_uid(namespace, name)
            .ok_or_else(|| ApiError::not_found("serviceaccounts", name))?;
        Ok(self.tokens.issue(
            namespace,
            name,
            uid,
            audiences,
            lifetime_seconds,
            now_unix(),
        ))
    }

    fn authenticate(&self, bearer: Option<&str>) -> Option<Caller> {
        let Some(token) = bearer else {
            return self.anonymous_is_admin.then_some(Caller::Admin);
        };
        if token == self.admin_token {
            return Some(Caller::Admin);
        }
        self.review(token)
            .map(|sa| Caller::User(UserInfo::from(&sa)))
    }

    /// Acts as the impersonated user when the caller may impersonate: the admin always, others
    /// when RBAC grants `impersonate` on that user (or service account) and each group.
    fn impersonate(&self, caller: Caller, wanted: &Impersonation) -> ApiResult<Caller> {
        let Some(target) = wanted.user.as_deref() else {
            if !wanted.groups.is_empty() {
                return Err(ApiError::bad_request(
                    "requested impersonation of groups without impersonating a user",
                ));
            }
            return Ok(caller);
        };
        let service_account = target
            .strip_prefix("system:serviceaccount:")
            .and_then(|rest| rest.split_once(':'));
        if let Caller::User(user) = &caller {
            let (resource, namespace, name) = match service_account {
                Some((ns, name)) => ("serviceaccounts", Some(ns), name),
                None => ("users", None, target),
            };
            let wants = std::iter::once((resource, namespace, name))
                .chain(wanted.groups.iter().map(|g| ("groups", None, g.as_str())));
            for (resource, namespace, name) in wants {
                let attrs = Attributes {
                    verb: "impersonate",
                    group: "",
                    resource: resource.to_string(),
                    namespace,
                    name: Some(name),
                };
                if !rbac::allows(&self.store, user, &attrs) {
                    return Err(ApiError::forbidden_impersonation(&user.name, name));
                }
            }
        }
        let mut user = match service_account {
            Some((ns, name)) if wanted.groups.is_empty() => UserInfo::service_account(ns, name),
            _ => UserInfo {
                name: target.to_string(),
                groups: wanted.groups.clone(),
            },
        };
        if !user.groups.iter().any(|g| g == "system:authenticated") {
            user.groups.push("system:authenticated".to_string());
        }
        if user.groups.iter().any(|g| g == "system:masters") {
            return Ok(Caller::Admin);
        }
        Ok(Caller::User(user))
    }

    /// A token is good while it verifies and its service account still exists with that uid.
    fn review(&self, token: &str) -> Option<ServiceAccountIdentity> {
        let identity = self.tokens.verify(token, now_unix())?;
        let live_uid = self
            .store
            .service_account_uid(&identity.namespace, &identity.name)?;
        (live_uid == identity.uid).then_some(identity)
    }

    pub fn handle(&mut self, request: &ApiRequest) -> Outcome {
        self.handle_as(request, &Impersonation::default())
    }

    /// Handles a request that may ask to act as someone else.
    pub fn handle_as(&mut self, request: &ApiRequest, impersonation: &Impersonation) -> Outcome {
        let mut record = RequestRecord {
            verb: String::new(),
            resource: String::new(),
            namespace: None,
            name: None,
            user: String::new(),
            code: 0,
        };
        let mut watch = None;
        let (result, fault) = match self.dispatch(request, impersonation, &mut record, &mut watch) {
            Ok((code, body, fault)) => (Ok((code, body)), fault),
            Err(error) => (Err(error), None),
        };
        let (code, body) = match result {
            Ok(ok) => ok,
            Err(error) => (error.code, error.body()),
        };
        record.code = code;
        self.log.push(record);
        Outcome {
            code,
            body,
            fault,
            watch,
        }
    }

    fn dispatch(
        &mut self,
        request: &ApiRequest,
        impersonation: &Impersonation,
        record: &mut RequestRecord,
        watch: &mut Option<Watch>,
    ) -> ApiResult<(u16, Value, Option<FaultAction>)> {
        let route = route(&request.path)?;
        if let Route::Version = route {
            return Ok((200, resources::version(), None));
        }
        let caller = self
            .authenticate(request.bearer.as_deref())
            .ok_or_else(ApiError::unauthorized)?;
        let caller = self.impersonate(caller, impersonation)?;
        record.user = caller.username();
        let (rt, namespace, name, subresource) = match route {
            Route::Version => unreachable!("answered above"),
            Route::CoreVersions => return Ok((200, resources::core_versions(), None)),
            Route::GroupList => return Ok((200, resources::group_list(), None)),
            Route::OpenApiV3(None) => return Ok((200, resources::openapi_v3_root(), None)),
            Route::OpenApiV3(Some(gv)) => {
                return resources::openapi_v3(&gv)
                    .map(|d| (200, d, None))
                    .ok_or_else(|| ApiError::not_found("openapi", &gv))
            }
            Route::Group(g) => {
                return resources::group(&g)
                    .map(|d| (200, d, None))
                    .ok_or_else(|| ApiError::not_found("group", &g))
            }
            Route::ResourceList(g, v) => {
                return resources::resource_list(&g, &v)
                    .map(|d| (200, d, None))
                    .ok_or_else(|| ApiError::not_found("groupversion", &format!("{g}/{v}")))
            }
            Route::Resource {
                rt,
                namespace,
                name,
                subresource,
            } => (rt, namespace, name, subresource),
        };
        let verb = match (request.method.as_str(), &name) {
            ("GET", None)
                if request
                    .param("watch")
                    .is_some_and(|w| w == "true" || w == "1") =>
            {
                "watch"
            }
            ("GET", None) => "list",
            ("GET", Some(_)) => "get",
            ("POST", _) => "create",
            ("PUT", Some(_)) => "update",
            ("PATCH", Some(_)) => "patch",
            ("DELETE", Some(_)) => "delete",
            (method, _) => return Err(ApiError::method_not_allowed(method)),
        };
        let resource = match &subresource {
            Some(sub) => format!("{}/{sub}", rt.plural),
            None => rt.plural.to_string(),
        };
        *record = RequestRecord {
            verb: verb.to_string(),
            resource: resource.clone(),
            namespace: namespace.clone(),
            name: name.clone(),
            user: record.user.clone(),
            code: 0,
        };
        // Everyone may ask who they are and what they may do (the API server's
        // system:basic-user role).
        let self_review = matches!(rt.plural, "selfsubjectreviews" | "selfsubjectaccessreviews");
        if let (Caller::User(user), false) = (&caller, self_review) {
            let attrs = Attributes {
                verb,
                group: rt.group,
                resource: resource.clone(),
                namespace: namespace.as_deref(),
                name: name.as_deref(),
            };
            if !rbac::allows(&self.store, user, &attrs) {
                return Err(ApiError::forbidden(
                    &user.name,
                    verb,
                    &resource,
                    namespace.as_deref(),
                ));
            }
        }
        let fault = self.faults.take(verb, &resource);
        match fault {
            Some(FaultAction::Status(code)) => return Err(ApiError::injected(code)),
            Some(FaultAction::Hang | FaultAction::DropBefore) => {
                return Ok((0, Value::Null, fault))
            }
            _ => {}
        }
        let namespace = namespace.unwrap_or_default();
        let strict = request.param("fieldValidation") == Some("Strict");
        let body = || {
            let body = request_body(request)?;
            check_fields(rt, &body, strict)?;
            Ok::<_, ApiError>(body)
        };
        let (code, object) = match (verb, name.as_deref(), subresource.as_deref()) {
            ("watch", None, None) => {
                *watch = Some(self.watch(rt, &namespace, request)?);
                (200, Value::Null)
            }
            ("list", None, _) => (200, self.list(rt, &namespace, request)?),
            ("get", Some(name), None) => (200, self.store.get(rt, &namespace, name)?.clone()),
            ("create", None, None) if rt.plural == "tokenreviews" => {
                (201, self.token_review(body()?))
            }
            ("create", None, None) if rt.plural == "selfsubjectreviews" => (201, who_am_i(&caller)),
            ("create", None, None) if self_review => (201, self.access_review(&caller, body()?)?),
            ("create", None, None) => (201, self.create(rt, &namespace, body()?)?),
            ("create", Some(name), Some("token")) if rt.plural == "serviceaccounts" => {
                (201, self.token_request(&namespace, name, body()?)?)
            }
            ("update", Some(name), None) => (200, self.replace(rt, &namespace, name, body()?)?),
            ("patch", Some(name), None) => (
                200,
                self.patch(
                    rt,
                    &namespace,
                    name,
                    &request.content_type,
                    &request.body,
                    strict,
                )?,
            ),
            ("delete", Some(name), None) => {
                let options = match request.body.is_empty() {
                    true => Value::Null,
                    false => body()?,
                };
                (200, self.delete(rt, &namespace, name, &options)?)
            }
            _ => {
                return Err(ApiError::not_found(
                    &resource,
                    name.as_deref().unwrap_or(""),
                ))
            }
        };
        Ok((code, object, fault))
    }

    fn list(&self, rt: &ResourceType, namespace: &str, request: &ApiRequest) -> ApiResult<Value> {
        let labels = LabelSelector::parse(request.param("labelSelector").unwrap_or(""))?;
        let fields = FieldSelector::parse(request.param("fieldSelector").unwrap_or(""))?;
        let limit = match request.param("limit") {
            Some(l) => l
                .parse::<usize>()
                .map_err(|_| ApiError::bad_request(format!("invalid limit {l:?}")))?,
            None => 0,
        };
        let after = match request.param("continue").filter(|c| !c.is_empty()) {
            Some(token) => Some(decode_continue(token)?),
            None => None,
        };
        let scope = (!namespace.is_empty()).then_some(namespace);
        let after = after
            .as_ref()
            .map(|(ns, name)| (ns.as_str(), name.as_str()));
        let mut matching = self.store.iter(rt, scope, after).filter(|(_, object)| {
            labels.matches(object["metadata"].get("labels")) && fields.matches(object)
        });
        let mut items = Vec::new();
        let mut last_key = None;
        for (key, object) in matching.by_ref() {
            last_key = Some(key);
            items.push(strip_type(object.clone()));
            if items.len() == limit {
                break; // before taking another: the check below must still see it
            }
        }
        let more = limit > 0 && items.len() == limit && matching.next().is_some();
        let mut metadata = json!({"resourceVersion": self.store.revision().to_string()});
        if let (true, Some((ns, name))) = (more, last_key) {
            metadata["continue"] = Value::String(URL_SAFE_NO_PAD.encode(format!("{ns}/{name}")));
        }
        if request.accept.contains("as=PartialObjectMetadataList") {
            let items: Vec<Value> = items
                .into_iter()
                .map(|item| {
                    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                           "metadata": item["metadata"]})
                })
                .collect();
            return Ok(json!({
                "kind": "PartialObjectMetadataList",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": metadata,
                "items": items,
            }));
        }
        Ok(json!({
            "kind": format!("{}List", rt.kind),
            "apiVersion": rt.api_version(),
            "metadata": metadata,
            "items": items,
        }))
    }

    /// Starts a watch: from `resourceVersion` when given, else with the current objects as
    /// ADDED events first, as the API server does.
    fn watch(
        &self,
        rt: &'static ResourceType,
        namespace: &str,
        request: &ApiRequest,
    ) -> ApiResult<Watch> {
        let labels = LabelSelector::parse(request.param("labelSelector").unwrap_or(""))?;
        let fields = FieldSelector::parse(request.param("fieldSelector").unwrap_or(""))?;
        let timeout = match request.param("timeoutSeconds") {
            Some(t) => std::time::Duration::from_secs(
                t.parse()
                    .map_err(|_| ApiError::bad_request(format!("invalid timeoutSeconds {t:?}")))?,
            ),
            None => watch::DEFAULT_TIMEOUT,
        };
        let send_initial = request.param("sendInitialEvents") == Some("true");
        let scope = (!namespace.is_empty()).then_some(namespace);
        let (since, initial) = match request.param("resourceVersion").filter(|rv| *rv != "0") {
            Some(rv) if !rv.is_empty() && !send_initial => {
                let since = rv.parse::<u64>().map_err(|_| {
                    ApiError::bad_request(format!("invalid resourceVersion {rv:?}"))
                })?;
                (since, Vec::new())
            }
            _ => {
                let current = self
                    .store
                    .iter(rt, scope, None)
                    .map(|(_, object)| object)
                    .filter(|o| labels.matches(o["metadata"].get("labels")) && fields.matches(o))
                    .cloned()
                    .collect();
                (self.store.revision(), current)
            }
        };
        Ok(Watch {
            rt,
            namespace: scope.map(str::to_string),
            labels,
            fields,
            since,
            initial,
            initial_bookmark: send_initial && request.param("allowWatchBookmarks") == Some("true"),
            timeout,
            changes: self.store.subscribe(),
        })
    }

    fn create(
        &mut self,
        rt: &'static ResourceType,
        namespace: &str,
        mut object: Value,
    ) -> ApiResult<Value> {
        if VIRTUAL.contains(&rt.plural) {
            return Err(ApiError::method_not_allowed("POST"));
        }
        if !object["metadata"].is_object() {
            object["metadata"] = json!({});
        }
        let metadata = &mut object["metadata"];
        if metadata["name"].as_str().unwrap_or("").is_empty() {
            match metadata["generateName"].as_str() {
                Some(prefix) => {
                    metadata["name"] =
                        Value::String(format!("{prefix}{}", &tokens::random_id()[..5]))
                }
                None => {
                    return Err(ApiError::invalid(
                        rt.kind,
                        "",
                        "metadata.name: Required value: name or generateName is required",
                    ))
                }
            }
        }
        self.check_scope(rt, namespace, &mut object)?;
        let mut object = normalize(rt, object)?;
        if rt.plural == "deployments" {
            controller::reconcile_deployment(&mut object, None);
        }
        self.store
            .create(rt, namespace, object, tokens::random_id(), now_rfc3339())
    }

    fn replace(
        &mut self,
        rt: &'static ResourceType,
        namespace: &str,
        name: &str,
        mut object: Value,
    ) -> ApiResult<Value> {
        if store::name_of(&object) != name {
            return Err(ApiError::bad_request(
                "the name of the object does not match the name on the URL",
            ));
        }
        self.check_scope(rt, namespace, &mut object)?;
        let mut object = normalize(rt, object)?;
        if rt.plural == "deployments" {
            let previous = self.store.get(rt, namespace, name)?;
            controller::reconcile_deployment(&mut object, Some(previous));
        }
        self.store.update(rt, namespace, object)
    }

    /// Namespaced objects need their namespace to exist and must agree with the URL.
    fn check_scope(&self, rt: &ResourceType, namespace: &str, object: &mut Value) -> ApiResult<()> {
        let name = store::name_of(object).to_string();
        if !valid_name(&name) {
            return Err(ApiError::invalid(rt.kind, &name, format!("{} \"{name}\" is invalid: metadata.name: Invalid value: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'", rt.kind)));
        }
        if !rt.namespaced {
            return Ok(());
        }
        match object["metadata"]["namespace"].as_str() {
            Some(ns) if !ns.is_empty() && ns != namespace => {
                return Err(ApiError::bad_request("the namespace of the provided object does not match the namespace sent on the request"))
            }
            _ => object["metadata"]["namespace"] = Value::String(namespace.to_string()),
        }
        let namespaces = ResourceType::find("", "v1", "namespaces").expect("registered");
        if !self.store.contains(namespaces, "", namespace) {
            return Err(ApiError::not_found("namespaces", namespace));
        }
        Ok(())
    }

    fn patch(
        &mut self,
        rt: &'static ResourceType,
        namespace: &str,
        name: &str,
        content_type: &str,
        patch: &[u8],
        strict: bool,
    ) -> ApiResult<Value> {
        let mut patched = self.store.get(rt, namespace, name)?.clone();
        let current_version = patched["metadata"]["resourceVersion"].clone();
        let media_type = content_type.split(';').next().unwrap_or("").trim();
        match media_type {
            "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
                let patch: Value = serde_json::from_slice(patch)
                    .map_err(|e| ApiError::bad_request(format!("invalid patch: {e}")))?;
                check_fields(rt, &patch, strict)?;
                // A strategic merge patch of a kind without merge-keyed lists (a Secret's
                // maps, labels, annotations) is a JSON merge patch; its directives are not.
                let strategic = media_type == "application/strategic-merge-patch+json";
                if let Some(directive) = directive_in(&patch).filter(|_| strategic) {
                    return Err(ApiError::bad_request(format!(
                        "the emulator does not implement the strategic merge directive {directive}"
                    )));
                }
                json_patch::merge(&mut patched, &patch);
            }
            "application/json-patch+json" => {
                let patch: json_patch::Patch = serde_json::from_slice(patch)
                    .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
                json_patch::patch(&mut patched, &patch).map_err(|e| {
                    ApiError::invalid(
                        rt.kind,
                        name,
                        format!(
                            "the server rejected our request due to an error in our request: {e}"
                        ),
                    )
                })?;
            }
            other => return Err(ApiError::unsupported_media_type(other)),
        }
        if store::name_of(&patched) != name {
            return Err(ApiError::invalid(
                rt.kind,
                name,
                "metadata.name: Invalid value: field is immutable",
            ));
        }
        if store::resource_version_of(&patched).is_none() {
            patched["metadata"]["resourceVersion"] = current_version;
        }
        self.replace(rt, namespace, name, patched)
    }

    fn delete(
        &mut self,
        rt: &'static ResourceType,
        namespace: &str,
        name: &str,
        options: &Value,
    ) -> ApiResult<Value> {
        let current = self.store.get(rt, namespace, name)?;
        {
            let preconditions = &options["preconditions"];
            for (field, actual) in [
                ("uid", current["metadata"]["uid"].as_str()),
                (
                    "resourceVersion",
                    current["metadata"]["resourceVersion"].as_str(),
                ),
            ] {
                if let Some(wanted) = preconditions[field].as_str() {
                    if Some(wanted) != actual {
                        let what = format!(
                            "{field} in precondition: {wanted}, {field} in object meta: {}",
                            actual.unwrap_or("")
                        );
                        return Err(ApiError::precondition_failed(rt.plural, name, &what));
                    }
                }
            }
        }
        let deleted = self.store.delete(rt, namespace, name)?;
        if rt.plural == "namespaces" {
            self.store.purge_namespace(name);
        }
        Ok(deleted)
    }

    fn token_request(&mut self, namespace: &str, name: &str, request: Value) -> ApiResult<Value> {
        let expiration = request["spec"]["expirationSeconds"]
            .as_i64()
            .unwrap_or(3600);
        if expiration < 600 {
            return Err(ApiError::invalid("TokenRequest", name, "spec.expirationSeconds: Invalid value: may not specify a duration less than 10 minutes"));
        }
        let audiences: Vec<String> = match request["spec"]["audiences"].as_array() {
            Some(list) if !list.is_empty() => list
                .iter()
                .filter_map(|a| a.as_str().map(String::from))
                .collect(),
            _ => tokens::API_AUDIENCES
                .iter()
                .map(|a| a.to_string())
                .collect(),
        };
        let token = self.issue_token(namespace, name, &audiences, expiration)?;
        let expires = jiff::Timestamp::from_second(now_unix() + expiration).expect("in range");
        Ok(json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "metadata": {"name": name, "namespace": namespace, "creationTimestamp": now_rfc3339()},
            "spec": {"audiences": audiences, "expirationSeconds": expiration},
            "status": {"token": token, "expirationTimestamp": expires.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()},
        }))
    }

    /// A SelfSubjectAccessReview (`kubectl auth can-i`), answered by RBAC for the caller.
    fn access_review(&self, caller: &Caller, mut review: Value) -> ApiResult<Value> {
        let spec = &review["spec"];
        let resource = spec["resourceAttributes"].as_object();
        let non_resource = spec["nonResourceAttributes"].as_object();
        if resource.is_some() == non_resource.is_some() {
            return Err(ApiError::invalid(
                "SelfSubjectAccessReview",
                "",
                "spec: Invalid value: exactly one of nonResourceAttributes or resourceAttributes must be specified",
            ));
        }
        let text = |map: Option<&Map<String, Value>>, key: &str| {
            map.and_then(|m| m.get(key))
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        let decision = match caller {
            Caller::Admin => Some(String::new()),
            Caller::User(user) if resource.is_some() => {
                let resource_name = text(resource, "resource").unwrap_or_default();
                let (verb, group) = (text(resource, "verb"), text(resource, "group"));
                let (namespace, name) = (text(resource, "namespace"), text(resource, "name"));
                let attrs = Attributes {
                    verb: verb.as_deref().unwrap_or(""),
                    group: group.as_deref().unwrap_or(""),
                    resource: match text(resource, "subresource") {
                        Some(sub) => format!("{resource_name}/{sub}"),
                        None => resource_name,
                    },
                    namespace: namespace.as_deref(),
                    name: name.as_deref(),
                };
                rbac::review(&self.store, user, &attrs)
            }
            Caller::User(user) => rbac::review_non_resource(
                &self.store,
                user,
                &text(non_resource, "verb").unwrap_or_default(),
                &text(non_resource, "path").unwrap_or_default(),
            ),
        };
        let mut status = json!({"allowed": decision.is_some()});
        if let Some(reason) = decision.filter(|r| !r.is_empty()) {
            status["reason"] = Value::String(reason);
        }
        review["apiVersion"] = json!("authorization.k8s.io/v1");
        review["kind"] = json!("SelfSubjectAccessReview");
        review["metadata"] = json!({"creationTimestamp": null});
        review["status"] = status;
        Ok(review)
    }

    fn token_review(&self, review: Value) -> Value {
        let token = review["spec"]["token"].as_str().unwrap_or("");
        let requested: Vec<String> = review["spec"]["audiences"]
            .as_array()
            .map(|l| {
                l.iter()
                    .filter_map(|a| a.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let status = match self.review(token) {
            None => json!({"authenticated": false, "user": {}, "error": "invalid bearer token"}),
            Some(sa) => {
                let audiences = tokens::reviewed_audiences(&requested, &sa.audiences);
                if audiences.is_empty() {
                    json!({"authenticated": false, "user": {}, "error": "invalid bearer token, token audiences are invalid for the target audiences"})
                } else {
                    json!({
                        "authenticated": true,
                        "user": {
                            "username": sa.username(),
                            "uid": sa.uid,
                            "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{}", sa.namespace), "system:authenticated"],
                            "extra": {"authentication.kubernetes.io/credential-id": [format!("JTI={}", sa.jti)]},
                        },
                        "audiences": audiences,
                    })
                }
            }
        };
        json!({
            "kind": "TokenReview",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"creationTimestamp": null},
            "spec": review["spec"].clone(),
            "status": status,
        })
    }
}

impl Default for Cluster {
    fn default() -> Self {
        Self::new()
    }
}

/// A SelfSubjectReview (`kubectl auth whoami`): the user the request authenticated as.
fn who_am_i(caller: &Caller) -> Value {
    let groups = match caller {
        Caller::Admin => vec![
            "system:masters".to_string(),
            "system:authenticated".to_string(),
        ],
        Caller::User(user) => user.groups.clone(),
    };
    json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "SelfSubjectReview",
        "metadata": {"creationTimestamp": null},
        "status": {"userInfo": {"username": caller.username(), "groups": groups}},
    })
}

/// The request's object, from JSON or from Kubernetes protobuf.
fn request_body(request: &ApiRequest) -> ApiResult<Value> {
    if protobuf::is_protobuf(&request.content_type) {
        protobuf::decode(&request.body)
    } else {
        parse_body(&request.body)
    }
}

fn parse_body(body: &[u8]) -> ApiResult<Value> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    Ok(value)
}

fn type_of(object: &Value) -> ApiResult<&'static ResourceType> {
    let api_version = object["apiVersion"].as_str().unwrap_or("");
    let kind = object["kind"].as_str().unwrap_or("");
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    resources::RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.kind == kind)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "no kind {kind:?} is registered for version {api_version:?}"
            ))
        })
}

fn decode_continue(token: &str) -> ApiResult<(String, String)> {
    let text = URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| ApiError::bad_request("continue key is not valid"))?;
    let (ns, name) = text
        .split_once('/')
        .ok_or_else(|| ApiError::bad_request("continue key is not valid"))?;
    Ok((ns.to_string(), name.to_string()))
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.chars().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.' || c == ':'
        })
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// `fieldValidation=Strict` (what `kubectl apply` and `create` send): a field the kind does
/// not have is refused, as the API server's strict decoding refuses it. Only Secrets' fields
/// are known here; other kinds are taken as sent.
fn check_fields(rt: &ResourceType, object: &Value, strict: bool) -> ApiResult<()> {
    const SECRET_FIELDS: [&str; 7] = [
        "apiVersion",
        "kind",
        "metadata",
        "data",
        "stringData",
        "type",
        "immutable",
    ];
    let (true, "secrets", Some(fields)) = (strict, rt.plural, object.as_object()) else {
        return Ok(());
    };
    match fields.keys().find(|f| !SECRET_FIELDS.contains(&f.as_str())) {
        Some(unknown) => Err(ApiError::bad_request(format!(
            "Secret in version \"v1\" cannot be handled as a Secret: strict decoding error: unknown field \"{unknown}\""
        ))),
        None => Ok(()),
    }
}

/// The first strategic merge patch directive (`$patch`, `$retainKeys`,
/// `$setElementOrder/...`, `$deleteFromPrimitiveList/...`) in a patch, if any.
fn directive_in(patch: &Value) -> Option<String> {
    match patch {
        Value::Object(map) => map
            .iter()
            .find_map(|(key, value)| match key.starts_with('$') {
                true => Some(key.clone()),
                false => directive_in(value),
            }),
        Value::Array(items) => items.iter().find_map(directive_in),
        _ => None,
    }
}

/// List items carry no `kind`/`apiVersion` on a real server.
fn strip_type(mut object: Value) -> Value {
    if let Some(map) = object.as_object_mut() {
        map.remove("kind");
        map.remove("apiVersion");
    }
    object
}

/// Sets the type fields and applies per-kind write rules (Secrets: `stringData` folds into
/// base64 `data`, and `data` must be base64).
fn normalize(rt: &ResourceType, mut object: Value) -> ApiResult<Value> {
    object["apiVersion"] = Value::String(rt.api_version());
    object["kind"] = Value::String(rt.kind.to_string());
    if rt.plural == "secrets" {
        let name = store::name_of(&object).to_string();
        let mut data = match object.get("data") {
            Some(Value::Object(map)) => map.clone(),
            None | Some(Value::Null) => Map::new(),
            Some(_) => {
                return Err(ApiError::invalid(
                    "Secret",
                    &name,
                    "data: Invalid value: must be a map",
                ))
            }
        };
        for (key, value) in &data {
            let valid = value.as_str().is_some_and(|v| STANDARD.decode(v).is_ok());
            if !valid {
                return Err(ApiError::invalid("Secret", &name, format!("Secret \"{name}\" is invalid: data[{key}]: Invalid value: must be base64-encoded")));
            }
        }
        if let Some(Value::Object(string_data)) = object.get("stringData") {
            for (key, value) in string_data {
                let text = value.as_str().ok_or_else(|| {
                    ApiError::invalid(
                        "Secret",
                        &name,
                        format!("stringData[{key}]: must be a string"),
                    )
                })?;
                data.insert(key.clone(), Value::String(STANDARD.encode(text)));
            }
        }
        for key in data.keys() {
            if key.is_empty()
                || !key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                return Err(ApiError::invalid("Secret", &name, format!("Secret \"{name}\" is invalid: data[{key}]: Invalid value: a valid config key must consist of alphanumeric characters, '-', '_' or '.'")));
            }
        }
        let map = object.as_object_mut().expect("objects are maps");
        map.remove("stringData");
        map.insert("data".into(), Value::Object(data));
        if map
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            map.insert("type".into(), Value::String("Opaque".into()));
        }
    }
    if rt.plural == "namespaces" && object["status"]["phase"].is_null() {
        object["status"] = json!({"phase": "Active"});
    }
    Ok(object)
}
