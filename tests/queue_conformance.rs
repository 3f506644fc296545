//! One queue suite, every backend: each `async fn` below runs against the memory queue and the
//! Redis queue (its own key prefix per test), through the `Queue` seam only.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use skiplock::queue::memory::MemoryQueue;
use skiplock::queue::redis::RedisQueue;
use skiplock::queue::Queue;
use skiplock::Due;
use uuid::Uuid;

#[derive(Clone, Copy)]
enum Kind {
    Memory,
    Redis,
}

/// A fresh, empty queue; for Redis, under a prefix no other test uses, deleted on drop.
struct Fresh {
    queue: Arc<dyn Queue>,
    prefix: Option<String>,
}

impl Fresh {
    async fn new(kind: Kind) -> Fresh {
        match kind {
            Kind::Memory => Fresh {
                queue: Arc::new(MemoryQueue::default()),
                prefix: None,
            },
            Kind::Redis => {
                let prefix = common::unique("skt");
                let q = RedisQueue::connect(&common::redis_url(), &prefix)
                    .await
                    .expect("Redis must be running (scripts/test starts it)");
                Fresh {
                    queue: Arc::new(q),
                    prefix: Some(prefix),
                }
            }
        }
    }
}

impl Drop for Fresh {
    fn drop(&mut self) {
        if let Some(p) = &self.prefix {
            if let Ok(mut c) =
                redis::Client::open(common::redis_url()).and_then(|c| c.get_connection())
            {
                let keys: Vec<String> = redis::cmd("KEYS")
                    .arg(format!("{p}:*"))
                    .query(&mut c)
                    .unwrap_or_default();
                if !keys.is_empty() {
                    let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut c);
                }
            }
        }
    }
}

fn due(n: usize, priority: i16) -> Vec<Due> {
    (0..n).map(|_| Due::new(Uuid::now_v7(), priority)).collect()
}

fn due_in(queue: &str, n: usize) -> Vec<Due> {
    (0..n)
        .map(|_| Due {
            queue: queue.to_string(),
            ..Due::new(Uuid::now_v7(), 0)
        })
        .collect()
}

/// A runner pops only the named queue it serves: IDs of another queue are neither returned
/// nor consumed, and the depth counts every queue.
async fn named_queues_are_separate(kind: Kind) {
    let f = Fresh::new(kind).await;
    let q = &f.queue;
    let media = due_in("media", 3);
    let default = due_in("default", 2);
    let mut mixed = media.clone();
    mixed.extend(default.clone());
    assert_eq!(q.push(&mixed).await.unwrap(), 5);
    assert_eq!(q.depth().await.unwrap(), 5);
    assert!(q.pop("other", 10, Duration::ZERO).await.unwrap().is_empty());
    let got = q.pop("default", 10, Duration::ZERO).await.unwrap();
    assert_eq!(got, default.iter().map(|d| d.id).collect::<Vec<_>>());
    assert_eq!(q.depth().await.unwrap(), 3, "media's IDs are still there");
    let got = q.pop("media", 10, Duration::ZERO).await.unwrap();
    assert_eq!(got, media.iter().map(|d| d.id).collect::<Vec<_>>());
    assert_eq!(q.depth().await.unwrap(), 0);
}

