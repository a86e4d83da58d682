//! A service's endpoints (`[services.NAME.endpoints.EP]`): the kinds of request it serves, each
//! with its share of the requests and its own calls, and a call's `endpoint`, which names one of
//! its callee's.
//!
//! Why a service may not have both top-level `calls` and `endpoints`: the top-level calls would
//! have to mean either "made by every endpoint too" or "an endpoint of their own", and a reader of
//! the file could not tell which the author meant; refusing both makes the author say it.

use std::collections::BTreeMap;

use toml::Spanned;

use super::convert::Converter;
use super::locate::KeyPath;
use super::ranges::WEIGHT;
use super::raw::{RawCall, RawEndpoint, RawService};
use super::ParseError;
use crate::model::{Call, Endpoint};

/// The names of `raw`'s endpoints in file order: the order a report and the simulator's
/// per-endpoint counts list them in.
pub(super) fn names(raw: &RawService) -> Vec<String> {
    let mut named: Vec<(&String, usize)> = raw
        .endpoints
        .iter()
        .map(|(name, endpoint)| (name, endpoint.span().start))
        .collect();
    named.sort_by_key(|&(name, at)| (at, name.clone()));
    named.into_iter().map(|(name, _)| name.clone()).collect()
}

impl Converter<'_> {
    /// A service's top-level calls and its endpoints, of which the file may give one kind.
    pub(super) fn service_calls(
        &self,
        calls: Vec<Spanned<RawCall>>,
        endpoints: BTreeMap<String, Spanned<RawEndpoint>>,
        path: &KeyPath,
    ) -> Result<(Vec<Call>, Vec<Endpoint>), ParseError> {
        if let (Some(call), Some(name)) = (calls.first(), endpoints.keys().next()) {
            return Err(self.error(
                call.span().start,
                &path.key("calls"),
                format!(
                    "this service has endpoints, so its calls go under the endpoint that makes \
                     them: move them to [[{}.calls]] (or to the endpoint of each), or remove \
                     the endpoints to make these calls on every request",
                    path.key("endpoints").key(name)
                ),
            ));
        }
        let calls = self.calls(calls, &path.key("calls"))?;
        let mut endpoints = endpoints
            .into_iter()
            .map(|(name, raw)| self.endpoint(name, raw, path))
            .collect::<Result<Vec<_>, _>>()?;
        endpoints.sort_by(|a, b| a.span.cmp(&b.span).then_with(|| a.name.cmp(&b.name)));
        Ok((calls, endpoints))
    }

    fn calls(&self, raw: Vec<Spanned<RawCall>>, path: &KeyPath) -> Result<Vec<Call>, ParseError> {
        raw.into_iter()
            .enumerate()
            .map(|(i, call)| self.call(call, &path.index(i)))
            .collect()
    }

    fn endpoint(
        &self,
        name: String,
        raw: Spanned<RawEndpoint>,
        service: &KeyPath,
    ) -> Result<Endpoint, ParseError> {
        let path = service.key("endpoints").key(&name);
        let offset = raw.span().start;
        self.printable_name(&name, offset, &path)?;
        let raw = raw.into_inner();
        let weight = self.number_or(raw.weight.as_ref(), &path, "weight", &WEIGHT, 1.0)?;
        Ok(Endpoint {
            calls: self.calls(raw.calls, &path.key("calls"))?,
            name,
            weight,
            span: self.span(offset),
        })
    }

    /// A call's `endpoint`: one of the named endpoints of `to`, the service it calls.
    pub(super) fn called_endpoint(
        &self,
        value: Option<&Spanned<String>>,
        to: &str,
        path: &KeyPath,
    ) -> Result<Option<String>, ParseError> {
        let Some(value) = value else {
            return Ok(None);
        };
        let name = value.get_ref();
        let known = self.endpoints.get(to).map_or(&[][..], Vec::as_slice);
        if known.contains(name) {
            return Ok(Some(name.clone()));
        }
        let table = KeyPath::default()
            .key("services")
            .key(to)
            .key("endpoints")
            .key(name);
        let message = if known.is_empty() {
            format!(
                "{to} has no endpoints, so every call to it goes to its calls: remove endpoint, \
                 or add [{table}] to {to}"
            )
        } else {
            format!(
                "unknown endpoint {name:?} of {to}: there is no [{table}]; known endpoints of \
                 {to}: {}",
                known.join(", ")
            )
        };
        Err(self.error(value.span().start, &path.key("endpoint"), message))
    }
}

#[cfg(test)]
mod tests {
    use crate::model::Span;

