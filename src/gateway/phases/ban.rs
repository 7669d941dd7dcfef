//! Phase unit of `request_filter` (D2, Q1): a banned client IP is silently dropped without a
//! new strike, unless the request carries the valid key.

use super::{Answer, Refusal};
use crate::guard::BanList;
use std::net::IpAddr;

pub fn check(bans: &BanList, client_ip: IpAddr, key_valid: bool) -> Result<(), Refusal> {
    if !key_valid && bans.is_banned(client_ip) {
        log::info!("dropping request from banned {client_ip}");
        return Err(Refusal {
            answer: Answer::Drop,
            strike: false,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn d2_banned_clients_are_dropped_unless_they_hold_the_key() {
        let bans = BanList::new(Duration::from_secs(60), 1);
        let (banned, other): (IpAddr, IpAddr) =
            ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        bans.strike(banned);
        let drop = Err(Refusal {
            answer: Answer::Drop,
            strike: false,
        });
        assert_eq!(check(&bans, banned, false), drop);
        assert_eq!(check(&bans, banned, true), Ok(()), "Q1");
        assert_eq!(check(&bans, other, false), Ok(()));
        assert_eq!(bans.strikes(banned), 1, "the drop adds no strike");
    }
}
