//! The state document and Terraform's rules for replacing one: what a write must carry, and
//! what it may change. Pure functions over bytes, so they are fuzzed and tested without a store.

use serde_json::Value;
use stateplug_sdk::text;

/// The state format versions the rules accept: Terraform 0.12+ writes 4; older states are 3.
const STATE_VERSIONS: [u64; 2] = [3, 4];

/// A state document as the rules see it: a Terraform state (`version` 3 or 4 with `serial`
/// and `lineage`), or OpenTofu's encrypted envelope (its plaintext `serial` and `lineage`
/// beside `encrypted_data`).
#[derive(Debug, Clone, PartialEq)]
#[doc(hidden)]
pub struct StateDoc {
    pub(crate) value: Value,
    /// The document's serial.
    pub serial: u64,
    /// The document's lineage (never empty).
    pub lineage: String,
    /// Whether it is OpenTofu's encrypted envelope.
    pub encrypted: bool,
}

impl StateDoc {
    /// Parses and checks a state document; the error names the missing or wrong field.
    pub fn parse(data: &[u8]) -> Result<StateDoc, String> {
        const SHAPE: &str = "a Terraform state carries `version` (3 or 4), `serial` and \
                             `lineage`; push the file `terraform state pull` gives";
        let value: Value = serde_json::from_slice(data)
            .map_err(|e| format!("the state is not valid JSON ({e}); {SHAPE}"))?;
        let Some(object) = value.as_object() else {
            return Err(format!("the state is JSON but not an object; {SHAPE}"));
        };
        // OpenTofu's encrypted envelope keeps serial and lineage in plaintext beside it.
        let encrypted = object.contains_key("encrypted_data");
        if !encrypted {
            match object.get("version") {
                None => return Err(format!("the state has no `version`; {SHAPE}")),
                Some(v) if v.as_u64().is_some_and(|v| STATE_VERSIONS.contains(&v)) => {}
                Some(v) => {
                    return Err(format!(
                        "the state's `version` is {}, not 3 or 4: not a state format this \
                         server knows; {SHAPE}",
                        bounded_json(v)
                    ));
                }
            }
        }
        let serial = match object.get("serial") {
            None => return Err(format!("the state has no `serial`; {SHAPE}")),
            Some(s) => s.as_u64().ok_or_else(|| {
                format!(
                    "the state's `serial` is {}, not a whole number; {SHAPE}",
                    bounded_json(s)
                )
            })?,
        };
        let lineage = match object.get("lineage") {
            None => return Err(format!("the state has no `lineage`; {SHAPE}")),
            Some(Value::String(l)) if !l.is_empty() => l.clone(),
            Some(l) => {
                return Err(format!(
                    "the state's `lineage` is {}, not a non-empty string; {SHAPE}",
                    bounded_json(l)
                ));
            }
        };
        Ok(StateDoc {
            value,
            serial,
            lineage,
            encrypted,
        })
    }

    /// Terraform's rules for replacing `self` (stored) by `new`.
    pub fn check_replacement(&self, new: &StateDoc) -> Result<(), String> {
        if self.lineage != new.lineage {
            return Err(format!(
                "lineage `{}` differs from the stored lineage `{}`: this is a different \
                 state; push with --force to replace it",
                text::untrusted(&new.lineage),
                text::untrusted(&self.lineage),
            ));
        }
        if new.serial < self.serial {
            return Err(format!(
                "serial {} is lower than the stored serial {}: this state is older than the \
                 stored one; pull the current state first",
                new.serial, self.serial
            ));
        }
        if new.serial == self.serial && self.value != new.value {
            return Err(format!(
                "serial {} equals the stored serial but the content differs: a changed state \
                 needs a higher serial",
                new.serial
            ));
        }
        Ok(())
    }
}

/// Whether a stored state manages anything (an encrypted state is assumed to). Read from the
/// JSON alone, so that a stored document the rules refuse is still protected.
pub fn manages_resources(data: &[u8]) -> bool {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return false;
    };
    value.get("encrypted_data").is_some()
        || value["resources"].as_array().is_some_and(|r| !r.is_empty())
}

/// Longest lock id accepted (Terraform's are 36-byte UUIDs).
pub const MAX_LOCK_ID: usize = 1024;

/// A lock id is an identifier, compared byte for byte and shown to people: 1 to
/// [`MAX_LOCK_ID`] bytes without control characters.
pub fn check_lock_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("the lock has no ID".into());
    }
    if id.len() > MAX_LOCK_ID || id.chars().any(char::is_control) {
        return Err(format!(
            "the lock ID `{}` ({} bytes) is not a usable id: give 1 to {MAX_LOCK_ID} bytes \
             without control characters (Terraform sends a UUID)",
            text::bounded(id, 100),
            id.len()
        ));
    }
    Ok(())
}

