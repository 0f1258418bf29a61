//! Token buckets: one per API key (from the keys file), one per client address when no keys are
//! configured, one per model and one for the whole server (from flags). Every map is bounded.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A rate: `rps` tokens per second, at most `burst` saved up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub rps: f64,
    pub burst: u32,
}

/// A refusal: which bucket was empty and when it has a token again.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Refusal {
    pub burst: u32,
    pub retry_after: Duration,
}

#[derive(Debug)]
struct State {
    tokens: f64,
    last: Instant,
}

/// One token bucket. A short mutex: a few arithmetic operations, never held across an await.
#[derive(Debug)]
pub struct Bucket {
    rate: Rate,
    state: Mutex<State>,
}

impl Bucket {
    pub fn new(rate: Rate) -> Bucket {
        Bucket {
            rate,
            state: Mutex::new(State {
                tokens: f64::from(rate.burst),
                last: Instant::now(),
            }),
        }
    }

    /// Takes one token, or says how long until one is there.
    pub fn take(&self, now: Instant) -> Result<(), Refusal> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let refill = now.saturating_duration_since(s.last).as_secs_f64() * self.rate.rps;
        s.tokens = (s.tokens + refill).min(f64::from(self.rate.burst));
        s.last = now;
        if s.tokens >= 1.0 {
            s.tokens -= 1.0;
            return Ok(());
        }
        let wait = (1.0 - s.tokens) / self.rate.rps;
        Err(Refusal {
            burst: self.rate.burst,
            retry_after: Duration::from_secs_f64(wait.min(86_400.0)),
        })
    }

    /// Whether the bucket is full again (an idle client): such entries can be forgotten.
    fn is_full(&self, now: Instant) -> bool {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let refill = now.saturating_duration_since(s.last).as_secs_f64() * self.rate.rps;
        s.tokens + refill >= f64::from(self.rate.burst)
    }
}

const SHARDS: usize = 16;

/// Buckets per client address, sharded, holding at most `capacity` addresses. When a shard is
/// full, addresses whose bucket has refilled are forgotten (they lose nothing); if none has, a
/// new address is refused until one has, so a flood of rotating addresses cannot grow memory.
#[derive(Debug)]
pub struct PerAddress {
    rate: Rate,
    per_shard: usize,
    shards: Vec<Mutex<HashMap<IpAddr, Bucket>>>,
}

impl PerAddress {
    pub fn new(rate: Rate, capacity: usize) -> PerAddress {
        PerAddress {
            rate,
            per_shard: capacity.div_ceil(SHARDS).max(1),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    pub fn take(&self, ip: IpAddr, now: Instant) -> Result<(), Refusal> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        ip.hash(&mut hasher);
        let shard = &self.shards[hasher.finish() as usize % SHARDS];
        let mut map = shard.lock().unwrap_or_else(|p| p.into_inner());
        if !map.contains_key(&ip) && map.len() >= self.per_shard {
            map.retain(|_, b| !b.is_full(now));
            if map.len() >= self.per_shard {
                // Every tracked address is still limited: refuse newcomers until one refills.
                return Err(Refusal {
                    burst: self.rate.burst,
                    retry_after: Duration::from_secs_f64(1.0 / self.rate.rps),
                });
            }
        }
        map.entry(ip)
            .or_insert_with(|| Bucket::new(self.rate))
            .take(now)
    }

    /// Addresses tracked now.
    pub fn tracked(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let bucket = Bucket::new(Rate {
            rps: 10.0,
            burst: 3,
        });
        let t0 = Instant::now();
        for _ in 0..3 {
            bucket.take(t0).unwrap();
        }
        let refused = bucket.take(t0).unwrap_err();
        assert_eq!(refused.burst, 3);
        assert!((refused.retry_after.as_secs_f64() - 0.1).abs() < 1e-9);
        // 100 ms later one token is back, and only one.
        let t1 = t0 + Duration::from_millis(100);
        bucket.take(t1).unwrap();
        assert!(bucket.take(t1).is_err());
        // Refill never exceeds the burst.
        let t2 = t1 + Duration::from_secs(60);
        for _ in 0..3 {
            bucket.take(t2).unwrap();
        }
        assert!(bucket.take(t2).is_err());
    }

    #[test]
    fn addresses_are_limited_apart_and_the_map_stays_bounded() {
        let rate = Rate { rps: 1.0, burst: 1 };
        let limits = PerAddress::new(rate, 32);
        let now = Instant::now();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        limits.take(a, now).unwrap();
        assert!(limits.take(a, now).is_err());
        limits.take(b, now).unwrap();
        for i in 0..100_000u32 {
            let ip = IpAddr::from(i.to_be_bytes());
            let _ = limits.take(ip, now);
        }
        assert!(limits.tracked() <= 32, "{}", limits.tracked());
        // Once buckets have refilled, newcomers are admitted again.
        let later = now + Duration::from_secs(5);
        limits.take("192.168.1.1".parse().unwrap(), later).unwrap();
    }
}
