//! Sprig's crypto functions with real randomness and real keys: `htpasswd`, `bcrypt`,
//! `genPrivateKey`, `genCA`, `genSelfSignedCert`, `genSignedCert` (RSA 2048 like Sprig,
//! keys printed as `RSA PRIVATE KEY` PEM blocks), and `buildCustomCert` (a CA of your own,
//! checked as Sprig checks it, usable with `genSignedCert`).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, RsaKeySize, SanType, SerialNumber,
};

use super::funcs::{rand_bytes, strval, to_i64};
use super::template::{Exec, FuncError, FuncMap, FuncResult};
use super::value::Value;

thread_local! {
    /// Subjects of the CAs generated in this render, by certificate PEM.
    static CA_SUBJECTS: RefCell<HashMap<String, String>> = RefCell::new(HashMap::new());
}

/// Registers the crypto functions.
pub fn register(m: &mut FuncMap) {
    m.insert("htpasswd", htpasswd);
    m.insert("bcrypt", bcrypt_fn);
    m.insert("genPrivateKey", gen_private_key);
    m.insert("genCA", gen_ca);
    m.insert("genSelfSignedCert", gen_self_signed);
    m.insert("genSignedCert", gen_signed);
    m.insert("buildCustomCert", build_custom_cert);
    m.insert("encryptAES", encrypt_aes_fn);
    m.insert("derivePassword", derive_password_fn);
    m.insert("decryptAES", decrypt_aes_fn);
}

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    use hmac::Mac as _;
    let mut m =
        <HmacSha256 as hmac::KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// PBKDF2-HMAC-SHA256 (RFC 8018).
fn pbkdf2_sha256(password: &[u8], salt: &[u8], rounds: u32, out: &mut [u8]) {
    for (i, chunk) in out.chunks_mut(32).enumerate() {
        let block = (i as u32 + 1).to_be_bytes();
        let mut u = hmac_sha256(password, &[salt, &block]);
        let mut t = u;
        for _ in 1..rounds {
            u = hmac_sha256(password, &[&u]);
            for (a, b) in t.iter_mut().zip(u.iter()) {
                *a ^= b;
            }
        }
        chunk.copy_from_slice(&t[..chunk.len()]);
    }
}

/// The Salsa20/8 core over 16 little-endian words (RFC 7914 section 3).
fn salsa20_8(b: &mut [u32; 16]) {
    let mut x = *b;
    for _ in 0..4 {
        let mut q = |a: usize, bb: usize, c: usize, r: u32| {
            x[a] ^= x[bb].wrapping_add(x[c]).rotate_left(r);
        };
        q(4, 0, 12, 7);
        q(8, 4, 0, 9);
        q(12, 8, 4, 13);
        q(0, 12, 8, 18);
        q(9, 5, 1, 7);
        q(13, 9, 5, 9);
        q(1, 13, 9, 13);
        q(5, 1, 13, 18);
        q(14, 10, 6, 7);
        q(2, 14, 10, 9);
        q(6, 2, 14, 13);
        q(10, 6, 2, 18);
        q(3, 15, 11, 7);
        q(7, 3, 15, 9);
        q(11, 7, 3, 13);
        q(15, 11, 7, 18);
        q(1, 0, 3, 7);
        q(2, 1, 0, 9);
        q(3, 2, 1, 13);
        q(0, 3, 2, 18);
        q(6, 5, 4, 7);
        q(7, 6, 5, 9);
        q(4, 7, 6, 13);
        q(5, 4, 7, 18);
        q(11, 10, 9, 7);
        q(8, 11, 10, 9);
        q(9, 8, 11, 13);
        q(10, 9, 8, 18);
        q(12, 15, 14, 7);
        q(13, 12, 15, 9);
        q(14, 13, 12, 13);
        q(15, 14, 13, 18);
    }
    for (a, x) in b.iter_mut().zip(x.iter()) {
        *a = a.wrapping_add(*x);
    }
}

