//! Several `stateplug serve` replicas on one store, as behind a load balancer: the s3 plugin
//! on one moto bucket (and, in `postgres.rs`, the postgres plugin on one database), each
//! replica with its own pool of instances. The replicas share nothing
//! but the bucket, and its conditional writes keep a lock to one holder and every
//! acknowledged update in the state, whichever replica a client reaches.

use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

use crate::common::Server;
use crate::common::moto::{self, Moto};

pub const REPLICAS: usize = 3;

/// `REPLICAS` servers of the s3 plugin on `bucket` (history off: the writers race on the
/// state itself).
fn replicas(moto: &Moto, bucket: &str, dir: &std::path::Path) -> Vec<Server> {
    let mut args = vec!["--plugin".to_string(), "s3".to_string()];
    let settings = moto::s3_settings(&moto.endpoint(), bucket, &[("history", "0")]);
    for (key, value) in settings {
        args.push("-c".into());
        args.push(format!("{key}={value}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    (0..REPLICAS).map(|_| Server::start(dir, &args)).collect()
}

async fn send(client: &Client, method: &str, url: &str, body: String) -> (StatusCode, String) {
    let response = client
        .request(Method::from_bytes(method.as_bytes()).unwrap(), url)
        .body(body)
        .send()
        .await
        .unwrap();
    (response.status(), response.text().await.unwrap())
}

fn state(serial: u64, by: &str) -> String {
    json!({"version": 4, "serial": serial, "lineage": "replicas", "resources": [],
           "outputs": {"by": {"value": by, "type": "string"}}})
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_one_bucket_keep_one_lock_holder_and_every_update() {
    let Some(moto) = Moto::start_or_skip("replicas_on_one_bucket") else {
        return;
    };
    moto.create_bucket("replicas");
    let dir = tempfile::tempdir().unwrap();
    let replicas = replicas(&moto, "replicas", dir.path());
    let urls: Vec<String> = replicas.iter().map(|r| r.url.clone()).collect();
    keep_one_lock_holder_and_every_update(&urls).await;
}

/// Races through the servers at `urls`, which share one store: 64 LOCKs a round, one holder;
/// 32 unlocked writers, no update lost.
pub async fn keep_one_lock_holder_and_every_update(urls: &[String]) {
    assert_eq!(urls.len(), REPLICAS);
    let client = Client::new();

    // 64 clients race LOCK, spread over the replicas: one holder per round, every refusal
    // names it; the holder's UNLOCK ends the round.
    for round in 0..3 {
        let racers: Vec<_> = (0..64)
            .map(|i| {
                let (client, url) = (client.clone(), format!("{}/state/race", urls[i % REPLICAS]));
                let id = format!("round-{round}-racer-{i}");
                tokio::spawn(async move {
                    let lock = json!({"ID": id, "Operation": "OperationTypeApply", "Who": id});
                    let (status, body) = send(&client, "LOCK", &url, lock.to_string()).await;
                    (id, status, body)
                })
            })
            .collect();
        let (mut holders, mut refusals) = (Vec::new(), Vec::new());
        for racer in racers {
            match racer.await.unwrap() {
                (id, StatusCode::OK, _) => holders.push(id),
                (_, StatusCode::LOCKED, body) => refusals.push(body),
                (id, status, body) => panic!("{id}: {status}: {body}"),
            }
        }
        assert_eq!(
            holders.len(),
            1,
            "round {round}: {holders:?} all got the lock"
        );
        assert_eq!(refusals.len(), 63);
        for body in &refusals {
            let named: Value = serde_json::from_str(body).unwrap();
            assert_eq!(named["ID"], holders[0].as_str(), "round {round}: {body}");
        }
        let release = json!({"ID": holders[0], "Operation": "OperationTypeApply"});
        let url = format!("{}/state/race", urls[round % REPLICAS]);
        let (status, body) = send(&client, "UNLOCK", &url, release.to_string()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    // 32 writers without locks, each storing the next serial through any replica until one
    // write of its own is acknowledged: with no update lost, the acknowledgements are the
    // serial.
    let first = format!("{}/state/cas", urls[0]);
    let (status, body) = send(&client, "POST", &first, state(0, "start")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let writers: Vec<_> = (0..32)
        .map(|i| {
            let (client, url) = (client.clone(), format!("{}/state/cas", urls[i % REPLICAS]));
            tokio::spawn(async move {
                for _ in 0..1000 {
                    let (status, current) = send(&client, "GET", &url, String::new()).await;
                    assert_eq!(status, StatusCode::OK, "{current}");
                    let serial = serde_json::from_str::<Value>(&current).unwrap()["serial"]
                        .as_u64()
                        .unwrap();
                    let next = state(serial + 1, &format!("writer-{i}"));
                    match send(&client, "POST", &url, next).await {
                        (StatusCode::OK, _) => return,
                        (StatusCode::CONFLICT, _) => continue,
                        (status, body) => panic!("writer {i}: {status}: {body}"),
                    }
                }
                panic!("writer {i} never got a write through");
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let (_, stored) = send(&client, "GET", &first, String::new()).await;
    let stored: Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(
        stored["serial"], 32,
        "acknowledged writes were lost: {stored}"
    );
}
