//! Webhook maths: Standard Webhooks signatures, the retry schedule, which
//! endpoint wants which event, and which addresses a webhook may not reach.

use crate::time::Instant;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::net::{IpAddr, Ipv4Addr};

pub const SECRET_PREFIX: &str = "whsec_";

/// Retry delays after each failed attempt, in seconds. Deliveries stop
/// being retried once three days have passed since the event.
pub const RETRY_DELAYS_SECONDS: [i64; 8] = [5, 60, 300, 1800, 7200, 18_000, 36_000, 36_000];
pub const GIVE_UP_AFTER_SECONDS: i64 = 3 * 86_400;

/// When to try again after `attempts` failed attempts, or `None` to give up.
pub fn next_attempt(attempts: u32, event_created: Instant, now: Instant) -> Option<Instant> {
    let delay =
        RETRY_DELAYS_SECONDS[(attempts.max(1) as usize - 1).min(RETRY_DELAYS_SECONDS.len() - 1)];
    let next = now.plus_micros(delay * 1_000_000);
    (next <= event_created.plus_micros(GIVE_UP_AFTER_SECONDS * 1_000_000)).then_some(next)
}

/// The `webhook-signature` header value for a message (Standard Webhooks v1):
/// base64 HMAC-SHA256 of `{id}.{timestamp}.{body}` under the secret's key.
pub fn sign(secret: &str, msg_id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    let key = STANDARD.decode(secret.strip_prefix(SECRET_PREFIX)?).ok()?;
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key).ok()?;
    mac.update(format!("{msg_id}.{timestamp}.").as_bytes());
    mac.update(body);
    Some(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

/// A new signing secret from 24 random bytes.
pub fn secret_from_bytes(bytes: [u8; 24]) -> String {
    format!("{SECRET_PREFIX}{}", STANDARD.encode(bytes))
}

/// Does an endpoint subscribed to `wanted` (empty or `*` = everything) want `kind`?
pub fn wants(wanted: &[String], kind: &str) -> bool {
    wanted.is_empty() || wanted.iter().any(|w| w == "*" || w == kind)
}

/// Addresses a webhook must not reach unless configuration allows it (SSRF):
/// the one check of every address a webhook host resolves to, at creation
/// and at send time (the sender connects only to addresses it passed).
///
/// IPv4: "this network" 0/8, private 10/8, 172.16/12, 192.168/16, CGNAT
/// 100.64/10, loopback 127/8, link-local 169.254/16, IETF protocol
/// assignments 192.0.0/24, documentation 192.0.2/24, 198.51.100/24,
/// 203.0.113/24, 6to4 relay anycast 192.88.99/24, benchmarking 198.18/15,
/// multicast 224/4, reserved 240/4 and broadcast.
///
/// IPv6: unspecified, loopback, unique-local fc00::/7, link-local
/// fe80::/10, site-local fec0::/10, multicast ff00::/8, documentation
/// 2001:db8::/32, discard-only 100::/64, local-use NAT64 64:ff9b:1::/48 and
/// Teredo 2001::/32 (its embedded address is obfuscated). Forms that embed
/// an IPv4 address are judged by that address: IPv4-mapped ::ffff:0:0/96,
/// IPv4-compatible ::a.b.c.d, NAT64 64:ff9b::/96 and 6to4 2002::/16.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_private_v4(v4),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let embedded = |hi: u16, lo: u16| {
                Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8)
            };
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private_v4(v4);
            }
            // ::a.b.c.d (IPv4-compatible, deprecated): ::, ::1 and the
            // rest of ::/96 are judged by their last 32 bits (:: is 0.0.0.0,
            // ::1 is 0.0.0.1: both refused).
            if s[..6] == [0; 6] {
                return is_private_v4(embedded(s[6], s[7]));
            }
            // NAT64 well-known prefix: a translator connects to the IPv4 address.
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                return is_private_v4(embedded(s[6], s[7]));
            }
            // 6to4: the IPv4 address of the tunnel's end is bits 16..48.
            if s[0] == 0x2002 {
                return is_private_v4(embedded(s[1], s[2]));
            }
            v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (s[0] & 0xffc0) == 0xfec0 // site-local fec0::/10
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || (s[0] == 0x2001 && s[1] == 0) // Teredo 2001::/32
                || (s[..4] == [0x100, 0, 0, 0]) // discard-only 100::/64
                || (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1) // local-use NAT64
        }
    }
}

fn is_private_v4(v4: Ipv4Addr) -> bool {
    let o = v4.octets();
    v4.is_loopback()
        || v4.is_private()
        || v4.is_link_local()
        || v4.is_unspecified()
        || v4.is_multicast()
        || v4.is_broadcast()
        || v4.is_documentation()
        || o[0] == 0
        || (o[0] == 100 && (64..128).contains(&o[1]))
        || (o[0] == 192 && o[1] == 0 && o[2] == 0)
        || (o[0] == 192 && o[1] == 88 && o[2] == 99)
        || (o[0] == 198 && (o[1] == 18 || o[1] == 19))
        || o[0] >= 240
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_like_the_standard_webhooks_reference() {
        // The example of the Standard Webhooks specification.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        let sig = sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body).unwrap();
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(sign("nope", "m", 1, b"").is_none());
    }

    #[test]
    fn retries_back_off_and_stop_after_three_days() {
        let t0 = Instant::from_micros(1_000_000_000_000);
        assert_eq!(next_attempt(1, t0, t0), Some(t0.plus_micros(5_000_000)));
        assert_eq!(next_attempt(3, t0, t0), Some(t0.plus_micros(300_000_000)));
        let late = t0.plus_micros(2 * 86_400_000_000 + 16 * 3_600_000_000);
        assert_eq!(next_attempt(8, t0, late), None);
    }

    #[test]
    fn private_addresses_are_refused() {
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.1",
            "172.16.5.4",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fc00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.2.1",
            "198.18.0.1",
            "240.0.0.1",
            "192.0.0.8",
            "::",
            "::127.0.0.1",
            "::10.1.2.3",
            "::0.0.0.1",
            "64:ff9b::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::1",
            "2002:7f00:1::1",
            "2002:0a00:0001::",
            "2002:c0a8:0101::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "fec0::1",
            "feff::1",
            "fd12:3456::1",
            "ff02::1",
            "2001:db8::1",
            "100::1",
        ] {
            assert!(is_private(a.parse().unwrap()), "{a}");
        }
        for a in [
            "93.184.216.34",
            "2606:2800:220:1:248:1893:25c8:1946",
            "::ffff:93.184.216.34",
            "64:ff9b::93.184.216.34",
            "2002:5db8:d822::1",
            "::93.184.216.34",
        ] {
            assert!(!is_private(a.parse().unwrap()), "{a}");
        }
    }

    #[test]
    fn subscriptions() {
        assert!(wants(&[], "capacity.pool.created"));
        assert!(wants(&["*".into()], "x"));
        assert!(!wants(
            &["capacity.pool.created".into()],
            "capacity.pool.updated"
        ));
    }
}