/// scryptBlockMix over `2r` 64-byte blocks held as words (RFC 7914 section 4).
fn block_mix(b: &[u32], out: &mut [u32], r: usize) {
    let mut x = [0u32; 16];
    x.copy_from_slice(&b[(2 * r - 1) * 16..2 * r * 16]);
    for i in 0..2 * r {
        for (xj, bj) in x.iter_mut().zip(&b[i * 16..(i + 1) * 16]) {
            *xj ^= bj;
        }
        salsa20_8(&mut x);
        // Even blocks first, then odd ones.
        let dst = if i % 2 == 0 { i / 2 } else { r + i / 2 };
        out[dst * 16..(dst + 1) * 16].copy_from_slice(&x);
    }
}

/// scrypt (RFC 7914) with `n` a power of two.
fn scrypt(password: &[u8], salt: &[u8], n: usize, r: usize, p: usize, out: &mut [u8]) {
    let words = 32 * r;
    let mut b = vec![0u8; p * 128 * r];
    pbkdf2_sha256(password, salt, 1, &mut b);
    let mut v = vec![0u32; n * words];
    let mut x = vec![0u32; words];
    let mut y = vec![0u32; words];
    for chunk in b.chunks_mut(128 * r) {
        for (w, c) in x.iter_mut().zip(chunk.chunks(4)) {
            *w = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        }
        for i in 0..n {
            v[i * words..(i + 1) * words].copy_from_slice(&x);
            block_mix(&x, &mut y, r);
            std::mem::swap(&mut x, &mut y);
        }
        for _ in 0..n {
            let j = (x[(2 * r - 1) * 16] as usize) & (n - 1);
            for (a, bv) in x.iter_mut().zip(&v[j * words..(j + 1) * words]) {
                *a ^= bv;
            }
            block_mix(&x, &mut y, r);
            std::mem::swap(&mut x, &mut y);
        }
        for (c, w) in chunk.chunks_mut(4).zip(x.iter()) {
            c.copy_from_slice(&w.to_le_bytes());
        }
    }
    pbkdf2_sha256(password, &b, 1, out);
}

/// Sprig's `derivePassword` (the Master Password algorithm): scrypt(N=32768, r=8, p=2) of
/// the password salted with the user, an HMAC-SHA256 of the site and counter, then a
/// template of the password type filled from the seed's bytes.
pub(crate) fn derive_password(
    counter: u32,
    password_type: &str,
    password: &str,
    user: &str,
    site: &str,
) -> String {
    const SEED: &[u8] = b"com.lyndir.masterpassword";
    let templates: &[&str] = match password_type {
        "maximum" => &["anoxxxxxxxxxxxxxxxxx", "axxxxxxxxxxxxxxxxxno"],
        "long" => &[
            "CvcvnoCvcvCvcv",
            "CvcvCvcvnoCvcv",
            "CvcvCvcvCvcvno",
            "CvccnoCvcvCvcv",
            "CvccCvcvnoCvcv",
            "CvccCvcvCvcvno",
            "CvcvnoCvccCvcv",
            "CvcvCvccnoCvcv",
            "CvcvCvccCvcvno",
            "CvcvnoCvcvCvcc",
            "CvcvCvcvnoCvcc",
            "CvcvCvcvCvccno",
            "CvccnoCvccCvcv",
            "CvccCvccnoCvcv",
            "CvccCvccCvcvno",
            "CvcvnoCvccCvcc",
            "CvcvCvccnoCvcc",
            "CvcvCvccCvccno",
            "CvccnoCvcvCvcc",
            "CvccCvcvnoCvcc",
            "CvccCvcvCvccno",
        ],
        "medium" => &["CvcnoCvc", "CvcCvcno"],
        "short" => &["Cvcn"],
        "basic" => &["aaanaaan", "aannaaan", "aaannaaa"],
        "pin" => &["nnnn"],
        _ => return format!("cannot find password template {password_type}"),
    };
    let chars = |c: u8| -> &'static [u8] {
        match c {
            b'V' => b"AEIOU",
            b'C' => b"BCDFGHJKLMNPQRSTVWXYZ",
            b'v' => b"aeiou",
            b'c' => b"bcdfghjklmnpqrstvwxyz",
            b'A' => b"AEIOUBCDFGHJKLMNPQRSTVWXYZ",
            b'a' => b"AEIOUaeiouBCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz",
            b'n' => b"0123456789",
            b'o' => b"@&%?,=[]_:-+*$#!'^~;()/.",
            _ => b"AEIOUaeiouBCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz0123456789!@#$%^&*()",
        }
    };
    let mut salt = SEED.to_vec();
    salt.extend_from_slice(&(user.len() as u32).to_be_bytes());
    salt.extend_from_slice(user.as_bytes());
    let mut key = [0u8; 64];
    scrypt(password.as_bytes(), &salt, 32768, 8, 2, &mut key);
    let mut msg = SEED.to_vec();
    msg.extend_from_slice(&(site.len() as u32).to_be_bytes());
    msg.extend_from_slice(site.as_bytes());
    msg.extend_from_slice(&counter.to_be_bytes());
    let seed = hmac_sha256(&key, &[&msg]);
    let template = templates[usize::from(seed[0]) % templates.len()];
    template
        .bytes()
        .enumerate()
        .map(|(i, c)| {
            let set = chars(c);
            char::from(set[usize::from(seed[i + 1]) % set.len()])
        })
        .collect()
}

