//! The `sluice-webhook` category: both webhook configurations exist, their
//! `caBundle` is a valid, unexpired PEM certificate, their Service has ready
//! endpoints, and the serving certificate the controller presents verifies
//! against `caBundle` for the Service's name, as the API server requires.

mod dry_run;
pub mod endpoints;

use super::certs::{self, BundleCert};
use super::report::Category;
use super::{CA_SECRET, Context, MUTATING_CONFIG, VALIDATING_CONFIG};
use endpoints::Target;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use std::net::SocketAddr;

/// Key of the mesh root in the CA Secret (as the controller writes it).
const ROOT_KEY: &str = "root-cert.pem";
/// How many endpoints are tried for the serving certificate.
const MAX_TRIES: usize = 3;

/// Each webhook of one configuration, whichever its kind: name and client config.
type Hooks = Vec<(String, WebhookClientConfig)>;

/// The category.
pub async fn check(ctx: &Context) -> Category {
    let mut out = Category::new("sluice-webhook");
    let mutating: Api<MutatingWebhookConfiguration> = Api::all(ctx.client.clone());
    let found = mutating.get_opt(MUTATING_CONFIG).await.map(|o| {
        o.map(|c| {
            c.webhooks
                .into_iter()
                .flatten()
                .map(|w| (w.name, w.client_config))
                .collect()
        })
    });
    configuration(
        ctx,
        &mut out,
        "MutatingWebhookConfiguration",
        MUTATING_CONFIG,
        found,
        true,
    )
    .await;
    let validating: Api<ValidatingWebhookConfiguration> = Api::all(ctx.client.clone());
    let found = validating.get_opt(VALIDATING_CONFIG).await.map(|o| {
        o.map(|c| {
            c.webhooks
                .into_iter()
                .flatten()
                .map(|w| (w.name, w.client_config))
                .collect()
        })
    });
    let hooks = configuration(
        ctx,
        &mut out,
        "ValidatingWebhookConfiguration",
        VALIDATING_CONFIG,
        found,
        false,
    )
    .await;
    for hook in hooks {
        dry_run::check(&ctx.client, &ctx.namespace, &hook, &mut out).await;
    }
    out
}

/// Checks one configuration; `required` fails a missing one (injection),
/// otherwise it is a warning (validation can be turned off in the chart).
/// Returns the names of its webhooks.
async fn configuration(
    ctx: &Context,
    out: &mut Category,
    kind: &str,
    name: &str,
    found: Result<Option<Hooks>, kube::Error>,
    required: bool,
) -> Vec<String> {
    let what = format!("{kind} {name} exists");
    let hint = format!(
        "helm upgrade sluice charts/sluice -n {} --reuse-values --set webhooks.{}=true",
        ctx.namespace,
        if required { "injection" } else { "validation" }
    );
    let hooks = match found {
        Ok(Some(c)) => {
            out.pass(what);
            c
        }
        Ok(None) if required => {
            out.fail(what, "not found", &hint);
            return Vec::new();
        }
        Ok(None) => {
            out.warn(what, "not found: objects are not validated at apply", &hint);
            return Vec::new();
        }
        Err(e) => {
            out.fail(what, format!("cannot read it: {e}"), &hint);
            return Vec::new();
        }
    };
    let ca_hint = format!(
        "the controller writes the mesh root into caBundle at start and whenever it changes: \
         check that it runs and may patch {kind} {name} \
         (kubectl -n {} logs deploy/sluice-controller | grep caBundle)",
        ctx.namespace
    );
    let now = unix_now();
    for (hook, client) in &hooks {
        let bundle = match client.ca_bundle.as_ref().map(|b| b.0.as_slice()) {
            None | Some([]) => Err("has no caBundle yet".to_owned()),
            Some(pem) => certs::parse_bundle(pem, now).map_err(|e| format!("caBundle {e}")),
        };
        let what = format!("webhook {hook} of {kind} {name} has a valid, unexpired caBundle");
        let bundle = match bundle {
            Ok(b) => {
                let until = b
                    .iter()
                    .min_by_key(|c| c.not_after)
                    .map(|c| c.not_after_text.clone())
                    .unwrap_or_default();
                out.pass(format!("{what} (until {until})"));
                b
            }
            Err(why) => {
                out.fail(what, format!("webhook {hook} {why}"), &ca_hint);
                continue;
            }
        };
        serving_cert(ctx, out, hook, client, &bundle, &ca_hint).await;
    }
    hooks.into_iter().map(|(name, _)| name).collect()
}

