//! A database of a test's own on the shared test cluster (`ci/peers/postgres.sh start` prints its
//! address, password and `pg_ctl` command; `CI=true` without them is a failure, elsewhere the test is
//! skipped with a message), dropped after the test.

#![allow(dead_code)]

use std::process::{Command, Stdio};

/// The shared cluster, and a database of the test's own on it (dropped after).
pub struct Database {
    pub admin_url: String,
    pub password: String,
    pub name: String,
    pg_ctl: Option<Vec<String>>,
}

impl Database {
    pub fn create() -> Option<Database> {
        let url = std::env::var("HERALD_TEST_POSTGRES_URL")
            .ok()
            .filter(|u| !u.is_empty());
        let Some(admin_url) = url else {
            assert!(
                std::env::var("CI").map_or(true, |v| v != "true"),
                "HERALD_TEST_POSTGRES_URL is not set (CI=true): ci/test.sh starts the test cluster"
            );
            eprintln!("skipping: HERALD_TEST_POSTGRES_URL is not set (see ci/peers/postgres.sh)");
            return None;
        };
        let password = std::env::var("HERALD_TEST_POSTGRES_PASSWORD").unwrap_or_default();
        let name = format!(
            "herald_e2e_{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        let pg_ctl = std::env::var("HERALD_TEST_PG_CTL")
            .ok()
            .map(|c| c.split(' ').map(str::to_owned).collect());
        let db = Database {
            admin_url,
            password,
            name,
            pg_ctl,
        };
        db.sql(&format!("CREATE DATABASE {}", db.name));
        Some(db)
    }

    pub fn url(&self) -> String {
        format!("{}/{}", self.admin_url.rsplit_once('/').unwrap().0, self.name)
    }

    /// Runs `sql` as the cluster's admin, on the admin database; returns the first column of each row.
    pub fn sql(&self, sql: &str) -> Vec<String> {
        query(&self.admin_url, &self.password, sql)
    }

    /// Runs `sql` on the test's database.
    pub fn query(&self, sql: &str) -> Vec<String> {
        query(&self.url(), &self.password, sql)
    }

    /// `pg_ctl restart -m fast` of the shared cluster (`false` when its command is not known).
    pub fn restart(&self) -> bool {
        self.pg_ctl(&["restart", "-m", "fast", "-w"])
    }

    /// `pg_ctl ARGS` on the shared cluster (`false` when its command is not known).
    pub fn pg_ctl(&self, args: &[&str]) -> bool {
        let Some(pg_ctl) = &self.pg_ctl else {
            return false;
        };
        let status = Command::new(&pg_ctl[0])
            .args(&pg_ctl[1..])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "pg_ctl {args:?}");
        true
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        self.sql(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
    }
}

fn query(url: &str, password: &str, sql: &str) -> Vec<String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut config: tokio_postgres::Config = url.parse().unwrap();
        config.password(password);
        let (client, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        let mut values = Vec::new();
        for message in client.simple_query(sql).await.unwrap() {
            if let tokio_postgres::SimpleQueryMessage::Row(row) = message {
                values.push(row.get(0).unwrap_or_default().to_owned());
            }
        }
        values
    })
}
