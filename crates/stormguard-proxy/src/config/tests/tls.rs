//! The TLS keys: what they mean, and every refusal located at the key that names the file.

use super::*;

/// `[upstreams.api]` with `keys` (line 2 on), and a route to it.
fn upstream(keys: &str) -> String {
    format!("[upstreams.api]\n{keys}\n[[routes]]\nname = \"api\"\nupstream = \"api\"\ntimeout = \"1s\"\n")
}

#[track_caller]
fn refused(text: &str) -> String {
    parse("p.toml", text).unwrap_err().to_string()
}

/// A folder holding a CA certificate (`ca.pem`), a certificate and key for `api.test`
/// (`api.crt`, `api.key`), and a file that is not PEM (`junk.pem`).
fn pem_folder(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "stormguard-config-tls-{}-{name}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["api.test".to_string()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("api.crt"), leaf.pem()).unwrap();
    std::fs::write(dir.join("api.key"), key.serialize_pem()).unwrap();
    std::fs::write(dir.join("junk.pem"), "not a certificate\n").unwrap();
    dir
}

#[test]
fn https_instances_mean_tls_on_port_443_by_default() {
    let config = config(&upstream(
        "instances = [\"https://api.internal\", \"https://api-2.internal:8443\"]",
    ));
    let api = &config.upstreams["api"];
    assert_eq!(api.instances, ["api.internal:443", "api-2.internal:8443"]);
    assert_eq!(
        api.tls,
        Some(UpstreamTls {
            server_name: None,
            ca_file: None,
            client_cert: None
        })
    );
    let plain = config_plain();
    assert_eq!(plain.upstreams["api"].tls, None);
}

fn config_plain() -> Config {
    config(&upstream("instances = [\"127.0.0.1:9001\"]\ntls = false"))
}

#[test]
fn an_ip_instance_with_tls_needs_server_name() {
    let error = refused(&upstream("instances = [\"127.0.0.1:9443\"]\ntls = true"));
    assert!(
        error.starts_with(
            "p.toml:2:14: `upstreams.api.instances[0]`: \"127.0.0.1\" is an IP address"
        ),
        "{error}"
    );
    assert!(error.contains("set server_name"), "{error}");
    let named =
        upstream("instances = [\"127.0.0.1:9443\"]\ntls = true\nserver_name = \"api.test\"");
    let tls = config(&named).upstreams["api"].tls.clone().unwrap();
    assert_eq!(tls.server_name.as_deref(), Some("api.test"));
}

#[test]
fn an_upstream_speaks_tls_to_all_its_instances_or_none() {
    let error = refused(&upstream(
        "instances = [\"https://api-1.internal\", \"api-2.internal:443\"]",
    ));
    assert!(
        error.starts_with("p.toml:2:40: `upstreams.api.instances[1]`: the other instances are"),
        "{error}"
    );
    let error = refused(&upstream(
        "instances = [\"https://api.internal\"]\ntls = false",
    ));
    assert!(
        error.starts_with("p.toml:3:7: `upstreams.api.tls`: tls = false"),
        "{error}"
    );
    // tls = true takes both spellings.
    let both = "instances = [\"https://api-1.internal\", \"api-2.internal:443\"]\ntls = true";
    assert!(config(&upstream(both)).upstreams["api"].tls.is_some());
}

#[test]
fn tls_keys_on_a_plain_upstream_are_refused() {
    for (key, value) in [
        ("server_name", "\"api.test\""),
        ("ca_file", "\"ca.pem\""),
        ("cert_file", "\"a.crt\""),
        ("key_file", "\"a.key\""),
    ] {
        let error = refused(&upstream(&format!(
            "instances = [\"api.internal:80\"]\n{key} = {value}"
        )));
        let at = format!(
            "p.toml:3:{}: `upstreams.api.{key}`: {key} applies to TLS",
            key.len() + 4
        );
        assert!(error.starts_with(&at), "{error}");
    }
}