/// Checks the Service (or url) behind `hook` and the certificate served there.
async fn serving_cert(
    ctx: &Context,
    out: &mut Category,
    hook: &str,
    client: &WebhookClientConfig,
    bundle: &[BundleCert],
    ca_hint: &str,
) {
    let Some(target) = Target::of(client) else {
        return out.fail(
            format!("webhook {hook} names a service or url"),
            "clientConfig has neither a service nor a valid url",
            "reinstall the chart's webhook configurations",
        );
    };
    let addrs = match &target {
        Target::Service {
            namespace,
            name,
            port,
        } => {
            let what = format!("webhook {hook}: Service {namespace}/{name} has ready endpoints");
            let hint = format!(
                "the Service selects the controller pods, which must be Ready: kubectl -n \
                 {namespace} get endpointslices -l kubernetes.io/service-name={name}"
            );
            match endpoints::ready_addresses(&ctx.client, namespace, name, *port).await {
                Ok(addrs) => {
                    out.pass(format!("{what} ({})", addrs.len()));
                    addrs
                }
                Err(e) => return out.fail(what, e.to_string(), &hint),
            }
        }
        Target::Url { addr, .. } => addr.iter().copied().collect(),
    };
    let server_name = target.server_name();
    let what = format!(
        "webhook {hook}: the serving certificate verifies against caBundle for {server_name}"
    );
    let mut unreachable = Vec::new();
    for addr in addrs.iter().take(MAX_TRIES) {
        match certs::fetch_chain(*addr, &server_name).await {
            Ok(chain) => {
                return match certs::verify(bundle, &chain, &server_name) {
                    Ok(()) => out.pass(format!("{what} (served at {addr})")),
                    Err(e) => out.fail(what, e.to_string(), ca_hint),
                };
            }
            Err(e) => unreachable.push(e.to_string()),
        }
    }
    root_in_secret(ctx, out, &what, bundle, &addrs, &unreachable, ca_hint).await;
}

/// When the serving certificate cannot be fetched from here (pod addresses
/// are rarely routable from a laptop), checks the weaker claim that
/// `caBundle` holds the mesh root kept in the CA Secret, which issues it.
async fn root_in_secret(
    ctx: &Context,
    out: &mut Category,
    what: &str,
    bundle: &[BundleCert],
    addrs: &[SocketAddr],
    unreachable: &[String],
    ca_hint: &str,
) {
    let why = if addrs.is_empty() {
        "no address to fetch the serving certificate from".to_owned()
    } else {
        format!(
            "cannot fetch the serving certificate from here ({})",
            unreachable.join("; ")
        )
    };
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let root = match secrets.get_opt(CA_SECRET).await {
        Ok(Some(s)) => s.data.and_then(|mut d| d.remove(ROOT_KEY)).map(|b| b.0),
        Ok(None) => None,
        Err(e) => {
            return out.warn(
                what,
                format!("{why}; cannot read Secret {}/{CA_SECRET} either: {e}", ctx.namespace),
                "run sluicectl check where pod addresses are routable to verify the served certificate",
            );
        }
    };
    let Some(root) = root else {
        return out.warn(
            what,
            format!(
                "{why}; Secret {}/{CA_SECRET} holds no {ROOT_KEY} to compare",
                ctx.namespace
            ),
            "run sluicectl check where pod addresses are routable to verify the served certificate",
        );
    };
    if certs::bundle_contains(bundle, &root) {
        out.warn(
            what,
            format!(
                "{why}; verified only that caBundle holds the mesh root of Secret {}/{CA_SECRET}, \
                 which issues it",
                ctx.namespace
            ),
            "run sluicectl check where pod addresses are routable to verify the served certificate",
        );
    } else {
        out.fail(
            what,
            format!(
                "{why}; and caBundle does not hold the mesh root of Secret {}/{CA_SECRET}: the API \
                 server will not trust the webhook",
                ctx.namespace
            ),
            ca_hint,
        );
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}
