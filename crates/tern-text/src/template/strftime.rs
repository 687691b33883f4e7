//! `strftime_now(format)`: Python's `datetime.now().strftime(format)` for chat templates.
//!
//! transformers exposes `strftime_now` to templates (Llama 3.x and Granite put today's date in the system
//! prompt). Python forwards the format to the C library, so this implements glibc's `strftime` in the "C"
//! locale for a naive (time-zone-less) date-time, including the glibc flags `-` (no padding), `_` (space
//! padding), `0` (zero padding) and `^` (upper case). `%z`/`%Z` are empty for a naive date-time, as in
//! Python. Unknown conversions are copied through unchanged, as glibc does.
//!
//! The current time comes from the system clock in UTC (transformers uses the local time zone; on a server
//! running in UTC these agree) unless the caller injects a fixed [`DateTime`], which tests do to get
//! reproducible output.

use std::time::{SystemTime, UNIX_EPOCH};

/// A naive calendar date and time (proleptic Gregorian, no time zone), like Python's naive `datetime`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTime {
    /// Year (1..=9999).
    pub year: i32,
    /// Month (1..=12).
    pub month: u32,
    /// Day of the month (1..=31).
    pub day: u32,
    /// Hour (0..=23).
    pub hour: u32,
    /// Minute (0..=59).
    pub minute: u32,
    /// Second (0..=59).
    pub second: u32,
    /// Microsecond (0..=999_999).
    pub microsecond: u32,
}

const DAYS_IN_MONTH: [u32; 12] = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];

fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i32, m: u32, d: u32) -> i64 {
    let y = i64::from(y) - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Civil date of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i32, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    ((y + i64::from(m <= 2)) as i32, m, d)
}

impl DateTime {
    /// Builds a date-time, checking the ranges.
    pub fn new(year: i32, month: u32, day: u32, hour: u32, minute: u32, second: u32) -> Option<DateTime> {
        if !(1..=9999).contains(&year) || !(1..=12).contains(&month) || day == 0 {
            return None;
        }
        let mut dim = DAYS_IN_MONTH[(month - 1) as usize];
        if month == 2 && is_leap(year) {
            dim = 29;
        }
        if day > dim || hour > 23 || minute > 59 || second > 59 {
            return None;
        }
        Some(DateTime { year, month, day, hour, minute, second, microsecond: 0 })
    }

