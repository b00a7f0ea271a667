//! The two S3 XML documents we read: a ListObjectsV2 page and an error.

use serde::Deserialize;

/// One page of ListObjectsV2.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListPage {
    #[serde(default)]
    pub contents: Vec<Listed>,
    #[serde(default)]
    pub is_truncated: bool,
    pub next_continuation_token: Option<String>,
}

/// One listed object.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Listed {
    pub key: String,
}

/// S3's `<Error><Code>..</Code><Message>..</Message></Error>`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct S3Error {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
}

/// Parses a ListObjectsV2 answer.
pub fn list_page(body: &[u8]) -> Result<ListPage, String> {
    let text = std::str::from_utf8(body).map_err(|e| e.to_string())?;
    quick_xml::de::from_str(text).map_err(|e| e.to_string())
}

/// The code and message of an error answer; empty when the body is not one (HEAD has none).
pub fn error(body: &[u8]) -> S3Error {
    std::str::from_utf8(body)
        .ok()
        .and_then(|text| quick_xml::de::from_str(text).ok())
        .unwrap_or_default()
}
