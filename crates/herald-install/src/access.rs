//! Can the account a system-wide registration runs as (`--run-as-user U`, else `SUDO_USER`) use the
//! home? A system unit whose `User=` cannot read the home fails at every start, and one that can read it
//! but does not own it is refused by the gateway itself (a home belongs to its user: exit 78) — either
//! way the registration would never serve, so `install` says so before writing it.
//!
//! **Invariant:** the judgement ([`judge`]) is a pure function of the home directory's owner, group and
//! mode and the account's uid and groups, tested on every OS; the OS reads (the account database, the
//! directory's metadata) are the leaf's (`os::account`, `os::dir_facts`), and where the OS has neither
//! (Windows, whose service account is LocalSystem) nothing is judged.

use std::path::{Path, PathBuf};

/// An account as the OS knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    /// The primary group and every supplementary one.
    pub gids: Vec<u32>,
}

/// What a lookup of an account by name found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountLookup {
    Found(Account),
    /// No such account on this machine.
    Missing,
    /// This OS has no account database to ask (Windows), or the lookup failed.
    Unknown,
}

/// The home directory's owner, group and permission bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirFacts {
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

/// How the account stands to the home.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HomeAccess {
    /// The account owns it: the gateway can use it.
    Owner,
    /// It can list and enter the directory, but does not own it: the gateway refuses such a home.
    ReadableNotOwned,
    /// It cannot even list or enter the directory.
    Unreadable,
}

/// The account against the home directory: owner, else root (reads everything), else the group bits when
/// the directory's group is one of the account's, else the bits for others — read and search both needed.
pub fn judge(dir: DirFacts, account: &Account) -> HomeAccess {
    if dir.uid == account.uid {
        return HomeAccess::Owner;
    }
    let readable = if account.uid == 0 {
        true
    } else if account.gids.contains(&dir.gid) {
        dir.mode & 0o050 == 0o050
    } else {
        dir.mode & 0o005 == 0o005
    };
    if readable {
        HomeAccess::ReadableNotOwned
    } else {
        HomeAccess::Unreadable
    }
}

/// Why a system registration running as `user` would not serve this home.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunAsProblem {
    #[error(
        "there is no account named {user} on this machine: the service manager would fail to start the \
         gateway as {user}"
    )]
    NoSuchUser { user: String },
    #[error(
        "the gateway would run as {user} (uid {uid}), who cannot read its home {home} (owner uid {owner}, \
         mode {mode:04o}): every start would fail. Make the home {user}'s (`chown -R {user} {home}`), \
         or name its owner with --run-as-user",
        home = home.display()
    )]
    Unreadable {
        user: String,
        uid: u32,
        home: PathBuf,
        owner: u32,
        mode: u32,
    },
    #[error(
        "the gateway would run as {user} (uid {uid}), who can read its home {home} but does not own it \
         (owner uid {owner}): the gateway refuses a home another user owns (exit 78). Make the home \
         {user}'s (`chown -R {user} {home}`), or name its owner with --run-as-user",
        home = home.display()
    )]
    NotOwner {
        user: String,
        uid: u32,
        home: PathBuf,
        owner: u32,
    },
}

/// The problem, if any, given what the OS said about a found account. A home that does not exist yet is
/// created by the gateway (as the account), so it is no problem; an account the OS cannot look up is not
/// judged.
pub fn problem(home: &Path, lookup: AccountLookup, dir: Option<DirFacts>) -> Option<RunAsProblem> {
    let account = match lookup {
        AccountLookup::Found(account) => account,
        // Named by `check`, which knows the name.
        AccountLookup::Missing | AccountLookup::Unknown => return None,
    };
    let dir = dir?;
    match judge(dir, &account) {
        HomeAccess::Owner => None,
        HomeAccess::Unreadable => Some(RunAsProblem::Unreadable {
            user: account.name,
            uid: account.uid,
            home: home.to_path_buf(),
            owner: dir.uid,
            mode: dir.mode & 0o7777,
        }),
        HomeAccess::ReadableNotOwned => Some(RunAsProblem::NotOwner {
            user: account.name,
            uid: account.uid,
            home: home.to_path_buf(),
            owner: dir.uid,
        }),
    }
}

