use super::*;
use crate::keyring::LocalRootKey;

fn kind(uri: &str) -> Kind {
    RootKeyUri::parse(uri).unwrap_or_else(|e| panic!("{uri}: {e}")).kind
}

fn err(uri: &str) -> KeyUriError {
    match RootKeyUri::parse(uri) {
        Ok(u) => panic!("{uri} parsed as {u:?}"),
        Err(e) => e,
    }
}

fn vault(authority: Option<&str>, mount: &str, key: &str) -> Kind {
    Kind::HcVault { authority: authority.map(str::to_owned), mount: mount.into(), key: key.into() }
}

#[test]
fn files_and_paths() {
    for (uri, path) in [
        ("/etc/atrest/root.key", "/etc/atrest/root.key"),
        ("./root.key", "./root.key"),
        ("root.key", "root.key"),
        ("./a:b", "./a:b"),
        ("/tmp/100%.key", "/tmp/100%.key"),
        ("file:/etc/atrest/root.key", "/etc/atrest/root.key"),
        ("file:///etc/atrest/root.key", "/etc/atrest/root.key"),
        ("file://localhost/etc/root.key", "/etc/root.key"),
        ("file:relative/root.key", "relative/root.key"),
        ("file:/my%20keys/root.key", "/my keys/root.key"),
    ] {
        assert_eq!(kind(uri), Kind::File(PathBuf::from(path)), "{uri}");
        assert_eq!(RootKeyUri::parse(uri).unwrap().scheme(), "file");
    }
    assert_eq!(err(""), KeyUriError::Empty);
    assert_eq!(err("file:"), KeyUriError::Missing { scheme: "file", part: "the path" });
    assert_eq!(err("file://"), KeyUriError::Missing { scheme: "file", part: "the path" });
    assert_eq!(err("file://host/etc/k"), KeyUriError::InvalidHost { scheme: "file", host: "host".into() });
    assert_eq!(err("file:/a%2"), KeyUriError::BadPercentEncoding { scheme: "file" });
    assert_eq!(err("file:/a%zz"), KeyUriError::BadPercentEncoding { scheme: "file" });
    assert_eq!(err("file:/a%ff"), KeyUriError::BadPercentEncoding { scheme: "file" });
    assert_eq!(err("file:/a?x=1"), KeyUriError::UnexpectedQuery { scheme: "file" });
    assert_eq!(err("my:key"), KeyUriError::UnknownScheme("my".into()));
    assert_eq!(err("https://vault/transit/keys/k"), KeyUriError::UnknownScheme("https".into()));
    assert_eq!(err("gcp-kms://projects/p"), KeyUriError::UnknownScheme("gcp-kms".into()));
}

#[test]
fn environment_variables() {
    assert_eq!(kind("env:ATREST_ROOT_KEY"), Kind::Env("ATREST_ROOT_KEY".into()));
    assert_eq!(kind("env:_k1"), Kind::Env("_k1".into()));
    assert_eq!(err("env:"), KeyUriError::Missing { scheme: "env", part: "the variable name" });
    for bad in ["env:1KEY", "env:A-B", "env:A B", "env:A=B", "env:$A", "env:A/B"] {
        assert!(matches!(err(bad), KeyUriError::InvalidVariable(_)), "{bad}");
    }
}