    /// The date-time of a Unix timestamp, in UTC.
    pub fn from_unix(secs: i64, micros: u32) -> DateTime {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400) as u32;
        let (year, month, day) = civil_from_days(days);
        DateTime {
            year,
            month,
            day,
            hour: rem / 3600,
            minute: rem / 60 % 60,
            second: rem % 60,
            microsecond: micros.min(999_999),
        }
    }

    /// The current time in UTC from the system clock.
    pub fn now_utc() -> DateTime {
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => DateTime::from_unix(d.as_secs() as i64, d.subsec_micros()),
            Err(_) => DateTime::from_unix(0, 0),
        }
    }

    fn days_since_epoch(&self) -> i64 {
        days_from_civil(self.year, self.month, self.day)
    }

    /// Day of the week, 0 = Sunday.
    fn weekday(&self) -> u32 {
        (self.days_since_epoch() + 4).rem_euclid(7) as u32
    }

    /// Day of the year, 1-based.
    fn yday(&self) -> u32 {
        (self.days_since_epoch() - days_from_civil(self.year, 1, 1)) as u32 + 1
    }

    /// ISO 8601 week-based year and week number.
    fn iso_week(&self) -> (i32, u32) {
        let wday = (self.weekday() + 6) % 7; // Monday = 0
        let yday = self.yday() as i64 - 1; // 0-based
        let days = |y: i32| if is_leap(y) { 366 } else { 365 };
        // Thursday of the current week decides the year.
        let thursday = yday - wday as i64 + 3;
        if thursday < 0 {
            let py = self.year - 1;
            let t = thursday + days(py);
            (py, (t / 7 + 1) as u32)
        } else if thursday >= days(self.year) {
            (self.year + 1, 1)
        } else {
            (self.year, (thursday / 7 + 1) as u32)
        }
    }

    /// Formats like glibc `strftime` in the C locale.
    pub fn strftime(&self, fmt: &str) -> String {
        let mut out = String::with_capacity(fmt.len() + 16);
        let mut chars = fmt.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            let mut flag = None;
            let mut spec = String::from("%");
            while let Some(&f) = chars.peek() {
                if matches!(f, '-' | '_' | '0' | '^' | '#') {
                    flag = Some(f);
                    spec.push(f);
                    chars.next();
                } else {
                    break;
                }
            }
            let Some(conv) = chars.next() else {
                out.push_str(&spec);
                break;
            };
            spec.push(conv);
            match self.conversion(conv) {
                Some(Field::Num(n, width, pad)) => {
                    let pad = match flag {
                        Some('-') => None,
                        Some('_') => Some(' '),
                        Some('0') => Some('0'),
                        _ => pad,
                    };
                    let digits = n.to_string();
                    if let Some(p) = pad {
                        for _ in digits.len()..width {
                            out.push(p);
                        }
                    }
                    out.push_str(&digits);
                }
                Some(Field::Text(s)) => {
                    if flag == Some('^') {
                        out.push_str(&s.to_uppercase());
                    } else if flag == Some('#') {
                        // glibc: `#` upper-cases names and lower-cases `%p`.
                        if conv == 'p' {
                            out.push_str(&s.to_lowercase());
                        } else {
                            out.push_str(&s.to_uppercase());
                        }
                    } else {
                        out.push_str(&s);
                    }
                }
                None => out.push_str(&spec),
            }
        }
        out
    }

    fn conversion(&self, conv: char) -> Option<Field> {
        let hour12 = if self.hour.is_multiple_of(12) { 12 } else { self.hour % 12 };
        let wday = self.weekday();
        Some(match conv {
            'a' => Field::Text(WEEKDAYS[wday as usize][..3].to_string()),
            'A' => Field::Text(WEEKDAYS[wday as usize].to_string()),
            'b' | 'h' => Field::Text(MONTHS[(self.month - 1) as usize][..3].to_string()),
            'B' => Field::Text(MONTHS[(self.month - 1) as usize].to_string()),
            'c' => Field::Text(self.strftime("%a %b %e %H:%M:%S %Y")),
            'C' => Field::Num(i64::from(self.year / 100), 2, Some('0')),
            'd' => Field::Num(i64::from(self.day), 2, Some('0')),
            'D' | 'x' => Field::Text(self.strftime("%m/%d/%y")),
            'e' => Field::Num(i64::from(self.day), 2, Some(' ')),
            'f' => Field::Num(i64::from(self.microsecond), 6, Some('0')),
            'F' => Field::Text(self.strftime("%Y-%m-%d")),
            'g' => Field::Num(i64::from(self.iso_week().0 % 100), 2, Some('0')),
            'G' => Field::Num(i64::from(self.iso_week().0), 1, None),
            'H' => Field::Num(i64::from(self.hour), 2, Some('0')),
            'I' => Field::Num(i64::from(hour12), 2, Some('0')),
            'j' => Field::Num(i64::from(self.yday()), 3, Some('0')),
            'k' => Field::Num(i64::from(self.hour), 2, Some(' ')),
            'l' => Field::Num(i64::from(hour12), 2, Some(' ')),
            'm' => Field::Num(i64::from(self.month), 2, Some('0')),
            'M' => Field::Num(i64::from(self.minute), 2, Some('0')),
            'n' => Field::Text("\n".into()),
            'p' => Field::Text(if self.hour < 12 { "AM" } else { "PM" }.into()),
            'P' => Field::Text(if self.hour < 12 { "am" } else { "pm" }.into()),
            'r' => Field::Text(self.strftime("%I:%M:%S %p")),
            'R' => Field::Text(self.strftime("%H:%M")),
            's' => Field::Num(
                self.days_since_epoch() * 86_400 + i64::from(self.hour * 3600 + self.minute * 60 + self.second),
                1,
                None,
            ),
            'S' => Field::Num(i64::from(self.second), 2, Some('0')),
            't' => Field::Text("\t".into()),
            'T' | 'X' => Field::Text(self.strftime("%H:%M:%S")),
            'u' => Field::Num(i64::from(if wday == 0 { 7 } else { wday }), 1, None),
            'U' => Field::Num(i64::from((self.yday() + 6 - wday) / 7), 2, Some('0')),
            'V' => Field::Num(i64::from(self.iso_week().1), 2, Some('0')),
            'w' => Field::Num(i64::from(wday), 1, None),
            'W' => Field::Num(i64::from((self.yday() + 6 - (wday + 6) % 7) / 7), 2, Some('0')),
            'y' => Field::Num(i64::from(self.year % 100), 2, Some('0')),
            'Y' => Field::Num(i64::from(self.year), 1, None),
            'z' | 'Z' => Field::Text(String::new()),
            '%' => Field::Text("%".into()),
            _ => return None,
        })
    }
}

enum Field {
    /// A number, its minimum width and default padding character.
    Num(i64, usize, Option<char>),
    Text(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_glibc() {
        // Python: datetime(2024, 7, 26, 9, 30, 15).strftime(...)
        let dt = DateTime::new(2024, 7, 26, 9, 30, 15).unwrap();
        assert_eq!(dt.strftime("%d %b %Y"), "26 Jul 2024");
        assert_eq!(dt.strftime("%B %d, %Y"), "July 26, 2024");
        assert_eq!(dt.strftime("%A %-d %I%p %j %U %W %V %G %u %w"), "Friday 26 09AM 208 29 30 30 2024 5 5");
        assert_eq!(
            dt.strftime("%c|%x|%X|%F %T|%e|%%|%Q"),
            "Fri Jul 26 09:30:15 2024|07/26/24|09:30:15|2024-07-26 09:30:15|26|%|%Q"
        );
        assert_eq!(dt.strftime("%^a %z%Z."), "FRI .");
        assert_eq!(
            dt.strftime("%#b %_m %0e %k %l %C %g %P %r %R %h %n %t %D"),
            "JUL  7 26  9  9 20 24 am 09:30:15 AM 09:30 Jul \n \t 07/26/24"
        );
        let jan1 = DateTime::new(2021, 1, 1, 0, 0, 0).unwrap();
        assert_eq!(jan1.strftime("%G-W%V-%u %U %W"), "2020-W53-5 00 00");
    }

    #[test]
    fn unix_round_trip() {
        let dt = DateTime::from_unix(1_721_986_215, 0);
        assert_eq!(dt, DateTime::new(2024, 7, 26, 9, 30, 15).unwrap());
        assert_eq!(dt.strftime("%s"), "1721986215");
    }
}
