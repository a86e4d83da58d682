//! One call: the edge of the graph where nearly every setting lives, so nearly every check.

use std::collections::BTreeMap;

use toml::Spanned;

use super::convert::Converter;
use super::locate::KeyPath;
use super::policy_keys::DEFAULT_METHOD;
use super::ranges::COUNT;
use super::raw::RawCall;
use super::ParseError;
use crate::model::Call;

impl Converter<'_> {
    pub(super) fn call(&self, raw: Spanned<RawCall>, path: &KeyPath) -> Result<Call, ParseError> {
        let offset = raw.span().start;
        let raw = raw.into_inner();
        let to = self.required_service(raw.to.as_ref(), offset, path, "to", "this call goes to")?;
        let endpoint = self.called_endpoint(raw.endpoint.as_ref(), &to, path)?;
        let count = self.whole_or(raw.count.as_ref(), path, "count", &COUNT, 1)?;
        let method = self.method(raw.method.as_ref(), path)?;
        let policy = self.policy(crate::policy_keys!(raw, offset), path, "call")?;
        self.metrics_key(raw.metrics.as_ref(), path)?;
        Ok(Call {
            to,
            endpoint,
            timeout: policy.timeout,
            request_timeout: policy.request_timeout,
            connect_timeout: policy.connect_timeout,
            rtt: self.rtt(raw.rtt.as_ref(), path)?,
            max_attempts: policy.max_attempts,
            backoff: policy.backoff,
            limiter: policy.limiter,
            idempotent: policy.idempotent,
            method,
            retry_on: policy.retry_on,
            count,
            parallel: raw.parallel.unwrap_or(false),
            required: raw.required.unwrap_or(true),
            hedge: policy.hedge,
            propagate_deadline: policy.propagate_deadline,
            span: self.span(offset),
        })
    }

    /// `method`: an HTTP method in capitals (default GET), read by `idempotent = "by-method"`.
    fn method(
        &self,
        value: Option<&Spanned<String>>,
        path: &KeyPath,
    ) -> Result<String, ParseError> {
        let Some(value) = value else {
            return Ok(DEFAULT_METHOD.to_string());
        };
        let method = value.get_ref();
        let valid = !method.is_empty()
            && method.len() <= 32
            && method.bytes().all(|b| b.is_ascii_uppercase() || b == b'-');
        if !valid {
            return Err(self.error(
                value.span().start,
                &path.key("method"),
                format!(
                    "{method:?} is not an HTTP method: write it in capitals, e.g. \"GET\" or \
                     \"POST\""
                ),
            ));
        }
        Ok(method.clone())
    }

    /// Checks a call's `metrics` key: label names as Prometheus spells them (`__name__` for the
    /// metric), no `le` (it tells buckets apart, not series), no empty value (Prometheus drops
    /// an empty label, so it would match nothing).
    fn metrics_key(
        &self,
        metrics: Option<&Spanned<BTreeMap<String, Spanned<String>>>>,
        path: &KeyPath,
    ) -> Result<(), ParseError> {
        let Some(metrics) = metrics else {
            return Ok(());
        };
        let path = path.key("metrics");
        if metrics.get_ref().is_empty() {
            return Err(self.error(
                metrics.span().start,
                &path,
                "no labels: name the labels of this call's latency histogram, e.g. \
                 { job = \"api\", route = \"/users\" }, or remove the key",
            ));
        }
        for (name, value) in metrics.get_ref() {
            let valid = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            let problem = if !valid {
                format!(
                    "`{name}` is not a Prometheus label name: letters, digits and `_`, not \
                     starting with a digit"
                )
            } else if name == "le" {
                "`le` is the bound of a bucket, not a label of the series: leave it out".into()
            } else if value.get_ref().is_empty() {
                format!("`{name}` is empty: Prometheus drops empty labels, so it matches nothing")
            } else {
                continue;
            };
            return Err(self.error(value.span().start, &path.key(name), problem));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    const CALL: &str =
        "[entry]\nservice = \"web\"\n[services.api]\n[[services.web.calls]]\nto = \"api\"\n";

    fn parse(metrics: &str) -> Result<crate::Graph, String> {
        crate::parse("g.toml", &format!("{CALL}metrics = {metrics}\n")).map_err(|e| e.to_string())
    }

    #[test]
    fn a_metrics_key_of_labels_is_accepted() {
        assert!(parse(r#"{ job = "api", route = "/users", __name__ = "rpc_seconds" }"#).is_ok());
    }

    #[test]
    fn a_metrics_key_is_refused_at_its_place_with_the_fix() {
        assert_eq!(
            parse("{}").unwrap_err(),
            "g.toml:6:11: `services.web.calls[0].metrics`: no labels: name the labels of this \
             call's latency histogram, e.g. { job = \"api\", route = \"/users\" }, or remove the key"
        );
        assert_eq!(
            parse(r#"{ job = "api", le = "0.1" }"#).unwrap_err(),
            "g.toml:6:31: `services.web.calls[0].metrics.le`: `le` is the bound of a bucket, not \
             a label of the series: leave it out"
        );
        assert_eq!(
            parse(r#"{ "9x" = "a" }"#).unwrap_err(),
            "g.toml:6:20: `services.web.calls[0].metrics.9x`: `9x` is not a Prometheus label \
             name: letters, digits and `_`, not starting with a digit"
        );
        assert_eq!(
            parse(r#"{ job = "" }"#).unwrap_err(),
            "g.toml:6:19: `services.web.calls[0].metrics.job`: `job` is empty: Prometheus drops \
             empty labels, so it matches nothing"
        );
        assert!(parse(r#"{ job = 1 }"#).unwrap_err().contains("metrics.job"));
    }
}
