//! Tokenizer of TSDL text (CTF 1.8 metadata), for the general reader.
//!
//! Tokens carry the byte offset where they start (offsets are in the *text*, which for
//! packetized metadata is the concatenation of the packets' payloads; [`super::meta`] maps them
//! back to file offsets). Integer literals: decimal, `0x` hexadecimal, `0` octal, with optional
//! `u`/`l` suffixes; string literals with C escapes (`\n`, `\t`, `\xHH`, octal `\NNN`, ...).
//! A NUL byte, an unterminated comment or string, or a literal that does not fit in 64 bits is
//! an error. The token count is bounded by the text size (each token consumes at least a byte).

/// One token.
#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    /// Identifier or keyword.
    Ident(String),
    /// Unsigned literal (a leading `-` is a separate token).
    Int(u64),
    /// String literal, escapes resolved.
    Str(String),
    /// Punctuation.
    Punct(&'static str),
    /// End of the text.
    Eof,
}

/// A token and the byte offset where it starts.
#[derive(Debug, Clone)]
pub struct Token {
    /// The token.
    pub tok: Tok,
    /// Byte offset in the text.
    pub offset: u64,
}

/// Tokenizer error: byte offset and message.
#[derive(Debug, Clone)]
pub struct LexError {
    /// Byte offset in the text.
    pub offset: u64,
    /// What is wrong.
    pub msg: String,
}

const PUNCTS: &[&str] = &[
    ":=", "...", "{", "}", "(", ")", "[", "]", ";", ",", "=", ":", ".", "-", "+", "<", ">", "*",
];

fn parse_int(text: &str) -> Option<u64> {
    let t = text.trim_end_matches(['u', 'U', 'l', 'L']);
    if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        if h.is_empty() {
            return None;
        }
        u64::from_str_radix(h, 16).ok()
    } else if t.len() > 1 && t.starts_with('0') {
        u64::from_str_radix(&t[1..], 8).ok()
    } else {
        t.parse::<u64>().ok()
    }
}

/// Split `src` into tokens; the last one is [`Tok::Eof`].
pub fn tokenize(src: &[u8]) -> Result<Vec<Token>, LexError> {
    let mut i = 0usize;
    let mut out = Vec::new();
    let err = |at: usize, msg: &str| LexError {
        offset: at as u64,
        msg: msg.to_string(),
    };
    while i < src.len() {
        let c = src[i];
        if c == 0 {
            return Err(err(i, "NUL byte in metadata text"));
        }
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        if src[i..].starts_with(b"/*") {
            match src[i + 2..].windows(2).position(|w| w == b"*/") {
                Some(end) => i += 2 + end + 2,
                None => return Err(err(start, "unterminated comment")),
            }
            continue;
        }
        if src[i..].starts_with(b"//") {
            while i < src.len() && src[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        let tok = if c.is_ascii_alphabetic() || c == b'_' {
            while i < src.len() && (src[i].is_ascii_alphanumeric() || src[i] == b'_') {
                i += 1;
            }
            Tok::Ident(String::from_utf8_lossy(&src[start..i]).into_owned())
        } else if c.is_ascii_digit() {
            while i < src.len() && (src[i].is_ascii_alphanumeric() || src[i] == b'_') {
                i += 1;
            }
            let text = String::from_utf8_lossy(&src[start..i]);
            match parse_int(&text) {
                Some(v) => Tok::Int(v),
                None => return Err(err(start, &format!("bad integer literal `{text}`"))),
            }
        } else if c == b'"' || c == b'\'' {
            let quote = c;
            i += 1;
            let mut s: Vec<u8> = Vec::new();
            loop {
                let Some(&ch) = src.get(i) else {
                    return Err(err(start, "unterminated string literal"));
                };
                if ch == quote {
                    i += 1;
                    break;
                }
                if ch == b'\n' {
                    return Err(err(i, "newline in string literal"));
                }
                if ch != b'\\' {
                    s.push(ch);
                    i += 1;
                    continue;
                }
                let Some(&e) = src.get(i + 1) else {
                    return Err(err(start, "unterminated string literal"));
                };
                i += 2;
                let v = match e {
                    b'n' => b'\n',
                    b't' => b'\t',
                    b'r' => b'\r',
                    b'a' => 7,
                    b'b' => 8,
                    b'f' => 12,
                    b'v' => 11,
                    b'\\' | b'"' | b'\'' | b'?' => e,
                    b'x' => {
                        let mut v = 0u32;
                        let mut n = 0;
                        while n < 2 && src.get(i).is_some_and(|d| d.is_ascii_hexdigit()) {
                            v = v * 16 + (src[i] as char).to_digit(16).unwrap_or(0);
                            i += 1;
                            n += 1;
                        }
                        if n == 0 {
                            return Err(err(i, "`\\x` without hex digits"));
                        }
                        v as u8
                    }
                    b'0'..=b'7' => {
                        let mut v = u32::from(e - b'0');
                        let mut n = 1;
                        while n < 3 && src.get(i).is_some_and(|d| (b'0'..=b'7').contains(d)) {
                            v = v * 8 + u32::from(src[i] - b'0');
                            i += 1;
                            n += 1;
                        }
                        if v > 255 {
                            return Err(err(i, "octal escape out of range"));
                        }
                        v as u8
                    }
                    _ => return Err(err(i - 2, "unknown escape in string literal")),
                };
                s.push(v);
            }
            Tok::Str(String::from_utf8_lossy(&s).into_owned())
        } else if let Some(p) = PUNCTS.iter().find(|p| src[i..].starts_with(p.as_bytes())) {
            i += p.len();
            Tok::Punct(p)
        } else {
            return Err(err(i, &format!("unexpected byte 0x{c:02x}")));
        };
        out.push(Token {
            tok,
            offset: start as u64,
        });
    }
    out.push(Token {
        tok: Tok::Eof,
        offset: src.len() as u64,
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals() {
        let t = tokenize(b"0x1F 017 42UL \"a\\x41\\101\\n\" x_1 := ...").unwrap();
        let toks: Vec<_> = t.into_iter().map(|t| t.tok).collect();
        assert_eq!(
            toks,
            vec![
                Tok::Int(31),
                Tok::Int(15),
                Tok::Int(42),
                Tok::Str("aAA\n".into()),
                Tok::Ident("x_1".into()),
                Tok::Punct(":="),
                Tok::Punct("..."),
                Tok::Eof
            ]
        );
        assert!(tokenize(b"\"abc").is_err());
        assert!(tokenize(b"/* x").is_err());
        assert!(tokenize(b"a\0b").is_err());
        assert!(tokenize(b"99999999999999999999999").is_err());
        assert!(tokenize(b"0x").is_err());
    }
}
