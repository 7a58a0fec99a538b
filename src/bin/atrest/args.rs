//! Command-line syntax (clap derive).

use std::path::PathBuf;

use atrest::{BackupKind, MasterVersion};
use clap::{Args, Parser, Subcommand, ValueEnum};

pub use crate::repo_args::{RepoArgs, RepoCommand, parse_time};

const AFTER_HELP: &str = "\
Root key: --root-key URI / ATREST_ROOT_KEY_URI (a key file path, file:PATH, env:VAR,
pkcs11:token=T;object=K?module-path=M&pin-source=file:P, hcvault://HOST[:PORT]/MOUNT/keys/NAME
with VAULT_TOKEN, aws-kms://arn:aws:kms:REGION:ACCOUNT:key/ID); or --root-key-file /
ATREST_ROOT_KEY_FILE, or ATREST_ROOT_KEY holding the key text, or a PKCS#11 token
(--pkcs11-module, --pkcs11-token, --pkcs11-key; PIN from ATREST_PKCS11_PIN or
--pkcs11-pin-file). Keyring: --keyring / ATREST_KEYRING, a file or a postgres:// URL. A keyring change waits at most
ATREST_LOCK_WAIT seconds (default 30) for another process holding <keyring>.lock.

Exit status: 0 success, 1 failure, 2 usage error, 3 authentication failure (tampered, truncated
or mismatched data, wrong keyring), 4 context mismatch (an authentic backup of another tenant,
snapshot, parent, kind or sequence than the flags name).";

/// Encryption at rest and key management: keyrings, tenant keys and encrypted backups.
#[derive(Debug, Parser)]
#[command(name = "atrest", version, about, after_help = AFTER_HELP)]
pub struct Cli {
    /// Where the root key and the keyring come from.
    #[command(flatten)]
    pub keys: KeyArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Global options naming the root key and the keyring file.
#[derive(Debug, Args)]
pub struct KeyArgs {
    /// The root key by URI: a key file path or file:PATH, env:VAR, pkcs11:..., hcvault://...,
    /// aws-kms://... (instead of --root-key-file or --pkcs11-*).
    #[arg(long, global = true, env = "ATREST_ROOT_KEY_URI", value_name = "URI")]
    pub root_key: Option<String>,

    /// Root key file (made by `atrest keygen`). Without it, ATREST_ROOT_KEY may hold the key text.
    #[arg(long, global = true, env = "ATREST_ROOT_KEY_FILE", value_name = "PATH")]
    pub root_key_file: Option<PathBuf>,

    /// Keyring: a file, or (built with the `postgres` feature) a PostgreSQL row,
    /// `postgres://user@host/db?table=atrest_keyrings&keyring=default` (PGHOST, PGPORT, PGUSER,
    /// PGPASSWORD, PGDATABASE fill what the URL leaves out).
    #[arg(long, global = true, env = "ATREST_KEYRING", value_name = "PATH|URL")]
    pub keyring: Option<PathBuf>,

    /// The root key in a PKCS#11 token instead of a key file.
    #[command(flatten)]
    pub pkcs11: Pkcs11Args,

    /// Write audit events (keyring changes, shreds, refusals; never secrets) as JSON lines to
    /// FILE (appended), `-` (stderr) or `syslog` (/dev/log, also served by journald).
    #[arg(long, global = true, env = "ATREST_AUDIT_LOG", value_name = "FILE|-|syslog")]
    pub audit_log: Option<PathBuf>,
}

/// A root key held in a PKCS#11 token.
#[derive(Debug, Args, Default, Clone)]
pub struct Pkcs11Args {
    /// PKCS#11 module (shared library), e.g. /usr/lib/softhsm/libsofthsm2.so.
    #[arg(long, global = true, env = "ATREST_PKCS11_MODULE", value_name = "PATH", hide = !cfg!(feature = "pkcs11"))]
    pub pkcs11_module: Option<PathBuf>,

    /// Label of the PKCS#11 token.
    #[arg(long, global = true, env = "ATREST_PKCS11_TOKEN", value_name = "LABEL", hide = !cfg!(feature = "pkcs11"))]
    pub pkcs11_token: Option<String>,

    /// Label of the root key in the token.
    #[arg(long, global = true, env = "ATREST_PKCS11_KEY", value_name = "LABEL", hide = !cfg!(feature = "pkcs11"))]
    pub pkcs11_key: Option<String>,

