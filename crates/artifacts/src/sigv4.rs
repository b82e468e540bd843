//! AWS Signature Version 4 in the `Authorization` header, for S3 GETs.
//!
//! rusty-s3 signs by query string (presigned URLs); S3-compatible servers that check
//! credentials on every request (moto with IAM checks on, some gateways) accept only the
//! header form, so requests are signed here, over the URLs rusty-s3 builds. The algorithm is
//! AWS's: canonical request → string to sign → HMAC chain over date, region, service.

use hmac::{KeyInit as _, Mac as _};
use jiff::Timestamp;
use reqwest::Url;
use sha2::{Digest as _, Sha256};

use crate::verify::hex;

/// sha256 of an empty body (every request signed here is a bodiless GET or HEAD).
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Who signs, for which region.
pub(crate) struct Signer<'a> {
    pub key_id: &'a str,
    pub secret: &'a str,
    pub token: Option<&'a str>,
    pub region: &'a str,
}

impl Signer<'_> {
    /// The headers to add to a bodiless `method` request for `url`, signed at `now`.
    pub(crate) fn headers(
        &self,
        method: &str,
        url: &Url,
        now: Timestamp,
    ) -> Vec<(&'static str, String)> {
        let amz_date = now.strftime("%Y%m%dT%H%M%SZ").to_string();
        let day = &amz_date[..8];
        let host = match url.port() {
            Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_owned(),
        };
        let mut headers = vec![
            ("host", host),
            ("x-amz-content-sha256", EMPTY_SHA256.to_owned()),
            ("x-amz-date", amz_date.clone()),
        ];
        if let Some(token) = self.token {
            headers.push(("x-amz-security-token", token.to_owned()));
        }
        let signed: Vec<&str> = headers.iter().map(|(k, _)| *k).collect();
        let signed = signed.join(";");
        let mut canonical = format!("{method}\n{}\n{}\n", url.path(), canonical_query(url));
        for (k, v) in &headers {
            canonical.push_str(&format!("{k}:{}\n", v.trim()));
        }
        canonical.push_str(&format!("\n{signed}\n{EMPTY_SHA256}"));
        let scope = format!("{day}/{}/s3/aws4_request", self.region);
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
            hex(&Sha256::digest(canonical.as_bytes()))
        );
        let mut key = hmac(format!("AWS4{}", self.secret).as_bytes(), day.as_bytes());
        for part in [self.region, "s3", "aws4_request"] {
            key = hmac(&key, part.as_bytes());
        }
        let signature = hex(&hmac(&key, to_sign.as_bytes()));
        headers.retain(|(k, _)| *k != "host");
        headers.push((
            "authorization",
            format!(
                "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed}, Signature={signature}",
                self.key_id
            ),
        ));
        headers
    }
}

/// The query's `key=value` pairs as sent (already percent-encoded by whoever built the URL),
/// sorted; a key without `=` gets an empty value.
fn canonical_query(url: &Url) -> String {
    let mut pairs: Vec<(&str, &str)> = url
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect();
    pairs.sort_unstable();
    let pairs: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.join("&")
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AWS's published example "GET Bucket (List Objects)" from the Signature V4 header-auth
    /// documentation (examplebucket, 2013-05-24).
    #[test]
    fn matches_the_aws_documentation_example() {
        let signer = Signer {
            key_id: "AKIAIOSFODNN7EXAMPLE",
            secret: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            token: None,
            region: "us-east-1",
        };
        let url =
            Url::parse("https://examplebucket.s3.amazonaws.com/?max-keys=2&prefix=J").expect("url");
        let now: Timestamp = "2013-05-24T00:00:00Z".parse().expect("time");
        let headers = signer.headers("GET", &url, now);
        let auth = &headers
            .iter()
            .find(|(k, _)| *k == "authorization")
            .expect("auth")
            .1;
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;x-amz-content-sha256;x-amz-date, \
             Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
        );
    }
}