/// A JSON value quoted in an error, cut short when long.
fn bounded_json(value: &Value) -> String {
    text::untrusted(&value.to_string()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(json: &str) -> StateDoc {
        StateDoc::parse(json.as_bytes()).unwrap()
    }

    #[test]
    fn terraform_rules() {
        let stored = doc(r#"{"version":4,"serial":5,"lineage":"a","resources":[]}"#);
        let ok = doc(r#"{"version":4,"serial":6,"lineage":"a","resources":[]}"#);
        assert_eq!(stored.check_replacement(&ok), Ok(()));
        assert_eq!(
            stored.check_replacement(&stored.clone()),
            Ok(()),
            "same content again"
        );
        let other = doc(r#"{"version":4,"serial":9,"lineage":"b"}"#);
        assert!(
            stored
                .check_replacement(&other)
                .unwrap_err()
                .contains("lineage `b` differs")
        );
        let older = doc(r#"{"version":4,"serial":4,"lineage":"a"}"#);
        assert!(
            stored
                .check_replacement(&older)
                .unwrap_err()
                .contains("lower than the stored serial 5")
        );
        let changed = doc(r#"{"version":4,"serial":5,"lineage":"a","outputs":{}}"#);
        assert!(
            stored
                .check_replacement(&changed)
                .unwrap_err()
                .contains("content differs")
        );
        let envelope =
            doc(r#"{"serial":3,"lineage":"a","encrypted_data":"x","encryption_version":"v0"}"#);
        assert!(
            stored
                .check_replacement(&envelope)
                .unwrap_err()
                .contains("lower")
        );
        assert!(manages_resources(br#"{"encrypted_data":"x"}"#));
    }

    #[test]
    fn only_state_documents_are_accepted() {
        let refused = [
            (&b"nope"[..], "not valid JSON"),
            (b"[1]", "not an object"),
            (b"{}", "no `version`"),
            (br#"{"version":4,"lineage":"a"}"#, "no `serial`"),
            (br#"{"version":4,"serial":3}"#, "no `lineage`"),
            (
                br#"{"version":4,"serial":-1,"lineage":"a"}"#,
                "`serial` is -1",
            ),
            (
                br#"{"version":4,"serial":"3","lineage":"a"}"#,
                "`serial` is \"3\"",
            ),
            (br#"{"version":4,"serial":1,"lineage":7}"#, "`lineage` is 7"),
            (
                br#"{"version":4,"serial":1,"lineage":""}"#,
                "`lineage` is \"\"",
            ),
            (
                br#"{"version":5,"serial":1,"lineage":"a"}"#,
                "`version` is 5",
            ),
            (
                br#"{"version":"4","serial":1,"lineage":"a"}"#,
                "`version` is \"4\"",
            ),
            (br#"{"encrypted_data":"x","lineage":"a"}"#, "no `serial`"),
            (br#"{"encrypted_data":"x","serial":1}"#, "no `lineage`"),
        ];
        for (json, reason) in refused {
            let error = StateDoc::parse(json).unwrap_err();
            assert!(
                error.contains(reason) && error.contains("`version` (3 or 4)"),
                "{}: {error}",
                String::from_utf8_lossy(json)
            );
        }
        for accepted in [
            &br#"{"version":3,"serial":0,"lineage":"a","modules":[]}"#[..],
            br#"{"version":4,"serial":7,"lineage":"a"}"#,
            br#"{"serial":3,"lineage":"a","encrypted_data":"x","encryption_version":"v0"}"#,
        ] {
            StateDoc::parse(accepted).unwrap();
        }
    }

    #[test]
    fn a_hostile_field_is_quoted_bounded_and_escaped() {
        let lineage = format!("\u{1b}[2J{}", "x".repeat(100_000));
        let json = serde_json::json!({"version": 4, "serial": 1, "lineage": lineage}).to_string();
        let stored = doc(r#"{"version":4,"serial":1,"lineage":"a"}"#);
        let error = stored
            .check_replacement(&StateDoc::parse(json.as_bytes()).unwrap())
            .unwrap_err();
        assert!(
            error.len() < 2 * stateplug_sdk::text::UNTRUSTED_MAX,
            "{}",
            error.len()
        );
        assert!(!error.contains('\x1b'), "{error}");
    }
}