fn derive_password_fn(_: &mut Exec<'_>, a: &[Value]) -> FuncResult {
    if a.len() != 5 {
        return Err(err(format!(
            "wrong number of args for derivePassword: want 5 got {}",
            a.len()
        )));
    }
    // text/template converts the first argument to uint32: ints only.
    let counter = match &a[0] {
        Value::Int(i) if (0..=i64::from(u32::MAX)).contains(i) => *i as u32,
        Value::Int(i) => {
            return Err(err(format!(
                "wrong type for value; expected uint32; got int: {i} overflows uint32"
            )));
        }
        other => {
            return Err(err(format!(
                "wrong type for value; expected uint32; got {}",
                other.type_name()
            )));
        }
    };
    Ok(Value::from(derive_password(
        counter,
        &strval(&a[1]),
        &strval(&a[2]),
        &strval(&a[3]),
        &strval(&a[4]),
    )))
}

/// Sprig's AES key: the password's bytes, zero-padded or cut to 32 (AES-256).
fn aes_key(password: &str) -> Result<aws_lc_rs::cipher::UnboundCipherKey, FuncError> {
    let mut key = [0u8; 32];
    let p = password.as_bytes();
    let n = p.len().min(32);
    key[..n].copy_from_slice(&p[..n]);
    aws_lc_rs::cipher::UnboundCipherKey::new(&aws_lc_rs::cipher::AES_256, &key)
        .map_err(|_| err("crypto/aes: cannot create the cipher"))
}

/// Sprig's `encryptAES`: AES-256-CBC, PKCS#7 padding, a random IV before the ciphertext,
/// base64. An empty plaintext gives an empty string.
pub(crate) fn encrypt_aes(password: &str, plaintext: &str) -> Result<String, FuncError> {
    use aws_lc_rs::cipher::{EncryptingKey, EncryptionContext};
    if plaintext.is_empty() {
        return Ok(String::new());
    }
    let pad = 16 - plaintext.len() % 16;
    let mut out = rand_bytes(16);
    let iv: [u8; 16] = out[..16]
        .try_into()
        .map_err(|_| err("crypto/aes: IV length"))?;
    out.extend_from_slice(plaintext.as_bytes());
    out.extend(std::iter::repeat_n(pad as u8, pad));
    EncryptingKey::cbc(aes_key(password)?)
        .and_then(|k| {
            k.less_safe_encrypt(
                &mut out[16..],
                EncryptionContext::Iv128(aws_lc_rs::iv::FixedLength::from(iv)),
            )
        })
        .map_err(|_| err("crypto/aes: encryption failed"))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(out))
}

