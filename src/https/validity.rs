//! A certificate's validity period, read from its DER bytes: enough of X.509 to refuse an expired
//! (or not yet valid) `--certfile` at start, at `--check-config` and on HUP.
//!
//! It owns only this walk through the DER structure and the calendar arithmetic for the message.
//! It must not read files or judge anything else about a certificate (rustls and webpki do that
//! when the configuration is built). A hand-written walk rather than an X.509 crate: two fields
//! are needed, and rustls's own parser does not expose them.

/// When a certificate may be used, in seconds since the Unix epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    /// `notBefore`.
    pub not_before: i64,
    /// `notAfter`.
    pub not_after: i64,
}

/// The validity period of a DER-encoded X.509 certificate, or `None` if the bytes are not one.
pub fn period(der: &[u8]) -> Option<Period> {
    // Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL, serialNumber,
    //   signature AlgorithmIdentifier, issuer Name, validity SEQUENCE { notBefore, notAfter }, ... } }
    let (_, cert, _) = element(der).filter(|(tag, _, _)| *tag == SEQUENCE)?;
    let (_, tbs, _) = element(cert).filter(|(tag, _, _)| *tag == SEQUENCE)?;
    let mut rest = tbs;
    if rest.first() == Some(&VERSION) {
        rest = element(rest)?.2;
    }
    for _ in 0..3 {
        rest = element(rest)?.2; // serialNumber, signature, issuer
    }
    let (_, validity, _) = element(rest).filter(|(tag, _, _)| *tag == SEQUENCE)?;
    let (not_before, after) = time(validity)?;
    let (not_after, _) = time(after)?;
    Some(Period { not_before, not_after })
}

const SEQUENCE: u8 = 0x30;
const VERSION: u8 = 0xa0;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

/// One DER element: its tag, its contents and what follows it.
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// A UTCTime (`YYMMDDHHMMSSZ`, years 1950-2049) or GeneralizedTime (`YYYYMMDDHHMMSSZ`), as DER
/// requires them (seconds present, Zulu), in seconds since the epoch; and what follows.
fn time(input: &[u8]) -> Option<(i64, &[u8])> {
    let (tag, text, rest) = element(input)?;
    let (year, digits) = match (tag, text.len()) {
        (UTC_TIME, 13) => {
            let yy = number(&text[..2])?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, &text[2..])
        }
        (GENERALIZED_TIME, 15) => (number(&text[..4])?, &text[4..]),
        _ => return None,
    };
    if digits[10] != b'Z' {
        return None;
    }
    let field = |i: usize| number(&digits[i..i + 2]);
    let (month, day, hour, minute, second) = (field(0)?, field(2)?, field(4)?, field(6)?, field(8)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some((days * 86_400 + hour * 3600 + minute * 60 + second, rest))
}

fn number(digits: &[u8]) -> Option<i64> {
    digits.iter().try_fold(0i64, |acc, &d| d.is_ascii_digit().then(|| acc * 10 + i64::from(d - b'0')))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DD HH:MM:SS UTC`, for messages.
pub fn format(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC", rem / 3600, rem / 60 % 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(from: (i32, u8, u8), until: (i32, u8, u8)) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        params.not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
        params.not_after = rcgen::date_time_ymd(until.0, until.1, until.2);
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn reads_both_time_forms() {
        // rcgen writes UTCTime before 2050 and GeneralizedTime from 2050 on, as RFC 5280 says.
        let p = period(&cert((2020, 2, 29), (2051, 3, 1))).unwrap();
        assert_eq!(format(p.not_before), "2020-02-29 00:00:00 UTC");
        assert_eq!(format(p.not_after), "2051-03-01 00:00:00 UTC");
        assert_eq!(p.not_before, 1_582_934_400);
    }

    #[test]
    fn civil_dates_round_trip() {
        // A seeded walk over four centuries of days, both ways.
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let secs = (x % (400 * 366 * 86_400)) as i64 - 100 * 365 * 86_400;
            let text = format(secs);
            let (y, m, d) = (text[0..4].parse().unwrap(), text[5..7].parse().unwrap(), text[8..10].parse().unwrap());
            assert_eq!(days_from_civil(y, m, d), secs.div_euclid(86_400), "{text}");
        }
    }

    #[test]
    fn garbage_is_not_a_period() {
        assert_eq!(period(b""), None);
        assert_eq!(period(&[0x30, 0x82, 0xff]), None);
        let good = cert((2020, 1, 1), (2030, 1, 1));
        for cut in 0..good.len() {
            // A truncated certificate is refused, never misread.
            assert_eq!(period(&good[..cut]), None, "cut at {cut}");
        }
    }
}
