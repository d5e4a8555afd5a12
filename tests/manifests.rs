//! Tenants as code: `tessera tenants apply DIR [--dry-run] [--prune]` with plans and overrides.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{TestApp, expect, expect_problem, tessera_command};
use reqwest::{Method, StatusCode};

/// Runs `tessera tenants apply` on `app`'s database; returns (exit code, stdout, stderr).
fn apply(app: &TestApp, dir: &Path, flags: &[&str]) -> (i32, String, String) {
    let mut cmd = tessera_command();
    cmd.args(["tenants", "apply"]).arg(dir).args(flags);
    for (k, v) in app.db.cli_env() {
        cmd.env(k, v);
    }
    cmd.env("ACME_PW", "acme owner password");
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn manifests_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tessera-manifests-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(dir: &Path, slug: &str, extra: &str) {
    std::fs::write(
        dir.join(format!("{slug}.toml")),
        format!(
            "slug = \"{slug}\"\nname = \"{slug} Inc\"\n{extra}\n\
             [[users]]\nemail = \"owner@{slug}.test\"\nname = \"Owner\"\nroles = [\"owner\"]\n\
             password_env = \"ACME_PW\"\n"
        ),
    )
    .unwrap();
}

/// (plan, status, quota_overrides) of `slug`, read as the superuser.
async fn row(app: &TestApp, slug: &str) -> Option<(String, String, serde_json::Value)> {
    app.db
        .admin()
        .await
        .query_opt(
            "SELECT plan, status, quota_overrides FROM tenants WHERE slug = $1",
            &[&slug],
        )
        .await
        .unwrap()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
}

#[actix_web::test]
async fn dry_run_changes_nothing_a_second_run_says_no_changes_and_only_prune_deletes() {
    let app = TestApp::spawn_with(|c| c.tenancy.cache_secs = 300).await;
    let dir = manifests_dir();
    write(&dir, "mfacme", "plan = \"free\"");
    write(
        &dir,
        "mfglobex",
        "plan = \"enterprise\"\n[rate_overrides]\nburst = 7",
    );

    let (code, out, err) = apply(&app, &dir, &["--dry-run"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("tenant mfacme: create"), "{out}");
    assert!(out.contains("  user owner@mfacme.test: add"), "{out}");
    assert!(out.contains("dry run: nothing was changed"), "{out}");
    assert_eq!(row(&app, "mfacme").await, None, "dry run created nothing");

    let (code, out, err) = apply(&app, &dir, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(row(&app, "mfglobex").await.unwrap().0, "enterprise");
    app.login("mfacme", "owner@mfacme.test", "acme owner password")
        .await;
    let (code, out, err) = apply(&app, &dir, &[]);
    assert_eq!((code, out.as_str()), (0, "no changes\n"), "{err}");

    // An edit shows as `field: old → new` in a dry run, then applies, audited as the platform.
    write(
        &dir,
        "mfacme",
        "plan = \"pro\"\n[quota_overrides]\nrecords = 10",
    );
    let (code, out, _) = apply(&app, &dir, &["--dry-run"]);
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "tenant mfacme: update\n  plan: \"free\" → \"pro\"\n  quota_overrides: {} → \
         {\"records\":10}\ndry run: nothing was changed\n"
    );
    assert_eq!(row(&app, "mfacme").await.unwrap().0, "free");
    // A server that cached the tenant for five minutes sees the change on its next request.
    let (access, _) = app
        .login("mfacme", "owner@mfacme.test", "acme owner password")
        .await;
    let me = || async {
        let res = app
            .on("mfacme", Method::GET, "/v1/me")
            .bearer_auth(&access)
            .send()
            .await
            .unwrap();
        expect(res, StatusCode::OK).await
    };
    assert_eq!(me().await["tenant"]["plan"], "free");
    let (code, out, err) = apply(&app, &dir, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        row(&app, "mfacme").await.unwrap(),
        (
            "pro".into(),
            "active".into(),
            serde_json::json!({"records": 10})
        )
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(me().await["tenant"]["plan"], "pro");
    let events = app
        .db
        .admin()
        .await
        .query(
            "SELECT e.actor_type, e.changes->>'via' FROM audit_events e JOIN tenants t \
             ON t.id = e.tenant_id WHERE t.slug = 'mfacme' AND e.action = 'tenant.updated'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].get::<_, String>(0), events[0].get::<_, String>(1)),
        ("platform".into(), "manifest".into())
    );

    // A tenant in no manifest is kept (and said so on stderr) until --prune.
    std::fs::remove_file(dir.join("mfglobex.toml")).unwrap();
    let (code, out, err) = apply(&app, &dir, &[]);
    assert_eq!((code, out.as_str()), (0, "no changes\n"));
    assert!(
        err.contains("tenant mfglobex: not in manifests, kept"),
        "{err}"
    );
    assert_eq!(row(&app, "mfglobex").await.unwrap().1, "active");
    let (_, out, _) = apply(&app, &dir, &["--prune", "--dry-run"]);
    assert!(
        out.contains("tenant mfglobex: delete (not in manifests)"),
        "{out}"
    );
    assert_eq!(row(&app, "mfglobex").await.unwrap().1, "active");
    let (code, out, err) = apply(&app, &dir, &["--prune"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(row(&app, "mfglobex").await.unwrap().1, "deleted");
    let res = app
        .on("mfglobex", Method::POST, "/v1/auth/login")
        .json(
            &serde_json::json!({"email": "owner@mfglobex.test", "password": "acme owner password"}),
        )
        .send()
        .await
        .unwrap();
    expect_problem(res, StatusCode::NOT_FOUND, "tenant_not_found").await;
    let (code, out, _) = apply(&app, &dir, &["--prune"]);
    assert_eq!((code, out.as_str()), (0, "no changes\n"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[actix_web::test]
async fn manifests_with_an_unknown_plan_or_bad_overrides_are_refused_before_any_change() {
    let app = TestApp::spawn().await;
    for (extra, named) in [
        ("plan = \"platinum\"", "platinum"),
        ("[rate_overrides]\nburst = 0", "rate_overrides.burst"),
        ("[quota_overrides]\nrecordz = 1", "recordz"),
    ] {
        let dir = manifests_dir();
        write(&dir, "mfgood", "");
        write(&dir, "mfbad", extra);
        let (code, out, err) = apply(&app, &dir, &[]);
        assert_eq!(code, 1, "{out}{err}");
        assert!(err.contains(named), "{named}: {err}");
        assert_eq!(row(&app, "mfgood").await, None, "nothing applied");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[actix_web::test]
async fn a_role_added_to_an_existing_user_is_a_change_and_is_applied() {
    let app = TestApp::spawn().await;
    let dir = manifests_dir();
    write(&dir, "rolesco", "");
    let (code, _, err) = apply(&app, &dir, &[]);
    assert_eq!(code, 0, "{err}");
    // The same owner, now also admin: nothing else about the tenant changes.
    let text = std::fs::read_to_string(dir.join("rolesco.toml"))
        .unwrap()
        .replace("roles = [\"owner\"]", "roles = [\"owner\", \"admin\"]");
    std::fs::write(dir.join("rolesco.toml"), text).unwrap();
    let (code, out, err) = apply(&app, &dir, &["--dry-run"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "tenant rolesco: update\n  user owner@rolesco.test: grant role admin\n\
         dry run: nothing was changed\n"
    );
    let (code, _, err) = apply(&app, &dir, &[]);
    assert_eq!(code, 0, "{err}");
    let roles: Vec<String> = app
        .db
        .admin()
        .await
        .query(
            "SELECT r.name FROM user_roles ur JOIN roles r ON r.tenant_id = ur.tenant_id \
               AND r.id = ur.role_id JOIN users u ON u.tenant_id = ur.tenant_id \
               AND u.id = ur.user_id WHERE u.email = 'owner@rolesco.test' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(roles, ["admin", "owner"]);
    let (code, out, _) = apply(&app, &dir, &[]);
    assert_eq!((code, out.as_str()), (0, "no changes\n"));
}