/// Sprig's `decryptAES`: the inverse of [`encrypt_aes`]. Where Go panics (input shorter than
/// one block, not whole blocks, a padding length past the data) this is an error.
pub(crate) fn decrypt_aes(password: &str, crypt64: &str) -> Result<String, FuncError> {
    use aws_lc_rs::cipher::{DecryptingKey, DecryptionContext};
    if crypt64.is_empty() {
        return Ok(String::new());
    }
    let mut crypt = base64::engine::general_purpose::STANDARD
        .decode(crypt64)
        .map_err(|e| err(go_base64_error(crypt64, &e)))?;
    if crypt.len() < 16 {
        return Err(err(format!(
            "runtime error: slice bounds out of range [:16] with capacity {}",
            crypt.len()
        )));
    }
    if crypt.len() % 16 != 0 {
        return Err(err("crypto/cipher: input not full blocks"));
    }
    let iv: [u8; 16] = crypt[..16]
        .try_into()
        .map_err(|_| err("crypto/aes: IV length"))?;
    let body = &mut crypt[16..];
    if body.is_empty() {
        return Err(err("runtime error: index out of range [-1]"));
    }
    let plain = DecryptingKey::cbc(aes_key(password)?)
        .and_then(|k| {
            k.decrypt(
                body,
                DecryptionContext::Iv128(aws_lc_rs::iv::FixedLength::from(iv)),
            )
        })
        .map_err(|_| err("crypto/aes: decryption failed"))?;
    let pad = usize::from(plain[plain.len() - 1]);
    if pad > plain.len() {
        return Err(err(format!(
            "runtime error: slice bounds out of range [:{}]",
            plain.len() as i64 - pad as i64
        )));
    }
    Ok(String::from_utf8_lossy(&plain[..plain.len() - pad]).into_owned())
}

/// Go's `base64.CorruptInputError` text for a string the decoder refused.
fn go_base64_error(input: &str, e: &base64::DecodeError) -> String {
    let at = match e {
        base64::DecodeError::InvalidByte(i, _) => *i,
        _ => input.len(),
    };
    format!("illegal base64 data at input byte {at}")
}

fn encrypt_aes_fn(_: &mut Exec<'_>, a: &[Value]) -> FuncResult {
    arity2("encryptAES", a)?;
    encrypt_aes(&strval(&a[0]), &strval(&a[1])).map(Value::from)
}

fn decrypt_aes_fn(_: &mut Exec<'_>, a: &[Value]) -> FuncResult {
    arity2("decryptAES", a)?;
    decrypt_aes(&strval(&a[0]), &strval(&a[1])).map(Value::from)
}

fn arity2(name: &str, a: &[Value]) -> Result<(), FuncError> {
    if a.len() != 2 {
        return Err(err(format!(
            "wrong number of args for {name}: want 2 got {}",
            a.len()
        )));
    }
    Ok(())
}

fn err(e: impl std::fmt::Display) -> FuncError {
    FuncError::Msg(e.to_string())
}

fn htpasswd(_: &mut Exec<'_>, a: &[Value]) -> FuncResult {
    if a.len() != 2 {
        return Err(err(format!(
            "wrong number of args for htpasswd: want 2 got {}",
            a.len()
        )));
    }
    let user = strval(&a[0]);
    if user.contains(':') {
        return Ok(Value::from(format!("invalid username: {user}")));
    }
    let hash = bcrypt_2a(&strval(&a[1]))?;
    Ok(Value::from(format!("{user}:{hash}")))
}

fn bcrypt_fn(_: &mut Exec<'_>, a: &[Value]) -> FuncResult {
    if a.len() != 1 {
        return Err(err(format!(
            "wrong number of args for bcrypt: want 1 got {}",
            a.len()
        )));
    }
    Ok(Value::from(bcrypt_2a(&strval(&a[0]))?))
}

/// Go's `bcrypt.GenerateFromPassword(p, bcrypt.DefaultCost)`: `$2a$10$...`.
fn bcrypt_2a(password: &str) -> Result<String, FuncError> {
    let parts = bcrypt::hash_with_result(password, 10).map_err(err)?;
    Ok(parts.format_for_version(bcrypt::Version::TwoA))
}

