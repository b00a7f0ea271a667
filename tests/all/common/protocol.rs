//! Bodies of Terraform's http backend protocol, as the tests send them.

use serde_json::json;

/// Terraform's LockInfo JSON for lock `id` held by `who`.
pub fn lock_info(id: &str, who: &str) -> String {
    json!({
        "ID": id, "Operation": "OperationTypeApply", "Info": "", "Who": who,
        "Version": "1.0.3", "Created": "2026-11-23T10:00:00Z", "Path": ""
    })
    .to_string()
}

/// A state document of Terraform 1.0.3's shape with no outputs or resources.
pub fn state(serial: u64, lineage: &str) -> String {
    json!({
        "version": 4, "terraform_version": "1.0.3", "serial": serial, "lineage": lineage,
        "outputs": {}, "resources": []
    })
    .to_string()
}
