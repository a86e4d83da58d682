use super::*;
use crate::doc::parse_documents;

fn edit(text: &str, doc: usize, values: &[(&str, Val)]) -> String {
    let docs = parse_documents("f.yaml", text).unwrap();
    let values: Vec<(Path, Val)> = values
        .iter()
        .map(|(p, v)| (parse_path(p), v.clone()))
        .collect();
    let edits = edits(&docs[doc], &values).unwrap();
    let out = apply(text, edits);
    // Whatever was written, the file still parses.
    parse_documents("out.yaml", &out).unwrap_or_else(|e| panic!("{e}\n{out}"));
    out
}

const VS: &str = "\
# reviews routing, owned by team books
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews # the name
spec:
  hosts:
  - reviews
  http:
  - name: v2   # canary
    match:
    - headers:
        end-user: {exact: jason}
    route:
    - destination: {host: reviews, subset: v2}
  - route:
    - destination:
        host: reviews
    timeout: 10s # agreed with SRE
    retries:
      attempts: 3
      retryOn: 'gateway-error,connect-failure'

      # trailing comment stays
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
";

#[test]
fn replaces_scalars_in_place_keeping_comments_and_quotes() {
    let out = edit(
        VS,
        0,
        &[
            ("spec.http[1].timeout", Val::str("2s")),
            ("spec.http[1].retries.attempts", Val::Int(1)),
            ("spec.http[1].retries.retry_on", Val::str("connect-failure")),
        ],
    );
    let expected = VS
        .replace("timeout: 10s # agreed", "timeout: 2s # agreed")
        .replace("attempts: 3", "attempts: 1")
        .replace("'gateway-error,connect-failure'", "'connect-failure'");
    assert_eq!(out, expected);
}

#[test]
fn inserts_missing_keys_at_the_mapping_indentation() {
    let out = edit(
        VS,
        0,
        &[
            ("spec.http[1].retries.perTryTimeout", Val::str("500ms")),
            ("spec.http[0].retries.attempts", Val::Int(2)),
            (
                "spec.http[0].retries.retryOn",
                Val::str("connect-failure,503"),
            ),
            ("spec.http[0].timeout", Val::str("3s")),
        ],
    );
    let expected = VS
        .replace(
            "    - destination: {host: reviews, subset: v2}\n",
            "    - destination: {host: reviews, subset: v2}\n    retries:\n      attempts: 2\n      \
             retryOn: connect-failure,503\n    timeout: 3s\n",
        )
        .replace(
            "      retryOn: 'gateway-error,connect-failure'\n",
            "      retryOn: 'gateway-error,connect-failure'\n      perTryTimeout: 500ms\n",
        );
    assert_eq!(out, expected);
}

#[test]
fn other_documents_and_flow_mappings() {
    let out = edit(
        VS,
        1,
        &[
            ("metadata.namespace", Val::str("prod")),
            (
                "spec.trafficPolicy.connectionPool.tcp.connectTimeout",
                Val::str("250ms"),
            ),
        ],
    );
    let expected = VS.replace(
        "metadata: {name: reviews}",
        "metadata: {name: reviews, namespace: prod}",
    )
        + "  trafficPolicy:\n    connectionPool:\n      tcp:\n        connectTimeout: 250ms\n";
    // The DestinationRule is the last document: the VirtualService above is untouched.
    assert_eq!(out, expected);
    assert_eq!(
        &out[..VS.find("---").unwrap()],
        &VS[..VS.find("---").unwrap()]
    );
}

#[test]
fn json_keeps_its_layout_and_quotes() {
    let text = "{\n  \"methodConfig\": [\n    {\n      \"name\": [{\"service\": \"reviews\"}],\n      \
                \"timeout\": \"1s\",\n      \"retryPolicy\": {\"maxAttempts\": 3, \"initialBackoff\": \"0.1s\"}\n    }\n  ]\n}\n";
    let out = edit(
        text,
        0,
        &[
            ("methodConfig[0].timeout", Val::str("2.5s")),
            ("methodConfig[0].retryPolicy.maxAttempts", Val::Int(4)),
            ("methodConfig[0].retryPolicy.maxBackoff", Val::str("1s")),
            (
                "methodConfig[0].retryPolicy.retryableStatusCodes",
                Val::List(vec![Val::str("UNAVAILABLE")]),
            ),
            (
                "retryThrottling",
                Val::Map(vec![("maxTokens".into(), Val::Int(10))]),
            ),
        ],
    );
    let value: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}\n{out}"));
    assert_eq!(value["methodConfig"][0]["timeout"], "2.5s");
    assert_eq!(value["methodConfig"][0]["retryPolicy"]["maxAttempts"], 4);
    assert_eq!(value["methodConfig"][0]["retryPolicy"]["maxBackoff"], "1s");
    assert_eq!(
        value["methodConfig"][0]["retryPolicy"]["retryableStatusCodes"][0],
        "UNAVAILABLE"
    );
    assert_eq!(value["retryThrottling"]["maxTokens"], 10);
    assert!(out.starts_with("{\n  \"methodConfig\": [\n    {\n      \"name\": [{\"service\": \"reviews\"}],\n      \"timeout\": \"2.5s\",\n"), "{out}");
}

