//! The TLS keys: an upstream's `tls`, `server_name`, `ca_file`, `cert_file`, `key_file` (and
//! instances written `https://`), and `listen.tls = { cert_file, key_file }`.
//!
//! Every file is read here, with the settings, and checked as far as rustls would check it
//! when connecting: PEM that holds what its key says, a CA that yields a root, a key that goes
//! with its certificate. So a bad file is refused at `file:line:column` of the key that names
//! it, and a reload that brings one keeps the running settings. A relative path is taken from
//! the settings file's folder, so that a file and its certificates move together.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rustls_pki_types::ServerName;
use stormguard_graph::parse::locate::KeyPath;
use stormguard_graph::parse::ParseError;
use toml::Spanned;

use super::convert::Converter;
use super::model::{CertAndKey, PemFile, UpstreamTls};
use super::raw::{RawCertAndKey, RawUpstream};
use crate::tls::{certificates, client_config, private_key, server_config, Alpn};

/// What the checks of an upstream's TLS keys need to know of one instance.
pub(super) struct InstanceScheme {
    /// Where the instance is written.
    pub offset: usize,
    /// Its host, without port (an IPv6 address without brackets).
    pub host: String,
    /// Written `https://`.
    pub https: bool,
}

/// `https://host[:port]` as `host:port` (443 by default); `None` for any other text.
pub(super) fn strip_https(instance: &str) -> Option<String> {
    let rest = instance.strip_prefix("https://")?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let has_port = match rest.rfind(']') {
        Some(end) => rest[end..].contains(':'),
        None => rest.contains(':'),
    };
    Some(if has_port {
        rest.to_string()
    } else {
        format!("{rest}:443")
    })
}

