//! The OpenAPI document and the routes rowlock registers agree: every route registered in
//! `src/routes/` is documented, and every documented operation is served (neither "no route"
//! nor 405).

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::{json, Value};

use crate::helpers::spawn_app;

/// The paths passed to `web::resource(…)`, `.route(…)` and the job routes' `post(…)` in
/// `src/routes/`: the routes as registered.
fn registered_paths() -> BTreeSet<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/routes");
    let mut files = vec![dir.clone()];
    let mut paths = BTreeSet::new();
    while let Some(entry) = files.pop() {
        if entry.is_dir() {
            for child in std::fs::read_dir(&entry).expect("read src/routes") {
                files.push(child.expect("entry").path());
            }
            continue;
        }
        let source = std::fs::read_to_string(&entry).expect("read a route file");
        for call in ["resource(", "route(", "post("] {
            for (at, _) in source.match_indices(call) {
                let rest = source[at + call.len()..].trim_start();
                let Some(literal) = rest.strip_prefix('"') else {
                    continue;
                };
                let path = &literal[..literal.find('"').expect("a closed literal")];
                if path.starts_with('/') {
                    paths.insert(path.to_owned());
                }
            }
        }
    }
    paths
}

#[tokio::test]
async fn every_registered_route_is_documented_and_every_documented_operation_is_served() {
    let app = spawn_app().await;
    let doc = app.get_json("/openapi.json").await;
    let documented: BTreeSet<String> = doc["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .cloned()
        .collect();
    let registered = registered_paths();
    assert!(registered.len() > 20, "{registered:?}");
    let undocumented: Vec<_> = registered.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from OpenAPI: {undocumented:?}"
    );
    let unserved: Vec<_> = documented.difference(&registered).collect();
    assert!(
        unserved.is_empty(),
        "documented but not registered: {unserved:?}"
    );

    for (path, operations) in doc["paths"].as_object().unwrap() {
        let concrete = path
            .replace("{name}", "c")
            .replace("{queue}", "q")
            .replace("{key}", "k")
            .replace("{id}", "1");
        for method in operations.as_object().unwrap().keys() {
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let response = app
                .http
                .request(method.clone(), app.url(&concrete))
                .json(&json!({}))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            let no_route = body["detail"]
                .as_str()
                .is_some_and(|d| d.starts_with("no route"));
            assert!(
                status != 405 && !no_route,
                "{method} {path}: {status} {body}"
            );
        }
    }
}