/// A popper waiting on one queue is not woken, and takes nothing, when another queue gets IDs;
/// it is woken by a push to its own.
async fn a_push_wakes_only_its_queue(kind: Kind) {
    let f = Fresh::new(kind).await;
    let q = f.queue.clone();
    let waiter = tokio::spawn(async move { q.pop("media", 5, Duration::from_secs(20)).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    f.queue.push(&due_in("default", 2)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !waiter.is_finished(),
        "a push to default woke a media popper"
    );
    let media = due_in("media", 1);
    f.queue.push(&media).await.unwrap();
    let got = waiter.await.unwrap().unwrap();
    assert_eq!(got, vec![media[0].id]);
    assert_eq!(
        f.queue
            .pop("default", 5, Duration::ZERO)
            .await
            .unwrap()
            .len(),
        2
    );
}

async fn dedup(kind: Kind) {
    let f = Fresh::new(kind).await;
    let q = &f.queue;
    let items = due(5, 0);
    assert_eq!(q.push(&items).await.unwrap(), 5);
    assert_eq!(q.push(&items).await.unwrap(), 0, "re-offering adds nothing");
    // Duplicates inside one push count once.
    let one = items[0].clone();
    let mixed = vec![one.clone(), one, due(1, 0)[0].clone()];
    assert_eq!(q.push(&mixed).await.unwrap(), 1);
    assert_eq!(q.depth().await.unwrap(), 6);
    let all = q.pop("default", 100, Duration::ZERO).await.unwrap();
    assert_eq!(all.len(), 6);
    assert_eq!(all.iter().collect::<HashSet<_>>().len(), 6);
    // Popped IDs may be offered again (the reconciler does) and come back once.
    assert_eq!(q.push(&items[..2]).await.unwrap(), 2);
    assert_eq!(q.depth().await.unwrap(), 2);
}

async fn priority_then_fifo(kind: Kind) {
    let f = Fresh::new(kind).await;
    let q = &f.queue;
    let low = due(3, -5);
    let mid = due(3, 0);
    let high = due(3, 7);
    let max = due(1, i16::MAX);
    let min = due(1, i16::MIN);
    for batch in [&min, &low, &mid, &high, &max] {
        q.push(batch).await.unwrap();
    }
    let got = q.pop("default", 100, Duration::ZERO).await.unwrap();
    let want: Vec<Uuid> = [&max, &high, &mid, &low, &min]
        .iter()
        .flat_map(|b| b.iter().map(|d| d.id))
        .collect();
    assert_eq!(got, want, "highest priority first, then arrival order");
}

async fn pop_takes_at_most_max(kind: Kind) {
    let f = Fresh::new(kind).await;
    let q = &f.queue;
    let items = due(10, 0);
    q.push(&items).await.unwrap();
    let first = q
        .pop("default", 3, Duration::from_millis(100))
        .await
        .unwrap();
    assert_eq!(first, items[..3].iter().map(|d| d.id).collect::<Vec<_>>());
    assert_eq!(q.depth().await.unwrap(), 7);
    let rest = q
        .pop("default", 100, Duration::from_millis(100))
        .await
        .unwrap();
    assert_eq!(rest.len(), 7);
    assert_eq!(q.depth().await.unwrap(), 0);
    // max 0 is treated as 1, never as "nothing".
    q.push(&due(2, 0)).await.unwrap();
    assert_eq!(q.pop("default", 0, Duration::ZERO).await.unwrap().len(), 1);
}

async fn empty_pop_waits_then_times_out(kind: Kind) {
    let f = Fresh::new(kind).await;
    let started = Instant::now();
    let got = f
        .queue
        .pop("default", 4, Duration::from_millis(400))
        .await
        .unwrap();
    let took = started.elapsed();
    assert!(got.is_empty());
    assert!(
        took >= Duration::from_millis(300),
        "returned after {took:?}"
    );
    assert!(took < Duration::from_secs(5), "returned after {took:?}");
    assert!(f
        .queue
        .pop("default", 4, Duration::ZERO)
        .await
        .unwrap()
        .is_empty());
}

async fn blocked_pop_wakes_on_push(kind: Kind) {
    let f = Fresh::new(kind).await;
    let q = f.queue.clone();
    let waiter = tokio::spawn(async move {
        let t = Instant::now();
        (
            q.pop("default", 5, Duration::from_secs(20)).await.unwrap(),
            t.elapsed(),
        )
    });
    // Let the popper reach its blocking wait, then push.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let items = due(3, 0);
    f.queue.push(&items).await.unwrap();
    let (got, took) = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("a push must wake the waiting popper")
        .unwrap();
    assert!(!got.is_empty() && got.len() <= 3, "{got:?}");
    assert_eq!(got[0], items[0].id);
    assert!(took < Duration::from_secs(10), "woke after {took:?}");
    let rest = f.queue.pop("default", 5, Duration::ZERO).await.unwrap();
    assert_eq!(got.len() + rest.len(), 3);
}

async fn depth_counts_waiting_ids(kind: Kind) {
    let f = Fresh::new(kind).await;
    assert_eq!(f.queue.depth().await.unwrap(), 0);
    f.queue.push(&due(42, 1)).await.unwrap();
    assert_eq!(f.queue.depth().await.unwrap(), 42);
    f.queue.pop("default", 40, Duration::ZERO).await.unwrap();
    assert_eq!(f.queue.depth().await.unwrap(), 2);
}

async fn concurrent_poppers_never_share_an_id(kind: Kind) {
    let f = Fresh::new(kind).await;
    let items = due(3_000, 0);
    // Push from several tasks at once too, so pushes and pops interleave.
    let mut pushers = Vec::new();
    for part in items.chunks(500) {
        let q = f.queue.clone();
        let part = part.to_vec();
        pushers.push(tokio::spawn(async move { q.push(&part).await.unwrap() }));
    }
    let mut poppers = Vec::new();
    for i in 0..12 {
        let q = f.queue.clone();
        poppers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            let mut empty = 0;
            while empty < 3 {
                let got = q
                    .pop("default", 1 + i % 7, Duration::from_millis(200))
                    .await
                    .unwrap();
                if got.is_empty() {
                    empty += 1;
                } else {
                    empty = 0;
                    mine.extend(got);
                }
            }
            mine
        }));
    }
    let pushed: usize = futures::future::join_all(pushers)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .sum();
    assert_eq!(pushed, 3_000);
    let mut seen = HashSet::new();
    let mut total = 0;
    for p in poppers {
        for id in p.await.unwrap() {
            total += 1;
            assert!(seen.insert(id), "{id} popped twice");
        }
    }
    assert_eq!(total, 3_000);
    let want: HashSet<Uuid> = items.iter().map(|d| d.id).collect();
    assert_eq!(seen, want);
}

macro_rules! queue_suite {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() { super::$name(super::Kind::Memory).await }
            )*
        }
        mod redis_queue {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() { super::$name(super::Kind::Redis).await }
            )*
        }
    };
}

queue_suite!(
    dedup,
    priority_then_fifo,
    pop_takes_at_most_max,
    empty_pop_waits_then_times_out,
    blocked_pop_wakes_on_push,
    depth_counts_waiting_ids,
    concurrent_poppers_never_share_an_id,
    named_queues_are_separate,
    a_push_wakes_only_its_queue,
);
