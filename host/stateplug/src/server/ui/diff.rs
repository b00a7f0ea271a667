//! What the dashboard reads from a state document: its outputs, a summary of its resources, and
//! the resources two versions differ in. Everything here came through the plugin: names and
//! values are bounded before they are shown (the templates escape them).

use std::collections::BTreeMap;

use serde_json::Value;
use stateplug_sdk::text::bounded;

/// Longest output value shown, in bytes.
const MAX_VALUE: usize = 1000;

/// Longest name or address shown, in bytes.
const MAX_NAME: usize = 300;

/// One output of a state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Output {
    pub name: String,
    /// A string as itself, anything else as compact JSON; `(sensitive)` for a sensitive one.
    pub value: String,
    pub sensitive: bool,
}

/// How many resources (and their instances) of one kind a state holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ResourceCount {
    /// `aws_instance`, or `data.terraform_remote_state` for a data source.
    pub kind: String,
    pub resources: usize,
    pub instances: usize,
}

/// The parts of a state document the dashboard shows.
#[derive(Debug, Clone, Default)]
pub(super) struct Contents {
    pub outputs: Vec<Output>,
    /// Resource address (module, mode, type, name) → its instances, as stored.
    resources: BTreeMap<String, Value>,
    /// `(kind, instances)` of each resource, for the summary.
    kinds: Vec<(String, usize)>,
}

/// What changed between two versions, by resource address, each list sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Diff {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }
}

/// Reads a stored state; the error says why its contents cannot be shown.
pub(super) fn read(state: &[u8]) -> Result<Contents, String> {
    let value: Value = serde_json::from_slice(state)
        .map_err(|_| "the stored state is not JSON, so its contents cannot be shown".to_string())?;
    let Some(document) = value.as_object() else {
        return Err("the stored state is not a JSON object".into());
    };
    if document.contains_key("encrypted_data") {
        return Err(
            "the state is encrypted (OpenTofu): its outputs and resources are not readable here"
                .into(),
        );
    }
    let mut contents = Contents::default();
    if let Some(outputs) = document.get("outputs").and_then(Value::as_object) {
        for (name, output) in outputs {
            let sensitive = output.get("sensitive").and_then(Value::as_bool) == Some(true);
            let value = match (sensitive, output.get("value")) {
                (true, _) => "(sensitive)".to_string(),
                (false, Some(Value::String(text))) => bounded(text, MAX_VALUE).into_owned(),
                (false, Some(other)) => bounded(&other.to_string(), MAX_VALUE).into_owned(),
                (false, None) => "-".to_string(),
            };
            contents.outputs.push(Output {
                name: bounded(name, MAX_NAME).into_owned(),
                value,
                sensitive,
            });
        }
    }
    // Version 4 (Terraform 0.12 on, OpenTofu): a list of resources, each with its instances.
    for resource in document
        .get("resources")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some((kind, address)) = address(resource) else {
            continue;
        };
        let instances = resource.get("instances").cloned().unwrap_or(Value::Null);
        contents
            .kinds
            .push((kind, instances.as_array().map_or(0, Vec::len)));
        contents.resources.insert(address, instances);
    }
    Ok(contents)
}

/// `(kind, address)` of a resource: `data.terraform_remote_state` and
/// `module.net.data.terraform_remote_state.base`; `None` when it lacks a type or name.
fn address(resource: &Value) -> Option<(String, String)> {
    let field = |key: &str| resource.get(key).and_then(Value::as_str);
    let (kind, name) = (field("type")?, field("name")?);
    let kind = match field("mode") {
        Some("data") => format!("data.{kind}"),
        _ => kind.to_string(),
    };
    let address = match field("module").filter(|module| !module.is_empty()) {
        Some(module) => format!("{module}.{kind}.{name}"),
        None => format!("{kind}.{name}"),
    };
    Some((kind, address))
}

impl Contents {
    /// Resources and instances by kind, sorted by kind.
    pub fn summary(&self) -> Vec<ResourceCount> {
        let mut counts: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        for (kind, instances) in &self.kinds {
            let count = counts.entry(kind).or_default();
            count.0 += 1;
            count.1 += instances;
        }
        counts
            .into_iter()
            .map(|(kind, (resources, instances))| ResourceCount {
                kind: bounded(kind, MAX_NAME).into_owned(),
                resources,
                instances,
            })
            .collect()
    }
}