fn rsa_key() -> Result<KeyPair, FuncError> {
    KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_2048).map_err(err)
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn pem_decode(text: &str) -> Option<(String, Vec<u8>)> {
    let start = text.find("-----BEGIN ")?;
    let rest = &text[start + 11..];
    let label_end = rest.find("-----")?;
    let label = rest[..label_end].to_string();
    let body_start = label_end + 5;
    let end = rest.find("-----END ")?;
    let b64: String = rest[body_start..end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let der = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    Some((label, der))
}

/// Reads one DER element header: (tag, header length, content length).
fn der_header(d: &[u8]) -> Option<(u8, usize, usize)> {
    let tag = *d.first()?;
    let l0 = *d.get(1)? as usize;
    if l0 < 0x80 {
        return Some((tag, 2, l0));
    }
    let n = l0 & 0x7f;
    let mut len = 0usize;
    for i in 0..n {
        len = (len << 8) | *d.get(2 + i)? as usize;
    }
    Some((tag, 2 + n, len))
}

/// The PKCS#1 `RSAPrivateKey` inside a PKCS#8 `PrivateKeyInfo`.
fn pkcs8_to_pkcs1(p8: &[u8]) -> Option<Vec<u8>> {
    let (_, h, _) = der_header(p8)?;
    let mut i = h;
    // version INTEGER
    let (_, vh, vl) = der_header(&p8[i..])?;
    i += vh + vl;
    // algorithm SEQUENCE
    let (_, ah, al) = der_header(&p8[i..])?;
    i += ah + al;
    // privateKey OCTET STRING
    let (tag, oh, ol) = der_header(&p8[i..])?;
    if tag != 0x04 {
        return None;
    }
    p8.get(i + oh..i + oh + ol).map(<[u8]>::to_vec)
}

fn der_len(n: usize) -> Vec<u8> {
    if n < 0x80 {
        vec![n as u8]
    } else if n < 0x100 {
        vec![0x81, n as u8]
    } else {
        vec![0x82, (n >> 8) as u8, n as u8]
    }
}

/// Wraps a PKCS#1 RSA key into PKCS#8 (what rcgen reads).
fn pkcs1_to_pkcs8(p1: &[u8]) -> Vec<u8> {
    let version = [0x02, 0x01, 0x00];
    // SEQUENCE { OID rsaEncryption, NULL }
    let alg = [
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut octet = vec![0x04];
    octet.extend(der_len(p1.len()));
    octet.extend_from_slice(p1);
    let body_len = version.len() + alg.len() + octet.len();
    let mut out = vec![0x30];
    out.extend(der_len(body_len));
    out.extend_from_slice(&version);
    out.extend_from_slice(&alg);
    out.extend(octet);
    out
}

fn key_pem_pkcs1(key: &KeyPair) -> Result<String, FuncError> {
    let p1 =
        pkcs8_to_pkcs1(&key.serialize_der()).ok_or_else(|| err("cannot encode the RSA key"))?;
    Ok(pem("RSA PRIVATE KEY", &p1))
}

fn load_key(text: &str) -> Result<KeyPair, FuncError> {
    let (label, der) = pem_decode(text).ok_or_else(|| err("error decoding PEM key"))?;
    let p8 = if label == "RSA PRIVATE KEY" {
        pkcs1_to_pkcs8(&der)
    } else {
        der
    };
    let p8_pem = pem("PRIVATE KEY", &p8);
    KeyPair::from_pem(&p8_pem).map_err(err)
}

fn gen_private_key(_: &mut Exec<'_>, a: &[Value]) -> FuncResult {
    let typ = a.first().map(strval).unwrap_or_default();
    let key = match typ.as_str() {
        "rsa" => rsa_key()?,
        "ecdsa" => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(err)?,
        "ed25519" => KeyPair::generate_for(&rcgen::PKCS_ED25519).map_err(err)?,
        other => return Ok(Value::from(format!("Unknown type {other}"))),
    };
    if typ == "rsa" {
        return Ok(Value::from(key_pem_pkcs1(&key)?));
    }
    Ok(Value::from(key.serialize_pem()))
}

fn validity(params: &mut CertificateParams, days: i64) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    params.not_before = epoch + Duration::from_secs(now);
    params.not_after = epoch + Duration::from_secs(now + (days.max(0) as u64) * 86400);
    let mut serial = rand_bytes(16);
    serial[0] &= 0x7f;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
}

fn cert_value(cert_pem: String, key_pem: String) -> Value {
    let mut m = BTreeMap::new();
    m.insert("Cert".to_string(), Value::from(cert_pem));
    m.insert("Key".to_string(), Value::from(key_pem));
    Value::from(m)
}

fn names(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::List(l)) => l.iter().map(strval).collect(),
        _ => Vec::new(),
    }
}

