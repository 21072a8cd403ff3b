//! `herald doctor`'s Matrix check: the home's device and key store, the homeserver, the token.
//!
//! **Invariant:** the probe changes nothing, on the homeserver or in the home: it reads the device
//! record, asks the homeserver which versions it speaks, and — for an access token — whom the token is
//! for. A password is not tried here (a login makes a new session each time); the gateway's start
//! tries it, and `herald status` shows what the homeserver said.

use std::time::Duration;

use crate::device::{Paths, StoreCheck};
use crate::{MatrixOptions, Secret, sync};

/// What doctor prints on success, or why the check failed.
pub async fn probe(options: &MatrixOptions, budget: Duration) -> Result<String, String> {
    let paths = Paths::of(&options.home);
    let device = match paths.check(&options.user_id, &options.homeserver)? {
        StoreCheck::Fresh => "no device yet (the first start makes one)".to_owned(),
        StoreCheck::Known(record) => format!("device {} with its key store", record.device_id),
        StoreCheck::Lost { why, .. } => return Err(why),
        StoreCheck::OtherAccount(record) => {
            return Err(format!(
                "{} is the device of {} on {}, not of {} on {}",
                paths.record().display(),
                record.user_id,
                record.homeserver,
                options.user_id,
                options.homeserver
            ));
        }
    };
    let versions = format!("{}/_matrix/client/versions", options.homeserver);
    let client = matrix_sdk::reqwest::Client::builder()
        .timeout(budget)
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
    let answer = client.get(&versions).send().await.map_err(|e| {
        format!(
            "the homeserver does not answer at {versions}: {}",
            e.without_url()
        )
    })?;
    if !answer.status().is_success() {
        return Err(format!(
            "{versions} answered {}: is this a Matrix homeserver?",
            answer.status()
        ));
    }
    let who = match &options.secret {
        Secret::AccessToken(token) => {
            let user = options
                .user_id
                .parse()
                .map_err(|e| format!("{} is not a Matrix user id: {e}", options.user_id))?;
            let device = tokio::time::timeout(budget, sync::token_device(options, &user, token))
                .await
                .map_err(|_| format!("no answer to whoami within {budget:?}"))?
                .map_err(|e| e.to_string())?;
            format!("the access token is valid (device {device})")
        }
        Secret::Password(_) => "the password is tried at start".to_owned(),
    };
    Ok(format!("{} answers; {who}; {device}", options.homeserver))
}