#[test]
fn pkcs11_uris() {
    let Kind::Pkcs11(p) = kind("pkcs11:token=atrest;object=root") else { panic!() };
    assert_eq!((p.token.as_str(), p.object.as_str()), ("atrest", "root"));
    assert_eq!((p.id, p.module, p.pin_source), (None, None, None));

    let uri = "pkcs11:token=my%20token;object=a%3Bb%3Dc;id=%01%AB;type=secret-key\
               ?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/pin";
    let Kind::Pkcs11(p) = kind(uri) else { panic!() };
    assert_eq!((p.token.as_str(), p.object.as_str()), ("my token", "a;b=c"));
    assert_eq!(p.id, Some(vec![0x01, 0xab]));
    assert_eq!(p.module, Some(PathBuf::from("/usr/lib/softhsm/libsofthsm2.so")));
    assert_eq!(p.pin_source, Some(PathBuf::from("/run/pin")));
    assert_eq!(RootKeyUri::parse(uri).unwrap().to_string(), uri);
    let Kind::Pkcs11(p) = kind("pkcs11:object=k;token=t?pin-source=/run/pin") else { panic!() };
    assert_eq!(p.pin_source, Some(PathBuf::from("/run/pin")));

    let missing_token = KeyUriError::Missing { scheme: "pkcs11", part: "token=" };
    let missing_object = KeyUriError::Missing { scheme: "pkcs11", part: "object=" };
    assert_eq!(err("pkcs11:"), missing_token);
    assert_eq!(err("pkcs11:object=k"), missing_token);
    assert_eq!(err("pkcs11:token=;object=k"), missing_token);
    assert_eq!(err("pkcs11:token=t"), missing_object);
    assert_eq!(err("pkcs11:token=t;object=k;token=u"), KeyUriError::DuplicateAttribute("token".into()));
    assert_eq!(
        err("pkcs11:token=t;object=k?module-path=/a&module-path=/b"),
        KeyUriError::DuplicateAttribute("module-path".into())
    );
    assert_eq!(err("pkcs11:token=t;object=k;serial=123"), KeyUriError::UnknownAttribute("serial".into()));
    assert_eq!(
        err("pkcs11:token=t;object=k?module-name=softhsm2"),
        KeyUriError::UnknownAttribute("module-name".into())
    );
    assert_eq!(err("pkcs11:token=t;object=k?pin-value=1234"), KeyUriError::PinInUri);
    assert_eq!(err("pkcs11:token=t%4;object=k"), KeyUriError::BadPercentEncoding { scheme: "pkcs11" });
    assert_eq!(err("pkcs11:token=t;object=k#frag"), KeyUriError::UnexpectedQuery { scheme: "pkcs11" });
    let invalid = |attribute, problem| KeyUriError::InvalidAttribute { attribute, problem };
    assert_eq!(err("pkcs11:token=t;object=k;type=private"), invalid("type", "must be secret-key (an AES key)"));
    assert_eq!(err("pkcs11:token=t;object=k;id="), invalid("id", "is empty"));
    assert_eq!(err("pkcs11:token=t;object=k?module-path="), invalid("module-path", "is empty"));
    assert_eq!(
        err("pkcs11:token=t;object=k?pin-source=|cat /pin"),
        invalid("pin-source", "must be file:PATH or an absolute path")
    );
}

#[test]
fn vault_uris() {
    assert_eq!(
        kind("hcvault://127.0.0.1:8200/transit/keys/atrest"),
        vault(Some("127.0.0.1:8200"), "transit", "atrest")
    );
    assert_eq!(
        kind("hcvault://vault.example.com/transit/keys/atrest"),
        vault(Some("vault.example.com"), "transit", "atrest")
    );
    assert_eq!(kind("hcvault://[::1]:8200/transit/keys/k"), vault(Some("[::1]:8200"), "transit", "k"));
    assert_eq!(kind("hcvault:///team/transit/keys/k.v-1_x"), vault(None, "team/transit", "k.v-1_x"));
    assert_eq!(RootKeyUri::parse("hcvault:///transit/keys/k").unwrap().scheme(), "hcvault");

    let host = |h: &str| KeyUriError::InvalidHost { scheme: "hcvault", host: h.into() };
    assert_eq!(
        err("hcvault:transit/keys/k"),
        KeyUriError::Missing { scheme: "hcvault", part: "'//' after 'hcvault:'" }
    );
    assert_eq!(err("hcvault://host"), KeyUriError::Missing { scheme: "hcvault", part: "the key path" });
    assert_eq!(err("hcvault://host:0/transit/keys/k"), host("host:0"));
    assert_eq!(err("hcvault://host:65536/transit/keys/k"), host("host:65536"));
    assert_eq!(err("hcvault://host:+80/transit/keys/k"), host("host:+80"));
    assert_eq!(err("hcvault://user@host/transit/keys/k"), host("user@host"));
    assert_eq!(err("hcvault://:8200/transit/keys/k"), host(":8200"));
    assert_eq!(err("hcvault://[::1/transit/keys/k"), host("[::1"));
    assert_eq!(err("hcvault://[nope]:1/transit/keys/k"), host("[nope]:1"));
    assert_eq!(err("hcvault://h/transit/keys/k?x=1"), KeyUriError::UnexpectedQuery { scheme: "hcvault" });
    for path in [
        "transit/keys/",
        "keys/k",
        "transit/k",
        "transit/encrypt/k",
        "transit//keys/k",
        "tr%20ansit/keys/k",
        "transit/keys/k/",
    ] {
        assert_eq!(err(&format!("hcvault://h/{path}")), KeyUriError::InvalidVaultPath(path.into()), "{path}");
    }
}

