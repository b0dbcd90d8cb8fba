//! QEMU-style `key=value,key=value` option lists (`,,` is a literal comma), shared by
//! the command line and the control socket's option forms.

#![forbid(unsafe_code)]

/// Splits `a=b,c=d` into pairs. Errors are one line naming `opt`.
pub fn split(opt: &str, spec: &str) -> Result<Vec<(String, String)>, String> {
    let mut items = Vec::new();
    let mut cur = String::new();
    let mut chars = spec.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ',' {
            if chars.peek() == Some(&',') {
                chars.next();
                cur.push(',');
            } else {
                items.push(std::mem::take(&mut cur));
            }
        } else {
            cur.push(c);
        }
    }
    items.push(cur);
    let mut out = Vec::new();
    for item in items {
        if item.is_empty() {
            continue;
        }
        let Some((k, v)) = item.split_once('=') else {
            return Err(format!("{opt}: '{item}' is not of the form key=value"));
        };
        out.push((k.trim().to_string(), v.to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_and_doubled_commas() {
        let v = split("--x", "a=1,,2,b=c,,").unwrap();
        assert_eq!(
            v,
            vec![("a".into(), "1,2".into()), ("b".into(), "c,".into())]
        );
        assert_eq!(split("--x", "").unwrap(), vec![]);
        assert_eq!(
            split("--x", "a=1,oops").unwrap_err(),
            "--x: 'oops' is not of the form key=value"
        );
    }
}