    /// File holding the token's user PIN (otherwise ATREST_PKCS11_PIN).
    #[arg(long, global = true, value_name = "PATH", hide = !cfg!(feature = "pkcs11"))]
    pub pkcs11_pin_file: Option<PathBuf>,
}

impl Pkcs11Args {
    /// Whether any PKCS#11 option was given.
    pub fn any(&self) -> bool {
        self.pkcs11_module.is_some()
            || self.pkcs11_token.is_some()
            || self.pkcs11_key.is_some()
            || self.pkcs11_pin_file.is_some()
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate a root key file (mode 0600; never overwrites).
    Keygen {
        /// The key file to create.
        #[arg(long, short, value_name = "FILE")]
        out: PathBuf,
    },
    /// Create and manage the keyring of master keys.
    Keyring {
        /// The keyring operation.
        #[command(subcommand)]
        command: KeyringCommand,
    },
    /// Rotate or shred one tenant's keys.
    Tenant {
        /// The tenant operation.
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Encrypt, decrypt, verify, inspect and rewrap backup streams.
    Backup {
        /// The backup operation.
        #[command(subcommand)]
        command: BackupCommand,
    },
}

/// Keyring operations.
#[derive(Debug, Subcommand)]
pub enum KeyringCommand {
    /// Create a new keyring file with master key v1 (primary).
    Init,
    /// Show master key versions, their states and ages, rotated and shredded tenants.
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Add a master key version and make it primary (the old primary stays enabled for decryption).
    Rotate,
    /// Disable a master key version (reversible): data under it is refused until enabled again.
    Disable {
        /// The version (e.g. 2 or v2).
        #[arg(long, value_name = "N", value_parser = parse_version)]
        version: MasterVersion,
    },
    /// Enable a disabled master key version again (decryption only).
    Enable {
        /// The version (e.g. 2 or v2).
        #[arg(long, value_name = "N", value_parser = parse_version)]
        version: MasterVersion,
    },
    /// Irreversibly erase a master key version: everything sealed under it is lost. The version
    /// must have been disabled for the grace period (24 hours) first.
    Destroy {
        /// The version (e.g. 2 or v2).
        #[arg(long, value_name = "N", value_parser = parse_version)]
        version: MasterVersion,
        /// Confirm that data under this version becomes unrecoverable.
        #[arg(long)]
        yes: bool,
        /// Emergency (a compromised key): destroy once disabled for the staleness bound (1 s)
        /// instead of the whole grace period.
        #[arg(long)]
        skip_grace_period: bool,
    },
    /// Re-wrap every master key under a new root key (root rotation, or key file <-> HSM migration).
    RewrapRoot(NewRootArgs),
    /// Copy the keyring to another store (a file or a postgres:// URL), never over an existing
    /// keyring; the copy is verified by opening it. The old store is left as it was.
    Migrate {
        /// Where to copy the keyring: a file path or a postgres:// URL.
        #[arg(long, value_name = "PATH|URL")]
        to: PathBuf,
    },
}

/// The root key to move the keyring to.
#[derive(Debug, Args)]
pub struct NewRootArgs {
    /// New root key by URI (as --root-key; a PKCS#11 key is generated in the token if missing).
    #[arg(long, value_name = "URI")]
    pub new_root_key: Option<String>,

    /// New root key file (made by `atrest keygen`).
    #[arg(long, value_name = "PATH")]
    pub new_root_key_file: Option<PathBuf>,

    /// New PKCS#11 module.
    #[arg(long, value_name = "PATH", hide = !cfg!(feature = "pkcs11"))]
    pub new_pkcs11_module: Option<PathBuf>,

    /// New PKCS#11 token label.
    #[arg(long, value_name = "LABEL", hide = !cfg!(feature = "pkcs11"))]
    pub new_pkcs11_token: Option<String>,

    /// New PKCS#11 key label (generated in the token if missing).
    #[arg(long, value_name = "LABEL", hide = !cfg!(feature = "pkcs11"))]
    pub new_pkcs11_key: Option<String>,

    /// File holding the new token's PIN (otherwise ATREST_NEW_PKCS11_PIN, then ATREST_PKCS11_PIN).
    #[arg(long, value_name = "PATH", hide = !cfg!(feature = "pkcs11"))]
    pub new_pkcs11_pin_file: Option<PathBuf>,
}

impl NewRootArgs {
    /// The new PKCS#11 options, in the shape of the global ones.
    pub fn pkcs11(&self) -> Pkcs11Args {
        Pkcs11Args {
            pkcs11_module: self.new_pkcs11_module.clone(),
            pkcs11_token: self.new_pkcs11_token.clone(),
            pkcs11_key: self.new_pkcs11_key.clone(),
            pkcs11_pin_file: self.new_pkcs11_pin_file.clone(),
        }
    }
}

/// Tenant operations.
#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Rotate one tenant's keys (bumps its generation; older data still opens).
    Rotate {
        /// Tenant id.
        tenant: String,
    },
    /// Crypto-shred a tenant: refused at once; complete when every current master version is
    /// destroyed. Needs evidence that the tenant exists (a backup or a record of it that
    /// authenticates), so that a misspelled id cannot look like a completed erasure.
    Shred {
        /// Tenant id.
        tenant: String,
        /// Confirm: the tenant's data becomes unreadable at once.
        #[arg(long)]
        yes: bool,
        /// Evidence: a backup stream of the tenant (its header must authenticate).
        #[arg(long, value_name = "FILE", group = "evidence")]
        evidence_backup: Option<PathBuf>,
        /// Evidence: a file holding one sealed record of the tenant (opened with --context).
        #[arg(long, value_name = "FILE", group = "evidence", requires = "context")]
        evidence_record: Option<PathBuf>,
        /// The record's context, as key=value pairs in order (e.g. table=contacts,row=42).
        #[arg(long, value_name = "K=V,...", value_delimiter = ',')]
        context: Vec<String>,
        /// Shred without evidence (the audit log says so).
        #[arg(long, group = "evidence")]
        unverified: bool,
    },
    /// Print the tenant's public backup recipient (one line, `atrestr1...`) for encrypt-only
    /// hosts: `backup encrypt --recipient` needs no root key and no keyring.
    Recipient {
        /// Tenant id.
        tenant: String,
        /// Master key version (default: the primary), with the tenant's current generation.
        #[arg(long, value_name = "N", value_parser = parse_version)]
        key_version: Option<MasterVersion>,
        /// x-wing (ML-KEM-768 + X25519, post-quantum) or x25519 (classical; smaller header).
        #[arg(long, value_name = "KEM", default_value = "x-wing")]
        kem: String,
        /// Print JSON (recipient, tenant, key version, KEM, fingerprint).
        #[arg(long)]
        json: bool,
    },
}

/// Backup operations.
#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Encrypt a stream (stdin to stdout by default): `pg_dump db | atrest backup encrypt ... > db.atrb`.
    Encrypt {
        /// Tenant and snapshot the stream is bound to.
        #[command(flatten)]
        context: BackupContextArgs,
        /// Plaintext chunk size: 64K to 16M (suffixes K, M; default 1M).
        #[arg(long, value_name = "SIZE", value_parser = parse_size)]
        chunk_size: Option<usize>,
        /// Worker threads (default: the library's choice).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
        threads: Option<u16>,
        /// Input and output.
        #[command(flatten)]
        io: IoArgs,
        /// Accept an empty input (refused by default: a failed dump is often empty).
        #[arg(long)]
        allow_empty: bool,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
        /// Encrypt-only: to this recipient (`atrest tenant recipient`); no root key or keyring is read.
        #[arg(long, value_name = "RECIPIENT", conflicts_with = "recipient_file")]
        recipient: Option<String>,
        /// As --recipient, from FILE's first line that is not empty or a # comment.
        #[arg(long, value_name = "FILE")]
        recipient_file: Option<PathBuf>,
        /// Producer mode: run this command and encrypt its stdout (`-- pg_dump -Fc crm`); the
        /// backup is committed only if it exits 0, else atrest exits with its status
        /// (128 + n for signal n) and leaves no file.
        #[arg(last = true, value_name = "PRODUCER", conflicts_with = "input")]
        producer: Vec<String>,
        /// Store the stream in this repository (a directory or s3://bucket/prefix) and append
        /// it to the tenant's catalog, instead of writing it to -o or stdout. Without -o,
        /// ATREST_REPO names it too (an explicit -o FILE wins over ATREST_REPO).
        #[arg(long, value_name = "LOCATION", conflicts_with = "output")]
        repo: Option<String>,
        /// The creation time the stream records (RFC 3339 or unix seconds; default: now). For
        /// imports of older dumps and tests on simulated time.
        #[arg(long, value_name = "TIME", value_parser = parse_time)]
        created: Option<u64>,
    },
    /// Backups in repositories: list, verify-chain, restore, prune, replicate.
    #[command(flatten)]
    Repo(RepoCommand),
    /// Decrypt and authenticate a stream (stdin to stdout by default).
    ///
    /// No plaintext byte is released before the whole stream authenticated: with -o the file
    /// appears only then; to stdout (a pipe, a FIFO) the stream is authenticated first and
    /// then decrypted (a non-seekable input is first spooled to an anonymous 0600 temporary
    /// file in $TMPDIR, or refused with --no-spool). --stream-unverified streams as chunks
    /// authenticate instead: a stream damaged after its start is then detected only there,
    /// and the consumer must check the exit status.
    Decrypt {
        /// Tenant and snapshot the stream is bound to.
        #[command(flatten)]
        context: BackupContextArgs,
        /// Stream plaintext to stdout as chunks authenticate, before the whole stream did
        /// (today's streaming; the consumer must check the exit status).
        #[arg(long)]
        stream_unverified: bool,
        /// Never spool a non-seekable input to a temporary file: refuse instead.
        #[arg(long, conflicts_with = "stream_unverified")]
        no_spool: bool,
        /// Input and output.
        #[command(flatten)]
        io: IoArgs,
    },
    /// Authenticate a whole stream without writing the plaintext anywhere.
    Verify {
        /// Tenant and snapshot the stream is bound to.
        #[command(flatten)]
        context: BackupContextArgs,
        /// Input file (default: stdin).
        #[arg(long, short, value_name = "FILE")]
        input: Option<PathBuf>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a stream's header (no key needed; nothing is authenticated).
    Inspect {
        /// The backup file (- for stdin).
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Re-wrap a backup file's data key under the tenant's current key, in place (chunks untouched).
    Rewrap {
        /// The backup file.
        file: PathBuf,
        /// Tenant id.
        #[arg(long, value_name = "ID")]
        tenant: String,
        /// Authenticate the whole stream too (a version 2 stream), not only its header.
        #[arg(long)]
        verify: bool,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// What a backup stream is bound to.
#[derive(Debug, Args)]
pub struct BackupContextArgs {
    /// Tenant id.
    #[arg(long, value_name = "ID")]
    pub tenant: String,
    /// Snapshot id (required to encrypt; to decrypt, verify: what the stream must be, as the
    /// other flags; a version 2 stream without it is read with the context it stores).
    #[arg(long, value_name = "ID")]
    pub snapshot: Option<String>,
    /// Parent snapshot id (for incremental backups).
    #[arg(long, value_name = "ID")]
    pub parent: Option<String>,
    /// Backup kind (default: incremental with --parent, full without).
    #[arg(long, value_enum)]
    pub kind: Option<Kind>,
    /// Sequence number of the backup (default 0; with --repo, the one its chain needs: its
    /// parent's plus one; a different one is refused there).
    #[arg(long, value_name = "N")]
    pub sequence: Option<u64>,
}

/// Backup kinds.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Kind {
    /// A full backup.
    Full,
    /// An incremental backup on top of --parent.
    Incremental,
}

impl BackupContextArgs {
    /// The backup kind, defaulted from whether a parent is given.
    pub fn kind(&self) -> BackupKind {
        match (self.kind, &self.parent) {
            (Some(Kind::Full), _) | (None, None) => BackupKind::Full,
            (Some(Kind::Incremental), _) | (None, Some(_)) => BackupKind::Incremental,
        }
    }
}

/// Input and output of a streaming command.
#[derive(Debug, Args)]
pub struct IoArgs {
    /// Input file (default: stdin).
    #[arg(long, short, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Output file (default: stdout). Written to a temporary file and given its name on
    /// success only, never over an existing file (unless --force); a FIFO or character
    /// device is written in place.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Replace an existing output file.
    #[arg(long)]
    pub force: bool,
}

/// Parses a master version: `2` or `v2`.
fn parse_version(s: &str) -> Result<MasterVersion, String> {
    let digits = s.strip_prefix(['v', 'V']).unwrap_or(s);
    match digits.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("'{s}' is not a master key version (1 to 65535, e.g. 2 or v2)")),
        Ok(n) => Ok(MasterVersion::new(n)),
    }
}

/// Parses a byte size: `65536`, `64K`, `64KiB`, `1M`, `16MiB` (binary multiples).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at_checked(split).ok_or_else(|| format!("'{s}' is not a size"))?;
    let n: usize = num.parse().map_err(|_| format!("'{s}' is not a size (e.g. 65536, 64K, 1M)"))?;
    let mult: usize = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("'{s}': unknown unit '{unit}' (use K or M)")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("'{s}' is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("64K"), Ok(65536));
        assert_eq!(parse_size("64kib"), Ok(65536));
        assert_eq!(parse_size("1M"), Ok(1 << 20));
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert!(parse_size("").is_err());
        assert!(parse_size("K").is_err());
        assert!(parse_size("1X").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("99999999999999999999G").is_err());
    }

    #[test]
    fn versions() {
        assert_eq!(parse_version("2"), Ok(MasterVersion::new(2)));
        assert_eq!(parse_version("v7"), Ok(MasterVersion::new(7)));
        assert!(parse_version("0").is_err());
        assert!(parse_version("v").is_err());
        assert!(parse_version("70000").is_err());
    }

    #[test]
    fn clap_definition_is_valid() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