/// Asks the OS about `user` and `home`, then judges.
pub fn check(home: &Path, user: &str) -> Option<RunAsProblem> {
    let lookup = crate::os::account(user);
    if lookup == AccountLookup::Missing {
        return Some(RunAsProblem::NoSuchUser {
            user: user.to_owned(),
        });
    }
    problem(home, lookup, crate::os::dir_facts(home))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(uid: u32, gids: &[u32]) -> Account {
        Account {
            name: "u".into(),
            uid,
            gids: gids.to_vec(),
        }
    }

    fn dir(uid: u32, gid: u32, mode: u32) -> DirFacts {
        DirFacts { uid, gid, mode }
    }

    #[test]
    fn the_owner_can_use_it_whatever_the_mode() {
        assert_eq!(
            judge(dir(1000, 1000, 0o700), &account(1000, &[1000])),
            HomeAccess::Owner
        );
        assert_eq!(
            judge(dir(1000, 1000, 0o000), &account(1000, &[])),
            HomeAccess::Owner
        );
    }

    #[test]
    fn a_private_home_of_another_user_is_unreadable() {
        // root's 0700 home, judged for nobody.
        assert_eq!(
            judge(dir(0, 0, 0o700), &account(65534, &[65534])),
            HomeAccess::Unreadable
        );
    }

    #[test]
    fn group_bits_count_only_for_a_member_and_others_bits_for_the_rest() {
        let home = dir(1000, 50, 0o750);
        assert_eq!(
            judge(home, &account(1001, &[100, 50])),
            HomeAccess::ReadableNotOwned
        );
        assert_eq!(judge(home, &account(1002, &[100])), HomeAccess::Unreadable);
        // A member is judged by the group bits even when others may read (as the kernel does).
        let odd = dir(1000, 50, 0o705);
        assert_eq!(judge(odd, &account(1001, &[50])), HomeAccess::Unreadable);
        assert_eq!(judge(odd, &account(1002, &[7])), HomeAccess::ReadableNotOwned);
        // Read without search (or search without read) is not enough.
        assert_eq!(
            judge(dir(1000, 50, 0o704), &account(1002, &[7])),
            HomeAccess::Unreadable
        );
        assert_eq!(
            judge(dir(1000, 50, 0o701), &account(1002, &[7])),
            HomeAccess::Unreadable
        );
    }

    #[test]
    fn root_reads_everything_but_does_not_own_someone_elses_home() {
        assert_eq!(
            judge(dir(1000, 1000, 0o700), &account(0, &[0])),
            HomeAccess::ReadableNotOwned
        );
    }

    #[test]
    fn problems_name_the_user_the_home_and_the_fix() {
        let home = Path::new("/root/.herald");
        let found = AccountLookup::Found(Account {
            name: "nobody".into(),
            uid: 65534,
            gids: vec![65534],
        });
        let p = problem(home, found.clone(), Some(dir(0, 0, 0o40700))).unwrap();
        let text = p.to_string();
        assert!(
            text.contains("nobody (uid 65534), who cannot read its home /root/.herald"),
            "{text}"
        );
        assert!(
            text.contains("owner uid 0, mode 0700") && text.contains("chown -R nobody"),
            "{text}"
        );
        assert_eq!(problem(home, found.clone(), Some(dir(65534, 0, 0o700))), None);
        assert_eq!(
            problem(home, found, None),
            None,
            "a home not made yet is made by the gateway"
        );
        assert_eq!(
            problem(home, AccountLookup::Unknown, Some(dir(0, 0, 0o700))),
            None
        );
    }
}
