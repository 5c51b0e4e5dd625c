//! TLS channels to the controller and the bearer token that goes with them,
//! shared by the config stream and the certificate client.

use std::path::{Path, PathBuf};

use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

/// Why a channel to the controller could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// The token or root file could not be read.
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The token holds characters a header cannot carry.
    #[error("the token in {} is not a valid header value", path.display())]
    Token { path: PathBuf },
    /// The address is not a usable URL.
    #[error("bad controller address {address:?}: {reason}")]
    Address { address: String, reason: String },
    /// An `https://` controller needs roots to verify it.
    #[error("{address} is TLS: --ca-root is required to verify the controller")]
    NoRoots { address: String },
}

/// `Bearer <token>` from `path`, read now: projected tokens rotate on disk.
pub(crate) async fn bearer(path: &Path) -> Result<MetadataValue<Ascii>, ChannelError> {
    let token = tokio::fs::read_to_string(path)
        .await
        .map_err(|source| ChannelError::Read {
            path: path.to_owned(),
            source,
        })?;
    let mut value = MetadataValue::try_from(format!("Bearer {}", token.trim())).map_err(|_| {
        ChannelError::Token {
            path: path.to_owned(),
        }
    })?;
    value.set_sensitive(true);
    Ok(value)
}

/// The PEM text of `path`, read now: roots may be replaced when they rotate.
pub(crate) async fn read_pem(path: &Path) -> Result<Vec<u8>, ChannelError> {
    tokio::fs::read(path)
        .await
        .map_err(|source| ChannelError::Read {
            path: path.to_owned(),
            source,
        })
}

/// The host a TLS peer at `address` must be certified for.
pub(crate) fn domain_of(address: &str) -> Result<String, ChannelError> {
    let bad = |reason: &str| ChannelError::Address {
        address: address.to_owned(),
        reason: reason.to_owned(),
    };
    let uri: http::Uri = address.parse().map_err(|_| bad("not a URL"))?;
    let host = uri.host().ok_or_else(|| bad("no host"))?;
    Ok(host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned())
}

/// An endpoint for `address` (`https://...`) that trusts only `anchors`
/// and expects the controller's certificate to name the address's host.
pub(crate) fn tls_endpoint(
    address: &str,
    anchors: Vec<Certificate>,
) -> Result<Endpoint, ChannelError> {
    let bad = |e: tonic::transport::Error| ChannelError::Address {
        address: address.to_owned(),
        reason: e.to_string(),
    };
    let tls = ClientTlsConfig::new()
        .domain_name(domain_of(address)?)
        .ca_certificates(anchors);
    Endpoint::from_shared(address.to_owned())
        .map_err(bad)?
        .tls_config(tls)
        .map_err(bad)
}