impl Converter<'_> {
    /// The upstream's TLS, from its keys and how its instances are written: `None` when it
    /// speaks plain text.
    pub(super) fn upstream_tls(
        &self,
        raw: &RawUpstream,
        instances: &[InstanceScheme],
        path: &KeyPath,
    ) -> Result<Option<UpstreamTls>, ParseError> {
        let https = instances.iter().filter(|i| i.https).count();
        if let (Some(tls), true) = (&raw.tls, https > 0) {
            if !*tls.get_ref() {
                return Err(self.error(
                    tls.span().start,
                    &path.key("tls"),
                    "tls = false, but instances are written \"https://\": remove tls, or write \
                     the instances as \"host:port\" for plain text",
                ));
            }
        }
        let on = raw.tls.as_ref().is_some_and(|tls| *tls.get_ref()) || https > 0;
        if raw.tls.is_none() && https > 0 && https < instances.len() {
            let (i, plain) = instances
                .iter()
                .enumerate()
                .find(|(_, i)| !i.https)
                .expect("some instance is not https");
            return Err(self.error(
                plain.offset,
                &path.key("instances").index(i),
                "the other instances are \"https://\" and this one is not: an upstream speaks \
                 TLS to all its instances or to none; write it \"https://\" too, or set \
                 tls = true",
            ));
        }
        let keys = [
            ("server_name", &raw.server_name),
            ("ca_file", &raw.ca_file),
            ("cert_file", &raw.cert_file),
            ("key_file", &raw.key_file),
        ];
        if !on {
            if let Some((key, Some(value))) = keys.iter().find(|(_, value)| value.is_some()) {
                return Err(self.error(
                    value.span().start,
                    &path.key(key),
                    format!(
                        "{key} applies to TLS, and this upstream speaks plain text: set \
                         tls = true, or write its instances \"https://host:port\""
                    ),
                ));
            }
            return Ok(None);
        }
        let server_name = match &raw.server_name {
            Some(name) => {
                if ServerName::try_from(name.get_ref().as_str()).is_err() {
                    return Err(self.error(
                        name.span().start,
                        &path.key("server_name"),
                        format!(
                            "{:?} is not a host name or IP address a certificate can carry: \
                             use e.g. \"api.internal\"",
                            name.get_ref()
                        ),
                    ));
                }
                Some(name.get_ref().clone())
            }
            None => {
                for (i, instance) in instances.iter().enumerate() {
                    let is_ip = instance.host.parse::<IpAddr>().is_ok();
                    if is_ip || ServerName::try_from(instance.host.as_str()).is_err() {
                        return Err(self.error(
                            instance.offset,
                            &path.key("instances").index(i),
                            format!(
                                "{:?} is {} and this upstream speaks TLS: the certificate is \
                                 checked against a host name, so set server_name to the name \
                                 the instances' certificates carry, e.g. \
                                 server_name = \"api.internal\"",
                                instance.host,
                                if is_ip {
                                    "an IP address"
                                } else {
                                    "not a name a certificate can carry"
                                }
                            ),
                        ));
                    }
                }
                None
            }
        };
        let ca_file = raw
            .ca_file
            .as_ref()
            .map(|ca| self.pem_file(ca, path, "ca_file", |pem| certificates(pem).map(drop)))
            .transpose()?;
        let client_cert =
            self.cert_and_key((raw.cert_file.as_ref(), raw.key_file.as_ref()), None, path)?;
        let tls = UpstreamTls {
            server_name,
            ca_file,
            client_cert,
        };
        if let Err(problem) = client_config(&tls, Alpn::Http1) {
            // The key against its certificate, or the CA's certificates.
            let key_problem = problem.starts_with("does not go");
            let named = raw
                .key_file
                .as_ref()
                .filter(|_| key_problem)
                .map(|value| ("key_file", value))
                .or_else(|| raw.ca_file.as_ref().map(|value| ("ca_file", value)))
                .or_else(|| raw.key_file.as_ref().map(|value| ("key_file", value)));
            let (key, offset, file) = match named {
                Some((key, value)) => (
                    key,
                    value.span().start,
                    format!("{}: ", self.resolve(value.get_ref()).display()),
                ),
                None => ("tls", 0, String::new()),
            };
            return Err(self.error(offset, &path.key(key), format!("{file}{problem}")));
        }
        Ok(Some(tls))
    }

    /// `listen.tls = { cert_file, key_file }`, both required.
    pub(super) fn listen_tls(
        &self,
        raw: Option<Spanned<RawCertAndKey>>,
        listen: &KeyPath,
    ) -> Result<Option<CertAndKey>, ParseError> {
        let Some(raw) = raw else {
            return Ok(None);
        };
        let path = listen.key("tls");
        let offset = raw.span().start;
        let raw = raw.into_inner();
        let files = self.cert_and_key(
            (raw.cert_file.as_ref(), raw.key_file.as_ref()),
            Some(offset),
            &path,
        )?;
        let files = files.expect("both files are required");
        if let (Err(problem), Some(key)) = (server_config(&files), &raw.key_file) {
            return Err(self.error(
                key.span().start,
                &path.key("key_file"),
                format!("{}: {problem}", files.key_file.path.display()),
            ));
        }
        Ok(Some(files))
    }

    /// `cert_file` and `key_file`: both or neither, or both when `required_at` (the table's
    /// offset) is given.
    fn cert_and_key(
        &self,
        (cert, key): (Option<&Spanned<String>>, Option<&Spanned<String>>),
        required_at: Option<usize>,
        path: &KeyPath,
    ) -> Result<Option<CertAndKey>, ParseError> {
        let missing = |key: &str, other: &str, at: usize| {
            self.error(
                at,
                &path.key(key),
                format!(
                    "missing: {other} needs {key} beside it, the PEM file of the {}",
                    if key == "key_file" {
                        "certificate's private key"
                    } else {
                        "certificate (then any intermediates)"
                    }
                ),
            )
        };
        match (cert, key) {
            (None, None) => match required_at {
                None => Ok(None),
                Some(at) => Err(self.error(
                    at,
                    &path.key("cert_file"),
                    "missing: TLS needs the certificate and its key, e.g. \
                     tls = { cert_file = \"proxy.crt\", key_file = \"proxy.key\" }",
                )),
            },
            (Some(cert), None) => Err(missing("key_file", "cert_file", cert.span().start)),
            (None, Some(key)) => Err(missing("cert_file", "key_file", key.span().start)),
            (Some(cert), Some(key)) => Ok(Some(CertAndKey {
                cert_file: self
                    .pem_file(cert, path, "cert_file", |pem| certificates(pem).map(drop))?,
                key_file: self.pem_file(key, path, "key_file", |pem| private_key(pem).map(drop))?,
            })),
        }
    }

    /// The PEM file `value` names, read and checked by `check`.
    fn pem_file(
        &self,
        value: &Spanned<String>,
        parent: &KeyPath,
        key: &str,
        check: impl Fn(&[u8]) -> Result<(), String>,
    ) -> Result<PemFile, ParseError> {
        let error = |message: String| self.error(value.span().start, &parent.key(key), message);
        if value.get_ref().trim().is_empty() {
            return Err(error(
                "an empty path names no file: give the PEM file's path".into(),
            ));
        }
        let path = self.resolve(value.get_ref());
        let text = stormguard_graph::input::read_text(&path)
            .map_err(|e| error(format!("cannot read {}: {e}", path.display())))?;
        check(text.as_bytes()).map_err(|problem| error(format!("{} {problem}", path.display())))?;
        Ok(PemFile::new(path, text.into_bytes()))
    }

    /// `path` as written when absolute, else in the settings file's folder.
    fn resolve(&self, path: &str) -> PathBuf {
        let path = Path::new(path);
        if path.is_absolute() {
            return path.to_path_buf();
        }
        match Path::new(self.file).parent() {
            Some(folder) => folder.join(path),
            None => path.to_path_buf(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::strip_https;

    #[test]
    fn https_instances_get_port_443_unless_they_give_one() {
        assert_eq!(
            strip_https("https://api.example.com").unwrap(),
            "api.example.com:443"
        );
        assert_eq!(strip_https("https://api:8443/").unwrap(), "api:8443");
        assert_eq!(strip_https("https://[::1]").unwrap(), "[::1]:443");
        assert_eq!(strip_https("https://[::1]:9443").unwrap(), "[::1]:9443");
        assert_eq!(strip_https("api:443"), None);
        assert_eq!(strip_https("http://api:80"), None);
    }
}