fn leaf_params(
    cn: &str,
    ips: &[String],
    dns: &[String],
    days: i64,
) -> Result<CertificateParams, FuncError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    validity(&mut params, days);
    params.key_usages = vec![
        KeyUsagePurpose::KeyEncipherment,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    for ip in ips {
        let addr = ip
            .parse()
            .map_err(|_| err(format!("error parsing ip: {ip}")))?;
        params.subject_alt_names.push(SanType::IpAddress(addr));
    }
    for d in dns {
        params
            .subject_alt_names
            .push(SanType::DnsName(d.clone().try_into().map_err(err)?));
    }
    Ok(params)
}

fn gen_ca(_: &mut Exec<'_>, a: &[Value]) -> FuncResult {
    if a.len() != 2 {
        return Err(err(format!(
            "wrong number of args for genCA: want 2 got {}",
            a.len()
        )));
    }
    let cn = strval(&a[0]);
    let key = rsa_key()?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn.as_str());
    params.distinguished_name = dn;
    validity(&mut params, to_i64(&a[1]));
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyEncipherment,
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let cert = params.self_signed(&key).map_err(err)?;
    let cert_pem = cert.pem();
    CA_SUBJECTS.with(|c| c.borrow_mut().insert(cert_pem.clone(), cn));
    Ok(cert_value(cert_pem, key_pem_pkcs1(&key)?))
}

fn gen_self_signed(_: &mut Exec<'_>, a: &[Value]) -> FuncResult {
    if a.len() != 4 {
        return Err(err(format!(
            "wrong number of args for genSelfSignedCert: want 4 got {}",
            a.len()
        )));
    }
    let key = rsa_key()?;
    let params = leaf_params(
        &strval(&a[0]),
        &names(a.get(1)),
        &names(a.get(2)),
        to_i64(&a[3]),
    )?;
    let cert = params.self_signed(&key).map_err(err)?;
    Ok(cert_value(cert.pem(), key_pem_pkcs1(&key)?))
}

fn gen_signed(_: &mut Exec<'_>, a: &[Value]) -> FuncResult {
    if a.len() != 5 {
        return Err(err(format!(
            "wrong number of args for genSignedCert: want 5 got {}",
            a.len()
        )));
    }
    let ca = &a[4];
    let ca_cert = ca.get("Cert").map(|v| strval(&v)).unwrap_or_default();
    let ca_key = ca.get("Key").map(|v| strval(&v)).unwrap_or_default();
    let ca_keypair = load_key(&ca_key)?;
    let issuer = match CA_SUBJECTS.with(|c| c.borrow().get(&ca_cert).cloned()) {
        Some(ca_cn) => {
            let mut ca_params = CertificateParams::default();
            let mut dn = DistinguishedName::new();
            dn.push(DnType::CommonName, ca_cn.as_str());
            ca_params.distinguished_name = dn;
            ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
            Issuer::new(ca_params, ca_keypair)
        }
        // A CA from buildCustomCert (or any PEM certificate): its own subject is the issuer.
        None => Issuer::from_ca_cert_pem(&ca_cert, ca_keypair)
            .map_err(|e| err(format!("error parsing CA certificate: {e}")))?,
    };
    let key = rsa_key()?;
    let params = leaf_params(
        &strval(&a[0]),
        &names(a.get(1)),
        &names(a.get(2)),
        to_i64(&a[3]),
    )?;
    let cert = params.signed_by(&key, &issuer).map_err(err)?;
    Ok(cert_value(cert.pem(), key_pem_pkcs1(&key)?))
}