#[test]
fn aws_kms_uris() {
    let arn = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    assert_eq!(kind(&format!("aws-kms://{arn}")), Kind::AwsKms { arn: arn.into(), region: "us-east-1".into() });
    let mrk = "arn:aws-us-gov:kms:us-gov-west-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab";
    assert_eq!(kind(&format!("aws-kms://{mrk}")), Kind::AwsKms { arn: mrk.into(), region: "us-gov-west-1".into() });
    assert_eq!(key_arn_region(arn).unwrap(), "us-east-1");

    assert_eq!(
        err(&format!("aws-kms:{arn}")),
        KeyUriError::Missing { scheme: "aws-kms", part: "'//' after 'aws-kms:'" }
    );
    assert_eq!(err(&format!("aws-kms://{arn}?x")), KeyUriError::UnexpectedQuery { scheme: "aws-kms" });
    for (bad, why) in [
        ("aws-kms://", "expected arn:PARTITION:kms:REGION:ACCOUNT:key/ID"),
        ("aws-kms://1234abcd-12ab-34cd-56ef-1234567890ab", "expected arn:PARTITION:kms:REGION:ACCOUNT:key/ID"),
        ("aws-kms://arn:aws:kms:us-east-1:111122223333:key/a:b", "expected arn:PARTITION:kms:REGION:ACCOUNT:key/ID"),
        ("aws-kms://arn:aws:s3:us-east-1:111122223333:key/k", "expected arn:PARTITION:kms:... (a KMS ARN)"),
        ("aws-kms://urn:aws:kms:us-east-1:111122223333:key/k", "expected arn:PARTITION:kms:... (a KMS ARN)"),
        ("aws-kms://arn:AWS:kms:us-east-1:111122223333:key/k", "expected arn:PARTITION:kms:... (a KMS ARN)"),
        ("aws-kms://arn:aws:kms::111122223333:key/k", "the ARN has no valid region"),
        ("aws-kms://arn:aws:kms:us-east-1:1111:key/k", "the ARN's account is not 12 digits"),
        ("aws-kms://arn:aws:kms:us-east-1:11112222333x:key/k", "the ARN's account is not 12 digits"),
        (
            "aws-kms://arn:aws:kms:us-east-1:111122223333:alias/atrest",
            "an alias ARN: give the key ARN (an alias can be moved to another key)",
        ),
        ("aws-kms://arn:aws:kms:us-east-1:111122223333:k", "the ARN does not name a key (key/ID)"),
        ("aws-kms://arn:aws:kms:us-east-1:111122223333:key/", "the key id is not letters, digits and '-'"),
        ("aws-kms://arn:aws:kms:us-east-1:111122223333:key/a/b", "the key id is not letters, digits and '-'"),
    ] {
        assert_eq!(err(bad), KeyUriError::InvalidArn(why), "{bad}");
    }
}

#[test]
fn errors_are_root_key_errors_and_print_no_pin() {
    let e: RootKeyError = err("pkcs11:token=t;object=k?pin-value=s3cr3t").into();
    assert!(matches!(e, RootKeyError::InvalidUri(KeyUriError::PinInUri)));
    assert!(!e.to_string().contains("s3cr3t"));
    assert!(matches!(root_key_from_uri("nope:x"), Err(RootKeyError::InvalidUri(KeyUriError::UnknownScheme(_)))));
}

#[test]
fn opens_key_files_and_reports_missing_features() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("root.key");
    let key = LocalRootKey::generate_file(&path).unwrap();
    for uri in [path.display().to_string(), format!("file:{}", path.display()), format!("file://{}", path.display())] {
        assert_eq!(root_key_from_uri(&uri).unwrap().key_id(), key.key_id(), "{uri}");
    }
    assert!(matches!(root_key_from_uri(&format!("{}.missing", path.display())), Err(RootKeyError::Io { .. })));
    assert!(matches!(root_key_from_uri("env:ATREST_TEST_SURELY_UNSET_VARIABLE"), Err(RootKeyError::EnvMissing(_))));
    #[cfg(not(feature = "vault"))]
    assert!(matches!(
        root_key_from_uri("hcvault://h/transit/keys/k"),
        Err(RootKeyError::InvalidUri(KeyUriError::FeatureDisabled { scheme: "hcvault", feature: "vault" }))
    ));
    #[cfg(not(feature = "aws-kms"))]
    assert!(matches!(
        root_key_from_uri("aws-kms://arn:aws:kms:us-east-1:111122223333:key/k"),
        Err(RootKeyError::InvalidUri(KeyUriError::FeatureDisabled { scheme: "aws-kms", feature: "aws-kms" }))
    ));
    #[cfg(not(feature = "pkcs11"))]
    assert!(matches!(
        root_key_from_uri("pkcs11:token=t;object=k"),
        Err(RootKeyError::InvalidUri(KeyUriError::FeatureDisabled { scheme: "pkcs11", feature: "pkcs11" }))
    ));
}