#[test]
fn unreadable_and_invalid_pem_files_are_refused_at_their_key() {
    let dir = pem_folder("refused");
    let file = |name: &str| dir.join(name).display().to_string();
    let https = "instances = [\"https://api.test\"]";
    let error = refused(&upstream(&format!(
        "{https}\nca_file = \"/nonexistent/ca.pem\""
    )));
    assert!(
        error.starts_with("p.toml:3:11: `upstreams.api.ca_file`: cannot read /nonexistent/ca.pem"),
        "{error}"
    );
    let error = refused(&upstream(&format!(
        "{https}\nca_file = {:?}",
        file("junk.pem")
    )));
    assert!(error.contains("`upstreams.api.ca_file`: "), "{error}");
    assert!(error.contains("junk.pem holds no certificate"), "{error}");
    let error = refused(&upstream(&format!(
        "{https}\ncert_file = {:?}\nkey_file = {:?}",
        file("api.crt"),
        file("api.crt")
    )));
    assert!(
        error.starts_with("p.toml:4:12: `upstreams.api.key_file`: "),
        "{error}"
    );
    assert!(error.contains("holds no private key"), "{error}");
    let error = refused(&upstream(&format!(
        "{https}\ncert_file = {:?}",
        file("api.crt")
    )));
    assert!(
        error.starts_with("p.toml:3:13: `upstreams.api.key_file`: missing"),
        "{error}"
    );
    // A key that is not the certificate's.
    let other = pem_folder("other");
    let error = refused(&upstream(&format!(
        "{https}\ncert_file = {:?}\nkey_file = {:?}",
        file("api.crt"),
        other.join("api.key").display().to_string()
    )));
    assert!(
        error.starts_with("p.toml:4:12: `upstreams.api.key_file`: "),
        "{error}"
    );
    assert!(error.contains("does not go with cert_file"), "{error}");
    let good = config(&upstream(&format!(
        "{https}\nca_file = {:?}\ncert_file = {:?}\nkey_file = {:?}",
        file("ca.pem"),
        file("api.crt"),
        file("api.key")
    )));
    let tls = good.upstreams["api"].tls.clone().unwrap();
    assert_eq!(tls.ca_file.unwrap().path, dir.join("ca.pem"));
    assert!(tls.client_cert.is_some());
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&other).unwrap();
}

#[test]
fn relative_paths_are_in_the_settings_files_folder() {
    let dir = pem_folder("relative");
    let settings = dir.join("stormguard.toml").display().to_string();
    let text = format!(
        "[listen]\ntls = {{ cert_file = \"api.crt\", key_file = \"api.key\" }}\n{}",
        upstream("instances = [\"https://api.test\"]\nca_file = \"ca.pem\"")
    );
    let config = parse(&settings, &text).unwrap();
    let listen = config.listen.tls.clone().unwrap();
    assert_eq!(listen.cert_file.path, dir.join("api.crt"));
    assert_eq!(listen.key_file.path, dir.join("api.key"));
    assert_eq!(
        config.pem_files(),
        [dir.join("api.crt"), dir.join("api.key"), dir.join("ca.pem")]
    );
    // The key's bytes never reach `/config` or a log line.
    assert!(!format!("{config:?}").contains("PRIVATE KEY"));
    let json = to_json(&config);
    assert_eq!(
        json["listen"]["tls"]["key_file"],
        dir.join("api.key").display().to_string()
    );
    assert_eq!(json["upstreams"]["api"]["tls"], true);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn listen_tls_needs_both_files_and_no_other_key() {
    let dir = pem_folder("listen");
    let crt = dir.join("api.crt").display().to_string();
    let error = refused(&format!(
        "[listen]\ntls = {{ cert_file = {crt:?} }}\n{MINIMAL}"
    ));
    assert!(
        error.starts_with("p.toml:2:21: `listen.tls.key_file`: missing"),
        "{error}"
    );
    let error = refused(&format!("[listen]\ntls = {{ cert = {crt:?} }}\n{MINIMAL}"));
    assert!(
        error.contains("valid keys here: `cert_file`, `key_file`"),
        "{error}"
    );
    let error = refused(&format!("[listen]\ntls = {{}}\n{MINIMAL}"));
    assert!(
        error.starts_with("p.toml:2:7: `listen.tls.cert_file`: missing"),
        "{error}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
