//! `sluice-testenv KUBECONFIG_OUT [--crds DIR]`: starts a test control plane (etcd,
//! kube-apiserver, kube-controller-manager), optionally applies the CRDs in `DIR`, copies its
//! admin kubeconfig to `KUBECONFIG_OUT` once ready, and runs until SIGTERM/SIGINT, then stops every process. For scripts (the conformance suite against
//! Kubernetes); tests use the library directly.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(out), crds) = (args.next().map(PathBuf::from), {
        let flag = args.next();
        match (flag.as_ref().and_then(|f| f.to_str()), args.next()) {
            (Some("--crds"), Some(dir)) => Some(PathBuf::from(dir)),
            (None, _) => None,
            _ => {
                eprintln!("usage: sluice-testenv KUBECONFIG_OUT [--crds DIR]");
                return ExitCode::from(2);
            }
        }
    }) else {
        eprintln!("usage: sluice-testenv KUBECONFIG_OUT [--crds DIR]");
        return ExitCode::from(2);
    };
    eprintln!("sluice-testenv: starting etcd, kube-apiserver and kube-controller-manager");
    let env = match sluice_testenv::TestEnv::start().await {
        Ok(env) => env,
        Err(e) => {
            eprintln!("sluice-testenv: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(dir) = crds {
        let dir = dir.display().to_string();
        if let Err(e) = env.kubectl_run(&["apply", "-f", &dir]).await {
            eprintln!("sluice-testenv: applying the CRDs in {dir}: {e}");
            return ExitCode::FAILURE;
        }
        let established = env
            .kubectl_run(&[
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                "-f",
                &dir,
            ])
            .await;
        if let Err(e) = established {
            eprintln!("sluice-testenv: CRDs in {dir} not established: {e}");
            return ExitCode::FAILURE;
        }
    }
    // Written last, so a waiting script sees the file only when everything is ready.
    let tmp = out.with_extension("tmp");
    if let Err(e) = std::fs::copy(&env.kubeconfig, &tmp).and_then(|_| std::fs::rename(&tmp, &out)) {
        eprintln!("sluice-testenv: writing {}: {e}", out.display());
        return ExitCode::FAILURE;
    }
    eprintln!(
        "sluice-testenv: ready at {} (kubeconfig {})",
        env.server,
        out.display()
    );
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("sluice-testenv: {e}");
            return ExitCode::FAILURE;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    eprintln!("sluice-testenv: stopping");
    drop(env);
    let _ = std::fs::remove_file(&out);
    ExitCode::SUCCESS
}