/// Sprig's `buildCustomCert b64cert b64key`: both decoded and checked (an X.509 certificate;
/// an RSA PKCS#1, PKCS#8 or EC private key), returned as `{Cert, Key}` unchanged.
fn build_custom_cert(_: &mut Exec<'_>, a: &[Value]) -> FuncResult {
    if a.len() != 2 {
        return Err(err(format!(
            "wrong number of args for buildCustomCert: want 2 got {}",
            a.len()
        )));
    }
    let b64 = &base64::engine::general_purpose::STANDARD;
    let cert = b64
        .decode(strval(&a[0]))
        .map_err(|_| err("unable to decode base64 certificate"))?;
    let key = b64
        .decode(strval(&a[1]))
        .map_err(|_| err("unable to decode base64 private key"))?;
    let cert = String::from_utf8(cert).map_err(|_| err("unable to decode certificate"))?;
    let (_, der) = pem_decode(&cert).ok_or_else(|| err("unable to decode certificate"))?;
    x509_parser::parse_x509_certificate(&der).map_err(|_| {
        err("error parsing certificate: decodedCert.Bytes: x509: malformed certificate")
    })?;
    let no_pem = || err("error parsing private key: no PEM data in input");
    let key = String::from_utf8(key).map_err(|_| no_pem())?;
    let (label, der) = pem_decode(&key).ok_or_else(no_pem)?;
    let parsed = match label.as_str() {
        "RSA PRIVATE KEY" => aws_lc_rs::rsa::KeyPair::from_der(&der)
            .map(drop)
            .map_err(|e| e.to_string()),
        "PRIVATE KEY" => KeyPair::from_pem(&key).map(drop).map_err(|e| e.to_string()),
        "EC PRIVATE KEY" => [
            &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            &aws_lc_rs::signature::ECDSA_P384_SHA384_ASN1_SIGNING,
            &aws_lc_rs::signature::ECDSA_P521_SHA512_ASN1_SIGNING,
        ]
        .into_iter()
        .find_map(|alg| aws_lc_rs::signature::EcdsaKeyPair::from_private_key_der(alg, &der).ok())
        .map(drop)
        .ok_or_else(|| "x509: failed to parse EC private key".to_string()),
        other => {
            return Err(err(format!(
                "error parsing private key: no private key data in PEM block of type {other}"
            )));
        }
    };
    parsed.map_err(|e| err(format!("error parsing private key: {e}")))?;
    Ok(cert_value(cert, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkcs_round_trip() {
        let key = rsa_key().expect("rsa key");
        let p1 = key_pem_pkcs1(&key).expect("pkcs1");
        assert!(p1.starts_with("-----BEGIN RSA PRIVATE KEY-----\n"));
        let back = load_key(&p1).expect("load");
        assert_eq!(back.serialize_der(), key.serialize_der());
    }

    #[test]
    fn aes_round_trips_and_reads_sprig_output() {
        for (pw, text) in [
            ("secret", "hello"),
            ("", "x"),
            (
                "a-very-long-password-longer-than-32-bytes",
                "sixteen bytes!!!",
            ),
        ] {
            let c = encrypt_aes(pw, text).expect("encrypts");
            let raw = base64::engine::general_purpose::STANDARD
                .decode(&c)
                .expect("base64");
            assert_eq!(raw.len(), 16 + (text.len() / 16 + 1) * 16);
            assert_eq!(decrypt_aes(pw, &c).expect("decrypts"), text);
            assert_ne!(
                encrypt_aes(pw, text).expect("encrypts"),
                c,
                "a fresh IV each time"
            );
        }
        assert_eq!(encrypt_aes("k", "").expect("empty"), "");
        assert_eq!(decrypt_aes("k", "").expect("empty"), "");
        assert!(decrypt_aes("k", "c2hvcnQ=").is_err());
        assert!(decrypt_aes("k", "not base64!").is_err());
    }

    #[test]
    fn scrypt_matches_rfc_7914() {
        let mut out = [0u8; 64];
        scrypt(b"", b"", 16, 1, 1, &mut out);
        assert_eq!(
            super::super::funcs::to_hex_pub(&out),
            "77d6576238657b203b19ca42c18a0497f16b4844e3074ae8dfdffa3fede21442fcd0069ded0948f8326a753a0fc81f17e8d3e0fb2e0d3628cf35e20c38d18906"
        );
        scrypt(b"password", b"NaCl", 1024, 8, 16, &mut out);
        assert_eq!(
            super::super::funcs::to_hex_pub(&out),
            "fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b3731622eaf30d92e22a3886ff109279d9830dac727afb94a83ee6d8360cbdfa2cc0640"
        );
    }

    #[test]
    fn bcrypt_is_2a() {
        let h = bcrypt_2a("secret").expect("hash");
        assert!(h.starts_with("$2a$10$"));
        assert!(bcrypt::verify("secret", &h).unwrap_or(false));
    }
}