#[test]
fn empty_keys_and_snake_case_paths_find_camel_keys() {
    let text =
        "route:\n  timeout: 15s\n  retryPolicy:\n    numRetries: \"2\"\n  hedge:\nafter: 1\n";
    let out = edit(
        text,
        0,
        &[
            ("route.retry_policy.num_retries", Val::Int(4)),
            ("route.retry_policy.per_try_timeout", Val::str("1s")),
            ("route.hedge.hedge_on_per_try_timeout", Val::Bool(true)),
        ],
    );
    assert_eq!(
        out,
        "route:\n  timeout: 15s\n  retryPolicy:\n    numRetries: \"4\"\n    perTryTimeout: 1s\n  \
         hedge:\n    hedgeOnPerTryTimeout: true\nafter: 1\n"
    );
}

#[test]
fn lists_are_replaced_whole() {
    let text = "r:\n  codes:\n  - 500 # a\n  - 503\n  attempts: 1\n";
    let out = edit(
        text,
        0,
        &[("r.codes", Val::List(vec![Val::Int(502), Val::Int(504)]))],
    );
    assert_eq!(out, "r:\n  codes: [502, 504]\n  attempts: 1\n");
    let text = "r: {codes: [500, 503], attempts: 1}\n";
    let out = edit(
        text,
        0,
        &[
            ("r.codes", Val::List(vec![Val::Int(502)])),
            ("r.backoff", Val::str("1s")),
        ],
    );
    assert_eq!(out, "r: {codes: [502], attempts: 1, backoff: 1s}\n");
}

#[test]
fn a_file_without_final_newline() {
    let text = "a:\n  b: 1";
    let out = edit(text, 0, &[("a.c", Val::Int(2))]);
    assert_eq!(out, "a:\n  b: 1\n  c: 2\n");
}

#[test]
fn keys_are_removed_with_their_lines_or_commas() {
    let out = edit(
        VS,
        0,
        &[
            ("spec.http[1].retries", Val::Remove),
            ("spec.http[1].fault", Val::Remove),
            ("spec.http[0].absent.deeper", Val::Remove),
        ],
    );
    assert_eq!(
        out,
        VS.replace(
            "    retries:\n      attempts: 3\n      retryOn: 'gateway-error,connect-failure'\n",
            ""
        )
    );
    let text = "{\n  \"a\": 1,\n  \"hedgingPolicy\": {\"maxAttempts\": 2},\n  \"c\": [3]\n}\n";
    assert_eq!(
        edit(text, 0, &[("hedgingPolicy", Val::Remove)]),
        "{\n  \"a\": 1,\n  \"c\": [3]\n}\n"
    );
    assert_eq!(
        edit(text, 0, &[("c", Val::Remove)]),
        "{\n  \"a\": 1,\n  \"hedgingPolicy\": {\"maxAttempts\": 2}\n}\n"
    );
}

