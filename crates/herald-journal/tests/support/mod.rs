//! Where a contract test's journal lives: a temporary `state.db`, or a database of its own on the test
//! PostgreSQL cluster. [`Store::open`] opens (or opens again) the same store.

use std::path::PathBuf;
#[cfg(feature = "postgres")]
use std::sync::atomic::{AtomicU32, Ordering};

use herald_gateway::journal::Journal;
use herald_journal::SqliteJournal;
#[cfg(feature = "postgres")]
use herald_journal::{PgJournal, PgOptions};

#[derive(Debug)]
pub enum Store {
    Sqlite {
        _dir: tempfile::TempDir,
        path: PathBuf,
    },
    #[cfg(feature = "postgres")]
    Postgres(TestDatabase),
}

impl Store {
    pub fn sqlite() -> Store {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        Store::Sqlite { _dir: dir, path }
    }

    /// A fresh database on the test cluster, or `None` (said on stderr) when there is none outside CI.
    #[cfg(feature = "postgres")]
    pub async fn postgres() -> Option<Store> {
        TestDatabase::create().await.map(Store::Postgres)
    }

    pub fn open(&self) -> Box<dyn Journal> {
        match self {
            Store::Sqlite { path, .. } => Box::new(SqliteJournal::open(path).unwrap().0),
            #[cfg(feature = "postgres")]
            Store::Postgres(db) => Box::new(PgJournal::open(&db.options()).unwrap().0),
        }
    }
}

/// The test cluster's address and password (`ci/peers/postgres.sh start` prints them).
#[cfg(feature = "postgres")]
pub fn cluster() -> Option<(String, String)> {
    let url = std::env::var("HERALD_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty());
    let password = std::env::var("HERALD_TEST_POSTGRES_PASSWORD").unwrap_or_default();
    match url {
        Some(url) => Some((url, password)),
        None if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("HERALD_TEST_POSTGRES_URL is not set (CI=true): ci/test.sh starts the test cluster")
        }
        None => {
            eprintln!(
                "skipping the PostgreSQL half: HERALD_TEST_POSTGRES_URL is not set \
                 (eval \"$(ci/peers/postgres.sh start DIR | sed 's/^/export /')\")"
            );
            None
        }
    }
}

/// A database made for one test, dropped after it.
#[cfg(feature = "postgres")]
#[derive(Debug)]
pub struct TestDatabase {
    admin_url: String,
    password: String,
    pub name: String,
}

#[cfg(feature = "postgres")]
static NEXT: AtomicU32 = AtomicU32::new(0);

#[cfg(feature = "postgres")]
impl TestDatabase {
    pub async fn create() -> Option<TestDatabase> {
        let (admin_url, password) = cluster()?;
        let name = format!(
            "herald_t{}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
        );
        let admin = admin(&admin_url, &password).await;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        Some(TestDatabase {
            admin_url,
            password,
            name,
        })
    }

    /// `postgres://…/NAME`: the admin URL with this database.
    pub fn url(&self) -> String {
        let base = self.admin_url.rsplit_once('/').unwrap().0;
        format!("{base}/{}", self.name)
    }

    pub fn options(&self) -> PgOptions {
        PgOptions::new(&self.url(), Some(&self.password), None).unwrap()
    }

    pub fn password(&self) -> &str {
        &self.password
    }

    /// A connection to this database, for a test to look at or change it behind the journal's back.
    pub async fn connect(&self) -> tokio_postgres::Client {
        admin(&self.url(), &self.password).await
    }
}

#[cfg(feature = "postgres")]
impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (url, password, name) = (self.admin_url.clone(), self.password.clone(), self.name.clone());
        // On a thread of its own: a drop may happen inside a runtime, which cannot block on another.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let admin = admin(&url, &password).await;
                let _ = admin
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await;
            });
        })
        .join();
    }
}

#[cfg(feature = "postgres")]
async fn admin(url: &str, password: &str) -> tokio_postgres::Client {
    let mut config: tokio_postgres::Config = url.parse().unwrap();
    config.password(password);
    let (client, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

/// A cluster of one test's own (`ci/peers/postgres.sh start`), for what would disturb the shared one: a
/// restart. Stopped and removed when dropped.
#[cfg(all(unix, feature = "postgres"))]
#[derive(Debug)]
pub struct PrivateCluster {
    dir: PathBuf,
    pub url: String,
    pub password: String,
    pg_ctl: Vec<String>,
}

#[cfg(all(unix, feature = "postgres"))]
impl PrivateCluster {
    /// `None` where the shared cluster is missing too (see [`cluster`]).
    pub fn start() -> Option<PrivateCluster> {
        cluster()?;
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../ci/peers/postgres.sh");
        let dir = std::env::temp_dir().join(format!(
            "herald-pg-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let out = std::process::Command::new("bash")
            .arg(&script)
            .arg("start")
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "postgres.sh start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let value = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .unwrap()
                .to_owned()
        };
        Some(PrivateCluster {
            url: value("HERALD_TEST_POSTGRES_URL"),
            password: value("HERALD_TEST_POSTGRES_PASSWORD"),
            pg_ctl: value("HERALD_TEST_PG_CTL")
                .split(' ')
                .map(str::to_owned)
                .collect(),
            dir,
        })
    }

    /// Runs `pg_ctl ARGS` on this cluster.
    pub fn pg_ctl(&self, args: &[&str]) {
        let status = std::process::Command::new(&self.pg_ctl[0])
            .args(&self.pg_ctl[1..])
            .args(args)
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "pg_ctl {args:?}");
    }

    pub async fn connect(&self) -> tokio_postgres::Client {
        admin(&self.url, &self.password).await
    }
}

#[cfg(all(unix, feature = "postgres"))]
impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../ci/peers/postgres.sh");
        let _ = std::process::Command::new("bash")
            .arg(script)
            .arg("stop")
            .arg(&self.dir)
            .stderr(std::process::Stdio::null())
            .status();
    }
}
