//! Signed HTTP requests: SigV4 on top of the SDK's HTTP helper (`stateplug_sdk::http`), which
//! sends them through wasi-http (so the host decides which hosts the plugin may reach) and
//! retries them.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use stateplug_sdk::http::send_with_retries;
pub use stateplug_sdk::http::{Request, Response, block_on};
use stateplug_sdk::{Error, Result};

use crate::config::Keys;

/// Which AWS service a client signs for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    S3,
    DynamoDb,
}

/// Sends requests to one service, signed with SigV4 when credentials are configured.
pub struct Client {
    service: Service,
    region: String,
    credentials: Option<Keys>,
    max_retries: u32,
}

impl Client {
    pub fn new(
        service: Service,
        region: &str,
        credentials: Option<Keys>,
        max_retries: u32,
    ) -> Client {
        Client {
            service,
            region: region.into(),
            credentials,
            max_retries,
        }
    }

    /// Whether requests are signed (credentials are configured).
    pub fn signs(&self) -> bool {
        self.credentials.is_some()
    }

    /// Sends `request`, signed anew for each attempt, with retries while `retryable` says so
    /// (see [`send_with_retries`]).
    pub async fn send(
        &self,
        request: &Request,
        retryable: impl Fn(&Response) -> bool,
    ) -> Result<Response> {
        send_with_retries(
            request,
            self.max_retries,
            |mut prepared| {
                self.sign(&mut prepared)?;
                Ok(prepared)
            },
            retryable,
        )
        .await
    }

    /// Adds the SigV4 headers (nothing without credentials: an anonymous request).
    fn sign(&self, request: &mut http::Request<Vec<u8>>) -> Result<()> {
        let Some(keys) = &self.credentials else {
            return Ok(());
        };
        let identity = Credentials::new(
            &keys.access_key,
            &keys.secret_key,
            keys.session_token.clone(),
            None,
            "stateplug-config",
        )
        .into();
        let mut settings = SigningSettings::default();
        let name = match self.service {
            Service::S3 => {
                // S3 signs the path exactly as sent and wants the payload hash header.
                settings.percent_encoding_mode = PercentEncodingMode::Single;
                settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
                settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
                "s3"
            }
            Service::DynamoDb => "dynamodb",
        };
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(name)
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| Error::Other(format!("signing parameters: {e}")))?
            .into();
        let headers: Vec<(String, String)> = request
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
            .collect();
        let uri = request.uri().to_string();
        let signable = SignableRequest::new(
            request.method().as_str(),
            uri,
            headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            // The payload hash is the costly part of signing a large body: the host computes it.
            SignableBody::Precomputed(hex::encode(stateplug_sdk::hash::sha256(request.body()))),
        )
        .map_err(|e| Error::Other(format!("signing {}: {e}", request.uri())))?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|e| Error::Other(format!("signing {}: {e}", request.uri())))?
            .into_parts();
        instructions.apply_to_request_http1x(request);
        Ok(())
    }
}