#[test]
fn the_last_annotation_removed_takes_its_key_along() {
    let text = "\
apiVersion: v1
kind: Service
metadata:
  name: api
  annotations:
    retry.linkerd.io/http: 5xx
    retry.linkerd.io/limit: \"2\"
  labels:
    app: api
spec: {}
";
    let docs = parse_documents("f.yaml", text).unwrap();
    let remove = |key: &str| (keys(&["metadata", "annotations", key]), Val::Remove);
    let both = [
        remove("retry.linkerd.io/http"),
        remove("retry.linkerd.io/limit"),
    ];
    let out = apply(text, edits(&docs[0], &both).unwrap());
    // `annotations:` with nothing under it would read as null.
    assert_eq!(
        out,
        text.replace(
            "  annotations:\n    retry.linkerd.io/http: 5xx\n    retry.linkerd.io/limit: \"2\"\n",
            ""
        )
    );
    // One of two: the other stays under its key.
    let one = [remove("retry.linkerd.io/http")];
    let out = apply(text, edits(&docs[0], &one).unwrap());
    assert_eq!(out, text.replace("    retry.linkerd.io/http: 5xx\n", ""));
    // In flow style too; and a map elsewhere named `annotations` keeps its key.
    let text = "metadata: {name: api, annotations: {a: b}}\nspec:\n  annotations:\n    a: b\n";
    let docs = parse_documents("f.yaml", text).unwrap();
    let values = [
        (keys(&["metadata", "annotations", "a"]), Val::Remove),
        (keys(&["spec", "annotations", "a"]), Val::Remove),
    ];
    let out = apply(text, edits(&docs[0], &values).unwrap());
    assert_eq!(out, "metadata: {name: api}\nspec:\n  annotations:\n");
}

#[test]
fn a_merged_key_is_written_into_the_mapping_that_merges_it_not_its_anchor() {
    // The anchor's `timeout` is route one's too: an edit there would change both routes.
    let text = "\
spec:
  http:
  - &r
    name: one
    timeout: 2s
  - <<: *r
    name: two
";
    let out = edit(text, 0, &[("spec.http[1].timeout", Val::Str("5s".into()))]);
    assert!(out.contains("    name: one\n    timeout: 2s\n"), "{out}");
    let docs = parse_documents("out.yaml", &out).unwrap();
    let http = docs[0]
        .root
        .get("spec")
        .unwrap()
        .get("http")
        .unwrap()
        .items();
    assert_eq!(http[0].get("timeout").unwrap().as_str(), Some("2s"));
    assert_eq!(http[1].get("timeout").unwrap().as_str(), Some("5s"));
}

#[test]
fn a_merged_value_already_there_is_not_written_and_a_merged_mapping_is_not_patched() {
    let text = "\
spec:
  http:
  - &r
    name: one
    timeout: 2s
    retries: {attempts: 2, retryOn: 5xx}
  - <<: *r
    name: two
";
    let docs = parse_documents("f.yaml", text).unwrap();
    // The value the merge gives already: nothing written (an unchanged export wrote it out).
    let same = [(parse_path("spec.http[1].timeout"), Val::Str("2s".into()))];
    let out = apply(text, edits(&docs[0], &same).unwrap());
    assert_eq!(out, text);
    let nested_same = [(parse_path("spec.http[1].retries.attempts"), Val::Int(2))];
    assert_eq!(apply(text, edits(&docs[0], &nested_same).unwrap()), text);
    // A part of a merged mapping: written here, `retries` would replace the merged one whole
    // and lose its retryOn; refused, at the mapping, for a person to do.
    let nested = [(parse_path("spec.http[1].retries.attempts"), Val::Int(3))];
    let error = edits(&docs[0], &nested).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("part of a mapping brought in by a merge key"),
        "{error}"
    );
    // Nor is a merged key removed from its anchor.
    let removed = [(parse_path("spec.http[1].timeout"), Val::Remove)];
    assert!(edits(&docs[0], &removed).is_err());
}

#[test]
fn a_change_inside_what_an_alias_copies_is_refused() {
    // Route two's mapping is an anchor route three merges: a timeout written into two would
    // move three's too (a review).
    let text = "\
spec:
  http:
  - &mid
    name: two
    timeout: 2s
  - <<: *mid
    name: three
";
    let docs = parse_documents("f.yaml", text).unwrap();
    let two = [(parse_path("spec.http[0].timeout"), Val::Str("6s".into()))];
    let error = edits(&docs[0], &two).unwrap_err();
    assert!(
        error.to_string().contains("copied elsewhere by an alias"),
        "{error}"
    );
    assert_eq!(error.line, 5);
    // The same value: nothing changes, nothing refused.
    let same = [(parse_path("spec.http[0].timeout"), Val::Str("2s".into()))];
    assert_eq!(apply(text, edits(&docs[0], &same).unwrap()), text);
    // Outside the anchor: written.
    let three = [(parse_path("spec.http[1].timeout"), Val::Str("6s".into()))];
    let out = apply(text, edits(&docs[0], &three).unwrap());
    assert!(out.ends_with("    name: three\n    timeout: 6s\n"), "{out}");
}
