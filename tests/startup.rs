//! Start-up mistakes are refused with a clear line and a non-zero exit before anything is
//! touched: an empty schema or Redis prefix (however it was given), a `serve` address that is
//! already taken (before any table is created).

mod common;

use std::process::Output;

use tokio::process::Command;

use common::{bin, pg_url, unique};

/// Runs the binary with `args` and extra environment; the database URL, when a test gives
/// one that cannot work, proves the refusal came before any connection.
async fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .env("SKIPLOCK_LOG", "warn")
        .env_remove("SKIPLOCK_SCHEMA")
        .env_remove("SKIPLOCK_REDIS_PREFIX")
        .env_remove("SKIPLOCK_CONFIG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().await.unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const NOWHERE: &str = "postgres://nobody@127.0.0.1:1/none";

/// Flags, environment, and what the refusal must name.
type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);

#[tokio::test]
async fn an_empty_schema_or_redis_prefix_is_refused_however_it_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = |name: &str, body: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        p.to_str().unwrap().to_string()
    };
    let schema_file = cfg("schema.toml", "schema = \"\"\n");
    let blank_file = cfg("blank.toml", "schema = \"  \"\n");
    let prefix_file = cfg("prefix.toml", "redis_prefix = \"\"\n");
    let cases: Vec<Case> = vec![
        (vec!["--schema", ""], vec![], "--schema"),
        (vec!["--schema", "   "], vec![], "--schema"),
        (vec![], vec![("SKIPLOCK_SCHEMA", "")], "SKIPLOCK_SCHEMA"),
        (vec!["--config", &schema_file], vec![], "schema.toml"),
        (vec!["--config", &blank_file], vec![], "blank.toml"),
        (vec!["--redis-prefix", ""], vec![], "--redis-prefix"),
        (
            vec![],
            vec![("SKIPLOCK_REDIS_PREFIX", "")],
            "SKIPLOCK_REDIS_PREFIX",
        ),
        (vec!["--config", &prefix_file], vec![], "prefix.toml"),
    ];
    for (flags, env, names) in cases {
        let mut args = vec!["--database-url", NOWHERE];
        args.extend(&flags);
        args.push("migrate");
        let out = run(&args, &env).await;
        let err = stderr(&out);
        assert!(!out.status.success(), "{flags:?} {env:?}: accepted");
        assert!(err.contains("empty"), "{flags:?} {env:?}: {err}");
        assert!(
            err.contains(names),
            "{flags:?} {env:?} names its source: {err}"
        );
        assert!(
            !err.contains("cannot open the database"),
            "{flags:?} {env:?}: refused before connecting: {err}"
        );
    }
}

#[tokio::test]
async fn serve_on_a_busy_port_fails_before_migrating_anything() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    // A schema nobody created: if serve migrated before binding, its tables would appear.
    let schema = unique("skt");
    let out = run(
        &[
            "--database-url",
            &pg_url(),
            "--schema",
            &schema,
            "serve",
            "--bind",
            &addr,
        ],
        &[],
    )
    .await;
    let err = stderr(&out);
    assert!(
        !out.status.success(),
        "serve started on a taken port: {err}"
    );
    assert!(err.contains(&addr), "names the address: {err}");

    let pg = sqlx::PgPool::connect(&pg_url()).await.unwrap();
    let (tables,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM information_schema.tables WHERE table_schema = $1")
            .bind(&schema)
            .fetch_one(&pg)
            .await
            .unwrap();
    // Clean up before asserting, so a failure leaves nothing behind.
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .execute(&pg)
        .await
        .unwrap();
    assert_eq!(tables, 0, "nothing was migrated into {schema}");
    drop(taken);
}