/// The resources added in `to`, changed (their instances differ), and removed from `from`.
pub(super) fn diff(from: &Contents, to: &Contents) -> Diff {
    let shown = |address: &String| bounded(address, MAX_NAME).into_owned();
    let mut diff = Diff::default();
    for (address, instances) in &to.resources {
        match from.resources.get(address) {
            None => diff.added.push(shown(address)),
            Some(before) if before != instances => diff.changed.push(shown(address)),
            Some(_) => {}
        }
    }
    diff.removed = from
        .resources
        .keys()
        .filter(|address| !to.resources.contains_key(*address))
        .map(shown)
        .collect();
    diff
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn state(outputs: Value, resources: Value) -> Vec<u8> {
        json!({"version": 4, "serial": 1, "lineage": "l", "outputs": outputs, "resources": resources})
            .to_string()
            .into_bytes()
    }

    fn resource(module: Option<&str>, mode: &str, kind: &str, name: &str, attrs: Value) -> Value {
        let mut resource = json!({
            "mode": mode, "type": kind, "name": name,
            "provider": "provider[\"terraform.io/builtin/terraform\"]",
            "instances": [{"schema_version": 0, "attributes": attrs}]
        });
        if let Some(module) = module {
            resource["module"] = json!(module);
        }
        resource
    }

    #[test]
    fn outputs_are_shown_and_sensitive_ones_masked() {
        let contents = read(&state(
            json!({
                "greeting": {"value": "hello", "type": "string"},
                "ports": {"value": [80, 443], "type": ["list", "number"]},
                "password": {"value": "hunter2", "type": "string", "sensitive": true}
            }),
            json!([]),
        ))
        .unwrap();
        let shown: Vec<_> = contents
            .outputs
            .iter()
            .map(|o| (o.name.as_str(), o.value.as_str(), o.sensitive))
            .collect();
        assert_eq!(
            shown,
            [
                ("greeting", "hello", false),
                ("password", "(sensitive)", true),
                ("ports", "[80,443]", false)
            ]
        );
    }

    #[test]
    fn resources_are_counted_by_mode_and_type() {
        let contents = read(&state(
            json!({}),
            json!([
                resource(None, "data", "terraform_remote_state", "base", json!({})),
                resource(
                    Some("module.net"),
                    "data",
                    "terraform_remote_state",
                    "base",
                    json!({})
                ),
                resource(None, "managed", "aws_instance", "web", json!({"id": "i-1"})),
            ]),
        ))
        .unwrap();
        assert_eq!(
            contents.summary(),
            [
                ResourceCount {
                    kind: "aws_instance".into(),
                    resources: 1,
                    instances: 1
                },
                ResourceCount {
                    kind: "data.terraform_remote_state".into(),
                    resources: 2,
                    instances: 2
                },
            ]
        );
    }

    #[test]
    fn the_diff_names_resources_added_changed_and_removed_by_address() {
        let from = read(&state(
            json!({}),
            json!([
                resource(None, "managed", "aws_instance", "web", json!({"id": "i-1"})),
                resource(
                    None,
                    "managed",
                    "aws_instance",
                    "kept",
                    json!({"id": "i-2"})
                ),
                resource(
                    Some("module.net"),
                    "data",
                    "terraform_remote_state",
                    "old",
                    json!({})
                ),
            ]),
        ))
        .unwrap();
        let to = read(&state(
            json!({}),
            json!([
                resource(None, "managed", "aws_instance", "web", json!({"id": "i-9"})),
                resource(
                    None,
                    "managed",
                    "aws_instance",
                    "kept",
                    json!({"id": "i-2"})
                ),
                resource(None, "data", "terraform_remote_state", "new", json!({})),
            ]),
        ))
        .unwrap();
        let diff = diff(&from, &to);
        assert_eq!(diff.added, ["data.terraform_remote_state.new"]);
        assert_eq!(diff.changed, ["aws_instance.web"]);
        assert_eq!(diff.removed, ["module.net.data.terraform_remote_state.old"]);
        assert!(super::diff(&to, &to).is_empty());
    }

    #[test]
    fn what_cannot_be_read_says_why_and_untrusted_names_are_bounded() {
        assert!(read(b"not json").unwrap_err().contains("not JSON"));
        let encrypted = br#"{"serial": 1, "lineage": "l", "encrypted_data": "..."}"#;
        assert!(read(encrypted).unwrap_err().contains("encrypted"));
        let long = "x".repeat(5000);
        let contents = read(&state(
            json!({ long.clone(): {"value": long.clone()}, "bell": {"value": "a\u{7}b"} }),
            json!([resource(None, "managed", &long, "r", json!({}))]),
        ))
        .unwrap();
        assert!(
            contents
                .outputs
                .iter()
                .all(|o| o.value.len() <= MAX_VALUE + 64)
        );
        assert!(
            contents
                .outputs
                .iter()
                .all(|o| o.name.len() <= MAX_NAME + 64)
        );
        assert!(contents.outputs.iter().any(|o| o.value == "a\\u{7}b"));
        assert!(contents.summary()[0].kind.len() <= MAX_NAME + 64);
    }
}
