//! A plugin's output, by the Monitoring Plugins guidelines: the first line
//! is `TEXT | PERFDATA`, later lines are long text, and a `|` on one of
//! them starts more performance data that runs to the end. A figure is
//! `'label'=value[UOM];[warn];[crit];[min];[max]`, the label quoted with
//! `'` when it holds spaces (`''` for a quote inside it).

/// One performance figure; thresholds and ranges are not kept.
#[derive(Debug, Clone, PartialEq)]
pub struct Perf {
    pub label: String,
    pub value: f64,
    pub uom: String,
}

/// The first line's text, and every performance figure that parses (an
/// `U` value, undetermined, and malformed items are left out).
pub fn parse_output(text: &str) -> (String, Vec<Perf>) {
    let mut lines = text.lines();
    let first = lines.next().unwrap_or_default();
    let (head, mut perf_text) = match first.split_once('|') {
        Some((h, p)) => (h.trim().to_string(), p.to_string()),
        None => (first.trim().to_string(), String::new()),
    };
    let mut in_perf = false;
    for line in lines {
        if in_perf {
            perf_text.push(' ');
            perf_text.push_str(line);
        } else if let Some((_, p)) = line.split_once('|') {
            in_perf = true;
            perf_text.push(' ');
            perf_text.push_str(p);
        }
    }
    (head, items(&perf_text).filter_map(|i| figure(&i)).collect())
}

/// Splits on spaces outside quotes.
fn items(s: &str) -> impl Iterator<Item = String> + '_ {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' if quoted && chars.peek() == Some(&'\'') => {
                chars.next();
                cur.push('\'');
            }
            '\'' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out.into_iter()
}

fn figure(item: &str) -> Option<Perf> {
    let (label, rest) = item.rsplit_once('=')?;
    if label.is_empty() {
        return None;
    }
    let value = rest.split(';').next()?;
    let split = value
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E')))
        .unwrap_or(value.len());
    let (num, uom) = value.split_at(split);
    let value: f64 = num.parse().ok().filter(|v: &f64| v.is_finite())?;
    Some(Perf {
        label: label.to_string(),
        value,
        uom: uom.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(label: &str, value: f64, uom: &str) -> Perf {
        Perf {
            label: label.into(),
            value,
            uom: uom.into(),
        }
    }

    #[test]
    fn check_tcp_and_check_disk_lines() {
        let (text, perf) = parse_output(
            "TCP OK - 0.000 second response time on 127.0.0.1 port 22|time=0.000123s;;;0.000000;10.000000\n",
        );
        assert_eq!(
            text,
            "TCP OK - 0.000 second response time on 127.0.0.1 port 22"
        );
        assert_eq!(perf, [p("time", 0.000123, "s")]);
        let (_, perf) = parse_output(
            "DISK OK - free space: / 20000 MB (40% inode=90%);| /=30000MB;40000;45000;0;50000 '/var/lib docker'=12.5%;80;90\n",
        );
        assert_eq!(
            perf,
            [p("/", 30000.0, "MB"), p("/var/lib docker", 12.5, "%")]
        );
    }

    #[test]
    fn long_text_and_later_perfdata() {
        let (text, perf) = parse_output(
            "OK - all good | a=1\nlong text line\nmore | b=2c;;;\nc=U d=3\n'it''s'=4\n",
        );
        assert_eq!(text, "OK - all good");
        assert_eq!(
            perf,
            [
                p("a", 1.0, ""),
                p("b", 2.0, "c"),
                p("d", 3.0, ""),
                p("it's", 4.0, "")
            ]
        );
    }

    #[test]
    fn garbage_is_left_out() {
        let (text, perf) = parse_output("nothing to see | =1 x= y=abc z=-1.5e3ms\n");
        assert_eq!(text, "nothing to see");
        assert_eq!(perf, [p("z", -1500.0, "ms")]);
        assert_eq!(parse_output(""), (String::new(), vec![]));
    }
}