    /// A gateway whose requests are browsing (9 in 10) or checkout (1 in 10), checkout calling
    /// the `place` endpoint of orders; `{extra}` goes at the end.
    fn gateway(extra: &str) -> String {
        format!(
            "[entry]
service = \"gateway\"
[services.gateway.endpoints.browse]
weight = 9
[[services.gateway.endpoints.browse.calls]]
to = \"catalog\"
timeout = \"300ms\"
[services.gateway.endpoints.checkout]
[[services.gateway.endpoints.checkout.calls]]
to = \"orders\"
endpoint = \"place\"
[services.catalog]
[services.orders.endpoints.status]
[services.orders.endpoints.place]
{extra}"
        )
    }

    fn error(text: &str) -> String {
        crate::parse("g.toml", text).unwrap_err().to_string()
    }

    #[test]
    fn endpoints_are_read_in_file_order_with_their_weights_and_calls() {
        let graph = crate::parse("g.toml", &gateway("")).unwrap();
        let gateway = &graph.services["gateway"];
        assert!(gateway.calls.is_empty());
        let names: Vec<(&str, f64, usize)> = gateway
            .endpoints
            .iter()
            .map(|e| (e.name.as_str(), e.weight, e.calls.len()))
            .collect();
        assert_eq!(names, [("browse", 9.0, 1), ("checkout", 1.0, 1)]);
        assert_eq!(gateway.endpoints[0].span, Span { line: 3, column: 1 });
        assert_eq!(
            gateway.endpoints[1].calls[0].span,
            Span { line: 9, column: 1 }
        );
        assert_eq!(
            gateway.endpoints[1].calls[0].endpoint.as_deref(),
            Some("place")
        );
        assert_eq!(gateway.endpoints[0].calls[0].endpoint, None);
        // orders' endpoints in file order, not by name.
        let orders: Vec<&str> = graph.services["orders"]
            .endpoints
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        assert_eq!(orders, ["status", "place"]);
        assert!(graph.services["catalog"].endpoints.is_empty());
    }

    #[test]
    fn a_service_with_calls_and_endpoints_is_refused_at_its_first_call() {
        let text = gateway("[[services.gateway.calls]]\nto = \"catalog\"\n");
        assert_eq!(
            error(&text),
            "g.toml:15:1: `services.gateway.calls`: this service has endpoints, so its calls go \
             under the endpoint that makes them: move them to \
             [[services.gateway.endpoints.browse.calls]] (or to the endpoint of each), or remove \
             the endpoints to make these calls on every request"
        );
    }

    #[test]
    fn an_unknown_endpoint_is_refused_at_its_value_listing_the_known_ones() {
        let text = gateway("").replace("endpoint = \"place\"", "endpoint = \"pay\"");
        assert_eq!(
            error(&text),
            "g.toml:11:12: `services.gateway.endpoints.checkout.calls[0].endpoint`: unknown \
             endpoint \"pay\" of orders: there is no [services.orders.endpoints.pay]; known \
             endpoints of orders: status, place"
        );
    }

    #[test]
    fn an_endpoint_of_a_service_without_endpoints_is_refused() {
        let text = gateway("").replace(
            "to = \"catalog\"\ntimeout",
            "to = \"catalog\"\nendpoint = \"list\"\ntimeout",
        );
        assert_eq!(
            error(&text),
            "g.toml:7:12: `services.gateway.endpoints.browse.calls[0].endpoint`: catalog has no \
             endpoints, so every call to it goes to its calls: remove endpoint, or add \
             [services.catalog.endpoints.list] to catalog"
        );
    }

    #[test]
    fn a_weight_that_is_not_above_zero_is_refused_at_its_value() {
        for weight in ["0", "-1", "nan", "inf", "1000001"] {
            let text = gateway("").replace("weight = 9", &format!("weight = {weight}"));
            let message = error(&text);
            assert!(
                message.starts_with(&format!(
                    "g.toml:4:10: `services.gateway.endpoints.browse.weight`: {}",
                    weight.replace("nan", "NaN (not a number)")
                )),
                "{message}"
            );
            assert!(
                message.contains("an endpoint's weight is above 0, at most 1000000"),
                "{message}"
            );
        }
    }

    #[test]
    fn an_endpoint_takes_weight_and_calls_only() {
        let text = gateway("").replace("weight = 9", "wieght = 9");
        assert_eq!(
            error(&text),
            "g.toml:4:1: `services.gateway.endpoints.browse.wieght`: unknown key `wieght`; did \
             you mean `weight`? valid keys here: `weight`, `calls`"
        );
    }

    #[test]
    fn an_endpoints_call_is_located_under_its_endpoint() {
        let text = gateway("").replace("timeout = \"300ms\"", "timeout = 5");
        let message = error(&text);
        assert!(
            message.starts_with(
                "g.toml:7:11: `services.gateway.endpoints.browse.calls[0].timeout`: the bare \
                 number 5"
            ),
            "{message}"
        );
    }
}
